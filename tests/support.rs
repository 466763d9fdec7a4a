//! The one helper end-to-end tests start momentum through: a real
//! nats-server on a dynamic port and the three services, in process, on
//! ephemeral HTTP ports. Dropping the stack stops everything.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use momentum_domain::ledger::{FoldSettings, Ledger, MovementLedger};
use momentum_testkit::NatsServer;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use momentum_testkit;

/// Held by the tests that start a whole stack of processes or a browser
/// (the README's stack, the bench, the API fuzzing, the dashboard), so that
/// no two of them compete for the machine at once: in the one test binary
/// they would otherwise run side by side, and each has a time bound.
pub async fn one_heavy_test_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}

/// A service running on the test's runtime, stopped through its sender.
pub struct Running<E> {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), E>>,
}

impl<E: std::fmt::Debug> Running<E> {
    /// Asks the service to shut down and waits until it has; panics if it panicked or ended with an error.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("the service task does not panic").expect("the service stops cleanly");
    }

    /// What the service ended with, when it stops by itself within `timeout`.
    pub async fn ended_within(self, timeout: std::time::Duration) -> Result<(), E> {
        let ended = tokio::time::timeout(timeout, self.task).await;
        ended.expect("the service stops by itself in time").expect("the service task does not panic")
    }
}

fn on_stop() -> (oneshot::Sender<()>, impl Future<Output = ()> + Send + 'static) {
    let (sender, receiver) = oneshot::channel::<()>();
    (sender, async move {
        let _ = receiver.await;
    })
}

/// The admin token of test stacks.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A nats-server and the three services connected to it, in process on ephemeral ports, with an HTTP client and the
/// admin token to call them. Dropping it stops everything; [`TestStack::stop`] also waits for the services to end.
pub struct TestStack {
    /// The nats-server the services connect to; a test may kill and restart it.
    pub nats: NatsServer,
    /// The ingest service's base URL, `http://127.0.0.1:<port>`.
    pub ingest_url: String,
    /// The query service's base URL, `http://127.0.0.1:<port>`.
    pub query_url: String,
    /// The client the stack's request helpers use; each request times out after 30 seconds.
    pub http: reqwest::Client,
    /// A token with the admin role, sent by the stack's own request helpers;
    /// tests that make raw requests send it with `.bearer_auth(&stack.admin_token)`.
    pub admin_token: String,
    /// The projector's data folder: a temporary folder kept while the projector is stopped and started again, and
    /// removed when the stack is dropped.
    pub projector_data: tempfile::TempDir,
    ingest: Option<Running<momentum_ingest::IngestError>>,
    query: Option<Running<momentum_query::QueryServiceError>>,
    projector: Option<Running<momentum_projector::ProjectorError>>,
    /// Where the running projector serves `/livez`, `/readyz` and `/metrics`.
    pub projector_url: Option<String>,
    /// How the projector connects, kept for [`TestStack::start_projector`].
    projector_connection: momentum_bus::NatsConnection,
}

/// How each service of a stack connects to NATS; the default connects
/// without credentials, as to the plain test server.
#[derive(Clone, Debug, Default)]
pub struct StackConnections {
    /// How ingest connects.
    pub ingest: momentum_bus::NatsConnection,
    /// How the projector connects, each time it is started.
    pub projector: momentum_bus::NatsConnection,
    /// How query connects.
    pub query: momentum_bus::NatsConnection,
}

/// Ingest settings for a test on the NATS server at `nats_url`: an ephemeral HTTP port on 127.0.0.1, the test auth
/// and pseudonym key files ([`test_secrets`]), and rate limits far above what tests post.
pub fn ingest_config(nats_url: &str) -> momentum_ingest::Config {
    momentum_ingest::Config {
        nats_url: nats_url.to_owned(),
        nats_connection: momentum_bus::NatsConnection::default(),
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        publish_timeout_ms: 2000,
        body_timeout_ms: 1000,
        stream_replicas: 1,
        duplicate_window_s: 120,
        auth: momentum_runtime::auth::AuthSettings::file(test_secrets().join("auth.toml")),
        pseudonym_key_file: Some(test_secrets().join("pseudonym-keys.toml")),
        // Far above what tests post, so only the rate-limit test meets a limit.
        rate_events_per_s: 1_000_000,
        rate_burst_events: 1_000_000,
        log_json: false,
    }
}

