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
/// The compose file's services, in the order they start: three NATS nodes, two ingest, the projector, two query.
const COMPOSE_SERVICES: [&str; 8] =
    ["nats-1", "nats-2", "nats-3", "ingest-1", "ingest-2", "projector", "query-1", "query-2"];
/// The compose file's containers, one a service.
const COMPOSE_CONTAINERS: usize = COMPOSE_SERVICES.len();
/// How long `podman-compose up -d` may take before the test starts what it created.
const UP_TIMEOUT: Duration = Duration::from_secs(120);

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

/// The three NATS nodes of the compose file.
const NATS_NODES: [&str; 3] = ["nats-1", "nats-2", "nats-3"];

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

    /// `podman-compose up -d`, then every container it created started.
    /// podman-compose 1.6 with podman 4.3 has once waited forever for a
    /// container it had not started (the projector, for query's
    /// `depends_on`): after `UP_TIMEOUT` it is stopped, and the containers
    /// it made are started here, in the compose file's order (`podman
    /// start` of a running container does nothing).
    async fn up(&self) {
        let compose = Command::new(Self::compose_program())
            .args(["-p", &self.project, "up", "-d"])
            .envs(self.environment.iter().map(|(name, value)| (*name, value.as_str())))
            .env("CONTAINERS_CONF", workspace_root().join("scripts/containers.conf"))
            .current_dir(self.folder.path().join("deploy/compose"))
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(UP_TIMEOUT, compose).await {
            Ok(output) => {
                let output = output.unwrap();
                assert!(output.status.success(), "podman-compose up: {}", String::from_utf8_lossy(&output.stderr));
            }
            Err(_) => eprintln!("podman-compose up did not return within {UP_TIMEOUT:?}: starting its containers"),
        }
        let existing = self.containers().await;
        for service in COMPOSE_SERVICES {
            let container = self.container(service);
            if existing.contains(&container) {
                podman(&["start", &container]).await;
            }
        }
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

    /// Waits until the deployment has `expected` containers and every one passes its health check.
    async fn wait_until_healthy(&self, expected: usize) {
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        loop {
            let containers = self.containers().await;
            let mut unhealthy = Vec::new();
            for container in &containers {
                if !healthy(container).await {
                    unhealthy.push(container.clone());
                }
            }
            if unhealthy.is_empty() && containers.len() == expected {
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

    async fn wait_until_every_container_is_healthy(&self) {
        self.wait_until_healthy(COMPOSE_CONTAINERS).await;
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
            .rev()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line["message"] == "ledger loaded")
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
    deployment.up().await;
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
    deployment.up().await;
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
    let head = std::process::Command::new("git").args(["rev-parse", "HEAD"]).current_dir(workspace_root()).output();
    if let Some(head) = head.ok().filter(|output| output.status.success()) {
        let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
        assert_eq!(labels["org.opencontainers.image.revision"], head.as_str(), "the image is of this revision");
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

/// Every document of a file of deploy/kubernetes.
fn manifests(file: &str) -> Vec<Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(workspace_root().join("deploy/kubernetes").join(file)).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).unwrap_or_else(|error| panic!("{file}: {error}")))
        .collect()
}

/// A workload of the manifests as the test plays it: its name, its
/// container's spec, and the host port its `http` port is published on.
struct Workload {
    name: String,
    container: Value,
    pod_security: Value,
    host_port: u16,
}

/// The manifests changed only where podman 4.3's `kube play` cannot run
/// them as they are (deploy/README.md lists each):
/// - no StatefulSet: the projector's becomes a Deployment of the same pod,
///   and its volume claim template a PersistentVolumeClaim;
/// - a `secret` volume makes it crash: the secrets folder is mounted instead;
/// - it publishes every `containerPort` on the host, so replicas of a pod
///   would take the same port: one replica each, on a free host port;
/// - the image is the one built here, as kustomize's `images` would set it.
fn playable(documents: Vec<Value>, secrets: &Path, workloads: &mut Vec<Workload>) -> Vec<Value> {
    let mut played = Vec::new();
    for mut document in documents {
        let kind = document["kind"].as_str().unwrap_or_default().to_owned();
        if kind != "Deployment" && kind != "StatefulSet" {
            played.push(document);
            continue;
        }
        let name = document["metadata"]["name"].as_str().unwrap().to_owned();
        let spec = document["spec"].as_object_mut().unwrap();
        spec.insert("replicas".to_owned(), 1.into());
        let claims = spec.remove("volumeClaimTemplates");
        spec.remove("serviceName");
        spec.remove("podManagementPolicy");
        let pod = &mut document["spec"]["template"]["spec"];
        for volume in pod["volumes"].as_array_mut().unwrap() {
            if volume.as_object_mut().unwrap().remove("secret").is_some() {
                volume["hostPath"] = serde_json::json!({ "path": secrets, "type": "Directory" });
            }
        }
        for claim in claims.as_ref().and_then(Value::as_array).into_iter().flatten() {
            let claim_name = format!("{name}-{}", claim["metadata"]["name"].as_str().unwrap());
            pod["volumes"].as_array_mut().unwrap().push(serde_json::json!({
                "name": claim["metadata"]["name"],
                "persistentVolumeClaim": { "claimName": claim_name },
            }));
            played.push(serde_json::json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": { "name": claim_name }, "spec": claim["spec"],
            }));
        }
        let containers = pod["containers"].as_array_mut().unwrap();
        assert_eq!(containers.len(), 1, "{name}: one container a pod");
        let container = &mut containers[0];
        container["image"] = MOMENTUM_IMAGE.into();
        let host_port = free_port();
        container["ports"][0]["hostPort"] = host_port.into();
        workloads.push(Workload {
            name: name.clone(),
            container: container.clone(),
            pod_security: pod["securityContext"].clone(),
            host_port,
        });
        document["kind"] = "Deployment".into();
        played.push(document);
    }
    played
}

