//! The projector's store: the only code that touches sled.
//!
//! The fold in `momentum-domain` decides what is stored; this crate keeps it
//! durable. Changes are made in a [`Batch`], an in-memory overlay that the
//! fold reads its own writes through, and reach sled in one atomic
//! `apply_batch` together with the new watermark. A crash therefore leaves
//! the store equal to the fold of some prefix of the stream, and the
//! projector resumes at watermark + 1.
//!
//! The few entries every event and every trend read touch (the watermark,
//! movements and period totals: `projection::keys::is_resident`) are also
//! kept in memory, and read from there: a sled range over a trend's 161
//! periods cost about 50 µs, the same walk over a `BTreeMap` a few.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::{Bound, ControlFlow};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use momentum_domain::projection::{self, Entries, Entry, State, StateRead, keys};
use momentum_domain::typed::{Checkpoint, Projection, RecordEntries, UnreadableKey};

use crate::filter::RecordFilter;

mod filter;

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

/// The settings key of the record filter [`Store::flush`] saved: the
/// watermark it covers (a little-endian `u64`), then the filter.
const SAVED_FILTER_KEY: &[u8] = b"record_filter";

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
    /// Records batches read or wrote lately, as sled holds them.
    recent: Arc<Mutex<RecentRecords>>,
    /// Which records sled may hold, so that a batch asks sled only for those.
    known: Arc<Mutex<RecordFilter>>,
    filter_was_saved: bool,
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

/// How many bytes of records [`RecentRecords`] keeps, at most, unless
/// configured otherwise. Folding 100 000 generated events ran at 4 800
/// events/s with 64 MiB and 6 100 to 6 900 with 256 MiB: past 64 MiB,
/// records fell out before the next batch met them again.
pub const RECENT_RECORDS_BYTES_DEFAULT: usize = 256 * 1024 * 1024;

/// Records that batches read or wrote lately, as stored (`None`: there is
/// no such record), so that the next batch need not ask sled again: a
/// participant or a period met in one batch is usually met in the next,
/// and a sled read cost about a fifth of the fold.
///
/// Two generations bound it: records go into the newer, a record found in
/// the older moves to the newer, and when the newer holds half of
/// `bytes_max` the older is dropped and the newer takes its place. Only
/// batches fill it, and a batch's changes enter it after sled has applied
/// them; batches follow one another (the projector has one
/// consumer), as they always had to, since they are not isolated from each
/// other.
struct RecentRecords {
    newer: HashMap<Vec<u8>, Option<Arc<[u8]>>>,
    older: HashMap<Vec<u8>, Option<Arc<[u8]>>>,
    newer_bytes: usize,
    bytes_max: usize,
}

impl RecentRecords {
    fn with_bound(bytes_max: usize) -> RecentRecords {
        RecentRecords { newer: HashMap::new(), older: HashMap::new(), newer_bytes: 0, bytes_max }
    }

    /// What a map entry costs beside its name and bytes, roughly.
    const ENTRY_BYTES: usize = 64;

    fn get(&mut self, name: &[u8]) -> Option<Option<Arc<[u8]>>> {
        if let Some(record) = self.newer.get(name) {
            return Some(record.clone());
        }
        let (name, record) = self.older.remove_entry(name)?;
        self.insert(name, record.clone());
        Some(record)
    }

    fn insert(&mut self, name: Vec<u8>, record: Option<Arc<[u8]>>) {
        self.newer_bytes += Self::ENTRY_BYTES + name.len() + record.as_ref().map_or(0, |bytes| bytes.len());
        self.newer.insert(name, record);
        if self.newer_bytes > self.bytes_max / 2 {
            self.older = std::mem::take(&mut self.newer);
            self.newer_bytes = 0;
        }
    }
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
/// its page cache with the size of the store (its page table), so these
/// bound most, not all, of a store's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreMemory {
    /// sled's page cache.
    pub page_cache_bytes: u64,
    /// The records batches touched lately ([`RECENT_RECORDS_BYTES_DEFAULT`]).
    pub recent_records_bytes: usize,
}

