//! The projection fold: `apply(state, event)`.
//!
//! The state is an ordered key-value map ([`State`]); this module alone
//! decides its key layout, so the store that keeps it (sled in the
//! projector, a `BTreeMap` in tests) only has to read and write bytes.
//!
//! Every figure is kept exact and independent of arrival order:
//! - each (`source`, `id`) is applied once, however far apart its copies arrive;
//! - an event's effect is a sum of signed contributions, so a retraction
//!   subtracts exactly what the event added, whichever of the two came first;
//! - distinct participants per period are reference counts, so they go up
//!   on a participant's first event in a period and down on the last one's
//!   retraction;
//! - volunteer hours are summed as whole milli-hours, not floats, so the
//!   total does not depend on the order of the additions.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use chrono_tz::Tz;

use crate::event::{Event, EventData, EventType, Principle};
use crate::period::{Interval, local_date};

/// Key-value pairs in key order.
pub type Entries = Vec<Entry>;
/// One key-value pair.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Read access to the ordered key-value map that holds a projection.
pub trait StateRead {
    type Error;
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error>;
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, Self::Error>;
    /// Every entry with `start <= key < end`, in key order.
    fn scan_range(&self, start: &[u8], end: &[u8]) -> Result<Entries, Self::Error>;
    /// The first entry whose key starts with `prefix`.
    fn first_with_prefix(&self, prefix: &[u8]) -> Result<Option<Entry>, Self::Error> {
        Ok(self.scan_prefix(prefix)?.into_iter().next())
    }
    /// Shows `visit` every entry with `start <= key < end`, in key order,
    /// without copying them out: for reads that decode each entry at once.
    fn visit_range(&self, start: &[u8], end: &[u8], visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), Self::Error> {
        for (key, value) in self.scan_range(start, end)? {
            visit(&key, &value);
        }
        Ok(())
    }
}

/// Write access: what the fold needs on top of reads.
pub trait State: StateRead {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), Self::Error>;
    fn remove(&mut self, key: &[u8]) -> Result<(), Self::Error>;
}

/// Settings that change what the fold computes. Changing any of them
/// needs a rebuild of the projection from sequence 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProjectionSettings {
    /// The zone whose calendar decides which day, week and month an event is in.
    pub time_zone: Tz,
}

impl Default for ProjectionSettings {
    fn default() -> ProjectionSettings {
        ProjectionSettings { time_zone: chrono_tz::Europe::London }
    }
}

/// What applying one event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The event was new and now counts.
    Applied,
    /// This (`source`, `id`) had been applied before; nothing changed.
    Duplicate,
    /// The event is new but a retraction of it came first, so it never counts.
    ArrivedRetracted,
    /// A retraction that removed an event's contribution.
    Retracted,
    /// A retraction of an event not seen yet in its movement: it waits for
    /// that event (an event of another movement is never its target).
    RetractionPending,
    /// A retraction with nothing to do: its target is a retraction or an
    /// erasure, or is already retracted.
    RetractionIgnored,
    /// A participant's per-participant records were removed.
    Erased,
}

/// The layout of the keys and values below. It changes whenever either
/// does, and a store of another format must be rebuilt from sequence 1.
/// Format 1 told events apart by (`source`, `id`) across movements; 2 tells
/// them apart within their movement; 3 keeps the keys that are read and
/// written together in one stored record each ([`keys::bucket_len`]); 4
/// keeps a day's people, and a period's partners and areas, in one record;
/// 5 keeps a person's memberships of distinct sets with their other counts;
/// 6 files each event by the stream sequence it arrived at, in records of
/// 256 sequences, and keeps what the fold knows of it (its status) apart;
/// 7 puts a participant key's run of 256 days before the participant, so
/// that a checkpoint writes into a few neighbouring stretches of the store
/// ([`keys::participant_table`]); 8 keeps no event's JSON: a retraction
/// reads its target back from the event stream, which keeps every event
/// anyway, by the sequence its key names ([`crate::typed::EventArchive`]).
pub const FORMAT: &str = "8";

/// Store keys. Every key starts with a one-byte tag naming its table; keys
/// of a movement continue with the movement id and a NUL (movement ids never
/// contain one). Free-text parts (refs, org ids, areas) are length-prefixed,
/// since they may contain any character. Dates are big-endian days since
/// 0001-01-01, so keys sort by date (a participant's, within its run of 256
/// days, after the participant: [`keys::participant_table`]).
pub mod keys {
    use super::*;

    /// An event that arrived, filed by the stream sequence it arrived at,
    /// with its source and id in its key and nothing in its value: a
    /// retraction reads its target back from the event stream by that
    /// sequence, so that it subtracts exactly what the target added.
    pub(crate) const EVENT: u8 = b'e';
    /// The key-value fold's own copy of each event as it arrived (its JSON),
    /// by stream sequence: the stream in miniature, so that the fold runs
    /// without NATS. A store never keeps it ([`is_stored`]); the projector
    /// reads the stream itself.
    pub(crate) const ARCHIVED_EVENT: u8 = b'j';
    /// What the fold knows of one (`source`, `id`) of a movement
    /// ([`EventStatus`](super::EventStatus)).
    pub(crate) const EVENT_STATUS: u8 = b'k';
    pub(crate) const MOVEMENT: u8 = b'm';
    pub(crate) const PERIOD: u8 = b'p';
    /// A participant's participation days, active periods and memberships
    /// of periods' distinct sets, one table.
    pub(crate) const PARTICIPANT: u8 = b'a';
    /// The kind byte that ends a participant key of a participation day. An
    /// active period's key ends with its interval's byte instead, and a
    /// membership's with its interval's byte and its set's tag.
    pub(crate) const PARTICIPATION_DAY: u8 = b'f';
    pub(crate) const FIRST_DAY: u8 = b'd';
    pub(crate) const COHORT: u8 = b'h';
    pub(crate) const PRINCIPLE_DAY: u8 = b'x';
    pub(crate) const PRINCIPLE_MEMBER: u8 = b'y';
    pub(crate) const ERASED: u8 = b'z';
    /// The last applied stream sequence: the projection's checkpoint.
    pub const WATERMARK: &[u8] = b"w";

    /// Tables a store should keep a copy of in memory, beside the
    /// watermark: one entry per movement and one per movement and period,
    /// so a few hundred entries per movement and year of data, and read on
    /// every event folded and every trend asked for.
    const RESIDENT_TABLES: [u8; 2] = [MOVEMENT, PERIOD];

    /// Whether `key` belongs in a store's in-memory copy.
    pub fn is_resident(key: &[u8]) -> bool {
        key == WATERMARK || key.first().is_some_and(|tag| RESIDENT_TABLES.contains(tag))
    }

    /// Whether every key in `start..end` belongs in a store's in-memory
    /// copy: both ends lie in the same resident table.
    pub fn is_resident_range(start: &[u8], end: &[u8]) -> bool {
        match start.first() {
            Some(tag) if RESIDENT_TABLES.contains(tag) => end <= [tag + 1].as_slice(),
            _ => false,
        }
    }

    /// Every resident table, as the half-open key ranges a store loads its
    /// in-memory copy from.
    pub fn resident_ranges() -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> {
        let tables = RESIDENT_TABLES.into_iter().map(|tag| (vec![tag], vec![tag + 1]));
        tables.chain(std::iter::once((WATERMARK.to_vec(), [WATERMARK, &[0]].concat())))
    }

    /// How many leading bytes of `key` name the bucket it is kept in, for
    /// the tables whose keys are read and written together: a participant's
    /// participation days, active periods and memberships of every interval
    /// (`a`), a cohort's activity in one interval (`h`), the partners or the
    /// areas of one period (`g`, `r`), a principle's participants on one day
    /// (`y`) and a principle's days (`x`); dates within a run of 256 days;
    /// the events that arrived within a run of 256 stream sequences (`e`). A
    /// store keeps each bucket as one record, so folding a batch writes far
    /// fewer records than keys, and the neighbouring periods the fold looks
    /// up come with the first. A bucket holds at most 256 dates, the people
    /// of one day, or the partners or areas of one period.
    ///
    /// `None` for the other tables, whose every key is a bucket of its own,
    /// and for a key too short to name its bucket (a range start). Buckets
    /// of one table never begin one another, so every key of a bucket that
    /// sorts before a range start is a prefix of that start.
    pub fn bucket_len(key: &[u8]) -> Option<usize> {
        let tag = *key.first()?;
        // Every bucketed table's keys continue with the movement and a NUL.
        let movement_end = key.iter().position(|byte| *byte == 0)? + 1;
        let text_end = |at: usize| -> Option<usize> {
            let length = u32::from_be_bytes(key.get(at..at + 4)?.try_into().ok()?);
            (at + 4).checked_add(usize::try_from(length).ok()?)
        };
        const INTERVAL: usize = 1;
        const PRINCIPLE: usize = 1;
        const DATE: usize = 4;
        // A date's first three bytes name a run of 256 days: a bucket of
        // dates holds at most 256 of them (37 weeks, 9 months), so a record
        // stays small however long a participant or cohort has been active.
        const DAYS_256: usize = 3;
        // A sequence's first seven bytes name a run of 256 sequences. The
        // events of a checkpoint arrived one after another, so they share
        // a few records instead of one each (a third of all records before,
        // docs/benchmarks.md).
        const SEQUENCES_256: usize = 7;
        let end = match tag {
            EVENT => movement_end + SEQUENCES_256,
            PARTICIPANT => text_end(movement_end + DAYS_256)?,
            COHORT => movement_end + INTERVAL + DATE + DAYS_256,
            // A period's partners and areas are few.
            b'g' | b'r' => movement_end + INTERVAL + DATE,
            PRINCIPLE_MEMBER => movement_end + PRINCIPLE + DATE,
            PRINCIPLE_DAY => movement_end + PRINCIPLE + DAYS_256,
            _ => return None,
        };
        (end <= key.len()).then_some(end)
    }

