//! The container deployment run for real: momentum's image and the compose
//! file, started with podman on this machine. `scripts/containers.sh test`
//! builds the images (`localhost/momentum:latest`, `localhost/nats:2.15.1`)
//! and runs these tests; they are ignored in the main run, which has no
//! images to start.
//!
//! podman here has no systemd to run health checks on a timer, so the tests
//! run each container's own check (`podman healthcheck run`) until it passes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use momentum_testkit::{free_port, workspace_binary, workspace_root};
use momentum_tests::hours;
use serde_json::Value;
use tokio::process::Command;

const MOMENTUM_IMAGE: &str = "localhost/momentum:latest";
const NATS_IMAGE: &str = "localhost/nats:2.15.1";
/// How long a deployment may take to report every container healthy.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(180);
/// The compose file's containers: three NATS nodes, two ingest, the projector, two query.
const COMPOSE_CONTAINERS: usize = 8;

/// Runs a command to its end; fails the test, with what it printed, unless it succeeds.
async fn run(program: &Path, arguments: &[&str], environment: &[(&str, String)], folder: &Path) -> String {
    let output = Command::new(program)
        .args(arguments)
        .envs(environment.iter().map(|(name, value)| (*name, value.as_str())))
        .env("CONTAINERS_CONF", workspace_root().join("scripts/containers.conf"))
        .current_dir(folder)
        .output()
        .await
        .unwrap_or_else(|error| panic!("{} could not start: {error}", program.display()));
    assert!(
        output.status.success(),
        "{} {} failed ({}):\n{}\n{}",
        program.display(),
        arguments.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn podman(arguments: &[&str]) -> String {
    run(Path::new("podman"), arguments, &[], &workspace_root()).await
}

/// Whether the container's own health check passes now.
async fn healthy(container: &str) -> bool {
    Command::new("podman")
        .args(["healthcheck", "run", container])
        .env("CONTAINERS_CONF", workspace_root().join("scripts/containers.conf"))
        .output()
        .await
        .is_ok_and(|output| output.status.success())
}

/// The compose deployment of one test: a copy of deploy/ with secrets of
/// its own, a project name of its own and free host ports. Dropping it
/// removes its containers and volumes.
struct ComposeDeployment {
    project: String,
    folder: tempfile::TempDir,
    environment: Vec<(&'static str, String)>,
    ingest_urls: [String; 2],
    query_urls: [String; 2],
    admin_token: String,
    http: reqwest::Client,
}

impl ComposeDeployment {
    async fn new() -> ComposeDeployment {
        let folder = tempfile::tempdir().unwrap();
        let root = workspace_root();
        run(Path::new("cp"), &["-r", root.join("deploy").to_str().unwrap(), "."], &[], folder.path()).await;
        let secrets = folder.path().join("deploy/compose/secrets");
        run(&root.join("scripts/make-secrets.sh"), &[secrets.to_str().unwrap()], &[], folder.path()).await;
        let admin_token = std::fs::read_to_string(secrets.join("admin.token")).unwrap();
        let ports = [free_port(), free_port(), free_port(), free_port()];
        let environment = vec![
            ("MOMENTUM_IMAGE", MOMENTUM_IMAGE.to_owned()),
            ("MOMENTUM_NATS_IMAGE", NATS_IMAGE.to_owned()),
            ("MOMENTUM_INGEST_1_PORT", ports[0].to_string()),
            ("MOMENTUM_INGEST_2_PORT", ports[1].to_string()),
            ("MOMENTUM_QUERY_1_PORT", ports[2].to_string()),
            ("MOMENTUM_QUERY_2_PORT", ports[3].to_string()),
        ];
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        ComposeDeployment {
            project: format!("momentum-test-{}", std::process::id()),
            folder,
            environment,
            ingest_urls: [url(ports[0]), url(ports[1])],
            query_urls: [url(ports[2]), url(ports[3])],
            admin_token,
            http: reqwest::Client::new(),
        }
    }

    fn compose_program() -> PathBuf {
        std::env::var_os("MOMENTUM_PODMAN_COMPOSE")
            .map(PathBuf::from)
            .expect("MOMENTUM_PODMAN_COMPOSE names podman-compose (scripts/containers.sh sets it)")
    }

    /// Runs `podman-compose -p <project> <arguments>` in the copy of deploy/compose.
    async fn compose(&self, arguments: &[&str]) -> String {
        let mut all = vec!["-p", &self.project];
        all.extend_from_slice(arguments);
        run(&Self::compose_program(), &all, &self.environment, &self.folder.path().join("deploy/compose")).await
    }

    /// The container of a compose service (podman-compose names them `<project>_<service>_1`).
    fn container(&self, service: &str) -> String {
        format!("{}_{service}_1", self.project)
    }

    async fn containers(&self) -> Vec<String> {
        let label = format!("label=io.podman.compose.project={}", self.project);
        podman(&["ps", "--all", "--filter", &label, "--format", "{{.Names}}"])
            .await
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits until every container of the deployment passes its health check.
    async fn wait_until_every_container_is_healthy(&self) {
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        loop {
            let containers = self.containers().await;
            let mut unhealthy = Vec::new();
            for container in &containers {
                if !healthy(container).await {
                    unhealthy.push(container.clone());
                }
            }
            if unhealthy.is_empty() && containers.len() == COMPOSE_CONTAINERS {
                return;
            }
            if Instant::now() > deadline {
                let mut logs = String::new();
                for container in &unhealthy {
                    let tail = podman(&["logs", "--tail", "20", container]).await;
                    logs.push_str(&format!("--- {container}\n{tail}\n"));
                }
                panic!("not healthy within {HEALTHY_TIMEOUT:?}: {unhealthy:?} of {containers:?}\n{logs}");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The stream as a NATS node reports it (`/jsz` of the node's monitoring port, read with the image's wget).
    async fn stream_report(&self, node: &str) -> Value {
        let url = "http://127.0.0.1:8222/jsz?streams=true&config=true";
        let text = podman(&["exec", &self.container(node), "wget", "-q", "-O", "-", url]).await;
        let report: Value = serde_json::from_str(&text).unwrap();
        report["account_details"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|account| account["stream_detail"].as_array().into_iter().flatten())
            .find(|stream| stream["name"] == momentum_bus::STREAM_NAME)
            .cloned()
            .unwrap_or_else(|| panic!("{node} reports no stream {}: {report}", momentum_bus::STREAM_NAME))
    }

    /// Waits until the stream is at three replicas and both followers are
    /// current; returns the stream's report. Only the stream's leader knows
    /// how far its followers are.
    async fn wait_until_the_stream_has_three_current_replicas(&self) -> Value {
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        loop {
            let leader = self.stream_report("nats-1").await["cluster"]["leader"].as_str().map(str::to_owned);
            let stream = self.stream_report(leader.as_deref().unwrap_or("nats-1")).await;
            let replicas = stream["cluster"]["replicas"].as_array().cloned().unwrap_or_default();
            let current = replicas.iter().filter(|replica| replica["current"] == true).count();
            if stream["config"]["num_replicas"] == 3 && current == 2 {
                return stream;
            }
            assert!(Instant::now() < deadline, "the stream never had three current replicas: {stream}");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Posts `events` as one batch to ingest replica `replica`, again and
    /// again until it is acknowledged (a retry is always safe); returns the
    /// largest sequence acknowledged.
    async fn post_until_acknowledged(&self, replica: usize, events: &[Value]) -> u64 {
        let url = format!("{}/v1/events", self.ingest_urls[replica]);
        let body = Value::from(events.to_vec()).to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let response = self
                .http
                .post(&url)
                .bearer_auth(&self.admin_token)
                .header("content-type", "application/cloudevents-batch+json")
                .body(body.clone())
                .timeout(Duration::from_secs(15))
                .send()
                .await;
            if let Ok(response) = response {
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                if status == 200 {
                    let answer: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(answer["rejected"], 0, "every event is valid: {answer}");
                    return answer["max_seq"].as_u64().unwrap();
                }
                assert!(status == 503 || status == 429, "only unavailability is retried: {status} {text}");
            }
            assert!(Instant::now() < deadline, "the batch was not acknowledged within a minute");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// GETs a read from query replica `replica` as the admin; fails unless it answers 200.
    async fn read(&self, replica: usize, path_and_query: &str) -> Value {
        let url = format!("{}{path_and_query}", self.query_urls[replica]);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let response = self.http.get(&url).bearer_auth(&self.admin_token).send().await.unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            if status == 200 {
                return serde_json::from_str(&text).unwrap();
            }
            // 503 until the projector answers (after a restart, say).
            assert!(status == 503 && Instant::now() < deadline, "{url}: {status} {text}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The movements with their event counts, and every movement's monthly
    /// trend, read once sequence `min_seq` is folded.
    async fn every_figure(&self, replica: usize, min_seq: u64) -> BTreeMap<String, Value> {
        let listing = self.read(replica, &format!("/v1/movements?min_seq={min_seq}")).await;
        let mut figures = BTreeMap::new();
        for movement in listing["movements"].as_array().expect("a list of movements") {
            let id = movement["movement"].as_str().expect("a movement id");
            let trend =
                format!("/v1/movements/{id}/trends?interval=month&from=2023-01-01&to=2026-12-31&min_seq={min_seq}");
            let mut figure = self.read(replica, &trend).await;
            // When it was read is no figure.
            figure.as_object_mut().unwrap().remove("watermark");
            figures.insert(id.to_owned(), figure);
        }
        figures.insert("(the movements)".to_owned(), listing["movements"].clone());
        figures
    }

    /// The `watermark` of the last "ledger loaded" line the projector logged: where it resumed from.
    async fn projector_resumed_at(&self) -> u64 {
        let logs = podman(&["logs", &self.container("projector")]).await;
        logs.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["message"] == "ledger loaded")
            .last()
            .and_then(|line| line["watermark"].as_u64())
            .expect("the projector logs where its ledger starts")
    }
}

impl Drop for ComposeDeployment {
    fn drop(&mut self) {
        let _ = std::process::Command::new(Self::compose_program())
            .args(["-p", &self.project, "down", "--volumes"])
            .envs(self.environment.iter().map(|(name, value)| (*name, value.as_str())))
            .env("CONTAINERS_CONF", workspace_root().join("scripts/containers.conf"))
            .current_dir(self.folder.path().join("deploy/compose"))
            .output();
    }
}

/// Hours logged by `count` people, one event each, a week apart in turn.
fn hours_of_many(count: usize) -> Vec<Value> {
    (0..count)
        .map(|index| {
            let day = chrono::NaiveDate::from_ymd_opt(2026, 1, 5).unwrap() + chrono::Days::new((index % 20) as u64 * 7);
            let time = format!("{day}T10:00:00Z");
            let hours_logged = 1.0 + (index % 4) as f64;
            hours(&format!("compose-{index}"), "compose-check", &time, &format!("person-{index}"), hours_logged)
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs podman and the images scripts/containers.sh builds; run by scripts/containers.sh test"]
async fn the_compose_deployment_starts_healthy_keeps_every_acknowledged_event_and_every_figure() {
    let deployment = ComposeDeployment::new().await;
    deployment.compose(&["up", "-d"]).await;
    deployment.wait_until_every_container_is_healthy().await;

    let stream = deployment.wait_until_the_stream_has_three_current_replicas().await;

    // The momentum containers run as the image's non-root user.
    for service in ["ingest-1", "ingest-2", "projector", "query-1", "query-2"] {
        let user = podman(&["top", &deployment.container(service), "huser"]).await;
        assert_eq!(user.lines().nth(1).map(str::trim), Some("65532"), "{service} runs as 65532: {user}");
    }

    // The demo data, through the published port of the first ingest replica.
    let demo = run(
        &workspace_binary("momentum-dev"),
        &["demo", "--years", "1", "--ingest-url", &deployment.ingest_urls[0]],
        &[("MOMENTUM_TOKEN", deployment.admin_token.clone())],
        Path::new("."),
    )
    .await;
    assert!(demo.contains(" 0 rejected"), "{demo}");

    // Batches through both ingest replicas, and the stream's leader stopped
    // a third of the way through: every acknowledged event is kept, once.
    let events = hours_of_many(3_000);
    let leader = stream["cluster"]["leader"].as_str().expect("a leader").to_owned();
    let mut last_sequence = 0;
    for (index, batch) in events.chunks(50).enumerate() {
        if index == 20 {
            podman(&["stop", "--time", "0", &deployment.container(&leader)]).await;
        }
        last_sequence = last_sequence.max(deployment.post_until_acknowledged(index % 2, batch).await);
    }
    podman(&["start", &deployment.container(&leader)]).await;
    let trend = deployment
        .read(
            1,
            &format!(
                "/v1/movements/compose-check/trends?interval=year&from=2026-01-01&to=2026-12-31&min_seq={last_sequence}"
            ),
        )
        .await;
    let hours_posted: f64 = events.iter().map(|event| event["data"]["hours"].as_f64().unwrap()).sum();
    let row = &trend["series"][0];
    assert_eq!(row["volunteer_hours"].as_f64(), Some(hours_posted), "{trend}");
    assert_eq!(row["active_participants"].as_u64(), Some(events.len() as u64), "{trend}");
    deployment.wait_until_every_container_is_healthy().await;
    let figures = deployment.every_figure(0, last_sequence).await;
    let movements = figures["(the movements)"].as_array().unwrap();
    assert!(movements.len() >= 2, "the demo's movements and the check's: {movements:?}");
    let check = movements.iter().find(|movement| movement["movement"] == "compose-check");
    assert_eq!(check.map(|movement| &movement["events"]), Some(&Value::from(events.len())), "{movements:?}");
    assert_eq!(figures, deployment.every_figure(1, last_sequence).await, "both query replicas answer the same");

    // A restarted projector resumes from its volume.
    podman(&["restart", &deployment.container("projector")]).await;
    deployment.wait_until_every_container_is_healthy().await;
    assert_eq!(deployment.projector_resumed_at().await, last_sequence, "the projector resumed where it was");
    assert_eq!(figures, deployment.every_figure(0, last_sequence).await, "the same figures after the restart");

    // Down and up again: the volumes keep the stream and the store.
    deployment.compose(&["down"]).await;
    assert!(deployment.containers().await.is_empty(), "down removes every container");
    deployment.compose(&["up", "-d"]).await;
    deployment.wait_until_every_container_is_healthy().await;
    assert_eq!(deployment.projector_resumed_at().await, last_sequence, "the store survived down and up");
    assert_eq!(figures, deployment.every_figure(1, last_sequence).await, "the same figures after down and up");
}

/// The binaries the image ships, the services and the operators' tool: no developer tool, no test kit.
const IMAGE_BINARIES: [&str; 4] = [
    "usr/local/bin/momentum",
    "usr/local/bin/momentum-ingest",
    "usr/local/bin/momentum-projector",
    "usr/local/bin/momentum-query",
];

#[tokio::test]
#[ignore = "needs podman and the images scripts/containers.sh builds; run by scripts/containers.sh test"]
async fn the_image_holds_only_the_services_runs_as_nonroot_has_no_shell_and_is_labelled() {
    let inspect: Value = serde_json::from_str(&podman(&["image", "inspect", MOMENTUM_IMAGE]).await).unwrap();
    let image = &inspect[0];
    let size_bytes = image["Size"].as_u64().expect("the image's size");
    let config = &image["Config"];
    assert_eq!(config["User"], "nonroot:nonroot", "{config}");
    assert_eq!(image["Healthcheck"]["Test"], serde_json::json!(["CMD", "momentum", "probe"]), "{image}");
    assert!(config["Volumes"].is_null(), "no anonymous volume for every container: {config}");
    let labels = &image["Labels"];
    for label in ["source", "version", "revision", "licenses"] {
        let value = labels[format!("org.opencontainers.image.{label}")].as_str().unwrap_or_default();
        assert!(!value.is_empty() && value != "unknown", "org.opencontainers.image.{label} is set: {labels}");
    }

    // Every file of the image, from a container of it exported.
    let folder = tempfile::tempdir().unwrap();
    let archive = folder.path().join("image.tar");
    let container = format!("momentum-hygiene-{}", std::process::id());
    podman(&["create", "--name", &container, MOMENTUM_IMAGE]).await;
    podman(&["export", "--output", archive.to_str().unwrap(), &container]).await;
    podman(&["rm", &container]).await;
    let listing = run(Path::new("tar"), &["-tvf", archive.to_str().unwrap()], &[], folder.path()).await;
    let mut executables: Vec<&str> = listing
        .lines()
        .filter(|line| line.starts_with('-') && line.as_bytes().get(3) == Some(&b'x'))
        .filter_map(|line| line.split_whitespace().last())
        .filter(|path| !path.ends_with(".so") && !path.contains(".so."))
        .collect();
    executables.sort_unstable();
    // glibc's loader and its helpers are the only other executables.
    executables.retain(|path| !path.starts_with("usr/lib/") && !path.starts_with("usr/libexec/"));
    assert_eq!(executables, IMAGE_BINARIES, "the image's programs: no shell, no developer tool");
    for shell in ["sh", "bash", "dash", "busybox"] {
        let found = listing
            .lines()
            .filter_map(|line| line.split_whitespace().last())
            .any(|path| path.rsplit('/').next() == Some(shell));
        assert!(!found, "the image holds no {shell}");
    }
    let shell = Command::new("podman")
        .args(["run", "--rm", "--entrypoint", "sh", MOMENTUM_IMAGE, "-c", "true"])
        .env("CONTAINERS_CONF", workspace_root().join("scripts/containers.conf"))
        .output()
        .await
        .unwrap();
    assert!(!shell.status.success(), "no shell runs in the image");

    // Each binary runs on the image's base; the operators' tool has no developer commands.
    for binary in IMAGE_BINARIES {
        let name = binary.rsplit('/').next().unwrap();
        let help = podman(&["run", "--rm", MOMENTUM_IMAGE, name, "--help"]).await;
        assert!(help.contains("Usage"), "{name} --help: {help}");
        if name == "momentum" {
            for developer_command in ["demo", "bench"] {
                assert!(!help.contains(&format!("  {developer_command} ")), "{help}");
            }
        }
    }
    println!(
        "image {MOMENTUM_IMAGE}: {:.1} MB, user {}, {} files, programs {executables:?}, labels {labels}",
        size_bytes as f64 / 1e6,
        config["User"],
        listing.lines().count()
    );
}