impl Default for StoreMemory {
    fn default() -> StoreMemory {
        StoreMemory { page_cache_bytes: CACHE_BYTES_DEFAULT, recent_records_bytes: RECENT_RECORDS_BYTES_DEFAULT }
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
        // The filter saved by the last flush, if nothing was committed after
        // it; otherwise every record name, read afresh. Reading the names
        // made opening a store slower (here 0.55 s for sled alone and 1.3 s
        // with the scan, for a store of 100 000 events), but the filter
        // saves a sled read of an absent record about four times an event
        // folded.
        let watermark = resident.get(keys::WATERMARK).map_or(0, |value| projection::decode_watermark(value));
        let saved = settings.get(SAVED_FILTER_KEY)?;
        let saved = saved.as_deref().and_then(|bytes| {
            let (covered, filter) = bytes.split_first_chunk::<8>()?;
            (u64::from_le_bytes(*covered) == watermark).then(|| RecordFilter::decode(filter)).flatten()
        });
        let filter_was_saved = saved.is_some();
        let known = match saved {
            Some(filter) => filter,
            None => {
                let mut known = RecordFilter::with_capacity(0);
                for name in projection.iter().keys() {
                    known.insert(&name?);
                }
                known
            }
        };
        Ok(Store {
            database,
            projection,
            settings,
            resident: Arc::new(RwLock::new(resident)),
            recent: Arc::new(Mutex::new(RecentRecords::with_bound(memory.recent_records_bytes))),
            known: Arc::new(Mutex::new(known)),
            filter_was_saved,
        })
    }

