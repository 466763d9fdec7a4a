//! The API against its own documents: schemathesis (through
//! `scripts/api-fuzz.sh`) reads each service's `/openapi.json` and sends
//! schema-valid and schema-invalid requests to every operation; every
//! answer must be documented (status, content type, headers, body schema)
//! and none may be a 5xx. Authentication and pseudonymisation are on, and
//! the fuzzer uses the admin token, so every answer can be reached.
//!
//! schemathesis is a Python tool: `scripts/test.sh` installs it first; run
//! alone, the script installs it into `.tools/` (it needs pip and PyPI). If
//! it cannot, this test fails and says why.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use momentum_tests::{TestStack, action, hours, meeting};

/// The movement of the documents' examples, so the examples phase reads
/// real figures, not only 404s.
const MOVEMENT: &str = "bristol-befriending";

/// A whole fuzz run of one service is cut off after this.
const RUN_TIME_MAX: Duration = Duration::from_secs(300);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/api-fuzz.sh")
}

/// Runs the fuzzer against one service: whether it passed, and its report.
async fn fuzz(service: &str, base_url: &str, token: &str, min_seq_max: u64) -> (bool, String) {
    let started = Instant::now();
    let mut command = tokio::process::Command::new(script());
    command
        .arg(format!("{base_url}/openapi.json"))
        .env("MOMENTUM_FUZZ_TOKEN", token)
        .env("MOMENTUM_FUZZ_MIN_SEQ_MAX", min_seq_max.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().unwrap_or_else(|error| panic!("cannot run {}: {error}", script().display()));
    let output = match tokio::time::timeout(RUN_TIME_MAX, child.wait_with_output()).await {
        Err(_) => return (false, format!("the {service} fuzz run took over {RUN_TIME_MAX:?} and was stopped")),
        Ok(output) => output.expect("the fuzz script runs"),
    };
    let report = format!(
        "--- {service}: scripts/api-fuzz.sh {base_url}/openapi.json, exit {:?} after {:.0?} ---\n{}{}",
        output.status.code(),
        started.elapsed(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_of_both_services_matches_their_openapi_documents() {
    let _heavy = momentum_tests::one_heavy_test_at_a_time().await;
    let stack = TestStack::start().await;
    let (status, body) =
        stack.post_event(&meeting("m1", MOVEMENT, "2026-03-02T18:00:00Z", &["a", "b", "c"], "o1")).await;
    assert_eq!(status, 202, "{body}");
    let batch = [
        hours("h1", MOVEMENT, "2026-03-03T10:00:00Z", "a", 2.5),
        action("x1", MOVEMENT, "2026-03-04T11:00:00+00:00", &["b", "d"], 100),
        hours("h2", MOVEMENT, "2026-03-09T10:00:00Z", "e", 1.25),
    ];
    let (status, body) = stack.post_batch(&batch).await;
    assert_eq!(status, 200, "{body}");
    // Wait until the projection has them, so reads answer figures; the
    // fuzzer's `min_seq` stays at or below this sequence.
    let max_seq = body["max_seq"].as_u64().unwrap();
    stack.weekly_trend(MOVEMENT, "2026-03-02", "2026-03-09", max_seq).await;

    let (ingest_url, query_url, token) = (stack.ingest_url.clone(), stack.query_url.clone(), stack.admin_token.clone());
    let ((ingest_passed, ingest_report), (query_passed, query_report)) =
        tokio::join!(fuzz("ingest", &ingest_url, &token, max_seq), fuzz("query", &query_url, &token, max_seq));
    println!("{ingest_report}\n{query_report}");
    stack.stop().await;
    assert!(
        ingest_passed && query_passed,
        "schemathesis found problems (or could not run): ingest {}, query {}; the reports are above",
        if ingest_passed { "passed" } else { "FAILED" },
        if query_passed { "passed" } else { "FAILED" },
    );
}