/// Query settings for a test on the NATS server at `nats_url`: an ephemeral HTTP port on 127.0.0.1, the test auth
/// file, London time, nothing suppressed and one projector partition.
pub fn query_config(nats_url: &str) -> momentum_query::Config {
    momentum_query::Config {
        nats_url: nats_url.to_owned(),
        nats_connection: momentum_bus::NatsConnection::default(),
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        query_timeout_ms: 5000,
        time_zone: chrono_tz::Europe::London,
        auth: momentum_runtime::auth::AuthSettings::file(test_secrets().join("auth.toml")),
        suppress_below: 0,
        open_data_license: momentum_query::open_data::OpenDataLicense::OglUk3,
        partitions: 1,
        log_json: false,
    }
}

/// An evaluator of movement `alpha` only.
pub const EVALUATOR_TOKEN: &str = "test-evaluator-token";
/// A partner posting as `urn:test:partner` for movement `alpha` only.
pub const PARTNER_TOKEN: &str = "test-partner-token";
/// Another partner, posting as `urn:test:other` for every movement.
pub const OTHER_PARTNER_TOKEN: &str = "test-other-partner-token";

/// The folder of the auth file and pseudonym key file every test stack
/// uses, written once per test process.
pub fn test_secrets() -> &'static std::path::Path {
    static FOLDER: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FOLDER.get_or_init(|| {
        let folder = std::env::temp_dir().join(format!("momentum-test-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&folder).expect("can make the secrets folder");
        let digest = momentum_runtime::auth::token_digest_hex;
        let auth = format!(
            "[[token]]\nname = \"test-admin\"\nsha256 = \"{}\"\nrole = \"admin\"\n\n\
             [[token]]\nname = \"test-evaluator\"\nsha256 = \"{}\"\nrole = \"evaluator\"\nmovements = [\"alpha\"]\n\n\
             [[token]]\nname = \"test-partner\"\nsha256 = \"{}\"\nrole = \"partner\"\n\
             source = \"urn:test:partner\"\nmovements = [\"alpha\"]\n\n\
             [[token]]\nname = \"test-other-partner\"\nsha256 = \"{}\"\nrole = \"partner\"\n\
             source = \"urn:test:other\"\nmovements = [\"*\"]\n",
            digest(ADMIN_TOKEN),
            digest(EVALUATOR_TOKEN),
            digest(PARTNER_TOKEN),
            digest(OTHER_PARTNER_TOKEN),
        );
        std::fs::write(folder.join("auth.toml"), auth).expect("can write the auth file");
        let keys = format!("current = 1\n[[key]]\nversion = 1\nsecret = \"{}\"\n", "5a".repeat(32));
        std::fs::write(folder.join("pseudonym-keys.toml"), keys).expect("can write the key file");
        folder
    })
}

/// Projector settings for a test on the NATS server at `nats_url`, keeping its store in `data_dir`: London time, a
/// volunteer hour valued at £10, the whole stream as one partition and an ephemeral HTTP port on 127.0.0.1.
pub fn projector_config(nats_url: &str, data_dir: PathBuf) -> momentum_projector::Config {
    momentum_projector::Config {
        nats_url: nats_url.to_owned(),
        nats_connection: momentum_bus::NatsConnection::default(),
        data_dir,
        time_zone: chrono_tz::Europe::London,
        batch_size_max: 1000,
        store_cache_mib: 16,
        query_wait_ms_max: 3000,
        volunteer_hour_value_gbp: Some(10.0),
        volunteer_hour_basis: None,
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        ready_lag_max: 10_000,
        partition: momentum_bus::Partition::WHOLE,
        log_json: false,
    }
}

impl TestStack {
    /// Starts nats-server, ingest, projector and query.
    pub async fn start() -> TestStack {
        TestStack::start_with(NatsServer::start(), StackConnections::default()).await
    }

    /// Starts ingest, projector and query on the given nats-server, each
    /// connecting with its own settings (its own credentials, say).
    pub async fn start_with(nats: NatsServer, connections: StackConnections) -> TestStack {
        let mut ingest_settings = ingest_config(&nats.url());
        ingest_settings.nats_connection = connections.ingest;
        let ingest = momentum_ingest::Ingest::start(&ingest_settings).await.expect("ingest starts");
        let ingest_url = format!("http://{}", ingest.local_addr());
        let (stop, shutdown) = on_stop();
        let ingest = Running { stop, task: tokio::spawn(ingest.serve(shutdown)) };

        let mut query_config = query_config(&nats.url());
        query_config.nats_connection = connections.query;
        let query = momentum_query::QueryService::start(&query_config).await.expect("query starts");
        let query_url = format!("http://{}", query.local_addr());
        let (stop, shutdown) = on_stop();
        let query = Running { stop, task: tokio::spawn(query.serve(shutdown)) };

        let mut stack = TestStack {
            nats,
            ingest_url,
            query_url,
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
            admin_token: ADMIN_TOKEN.to_owned(),
            projector_data: tempfile::tempdir().unwrap(),
            ingest: Some(ingest),
            query: Some(query),
            projector: None,
            projector_url: None,
            projector_connection: connections.projector,
        };
        stack.start_projector().await;
        stack
    }

    /// Starts the projector on the stack's data folder and sets `projector_url`; panics if it is already running.
    pub async fn start_projector(&mut self) {
        assert!(self.projector.is_none(), "the projector is already running");
        let mut config = projector_config(&self.nats.url(), self.projector_data.path().to_owned());
        config.nats_connection = self.projector_connection.clone();
        let (projector, url) = spawn_projector_with_address(&config).await;
        (self.projector, self.projector_url) = (Some(projector), Some(url));
    }

    /// Stops the projector gracefully; its data folder stays.
    pub async fn stop_projector(&mut self) {
        self.projector.take().expect("the projector is running").stop().await;
        self.projector_url = None;
    }

    /// Posts one event to ingest as the admin, in structured CloudEvents JSON; returns the status and the body, as
    /// JSON where it parses, else as a string.
    pub async fn post_event(&self, event: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/v1/events", self.ingest_url))
            .bearer_auth(&self.admin_token)
            .header("content-type", "application/cloudevents+json")
            .body(event.to_string())
            .send()
            .await
            .expect("ingest answers");
        read(response).await
    }

    /// Posts `events` to ingest as the admin, as one CloudEvents batch; returns the status and the body, as JSON
    /// where it parses, else as a string.
    pub async fn post_batch(&self, events: &[Value]) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/v1/events", self.ingest_url))
            .bearer_auth(&self.admin_token)
            .header("content-type", "application/cloudevents-batch+json")
            .body(Value::from(events.to_vec()).to_string())
            .send()
            .await
            .expect("ingest answers");
        read(response).await
    }

    /// GETs `path_and_query` (such as `/v1/status`) from the query service as the admin; returns the status and the
    /// body, as JSON where it parses, else as a string.
    pub async fn query(&self, path_and_query: &str) -> (u16, Value) {
        let response =
            self.http.get(format!("{}{path_and_query}", self.query_url)).bearer_auth(&self.admin_token).send();
        let response = response.await.expect("query answers");
        read(response).await
    }

    /// The weekly trend of a movement, read once the projection has
    /// applied stream sequence `min_seq`.
    pub async fn weekly_trend(&self, movement: &str, from: &str, to: &str, min_seq: u64) -> Value {
        let (status, body) = self
            .query(&format!("/v1/movements/{movement}/trends?interval=week&from={from}&to={to}&min_seq={min_seq}"))
            .await;
        assert_eq!(status, 200, "trend read failed: {body}");
        body
    }

    /// Stops the projector, query and ingest gracefully, in that order, waiting for each; nats-server is killed when
    /// the stack is dropped at the end.
    pub async fn stop(mut self) {
        if let Some(projector) = self.projector.take() {
            projector.stop().await;
        }
        if let Some(query) = self.query.take() {
            query.stop().await;
        }
        if let Some(ingest) = self.ingest.take() {
            ingest.stop().await;
        }
    }
}

