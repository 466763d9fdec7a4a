//! The bench's peer stage: an analytical engine doing the projector's work
//! on the same events, in the same run.
//!
//! The stream is exported as NDJSON (one stored event a line, in stream
//! order), DuckDB (pinned, from PyPI, run by `scripts/bench_peer.py`) loads
//! it and computes every movement's weekly figures for nine trend metrics,
//! and each of those figures is compared with what the query service
//! answers for the same movement and week. The stage fails on any
//! difference: the peer is also a second, independent reading of
//! docs/metrics.md.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use async_nats::jetstream;
use chrono::NaiveDate;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

/// The peer's program, written next to the export at each run.
const SCRIPT: &str = include_str!("../../../../scripts/bench_peer.py");

/// The variable naming the Python that has DuckDB (`scripts/bench.sh` and
/// `scripts/test.sh` set it from `scripts/ensure-duckdb.sh`).
pub(super) const PYTHON_VARIABLE: &str = "MOMENTUM_BENCH_PYTHON";

/// What the peer wrote: its timings and, by movement and week, the values
/// of `metrics`.
#[derive(Deserialize)]
struct PeerAnswer {
    metrics: Vec<String>,
    load_seconds: f64,
    compute_seconds: f64,
    figures: BTreeMap<String, BTreeMap<NaiveDate, Vec<i64>>>,
}

/// Writes the stream's events, in stream order, one a line, to `path`.
/// Returns the seconds it took.
pub(super) async fn export(stream: &jetstream::stream::Stream, last_sequence: u64, path: &Path) -> anyhow::Result<f64> {
    use jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
    let started = Instant::now();
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let consumer =
        stream.create_consumer(OrderedConfig { deliver_policy: DeliverPolicy::All, ..Default::default() }).await?;
    let mut messages = consumer.messages().await?;
    let mut read = 0u64;
    while read < last_sequence {
        let message = messages.next().await.context("the stream ended early")??;
        read = message.info().map_err(|error| anyhow::anyhow!("{error}"))?.stream_sequence;
        if message.payload.contains(&b'\n') {
            bail!("event {read} holds a line break, which NDJSON cannot carry");
        }
        out.write_all(&message.payload)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(started.elapsed().as_secs_f64())
}

/// Runs the peer over the export at `events` and compares its figures with
/// the query service's. `rebuild_seconds` is the projector's catch-up over
/// the same events.
pub(super) async fn run(
    http: &reqwest::Client,
    query_url: &str,
    token: &str,
    events: &Path,
    rebuild_seconds: f64,
) -> anyhow::Result<Value> {
    let python = std::env::var_os(PYTHON_VARIABLE).with_context(|| {
        format!("{PYTHON_VARIABLE} is not set: scripts/bench.sh sets it to the Python of scripts/ensure-duckdb.sh")
    })?;
    let folder = events.parent().context("the export has a folder")?;
    let script = folder.join("bench_peer.py");
    std::fs::write(&script, SCRIPT)?;
    let out = folder.join("peer.json");
    let started = Instant::now();
    let status = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(events)
        .arg(&out)
        .arg("Europe/London")
        .status()
        .await
        .with_context(|| format!("running {}", Path::new(&python).display()))?;
    let wall_seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("the DuckDB peer failed ({status})");
    }
    let answer: PeerAnswer = serde_json::from_slice(&std::fs::read(&out)?).context("reading the peer's answer")?;
    let (compared, differences) = compare(http, query_url, token, &answer).await?;
    if !differences.is_empty() {
        bail!(
            "DuckDB and momentum differ on {} figures, e.g. {:?}",
            differences.len(),
            &differences[..5.min(differences.len())]
        );
    }
    let peer_seconds = answer.load_seconds + answer.compute_seconds;
    Ok(json!({
        "engine": "duckdb",
        "movements": answer.figures.len(),
        "figures_compared": compared,
        "equal": true,
        "load_seconds": answer.load_seconds,
        "compute_seconds": answer.compute_seconds,
        "load_and_compute_seconds": peer_seconds,
        "process_seconds": wall_seconds,
        "rebuild_seconds": rebuild_seconds,
        "rebuild_ratio_to_peer": rebuild_seconds / peer_seconds,
    }))
}

/// Every figure of the peer beside the query service's for the same
/// movement and week (weeks the peer has no row for are zeros). Returns
/// how many were compared and a description of each that differs.
async fn compare(
    http: &reqwest::Client,
    query_url: &str,
    token: &str,
    answer: &PeerAnswer,
) -> anyhow::Result<(usize, Vec<String>)> {
    let names: Vec<&str> = answer
        .metrics
        .iter()
        .map(|metric| if metric == "volunteer_millihours" { "volunteer_hours" } else { metric.as_str() })
        .collect();
    let mut compared = 0;
    let mut differences = Vec::new();
    for (movement, weeks) in &answer.figures {
        let (Some(first), Some(last)) = (weeks.keys().next(), weeks.keys().next_back()) else { continue };
        let url = format!(
            "{query_url}/v1/movements/{movement}/trends?interval=week&from={first}&to={last}&metrics={}",
            names.join(",")
        );
        let response = http.get(&url).bearer_auth(token).send().await?;
        if !response.status().is_success() {
            bail!("reading {url}: {}", response.status());
        }
        let trend: Value = response.json().await?;
        let rows = trend["series"].as_array().context("a trend has a series")?;
        for row in rows {
            let week: NaiveDate = serde_json::from_value(row["period"].clone())?;
            let expected = weeks.get(&week);
            for (index, name) in names.iter().enumerate() {
                let peer = expected.map_or(0, |values| values[index]);
                let ours = match *name {
                    "volunteer_hours" => row[name].as_f64().map(|hours| (hours * 1000.0).round() as i64),
                    _ => row[name].as_i64(),
                };
                compared += 1;
                if ours != Some(peer) {
                    differences.push(format!("{movement} {week} {name}: momentum {ours:?}, DuckDB {peer}"));
                }
            }
        }
    }
    Ok((compared, differences))
}
