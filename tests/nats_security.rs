//! NATS security: nats-server runs `deploy/nats/secure.conf`, each service
//! connects with its own user, and each user may use only the subjects its
//! service needs. The tests connect with a service's credentials exactly as
//! the service does and try what it must not be able to do.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use momentum_bus::NatsConnection;
use momentum_tests::momentum_testkit::{NatsServer, workspace_root};
use momentum_tests::*;
use serde_json::json;
use tokio::sync::mpsc;

const MOVEMENT: &str = "leeds-walking";
/// The subject a meeting of [`MOVEMENT`] is published on.
const EVENT_SUBJECT: &str = "momentum.events.leeds-walking.meeting.held";

/// Users of `deploy/nats/secure.conf` and the environment variable each
/// one's password comes from. Letters and digits only: nats-server parses
/// the variable's value as a configuration value.
const USERS: [(&str, &str, &str); 4] = [
    ("ingest", "MOMENTUM_NATS_INGEST_PASSWORD", "ingestPassword1"),
    ("projector", "MOMENTUM_NATS_PROJECTOR_PASSWORD", "projectorPassword2"),
    ("query", "MOMENTUM_NATS_QUERY_PASSWORD", "queryPassword3"),
    ("admin", "MOMENTUM_NATS_ADMIN_PASSWORD", "adminPassword4"),
];

/// A stack whose nats-server runs the secure configuration and whose
/// services connect as their own users.
struct SecureStack {
    stack: TestStack,
    /// The password files the services read.
    secrets: tempfile::TempDir,
}

impl SecureStack {
    /// Starts nats-server with the secure configuration, then the services,
    /// each connecting as its own user with its password in a file.
    async fn start() -> SecureStack {
        let secrets = tempfile::tempdir().unwrap();
        for (user, _, password) in USERS {
            // A trailing newline, as `echo password > file` writes it.
            std::fs::write(secrets.path().join(user), format!("{password}\n")).unwrap();
        }
        let environment: Vec<(&str, &str)> =
            USERS.iter().map(|(_, variable, password)| (*variable, *password)).collect();
        let nats = NatsServer::start_with_config(&workspace_root().join("deploy/nats/secure.conf"), &environment);
        let connections = StackConnections {
            ingest: connection(&secrets, "ingest"),
            projector: connection(&secrets, "projector"),
            query: connection(&secrets, "query"),
        };
        SecureStack { stack: TestStack::start_with(nats, connections).await, secrets }
    }

    /// A client connected exactly as the named service connects (same
    /// name, inbox prefix and credentials), whose server errors, such as
    /// permission violations, arrive on the returned receiver.
    async fn connect_as(
        &self,
        service_name: &str,
        user: &str,
    ) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
        let (errors, received) = mpsc::unbounded_channel();
        let client = momentum_bus::connect_options(service_name, &connection(&self.secrets, user))
            .expect("the settings are valid")
            .event_callback(move |event| {
                let errors = errors.clone();
                async move {
                    if let async_nats::Event::ServerError(error) = event {
                        let _ = errors.send(error.to_string());
                    }
                }
            })
            .connect(self.stack.nats.url())
            .await
            .expect("the user may connect");
        (client, received)
    }

    /// An operator's connection, allowed everything.
    async fn admin(&self) -> async_nats::Client {
        let (_, _, password) = USERS[3];
        async_nats::ConnectOptions::with_user_and_password("admin".to_owned(), password.to_owned())
            .connect(self.stack.nats.url())
            .await
            .expect("the admin may connect")
    }

    /// How many messages the event stream holds, asked as the admin.
    async fn stored_messages(&self) -> u64 {
        let jetstream = async_nats::jetstream::new(self.admin().await);
        let mut stream = jetstream.get_stream(momentum_bus::STREAM_NAME).await.expect("the stream exists");
        stream.info().await.expect("stream info").state.messages
    }

    /// Posts a meeting through ingest and returns its stream sequence.
    async fn post_meeting(&self, id: &str) -> u64 {
        let (status, body) =
            self.stack.post_event(&meeting(id, MOVEMENT, "2026-03-05T09:00:00Z", &["a", "b"], "o1")).await;
        assert_eq!(status, 202, "{body}");
        body["seq"].as_u64().expect("an accepted event has a sequence")
    }
}

/// How the named user connects: user and password file.
fn connection(secrets: &tempfile::TempDir, user: &str) -> NatsConnection {
    NatsConnection {
        user: Some(user.to_owned()),
        password_file: Some(secrets.path().join(user)),
        ..NatsConnection::default()
    }
}

