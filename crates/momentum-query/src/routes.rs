//! HTTP routes of the query service.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{Months, NaiveDate, Utc};
use momentum_bus::QueryEndpoint;
use momentum_domain::Interval;
use momentum_domain::query::Metric;
use momentum_runtime::Problem;
use serde_json::{Value, json};

use crate::AppState;
use crate::csv::{Format, requested_format, to_csv};

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/movements", get(movements))
        .route("/v1/movements/{movement}/trends", get(trends))
        .route("/v1/movements/{movement}/cohorts", get(cohorts))
        .route("/v1/movements/{movement}/principles", get(principles))
        .route("/v1/compare", get(compare))
        .route("/v1/status", get(status))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(|| async {
            Problem::new(StatusCode::NOT_FOUND, "not-found", "no such resource")
                .detail("see the README for the API's routes")
        })
        .with_state(state)
}

type Parameters = Query<HashMap<String, String>>;

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    momentum_runtime::nats_unready(&state.nats).unwrap_or_else(|| (StatusCode::OK, "ready").into_response())
}

fn min_seq(parameters: &HashMap<String, String>) -> Result<Option<u64>, Problem> {
    parameters
        .get("min_seq")
        .map(|text| text.parse::<u64>().map_err(|_| Problem::bad_parameter("min_seq", "must be a whole number ≥ 0")))
        .transpose()
}

/// The dates a read may name: wide enough for any record, narrow enough to
/// keep period arithmetic far from the limits of the calendar types.
const EARLIEST_DATE: &str = "1900-01-01";
const LATEST_DATE: &str = "2999-12-31";

fn date(parameters: &HashMap<String, String>, name: &str) -> Result<Option<NaiveDate>, Problem> {
    let Some(text) = parameters.get(name) else { return Ok(None) };
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| Problem::bad_parameter(name, format!("must be a date as YYYY-MM-DD, got {text:?}")))?;
    let (earliest, latest) = (EARLIEST_DATE.parse().expect("a date"), LATEST_DATE.parse().expect("a date"));
    if date < earliest || date > latest {
        return Err(Problem::bad_parameter(name, format!("must be between {EARLIEST_DATE} and {LATEST_DATE}")));
    }
    Ok(Some(date))
}

async fn movements(State(state): State<Arc<AppState>>, headers: HeaderMap, Query(parameters): Parameters) -> Response {
    let build = min_seq(&parameters).map(|min_seq| json!({ "min_seq": min_seq }));
    answer(&state, QueryEndpoint::Movements, &parameters, &headers, build).await
}

async fn status(State(state): State<Arc<AppState>>, headers: HeaderMap, Query(parameters): Parameters) -> Response {
    let build = min_seq(&parameters).map(|min_seq| json!({ "min_seq": min_seq }));
    answer(&state, QueryEndpoint::Status, &parameters, &headers, build).await
}

fn check_movement(movement: &str) -> Result<(), Problem> {
    let mut characters = movement.chars();
    let first_ok = characters.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let valid = first_ok
        && movement.len() <= 63
        && characters.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(Problem::bad_parameter(
            "movement",
            format!(
                "{movement:?} is not a movement id: 1 to 63 lower-case letters, digits and hyphens, \
                 starting with a letter or digit"
            ),
        ))
    }
}

