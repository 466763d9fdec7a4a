//! The projector's small HTTP server: `/livez` while the process runs,
//! `/readyz` when it is connected to NATS, reading the stream, answering
//! queries and not too far behind, and `/metrics` for Prometheus.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::response::{IntoResponse, Response};
use momentum_runtime::Problem;
use momentum_runtime::metrics::Metrics;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::watch;

#[derive(Clone)]
pub(crate) struct Health {
    nats: async_nats::Client,
    /// Stream messages still to apply, as the server last said.
    pub lag: Arc<AtomicU64>,
    /// Whether the query endpoints are registered (the projector caught up).
    pub serving: Arc<AtomicBool>,
    /// Whether the event stream's consumer is open: false while opening it
    /// fails (the stream missing, JetStream without a leader), when the
    /// lag the server last reported says nothing of what is waiting.
    pub reading: Arc<AtomicBool>,
    lag_max: u64,
    pub metrics: Arc<ProjectorMetrics>,
}

impl Health {
    pub(crate) fn new(nats: async_nats::Client, lag_max: u64) -> Health {
        Health {
            nats,
            lag: Arc::default(),
            serving: Arc::default(),
            reading: Arc::default(),
            lag_max,
            metrics: ProjectorMetrics::new(),
        }
    }
}

/// What the projector reports to Prometheus, on top of the shared HTTP and
/// NATS metrics.
pub(crate) struct ProjectorMetrics {
    pub registry: Arc<Metrics>,
    /// Stream messages the server still had to deliver after the last batch.
    pub lag: Gauge,
    /// The last stream sequence folded (answers include it).
    pub watermark: Gauge,
    /// The last stream sequence written to the store in a checkpoint.
    pub checkpoint_watermark: Gauge,
    pub applied: Counter,
    /// Times the event stream could not be read and its consumer was opened again.
    pub stream_read_failures: Counter,
    pub batch_events: Histogram,
    pub batch_seconds: Histogram,
    /// Time a read spends computing its answer (after any `min_seq` wait).
    pub read_seconds: Histogram,
}

impl ProjectorMetrics {
    fn new() -> Arc<ProjectorMetrics> {
        let registry = Metrics::new();
        let metrics = ProjectorMetrics {
            lag: Gauge::default(),
            watermark: Gauge::default(),
            checkpoint_watermark: Gauge::default(),
            applied: Counter::default(),
            stream_read_failures: Counter::default(),
            // 1 to 4096 events, doubling (batches are at most 1000 by default).
            batch_events: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            batch_seconds: Histogram::new(momentum_runtime::metrics::duration_buckets()),
            read_seconds: Histogram::new(momentum_runtime::metrics::duration_buckets()),
            registry,
        };
        let registry = &metrics.registry;
        registry.register(
            "projector_lag_messages",
            "Stream messages still to apply, as the server last said",
            metrics.lag.clone(),
        );
        registry.register(
            "projector_watermark",
            "The last stream sequence folded into the projection",
            metrics.watermark.clone(),
        );
        registry.register(
            "projector_checkpoint_watermark",
            "The last stream sequence written to the store in a checkpoint",
            metrics.checkpoint_watermark.clone(),
        );
        registry.register("projector_applied_events", "Stream messages applied since start", metrics.applied.clone());
        registry.register(
            "projector_stream_read_failures",
            "Times the event stream could not be read, or its consumer failed or stalled, and was opened again",
            metrics.stream_read_failures.clone(),
        );
        registry.register("projector_batch_events", "Stream messages per folded batch", metrics.batch_events.clone());
        registry.register(
            "projector_batch_duration_seconds",
            "Time to fold a batch (and take a checkpoint, when one is due)",
            metrics.batch_seconds.clone(),
        );
        registry.register(
            "projector_read_duration_seconds",
            "Time a query spends computing its answer from the ledger, after any wait for min_seq (a kept answer is a lookup)",
            metrics.read_seconds.clone(),
        );
        Arc::new(metrics)
    }
}

pub(crate) async fn serve(listener: tokio::net::TcpListener, health: Health, mut stop: watch::Receiver<bool>) {
    let metrics = health.metrics.registry.clone();
    let nats = health.nats.clone();
    let router = momentum_runtime::routes::probes(nats, metrics.clone(), Arc::new(move || unready(&health)));
    let router = momentum_runtime::metrics::measure_requests(router, metrics);
    let shutdown = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    if let Err(error) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
        tracing::warn!(%error, "the health endpoint failed");
    }
}

/// Why the projector is not ready, beyond its NATS connection.
fn unready(health: &Health) -> Option<Response> {
    let lag = health.lag.load(Ordering::Relaxed);
    if !health.serving.load(Ordering::Relaxed) {
        return Some(Problem::unavailable("catching up with the stream before answering queries").into_response());
    }
    if !health.reading.load(Ordering::Relaxed) {
        return Some(Problem::unavailable("cannot open the event stream's consumer; retrying").into_response());
    }
    if lag > health.lag_max {
        let detail = format!("{lag} events wait to be applied (ready at {} or fewer)", health.lag_max);
        return Some(Problem::unavailable(detail).into_response());
    }
    None
}
