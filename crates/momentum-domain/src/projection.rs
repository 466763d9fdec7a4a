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

use chrono::NaiveDate;
use chrono_tz::Tz;

use crate::event::{Event, EventData, EventType};
use crate::period::{Interval, local_date};

/// Key-value pairs in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Read access to the ordered key-value map that holds a projection.
pub trait StateRead {
    type Error;
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error>;
    /// Every entry whose key starts with `prefix`, in key order; used for
    /// listings, never on the fold's path.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, Self::Error>;
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
    /// A retraction of an event not seen yet: it waits for that event.
    RetractionPending,
    /// A retraction with nothing to do: its target is a retraction, is
    /// already retracted, or belongs to another movement.
    RetractionIgnored,
}

/// Store keys. Every key starts with a one-byte tag naming its table.
pub mod keys {
    use super::*;

    pub(crate) const EVENT: u8 = b'e';
    pub(crate) const MOVEMENT: u8 = b'm';
    pub(crate) const PERIOD: u8 = b'p';
    pub(crate) const ACTIVE: u8 = b'a';
    /// The last applied stream sequence: the projection's checkpoint.
    pub const WATERMARK: &[u8] = b"w";

    /// The record of one (`source`, `id`). Both parts are length-prefixed
    /// because CloudEvents ids may contain any character.
    pub(crate) fn event(source: &str, id: &str) -> Vec<u8> {
        let mut key = Vec::with_capacity(5 + source.len() + id.len());
        key.push(EVENT);
        key.extend_from_slice(&(source.len() as u16).to_be_bytes());
        key.extend_from_slice(source.as_bytes());
        key.extend_from_slice(id.as_bytes());
        key
    }

    pub(crate) fn movement(movement: &str) -> Vec<u8> {
        let mut key = vec![MOVEMENT];
        key.extend_from_slice(movement.as_bytes());
        key
    }

    /// Movement ids never contain a NUL byte (their schema pattern rules it
    /// out), so NUL ends them unambiguously inside longer keys.
    pub(crate) fn period(movement: &str, interval: Interval, start: NaiveDate) -> Vec<u8> {
        let mut key = vec![PERIOD];
        key.extend_from_slice(movement.as_bytes());
        key.push(0);
        key.push(interval.key_byte());
        key.extend_from_slice(&date_bytes(start));
        key
    }

    pub(crate) fn active(movement: &str, interval: Interval, start: NaiveDate, participant: &str) -> Vec<u8> {
        let mut key = vec![ACTIVE];
        key.extend_from_slice(movement.as_bytes());
        key.push(0);
        key.push(interval.key_byte());
        key.extend_from_slice(&date_bytes(start));
        key.extend_from_slice(participant.as_bytes());
        key
    }

    /// Big-endian days since 0001-01-01, so keys sort by date.
    fn date_bytes(date: NaiveDate) -> [u8; 4] {
        use chrono::Datelike;
        (date.num_days_from_ce() as u32).to_be_bytes()
    }
}

/// The totals of one movement in one period.
///
/// Stored as consecutive little-endian `i64`s in field order. Fields are only
/// ever appended, and a shorter record reads with zeros for the missing ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeriodTotals {
    pub active_participants: i64,
    pub joined: i64,
    pub meetings: i64,
    pub attendances: i64,
    pub volunteer_millihours: i64,
    pub collective_actions: i64,
    pub people_reached: i64,
}

impl PeriodTotals {
    const FIELD_COUNT: usize = 7;

    fn fields_mut(&mut self) -> [&mut i64; Self::FIELD_COUNT] {
        [
            &mut self.active_participants,
            &mut self.joined,
            &mut self.meetings,
            &mut self.attendances,
            &mut self.volunteer_millihours,
            &mut self.collective_actions,
            &mut self.people_reached,
        ]
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
}

/// Volunteer hours are counted in whole milli-hours (3.6 seconds), so that
/// sums are exact; the schema bounds hours to (0, 24], so this cannot overflow.
pub fn millihours(hours: f64) -> i64 {
    (hours * 1000.0).round() as i64
}

/// What the store keeps about one (`source`, `id`).
#[derive(Clone, Debug, Default, PartialEq)]
struct EventRecord {
    /// The event itself once it has arrived, in its stored JSON form; kept so
    /// a later retraction can subtract exactly what it added.
    event: Option<Vec<u8>>,
    /// The stream sequence it arrived at; 0 until it has.
    seq: u64,
    retracted: bool,
    /// The movements of retractions that arrived before the event they name.
    /// More than one is possible: a retraction only takes effect if its
    /// movement is the event's, and which that is is unknown until it arrives.
    pending_retraction_subjects: Vec<String>,
}

impl EventRecord {
    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.push(u8::from(self.retracted));
        bytes.extend_from_slice(&self.seq.to_le_bytes());
        // Movement ids never contain NUL, so NUL separates them.
        let pending = self.pending_retraction_subjects.join("\0");
        bytes.extend_from_slice(&(pending.len() as u32).to_le_bytes());
        bytes.extend_from_slice(pending.as_bytes());
        if let Some(event) = &self.event {
            bytes.extend_from_slice(event);
        }
        bytes
    }

