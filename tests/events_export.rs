//! The events export (`GET /v1/movements/{movement}/events`) against a real
//! stack: a log taken a page at a time equals the log taken whole, only
//! events that count appear, once, in stream order, an erased person's
//! pseudonym is in no export, and only readers of the movement get it.

use momentum_tests::{EVALUATOR_TOKEN, TestStack, event, hours, meeting, momentum_testkit};
use serde_json::{Value, json};

/// A response of the export, as the admin, with its cursor headers.
struct Page {
    lines: Vec<Value>,
    next_seq: u64,
    complete: bool,
    body: String,
}

async fn export(stack: &TestStack, movement: &str, query: &str) -> Page {
    let url = format!("{}/v1/movements/{movement}/events?{query}", stack.query_url);
    let response = stack.http.get(&url).bearer_auth(momentum_tests::ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    let (next_seq, complete) = (header("momentum-next-seq").parse().unwrap(), header("momentum-complete") == "true");
    let body = response.text().await.unwrap();
    let lines = if query.contains("format=") && !query.contains("format=ndjson") {
        Vec::new()
    } else {
        body.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    };
    Page { lines, next_seq, complete, body }
}

/// The `key` of each organiser of an exported event, as a list (null for an event without organisers).
fn organisers(event: &Value, key: &str) -> Value {
    event["data"]["organisers"]
        .as_array()
        .map_or(Value::Null, |list| list.iter().map(|organiser| organiser[key].clone()).collect())
}

/// Every page from the first, `limit` events at a time.
async fn export_in_pages(stack: &TestStack, movement: &str, limit: u32, min_seq: u64) -> Vec<Value> {
    let (mut events, mut since_seq) = (Vec::new(), 0);
    for _ in 0..100 {
        let page = export(stack, movement, &format!("limit={limit}&since_seq={since_seq}&min_seq={min_seq}")).await;
        assert!(page.lines.len() <= limit as usize);
        events.extend(page.lines);
        since_seq = page.next_seq;
        if page.complete {
            return events;
        }
    }
    panic!("the export never completed");
}

#[tokio::test]
async fn an_export_resumed_from_its_cursor_equals_one_taken_whole_and_holds_only_what_counts() {
    let stack = TestStack::start().await;
    let mut posted = vec![
        meeting("m1", "alpha", "2026-03-04T18:00:00Z", &["ann", "bo", "cy"], "org"),
        hours("h1", "alpha", "2026-03-05T10:00:00Z", "ann", 2.0),
        hours("h2", "alpha", "2026-03-05T11:00:00Z", "gone", 1.5),
        meeting("m2", "alpha", "2026-03-11T18:00:00Z", &["gone", "bo"], "org"),
        hours("other", "beta", "2026-03-05T10:00:00Z", "ann", 1.0),
        event("r1", "event.retracted", "alpha", "2026-03-06T10:00:00Z", json!({ "event_id": "h1" })),
    ];
    for index in 0..7 {
        posted.push(hours(&format!("x{index}"), "alpha", "2026-03-12T10:00:00Z", &format!("v{index}"), 1.0));
    }
    let (status, body) = stack.post_batch(&posted).await;
    assert_eq!(status, 200, "{body}");
    let last = body["max_seq"].as_u64().unwrap();
    // The same again: repeats are not stored twice, and never exported twice.
    let (status, _) = stack.post_batch(&posted[..2]).await;
    assert_eq!(status, 200);

    let whole = export(&stack, "alpha", &format!("limit=10000&min_seq={last}")).await;
    assert!(whole.complete);
    let ids: Vec<&str> = whole.lines.iter().map(|event| event["id"].as_str().unwrap()).collect();
    let mut expected = vec!["m1", "h2", "m2"];
    let extra: Vec<String> = (0..7).map(|index| format!("x{index}")).collect();
    expected.extend(extra.iter().map(String::as_str));
    assert_eq!(ids, expected, "what counts, once, in stream order: not h1 (retracted), r1, or beta's");
    let sequences: Vec<u64> = whole.lines.iter().map(|event| event["seq"].as_u64().unwrap()).collect();
    assert!(sequences.windows(2).all(|pair| pair[0] < pair[1]), "{sequences:?}");
    assert_eq!(whole.next_seq, last, "the cursor of a complete export is where the projection stood");
    assert!(!whole.body.contains("\"ann\""), "refs are pseudonyms");

    // Page by page, from the cursor each page gives: the same events.
    for limit in [1, 2, 3] {
        assert_eq!(export_in_pages(&stack, "alpha", limit, last).await, whole.lines, "pages of {limit}");
    }
    // Nothing after the last: an empty page, complete, at the same cursor.
    let after = export(&stack, "alpha", &format!("since_seq={last}")).await;
    assert!(after.lines.is_empty() && after.complete && after.next_seq == last);
    // A range that ends before it starts holds nothing.
    let empty = export(&stack, "alpha", "since_seq=5&until_seq=2").await;
    assert!(empty.lines.is_empty() && empty.complete && empty.next_seq == 5);

    // Retracted events on request, marked with their retraction's sequence.
    let with_retracted = export(&stack, "alpha", "include=retracted&limit=10000").await;
    let retracted: Vec<&Value> = with_retracted.lines.iter().filter(|event| event.get("retracted").is_some()).collect();
    assert_eq!(retracted.len(), 1);
    assert_eq!(retracted[0]["id"], "h1");
    // Only some types, and a range of sequences.
    let meetings = export(&stack, "alpha", "types=meeting.held").await;
    assert_eq!(meetings.lines.len(), 2);
    let first_two = export(&stack, "alpha", &format!("until_seq={}", sequences[1])).await;
    assert_eq!(first_two.lines, whole.lines[..2]);

    // Erased: the pseudonym of "gone" (the only volunteer of h2) is in no export any more.
    let gone = whole.lines[1]["data"]["participant"].as_str().unwrap().to_owned();
    assert!(whole.lines[2]["data"]["attendees"].as_array().unwrap().contains(&Value::from(gone.as_str())));
    let erasure = stack
        .http
        .post(format!("{}/v1/movements/alpha/erasures", stack.ingest_url))
        .bearer_auth(momentum_tests::ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(r#"{"participant":"gone"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(erasure.status(), 202);
    let erased_at = erasure.json::<Value>().await.unwrap()["seq"].as_u64().unwrap();
    for query in ["limit=10000", "include=retracted&limit=10000", "format=csv", "format=csv-participation"] {
        let page = export(&stack, "alpha", &format!("{query}&min_seq={erased_at}")).await;
        assert!(!page.body.contains(&gone), "{query}: the erased pseudonym appears: {}", page.body);
        assert!(page.body.contains("erased"), "{query}: {}", page.body);
    }
    let after_erasure = export(&stack, "alpha", &format!("limit=10000&min_seq={erased_at}")).await;
    assert_eq!(after_erasure.lines.len(), whole.lines.len(), "the erasure itself is not exported");
    assert_eq!(after_erasure.lines[1]["data"]["participant"], "erased");
    assert_eq!(after_erasure.lines[2]["data"]["attendees"].as_array().unwrap().len(), 2, "still two attended");

    // CSV: one row per event; one per person per event.
    let csv = export(&stack, "alpha", "format=csv&limit=10000").await;
    assert_eq!(csv.body.lines().count(), 1 + whole.lines.len(), "{}", csv.body);
    let participation = export(&stack, "alpha", "format=csv-participation&limit=10000").await;
    // m1: three attendees and the organiser; h2: one; m2: two and the organiser; seven volunteers.
    assert_eq!(participation.body.lines().count(), 1 + 4 + 1 + 3 + 7, "{}", participation.body);

    // pandas and DuckDB read the NDJSON and the CSV as the README shows, and find what the export holds.
    let folder = tempfile::tempdir().unwrap();
    let (ndjson, csv_file) = (folder.path().join("events.ndjson"), folder.path().join("events.csv"));
    std::fs::write(&ndjson, &after_erasure.body).unwrap();
    let csv_body = export(&stack, "alpha", &format!("format=csv&limit=10000&min_seq={erased_at}")).await.body;
    std::fs::write(&csv_file, csv_body).unwrap();
    let exported_hours: Vec<Option<f64>> =
        after_erasure.lines.iter().map(|event| event["data"]["hours"].as_f64()).collect();
    let exported_ids: Vec<&str> = after_erasure.lines.iter().map(|event| event["id"].as_str().unwrap()).collect();
    for (reader, script) in [("pandas", "ensure-pandas.sh"), ("duckdb", "ensure-duckdb.sh")] {
        let python = tokio::task::spawn_blocking(move || momentum_tests::pinned_python(script)).await.unwrap();
        let output = tokio::process::Command::new(python)
            .arg(momentum_testkit::workspace_root().join("tests/exports/read_events_export.py"))
            .args([reader, ndjson.to_str().unwrap(), csv_file.to_str().unwrap()])
            .output()
            .await
            .unwrap();
        assert!(output.status.success(), "{reader}: {}", String::from_utf8_lossy(&output.stderr));
        let read: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(read["seq"], json!(sequences), "{reader} reads every event, in order");
        assert_eq!(read["ids"], json!(exported_ids), "{reader}");
        assert_eq!(read["types"], json!({ "meeting.held": 2, "volunteer.hours_logged": 8 }), "{reader}");
        assert_eq!(read["csv_seq"], json!(sequences), "{reader} reads the CSV's rows");
        assert_eq!(read["csv_hours"], json!(exported_hours), "{reader} reads the CSV's hours as the JSON holds them");
    }

    // `momentum export` writes the same straight from the stream: whole, from a cursor, with retracted events.
    let export_file = |name: &str, arguments: &[&str]| {
        let out = folder.path().join(name);
        let output = std::process::Command::new(momentum_testkit::workspace_binary("momentum"))
            .args(["export", "--movement", "alpha", "--out", out.to_str().unwrap()])
            .args(arguments)
            .env("MOMENTUM_NATS_URL", stack.nats.url())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let text = std::fs::read_to_string(&out).unwrap();
        text.lines().map(|line| serde_json::from_str::<Value>(line).unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(export_file("whole.ndjson", &[]), after_erasure.lines, "the command's file equals the HTTP export");
    let cursor = sequences[2].to_string();
    assert_eq!(export_file("rest.ndjson", &["--since-seq", &cursor]), after_erasure.lines[3..], "from a cursor");
    let retracted_too = export(&stack, "alpha", &format!("include=retracted&limit=10000&min_seq={erased_at}")).await;
    assert_eq!(export_file("all.ndjson", &["--include-retracted"]), retracted_too.lines);

    // Parquet, over HTTP and from the command line: pandas (pyarrow) and DuckDB read what the NDJSON holds, with
    // times as UTC microseconds, local dates and attendees as lists.
    let parquet_url =
        format!("{}/v1/movements/alpha/events?format=parquet&limit=10000&min_seq={erased_at}", stack.query_url);
    let response = stack.http.get(&parquet_url).bearer_auth(momentum_tests::ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/vnd.apache.parquet");
    let http_parquet = folder.path().join("http.parquet");
    std::fs::write(&http_parquet, response.bytes().await.unwrap()).unwrap();
    let command_parquet = folder.path().join("command.parquet");
    let output = std::process::Command::new(momentum_testkit::workspace_binary("momentum"))
        .args(["export", "--movement", "alpha", "--format", "parquet", "--out", command_parquet.to_str().unwrap()])
        .env("MOMENTUM_NATS_URL", stack.nats.url())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let expected = json!({
        "seq": sequences,
        "ids": exported_ids,
        "types": { "meeting.held": 2, "volunteer.hours_logged": 8 },
        "hours": exported_hours,
        "attendees": after_erasure.lines.iter().map(|event| event["data"]["attendees"].clone()).collect::<Vec<_>>(),
        "participant": after_erasure.lines.iter().map(|event| event["data"]["participant"].clone()).collect::<Vec<_>>(),
        "organisers": after_erasure.lines.iter().map(|event| organisers(event, "participant")).collect::<Vec<_>>(),
        "organiser_roles": after_erasure.lines.iter().map(|event| organisers(event, "role")).collect::<Vec<_>>(),
        "time_us": after_erasure.lines.iter().map(|event| {
            chrono::DateTime::parse_from_rfc3339(event["time"].as_str().unwrap()).unwrap().timestamp_micros()
        }).collect::<Vec<_>>(),
        "time_zone": "UTC",
        "dates": after_erasure.lines.iter().map(|event| {
            let time = chrono::DateTime::parse_from_rfc3339(event["time"].as_str().unwrap()).unwrap();
            time.with_timezone(&chrono_tz::Europe::London).date_naive().to_string()
        }).collect::<Vec<_>>(),
    });
    // The erased person reads `erased` wherever they were, in Parquet as in NDJSON.
    assert!(expected["attendees"][2].as_array().unwrap().contains(&json!("erased")), "{expected}");
    assert_eq!(expected["participant"][1], "erased", "{expected}");
    for (reader, script) in [("pandas", "ensure-pandas.sh"), ("duckdb", "ensure-duckdb.sh")] {
        let python = tokio::task::spawn_blocking(move || momentum_tests::pinned_python(script)).await.unwrap();
        for file in [&http_parquet, &command_parquet] {
            let output = tokio::process::Command::new(&python)
                .arg(momentum_testkit::workspace_root().join("tests/exports/read_parquet_export.py"))
                .args([reader, file.to_str().unwrap()])
                .output()
                .await
                .unwrap();
            assert!(output.status.success(), "{reader}: {}", String::from_utf8_lossy(&output.stderr));
            let read: Value = serde_json::from_slice(&output.stdout).unwrap();
            assert_eq!(read, expected, "{reader} reads {} as the NDJSON holds it", file.display());
        }
    }

    // The participation table as Parquet: a row per part, the organisers with their roles.
    let url = format!(
        "{}/v1/movements/alpha/events?format=parquet-participation&limit=10000&min_seq={erased_at}",
        stack.query_url
    );
    let response = stack.http.get(&url).bearer_auth(momentum_tests::ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let participation_parquet = folder.path().join("participation.parquet");
    std::fs::write(&participation_parquet, response.bytes().await.unwrap()).unwrap();
    let python = tokio::task::spawn_blocking(|| momentum_tests::pinned_python("ensure-duckdb.sh")).await.unwrap();
    let output = tokio::process::Command::new(&python)
        .arg(momentum_testkit::workspace_root().join("tests/exports/read_parquet_export.py"))
        .args(["participation", participation_parquet.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let read: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(read["parts"], json!({ "attendee": 5, "organiser": 2, "volunteer": 8 }), "{read}");
    let organiser_rows: Vec<Value> = after_erasure
        .lines
        .iter()
        .flat_map(|event| event["data"]["organisers"].as_array().cloned().unwrap_or_default())
        .map(|organiser| json!([organiser["participant"], organiser["role"]]))
        .collect();
    assert_eq!(read["organisers"], json!(organiser_rows));
    let people = read["people"].as_array().unwrap();
    assert!(people.contains(&json!("erased")) && !people.contains(&json!(gone)), "{read}");

    // Only readers of the movement: the evaluator of alpha may not read beta.
    let beta = stack
        .http
        .get(format!("{}/v1/movements/beta/events", stack.query_url))
        .bearer_auth(EVALUATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(beta.status(), 403);
    let unknown = stack.http.get(format!("{}/v1/movements/nowhere/events", stack.query_url));
    assert_eq!(unknown.bearer_auth(momentum_tests::ADMIN_TOKEN).send().await.unwrap().status(), 404);
    let retractions = stack.http.get(format!("{}/v1/movements/alpha/events?types=event.retracted", stack.query_url));
    assert_eq!(
        retractions.bearer_auth(momentum_tests::ADMIN_TOKEN).send().await.unwrap().status(),
        400,
        "never exported"
    );
    let bad = stack.http.get(format!("{}/v1/movements/alpha/events?limit=0", stack.query_url));
    let bad = bad.bearer_auth(EVALUATOR_TOKEN).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("limit"));
    stack.stop().await;
}
