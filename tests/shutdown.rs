//! Graceful shutdown on SIGTERM, with the services as real processes (what
//! a container runtime stops): each stops accepting, finishes what it has
//! in hand, commits and drains, and exits 0 within a bounded time, and
//! nothing that was acknowledged is lost.

use std::process::Command;
use std::time::{Duration, Instant};

use momentum_testkit::{ChildProcess, NatsServer, free_port, wait_for_port, workspace_binary};
use momentum_tests::{ADMIN_TOKEN, hours, test_secrets};
use serde_json::Value;

/// How long a service may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

fn service(binary: &str, nats_url: &str, http_port: u16) -> Command {
    let mut command = Command::new(workspace_binary(binary));
    command
        .env("MOMENTUM_NATS_URL", nats_url)
        .env("MOMENTUM_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env("MOMENTUM_AUTH_FILE", test_secrets().join("auth.toml"))
        .env("MOMENTUM_PSEUDONYM_KEY_FILE", test_secrets().join("pseudonym-keys.toml"))
        .env("RUST_LOG", "warn");
    command
}

fn start(command: &mut Command, http_port: u16) -> ChildProcess {
    let child = ChildProcess::spawn(command);
    assert!(wait_for_port(([127, 0, 0, 1], http_port).into(), Duration::from_secs(20)), "the service listens");
    child
}

/// Waits until a projector answers `/readyz` with 200: it registers its
/// query endpoints only once caught up, and on a loaded machine the
/// catch-up outlasts the moment its health port opens.
async fn wait_until_ready(http: &reqwest::Client, http_port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = http.get(format!("http://127.0.0.1:{http_port}/readyz")).send().await;
        if response.is_ok_and(|response| response.status() == 200) {
            return;
        }
        assert!(Instant::now() < deadline, "the projector became ready within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops a child with SIGTERM on a blocking thread and says how it ended.
async fn terminate(mut child: ChildProcess) -> (Option<std::process::ExitStatus>, Duration) {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let status = child.terminate(STOP_TIMEOUT);
        (status, started.elapsed())
    })
    .await
    .unwrap()
}

async fn last_sequence(nats_url: &str) -> u64 {
    let client = async_nats::connect(nats_url).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let mut stream = jetstream.get_stream(momentum_bus::STREAM_NAME).await.unwrap();
    stream.info().await.unwrap().state.last_sequence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_finishes_its_requests_on_sigterm_and_every_acknowledged_event_is_stored() {
    let nats = NatsServer::start();
    let port = free_port();
    let ingest = start(&mut service("momentum-ingest", &nats.url(), port), port);

    // Several clients post batches until the service stops answering.
    let url = format!("http://127.0.0.1:{port}/v1/events");
    let mut clients = Vec::new();
    for client_index in 0..4 {
        let url = url.clone();
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut acknowledged = 0u64;
            for batch_index in 0.. {
                let batch: Vec<Value> = (0..50)
                    .map(|index| {
                        let id = format!("c{client_index}-b{batch_index}-e{index}");
                        hours(&id, "alpha", "2026-03-04T10:00:00Z", &format!("p{index}"), 1.0)
                    })
                    .collect();
                let sent = http
                    .post(&url)
                    .bearer_auth(ADMIN_TOKEN)
                    .header("content-type", "application/cloudevents-batch+json")
                    .body(Value::from(batch).to_string())
                    .send()
                    .await;
                let Ok(response) = sent else { break };
                if response.status() != 200 {
                    break;
                }
                let body: Value = response.json().await.unwrap();
                acknowledged += body["accepted"].as_u64().unwrap() + body["duplicates"].as_u64().unwrap();
            }
            acknowledged
        }));
    }
    // Let the clients get going, then stop ingest while they post.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (status, took) = terminate(ingest).await;
    let status = status.expect("ingest stopped within the bound");
    assert!(status.success(), "ingest exits 0 on SIGTERM: {status}");
    let mut acknowledged = 0;
    for client in clients {
        acknowledged += client.await.unwrap();
    }
    assert!(acknowledged > 0, "the clients posted before the stop");
    // Every acknowledged event is in the stream, and nothing else: each id
    // was posted once.
    assert_eq!(last_sequence(&nats.url()).await, acknowledged, "stopped in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_commits_its_checkpoint_on_sigterm_and_resumes_from_it() {
    let nats = NatsServer::start();
    let ingest_port = free_port();
    let ingest = start(&mut service("momentum-ingest", &nats.url(), ingest_port), ingest_port);
    let http = reqwest::Client::new();
    for batch_index in 0..6 {
        let batch: Vec<Value> = (0..500)
            .map(|index| hours(&format!("b{batch_index}-{index}"), "alpha", "2026-03-04T10:00:00Z", "p", 0.5))
            .collect();
        let response = http
            .post(format!("http://127.0.0.1:{ingest_port}/v1/events"))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/cloudevents-batch+json")
            .body(Value::from(batch).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let last = last_sequence(&nats.url()).await;
    assert_eq!(last, 3000);

    // The projector is stopped mid catch-up (small batches keep it busy).
    let data = tempfile::tempdir().unwrap();
    let projector_port = free_port();
    let mut command = service("momentum-projector", &nats.url(), projector_port);
    command.env("MOMENTUM_DATA_DIR", data.path()).env("MOMENTUM_BATCH_SIZE_MAX", "5");
    let projector = start(&mut command, projector_port);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, took) = terminate(projector).await;
    let status = status.expect("the projector stopped within the bound");
    assert!(status.success(), "the projector exits 0 on SIGTERM: {status}");

    // What it committed is a prefix of the stream, and it resumes from it.
    let checkpoint = momentum_store::Store::open(data.path()).unwrap().watermark().unwrap();
    assert!(checkpoint <= last, "checkpoint {checkpoint} of {last}, stopped in {took:?}");
    let projector = start(&mut command, projector_port);
    wait_until_ready(&http, projector_port).await;
    let query_port = free_port();
    let query = start(&mut service("momentum-query", &nats.url(), query_port), query_port);
    let response = http
        .get(format!("http://127.0.0.1:{query_port}/v1/status?min_seq={last}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let status_body: Value = response.json().await.unwrap();
    assert_eq!(status_body["watermark"], last, "{status_body}");
    assert_eq!(
        status_body["applied_since_start"],
        last - checkpoint,
        "the restarted projector applied only what its checkpoint did not cover"
    );
    let trend: Value = http
        .get(format!(
            "http://127.0.0.1:{query_port}/v1/movements/alpha/trends?interval=week&from=2026-03-02&to=2026-03-08"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(trend["series"][0]["volunteer_hours"], 1500.0, "3000 half-hours, each counted once");

    for child in [projector, query, ingest] {
        let (status, _) = terminate(child).await;
        assert!(status.expect("stopped within the bound").success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_answers_the_read_it_is_waiting_on_before_it_exits_on_sigterm() {
    let nats = NatsServer::start();
    let ingest_port = free_port();
    let ingest = start(&mut service("momentum-ingest", &nats.url(), ingest_port), ingest_port);
    let data = tempfile::tempdir().unwrap();
    let projector_port = free_port();
    let mut command = service("momentum-projector", &nats.url(), projector_port);
    command.env("MOMENTUM_DATA_DIR", data.path());
    let projector = start(&mut command, projector_port);
    let query_port = free_port();
    let query = start(&mut service("momentum-query", &nats.url(), query_port), query_port);
    let http = reqwest::Client::new();
    let event = hours("first", "alpha", "2026-03-04T10:00:00Z", "p", 1.0);
    let response = http
        .post(format!("http://127.0.0.1:{ingest_port}/v1/events"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    // A read that waits for a sequence not yet written (up to 5 s) is in
    // flight when query is told to stop; it still gets its answer.
    let waiting = tokio::spawn({
        let http = http.clone();
        async move {
            http.get(format!("http://127.0.0.1:{query_port}/v1/status?min_seq=2"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .map(|response| response.status().as_u16())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = tokio::spawn(terminate(query));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = hours("second", "alpha", "2026-03-04T11:00:00Z", "q", 1.0);
    let response = http
        .post(format!("http://127.0.0.1:{ingest_port}/v1/events"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(second.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(waiting.await.unwrap().expect("the waiting read is answered, not cut off"), 200);
    let (status, _) = stopping.await.unwrap();
    assert!(status.expect("query stopped within the bound").success());
    // A new connection after the stop is refused.
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", query_port)).await.is_err());
    for child in [projector, ingest] {
        let (status, _) = terminate(child).await;
        assert!(status.expect("stopped within the bound").success());
    }
}
