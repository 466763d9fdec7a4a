//! End-to-end tests: real nats-server, real services, real HTTP.

use std::time::{Duration, Instant};

use momentum_tests::*;
use serde_json::{Value, json};

const MOVEMENT: &str = "leeds-walking";

/// The scenario most tests share: four valid events in March and one on a
/// summer Sunday night that London counts in the next week.
fn scenario() -> (Value, Vec<Value>) {
    let single = meeting("m1", MOVEMENT, "2026-03-04T18:00:00Z", &["a", "b", "c"], "o1");
    let batch = vec![
        hours("h1", MOVEMENT, "2026-03-05T10:00:00Z", "a", 2.5),
        action("x1", MOVEMENT, "2026-03-07T11:00:00+00:00", &["b", "d"], 100),
        hours("too-long", MOVEMENT, "2026-03-05T10:00:00Z", "a", 30.0),
        hours("h2", MOVEMENT, "2026-06-07T23:30:00Z", "e", 1.25),
    ];
    (single, batch)
}

async fn post_scenario(stack: &TestStack) -> u64 {
    let (single, batch) = scenario();
    let (status, body) = stack.post_event(&single).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["id"], "m1");
    assert_eq!(body["seq"], 1);

    let (status, body) = stack.post_batch(&batch).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 3);
    assert_eq!(body["rejected"], 1);
    assert_eq!(body["duplicates"], 0);
    let rejected = &body["results"][2];
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(rejected["id"], "too-long");
    assert_eq!(rejected["problem"]["errors"][0]["pointer"], "/data/hours");
    assert!(rejected.get("seq").is_none(), "a rejected event has no sequence");
    assert_eq!(body["results"][3]["status"], "accepted");
    body["max_seq"].as_u64().expect("a max_seq")
}

fn assert_scenario_numbers(trend: &Value) {
    assert_eq!(trend["movement"], MOVEMENT);
    assert_eq!(trend["interval"], "week");
    let series = trend["series"].as_array().unwrap();
    assert_eq!(series.len(), 15, "one row per week from 2 March to 8 June");
    let march = row(trend, "2026-03-02");
    assert_eq!(march["meetings"], 1);
    assert_eq!(march["volunteer_hours"], 2.5);
    assert_eq!(march["collective_actions"], 1);
    assert_eq!(march["active_participants"], 5, "a, b, c, d and the organiser o1");
    assert_eq!(march["attendances"], 4);
    assert_eq!(march["people_reached"], 100);
    let quiet = row(trend, "2026-03-09");
    for metric in ["meetings", "collective_actions", "active_participants"] {
        assert_eq!(quiet[metric], 0, "{metric} in a quiet week");
    }
    assert_eq!(row(trend, "2026-06-01")["volunteer_hours"], 0.0, "23:30Z on Sunday 7 June is Monday in London");
    let june = row(trend, "2026-06-08");
    assert_eq!(june["volunteer_hours"], 1.25);
    assert_eq!(june["active_participants"], 1);
}

#[tokio::test]
async fn events_posted_singly_and_in_batches_appear_in_the_weekly_trend_with_exact_numbers() {
    let stack = TestStack::start().await;
    let max_seq = post_scenario(&stack).await;
    assert_eq!(max_seq, 4);
    let trend = stack.weekly_trend(MOVEMENT, "2026-03-04", "2026-06-14", max_seq).await;
    assert!(trend["watermark"].as_u64().unwrap() >= max_seq);
    assert_scenario_numbers(&trend);

    let (status, movements) = stack.query(&format!("/v1/movements?min_seq={max_seq}")).await;
    assert_eq!(status, 200);
    assert_eq!(movements["movements"], json!([{ "movement": MOVEMENT, "events": 4 }]));
    let (status, current) = stack.query("/v1/status").await;
    assert_eq!(status, 200);
    assert_eq!(current["watermark"], 4);
    stack.stop().await;
}

#[tokio::test]
async fn the_projector_answers_trend_totals_as_json_unless_asked_for_binary_and_the_query_service_asks_for_binary() {
    use futures::StreamExt;
    use momentum_domain::query::TrendTotals;
    let stack = TestStack::start().await;
    let max_seq = post_scenario(&stack).await;
    let nats = async_nats::connect(stack.nats.url()).await.unwrap();
    let subject = subject_of_totals();
    let request = json!({ "movement": MOVEMENT, "interval": "week", "from": "2026-03-02", "to": "2026-06-14",
        "min_seq": max_seq });
    let json_answer = nats.request(subject.clone(), request.to_string().into()).await.unwrap().payload;
    let mut binary_request = request.clone();
    binary_request["totals_encoding"] = json!("binary");
    let binary_answer = nats.request(subject.clone(), binary_request.to_string().into()).await.unwrap().payload;

    // An older query service, which never asks, still gets JSON.
    let from_json: TrendTotals = serde_json::from_slice(&json_answer).expect("the default answer is JSON");
    assert_ne!(binary_answer.first(), Some(&b'{'));
    assert!(binary_answer.len() < json_answer.len(), "{} against {} bytes", binary_answer.len(), json_answer.len());
    let from_binary = TrendTotals::from_answer(&binary_answer).unwrap();
    assert_eq!(from_binary, from_json);
    assert!(from_binary.watermark >= max_seq);
    assert!(from_binary.totals.iter().any(|period| period.active_participants > 0));

    // The query service asks for the binary form: a plain subscriber sees
    // every request on the subject beside the projector's queue group.
    let mut requests = nats.subscribe(subject_of_totals()).await.unwrap();
    subscriptions_in_place(&nats).await;
    stack.weekly_trend(MOVEMENT, "2026-03-04", "2026-06-14", max_seq).await;
    let asked = tokio::time::timeout(Duration::from_secs(5), requests.next()).await.unwrap().unwrap();
    let asked: Value = serde_json::from_slice(&asked.payload).unwrap();
    assert_eq!(asked["totals_encoding"], "binary_with_basis", "{asked}");
    // Asked for the form of the version before, the projector answers it,
    // for a query service of that version during an upgrade.
    assert_eq!(binary_answer.first(), Some(&1), "version 1 of the binary form");
    stack.stop().await;
}

fn subject_of_totals() -> String {
    momentum_bus::Partition::WHOLE.read_subject::<momentum_bus::protocol::TrendTotalsRequest>()
}

#[tokio::test]
async fn posting_the_same_events_again_reports_duplicates_and_changes_no_number() {
    let stack = TestStack::start().await;
    let max_seq = post_scenario(&stack).await;
    let before = stack.weekly_trend(MOVEMENT, "2026-03-04", "2026-06-14", max_seq).await;

    let (single, batch) = scenario();
    let (status, body) = stack.post_event(&single).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "duplicate");
    assert_eq!(body["seq"], 1, "a duplicate names the sequence of the original");
    let (status, body) = stack.post_batch(&batch).await;
    assert_eq!(status, 200);
    assert_eq!(body["duplicates"], 3);
    assert_eq!(body["accepted"], 0);
    assert_eq!(body["rejected"], 1);

    // A marker event proves the projector has read past the repeats.
    let marker = hours("marker", "another-movement", "2026-03-05T10:00:00Z", "z", 1.0);
    let (status, body) = stack.post_event(&marker).await;
    assert_eq!(status, 202);
    assert_eq!(body["seq"], 5, "repeats took no stream sequence");
    let after = stack.weekly_trend(MOVEMENT, "2026-03-04", "2026-06-14", 5).await;
    assert_eq!(after["series"], before["series"]);
    stack.stop().await;
}

