//! HTTP routes of the ingestion service.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use futures::future::join_all;
use momentum_runtime::{Problem, ProblemField, json_response};
use serde::Serialize;
use serde_json::Value;

use std::time::Duration;

use crate::{AppState, BATCH_EVENTS_MAX, REQUEST_BYTES_MAX};

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/events", post(post_events))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(|| async {
            Problem::new(StatusCode::NOT_FOUND, "not-found", "no such resource")
                .detail("events are posted to POST /v1/events")
        })
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    momentum_runtime::nats_unready(&state.nats).unwrap_or_else(|| (StatusCode::OK, "ready").into_response())
}

/// What a request body holds, by its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyKind {
    Single,
    Batch,
}

fn body_kind(request: &Request) -> Result<BodyKind, Problem> {
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match media_type.as_str() {
        "application/cloudevents+json" | "application/json" => Ok(BodyKind::Single),
        "application/cloudevents-batch+json" => Ok(BodyKind::Batch),
        _ => Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "the request body has an unsupported content type",
        )
        .detail(format!(
            "got {content_type:?}; send one event as application/cloudevents+json (or application/json) \
             or an array of events as application/cloudevents-batch+json"
        ))),
    }
}

async fn read_body(body: Body, timeout: Duration) -> Result<Bytes, Problem> {
    let reading = axum::body::to_bytes(body, REQUEST_BYTES_MAX);
    match tokio::time::timeout(timeout, reading).await {
        Err(_) => Err(Problem::new(StatusCode::REQUEST_TIMEOUT, "body-timeout", "the request body arrived too slowly")
            .detail(format!("a request body must arrive within {} ms", timeout.as_millis()))),
        Ok(Err(_)) => {
            Err(Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "the request body is too large")
                .detail(format!("a request body may be at most {REQUEST_BYTES_MAX} bytes")))
        }
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

fn parse_json(bytes: &[u8]) -> Result<Value, Problem> {
    serde_json::from_slice(bytes).map_err(|error| {
        Problem::new(StatusCode::BAD_REQUEST, "malformed-json", "the request body is not valid JSON").detail(format!(
            "line {}, column {}: {error}",
            error.line(),
            error.column()
        ))
    })
}

async fn post_events(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let kind = match body_kind(&request) {
        Ok(kind) => kind,
        Err(problem) => return problem.into_response(),
    };
    let body = match read_body(request.into_body(), state.body_timeout).await {
        Ok(body) => body,
        Err(problem) => return problem.into_response(),
    };
    let value = match parse_json(&body) {
        Ok(value) => value,
        Err(problem) => return problem.into_response(),
    };
    match (kind, value) {
        (BodyKind::Batch, Value::Array(events)) => post_batch(&state, events).await,
        (BodyKind::Batch, _) => Problem::new(StatusCode::BAD_REQUEST, "not-a-batch", "a batch must be a JSON array")
            .detail("application/cloudevents-batch+json bodies are arrays of events")
            .into_response(),
        (BodyKind::Single, event) => post_single(&state, event).await,
    }
}

/// The answer for one event.
#[derive(Debug, Serialize)]
struct EventResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    status: EventStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<Problem>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum EventStatus {
    Accepted,
    Duplicate,
    Rejected,
}

/// A validated event ready to publish.
struct Checked {
    subject: String,
    message_id: String,
    payload: Bytes,
}

fn invalid_event(errors: Vec<momentum_domain::FieldError>) -> Problem {
    let detail = errors.iter().map(|error| format!("{}: {}", pointer_or_root(&error.pointer), error.message));
    let detail = detail.collect::<Vec<_>>().join("; ");
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-event", "the event does not match its schema")
        .detail(detail)
        .errors(
            errors.into_iter().map(|error| ProblemField { pointer: error.pointer, message: error.message }).collect(),
        )
}

fn pointer_or_root(pointer: &str) -> &str {
    if pointer.is_empty() { "(the event)" } else { pointer }
}

fn check(state: &AppState, event: &Value) -> Result<Checked, Problem> {
    let typed = state.validator.validate(event, Utc::now()).map_err(invalid_event)?;
    // The stored form is the event as posted (CloudEvents extension
    // attributes included), re-serialised compactly.
    let payload = serde_json::to_vec(event).expect("a parsed value always serialises");
    if payload.len() > momentum_bus::EVENT_BYTES_MAX {
        return Err(Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "event-too-large", "the event is too large")
            .detail(format!("an event may be at most {} bytes as JSON", momentum_bus::EVENT_BYTES_MAX)));
    }
    Ok(Checked {
        subject: momentum_bus::event_subject(&typed.subject, typed.kind.as_str()),
        message_id: momentum_bus::message_id(&typed.source, &typed.id),
        payload: Bytes::from(payload),
    })
}

