//! Posting the events to ingest: in batches within its limits, each request
//! retried on 408, 429, 502, 503, 504 and connection errors, and its answers
//! counted ([`Outcome`]) or turned into problems.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use super::ImportArgs;
use super::events::Built;
use super::problems::Problem;
use super::traced::event_problems;
use crate::progress::Progress;

/// The counts of an import.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub(super) accepted: u64,
    pub(super) duplicates: u64,
    pub(super) rejected: u64,
    pub(super) not_posted: u64,
    /// The highest stream sequence ingest answered, for `min_seq` reads.
    pub(super) max_seq: u64,
}

/// Bodies stay well under ingest's 4 MiB limit.
const BODY_BYTES_MAX: usize = 3 * 1024 * 1024;
const ATTEMPTS_MAX: u32 = 5;

/// Posts the events in batches; errors only when the service cannot take
/// them at all (unreachable after retries, a token it refuses).
pub(super) async fn post(
    arguments: &ImportArgs,
    events: &[Built],
    outcome: &mut Outcome,
    problems: &mut Vec<Problem>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let url = format!("{}/v1/events", arguments.ingest_url.trim_end_matches('/'));
    let progress = Progress::new(events.len() as u64, "posted");
    let batches = batches(events, usize::from(arguments.batch_size));
    let mut posted = 0;
    for (position, range) in batches.iter().enumerate() {
        let batch = &events[range.clone()];
        let body = Value::from(batch.iter().map(|built| built.event.clone()).collect::<Vec<_>>()).to_string();
        let answer = match send(&client, &url, arguments.token.as_deref(), body, &progress).await {
            Ok(answer) => answer,
            Err(error) => {
                outcome.not_posted = (events.len() - posted) as u64;
                progress.finish();
                return Err(error);
            }
        };
        outcome.max_seq = outcome.max_seq.max(answer["max_seq"].as_u64().unwrap_or(0));
        let results = answer["results"].as_array().cloned().unwrap_or_default();
        for (index, built) in batch.iter().enumerate() {
            let result = results.iter().find(|result| result["index"].as_u64() == Some(index as u64));
            match result.and_then(|result| result["status"].as_str()) {
                Some("accepted") => outcome.accepted += 1,
                Some("duplicate") => outcome.duplicates += 1,
                status => {
                    outcome.rejected += 1;
                    let problem = &result.map_or(Value::Null, |result| result["problem"].clone());
                    let found = server_problems(built, problem, status);
                    for problem in found {
                        if arguments.verbose {
                            progress.println(&problem.to_string());
                        }
                        problems.push(problem);
                    }
                }
            }
        }
        posted += batch.len();
        progress.set(posted as u64, position + 1 == batches.len());
    }
    progress.finish();
    Ok(())
}

fn server_problems(built: &Built, problem: &Value, status: Option<&str>) -> Vec<Problem> {
    let errors: Vec<(String, String)> = problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|error| {
                    (
                        error["pointer"].as_str().unwrap_or_default().to_owned(),
                        error["message"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if errors.is_empty() {
        let reason = problem["detail"]
            .as_str()
            .or(problem["title"].as_str())
            .map_or_else(|| format!("the server answered {}", status.unwrap_or("nothing for it")), str::to_owned);
        return event_problems(built, std::iter::once(("", format!("rejected by the server: {reason}").as_str())));
    }
    event_problems(built, errors.iter().map(|(pointer, message)| (pointer.as_str(), message.as_str())))
}

/// Consecutive ranges of at most `size` events, about [`BODY_BYTES_MAX`]
/// bytes and [`momentum_bus::PARTICIPANTS_PER_REQUEST_MAX`] distinct
/// participants (ingest refuses a request naming more).
fn batches(events: &[Built], size: usize) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut bytes) = (0, 2);
    let mut participants = HashSet::new();
    for (index, built) in events.iter().enumerate() {
        let length = built.event.to_string().len() + 1;
        let named = participants_named(&built.event);
        let new_participants = named.iter().filter(|participant| !participants.contains(*participant)).count();
        let too_many_participants = participants.len() + new_participants > momentum_bus::PARTICIPANTS_PER_REQUEST_MAX;
        if index > start && (index - start >= size || bytes + length > BODY_BYTES_MAX || too_many_participants) {
            ranges.push(start..index);
            start = index;
            bytes = 2;
            participants.clear();
        }
        bytes += length;
        participants.extend(named);
    }
    if start < events.len() {
        ranges.push(start..events.len());
    }
    ranges
}

/// The distinct (movement, ref) pairs an event names, as ingest counts them.
fn participants_named(event: &Value) -> HashSet<(String, String)> {
    let mut named = HashSet::new();
    let movement = event["subject"].as_str().unwrap_or_default();
    if let Some(kind) = event["type"].as_str().and_then(momentum_domain::EventType::parse) {
        let mut data = event["data"].clone();
        momentum_domain::event::rewrite_participant_refs(kind, &mut data, |participant| {
            named.insert((movement.to_owned(), participant.clone()));
        });
    }
    named
}

/// One request, retried on 408, 429, 502, 503, 504 and connection errors.
async fn send(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: String,
    progress: &Progress,
) -> anyhow::Result<Value> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut request = client.post(url).header("content-type", "application/cloudevents-batch+json");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let (retry, wait, why) = match request.body(body.clone()).send().await {
            Ok(response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.trim().parse::<u64>().ok())
                    .map(|seconds| Duration::from_secs(seconds.min(60)));
                let text = response.text().await.unwrap_or_default();
                if status.is_success() {
                    return serde_json::from_str(&text)
                        .with_context(|| format!("the ingestion service answered {status} with no JSON"));
                }
                let detail = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|problem| problem["detail"].as_str().or(problem["title"].as_str()).map(str::to_owned))
                    .unwrap_or(text);
                let retry = matches!(status.as_u16(), 408 | 429 | 502 | 503 | 504);
                if !retry {
                    bail!("the ingestion service at {url} answered {status}: {detail}");
                }
                (retry, retry_after, format!("{status}: {detail}"))
            }
            // A URL that cannot be used will not work on a later attempt.
            Err(error) if error.is_builder() => bail!("cannot post to {url}: {}", with_causes(&error)),
            Err(error) => (true, None, format!("could not reach {url}: {}", with_causes(&error))),
        };
        if !retry || attempt >= ATTEMPTS_MAX {
            bail!("giving up after {attempt} attempts: {why}");
        }
        let wait = wait.unwrap_or(Duration::from_millis(500 * (1 << (attempt - 1))));
        progress.println(&format!("{why}; retrying in {:.1} s", wait.as_secs_f64()));
        tokio::time::sleep(wait).await;
    }
}

