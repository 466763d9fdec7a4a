//! The participation ledger: the projection of the event stream that the
//! projector keeps, and the one fold that builds it.
//!
//! A movement's ledger is a set of **facts**, one per effective event: its
//! kind, local day and stream sequence, its measures, its labels (area,
//! partners, kind) and principles as small numbers, and each person in it
//! with their part. Every figure is computed from the facts when it is read
//! (`read`), so nothing here depends on the order events arrive in (but
//! for erasure, which leaves a pseudonym out of the events that arrive
//! after it: docs/metrics.md):
//! - each (`source`, `id`) is folded once, however far apart its copies arrive;
//! - a retraction removes its target's fact, whichever of the two came first;
//! - the only index kept beside the facts is each person's first day of
//!   participation (with how many facts fall on it), which `new`
//!   participants and cohorts need and which a read could not find without
//!   looking at the whole history.
//!
//! The fold is [`Ledger::apply`]. It turns an event into an [`Entry`] (its
//! people and labels numbered within the movement) and folds the entry.
//! Every entry folded is also kept in a journal until the next
//! [`Ledger::checkpoint`], which hands the store the entries and the names
//! numbered since the last one. A store gives them back in order at start
//! ([`Ledger::replay`]), and replaying an entry is the same fold, so a
//! loaded ledger is the ledger that was checkpointed.

mod day;
mod index;
mod read;
mod select;

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::NaiveDate;
use chrono_tz::Tz;

use crate::event::{Event, EventData, Principle, Role};
use crate::period::local_date;
use index::{EventIndex, Standing};

pub use read::{CohortMode, EvidenceCounts, PeriodTotals};
pub use select::{Selection, SplitCell};

/// The ledger's hash maps and sets: foldhash, seeded at random per map, so
/// keys partners choose (ids, sources) cannot be made to collide.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// How many periods before a trend's first one a trend needs: retention
/// looks at the period before, and momentum at the window four before.
pub const MOMENTUM_WINDOW_PERIODS: i32 = 4;

/// The layout of the store. It changes whenever the store's records do,
/// and a store of another format must be rebuilt from sequence 1 (the
/// projector refuses to open it). Format 9 is the participation ledger: a
/// log of entries with people and labels as numbers, and their names.
pub const FORMAT: &str = "9";

/// Settings that change what the fold computes. Changing any of them
/// needs a rebuild of the ledger from sequence 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoldSettings {
    /// The zone whose calendar decides which day, week and month an event is in.
    pub time_zone: Tz,
}

impl Default for FoldSettings {
    fn default() -> FoldSettings {
        FoldSettings { time_zone: chrono_tz::Europe::London }
    }
}

/// What became of an event a partner posted, as the projection knows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum EventFate {
    /// It is stored at `seq` and stands (a retraction or an erasure is
    /// accepted too, as what it is).
    Accepted {
        /// Its stream sequence.
        seq: u64,
    },
    /// It is stored at `seq` and the event `retracted_by` of its source
    /// retracted it (of several retractions, the one with the least id).
    Retracted {
        /// Its stream sequence.
        seq: u64,
        /// The id of the retraction.
        retracted_by: String,
    },
}

/// What folding one event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The event was new and now counts.
    Applied,
    /// This (`source`, `id`) had been folded before; nothing changed.
    Duplicate,
    /// The event is new but a retraction of it came first, so it never counts.
    ArrivedRetracted,
    /// A retraction that removed an event's fact.
    Retracted,
    /// A retraction of an event not seen yet in its movement: it waits for
    /// that event (an event of another movement is never its target).
    RetractionPending,
    /// A retraction with nothing to do: its target is a retraction or an
    /// erasure, or is already retracted.
    RetractionIgnored,
    /// Participants' pseudonyms were made unlinkable.
    Erased,
}

/// Volunteer hours are counted in whole milli-hours (3.6 seconds), so that
/// sums are exact; the schema bounds hours to (0, 24], so this cannot overflow.
pub fn millihours(hours: f64) -> i64 {
    (hours * 1000.0).round() as i64
}

/// What kind of activity a fact records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FactKind {
    /// `participant.joined`: a sign-up, not participation.
    Joined,
    /// `meeting.held`: its attendees and organisers took part.
    MeetingHeld,
    /// `volunteer.hours_logged`: its volunteer took part; the measure is the hours, in milli-hours.
    VolunteerHoursLogged,
    /// `collective_action.taken`: its participants and organisers took part; the measure is its
    /// reach.
    CollectiveActionTaken,
}