    /// Whether `key` is itself the name of a bucket of [`bucket_len`]'s
    /// tables, rather than a key of its own.
    pub fn is_bucket(key: &[u8]) -> bool {
        bucket_len(key) == Some(key.len())
    }

    /// The distinct-value sets kept per period, each with its own tag.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Set {
        Volunteers,
        ActionParticipants,
        Organisers,
        Partners,
        Areas,
    }

    impl Set {
        /// Whether the set's members are people, whose memberships are kept
        /// with the rest of their counts.
        fn of_people(self) -> bool {
            matches!(self, Set::Volunteers | Set::ActionParticipants | Set::Organisers)
        }

        pub(crate) fn tag(self) -> u8 {
            match self {
                Set::Volunteers => b'v',
                Set::ActionParticipants => b'c',
                Set::Organisers => b'o',
                Set::Partners => b'g',
                Set::Areas => b'r',
            }
        }
    }

    /// A u32 length, so no text the fold could meet is cut short (the
    /// schemas bound refs to 128 characters, but the fold does not rely on it).
    fn push_text(key: &mut Vec<u8>, text: &str) {
        key.extend_from_slice(&u32::try_from(text.len()).expect("texts are shorter than 4 GiB").to_be_bytes());
        key.extend_from_slice(text.as_bytes());
    }

    /// Days since 0001-01-01 with the sign bit flipped, big-endian, so that
    /// keys sort by date for every date chrono can hold, BCE included.
    pub(crate) fn push_date(key: &mut Vec<u8>, date: NaiveDate) {
        key.extend_from_slice(&date_code(date).to_be_bytes());
    }

    /// A date as its key bytes spell it, as a number.
    fn date_code(date: NaiveDate) -> u32 {
        use chrono::Datelike;
        (date.num_days_from_ce() as u32) ^ 0x8000_0000
    }

    /// The run of 256 days a date's key falls in (its first three bytes):
    /// keys of a bucketed table whose dates share it share a record.
    pub(crate) fn date_run(date: NaiveDate) -> u32 {
        date_code(date) >> 8
    }

    /// The first and the last date of `date`'s run of 256 days
    /// ([`date_run`]): consecutive days have consecutive keys. Clamped to
    /// the dates chrono can hold at either end of its range.
    pub(crate) fn date_run_bounds(date: NaiveDate) -> (NaiveDate, NaiveDate) {
        let offset = chrono::Days::new(u64::from(date_code(date) & 0xff));
        let first = date.checked_sub_days(offset).unwrap_or(NaiveDate::MIN);
        (first, first.checked_add_days(chrono::Days::new(255)).unwrap_or(NaiveDate::MAX))
    }

    pub(crate) fn read_date(bytes: &[u8]) -> NaiveDate {
        read_stored_date(bytes).expect("stored dates are valid")
    }

    /// The date of a key's 4 date bytes; `None` for bytes no date was
    /// written as (a damaged store).
    pub(crate) fn read_stored_date(bytes: &[u8]) -> Option<NaiveDate> {
        let days = (u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) ^ 0x8000_0000) as i32;
        NaiveDate::from_num_days_from_ce_opt(days)
    }

    fn movement_prefix(tag: u8, movement: &str) -> Vec<u8> {
        let mut key = Vec::with_capacity(movement.len() + 24);
        key.push(tag);
        key.extend_from_slice(movement.as_bytes());
        key.push(0);
        key
    }

    /// An event's own record: the stream sequence it arrived at
    /// (big-endian, so that keys sort by it), its source and its id.
    pub(crate) fn event(movement: &str, seq: u64, source: &str, id: &str) -> Vec<u8> {
        let mut key = movement_prefix(EVENT, movement);
        key.extend_from_slice(&seq.to_be_bytes());
        push_text(&mut key, source);
        key.extend_from_slice(id.as_bytes());
        key
    }

    /// The key-value fold's copy of the event that arrived at `seq`.
    pub(crate) fn archived_event(seq: u64) -> Vec<u8> {
        let mut key = vec![ARCHIVED_EVENT];
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    /// The run of 256 stream sequences `seq` falls in: events whose
    /// sequences share it share a record.
    pub(crate) fn sequence_run(seq: u64) -> u64 {
        seq >> 8
    }

    /// Every sequence of run `run` ([`sequence_run`]).
    pub(crate) fn sequence_run_range(run: u64) -> std::ops::RangeInclusive<u64> {
        run << 8..=(run << 8 | 0xff)
    }

    /// An event's status. Events are told apart within their movement, so
    /// that a movement's figures depend on its own events only, however the
    /// movements are spread over partitioned projectors.
    pub(crate) fn event_status(movement: &str, source: &str, id: &str) -> Vec<u8> {
        let mut key = movement_prefix(EVENT_STATUS, movement);
        push_text(&mut key, source);
        key.extend_from_slice(id.as_bytes());
        key
    }

    /// Whether a store keeps `key` with `value`. The key-value fold keeps
    /// every event's status, to find events by (`source`, `id`); a status
    /// with neither flag says only the sequence its event arrived at, which
    /// the event's own key says too, so a store keeps only statuses with a
    /// flag (a retraction, done or pending), and a projection loaded from
    /// the store rebuilds the rest ([`crate::typed::Projection::load_entry`]).
    /// Nor does it keep the fold's copies of events ([`ARCHIVED_EVENT`]).
    pub fn is_stored(key: &[u8], value: &[u8]) -> bool {
        match key.first() {
            Some(&EVENT_STATUS) => super::EventStatus::decode(value).is_none_or(|status| status.is_stored()),
            Some(&ARCHIVED_EVENT) => false,
            _ => true,
        }
    }

    pub(crate) fn movement(movement: &str) -> Vec<u8> {
        let mut key = vec![MOVEMENT];
        key.extend_from_slice(movement.as_bytes());
        key
    }

    pub(crate) fn period(movement: &str, interval: Interval, start: NaiveDate) -> Vec<u8> {
        let mut key = movement_prefix(PERIOD, movement);
        key.push(interval.key_byte());
        push_date(&mut key, start);
        key
    }

    /// How many events count `value` in a period's distinct set. A person's
    /// membership is a participant key (the period's date, its interval and
    /// the set's tag), so that it is written with the rest of their counts
    /// and a period's people are never one big record; a period's partners
    /// and areas are keyed by the period.
    pub(crate) fn member(set: Set, movement: &str, interval: Interval, start: NaiveDate, value: &str) -> Vec<u8> {
        if set.of_people() {
            return participant_key(movement, value, start, &[interval.key_byte(), set.tag()]);
        }
        let mut key = movement_prefix(set.tag(), movement);
        key.push(interval.key_byte());
        push_date(&mut key, start);
        push_text(&mut key, value);
        key
    }

    /// The suffix of a participant key after its record's name
    /// ([`bucket_len`]): the last byte of the date, the kind byte (a
    /// participation day's, or an interval's), and a membership's set tag.
    /// With [`participant_run_name`] it spells the keys
    /// [`participation_day`], [`active`] and [`member`] spell, without
    /// building each whole: a checkpoint writes hundreds of thousands.
    pub(crate) fn participant_suffix(date: NaiveDate, kind: u8, set: Option<Set>) -> ParticipantSuffix {
        let [.., last] = date_code(date).to_be_bytes();
        match set {
            Some(set) => ParticipantSuffix { bytes: [last, kind, set.tag()], length: 3 },
            None => ParticipantSuffix { bytes: [last, kind, 0], length: 2 },
        }
    }

    /// A participant key's suffix ([`participant_suffix`]), without an
    /// allocation.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) struct ParticipantSuffix {
        bytes: [u8; 3],
        length: usize,
    }

    impl ParticipantSuffix {
        pub(crate) fn as_bytes(&self) -> &[u8] {
            &self.bytes[..self.length]
        }

        /// A number that orders suffixes as their bytes do: a set's tag is
        /// never 0, so a suffix of two bytes comes before any of three that
        /// begins with it.
        pub(crate) fn sort_key(&self) -> u32 {
            let [date, kind, tag] = self.bytes;
            u32::from_be_bytes([date, kind, tag, 0])
        }
    }

    /// The name of the record holding a participant's keys of the dates in
    /// `date`'s run of 256 days.
    pub(crate) fn participant_run_name(movement: &str, participant: &str, date: NaiveDate) -> Vec<u8> {
        let mut name = participant_table(movement);
        name.extend_from_slice(&date_code(date).to_be_bytes()[..3]);
        push_text(&mut name, participant);
        name
    }

    /// Appends the suffix of a principle's participant's key after its
    /// record's name, [`principle_member_prefix_from`]: with it, the key
    /// [`principle_member`] spells.
    pub(crate) fn push_principle_member_suffix(suffix: &mut Vec<u8>, participant: &str) {
        push_text(suffix, participant);
    }

    /// Everything the fold counts per participant of a movement: their
    /// participation days, their active periods of every interval and their
    /// memberships of periods' distinct sets. A key continues with the first
    /// three bytes of its date (its run of 256 days), the participant, the
    /// date's last byte and its kind ([`participant_key`]).
    ///
    /// The run comes before the participant so that the records a stretch
    /// of the stream changes lie close together in the store: events arrive
    /// roughly in date order, so a checkpoint writes into the newest runs,
    /// and sled's commit, which walks its tree to every record it writes,
    /// finds them among pages it has just touched instead of anywhere in a
    /// store that grows with the stream. In the harness sled's commit for a
    /// million events took about a tenth less time, and its last tenth
    /// grew less over the first (docs/benchmarks.md). The price: a
    /// participant's whole history is no longer one prefix; the key-value
    /// fold reads it from the movement's table ([`split_participant_key`]),
    /// and only for an erasure or a first participation that moves.
    pub(crate) fn participant_table(movement: &str) -> Vec<u8> {
        movement_prefix(PARTICIPANT, movement)
    }

    /// A participant key of `date`, ending with `kind`: a participation
    /// day's kind byte, an interval's byte, or an interval's byte and a
    /// set's tag.
    fn participant_key(movement: &str, participant: &str, date: NaiveDate, kind: &[u8]) -> Vec<u8> {
        let [run @ .., last] = date_code(date).to_be_bytes();
        let mut key = participant_table(movement);
        key.extend_from_slice(&run);
        push_text(&mut key, participant);
        key.push(last);
        key.extend_from_slice(kind);
        key
    }

    /// How many events of a participant count in the period of `interval`
    /// starting at `start`.
    pub(crate) fn active(movement: &str, interval: Interval, participant: &str, start: NaiveDate) -> Vec<u8> {
        participant_key(movement, participant, start, &[interval.key_byte()])
    }

    /// How many events of a participant count on `day`; the first such day
    /// is their first participation.
    pub(crate) fn participation_day(movement: &str, participant: &str, day: NaiveDate) -> Vec<u8> {
        participant_key(movement, participant, day, &[PARTICIPATION_DAY])
    }

    /// The parts of a participant key after [`participant_table`]: the
    /// participant, the date, and the kind bytes ([`participant_key`]).
    /// `None` for bytes no participant key was written as (a damaged store).
    pub(crate) fn split_participant_key(rest: &[u8]) -> Option<(&str, NaiveDate, &[u8])> {
        let (run, rest) = rest.split_first_chunk::<3>()?;
        let (length, rest) = rest.split_first_chunk::<4>()?;
        let length = usize::try_from(u32::from_be_bytes(*length)).ok()?;
        let participant = std::str::from_utf8(rest.get(..length)?).ok()?;
        let (last, kind) = rest[length..].split_first()?;
        if !matches!(kind.len(), 1 | 2) {
            return None;
        }
        let date = read_stored_date(&[run[0], run[1], run[2], *last])?;
        Some((participant, date, kind))
    }

    /// What a participant key of `kind` ([`split_participant_key`]) holds:
    /// a participation day, an active period of an interval, or a
    /// membership of a period's distinct set (the interval's byte and the
    /// set's tag).
    pub(crate) fn participant_entry(kind: &[u8]) -> ParticipantEntry {
        let interval_of = |byte: u8| Interval::ALL.into_iter().find(|interval| interval.key_byte() == byte);
        match *kind {
            [PARTICIPATION_DAY] => ParticipantEntry::Day,
            [byte] => ParticipantEntry::Active(interval_of(byte).expect("participant keys end with a known kind")),
            [byte, _] if interval_of(byte).is_some() => ParticipantEntry::Member,
            _ => panic!("participant keys end with a known kind"),
        }
    }

    /// The kind of a participant key.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum ParticipantEntry {
        Day,
        Active(Interval),
        Member,
    }

    /// A participant's first participation day, kept beside the days it is
    /// derived from so that reading it is one point lookup.
    pub(crate) fn first_day(movement: &str, participant: &str) -> Vec<u8> {
        let mut key = movement_prefix(FIRST_DAY, movement);
        push_text(&mut key, participant);
        key
    }

    pub(crate) fn cohort_prefix(movement: &str, interval: Interval, cohort: NaiveDate) -> Vec<u8> {
        let mut key = movement_prefix(COHORT, movement);
        key.push(interval.key_byte());
        push_date(&mut key, cohort);
        key
    }

    pub(crate) fn cohort(movement: &str, interval: Interval, cohort: NaiveDate, start: NaiveDate) -> Vec<u8> {
        let mut key = cohort_prefix(movement, interval, cohort);
        push_date(&mut key, start);
        key
    }

    pub(crate) fn principle_day_prefix(movement: &str, principle: Principle) -> Vec<u8> {
        let mut key = movement_prefix(PRINCIPLE_DAY, movement);
        key.push(principle as u8);
        key
    }

    pub(crate) fn principle_day(movement: &str, principle: Principle, day: NaiveDate) -> Vec<u8> {
        let mut key = principle_day_prefix(movement, principle);
        push_date(&mut key, day);
        key
    }

    pub(crate) fn principle_member_prefix(movement: &str, principle: Principle) -> Vec<u8> {
        let mut key = movement_prefix(PRINCIPLE_MEMBER, movement);
        key.push(principle as u8);
        key
    }

    /// The first possible key of a principle's participants on `day`.
    pub(crate) fn principle_member_prefix_from(movement: &str, principle: Principle, day: NaiveDate) -> Vec<u8> {
        let mut key = principle_member_prefix(movement, principle);
        push_date(&mut key, day);
        key
    }

    /// Present once any participant of the movement has been erased, so that
    /// folding a movement without erasures costs one lookup per event, not
    /// one per participant.
    pub(crate) fn erasures_exist(movement: &str) -> Vec<u8> {
        movement_prefix(ERASED, movement)
    }

    /// The mark of an erased pseudonym: the only record the fold keeps of it.
    pub(crate) fn erased(movement: &str, participant: &str) -> Vec<u8> {
        let mut key = movement_prefix(ERASED, movement);
        push_text(&mut key, participant);
        key
    }

    pub(crate) fn principle_member(movement: &str, principle: Principle, day: NaiveDate, participant: &str) -> Vec<u8> {
        let mut key = principle_member_prefix(movement, principle);
        push_date(&mut key, day);
        push_text(&mut key, participant);
        key
    }
}

