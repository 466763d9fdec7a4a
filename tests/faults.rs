//! Fault tests with real processes: a projector killed with SIGKILL again
//! and again while events stream in, nats-server killed and restarted under
//! a steady stream of posts, a three-node JetStream cluster losing its
//! stream leader mid-ingestion, and the query service while NATS is away.
//!
//! Every test posts a steady stream the way a careful partner does (retrying
//! a batch, unchanged, on 503 or a connection error until it is
//! acknowledged), then checks exact outcomes: the stream read directly holds
//! every acknowledged event exactly once, and the numbers read through the
//! query API are those of the set of events sent, computed here by hand.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use momentum_tests::momentum_testkit::{ChildProcess, NatsCluster, workspace_binary};
use momentum_tests::*;
use serde_json::Value;
use tokio::task::JoinHandle;

/// The movements steady streams post to.
const MOVEMENTS: [&str; 2] = ["leeds-walking", "hull-food"];
/// The weeks (Mondays) steady-stream events fall in: 2 to 29 March 2026.
const WEEKS: [&str; 4] = ["2026-03-02", "2026-03-09", "2026-03-16", "2026-03-23"];
/// The longest a partner keeps retrying one batch before the test fails.
const ACKNOWLEDGE_WITHIN: Duration = Duration::from_secs(45);

/// The `index`th event of a steady stream: volunteer hours, or every fourth
/// a meeting, at 10:00 UTC on a day from 2 to 29 March (the same day in
/// London, summer time or not), by one of 37 participants.
fn steady_event(prefix: &str, index: usize) -> Value {
    let movement = MOVEMENTS[index % MOVEMENTS.len()];
    let day = 2 + (index * 5) % 28;
    let time = format!("2026-03-{day:02}T10:00:00Z");
    let id = format!("{prefix}-{index}");
    let participant = format!("p{}", index % 37);
    if index % 4 == 3 {
        let other = format!("p{}", (index + 1) % 37);
        meeting(&id, movement, &time, &[&participant, &other], &format!("o{}", index % 3))
    } else {
        hours(&id, movement, &time, &participant, 0.25 * (1 + index % 4) as f64)
    }
}

/// One week of one movement, as the sent events imply it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Week {
    volunteer_milli_hours: i64,
    meetings: u64,
    active_participants: BTreeSet<String>,
}

/// The numbers a set of steady-stream events implies: events per movement,
/// and per movement and week the hours, meetings and active participants.
#[derive(Debug, Default)]
struct Expected {
    events: BTreeMap<String, u64>,
    weeks: BTreeMap<(String, String), Week>,
}

fn expected_numbers<'a>(events: impl IntoIterator<Item = &'a Value>) -> Expected {
    let mut expected = Expected::default();
    for event in events {
        let movement = event["subject"].as_str().expect("a movement").to_owned();
        let day: usize = event["time"].as_str().expect("a time")[8..10].parse().expect("a day");
        let week = WEEKS[(day - 2) / 7].to_owned();
        *expected.events.entry(movement.clone()).or_default() += 1;
        let totals = expected.weeks.entry((movement, week)).or_default();
        let data = &event["data"];
        match event["type"].as_str().expect("a type") {
            "volunteer.hours_logged" => {
                totals.volunteer_milli_hours += (data["hours"].as_f64().expect("hours") * 1000.0).round() as i64;
                totals.active_participants.insert(data["participant"].as_str().expect("a participant").to_owned());
            }
            "meeting.held" => {
                totals.meetings += 1;
                for attendee in data["attendees"].as_array().expect("attendees") {
                    totals.active_participants.insert(attendee.as_str().expect("an attendee").to_owned());
                }
                for organiser in data["organisers"].as_array().expect("organisers") {
                    totals.active_participants.insert(organiser["participant"].as_str().expect("one").to_owned());
                }
            }
            other => panic!("steady streams hold no {other}"),
        }
    }
    expected
}

/// The HTTP APIs of a running stack, as a partner and an evaluator use them.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    ingest_url: String,
    query_url: String,
}

impl Api {
    fn new(ingest_url: &str, query_url: &str) -> Api {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("an HTTP client");
        Api { http, ingest_url: ingest_url.to_owned(), query_url: query_url.to_owned() }
    }

    fn of(stack: &TestStack) -> Api {
        Api::new(&stack.ingest_url, &stack.query_url)
    }

