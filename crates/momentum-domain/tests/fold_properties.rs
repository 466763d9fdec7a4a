//! Properties of the ledger's fold, checked on random event sets against a
//! small, obviously-correct reference that recomputes every figure from the
//! set of effective events, as docs/metrics.md defines them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, FixedOffset, NaiveDate};
use momentum_domain::ledger::{Checkpoint, CohortMode, Dimension, Entry, FoldSettings, Ledger, Name, millihours};
use momentum_domain::query::{
    self, Cohort, CohortRequest, DateRange, HourValueBasis, Metric, MovementId, Periods, PrincipleFigures,
    PrinciplesRequest, ReadSettings, StickinessRequest, TrendRequest, VolunteerHourValue,
};
use momentum_domain::selection::{Breakdown, Filter, FilterValue, NO_VALUE, OTHER_VALUE, ParticipantRole, Split};
use momentum_domain::{Event, EventData, Interval, Principle, Role};
use proptest::prelude::*;
use serde_json::{Value, json};

const MOVEMENTS: [&str; 3] = ["m1", "m2", "m3"];
const SOURCES: [&str; 2] = ["urn:s1", "urn:s2"];
const READ: ReadSettings =
    ReadSettings { volunteer_hour_value: VolunteerHourValue { basis: HourValueBasis::Custom, value_gbp: 12.5 } };

/// Where two reads differ first, as a path and both values; `None` when
/// they are equal. Assertions print this instead of two whole reads.
fn difference(left: &Value, right: &Value) -> Option<String> {
    match (left, right) {
        (Value::Object(l), Value::Object(r)) => l.keys().chain(r.keys()).find_map(|key| {
            difference(l.get(key).unwrap_or(&Value::Null), r.get(key).unwrap_or(&Value::Null))
                .map(|inner| format!("{key} / {inner}"))
        }),
        (Value::Array(l), Value::Array(r)) if l.len() == r.len() => l
            .iter()
            .zip(r)
            .enumerate()
            .find_map(|(index, (l, r))| difference(l, r).map(|inner| format!("[{index}] {inner}"))),
        _ if left == right => None,
        _ => Some(format!("{left} against {right}")),
    }
}

