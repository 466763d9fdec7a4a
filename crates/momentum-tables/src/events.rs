//! The events export as tables: one row per event, or one row per person
//! per event. Each row is made from an event as
//! `momentum_domain::export::exported` gives it (which events, and how
//! erased people are made unlinkable, is decided there).

use chrono::DateTime;
use chrono_tz::Tz;
use momentum_domain::period::local_date;
use serde_json::Value;

use crate::{Cell, Column, ColumnType};

/// The columns every events table starts with: the envelope.
const ENVELOPE: [Column; 7] = [
    Column::new("seq", ColumnType::Integer, "The stream sequence the event was stored at: the order of the log."),
    Column::new("id", ColumnType::Text, "The event's id, unique within its source."),
    Column::new("source", ColumnType::Text, "The partner system that posted the event (a URI)."),
    Column::new(
        "type",
        ColumnType::Text,
        "participant.joined, meeting.held, volunteer.hours_logged or collective_action.taken.",
    ),
    Column::new("time", ColumnType::Timestamp, "When it happened, in UTC, to the microsecond."),
    Column::new(
        "date",
        ColumnType::Date,
        "The local date of `time` in the deployment's time zone: the day periods count it in.",
    ),
    Column::new(
        "retracted",
        ColumnType::Integer,
        "For a retracted event (asked for with include=retracted), the stream sequence of its retraction; \
         empty for an event that counts.",
    ),
];

/// The columns of the table with one row per event: the envelope, then
/// every field of `data` of any event type (empty where the type has none).
pub fn event_columns() -> Vec<Column> {
    let data = [
        Column::new(
            "participant",
            ColumnType::Text,
            "The pseudonym of who joined (participant.joined) or logged the hours (volunteer.hours_logged); \
             `erased` for an erased person.",
        ),
        Column::new("attendees", ColumnType::TextList, "The pseudonyms of a meeting's attendees."),
        Column::new("participants", ColumnType::TextList, "The pseudonyms of a collective action's participants."),
        Column::new("organisers", ColumnType::TextList, "The pseudonyms of a meeting's or an action's organisers."),
        Column::new(
            "organiser_roles",
            ColumnType::TextList,
            "Each organiser's role (citizen, staff, volunteer…), in the order of `organisers`.",
        ),
        Column::new("hours", ColumnType::Number, "The hours logged (volunteer.hours_logged)."),
        Column::new("reach", ColumnType::Integer, "The people a collective action reached."),
        Column::new("role", ColumnType::Text, "The role someone joined in (participant.joined)."),
        Column::new("area", ColumnType::Text, "Where it happened: the area named by the partner."),
        Column::new("kind", ColumnType::Text, "The kind of meeting or action, as the partner labels it."),
        Column::new("activity", ColumnType::Text, "What the volunteer hours were spent on."),
        Column::new("channel", ColumnType::Text, "How someone joined (participant.joined)."),
        Column::new("partners", ColumnType::TextList, "The org ids of the partners of a meeting or an action."),
        Column::new("principles", ColumnType::TextList, "The principles the partner tagged the activity with."),
        Column::new("duration_minutes", ColumnType::Integer, "How long a meeting lasted, in minutes."),
    ];
    ENVELOPE.into_iter().chain(data).collect()
}

/// The columns of the table with one row per person per event.
pub fn participation_columns() -> Vec<Column> {
    let parts = [
        Column::new("participant", ColumnType::Text, "The person's pseudonym; `erased` for an erased person."),
        Column::new(
            "part",
            ColumnType::Text,
            "The part they had: joined, volunteer, attendee, action_participant or organiser.",
        ),
        Column::new("role", ColumnType::Text, "The role they joined or organised in; empty for other parts."),
    ];
    ENVELOPE.into_iter().chain(parts).collect()
}

