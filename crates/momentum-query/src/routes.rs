//! HTTP routes of the query service.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Query, State};
use axum::http::Method;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{Months, NaiveDate, Utc};
use momentum_bus::QueryEndpoint;
use momentum_domain::Interval;
use momentum_domain::query::{
    Cohorts, Comparison, MOVEMENTS_PER_COMPARISON_MAX, Metric, MovementList, PERIODS_PER_TREND_MAX, Principles, Status,
    Trend,
};
use momentum_runtime::auth::{Authenticator, Caller, Movements, Role};
use momentum_runtime::openapi::{MovementId, Routes};
use momentum_runtime::{MovementPath, Problem};
use serde_json::{Value, json};

use crate::csv::{Format, requested_format, to_csv};
use crate::{AppState, openapi};

/// The routes that need a token. Every route is added through [`Routes`],
/// so a test can check that the OpenAPI document describes each one.
fn data_routes() -> Routes<Arc<AppState>> {
    Routes::new()
        .route(Method::GET, "/v1/movements", movements)
        .route(Method::GET, "/v1/movements/{movement}/trends", trends)
        .route(Method::GET, "/v1/movements/{movement}/cohorts", cohorts)
        .route(Method::GET, "/v1/movements/{movement}/principles", principles)
        .route(Method::GET, "/v1/compare", compare)
        .route(Method::GET, "/v1/status", status)
}

/// The routes anyone may call.
fn public_routes() -> Routes<Arc<AppState>> {
    Routes::new()
        .route(Method::GET, "/livez", livez)
        .route(Method::GET, "/readyz", readyz)
        .route(Method::GET, "/metrics", metrics)
        .route(Method::GET, "/openapi.json", openapi_json)
}

#[utoipa::path(
    get, path = "/metrics", tag = "health",
    summary = "Prometheus metrics",
    description = "Requests by route and status, projector answer times by endpoint and the NATS connection state, \
                   in the OpenMetrics text format.",
    responses(
        (status = 200, description = "The metrics.", body = String,
         content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 503, response = inline(openapi::Busy)),
    ),
)]
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    momentum_runtime::metrics::metrics_response(&state.metrics.registry, Some(&state.nats))
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
        // The dashboard's page and assets: public, and not API operations,
        // so outside the route lists the OpenAPI document is checked against.
        .merge(crate::dashboard::router())
        .method_not_allowed_fallback(momentum_runtime::method_not_allowed)
        .fallback(|| async {
            Problem::new(StatusCode::NOT_FOUND, "not-found", "no such resource")
                .detail("/openapi.json describes every route")
        })
        .with_state(state)
}

type Parameters = Query<HashMap<String, String>>;
type Authenticated = Extension<Arc<Caller>>;

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

#[utoipa::path(
    get, path = "/openapi.json", tag = "health",
    summary = "This document",
    description = "The OpenAPI 3.1 document of the query API.",
    responses(
        (status = 200, description = "The document.", body = Object, content_type = "application/json"),
        (status = 503, response = inline(openapi::Busy)),
    ),
)]
pub(crate) async fn openapi_json() -> Response {
    momentum_runtime::json_response(StatusCode::OK, openapi::document())
}

pub(crate) fn min_seq(parameters: &HashMap<String, String>) -> Result<Option<u64>, Problem> {
    parameters
        .get("min_seq")
        .map(|text| text.parse::<u64>().map_err(|_| Problem::bad_parameter("min_seq", "must be a whole number ≥ 0")))
        .transpose()
}

pub(crate) use momentum_domain::query::{EARLIEST_DATE, LATEST_DATE};

pub(crate) fn date(parameters: &HashMap<String, String>, name: &str) -> Result<Option<NaiveDate>, Problem> {
    let Some(text) = parameters.get(name) else { return Ok(None) };
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| Problem::bad_parameter(name, format!("must be a date as YYYY-MM-DD, got {text:?}")))?;
    if !(EARLIEST_DATE..=LATEST_DATE).contains(&date) {
        return Err(Problem::bad_parameter(name, format!("must be between {EARLIEST_DATE} and {LATEST_DATE}")));
    }
    Ok(Some(date))
}

