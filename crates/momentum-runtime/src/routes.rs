//! The routes every service serves (liveness, readiness, metrics, its
//! OpenAPI document and the Swagger UI on it), and the one way a service's
//! router and document are made: from `OpenApiRouter`s, so that every route
//! is documented by the handler that serves it and nothing is listed twice.
//!
//! Routes that need a token are given the bearer requirement and the 401
//! answer in the document here, where the token check is layered on them.

use std::sync::Arc;

use axum::extract::Extension;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{OpenApi, RefOr};
use utoipa::{Modify, ToResponse};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Authenticator;
use crate::metrics::Metrics;
use crate::openapi::{BEARER, BearerSecurity};
use crate::problem::{Problem, ProblemField, method_not_allowed};

/// What a service serves besides the shared routes.
pub struct ServiceApi<S> {
    /// The document's info, tags and the schemas its handlers name.
    pub document: OpenApi,
    /// The API operations that need a bearer token.
    pub protected: OpenApiRouter<S>,
    /// Pages anyone may load that are not API operations (the dashboard):
    /// outside the document.
    pub pages: axum::Router<S>,
    /// What a 404 says, after "no such resource".
    pub not_found_detail: &'static str,
    /// Adds to the document what its types cannot say (the event schemas
    /// of `schemas/`, in ingest's).
    pub amend_document: fn(&mut Value),
}

/// What a service checks for readiness besides its NATS connection: the
/// answer to give while it is not ready, or `None` when it is.
pub type Readiness = Arc<dyn Fn() -> Option<Response> + Send + Sync>;

/// What the shared routes read, handed to them as an extension.
#[derive(Clone)]
struct Shared {
    nats: async_nats::Client,
    metrics: Arc<Metrics>,
    document: Arc<Value>,
    readiness: Readiness,
}

/// The service's router, ready for its state, and its OpenAPI document.
pub fn router<S: Clone + Send + Sync + 'static>(
    api: ServiceApi<S>,
    authenticator: Arc<Authenticator>,
    nats: async_nats::Client,
    metrics: Arc<Metrics>,
) -> (axum::Router<S>, Arc<Value>) {
    let ServiceApi { document, protected, pages, not_found_detail, amend_document } = api;
    let (protected, public, document) = split(document, protected);
    let mut document = serde_json::to_value(&document).expect("an OpenAPI document serialises");
    amend_document(&mut document);
    let document = Arc::new(document);
    let shared = Shared { nats, metrics, document: document.clone(), readiness: Arc::new(|| None) };
    let router = axum::Router::new()
        .merge(crate::auth::protect(protected, authenticator))
        .merge(public)
        .merge(docs())
        .merge(pages)
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(move || async move {
            Problem::new(StatusCode::NOT_FOUND, "not-found", "no such resource").detail(not_found_detail)
        })
        .layer(Extension(shared));
    (router, document)
}

/// The probes of a service without an API of its own (the projector):
/// `/livez`, `/readyz` (connected to NATS, and `readiness` says ready) and
/// `/metrics`, the same handlers every service serves.
pub fn probes(nats: async_nats::Client, registry: Arc<Metrics>, readiness: Readiness) -> axum::Router {
    let shared = Shared { nats, metrics: registry, document: Arc::new(Value::Null), readiness };
    axum::Router::new()
        .route("/livez", axum::routing::get(livez))
        .route("/readyz", axum::routing::get(readyz))
        .route("/metrics", axum::routing::get(metrics))
        .layer(Extension(shared))
}

/// The document of a service, as its router serves it at `/openapi.json`.
pub fn document<S: Clone + Send + Sync + 'static>(api: ServiceApi<S>) -> Value {
    let (_, _, document) = split(api.document, api.protected);
    let mut document = serde_json::to_value(&document).expect("an OpenAPI document serialises");
    (api.amend_document)(&mut document);
    document
}

/// The protected routes and the public ones, and the document of both.
fn split<S: Clone + Send + Sync + 'static>(
    document: OpenApi,
    protected: OpenApiRouter<S>,
) -> (axum::Router<S>, axum::Router<S>, OpenApi) {
    let (protected, mut protected_document) = protected.split_for_parts();
    for item in protected_document.paths.paths.values_mut() {
        for operation in operations(item) {
            needs_token(operation);
        }
    }
    let (public, public_document) = OpenApiRouter::new()
        .routes(routes!(livez))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .split_for_parts();
    let mut document = document.merge_from(protected_document).merge_from(public_document);
    // Every error answer is a problem; the shared answers name its schema.
    let components = document.components.get_or_insert_with(Default::default);
    for (name, schema) in [
        (<Problem as utoipa::ToSchema>::name(), <Problem as utoipa::PartialSchema>::schema()),
        (<ProblemField as utoipa::ToSchema>::name(), <ProblemField as utoipa::PartialSchema>::schema()),
    ] {
        components.schemas.insert(name.into_owned(), schema);
    }
    BearerSecurity.modify(&mut document);
    (protected, public, document)
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// Gives an operation the bearer requirement and the 401 answer.
fn needs_token(operation: &mut Operation) {
    operation.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    let (_, unauthorized) = Unauthorized::response();
    operation.responses.responses.entry("401".to_owned()).or_insert(unauthorized);
    // Keep the answers in status order, as a reader scans them.
    let mut answers: Vec<(String, RefOr<utoipa::openapi::Response>)> =
        std::mem::take(&mut operation.responses.responses).into_iter().collect();
    answers.sort_by(|(left, _), (right, _)| left.cmp(right));
    operation.responses.responses = answers.into_iter().collect();
}

/// Swagger UI for the service's own `/openapi.json` at [`DOCS_PATH`]
/// (which redirects to `/docs/`), for anyone, without a token. Its files
/// are built into the binary (utoipa-swagger-ui's `vendored` feature), so
/// the page loads nothing from another host, and the online validator is
/// off. Its "Authorize" button takes a bearer token for trying the data
/// routes. The page is not an API operation: the document does not list it.
fn docs<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    let config = utoipa_swagger_ui::Config::from("/openapi.json").validator_url("none").try_it_out_enabled(true);
    utoipa_swagger_ui::SwaggerUi::new(DOCS_PATH).config(config).into()
}

