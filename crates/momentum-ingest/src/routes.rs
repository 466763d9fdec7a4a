//! HTTP routes of the ingestion service.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Request, State};
use axum::http::Method;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures::future::join_all;
use momentum_runtime::auth::{Authenticator, Caller};
use momentum_runtime::openapi::{MovementId, Routes};
use momentum_runtime::request_id::RequestId;
use momentum_runtime::{MovementPath, Problem, ProblemField, json_response};
use serde::Serialize;
use serde_json::{Value, json};

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::{AppState, BATCH_EVENTS_MAX, REQUEST_BYTES_MAX, openapi};

/// The `source` of the events ingest writes itself when an admin erases a
/// participant. Partners never post `participant.erased`.
pub const ERASURE_SOURCE: &str = "urn:momentum:erasure";

/// The routes that need a token. Every route is added through [`Routes`],
/// so a test can check that the OpenAPI document describes each one.
fn data_routes() -> Routes<Arc<AppState>> {
    Routes::new().route(Method::POST, "/v1/events", post_events).route(
        Method::POST,
        "/v1/movements/{movement}/erasures",
        post_erasure,
    )
}

/// The routes anyone may call.
fn public_routes() -> Routes<Arc<AppState>> {
    Routes::new()
        .route(Method::GET, "/livez", livez)
        .route(Method::GET, "/readyz", readyz)
        .route(Method::GET, "/metrics", metrics)
        .route(Method::GET, "/openapi.json", openapi_json)
}

/// (method, path) of every route: those that need a token, and the others.
#[cfg(test)]
pub(crate) fn route_lists() -> (momentum_runtime::openapi::RouteList, momentum_runtime::openapi::RouteList) {
    (data_routes().list().to_vec(), public_routes().list().to_vec())
}

pub(crate) fn router(state: Arc<AppState>, authenticator: Arc<Authenticator>) -> Router {
    Router::new()
        .merge(momentum_runtime::auth::protect(data_routes().into_router(), authenticator))
        .merge(public_routes().into_router())
        // Swagger UI for /openapi.json: public, and not an API operation, so
        // outside the route lists the OpenAPI document is checked against.
        .merge(momentum_runtime::openapi::docs())
        .method_not_allowed_fallback(momentum_runtime::method_not_allowed)
        .fallback(|| async {
            Problem::new(StatusCode::NOT_FOUND, "not-found", "no such resource")
                .detail("events are posted to POST /v1/events; /openapi.json describes every route")
        })
        .with_state(state)
}

#[utoipa::path(
    get, path = "/livez", tag = "health",
    summary = "Liveness",
    description = "Answers while the process serves HTTP.",
    responses(
        (status = 200, description = "Alive.", body = String, content_type = "text/plain", example = "ok"),
        (status = 503, response = inline(openapi::Busy)),
    ),
)]
pub(crate) async fn livez() -> &'static str {
    "ok"
}

#[utoipa::path(
    get, path = "/metrics", tag = "health",
    summary = "Prometheus metrics",
    description = "Requests by route and status, events by outcome, publish latency, rate-limited requests and the \
                   NATS connection state, in the OpenMetrics text format.",
    responses(
        (status = 200, description = "The metrics.", body = String,
         content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 503, response = inline(openapi::Busy)),
    ),
)]
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    momentum_runtime::metrics::metrics_response(&state.metrics.registry, Some(&state.nats))
}

#[utoipa::path(
    get, path = "/readyz", tag = "health",
    summary = "Readiness",
    description = "Ready while connected to NATS.",
    responses(
        (status = 200, description = "Ready.", body = String, content_type = "text/plain", example = "ready"),
        (status = 503, response = inline(openapi::NotReady)),
    ),
)]
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    momentum_runtime::nats_unready(&state.nats).unwrap_or_else(|| (StatusCode::OK, "ready").into_response())
}

/// What a request body holds, by its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Single,
    Batch,
}

#[utoipa::path(
    get, path = "/openapi.json", tag = "health",
    summary = "This document",
    description = "The OpenAPI 3.1 document of the ingestion API.",
    responses(
        (status = 200, description = "The document.", body = Object, content_type = "application/json"),
        (status = 503, response = inline(openapi::Busy)),
    ),
)]
pub(crate) async fn openapi_json() -> Response {
    json_response(StatusCode::OK, openapi::document())
}

