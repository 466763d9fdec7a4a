//! The query service: the HTTP API evaluators read. It holds no data of its
//! own and never writes: every answer comes from the projection service,
//! asked over NATS request-reply.

mod dashboard;
mod definitions;
pub mod open_data;
mod openapi;
mod partitions;
mod routes;
mod tables;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use momentum_runtime::http::{HttpParts, HttpService, RequestBounds};

/// Settings of the query service; each flag also reads an environment variable.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "momentum-query", version, about = "momentum query service: trends and listings for evaluators")]
pub struct Config {
    /// NATS server(s) to connect to, comma-separated.
    #[arg(long, env = "MOMENTUM_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// How to authenticate to NATS and whether to use TLS.
    #[command(flatten)]
    pub nats_connection: momentum_bus::NatsConnection,
    /// Address the HTTP API listens on.
    #[arg(long, env = "MOMENTUM_HTTP_ADDR", default_value = "127.0.0.1:8081")]
    pub http_addr: SocketAddr,
    /// How long to wait for the projection service to answer. Reads with
    /// `min_seq` wait up to the projector's own limit (5 s by default) on top,
    /// and while no projector answers (one restarting) they ask again until
    /// this much time has passed.
    #[arg(long, env = "MOMENTUM_QUERY_TIMEOUT_MS", default_value_t = 10_000)]
    pub query_timeout_ms: u64,
    /// The IANA time zone whose calendar names "today" for default date ranges.
    #[arg(long, env = "MOMENTUM_TIMEZONE", default_value = "Europe/London")]
    pub time_zone: chrono_tz::Tz,
    /// Who may read: the auth file, or `MOMENTUM_AUTH=off`.
    #[command(flatten)]
    pub auth: momentum_runtime::auth::AuthSettings,
    /// Evaluators see counts of people from 1 to this minus one as `null`,
    /// so that a published figure cannot single anyone out; 0 (the default)
    /// shows every count. Admin reads are never suppressed.
    #[arg(long, env = "MOMENTUM_SUPPRESS_BELOW", default_value_t = 0)]
    pub suppress_below: u64,
    /// The licence open-data packages (`/v1/movements/{movement}/open-data.zip`) are published under, by its SPDX
    /// id.
    #[arg(long, env = "MOMENTUM_OPEN_DATA_LICENSE", value_enum, default_value = "OGL-UK-3.0")]
    pub open_data_license: open_data::OpenDataLicense,
    /// How many partitions the projectors split the movements into: the `n`
    /// of every projector's `--partition k/n`. Each read is sent to the
    /// partition that owns its movement; listings and status ask them all.
    #[arg(long, env = "MOMENTUM_PARTITIONS", default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(momentum_bus::SLOT_COUNT)))]
    pub partitions: u32,
    /// Log one JSON object per line instead of human-readable text.
    #[arg(long, env = "MOMENTUM_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}

/// How many HTTP requests the query service handles at once; more are
/// answered 503. The projector bounds its own queries separately.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 1024;

/// Why the query service could not start, or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum QueryServiceError {
    /// The NATS client could not be set up or could not connect.
    #[error("could not connect to NATS at {url}: {message}")]
    Connect {
        /// The NATS URL(s), as configured.
        url: String,
        /// The client's error.
        message: String,
    },
    /// The NATS connection settings cannot be used.
    #[error(transparent)]
    NatsSettings(#[from] momentum_bus::BusError),
    /// The auth settings could not be loaded.
    #[error(transparent)]
    Auth(#[from] momentum_runtime::auth::AuthError),
    /// The HTTP API could not listen.
    #[error("could not listen on {address}: {source}")]
    Bind {
        /// The address it was to listen on (`MOMENTUM_HTTP_ADDR`).
        address: SocketAddr,
        /// Why it could not.
        source: std::io::Error,
    },
    /// The HTTP server failed while serving; holds its error.
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
}

pub(crate) struct AppState {
    pub nats: async_nats::Client,
    pub query_timeout: Duration,
    pub time_zone: chrono_tz::Tz,
    pub suppress_below: u64,
    pub open_data_license: open_data::OpenDataLicense,
    /// The `n` of the projectors' partitions (1: one projector folds all).
    pub partitions: u32,
    pub metrics: Arc<QueryMetrics>,
}

/// What query reports to Prometheus at `/metrics`, on top of the shared
/// HTTP and NATS metrics.
pub(crate) struct QueryMetrics {
    pub registry: Arc<momentum_runtime::metrics::Metrics>,
    /// Time the projector took to answer, by query endpoint.
    pub projector_seconds: prometheus_client::metrics::family::Family<
        momentum_runtime::metrics::RouteLabels,
        prometheus_client::metrics::histogram::Histogram,
    >,
}

impl QueryMetrics {
    fn new() -> Arc<QueryMetrics> {
        let registry = momentum_runtime::metrics::Metrics::new();
        let projector_seconds = prometheus_client::metrics::family::Family::<
            momentum_runtime::metrics::RouteLabels,
            prometheus_client::metrics::histogram::Histogram,
        >::new_with_constructor(|| {
            prometheus_client::metrics::histogram::Histogram::new(momentum_runtime::metrics::duration_buckets())
        });
        registry.register(
            "query_projector_duration_seconds",
            "Time the projector took to answer a query, by endpoint",
            projector_seconds.clone(),
        );
        Arc::new(QueryMetrics { registry, projector_seconds })
    }
}

/// A started query service.
pub struct QueryService {
    http: HttpService,
}

impl QueryService {
    /// Loads the auth settings, connects to NATS and binds the HTTP address;
    /// [`QueryService::serve`] then serves.
    pub async fn start(config: &Config) -> Result<QueryService, QueryServiceError> {
        let authenticator = Arc::new(config.auth.load("momentum-query")?);
        let nats = momentum_bus::connect_options("momentum-query", &config.nats_connection)
            .map_err(|error| QueryServiceError::Connect { url: config.nats_url.clone(), message: error.to_string() })?
            .connect(momentum_bus::server_addresses(&config.nats_url)?)
            .await
            .map_err(|error| QueryServiceError::Connect { url: config.nats_url.clone(), message: error.to_string() })?;
        let state = Arc::new(AppState {
            nats: nats.clone(),
            query_timeout: Duration::from_millis(config.query_timeout_ms),
            time_zone: config.time_zone,
            suppress_below: config.suppress_below,
            open_data_license: config.open_data_license,
            partitions: config.partitions,
            metrics: QueryMetrics::new(),
        });
        let metrics = state.metrics.registry.clone();
        // A read asks the projector at most twice (a suppressed comparison
        // of a ratio), each bounded by the query timeout; the events export
        // asks for pages until half the timeout has passed, then for no more.
        let duration_max = 2 * Duration::from_millis(config.query_timeout_ms) + Duration::from_secs(1);
        let http = HttpService::bind(HttpParts {
            name: "query",
            address: config.http_addr,
            api: routes::api(),
            state,
            authenticator,
            nats,
            metrics,
            bounds: RequestBounds { duration_max, requests_in_flight_max: REQUESTS_IN_FLIGHT_MAX },
        })
        .await
        .map_err(|source| QueryServiceError::Bind { address: config.http_addr, source })?;
        Ok(QueryService { http })
    }

    /// The address the HTTP API is bound to, with the port the system chose when 0 was asked for.
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// Serves HTTP until `shutdown` resolves, then drains the NATS connection.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), QueryServiceError> {
        self.http.serve(shutdown).await.map_err(QueryServiceError::Serve)
    }
}

/// Starts the service and serves until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), QueryServiceError> {
    QueryService::start(&config).await?.serve(shutdown).await
}
