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
/// The longest one round of requests for a proof may take. JetStream's API
/// can be slow to answer while core NATS is fine (a cluster electing a
/// leader, or without a quorum); the lock below makes every caller wait for
/// the round in progress, so it must end well within a `min_seq` wait.
pub(crate) const PROOF_TIME_MAX: Duration = Duration::from_secs(1);

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
    /// The JetStream context the projector reads the stream with.
    pub(crate) fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    pub(crate) fn new(
        partition: Partition,
        jetstream: jetstream::Context,
        watermark: watch::Receiver<u64>,
    ) -> Coverage {
        Coverage { partition, jetstream, watermark, last: Arc::default() }
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
    /// its own left to read, the stream's last sequence. A projector of the
    /// whole stream answers with its watermark, without asking the server.
    pub(crate) async fn covered(&self) -> u64 {
        if self.partition.is_whole() {
            return self.watermark();
        }
        self.proven().await
    }

    /// Like [`Coverage::covered`], but asks the server for a projector of
    /// the whole stream too: its watermark stops short of the stream's last
    /// sequence when the last messages were deleted, and a projector that
    /// waited for its watermark to reach that sequence would wait forever.
    /// Asking the server can fail or take too long (NATS away, JetStream
    /// without a leader); the watermark is then the answer, which is true
    /// but may be short.
    pub(crate) async fn proven(&self) -> u64 {
        let watermark = self.watermark();
        let mut last = self.last.lock().await;
        if let Some((proven_at, covered)) = *last
            && proven_at.elapsed() < REUSE_FOR
        {
            return covered.max(self.watermark());
        }
        let covered = match tokio::time::timeout(PROOF_TIME_MAX, self.prove(watermark)).await {
            Ok(Ok(covered)) => covered,
            Ok(Err(error)) => {
                tracing::debug!(%error, "cannot ask the server how far this partition is covered");
                watermark
            }
            Err(_) => {
                tracing::debug!("the server did not say in time how far this partition is covered");
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
        let unread = count_unread(&stream, self.partition, watermark).await?;
        Ok(if unread == 0 { last_sequence } else { watermark })
    }
}

/// The partition's events after `watermark`: a consumer with the
/// partition's filters, starting at `watermark + 1`, whose creation answer
/// carries `num_pending` (deleted messages are not counted).
pub(crate) async fn count_unread(
    stream: &jetstream::stream::Stream,
    partition: Partition,
    watermark: u64,
) -> Result<u64, async_nats::Error> {
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: watermark + 1 },
            filter_subjects: partition.event_filters(),
            description: Some("momentum projector: counts its partition's unread events".to_owned()),
            ..Default::default()
        })
        .await?;
    let unread = consumer.cached_info().num_pending;
    // Nothing is ever pulled from it, and the server removes it after its
    // inactivity threshold anyway; deleting it now keeps the consumer list
    // short.
    let name = consumer.cached_info().name.clone();
    if let Err(error) = stream.delete_consumer(&name).await {
        tracing::debug!(%error, "could not delete a counting consumer; the server will expire it");
    }
    Ok(unread)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JetStream API that takes requests and never answers: a subscriber
    /// on its subjects, on a real server, so requests neither fail at once
    /// (no responders) nor get an answer, as when JetStream has no leader.
    async fn silent_jetstream(server: &momentum_testkit::NatsServer) -> (jetstream::Context, async_nats::Subscriber) {
        let client = async_nats::connect(server.url()).await.unwrap();
        let silent = client.subscribe("silent.api.>").await.unwrap();
        client.flush().await.unwrap();
        // The client's own timeout for JetStream requests stays at its
        // default of seconds: the bound under test is the proof's.
        (jetstream::with_prefix(client, "silent.api"), silent)
    }

    #[tokio::test]
    async fn a_proof_the_server_does_not_answer_gives_the_watermark_within_its_time_bound() {
        let server = momentum_testkit::NatsServer::start();
        let (jetstream, _silent) = silent_jetstream(&server).await;
        let (_watermark, receiver) = watch::channel(7);
        for partition in ["0/1", "1/2"] {
            let coverage = Coverage::new(partition.parse().unwrap(), jetstream.clone(), receiver.clone());
            let started = Instant::now();
            assert_eq!(coverage.proven().await, 7, "partition {partition}");
            let took = started.elapsed();
            assert!(took < PROOF_TIME_MAX + Duration::from_secs(1), "partition {partition}: took {took:?}");
        }
    }
}
