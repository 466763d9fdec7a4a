//! The projector's store: the only code that touches sled, and the only
//! code that knows how a ledger sits in it.
//!
//! The ledger in `momentum-domain` hands this crate checkpoints: the names
//! it numbered, the pseudonyms it erased and the entries it folded since
//! the last one. A checkpoint is appended in one atomic `apply_batch` with
//! the watermark ([`Store::commit_checkpoint`]), so a crash leaves the
//! store as it was after some checkpoint. At start the projector loads the
//! ledger ([`Store::load_ledger`]: names, erased pseudonyms, then every
//! entry replayed in order) and resumes at watermark + 1.
//!
//! The records (all in the tree `ledger`; numbers big-endian in keys so
//! that keys sort by them):
//! - `w`: the watermark, a little-endian u64;
//! - `n` movement (u32) dimension (u8) number (u32): a name's text. A
//!   person's is removed when they are erased, so nothing in the store
//!   links their pseudonym to their facts;
//! - `x` movement (u32) pseudonym: an erased pseudonym;
//! - `l` sequence (u64): entries in stream order from that sequence on, as
//!   [`log`] packs them, at most [`log::RECORD_BYTES_MAX`] a record, so
//!   that a leaf of sled's tree never passes its blob threshold.

mod log;

use std::path::Path;

use momentum_domain::ledger::{Checkpoint, Damaged, Dimension, Ledger, Name};

/// Why the store could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled could not open the store, or its lock was still held after [`OPEN_LOCK_WAIT_MS_MAX`] milliseconds.
    #[error("could not open the store at {path}: {source}")]
    Open {
        /// The store's folder.
        path: String,
        /// sled's error.
        source: sled::Error,
    },
    /// A sled read or write failed.
    #[error("store read or write failed: {0}")]
    Sled(#[from] sled::Error),
    /// The store was built with another value of a setting the projection depends on, or in another format.
    #[error(
        "the store was built with {key} = {stored:?} but this projector runs with {configured:?}; \
         rebuild the projection into a new data folder to change it"
    )]
    SettingsChanged {
        /// The setting's name, such as `time_zone` or `projection_format`.
        key: String,
        /// The value the store was built with.
        stored: String,
        /// The value this projector runs with.
        configured: String,
    },
    /// A stored record this version cannot decode; holds a description of it.
    #[error("the store holds a record this version cannot read: {0}")]
    Unreadable(String),
    /// The records decode but do not make a ledger.
    #[error(transparent)]
    Damaged(#[from] Damaged),
}

/// The tree holding settings the ledger was built with, apart from the
/// ledger itself.
const SETTINGS_TREE: &str = "settings";

/// The tree holding the ledger's records.
const LEDGER_TREE: &str = "ledger";

const WATERMARK_KEY: &[u8] = b"w";
const NAME_TAG: u8 = b'n';
const ERASED_TAG: u8 = b'x';
const LOG_TAG: u8 = b'l';

/// An open store. Cheap to clone: clones share the same sled database.
#[derive(Clone)]
pub struct Store {
    database: sled::Db,
    ledger: sled::Tree,
    settings: sled::Tree,
}

/// How long [`Store::open`] waits, at most, for the lock of a store that
/// was just closed. sled releases its file lock from a background thread
/// after the last handle is dropped, so reopening a store at once (a
/// restart within one process, or a test) can find it still held for a few
/// milliseconds. A store that another live projector holds stays held far
/// longer than this, and is still refused.
pub const OPEN_LOCK_WAIT_MS_MAX: u64 = 2_000;

/// The pause between two attempts to take a just-released lock.
const OPEN_LOCK_RETRY_MS: u64 = 20;

/// Opens sled, retrying for at most [`OPEN_LOCK_WAIT_MS_MAX`] while its
/// lock is held.
fn open_sled(path: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
    loop {
        match sled::Config::new().path(path).cache_capacity(cache_bytes).open() {
            Ok(database) => return Ok(database),
            Err(source) => {
                let waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                if !is_lock_held(&source) || waited_ms >= OPEN_LOCK_WAIT_MS_MAX {
                    return Err(StoreError::Open { path: path.display().to_string(), source });
                }
                std::thread::sleep(std::time::Duration::from_millis(OPEN_LOCK_RETRY_MS));
            }
        }
    }
}

