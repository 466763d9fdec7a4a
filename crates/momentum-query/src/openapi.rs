//! What the query service's OpenAPI 3.1 document holds besides its routes
//! (which `routes` adds with their handlers): its description, tags, the
//! answer types of `momentum_domain::query` (the JSON the projector answers
//! and this service passes on) and the schemas of parameters that arrive
//! as text.

use momentum_domain::Interval;
use momentum_domain::query::{
    CohortMode, Cohorts, Comparison, EARLIEST_DATE, LATEST_DATE, Metric, MovementId, MovementList, Principles, Status,
    Trend,
};
use momentum_domain::selection::{Breakdown, ParticipantRole, SplitValue};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{OpenApi, PartialSchema, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "momentum query API",
        description = "Evaluators read a movement's figures here: trends, cohorts, the eight principles, \
            comparisons. Every read answers JSON, or CSV with `format=csv` or `Accept: text/csv`, or Parquet with \
            `format=parquet` or `Accept: application/vnd.apache.parquet` (`layout=long` for the tidy form). Every read accepts `min_seq` to read its own writes. Every error is an RFC 9457 \
            problem (`application/problem+json`); `errors[].pointer` names the path or query parameter at fault \
            (a JSON Pointer into the body where there is one). The metrics are defined in docs/metrics.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(
        MovementId,
        LocalDate,
        SequenceNumber,
        Interval,
        CohortInterval,
        Metric,
        ParticipantRole,
        Breakdown,
        CohortMode,
        SplitValue,
        Format,
        Layout,
        ParquetFile,
        ZipFile,
        Trend,
        Cohorts,
        Principles,
        Comparison,
        MovementList,
        Status
    )),
    tags(
        (name = "reads", description = "A movement's figures"),
        (name = "partners", description = "What became of a partner's events"),
        (name = "health", description = "Liveness, readiness and this document; no token needed"),
    )
)]
pub(crate) struct ApiDoc;

/// A binary response body's schema: a string of bytes.
fn binary(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
        .description(Some(description))
        .into()
}

/// A Parquet file (`application/vnd.apache.parquet`): the same table as
/// the CSV answer, with typed columns (docs/exports.md).
pub(crate) struct ParquetFile;

impl PartialSchema for ParquetFile {
    fn schema() -> RefOr<Schema> {
        binary("A Parquet file: the CSV answer's table with typed columns.")
    }
}

impl ToSchema for ParquetFile {}

/// A zip archive (`application/zip`).
pub(crate) struct ZipFile;

impl PartialSchema for ZipFile {
    fn schema() -> RefOr<Schema> {
        binary("A zip archive.")
    }
}

impl ToSchema for ZipFile {}

/// A date parameter: `YYYY-MM-DD` from 1900-01-01 to 2999-12-31.
pub(crate) struct LocalDate;

impl PartialSchema for LocalDate {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
            .pattern(Some("^(19|2[0-9])[0-9]{2}-[0-9]{2}-[0-9]{2}$"))
            .description(Some(format!("A local date, YYYY-MM-DD, from {} to {}.", EARLIEST_DATE, LATEST_DATE)))
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

/// What a read answers: `json` (the default), `csv` or `parquet`; wins over `Accept`.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // only described; crate::tables reads the parameter
pub(crate) enum Format {
    Json,
    Csv,
    Parquet,
}

/// The layout of a CSV or Parquet answer: `wide` (the default; a row per
/// period, a column per value) or `long` (a row per value).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // only described; crate::tables reads the parameter
pub(crate) enum Layout {
    Wide,
    Long,
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn document() -> &'static Value {
        static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
        DOCUMENT.get_or_init(|| momentum_runtime::routes::document(crate::routes::api()))
    }

    #[test]
    fn every_read_is_documented_with_its_parameters_and_needs_a_token() {
        let paths = &document()["paths"];
        for path in [
            "/v1/movements",
            "/v1/status",
            "/v1/movements/{movement}/trends",
            "/v1/movements/{movement}/cohorts",
            "/v1/movements/{movement}/principles",
            "/v1/compare",
            "/v1/movements/{movement}/stickiness",
        ] {
            let operation = &paths[path]["get"];
            assert_eq!(operation["security"], serde_json::json!([{ "bearer": [] }]), "{path}");
            let names: Vec<&str> =
                operation["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
            for common in ["min_seq", "format", "layout"] {
                assert!(names.contains(&common), "{path} documents {common}: {names:?}");
            }
            let header = &operation["responses"]["200"]["headers"]["Momentum-Watermark"];
            assert!(header.is_object(), "{path} documents the watermark header of its CSV");
            if path.contains("movements/{movement}") || path == "/v1/compare" {
                for selection in ["area", "partner", "role", "kind", "as_of_seq", "as_of", "by", "top"] {
                    assert!(names.contains(&selection), "{path} documents {selection}: {names:?}");
                }
            }
        }
        let trend: Vec<&str> = paths["/v1/movements/{movement}/trends"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            trend,
            [
                "movement",
                "interval",
                "metrics",
                "from",
                "to",
                "area",
                "partner",
                "role",
                "kind",
                "as_of_seq",
                "as_of",
                "by",
                "top",
                "min_seq",
                "format",
                "layout",
                "If-None-Match"
            ]
        );
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
