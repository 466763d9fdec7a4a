//! Which records sled may hold: a Bloom filter of every record name the
//! store has held since it was opened.
//!
//! Most records a fold batch asks for do not exist yet (a new event, a
//! newcomer, a period or day nobody was active in), and sled answers "no
//! such key" no faster than it finds one: about 10 µs here. The filter
//! answers most of those in a few hashes. It can say "maybe" for a record
//! that does not exist (then sled is asked, at most about one time in a
//! hundred), never "no" for one that does: every name sled holds was added,
//! at open or when a commit wrote it, and names are never taken out.

use std::hash::{DefaultHasher, Hash, Hasher};

/// Record names one filter is sized for before the next, twice as large, is
/// started: about 1.2 MiB of bits.
const FIRST_CAPACITY: usize = 1 << 20;

/// Bits per name and hashes per name: about 0.8% false "maybe"s a filter.
const BITS_PER_NAME: usize = 10;
const HASHES_PER_NAME: u64 = 7;

/// A growing Bloom filter: a series of fixed filters, each twice the size
/// of the one before, names added to the newest. A name may be in the set
/// if any filter says so.
pub(crate) struct RecordFilter {
    filters: Vec<Filter>,
}

struct Filter {
    bits: Vec<u64>,
    names: usize,
    capacity: usize,
}

impl Filter {
    fn with_capacity(capacity: usize) -> Filter {
        Filter { bits: vec![0; (capacity * BITS_PER_NAME).div_ceil(64)], names: 0, capacity }
    }

    /// The bits of a name: double hashing over the two halves of its hash.
    fn positions(&self, hash: u64) -> impl Iterator<Item = usize> + use<> {
        let bit_count = self.bits.len() as u64 * 64;
        let (first, step) = (hash & 0xffff_ffff, (hash >> 32) | 1);
        (0..HASHES_PER_NAME).map(move |index| (first.wrapping_add(index.wrapping_mul(step)) % bit_count) as usize)
    }

    fn insert(&mut self, hash: u64) {
        for position in self.positions(hash) {
            self.bits[position / 64] |= 1 << (position % 64);
        }
        self.names += 1;
    }

    fn may_contain(&self, hash: u64) -> bool {
        self.positions(hash).all(|position| self.bits[position / 64] & (1 << (position % 64)) != 0)
    }
}

fn hash(name: &[u8]) -> u64 {
    // SipHash with fixed keys: the same name always has the same bits.
    let mut hasher = DefaultHasher::new();
    name.hash(&mut hasher);
    hasher.finish()
}

impl RecordFilter {
    /// An empty filter, sized for at least `expected` names.
    pub(crate) fn with_capacity(expected: usize) -> RecordFilter {
        RecordFilter { filters: vec![Filter::with_capacity(expected.max(FIRST_CAPACITY))] }
    }

    pub(crate) fn insert(&mut self, name: &[u8]) {
        let hash = hash(name);
        if self.filters.iter().any(|filter| filter.may_contain(hash)) {
            return;
        }
        let newest = self.filters.last().expect("there is always a filter");
        if newest.names >= newest.capacity {
            let capacity = newest.capacity * 2;
            self.filters.push(Filter::with_capacity(capacity));
        }
        self.filters.last_mut().expect("there is always a filter").insert(hash);
    }

    /// `false` only if the name was never added.
    pub(crate) fn may_contain(&self, name: &[u8]) -> bool {
        let hash = hash(name);
        self.filters.iter().any(|filter| filter.may_contain(hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_added_is_found_and_few_others_are() {
        let mut filter = RecordFilter::with_capacity(0);
        // More names than the first filter holds, so the filter grows.
        let added = FIRST_CAPACITY + FIRST_CAPACITY / 2;
        for index in 0..added {
            filter.insert(format!("added {index}").as_bytes());
        }
        assert_eq!(filter.filters.len(), 2, "a second, larger filter was started");
        for index in 0..added {
            assert!(filter.may_contain(format!("added {index}").as_bytes()), "name {index} is found");
        }
        let strangers = 100_000;
        let false_maybes =
            (0..strangers).filter(|index| filter.may_contain(format!("other {index}").as_bytes())).count();
        // Two filters of about 0.8% each.
        assert!(false_maybes < strangers * 3 / 100, "{false_maybes} of {strangers} never added were maybes");
    }
}
