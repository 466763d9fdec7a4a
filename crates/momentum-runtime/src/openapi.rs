//! What the services' OpenAPI 3.1 documents share: error answers as RFC
//! 9457 problems with examples, the bearer security scheme, the schema of a
//! movement id, and a check that every reference resolves.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, Ref};

use crate::Problem;

/// The media type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The name of the bearer security scheme in the documents.
pub const BEARER: &str = "bearer";

/// An error answer for the document: `application/problem+json` with the
/// `Problem` schema and one example per problem it may carry, named by the
/// problem's kind. 401 answers also document `WWW-Authenticate`; 429 and 503
/// answers `Retry-After`.
pub fn problem_response(description: &str, problems: impl IntoIterator<Item = Problem>) -> Response {
    let mut examples = BTreeMap::new();
    let mut statuses = BTreeSet::new();
    for problem in problems {
        statuses.insert(problem.status);
        let kind = problem.kind.trim_start_matches("urn:momentum:problem:");
        let mut name = kind.to_owned();
        let mut repeat = 1;
        while examples.contains_key(&name) {
            repeat += 1;
            name = format!("{kind}-{repeat}");
        }
        let summary = problem.detail.clone().unwrap_or_else(|| problem.title.clone());
        let value = serde_json::to_value(&problem).expect("a problem always serialises");
        examples.insert(name, ExampleBuilder::new().summary(summary).value(Some(value)).build());
    }
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).examples_from_iter(examples);
    let mut response = ResponseBuilder::new().description(description).content(PROBLEM_JSON, content.build());
    let text_header = |description: &str| {
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(description))
            .build()
    };
    if statuses.contains(&401) {
        response = response.header("WWW-Authenticate", text_header("`Bearer realm=\"momentum\"`"));
    }
    if statuses.contains(&429) || statuses.contains(&503) {
        let seconds = HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)))
            .description(Some("seconds to wait before retrying"))
            .build();
        response = response.header("Retry-After", seconds);
    }
    response.build()
}

/// Generates a unit struct per error answer that `#[utoipa::path]` can name
/// as `response = inline(Name)`: its description and example problems.
#[macro_export]
macro_rules! problem_responses {
    ($($(#[$meta:meta])* $name:ident => ($description:expr, [$($problem:expr),+ $(,)?]);)*) => {
        $(
            $(#[$meta])*
            pub(crate) struct $name;

            impl<'r> utoipa::ToResponse<'r> for $name {
                fn response() -> (&'r str, utoipa::openapi::RefOr<utoipa::openapi::response::Response>) {
                    (stringify!($name), $crate::openapi::problem_response($description, [$($problem),+]).into())
                }
            }
        )*
    };
}

/// Adds the bearer security scheme that data routes name.
pub struct BearerSecurity;

impl utoipa::Modify for BearerSecurity {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "A token from the service's auth file (`MOMENTUM_AUTH_FILE`): `Authorization: Bearer <token>`. \
                 Its role (partner, evaluator, admin) and scopes decide what it may do; a missing or unknown \
                 token is a 401, a token that does not allow the request a 403.",
            ))
            .build();
        components.add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// The `$ref`s of `document` that do not point at a part of it; the
/// documents use local references only, so any other kind is listed too.
pub fn unresolved_references(document: &Value) -> Vec<String> {
    fn collect(value: &Value, references: &mut Vec<String>) {
        match value {
            Value::Object(object) => {
                if let Some(Value::String(reference)) = object.get("$ref") {
                    references.push(reference.clone());
                }
                object.values().for_each(|value| collect(value, references));
            }
            Value::Array(items) => items.iter().for_each(|value| collect(value, references)),
            _ => {}
        }
    }
    let mut references = Vec::new();
    collect(document, &mut references);
    references
        .retain(|reference| reference.strip_prefix('#').is_none_or(|pointer| document.pointer(pointer).is_none()));
    references
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_that_point_nowhere_or_elsewhere_are_listed() {
        let document = serde_json::json!({
            "components": { "schemas": { "Here": { "type": "string" } } },
            "paths": { "/a": { "$ref": "#/components/schemas/Here" }, "/b": [{ "$ref": "#/components/schemas/Gone" }] },
            "other": { "$ref": "https://example.invalid/schema.json" },
        });
        let mut unresolved = unresolved_references(&document);
        unresolved.sort();
        assert_eq!(unresolved, ["#/components/schemas/Gone", "https://example.invalid/schema.json"]);
    }
}