    /// Whether opening loaded the filter the last flush saved, rather than
    /// reading every record name (the projector logs it at start).
    pub fn filter_was_saved(&self) -> bool {
        self.filter_was_saved
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

    /// Starts a batch of changes; nothing reaches sled until [`Batch::commit`].
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            store: self,
            records: RefCell::new(HashMap::new()),
            names: RefCell::new(BTreeSet::new()),
            change_count: 0,
        }
    }

    /// Writes everything committed so far to disk, with the record filter,
    /// so that the next open need not read every record name. Commits are
    /// atomic without this; it only bounds how much a power cut can take
    /// back, and makes the next open quicker.
    pub fn flush(&self) -> Result<(), StoreError> {
        // The watermark first, then the filter: a commit between the two
        // can only add names to the filter saved, which is safe (a name too
        // many is a false "maybe"). The other order could save a filter
        // that lacks names of the watermark it claims.
        let watermark = self.watermark()?;
        let filter = self.known().encode();
        let mut saved = Vec::with_capacity(8 + filter.len());
        saved.extend_from_slice(&watermark.to_le_bytes());
        saved.extend_from_slice(&filter);
        self.settings.insert(SAVED_FILTER_KEY, saved)?;
        self.database.flush()?;
        Ok(())
    }

    /// Writes a typed projection's checkpoint: every record it names,
    /// replaced whole, and its watermark, in one atomic step. Nothing is
    /// read first, so it costs the records written, not the records' reads.
    pub fn commit_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let (mut resident_changes, mut recent_changes) = (Vec::new(), Vec::new());
        for (name, entries) in &checkpoint.records {
            let bytes = Record::encode_entries(name, entries);
            if keys::is_resident(name) {
                resident_changes.push((name.clone(), bytes.clone()));
            } else {
                recent_changes.push((name.clone(), bytes.as_deref().map(Arc::<[u8]>::from)));
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
        let mut known = self.known();
        for (name, bytes) in &recent_changes {
            if bytes.is_some() {
                known.insert(name);
            }
        }
        drop(known);
        let mut recent = self.recent();
        for (name, bytes) in recent_changes {
            recent.insert(name, bytes);
        }
        drop(recent);
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
    /// key order, given to [`Projection::load_entry`]. Reads the whole
    /// store (events included, though only their first bytes are kept), so
    /// it takes seconds for a store of a million events.
    pub fn load_projection(&self) -> Result<Projection, StoreError> {
        let mut projection = Projection::default();
        let mut key = Vec::new();
        for record in self.projection.iter() {
            let (name, bytes) = record?;
            let mut failure = None;
            let _ = Record::visit(&name, &bytes, &mut key, &mut |key, value| match projection.load_entry(key, value) {
                Ok(()) => ControlFlow::Continue(()),
                Err(error) => {
                    failure = Some(error);
                    ControlFlow::Break(())
                }
            });
            if let Some(error) = failure {
                return Err(StoreError::Unreadable(error));
            }
        }
        Ok(projection)
    }

    /// Every entry of the projection, in key order: for tests that compare
    /// a store with one rebuilt from scratch.
    pub fn entries(&self) -> Result<Entries, StoreError> {
        self.scan_prefix(&[])
    }
}

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

/// The single bucket that holds every key of `range`, if there is one.
fn single_bucket<'key>(range: Range<'key>) -> Option<&'key [u8]> {
    let (start, end) = range;
    let bucket = &start[..keys::bucket_len(start)?];
    let bucket_end = prefix_end(bucket)?;
    end.is_some_and(|end| end <= bucket_end.as_slice()).then_some(bucket)
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
    fn visit(name: &[u8], bytes: &[u8], key: &mut Vec<u8>, visit: &mut Visitor<'_>) -> ControlFlow<()> {
        if !keys::is_bucket(name) {
            return visit(name, bytes);
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            let (suffix, after) = Record::split_field(rest);
            let (value, after) = Record::split_field(after);
            rest = after;
            key.clear();
            key.extend_from_slice(name);
            key.extend_from_slice(suffix);
            visit(key, value)?;
        }
        ControlFlow::Continue(())
    }

    fn split_field(bytes: &[u8]) -> (&[u8], &[u8]) {
        let length = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
        bytes[4..].split_at(length)
    }

    /// The value of the key `name` + `suffix` in the record stored under
    /// `name`.
    fn find(name: &[u8], bytes: &[u8], suffix: &[u8]) -> Option<Vec<u8>> {
        if !keys::is_bucket(name) {
            return suffix.is_empty().then(|| bytes.to_vec());
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            let (stored, after) = Record::split_field(rest);
            let (value, after) = Record::split_field(after);
            match stored.cmp(suffix) {
                Ordering::Less => rest = after,
                Ordering::Equal => return Some(value.to_vec()),
                Ordering::Greater => return None,
            }
        }
        None
    }

    fn decode(name: &[u8], bytes: &[u8]) -> Bucket {
        let mut entries = Bucket::new();
        let mut key = Vec::new();
        let _ = Record::visit(name, bytes, &mut key, &mut |key, value| {
            entries.insert(key[name.len()..].to_vec(), value.to_vec());
            ControlFlow::Continue(())
        });
        entries
    }

    /// [`Record::encode`] for entries already in suffix order, as a
    /// checkpoint lists them.
    fn encode_entries(name: &[u8], entries: &RecordEntries) -> Option<Vec<u8>> {
        if !keys::is_bucket(name) {
            return entries.first().map(|(_, value)| value.clone());
        }
        if entries.is_empty() {
            return None;
        }
        let length: usize = entries.iter().map(|(suffix, value)| 8 + suffix.len() + value.len()).sum();
        let mut bytes = Vec::with_capacity(length);
        for (suffix, value) in entries {
            for field in [suffix, value] {
                bytes.extend_from_slice(&u32::try_from(field.len()).expect("keys and values are short").to_le_bytes());
                bytes.extend_from_slice(field);
            }
        }
        Some(bytes)
    }

    /// The record to store for `entries` under `name`; `None` when it is empty.
    fn encode(name: &[u8], entries: &Bucket) -> Option<Vec<u8>> {
        if !keys::is_bucket(name) {
            return entries.get([].as_slice()).cloned();
        }
        if entries.is_empty() {
            return None;
        }
        let length: usize = entries.iter().map(|(suffix, value)| 8 + suffix.len() + value.len()).sum();
        let mut bytes = Vec::with_capacity(length);
        for (suffix, value) in entries {
            for field in [suffix, value] {
                bytes.extend_from_slice(&u32::try_from(field.len()).expect("keys and values are short").to_le_bytes());
                bytes.extend_from_slice(field);
            }
        }
        Some(bytes)
    }
}