/// An error with the errors that caused it: reqwest's own message only
/// says a request failed, its causes say why (refused, timed out, no such
/// host).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use serde_json::json;

    use super::*;
    use crate::import::tests::read;

    #[tokio::test]
    async fn a_post_nobody_answers_is_reported_with_why() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let error = reqwest::Client::new().post(format!("http://127.0.0.1:{port}/v1/events")).send().await.unwrap_err();
        let text = with_causes(&error);
        assert!(text.to_lowercase().contains("refused"), "{text}");
        assert!(!error.to_string().to_lowercase().contains("refused"), "reqwest's own message does not say why");
    }

    /// A server (on a thread of its own) answering each connection with the
    /// next canned response; says how many requests it got.
    fn canned_server(responses: Vec<&'static str>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/events", listener.local_addr().unwrap());
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = count.clone();
        std::thread::spawn(move || {
            for response in responses {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                // Read the head and the body (its length is in the head).
                loop {
                    let read = stream.read(&mut buffer).unwrap();
                    request.extend_from_slice(&buffer[..read]);
                    let text = String::from_utf8_lossy(&request).to_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|line| line.strip_prefix("content-length:"))
                            .and_then(|value| value.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                    if read == 0 {
                        break;
                    }
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                stream.write_all(response.as_bytes()).unwrap();
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        });
        (url, count)
    }

    #[tokio::test]
    async fn unavailable_and_rate_limited_answers_are_retried_but_a_refusal_is_not() {
        let body = r#"{"results":[],"accepted":0,"duplicates":0,"rejected":0,"max_seq":7}"#;
        let ok: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        );
        let busy =
            "HTTP/1.1 503 Service Unavailable\r\nretry-after: 0\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        let slow = "HTTP/1.1 429 Too Many Requests\r\nretry-after: 0\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        let client = reqwest::Client::new();
        let progress = Progress { bar: None, total: 1, done: "posted", last_line: std::sync::Mutex::new(None) };
        let (url, count) = canned_server(vec![busy, slow, ok]);
        let answer = send(&client, &url, Some("t"), "[]".to_owned(), &progress).await.unwrap();
        assert_eq!(answer["max_seq"], 7);
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3);

        let refused = "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/problem+json\r\ncontent-length: 28\r\nconnection: close\r\n\r\n{\"title\":\"no valid token\"}  ";
        let (url, count) = canned_server(vec![refused, ok]);
        let error = send(&client, &url, None, "[]".to_owned(), &progress).await.unwrap_err();
        assert!(error.to_string().contains("401"), "{error}");
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1, "a refusal is not retried");

        let (url, count) = canned_server(vec![busy; 5]);
        let error = send(&client, &url, None, "[]".to_owned(), &progress).await.unwrap_err();
        assert!(error.to_string().contains("after 5 attempts"), "{error}");
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 5);
    }

    #[test]
    fn batches_respect_count_and_size() {
        let parsed = read("date,volunteer,hours\n2026-03-05,v-1,1\n2026-03-05,v-2,1\n2026-03-05,v-3,1\n");
        assert_eq!(batches(&parsed.events, 2), vec![0..2, 2..3]);
        assert_eq!(batches(&parsed.events, 500), vec![0..3]);
    }

    #[test]
    fn batches_name_at_most_the_participants_ingest_takes_in_one_request() {
        let most = momentum_bus::PARTICIPANTS_PER_REQUEST_MAX;
        let meeting = |attendees: std::ops::Range<usize>| Built {
            event: json!({ "type": "meeting.held", "subject": "leeds",
                "data": { "attendees": attendees.map(|a| format!("a-{a}")).collect::<Vec<_>>() } }),
            lines: Vec::new(),
            locations: Vec::new(),
            cells: Vec::new(),
        };
        // 250 meetings of 100 people each, all different, then 50 of the
        // same 100 people as the 250th.
        let mut events: Vec<Built> = (0..250).map(|m| meeting(m * 100..m * 100 + 100)).collect();
        events.extend((0..50).map(|_| meeting(24_900..25_000)));
        let ranges = batches(&events, 1000);
        for range in &ranges {
            let named: HashSet<_> =
                events[range.clone()].iter().flat_map(|built| participants_named(&built.event)).collect();
            assert!(named.len() <= most, "{range:?} names {}", named.len());
        }
        // 100 meetings reach the bound; repeats of people already in the
        // batch cost nothing.
        assert_eq!(ranges, vec![0..100, 100..200, 200..300]);
    }
}
