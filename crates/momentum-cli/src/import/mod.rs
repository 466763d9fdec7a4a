//! `momentum import`: a spreadsheet (CSV) of volunteer hours, meetings,
//! collective actions or sign-ups, turned into events and posted through
//! the ingestion API, for partners without a system that can post events;
//! or the attendance another system recorded (`--format osdi`, Action
//! Network's open standard, and `--format mobilize`), turned into meetings
//! and sign-ups (`attendance`, `osdi`, `mobilize`; docs/imports.md).
//!
//! # Reading the file
//!
//! The first row is a header. Columns are matched by name, ignoring case,
//! spaces, hyphens and underscores, with common synonyms (`volunteer`,
//! `person` and `participant` are the same column); see `columns::SYNONYMS` and the
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
//!
//! # Files
//!
//! One job each; [`run`] only puts them together.
//!
//! - `file`: a CSV file's bytes read into rows: the byte order mark, the
//!   delimiter, line numbers (`Parsed`, `parse`);
//! - `options`: what a file is read with;
//! - `columns`: the header row: which column is which field, the kind of
//!   rows it implies, and a data row read through it;
//! - `values`: cell values (dates, hours, whole numbers, lists) as typed
//!   values, or what is wrong with them;
//! - `events`: rows built into CloudEvents, the rows of one meeting or
//!   action grouped, and the stable ids;
//! - `problems`: a problem with a row, and the `--report` file;
//! - `traced`: an event's errors traced back to the lines and cells it
//!   came from;
//! - `post`: posting the events to ingest in batches, retries, and reading
//!   its answers;
//! - `attendance`: attendance records of another system built into
//!   meetings and sign-ups, with their stable ids;
//! - `osdi`, `mobilize`: those systems' exports read into attendance
//!   records, or what is wrong with a record.

mod attendance;
mod columns;
mod events;
mod file;
mod mobilize;
mod options;
mod osdi;
mod post;
mod problems;
mod traced;
mod values;

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::Utc;
use chrono_tz::Tz;

use columns::Kind;
use file::parse;
use options::Options;
use post::{Outcome, post};
use problems::write_report;
use traced::event_problems;

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

OTHER SYSTEMS (--format osdi | mobilize; docs/imports.md)
  Attendance recorded elsewhere: each event (Mobilize: each time slot) with
  people marked attended becomes one meeting, and each person a sign-up at
  their first. --movement is needed. OSDI reads JSON files (exports or saved
  HAL pages of events and attendances; the source is urn:osdi:<origin
  system> unless --source says); Mobilize reads its attendance CSV
  (event_id, timeslot_id, timeslot_start_date, timeslot_end_date, attended,
  person or person_id) and needs --source.

EXAMPLE
  date,volunteer,hours,activity,area,principles
  05/03/2026,v-12,2.5,befriending,Easton,bring_people_together
  2026-03-06,v-31,1:30,admin,,

  momentum import hours.csv --source urn:partner:age-uk-bristol \\
      --movement bristol-befriending --token \"$PARTNER_TOKEN\"";

/// What the files are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// A spreadsheet saved as CSV, in the header convention below.
    Csv,
    /// OSDI attendance (Action Network): JSON as exported, or the API's HAL pages saved to files.
    Osdi,
    /// Mobilize's attendance export (CSV).
    Mobilize,
}

