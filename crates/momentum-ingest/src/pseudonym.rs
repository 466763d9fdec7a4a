//! Pseudonymisation of participant refs before an event reaches the stream.
//!
//! A participant of a movement gets a random salt, kept in a NATS key-value
//! bucket shared by every ingest replica. Their pseudonym is a keyed
//! HMAC-SHA256 of (movement, ref, salt), tagged with the key's version:
//! `p<version>-<32 hex digits>`. The same person in the same movement always
//! gets the same pseudonym (so distinct counts are exact), the same ref in
//! two movements gets two unrelated ones, and raw refs never reach NATS,
//! logs or sled.
//!
//! Erasure purges the participant's salt. From then on their old pseudonym
//! cannot be recomputed from their ref, not even with the key, and their
//! next event gets a new salt, so it cannot be tied to their earlier ones.
//!
//! Keys are versioned so they can be rotated: new events use the current
//! version; older versions stay in the key file only so that erasure can
//! find pseudonyms made with them. A participant seen under a new key gets a
//! new pseudonym, so figures that link people across time (new, returning,
//! retained, cohorts) see them as new after a rotation: rotate when a key
//! may have leaked, not as routine.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use ring::hmac;
use serde::Deserialize;

/// Bytes of a participant's salt.
const SALT_BYTES: usize = 16;
/// Bytes of HMAC output kept in a pseudonym: 128 bits, so that collisions
/// stay negligible for billions of participants.
const PSEUDONYM_BYTES: usize = 16;
/// The shortest secret accepted: 256 bits, the HMAC-SHA256 block strength.
const SECRET_BYTES_MIN: usize = 32;
/// Salts cached in memory per ingest replica. Beyond this the cache is
/// emptied and refilled from the bucket as events arrive, so memory stays
/// bounded (an entry is a key and a salt) whatever the number of participants.
pub(crate) const SALTS_CACHED_MAX: usize = 1_000_000;
/// Salt lookups in flight at once for one request; a batch naming many
/// people not yet cached queues behind this bound instead of flooding NATS.
const SALT_LOOKUPS_IN_FLIGHT_MAX: usize = 256;
/// How long to wait before re-opening the bucket's watch after it ends.
const WATCH_RETRY_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error(
        "no pseudonym key file: set MOMENTUM_PSEUDONYM_KEY_FILE to a TOML file with `current` and \
         [[key]] tables (version, secret); scripts/stack.sh shows how to make one"
    )]
    Missing,
    #[error("cannot read the pseudonym key file {}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error("the pseudonym key file {} is not valid: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PseudonymError {
    #[error("the pseudonym salt bucket did not answer: {0}")]
    Bucket(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    current: u32,
    key: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    version: u32,
    /// Hex; at least 32 bytes of randomness.
    secret: String,
}

/// The versioned HMAC keys from the key file.
pub(crate) struct KeyRing {
    current: u32,
    keys: BTreeMap<u32, hmac::Key>,
}

impl KeyRing {
    pub(crate) fn load(path: Option<&Path>) -> Result<KeyRing, KeyFileError> {
        let path = path.ok_or(KeyFileError::Missing)?;
        let text = std::fs::read_to_string(path)
            .map_err(|error| KeyFileError::Read { path: path.to_owned(), message: error.to_string() })?;
        KeyRing::from_toml(&text).map_err(|message| KeyFileError::Invalid { path: path.to_owned(), message })
    }

    pub(crate) fn from_toml(text: &str) -> Result<KeyRing, String> {
        let file: KeyFile = toml::from_str(text).map_err(|error| error.to_string())?;
        let mut keys = BTreeMap::new();
        for entry in file.key {
            let secret = decode_hex(entry.secret.trim())
                .ok_or_else(|| format!("key version {}: secret must be hex digits", entry.version))?;
            if secret.len() < SECRET_BYTES_MIN {
                return Err(format!(
                    "key version {}: secret must be at least {SECRET_BYTES_MIN} bytes ({} hex digits), e.g. from \
                     `openssl rand -hex 32`",
                    entry.version,
                    2 * SECRET_BYTES_MIN
                ));
            }
            if keys.insert(entry.version, hmac::Key::new(hmac::HMAC_SHA256, &secret)).is_some() {
                return Err(format!("key version {} is listed twice", entry.version));
            }
        }
        if !keys.contains_key(&file.current) {
            return Err(format!("current = {} but there is no key with that version", file.current));
        }
        Ok(KeyRing { current: file.current, keys })
    }