#[tokio::test]
async fn a_read_waiting_for_min_seq_waits_out_a_projector_restart_and_answers() {
    let mut stack = TestStack::start().await;
    let max_seq = post_scenario(&stack).await;
    let (_, body) = stack.post_event(&hours("restart-1", MOVEMENT, "2026-03-06T10:00:00Z", "r", 2.0)).await;
    let seq = body["seq"].as_u64().expect("a sequence");
    assert!(seq > max_seq);
    stack.stop_projector().await;
    // Without `min_seq` the read says at once that no projector answers.
    let (status, _) = stack.query("/v1/status").await;
    assert_eq!(status, 503);
    // With it, the read waits while the projector restarts.
    let read = {
        let (http, url, token) = (stack.http.clone(), stack.query_url.clone(), stack.admin_token.clone());
        tokio::spawn(async move {
            let path =
                format!("/v1/movements/{MOVEMENT}/trends?interval=week&from=2026-03-02&to=2026-03-08&min_seq={seq}");
            let response = http.get(format!("{url}{path}")).bearer_auth(token).send().await.expect("query answers");
            (response.status().as_u16(), response.json::<Value>().await.expect("a JSON answer"))
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!read.is_finished(), "the read waits instead of failing while no projector runs");
    stack.start_projector().await;
    let (status, trend) = read.await.expect("the read ends");
    assert_eq!(status, 200, "{trend}");
    assert!(trend["watermark"].as_u64().expect("a watermark") >= seq);
    stack.stop().await;
}

#[tokio::test]
async fn a_restarted_projector_resumes_from_its_checkpoint_with_identical_numbers() {
    let mut stack = TestStack::start().await;
    let max_seq = post_scenario(&stack).await;
    let before = stack.weekly_trend(MOVEMENT, "2026-03-04", "2026-06-14", max_seq).await;
    stack.stop_projector().await;

    let (status, body) = stack.query("/v1/status").await;
    assert_eq!(status, 503, "no projector answers: {body}");
    assert_eq!(body["type"], "urn:momentum:problem:unavailable");

    stack.start_projector().await;
    let after = stack.weekly_trend(MOVEMENT, "2026-03-04", "2026-06-14", max_seq).await;
    assert_eq!(after["series"], before["series"]);
    let (_, status) = stack.query("/v1/status").await;
    assert_eq!(status["watermark"], max_seq);
    assert_eq!(status["applied_since_start"], 0, "nothing was read again from the stream");

    let (_, body) = stack.post_event(&hours("h3", MOVEMENT, "2026-03-06T10:00:00Z", "f", 1.0)).await;
    let seq = body["seq"].as_u64().unwrap();
    let trend = stack.weekly_trend(MOVEMENT, "2026-03-04", "2026-06-14", seq).await;
    assert_eq!(row(&trend, "2026-03-02")["volunteer_hours"], 3.5);
    assert_eq!(row(&trend, "2026-03-02")["active_participants"], 6);
    let (_, status) = stack.query("/v1/status").await;
    assert_eq!(status["applied_since_start"], 1, "only the new event was read");
    stack.stop().await;
}

#[tokio::test]
async fn ingest_answers_503_while_nats_is_down_and_accepts_again_once_it_is_back() {
    let mut stack = TestStack::start().await;
    let max_seq = post_scenario(&stack).await;
    stack.weekly_trend(MOVEMENT, "2026-03-04", "2026-06-14", max_seq).await;

    stack.nats.kill();
    let event = hours("while-down", MOVEMENT, "2026-03-06T10:00:00Z", "g", 2.0);
    let started = Instant::now();
    let response = stack
        .http
        .post(format!("{}/v1/events", stack.ingest_url))
        .bearer_auth(&stack.admin_token)
        .header("content-type", "application/cloudevents+json")
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    assert!(started.elapsed() < Duration::from_secs(10), "a 503, not a hang");
    let (status, _) = stack.post_batch(std::slice::from_ref(&event)).await;
    assert_eq!(status, 503, "a batch is refused whole, to be retried whole");

    stack.nats.restart();
    // The partner retries until the event is accepted; that is safe.
    let deadline = Instant::now() + Duration::from_secs(30);
    let seq = loop {
        let (status, body) = stack.post_event(&event).await;
        if status == 202 || status == 200 {
            break body["seq"].as_u64().unwrap();
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "ingest did not recover after NATS came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(seq, max_seq + 1, "the event was stored once");
    let trend = stack.weekly_trend(MOVEMENT, "2026-03-04", "2026-06-14", seq).await;
    assert_eq!(row(&trend, "2026-03-02")["volunteer_hours"], 4.5);
    stack.stop().await;
}

#[tokio::test]
async fn bad_requests_get_problem_details_that_name_what_is_wrong() {
    let stack = TestStack::start().await;
    let url = format!("{}/v1/events", stack.ingest_url);
    let post = |content_type: &'static str, body: String| {
        stack
            .http
            .post(url.clone())
            .bearer_auth(&stack.admin_token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let (single, _) = scenario();

    let response = post("text/plain", single.to_string()).await.unwrap();
    assert_eq!(response.status(), 415);
    assert_eq!(response.headers()["content-type"], "application/problem+json");

    let response = post("application/cloudevents+json", "{\"id\": ".to_owned()).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "urn:momentum:problem:malformed-json");

    let response = post("application/cloudevents+json", "x".repeat(5 * 1024 * 1024)).await.unwrap();
    assert_eq!(response.status(), 413);

    let mut invalid = single.clone();
    invalid["subject"] = json!("Not A Movement");
    invalid["data"]["atendees"] = json!(["typo"]);
    let (status, body) = stack.post_event(&invalid).await;
    assert_eq!(status, 422);
    assert_eq!(body["type"], "urn:momentum:problem:invalid-event");
    let pointers: Vec<&str> =
        body["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert!(pointers.contains(&"/subject"), "{body}");

    let mut invalid = single.clone();
    invalid["data"]["atendees"] = json!(["typo"]);
    let (status, body) = stack.post_event(&invalid).await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"][0]["pointer"], "/data");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("atendees"), "{body}");

    let too_many: Vec<Value> =
        (0..1001).map(|i| hours(&format!("h{i}"), MOVEMENT, "2026-03-05T10:00:00Z", "a", 1.0)).collect();
    let (status, body) = stack.post_batch(&too_many).await;
    assert_eq!(status, 413, "{body}");

    let response = post("application/cloudevents-batch+json", single.to_string()).await.unwrap();
    assert_eq!(response.status(), 400, "a batch must be an array");

    let (status, body) = stack.query("/v1/movements/leeds-walking/trends?interval=fortnight").await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["pointer"], "interval");
    assert!(body["detail"].as_str().unwrap().contains("day, week, month"), "{body}");
    let (status, body) = stack.query("/v1/movements/leeds-walking/trends?from=2026-13-01").await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["pointer"], "from");
    let (status, _) = stack.query("/v1/movements/no-such-movement/trends?min_seq=0").await;
    assert_eq!(status, 404);
    let (status, body) = stack.query("/v1/status?min_seq=999").await;
    assert_eq!(status, 503, "a watermark that is never reached: {body}");
    stack.stop().await;
}

/// Many events over several movements and weeks, with retractions.
fn many_events(count: usize) -> Vec<Value> {
    (0..count)
        .map(|index| {
            let movement = ["leeds-walking", "bristol-befriending", "hull-food"][index % 3];
            let day = 1 + (index * 7) % 28;
            let time = format!("2026-0{}-{day:02}T{:02}:15:00Z", 1 + index % 6, index % 24);
            let participant = format!("p{}", index % 97);
            match index % 5 {
                0 => meeting(&format!("e{index}"), movement, &time, &[&participant, "p1", "p2"], "o1"),
                1 | 2 => hours(&format!("e{index}"), movement, &time, &participant, 0.25 * (1 + index % 8) as f64),
                3 => action(&format!("e{index}"), movement, &time, &[&participant, "p3"], index as u64),
                _ => event(
                    &format!("e{index}"),
                    "event.retracted",
                    movement,
                    &time,
                    json!({ "event_id": format!("e{}", index - 3) }),
                ),
            }
        })
        .collect()
}

#[tokio::test]
async fn a_projector_killed_mid_stream_recovers_to_exactly_the_projection_folded_from_scratch() {
    let mut stack = TestStack::start().await;
    let events = many_events(6000);
    for chunk in events.chunks(500) {
        let (status, body) = stack.post_batch(chunk).await;
        assert_eq!(status, 200);
        assert_eq!(body["rejected"], 0, "{body}");
    }
    // Copies that arrive after JetStream's duplicate window would have
    // forgotten the originals: published without a message id, they take new
    // stream sequences, and the projector alone must count them once.
    let nats = async_nats::connect(stack.nats.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(nats.clone());
    for copy in events.iter().step_by(50) {
        let subject = momentum_bus::event_subject(copy["subject"].as_str().unwrap(), copy["type"].as_str().unwrap());
        jetstream.publish(subject, copy.to_string().into()).await.unwrap().await.unwrap();
    }
    let last_sequence = 6000 + 120;

    // A second projector, as a real child process, with one event per
    // batch so that it is still working when it is killed. It answers no
    // query until it has caught up, so its progress is read from its store
    // after the kill; the delay grows until the kill lands mid-stream. The
    // store's watermark moves only with a checkpoint (each second, or each
    // 2 500 events), so the steps are fine around the first seconds, and
    // reach far enough for a loaded machine's slow start.
    stack.stop_projector().await;
    let nats_url = stack.nats.url();
    let spawn = |data: &std::path::Path| {
        momentum_testkit::ChildProcess::spawn(
            std::process::Command::new(momentum_testkit::workspace_binary("momentum-projector"))
                .env("MOMENTUM_NATS_URL", &nats_url)
                .env("MOMENTUM_DATA_DIR", data)
                .env("MOMENTUM_BATCH_SIZE_MAX", "1")
                .env("MOMENTUM_HTTP_ADDR", "127.0.0.1:0")
                .env("RUST_LOG", "warn"),
        )
    };
    let mut killed_mid_stream = None;
    for delay_ms in [50, 100, 200, 400, 800, 1200, 1600, 2000, 2400, 3200, 4800, 6400] {
        let data = tempfile::tempdir().unwrap();
        let mut child = spawn(data.path());
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        child.kill(); // SIGKILL
        let watermark = momentum_store::Store::open(data.path()).unwrap().watermark().unwrap();
        if 0 < watermark && watermark < last_sequence {
            killed_mid_stream = Some(data);
            break;
        }
    }
    let data = killed_mid_stream.expect("one of the kills landed mid-stream");

    let mut child = spawn(data.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let watermark = projector_status(&nats).await.and_then(|status| status["watermark"].as_u64());
        if watermark == Some(last_sequence) {
            break;
        }
        assert!(Instant::now() < deadline, "the restarted projector did not catch up ({watermark:?})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let exit = child.terminate(Duration::from_secs(20)).expect("the projector exits on SIGTERM");
    assert!(exit.success(), "the projector exits cleanly on SIGTERM: {exit}");

    let recovered = momentum_store::Store::open(data.path()).unwrap().load_ledger().unwrap();
    let reference = fold_stream_from_scratch(&nats).await;
    assert_eq!(recovered.watermark(), reference.watermark());
    assert_ledgers_equal(recovered.movements(), &reference, "the recovered store and the stream folded from scratch");
    stack.stop().await;
}

#[tokio::test]
async fn ingest_refuses_to_start_against_a_stream_with_other_settings_and_leaves_it_unchanged() {
    let nats = momentum_testkit::NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let mut foreign = momentum_bus::StreamSettings::default().config();
    foreign.max_age = Duration::from_secs(24 * 60 * 60);
    jetstream.create_stream(foreign).await.unwrap();

    let refused = momentum_ingest::Ingest::start(&ingest_config(&nats.url())).await;
    let Err(error) = refused else { panic!("ingest started against a stream that drops events after a day") };
    assert!(error.to_string().contains("max_age"), "{error}");
    let mut stream = jetstream.get_stream(momentum_bus::STREAM_NAME).await.unwrap();
    assert_eq!(stream.info().await.unwrap().config.max_age, Duration::from_secs(24 * 60 * 60), "not changed");

    // With the stream as ingest wants it, a second start is fine: the check is idempotent.
    jetstream.delete_stream(momentum_bus::STREAM_NAME).await.unwrap();
    let first = momentum_ingest::Ingest::start(&ingest_config(&nats.url())).await;
    assert!(first.is_ok());
    let second = momentum_ingest::Ingest::start(&ingest_config(&nats.url())).await;
    assert!(second.is_ok());
}

#[tokio::test]
async fn every_metric_and_read_is_served_through_the_api_for_every_interval() {
    let stack = TestStack::start().await;
    let max_seq = post_scenario(&stack).await;
    // A second week for retention: a and b come back, g is new.
    let (_, body) = stack.post_event(&meeting("m2", MOVEMENT, "2026-03-10T18:00:00Z", &["a", "b", "g"], "o1")).await;
    let seq = body["seq"].as_u64().unwrap();
    assert!(seq > max_seq);

    let trend = stack.weekly_trend(MOVEMENT, "2026-03-02", "2026-03-15", seq).await;
    assert_eq!(trend["volunteer_hour_value_gbp"], 10.0);
    assert_eq!(
        trend["volunteer_hour_value"],
        json!({ "basis": "custom", "value_gbp": 10.0, "year": null,
                "source": "set by the operator of this momentum (MOMENTUM_VOLUNTEER_HOUR_VALUE_GBP)" })
    );
    let second = row(&trend, "2026-03-09");
    assert_eq!(second["active_participants"], 4, "a, b, g and o1");
    assert_eq!(second["new_participants"], 1, "g");
    assert_eq!(second["returning_participants"], 3);
    assert_eq!(second["retained_participants"], 3, "a, b and o1 were there the week before");
    assert_eq!(second["retention_rate"], 3.0 / 5.0);
    assert_eq!(second["resurrecting_participants"], 0, "everyone active before the week took part the week before");
    assert_eq!(second["dormant_participants"], 2, "c and d did not come back");
    assert_eq!(second["pulse"], 1.0 / 2.0, "g came, c and d went");

    // Stickiness over the two weeks: a, b and o1 came in both, c, d and g in
    // one; a and b took part three times (a meeting each week, and hours or
    // the action), o1 twice, the others once.
    let (status, stickiness) =
        stack.query(&format!("/v1/movements/{MOVEMENT}/stickiness?window=2&to=2026-03-15&min_seq={seq}")).await;
    assert_eq!(status, 200, "{stickiness}");
    assert_eq!((stickiness["from"].as_str(), stickiness["window"].as_u64()), (Some("2026-03-02"), Some(2)));
    assert_eq!(
        stickiness["periods_active"],
        json!([{ "periods": 1, "participants": 3 }, { "periods": 2, "participants": 3 }])
    );
    assert_eq!(
        stickiness["frequency"],
        json!([
            { "activities": 1, "participants": 3 },
            { "activities": 2, "participants": 1 },
            { "activities": 3, "participants": 2 },
        ])
    );
    assert_eq!(second["organisers"], 1);
    assert_eq!(second["citizen_led_share"], 1.0);
    let first = row(&trend, "2026-03-02");
    assert_eq!(first["social_value_gbp"], 25.0, "2.5 hours at £10");
    assert_eq!(first["volunteers"], 1);
    assert_eq!(first["action_participants"], 2);
    assert!(first["momentum"].is_null(), "no one took part in the four weeks before");

    let (status, body) =
        stack.query(&format!("/v1/movements/{MOVEMENT}/trends?interval=month&from=2026-03-01&to=2026-06-30&metrics=volunteer_hours,meetings")).await;
    assert_eq!(status, 200, "{body}");
    let months = body["series"].as_array().unwrap();
    assert_eq!(months.len(), 4);
    assert_eq!(
        months[0],
        json!({ "period": "2026-03-01", "label": "2026-03", "complete": true, "meetings": 2, "volunteer_hours": 2.5 })
    );
    // Without `to`, a trend ends today: its last period is still under way.
    let (_, recent) =
        stack.query(&format!("/v1/movements/{MOVEMENT}/trends?interval=fiscal_quarter&metrics=meetings")).await;
    let rows = recent["series"].as_array().unwrap();
    assert_eq!(rows.last().unwrap()["complete"], false, "{recent}");
    assert!(rows[..rows.len() - 1].iter().all(|row| row["complete"] == true), "{recent}");
    assert!(rows.iter().all(|row| row["label"].as_str().unwrap().contains(" Q")), "{recent}");
    assert_eq!(months[3]["volunteer_hours"], 1.25);

    let (status, body) =
        stack.query(&format!("/v1/movements/{MOVEMENT}/trends?interval=day&from=2026-03-04&to=2026-03-05")).await;
    assert_eq!(status, 200);
    assert_eq!(body["series"][0]["meetings"], 1);
    assert_eq!(body["series"][1]["volunteer_hours"], 2.5);

    let (status, body) = stack.query(&format!("/v1/movements/{MOVEMENT}/trends?metrics=vibes")).await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["pointer"], "metrics");
    assert!(body["detail"].as_str().unwrap().contains("retention_rate"), "lists the valid metrics: {body}");

    let (status, body) =
        stack.query(&format!("/v1/movements/{MOVEMENT}/cohorts?interval=week&from=2026-03-02&to=2026-03-15")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["cohorts"],
        json!([
            { "cohort": "2026-03-02", "label": "2026-W10", "complete": true, "size": 5, "active": [5, 3],
              "shares": [1.0, 0.6] },
            { "cohort": "2026-03-09", "label": "2026-W11", "complete": true, "size": 1, "active": [1], "shares": [1.0] },
        ])
    );
    let (status, _) = stack.query(&format!("/v1/movements/{MOVEMENT}/cohorts?interval=day")).await;
    assert_eq!(status, 400, "cohorts are weekly or monthly");

    let tagged = event(
        "tagged",
        "volunteer.hours_logged",
        MOVEMENT,
        "2026-03-11T10:00:00Z",
        json!({ "participant": "h", "hours": 1.0, "principles": ["share_power", "grow_from_local"] }),
    );
    let (_, body) = stack.post_event(&tagged).await;
    let seq = body["seq"].as_u64().unwrap();
    let (status, body) =
        stack.query(&format!("/v1/movements/{MOVEMENT}/principles?from=2026-03-01&to=2026-03-31&min_seq={seq}")).await;
    assert_eq!(status, 200, "{body}");
    let principles = body["principles"].as_array().unwrap();
    assert_eq!(principles.len(), 8);
    let share_power = principles.iter().find(|p| p["principle"] == "share_power").unwrap();
    assert_eq!(share_power, &json!({ "principle": "share_power", "activities": 1, "participants": 1 }));
    let evidence =
        |indicator: &str| body["evidence"].as_array().unwrap().iter().find(|e| e["indicator"] == indicator).cloned();
    assert_eq!(
        evidence("citizen_led_share"),
        Some(json!({ "principle": "share_power", "indicator": "citizen_led_share", "value": 2.0 / 3.0,
                     "numerator": 2, "denominator": 3 })),
        "both meetings had a citizen organiser, the action none"
    );
    assert_eq!(evidence("attendances_per_meeting").unwrap()["value"], 4.0, "a, b, c and o1, then a, b, g and o1");

    let (_, body) = stack.post_event(&hours("other-1", "another-movement", "2026-03-03T10:00:00Z", "z", 4.0)).await;
    let seq = body["seq"].as_u64().unwrap();
    let (status, body) = stack
        .query(&format!(
            "/v1/compare?metric=volunteer_hours&interval=week&from=2026-03-02&to=2026-03-08&movements={MOVEMENT},another-movement&min_seq={seq}"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["series"][0]["values"],
        json!([{ "period": "2026-03-02", "label": "2026-W10", "complete": true, "value": 2.5 }])
    );
    assert_eq!(body["series"][1]["movement"], "another-movement");
    assert_eq!(body["series"][1]["values"][0]["value"], 4.0);
    let (status, twice) = stack
        .query(&format!(
            "/v1/compare?metric=volunteer_hours&interval=week&from=2026-03-02&to=2026-03-08&movements={MOVEMENT},another-movement,{MOVEMENT}&min_seq={seq}"
        ))
        .await;
    assert_eq!(status, 200, "{twice}");
    assert_eq!(twice["series"], body["series"], "a movement named twice is compared once");
    let (status, _) = stack.query("/v1/compare?metric=volunteer_hours&movements=nobody-here").await;
    assert_eq!(status, 404);
    every_read_is_filtered(&stack, seq).await;
    stack.stop().await;
}

/// The filters of the scenario of the test above, on every read. Events
/// carry no area or kind there, so those filters match nothing.
async fn every_read_is_filtered(stack: &TestStack, seq: u64) {
    let weeks = format!("/v1/movements/{MOVEMENT}/trends?from=2026-03-02&to=2026-03-15&min_seq={seq}");
    let (status, attendees) = stack.query(&format!("{weeks}&role=attendee")).await;
    assert_eq!(status, 200, "{attendees}");
    let (first, second) = (row(&attendees, "2026-03-02"), row(&attendees, "2026-03-09"));
    assert_eq!(first["active_participants"], 3, "a, b and c attended; o1 organised");
    assert_eq!((first["meetings"].as_i64(), first["volunteer_hours"].as_f64()), (Some(1), Some(0.0)));
    assert_eq!(second["new_participants"], 1, "g: a and b attended the week before");
    assert_eq!(second["organisers"], 0);
    let (_, citizens) = stack.query(&format!("{weeks}&role=citizen")).await;
    assert_eq!(row(&citizens, "2026-03-02")["organisers"], 1, "o1 organised as a citizen");
    assert_eq!(row(&citizens, "2026-03-09")["new_participants"], 0, "o1 organised the week before too");
    let (_, nowhere) = stack.query(&format!("{weeks}&area=E01000001")).await;
    assert_eq!(row(&nowhere, "2026-03-02")["active_participants"], 0);

    let path = format!("/v1/movements/{MOVEMENT}/cohorts?from=2026-03-02&to=2026-03-15&role=volunteer&min_seq={seq}");
    let (status, body) = stack.query(&path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["cohorts"],
        json!([
            { "cohort": "2026-03-02", "label": "2026-W10", "complete": true, "size": 1, "active": [1, 0],
              "shares": [1.0, 0.0] },
            { "cohort": "2026-03-09", "label": "2026-W11", "complete": true, "size": 1, "active": [1], "shares": [1.0] },
        ]),
        "a logged hours the first week, h the second"
    );
    let path = format!("/v1/movements/{MOVEMENT}/principles?from=2026-03-01&to=2026-03-31&kind=walk&min_seq={seq}");
    let (_, body) = stack.query(&path).await;
    assert!(body["principles"].as_array().unwrap().iter().all(|p| p["activities"] == 0), "{body}");
    let path = format!("/v1/movements/{MOVEMENT}/stickiness?window=2&to=2026-03-15&role=action_participant");
    let (_, body) = stack.query(&path).await;
    assert_eq!(
        body["periods_active"],
        json!([{ "periods": 1, "participants": 2 }, { "periods": 2, "participants": 0 }])
    );
    let path = "/v1/compare?metric=active_participants&from=2026-03-02&to=2026-03-08&movements=another-movement";
    let (_, body) = stack.query(&format!("{path}&role=volunteer")).await;
    assert_eq!(body["series"][0]["values"][0]["value"], 1, "z logged hours");

    let (status, body) = stack.query(&format!("{weeks}&role=organiser")).await;
    assert_eq!((status, body["errors"][0]["pointer"].as_str()), (400, Some("role")), "{body}");

    // Split by role, two kept: attendees took 6 parts over the range; action
    // participants, citizens and volunteers 2 each, the first by name kept.
    let (status, split) = stack.query(&format!("{weeks}&by=role&top=2&metrics=active_participants")).await;
    assert_eq!(status, 200, "{split}");
    let rows: Vec<(&str, &str, i64)> = split["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let active = row["active_participants"].as_i64().unwrap();
            (row["period"].as_str().unwrap(), row["role"].as_str().unwrap(), active)
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("2026-03-02", "attendee", 3),
            ("2026-03-02", "action_participant", 2),
            ("2026-03-02", "(other)", 2),
            ("2026-03-09", "attendee", 3),
            ("2026-03-09", "action_participant", 0),
            ("2026-03-09", "(other)", 2),
        ],
        "(other): o1 organising as a citizen, and a, then h, logging hours"
    );
    let path = format!("/v1/movements/{MOVEMENT}/principles?from=2026-03-01&to=2026-03-31&by=area&role=volunteer");
    let (_, body) = stack.query(&path).await;
    let share_power: Vec<&Value> =
        body["principles"].as_array().unwrap().iter().filter(|p| p["principle"] == "share_power").collect();
    assert_eq!(
        share_power,
        [&json!({ "principle": "share_power", "area": "(none)", "activities": 1, "participants": 1 })]
    );
    let (status, body) = stack.query(&format!("{weeks}&top=3")).await;
    assert_eq!((status, body["errors"][0]["pointer"].as_str()), (400, Some("top")), "top without by: {body}");

    // c comes back in the third week, after missing the second.
    let (_, body) = stack.post_event(&hours("c-back", MOVEMENT, "2026-03-18T10:00:00Z", "c", 1.0)).await;
    let seq = body["seq"].as_u64().unwrap();
    let cohorts = format!("/v1/movements/{MOVEMENT}/cohorts?from=2026-03-02&to=2026-03-22&min_seq={seq}");
    let (_, on) = stack.query(&cohorts).await;
    assert_eq!((on["mode"].as_str(), &on["cohorts"][0]["active"]), (Some("on"), &json!([5, 3, 1])), "{on}");
    let (status, on_or_after) = stack.query(&format!("{cohorts}&mode=on_or_after")).await;
    assert_eq!(status, 200, "{on_or_after}");
    assert_eq!(on_or_after["cohorts"][0]["active"], json!([5, 4, 1]), "a, b, o1 in the second week, c in the third");
    assert_eq!(on_or_after["cohorts"][0]["shares"], json!([1.0, 0.8, 0.2]));
    let (status, body) = stack.query(&format!("{cohorts}&mode=ever")).await;
    assert_eq!((status, body["errors"][0]["pointer"].as_str()), (400, Some("mode")), "{body}");
}

#[tokio::test]
async fn a_read_as_of_a_sequence_restates_the_figures_published_then_and_changes_say_what_moved_since() {
    let stack = TestStack::start().await;
    let published_at = post_scenario(&stack).await;
    let weeks = format!("/v1/movements/{MOVEMENT}/trends?from=2026-03-02&to=2026-03-15");
    let (_, published) = stack.query(&format!("{weeks}&min_seq={published_at}")).await;
    // A moment after the publication, by the stream's clock (this machine's).
    tokio::time::sleep(Duration::from_millis(20)).await;
    let published_when = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    tokio::time::sleep(Duration::from_millis(20)).await;

    // A meeting of 3 March arrives late, and the action of 7 March is retracted.
    let late = meeting("m-late", MOVEMENT, "2026-03-03T18:00:00Z", &["y", "z"], "o1");
    let retraction = event("r1", "event.retracted", MOVEMENT, "2026-04-01T09:00:00Z", json!({ "event_id": "x1" }));
    let (status, body) = stack.post_batch(&[late, retraction]).await;
    assert_eq!(status, 200, "{body}");
    let now_at = body["max_seq"].as_u64().unwrap();

    let (status, restated) = stack.query(&format!("{weeks}&as_of_seq={published_at}&min_seq={now_at}")).await;
    assert_eq!(status, 200, "{restated}");
    assert_eq!(restated["series"], published["series"], "the figures as published");
    assert_eq!(restated["watermark"], published_at);
    let (status, restated) = stack.query(&format!("{weeks}&as_of={published_when}&min_seq={now_at}")).await;
    assert_eq!(status, 200, "{restated}");
    assert_eq!(restated["series"], published["series"], "the figures as published, found by time");
    assert_eq!(restated["watermark"], published_at);
    let (_, now) = stack.query(&format!("{weeks}&min_seq={now_at}")).await;
    let march = row(&now, "2026-03-02");
    assert_eq!((march["meetings"].as_i64(), march["collective_actions"].as_i64()), (Some(2), Some(0)));

    let path = format!("/v1/movements/{MOVEMENT}/changes?since_seq={published_at}&from=2026-03-02&to=2026-03-15");
    let (status, changes) = stack.query(&path).await;
    assert_eq!(status, 200, "{changes}");
    assert_eq!((changes["since_seq"].as_u64(), changes["watermark"].as_u64()), (Some(published_at), Some(now_at)));
    let moved: Vec<(&str, &str, &Value, &Value)> = changes["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| {
            let (period, metric) = (change["period"].as_str().unwrap(), change["metric"].as_str().unwrap());
            (period, metric, &change["before"], &change["after"])
        })
        .collect();
    assert!(moved.contains(&("2026-03-02", "meetings", &json!(1), &json!(2))), "{changes}");
    assert!(moved.contains(&("2026-03-02", "collective_actions", &json!(1), &json!(0))), "{changes}");
    assert!(moved.contains(&("2026-03-02", "people_reached", &json!(100), &json!(0))), "{changes}");
    assert!(moved.iter().all(|(period, ..)| *period == "2026-03-02" || *period == "2026-03-09"), "{changes}");
    let (status, body) = stack.query(&format!("/v1/movements/{MOVEMENT}/changes")).await;
    assert_eq!((status, body["errors"][0]["pointer"].as_str()), (400, Some("since_seq")), "{body}");
    let (status, body) = stack.query(&format!("{weeks}&as_of_seq=yesterday")).await;
    assert_eq!((status, body["errors"][0]["pointer"].as_str()), (400, Some("as_of_seq")), "{body}");
    let (status, body) = stack.query(&format!("{weeks}&as_of=31/03/2026")).await;
    assert_eq!((status, body["errors"][0]["pointer"].as_str()), (400, Some("as_of")), "{body}");
    let (status, body) = stack.query(&format!("{weeks}&as_of={published_when}&as_of_seq=1")).await;
    assert_eq!((status, body["errors"][0]["pointer"].as_str()), (400, Some("as_of")), "one or the other: {body}");
    let (_, before_anything) = stack.query(&format!("{weeks}&as_of=2000-01-01T00:00:00Z")).await;
    assert_eq!(before_anything["status"], 404, "the movement had no events then: {before_anything}");
    stack.stop().await;
}

#[tokio::test]
async fn an_unchanged_answer_is_answered_304_for_its_etag_until_its_movement_gets_an_event() {
    let stack = TestStack::start().await;
    let seq = post_scenario(&stack).await;
    let get = |path: String, tag: Option<String>| {
        let mut request = stack.http.get(format!("{}{path}", stack.query_url)).bearer_auth(&stack.admin_token);
        if let Some(tag) = tag {
            request = request.header("if-none-match", tag);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let tag = response.headers().get("etag").map(|tag| tag.to_str().unwrap().to_owned());
            let caching = response.headers().get("cache-control").map(|value| value.to_str().unwrap().to_owned());
            (status, tag, caching, response.bytes().await.unwrap().len())
        }
    };
    let trend = format!("/v1/movements/{MOVEMENT}/trends?from=2026-03-02&to=2026-03-15&min_seq={seq}");
    let (status, tag, caching, _) = get(trend.clone(), None).await;
    let tag = tag.expect("an etag");
    assert_eq!((status, caching.as_deref()), (200, Some("private, no-cache")));
    let (status, again, _, length) = get(trend.clone(), Some(tag.clone())).await;
    assert_eq!((status, again.as_deref(), length), (304, Some(tag.as_str()), 0), "nothing changed");
    let (status, _, _, _) = get(trend.clone(), Some("\"other\"".to_owned())).await;
    assert_eq!(status, 200, "another tag");
    let (_, csv_tag, _, _) = get(format!("{trend}&format=csv"), None).await;
    assert_ne!(csv_tag.as_deref(), Some(tag.as_str()), "CSV is another answer");

    // An event of another movement changes nothing here.
    let (_, body) = stack.post_event(&hours("elsewhere", "another-movement", "2026-03-03T10:00:00Z", "z", 1.0)).await;
    let elsewhere = body["seq"].as_u64().unwrap();
    let later = format!("/v1/movements/{MOVEMENT}/trends?from=2026-03-02&to=2026-03-15&min_seq={elsewhere}");
    let (status, still, _, _) = get(later.clone(), Some(tag.clone())).await;
    assert_eq!((status, still.as_deref()), (304, Some(tag.as_str())), "the min_seq is not part of the answer");
    // One of this movement does.
    let (_, body) = stack.post_event(&hours("here", MOVEMENT, "2026-03-03T10:00:00Z", "a", 1.0)).await;
    let here = body["seq"].as_u64().unwrap();
    let latest = format!("/v1/movements/{MOVEMENT}/trends?from=2026-03-02&to=2026-03-15&min_seq={here}");
    let (status, changed, _, _) = get(latest, Some(tag.clone())).await;
    assert_eq!(status, 200);
    assert_ne!(changed.as_deref(), Some(tag.as_str()));
    for path in [
        format!("/v1/movements/{MOVEMENT}/cohorts?from=2026-03-02&to=2026-03-15"),
        format!("/v1/movements/{MOVEMENT}/principles?from=2026-03-01&to=2026-03-31"),
        format!("/v1/movements/{MOVEMENT}/stickiness?to=2026-03-15&window=2"),
        format!("/v1/compare?metric=meetings&movements={MOVEMENT},another-movement&from=2026-03-02&to=2026-03-08"),
        format!("/v1/movements/{MOVEMENT}/changes?since_seq={seq}&from=2026-03-02&to=2026-03-15"),
        format!("{trend}&as_of_seq={seq}"),
    ] {
        let (status, tag, _, _) = get(path.clone(), None).await;
        assert_eq!(status, 200, "{path}");
        let (status, _, _, _) = get(path.clone(), tag).await;
        assert_eq!(status, 304, "{path}");
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_projection_rebuilt_from_sequence_one_takes_over_with_identical_numbers() {
    let mut stack = TestStack::start().await;
    let events = many_events(1500);
    for chunk in events.chunks(500) {
        let (status, _) = stack.post_batch(chunk).await;
        assert_eq!(status, 200);
    }
    let last_sequence = 1500;
    let reads = [
        "/v1/movements/leeds-walking/trends?interval=week&from=2026-01-01&to=2026-06-30",
        "/v1/movements/hull-food/trends?interval=month&from=2026-01-01&to=2026-06-30",
        "/v1/movements/bristol-befriending/cohorts?interval=week&from=2026-01-01&to=2026-06-30",
        "/v1/movements/leeds-walking/principles?from=2026-01-01&to=2026-06-30",
    ];
    let mut live = Vec::new();
    for read in reads {
        let (status, body) = stack.query(&format!("{read}&min_seq={last_sequence}")).await;
        assert_eq!(status, 200, "{body}");
        live.push(body);
    }

    let nats = async_nats::connect(stack.nats.url()).await.unwrap();
    assert_eq!(projector_instances(&nats).await, 1);
    let fresh = tempfile::tempdir().unwrap();
    let rebuild = spawn_projector(&projector_config(&stack.nats.url(), fresh.path().to_owned())).await;
    // It answers only once it has caught up, and then alongside the live one.
    let deadline = Instant::now() + Duration::from_secs(60);
    while projector_instances(&nats).await < 2 {
        assert!(Instant::now() < deadline, "the rebuild did not catch up");
    }
    stack.stop_projector().await;
    assert_eq!(projector_instances(&nats).await, 1, "only the rebuilt projection answers");
    for (read, before) in reads.iter().zip(&live) {
        let (status, after) = stack.query(read).await;
        assert_eq!(status, 200);
        assert_eq!(&after, before, "{read}");
    }
    rebuild.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn the_readme_stack_command_starts_everything_and_serves_the_demo_data() {
    let _heavy = momentum_tests::one_heavy_test_at_a_time().await;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let root = momentum_testkit::workspace_root();
    let state = tempfile::tempdir().unwrap();
    let [nats, nats_http, ingest, query, projector] = std::array::from_fn(|_| momentum_testkit::free_port());
    let mut command = Command::new("bash");
    // The script builds with cargo as a user would. The variables cargo set
    // for this test (CARGO_MANIFEST_DIR among them) would make that build
    // compile and link again a dependency that reads them, under the other
    // tests' feet: give the script a user's environment.
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("CARGO_")) {
        if !matches!(name.as_str(), "CARGO_HOME" | "CARGO_TARGET_DIR") {
            command.env_remove(name);
        }
    }
    let mut stack = momentum_testkit::ChildProcess::spawn(
        command
            .arg(root.join("scripts/stack.sh"))
            .env("MOMENTUM_STACK_DIR", state.path())
            .env("MOMENTUM_NATS_PORT", nats.to_string())
            .env("MOMENTUM_NATS_HTTP_PORT", nats_http.to_string())
            .env("MOMENTUM_INGEST_PORT", ingest.to_string())
            .env("MOMENTUM_QUERY_PORT", query.to_string())
            .env("MOMENTUM_PROJECTOR_PORT", projector.to_string())
            .stdout(Stdio::piped()),
    );
    // Read the script's output to its end (a closed pipe would kill it),
    // handing over what it printed up to its list of URLs.
    let stdout = stack.take_stdout();
    let (ready, printed) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut ready = Some(ready);
        let mut printed = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            printed.push_str(&line);
            printed.push('\n');
            if line.starts_with("Try:")
                && let Some(ready) = ready.take()
            {
                let _ = ready.send(printed.clone());
            }
        }
    });
    let printed = tokio::time::timeout(Duration::from_secs(300), printed).await.expect("the stack starts").unwrap();
    assert!(printed.contains("0 rejected"), "{printed}");
    assert!(printed.contains(&format!("http://127.0.0.1:{query}/v1/movements")), "{printed}");

    // The stack made its own tokens and printed them; data needs one.
    let evaluator_token = std::fs::read_to_string(state.path().join("secrets/evaluator.token")).unwrap();
    assert!(printed.contains(&evaluator_token), "the tokens are printed: {printed}");
    let http = reqwest::Client::new();
    let anonymous = http.get(format!("http://127.0.0.1:{query}/v1/movements")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let movements: Value = http
        .get(format!("http://127.0.0.1:{query}/v1/movements"))
        .bearer_auth(&evaluator_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> =
        movements["movements"].as_array().unwrap().iter().map(|m| m["movement"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "bristol-befriending",
            "cornwall-mens-sheds",
            "hull-community-kitchens",
            "leeds-walking-groups",
            "manchester-peer-support",
            "newham-social-prescribing"
        ]
    );
    let trend: Value = http
        .get(format!("http://127.0.0.1:{query}/v1/movements/leeds-walking-groups/trends?interval=month"))
        .bearer_auth(&evaluator_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let active: i64 =
        trend["series"].as_array().unwrap().iter().map(|row| row["active_participants"].as_i64().unwrap()).sum();
    assert!(active > 0, "the demo data shows up in the trend: {trend}");

    let exit = stack.terminate(Duration::from_secs(30)).expect("the stack stops on SIGTERM");
    assert!(exit.success(), "{exit}");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", ingest)).await.is_err(),
        "stopping the stack stops its services"
    );
}

#[tokio::test]
async fn every_read_answers_csv_that_holds_exactly_what_the_json_holds() {
    let stack = TestStack::start().await;
    let max_seq = post_scenario(&stack).await;
    let path = format!("/v1/movements/{MOVEMENT}/trends?interval=week&from=2026-03-02&to=2026-03-22&min_seq={max_seq}");
    let (_, json) = stack.query(&path).await;
    let get_csv = |query: String, accept: &'static str| {
        let request = stack
            .http
            .get(format!("{}{query}", stack.query_url))
            .bearer_auth(&stack.admin_token)
            .header("accept", accept);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["content-type"], "text/csv; charset=utf-8");
            let disposition = response.headers()["content-disposition"].to_str().unwrap().to_owned();
            let watermark = response.headers()["momentum-watermark"].to_str().unwrap();
            assert!(disposition.contains(&format!("-at-{watermark}")), "the file name holds the watermark");
            (disposition, response.text().await.unwrap())
        }
    };

    let (disposition, wide) = get_csv(path.clone(), "text/csv").await;
    assert_eq!(
        disposition,
        format!("attachment; filename=\"{MOVEMENT}-week-2026-03-02-to-2026-03-22-at-{max_seq}.csv\"")
    );
    let lines: Vec<Vec<&str>> = wide.lines().map(|line| line.split(',').collect()).collect();
    let header = &lines[0];
    assert_eq!(header[0], "period");
    assert_eq!(header[..3], ["period", "label", "complete"]);
    assert_eq!(header.len(), 3 + momentum_domain::query::Metric::ALL.len(), "every metric has a column");
    let series = json["series"].as_array().unwrap();
    assert_eq!(lines.len(), 1 + series.len(), "one row per period");
    for (cells, row) in lines[1..].iter().zip(series) {
        for (name, cell) in header.iter().zip(cells) {
            let expected = match &row[*name] {
                Value::Null => String::new(),
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            assert_eq!(*cell, expected, "{name} in {}", row["period"]);
        }
    }

    let (disposition, long) = get_csv(format!("{path}&format=csv&layout=long"), "*/*").await;
    assert!(disposition.contains("-long.csv"), "{disposition}");
    let long: Vec<&str> = long.lines().collect();
    assert_eq!(long[0], "period,label,complete,movement,metric,value");
    assert_eq!(long.len(), 1 + series.len() * momentum_domain::query::Metric::ALL.len());
    assert!(long.contains(&format!("2026-03-02,2026-W10,true,{MOVEMENT},volunteer_hours,2.5").as_str()));
    assert!(long.contains(&format!("2026-03-09,2026-W11,true,{MOVEMENT},retention_rate,0.0").as_str()));
    assert!(long.contains(&format!("2026-03-02,2026-W10,true,{MOVEMENT},momentum,").as_str()), "a null is empty");

    let (_, split) = get_csv(format!("{path}&format=csv&layout=long&by=role&metrics=active_participants"), "*/*").await;
    let split: Vec<&str> = split.lines().collect();
    assert_eq!(split[0], "period,label,complete,movement,role,metric,value");
    assert_eq!(split[1], format!("2026-03-02,2026-W10,true,{MOVEMENT},attendee,active_participants,3"));
    let (_, split) = get_csv(format!("{path}&format=csv&by=role&metrics=active_participants,organisers"), "*/*").await;
    assert_eq!(
        split.lines().take(2).collect::<Vec<_>>(),
        ["period,label,complete,role,active_participants,organisers", "2026-03-02,2026-W10,true,attendee,3,0"]
    );

    let (_, cohorts) = get_csv(
        format!("/v1/movements/{MOVEMENT}/cohorts?interval=week&from=2026-03-02&to=2026-03-15&format=csv"),
        "*/*",
    )
    .await;
    assert_eq!(
        cohorts,
        "cohort,label,complete,size,active_0,active_1,share_0,share_1\n2026-03-02,2026-W10,true,5,5,0,1.0,0.0\n"
    );
    let (_, movements) = get_csv("/v1/movements?format=csv".to_owned(), "*/*").await;
    assert_eq!(movements, format!("movement,events\n{MOVEMENT},4\n"));

    let (status, body) = stack.query(&format!("{path}&format=xml")).await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["pointer"], "format");
    stack.stop().await;
}

#[tokio::test]
async fn a_projector_refuses_to_fold_a_new_stream_on_top_of_a_store_built_from_an_old_one() {
    let mut stack = TestStack::start().await;
    let max_seq = post_scenario(&stack).await;
    stack.weekly_trend(MOVEMENT, "2026-03-02", "2026-03-08", max_seq).await;
    stack.stop_projector().await;

    // The stream is lost and created again (say, NATS's disk was replaced).
    let nats = async_nats::connect(stack.nats.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(nats);
    jetstream.delete_stream(momentum_bus::STREAM_NAME).await.unwrap();
    jetstream.create_stream(momentum_bus::StreamSettings::default().config()).await.unwrap();

    let config = projector_config(&stack.nats.url(), stack.projector_data.path().to_owned());
    let refused = momentum_projector::Projector::start(&config).await;
    let Err(error) = refused else { panic!("the projector started on a store built from another stream") };
    assert!(error.to_string().contains("stream"), "{error}");
    stack.stop().await;
}

#[tokio::test]
async fn a_body_that_arrives_too_slowly_is_answered_408_not_waited_for_forever() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stack = TestStack::start().await;
    let address = stack.ingest_url.trim_start_matches("http://").to_owned();
    let mut connection = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nhost: test\r\ncontent-type: application/cloudevents+json\r\n\
         authorization: Bearer {}\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{{\"id\":",
        stack.admin_token
    );
    connection.write_all(head.as_bytes()).await.unwrap();
    // The rest of the body never comes; the test config allows 1 s.
    let mut answer = String::new();
    let read = tokio::time::timeout(Duration::from_secs(10), connection.read_to_string(&mut answer)).await;
    assert!(read.is_ok(), "ingest gave up on the body in time");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("urn:momentum:problem:body-timeout"), "{answer}");
    stack.stop().await;
}

#[tokio::test]
async fn the_projector_is_ready_once_caught_up_and_not_while_nats_is_away() {
    let mut stack = TestStack::start().await;
    let max_seq = post_scenario(&stack).await;
    stack.weekly_trend(MOVEMENT, "2026-03-02", "2026-03-08", max_seq).await;
    let fresh = tempfile::tempdir().unwrap();
    let (second, url) =
        spawn_projector_with_address(&projector_config(&stack.nats.url(), fresh.path().to_owned())).await;
    let get = |path: &str| stack.http.get(format!("{url}{path}")).send();
    assert_eq!(get("/livez").await.unwrap().status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while get("/readyz").await.unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "the projector never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.nats.kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = get("/readyz").await.unwrap();
        if response.status() == 503 {
            assert_eq!(response.headers()["content-type"], "application/problem+json");
            break;
        }
        assert!(Instant::now() < deadline, "the projector stayed ready without NATS");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get("/livez").await.unwrap().status(), 200, "alive all the same");
    stack.nats.restart();
    second.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn many_full_batches_posted_at_once_are_all_accepted_without_waiting_on_each_other() {
    // More events in flight than JetStream publishes ingest keeps
    // unacknowledged (4 096): a request that took some of them while
    // waiting for more held them until its time ran out. The bodies also
    // add up to more than ingest processes at once, so some wait for
    // others' budget.
    const BATCHES: usize = 8;
    let nats = momentum_testkit::NatsServer::start();
    // Deadlines long enough for a debug build on a loaded machine: a
    // deadlock still ends in 503s, only later.
    let mut config = ingest_config(&nats.url());
    config.publish_timeout_ms = 15_000;
    config.body_timeout_ms = 15_000;
    let (ingest, ingest_url) = spawn_ingest(&config).await;
    // A long `dataschema` makes the bodies large and cheap to check.
    let schema = format!("https://partner.example/schemas/{}", "v".repeat(1200));
    let batches: Vec<String> = (0..BATCHES)
        .map(|batch| {
            let events: Vec<Value> = (0..momentum_ingest::BATCH_EVENTS_MAX)
                .map(|index| {
                    let participant = format!("p{}", index % 50);
                    let mut event =
                        hours(&format!("b{batch}-{index}"), MOVEMENT, "2026-03-05T10:00:00Z", &participant, 1.0);
                    event["dataschema"] = json!(schema);
                    event
                })
                .collect();
            Value::from(events).to_string()
        })
        .collect();
    let bytes: usize = batches.iter().map(String::len).sum();
    assert!(bytes > momentum_ingest::BODY_BYTES_IN_PROCESS_MAX, "{bytes} bytes exceed what is processed at once");
    let http = reqwest::Client::new();
    let post = |body: String| {
        let request = http
            .post(format!("{ingest_url}/v1/events"))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/cloudevents-batch+json")
            .body(body);
        async move {
            let response = request.send().await.expect("ingest answers");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("a JSON answer"))
        }
    };
    let started = Instant::now();
    let answers = futures::future::join_all(batches.into_iter().map(post)).await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["accepted"], momentum_ingest::BATCH_EVENTS_MAX, "{body}");
    }
    let max_seq = answers.iter().map(|(_, body)| body["max_seq"].as_u64().unwrap()).max().unwrap();
    assert_eq!(max_seq, (BATCHES * momentum_ingest::BATCH_EVENTS_MAX) as u64, "each event took one sequence");
    eprintln!("{BATCHES} batches answered in {:?}", started.elapsed());
    ingest.stop().await;
}

