//! `momentum-dev bench`: every stage of momentum measured beside the raw ceiling
//! of the same nats-server, in one run on one machine.
//!
//! It starts its own nats-server and the services (the binaries next to this
//! one, as real processes), generates events with the demo generator (renamed
//! copies of its six movements, so any number of events keeps the demo's mix
//! and sizes), and measures, in order:
//!
//! 1. raw JetStream publishing of the same payloads, with message ids and
//!    pipelined acknowledgements;
//! 2. HTTP ingest of batches of 500 from several clients;
//! 3. HTTP ingest of one event per request from 64 connections;
//! 4. raw reading of the event stream with an ordered consumer;
//! 5. the projector catching up from sequence 1 (the stream is first topped
//!    up to `--events` with raw publishes on the events' own subjects), and
//!    `momentum export` writing the largest movement's events, against a raw
//!    ordered read of that movement's subjects;
//! 6. freshness at a steady rate (after two seconds of warm-up, reported
//!    apart): from ingest's answer to the event being
//!    visible through the query API (`min_seq`);
//! 7. trend reads of three years of weekly figures from 32 connections
//!    (the first, before anything is cached, timed on its own);
//! 8. the peer: the stream exported as NDJSON, loaded into DuckDB and every
//!    movement's weekly figures computed there, timed against stage 5 and
//!    compared figure by figure with momentum's ([`peer`]);
//! 9. the stream's and the store's size per million events.
//!
//! It prints a table and writes the figures as JSON. It asserts nothing
//! about speed: `--smoke` runs every stage on a few thousand events only to
//! show that each still works.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::jetstream;
use chrono::Utc;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use momentum_testkit::{ChildProcess, NatsServer, free_port, wait_for_port};
use reqwest::StatusCode;
use serde_json::{Value, json};

mod load;
mod peer;

#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Events in the stream for the projector's catch-up and the store sizes.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    events: usize,
    /// Events posted over HTTP in batches (stage 2), and published raw for
    /// the ceiling it is compared with (stage 1) [default: 200000, or
    /// --events if fewer].
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    http_events: Option<usize>,
    /// Seconds each timed stage (3, 6 and 7) runs.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// Events per second posted while freshness is measured (stage 6).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    freshness_rate: u64,
    /// The movements the events belong to: `demo`, the demo's six
    /// movements under new names every eight copies (about 100 000
    /// participants in a million events); `large`, every copy under the
    /// same six names, so that each movement holds a sixth of the events;
    /// or `national`, every copy under new names, for a run of ten million
    /// events over about 1 500 movements (events are generated as they are
    /// published, so the bench holds only the HTTP stages' in memory).
    #[arg(long, value_enum, default_value_t = Mix::Demo)]
    mix: Mix,
    /// A short run of every stage, only to show that each works (CI runs it).
    #[arg(long)]
    smoke: bool,
    /// Where the JSON report is written.
    #[arg(long, default_value = "target/bench/report.json")]
    out: PathBuf,
}

/// How the generated events are spread over movements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Mix {
    Demo,
    Large,
    National,
}

/// Events generated and published in one step while the stream is topped up.
const TOP_UP_CHUNK_EVENTS: usize = 50_000;

/// Concurrent HTTP clients posting batches in stage 2.
const BATCH_CLIENTS: usize = 4;
/// Events a batch in stage 2.
const BATCH_EVENTS: usize = 500;
/// Connections posting single events in stage 3.
const SINGLE_CONNECTIONS: usize = 64;
/// Connections reading trends in stage 7.
const QUERY_CONNECTIONS: usize = 32;
/// Raw publishes awaiting their acknowledgement at once (ingest's own bound).
const RAW_ACKS_IN_FLIGHT_MAX: usize = 4096;
/// How long the projector may take to catch up before the run gives up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(3600);

const TOKEN: &str = "momentum-bench-admin-token";

/// Events posted over HTTP in stage 2 unless `--http-events` says otherwise.
const HTTP_EVENTS_DEFAULT: usize = 200_000;