    /// A read: its status, content type and body.
    async fn get(&self, path_and_query: &str) -> (u16, String, Value) {
        let response = self.http.get(format!("{}{path_and_query}", self.query_url)).bearer_auth(ADMIN_TOKEN).send();
        let response = response.await.expect("query answers");
        let status = response.status().as_u16();
        let content_type = response.headers().get("content-type").map(|value| value.to_str().unwrap().to_owned());
        let text = response.text().await.expect("a body");
        (status, content_type.unwrap_or_default(), serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Checks every number the sent events imply against the query API,
    /// once the projection has applied stream sequence `min_seq`.
    async fn assert_numbers(&self, expected: &Expected, min_seq: u64) {
        let (status, _, body) = self.get(&format!("/v1/movements?min_seq={min_seq}")).await;
        assert_eq!(status, 200, "{body}");
        let counted: BTreeMap<String, u64> = (body["movements"].as_array().expect("movements").iter())
            .map(|movement| (movement["movement"].as_str().unwrap().to_owned(), movement["events"].as_u64().unwrap()))
            .collect();
        assert_eq!(counted, expected.events, "events per movement");
        for movement in expected.events.keys() {
            let (status, _, trend) = self
                .get(&format!(
                    "/v1/movements/{movement}/trends?interval=week&from={}&to=2026-03-29&min_seq={min_seq}\
                     &metrics=volunteer_hours,meetings,active_participants",
                    WEEKS[0]
                ))
                .await;
            assert_eq!(status, 200, "{trend}");
            for week in WEEKS {
                let row = row(&trend, week);
                let wanted = expected.weeks.get(&(movement.clone(), week.to_owned()));
                let wanted = wanted.map_or((0, 0, 0), |totals| {
                    (totals.volunteer_milli_hours, totals.meetings, totals.active_participants.len() as u64)
                });
                let milli_hours = (row["volunteer_hours"].as_f64().expect("hours") * 1000.0).round() as i64;
                let got =
                    (milli_hours, row["meetings"].as_u64().unwrap(), row["active_participants"].as_u64().unwrap());
                assert_eq!(got, wanted, "(milli-hours, meetings, active participants) of {movement} in {week}");
            }
        }
    }
}

/// An event the partner posted and ingest acknowledged (202, or 200 as a
/// duplicate), with the stream sequence the acknowledgement named.
#[derive(Debug)]
struct Acked {
    event: Value,
    seq: u64,
    /// Answered `duplicate`: an earlier attempt had stored it.
    duplicate: bool,
}

/// What a posting partner has seen so far.
#[derive(Debug, Default)]
struct Progress {
    acked: AtomicUsize,
    /// 503 answers, each a problem+json.
    unavailable: AtomicUsize,
    /// Requests that got no HTTP answer at all.
    connection_errors: AtomicUsize,
    /// The longest one batch took from its first attempt to its acknowledgement.
    longest_wait_ms: AtomicU64,
    /// The highest stream sequence an acknowledgement named.
    max_seq: AtomicU64,
}

/// A partner posting a steady stream of batches until told to stop.
struct Poster {
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
    task: JoinHandle<Vec<Acked>>,
}

impl Poster {
    /// Posts batches of `batch` steady-stream events, `pause` apart; a batch
    /// is retried unchanged until it is acknowledged, so every event it
    /// starts ends acknowledged.
    fn start(api: Api, prefix: &'static str, batch: usize, pause: Duration) -> Poster {
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Progress::default());
        let task = tokio::spawn({
            let (stop, progress) = (stop.clone(), progress.clone());
            async move {
                let mut acked = Vec::new();
                let mut next = 0;
                while !stop.load(Ordering::SeqCst) {
                    let events: Vec<Value> = (next..next + batch).map(|index| steady_event(prefix, index)).collect();
                    next += batch;
                    let body = post_until_acknowledged(&api, &events, &progress).await;
                    let results = body["results"].as_array().expect("results");
                    assert_eq!(results.len(), events.len(), "{body}");
                    for (event, result) in events.into_iter().zip(results) {
                        assert!(result["status"] == "accepted" || result["status"] == "duplicate", "{body}");
                        assert_eq!(result["id"], event["id"]);
                        let (seq, duplicate) =
                            (result["seq"].as_u64().expect("a sequence"), result["status"] == "duplicate");
                        progress.max_seq.fetch_max(seq, Ordering::SeqCst);
                        acked.push(Acked { event, seq, duplicate });
                    }
                    progress.acked.store(acked.len(), Ordering::SeqCst);
                    tokio::time::sleep(pause).await;
                }
                acked
            }
        });
        Poster { stop, progress, task }
    }

    fn acked(&self) -> usize {
        self.progress.acked.load(Ordering::SeqCst)
    }

    fn unavailable(&self) -> usize {
        self.progress.unavailable.load(Ordering::SeqCst)
    }

    fn max_seq(&self) -> u64 {
        self.progress.max_seq.load(Ordering::SeqCst)
    }

    fn longest_wait(&self) -> Duration {
        Duration::from_millis(self.progress.longest_wait_ms.load(Ordering::SeqCst))
    }

    /// Fails the test if the partner stopped on its own, that is, panicked.
    async fn check(&mut self) {
        if self.task.is_finished() {
            match (&mut self.task).await {
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                other => panic!("the posting partner stopped unasked: {other:?}"),
            }
        }
    }

    /// Waits, at most `timeout`, until `done` holds of the partner's progress.
    async fn wait_until(&mut self, what: &str, timeout: Duration, done: impl Fn(&Poster) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            self.check().await;
            assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting until {what}: {:?}", self.progress);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops after the batch in hand is acknowledged; every acknowledged event.
    async fn finish(self) -> Vec<Acked> {
        self.stop.store(true, Ordering::SeqCst);
        let acked = self.task.await.expect("the posting partner does not panic");
        let duplicates = acked.iter().filter(|acked| acked.duplicate).count();
        println!("the partner stopped: {:?}; {duplicates} answered as duplicates", self.progress);
        assert!(!acked.is_empty(), "the partner posted something");
        acked
    }
}

async fn post_until_acknowledged(api: &Api, events: &[Value], progress: &Progress) -> Value {
    let started = Instant::now();
    let body = Value::from(events.to_vec()).to_string();
    loop {
        let attempt = api
            .http
            .post(format!("{}/v1/events", api.ingest_url))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/cloudevents-batch+json")
            .body(body.clone())
            .send()
            .await;
        match attempt {
            Ok(response) => {
                let status = response.status().as_u16();
                let content_type = response.headers().get("content-type").map(|value| value.to_owned());
                let text = response.text().await.unwrap_or_default();
                match status {
                    200 => {
                        let waited = started.elapsed().as_millis() as u64;
                        progress.longest_wait_ms.fetch_max(waited, Ordering::SeqCst);
                        return serde_json::from_str(&text).expect("a batch answer is JSON");
                    }
                    503 => {
                        assert_eq!(
                            content_type.as_ref().map(|value| value.to_str().unwrap()),
                            Some("application/problem+json")
                        );
                        progress.unavailable.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => panic!("ingest answered {status}, not 200 or 503: {text}"),
                }
            }
            Err(_) => {
                progress.connection_errors.fetch_add(1, Ordering::SeqCst);
            }
        }
        assert!(started.elapsed() < ACKNOWLEDGE_WITHIN, "a batch was not acknowledged within {ACKNOWLEDGE_WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One message of the event stream, read directly.
#[derive(Debug)]
struct Stored {
    seq: u64,
    message_id: String,
    event_id: String,
}

/// Every message of the event stream, from sequence 1 to its last.
async fn read_stream(nats: &async_nats::Client) -> Vec<Stored> {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
    use futures::StreamExt;

    let jetstream = async_nats::jetstream::new(nats.clone());
    // A cluster that has just changed leaders may not serve a consumer at
    // once: opening one is retried for a while.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (last_sequence, mut messages) = loop {
        let open = async {
            let mut stream = jetstream.get_stream(momentum_bus::STREAM_NAME).await?;
            let last_sequence = stream.info().await?.state.last_sequence;
            let config = OrderedConfig { deliver_policy: DeliverPolicy::All, ..Default::default() };
            let messages = stream.create_consumer(config).await?.messages().await?;
            Ok::<_, async_nats::Error>((last_sequence, messages))
        };
        match open.await {
            Ok(opened) => break opened,
            Err(error) => assert!(Instant::now() < deadline, "cannot read the event stream: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut stored = Vec::new();
    if last_sequence == 0 {
        return stored;
    }
    while stored.last().is_none_or(|last: &Stored| last.seq < last_sequence) {
        let next = tokio::time::timeout(Duration::from_secs(10), messages.next()).await;
        let message = next.expect("the stream delivers in time").expect("the stream goes on").expect("a message");
        let seq = message.info().expect("info").stream_sequence;
        let message_id = message.headers.as_ref().and_then(|headers| headers.get("Nats-Msg-Id"));
        let message_id = message_id.expect("every event has a message id").as_str().to_owned();
        let event: Value = serde_json::from_slice(&message.payload).expect("stored events are JSON");
        let event_id = event["id"].as_str().expect("an id").to_owned();
        let source = event["source"].as_str().expect("a source");
        let movement = event["subject"].as_str().expect("a movement");
        assert_eq!(message_id, momentum_bus::message_id(movement, source, &event_id), "the message id is the event's");
        stored.push(Stored { seq, message_id, event_id });
    }
    stored
}

/// Every acknowledged event is in the stream exactly once, at the sequence
/// its acknowledgement named, and the stream holds nothing else.
fn assert_stored_exactly_once(acked: &[Acked], stored: &[Stored]) {
    let mut copies: HashMap<&str, Vec<u64>> = HashMap::new();
    for message in stored {
        copies.entry(message.message_id.as_str()).or_default().push(message.seq);
    }
    let repeated: Vec<(&str, &Vec<u64>)> =
        copies.iter().filter(|(_, seqs)| seqs.len() > 1).map(|(id, seqs)| (*id, seqs)).collect();
    assert!(repeated.is_empty(), "events stored more than once (message id, sequences): {repeated:?}");
    let mut acked_ids = BTreeSet::new();
    for Acked { event, seq, .. } in acked {
        let id = event["id"].as_str().unwrap();
        assert!(acked_ids.insert(id), "{id} was acknowledged twice by the partner's own count");
        let message_id =
            momentum_bus::message_id(event["subject"].as_str().unwrap(), event["source"].as_str().unwrap(), id);
        let seqs = copies.get(message_id.as_str());
        assert_eq!(
            seqs,
            Some(&vec![*seq]),
            "acknowledged event {id} is in the stream once, at the acknowledged sequence"
        );
    }
    let unacknowledged: Vec<&str> =
        stored.iter().map(|message| message.event_id.as_str()).filter(|id| !acked_ids.contains(id)).collect();
    assert!(unacknowledged.is_empty(), "the stream holds events no one acknowledged: {unacknowledged:?}");
    assert_eq!(stored.len(), acked.len());
}

/// The projector's watermark as its status answers it; `None` while no
/// projector answers.
async fn projector_watermark(nats: &async_nats::Client) -> Option<u64> {
    projector_status(nats).await.and_then(|status| status["watermark"].as_u64())
}

/// The projector binary as a child process with its own data folder.
fn spawn_projector_process(nats_url: &str, data: &std::path::Path) -> ChildProcess {
    ChildProcess::spawn(
        std::process::Command::new(workspace_binary("momentum-projector"))
            .env("MOMENTUM_NATS_URL", nats_url)
            .env("MOMENTUM_DATA_DIR", data)
            .env("MOMENTUM_BATCH_SIZE_MAX", "20")
            .env("MOMENTUM_HTTP_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "warn"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_again_and_again_while_events_stream_in_ends_equal_to_the_stream_folded_from_scratch() {
    let mut stack = TestStack::start().await;
    // Only the child projector answers queries, so what the API says is its.
    stack.stop_projector().await;
    let nats = async_nats::connect(stack.nats.url()).await.unwrap();
    let mut poster = Poster::start(Api::of(&stack), "kill", 10, Duration::from_millis(10));
    let data = tempfile::tempdir().unwrap();

    // Each round lets a backlog build up, starts the projector on the same
    // folder and kills it (SIGKILL) while the partner keeps posting: in even
    // rounds soon after it starts, while it opens its store and catches up;
    // in odd rounds once it answers queries and folds what arrives.
    let mut checkpoint = 0;
    let mut checkpoints = Vec::new();
    for (round, delay) in [0, 50, 100, 150, 300, 450].map(Duration::from_millis).into_iter().enumerate() {
        let acked_before = poster.acked();
        let backlog = Duration::from_secs(10);
        poster.wait_until("a backlog builds up", backlog, |poster| poster.acked() >= acked_before + 100).await;
        let acked_before = poster.acked();
        let mut projector = spawn_projector_process(&stack.nats.url(), data.path());
        if round % 2 == 1 {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let watermark = projector_watermark(&nats).await;
                if watermark.is_some_and(|watermark| watermark > checkpoint) {
                    break;
                }
                poster.check().await;
                assert!(Instant::now() < deadline, "the projector did not resume past {checkpoint} ({watermark:?})");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let streaming = Duration::from_secs(10);
        poster.wait_until("events stream in while it runs", streaming, |poster| poster.acked() > acked_before).await;
        tokio::time::sleep(delay).await;
        projector.kill();
        let watermark = momentum_store::Store::open(data.path()).unwrap().watermark().unwrap();
        assert!(watermark >= checkpoint, "a store never goes back: {watermark} after {checkpoint}");
        checkpoint = watermark;
        checkpoints.push(watermark);
    }
    // Events acknowledged after the last kill cannot be in its store.
    let acked = poster.acked();
    poster
        .wait_until("events stream in after the last kill", Duration::from_secs(10), |poster| poster.acked() > acked)
        .await;
    let acked = poster.finish().await;
    let stored = read_stream(&nats).await;
    assert_stored_exactly_once(&acked, &stored);
    let last_sequence = stored.last().unwrap().seq;
    assert!(checkpoint < last_sequence, "the last kill left events to fold");

    let mut projector = spawn_projector_process(&stack.nats.url(), data.path());
    let deadline = Instant::now() + Duration::from_secs(30);
    while projector_watermark(&nats).await != Some(last_sequence) {
        assert!(Instant::now() < deadline, "the last projector did not catch up with {last_sequence}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = projector_status(&nats).await.unwrap();
    assert_eq!(status["applied_since_start"], last_sequence - checkpoint, "it resumed from its checkpoint");
    println!("{} events acknowledged; checkpoints after the kills: {checkpoints:?}", acked.len());
    Api::of(&stack).assert_numbers(&expected_numbers(acked.iter().map(|acked| &acked.event)), last_sequence).await;

    let exit = projector.terminate(Duration::from_secs(20)).expect("the projector exits on SIGTERM");
    assert!(exit.success(), "{exit}");
    let recovered = momentum_store::Store::open(data.path()).unwrap().load_ledger().unwrap();
    let reference = fold_stream_from_scratch(&nats).await;
    assert_eq!(recovered.watermark(), reference.watermark());
    assert_ledgers_equal(
        recovered.movements(),
        &reference,
        "the store of the projector killed six times and the stream folded from scratch",
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_acknowledged_while_nats_server_restarts_under_a_steady_stream_is_stored_and_counted_once() {
    let mut stack = TestStack::start().await;
    let mut poster = Poster::start(Api::of(&stack), "restart", 10, Duration::from_millis(20));
    poster.wait_until("events are accepted", Duration::from_secs(20), |poster| poster.acked() >= 200).await;
    for _ in 0..2 {
        stack.nats.kill();
        // NATS stays away until the partner has been refused a few times.
        let refused = poster.unavailable();
        let while_down = Duration::from_secs(10);
        poster
            .wait_until("ingest answers 503 without NATS", while_down, |poster| poster.unavailable() >= refused + 5)
            .await;
        stack.nats.restart();
        let acked = poster.acked();
        let back = Duration::from_secs(30);
        poster.wait_until("ingest accepts again", back, |poster| poster.acked() >= acked + 100).await;
    }
    let acked = poster.finish().await;

    let nats = async_nats::connect(stack.nats.url()).await.unwrap();
    let stored = read_stream(&nats).await;
    assert_stored_exactly_once(&acked, &stored);
    let last_sequence = stored.last().unwrap().seq;
    Api::of(&stack).assert_numbers(&expected_numbers(acked.iter().map(|acked| &acked.event)), last_sequence).await;
    stack.stop().await;
}

/// Stream info as the cluster answers it now; `None` while it cannot (say,
/// during an election).
async fn stream_info(jetstream: &async_nats::jetstream::Context) -> Option<async_nats::jetstream::stream::Info> {
    let ask = async {
        let mut stream = jetstream.get_stream(momentum_bus::STREAM_NAME).await.ok()?;
        stream.info().await.ok().cloned()
    };
    tokio::time::timeout(Duration::from_secs(3), ask).await.ok().flatten()
}

/// Stream info with a leader, asked until the cluster answers it.
async fn stream_info_with_leader(
    jetstream: &async_nats::jetstream::Context,
) -> (async_nats::jetstream::stream::Info, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = stream_info(jetstream).await;
        let leader = info.as_ref().and_then(|info| info.cluster.as_ref()?.leader.clone());
        if let (Some(info), Some(leader)) = (info, leader) {
            return (info, leader);
        }
        assert!(Instant::now() < deadline, "the stream has no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The stream's leader and replicas when all three are current.
fn all_current(info: &async_nats::jetstream::stream::Info) -> Option<(String, Vec<String>)> {
    let cluster = info.cluster.as_ref()?;
    let leader = cluster.leader.clone()?;
    let current = cluster.replicas.iter().all(|peer| peer.current && !peer.offline);
    let replicas: Vec<String> = cluster.replicas.iter().map(|peer| peer.name.clone()).collect();
    (current && replicas.len() == 2).then_some((leader, replicas))
}

/// The stream's last sequence as one node itself holds it, from its
/// monitoring endpoint.
async fn node_last_sequence(http: &reqwest::Client, monitor_url: &str) -> Option<u64> {
    let url = format!("{monitor_url}/jsz?accounts=true&streams=true");
    let jsz: Value = http.get(url).send().await.ok()?.json().await.ok()?;
    let accounts = jsz["account_details"].as_array()?;
    let streams = accounts.iter().filter_map(|account| account["stream_detail"].as_array()).flatten();
    let stream = streams.into_iter().find(|stream| stream["name"] == momentum_bus::STREAM_NAME)?;
    stream["state"]["last_seq"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_that_loses_its_stream_leader_keeps_ingesting_loses_nothing_and_the_node_rejoins() {
    let mut cluster = NatsCluster::start(3);
    let nats_url = cluster.url();
    let mut ingest_settings = ingest_config(&nats_url);
    ingest_settings.stream_replicas = 3;
    let (ingest, ingest_url) = spawn_ingest(&ingest_settings).await;
    let projector_data = tempfile::tempdir().unwrap();
    let projector = spawn_projector(&projector_config(&nats_url, projector_data.path().to_owned())).await;
    let (query, query_url) = spawn_query(&query_config(&nats_url)).await;
    let servers: Vec<async_nats::ServerAddr> = nats_url.split(',').map(|url| url.parse().unwrap()).collect();
    let nats = async_nats::connect(servers).await.unwrap();
    let jetstream = async_nats::jetstream::new(nats.clone());

    let (info, _) = stream_info_with_leader(&jetstream).await;
    assert_eq!(info.config.num_replicas, 3, "ingest created the stream with three replicas");
    let api = Api::new(&ingest_url, &query_url);
    let mut poster = Poster::start(api.clone(), "cluster", 10, Duration::from_millis(20));
    poster.wait_until("events are accepted", Duration::from_secs(20), |poster| poster.acked() >= 200).await;

    // Kill the stream's leader mid-ingestion; the partner keeps posting.
    let (_, leader) = stream_info_with_leader(&jetstream).await;
    let killed = cluster.index_of(&leader).expect("the leader is a node of the cluster");
    cluster.kill(killed);
    let killed_at = Instant::now();
    let acked = poster.acked();
    let resumed = Duration::from_secs(30);
    poster.wait_until("ingest accepts after the leader died", resumed, |poster| poster.acked() >= acked + 200).await;
    assert!(poster.longest_wait() < resumed, "no batch waited longer than {resumed:?}: {:?}", poster.longest_wait());
    let (_, new_leader) = stream_info_with_leader(&jetstream).await;
    assert_ne!(new_leader, leader, "another node leads the stream");
    let resumed_after = killed_at.elapsed();

    // The projector keeps up: what was acknowledged since is read through
    // the query API, within a bound.
    let max_seq = poster.max_seq();
    let deadline = killed_at + Duration::from_secs(60);
    loop {
        let (status, content_type, body) = api.get(&format!("/v1/status?min_seq={max_seq}")).await;
        if status == 200 {
            break;
        }
        assert_eq!((status, content_type.as_str()), (503, "application/problem+json"), "{body}");
        poster.check().await;
        assert!(Instant::now() < deadline, "the projector did not keep up with {max_seq}: {body}");
    }
    println!(
        "killed the stream leader {leader}, {new_leader} leads now; a batch waited at most {:?}; ingest accepted \
         again {resumed_after:?} and the projector had applied sequence {max_seq} {:?} after the kill",
        poster.longest_wait(),
        killed_at.elapsed()
    );

    // The node comes back on its own store and catches up while the
    // partner keeps posting.
    cluster.restart(killed);
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        // With three nodes, all three current means the restarted one too.
        let current = stream_info(&jetstream).await.as_ref().and_then(all_current);
        if let Some((leader, replicas)) = &current {
            let rejoined = std::iter::once(leader).chain(replicas).any(|name| name == cluster.server_name(killed));
            assert!(rejoined, "the stream is placed on the restarted node: {current:?}");
            break;
        }
        poster.check().await;
        assert!(Instant::now() < deadline, "the restarted node did not become a current replica: {current:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let acked = poster.finish().await;
    let (info, _) = stream_info_with_leader(&jetstream).await;
    let last_sequence = info.state.last_sequence;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let on_node = node_last_sequence(&api.http, &cluster.monitor_url(killed)).await;
        if on_node == Some(last_sequence) {
            break;
        }
        assert!(Instant::now() < deadline, "the restarted node holds {on_node:?}, not {last_sequence}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stored = read_stream(&nats).await;
    assert_eq!(stored.last().unwrap().seq, last_sequence);
    assert_stored_exactly_once(&acked, &stored);
    let deadline = Instant::now() + Duration::from_secs(30);
    while projector_watermark(&nats).await != Some(last_sequence) {
        assert!(Instant::now() < deadline, "the projector did not apply everything up to {last_sequence}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    api.assert_numbers(&expected_numbers(acked.iter().map(|acked| &acked.event)), last_sequence).await;
    projector.stop().await;
    query.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_service_answers_503_while_nats_is_away_and_serves_reads_again_once_it_is_back() {
    let mut stack = TestStack::start().await;
    let events: Vec<Value> = (0..40).map(|index| steady_event("away", index)).collect();
    let (status, body) = stack.post_batch(&events).await;
    assert_eq!(status, 200, "{body}");
    let max_seq = body["max_seq"].as_u64().unwrap();
    let api = Api::of(&stack);
    let read = format!("/v1/movements/{}/trends?interval=week&from=2026-03-02&to=2026-03-29", MOVEMENTS[0]);
    let (status, _, before) = api.get(&format!("{read}&min_seq={max_seq}")).await;
    assert_eq!(status, 200, "{before}");
    api.assert_numbers(&expected_numbers(&events), max_seq).await;

    stack.nats.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, content_type, body) = api.get("/readyz").await;
        if status == 503 {
            assert_eq!(content_type, "application/problem+json", "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "query stayed ready without NATS");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Reads, several at once, each answered with a clear 503 in bounded time.
    let started = Instant::now();
    let reads = [read.as_str(), "/v1/movements", "/v1/status", read.as_str()].map(|path| api.get(path));
    for (status, content_type, body) in futures::future::join_all(reads).await {
        assert_eq!(status, 503, "{body}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(body["type"], "urn:momentum:problem:unavailable", "{body}");
    }
    // At the latest when query stops waiting for the projector.
    let bound = Duration::from_millis(query_config(&stack.nats.url()).query_timeout_ms) + Duration::from_secs(2);
    assert!(started.elapsed() < bound, "503s in {:?}, not hangs", started.elapsed());
    println!("four reads without NATS answered 503 in {:?}", started.elapsed());

    stack.nats.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let (status, content_type, body) = api.get(&read).await;
        if status == 200 {
            break body;
        }
        assert_eq!((status, content_type.as_str()), (503, "application/problem+json"), "{body}");
        assert!(Instant::now() < deadline, "query did not serve reads again after NATS came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(after, before, "the same numbers as before NATS went away");
    let (status, _, body) = api.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    // The services stop cleanly: nothing panicked while NATS was away.
    stack.stop().await;
}

#[tokio::test]
async fn a_stream_message_the_projector_cannot_read_stops_it_with_its_sequence_and_nothing_after_is_skipped() {
    let mut stack = TestStack::start().await;
    stack.stop_projector().await;
    let (status, body) = stack.post_event(&hours("before", "alpha", "2026-03-05T10:00:00Z", "ann", 1.0)).await;
    assert_eq!((status, body["seq"].as_u64()), (202, Some(1)), "{body}");
    // As a newer ingest might write it: an event type this version does not know.
    let nats = async_nats::connect(stack.nats.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(nats);
    let newer = serde_json::json!({
        "specversion": "1.0", "id": "newer", "source": "urn:test", "type": "meeting.planned",
        "subject": "alpha", "time": "2026-03-06T10:00:00Z", "data": {}
    });
    let subject = momentum_bus::event_subject("alpha", "meeting.planned");
    let ack = jetstream.publish(subject, newer.to_string().into()).await.unwrap().await.unwrap();
    assert_eq!(ack.sequence, 2);
    let (_, body) = stack.post_event(&hours("after", "alpha", "2026-03-07T10:00:00Z", "bob", 1.0)).await;
    assert_eq!(body["seq"], 3, "{body}");

    let data = tempfile::tempdir().unwrap();
    let projector = spawn_projector(&projector_config(&stack.nats.url(), data.path().to_owned())).await;
    let error = projector.ended_within(Duration::from_secs(30)).await.expect_err("the projector stops");
    assert!(
        matches!(error, momentum_projector::ProjectorError::UnreadableEvent { sequence: 2, .. }),
        "the error names the message: {error}"
    );
    assert!(error.to_string().contains("upgrade the projector"), "{error}");
    let store = momentum_store::Store::open(data.path()).unwrap();
    assert_eq!(store.watermark().unwrap(), 1, "what came before is committed, nothing after is skipped");
    drop(store);
    stack.stop().await;
}

#[tokio::test]
async fn a_projector_serves_once_caught_up_even_when_the_streams_last_message_was_deleted() {
    let mut stack = TestStack::start().await;
    stack.stop_projector().await;
    let (_, body) = stack.post_event(&hours("kept", "alpha", "2026-03-05T10:00:00Z", "ann", 1.0)).await;
    assert_eq!(body["seq"], 1, "{body}");
    let (_, body) = stack.post_event(&hours("deleted", "alpha", "2026-03-06T10:00:00Z", "bob", 2.0)).await;
    assert_eq!(body["seq"], 2, "{body}");
    // An operator deletes the last message (the stream's last sequence
    // stays 2): a new projector's watermark can only reach 1.
    let nats = async_nats::connect(stack.nats.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(nats.clone());
    let stream = jetstream.get_stream(momentum_bus::STREAM_NAME).await.unwrap();
    assert!(stream.delete_message(2).await.unwrap());

    let data = tempfile::tempdir().unwrap();
    let (projector, health) =
        spawn_projector_with_address(&projector_config(&stack.nats.url(), data.path().to_owned())).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = projector_status(&nats).await {
            break status;
        }
        assert!(Instant::now() < deadline, "the projector never answered queries");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status["watermark"], 1, "{status}");
    let ready = reqwest::get(format!("{health}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let trend = stack.weekly_trend("alpha", "2026-03-02", "2026-03-02", 1).await;
    assert_eq!(row(&trend, "2026-03-02")["volunteer_hours"], 1.0, "{trend}");
    projector.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn the_projectors_readyz_fails_while_it_cannot_open_the_event_stream() {
    let mut stack = TestStack::start().await;
    stack.stop_projector().await;
    let (_, body) = stack.post_event(&hours("one", "alpha", "2026-03-05T10:00:00Z", "ann", 1.0)).await;
    assert_eq!(body["seq"], 1, "{body}");
    let data = tempfile::tempdir().unwrap();
    let (projector, health) =
        spawn_projector_with_address(&projector_config(&stack.nats.url(), data.path().to_owned())).await;
    let http = reqwest::Client::new();
    let readyz = || async { http.get(format!("{health}/readyz")).send().await.unwrap().status().as_u16() };
    let deadline = Instant::now() + Duration::from_secs(20);
    while readyz().await != 200 {
        assert!(Instant::now() < deadline, "the projector never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The stream goes away under it: connected, serving, and no lag it
    // knows of, but it reads nothing.
    let nats = async_nats::connect(stack.nats.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(nats);
    assert!(jetstream.delete_stream(momentum_bus::STREAM_NAME).await.unwrap().success);
    let deadline = Instant::now() + Duration::from_secs(20);
    while readyz().await != 503 {
        assert!(Instant::now() < deadline, "readyz stayed green with no stream to read");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    projector.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn a_running_projector_stops_when_its_stream_is_deleted_and_made_again_instead_of_folding_the_new_one_on_top() {
    let mut stack = TestStack::start().await;
    stack.stop_projector().await;
    let (_, body) = stack.post_event(&hours("old", "alpha", "2026-03-05T10:00:00Z", "ann", 1.0)).await;
    assert_eq!(body["seq"], 1, "{body}");
    let data = tempfile::tempdir().unwrap();
    let projector = spawn_projector(&projector_config(&stack.nats.url(), data.path().to_owned())).await;
    let nats = async_nats::connect(stack.nats.url()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while projector_status(&nats).await.is_none_or(|status| status["watermark"] != 1) {
        assert!(Instant::now() < deadline, "the projector never applied the first event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The stream is lost and made again while the projector runs, and new
    // events arrive: the new stream's first sequences are ones the
    // projector has already applied from the old one.
    let jetstream = async_nats::jetstream::new(nats);
    jetstream.delete_stream(momentum_bus::STREAM_NAME).await.unwrap();
    jetstream.create_stream(momentum_bus::StreamSettings::default().config()).await.unwrap();
    for (index, day) in ["06", "07"].into_iter().enumerate() {
        let (status, body) = stack
            .post_event(&hours(&format!("new-{index}"), "alpha", &format!("2026-03-{day}T10:00:00Z"), "bob", 1.0))
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let error = projector.ended_within(Duration::from_secs(30)).await.expect_err("the projector stops");
    assert!(error.to_string().contains("stream_created"), "{error}");
    stack.stop().await;
}

#[tokio::test]
async fn an_event_on_a_subject_of_another_slot_stops_the_projector_rather_than_being_folded_by_the_wrong_partition() {
    let mut stack = TestStack::start().await;
    stack.stop_projector().await;
    let (_, body) = stack.post_event(&hours("before", "alpha", "2026-03-05T10:00:00Z", "ann", 1.0)).await;
    assert_eq!(body["seq"], 1, "{body}");
    // A valid event of movement alpha, published by hand on the subject of
    // another slot: a partitioned projector owning that slot would fold it.
    let nats = async_nats::connect(stack.nats.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(nats);
    let slot = (momentum_bus::slot("alpha") + 1) % momentum_bus::SLOT_COUNT;
    let subject = format!("momentum.events.{slot}.alpha.volunteer.hours_logged");
    let misplaced = hours("misplaced", "alpha", "2026-03-06T10:00:00Z", "bob", 2.0);
    let ack = jetstream.publish(subject.clone(), misplaced.to_string().into()).await.unwrap().await.unwrap();
    assert_eq!(ack.sequence, 2);

    let data = tempfile::tempdir().unwrap();
    let projector = spawn_projector(&projector_config(&stack.nats.url(), data.path().to_owned())).await;
    let error = projector.ended_within(Duration::from_secs(30)).await.expect_err("the projector stops");
    assert!(
        matches!(error, momentum_projector::ProjectorError::UnreadableEvent { sequence: 2, .. }),
        "the error names the message: {error}"
    );
    assert!(error.to_string().contains(&subject), "{error}");
    let store = momentum_store::Store::open(data.path()).unwrap();
    assert_eq!(store.watermark().unwrap(), 1, "what came before is committed");
    drop(store);
    stack.stop().await;
}
