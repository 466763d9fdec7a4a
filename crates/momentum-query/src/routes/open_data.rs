//! `GET /v1/movements/{movement}/open-data.zip`: a movement's figures as a
//! Frictionless Data Package (`crate::open_data` lays it out). The figures
//! are those the caller may read (an evaluator's suppressed), all as of
//! one stream sequence, over the movement's whole history: from the first
//! month with any activity to today.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use momentum_domain::Interval;
use momentum_domain::query::{
    CohortMode, CohortRequest, DateRange, EARLIEST_DATE, Metric, MovementId, PERIODS_PER_TREND_MAX, Periods,
    PrinciplesRequest, RangeError, Trend, TrendRequest,
};
use momentum_domain::selection::Filter;
use momentum_runtime::auth::Caller;
use momentum_runtime::{MovementPath, Parameters, Problem, problem_responses};

use super::answer::{self, ReadForbidden, ReadUnavailable, UnknownMovement, WATERMARK_HEADER};
use super::parameters::{examples, min_seq};
use super::today;
use crate::AppState;
use crate::open_data::{PackageFigures, package};

/// The parameters of an open-data package.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct OpenDataParameters {
    /// Wait (at most the projector's `MOMENTUM_QUERY_WAIT_MS_MAX`) until the projection includes this sequence.
    #[param(value_type = Option<crate::openapi::SequenceNumber>)]
    min_seq: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/movements/{movement}/open-data.zip", tag = "reads",
    summary = "A movement's open-data package",
    description = "A Frictionless Tabular Data Package in a zip: the weekly and monthly trends, the monthly cohorts \
        (long) and the principles as CSV, `datapackage.json` with each file's table schema (descriptions from \
        docs/metrics.md) and the licence set by `MOMENTUM_OPEN_DATA_LICENSE`, and a README with the definitions, \
        the watermark, the hourly value of volunteering and the suppression applied. The figures run from the \
        movement's first month with activity to today (the weekly trend over at most the last 3660 weeks, the \
        principles over at most the last 3660 days), all as of one stream sequence (`Momentum-Watermark`), suppressed as for the caller.",
    params(super::MovementParameter, OpenDataParameters),
    responses(
        (status = 200, description = "The package.", headers(
            ("Momentum-Watermark" = u64, description = "The stream sequence every figure of the package is as of.")),
            content((crate::openapi::ZipFile = "application/zip"))),
        (status = 400, response = inline(OpenDataBadRequest)),
        (status = 403, response = inline(ReadForbidden)),
        (status = 404, response = inline(UnknownMovement)),
        (status = 503, response = inline(ReadUnavailable)),
    ),
)]
pub(crate) async fn open_data(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    MovementPath(movement): MovementPath,
    Parameters(parameters): Parameters<OpenDataParameters>,
) -> Response {
    let min_seq = match caller.require_read(movement.as_str()).and_then(|()| min_seq(parameters.min_seq.as_deref())) {
        Ok(min_seq) => min_seq,
        Err(problem) => return problem.into_response(),
    };
    let figures = match figures(&state, &caller, movement, min_seq).await {
        Ok(figures) => figures,
        Err(response) => return response,
    };
    let watermark = figures.monthly.watermark;
    match package(&figures) {
        Ok(zip) => {
            let mut response = (StatusCode::OK, zip).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
            headers.insert(WATERMARK_HEADER, HeaderValue::from(watermark));
            let name = format!("attachment; filename=\"{}-open-data-at-{watermark}.zip\"", figures.movement);
            if let Ok(value) = HeaderValue::from_str(&name) {
                headers.insert(header::CONTENT_DISPOSITION, value);
            }
            response
        }
        Err(error) => {
            tracing::error!(%error, "an open-data package could not be written");
            Problem::internal().into_response()
        }
    }
}

