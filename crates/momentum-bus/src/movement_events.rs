//! One movement's stored events read from the stream, a page at a time:
//! what the events export reads. An ordered consumer filtered to the
//! movement's subjects starts after the cursor and reads no further than
//! asked.

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use bytes::Bytes;
use futures::StreamExt;

use crate::{EVENTS_SUBJECT_PREFIX, STREAM_NAME, slot};

/// How long a message the server has said is there may take to arrive.
const MESSAGE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a movement's events could not be read.
#[derive(Debug, thiserror::Error)]
#[error("the event stream could not be read: {0}")]
pub struct MovementEventsError(String);

fn failed(error: impl std::fmt::Display) -> MovementEventsError {
    MovementEventsError(error.to_string())
}

/// The subjects a movement's events of `types` (of every type when empty)
/// are stored on: its slotted subjects, and those of a stream written
/// before subjects had a slot. The server then skips other types itself.
pub fn movement_event_filters(movement: &str, types: &[&str]) -> Vec<String> {
    let types = if types.is_empty() { vec!["*.*"] } else { types.to_vec() };
    let slot = slot(movement);
    types
        .iter()
        .flat_map(|kind| {
            [
                format!("{EVENTS_SUBJECT_PREFIX}.{slot}.{movement}.{kind}"),
                format!("{EVENTS_SUBJECT_PREFIX}.{movement}.{kind}"),
            ]
        })
        .collect()
}

/// One stored message: its stream sequence and its payload.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    /// Its stream sequence.
    pub seq: u64,
    /// The event as stored.
    pub payload: Bytes,
}

/// What a page read found.
#[derive(Debug, Default)]
pub struct MovementEvents {
    /// The movement's messages after `after`, up to `through`, in stream order.
    pub events: Vec<StoredEvent>,
    /// Whether every message of the movement up to `through` is in `events`.
    pub complete: bool,
}

/// A movement's messages read in stream order, no further than a sequence
/// fixed when it opens: what the export command reads a whole log with.
pub struct MovementReader {
    messages: Option<jetstream::consumer::pull::Ordered>,
    /// The movement's messages after the start when it opened.
    pending: u64,
    read: u64,
    through: u64,
}

impl MovementReader {
    /// Opens a reader of `movement`'s messages of `types` (every type when
    /// empty) stored after `after` and no later than `through`.
    pub async fn open(
        jetstream: &jetstream::Context,
        movement: &str,
        types: &[&str],
        after: u64,
        through: u64,
    ) -> Result<MovementReader, MovementEventsError> {
        if after >= through {
            return Ok(MovementReader { messages: None, pending: 0, read: 0, through });
        }
        let stream = jetstream.get_stream(STREAM_NAME).await.map_err(failed)?;
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: after + 1 },
                filter_subjects: movement_event_filters(movement, types),
                ..Default::default()
            })
            .await
            .map_err(failed)?;
        // The server counted the movement's messages after `after` when it
        // made the consumer: read no more than those, never waiting for new ones.
        let pending = consumer.cached_info().num_pending;
        let messages = consumer.messages().await.map_err(failed)?;
        Ok(MovementReader { messages: Some(messages), pending, read: 0, through })
    }

    /// How many messages of the movement the server counted (some may lie past `through`).
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// The next message, or `None` past the last one counted or past `through`.
    pub async fn next(&mut self) -> Result<Option<StoredEvent>, MovementEventsError> {
        let Some(messages) = self.messages.as_mut() else { return Ok(None) };
        if self.read >= self.pending {
            return Ok(None);
        }
        let message = tokio::time::timeout(MESSAGE_WAIT, messages.next())
            .await
            .map_err(|_| failed("the stream did not deliver in time"))?
            .ok_or_else(|| failed("the stream ended"))?
            .map_err(failed)?;
        self.read += 1;
        let seq = message.info().map_err(failed)?.stream_sequence;
        if seq > self.through {
            self.read = self.pending;
            return Ok(None);
        }
        Ok(Some(StoredEvent { seq, payload: message.payload.clone() }))
    }

    /// The last sequence it reads up to.
    pub fn through(&self) -> u64 {
        self.through
    }

    /// Whether every message of the movement up to `through` has been read.
    pub fn finished(&self) -> bool {
        self.read >= self.pending
    }
}

/// Connects to the NATS servers at `urls` as `service` and opens a reader
/// of every message of `movement` the stream has stored so far: what the
/// export command reads.
pub async fn open_movement_log(
    urls: &str,
    connection: &crate::NatsConnection,
    service: &str,
    movement: &str,
) -> Result<MovementReader, MovementEventsError> {
    let nats = crate::connect_options(service, connection)
        .map_err(failed)?
        .connect(crate::server_addresses(urls).map_err(failed)?)
        .await
        .map_err(|error| failed(format!("cannot connect to NATS at {urls}: {error}")))?;
    let jetstream = jetstream::new(nats);
    let mut stream = jetstream.get_stream(STREAM_NAME).await.map_err(failed)?;
    let through = stream.info().await.map_err(failed)?.state.last_sequence;
    MovementReader::open(&jetstream, movement, &[], 0, through).await
}

/// Reads at most `count_max` of `movement`'s messages of `types` (every
/// type when empty) stored after sequence `after` and no later than
/// `through`.
pub async fn read_movement_events(
    jetstream: &jetstream::Context,
    movement: &str,
    types: &[&str],
    after: u64,
    through: u64,
    count_max: usize,
) -> Result<MovementEvents, MovementEventsError> {
    let mut reader = MovementReader::open(jetstream, movement, types, after, through).await?;
    let mut read = MovementEvents::default();
    while read.events.len() < count_max {
        match reader.next().await? {
            Some(event) => read.events.push(event),
            None => break,
        }
    }
    read.complete = reader.finished();
    Ok(read)
}
