//! The open-data package (`GET /v1/movements/{movement}/open-data.zip`)
//! against a real stack, checked by its users' tools: the pinned
//! `frictionless` validates it, pandas opens every CSV it lists. Its figures
//! are the caller's (an evaluator's suppressed), its licence the configured
//! one, and its columns described from docs/metrics.md.

use momentum_tests::{
    ADMIN_TOKEN, EVALUATOR_TOKEN, TestStack, hours, meeting, momentum_testkit, query_config, spawn_query,
};
use serde_json::{Value, json};

/// The package at `url` as `token` sees it, written to `folder`, with its watermark header.
async fn download(
    stack: &TestStack,
    url: &str,
    token: &str,
    min_seq: u64,
    folder: &std::path::Path,
) -> (std::path::PathBuf, u64) {
    let response = stack
        .http
        .get(format!("{url}/v1/movements/alpha/open-data.zip?min_seq={min_seq}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/zip");
    let watermark = response.headers()["momentum-watermark"].to_str().unwrap().parse().unwrap();
    let path = folder.join(format!("{token}.zip"));
    std::fs::write(&path, response.bytes().await.unwrap()).unwrap();
    (path, watermark)
}

/// What `tests/exports/check_open_data.py` found in a package, run with the Python of `script`.
async fn check(mode: &str, script: &'static str, package: &std::path::Path) -> Value {
    let python = tokio::task::spawn_blocking(move || momentum_tests::pinned_python(script)).await.unwrap();
    let output = tokio::process::Command::new(python)
        .arg(momentum_testkit::workspace_root().join("tests/exports/check_open_data.py"))
        .args([mode, package.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{mode}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn the_open_data_package_validates_opens_in_pandas_and_holds_the_callers_figures() {
    let stack = TestStack::start().await;
    let mut config = query_config(&stack.nats.url());
    config.suppress_below = 5;
    config.open_data_license = momentum_query::open_data::OpenDataLicense::CcBy4;
    let (_suppressing, suppressing_url) = spawn_query(&config).await;
    let people: Vec<String> = (0..7).map(|index| format!("person-{index}")).collect();
    let few: Vec<&str> = people.iter().take(3).map(String::as_str).collect();
    let many: Vec<&str> = people.iter().map(String::as_str).collect();
    let (status, body) = stack
        .post_batch(&[
            meeting("jan", "alpha", "2026-01-14T10:00:00Z", &few, "person-0"),
            meeting("mar", "alpha", "2026-03-11T10:00:00Z", &many, "person-0"),
            hours("h1", "alpha", "2026-03-12T10:00:00Z", "person-1", 2.5),
            meeting("beta", "beta", "2026-03-11T10:00:00Z", &many, "person-0"),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    let seq = body["max_seq"].as_u64().unwrap();
    let folder = tempfile::tempdir().unwrap();

    let (evaluators, evaluators_watermark) =
        download(&stack, &suppressing_url, EVALUATOR_TOKEN, seq, folder.path()).await;
    let (admins, admins_watermark) = download(&stack, &stack.query_url, ADMIN_TOKEN, seq, folder.path()).await;
    for (package, license, watermark) in
        [(&evaluators, "CC-BY-4.0", evaluators_watermark), (&admins, "OGL-UK-3.0", admins_watermark)]
    {
        let validated = check("validate", "ensure-frictionless.sh", package).await;
        assert_eq!(validated["valid"], true, "frictionless finds the package valid: {validated}");
        assert_eq!(validated["license"], license, "the configured licence");
        assert_eq!(validated["resources"], json!(["trends-weekly", "trends-monthly", "cohorts-monthly", "principles"]));
        assert_eq!(validated["descriptions"]["active_participants"], "distinct participants who took part in P");
        assert_eq!(validated["watermark"], watermark, "the header and the package name the same sequence");
        assert!(watermark >= seq);
    }

    // pandas opens every CSV; the months run from the first with activity to today.
    let suppressed = check("read", "ensure-pandas.sh", &evaluators).await;
    let whole = check("read", "ensure-pandas.sh", &admins).await;
    let months = |read: &Value| read["monthly"].as_array().unwrap().clone();
    assert_eq!(months(&whole)[0], json!({ "period": "2026-01-01", "meetings": 1, "active_participants": 3 }));
    assert_eq!(months(&whole)[2], json!({ "period": "2026-03-01", "meetings": 1, "active_participants": 7 }));
    assert_eq!(
        months(&suppressed)[0],
        json!({ "period": "2026-01-01", "meetings": 1, "active_participants": null }),
        "3 people is too few to publish to an evaluator"
    );
    assert_eq!(months(&suppressed)[2]["active_participants"], 7);
    // Weeks and months from those holding 1 January 2026 to those holding today; the January cohort has a
    // row for each month, March's for each month from March.
    use chrono::Datelike;
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Europe::London).date_naive();
    let monday = |date: chrono::NaiveDate| date - chrono::Days::new(u64::from(date.weekday().num_days_from_monday()));
    let first = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let weeks = (monday(today) - monday(first)).num_weeks() + 1;
    let months = i64::from((today.year() - 2026) * 12) + i64::from(today.month());
    assert_eq!(
        whole["rows"],
        json!({ "trends-weekly": weeks, "trends-monthly": months, "cohorts-monthly": 2 * months - 2, "principles": 8 })
    );

    // The README: the watermark, the hourly value's basis, the suppression and the definitions.
    let readme = suppressed["readme"].as_str().unwrap();
    assert!(readme.contains(&format!("As of stream sequence {evaluators_watermark}")), "{readme}");
    assert!(readme.contains("ashe_median_2024"), "{readme}");
    assert!(readme.contains("counts of people from 1 to 4 are empty cells"), "{readme}");
    assert!(readme.contains("### Trend metrics") && readme.contains("| `retention_rate` |"), "{readme}");
    assert!(whole["readme"].as_str().unwrap().contains("none: every count is shown"));

    // Only readers of the movement.
    let beta = stack.http.get(format!("{}/v1/movements/beta/open-data.zip", stack.query_url));
    assert_eq!(beta.bearer_auth(EVALUATOR_TOKEN).send().await.unwrap().status(), 403);
    let unknown = stack.http.get(format!("{}/v1/movements/nowhere/open-data.zip", stack.query_url));
    assert_eq!(unknown.bearer_auth(ADMIN_TOKEN).send().await.unwrap().status(), 404);
    let bad = stack.http.get(format!("{}/v1/movements/alpha/open-data.zip?format=csv", stack.query_url));
    let bad = bad.bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(bad.status(), 400, "a parameter the route does not take is refused");
    assert!(bad.text().await.unwrap().contains("format"));
    stack.stop().await;
}
