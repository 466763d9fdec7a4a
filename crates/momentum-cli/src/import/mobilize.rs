//! Mobilize's attendance export (CSV) read into [`Attendance`]s: one row
//! per sign-up to a time slot of an event, with whether the person
//! attended. The columns are those of Mobilize's attendance records
//! (`event_id`, `timeslot_id`, `timeslot_start_date`, `timeslot_end_date`,
//! `attended`, `person`); the mapping is in docs/imports.md.

use std::collections::HashMap;

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use serde_json::Value;

use super::attendance::{Attendance, Read};
use super::problems::Problem;

/// The longest session a meeting may say it lasted (the schema's bound).
const SESSION_MINUTES_MAX: i64 = 1440;

/// The columns read, by name (case and surrounding spaces ignored).
const EVENT: &str = "event_id";
const TIMESLOT: &str = "timeslot_id";
const START: &str = "timeslot_start_date";
const END: &str = "timeslot_end_date";
const ATTENDED: &str = "attended";
/// The person: a JSON object with an `id` (as the API's records flattened
/// hold it), or a plain id column.
const PERSON: &str = "person";
const PERSON_ID: [&str; 2] = ["person_id", "user_id"];

/// A time as Mobilize gives it: seconds since 1970 (the API's records), or RFC 3339.
fn parse_time(text: &str) -> Option<DateTime<FixedOffset>> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<i64>() {
        return Utc.timestamp_opt(seconds, 0).single().map(|time| time.fixed_offset());
    }
    DateTime::parse_from_rfc3339(text).ok()
}

fn parse_attended(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "0" | "" => Some(false),
        _ => None,
    }
}

/// Reads the rows of an export. Errors only for problems of the whole
/// file (no header, a needed column missing).
pub(super) fn read(bytes: &[u8], source: &str) -> Result<Read, String> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(bytes);
    let header: HashMap<String, usize> = reader
        .headers()
        .map_err(|error| format!("cannot read the header row: {error}"))?
        .iter()
        .enumerate()
        .map(|(index, name)| (name.trim().to_ascii_lowercase(), index))
        .collect();
    let column = |name: &str| header.get(name).copied();
    let needed = |name: &str| column(name).ok_or_else(|| format!("the header has no {name} column"));
    let (event, start, attended) = (needed(EVENT)?, needed(START)?, needed(ATTENDED)?);
    let person_json = column(PERSON);
    let person_id = PERSON_ID.iter().find_map(|name| column(name));
    if person_json.is_none() && person_id.is_none() {
        return Err(format!("the header has no {PERSON}, {} or {} column", PERSON_ID[0], PERSON_ID[1]));
    }
    let (timeslot, end) = (column(TIMESLOT), column(END));

    let mut read = Read::default();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error.position().map_or(0, csv::Position::line);
                read.problems.push(problem(line, None, None, format!("cannot be read: {error}")));
                continue;
            }
        };
        if record.iter().all(|cell| cell.trim().is_empty()) {
            continue;
        }
        read.records += 1;
        let line = record.position().map_or(0, csv::Position::line);
        let cell = |index: Option<usize>| index.and_then(|index| record.get(index)).unwrap_or("").trim();
        match parse_attended(cell(Some(attended))) {
            Some(true) => {}
            Some(false) => {
                read.not_attended += 1;
                continue;
            }
            None => {
                read.problems.push(problem(line, Some(ATTENDED), Some(cell(Some(attended))), "must be true or false"));
                continue;
            }
        }
        let event_id = cell(Some(event));
        if event_id.is_empty() {
            read.problems.push(problem(line, Some(EVENT), None, "is empty"));
            continue;
        }
        let Some(start_time) = parse_time(cell(Some(start))) else {
            let message = "must be seconds since 1970 or an RFC 3339 time";
            read.problems.push(problem(line, Some(START), Some(cell(Some(start))), message));
            continue;
        };
        let person = match (person_json, person_id) {
            (_, Some(index)) if !cell(Some(index)).is_empty() => Ok(cell(Some(index)).to_owned()),
            (Some(index), _) => person_of(cell(Some(index))),
            // The header has one of the two, checked above.
            (None, _) => Err("is empty".to_owned()),
        };
        let person = match person {
            Ok(person) => person,
            Err(message) => {
                let name = if person_json.is_some() { PERSON } else { PERSON_ID[0] };
                read.problems.push(problem(line, Some(name), None, message));
                continue;
            }
        };
        let duration_minutes = parse_time(cell(end))
            .map(|end_time| (end_time - start_time).num_minutes())
            .filter(|minutes| (1..=SESSION_MINUTES_MAX).contains(minutes));
        let session = match cell(timeslot) {
            "" => event_id.to_owned(),
            slot => format!("{event_id}/{slot}"),
        };
        read.attendances.push(Attendance {
            line,
            location: None,
            source: source.to_owned(),
            session,
            start: start_time,
            duration_minutes,
            area: None,
            person: format!("mobilize:{person}"),
        });
    }
    Ok(read)
}