/// Asserts two reads are equal, naming where they differ.
macro_rules! assert_reads {
    ($left:expr, $right:expr) => {{
        let (left, right) = (&$left, &$right);
        if let Some(at) = difference(left, right) {
            prop_assert!(false, "reads differ at {}", at);
        }
    }};
}

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
    // A label (kind, activity or channel) on three events in four.
    let label = ["walk", "talk", "walk"].get((tags / 4 % 4) as usize).copied();
    let joined_role = ["citizen", "professional", "partner_staff"][(tags / 16 % 3) as usize];
    let (type_name, mut data) = match kind {
        0 => ("participant.joined", json!({ "participant": first, "role": joined_role, "area": area })),
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
    let label_field = ["channel", "kind", "activity", "kind"].get(usize::from(kind));
    if let (Some(label), Some(field)) = (label, label_field) {
        data[*field] = json!(label);
    }
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

/// Filters of every kind, alone and combined, some naming a value no
/// event has.
fn filters() -> impl Strategy<Value = Filter> {
    let value = |texts: &'static [&'static str]| {
        prop::option::of(prop::sample::select(texts).prop_map(|text| FilterValue::new(text).expect("a value")))
    };
    (
        value(&["north", "south", "nowhere"]),
        value(&["nhs", "council", "nobody"]),
        prop::option::of(prop::sample::select(ParticipantRole::ALL.to_vec())),
        value(&["walk", "talk", "sing"]),
    )
        .prop_map(|(area, partner, role, kind)| Filter { area, partner, role, kind, as_of_seq: None })
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

fn fold(events: &[Event], order: &[usize]) -> Ledger {
    fold_spaced(events, order, 1)
}

/// The stream sequence of the delivery at `position` when consecutive
/// deliveries are `spacing` sequences apart (a partitioned projector's
/// events are, with other partitions' events between them).
fn sequence(position: usize, spacing: u64) -> u64 {
    (position as u64 + 1) * spacing
}

fn fold_spaced(events: &[Event], order: &[usize], spacing: u64) -> Ledger {
    let mut ledger = Ledger::default();
    for (position, &index) in order.iter().enumerate() {
        ledger.apply(&FoldSettings::default(), &events[index], sequence(position, spacing));
    }
    ledger
}

/// The day the reads take as today: periods from it on are not complete.
const TODAY: &str = "2026-03-15";

const FROM: &str = "2025-12-01";
const TO: &str = "2026-05-31";

fn id(movement: &str) -> MovementId {
    MovementId::parse(movement).expect("a movement id")
}

fn periods(interval: Interval, from: &str, to: &str) -> Periods {
    Periods::new(interval, DateRange::new(day(from), day(to)).expect("a range in order")).expect("a readable range")
}

/// A trend of `movement` over `periods`, every metric, read on [`TODAY`].
fn trend_request(movement: MovementId, periods: Periods, filter: Filter, split: Option<Split>) -> TrendRequest {
    TrendRequest { movement, periods, metrics: None, filter, split, today: Some(day(TODAY)) }
}

/// The cohorts of `movement` over `periods` (mode `on`), read on [`TODAY`].
fn cohort_request(movement: MovementId, periods: Periods, filter: Filter, split: Option<Split>) -> CohortRequest {
    CohortRequest { movement, periods, mode: CohortMode::On, filter, split, today: Some(day(TODAY)) }
}

/// In every trend row: new + retained + resurrecting = active, and
/// returning = retained + resurrecting.
fn assert_lifecycle_adds_up(reads: &Value) {
    let mut rows = 0;
    for (name, trend) in reads.as_object().expect("reads by name") {
        if !name.ends_with("trend") {
            continue;
        }
        for row in trend.as_array().into_iter().flatten() {
            let count = |metric: &str| row[metric].as_i64().unwrap_or_else(|| panic!("{metric} in {row}"));
            let (active, new, returning) =
                (count("active_participants"), count("new_participants"), count("returning_participants"));
            let (retained, resurrecting) = (count("retained_participants"), count("resurrecting_participants"));
            assert_eq!(new + retained + resurrecting, active, "{name}: {row}");
            assert_eq!(retained + resurrecting, returning, "{name}: {row}");
            rows += 1;
        }
    }
    assert!(rows > 0, "there were trend rows to check");
}

/// Every read the API offers, for every movement and interval, as JSON
/// without the watermark (which counts deliveries, repeats included).
fn read_all(state: &Ledger) -> Value {
    read_all_with(state, &Filter::default())
}

/// [`read_all`], every read filtered by `filter`.
fn read_all_with(state: &Ledger, filter: &Filter) -> Value {
    let mut all = serde_json::Map::new();
    for movement in MOVEMENTS {
        for interval in Interval::ALL {
            let periods = periods(interval, FROM, TO);
            let request = trend_request(id(movement), periods, filter.clone(), None);
            let trend = query::trend(state, &request, &READ).map(|trend| serde_json::to_value(trend.series).unwrap());
            let request = cohort_request(id(movement), periods, filter.clone(), None);
            let cohorts = query::cohorts(state, &request).map(|cohorts| serde_json::to_value(cohorts.cohorts).unwrap());
            if matches!(interval, Interval::Week | Interval::Month) {
                let request = CohortRequest { mode: CohortMode::OnOrAfter, ..request.clone() };
                let read = query::cohorts(state, &request).map(|read| serde_json::to_value(read.cohorts).unwrap());
                all.insert(format!("{movement} {interval:?} cohorts on_or_after"), read.unwrap_or(Value::Null));
            }
            all.insert(format!("{movement} {interval:?} trend"), trend.unwrap_or(Value::Null));
            all.insert(format!("{movement} {interval:?} cohorts"), cohorts.unwrap_or(Value::Null));
        }
        for interval in [Interval::Week, Interval::Month] {
            let request = StickinessRequest {
                movement: id(movement),
                periods: periods(interval, FROM, TO),
                filter: filter.clone(),
                split: None,
                today: Some(day(TODAY)),
            };
            let stickiness = query::stickiness(state, &request)
                .map(|answer| json!({ "periods_active": answer.periods_active, "frequency": answer.frequency }));
            all.insert(format!("{movement} {interval:?} stickiness"), stickiness.unwrap_or(Value::Null));
        }
        let range = DateRange::new(day("2026-01-10"), day("2026-02-20")).expect("a range in order");
        let mut request = PrinciplesRequest::new(id(movement), range).expect("a readable range");
        request.filter = filter.clone();
        let read = query::principles(state, &request);
        let principles = read.as_ref().map(|p| serde_json::to_value(&p.principles).unwrap());
        all.insert(format!("{movement} principles"), principles.unwrap_or(Value::Null));
        let evidence = read.map(|p| serde_json::to_value(p.evidence).unwrap());
        all.insert(format!("{movement} evidence"), evidence.unwrap_or(Value::Null));
    }
    Value::Object(all)
}

/// Trends over a window inside the events' dates (from about a month after
/// the first to about ten weeks later), so that periods are stored before
/// and after the range read: a read must take exactly its own.
fn window_trends(state: &Ledger) -> Value {
    let mut all = serde_json::Map::new();
    for movement in MOVEMENTS {
        for interval in Interval::ALL {
            let request = trend_request(id(movement), periods(interval, WINDOW.0, WINDOW.1), Filter::default(), None);
            let trend = query::trend(state, &request, &READ).map(|trend| serde_json::to_value(trend.series).unwrap());
            all.insert(format!("{movement} {interval:?} window trend"), trend.unwrap_or(Value::Null));
        }
    }
    Value::Object(all)
}

/// The movement whose reads are split in [`split_reads`].
const SPLIT_MOVEMENT: &str = "m1";

/// The days the principles reads cover.
const PRINCIPLES_DAYS: (&str, &str) = ("2026-01-10", "2026-02-20");

/// Weekly trend, cohorts and stickiness over the whole range, and the
/// principles, of [`SPLIT_MOVEMENT`], split by `split`.
fn split_reads(state: &Ledger, split: Split) -> Value {
    let weeks = periods(Interval::Week, FROM, TO);
    let movement = id(SPLIT_MOVEMENT);
    let trend = trend_request(movement.clone(), weeks, Filter::default(), Some(split));
    let trend = query::trend(state, &trend, &READ).map(|trend| serde_json::to_value(trend.series).unwrap());
    let cohorts = cohort_request(movement.clone(), weeks, Filter::default(), Some(split));
    let cohorts = query::cohorts(state, &cohorts).map(|read| serde_json::to_value(read.cohorts).unwrap());
    let stickiness = StickinessRequest {
        movement: movement.clone(),
        periods: weeks,
        filter: Filter::default(),
        split: Some(split),
        today: Some(day(TODAY)),
    };
    let stickiness = query::stickiness(state, &stickiness)
        .map(|answer| json!({ "periods_active": answer.periods_active, "frequency": answer.frequency }));
    let range = DateRange::new(day(PRINCIPLES_DAYS.0), day(PRINCIPLES_DAYS.1)).expect("in order");
    let mut principles = PrinciplesRequest::new(movement, range).expect("a readable range");
    principles.split = Some(split);
    let principles = query::principles(state, &principles).map(|read| serde_json::to_value(read.principles).unwrap());
    let or_null = |read: Result<Value, _>| read.unwrap_or(Value::Null);
    json!({
        "trend": or_null(trend), "cohorts": or_null(cohorts),
        "stickiness": or_null(stickiness), "principles": or_null(principles),
    })
}

/// The values of `by` an event has, as split reads name them ([`NO_VALUE`]
/// for none); for a role, each of its people's.
fn values_of(view: &View, by: Breakdown) -> Vec<String> {
    let texts: Vec<String> = match by {
        Breakdown::Area => view.event.area().into_iter().map(str::to_owned).collect(),
        Breakdown::Partner => view.event.partners().into_iter().map(str::to_owned).collect(),
        Breakdown::Kind => view.kind().into_iter().map(str::to_owned).collect(),
        Breakdown::Channel => match &view.event.data {
            EventData::ParticipantJoined(data) => data.channel.clone().into_iter().collect(),
            _ => Vec::new(),
        },
        Breakdown::Principle => view.event.principles().iter().map(|principle| principle.as_str().to_owned()).collect(),
        Breakdown::Role => {
            let people: BTreeSet<&String> =
                view.participants.iter().chain(&view.volunteer).chain(&view.joined).collect();
            return people
                .into_iter()
                .filter_map(|person| view.role_of(person))
                .map(|r| r.as_str().to_owned())
                .collect();
        }
    };
    if texts.is_empty() { vec![NO_VALUE.to_owned()] } else { texts }
}

/// The values a split keeps, as docs/metrics.md defines them: the `top`
/// with the most volume on the days from `from` to `to`, most first, ties
/// in name order; and whether any other value had volume.
fn ranked(views: &[View], by: Breakdown, top: usize, from: NaiveDate, to: NaiveDate) -> (Vec<String>, bool) {
    let mut volumes: BTreeMap<String, u64> = BTreeMap::new();
    for view in views.iter().filter(|view| (from..=to).contains(&view.day)) {
        for value in values_of(view, by) {
            *volumes.entry(value).or_default() += 1;
        }
    }
    let mut ranked: Vec<(String, u64)> = volumes.into_iter().collect();
    ranked.sort_by(|left, right| right.1.cmp(&left.1).then_with(|| left.0.cmp(&right.0)));
    let other = ranked.len() > top;
    (ranked.into_iter().take(top).map(|(value, _)| value).collect(), other)
}

/// `keep`, as [`reference_of`] takes it: a closure's types say so only
/// through a function's bounds.
fn keeper<F: for<'e> Fn(View<'e>) -> Option<View<'e>>>(keep: F) -> F {
    keep
}

