//! `GET /v1/movements/{movement}/principles`: activity under each of the eight principles.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::Response;
use momentum_domain::query::{Principles, PrinciplesRequest};
use momentum_runtime::auth::Caller;
use momentum_runtime::{MovementPath, Parameters, Problem, problem_responses};

use super::answer::{self, ReadForbidden, ReadUnavailable, UnknownMovement};
use super::parameters::{RequestParts, date_range, examples, range_problem, read_parameters};
use super::today;
use crate::AppState;

read_parameters! {
    @range
    /// The parameters of a principles read.
    PrinciplesParameters {}
}

impl TryFrom<RequestParts<&PrinciplesParameters>> for PrinciplesRequest {
    type Error = Problem;

    fn try_from(asked: RequestParts<&PrinciplesParameters>) -> Result<PrinciplesRequest, Problem> {
        let parameters = asked.parameters;
        let range = date_range(parameters.from.as_deref(), parameters.to.as_deref(), asked.today)?;
        let mut request = PrinciplesRequest::new(asked.movement, range).map_err(range_problem)?;
        request.filter = parameters.filter()?;
        request.split = parameters.split(momentum_domain::Principle::ALL.len())?;
        Ok(request)
    }
}

#[utoipa::path(
    get, path = "/v1/movements/{movement}/principles", tag = "reads",
    summary = "A movement's eight principles",
    description = "For each of the eight principles, the activities tagged with it and their distinct participants \
        from `from` to `to` (local dates, inclusive).",
    params(super::MovementParameter, PrinciplesParameters, ("If-None-Match" = Option<String>, Header, description = "An `ETag` of an earlier answer: answered 304, without the answer, when nothing it depends on has changed.")),
    responses(
        (status = 200, description = "The principles.", headers(("Momentum-Watermark" = u64, description = "In a CSV answer, the last stream sequence its figures include; a JSON answer holds it as `watermark`."),
            ("ETag" = String, description = "A tag of this answer: send it back in `If-None-Match` to be answered 304 while nothing it depends on has changed.")),
            content(
            (Principles = "application/json", example = json!({
                "movement": "bristol-befriending", "from": "2026-03-02", "to": "2026-03-09", "watermark": 42,
                "principles": [{ "principle": "mobilise_citizens", "activities": 3, "participants": 12 }],
            })),
            (String = "text/csv", example = "principle,activities,participants\nmobilise_citizens,3,12\n"),
            (crate::openapi::ParquetFile = "application/vnd.apache.parquet"),
        )),
        (status = 304, description = "Nothing the answer depends on has changed since the `ETag` named in `If-None-Match`.",
            headers(("ETag" = String, description = "The same tag."))),
        (status = 400, response = inline(PrinciplesBadRequest)),
        (status = 403, response = inline(ReadForbidden)),
        (status = 404, response = inline(UnknownMovement)),
        (status = 503, response = inline(ReadUnavailable)),
    ),
)]
pub(crate) async fn principles(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    headers: HeaderMap,
    MovementPath(movement): MovementPath,
    Parameters(parameters): Parameters<PrinciplesParameters>,
) -> Response {
    let asked = (|| {
        caller.require_read(movement.as_str())?;
        let reading = parameters.reading(&headers)?;
        let request =
            PrinciplesRequest::try_from(RequestParts { parameters: &parameters, movement, today: today(&state) })?;
        let reading = reading.waiting_for(request.filter.as_of_seq);
        Ok::<_, Problem>((request, reading, parameters.as_of_time()?))
    })();
    let asked = match answer::at_time(&state, asked).await {
        Ok(asked) => asked,
        Err(response) => return response,
    };
    answer::read_cached::<Principles, _, _>(&state, &caller, &headers, asked, |request, min_seq| {
        answer::principles(&state, &caller, request, min_seq)
    })
    .await
}

problem_responses! {
    PrinciplesBadRequest => ("A parameter is not valid, or not one the route takes, or the range is reversed or \
        too long.", [
        examples::bad_movement("movement"), examples::bad_date(), examples::bad_min_seq(), examples::bad_area(), examples::bad_role(), examples::bad_by(), examples::bad_as_of(),
    ]);
}
