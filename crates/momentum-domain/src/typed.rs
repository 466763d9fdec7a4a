//! The projection as typed structures in memory: the same fold as
//! [`crate::projection::apply`], without a key-value map underneath.
//!
//! The key-value fold reads and writes about 78 keys an event; kept in sled
//! that caps a projector's catch-up far below what NATS delivers
//! (docs/benchmarks.md). Here each of those keys is a field, a small sorted
//! vector or a hash-map entry, so an event costs a few dozen memory lookups.
//! The two folds must agree exactly: [`Projection::to_key_values`] writes
//! this projection in the key-value layout of
//! [`crate::projection::FORMAT`], and a property test folds random event
//! sets both ways and compares every key.
//!
//! It answers every read ([`crate::query::ProjectionRead`]) as the
//! key-value state does, and it is kept in that same layout: a
//! [`Checkpoint`] holds the stored records that changed since the last
//! one, whole, so a store writes them without reading anything first, and
//! [`Projection::load_entry`] builds the projection back from the stored
//! keys. An event's JSON is not kept: a retraction reads its target back
//! from the event stream by the sequence it arrived at ([`EventArchive`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::NaiveDate;

use crate::event::{Event, EventData, EventType, Principle};
use crate::memory::MemoryState;
use crate::period::{Interval, local_date};
use crate::projection::{
    EventStatus, MOMENTUM_WINDOW_PERIODS, Outcome, PeriodTotals, ProjectionSettings, State, StateRead, keys,
};
use crate::query::MovementSummary;

/// Reference counts by key, kept as a vector sorted by key: a participant
/// has a few dozen at most, where a map's nodes would cost more memory and
/// time than a binary search.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Counts<K> {
    entries: Vec<(K, u64)>,
}

impl<K> Default for Counts<K> {
    fn default() -> Counts<K> {
        Counts { entries: Vec::new() }
    }
}

impl<K: Ord + Copy> Counts<K> {
    fn contains(&self, key: K) -> bool {
        self.entries.binary_search_by(|(entry, _)| entry.cmp(&key)).is_ok()
    }

    /// Adds `sign` to `key`'s count and returns how the number of distinct
    /// keys changed: +1 when it went from 0 to 1, -1 from 1 to 0, else 0.
    fn add(&mut self, key: K, sign: i64) -> i64 {
        match self.entries.binary_search_by(|(entry, _)| entry.cmp(&key)) {
            Ok(at) => {
                let count = &mut self.entries[at].1;
                *count = count.checked_add_signed(sign).expect("a retraction only removes what was added");
                if *count == 0 {
                    self.entries.remove(at);
                    return -1;
                }
                0
            }
            Err(at) => {
                assert!(sign > 0, "a retraction only removes what was added");
                self.entries.insert(at, (key, sign.unsigned_abs()));
                1
            }
        }
    }

    /// Sets `key`'s count, as loaded from the store.
    fn set(&mut self, key: K, count: u64) {
        match self.entries.binary_search_by(|(entry, _)| entry.cmp(&key)) {
            Ok(at) => self.entries[at].1 = count,
            Err(at) => self.entries.insert(at, (key, count)),
        }
    }

    /// Removes `key` whatever its count; whether it was there.
    fn remove(&mut self, key: K) -> bool {
        match self.entries.binary_search_by(|(entry, _)| entry.cmp(&key)) {
            Ok(at) => {
                self.entries.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    fn first(&self) -> Option<K> {
        self.entries.first().map(|(key, _)| *key)
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (K, u64)> + '_ {
        self.entries.iter().copied()
    }
}

/// Adds `sign` to `key`'s count in a map that keeps only non-zero counts;
/// returns the change in distinct keys, as [`Counts::add`].
fn count_in<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, u64>, key: K, sign: i64) -> i64 {
    use std::collections::hash_map::Entry;
    match counts.entry(key) {
        Entry::Occupied(mut entry) => {
            let count = entry.get_mut();
            *count = count.checked_add_signed(sign).expect("a retraction only removes what was added");
            if *count == 0 {
                entry.remove();
                return -1;
            }
            0
        }
        Entry::Vacant(entry) => {
            assert!(sign > 0, "a retraction only removes what was added");
            entry.insert(sign.unsigned_abs());
            1
        }
    }
}

/// [`count_in`] for an ordered map.
fn count_in_ordered<K: Ord>(counts: &mut BTreeMap<K, u64>, key: K, sign: i64) -> i64 {
    use std::collections::btree_map::Entry;
    match counts.entry(key) {
        Entry::Occupied(mut entry) => {
            let count = entry.get_mut();
            *count = count.checked_add_signed(sign).expect("a retraction only removes what was added");
            if *count == 0 {
                entry.remove();
                return -1;
            }
            0
        }
        Entry::Vacant(entry) => {
            assert!(sign > 0, "a retraction only removes what was added");
            entry.insert(sign.unsigned_abs());
            1
        }
    }
}

fn interval_index(interval: Interval) -> u8 {
    match interval {
        Interval::Day => 0,
        Interval::Week => 1,
        Interval::Month => 2,
    }
}

/// The distinct sets of people a period counts, of which a participant
/// may be a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum PeopleSet {
    Volunteers,
    ActionParticipants,
    Organisers,
}

impl PeopleSet {
    fn key_set(self) -> keys::Set {
        match self {
            PeopleSet::Volunteers => keys::Set::Volunteers,
            PeopleSet::ActionParticipants => keys::Set::ActionParticipants,
            PeopleSet::Organisers => keys::Set::Organisers,
        }
    }
}

/// The distinct sets of values other than people a period counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum ValueSet {
    Partners,
    Areas,
}

/// The run of 256 days a date's key falls in: keys whose dates share it
/// share a stored record ([`keys::bucket_len`]).
fn run_of(date: NaiveDate) -> u32 {
    keys::date_run(date)
}

/// Remembers that the record of `date`'s run changed, once per run.
fn mark_run(runs: &mut Vec<NaiveDate>, date: NaiveDate) {
    let run = run_of(date);
    if !runs.iter().any(|seen| run_of(*seen) == run) {
        runs.push(date);
    }
}

/// Everything counted about one participant of one movement.
#[derive(Clone, Debug, Default)]
struct Participant {
    /// Their effective events by day; the first day is their first
    /// participation.
    days: Counts<NaiveDate>,
    /// Their effective events by period, one list per interval
    /// ([`interval_index`]): their active periods.
    active: [Counts<NaiveDate>; 3],
    /// Their memberships of periods' distinct sets of people.
    memberships: Counts<(NaiveDate, u8, PeopleSet)>,
    /// A date of each run whose stored record changed since the last
    /// checkpoint.
    changed_runs: Vec<NaiveDate>,
    /// Whether the first day changed since the last checkpoint. Most
    /// events of a known participant leave it as it was, and a record
    /// costs sled the same to rewrite unchanged: skipping these was 9% of
    /// a checkpoint's records (docs/benchmarks.md).
    first_day_changed: bool,
}

impl Participant {
    fn is_empty(&self) -> bool {
        self.days.is_empty() && self.active.iter().all(Counts::is_empty) && self.memberships.is_empty()
    }

    /// Every date the participant's stored keys name.
    fn dates(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        let days = self.days.iter().map(|(day, _)| day);
        let active = self.active.iter().flat_map(|periods| periods.iter().map(|(start, _)| start));
        days.chain(active).chain(self.memberships.iter().map(|((start, _, _), _)| start))
    }
}

/// One (`source`, `id`) of a movement, in one allocation: the source's
/// length (4 bytes), the source, the id. A projection keeps one for every
/// event it has seen, a million and more, where two boxed strings would
/// cost twice the pointers and two allocations each.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct EventKey(Box<[u8]>);

impl EventKey {
    fn new(source: &str, id: &str) -> EventKey {
        let length = u32::try_from(source.len()).expect("an event's source is far shorter than 4 GiB");
        let mut bytes = Vec::with_capacity(4 + source.len() + id.len());
        bytes.extend_from_slice(&length.to_le_bytes());
        bytes.extend_from_slice(source.as_bytes());
        bytes.extend_from_slice(id.as_bytes());
        EventKey(bytes.into_boxed_slice())
    }

    fn parts(&self) -> (&str, &str) {
        let length = u32::from_le_bytes(self.0[..4].try_into().expect("4 bytes")) as usize;
        let (source, id) = self.0[4..].split_at(length);
        let text = |bytes| std::str::from_utf8(bytes).expect("made from two strings");
        (text(source), text(id))
    }
}

/// What is kept about one (`source`, `id`) of a movement.
#[derive(Clone, Copy, Debug, Default)]
struct EventEntry {
    /// Whether the event itself has arrived (a retraction may name it first).
    arrived: bool,
    /// The stream sequence it arrived at; 0 until it has.
    seq: u64,
    retracted: bool,
    /// A retraction naming this event arrived before it.
    retraction_pending: bool,
}

impl EventEntry {
    fn status(&self) -> EventStatus {
        EventStatus { seq: self.seq, retracted: self.retracted, retraction_pending: self.retraction_pending }
    }
}