impl FactKind {
    /// Whether the people of such a fact took part (a sign-up is not
    /// participation).
    pub fn is_participation(self) -> bool {
        self != FactKind::Joined
    }
}

/// The part a person had in a fact. A person both attending and
/// organising a meeting (or taking part in and organising an action) has
/// the organiser's part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// The participant of a sign-up, in the role they signed up in.
    Joined(Role),
    /// An attendee of a meeting.
    Attendee,
    /// An organiser of a meeting or an action, in the role they organised in.
    Organiser(Role),
    /// The participant of an hour log.
    Volunteer,
    /// A participant of a collective action.
    ActionParticipant,
}

/// One person's part in a fact, the person numbered within the movement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Taking {
    /// The person's number within the movement.
    pub person: u32,
    /// The part they had in the fact.
    pub part: Part,
}

/// What one effective event records, with people and labels numbered
/// within its movement.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fact {
    /// What kind of activity it records.
    pub kind: FactKind,
    /// The local date of the event's `time`.
    pub day: NaiveDate,
    /// Milli-hours of an hour log, reach of an action, 0 otherwise.
    pub measure: i64,
    /// A meeting or action with at least one organiser in the role `citizen`.
    pub citizen_led: bool,
    /// Bit `i` set for [`Principle::ALL`]`[i]`.
    pub principles: u8,
    /// The number of the event's `area`, if it names one.
    pub area: Option<u32>,
    /// The meeting's or action's `kind`, the hours' `activity` or the
    /// sign-up's `channel`.
    pub label: Option<u32>,
    /// Distinct partners, in ascending number.
    pub partners: Box<[u32]>,
    /// Distinct people, in ascending number.
    pub people: Box<[Taking]>,
}

/// An event as the fold takes it: what identifies it, and what it brings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The stream sequence it arrived at.
    pub seq: u64,
    /// The number of the event's movement (its `subject`).
    pub movement: u32,
    /// The event's `source`, numbered within the movement.
    pub source: u32,
    /// The event's `id`.
    pub id: Box<str>,
    /// What the event brings to the fold.
    pub body: Body,
}

/// What an [`Entry`] brings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// An activity or sign-up that counts.
    Fact(Fact),
    /// An activity or sign-up whose retraction arrived first: it never
    /// counts, so its people and labels were not numbered.
    Withheld,
    /// `event.retracted`, naming an event of the same source and movement.
    Retraction {
        /// The `id` of the event it retracts.
        target: Box<str>,
    },
    /// `participant.erased`: the people of the movement whose pseudonyms it
    /// made unlinkable (pseudonyms the movement had not seen have no number).
    Erasure {
        /// Their person numbers, in ascending order.
        people: Box<[u32]>,
    },
}

/// The kinds of names the ledger numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    /// A movement id; numbered across the ledger (the name's movement is
    /// its own number).
    Movement,
    /// A partner system's `source`.
    Source,
    /// An `area` value.
    Area,
    /// An org id named in `partners`.
    Partner,
    /// A meeting's or action's `kind`, an hour log's `activity` or a sign-up's `channel`.
    Label,
    /// A participant's pseudonym. Removed again when they are erased.
    Person,
}

impl Dimension {
    /// Every dimension.
    pub const ALL: [Dimension; 6] = [
        Dimension::Movement,
        Dimension::Source,
        Dimension::Area,
        Dimension::Partner,
        Dimension::Label,
        Dimension::Person,
    ];
}

/// A number given to a text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Name {
    /// The number of the movement the name belongs to; for a movement's own name, its number.
    pub movement: u32,
    /// What kind of text is numbered.
    pub dimension: Dimension,
    /// The number given: from 0, in the order first met, within the movement and dimension
    /// (movement ids are numbered across the ledger).
    pub number: u32,
    /// The text numbered, such as a movement id, an area or a pseudonym.
    pub text: Box<str>,
}

/// A pseudonym an erasure made unlinkable: its name, if the movement had
/// numbered it, is gone, and later events leave it out.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Erased {
    /// The number of the movement the pseudonym was erased in.
    pub movement: u32,
    /// The number it had, whose name a store removes.
    pub person: Option<u32>,
    /// The erased pseudonym, which the movement's later events leave out.
    pub pseudonym: Box<str>,
}

