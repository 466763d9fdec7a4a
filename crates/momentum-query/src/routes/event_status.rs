//! What became of a partner's events: `GET /v1/events/{id}?source=` for one,
//! `POST /v1/events/status` for up to 1000. Answered from the projection
//! (never by reading the stream): `accepted` with the stream sequence,
//! `retracted` with the retraction's id, or `unknown`. A partner asks only
//! of its own source; another source's ids are answered 404, as if absent.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use momentum_bus::protocol::{Asked, EventStatusRequest, EventStatuses};
use momentum_domain::ledger::EventFate;
use momentum_domain::query::MovementId;
use momentum_runtime::auth::{Caller, Movements, TokenRole};
use momentum_runtime::{Parameters, Problem, problem_responses};

use super::answer::{self, ReadUnavailable};
use super::parameters::{examples, sequence};
use crate::AppState;

/// The most ids one `POST /v1/events/status` asks about.
pub(crate) const IDS_PER_REQUEST_MAX: usize = 1_000;
/// The longest event id (the envelope schema's bound).
const ID_CHARACTERS_MAX: usize = 128;

/// The parameters of `GET /v1/events/{id}`.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventStatusParameters {
    /// The `source` the event was posted with: the token's own, for a partner. Required.
    #[param(value_type = String, min_length = 1, max_length = 256)]
    source: Option<String>,
    /// Wait (at most the projector's `MOMENTUM_QUERY_WAIT_MS_MAX`) until the projection includes this sequence.
    #[param(value_type = Option<crate::openapi::SequenceNumber>)]
    min_seq: Option<String>,
}

/// The `{id}` of the path, for the document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only described; the handler reads it
struct EventIdParameter {
    /// The event's `id`, as posted.
    #[param(min_length = 1, max_length = 128)]
    id: String,
}

/// The body of `POST /v1/events/status`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventStatusBody {
    /// The `source` the events were posted with: the token's own, for a partner.
    #[schema(min_length = 1, max_length = 256)]
    source: String,
    /// Their ids (at most 1000).
    #[schema(schema_with = ids_schema)]
    ids: Vec<String>,
}

/// The parameters of `POST /v1/events/status`.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventStatusesParameters {
    /// Wait (at most the projector's `MOMENTUM_QUERY_WAIT_MS_MAX`) until the projection includes this sequence.
    #[param(value_type = Option<crate::openapi::SequenceNumber>)]
    min_seq: Option<String>,
}

/// The longest source (the envelope schema's bound).
const SOURCE_CHARACTERS_MAX: usize = 256;

/// A source as asked: 1 to 256 characters.
fn checked_source(source: Option<&str>, name: &str) -> Result<String, Problem> {
    match source {
        Some(source) if !source.is_empty() && source.chars().count() <= SOURCE_CHARACTERS_MAX => Ok(source.to_owned()),
        Some(_) => Err(Problem::bad_parameter(name, format!("must be 1 to {SOURCE_CHARACTERS_MAX} characters"))),
        None => Err(Problem::bad_parameter(name, "is required: the source the events were posted with")),
    }
}

/// The schema of `ids`: 1 to 1000 ids of 1 to 128 characters.
fn ids_schema() -> utoipa::openapi::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let id = ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(ID_CHARACTERS_MAX));
    ArrayBuilder::new()
        .items(id)
        .min_items(Some(1))
        .max_items(Some(IDS_PER_REQUEST_MAX))
        .description(Some("Their ids (at most 1000)."))
        .build()
}

/// What became of one event in one movement, or that the projection knows no such event.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct EventStatusItem {
    /// The event's id.
    id: String,
    /// `accepted`, `retracted` or `unknown`.
    #[schema(pattern = "^(accepted|retracted|unknown)$")]
    status: &'static str,
    /// The movement it was posted to (not for `unknown`).
    #[serde(skip_serializing_if = "Option::is_none")]
    movement: Option<MovementId>,
    /// Its stream sequence (not for `unknown`).
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    /// The id of the retraction that retracted it (for `retracted`).
    #[serde(skip_serializing_if = "Option::is_none")]
    retracted_by: Option<String>,
}

