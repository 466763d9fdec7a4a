//! `GET /v1/movements/{movement}/trends`: a movement's metrics, period by period.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::Response;
use momentum_domain::Interval;
use momentum_domain::query::{Trend, TrendRequest};
use momentum_runtime::auth::Caller;
use momentum_runtime::{MovementPath, Parameters, Problem, problem_responses};

use super::answer::{self, ReadForbidden, ReadUnavailable, UnknownMovement};
use super::parameters::{RequestParts, comma_list, examples, interval, metric, periods, read_parameters};
use super::today;
use crate::AppState;

read_parameters! {
    @range
    /// The parameters of a trend.
    TrendParameters {
        /// The length of a period (default `week`).
        #[param(value_type = Option<Interval>)]
        interval,
        /// The metrics wanted, separated by commas (default: all).
        #[param(value_type = Option<Vec<momentum_domain::query::Metric>>, style = Form, explode = false)]
        metrics,
    }
}

impl TryFrom<RequestParts<&TrendParameters>> for TrendRequest {
    type Error = Problem;

    fn try_from(asked: RequestParts<&TrendParameters>) -> Result<TrendRequest, Problem> {
        let parameters = asked.parameters;
        let interval = interval(parameters.interval.as_deref(), &Interval::ALL)?;
        let periods = periods(interval, parameters.from.as_deref(), parameters.to.as_deref(), asked.today)?;
        let metrics = match &parameters.metrics {
            None => None,
            Some(list) => Some(comma_list(Some(list)).map(|name| metric(name, "metrics")).collect::<Result<_, _>>()?),
        };
        Ok(TrendRequest {
            movement: asked.movement,
            periods,
            metrics,
            filter: parameters.filter()?,
            split: parameters.split(periods.starts().len())?,
            today: Some(asked.today),
        })
    }
}

#[utoipa::path(
    get, path = "/v1/movements/{movement}/trends", tag = "reads",
    summary = "A movement's trend",
    description = "One row for every period from the one containing `from` to the one containing `to` (at most \
        3660): zeros where nothing happened, `null` where a ratio is undefined or a count suppressed.",
    params(super::MovementParameter, TrendParameters, ("If-None-Match" = Option<String>, Header, description = "An `ETag` of an earlier answer: answered 304, without the answer, when nothing it depends on has changed.")),
    responses(
        (status = 200, description = "The trend.", headers(("Momentum-Watermark" = u64, description = "In a CSV answer, the last stream sequence its figures include; a JSON answer holds it as `watermark`."),
            ("ETag" = String, description = "A tag of this answer: send it back in `If-None-Match` to be answered 304 while nothing it depends on has changed.")),
            content(
            (Trend = "application/json", example = json!({
                "movement": "bristol-befriending", "interval": "week", "from": "2026-03-02", "to": "2026-03-09",
                "watermark": 42, "volunteer_hour_value_gbp": 18.64,
                "volunteer_hour_value": { "basis": "ashe_median_2024", "value_gbp": 18.64, "year": "2024",
                    "source": "ONS, Annual Survey of Hours and Earnings, April 2024: median gross hourly pay excluding overtime, all UK employees" },
                "series": [
                    { "period": "2026-03-02", "label": "2026-W10", "complete": true,
                      "active_participants": 5, "retention_rate": null },
                    { "period": "2026-03-09", "label": "2026-W11", "complete": false,
                      "active_participants": 4, "retention_rate": 0.6 },
                ],
            })),
            (String = "text/csv",
                example = "period,label,complete,active_participants,retention_rate\n\
                    2026-03-02,2026-W10,true,5,\n2026-03-09,2026-W11,false,4,0.6\n"),
            (crate::openapi::ParquetFile = "application/vnd.apache.parquet"),
        )),
        (status = 304, description = "Nothing the answer depends on has changed since the `ETag` named in `If-None-Match`.",
            headers(("ETag" = String, description = "The same tag."))),
        (status = 400, response = inline(TrendsBadRequest)),
        (status = 403, response = inline(ReadForbidden)),
        (status = 404, response = inline(UnknownMovement)),
        (status = 503, response = inline(ReadUnavailable)),
    ),
)]
pub(crate) async fn trends(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    headers: HeaderMap,
    MovementPath(movement): MovementPath,
    Parameters(parameters): Parameters<TrendParameters>,
) -> Response {
    let asked = (|| {
        caller.require_read(movement.as_str())?;
        let reading = parameters.reading(&headers)?;
        let request = TrendRequest::try_from(RequestParts { parameters: &parameters, movement, today: today(&state) })?;
        let reading = reading.waiting_for(request.filter.as_of_seq);
        Ok::<_, Problem>((request, reading, parameters.as_of_time()?))
    })();
    let asked = match answer::at_time(&state, asked).await {
        Ok(asked) => asked,
        Err(response) => return response,
    };
    answer::read_cached::<Trend, _, _>(&state, &caller, &headers, asked, |request, min_seq| {
        answer::trend(&state, &caller, request, min_seq)
    })
    .await
}

problem_responses! {
    TrendsBadRequest => ("A parameter is not valid, or not one the route takes, or the range is reversed or \
        longer than 3660 periods.", [
        examples::bad_movement("movement"), examples::bad_interval(&Interval::ALL), examples::bad_date(),
        examples::bad_metric("metrics"), examples::bad_min_seq(), examples::bad_area(), examples::bad_role(), examples::bad_by(), examples::bad_as_of(), examples::bad_format(),
    ]);
}