/// What changed in a movement since the last checkpoint, by stored record.
#[derive(Clone, Debug, Default)]
struct Changes {
    events_counted: bool,
    /// Runs of 256 stream sequences ([`keys::sequence_run`]) that events
    /// arrived in: their records are written again, whole, from
    /// [`MovementProjection::recent_events`].
    event_runs: BTreeSet<u64>,
    /// Events whose status changed while it has a flag (a retraction, done
    /// or pending; the only statuses a store keeps, [`keys::is_stored`]),
    /// or lost its flag within one event (a retraction naming itself).
    statuses: HashSet<EventKey>,
    periods: BTreeSet<(Interval, NaiveDate)>,
    participants: HashSet<ParticipantId>,
    values: HashSet<(ValueSet, Interval, NaiveDate)>,
    /// A cohort's activity within one run, by a date of the run.
    cohorts: HashMap<(Interval, NaiveDate, u32), NaiveDate>,
    principle_days: HashMap<(Principle, u32), NaiveDate>,
    principle_members: HashSet<(Principle, NaiveDate)>,
    /// Participants erased since, with a date of each run they had records in.
    erased: Vec<(Box<str>, Vec<NaiveDate>)>,
}

/// A participant's number within one movement ([`ParticipantNames`]).
type ParticipantId = u32;

/// A movement's participants by number. Their pseudonyms are long (a
/// prefix and 32 hex digits), and a participant is a member of a
/// principle's day for each day they took part in a tagged activity: kept
/// once here, a number stands for them everywhere else. Numbers are never
/// reused, an erased participant's included: the projection keeps erased
/// pseudonyms anyway ([`MovementProjection::erased`]).
#[derive(Clone, Debug, Default)]
struct ParticipantNames {
    ids: HashMap<Box<str>, ParticipantId>,
    names: Vec<Box<str>>,
}

impl ParticipantNames {
    /// The participant's number, given one if they have none yet.
    fn id(&mut self, name: &str) -> ParticipantId {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = ParticipantId::try_from(self.names.len()).expect("a movement has fewer than 4 billion participants");
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        id
    }

    fn existing(&self, name: &str) -> Option<ParticipantId> {
        self.ids.get(name).copied()
    }

    fn name(&self, id: ParticipantId) -> &str {
        &self.names[id as usize]
    }
}

/// One movement's projection.
#[derive(Clone, Debug, Default)]
struct MovementProjection {
    /// Distinct accepted events, retractions and erasures included.
    events_counted: u64,
    events: HashMap<EventKey, EventEntry>,
    /// The events of the newest run of 256 sequences, and of every run
    /// that events arrived in since the last checkpoint, by sequence. A
    /// run's record is written whole, and the newest run may still grow,
    /// so its events stay after a checkpoint; sequences only increase, so
    /// no older run grows again. At most the events since the last
    /// checkpoint and 256 more.
    recent_events: BTreeMap<u64, EventKey>,
    periods: BTreeMap<(Interval, NaiveDate), PeriodTotals>,
    participant_names: ParticipantNames,
    participants: HashMap<ParticipantId, Participant>,
    /// Reference counts of a period's partners or areas.
    values: HashMap<(ValueSet, Interval, NaiveDate), HashMap<Box<str>, u64>>,
    /// Members of a cohort (interval, cohort period) active in a period.
    cohorts: BTreeMap<(Interval, NaiveDate, NaiveDate), u64>,
    /// Tagged activities by principle and day.
    principle_days: BTreeMap<(Principle, NaiveDate), u64>,
    /// The participants of those activities.
    principle_members: BTreeMap<(Principle, NaiveDate), Counts<ParticipantId>>,
    /// Erased pseudonyms: the only record kept of them.
    erased: HashSet<Box<str>>,
    changes: Changes,
}

/// The projection of every movement, and the last stream sequence folded.
#[derive(Clone, Debug, Default)]
pub struct Projection {
    movements: HashMap<Box<str>, MovementProjection>,
    watermark: u64,
}

/// Where a retraction's target is read back from, once folded: in the
/// projector, the event stream, which keeps every event.
pub trait EventArchive {
    type Error;
    /// The event `target` names; it is there, since the projection saw it
    /// arrive. Implementations read it with [`ArchivedEvent::read`].
    fn stored_event(&self, target: &ArchivedEvent<'_>) -> Result<Event, Self::Error>;
}

/// An event the projection saw arrive: the stream sequence it arrived at,
/// and what it must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchivedEvent<'a> {
    pub seq: u64,
    pub movement: &'a str,
    pub source: &'a str,
    pub id: &'a str,
}

impl ArchivedEvent<'_> {
    /// The event in `json`, what the archive holds at [`ArchivedEvent::seq`]
    /// (`None`: nothing), once checked to be this one: a stream deleted
    /// and made again, or a damaged store, would otherwise have a
    /// retraction subtract another event.
    pub fn read<E>(&self, json: Option<&[u8]>) -> Result<Event, ArchiveError<E>> {
        let seq = self.seq;
        let json = json.ok_or(ArchiveError::Missing { seq })?;
        let event = Event::from_json(json).map_err(|error| ArchiveError::Unreadable { seq, error })?;
        if (event.subject.as_str(), event.source.as_str(), event.id.as_str()) != (self.movement, self.source, self.id) {
            return Err(ArchiveError::Mismatched {
                seq,
                expected: format!("{} {} of {}", self.source, self.id, self.movement),
                found: format!("{} {} of {}", event.source, event.id, event.subject),
            });
        }
        Ok(event)
    }
}

/// Why an archived event could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError<E> {
    /// The archive could not be asked; asking again may work.
    #[error(transparent)]
    Read(E),
    #[error("no event is archived at sequence {seq}, though the projection saw one arrive there")]
    Missing { seq: u64 },
    #[error("the event archived at sequence {seq} cannot be read: {error}")]
    Unreadable { seq: u64, error: serde_json::Error },
    #[error("the event archived at sequence {seq} is {found}, not {expected} as the projection saw arrive there")]
    Mismatched { seq: u64, expected: String, found: String },
}

/// A key-value state in the layout of [`crate::projection`] keeps a copy of
/// every event that reached it ([`keys::archived_event`]).
impl<S: StateRead> EventArchive for S {
    type Error = ArchiveError<S::Error>;

    fn stored_event(&self, target: &ArchivedEvent<'_>) -> Result<Event, Self::Error> {
        let json = self.get(&keys::archived_event(target.seq)).map_err(ArchiveError::Read)?;
        target.read(json.as_deref())
    }
}

/// A stored record's entries: each key's suffix after the record's name,
/// and its value, packed as a store keeps a bucketed record
/// ([`keys::bucket_len`]): the suffix and then the value, each after its
/// length (4 bytes, little-endian). A checkpoint after a catch-up rewrites
/// millions of keys; as two vectors each, its largest took 173 MiB.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RecordEntries {
    bytes: Vec<u8>,
}

impl RecordEntries {
    /// Entries from (suffix, value) pairs, kept in the order given.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> RecordEntries {
        let mut entries = RecordEntries::default();
        for (suffix, value) in pairs {
            entries.push(suffix, value);
        }
        entries
    }

    /// Room for `count` entries of suffixes and values of up to these
    /// lengths, so that a record's entries are not moved as they grow.
    fn with_capacity(count: usize, suffix_length_max: usize, value_length_max: usize) -> RecordEntries {
        RecordEntries { bytes: Vec::with_capacity(count * (8 + suffix_length_max + value_length_max)) }
    }

    pub fn push(&mut self, suffix: &[u8], value: &[u8]) {
        for field in [suffix, value] {
            let length = u32::try_from(field.len()).expect("keys and values are far shorter than 4 GiB");
            self.bytes.extend_from_slice(&length.to_le_bytes());
            self.bytes.extend_from_slice(field);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The entries as a bucketed record is stored.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Each (suffix, value), in order.
    pub fn iter(&self) -> RecordEntriesIter<'_> {
        RecordEntriesIter { rest: &self.bytes }
    }

    /// Each (suffix, value) of the bucketed record stored under `name`, or
    /// why it cannot be read: stored bytes may be damaged, and every length
    /// they hold is checked before any is trusted.
    pub fn decode<'a>(name: &[u8], bytes: &'a [u8]) -> Result<RecordEntriesIter<'a>, UnreadableKey> {
        let mut rest = bytes;
        while !rest.is_empty() {
            for _field in 0..2 {
                let after = rest.split_first_chunk::<4>().and_then(|(length, field_and_after)| {
                    field_and_after.get(usize::try_from(u32::from_le_bytes(*length)).ok()?..)
                });
                rest = after.ok_or_else(|| UnreadableKey::of(name))?;
            }
        }
        Ok(RecordEntriesIter { rest: bytes })
    }

    /// The entries sorted by suffix, the later of two with one suffix kept.
    fn sorted(self) -> RecordEntries {
        let is_sorted = self.iter().zip(self.iter().skip(1)).all(|(one, next)| one.0 < next.0);
        if is_sorted {
            return self;
        }
        let mut pairs: Vec<(&[u8], &[u8])> = self.iter().collect();
        // A stable sort keeps the later of two values of one suffix last.
        pairs.sort_by(|one, other| one.0.cmp(other.0));
        let mut kept: Vec<(&[u8], &[u8])> = Vec::with_capacity(pairs.len());
        for pair in pairs {
            match kept.last_mut() {
                Some(last) if last.0 == pair.0 => *last = pair,
                _ => kept.push(pair),
            }
        }
        RecordEntries::from_pairs(kept)
    }
}

impl std::fmt::Debug for RecordEntries {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_list().entries(self.iter()).finish()
    }
}

/// The entries of a [`RecordEntries`] or of a stored bucketed record whose
/// lengths [`RecordEntries::decode`] checked.
pub struct RecordEntriesIter<'a> {
    rest: &'a [u8],
}