/// A bucket's entries by the rest of their key after the bucket's name; a
/// key that is its own bucket has one entry, under the empty suffix.
type Bucket = BTreeMap<Vec<u8>, Vec<u8>>;

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
            });
            if flow.is_break() {
                break;
            }
        }
        Ok(())
    }
}

impl Store {
    /// The entries of the record `name`, as stored, for a batch.
    fn load(&self, name: &[u8]) -> Result<Bucket, StoreError> {
        if keys::is_resident(name) {
            return Ok(self
                .resident()
                .get(name)
                .map(|value| Bucket::from([(Vec::new(), value.clone())]))
                .unwrap_or_default());
        }
        let recent = self.recent().get(name);
        let bytes = match recent {
            Some(bytes) => bytes,
            None if !self.known().may_contain(name) => None,
            None => {
                let bytes = self.projection.get(name)?.map(|bytes| Arc::<[u8]>::from(bytes.as_ref()));
                self.recent().insert(name.to_vec(), bytes.clone());
                bytes
            }
        };
        Ok(bytes.map(|bytes| Record::decode(name, &bytes)).unwrap_or_default())
    }

    /// The filter of record names. Nothing panics while holding the lock,
    /// so a poisoned lock still holds every name.
    fn known(&self) -> std::sync::MutexGuard<'_, RecordFilter> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The recent records. Nothing panics while holding the lock, so a
    /// poisoned lock still holds records as sled does.
    fn recent(&self) -> std::sync::MutexGuard<'_, RecentRecords> {
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl StateRead for Store {
    type Error = StoreError;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if keys::is_resident(key) {
            return Ok(self.resident().get(key).cloned());
        }
        let (name, suffix) = split_key(key);
        Ok(self.projection.get(name)?.and_then(|bytes| Record::find(name, &bytes, suffix)))
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

/// Uncommitted changes over a [`Store`]. Reads see the batch's own writes.
///
/// The batch keeps every record it reads or writes, decoded, until it
/// commits: the fold reads a participant's neighbouring periods, their
/// days and the same periods' members many times over a batch, and each
/// record is read from sled once and written once.
pub struct Batch<'store> {
    store: &'store Store,
    /// Records read or written so far, by name; reads fill it too, hence
    /// the cell.
    records: RefCell<HashMap<Vec<u8>, CachedRecord>>,
    /// The names of `records` in order, so that a scan over several records
    /// visits only the batch's records in its range: walking every record
    /// instead made each such scan cost as much as the batch was big.
    names: RefCell<BTreeSet<Vec<u8>>>,
    /// How many keys were written or removed.
    change_count: usize,
}

struct CachedRecord {
    entries: Bucket,
    changed: bool,
}

impl Batch<'_> {
    /// Applies every change and the new watermark to sled in one atomic step.
    pub fn commit(mut self, watermark: u64) -> Result<(), StoreError> {
        projection::set_watermark(&mut self, watermark)?;
        let mut batch = sled::Batch::default();
        let mut resident_changes = Vec::new();
        let mut recent_changes = Vec::new();
        for (name, record) in self.records.into_inner() {
            if !record.changed {
                continue;
            }
            let bytes = Record::encode(&name, &record.entries);
            if keys::is_resident(&name) {
                resident_changes.push((name.clone(), bytes.clone()));
            } else {
                recent_changes.push((name.clone(), bytes.as_deref().map(Arc::<[u8]>::from)));
            }
            match bytes {
                Some(bytes) => batch.insert(name, bytes),
                None => batch.remove(name),
            }
        }
        self.store.projection.apply_batch(batch)?;
        let mut known = self.store.known();
        for (name, bytes) in &recent_changes {
            if bytes.is_some() {
                known.insert(name);
            }
        }
        drop(known);
        let mut recent = self.store.recent();
        for (name, bytes) in recent_changes {
            recent.insert(name, bytes);
        }
        drop(recent);
        let mut resident = self.store.resident.write().unwrap_or_else(PoisonError::into_inner);
        for (key, value) in resident_changes {
            match value {
                Some(value) => resident.insert(key, value),
                None => resident.remove(&key),
            };
        }
        Ok(())
    }

