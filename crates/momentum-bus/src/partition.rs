//! How movements are spread over projectors.
//!
//! Every movement hashes to one of [`SLOT_COUNT`] slots, and the slot is
//! part of every event subject, so a projector can take a share of the
//! movements with subject filters alone. The slot count and the hash are
//! fixed forever: changing either would move stored events to other slots.
//!
//! A [`Partition`] `k/n` is one projector's share: the slots whose number
//! modulo `n` is `k`. Any `n` from 1 to [`SLOT_COUNT`] works without
//! touching the stream, so a deployment can go from one projector to two
//! or four by starting new ones (which rebuild from sequence 1) and then
//! pointing query at them. Replicas of the same partition answer queries
//! in one queue group, so losing one leaves the others answering.

use std::fmt;
use std::str::FromStr;

use crate::{EVENTS_SUBJECT_PREFIX, READ_SUBJECT_GROUP};

/// How many slots the movements hash to. Fixed forever (see above).
pub const SLOT_COUNT: u32 = 64;

/// The slot of a movement: 32-bit FNV-1a of its id, modulo [`SLOT_COUNT`].
/// FNV-1a is defined in a few lines, so any other tool can compute it too.
pub fn slot(movement: &str) -> u32 {
    const_fnv1a_hash::fnv1a_hash_str_32(movement) % SLOT_COUNT
}

/// Matches event subjects of the form before slots were added
/// (`momentum.events.<movement>.<type>`, five tokens; today's have six). A
/// partitioned projector would never see such events, so it refuses to
/// start on a stream that holds any.
pub const SLOTLESS_EVENTS_FILTER: &str = "momentum.events.*.*.*";

/// One projector's share of the movements: partition `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    index: u32,
    count: u32,
}

/// Why a partition named in the settings is not one.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    /// The text is not `k/n`.
    #[error("a partition is written k/n, as in 0/2 (the first of two), got {0:?}")]
    Syntax(String),
    /// `n` is 0 or more than there are slots.
    #[error("the number of partitions must be from 1 to {SLOT_COUNT}, got {0}")]
    CountOutOfRange(u32),
    /// `k` is not below `n`.
    #[error("partition {index} of {count} does not exist: partitions are numbered from 0 to {}", count - 1)]
    IndexOutOfRange {
        /// The `k` given.
        index: u32,
        /// The `n` given.
        count: u32,
    },
}

impl Partition {
    /// The whole stream, as one projector folds it when nothing is partitioned.
    pub const WHOLE: Partition = Partition { index: 0, count: 1 };

    /// Partition `index` (from 0) of `count`.
    pub fn new(index: u32, count: u32) -> Result<Partition, PartitionError> {
        if count == 0 || count > SLOT_COUNT {
            return Err(PartitionError::CountOutOfRange(count));
        }
        if index >= count {
            return Err(PartitionError::IndexOutOfRange { index, count });
        }
        Ok(Partition { index, count })
    }

    /// The partition, out of `count`, that owns `movement`.
    pub fn of(movement: &str, count: u32) -> Result<Partition, PartitionError> {
        Partition::new(slot(movement) % count.max(1), count)
    }

    /// Every partition of `count`.
    pub fn all(count: u32) -> Result<Vec<Partition>, PartitionError> {
        (0..count.max(1)).map(|index| Partition::new(index, count)).collect()
    }

    /// The partition's number, from 0.
    pub fn index(self) -> u32 {
        self.index
    }

    /// How many partitions the movements are split into.
    pub fn count(self) -> u32 {
        self.count
    }

    /// Whether this is the whole stream, nothing partitioned.
    pub fn is_whole(self) -> bool {
        self.count == 1
    }

    /// Whether `movement`'s events are this partition's to fold.
    pub fn owns(self, movement: &str) -> bool {
        slot(movement) % self.count == self.index
    }

    /// The subject filters of this partition's events; none (everything)
    /// for the whole stream.
    pub fn event_filters(self) -> Vec<String> {
        if self.is_whole() {
            return Vec::new();
        }
        (0..SLOT_COUNT)
            .filter(|slot| slot % self.count == self.index)
            .map(|slot| format!("{EVENTS_SUBJECT_PREFIX}.{slot}.>"))
            .collect()
    }

