//! Rows built into CloudEvents ([`Built`]): one event per row, or one per
//! meeting or action gathered from its rows; each part of an event
//! remembers the cell it came from (`Cell`), and every event gets its
//! stable id.

use std::collections::HashMap;

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde_json::{Map, Value, json};

use super::columns::{Cell, Field, Header, Kind, Row};
use super::options::Options;
use super::problems::Problem;
use super::values::{organiser_item, parse_date, parse_hours, parse_whole, principles, snake, split_list};

/// An event built from one or more rows.
#[derive(Debug)]
pub(super) struct Built {
    pub event: Value,
    /// The lines it was built from, in file order; for an event built from
    /// JSON records, the records' numbers.
    pub lines: Vec<u64>,
    /// For an event built from JSON records, where each of `lines` is (file
    /// and pointer); empty for CSV rows.
    pub locations: Vec<String>,
    pub(super) cells: Vec<Cell>,
}

/// Fields shared by every row: id, movement and time.
struct Common {
    id: Option<String>,
    movement: String,
    time: DateTime<FixedOffset>,
    local_date: NaiveDate,
    cells: Vec<Cell>,
}

/// Builds events from rows: one per row, or one per group of rows.
pub(super) struct Builder<'a> {
    kind: Kind,
    options: &'a Options,
    namespace: uuid::Uuid,
    grouped: bool,
    singles: Vec<Built>,
    groups: Vec<Group>,
    group_index: HashMap<String, usize>,
    /// Meetings or actions with a row that had a problem: none of their
    /// rows is posted. Posting the others would post the event without that
    /// row, and once the row was fixed, importing again would find the event
    /// already stored (its id does not depend on its rows) and lose the row.
    held_back: Vec<HeldBack>,
}

/// The group a row with a problem belongs to, as far as the row tells:
/// `None` where its movement or date could not be read (any then matches).
struct HeldBack {
    line: u64,
    reference: String,
    movement: Option<String>,
    local_date: Option<NaiveDate>,
}

/// The rows of one meeting or action, gathered.
struct Group {
    key: String,
    reference: String,
    local_date: NaiveDate,
    id: Option<(String, u64)>,
    movement: String,
    time: DateTime<FixedOffset>,
    lines: Vec<u64>,
    cells: Vec<Cell>,
    members: Vec<(String, Option<Cell>)>,
    organisers: Vec<(String, String, Option<Cell>)>,
    /// Single-valued data fields: value, line and column.
    values: Vec<(&'static str, Value, Option<Cell>)>,
    /// List values with the cell each first came from.
    partners: Vec<(String, Option<Cell>)>,
    principles: Vec<(String, Option<Cell>)>,
}

impl<'a> Builder<'a> {
    pub(super) fn new(kind: Kind, options: &'a Options, header: &Header) -> Builder<'a> {
        let grouped = match kind {
            Kind::Meetings => header.has(Field::Meeting),
            Kind::Actions => header.has(Field::Action),
            Kind::Hours | Kind::Joins => false,
        };
        let namespace = namespace(&options.source);
        Builder {
            kind,
            options,
            namespace,
            grouped,
            singles: Vec::new(),
            groups: Vec::new(),
            group_index: HashMap::new(),
            held_back: Vec::new(),
        }
    }

    /// The column naming a row's meeting or action.
    fn group_field(&self) -> Field {
        if self.kind == Kind::Meetings { Field::Meeting } else { Field::Action }
    }

    /// Adds a row; a row with a problem also holds back its meeting or action.
    pub(super) fn add(&mut self, row: &Row) -> Result<(), Problem> {
        let added = self.add_row(row);
        if added.is_err()
            && self.grouped
            && let Some((reference, _)) = row.get(self.group_field())
        {
            let movement = row.get(Field::Movement).map(|(movement, _)| movement.to_owned());
            let date = row.get(Field::Date).and_then(|(date, _)| {
                parse_date(date, row.get(Field::Time).map(|(time, _)| time), self.options.time_zone).ok()
            });
            self.held_back.push(HeldBack {
                line: row.line,
                reference: reference.to_owned(),
                movement: movement.or_else(|| self.options.movement.clone()),
                local_date: date.map(|time| time.with_timezone(&self.options.time_zone).date_naive()),
            });
        }
        added
    }

    fn common(&self, row: &Row) -> Result<Common, Problem> {
        row.check_width()?;
        let mut cells = Vec::new();
        let movement = match row.get(Field::Movement) {
            Some((movement, _)) => {
                cells.extend(row.cell(Field::Movement, "/subject"));
                movement.to_owned()
            }
            None => match &self.options.movement {
                Some(movement) => movement.clone(),
                None => {
                    return Err(Problem {
                        record: None,
                        line: row.line,
                        column: None,
                        value: None,
                        message: "has no movement: add a `movement` column or pass --movement".to_owned(),
                    });
                }
            },
        };
        let Some((date, _)) = row.get(Field::Date) else { return Err(row.problem(Field::Date, "is empty")) };
        let time = parse_date(date, row.get(Field::Time).map(|(time, _)| time), self.options.time_zone)
            .map_err(|message| row.problem(Field::Date, message))?;
        cells.extend(row.cell(Field::Date, "/time"));
        let id = row.get(Field::Id).map(|(id, _)| id.to_owned());
        cells.extend(row.cell(Field::Id, "/id"));
        let local_date = time.with_timezone(&self.options.time_zone).date_naive();
        Ok(Common { id, movement, time, local_date, cells })
    }

    fn required<'r>(row: &'r Row, field: Field) -> Result<&'r str, Problem> {
        row.get(field).map(|(value, _)| value).ok_or_else(|| row.problem(field, "is empty"))
    }