    /// How many keys the batch has written or removed.
    pub fn change_count(&self) -> usize {
        self.change_count
    }

    /// Runs `read` on the entries of the record `name`, reading it from the
    /// store first if the batch has not yet.
    fn with_record<T>(&self, name: &[u8], read: impl FnOnce(&Bucket) -> T) -> Result<T, StoreError> {
        if let Some(record) = self.records.borrow().get(name) {
            return Ok(read(&record.entries));
        }
        let entries = self.store.load(name)?;
        let result = read(&entries);
        self.remember(name, entries);
        Ok(result)
    }

    /// Keeps a record read from the store in the batch.
    fn remember(&self, name: &[u8], entries: Bucket) {
        self.records.borrow_mut().insert(name.to_vec(), CachedRecord { entries, changed: false });
        self.names.borrow_mut().insert(name.to_vec());
    }

    fn change(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        let (name, suffix) = split_key(key);
        if !self.records.get_mut().contains_key(name) {
            let entries = self.store.load(name)?;
            self.remember(name, entries);
        }
        let record = self.records.get_mut().get_mut(name).expect("inserted above");
        match value {
            Some(value) => {
                record.entries.insert(suffix.to_vec(), value.to_vec());
            }
            None => {
                record.entries.remove(suffix);
            }
        }
        record.changed = true;
        self.change_count += 1;
        Ok(())
    }
}

/// Walks the entries after the batch's changes.
impl Walk for Batch<'_> {
    fn walk(&self, range: Range<'_>, visit: &mut Visitor<'_>) -> Result<(), StoreError> {
        let (start, end) = range;
        if end.is_some_and(|end| start >= end) {
            return Ok(());
        }
        let mut visit_entries = |name: &[u8], entries: &Bucket| {
            let mut key = name.to_vec();
            for (suffix, value) in entries {
                key.truncate(name.len());
                key.extend_from_slice(suffix);
                if key.as_slice() < start {
                    continue;
                }
                if !in_range(&key, range) {
                    return ControlFlow::Break(());
                }
                visit(&key, value)?;
            }
            ControlFlow::Continue(())
        };
        // The fold's scans lie within one bucket (a participant's periods
        // or days): read it once into the batch.
        if let Some(name) = single_bucket(range) {
            self.with_record(name, |_| ())?;
            let records = self.records.borrow();
            let _ = visit_entries(name, &records[name].entries);
            return Ok(());
        }
        // Otherwise merge the stored records of the range with the batch's.
        let mut merged: BTreeMap<Vec<u8>, Bucket> = BTreeMap::new();
        let from = first_record(start).to_vec();
        self.store.walk(range, &mut |key, value| {
            let (name, suffix) = split_key(key);
            merged.entry(name.to_vec()).or_default().insert(suffix.to_vec(), value.to_vec());
            ControlFlow::Continue(())
        })?;
        // A record sorting before `end` may hold keys of the range; one at
        // or after it cannot.
        let records = self.records.borrow();
        let names = self.names.borrow();
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        for name in names.range::<[u8], _>((Bound::Included(from.as_slice()), upper)) {
            merged.insert(name.clone(), records[name].entries.clone());
        }
        for (name, entries) in &merged {
            if visit_entries(name, entries).is_break() {
                break;
            }
        }
        Ok(())
    }
}