/// Starts a projector on the test's runtime.
pub async fn spawn_projector(config: &momentum_projector::Config) -> Running<momentum_projector::ProjectorError> {
    spawn_projector_with_address(config).await.0
}

/// Starts a projector and says where its `/livez` and `/readyz` are.
pub async fn spawn_projector_with_address(
    config: &momentum_projector::Config,
) -> (Running<momentum_projector::ProjectorError>, String) {
    let projector = momentum_projector::Projector::start(config).await.expect("projector starts");
    let url = format!("http://{}", projector.http_addr());
    let (stop, shutdown) = on_stop();
    (Running { stop, task: tokio::spawn(projector.run(shutdown)) }, url)
}

/// Starts an ingest service on the test's runtime; also says its base URL.
pub async fn spawn_ingest(config: &momentum_ingest::Config) -> (Running<momentum_ingest::IngestError>, String) {
    let ingest = momentum_ingest::Ingest::start(config).await.expect("ingest starts");
    let url = format!("http://{}", ingest.local_addr());
    let (stop, shutdown) = on_stop();
    (Running { stop, task: tokio::spawn(ingest.serve(shutdown)) }, url)
}

/// Starts a query service on the test's runtime; also says its base URL.
pub async fn spawn_query(config: &momentum_query::Config) -> (Running<momentum_query::QueryServiceError>, String) {
    let query = momentum_query::QueryService::start(config).await.expect("query starts");
    let url = format!("http://{}", query.local_addr());
    let (stop, shutdown) = on_stop();
    (Running { stop, task: tokio::spawn(query.serve(shutdown)) }, url)
}