pub(crate) fn body_kind(request: &Request) -> Result<BodyKind, Problem> {
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

pub(crate) fn parse_json(bytes: &[u8]) -> Result<Value, Problem> {
    serde_json::from_slice(bytes).map_err(|error| {
        Problem::new(StatusCode::BAD_REQUEST, "malformed-json", "the request body is not valid JSON").detail(format!(
            "line {}, column {}: {error}",
            error.line(),
            error.column()
        ))
    })
}

pub(crate) fn not_a_batch() -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "not-a-batch", "a batch must be a JSON array")
        .detail("application/cloudevents-batch+json bodies are arrays of events")
}

#[utoipa::path(
    post, path = "/v1/events", tag = "events",
    summary = "Post one event or a batch",
    description = "One event as `application/cloudevents+json` (or `application/json`), or a JSON array of at most \
        1000 events as `application/cloudevents-batch+json`; at most 4 MiB. An event is answered only after \
        JetStream has stored it; a repeat of a (`source`, `id`) already stored for the movement is answered `duplicate` within the \
        stream's duplicate window (`MOMENTUM_DUPLICATE_WINDOW_S`, 2 hours by default); after it, a repeat is answered \
        `accepted` but still counted once, and never replaces the event first stored: to correct an event, retract \
        it and post the correction under a new `id`. Retrying is always safe. A partner's token may post only its own `source` and movements; an evaluator's none.",
    request_body(
        description = "A CloudEvent (structured JSON mode), or an array of them.",
        content(
            (openapi::CloudEvent = "application/cloudevents+json", example = json!(example_event())),
            (openapi::CloudEvent = "application/json", example = json!(example_event())),
            (openapi::EventBatch = "application/cloudevents-batch+json", example = json!([example_event()])),
        ),
    ),
    responses(
        (status = 202, description = "The event is stored.", body = EventResult,
            example = json!({ "id": "hours-0001", "status": "accepted", "seq": 1 })),
        (status = 200, description = "One event that was already stored (`duplicate`), or a batch: a result per \
            event (`accepted`, `duplicate`, or `rejected` with its problem) in order, counts, and `max_seq`.",
            body = openapi::PostedOk, example = json!({
                "results": [
                    { "index": 0, "id": "hours-0001", "status": "accepted", "seq": 7 },
                    { "index": 1, "id": "hours-0002", "status": "rejected", "problem": {
                        "type": "urn:momentum:problem:invalid-event", "title": "the event does not match its schema",
                        "status": 422, "detail": "/data/hours: 30 is greater than the maximum of 24",
                        "errors": [{ "pointer": "/data/hours", "message": "30 is greater than the maximum of 24" }] } },
                ],
                "accepted": 1, "duplicates": 0, "rejected": 1, "max_seq": 7,
            })),
        (status = 400, response = inline(openapi::EventsBadRequest)),
        (status = 401, response = inline(openapi::Unauthorized)),
        (status = 403, response = inline(openapi::EventsForbidden)),
        (status = 408, response = inline(openapi::BodyTimeout)),
        (status = 413, response = inline(openapi::EventsTooLarge)),
        (status = 415, response = inline(openapi::UnsupportedMediaType)),
        (status = 422, response = inline(openapi::InvalidEvent)),
        (status = 429, response = inline(openapi::RateLimited)),
        (status = 503, response = inline(openapi::EventsUnavailable)),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn post_events(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    request: Request,
) -> Response {
    if let Err(problem) = caller.require_writer() {
        return problem.into_response();
    }
    let request_id = request.extensions().get::<RequestId>().map(|RequestId(id)| id.clone());
    let kind = match body_kind(&request) {
        Ok(kind) => kind,
        Err(problem) => return problem.into_response(),
    };
    let body = match read_body(request.into_body(), state.body_timeout).await {
        Ok(body) => body,
        Err(problem) => return problem.into_response(),
    };
    // Held until the answer is made: the parsed events live that long.
    let kibibytes = u32::try_from(body.len().div_ceil(1024).max(1)).expect("a body is at most REQUEST_BYTES_MAX");
    let _body_budget = state.body_kibibytes.acquire_many(kibibytes).await.expect("the body budget is never closed");
    let value = match parse_json(&body) {
        Ok(value) => value,
        Err(problem) => return problem.into_response(),
    };
    let events = match (kind, value) {
        (BodyKind::Batch, Value::Array(events)) => events,
        (BodyKind::Batch, _) => return not_a_batch().into_response(),
        (BodyKind::Single, event) => vec![event],
    };
    if events.len() > BATCH_EVENTS_MAX {
        return Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "batch-too-large", "the batch has too many events")
            .detail(format!("got {} events; a batch may hold at most {BATCH_EVENTS_MAX}", events.len()))
            .into_response();
    }
    if let Err(wait) = state.rate_limiter.take(&caller.name, events.len(), Instant::now()) {
        state.metrics.rate_limited.inc();
        return Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", "this token is posting too fast")
            .detail(format!(
                "each token may post {} events a second on average; retry after the wait in Retry-After",
                state.rate_limiter.events_per_second()
            ))
            .retry_after(wait.as_secs_f64().ceil() as u32)
            .into_response();
    }
    match kind {
        BodyKind::Batch => post_batch(&state, &caller, events, request_id.as_deref()).await,
        BodyKind::Single => {
            let event = events.into_iter().next().expect("one event");
            post_single(&state, &caller, event, request_id.as_deref()).await
        }
    }
}

