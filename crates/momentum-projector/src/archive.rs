//! Reading a retraction's target back from the event stream. The stream
//! keeps every event, so the store keeps none of their JSON (store format
//! 8): each event's JSON in sled was most of the bytes a checkpoint wrote.
//! The latest deliveries are kept in memory, and the fold reads a target
//! before it locks the projection ([`Prefetched`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, ErrorCode, stream::RawMessageErrorKind};
use bytes::Bytes;
use momentum_domain::Event;
use momentum_domain::typed::{ArchiveError, ArchivedEvent, EventArchive};
use prometheus_client::metrics::counter::Counter;
use tokio::runtime::Handle;

/// How long one read of an event may take. Past it the read fails as
/// [`ArchiveError::Read`], and the consumer is reopened after the
/// retraction's event, which reads the target again: NATS being away is
/// waited out as any other consumer failure is.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the stream could not be asked for an event.
#[derive(Debug, thiserror::Error)]
#[error("could not read sequence {seq} of the event stream: {message}")]
pub struct StreamReadError {
    seq: u64,
    message: String,
    /// Whether asking again may work: NATS away or slow, or JetStream
    /// between leaders (a cluster answers 503 for the seconds an election
    /// takes). A stream that does not exist will not appear by asking
    /// again.
    transient: bool,
}

impl StreamReadError {
    pub(crate) fn is_transient(&self) -> bool {
        self.transient
    }
}

/// How many of the latest delivered events the archive keeps. A partner
/// retracts an event entered by mistake soon after it (two hours to five
/// days later in the demo's mix: a few hundred sequences in the
/// benchmark's stream), so most retractions find their target here
/// without a request to NATS, which cost the server roughly half a
/// millisecond of CPU each in a catch-up (docs/benchmarks.md).
const RECENT_EVENTS_MAX: usize = 4096;
/// The most bytes of payload kept of the latest deliveries: about 4 000
/// events of the demo's size, fewer large ones. Each is a copy: a
/// delivered payload is a slice of the connection's read buffer, and
/// keeping it would keep the whole buffer (64 KiB) alive.
const RECENT_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The event stream as the fold's archive: a read of an event older than
/// the latest [`RECENT_EVENTS_MAX`] blocks the calling thread (the fold
/// runs on tokio's blocking pool) for one request to the stream's leader.
#[derive(Clone)]
pub(crate) struct StreamArchive {
    jetstream: jetstream::Context,
    runtime: Handle,
    recent: Arc<Mutex<Recent>>,
    counters: ArchiveCounters,
}

/// What the archive counts, for `/metrics`.
#[derive(Clone, Default)]
pub(crate) struct ArchiveCounters {
    /// Events asked of the stream, every attempt: retractions' targets
    /// that were not among the latest deliveries kept in memory.
    pub asked: Counter,
    /// Asks that failed: no answer in time, or a NATS or JetStream error
    /// (an answer without the event, or with another, is damage and not
    /// counted here). All but a missing stream are retried without end
    /// (the consumer reopens and the retraction is read again), so a count
    /// that keeps rising is how a read that cannot succeed shows before
    /// the lag does.
    pub failed: Counter,
}

/// The latest deliveries' payloads by stream sequence, oldest first, and
/// their bytes.
#[derive(Default)]
struct Recent {
    events: VecDeque<(u64, Bytes)>,
    bytes: usize,
}

impl StreamArchive {
    /// An archive asking through `jetstream`, on `runtime`'s reactor,
    /// counting its asks in `counters`.
    pub(crate) fn new(jetstream: jetstream::Context, runtime: Handle, counters: ArchiveCounters) -> StreamArchive {
        StreamArchive { jetstream, runtime, recent: Arc::default(), counters }
    }

    /// Keeps a copy of a delivered event's payload, forgetting the oldest
    /// beyond [`RECENT_EVENTS_MAX`] and [`RECENT_BYTES_MAX`]. Sequences
    /// must increase, as the fold's do.
    pub(crate) fn remember(&self, seq: u64, payload: &[u8]) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.events.back().is_some_and(|(newest, _)| *newest >= seq) {
            // A consumer reopened after a failure delivers again what was
            // kept; keeping it twice would break the order searched below.
            return;
        }
        recent.bytes += payload.len();
        recent.events.push_back((seq, Bytes::copy_from_slice(payload)));
        while recent.events.len() > RECENT_EVENTS_MAX || recent.bytes > RECENT_BYTES_MAX {
            let Some((_, oldest)) = recent.events.pop_front() else { break };
            recent.bytes -= oldest.len();
        }
    }

    fn recent(&self, seq: u64) -> Option<Bytes> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let at = recent.events.binary_search_by_key(&seq, |(kept, _)| *kept).ok()?;
        Some(recent.events[at].1.clone())
    }
}