pub(crate) async fn run(mut arguments: BenchArgs) -> anyhow::Result<()> {
    if arguments.smoke {
        arguments.events = arguments.events.min(5000);
        arguments.http_events = Some(arguments.http_events.unwrap_or(2000).min(2000));
        arguments.seconds = arguments.seconds.min(1);
        arguments.freshness_rate = arguments.freshness_rate.min(200);
    }
    let http_events = arguments.http_events.unwrap_or(HTTP_EVENTS_DEFAULT.min(arguments.events));
    if http_events > arguments.events {
        bail!("--http-events ({http_events}) must not exceed --events ({})", arguments.events);
    }
    let work = tempfile::Builder::new().prefix("momentum-bench-").tempdir()?;
    let nats_binary = momentum_testkit::nats_server_binary();
    let runs = std::process::Command::new(&nats_binary).arg("--version").output().is_ok_and(|out| out.status.success());
    if !runs {
        bail!(
            "cannot run nats-server ({}): set MOMENTUM_NATS_SERVER to its path or put it on PATH \
             (scripts/bench.sh installs the pinned {})",
            nats_binary.display(),
            momentum_testkit::NATS_SERVER_VERSION
        );
    }
    let nats_server = NatsServer::start();
    let nats = async_nats::connect(nats_server.url()).await.context("connecting to the bench's nats-server")?;
    let machine = machine(&nats);
    eprintln!(
        "momentum-dev bench: {} cores, {:.1} GiB, nats-server {}{}",
        machine["cores"],
        machine["memory_gib"].as_f64().unwrap_or(0.0),
        machine["nats_server_version"].as_str().unwrap_or("?"),
        if arguments.smoke { " (smoke run: the figures mean nothing)" } else { "" }
    );
    let secrets = write_secrets(work.path())?;
    let ingest_port = free_port();
    let _ingest = spawn_service(
        "momentum-ingest",
        &nats_server.url(),
        &secrets,
        ingest_port,
        &[
            // The bench measures momentum, not its per-token rate limit.
            ("MOMENTUM_RATE_EVENTS_PER_S", "100000000"),
            ("MOMENTUM_RATE_BURST_EVENTS", "100000000"),
        ],
    )?;
    let query_port = free_port();
    let _query = spawn_service("momentum-query", &nats_server.url(), &secrets, query_port, &[])?;
    for port in [ingest_port, query_port] {
        if !wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(30)) {
            bail!("a service did not start listening on port {port}");
        }
    }
    let mut cpu = CpuAccount::default();
    cpu.watch("nats-server", nats_server.pid());
    cpu.watch("ingest", Some(_ingest.id()));
    cpu.watch("query", Some(_query.id()));
    cpu.watch("bench", Some(std::process::id()));
    let (ingest_address, query_address) = (format!("127.0.0.1:{ingest_port}"), format!("127.0.0.1:{query_port}"));
    let (ingest_url, query_url) = (format!("http://{ingest_address}"), format!("http://{query_address}"));
    let http = reqwest::Client::builder().pool_max_idle_per_host(128).timeout(Duration::from_secs(60)).build()?;

    eprintln!("generating the first {http_events} events (the rest as the stream is topped up)");
    let mut source = generate_lazily(arguments.mix, Utc::now());
    let http_part: Vec<Value> = source.by_ref().take(http_events).collect();
    let mut census = Census::default();
    census.count(&http_part);
    let http_part = http_part.as_slice();
    let mut report = json!({
        "machine": machine,
        "smoke": arguments.smoke,
        "mix": format!("{:?}", arguments.mix).to_lowercase(),
        "cpu_seconds": {},
    });

    eprintln!("1/10 raw JetStream publish of {} events", http_part.len());
    let mark = cpu.now();
    let raw_publish = raw_publish(&nats, http_part).await?;
    report["cpu_seconds"]["raw_publish"] = cpu.since(&mark);
    report["raw_publish_events_per_s"] = json!(raw_publish);

    eprintln!("2/10 HTTP ingest, batches of {BATCH_EVENTS} from {BATCH_CLIENTS} clients");
    let mark = cpu.now();
    let batches = ingest_batches(&http, &ingest_url, http_part).await?;
    report["cpu_seconds"]["ingest_batches"] = cpu.since(&mark);
    report["ingest_batches_events_per_s"] = json!(batches);
    report["ingest_batches_ratio_to_raw"] = json!(batches / raw_publish);

    eprintln!("3/10 HTTP ingest, one event a request from {SINGLE_CONNECTIONS} connections");
    let mark = cpu.now();
    let single = ingest_single(&ingest_address, http_part, Duration::from_secs(arguments.seconds)).await?;
    report["cpu_seconds"]["ingest_single"] = cpu.since(&mark);
    report["ingest_single"] = single;

    let jetstream = jetstream::new(nats.clone());
    let mut stream = jetstream.get_stream(momentum_bus::STREAM_NAME).await?;
    let stored = stream.info().await?.state.messages as usize;
    let top_up = arguments.events.saturating_sub(stored);
    eprintln!("topping the stream up to {} events with raw publishes", arguments.events);
    let progress = progress_bar(top_up as u64);
    let mut topped = 0;
    while topped < top_up {
        let chunk: Vec<Value> = source.by_ref().take((top_up - topped).min(TOP_UP_CHUNK_EVENTS)).collect();
        census.count(&chunk);
        raw_publish_events(&jetstream, &chunk).await?;
        topped += chunk.len();
        progress.set_position(topped as u64);
    }
    progress.finish_and_clear();
    let last_sequence = stream.info().await?.state.last_sequence;
    eprintln!("workload: {} events generated, {} distinct participants", census.events, census.participants.len());
    report["events"] = json!(census.events);
    report["distinct_participants"] = json!(census.participants.len());
    report["movements"] = json!(census.events_by_movement.len());

    eprintln!("4/10 raw ordered-consumer read of {last_sequence} events");
    let mark = cpu.now();
    let raw_consume = raw_consume(&stream, last_sequence).await?;
    report["cpu_seconds"]["raw_consume"] = cpu.since(&mark);
    report["raw_consume_events_per_s"] = json!(raw_consume);

    eprintln!("5/10 projector catch-up from sequence 1 over {last_sequence} events");
    let data = work.path().join("projector");
    let projector_port = free_port();
    let mut projector = spawn_service(
        "momentum-projector",
        &nats_server.url(),
        &secrets,
        projector_port,
        &[("MOMENTUM_DATA_DIR", data.to_str().context("a UTF-8 temporary folder")?)],
    )?;
    cpu.watch("projector", Some(projector.id()));
    let mark = cpu.now();
    let catch_up = catch_up(&http, projector_port, projector.id(), last_sequence).await?;
    report["cpu_seconds"]["projector_catch_up"] = cpu.since(&mark);
    report["projector_catch_up"] = catch_up;
    report["projector_catch_up"]["ratio_to_raw_consume"] =
        json!(report["projector_catch_up"]["events_per_s"].as_f64().unwrap_or(0.0) / raw_consume);

    let largest = census.largest_movement();
    eprintln!("5/10 the export command over the largest movement, {largest}, against a raw read of its events");
    report["export_command"] = export_command(&nats_server.url(), &largest, work.path()).await?;

    eprintln!("6/10 freshness at {} events/s", arguments.freshness_rate);
    let movement = http_part[0]["subject"].as_str().context("events have a movement")?.to_owned();
    let freshness =
        freshness(&http, &ingest_url, &query_url, &movement, arguments.freshness_rate, arguments.seconds).await?;
    report["freshness"] = freshness;

    eprintln!("7/10 trend reads at {QUERY_CONNECTIONS} connections");
    report["first_trend_read_ms"] = first_trend_read_ms(&http, &query_url, projector_port, &largest).await?;
    let mark = cpu.now();
    let seconds = Duration::from_secs(arguments.seconds);
    report["query_trends"] = query_trends(&query_address, &movement, "", seconds).await?;
    report["cpu_seconds"]["query_trends"] = cpu.since(&mark);
    // The same reads split by area (the top 10 and the rest: 12 passes over
    // the facts), and as the projection stood halfway through the stream.
    report["query_split_trends"] = query_trends(&query_address, &movement, "&by=area", seconds).await?;
    let halfway = format!("&as_of_seq={}", last_sequence / 2);
    report["query_as_of_trends"] = query_trends(&query_address, &movement, &halfway, seconds).await?;
    for stage in ["query_split_trends", "query_as_of_trends"] {
        report[stage]["ratio_to_trend_reads"] = json!(
            report[stage]["requests_per_s"].as_f64().unwrap_or(0.0)
                / report["query_trends"]["requests_per_s"].as_f64().unwrap_or(f64::NAN)
        );
    }

    eprintln!("8/10 the peer: DuckDB loads the stream and computes every movement's weekly figures");
    let export = work.path().join("events.ndjson");
    // Everything the projector folded, the freshness stage's events too, so
    // that both sides count the same events.
    let exported = stream.info().await?.state.last_sequence;
    let export_seconds = peer::export(&stream, exported, &export).await?;
    let rebuild_seconds = report["projector_catch_up"]["seconds"].as_f64().unwrap_or(0.0);
    report["peer"] = peer::run(&http, &query_url, TOKEN, &export, rebuild_seconds).await?;
    report["peer"]["export_seconds"] = json!(export_seconds);
    report["peer"]["events"] = json!(exported);

    eprintln!("9/10 sizes on disk");
    let state = stream.info().await?.state.clone();
    let _ = projector.terminate(Duration::from_secs(60));
    let per_million = |bytes: u64, events: u64| bytes as f64 * 1e6 / events.max(1) as f64;
    report["sizes"] = json!({
        "stream_events": state.messages,
        "stream_bytes_per_million_events": per_million(state.bytes, state.messages),
        "store_bytes_per_million_events": per_million(folder_bytes(&data), state.messages),
    });

    eprintln!("10/10 durability: JetStream publishes with the default disk sync and with sync_interval: always");
    report["durability"] = durability(work.path(), http_part, Duration::from_secs(arguments.seconds)).await?;

    if let Some(folder) = arguments.out.parent() {
        std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    }
    std::fs::write(&arguments.out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", arguments.out.display()))?;
    print_table(&report);
    eprintln!("report written to {}", arguments.out.display());
    Ok(())
}