    fn key(&self, version: u32) -> &hmac::Key {
        &self.keys[&version]
    }

    /// The bucket key of a participant's salt under one key version: an
    /// HMAC too, so the bucket does not hold refs either.
    fn salt_id(&self, version: u32, movement: &str, participant: &str) -> String {
        let tag = keyed_hash(self.key(version), b"salt", movement, participant, &[]);
        tagged_hex('v', version, '.', &tag.as_ref()[..PSEUDONYM_BYTES])
    }

    fn pseudonym(&self, version: u32, movement: &str, participant: &str, salt: &[u8]) -> String {
        let tag = keyed_hash(self.key(version), b"ref", movement, participant, salt);
        tagged_hex('p', version, '-', &tag.as_ref()[..PSEUDONYM_BYTES])
    }
}

/// HMAC of a domain label and length-prefixed parts, so that no two inputs
/// share a message whatever characters they hold.
fn keyed_hash(key: &hmac::Key, label: &[u8], movement: &str, participant: &str, salt: &[u8]) -> hmac::Tag {
    let mut context = hmac::Context::with_key(key);
    for part in [label, movement.as_bytes(), participant.as_bytes(), salt] {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part);
    }
    context.sign()
}

/// `<letter><version><separator><hex>`, as `format!` would spell it, in one
/// allocation.
fn tagged_hex(letter: char, version: u32, separator: char, bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(2 + 10 + bytes.len() * 2);
    text.push(letter);
    write!(text, "{version}").expect("writing to a String cannot fail");
    text.push(separator);
    push_hex(&mut text, bytes);
    text
}

/// Lowercase hex, for tests.
#[cfg(test)]
fn encode_hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    push_hex(&mut text, bytes);
    text
}

/// Lowercase hex. Written out rather than with `format!` per byte, which
/// showed in ingest's profile: two of these run for every participant ref.
fn push_hex(text: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len()).step_by(2).map(|index| u8::from_str_radix(&text[index..index + 2], 16).ok()).collect()
}

/// Turns refs into pseudonyms, with salts from the shared bucket.
pub(crate) struct Pseudonymiser {
    keys: KeyRing,
    bucket: kv::Store,
    /// Salt id → salt. Filled as refs are seen; entries are dropped when the
    /// bucket says a salt was purged, and all of them whenever the watch on
    /// the bucket had to be re-opened (something may have been missed).
    salts: Mutex<HashMap<String, [u8; SALT_BYTES]>>,
    random: ring::rand::SystemRandom,
}

impl Pseudonymiser {
    pub(crate) fn new(keys: KeyRing, bucket: kv::Store) -> Arc<Pseudonymiser> {
        let pseudonymiser = Arc::new(Pseudonymiser {
            keys,
            bucket,
            salts: Mutex::new(HashMap::new()),
            random: ring::rand::SystemRandom::new(),
        });
        tokio::spawn(forget_purged_salts(Arc::downgrade(&pseudonymiser)));
        pseudonymiser
    }

    /// The pseudonyms of the given (movement, ref) pairs under the current
    /// key, creating salts for participants seen for the first time.
    pub(crate) async fn pseudonyms(
        &self,
        participants: HashSet<(String, String)>,
    ) -> Result<HashMap<(String, String), String>, PseudonymError> {
        let version = self.keys.current;
        let with_ids: Vec<_> = participants
            .into_iter()
            .map(|(movement, participant)| {
                let salt_id = self.keys.salt_id(version, &movement, &participant);
                (movement, participant, salt_id)
            })
            .collect();
        // Most refs are cached: their salts are read under one lock, and
        // only the others wait for the bucket, each as a future of its own.
        let cached: Vec<Option<[u8; SALT_BYTES]>> = {
            let salts = self.salts.lock().expect("the salt cache is never poisoned");
            with_ids.iter().map(|(_, _, salt_id)| salts.get(salt_id).copied()).collect()
        };
        let mut pseudonyms = HashMap::with_capacity(with_ids.len());
        let mut uncached = Vec::new();
        for ((movement, participant, salt_id), salt) in with_ids.into_iter().zip(cached) {
            match salt {
                Some(salt) => {
                    let pseudonym = self.keys.pseudonym(version, &movement, &participant, &salt);
                    pseudonyms.insert((movement, participant), pseudonym);
                }
                None => uncached.push((movement, participant, salt_id)),
            }
        }
        if uncached.is_empty() {
            return Ok(pseudonyms);
        }
        let lookups = uncached.into_iter().map(|(movement, participant, salt_id)| async move {
            let salt = self.salt(&salt_id).await?;
            let pseudonym = self.keys.pseudonym(version, &movement, &participant, &salt);
            Ok::<_, PseudonymError>(((movement, participant), pseudonym))
        });
        let mut looked_up = futures::stream::iter(lookups).buffer_unordered(SALT_LOOKUPS_IN_FLIGHT_MAX);
        while let Some(found) = looked_up.try_next().await? {
            pseudonyms.insert(found.0, found.1);
        }
        Ok(pseudonyms)
    }

