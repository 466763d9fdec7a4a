//! How far through the stream a projector's answers reach.
//!
//! A projector of the whole stream has seen every sequence up to its
//! watermark. A partitioned one reads only its own movements' subjects, so
//! its watermark is the last of *its* events: it stays put while other
//! partitions' events go by. Yet a client may ask it to wait for a sequence
//! that belongs to another partition (`min_seq` of an event it posted
//! elsewhere), and it must know when it has caught up with the stream it
//! was started against. For both it proves coverage:
//!
//! 1. read the watermark `W`;
//! 2. read the stream's last sequence `L`;
//! 3. ask the server how many of this partition's events lie after `W`
//!    (a consumer with the partition's filters, starting at `W + 1`, whose
//!    creation answer carries `num_pending`).
//!
//! The count in 3 is taken after `L` was read, so if it is zero, no event
//! of this partition lies in `W + 1 ..= L`: the projection is complete up
//! to `L`. Otherwise the answer is `W`, which is always true.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use momentum_bus::Partition;
use tokio::sync::{Mutex, watch};

/// How long a proven coverage is reused before the server is asked again:
/// many waiting queries then cost one round of requests, not one each.
const REUSE_FOR: Duration = Duration::from_millis(20);

#[derive(Clone)]
pub(crate) struct Coverage {
    partition: Partition,
    jetstream: jetstream::Context,
    watermark: watch::Receiver<u64>,
    /// The last proof and when it was made; the lock also makes concurrent
    /// callers share one round of requests.
    last: Arc<Mutex<Option<(Instant, u64)>>>,
}

impl Coverage {
    pub(crate) fn new(partition: Partition, nats: async_nats::Client, watermark: watch::Receiver<u64>) -> Coverage {
        Coverage { partition, jetstream: jetstream::new(nats), watermark, last: Arc::default() }
    }

    pub(crate) fn partition(&self) -> Partition {
        self.partition
    }

    pub(crate) fn watermark_receiver(&self) -> watch::Receiver<u64> {
        self.watermark.clone()
    }

    /// The watermark, without asking the server.
    pub(crate) fn watermark(&self) -> u64 {
        *self.watermark.borrow()
    }

    /// A sequence up to which every event of this partition is applied: at
    /// least the watermark, and for a partitioned projector with nothing of
    /// its own left to read, the stream's last sequence. Asking the server
    /// can fail (NATS away); the watermark is then the answer, which is
    /// true but may be short.
    pub(crate) async fn covered(&self) -> u64 {
        let watermark = self.watermark();
        if self.partition.is_whole() {
            return watermark;
        }
        let mut last = self.last.lock().await;
        if let Some((proven_at, covered)) = *last
            && proven_at.elapsed() < REUSE_FOR
        {
            return covered.max(self.watermark());
        }
        let covered = match self.prove(watermark).await {
            Ok(covered) => covered,
            Err(error) => {
                tracing::debug!(%error, "cannot ask the server how far this partition is covered");
                watermark
            }
        };
        *last = Some((Instant::now(), covered));
        covered
    }

    async fn prove(&self, watermark: u64) -> Result<u64, async_nats::Error> {
        let mut stream = self.jetstream.get_stream(momentum_bus::STREAM_NAME).await?;
        let last_sequence = stream.info().await?.state.last_sequence;
        if last_sequence <= watermark {
            return Ok(watermark);
        }
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: watermark + 1 },
                filter_subjects: self.partition.event_filters(),
                description: Some("momentum projector: counts its partition's unread events".to_owned()),
                ..Default::default()
            })
            .await?;
        let pending = consumer.cached_info().num_pending;
        // Nothing is ever pulled from it, and the server removes it after
        // its inactivity threshold anyway; deleting it now keeps the
        // consumer list short.
        let name = consumer.cached_info().name.clone();
        if let Err(error) = stream.delete_consumer(&name).await {
            tracing::debug!(%error, "could not delete a counting consumer; the server will expire it");
        }
        Ok(if pending == 0 { last_sequence } else { watermark })
    }
}
