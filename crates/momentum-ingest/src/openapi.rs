//! What the ingestion service's OpenAPI 3.1 document holds besides its
//! routes (which `routes` adds with their handlers): its description, tags,
//! and the event schemas, which are the JSON Schemas in `schemas/`
//! (embedded in `momentum_domain`).

use std::borrow::Cow;

use momentum_domain::query::MovementId;
use momentum_domain::validation::SCHEMA_FILES;
use serde_json::{Map, Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{OpenApi, PartialSchema, ToSchema};

use crate::{BATCH_EVENTS_MAX, REQUEST_BYTES_MAX};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "momentum ingestion API",
        description = "Partner systems post CloudEvents here; each is validated against the event schemas, its \
            participant refs are pseudonymised, and it is acknowledged only once JetStream has stored it. \
            Every error is an RFC 9457 problem (`application/problem+json`); `errors[].pointer` is a JSON \
            Pointer into the event or request body (`\"\"` for the whole event), or the name of a path or \
            query parameter.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(MovementId)),
    tags(
        (name = "events", description = "Posting events"),
        (name = "erasure", description = "Erasing a participant (admin only)"),
        (name = "health", description = "Liveness, readiness and this document; no token needed"),
    )
)]
pub(crate) struct ApiDoc;

/// Adds the event schemas of `schemas/` to the document, in place of the
/// placeholders [`CloudEvent`] and [`EventBatch`].
pub(crate) fn add_event_schemas(document: &mut Value) {
    let schemas = document["components"]["schemas"].as_object_mut().expect("the document has schemas");
    schemas.extend(event_schemas());
}

/// One CloudEvent, as `application/cloudevents+json` (or `application/json`).
/// Its schema is replaced in [`document`] by the one built from `schemas/`.
pub(crate) struct CloudEvent;

impl PartialSchema for CloudEvent {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::Object).into()
    }
}

impl ToSchema for CloudEvent {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("CloudEvent")
    }
}

/// A batch of events, as `application/cloudevents-batch+json`; its schema
/// too is replaced in [`document`].
pub(crate) struct EventBatch;

impl PartialSchema for EventBatch {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::Array).into()
    }
}

impl ToSchema for EventBatch {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EventBatch")
    }
}

/// Rewrites the schema files' references (`common.schema.json#/$defs/ref`,
/// or `#/$defs/ref` inside common) to components (`#/components/schemas/common.ref`).
fn rewrite_references(value: &mut Value, file_stem: &str) {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(reference)) = object.get_mut("$ref") {
                let (file, pointer) = reference.split_once('#').unwrap_or((reference.as_str(), ""));
                let stem = if file.is_empty() { file_stem } else { file.trim_end_matches(".schema.json") };
                let name = pointer.trim_start_matches("/$defs/");
                *reference = format!("#/components/schemas/{stem}.{name}");
            }
            object.values_mut().for_each(|value| rewrite_references(value, file_stem));
        }
        Value::Array(items) => items.iter_mut().for_each(|value| rewrite_references(value, file_stem)),
        _ => {}
    }
}

