//! The projection service: folds the event stream into projections held in
//! memory, checkpointed to sled, and answers queries about them over NATS.
//!
//! It loads its projection from sled and reads the stream with an ordered
//! consumer starting at the projection's watermark + 1, so correctness
//! never depends on consumer state kept by the server. Events are folded in
//! batches; every second or so a checkpoint (the records changed, with the
//! watermark) reaches sled in one atomic write.
//!
//! A projector may fold one partition of the movements (`--partition k/n`):
//! it then reads only those movements' subjects and answers queries under
//! its partition's subjects; see [`momentum_bus::Partition`].

mod checkpoint;
mod consume;
mod coverage;
mod health;
mod serve;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use momentum_bus::Partition;
use momentum_domain::ledger::FoldSettings;
use momentum_domain::query::{HourValueBasis, ReadSettings, VolunteerHourValue};
use momentum_store::{Store, StoreMemory};
use tokio::sync::watch;

/// Settings of the projection service; each flag also reads an environment variable.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "momentum-projector", version, about = "momentum projection service: folds events into projections")]
pub struct Config {
    /// NATS server(s) to connect to, comma-separated.
    #[arg(long, env = "MOMENTUM_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// How to authenticate to NATS and whether to use TLS.
    #[command(flatten)]
    pub nats_connection: momentum_bus::NatsConnection,
    /// Folder of the sled store holding the projections.
    #[arg(long, env = "MOMENTUM_DATA_DIR", default_value = "data/projector")]
    pub data_dir: PathBuf,
    /// The IANA time zone whose calendar decides an event's day, week and month.
    #[arg(long, env = "MOMENTUM_TIMEZONE", default_value = "Europe/London")]
    pub time_zone: chrono_tz::Tz,
    /// The bound of the store's page cache in MiB (sled's own memory grows
    /// a little beyond it with the size of the store).
    #[arg(long, env = "MOMENTUM_STORE_CACHE_MIB", default_value_t = momentum_store::CACHE_BYTES_DEFAULT / 1024 / 1024)]
    pub store_cache_mib: u64,
    /// The most events applied in one atomic batch.
    #[arg(long, env = "MOMENTUM_BATCH_SIZE_MAX", default_value_t = 1000)]
    pub batch_size_max: usize,
    /// The longest a query with `min_seq` waits for the projection to catch up.
    #[arg(long, env = "MOMENTUM_QUERY_WAIT_MS_MAX", default_value_t = 5000)]
    pub query_wait_ms_max: u64,
    /// The value of one volunteer hour in pounds, for `social_value_gbp`,
    /// when none of the named bases fits (`--volunteer-hour-basis` names
    /// one; set one of the two); see docs/metrics.md.
    #[arg(long, env = "MOMENTUM_VOLUNTEER_HOUR_VALUE_GBP")]
    pub volunteer_hour_value_gbp: Option<f64>,
    /// The named basis of the value of a volunteer hour:
    /// `ashe_median_2024` (£18.64, the default) or
    /// `ons_replacement_cost_2012_13` (£11.27); see docs/metrics.md.
    #[arg(long, env = "MOMENTUM_VOLUNTEER_HOUR_BASIS")]
    pub volunteer_hour_basis: Option<String>,
    /// The share of the movements this projector folds and answers for,
    /// `k/n`: partition k (from 0) of n. The default folds everything.
    /// Replicas of one partition share its queries; every partition of n
    /// must run, and query must be started with `--partitions n`.
    #[arg(long, env = "MOMENTUM_PARTITION", default_value = "0/1")]
    pub partition: Partition,
    /// Address of the small HTTP server for `/livez` and `/readyz`.
    #[arg(long, env = "MOMENTUM_HTTP_ADDR", default_value = "127.0.0.1:8082")]
    pub http_addr: std::net::SocketAddr,
    /// `/readyz` answers 503 while more than this many stream messages wait
    /// to be applied.
    #[arg(long, env = "MOMENTUM_READY_LAG_MAX", default_value_t = 10_000)]
    pub ready_lag_max: u64,
    /// Log one JSON object per line instead of human-readable text.
    #[arg(long, env = "MOMENTUM_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}

/// The most queries handled at once; more are answered 503 at once, so a
/// flood of slow `min_seq` reads cannot queue without bound. Most of them
/// wait for a sequence rather than work: a client posting 1 000 events a
/// second and reading each back (the benchmark's freshness stage) has
/// about a thousand waiting while the fold stops for a second, say to take
/// a large checkpoint. A waiting query holds a task and its request, a few
/// KiB.
pub const READS_IN_FLIGHT_MAX: usize = 1024;

/// Why the projection service could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// The sled store failed, holds records this projector cannot use, or was built with other settings.
    #[error(transparent)]
    Store(#[from] momentum_store::StoreError),
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
    /// The query endpoints could not be registered, or did not answer a probe; holds the reason.
    #[error("could not start the query service: {0}")]
    Service(String),
    /// The most events applied in one batch (`MOMENTUM_BATCH_SIZE_MAX`) is set to 0.
    #[error("the batch size must be at least 1")]
    BatchSizeZero,
    /// The volunteer hour value is negative or not a finite number; holds the value given.
    #[error("the volunteer hour value must be a number of pounds of 0 or more, got {0}")]
    HourValueInvalid(f64),
    /// The volunteer hour basis names none of the named bases; holds the name given.
    #[error("the volunteer hour basis must be ashe_median_2024 or ons_replacement_cost_2012_13, got {0:?}")]
    HourBasisUnknown(String),
    /// Both a volunteer hour value and a basis were given.
    #[error(
        "set MOMENTUM_VOLUNTEER_HOUR_VALUE_GBP (a value of your own) or MOMENTUM_VOLUNTEER_HOUR_BASIS (a named \
         basis), not both"
    )]
    HourValueAndBasis,
    /// The event stream's state could not be read from JetStream; holds the client's error.
    #[error("could not read the event stream's state: {0}")]
    Stream(String),
    /// The store has folded events past the end of the stream, so it was built from another stream.
    #[error(
        "the store has applied events up to sequence {watermark} but the stream ends at {last_sequence}: \
         it was built from another stream; rebuild it into an empty data folder"
    )]
    StoreAheadOfStream {
        /// The stream sequence of the last event the store has folded.
        watermark: u64,
        /// The stream's last sequence at start.
        last_sequence: u64,
    },
    /// A partitioned projector found events on subjects without a slot, written before
    /// partitioning; holds such a subject.
    #[error(
        "the event stream holds events on subjects without a slot ({0}, written by momentum before partitioning); \
         a partitioned projector would never see them, so fold this stream unpartitioned (--partition 0/1)"
    )]
    SlotlessEvents(String),
    /// The event stream's consumer, or the checkpoint writer, stopped; holds why.
    #[error("the event consumer stopped: {0}")]
    ConsumerFailed(String),
    /// A stream message is not an event this projector can read, or is not on its event's subject;
    /// the projector stops rather than skip it.
    #[error(
        "stream message {sequence} is not an event this projector can read ({reason}); if a newer ingest wrote \
         it, upgrade the projector; if not, see 'An event the projector cannot read' in docs/runbook.md"
    )]
    UnreadableEvent {
        /// The message's stream sequence.
        sequence: u64,
        /// Why it cannot be folded.
        reason: String,
    },
    /// The HTTP server for `/livez` and `/readyz` could not listen.
    #[error("could not listen on {address}: {source}")]
    Bind {
        /// The address it was to listen on (`MOMENTUM_HTTP_ADDR`).
        address: std::net::SocketAddr,
        /// Why it could not.
        source: std::io::Error,
    },
}