fn machine(nats: &async_nats::Client) -> Value {
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| line.strip_prefix("MemTotal:")?.trim().split(' ').next()?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    json!({
        "cores": std::thread::available_parallelism().map(usize::from).unwrap_or(1),
        "memory_gib": memory_kib as f64 / 1024.0 / 1024.0,
        "nats_server_version": nats.server_info().version,
        "momentum_version": env!("CARGO_PKG_VERSION"),
    })
}

struct Secrets {
    auth_file: PathBuf,
    key_file: PathBuf,
}

fn write_secrets(folder: &Path) -> anyhow::Result<Secrets> {
    let auth_file = folder.join("auth.toml");
    let digest = momentum_runtime::auth::token_digest_hex(TOKEN);
    std::fs::write(&auth_file, format!("[[token]]\nname = \"bench\"\nsha256 = \"{digest}\"\nrole = \"admin\"\n"))?;
    let key_file = folder.join("pseudonym-keys.toml");
    let secret: String = (0..32).map(|_| format!("{:02x}", rand_byte())).collect();
    std::fs::write(&key_file, format!("current = 1\n[[key]]\nversion = 1\nsecret = \"{secret}\"\n"))?;
    Ok(Secrets { auth_file, key_file })
}

/// A byte that differs from run to run; the bench's key protects nothing.
fn rand_byte() -> u8 {
    uuid::Uuid::new_v4().as_bytes()[0]
}

/// A service binary of this build, from the folder this binary is in.
fn spawn_service(
    name: &str,
    nats_url: &str,
    secrets: &Secrets,
    port: u16,
    extra: &[(&str, &str)],
) -> anyhow::Result<ChildProcess> {
    let binary = std::env::current_exe()?.parent().context("this binary has a folder")?.join(name);
    if !binary.exists() {
        bail!("{} is missing: build the workspace's binaries (cargo build --release --bins)", binary.display());
    }
    let mut command = Command::new(binary);
    command
        .env("MOMENTUM_NATS_URL", nats_url)
        .env("MOMENTUM_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("MOMENTUM_AUTH_FILE", &secrets.auth_file)
        .env("MOMENTUM_PSEUDONYM_KEY_FILE", &secrets.key_file)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    for (key, value) in extra {
        command.env(key, value);
    }
    Ok(ChildProcess::spawn(&mut command))
}

/// Copies of the demo's movements that share one set of movement names.
/// The demo's participant refs are numbered per movement, so copies under
/// the same names mostly meet the same people again: eight copies a name set
/// gives about 100 000 distinct participants over a million events, the
/// workload the targets are stated for (the run prints the count).
const COPIES_PER_MOVEMENT_NAMES: u64 = 8;

/// Events with the demo's mix, without end: copies of its three years of
/// six movements, each with its own seed (so its own event ids), named as
/// `mix` says: by default every [`COPIES_PER_MOVEMENT_NAMES`] copies under
/// new movement names.
fn generate_lazily(mix: Mix, now: chrono::DateTime<Utc>) -> impl Iterator<Item = Value> {
    (0u64..).flat_map(move |copy| {
        let names = match mix {
            Mix::Demo => copy / COPIES_PER_MOVEMENT_NAMES,
            Mix::Large => 0,
            Mix::National => copy,
        };
        crate::demo::generate(2026 + copy, 3, now).into_iter().map(move |mut event| {
            if names > 0 {
                let renamed = format!("{}-{names}", event["subject"].as_str().unwrap_or("movement"));
                event["subject"] = json!(renamed);
            }
            event
        })
    })
}

/// The first `count` events of [`generate_lazily`].
#[cfg(test)]
fn generate(count: usize, mix: Mix, now: chrono::DateTime<Utc>) -> Vec<Value> {
    generate_lazily(mix, now).take(count).collect()
}

/// What the bench learns of the events it puts in the stream.
#[derive(Default)]
struct Census {
    events: u64,
    /// The (movement, ref) pairs ingest gives a pseudonym each, sign-ups
    /// and organisers included.
    participants: std::collections::HashSet<(String, String)>,
    events_by_movement: std::collections::HashMap<String, u64>,
}

impl Census {
    fn count(&mut self, events: &[Value]) {
        for event in events {
            self.events += 1;
            let Some(movement) = event["subject"].as_str() else { continue };
            *self.events_by_movement.entry(movement.to_owned()).or_default() += 1;
            let Some(kind) = event["type"].as_str().and_then(momentum_domain::EventType::parse) else { continue };
            let mut data = event["data"].clone();
            momentum_domain::event::rewrite_participant_refs(kind, &mut data, |participant| {
                self.participants.insert((movement.to_owned(), participant.clone()));
            });
        }
    }

    /// The movement with the most events.
    fn largest_movement(&self) -> String {
        self.events_by_movement
            .iter()
            .max_by_key(|(movement, count)| (**count, *movement))
            .map(|(movement, _)| movement.clone())
            .unwrap_or_default()
    }
}

/// One trend read of three years of weekly figures of `movement`, every
/// metric, before anything of it is cached: its time through HTTP and
/// NATS, and the time the projector spent computing it (its
/// `momentum_projector_read_duration_seconds` before and after: the
/// movement's version, for the answer's `ETag`, then the totals).
async fn first_trend_read_ms(
    http: &reqwest::Client,
    query_url: &str,
    projector_port: u16,
    movement: &str,
) -> anyhow::Result<Value> {
    let metrics_url = format!("http://127.0.0.1:{projector_port}/metrics");
    let reads = || async {
        let text = http.get(&metrics_url).send().await?.text().await?;
        let sum = metric_value(&text, "momentum_projector_read_duration_seconds_sum").unwrap_or(0.0);
        let count = metric_value(&text, "momentum_projector_read_duration_seconds_count").unwrap_or(0.0);
        anyhow::Ok((sum, count))
    };
    let today = Utc::now().date_naive();
    let from = today - chrono::Days::new(3 * 365);
    let url = format!("{query_url}/v1/movements/{movement}/trends?interval=week&from={from}&to={today}");
    let before = reads().await?;
    let started = Instant::now();
    let response = http.get(&url).bearer_auth(TOKEN).send().await?;
    let status = response.status();
    let _ = response.bytes().await?;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    if status != StatusCode::OK {
        bail!("the first trend read of {movement} answered {status}");
    }
    let after = reads().await?;
    if after.1 != before.1 + 2.0 {
        bail!("the projector counted {} reads for one trend and its version", after.1 - before.1);
    }
    Ok(json!({ "movement": movement, "ms": elapsed_ms, "projector_ms": (after.0 - before.0) * 1000.0 }))
}

/// Distinct participants of `events` ([`Census::participants`]).
#[cfg(test)]
fn distinct_participants(events: &[Value]) -> usize {
    let mut census = Census::default();
    census.count(events);
    census.participants.len()
}

/// Stage 1: the same payloads published with message ids on a stream of the
/// same settings, acknowledgements pipelined.
async fn raw_publish(nats: &async_nats::Client, events: &[Value]) -> anyhow::Result<f64> {
    let jetstream = jetstream::new(nats.clone());
    let mut config = momentum_bus::StreamSettings::default().config();
    config.name = "BENCH_RAW".to_owned();
    config.subjects = vec!["bench.raw.>".to_owned()];
    jetstream.create_stream(config).await?;
    let payloads: Vec<(String, String, Vec<u8>)> = events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            (format!("bench.raw.{}", index % 64), format!("raw-{index}"), event.to_string().into_bytes())
        })
        .collect();
    let started = Instant::now();
    publish_pipelined(&jetstream, payloads).await?;
    let rate = events.len() as f64 / started.elapsed().as_secs_f64();
    jetstream.delete_stream("BENCH_RAW").await?;
    Ok(rate)
}