/// The package's figures: the monthly trend over the whole search range
/// first, which fixes the watermark and the first active month; then the
/// rest as of that watermark.
async fn figures(
    state: &AppState,
    caller: &Caller,
    movement: MovementId,
    min_seq: Option<u64>,
) -> Result<PackageFigures, Response> {
    let today = today(state);
    let trend = |interval: Interval, from: NaiveDate, as_of_seq: Option<u64>| -> Result<TrendRequest, RangeError> {
        Ok(TrendRequest {
            movement: movement.clone(),
            periods: periods(interval, from, today)?,
            metrics: None,
            filter: Filter { as_of_seq, ..Filter::default() },
            split: None,
            today: Some(today),
        })
    };
    // From the earliest date an event may have: well within a trend's
    // longest range of months.
    let mut monthly =
        read_trend(state, caller, trend(Interval::Month, EARLIEST_DATE, None).map_err(internal)?, min_seq).await?;
    let from = first_active_month(&monthly).unwrap_or_else(|| Interval::Month.period_start(today));
    // The months before the first active one are left out, not read again:
    // a row's figures do not depend on where the range starts.
    monthly.series.retain(|row| row.period >= from);
    monthly.from = from;
    let at = Some(monthly.watermark);
    // A trend holds at most PERIODS_PER_TREND_MAX periods: the latest weeks.
    let earliest_week = Interval::Week.shift(Interval::Week.period_start(today), 1 - PERIODS_PER_TREND_MAX as i32);
    let weekly =
        read_trend(state, caller, trend(Interval::Week, from.max(earliest_week), at).map_err(internal)?, at).await?;
    let cohorts = CohortRequest {
        movement: movement.clone(),
        periods: periods(Interval::Month, from, today).map_err(internal)?,
        mode: CohortMode::default(),
        filter: Filter { as_of_seq: at, ..Filter::default() },
        split: None,
        today: Some(today),
    };
    let cohorts = serde_json::from_slice(&answer::cohorts(state, caller, cohorts, at).await?).map_err(internal)?;
    // A principles read covers at most PERIODS_PER_TREND_MAX days: the latest of them.
    let earliest = today - chrono::Days::new(PERIODS_PER_TREND_MAX as u64 - 1);
    let range = DateRange::new(from.max(earliest), today).map_err(internal)?;
    let mut principles = PrinciplesRequest::new(movement.clone(), range).map_err(internal)?;
    principles.filter.as_of_seq = at;
    let principles =
        serde_json::from_slice(&answer::principles(state, caller, principles, at).await?).map_err(internal)?;
    Ok(PackageFigures {
        movement: movement.as_str().to_owned(),
        weekly,
        monthly,
        cohorts,
        principles,
        suppressed_below: answer::suppression_for(state, caller),
        license: state.open_data_license,
        created: chrono::Utc::now(),
    })
}

async fn read_trend(
    state: &AppState,
    caller: &Caller,
    request: TrendRequest,
    min_seq: Option<u64>,
) -> Result<Trend, Response> {
    serde_json::from_slice(&answer::trend(state, caller, request, min_seq).await?).map_err(internal)
}

fn periods(interval: Interval, from: NaiveDate, to: NaiveDate) -> Result<Periods, RangeError> {
    Periods::new(interval, DateRange::new(from, to)?)
}

/// The first month with any activity: an event of any type. A count of
/// sign-ups may be suppressed (`null`), which means some.
fn first_active_month(trend: &Trend) -> Option<NaiveDate> {
    let activity = [Metric::Joined, Metric::Meetings, Metric::VolunteerHours, Metric::CollectiveActions];
    let some = |value: &serde_json::Value| value.is_null() || value.as_f64().is_some_and(|figure| figure != 0.0);
    trend
        .series
        .iter()
        .find(|row| row.values.iter().any(|(metric, value)| activity.contains(metric) && some(value)))
        .map(|row| row.period)
}

fn internal(error: impl std::fmt::Display) -> Response {
    tracing::error!(%error, "an open-data package's read could not be made");
    Problem::internal().into_response()
}

problem_responses! {
    OpenDataBadRequest => ("A parameter is not valid, or not one the route takes.", [
        examples::bad_movement("movement"), examples::bad_min_seq(),
    ]);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn trend(series: &serde_json::Value) -> Trend {
        serde_json::from_value(json!({
            "movement": "m", "interval": "month", "from": "2026-01-01", "to": "2026-03-31", "watermark": 1,
            "volunteer_hour_value_gbp": 18.64, "volunteer_hour_value": { "basis": "custom", "value_gbp": 18.64 },
            "series": series,
        }))
        .unwrap()
    }

    #[test]
    fn the_first_active_month_counts_suppressed_sign_ups_as_some() {
        let mut series: Vec<serde_json::Value> = (1..=3)
            .map(|month| {
                json!({ "period": format!("2026-0{month}-01"), "label": format!("2026-0{month}"), "joined": 0,
                    "meetings": 0, "volunteer_hours": 0.0, "collective_actions": 0, "active_participants": null })
            })
            .collect();
        assert_eq!(first_active_month(&trend(&json!(series))), None, "a null count of people is not activity");
        series[1]["joined"] = json!(null);
        assert_eq!(first_active_month(&trend(&json!(series))), NaiveDate::from_ymd_opt(2026, 2, 1));
        series[0]["volunteer_hours"] = json!(0.5);
        assert_eq!(first_active_month(&trend(&json!(series))), NaiveDate::from_ymd_opt(2026, 1, 1));
    }
}