impl<'a> RecordEntriesIter<'a> {
    fn field(&mut self) -> &'a [u8] {
        let length = u32::from_le_bytes(self.rest[..4].try_into().expect("4 bytes")) as usize;
        let (field, rest) = self.rest[4..].split_at(length);
        self.rest = rest;
        field
    }
}

impl<'a> Iterator for RecordEntriesIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let suffix = self.field();
        Some((suffix, self.field()))
    }
}

/// The stored records that changed since the last checkpoint, each whole,
/// and the watermark they bring the store to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub watermark: u64,
    /// Records in name order. A record of a bucketed table
    /// ([`keys::bucket_len`]) lists its keys' suffixes after the name with
    /// their values, in order; any other record is one key, its one entry
    /// under the empty suffix. No entries: the record is removed.
    pub records: Vec<(Vec<u8>, RecordEntries)>,
}

#[cfg(test)]
impl Checkpoint {
    /// What this checkpoint writes under `key` (an event's, say): `None`
    /// if it does not write the record holding it, `Some(None)` if the
    /// record it writes does not hold it.
    pub fn value_of(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        let (name, suffix) = key.split_at(RecordWriter::name(key).len());
        let at = self.records.binary_search_by(|(record, _)| record.as_slice().cmp(name)).ok()?;
        Some(self.records[at].1.iter().find(|(entry, _)| *entry == suffix).map(|(_, value)| value))
    }
}

/// Gathers a checkpoint's records. Each changed record is written whole
/// and in one go (its name, then its keys), so records are kept in the
/// order written and sorted once at the end; a record written twice (a
/// participant erased twice between checkpoints, say) is merged then.
#[derive(Default)]
struct RecordWriter {
    records: Vec<(Vec<u8>, RecordEntries)>,
}

impl RecordWriter {
    fn name(key: &[u8]) -> &[u8] {
        &key[..keys::bucket_len(key).unwrap_or(key.len())]
    }

    /// The record that holds `probe` is rewritten: empty unless keys are
    /// put into it.
    fn rewrite(&mut self, probe: &[u8]) {
        self.records.push((RecordWriter::name(probe).to_vec(), RecordEntries::default()));
    }

    /// The record `name` is rewritten with `entries`, which must be in
    /// suffix order: [`RecordWriter::finish`] then has nothing to sort.
    /// Once a checkpoint: a second write of one name is merged with the
    /// first (the later value of a suffix kept), not put in its place.
    fn record(&mut self, name: Vec<u8>, entries: RecordEntries) {
        debug_assert!(keys::is_bucket(&name), "only a bucketed table's record has entries of its own");
        debug_assert!(
            entries.iter().zip(entries.iter().skip(1)).all(|(one, next)| one.0 < next.0),
            "a record's entries are in suffix order"
        );
        self.records.push((name, entries));
    }

    fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let (key, value) = (key.as_ref(), value.as_ref());
        let name_length = RecordWriter::name(key).len();
        let (name, suffix) = key.split_at(name_length);
        match self.records.last_mut() {
            Some((last, entries)) if last.as_slice() == name => entries.push(suffix, value),
            _ => {
                let mut entries = RecordEntries::default();
                entries.push(suffix, value);
                self.records.push((name.to_vec(), entries));
            }
        }
    }

    fn finish(mut self, watermark: u64) -> Checkpoint {
        self.records.sort_by(|one, other| one.0.cmp(&other.0));
        let mut records: Vec<(Vec<u8>, RecordEntries)> = Vec::with_capacity(self.records.len());
        for (name, entries) in self.records {
            match records.last_mut() {
                // The sort is stable: the later write's entries come last.
                Some((last, merged)) if *last == name => merged.bytes.extend_from_slice(&entries.bytes),
                _ => records.push((name, entries)),
            }
        }
        let records = records.into_iter().map(|(name, entries)| (name, entries.sorted())).collect();
        Checkpoint { watermark, records }
    }
}

/// A checkpoint being gathered ([`Projection::begin_checkpoint`]).
pub struct CheckpointGathering {
    watermark: u64,
    /// The movements still to gather, the next last.
    movements: Vec<Box<str>>,
    writer: RecordWriter,
}

impl CheckpointGathering {
    /// The checkpoint of every movement gathered. Sorting its records takes
    /// a while for a large one, and needs no projection.
    pub fn finish(self) -> Checkpoint {
        assert!(self.movements.is_empty(), "a checkpoint is finished once every movement is gathered");
        self.writer.finish(self.watermark)
    }
}

/// The projection's changes since the last checkpoint, summed per period
/// and applied once at the end of a contribution.
#[derive(Default)]
struct TotalsChanges {
    by_period: BTreeMap<(Interval, NaiveDate), PeriodTotals>,
}

impl TotalsChanges {
    fn adjust(&mut self, interval: Interval, start: NaiveDate, change: impl FnOnce(&mut PeriodTotals)) {
        change(self.by_period.entry((interval, start)).or_default());
    }
}

/// A stored key this projection cannot read: the store is not of
/// [`crate::projection::FORMAT`], or is damaged.
#[derive(Debug, thiserror::Error)]
#[error("a stored key of table {table:?} cannot be read ({length} bytes)")]
pub struct UnreadableKey {
    table: char,
    length: usize,
}

impl UnreadableKey {
    /// The stored key (or record name) `key` cannot be read.
    pub fn of(key: &[u8]) -> UnreadableKey {
        UnreadableKey { table: key.first().map_or('?', |tag| char::from(*tag)), length: key.len() }
    }
}

impl Projection {
    /// The last stream sequence folded in; 0 for an empty projection.
    pub fn watermark(&self) -> u64 {
        self.watermark
    }

    /// Folds one event, found at stream sequence `seq`: exactly what
    /// [`crate::projection::apply`] does to a key-value state. A retraction
    /// reads its target from `archive` ([`Projection::retraction_target`]);
    /// if that fails, nothing changes.
    pub fn apply<A: EventArchive + ?Sized>(
        &mut self,
        settings: &ProjectionSettings,
        event: &Event,
        seq: u64,
        archive: &A,
    ) -> Result<Outcome, A::Error> {
        let movement = match self.movements.get_mut(event.subject.as_str()) {
            Some(movement) => movement,
            None => self.movements.entry(event.subject.as_str().into()).or_default(),
        };
        let outcome = movement.apply(settings, event, seq, archive)?;
        self.watermark = self.watermark.max(seq);
        Ok(outcome)
    }

    /// The event that [`Projection::apply`] would read back from its
    /// archive to fold `event`, if any: `event` is a retraction, not yet
    /// folded, whose target has arrived in its movement and still counts.
    /// A caller that holds the projection behind a lock can read the
    /// target first, without the lock, and pass it in.
    pub fn retraction_target<'e>(&self, event: &'e Event) -> Option<ArchivedEvent<'e>> {
        let EventData::EventRetracted(retraction) = &event.data else { return None };
        let movement = self.movements.get(event.subject.as_str())?;
        let already_folded =
            movement.events.get(&EventKey::new(&event.source, &event.id)).is_some_and(|entry| entry.arrived);
        if already_folded {
            return None;
        }
        movement.archived_target(event, &retraction.event_id)
    }

    /// The records changed since the last checkpoint, ready to be written
    /// with the watermark in one atomic step; the projection then counts
    /// changes from here, and keeps no checkpointed event in memory but
    /// those of the newest run of sequences.
    pub fn checkpoint(&mut self) -> Checkpoint {
        let mut gathering = self.begin_checkpoint();
        while self.gather_next(&mut gathering) {}
        gathering.finish()
    }

    /// Starts a checkpoint to be gathered one movement at a time
    /// ([`Projection::gather_next`]), so that whoever holds the projection
    /// behind a lock can let readers in between movements. Nothing may be
    /// folded in until it is finished: an event folded in between would be
    /// missed by the movements already gathered, or counted under the
    /// wrong watermark.
    pub fn begin_checkpoint(&self) -> CheckpointGathering {
        let mut movements: Vec<Box<str>> = self.movements.keys().cloned().collect();
        movements.sort_unstable();
        CheckpointGathering { watermark: self.watermark, movements, writer: RecordWriter::default() }
    }

    /// Gathers the next movement's changes into `gathering`; `false` once
    /// every movement is gathered.
    pub fn gather_next(&mut self, gathering: &mut CheckpointGathering) -> bool {
        assert_eq!(self.watermark, gathering.watermark, "nothing is folded while a checkpoint is gathered");
        let Some(name) = gathering.movements.pop() else { return false };
        let movement = self.movements.get_mut(&name).expect("a projection never forgets a movement");
        movement.write_changes(&name, &mut gathering.writer);
        true
    }

    /// Adds one stored key and its value, as a checkpoint wrote them: a
    /// projection loaded from every key of a store equals the one that
    /// wrote them. Of the events it keeps each one's sequence, and the
    /// newest run's keys; the rest stay in the store. Then
    /// [`Projection::check_loaded`].
    pub fn load_entry(&mut self, key: &[u8], value: &[u8]) -> Result<(), UnreadableKey> {
        let unreadable = || UnreadableKey::of(key);
        if key == keys::WATERMARK {
            self.watermark = crate::projection::decode_watermark(value);
            return Ok(());
        }
        let mut reader = KeyReader::new(key).ok_or_else(unreadable)?;
        let movement_name = reader.movement().ok_or_else(unreadable)?;
        let movement = self.movements.entry(movement_name.into()).or_default();
        movement.load_entry(reader, value).ok_or_else(unreadable)
    }

    /// Checks what only a whole store shows: no event is filed after the
    /// watermark. A checkpoint writes its events with its watermark, so one
    /// beyond it is damage, and folding on would meet sequences below the
    /// newest event kept.
    pub fn check_loaded(&self) -> Result<(), UnreadableKey> {
        for (name, movement) in &self.movements {
            if let Some((&seq, key)) = movement.recent_events.last_key_value()
                && seq > self.watermark
            {
                let (source, id) = key.parts();
                return Err(UnreadableKey::of(&keys::event(name, seq, source, id)));
            }
        }
        Ok(())
    }

    /// This projection in the key-value layout of the fold in
    /// [`crate::projection`], without the events' own records (`e`) and
    /// the watermark, and without period totals that are all zero: the
    /// rest must equal that fold's state key for key.
    pub fn to_key_values(&self) -> MemoryState {
        let mut state = MemoryState::default();
        for (name, movement) in &self.movements {
            movement.write_key_values(name, &mut state);
        }
        state
    }
}

