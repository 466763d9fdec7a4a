//! The header row: each column's [`Field`] (names matched ignoring case,
//! spaces, hyphens and underscores, with the synonyms of [`SYNONYMS`]), the
//! [`Kind`] of rows a header implies and the columns it needs, and a data
//! [`Row`] read through the header.

use std::collections::HashMap;

use super::problems::Problem;

/// What a file's rows are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Kind {
    Hours,
    Meetings,
    Actions,
    Joins,
}

impl Kind {
    pub(super) fn event_type(self) -> &'static str {
        match self {
            Kind::Hours => "volunteer.hours_logged",
            Kind::Meetings => "meeting.held",
            Kind::Actions => "collective_action.taken",
            Kind::Joins => "participant.joined",
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Hours => "hours",
            Kind::Meetings => "meetings",
            Kind::Actions => "actions",
            Kind::Joins => "joins",
        }
    }
}

/// A column the importer understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Field {
    Id,
    Date,
    Time,
    Movement,
    Participant,
    Attendee,
    Attendees,
    Participants,
    Hours,
    Activity,
    Area,
    Principles,
    Meeting,
    Action,
    Organiser,
    OrganiserRole,
    Organisers,
    Category,
    Partners,
    DurationMinutes,
    Reach,
    Role,
    Channel,
}

/// Each column and the header names (normalised: lower case, words joined
/// by `_`) that mean it.
const SYNONYMS: &[(Field, &[&str])] = &[
    (Field::Id, &["id", "event_id", "row_id"]),
    (
        Field::Date,
        &[
            "date",
            "datetime",
            "date_time",
            "when",
            "day",
            "timestamp",
            "session_date",
            "meeting_date",
            "action_date",
            "date_joined",
            "joined_on",
            "joined",
            "signup_date",
            "sign_up_date",
        ],
    ),
    (Field::Time, &["time", "start_time", "start", "time_of_day"]),
    (Field::Movement, &["movement", "movement_id", "subject"]),
    (
        Field::Participant,
        &[
            "participant",
            "participant_id",
            "participant_ref",
            "volunteer",
            "volunteer_id",
            "volunteer_ref",
            "person",
            "person_id",
            "member",
            "member_id",
            "name",
            "who",
        ],
    ),
    (Field::Attendee, &["attendee", "attendee_id", "attendee_ref"]),
    (Field::Attendees, &["attendees", "attendee_list", "attendees_list"]),
    (Field::Participants, &["participants", "participant_list", "participants_list", "volunteers", "people"]),
    (Field::Hours, &["hours", "hrs", "hours_given", "hours_volunteered", "volunteer_hours", "duration_hours"]),
    (Field::Activity, &["activity", "task", "activity_type"]),
    (Field::Area, &["area", "location", "place", "ward", "neighbourhood", "neighborhood", "locality"]),
    (Field::Principles, &["principles", "principle", "hasm_principles"]),
    (
        Field::Meeting,
        &["meeting", "meeting_ref", "meeting_id", "meeting_reference", "session", "session_ref", "session_id"],
    ),
    (Field::Action, &["action", "action_ref", "action_id", "action_reference", "campaign"]),
    (
        Field::Organiser,
        &["organiser", "organizer", "organiser_id", "organizer_id", "facilitator", "lead", "host", "led_by"],
    ),
    (Field::OrganiserRole, &["organiser_role", "organizer_role", "facilitator_role", "lead_role"]),
    (Field::Organisers, &["organisers", "organizers", "facilitators", "leads"]),
    (Field::Category, &["kind", "type", "meeting_kind", "meeting_type", "action_kind", "action_type", "category"]),
    (Field::Partners, &["partners", "partner", "partner_orgs", "partner_organisations", "partner_organizations"]),
    (Field::DurationMinutes, &["duration_minutes", "duration", "minutes", "duration_mins", "length_minutes"]),
    (Field::Reach, &["reach", "people_reached", "reached"]),
    (Field::Role, &["role", "participant_role", "joined_as"]),
    (Field::Channel, &["channel", "referral", "referral_channel", "heard_via", "how_heard"]),
];

/// A header name in the form [`SYNONYMS`] lists: trimmed, lower case,
/// runs of spaces, hyphens, dots and underscores as one `_`.
pub(super) fn normalise_name(name: &str) -> String {
    let mut out = String::new();
    for character in name.trim().trim_start_matches('\u{feff}').chars() {
        if character.is_whitespace() || matches!(character, '_' | '-' | '.') {
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
        } else {
            out.extend(character.to_lowercase());
        }
    }
    out.trim_end_matches('_').to_owned()
}