/// Raw publishes of events on their own subjects and message ids, as ingest
/// would publish them (without pseudonymising: the fold's cost is the same).
async fn raw_publish_events(jetstream: &jetstream::Context, events: &[Value]) -> anyhow::Result<()> {
    let payloads = events
        .iter()
        .map(|event| {
            let text = |field: &str| event[field].as_str().unwrap_or_default().to_owned();
            let subject = momentum_bus::event_subject(&text("subject"), &text("type"));
            let message_id = momentum_bus::message_id(&text("subject"), &text("source"), &text("id"));
            (subject, message_id, event.to_string().into_bytes())
        })
        .collect();
    publish_pipelined(jetstream, payloads).await
}

async fn publish_pipelined(
    jetstream: &jetstream::Context,
    payloads: Vec<(String, String, Vec<u8>)>,
) -> anyhow::Result<()> {
    let progress = progress_bar(payloads.len() as u64);
    let mut in_flight = FuturesUnordered::new();
    for (subject, message_id, payload) in payloads {
        if in_flight.len() >= RAW_ACKS_IN_FLIGHT_MAX
            && let Some(acknowledged) = in_flight.next().await
        {
            let _: jetstream::publish::PublishAck = acknowledged?;
            progress.inc(1);
        }
        let publish = jetstream::message::PublishMessage::build().message_id(message_id).payload(payload.into());
        in_flight.push(jetstream.send_publish(subject, publish).await?.into_future());
    }
    while let Some(acknowledged) = in_flight.next().await {
        acknowledged?;
        progress.inc(1);
    }
    progress.finish_and_clear();
    Ok(())
}

/// Stage 10: what `sync_interval: always` costs. Two servers, started from
/// the same configuration but for that line, take the same publishes: one
/// event at a time, each waiting for its acknowledgement (as one ingest
/// request of a single event does), for `duration`; then every event with
/// acknowledgements pipelined (as batches are).
async fn durability(work: &Path, events: &[Value], duration: Duration) -> anyhow::Result<Value> {
    let mut report = json!({});
    for (name, sync) in [("default_sync", ""), ("sync_always", "  sync_interval: always\n")] {
        let config = work.join(format!("nats-{name}.conf"));
        std::fs::write(&config, format!("max_payload: 1MB\njetstream {{\n{sync}}}\n"))?;
        let server = NatsServer::start_with_config(&config, &[]);
        let nats = async_nats::connect(server.url()).await.context("connecting to a durability nats-server")?;
        let jetstream = jetstream::new(nats);
        let mut stream = momentum_bus::StreamSettings::default().config();
        (stream.name, stream.subjects) = ("BENCH_SYNC".to_owned(), vec!["bench.sync.>".to_owned()]);
        jetstream.create_stream(stream).await?;
        let payload = |index: usize| {
            let event = &events[index % events.len()];
            (format!("bench.sync.{}", index % 64), format!("{name}-{index}"), event.to_string().into_bytes())
        };
        let mut latencies = Vec::new();
        let started = Instant::now();
        while started.elapsed() < duration {
            let (subject, message_id, body) = payload(latencies.len());
            let publish = jetstream::message::PublishMessage::build().message_id(message_id).payload(body.into());
            let sent = Instant::now();
            jetstream.send_publish(subject, publish).await?.await?;
            latencies.push(sent.elapsed());
        }
        let single = rate_and_latencies(latencies, started.elapsed());
        let offset = single["requests"].as_u64().unwrap_or(0) as usize;
        let batch: Vec<_> = (offset..offset + events.len()).map(payload).collect();
        let started = Instant::now();
        publish_pipelined(&jetstream, batch).await?;
        let pipelined = events.len() as f64 / started.elapsed().as_secs_f64();
        report[name] = json!({ "single": single, "pipelined_events_per_s": pipelined });
    }
    let ratio = |path: &[&str]| {
        let figure = |name: &str| path.iter().fold(&report[name], |value, key| &value[*key]).as_f64().unwrap_or(0.0);
        figure("sync_always") / figure("default_sync").max(f64::MIN_POSITIVE)
    };
    let (single, pipelined) = (ratio(&["single", "requests_per_s"]), ratio(&["pipelined_events_per_s"]));
    report["single_rate_ratio"] = json!(single);
    report["pipelined_rate_ratio"] = json!(pipelined);
    Ok(report)
}

/// Stage 2: all of `events` posted in batches by a few concurrent clients.
async fn ingest_batches(http: &reqwest::Client, ingest_url: &str, events: &[Value]) -> anyhow::Result<f64> {
    let bodies: VecDeque<String> =
        events.chunks(BATCH_EVENTS).map(|batch| Value::from(batch.to_vec()).to_string()).collect();
    let queue = Arc::new(Mutex::new(bodies));
    let progress = progress_bar(events.len() as u64);
    let started = Instant::now();
    let clients = (0..BATCH_CLIENTS).map(|_| {
        let (queue, http, url, progress) =
            (queue.clone(), http.clone(), format!("{ingest_url}/v1/events"), progress.clone());
        tokio::spawn(async move {
            loop {
                let Some(body) = queue.lock().expect("no poisoning").pop_front() else { return anyhow::Ok(()) };
                let response = http
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/cloudevents-batch+json")
                    .body(body)
                    .send()
                    .await?;
                let status = response.status();
                let answer: Value = response.json().await?;
                if !status.is_success() || answer["rejected"].as_u64() != Some(0) {
                    bail!("ingest answered {status}: {answer}");
                }
                progress.inc(answer["accepted"].as_u64().unwrap_or(0) + answer["duplicates"].as_u64().unwrap_or(0));
            }
        })
    });
    for client in clients.collect::<Vec<_>>() {
        client.await??;
    }
    progress.finish_and_clear();
    Ok(events.len() as f64 / started.elapsed().as_secs_f64())
}

