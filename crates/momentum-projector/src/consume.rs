//! Reading the event stream and folding it into the projection in memory,
//! batch by batch, with a checkpoint into the store every so often.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use futures::StreamExt;
use momentum_domain::Event;
use momentum_domain::ledger::{FoldSettings, Ledger};
use momentum_store::Store;
use tokio::sync::watch;

use crate::ProjectorError;
use crate::checkpoint::{CheckpointQueue, CheckpointWriter};
use crate::coverage::{PROOF_TIME_MAX, count_unread};
use crate::health::ProjectorMetrics;

/// How long to wait before retrying after the stream could not be read.
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// The longest a catching-up projector waits for more messages to fill a
/// batch; never used at the head of the stream.
const BATCH_LINGER: Duration = Duration::from_millis(20);
/// How often a projector that is behind logs its progress.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// The longest the projection in memory runs ahead of the store: a
/// restarted projector folds again at most this much of the stream. Reads
/// are answered from memory, so freshness does not wait for checkpoints.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// The events after which a checkpoint is due even within the interval.
/// sled writes a checkpoint in one batch, atomic with its watermark, and
/// frees the pages the batch replaces only after it, so a catch-up's peak
/// memory grows with the checkpoint's size; this size kept a
/// million-event catch-up within the memory it is allowed, writing as fast
/// as larger ones (the measurements are in docs/benchmarks.md). While
/// catching up sled is the slower side, so checkpoints grow to
/// [`CHECKPOINT_EVENTS_MAX`]; smaller ones coalesce fewer writes of the
/// same record.
const CHECKPOINT_EVENTS: u64 = 2_500;
/// The most events folded since the last checkpoint taken. A due
/// checkpoint is put off while another still waits to be written (sled is
/// behind: the next one then holds more, and the fold does not stall);
/// at this many, the fold waits for the writer instead. This bounds a
/// checkpoint's size, and so the memory of the two the writer may hold
/// (one being written, one waiting): a few records an event.
const CHECKPOINT_EVENTS_MAX: u64 = 5_000;

/// The projection in memory, shared by the fold (which writes it) and the
/// query endpoints (which read it). Nothing panics while holding the lock
/// except a fold that breaks an invariant, after which the projector stops
/// without checkpointing; so a poisoned lock is read through.
pub(crate) type SharedLedger = Arc<RwLock<Ledger>>;
/// How long the consumer may deliver nothing before the projector asks the
/// server whether events of its partition are waiting. async-nats's ordered
/// consumer recreates itself after a failure, retrying without end and
/// without a word (the stream deleted, JetStream without a leader); this
/// check is how such a stall shows in `/readyz` and ends in a reopen
/// through [`open`], which also checks that the stream is the same one.
const STALL_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// What the consuming task works with.
pub(crate) struct Consumer {
    pub jetstream: jetstream::Context,
    pub store: Store,
    pub ledger: SharedLedger,
    pub settings: FoldSettings,
    pub batch_size_max: usize,
    /// Published after every batch folded, for `min_seq` waits.
    pub watermark: watch::Sender<u64>,
    /// Stream messages read since start, for status.
    pub applied: Arc<AtomicU64>,
    /// Changes on every (re)connection to NATS.
    pub connections: watch::Receiver<u64>,
    /// Whose events are read.
    pub partition: momentum_bus::Partition,
    /// Stream messages the server still had to deliver after the last batch.
    pub lag: Arc<AtomicU64>,
    /// Whether the stream's consumer is open and delivering what waits,
    /// for `/readyz`.
    pub reading: Arc<AtomicBool>,
    pub metrics: Arc<ProjectorMetrics>,
}

/// When the last checkpoint was written, and how many events were folded
/// since.
#[derive(Clone, Copy)]
struct Checkpoints {
    last: Instant,
    events_since: u64,
}

impl Checkpoints {
    /// Whether to take a checkpoint now, given whether the writer has room
    /// for one.
    fn due(&self, writer_has_room: bool) -> bool {
        let due = self.events_since >= CHECKPOINT_EVENTS || self.last.elapsed() >= CHECKPOINT_INTERVAL;
        (due && writer_has_room) || self.events_since >= CHECKPOINT_EVENTS_MAX
    }
}