/// Why a publish did not complete; either way the partner should retry.
#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error("NATS is not connected")]
    Disconnected,
    #[error("JetStream did not acknowledge the event: {0}")]
    NotAcknowledged(String),
}

/// Publishes every checked event with all PubAcks in flight at once, and
/// returns, in order, each one's (stream sequence, duplicate) or error.
async fn publish_all(state: &AppState, events: Vec<Checked>) -> Vec<Result<(u64, bool), PublishError>> {
    if state.nats.connection_state() != async_nats::connection::State::Connected {
        return events.iter().map(|_| Err(PublishError::Disconnected)).collect();
    }
    let mut pending = Vec::with_capacity(events.len());
    for event in events {
        let message = async_nats::jetstream::message::PublishMessage::build()
            .message_id(&event.message_id)
            .payload(event.payload);
        pending.push(state.jetstream.send_publish(event.subject, message).await);
    }
    let acknowledgements = pending.into_iter().map(|sent| async move {
        let ack_future = sent.map_err(|error| PublishError::NotAcknowledged(error.to_string()))?;
        let ack = tokio::time::timeout(state.publish_timeout, ack_future)
            .await
            .map_err(|_| PublishError::NotAcknowledged("timed out".to_owned()))?
            .map_err(|error| PublishError::NotAcknowledged(error.to_string()))?;
        Ok((ack.sequence, ack.duplicate))
    });
    join_all(acknowledgements).await
}

fn publish_failed(error: &PublishError) -> Response {
    tracing::warn!(%error, "publish failed; answering 503");
    Problem::unavailable("the event store did not confirm the event; it is safe to retry").into_response()
}

async fn post_single(state: &AppState, event: Value) -> Response {
    let checked = match check(state, &event) {
        Ok(checked) => checked,
        Err(problem) => return problem.into_response(),
    };
    let id = event["id"].as_str().map(str::to_owned);
    let result = publish_all(state, vec![checked]).await.pop().expect("one event in, one result out");
    match result {
        Ok((seq, duplicate)) => {
            let (status, code) = if duplicate {
                (EventStatus::Duplicate, StatusCode::OK)
            } else {
                (EventStatus::Accepted, StatusCode::ACCEPTED)
            };
            json_response(code, &EventResult { index: None, id, status, seq: Some(seq), problem: None })
        }
        Err(error) => publish_failed(&error),
    }
}

#[derive(Debug, Serialize)]
struct BatchResult {
    results: Vec<EventResult>,
    accepted: usize,
    duplicates: usize,
    rejected: usize,
    /// The highest stream sequence of the batch's events, for `min_seq` reads.
    max_seq: Option<u64>,
}

async fn post_batch(state: &AppState, events: Vec<Value>) -> Response {
    if events.len() > BATCH_EVENTS_MAX {
        return Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "batch-too-large", "the batch has too many events")
            .detail(format!("got {} events; a batch may hold at most {BATCH_EVENTS_MAX}", events.len()))
            .into_response();
    }
    let mut results: Vec<EventResult> = Vec::with_capacity(events.len());
    let mut to_publish = Vec::new();
    let mut published_indexes = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let id = event.get("id").and_then(Value::as_str).map(str::to_owned);
        match check(state, event) {
            Ok(checked) => {
                to_publish.push(checked);
                published_indexes.push(index);
                results.push(EventResult {
                    index: Some(index),
                    id,
                    status: EventStatus::Accepted,
                    seq: None,
                    problem: None,
                });
            }
            Err(problem) => results.push(EventResult {
                index: Some(index),
                id,
                status: EventStatus::Rejected,
                seq: None,
                problem: Some(problem),
            }),
        }
    }
    let outcomes = publish_all(state, to_publish).await;
    // If any event of the batch did not reach the stream, the whole request
    // is answered 503: the partner retries it as it is, and the events that
    // did get through are recognised as duplicates.
    if let Some(Err(error)) = outcomes.iter().find(|outcome| outcome.is_err()) {
        return publish_failed(error);
    }
    for (index, outcome) in published_indexes.into_iter().zip(outcomes) {
        let (seq, duplicate) = outcome.expect("errors were answered above");
        let result = &mut results[index];
        result.seq = Some(seq);
        if duplicate {
            result.status = EventStatus::Duplicate;
        }
    }
    let count = |status| results.iter().filter(|result| result.status == status).count();
    let body = BatchResult {
        accepted: count(EventStatus::Accepted),
        duplicates: count(EventStatus::Duplicate),
        rejected: count(EventStatus::Rejected),
        max_seq: results.iter().filter_map(|result| result.seq).max(),
        results,
    };
    json_response(StatusCode::OK, &body)
}