/// What [`split_reads`] reads, from the reference: each kept value's reads
/// over the events with that value (for a role, its people), then those of
/// [`OTHER_VALUE`] over the events with a value not kept, row by row.
fn split_reference(events: &[Event], order: &[usize], split: Split) -> Value {
    let by = split.by();
    if !order.iter().any(|index| events[*index].subject == SPLIT_MOVEMENT) {
        return json!({ "trend": null, "cohorts": null, "stickiness": null, "principles": null });
    }
    let views: Vec<View> = effective(events, order)
        .into_iter()
        .filter(|(event, _)| event.subject == SPLIT_MOVEMENT)
        .map(|(event, erased)| View::of(event, &erased))
        .collect();
    let cells = |from: &str, to: &str| -> Vec<(String, Value)> {
        let (kept, other) = ranked(&views, by, split.top(), day(from), day(to));
        let mut names: Vec<String> = kept.clone();
        if other {
            names.push(OTHER_VALUE.to_owned());
        }
        names
            .into_iter()
            .map(|name| {
                let keep = keeper(|view| {
                    let is_kept = |value: &str| kept.iter().any(|kept| kept == value);
                    let wanted = |value: &str| if name == OTHER_VALUE { !is_kept(value) } else { value == name };
                    if view.event.subject != SPLIT_MOVEMENT {
                        return None;
                    }
                    if by == Breakdown::Role {
                        return view.narrowed(|role| wanted(role.as_str()));
                    }
                    values_of(&view, by).iter().any(|value| wanted(value)).then_some(view)
                });
                let reads = reference_of(events, order, &keep);
                (name, reads)
            })
            .collect()
    };
    // Each cell's rows with the split's field, interleaved: by the row's
    // key, then the cells in order.
    let rows = |cells: &[(String, Value)], read: &str, key: &str| -> Value {
        let mut rows: Vec<(String, usize, Value)> = Vec::new();
        for (name, reads) in cells {
            for (index, row) in reads[read].as_array().expect("rows").iter().enumerate() {
                let mut row = row.clone();
                row[by.as_str()] = json!(name);
                let sort = if key.is_empty() { format!("{index:05}") } else { row[key].to_string() };
                rows.push((sort, 0, row));
            }
        }
        // A stable sort keeps the cells' order within a key.
        rows.sort_by(|left, right| left.0.cmp(&right.0));
        Value::Array(rows.into_iter().map(|(_, _, row)| row).collect())
    };
    let whole = cells(FROM, TO);
    let stickiness: Vec<(String, Value)> = whole
        .iter()
        .map(|(name, reads)| (name.clone(), reads[format!("{SPLIT_MOVEMENT} Week stickiness")].clone()))
        .collect();
    // A stickiness table's rows: each cell's, by the count (a stable sort
    // keeps the cells' order among equal counts).
    let table = |name: &str, key: &str| {
        let mut rows: Vec<Value> = Vec::new();
        for (value, read) in &stickiness {
            for row in read[name].as_array().expect("rows") {
                let mut row = row.clone();
                row[by.as_str()] = json!(value);
                rows.push(row);
            }
        }
        rows.sort_by_key(|row| row[key].as_u64());
        Value::Array(rows)
    };
    let principles = cells(PRINCIPLES_DAYS.0, PRINCIPLES_DAYS.1);
    json!({
        "trend": rows(&whole, &format!("{SPLIT_MOVEMENT} Week trend"), ""),
        "cohorts": rows(&whole, &format!("{SPLIT_MOVEMENT} Week cohorts"), "cohort"),
        "stickiness": {
            "periods_active": table("periods_active", "periods"),
            "frequency": table("frequency", "activities"),
        },
        "principles": rows(&principles, &format!("{SPLIT_MOVEMENT} principles"), ""),
    })
}

/// The window [`window_trends`] reads.
const WINDOW: (&str, &str) = ("2026-02-01", "2026-03-10");

/// Trends and cohorts over [`WINDOW`], filtered by `filter`: events before
/// the window decide who is new in it.
fn window_reads(state: &Ledger, filter: &Filter) -> Value {
    let mut all = serde_json::Map::new();
    for movement in MOVEMENTS {
        for interval in [Interval::Day, Interval::Week, Interval::Month] {
            let periods = periods(interval, WINDOW.0, WINDOW.1);
            let request = trend_request(id(movement), periods, filter.clone(), None);
            let trend = query::trend(state, &request, &READ).map(|trend| serde_json::to_value(trend.series).unwrap());
            let request = cohort_request(id(movement), periods, filter.clone(), None);
            let cohorts = query::cohorts(state, &request).map(|read| serde_json::to_value(read.cohorts).unwrap());
            all.insert(format!("{movement} {interval:?} trend"), trend.unwrap_or(Value::Null));
            all.insert(format!("{movement} {interval:?} cohorts"), cohorts.unwrap_or(Value::Null));
        }
    }
    Value::Object(all)
}

