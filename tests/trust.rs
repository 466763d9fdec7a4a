//! Trust end to end: tokens and their scopes, pseudonymised participants,
//! erasure, small-number suppression and per-token rate limits, against a
//! real nats-server and the real services.

use std::time::Duration;

use momentum_tests::{
    ADMIN_TOKEN, EVALUATOR_TOKEN, PARTNER_TOKEN, TestStack, event, hours, ingest_config, meeting, query_config, row,
    spawn_ingest, spawn_query,
};
use serde_json::{Value, json};

/// Every event in the stream, in order, as stored.
async fn stored_events(nats_url: &str) -> Vec<Value> {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
    use futures::StreamExt;
    let client = async_nats::connect(nats_url).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let mut stream = jetstream.get_stream(momentum_bus::STREAM_NAME).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let consumer = stream
        .create_consumer(OrderedConfig { deliver_policy: DeliverPolicy::All, ..Default::default() })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut events = Vec::new();
    let mut sequence = 0;
    while sequence < last {
        let message = tokio::time::timeout(Duration::from_secs(5), messages.next()).await.unwrap().unwrap().unwrap();
        sequence = message.info().unwrap().stream_sequence;
        events.push(serde_json::from_slice(&message.payload).unwrap());
    }
    events
}

fn partner_event(id: &str, source: &str, movement: &str) -> Value {
    let mut event = hours(id, movement, "2026-03-04T10:00:00Z", "someone", 1.0);
    event["source"] = json!(source);
    event
}