/// The answer: every id asked, in order, once per movement it is known in, or once as `unknown`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct EventStatusAnswer {
    /// The source asked about.
    source: String,
    /// The last stream sequence the projection had applied: an event posted up to it and not known is unknown.
    watermark: u64,
    /// The events.
    events: Vec<EventStatusItem>,
}

/// Every id once per movement it is known in, or once as `unknown`.
fn items(ids: &[String], statuses: EventStatuses) -> Vec<EventStatusItem> {
    let mut known = statuses.statuses.into_iter().peekable();
    let mut items = Vec::new();
    for id in ids {
        let before = items.len();
        while let Some(status) = known.next_if(|status| &status.id == id) {
            let (status_name, seq, retracted_by) = match status.fate {
                EventFate::Accepted { seq } => ("accepted", seq, None),
                EventFate::Retracted { seq, retracted_by } => ("retracted", seq, Some(retracted_by)),
            };
            let movement = Some(status.movement);
            items.push(EventStatusItem { id: id.clone(), status: status_name, movement, seq: Some(seq), retracted_by });
        }
        if items.len() == before {
            items.push(EventStatusItem {
                id: id.clone(),
                status: "unknown",
                movement: None,
                seq: None,
                retracted_by: None,
            });
        }
    }
    items
}

/// Asks the projection about `ids` of `source`, in the movements the caller may see.
async fn statuses(
    state: &AppState,
    caller: &Caller,
    source: String,
    mut ids: Vec<String>,
    min_seq: Option<u64>,
) -> Response {
    if let Err(problem) = caller.require_source_reader(&source) {
        return problem.into_response();
    }
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    let movements = match (&caller.role, &caller.movements) {
        (TokenRole::Partner, Movements::Only(movements)) => {
            let movements: Vec<MovementId> =
                movements.iter().filter_map(|movement| MovementId::parse(movement).ok()).collect();
            if movements.is_empty() {
                let answer = EventStatusAnswer { source, watermark: 0, events: items(&ids, empty()) };
                return (StatusCode::OK, axum::Json(answer)).into_response();
            }
            movements
        }
        _ => Vec::new(),
    };
    let read = EventStatusRequest { source: source.clone(), ids: ids.clone(), movements };
    match answer::ask(state, Asked { min_seq, read }).await {
        Ok(statuses) => {
            let watermark = statuses.watermark;
            let answer = EventStatusAnswer { source, watermark, events: items(&ids, statuses) };
            (StatusCode::OK, axum::Json(answer)).into_response()
        }
        Err(response) => response,
    }
}

fn empty() -> EventStatuses {
    EventStatuses { statuses: Vec::new(), watermark: 0 }
}

#[utoipa::path(
    get, path = "/v1/events/{id}", tag = "partners",
    summary = "What became of one of a partner's events",
    description = "Whether the event (`source`, `id`) was accepted (with its stream sequence), retracted (with the \
        retraction's id), or is unknown to the projection, in each movement it was posted to. For an admin, or a \
        partner token of that source; another source's events are answered 404, as if they did not exist.",
    params(EventIdParameter, EventStatusParameters),
    responses(
        (status = 200, description = "What became of it.", body = EventStatusAnswer, example = json!({
            "source": "urn:partner:me", "watermark": 4711,
            "events": [{ "id": "hours-0001", "status": "accepted", "movement": "bristol-befriending", "seq": 17 }],
        })),
        (status = 400, response = inline(EventStatusBadRequest)),
        (status = 403, response = inline(EventStatusForbidden)),
        (status = 404, response = inline(EventStatusNotFound)),
        (status = 503, response = inline(ReadUnavailable)),
    ),
)]
pub(crate) async fn event_status(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(id): Path<String>,
    Parameters(parameters): Parameters<EventStatusParameters>,
) -> Response {
    let asked = (|| {
        if id.is_empty() || id.chars().count() > ID_CHARACTERS_MAX {
            return Err(Problem::bad_parameter("id", format!("must be 1 to {ID_CHARACTERS_MAX} characters")));
        }
        let source = checked_source(parameters.source.as_deref(), "source")?;
        Ok((source, sequence(parameters.min_seq.as_deref(), "min_seq")?))
    })();
    match asked {
        Ok((source, min_seq)) => statuses(&state, &caller, source, vec![id], min_seq).await,
        Err(problem) => problem.into_response(),
    }
}

