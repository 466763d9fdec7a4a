//! Properties of the projection fold, checked on random event sets against
//! a small, obviously-correct reference that recomputes every figure from
//! the set of effective events.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, FixedOffset, NaiveDate};
use momentum_domain::memory::MemoryState;
use momentum_domain::projection::{Outcome, ProjectionSettings, apply, keys, millihours, set_watermark};
use momentum_domain::query::{
    self, Cohort, CohortRequest, Metric, PrincipleFigures, PrinciplesRequest, ProjectionRead, ReadSettings,
    TrendRequest,
};
use momentum_domain::typed::{ArchiveError, ArchivedEvent, Checkpoint, EventArchive, Projection};
use momentum_domain::{Event, EventData, Interval, Principle};
use proptest::prelude::*;
use serde_json::{Value, json};

const MOVEMENTS: [&str; 3] = ["m1", "m2", "m3"];
const SOURCES: [&str; 2] = ["urn:s1", "urn:s2"];
const READ: ReadSettings = ReadSettings { volunteer_hour_value_gbp: 12.5 };

fn day(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

/// Person `person`'s pseudonym. Of two, three or four characters, so that
/// keys ending in a name (a principle's members on a day) are of several
/// lengths, and their order (length first) is met.
fn pseudonym(person: u8) -> String {
    format!("p{person}{}", "x".repeat(usize::from(person % 3)))
}

/// Builds event number `index` from drawn numbers; `target` picks the event a
/// retraction names (possibly a retraction, or one of another movement).
#[allow(clippy::too_many_arguments)]
fn build_event(
    index: usize,
    kind: u8,
    source: usize,
    movement: usize,
    minutes: i64,
    people: &[u8],
    target: usize,
    tags: u8,
) -> Event {
    let base = DateTime::parse_from_rfc3339("2026-01-01T00:00:00+00:00").unwrap();
    let offset = FixedOffset::east_opt(if index.is_multiple_of(3) { 3600 } else { 0 }).unwrap();
    let time = (base + chrono::Duration::minutes(minutes)).with_timezone(&offset);
    let refs: Vec<String> = people.iter().map(|person| pseudonym(*person)).collect();
    let first = refs.first().cloned().unwrap_or_else(|| pseudonym(0));
    let principles: Vec<&str> =
        Principle::ALL.iter().enumerate().filter(|(bit, _)| tags & (1 << bit) != 0).map(|(_, p)| p.as_str()).collect();
    let organiser_role = if tags & 1 == 0 { "citizen" } else { "professional" };
    let organisers = json!([{ "participant": pseudonym(tags % 5), "role": organiser_role }]);
    let area = ["north", "south", "east"][(tags % 3) as usize];
    let partner = ["nhs", "council", "charity"][(tags % 3) as usize];
    let partners = json!([partner]);
    let (type_name, data) = match kind {
        0 => ("participant.joined", json!({ "participant": first, "role": "citizen", "area": area })),
        1 => (
            "meeting.held",
            json!({ "attendees": refs, "organisers": organisers, "principles": principles, "partners": partners, "area": area }),
        ),
        2 => (
            "volunteer.hours_logged",
            json!({ "participant": first, "hours": 0.1 * f64::from(1 + (index % 7) as u8), "principles": principles }),
        ),
        3 => (
            "collective_action.taken",
            json!({ "participants": refs, "organisers": if tags.is_multiple_of(2) { organisers } else { json!([]) },
                    "reach": index, "principles": principles, "partners": partners }),
        ),
        _ => ("event.retracted", json!({ "event_id": format!("e{target}") })),
    };
    let value = json!({
        "specversion": "1.0", "id": format!("e{index}"), "source": SOURCES[source], "type": type_name,
        "subject": MOVEMENTS[movement], "time": time.to_rfc3339(), "data": data,
    });
    Event::from_json(value.to_string().as_bytes()).unwrap()
}

fn event_strategy(index: usize, count: usize) -> impl Strategy<Value = Event> {
    (
        0u8..5,
        0..SOURCES.len(),
        0..MOVEMENTS.len(),
        0i64..(100 * 24 * 60),
        prop::collection::vec(0u8..8, 0..4),
        0..count,
        any::<u8>(),
    )
        .prop_map(move |(kind, source, movement, minutes, people, target, tags)| {
            build_event(index, kind, source, movement, minutes, &people, target, tags)
        })
}

/// Distinct events, then a delivery order with some of them repeated.
fn deliveries() -> impl Strategy<Value = (Vec<Event>, Vec<usize>)> {
    (1usize..50).prop_flat_map(|count| {
        let events: Vec<_> = (0..count).map(|index| event_strategy(index, count)).collect();
        let repeats = prop::collection::vec(0..count, 0..10);
        (events, repeats).prop_flat_map(|(events, repeats)| {
            let order: Vec<usize> = (0..events.len()).chain(repeats).collect();
            (Just(events), Just(order).prop_shuffle())
        })
    })
}

fn fold(events: &[Event], order: &[usize]) -> MemoryState {
    fold_spaced(events, order, 1)
}

/// The stream sequence of the delivery at `position` when consecutive
/// deliveries are `spacing` sequences apart (a partitioned projector's
/// events are, with other partitions' events between them).
fn sequence(position: usize, spacing: u64) -> u64 {
    (position as u64 + 1) * spacing
}

fn fold_spaced(events: &[Event], order: &[usize], spacing: u64) -> MemoryState {
    let mut state = MemoryState::default();
    for (position, &index) in order.iter().enumerate() {
        let Ok(_) = apply(&mut state, &ProjectionSettings::default(), &events[index], sequence(position, spacing));
    }
    state
}

const FROM: &str = "2025-12-01";
const TO: &str = "2026-05-31";

/// Every read the API offers, for every movement and interval, as JSON
/// without the watermark (which counts deliveries, repeats included).
fn read_all<R: ProjectionRead>(state: &R) -> Value {
    let mut all = serde_json::Map::new();
    for movement in MOVEMENTS {
        for interval in Interval::ALL {
            let request =
                TrendRequest { movement: movement.to_owned(), interval, from: day(FROM), to: day(TO), metrics: None };
            let trend = query::trend(state, &request, &READ).map(|trend| serde_json::to_value(trend.series).unwrap());
            let cohorts = query::cohorts(
                state,
                &CohortRequest { movement: movement.to_owned(), interval, from: day(FROM), to: day(TO) },
            )
            .map(|cohorts| serde_json::to_value(cohorts.cohorts).unwrap());
            all.insert(format!("{movement} {interval:?} trend"), trend.unwrap_or(Value::Null));
            all.insert(format!("{movement} {interval:?} cohorts"), cohorts.unwrap_or(Value::Null));
        }
        let request =
            PrinciplesRequest { movement: movement.to_owned(), from: day("2026-01-10"), to: day("2026-02-20") };
        let principles = query::principles(state, &request).map(|p| serde_json::to_value(p.principles).unwrap());
        all.insert(format!("{movement} principles"), principles.unwrap_or(Value::Null));
    }
    Value::Object(all)
}

/// Trends over a window inside the events' dates (from about a month after
/// the first to about ten weeks later), so that periods are stored before
/// and after the range read: a read must take exactly its own.
fn window_trends<R: ProjectionRead>(state: &R) -> Value {
    let mut all = serde_json::Map::new();
    for movement in MOVEMENTS {
        for interval in Interval::ALL {
            let request = TrendRequest {
                movement: movement.to_owned(),
                interval,
                from: day("2026-02-01"),
                to: day("2026-03-10"),
                metrics: None,
            };
            let trend = query::trend(state, &request, &READ).map(|trend| serde_json::to_value(trend.series).unwrap());
            all.insert(format!("{movement} {interval:?} window trend"), trend.unwrap_or(Value::Null));
        }
    }
    Value::Object(all)
}

/// The effective events: each (source, id) once, minus those named by a
/// retraction of the same source and movement (retractions never count).
fn effective(events: &[Event]) -> Vec<&Event> {
    let by_key: BTreeMap<(&str, &str), &Event> =
        events.iter().map(|event| ((event.source.as_str(), event.id.as_str()), event)).collect();
    let mut retracted = BTreeSet::new();
    for event in events {
        if let EventData::EventRetracted(retraction) = &event.data
            && let Some(target) = by_key.get(&(event.source.as_str(), retraction.event_id.as_str()))
            && target.subject == event.subject
            && !matches!(target.data, EventData::EventRetracted(_))
        {
            retracted.insert((target.source.as_str(), target.id.as_str()));
        }
    }
    by_key.into_values().filter(|event| !retracted.contains(&(event.source.as_str(), event.id.as_str()))).collect()
}

fn local_day(event: &Event) -> NaiveDate {
    event.time.with_timezone(&chrono_tz::Europe::London).date_naive()
}

/// Recomputes everything `read_all` reads, straight from the definitions.
fn reference(events: &[Event]) -> Value {
    let effective = effective(events);
    let mut all = serde_json::Map::new();
    for movement in MOVEMENTS {
        let mine: Vec<&&Event> = effective.iter().filter(|event| event.subject == movement).collect();
        let known = events.iter().any(|event| event.subject == movement);
        let mut first: BTreeMap<String, NaiveDate> = BTreeMap::new();
        for event in &mine {
            for participant in event.participants() {
                let entry = first.entry(participant.to_owned()).or_insert(local_day(event));
                *entry = (*entry).min(local_day(event));
            }
        }
        for interval in Interval::ALL {
            let period_of = |event: &Event| interval.period_start(local_day(event));
            let active = |period: NaiveDate| -> BTreeSet<String> {
                mine.iter()
                    .filter(|event| period_of(event) == period)
                    .flat_map(|event| event.participants().into_iter().map(str::to_owned))
                    .collect()
            };
            let periods: Vec<NaiveDate> = interval.periods(day(FROM), day(TO)).collect();
            let mut rows = Vec::new();
            for &period in &periods {
                let here: Vec<&&&Event> = mine.iter().filter(|event| period_of(event) == period).collect();
                let count = |kind: fn(&EventData) -> bool| here.iter().filter(|event| kind(&event.data)).count() as i64;
                let distinct = |values: Vec<String>| values.into_iter().collect::<BTreeSet<_>>().len() as i64;
                let active_now = active(period);
                let active_before = active(interval.shift(period, -1));
                let window = |end: NaiveDate| -> BTreeSet<String> {
                    (0..4).flat_map(|back| active(interval.shift(end, -back))).collect()
                };
                let (window_now, window_back) =
                    (window(period).len() as i64, window(interval.shift(period, -4)).len() as i64);
                let new = first.values().filter(|first| interval.period_start(**first) == period).count() as i64;
                let retained = active_now.intersection(&active_before).count() as i64;
                let millis: i64 = here
                    .iter()
                    .filter_map(|event| match &event.data {
                        EventData::VolunteerHoursLogged(data) => Some(millihours(data.hours)),
                        _ => None,
                    })
                    .sum();
                let meetings = count(|data| matches!(data, EventData::MeetingHeld(_)));
                let actions = count(|data| matches!(data, EventData::CollectiveActionTaken(_)));
                let citizen_led = here.iter().filter(|event| event.organisers().1).count() as i64;
                let ratio = |numerator: i64, denominator: i64| {
                    if denominator == 0 { Value::Null } else { json!(numerator as f64 / denominator as f64) }
                };
                let values: BTreeMap<Metric, Value> = [
                    (Metric::ActiveParticipants, json!(active_now.len())),
                    (Metric::NewParticipants, json!(new)),
                    (Metric::ReturningParticipants, json!(active_now.len() as i64 - new)),
                    (Metric::RetainedParticipants, json!(retained)),
                    (Metric::RetentionRate, ratio(retained, active_before.len() as i64)),
                    (Metric::Joined, json!(count(|data| matches!(data, EventData::ParticipantJoined(_))))),
                    (Metric::Meetings, json!(meetings)),
                    (
                        Metric::Attendances,
                        json!(
                            here.iter()
                                .filter(|e| matches!(e.data, EventData::MeetingHeld(_)))
                                .map(|e| e.participants().len())
                                .sum::<usize>()
                        ),
                    ),
                    (Metric::VolunteerHours, json!(millis as f64 / 1000.0)),
                    (
                        Metric::Volunteers,
                        json!(distinct(
                            here.iter()
                                .filter_map(|e| match &e.data {
                                    EventData::VolunteerHoursLogged(data) => Some(data.participant.clone()),
                                    _ => None,
                                })
                                .collect()
                        )),
                    ),
                    (
                        Metric::SocialValueGbp,
                        json!((millis as f64 * READ.volunteer_hour_value_gbp / 10.0).round() / 100.0),
                    ),
                    (Metric::CollectiveActions, json!(actions)),
                    (
                        Metric::ActionParticipants,
                        json!(distinct(
                            here.iter()
                                .filter(|e| matches!(e.data, EventData::CollectiveActionTaken(_)))
                                .flat_map(|e| e.participants().into_iter().map(str::to_owned))
                                .collect()
                        )),
                    ),
                    (
                        Metric::PeopleReached,
                        json!(
                            here.iter()
                                .filter_map(|e| match &e.data {
                                    EventData::CollectiveActionTaken(data) => Some(data.reach),
                                    _ => None,
                                })
                                .sum::<u64>()
                        ),
                    ),
                    (
                        Metric::Organisers,
                        json!(distinct(
                            here.iter().flat_map(|e| e.organisers().0.into_iter().map(str::to_owned)).collect()
                        )),
                    ),
                    (Metric::CitizenLedShare, ratio(citizen_led, meetings + actions)),
                    (
                        Metric::Partners,
                        json!(distinct(
                            here.iter().flat_map(|e| e.partners().into_iter().map(str::to_owned)).collect()
                        )),
                    ),
                    (Metric::Areas, json!(distinct(here.iter().filter_map(|e| e.area().map(str::to_owned)).collect()))),
                    (Metric::Momentum, ratio(window_now - window_back, window_back)),
                ]
                .into_iter()
                .collect();
                let mut row = serde_json::Map::new();
                row.insert("period".to_owned(), json!(period));
                for (metric, value) in values {
                    row.insert(metric.as_str().to_owned(), value);
                }
                rows.push(Value::Object(row));
            }
            let cohorts: Vec<Cohort> = periods
                .iter()
                .enumerate()
                .filter_map(|(index, &cohort)| {
                    let members: BTreeSet<&String> = first
                        .iter()
                        .filter(|(_, first)| interval.period_start(**first) == cohort)
                        .map(|(p, _)| p)
                        .collect();
                    (!members.is_empty()).then(|| Cohort {
                        cohort,
                        size: Some(members.len() as i64),
                        active: periods[index..]
                            .iter()
                            .map(|&period| Some(active(period).iter().filter(|p| members.contains(p)).count() as i64))
                            .collect(),
                    })
                })
                .collect();
            let or_null = |value: Value| if known { value } else { Value::Null };
            all.insert(format!("{movement} {interval:?} trend"), or_null(Value::Array(rows)));
            all.insert(format!("{movement} {interval:?} cohorts"), or_null(serde_json::to_value(cohorts).unwrap()));
        }
        let (from, to) = (day("2026-01-10"), day("2026-02-20"));
        let figures: Vec<PrincipleFigures> = Principle::ALL
            .iter()
            .map(|principle| {
                let tagged: Vec<&&&Event> = mine
                    .iter()
                    .filter(|e| e.principles().contains(principle) && (from..=to).contains(&local_day(e)))
                    .collect();
                let participants: BTreeSet<&str> = tagged.iter().flat_map(|e| e.participants()).collect();
                PrincipleFigures {
                    principle: *principle,
                    activities: tagged.len() as u64,
                    participants: Some(participants.len() as u64),
                }
            })
            .collect();
        let value = if known { serde_json::to_value(figures).unwrap() } else { Value::Null };
        all.insert(format!("{movement} principles"), value);
    }
    Value::Object(all)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Incremental equals batch, and repeats, late events and retractions in
    /// any order change nothing the reference would not.
    #[test]
    fn the_fold_equals_the_reference_whatever_the_order_and_repeats((events, order) in deliveries()) {
        prop_assert_eq!(read_all(&fold(&events, &order)), reference(&events));
    }

    /// Order independence, byte for byte.
    #[test]
    fn any_two_delivery_orders_give_byte_identical_results((events, order) in deliveries(), seed in any::<u64>()) {
        let mut other = order.clone();
        let length = other.len();
        for position in 0..length {
            other.swap(position, (seed as usize).wrapping_mul(position + 7919) % length);
        }
        let first = serde_json::to_string(&read_all(&fold(&events, &order))).unwrap();
        let second = serde_json::to_string(&read_all(&fold(&events, &other))).unwrap();
        prop_assert_eq!(first, second);
    }

    /// Retraction is exact: the events plus a retraction of one of them read
    /// the same as the events without it, wherever the retraction lands.
    #[test]
    fn a_retraction_reads_the_same_as_never_having_had_the_event((events, order) in deliveries(), pick in any::<usize>(), at in any::<usize>()) {
        let countable: Vec<&Event> = events.iter().filter(|e| !matches!(e.data, EventData::EventRetracted(_))).collect();
        prop_assume!(!countable.is_empty());
        let target = countable[pick % countable.len()].clone();
        // Other retractions naming the target have no effect either way:
        // with it, it is retracted anyway; without it, they wait forever.
        let without: Vec<Event> = events.iter().filter(|e| (&e.source, &e.id) != (&target.source, &target.id)).cloned().collect();
        let retraction = Event::from_json(json!({
            "specversion": "1.0", "id": "the-retraction", "source": target.source, "type": "event.retracted",
            "subject": target.subject, "time": "2026-06-01T00:00:00Z", "data": { "event_id": target.id },
        }).to_string().as_bytes()).unwrap();
        let mut with = events.clone();
        with.push(retraction);
        let mut with_order = order.clone();
        with_order.insert(at % (with_order.len() + 1), with.len() - 1);
        let without_order: Vec<usize> = (0..without.len()).collect();
        // Every figure reads the same (the movement list is not compared: the
        // retraction is itself an accepted event of its movement).
        let with_figures = read_all(&fold(&with, &with_order));
        let without_figures = read_all(&fold(&without, &without_order));
        for (key, value) in with_figures.as_object().unwrap() {
            let other = &without_figures[key];
            // A movement whose only event was the target is unknown without it.
            if !other.is_null() {
                prop_assert_eq!(value, other, "{}", key);
            }
        }
    }
}

/// An erasure of participant `person`'s pseudonym in a movement, as ingest
/// writes it.
fn build_erasure(index: usize, movement: usize, person: u8) -> Event {
    let value = json!({
        "specversion": "1.0", "id": format!("x{index}"), "source": SOURCES[0], "type": "participant.erased",
        "subject": MOVEMENTS[movement], "time": "2026-02-01T00:00:00Z",
        "data": { "pseudonyms": [pseudonym(person)] },
    });
    Event::from_json(value.to_string().as_bytes()).unwrap()
}

/// [`deliveries`], with a few erasures delivered among them.
fn deliveries_with_erasures() -> impl Strategy<Value = (Vec<Event>, Vec<usize>)> {
    let erasures = prop::collection::vec((0..MOVEMENTS.len(), 0u8..8, any::<usize>()), 0..4);
    (deliveries(), erasures).prop_map(|((mut events, mut order), erasures)| {
        for (number, (movement, person, at)) in erasures.into_iter().enumerate() {
            order.insert(at % (order.len() + 1), events.len());
            events.push(build_erasure(number, movement, person));
        }
        (events, order)
    })
}

/// Folds the deliveries both ways: with the key-value fold and into a
/// typed [`Projection`], with each delivery's outcome.
fn fold_both(events: &[Event], order: &[usize]) -> ((MemoryState, Vec<Outcome>), (Projection, Vec<Outcome>)) {
    let settings = ProjectionSettings::default();
    let (mut state, mut projection) = (MemoryState::default(), Projection::default());
    let (mut state_outcomes, mut typed_outcomes) = (Vec::new(), Vec::new());
    for (position, &index) in order.iter().enumerate() {
        let Ok(outcome) = apply(&mut state, &settings, &events[index], position as u64 + 1);
        state_outcomes.push(outcome);
        // The key-value fold keeps a copy of every event it folded, the
        // archive a retraction's target is read back from.
        let outcome = projection.apply(&settings, &events[index], position as u64 + 1, &state).unwrap();
        typed_outcomes.push(outcome);
    }
    ((state, state_outcomes), (projection, typed_outcomes))
}

/// A key-value state without what [`Projection::to_key_values`] leaves out:
/// the events' own records, the fold's copies of them, the watermark and
/// all-zero period totals.
fn comparable(state: MemoryState) -> BTreeMap<Vec<u8>, Vec<u8>> {
    state
        .entries
        .into_iter()
        .filter(|(key, value)| match key[0] {
            b'e' | b'j' | b'w' => false,
            b'p' => value.iter().any(|byte| *byte != 0),
            _ => true,
        })
        .collect()
}

proptest! {
    // Each case reads every figure of both projections: fewer cases than
    // the properties above, which read one.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_typed_fold_leaves_exactly_the_key_value_folds_state_and_reads_alike((events, order) in deliveries_with_erasures()) {
        let ((state, state_outcomes), (projection, typed_outcomes)) = fold_both(&events, &order);
        prop_assert_eq!(state_outcomes, typed_outcomes);
        prop_assert_eq!(projection.watermark(), order.len() as u64);
        prop_assert_eq!(read_all(&projection), read_all(&state));
        prop_assert_eq!(window_trends(&projection), window_trends(&state));
        // The key-value fold leaves the watermark to the store's commit.
        prop_assert_eq!(query::movements(&projection).unwrap().movements, query::movements(&state).unwrap().movements);
        prop_assert_eq!(comparable(projection.to_key_values()), comparable(state));
    }
}

