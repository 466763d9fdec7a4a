//! `momentum import`: a spreadsheet (CSV) of volunteer hours, meetings,
//! collective actions or sign-ups, turned into events and posted through
//! the ingestion API, for partners without a system that can post events.
//!
//! # Reading the file
//!
//! The first row is a header. Columns are matched by name, ignoring case,
//! spaces, hyphens and underscores, with common synonyms (`volunteer`,
//! `person` and `participant` are the same column); see [`SYNONYMS`] and the
//! command's `--help`. A UTF-8 byte order mark is skipped, the delimiter
//! (`,`, `;` from European Excel, or a tab) is detected from the header row,
//! blank lines and rows of empty cells are skipped, and empty cells past the
//! header's last column are ignored. Line numbers are the file's own, so a
//! problem at `line 17` is on the 17th line in a text editor (and the 17th
//! row in a spreadsheet unless a cell holds a line break).
//!
//! Meetings and actions come in two layouts: one row per meeting with a
//! `;`-separated `attendees` (`participants`) column, or one row per
//! attendee with a `meeting` (`action`) reference column; rows with the same
//! movement, reference and local date are one meeting.
//!
//! # Stable ids
//!
//! Every event gets an id that depends only on the source and the row, so
//! importing the same file again is answered `duplicate` for every event and
//! changes no figure, and re-importing a file with rows appended posts only
//! the new rows:
//!
//! - an `id` column, when there is one, is used as it is;
//! - a grouped meeting or action is `csv-` + UUIDv5 over (type, movement,
//!   reference, local date), so its rows may be in any order, and its id
//!   does not change when an attendee row is added later (which means such
//!   an added attendee is *not* posted: the server already holds that
//!   meeting. To change an imported meeting, retract it and give it a new
//!   reference);
//! - any other row is `csv-` + UUIDv5 over its event as built (type,
//!   movement, time and data, so the spelling of dates, numbers and column
//!   names does not matter), plus an occurrence counter: the second of two
//!   identical rows (two equal hour logs of one person on one day are
//!   plausible) gets its own id.
//!
//! The UUIDv5 namespace is itself derived from `--source`, and ingest
//! deduplicates by (source, id). A row that is *edited* after it was
//! imported gets a new id, so both versions count: retract the old one.
//!
//! # Posting
//!
//! Every event is checked with [`momentum_domain::Validator`] before
//! posting; the events that pass go in batches (at most `--batch-size`
//! events and about 3 MiB a request), retried on 408, 429, 502, 503, 504
//! and connection errors (at most 5 attempts, honouring `Retry-After` up to
//! 60 s; retrying is safe because of the ids). Each problem, found here or by the server, is
//! reported against the line (and column) it came from; nothing is dropped
//! silently, and the command exits non-zero if any row had a problem.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value, json};

