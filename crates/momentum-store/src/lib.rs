//! The projector's store: the only code that touches sled.
//!
//! The fold in `momentum-domain` decides what is stored; this crate keeps it
//! durable. The projector folds into a typed projection in memory and hands
//! this crate checkpoints: the records it changed, whole, which reach sled
//! in one atomic `apply_batch` with the watermark ([`Store::commit_checkpoint`]).
//! A crash therefore leaves the store as it was after some checkpoint, and
//! the projector loads it ([`Store::load_projection`]) and resumes at
//! watermark + 1.
//!
//! The store also answers key-value reads ([`StateRead`]), over the records,
//! so that tests can compare stores.
//! The few entries every trend read touched when reads came from sled (the
//! watermark, movements and period totals: `projection::keys::is_resident`)
//! are kept in memory too.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::{Bound, ControlFlow};
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use momentum_domain::projection::{self, Entries, Entry, StateRead, keys};
use momentum_domain::typed::{Checkpoint, Projection, RecordEntries, UnreadableKey};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("could not open the store at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("store read or write failed: {0}")]
    Sled(#[from] sled::Error),
    #[error(
        "the store was built with {key} = {stored:?} but this projector runs with {configured:?}; \
         rebuild the projection into a new data folder to change it"
    )]
    SettingsChanged { key: String, stored: String, configured: String },
    #[error("the store holds a record this version cannot read: {0}")]
    Unreadable(UnreadableKey),
}

/// The tree holding settings the projection was built with, apart from the
/// projection itself so that a listing of the projection never meets them.
const SETTINGS_TREE: &str = "settings";

/// An open store. Cheap to clone: clones share the same sled database.
#[derive(Clone)]
pub struct Store {
    database: sled::Db,
    projection: sled::Tree,
    settings: sled::Tree,
    /// A copy of the resident entries, updated under its lock after sled
    /// has applied each commit. Every read of a resident key comes from
    /// here, so a reader that reads the watermark and then period totals
    /// never sees totals older than the watermark it read.
    resident: Arc<RwLock<BTreeMap<Vec<u8>, Vec<u8>>>>,
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

/// sled's page cache unless configured otherwise. A catch-up over a million
/// events ran as fast with 64 MiB as with 256 MiB (the fold's cost is
/// sled's writes, not its reads), and peaked at 651 MiB of memory instead
/// of 1 162 MiB (docs/benchmarks.md).
pub const CACHE_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

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
        let projection = database.open_tree("projection")?;
        let settings = database.open_tree(SETTINGS_TREE)?;
        let mut resident = BTreeMap::new();
        for (start, end) in keys::resident_ranges() {
            for entry in projection.range(start..end) {
                let (key, value) = entry?;
                resident.insert(key.to_vec(), value.to_vec());
            }
        }
        Ok(Store { database, projection, settings, resident: Arc::new(RwLock::new(resident)) })
    }

    /// The in-memory copy, for reading. Its writer never panics while
    /// holding the lock, so a poisoned lock still holds a consistent map.
    fn resident(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        self.resident.read().unwrap_or_else(PoisonError::into_inner)
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

    /// Refuses a store whose projection has another layout than `format`
    /// (`momentum_domain::projection::FORMAT`). Stores made before the
    /// format was recorded hold events but no format: they are format 1.
    pub fn check_format(&self, format: &str) -> Result<(), StoreError> {
        const KEY: &str = "projection_format";
        if self.settings.get(KEY)?.is_none() && self.watermark()? > 0 {
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
        projection::watermark(self)
    }

    /// Writes everything committed so far to disk. Commits are atomic
    /// without this; it only bounds how much a power cut can take back.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.database.flush()?;
        Ok(())
    }

    /// Writes a typed projection's checkpoint: every record it names,
    /// replaced whole, and its watermark, in one atomic step. Nothing is
    /// read first, so it costs the records written, not the records' reads.
    pub fn commit_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut resident_changes = Vec::new();
        for (name, entries) in &checkpoint.records {
            // Borrowed: sled copies the bytes into its own buffer anyway, so
            // copying them first only doubled the work.
            let bytes = Record::encode_entries(name, entries);
            if keys::is_resident(name) {
                resident_changes.push((name.clone(), bytes.map(<[u8]>::to_vec)));
            }
            match bytes {
                Some(bytes) => batch.insert(name.as_slice(), bytes),
                None => batch.remove(name.as_slice()),
            }
        }
        let watermark = checkpoint.watermark.to_le_bytes().to_vec();
        batch.insert(keys::WATERMARK, watermark.clone());
        resident_changes.push((keys::WATERMARK.to_vec(), Some(watermark)));
        self.projection.apply_batch(batch)?;
        reclaim_replaced_pages(checkpoint.records.len());
        let mut resident = self.resident.write().unwrap_or_else(PoisonError::into_inner);
        for (key, value) in resident_changes {
            match value {
                Some(value) => resident.insert(key, value),
                None => resident.remove(&key),
            };
        }
        Ok(())
    }

    /// The typed projection of everything stored: each record's keys, in
    /// key order, given to [`Projection::load_entry`], then checked
    /// ([`Projection::check_loaded`]). Reads the whole store (events
    /// included, though of most only the sequence in their key is kept),
    /// so it takes seconds for a store of a million events.
    pub fn load_projection(&self) -> Result<Projection, StoreError> {
        let mut projection = Projection::default();
        let mut key = Vec::new();
        for record in self.projection.iter() {
            let (name, bytes) = record?;
            let mut failure = None;
            let flow =
                Record::visit(&name, &bytes, &mut key, &mut |key, value| match projection.load_entry(key, value) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(error) => {
                        failure = Some(error);
                        ControlFlow::Break(())
                    }
                })?;
            if flow.is_break() {
                return Err(StoreError::Unreadable(failure.expect("the visit breaks only on an unreadable key")));
            }
        }
        projection.check_loaded().map_err(StoreError::Unreadable)?;
        Ok(projection)
    }

    /// Every entry of the projection, in key order: for tests that compare
    /// a store with one rebuilt from scratch.
    pub fn entries(&self) -> Result<Entries, StoreError> {
        self.scan_prefix(&[])
    }
}