/// Whether sled refused to open because another handle holds its lock.
/// sled 0.34 reports this only as an I/O error of kind `Other` whose text
/// carries the cause, so the text is all there is to recognise it by.
fn is_lock_held(error: &sled::Error) -> bool {
    matches!(error, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

impl std::fmt::Debug for Store {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Store").finish_non_exhaustive()
    }
}

/// sled's page cache unless configured otherwise. The store is read once,
/// at start, and then only appended to, so a larger cache holds nothing a
/// read will ask for again; what it holds is memory the ledger could use.
pub const CACHE_BYTES_DEFAULT: u64 = 16 * 1024 * 1024;

/// The memory a store may use for caches. sled's own memory grows beyond
/// its page cache with the size of the store (its page table), so this
/// bounds most, not all, of a store's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreMemory {
    /// sled's page cache.
    pub page_cache_bytes: u64,
}

impl Default for StoreMemory {
    fn default() -> StoreMemory {
        StoreMemory { page_cache_bytes: CACHE_BYTES_DEFAULT }
    }
}

impl Store {
    /// Opens (or creates) the store with the default [`StoreMemory`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with_memory(path, StoreMemory::default())
    }

    /// Opens (or creates) the store with its caches bounded by `memory`.
    pub fn open_with_memory(path: &Path, memory: StoreMemory) -> Result<Store, StoreError> {
        let database = open_sled(path, memory.page_cache_bytes)?;
        let ledger = database.open_tree(LEDGER_TREE)?;
        let settings = database.open_tree(SETTINGS_TREE)?;
        Ok(Store { database, ledger, settings })
    }

    /// Records a setting the projection depends on the first time, and
    /// refuses to go on if a later start is configured differently.
    pub fn check_setting(&self, key: &str, configured: &str) -> Result<(), StoreError> {
        match self.settings.get(key)? {
            None => {
                self.settings.insert(key, configured.as_bytes())?;
                self.settings.flush()?;
                Ok(())
            }
            Some(stored) if stored.as_ref() == configured.as_bytes() => Ok(()),
            Some(stored) => Err(StoreError::SettingsChanged {
                key: key.to_owned(),
                stored: String::from_utf8_lossy(&stored).into_owned(),
                configured: configured.to_owned(),
            }),
        }
    }

    /// Refuses a store of another layout than `format`
    /// (`momentum_domain::ledger::FORMAT`). Stores made before the format
    /// was recorded hold a projection but no format: they are format 1.
    pub fn check_format(&self, format: &str) -> Result<(), StoreError> {
        const KEY: &str = "projection_format";
        let older = self.database.tree_names().iter().any(|name| name.as_ref() == b"projection");
        if self.settings.get(KEY)?.is_none() && (older || self.watermark()? > 0) {
            return Err(StoreError::SettingsChanged {
                key: KEY.to_owned(),
                stored: "1".to_owned(),
                configured: format.to_owned(),
            });
        }
        self.check_setting(KEY, format)
    }

    /// The last stream sequence whose effects are in the store.
    pub fn watermark(&self) -> Result<u64, StoreError> {
        match self.ledger.get(WATERMARK_KEY)? {
            None => Ok(0),
            Some(bytes) => Ok(u64::from_le_bytes(
                bytes
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Unreadable("a watermark of the wrong size".into()))?,
            )),
        }
    }

    /// Writes everything committed so far to disk. Commits are atomic
    /// without this; it only bounds how much a power cut can take back.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.database.flush()?;
        Ok(())
    }

    /// Appends a ledger's checkpoint, with its watermark, in one atomic
    /// step: its names, its erasures (which remove the erased people's
    /// names) and its entries. Nothing is read first.
    pub fn commit_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut records = 0;
        for name in &checkpoint.names {
            batch.insert(name_key(name.movement, name.dimension, name.number).to_vec(), name.text.as_bytes());
            records += 1;
        }
        // After the names: a person named and erased within one checkpoint
        // is removed, since a batch keeps the last change of a key.
        for erased in &checkpoint.erased {
            if let Some(person) = erased.person {
                batch.remove(name_key(erased.movement, Dimension::Person, person).to_vec());
            }
            let mut key = vec![ERASED_TAG];
            key.extend_from_slice(&erased.movement.to_be_bytes());
            key.extend_from_slice(erased.pseudonym.as_bytes());
            batch.insert(key, &[][..]);
            records += 1;
        }
        for (first_seq, bytes) in log::pack(&checkpoint.entries) {
            let mut key = vec![LOG_TAG];
            key.extend_from_slice(&first_seq.to_be_bytes());
            batch.insert(key, bytes);
            records += 1;
        }
        batch.insert(WATERMARK_KEY, &checkpoint.watermark.to_le_bytes()[..]);
        self.ledger.apply_batch(batch)?;
        reclaim_replaced_pages(records + 1);
        Ok(())
    }

    /// The ledger of everything stored: the names, the erased pseudonyms,
    /// then every entry replayed in stream order, and the watermark. Reads
    /// the whole store.
    pub fn load_ledger(&self) -> Result<Ledger, StoreError> {
        let mut ledger = Ledger::default();
        for record in self.ledger.scan_prefix([NAME_TAG]) {
            let (key, text) = record?;
            let name = read_name_key(&key, &text)?;
            ledger.restore_name(&name)?;
        }
        for record in self.ledger.scan_prefix([ERASED_TAG]) {
            let (key, _) = record?;
            let (movement, pseudonym) = key[1..].split_at_checked(4).ok_or_else(|| unreadable("an erasure", &key))?;
            let movement = u32::from_be_bytes(movement.try_into().expect("four bytes"));
            let pseudonym = std::str::from_utf8(pseudonym).map_err(|_| unreadable("an erasure", &key))?;
            ledger.restore_erased(movement, pseudonym)?;
        }
        for record in self.ledger.scan_prefix([LOG_TAG]) {
            let (key, bytes) = record?;
            let first_seq = key
                .get(1..9)
                .and_then(|bytes| bytes.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| unreadable("a log record", &key))?;
            for entry in log::unpack(first_seq, &bytes) {
                ledger.replay(&entry.map_err(StoreError::Unreadable)?)?;
            }
        }
        ledger.restore_watermark(self.watermark()?)?;
        Ok(ledger)
    }

    /// The bytes of every record in the ledger's tree, keys included: what
    /// the ledger costs to keep, before sled's own overhead.
    pub fn ledger_bytes(&self) -> Result<u64, StoreError> {
        let mut bytes = 0;
        for record in self.ledger.iter() {
            let (key, value) = record?;
            bytes += (key.len() + value.len()) as u64;
        }
        Ok(bytes)
    }
}