/// The key-value fold's state as a store keeps it: without the statuses
/// that say only where an event is filed ([`keys::is_stored`]).
fn as_stored(state: &MemoryState) -> MemoryState {
    let mut stored = state.clone();
    stored.entries.retain(|key, value| keys::is_stored(key, value));
    stored
}

/// Writes a checkpoint into a key-value state as a store keeps it: each
/// record replaced whole, and the watermark.
fn write_checkpoint(stored: &mut MemoryState, checkpoint: Checkpoint) {
    for (name, entries) in checkpoint.records {
        if keys::is_bucket(&name) {
            stored.entries.retain(|key, _| !key.starts_with(&name));
        } else {
            stored.entries.remove(&name);
        }
        for (suffix, value) in entries.iter() {
            stored.entries.insert([name.as_slice(), suffix].concat(), value.to_vec());
        }
    }
    let Ok(()) = set_watermark(stored, checkpoint.watermark);
}

/// The event stream as the projector's archive sees it: each event's JSON
/// by the sequence it arrived at.
#[derive(Default)]
struct Stream(BTreeMap<u64, Vec<u8>>);

impl EventArchive for Stream {
    type Error = ArchiveError<std::convert::Infallible>;

    fn stored_event(&self, target: &ArchivedEvent<'_>) -> Result<Event, Self::Error> {
        target.read(self.0.get(&target.seq).map(Vec::as_slice))
    }
}

