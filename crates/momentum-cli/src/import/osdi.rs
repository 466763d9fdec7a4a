//! OSDI attendance (the Open Supporter Data Interface, Action Network's
//! API) read from JSON files into [`Attendance`]s: exports as JSON, or the
//! API's HAL pages saved to files. The mapping, field by field, is in
//! docs/imports.md.
//!
//! A file holds a collection page (`_embedded` with `osdi:events` and
//! `osdi:attendances`), one event (with its attendances under
//! `_embedded.osdi:attendances`, or not), one attendance, or an array of
//! these. An attendance belongs to the event it is embedded in, or else to
//! the event its `osdi:event` link names, which must be in one of the files.
//! Records are numbered in reading order, from 1.

use std::collections::HashMap;

use chrono::{DateTime, FixedOffset};
use serde_json::Value;

use super::attendance::{Attendance, Read};
use super::problems::Problem;

const EVENTS: &str = "osdi:events";
const ATTENDANCES: &str = "osdi:attendances";

/// An OSDI event, as far as a meeting needs it.
#[derive(Clone, Debug)]
struct Event {
    /// Its id: the first of its `identifiers`, else its `self` link.
    id: Option<String>,
    start: Result<DateTime<FixedOffset>, String>,
    area: Option<String>,
    origin_system: Option<String>,
}

impl Event {
    fn read(value: &Value) -> Event {
        let start = match value["start_date"].as_str() {
            None => Err("its event has no start_date".to_owned()),
            Some(text) => DateTime::parse_from_rfc3339(text)
                .map_err(|_| format!("its event's start_date {text:?} is not an RFC 3339 time")),
        };
        Event {
            id: first_identifier(value).or_else(|| link(value, "self").map(str::to_owned)),
            start,
            area: value["location"]["locality"].as_str().map(|locality| locality.trim().to_owned()),
            origin_system: value["origin_system"].as_str().map(str::to_owned),
        }
    }
}

/// An attendance found in a file: where, and the event it is embedded in.
struct Found<'a> {
    location: String,
    value: &'a Value,
    within: Option<Event>,
}

fn first_identifier(value: &Value) -> Option<String> {
    value["identifiers"].as_array()?.iter().find_map(Value::as_str).map(str::to_owned)
}

fn link<'a>(value: &'a Value, relation: &str) -> Option<&'a str> {
    value["_links"][relation]["href"].as_str()
}

/// Whether a JSON object is an OSDI event: it has a start, or it is a
/// resource (it has identifiers, which a collection page has not) with
/// attendances embedded.
fn is_event(value: &Value) -> bool {
    value.get("start_date").is_some()
        || (value.get("identifiers").is_some() && value["_embedded"].get(ATTENDANCES).is_some())
}

/// The events and attendances of one file's JSON value, at `pointer`.
fn walk<'a>(
    file: &str,
    pointer: String,
    value: &'a Value,
    events: &mut HashMap<String, Event>,
    found: &mut Vec<Found<'a>>,
) {
    let escape = |key: &str| key.replace('~', "~0").replace('/', "~1");
    match value {
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                walk(file, format!("{pointer}/{index}"), item, events, found);
            }
        }
        Value::Object(_) if is_event(value) => {
            let event = Event::read(value);
            for key in link(value, "self").into_iter().map(str::to_owned).chain(identifiers(value)) {
                events.insert(key, event.clone());
            }
            let embedded = format!("{pointer}/_embedded/{}", escape(ATTENDANCES));
            for (index, item) in value["_embedded"][ATTENDANCES].as_array().into_iter().flatten().enumerate() {
                found.push(Found {
                    location: format!("{file}#{embedded}/{index}"),
                    value: item,
                    within: Some(event.clone()),
                });
            }
        }
        Value::Object(fields) if fields.contains_key("_embedded") => {
            let embedded = &value["_embedded"];
            for (index, item) in embedded[EVENTS].as_array().into_iter().flatten().enumerate() {
                walk(file, format!("{pointer}/_embedded/{}/{index}", escape(EVENTS)), item, events, found);
            }
            for (index, item) in embedded[ATTENDANCES].as_array().into_iter().flatten().enumerate() {
                let location = format!("{file}#{pointer}/_embedded/{}/{index}", escape(ATTENDANCES));
                found.push(Found { location, value: item, within: None });
            }
        }
        Value::Object(_) => found.push(Found { location: format!("{file}#{pointer}"), value, within: None }),
        _ => {}
    }
}