fn unreadable(what: &str, key: &[u8]) -> StoreError {
    StoreError::Unreadable(format!("{what} under key {key:?}"))
}

fn dimension_byte(dimension: Dimension) -> u8 {
    Dimension::ALL.iter().position(|other| *other == dimension).expect("every dimension is in ALL") as u8
}

fn name_key(movement: u32, dimension: Dimension, number: u32) -> [u8; 10] {
    let mut key = [0; 10];
    key[0] = NAME_TAG;
    key[1..5].copy_from_slice(&movement.to_be_bytes());
    key[5] = dimension_byte(dimension);
    key[6..].copy_from_slice(&number.to_be_bytes());
    key
}

fn read_name_key(key: &[u8], text: &[u8]) -> Result<Name, StoreError> {
    let key: &[u8; 10] = key.try_into().map_err(|_| unreadable("a name", key))?;
    let dimension = *Dimension::ALL.get(usize::from(key[5])).ok_or_else(|| unreadable("a name", key))?;
    let text = std::str::from_utf8(text).map_err(|_| unreadable("a name's text", key))?;
    Ok(Name {
        movement: u32::from_be_bytes(key[1..5].try_into().expect("four bytes")),
        dimension,
        number: u32::from_be_bytes(key[6..].try_into().expect("four bytes")),
        text: text.into(),
    })
}