/// What changed since the last checkpoint, for the store to append in one
/// atomic batch: names numbered, pseudonyms erased, and the entries folded,
/// in stream order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// The stream sequence of the last event folded in when the checkpoint was taken; 0 before any.
    pub watermark: u64,
    /// Names numbered since the last checkpoint, in the order they were given.
    pub names: Vec<Name>,
    /// Pseudonyms erased since the last checkpoint.
    pub erased: Vec<Erased>,
    /// Entries folded since the last checkpoint, in stream order.
    pub entries: Vec<Entry>,
}

impl Checkpoint {
    /// Whether it changes nothing but (perhaps) the watermark.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.erased.is_empty() && self.entries.is_empty()
    }
}

/// A store's records that do not make a ledger: a name or entry that
/// refers to something never named, or breaks the fold's rules.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the stored ledger is damaged: {0}")]
pub struct Damaged(pub String);

/// Texts numbered in the order they were first met.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Labels {
    numbers: HashMap<Box<str>, u32>,
    texts: Vec<Box<str>>,
}

impl Labels {
    fn find(&self, text: &str) -> Option<u32> {
        self.numbers.get(text).copied()
    }

    /// The text's number, and whether it was given now.
    fn number(&mut self, text: &str) -> (u32, bool) {
        if let Some(number) = self.find(text) {
            return (number, false);
        }
        let number = u32::try_from(self.texts.len()).expect("fewer than 2^32 labels in a movement");
        self.texts.push(text.into());
        self.numbers.insert(text.into(), number);
        (number, true)
    }

    fn restore(&mut self, number: u32, text: &str) -> Result<(), Damaged> {
        if number as usize != self.texts.len() || self.numbers.contains_key(text) {
            return Err(Damaged(format!("label {number} ({text:?}) out of order or named twice")));
        }
        self.texts.push(text.into());
        self.numbers.insert(text.into(), number);
        Ok(())
    }

    fn len(&self) -> u32 {
        self.texts.len() as u32
    }
}

/// A person's first day of participation, and how many of their facts
/// fall on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct First {
    day: Option<NaiveDate>,
    facts: u32,
}

/// The ledger of one movement.
#[derive(Debug, Default)]
pub struct MovementLedger {
    /// Every distinct (`source`, `id`) met: by source number, then id.
    events: Vec<EventIndex>,
    /// Distinct accepted events, retractions and erasures included: the
    /// count in listings. (Retractions waiting for their event are not.)
    accepted: u64,
    /// The stream sequence of the movement's first entry: before it, the
    /// movement had no events.
    first_seq: u64,
    /// The stream sequence of its last entry: its figures change only when it does.
    version: u64,
    sources: Labels,
    areas: Labels,
    partners: Labels,
    labels: Labels,
    /// Pseudonym to person number; an erased pseudonym is removed.
    people: HashMap<Box<str>, u32>,
    /// Numbers given so far: the next person's number.
    person_count: u32,
    /// By person number.
    firsts: Vec<First>,
    erased: HashSet<Box<str>>,
    /// The facts, by local day.
    facts: BTreeMap<NaiveDate, day::Day>,
    /// Answers computed since the facts last changed.
    cache: Mutex<read::Cache>,
}

impl PartialEq for MovementLedger {
    /// Equal facts, statuses, names and indexes; caches are not compared.
    fn eq(&self, other: &MovementLedger) -> bool {
        self.events == other.events
            && self.accepted == other.accepted
            && self.first_seq == other.first_seq
            && self.version == other.version
            && self.sources == other.sources
            && self.areas == other.areas
            && self.partners == other.partners
            && self.labels == other.labels
            && self.people == other.people
            && self.person_count == other.person_count
            && self.firsts == other.firsts
            && self.erased == other.erased
            && self.facts == other.facts
    }
}

/// Every movement's ledger, and the last stream sequence folded in.
#[derive(Debug, Default)]
pub struct Ledger {
    watermark: u64,
    /// Movement ids to their numbers.
    movement_numbers: HashMap<Box<str>, u32>,
    /// By movement number.
    movements: Vec<MovementLedger>,
    /// What changed since the last checkpoint.
    journal: Checkpoint,
}