#[utoipa::path(
    get, path = "/v1/movements", tag = "reads",
    summary = "List movements",
    description = "Every movement with at least one event that the token may read, with its number of distinct \
        accepted events.",
    params(MinSeq, FormatParameter, LayoutParameter),
    responses(
        (status = 200, description = "The movements.", content(
            (MovementList = "application/json",
                example = json!({ "watermark": 42, "movements": [{ "movement": "bristol-befriending", "events": 42 }] })),
            (String = "text/csv", example = "movement,events\nbristol-befriending,42\n"),
        )),
        (status = 400, response = inline(openapi::ListBadRequest)),
        (status = 401, response = inline(openapi::Unauthorized)),
        (status = 403, response = inline(openapi::ListForbidden)),
        (status = 503, response = inline(openapi::ReadUnavailable)),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn movements(
    State(state): State<Arc<AppState>>,
    Extension(caller): Authenticated,
    headers: HeaderMap,
    Query(parameters): Parameters,
) -> Response {
    let build =
        caller.require_reader().and_then(|()| min_seq(&parameters)).map(|min_seq| json!({ "min_seq": min_seq }));
    answer(&state, &caller, QueryEndpoint::Movements, &parameters, &headers, build).await
}

#[utoipa::path(
    get, path = "/v1/status", tag = "reads",
    summary = "Projection status",
    description = "The watermark (last stream sequence applied) of the projector that answered.",
    params(MinSeq, FormatParameter, LayoutParameter),
    responses(
        (status = 200, description = "The status.", content(
            (Status = "application/json", example = json!({ "watermark": 42, "applied_since_start": 42 })),
            (String = "text/csv", example = "watermark,applied_since_start\n42,42\n"),
        )),
        (status = 400, response = inline(openapi::ListBadRequest)),
        (status = 401, response = inline(openapi::Unauthorized)),
        (status = 403, response = inline(openapi::ListForbidden)),
        (status = 503, response = inline(openapi::ReadUnavailable)),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn status(
    State(state): State<Arc<AppState>>,
    Extension(caller): Authenticated,
    headers: HeaderMap,
    Query(parameters): Parameters,
) -> Response {
    let build =
        caller.require_reader().and_then(|()| min_seq(&parameters)).map(|min_seq| json!({ "min_seq": min_seq }));
    answer(&state, &caller, QueryEndpoint::Status, &parameters, &headers, build).await
}

pub(crate) fn check_movement(movement: &str, parameter: &str) -> Result<(), Problem> {
    if momentum_domain::event::is_movement_id(movement) {
        Ok(())
    } else {
        Err(Problem::bad_parameter(
            parameter,
            format!(
                "{movement:?} is not a movement id: 1 to 63 lower-case letters, digits and hyphens, \
                 starting with a letter or digit"
            ),
        ))
    }
}

pub(crate) fn interval(parameters: &HashMap<String, String>, allowed: &[Interval]) -> Result<Interval, Problem> {
    let text = parameters.get("interval").map(String::as_str).unwrap_or("week");
    Interval::parse(text).filter(|interval| allowed.contains(interval)).ok_or_else(|| {
        let valid: Vec<&str> = allowed.iter().map(|interval| interval.as_str()).collect();
        Problem::bad_parameter("interval", format!("must be one of {}, got {text:?}", valid.join(", ")))
    })
}

/// The date range of a read in periods of `interval`, at most
/// [`PERIODS_PER_TREND_MAX`] of them (a 400 naming `from` otherwise).
fn period_range(
    state: &AppState,
    parameters: &HashMap<String, String>,
    interval: Interval,
) -> Result<(NaiveDate, NaiveDate), Problem> {
    let (from, to) = date_range(state, parameters)?;
    if !momentum_domain::query::range_is_readable(interval, from, to) {
        return Err(Problem::bad_parameter(
            "from",
            format!(
                "the range holds more than {PERIODS_PER_TREND_MAX} periods of a {}; narrow it or use a longer interval",
                interval.as_str()
            ),
        ));
    }
    Ok((from, to))
}

/// The date range of a read. Without `to` it ends today (in the configured
/// time zone); without `from` it starts a year before `to`.
fn date_range(state: &AppState, parameters: &HashMap<String, String>) -> Result<(NaiveDate, NaiveDate), Problem> {
    let today = Utc::now().with_timezone(&state.time_zone).date_naive();
    let to = date(parameters, "to")?.unwrap_or(today);
    let from = date(parameters, "from")?.unwrap_or(to - Months::new(12));
    if to < from {
        return Err(Problem::bad_parameter("to", format!("must not be before from ({from})")));
    }
    Ok((from, to))
}

/// The non-empty, trimmed items of a comma-separated parameter.
fn comma_list<'a>(parameters: &'a HashMap<String, String>, name: &str) -> impl Iterator<Item = &'a str> {
    let list = parameters.get(name).map(String::as_str).unwrap_or("");
    list.split(',').map(str::trim).filter(|item| !item.is_empty())
}

