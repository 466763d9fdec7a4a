//! Hostile input, end to end against the real stack: bodies that are too
//! big, too deep, not UTF-8 or not JSON; events at and past every limit;
//! movement ids that would be NATS wildcards; query paths and parameters
//! that are garbage. Each gets an exact status and a problem+json answer
//! that names what is wrong, nothing crashes, and nothing but well-formed
//! subjects ever reaches NATS.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use momentum_domain::EventType;
use momentum_ingest::{BATCH_EVENTS_MAX, REQUEST_BYTES_MAX};
use momentum_tests::*;
use serde_json::{Value, json};

const MOVEMENT: &str = "hostile-input";
const SINGLE: &str = "application/cloudevents+json";
const BATCH: &str = "application/cloudevents-batch+json";
const TIME: &str = "2026-03-04T18:00:00Z";

// ---------------------------------------------------------------------------
// Requests and what their answers must be

async fn post(stack: &TestStack, content_type: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    stack
        .http
        .post(format!("{}/v1/events", stack.ingest_url))
        .bearer_auth(&stack.admin_token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("ingest answers")
}

async fn get(stack: &TestStack, path_and_query: &str) -> reqwest::Response {
    let request = stack.http.get(format!("{}{path_and_query}", stack.query_url)).bearer_auth(&stack.admin_token);
    request.send().await.expect("query answers")
}

/// Checks that `response` has `status` and is a problem+json document with
/// a `type`, a `title` and the same `status`; returns the document.
async fn expect_problem(response: reqwest::Response, status: u16, what: &str) -> Value {
    let actual = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|value| value.to_str().ok());
    let content_type = content_type.unwrap_or("(none)").to_owned();
    let text = response.text().await.expect("a body");
    assert_eq!(actual, status, "{what}: {text}");
    assert_eq!(content_type, "application/problem+json", "{what}: {text}");
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("{what}: the problem is not JSON ({error}): {text}"));
    assert!(body["type"].as_str().is_some_and(|kind| kind.starts_with("urn:momentum:problem:")), "{what}: {body}");
    assert!(body["title"].as_str().is_some_and(|title| !title.is_empty()), "{what}: {body}");
    assert_eq!(body["status"], status, "{what}: {body}");
    body
}

fn pointers(problem: &Value) -> Vec<&str> {
    let errors = problem["errors"].as_array().map(Vec::as_slice).unwrap_or_default();
    errors.iter().filter_map(|error| error["pointer"].as_str()).collect()
}

fn expect_pointer(problem: &Value, pointer: &str, what: &str) {
    assert!(pointers(problem).contains(&pointer), "{what}: expected an error at {pointer:?}, got {problem}");
}

/// A 422 `invalid-event` naming `pointer`.
async fn expect_invalid_event(response: reqwest::Response, pointer: &str, what: &str) {
    let problem = expect_problem(response, 422, what).await;
    assert_eq!(problem["type"], "urn:momentum:problem:invalid-event", "{what}");
    expect_pointer(&problem, pointer, what);
}

/// A 400 `invalid-parameter` naming `parameter`.
async fn expect_bad_parameter(response: reqwest::Response, parameter: &str, what: &str) {
    let problem = expect_problem(response, 400, what).await;
    assert_eq!(problem["type"], "urn:momentum:problem:invalid-parameter", "{what}");
    expect_pointer(&problem, parameter, what);
}

/// A 202 `accepted`; returns the event's stream sequence.
async fn expect_accepted(response: reqwest::Response, what: &str) -> u64 {
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    assert_eq!(status, 202, "{what}: {text}");
    let body: Value = serde_json::from_str(&text).expect("a JSON answer");
    assert_eq!(body["status"], "accepted", "{what}: {body}");
    body["seq"].as_u64().expect("a sequence")
}

/// Ingest and the projector still work: a valid event is accepted and read.
async fn expect_still_serving(stack: &TestStack, id: &str) {
    let event = meeting(id, MOVEMENT, TIME, &["still-here"], "o1");
    let seq = expect_accepted(post(stack, SINGLE, event.to_string()).await, "the next request").await;
    let (status, body) = stack.query(&format!("/v1/status?min_seq={seq}")).await;
    assert_eq!(status, 200, "the projector folded past the hostile input: {body}");
}

// ---------------------------------------------------------------------------
// What reaches NATS