const HELP: &str = "\
HEADER CONVENTION
  The first row names the columns. Names ignore case, spaces, hyphens and
  underscores (\"Volunteer ID\" = volunteer_id); synonyms in brackets. Lists
  are ';'-separated within a cell. Unknown columns are reported and ignored.

  every kind  date (when, day, session date, …), optional movement (subject),
              id (event id), time (start time) for dates without a time
  hours       participant (volunteer, person, member, name, …), hours (hrs),
              optional activity (task), area (location, ward), principles
  meetings    one row per attendee: meeting (meeting ref, session), attendee
              (or participant), or one row per meeting: attendees (a list);
              optional organiser, organiser_role, organisers (a list of
              \"ref\" or \"ref (role)\"), area, kind (type), partners,
              principles, duration_minutes (duration, minutes)
  actions     participants (a list) or one row per participant with action
              (action ref, campaign) and participant; reach (people reached);
              optional organiser(s), organiser_role, kind, partners, area,
              principles
  joins       participant, role (citizen | professional | partner_staff);
              optional area, channel (referral, heard via)

  Dates: YYYY-MM-DD, DD/MM/YYYY (UK order; also DD.MM.YYYY) or RFC 3339; a
  date without a time is taken at 12:00 in --time-zone. Hours: 2.5, 2,5 or
  1:30. Organiser roles default to citizen. Principles: the eight names,
  spaces allowed (\"Bring people together\").

  Rows of one meeting (same movement, meeting and date) become one event.
  Ids are stable: importing the same file twice adds nothing, and appending
  rows then importing again adds only the new rows.

EXAMPLE
  date,volunteer,hours,activity,area,principles
  05/03/2026,v-12,2.5,befriending,Easton,bring_people_together
  2026-03-06,v-31,1:30,admin,,

  momentum import hours.csv --source urn:partner:age-uk-bristol \\
      --movement bristol-befriending --token \"$PARTNER_TOKEN\"";

#[derive(Debug, clap::Args)]
#[command(after_long_help = HELP, after_help = "See --help for the header convention and an example.")]
pub struct ImportArgs {
    /// The CSV file (UTF-8; `,`, `;` or tab delimited).
    file: PathBuf,
    /// What the rows are; detected from the header when not given.
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    /// The partner's CloudEvents source, e.g. urn:partner:age-uk-bristol.
    #[arg(long)]
    source: String,
    /// The movement of rows that have no `movement` column or cell.
    #[arg(long)]
    movement: Option<String>,
    /// Base URL of the ingestion service.
    #[arg(long, env = "MOMENTUM_INGEST_URL", default_value = "http://127.0.0.1:8080")]
    ingest_url: String,
    /// A token that may post events of this source and movement.
    #[arg(long, env = "MOMENTUM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Events per request (1 to 1000).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=1000))]
    batch_size: u16,
    /// Read and check every row, post nothing.
    #[arg(long)]
    dry_run: bool,
    /// IANA time zone of dates and times without an offset.
    #[arg(long, default_value = "Europe/London", value_parser = parse_time_zone)]
    time_zone: Tz,
    /// Also write the problems to this CSV file (line,column,value,problem).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Print each problem as it is found.
    #[arg(long, short)]
    verbose: bool,
}

fn parse_time_zone(text: &str) -> Result<Tz, String> {
    text.parse::<Tz>().map_err(|_| format!("{text:?} is not an IANA time zone such as Europe/London"))
}

/// What a file's rows are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Hours,
    Meetings,
    Actions,
    Joins,
}

impl Kind {
    fn event_type(self) -> &'static str {
        match self {
            Kind::Hours => "volunteer.hours_logged",
            Kind::Meetings => "meeting.held",
            Kind::Actions => "collective_action.taken",
            Kind::Joins => "participant.joined",
        }
    }

    fn name(self) -> &'static str {
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
enum Field {
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
fn normalise_name(name: &str) -> String {
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

/// The header row, mapped.
#[derive(Debug)]
struct Header {
    /// The field of each column, if any.
    columns: Vec<Option<Field>>,
    /// The column names as written.
    names: Vec<String>,
}

impl Header {
    fn map(names: Vec<String>) -> Result<Header, String> {
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

    fn has(&self, field: Field) -> bool {
        self.columns.contains(&Some(field))
    }

    fn column(&self, field: Field) -> Option<usize> {
        self.columns.iter().position(|column| *column == Some(field))
    }

    fn detect_kind(&self) -> Option<Kind> {
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
    fn check(&self, kind: Kind) -> Result<Vec<String>, String> {
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

/// One problem with a row.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub line: u64,
    pub column: Option<String>,
    pub value: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "line {}: ", self.line)?;
        if let Some(column) = &self.column {
            write!(formatter, "{column}: ")?;
        }
        write!(formatter, "{}", self.message)?;
        if let Some(value) = &self.value {
            write!(formatter, " (got {value:?})")?;
        }
        Ok(())
    }
}

/// Where a part of an event came from: the JSON Pointer of the part, and
/// the line, column and cell it was read from.
#[derive(Clone, Debug)]
struct Cell {
    pointer: String,
    line: u64,
    column: String,
    raw: String,
}

/// An event built from one or more rows.
#[derive(Debug)]
pub struct Built {
    pub event: Value,
    /// The lines it was built from, in file order.
    pub lines: Vec<u64>,
    cells: Vec<Cell>,
}

impl Built {
    /// The problems an error at `pointer` means: one at the line and
    /// column the pointer came from, and one for each other line of the
    /// event (they are not imported either).
    fn problems(&self, pointer: &str, message: &str) -> Vec<Problem> {
        let cell = self
            .cells
            .iter()
            .filter(|cell| {
                pointer == cell.pointer
                    || (pointer.starts_with(&cell.pointer) && pointer[cell.pointer.len()..].starts_with('/'))
            })
            .max_by_key(|cell| cell.pointer.len());
        let message = friendly(pointer, message);
        let first = match cell {
            Some(cell) => {
                Problem { line: cell.line, column: Some(cell.column.clone()), value: Some(cell.raw.clone()), message }
            }
            None => Problem {
                line: self.lines[0],
                column: None,
                value: None,
                message: if matches!(pointer, "" | "/data") { message } else { format!("{pointer}: {message}") },
            },
        };
        let mut problems = vec![first.clone()];
        for line in &self.lines {
            if *line != first.line {
                problems.push(Problem {
                    line: *line,
                    column: None,
                    value: None,
                    message: format!("not imported: its {} was rejected (see line {})", self.what(), first.line),
                });
            }
        }
        problems
    }

    fn what(&self) -> &'static str {
        match self.event["type"].as_str() {
            Some("meeting.held") => "meeting",
            Some("collective_action.taken") => "action",
            _ => "event",
        }
    }
}

/// Rewrites the validator's messages ("0 is less than or equal to the
/// minimum of 0") the way a spreadsheet user reads them ("must be greater
/// than 0"); the value is shown beside them anyway.
fn friendly(pointer: &str, message: &str) -> String {
    let after = |marker: &str| message.find(marker).map(|at| &message[at + marker.len()..]);
    if let Some(limit) = after(" is less than or equal to the minimum of ") {
        format!("must be greater than {limit}")
    } else if let Some(limit) = after(" is greater than or equal to the maximum of ") {
        format!("must be less than {limit}")
    } else if let Some(limit) = after(" is greater than the maximum of ") {
        format!("must be at most {limit}")
    } else if let Some(limit) = after(" is less than the minimum of ") {
        format!("must be at least {limit}")
    } else if pointer.contains("/principles") && message.contains(" is not one of ") {
        "must be one of the eight principles: mobilise_citizens, shift_control, collaborate_widely, share_power, \
         change_culture, grow_from_local, build_momentum, bring_people_together"
            .to_owned()
    } else if let Some(options) = after(" is not one of ") {
        format!("must be one of {options}")
    } else if let Some(limit) = after(" is longer than ") {
        format!("must be at most {limit}")
    } else if message.contains(" is shorter than ") {
        "must not be empty".to_owned()
    } else if pointer == "/subject" && message.contains(" does not match ") {
        "must be a movement id: lower-case letters, digits and hyphens".to_owned()
    } else if pointer == "/source" && message.contains(" does not match ") {
        "must be a URI without spaces".to_owned()
    } else if let Some(name) = message.strip_suffix(" is a required property") {
        format!("{} is missing: add the column or fill in the cell", name.trim_matches('"'))
    } else if message.contains("has non-unique elements") {
        "lists the same item twice".to_owned()
    } else {
        message.to_owned()
    }
}

/// Everything read from a file.
#[derive(Debug, Default)]
pub struct Parsed {
    pub kind: Option<Kind>,
    /// Data rows read (blank rows are not counted).
    pub rows: u64,
    pub events: Vec<Built>,
    pub problems: Vec<Problem>,
    /// Header names that mean nothing to the importer.
    pub ignored_columns: Vec<String>,
}

/// How to read a file.
#[derive(Clone, Debug)]
pub struct Options {
    pub kind: Option<Kind>,
    pub source: String,
    pub movement: Option<String>,
    pub time_zone: Tz,
}

/// The delimiter of a CSV text: whichever of `,`, `;` and tab occurs most
/// often outside quotes in its first non-blank line (`,` on a tie).
fn detect_delimiter(bytes: &[u8]) -> u8 {
    let line = bytes
        .split(|byte| *byte == b'\n')
        .find(|line| line.iter().any(|byte| !byte.is_ascii_whitespace()))
        .unwrap_or_default();
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for byte in line {
        match byte {
            b'"' => quoted = !quoted,
            b',' if !quoted => counts[0] += 1,
            b';' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let delimiters = [b',', b';', b'\t'];
    let best = (0..3).max_by_key(|index| (counts[*index], std::cmp::Reverse(*index))).unwrap_or(0);
    delimiters[best]
}

/// Reads a CSV file's bytes into events and problems. Errors only for
/// problems of the whole file (no header, a header that does not fit).
pub fn parse(bytes: &[u8], options: &Options) -> Result<Parsed, String> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(detect_delimiter(bytes))
        .has_headers(true)
        .flexible(true)
        .from_reader(bytes);
    let names: Vec<String> = match reader.headers() {
        Ok(headers) => headers.iter().map(str::to_owned).collect(),
        Err(error) => return Err(format!("cannot read the header row: {error}")),
    };
    if names.iter().all(|name| name.trim().is_empty()) {
        return Err("the file has no header row".to_owned());
    }
    let header = Header::map(names)?;
    let kind = match options.kind.or_else(|| header.detect_kind()) {
        Some(kind) => kind,
        None => {
            return Err("cannot tell from the header whether the rows are hours, meetings, actions or joins; \
                        pass --kind"
                .to_owned());
        }
    };
    let ignored_columns = header.check(kind)?;
    let mut parsed = Parsed { kind: Some(kind), ignored_columns, ..Parsed::default() };
    // The csv crate's own line count misses blank CRLF lines: count lines
    // up to the record's first byte instead.
    let newlines: Vec<usize> = bytes.iter().enumerate().filter(|(_, byte)| **byte == b'\n').map(|(at, _)| at).collect();
    let line_of = |byte: u64| {
        // A record's offset may point at the line break before it.
        let mut start = byte as usize;
        while bytes.get(start).is_some_and(|byte| matches!(byte, b'\r' | b'\n')) {
            start += 1;
        }
        newlines.partition_point(|at| *at < start) as u64 + 1
    };
    let mut builder = Builder::new(kind, options, &header);
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error.position().map_or(0, |position| line_of(position.byte()));
                parsed.rows += 1;
                let message = match error.kind() {
                    csv::ErrorKind::Utf8 { .. } => {
                        "is not UTF-8 text: save the spreadsheet as \"CSV UTF-8\"".to_owned()
                    }
                    _ => format!("cannot be read: {error}"),
                };
                parsed.problems.push(Problem { line, column: None, value: None, message });
                continue;
            }
        };
        if record.iter().all(|cell| cell.trim().is_empty()) {
            continue;
        }
        parsed.rows += 1;
        let line = record.position().map_or(0, |position| line_of(position.byte()));
        let row = Row { line, record: &record, header: &header };
        if let Err(problem) = builder.add(&row) {
            parsed.problems.push(problem);
        }
    }
    let (events, held_back) = builder.finish();
    parsed.events = events;
    parsed.problems.extend(held_back);
    parsed.problems.sort_by_key(|problem| problem.line);
    Ok(parsed)
}

/// One data row.
struct Row<'a> {
    line: u64,
    record: &'a csv::StringRecord,
    header: &'a Header,
}

impl Row<'_> {
    /// The trimmed cell of `field` and its column name, if not empty.
    fn get(&self, field: Field) -> Option<(&str, &str)> {
        let column = self.header.column(field)?;
        let cell = self.record.get(column)?.trim();
        (!cell.is_empty()).then(|| (cell, self.header.names[column].trim()))
    }

    fn problem(&self, field: Field, message: impl Into<String>) -> Problem {
        let (value, column) = match self.get(field) {
            Some((value, column)) => (Some(value.to_owned()), Some(column.to_owned())),
            None => (None, self.header.column(field).map(|column| self.header.names[column].trim().to_owned())),
        };
        Problem { line: self.line, column, value, message: message.into() }
    }

    fn cell(&self, field: Field, pointer: impl Into<String>) -> Option<Cell> {
        self.get(field).map(|(raw, column)| Cell {
            pointer: pointer.into(),
            line: self.line,
            column: column.to_owned(),
            raw: raw.to_owned(),
        })
    }

    /// Cells past the header's last column must be empty.
    fn check_width(&self) -> Result<(), Problem> {
        let extra = self.record.iter().skip(self.header.names.len()).find(|cell| !cell.trim().is_empty());
        match extra {
            Some(cell) => Err(Problem {
                line: self.line,
                column: None,
                value: Some(cell.trim().to_owned()),
                message: "has a cell to the right of the header's last column".to_owned(),
            }),
            None => Ok(()),
        }
    }
}