/// The `id` of a `person` cell holding the API's person object as JSON.
fn person_of(cell: &str) -> Result<String, String> {
    let person: Value = serde_json::from_str(cell).map_err(|_| "must be the person as JSON, with an id".to_owned())?;
    match &person["id"] {
        Value::Number(id) => Ok(id.to_string()),
        Value::String(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        _ => Err("has no id".to_owned()),
    }
}

fn problem(line: u64, column: Option<&str>, value: Option<&str>, message: impl Into<String>) -> Problem {
    Problem {
        line,
        record: None,
        column: column.map(str::to_owned),
        value: value.map(str::to_owned),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attended_rows_become_attendances_of_their_time_slot_and_bad_rows_are_named_by_line() {
        let text = "id,event_id,event_title,timeslot_id,timeslot_start_date,timeslot_end_date,status,attended,person\n\
            1,454,Walk,738,1772704800,1772708400,CONFIRMED,true,\"{\"\"id\"\": 1, \"\"given_name\"\": \"\"Lou\"\"}\"\n\
            2,454,Walk,738,1772704800,1772708400,REGISTERED,false,\"{\"\"id\"\": 2}\"\n\
            3,454,Walk,739,2026-03-12T10:00:00Z,,CONFIRMED,TRUE,\"{\"\"id\"\": \"\"3\"\"}\"\n\
            4,454,Walk,739,next week,,CONFIRMED,true,\"{\"\"id\"\": 4}\"\n\
            5,454,Walk,739,1772704800,,CONFIRMED,maybe,\"{\"\"id\"\": 5}\"\n\
            6,454,Walk,739,1772704800,,CONFIRMED,true,\"{\"\"name\"\": \"\"no id\"\"}\"\n";
        let read = read(text.as_bytes(), "urn:partner:me").unwrap();
        assert_eq!((read.records, read.not_attended), (6, 1));
        let attendances: Vec<(u64, &str, &str, String, Option<i64>)> = read
            .attendances
            .iter()
            .map(|a| (a.line, a.session.as_str(), a.person.as_str(), a.start.to_rfc3339(), a.duration_minutes))
            .collect();
        assert_eq!(
            attendances,
            [
                (2, "454/738", "mobilize:1", "2026-03-05T10:00:00+00:00".to_owned(), Some(60)),
                (4, "454/739", "mobilize:3", "2026-03-12T10:00:00+00:00".to_owned(), None),
            ]
        );
        let problems: Vec<String> = read.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "line 5: timeslot_start_date: must be seconds since 1970 or an RFC 3339 time (got \"next week\")",
                "line 6: attended: must be true or false (got \"maybe\")",
                "line 7: person: has no id",
            ]
        );
        assert_eq!(
            super::read(b"event_id,attended\n", "s").unwrap_err(),
            "the header has no timeslot_start_date column"
        );
    }
}