/// The row of an exported event in the table of [`event_columns`]. The
/// event's texts move into the row rather than being copied: a whole log
/// goes through here.
pub fn event_row(mut event: Value, time_zone: Tz) -> Vec<Cell> {
    let mut row = envelope(&event, time_zone);
    let data = event["data"].take();
    let serde_json::Value::Object(mut data) = data else {
        row.extend(std::iter::repeat_n(Cell::Null, event_columns().len() - ENVELOPE.len()));
        return row;
    };
    let mut field = |key: &str| data.remove(key).unwrap_or(Value::Null);
    let (mut participants, mut roles) = (Vec::new(), Vec::new());
    let organisers = match field("organisers") {
        Value::Array(list) => {
            for organiser in list {
                if let Value::Object(mut organiser) = organiser {
                    participants.push(owned_text(organiser.remove("participant")));
                    roles.push(owned_text(organiser.remove("role")));
                }
            }
            true
        }
        _ => false,
    };
    let organisers_cell = |list: Vec<String>| if organisers { Cell::TextList(list) } else { Cell::Null };
    row.extend([
        taken_text(field("participant")),
        taken_list(field("attendees")),
        taken_list(field("participants")),
        organisers_cell(participants),
        organisers_cell(roles),
        number(&field("hours")),
        integer(&field("reach")),
        taken_text(field("role")),
        taken_text(field("area")),
        taken_text(field("kind")),
        taken_text(field("activity")),
        taken_text(field("channel")),
        taken_list(field("partners")),
        taken_list(field("principles")),
        integer(&field("duration_minutes")),
    ]);
    row
}

/// The rows of an exported event in the table of [`participation_columns`]:
/// one per part a person had in it.
pub fn participation_rows(event: &Value, time_zone: Tz) -> Vec<Vec<Cell>> {
    let data = &event["data"];
    let mut parts: Vec<(String, &str, Cell)> = Vec::new();
    let refs = |key: &str| data[key].as_array().into_iter().flatten().map(text).collect::<Vec<_>>();
    match event["type"].as_str() {
        Some("participant.joined") => parts.push((text(&data["participant"]), "joined", optional_text(&data["role"]))),
        Some("volunteer.hours_logged") => parts.push((text(&data["participant"]), "volunteer", Cell::Null)),
        Some("meeting.held") => parts.extend(refs("attendees").into_iter().map(|who| (who, "attendee", Cell::Null))),
        Some("collective_action.taken") => {
            parts.extend(refs("participants").into_iter().map(|who| (who, "action_participant", Cell::Null)));
        }
        _ => {}
    }
    for organiser in data["organisers"].as_array().into_iter().flatten() {
        parts.push((text(&organiser["participant"]), "organiser", optional_text(&organiser["role"])));
    }
    let envelope = envelope(event, time_zone);
    parts
        .into_iter()
        .map(|(who, part, role)| {
            let mut row = envelope.clone();
            row.extend([Cell::Text(who), Cell::from(part), role]);
            row
        })
        .collect()
}

fn envelope(event: &Value, time_zone: Tz) -> Vec<Cell> {
    let time = event["time"].as_str().and_then(|time| DateTime::parse_from_rfc3339(time).ok());
    vec![
        integer(&event["seq"]),
        optional_text(&event["id"]),
        optional_text(&event["source"]),
        optional_text(&event["type"]),
        // To the microsecond, as Parquet stores it, in every format.
        time.and_then(|time| DateTime::from_timestamp_micros(time.timestamp_micros()))
            .map_or(Cell::Null, Cell::Timestamp),
        time.map_or(Cell::Null, |time| Cell::Date(local_date(time, time_zone))),
        integer(&event["retracted"]),
    ]
}

/// A text of the event, moved out of it; nothing when it is not a text.
fn taken_text(value: Value) -> Cell {
    match value {
        Value::String(text) => Cell::Text(text),
        _ => Cell::Null,
    }
}

fn owned_text(value: Option<Value>) -> String {
    match value {
        Some(Value::String(text)) => text,
        _ => String::new(),
    }
}

