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
    if after >= through || count_max == 0 {
        return Ok(MovementEvents { events: Vec::new(), complete: after >= through });
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
    // The server counted the movement's messages after `after` when it made
    // the consumer: read no more than those, never waiting for new ones.
    let pending = usize::try_from(consumer.cached_info().num_pending).unwrap_or(usize::MAX);
    let mut read = MovementEvents { events: Vec::new(), complete: pending <= count_max };
    let mut messages = consumer.messages().await.map_err(failed)?;
    for _ in 0..pending.min(count_max) {
        let message = tokio::time::timeout(MESSAGE_WAIT, messages.next())
            .await
            .map_err(|_| failed("the stream did not deliver in time"))?
            .ok_or_else(|| failed("the stream ended"))?
            .map_err(failed)?;
        let seq = message.info().map_err(failed)?.stream_sequence;
        if seq > through {
            read.complete = true;
            break;
        }
        read.events.push(StoredEvent { seq, payload: message.payload.clone() });
    }
    Ok(read)
}