/// How many projector instances answer `$SRV.PING` (each answers once).
pub async fn projector_instances(nats: &async_nats::Client) -> usize {
    use futures::StreamExt;
    let inbox = nats.new_inbox();
    let mut replies = nats.subscribe(inbox.clone()).await.unwrap();
    let subject = format!("$SRV.PING.{}", momentum_bus::PROJECTOR_SERVICE_NAME);
    nats.publish_with_reply(subject, inbox, "".into()).await.unwrap();
    let mut count = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), replies.next()).await {
        count += 1;
    }
    count
}

async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// The python of a pinned virtualenv that `script` (`ensure-pandas.sh`,
/// `ensure-duckdb.sh`, under `scripts/`) installs if need be and prints.
/// Fails, saying why, when it cannot be had: a test that needs it never skips.
pub fn pinned_python(script: &str) -> PathBuf {
    let script = momentum_testkit::workspace_root().join("scripts").join(script);
    let output = std::process::Command::new(&script)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", script.display()));
    assert!(
        output.status.success(),
        "{} failed, so the test cannot read the exports:\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// A valid event of the given type; `data` as given.
pub fn event(id: &str, kind: &str, movement: &str, time: &str, data: Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "urn:test:partner",
        "type": kind,
        "subject": movement,
        "time": time,
        "data": data,
    })
}

/// A `meeting.held` of `attendees`, organised by `organiser` in the role `citizen`.
pub fn meeting(id: &str, movement: &str, time: &str, attendees: &[&str], organiser: &str) -> Value {
    event(
        id,
        "meeting.held",
        movement,
        time,
        json!({ "attendees": attendees, "organisers": [{ "participant": organiser, "role": "citizen" }] }),
    )
}

/// A `volunteer.hours_logged` of `hours` by `participant`.
pub fn hours(id: &str, movement: &str, time: &str, participant: &str, hours: f64) -> Value {
    event(id, "volunteer.hours_logged", movement, time, json!({ "participant": participant, "hours": hours }))
}