fn interval(parameters: &HashMap<String, String>, allowed: &[Interval]) -> Result<Interval, Problem> {
    let text = parameters.get("interval").map(String::as_str).unwrap_or("week");
    Interval::parse(text).filter(|interval| allowed.contains(interval)).ok_or_else(|| {
        let valid: Vec<&str> = allowed.iter().map(|interval| interval.as_str()).collect();
        Problem::bad_parameter("interval", format!("must be one of {}, got {text:?}", valid.join(", ")))
    })
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

fn metric(text: &str, parameter: &str) -> Result<Metric, Problem> {
    Metric::parse(text).ok_or_else(|| {
        let valid: Vec<&str> = Metric::ALL.iter().map(|metric| metric.as_str()).collect();
        Problem::bad_parameter(parameter, format!("unknown metric {text:?}; valid metrics are {}", valid.join(", ")))
    })
}

/// Asks the projector with the request `build` produced (unless it is a
/// problem) and answers in the format the client asked for.
async fn answer(
    state: &AppState,
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
    let json = match ask(state, endpoint, request).await {
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

async fn trends(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(movement): Path<String>,
    Query(parameters): Parameters,
) -> Response {
    let build = || -> Result<Value, Problem> {
        check_movement(&movement)?;
        let interval = interval(&parameters, &Interval::ALL)?;
        let (from, to) = date_range(&state, &parameters)?;
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
    answer(&state, QueryEndpoint::Trends, &parameters, &headers, build()).await
}

async fn cohorts(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(movement): Path<String>,
    Query(parameters): Parameters,
) -> Response {
    let build = || -> Result<Value, Problem> {
        check_movement(&movement)?;
        let interval = interval(&parameters, &[Interval::Week, Interval::Month])?;
        let (from, to) = date_range(&state, &parameters)?;
        Ok(json!({
            "movement": movement, "interval": interval, "from": from, "to": to, "min_seq": min_seq(&parameters)?,
        }))
    };
    answer(&state, QueryEndpoint::Cohorts, &parameters, &headers, build()).await
}

async fn principles(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(movement): Path<String>,
    Query(parameters): Parameters,
) -> Response {
    let build = || -> Result<Value, Problem> {
        check_movement(&movement)?;
        let (from, to) = date_range(&state, &parameters)?;
        Ok(json!({ "movement": movement, "from": from, "to": to, "min_seq": min_seq(&parameters)? }))
    };
    answer(&state, QueryEndpoint::Principles, &parameters, &headers, build()).await
}

async fn compare(State(state): State<Arc<AppState>>, headers: HeaderMap, Query(parameters): Parameters) -> Response {
    let build = || -> Result<Value, Problem> {
        let movements: Vec<&str> = comma_list(&parameters, "movements").collect();
        if movements.is_empty() {
            return Err(Problem::bad_parameter("movements", "name the movements to compare, separated by commas"));
        }
        for movement in &movements {
            check_movement(movement)?;
        }
        let metric = metric(parameters.get("metric").map(String::as_str).unwrap_or(""), "metric")?;
        let interval = interval(&parameters, &Interval::ALL)?;
        let (from, to) = date_range(&state, &parameters)?;
        Ok(json!({
            "movements": movements, "metric": metric, "interval": interval, "from": from, "to": to,
            "min_seq": min_seq(&parameters)?,
        }))
    };
    answer(&state, QueryEndpoint::Compare, &parameters, &headers, build()).await
}

/// Sends a request to the projection service. Its JSON answer is the API's;
/// its errors, or its silence, become problem responses.
async fn ask(state: &AppState, endpoint: QueryEndpoint, request: Value) -> Result<Bytes, Response> {
    let payload = serde_json::to_vec(&request).expect("a request always serialises");
    let asked = state.nats.request(endpoint.subject(), payload.into());
    let reply = match tokio::time::timeout(state.query_timeout, asked).await {
        Err(_) => return Err(Problem::unavailable("the projection service did not answer in time").into_response()),
        Ok(Err(error)) => {
            use async_nats::RequestErrorKind;
            let detail = match error.kind() {
                RequestErrorKind::NoResponders => "no projection service is running",
                RequestErrorKind::TimedOut => "the projection service did not answer in time",
                _ => "the projection service could not be asked",
            };
            tracing::warn!(%error, "query request failed");
            return Err(Problem::unavailable(detail).into_response());
        }
        Ok(Ok(reply)) => reply,
    };
    let service_error = reply.headers.as_ref().and_then(|headers| {
        let code = headers.get(async_nats::service::NATS_SERVICE_ERROR_CODE)?.as_str().parse::<u16>().ok()?;
        let message = headers.get(async_nats::service::NATS_SERVICE_ERROR).map(|value| value.as_str().to_owned());
        Some((code, message.unwrap_or_default()))
    });
    Err(match service_error {
        None => return Ok(reply.payload),
        Some((400, message)) => Problem::new(StatusCode::BAD_REQUEST, "invalid-query", "the query is not valid")
            .detail(message)
            .into_response(),
        Some((404, message)) => {
            Problem::new(StatusCode::NOT_FOUND, "unknown-movement", "no such movement").detail(message).into_response()
        }
        Some((503, message)) => Problem::unavailable(message).into_response(),
        Some((code, message)) => {
            tracing::error!(code, message, "the projection service failed a query");
            Problem::internal().into_response()
        }
    })
}