pub(crate) fn metric(text: &str, parameter: &str) -> Result<Metric, Problem> {
    Metric::parse(text).ok_or_else(|| {
        let valid: Vec<&str> = Metric::ALL.iter().map(|metric| metric.as_str()).collect();
        Problem::bad_parameter(parameter, format!("unknown metric {text:?}; valid metrics are {}", valid.join(", ")))
    })
}

/// Asks the projector with the request `build` produced (unless it is a
/// problem) and answers in the format the client asked for.
async fn answer(
    state: &AppState,
    caller: &Caller,
    endpoint: QueryEndpoint,
    parameters: &HashMap<String, String>,
    headers: &HeaderMap,
    build: Result<Value, Problem>,
) -> Response {
    let format = match requested_format(parameters, headers) {
        Ok(format) => format,
        Err(problem) => return problem.into_response(),
    };
    let request = match build {
        Ok(request) => request,
        Err(problem) => return problem.into_response(),
    };
    let json = match ask_for(state, caller, endpoint, request).await {
        Ok(json) => json,
        Err(response) => return response,
    };
    let Format::Csv(layout) = format else {
        let mut response = (StatusCode::OK, json).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return response;
    };
    match to_csv(endpoint, &json, layout) {
        Ok(file) => {
            let mut response = (StatusCode::OK, file.body).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
            let disposition = format!("attachment; filename=\"{}\"", file.filename);
            if let Ok(value) = HeaderValue::from_str(&disposition) {
                headers.insert(header::CONTENT_DISPOSITION, value);
            }
            response
        }
        Err(error) => {
            tracing::error!(%error, "a projector answer could not be turned into CSV");
            Problem::internal().into_response()
        }
    }
}