/// A `collective_action.taken` by `participants`, with no organisers and `reach` people reached.
pub fn action(id: &str, movement: &str, time: &str, participants: &[&str], reach: u64) -> Value {
    event(
        id,
        "collective_action.taken",
        movement,
        time,
        json!({ "participants": participants, "organisers": [], "reach": reach }),
    )
}

/// The row of a trend for the week starting on `period`.
pub fn row<'a>(trend: &'a Value, period: &str) -> &'a Value {
    trend["series"]
        .as_array()
        .expect("a series")
        .iter()
        .find(|row| row["period"] == period)
        .unwrap_or_else(|| panic!("no row for {period} in {trend}"))
}

/// Returns once the server holds every subscription `client` has made.
/// async-nats's flush only writes the socket; a request answered on the
/// same connection shows the server has read all that was sent before it,
/// since it handles a connection's messages in order. Without this, a
/// message published on another connection may come before the
/// subscription does and be missed. It needs JetStream on the server, and
/// proves the subscription only on the server `client` is connected to,
/// which is all there is in these tests.
pub async fn subscriptions_in_place(client: &async_nats::Client) {
    async_nats::jetstream::new(client.clone()).query_account().await.expect("the server answers");
}

/// The value of `series` (a metric's name with its labels, if any) in an
/// OpenMetrics text; `None` if the text has no such series.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

/// The projector's status, asked directly over NATS; `None` while no
/// projector answers.
pub async fn projector_status(nats: &async_nats::Client) -> Option<Value> {
    let subject = momentum_bus::Partition::WHOLE.read_subject::<momentum_bus::protocol::StatusRequest>();
    let reply = tokio::time::timeout(Duration::from_secs(2), nats.request(subject, "{}".into())).await.ok()?.ok()?;
    serde_json::from_slice(&reply.payload).ok()
}

/// Fails, naming the movements that differ, if a stored ledger's
/// movements are not exactly the expected ones (watermarks aside).
pub fn assert_ledgers_equal<'a>(
    stored: impl IntoIterator<Item = (&'a str, &'a MovementLedger)>,
    expected: &Ledger,
    what: &str,
) {
    let stored: BTreeMap<&str, &MovementLedger> = stored.into_iter().collect();
    let expected: BTreeMap<&str, &MovementLedger> = expected.movements().collect();
    let missing: Vec<&str> = expected.keys().filter(|movement| !stored.contains_key(*movement)).copied().collect();
    let extra: Vec<&str> = stored.keys().filter(|movement| !expected.contains_key(*movement)).copied().collect();
    let different: Vec<&str> = stored
        .iter()
        .filter(|(movement, ledger)| expected.get(*movement).is_some_and(|other| other != *ledger))
        .map(|(m, _)| *m)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && different.is_empty(),
        "{what} differ: movements missing {missing:?}, extra {extra:?}, different {different:?}"
    );
    assert!(!expected.is_empty(), "{what}: the expected ledger has movements");
}

/// Folds the whole event stream, from sequence 1, into a fresh ledger
/// with the one fold: the reference a stored ledger must equal.
pub async fn fold_stream_from_scratch(nats: &async_nats::Client) -> Ledger {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
    use futures::StreamExt;

    let jetstream = async_nats::jetstream::new(nats.clone());
    let mut stream = jetstream.get_stream(momentum_bus::STREAM_NAME).await.expect("the stream exists");
    let last_sequence = stream.info().await.expect("stream info").state.last_sequence;
    let consumer = stream
        .create_consumer(OrderedConfig { deliver_policy: DeliverPolicy::All, ..Default::default() })
        .await
        .expect("a consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut ledger = Ledger::default();
    let settings = FoldSettings::default();
    let mut sequence = 0;
    while sequence < last_sequence {
        let message = messages.next().await.expect("the stream goes on").expect("a message");
        sequence = message.info().expect("info").stream_sequence;
        let event = momentum_domain::Event::from_json(&message.payload).expect("stored events are valid");
        ledger.apply(&settings, &event, sequence);
    }
    ledger
}
