//! The query service's HTTP routes, one file per route group; each route
//! is added with the handler that documents it, so the router and the
//! OpenAPI document are made together.
//!
//! - `listings`: the movements and the projection's status;
//! - `trends`, `cohorts`, `principles`, `compare`, `stickiness`: a movement's figures;
//! - `changes`: what moved in a movement's figures since a stream sequence;
//! - `events`: a movement's events for analysts; `open_data`: its open-data package;
//! - `event_status`: what became of a partner's events;
//! - `parameters`: what the reads' query parameters are and how they become
//!   the domain's requests;
//! - `answer`: asking the projector and answering in JSON, CSV or Parquet.

mod answer;
mod changes;
mod cohorts;
mod compare;
mod event_status;
mod events;
mod listings;
mod open_data;
mod parameters;
mod principles;
mod stickiness;
mod trends;

use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use momentum_domain::query::MovementId;
use momentum_runtime::routes::ServiceApi;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

/// Every route of the query service but the shared ones.
pub(crate) fn api() -> ServiceApi<Arc<AppState>> {
    ServiceApi {
        document: crate::openapi::ApiDoc::openapi(),
        protected: OpenApiRouter::new()
            .routes(routes!(listings::movements))
            .routes(routes!(listings::status))
            .routes(routes!(trends::trends))
            .routes(routes!(cohorts::cohorts))
            .routes(routes!(principles::principles))
            .routes(routes!(compare::compare))
            .routes(routes!(stickiness::stickiness))
            .routes(routes!(changes::changes))
            .routes(routes!(events::events))
            .routes(routes!(open_data::open_data))
            .routes(routes!(event_status::event_status))
            .routes(routes!(event_status::event_statuses)),
        pages: crate::dashboard::router(),
        amend_document: |_| {},
        not_found_detail: "/openapi.json describes every route",
    }
}

/// Today in the service's time zone: where a range without `to` ends.
fn today(state: &AppState) -> NaiveDate {
    Utc::now().with_timezone(&state.time_zone).date_naive()
}

/// The `{movement}` of a path, for the document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only described; `MovementPath` reads it
struct MovementParameter {
    /// The movement id.
    movement: MovementId,
}