/// What [`window_reads`] reads, taken from the reads of the whole range:
/// a trend's rows in the window, and the window's cohorts with their
/// activity up to its end.
fn window_of(reads: &Value) -> Value {
    let mut all = serde_json::Map::new();
    for movement in MOVEMENTS {
        for interval in [Interval::Day, Interval::Week, Interval::Month] {
            let starts: Vec<NaiveDate> = periods(interval, WINDOW.0, WINDOW.1).starts();
            let inside = |row: &Value, field: &str| {
                starts.contains(&serde_json::from_value::<NaiveDate>(row[field].clone()).expect("a date"))
            };
            let trend = &reads[format!("{movement} {interval:?} trend")];
            let trend = trend.as_array().map_or(Value::Null, |rows| {
                Value::Array(rows.iter().filter(|row| inside(row, "period")).cloned().collect())
            });
            let cohorts = &reads[format!("{movement} {interval:?} cohorts")];
            let cohorts = cohorts.as_array().map_or(Value::Null, |rows| {
                let mut kept = Vec::new();
                for row in rows.iter().filter(|row| inside(row, "cohort")) {
                    let mut row = row.clone();
                    let offset = starts.iter().position(|start| json!(start) == row["cohort"]).expect("inside");
                    for column in ["active", "shares"] {
                        row[column].as_array_mut().expect("an array").truncate(starts.len() - offset);
                    }
                    kept.push(row);
                }
                Value::Array(kept)
            });
            all.insert(format!("{movement} {interval:?} trend"), trend);
            all.insert(format!("{movement} {interval:?} cohorts"), cohorts);
        }
    }
    Value::Object(all)
}

/// The effective events: each (source, id) once, minus those named by a
/// retraction of the same source and movement (retractions never count,
/// nor do erasures). Each with the pseudonyms erased in its movement before
/// its first delivery: they are left out of its people.
fn effective<'e>(events: &'e [Event], order: &[usize]) -> Vec<(&'e Event, BTreeSet<&'e str>)> {
    let delivered: Vec<&Event> = order.iter().map(|index| &events[*index]).collect();
    let by_key: BTreeMap<(&str, &str), &Event> =
        delivered.iter().map(|event| ((event.source.as_str(), event.id.as_str()), *event)).collect();
    let mut retracted = BTreeSet::new();
    for event in &delivered {
        if let EventData::EventRetracted(retraction) = &event.data
            && let Some(target) = by_key.get(&(event.source.as_str(), retraction.event_id.as_str()))
            && target.subject == event.subject
            && !matches!(target.data, EventData::EventRetracted(_) | EventData::ParticipantErased(_))
        {
            retracted.insert((target.source.as_str(), target.id.as_str()));
        }
    }
    let mut erased: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut kept = Vec::new();
    for &index in order {
        let event = &events[index];
        if !seen.insert((event.source.as_str(), event.id.as_str())) {
            continue;
        }
        let erased_here = erased.entry(event.subject.as_str()).or_default();
        match &event.data {
            EventData::ParticipantErased(erasure) => erased_here.extend(erasure.pseudonyms.iter().map(String::as_str)),
            EventData::EventRetracted(_) => {}
            _ if retracted.contains(&(event.source.as_str(), event.id.as_str())) => {}
            _ => kept.push((event, erased_here.clone())),
        }
    }
    kept
}

fn local_day(event: &Event) -> NaiveDate {
    event.time.with_timezone(&chrono_tz::Europe::London).date_naive()
}

/// What the reference reads of one effective event: its people without
/// those erased before it arrived.
struct View<'e> {
    event: &'e Event,
    day: NaiveDate,
    participants: Vec<String>,
    organisers: Vec<String>,
    volunteer: Option<String>,
    /// A sign-up's participant.
    joined: Option<String>,
}

impl<'e> View<'e> {
    fn of(event: &'e Event, erased: &BTreeSet<&str>) -> View<'e> {
        let keep = |refs: Vec<&str>| refs.into_iter().filter(|r| !erased.contains(r)).map(str::to_owned).collect();
        let kept = |participant: &String| (!erased.contains(participant.as_str())).then(|| participant.clone());
        let (volunteer, joined) = match &event.data {
            EventData::VolunteerHoursLogged(data) => (kept(&data.participant), None),
            EventData::ParticipantJoined(data) => (None, kept(&data.participant)),
            _ => (None, None),
        };
        View {
            event,
            day: local_day(event),
            participants: keep(event.participants()),
            organisers: keep(event.organisers().0),
            volunteer,
            joined,
        }
    }

    fn is(&self, kind: fn(&EventData) -> bool) -> bool {
        kind(&self.event.data)
    }

    /// A meeting's or action's kind, or an hour log's activity.
    fn kind(&self) -> Option<&str> {
        match &self.event.data {
            EventData::MeetingHeld(data) => data.kind.as_deref(),
            EventData::VolunteerHoursLogged(data) => data.activity.as_deref(),
            EventData::CollectiveActionTaken(data) => data.kind.as_deref(),
            _ => None,
        }
    }

    /// The part each person had, as docs/metrics.md defines role: an
    /// organiser's first role named, over any other part.
    fn role_of(&self, person: &str) -> Option<ParticipantRole> {
        let organisers = match &self.event.data {
            EventData::MeetingHeld(data) => data.organisers.as_slice(),
            EventData::CollectiveActionTaken(data) => data.organisers.as_slice(),
            EventData::VolunteerHoursLogged(_) => return Some(ParticipantRole::Volunteer),
            EventData::ParticipantJoined(data) => return Some(role(data.role)),
            _ => return None,
        };
        if let Some(organiser) = organisers.iter().find(|organiser| organiser.participant == person) {
            return Some(role(organiser.role));
        }
        match &self.event.data {
            EventData::MeetingHeld(_) => Some(ParticipantRole::Attendee),
            _ => Some(ParticipantRole::ActionParticipant),
        }
    }

    /// The event as a read filtered by `filter` sees it: `None` when it
    /// does not match, and with only the people of the role filtered by.
    fn filtered(self, filter: &Filter) -> Option<View<'e>> {
        let text = |value: &Option<FilterValue>| value.as_ref().map(|value| value.as_str().to_owned());
        if text(&filter.area).is_some_and(|area| self.event.area() != Some(area.as_str())) {
            return None;
        }
        if text(&filter.partner).is_some_and(|partner| !self.event.partners().contains(&partner.as_str())) {
            return None;
        }
        if text(&filter.kind).is_some_and(|kind| self.kind() != Some(kind.as_str())) {
            return None;
        }
        let Some(wanted) = filter.role else { return Some(self) };
        self.narrowed(|role| role == wanted)
    }