fn identifiers(value: &Value) -> impl Iterator<Item = String> + '_ {
    value["identifiers"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned)
}

/// The last non-empty segment of a link's path: an OSDI resource's id.
fn last_segment(href: &str) -> Option<&str> {
    href.split(['?', '#']).next()?.split('/').rev().find(|segment| !segment.is_empty())
}

/// `urn:osdi:` and the origin system in lower case, with each run of other
/// characters than letters and digits as one `-`: "Action Network" is
/// `urn:osdi:action-network`.
pub(super) fn source_of(origin_system: &str) -> Option<String> {
    let mut slug = String::new();
    for character in origin_system.trim().chars() {
        if character.is_ascii_alphanumeric() {
            slug.push(character.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    (!slug.is_empty()).then(|| format!("urn:osdi:{slug}"))
}

/// Reads the attendances of `files` (each its name and its JSON). `source`
/// is `--source`, which overrides the records' `origin_system`.
pub(super) fn read(files: &[(String, Value)], source: Option<&str>) -> Read {
    let mut events = HashMap::new();
    let mut found = Vec::new();
    for (name, value) in files {
        walk(name, String::new(), value, &mut events, &mut found);
    }
    let mut read = Read::default();
    for (index, record) in found.iter().enumerate() {
        let number = index as u64 + 1;
        read.records += 1;
        let problem = |message: String| Problem::with_record(number, record.location.clone(), message);
        match record.value.get("attended") {
            Some(Value::Bool(true)) => {}
            None | Some(Value::Bool(false) | Value::Null) => {
                read.not_attended += 1;
                continue;
            }
            Some(other) => {
                read.problems.push(problem(format!("attended must be true or false, not {other}")));
                continue;
            }
        }
        let event = match (&record.within, link(record.value, "osdi:event")) {
            (Some(event), _) => event,
            (None, None) => {
                read.problems.push(problem("has no osdi:event link and is not inside an event".to_owned()));
                continue;
            }
            (None, Some(href)) => {
                match events.get(href).or_else(|| last_segment(href).and_then(|id| find(&events, id))) {
                    Some(event) => event,
                    None => {
                        read.problems
                            .push(problem(format!("its event {href} is in none of the files: add the event's file")));
                        continue;
                    }
                }
            }
        };
        let start = match &event.start {
            Ok(start) => *start,
            Err(message) => {
                read.problems.push(problem(message.clone()));
                continue;
            }
        };
        let Some(session) = event.id.clone() else {
            read.problems.push(problem("its event has neither identifiers nor a self link".to_owned()));
            continue;
        };
        // The person's id as its link ends, or as its identifier ends
        // (`action_network:<id>`): the same person either way.
        let person = link(record.value, "osdi:person").and_then(last_segment).map(str::to_owned).or_else(|| {
            first_identifier(&record.value["_embedded"]["osdi:person"])
                .map(|identifier| identifier.rsplit(':').next().unwrap_or_default().to_owned())
                .filter(|id| !id.is_empty())
        });
        let Some(person) = person else {
            read.problems.push(problem("has no osdi:person link".to_owned()));
            continue;
        };
        let origin = event.origin_system.as_deref().or_else(|| record.value["origin_system"].as_str());
        let Some(source) = source.map(str::to_owned).or_else(|| origin.and_then(source_of)) else {
            read.problems.push(problem("neither it nor its event has an origin_system: give --source".to_owned()));
            continue;
        };
        read.attendances.push(Attendance {
            line: number,
            location: Some(record.location.clone()),
            source,
            session,
            start,
            duration_minutes: None,
            area: event.area.clone().filter(|area| !area.is_empty()),
            person: format!("osdi:{person}"),
        });
    }
    read
}

/// An event whose identifier ends in `id` (`system:id`), for links that
/// name an event by another address than its `self` link; of several, the
/// one with the least identifier, so that the same files always give the
/// same meetings.
fn find<'a>(events: &'a HashMap<String, Event>, id: &str) -> Option<&'a Event> {
    events
        .iter()
        .filter(|(key, _)| key.rsplit(':').next() == Some(id))
        .min_by_key(|(key, _)| *key)
        .map(|(_, event)| event)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn attendance(person: &str, attended: Value, event: Option<&str>) -> Value {
        let mut links = json!({ "osdi:person": { "href": format!("https://an.example/api/v2/people/{person}") } });
        if let Some(event) = event {
            links["osdi:event"] = json!({ "href": event });
        }
        json!({ "identifiers": [format!("action_network:att-{person}")], "attended": attended, "_links": links })
    }

    #[test]
    fn attendances_are_read_within_their_event_or_through_its_link_and_problems_name_the_record() {
        let event_href = "https://an.example/api/v2/events/walk-1";
        let event = json!({
            "identifiers": ["action_network:walk-1"], "origin_system": "Action Network",
            "start_date": "2026-03-05T10:00:00Z", "location": { "locality": "Easton" },
            "_links": { "self": { "href": event_href } },
            "_embedded": { "osdi:attendances": [
                attendance("p-1", json!(true), None),
                attendance("p-2", json!(false), None),
                // The same person as the first, embedded rather than linked.
                json!({ "attended": true, "_embedded": { "osdi:person": { "identifiers": ["action_network:p-1"] } } }),
            ] },
        });
        let page = json!({ "_embedded": { "osdi:attendances": [
            attendance("p-3", json!(true), Some(event_href)),
            attendance("p-4", json!(true), Some("https://an.example/api/v2/events/unknown")),
            attendance("p-5", json!(true), None),
            attendance("p-6", json!("yes"), Some(event_href)),
        ] } });
        let read = read(&[("event.json".to_owned(), event), ("page.json".to_owned(), page)], None);
        assert_eq!((read.records, read.not_attended), (7, 1));
        let people: Vec<(&str, &str, &str)> =
            read.attendances.iter().map(|a| (a.person.as_str(), a.source.as_str(), a.session.as_str())).collect();
        assert_eq!(
            people,
            [
                ("osdi:p-1", "urn:osdi:action-network", "action_network:walk-1"),
                ("osdi:p-1", "urn:osdi:action-network", "action_network:walk-1"),
                ("osdi:p-3", "urn:osdi:action-network", "action_network:walk-1"),
            ]
        );
        assert_eq!(read.attendances[0].area.as_deref(), Some("Easton"));
        let problems: Vec<String> = read.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "record 5 (page.json#/_embedded/osdi:attendances/1): its event https://an.example/api/v2/events/unknown \
                 is in none of the files: add the event's file",
                "record 6 (page.json#/_embedded/osdi:attendances/2): has no osdi:event link and is not inside an event",
                "record 7 (page.json#/_embedded/osdi:attendances/3): attended must be true or false, not \"yes\"",
            ]
        );
        // --source overrides the origin system.
        let other = json!({ "identifiers": ["x:1"], "start_date": "2026-03-05T10:00:00Z", "origin_system": "Other",
                            "_embedded": { "osdi:attendances": [attendance("p-9", json!(true), None)] } });
        let overridden = super::read(&[("other.json".to_owned(), other)], Some("urn:partner:me"));
        assert_eq!(overridden.attendances.len(), 1);
        assert_eq!(overridden.attendances[0].source, "urn:partner:me");
    }

    #[test]
    fn origin_systems_become_sources_without_spaces() {
        assert_eq!(source_of("Action Network").as_deref(), Some("urn:osdi:action-network"));
        assert_eq!(source_of("  OSDI Sample System!! ").as_deref(), Some("urn:osdi:osdi-sample-system"));
        assert_eq!(source_of(" -- "), None);
    }
}