/// Reads a stored key's parts in order.
struct KeyReader<'key> {
    tag: u8,
    rest: &'key [u8],
}

impl<'key> KeyReader<'key> {
    fn new(key: &'key [u8]) -> Option<KeyReader<'key>> {
        let (tag, rest) = key.split_first()?;
        Some(KeyReader { tag: *tag, rest })
    }

    /// The movement: the whole rest for a movement's own key, else up to
    /// the NUL.
    fn movement(&mut self) -> Option<&'key str> {
        let bytes = if self.tag == keys::MOVEMENT {
            std::mem::take(&mut self.rest)
        } else {
            let end = self.rest.iter().position(|byte| *byte == 0)?;
            let (movement, rest) = self.rest.split_at(end);
            self.rest = &rest[1..];
            movement
        };
        std::str::from_utf8(bytes).ok()
    }

    fn byte(&mut self) -> Option<u8> {
        let (byte, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(*byte)
    }

    fn interval(&mut self) -> Option<Interval> {
        let byte = self.byte()?;
        Interval::ALL.into_iter().find(|interval| interval.key_byte() == byte)
    }

    fn principle(&mut self) -> Option<Principle> {
        let byte = self.byte()?;
        Principle::ALL.into_iter().find(|principle| *principle as u8 == byte)
    }

    fn date(&mut self) -> Option<NaiveDate> {
        if self.rest.len() < 4 {
            return None;
        }
        let (date, rest) = self.rest.split_at(4);
        self.rest = rest;
        keys::read_stored_date(date)
    }

    fn text(&mut self) -> Option<&'key str> {
        let (length, rest) = self.rest.split_first_chunk::<4>()?;
        let length = usize::try_from(u32::from_be_bytes(*length)).ok()?;
        if rest.len() < length {
            return None;
        }
        let (text, rest) = rest.split_at(length);
        self.rest = rest;
        std::str::from_utf8(text).ok()
    }

    /// A stream sequence: 8 bytes, big-endian.
    fn sequence(&mut self) -> Option<u64> {
        let (sequence, rest) = self.rest.split_first_chunk::<8>()?;
        self.rest = rest;
        Some(u64::from_be_bytes(*sequence))
    }

    fn remaining(&mut self) -> &'key [u8] {
        std::mem::take(&mut self.rest)
    }
}

impl MovementProjection {
    fn apply<A: EventArchive + ?Sized>(
        &mut self,
        settings: &ProjectionSettings,
        event: &Event,
        seq: u64,
        archive: &A,
    ) -> Result<Outcome, A::Error> {
        assert!(seq > 0, "stream sequences start at 1");
        if let Some(&newest) = self.recent_events.keys().next_back() {
            // An older run's record would be written again without the
            // events already stored in it.
            assert!(newest < seq, "stream sequences only increase");
        }
        let key = EventKey::new(&event.source, &event.id);
        let mut entry = self.events.get(&key).copied().unwrap_or_default();
        if entry.arrived {
            return Ok(Outcome::Duplicate);
        }
        // A retraction's target is read back, if it must be, before
        // anything changes: a failed read leaves the projection as it was.
        let target_event = match &event.data {
            EventData::EventRetracted(retraction) => self.retraction_target(event, &retraction.event_id, archive)?,
            _ => None,
        };
        entry.arrived = true;
        entry.seq = seq;
        if entry.status().is_stored() {
            // A retraction named it first: its stored status gains the sequence.
            self.changes.statuses.insert(key.clone());
        }
        self.events_counted += 1;
        self.changes.events_counted = true;
        self.hold_until_run_written(seq, key.clone());
        let outcome = match &event.data {
            EventData::ParticipantErased(erasure) => {
                for pseudonym in &erasure.pseudonyms {
                    self.erase_participant(pseudonym);
                }
                self.events.insert(key, entry);
                return Ok(Outcome::Erased);
            }
            EventData::EventRetracted(retraction) => {
                let outcome = self.retract(settings, event, &retraction.event_id, target_event);
                self.events.insert(key, entry);
                return Ok(outcome);
            }
            _ if entry.retraction_pending => {
                entry.retracted = true;
                Outcome::ArrivedRetracted
            }
            _ => {
                self.add_contribution(settings, event, 1);
                Outcome::Applied
            }
        };
        entry.retraction_pending = false;
        self.events.insert(key, entry);
        Ok(outcome)
    }

    /// Keeps an arrived event in memory until its run of sequences is
    /// written and no longer the newest.
    fn hold_until_run_written(&mut self, seq: u64, key: EventKey) {
        self.recent_events.insert(seq, key);
        self.changes.event_runs.insert(keys::sequence_run(seq));
    }

    /// The event a retraction names, when it has arrived and still
    /// counts, read back from `archive`.
    fn retraction_target<A: EventArchive + ?Sized>(
        &self,
        retraction: &Event,
        target_id: &str,
        archive: &A,
    ) -> Result<Option<Event>, A::Error> {
        self.archived_target(retraction, target_id).map(|target| archive.stored_event(&target)).transpose()
    }

    /// Where the event a retraction names arrived, when it has and still
    /// counts.
    fn archived_target<'e>(&self, retraction: &'e Event, target_id: &'e str) -> Option<ArchivedEvent<'e>> {
        match self.events.get(&EventKey::new(&retraction.source, target_id)) {
            Some(target) if target.arrived && !target.retracted => Some(ArchivedEvent {
                seq: target.seq,
                movement: &retraction.subject,
                source: &retraction.source,
                id: target_id,
            }),
            _ => None,
        }
    }

    fn retract(
        &mut self,
        settings: &ProjectionSettings,
        retraction: &Event,
        target_id: &str,
        target_event: Option<Event>,
    ) -> Outcome {
        let key = EventKey::new(&retraction.source, target_id);
        let target = self.events.entry(key.clone()).or_default();
        if !target.arrived {
            if target.retraction_pending {
                return Outcome::RetractionIgnored;
            }
            target.retraction_pending = true;
            self.changes.statuses.insert(key);
            return Outcome::RetractionPending;
        }
        if target.retracted {
            return Outcome::RetractionIgnored;
        }
        let Some(target_event) = target_event else {
            unreachable!("the event of an arrived, counting target is read before its retraction")
        };
        if matches!(target_event.kind, EventType::EventRetracted | EventType::ParticipantErased) {
            return Outcome::RetractionIgnored;
        }
        target.retracted = true;
        self.changes.statuses.insert(key);
        self.add_contribution(settings, &target_event, -1);
        Outcome::Retracted
    }

