//! The one place that knows momentum's NATS names and protocols: the event
//! stream, its subjects, the message ids used for deduplication, and the
//! reads the projectors answer ([`protocol`]) with their subjects. Every
//! other crate asks here instead of spelling a subject.

mod connection;
mod movement_events;
mod partition;
pub mod protocol;
mod salts;
mod stream_time;

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, stream};

pub use connection::{NatsConnection, connect_options, inbox_prefix, server_addresses};
pub use movement_events::{
    MovementEvents, MovementEventsError, MovementReader, StoredEvent, movement_event_filters, open_movement_log,
    read_movement_events,
};
pub use partition::{Partition, PartitionError, SLOT_COUNT, SLOTLESS_EVENTS_FILTER, slot};
pub use salts::{SALTS_BUCKET, SaltsBucketError, ensure_salts_bucket};
pub use stream_time::{SequenceAtError, last_sequence_by};

/// The JetStream stream that is the event store.
pub const STREAM_NAME: &str = "MOMENTUM_EVENTS";
/// Every event subject starts with this.
pub const EVENTS_SUBJECT_PREFIX: &str = "momentum.events";
/// The NATS micro-service name the projector registers under.
pub const PROJECTOR_SERVICE_NAME: &str = "momentum-projector";
/// The subject group of the query endpoints; `v1` is the wire version.
pub const READ_SUBJECT_GROUP: &str = "momentum.query.v1";
/// The largest stored event, in bytes. Ingest rejects anything bigger, so the
/// stream's own limit is never the first to say no.
pub const EVENT_BYTES_MAX: usize = 256 * 1024;
/// The most distinct participants (movement and ref) one ingest request may
/// name. Ingest creates a salt in the shared bucket for each participant it
/// has not seen, one NATS request each; without this bound a 4 MiB batch of
/// one-character refs could ask for about a million, and hold ingest and
/// NATS for its whole time limit. 10 000 is a full batch of 1000 events
/// naming 10 people each, all different; `momentum import` splits its
/// batches to stay within it.
pub const PARTICIPANTS_PER_REQUEST_MAX: usize = 10_000;

/// The subject an event is published on:
/// `momentum.events.<slot>.<movement>.<type>`, where the slot is the
/// movement's hash ([`slot`]). The slot comes first so that a partitioned
/// projector takes its movements with one filter per slot; the movement
/// follows so that an operator can still pick one movement out by subject.
pub fn event_subject(movement: &str, event_type: &str) -> String {
    format!("{EVENTS_SUBJECT_PREFIX}.{}.{movement}.{event_type}", slot(movement))
}

/// Whether `subject` is where an event of this movement and type belongs:
/// its [`event_subject`], or, in a stream written before subjects had a
/// slot, `momentum.events.<movement>.<type>` (which only an unpartitioned
/// projector reads; a partitioned one refuses such a stream).
///
/// Read piece by piece, without spelling the subject out: the projector asks
/// this of every message it folds.
pub fn is_event_subject(subject: &str, movement: &str, event_type: &str) -> bool {
    let Some(rest) = subject.strip_prefix(EVENTS_SUBJECT_PREFIX).and_then(|rest| rest.strip_prefix('.')) else {
        return false;
    };
    let movement_and_type = |rest: &str| {
        rest.strip_prefix(movement).and_then(|rest| rest.strip_prefix('.')).is_some_and(|rest| rest == event_type)
    };
    // The slot as `event_subject` writes it: decimal, no sign, no leading zero.
    let is_slot = |text: &str| {
        let canonical = text.bytes().all(|byte| byte.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
        canonical && text.parse::<u32>().is_ok_and(|number| number == slot(movement))
    };
    let slotted = rest.split_once('.').is_some_and(|(slot_text, rest)| is_slot(slot_text) && movement_and_type(rest));
    slotted || movement_and_type(rest)
}

/// The JetStream message id (`Nats-Msg-Id`) for an event: a name-based
/// UUID of its movement, `source` and `id`, so that any retry of the same
/// event, from any ingest replica, is recognised by JetStream's duplicate
/// window. The movement is part of it because the projection tells events
/// apart within their movement (so that partitions fold alike): the same
/// (`source`, `id`) in two movements is two events at both steps.
pub fn message_id(movement: &str, source: &str, id: &str) -> String {
    // A fixed namespace of momentum's own; changing it would break
    // deduplication of retries that straddle an upgrade.
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6d6f_6d65_6e74_756d_8000_0000_0000_0002);
    // Movement ids never contain NUL, and the source's length goes before
    // it, so no two (movement, source, id) share a name, whatever
    // characters the source and id contain.
    let mut name = Vec::with_capacity(movement.len() + 9 + source.len() + id.len());
    name.extend_from_slice(movement.as_bytes());
    name.push(0);
    name.extend_from_slice(&(source.len() as u64).to_be_bytes());
    name.extend_from_slice(source.as_bytes());
    name.extend_from_slice(id.as_bytes());
    uuid::Uuid::new_v5(&NAMESPACE, &name).to_string()
}

