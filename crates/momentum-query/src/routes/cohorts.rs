//! `GET /v1/movements/{movement}/cohorts`: participants by the period they first took part.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::Response;
use momentum_domain::Interval;
use momentum_domain::query::{CohortMode, CohortRequest, Cohorts};
use momentum_runtime::auth::Caller;
use momentum_runtime::{MovementPath, Parameters, Problem, problem_responses};

use super::answer::{self, ReadForbidden, ReadUnavailable, UnknownMovement};
use super::parameters::{RequestParts, examples, interval, periods, read_parameters};
use super::today;
use crate::AppState;

/// The intervals cohorts are read in.
const COHORT_INTERVALS: [Interval; 2] = [Interval::Week, Interval::Month];

read_parameters! {
    @range
    /// The parameters of a cohort read.
    CohortParameters {
        /// The length of a period (default `week`).
        #[param(value_type = Option<crate::openapi::CohortInterval>)]
        interval,
        /// What `active` counts in each later period: members active in it (`on`, the default), or in it or any
        /// later period in range (`on_or_after`).
        #[param(value_type = Option<momentum_domain::query::CohortMode>)]
        mode,
    }
}

/// The mode of a cohort read, `on` when not given.
fn mode(text: Option<&str>) -> Result<CohortMode, Problem> {
    let Some(text) = text else { return Ok(CohortMode::On) };
    CohortMode::parse(text).ok_or_else(|| {
        let valid: Vec<&str> = CohortMode::ALL.iter().map(|mode| mode.as_str()).collect();
        Problem::bad_parameter("mode", format!("must be one of {}, got {text:?}", valid.join(", ")))
    })
}

impl TryFrom<RequestParts<&CohortParameters>> for CohortRequest {
    type Error = Problem;

    fn try_from(asked: RequestParts<&CohortParameters>) -> Result<CohortRequest, Problem> {
        let parameters = asked.parameters;
        let interval = interval(parameters.interval.as_deref(), &COHORT_INTERVALS)?;
        let periods = periods(interval, parameters.from.as_deref(), parameters.to.as_deref(), asked.today)?;
        Ok(CohortRequest {
            movement: asked.movement,
            periods,
            mode: mode(parameters.mode.as_deref())?,
            filter: parameters.filter()?,
            split: parameters.split(periods.starts().len())?,
            today: Some(asked.today),
        })
    }
}

#[utoipa::path(
    get, path = "/v1/movements/{movement}/cohorts", tag = "reads",
    summary = "A movement's cohorts",
    description = "Participants grouped by the period of their first participation, with how many of each cohort \
        took part in that period and each one after it, to the end of the range.",
    params(super::MovementParameter, CohortParameters, ("If-None-Match" = Option<String>, Header, description = "An `ETag` of an earlier answer: answered 304, without the answer, when nothing it depends on has changed.")),
    responses(
        (status = 200, description = "The cohorts.", headers(("Momentum-Watermark" = u64, description = "In a CSV answer, the last stream sequence its figures include; a JSON answer holds it as `watermark`."),
            ("ETag" = String, description = "A tag of this answer: send it back in `If-None-Match` to be answered 304 while nothing it depends on has changed.")),
            content(
            (Cohorts = "application/json", example = json!({
                "movement": "bristol-befriending", "interval": "week", "from": "2026-03-02", "to": "2026-03-09",
                "watermark": 42, "mode": "on",
                "cohorts": [{ "cohort": "2026-03-02", "label": "2026-W10", "complete": true, "size": 5, "active": [5, 3],
                    "shares": [1.0, 0.6] }],
            })),
            (String = "text/csv", example = "cohort,label,complete,size,active_0,active_1,share_0,share_1\n\
                2026-03-02,2026-W10,true,5,5,3,1.0,0.6\n"),
            (crate::openapi::ParquetFile = "application/vnd.apache.parquet"),
        )),
        (status = 304, description = "Nothing the answer depends on has changed since the `ETag` named in `If-None-Match`.",
            headers(("ETag" = String, description = "The same tag."))),
        (status = 400, response = inline(CohortsBadRequest)),
        (status = 403, response = inline(ReadForbidden)),
        (status = 404, response = inline(UnknownMovement)),
        (status = 503, response = inline(ReadUnavailable)),
    ),
)]
pub(crate) async fn cohorts(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    headers: HeaderMap,
    MovementPath(movement): MovementPath,
    Parameters(parameters): Parameters<CohortParameters>,
) -> Response {
    let asked = (|| {
        caller.require_read(movement.as_str())?;
        let reading = parameters.reading(&headers)?;
        let request =
            CohortRequest::try_from(RequestParts { parameters: &parameters, movement, today: today(&state) })?;
        let reading = reading.waiting_for(request.filter.as_of_seq);
        Ok::<_, Problem>((request, reading, parameters.as_of_time()?))
    })();
    let asked = match answer::at_time(&state, asked).await {
        Ok(asked) => asked,
        Err(response) => return response,
    };
    answer::read_cached::<Cohorts, _, _>(&state, &caller, &headers, asked, |request, min_seq| {
        answer::cohorts(&state, &caller, request, min_seq)
    })
    .await
}

problem_responses! {
    CohortsBadRequest => ("A parameter is not valid, or not one the route takes, or the range is reversed or too \
        long.", [
        examples::bad_movement("movement"), examples::bad_interval(&COHORT_INTERVALS), examples::bad_date(),
        examples::bad_min_seq(), examples::bad_area(), examples::bad_role(), examples::bad_by(), examples::bad_as_of(),
        mode(Some("ever")).expect_err("not a mode"),
    ]);
}
