//! The query service's OpenAPI 3.1 document, served at `GET /openapi.json`.
//! It is generated from the route handlers' `#[utoipa::path]` annotations
//! and the answer types of `momentum_domain::query` (the JSON the projector
//! answers and this service passes on); the error examples are made by the
//! same code that makes the real answers.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::http::HeaderMap;
use momentum_domain::Interval;
use momentum_domain::query::{Cohorts, Comparison, Metric, MovementList, Principles, QueryError, Status, Trend};
use momentum_runtime::auth::{Authenticator, Caller, Movements, Role};
use momentum_runtime::openapi::{BearerSecurity, MovementId};
use momentum_runtime::{Problem, ProblemField, problem_responses};
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{OpenApi, PartialSchema, ToSchema};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "momentum query API",
        description = "Evaluators read a movement's figures here: trends, cohorts, the eight principles, \
            comparisons. Every read answers JSON, or CSV with `format=csv` or `Accept: text/csv` (`layout=long` \
            for the tidy form). Every read accepts `min_seq` to read its own writes. Every error is an RFC 9457 \
            problem (`application/problem+json`); `errors[].pointer` names the path or query parameter at fault \
            (a JSON Pointer into the body where there is one). The metrics are defined in docs/metrics.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        routes::movements,
        routes::trends,
        routes::cohorts,
        routes::principles,
        routes::compare,
        routes::status,
        routes::livez,
        routes::readyz,
        routes::metrics,
        routes::openapi_json
    ),
    components(schemas(
        Problem,
        ProblemField,
        MovementId,
        LocalDate,
        SequenceNumber,
        Interval,
        CohortInterval,
        Metric,
        Format,
        Layout,
        Trend,
        Cohorts,
        Principles,
        Comparison,
        MovementList,
        Status
    )),
    modifiers(&BearerSecurity),
    tags(
        (name = "reads", description = "A movement's figures"),
        (name = "health", description = "Liveness, readiness and this document; no token needed"),
    )
)]
struct ApiDoc;

/// The document, built once.
pub(crate) fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| serde_json::to_value(ApiDoc::openapi()).expect("the document serialises"))
}

/// A date parameter: `YYYY-MM-DD` from 1900-01-01 to 2999-12-31.
pub(crate) struct LocalDate;

impl PartialSchema for LocalDate {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
            .pattern(Some("^(19|2[0-9])[0-9]{2}-[0-9]{2}-[0-9]{2}$"))
            .description(Some(format!(
                "A local date, YYYY-MM-DD, from {} to {}.",
                routes::EARLIEST_DATE,
                routes::LATEST_DATE
            )))
            .examples(["2026-03-02"])
            .into()
    }
}

impl ToSchema for LocalDate {}

/// A stream sequence number, as `min_seq` takes it: 0 to 2^64 - 1.
pub(crate) struct SequenceNumber;

impl PartialSchema for SequenceNumber {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .maximum(Some(utoipa::Number::UInt(usize::try_from(u64::MAX).unwrap_or(usize::MAX))))
            .into()
    }
}

impl ToSchema for SequenceNumber {}

/// The intervals cohorts are read in.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // only described
pub(crate) enum CohortInterval {
    Week,
    Month,
}

/// What a read answers: `json` (the default) or `csv`; wins over `Accept`.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // only described; crate::csv reads the parameter
pub(crate) enum Format {
    Json,
    Csv,
}

/// The layout of a CSV answer: `wide` (the default; a row per period, a
/// column per value) or `long` (a row per value).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // only described; crate::csv reads the parameter
pub(crate) enum Layout {
    Wide,
    Long,
}

fn parameters(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
}

fn unauthorized() -> Problem {
    let authenticator = Authenticator::from_toml("").expect("an empty auth file is valid");
    let request = axum::http::Request::new(axum::body::Body::empty());
    authenticator.authenticate(&request).expect_err("a request without a token is refused")
}

fn caller(role: Role) -> Caller {
    let source = (role == Role::Partner).then(|| "urn:partner:age-uk-bristol".to_owned());
    let movements = Movements::Only(["bristol-befriending".to_owned()].into());
    Caller { name: "example".to_owned(), role, source, movements }
}

fn partner_reads() -> Problem {
    caller(Role::Partner).require_reader().expect_err("partners do not read")
}

fn not_this_movement() -> Problem {
    caller(Role::Evaluator).require_read("leeds-walking-groups").expect_err("not this evaluator's movement")
}

fn unknown_movement() -> Problem {
    routes::unknown_movement(QueryError::<()>::UnknownMovement("leeds-walking-groups".to_owned()).to_string())
}

fn bad_min_seq() -> Problem {
    routes::min_seq(&parameters(&[("min_seq", "-1")])).expect_err("negative")
}