impl EventArchive for StreamArchive {
    type Error = ArchiveError<StreamReadError>;

    fn stored_event(&self, target: &ArchivedEvent<'_>) -> Result<Event, Self::Error> {
        let seq = target.seq;
        if let Some(payload) = self.recent(seq) {
            return target.read(Some(&payload));
        }
        self.counters.asked.inc();
        let failed = |message: String, transient: bool| ArchiveError::Read(StreamReadError { seq, message, transient });
        let asking = async {
            let stream = self
                .jetstream
                .get_stream_no_info(momentum_bus::STREAM_NAME)
                .await
                .map_err(|error| failed(error.to_string(), false))?;
            match stream.get_raw_message(seq).await {
                Ok(message) => Ok(Some(message.payload)),
                Err(error) if matches!(error.kind(), RawMessageErrorKind::NoMessageFound) => Ok(None),
                Err(error) => {
                    let transient = !is_stream_not_found(&error.kind());
                    Err(failed(error.to_string(), transient))
                }
            }
        };
        let payload = self
            .runtime
            .block_on(tokio::time::timeout(READ_TIMEOUT, asking))
            .map_err(|_| failed(format!("no answer within {} ms", READ_TIMEOUT.as_millis()), true))
            .and_then(|answer| answer)
            .inspect_err(|_| {
                self.counters.failed.inc();
            })?;
        target.read(payload.as_deref())
    }
}

