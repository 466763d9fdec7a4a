//! An in-memory [`State`], for tests and for computing a projection from
//! scratch to compare with a stored one.

use std::collections::BTreeMap;
use std::convert::Infallible;

use crate::projection::{Entries, Entry, State, StateRead};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryState {
    pub entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl StateRead for MemoryState {
    type Error = Infallible;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Infallible> {
        Ok(self.entries.get(key).cloned())
    }

    fn first_with_prefix(&self, prefix: &[u8]) -> Result<Option<Entry>, Infallible> {
        let mut entries = self.entries.range(prefix.to_vec()..).take_while(|(key, _)| key.starts_with(prefix));
        Ok(entries.next().map(|(key, value)| (key.clone(), value.clone())))
    }

    fn scan_range(&self, start: &[u8], end: &[u8]) -> Result<Entries, Infallible> {
        if start >= end {
            return Ok(Vec::new());
        }
        let range = self.entries.range(start.to_vec()..end.to_vec());
        Ok(range.map(|(key, value)| (key.clone(), value.clone())).collect())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, Infallible> {
        Ok(self
            .entries
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }
}

impl State for MemoryState {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), Infallible> {
        self.entries.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn remove(&mut self, key: &[u8]) -> Result<(), Infallible> {
        self.entries.remove(key);
        Ok(())
    }
}