    fn without_erased<'a>(&self, participants: Vec<&'a str>) -> Vec<&'a str> {
        if self.erased.is_empty() {
            return participants;
        }
        participants.into_iter().filter(|participant| !self.erased.contains(*participant)).collect()
    }

    /// A participant's record, marked as changed.
    fn participant(&mut self, participant: &str) -> &mut Participant {
        let id = self.participant_names.id(participant);
        self.changes.participants.insert(id);
        self.participants.entry(id).or_default()
    }

    fn add_contribution(&mut self, settings: &ProjectionSettings, event: &Event, sign: i64) {
        let day = local_date(event.time, settings.time_zone);
        let participants = self.without_erased(event.participants());
        let mut totals = TotalsChanges::default();
        let mut firsts = Vec::with_capacity(participants.len());
        for participant in &participants {
            let first = if sign > 0 {
                self.update_first_participation(&mut totals, participant, day, sign)
            } else {
                let id = self.participant_names.existing(participant);
                id.and_then(|id| self.participants.get(&id)).and_then(|record| record.days.first())
            };
            firsts.push(first.expect("a participant with an effective event has a first participation"));
        }
        let (organisers, citizen_led) = event.organisers();
        let organisers = self.without_erased(organisers);
        for interval in Interval::ALL {
            let start = interval.period_start(day);
            totals.adjust(interval, start, |totals| {
                totals.count_event(&event.data, participants.len(), citizen_led, sign);
            });
            let mut people: Vec<(PeopleSet, &str)> = Vec::new();
            match &event.data {
                EventData::VolunteerHoursLogged(data) if participants.contains(&data.participant.as_str()) => {
                    people.push((PeopleSet::Volunteers, &data.participant));
                }
                EventData::CollectiveActionTaken(_) => {
                    people.extend(participants.iter().map(|participant| (PeopleSet::ActionParticipants, *participant)));
                }
                _ => {}
            }
            people.extend(organisers.iter().map(|organiser| (PeopleSet::Organisers, *organiser)));
            for (set, person) in people {
                let record = self.participant(person);
                let change = record.memberships.add((start, interval_index(interval), set), sign);
                mark_run(&mut record.changed_runs, start);
                if change != 0 {
                    totals.adjust(interval, start, |totals| match set {
                        PeopleSet::Volunteers => totals.volunteers += change,
                        PeopleSet::ActionParticipants => totals.action_participants += change,
                        PeopleSet::Organisers => totals.organisers += change,
                    });
                }
            }
            let values = event
                .partners()
                .into_iter()
                .map(|partner| (ValueSet::Partners, partner))
                .chain(event.area().map(|area| (ValueSet::Areas, area)));
            for (set, value) in values {
                let counts = self.values.entry((set, interval, start)).or_default();
                let change = count_in(counts, Box::from(value), sign);
                if counts.is_empty() {
                    self.values.remove(&(set, interval, start));
                }
                self.changes.values.insert((set, interval, start));
                if change != 0 {
                    totals.adjust(interval, start, |totals| match set {
                        ValueSet::Partners => totals.partners += change,
                        ValueSet::Areas => totals.areas += change,
                    });
                }
            }
            for (participant, first) in participants.iter().zip(&firsts) {
                let cohort = interval.period_start(*first);
                self.update_activity(&mut totals, interval, participant, start, cohort, sign);
            }
        }
        if sign < 0 {
            for participant in &participants {
                self.update_first_participation(&mut totals, participant, day, sign);
            }
        }
        for (period, change) in totals.by_period {
            self.periods.entry(period).or_default().add(&change);
            self.changes.periods.insert(period);
        }
        for principle in event.principles() {
            count_in_ordered(&mut self.principle_days, (principle, day), sign);
            self.changes.principle_days.entry((principle, run_of(day))).or_insert(day);
            let ids: Vec<ParticipantId> =
                participants.iter().map(|participant| self.participant_names.id(participant)).collect();
            let members = self.principle_members.entry((principle, day)).or_default();
            for id in ids {
                members.add(id, sign);
            }
            if members.is_empty() {
                self.principle_members.remove(&(principle, day));
            }
            if !participants.is_empty() {
                self.changes.principle_members.insert((principle, day));
            }
        }
    }

    /// Adds `change` to a cohort's count of members active in a period.
    fn count_cohort(&mut self, interval: Interval, cohort: NaiveDate, start: NaiveDate, change: i64) {
        count_in_ordered(&mut self.cohorts, (interval, cohort, start), change);
        self.changes.cohorts.entry((interval, cohort, run_of(start))).or_insert(start);
    }

    /// Counts a participation day and, when that moves the participant's
    /// first participation, moves them between periods' new participants
    /// and their active periods between cohorts. Returns the first
    /// participation after the change.
    fn update_first_participation(
        &mut self,
        totals: &mut TotalsChanges,
        participant: &str,
        day: NaiveDate,
        sign: i64,
    ) -> Option<NaiveDate> {
        let record = self.participant(participant);
        let before = record.days.first();
        record.days.add(day, sign);
        mark_run(&mut record.changed_runs, day);
        let after = record.days.first();
        if before == after {
            return after;
        }
        record.first_day_changed = true;
        let active = record.active.clone();
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
            for (start, _) in active[usize::from(interval_index(interval))].iter() {
                if let Some(cohort) = old_cohort {
                    self.count_cohort(interval, cohort, start, -1);
                }
                if let Some(cohort) = new_cohort {
                    self.count_cohort(interval, cohort, start, 1);
                }
            }
        }
        after
    }

    /// Counts one event's participation in a period and, when that makes
    /// the participant newly active (or no longer active) there, updates
    /// the period's active count, their cohort's activity, retention and the
    /// rolling windows the period belongs to.
    fn update_activity(
        &mut self,
        totals: &mut TotalsChanges,
        interval: Interval,
        participant: &str,
        start: NaiveDate,
        cohort: NaiveDate,
        sign: i64,
    ) {
        let record = self.participant(participant);
        mark_run(&mut record.changed_runs, start);
        let periods = &mut record.active[usize::from(interval_index(interval))];
        let change = periods.add(start, sign);
        if change == 0 {
            return;
        }
        const REACH: i32 = MOMENTUM_WINDOW_PERIODS - 1;
        let mut active_around = [false; (2 * REACH + 1) as usize];
        for offset in (-REACH..=REACH).filter(|offset| *offset != 0) {
            active_around[(offset + REACH) as usize] = periods.contains(interval.shift(start, offset));
        }
        totals.adjust(interval, start, |totals| totals.active_participants += change);
        self.count_cohort(interval, cohort, start, change);
        let active_at = |offset: i32| active_around[(offset + REACH) as usize];
        if active_at(-1) {
            totals.adjust(interval, start, |totals| totals.retained_participants += change);
        }
        if active_at(1) {
            totals.adjust(interval, interval.shift(start, 1), |totals| totals.retained_participants += change);
        }
        for offset in 0..MOMENTUM_WINDOW_PERIODS {
            let active_elsewhere = (offset - REACH..=offset).any(|other| other != 0 && active_at(other));
            if !active_elsewhere {
                totals.adjust(interval, interval.shift(start, offset), |totals| totals.window_participants += change);
            }
        }
    }

    /// Removes everything counted about one participant and marks them
    /// erased; period totals and cohort counts stay (see
    /// [`crate::projection`]).
    fn erase_participant(&mut self, participant: &str) {
        let id = self.participant_names.existing(participant);
        if let Some((id, record)) = id.and_then(|id| Some((id, self.participants.remove(&id)?))) {
            let mut runs = record.changed_runs.clone();
            for date in record.dates() {
                mark_run(&mut runs, date);
            }
            for (day, _) in record.days.iter() {
                for principle in Principle::ALL {
                    if let Some(members) = self.principle_members.get_mut(&(principle, day))
                        && members.remove(id)
                    {
                        self.changes.principle_members.insert((principle, day));
                        if members.is_empty() {
                            self.principle_members.remove(&(principle, day));
                        }
                    }
                }
            }
            self.changes.participants.remove(&id);
            self.changes.erased.push((participant.into(), runs));
        } else {
            // Without a record, nothing of theirs is stored: an emptied
            // record is removed only once its runs are written empty.
            self.changes.erased.push((participant.into(), Vec::new()));
        }
        self.erased.insert(participant.into());
    }

    /// Writes every record changed since the last checkpoint, whole, and
    /// forgets the changes and the events now stored.
    fn write_changes(&mut self, movement: &str, writer: &mut RecordWriter) {
        let changes = std::mem::take(&mut self.changes);
        if changes.events_counted {
            writer.put(keys::movement(movement), count_bytes(self.events_counted));
        }
        for run in changes.event_runs {
            let run_events = self.recent_events.range(keys::sequence_run_range(run));
            for (seq, key) in run_events {
                let (source, id) = key.parts();
                writer.put(keys::event(movement, *seq, source, id), []);
            }
        }
        // Only the newest run can still grow.
        if let Some(&newest) = self.recent_events.keys().next_back() {
            self.recent_events =
                self.recent_events.split_off(keys::sequence_run_range(keys::sequence_run(newest)).start());
        }
        for key in changes.statuses {
            let status = self.events.get(&key).expect("a changed event is kept").status();
            let (source, id) = key.parts();
            let status_key = keys::event_status(movement, source, id);
            if status.is_stored() {
                writer.put(status_key, status.encode());
            } else {
                // A retraction that names itself: pending while it is
                // folded, then arrived.
                writer.rewrite(&status_key);
            }
        }
        for (interval, start) in changes.periods {
            let totals = self.periods.get(&(interval, start)).copied().unwrap_or_default();
            writer.put(keys::period(movement, interval, start), totals.encode());
        }
        for id in changes.participants {
            let Some(record) = self.participants.get_mut(&id) else { continue };
            let participant = self.participant_names.name(id);
            let runs = std::mem::take(&mut record.changed_runs);
            if std::mem::take(&mut record.first_day_changed) {
                let first_day_key = keys::first_day(movement, participant);
                match record.days.first() {
                    Some(first) => {
                        let mut bytes = Vec::with_capacity(4);
                        keys::push_date(&mut bytes, first);
                        writer.put(first_day_key, bytes);
                    }
                    None => writer.rewrite(&first_day_key),
                }
            }
            for date_in_run in runs {
                write_participant_run(movement, participant, record, date_in_run, writer);
            }
            if record.is_empty() {
                self.participants.remove(&id);
            }
        }
        for (participant, runs) in changes.erased {
            writer.rewrite(&keys::first_day(movement, &participant));
            for run in runs {
                writer.rewrite(&keys::participation_day(movement, &participant, run));
            }
            writer.put(keys::erasures_exist(movement), Vec::new());
            writer.put(keys::erased(movement, &participant), Vec::new());
        }
        for (set, interval, start) in changes.values {
            let key_set = match set {
                ValueSet::Partners => keys::Set::Partners,
                ValueSet::Areas => keys::Set::Areas,
            };
            writer.rewrite(&keys::member(key_set, movement, interval, start, ""));
            for (value, count) in self.values.get(&(set, interval, start)).into_iter().flatten() {
                writer.put(keys::member(key_set, movement, interval, start, value), count_bytes(*count));
            }
        }
        for ((interval, cohort, run), probe) in changes.cohorts {
            writer.rewrite(&keys::cohort(movement, interval, cohort, probe));
            // Only the run's periods: a cohort's whole range grows with the data.
            let (first, last) = keys::date_run_bounds(probe);
            let range = self.cohorts.range((interval, cohort, first)..=(interval, cohort, last));
            for ((_, _, start), count) in range.filter(|((_, _, start), _)| run_of(*start) == run) {
                writer.put(keys::cohort(movement, interval, cohort, *start), count_bytes(*count));
            }
        }
        for ((principle, run), probe) in changes.principle_days {
            writer.rewrite(&keys::principle_day(movement, principle, probe));
            let (first, last) = keys::date_run_bounds(probe);
            let range = self.principle_days.range((principle, first)..=(principle, last));
            for ((_, day), count) in range.filter(|((_, day), _)| run_of(*day) == run) {
                writer.put(keys::principle_day(movement, principle, *day), count_bytes(*count));
            }
        }
        for (principle, day) in changes.principle_members {
            // Entries are made in key order, as a participant's runs are, so
            // that `finish` need not sort them.
            let mut members: Vec<(&str, u64)> = match self.principle_members.get(&(principle, day)) {
                Some(members) => members.iter().map(|(id, count)| (self.participant_names.name(id), count)).collect(),
                None => Vec::new(),
            };
            // A member's suffix is the name's length (4 bytes, big-endian)
            // and then the name, so (length, bytes) is key order.
            members.sort_unstable_by_key(|(participant, _)| (participant.len(), participant.as_bytes()));
            let longest = members.last().map_or(0, |(participant, _)| participant.len());
            let (mut entries, mut suffix) = (RecordEntries::with_capacity(members.len(), 4 + longest, 8), Vec::new());
            for (participant, count) in members {
                suffix.clear();
                keys::push_principle_member_suffix(&mut suffix, participant);
                entries.push(&suffix, &count_bytes(count));
            }
            writer.record(keys::principle_member_prefix_from(movement, principle, day), entries);
        }
    }

    /// Adds one stored key of this movement; `None` if it cannot be read.
    fn load_entry(&mut self, mut reader: KeyReader<'_>, value: &[u8]) -> Option<()> {
        let count = || crate::projection::decode_u64(value);
        match reader.tag {
            keys::MOVEMENT => self.events_counted = count(),
            keys::EVENT => {
                // Stream sequences start at 1, and an event's record holds
                // nothing but its key (format 8).
                let seq = reader.sequence().filter(|seq| *seq > 0 && value.is_empty())?;
                let source = reader.text()?;
                let id = std::str::from_utf8(reader.remaining()).ok()?;
                let key = EventKey::new(source, id);
                let entry = self.events.entry(key.clone()).or_default();
                entry.arrived = true;
                entry.seq = seq;
                // The newest run's record is written again, whole, when it
                // grows: its events are kept (most are dropped again when
                // the next run's first key comes).
                let newest_run = self.recent_events.keys().next_back().map(|newest| keys::sequence_run(*newest));
                if newest_run.is_none_or(|newest| newest <= keys::sequence_run(seq)) {
                    if newest_run.is_some_and(|newest| newest < keys::sequence_run(seq)) {
                        self.recent_events.clear();
                    }
                    self.recent_events.insert(seq, key);
                }
            }
            keys::EVENT_STATUS => {
                let source = reader.text()?;
                let id = std::str::from_utf8(reader.remaining()).ok()?;
                let status = EventStatus::decode(value)?;
                let entry = self.events.entry(EventKey::new(source, id)).or_default();
                entry.arrived = status.arrived();
                entry.seq = status.seq;
                entry.retracted = status.retracted;
                entry.retraction_pending = status.retraction_pending;
            }
            keys::PERIOD => {
                let interval = reader.interval()?;
                let start = reader.date()?;
                self.periods.insert((interval, start), PeriodTotals::decode(value));
            }
            keys::PARTICIPANT => {
                let (participant, date, kind) = keys::split_participant_key(reader.remaining())?;
                let id = self.participant_names.id(participant);
                let record = self.participants.entry(id).or_default();
                let interval_of = |byte: u8| Interval::ALL.into_iter().find(|interval| interval.key_byte() == byte);
                match *kind {
                    [keys::PARTICIPATION_DAY] => record.days.set(date, count()),
                    [kind] => record.active[usize::from(interval_index(interval_of(kind)?))].set(date, count()),
                    [kind, tag] => {
                        let set = [PeopleSet::Volunteers, PeopleSet::ActionParticipants, PeopleSet::Organisers]
                            .into_iter()
                            .find(|set| set.key_set().tag() == tag)?;
                        record.memberships.set((date, interval_index(interval_of(kind)?), set), count());
                    }
                    _ => return None,
                }
            }
            keys::FIRST_DAY => {}
            tag @ (b'g' | b'r') => {
                let interval = reader.interval()?;
                let start = reader.date()?;
                let value_text = reader.text()?;
                let set = if tag == b'g' { ValueSet::Partners } else { ValueSet::Areas };
                self.values.entry((set, interval, start)).or_default().insert(value_text.into(), count());
            }
            keys::COHORT => {
                let interval = reader.interval()?;
                let cohort = reader.date()?;
                let start = reader.date()?;
                self.cohorts.insert((interval, cohort, start), count());
            }
            keys::PRINCIPLE_DAY => {
                let principle = reader.principle()?;
                let day = reader.date()?;
                self.principle_days.insert((principle, day), count());
            }
            keys::PRINCIPLE_MEMBER => {
                let principle = reader.principle()?;
                let day = reader.date()?;
                let participant = reader.text()?;
                let id = self.participant_names.id(participant);
                self.principle_members.entry((principle, day)).or_default().set(id, count());
            }
            keys::ERASED => {
                if !reader.rest.is_empty() {
                    self.erased.insert(reader.text()?.into());
                }
            }
            _ => return None,
        }
        Some(())
    }

    fn write_key_values(&self, movement: &str, state: &mut MemoryState) {
        let mut put = |key: Vec<u8>, value: &[u8]| {
            let Ok(()) = state.put(&key, value);
        };
        put(keys::movement(movement), &count_bytes(self.events_counted));
        for (key, entry) in &self.events {
            let (source, id) = key.parts();
            put(keys::event_status(movement, source, id), &entry.status().encode());
        }
        for ((interval, start), totals) in &self.periods {
            if *totals != PeriodTotals::default() {
                put(keys::period(movement, *interval, *start), &totals.encode());
            }
        }
        for (id, record) in &self.participants {
            let participant = self.participant_names.name(*id);
            let mut writer = RecordWriter::default();
            let mut runs = Vec::new();
            for date in record.dates() {
                mark_run(&mut runs, date);
            }
            for date_in_run in runs {
                write_participant_run(movement, participant, record, date_in_run, &mut writer);
            }
            for (name, entries) in writer.records {
                for (suffix, value) in entries.iter() {
                    put([name.as_slice(), suffix].concat(), value);
                }
            }
            if let Some(first) = record.days.first() {
                let mut bytes = Vec::with_capacity(4);
                keys::push_date(&mut bytes, first);
                put(keys::first_day(movement, participant), &bytes);
            }
        }
        for ((set, interval, start), counts) in &self.values {
            let set = match set {
                ValueSet::Partners => keys::Set::Partners,
                ValueSet::Areas => keys::Set::Areas,
            };
            for (value, count) in counts {
                put(keys::member(set, movement, *interval, *start, value), &count_bytes(*count));
            }
        }
        for ((interval, cohort, start), count) in &self.cohorts {
            put(keys::cohort(movement, *interval, *cohort, *start), &count_bytes(*count));
        }
        for ((principle, day), count) in &self.principle_days {
            put(keys::principle_day(movement, *principle, *day), &count_bytes(*count));
        }
        for ((principle, day), members) in &self.principle_members {
            for (id, count) in members.iter() {
                let participant = self.participant_names.name(id);
                put(keys::principle_member(movement, *principle, *day, participant), &count_bytes(count));
            }
        }
        if !self.erased.is_empty() {
            put(keys::erasures_exist(movement), &[]);
        }
        for participant in &self.erased {
            put(keys::erased(movement, participant), &[]);
        }
    }
}