/// The answer for one event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EventResult {
    /// The event's place in its batch, from 0 (batches only).
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    /// The event's `id`, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    status: EventStatus,
    /// The event's stream sequence, for `min_seq` reads (not for rejected events).
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    /// Why the event was rejected (rejected events only).
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<Problem>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EventStatus {
    Accepted,
    Duplicate,
    Rejected,
}

/// A validated event that its caller may post.
struct Checked {
    subject: String,
    message_id: String,
    movement: String,
    kind: momentum_domain::EventType,
    event: Value,
}

/// An event ready to publish: refs pseudonymised, serialised.
struct Prepared {
    subject: String,
    message_id: String,
    payload: Bytes,
}

pub(crate) fn invalid_event(errors: Vec<momentum_domain::FieldError>) -> Problem {
    let detail = errors.iter().map(|error| format!("{}: {}", pointer_or_root(&error.pointer), error.message));
    let detail = detail.collect::<Vec<_>>().join("; ");
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-event", "the event does not match its schema")
        .detail(detail)
        .errors(
            errors.into_iter().map(|error| ProblemField { pointer: error.pointer, message: error.message }).collect(),
        )
}

/// Refused before any salt is made or any event published: nothing of the
/// request is stored.
pub(crate) fn too_many_participants() -> Problem {
    let most = momentum_bus::PARTICIPANTS_PER_REQUEST_MAX;
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too-many-participants", "the request names too many participants")
        .detail(format!(
            "a request may name at most {most} distinct participants (a movement and a ref) across its valid \
             events; nothing was stored: post the events in smaller batches"
        ))
}

fn pointer_or_root(pointer: &str) -> &str {
    if pointer.is_empty() { "(the event)" } else { pointer }
}

fn check(state: &AppState, caller: &Caller, mut event: Value) -> Result<Checked, Problem> {
    momentum_domain::validation::normalise_numbers(&mut event);
    let typed = state.validator.validate(&event, Utc::now()).map_err(invalid_event)?;
    caller.require_write(&typed.source, &typed.subject)?;
    Ok(Checked {
        subject: momentum_bus::event_subject(&typed.subject, typed.kind.as_str()),
        message_id: momentum_bus::message_id(&typed.subject, &typed.source, &typed.id),
        movement: typed.subject,
        kind: typed.kind,
        event,
    })
}

/// Why a whole request was refused before any of its events was published.
enum Refused {
    /// More distinct participants than a request may name: nothing of the
    /// request was stored, and the answer is the same however often it is
    /// sent.
    TooManyParticipants,
    /// The salt bucket did not answer. No event was published, but salts
    /// of some participants may have been made.
    SaltsUnreachable,
}