fn is_movement(text: &str) -> bool {
    let mut characters = text.chars();
    let first = characters.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first && text.len() <= 63 && characters.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A message's subject and payload.
type Seen = (String, Vec<u8>);

/// Everything published under `momentum.>` while a test runs, as a raw
/// NATS client of the test's own sees it.
struct NatsWatch {
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl NatsWatch {
    async fn start(stack: &TestStack) -> NatsWatch {
        let client = async_nats::connect(stack.nats.url()).await.expect("a raw client connects");
        let mut messages = client.subscribe("momentum.>").await.expect("it subscribes");
        subscriptions_in_place(&client).await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = seen.clone();
        let task = tokio::spawn(async move {
            let _connection = client;
            while let Some(message) = messages.next().await {
                recorder.lock().unwrap().push((message.subject.to_string(), message.payload.to_vec()));
            }
        });
        NatsWatch { seen, task }
    }

    /// Posts a valid sentinel event and waits until the watch sees it: ingest
    /// publishes in order on one connection and every query asked before has
    /// been answered, so by then the watch has seen all that came before.
    /// Then checks every subject seen and every movement a query named.
    async fn check(self, stack: &TestStack) {
        let sentinel = meeting("nats-watch-sentinel", MOVEMENT, TIME, &["s"], "o1");
        expect_accepted(post(stack, SINGLE, sentinel.to_string()).await, "the sentinel").await;
        let sentinel_subject = momentum_bus::event_subject(MOVEMENT, "meeting.held");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.seen.lock().unwrap().iter().any(|(subject, payload)| {
                *subject == sentinel_subject
                    && serde_json::from_slice::<Value>(payload).is_ok_and(|event| event["id"] == "nats-watch-sentinel")
            });
            if seen {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the watch never saw the sentinel");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.task.abort();
        let seen = self.seen.lock().unwrap();
        for (subject, payload) in seen.iter() {
            if let Some(rest) = subject.strip_prefix("momentum.events.") {
                let (slot, rest) = rest.split_once('.').unwrap_or((rest, ""));
                let (movement, kind) = rest.split_once('.').unwrap_or((rest, ""));
                assert!(is_movement(movement), "a hostile movement reached NATS: {subject:?}");
                assert_eq!(slot, momentum_bus::slot(movement).to_string(), "the slot is the movement's: {subject:?}");
                assert!(EventType::parse(kind).is_some(), "an unknown type reached NATS: {subject:?}");
                continue;
            }
            let query = momentum_bus::protocol::ENDPOINTS
                .iter()
                .any(|endpoint| *subject == format!("{}.{endpoint}", momentum_bus::READ_SUBJECT_GROUP));
            assert!(query, "an unexpected subject reached NATS: {subject:?}");
            let request: Value = serde_json::from_slice(payload).expect("query requests are JSON");
            let named = request["movement"].as_str().into_iter();
            let named = named.chain(request["movements"].as_array().into_iter().flatten().filter_map(Value::as_str));
            for movement in named {
                assert!(is_movement(movement), "a query for a hostile movement reached NATS: {request}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Ingest: bodies

#[tokio::test]
async fn a_body_over_4_mib_is_answered_413_but_one_of_exactly_4_mib_is_read() {
    let stack = TestStack::start().await;
    let event = meeting("padded", MOVEMENT, TIME, &["a"], "o1").to_string();
    // Whitespace is JSON too; the stored form is compact, so the event fits.
    let exactly = format!("{event}{}", " ".repeat(REQUEST_BYTES_MAX - event.len()));
    assert_eq!(exactly.len(), REQUEST_BYTES_MAX);
    expect_accepted(post(&stack, SINGLE, exactly).await, "a body of exactly 4 MiB").await;

    let over = format!("{event}{}", " ".repeat(REQUEST_BYTES_MAX + 1 - event.len()));
    let problem = expect_problem(post(&stack, SINGLE, over).await, 413, "4 MiB and a byte").await;
    assert_eq!(problem["type"], "urn:momentum:problem:payload-too-large");
    let batch = format!("[{}]", "1,".repeat(3 * 1024 * 1024) + "1");
    let problem = expect_problem(post(&stack, BATCH, batch).await, 413, "a 6 MiB batch").await;
    assert_eq!(problem["type"], "urn:momentum:problem:payload-too-large");

    // Under the request limit, over the 256 KiB an event may have.
    let mut large = meeting("large", MOVEMENT, TIME, &["a"], "o1");
    large["extension"] = json!("x".repeat(300 * 1024));
    let problem = expect_problem(post(&stack, SINGLE, large.to_string()).await, 413, "a 300 KiB event").await;
    assert_eq!(problem["type"], "urn:momentum:problem:event-too-large");
    expect_still_serving(&stack, "after-large-bodies").await;
    stack.stop().await;
}

#[tokio::test]
async fn deeply_nested_json_is_a_400_and_the_services_keep_serving() {
    let stack = TestStack::start().await;
    let bodies = [
        ("100 000 [", "[".repeat(100_000)),
        ("100 000 balanced [ ]", format!("{}{}", "[".repeat(100_000), "]".repeat(100_000))),
        ("100 000 {\"a\":", "{\"a\":".repeat(100_000)),
        ("data nested 100 000 deep", format!("{{\"data\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000))),
    ];
    for (what, body) in &bodies {
        for content_type in [SINGLE, BATCH] {
            let problem = expect_problem(post(&stack, content_type, body.clone()).await, 400, what).await;
            assert_eq!(problem["type"], "urn:momentum:problem:malformed-json", "{what}");
        }
    }
    expect_still_serving(&stack, "after-deep-nesting").await;

    // The deepest nesting ingest accepts, in a CloudEvents extension
    // attribute, is stored as posted: the projector must read it back, not
    // stop on a message it cannot parse.
    let deep_event = |depth: usize| {
        let mut event = meeting(&format!("deep-{depth}"), MOVEMENT, TIME, &["a"], "o1").to_string();
        event.insert_str(1, &format!("\"deepextension\":{}{},", "[".repeat(depth), "]".repeat(depth)));
        event
    };
    let mut deepest = None;
    for depth in (100..=130).rev() {
        let response = post(&stack, SINGLE, deep_event(depth)).await;
        if response.status() == 202 {
            let body: Value = response.json().await.unwrap();
            deepest = Some((depth, body["seq"].as_u64().unwrap()));
            break;
        }
        expect_problem(response, 400, &format!("{depth} levels")).await;
    }
    let (depth, seq) = deepest.expect("ingest accepts some nesting");
    let (status, body) = stack.query(&format!("/v1/status?min_seq={seq}")).await;
    assert_eq!(status, 200, "the projector folded the event with {depth} levels of nesting: {body}");
    expect_still_serving(&stack, "after-deep-but-legal").await;
    stack.stop().await;
}

#[tokio::test]
async fn bodies_that_are_not_utf_8_or_not_json_are_a_400() {
    let stack = TestStack::start().await;
    let valid = meeting("bytes", MOVEMENT, TIME, &["a"], "o1").to_string();
    let mut in_a_string = valid.clone().into_bytes();
    let at = valid.find("\"a\"").unwrap() + 1;
    in_a_string.splice(at..at + 1, [0xff, 0xfe]);
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("invalid UTF-8 in a string", in_a_string),
        ("invalid UTF-8 outside strings", [valid.as_bytes(), &[0xc3, 0x28]].concat()),
        ("a lone byte", vec![0xff]),
        ("a lone surrogate escape", valid.replace("\"a\"", "\"\\ud800\"").into_bytes()),
        ("UTF-16", valid.encode_utf16().flat_map(u16::to_le_bytes).collect()),
        ("a NUL byte", [b"{\"id\":\"a".as_slice(), &[0], b"\"}"].concat()),
        ("truncated JSON", valid.as_bytes()[..valid.len() / 2].to_vec()),
        ("two documents", format!("{valid}{valid}").into_bytes()),
        ("a trailing comma", valid.replace("]}", "],}").into_bytes()),
    ];
    for (what, body) in bodies {
        for content_type in [SINGLE, BATCH] {
            let problem = expect_problem(post(&stack, content_type, body.clone()).await, 400, what).await;
            assert_eq!(problem["type"], "urn:momentum:problem:malformed-json", "{what}");
        }
    }
    expect_still_serving(&stack, "after-bad-bytes").await;
    stack.stop().await;
}

/// Meetings of `size` people each, all different, named `<prefix>-<n>`: one
/// person more than a request may name in all.
fn meetings_naming_one_participant_too_many(prefix: &str, size: usize) -> Vec<Value> {
    let most = momentum_bus::PARTICIPANTS_PER_REQUEST_MAX;
    let people: Vec<String> = (0..=most).map(|person| format!("{prefix}-{person}")).collect();
    let organiser = format!("{prefix}-0");
    let meetings = people.chunks(size).enumerate().map(|(index, chunk)| {
        let attendees: Vec<&str> = chunk.iter().map(String::as_str).collect();
        meeting(&format!("{prefix}-{index}"), MOVEMENT, TIME, &attendees, &organiser)
    });
    meetings.collect()
}

#[tokio::test]
async fn a_request_naming_more_distinct_participants_than_the_bound_is_a_413_and_stores_nothing() {
    let stack = TestStack::start().await;
    // Meetings of 1000 people each (the schema's most).
    let meetings = meetings_naming_one_participant_too_many("flood", 1000);
    let body = Value::from(meetings.clone()).to_string();
    let problem = expect_problem(post(&stack, BATCH, body).await, 413, "a batch naming one person too many").await;
    assert_eq!(problem["type"], "urn:momentum:problem:too-many-participants");
    // Nothing of it was stored: without the last meeting's one person, the
    // same meetings are all new.
    let within = &meetings[..meetings.len() - 1];
    let (status, body) = stack.post_batch(within).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], within.len(), "{body}");
    stack.stop().await;
}

#[tokio::test]
async fn a_request_refused_for_naming_too_many_participants_takes_nothing_from_the_rate_limit() {
    let stack = TestStack::start().await;
    // Small meetings, so that the refused batch takes 910 of the token's
    // 1000 events: without them back, the full batch below would wait 910 s.
    let meetings = meetings_naming_one_participant_too_many("limited", 11);
    // The token may post a full batch at once, then one event a second.
    let mut config = ingest_config(&stack.nats.url());
    config.rate_events_per_s = 1;
    config.rate_burst_events = u32::try_from(BATCH_EVENTS_MAX).unwrap();
    let (limited, url) = spawn_ingest(&config).await;
    let post_batch = |events: &[Value]| {
        let request = stack.http.post(format!("{url}/v1/events")).bearer_auth(ADMIN_TOKEN);
        request.header("content-type", BATCH).body(Value::from(events.to_vec()).to_string()).send()
    };
    let flood = post_batch(&meetings).await.expect("ingest answers");
    let problem = expect_problem(flood, 413, "a batch naming one person too many").await;
    assert_eq!(problem["type"], "urn:momentum:problem:too-many-participants");
    // At once: a full batch passes only if the refused one gave back what
    // it took.
    let full: Vec<Value> = (0..BATCH_EVENTS_MAX)
        .map(|index| hours(&format!("after-flood-{index}"), MOVEMENT, TIME, &format!("v-{}", index % 10), 1.0))
        .collect();
    let answer = post_batch(&full).await.expect("ingest answers");
    let status = answer.status();
    let body: Value = answer.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], full.len(), "{body}");
    limited.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn wrong_content_types_empty_bodies_and_batches_that_are_not_arrays_or_too_long_are_refused() {
    let stack = TestStack::start().await;
    let valid = meeting("content-type", MOVEMENT, TIME, &["a"], "o1");
    for content_type in
        ["text/plain", "application/xml", "application/x-www-form-urlencoded", "multipart/form-data", ""]
    {
        let response = post(&stack, content_type, valid.to_string()).await;
        let problem = expect_problem(response, 415, &format!("content type {content_type:?}")).await;
        assert_eq!(problem["type"], "urn:momentum:problem:unsupported-media-type");
    }
    let response = stack
        .http
        .post(format!("{}/v1/events", stack.ingest_url))
        .bearer_auth(&stack.admin_token)
        .body(valid.to_string())
        .send()
        .await
        .unwrap();
    expect_problem(response, 415, "no content type").await;

    for content_type in [SINGLE, BATCH] {
        for body in ["", " ", "\n\t"] {
            let what = format!("the empty body {body:?} as {content_type}");
            let problem = expect_problem(post(&stack, content_type, body).await, 400, &what).await;
            assert_eq!(problem["type"], "urn:momentum:problem:malformed-json", "{what}");
        }
    }
    for body in [valid.to_string(), "\"events\"".to_owned(), "42".to_owned(), "null".to_owned(), "{}".to_owned()] {
        let what = format!("the batch {body}");
        let problem = expect_problem(post(&stack, BATCH, body.clone()).await, 400, &what).await;
        assert_eq!(problem["type"], "urn:momentum:problem:not-a-batch", "{what}");
    }
    // A single event that is not an object is an invalid event, at the root.
    for body in ["null", "[]", "42", "\"event\""] {
        expect_invalid_event(post(&stack, SINGLE, body).await, "", body).await;
    }

    let too_many: Vec<Value> =
        (0..=BATCH_EVENTS_MAX).map(|index| hours(&format!("many-{index}"), MOVEMENT, TIME, "a", 1.0)).collect();
    let body = Value::from(too_many.clone()).to_string();
    let problem = expect_problem(post(&stack, BATCH, body).await, 413, "a batch of 1001 events").await;
    assert_eq!(problem["type"], "urn:momentum:problem:batch-too-large");
    let (status, body) = stack.post_batch(&too_many[..BATCH_EVENTS_MAX]).await;
    assert_eq!(status, 200, "a batch of exactly 1000 events: {body}");
    assert_eq!(body["accepted"], BATCH_EVENTS_MAX);

    // Items that are not events are each rejected at their own root.
    let (status, body) = stack.post_batch(&[json!(null), json!(1), json!("x"), json!([]), valid.clone()]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["rejected"].as_u64(), body["accepted"].as_u64()), (Some(4), Some(1)), "{body}");
    for index in 0..4 {
        let result = &body["results"][index];
        assert_eq!(result["status"], "rejected", "{result}");
        assert_eq!(result["problem"]["status"], 422, "{result}");
        assert_eq!(result["problem"]["errors"][0]["pointer"], "", "{result}");
    }
    let (status, body) = stack.post_batch(&[]).await;
    assert_eq!(status, 200, "an empty batch is a batch: {body}");
    assert_eq!(body["accepted"], 0);
    stack.stop().await;
}

// ---------------------------------------------------------------------------
// Ingest: values at and past the limits

#[tokio::test]
async fn envelope_attributes_past_their_limits_are_rejected_at_their_own_pointer() {
    let stack = TestStack::start().await;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("id", json!(""), "/id"),
        ("id", json!("i".repeat(129)), "/id"),
        ("id", json!(42), "/id"),
        ("id", json!(null), "/id"),
        ("source", json!(""), "/source"),
        ("source", json!("urn:partner one"), "/source"),
        ("source", json!("urn:partner\n"), "/source"),
        ("source", json!("s".repeat(257)), "/source"),
        ("source", json!(["urn:a"]), "/source"),
        ("specversion", json!("1.0 "), "/specversion"),
        ("specversion", json!(1.0), "/specversion"),
        ("type", json!("MEETING.HELD"), "/type"),
        ("type", json!("meeting.held "), "/type"),
        ("type", json!("meeting.>"), "/type"),
        ("type", json!(null), "/type"),
        ("datacontenttype", json!("text/plain"), "/datacontenttype"),
        ("data", json!([]), "/data"),
        ("data", json!("{}"), "/data"),
        ("data", json!(null), "/data"),
    ];
    for (name, value, pointer) in cases {
        let mut event = meeting("envelope", MOVEMENT, TIME, &["a"], "o1");
        event[name] = value.clone();
        expect_invalid_event(post(&stack, SINGLE, event.to_string()).await, pointer, &format!("{name} = {value}"))
            .await;
    }
    for name in ["specversion", "id", "source", "type", "subject", "time", "data"] {
        let mut event = meeting("envelope", MOVEMENT, TIME, &["a"], "o1");
        event.as_object_mut().unwrap().remove(name);
        expect_invalid_event(post(&stack, SINGLE, event.to_string()).await, "", &format!("without {name}")).await;
    }
    // At the limits, and with characters that mean something elsewhere, ids
    // and sources are opaque and accepted.
    for (index, (id, source)) in [
        ("i".repeat(128), "urn:a".to_owned()),
        ("*.>".to_owned(), "s".repeat(256)),
        ("../\u{0}".to_owned(), "urn:%2A".to_owned()),
    ]
    .into_iter()
    .enumerate()
    {
        let mut event = meeting(&id, MOVEMENT, TIME, &["a"], "o1");
        event["source"] = json!(source);
        expect_accepted(post(&stack, SINGLE, event.to_string()).await, &format!("opaque id and source {index}")).await;
    }
    stack.stop().await;
}

#[tokio::test]
async fn ten_thousand_attendees_are_rejected_at_data_attendees_and_a_thousand_are_accepted() {
    let stack = TestStack::start().await;
    let people: Vec<String> = (0..10_000).map(|index| format!("p{index}")).collect();
    let people: Vec<&str> = people.iter().map(String::as_str).collect();
    let crowd = meeting("crowd", MOVEMENT, TIME, &people, "o1");
    expect_invalid_event(post(&stack, SINGLE, crowd.to_string()).await, "/data/attendees", "10 000 attendees").await;
    let (status, body) = stack.post_batch(&[crowd]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["problem"]["errors"][0]["pointer"], "/data/attendees", "{body}");

    let full = meeting("full-hall", MOVEMENT, TIME, &people[..1000], "o1");
    let seq = expect_accepted(post(&stack, SINGLE, full.to_string()).await, "1000 attendees").await;
    let trend = stack.weekly_trend(MOVEMENT, "2026-03-02", "2026-03-08", seq).await;
    assert_eq!(row(&trend, "2026-03-02")["attendances"], 1001, "1000 attendees and the organiser");
    stack.stop().await;
}

#[tokio::test]
async fn hours_that_are_not_numbers_negative_or_huge_are_refused_precisely() {
    let stack = TestStack::start().await;
    let template = hours("ID", MOVEMENT, TIME, "v1", 7.25).to_string().replace("7.25", "HOURS");
    assert!(template.contains("\"hours\":HOURS"), "{template}");
    let with =
        |text: &str| template.replace("HOURS", text).replace("\"ID\"", &format!("\"hours-{}\"", text.replace('"', "")));
    for text in ["NaN", "-NaN", "Infinity", "-Infinity", "1e400", "-1e400", "0x10", "+1", ".5", "1.", "01"] {
        let problem = expect_problem(post(&stack, SINGLE, with(text)).await, 400, text).await;
        assert_eq!(problem["type"], "urn:momentum:problem:malformed-json", "{text}");
    }
    for text in
        ["-1", "0", "-0", "-0.0", "1e-400", "24.000001", "25", "1e308", "-1e308", "18446744073709551616", "\"2\""]
    {
        expect_invalid_event(post(&stack, SINGLE, with(text)).await, "/data/hours", text).await;
    }
    for text in ["24", "0.001", "1e1", "2.5e0"] {
        expect_accepted(post(&stack, SINGLE, with(text)).await, text).await;
    }
    let template = action("reach", MOVEMENT, TIME, &["a"], 1).to_string().replace("\"reach\":1", "\"reach\":REACH");
    for text in ["-1", "1.5", "100000001", "1e20", "18446744073709551616", "NaN"] {
        let response = post(&stack, SINGLE, template.replace("REACH", text)).await;
        if text == "NaN" {
            expect_problem(response, 400, text).await;
        } else {
            expect_invalid_event(response, "/data/reach", text).await;
        }
    }
    stack.stop().await;
}

/// JSON Schema counts a number with a zero fraction (`5e7`, `90.0`) as an
/// integer, and the schemas are the contract, so such a number is a valid
/// `reach` or `duration_minutes`, and the projector reads what was stored.
#[tokio::test]
async fn whole_numbers_written_as_floats_are_accepted_where_the_schema_wants_integers_and_folded() {
    let stack = TestStack::start().await;
    let reach = action("reach-float", MOVEMENT, TIME, &["a"], 1).to_string().replace("\"reach\":1", "\"reach\":5e7");
    expect_accepted(post(&stack, SINGLE, reach).await, "reach 5e7").await;
    let mut meeting = meeting("minutes-float", MOVEMENT, TIME, &["a"], "o1");
    meeting["data"]["duration_minutes"] = json!(90.0);
    let seq = expect_accepted(post(&stack, SINGLE, meeting.to_string()).await, "duration_minutes 90.0").await;
    let trend = stack.weekly_trend(MOVEMENT, "2026-03-02", "2026-03-08", seq).await;
    let week = row(&trend, "2026-03-02");
    assert_eq!(week["people_reached"], 50_000_000, "{trend}");
    assert_eq!(week["meetings"], 1, "{trend}");
    stack.stop().await;
}

/// The RFC 3339 UTC time `seconds` from now, from the system clock.
fn time_from_now(seconds: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let at = now + seconds;
    let (days, second_of_day) = (at.div_euclid(86_400), at.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let (hour, minute, second) = (second_of_day / 3600, second_of_day % 3600 / 60, second_of_day % 60);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

#[tokio::test]
async fn far_future_and_far_past_times_are_rejected_at_time() {
    let stack = TestStack::start().await;
    let hour = 3600;
    let in_25_hours = time_from_now(25 * hour);
    for time in [
        in_25_hours.as_str(),
        "2100-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59-23:59",
        "1800-06-01T12:00:00Z",
        "1899-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "0000-01-01T00:00:00+23:59",
        "+10000-01-01T00:00:00Z",
        "-0001-01-01T00:00:00Z",
        "2026-02-30T10:00:00Z",
        "2026-03-04T25:00:00Z",
        "2026-03-04T18:00:00",
        "2026-03-04",
        "1741110000",
        "",
    ] {
        let event = meeting(&format!("time-{time}"), MOVEMENT, time, &["a"], "o1");
        expect_invalid_event(post(&stack, SINGLE, event.to_string()).await, "/time", time).await;
    }
    let mut event = meeting("time-number", MOVEMENT, TIME, &["a"], "o1");
    event["time"] = json!(1_741_110_000);
    expect_invalid_event(post(&stack, SINGLE, event.to_string()).await, "/time", "a number").await;

    // The earliest time allowed is folded and read like any other.
    let earliest = meeting("earliest", MOVEMENT, "1900-01-01T12:00:00Z", &["a"], "o1");
    let seq = expect_accepted(post(&stack, SINGLE, earliest.to_string()).await, "1900-01-01").await;
    let (status, trend) = stack
        .query(&format!("/v1/movements/{MOVEMENT}/trends?interval=month&from=1900-01-01&to=1900-01-31&min_seq={seq}"))
        .await;
    assert_eq!(status, 200, "{trend}");
    assert_eq!(row(&trend, "1900-01-01")["meetings"], 1, "{trend}");

    // Odd but valid times are accepted and folded: 23 hours ahead, a leap
    // second, and the first minute of 1900 at an offset that puts it in 1899.
    for (id, time) in [
        ("in-23-hours", time_from_now(23 * hour)),
        ("leap-second", "2016-12-31T23:59:60Z".to_owned()),
        ("local-1900", "1900-01-01T00:00:00+23:59".to_owned()),
    ] {
        let event = meeting(id, MOVEMENT, &time, &["a"], "o1");
        let seq = expect_accepted(post(&stack, SINGLE, event.to_string()).await, &time).await;
        let (status, body) = stack.query(&format!("/v1/status?min_seq={seq}")).await;
        assert_eq!(status, 200, "the projector folded {time}: {body}");
    }
    stack.stop().await;
}

#[tokio::test]
async fn the_same_id_from_two_partners_is_two_events_and_both_count() {
    let stack = TestStack::start().await;
    let mut first = meeting("shared-id", MOVEMENT, "2026-03-04T18:00:00Z", &["a", "b"], "o1");
    first["source"] = json!("urn:partner:one");
    let mut second = meeting("shared-id", MOVEMENT, "2026-03-05T18:00:00Z", &["c"], "o2");
    second["source"] = json!("urn:partner:two");
    let one = expect_accepted(post(&stack, SINGLE, first.to_string()).await, "partner one").await;
    let two = expect_accepted(post(&stack, SINGLE, second.to_string()).await, "partner two").await;
    assert_ne!(one, two);
    let (status, again) = stack.post_event(&first).await;
    assert_eq!((status, &again["status"], &again["seq"]), (200, &json!("duplicate"), &json!(one)), "{again}");

    let trend = stack.weekly_trend(MOVEMENT, "2026-03-02", "2026-03-08", two).await;
    let week = row(&trend, "2026-03-02");
    assert_eq!(week["meetings"], 2, "{trend}");
    assert_eq!(week["attendances"], 5, "a, b and o1; c and o2: {trend}");
    let (status, movements) = stack.query(&format!("/v1/movements?min_seq={two}")).await;
    assert_eq!(status, 200);
    assert_eq!(movements["movements"], json!([{ "movement": MOVEMENT, "events": 2 }]));

    // A retraction withdraws its own partner's event only.
    let mut retraction = event("retract-shared", "event.retracted", MOVEMENT, TIME, json!({ "event_id": "shared-id" }));
    retraction["source"] = json!("urn:partner:one");
    let seq = expect_accepted(post(&stack, SINGLE, retraction.to_string()).await, "the retraction").await;
    let trend = stack.weekly_trend(MOVEMENT, "2026-03-02", "2026-03-08", seq).await;
    let week = row(&trend, "2026-03-02");
    assert_eq!(week["meetings"], 1, "partner two's meeting stays: {trend}");
    assert_eq!(week["attendances"], 2, "c and o2: {trend}");

    // One batch: the same event twice is stored once; the same id from two
    // partners is stored twice.
    let twice = meeting("in-one-batch", MOVEMENT, "2026-03-11T18:00:00Z", &["d"], "o3");
    let mut other_partner = twice.clone();
    other_partner["source"] = json!("urn:partner:three");
    let (status, body) = stack.post_batch(&[twice.clone(), twice, other_partner]).await;
    assert_eq!(status, 200, "{body}");
    let statuses: Vec<&Value> = body["results"].as_array().unwrap().iter().map(|result| &result["status"]).collect();
    assert_eq!(statuses, [&json!("accepted"), &json!("duplicate"), &json!("accepted")], "{body}");

    // Participant refs are opaque: refs that differ only by case, spaces,
    // a NUL or Unicode normalisation are different people.
    let refs = ["x", "X", "x ", "x\u{0}", "e\u{301}", "\u{e9}"];
    let opaque = meeting("opaque-refs", MOVEMENT, "2026-03-18T18:00:00Z", &refs, "x");
    let seq = expect_accepted(post(&stack, SINGLE, opaque.to_string()).await, "opaque refs").await;
    let trend = stack.weekly_trend(MOVEMENT, "2026-03-09", "2026-03-22", seq).await;
    assert_eq!(row(&trend, "2026-03-09")["meetings"], 2, "{trend}");
    assert_eq!(row(&trend, "2026-03-16")["attendances"], 6, "the organiser x is one of the attendees: {trend}");
    assert_eq!(row(&trend, "2026-03-16")["active_participants"], 6, "{trend}");
    stack.stop().await;
}

/// Movement ids that are NATS wildcards or separators, or not ids at all.
fn hostile_movements() -> Vec<Value> {
    let texts = [
        "*",
        ">",
        "le*ds",
        "leeds.>",
        "leeds.*",
        "a.b",
        ".leeds",
        "leeds.",
        "leeds walking",
        " leeds",
        "leeds\t",
        "leeds\n",
        "leeds\r\n",
        "leeds\u{0}",
        "Leeds",
        "LEEDS",
        "-leeds",
        "",
        "l\u{e9}eds",
        "\u{ff4c}eeds",
        "leeds\u{200b}",
        "$JS.API.STREAM.DELETE.MOMENTUM_EVENTS",
        "_INBOX.x",
        "momentum.events",
        "a/b",
        "%2A",
    ];
    let mut movements: Vec<Value> = texts.into_iter().map(Value::from).collect();
    movements.push(Value::from("x".repeat(64)));
    movements.extend([json!(42), json!(null), json!(["leeds"]), json!({ "movement": "leeds" }), json!(true)]);
    movements
}

#[tokio::test]
async fn movement_ids_with_nats_wildcards_are_rejected_at_subject_and_never_reach_a_nats_subject() {
    let stack = TestStack::start().await;
    let watch = NatsWatch::start(&stack).await;
    let mut batch = Vec::new();
    for (index, movement) in hostile_movements().into_iter().enumerate() {
        let mut event = meeting(&format!("hostile-{index}"), MOVEMENT, TIME, &["a"], "o1");
        event["subject"] = movement.clone();
        let what = format!("subject {movement}");
        expect_invalid_event(post(&stack, SINGLE, event.to_string()).await, "/subject", &what).await;
        batch.push(event);
    }
    let (status, body) = stack.post_batch(&batch).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rejected"], batch.len(), "{body}");
    for result in body["results"].as_array().unwrap() {
        let errors = result["problem"]["errors"].as_array().unwrap();
        assert!(errors.iter().any(|error| error["pointer"] == "/subject"), "{result}");
    }
    let longest = meeting("longest", &"x".repeat(63), TIME, &["a"], "o1");
    expect_accepted(post(&stack, SINGLE, longest.to_string()).await, "a 63-character movement").await;
    watch.check(&stack).await;
    stack.stop().await;
}

// ---------------------------------------------------------------------------
// Query

/// Path segments that are not movement ids, as they appear in a URL.
const HOSTILE_SEGMENTS: [&str; 20] = [
    "*",
    "%2A",
    "%2a",
    ">",
    "%3E",
    "le*ds",
    "leeds.%3E",
    "a.b",
    "a%2Eb",
    "leeds%20walking",
    "leeds%09",
    "leeds%0A",
    "leeds%00",
    "Leeds",
    "-leeds",
    "l%C3%A9eds",
    "a%2Fb",
    "a..b",
    "%24JS.API.STREAM.INFO.MOMENTUM_EVENTS",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];

#[tokio::test]
async fn movement_path_segments_that_are_not_ids_get_a_400_naming_movement_and_never_reach_nats() {
    let stack = TestStack::start().await;
    let watch = NatsWatch::start(&stack).await;
    for segment in HOSTILE_SEGMENTS {
        for read in ["trends", "cohorts", "principles"] {
            let path = format!("/v1/movements/{segment}/{read}");
            expect_bad_parameter(get(&stack, &path).await, "movement", &path).await;
            let path = format!("{path}?format=csv&min_seq=0");
            expect_bad_parameter(get(&stack, &path).await, "movement", &path).await;
        }
    }
    for list in ["le*ds", "leeds,%3E", "a.b,leeds", "leeds,Leeds"] {
        let path = format!("/v1/compare?movements={list}&metric=meetings");
        let problem = expect_problem(get(&stack, &path).await, 400, &path).await;
        assert_eq!(problem["type"], "urn:momentum:problem:invalid-parameter", "{path}");
    }
    watch.check(&stack).await;
    stack.stop().await;
}

#[tokio::test]
async fn a_movement_path_segment_that_is_not_utf_8_gets_a_problem_naming_movement() {
    let stack = TestStack::start().await;
    for read in ["trends", "cohorts", "principles"] {
        let path = format!("/v1/movements/%FF/{read}");
        expect_bad_parameter(get(&stack, &path).await, "movement", &path).await;
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_dashboard_asset_path_that_is_not_utf_8_gets_a_problem_not_plain_text() {
    let stack = TestStack::start().await;
    for path in ["/assets/%FF", "/assets/vendor/%C0%AF"] {
        let response = stack.http.get(format!("{}{path}", stack.query_url)).send().await.expect("query answers");
        expect_problem(response, 404, path).await;
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_hostile_movement_in_a_comparison_is_reported_at_the_movements_parameter() {
    let stack = TestStack::start().await;
    let path = "/v1/compare?movements=leeds,le*ds&metric=meetings";
    expect_bad_parameter(get(&stack, path).await, "movements", path).await;
    stack.stop().await;
}

#[tokio::test]
async fn garbage_query_parameters_get_a_400_naming_the_parameter() {
    let stack = TestStack::start().await;
    let seq =
        expect_accepted(post(&stack, SINGLE, meeting("known", MOVEMENT, TIME, &["a"], "o1").to_string()).await, "")
            .await;
    let trends = format!("/v1/movements/{MOVEMENT}/trends");
    let cohorts = format!("/v1/movements/{MOVEMENT}/cohorts");
    let principles = format!("/v1/movements/{MOVEMENT}/principles");
    let cases: Vec<(String, &str)> = vec![
        (format!("{trends}?from=2024-13-45"), "from"),
        (format!("{trends}?from=2024-02-30"), "from"),
        (format!("{trends}?from=24-01-01"), "from"),
        (format!("{trends}?from=2024-01-01T00:00:00Z"), "from"),
        (format!("{trends}?from=%FF"), "from"),
        (format!("{trends}?from=1899-12-31"), "from"),
        (format!("{trends}?to=3000-01-01"), "to"),
        (format!("{trends}?to=yesterday"), "to"),
        (format!("{trends}?from=2026-03-01&to=2026-02-01"), "to"),
        (format!("{trends}?min_seq=-1"), "min_seq"),
        (format!("{trends}?min_seq=1.5"), "min_seq"),
        (format!("{trends}?min_seq=18446744073709551616"), "min_seq"),
        (format!("{trends}?min_seq="), "min_seq"),
        (format!("{trends}?interval=decade"), "interval"),
        (format!("{trends}?interval=WEEK"), "interval"),
        (format!("{trends}?interval="), "interval"),
        (format!("{trends}?metrics=nope"), "metrics"),
        (format!("{trends}?metrics=meetings,nope"), "metrics"),
        (format!("{trends}?metrics=meetings,*"), "metrics"),
        (format!("{trends}?format=xml"), "format"),
        (format!("{trends}?format=csv&layout=tall"), "layout"),
        (format!("{cohorts}?interval=day"), "interval"),
        (format!("{cohorts}?interval=decade"), "interval"),
        (format!("{cohorts}?from=2024-13-45"), "from"),
        (format!("{cohorts}?min_seq=-1"), "min_seq"),
        (format!("{principles}?to=2024-13-45"), "to"),
        (format!("{principles}?min_seq=nope"), "min_seq"),
        ("/v1/compare?movements=&metric=meetings".to_owned(), "movements"),
        (format!("/v1/compare?movements={MOVEMENT}&metric=nope"), "metric"),
        (format!("/v1/compare?movements={MOVEMENT}"), "metric"),
        (format!("/v1/compare?movements={MOVEMENT}&metric=meetings&interval=decade"), "interval"),
        (format!("/v1/compare?movements={MOVEMENT}&metric=meetings&from=2024-13-45"), "from"),
        ("/v1/movements?min_seq=-1".to_owned(), "min_seq"),
        ("/v1/status?min_seq=-1".to_owned(), "min_seq"),
        ("/v1/status?min_seq=%FF".to_owned(), "min_seq"),
        // A parameter the route does not take, a filter this version does
        // not know among them, would otherwise answer the unfiltered
        // figures as if it had been applied.
        (format!("{trends}?postcode=LS1"), "postcode"),
        (format!("{trends}?area="), "area"),
        (format!("{trends}?by=postcode"), "by"),
        (format!("{trends}?top=5"), "top"),
        (format!("{trends}?by=area&top=0"), "top"),
        (format!("{trends}?role=organiser"), "role"),
        (format!("{trends}?interval=week&Interval=month"), "Interval"),
        (format!("{cohorts}?metrics=meetings"), "metrics"),
        (format!("{principles}?interval=week"), "interval"),
        (format!("/v1/compare?movements={MOVEMENT}&metric=meetings&movement={MOVEMENT}"), "movement"),
        ("/v1/movements?from=2026-03-01".to_owned(), "from"),
        ("/v1/status?verbose=1".to_owned(), "verbose"),
        // A parameter given twice: which one counts would be a guess.
        (format!("{trends}?from=2026-03-01&from=2026-03-02"), "from"),
    ];
    for (path, parameter) in &cases {
        expect_bad_parameter(get(&stack, path).await, parameter, path).await;
    }
    // Ingest's routes take no query parameters at all.
    let unknown = stack
        .http
        .post(format!("{}/v1/events?dry_run=true", stack.ingest_url))
        .bearer_auth(&stack.admin_token)
        .header("content-type", SINGLE)
        .body(meeting("dry", MOVEMENT, TIME, &["a"], "o1").to_string())
        .send()
        .await
        .expect("ingest answers");
    expect_bad_parameter(unknown, "dry_run", "POST /v1/events?dry_run=true").await;
    // The same reads with good parameters work.
    for path in [
        format!("{trends}?from=2026-03-01&to=2026-03-31&interval=week&metrics=meetings&min_seq={seq}"),
        format!("{cohorts}?from=2026-03-01&to=2026-03-31&interval=month&min_seq={seq}"),
        format!("{principles}?from=2026-03-01&to=2026-03-31&min_seq={seq}"),
        format!("/v1/compare?movements={MOVEMENT}&metric=meetings&from=2026-03-01&to=2026-03-31&min_seq={seq}"),
    ] {
        let response = get(&stack, &path).await;
        assert_eq!(response.status(), 200, "{path}: {}", response.text().await.unwrap());
    }
    stack.stop().await;
}

#[tokio::test]
async fn reads_past_the_projectors_limits_get_a_400_naming_the_parameter() {
    let stack = TestStack::start().await;
    let event = meeting("limits", MOVEMENT, TIME, &["a"], "o1").to_string();
    let seq = expect_accepted(post(&stack, SINGLE, event).await, "an event").await;
    let range = ["from", "to", "interval"];
    let too_many: Vec<String> = (0..21).map(|index| format!("m{index}")).collect();
    let cases: Vec<(String, &[&str])> = vec![
        (format!("/v1/movements/{MOVEMENT}/trends?interval=day&from=1900-01-01&to=2999-12-31&min_seq={seq}"), &range),
        (format!("/v1/movements/{MOVEMENT}/cohorts?interval=week&from=1900-01-01&to=2999-12-31&min_seq={seq}"), &range),
        (format!("/v1/movements/{MOVEMENT}/principles?from=1900-01-01&to=2999-12-31&min_seq={seq}"), &range),
        (format!("/v1/compare?movements={}&metric=meetings&min_seq={seq}", too_many.join(",")), &["movements"]),
    ];
    for (path, parameters) in cases {
        let problem = expect_problem(get(&stack, &path).await, 400, &path).await;
        let named = pointers(&problem);
        assert!(
            named.iter().any(|pointer| parameters.contains(pointer)),
            "{path}: expected one of {parameters:?}: {problem}"
        );
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_known_route_with_the_wrong_method_gets_a_405_problem() {
    let stack = TestStack::start().await;
    let response =
        stack.http.get(format!("{}/v1/events", stack.ingest_url)).bearer_auth(&stack.admin_token).send().await.unwrap();
    expect_problem(response, 405, "GET /v1/events").await;
    let response =
        stack.http.post(format!("{}/v1/status", stack.query_url)).bearer_auth(&stack.admin_token).send().await.unwrap();
    expect_problem(response, 405, "POST /v1/status").await;
    stack.stop().await;
}

#[tokio::test]
async fn a_read_whose_answer_would_not_fit_in_a_nats_message_gets_a_400_naming_from_at_once() {
    use momentum_domain::query::MOVEMENTS_PER_COMPARISON_MAX;
    let stack = TestStack::start().await;
    let movements: Vec<String> = (0..MOVEMENTS_PER_COMPARISON_MAX).map(|index| format!("{MOVEMENT}-{index}")).collect();
    let mut seq = 0;
    for (index, movement) in movements.iter().enumerate() {
        let event = meeting(&format!("big-answer-{index}"), movement, TIME, &["a"], "o1").to_string();
        seq = expect_accepted(post(&stack, SINGLE, event).await, "an event").await;
    }
    // Ten years of days of the most movements a comparison may name is
    // within every limit but about 2.5 MB of JSON, more than NATS carries.
    let range = format!("metric=meetings&interval=day&from=2016-01-01&to=2025-12-31&min_seq={seq}");
    let path = format!("/v1/compare?movements={}&{range}", movements.join(","));
    let started = std::time::Instant::now();
    expect_bad_parameter(get(&stack, &path).await, "from", &path).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(4), "an answer, not a timeout");
    // The same range of two movements fits.
    let response = get(&stack, &format!("/v1/compare?movements={}&{range}", movements[..2].join(","))).await;
    assert_eq!(response.status(), 200);
    stack.stop().await;
}

#[tokio::test]
async fn a_trend_larger_than_a_nats_message_is_answered_whole_because_only_its_totals_cross_nats() {
    let stack = TestStack::start().await;
    let event = meeting("big-trend", MOVEMENT, TIME, &["a"], "o1").to_string();
    let seq = expect_accepted(post(&stack, SINGLE, event).await, "an event").await;
    // Ten years of days with every metric: about 2 MB of JSON, while NATS
    // carries at most 1 MiB, and nearly the most periods a trend may have.
    let path = format!("/v1/movements/{MOVEMENT}/trends?interval=day&from=2016-09-01&to=2026-08-31&min_seq={seq}");
    let response = get(&stack, &path).await;
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.expect("a body");
    assert!(body.len() > 1024 * 1024, "{} bytes", body.len());
    let trend: Value = serde_json::from_slice(&body).expect("a JSON trend");
    let series = trend["series"].as_array().expect("a series");
    assert_eq!(series.len(), 3652);
    let day = series.iter().find(|row| row["period"] == "2026-03-04").expect("the meeting's day");
    assert_eq!(day["meetings"], 1, "{day}");
    assert_eq!(series.iter().filter(|row| row["meetings"] != 0).count(), 1);
    stack.stop().await;
}