/// Whether JetStream answered that the event stream does not exist: the
/// one refusal asking again will not mend. Any other (a cluster between
/// leaders answers 503, say) may pass.
fn is_stream_not_found(kind: &RawMessageErrorKind) -> bool {
    matches!(kind, RawMessageErrorKind::JetStream(error) if error.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// A retraction's target read before the fold locks the projection, so
/// that queries never wait on NATS for the lock; any other event is read
/// from the archive (the fold's thread is the only writer, so the target
/// [`momentum_domain::typed::Projection::retraction_target`] named is the
/// one the fold reads).
pub(crate) struct Prefetched<'a> {
    pub(crate) target: Option<(u64, Event)>,
    pub(crate) archive: &'a StreamArchive,
}

impl EventArchive for Prefetched<'_> {
    type Error = ArchiveError<StreamReadError>;

    fn stored_event(&self, target: &ArchivedEvent<'_>) -> Result<Event, Self::Error> {
        match &self.target {
            Some((seq, event)) if *seq == target.seq => Ok(event.clone()),
            // Unreachable while only the fold's thread writes the projection:
            // `retraction_target` names exactly the event `apply` reads. In
            // a release build it still gives the right event, read under
            // the lock.
            _ => {
                debug_assert!(false, "the fold asked for sequence {} which was not prefetched", target.seq);
                self.archive.stored_event(target)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> String {
        format!(
            r#"{{"specversion":"1.0","id":"{id}","source":"urn:test","type":"volunteer.hours_logged",
            "subject":"leeds","time":"2026-03-02T10:00:00Z","data":{{"participant":"ann","hours":1.5}}}}"#
        )
    }

    /// Reads on a blocking thread, as the fold does.
    async fn read(archive: &StreamArchive, seq: u64, id: &str) -> Result<Event, ArchiveError<StreamReadError>> {
        let (archive, id) = (archive.clone(), id.to_owned());
        tokio::task::spawn_blocking(move || {
            archive.stored_event(&ArchivedEvent { seq, movement: "leeds", source: "urn:test", id: &id })
        })
        .await
        .unwrap()
    }

    fn is_transient(read: &Result<Event, ArchiveError<StreamReadError>>) -> bool {
        matches!(read, Err(ArchiveError::Read(error)) if error.is_transient())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_event_is_read_back_by_its_sequence_and_only_as_the_event_that_arrived_there() {
        let server = momentum_testkit::NatsServer::start();
        let client = async_nats::connect(server.url()).await.unwrap();
        let jetstream = jetstream::new(client);
        momentum_bus::ensure_stream(&jetstream, &momentum_bus::StreamSettings::default()).await.unwrap();
        let subject = momentum_bus::event_subject("leeds", "volunteer.hours_logged");
        for id in ["1", "2"] {
            jetstream.publish(subject.clone(), event(id).into()).await.unwrap().await.unwrap();
        }
        let counters = ArchiveCounters::default();
        let archive = StreamArchive::new(jetstream.clone(), Handle::current(), counters.clone());

        assert_eq!(read(&archive, 2, "2").await.unwrap().id, "2");
        assert!(matches!(read(&archive, 1, "2").await, Err(ArchiveError::Mismatched { seq: 1, .. })));
        assert!(matches!(read(&archive, 3, "3").await, Err(ArchiveError::Missing { seq: 3 })));
        // The stream answered each: a wrong or missing event is damage, not a failed ask.
        assert_eq!((counters.asked.get(), counters.failed.get()), (3, 0));
        // JetStream refusing (here: no such stream) is not worth asking again.
        jetstream.delete_stream(momentum_bus::STREAM_NAME).await.unwrap();
        let refused = read(&archive, 2, "2").await;
        assert!(matches!(&refused, Err(ArchiveError::Read(_))) && !is_transient(&refused), "{refused:?}");
        assert_eq!((counters.asked.get(), counters.failed.get()), (4, 1));

        // With the server gone the read fails as one to try again, within its bound.
        drop(server);
        let started = std::time::Instant::now();
        assert!(is_transient(&read(&archive, 2, "2").await));
        assert!(started.elapsed() < READ_TIMEOUT + Duration::from_secs(1), "took {:?}", started.elapsed());
        assert_eq!((counters.asked.get(), counters.failed.get()), (5, 2));
    }

    #[test]
    fn only_a_missing_stream_is_a_refusal_not_worth_asking_again() {
        let answered = |json: &str| RawMessageErrorKind::JetStream(serde_json::from_str(json).unwrap());
        let missing = answered(r#"{"code":404,"err_code":10059,"description":"stream not found"}"#);
        assert!(is_stream_not_found(&missing));
        // What every server of a cluster answers while the stream has no leader.
        let electing =
            answered(r#"{"code":503,"err_code":10008,"description":"JetStream system temporarily unavailable"}"#);
        assert!(!is_stream_not_found(&electing));
        assert!(!is_stream_not_found(&RawMessageErrorKind::Other));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_latest_deliveries_are_read_from_memory_within_their_count_and_bytes() {
        // No server: whatever is not kept fails to be read.
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(format!("127.0.0.1:{}", momentum_testkit::free_port()))
            .await
            .unwrap();
        let counters = ArchiveCounters::default();
        let archive = StreamArchive::new(jetstream::new(client), Handle::current(), counters.clone());
        archive.remember(2, event("2").as_bytes());
        assert_eq!(read(&archive, 2, "2").await.unwrap().id, "2");
        assert!(matches!(read(&archive, 2, "1").await, Err(ArchiveError::Mismatched { seq: 2, .. })));
        archive.remember(2, event("other").as_bytes());
        assert_eq!(read(&archive, 2, "2").await.unwrap().id, "2", "a delivery again keeps what was kept");
        assert_eq!(counters.asked.get(), 0, "what is kept is not asked of the stream");

        for seq in 3..3 + RECENT_EVENTS_MAX as u64 {
            archive.remember(seq, event(&seq.to_string()).as_bytes());
        }
        assert!(is_transient(&read(&archive, 2, "2").await), "the oldest is forgotten past the count");
        assert_eq!((counters.asked.get(), counters.failed.get()), (1, 1));
        let newest = 2 + RECENT_EVENTS_MAX as u64;
        assert_eq!(read(&archive, newest, &newest.to_string()).await.unwrap().id, newest.to_string());

        // JSON may end in white space: events padded to half the bytes kept.
        let padded = |id: &str| event(id) + &" ".repeat(RECENT_BYTES_MAX / 2);
        let first = newest + 1;
        for seq in first..first + 3 {
            archive.remember(seq, padded(&seq.to_string()).as_bytes());
        }
        assert!(is_transient(&read(&archive, first, &first.to_string()).await), "forgotten past the bytes");
        let last = first + 2;
        assert_eq!(read(&archive, last, &last.to_string()).await.unwrap().id, last.to_string());
    }
}