/// Waits for a server error that contains `expected`, failing the test if
/// none comes within two seconds.
async fn expect_server_error(errors: &mut mpsc::UnboundedReceiver<String>, expected: &str) {
    let reported = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(error) = errors.recv().await {
            if error.contains(expected) {
                return true;
            }
        }
        false
    });
    assert_eq!(reported.await, Ok(true), "the server did not report {expected:?}");
}

/// A JetStream context that gives up on a missing acknowledgement quickly.
fn jetstream_of(client: &async_nats::Client) -> async_nats::jetstream::Context {
    async_nats::jetstream::ContextBuilder::new().timeout(Duration::from_secs(1)).build(client.clone())
}

/// Tries to put an event into the stream with `client`, as a plain publish
/// and as a JetStream publish, and checks that neither is stored.
async fn assert_cannot_publish_events(
    secure: &SecureStack,
    client: &async_nats::Client,
    errors: &mut mpsc::UnboundedReceiver<String>,
) {
    let first = secure.post_meeting("before").await;
    let forged = meeting("forged", MOVEMENT, "2026-03-05T09:00:00Z", &["mallory"], "mallory").to_string();

    client.publish(EVENT_SUBJECT, forged.clone().into()).await.unwrap();
    client.flush().await.unwrap();
    expect_server_error(errors, &format!("Permissions Violation for Publish to \"{EVENT_SUBJECT}\"")).await;

    // The server drops the publish, so no acknowledgement ever comes.
    let acknowledgement = jetstream_of(client).publish(EVENT_SUBJECT, forged.into()).await;
    let acknowledged = match acknowledgement {
        Ok(acknowledgement) => acknowledgement.await.is_ok(),
        Err(_) => false,
    };
    assert!(!acknowledged, "JetStream acknowledged a forged event");

    // Ingest's next event directly follows its previous one: nothing was
    // stored in between.
    assert_eq!(secure.post_meeting("after").await, first + 1);
    assert_eq!(secure.stored_messages().await, first + 1);
}

#[tokio::test]
async fn the_services_work_end_to_end_with_their_own_least_privilege_credentials() {
    let secure = SecureStack::start().await;
    let seq = secure.post_meeting("m1").await;
    assert_eq!(seq, 1);

    let trend = secure.stack.weekly_trend(MOVEMENT, "2026-03-02", "2026-03-08", seq).await;
    assert_eq!(row(&trend, "2026-03-02")["meetings"], 1);
    assert_eq!(row(&trend, "2026-03-02")["active_participants"], 3, "a, b and the organiser o1");
    let (status, body) = secure.stack.query("/v1/status").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["watermark"], 1);
    // Service discovery answers too: the projector may reply on $SRV.
    assert_eq!(projector_instances(&secure.admin().await).await, 1);

    // A projector restarted since the meeting loaded it from its store: a
    // retraction of it removes the meeting's fact there.
    let mut secure = secure;
    secure.stack.stop_projector().await;
    secure.stack.start_projector().await;
    let retraction = event("r1", "event.retracted", MOVEMENT, "2026-03-06T09:00:00Z", json!({ "event_id": "m1" }));
    let (status, body) = secure.stack.post_event(&retraction).await;
    assert_eq!(status, 202, "{body}");
    let trend = secure.stack.weekly_trend(MOVEMENT, "2026-03-02", "2026-03-08", body["seq"].as_u64().unwrap()).await;
    assert_eq!(row(&trend, "2026-03-02")["meetings"], 0, "the loaded meeting was retracted");
    // A read as of a time asks the projector to find the sequence stored by
    // then in the stream, with a consumer of its own.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let path = format!("/v1/movements/{MOVEMENT}/trends?from=2026-03-02&to=2026-03-08&as_of={now}");
    let (status, as_of) = secure.stack.query(&path).await;
    assert_eq!(status, 200, "{as_of}");
    assert_eq!((as_of["watermark"].as_u64(), &row(&as_of, "2026-03-02")["meetings"]), (Some(2), &json!(0)));

    let log = secure.stack.nats.log();
    assert!(log.contains("Server is ready"), "the server's log is kept: {log}");
    assert!(!log.contains("Violation"), "a service used a subject it is not allowed: {log}");
    secure.stack.stop().await;
}