impl PartialEq for Ledger {
    /// Equal movements and watermarks; what waits for a checkpoint is not
    /// compared.
    fn eq(&self, other: &Ledger) -> bool {
        self.watermark == other.watermark
            && self.movement_numbers == other.movement_numbers
            && self.movements == other.movements
    }
}

impl Ledger {
    /// The last stream sequence folded in.
    pub fn watermark(&self) -> u64 {
        self.watermark
    }

    /// The ledger of the movement `movement`, if it has any event.
    pub fn movement(&self, movement: &str) -> Option<&MovementLedger> {
        self.movement_numbers.get(movement).map(|number| &self.movements[*number as usize])
    }

    /// Movement ids with their ledgers, in id order.
    pub fn movements(&self) -> impl Iterator<Item = (&str, &MovementLedger)> {
        let mut names: Vec<(&str, u32)> =
            self.movement_numbers.iter().map(|(name, number)| (&**name, *number)).collect();
        names.sort_unstable();
        names.into_iter().map(|(name, number)| (name, &self.movements[number as usize]))
    }

    /// Folds one event, found at stream sequence `seq`. Sequences start at
    /// 1 and only increase, as a stream's do.
    pub fn apply(&mut self, settings: &FoldSettings, event: &Event, seq: u64) -> Outcome {
        assert!(seq > self.watermark, "sequences only increase: {seq} after {}", self.watermark);
        self.watermark = seq;
        let movement = self.movement_number(&event.subject);
        let ledger = &mut self.movements[movement as usize];
        let before =
            ledger.sources.find(&event.source).and_then(|source| ledger.events[source as usize].get(event.id.as_str()));
        if matches!(before, Some(Standing::Counted { .. } | Standing::Uncounted { .. } | Standing::Retracted { .. })) {
            return Outcome::Duplicate;
        }
        let (source, named) = ledger.sources.number(&event.source);
        if named {
            ledger.events.push(EventIndex::default());
            self.journal.names.push(Name {
                movement,
                dimension: Dimension::Source,
                number: source,
                text: event.source.as_str().into(),
            });
        }
        let body = match &event.data {
            EventData::EventRetracted(retraction) => Body::Retraction { target: retraction.event_id.as_str().into() },
            EventData::ParticipantErased(erasure) => {
                let mut people = Vec::new();
                for pseudonym in &erasure.pseudonyms {
                    let person = ledger.people.remove(pseudonym.as_str());
                    people.extend(person);
                    if ledger.erased.insert(pseudonym.as_str().into()) {
                        self.journal.erased.push(Erased { movement, person, pseudonym: pseudonym.as_str().into() });
                    }
                }
                people.sort_unstable();
                Body::Erasure { people: people.into() }
            }
            _ if matches!(before, Some(Standing::RetractionPending { .. })) => Body::Withheld,
            data => Body::Fact(ledger.fact(movement, settings, event, data, &mut self.journal.names)),
        };
        let entry = Entry { seq, movement, source, id: event.id.as_str().into(), body };
        let outcome = ledger.fold_after(&entry, before).expect("an entry made by the fold folds");
        self.journal.entries.push(entry);
        outcome
    }

    /// The number of movement `movement`, given now if it has none.
    fn movement_number(&mut self, movement: &str) -> u32 {
        if let Some(number) = self.movement_numbers.get(movement) {
            return *number;
        }
        let number = u32::try_from(self.movements.len()).expect("fewer than 2^32 movements");
        self.movement_numbers.insert(movement.into(), number);
        self.movements.push(MovementLedger::default());
        self.journal.names.push(Name {
            movement: number,
            dimension: Dimension::Movement,
            number,
            text: movement.into(),
        });
        number
    }

    /// Takes what changed since the last checkpoint.
    pub fn checkpoint(&mut self) -> Checkpoint {
        let mut checkpoint = std::mem::take(&mut self.journal);
        checkpoint.watermark = self.watermark;
        checkpoint
    }