/// A started projection service.
pub struct Projector {
    config: Config,
    store: Store,
    ledger: consume::SharedLedger,
    nats: async_nats::Client,
    watermark: watch::Sender<u64>,
    applied: Arc<AtomicU64>,
    /// Counts (re)connections to NATS: the consumer reopens on each, since a
    /// restarted server has forgotten the old one's pull requests.
    connections: watch::Receiver<u64>,
    /// Answering queries, once caught up with the stream as it was at start.
    service: Option<serve::Running>,
    serve: ServeSettings,
    serve_from: u64,
    coverage: coverage::Coverage,
    health: health::Health,
    http: tokio::net::TcpListener,
}

/// What answering queries needs, kept until the projector has caught up.
struct ServeSettings {
    ledger: consume::SharedLedger,
    /// Time each read spends computing its answer.
    read_seconds: prometheus_client::metrics::histogram::Histogram,
    partition: Partition,
    wait_max: Duration,
    applied: Arc<AtomicU64>,
    read_settings: ReadSettings,
    /// What the fold files events by: the export finds an event's fact by its local date.
    fold_settings: FoldSettings,
}

impl ServeSettings {
    /// Registers the query endpoints and returns once the server routes
    /// queries to them.
    async fn start(
        &self,
        nats: &async_nats::Client,
        coverage: coverage::Coverage,
    ) -> Result<serve::Running, ProjectorError> {
        let service = serve::start(nats, self, coverage).await?;
        // A request to our own status endpoint, on the same connection as
        // the subscriptions, returns only after the server has processed
        // them.
        let probe = nats.request(self.partition.read_subject::<momentum_bus::protocol::StatusRequest>(), "{}".into());
        tokio::time::timeout(Duration::from_secs(10), probe)
            .await
            .map_err(|_| ProjectorError::Service("the query endpoints did not answer a probe".to_owned()))?
            .map_err(|error| ProjectorError::Service(error.to_string()))?;
        Ok(service)
    }
}

