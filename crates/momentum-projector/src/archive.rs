//! Reading a retraction's target back from the event stream. The stream
//! keeps every event, so the store keeps none of their JSON (store format
//! 8): each event's JSON in sled was most of the bytes a checkpoint wrote.

use std::time::Duration;

use async_nats::jetstream::{self, stream::RawMessageErrorKind};
use momentum_domain::Event;
use momentum_domain::typed::{ArchiveError, ArchivedEvent, EventArchive};
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
}

/// The event stream as the fold's archive: a read blocks the calling
/// thread (the fold runs on tokio's blocking pool) for one request to the
/// stream's leader. Retractions are rare (about 1 event in 90 in the
/// demo's mix), so they are read one at a time.
#[derive(Clone)]
pub(crate) struct StreamArchive {
    jetstream: jetstream::Context,
    runtime: Handle,
}

impl StreamArchive {
    /// An archive asking through `jetstream`, on `runtime`'s reactor.
    pub(crate) fn new(jetstream: jetstream::Context, runtime: Handle) -> StreamArchive {
        StreamArchive { jetstream, runtime }
    }
}

impl EventArchive for StreamArchive {
    type Error = ArchiveError<StreamReadError>;

    fn stored_event(&self, target: &ArchivedEvent<'_>) -> Result<Event, Self::Error> {
        let seq = target.seq;
        let failed = |message: String| ArchiveError::Read(StreamReadError { seq, message });
        let asking = async {
            let stream = self
                .jetstream
                .get_stream_no_info(momentum_bus::STREAM_NAME)
                .await
                .map_err(|error| failed(error.to_string()))?;
            match stream.get_raw_message(seq).await {
                Ok(message) => Ok(Some(message.payload)),
                Err(error) if matches!(error.kind(), RawMessageErrorKind::NoMessageFound) => Ok(None),
                Err(error) => Err(failed(error.to_string())),
            }
        };
        let payload = self
            .runtime
            .block_on(tokio::time::timeout(READ_TIMEOUT, asking))
            .map_err(|_| failed(format!("no answer within {} ms", READ_TIMEOUT.as_millis())))??;
        target.read(payload.as_deref())
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
    async fn read(archive: &StreamArchive, seq: u64, id: &'static str) -> Result<Event, ArchiveError<StreamReadError>> {
        let archive = archive.clone();
        tokio::task::spawn_blocking(move || {
            archive.stored_event(&ArchivedEvent { seq, movement: "leeds", source: "urn:test", id })
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn an_event_is_read_back_by_its_sequence_and_only_as_the_event_that_arrived_there() {
        let server = momentum_testkit::NatsServer::start();
        let client = async_nats::connect(server.url()).await.unwrap();
        let jetstream = jetstream::new(client);
        momentum_bus::ensure_stream(&jetstream, &momentum_bus::StreamSettings::default()).await.unwrap();
        let subject = momentum_bus::event_subject("leeds", "volunteer.hours_logged");
        for id in ["1", "2"] {
            jetstream.publish(subject.clone(), event(id).into()).await.unwrap().await.unwrap();
        }
        let archive = StreamArchive::new(jetstream.clone(), Handle::current());

        assert_eq!(read(&archive, 2, "2").await.unwrap().id, "2");
        assert!(matches!(read(&archive, 1, "2").await, Err(ArchiveError::Mismatched { seq: 1, .. })));
        assert!(matches!(read(&archive, 3, "3").await, Err(ArchiveError::Missing { seq: 3 })));

        // With the server gone the read fails as one to try again, within its bound.
        drop(server);
        let started = std::time::Instant::now();
        assert!(matches!(read(&archive, 2, "2").await, Err(ArchiveError::Read(_))));
        assert!(started.elapsed() < READ_TIMEOUT + Duration::from_secs(1), "took {:?}", started.elapsed());
    }
}