    /// Restores a name a store kept. Names come before the entries that
    /// use them, and each dimension's numbers in order, but for people,
    /// whose erased numbers have no name.
    pub fn restore_name(&mut self, name: &Name) -> Result<(), Damaged> {
        if name.dimension == Dimension::Movement {
            if name.movement != name.number
                || name.number as usize != self.movements.len()
                || self.movement_numbers.contains_key(&name.text)
            {
                return Err(Damaged(format!("movement {} ({:?}) out of order or named twice", name.number, name.text)));
            }
            self.movement_numbers.insert(name.text.clone(), name.number);
            self.movements.push(MovementLedger::default());
            return Ok(());
        }
        let ledger = self
            .movements
            .get_mut(name.movement as usize)
            .ok_or_else(|| Damaged(format!("a name of movement {}, which has none", name.movement)))?;
        match name.dimension {
            Dimension::Movement => unreachable!("handled above"),
            Dimension::Source => {
                ledger.sources.restore(name.number, &name.text)?;
                ledger.events.push(EventIndex::default());
            }
            Dimension::Area => ledger.areas.restore(name.number, &name.text)?,
            Dimension::Partner => ledger.partners.restore(name.number, &name.text)?,
            Dimension::Label => ledger.labels.restore(name.number, &name.text)?,
            Dimension::Person => {
                // The entries that number people come after the names;
                // restore_watermark checks every name was numbered by one.
                if ledger.people.insert(name.text.clone(), name.number).is_some() {
                    return Err(Damaged(format!("person {:?} named twice", name.text)));
                }
            }
        }
        Ok(())
    }

    /// Restores a pseudonym a store kept as erased.
    pub fn restore_erased(&mut self, movement: u32, pseudonym: &str) -> Result<(), Damaged> {
        let ledger = self
            .movements
            .get_mut(movement as usize)
            .ok_or_else(|| Damaged(format!("an erasure in movement {movement}, which has none")))?;
        ledger.erased.insert(pseudonym.into());
        Ok(())
    }

    /// Folds an entry a store kept, in the order they were folded: the
    /// same fold [`Ledger::apply`] makes. Nothing is journaled.
    pub fn replay(&mut self, entry: &Entry) -> Result<(), Damaged> {
        if entry.seq <= self.watermark {
            return Err(Damaged(format!("entry {} after sequence {}", entry.seq, self.watermark)));
        }
        let ledger = self
            .movements
            .get_mut(entry.movement as usize)
            .ok_or_else(|| Damaged(format!("an entry of movement {}, which has none", entry.movement)))?;
        if let Body::Fact(fact) = &entry.body {
            // People are numbered in the order they are met, so an entry
            // names those met before and, in ascending order, the next.
            for taking in &fact.people {
                if taking.person > ledger.person_count {
                    return Err(Damaged(format!("entry {} names person {} out of order", entry.seq, taking.person)));
                }
                ledger.grow_people(taking.person);
            }
            let labels = fact.area.into_iter().map(|area| (area, ledger.areas.len(), "area"));
            let labels = labels.chain(fact.label.map(|label| (label, ledger.labels.len(), "label")));
            let labels = labels.chain(fact.partners.iter().map(|partner| (*partner, ledger.partners.len(), "partner")));
            for (number, count, what) in labels {
                if number >= count {
                    return Err(Damaged(format!("entry {} names {what} {number}, never named", entry.seq)));
                }
            }
        }
        ledger.fold(entry)?;
        self.watermark = entry.seq;
        Ok(())
    }

    /// Sets the watermark a store kept with its last checkpoint, at or
    /// after the last entry replayed, and checks that every person named
    /// was numbered by an entry.
    pub fn restore_watermark(&mut self, watermark: u64) -> Result<(), Damaged> {
        if watermark < self.watermark {
            return Err(Damaged(format!("watermark {watermark} before entry {}", self.watermark)));
        }
        for (movement, ledger) in self.movements() {
            if let Some(number) = ledger.people.values().find(|number| **number >= ledger.person_count) {
                return Err(Damaged(format!("person {number} of {movement} is named but in no entry")));
            }
        }
        self.watermark = watermark;
        Ok(())
    }
}

impl MovementLedger {
    /// What became of the event that arrived at `seq`, whose local date is
    /// `day`: `Some(None)` when it counts, `Some(Some(retraction))` when the
    /// retraction at that sequence removed it, and `None` when it never
    /// counted (a repeat, a retraction, an erasure, an event whose
    /// retraction came first, or no event of this movement).
    pub fn filed(&self, day: NaiveDate, seq: u64) -> Option<Option<u64>> {
        self.facts.get(&day)?.filed(seq)
    }