/// What the projector knows of the event stream at start.
struct StreamState {
    last_sequence: u64,
    /// When the stream was created: it tells one stream from another of the
    /// same name, so a store is never folded on top of a different stream.
    created: Option<String>,
}

/// How often a catching-up projector asks the server whether it has caught
/// up (its watermark reaching the stream's last sequence at start ends the
/// wait at once).
const CATCH_UP_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Refuses a stream that holds events published before subjects carried a
/// slot: a partitioned projector's filters would silently skip them.
async fn check_every_event_has_a_slot(nats: &async_nats::Client) -> Result<(), ProjectorError> {
    use futures::StreamExt;
    let jetstream = async_nats::jetstream::new(nats.clone());
    let stream = jetstream
        .get_stream(momentum_bus::STREAM_NAME)
        .await
        .map_err(|error| ProjectorError::Stream(error.to_string()))?;
    let mut subjects = stream
        .info_with_subjects(momentum_bus::SLOTLESS_EVENTS_FILTER)
        .await
        .map_err(|error| ProjectorError::Stream(error.to_string()))?;
    match subjects.next().await {
        None => Ok(()),
        Some(Ok((subject, _count))) => Err(ProjectorError::SlotlessEvents(subject)),
        Some(Err(error)) => Err(ProjectorError::Stream(error.to_string())),
    }
}

/// How many times, a second apart, the stream's state is asked for at start
/// before giving up (a JetStream leader election takes a few seconds).
const STREAM_STATE_TRIES_MAX: u32 = 30;

