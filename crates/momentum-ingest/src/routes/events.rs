//! `POST /v1/events`: one event or a batch, each validated, pseudonymised
//! and acknowledged only once JetStream has stored it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Extension, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures::future::join_all;
use momentum_runtime::auth::{Caller, TokenRole};
use momentum_runtime::request_id::RequestId;
use momentum_runtime::{NoParameters, Parameters, Problem, ProblemField, json_response, problem_responses};
use serde::Serialize;
use serde_json::{Value, json};

use super::body::{self, BodyKind, BodyTimeout, body_kind, not_a_batch, parse_json, read_body};
use crate::{AppState, BATCH_EVENTS_MAX};

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
            (crate::openapi::CloudEvent = "application/cloudevents+json", example = json!(example_event())),
            (crate::openapi::CloudEvent = "application/json", example = json!(example_event())),
            (crate::openapi::EventBatch = "application/cloudevents-batch+json", example = json!([example_event()])),
        ),
    ),
    responses(
        (status = 202, description = "The event is stored.", body = EventResult,
            example = json!({ "id": "hours-0001", "status": "accepted", "seq": 1 })),
        (status = 200, description = "One event that was already stored (`duplicate`), or a batch: a result per \
            event (`accepted`, `duplicate`, or `rejected` with its problem) in order, counts, and `max_seq`.",
            body = PostedOk, example = json!({
                "results": [
                    { "index": 0, "id": "hours-0001", "status": "accepted", "seq": 7 },
                    { "index": 1, "id": "hours-0002", "status": "rejected", "problem": {
                        "type": "urn:momentum:problem:invalid-event", "title": "the event does not match its schema",
                        "status": 422, "detail": "/data/hours: 30 is greater than the maximum of 24",
                        "errors": [{ "pointer": "/data/hours", "message": "30 is greater than the maximum of 24" }] } },
                ],
                "accepted": 1, "duplicates": 0, "rejected": 1, "max_seq": 7,
            })),
        (status = 400, response = inline(EventsBadRequest)),
        (status = 403, response = inline(EventsForbidden)),
        (status = 408, response = inline(BodyTimeout)),
        (status = 413, response = inline(EventsTooLarge)),
        (status = 415, response = inline(UnsupportedMediaType)),
        (status = 422, response = inline(InvalidEvent)),
        (status = 429, response = inline(RateLimited)),
        (status = 503, response = inline(EventsUnavailable)),
    ),
)]
pub(crate) async fn post_events(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Parameters(NoParameters {}): Parameters<NoParameters>,
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
pub(super) struct Prepared {
    pub(super) subject: String,
    pub(super) message_id: String,
    pub(super) payload: Bytes,
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
    let validated = state.validator.validate(&event, Utc::now()).map_err(invalid_event)?;
    caller.require_write(&validated.source, &validated.subject)?;
    Ok(Checked {
        subject: momentum_bus::event_subject(&validated.subject, validated.kind.as_str()),
        message_id: momentum_bus::message_id(&validated.subject, &validated.source, &validated.id),
        movement: validated.subject,
        kind: validated.kind,
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
pub(super) enum PublishError {
    #[error("NATS is not connected")]
    Disconnected,
    #[error("JetStream did not acknowledge the event: {0}")]
    NotAcknowledged(String),
}

/// Publishes every checked event with all PubAcks in flight at once, and
/// returns, in order, each one's (stream sequence, duplicate) or error.
/// `request_id` travels with each event in a NATS header, so the
/// projector's log can name the request that brought it.
pub(super) async fn publish_all(
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

/// The event the API document shows.
fn example_event() -> Value {
    json!({
        "specversion": "1.0", "id": "hours-0001", "source": "urn:partner:age-uk-bristol",
        "type": "volunteer.hours_logged", "subject": "bristol-befriending",
        "time": "2026-03-05T09:00:00+00:00", "data": { "participant": "v-12", "hours": 2.5 },
    })
}

/// The 200 answer of `POST /v1/events`: a repeated single event, or a batch.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only described, never built
pub(crate) enum PostedOk {
    Duplicate(EventResult),
    Batch(BatchResult),
}

/// Examples of this route's problems, for the API document.
mod examples {
    use momentum_runtime::auth::{Caller, Movements, TokenRole};

    use super::*;

    pub(super) fn caller(role: TokenRole) -> Caller {
        let source = (role == TokenRole::Partner).then(|| "urn:partner:age-uk-bristol".to_owned());
        let movements = Movements::Only(["bristol-befriending".to_owned()].into());
        Caller { name: "example".to_owned(), role, source, movements }
    }

    pub(super) fn invalid() -> Problem {
        let validator = momentum_domain::Validator::new().expect("the schemas compile");
        let event = json!({
            "specversion": "1.0", "id": "hours-0001", "source": "urn:partner:age-uk-bristol",
            "type": "volunteer.hours_logged", "subject": "bristol-befriending",
            "time": "2026-03-05T09:00:00+00:00", "data": { "participant": "v-12", "hours": 30 },
        });
        let now = "2026-03-05T10:00:00Z".parse().expect("a time");
        invalid_event(validator.validate(&event, now).expect_err("30 hours in a day is invalid"))
    }
}

// The description of `EventsTooLarge` names this bound in words.
const _: () = assert!(momentum_bus::PARTICIPANTS_PER_REQUEST_MAX == 10_000, "EventsTooLarge names the bound");

problem_responses! {
    EventsBadRequest => ("The body is not JSON, or a batch is not a JSON array, or a query parameter was given.", [
        parse_json(b"{\"id\": ").expect_err("not JSON"),
        not_a_batch(),
    ]);
    EventsForbidden => ("The token may not post events: an evaluator's token, or (for one event) a partner's \
        token with another `source` or movement. In a batch, the latter is a per-event result instead.", [
        examples::caller(TokenRole::Evaluator).require_writer().expect_err("evaluators do not write"),
        examples::caller(TokenRole::Partner)
            .require_write("urn:partner:other", "bristol-befriending")
            .expect_err("another source"),
    ]);
    EventsTooLarge => ("The body, the batch or one event is too large, or the request names more than \
        10 000 distinct participants.", [
        body::examples::payload_too_large(),
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "batch-too-large", "the batch has too many events")
            .detail(format!("got 1001 events; a batch may hold at most {BATCH_EVENTS_MAX}")),
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "event-too-large", "the event is too large")
            .detail(format!("an event may be at most {} bytes as stored JSON", momentum_bus::EVENT_BYTES_MAX)),
        too_many_participants(),
    ]);
    UnsupportedMediaType => ("The content type is not one of the three accepted.", [
        body::examples::unsupported_media_type(),
    ]);
    InvalidEvent => ("The event does not match its schema (or its `time` is more than 24 hours ahead); \
        `errors` names each field with a JSON Pointer into the event.", [examples::invalid()]);
    RateLimited => ("The token posts more events than its rate allows; retry after `Retry-After` seconds.", [
        Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", "this token is posting too fast")
            .detail("each token may post 5000 events a second on average; retry after the wait in Retry-After")
            .retry_after(1),
    ]);
    EventsUnavailable => ("NATS is away or slow, or the service is at its bound of requests in flight: \
        nothing was lost, and retrying the same request is safe.", [
        Problem::unavailable("the event store did not confirm the event; it is safe to retry"),
    ]);
}
