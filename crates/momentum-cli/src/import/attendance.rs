//! Attendance records from another system's export (OSDI, Mobilize) built
//! into events: one `meeting.held` a session, with the people who attended
//! it, and one `participant.joined` a person, at the first session they
//! attended. Ids depend only on the source and the other system's own ids,
//! so importing an export again adds nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value, json};

use super::events::{Built, envelope, namespace};
use super::problems::Problem;

/// The role of a person who joined through another system's attendance:
/// the exports do not say, and the people who attend are citizens far more
/// often than staff (docs/imports.md).
const JOINED_ROLE: &str = "citizen";

/// One person's attendance of one session, as read from an export.
#[derive(Clone, Debug)]
pub(super) struct Attendance {
    /// The record's line (CSV) or number in reading order (JSON).
    pub line: u64,
    /// For a JSON record: its file and JSON Pointer.
    pub location: Option<String>,
    pub source: String,
    /// The other system's id of the session: its event, and its time slot if it has them.
    pub session: String,
    pub start: DateTime<FixedOffset>,
    pub duration_minutes: Option<i64>,
    pub area: Option<String>,
    /// The other system's id of the person, after the system's name (`osdi:…`, `mobilize:…`).
    pub person: String,
}

/// An export read into attendances.
#[derive(Debug, Default)]
pub(super) struct Read {
    /// Attendance records read, attended or not.
    pub records: u64,
    /// Records of people who signed up but did not attend: not imported.
    pub not_attended: u64,
    pub attendances: Vec<Attendance>,
    pub problems: Vec<Problem>,
}

/// The events the attendances mean, in the order of their first record.
/// `format` (`osdi`, `mobilize`) starts every id.
pub(super) fn build(format: &str, movement: &str, attendances: &[Attendance]) -> Vec<Built> {
    let mut sessions: BTreeMap<(&str, &str), Vec<&Attendance>> = BTreeMap::new();
    let mut people: BTreeMap<(&str, &str), &Attendance> = BTreeMap::new();
    for attendance in attendances {
        sessions.entry((&attendance.source, &attendance.session)).or_default().push(attendance);
        let first = people.entry((&attendance.source, &attendance.person)).or_insert(attendance);
        if (attendance.start, attendance.line) < (first.start, first.line) {
            *first = attendance;
        }
    }
    let mut events = Vec::new();
    for ((source, session), mut records) in sessions {
        records.sort_by_key(|record| record.line);
        let mut attendees: Vec<&str> = records.iter().map(|record| record.person.as_str()).collect();
        attendees.sort_unstable();
        attendees.dedup();
        let mut data = Map::new();
        data.insert("attendees".to_owned(), json!(attendees));
        data.insert("organisers".to_owned(), json!([]));
        if let Some(area) = records.iter().find_map(|record| record.area.as_deref()) {
            data.insert("area".to_owned(), area.into());
        }
        if let Some(minutes) = records.iter().find_map(|record| record.duration_minutes) {
            data.insert("duration_minutes".to_owned(), minutes.into());
        }
        let start = records.iter().map(|record| record.start).min().expect("a session has a record");
        let id =
            format!("{format}-{}", uuid::Uuid::new_v5(&namespace(source), format!("meeting\0{session}").as_bytes()));
        let event = envelope(Some(id), source, "meeting.held", movement, start, Value::Object(data));
        events.push(built(event, &records));
    }
    for ((source, person), first) in people {
        let id = format!("{format}-{}", uuid::Uuid::new_v5(&namespace(source), format!("joined\0{person}").as_bytes()));
        let data = json!({ "participant": person, "role": JOINED_ROLE });
        let event = envelope(Some(id), source, "participant.joined", movement, first.start, data);
        events.push(built(event, &[first]));
    }
    events.sort_by_key(|built| built.lines[0]);
    events
}

fn built(event: Value, records: &[&Attendance]) -> Built {
    Built {
        event,
        lines: records.iter().map(|record| record.line).collect(),
        locations: records.iter().filter_map(|record| record.location.clone()).collect(),
        cells: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attendance(line: u64, session: &str, start: &str, person: &str) -> Attendance {
        Attendance {
            line,
            location: None,
            source: "urn:osdi:test".to_owned(),
            session: session.to_owned(),
            start: DateTime::parse_from_rfc3339(start).unwrap(),
            duration_minutes: None,
            area: None,
            person: person.to_owned(),
        }
    }

    #[test]
    fn a_session_is_one_meeting_and_a_person_joins_at_their_first_session() {
        let records = [
            attendance(2, "walk-1", "2026-03-05T10:00:00Z", "osdi:b"),
            attendance(3, "walk-1", "2026-03-05T10:00:00Z", "osdi:a"),
            attendance(4, "walk-2", "2026-03-01T10:00:00Z", "osdi:b"),
            attendance(5, "walk-2", "2026-03-01T10:00:00Z", "osdi:b"),
        ];
        let events = build("osdi", "alpha", &records);
        let kinds: Vec<(&str, &Value, Vec<u64>)> = events
            .iter()
            .map(|built| (built.event["type"].as_str().unwrap(), &built.event["time"], built.lines.clone()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("meeting.held", &Value::from("2026-03-05T10:00:00+00:00"), vec![2, 3]),
                ("participant.joined", &Value::from("2026-03-05T10:00:00+00:00"), vec![3]),
                ("meeting.held", &Value::from("2026-03-01T10:00:00+00:00"), vec![4, 5]),
                ("participant.joined", &Value::from("2026-03-01T10:00:00+00:00"), vec![4]),
            ]
        );
        assert_eq!(events[0].event["data"]["attendees"], json!(["osdi:a", "osdi:b"]));
        assert_eq!(events[2].event["data"]["attendees"], json!(["osdi:b"]), "a repeated record counts once");
        // The same records in another order give the same ids.
        let mut reversed = records.clone();
        reversed.reverse();
        let ids = |events: &[Built]| {
            let mut ids: Vec<String> = events.iter().map(|built| built.event["id"].to_string()).collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(&events), ids(&build("osdi", "alpha", &reversed)));
        assert!(events.iter().all(|built| built.event["id"].as_str().unwrap().starts_with("osdi-")));
    }
}