/// How the event stream is set up. Everything else about it is fixed:
/// file storage, limits retention with no age, count or size limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSettings {
    /// 1 on one machine, 3 on a cluster.
    pub replicas: usize,
    /// How long JetStream remembers message ids to drop retried publishes.
    /// The projector drops duplicates however late, so this only bounds how
    /// long ingest can tell a partner "duplicate" rather than "accepted".
    pub duplicate_window: Duration,
}

impl Default for StreamSettings {
    fn default() -> StreamSettings {
        StreamSettings { replicas: 1, duplicate_window: Duration::from_secs(2 * 60 * 60) }
    }
}

impl StreamSettings {
    /// The JetStream configuration of the event stream with these settings: the one [`ensure_stream`] creates, and
    /// checks an existing stream against.
    pub fn config(&self) -> stream::Config {
        stream::Config {
            name: STREAM_NAME.to_owned(),
            description: Some("momentum's event store: every accepted event, kept forever".to_owned()),
            subjects: vec![format!("{EVENTS_SUBJECT_PREFIX}.>")],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            max_messages: -1,
            max_bytes: -1,
            max_age: Duration::ZERO,
            max_message_size: (EVENT_BYTES_MAX + 4096) as i32,
            duplicate_window: self.duplicate_window,
            num_replicas: self.replicas,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        }
    }
}

/// Why the event stream could not be set up or checked, or why the NATS connection settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Reading the event stream, or its settings, from JetStream failed; holds the client's error.
    #[error("could not read stream {STREAM_NAME}: {0}")]
    GetStream(String),
    /// The event stream did not exist and could not be created; holds the client's error.
    #[error("could not create stream {STREAM_NAME}: {0}")]
    CreateStream(String),
    /// The existing event stream has a setting other than the one this service expects; momentum leaves it as it is.
    #[error(
        "stream {STREAM_NAME} exists with a different {field} ({actual}) than this service expects ({expected}); \
         change the setting or migrate the stream by hand, momentum will not change it silently"
    )]
    IncompatibleStream {
        /// The name of the stream setting that differs, such as `replicas`.
        field: &'static str,
        /// The value this service expects, as text.
        expected: String,
        /// The value the existing stream has, as text.
        actual: String,
    },
    /// A file named in the NATS connection settings could not be read (or, for TLS files, opened).
    #[error("could not read the NATS {what} file {}: {source}", path.display())]
    ReadFile {
        /// What the file holds, such as `password` or `TLS client key`.
        what: &'static str,
        /// The path of the file, as it was given.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// A NATS secret file is empty, once one trailing line break is dropped.
    #[error("the NATS {what} file {} is empty", path.display())]
    EmptyFile {
        /// What the file should hold, such as `password` or `token`.
        what: &'static str,
        /// The path of the file, as it was given.
        path: PathBuf,
    },
    /// The NATS credentials file was read but the client could not use what it holds.
    #[error("the NATS credentials file {} is not valid: {message}", path.display())]
    InvalidCredentials {
        /// The path of the credentials file, as it was given.
        path: PathBuf,
        /// The client's reason.
        message: String,
    },
    /// A NATS URL does not parse, or the list of URLs names no server.
    #[error("the NATS URL {url:?} is not valid: {message}")]
    InvalidUrl {
        /// The URL that does not parse, or the whole list when it names no server.
        url: String,
        /// Why it is not valid.
        message: String,
    },
    /// More than one way to authenticate to NATS is set; holds the ways chosen, separated by commas.
    #[error("choose one way to authenticate to NATS, not several: {0}")]
    AuthenticationConflict(String),
    /// A NATS user is set without a password file.
    #[error(
        "a NATS user is set but no password file (MOMENTUM_NATS_PASSWORD_FILE); the password is only read from a file"
    )]
    PasswordFileMissing,
    /// A NATS password file is set without a user.
    #[error("a NATS password file is set but no user (MOMENTUM_NATS_USER)")]
    UserMissing,
    /// A TLS client certificate is set without its key file.
    #[error("a NATS TLS client certificate is set but no key file (MOMENTUM_NATS_TLS_KEY_FILE)")]
    TlsKeyMissing,
    /// A TLS client key is set without its certificate file.
    #[error("a NATS TLS client key is set but no certificate file (MOMENTUM_NATS_TLS_CERT_FILE)")]
    TlsCertificateMissing,
}

