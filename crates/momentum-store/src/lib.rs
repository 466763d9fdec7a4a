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

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use momentum_domain::projection::{self, Entries, Entry, State, StateRead, keys};

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

impl Store {
    /// Opens (or creates) the store with sled's page cache bounded to
    /// [`CACHE_BYTES_DEFAULT`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with_cache(path, CACHE_BYTES_DEFAULT)
    }

    /// Opens (or creates) the store with sled's page cache bounded to
    /// `cache_bytes`. sled's own memory grows beyond it with the size of
    /// the store (its page table), so this bounds most, not all, of it.
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        let database = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .open()
            .map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
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

    /// The first `count_max` resident entries whose key starts with `prefix`.
    fn resident_with_prefix(&self, prefix: &[u8], count_max: usize) -> Entries {
        let resident = self.resident();
        let from = resident.range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded));
        from.take_while(|(key, _)| key.starts_with(prefix))
            .take(count_max)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
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
        Batch { store: self, changes: BTreeMap::new() }
    }

    /// Writes everything committed so far to disk. Commits are atomic
    /// without this; it only bounds how much a power cut can take back.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.database.flush()?;
        Ok(())
    }

    /// Every entry of the projection, in key order: for tests that compare
    /// a store with one rebuilt from scratch.
    pub fn entries(&self) -> Result<Entries, StoreError> {
        self.scan_prefix(&[])
    }
}

impl StateRead for Store {
    type Error = StoreError;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if keys::is_resident(key) {
            return Ok(self.resident().get(key).cloned());
        }
        Ok(self.projection.get(key)?.map(|value| value.to_vec()))
    }

    fn first_with_prefix(&self, prefix: &[u8]) -> Result<Option<Entry>, StoreError> {
        if !prefix.is_empty() && keys::is_resident(prefix) {
            return Ok(self.resident_with_prefix(prefix, 1).pop());
        }
        Ok(self.projection.scan_prefix(prefix).next().transpose()?.map(|(key, value)| (key.to_vec(), value.to_vec())))
    }

    fn scan_range(&self, start: &[u8], end: &[u8]) -> Result<Entries, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        if keys::is_resident_range(start, end) {
            let resident = self.resident();
            let range = resident.range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)));
            return Ok(range.map(|(key, value)| (key.clone(), value.clone())).collect());
        }
        self.projection
            .range(start..end)
            .map(|entry| entry.map(|(key, value)| (key.to_vec(), value.to_vec())).map_err(StoreError::from))
            .collect()
    }

    fn visit_range(&self, start: &[u8], end: &[u8], visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), StoreError> {
        if start >= end {
            return Ok(());
        }
        if keys::is_resident_range(start, end) {
            for (key, value) in self.resident().range::<[u8], _>((Bound::Included(start), Bound::Excluded(end))) {
                visit(key, value);
            }
            return Ok(());
        }
        for entry in self.projection.range(start..end) {
            let (key, value) = entry?;
            visit(&key, &value);
        }
        Ok(())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, StoreError> {
        if !prefix.is_empty() && keys::is_resident(prefix) {
            return Ok(self.resident_with_prefix(prefix, usize::MAX));
        }
        self.projection
            .scan_prefix(prefix)
            .map(|entry| entry.map(|(key, value)| (key.to_vec(), value.to_vec())).map_err(StoreError::from))
            .collect()
    }
}

/// Uncommitted changes over a [`Store`]. Reads see the batch's own writes.
pub struct Batch<'store> {
    store: &'store Store,
    /// `None` marks a removal.
    changes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Batch<'_> {
    /// Applies every change and the new watermark to sled in one atomic step.
    pub fn commit(mut self, watermark: u64) -> Result<(), StoreError> {
        projection::set_watermark(&mut self, watermark)?;
        let mut batch = sled::Batch::default();
        let mut resident_changes = Vec::new();
        for (key, value) in self.changes {
            if keys::is_resident(&key) {
                resident_changes.push((key.clone(), value.clone()));
            }
            match value {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
        self.store.projection.apply_batch(batch)?;
        let mut resident = self.store.resident.write().unwrap_or_else(PoisonError::into_inner);
        for (key, value) in resident_changes {
            match value {
                Some(value) => resident.insert(key, value),
                None => resident.remove(&key),
            };
        }
        Ok(())
    }

    pub fn change_count(&self) -> usize {
        self.changes.len()
    }
}

impl StateRead for Batch<'_> {
    type Error = StoreError;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(change) = self.changes.get(key) {
            return Ok(change.clone());
        }
        self.store.get(key)
    }

    /// The first entry present after the batch's changes: the first of the
    /// batch's own writes and the store's entries it has not removed. Costs
    /// O(log n) plus the removals skipped, not the length of the prefix.
    fn first_with_prefix(&self, prefix: &[u8]) -> Result<Option<Entry>, StoreError> {
        let written = self
            .changes
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .find_map(|(key, change)| change.as_ref().map(|value| (key.clone(), value.clone())));
        let mut stored = None;
        for entry in self.store.projection.scan_prefix(prefix) {
            let (key, value) = entry?;
            if written.as_ref().is_some_and(|(first, _)| first.as_slice() <= key.as_ref()) {
                break;
            }
            if !matches!(self.changes.get(key.as_ref()), Some(None)) {
                stored = Some((key.to_vec(), value.to_vec()));
                break;
            }
        }
        Ok(match (written, stored) {
            (Some(written), Some(stored)) => Some(written.min(stored)),
            (written, stored) => written.or(stored),
        })
    }

    fn scan_range(&self, start: &[u8], end: &[u8]) -> Result<Entries, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = self.store.scan_range(start, end)?.into_iter().collect();
        for (key, change) in self.changes.range(start.to_vec()..end.to_vec()) {
            match change {
                Some(value) => merged.insert(key.clone(), value.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().collect())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, StoreError> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = self.store.scan_prefix(prefix)?.into_iter().collect();
        for (key, change) in self.changes.range(prefix.to_vec()..).take_while(|(key, _)| key.starts_with(prefix)) {
            match change {
                Some(value) => merged.insert(key.clone(), value.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().collect())
    }
}

impl State for Batch<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.changes.insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    fn remove(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.changes.insert(key.to_vec(), None);
        Ok(())
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
}
