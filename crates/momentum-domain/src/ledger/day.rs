//! One day's facts of a movement, kept in a few flat arrays.
//!
//! A read passes over every fact of the days it covers, and a movement
//! holds hundreds of thousands: a fact with its people and partners in
//! allocations of their own cost a pointer to follow (and a cache miss) for
//! each, and tens of bytes of allocator overhead. Here a day's facts, their
//! people and their partners each sit in one array, in sequence order.
//! Stream sequences only increase, so a fact always joins the end of its
//! day. A retracted fact stays, marked with the retraction's sequence, so
//! that a read as of an earlier sequence still counts it.

use super::{Fact, FactKind, Taking};

/// The number a row holds for no area.
const NONE: u32 = u32::MAX;

/// What a read sees of a fact.
#[derive(Clone, Copy, Debug)]
pub(super) struct FactView<'a> {
    /// The stream sequence its event arrived at.
    pub(super) seq: u64,
    /// The sequence of the retraction that removed it, if one did.
    pub(super) retracted_at: Option<u64>,
    pub(super) kind: FactKind,
    pub(super) measure: i64,
    pub(super) citizen_led: bool,
    pub(super) principles: u8,
    pub(super) area: Option<u32>,
    pub(super) label: Option<u32>,
    pub(super) partners: &'a [u32],
    pub(super) people: &'a [Taking],
}

/// A fact without its day, people and partners, which the day keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Row {
    seq: u64,
    measure: i64,
    /// Where its people and partners end in the day's arrays (they begin
    /// where the row before's end).
    people_end: u32,
    partners_end: u32,
    /// [`NONE`] for none: four bytes where an `Option` takes eight.
    area: u32,
    /// [`NONE`] for none.
    label: u32,
    kind: FactKind,
    citizen_led: bool,
    principles: u8,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Day {
    rows: Vec<Row>,
    people: Vec<Taking>,
    partners: Vec<u32>,
    /// The retracted facts' sequences with their retractions', in
    /// ascending order of the first: few, as retractions are.
    retracted: Vec<(u64, u64)>,
}

impl Day {
    /// Files `fact`, which arrived at `seq`, after every fact of the day.
    pub(super) fn push(&mut self, seq: u64, fact: &Fact) {
        assert!(self.rows.last().is_none_or(|last| last.seq < seq), "sequences only increase");
        self.people.extend_from_slice(&fact.people);
        self.partners.extend_from_slice(&fact.partners);
        self.rows.push(Row {
            seq,
            measure: fact.measure,
            people_end: u32::try_from(self.people.len()).expect("fewer than 2^32 people a day"),
            partners_end: u32::try_from(self.partners.len()).expect("fewer than 2^32 partners a day"),
            area: fact.area.map_or(NONE, |area| {
                assert!(area != NONE, "fewer than 2^32 - 1 areas");
                area
            }),
            label: fact.label.map_or(NONE, |label| {
                assert!(label != NONE, "fewer than 2^32 - 1 labels");
                label
            }),
            kind: fact.kind,
            citizen_led: fact.citizen_led,
            principles: fact.principles,
        });
    }

    /// Marks the fact that arrived at `seq` as retracted at `retraction`,
    /// and gives back its kind and people; `None` if the day holds no such
    /// fact, or it is retracted already.
    pub(super) fn retract(&mut self, seq: u64, retraction: u64) -> Option<(FactKind, Vec<Taking>)> {
        let at = self.rows.binary_search_by_key(&seq, |row| row.seq).ok()?;
        let place = self.retracted.binary_search_by_key(&seq, |(retracted, _)| *retracted).err()?;
        self.retracted.insert(place, (seq, retraction));
        let (people, _) = self.ranges(at);
        Some((self.rows[at].kind, self.people[people].to_vec()))
    }

    /// Whether a fact arrived at `seq`: `Some(None)` when it counts,
    /// `Some(Some(retraction))` when that retraction removed it.
    pub(super) fn filed(&self, seq: u64) -> Option<Option<u64>> {
        self.rows.binary_search_by_key(&seq, |row| row.seq).ok()?;
        let retracted = self.retracted.binary_search_by_key(&seq, |(retracted, _)| *retracted).ok();
        Some(retracted.map(|at| self.retracted[at].1))
    }

    /// The day's facts in sequence order, retracted ones included.
    pub(super) fn facts(&self) -> impl Iterator<Item = FactView<'_>> {
        // Both lists are in sequence order: walk the retracted one beside the rows.
        let mut retracted = self.retracted.iter().peekable();
        self.rows.iter().enumerate().map(move |(at, row)| {
            let (people, partners) = self.ranges(at);
            let retracted_at = retracted.next_if(|(seq, _)| *seq == row.seq).map(|(_, retraction)| *retraction);
            FactView {
                seq: row.seq,
                retracted_at,
                kind: row.kind,
                measure: row.measure,
                citizen_led: row.citizen_led,
                principles: row.principles,
                area: (row.area != NONE).then_some(row.area),
                label: (row.label != NONE).then_some(row.label),
                partners: &self.partners[partners],
                people: &self.people[people],
            }
        })
    }

    /// Where the people and the partners of the fact at `at` sit.
    fn ranges(&self, at: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let (people_start, partners_start) =
            at.checked_sub(1).map_or((0, 0), |before| (self.rows[before].people_end, self.rows[before].partners_end));
        let row = &self.rows[at];
        (people_start as usize..row.people_end as usize, partners_start as usize..row.partners_end as usize)
    }
}
