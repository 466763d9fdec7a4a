//! `momentum import`: a spreadsheet (CSV) of volunteer hours, meetings,
//! collective actions or sign-ups, turned into events and posted through
//! the ingestion API, for partners without a system that can post events.
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
//! - `progress`: the progress bar (or plain lines) while posting.

mod columns;
mod events;
mod file;
mod options;
mod post;
mod problems;
mod progress;
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

EXAMPLE
  date,volunteer,hours,activity,area,principles
  05/03/2026,v-12,2.5,befriending,Easton,bring_people_together
  2026-03-06,v-31,1:30,admin,,

  momentum import hours.csv --source urn:partner:age-uk-bristol \\
      --movement bristol-befriending --token \"$PARTNER_TOKEN\"";

#[derive(Debug, clap::Args)]
#[command(after_long_help = HELP, after_help = "See --help for the header convention and an example.")]
pub(crate) struct ImportArgs {
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

pub(crate) async fn run(arguments: ImportArgs) -> anyhow::Result<()> {
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
