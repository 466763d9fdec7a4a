//! Which stream sequence stood at a moment in time, by the stream's own
//! timestamps: what a read `as_of` a time reads as of.

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::STREAM_NAME;

/// How long the first message after the moment may take to arrive once the
/// server has said there is one.
const FIRST_MESSAGE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why the sequence at a moment could not be found.
#[derive(Debug, thiserror::Error)]
#[error("could not find the stream sequence at that time: {0}")]
pub struct SequenceAtError(String);

fn failed(error: impl std::fmt::Display) -> SequenceAtError {
    SequenceAtError(error.to_string())
}

/// The last sequence the event stream had stored by `time`: the one before
/// the first message stored after it, or the stream's last when none was.
/// JetStream stamps each message when it stores it, in sequence order.
pub async fn last_sequence_by(jetstream: &jetstream::Context, time: DateTime<Utc>) -> Result<u64, SequenceAtError> {
    let mut stream = jetstream.get_stream(STREAM_NAME).await.map_err(failed)?;
    // Nanoseconds since 1970 cover 1677 to 2262: before, nothing was
    // stored yet; after, everything was (callers refuse times to come).
    let Some(nanos) = time.timestamp_nanos_opt() else {
        return if time < DateTime::UNIX_EPOCH { Ok(0) } else { last_sequence(&mut stream).await };
    };
    // Messages stamped at `time` itself were stored by then: start just after.
    let start_time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos) + 1).map_err(failed)?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartTime { start_time },
            ..Default::default()
        })
        .await
        .map_err(failed)?;
    if consumer.cached_info().num_pending == 0 {
        // Nothing after `time` when the consumer was made: the last stored
        // since then was stored by then.
        return last_sequence(&mut stream).await;
    }
    let mut messages = consumer.messages().await.map_err(failed)?;
    let first = tokio::time::timeout(FIRST_MESSAGE_WAIT, messages.next())
        .await
        .map_err(|_| failed("the stream did not deliver in time"))?
        .ok_or_else(|| failed("the stream ended"))?
        .map_err(failed)?;
    let sequence = first.info().map_err(failed)?.stream_sequence;
    Ok(sequence.saturating_sub(1))
}

async fn last_sequence(stream: &mut jetstream::stream::Stream) -> Result<u64, SequenceAtError> {
    Ok(stream.info().await.map_err(failed)?.state.last_sequence)
}
