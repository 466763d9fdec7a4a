//! What operations teams rely on: Prometheus metrics on every service, a
//! request id that travels from HTTP into NATS and the projector's log,
//! settings from a file, and `momentum probe` for container health checks.

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::Duration;

use momentum_testkit::{ChildProcess, workspace_binary};
use momentum_tests::{TestStack, hours, metric, projector_config, spawn_projector_with_address};
use serde_json::Value;

/// The value of the metric line that starts with `series` (name and labels).
async fn scrape(http: &reqwest::Client, url: &str) -> String {
    let response = http.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}/metrics needs no token");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "a complete OpenMetrics document");
    text
}

#[tokio::test]
async fn every_service_serves_prometheus_metrics_of_what_it_did() {
    let stack = TestStack::start().await;
    let (_, body) = stack
        .post_batch(&[
            hours("m1", "alpha", "2026-03-04T10:00:00Z", "p", 1.0),
            hours("m2", "alpha", "2026-03-04T11:00:00Z", "q", 2.0),
            hours("bad", "alpha", "2026-03-04T11:00:00Z", "q", -2.0),
        ])
        .await;
    let seq = body["max_seq"].as_u64().unwrap();
    let (status, _) = stack.post_event(&hours("m1", "alpha", "2026-03-04T10:00:00Z", "p", 1.0)).await;
    assert_eq!(status, 200, "a duplicate");
    stack.weekly_trend("alpha", "2026-03-02", "2026-03-08", seq).await;

    let ingest = scrape(&stack.http, &stack.ingest_url).await;
    assert_eq!(metric(&ingest, r#"momentum_ingest_events_total{outcome="accepted"}"#), Some(2.0), "{ingest}");
    assert_eq!(metric(&ingest, r#"momentum_ingest_events_total{outcome="duplicate"}"#), Some(1.0));
    assert_eq!(metric(&ingest, r#"momentum_ingest_events_total{outcome="rejected"}"#), Some(1.0));
    assert_eq!(metric(&ingest, "momentum_ingest_publish_duration_seconds_count"), Some(2.0), "two requests published");
    assert_eq!(
        metric(&ingest, r#"momentum_http_requests_total{route="/v1/events",method="POST",status="200"}"#),
        Some(2.0)
    );
    assert_eq!(metric(&ingest, "momentum_nats_connected"), Some(1.0));

    let query = scrape(&stack.http, &stack.query_url).await;
    let route = r#"momentum_http_requests_total{route="/v1/movements/{movement}/trends",method="GET",status="200"}"#;
    assert_eq!(metric(&query, route), Some(1.0), "{query}");
    assert!(metric(&query, r#"momentum_query_projector_duration_seconds_count{route="trend_totals"}"#) >= Some(1.0));
    assert!(!query.contains("alpha"), "movement ids never become labels");

    // A second projector, on its own port, folds the same stream.
    let data = tempfile::tempdir().unwrap();
    let (projector, url) =
        spawn_projector_with_address(&projector_config(&stack.nats.url(), data.path().to_owned())).await;
    let mut text = String::new();
    for _ in 0..100 {
        text = scrape(&stack.http, &url).await;
        if metric(&text, "momentum_projector_watermark") == Some(seq as f64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&text, "momentum_projector_watermark"), Some(seq as f64), "{text}");
    assert_eq!(metric(&text, "momentum_projector_lag_messages"), Some(0.0));
    assert_eq!(metric(&text, "momentum_projector_applied_events_total"), Some(seq as f64));
    assert!(metric(&text, "momentum_projector_batch_events_count") >= Some(1.0));
    // Reads are timed. Two projectors share the query subjects, so a
    // listing reaches this one after a few at most.
    let reads = |text: &str| metric(text, "momentum_projector_read_duration_seconds_count");
    let before = reads(&text).expect("the read duration is exposed");
    let nats = async_nats::connect(stack.nats.url()).await.unwrap();
    let subject = momentum_bus::Partition::WHOLE.read_subject::<momentum_bus::protocol::MovementsRequest>();
    let mut after = before;
    for _ in 0..20 {
        nats.request(subject.clone(), "{}".into()).await.unwrap();
        after = reads(&scrape(&stack.http, &url).await).unwrap();
        if after > before {
            break;
        }
    }
    assert!(after > before, "one of twenty listings reached the second projector and was timed");
    projector.stop().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_travels_from_the_http_request_into_nats_and_the_projectors_log() {
    let stack = TestStack::start().await;
    let response = stack
        .http
        .post(format!("{}/v1/events", stack.ingest_url))
        .bearer_auth(&stack.admin_token)
        .header("content-type", "application/json")
        .header("x-request-id", "trace-me-7")
        .body(hours("traced", "alpha", "2026-03-04T10:00:00Z", "p", 1.0).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["x-request-id"], "trace-me-7", "the id is echoed");

    // It is in the stored message's headers...
    let client = async_nats::connect(stack.nats.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let stream = jetstream.get_stream(momentum_bus::STREAM_NAME).await.unwrap();
    let stored = stream.get_raw_message(1).await.unwrap();
    assert_eq!(stored.headers.get(momentum_runtime::request_id::NATS_HEADER).unwrap().as_str(), "trace-me-7");

    // ...and in the projector's log line for the event. This projector gets
    // its settings from a file, with the environment only for the URL.
    let folder = tempfile::tempdir().unwrap();
    let settings = folder.path().join("projector.toml");
    std::fs::write(
        &settings,
        format!(
            "data_dir = {:?}\nhttp_addr = \"127.0.0.1:0\"\nlog_json = true\nbatch_size_max = 10\n",
            folder.path().join("store")
        ),
    )
    .unwrap();
    let mut projector = ChildProcess::spawn(
        Command::new(workspace_binary("momentum-projector"))
            .arg("--config-file")
            .arg(&settings)
            .env("MOMENTUM_NATS_URL", stack.nats.url())
            .env("RUST_LOG", "momentum_projector=debug")
            .stdout(std::process::Stdio::piped()),
    );
    let stdout = projector.take_stdout();
    let found = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout).lines().map_while(Result::ok).find(|line| line.contains("trace-me-7"))
    });
    let line = tokio::time::timeout(Duration::from_secs(20), found).await.expect("the log names the id").unwrap();
    let line: Value = serde_json::from_str(&line.expect("a log line")).expect("JSON log lines");
    assert_eq!(line["request_id"], "trace-me-7", "{line}");
    assert_eq!(line["sequence"], 1);
    assert!(folder.path().join("store").exists(), "the data folder came from the settings file");
    projector.kill();
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn momentum_probe_exits_zero_only_when_the_service_answers_ready() {
    let stack = TestStack::start().await;
    // The probe runs on a blocking thread, so the services in this process
    // keep answering.
    let probe = |url: String| async move {
        let run = move || Command::new(workspace_binary("momentum")).arg("probe").arg(url).output();
        tokio::task::spawn_blocking(run).await.unwrap().expect("the probe runs")
    };
    let ready = probe(format!("{}/readyz", stack.ingest_url)).await;
    assert!(ready.status.success(), "{}", String::from_utf8_lossy(&ready.stderr));
    let closed = format!("http://127.0.0.1:{}/readyz", momentum_testkit::free_port());
    let refused = probe(closed).await;
    assert!(!refused.status.success());
    let not_found = probe(format!("{}/no-such-path", stack.query_url)).await;
    assert!(!not_found.status.success(), "only a 200 counts");
    assert!(String::from_utf8_lossy(&not_found.stderr).contains("404"));
    stack.stop().await;
}

/// The metric names a document of the deployment (an alert rule file, a
/// Grafana dashboard) names: every `momentum_…` word in it.
fn named_metrics(document: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = document;
    while let Some(at) = rest.find("momentum_") {
        let tail = &rest[at..];
        let end =
            tail.find(|c: char| !(c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())).unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The sample names a scrape holds: each family's, with the suffixes
/// OpenMetrics gives counters and histograms.
fn sample_names(scrape: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in scrape.lines().filter(|line| line.starts_with("# TYPE ")) {
        let mut words = line["# TYPE ".len()..].split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else { continue };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|suffix| format!("{name}{suffix}")));
    }
    names
}

#[tokio::test]
async fn every_metric_the_alert_rules_and_the_grafana_dashboard_name_is_served_and_the_rules_parse() {
    let stack = TestStack::start().await;
    // Families with labels show once they have a sample: an event and a read.
    let (_, body) = stack.post_event(&hours("m1", "alpha", "2026-03-04T10:00:00Z", "p", 1.0)).await;
    stack.weekly_trend("alpha", "2026-03-02", "2026-03-08", body["seq"].as_u64().unwrap()).await;
    let mut served = std::collections::BTreeSet::new();
    let projector_url = stack.projector_url.clone().expect("the stack's projector serves its probes");
    for url in [&stack.ingest_url, &stack.query_url, &projector_url] {
        served.extend(sample_names(&scrape(&stack.http, url).await));
    }
    let root = momentum_testkit::workspace_root().join("deploy/monitoring");
    let rules = std::fs::read_to_string(root.join("alerts.yml")).unwrap();
    let dashboard = std::fs::read_to_string(root.join("grafana-dashboard.json")).unwrap();
    let _: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    for (document, text) in [("alerts.yml", &rules), ("grafana-dashboard.json", &dashboard)] {
        let named = named_metrics(text);
        assert!(named.len() >= 5, "{document} names metrics: {named:?}");
        let missing: Vec<&String> = named.iter().filter(|name| !served.contains(*name)).collect();
        assert!(missing.is_empty(), "{document} names {missing:?}, which no service serves; served: {served:?}");
    }
    // promtool comes with Debian's prometheus package; scripts/test.sh installs it.
    let checked = Command::new("promtool").arg("check").arg("rules").arg(root.join("alerts.yml")).output();
    let checked = checked.expect("promtool runs: apt-get install --no-install-recommends prometheus");
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
    assert!(String::from_utf8_lossy(&checked.stdout).contains("SUCCESS: 5 rules found"));
    stack.stop().await;
}
