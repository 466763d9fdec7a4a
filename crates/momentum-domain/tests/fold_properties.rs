//! Properties of the projection fold, checked on random event sets against
//! a small reference implementation that recomputes every figure from the
//! set of effective events.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, FixedOffset, NaiveDate};
use momentum_domain::memory::MemoryState;
use momentum_domain::projection::{ProjectionSettings, apply, millihours};
use momentum_domain::query::{TrendRequest, TrendRow, trend};
use momentum_domain::{Event, EventData, Interval};
use proptest::prelude::*;
use serde_json::json;

const MOVEMENTS: [&str; 2] = ["m1", "m2"];
const SOURCES: [&str; 2] = ["urn:s1", "urn:s2"];

/// Builds event number `index` from drawn numbers. Ids repeat across
/// sources on purpose: (source, id) is what must be unique.
fn build_event(
    index: usize,
    kind: u8,
    source: usize,
    movement: usize,
    minutes: i64,
    people: Vec<u8>,
    target: usize,
) -> Event {
    let base = DateTime::parse_from_rfc3339("2026-01-01T00:00:00+00:00").unwrap();
    let offset = FixedOffset::east_opt(if index.is_multiple_of(3) { 3600 } else { 0 }).unwrap();
    let time = (base + chrono::Duration::minutes(minutes)).with_timezone(&offset);
    let refs: Vec<String> = people.iter().map(|person| format!("p{person}")).collect();
    let first = refs.first().cloned().unwrap_or_else(|| "p0".to_owned());
    let (type_name, data) = match kind {
        0 => ("participant.joined", json!({ "participant": first, "role": "citizen" })),
        1 => ("meeting.held", json!({ "attendees": refs, "organisers": [{ "participant": "p9", "role": "citizen" }] })),
        2 => {
            ("volunteer.hours_logged", json!({ "participant": first, "hours": 0.1 * f64::from(1 + (index % 7) as u8) }))
        }
        3 => ("collective_action.taken", json!({ "participants": refs, "organisers": [], "reach": index })),
        _ => ("event.retracted", json!({ "event_id": format!("e{target}") })),
    };
    let value = json!({
        "specversion": "1.0",
        "id": format!("e{index}"),
        "source": SOURCES[source],
        "type": type_name,
        "subject": MOVEMENTS[movement],
        "time": time.to_rfc3339(),
        "data": data,
    });
    Event::from_json(value.to_string().as_bytes()).unwrap()
}

fn event_strategy(index: usize, count: usize) -> impl Strategy<Value = Event> {
    (0u8..5, 0..SOURCES.len(), 0..MOVEMENTS.len(), 0i64..(90 * 24 * 60), prop::collection::vec(0u8..6, 0..4), 0..count)
        .prop_map(move |(kind, source, movement, minutes, people, target)| {
            build_event(index, kind, source, movement, minutes, people, target)
        })
}

/// Distinct events, then a delivery order with some of them repeated.
fn deliveries() -> impl Strategy<Value = (Vec<Event>, Vec<usize>)> {
    (1usize..40).prop_flat_map(|count| {
        let events: Vec<_> = (0..count).map(|index| event_strategy(index, count)).collect();
        let repeats = prop::collection::vec(0..count, 0..10);
        (events, repeats).prop_flat_map(|(events, repeats)| {
            let order: Vec<usize> = (0..events.len()).chain(repeats).collect();
            (Just(events), Just(order).prop_shuffle())
        })
    })
}

fn fold(events: &[Event], order: &[usize]) -> MemoryState {
    let mut state = MemoryState::default();
    for (position, &index) in order.iter().enumerate() {
        let Ok(_) = apply(&mut state, &ProjectionSettings::default(), &events[index], position as u64 + 1);
    }
    state
}

fn read_all(state: &MemoryState) -> BTreeMap<(String, Interval), Vec<TrendRow>> {
    let mut trends = BTreeMap::new();
    for movement in MOVEMENTS {
        for interval in Interval::ALL {
            let request = TrendRequest {
                movement: movement.to_owned(),
                interval,
                from: NaiveDate::from_ymd_opt(2025, 12, 1).unwrap(),
                to: NaiveDate::from_ymd_opt(2026, 4, 30).unwrap(),
            };
            // A movement with no events is unknown; record it as no rows.
            let rows = trend(state, &request).map(|trend| trend.series).unwrap_or_default();
            trends.insert((movement.to_owned(), interval), rows);
        }
    }
    trends
}

