//! A service's HTTP side, made the same way for every service: its router
//! (the service's routes and the shared ones, with their document), every
//! bound layered on, a bound listener, and serving until shutdown, after
//! which the service's NATS connection is drained so that nothing it
//! acknowledged is cut off.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Authenticator;
use crate::metrics::Metrics;
use crate::routes::ServiceApi;

/// The bounds every request of a service is held to.
#[derive(Clone, Copy, Debug)]
pub struct RequestBounds {
    /// A request not answered within this is answered 503 ([`crate::limit_duration`]).
    pub duration_max: Duration,
    /// Requests beyond this many at once are answered 503 ([`crate::limit_in_flight`]).
    pub requests_in_flight_max: usize,
}

/// What a service serves over HTTP, and with what.
pub struct HttpParts<S> {
    /// The service's name, for its log.
    pub name: &'static str,
    /// Where it listens.
    pub address: SocketAddr,
    /// Its own routes and document.
    pub api: ServiceApi<S>,
    /// The state its handlers read.
    pub state: S,
    /// Who may call its protected routes.
    pub authenticator: Arc<Authenticator>,
    /// The connection its readiness reports and its shutdown drains.
    pub nats: async_nats::Client,
    /// The registry its `/metrics` serves and its requests are counted in.
    pub metrics: Arc<Metrics>,
    /// The bounds of its requests.
    pub bounds: RequestBounds,
}

/// A service's HTTP side, listening and ready to serve.
pub struct HttpService {
    name: &'static str,
    listener: tokio::net::TcpListener,
    router: axum::Router,
    nats: async_nats::Client,
}

impl HttpService {
    /// Builds the router with every layer and binds the listener.
    pub async fn bind<S: Clone + Send + Sync + 'static>(parts: HttpParts<S>) -> Result<HttpService, std::io::Error> {
        let HttpParts { name, address, api, state, authenticator, nats, metrics, bounds } = parts;
        let (router, _document) = crate::routes::router(api, authenticator, nats.clone(), metrics.clone());
        let router = crate::limit_duration(router.with_state(state), bounds.duration_max);
        let router = crate::limit_in_flight(router, bounds.requests_in_flight_max);
        let router = crate::metrics::measure_requests(router, metrics);
        let router = crate::request_id::with_request_ids(router);
        let listener = tokio::net::TcpListener::bind(address).await?;
        Ok(HttpService { name, listener, router, nats })
    }

    /// The address it listens on (the port chosen when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then finishes the requests in
    /// flight and drains the NATS connection.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), std::io::Error> {
        tracing::info!(address = %self.local_addr(), "{} listening", self.name);
        axum::serve(self.listener, self.router).with_graceful_shutdown(shutdown).await?;
        let _ = self.nats.drain().await;
        tracing::info!("{} stopped", self.name);
        Ok(())
    }
}