/// The totals of one movement in one period.
///
/// Stored as consecutive little-endian `i64`s in field order. Fields are only
/// ever appended, and a shorter record reads with zeros for the missing ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeriodTotals {
    /// Distinct participants who took part in the period.
    pub active_participants: i64,
    pub joined: i64,
    pub meetings: i64,
    pub attendances: i64,
    pub volunteer_millihours: i64,
    pub collective_actions: i64,
    pub people_reached: i64,
    /// Participants whose first participation ever falls in the period.
    pub new_participants: i64,
    /// Participants who took part in this period and the one before.
    pub retained_participants: i64,
    pub volunteers: i64,
    pub action_participants: i64,
    pub organisers: i64,
    /// Meetings and actions with at least one citizen organiser.
    pub citizen_led: i64,
    pub partners: i64,
    pub areas: i64,
    /// Distinct participants who took part in any of this period and the
    /// three before it: U(P) of the momentum metric.
    pub window_participants: i64,
}

impl PeriodTotals {
    const FIELD_COUNT: usize = 16;

    /// The fields in stored order.
    pub(crate) fn fields(self) -> [i64; Self::FIELD_COUNT] {
        let mut copy = self;
        copy.fields_mut().map(|field| *field)
    }

    pub(crate) fn fields_mut(&mut self) -> [&mut i64; Self::FIELD_COUNT] {
        [
            &mut self.active_participants,
            &mut self.joined,
            &mut self.meetings,
            &mut self.attendances,
            &mut self.volunteer_millihours,
            &mut self.collective_actions,
            &mut self.people_reached,
            &mut self.new_participants,
            &mut self.retained_participants,
            &mut self.volunteers,
            &mut self.action_participants,
            &mut self.organisers,
            &mut self.citizen_led,
            &mut self.partners,
            &mut self.areas,
            &mut self.window_participants,
        ]
    }