fn bad_format() -> Problem {
    crate::csv::requested_format(&parameters(&[("format", "xml")]), &HeaderMap::new()).expect_err("not a format")
}

fn bad_interval(allowed: &[Interval]) -> Problem {
    routes::interval(&parameters(&[("interval", "year")]), allowed).expect_err("not an interval")
}

fn bad_date() -> Problem {
    routes::date(&parameters(&[("from", "2026-02-30")]), "from").expect_err("not a date")
}

fn bad_movement() -> Problem {
    routes::check_movement("Leeds Walks", "movement").expect_err("not a movement id")
}

fn bad_metric(parameter: &str) -> Problem {
    routes::metric("hapiness", parameter).expect_err("not a metric")
}

fn not_ready() -> Problem {
    Problem::unavailable(routes::NO_PROJECTOR)
}

problem_responses! {
    ListBadRequest => ("A parameter is not valid.", [bad_min_seq(), bad_format()]);
    TrendsBadRequest => ("A parameter is not valid, or the range is reversed or longer than 3660 periods.", [
        bad_movement(), bad_interval(&Interval::ALL), bad_date(), bad_metric("metrics"), bad_min_seq(), bad_format(),
    ]);
    CohortsBadRequest => ("A parameter is not valid, or the range is reversed or too long.", [
        bad_movement(), bad_interval(&[Interval::Week, Interval::Month]), bad_date(), bad_min_seq(),
    ]);
    PrinciplesBadRequest => ("A parameter is not valid, or the range is reversed or too long.", [
        bad_movement(), bad_date(), bad_min_seq(),
    ]);
    CompareBadRequest => ("A parameter is not valid: no movements or more than 20, an unknown metric, a bad \
        range.", [
        routes::check_movement("Leeds Walks", "movements").expect_err("not a movement id"),
        bad_metric("metric"), bad_interval(&Interval::ALL), bad_date(), bad_min_seq(),
    ]);
    Unauthorized => ("No token, or one the service does not know.", [unauthorized()]);
    ListForbidden => ("Partner tokens may not read.", [partner_reads()]);
    ReadForbidden => ("The token may not read this movement (or partner tokens any).", [
        not_this_movement(), partner_reads(),
    ]);
    UnknownMovement => ("The movement (or one of the movements) has no events.", [unknown_movement()]);
    ReadUnavailable => ("No projector answered in time, or the projection did not reach `min_seq` within the \
        wait, or the service is at its bound of requests in flight; retry.", [
        not_ready(),
        Problem::unavailable("the projection has not reached sequence 4711 yet"),
    ]);
    NotReady => ("Not connected to NATS, or at the bound of requests in flight.", [
        Problem::unavailable("NATS connection is Disconnected"),
    ]);
    Busy => ("The service is at its bound of requests in flight.", [
        Problem::unavailable(format!(
            "the service is handling its maximum of {} requests; retry shortly",
            crate::REQUESTS_IN_FLIGHT_MAX
        )),
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_document_with_its_security() {
        let (protected, public) = routes::route_lists();
        if let Err(mismatches) = momentum_runtime::openapi::check_routes(document(), &protected, &public) {
            panic!("the OpenAPI document and the router differ:\n{}", mismatches.join("\n"));
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_and_every_reference_resolves() {
        let document = document();
        assert_eq!(document["openapi"], "3.1.0");
        assert!(document.to_string().contains("\"$ref\""), "the document uses references");
        assert_eq!(momentum_runtime::openapi::unresolved_references(document), Vec::<String>::new());
    }

    #[test]
    fn every_metric_and_interval_is_described() {
        let schemas = &document()["components"]["schemas"];
        let metrics: Vec<&str> = Metric::ALL.iter().map(|metric| metric.as_str()).collect();
        assert_eq!(schemas["Metric"]["enum"], serde_json::json!(metrics));
        let intervals: Vec<&str> = Interval::ALL.iter().map(|interval| interval.as_str()).collect();
        assert_eq!(schemas["Interval"]["enum"], serde_json::json!(intervals));
        let row = &schemas["TrendRow"]["properties"];
        for metric in metrics {
            assert!(row.get(metric).is_some(), "{metric} is not in the trend row schema");
        }
    }

    #[test]
    fn every_error_answer_is_a_problem_with_an_example_of_its_own_status() {
        let mut checked = 0;
        for (path, item) in document()["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    if !status.starts_with('4') && !status.starts_with('5') {
                        continue;
                    }
                    let content = &response["content"]["application/problem+json"];
                    assert_eq!(content["schema"]["$ref"], "#/components/schemas/Problem", "{method} {path} {status}");
                    let examples = content["examples"].as_object().unwrap();
                    assert!(!examples.is_empty(), "{method} {path} {status} has no example");
                    for example in examples.values() {
                        assert_eq!(example["value"]["status"].to_string(), *status, "{method} {path}");
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 20);
    }
}