    /// What became of the event (`source`, `id`) of this movement; `None`
    /// when it never arrived (a retraction of it may have).
    pub fn event_fate(&self, source: &str, id: &str) -> Option<EventFate> {
        let events = &self.events[self.sources.find(source)? as usize];
        match events.get(id)? {
            Standing::Counted { seq, .. } | Standing::Uncounted { seq } => Some(EventFate::Accepted { seq }),
            Standing::Retracted { by, seq } => {
                Some(EventFate::Retracted { seq, retracted_by: events.id(by).to_owned() })
            }
            Standing::RetractionPending { .. } => None,
        }
    }

    /// Whether `pseudonym` was erased from this movement.
    pub fn is_erased(&self, pseudonym: &str) -> bool {
        self.erased.contains(pseudonym)
    }

    /// Distinct accepted events of the movement, retractions included.
    pub fn accepted_events(&self) -> u64 {
        self.accepted
    }

    /// The stream sequence of the last entry folded into the movement: its
    /// figures are the same while it is.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether the movement had events once the stream was applied up to `seq`.
    pub fn existed_at(&self, seq: u64) -> bool {
        self.first_seq != 0 && self.first_seq <= seq
    }

    /// Makes room for person numbers up to `person`.
    fn grow_people(&mut self, person: u32) {
        if person >= self.person_count {
            self.person_count = person + 1;
            self.firsts.resize(self.person_count as usize, First::default());
        }
    }

    /// Numbers a pseudonym, journaling the name when it is new.
    fn person(&mut self, movement: u32, pseudonym: &str, names: &mut Vec<Name>) -> u32 {
        if let Some(number) = self.people.get(pseudonym) {
            return *number;
        }
        let number = self.person_count;
        self.grow_people(number);
        self.people.insert(pseudonym.into(), number);
        names.push(Name { movement, dimension: Dimension::Person, number, text: pseudonym.into() });
        number
    }

    /// The fact of an event that counts, numbering what it names. Erased
    /// pseudonyms are left out of its people.
    fn fact(
        &mut self,
        movement: u32,
        settings: &FoldSettings,
        event: &Event,
        data: &EventData,
        names: &mut Vec<Name>,
    ) -> Fact {
        let mut label = |labels: &mut Labels, dimension: Dimension, text: &str| {
            let (number, named) = labels.number(text);
            if named {
                names.push(Name { movement, dimension, number, text: text.into() });
            }
            number
        };
        let area = event.area().map(|area| label(&mut self.areas, Dimension::Area, area));
        let mut partners: Vec<u32> = event
            .partners()
            .into_iter()
            .map(|partner| label(&mut self.partners, Dimension::Partner, partner))
            .collect();
        partners.sort_unstable();
        let (kind, measure, label_text, mut parts): (FactKind, i64, Option<&str>, Vec<(&str, Part)>) = match data {
            EventData::ParticipantJoined(data) => (
                FactKind::Joined,
                0,
                data.channel.as_deref(),
                vec![(data.participant.as_str(), Part::Joined(data.role))],
            ),
            EventData::MeetingHeld(data) => (
                FactKind::MeetingHeld,
                0,
                data.kind.as_deref(),
                data.attendees.iter().map(|attendee| (attendee.as_str(), Part::Attendee)).collect(),
            ),
            EventData::VolunteerHoursLogged(data) => (
                FactKind::VolunteerHoursLogged,
                millihours(data.hours),
                data.activity.as_deref(),
                vec![(data.participant.as_str(), Part::Volunteer)],
            ),
            EventData::CollectiveActionTaken(data) => (
                FactKind::CollectiveActionTaken,
                i64::try_from(data.reach).unwrap_or(i64::MAX),
                data.kind.as_deref(),
                data.participants.iter().map(|participant| (participant.as_str(), Part::ActionParticipant)).collect(),
            ),
            EventData::EventRetracted(_) | EventData::ParticipantErased(_) => {
                unreachable!("retractions and erasures have no fact")
            }
        };
        let label_number = label_text.map(|text| label(&mut self.labels, Dimension::Label, text));
        let organisers = match data {
            EventData::MeetingHeld(data) => data.organisers.as_slice(),
            EventData::CollectiveActionTaken(data) => data.organisers.as_slice(),
            _ => &[],
        };
        let citizen_led = organisers.iter().any(|organiser| organiser.role == Role::Citizen);
        parts.extend(
            organisers.iter().map(|organiser| (organiser.participant.as_str(), Part::Organiser(organiser.role))),
        );
        parts.retain(|(pseudonym, _)| !self.erased.contains(*pseudonym));
        let mut people: Vec<Taking> = parts
            .into_iter()
            .map(|(pseudonym, part)| Taking { person: self.person(movement, pseudonym, names), part })
            .collect();
        // One taking a person: an organiser's part over any other, and the
        // first role named among several.
        // A stable sort keeps the organisers' roles in the order named.
        people.sort_by_key(|taking| (taking.person, !matches!(taking.part, Part::Organiser(_))));
        people.dedup_by_key(|taking| taking.person);
        let principles = event
            .principles()
            .into_iter()
            .map(|principle| 1u8 << Principle::ALL.iter().position(|p| *p == principle).expect("a principle"))
            .fold(0, |bits, bit| bits | bit);
        Fact {
            kind,
            day: local_date(event.time, settings.time_zone),
            measure,
            citizen_led,
            principles,
            area,
            label: label_number,
            partners: partners.into(),
            people: people.into(),
        }
    }