    fn decode(bytes: &[u8]) -> EventRecord {
        let retracted = bytes[0] == 1;
        let seq = u64::from_le_bytes(bytes[1..9].try_into().expect("8 bytes"));
        let pending_length = u32::from_le_bytes(bytes[9..13].try_into().expect("4 bytes")) as usize;
        let pending = String::from_utf8_lossy(&bytes[13..13 + pending_length]);
        let event = &bytes[13 + pending_length..];
        EventRecord {
            event: (!event.is_empty()).then(|| event.to_vec()),
            seq,
            retracted,
            pending_retraction_subjects: pending.split('\0').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        }
    }
}

/// Folds one event, found at stream sequence `seq`, into the state.
pub fn apply<S: State>(
    state: &mut S,
    settings: &ProjectionSettings,
    event: &Event,
    seq: u64,
) -> Result<Outcome, S::Error> {
    let record_key = keys::event(&event.source, &event.id);
    let mut record = match state.get(&record_key)? {
        Some(bytes) => EventRecord::decode(&bytes),
        None => EventRecord::default(),
    };
    if record.event.is_some() {
        return Ok(Outcome::Duplicate);
    }
    record.event = Some(event.to_json());
    record.seq = seq;
    count_event(state, &event.subject)?;

    let outcome = match &event.data {
        EventData::EventRetracted(retraction) => {
            let outcome = retract(state, settings, event, &retraction.event_id)?;
            state.put(&record_key, &record.encode())?;
            return Ok(outcome);
        }
        _ if record.pending_retraction_subjects.contains(&event.subject) => {
            record.retracted = true;
            Outcome::ArrivedRetracted
        }
        _ => {
            add_contribution(state, settings, event, 1)?;
            Outcome::Applied
        }
    };
    record.pending_retraction_subjects.clear();
    state.put(&record_key, &record.encode())?;
    Ok(outcome)
}

