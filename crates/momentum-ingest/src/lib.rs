//! The ingestion service: partner systems post CloudEvents over HTTP; each
//! is validated against the schemas and made durable in the JetStream event
//! stream before it is acknowledged.
//!
//! In a deployment, the only publisher of events. An event is answered
//! `accepted` only after JetStream's PubAck, and the message id sent with it
//! is derived from its movement, `source` and `id`, so a partner may retry
//! anything, any number of times.

mod metrics;
mod openapi;
mod pseudonym;
mod rate_limit;
mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use momentum_bus::StreamSettings;
use momentum_domain::Validator;
use momentum_runtime::http::{HttpParts, HttpService, RequestBounds};

/// Settings of the ingestion service; each flag also reads an environment variable.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "momentum-ingest", version, about = "momentum ingestion service: partners post events here")]
pub struct Config {
    /// NATS server(s) to connect to, comma-separated.
    #[arg(long, env = "MOMENTUM_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// How to authenticate to NATS and whether to use TLS.
    #[command(flatten)]
    pub nats_connection: momentum_bus::NatsConnection,
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
    /// Who may post and read: the auth file, or `MOMENTUM_AUTH=off`.
    #[command(flatten)]
    pub auth: momentum_runtime::auth::AuthSettings,
    /// The TOML file of versioned secret keys participant refs are
    /// pseudonymised with. Required: raw refs never reach the stream.
    #[arg(long, env = "MOMENTUM_PSEUDONYM_KEY_FILE")]
    pub pseudonym_key_file: Option<PathBuf>,
    /// Events each token may post per second, on average.
    #[arg(long, env = "MOMENTUM_RATE_EVENTS_PER_S", default_value_t = 5000)]
    pub rate_events_per_s: u32,
    /// Events each token may post at once before the average applies; at
    /// least a full batch.
    #[arg(long, env = "MOMENTUM_RATE_BURST_EVENTS", default_value_t = 20_000)]
    pub rate_burst_events: u32,
    /// Log one JSON object per line instead of human-readable text.
    #[arg(long, env = "MOMENTUM_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}

impl Config {
    /// The event stream settings these flags ask for: its replicas and its duplicate window.
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
/// With 4 MiB bodies this bounds the bodies read to 1 GiB.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 256;
/// How many body bytes ingest parses, checks and publishes at once: two of
/// the largest batches. Parsed, a body takes several times its text (a
/// value per one-character ref), and its pseudonyms as much again,
/// so parsing every body in flight at once could take tens of GiB; beyond
/// this bound a request waits, within its time limit, for others to finish.
pub const BODY_BYTES_IN_PROCESS_MAX: usize = 2 * REQUEST_BYTES_MAX;
const _: () = assert!(REQUEST_BYTES_MAX <= BODY_BYTES_IN_PROCESS_MAX, "the largest body must fit in the budget");
/// How many publishes may await their PubAck at once across all requests;
/// beyond this, publishing waits, so memory stays bounded under a flood.
/// A request takes the permits for all of its events before it sends the
/// first (see `publish_all` in `routes::events`), so a batch never holds some while it
/// waits for others.
pub const PUBLISHES_IN_FLIGHT_MAX: usize = 4096;
const _: () = assert!(BATCH_EVENTS_MAX <= PUBLISHES_IN_FLIGHT_MAX, "a full batch must fit in the publishes in flight");

/// Why the ingestion service could not start, or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The event schemas built into the service do not compile.
    #[error("the event schemas do not compile: {0}")]
    Schemas(#[from] momentum_domain::validation::SchemaError),
    /// The first connection to NATS failed.
    #[error("could not connect to NATS at {url}: {message}")]
    Connect {
        /// The NATS URL(s) as configured.
        url: String,
        /// The client's reason.
        message: String,
    },
    /// The NATS connection settings could not be used, or the event stream could not be created or is not as
    /// expected.
    #[error(transparent)]
    Stream(#[from] momentum_bus::BusError),
    /// The auth file is missing, unreadable or not valid.
    #[error(transparent)]
    Auth(#[from] momentum_runtime::auth::AuthError),
    /// The pseudonym key file is missing, unreadable or not valid.
    #[error(transparent)]
    PseudonymKeys(#[from] pseudonym::KeyFileError),
    /// The bucket of pseudonym salts could not be opened or created.
    #[error(transparent)]
    SaltsBucket(#[from] momentum_bus::SaltsBucketError),
    /// The rate is 0, or the burst is smaller than a full batch ([`BATCH_EVENTS_MAX`] events).
    #[error("MOMENTUM_RATE_EVENTS_PER_S must be above 0 and MOMENTUM_RATE_BURST_EVENTS at least {BATCH_EVENTS_MAX}")]
    RateLimits,
    /// The HTTP listener could not be bound.
    #[error("could not listen on {address}: {source}")]
    Bind {
        /// The address asked for (`MOMENTUM_HTTP_ADDR`).
        address: SocketAddr,
        /// Why it could not be bound.
        source: std::io::Error,
    },
    /// The HTTP server failed while serving.
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
}

pub(crate) struct AppState {
    pub validator: Validator,
    pub nats: async_nats::Client,
    pub jetstream: async_nats::jetstream::Context,
    /// One permit for each KiB of [`BODY_BYTES_IN_PROCESS_MAX`].
    pub body_kibibytes: tokio::sync::Semaphore,
    /// One permit for each of [`PUBLISHES_IN_FLIGHT_MAX`] publishes.
    pub publish_permits: tokio::sync::Semaphore,
    pub publish_timeout: Duration,
    pub body_timeout: Duration,
    pub pseudonymiser: Arc<pseudonym::Pseudonymiser>,
    pub rate_limiter: rate_limit::RateLimiter,
    pub metrics: Arc<metrics::IngestMetrics>,
}

/// A started ingestion service.
pub struct Ingest {
    http: HttpService,
}

impl Ingest {
    /// Compiles the schemas, connects to NATS, makes sure the stream exists
    /// and binds the HTTP listener; serving starts with [`Ingest::serve`].
    pub async fn start(config: &Config) -> Result<Ingest, IngestError> {
        let validator = Validator::new()?;
        let authenticator = Arc::new(config.auth.load("momentum-ingest")?);
        let keys = pseudonym::KeyRing::load(config.pseudonym_key_file.as_deref())?;
        if config.rate_events_per_s == 0 || (config.rate_burst_events as usize) < BATCH_EVENTS_MAX {
            return Err(IngestError::RateLimits);
        }
        let nats = momentum_bus::connect_options("momentum-ingest", &config.nats_connection)?
            .connect(momentum_bus::server_addresses(&config.nats_url)?)
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
        let salts = momentum_bus::ensure_salts_bucket(&jetstream, config.stream_replicas).await?;
        let body_timeout = Duration::from_millis(config.body_timeout_ms);
        let state = Arc::new(AppState {
            validator,
            nats: nats.clone(),
            jetstream,
            body_kibibytes: tokio::sync::Semaphore::new(BODY_BYTES_IN_PROCESS_MAX / 1024),
            publish_permits: tokio::sync::Semaphore::new(PUBLISHES_IN_FLIGHT_MAX),
            publish_timeout,
            body_timeout,
            pseudonymiser: pseudonym::Pseudonymiser::new(keys, salts),
            rate_limiter: rate_limit::RateLimiter::new(config.rate_events_per_s, config.rate_burst_events),
            metrics: metrics::IngestMetrics::new(),
        });
        let metrics = state.metrics.registry.clone();
        // The body, the salt lookups and the publish each have their own
        // bound; the request as a whole is bounded by their sum.
        let duration_max = body_timeout + 2 * publish_timeout + Duration::from_secs(1);
        let http = HttpService::bind(HttpParts {
            name: "ingest",
            address: config.http_addr,
            api: routes::api(),
            state,
            authenticator,
            nats,
            metrics,
            bounds: RequestBounds { duration_max, requests_in_flight_max: REQUESTS_IN_FLIGHT_MAX },
        })
        .await
        .map_err(|source| IngestError::Bind { address: config.http_addr, source })?;
        Ok(Ingest { http })
    }

    /// The address the HTTP listener is bound to: the one configured, with the actual port when it was 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests
    /// and drains the NATS connection so no acknowledged publish is cut off.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), IngestError> {
        self.http.serve(shutdown).await.map_err(IngestError::Serve)
    }
}

/// Starts the service and serves until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), IngestError> {
    Ingest::start(&config).await?.serve(shutdown).await
}