#[tokio::test]
async fn the_services_reconnect_with_their_own_credentials_after_nats_restarts() {
    let mut secure = SecureStack::start().await;
    let first = secure.post_meeting("m1").await;
    secure.stack.weekly_trend(MOVEMENT, "2026-03-02", "2026-03-08", first).await;

    // After a restart each service logs in again, the projector re-creates
    // its consumer and ingest its watch on the salts bucket: subjects the
    // first start does not use.
    secure.stack.nats.restart();
    let event = meeting("m2", MOVEMENT, "2026-03-05T09:00:00Z", &["a", "b"], "o1");
    let deadline = Instant::now() + Duration::from_secs(30);
    let seq = loop {
        let (status, body) = secure.stack.post_event(&event).await;
        if status == 202 {
            break body["seq"].as_u64().expect("an accepted event has a sequence");
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "ingest did not recover after NATS came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(seq, first + 1);
    let trend = secure.stack.weekly_trend(MOVEMENT, "2026-03-02", "2026-03-08", seq).await;
    assert_eq!(row(&trend, "2026-03-02")["meetings"], 2);

    // The log restarts with the server: this is the reconnection's.
    let log = secure.stack.nats.log();
    assert!(log.contains("Server is ready"), "the server's log is kept: {log}");
    assert!(!log.contains("Violation"), "a service used a subject it is not allowed after reconnecting: {log}");
    secure.stack.stop().await;
}

#[tokio::test]
async fn the_query_service_credentials_cannot_publish_an_event() {
    let secure = SecureStack::start().await;
    let (query, mut errors) = secure.connect_as("momentum-query", "query").await;
    assert_cannot_publish_events(&secure, &query, &mut errors).await;

    // Nor may it call the JetStream API at all, not even to read.
    assert!(jetstream_of(&query).get_stream(momentum_bus::STREAM_NAME).await.is_err());
    expect_server_error(&mut errors, "Permissions Violation for Publish to \"$JS.API.STREAM.INFO.MOMENTUM_EVENTS\"")
        .await;
    secure.stack.stop().await;
}

#[tokio::test]
async fn the_projector_credentials_cannot_publish_an_event() {
    let secure = SecureStack::start().await;
    let (projector, mut errors) = secure.connect_as("momentum-projector", "projector").await;
    assert_cannot_publish_events(&secure, &projector, &mut errors).await;

    // It reads the stream through consumers only: its ledger keeps what a
    // retraction removes, so it has no need to read an event by its
    // sequence, and may not; nor delete one.
    let stream = jetstream_of(&projector).get_stream_no_info(momentum_bus::STREAM_NAME).await.unwrap();
    assert!(stream.get_raw_message(1).await.is_err(), "the projector may not read an event by its sequence");
    expect_server_error(&mut errors, "Permissions Violation for Publish to \"$JS.API.STREAM.MSG.GET.MOMENTUM_EVENTS\"")
        .await;
    assert!(stream.delete_message(1).await.is_err());
    expect_server_error(
        &mut errors,
        "Permissions Violation for Publish to \"$JS.API.STREAM.MSG.DELETE.MOMENTUM_EVENTS\"",
    )
    .await;
    assert!(jetstream_of(&projector).delete_stream(momentum_bus::STREAM_NAME).await.is_err());
    expect_server_error(&mut errors, "Permissions Violation for Publish to \"$JS.API.STREAM.DELETE.MOMENTUM_EVENTS\"")
        .await;
    assert_eq!(secure.stored_messages().await, 2);
    secure.stack.stop().await;
}

#[tokio::test]
async fn the_ingest_credentials_cannot_subscribe_to_queries() {
    use futures::StreamExt;
    let secure = SecureStack::start().await;
    let (ingest, mut errors) = secure.connect_as("momentum-ingest", "ingest").await;
    let mut queries = ingest.subscribe("momentum.query.>").await.unwrap();
    ingest.flush().await.unwrap();
    expect_server_error(&mut errors, "Permissions Violation for Subscription to \"momentum.query.>\"").await;

    // A query still reaches only the projector.
    let admin = secure.admin().await;
    let status = projector_status(&admin).await.expect("the projector answers");
    assert_eq!(status["watermark"], 0);
    let overheard = tokio::time::timeout(Duration::from_millis(500), queries.next()).await;
    assert!(!matches!(overheard, Ok(Some(_))), "ingest received a query");

    // Nor may it publish an answer to anyone's inbox.
    ingest.publish("_INBOX.momentum-query.forged", "{}".into()).await.unwrap();
    ingest.flush().await.unwrap();
    expect_server_error(&mut errors, "Permissions Violation for Publish to \"_INBOX.momentum-query.forged\"").await;
    secure.stack.stop().await;
}

#[tokio::test]
async fn the_query_service_credentials_cannot_read_the_events_delivered_to_the_projector() {
    use futures::StreamExt;
    let secure = SecureStack::start().await;
    let (query, mut errors) = secure.connect_as("momentum-query", "query").await;
    let mut inboxes = query.subscribe("_INBOX.>").await.unwrap();
    query.flush().await.unwrap();
    expect_server_error(&mut errors, "Permissions Violation for Subscription to \"_INBOX.>\"").await;

    // The projector receives the event on its inbox; query sees nothing.
    let seq = secure.post_meeting("m1").await;
    secure.stack.weekly_trend(MOVEMENT, "2026-03-02", "2026-03-08", seq).await;
    let overheard = tokio::time::timeout(Duration::from_millis(500), inboxes.next()).await;
    assert!(!matches!(overheard, Ok(Some(_))), "query read another service's inbox");
    secure.stack.stop().await;
}

#[tokio::test]
async fn a_service_with_a_wrong_password_does_not_start() {
    let secure = SecureStack::start().await;
    let wrong = secure.secrets.path().join("wrong");
    std::fs::write(&wrong, "notThePassword").unwrap();
    let mut config = ingest_config(&secure.stack.nats.url());
    config.nats_connection =
        NatsConnection { user: Some("ingest".to_owned()), password_file: Some(wrong), ..NatsConnection::default() };
    let Err(error) = momentum_ingest::Ingest::start(&config).await else {
        panic!("ingest started with a wrong password")
    };
    assert!(error.to_string().contains("authorization violation"), "{error}");
    secure.stack.stop().await;
}

#[tokio::test]
async fn a_missing_password_file_stops_a_service_at_start_naming_the_file() {
    let secure = SecureStack::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut config = projector_config(&secure.stack.nats.url(), data.path().to_owned());
    config.nats_connection = NatsConnection {
        user: Some("projector".to_owned()),
        password_file: Some(PathBuf::from("/nonexistent/momentum/projector-password")),
        ..NatsConnection::default()
    };
    let Err(error) = momentum_projector::Projector::start(&config).await else { panic!("the projector started") };
    assert!(
        error.to_string().contains("could not read the NATS password file /nonexistent/momentum/projector-password"),
        "{error}"
    );
    secure.stack.stop().await;
}

/// Starts ingest against a server whose only user is given by `authorization`
/// (a nats-server config block) and posts one event through it.
async fn ingest_connects_and_publishes_with(authorization: &str, connection: NatsConnection) {
    let folder = tempfile::tempdir().unwrap();
    let config_file = folder.path().join("server.conf");
    std::fs::write(&config_file, format!("jetstream {{}}\n{authorization}\n")).unwrap();
    let nats = momentum_tests::momentum_testkit::NatsServer::start_with_config(&config_file, &[]);
    let mut config = momentum_tests::ingest_config(&nats.url());
    config.nats_connection = connection;
    let (ingest, url) = momentum_tests::spawn_ingest(&config).await;
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/events"))
        .bearer_auth(momentum_tests::ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(meeting("auth-1", MOVEMENT, "2026-03-05T09:00:00Z", &["a"], "o1").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
    ingest.stop().await;

    // Without the credentials the same server refuses the service.
    let mut anonymous = momentum_tests::ingest_config(&nats.url());
    anonymous.nats_connection = NatsConnection::default();
    assert!(momentum_ingest::Ingest::start(&anonymous).await.is_err(), "an unauthenticated service was let in");
}

#[tokio::test]
async fn a_service_authenticates_with_an_nkey_seed_from_a_file() {
    let key = nkeys::KeyPair::new_user();
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("seed"), format!("{}\n", key.seed().unwrap())).unwrap();
    let authorization = format!("authorization {{ users = [ {{ nkey: {} }} ] }}", key.public_key());
    let connection = NatsConnection { nkey_seed_file: Some(secrets.path().join("seed")), ..NatsConnection::default() };
    ingest_connects_and_publishes_with(&authorization, connection).await;
}

#[tokio::test]
async fn a_service_authenticates_with_a_token_from_a_file() {
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("token"), "nats-token-0123456789\n").unwrap();
    let connection = NatsConnection { token_file: Some(secrets.path().join("token")), ..NatsConnection::default() };
    ingest_connects_and_publishes_with("authorization { token: nats-token-0123456789 }", connection).await;
}
