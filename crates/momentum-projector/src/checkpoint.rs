//! Writing checkpoints to the store in the background, while the fold goes
//! on: on two cores, sled's commit of one checkpoint and the fold of the
//! next batches run side by side instead of in turn.
//!
//! The fold takes a checkpoint (the records it changed, whole) and queues
//! it; one task writes the queued checkpoints to sled in order. At most one
//! waits while another is written, so the fold waits rather than run ahead
//! of the store without bound.

use std::sync::{PoisonError, RwLock};
use std::time::Instant;

use momentum_domain::ledger::{Checkpoint, Ledger};
use momentum_store::{Store, StoreError};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::ProjectorError;

/// What the fold uses to queue checkpoints; cheap to clone into the
/// blocking tasks that fold.
#[derive(Clone)]
pub(crate) struct CheckpointQueue {
    /// Bounded to one waiting checkpoint.
    sender: mpsc::Sender<Checkpoint>,
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
        let task = tokio::spawn(write_all(store, receiver, written));
        CheckpointWriter { queue: CheckpointQueue { sender }, task }
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
    /// Takes the ledger's changes since the last checkpoint and queues
    /// them; blocks while a checkpoint already waits. For a blocking thread.
    /// Taking them costs nothing but moving the journal out, so reads never
    /// wait on it.
    pub(crate) fn checkpoint(&self, ledger: &RwLock<Ledger>) -> Result<(), ProjectorError> {
        let changes = ledger.write().unwrap_or_else(PoisonError::into_inner).checkpoint();
        tracing::debug!(watermark = changes.watermark, entries = changes.entries.len(), "checkpoint taken");
        self.sender
            .blocking_send(changes)
            .map_err(|_| ProjectorError::ConsumerFailed("the checkpoint writer stopped (its error follows)".to_owned()))
    }

    /// Whether a checkpoint queued now would be written next, not wait
    /// behind another.
    pub(crate) fn has_room(&self) -> bool {
        self.sender.capacity() > 0
    }
}

/// Writes each queued checkpoint to sled, in order, until the queue closes
/// or a write fails.
async fn write_all(
    store: Store,
    mut receiver: mpsc::Receiver<Checkpoint>,
    written: Gauge,
) -> Result<(), ProjectorError> {
    while let Some(checkpoint) = receiver.recv().await {
        let watermark = checkpoint.watermark;
        let store = store.clone();
        let committed = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            if !checkpoint.is_empty() || checkpoint.watermark > store.watermark()? {
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
        written.set(i64::try_from(watermark).unwrap_or(i64::MAX));
    }
    Ok(())
}