/// Frees what sled replaced while writing `records_written` records.
///
/// sled frees a replaced page only once no thread may still read it, by
/// crossbeam's epoch-based reclamation, which frees at most
/// [`RECLAIM_BAGS_PER_ROUND`] bags of garbage each time some thread pins
/// the epoch (and only every 128th pin). A checkpoint writes its records in
/// one batch, pinned throughout, so nothing it replaces can be freed while
/// it runs; after it, the projector reads sled so seldom that the garbage
/// of a catch-up piled up faster than it was freed, by hundreds of MiB
/// (docs/benchmarks.md). So each checkpoint is followed by rounds that
/// free it, a bounded number: enough for [`RECLAIM_OBJECTS_PER_RECORD`]
/// replaced objects a record written.
fn reclaim_replaced_pages(records_written: usize) {
    let rounds = records_written.saturating_mul(RECLAIM_OBJECTS_PER_RECORD) / RECLAIM_OBJECTS_PER_ROUND + 1;
    for _ in 0..rounds {
        // `flush` hands this thread's garbage to the global queue, tries to
        // advance the epoch and frees up to eight expired bags of it.
        crossbeam_epoch::pin().flush();
    }
}

/// Garbage bags freed by one [`crossbeam_epoch::Guard::flush`].
const RECLAIM_BAGS_PER_ROUND: usize = 8;

/// Deferred frees a bag holds: crossbeam-epoch's `MAX_OBJECTS`.
const RECLAIM_OBJECTS_PER_ROUND: usize = RECLAIM_BAGS_PER_ROUND * 64;