    /// Adds (`sign` 1) or subtracts (-1) what an event counts by itself:
    /// sign-ups, meetings and their attendances, hours, actions and their
    /// reach, citizen-led ones. The distinct counts are the fold's.
    pub(crate) fn count_event(&mut self, data: &EventData, participants: usize, citizen_led: bool, sign: i64) {
        match data {
            EventData::ParticipantJoined(_) => self.joined += sign,
            EventData::MeetingHeld(_) => {
                self.meetings += sign;
                self.attendances += sign * participants as i64;
                self.citizen_led += sign * i64::from(citizen_led);
            }
            EventData::VolunteerHoursLogged(data) => self.volunteer_millihours += sign * millihours(data.hours),
            EventData::CollectiveActionTaken(data) => {
                self.collective_actions += sign;
                self.people_reached += sign * data.reach as i64;
                self.citizen_led += sign * i64::from(citizen_led);
            }
            EventData::EventRetracted(_) | EventData::ParticipantErased(_) => {}
        }
    }

    /// Adds every field of `change`.
    pub(crate) fn add(&mut self, change: &PeriodTotals) {
        let mut change = *change;
        for (field, delta) in self.fields_mut().into_iter().zip(change.fields_mut()) {
            *field += *delta;
        }
    }

    pub fn decode(bytes: &[u8]) -> PeriodTotals {
        let mut totals = PeriodTotals::default();
        for (field, chunk) in totals.fields_mut().into_iter().zip(bytes.chunks_exact(8)) {
            *field = i64::from_le_bytes(chunk.try_into().expect("chunks are 8 bytes"));
        }
        totals
    }

    pub fn encode(mut self) -> Vec<u8> {
        self.fields_mut().into_iter().flat_map(|field| field.to_le_bytes()).collect()
    }

    pub(crate) fn read<S: StateRead>(
        state: &S,
        movement: &str,
        interval: Interval,
        start: NaiveDate,
    ) -> Result<PeriodTotals, S::Error> {
        let key = keys::period(movement, interval, start);
        Ok(state.get(&key)?.map(|bytes| PeriodTotals::decode(&bytes)).unwrap_or_default())
    }
}

/// In a JSON `trend_totals` answer (the projector's default; the query
/// service asks for `TrendTotals::to_binary`'s form), totals travel as a
/// JSON array of the fields in stored order without its trailing zeros, so
/// a period where nothing happened is `[]`; like the stored form, a shorter
/// array reads with zeros and fields a newer writer appended are ignored.
impl serde::Serialize for PeriodTotals {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = self.fields();
        let length = fields.iter().rposition(|field| *field != 0).map_or(0, |last| last + 1);
        serializer.collect_seq(&fields[..length])
    }
}

impl<'de> serde::Deserialize<'de> for PeriodTotals {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<PeriodTotals, D::Error> {
        // Read straight into the fields: a trend's totals are thousands of
        // numbers, read on every trend request.
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = PeriodTotals;

            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("an array of integers")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut sequence: A) -> Result<PeriodTotals, A::Error> {
                let mut totals = PeriodTotals::default();
                let mut ended = false;
                for field in totals.fields_mut() {
                    match sequence.next_element::<i64>()? {
                        Some(value) => *field = value,
                        None => {
                            ended = true;
                            break;
                        }
                    }
                }
                while !ended && sequence.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(totals)
            }
        }
        deserializer.deserialize_seq(Fields)
    }
}

/// Volunteer hours are counted in whole milli-hours (3.6 seconds), so that
/// sums are exact; the schema bounds hours to (0, 24], so this cannot overflow.
pub fn millihours(hours: f64) -> i64 {
    (hours * 1000.0).round() as i64
}

/// What the fold knows of one (`source`, `id`) of a movement: where its
/// event is filed, once it has arrived, and its retraction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct EventStatus {
    /// The stream sequence its event arrived at; 0 until it has (a
    /// stream's sequences start at 1).
    pub(crate) seq: u64,
    pub(crate) retracted: bool,
    /// A retraction naming this event arrived before it.
    pub(crate) retraction_pending: bool,
}

impl EventStatus {
    const ENCODED_BYTES: usize = 10;

    pub(crate) fn arrived(&self) -> bool {
        self.seq != 0
    }

    /// Whether a store keeps it ([`keys::is_stored`]).
    pub(crate) fn is_stored(&self) -> bool {
        self.retracted || self.retraction_pending
    }

    pub(crate) fn encode(&self) -> [u8; EventStatus::ENCODED_BYTES] {
        let mut bytes = [0; EventStatus::ENCODED_BYTES];
        bytes[0] = u8::from(self.retracted);
        bytes[1] = u8::from(self.retraction_pending);
        bytes[2..].copy_from_slice(&self.seq.to_le_bytes());
        bytes
    }

    /// `None` for bytes no status was written as (a damaged store).
    pub(crate) fn decode(bytes: &[u8]) -> Option<EventStatus> {
        let bytes: &[u8; EventStatus::ENCODED_BYTES] = bytes.try_into().ok()?;
        let flag = |byte: u8| match byte {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        };
        let (flags, seq) = bytes.split_at(2);
        Some(EventStatus {
            seq: u64::from_le_bytes(seq.try_into().ok()?),
            retracted: flag(flags[0])?,
            retraction_pending: flag(flags[1])?,
        })
    }
}

fn read_status<S: StateRead>(state: &S, key: &[u8]) -> Result<EventStatus, S::Error> {
    Ok(state
        .get(key)?
        .map(|bytes| EventStatus::decode(&bytes).expect("the fold writes statuses it can read"))
        .unwrap_or_default())
}

/// Folds one event, found at stream sequence `seq`, into the state.
/// Sequences start at 1, as a stream's do.
pub fn apply<S: State>(
    state: &mut S,
    settings: &ProjectionSettings,
    event: &Event,
    seq: u64,
) -> Result<Outcome, S::Error> {
    assert!(seq > 0, "stream sequences start at 1");
    let status_key = keys::event_status(&event.subject, &event.source, &event.id);
    let mut status = read_status(state, &status_key)?;
    if status.arrived() {
        return Ok(Outcome::Duplicate);
    }
    status.seq = seq;
    state.put(&keys::event(&event.subject, seq, &event.source, &event.id), &[])?;
    state.put(&keys::archived_event(seq), &event.to_json())?;
    count_event(state, &event.subject)?;

    let outcome = match &event.data {
        EventData::ParticipantErased(erasure) => {
            for pseudonym in &erasure.pseudonyms {
                erase_participant(state, &event.subject, pseudonym)?;
            }
            state.put(&status_key, &status.encode())?;
            return Ok(Outcome::Erased);
        }
        EventData::EventRetracted(retraction) => {
            let outcome = retract(state, settings, event, &retraction.event_id)?;
            state.put(&status_key, &status.encode())?;
            return Ok(outcome);
        }
        _ if status.retraction_pending => {
            status.retracted = true;
            Outcome::ArrivedRetracted
        }
        _ => {
            add_contribution(state, settings, event, 1)?;
            Outcome::Applied
        }
    };
    status.retraction_pending = false;
    state.put(&status_key, &status.encode())?;
    Ok(outcome)
}

fn retract<S: State>(
    state: &mut S,
    settings: &ProjectionSettings,
    retraction: &Event,
    target_id: &str,
) -> Result<Outcome, S::Error> {
    // Only an event of the retraction's own movement can be its target.
    let target_key = keys::event_status(&retraction.subject, &retraction.source, target_id);
    let mut target = read_status(state, &target_key)?;
    if !target.arrived() {
        if target.retraction_pending {
            return Ok(Outcome::RetractionIgnored);
        }
        target.retraction_pending = true;
        state.put(&target_key, &target.encode())?;
        return Ok(Outcome::RetractionPending);
    }
    if target.retracted {
        return Ok(Outcome::RetractionIgnored);
    }
    let target_json = state.get(&keys::archived_event(target.seq))?.expect("the fold keeps a copy of every event");
    let target_event = Event::from_json(&target_json).expect("events were valid when kept");
    if matches!(target_event.kind, EventType::EventRetracted | EventType::ParticipantErased) {
        return Ok(Outcome::RetractionIgnored);
    }
    add_contribution(state, settings, &target_event, -1)?;
    target.retracted = true;
    state.put(&target_key, &target.encode())?;
    Ok(Outcome::Retracted)
}