/// A date (and time) cell as an instant: RFC 3339; or a date as
/// `YYYY-MM-DD`, `DD/MM/YYYY`, `DD.MM.YYYY`, `YYYY/MM/DD`, optionally
/// followed by a time (`HH:MM` or `HH:MM:SS`), taken in `zone`; a date
/// without a time is at `time_of_day`, or 12:00.
pub fn parse_date(text: &str, time_of_day: Option<&str>, zone: Tz) -> Result<DateTime<FixedOffset>, String> {
    const EXPECTED: &str = "is not a date: write YYYY-MM-DD, DD/MM/YYYY or an RFC 3339 date-time";
    let text = text.trim();
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Ok(instant);
    }
    let (date_text, time_text) = match text.split_once(['T', ' ']) {
        Some((date, time)) => (date, Some(time.trim())),
        None => (text, None),
    };
    let parts: Vec<&str> = date_text.split(['-', '/', '.']).collect();
    let [a, b, c] = parts[..] else { return Err(EXPECTED.to_owned()) };
    let number = |part: &str| if part.chars().all(|c| c.is_ascii_digit()) { part.parse::<u32>().ok() } else { None };
    let (Some(x), Some(y), Some(z)) = (number(a), number(b), number(c)) else { return Err(EXPECTED.to_owned()) };
    // Year first (ISO), else day first (UK): never month first.
    let (year, month, day, year_text) = if a.len() == 4 { (x, y, z, a) } else { (z, y, x, c) };
    if year_text.len() != 4 {
        return Err("has a two-digit year: write the year in full, e.g. 05/03/2026".to_owned());
    }
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)
        .ok_or_else(|| format!("is not a calendar date (read as day {day}, month {month}, year {year})"))?;
    let time_text = time_text.or(time_of_day.map(str::trim)).filter(|text| !text.is_empty());
    let time = match time_text {
        None => NaiveTime::from_hms_opt(12, 0, 0).expect("noon exists"),
        Some(time_text) => ["%H:%M:%S%.f", "%H:%M", "%H.%M"]
            .iter()
            .find_map(|format| NaiveTime::parse_from_str(time_text, format).ok())
            .ok_or_else(|| format!("has a time {time_text:?} that is not HH:MM or HH:MM:SS"))?,
    };
    Ok(localise(NaiveDateTime::new(date, time), zone))
}