/// Folds the deliveries into a typed projection, writing a checkpoint into
/// a key-value "store" after each position in `checkpoints` and at the end,
/// and building the projection again from that store after each position
/// in `reloads` (as a restarted projector does). Retractions read their
/// targets back from the stream, never from the store.
fn fold_with_checkpoints(
    events: &[Event],
    order: &[usize],
    spacing: u64,
    checkpoints: &BTreeSet<usize>,
    reloads: &BTreeSet<usize>,
) -> (MemoryState, Projection) {
    let settings = ProjectionSettings::default();
    let (mut stored, mut projection, mut stream) = (MemoryState::default(), Projection::default(), Stream::default());
    for (position, &index) in order.iter().enumerate() {
        stream.0.insert(sequence(position, spacing), events[index].to_json());
        projection.apply(&settings, &events[index], sequence(position, spacing), &stream).unwrap();
        if checkpoints.contains(&position) || reloads.contains(&position) {
            write_checkpoint(&mut stored, projection.checkpoint());
        }
        if reloads.contains(&position) {
            projection = Projection::default();
            for (key, value) in &stored.entries {
                projection.load_entry(key, value).unwrap();
            }
        }
    }
    write_checkpoint(&mut stored, projection.checkpoint());
    (stored, projection)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn checkpoints_store_exactly_the_key_value_folds_state_and_load_back_into_the_same_projection(
        (mut events, order) in deliveries_with_erasures(),
        checkpoints in prop::collection::btree_set(0usize..70, 0..8),
        reloads in prop::collection::btree_set(0usize..70, 0..3),
        later in any::<bool>(),
        spacing in prop::sample::select(vec![1u64, 23, 300]),
    ) {
        // Stored records hold runs of 256 days; one begins on 12 August 2026.
        // Moved 200 days on, events straddle it, and a week or month can
        // start in the run before its days.
        if later {
            for event in &mut events {
                event.time += chrono::Duration::days(200);
            }
        }
        // Events are stored in records of 256 sequences: 23 apart, a record
        // fills over about 11 deliveries, checkpoints and reloads fall
        // within one, and the newest must be written again whole; 300
        // apart, every event has a record of its own.
        let (stored, projection) = fold_with_checkpoints(&events, &order, spacing, &checkpoints, &reloads);
        let mut state = fold_spaced(&events, &order, spacing);
        let watermark = order.len() as u64 * spacing;
        let Ok(()) = set_watermark(&mut state, watermark);
        prop_assert_eq!(&stored, &as_stored(&state));
        prop_assert_eq!(read_all(&projection), read_all(&state));
        let mut loaded = Projection::default();
        for (key, value) in &stored.entries {
            loaded.load_entry(key, value).unwrap();
        }
        prop_assert_eq!(loaded.checkpoint(), Checkpoint { watermark, records: Vec::new() });
        prop_assert_eq!(comparable(loaded.to_key_values()), comparable(state));
    }
}