async fn send(request: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = request.send().await.expect("the service answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test]
async fn every_data_endpoint_needs_a_known_token_and_health_endpoints_do_not() {
    let stack = TestStack::start().await;
    let event = hours("1", "alpha", "2026-03-04T10:00:00Z", "p", 1.0);
    let data_requests = [
        stack
            .http
            .post(format!("{}/v1/events", stack.ingest_url))
            .header("content-type", "application/json")
            .body(event.to_string()),
        stack.http.post(format!("{}/v1/movements/alpha/erasures", stack.ingest_url)).body(r#"{"participant":"p"}"#),
        stack.http.get(format!("{}/v1/movements", stack.query_url)),
        stack.http.get(format!("{}/v1/movements/alpha/trends", stack.query_url)),
        stack.http.get(format!("{}/v1/compare?movements=alpha&metric=meetings", stack.query_url)),
        stack.http.get(format!("{}/v1/status", stack.query_url)),
    ];
    for request in data_requests {
        let anonymous = request.try_clone().unwrap();
        let (status, headers, body) = send(anonymous).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(headers["www-authenticate"], "Bearer realm=\"momentum\"");
        assert_eq!(body["type"], "urn:momentum:problem:unauthorized");
        let (status, _, _) = send(request.try_clone().unwrap().bearer_auth("not-a-token")).await;
        assert_eq!(status, 401);
        let (status, _, _) = send(request.header("authorization", "Basic YWRtaW46YWRtaW4=")).await;
        assert_eq!(status, 401);
    }
    for url in [&stack.ingest_url, &stack.query_url] {
        for path in ["/livez", "/readyz"] {
            let (status, _, body) = send(stack.http.get(format!("{url}{path}"))).await;
            assert_eq!(status, 200, "{url}{path}: {body}");
        }
    }
    // An unknown path is still a 404, not a demand for a token.
    let (status, _, _) = send(stack.http.get(format!("{}/no/such/path", stack.query_url))).await;
    assert_eq!(status, 404);
    stack.stop().await;
}

#[tokio::test]
async fn partners_post_only_their_own_source_for_their_movements_and_read_nothing() {
    let stack = TestStack::start().await;
    let post = |body: Value, content_type: &str| {
        stack
            .http
            .post(format!("{}/v1/events", stack.ingest_url))
            .bearer_auth(PARTNER_TOKEN)
            .header("content-type", content_type)
            .body(body.to_string())
    };
    let own = partner_event("own", "urn:test:partner", "alpha");
    let (status, _, body) = send(post(own.clone(), "application/cloudevents+json")).await;
    assert_eq!(status, 202, "{body}");

    let (status, _, body) = send(post(partner_event("x", "urn:test:other", "alpha"), "application/json")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errors"][0]["pointer"], "/source");
    let (status, _, body) = send(post(partner_event("y", "urn:test:partner", "beta"), "application/json")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errors"][0]["pointer"], "/subject");

    // In a batch, each event is judged on its own.
    let batch = json!([
        partner_event("b1", "urn:test:partner", "alpha"),
        partner_event("b2", "urn:test:other", "alpha"),
        partner_event("b3", "urn:test:partner", "beta"),
    ]);
    let (status, _, body) = send(post(batch, "application/cloudevents-batch+json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["accepted"].as_u64(), body["rejected"].as_u64()), (Some(1), Some(2)), "{body}");
    assert_eq!(body["results"][1]["problem"]["status"], 403);
    assert_eq!(body["results"][2]["problem"]["errors"][0]["pointer"], "/subject");

    // A partner retracting another source's event retracts nothing: a
    // retraction names an id within its own source.
    let mut admin_event = hours("shared-id", "alpha", "2026-03-04T10:00:00Z", "q", 3.0);
    admin_event["source"] = json!("urn:test:someone-else");
    let (status, _) = stack.post_event(&admin_event).await;
    assert_eq!(status, 202);
    let retraction =
        event("r1", "event.retracted", "alpha", "2026-03-05T10:00:00Z", json!({ "event_id": "shared-id" }));
    let mut retraction = retraction;
    retraction["source"] = json!("urn:test:partner");
    let (status, _, body) = send(post(retraction, "application/json")).await;
    assert_eq!(status, 202, "{body}");
    let seq = body["seq"].as_u64().unwrap();
    let trend = stack.weekly_trend("alpha", "2026-03-02", "2026-03-08", seq).await;
    assert_eq!(row(&trend, "2026-03-02")["volunteer_hours"], 1.0 + 1.0 + 3.0, "the other source's hours stay");

    let (status, _, body) =
        send(stack.http.get(format!("{}/v1/movements/alpha/trends", stack.query_url)).bearer_auth(PARTNER_TOKEN)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["type"], "urn:momentum:problem:forbidden");
    stack.stop().await;
}

#[tokio::test]
async fn evaluators_read_only_the_movements_of_their_token_and_post_nothing() {
    let stack = TestStack::start().await;
    let (_, body) = stack
        .post_batch(&[
            hours("a1", "alpha", "2026-03-04T10:00:00Z", "p", 1.0),
            hours("b1", "beta", "2026-03-04T10:00:00Z", "p", 1.0),
        ])
        .await;
    let seq = body["max_seq"].as_u64().unwrap();
    let get = |path: String| stack.http.get(format!("{}{path}", stack.query_url)).bearer_auth(EVALUATOR_TOKEN);

    let (status, _, body) = send(get(format!("/v1/movements?min_seq={seq}"))).await;
    assert_eq!(status, 200, "{body}");
    let listed: Vec<&str> =
        body["movements"].as_array().unwrap().iter().map(|m| m["movement"].as_str().unwrap()).collect();
    assert_eq!(listed, ["alpha"]);
    let (status, all) = stack.query(&format!("/v1/movements?min_seq={seq}")).await;
    assert_eq!((status, all["movements"].as_array().unwrap().len()), (200, 2), "admin sees both");

    let (status, _, _) = send(get("/v1/movements/alpha/trends?interval=week".to_owned())).await;
    assert_eq!(status, 200);
    for path in ["/v1/movements/beta/trends", "/v1/movements/beta/cohorts", "/v1/movements/beta/principles"] {
        let (status, _, body) = send(get(path.to_owned())).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    let (status, _, _) = send(get("/v1/compare?movements=alpha,beta&metric=meetings".to_owned())).await;
    assert_eq!(status, 403);

    let post = stack
        .http
        .post(format!("{}/v1/events", stack.ingest_url))
        .bearer_auth(EVALUATOR_TOKEN)
        .header("content-type", "application/json")
        .body(hours("e1", "alpha", "2026-03-04T10:00:00Z", "p", 1.0).to_string());
    let (status, _, body) = send(post).await;
    assert_eq!(status, 403, "{body}");
    let erase = stack
        .http
        .post(format!("{}/v1/movements/alpha/erasures", stack.ingest_url))
        .bearer_auth(EVALUATOR_TOKEN)
        .body(r#"{"participant":"p"}"#);
    assert_eq!(send(erase).await.0, 403, "only admins erase");
    stack.stop().await;
}

#[tokio::test]
async fn raw_participant_refs_never_reach_the_stream_or_the_projection_and_counts_are_unchanged() {
    let stack = TestStack::start().await;
    let events = [
        meeting("m1", "alpha", "2026-03-04T10:00:00Z", &["alice@example.org", "bob-1234"], "carol.organiser"),
        hours("h1", "alpha", "2026-03-04T12:00:00Z", "alice@example.org", 2.0),
        hours("h2", "beta", "2026-03-04T12:00:00Z", "alice@example.org", 1.0),
    ];
    let (status, body) = stack.post_batch(&events).await;
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(3)), "{body}");
    let seq = body["max_seq"].as_u64().unwrap();
    let trend = stack.weekly_trend("alpha", "2026-03-02", "2026-03-08", seq).await;
    assert_eq!(row(&trend, "2026-03-02")["active_participants"], 3);
    assert_eq!(row(&trend, "2026-03-02")["volunteers"], 1);

    let stored = stored_events(&stack.nats.url()).await;
    let text = serde_json::to_string(&stored).unwrap();
    for raw in ["alice@example.org", "bob-1234", "carol.organiser"] {
        assert!(!text.contains(raw), "{raw} reached the stream: {text}");
    }
    let meeting_attendees = &stored[0]["data"]["attendees"];
    let alice_in_alpha = meeting_attendees[0].as_str().unwrap();
    assert!(alice_in_alpha.starts_with("p1-"), "{alice_in_alpha}");
    assert_eq!(stored[1]["data"]["participant"], alice_in_alpha, "the same person in the same movement is linked");
    assert_ne!(stored[2]["data"]["participant"], alice_in_alpha, "the same ref in another movement is not");
    assert_eq!(stored[0]["id"], "m1", "only refs change; the envelope stays as posted");

    // Nor does sled hold them: the projector's files contain no raw ref.
    for entry in walk(stack.projector_data.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        for raw in ["alice@example.org", "bob-1234", "carol.organiser"] {
            assert!(!bytes.windows(raw.len()).any(|window| window == raw.as_bytes()), "{raw} in {}", entry.display());
        }
    }
    stack.stop().await;
}

fn walk(folder: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

#[tokio::test]
async fn an_erased_participant_is_forgotten_and_their_later_events_cannot_be_tied_to_earlier_ones() {
    let stack = TestStack::start().await;
    let (_, body) = stack
        .post_batch(&[
            meeting("m1", "alpha", "2026-03-04T10:00:00Z", &["erin", "fred"], "olga"),
            hours("h1", "alpha", "2026-03-04T12:00:00Z", "erin", 2.0),
        ])
        .await;
    let seq = body["max_seq"].as_u64().unwrap();
    let before = stack.weekly_trend("alpha", "2026-03-02", "2026-03-08", seq).await;
    let old_pseudonym = stored_events(&stack.nats.url()).await[1]["data"]["participant"].as_str().unwrap().to_owned();

    let erase = |participant: &str| {
        stack
            .http
            .post(format!("{}/v1/movements/alpha/erasures", stack.ingest_url))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(json!({ "participant": participant }).to_string())
    };
    let (status, _, body) = send(erase("erin")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["pseudonyms_erased"], 1);
    let erasure_seq = body["seq"].as_u64().unwrap();
    let stored = stored_events(&stack.nats.url()).await;
    let erasure = stored.last().unwrap();
    assert_eq!(erasure["type"], "participant.erased");
    assert_eq!(erasure["data"]["pseudonyms"], json!([old_pseudonym]));
    assert!(!serde_json::to_string(&stored).unwrap().contains("\"erin\""), "the raw ref is nowhere in the stream");

    // Published totals stay.
    let after = stack.weekly_trend("alpha", "2026-03-02", "2026-03-08", erasure_seq).await;
    assert_eq!(row(&after, "2026-03-02"), row(&before, "2026-03-02"));
    // A second erasure finds nothing left to tie to her.
    let (status, _, body) = send(erase("erin")).await;
    assert_eq!((status, body["pseudonyms_erased"].as_u64()), (200, Some(0)), "{body}");

    // Her next event gets a new pseudonym, unrelated to the old one.
    let (status, body) = stack.post_event(&hours("h2", "alpha", "2026-03-05T12:00:00Z", "erin", 1.0)).await;
    assert_eq!(status, 202, "{body}");
    let new_pseudonym = stored_events(&stack.nats.url()).await.last().unwrap()["data"]["participant"].clone();
    assert_ne!(new_pseudonym, json!(old_pseudonym));
    let later = stack.weekly_trend("alpha", "2026-03-02", "2026-03-08", body["seq"].as_u64().unwrap()).await;
    assert_eq!(
        row(&later, "2026-03-02")["active_participants"],
        row(&before, "2026-03-02")["active_participants"].as_i64().unwrap() + 1,
        "she now counts as someone new"
    );

    let (status, _, body) = send(
        stack
            .http
            .post(format!("{}/v1/movements/Not*Valid/erasures", stack.ingest_url))
            .bearer_auth(ADMIN_TOKEN)
            .body("{}"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["pointer"], "movement");
    stack.stop().await;
}

#[tokio::test]
async fn evaluators_see_small_counts_of_people_suppressed_when_configured_and_admins_see_them_whole() {
    let stack = TestStack::start().await;
    let mut config = query_config(&stack.nats.url());
    config.suppress_below = 5;
    let (suppressing, url) = spawn_query(&config).await;
    let people: Vec<String> = (0..7).map(|index| format!("person-{index}")).collect();
    let few: Vec<&str> = people.iter().take(3).map(String::as_str).collect();
    let many: Vec<&str> = people.iter().map(String::as_str).collect();
    let (_, body) = stack
        .post_batch(&[
            meeting("w1", "alpha", "2026-03-04T10:00:00Z", &few, "person-0"),
            meeting("w2", "alpha", "2026-03-11T10:00:00Z", &many, "person-0"),
        ])
        .await;
    let seq = body["max_seq"].as_u64().unwrap();
    let path = format!("/v1/movements/alpha/trends?interval=week&from=2026-03-02&to=2026-03-15&min_seq={seq}");
    let read = |token: &'static str, path: String| stack.http.get(format!("{url}{path}")).bearer_auth(token);

    let (status, _, suppressed) = send(read(EVALUATOR_TOKEN, path.clone())).await;
    assert_eq!(status, 200, "{suppressed}");
    assert_eq!(suppressed["suppressed_below"], 5);
    let (first, second) = (row(&suppressed, "2026-03-02"), row(&suppressed, "2026-03-09"));
    assert_eq!(first["active_participants"], Value::Null, "3 people is too few to publish");
    assert_eq!(first["meetings"], 1, "counts of events are not suppressed");
    assert_eq!(second["active_participants"], 7);
    assert_eq!(second["retention_rate"], Value::Null, "a ratio over a suppressed count is suppressed too");

    let (_, _, whole) = send(read(ADMIN_TOKEN, path.clone())).await;
    assert_eq!(row(&whole, "2026-03-02")["active_participants"], 3);
    assert!(whole.get("suppressed_below").is_none());

    // A metrics filter without the active count still suppresses ratios.
    let (_, _, filtered) = send(read(EVALUATOR_TOKEN, format!("{path}&metrics=retention_rate,meetings"))).await;
    let filtered_row = row(&filtered, "2026-03-09");
    assert_eq!(filtered_row["retention_rate"], Value::Null);
    assert!(filtered_row.get("active_participants").is_none(), "only what was asked for: {filtered}");

    // Active = new + returning: with one of them hidden, the smaller other
    // one is hidden too, or subtraction would show it. Week 3: 10 active,
    // 3 new, 7 returning. Week 4: 8 active, 6 new, 2 returning, 2 retained
    // of week 3's 10, so its retention rate (0.2) would show the 2.
    let more: Vec<String> = (0..16).map(|index| format!("person-{index}")).collect();
    let third: Vec<&str> = more[..10].iter().map(String::as_str).collect();
    let fourth: Vec<&str> = more[8..16].iter().map(String::as_str).collect();
    let (_, body) = stack
        .post_batch(&[
            meeting("w3", "alpha", "2026-03-18T10:00:00Z", &third, "person-0"),
            meeting("w4", "alpha", "2026-03-25T10:00:00Z", &fourth, "person-8"),
        ])
        .await;
    let seq = body["max_seq"].as_u64().unwrap();
    let range = format!("interval=week&from=2026-03-02&to=2026-03-29&min_seq={seq}");
    let (_, _, trend) = send(read(EVALUATOR_TOKEN, format!("/v1/movements/alpha/trends?{range}"))).await;
    let (third_week, fourth_week) = (row(&trend, "2026-03-16"), row(&trend, "2026-03-23"));
    assert_eq!(third_week["active_participants"], 10, "{trend}");
    assert_eq!(third_week["new_participants"], Value::Null);
    assert_eq!(third_week["returning_participants"], Value::Null, "10 - 7 would give the 3 new people");
    assert_eq!(fourth_week["active_participants"], 8);
    assert_eq!(fourth_week["new_participants"], Value::Null, "8 - 6 would give the 2 returning people");
    assert_eq!(fourth_week["retention_rate"], Value::Null, "0.2 of 10 would give the 2 retained");
    let (_, _, whole) = send(read(ADMIN_TOKEN, format!("/v1/movements/alpha/trends?{range}"))).await;
    assert_eq!(row(&whole, "2026-03-23")["retention_rate"], 0.2, "admins see it whole: {whole}");
    // Asking for one metric at a time hides the same.
    let (_, _, alone) =
        send(read(EVALUATOR_TOKEN, format!("/v1/movements/alpha/trends?{range}&metrics=returning_participants"))).await;
    assert_eq!(row(&alone, "2026-03-16")["returning_participants"], Value::Null, "{alone}");
    // A comparison hides what the trend hides.
    for (metric, period, expected) in [
        ("returning_participants", "2026-03-16", Value::Null),
        ("active_participants", "2026-03-16", Value::from(10)),
        ("new_participants", "2026-03-23", Value::Null),
        ("retention_rate", "2026-03-23", Value::Null),
    ] {
        let path = format!("/v1/compare?movements=alpha&metric={metric}&{range}");
        let (status, _, compared) = send(read(EVALUATOR_TOKEN, path)).await;
        assert_eq!(status, 200, "{compared}");
        assert_eq!(compared["suppressed_below"], 5);
        let values = compared["series"][0]["values"].as_array().unwrap();
        let value = &values.iter().find(|value| value["period"] == period).unwrap()["value"];
        assert_eq!(*value, expected, "{metric} in the week of {period}: {compared}");
    }

    let (status, _, cohorts) = send(read(
        EVALUATOR_TOKEN,
        format!("/v1/movements/alpha/cohorts?interval=week&from=2026-03-02&to=2026-03-15&min_seq={seq}"),
    ))
    .await;
    assert_eq!(status, 200, "{cohorts}");
    assert_eq!(cohorts["cohorts"][0]["size"], Value::Null);
    assert_eq!(cohorts["cohorts"][1]["size"], Value::Null, "4 new people in the second week");
    let csv = stack
        .http
        .get(format!("{url}/v1/movements/alpha/cohorts?interval=week&from=2026-03-02&to=2026-03-15&format=csv"))
        .bearer_auth(EVALUATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    let text = csv.text().await.unwrap();
    assert!(
        text.lines().nth(1).unwrap().starts_with("2026-03-02,2026-W10,true,,"),
        "a suppressed cell is empty: {text}"
    );
    suppressing.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn a_token_that_posts_faster_than_its_limit_gets_429_with_retry_after_and_others_do_not() {
    let stack = TestStack::start().await;
    let mut config = ingest_config(&stack.nats.url());
    config.rate_events_per_s = 10;
    config.rate_burst_events = 1000;
    let (limited, url) = spawn_ingest(&config).await;
    let batch: Vec<Value> =
        (0..1000).map(|index| partner_event(&format!("burst-{index}"), "urn:test:partner", "alpha")).collect();
    let post = |token: &str, body: String| {
        stack
            .http
            .post(format!("{url}/v1/events"))
            .bearer_auth(token)
            .header("content-type", "application/cloudevents-batch+json")
            .body(body)
    };
    let (status, _, body) = send(post(PARTNER_TOKEN, Value::from(batch).to_string())).await;
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(1000)), "the burst is allowed");
    // 50 more need 5 s of refill at 10 a second, however long the first took.
    let more: Vec<Value> =
        (0..50).map(|index| partner_event(&format!("more-{index}"), "urn:test:partner", "alpha")).collect();
    let more = Value::from(more).to_string();
    let (status, headers, body) = send(post(PARTNER_TOKEN, more.clone())).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["type"], "urn:momentum:problem:rate-limited");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=5).contains(&wait), "50 events at 10 a second is at most 5 s away: {wait}");
    let (status, _, _) = send(post(ADMIN_TOKEN, more)).await;
    assert_eq!(status, 200, "another token has its own allowance");
    limited.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn the_services_refuse_to_start_without_an_auth_file_or_a_pseudonym_key_unless_told_otherwise() {
    let nats = momentum_testkit::NatsServer::start();
    let mut config = ingest_config(&nats.url());
    config.auth.auth_file = None;
    let Err(error) = momentum_ingest::Ingest::start(&config).await else { panic!("ingest started without auth") };
    assert!(error.to_string().contains("MOMENTUM_AUTH_FILE"), "{error}");

    let mut config = ingest_config(&nats.url());
    config.pseudonym_key_file = None;
    let Err(error) = momentum_ingest::Ingest::start(&config).await else { panic!("ingest started without a key") };
    assert!(error.to_string().contains("MOMENTUM_PSEUDONYM_KEY_FILE"), "{error}");

    let mut config = query_config(&nats.url());
    config.auth.auth_file = None;
    let Err(error) = momentum_query::QueryService::start(&config).await else { panic!("query started without auth") };
    assert!(error.to_string().contains("MOMENTUM_AUTH_FILE"), "{error}");

    // Switched off explicitly, it starts, and anyone may read.
    config.auth.auth = momentum_runtime::auth::AuthMode::Off;
    let (open, url) = spawn_query(&config).await;
    let response = reqwest::get(format!("{url}/v1/status")).await.unwrap();
    assert_ne!(response.status(), 401, "no token is asked for when auth is off");
    open.stop().await;
}

#[tokio::test]
async fn after_a_key_rotation_new_events_use_the_new_key_and_erasure_finds_the_pseudonyms_of_both() {
    let stack = TestStack::start().await;
    let keys = tempfile::tempdir().unwrap();
    let secret = |byte: &str| byte.repeat(32);
    let old_keys = format!("current = 1\n[[key]]\nversion = 1\nsecret = \"{}\"\n", secret("a1"));
    let rotated = format!(
        "current = 2\n[[key]]\nversion = 1\nsecret = \"{}\"\n[[key]]\nversion = 2\nsecret = \"{}\"\n",
        secret("a1"),
        secret("b2")
    );
    let post = |url: String, event: Value| {
        stack
            .http
            .post(format!("{url}/v1/events"))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(event.to_string())
    };

    std::fs::write(keys.path().join("keys.toml"), old_keys).unwrap();
    let mut config = ingest_config(&stack.nats.url());
    config.pseudonym_key_file = Some(keys.path().join("keys.toml"));
    let (before, url) = spawn_ingest(&config).await;
    let (status, _, body) = send(post(url, hours("k1", "alpha", "2026-03-04T10:00:00Z", "rosa", 1.0))).await;
    assert_eq!(status, 202, "{body}");
    before.stop().await;

    std::fs::write(keys.path().join("keys.toml"), rotated).unwrap();
    let (after, url) = spawn_ingest(&config).await;
    let (status, _, body) = send(post(url.clone(), hours("k2", "alpha", "2026-03-05T10:00:00Z", "rosa", 1.0))).await;
    assert_eq!(status, 202, "{body}");

    let stored = stored_events(&stack.nats.url()).await;
    let (first, second) =
        (stored[0]["data"]["participant"].as_str().unwrap(), stored[1]["data"]["participant"].as_str().unwrap());
    assert!(first.starts_with("p1-") && second.starts_with("p2-"), "{first} {second}");

    let erase = stack
        .http
        .post(format!("{url}/v1/movements/alpha/erasures"))
        .bearer_auth(ADMIN_TOKEN)
        .body(r#"{"participant":"rosa"}"#);
    let (status, _, body) = send(erase).await;
    assert_eq!((status, body["pseudonyms_erased"].as_u64()), (202, Some(2)), "{body}");
    let erased = stored_events(&stack.nats.url()).await.last().unwrap()["data"]["pseudonyms"].clone();
    assert_eq!(erased, json!([first, second]));
    after.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn an_ingest_replica_that_has_not_seen_a_participant_gives_them_the_pseudonym_another_replica_gave() {
    let stack = TestStack::start().await;
    let (status, body) = stack.post_event(&hours("r1", "alpha", "2026-03-04T10:00:00Z", "rosa", 1.0)).await;
    assert_eq!(status, 202, "{body}");
    // A second replica starts with an empty cache: its salt for rosa must
    // come from the bucket, not be made anew.
    let (replica, url) = spawn_ingest(&ingest_config(&stack.nats.url())).await;
    let post = |id: &str, participant: &str| {
        stack
            .http
            .post(format!("{url}/v1/events"))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(hours(id, "alpha", "2026-03-05T10:00:00Z", participant, 1.0).to_string())
    };
    for (id, participant) in [("r2", "rosa"), ("r3", "sam")] {
        let (status, _, body) = send(post(id, participant)).await;
        assert_eq!(status, 202, "{body}");
    }
    let stored = stored_events(&stack.nats.url()).await;
    let pseudonyms: Vec<&str> = stored.iter().map(|event| event["data"]["participant"].as_str().unwrap()).collect();
    assert_eq!(pseudonyms.len(), 3);
    assert_eq!(pseudonyms[0], pseudonyms[1], "rosa has one pseudonym whichever replica saw her");
    assert_ne!(pseudonyms[1], pseudonyms[2], "sam is someone else");
    assert!(pseudonyms.iter().all(|pseudonym| pseudonym.starts_with('p') && !pseudonym.contains("rosa")));
    replica.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn partners_learn_what_became_of_their_own_events_and_never_of_another_sources() {
    let stack = TestStack::start().await;
    let mine = |id: &str| partner_event(id, "urn:test:partner", "alpha");
    let theirs = |id: &str, movement: &str| partner_event(id, "urn:test:other", movement);
    let mut retraction =
        event("fix-1", "event.retracted", "alpha", "2026-03-05T10:00:00Z", json!({ "event_id": "h1" }));
    retraction["source"] = json!("urn:test:partner");
    let posted = [mine("h1"), mine("h2"), theirs("h1", "alpha"), theirs("t1", "beta"), retraction];
    let (status, body) = stack.post_batch(&posted).await;
    assert_eq!(status, 200, "{body}");
    let sequences: Vec<u64> = body["results"].as_array().unwrap().iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    let last = body["max_seq"].as_u64().unwrap();

    let ask = |token: &'static str, id: &str, source: &str| {
        let url = format!("{}/v1/events/{id}?source={source}&min_seq={last}", stack.query_url);
        send(stack.http.get(url).bearer_auth(token))
    };
    // Accepted with its sequence; retracted with the retraction's id; unknown.
    let (status, _, h2) = ask(PARTNER_TOKEN, "h2", "urn:test:partner").await;
    assert_eq!(status, 200, "{h2}");
    assert_eq!(h2["events"], json!([{ "id": "h2", "status": "accepted", "movement": "alpha", "seq": sequences[1] }]));
    let (_, _, h1) = ask(PARTNER_TOKEN, "h1", "urn:test:partner").await;
    assert_eq!(
        h1["events"],
        json!([{ "id": "h1", "status": "retracted", "movement": "alpha", "seq": sequences[0], "retracted_by": "fix-1" }])
    );
    let (_, _, never) = ask(PARTNER_TOKEN, "never-posted", "urn:test:partner").await;
    assert_eq!(never["events"], json!([{ "id": "never-posted", "status": "unknown" }]));

    // Another source's ids are not found, whatever they are; nor by an evaluator.
    for id in ["t1", "h1", "never-posted"] {
        let (status, _, body) = ask(PARTNER_TOKEN, id, "urn:test:other").await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["type"], "urn:momentum:problem:unknown-event");
    }
    let (status, _, _) = ask(EVALUATOR_TOKEN, "h2", "urn:test:partner").await;
    assert_eq!(status, 403);
    // The other partner sees its own, in every movement; the first partner's token covers only alpha.
    let (_, _, t1) = ask(momentum_tests::OTHER_PARTNER_TOKEN, "t1", "urn:test:other").await;
    assert_eq!(t1["events"][0]["movement"], "beta", "{t1}");
    let (_, _, h1_theirs) = ask(momentum_tests::OTHER_PARTNER_TOKEN, "h1", "urn:test:other").await;
    assert_eq!(
        h1_theirs["events"],
        json!([{ "id": "h1", "status": "accepted", "movement": "alpha", "seq": sequences[2] }])
    );

    // Many at once, in the order asked, repeats once.
    let url = format!("{}/v1/events/status?min_seq={last}", stack.query_url);
    let body = json!({ "source": "urn:test:partner", "ids": ["h2", "nope", "h1", "h2", "fix-1"] });
    let (status, _, many) = send(stack.http.post(&url).bearer_auth(PARTNER_TOKEN).json(&body)).await;
    assert_eq!(status, 200, "{many}");
    let statuses: Vec<(&str, &str)> = many["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| (item["id"].as_str().unwrap(), item["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [("h2", "accepted"), ("nope", "unknown"), ("h1", "retracted"), ("fix-1", "accepted")]);
    let other = json!({ "source": "urn:test:other", "ids": ["t1"] });
    assert_eq!(send(stack.http.post(&url).bearer_auth(PARTNER_TOKEN).json(&other)).await.0, 404);
    let too_many = json!({ "source": "urn:test:partner", "ids": vec!["x"; 1001] });
    let (status, _, problem) = send(stack.http.post(&url).bearer_auth(PARTNER_TOKEN).json(&too_many)).await;
    assert_eq!(status, 400);
    assert_eq!(problem["errors"][0]["pointer"], "/ids", "{problem}");
    stack.stop().await;
}