/// A local time in `zone`: the earlier of two in an autumn overlap, an
/// hour later in a spring gap.
fn localise(local: NaiveDateTime, zone: Tz) -> DateTime<FixedOffset> {
    match zone.from_local_datetime(&local).earliest() {
        Some(instant) => instant.fixed_offset(),
        None => localise(local + chrono::Duration::hours(1), zone),
    }
}

/// Hours as `2.5`, `2,5` or `1:30`.
pub fn parse_hours(text: &str) -> Result<f64, String> {
    const EXPECTED: &str = "must be a number of hours, such as 2.5 or 1:30";
    let text = text.trim();
    let hours = if let Some((hours, minutes)) = text.split_once(':') {
        let hours: u32 = hours.trim().parse().map_err(|_| EXPECTED.to_owned())?;
        let minutes: u32 = minutes.trim().parse().map_err(|_| EXPECTED.to_owned())?;
        if minutes >= 60 {
            return Err(EXPECTED.to_owned());
        }
        f64::from(hours) + f64::from(minutes) / 60.0
    } else {
        let text = if text.contains('.') { text.to_owned() } else { text.replace(',', ".") };
        text.parse::<f64>().map_err(|_| EXPECTED.to_owned())?
    };
    if !hours.is_finite() {
        return Err(EXPECTED.to_owned());
    }
    // Round to the millihour the projection keeps, so 1:20 does not carry
    // binary noise into the id.
    Ok((hours * 1000.0).round() / 1000.0)
}

/// A whole number, also written as `90.0` by a spreadsheet.
fn parse_whole(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(number) = text.parse::<i64>() {
        return Ok(number);
    }
    match text.parse::<f64>() {
        Ok(number) if number.fract() == 0.0 && number.abs() < 1e15 => Ok(number as i64),
        _ => Err("must be a whole number".to_owned()),
    }
}

/// A `;`-separated list cell.
fn split_list(text: &str) -> Vec<String> {
    text.split(';').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect()
}

/// `Partner staff` → `partner_staff`; `Bring people together` →
/// `bring_people_together`.
fn snake(text: &str) -> String {
    normalise_name(text)
}