/// Counts every distinct accepted event of a movement, retractions included:
/// this is the movement's event count in listings.
fn count_event<S: State>(state: &mut S, movement: &str) -> Result<(), S::Error> {
    let key = keys::movement(movement);
    let count = state.get(&key)?.map(|bytes| decode_u64(&bytes)).unwrap_or(0);
    state.put(&key, &(count + 1).to_le_bytes())
}

/// Adds (`sign` = 1) or subtracts (`sign` = -1) an event's contribution.
///
/// When adding, a participant's first participation is updated before their
/// activity, and when subtracting after it, so that every participant's
/// active periods are always counted under the cohort of their current first
/// participation.
fn add_contribution<S: State>(
    state: &mut S,
    settings: &ProjectionSettings,
    event: &Event,
    sign: i64,
) -> Result<(), S::Error> {
    let movement = event.subject.as_str();
    let day = local_date(event.time, settings.time_zone);
    let erased = ErasedParticipants::read(state, movement)?;
    let participants = erased.without(state, movement, event.participants())?;
    let mut totals = TotalsChanges::default();
    // Each participant's first participation as it stands while their
    // activity is counted: after this event's day is added, or before it is
    // removed.
    let mut firsts = Vec::with_capacity(participants.len());
    for participant in &participants {
        let first = if sign > 0 {
            update_first_participation(state, &mut totals, movement, participant, day, sign)?
        } else {
            first_participation(state, movement, participant)?
        };
        firsts.push(first.expect("a participant with an effective event has a first participation"));
    }
    let (organisers, citizen_led) = event.organisers();
    let organisers = erased.without(state, movement, organisers)?;
    for interval in Interval::ALL {
        let start = interval.period_start(day);
        totals.adjust(interval, start, |totals| {
            totals.count_event(&event.data, participants.len(), citizen_led, sign);
        });
        let mut set_members: Vec<(keys::Set, &str)> = Vec::new();
        match &event.data {
            // An erased volunteer is not counted again.
            EventData::VolunteerHoursLogged(data) if participants.contains(&data.participant.as_str()) => {
                set_members.push((keys::Set::Volunteers, &data.participant));
            }
            EventData::CollectiveActionTaken(_) => {
                set_members
                    .extend(participants.iter().map(|participant| (keys::Set::ActionParticipants, *participant)));
            }
            _ => {}
        }
        set_members.extend(organisers.iter().map(|organiser| (keys::Set::Organisers, *organiser)));
        set_members.extend(event.partners().into_iter().map(|partner| (keys::Set::Partners, partner)));
        set_members.extend(event.area().map(|area| (keys::Set::Areas, area)));
        for (set, value) in set_members {
            let distinct_change = count_member(state, &keys::member(set, movement, interval, start, value), sign)?;
            if distinct_change != 0 {
                totals.adjust(interval, start, |totals| match set {
                    keys::Set::Volunteers => totals.volunteers += distinct_change,
                    keys::Set::ActionParticipants => totals.action_participants += distinct_change,
                    keys::Set::Organisers => totals.organisers += distinct_change,
                    keys::Set::Partners => totals.partners += distinct_change,
                    keys::Set::Areas => totals.areas += distinct_change,
                });
            }
        }
        for (participant, first) in participants.iter().zip(&firsts) {
            let cohort = interval.period_start(*first);
            update_activity(state, &mut totals, movement, interval, participant, start, cohort, sign)?;
        }
    }
    if sign < 0 {
        for participant in &participants {
            update_first_participation(state, &mut totals, movement, participant, day, sign)?;
        }
    }
    totals.write(state, movement)?;
    for principle in event.principles() {
        let key = keys::principle_day(movement, principle, day);
        let activities = state.get(&key)?.map(|bytes| decode_u64(&bytes)).unwrap_or(0);
        write_count(
            state,
            &key,
            activities.checked_add_signed(sign).expect("a retraction only removes what was added"),
        )?;
        for participant in &participants {
            count_member(state, &keys::principle_member(movement, principle, day, participant), sign)?;
        }
    }
    Ok(())
}

/// Whether any participant of a movement has been erased: if not, nobody
/// needs to be checked one by one.
struct ErasedParticipants {
    any: bool,
}

impl ErasedParticipants {
    fn read<S: StateRead>(state: &S, movement: &str) -> Result<ErasedParticipants, S::Error> {
        Ok(ErasedParticipants { any: state.get(&keys::erasures_exist(movement))?.is_some() })
    }

    /// `participants` without the erased ones.
    fn without<'a, S: StateRead>(
        &self,
        state: &S,
        movement: &str,
        participants: Vec<&'a str>,
    ) -> Result<Vec<&'a str>, S::Error> {
        if !self.any {
            return Ok(participants);
        }
        let mut kept = Vec::with_capacity(participants.len());
        for participant in participants {
            if state.get(&keys::erased(movement, participant))?.is_none() {
                kept.push(participant);
            }
        }
        Ok(kept)
    }
}

/// A participant's keys, each with its date and what it holds.
type ParticipantKeys = Vec<(Vec<u8>, NaiveDate, keys::ParticipantEntry)>;

/// Every key of one participant of a movement, in key order. Read from the
/// movement's whole participant table, since a participant's keys are
/// spread over its runs of 256 days ([`keys::participant_table`]): the fold
/// asks only for an erasure, or when a participant's first participation
/// moves (an event before it, or a retraction of it).
fn participant_keys<S: StateRead>(state: &S, movement: &str, participant: &str) -> Result<ParticipantKeys, S::Error> {
    let table = keys::participant_table(movement);
    let mut found = Vec::new();
    for (key, _) in state.scan_prefix(&table)? {
        let (who, date, kind) =
            keys::split_participant_key(&key[table.len()..]).expect("the fold writes whole participant keys");
        if who == participant {
            let entry = keys::participant_entry(kind);
            found.push((key, date, entry));
        }
    }
    Ok(found)
}

/// Removes every record the fold keeps about one participant of a movement
/// (their participation days, first participation, active periods and
/// memberships of distinct sets) and marks them erased, so that later
/// events and retractions leave them out. Period totals and cohort counts
/// are aggregates and stay as they are: an erasure does not rewrite
/// figures already published.
fn erase_participant<S: State>(state: &mut S, movement: &str, participant: &str) -> Result<(), S::Error> {
    let mut days = Vec::new();
    for (key, date, entry) in participant_keys(state, movement, participant)? {
        state.remove(&key)?;
        if entry == keys::ParticipantEntry::Day {
            days.push(date);
        }
    }
    state.remove(&keys::first_day(movement, participant))?;
    for day in days {
        for principle in Principle::ALL {
            state.remove(&keys::principle_member(movement, principle, day, participant))?;
        }
    }
    state.put(&keys::erasures_exist(movement), &[])?;
    state.put(&keys::erased(movement, participant), &[])
}

/// The changes one contribution makes to period totals, summed in memory
/// and written once per period at the end: nothing in the fold reads totals
/// while it works, so this only saves reads and writes.
#[derive(Default)]
struct TotalsChanges {
    by_period: BTreeMap<(Interval, NaiveDate), PeriodTotals>,
}

impl TotalsChanges {
    fn adjust(&mut self, interval: Interval, start: NaiveDate, change: impl FnOnce(&mut PeriodTotals)) {
        change(self.by_period.entry((interval, start)).or_default());
    }

    fn write<S: State>(self, state: &mut S, movement: &str) -> Result<(), S::Error> {
        for ((interval, start), change) in self.by_period {
            let mut totals = PeriodTotals::read(state, movement, interval, start)?;
            totals.add(&change);
            state.put(&keys::period(movement, interval, start), &totals.encode())?;
        }
        Ok(())
    }
}

fn write_count<S: State>(state: &mut S, key: &[u8], count: u64) -> Result<(), S::Error> {
    if count == 0 { state.remove(key) } else { state.put(key, &count.to_le_bytes()) }
}

/// Adds `sign` to a reference count and returns how the number of distinct
/// members changed: +1 when it went from 0 to 1, -1 from 1 to 0, else 0.
fn count_member<S: State>(state: &mut S, key: &[u8], sign: i64) -> Result<i64, S::Error> {
    let before = state.get(key)?.map(|bytes| decode_u64(&bytes)).unwrap_or(0);
    let after = before.checked_add_signed(sign).expect("a retraction only removes what was added");
    write_count(state, key, after)?;
    Ok(match (before, after) {
        (0, 1..) => 1,
        (1.., 0) => -1,
        _ => 0,
    })
}

fn is_active<S: StateRead>(
    state: &S,
    movement: &str,
    interval: Interval,
    participant: &str,
    start: NaiveDate,
) -> Result<bool, S::Error> {
    Ok(state.get(&keys::active(movement, interval, participant, start))?.is_some())
}

/// A participant's first participation day in a movement, over all time.
fn first_participation<S: StateRead>(
    state: &S,
    movement: &str,
    participant: &str,
) -> Result<Option<NaiveDate>, S::Error> {
    Ok(state.get(&keys::first_day(movement, participant))?.map(|bytes| keys::read_date(&bytes)))
}

