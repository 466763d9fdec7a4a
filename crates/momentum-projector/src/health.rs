//! The projector's small HTTP server: `/livez` while the process runs,
//! `/readyz` when it is connected to NATS, answering queries and not too far
//! behind the stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use momentum_runtime::Problem;
use tokio::sync::watch;

#[derive(Clone)]
pub(crate) struct Health {
    nats: async_nats::Client,
    /// Stream messages still to apply, as the server last said.
    pub lag: Arc<AtomicU64>,
    /// Whether the query endpoints are registered (the projector caught up).
    pub serving: Arc<AtomicBool>,
    lag_max: u64,
}

impl Health {
    pub(crate) fn new(nats: async_nats::Client, lag_max: u64) -> Health {
        Health { nats, lag: Arc::default(), serving: Arc::default(), lag_max }
    }
}

pub(crate) async fn serve(listener: tokio::net::TcpListener, health: Health, mut stop: watch::Receiver<bool>) {
    let router =
        axum::Router::new().route("/livez", get(|| async { "ok" })).route("/readyz", get(readyz)).with_state(health);
    let shutdown = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    if let Err(error) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
        tracing::warn!(%error, "the health endpoint failed");
    }
}

async fn readyz(State(health): State<Health>) -> Response {
    let lag = health.lag.load(Ordering::Relaxed);
    if let Some(unready) = momentum_runtime::nats_unready(&health.nats) {
        return unready;
    }
    if !health.serving.load(Ordering::Relaxed) {
        return Problem::unavailable("catching up with the stream before answering queries").into_response();
    }
    if lag > health.lag_max {
        return Problem::unavailable(format!("{lag} events wait to be applied (ready at {} or fewer)", health.lag_max))
            .into_response();
    }
    (StatusCode::OK, "ready").into_response()
}