/// Stage 3: single events from many connections for `duration`. Each
/// request posts a new event (a copy of one of `events` with its own id).
async fn ingest_single(ingest_address: &str, events: &[Value], duration: Duration) -> anyhow::Result<Value> {
    // Each template is written once, in two halves around its id, so that
    // the load spends its CPU sending events rather than writing them.
    let templates: Arc<Vec<(String, String)>> =
        Arc::new(events.iter().take(10_000).map(split_around_id).collect::<anyhow::Result<_>>()?);
    load::closed_loop(
        ingest_address,
        TOKEN,
        SINGLE_CONNECTIONS,
        duration,
        StatusCode::ACCEPTED,
        move |connection, index| {
            let (before, after) = &templates[(connection * 7919 + index) % templates.len()];
            load::LoadRequest {
                method: "POST",
                path_and_query: "/v1/events".to_owned(),
                content_type: Some("application/cloudevents+json"),
                body: format!("{before}\"single-{connection}-{index}\"{after}").into_bytes(),
            }
        },
    )
    .await
}

/// An event's JSON, cut where its id's value goes: the text before and
/// after it.
fn split_around_id(event: &Value) -> anyhow::Result<(String, String)> {
    const MARK: &str = "\"momentum-bench-id\"";
    let mut event = event.clone();
    event
        .as_object_mut()
        .context("a generated event is a JSON object")?
        .insert("id".to_owned(), json!("momentum-bench-id"));
    let text = event.to_string();
    let (before, after) = text.split_once(MARK).context("a generated event has no id to replace")?;
    Ok((before.to_owned(), after.to_owned()))
}

/// Requests per second and latency percentiles, in milliseconds.
fn rate_and_latencies(mut latencies: Vec<Duration>, elapsed: Duration) -> Value {
    latencies.sort();
    json!({
        "requests": latencies.len(),
        "requests_per_s": latencies.len() as f64 / elapsed.as_secs_f64(),
        "p50_ms": percentile_ms(&latencies, 0.50),
        "p99_ms": percentile_ms(&latencies, 0.99),
    })
}

fn percentile_ms(sorted: &[Duration], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 * quantile).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

/// Stage 4: the event stream read from sequence 1 with a plain ordered consumer.
async fn raw_consume(stream: &jetstream::stream::Stream, last_sequence: u64) -> anyhow::Result<f64> {
    use jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
    let started = Instant::now();
    let consumer =
        stream.create_consumer(OrderedConfig { deliver_policy: DeliverPolicy::All, ..Default::default() }).await?;
    let mut messages = consumer.messages().await?;
    let progress = progress_bar(last_sequence);
    let mut read = 0u64;
    while read < last_sequence {
        let message = messages.next().await.context("the stream ended early")??;
        read = message.info().map_err(|error| anyhow::anyhow!("{error}"))?.stream_sequence;
        if read.is_multiple_of(1000) {
            progress.set_position(read);
        }
    }
    progress.finish_and_clear();
    Ok(last_sequence as f64 / started.elapsed().as_secs_f64())
}

/// How many times stage 5 reads the movement raw and runs each export.
const EXPORT_RUNS: usize = 3;

/// Stage 5, beside the catch-up: `momentum export` writing a movement's
/// events from the stream, against a raw ordered read of the same events
/// (the movement's subjects, as the command reads them).
async fn export_command(nats_url: &str, movement: &str, work: &Path) -> anyhow::Result<Value> {
    // Each read is taken EXPORT_RUNS times and the fastest kept, on both
    // sides: one read of a movement varies with what else the two cores do.
    let (mut events, mut raw_seconds) = (0u64, f64::INFINITY);
    for _ in 0..EXPORT_RUNS {
        let started = Instant::now();
        let mut reader =
            momentum_bus::open_movement_log(nats_url, &momentum_bus::NatsConnection::default(), "bench", movement)
                .await?;
        events = 0;
        while reader.next().await?.is_some() {
            events += 1;
        }
        raw_seconds = raw_seconds.min(started.elapsed().as_secs_f64());
    }
    let binary = std::env::current_exe()?.parent().context("this binary has a folder")?.join("momentum");
    // The command's run time and file, in each format it writes.
    let run = |format: &str| -> anyhow::Result<(f64, PathBuf)> {
        let out = work.join(format!("export.{format}"));
        let mut fastest = f64::INFINITY;
        for _ in 0..EXPORT_RUNS {
            let started = Instant::now();
            let output = Command::new(&binary)
                .args(["export", "--movement", movement, "--format", format, "--out"])
                .arg(&out)
                .env("MOMENTUM_NATS_URL", nats_url)
                .stderr(Stdio::null())
                .output()
                .with_context(|| format!("running {}", binary.display()))?;
            if !output.status.success() {
                bail!("momentum export --format {format} failed: {}", String::from_utf8_lossy(&output.stdout));
            }
            fastest = fastest.min(started.elapsed().as_secs_f64());
        }
        Ok((fastest, out))
    };
    let (seconds, ndjson) = run("ndjson")?;
    let (parquet_seconds, parquet) = run("parquet")?;
    let written = std::fs::read_to_string(&ndjson)?.lines().count();
    let (raw, export, parquet_export) =
        (events as f64 / raw_seconds, events as f64 / seconds, events as f64 / parquet_seconds);
    Ok(json!({
        "movement": movement,
        "events": events,
        "events_written": written,
        "seconds": seconds,
        "events_per_s": export,
        "raw_movement_consume_events_per_s": raw,
        "ratio_to_raw_consume": export / raw,
        "parquet_seconds": parquet_seconds,
        "parquet_events_per_s": parquet_export,
        "parquet_ratio_to_raw_consume": parquet_export / raw,
        "ndjson_bytes": std::fs::metadata(&ndjson)?.len(),
        "parquet_bytes": std::fs::metadata(&parquet)?.len(),
    }))
}