fn field_of(name: &str) -> Option<Field> {
    let name = normalise_name(name);
    SYNONYMS.iter().find(|(_, names)| names.contains(&name.as_str())).map(|(field, _)| *field)
}

/// Where a part of an event came from: the JSON Pointer of the part, and
/// the line, column and cell it was read from.
#[derive(Clone, Debug)]
pub(super) struct Cell {
    pub(super) pointer: String,
    pub(super) line: u64,
    pub(super) column: String,
    pub(super) raw: String,
}

/// The header row, mapped.
#[derive(Debug)]
pub(super) struct Header {
    /// The field of each column, if any.
    columns: Vec<Option<Field>>,
    /// The column names as written.
    names: Vec<String>,
}

impl Header {
    pub(super) fn map(names: Vec<String>) -> Result<Header, String> {
        let mut columns = Vec::with_capacity(names.len());
        let mut seen: HashMap<Field, &str> = HashMap::new();
        for name in &names {
            let field = field_of(name);
            if let Some(field) = field
                && let Some(earlier) = seen.insert(field, name)
            {
                return Err(format!("the columns {earlier:?} and {name:?} mean the same; keep one"));
            }
            columns.push(field);
        }
        Ok(Header { columns, names })
    }

    pub(super) fn has(&self, field: Field) -> bool {
        self.columns.contains(&Some(field))
    }

    fn column(&self, field: Field) -> Option<usize> {
        self.columns.iter().position(|column| *column == Some(field))
    }

    pub(super) fn detect_kind(&self) -> Option<Kind> {
        if self.has(Field::Hours) {
            Some(Kind::Hours)
        } else if self.has(Field::Attendee) || self.has(Field::Attendees) || self.has(Field::Meeting) {
            Some(Kind::Meetings)
        } else if self.has(Field::Action) || self.has(Field::Participants) || self.has(Field::Reach) {
            Some(Kind::Actions)
        } else if self.has(Field::Role) && self.has(Field::Participant) {
            Some(Kind::Joins)
        } else {
            None
        }
    }

    /// Checks the columns `kind` needs; returns the names of the columns
    /// that are ignored.
    pub(super) fn check(&self, kind: Kind) -> Result<Vec<String>, String> {
        let need = |field: Field, what: &str| {
            if self.has(field) { Ok(()) } else { Err(format!("{}: the header has no {what} column", kind.name())) }
        };
        need(Field::Date, "`date`")?;
        let used: &[Field] = match kind {
            Kind::Hours => {
                need(Field::Participant, "`participant` (or `volunteer`, `person`)")?;
                need(Field::Hours, "`hours`")?;
                &[Field::Participant, Field::Hours, Field::Activity, Field::Area, Field::Principles]
            }
            Kind::Joins => {
                need(Field::Participant, "`participant` (or `volunteer`, `person`)")?;
                need(Field::Role, "`role`")?;
                &[Field::Participant, Field::Role, Field::Area, Field::Channel]
            }
            Kind::Meetings => {
                let per_attendee = self.has(Field::Attendee) || self.has(Field::Participant);
                if !self.has(Field::Attendees) && !per_attendee {
                    return Err("meetings: the header needs an `attendees` list column, or `meeting` and \
                                `attendee` columns (one row per attendee)"
                        .to_owned());
                }
                if !self.has(Field::Attendees) && !self.has(Field::Meeting) {
                    return Err("meetings: one row per attendee needs a `meeting` column (a reference \
                                grouping the rows of one meeting), or use an `attendees` list column"
                        .to_owned());
                }
                &[
                    Field::Meeting,
                    Field::Attendee,
                    Field::Participant,
                    Field::Attendees,
                    Field::Organiser,
                    Field::OrganiserRole,
                    Field::Organisers,
                    Field::Area,
                    Field::Category,
                    Field::Partners,
                    Field::Principles,
                    Field::DurationMinutes,
                ]
            }
            Kind::Actions => {
                if !self.has(Field::Participants) && !self.has(Field::Participant) {
                    return Err("actions: the header needs a `participants` list column, or `action` and \
                                `participant` columns (one row per participant)"
                        .to_owned());
                }
                if !self.has(Field::Participants) && !self.has(Field::Action) {
                    return Err("actions: one row per participant needs an `action` column (a reference \
                                grouping the rows of one action), or use a `participants` list column"
                        .to_owned());
                }
                need(Field::Reach, "`reach`")?;
                &[
                    Field::Action,
                    Field::Participant,
                    Field::Participants,
                    Field::Reach,
                    Field::Organiser,
                    Field::OrganiserRole,
                    Field::Organisers,
                    Field::Category,
                    Field::Partners,
                    Field::Area,
                    Field::Principles,
                ]
            }
        };
        let common = [Field::Id, Field::Date, Field::Time, Field::Movement];
        Ok(self
            .columns
            .iter()
            .zip(&self.names)
            .filter(|(field, name)| {
                !name.trim().is_empty() && !field.is_some_and(|field| common.contains(&field) || used.contains(&field))
            })
            .map(|(_, name)| name.clone())
            .collect())
    }
}