/// A list of texts of the event, moved out of it.
fn taken_list(value: Value) -> Cell {
    match value {
        Value::Array(items) => Cell::TextList(items.into_iter().map(Some).map(owned_text).collect()),
        _ => Cell::Null,
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

fn optional_text(value: &Value) -> Cell {
    value.as_str().map_or(Cell::Null, Cell::from)
}

fn integer(value: &Value) -> Cell {
    value.as_i64().map_or(Cell::Null, Cell::Integer)
}

fn number(value: &Value) -> Cell {
    value.as_f64().map_or(Cell::Null, Cell::Number)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Table;
    use crate::csv::to_csv;

    fn meeting() -> Value {
        json!({ "specversion": "1.0", "id": "m1", "source": "urn:p", "type": "meeting.held", "subject": "alpha",
            "time": "2026-06-07T23:30:00Z", "seq": 4,
            "data": { "attendees": ["ps-a", "erased"], "organisers": [{ "participant": "ps-c", "role": "citizen" }],
                      "duration_minutes": 90 } })
    }

    #[test]
    fn an_event_is_one_row_with_its_lists_and_its_local_date() {
        let mut table = Table::new(event_columns());
        table.push(event_row(meeting(), chrono_tz::Europe::London));
        let csv = to_csv(&table).unwrap();
        let row = csv.lines().nth(1).unwrap();
        // 23:30Z on 7 June is 00:30 on 8 June in London.
        assert_eq!(
            row,
            "4,m1,urn:p,meeting.held,2026-06-07T23:30:00Z,2026-06-08,,,ps-a;erased,,ps-c,citizen,,,,,,,,,,90"
        );
    }

    #[test]
    fn each_part_a_person_had_is_one_participation_row() {
        let rows = participation_rows(&meeting(), chrono_tz::Europe::London);
        let parts: Vec<(&Cell, &Cell, &Cell)> = rows.iter().map(|row| (&row[7], &row[8], &row[9])).collect();
        assert_eq!(
            parts,
            [
                (&Cell::from("ps-a"), &Cell::from("attendee"), &Cell::Null),
                (&Cell::from("erased"), &Cell::from("attendee"), &Cell::Null),
                (&Cell::from("ps-c"), &Cell::from("organiser"), &Cell::from("citizen")),
            ]
        );
        let mut table = Table::new(participation_columns());
        rows.into_iter().for_each(|row| table.push(row));
    }
}

#[cfg(test)]
mod documented {
    use super::*;

    /// docs/exports.md, which lists every column of these tables.
    const DOCUMENTED: &str = include_str!("../../../docs/exports.md");

    fn type_name(kind: ColumnType) -> &'static str {
        match kind {
            ColumnType::Text => "text",
            ColumnType::Integer => "integer",
            ColumnType::Number => "number",
            ColumnType::Boolean => "boolean",
            ColumnType::Date => "date",
            ColumnType::Timestamp => "timestamp",
            ColumnType::TextList => "list of texts",
        }
    }

    /// The `| `name` | type |` rows of a section of docs/exports.md, in order.
    fn documented_rows(section: &str) -> Vec<String> {
        section
            .lines()
            .filter(|line| line.starts_with("| `"))
            .map(|line| line.split(" | ").take(2).collect::<Vec<_>>().join(" | "))
            .collect()
    }

    #[test]
    fn docs_exports_lists_every_column_with_its_type_in_order() {
        let rows = |columns: &[Column]| -> Vec<String> {
            columns.iter().map(|column| format!("| `{}` | {}", column.name, type_name(column.kind))).collect()
        };
        let (events, rest) = DOCUMENTED.split_once("## One row per person per event").unwrap();
        let (participation, _) = rest.split_once("## The reads' tables").unwrap();
        assert_eq!(documented_rows(events), rows(&event_columns()), "docs/exports.md, one row per event");
        let parts = participation_columns();
        assert_eq!(documented_rows(participation), rows(&parts[ENVELOPE.len()..]), "docs/exports.md, participation");
    }
}