    /// The event with only the people whose role passes `wanted`; `None`
    /// when nobody does.
    fn narrowed(mut self, wanted: impl Fn(ParticipantRole) -> bool) -> Option<View<'e>> {
        let has = |view: &View, person: &String| view.role_of(person).is_some_and(&wanted);
        let participants = self.participants.iter().filter(|p| has(&self, p)).cloned().collect();
        let organisers = self.organisers.iter().filter(|p| has(&self, p)).cloned().collect();
        let volunteer = self.volunteer.clone().filter(|p| has(&self, p));
        let joined = self.joined.clone().filter(|p| has(&self, p));
        (self.participants, self.organisers, self.volunteer, self.joined) =
            (participants, organisers, volunteer, joined);
        (!self.participants.is_empty() || self.volunteer.is_some() || self.joined.is_some()).then_some(self)
    }
}

fn role(role: Role) -> ParticipantRole {
    match role {
        Role::Citizen => ParticipantRole::Citizen,
        Role::Professional => ParticipantRole::Professional,
        Role::PartnerStaff => ParticipantRole::PartnerStaff,
    }
}

/// Whether the period starting at `start` is over on [`TODAY`]: its last
/// day is before today.
fn complete(interval: Interval, start: NaiveDate) -> bool {
    interval.shift(start, 1).pred_opt().expect("a day before") < day(TODAY)
}

/// The principles' evidence over the events `mine` from `from` to `to`,
/// as docs/metrics.md defines each indicator; `first` is each person's
/// first participation.
fn evidence_reference(mine: &[&View], first: &BTreeMap<&str, NaiveDate>, from: NaiveDate, to: NaiveDate) -> Value {
    let activity = |view: &&&View| !matches!(view.event.data, EventData::ParticipantJoined(_));
    let here: Vec<&&View> = mine.iter().filter(|view| (from..=to).contains(&view.day)).filter(activity).collect();
    let is = |view: &&View, kind: fn(&EventData) -> bool| kind(&view.event.data);
    let meetings = here.iter().filter(|v| is(v, |data| matches!(data, EventData::MeetingHeld(_)))).count() as i64;
    let actions =
        here.iter().filter(|v| is(v, |data| matches!(data, EventData::CollectiveActionTaken(_)))).count() as i64;
    let citizen_led = here.iter().filter(|v| v.event.organisers().1).count() as i64;
    let with_partner = here.iter().filter(|v| !v.event.partners().is_empty()).count() as i64;
    let partners: BTreeSet<&str> = here.iter().flat_map(|v| v.event.partners()).collect();
    let with_area = here.iter().filter(|v| v.event.area().is_some()).count() as i64;
    let areas: BTreeSet<&str> = here.iter().filter_map(|v| v.event.area()).collect();
    let attendances: usize = here
        .iter()
        .filter(|v| is(v, |data| matches!(data, EventData::MeetingHeld(_))))
        .map(|v| v.participants.len())
        .sum();
    let mut weeks: BTreeMap<&str, BTreeSet<NaiveDate>> = BTreeMap::new();
    for view in &here {
        for person in &view.participants {
            weeks.entry(person.as_str()).or_default().insert(Interval::Week.period_start(view.day));
        }
    }
    let participants = weeks.len() as i64;
    let repeat = weeks.values().filter(|weeks| weeks.len() >= 2).count() as i64;
    let new = weeks.keys().filter(|person| (from..=to).contains(&first[**person])).count() as i64;
    let organisers: BTreeSet<&str> = here.iter().flat_map(|v| v.organisers.iter().map(String::as_str)).collect();
    let citizen_organisers: BTreeSet<&str> = here
        .iter()
        .flat_map(|v| {
            v.organisers.iter().filter(|o| v.role_of(o) == Some(ParticipantRole::Citizen)).map(String::as_str)
        })
        .collect();
    // Momentum of the week of `to`: distinct participants of its four
    // weeks against those of the four weeks four before.
    let week_of_to = Interval::Week.period_start(to);
    let window = |end: NaiveDate| -> usize {
        let start = Interval::Week.shift(end, -3);
        let people: BTreeSet<&str> = mine
            .iter()
            .filter(|v| (start..Interval::Week.next_period(end)).contains(&v.day))
            .flat_map(|v| v.participants.iter().map(String::as_str))
            .collect();
        people.len()
    };
    let (now, before) = (window(week_of_to) as i64, window(Interval::Week.shift(week_of_to, -4)) as i64);
    let ratio = |numerator: i64, denominator: i64| {
        if denominator == 0 { Value::Null } else { json!(numerator as f64 / denominator as f64) }
    };
    let share = |principle: &str, indicator: &str, numerator: i64, denominator: i64| {
        json!({ "principle": principle, "indicator": indicator, "value": ratio(numerator, denominator),
                "numerator": numerator, "denominator": denominator })
    };
    let count = |principle: &str, indicator: &str, count: i64| json!({ "principle": principle, "indicator": indicator, "value": count, "numerator": count, "denominator": null });
    json!([
        count("mobilise_citizens", "new_participants", new),
        share("shift_control", "citizen_organiser_share", citizen_organisers.len() as i64, organisers.len() as i64),
        share("collaborate_widely", "partnered_activity_share", with_partner, here.len() as i64),
        count("collaborate_widely", "distinct_partners", partners.len() as i64),
        share("share_power", "citizen_led_share", citizen_led, meetings + actions),
        share("change_culture", "repeat_participant_share", repeat, participants),
        share("grow_from_local", "local_activity_share", with_area, here.len() as i64),
        count("grow_from_local", "distinct_areas", areas.len() as i64),
        { "principle": "build_momentum", "indicator": "momentum",
          "value": if before == 0 { Value::Null } else { ratio(now - before, before) },
          "numerator": now, "denominator": before },
        share("bring_people_together", "attendances_per_meeting", attendances as i64, meetings),
    ])
}