/// Writes the record of a participant's keys in the run of 256 days that
/// holds `date`, whole: empty if they have none there.
///
/// Its entries are put in key order as they are made (the record's name
/// once, each key's few bytes after it), not as whole keys sorted later:
/// building whole keys and sorting them took about half of a checkpoint's
/// gathering (docs/benchmarks.md). Each list is sorted by date, so the
/// run's entries of each are found by binary search, not by a walk
/// through the participant's whole history.
fn write_participant_run(
    movement: &str,
    participant: &str,
    record: &Participant,
    date: NaiveDate,
    writer: &mut RecordWriter,
) {
    let run = run_of(date);
    let mut suffixes = Vec::new();
    for (day, count) in entries_in_run(&record.days.entries, run, |day| day) {
        suffixes.push((keys::participant_suffix(*day, keys::PARTICIPATION_DAY, None), *count));
    }
    for interval in Interval::ALL {
        let periods = &record.active[usize::from(interval_index(interval))].entries;
        for (start, count) in entries_in_run(periods, run, |start| start) {
            suffixes.push((keys::participant_suffix(*start, interval.key_byte(), None), *count));
        }
    }
    for ((start, interval_at, set), count) in entries_in_run(&record.memberships.entries, run, |(start, _, _)| start) {
        let interval = Interval::ALL[usize::from(*interval_at)];
        suffixes.push((keys::participant_suffix(*start, interval.key_byte(), Some(set.key_set())), *count));
    }
    // Each (date, kind, set) is one key: no two suffixes are equal, so an
    // unstable sort is enough.
    suffixes.sort_unstable_by_key(|(suffix, _)| suffix.sort_key());
    let mut entries = RecordEntries::with_capacity(suffixes.len(), 3, 8);
    for (suffix, count) in suffixes {
        entries.push(suffix.as_bytes(), &count_bytes(count));
    }
    writer.record(keys::participant_run_name(movement, participant, date), entries);
}