#[utoipa::path(
    get, path = "/v1/movements/{movement}/trends", tag = "reads",
    summary = "A movement's trend",
    description = "One row for every period from the one containing `from` to the one containing `to` (at most \
        3660): zeros where nothing happened, `null` where a ratio is undefined or a count suppressed.",
    params(
        MovementParameter,
        ("interval" = Option<Interval>, Query, description = "The length of a period (default `week`)."),
        FromParameter, ToParameter,
        ("metrics" = Option<Vec<Metric>>, Query, style = Form, explode = false,
            description = "The metrics wanted, separated by commas (default: all)."),
        MinSeq, FormatParameter, LayoutParameter,
    ),
    responses(
        (status = 200, description = "The trend.", content(
            (Trend = "application/json", example = json!({
                "movement": "bristol-befriending", "interval": "week", "from": "2026-03-02", "to": "2026-03-09",
                "watermark": 42, "volunteer_hour_value_gbp": 11.27,
                "series": [
                    { "period": "2026-03-02", "active_participants": 5, "retention_rate": null },
                    { "period": "2026-03-09", "active_participants": 4, "retention_rate": 0.6 },
                ],
            })),
            (String = "text/csv",
                example = "period,active_participants,retention_rate\n2026-03-02,5,\n2026-03-09,4,0.6\n"),
        )),
        (status = 400, response = inline(openapi::TrendsBadRequest)),
        (status = 401, response = inline(openapi::Unauthorized)),
        (status = 403, response = inline(openapi::ReadForbidden)),
        (status = 404, response = inline(openapi::UnknownMovement)),
        (status = 503, response = inline(openapi::ReadUnavailable)),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn trends(
    State(state): State<Arc<AppState>>,
    Extension(caller): Authenticated,
    headers: HeaderMap,
    MovementPath(movement): MovementPath,
    Query(parameters): Parameters,
) -> Response {
    let build = || -> Result<Value, Problem> {
        check_movement(&movement, "movement")?;
        caller.require_read(&movement)?;
        let interval = interval(&parameters, &Interval::ALL)?;
        let (from, to) = period_range(&state, &parameters, interval)?;
        let metrics = match parameters.get("metrics") {
            None => None,
            Some(list) => Some(
                list.split(',')
                    .map(str::trim)
                    .filter(|name| !name.is_empty())
                    .map(|name| metric(name, "metrics"))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(json!({
            "movement": movement, "interval": interval, "from": from, "to": to,
            "metrics": metrics, "min_seq": min_seq(&parameters)?,
        }))
    };
    answer(&state, &caller, QueryEndpoint::Trends, &parameters, &headers, build()).await
}

#[utoipa::path(
    get, path = "/v1/movements/{movement}/cohorts", tag = "reads",
    summary = "A movement's cohorts",
    description = "Participants grouped by the period of their first participation, with how many of each cohort \
        took part in that period and each one after it, to the end of the range.",
    params(
        MovementParameter,
        ("interval" = Option<openapi::CohortInterval>, Query, description = "The length of a period (default `week`)."),
        FromParameter, ToParameter, MinSeq, FormatParameter, LayoutParameter,
    ),
    responses(
        (status = 200, description = "The cohorts.", content(
            (Cohorts = "application/json", example = json!({
                "movement": "bristol-befriending", "interval": "week", "from": "2026-03-02", "to": "2026-03-09",
                "watermark": 42, "cohorts": [{ "cohort": "2026-03-02", "size": 5, "active": [5, 3] }],
            })),
            (String = "text/csv", example = "cohort,size,active_0,active_1\n2026-03-02,5,5,3\n"),
        )),
        (status = 400, response = inline(openapi::CohortsBadRequest)),
        (status = 401, response = inline(openapi::Unauthorized)),
        (status = 403, response = inline(openapi::ReadForbidden)),
        (status = 404, response = inline(openapi::UnknownMovement)),
        (status = 503, response = inline(openapi::ReadUnavailable)),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn cohorts(
    State(state): State<Arc<AppState>>,
    Extension(caller): Authenticated,
    headers: HeaderMap,
    MovementPath(movement): MovementPath,
    Query(parameters): Parameters,
) -> Response {
    let build = || -> Result<Value, Problem> {
        check_movement(&movement, "movement")?;
        caller.require_read(&movement)?;
        let interval = interval(&parameters, &[Interval::Week, Interval::Month])?;
        let (from, to) = period_range(&state, &parameters, interval)?;
        Ok(json!({
            "movement": movement, "interval": interval, "from": from, "to": to, "min_seq": min_seq(&parameters)?,
        }))
    };
    answer(&state, &caller, QueryEndpoint::Cohorts, &parameters, &headers, build()).await
}

#[utoipa::path(
    get, path = "/v1/movements/{movement}/principles", tag = "reads",
    summary = "A movement's eight principles",
    description = "For each of the eight principles, the activities tagged with it and their distinct participants \
        from `from` to `to` (local dates, inclusive).",
    params(MovementParameter, FromParameter, ToParameter, MinSeq, FormatParameter, LayoutParameter),
    responses(
        (status = 200, description = "The principles.", content(
            (Principles = "application/json", example = json!({
                "movement": "bristol-befriending", "from": "2026-03-02", "to": "2026-03-09", "watermark": 42,
                "principles": [{ "principle": "mobilise_citizens", "activities": 3, "participants": 12 }],
            })),
            (String = "text/csv", example = "principle,activities,participants\nmobilise_citizens,3,12\n"),
        )),
        (status = 400, response = inline(openapi::PrinciplesBadRequest)),
        (status = 401, response = inline(openapi::Unauthorized)),
        (status = 403, response = inline(openapi::ReadForbidden)),
        (status = 404, response = inline(openapi::UnknownMovement)),
        (status = 503, response = inline(openapi::ReadUnavailable)),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn principles(
    State(state): State<Arc<AppState>>,
    Extension(caller): Authenticated,
    headers: HeaderMap,
    MovementPath(movement): MovementPath,
    Query(parameters): Parameters,
) -> Response {
    let build = || -> Result<Value, Problem> {
        check_movement(&movement, "movement")?;
        caller.require_read(&movement)?;
        let (from, to) = period_range(&state, &parameters, Interval::Day)?;
        Ok(json!({ "movement": movement, "from": from, "to": to, "min_seq": min_seq(&parameters)? }))
    };
    answer(&state, &caller, QueryEndpoint::Principles, &parameters, &headers, build()).await
}

#[utoipa::path(
    get, path = "/v1/compare", tag = "reads",
    summary = "Compare movements",
    description = "One metric for several movements over the same periods.",
    params(
        ("movements" = Vec<MovementId>, Query, style = Form, explode = false, min_items = 1, max_items = 20,
            description = "The movements to compare, separated by commas."),
        ("metric" = Metric, Query, description = "The metric to compare."),
        ("interval" = Option<Interval>, Query, description = "The length of a period (default `week`)."),
        FromParameter, ToParameter, MinSeq, FormatParameter, LayoutParameter,
    ),
    responses(
        (status = 200, description = "The comparison.", content(
            (Comparison = "application/json", example = json!({
                "metric": "active_participants", "interval": "week", "from": "2026-03-02", "to": "2026-03-02",
                "watermark": 42, "volunteer_hour_value_gbp": 11.27,
                "series": [
                    { "movement": "bristol-befriending", "values": [{ "period": "2026-03-02", "value": 5 }] },
                    { "movement": "leeds-walking-groups", "values": [{ "period": "2026-03-02", "value": 9 }] },
                ],
            })),
            (String = "text/csv",
                example = "period,bristol-befriending,leeds-walking-groups\n2026-03-02,5,9\n"),
        )),
        (status = 400, response = inline(openapi::CompareBadRequest)),
        (status = 401, response = inline(openapi::Unauthorized)),
        (status = 403, response = inline(openapi::ReadForbidden)),
        (status = 404, response = inline(openapi::UnknownMovement)),
        (status = 503, response = inline(openapi::ReadUnavailable)),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn compare(
    State(state): State<Arc<AppState>>,
    Extension(caller): Authenticated,
    headers: HeaderMap,
    Query(parameters): Parameters,
) -> Response {
    let build = || -> Result<Value, Problem> {
        caller.require_reader()?;
        let movements: Vec<&str> = comma_list(&parameters, "movements").collect();
        if movements.is_empty() || movements.len() > MOVEMENTS_PER_COMPARISON_MAX {
            return Err(Problem::bad_parameter(
                "movements",
                format!("name 1 to {MOVEMENTS_PER_COMPARISON_MAX} movements to compare, separated by commas"),
            ));
        }
        for movement in &movements {
            check_movement(movement, "movements")?;
            caller.require_read(movement)?;
        }
        // A movement named twice is compared once (it gave two identical
        // CSV columns), in the order first named.
        let mut named = std::collections::HashSet::new();
        let movements: Vec<&str> = movements.into_iter().filter(|movement| named.insert(*movement)).collect();
        let metric = metric(parameters.get("metric").map(String::as_str).unwrap_or(""), "metric")?;
        let interval = interval(&parameters, &Interval::ALL)?;
        let (from, to) = period_range(&state, &parameters, interval)?;
        Ok(json!({
            "movements": movements, "metric": metric, "interval": interval, "from": from, "to": to,
            "min_seq": min_seq(&parameters)?,
        }))
    };
    answer(&state, &caller, QueryEndpoint::Compare, &parameters, &headers, build()).await
}

fn to_bytes<T: serde::Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("read answers always serialise"))
}

/// Whether small numbers are suppressed for this caller, and below what.
/// Evaluators get suppressed figures; admins see them whole.
fn suppression_for(state: &AppState, caller: &Caller) -> Option<u64> {
    (state.suppress_below > 1 && caller.role == Role::Evaluator).then_some(state.suppress_below)
}

/// Asks the projection service and fits the answer to the caller: listings
/// hold only the movements they may read, and evaluators' figures have
/// small numbers suppressed when that is configured.
async fn ask_for(
    state: &AppState,
    caller: &Caller,
    endpoint: QueryEndpoint,
    request: Value,
) -> Result<Bytes, Response> {
    use momentum_domain::query::{
        self, Cohorts, CompareRequest, MovementList, Principles, QueryError, TotalsEncoding, TrendRequest, TrendTotals,
        suppression,
    };
    fn internal(error: impl std::fmt::Display) -> Response {
        tracing::error!(%error, "a projector answer could not be read");
        Problem::internal().into_response()
    }
    // Totals are asked for in their binary form, which a quarter of a
    // trend's work here went into reading as JSON (docs/benchmarks.md).
    let in_binary = |mut request: Value| {
        if let Some(fields) = request.as_object_mut() {
            fields.insert("totals_encoding".to_owned(), json!(TotalsEncoding::Binary));
        }
        request
    };
    let unfit = |error: QueryError<()>| {
        tracing::error!(%error, "a projector's trend totals do not fit the request");
        Problem::internal().into_response()
    };
    let below = suppression_for(state, caller);
    match (endpoint, below) {
        (QueryEndpoint::Movements, _) if caller.movements != Movements::All && caller.role != Role::Admin => {
            let json = ask(state, endpoint, request).await?;
            let mut list: MovementList = serde_json::from_slice(&json).map_err(internal)?;
            list.movements.retain(|summary| caller.may_read(&summary.movement));
            Ok(to_bytes(&list))
        }
        (QueryEndpoint::Trends, below) => {
            // The projector sends the period totals (a few KB) and the
            // metrics are computed here: the finished trend is about ten
            // times larger, and those bytes crossed NATS on every read.
            let mut trend_request: TrendRequest = serde_json::from_value(request.clone()).map_err(internal)?;
            let requested = trend_request.metrics.clone();
            // What is hidden depends on every figure of a period, not on the
            // metrics asked for: otherwise asking for them one at a time
            // would show what asking for them together hides.
            if below.is_some() {
                trend_request.metrics = None;
            }
            let answer = ask(state, QueryEndpoint::TrendTotals, in_binary(request)).await?;
            let totals = TrendTotals::from_answer(&answer).map_err(internal)?;
            let Some(below) = below else {
                return Ok(Bytes::from(query::trend_json_from_totals(&trend_request, &totals).map_err(unfit)?));
            };
            let mut trend = query::trend_from_totals(&trend_request, &totals).map_err(unfit)?;
            suppression::trend(&mut trend, &totals, below);
            if let Some(metrics) = requested {
                for row in &mut trend.series {
                    row.values.retain(|(metric, _)| metrics.contains(metric));
                }
            }
            Ok(Bytes::from(trend.to_json()))
        }
        (QueryEndpoint::Compare, Some(below)) => {
            // Each movement's trend, suppressed as a trend read is, so that a
            // comparison shows nothing a trend read hides (what is hidden
            // depends on all of a period's figures, not only the one compared).
            let compared: CompareRequest = serde_json::from_value(request.clone()).map_err(internal)?;
            let asks = compared.movements.iter().map(|movement| {
                let mut trend_request = request.clone();
                if let Some(fields) = trend_request.as_object_mut() {
                    fields.remove("movements");
                    fields.remove("metric");
                    fields.insert("movement".to_owned(), json!(movement));
                }
                ask(state, QueryEndpoint::TrendTotals, in_binary(trend_request))
            });
            let answers = futures::future::join_all(asks).await;
            let mut totals = Vec::with_capacity(answers.len());
            for answer in answers {
                totals.push(TrendTotals::from_answer(&answer?).map_err(internal)?);
            }
            let comparison = query::comparison_from_totals(&compared, &totals, Some(below)).map_err(unfit)?;
            Ok(to_bytes(&comparison))
        }
        (QueryEndpoint::Cohorts, Some(below)) => {
            let json = ask(state, endpoint, request).await?;
            let mut cohorts: Cohorts = serde_json::from_slice(&json).map_err(internal)?;
            suppression::cohorts(&mut cohorts, below);
            Ok(to_bytes(&cohorts))
        }
        (QueryEndpoint::Principles, Some(below)) => {
            let json = ask(state, endpoint, request).await?;
            let mut principles: Principles = serde_json::from_slice(&json).map_err(internal)?;
            suppression::principles(&mut principles, below);
            Ok(to_bytes(&principles))
        }
        _ => ask(state, endpoint, request).await,
    }
}

/// Why a read is answered 503 when no projector takes it: a projector
/// answers queries only once it has caught up with the stream.
pub(crate) const NO_PROJECTOR: &str =
    "no projection service is answering: none is running, or it is still catching up with the stream";

/// Sends a request to the projection service (the partition or partitions
/// that hold its movements). Its answer is the API's JSON, except trend
/// totals asked for in binary; its errors, or its silence, become problem
/// responses.
async fn ask(state: &AppState, endpoint: QueryEndpoint, request: Value) -> Result<Bytes, Response> {
    use crate::partitions::Failure;
    // While NATS is away no answer can come: say so at once rather than
    // after the query timeout.
    if let Some(unready) = momentum_runtime::nats_unready(&state.nats) {
        return Err(unready);
    }
    let failure = match crate::partitions::ask(state, endpoint, request).await {
        Ok(answer) => return Ok(answer),
        Err(failure) => failure,
    };
    Err(match failure {
        Failure::TimedOut => Problem::unavailable("the projection service did not answer in time").into_response(),
        Failure::Unanswered(error) => {
            use async_nats::RequestErrorKind;
            let detail = match error.kind() {
                RequestErrorKind::NoResponders => NO_PROJECTOR,
                RequestErrorKind::TimedOut => "the projection service did not answer in time",
                _ => "the projection service could not be asked",
            };
            tracing::warn!(%error, "query request failed");
            Problem::unavailable(detail).into_response()
        }
        Failure::Unreadable(error) => {
            tracing::error!(%error, "a projector answer could not be read");
            Problem::internal().into_response()
        }
        Failure::Refused { code: 400, message } => {
            Problem::new(StatusCode::BAD_REQUEST, "invalid-query", "the query is not valid")
                .detail(message)
                .into_response()
        }
        // The answer would not fit in a NATS message: the range is what
        // the client can change.
        Failure::Refused { code: 413, message } => Problem::bad_parameter("from", message).into_response(),
        Failure::Refused { code: 404, message } => unknown_movement(message).into_response(),
        Failure::Refused { code: 503, message } => Problem::unavailable(message).into_response(),
        Failure::Refused { code, message } => {
            tracing::error!(code, message, "the projection service failed a query");
            Problem::internal().into_response()
        }
    })
}

pub(crate) fn unknown_movement(message: String) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "unknown-movement", "no such movement").detail(message)
}

/// The parameters several reads share, for the API document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only described; the handlers read their parameters themselves
struct MovementParameter {
    /// The movement id.
    movement: MovementId,
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct FromParameter {
    /// The first date of the range (default: a year before `to`).
    from: Option<openapi::LocalDate>,
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ToParameter {
    /// The last date of the range (default: today, in `MOMENTUM_TIMEZONE`); not before `from`.
    to: Option<openapi::LocalDate>,
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct MinSeq {
    /// Wait (at most the projector's `MOMENTUM_QUERY_WAIT_MS_MAX`, 5 s by default) until the projection includes
    /// this stream sequence (a `seq` or `max_seq` ingest answered), so a client reads its own writes; 503 if it
    /// does not in time.
    min_seq: Option<openapi::SequenceNumber>,
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct FormatParameter {
    /// `csv` for `text/csv`, `json` for JSON; without it, `Accept: text/csv` asks for CSV.
    format: Option<openapi::Format>,
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct LayoutParameter {
    /// The CSV layout: `wide` (default) or `long` (`period,movement,metric,value`).
    layout: Option<openapi::Layout>,
}