/// Consumes from the projection's watermark + 1 until `stop` turns true,
/// then writes a last checkpoint. Only a store failure, an unreadable
/// message (after a checkpoint of what came before) or a retraction whose
/// target the stream does not give back as it arrived (none, another
/// event, or no stream at all) ends it early: everything else on the NATS
/// side is retried.
pub(crate) async fn run(consumer: Consumer, stop: watch::Receiver<bool>) -> Result<(), ProjectorError> {
    let ledger = consumer.ledger.clone();
    let written = consumer.metrics.checkpoint_watermark.clone();
    written.set(i64::try_from(consumer.store.watermark()?).unwrap_or(i64::MAX));
    let writer = CheckpointWriter::start(consumer.store.clone(), written);
    let queue = writer.queue();
    let consumed = consume(consumer, writer.queue(), stop).await;
    if matches!(consumed, Ok(()) | Err(ProjectorError::UnreadableEvent { .. })) {
        let last = tokio::task::spawn_blocking(move || queue.checkpoint(&ledger)).await.map_err(|error| {
            ProjectorError::ConsumerFailed(format!("the last checkpoint ended abnormally: {error}"))
        })?;
        if let Err(error) = last {
            return Err(writer.finish().await.err().unwrap_or(error));
        }
    } else {
        drop(queue);
    }
    // A failed write is the first failure: the fold stopped because of it.
    writer.finish().await?;
    consumed
}