/// The obviously-correct version: decide which events are effective, then
/// count each period directly.
fn reference(events: &[Event]) -> BTreeMap<(String, Interval, NaiveDate), TrendRow> {
    let by_key: BTreeMap<(&str, &str), &Event> =
        events.iter().map(|event| ((event.source.as_str(), event.id.as_str()), event)).collect();
    let mut retracted = BTreeSet::new();
    for event in events {
        if let EventData::EventRetracted(retraction) = &event.data
            && let Some(target) = by_key.get(&(event.source.as_str(), retraction.event_id.as_str()))
            && target.subject == event.subject
            && !matches!(target.data, EventData::EventRetracted(_))
        {
            retracted.insert((target.source.clone(), target.id.clone()));
        }
    }
    // Per period: the row, the distinct participants, the milli-hours.
    type Accumulator = (TrendRow, BTreeSet<String>, i64);
    let mut rows: BTreeMap<(String, Interval, NaiveDate), Accumulator> = BTreeMap::new();
    for event in events {
        if retracted.contains(&(event.source.clone(), event.id.clone())) {
            continue;
        }
        let date = event.time.with_timezone(&chrono_tz::Europe::London).date_naive();
        for interval in Interval::ALL {
            let period = interval.period_start(date);
            let (row, people, millis) = rows.entry((event.subject.clone(), interval, period)).or_insert_with(|| {
                let empty = TrendRow {
                    period,
                    active_participants: 0,
                    joined: 0,
                    meetings: 0,
                    attendances: 0,
                    volunteer_hours: 0.0,
                    collective_actions: 0,
                    people_reached: 0,
                };
                (empty, BTreeSet::new(), 0)
            });
            people.extend(event.participants().into_iter().map(str::to_owned));
            match &event.data {
                EventData::ParticipantJoined(_) => row.joined += 1,
                EventData::MeetingHeld(_) => {
                    row.meetings += 1;
                    row.attendances += event.participants().len() as i64;
                }
                EventData::VolunteerHoursLogged(data) => *millis += millihours(data.hours),
                EventData::CollectiveActionTaken(data) => {
                    row.collective_actions += 1;
                    row.people_reached += data.reach as i64;
                }
                EventData::EventRetracted(_) => {}
            }
        }
    }
    rows.into_iter()
        .map(|(key, (mut row, people, millis))| {
            row.active_participants = people.len() as i64;
            row.volunteer_hours = millis as f64 / 1000.0;
            (key, row)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn the_fold_equals_the_reference_whatever_the_order_and_repeats((events, order) in deliveries()) {
        let state = fold(&events, &order);
        let expected = reference(&events);
        for ((movement, interval), rows) in read_all(&state) {
            for row in rows {
                let want = expected.get(&(movement.clone(), interval, row.period));
                match want {
                    Some(want) => prop_assert_eq!(&row, want, "{} {:?}", movement, interval),
                    None => {
                        prop_assert_eq!(row.active_participants, 0);
                        prop_assert_eq!(row.meetings + row.collective_actions + row.joined, 0);
                        prop_assert_eq!(row.volunteer_hours, 0.0);
                    }
                }
            }
        }
    }

    #[test]
    fn any_two_delivery_orders_give_identical_results((events, order) in deliveries(), seed in any::<u64>()) {
        let mut other = order.clone();
        // A second, different permutation of the same deliveries.
        let length = other.len();
        for position in 0..length {
            let swap_with = (seed as usize).wrapping_mul(position + 7919) % length;
            other.swap(position, swap_with);
        }
        let first = serde_json::to_string(&read_all(&fold(&events, &order)).into_values().collect::<Vec<_>>()).unwrap();
        let second = serde_json::to_string(&read_all(&fold(&events, &other)).into_values().collect::<Vec<_>>()).unwrap();
        prop_assert_eq!(first, second);
    }
}