    /// Folds one entry: the rules of repeats and retractions, and the fact
    /// added or removed. Damage is an entry that cannot follow what came
    /// before (only a store's replay can bring one).
    fn fold(&mut self, entry: &Entry) -> Result<Outcome, Damaged> {
        let events = self
            .events
            .get(entry.source as usize)
            .ok_or_else(|| Damaged(format!("entry {} of source {}, never named", entry.seq, entry.source)))?;
        let before = events.get(&entry.id);
        self.fold_after(entry, before)
    }

    /// [`MovementLedger::fold`], given what the ledger knew of the entry's
    /// (`source`, `id`) before it (`apply` has looked it up already).
    fn fold_after(&mut self, entry: &Entry, before: Option<Standing>) -> Result<Outcome, Damaged> {
        if matches!(before, Some(Standing::Counted { .. } | Standing::Uncounted { .. } | Standing::Retracted { .. })) {
            return Err(Damaged(format!("entry {} folds ({}, {:?}) again", entry.seq, entry.source, entry.id)));
        }
        self.accepted += 1;
        if self.first_seq == 0 {
            self.first_seq = entry.seq;
        }
        self.version = entry.seq;
        let pending = match before {
            Some(Standing::RetractionPending { by }) => Some(by),
            _ => None,
        };
        let seq = entry.seq;
        let (status, outcome) = match &entry.body {
            Body::Fact(_) if pending.is_some() => {
                return Err(Damaged(format!("entry {} counts an event retracted before it came", entry.seq)));
            }
            Body::Withheld => match pending {
                Some(by) => (Standing::Retracted { by, seq }, Outcome::ArrivedRetracted),
                None => return Err(Damaged(format!("entry {} withholds an event no retraction named", entry.seq))),
            },
            Body::Fact(fact) => {
                self.insert_fact(entry.seq, fact);
                (Standing::Counted { day: fact.day, seq }, Outcome::Applied)
            }
            Body::Erasure { .. } => (Standing::Uncounted { seq }, Outcome::Erased),
            Body::Retraction { target } => {
                let events = &mut self.events[entry.source as usize];
                // The retraction's own id first, so the target can name where it sits.
                let by = events.place(&entry.id, Standing::Uncounted { seq });
                let outcome = match events.get(target) {
                    None => {
                        events.set(target, Standing::RetractionPending { by });
                        Outcome::RetractionPending
                    }
                    Some(Standing::RetractionPending { by: earlier }) => {
                        let by = events.least(earlier, by);
                        events.set(target, Standing::RetractionPending { by });
                        Outcome::RetractionIgnored
                    }
                    Some(Standing::Retracted { by: earlier, seq: arrived }) => {
                        let by = events.least(earlier, by);
                        events.set(target, Standing::Retracted { by, seq: arrived });
                        Outcome::RetractionIgnored
                    }
                    Some(Standing::Uncounted { .. }) => Outcome::RetractionIgnored,
                    Some(Standing::Counted { day, seq: counted }) => {
                        events.set(target, Standing::Retracted { by, seq: counted });
                        self.retract_fact(day, counted, entry.seq);
                        Outcome::Retracted
                    }
                };
                (Standing::Uncounted { seq }, outcome)
            }
        };
        self.events[entry.source as usize].set(&entry.id, status);
        self.cache.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        Ok(outcome)
    }