    fn add_row(&mut self, row: &Row) -> Result<(), Problem> {
        let common = self.common(row)?;
        match self.kind {
            Kind::Hours => {
                let participant = Self::required(row, Field::Participant)?;
                let hours = parse_hours(Self::required(row, Field::Hours)?)
                    .map_err(|message| row.problem(Field::Hours, message))?;
                let mut data = Map::new();
                data.insert("participant".into(), participant.into());
                data.insert("hours".into(), json!(hours));
                let mut cells = common.cells;
                cells.extend(row.cell(Field::Participant, "/data/participant"));
                cells.extend(row.cell(Field::Hours, "/data/hours"));
                for (field, name) in [(Field::Activity, "activity"), (Field::Area, "area")] {
                    if let Some((value, _)) = row.get(field) {
                        data.insert(name.into(), value.into());
                        cells.extend(row.cell(field, format!("/data/{name}")));
                    }
                }
                if let Some((value, _)) = row.get(Field::Principles) {
                    data.insert("principles".into(), principles(value).into());
                    cells.extend(row.cell(Field::Principles, "/data/principles"));
                }
                self.single(common.id, common.movement, common.time, data, row.line, cells);
            }
            Kind::Joins => {
                let participant = Self::required(row, Field::Participant)?;
                let role = snake(Self::required(row, Field::Role)?);
                let mut data = Map::new();
                data.insert("participant".into(), participant.into());
                data.insert("role".into(), role.into());
                let mut cells = common.cells;
                cells.extend(row.cell(Field::Participant, "/data/participant"));
                cells.extend(row.cell(Field::Role, "/data/role"));
                for (field, name) in [(Field::Area, "area"), (Field::Channel, "channel")] {
                    if let Some((value, _)) = row.get(field) {
                        data.insert(name.into(), value.into());
                        cells.extend(row.cell(field, format!("/data/{name}")));
                    }
                }
                self.single(common.id, common.movement, common.time, data, row.line, cells);
            }
            Kind::Meetings | Kind::Actions => self.add_to_group(row, common)?,
        }
        Ok(())
    }

