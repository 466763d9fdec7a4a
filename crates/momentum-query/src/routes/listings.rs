//! `GET /v1/movements` and `GET /v1/status`: what the projection holds.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::Response;
use momentum_domain::query::{MovementList, Status};
use momentum_runtime::auth::Caller;
use momentum_runtime::{Parameters, Problem, problem_responses};

use super::answer::{self, ListForbidden, ReadUnavailable};
use super::parameters::{Reading, examples, read_parameters};
use crate::AppState;

read_parameters! {
    /// The parameters of the listings.
    ListParameters {}
}

/// The caller may read, and how it wants the answer.
fn reading(caller: &Caller, parameters: &ListParameters, headers: &HeaderMap) -> Result<Reading, Problem> {
    caller.require_reader()?;
    parameters.reading(headers)
}

#[utoipa::path(
    get, path = "/v1/movements", tag = "reads",
    summary = "List movements",
    description = "Every movement with at least one event that the token may read, with its number of distinct \
        accepted events.",
    params(ListParameters),
    responses(
        (status = 200, description = "The movements.", headers(("Momentum-Watermark" = u64, description = "In a CSV answer, the last stream sequence its figures include; a JSON answer holds it as `watermark`.")),
            content(
            (MovementList = "application/json",
                example = json!({ "watermark": 42, "movements": [{ "movement": "bristol-befriending", "events": 42 }] })),
            (String = "text/csv", example = "movement,events\nbristol-befriending,42\n"),
            (crate::openapi::ParquetFile = "application/vnd.apache.parquet"),
        )),
        (status = 400, response = inline(ListBadRequest)),
        (status = 403, response = inline(ListForbidden)),
        (status = 503, response = inline(ReadUnavailable)),
    ),
)]
pub(crate) async fn movements(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    headers: HeaderMap,
    Parameters(parameters): Parameters<ListParameters>,
) -> Response {
    let asked = reading(&caller, &parameters, &headers).map(|reading| ((), reading));
    answer::read::<MovementList, _, _>(asked, |(), min_seq| answer::movements(&state, &caller, min_seq)).await
}

#[utoipa::path(
    get, path = "/v1/status", tag = "reads",
    summary = "Projection status",
    description = "The watermark (last stream sequence applied) of the projector that answered.",
    params(ListParameters),
    responses(
        (status = 200, description = "The status.", headers(("Momentum-Watermark" = u64, description = "In a CSV answer, the last stream sequence its figures include; a JSON answer holds it as `watermark`.")),
            content(
            (Status = "application/json", example = json!({ "watermark": 42, "applied_since_start": 42 })),
            (String = "text/csv", example = "watermark,applied_since_start\n42,42\n"),
            (crate::openapi::ParquetFile = "application/vnd.apache.parquet"),
        )),
        (status = 400, response = inline(ListBadRequest)),
        (status = 403, response = inline(ListForbidden)),
        (status = 503, response = inline(ReadUnavailable)),
    ),
)]
pub(crate) async fn status(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    headers: HeaderMap,
    Parameters(parameters): Parameters<ListParameters>,
) -> Response {
    let asked = reading(&caller, &parameters, &headers).map(|reading| ((), reading));
    answer::read::<Status, _, _>(asked, |(), min_seq| answer::status(&state, min_seq)).await
}

problem_responses! {
    ListBadRequest => ("A parameter is not valid, or not one the route takes.", [
        examples::bad_min_seq(), examples::bad_format(),
    ]);
}
