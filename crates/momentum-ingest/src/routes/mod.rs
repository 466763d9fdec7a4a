//! The ingestion service's HTTP routes, one file per route group; each
//! route is added with the handler that documents it, so the router and
//! the OpenAPI document are made together.
//!
//! - `events`: posting events;
//! - `erasures`: erasing a participant;
//! - `body`: reading a request body within its bounds.

mod body;
mod erasures;
mod events;

use std::sync::Arc;

use momentum_runtime::routes::ServiceApi;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

/// Every route of the ingestion service but the shared ones.
pub(crate) fn api() -> ServiceApi<Arc<AppState>> {
    ServiceApi {
        document: crate::openapi::ApiDoc::openapi(),
        protected: OpenApiRouter::new().routes(routes!(events::post_events)).routes(routes!(erasures::post_erasure)),
        pages: axum::Router::new(),
        amend_document: crate::openapi::add_event_schemas,
        not_found_detail: "events are posted to POST /v1/events; /openapi.json describes every route",
    }
}