    fn add_to_group(&mut self, row: &Row, common: Common) -> Result<(), Problem> {
        let meetings = self.kind == Kind::Meetings;
        let (group_field, member_field, list_field) = if meetings {
            let member = if row.header.has(Field::Attendee) { Field::Attendee } else { Field::Participant };
            (Field::Meeting, member, Field::Attendees)
        } else {
            (Field::Action, Field::Participant, Field::Participants)
        };
        let what = if meetings { "meeting" } else { "action" };
        // Everything of the row, checked before the row joins its group.
        let mut members: Vec<(String, Option<Cell>)> = Vec::new();
        if let Some((member, _)) = row.get(member_field) {
            members.push((member.to_owned(), row.cell(member_field, "")));
        }
        if let Some((list, _)) = row.get(list_field) {
            for member in split_list(list) {
                let cell = row.cell(list_field, "");
                members.push((member, cell));
            }
        }
        if members.is_empty() && !(self.grouped && row.get(Field::Organiser).is_some()) {
            let field =
                if row.header.has(list_field) && !row.header.has(member_field) { list_field } else { member_field };
            return Err(
                row.problem(field, if meetings { "is empty: who attended?" } else { "is empty: who took part?" })
            );
        }
        let default_role = row.get(Field::OrganiserRole).map_or_else(|| "citizen".to_owned(), |(role, _)| snake(role));
        let mut organisers = Vec::new();
        if let Some((organiser, _)) = row.get(Field::Organiser) {
            organisers.push((organiser.to_owned(), default_role.clone(), row.cell(Field::Organiser, "")));
        }
        if let Some((list, _)) = row.get(Field::Organisers) {
            for item in split_list(list) {
                let (participant, role) = organiser_item(&item, &default_role);
                organisers.push((participant, role, row.cell(Field::Organisers, "")));
            }
        }
        let mut values: Vec<(&'static str, Value, Option<Cell>)> = Vec::new();
        for (field, name) in [(Field::Area, "area"), (Field::Category, "kind")] {
            if let Some((value, _)) = row.get(field) {
                values.push((name, value.into(), row.cell(field, format!("/data/{name}"))));
            }
        }
        let whole_fields: &[(Field, &str)] =
            if meetings { &[(Field::DurationMinutes, "duration_minutes")] } else { &[(Field::Reach, "reach")] };
        for (field, name) in whole_fields {
            if let Some((value, _)) = row.get(*field) {
                let number = parse_whole(value).map_err(|message| row.problem(*field, message))?;
                values.push((name, number.into(), row.cell(*field, format!("/data/{name}"))));
            }
        }
        let partners = row.get(Field::Partners).map(|(list, _)| split_list(list)).unwrap_or_default();
        let principle_list = row.get(Field::Principles).map(|(list, _)| principles(list)).unwrap_or_default();

        let reference = if self.grouped { Self::required(row, group_field)?.to_owned() } else { String::new() };
        let key = if self.grouped {
            format!("{}\0{}\0{}\0{}", self.kind.event_type(), common.movement, reference, common.local_date)
        } else {
            format!("row {}", row.line)
        };
        let index = match self.group_index.get(&key) {
            Some(index) => *index,
            None => {
                self.groups.push(Group {
                    key: key.clone(),
                    reference: reference.clone(),
                    local_date: common.local_date,
                    id: None,
                    movement: common.movement.clone(),
                    time: common.time,
                    lines: Vec::new(),
                    cells: common.cells.clone(),
                    members: Vec::new(),
                    organisers: Vec::new(),
                    values: Vec::new(),
                    partners: Vec::new(),
                    principles: Vec::new(),
                });
                self.group_index.insert(key, self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        let group = &mut self.groups[index];
        // Single values must agree across the rows of a group.
        if let (Some(id), Some((earlier, line))) = (&common.id, &group.id)
            && id != earlier
        {
            return Err(row.problem(
                Field::Id,
                format!("differs from the id {earlier:?} on line {line} of the same {what} {reference:?}"),
            ));
        }
        for (name, value, cell) in &values {
            if let Some((_, earlier, earlier_cell)) = group.values.iter().find(|(earlier, _, _)| earlier == name)
                && earlier != value
            {
                let line = earlier_cell.as_ref().map_or(0, |cell| cell.line);
                return Err(Problem {
                    record: None,
                    line: row.line,
                    column: cell.as_ref().map(|cell| cell.column.clone()),
                    value: cell.as_ref().map(|cell| cell.raw.clone()),
                    message: format!("differs from line {line} of the same {what} {reference:?} ({earlier})"),
                });
            }
        }
        if group.id.is_none()
            && let Some(id) = common.id
        {
            group.id = Some((id, row.line));
        }
        group.lines.push(row.line);
        for (name, value, cell) in values {
            if !group.values.iter().any(|(earlier, _, _)| *earlier == name) {
                group.values.push((name, value, cell));
            }
        }
        for (member, cell) in members {
            if !group.members.iter().any(|(earlier, _)| *earlier == member) {
                group.members.push((member, cell));
            }
        }
        for organiser in organisers {
            if !group.organisers.iter().any(|(earlier, _, _)| *earlier == organiser.0) {
                group.organisers.push(organiser);
            }
        }
        for partner in partners {
            if !group.partners.iter().any(|(earlier, _)| *earlier == partner) {
                group.partners.push((partner, row.cell(Field::Partners, "")));
            }
        }
        for principle in principle_list {
            if !group.principles.iter().any(|(earlier, _)| *earlier == principle) {
                group.principles.push((principle, row.cell(Field::Principles, "")));
            }
        }
        Ok(())
    }

    fn single(
        &mut self,
        id: Option<String>,
        movement: String,
        time: DateTime<FixedOffset>,
        data: Map<String, Value>,
        line: u64,
        cells: Vec<Cell>,
    ) {
        let event = envelope(id, &self.options.source, self.kind.event_type(), &movement, time, Value::Object(data));
        self.singles.push(Built { event, lines: vec![line], locations: Vec::new(), cells });
    }

    /// The events built, and a problem for each row of a meeting or action
    /// held back.
    pub(super) fn finish(self) -> (Vec<Built>, Vec<Problem>) {
        let mut events = self.singles;
        let mut problems = Vec::new();
        let list_name = if self.kind == Kind::Meetings { "attendees" } else { "participants" };
        let what = if self.kind == Kind::Meetings { "meeting" } else { "action" };
        for group in self.groups {
            let held = self.held_back.iter().find(|held| {
                held.reference == group.reference
                    && held.movement.as_ref().is_none_or(|movement| *movement == group.movement)
                    && held.local_date.is_none_or(|date| date == group.local_date)
            });
            if let Some(held) = held {
                problems.extend(group.lines.iter().map(|line| Problem {
                    record: None,
                    line: *line,
                    column: None,
                    value: None,
                    message: format!(
                        "not imported: line {} of the same {what} {:?} has a problem; fix it and import again",
                        held.line, group.reference
                    ),
                }));
                continue;
            }
            let mut cells = group.cells;
            let mut data = Map::new();
            let mut members = Vec::new();
            for (index, (member, cell)) in group.members.into_iter().enumerate() {
                if let Some(mut cell) = cell {
                    cell.pointer = format!("/data/{list_name}/{index}");
                    cells.push(cell);
                }
                members.push(Value::from(member));
            }
            data.insert(list_name.into(), members.into());
            let mut organisers = Vec::new();
            for (index, (participant, role, cell)) in group.organisers.into_iter().enumerate() {
                if let Some(mut cell) = cell {
                    cell.pointer = format!("/data/organisers/{index}");
                    cells.push(cell);
                }
                organisers.push(json!({ "participant": participant, "role": role }));
            }
            data.insert("organisers".into(), organisers.into());
            for (name, value, cell) in group.values {
                data.insert(name.into(), value);
                cells.extend(cell);
            }
            for (name, list) in [("partners", group.partners), ("principles", group.principles)] {
                if list.is_empty() {
                    continue;
                }
                let mut values = Vec::new();
                for (index, (value, cell)) in list.into_iter().enumerate() {
                    if let Some(mut cell) = cell {
                        cell.pointer = format!("/data/{name}/{index}");
                        cells.push(cell);
                    }
                    values.push(Value::from(value));
                }
                data.insert(name.into(), values.into());
            }
            let id = match group.id {
                Some((id, _)) => Some(id),
                None if self.grouped => {
                    Some(format!("csv-{}", uuid::Uuid::new_v5(&self.namespace, group.key.as_bytes())))
                }
                None => None,
            };
            let event =
                envelope(id, &self.options.source, self.kind.event_type(), &group.movement, group.time, data.into());
            events.push(Built { event, lines: group.lines, locations: Vec::new(), cells });
        }
        events.sort_by_key(|built| built.lines[0]);
        // Content ids, with an occurrence counter for identical rows.
        let mut seen: HashMap<uuid::Uuid, u32> = HashMap::new();
        for built in &mut events {
            if built.event.get("id").is_some() {
                continue;
            }
            let content = uuid::Uuid::new_v5(&self.namespace, canonical(&built.event).as_bytes());
            let occurrence = seen.entry(content).or_insert(0);
            *occurrence += 1;
            let id = if *occurrence == 1 {
                content
            } else {
                uuid::Uuid::new_v5(&self.namespace, format!("{content}#{occurrence}").as_bytes())
            };
            built.event["id"] = format!("csv-{id}").into();
        }
        (events, problems)
    }
}

/// JSON with object keys sorted, whatever order `serde_json` keeps them
/// in (its `preserve_order` feature may be switched on by any crate of a
/// build), so content ids never change with the build.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(fields) => {
            let mut keys: Vec<&String> = fields.keys().collect();
            keys.sort();
            let fields: Vec<String> =
                keys.iter().map(|key| format!("{}:{}", Value::from(key.as_str()), canonical(&fields[*key]))).collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// The UUIDv5 namespace of a source's ids: an import's ids depend on its
/// source, and ingest deduplicates by (source, id).
pub(super) fn namespace(source: &str) -> uuid::Uuid {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("momentum-import:{source}").as_bytes())
}

/// A CloudEvent; without `id` when it is `None` (a content id is added
/// later, over this form).
pub(super) fn envelope(
    id: Option<String>,
    source: &str,
    kind: &str,
    movement: &str,
    time: DateTime<FixedOffset>,
    data: Value,
) -> Value {
    let mut event = json!({
        "specversion": "1.0",
        "source": source,
        "type": kind,
        "subject": movement,
        "time": time.to_rfc3339(),
        "data": data,
    });
    if let Some(id) = id {
        event["id"] = id.into();
    }
    event
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::Utc;

    use super::*;
    use crate::import::file::{Parsed, parse};
    use crate::import::tests::{options, read};

    fn ids(parsed: &Parsed) -> Vec<String> {
        parsed.events.iter().map(|built| built.event["id"].as_str().unwrap().to_owned()).collect()
    }

    #[test]
    fn hours_rows_become_events_with_their_fields() {
        let parsed = read(
            "Date,Volunteer,Hours,Activity,Area,Principles,Notes\n\
             05/03/2026,v-12,2.5,befriending,Easton,Bring people together; share_power,first visit\n",
        );
        assert_eq!(parsed.kind, Some(Kind::Hours));
        assert_eq!(parsed.ignored_columns, vec!["Notes"]);
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        let event = &parsed.events[0].event;
        assert_eq!(event["type"], "volunteer.hours_logged");
        assert_eq!(event["subject"], "alpha");
        assert_eq!(event["source"], "urn:partner:test");
        assert_eq!(event["time"], "2026-03-05T12:00:00+00:00");
        assert_eq!(
            event["data"],
            json!({ "participant": "v-12", "hours": 2.5, "activity": "befriending", "area": "Easton",
                    "principles": ["bring_people_together", "share_power"] })
        );
        let now = DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z").unwrap().with_timezone(&Utc);
        momentum_domain::Validator::new().unwrap().validate(event, now).unwrap();
    }

    #[test]
    fn ids_are_stable_and_identical_rows_get_their_own() {
        let text = "date,volunteer,hours\n2026-03-05,v-1,2\n2026-03-05,v-2,2\n2026-03-05,v-1,2\n";
        let first = ids(&read(text));
        assert_eq!(first, ids(&read(text)), "the same file gives the same ids");
        assert_eq!(first.iter().collect::<BTreeSet<_>>().len(), 3, "the repeated row has its own id");
        // Spelling does not matter, appending keeps earlier ids.
        let respelt = "Hours,Date,Person\n2.0,05/03/2026,v-1\n2,05/03/2026,v-2\n2,2026-03-05,v-1\n3,2026-03-06,v-9\n";
        let second = ids(&read(respelt));
        assert_eq!(second[..3], first[..]);
        assert!(!first.contains(&second[3]));
        // Another source, other ids.
        let mut other = options(None);
        other.source = "urn:partner:other".into();
        let third = parse(text.as_bytes(), &other).unwrap();
        assert_ne!(ids(&third)[0], first[0]);
        // An id column wins.
        let with_id = read("id,date,volunteer,hours\nrow-1,2026-03-05,v-1,2\n");
        assert_eq!(ids(&with_id), vec!["row-1"]);
        assert!(first.iter().all(|id| id.starts_with("csv-") && id.len() <= 128));
        // Partners re-import files months later: the scheme must not drift.
        assert_eq!(
            first[0], "csv-85e31b5d-1e6f-5b2d-921b-b4e7c803a4fa",
            "the id scheme changed: re-imports would double count"
        );
        assert_eq!(
            canonical(&json!({ "b": [1, { "d": 2, "c": "x" }], "a": null })),
            r#"{"a":null,"b":[1,{"c":"x","d":2}]}"#
        );
    }

    #[test]
    fn rows_of_one_meeting_are_grouped_by_reference_movement_and_date() {
        let text = "date,meeting,attendee,organiser,organiser role,area,kind,principles,duration\n\
                    2026-03-03,walk,p-1,o-1,professional,Harehills,walk,bring_people_together,60\n\
                    2026-03-03,walk,p-2,,,,,,\n\
                    2026-03-03,plan,p-1,o-2,,Armley,planning,share_power,90\n\
                    2026-03-10,walk,p-3,o-1,professional,Harehills,walk,,60\n\
                    2026-03-03,walk,p-2,,,,,,\n\
                    2026-03-03,walk,p-4,,,Armley,,,\n";
        let parsed = read(&text.replace(",Armley,,,", ",Harehills,,,"));
        assert_eq!(parsed.kind, Some(Kind::Meetings));
        assert_eq!(parsed.events.len(), 3);
        let walk = &parsed.events[0];
        assert_eq!(walk.lines, vec![2, 3, 6, 7]);
        assert_eq!(walk.event["data"]["attendees"], json!(["p-1", "p-2", "p-4"]));
        assert_eq!(walk.event["data"]["organisers"], json!([{ "participant": "o-1", "role": "professional" }]));
        assert_eq!(walk.event["data"]["duration_minutes"], 60);
        assert_eq!(parsed.events[1].event["data"]["organisers"][0]["role"], "citizen");
        assert_eq!(parsed.events[2].event["data"]["attendees"], json!(["p-3"]));
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        // The group's id does not depend on its rows.
        let fewer = read(&text.lines().take(2).collect::<Vec<_>>().join("\n"));
        assert_eq!(fewer.events[0].event["id"], walk.event["id"]);

        // A row that disagrees with its meeting holds the whole meeting
        // back: posted without it, the meeting would be a duplicate once
        // the row was fixed, and the row's attendee would be lost.
        let disagreeing = read(text);
        assert_eq!(disagreeing.events.len(), 2, "only the other meetings");
        assert!(disagreeing.events.iter().all(|built| built.event["id"] != walk.event["id"]));
        let lines: Vec<u64> = disagreeing.problems.iter().map(|problem| problem.line).collect();
        assert_eq!(lines, vec![2, 3, 6, 7]);
        assert!(disagreeing.problems[3].message.contains("differs from line 2"), "{}", disagreeing.problems[3]);
        assert!(
            disagreeing.problems[0].message.contains("line 7 of the same meeting \"walk\""),
            "{}",
            disagreeing.problems[0]
        );
        assert_eq!(
            walk.event["id"], "csv-88727db7-b8e2-5603-b0c1-6373b1a2bda7",
            "the id scheme changed: re-imports would double count"
        );
    }

    #[test]
    fn a_meeting_row_whose_date_cannot_be_read_holds_back_that_meeting_on_every_date_and_no_other() {
        let text = "date,meeting,attendee\n\
                    2026-03-03,walk,p-1\n\
                    03/33/2026,walk,p-2\n\
                    2026-03-10,walk,p-3\n\
                    2026-03-03,plan,p-1\n";
        let parsed = read(text);
        assert_eq!(parsed.events.len(), 1);
        assert_eq!(parsed.events[0].lines, vec![5], "only the other meeting is posted");
        let lines: Vec<u64> = parsed.problems.iter().map(|problem| problem.line).collect();
        assert_eq!(lines, vec![2, 3, 4]);
        assert!(parsed.problems[0].message.starts_with("not imported: line 3"), "{}", parsed.problems[0]);
    }

    #[test]
    fn meetings_with_a_list_column_and_actions_per_participant() {
        let parsed = read(
            "date,attendees,organisers,partners\n\
             2026-03-03,p-1; p-2 ;p-3,o-1 (partner staff);o-2,nhs-trust;council\n",
        );
        let data = &parsed.events[0].event["data"];
        assert_eq!(data["attendees"], json!(["p-1", "p-2", "p-3"]));
        assert_eq!(
            data["organisers"],
            json!([{ "participant": "o-1", "role": "partner_staff" }, { "participant": "o-2", "role": "citizen" }])
        );
        assert_eq!(data["partners"], json!(["nhs-trust", "council"]));
        let parsed = read(
            "date,action,participant,reach,kind\n2026-03-03,petition,p-1,1200,petition\n2026-03-03,petition,p-2,1200,\n",
        );
        assert_eq!(parsed.kind, Some(Kind::Actions));
        assert_eq!(parsed.events.len(), 1);
        assert_eq!(parsed.events[0].event["data"]["participants"], json!(["p-1", "p-2"]));
        assert_eq!(parsed.events[0].event["data"]["reach"], 1200);
        let error = parse(b"date,attendee\n2026-03-03,p-1\n", &options(Some(Kind::Meetings))).unwrap_err();
        assert!(error.contains("`meeting` column"), "{error}");
    }
}