    /// The subject group this partition's query endpoints live under:
    /// `momentum.query.v1` for the whole stream,
    /// `momentum.query.v1.part-<k>-of-<n>` otherwise. A query service that
    /// expects another number of partitions finds no one answering, and
    /// says so, instead of reading half the movements.
    pub fn read_group(self) -> String {
        if self.is_whole() {
            READ_SUBJECT_GROUP.to_owned()
        } else {
            format!("{READ_SUBJECT_GROUP}.part-{}-of-{}", self.index, self.count)
        }
    }

    /// The subject a read `R` is sent to in this partition.
    pub fn read_subject<R: crate::protocol::Read>(self) -> String {
        format!("{}.{}", self.read_group(), R::ENDPOINT)
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Partition {
    type Err = PartitionError;

    fn from_str(text: &str) -> Result<Partition, PartitionError> {
        let syntax = || PartitionError::Syntax(text.to_owned());
        let (index, count) = text.trim().split_once('/').ok_or_else(syntax)?;
        let index = index.trim().parse().map_err(|_| syntax())?;
        let count = count.trim().parse().map_err(|_| syntax())?;
        Partition::new(index, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_fnv_1a_of_the_movement_and_never_change() {
        // Published FNV-1a test vectors: "" → 0x811c9dc5, "a" → 0xe40c292c,
        // "foobar" → 0xbf9cf968. If these move, stored events would be in
        // the wrong slots.
        assert_eq!(slot(""), 0x811c_9dc5 % SLOT_COUNT);
        assert_eq!(slot("a"), 0xe40c_292c % SLOT_COUNT);
        assert_eq!(slot("foobar"), 0xbf9c_f968 % SLOT_COUNT);
    }

    #[test]
    fn every_slot_belongs_to_exactly_one_partition_of_any_count() {
        for count in 1..=SLOT_COUNT {
            let partitions = Partition::all(count).unwrap();
            for slot in 0..SLOT_COUNT {
                let filter = format!("{EVENTS_SUBJECT_PREFIX}.{slot}.>");
                let owners = partitions
                    .iter()
                    .filter(|partition| partition.is_whole() || partition.event_filters().contains(&filter))
                    .count();
                assert_eq!(owners, 1, "slot {slot} with {count} partitions");
            }
        }
    }

    #[test]
    fn a_movement_belongs_to_the_partition_whose_filters_match_its_events() {
        for movement in ["leeds-walking-groups", "bristol-befriending", "17", "a"] {
            for count in [1, 2, 3, 4, 64] {
                let owner = Partition::of(movement, count).unwrap();
                assert!(owner.owns(movement));
                let subject = crate::event_subject(movement, "meeting.held");
                let prefix = format!("{EVENTS_SUBJECT_PREFIX}.{}.", slot(movement));
                assert!(subject.starts_with(&prefix), "{subject}");
                let others = Partition::all(count).unwrap().into_iter().filter(|other| other.owns(movement)).count();
                assert_eq!(others, 1);
            }
        }
    }

    #[test]
    fn partitions_read_as_k_of_n_and_wrong_ones_are_refused_with_a_reason() {
        assert_eq!("1/2".parse::<Partition>(), Ok(Partition { index: 1, count: 2 }));
        assert_eq!(" 0 / 1 ".parse::<Partition>(), Ok(Partition::WHOLE));
        assert_eq!("2/2".parse::<Partition>(), Err(PartitionError::IndexOutOfRange { index: 2, count: 2 }));
        assert_eq!("0/0".parse::<Partition>(), Err(PartitionError::CountOutOfRange(0)));
        assert_eq!("0/65".parse::<Partition>(), Err(PartitionError::CountOutOfRange(65)));
        assert!(matches!("half".parse::<Partition>(), Err(PartitionError::Syntax(_))));
        assert_eq!(Partition::new(1, 4).unwrap().to_string(), "1/4");
    }

    #[test]
    fn the_whole_stream_keeps_the_plain_query_subjects_and_partitions_get_their_own() {
        use crate::protocol::StatusRequest;
        use momentum_domain::query::TrendRequest;
        assert_eq!(Partition::WHOLE.read_subject::<TrendRequest>(), "momentum.query.v1.trends");
        assert_eq!(
            Partition::new(1, 2).unwrap().read_subject::<StatusRequest>(),
            "momentum.query.v1.part-1-of-2.status"
        );
        assert!(Partition::WHOLE.event_filters().is_empty());
        assert_eq!(Partition::new(0, 2).unwrap().event_filters().len(), 32);
    }
}