fn retract<S: State>(
    state: &mut S,
    settings: &ProjectionSettings,
    retraction: &Event,
    target_id: &str,
) -> Result<Outcome, S::Error> {
    let target_key = keys::event(&retraction.source, target_id);
    let mut target = match state.get(&target_key)? {
        Some(bytes) => EventRecord::decode(&bytes),
        None => EventRecord::default(),
    };
    let Some(target_json) = &target.event else {
        if target.pending_retraction_subjects.contains(&retraction.subject) {
            return Ok(Outcome::RetractionIgnored);
        }
        target.pending_retraction_subjects.push(retraction.subject.clone());
        state.put(&target_key, &target.encode())?;
        return Ok(Outcome::RetractionPending);
    };
    let target_event = Event::from_json(target_json).expect("stored events were valid when stored");
    if target.retracted || target_event.kind == EventType::EventRetracted || target_event.subject != retraction.subject
    {
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

/// Adds (`sign` = 1) or subtracts (`sign` = -1) an event's contribution to
/// every period, of every interval, that it falls in.
fn add_contribution<S: State>(
    state: &mut S,
    settings: &ProjectionSettings,
    event: &Event,
    sign: i64,
) -> Result<(), S::Error> {
    let date = local_date(event.time, settings.time_zone);
    let participants = event.participants();
    for interval in Interval::ALL {
        let start = interval.period_start(date);
        let period_key = keys::period(&event.subject, interval, start);
        let mut totals = state.get(&period_key)?.map(|bytes| PeriodTotals::decode(&bytes)).unwrap_or_default();
        match &event.data {
            EventData::ParticipantJoined(_) => totals.joined += sign,
            EventData::MeetingHeld(_) => {
                totals.meetings += sign;
                totals.attendances += sign * participants.len() as i64;
            }
            EventData::VolunteerHoursLogged(data) => totals.volunteer_millihours += sign * millihours(data.hours),
            EventData::CollectiveActionTaken(data) => {
                totals.collective_actions += sign;
                totals.people_reached += sign * data.reach as i64;
            }
            EventData::EventRetracted(_) => {}
        }
        for participant in &participants {
            let active_key = keys::active(&event.subject, interval, start, participant);
            let before = state.get(&active_key)?.map(|bytes| decode_u64(&bytes)).unwrap_or(0);
            let after = before.checked_add_signed(sign).expect("a retraction only removes what was added");
            if before == 0 {
                totals.active_participants += 1;
            }
            if after == 0 {
                totals.active_participants -= 1;
                state.remove(&active_key)?;
            } else {
                state.put(&active_key, &after.to_le_bytes())?;
            }
        }
        state.put(&period_key, &totals.encode())?;
    }
    Ok(())
}

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

/// Records that every event up to `seq` has been folded in. The store
/// writes this in the same atomic batch as the changes it covers.
pub fn set_watermark<S: State>(state: &mut S, seq: u64) -> Result<(), S::Error> {
    state.put(keys::WATERMARK, &seq.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryState;
    use crate::query::{TrendRequest, TrendRow, trend};

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

    fn week(state: &MemoryState) -> TrendRow {
        let day = NaiveDate::from_ymd_opt(2026, 3, 4).unwrap();
        let request = TrendRequest { movement: "m".to_owned(), interval: Interval::Week, from: day, to: day };
        let Ok(trend) = trend(state, &request) else { panic!("movement m has events") };
        trend.series[0].clone()
    }

    #[test]
    fn a_repeated_event_is_applied_once() {
        let first = hours("h1", "a", 2.0);
        let (state, outcomes) = apply_all(&[&first, &first.clone()]);
        assert_eq!(outcomes, vec![Outcome::Applied, Outcome::Duplicate]);
        assert_eq!(week(&state).volunteer_hours, 2.0);
        assert_eq!(week(&state).active_participants, 1);
    }

    #[test]
    fn a_retraction_removes_exactly_what_the_event_added() {
        let (one, two) = (hours("h1", "a", 2.0), hours("h2", "a", 1.5));
        let (state, outcomes) = apply_all(&[&one, &two, &retraction("r1", "m", "h1")]);
        assert_eq!(outcomes[2], Outcome::Retracted);
        assert_eq!(week(&state).volunteer_hours, 1.5);
        assert_eq!(week(&state).active_participants, 1, "a still took part through h2");
        let (state, _) = apply_all(&[&one, &retraction("r1", "m", "h1")]);
        assert_eq!(week(&state).active_participants, 0);
        assert_eq!(week(&state).volunteer_hours, 0.0);
    }

    #[test]
    fn a_retraction_that_arrives_first_keeps_the_event_from_ever_counting() {
        let (state, outcomes) = apply_all(&[&retraction("r1", "m", "h1"), &hours("h1", "a", 2.0)]);
        assert_eq!(outcomes, vec![Outcome::RetractionPending, Outcome::ArrivedRetracted]);
        assert_eq!(week(&state).volunteer_hours, 0.0);
        assert_eq!(week(&state).active_participants, 0);
    }

    #[test]
    fn a_retraction_from_another_movement_or_of_a_retraction_changes_nothing() {
        let one = hours("h1", "a", 2.0);
        let (state, outcomes) = apply_all(&[&one, &retraction("r1", "other", "h1")]);
        assert_eq!(outcomes[1], Outcome::RetractionIgnored);
        assert_eq!(week(&state).volunteer_hours, 2.0);

        let (state, outcomes) = apply_all(&[
            &one,
            &retraction("r1", "m", "h1"),
            &retraction("r2", "m", "r1"),
            &retraction("r3", "m", "h1"),
        ]);
        assert_eq!(outcomes[1..], [Outcome::Retracted, Outcome::RetractionIgnored, Outcome::RetractionIgnored]);
        assert_eq!(week(&state).volunteer_hours, 0.0, "retracting r1 does not bring h1 back");
    }

    #[test]
    fn period_totals_read_back_and_a_shorter_record_reads_zeros_for_new_fields() {
        let totals = PeriodTotals { active_participants: 3, people_reached: -1, ..PeriodTotals::default() };
        assert_eq!(PeriodTotals::decode(&totals.encode()), totals);
        let short = &totals.encode()[..8];
        assert_eq!(PeriodTotals::decode(short), PeriodTotals { active_participants: 3, ..PeriodTotals::default() });
    }

    #[test]
    fn hours_are_counted_in_whole_milli_hours() {
        assert_eq!(millihours(0.1) + millihours(0.2), millihours(0.3));
        assert_eq!(millihours(24.0), 24_000);
    }
}
