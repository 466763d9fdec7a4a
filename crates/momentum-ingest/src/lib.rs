//! The ingestion service: partner systems post CloudEvents over HTTP; each
//! is validated against the schemas and made durable in the JetStream event
//! stream before it is acknowledged.
//!
//! The only publisher of events. An event is answered `accepted` only after
//! JetStream's PubAck, and the message id sent with it is derived from its
//! (`source`, `id`), so a partner may retry anything, any number of times.

mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use momentum_bus::StreamSettings;
use momentum_domain::Validator;

/// Settings of the ingestion service; each flag also reads an environment variable.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "momentum-ingest", version, about = "momentum ingestion service: partners post events here")]
pub struct Config {
    /// NATS server(s) to connect to, comma-separated.
    #[arg(long, env = "MOMENTUM_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Address the HTTP API listens on.
    #[arg(long, env = "MOMENTUM_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// How long to wait for JetStream to acknowledge a publish before answering 503.
    #[arg(long, env = "MOMENTUM_PUBLISH_TIMEOUT_MS", default_value_t = 5000)]
    pub publish_timeout_ms: u64,
    /// How long a client may take to send a request body; a slower upload is
    /// answered 408, so slow clients cannot hold connections and memory forever.
    #[arg(long, env = "MOMENTUM_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    pub body_timeout_ms: u64,
    /// Replicas of the event stream: 1 on one machine, 3 on a cluster.
    #[arg(long, env = "MOMENTUM_STREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,
    /// How long JetStream remembers message ids, within which a repeat is answered `duplicate`.
    #[arg(long, env = "MOMENTUM_DUPLICATE_WINDOW_S", default_value_t = 7200)]
    pub duplicate_window_s: u64,
    /// Log one JSON object per line instead of human-readable text.
    #[arg(long, env = "MOMENTUM_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}

impl Config {
    pub fn stream_settings(&self) -> StreamSettings {
        StreamSettings {
            replicas: self.stream_replicas,
            duplicate_window: Duration::from_secs(self.duplicate_window_s),
        }
    }
}

/// The largest request body: a full batch of large events.
pub const REQUEST_BYTES_MAX: usize = 4 * 1024 * 1024;
/// The most events in one batch request.
pub const BATCH_EVENTS_MAX: usize = 1000;
/// How many HTTP requests ingest handles at once; more are answered 503.
/// With 4 MiB bodies this bounds request memory to about 1 GiB.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 256;
/// How many publishes may await their PubAck at once across all requests;
/// beyond this, publishing waits, so memory stays bounded under a flood.
pub const PUBLISHES_IN_FLIGHT_MAX: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the event schemas do not compile: {0}")]
    Schemas(#[from] momentum_domain::validation::SchemaError),
    #[error("could not connect to NATS at {url}: {message}")]
    Connect { url: String, message: String },
    #[error(transparent)]
    Stream(#[from] momentum_bus::BusError),
    #[error("could not listen on {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
}

pub(crate) struct AppState {
    pub validator: Validator,
    pub nats: async_nats::Client,
    pub jetstream: async_nats::jetstream::Context,
    pub publish_timeout: Duration,
    pub body_timeout: Duration,
}

/// A started ingestion service.
pub struct Ingest {
    listener: tokio::net::TcpListener,
    router: axum::Router,
    nats: async_nats::Client,
}

impl Ingest {
    /// Compiles the schemas, connects to NATS, makes sure the stream exists
    /// and binds the HTTP listener; serving starts with [`Ingest::serve`].
    pub async fn start(config: &Config) -> Result<Ingest, IngestError> {
        let validator = Validator::new()?;
        let nats = momentum_bus::connect_options("momentum-ingest")
            .connect(config.nats_url.as_str())
            .await
            .map_err(|error| IngestError::Connect { url: config.nats_url.clone(), message: error.to_string() })?;
        let publish_timeout = Duration::from_millis(config.publish_timeout_ms);
        let jetstream = async_nats::jetstream::ContextBuilder::new()
            .timeout(publish_timeout)
            .ack_timeout(publish_timeout)
            .max_ack_inflight(PUBLISHES_IN_FLIGHT_MAX)
            .backpressure_on_inflight(true)
            .build(nats.clone());
        momentum_bus::ensure_stream(&jetstream, &config.stream_settings()).await?;
        let listener = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| IngestError::Bind { address: config.http_addr, source })?;
        let body_timeout = Duration::from_millis(config.body_timeout_ms);
        let state = Arc::new(AppState { validator, nats: nats.clone(), jetstream, publish_timeout, body_timeout });
        let router = momentum_runtime::limit_in_flight(routes::router(state), REQUESTS_IN_FLIGHT_MAX);
        Ok(Ingest { listener, router, nats })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests
    /// and drains the NATS connection so no acknowledged publish is cut off.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), IngestError> {
        tracing::info!(address = %self.local_addr(), "ingest listening");
        axum::serve(self.listener, self.router).with_graceful_shutdown(shutdown).await.map_err(IngestError::Serve)?;
        let _ = self.nats.drain().await;
        tracing::info!("ingest stopped");
        Ok(())
    }
}

/// Starts the service and serves until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), IngestError> {
    Ingest::start(&config).await?.serve(shutdown).await
}
