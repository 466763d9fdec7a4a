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
//! key-value state does. Not yet used by the projector: persisting it in
//! checkpoints is the next step (docs/benchmarks.md).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::NaiveDate;

use crate::event::{Event, EventData, EventType, Principle};
use crate::memory::MemoryState;
use crate::period::{Interval, local_date};
use crate::projection::{MOMENTUM_WINDOW_PERIODS, Outcome, PeriodTotals, ProjectionSettings, State, keys, millihours};
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

fn interval_index(interval: Interval) -> usize {
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
    memberships: Counts<(NaiveDate, usize, PeopleSet)>,
}

impl Participant {
    fn is_empty(&self) -> bool {
        self.days.is_empty() && self.active.iter().all(Counts::is_empty) && self.memberships.is_empty()
    }
}

/// What is kept about one (`source`, `id`) of a movement.
#[derive(Clone, Debug, Default)]
struct EventEntry {
    /// The event once it has arrived, so that a later retraction can
    /// subtract exactly what it added.
    event: Option<Arc<Event>>,
    /// The stream sequence it arrived at; 0 until it has.
    seq: u64,
    retracted: bool,
    /// A retraction naming this event arrived before it.
    retraction_pending: bool,
}

/// One movement's projection.
#[derive(Clone, Debug, Default)]
struct MovementProjection {
    /// Distinct accepted events, retractions and erasures included.
    events_counted: u64,
    events: HashMap<(Box<str>, Box<str>), EventEntry>,
    periods: BTreeMap<(Interval, NaiveDate), PeriodTotals>,
    participants: HashMap<Box<str>, Participant>,
    /// Reference counts of a period's partners or areas.
    values: HashMap<(ValueSet, Interval, NaiveDate), HashMap<Box<str>, u64>>,
    /// Members of a cohort (interval, cohort period) active in a period.
    cohorts: BTreeMap<(Interval, NaiveDate, NaiveDate), u64>,
    /// Tagged activities by principle and day.
    principle_days: BTreeMap<(Principle, NaiveDate), u64>,
    /// The participants of those activities.
    principle_members: BTreeMap<(Principle, NaiveDate), HashMap<Box<str>, u64>>,
    /// Erased pseudonyms: the only record kept of them.
    erased: HashSet<Box<str>>,
}

/// The projection of every movement, and the last stream sequence folded.
#[derive(Clone, Debug, Default)]
pub struct Projection {
    movements: HashMap<Box<str>, MovementProjection>,
    watermark: u64,
}

/// The changes one contribution makes to period totals, summed and applied
/// once per period at the end.
#[derive(Default)]
struct TotalsChanges {
    by_period: BTreeMap<(Interval, NaiveDate), PeriodTotals>,
}

impl TotalsChanges {
    fn adjust(&mut self, interval: Interval, start: NaiveDate, change: impl FnOnce(&mut PeriodTotals)) {
        change(self.by_period.entry((interval, start)).or_default());
    }

    fn apply_to(self, periods: &mut BTreeMap<(Interval, NaiveDate), PeriodTotals>) {
        for (period, change) in self.by_period {
            periods.entry(period).or_default().add(&change);
        }
    }
}

impl Projection {
    /// The last stream sequence folded in; 0 for an empty projection.
    pub fn watermark(&self) -> u64 {
        self.watermark
    }

