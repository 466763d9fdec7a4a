//! Writing checkpoints to the store in the background, while the fold goes
//! on: on two cores, sled's commit of one checkpoint and the fold of the
//! next batches run side by side instead of in turn.
//!
//! The fold takes a checkpoint (the records it changed, whole) and queues
//! it; one task writes the queued checkpoints to sled in order. At most one
//! waits while another is written, so the fold waits rather than run ahead
//! of the store without bound. Until a checkpoint is in sled its events are
//! nowhere else, so a retraction reads them from the queue ([`Archive`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use momentum_domain::Event;
use momentum_domain::projection::StateRead;
use momentum_domain::typed::{ArchiveError, Checkpoint, EventArchive, Projection, event_from_record};
use momentum_store::{Store, StoreError};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::ProjectorError;

/// Checkpoints taken but not yet in sled, oldest first.
type Unwritten = Arc<Mutex<VecDeque<Arc<Checkpoint>>>>;

/// What the fold uses to queue checkpoints; cheap to clone into the
/// blocking tasks that fold.
#[derive(Clone)]
pub(crate) struct CheckpointQueue {
    /// Bounded to one waiting checkpoint.
    sender: mpsc::Sender<Arc<Checkpoint>>,
    unwritten: Unwritten,
    store: Store,
}

/// The task writing queued checkpoints, and the queue into it.
pub(crate) struct CheckpointWriter {
    queue: CheckpointQueue,
    task: JoinHandle<Result<(), ProjectorError>>,
}

impl CheckpointWriter {
    /// Starts the writer; `written` is set to each checkpoint's watermark
    /// once it is in sled.
    pub(crate) fn start(store: Store, written: Gauge) -> CheckpointWriter {
        let (sender, receiver) = mpsc::channel(1);
        let unwritten = Unwritten::default();
        let task = tokio::spawn(write_all(store.clone(), receiver, unwritten.clone(), written));
        CheckpointWriter { queue: CheckpointQueue { sender, unwritten, store }, task }
    }

    pub(crate) fn queue(&self) -> CheckpointQueue {
        self.queue.clone()
    }

    /// Waits until every queued checkpoint is in sled (every clone of the
    /// queue must be dropped first). A failure to write one is the answer.
    pub(crate) async fn finish(self) -> Result<(), ProjectorError> {
        drop(self.queue);
        self.task.await.map_err(|error| {
            ProjectorError::ConsumerFailed(format!("the checkpoint writer ended abnormally: {error}"))
        })?
    }
}

impl CheckpointQueue {
    /// Takes the projection's changes since the last checkpoint and queues
    /// them; blocks while a checkpoint already waits. For a blocking thread.
    ///
    /// The projection is locked for one movement at a time: gathering
    /// costs 5 to 6 µs a record, a checkpoint of thousands of events holds
    /// tens of thousands of records, and reads waiting on the lock for the
    /// whole of large ones were the freshness stalls after a catch-up
    /// (docs/benchmarks.md). Nothing folds in between: the fold
    /// runs on the thread that calls this, after it returns.
    pub(crate) fn checkpoint(&self, projection: &RwLock<Projection>) -> Result<(), ProjectorError> {
        let started = Instant::now();
        let lock = || projection.write().unwrap_or_else(PoisonError::into_inner);
        let mut gathering = lock().begin_checkpoint();
        while lock().gather_next(&mut gathering) {}
        let changes = Arc::new(gathering.finish());
        tracing::debug!(
            watermark = changes.watermark,
            records = changes.records.len(),
            milliseconds = started.elapsed().as_millis(),
            "checkpoint taken"
        );
        self.unwritten.lock().unwrap_or_else(PoisonError::into_inner).push_back(changes.clone());
        self.sender
            .blocking_send(changes)
            .map_err(|_| ProjectorError::ConsumerFailed("the checkpoint writer stopped (its error follows)".to_owned()))
    }

    /// Whether a checkpoint queued now would be written next, not wait
    /// behind another.
    pub(crate) fn has_room(&self) -> bool {
        self.sender.capacity() > 0
    }

    /// Where the fold reads back events already checkpointed.
    pub(crate) fn archive(&self) -> Archive {
        let unwritten = self.unwritten.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect();
        Archive { unwritten, store: self.store.clone() }
    }
}

/// Writes each queued checkpoint to sled, in order, until the queue closes
/// or a write fails.
async fn write_all(
    store: Store,
    mut receiver: mpsc::Receiver<Arc<Checkpoint>>,
    unwritten: Unwritten,
    written: Gauge,
) -> Result<(), ProjectorError> {
    while let Some(checkpoint) = receiver.recv().await {
        let watermark = checkpoint.watermark;
        let store = store.clone();
        let committed = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            if !checkpoint.records.is_empty() || checkpoint.watermark > store.watermark()? {
                store.commit_checkpoint(&checkpoint)?;
            }
            tracing::debug!(
                watermark = checkpoint.watermark,
                milliseconds = started.elapsed().as_millis(),
                "checkpoint written"
            );
            Ok::<_, StoreError>(())
        })
        .await
        .map_err(|error| ProjectorError::ConsumerFailed(format!("a checkpoint's write ended abnormally: {error}")))?;
        committed?;
        unwritten.lock().unwrap_or_else(PoisonError::into_inner).pop_front();
        written.set(i64::try_from(watermark).unwrap_or(i64::MAX));
    }
    Ok(())
}

/// The events of checkpoints still queued, newest first, then the store.
pub(crate) struct Archive {
    unwritten: Vec<Arc<Checkpoint>>,
    store: Store,
}

impl EventArchive for Archive {
    type Error = ArchiveError<StoreError>;

    fn stored_event(&self, key: &[u8]) -> Result<Event, Self::Error> {
        for checkpoint in self.unwritten.iter().rev() {
            if let Some(record) = checkpoint.value_of(key) {
                return event_from_record(key, record);
            }
        }
        let record = self.store.get(key).map_err(ArchiveError::Store)?;
        event_from_record(key, record.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use momentum_domain::projection::ProjectionSettings;

    #[test]
    fn an_event_whose_checkpoint_is_not_yet_in_sled_is_read_back_from_the_queue() {
        let folder = tempfile::tempdir().unwrap();
        let store = Store::open(folder.path()).unwrap();
        let json = r#"{"specversion":"1.0","id":"1","source":"urn:test","type":"volunteer.hours_logged",
            "subject":"leeds","time":"2026-03-02T10:00:00Z","data":{"participant":"ann","hours":1.5}}"#;
        let event = Event::from_json(json.as_bytes()).unwrap();
        let mut projection = Projection::default();
        let nothing = Archive { unwritten: Vec::new(), store: store.clone() };
        projection.apply(&ProjectionSettings::default(), &event, 1, &nothing).unwrap();
        let checkpoint = Arc::new(projection.checkpoint());
        // The event's own key: its record's name, the only one whose table
        // is `e`, then its one entry's suffix.
        let (name, entries) = checkpoint.records.iter().find(|(name, _)| name[0] == b'e').unwrap();
        let key = [name.as_slice(), entries.iter().next().unwrap().0].concat();

        let queued = Archive { unwritten: vec![checkpoint.clone()], store: store.clone() };
        assert_eq!(queued.stored_event(&key).unwrap().id, "1");
        assert!(matches!(nothing.stored_event(&key), Err(ArchiveError::Missing { .. })), "not in sled yet");
        store.commit_checkpoint(&checkpoint).unwrap();
        assert_eq!(nothing.stored_event(&key).unwrap().id, "1", "then read from sled");
    }
}