/// The entries of a list sorted by date (first) whose dates fall in `run`.
fn entries_in_run<K: Copy>(entries: &[(K, u64)], run: u32, date_of: impl Fn(K) -> NaiveDate) -> &[(K, u64)] {
    let start = entries.partition_point(|(key, _)| run_of(date_of(*key)) < run);
    let end = start + entries[start..].partition_point(|(key, _)| run_of(date_of(*key)) == run);
    &entries[start..end]
}

fn count_bytes(count: u64) -> [u8; 8] {
    count.to_le_bytes()
}

impl crate::query::ProjectionRead for Projection {
    type Error = std::convert::Infallible;

    fn watermark(&self) -> Result<u64, Self::Error> {
        Ok(self.watermark)
    }

    fn movement_events(&self, movement: &str) -> Result<Option<u64>, Self::Error> {
        Ok(self.movements.get(movement).map(|movement| movement.events_counted))
    }

    fn movement_list(&self) -> Result<Vec<MovementSummary>, Self::Error> {
        let mut list: Vec<MovementSummary> = self
            .movements
            .iter()
            .map(|(name, movement)| MovementSummary { movement: name.to_string(), events: movement.events_counted })
            .collect();
        list.sort_unstable_by(|one, other| one.movement.cmp(&other.movement));
        Ok(list)
    }

    fn period_totals(
        &self,
        movement: &str,
        interval: Interval,
        starts: &[NaiveDate],
    ) -> Result<Vec<PeriodTotals>, Self::Error> {
        let mut totals = vec![PeriodTotals::default(); starts.len()];
        let (Some(movement), Some(first), Some(last)) = (self.movements.get(movement), starts.first(), starts.last())
        else {
            return Ok(totals);
        };
        if !starts.is_sorted_by(|earlier, later| earlier < later) {
            // Out of order or repeated: not what the trait promises any
            // caller (the walk would skip some); answered all the same.
            for (place, start) in starts.iter().enumerate() {
                totals[place] = movement.periods.get(&(interval, *start)).copied().unwrap_or_default();
            }
            return Ok(totals);
        }
        // One range walk beside `starts` (consecutive and in order), not a
        // search for each: a read costs in proportion to the periods asked
        // for, not to the log of every period the movement has.
        let mut place = 0;
        for ((_, start), period) in movement.periods.range((interval, *first)..=(interval, *last)) {
            while starts.get(place).is_some_and(|wanted| wanted < start) {
                place += 1;
            }
            if starts.get(place) == Some(start) {
                totals[place] = *period;
            }
        }
        Ok(totals)
    }

    fn cohort_activity(
        &self,
        movement: &str,
        interval: Interval,
        cohort: NaiveDate,
        end: NaiveDate,
    ) -> Result<BTreeMap<NaiveDate, i64>, Self::Error> {
        let Some(movement) = self.movements.get(movement) else { return Ok(BTreeMap::new()) };
        if end <= cohort {
            return Ok(BTreeMap::new());
        }
        let range = movement.cohorts.range((interval, cohort, cohort)..(interval, cohort, end));
        Ok(range.map(|((_, _, start), count)| (*start, *count as i64)).collect())
    }

    fn principle_figures(
        &self,
        movement: &str,
        principle: Principle,
        from: NaiveDate,
        end: NaiveDate,
    ) -> Result<(u64, u64), Self::Error> {
        let Some(movement) = self.movements.get(movement) else { return Ok((0, 0)) };
        if end <= from {
            return Ok((0, 0));
        }
        let activities =
            movement.principle_days.range((principle, from)..(principle, end)).map(|(_, count)| count).sum();
        let mut participants: HashSet<ParticipantId> = HashSet::new();
        for (_, members) in movement.principle_members.range((principle, from)..(principle, end)) {
            participants.extend(members.iter().map(|(id, _)| id));
        }
        Ok((activities, participants.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::{
        ArchiveError, ArchivedEvent, EventArchive, EventStatus, Interval, NaiveDate, PeriodTotals, Projection,
        RecordEntries, keys,
    };
    use crate::Event;
    use crate::memory::MemoryState;
    use crate::projection::{Outcome, ProjectionSettings, State};

    fn hours_logged(id: &str, movement: &str) -> Event {
        let json = format!(
            r#"{{"specversion":"1.0","id":"{id}","source":"urn:test","type":"volunteer.hours_logged",
            "subject":"{movement}","time":"2026-03-02T10:00:00Z","data":{{"participant":"ann","hours":1.5}}}}"#
        );
        Event::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn an_archived_event_reads_back_only_if_it_is_the_event_that_arrived_at_its_sequence() {
        let event = hours_logged("1", "leeds");
        let target = ArchivedEvent { seq: 7, movement: "leeds", source: "urn:test", id: "1" };
        assert_eq!(target.read::<()>(Some(&event.to_json())).unwrap(), event);
        assert!(matches!(target.read::<()>(None), Err(ArchiveError::Missing { seq: 7 })));
        assert!(matches!(target.read::<()>(Some(b"{")), Err(ArchiveError::Unreadable { seq: 7, .. })));
        for other in [hours_logged("2", "leeds"), hours_logged("1", "york")] {
            let read = target.read::<()>(Some(&other.to_json()));
            assert!(matches!(read, Err(ArchiveError::Mismatched { seq: 7, .. })), "{other:?}");
        }
    }

    #[test]
    fn a_retraction_whose_target_cannot_be_read_back_leaves_the_projection_as_it_was() {
        struct Away;
        impl EventArchive for Away {
            type Error = &'static str;
            fn stored_event(&self, _: &ArchivedEvent<'_>) -> Result<Event, &'static str> {
                Err("away")
            }
        }
        let settings = ProjectionSettings::default();
        let target = hours_logged("1", "leeds");
        let retraction = Event::from_json(
            br#"{"specversion":"1.0","id":"r1","source":"urn:test","type":"event.retracted",
            "subject":"leeds","time":"2026-03-03T10:00:00Z","data":{"event_id":"1"}}"#,
        )
        .unwrap();
        let mut projection = Projection::default();
        projection.apply(&settings, &target, 1, &Away).unwrap();
        let before = projection.to_key_values();
        assert_eq!(projection.apply(&settings, &retraction, 2, &Away), Err("away"));
        assert_eq!(projection.to_key_values(), before);
        assert_eq!(projection.watermark(), 1);

        let mut archive = MemoryState::default();
        let Ok(()) = archive.put(&keys::archived_event(1), &target.to_json());
        assert_eq!(projection.apply(&settings, &retraction, 2, &archive).unwrap(), Outcome::Retracted);
        assert_ne!(projection.to_key_values(), before);
    }

    #[test]
    fn the_target_a_retraction_reads_back_is_named_before_it_is_folded_and_only_while_it_counts() {
        let settings = ProjectionSettings::default();
        let retraction = |id: &str, target: &str| {
            let json = format!(
                r#"{{"specversion":"1.0","id":"{id}","source":"urn:test","type":"event.retracted",
                "subject":"leeds","time":"2026-03-03T10:00:00Z","data":{{"event_id":"{target}"}}}}"#
            );
            Event::from_json(json.as_bytes()).unwrap()
        };
        let mut projection = Projection::default();
        let (target, other) = (hours_logged("1", "leeds"), hours_logged("3", "leeds"));
        projection.apply(&settings, &target, 5, &MemoryState::default()).unwrap();
        projection.apply(&settings, &other, 7, &MemoryState::default()).unwrap();
        assert_eq!(projection.retraction_target(&target), None, "not a retraction");
        assert_eq!(projection.retraction_target(&retraction("r0", "9")), None, "not arrived");
        assert_eq!(projection.retraction_target(&retraction("r0", "r0")), None, "itself, not arrived yet");
        let expected = ArchivedEvent { seq: 5, movement: "leeds", source: "urn:test", id: "1" };
        assert_eq!(projection.retraction_target(&retraction("r1", "1")), Some(expected));

        let mut archive = MemoryState::default();
        let Ok(()) = archive.put(&keys::archived_event(5), &target.to_json());
        projection.apply(&settings, &retraction("r1", "1"), 8, &archive).unwrap();
        assert_eq!(projection.retraction_target(&retraction("r2", "1")), None, "the target no longer counts");
        // A repeat of r1 is a duplicate, whatever it names: nothing to read.
        assert_eq!(projection.retraction_target(&retraction("r1", "3")), None, "the retraction was folded");
        let counting = ArchivedEvent { seq: 7, movement: "leeds", source: "urn:test", id: "3" };
        assert_eq!(projection.retraction_target(&retraction("r2", "3")), Some(counting));
    }