/// Creates the event stream, or checks that the existing one has the
/// settings this service expects. Safe to call from every service at start.
pub async fn ensure_stream(
    jetstream: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<stream::Stream, BusError> {
    let wanted = settings.config();
    match jetstream.get_stream(STREAM_NAME).await {
        Ok(mut existing) => {
            let info = existing.info().await.map_err(|error| BusError::GetStream(error.to_string()))?;
            check_compatible(&wanted, &info.config)?;
            Ok(existing)
        }
        Err(error)
            if matches!(error.kind(), jetstream::context::GetStreamErrorKind::JetStream(inner)
            if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            match jetstream.create_stream(wanted.clone()).await {
                Ok(created) => Ok(created),
                // Another service may have created it a moment ago.
                Err(create_error) => {
                    let mut existing = jetstream
                        .get_stream(STREAM_NAME)
                        .await
                        .map_err(|_| BusError::CreateStream(create_error.to_string()))?;
                    let info = existing.info().await.map_err(|error| BusError::GetStream(error.to_string()))?;
                    check_compatible(&wanted, &info.config)?;
                    Ok(existing)
                }
            }
        }
        Err(error) => Err(BusError::GetStream(error.to_string())),
    }
}

fn check_compatible(wanted: &stream::Config, actual: &stream::Config) -> Result<(), BusError> {
    let mismatch = |field: &'static str, expected: String, actual: String| {
        if expected == actual { Ok(()) } else { Err(BusError::IncompatibleStream { field, expected, actual }) }
    };
    mismatch("subjects", format!("{:?}", wanted.subjects), format!("{:?}", actual.subjects))?;
    mismatch("storage", format!("{:?}", wanted.storage), format!("{:?}", actual.storage))?;
    mismatch("retention", format!("{:?}", wanted.retention), format!("{:?}", actual.retention))?;
    mismatch("max_age", format!("{:?}", wanted.max_age), format!("{:?}", actual.max_age))?;
    mismatch("max_messages", wanted.max_messages.to_string(), actual.max_messages.to_string())?;
    mismatch("max_bytes", wanted.max_bytes.to_string(), actual.max_bytes.to_string())?;
    mismatch("replicas", wanted.num_replicas.to_string(), actual.num_replicas.to_string())?;
    mismatch("duplicate_window", format!("{:?}", wanted.duplicate_window), format!("{:?}", actual.duplicate_window))?;
    if actual.max_message_size >= 0 && actual.max_message_size < wanted.max_message_size {
        return Err(BusError::IncompatibleStream {
            field: "max_message_size",
            expected: format!("at least {}", wanted.max_message_size),
            actual: actual.max_message_size.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_of_the_same_event_share_a_message_id_and_others_do_not() {
        assert_eq!(message_id("m", "urn:a", "1"), message_id("m", "urn:a", "1"));
        assert_ne!(message_id("m", "urn:a", "1"), message_id("m", "urn:a", "2"));
        assert_ne!(message_id("m", "urn:a", "1"), message_id("m", "urn:b", "1"));
        assert_ne!(message_id("m", "urn:a", "1"), message_id("n", "urn:a", "1"));
        // The length prefix keeps ("ab", "c") and ("a", "bc") apart, and
        // pairs that differ only by where a NUL falls.
        assert_ne!(message_id("m", "ab", "c"), message_id("m", "a", "bc"));
        assert_ne!(message_id("m", "a\0b", "c"), message_id("m", "a", "b\0c"));
    }

    #[test]
    fn event_subjects_put_the_slot_and_the_movement_before_the_type_and_no_other_subject_fits_an_event() {
        let slot = slot("leeds");
        assert_eq!(event_subject("leeds", "meeting.held"), format!("momentum.events.{slot}.leeds.meeting.held"));
        assert!(is_event_subject(&event_subject("leeds", "meeting.held"), "leeds", "meeting.held"));
        assert!(is_event_subject("momentum.events.leeds.meeting.held", "leeds", "meeting.held"));
        let wrong_slot = format!("momentum.events.{}.leeds.meeting.held", (slot + 1) % SLOT_COUNT);
        assert!(!is_event_subject(&wrong_slot, "leeds", "meeting.held"));
        for padded in [format!("0{slot}"), format!("+{slot}"), format!("{slot} ")] {
            let subject = format!("momentum.events.{padded}.leeds.meeting.held");
            assert!(!is_event_subject(&subject, "leeds", "meeting.held"), "{subject}");
        }
        assert!(!is_event_subject("momentum.eventsleeds.meeting.held", "leeds", "meeting.held"));
        assert!(!is_event_subject(&event_subject("hull", "meeting.held"), "leeds", "meeting.held"));
        assert!(!is_event_subject(&event_subject("leeds", "action.taken"), "leeds", "meeting.held"));
    }
}
