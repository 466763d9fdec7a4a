//! `momentum-dev bench --smoke`: every stage of the benchmark still runs and
//! reports a figure. Speed is never asserted here; the full run's figures
//! are in docs/benchmarks.md.

use momentum_testkit::workspace_binary;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_smoke_run_measures_every_stage_and_writes_its_report() {
    let _heavy = momentum_tests::one_heavy_test_at_a_time().await;
    let folder = tempfile::tempdir().unwrap();
    let report_path = folder.path().join("report.json");
    let mut command = std::process::Command::new(workspace_binary("momentum-dev"));
    command.args(["bench", "--smoke", "--out"]).arg(&report_path);
    let output = tokio::task::spawn_blocking(move || command.output()).await.unwrap().expect("momentum-dev bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "momentum-dev bench --smoke failed:\n{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(report["smoke"], true);
    assert_eq!(report["machine"]["nats_server_version"], momentum_testkit::NATS_SERVER_VERSION);
    let positive = |pointer: &str| {
        let value = report.pointer(pointer).and_then(Value::as_f64);
        assert!(value.is_some_and(|value| value.is_finite() && value > 0.0), "{pointer} is {value:?} in {report}");
    };
    for pointer in [
        "/raw_publish_events_per_s",
        "/ingest_batches_events_per_s",
        "/ingest_batches_ratio_to_raw",
        "/ingest_single/requests_per_s",
        "/ingest_single/p99_ms",
        "/raw_consume_events_per_s",
        "/projector_catch_up/events_per_s",
        "/projector_catch_up/ratio_to_raw_consume",
        "/projector_catch_up/rss_peak_mib",
        "/freshness/p50_ms",
        "/freshness/p99_ms",
        "/query_trends/requests_per_s",
        "/query_trends/p99_ms",
        "/sizes/stream_bytes_per_million_events",
        "/sizes/store_bytes_per_million_events",
        "/distinct_participants",
        "/first_trend_read_ms/ms",
        "/first_trend_read_ms/projector_ms",
        "/peer/load_and_compute_seconds",
        "/peer/rebuild_ratio_to_peer",
        "/peer/figures_compared",
        "/durability/default_sync/single/requests_per_s",
        "/durability/sync_always/single/requests_per_s",
        "/durability/sync_always/single/p99_ms",
        "/durability/sync_always/pipelined_events_per_s",
        "/durability/single_rate_ratio",
        "/durability/pipelined_rate_ratio",
    ] {
        positive(pointer);
    }
    // The stream held at least the events asked for, and the projector
    // caught up with all of them; the freshness stage's posts (its warm-up
    // too) came after.
    let events = report["projector_catch_up"]["events"].as_u64().unwrap();
    assert!(events >= 5000, "{events}");
    // The peer read the same events and agreed on every figure it computed
    // (the bench fails otherwise), covering every movement.
    assert_eq!(report["peer"]["equal"], true, "{report}");
    assert_eq!(report["peer"]["events"], report["sizes"]["stream_events"], "{report}");
    let freshness = &report["freshness"];
    assert_eq!(
        report["sizes"]["stream_events"].as_u64().unwrap(),
        events + freshness["warm_up_reads"].as_u64().unwrap() + freshness["reads"].as_u64().unwrap()
    );
    for stage in [
        "1. raw JetStream publish",
        "5. projector catch-up",
        "8. peer",
        "9. size per million events",
        "10. cost of sync_interval: always",
    ] {
        assert!(stdout.contains(stage), "the table names stage {stage:?}:\n{stdout}");
    }
}