/// Deferred frees budgeted for each record a checkpoint writes.
const RECLAIM_OBJECTS_PER_RECORD: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use momentum_domain::ledger::{Body, FoldSettings};

    #[test]
    fn a_setting_cannot_change_under_an_existing_store() {
        let folder = tempfile::tempdir().unwrap();
        let store = Store::open(folder.path()).unwrap();
        store.check_setting("time_zone", "Europe/London").unwrap();
        store.check_setting("time_zone", "Europe/London").unwrap();
        let error = store.check_setting("time_zone", "UTC").unwrap_err();
        assert!(error.to_string().contains("Europe/London"));
    }

    #[test]
    fn a_store_of_another_format_or_of_none_is_refused() {
        let folder = tempfile::tempdir().unwrap();
        let store = Store::open(folder.path()).unwrap();
        store.check_format("9").unwrap();
        store.check_format("9").unwrap();
        assert!(store.check_format("10").is_err());

        let old = tempfile::tempdir().unwrap();
        let store = Store::open(old.path()).unwrap();
        store.commit_checkpoint(&Checkpoint { watermark: 5, ..Checkpoint::default() }).unwrap();
        let error = store.check_format("9").unwrap_err();
        assert!(error.to_string().contains("\"1\""), "{error}");
    }

    fn event(id: &str, kind: &str, day: u32, data: &str) -> momentum_domain::Event {
        let json = format!(
            r#"{{"specversion":"1.0","id":"{id}","source":"urn:test","type":"{kind}","subject":"leeds",
                "time":"2026-03-{day:02}T10:00:00Z","data":{data}}}"#
        );
        momentum_domain::Event::from_json(json.as_bytes()).unwrap()
    }

    fn events() -> Vec<momentum_domain::Event> {
        let meeting = r#"{"attendees":["ann","bob"],"organisers":[{"participant":"cat","role":"citizen"}],
            "principles":["share_power"],"partners":["nhs"],"area":"north","kind":"walk"}"#;
        vec![
            event("1", "meeting.held", 2, meeting),
            event("2", "volunteer.hours_logged", 3, r#"{"participant":"ann","hours":2.5}"#),
            event("3", "event.retracted", 4, r#"{"event_id":"1"}"#),
            event("4", "meeting.held", 20, meeting),
            event("5", "participant.erased", 21, r#"{"pseudonyms":["bob"]}"#),
            event("7", "event.retracted", 21, r#"{"event_id":"6"}"#),
            event("6", "collective_action.taken", 22, r#"{"participants":["ann","bob"],"organisers":[],"reach":40}"#),
            event("8", "participant.joined", 23, r#"{"participant":"dan","role":"partner_staff","channel":"web"}"#),
        ]
    }

    #[test]
    fn checkpoints_load_back_into_the_ledger_they_came_from_and_keep_no_erased_name() {
        let folder = tempfile::tempdir().unwrap();
        let store = Store::open(folder.path()).unwrap();
        let settings = FoldSettings::default();
        let mut ledger = Ledger::default();
        for (index, event) in events().iter().enumerate() {
            ledger.apply(&settings, event, (index as u64 + 1) * 300);
            if matches!(index, 1 | 4) {
                store.commit_checkpoint(&ledger.checkpoint()).unwrap();
            }
        }
        store.commit_checkpoint(&ledger.checkpoint()).unwrap();
        assert_eq!(store.watermark().unwrap(), 2_400);
        let loaded = store.load_ledger().unwrap();
        assert!(loaded == ledger, "the loaded ledger differs");
        let texts: Vec<String> = store
            .ledger
            .iter()
            .map(|record| record.unwrap())
            .filter(|(key, _)| key[0] == NAME_TAG)
            .map(|(_, text)| String::from_utf8(text.to_vec()).unwrap())
            .collect();
        assert!(texts.contains(&"ann".to_owned()) && !texts.contains(&"bob".to_owned()), "{texts:?}");
    }

    /// A ledger of [`events`], one sequence each.
    fn folded() -> Ledger {
        let mut ledger = Ledger::default();
        for (index, event) in events().iter().enumerate() {
            ledger.apply(&FoldSettings::default(), event, index as u64 + 1);
        }
        ledger
    }

    #[test]
    fn a_damaged_record_is_an_unreadable_store_not_a_panic() {
        let folder = tempfile::tempdir().unwrap();
        let store = Store::open(folder.path()).unwrap();
        let mut ledger = folded();
        store.commit_checkpoint(&ledger.checkpoint()).unwrap();
        let (key, bytes) = store.ledger.scan_prefix([LOG_TAG]).next().unwrap().unwrap();
        for cut in 1..bytes.len() {
            store.ledger.insert(&key, &bytes[..cut]).unwrap();
            assert!(store.load_ledger().is_err(), "a record cut to {cut} bytes loads");
        }
        let mut flipped = bytes.to_vec();
        flipped[3] ^= 0xff;
        store.ledger.insert(&key, flipped).unwrap();
        assert!(store.load_ledger().is_err());
    }

    #[test]
    fn numbers_out_of_order_are_a_damaged_store_not_a_huge_allocation() {
        let folder = tempfile::tempdir().unwrap();
        let store = Store::open(folder.path()).unwrap();
        let mut ledger = folded();
        store.commit_checkpoint(&ledger.checkpoint()).unwrap();
        store.load_ledger().unwrap();
        // A person named with a number no entry gave.
        let named = name_key(0, Dimension::Person, u32::MAX - 1);
        store.ledger.insert(named, "stray").unwrap();
        assert!(matches!(store.load_ledger(), Err(StoreError::Damaged(_))));
        store.ledger.remove(named).unwrap();
        // An entry naming a person far past the next number.
        let mut checkpoint = folded().checkpoint();
        let fact = checkpoint
            .entries
            .iter_mut()
            .find_map(|entry| match &mut entry.body {
                Body::Fact(fact) if !fact.people.is_empty() => Some(fact),
                _ => None,
            })
            .unwrap();
        let mut people = fact.people.to_vec();
        people.last_mut().unwrap().person = u32::MAX - 1;
        fact.people = people.into();
        let folder = tempfile::tempdir().unwrap();
        let damaged = Store::open(folder.path()).unwrap();
        damaged.commit_checkpoint(&checkpoint).unwrap();
        assert!(matches!(damaged.load_ledger(), Err(StoreError::Damaged(_))));
    }
}