/// Recomputes everything `read_all` reads, straight from the definitions.
fn reference(events: &[Event], order: &[usize]) -> Value {
    reference_with(events, order, &Filter::default())
}

/// [`reference`] of the reads filtered by `filter`: the same definitions
/// over the events that match, with only the people of the role asked for.
fn reference_with(events: &[Event], order: &[usize], filter: &Filter) -> Value {
    reference_of(events, order, &|view| view.filtered(filter))
}

/// [`reference`] of the events as `keep` sees them: `None` for those it
/// leaves out.
fn reference_of(events: &[Event], order: &[usize], keep: &dyn Fn(View) -> Option<View>) -> Value {
    let effective: Vec<View> =
        effective(events, order).into_iter().filter_map(|(event, erased)| keep(View::of(event, &erased))).collect();
    let mut all = serde_json::Map::new();
    for movement in MOVEMENTS {
        let mine: Vec<&View> = effective.iter().filter(|view| view.event.subject == movement).collect();
        let known = order.iter().any(|index| events[*index].subject == movement);
        let mut first: BTreeMap<&str, NaiveDate> = BTreeMap::new();
        for view in &mine {
            for participant in &view.participants {
                let entry = first.entry(participant).or_insert(view.day);
                *entry = (*entry).min(view.day);
            }
        }
        for interval in Interval::ALL {
            let active = |period: NaiveDate| -> BTreeSet<&str> {
                mine.iter()
                    .filter(|view| interval.period_start(view.day) == period)
                    .flat_map(|view| view.participants.iter().map(String::as_str))
                    .collect()
            };
            let periods: Vec<NaiveDate> = interval.periods(day(FROM), day(TO)).collect();
            let mut rows = Vec::new();
            for &period in &periods {
                let here: Vec<&&View> = mine.iter().filter(|view| interval.period_start(view.day) == period).collect();
                let count = |kind: fn(&EventData) -> bool| here.iter().filter(|view| view.is(kind)).count() as i64;
                let distinct = |values: Vec<&str>| values.into_iter().collect::<BTreeSet<_>>().len() as i64;
                let active_now = active(period);
                let active_before = active(interval.shift(period, -1));
                let window = |end: NaiveDate| -> BTreeSet<&str> {
                    (0..4).flat_map(|back| active(interval.shift(end, -back))).collect()
                };
                let (window_now, window_back) =
                    (window(period).len() as i64, window(interval.shift(period, -4)).len() as i64);
                let new = first.values().filter(|first| interval.period_start(**first) == period).count() as i64;
                let retained = active_now.intersection(&active_before).count() as i64;
                // Active now, not in the period before, and first active
                // before this period: so in some period before that one.
                let resurrecting = active_now
                    .iter()
                    .filter(|person| !active_before.contains(*person) && interval.period_start(first[*person]) < period)
                    .count() as i64;
                let dormant = active_before.difference(&active_now).count() as i64;
                let millis: i64 = here
                    .iter()
                    .filter_map(|view| match &view.event.data {
                        EventData::VolunteerHoursLogged(data) => Some(millihours(data.hours)),
                        _ => None,
                    })
                    .sum();
                let is_meeting = |data: &EventData| matches!(data, EventData::MeetingHeld(_));
                let is_action = |data: &EventData| matches!(data, EventData::CollectiveActionTaken(_));
                let meetings = count(is_meeting);
                let actions = count(is_action);
                let citizen_led = here.iter().filter(|view| view.event.organisers().1).count() as i64;
                let ratio = |numerator: i64, denominator: i64| {
                    if denominator == 0 { Value::Null } else { json!(numerator as f64 / denominator as f64) }
                };
                let values: BTreeMap<Metric, Value> = [
                    (Metric::ActiveParticipants, json!(active_now.len())),
                    (Metric::NewParticipants, json!(new)),
                    (Metric::ReturningParticipants, json!(active_now.len() as i64 - new)),
                    (Metric::RetainedParticipants, json!(retained)),
                    (Metric::ResurrectingParticipants, json!(resurrecting)),
                    (Metric::DormantParticipants, json!(dormant)),
                    (Metric::RetentionRate, ratio(retained, active_before.len() as i64)),
                    (Metric::Pulse, ratio(new + resurrecting, dormant)),
                    (Metric::Joined, json!(count(|data| matches!(data, EventData::ParticipantJoined(_))))),
                    (Metric::Meetings, json!(meetings)),
                    (
                        Metric::Attendances,
                        json!(here.iter().filter(|v| v.is(is_meeting)).map(|v| v.participants.len()).sum::<usize>()),
                    ),
                    (Metric::VolunteerHours, json!(millis as f64 / 1000.0)),
                    (Metric::Volunteers, json!(distinct(here.iter().filter_map(|v| v.volunteer.as_deref()).collect()))),
                    (
                        Metric::SocialValueGbp,
                        json!((millis as f64 * READ.volunteer_hour_value.value_gbp / 10.0).round() / 100.0),
                    ),
                    (Metric::CollectiveActions, json!(actions)),
                    (
                        Metric::ActionParticipants,
                        json!(distinct(
                            here.iter()
                                .filter(|v| v.is(is_action))
                                .flat_map(|v| v.participants.iter().map(String::as_str))
                                .collect()
                        )),
                    ),
                    (
                        Metric::PeopleReached,
                        json!(
                            here.iter()
                                .filter_map(|v| match &v.event.data {
                                    EventData::CollectiveActionTaken(data) => Some(data.reach),
                                    _ => None,
                                })
                                .sum::<u64>()
                        ),
                    ),
                    (
                        Metric::Organisers,
                        json!(distinct(here.iter().flat_map(|v| v.organisers.iter().map(String::as_str)).collect())),
                    ),
                    (Metric::CitizenLedShare, ratio(citizen_led, meetings + actions)),
                    (Metric::Partners, json!(distinct(here.iter().flat_map(|v| v.event.partners()).collect()))),
                    (Metric::Areas, json!(distinct(here.iter().filter_map(|v| v.event.area()).collect()))),
                    (Metric::Momentum, ratio(window_now - window_back, window_back)),
                ]
                .into_iter()
                .collect();
                let mut row = serde_json::Map::new();
                row.insert("period".to_owned(), json!(period));
                row.insert("label".to_owned(), json!(interval.label(period)));
                row.insert("complete".to_owned(), json!(complete(interval, period)));
                for (metric, value) in values {
                    row.insert(metric.as_str().to_owned(), value);
                }
                rows.push(Value::Object(row));
            }
            // Members active in a period (`on`), or in it or a later one in
            // range (`on_or_after`).
            let cohorts = |or_after: bool| -> Vec<Cohort> {
                periods
                    .iter()
                    .enumerate()
                    .filter_map(|(index, &cohort)| {
                        let members: BTreeSet<&str> = first
                            .iter()
                            .filter(|(_, first)| interval.period_start(**first) == cohort)
                            .map(|(p, _)| *p)
                            .collect();
                        let counted = |at: usize| -> i64 {
                            let later = if or_after { &periods[at..] } else { &periods[at..=at] };
                            members
                                .iter()
                                .filter(|member| later.iter().any(|period| active(*period).contains(*member)))
                                .count() as i64
                        };
                        let active: Vec<i64> = (index..periods.len()).map(counted).collect();
                        (!members.is_empty()).then(|| Cohort {
                            cohort,
                            label: interval.label(cohort),
                            complete: Some(complete(interval, cohort)),
                            split: None,
                            size: Some(members.len() as i64),
                            shares: active.iter().map(|count| Some(*count as f64 / members.len() as f64)).collect(),
                            active: active.into_iter().map(Some).collect(),
                        })
                    })
                    .collect()
            };
            let or_null = |value: Value| if known { value } else { Value::Null };
            all.insert(format!("{movement} {interval:?} trend"), or_null(Value::Array(rows)));
            all.insert(
                format!("{movement} {interval:?} cohorts"),
                or_null(serde_json::to_value(cohorts(false)).unwrap()),
            );
            if matches!(interval, Interval::Week | Interval::Month) {
                let on_or_after = serde_json::to_value(cohorts(true)).unwrap();
                all.insert(format!("{movement} {interval:?} cohorts on_or_after"), or_null(on_or_after));
            }
        }
        // Stickiness, from its definition: per person, the window's periods
        // they took part in and their activities in it.
        for interval in [Interval::Week, Interval::Month] {
            let window: Vec<NaiveDate> = interval.periods(day(FROM), day(TO)).collect();
            let mut seen: BTreeMap<&str, (BTreeSet<NaiveDate>, u64)> = BTreeMap::new();
            for view in mine.iter().filter(|view| window.contains(&interval.period_start(view.day))) {
                for person in view.participants.iter().collect::<BTreeSet<_>>() {
                    let (periods, activities) = seen.entry(person.as_str()).or_default();
                    periods.insert(interval.period_start(view.day));
                    *activities += 1;
                }
            }
            let mut by_periods = vec![0i64; window.len()];
            let mut frequency: BTreeMap<u64, i64> = BTreeMap::new();
            for (periods, activities) in seen.values() {
                by_periods[periods.len() - 1] += 1;
                *frequency.entry(*activities).or_default() += 1;
            }
            let stickiness = json!({
                "periods_active": by_periods.iter().enumerate().map(|(index, count)| json!({ "periods": index + 1, "participants": count })).collect::<Vec<_>>(),
                "frequency": frequency.iter().map(|(activities, count)| json!({ "activities": activities, "participants": count })).collect::<Vec<_>>(),
            });
            all.insert(format!("{movement} {interval:?} stickiness"), if known { stickiness } else { Value::Null });
        }
        let (from, to) = (day("2026-01-10"), day("2026-02-20"));
        let figures: Vec<PrincipleFigures> = Principle::ALL
            .iter()
            .map(|principle| {
                let tagged: Vec<&&View> = mine
                    .iter()
                    .filter(|v| v.event.principles().contains(principle) && (from..=to).contains(&v.day))
                    .collect();
                let participants: BTreeSet<&str> =
                    tagged.iter().flat_map(|v| v.participants.iter().map(String::as_str)).collect();
                PrincipleFigures {
                    principle: *principle,
                    split: None,
                    activities: tagged.len() as u64,
                    participants: Some(participants.len() as u64),
                }
            })
            .collect();
        let value = if known { serde_json::to_value(figures).unwrap() } else { Value::Null };
        all.insert(format!("{movement} principles"), value);
        let evidence = evidence_reference(&mine, &first, from, to);
        all.insert(format!("{movement} evidence"), if known { evidence } else { Value::Null });
    }
    Value::Object(all)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Incremental equals batch, and repeats, late events and retractions in
    /// any order change nothing the reference would not. Every figure is
    /// also read halfway, so that answers kept from then must not outlive
    /// the changes after.
    #[test]
    fn the_fold_equals_the_reference_whatever_the_order_and_repeats((events, order) in deliveries(), half in any::<usize>()) {
        let mut ledger = Ledger::default();
        let half = half % (order.len() + 1);
        for (position, &index) in order.iter().enumerate() {
            if position == half {
                assert_reads!(read_all(&ledger), reference(&events, &order[..half]));
                assert_reads!(window_trends(&ledger), window_trends(&fold(&events, &order[..half])));
            }
            ledger.apply(&FoldSettings::default(), &events[index], position as u64 + 1);
        }
        assert_reads!(read_all(&ledger), reference(&events, &order));
        assert_reads!(window_trends(&ledger), window_trends(&fold(&events, &order)));
        assert_lifecycle_adds_up(&read_all(&ledger));
    }

    /// A filtered read is the same read over the events that match, with
    /// only the people of the role filtered by.
    #[test]
    fn a_filtered_read_equals_the_reference_over_the_events_that_match((events, order) in deliveries(), filter in filters()) {
        let ledger = fold(&events, &order);
        let reference = reference_with(&events, &order, &filter);
        assert_reads!(read_all_with(&ledger, &filter), reference);
        assert_reads!(window_reads(&ledger, &filter), window_of(&reference));
    }

    /// A split read's rows are the reads over each kept value's events
    /// (for a role, its people), then over the events with a value not
    /// kept, ranked by volume.
    #[test]
    fn a_split_read_equals_the_reference_of_each_value((events, order) in deliveries(), by in prop::sample::select(Breakdown::ALL.to_vec()), top in 1usize..4) {
        let split = Split::new(by, top).expect("a split");
        assert_reads!(split_reads(&fold(&events, &order), split), split_reference(&events, &order, split));
    }

    /// A read as of sequence N gives the figures of the projection folded
    /// only up to N: later events, retractions and erasures left out.
    #[test]
    fn a_read_as_of_a_sequence_equals_the_projection_folded_up_to_it((events, order) in deliveries_with_erasures(), cut in any::<usize>(), filter in filters()) {
        let cut = cut % (order.len() + 1);
        let whole = fold(&events, &order);
        let then = fold(&events, &order[..cut]);
        let as_of = Filter { as_of_seq: Some(sequence(cut, 1) - 1), ..filter.clone() };
        assert_reads!(read_all_with(&whole, &as_of), read_all_with(&then, &filter));
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

/// A store as `momentum-store` keeps a ledger: names by (movement,
/// dimension, number), a person's removed when they are erased, the erased
/// pseudonyms, the entries in order and the watermark, each checkpoint
/// appended whole.
#[derive(Default)]
struct Stored {
    names: BTreeMap<(u32, Dimension, u32), Box<str>>,
    erased: BTreeSet<(u32, Box<str>)>,
    entries: Vec<Entry>,
    watermark: u64,
}

impl Stored {
    fn append(&mut self, checkpoint: Checkpoint) {
        for name in checkpoint.names {
            self.names.insert((name.movement, name.dimension, name.number), name.text);
        }
        for erased in checkpoint.erased {
            if let Some(person) = erased.person {
                self.names.remove(&(erased.movement, Dimension::Person, person));
            }
            self.erased.insert((erased.movement, erased.pseudonym));
        }
        self.entries.extend(checkpoint.entries);
        self.watermark = checkpoint.watermark;
    }

    /// A ledger loaded from the store: movements named first, then the
    /// other names, the erased pseudonyms, the entries and the watermark.
    fn load(&self) -> Ledger {
        let mut ledger = Ledger::default();
        let names = self.names.iter().map(|((movement, dimension, number), text)| Name {
            movement: *movement,
            dimension: *dimension,
            number: *number,
            text: text.clone(),
        });
        let (movements, others): (Vec<Name>, Vec<Name>) = names.partition(|name| name.dimension == Dimension::Movement);
        let mut movements = movements;
        movements.sort_by_key(|name| name.number);
        for name in movements.iter().chain(&others) {
            ledger.restore_name(name).unwrap();
        }
        for (movement, pseudonym) in &self.erased {
            ledger.restore_erased(*movement, pseudonym).unwrap();
        }
        for entry in &self.entries {
            ledger.replay(entry).unwrap();
        }
        ledger.restore_watermark(self.watermark).unwrap();
        ledger
    }
}

/// Folds the deliveries, appending a checkpoint to a store after each
/// position in `checkpoints` and at the end, and loading the ledger again
/// from the store after each position in `reloads` (as a restarted
/// projector does).
fn fold_with_checkpoints(
    events: &[Event],
    order: &[usize],
    spacing: u64,
    checkpoints: &BTreeSet<usize>,
    reloads: &BTreeSet<usize>,
) -> (Stored, Ledger) {
    let settings = FoldSettings::default();
    let (mut stored, mut ledger) = (Stored::default(), Ledger::default());
    for (position, &index) in order.iter().enumerate() {
        ledger.apply(&settings, &events[index], sequence(position, spacing));
        if checkpoints.contains(&position) || reloads.contains(&position) {
            stored.append(ledger.checkpoint());
        }
        if reloads.contains(&position) {
            ledger = stored.load();
        }
    }
    stored.append(ledger.checkpoint());
    (stored, ledger)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Erased people stay counted where they were counted (published
    /// figures do not move) and are left out of what arrives after.
    #[test]
    fn with_erasures_the_fold_equals_the_reference((events, order) in deliveries_with_erasures()) {
        assert_reads!(read_all(&fold(&events, &order)), reference(&events, &order));
    }

    #[test]
    fn checkpoints_load_back_into_the_same_ledger_and_keep_no_erased_pseudonym_linked(
        (events, order) in deliveries_with_erasures(),
        checkpoints in prop::collection::btree_set(0usize..70, 0..8),
        reloads in prop::collection::btree_set(0usize..70, 0..3),
        spacing in prop::sample::select(vec![1u64, 23, 300]),
    ) {
        let (stored, ledger) = fold_with_checkpoints(&events, &order, spacing, &checkpoints, &reloads);
        let whole = fold_spaced(&events, &order, spacing);
        prop_assert!(ledger == whole, "checkpoints and reloads changed the ledger");
        prop_assert_eq!(ledger.watermark(), order.len() as u64 * spacing);
        assert_reads!(read_all(&ledger), reference(&events, &order));
        let loaded = stored.load();
        prop_assert!(loaded == whole, "the store loads into another ledger");
        assert_reads!(read_all(&loaded), read_all(&whole));
        // An erased pseudonym is kept only as erased, never as a name.
        let named: BTreeSet<(u32, &str)> = stored
            .names
            .iter()
            .filter(|((_, dimension, _), _)| *dimension == Dimension::Person)
            .map(|((movement, _, _), text)| (*movement, &**text))
            .collect();
        for (movement, pseudonym) in &stored.erased {
            prop_assert!(!named.contains(&(*movement, &**pseudonym)), "{} is erased but still named", pseudonym);
        }
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
    let ledger = fold(&events, &order);
    assert_eq!(read_all(&ledger), reference(&events, &order));
    let mut stored = Stored::default();
    let mut again = Ledger::default();
    for (position, &index) in order.iter().enumerate() {
        again.apply(&FoldSettings::default(), &events[index], position as u64 + 1);
        if position % 500 == 0 {
            stored.append(again.checkpoint());
        }
    }
    stored.append(again.checkpoint());
    assert!(stored.load() == ledger, "the store loads into the same ledger");
}
