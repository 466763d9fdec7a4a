//! Every (`source`, `id`) a movement has met, with what the fold knows of
//! it: the index that tells repeats and finds a retraction's target.
//!
//! It holds an entry for every event ever accepted, so its size is the
//! ledger's largest, and a map of boxed ids cost nearly twice this layout
//! (docs/benchmarks.md). Here one source's ids sit end to end in one byte
//! array, and the hash table holds only where each starts and its standing.

use hashbrown::HashTable;

/// Where the fold knows an event of a movement to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Standing {
    /// It counts: its fact is filed under this day and sequence.
    Counted { day: chrono::NaiveDate, seq: u64 },
    /// It arrived and does not count: a retraction, an erasure, a
    /// retracted event, or one that arrived after its retraction.
    Uncounted,
    /// A retraction of it arrived; it has not.
    RetractionPending,
}

/// An id's place in the arena and its standing, packed: the standing's kind
/// in the top two bits of `seq`.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// Where the id's length (two bytes) and bytes start in the arena.
    at: u32,
    /// Days from the Common Era, for a counted event.
    day: i32,
    seq_and_kind: u64,
}

const KIND_SHIFT: u32 = 62;
const COUNTED: u64 = 0;
const UNCOUNTED: u64 = 1;
const RETRACTION_PENDING: u64 = 2;

impl Slot {
    fn standing(&self) -> Standing {
        match self.seq_and_kind >> KIND_SHIFT {
            COUNTED => Standing::Counted {
                day: chrono::NaiveDate::from_num_days_from_ce_opt(self.day).expect("a day the fold stored"),
                seq: self.seq_and_kind & ((1 << KIND_SHIFT) - 1),
            },
            UNCOUNTED => Standing::Uncounted,
            _ => Standing::RetractionPending,
        }
    }

    fn set(&mut self, standing: Standing) {
        use chrono::Datelike;
        (self.day, self.seq_and_kind) = match standing {
            Standing::Counted { day, seq } => {
                assert!(seq < 1 << KIND_SHIFT, "stream sequences below 2^62");
                (day.num_days_from_ce(), seq)
            }
            Standing::Uncounted => (0, UNCOUNTED << KIND_SHIFT),
            Standing::RetractionPending => (0, RETRACTION_PENDING << KIND_SHIFT),
        };
    }
}

/// The ids of one source of one movement, and their standings.
#[derive(Debug, Default)]
pub(super) struct EventIndex {
    /// Each id as its length (two bytes, little-endian) and its bytes.
    arena: Vec<u8>,
    table: HashTable<Slot>,
    hasher: foldhash::fast::RandomState,
}

impl EventIndex {
    fn hash(hasher: &foldhash::fast::RandomState, id: &str) -> u64 {
        use std::hash::BuildHasher;
        hasher.hash_one(id)
    }

    fn id_at(arena: &[u8], at: u32) -> &str {
        let at = at as usize;
        let length = u16::from_le_bytes([arena[at], arena[at + 1]]) as usize;
        std::str::from_utf8(&arena[at + 2..at + 2 + length]).expect("ids are stored whole")
    }

    pub(super) fn get(&self, id: &str) -> Option<Standing> {
        let hash = EventIndex::hash(&self.hasher, id);
        self.table.find(hash, |slot| EventIndex::id_at(&self.arena, slot.at) == id).map(Slot::standing)
    }

    /// Sets the standing of `id`, adding it if it is new.
    pub(super) fn set(&mut self, id: &str, standing: Standing) {
        let hash = EventIndex::hash(&self.hasher, id);
        let arena = &self.arena;
        if let Some(slot) = self.table.find_mut(hash, |slot| EventIndex::id_at(arena, slot.at) == id) {
            slot.set(standing);
            return;
        }
        let at = u32::try_from(self.arena.len()).expect("under 4 GiB of ids a source of a movement");
        let length = u16::try_from(id.len()).expect("ids are at most 128 characters");
        self.arena.extend_from_slice(&length.to_le_bytes());
        self.arena.extend_from_slice(id.as_bytes());
        let mut slot = Slot { at, day: 0, seq_and_kind: 0 };
        slot.set(standing);
        let (arena, hasher) = (&self.arena, &self.hasher);
        self.table.insert_unique(hash, slot, |slot| EventIndex::hash(hasher, EventIndex::id_at(arena, slot.at)));
    }
}

impl PartialEq for EventIndex {
    /// The same ids with the same standings, wherever they sit.
    fn eq(&self, other: &EventIndex) -> bool {
        self.table.len() == other.table.len()
            && self.table.iter().all(|slot| other.get(EventIndex::id_at(&self.arena, slot.at)) == Some(slot.standing()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_their_statuses_as_the_table_grows_and_changes() {
        let day = chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let mut index = EventIndex::default();
        for number in 0..5000u64 {
            index.set(&format!("event-{number}"), Standing::Counted { day, seq: number + 1 });
        }
        index.set("event-7", Standing::Uncounted);
        index.set("waiting", Standing::RetractionPending);
        index.set("é-ünïcode", Standing::Counted { day, seq: (1 << 62) - 1 });
        assert_eq!(index.get("event-4999"), Some(Standing::Counted { day, seq: 5000 }));
        assert_eq!(index.get("event-7"), Some(Standing::Uncounted));
        assert_eq!(index.get("waiting"), Some(Standing::RetractionPending));
        assert_eq!(index.get("é-ünïcode"), Some(Standing::Counted { day, seq: (1 << 62) - 1 }));
        assert_eq!(index.get("event-5000"), None);
        assert_eq!(index.table.len(), 5002, "a changed status is not a second entry");

        let mut other = EventIndex::default();
        for number in (0..5000u64).rev() {
            other.set(&format!("event-{number}"), Standing::Counted { day, seq: number + 1 });
        }
        other.set("event-7", Standing::Uncounted);
        other.set("waiting", Standing::RetractionPending);
        assert!(index != other, "one id fewer");
        other.set("é-ünïcode", Standing::Counted { day, seq: (1 << 62) - 1 });
        assert!(index == other, "the same ids and statuses in another order");
        other.set("waiting", Standing::Uncounted);
        assert!(index != other, "one status differs");
    }
}
