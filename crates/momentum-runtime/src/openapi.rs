//! What the services' OpenAPI 3.1 documents share: the route table each
//! router is built from (so a test can check that the document describes
//! every route), error answers as RFC 9457 problems with examples, the
//! bearer security scheme, and that check itself.

use std::collections::{BTreeMap, BTreeSet};

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, on};
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

/// What a movement id must match: the envelope schema's `subject` pattern
/// (a test in ingest checks that they agree).
pub const MOVEMENT_ID_PATTERN: &str = "^[a-z0-9][a-z0-9-]{0,62}$";

/// A movement id in a path or query parameter, for the documents.
pub struct MovementId;

impl utoipa::PartialSchema for MovementId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(MOVEMENT_ID_PATTERN))
            .description(Some(
                "A movement id: 1 to 63 lower-case letters, digits and hyphens, not starting with a hyphen.",
            ))
            .examples(["bristol-befriending"])
            .into()
    }
}

impl utoipa::ToSchema for MovementId {}

/// The (method, path) of each route of a router.
pub type RouteList = Vec<(Method, &'static str)>;

/// The routes of a service, listed as they are added to its router, so the
/// list a test checks the OpenAPI document against is the router's own.
pub struct Routes<S> {
    router: Router<S>,
    list: Vec<(Method, &'static str)>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Routes { router: Router::new(), list: Vec::new() }
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new() -> Routes<S> {
        Routes::default()
    }

    /// Routes `method` requests for `path` to `handler`.
    pub fn route<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Routes<S>
    where
        H: Handler<T, S>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a method axum can route");
        self.router = self.router.route(path, on(filter, handler));
        self.list.push((method, path));
        self
    }

    /// Every (method, path) added, in order.
    pub fn list(&self) -> &[(Method, &'static str)] {
        &self.list
    }

    pub fn into_router(self) -> Router<S> {
        self.router
    }
}

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

/// Where each service serves its interactive API documents.
pub const DOCS_PATH: &str = "/docs";

/// Swagger UI for the service's own `/openapi.json` at [`DOCS_PATH`] (which
/// redirects to `/docs/`), for anyone, without a token. Its files are built
/// into the binary (utoipa-swagger-ui's `vendored` feature), so the page
/// loads nothing from another host, and the online validator is off. Its
/// "Authorize" button takes a bearer token for trying the data routes.
/// The page is not an API operation: the OpenAPI document does not list it,
/// and the routers merge it outside the route lists [`check_routes`] reads.
pub fn docs<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let config = utoipa_swagger_ui::Config::from("/openapi.json").validator_url("none").try_it_out_enabled(true);
    utoipa_swagger_ui::SwaggerUi::new(DOCS_PATH).config(config).into()
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

/// Checks that `document` has exactly one operation per route, no other,
/// and that the `protected` routes need the bearer token while the `public`
/// ones need none. Returns every mismatch.
pub fn check_routes(
    document: &Value,
    protected: &[(Method, &'static str)],
    public: &[(Method, &'static str)],
) -> Result<(), Vec<String>> {
    const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
    let mut mismatches = Vec::new();
    let mut routed = BTreeSet::new();
    let routes = protected.iter().map(|route| (route, true)).chain(public.iter().map(|route| (route, false)));
    for ((method, path), needs_token) in routes {
        let method = method.as_str().to_ascii_lowercase();
        routed.insert((method.clone(), path.to_string()));
        let Some(operation) = document["paths"][*path].get(&method) else {
            mismatches.push(format!("{} {path} is routed but not in the OpenAPI document", method.to_uppercase()));
            continue;
        };
        let security = operation.get("security").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let bearer = security.iter().any(|requirement| requirement.get(BEARER).is_some());
        if needs_token && !bearer {
            mismatches.push(format!("{} {path} needs a token but its operation names no bearer security", method));
        }
        if !needs_token && !security.is_empty() {
            mismatches.push(format!("{} {path} is public but its operation names security", method));
        }
    }
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        for method in METHODS.iter().filter(|method| item.get(**method).is_some()) {
            if !routed.contains(&(method.to_string(), path.clone())) {
                mismatches.push(format!("{} {path} is in the OpenAPI document but not routed", method.to_uppercase()));
            }
        }
    }
    if mismatches.is_empty() { Ok(()) } else { Err(mismatches) }
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
