//! The ingestion service's OpenAPI 3.1 document, served at
//! `GET /openapi.json`. It is generated from the route handlers'
//! `#[utoipa::path]` annotations and the answer types; the event schemas are
//! the JSON Schemas in `schemas/` (embedded in `momentum_domain`), and the
//! error examples are made by the same code that makes the real answers.

use std::borrow::Cow;
use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use momentum_domain::validation::SCHEMA_FILES;
use momentum_runtime::auth::{Authenticator, Caller, Movements, Role};
use momentum_runtime::openapi::BearerSecurity;
use momentum_runtime::{Problem, problem_responses};
use serde_json::{Map, Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{OpenApi, PartialSchema, ToSchema};

use crate::routes;
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
    paths(routes::post_events, routes::post_erasure, routes::livez, routes::readyz, routes::metrics, routes::openapi_json),
    components(schemas(Problem, momentum_runtime::ProblemField, momentum_runtime::openapi::MovementId)),
    modifiers(&BearerSecurity),
    tags(
        (name = "events", description = "Posting events"),
        (name = "erasure", description = "Erasing a participant (admin only)"),
        (name = "health", description = "Liveness, readiness and this document; no token needed"),
    )
)]
struct ApiDoc;

/// The document, built once.
pub(crate) fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut document = serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
        let schemas = document["components"]["schemas"].as_object_mut().expect("the document has schemas");
        schemas.extend(event_schemas());
        document
    })
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

/// The 200 answer of `POST /v1/events`: a repeated single event, or a batch.
#[derive(serde::Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only described, never built
pub(crate) enum PostedOk {
    Duplicate(routes::EventResult),
    Batch(routes::BatchResult),
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

/// A request of the given content type, for example problems.
fn request_with_content_type(content_type: &str) -> Request<Body> {
    Request::builder().header(header::CONTENT_TYPE, content_type).body(Body::empty()).expect("a request")
}

fn unauthorized() -> Problem {
    let authenticator = Authenticator::from_toml("").expect("an empty auth file is valid");
    authenticator.authenticate(&Request::new(Body::empty())).expect_err("a request without a token is refused")
}

fn caller(role: Role) -> Caller {
    let source = (role == Role::Partner).then(|| "urn:partner:age-uk-bristol".to_owned());
    let movements = Movements::Only(["bristol-befriending".to_owned()].into());
    Caller { name: "example".to_owned(), role, source, movements }
}

fn invalid_event() -> Problem {
    let validator = momentum_domain::Validator::new().expect("the schemas compile");
    let event = json!({
        "specversion": "1.0", "id": "hours-0001", "source": "urn:partner:age-uk-bristol",
        "type": "volunteer.hours_logged", "subject": "bristol-befriending",
        "time": "2026-03-05T09:00:00+00:00", "data": { "participant": "v-12", "hours": 30 },
    });
    let now = "2026-03-05T10:00:00Z".parse().expect("a time");
    routes::invalid_event(validator.validate(&event, now).expect_err("30 hours in a day is invalid"))
}

fn unavailable() -> Problem {
    Problem::unavailable("the event store did not confirm the event; it is safe to retry")
}

fn body_timeout() -> Problem {
    Problem::new(StatusCode::REQUEST_TIMEOUT, "body-timeout", "the request body arrived too slowly")
        .detail("a request body must arrive within 30000 ms")
}

fn payload_too_large() -> Problem {
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "the request body is too large")
        .detail(format!("a request body may be at most {REQUEST_BYTES_MAX} bytes"))
}

fn bad_movement() -> Problem {
    Problem::bad_parameter("movement", "must be 1 to 63 lower-case letters, digits and hyphens")
}

// The description of `EventsTooLarge` names this bound in words.
const _: () = assert!(momentum_bus::PARTICIPANTS_PER_REQUEST_MAX == 10_000, "EventsTooLarge names the bound");

problem_responses! {
    EventsBadRequest => ("The body is not JSON, or a batch is not a JSON array.", [
        routes::parse_json(b"{\"id\": ").expect_err("not JSON"),
        routes::not_a_batch(),
    ]);
    Unauthorized => ("No token, or one the service does not know.", [unauthorized()]);
    EventsForbidden => ("The token may not post events: an evaluator's token, or (for one event) a partner's \
        token with another `source` or movement. In a batch, the latter is a per-event result instead.", [
        caller(Role::Evaluator).require_writer().expect_err("evaluators do not write"),
        caller(Role::Partner).require_write("urn:partner:other", "bristol-befriending").expect_err("another source"),
    ]);
    BodyTimeout => ("The request body did not arrive in time (`MOMENTUM_BODY_TIMEOUT_MS`).", [body_timeout()]);
    EventsTooLarge => ("The body, the batch or one event is too large, or the request names more than \
        10 000 distinct participants.", [
        payload_too_large(),
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "batch-too-large", "the batch has too many events")
            .detail(format!("got 1001 events; a batch may hold at most {BATCH_EVENTS_MAX}")),
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "event-too-large", "the event is too large")
            .detail(format!("an event may be at most {} bytes as stored JSON", momentum_bus::EVENT_BYTES_MAX)),
        routes::too_many_participants(),
    ]);
    UnsupportedMediaType => ("The content type is not one of the three accepted.", [
        routes::body_kind(&request_with_content_type("text/plain")).expect_err("text is not accepted"),
    ]);
    InvalidEvent => ("The event does not match its schema (or its `time` is more than 24 hours ahead); \
        `errors` names each field with a JSON Pointer into the event.", [invalid_event()]);
    RateLimited => ("The token posts more events than its rate allows; retry after `Retry-After` seconds.", [
        Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", "this token is posting too fast")
            .detail("each token may post 5000 events a second on average; retry after the wait in Retry-After")
            .retry_after(1),
    ]);
    EventsUnavailable => ("NATS is away or slow, or the service is at its bound of requests in flight: \
        nothing was lost, and retrying the same request is safe.", [unavailable()]);
    ErasureBadRequest => ("The movement id or the body is not valid.", [
        bad_movement(),
        Problem::new(StatusCode::BAD_REQUEST, "malformed-json", "the request body is not valid")
            .detail("expected {\"participant\": \"<ref>\"}: EOF while parsing a value at line 1 column 0"),
    ]);
    ErasureForbidden => ("Only admin tokens may erase.", [
        caller(Role::Evaluator).require_admin().expect_err("evaluators do not erase"),
    ]);
    ErasureTooLarge => ("The body is too large.", [payload_too_large()]);
    ErasureInvalid => ("The participant ref is empty or too long.", [
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-request", "the request is not valid")
            .field("/participant", "must be 1 to 128 characters"),
    ]);
    ErasureUnavailable => ("NATS is away or slow: the erasure is safe to retry.", [
        Problem::unavailable("the event store did not answer; the erasure is safe to retry"),
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
        assert_eq!(envelope["properties"]["subject"]["pattern"], momentum_runtime::openapi::MOVEMENT_ID_PATTERN);
        let schemas = &document()["components"]["schemas"];
        assert_eq!(schemas["MovementId"]["pattern"], momentum_runtime::openapi::MOVEMENT_ID_PATTERN);
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