/// An organiser list item: `ref` or `ref (role)`.
fn organiser_item(text: &str, default_role: &str) -> (String, String) {
    if let Some(stripped) = text.strip_suffix(')')
        && let Some((participant, role)) = stripped.rsplit_once('(')
        && !participant.trim().is_empty()
    {
        return (participant.trim().to_owned(), snake(role));
    }
    (text.trim().to_owned(), default_role.to_owned())
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
struct Builder<'a> {
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
    fn new(kind: Kind, options: &'a Options, header: &Header) -> Builder<'a> {
        let grouped = match kind {
            Kind::Meetings => header.has(Field::Meeting),
            Kind::Actions => header.has(Field::Action),
            Kind::Hours | Kind::Joins => false,
        };
        let namespace =
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("momentum-import:{}", options.source).as_bytes());
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
    fn add(&mut self, row: &Row) -> Result<(), Problem> {
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
        self.singles.push(Built { event, lines: vec![line], cells });
    }

    /// The events built, and a problem for each row of a meeting or action
    /// held back.
    fn finish(self) -> (Vec<Built>, Vec<Problem>) {
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
            events.push(Built { event, lines: group.lines, cells });
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

/// Principles as the schema spells them, without repeats.
fn principles(list: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for principle in split_list(list).iter().map(|principle| snake(principle)) {
        if !out.contains(&principle) {
            out.push(principle);
        }
    }
    out
}

/// A CloudEvent; without `id` when it is `None` (a content id is added
/// later, over this form).
fn envelope(
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

/// The counts of an import.
#[derive(Debug, Default)]
struct Outcome {
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    not_posted: u64,
    /// The highest stream sequence ingest answered, for `min_seq` reads.
    max_seq: u64,
}

/// Bodies stay well under ingest's 4 MiB limit.
const BODY_BYTES_MAX: usize = 3 * 1024 * 1024;
const ATTEMPTS_MAX: u32 = 5;

pub async fn run(arguments: ImportArgs) -> anyhow::Result<()> {
    if arguments.source.trim().is_empty() || arguments.source.chars().any(char::is_whitespace) {
        bail!("--source must be a URI without spaces, such as urn:partner:age-uk-bristol");
    }
    let bytes = std::fs::read(&arguments.file).with_context(|| format!("cannot read {}", arguments.file.display()))?;
    let options = Options {
        kind: arguments.kind,
        source: arguments.source.clone(),
        movement: arguments.movement.clone(),
        time_zone: arguments.time_zone,
    };
    let parsed =
        parse(&bytes, &options).map_err(|message| anyhow::anyhow!("{}: {message}", arguments.file.display()))?;
    let kind = parsed.kind.expect("parse sets the kind");
    let verbose = arguments.verbose;
    eprintln!("{}: {} rows of {}", arguments.file.display(), parsed.rows, kind.name());
    if !parsed.ignored_columns.is_empty() {
        eprintln!("ignoring columns that mean nothing for {}: {}", kind.name(), parsed.ignored_columns.join(", "));
    }
    let mut problems = parsed.problems;
    if verbose {
        problems.iter().for_each(|problem| eprintln!("{problem}"));
    }
    let events_built = parsed.events.len() as u64;

    // Client-side validation.
    let validator = momentum_domain::Validator::new().context("the embedded schemas do not compile")?;
    let now = Utc::now();
    let mut outcome = Outcome::default();
    let mut valid = Vec::new();
    for built in parsed.events {
        match validator.validate(&built.event, now) {
            Ok(_) => valid.push(built),
            Err(errors) => {
                outcome.rejected += 1;
                for problem in event_problems(&built, errors.iter().map(|e| (e.pointer.as_str(), e.message.as_str()))) {
                    if verbose {
                        eprintln!("{problem}");
                    }
                    problems.push(problem);
                }
            }
        }
    }

    let mut fatal = None;
    if !arguments.dry_run && !valid.is_empty() {
        fatal = post(&arguments, &valid, &mut outcome, &mut problems).await.err();
    }
    problems.sort_by_key(|problem| problem.line);

    if !problems.is_empty() {
        println!("problems:");
        for problem in &problems {
            println!("  {problem}");
        }
    }
    if let Some(path) = &arguments.report {
        write_report(path, &problems).with_context(|| format!("cannot write the report {}", path.display()))?;
    }
    let lines: BTreeSet<u64> = problems.iter().map(|problem| problem.line).collect();
    println!("rows read:      {}", parsed.rows);
    println!("events built:   {events_built}");
    if arguments.dry_run {
        println!("valid events:   {} (dry run: nothing posted)", valid.len());
    } else {
        println!("accepted:       {}", outcome.accepted);
        println!("duplicates:     {}", outcome.duplicates);
    }
    println!("rejected:       {} events", outcome.rejected);
    if outcome.not_posted > 0 {
        println!(
            "not posted:     {} events (run the import again: rows already posted count once)",
            outcome.not_posted
        );
    }
    let line_list = lines.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    println!(
        "rows with problems: {}{}",
        lines.len(),
        if lines.is_empty() { String::new() } else { format!(" (lines {line_list})") }
    );
    if outcome.max_seq > 0 {
        println!(
            "last stream sequence: {} (read with min_seq={} to see these events)",
            outcome.max_seq, outcome.max_seq
        );
    }
    if let Some(error) = fatal {
        return Err(error);
    }
    if !lines.is_empty() {
        bail!(
            "{} had problems and were not imported",
            if lines.len() == 1 { "1 row".to_owned() } else { format!("{} rows", lines.len()) }
        );
    }
    Ok(())
}

fn event_problems<'e>(built: &Built, errors: impl Iterator<Item = (&'e str, &'e str)>) -> Vec<Problem> {
    let mut problems: Vec<Problem> = Vec::new();
    for (pointer, message) in errors {
        for problem in built.problems(pointer, message) {
            if !problems.contains(&problem) {
                problems.push(problem);
            }
        }
    }
    // A line with a real reason does not also need "not imported".
    let reasons: BTreeSet<u64> =
        problems.iter().filter(|problem| !problem.message.starts_with("not imported")).map(|p| p.line).collect();
    problems.retain(|problem| !(problem.message.starts_with("not imported") && reasons.contains(&problem.line)));
    problems
}

fn write_report(path: &std::path::Path, problems: &[Problem]) -> anyhow::Result<()> {
    let mut writer = csv::Writer::from_path(path)?;
    writer.write_record(["line", "column", "value", "problem"])?;
    for problem in problems {
        writer.write_record([
            problem.line.to_string().as_str(),
            problem.column.as_deref().unwrap_or(""),
            problem.value.as_deref().unwrap_or(""),
            problem.message.as_str(),
        ])?;
    }
    writer.flush()?;
    Ok(())
}

/// Posts the events in batches; errors only when the service cannot take
/// them at all (unreachable after retries, a token it refuses).
async fn post(
    arguments: &ImportArgs,
    events: &[Built],
    outcome: &mut Outcome,
    problems: &mut Vec<Problem>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let url = format!("{}/v1/events", arguments.ingest_url.trim_end_matches('/'));
    let progress = Progress::new(events.len() as u64);
    let batches = batches(events, usize::from(arguments.batch_size));
    let mut posted = 0;
    for (position, range) in batches.iter().enumerate() {
        let batch = &events[range.clone()];
        let body = Value::from(batch.iter().map(|built| built.event.clone()).collect::<Vec<_>>()).to_string();
        let answer = match send(&client, &url, arguments.token.as_deref(), body, &progress).await {
            Ok(answer) => answer,
            Err(error) => {
                outcome.not_posted = (events.len() - posted) as u64;
                progress.finish();
                return Err(error);
            }
        };
        outcome.max_seq = outcome.max_seq.max(answer["max_seq"].as_u64().unwrap_or(0));
        let results = answer["results"].as_array().cloned().unwrap_or_default();
        for (index, built) in batch.iter().enumerate() {
            let result = results.iter().find(|result| result["index"].as_u64() == Some(index as u64));
            match result.and_then(|result| result["status"].as_str()) {
                Some("accepted") => outcome.accepted += 1,
                Some("duplicate") => outcome.duplicates += 1,
                status => {
                    outcome.rejected += 1;
                    let problem = &result.map_or(Value::Null, |result| result["problem"].clone());
                    let found = server_problems(built, problem, status);
                    for problem in found {
                        if arguments.verbose {
                            progress.println(&problem.to_string());
                        }
                        problems.push(problem);
                    }
                }
            }
        }
        posted += batch.len();
        progress.set(posted as u64, position + 1 == batches.len());
    }
    progress.finish();
    Ok(())
}

fn server_problems(built: &Built, problem: &Value, status: Option<&str>) -> Vec<Problem> {
    let errors: Vec<(String, String)> = problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|error| {
                    (
                        error["pointer"].as_str().unwrap_or_default().to_owned(),
                        error["message"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if errors.is_empty() {
        let reason = problem["detail"]
            .as_str()
            .or(problem["title"].as_str())
            .map_or_else(|| format!("the server answered {}", status.unwrap_or("nothing for it")), str::to_owned);
        return event_problems(built, std::iter::once(("", format!("rejected by the server: {reason}").as_str())));
    }
    event_problems(built, errors.iter().map(|(pointer, message)| (pointer.as_str(), message.as_str())))
}

/// Consecutive ranges of at most `size` events, about [`BODY_BYTES_MAX`]
/// bytes and [`momentum_bus::PARTICIPANTS_PER_REQUEST_MAX`] distinct
/// participants (ingest refuses a request naming more).
fn batches(events: &[Built], size: usize) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut bytes) = (0, 2);
    let mut participants = HashSet::new();
    for (index, built) in events.iter().enumerate() {
        let length = built.event.to_string().len() + 1;
        let named = participants_named(&built.event);
        let new_participants = named.iter().filter(|participant| !participants.contains(*participant)).count();
        let too_many_participants = participants.len() + new_participants > momentum_bus::PARTICIPANTS_PER_REQUEST_MAX;
        if index > start && (index - start >= size || bytes + length > BODY_BYTES_MAX || too_many_participants) {
            ranges.push(start..index);
            start = index;
            bytes = 2;
            participants.clear();
        }
        bytes += length;
        participants.extend(named);
    }
    if start < events.len() {
        ranges.push(start..events.len());
    }
    ranges
}

/// The distinct (movement, ref) pairs an event names, as ingest counts them.
fn participants_named(event: &Value) -> HashSet<(String, String)> {
    let mut named = HashSet::new();
    let movement = event["subject"].as_str().unwrap_or_default();
    if let Some(kind) = event["type"].as_str().and_then(momentum_domain::EventType::parse) {
        let mut data = event["data"].clone();
        momentum_domain::event::rewrite_participant_refs(kind, &mut data, |participant| {
            named.insert((movement.to_owned(), participant.clone()));
        });
    }
    named
}

/// One request, retried on 408, 429, 502, 503, 504 and connection errors.
async fn send(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: String,
    progress: &Progress,
) -> anyhow::Result<Value> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut request = client.post(url).header("content-type", "application/cloudevents-batch+json");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let (retry, wait, why) = match request.body(body.clone()).send().await {
            Ok(response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.trim().parse::<u64>().ok())
                    .map(|seconds| Duration::from_secs(seconds.min(60)));
                let text = response.text().await.unwrap_or_default();
                if status.is_success() {
                    return serde_json::from_str(&text)
                        .with_context(|| format!("the ingestion service answered {status} with no JSON"));
                }
                let detail = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|problem| problem["detail"].as_str().or(problem["title"].as_str()).map(str::to_owned))
                    .unwrap_or(text);
                let retry = matches!(status.as_u16(), 408 | 429 | 502 | 503 | 504);
                if !retry {
                    bail!("the ingestion service at {url} answered {status}: {detail}");
                }
                (retry, retry_after, format!("{status}: {detail}"))
            }
            // A URL that cannot be used will not work on a later attempt.
            Err(error) if error.is_builder() => bail!("cannot post to {url}: {}", with_causes(&error)),
            Err(error) => (true, None, format!("could not reach {url}: {}", with_causes(&error))),
        };
        if !retry || attempt >= ATTEMPTS_MAX {
            bail!("giving up after {attempt} attempts: {why}");
        }
        let wait = wait.unwrap_or(Duration::from_millis(500 * (1 << (attempt - 1))));
        progress.println(&format!("{why}; retrying in {:.1} s", wait.as_secs_f64()));
        tokio::time::sleep(wait).await;
    }
}