    /// Folds one event, found at stream sequence `seq`: exactly what
    /// [`crate::projection::apply`] does to a key-value state.
    pub fn apply(&mut self, settings: &ProjectionSettings, event: &Event, seq: u64) -> Outcome {
        self.watermark = self.watermark.max(seq);
        let movement = match self.movements.get_mut(event.subject.as_str()) {
            Some(movement) => movement,
            None => self.movements.entry(event.subject.as_str().into()).or_default(),
        };
        movement.apply(settings, event, seq)
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

fn count_bytes(count: u64) -> [u8; 8] {
    count.to_le_bytes()
}

impl MovementProjection {
    fn apply(&mut self, settings: &ProjectionSettings, event: &Event, seq: u64) -> Outcome {
        let key = (Box::<str>::from(event.source.as_str()), Box::<str>::from(event.id.as_str()));
        let mut entry = self.events.get(&key).cloned().unwrap_or_default();
        if entry.event.is_some() {
            return Outcome::Duplicate;
        }
        entry.event = Some(Arc::new(event.clone()));
        entry.seq = seq;
        self.events_counted += 1;
        let outcome = match &event.data {
            EventData::ParticipantErased(erasure) => {
                for pseudonym in &erasure.pseudonyms {
                    self.erase_participant(pseudonym);
                }
                self.events.insert(key, entry);
                return Outcome::Erased;
            }
            EventData::EventRetracted(retraction) => {
                let outcome = self.retract(settings, event, &retraction.event_id);
                self.events.insert(key, entry);
                return outcome;
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
        outcome
    }

    fn retract(&mut self, settings: &ProjectionSettings, retraction: &Event, target_id: &str) -> Outcome {
        let key = (Box::<str>::from(retraction.source.as_str()), Box::<str>::from(target_id));
        let target = self.events.entry(key).or_default();
        let Some(target_event) = target.event.clone() else {
            if target.retraction_pending {
                return Outcome::RetractionIgnored;
            }
            target.retraction_pending = true;
            return Outcome::RetractionPending;
        };
        let not_retractable = matches!(target_event.kind, EventType::EventRetracted | EventType::ParticipantErased);
        if target.retracted || not_retractable {
            return Outcome::RetractionIgnored;
        }
        target.retracted = true;
        self.add_contribution(settings, &target_event, -1);
        Outcome::Retracted
    }

    fn without_erased<'a>(&self, participants: Vec<&'a str>) -> Vec<&'a str> {
        if self.erased.is_empty() {
            return participants;
        }
        participants.into_iter().filter(|participant| !self.erased.contains(*participant)).collect()
    }

    fn participant(&mut self, participant: &str) -> &mut Participant {
        if !self.participants.contains_key(participant) {
            self.participants.insert(participant.into(), Participant::default());
        }
        self.participants.get_mut(participant).expect("just inserted")
    }

    /// Drops a participant's record once nothing is counted in it.
    fn forget_if_empty(&mut self, participant: &str) {
        if self.participants.get(participant).is_some_and(Participant::is_empty) {
            self.participants.remove(participant);
        }
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
                self.participants.get(*participant).and_then(|record| record.days.first())
            };
            firsts.push(first.expect("a participant with an effective event has a first participation"));
        }
        let (organisers, citizen_led) = event.organisers();
        let organisers = self.without_erased(organisers);
        for interval in Interval::ALL {
            let start = interval.period_start(day);
            totals.adjust(interval, start, |totals| match &event.data {
                EventData::ParticipantJoined(_) => totals.joined += sign,
                EventData::MeetingHeld(_) => {
                    totals.meetings += sign;
                    totals.attendances += sign * participants.len() as i64;
                    totals.citizen_led += sign * i64::from(citizen_led);
                }
                EventData::VolunteerHoursLogged(data) => totals.volunteer_millihours += sign * millihours(data.hours),
                EventData::CollectiveActionTaken(data) => {
                    totals.collective_actions += sign;
                    totals.people_reached += sign * data.reach as i64;
                    totals.citizen_led += sign * i64::from(citizen_led);
                }
                EventData::EventRetracted(_) | EventData::ParticipantErased(_) => {}
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
                let change = self.participant(person).memberships.add((start, interval_index(interval), set), sign);
                if sign < 0 {
                    self.forget_if_empty(person);
                }
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
        totals.apply_to(&mut self.periods);
        for principle in event.principles() {
            count_in_ordered(&mut self.principle_days, (principle, day), sign);
            let members = self.principle_members.entry((principle, day)).or_default();
            for participant in &participants {
                count_in(members, Box::from(*participant), sign);
            }
            if members.is_empty() {
                self.principle_members.remove(&(principle, day));
            }
        }
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
        let after = record.days.first();
        if before == after {
            if sign < 0 {
                self.forget_if_empty(participant);
            }
            return after;
        }
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
            for (start, _) in active[interval_index(interval)].iter() {
                if let Some(cohort) = old_cohort {
                    count_in_ordered(&mut self.cohorts, (interval, cohort, start), -1);
                }
                if let Some(cohort) = new_cohort {
                    count_in_ordered(&mut self.cohorts, (interval, cohort, start), 1);
                }
            }
        }
        if sign < 0 {
            self.forget_if_empty(participant);
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
        let periods = &mut record.active[interval_index(interval)];
        let change = periods.add(start, sign);
        if change == 0 {
            return;
        }
        const REACH: i32 = MOMENTUM_WINDOW_PERIODS - 1;
        let mut active_around = [false; (2 * REACH + 1) as usize];
        for offset in (-REACH..=REACH).filter(|offset| *offset != 0) {
            active_around[(offset + REACH) as usize] = periods.contains(interval.shift(start, offset));
        }
        if sign < 0 {
            self.forget_if_empty(participant);
        }
        totals.adjust(interval, start, |totals| totals.active_participants += change);
        count_in_ordered(&mut self.cohorts, (interval, cohort, start), change);
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
        if let Some(record) = self.participants.remove(participant) {
            for (day, _) in record.days.iter() {
                for principle in Principle::ALL {
                    if let Some(members) = self.principle_members.get_mut(&(principle, day)) {
                        members.remove(participant);
                        if members.is_empty() {
                            self.principle_members.remove(&(principle, day));
                        }
                    }
                }
            }
        }
        self.erased.insert(participant.into());
    }

    fn write_key_values(&self, movement: &str, state: &mut MemoryState) {
        let mut put = |key: Vec<u8>, value: &[u8]| {
            let Ok(()) = state.put(&key, value);
        };
        put(keys::movement(movement), &count_bytes(self.events_counted));
        for ((interval, start), totals) in &self.periods {
            if *totals != PeriodTotals::default() {
                put(keys::period(movement, *interval, *start), &totals.encode());
            }
        }
        for (participant, record) in &self.participants {
            for (day, count) in record.days.iter() {
                put(keys::participation_day(movement, participant, day), &count_bytes(count));
            }
            if let Some(first) = record.days.first() {
                let mut bytes = Vec::with_capacity(4);
                keys::push_date(&mut bytes, first);
                put(keys::first_day(movement, participant), &bytes);
            }
            for interval in Interval::ALL {
                for (start, count) in record.active[interval_index(interval)].iter() {
                    put(keys::active(movement, interval, participant, start), &count_bytes(count));
                }
            }
            for ((start, interval_at, set), count) in record.memberships.iter() {
                let key = keys::member(set.key_set(), movement, Interval::ALL[interval_at], start, participant);
                put(key, &count_bytes(count));
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
            for (participant, count) in members {
                put(keys::principle_member(movement, *principle, *day, participant), &count_bytes(*count));
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
        let Some(movement) = self.movements.get(movement) else {
            return Ok(vec![PeriodTotals::default(); starts.len()]);
        };
        Ok(starts.iter().map(|start| movement.periods.get(&(interval, *start)).copied().unwrap_or_default()).collect())
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
        let mut participants: HashSet<&str> = HashSet::new();
        for (_, members) in movement.principle_members.range((principle, from)..(principle, end)) {
            participants.extend(members.keys().map(|participant| &**participant));
        }
        Ok((activities, participants.len() as u64))
    }
}