#[derive(Debug, clap::Args)]
#[command(after_long_help = HELP, after_help = "See --help for the header convention and an example.")]
pub(crate) struct ImportArgs {
    /// The file (several for --format osdi: pages of events and attendances).
    #[arg(required = true, num_args = 1..)]
    files: Vec<PathBuf>,
    /// What the files are: a spreadsheet (csv), OSDI attendance or Mobilize's attendance export.
    #[arg(long, value_enum, default_value = "csv")]
    format: Format,
    /// What the rows are; detected from the header when not given (csv only).
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    /// The partner's CloudEvents source, e.g. urn:partner:age-uk-bristol (needed for csv and mobilize; for
    /// osdi, the records' origin_system as urn:osdi:<name> when not given).
    #[arg(long)]
    source: Option<String>,
    /// The movement of the events (of rows that have no `movement` column, for csv).
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
    /// IANA time zone of dates and times without an offset (csv).
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

/// What the files gave: events built, and problems with rows or records.
struct Input {
    /// Rows (csv) or records (json) read.
    rows: u64,
    /// "rows" or "records".
    unit: &'static str,
    events: Vec<events::Built>,
    problems: Vec<problems::Problem>,
}

/// The source given, checked: a URI without spaces.
fn checked_source(source: Option<&str>, format: Format) -> anyhow::Result<Option<String>> {
    match source {
        None if format == Format::Osdi => Ok(None),
        None => bail!("--source is needed, such as --source urn:partner:age-uk-bristol"),
        Some(source) if source.trim().is_empty() || source.chars().any(char::is_whitespace) => {
            bail!("--source must be a URI without spaces, such as urn:partner:age-uk-bristol")
        }
        Some(source) => Ok(Some(source.to_owned())),
    }
}

fn read_file(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Reads the files of a spreadsheet import.
fn read_spreadsheet(arguments: &ImportArgs, source: String) -> anyhow::Result<Input> {
    let [file] = arguments.files.as_slice() else {
        bail!("a spreadsheet import reads one file at a time");
    };
    let options =
        Options { kind: arguments.kind, source, movement: arguments.movement.clone(), time_zone: arguments.time_zone };
    let parsed =
        parse(&read_file(file)?, &options).map_err(|message| anyhow::anyhow!("{}: {message}", file.display()))?;
    let kind = parsed.kind.expect("parse sets the kind");
    eprintln!("{}: {} rows of {}", file.display(), parsed.rows, kind.name());
    if !parsed.ignored_columns.is_empty() {
        eprintln!("ignoring columns that mean nothing for {}: {}", kind.name(), parsed.ignored_columns.join(", "));
    }
    Ok(Input { rows: parsed.rows, unit: "rows", events: parsed.events, problems: parsed.problems })
}

/// Reads the files of an attendance import (OSDI or Mobilize).
fn read_attendance(arguments: &ImportArgs, source: Option<String>) -> anyhow::Result<Input> {
    if arguments.kind.is_some() {
        bail!("--kind is for spreadsheets: {} files are attendance", format_name(arguments.format));
    }
    let Some(movement) = arguments.movement.as_deref() else {
        bail!("--movement is needed: {} files do not name momentum's movements", format_name(arguments.format));
    };
    let (read, unit) = match arguments.format {
        Format::Osdi => {
            let mut files = Vec::new();
            for path in &arguments.files {
                let value: serde_json::Value = serde_json::from_slice(&read_file(path)?)
                    .with_context(|| format!("{} is not JSON", path.display()))?;
                files.push((path.display().to_string(), value));
            }
            (osdi::read(&files, source.as_deref()), "records")
        }
        Format::Mobilize => {
            let [file] = arguments.files.as_slice() else {
                bail!("a Mobilize import reads one file at a time");
            };
            let source = source.expect("checked: mobilize needs --source");
            let read = mobilize::read(&read_file(file)?, &source)
                .map_err(|message| anyhow::anyhow!("{}: {message}", file.display()))?;
            (read, "rows")
        }
        Format::Csv => unreachable!("spreadsheets are read by read_spreadsheet"),
    };
    let what = if read.records == 1 { unit.trim_end_matches('s') } else { unit };
    eprintln!(
        "{} attendance {what}: {} attended, {} did not attend (not imported)",
        read.records,
        read.records - read.not_attended,
        read.not_attended
    );
    let events = attendance::build(format_name(arguments.format), movement, &read.attendances);
    Ok(Input { rows: read.records, unit, events, problems: read.problems })
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Csv => "csv",
        Format::Osdi => "osdi",
        Format::Mobilize => "mobilize",
    }
}

pub(crate) async fn run(arguments: ImportArgs) -> anyhow::Result<()> {
    let source = checked_source(arguments.source.as_deref(), arguments.format)?;
    let input = match arguments.format {
        Format::Csv => read_spreadsheet(&arguments, source.expect("checked: csv needs --source"))?,
        Format::Osdi | Format::Mobilize => read_attendance(&arguments, source)?,
    };
    let verbose = arguments.verbose;
    let mut problems = input.problems;
    if verbose {
        problems.iter().for_each(|problem| eprintln!("{problem}"));
    }
    let events_built = input.events.len() as u64;

    // Client-side validation.
    let validator = momentum_domain::Validator::new().context("the embedded schemas do not compile")?;
    let now = Utc::now();
    let mut outcome = Outcome::default();
    let mut valid = Vec::new();
    for built in input.events {
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
    println!("{:<16}{}", format!("{} read:", input.unit), input.rows);
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
    let numbered = if input.unit == "records" { "records" } else { "lines" };
    println!(
        "{} with problems: {}{}",
        input.unit,
        lines.len(),
        if lines.is_empty() { String::new() } else { format!(" ({numbered} {line_list})") }
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
        let what = input.unit.trim_end_matches('s');
        bail!(
            "{}",
            if lines.len() == 1 {
                format!("1 {what} had problems and was not imported")
            } else {
                format!("{} {} had problems and were not imported", lines.len(), input.unit)
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::file::Parsed;
    use super::*;

    pub(super) fn options(kind: Option<Kind>) -> Options {
        Options {
            kind,
            source: "urn:partner:test".to_owned(),
            movement: Some("alpha".to_owned()),
            time_zone: chrono_tz::Europe::London,
        }
    }

    pub(super) fn read(text: &str) -> Parsed {
        parse(text.as_bytes(), &options(None)).unwrap()
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
}