async fn consume(
    consumer: Consumer,
    checkpoints_queue: CheckpointQueue,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ProjectorError> {
    let Consumer {
        jetstream,
        store,
        ledger,
        settings,
        batch_size_max,
        watermark,
        applied,
        mut connections,
        partition,
        lag,
        reading,
        metrics,
    } = consumer;
    let mut checkpoints = Checkpoints { last: Instant::now(), events_since: 0 };
    while !*stop.borrow() {
        connections.borrow_and_update();
        let start_sequence = ledger.read().unwrap_or_else(PoisonError::into_inner).watermark() + 1;
        let messages = match open(&jetstream, &store, start_sequence, partition).await {
            Ok(messages) => {
                reading.store(true, Ordering::Relaxed);
                messages
            }
            Err(Opening::Store(error)) => return Err(error.into()),
            Err(Opening::Nats(error)) => {
                reading.store(false, Ordering::Relaxed);
                metrics.stream_read_failures.inc();
                tracing::warn!(%error, "cannot read the event stream yet; retrying");
                tokio::select! {
                    _ = stop.changed() => {}
                    () = tokio::time::sleep(RETRY_DELAY) => {}
                }
                continue;
            }
        };
        tracing::info!(start_sequence, "reading the event stream");
        let mut chunks = messages.ready_chunks(batch_size_max);
        let (mut last_progress, mut progress_from, mut pending) = (Instant::now(), start_sequence - 1, 0);
        loop {
            let chunk = tokio::select! {
                _ = stop.changed() => return Ok(()),
                _ = connections.changed() => {
                    tracing::info!("reconnected to NATS; reopening the event stream consumer");
                    break;
                }
                chunk = chunks.next() => chunk,
                // Quiet after some events: checkpoint them now rather than
                // when the next event comes.
                () = tokio::time::sleep(CHECKPOINT_INTERVAL), if checkpoints.events_since > 0 => {
                    let (ledger, queue) = (ledger.clone(), checkpoints_queue.clone());
                    tokio::task::spawn_blocking(move || queue.checkpoint(&ledger)).await.map_err(|error| {
                        ProjectorError::ConsumerFailed(format!("a checkpoint ended abnormally: {error}"))
                    })??;
                    checkpoints = Checkpoints { last: Instant::now(), events_since: 0 };
                    continue;
                }
                () = tokio::time::sleep(STALL_CHECK_INTERVAL) => {
                    let folded_to = *watermark.borrow();
                    match unread_events(&jetstream, &store, partition, folded_to).await {
                        Ok(0) => continue,
                        Ok(unread) => tracing::warn!(unread, "the event stream consumer delivers nothing; reopening it"),
                        Err(Opening::Store(error)) => return Err(error.into()),
                        Err(Opening::Nats(error)) => {
                            tracing::warn!(%error, "cannot count the unread events; reopening the consumer");
                        }
                    }
                    metrics.stream_read_failures.inc();
                    reading.store(false, Ordering::Relaxed);
                    break;
                }
            };
            reading.store(true, Ordering::Relaxed);
            let Some(mut chunk) = chunk else { break };
            // While the server says more is waiting (a catch-up), gather up
            // to a full batch: fewer hand-offs to the blocking pool. At the
            // head of the stream, fold at once for freshness.
            while chunk.len() < batch_size_max && server_pending(&chunk) > 0 {
                match tokio::time::timeout(BATCH_LINGER, chunks.next()).await {
                    Ok(Some(more)) => chunk.extend(more),
                    _ => break,
                }
            }
            let started = Instant::now();
            // A batch is up to a thousand events folded, and now and then a
            // checkpoint written to sled: on the blocking pool, so that it
            // never holds one of the runtime's workers (queries and NATS
            // traffic go on meanwhile).
            let folding = (ledger.clone(), checkpoints_queue.clone(), pending, checkpoints);
            let folded = tokio::task::spawn_blocking(move || {
                let (ledger, queue, mut pending, mut checkpoints) = folding;
                let applied = fold_chunk(&ledger, &settings, chunk, &mut pending)?;
                checkpoints.events_since += applied.1;
                if checkpoints.due(queue.has_room()) {
                    queue.checkpoint(&ledger)?;
                    checkpoints = Checkpoints { last: Instant::now(), events_since: 0 };
                }
                Ok::<_, ProjectorError>((applied, pending, checkpoints))
            })
            .await
            .map_err(|error| ProjectorError::ConsumerFailed(format!("a batch's fold ended abnormally: {error}")))?;
            let ((applied_to, read, failed), now_pending, now_checkpoints) = folded?;
            (pending, checkpoints) = (now_pending, now_checkpoints);
            applied.fetch_add(read, Ordering::Relaxed);
            lag.store(pending, Ordering::Relaxed);
            metrics.batch_seconds.observe(started.elapsed().as_secs_f64());
            metrics.batch_events.observe(read as f64);
            metrics.applied.inc_by(read);
            metrics.lag.set(i64::try_from(pending).unwrap_or(i64::MAX));
            metrics.watermark.set(i64::try_from(applied_to).unwrap_or(i64::MAX));
            if last_progress.elapsed() >= PROGRESS_INTERVAL && pending > 0 {
                let rate = (applied_to - progress_from) as f64 / last_progress.elapsed().as_secs_f64();
                tracing::info!(watermark = applied_to, pending, events_per_second = rate.round(), "catching up");
                (last_progress, progress_from) = (Instant::now(), applied_to);
            }
            if applied_to > *watermark.borrow() {
                watermark.send_replace(applied_to);
            }
            if failed {
                metrics.stream_read_failures.inc();
                break;
            }
        }
        // The consumer ended or failed: open a new one after the watermark.
        tokio::select! {
            _ = stop.changed() => {}
            () = tokio::time::sleep(RETRY_DELAY) => {}
        }
    }
    Ok(())
}

/// Why the stream could not be opened.
enum Opening {
    /// NATS did not answer as it should: tried again.
    Nats(async_nats::Error),
    /// The stream is not the one the store was folded from (deleted and
    /// made again while the projector ran): folding it on top of the store
    /// would mix two streams' figures and miss the new one's first events.
    /// Or the store, asked for the stream it was folded from, failed.
    Store(momentum_store::StoreError),
}

async fn open(
    jetstream: &jetstream::Context,
    store: &Store,
    start_sequence: u64,
    partition: momentum_bus::Partition,
) -> Result<jetstream::consumer::pull::Ordered, Opening> {
    let stream = jetstream.get_stream(momentum_bus::STREAM_NAME).await.map_err(|error| Opening::Nats(error.into()))?;
    let created = stream.cached_info().created.unix_timestamp_nanos().to_string();
    store.check_setting("stream_created", &created).map_err(Opening::Store)?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence },
            // Empty for the whole stream; one filter per owned slot otherwise.
            filter_subjects: partition.event_filters(),
            ..Default::default()
        })
        .await
        .map_err(|error| Opening::Nats(error.into()))?;
    consumer.messages().await.map_err(|error| Opening::Nats(error.into()))
}