/// The event schemas as components, from the schema files: `CloudEvent` is
/// one of the envelope per event type with its `data` schema, `EventBatch`
/// an array of them; the data schemas are `data.<type>` and the shared
/// definitions `common.<name>`.
fn event_schemas() -> Map<String, Value> {
    let mut files: Map<String, Value> = SCHEMA_FILES
        .iter()
        .map(|(file, text)| {
            let stem = file.trim_end_matches(".schema.json");
            let mut schema: Value = serde_json::from_str(text).expect("the embedded schemas are JSON");
            rewrite_references(&mut schema, stem);
            let object = schema.as_object_mut().expect("a schema is an object");
            object.remove("$schema");
            object.remove("$id");
            (stem.to_owned(), schema)
        })
        .collect();
    let mut components = Map::new();
    let common = files.remove("common").expect("common.schema.json is embedded");
    for (name, definition) in common["$defs"].as_object().expect("common has $defs") {
        components.insert(format!("common.{name}"), definition.clone());
    }
    let envelope = files.remove("envelope").expect("envelope.schema.json is embedded");
    let types = envelope["properties"]["type"]["enum"].as_array().expect("the envelope lists the event types");
    let mut variants = Vec::new();
    for kind in types {
        let kind = kind.as_str().expect("event types are text");
        let data = files.remove(kind).unwrap_or_else(|| panic!("no data schema for {kind}"));
        components.insert(format!("data.{kind}"), data);
        let mut variant = envelope.clone();
        variant["title"] = json!(format!("{kind} event"));
        variant.as_object_mut().expect("an object").remove("description");
        variant["properties"]["type"] = json!({ "const": kind });
        variant["properties"]["data"] = json!({ "$ref": format!("#/components/schemas/data.{kind}") });
        variants.push(variant);
    }
    assert!(files.is_empty(), "schema files without an event type: {:?}", files.keys());
    let description = format!(
        "{} Each event type has its own `data` schema (the files in `schemas/`). Unknown fields in `data` are \
         rejected.",
        envelope["description"].as_str().unwrap_or_default()
    );
    let title = envelope["title"].clone();
    components
        .insert("CloudEvent".to_owned(), json!({ "title": title, "description": description, "oneOf": variants }));
    components.insert(
        "EventBatch".to_owned(),
        json!({
            "description": format!(
                "A JSON array of at most {BATCH_EVENTS_MAX} events and {REQUEST_BYTES_MAX} bytes; each item is \
                 answered on its own, so one that is not a valid event is answered `rejected` and does not sink \
                 the others."
            ),
            "type": "array",
            "maxItems": BATCH_EVENTS_MAX,
            "items": { "anyOf": [
                { "$ref": "#/components/schemas/CloudEvent" },
                { "description": "Anything else is answered `rejected`, with its problem, in the batch's results." },
            ] },
        }),
    );
    components
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> &'static Value {
        static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
        DOCUMENT.get_or_init(|| momentum_runtime::routes::document(crate::routes::api()))
    }

    #[test]
    fn both_routes_are_documented_and_need_a_token() {
        let paths = &document()["paths"];
        for (path, method) in [("/v1/events", "post"), ("/v1/movements/{movement}/erasures", "post")] {
            assert_eq!(paths[path][method]["security"], serde_json::json!([{ "bearer": [] }]), "{path}");
            assert!(paths[path][method]["responses"]["401"].is_object(), "{path} documents its 401");
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
    fn the_event_schema_is_the_envelope_of_the_schema_files_per_type() {
        let schemas = &document()["components"]["schemas"];
        let variants = schemas["CloudEvent"]["oneOf"].as_array().unwrap();
        assert_eq!(variants.len(), 5);
        let meeting = variants.iter().find(|variant| variant["properties"]["type"]["const"] == "meeting.held").unwrap();
        assert_eq!(meeting["properties"]["specversion"]["const"], "1.0");
        assert_eq!(meeting["properties"]["data"]["$ref"], "#/components/schemas/data.meeting.held");
        assert_eq!(schemas["data.meeting.held"]["properties"]["attendees"]["$ref"], "#/components/schemas/common.refs");
        assert_eq!(schemas["common.principles"]["items"]["$ref"], "#/components/schemas/common.principle");
        assert_eq!(schemas["EventBatch"]["maxItems"], BATCH_EVENTS_MAX);
    }

    #[test]
    fn the_movement_pattern_is_the_envelope_subject_pattern() {
        let envelope = SCHEMA_FILES.iter().find(|(file, _)| *file == "envelope.schema.json").unwrap().1;
        let envelope: Value = serde_json::from_str(envelope).unwrap();
        assert_eq!(envelope["properties"]["subject"]["pattern"], momentum_domain::query::MOVEMENT_ID_PATTERN);
        let schemas = &document()["components"]["schemas"];
        assert_eq!(schemas["MovementId"]["pattern"], momentum_domain::query::MOVEMENT_ID_PATTERN);
    }

    #[test]
    fn every_error_answer_is_a_problem_with_an_example_of_its_own_status() {
        let document = document();
        let mut checked = 0;
        for (path, item) in document["paths"].as_object().unwrap() {
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
        assert!(checked > 10);
    }
}