    async fn salt(&self, salt_id: &str) -> Result<[u8; SALT_BYTES], PseudonymError> {
        if let Some(salt) = self.salts.lock().expect("the salt cache is never poisoned").get(salt_id) {
            return Ok(*salt);
        }
        // Create first, read only if that fails: a ref missing from the
        // cache is most often new, and one round trip to the bucket for it
        // instead of two is much of what ingest costs NATS.
        let mut fresh = [0u8; SALT_BYTES];
        ring::rand::SecureRandom::fill(&self.random, &mut fresh)
            .map_err(|_| PseudonymError::Bucket("no randomness for a new salt".to_owned()))?;
        let salt = match self.bucket.create(salt_id, Bytes::copy_from_slice(&fresh)).await {
            Ok(_) => fresh,
            // Seen before (by this replica before a restart, or by another):
            // the stored salt is theirs.
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {
                self.stored_salt(salt_id).await?.ok_or_else(|| PseudonymError::Bucket(error.to_string()))?
            }
            Err(error) => return Err(PseudonymError::Bucket(error.to_string())),
        };
        let mut salts = self.salts.lock().expect("the salt cache is never poisoned");
        if salts.len() >= SALTS_CACHED_MAX {
            salts.clear();
        }
        salts.insert(salt_id.to_owned(), salt);
        Ok(salt)
    }

    async fn stored_salt(&self, salt_id: &str) -> Result<Option<[u8; SALT_BYTES]>, PseudonymError> {
        let stored = self.bucket.get(salt_id).await.map_err(|error| PseudonymError::Bucket(error.to_string()))?;
        Ok(stored.and_then(|bytes| <[u8; SALT_BYTES]>::try_from(bytes.as_ref()).ok()))
    }

    /// The pseudonyms a participant has had under every key version, and
    /// the salt ids to purge to erase them. Creates no salt.
    pub(crate) async fn find(&self, movement: &str, participant: &str) -> Result<Erasure, PseudonymError> {
        let mut erasure = Erasure::default();
        for &version in self.keys.keys.keys() {
            let salt_id = self.keys.salt_id(version, movement, participant);
            if let Some(salt) = self.stored_salt(&salt_id).await? {
                erasure.pseudonyms.push(self.keys.pseudonym(version, movement, participant, &salt));
                erasure.salt_ids.push(salt_id);
            }
        }
        Ok(erasure)
    }

    /// Purges the salts of an erasure from the bucket and from this
    /// replica's cache.
    pub(crate) async fn purge(&self, erasure: &Erasure) -> Result<(), PseudonymError> {
        for salt_id in &erasure.salt_ids {
            self.salts.lock().expect("the salt cache is never poisoned").remove(salt_id);
            self.bucket.purge(salt_id).await.map_err(|error| PseudonymError::Bucket(error.to_string()))?;
        }
        Ok(())
    }
}

/// What erasing one participant of one movement touches.
#[derive(Debug, Default)]
pub(crate) struct Erasure {
    pub pseudonyms: Vec<String>,
    salt_ids: Vec<String>,
}