/// The stream's state now. Only "no such stream" counts as empty; any other
/// failure is retried, because guessing would let a rebuilding replica serve
/// partial figures.
async fn stream_state(nats: &async_nats::Client) -> Result<StreamState, ProjectorError> {
    use async_nats::jetstream::{ErrorCode, context::GetStreamErrorKind};
    let jetstream = async_nats::jetstream::new(nats.clone());
    let mut failure = String::new();
    for _ in 0..STREAM_STATE_TRIES_MAX {
        match jetstream.get_stream(momentum_bus::STREAM_NAME).await {
            Ok(mut stream) => match stream.info().await {
                Ok(info) => {
                    return Ok(StreamState {
                        last_sequence: info.state.last_sequence,
                        created: Some(info.created.unix_timestamp_nanos().to_string()),
                    });
                }
                Err(error) => failure = error.to_string(),
            },
            Err(error)
                if matches!(error.kind(), GetStreamErrorKind::JetStream(inner)
                if inner.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
            {
                return Ok(StreamState { last_sequence: 0, created: None });
            }
            Err(error) => failure = error.to_string(),
        }
        tracing::warn!(error = failure, "cannot read the event stream's state yet; retrying");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(ProjectorError::Stream(failure))
}

/// The value of a volunteer hour the configuration names: a value of the
/// operator's own, a named basis, or by default the most recent named one.
fn volunteer_hour_value(config: &Config) -> Result<VolunteerHourValue, ProjectorError> {
    match (config.volunteer_hour_value_gbp, config.volunteer_hour_basis.as_deref()) {
        (Some(_), Some(_)) => Err(ProjectorError::HourValueAndBasis),
        (Some(value), None) if value.is_finite() && value >= 0.0 => Ok(VolunteerHourValue::custom(value)),
        (Some(value), None) => Err(ProjectorError::HourValueInvalid(value)),
        (None, basis) => {
            let basis = basis.map_or(Some(HourValueBasis::DEFAULT), HourValueBasis::parse);
            basis.and_then(VolunteerHourValue::named).ok_or_else(|| {
                ProjectorError::HourBasisUnknown(config.volunteer_hour_basis.clone().unwrap_or_default())
            })
        }
    }
}

impl Projector {
    /// Opens the store, connects to NATS and starts answering queries.
    pub async fn start(config: &Config) -> Result<Projector, ProjectorError> {
        if config.batch_size_max == 0 {
            return Err(ProjectorError::BatchSizeZero);
        }
        let volunteer_hour_value = volunteer_hour_value(config)?;
        let memory = StoreMemory { page_cache_bytes: config.store_cache_mib.saturating_mul(1024 * 1024) };
        let store = Store::open_with_memory(&config.data_dir, memory)?;
        store.check_format(momentum_domain::ledger::FORMAT)?;
        store.check_setting("time_zone", config.time_zone.name())?;
        // A store holds one partition's movements; folding another's on top
        // would mix them.
        store.check_setting("partition", &config.partition.to_string())?;
        let (connected, connections) = watch::channel(0u64);
        let nats = momentum_bus::connect_options("momentum-projector", &config.nats_connection)
            .map_err(|error| ProjectorError::Connect { url: config.nats_url.clone(), message: error.to_string() })?
            .event_callback(move |event| {
                let connected = connected.clone();
                async move {
                    if matches!(event, async_nats::Event::Connected) {
                        connected.send_modify(|count| *count += 1);
                    }
                }
            })
            .connect(momentum_bus::server_addresses(&config.nats_url)?)
            .await
            .map_err(|error| ProjectorError::Connect { url: config.nats_url.clone(), message: error.to_string() })?;
        // Reads are answered from memory: the projection is loaded whole.
        let loading = std::time::Instant::now();
        let ledger = Arc::new(std::sync::RwLock::new(store.load_ledger()?));
        let loaded_to = ledger.read().unwrap_or_else(std::sync::PoisonError::into_inner).watermark();
        tracing::info!(watermark = loaded_to, seconds = loading.elapsed().as_secs_f64(), "ledger loaded");
        let (watermark, _) = watch::channel(loaded_to);
        let applied = Arc::<AtomicU64>::default();
        let health = health::Health::new(nats.clone(), config.ready_lag_max);
        let serve = ServeSettings {
            ledger: ledger.clone(),
            read_seconds: health.metrics.read_seconds.clone(),
            partition: config.partition,
            wait_max: Duration::from_millis(config.query_wait_ms_max),
            applied: applied.clone(),
            read_settings: ReadSettings { volunteer_hour_value },
            fold_settings: FoldSettings { time_zone: config.time_zone },
        };
        // A projector answers queries only once it has caught up with the
        // stream as it was when it started, so a replica rebuilding from
        // sequence 1 never serves partial figures.
        let stream = stream_state(&nats).await?;
        if let Some(created) = &stream.created {
            store.check_setting("stream_created", created)?;
        }
        if *watermark.borrow() > stream.last_sequence {
            return Err(ProjectorError::StoreAheadOfStream {
                watermark: *watermark.borrow(),
                last_sequence: stream.last_sequence,
            });
        }
        if stream.created.is_some() && !config.partition.is_whole() {
            check_every_event_has_a_slot(&nats).await?;
        }
        let serve_from = stream.last_sequence;
        let coverage =
            coverage::Coverage::new(config.partition, async_nats::jetstream::new(nats.clone()), watermark.subscribe());
        let http = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| ProjectorError::Bind { address: config.http_addr, source })?;
        let service = if *watermark.borrow() >= serve_from || coverage.proven().await >= serve_from {
            Some(serve.start(&nats, coverage.clone()).await?)
        } else {
            tracing::info!(
                watermark = *watermark.borrow(),
                serve_from,
                "catching up with the stream before answering queries"
            );
            None
        };
        if service.is_some() {
            health.serving.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(Projector {
            config: config.clone(),
            store,
            ledger,
            nats,
            watermark,
            applied,
            connections,
            service,
            serve,
            serve_from,
            coverage,
            health,
            http,
        })
    }

    /// Where `/livez` and `/readyz` are served.
    pub fn http_addr(&self) -> std::net::SocketAddr {
        self.http.local_addr().expect("a bound listener has an address")
    }

    /// The watermark as it moves, for callers that wait on the projection.
    pub fn watermark(&self) -> watch::Receiver<u64> {
        self.watermark.subscribe()
    }

    /// Folds the stream and answers queries until `shutdown` resolves; then
    /// finishes the current batch, flushes the store and drains NATS.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ProjectorError> {
        let settings = FoldSettings { time_zone: self.config.time_zone };
        let (stop_sender, stop) = watch::channel(false);
        let consumer = consume::Consumer {
            jetstream: async_nats::jetstream::new(self.nats.clone()),
            store: self.store.clone(),
            ledger: self.ledger.clone(),
            settings,
            batch_size_max: self.config.batch_size_max,
            watermark: self.watermark.clone(),
            applied: self.applied.clone(),
            connections: self.connections.clone(),
            partition: self.config.partition,
            lag: self.health.lag.clone(),
            reading: self.health.reading.clone(),
            metrics: self.health.metrics.clone(),
        };
        let consumer = tokio::spawn(consume::run(consumer, stop.clone()));
        let http = tokio::spawn(health::serve(self.http, self.health.clone(), stop));
        tracing::info!(watermark = *self.watermark.borrow(), "projector started");
        let registration = match self.service {
            Some(service) => tokio::spawn(async move { Ok(service) }),
            None => {
                let (nats, serve, serve_from, coverage) =
                    (self.nats.clone(), self.serve, self.serve_from, self.coverage.clone());
                let mut watermark = self.watermark.subscribe();
                tokio::spawn(async move {
                    // A partition may own none of the last events, and the
                    // last events may have been deleted, so the watermark
                    // alone may never reach `serve_from`; the server is
                    // asked again every so often how far it is covered.
                    // The watermark reaching it ends the wait at once; a
                    // proof costs a few JetStream requests, so it is asked
                    // for at most once an interval.
                    loop {
                        let applied = *watermark.borrow_and_update();
                        if applied >= serve_from || coverage.proven().await >= serve_from {
                            break;
                        }
                        let reached = watermark.wait_for(|watermark| *watermark >= serve_from);
                        let closed = matches!(tokio::time::timeout(CATCH_UP_CHECK_INTERVAL, reached).await, Ok(Err(_)));
                        if closed {
                            // The projector is stopping: no busy loop meanwhile.
                            tokio::time::sleep(CATCH_UP_CHECK_INTERVAL).await;
                        }
                    }
                    tracing::info!(watermark = *watermark.borrow(), "caught up; answering queries");
                    serve.start(&nats, coverage).await
                })
            }
        };
        // Run until asked to stop, unless the consumer or the query service
        // fails first: then stop with an error, so that whatever supervises
        // the process restarts it instead of leaving it frozen.
        let mut consumer = consumer;
        let mut registration = registration;
        let mut service = None;
        let mut failure = None;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                ended = &mut consumer => {
                    failure = Some(match ended {
                        Ok(Ok(())) => ProjectorError::ConsumerFailed("it ended".to_owned()),
                        Ok(Err(error)) => error,
                        Err(error) => ProjectorError::ConsumerFailed(error.to_string()),
                    });
                    break;
                }
                registered = &mut registration, if service.is_none() => match registered {
                    Ok(Ok(running)) => {
                        self.health.serving.store(true, std::sync::atomic::Ordering::Relaxed);
                        service = Some(running);
                    }
                    Ok(Err(error)) => { failure = Some(error); break; }
                    Err(error) => { failure = Some(ProjectorError::Service(error.to_string())); break; }
                },
            }
        }
        let _ = stop_sender.send(true);
        let consumed = if consumer.is_finished() && failure.is_some() {
            Ok(())
        } else {
            consumer.await.unwrap_or_else(|error| Err(ProjectorError::ConsumerFailed(error.to_string())))
        };
        match service {
            Some(service) => service.stop().await,
            None => registration.abort(),
        }
        let _ = http.await;
        if let Some(error) = failure {
            tracing::error!(%error, "projector stopping after a failure");
            // Best effort: after a store failure the flush may fail too, and
            // the failure to report is the first.
            if let Err(flush_error) = self.store.flush() {
                tracing::warn!(error = %flush_error, "could not flush the store while stopping");
            }
            let _ = self.nats.drain().await;
            return Err(error);
        }
        self.store.flush()?;
        let _ = self.nats.drain().await;
        tracing::info!(watermark = *self.watermark.borrow(), "projector stopped");
        consumed
    }
}

