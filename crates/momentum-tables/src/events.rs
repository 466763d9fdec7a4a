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

/// The row of an exported event in the table of [`event_columns`].
pub fn event_row(event: &Value, time_zone: Tz) -> Vec<Cell> {
    let data = &event["data"];
    let organisers = data["organisers"].as_array();
    let organiser_field = |key: &str| {
        organisers
            .map_or(Cell::Null, |list| Cell::TextList(list.iter().map(|organiser| text(&organiser[key])).collect()))
    };
    let mut row = envelope(event, time_zone);
    row.extend([
        optional_text(&data["participant"]),
        text_list(&data["attendees"]),
        text_list(&data["participants"]),
        organiser_field("participant"),
        organiser_field("role"),
        number(&data["hours"]),
        integer(&data["reach"]),
        optional_text(&data["role"]),
        optional_text(&data["area"]),
        optional_text(&data["kind"]),
        optional_text(&data["activity"]),
        optional_text(&data["channel"]),
        text_list(&data["partners"]),
        text_list(&data["principles"]),
        integer(&data["duration_minutes"]),
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

fn text_list(value: &Value) -> Cell {
    value.as_array().map_or(Cell::Null, |items| Cell::TextList(items.iter().map(text).collect()))
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
        table.push(event_row(&meeting(), chrono_tz::Europe::London));
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