    #[test]
    fn period_totals_are_read_alike_for_starts_in_order_out_of_order_and_repeated() {
        use crate::query::ProjectionRead;
        let mut projection = Projection::default();
        projection
            .apply(&ProjectionSettings::default(), &hours_logged("1", "leeds"), 1, &MemoryState::default())
            .unwrap();
        let day = |day: u32| NaiveDate::from_ymd_opt(2026, 3, day).unwrap();
        // The event's day, 2 March, with days stored before and after none.
        let hours_on = |starts: &[NaiveDate]| -> Vec<i64> {
            let totals = projection.period_totals("leeds", Interval::Day, starts).unwrap();
            totals.iter().map(|totals| totals.volunteer_millihours).collect()
        };
        assert_eq!(hours_on(&[day(1), day(2), day(3)]), [0, 1500, 0]);
        assert_eq!(hours_on(&[day(3), day(2), day(1)]), [0, 1500, 0]);
        assert_eq!(hours_on(&[day(2), day(2)]), [1500, 1500]);
        assert_eq!(hours_on(&[day(2)]), [1500]);
        assert_eq!(hours_on(&[]), Vec::<i64>::new());
        assert_eq!(projection.period_totals("york", Interval::Day, &[day(2)]).unwrap(), [PeriodTotals::default()]);
    }

    #[test]
    fn a_stored_key_with_a_date_no_date_was_written_as_is_unreadable() {
        let start = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let mut key = keys::period("leeds", Interval::Week, start);
        let mut projection = Projection::default();
        projection.load_entry(&key, &PeriodTotals::default().encode()).unwrap();
        let date_at = key.len() - 4;
        key[date_at..].copy_from_slice(&[0xff; 4]);
        assert!(projection.load_entry(&key, &PeriodTotals::default().encode()).is_err());
    }

    #[test]
    fn stored_events_and_statuses_that_cannot_be_read_are_unreadable() {
        let event = hours_logged("1", "leeds");
        let key = keys::event("leeds", 7, &event.source, &event.id);
        let mut projection = Projection::default();
        projection.load_entry(&key, &[]).unwrap();
        // Up to the movement's NUL and seven bytes of the sequence.
        let cut_in_sequence = &key[..1 + "leeds".len() + 1 + 7];
        assert!(projection.load_entry(cut_in_sequence, &[]).is_err(), "a sequence cut short");
        let at_zero = keys::event("leeds", 0, &event.source, "2");
        assert!(projection.load_entry(&at_zero, &[]).is_err(), "sequences start at 1");
        let with_json = keys::event("leeds", 6, &event.source, "3");
        assert!(projection.load_entry(&with_json, &event.to_json()).is_err(), "a store of format 7 or before");
        // An event filed after the watermark is found once the whole store is loaded.
        projection.load_entry(keys::WATERMARK, &7u64.to_le_bytes()).unwrap();
        projection.check_loaded().unwrap();
        projection.load_entry(&keys::event("leeds", 8, &event.source, "2"), &[]).unwrap();
        assert!(projection.check_loaded().is_err(), "an event after the watermark");
        let status = keys::event_status("leeds", &event.source, &event.id);
        let retracted = EventStatus { seq: 7, retracted: true, retraction_pending: false };
        projection.load_entry(&status, &retracted.encode()).unwrap();
        assert!(projection.load_entry(&status, &retracted.encode()[..9]).is_err(), "cut short");
        let mut flag_of_two = retracted.encode();
        flag_of_two[0] = 2;
        assert!(projection.load_entry(&status, &flag_of_two).is_err(), "a flag is 0 or 1");
    }

    #[test]
    fn consecutive_events_share_a_record_per_256_sequences_and_a_checkpoint_keeps_only_the_newest_runs_events() {
        let mut projection = Projection::default();
        let settings = ProjectionSettings::default();
        for seq in 250..=600 {
            projection
                .apply(&settings, &hours_logged(&seq.to_string(), "leeds"), seq, &MemoryState::default())
                .unwrap();
        }
        let checkpoint = projection.checkpoint();
        let event_records: Vec<_> = checkpoint.records.iter().filter(|(name, _)| name[0] == b'e').collect();
        // Sequences 250-255, 256-511 and 512-600.
        assert_eq!(event_records.len(), 3);
        assert_eq!(event_records.iter().map(|(_, entries)| entries.iter().count()).collect::<Vec<_>>(), [6, 256, 89]);
        assert_eq!(projection.movements["leeds"].recent_events.len(), 89, "only sequences 512-600 may grow");
        // The next event of that run rewrites it whole; the runs before are not written again.
        projection.apply(&settings, &hours_logged("601", "leeds"), 601, &MemoryState::default()).unwrap();
        let checkpoint = projection.checkpoint();
        let event_records: Vec<_> = checkpoint.records.iter().filter(|(name, _)| name[0] == b'e').collect();
        assert_eq!(event_records.len(), 1);
        assert_eq!(event_records[0].1.iter().count(), 90);
    }

    #[test]
    fn a_retraction_that_names_itself_leaves_no_status_in_the_store() {
        let json = r#"{"specversion":"1.0","id":"r1","source":"urn:test","type":"event.retracted",
            "subject":"leeds","time":"2026-03-02T10:00:00Z","data":{"event_id":"r1"}}"#;
        let retraction = Event::from_json(json.as_bytes()).unwrap();
        let mut projection = Projection::default();
        let settings = ProjectionSettings::default();
        let mut state = MemoryState::default();
        let Ok(outcome) = crate::projection::apply(&mut state, &settings, &retraction, 1);
        assert_eq!(projection.apply(&settings, &retraction, 1, &MemoryState::default()).unwrap(), outcome);
        let status = keys::event_status("leeds", "urn:test", "r1");
        assert!(!keys::is_stored(&status, &state.entries[&status]), "arrived, with neither flag");
        let checkpoint = projection.checkpoint();
        assert_eq!(checkpoint.value_of(&status), Some(None), "written as removed");
    }

    #[test]
    fn stored_entries_with_a_length_beyond_their_bytes_are_unreadable() {
        let entries = RecordEntries::from_pairs([(&b"s1"[..], &b"value"[..]), (b"s2", b"other")]);
        let bytes = entries.as_bytes();
        let read: Vec<_> = RecordEntries::decode(b"x", bytes).unwrap().collect();
        assert_eq!(read, entries.iter().collect::<Vec<_>>());
        // Cut after its first entry, a record is whole; cut anywhere else,
        // some length runs past its end.
        let first_entry_bytes = 4 + 2 + 4 + 5;
        assert_eq!(RecordEntries::decode(b"x", &bytes[..first_entry_bytes]).unwrap().count(), 1);
        for cut in (1..bytes.len()).filter(|cut| *cut != first_entry_bytes) {
            assert!(RecordEntries::decode(b"x", &bytes[..cut]).is_err(), "cut to {cut} bytes");
        }
        let mut huge = bytes.to_vec();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(RecordEntries::decode(b"x", &huge).is_err());
    }

    #[test]
    fn a_checkpoint_gathered_movement_by_movement_holds_every_movement() {
        let mut projection = Projection::default();
        let settings = ProjectionSettings::default();
        for (seq, movement) in ["leeds", "york", "hull"].into_iter().enumerate() {
            projection.apply(&settings, &hours_logged("1", movement), seq as u64 + 1, &MemoryState::default()).unwrap();
        }
        let mut gathering = projection.begin_checkpoint();
        let mut steps = 0;
        while projection.gather_next(&mut gathering) {
            steps += 1;
        }
        let checkpoint = gathering.finish();
        assert_eq!(steps, 3);
        assert_eq!(checkpoint.watermark, 3);
        for movement in ["leeds", "york", "hull"] {
            let key = crate::projection::keys::movement(movement);
            assert!(checkpoint.value_of(&key).is_some(), "{movement} is in the checkpoint");
        }
        assert!(projection.checkpoint().records.is_empty(), "nothing changed since");
    }

    #[test]
    #[should_panic(expected = "nothing is folded while a checkpoint is gathered")]
    fn folding_while_a_checkpoint_is_gathered_is_refused() {
        let mut projection = Projection::default();
        let settings = ProjectionSettings::default();
        projection.apply(&settings, &hours_logged("1", "leeds"), 1, &MemoryState::default()).unwrap();
        let mut gathering = projection.begin_checkpoint();
        projection.apply(&settings, &hours_logged("2", "leeds"), 2, &MemoryState::default()).unwrap();
        projection.gather_next(&mut gathering);
    }

    #[test]
    fn packed_entries_read_back_in_the_order_written() {
        let entries = RecordEntries::from_pairs([(&b"b"[..], &b"2"[..]), (&b""[..], &b""[..]), (&b"a"[..], &b"1"[..])]);
        let read: Vec<(&[u8], &[u8])> = entries.iter().collect();
        assert_eq!(read, [(&b"b"[..], &b"2"[..]), (&b""[..], &b""[..]), (&b"a"[..], &b"1"[..])]);
    }

    #[test]
    fn sorted_entries_keep_the_later_of_two_values_of_one_suffix() {
        let entries =
            RecordEntries::from_pairs([(&b"b"[..], &b"old"[..]), (&b"a"[..], &b"1"[..]), (&b"b"[..], &b"new"[..])]);
        let sorted = entries.sorted();
        let read: Vec<(&[u8], &[u8])> = sorted.iter().collect();
        assert_eq!(read, [(&b"a"[..], &b"1"[..]), (&b"b"[..], &b"new"[..])]);
    }
}