/// Counts a participation day of a participant and, when that moves their
/// first participation, moves them between periods' `new_participants` and
/// moves their active periods between cohorts. Returns the first
/// participation after the change.
fn update_first_participation<S: State>(
    state: &mut S,
    totals: &mut TotalsChanges,
    movement: &str,
    participant: &str,
    day: NaiveDate,
    sign: i64,
) -> Result<Option<NaiveDate>, S::Error> {
    let before = first_participation(state, movement, participant)?;
    let day_key = keys::participation_day(movement, participant, day);
    let day_change = count_member(state, &day_key, sign)?;
    let after = match (sign > 0, before) {
        (true, Some(first)) => Some(first.min(day)),
        (true, None) => Some(day),
        // Only the removal of the first day's last event moves it later.
        (false, Some(first)) if first == day && day_change < 0 => {
            let entries = participant_keys(state, movement, participant)?;
            let days = entries.into_iter().filter(|(_, _, entry)| *entry == keys::ParticipantEntry::Day);
            days.map(|(_, day, _)| day).min()
        }
        (false, _) => before,
    };
    if before == after {
        return Ok(after);
    }
    let first_day_key = keys::first_day(movement, participant);
    match after {
        Some(first) => {
            let mut bytes = Vec::with_capacity(4);
            keys::push_date(&mut bytes, first);
            state.put(&first_day_key, &bytes)?;
        }
        None => state.remove(&first_day_key)?,
    }
    // The participant's active periods, read once when a cohort moves.
    let mut periods: Option<Vec<(NaiveDate, Interval)>> = None;
    for interval in Interval::ALL {
        let old_cohort = before.map(|day| interval.period_start(day));
        let new_cohort = after.map(|day| interval.period_start(day));
        if old_cohort == new_cohort {
            continue;
        }
        if let Some(cohort) = old_cohort {
            totals.adjust(interval, cohort, |totals| totals.new_participants -= 1);
        }
        if let Some(cohort) = new_cohort {
            totals.adjust(interval, cohort, |totals| totals.new_participants += 1);
        }
        // Someone without a first participation has no active periods (it
        // is set before their first activity is counted), so a newcomer's
        // periods need no scan.
        if before.is_none() {
            continue;
        }
        if periods.is_none() {
            let entries = participant_keys(state, movement, participant)?;
            let active = entries.into_iter().filter_map(|(_, start, entry)| match entry {
                keys::ParticipantEntry::Active(interval) => Some((start, interval)),
                _ => None,
            });
            periods = Some(active.collect());
        }
        let starts = periods.iter().flatten().filter(|(_, of)| *of == interval).map(|(start, _)| *start);
        for start in starts {
            if let Some(cohort) = old_cohort {
                count_member(state, &keys::cohort(movement, interval, cohort, start), -1)?;
            }
            if let Some(cohort) = new_cohort {
                count_member(state, &keys::cohort(movement, interval, cohort, start), 1)?;
            }
        }
    }
    Ok(after)
}

/// Counts one event's participation of a participant in a period and, when
/// that makes them newly active (or no longer active) there, updates the
/// period's active count, their cohort's activity, retention and the rolling
/// windows the period belongs to.
#[allow(clippy::too_many_arguments)]
fn update_activity<S: State>(
    state: &mut S,
    totals: &mut TotalsChanges,
    movement: &str,
    interval: Interval,
    participant: &str,
    start: NaiveDate,
    cohort: NaiveDate,
    sign: i64,
) -> Result<(), S::Error> {
    let change = count_member(state, &keys::active(movement, interval, participant, start), sign)?;
    if change == 0 {
        return Ok(());
    }
    totals.adjust(interval, start, |totals| totals.active_participants += change);
    count_member(state, &keys::cohort(movement, interval, cohort, start), change)?;

    // Retention looks one period either side, and the windows that hold
    // this period reach `MOMENTUM_WINDOW_PERIODS - 1` either side: read
    // each of those periods' activity once (6 lookups, where asking per
    // window took up to 14).
    const REACH: i32 = MOMENTUM_WINDOW_PERIODS - 1;
    let mut active_around = [false; (2 * REACH + 1) as usize];
    for offset in (-REACH..=REACH).filter(|offset| *offset != 0) {
        let other = interval.shift(start, offset);
        active_around[(offset + REACH) as usize] = is_active(state, movement, interval, participant, other)?;
    }
    let active_at = |offset: i32| active_around[(offset + REACH) as usize];
    if active_at(-1) {
        totals.adjust(interval, start, |totals| totals.retained_participants += change);
    }
    if active_at(1) {
        totals.adjust(interval, interval.shift(start, 1), |totals| totals.retained_participants += change);
    }
    // The window ending at W covers W-3..=W: this period is in the windows
    // ending here and in the three periods after. A window's distinct count
    // changes only if no other period of it has the participant active.
    for offset in 0..MOMENTUM_WINDOW_PERIODS {
        let active_elsewhere = (offset - REACH..=offset).any(|other| other != 0 && active_at(other));
        if !active_elsewhere {
            totals.adjust(interval, interval.shift(start, offset), |totals| totals.window_participants += change);
        }
    }
    Ok(())
}

/// How many periods the momentum metric's rolling window spans.
pub const MOMENTUM_WINDOW_PERIODS: i32 = 4;

pub(crate) fn decode_u64(bytes: &[u8]) -> u64 {
    let mut buffer = [0u8; 8];
    let length = bytes.len().min(8);
    buffer[..length].copy_from_slice(&bytes[..length]);
    u64::from_le_bytes(buffer)
}

/// The last stream sequence folded into the state; 0 for an empty state.
pub fn watermark<S: StateRead>(state: &S) -> Result<u64, S::Error> {
    Ok(state.get(keys::WATERMARK)?.map(|bytes| decode_u64(&bytes)).unwrap_or(0))
}

/// The watermark from its stored value, for a store that reads the value
/// itself.
pub fn decode_watermark(bytes: &[u8]) -> u64 {
    decode_u64(bytes)
}