/// How many of the partition's events the server holds after the
/// watermark, once it has shown that the stream is still the one the store
/// was folded from: a stream deleted and made again is found here even
/// while the consumer idles at a sequence the new stream has not reached.
async fn unread_events(
    jetstream: &jetstream::Context,
    store: &Store,
    partition: momentum_bus::Partition,
    watermark: u64,
) -> Result<u64, Opening> {
    let counting = async {
        let stream =
            jetstream.get_stream(momentum_bus::STREAM_NAME).await.map_err(|error| Opening::Nats(error.into()))?;
        let created = stream.cached_info().created.unix_timestamp_nanos().to_string();
        store.check_setting("stream_created", &created).map_err(Opening::Store)?;
        count_unread(&stream, partition, watermark).await.map_err(Opening::Nats)
    };
    tokio::time::timeout(PROOF_TIME_MAX, counting).await.map_err(|elapsed| Opening::Nats(elapsed.into()))?
}

type Delivery = Result<jetstream::Message, jetstream::consumer::pull::OrderedError>;

/// What the server said was still to deliver after the chunk's last message.
fn server_pending(chunk: &[Delivery]) -> u64 {
    let last = chunk.last().and_then(|delivery| delivery.as_ref().ok());
    last.and_then(|message| message.info().ok()).map_or(0, |info| info.pending)
}

/// Folds what arrived into the ledger. Returns the new watermark, how
/// many stream messages were read, and whether the consumer failed partway
/// (the events before the failure are folded; the rest are delivered again
/// when the consumer reopens). `pending` is set to what the server said was
/// left to deliver after the last message.
fn fold_chunk(
    ledger: &RwLock<Ledger>,
    settings: &FoldSettings,
    chunk: Vec<Delivery>,
    pending: &mut u64,
) -> Result<(u64, u64, bool), ProjectorError> {
    let mut last_sequence = ledger.read().unwrap_or_else(PoisonError::into_inner).watermark();
    let mut failed = false;
    let mut unreadable = None;
    let mut read = 0;
    for delivery in chunk {
        let message = match delivery {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "the event stream consumer failed; reopening it");
                failed = true;
                break;
            }
        };
        let sequence = match message.info() {
            Ok(info) => {
                *pending = info.pending;
                info.stream_sequence
            }
            Err(error) => {
                tracing::warn!(%error, "a delivery has no stream sequence; reopening the consumer");
                failed = true;
                break;
            }
        };
        if sequence <= last_sequence {
            continue;
        }
        match Event::from_json(&message.payload) {
            // Ingest publishes an event on the subject its movement and type
            // name, whose slot decides the partition that folds it. On any
            // other subject, a partitioned projector would fold it for the
            // wrong partition (or never see it) and figures would depend on
            // how projectors are partitioned: treated as unreadable.
            Ok(event) if !momentum_bus::is_event_subject(&message.subject, &event.subject, event.kind.as_str()) => {
                let reason = format!(
                    "it is on subject {} but an event of movement {:?} and type {} belongs on {}",
                    message.subject,
                    event.subject,
                    event.kind.as_str(),
                    momentum_bus::event_subject(&event.subject, event.kind.as_str())
                );
                unreadable = Some(ProjectorError::UnreadableEvent { sequence, reason });
                break;
            }
            Ok(event) => {
                // The lock is taken for each event, so reads wait for one
                // event's fold at most, not a batch's.
                let mut ledger = ledger.write().unwrap_or_else(PoisonError::into_inner);
                let outcome = ledger.apply(settings, &event, sequence);
                drop(ledger);
                // The id of the HTTP request that brought the event, so one
                // event can be followed from ingest's log to this one. Looked
                // up only when it is logged: a header lookup an event showed
                // in a catch-up's profile.
                if tracing::enabled!(tracing::Level::DEBUG) {
                    let request_id = message
                        .headers
                        .as_ref()
                        .and_then(|headers| headers.get(momentum_runtime::request_id::NATS_HEADER))
                        .map(|value| value.as_str().to_owned());
                    tracing::debug!(sequence, request_id, movement = event.subject, ?outcome, "applied");
                }
            }
            // Only ingest publishes, and only validated events: a newer
            // ingest wrote an event this projector is too old to read, or
            // someone else wrote to the stream. Skipping it would lose it
            // for good (the watermark moves past it), so the projector
            // stops, after a checkpoint of what came before, and says which.
            Err(error) => {
                unreadable = Some(ProjectorError::UnreadableEvent { sequence, reason: error.to_string() });
                break;
            }
        }
        last_sequence = sequence;
        read += 1;
    }
    if let Some(error) = unreadable {
        return Err(error);
    }
    Ok((last_sequence, read, failed))
}