/// Where each service serves its interactive API documents.
pub const DOCS_PATH: &str = "/docs";

#[utoipa::path(
    get, path = "/livez", tag = "health",
    summary = "Liveness",
    description = "Answers while the process serves HTTP.",
    responses(
        (status = 200, description = "Alive.", body = String, content_type = "text/plain", example = "ok"),
        (status = 503, response = inline(Busy)),
    ),
)]
async fn livez() -> &'static str {
    "ok"
}

#[utoipa::path(
    get, path = "/readyz", tag = "health",
    summary = "Readiness",
    description = "Ready while connected to NATS.",
    responses(
        (status = 200, description = "Ready.", body = String, content_type = "text/plain", example = "ready"),
        (status = 503, response = inline(NotReady)),
    ),
)]
async fn readyz(Extension(shared): Extension<Shared>) -> Response {
    let unready = crate::nats_unready(&shared.nats).or_else(|| (shared.readiness)());
    shared.metrics.set_ready(unready.is_none());
    unready.unwrap_or_else(|| (StatusCode::OK, "ready").into_response())
}

#[utoipa::path(
    get, path = "/metrics", tag = "health",
    summary = "Prometheus metrics",
    description = "Requests by route and status, the NATS connection state and the service's own measures (see \
        docs/runbook.md), in the OpenMetrics text format.",
    responses(
        (status = 200, description = "The metrics.", body = String,
         content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 503, response = inline(Busy)),
    ),
)]
async fn metrics(Extension(shared): Extension<Shared>) -> Response {
    crate::metrics::metrics_response(&shared.metrics, Some(&shared.nats))
}

#[utoipa::path(
    get, path = "/openapi.json", tag = "health",
    summary = "This document",
    description = "The OpenAPI 3.1 document of this service.",
    responses(
        (status = 200, description = "The document.", body = Object, content_type = "application/json"),
        (status = 503, response = inline(Busy)),
    ),
)]
async fn openapi_json(Extension(shared): Extension<Shared>) -> Response {
    crate::json_response(StatusCode::OK, &*shared.document)
}

fn unauthorized() -> Problem {
    let authenticator = Authenticator::from_toml("").expect("an empty auth file is valid");
    let request = axum::http::Request::new(axum::body::Body::empty());
    authenticator.authenticate(&request).expect_err("a request without a token is refused")
}

crate::problem_responses! {
    /// No token, or an unknown one: every protected route may answer it.
    Unauthorized => ("No token, or one the service does not know.", [unauthorized()]);
    NotReady => ("Not connected to NATS, or at the bound of requests in flight.", [
        Problem::unavailable("the event store cannot be reached; it is safe to retry"),
    ]);
    /// What a service at its bound of requests in flight answers, on any route.
    Busy => ("The service is at its bound of requests in flight.", [crate::busy()]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone)]
    struct State;

    #[utoipa::path(get, path = "/v1/secret", tag = "reads", responses((status = 200, description = "A secret.")))]
    async fn secret() -> &'static str {
        "secret"
    }

    fn api() -> ServiceApi<State> {
        ServiceApi {
            document: OpenApi::default(),
            protected: OpenApiRouter::new().routes(routes!(secret)),
            pages: axum::Router::new(),
            not_found_detail: "nothing here",
            amend_document: |_| {},
        }
    }

    #[test]
    fn protected_operations_need_the_token_and_shared_ones_none() {
        let document = document(api());
        let secret = &document["paths"]["/v1/secret"]["get"];
        assert_eq!(secret["security"], serde_json::json!([{ BEARER: [] }]));
        assert_eq!(
            secret["responses"]["401"]["content"]["application/problem+json"]["schema"]["$ref"],
            "#/components/schemas/Problem"
        );
        for path in ["/livez", "/readyz", "/metrics", "/openapi.json"] {
            let operation = &document["paths"][path]["get"];
            assert!(operation.is_object(), "{path} is documented");
            assert!(operation.get("security").is_none(), "{path} needs no token");
        }
        assert!(document["components"]["securitySchemes"][BEARER].is_object());
        assert_eq!(crate::openapi::unresolved_references(&document), Vec::<String>::new());
    }
}
