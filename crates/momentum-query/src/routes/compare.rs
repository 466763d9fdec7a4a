//! `GET /v1/compare`: one metric for several movements over the same periods.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::Response;
use momentum_domain::Interval;
use momentum_domain::query::{CompareRequest, ComparedMovements, Comparison, Metric, MovementId};
use momentum_runtime::auth::Caller;
use momentum_runtime::{Parameters, Problem, problem_responses};

use super::answer::{self, ReadForbidden, ReadUnavailable, UnknownMovement};
use super::parameters::{RequestParts, comma_list, examples, interval, metric, movement, periods, read_parameters};
use super::today;
use crate::AppState;

read_parameters! {
    @range
    /// The parameters of a comparison.
    CompareParameters {
        /// The movements to compare, separated by commas.
        #[param(value_type = Vec<MovementId>, style = Form, explode = false, min_items = 1, max_items = 20)]
        movements,
        /// The metric to compare.
        #[param(value_type = Metric)]
        metric,
        /// The length of a period (default `week`).
        #[param(value_type = Option<Interval>)]
        interval,
    }
}

impl TryFrom<RequestParts<&CompareParameters, ()>> for CompareRequest {
    type Error = Problem;

    fn try_from(asked: RequestParts<&CompareParameters, ()>) -> Result<CompareRequest, Problem> {
        let parameters = asked.parameters;
        let named = comma_list(parameters.movements.as_deref())
            .map(|text| movement(text, "movements"))
            .collect::<Result<Vec<_>, _>>()?;
        let movements =
            ComparedMovements::new(named).map_err(|error| Problem::bad_parameter("movements", error.to_string()))?;
        let metric = metric(parameters.metric.as_deref().unwrap_or(""), "metric")?;
        let interval = interval(parameters.interval.as_deref(), &Interval::ALL)?;
        let periods = periods(interval, parameters.from.as_deref(), parameters.to.as_deref(), asked.today)?;
        let split = parameters.split(periods.starts().len() * movements.as_slice().len())?;
        Ok(CompareRequest { movements, metric, periods, filter: parameters.filter()?, split, today: Some(asked.today) })
    }
}

#[utoipa::path(
    get, path = "/v1/compare", tag = "reads",
    summary = "Compare movements",
    description = "One metric for several movements over the same periods.",
    params(CompareParameters, ("If-None-Match" = Option<String>, Header, description = "An `ETag` of an earlier answer: answered 304, without the answer, when nothing it depends on has changed.")),
    responses(
        (status = 200, description = "The comparison.", headers(("Momentum-Watermark" = u64, description = "In a CSV answer, the last stream sequence its figures include; a JSON answer holds it as `watermark`."),
            ("ETag" = String, description = "A tag of this answer: send it back in `If-None-Match` to be answered 304 while nothing it depends on has changed.")),
            content(
            (Comparison = "application/json", example = json!({
                "metric": "active_participants", "interval": "week", "from": "2026-03-02", "to": "2026-03-02",
                "watermark": 42, "volunteer_hour_value_gbp": 18.64,
                "volunteer_hour_value": { "basis": "ashe_median_2024", "value_gbp": 18.64, "year": "2024",
                    "source": "ONS, Annual Survey of Hours and Earnings, April 2024: median gross hourly pay excluding overtime, all UK employees" },
                "series": [
                    { "movement": "bristol-befriending", "values": [{ "period": "2026-03-02", "label": "2026-W10", "complete": true, "value": 5 }] },
                    { "movement": "leeds-walking-groups", "values": [{ "period": "2026-03-02", "label": "2026-W10", "complete": true, "value": 9 }] },
                ],
            })),
            (String = "text/csv",
                example = "period,label,complete,bristol-befriending,leeds-walking-groups\n2026-03-02,2026-W10,true,5,9\n"),
            (crate::openapi::ParquetFile = "application/vnd.apache.parquet"),
        )),
        (status = 304, description = "Nothing the answer depends on has changed since the `ETag` named in `If-None-Match`.",
            headers(("ETag" = String, description = "The same tag."))),
        (status = 400, response = inline(CompareBadRequest)),
        (status = 403, response = inline(ReadForbidden)),
        (status = 404, response = inline(UnknownMovement)),
        (status = 503, response = inline(ReadUnavailable)),
    ),
)]
pub(crate) async fn compare(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    headers: HeaderMap,
    Parameters(parameters): Parameters<CompareParameters>,
) -> Response {
    let asked = (|| {
        caller.require_reader()?;
        let request =
            CompareRequest::try_from(RequestParts { parameters: &parameters, movement: (), today: today(&state) })?;
        for movement in request.movements.as_slice() {
            caller.require_read(movement.as_str())?;
        }
        let reading = parameters.reading(&headers)?;
        let reading = reading.waiting_for(request.filter.as_of_seq);
        Ok::<_, Problem>((request, reading, parameters.as_of_time()?))
    })();
    let asked = match answer::at_time(&state, asked).await {
        Ok(asked) => asked,
        Err(response) => return response,
    };
    answer::read_cached::<Comparison, _, _>(&state, &caller, &headers, asked, |request, min_seq| {
        answer::compare(&state, &caller, request, min_seq)
    })
    .await
}

problem_responses! {
    CompareBadRequest => ("A parameter is not valid, or not one the route takes: no movements or more than 20, an \
        unknown metric, a bad range.", [
        examples::bad_movement("movements"), examples::bad_metric("metric"), examples::bad_interval(&Interval::ALL),
        examples::bad_date(), examples::bad_min_seq(), examples::bad_area(), examples::bad_role(), examples::bad_by(), examples::bad_as_of(),
    ]);
}