/// Starts the service and runs it until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ProjectorError> {
    Projector::start(&config).await?.run(shutdown).await
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn hour_value(arguments: &[&str]) -> Result<VolunteerHourValue, ProjectorError> {
        let config = Config::try_parse_from(std::iter::once("momentum-projector").chain(arguments.iter().copied()))
            .expect("flags that parse");
        volunteer_hour_value(&config)
    }

    #[test]
    fn the_volunteer_hour_is_the_latest_named_basis_unless_a_basis_or_a_value_of_ones_own_is_set() {
        assert_eq!(hour_value(&[]).unwrap(), VolunteerHourValue::named(HourValueBasis::AsheMedian2024).unwrap());
        let ons = hour_value(&["--volunteer-hour-basis", "ons_replacement_cost_2012_13"]).unwrap();
        assert_eq!((ons.basis, ons.value_gbp), (HourValueBasis::OnsReplacementCost201213, 11.27));
        assert_eq!(hour_value(&["--volunteer-hour-value-gbp", "15.5"]).unwrap(), VolunteerHourValue::custom(15.5));
        assert!(matches!(hour_value(&["--volunteer-hour-basis", "custom"]), Err(ProjectorError::HourBasisUnknown(_))));
        assert!(matches!(hour_value(&["--volunteer-hour-value-gbp=-1"]), Err(ProjectorError::HourValueInvalid(_))));
        let both = hour_value(&["--volunteer-hour-value-gbp", "15.5", "--volunteer-hour-basis", "ashe_median_2024"]);
        assert!(matches!(both, Err(ProjectorError::HourValueAndBasis)));
    }
}