impl StateRead for Batch<'_> {
    type Error = StoreError;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let (name, suffix) = split_key(key);
        self.with_record(name, |entries| entries.get(suffix).cloned())
    }

    fn first_with_prefix(&self, prefix: &[u8]) -> Result<Option<Entry>, StoreError> {
        self.first_of_prefix(prefix)
    }

    fn scan_range(&self, start: &[u8], end: &[u8]) -> Result<Entries, StoreError> {
        self.collect((start, Some(end)))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, StoreError> {
        self.collect_prefix(prefix)
    }
}

impl State for Batch<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.change(key, Some(value))
    }

    fn remove(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.change(key, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reads_its_own_writes_and_commits_them_with_the_watermark() {
        let folder = tempfile::tempdir().unwrap();
        let store = Store::open(folder.path()).unwrap();
        let mut batch = store.batch();
        batch.put(b"k1", b"v1").unwrap();
        batch.put(b"k2", b"v2").unwrap();
        batch.remove(b"k2").unwrap();
        assert_eq!(batch.get(b"k1").unwrap(), Some(b"v1".to_vec()));
        assert_eq!(batch.get(b"k2").unwrap(), None);
        assert_eq!(store.get(b"k1").unwrap(), None, "nothing reaches sled before commit");
        batch.commit(7).unwrap();
        assert_eq!(store.get(b"k1").unwrap(), Some(b"v1".to_vec()));
        assert_eq!(store.watermark().unwrap(), 7);
    }

    #[test]
    fn visiting_a_range_shows_what_scanning_it_returns() {
        let folder = tempfile::tempdir().unwrap();
        let store = Store::open(folder.path()).unwrap();
        let mut batch = store.batch();
        for (key, value) in [(b"a1", b"x"), (b"p2", b"y"), (b"p4", b"z"), (b"p6", b"w"), (b"q1", b"v")] {
            batch.put(key, value).unwrap();
        }
        batch.commit(1).unwrap();
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
        let mut batch = store.batch();
        for key in MIXED_KEYS {
            batch.put(key, b"first").unwrap();
        }
        batch.commit(1).unwrap();
        let mut batch = store.batch();
        batch.put(b"p1", b"second").unwrap();
        batch.remove(b"m2").unwrap();
        batch.commit(2).unwrap();
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

    #[test]
    fn the_first_entry_of_a_prefix_sees_the_batch_over_the_store() {
        let folder = tempfile::tempdir().unwrap();
        let store = Store::open(folder.path()).unwrap();
        let mut batch = store.batch();
        for key in [b"p2", b"p4", b"p6", b"q1"] {
            batch.put(key, b"stored").unwrap();
        }
        batch.commit(1).unwrap();
        let first = |batch: &Batch| batch.first_with_prefix(b"p").unwrap().map(|(key, _)| key);
        let mut batch = store.batch();
        assert_eq!(first(&batch), Some(b"p2".to_vec()));
        batch.remove(b"p2").unwrap();
        assert_eq!(first(&batch), Some(b"p4".to_vec()), "a removal in the batch hides the stored entry");
        batch.put(b"p3", b"written").unwrap();
        assert_eq!(first(&batch), Some(b"p3".to_vec()), "a write before the first stored entry comes first");
        batch.put(b"p1", b"written").unwrap();
        batch.remove(b"p1").unwrap();
        assert_eq!(first(&batch), Some(b"p3".to_vec()));
        for key in [b"p3", b"p4", b"p6"] {
            batch.remove(key).unwrap();
        }
        assert_eq!(first(&batch), None);
        assert_eq!(batch.scan_prefix(b"p").unwrap(), Vec::<Entry>::new());
    }

    /// A key of the bucketed table `a` (movement `mv`, participant
    /// `participant`, date `day` × 100 so that days fall in several runs of
    /// 256, kind `kind`), as the fold spells it.
    fn bucketed_key(kind: u8, participant: &str, day: u32) -> Vec<u8> {
        let mut key = participant_prefix(participant);
        key.extend_from_slice(&(day * 100).to_be_bytes());
        key.push(kind);
        key
    }

    /// Every key of a participant in the table `a`.
    fn participant_prefix(participant: &str) -> Vec<u8> {
        let mut key = b"amv\0".to_vec();
        key.extend_from_slice(&(participant.len() as u32).to_be_bytes());
        key.extend_from_slice(participant.as_bytes());
        key
    }

    /// The helpers' keys must stay bucketed the way the fold's are, or the
    /// property test below would only read keys of their own.
    #[test]
    fn the_test_keys_are_bucketed_as_the_fold_buckets_them() {
        let prefix = participant_prefix("pq");
        assert_eq!(keys::bucket_len(&bucketed_key(b'd', "pq", 3)), Some(prefix.len() + 3));
        assert_ne!(bucketed_key(b'd', "pq", 1)[..prefix.len() + 3], bucketed_key(b'd', "pq", 5)[..prefix.len() + 3]);
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
        ranges.push((b"g".to_vec(), Some(b"h".to_vec())));
        ranges.push((member_key(1, "N1"), Some(member_key(1, "p1-a2"))));
        ranges.push((member_key(1, "p1-a"), Some(member_key(2, "N1X"))));
        for kind in [b'd', b'w'] {
            for participant in ["p", "pq", "q"] {
                let name = participant_prefix(participant);
                ranges.push((name.clone(), prefix_end(&name)));
                ranges.push((bucketed_key(kind, participant, 3), prefix_end(&name)));
                ranges.push((bucketed_key(kind, participant, 2), Some(bucketed_key(kind, participant, 5))));
                ranges.push((bucketed_key(kind, participant, 4), Some(bucketed_key(b'w', "q", 1))));
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

    /// Every read a batch or the store answers: each range scanned, its
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

        /// Buckets are how the store keeps keys, not what it answers: through
        /// a batch before its commit and through the store after it, every
        /// read answers what a plain ordered map of the same writes does.
        #[test]
        fn a_store_of_buckets_reads_like_an_ordered_map_before_and_after_each_commit(
            batches in proptest::collection::vec(proptest::collection::vec(change(), 0..24), 1..4),
        ) {
            let folder = tempfile::tempdir().unwrap();
            // Recent records bounded to a few records, so that reads meet
            // records that fell out of it as well as records still in it.
            let memory = StoreMemory { recent_records_bytes: 1024, ..StoreMemory::default() };
            let store = Store::open_with_memory(folder.path(), memory).unwrap();
            let mut model = Model::default();
            for (index, changes) in batches.iter().enumerate() {
                let mut batch = store.batch();
                for (key, value) in changes {
                    match value {
                        Some(value) => {
                            batch.put(key, value).unwrap();
                            model.0.insert(key.clone(), value.clone());
                        }
                        None => {
                            batch.remove(key).unwrap();
                            model.0.remove(key);
                        }
                    }
                }
                proptest::prop_assert_eq!(reads(&batch), reads(&model));
                let watermark = index as u64 + 1;
                batch.commit(watermark).unwrap();
                model.0.insert(projection::keys::WATERMARK.to_vec(), watermark.to_le_bytes().to_vec());
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
            store.batch().commit(round + 1).unwrap();
            drop(store);
        }
        assert_eq!(Store::open(folder.path()).unwrap().watermark().unwrap(), 20);
    }

    #[test]
    fn a_filter_saved_by_flush_is_loaded_only_while_nothing_was_committed_after_it() {
        let folder = tempfile::tempdir().unwrap();
        let store = Store::open(folder.path()).unwrap();
        assert!(!store.filter_was_saved(), "a new store has none");
        let mut batch = store.batch();
        batch.put(b"first", b"1").unwrap();
        batch.commit(1).unwrap();
        store.flush().unwrap();
        drop(store);

        let store = Store::open(folder.path()).unwrap();
        assert!(store.filter_was_saved());
        assert_eq!(store.batch().get(b"first").unwrap(), Some(b"1".to_vec()));
        let mut batch = store.batch();
        batch.put(b"second", b"2").unwrap();
        batch.commit(2).unwrap();
        // Dropped without a flush: the saved filter covers watermark 1 and
        // lacks "second", so the next open must read the names afresh.
        drop(store);

        let store = Store::open(folder.path()).unwrap();
        assert!(!store.filter_was_saved());
        assert_eq!(store.batch().get(b"second").unwrap(), Some(b"2".to_vec()));
        assert_eq!(store.batch().get(b"first").unwrap(), Some(b"1".to_vec()));
    }

    #[test]
    fn a_dropped_batch_changes_nothing() {
        let folder = tempfile::tempdir().unwrap();
        let store = Store::open(folder.path()).unwrap();
        let mut batch = store.batch();
        batch.put(b"k", b"v").unwrap();
        drop(batch);
        assert_eq!(store.get(b"k").unwrap(), None);
        assert_eq!(store.watermark().unwrap(), 0);
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
        store.batch().commit(5).unwrap();
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
    fn a_checkpointed_typed_projection_is_stored_as_the_key_value_fold_stores_it_and_loads_back_alike() {
        use momentum_domain::memory::MemoryState;
        use momentum_domain::projection::{ProjectionSettings, apply, set_watermark};

        let meeting = r#"{"attendees":["ann","bob"],"organisers":[{"participant":"cat","role":"citizen"}],
            "principles":["share_power"],"partners":["nhs"],"area":"north"}"#;
        let events = [
            event("1", "meeting.held", 2, meeting),
            event("2", "volunteer.hours_logged", 3, r#"{"participant":"ann","hours":2.5}"#),
            // A retraction of an event checkpointed before: read back from sled.
            event("3", "event.retracted", 4, r#"{"event_id":"1"}"#),
            event("4", "meeting.held", 20, meeting),
            event("5", "participant.erased", 21, r#"{"pseudonyms":["bob"]}"#),
            event("6", "collective_action.taken", 22, r#"{"participants":["ann","bob"],"organisers":[],"reach":40}"#),
        ];
        let folder = tempfile::tempdir().unwrap();
        let store = Store::open(folder.path()).unwrap();
        let settings = ProjectionSettings::default();
        let (mut projection, mut state) = (Projection::default(), MemoryState::default());
        for (index, event) in events.iter().enumerate() {
            let seq = index as u64 + 1;
            projection.apply(&settings, event, seq, &store).unwrap();
            let Ok(_) = apply(&mut state, &settings, event, seq);
            if matches!(seq, 2 | 5) {
                store.commit_checkpoint(&projection.checkpoint()).unwrap();
            }
        }
        store.commit_checkpoint(&projection.checkpoint()).unwrap();
        let Ok(()) = set_watermark(&mut state, events.len() as u64);
        let expected: Entries = state.entries.into_iter().collect();
        assert_eq!(store.entries().unwrap(), expected);
        assert_eq!(store.watermark().unwrap(), 6);

        let loaded = store.load_projection().unwrap();
        assert_eq!(loaded.watermark(), 6);
        assert_eq!(loaded.to_key_values(), projection.to_key_values());
    }
}