/// Records that every event up to `seq` has been folded in. The store
/// writes this in the same atomic batch as the changes it covers.
pub fn set_watermark<S: State>(state: &mut S, seq: u64) -> Result<(), S::Error> {
    state.put(keys::WATERMARK, &seq.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryState;
    use crate::query::{Metric, ReadSettings, TrendRequest, trend};
    use serde_json::Value;

    fn event(id: &str, kind: &str, movement: &str, data: serde_json::Value) -> Event {
        let value = serde_json::json!({
            "specversion": "1.0", "id": id, "source": "urn:partner", "type": kind,
            "subject": movement, "time": "2026-03-04T12:00:00Z", "data": data,
        });
        Event::from_json(value.to_string().as_bytes()).unwrap()
    }

    fn hours(id: &str, participant: &str, hours: f64) -> Event {
        event(id, "volunteer.hours_logged", "m", serde_json::json!({ "participant": participant, "hours": hours }))
    }

    fn retraction(id: &str, movement: &str, target: &str) -> Event {
        event(id, "event.retracted", movement, serde_json::json!({ "event_id": target }))
    }

    fn apply_all(events: &[&Event]) -> (MemoryState, Vec<Outcome>) {
        let mut state = MemoryState::default();
        let outcomes = events
            .iter()
            .enumerate()
            .map(|(index, event)| {
                let Ok(outcome) = apply(&mut state, &ProjectionSettings::default(), event, index as u64 + 1);
                outcome
            })
            .collect();
        (state, outcomes)
    }

    /// The week of 4 March 2026 for movement m, as metric name → value.
    fn week(state: &MemoryState) -> serde_json::Map<String, Value> {
        let day = NaiveDate::from_ymd_opt(2026, 3, 4).unwrap();
        let request =
            TrendRequest { movement: "m".to_owned(), interval: Interval::Week, from: day, to: day, metrics: None };
        let settings = ReadSettings { volunteer_hour_value_gbp: 10.0 };
        let Ok(trend) = trend(state, &request, &settings) else { panic!("movement m has events") };
        let row = &trend.series[0];
        Metric::ALL.iter().map(|metric| (metric.as_str().to_owned(), row.get(*metric).unwrap().clone())).collect()
    }

    fn erasure(id: &str, pseudonym: &str) -> Event {
        event(id, "participant.erased", "m", serde_json::json!({ "pseudonyms": [pseudonym] }))
    }

    fn meeting(id: &str, attendees: &[&str], organiser: &str) -> Event {
        let organisers = serde_json::json!([{ "participant": organiser, "role": "citizen" }]);
        event(
            id,
            "meeting.held",
            "m",
            serde_json::json!({ "attendees": attendees, "organisers": organisers,
            "principles": ["share_power"] }),
        )
    }

    /// Every stored key that holds `text`.
    fn keys_mentioning(state: &MemoryState, text: &str) -> Vec<Vec<u8>> {
        let Ok(entries) = state.scan_prefix(b"");
        entries
            .into_iter()
            .map(|(key, _)| key)
            .filter(|key| key.windows(text.len()).any(|window| window == text.as_bytes()))
            .collect()
    }

    #[test]
    fn keys_read_together_share_a_bucket_and_no_bucket_begins_another() {
        let action = event(
            "4",
            "collective_action.taken",
            "m",
            serde_json::json!({ "participants": ["erin", "gus"], "reach": 40, "organisers": [], "area": "north",
                "principles": ["share_power"] }),
        );
        let events = [meeting("1", &["erin", "fred"], "olga"), hours("2", "erin", 2.0), action, erasure("5", "fred")];
        let (state, _) = apply_all(&events.iter().collect::<Vec<_>>());
        let mut buckets = std::collections::BTreeSet::new();
        for key in state.entries.keys() {
            let bucketed = b"aeghryx".contains(&key[0]);
            match keys::bucket_len(key) {
                Some(length) => {
                    assert!(bucketed, "{key:?} is a key of its own");
                    // A member of up to four characters is a bucket of its own.
                    assert!(length <= key.len() && keys::is_bucket(&key[..length]), "{key:?}");
                    buckets.insert(key[..length].to_vec());
                }
                None => assert!(!bucketed, "{key:?} belongs in a bucket"),
            }
        }
        assert!(buckets.len() > 10, "every bucketed table is met: {}", buckets.len());
        for first in &buckets {
            for second in &buckets {
                assert!(first == second || !second.starts_with(first), "{first:?} begins {second:?}");
            }
        }
        // A participant's days and periods, and a day of them.
        let day = NaiveDate::from_ymd_opt(2026, 3, 4).unwrap();
        let table = keys::participant_table("m");
        let key = keys::active("m", Interval::Week, "erin", day);
        let same_day = keys::participation_day("m", "erin", day);
        let name = table.len() + 3 + 4 + "erin".len();
        assert_eq!(key[..name], same_day[..name], "a day and its week share a bucket");
        assert_eq!(keys::bucket_len(&table), None, "a range start without a run names no bucket");
        assert_eq!(keys::bucket_len(&key), Some(name), "a run of 256 days, then the participant");
        // Events that arrived within a run of 256 sequences share a record.
        let (first, last, next) =
            (keys::event("m", 256, "s", "a"), keys::event("m", 511, "t", "b"), keys::event("m", 512, "s", "c"));
        assert_eq!(first[..keys::bucket_len(&first).unwrap()], last[..keys::bucket_len(&last).unwrap()]);
        assert_ne!(last[..keys::bucket_len(&last).unwrap()], next[..keys::bucket_len(&next).unwrap()]);
        assert_eq!(keys::sequence_run_range(keys::sequence_run(300)), 256..=511);
        let later = keys::active("m", Interval::Week, "erin", day + chrono::Days::new(300));
        assert_ne!(key[..name], later[..name], "300 days later is another bucket");
    }

    #[test]
    fn a_participant_key_reads_back_as_written_and_sorts_by_its_run_before_its_participant() {
        let day = NaiveDate::from_ymd_opt(2026, 3, 4).unwrap();
        let table = keys::participant_table("m");
        let written = [
            (keys::participation_day("m", "erin", day), keys::ParticipantEntry::Day),
            (keys::active("m", Interval::Month, "erin", day), keys::ParticipantEntry::Active(Interval::Month)),
            (keys::member(keys::Set::Organisers, "m", Interval::Week, day, "erin"), keys::ParticipantEntry::Member),
        ];
        for (key, entry) in written {
            let (participant, date, kind) = keys::split_participant_key(&key[table.len()..]).unwrap();
            assert_eq!((participant, date, keys::participant_entry(kind)), ("erin", day, entry));
        }
        let key = keys::participation_day("m", "erin", day);
        for cut in 0..key.len() - table.len() {
            assert!(keys::split_participant_key(&key[table.len()..table.len() + cut]).is_none(), "cut at {cut}");
        }
        let too_long = [key.as_slice(), b"vx"].concat();
        assert!(keys::split_participant_key(&too_long[table.len()..]).is_none(), "a kind of three bytes");
        // Whoever they are, a participant's key of an earlier run sorts
        // first: a checkpoint writes into the newest runs.
        let next_run = keys::date_run_bounds(day).1.succ_opt().unwrap();
        let (early, late) = (keys::participation_day("m", "zoe", day), keys::participation_day("m", "al", next_run));
        assert!(early < late);
        assert!(keys::participant_run_name("m", "zoe", day) < keys::participant_run_name("m", "al", next_run));
    }

    #[test]
    fn a_run_of_256_days_is_bounded_by_its_first_and_last_date() {
        let start = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        for day in (0..600).map(|offset| start + chrono::Days::new(offset)) {
            let (first, last) = keys::date_run_bounds(day);
            assert!(first <= day && day <= last && (last - first).num_days() == 255, "{day}");
            assert_eq!(keys::date_run(first), keys::date_run(day));
            assert_eq!(keys::date_run(last), keys::date_run(day));
            assert_ne!(keys::date_run(first.pred_opt().unwrap()), keys::date_run(day));
            assert_ne!(keys::date_run(last.succ_opt().unwrap()), keys::date_run(day));
        }
        // Where the key's sign bit flips (between 30 and 31 December of
        // year 0), and at the ends of chrono's range.
        let (before_flip, after_flip) =
            (NaiveDate::from_ymd_opt(0, 12, 30).unwrap(), NaiveDate::from_ymd_opt(0, 12, 31).unwrap());
        assert_eq!(keys::date_run_bounds(after_flip).0, after_flip);
        assert_eq!(keys::date_run_bounds(before_flip).1, before_flip);
        let common_era = NaiveDate::from_ymd_opt(1, 1, 1).unwrap();
        let (first, last) = keys::date_run_bounds(common_era);
        assert!(first <= common_era && common_era <= last);
        assert_eq!(
            (keys::date_run(first), keys::date_run(last)),
            (keys::date_run(common_era), keys::date_run(common_era))
        );
        assert_eq!(keys::date_run_bounds(NaiveDate::MIN).0, NaiveDate::MIN);
        assert_eq!(keys::date_run_bounds(NaiveDate::MAX).1, NaiveDate::MAX);
    }

    #[test]
    fn a_record_name_and_a_suffix_spell_the_whole_key() {
        let spelled = |name: Vec<u8>, suffix: &[u8]| [name.as_slice(), suffix].concat();
        for day in [NaiveDate::from_ymd_opt(2026, 3, 4).unwrap(), NaiveDate::from_ymd_opt(1, 1, 1).unwrap()] {
            let name = keys::participant_run_name("m", "erin", day);
            assert_eq!(Some(name.len()), keys::bucket_len(&keys::participation_day("m", "erin", day)));
            let suffix = keys::participant_suffix(day, keys::PARTICIPATION_DAY, None);
            assert_eq!(spelled(name.clone(), suffix.as_bytes()), keys::participation_day("m", "erin", day));
            for interval in Interval::ALL {
                let suffix = keys::participant_suffix(day, interval.key_byte(), None);
                assert_eq!(spelled(name.clone(), suffix.as_bytes()), keys::active("m", interval, "erin", day));
                let without_set = suffix;
                for set in [keys::Set::Volunteers, keys::Set::ActionParticipants, keys::Set::Organisers] {
                    let suffix = keys::participant_suffix(day, interval.key_byte(), Some(set));
                    assert!(without_set.sort_key() < suffix.sort_key() && without_set.as_bytes() < suffix.as_bytes());
                    let member = keys::member(set, "m", interval, day, "erin");
                    assert_eq!(spelled(name.clone(), suffix.as_bytes()), member);
                }
            }
            let mut suffix = Vec::new();
            keys::push_principle_member_suffix(&mut suffix, "erin");
            let name = keys::principle_member_prefix_from("m", Principle::SharePower, day);
            assert_eq!(Some(name.len()), keys::bucket_len(&[name.as_slice(), &suffix].concat()));
            assert_eq!(spelled(name, &suffix), keys::principle_member("m", Principle::SharePower, day, "erin"));
        }
    }

    #[test]
    fn an_erasure_removes_every_per_participant_record_but_keeps_the_published_totals() {
        let events =
            [meeting("1", &["erin", "fred"], "olga"), hours("2", "erin", 2.0), meeting("3", &["erin"], "erin")];
        let (mut state, _) = apply_all(&events.iter().collect::<Vec<_>>());
        let before = week(&state);
        assert_eq!(before["active_participants"], 3);
        assert!(!keys_mentioning(&state, "erin").is_empty());

        let Ok(outcome) = apply(&mut state, &ProjectionSettings::default(), &erasure("e1", "erin"), 4);
        assert_eq!(outcome, Outcome::Erased);
        // Only the erasure mark names her; the events' records and their
        // statuses are records of events (found by retractions), not of her.
        let left: Vec<Vec<u8>> = keys_mentioning(&state, "erin")
            .into_iter()
            .filter(|key| ![keys::ERASED, keys::EVENT, keys::EVENT_STATUS].contains(&key[0]))
            .collect();
        assert!(left.is_empty(), "records of erin remain: {left:?}");
        assert_eq!(week(&state), before, "totals already published stay");
    }

    #[test]
    fn events_after_an_erasure_leave_the_erased_participant_out_and_retractions_do_not_fail() {
        let (mut state, _) = apply_all(&[&meeting("1", &["erin", "fred"], "olga")]);
        let settings = ProjectionSettings::default();
        let Ok(_) = apply(&mut state, &settings, &erasure("e1", "erin"), 2);
        // A late event naming her counts its other participants only.
        let Ok(_) = apply(&mut state, &settings, &meeting("2", &["erin", "gus"], "olga"), 3);
        let figures = week(&state);
        assert_eq!(figures["active_participants"], 4, "erin, fred and olga before the erasure, gus after it");
        assert_eq!(figures["attendances"], 3 + 2);
        // Retracting the event she was in before the erasure removes everyone
        // else's part of it without touching records she no longer has.
        let Ok(outcome) = apply(&mut state, &settings, &retraction("r1", "m", "1"), 4);
        assert_eq!(outcome, Outcome::Retracted);
        let figures = week(&state);
        assert_eq!(
            figures["active_participants"], 3,
            "fred is gone; erin's count stays as published; olga and gus remain"
        );
        assert_eq!(figures["meetings"], 1);
        // An erasure cannot be retracted.
        let Ok(outcome) = apply(&mut state, &settings, &retraction("r2", "m", "e1"), 5);
        assert_eq!(outcome, Outcome::RetractionIgnored);
        assert!(
            keys_mentioning(&state, "erin")
                .iter()
                .all(|key| [keys::ERASED, keys::EVENT, keys::EVENT_STATUS].contains(&key[0]))
        );
    }

    #[test]
    fn a_repeated_event_is_applied_once() {
        let first = hours("h1", "a", 2.0);
        let (state, outcomes) = apply_all(&[&first, &first.clone()]);
        assert_eq!(outcomes, vec![Outcome::Applied, Outcome::Duplicate]);
        assert_eq!(week(&state)["volunteer_hours"], 2.0);
        assert_eq!(week(&state)["active_participants"], 1);
    }

    #[test]
    fn a_retraction_removes_exactly_what_the_event_added() {
        let (one, two) = (hours("h1", "a", 2.0), hours("h2", "a", 1.5));
        let (state, outcomes) = apply_all(&[&one, &two, &retraction("r1", "m", "h1")]);
        assert_eq!(outcomes[2], Outcome::Retracted);
        assert_eq!(week(&state)["volunteer_hours"], 1.5);
        assert_eq!(week(&state)["active_participants"], 1, "a still took part through h2");
        let (state, _) = apply_all(&[&one, &retraction("r1", "m", "h1")]);
        assert_eq!(week(&state)["active_participants"], 0);
        assert_eq!(week(&state)["volunteer_hours"], 0.0);
    }

    #[test]
    fn a_retraction_that_arrives_first_keeps_the_event_from_ever_counting() {
        let (state, outcomes) = apply_all(&[&retraction("r1", "m", "h1"), &hours("h1", "a", 2.0)]);
        assert_eq!(outcomes, vec![Outcome::RetractionPending, Outcome::ArrivedRetracted]);
        assert_eq!(week(&state)["volunteer_hours"], 0.0);
        assert_eq!(week(&state)["active_participants"], 0);
    }

    #[test]
    fn a_retraction_from_another_movement_or_of_a_retraction_changes_nothing() {
        let one = hours("h1", "a", 2.0);
        let (state, outcomes) = apply_all(&[&one, &retraction("r1", "other", "h1")]);
        assert_eq!(outcomes[1], Outcome::RetractionPending, "it waits for an h1 of its own movement");
        assert_eq!(week(&state)["volunteer_hours"], 2.0);

        let (state, outcomes) = apply_all(&[
            &one,
            &retraction("r1", "m", "h1"),
            &retraction("r2", "m", "r1"),
            &retraction("r3", "m", "h1"),
        ]);
        assert_eq!(outcomes[1..], [Outcome::Retracted, Outcome::RetractionIgnored, Outcome::RetractionIgnored]);
        assert_eq!(week(&state)["volunteer_hours"], 0.0, "retracting r1 does not bring h1 back");
    }

    #[test]
    fn a_late_event_moves_a_first_participation_earlier_with_its_cohort() {
        let march = hours("h-march", "a", 1.0);
        let mut january = hours("h-january", "a", 1.0);
        january.time = chrono::DateTime::parse_from_rfc3339("2026-01-07T12:00:00Z").unwrap();
        let (state, _) = apply_all(&[&march, &january]);
        let read = |from: &str| {
            let day: NaiveDate = from.parse().unwrap();
            let request =
                TrendRequest { movement: "m".to_owned(), interval: Interval::Week, from: day, to: day, metrics: None };
            let Ok(trend) = trend(&state, &request, &ReadSettings { volunteer_hour_value_gbp: 0.0 }) else {
                panic!("movement m has events")
            };
            let row = &trend.series[0];
            (row.get(Metric::NewParticipants).unwrap().clone(), row.get(Metric::ReturningParticipants).unwrap().clone())
        };
        assert_eq!(read("2026-01-05"), (Value::from(1), Value::from(0)), "a is new in January");
        assert_eq!(read("2026-03-02"), (Value::from(0), Value::from(1)), "and returning in March");
        let cohorts = crate::query::cohorts(
            &state,
            &crate::query::CohortRequest {
                movement: "m".to_owned(),
                interval: Interval::Month,
                from: "2026-01-01".parse().unwrap(),
                to: "2026-03-31".parse().unwrap(),
            },
        );
        let Ok(cohorts) = cohorts else { panic!("movement m has events") };
        assert_eq!(cohorts.cohorts.len(), 1);
        assert_eq!(
            cohorts.cohorts[0].active,
            vec![Some(1), Some(0), Some(1)],
            "the March activity moved to the January cohort"
        );
    }

    #[test]
    fn period_totals_read_back_and_a_shorter_record_reads_zeros_for_new_fields() {
        let totals = PeriodTotals { active_participants: 3, people_reached: -1, ..PeriodTotals::default() };
        assert_eq!(PeriodTotals::decode(&totals.encode()), totals);
        let short = &totals.encode()[..8];
        assert_eq!(PeriodTotals::decode(short), PeriodTotals { active_participants: 3, ..PeriodTotals::default() });
    }

    #[test]
    fn only_the_watermark_movements_and_period_totals_are_resident() {
        let day = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let period = keys::period("m", Interval::Week, day);
        assert!(keys::is_resident(keys::WATERMARK) && keys::is_resident(&keys::movement("m")));
        assert!(keys::is_resident(&period));
        assert!(!keys::is_resident(&keys::event("m", 1, "s", "1")) && !keys::is_resident(b"w1"));
        assert!(keys::is_resident_range(&period, &keys::period("m", Interval::Week, day + chrono::Days::new(70))));
        assert!(keys::is_resident_range(b"p", b"q"));
        assert!(!keys::is_resident_range(b"p", b"q\0") && !keys::is_resident_range(b"e", b"f"));
        let loaded: Vec<(Vec<u8>, Vec<u8>)> = keys::resident_ranges().collect();
        for key in [keys::WATERMARK.to_vec(), keys::movement("m"), period] {
            assert!(loaded.iter().any(|(start, end)| *start <= key && key < *end), "{key:?} is loaded");
        }
        assert!(
            !loaded
                .iter()
                .any(|(start, end)| start.as_slice() <= b"w1".as_slice() && b"w1".as_slice() < end.as_slice())
        );
    }

    #[test]
    fn date_keys_sort_in_date_order_across_the_common_era() {
        let dates = ["-0100-01-01", "0000-06-01", "0001-01-01", "1970-01-01", "2026-03-04"];
        let encoded: Vec<Vec<u8>> = dates
            .iter()
            .map(|text| {
                let mut key = Vec::new();
                keys::push_date(&mut key, text.parse().unwrap());
                key
            })
            .collect();
        assert!(encoded.windows(2).all(|pair| pair[0] < pair[1]));
        for (text, key) in dates.iter().zip(&encoded) {
            assert_eq!(keys::read_date(key), text.parse::<NaiveDate>().unwrap());
        }
    }

    #[test]
    fn hours_are_counted_in_whole_milli_hours() {
        assert_eq!(millihours(0.1) + millihours(0.2), millihours(0.3));
        assert_eq!(millihours(24.0), 24_000);
    }
}