impl Refused {
    /// The answer. A request refused for its size gives its events back to
    /// the token's rate limit, so a client that splits it, as `momentum
    /// import` does, is not charged twice; the refusal costs nothing but
    /// the checks, and comes before any salt is made. A request refused
    /// because the salt bucket is away keeps its charge: retries then
    /// stay within the limit while the bucket recovers.
    fn answer(self, state: &AppState, caller: &Caller, events: usize) -> Response {
        match self {
            Refused::TooManyParticipants => {
                state.rate_limiter.give_back(&caller.name, events);
                too_many_participants().into_response()
            }
            Refused::SaltsUnreachable => {
                Problem::unavailable("the event store did not answer; it is safe to retry").into_response()
            }
        }
    }
}

/// Replaces every participant ref of the checked events by its pseudonym
/// and serialises them. The stored form is the event as posted (CloudEvents
/// extension attributes included) with only the refs changed. A failure to
/// reach the salt bucket fails the request (503): nothing is published.
async fn prepare(
    state: &AppState,
    mut checked: Vec<Result<Checked, Problem>>,
) -> Result<Vec<Result<Prepared, Problem>>, Refused> {
    let mut participants = HashSet::new();
    for Checked { movement, kind, event, .. } in checked.iter_mut().flatten() {
        // Walked in place and left as it is, rather than copying every
        // event's data only to read its refs.
        if let Some(data) = event.get_mut("data") {
            momentum_domain::event::rewrite_participant_refs(*kind, data, |participant| {
                participants.insert((movement.clone(), participant.clone()));
            });
        }
        if participants.len() > momentum_bus::PARTICIPANTS_PER_REQUEST_MAX {
            return Err(Refused::TooManyParticipants);
        }
    }
    let pseudonyms: HashMap<(String, String), String> = match state.pseudonymiser.pseudonyms(participants).await {
        Ok(pseudonyms) => pseudonyms,
        Err(error) => {
            tracing::warn!(%error, "pseudonymisation failed; answering 503");
            return Err(Refused::SaltsUnreachable);
        }
    };
    let prepare_one = |checked: Checked| {
        let Checked { subject, message_id, movement, kind, mut event } = checked;
        if let Some(data) = event.get_mut("data") {
            momentum_domain::event::rewrite_participant_refs(kind, data, |participant| {
                let pseudonym = &pseudonyms[&(movement.clone(), participant.clone())];
                participant.clone_from(pseudonym);
            });
        }
        let payload = serde_json::to_vec(&event).expect("a parsed value always serialises");
        if payload.len() > momentum_bus::EVENT_BYTES_MAX {
            return Err(Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "event-too-large", "the event is too large")
                .detail(format!("an event may be at most {} bytes as stored JSON", momentum_bus::EVENT_BYTES_MAX)));
        }
        Ok(Prepared { subject, message_id, payload: Bytes::from(payload) })
    };
    Ok(checked.into_iter().map(|checked| checked.and_then(prepare_one)).collect())
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
/// `request_id` travels with each event in a NATS header, so the
/// projector's log can name the request that brought it.
async fn publish_all(
    state: &AppState,
    events: Vec<Prepared>,
    request_id: Option<&str>,
) -> Vec<Result<(u64, bool), PublishError>> {
    if state.nats.connection_state() != async_nats::connection::State::Connected {
        return events.iter().map(|_| Err(PublishError::Disconnected)).collect();
    }
    // async-nats hands out the same number of permits one publish at a
    // time and frees each only when its acknowledgement is awaited, which
    // happens here after the last event is sent. Requests sending at the
    // same time could each take some and then all wait, unanswered, for
    // more. Taking every permit a request needs at once, in arrival order,
    // leaves each request's sends never waiting on another's.
    let count = u32::try_from(events.len()).expect("a request holds at most BATCH_EVENTS_MAX events");
    let _permits = state.publish_permits.acquire_many(count).await.expect("the publish permits are never closed");
    let started = Instant::now();
    let mut pending = Vec::with_capacity(events.len());
    for event in events {
        let mut message = async_nats::jetstream::message::PublishMessage::build()
            .message_id(&event.message_id)
            .payload(event.payload);
        if let Some(request_id) = request_id {
            message = message.header(momentum_runtime::request_id::NATS_HEADER, request_id);
        }
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
    let outcomes = join_all(acknowledgements).await;
    state.metrics.publish_seconds.observe(started.elapsed().as_secs_f64());
    outcomes
}

fn publish_failed(error: &PublishError) -> Response {
    tracing::warn!(%error, "publish failed; answering 503");
    Problem::unavailable("the event store did not confirm the event; it is safe to retry").into_response()
}

async fn post_single(state: &AppState, caller: &Caller, event: Value, request_id: Option<&str>) -> Response {
    let id = event["id"].as_str().map(str::to_owned);
    let prepared = match prepare(state, vec![check(state, caller, event)]).await {
        Ok(mut prepared) => prepared.pop().expect("one event in, one out"),
        Err(refused) => return refused.answer(state, caller, 1),
    };
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(problem) => {
            state.metrics.count("rejected", 1);
            return problem.into_response();
        }
    };
    let result = publish_all(state, vec![prepared], request_id).await.pop().expect("one event in, one result out");
    match result {
        Ok((seq, duplicate)) => {
            let (status, code) = if duplicate {
                (EventStatus::Duplicate, StatusCode::OK)
            } else {
                (EventStatus::Accepted, StatusCode::ACCEPTED)
            };
            state.metrics.count(if duplicate { "duplicate" } else { "accepted" }, 1);
            json_response(code, &EventResult { index: None, id, status, seq: Some(seq), problem: None })
        }
        Err(error) => publish_failed(&error),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct BatchResult {
    /// One result per event, in the batch's order.
    results: Vec<EventResult>,
    accepted: usize,
    duplicates: usize,
    rejected: usize,
    /// The highest stream sequence of the batch's events, for `min_seq` reads.
    #[schema(required = true)]
    max_seq: Option<u64>,
}

async fn post_batch(state: &AppState, caller: &Caller, events: Vec<Value>, request_id: Option<&str>) -> Response {
    let ids: Vec<Option<String>> =
        events.iter().map(|event| event.get("id").and_then(Value::as_str).map(str::to_owned)).collect();
    let count = events.len();
    let checked = events.into_iter().map(|event| check(state, caller, event)).collect();
    let prepared = match prepare(state, checked).await {
        Ok(prepared) => prepared,
        Err(refused) => return refused.answer(state, caller, count),
    };
    let mut results: Vec<EventResult> = Vec::with_capacity(prepared.len());
    let mut to_publish = Vec::new();
    let mut published_indexes = Vec::new();
    for ((index, prepared), id) in prepared.into_iter().enumerate().zip(ids) {
        match prepared {
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
    let outcomes = publish_all(state, to_publish, request_id).await;
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
    state.metrics.count("accepted", body.accepted);
    state.metrics.count("duplicate", body.duplicates);
    state.metrics.count("rejected", body.rejected);
    json_response(StatusCode::OK, &body)
}

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ErasureRequest {
    /// The participant's ref, as partners post it (not a pseudonym).
    #[schema(min_length = 1, max_length = 128, example = "v-12")]
    participant: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ErasureResult {
    movement: String,
    /// How many pseudonyms (one per key version the participant was seen
    /// under) were erased; 0 if the participant has no records.
    pseudonyms_erased: usize,
    /// The stream sequence of the erasure event, for `min_seq` reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
}

/// Erases one participant of one movement (admin only): an erasure event
/// tells the projector to remove their per-participant records, then their
/// salt is purged so nothing can tie them to their pseudonym again. The
/// order matters for retries: until the purge succeeds, a retry finds the
/// same pseudonyms and publishes the same event (deduplicated).
#[utoipa::path(
    post, path = "/v1/movements/{movement}/erasures", tag = "erasure",
    summary = "Erase a participant of a movement (admin only)",
    description = "Publishes a `participant.erased` event (the projector removes the participant's per-participant \
        records and leaves their pseudonym out of later events), then purges their salt so nothing can tie them \
        to their pseudonym again. 202 with the erasure event's `seq`; 200 with `pseudonyms_erased: 0` when the \
        participant has no records. Safe to retry.",
    params(("movement" = MovementId, Path, description = "The movement id.")),
    request_body(content((ErasureRequest = "application/json"))),
    responses(
        (status = 202, description = "Erased.", body = ErasureResult,
            example = json!({ "movement": "bristol-befriending", "pseudonyms_erased": 1, "seq": 4711 })),
        (status = 200, description = "Nothing to erase: the participant has no records in this movement.",
            body = ErasureResult, example = json!({ "movement": "bristol-befriending", "pseudonyms_erased": 0 })),
        (status = 400, response = inline(openapi::ErasureBadRequest)),
        (status = 401, response = inline(openapi::Unauthorized)),
        (status = 403, response = inline(openapi::ErasureForbidden)),
        (status = 408, response = inline(openapi::BodyTimeout)),
        (status = 413, response = inline(openapi::ErasureTooLarge)),
        (status = 422, response = inline(openapi::ErasureInvalid)),
        (status = 503, response = inline(openapi::ErasureUnavailable)),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn post_erasure(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    MovementPath(movement): MovementPath,
    request: Request,
) -> Response {
    if let Err(problem) = caller.require_admin() {
        return problem.into_response();
    }
    let request_id = request.extensions().get::<RequestId>().cloned();
    if !momentum_domain::event::is_movement_id(&movement) {
        return Problem::bad_parameter("movement", "must be 1 to 63 lower-case letters, digits and hyphens")
            .into_response();
    }
    let body = match read_body(request.into_body(), state.body_timeout).await {
        Ok(body) => body,
        Err(problem) => return problem.into_response(),
    };
    let participant = match serde_json::from_slice::<ErasureRequest>(&body) {
        Ok(request) if (1..=128).contains(&request.participant.chars().count()) => request.participant,
        Ok(_) => {
            return Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-request", "the request is not valid")
                .field("/participant", "must be 1 to 128 characters")
                .into_response();
        }
        Err(error) => {
            return Problem::new(StatusCode::BAD_REQUEST, "malformed-json", "the request body is not valid")
                .detail(format!("expected {{\"participant\": \"<ref>\"}}: {error}"))
                .into_response();
        }
    };
    let unavailable = |error: &dyn std::fmt::Display| {
        tracing::warn!(%error, "erasure failed; answering 503");
        Problem::unavailable("the event store did not answer; the erasure is safe to retry").into_response()
    };
    let erasure = match state.pseudonymiser.find(&movement, &participant).await {
        Ok(erasure) => erasure,
        Err(error) => return unavailable(&error),
    };
    if erasure.pseudonyms.is_empty() {
        return json_response(StatusCode::OK, &ErasureResult { movement, pseudonyms_erased: 0, seq: None });
    }
    // The same pseudonyms always make the same event id, so a retried
    // erasure is one event in the stream.
    let mut name = movement.clone();
    for pseudonym in &erasure.pseudonyms {
        name.push('\n');
        name.push_str(pseudonym);
    }
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string();
    let event = serde_json::json!({
        "specversion": "1.0",
        "id": id,
        "source": ERASURE_SOURCE,
        "type": momentum_domain::EventType::ParticipantErased.as_str(),
        "subject": movement,
        "time": Utc::now().to_rfc3339(),
        "data": { "pseudonyms": erasure.pseudonyms },
    });
    let prepared = Prepared {
        subject: momentum_bus::event_subject(&movement, momentum_domain::EventType::ParticipantErased.as_str()),
        message_id: momentum_bus::message_id(&movement, ERASURE_SOURCE, &id),
        payload: Bytes::from(serde_json::to_vec(&event).expect("a value always serialises")),
    };
    let request_id = request_id.as_ref().map(|RequestId(id)| id.as_str());
    let seq = match publish_all(&state, vec![prepared], request_id).await.pop().expect("one event in, one result out") {
        Ok((seq, _)) => seq,
        Err(error) => return unavailable(&error),
    };
    if let Err(error) = state.pseudonymiser.purge(&erasure).await {
        return unavailable(&error);
    }
    tracing::info!(movement, caller = caller.name, seq, "participant erased");
    let result = ErasureResult { movement, pseudonyms_erased: erasure.pseudonyms.len(), seq: Some(seq) };
    json_response(StatusCode::ACCEPTED, &result)
}

/// The event the API document shows.
fn example_event() -> Value {
    json!({
        "specversion": "1.0", "id": "hours-0001", "source": "urn:partner:age-uk-bristol",
        "type": "volunteer.hours_logged", "subject": "bristol-befriending",
        "time": "2026-03-05T09:00:00+00:00", "data": { "participant": "v-12", "hours": 2.5 },
    })
}