/// A tiny deterministic generator for the large case below.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

#[test]
fn thousands_of_events_with_duplicates_retractions_and_late_arrivals_match_the_reference() {
    let mut random = Random(0x5eed_1234_abcd_0001);
    let count = 3000;
    let events: Vec<Event> = (0..count)
        .map(|index| {
            let people: Vec<u8> = (0..random.below(5)).map(|_| random.below(40) as u8).collect();
            build_event(
                index,
                random.below(5) as u8,
                random.below(2) as usize,
                random.below(3) as usize,
                random.below(100 * 24 * 60) as i64,
                &people,
                random.below(count as u64) as usize,
                random.below(256) as u8,
            )
        })
        .collect();
    // Deliveries in reverse time order (every event is late relative to the
    // one before), with a fifth of them delivered twice.
    let mut order: Vec<usize> = (0..count).collect();
    order.sort_by_key(|&index| std::cmp::Reverse(events[index].time));
    order.extend((0..count).filter(|index| index % 5 == 0));
    assert_eq!(read_all(&fold(&events, &order)), reference(&events));
    let ((state, state_outcomes), (projection, typed_outcomes)) = fold_both(&events, &order);
    assert_eq!(state_outcomes, typed_outcomes);
    assert_eq!(read_all(&projection), read_all(&state), "the typed projection reads alike");
    assert_eq!(comparable(projection.to_key_values()), comparable(state), "the typed fold agrees");
}