/// Stage 5: a new projector's catch-up, followed through its `/metrics`
/// watermark; its resident memory is sampled from /proc as it goes.
async fn catch_up(http: &reqwest::Client, port: u16, pid: u32, last_sequence: u64) -> anyhow::Result<Value> {
    let started = Instant::now();
    let progress = progress_bar(last_sequence);
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let mut rss_peak_kib = 0;
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    loop {
        if started.elapsed() > CATCH_UP_TIMEOUT {
            bail!("the projector did not catch up within {CATCH_UP_TIMEOUT:?}");
        }
        if !is_running(pid) {
            bail!("the projector exited during its catch-up (its errors, if any, are above)");
        }
        rss_peak_kib = rss_peak_kib.max(proc_status_kib(pid, "VmHWM:").unwrap_or(0));
        let watermark = match http.get(&metrics_url).send().await {
            Ok(response) => response.text().await.ok().and_then(|text| metric(&text, "momentum_projector_watermark")),
            Err(_) => None,
        };
        if let Some(watermark) = watermark {
            samples.push((started.elapsed().as_secs_f64(), watermark));
            progress.set_position(watermark);
            if watermark >= last_sequence {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    progress.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    // The fold is done; the projector then registers its query endpoints,
    // which the next stages read through. Not part of the rate.
    let ready_url = format!("http://127.0.0.1:{port}/readyz");
    let ready_by = Instant::now() + Duration::from_secs(60);
    while !http.get(&ready_url).send().await.is_ok_and(|response| response.status().is_success()) {
        if Instant::now() > ready_by {
            bail!("the projector caught up but did not become ready within a minute");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Then the projector writes the checkpoints its catch-up left to write;
    // the stages after measure it steady, and this is reported apart.
    let settling = Instant::now();
    loop {
        let text = match http.get(&metrics_url).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if metric(&text, "momentum_projector_checkpoint_watermark").is_some_and(|written| written >= last_sequence) {
            break;
        }
        if settling.elapsed() > CATCH_UP_TIMEOUT {
            bail!("the projector did not write its last checkpoint within {CATCH_UP_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let checkpointed_after_s = settling.elapsed().as_secs_f64();
    // The rate over the first and the last 10% of the stream shows whether
    // an event costs more once many are stored.
    let rate_between = |from: u64, to: u64| {
        let at = |sequence: u64| samples.iter().find(|(_, watermark)| *watermark >= sequence).map(|(time, _)| *time);
        match (at(from), at(to)) {
            (Some(start), Some(end)) if end > start => Some((to - from) as f64 / (end - start)),
            _ => None,
        }
    };
    let tenth = last_sequence / 10;
    Ok(json!({
        "events": last_sequence,
        "seconds": elapsed,
        "events_per_s": last_sequence as f64 / elapsed,
        "first_tenth_events_per_s": rate_between(tenth / 10, tenth),
        "last_tenth_events_per_s": rate_between(last_sequence - tenth, last_sequence),
        "rss_peak_mib": rss_peak_kib as f64 / 1024.0,
        "checkpointed_after_s": checkpointed_after_s,
    }))
}

/// The CPU time each process of the run spent, so that every stage's report
/// shows where its CPU went: on 2 cores the processes compete for it. Read
/// from `/proc`, so only on Linux; elsewhere the figures are absent.
#[derive(Default)]
struct CpuAccount {
    processes: Vec<(&'static str, u32)>,
}

impl CpuAccount {
    fn watch(&mut self, name: &'static str, pid: Option<u32>) {
        if let Some(pid) = pid {
            self.processes.push((name, pid));
        }
    }

    fn now(&self) -> Vec<(&'static str, Option<f64>)> {
        self.processes.iter().map(|(name, pid)| (*name, cpu_seconds(*pid))).collect()
    }

    /// Each process's CPU seconds since `mark` (a [`CpuAccount::now`]).
    fn since(&self, mark: &[(&'static str, Option<f64>)]) -> Value {
        let now = self.now();
        let mut spent = serde_json::Map::new();
        for (name, seconds) in now {
            let before = mark.iter().find(|(earlier, _)| *earlier == name).and_then(|(_, seconds)| *seconds);
            if let Some(seconds) = seconds {
                spent.insert(name.to_owned(), json!(seconds - before.unwrap_or(0.0)));
            }
        }
        Value::Object(spent)
    }
}

/// User and system CPU time of a process, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    // Linux reports these in USER_HZ, which is 100 on every architecture
    // it runs on (it is part of the kernel's ABI, unlike HZ).
    const TICKS_PER_S: f64 = 100.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count fields after it.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / TICKS_PER_S)
}

/// Whether a process is alive: it has a /proc entry and is not a zombie
/// (a child that exited is one until it is waited for).
fn is_running(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|line| line.strip_prefix("State:")).is_some_and(|state| !state.trim().starts_with('Z'))
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| line.strip_prefix(field)?.trim().split(' ').next()?.parse().ok())
}

/// The value of an unlabelled metric in an OpenMetrics text.
fn metric(text: &str, name: &str) -> Option<u64> {
    metric_value(text, name).map(|value| value as u64)
}

fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
}

/// Stage 6: events posted one at a time at a steady rate; each is read back
/// through the query API with `min_seq` as soon as ingest has answered.
/// Seconds of freshness posts before the measured ones. The stage follows
/// the catch-up at once, when the projector is still writing its last
/// large checkpoints; the target is stated for a steady rate. Reported
/// apart, not dropped.
const FRESHNESS_WARM_UP_S: u64 = 2;

async fn freshness(
    http: &reqwest::Client,
    ingest_url: &str,
    query_url: &str,
    movement: &str,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<Value> {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut reads = Vec::new();
    let (from, to) = ("2026-01-05", "2026-01-11");
    let warm_up = rate * FRESHNESS_WARM_UP_S;
    for index in 0..warm_up + rate * seconds {
        ticker.tick().await;
        let (http, ingest_url, query_url, movement) =
            (http.clone(), ingest_url.to_owned(), query_url.to_owned(), movement.to_owned());
        reads.push(tokio::spawn(async move {
            let event = json!({
                "specversion": "1.0", "id": format!("fresh-{index}"), "source": "urn:momentum:bench",
                "type": "volunteer.hours_logged", "subject": movement, "time": "2026-01-06T10:00:00Z",
                "data": { "participant": format!("fresh-{}", index % 500), "hours": 1.0 },
            });
            let response = http
                .post(format!("{ingest_url}/v1/events"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/cloudevents+json")
                .body(event.to_string())
                .send()
                .await?;
            let answer: Value = response.json().await?;
            let acknowledged = Instant::now();
            let seq = answer["seq"].as_u64().context("ingest answered a sequence")?;
            let read = http
                .get(format!(
                    "{query_url}/v1/movements/{movement}/trends?interval=week&from={from}&to={to}&metrics=volunteer_hours&min_seq={seq}"
                ))
                .bearer_auth(TOKEN)
                .send()
                .await?;
            if !read.status().is_success() {
                let status = read.status();
                bail!("a min_seq read answered {status}: {}", read.text().await.unwrap_or_default());
            }
            anyhow::Ok(acknowledged.elapsed())
        }));
    }
    let mut latencies = Vec::new();
    for read in reads {
        latencies.push(read.await??);
    }
    let mut warm_up_latencies: Vec<Duration> = latencies.drain(..warm_up as usize).collect();
    warm_up_latencies.sort();
    latencies.sort();
    Ok(json!({
        "events_per_s": rate,
        "warm_up_seconds": FRESHNESS_WARM_UP_S,
        "warm_up_reads": warm_up_latencies.len(),
        "warm_up_p99_ms": percentile_ms(&warm_up_latencies, 0.99),
        "reads": latencies.len(),
        "p50_ms": percentile_ms(&latencies, 0.50),
        "p99_ms": percentile_ms(&latencies, 0.99),
    }))
}

/// Stage 7: three years of weekly figures, every metric, read again and
/// again from many connections, with `extra` parameters.
async fn query_trends(query_address: &str, movement: &str, extra: &str, duration: Duration) -> anyhow::Result<Value> {
    let today = Utc::now().date_naive();
    let from = today - chrono::Days::new(3 * 365);
    let path = format!("/v1/movements/{movement}/trends?interval=week&from={from}&to={today}{extra}");
    load::closed_loop(query_address, TOKEN, QUERY_CONNECTIONS, duration, StatusCode::OK, move |_, _| {
        load::LoadRequest { method: "GET", path_and_query: path.clone(), content_type: None, body: Vec::new() }
    })
    .await
}

fn folder_bytes(folder: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(folder) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(metadata) if metadata.is_dir() => folder_bytes(&entry.path()),
            Ok(metadata) => metadata.len(),
            Err(_) => 0,
        })
        .sum()
}

fn progress_bar(length: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(length);
    if let Ok(style) = indicatif::ProgressStyle::with_template("  {bar:40} {pos}/{len} {per_sec} eta {eta}") {
        bar.set_style(style);
    }
    bar
}

fn print_table(report: &Value) {
    let number = |value: &Value| value.as_f64().map_or_else(|| "-".to_owned(), |value| format!("{value:.0}"));
    let decimal = |value: &Value| value.as_f64().map_or_else(|| "-".to_owned(), |value| format!("{value:.2}"));
    let machine = &report["machine"];
    println!(
        "machine: {} cores, {:.1} GiB; nats-server {}; momentum {}{}",
        machine["cores"],
        machine["memory_gib"].as_f64().unwrap_or(0.0),
        machine["nats_server_version"].as_str().unwrap_or("?"),
        machine["momentum_version"].as_str().unwrap_or("?"),
        if report["smoke"] == true { " — SMOKE RUN, figures meaningless" } else { "" }
    );
    println!(
        "workload: {} generated events ({} mix), {} distinct participants, {} movements",
        report["events"],
        report["mix"].as_str().unwrap_or("?"),
        report["distinct_participants"],
        report["movements"]
    );
    println!("| stage | figure |");
    println!("|---|---|");
    println!("| 1. raw JetStream publish | {} events/s |", number(&report["raw_publish_events_per_s"]));
    println!(
        "| 2. HTTP ingest, batches of {BATCH_EVENTS} | {} events/s ({:.0}% of 1) |",
        number(&report["ingest_batches_events_per_s"]),
        report["ingest_batches_ratio_to_raw"].as_f64().unwrap_or(0.0) * 100.0
    );
    let single = &report["ingest_single"];
    println!(
        "| 3. HTTP ingest, single events, {SINGLE_CONNECTIONS} connections | {} requests/s, p50 {} ms, p99 {} ms |",
        number(&single["requests_per_s"]),
        decimal(&single["p50_ms"]),
        decimal(&single["p99_ms"])
    );
    println!("| 4. raw ordered-consumer read | {} events/s |", number(&report["raw_consume_events_per_s"]));
    let catch_up = &report["projector_catch_up"];
    println!(
        "| 5. projector catch-up over {} events | {} events/s ({:.0}% of 4); first tenth {}, last tenth {} events/s; peak RSS {} MiB; its last checkpoint in sled {} s later |",
        catch_up["events"],
        number(&catch_up["events_per_s"]),
        catch_up["ratio_to_raw_consume"].as_f64().unwrap_or(0.0) * 100.0,
        number(&catch_up["first_tenth_events_per_s"]),
        number(&catch_up["last_tenth_events_per_s"]),
        number(&catch_up["rss_peak_mib"]),
        decimal(&catch_up["checkpointed_after_s"])
    );
    let export = &report["export_command"];
    println!(
        "| 5. `momentum export` of {} ({} events, fastest of {EXPORT_RUNS}) | NDJSON {} events/s ({:.0}% of a raw read of its events, {} events/s); Parquet {} events/s ({:.0}%), {} bytes against NDJSON's {} |",
        export["movement"].as_str().unwrap_or("?"),
        export["events"],
        number(&export["events_per_s"]),
        export["ratio_to_raw_consume"].as_f64().unwrap_or(0.0) * 100.0,
        number(&export["raw_movement_consume_events_per_s"]),
        number(&export["parquet_events_per_s"]),
        export["parquet_ratio_to_raw_consume"].as_f64().unwrap_or(0.0) * 100.0,
        export["parquet_bytes"],
        export["ndjson_bytes"]
    );
    let freshness = &report["freshness"];
    println!(
        "| 6. freshness at {} events/s | p50 {} ms, p99 {} ms (in the {} s of warm-up before: p99 {} ms) |",
        freshness["events_per_s"],
        decimal(&freshness["p50_ms"]),
        decimal(&freshness["p99_ms"]),
        freshness["warm_up_seconds"],
        decimal(&freshness["warm_up_p99_ms"])
    );
    let query = &report["query_trends"];
    println!(
        "| 7. trend reads, 3 years weekly, {QUERY_CONNECTIONS} connections | {} requests/s, p50 {} ms, p99 {} ms; the first read of {}, before anything was cached, {} ms ({} ms computing it in the projector) |",
        number(&query["requests_per_s"]),
        decimal(&query["p50_ms"]),
        decimal(&query["p99_ms"]),
        report["first_trend_read_ms"]["movement"].as_str().unwrap_or("?"),
        decimal(&report["first_trend_read_ms"]["ms"]),
        decimal(&report["first_trend_read_ms"]["projector_ms"])
    );
    for (name, stage) in [("split by area", "query_split_trends"), ("as of halfway", "query_as_of_trends")] {
        let reads = &report[stage];
        println!(
            "| 7. the same, {name} | {} requests/s ({:.0}% of plain reads), p50 {} ms, p99 {} ms |",
            number(&reads["requests_per_s"]),
            reads["ratio_to_trend_reads"].as_f64().unwrap_or(0.0) * 100.0,
            decimal(&reads["p50_ms"]),
            decimal(&reads["p99_ms"])
        );
    }
    let peer = &report["peer"];
    println!(
        "| 8. peer: DuckDB loads {} events and computes every movement's weekly figures | {} s load + {} s compute; rebuild (5) takes {:.1}× that; {} figures of {} movements equal |",
        peer["events"],
        decimal(&peer["load_seconds"]),
        decimal(&peer["compute_seconds"]),
        peer["rebuild_ratio_to_peer"].as_f64().unwrap_or(0.0),
        peer["figures_compared"],
        peer["movements"]
    );
    let sizes = &report["sizes"];
    println!(
        "| 9. size per million events | stream {:.0} MiB, store {:.0} MiB |",
        sizes["stream_bytes_per_million_events"].as_f64().unwrap_or(0.0) / 1048576.0,
        sizes["store_bytes_per_million_events"].as_f64().unwrap_or(0.0) / 1048576.0
    );
    let durability = &report["durability"];
    for (name, label) in [("default_sync", "default sync"), ("sync_always", "sync_interval: always")] {
        let figures = &durability[name];
        println!(
            "| 10. JetStream publish, {label} | one at a time {} events/s (p50 {} ms, p99 {} ms); pipelined {} events/s |",
            number(&figures["single"]["requests_per_s"]),
            decimal(&figures["single"]["p50_ms"]),
            decimal(&figures["single"]["p99_ms"]),
            number(&figures["pipelined_events_per_s"])
        );
    }
    println!(
        "| 10. cost of sync_interval: always | one at a time {:.0}% of the default rate; pipelined {:.0}% |",
        durability["single_rate_ratio"].as_f64().unwrap_or(0.0) * 100.0,
        durability["pipelined_rate_ratio"].as_f64().unwrap_or(0.0) * 100.0
    );
    println!();
    println!("CPU seconds spent in each stage, by process:");
    let processes = ["nats-server", "ingest", "projector", "query", "bench"];
    println!("| stage | {} |", processes.join(" | "));
    println!("|---|{}", "---|".repeat(processes.len()));
    for (stage, key) in [
        ("1. raw publish", "raw_publish"),
        ("2. batches", "ingest_batches"),
        ("3. single events", "ingest_single"),
        ("4. raw consume", "raw_consume"),
        ("5. catch-up", "projector_catch_up"),
        ("7. trend reads", "query_trends"),
    ] {
        let spent = &report["cpu_seconds"][key];
        let cells: Vec<String> = processes.iter().map(|process| decimal(&spent[*process])).collect();
        println!("| {stage} | {} |", cells.join(" | "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Command {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(arguments: &[&str]) -> Result<BenchArgs, clap::Error> {
        use clap::Parser;
        Command::try_parse_from(std::iter::once("bench").chain(arguments.iter().copied())).map(|command| command.bench)
    }

    #[test]
    fn rates_counts_and_durations_of_zero_are_refused_before_anything_runs() {
        for zero in [["--freshness-rate", "0"], ["--events", "0"], ["--http-events", "0"], ["--seconds", "0"]] {
            let error = parse(&zero).err().unwrap_or_else(|| panic!("{zero:?} was accepted"));
            assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation, "{zero:?}");
        }
        assert!(parse(&["--freshness-rate", "1000000"]).is_err(), "a rate too high for a timer");
        let shorter = parse(&["--events", "100000"]).expect("the README's shorter run");
        assert_eq!((shorter.events, shorter.http_events), (100_000, None), "the HTTP share follows --events");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_child_that_exited_is_not_running_though_not_yet_waited_for() {
        assert!(is_running(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().expect("true runs");
        let deadline = Instant::now() + Duration::from_secs(10);
        while is_running(child.id()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!is_running(child.id()), "an exited child is a zombie until waited for");
        child.wait().expect("the child is reaped");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn cpu_spent_by_a_watched_process_is_counted_by_its_name() {
        let mut account = CpuAccount::default();
        account.watch("bench", Some(std::process::id()));
        account.watch("never started", None);
        let mark = account.now();
        let before = cpu_seconds(std::process::id()).expect("this process has a stat file");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut sum = 0u64;
        while cpu_seconds(std::process::id()).unwrap_or(before) < before + 0.05 && Instant::now() < deadline {
            for step in 0..100_000u64 {
                sum = sum.wrapping_add(std::hint::black_box(step));
            }
        }
        std::hint::black_box(sum);
        let spent = account.since(&mark);
        // The loop stops at 0.05 s past `before`; the difference of two
        // float readings may land a rounding error below that.
        assert!(spent["bench"].as_f64().expect("a figure") >= 0.05 - 1e-9, "{spent}");
        assert_eq!(spent.as_object().expect("an object").len(), 1, "{spent}");
    }

    #[test]
    fn participants_are_counted_per_movement_with_sign_ups_and_organisers() {
        let events = [
            json!({ "type": "meeting.held", "subject": "alpha", "data": {
                "attendees": ["ann", "bob"], "organisers": [{ "participant": "olga", "role": "citizen" }] } }),
            json!({ "type": "participant.joined", "subject": "alpha", "data": { "participant": "cat" } }),
            json!({ "type": "volunteer.hours_logged", "subject": "alpha", "data": { "participant": "ann", "hours": 2 } }),
            json!({ "type": "volunteer.hours_logged", "subject": "beta", "data": { "participant": "ann", "hours": 1 } }),
            json!({ "type": "event.retracted", "subject": "beta", "data": { "event_id": "x" } }),
        ];
        // ann, bob, olga and cat in alpha; ann again in beta is someone else.
        assert_eq!(distinct_participants(&events), 5);
    }

    #[test]
    fn eight_copies_share_movement_names_before_new_names_begin() {
        // Copies differ in length (each has its own seed), so find where the
        // eighth ends from the copies themselves.
        let now = Utc::now();
        let lengths: Vec<usize> = (0..9).map(|copy| crate::demo::generate(2026 + copy, 3, now).len()).collect();
        let eight: usize = lengths[..8].iter().sum();
        let events = generate(eight + lengths[8], Mix::Demo, now);
        let names = |range: std::ops::Range<usize>| -> std::collections::BTreeSet<String> {
            events[range].iter().map(|event| event["subject"].as_str().unwrap().to_owned()).collect()
        };
        let first = names(0..lengths[0]);
        assert_eq!(names(0..eight), first, "the first eight copies use the demo's names");
        let ninth = names(eight..events.len());
        assert!(ninth.is_disjoint(&first), "the ninth copy has names of its own: {ninth:?}");
        assert_eq!(ninth.len(), first.len());
        let large = generate(eight + lengths[8], Mix::Large, now);
        let large_names: std::collections::BTreeSet<&str> =
            large.iter().map(|event| event["subject"].as_str().unwrap()).collect();
        assert_eq!(large_names.len(), first.len(), "the large mix keeps the demo's six names: {large_names:?}");
    }
}
