//! Every (`source`, `id`) a movement has met, with what the fold knows of
//! it: the index that tells repeats and finds a retraction's target.
//!
//! It holds an entry for every event ever accepted, so its size is the
//! ledger's largest, and a map of boxed ids cost nearly twice this layout
//! (docs/benchmarks.md). Here one source's ids sit end to end in one byte
//! array, and the hash table holds only where each starts and its standing.

use hashbrown::HashTable;

/// Where the fold knows an event of a movement to be. A retraction is
/// named by where its id sits in the same index (a retraction names an
/// event of its own source and movement).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Standing {
    /// It counts: its fact is filed under this day and sequence.
    Counted { day: chrono::NaiveDate, seq: u64 },
    /// It arrived at `seq` and is no fact: a retraction or an erasure.
    Uncounted { seq: u64 },
    /// A retraction of it arrived (the one at `by`); it has not.
    RetractionPending { by: u32 },
    /// It arrived at `seq` and was retracted, before or after, by the
    /// retraction at `by` (of several, the one with the least id).
    Retracted { by: u32, seq: u64 },
}

/// An id's place in the arena and its standing, packed: the standing's kind
/// in the top two bits of `seq`, and a retraction's place in `day`.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// Where the id's length (two bytes) and bytes start in the arena.
    at: u32,
    /// Days from the Common Era, for a counted event; the place of the
    /// retraction, for a retracted one.
    day: i32,
    seq_and_kind: u64,
}

const KIND_SHIFT: u32 = 62;
const SEQ_MASK: u64 = (1 << KIND_SHIFT) - 1;
const COUNTED: u64 = 0;
const UNCOUNTED: u64 = 1;
const RETRACTION_PENDING: u64 = 2;
const RETRACTED: u64 = 3;

impl Slot {
    fn standing(&self) -> Standing {
        let seq = self.seq_and_kind & SEQ_MASK;
        // The place is stored in the day's bits.
        let by = self.day.cast_unsigned();
        match self.seq_and_kind >> KIND_SHIFT {
            COUNTED => Standing::Counted {
                day: chrono::NaiveDate::from_num_days_from_ce_opt(self.day).expect("a day the fold stored"),
                seq,
            },
            UNCOUNTED => Standing::Uncounted { seq },
            RETRACTION_PENDING => Standing::RetractionPending { by },
            _ => Standing::Retracted { by, seq },
        }
    }

    fn set(&mut self, standing: Standing) {
        use chrono::Datelike;
        let sequence = |seq: u64| {
            assert!(seq < 1 << KIND_SHIFT, "stream sequences below 2^62");
            seq
        };
        (self.day, self.seq_and_kind) = match standing {
            Standing::Counted { day, seq } => (day.num_days_from_ce(), sequence(seq)),
            Standing::Uncounted { seq } => (0, UNCOUNTED << KIND_SHIFT | sequence(seq)),
            Standing::RetractionPending { by } => (by.cast_signed(), RETRACTION_PENDING << KIND_SHIFT),
            Standing::Retracted { by, seq } => (by.cast_signed(), RETRACTED << KIND_SHIFT | sequence(seq)),
        };
    }
}

/// A standing with the retraction named by its id, for comparing two
/// indexes whose ids sit in different places.
#[derive(Debug, PartialEq, Eq)]
enum Named<'a> {
    Counted { day: chrono::NaiveDate, seq: u64 },
    Uncounted { seq: u64 },
    RetractionPending { by: &'a str },
    Retracted { by: &'a str, seq: u64 },
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

    fn slot(&self, id: &str) -> Option<&Slot> {
        let hash = EventIndex::hash(&self.hasher, id);
        self.table.find(hash, |slot| EventIndex::id_at(&self.arena, slot.at) == id)
    }

    pub(super) fn get(&self, id: &str) -> Option<Standing> {
        self.slot(id).map(Slot::standing)
    }

    /// The id at `place` (a retraction's `by`).
    pub(super) fn id(&self, place: u32) -> &str {
        EventIndex::id_at(&self.arena, place)
    }

    /// Where `id` sits, adding it with `standing` if it is new.
    pub(super) fn place(&mut self, id: &str, standing: Standing) -> u32 {
        if let Some(slot) = self.slot(id) {
            return slot.at;
        }
        self.set(id, standing);
        self.slot(id).expect("just added").at
    }

    /// Of two retractions' places, the one whose id is least: which
    /// retraction a retracted event names, whatever order they came in.
    pub(super) fn least(&self, one: u32, other: u32) -> u32 {
        if self.id(other) < self.id(one) { other } else { one }
    }

    fn named(&self, standing: Standing) -> Named<'_> {
        match standing {
            Standing::Counted { day, seq } => Named::Counted { day, seq },
            Standing::Uncounted { seq } => Named::Uncounted { seq },
            Standing::RetractionPending { by } => Named::RetractionPending { by: self.id(by) },
            Standing::Retracted { by, seq } => Named::Retracted { by: self.id(by), seq },
        }
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
            && self.table.iter().all(|slot| {
                let theirs = other.get(EventIndex::id_at(&self.arena, slot.at)).map(|standing| other.named(standing));
                theirs == Some(self.named(slot.standing()))
            })
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
        index.set("event-7", Standing::Uncounted { seq: 8 });
        let by = index.place("retraction-1", Standing::Uncounted { seq: 9 });
        index.set("waiting", Standing::RetractionPending { by });
        index.set("é-ünïcode", Standing::Counted { day, seq: (1 << 62) - 1 });
        assert_eq!(index.get("event-4999"), Some(Standing::Counted { day, seq: 5000 }));
        assert_eq!(index.get("event-7"), Some(Standing::Uncounted { seq: 8 }));
        assert_eq!(index.get("waiting"), Some(Standing::RetractionPending { by }));
        assert_eq!(index.id(by), "retraction-1");
        assert_eq!(index.get("é-ünïcode"), Some(Standing::Counted { day, seq: (1 << 62) - 1 }));
        assert_eq!(index.get("event-5000"), None);
        assert_eq!(index.table.len(), 5003, "a changed status is not a second entry");

        let mut other = EventIndex::default();
        let their_by = other.place("retraction-1", Standing::Uncounted { seq: 9 });
        for number in (0..5000u64).rev() {
            other.set(&format!("event-{number}"), Standing::Counted { day, seq: number + 1 });
        }
        other.set("event-7", Standing::Uncounted { seq: 8 });
        other.set("waiting", Standing::RetractionPending { by: their_by });
        assert_ne!(by, their_by, "the retraction sits elsewhere in the other index");
        assert!(index != other, "one id fewer");
        other.set("é-ünïcode", Standing::Counted { day, seq: (1 << 62) - 1 });
        assert!(index == other, "the same ids and statuses in another order");
        other.set("waiting", Standing::Retracted { by: their_by, seq: 10 });
        assert!(index != other, "one status differs");
        let earlier = other.place("retraction-0", Standing::Uncounted { seq: 11 });
        assert_eq!(other.least(their_by, earlier), earlier, "the least id, wherever it sits");
    }
}