    fn insert_fact(&mut self, seq: u64, fact: &Fact) {
        if fact.kind.is_participation() {
            for taking in &fact.people {
                let first = &mut self.firsts[taking.person as usize];
                match first.day {
                    Some(day) if day < fact.day => {}
                    Some(day) if day == fact.day => first.facts += 1,
                    _ => *first = First { day: Some(fact.day), facts: 1 },
                }
            }
        }
        self.facts.entry(fact.day).or_default().push(seq, fact);
    }

    /// Marks the fact of the event at `seq` retracted by the retraction at
    /// `retraction`: it no longer counts, but for reads as of a sequence
    /// before the retraction.
    fn retract_fact(&mut self, day: NaiveDate, seq: u64, retraction: u64) {
        let facts = self.facts.get_mut(&day).expect("a counted event's day holds its fact");
        let (kind, people) = facts.retract(seq, retraction).expect("a counted event's fact is filed and counts");
        if !kind.is_participation() {
            return;
        }
        for taking in &people {
            let first = &mut self.firsts[taking.person as usize];
            if first.day != Some(day) {
                continue;
            }
            first.facts -= 1;
            if first.facts == 0 {
                // Their first day had only this fact: the next is the
                // earliest day after it with one of theirs. Only a
                // retraction of a first participation looks this far.
                self.firsts[taking.person as usize] = self.first_after(taking.person, day);
            }
        }
    }

    /// A person's first participation after `day`.
    fn first_after(&self, person: u32, day: NaiveDate) -> First {
        for (later, facts) in self.facts.range(day.succ_opt().unwrap_or(day)..) {
            let count = facts
                .facts()
                .filter(|fact| fact.retracted_at.is_none() && fact.kind.is_participation())
                .filter(|fact| fact.people.iter().any(|t| t.person == person))
                .count() as u32;
            if count > 0 {
                return First { day: Some(*later), facts: count };
            }
        }
        First::default()
    }

    /// A person's first day of participation.
    fn first_day(&self, person: u32) -> Option<NaiveDate> {
        self.firsts[person as usize].day
    }

    /// How many people have been numbered.
    fn person_count(&self) -> usize {
        self.person_count as usize
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(id: &str, kind: &str, data: serde_json::Value) -> Event {
        let value = json!({ "specversion": "1.0", "id": id, "source": "urn:p", "type": kind, "subject": "alpha",
            "time": "2026-03-04T10:00:00Z", "data": data });
        Event::from_json(value.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn an_events_fate_is_its_sequence_or_the_least_retraction_of_it_in_any_order() {
        let hours = |id: &str| event(id, "volunteer.hours_logged", json!({ "participant": "p", "hours": 1 }));
        let retraction = |id: &str, target: &str| event(id, "event.retracted", json!({ "event_id": target }));
        let (h1, h2) = (hours("h1"), hours("h2"));
        let (rb, ra, rc) = (retraction("r-b", "h1"), retraction("r-a", "h1"), retraction("r-c", "h3"));
        let fates = |order: &[&Event]| {
            let mut ledger = Ledger::default();
            for (index, event) in order.iter().enumerate() {
                ledger.apply(&FoldSettings::default(), event, index as u64 + 1);
            }
            let movement = ledger.movement("alpha").unwrap();
            ["h1", "h2", "r-b", "h3"].map(|id| movement.event_fate("urn:p", id))
        };
        let fate = fates(&[&h1, &rb, &ra, &h2, &rc]);
        assert_eq!(fate[0], Some(EventFate::Retracted { seq: 1, retracted_by: "r-a".to_owned() }));
        assert_eq!(fate[1], Some(EventFate::Accepted { seq: 4 }));
        assert_eq!(fate[2], Some(EventFate::Accepted { seq: 2 }), "a retraction is accepted as what it is");
        assert_eq!(fate[3], None, "retracted before it came, and it never did");
        // Retracted before it arrived, by the other retraction first: the same retraction is named.
        let other = fates(&[&ra, &rb, &h1, &h2]);
        assert_eq!(other[0], Some(EventFate::Retracted { seq: 3, retracted_by: "r-a".to_owned() }));
        assert_eq!(fates(&[&rb, &h1, &ra])[0], Some(EventFate::Retracted { seq: 2, retracted_by: "r-a".to_owned() }));
        let mut ledger = Ledger::default();
        ledger.apply(&FoldSettings::default(), &h1, 1);
        assert_eq!(ledger.movement("alpha").unwrap().event_fate("urn:other", "h1"), None, "another source's id");
    }
}