/// An error with the errors that caused it: reqwest's own message only
/// says a request failed, its causes say why (refused, timed out, no such
/// host).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    text
}

/// A progress bar on a terminal; plain lines, at most one a second,
/// otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    last_line: std::sync::Mutex<Option<Instant>>,
}

impl Progress {
    fn new(total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
            if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events {elapsed}") {
                bar.set_style(style);
            }
            bar
        });
        Progress { bar, total, last_line: std::sync::Mutex::new(None) }
    }

    fn set(&self, posted: u64, last: bool) {
        match &self.bar {
            Some(bar) => bar.set_position(posted),
            None => {
                let mut last_line = self.last_line.lock().expect("not poisoned");
                if last || last_line.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                    eprintln!("posted {posted}/{} events", self.total);
                    *last_line = Some(Instant::now());
                }
            }
        }
    }

    fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar
            && !bar.is_finished()
        {
            bar.finish_and_clear();
            eprintln!("posted {}/{} events", bar.position(), self.total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(kind: Option<Kind>) -> Options {
        Options {
            kind,
            source: "urn:partner:test".to_owned(),
            movement: Some("alpha".to_owned()),
            time_zone: chrono_tz::Europe::London,
        }
    }

    fn read(text: &str) -> Parsed {
        parse(text.as_bytes(), &options(None)).unwrap()
    }

    fn ids(parsed: &Parsed) -> Vec<String> {
        parsed.events.iter().map(|built| built.event["id"].as_str().unwrap().to_owned()).collect()
    }

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

    #[test]
    fn dates_in_iso_uk_and_rfc_3339_forms() {
        let london = chrono_tz::Europe::London;
        let at = |text: &str| parse_date(text, None, london).map(|time| time.to_rfc3339());
        assert_eq!(at("2026-03-05").unwrap(), "2026-03-05T12:00:00+00:00");
        assert_eq!(at("05/03/2026").unwrap(), "2026-03-05T12:00:00+00:00", "UK order: day first");
        assert_eq!(at("5/3/2026").unwrap(), "2026-03-05T12:00:00+00:00");
        assert_eq!(at("05.03.2026").unwrap(), "2026-03-05T12:00:00+00:00");
        assert_eq!(at("2026/03/05").unwrap(), "2026-03-05T12:00:00+00:00");
        assert_eq!(at("2026-07-01").unwrap(), "2026-07-01T12:00:00+01:00", "summer time");
        assert_eq!(at("01/07/2026 18:30").unwrap(), "2026-07-01T18:30:00+01:00");
        assert_eq!(at("2026-07-01T09:15:00").unwrap(), "2026-07-01T09:15:00+01:00");
        assert_eq!(at("2026-07-01T09:15:00Z").unwrap(), "2026-07-01T09:15:00+00:00");
        assert_eq!(at("2026-07-01T09:15:00+02:00").unwrap(), "2026-07-01T09:15:00+02:00");
        assert_eq!(parse_date("2026-07-01", Some("19:00"), london).unwrap().to_rfc3339(), "2026-07-01T19:00:00+01:00");
        // 01:30 on the spring-forward night does not exist: an hour later.
        assert_eq!(at("2026-03-29 01:30").unwrap(), "2026-03-29T02:30:00+01:00");
        assert!(at("31/02/2026").unwrap_err().contains("not a calendar date"));
        assert!(at("03/25/2026").unwrap_err().contains("month 25"), "US order is not guessed");
        assert!(at("05/03/26").unwrap_err().contains("two-digit year"));
        assert!(at("next tuesday").unwrap_err().contains("not a date"));
        assert!(at("2026-03-05 25:00").is_err());
    }

    #[test]
    fn hours_as_decimals_commas_and_hours_minutes() {
        assert_eq!(parse_hours("2.5"), Ok(2.5));
        assert_eq!(parse_hours("2,5"), Ok(2.5));
        assert_eq!(parse_hours("1:30"), Ok(1.5));
        assert_eq!(parse_hours("1:20"), Ok(1.333));
        assert_eq!(parse_hours("3"), Ok(3.0));
        assert!(parse_hours("two").is_err());
        assert!(parse_hours("1:75").is_err());
        assert!(parse_hours("NaN").is_err());
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
    fn a_bom_semicolons_quotes_blank_lines_and_trailing_columns_are_handled() {
        let text = "\u{feff}Date;Participant;Hours;Activity;;\r\n\
                    05/03/2026;\"v;12\";2,5;\"cooking; washing up\";;\r\n\
                    \r\n\
                    ;;;;;\r\n\
                    06/03/2026;v-13;1;admin;;\r\n";
        let parsed = read(text);
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        assert_eq!(parsed.rows, 2, "blank rows are not rows");
        assert_eq!(parsed.events.len(), 2);
        assert_eq!(parsed.events[0].event["data"]["participant"], "v;12");
        assert_eq!(parsed.events[0].event["data"]["hours"], 2.5);
        assert_eq!(parsed.events[0].event["data"]["activity"], "cooking; washing up");
        assert_eq!(parsed.events[1].lines, vec![5], "line numbers are the file's");
        assert_eq!(detect_delimiter(b"a\tb\tc\n"), b'\t');
        assert_eq!(detect_delimiter(b"\"a;b\",c\n"), b',');
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

    #[tokio::test]
    async fn a_post_nobody_answers_is_reported_with_why() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let error = reqwest::Client::new().post(format!("http://127.0.0.1:{port}/v1/events")).send().await.unwrap_err();
        let text = with_causes(&error);
        assert!(text.to_lowercase().contains("refused"), "{text}");
        assert!(!error.to_string().to_lowercase().contains("refused"), "reqwest's own message does not say why");
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

    #[test]
    fn problems_name_the_line_column_and_value() {
        let text = "date,volunteer,hours\n2026-03-05,v-1,0\n31/02/2026,v-2,1\n2026-03-05,,1\n2026-03-05,v-3,lots\n\
                    2026-03-05,v-4,30\n2026-03-05,v-5,2,extra\n";
        let parsed = read(text);
        let rendered: Vec<String> = parsed.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            vec![
                "line 3: date: is not a calendar date (read as day 31, month 2, year 2026) (got \"31/02/2026\")",
                "line 4: volunteer: is empty",
                "line 5: hours: must be a number of hours, such as 2.5 or 1:30 (got \"lots\")",
                "line 7: has a cell to the right of the header's last column (got \"extra\")",
            ]
        );
        // Schema problems are found by validation and mapped to their cell.
        let validator = momentum_domain::Validator::new().unwrap();
        let now = DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let mut found = Vec::new();
        for built in &parsed.events {
            if let Err(errors) = validator.validate(&built.event, now) {
                found.extend(event_problems(built, errors.iter().map(|e| (e.pointer.as_str(), e.message.as_str()))));
            }
        }
        let rendered: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            vec!["line 2: hours: must be greater than 0 (got \"0\")", "line 6: hours: must be at most 24 (got \"30\")"]
        );
    }

    #[test]
    fn a_rejected_meeting_lists_every_line_it_came_from() {
        let parsed = read("date,meeting,attendee,kind\n2026-03-03,walk,p-1,walk\n2026-03-03,walk,p-2,\n");
        let problems = event_problems(&parsed.events[0], std::iter::once(("/data/attendees/1", "too long")));
        let rendered: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            vec![
                "line 3: attendee: too long (got \"p-2\")",
                "line 2: not imported: its meeting was rejected (see line 3)"
            ]
        );
    }

    #[test]
    fn a_bad_principle_of_a_grouped_action_is_found_on_its_line() {
        let parsed = read(
            "date,action,participant,reach,principles\n2026-03-03,petition,p-1,10,share_power\n\
             2026-03-03,petition,p-2,,be kind\n2026-03-04,stall,p-3,,\n",
        );
        let validator = momentum_domain::Validator::new().unwrap();
        let now = DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let mut found = Vec::new();
        for built in &parsed.events {
            let errors = validator.validate(&built.event, now).unwrap_err();
            found.extend(event_problems(built, errors.iter().map(|e| (e.pointer.as_str(), e.message.as_str()))));
        }
        let rendered: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(rendered.len(), 3, "{rendered:?}");
        assert!(rendered[0].starts_with("line 3: principles: must be one of the eight principles"), "{rendered:?}");
        assert_eq!(rendered[1], "line 2: not imported: its action was rejected (see line 3)");
        assert_eq!(rendered[2], "line 4: reach is missing: add the column or fill in the cell");
    }

    /// A server (on a thread of its own) answering each connection with the
    /// next canned response; says how many requests it got.
    fn canned_server(responses: Vec<&'static str>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/events", listener.local_addr().unwrap());
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = count.clone();
        std::thread::spawn(move || {
            for response in responses {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                // Read the head and the body (its length is in the head).
                loop {
                    let read = stream.read(&mut buffer).unwrap();
                    request.extend_from_slice(&buffer[..read]);
                    let text = String::from_utf8_lossy(&request).to_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|line| line.strip_prefix("content-length:"))
                            .and_then(|value| value.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                    if read == 0 {
                        break;
                    }
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                stream.write_all(response.as_bytes()).unwrap();
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        });
        (url, count)
    }

    #[tokio::test]
    async fn unavailable_and_rate_limited_answers_are_retried_but_a_refusal_is_not() {
        let body = r#"{"results":[],"accepted":0,"duplicates":0,"rejected":0,"max_seq":7}"#;
        let ok: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        );
        let busy =
            "HTTP/1.1 503 Service Unavailable\r\nretry-after: 0\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        let slow = "HTTP/1.1 429 Too Many Requests\r\nretry-after: 0\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        let client = reqwest::Client::new();
        let progress = Progress { bar: None, total: 1, last_line: std::sync::Mutex::new(None) };
        let (url, count) = canned_server(vec![busy, slow, ok]);
        let answer = send(&client, &url, Some("t"), "[]".to_owned(), &progress).await.unwrap();
        assert_eq!(answer["max_seq"], 7);
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3);

        let refused = "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/problem+json\r\ncontent-length: 28\r\nconnection: close\r\n\r\n{\"title\":\"no valid token\"}  ";
        let (url, count) = canned_server(vec![refused, ok]);
        let error = send(&client, &url, None, "[]".to_owned(), &progress).await.unwrap_err();
        assert!(error.to_string().contains("401"), "{error}");
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1, "a refusal is not retried");

        let (url, count) = canned_server(vec![busy; 5]);
        let error = send(&client, &url, None, "[]".to_owned(), &progress).await.unwrap_err();
        assert!(error.to_string().contains("after 5 attempts"), "{error}");
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 5);
    }

    #[test]
    fn batches_respect_count_and_size() {
        let parsed = read("date,volunteer,hours\n2026-03-05,v-1,1\n2026-03-05,v-2,1\n2026-03-05,v-3,1\n");
        assert_eq!(batches(&parsed.events, 2), vec![0..2, 2..3]);
        assert_eq!(batches(&parsed.events, 500), vec![0..3]);
    }

    #[test]
    fn batches_name_at_most_the_participants_ingest_takes_in_one_request() {
        let most = momentum_bus::PARTICIPANTS_PER_REQUEST_MAX;
        let meeting = |attendees: std::ops::Range<usize>| Built {
            event: json!({ "type": "meeting.held", "subject": "leeds",
                "data": { "attendees": attendees.map(|a| format!("a-{a}")).collect::<Vec<_>>() } }),
            lines: Vec::new(),
            cells: Vec::new(),
        };
        // 250 meetings of 100 people each, all different, then 50 of the
        // same 100 people as the 250th.
        let mut events: Vec<Built> = (0..250).map(|m| meeting(m * 100..m * 100 + 100)).collect();
        events.extend((0..50).map(|_| meeting(24_900..25_000)));
        let ranges = batches(&events, 1000);
        for range in &ranges {
            let named: HashSet<_> =
                events[range.clone()].iter().flat_map(|built| participants_named(&built.event)).collect();
            assert!(named.len() <= most, "{range:?} names {}", named.len());
        }
        // 100 meetings reach the bound; repeats of people already in the
        // batch cost nothing.
        assert_eq!(ranges, vec![0..100, 100..200, 200..300]);
    }
}