/// One data row.
pub(super) struct Row<'a> {
    pub(super) line: u64,
    pub(super) record: &'a csv::StringRecord,
    pub(super) header: &'a Header,
}

impl Row<'_> {
    /// The trimmed cell of `field` and its column name, if not empty.
    pub(super) fn get(&self, field: Field) -> Option<(&str, &str)> {
        let column = self.header.column(field)?;
        let cell = self.record.get(column)?.trim();
        (!cell.is_empty()).then(|| (cell, self.header.names[column].trim()))
    }

    pub(super) fn problem(&self, field: Field, message: impl Into<String>) -> Problem {
        let (value, column) = match self.get(field) {
            Some((value, column)) => (Some(value.to_owned()), Some(column.to_owned())),
            None => (None, self.header.column(field).map(|column| self.header.names[column].trim().to_owned())),
        };
        Problem { record: None, line: self.line, column, value, message: message.into() }
    }

    pub(super) fn cell(&self, field: Field, pointer: impl Into<String>) -> Option<Cell> {
        self.get(field).map(|(raw, column)| Cell {
            pointer: pointer.into(),
            line: self.line,
            column: column.to_owned(),
            raw: raw.to_owned(),
        })
    }

    /// Cells past the header's last column must be empty.
    pub(super) fn check_width(&self) -> Result<(), Problem> {
        let extra = self.record.iter().skip(self.header.names.len()).find(|cell| !cell.trim().is_empty());
        match extra {
            Some(cell) => Err(Problem {
                record: None,
                line: self.line,
                column: None,
                value: Some(cell.trim().to_owned()),
                message: "has a cell to the right of the header's last column".to_owned(),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::file::parse;
    use crate::import::tests::options;

    #[test]
    fn header_names_ignore_case_spaces_and_accept_synonyms() {
        assert_eq!(field_of("Volunteer ID"), Some(Field::Participant));
        assert_eq!(field_of(" PERSON "), Some(Field::Participant));
        assert_eq!(field_of("Duration (minutes)"), None);
        assert_eq!(field_of("duration-minutes"), Some(Field::DurationMinutes));
        assert_eq!(field_of("Organizer_Role"), Some(Field::OrganiserRole));
        assert_eq!(field_of("\u{feff}Date"), Some(Field::Date));
        assert_eq!(field_of("notes"), None);
        let error = Header::map(vec!["volunteer".into(), "Participant".into()]).unwrap_err();
        assert!(error.contains("mean the same"), "{error}");
    }

    #[test]
    fn the_kind_is_detected_from_the_header() {
        let kind = |header: &str| Header::map(header.split(',').map(str::to_owned).collect()).unwrap().detect_kind();
        assert_eq!(kind("Date,Volunteer,Hours"), Some(Kind::Hours));
        assert_eq!(kind("date,meeting,attendee"), Some(Kind::Meetings));
        assert_eq!(kind("date,attendees"), Some(Kind::Meetings));
        assert_eq!(kind("date,participants,reach"), Some(Kind::Actions));
        assert_eq!(kind("date,person,role"), Some(Kind::Joins));
        assert_eq!(kind("date,person"), None);
        let error = parse(b"date,person\n2026-03-05,v-1\n", &options(None)).unwrap_err();
        assert!(error.contains("--kind"), "{error}");
        let error = parse(b"date,person\n2026-03-05,v-1\n", &options(Some(Kind::Hours))).unwrap_err();
        assert!(error.contains("`hours`"), "{error}");
    }
}