/// Frees what sled replaced while writing `records_written` records.
///
/// sled frees a replaced page only once no thread may still read it, by
/// crossbeam's epoch-based reclamation, which frees at most
/// [`RECLAIM_BAGS_PER_ROUND`] bags of garbage each time some thread pins
/// the epoch (and only every 128th pin). A checkpoint writes its records in
/// one batch, pinned throughout, so nothing it replaces can be freed while
/// it runs; after it, the projector reads sled so seldom that the garbage
/// of a catch-up piled up faster than it was freed: 950 MiB after 200 000
/// events, 112 MiB once a scan had pinned the epoch two million times
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

/// Shown each key and value of a walk in key order; breaks to stop it.
type Visitor<'visit> = dyn FnMut(&[u8], &[u8]) -> ControlFlow<()> + 'visit;

/// The keys of the range `start..end` (`end` `None` for no end).
type Range<'key> = (&'key [u8], Option<&'key [u8]>);

/// The first key after every key that starts with `prefix`, or `None` if
/// there is none (a prefix of 0xff bytes only).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|byte| *byte != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

fn in_range(key: &[u8], (start, end): Range<'_>) -> bool {
    key >= start && end.is_none_or(|end| key < end)
}

/// The first stored record that may hold keys of a range: the bucket of its
/// start if the start names one, else the start itself. A bucket that sorts
/// before this holds only keys before the start (`keys::bucket_len`).
fn first_record(start: &[u8]) -> &[u8] {
    &start[..keys::bucket_len(start).unwrap_or(start.len())]
}

