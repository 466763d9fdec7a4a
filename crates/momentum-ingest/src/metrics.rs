//! What ingest reports to Prometheus at `/metrics`, on top of the shared
//! HTTP and NATS metrics.

use std::sync::Arc;

use momentum_runtime::metrics::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    /// `accepted`, `duplicate` or `rejected`.
    pub outcome: &'static str,
}

pub(crate) struct IngestMetrics {
    pub registry: Arc<Metrics>,
    events: Family<OutcomeLabels, Counter>,
    /// Time from sending a request's publishes to their last PubAck.
    pub publish_seconds: Histogram,
    pub rate_limited: Counter,
}

impl IngestMetrics {
    pub(crate) fn new() -> Arc<IngestMetrics> {
        let metrics = IngestMetrics {
            registry: Metrics::new(),
            events: Family::default(),
            publish_seconds: Histogram::new(momentum_runtime::metrics::duration_buckets()),
            rate_limited: Counter::default(),
        };
        let registry = &metrics.registry;
        registry.register("ingest_events", "Events answered, by outcome", metrics.events.clone());
        registry.register(
            "ingest_publish_duration_seconds",
            "Time from publishing a request's events to their last JetStream acknowledgement",
            metrics.publish_seconds.clone(),
        );
        registry.register("ingest_rate_limited_requests", "Requests refused with 429", metrics.rate_limited.clone());
        Arc::new(metrics)
    }

    pub(crate) fn count(&self, outcome: &'static str, events: usize) {
        self.events.get_or_create(&OutcomeLabels { outcome }).inc_by(events as u64);
    }
}
