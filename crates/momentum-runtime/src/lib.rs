//! Plumbing the three services share, kept out of their business code:
//! logging set-up, the shutdown signal, RFC 9457 problem responses and
//! bearer-token authentication.

pub mod auth;
pub mod config;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod parameters;
pub mod problem;
pub mod request_id;
pub mod routes;

pub use parameters::{NoParameters, Parameters};
pub use problem::{Problem, ProblemField};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use momentum_domain::query::MovementId;
use serde::Serialize;

/// Sets up `tracing` output: human-readable by default, one JSON object a
/// line with `json`. The level comes from `RUST_LOG` (default `info`).
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, not in log files.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(colour);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what container runtimes send).
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received");
}

/// The part of readiness every service shares: a connection to NATS.
/// `None` when connected, else the 503 to answer.
pub fn nats_unready(nats: &async_nats::Client) -> Option<Response> {
    match nats.connection_state() {
        async_nats::connection::State::Connected => None,
        other => {
            // The state is for the operator's log; the client learns only
            // that it may retry.
            tracing::warn!(state = ?other, "answering 503: NATS is not connected");
            Some(Problem::unavailable("the event store cannot be reached; it is safe to retry").into_response())
        }
    }
}

/// Bounds how many requests a service handles at once. A request beyond
/// the bound is answered at once with 503 and `Retry-After` instead of
/// queueing without limit, so a flood cannot exhaust memory.
pub fn limit_in_flight(router: axum::Router, requests_in_flight_max: usize) -> axum::Router {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(requests_in_flight_max));
    router.layer(axum::middleware::from_fn(move |request: axum::extract::Request, next: axum::middleware::Next| {
        let permits = permits.clone();
        async move {
            match permits.try_acquire_owned() {
                Ok(_permit) => next.run(request).await,
                Err(_) => busy().into_response(),
            }
        }
    }))
}

/// The answer of a service at its bound of requests in flight.
pub fn busy() -> Problem {
    Problem::unavailable("the service is handling its maximum number of requests; retry shortly")
}

/// Gives every request a deadline: one that has not been answered within
/// `duration_max` is answered 503 (safe to retry) and its work is dropped,
/// so no client waits on a stuck dependency forever.
pub fn limit_duration(router: axum::Router, duration_max: std::time::Duration) -> axum::Router {
    router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| async move {
            match tokio::time::timeout(duration_max, next.run(request)).await {
                Ok(response) => response,
                Err(_) => Problem::unavailable(format!(
                    "the request was not answered within {} ms; it is safe to retry",
                    duration_max.as_millis()
                ))
                .into_response(),
            }
        },
    ))
}

/// The `{movement}` segment of a path, a movement id. Anything else, a
/// segment that is not text (say `%FF`) included, is a 400 problem naming
/// `movement` rather than the framework's plain-text rejection.
pub struct MovementPath(pub MovementId);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for MovementPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(movement)) => MovementId::try_from(movement)
                .map(MovementPath)
                .map_err(|error| Problem::bad_parameter("movement", error.to_string())),
            Err(rejection) => Err(Problem::bad_parameter("movement", rejection.body_text())),
        }
    }
}

/// JSON with an explicit status, for successful answers.
pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = (status, body).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(error) => {
            tracing::error!(%error, "could not serialise a response");
            Problem::internal().into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn requests_beyond_the_in_flight_bound_are_answered_503_at_once() {
        let release = std::sync::Arc::new(tokio::sync::Notify::new());
        let held = release.clone();
        let router = axum::Router::new().route(
            "/slow",
            axum::routing::get(move || {
                let held = held.clone();
                async move {
                    held.notified().await;
                    "done"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/slow", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, limit_in_flight(router, 1)).await });
        let client = reqwest::Client::new();
        let first = tokio::spawn(client.get(&url).send());
        // Let the first request take the only slot.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let second = client.get(&url).send().await.unwrap();
        assert_eq!(second.status(), 503);
        assert!(second.headers().contains_key("retry-after"));
        release.notify_one();
        assert_eq!(first.await.unwrap().unwrap().status(), 200);
    }
}