/// One stored record: a bucket's entries, or the value of a key that is
/// its own bucket.
///
/// A bucket is stored as its entries in key order, each as the rest of its
/// key after the bucket's name and its value, both prefixed by their
/// length as a little-endian u32.
struct Record;

impl Record {
    /// Shows `visit` every key and value of the record stored under `name`;
    /// `key` is a buffer for the whole keys. Stops when `visit` breaks.
    /// A damaged record is an error before `visit` sees any of it.
    fn visit(
        name: &[u8],
        bytes: &[u8],
        key: &mut Vec<u8>,
        visit: &mut Visitor<'_>,
    ) -> Result<ControlFlow<()>, StoreError> {
        if !keys::is_bucket(name) {
            return Ok(visit(name, bytes));
        }
        for (suffix, value) in RecordEntries::decode(name, bytes).map_err(StoreError::Unreadable)? {
            key.clear();
            key.extend_from_slice(name);
            key.extend_from_slice(suffix);
            if visit(key, value).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// The value of the key `name` + `suffix` in the record stored under
    /// `name`.
    fn find(name: &[u8], bytes: &[u8], suffix: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if !keys::is_bucket(name) {
            return Ok(suffix.is_empty().then(|| bytes.to_vec()));
        }
        for (stored, value) in RecordEntries::decode(name, bytes).map_err(StoreError::Unreadable)? {
            match stored.cmp(suffix) {
                Ordering::Less => {}
                Ordering::Equal => return Ok(Some(value.to_vec())),
                Ordering::Greater => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The record to store for `entries` (in suffix order, as a checkpoint
    /// lists them) under `name`; `None` when it is empty.
    fn encode_entries<'a>(name: &[u8], entries: &'a RecordEntries) -> Option<&'a [u8]> {
        if !keys::is_bucket(name) {
            return entries.iter().next().map(|(_, value)| value);
        }
        (!entries.is_empty()).then(|| entries.as_bytes())
    }
}

/// Splits a key into the name of its record and the rest.
fn split_key(key: &[u8]) -> (&[u8], &[u8]) {
    key.split_at(keys::bucket_len(key).unwrap_or(key.len()))
}

/// The reads a store and a batch answer alike, on top of their own walk.
trait Walk {
    /// Shows `visit` every entry of `range` in key order until it breaks.
    fn walk(&self, range: Range<'_>, visit: &mut Visitor<'_>) -> Result<(), StoreError>;

    fn collect(&self, range: Range<'_>) -> Result<Entries, StoreError> {
        let mut entries = Vec::new();
        self.walk(range, &mut |key, value| {
            entries.push((key.to_vec(), value.to_vec()));
            ControlFlow::Continue(())
        })?;
        Ok(entries)
    }

    fn collect_prefix(&self, prefix: &[u8]) -> Result<Entries, StoreError> {
        self.collect((prefix, prefix_end(prefix).as_deref()))
    }

    fn first_of_prefix(&self, prefix: &[u8]) -> Result<Option<Entry>, StoreError> {
        let mut first = None;
        self.walk((prefix, prefix_end(prefix).as_deref()), &mut |key, value| {
            first = Some((key.to_vec(), value.to_vec()));
            ControlFlow::Break(())
        })?;
        Ok(first)
    }
}

impl Walk for Store {
    fn walk(&self, range: Range<'_>, visit: &mut Visitor<'_>) -> Result<(), StoreError> {
        let (start, end) = range;
        if end.is_some_and(|end| start >= end) {
            return Ok(());
        }
        if let Some(end) = end
            && keys::is_resident_range(start, end)
        {
            for (key, value) in self.resident().range::<[u8], _>((Bound::Included(start), Bound::Excluded(end))) {
                if visit(key, value).is_break() {
                    break;
                }
            }
            return Ok(());
        }
        let records = match end {
            Some(end) => self.projection.range(first_record(start)..end),
            None => self.projection.range(first_record(start)..),
        };
        let mut key = Vec::new();
        for record in records {
            let (name, bytes) = record?;
            let flow = Record::visit(&name, &bytes, &mut key, &mut |key, value| {
                if key < start {
                    return ControlFlow::Continue(());
                }
                if !in_range(key, range) {
                    return ControlFlow::Break(());
                }
                visit(key, value)
            })?;
            if flow.is_break() {
                break;
            }
        }
        Ok(())
    }
}

impl StateRead for Store {
    type Error = StoreError;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if keys::is_resident(key) {
            return Ok(self.resident().get(key).cloned());
        }
        let (name, suffix) = split_key(key);
        match self.projection.get(name)? {
            Some(bytes) => Record::find(name, &bytes, suffix),
            None => Ok(None),
        }
    }

    fn first_with_prefix(&self, prefix: &[u8]) -> Result<Option<Entry>, StoreError> {
        self.first_of_prefix(prefix)
    }

    fn scan_range(&self, start: &[u8], end: &[u8]) -> Result<Entries, StoreError> {
        self.collect((start, Some(end)))
    }

    fn visit_range(&self, start: &[u8], end: &[u8], visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), StoreError> {
        self.walk((start, Some(end)), &mut |key, value| {
            visit(key, value);
            ControlFlow::Continue(())
        })
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, StoreError> {
        self.collect_prefix(prefix)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Applies `changes` to `model` and writes them as a checkpoint does:
    /// every record a changed key belongs to, whole, as `model` then holds
    /// it, with the watermark.
    fn commit(
        store: &Store,
        model: &mut BTreeMap<Vec<u8>, Vec<u8>>,
        changes: &[(Vec<u8>, Option<Vec<u8>>)],
        watermark: u64,
    ) {
        let mut names = BTreeSet::new();
        for (key, value) in changes {
            match value {
                Some(value) => model.insert(key.clone(), value.clone()),
                None => model.remove(key),
            };
            names.insert(key[..keys::bucket_len(key).unwrap_or(key.len())].to_vec());
        }
        let records = names
            .into_iter()
            .map(|name| {
                let entries = if keys::is_bucket(&name) {
                    let bucket = model.range(name.clone()..).take_while(|(key, _)| key.starts_with(&name));
                    RecordEntries::from_pairs(bucket.map(|(key, value)| (&key[name.len()..], value.as_slice())))
                } else {
                    RecordEntries::from_pairs(model.get(&name).map(|value| (&[][..], value.as_slice())))
                };
                (name, entries)
            })
            .collect();
        store.commit_checkpoint(&Checkpoint { watermark, records }).unwrap();
        model.insert(keys::WATERMARK.to_vec(), watermark.to_le_bytes().to_vec());
    }

    fn put(key: &[u8], value: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
        (key.to_vec(), Some(value.to_vec()))
    }

    fn remove(key: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
        (key.to_vec(), None)
    }

    #[test]
    fn a_checkpoint_reaches_sled_with_its_watermark_in_one_step() {
        let folder = tempfile::tempdir().unwrap();
        let store = Store::open(folder.path()).unwrap();
        let mut model = BTreeMap::new();
        commit(&store, &mut model, &[put(b"k1", b"v1"), put(b"k2", b"v2")], 3);
        commit(&store, &mut model, &[remove(b"k2")], 7);
        assert_eq!(store.get(b"k1").unwrap(), Some(b"v1".to_vec()));
        assert_eq!(store.get(b"k2").unwrap(), None);
        assert_eq!(store.watermark().unwrap(), 7);
    }

    #[test]
    fn visiting_a_range_shows_what_scanning_it_returns() {
        let folder = tempfile::tempdir().unwrap();
        let store = Store::open(folder.path()).unwrap();
        let changes: Vec<_> = [(b"a1", b"x"), (b"p2", b"y"), (b"p4", b"z"), (b"p6", b"w"), (b"q1", b"v")]
            .map(|(key, value)| put(key, value))
            .into();
        commit(&store, &mut BTreeMap::new(), &changes, 1);
        for (start, end) in [(&b"p"[..], &b"q"[..]), (b"p3", b"p6"), (b"a", b"z"), (b"q", b"p"), (b"r", b"s")] {
            let mut visited = Vec::new();
            store.visit_range(start, end, &mut |key, value| visited.push((key.to_vec(), value.to_vec()))).unwrap();
            assert_eq!(visited, store.scan_range(start, end).unwrap(), "{start:?}..{end:?}");
        }
        let mut visited = Vec::new();
        store.visit_range(b"p", b"q", &mut |key, _| visited.push(key.to_vec())).unwrap();
        assert_eq!(visited, [b"p2".to_vec(), b"p4".to_vec(), b"p6".to_vec()]);
    }

    /// Keys of the resident tables (movements `m`, periods `p`) and others.
    const MIXED_KEYS: [&[u8]; 6] = [b"a1", b"m1", b"m2", b"p1", b"p2", b"q1"];

    /// What sled itself holds in `start..end`, bypassing the resident copy.
    fn in_sled(store: &Store, start: &[u8], end: &[u8]) -> Entries {
        store.projection.range(start..end).map(|entry| entry.unwrap()).map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
    }

    #[test]
    fn resident_entries_are_read_from_memory_as_sled_holds_them_after_every_commit() {
        let folder = tempfile::tempdir().unwrap();
        let store = Store::open(folder.path()).unwrap();
        let mut model = BTreeMap::new();
        let first: Vec<_> = MIXED_KEYS.iter().map(|key| put(key, b"first")).collect();
        commit(&store, &mut model, &first, 1);
        commit(&store, &mut model, &[put(b"p1", b"second"), remove(b"m2")], 2);
        assert_eq!(store.get(b"p1").unwrap(), Some(b"second".to_vec()));
        assert_eq!(store.get(b"m2").unwrap(), None);
        assert_eq!(store.watermark().unwrap(), 2);
        assert_eq!(store.resident().len(), 4, "the watermark, m1, p1 and p2: {:?}", store.resident().keys());
        for (start, end) in [(&b"m"[..], &b"n"[..]), (b"p", b"q"), (b"p15", b"p3"), (b"a", b"z")] {
            assert_eq!(store.scan_range(start, end).unwrap(), in_sled(&store, start, end), "{start:?}..{end:?}");
        }
        assert_eq!(store.scan_prefix(b"m").unwrap(), in_sled(&store, b"m", b"n"));
        assert_eq!(store.first_with_prefix(b"p").unwrap(), Some((b"p1".to_vec(), b"second".to_vec())));

        drop(store);
        let reopened = Store::open(folder.path()).unwrap();
        assert_eq!(reopened.scan_range(b"p", b"q").unwrap(), in_sled(&reopened, b"p", b"q"));
        assert_eq!(reopened.get(b"m1").unwrap(), Some(b"first".to_vec()), "the copy is loaded on open");
        assert_eq!(reopened.watermark().unwrap(), 2);
    }

    /// A key of the bucketed table `a` (movement `mv`, participant
    /// `participant`, date `day` × 100 so that days fall in several runs of
    /// 256, kind `kind`), as the fold spells it: the date's run, the
    /// participant, the date's last byte and the kind.
    fn bucketed_key(kind: u8, participant: &str, day: u32) -> Vec<u8> {
        let mut key = run_name(participant, day);
        key.push((day * 100).to_be_bytes()[3]);
        key.push(kind);
        key
    }

    /// The name of the record of `participant`'s keys in `day`'s run.
    fn run_name(participant: &str, day: u32) -> Vec<u8> {
        let mut key = b"amv\0".to_vec();
        key.extend_from_slice(&(day * 100).to_be_bytes()[..3]);
        key.extend_from_slice(&(participant.len() as u32).to_be_bytes());
        key.extend_from_slice(participant.as_bytes());
        key
    }

    /// The helpers' keys must stay bucketed the way the fold's are, or the
    /// property test below would only read keys of their own.
    #[test]
    fn the_test_keys_are_bucketed_as_the_fold_buckets_them() {
        let name = run_name("pq", 3);
        assert_eq!(keys::bucket_len(&bucketed_key(b'd', "pq", 3)), Some(name.len()));
        assert_ne!(bucketed_key(b'd', "pq", 1)[..name.len()], bucketed_key(b'd', "pq", 5)[..name.len()]);
        assert_eq!(keys::bucket_len(&member_key(1, "p1-a1")), Some(b"gmv\0w".len() + 4));
        assert_eq!(keys::bucket_len(b"e1"), None);
    }

    /// A key of the table `g` (a period's partners), one bucket per period
    /// whose entries are named by text of any length.
    fn member_key(day: u32, member: &str) -> Vec<u8> {
        let mut key = b"gmv\0w".to_vec();
        key.extend_from_slice(&day.to_be_bytes());
        key.extend_from_slice(&(member.len() as u32).to_be_bytes());
        key.extend_from_slice(member.as_bytes());
        key
    }

    const MEMBERS: [&str; 5] = ["p1-a1", "p1-a2", "p1-b", "N1", "N1X"];

    /// The ranges a test reads: each bucket whole, from the middle of a
    /// bucket, across buckets, and from before or into the keys that are
    /// their own buckets.
    fn ranges() -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut ranges = vec![(Vec::new(), None), (b"a".to_vec(), Some(b"b".to_vec())), (b"e".to_vec(), None)];
        // The participant table of one movement, and one run of it: starts
        // that name no record.
        ranges.push((b"amv\0".to_vec(), prefix_end(b"amv\0")));
        let run = run_name("p", 3)[..b"amv\0".len() + 3].to_vec();
        ranges.push((run.clone(), prefix_end(&run)));
        ranges.push((b"g".to_vec(), Some(b"h".to_vec())));
        ranges.push((member_key(1, "N1"), Some(member_key(1, "p1-a2"))));
        ranges.push((member_key(1, "p1-a"), Some(member_key(2, "N1X"))));
        for kind in [b'd', b'w'] {
            for participant in ["p", "pq", "q"] {
                let name = run_name(participant, 3);
                ranges.push((name.clone(), prefix_end(&name)));
                ranges.push((bucketed_key(kind, participant, 3), prefix_end(&name)));
                ranges.push((bucketed_key(kind, participant, 2), Some(bucketed_key(kind, participant, 5))));
                ranges.push((bucketed_key(kind, participant, 4), Some(bucketed_key(b'w', "q", 7))));
            }
        }
        ranges
    }

    /// One random change: a bucketed key or a key of its own, written or
    /// removed.
    fn change() -> impl proptest::strategy::Strategy<Value = (Vec<u8>, Option<Vec<u8>>)> {
        use proptest::prelude::*;
        let bucketed = (prop::sample::select(vec![b'd', b'w']), prop::sample::select(vec!["p", "pq", "q"]), 0u32..8)
            .prop_map(|(kind, participant, day)| bucketed_key(kind, participant, day));
        let own = prop::sample::select(vec![b"e1".to_vec(), b"e12".to_vec(), b"m1".to_vec(), b"p1".to_vec()]);
        let member =
            (1u32..3, prop::sample::select(MEMBERS.to_vec())).prop_map(|(day, member)| member_key(day, member));
        let key = prop_oneof![3 => bucketed, 1 => own, 2 => member];
        (key, prop::option::of(prop::collection::vec(any::<u8>(), 0..4)))
    }

    /// Every read the store answers: each range scanned, its
    /// first entry, and each key of it looked up.
    fn reads<S: StateRead<Error = StoreError>>(state: &S) -> Vec<String> {
        let mut answers = Vec::new();
        for (start, end) in ranges() {
            let entries = match &end {
                Some(end) => state.scan_range(&start, end).unwrap(),
                None => state.scan_prefix(&start).unwrap(),
            };
            answers.push(format!("{start:?}..{end:?}: {entries:?}"));
            if end.is_none() || end == prefix_end(&start) {
                answers.push(format!("first {start:?}: {:?}", state.first_with_prefix(&start).unwrap()));
            }
            for (key, _) in &entries {
                answers.push(format!("{key:?} = {:?}", state.get(key).unwrap()));
            }
        }
        answers
    }

    /// A plain ordered map, the meaning of every read.
    #[derive(Default)]
    struct Model(BTreeMap<Vec<u8>, Vec<u8>>);

    impl StateRead for Model {
        type Error = StoreError;
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.0.get(key).cloned())
        }
        fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, StoreError> {
            let entries = self.0.range(prefix.to_vec()..).take_while(|(key, _)| key.starts_with(prefix));
            Ok(entries.map(|(key, value)| (key.clone(), value.clone())).collect())
        }
        fn scan_range(&self, start: &[u8], end: &[u8]) -> Result<Entries, StoreError> {
            if start >= end {
                return Ok(Vec::new());
            }
            Ok(self.0.range(start.to_vec()..end.to_vec()).map(|(key, value)| (key.clone(), value.clone())).collect())
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

        /// Buckets are how the store keeps keys, not what it answers: after
        /// each checkpoint, every read answers what a plain ordered map of
        /// the same writes does.
        #[test]
        fn a_store_of_buckets_reads_like_an_ordered_map_after_each_checkpoint(
            batches in proptest::collection::vec(proptest::collection::vec(change(), 0..24), 1..4),
        ) {
            let folder = tempfile::tempdir().unwrap();
            let store = Store::open(folder.path()).unwrap();
            let mut model = Model::default();
            for (index, changes) in batches.iter().enumerate() {
                commit(&store, &mut model.0, changes, index as u64 + 1);
                proptest::prop_assert_eq!(reads(&store), reads(&model));
            }
            drop(store);
            proptest::prop_assert_eq!(reads(&Store::open(folder.path()).unwrap()), reads(&model), "after reopening");
        }
    }

    #[test]
    fn a_store_held_open_elsewhere_is_refused_with_the_path_after_a_bounded_wait() {
        let folder = tempfile::tempdir().unwrap();
        let _held = Store::open(folder.path()).unwrap();
        let Err(error) = Store::open(folder.path()) else {
            panic!("a second open of a held store must fail");
        };
        assert!(matches!(&error, StoreError::Open { .. }), "{error}");
        assert!(error.to_string().contains(&folder.path().display().to_string()), "{error}");
    }

    /// sled's lock outlived a dropped store once in CI, under load; this
    /// does not reproduce it on an idle machine, but keeps reopening at once
    /// a checked path.
    #[test]
    fn a_store_reopens_at_once_after_it_is_dropped() {
        let folder = tempfile::tempdir().unwrap();
        for round in 0..20_u64 {
            let store = Store::open(folder.path()).unwrap();
            commit(&store, &mut BTreeMap::new(), &[], round + 1);
            drop(store);
        }
        assert_eq!(Store::open(folder.path()).unwrap().watermark().unwrap(), 20);
    }

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
    fn a_store_with_events_but_no_recorded_format_is_refused_as_format_one() {
        let folder = tempfile::tempdir().unwrap();
        let store = Store::open(folder.path()).unwrap();
        store.check_format("2").unwrap();
        store.check_format("2").unwrap();
        assert!(store.check_format("3").is_err());

        let old = tempfile::tempdir().unwrap();
        let store = Store::open(old.path()).unwrap();
        commit(&store, &mut BTreeMap::new(), &[], 5);
        let error = store.check_format("2").unwrap_err();
        assert!(error.to_string().contains("\"1\""), "{error}");
    }

    fn event(id: &str, kind: &str, day: u32, data: &str) -> momentum_domain::Event {
        let json = format!(
            r#"{{"specversion":"1.0","id":"{id}","source":"urn:test","type":"{kind}","subject":"leeds",
                "time":"2026-03-{day:02}T10:00:00Z","data":{data}}}"#
        );
        momentum_domain::Event::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn a_damaged_record_is_an_unreadable_store_not_a_panic() {
        let folder = tempfile::tempdir().unwrap();
        let store = Store::open(folder.path()).unwrap();
        let meeting = r#"{"attendees":["ann","bob"],"organisers":[],"principles":["share_power"],"partners":[]}"#;
        let mut projection = Projection::default();
        let settings = momentum_domain::projection::ProjectionSettings::default();
        projection.apply(&settings, &event("1", "meeting.held", 2, meeting), 1, &store).unwrap();
        store.commit_checkpoint(&projection.checkpoint()).unwrap();
        let (name, bytes) = store
            .projection
            .iter()
            .map(|record| record.unwrap())
            .find(|(name, bytes)| keys::is_bucket(name) && bytes.len() > 8)
            .expect("a meeting leaves bucketed records");
        let entry_key = [&name[..], RecordEntries::decode(&name, &bytes).unwrap().next().unwrap().0].concat();
        // A record cut short inside its last value, as a torn write would.
        store.projection.insert(&name, &bytes[..bytes.len() - 1]).unwrap();

        assert!(matches!(store.load_projection(), Err(StoreError::Unreadable(_))));
        assert!(matches!(store.get(&entry_key), Err(StoreError::Unreadable(_))));
        assert!(matches!(store.entries(), Err(StoreError::Unreadable(_))));
    }

    #[test]
    fn a_checkpointed_typed_projection_is_stored_as_the_key_value_fold_stores_it_and_loads_back_alike() {
        use momentum_domain::memory::MemoryState;
        use momentum_domain::projection::{ProjectionSettings, apply, keys, set_watermark};

        let meeting = r#"{"attendees":["ann","bob"],"organisers":[{"participant":"cat","role":"citizen"}],
            "principles":["share_power"],"partners":["nhs"],"area":"north"}"#;
        let events = [
            event("1", "meeting.held", 2, meeting),
            event("2", "volunteer.hours_logged", 3, r#"{"participant":"ann","hours":2.5}"#),
            // A retraction of an event checkpointed before, in an older run
            // of sequences than the newest: sled keeps its key, not its
            // JSON, which is read back from the archive (here the
            // key-value fold's copy of the stream).
            event("3", "event.retracted", 4, r#"{"event_id":"1"}"#),
            event("4", "meeting.held", 20, meeting),
            event("5", "participant.erased", 21, r#"{"pseudonyms":["bob"]}"#),
            event("6", "collective_action.taken", 22, r#"{"participants":["ann","bob"],"organisers":[],"reach":40}"#),
        ];
        let folder = tempfile::tempdir().unwrap();
        let store = Store::open(folder.path()).unwrap();
        let settings = ProjectionSettings::default();
        let (mut projection, mut state) = (Projection::default(), MemoryState::default());
        // Each event in a run of 256 sequences of its own.
        let sequence = |index: usize| (index as u64 + 1) * 300;
        for (index, event) in events.iter().enumerate() {
            projection.apply(&settings, event, sequence(index), &state).unwrap();
            let Ok(_) = apply(&mut state, &settings, event, sequence(index));
            if matches!(index, 1 | 4) {
                store.commit_checkpoint(&projection.checkpoint()).unwrap();
            }
        }
        store.commit_checkpoint(&projection.checkpoint()).unwrap();
        let Ok(()) = set_watermark(&mut state, sequence(5));
        let expected: Entries = state.entries.into_iter().filter(|(key, value)| keys::is_stored(key, value)).collect();
        assert_eq!(store.entries().unwrap(), expected);
        assert_eq!(store.watermark().unwrap(), 1_800);

        let loaded = store.load_projection().unwrap();
        assert_eq!(loaded.watermark(), 1_800);
        assert_eq!(loaded.to_key_values(), projection.to_key_values());
    }
}
