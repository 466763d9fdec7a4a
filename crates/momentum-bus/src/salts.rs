//! The key-value bucket of pseudonym salts: one random salt per participant
//! of a movement, shared by every ingest replica. Purging a participant's
//! salt is what makes their erasure final: without it, not even the holder
//! of the pseudonym key can tie their old pseudonym to them again.

use async_nats::jetstream::{self, kv};

/// The bucket's name; its stream is `KV_momentum_pseudonym_salts`.
pub const SALTS_BUCKET: &str = "momentum_pseudonym_salts";

/// The salts bucket could not be opened or created; holds the NATS client's error.
#[derive(Debug, thiserror::Error)]
#[error("could not open or create the key-value bucket {SALTS_BUCKET}: {0}")]
pub struct SaltsBucketError(String);

/// Opens the salts bucket, creating it the first time. It keeps one
/// revision per key, so a purge leaves no older copy of a salt behind.
pub async fn ensure_salts_bucket(
    jetstream: &jetstream::Context,
    replicas: usize,
) -> Result<kv::Store, SaltsBucketError> {
    if let Ok(store) = jetstream.get_key_value(SALTS_BUCKET).await {
        return Ok(store);
    }
    let config = kv::Config {
        bucket: SALTS_BUCKET.to_owned(),
        description: "momentum pseudonym salts, one per participant of a movement; purged on erasure".to_owned(),
        history: 1,
        // JetStream counts headers in a message's size, so leave room beyond the 16-byte salt.
        max_value_size: 1024,
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    };
    match jetstream.create_key_value(config).await {
        Ok(store) => Ok(store),
        // Another replica may have created it a moment ago.
        Err(error) => jetstream.get_key_value(SALTS_BUCKET).await.map_err(|_| SaltsBucketError(error.to_string())),
    }
}