/// Keeps the cache true to the bucket: a salt purged through another
/// replica is dropped here too. Runs until the pseudonymiser is dropped.
async fn forget_purged_salts(pseudonymiser: std::sync::Weak<Pseudonymiser>) {
    loop {
        let Some(strong) = pseudonymiser.upgrade() else { return };
        let watch = strong.bucket.watch_all().await;
        // Whatever happened while no watch was open is unknown: start afresh.
        strong.salts.lock().expect("the salt cache is never poisoned").clear();
        drop(strong);
        if let Ok(mut watch) = watch {
            while let Some(entry) = watch.next().await {
                let Some(strong) = pseudonymiser.upgrade() else { return };
                match entry {
                    Ok(entry) if entry.operation != kv::Operation::Put => {
                        strong.salts.lock().expect("the salt cache is never poisoned").remove(&entry.key);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        tokio::time::sleep(WATCH_RETRY_DELAY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_with(versions: &[u32], current: u32) -> KeyRing {
        let keys: String = versions
            .iter()
            .map(|version| {
                format!("[[key]]\nversion = {version}\nsecret = \"{}\"\n", format!("{version:02x}").repeat(32))
            })
            .collect();
        KeyRing::from_toml(&format!("current = {current}\n{keys}")).unwrap()
    }

    #[test]
    fn hex_is_two_lowercase_digits_a_byte_and_reads_back() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = encode_hex(&bytes);
        assert_eq!(&text[..8], "00010203");
        assert_eq!(&text[text.len() - 6..], "fdfeff");
        assert_eq!(text.len(), 512);
        assert_eq!(decode_hex(&text), Some(bytes));
    }

    #[test]
    fn a_pseudonym_depends_on_movement_ref_salt_and_key_and_never_shows_the_ref() {
        let keys = ring_with(&[1, 2], 2);
        let salt = [7u8; SALT_BYTES];
        let pseudonym = keys.pseudonym(2, "leeds", "alice@example.org", &salt);
        assert_eq!(pseudonym, keys.pseudonym(2, "leeds", "alice@example.org", &salt));
        assert!(pseudonym.starts_with("p2-") && pseudonym.len() == 3 + 2 * PSEUDONYM_BYTES);
        assert!(!pseudonym.contains("alice"));
        for other in [
            keys.pseudonym(2, "york", "alice@example.org", &salt),
            keys.pseudonym(2, "leeds", "alice@example.com", &salt),
            keys.pseudonym(2, "leeds", "alice@example.org", &[8u8; SALT_BYTES]),
            keys.pseudonym(1, "leeds", "alice@example.org", &salt),
            // The length prefixes keep ("ab", "c") apart from ("a", "bc").
            keys.pseudonym(2, "leedsa", "lice@example.org", &salt),
        ] {
            assert_ne!(pseudonym, other);
        }
        assert_ne!(keys.salt_id(2, "leeds", "alice"), keys.salt_id(1, "leeds", "alice"));
    }

    #[test]
    fn pseudonyms_and_salt_ids_are_spelled_as_they_always_were() {
        // Stored events and the salt bucket hold these spellings: a change
        // would give every participant a second pseudonym.
        assert_eq!(tagged_hex('p', 12, '-', &[0xab, 0x01, 0xff]), "p12-ab01ff");
        let keys = ring_with(&[3], 3);
        let tag = keyed_hash(keys.key(3), b"salt", "leeds", "ann", &[]);
        let hex: String = tag.as_ref()[..PSEUDONYM_BYTES].iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(keys.salt_id(3, "leeds", "ann"), format!("v3.{hex}"));
    }

    #[test]
    fn key_files_with_mistakes_are_refused_with_a_reason() {
        let secret = "ab".repeat(32);
        for (text, expected) in [
            (format!("current = 2\n[[key]]\nversion = 1\nsecret = \"{secret}\""), "no key with that version"),
            ("current = 1\n[[key]]\nversion = 1\nsecret = \"abcd\"".to_owned(), "at least 32 bytes"),
            ("current = 1\n[[key]]\nversion = 1\nsecret = \"not hex\"".to_owned(), "hex digits"),
            (
                format!(
                    "current = 1\n[[key]]\nversion = 1\nsecret = \"{secret}\"\n[[key]]\nversion = 1\nsecret = \"{secret}\""
                ),
                "twice",
            ),
        ] {
            let error = KeyRing::from_toml(&text).err().expect("refused");
            assert!(error.contains(expected), "{error:?} should mention {expected:?}");
        }
    }
}