#[tokio::test]
async fn a_projector_with_every_query_slot_taken_answers_busy_at_once_instead_of_queueing() {
    const REQUESTS: usize = momentum_projector::READS_IN_FLIGHT_MAX + 44;
    let stack = TestStack::start().await;
    let nats = async_nats::connect(stack.nats.url()).await.unwrap();
    // Each waits for a sequence that never comes, holding its slot for the
    // stack's longest `min_seq` wait (3 s).
    let subject = momentum_bus::Partition::WHOLE.read_subject::<momentum_bus::protocol::StatusRequest>();
    let asks = (0..REQUESTS).map(|_| nats.request(subject.clone(), r#"{"min_seq": 1000000}"#.into()));
    let answers = futures::future::join_all(asks).await;
    let (mut busy, mut waited) = (0, 0);
    for answer in answers {
        let answer = answer.expect("every request is answered");
        let headers = answer.headers.expect("an error answer has headers");
        assert_eq!(headers.get(async_nats::service::NATS_SERVICE_ERROR_CODE).unwrap().as_str(), "503");
        let message = headers.get(async_nats::service::NATS_SERVICE_ERROR).unwrap().as_str().to_owned();
        if message.contains("retry") {
            busy += 1;
        } else {
            assert!(message.contains("has not reached sequence 1000000"), "{message}");
            waited += 1;
        }
    }
    assert!(busy >= 1, "requests beyond the slots are answered busy ({waited} waited)");
    assert_eq!(busy + waited, REQUESTS);
    stack.stop().await;
}

#[tokio::test]
async fn a_projector_stopping_answers_the_queries_it_has_in_flight() {
    let mut stack = TestStack::start().await;
    let nats = async_nats::connect(stack.nats.url()).await.unwrap();
    let subject = momentum_bus::Partition::WHOLE.read_subject::<momentum_bus::protocol::StatusRequest>();
    // Waits for a sequence that never comes (3 s at most in test stacks).
    let waiting = tokio::spawn(async move { nats.request(subject, r#"{"min_seq": 1000000}"#.into()).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack.stop_projector().await;
    let answer = waiting.await.unwrap().expect("the query is answered, not left to time out");
    let headers = answer.headers.expect("an error answer has headers");
    assert_eq!(headers.get(async_nats::service::NATS_SERVICE_ERROR_CODE).unwrap().as_str(), "503");
    stack.stop().await;
}