/// Documents as one file `kube play` reads: JSON is YAML.
fn documents_file(documents: &[Value]) -> String {
    documents.iter().map(Value::to_string).collect::<Vec<_>>().join("\n---\n")
}

/// Stops what `kube play` started from `file`, and its volumes, when dropped.
struct KubePlay {
    file: PathBuf,
    volumes: Vec<String>,
}

impl Drop for KubePlay {
    fn drop(&mut self) {
        let podman = |arguments: &[&str]| {
            std::process::Command::new("podman")
                .args(arguments)
                .env("CONTAINERS_CONF", workspace_root().join("scripts/containers.conf"))
                .output()
        };
        let _ = podman(&["kube", "down", self.file.to_str().unwrap()]);
        for volume in &self.volumes {
            let _ = podman(&["volume", "rm", "--force", volume]);
        }
    }
}

#[tokio::test]
#[ignore = "needs podman and the images scripts/containers.sh builds; run by scripts/containers.sh test"]
async fn the_kubernetes_workloads_run_under_kube_play_hardened_with_their_probes_answering() {
    // NATS: the Helm chart cannot run here, so the compose file's three nodes stand in.
    let deployment = ComposeDeployment::new().await;
    let mut up = vec!["up", "-d"];
    up.extend(NATS_NODES);
    deployment.compose(&up).await;
    deployment.wait_until_healthy(NATS_NODES.len()).await;

    // The secrets, readable by the pods' user as a Secret volume would be.
    let folder = deployment.folder.path();
    let secrets = folder.join("kubernetes-secrets");
    run(Path::new("cp"), &["-r", "deploy/compose/secrets", secrets.to_str().unwrap()], &[], folder).await;
    run(Path::new("chmod"), &["755", secrets.to_str().unwrap()], &[], folder).await;

    // The ConfigMap kustomize generates, pointed at the stand-in NATS.
    let kustomization = manifests("kustomization.yaml").remove(0);
    let generator = &kustomization["configMapGenerator"][0];
    let mut data = serde_json::Map::new();
    for literal in generator["literals"].as_array().unwrap() {
        let (name, value) = literal.as_str().unwrap().split_once('=').unwrap();
        data.insert(name.to_owned(), value.into());
    }
    let nats_url = NATS_NODES.map(|node| format!("nats://{}:4222", deployment.container(node))).join(",");
    data.insert("MOMENTUM_NATS_URL".to_owned(), nats_url.into());
    let config_map = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": generator["name"] }, "data": data,
    });
    let config_map_file = folder.join("config-map.yaml");
    std::fs::write(&config_map_file, config_map.to_string()).unwrap();

    let mut workloads = Vec::new();
    let mut documents = Vec::new();
    for file in kustomization["resources"].as_array().unwrap() {
        documents.extend(playable(manifests(file.as_str().unwrap()), &secrets, &mut workloads));
    }
    let volumes = documents
        .iter()
        .filter(|document| document["kind"] == "PersistentVolumeClaim")
        .map(|claim| claim["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    let played = KubePlay { file: folder.join("played.yaml"), volumes };
    std::fs::write(&played.file, documents_file(&documents)).unwrap();
    let network = format!("{}_default", deployment.project);
    podman(&[
        "kube",
        "play",
        "--network",
        &network,
        "--configmap",
        config_map_file.to_str().unwrap(),
        played.file.to_str().unwrap(),
    ])
    .await;

    let names: Vec<&str> = workloads.iter().map(|workload| workload.name.as_str()).collect();
    assert_eq!(names, ["momentum-ingest", "momentum-projector", "momentum-query"], "the workloads played");
    let http = reqwest::Client::new();
    for workload in &workloads {
        // The kubelet's probes, asked as it would: each answers 200 in time.
        for probe in ["readinessProbe", "livenessProbe"] {
            let path = workload.container[probe]["httpGet"]["path"].as_str().expect("an HTTP probe");
            let url = format!("http://127.0.0.1:{}{path}", workload.host_port);
            let deadline = Instant::now() + HEALTHY_TIMEOUT;
            loop {
                let status = http.get(&url).send().await.map(|response| response.status().as_u16());
                if status.as_ref().is_ok_and(|status| *status == 200) {
                    break;
                }
                assert!(Instant::now() < deadline, "{}: {probe} {url} answered {status:?}", workload.name);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        // The hardened securityContext, as the container runs.
        let container = format!("{}-pod-0-{}", workload.name, workload.container["name"].as_str().unwrap());
        let inspect: Value = serde_json::from_str(&podman(&["inspect", &container]).await).unwrap();
        let running = &inspect[0];
        let pod_security = &workload.pod_security;
        let security = &workload.container["securityContext"];
        assert_eq!(pod_security["runAsNonRoot"], true, "{}", workload.name);
        let user = format!("{}:{}", pod_security["runAsUser"], pod_security["runAsGroup"]);
        assert_eq!(running["Config"]["User"], user.as_str(), "{}", workload.name);
        assert_eq!(running["HostConfig"]["ReadonlyRootfs"], security["readOnlyRootFilesystem"], "{}", workload.name);
        assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]), "{}", workload.name);
        let capabilities = running["EffectiveCaps"].as_array().map_or(0, Vec::len);
        assert_eq!(capabilities, 0, "{}: no capability: {}", workload.name, running["EffectiveCaps"]);
        assert_eq!(security["allowPrivilegeEscalation"], false, "{}", workload.name);
        let options = running["HostConfig"]["SecurityOpt"].as_array().unwrap();
        assert!(options.contains(&"no-new-privileges".into()), "{}: {options:?}", workload.name);
    }

    // The stack answers: an event posted to ingest is counted by query.
    let port = |name: &str| workloads.iter().find(|workload| workload.name == name).unwrap().host_port;
    let response = http
        .post(format!("http://127.0.0.1:{}/v1/events", port("momentum-ingest")))
        .bearer_auth(&deployment.admin_token)
        .header("content-type", "application/cloudevents+json")
        .body(hours("kube-1", "kube-check", "2026-03-04T10:00:00Z", "person", 2.0).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "accepted");
    let sequence = response.json::<Value>().await.unwrap()["seq"].as_u64().expect("the event's sequence");
    let listing = http
        .get(format!("http://127.0.0.1:{}/v1/movements?min_seq={sequence}", port("momentum-query")))
        .bearer_auth(&deployment.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(listing.status(), 200);
    let listing: Value = listing.json().await.unwrap();
    assert_eq!(listing["movements"], serde_json::json!([{ "movement": "kube-check", "events": 1 }]), "{listing}");
}
