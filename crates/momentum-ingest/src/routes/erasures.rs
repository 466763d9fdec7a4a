//! `POST /v1/movements/{movement}/erasures`: erasing a participant of a
//! movement (admin only).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use momentum_runtime::auth::{Caller, Movements, TokenRole};
use momentum_runtime::request_id::RequestId;
use momentum_runtime::{MovementPath, NoParameters, Parameters, Problem, json_response, problem_responses};
use serde::Serialize;

use super::body::{self, BodyTimeout, read_body};
use super::events::{Prepared, publish_all};
use crate::AppState;

/// The `source` of the events ingest writes itself when an admin erases a
/// participant. Partners never post `participant.erased`.
pub(crate) const ERASURE_SOURCE: &str = "urn:momentum:erasure";

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
    params(("movement" = momentum_domain::query::MovementId, Path, description = "The movement id.")),
    request_body(content((ErasureRequest = "application/json"))),
    responses(
        (status = 202, description = "Erased.", body = ErasureResult,
            example = json!({ "movement": "bristol-befriending", "pseudonyms_erased": 1, "seq": 4711 })),
        (status = 200, description = "Nothing to erase: the participant has no records in this movement.",
            body = ErasureResult, example = json!({ "movement": "bristol-befriending", "pseudonyms_erased": 0 })),
        (status = 400, response = inline(ErasureBadRequest)),
        (status = 403, response = inline(ErasureForbidden)),
        (status = 408, response = inline(BodyTimeout)),
        (status = 413, response = inline(ErasureTooLarge)),
        (status = 422, response = inline(ErasureInvalid)),
        (status = 503, response = inline(ErasureUnavailable)),
    ),
)]
pub(crate) async fn post_erasure(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    MovementPath(movement): MovementPath,
    Parameters(NoParameters {}): Parameters<NoParameters>,
    request: Request,
) -> Response {
    let movement = String::from(movement);
    if let Err(problem) = caller.require_admin() {
        return problem.into_response();
    }
    let request_id = request.extensions().get::<RequestId>().cloned();
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

fn admin_only() -> Problem {
    let movements = Movements::Only(["bristol-befriending".to_owned()].into());
    let caller = Caller { name: "example".to_owned(), role: TokenRole::Evaluator, source: None, movements };
    caller.require_admin().expect_err("evaluators do not erase")
}

problem_responses! {
    ErasureBadRequest => ("The movement id or the body is not valid, or a query parameter was given.", [
        Problem::bad_parameter("movement", momentum_domain::query::NotAMovementId("Leeds Walks".to_owned()).to_string()),
        Problem::new(StatusCode::BAD_REQUEST, "malformed-json", "the request body is not valid")
            .detail("expected {\"participant\": \"<ref>\"}: EOF while parsing a value at line 1 column 0"),
    ]);
    ErasureForbidden => ("Only admin tokens may erase.", [admin_only()]);
    ErasureTooLarge => ("The body is too large.", [body::examples::payload_too_large()]);
    ErasureInvalid => ("The participant ref is empty or too long.", [
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-request", "the request is not valid")
            .field("/participant", "must be 1 to 128 characters"),
    ]);
    ErasureUnavailable => ("NATS is away or slow: the erasure is safe to retry.", [
        Problem::unavailable("the event store did not answer; the erasure is safe to retry"),
    ]);
}
