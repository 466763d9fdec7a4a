//! End to end: `momentum import` posts the sample spreadsheets in
//! `examples/spreadsheets/` to a real stack, and the figures read back are
//! the ones the files imply; importing again changes nothing; a file with
//! bad rows reports exactly those rows and imports the rest.
//!
//! The expected figures are worked out by hand from the files (the comments
//! show the sums), so a change to a sample file needs a change here.

use std::path::PathBuf;
use std::process::Output;

use momentum_tests::{ADMIN_TOKEN, PARTNER_TOKEN, TestStack, momentum_testkit};
use serde_json::Value;

fn sample(name: &str) -> PathBuf {
    momentum_testkit::workspace_root().join("examples/spreadsheets").join(name)
}

/// Runs `momentum import` against the stack (without blocking the
/// services, which run on this test's runtime).
async fn import(stack: &TestStack, token: &str, arguments: &[&str]) -> Output {
    tokio::process::Command::new(momentum_testkit::workspace_binary("momentum"))
        .arg("import")
        .args(arguments)
        .env("MOMENTUM_INGEST_URL", &stack.ingest_url)
        .env("MOMENTUM_TOKEN", token)
        .output()
        .await
        .expect("momentum import runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A number from the summary, e.g. `accepted:       12`.
fn summary(output: &Output, label: &str) -> u64 {
    let text = stdout(output);
    let line = text
        .lines()
        .find(|line| line.starts_with(&format!("{label}:")))
        .unwrap_or_else(|| panic!("no {label:?} in the summary:\n{text}"));
    line[label.len() + 1..]
        .split_whitespace()
        .next()
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line:?}"))
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// September 2025 (every sample row is in it) of a movement's monthly trend.
async fn september(stack: &TestStack, movement: &str, min_seq: u64) -> Value {
    let (status, body) = stack
        .query(&format!(
            "/v1/movements/{movement}/trends?interval=month&from=2025-09-01&to=2025-09-30&min_seq={min_seq}"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    momentum_tests::row(&body, "2025-09-01").clone()
}

#[tokio::test]
async fn hours_are_imported_once_and_appended_rows_only_are_added() {
    let stack = TestStack::start().await;
    let file = sample("hours.csv");
    let arguments = ["--source", "urn:test:partner", "--movement", "alpha", file.to_str().unwrap()];
    // The partner token may post only its own source and movement.
    let first = import(&stack, PARTNER_TOKEN, &arguments).await;
    assert!(first.status.success(), "{}", describe(&first));
    assert_eq!(summary(&first, "rows read"), 12);
    assert_eq!(summary(&first, "accepted"), 12, "{}", describe(&first));
    assert_eq!(summary(&first, "duplicates"), 0);
    let sequence = summary(&first, "last stream sequence");
    let figures = september(&stack, "alpha", sequence).await;
    // 2.5 + 3 + 1.5 + 2 + 4 + 3 + 3 + 1.5 + 0.75 + 5 + 2.5 + 3.5 (the two
    // equal food bank rows of 8 September are two shifts: both count).
    assert_eq!(figures["volunteer_hours"], 32.25, "{figures}");
    // SPV-014, -022, -031, -047, -058, -063.
    assert_eq!(figures["volunteers"], 6, "{figures}");
    assert_eq!(figures["active_participants"], 6, "{figures}");

    let again = import(&stack, PARTNER_TOKEN, &arguments).await;
    assert!(again.status.success(), "{}", describe(&again));
    assert_eq!(summary(&again, "accepted"), 0, "{}", describe(&again));
    assert_eq!(summary(&again, "duplicates"), 12);
    assert_eq!(september(&stack, "alpha", summary(&again, "last stream sequence")).await, figures);

    // Rows appended to the register: only they are new.
    let folder = tempfile::tempdir().unwrap();
    let longer = folder.path().join("hours.csv");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("2025-09-24,SPV-014,2.5,befriending,Easton,bring_people_together,\n");
    text.push_str("2025-09-25,SPV-080,1,admin,St Pauls,,first shift\n");
    std::fs::write(&longer, text).unwrap();
    let appended = import(
        &stack,
        PARTNER_TOKEN,
        &["--source", "urn:test:partner", "--movement", "alpha", longer.to_str().unwrap()],
    )
    .await;
    assert!(appended.status.success(), "{}", describe(&appended));
    assert_eq!(summary(&appended, "accepted"), 2, "{}", describe(&appended));
    assert_eq!(summary(&appended, "duplicates"), 12);
    let figures = september(&stack, "alpha", summary(&appended, "last stream sequence")).await;
    assert_eq!(figures["volunteer_hours"], 35.75, "{figures}");
    assert_eq!(figures["volunteers"], 7, "{figures}");

    // Another movement than the partner's is refused per event, and said so.
    let refused =
        import(&stack, PARTNER_TOKEN, &["--source", "urn:test:partner", "--movement", "beta", file.to_str().unwrap()])
            .await;
    assert!(!refused.status.success(), "{}", describe(&refused));
    assert_eq!(summary(&refused, "rejected"), 12, "{}", describe(&refused));
    stack.stop().await;
}

#[tokio::test]
async fn meetings_actions_and_joins_give_the_figures_their_files_imply() {
    let stack = TestStack::start().await;
    let source = "urn:partner:st-pauls-volunteer-centre";
    let cases = [
        ("meetings-per-attendee.csv", "tea-club"),
        ("meetings-with-list.csv", "community-kitchen"),
        ("actions.csv", "easton-action"),
        ("joins.csv", "sign-ups"),
    ];
    let mut sequences = Vec::new();
    for (file, movement) in cases {
        let path = sample(file);
        let output =
            import(&stack, ADMIN_TOKEN, &["--source", source, "--movement", movement, path.to_str().unwrap()]).await;
        assert!(output.status.success(), "{file}: {}", describe(&output));
        assert_eq!(summary(&output, "rejected"), 0, "{file}: {}", describe(&output));
        sequences.push(summary(&output, "last stream sequence"));
    }
    let sequence = *sequences.iter().max().unwrap();

    // One row per attendee: the tea club on 2, 9 and 16 September and the
    // garden planning on 4 September are four meetings.
    let tea = september(&stack, "tea-club", sequence).await;
    assert_eq!(tea["meetings"], 4, "{tea}");
    // Attendees and organisers: 4 + 1, 3 + 1, 3 + 1, 4 + 1.
    assert_eq!(tea["attendances"], 18, "{tea}");
    // SPV-014, -047, -058, -063, R-101 … R-106, K-9.
    assert_eq!(tea["active_participants"], 11, "{tea}");

    // One row per meeting with a list: 4 + 1, 3 + 1, 5 + 2, 2 + 1.
    let kitchen = september(&stack, "community-kitchen", sequence).await;
    assert_eq!(kitchen["meetings"], 4, "{kitchen}");
    assert_eq!(kitchen["attendances"], 19, "{kitchen}");
    // R-201 … R-209, SPV-022, GP-3, K-9.
    assert_eq!(kitchen["active_participants"], 12, "{kitchen}");

    let actions = september(&stack, "easton-action", sequence).await;
    assert_eq!(actions["collective_actions"], 2, "{actions}");
    assert_eq!(actions["people_reached"], 1750, "{actions}");
    // 4 + 1 at the litter pick, 5 + 1 at the petition.
    assert_eq!(actions["action_participants"], 11, "{actions}");

    let joins = september(&stack, "sign-ups", sequence).await;
    assert_eq!(joins["joined"], 6, "{joins}");

    // Grouped meetings have stable ids too: all duplicates the second time.
    let path = sample("meetings-per-attendee.csv");
    let again =
        import(&stack, ADMIN_TOKEN, &["--source", source, "--movement", "tea-club", path.to_str().unwrap()]).await;
    assert!(again.status.success(), "{}", describe(&again));
    assert_eq!(summary(&again, "accepted"), 0, "{}", describe(&again));
    assert_eq!(summary(&again, "duplicates"), 4);
    assert_eq!(september(&stack, "tea-club", summary(&again, "last stream sequence")).await, tea);
    stack.stop().await;
}

#[tokio::test]
async fn bad_rows_are_reported_by_line_and_the_good_rows_are_imported() {
    let stack = TestStack::start().await;
    let file = sample("hours-uk-dates-with-problems.csv");
    let folder = tempfile::tempdir().unwrap();
    let report = folder.path().join("problems.csv");
    let arguments = [
        "--source",
        "urn:partner:st-pauls-volunteer-centre",
        "--movement",
        "reception",
        "--report",
        report.to_str().unwrap(),
        file.to_str().unwrap(),
    ];

    // A dry run checks everything and posts nothing.
    let mut dry = arguments.to_vec();
    dry.push("--dry-run");
    let dry = import(&stack, ADMIN_TOKEN, &dry).await;
    assert!(!dry.status.success(), "{}", describe(&dry));
    assert_eq!(summary(&dry, "valid events"), 5, "{}", describe(&dry));
    let (status, _) = stack.query("/v1/movements/reception/trends?interval=month").await;
    assert_eq!(status, 404, "a dry run posted nothing");

    let output = import(&stack, ADMIN_TOKEN, &arguments).await;
    assert!(!output.status.success(), "bad rows make the import fail:\n{}", describe(&output));
    assert_eq!(output.status.code(), Some(1));
    // 11 rows: the blank line 6 and the empty cells of line 13 are not rows.
    assert_eq!(summary(&output, "rows read"), 11, "{}", describe(&output));
    assert_eq!(summary(&output, "accepted"), 5, "{}", describe(&output));
    assert!(stdout(&output).contains("rows with problems: 6 (lines 3, 7, 8, 9, 10, 11)"), "{}", describe(&output));

    let mut reader = csv_rows(&std::fs::read_to_string(&report).unwrap());
    assert_eq!(reader.remove(0), ["line", "column", "value", "problem"]);
    let expected = [
        ["3", "Hours", "0", "must be greater than 0"],
        ["7", "Volunteer", "", "is empty"],
        ["8", "Date", "31/09/2025", "is not a calendar date (read as day 31, month 9, year 2025)"],
        ["9", "Hours", "30", "must be at most 24"],
        ["10", "Principles", "be_kind", "must be one of"],
        ["11", "Hours", "two", "must be a number of hours, such as 2.5 or 1:30"],
    ];
    assert_eq!(reader.len(), expected.len(), "{reader:?}");
    for (row, expected) in reader.iter().zip(expected) {
        assert_eq!(row[..3], expected[..3], "{row:?}");
        assert!(row[3].starts_with(expected[3]), "{row:?} should say {:?}", expected[3]);
    }

    // 2 + 2.5 + 3 + 1.75 + 4 from lines 2, 4, 5, 12 and 14.
    let figures = september(&stack, "reception", summary(&output, "last stream sequence")).await;
    assert_eq!(figures["volunteer_hours"], 13.25, "{figures}");
    // SPV-071, -072, -073, -075.
    assert_eq!(figures["volunteers"], 4, "{figures}");
    stack.stop().await;
}

/// A small CSV reader for the report (fields may be quoted).
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|line| {
            let mut fields = vec![String::new()];
            let mut quoted = false;
            let mut characters = line.chars().peekable();
            while let Some(character) = characters.next() {
                match character {
                    '"' if quoted && characters.peek() == Some(&'"') => {
                        characters.next();
                        fields.last_mut().unwrap().push('"');
                    }
                    '"' => quoted = !quoted,
                    ',' if !quoted => fields.push(String::new()),
                    other => fields.last_mut().unwrap().push(other),
                }
            }
            fields
        })
        .collect()
}

fn example(folder: &str, name: &str) -> String {
    momentum_testkit::workspace_root().join("examples").join(folder).join(name).to_str().unwrap().to_owned()
}

/// Imports attendance twice: the first time posts `events` events, the
/// second nothing new; returns September's figures of `movement`.
async fn import_twice(stack: &TestStack, arguments: &[&str], events: u64, movement: &str) -> Value {
    let first = import(stack, ADMIN_TOKEN, arguments).await;
    assert!(first.status.success(), "{}", describe(&first));
    assert_eq!(summary(&first, "accepted"), events, "{}", describe(&first));
    assert_eq!(summary(&first, "duplicates"), 0, "{}", describe(&first));
    let figures = september(stack, movement, summary(&first, "last stream sequence")).await;
    let again = import(stack, ADMIN_TOKEN, arguments).await;
    assert!(again.status.success(), "{}", describe(&again));
    assert_eq!(summary(&again, "accepted"), 0, "importing again adds nothing: {}", describe(&again));
    assert_eq!(summary(&again, "duplicates"), events);
    assert_eq!(september(stack, movement, summary(&again, "last stream sequence")).await, figures);
    figures
}

#[tokio::test]
async fn osdi_and_mobilize_attendance_become_meetings_and_sign_ups_once() {
    let stack = TestStack::start().await;
    // examples/osdi: the walk of 6 September (Anna and Bilal attended, Chen
    // did not) with its attendances embedded, and the walk of 13 September
    // whose attendances are a page of their own (Anna and Dara attended, Eve
    // declined, Femi's record says nothing of attending).
    let (events, attendances) = (example("osdi", "events.json"), example("osdi", "attendances.json"));
    let osdi = ["--format", "osdi", "--movement", "osdi-walks", events.as_str(), attendances.as_str()];
    let figures = import_twice(&stack, &osdi, 2 + 3, "osdi-walks").await;
    assert_eq!(figures["meetings"], 2, "{figures}");
    assert_eq!(figures["attendances"], 2 + 2, "{figures}");
    assert_eq!(figures["active_participants"], 3, "Anna, Bilal and Dara: {figures}");
    assert_eq!(figures["joined"], 3, "{figures}");
    let dry = import(&stack, ADMIN_TOKEN, &[&osdi[..], &["--dry-run"]].concat()).await;
    assert_eq!(summary(&dry, "records read"), 7, "{}", describe(&dry));
    assert!(
        String::from_utf8_lossy(&dry.stderr).contains("7 attendance records: 4 attended, 3 did not attend"),
        "{}",
        describe(&dry)
    );
    // The events' locality is the meetings' area.
    let (status, split) =
        stack.query("/v1/movements/osdi-walks/trends?interval=month&from=2025-09-01&to=2025-09-30&by=area").await;
    assert_eq!(status, 200, "{split}");
    let easton = split["series"].as_array().unwrap().iter().find(|row| row["area"] == "Easton");
    assert_eq!(easton.map(|row| &row["meetings"]), Some(&Value::from(2)), "{split}");

    // examples/mobilize: time slot 738 on 6 September (101 and 102
    // attended, 103 did not) and 739 on 20 September (101 and 104 attended,
    // 105 cancelled).
    let export = example("mobilize", "attendance.csv");
    let mobilize =
        ["--format", "mobilize", "--source", "urn:partner:garden", "--movement", "mobilize-garden", export.as_str()];
    let figures = import_twice(&stack, &mobilize, 2 + 3, "mobilize-garden").await;
    assert_eq!(figures["meetings"], 2, "{figures}");
    assert_eq!(figures["attendances"], 2 + 2, "{figures}");
    assert_eq!(figures["active_participants"], 3, "{figures}");
    assert_eq!(figures["joined"], 3, "{figures}");

    // A Mobilize import needs a source, and an attendance import a movement.
    let no_source = import(&stack, ADMIN_TOKEN, &["--format", "mobilize", "--movement", "m", export.as_str()]).await;
    assert!(!no_source.status.success());
    assert!(String::from_utf8_lossy(&no_source.stderr).contains("--source is needed"), "{}", describe(&no_source));
    let no_movement = import(&stack, ADMIN_TOKEN, &["--format", "osdi", events.as_str()]).await;
    assert!(
        String::from_utf8_lossy(&no_movement.stderr).contains("--movement is needed"),
        "{}",
        describe(&no_movement)
    );
    stack.stop().await;
}