#[utoipa::path(
    post, path = "/v1/events/status", tag = "partners",
    summary = "What became of up to 1000 of a partner's events",
    description = "`GET /v1/events/{id}` for many ids at once, so a partner reconciles its records without posting \
        them again. The answer lists every id asked, in order: once per movement it is known in, or once as \
        `unknown`. For an admin, or a partner token of that source; another source's events are answered 404.",
    params(EventStatusesParameters),
    request_body(content = EventStatusBody, content_type = "application/json", example = json!({
        "source": "urn:partner:me", "ids": ["hours-0001", "hours-0002"],
    })),
    responses(
        (status = 200, description = "What became of them.", body = EventStatusAnswer, example = json!({
            "source": "urn:partner:me", "watermark": 4711,
            "events": [
                { "id": "hours-0001", "status": "retracted", "movement": "bristol-befriending", "seq": 17,
                  "retracted_by": "fix-0001" },
                { "id": "hours-0002", "status": "unknown" },
            ],
        })),
        (status = 400, response = inline(EventStatusBadRequest)),
        (status = 403, response = inline(EventStatusForbidden)),
        (status = 404, response = inline(EventStatusNotFound)),
        (status = 503, response = inline(ReadUnavailable)),
    ),
)]
pub(crate) async fn event_statuses(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Parameters(parameters): Parameters<EventStatusesParameters>,
    body: Bytes,
) -> Response {
    let body: EventStatusBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(error) => {
            return Problem::new(StatusCode::BAD_REQUEST, "invalid-body", "the body is not valid")
                .detail(format!("the body must be {{\"source\": …, \"ids\": […]}}: {error}"))
                .into_response();
        }
    };
    let checked = (|| {
        let source = checked_source(Some(&body.source), "/source")?;
        if body.ids.is_empty() || body.ids.len() > IDS_PER_REQUEST_MAX {
            return Err(Problem::bad_parameter("/ids", format!("must hold 1 to {IDS_PER_REQUEST_MAX} ids")));
        }
        if let Some(index) = body.ids.iter().position(|id| id.is_empty() || id.chars().count() > ID_CHARACTERS_MAX) {
            return Err(Problem::bad_parameter(
                &format!("/ids/{index}"),
                format!("must be 1 to {ID_CHARACTERS_MAX} characters"),
            ));
        }
        Ok((source, sequence(parameters.min_seq.as_deref(), "min_seq")?))
    })();
    match checked {
        Ok((source, min_seq)) => statuses(&state, &caller, source, body.ids, min_seq).await,
        Err(problem) => problem.into_response(),
    }
}

problem_responses! {
    EventStatusBadRequest => ("A parameter or the body is not valid.", [
        Problem::bad_parameter("source", "is required: the source the event was posted with"),
        Problem::bad_parameter("/ids", format!("must hold 1 to {IDS_PER_REQUEST_MAX} ids")),
        examples::bad_min_seq(),
    ]);
    EventStatusForbidden => ("The token may not ask about partners' events (an evaluator's).", [
        Problem::new(StatusCode::FORBIDDEN, "forbidden", "the token does not allow this")
            .detail("evaluator tokens read figures, not partners' events"),
    ]);
    EventStatusNotFound => ("A partner asked about another source's events.", [
        Problem::new(StatusCode::NOT_FOUND, "unknown-event", "no such event")
            .detail("this token knows no events of that source"),
    ]);
}
