//! Which records sled may hold: a Bloom filter of every record name the
//! store has held.
//!
//! Most records a fold batch asks for do not exist yet (a new event, a
//! newcomer, a period or day nobody was active in), and sled answers "no
//! such key" no faster than it finds one: about 10 µs here. The filter
//! answers most of those in a few hashes. It can say "maybe" for a record
//! that does not exist (then sled is asked, at most about one time in a
//! hundred), never "no" for one that does: every name sled holds was added,
//! at open or when a commit wrote it, and names are never taken out.
//!
//! Filling it at open means reading every record name, seconds for a store
//! of millions of events, so [`crate::Store::flush`] saves it beside the
//! watermark it covers and the next open loads it instead when the
//! watermark still matches. Its hash is defined here, not taken from the
//! standard library, whose hashes may change between Rust releases.

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

/// 64-bit FNV-1a, its bits then mixed by SplitMix64's finaliser so that
/// both halves, which pick the filter's bits, vary with every byte. Fixed
/// forever: saved filters depend on it.
fn hash(name: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// The first byte of a saved filter: the layout below, and [`hash`].
const SAVED_VERSION: u8 = 1;

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

    /// The filter as bytes: a version byte, then each filter's capacity,
    /// name count and bit words, little-endian `u64`s, the word count first.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let words: usize = self.filters.iter().map(|filter| filter.bits.len() + 3).sum();
        let mut bytes = Vec::with_capacity(1 + 8 * words);
        bytes.push(SAVED_VERSION);
        for filter in &self.filters {
            for number in [filter.capacity, filter.names, filter.bits.len()] {
                bytes.extend_from_slice(&(number as u64).to_le_bytes());
            }
            for word in &filter.bits {
                bytes.extend_from_slice(&word.to_le_bytes());
            }
        }
        bytes
    }

    /// A filter from [`RecordFilter::encode`]'s bytes; `None` if they are
    /// not a filter this code wrote, so that the caller fills one afresh.
    pub(crate) fn decode(bytes: &[u8]) -> Option<RecordFilter> {
        let (version, mut rest) = bytes.split_first()?;
        if *version != SAVED_VERSION {
            return None;
        }
        let mut next = || -> Option<u64> {
            let (word, after) = rest.split_first_chunk::<8>()?;
            rest = after;
            Some(u64::from_le_bytes(*word))
        };
        let mut filters = Vec::new();
        while let Some(capacity) = next() {
            let names = usize::try_from(next()?).ok()?;
            let word_count = usize::try_from(next()?).ok()?;
            let capacity = usize::try_from(capacity).ok()?;
            if word_count != (capacity.checked_mul(BITS_PER_NAME)?).div_ceil(64) {
                return None;
            }
            let bits = (0..word_count).map(|_| next()).collect::<Option<Vec<u64>>>()?;
            filters.push(Filter { bits, names, capacity });
        }
        (!filters.is_empty()).then_some(RecordFilter { filters })
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

        let saved = RecordFilter::decode(&filter.encode()).expect("a saved filter reads back");
        for index in (0..added).step_by(97) {
            assert!(saved.may_contain(format!("added {index}").as_bytes()), "name {index} is found after saving");
        }
        let saved_false_maybes =
            (0..strangers).filter(|index| saved.may_contain(format!("other {index}").as_bytes())).count();
        assert_eq!(saved_false_maybes, false_maybes, "the saved filter answers as the one saved");
    }

    #[test]
    fn bytes_that_are_not_a_saved_filter_are_refused() {
        let mut filter = RecordFilter::with_capacity(0);
        filter.insert(b"name");
        let bytes = filter.encode();
        assert!(RecordFilter::decode(&bytes).is_some());
        assert!(RecordFilter::decode(&[]).is_none(), "empty");
        assert!(RecordFilter::decode(&[SAVED_VERSION]).is_none(), "no filter");
        assert!(RecordFilter::decode(&bytes[..bytes.len() - 1]).is_none(), "cut short");
        let mut other_version = bytes.clone();
        other_version[0] = SAVED_VERSION + 1;
        assert!(RecordFilter::decode(&other_version).is_none(), "another version");
        let mut wrong_size = bytes;
        wrong_size[1] ^= 1;
        assert!(RecordFilter::decode(&wrong_size).is_none(), "bits that do not fit the capacity");
    }
}
