//! Test support: a real nats-server per test, on a dynamic port with a
//! temporary JetStream store, killed when dropped.
//!
//! The binary is found the way the README's scripts find it:
//! `$MOMENTUM_NATS_SERVER`, else the pinned build under `.tools/` that
//! `scripts/ensure-nats-server.sh` installs, else `nats-server` on `PATH`.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The nats-server version the project pins.
pub const NATS_SERVER_VERSION: &str = "2.15.1";

/// How long a started server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the workspace root exists")
}

/// The nats-server binary tests run.
pub fn nats_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("MOMENTUM_NATS_SERVER") {
        return PathBuf::from(path);
    }
    // Outside a checkout (the bench in a container image) the workspace
    // this was built in is gone: look on PATH then, rather than fail.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let pinned = workspace.join(format!(".tools/nats-server-{NATS_SERVER_VERSION}/bin/nats-server"));
    if pinned.exists() {
        return pinned;
    }
    PathBuf::from("nats-server")
}

/// The path of a binary of this workspace built in the same profile as the
/// running test, e.g. `momentum-projector`. The README's test command builds
/// them before running the tests.
pub fn workspace_binary(name: &str) -> PathBuf {
    let test_executable = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let profile_folder = test_executable.parent().and_then(Path::parent).expect("tests run from target/<profile>/deps");
    let binary = profile_folder.join(name);
    // A `cargo build` another test runs (the README's stack command) may link
    // a binary into place again: for a moment the path is gone. Wait that
    // out; a binary never built stays missing.
    let deadline = std::time::Instant::now() + BINARY_RELINK_WAIT;
    while !binary.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        binary.exists(),
        "{} is missing: build the workspace's binaries first (cargo build --workspace --bins)",
        binary.display()
    );
    binary
}

/// How long [`workspace_binary`] waits for a binary another build is linking again.
const BINARY_RELINK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A free TCP port on the loopback interface, as the OS hands it out.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("can bind an ephemeral port").local_addr().unwrap().port()
}

/// Waits until something accepts TCP connections at `address`.
pub fn wait_for_port(address: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The name of the NATS server at `address`, from the INFO line a server
/// sends first on every connection; `None` if none arrives within a second.
fn server_name_at(address: SocketAddr) -> Option<String> {
    let stream = TcpStream::connect_timeout(&address, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    let (_, after) = line.strip_prefix("INFO ")?.split_once("\"server_name\":\"")?;
    let (name, _) = after.split_once('"')?;
    Some(name.to_owned())
}

/// How many ports a new server is tried on before the test fails.
const PORT_ATTEMPTS_MAX: usize = 3;

/// Why a server did not start.
enum StartFailure {
    /// It exited at once, most likely because its port was taken.
    Exited,
    /// It refused its configuration or did not listen in time.
    Refused(String),
}

impl StartFailure {
    fn panic(self) -> ! {
        match self {
            StartFailure::Exited => panic!("nats-server exited at start (its port was taken, or it cannot run)"),
            StartFailure::Refused(what) => panic!("nats-server did not start listening on {what}"),
        }
    }
}

/// A running nats-server with JetStream, owned by one test.
pub struct NatsServer {
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
    /// A configuration file passed with `--config`, and the environment
    /// variables it refers to (nats-server resolves `$NAME` from them).
    config: Option<(PathBuf, Vec<(String, String)>)>,
}

impl std::fmt::Debug for NatsServer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("NatsServer").field("port", &self.port).finish_non_exhaustive()
    }
}

impl NatsServer {
    /// Starts a server on a free port with an empty temporary store.
    pub fn start() -> NatsServer {
        let store = tempfile::Builder::new().prefix("momentum-nats-").tempdir().expect("can make a temporary folder");
        let mut server = NatsServer { port: free_port(), store, child: None, config: None };
        server.spawn_on_a_free_port();
        server
    }

    /// Starts a server with a configuration file, such as
    /// `deploy/nats/secure.conf`, and the environment variables the file
    /// refers to. The address, port, JetStream and store folder still come
    /// from the command line (which takes precedence over the file), so the
    /// file must not set `store_dir`.
    pub fn start_with_config(config_file: &Path, environment: &[(&str, &str)]) -> NatsServer {
        let store = tempfile::Builder::new().prefix("momentum-nats-").tempdir().expect("can make a temporary folder");
        let environment = environment.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
        let config = Some((config_file.to_owned(), environment));
        let mut server = NatsServer { port: free_port(), store, child: None, config };
        server.spawn_on_a_free_port();
        server
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Where a server started with a configuration file writes its log.
    fn log_file(&self) -> PathBuf {
        self.store.path().join("nats-server.log")
    }

    /// What a server started with [`NatsServer::start_with_config`] has
    /// logged so far, e.g. to look for permission violations; empty for
    /// other servers, whose output is discarded.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// Starts a new server. A free port can be taken by another test between
    /// being found and being bound, and the server then exits at once: it
    /// is tried again on another port, at most [`PORT_ATTEMPTS_MAX`] times.
    fn spawn_on_a_free_port(&mut self) {
        for _ in 1..PORT_ATTEMPTS_MAX {
            match self.try_spawn() {
                Ok(()) => return,
                Err(StartFailure::Exited) => {
                    self.child = None;
                    self.port = free_port();
                }
                Err(failure) => failure.panic(),
            }
        }
        self.spawn();
    }

    fn spawn(&mut self) {
        if let Err(failure) = self.try_spawn() {
            failure.panic();
        }
    }

    fn try_spawn(&mut self) -> Result<(), StartFailure> {
        assert!(self.child.is_none(), "the server is already running");
        let binary = nats_server_binary();
        let mut command = Command::new(&binary);
        // A name no other test's server has, to tell this server apart from
        // one that another test started on the same port first.
        static SERVERS_STARTED: AtomicU64 = AtomicU64::new(0);
        let name = format!("momentum-test-{}-{}", std::process::id(), SERVERS_STARTED.fetch_add(1, Ordering::Relaxed));
        command
            .args(["--server_name", &name])
            .args(["--addr", "127.0.0.1", "--port", &self.port.to_string(), "--jetstream", "--store_dir"])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((config_file, environment)) = &self.config {
            // A configuration can be wrong in ways only the server sees, so
            // its log is kept for the failure message below.
            let log = std::fs::File::create(self.log_file()).expect("can create the server's log file");
            command.arg("--config").arg(config_file).envs(environment.iter().cloned()).stderr(log);
        }
        let child = command.spawn().unwrap_or_else(|error| {
            panic!(
                "cannot start {}: {error}; run scripts/ensure-nats-server.sh or set MOMENTUM_NATS_SERVER",
                binary.display()
            )
        });
        self.child = Some(child);
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        // A server that exits at once (a configuration it refuses) fails
        // the test at once, with its log, instead of after the timeout.
        loop {
            if wait_for_port(address, Duration::from_millis(100)) {
                match server_name_at(address) {
                    Some(found) if found == name => break,
                    // Another test's server holds the port, and this one
                    // will fail to bind it: try another port. Without this
                    // check the test went on with the other server, and
                    // failed once that test stopped it.
                    Some(_) => {
                        self.kill();
                        return Err(StartFailure::Exited);
                    }
                    None => {}
                }
            }
            let exited = self.child.as_mut().and_then(|child| child.try_wait().ok().flatten());
            let log = || std::fs::read_to_string(self.log_file()).unwrap_or_default();
            match exited {
                // Another process took the port (or, with a configuration,
                // the server refused it: the log says which).
                Some(_) if self.config.is_none() || log().contains("address already in use") => {
                    return Err(StartFailure::Exited);
                }
                Some(status) => return Err(StartFailure::Refused(format!("{address} ({status})\n{}", log()))),
                None if Instant::now() >= deadline => {
                    return Err(StartFailure::Refused(format!("{address} within {START_TIMEOUT:?}\n{}", log())));
                }
                None => {}
            }
        }
        Ok(())
    }

    /// The URL clients connect with, `nats://127.0.0.1:<port>`; it stays the same across [`NatsServer::restart`].
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port the server listens on, on 127.0.0.1; it stays the same across [`NatsServer::restart`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL); its store stays for [`NatsServer::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How long a started cluster may take to elect its JetStream meta leader.
const CLUSTER_START_TIMEOUT: Duration = Duration::from_secs(30);

/// A cluster of nats-servers with JetStream, on loopback ports, owned by one
/// test. Each node has its own temporary store, server name, client,
/// cluster and monitoring port, and routes to every other node. Nodes can
/// be killed and restarted one at a time; dropping the cluster kills them all.
pub struct NatsCluster {
    /// Unique to this cluster, so that a route to a port another test's
    /// cluster took is refused (the cluster names differ) instead of
    /// joining the two clusters.
    name: String,
    nodes: Vec<ClusterNode>,
}

struct ClusterNode {
    server_name: String,
    port: u16,
    cluster_port: u16,
    monitor_port: u16,
    /// Holds the node's JetStream store (`store/`) and its log (`nats.log`).
    folder: tempfile::TempDir,
    child: Option<Child>,
}

impl ClusterNode {
    fn new(cluster_name: &str, index: usize) -> ClusterNode {
        ClusterNode {
            server_name: format!("{cluster_name}-{index}"),
            port: free_port(),
            cluster_port: free_port(),
            monitor_port: free_port(),
            folder: tempfile::Builder::new()
                .prefix(&format!("momentum-nats-{index}-"))
                .tempdir()
                .expect("can make a temporary folder"),
            child: None,
        }
    }
}

impl std::fmt::Debug for NatsCluster {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes: Vec<(&str, u16)> = self.nodes.iter().map(|node| (node.server_name.as_str(), node.port)).collect();
        formatter.debug_struct("NatsCluster").field("nodes", &nodes).finish_non_exhaustive()
    }
}

impl NatsCluster {
    /// The cluster's name, as every node is started with it: `momentum-test-`
    /// then numbers no other test's cluster has.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts `size` nodes and waits until every one reports itself healthy,
    /// that is, JetStream is on and the cluster has a meta leader.
    pub fn start(size: usize) -> NatsCluster {
        assert!(size >= 1, "a cluster has at least one node");
        // A free port can be taken by someone else before a node binds it;
        // the node then exits, and the cluster is tried again on new ports.
        let mut failures = Vec::new();
        for _ in 0..3 {
            static CLUSTERS_STARTED: AtomicU64 = AtomicU64::new(0);
            let name =
                format!("momentum-test-{}-c{}", std::process::id(), CLUSTERS_STARTED.fetch_add(1, Ordering::Relaxed));
            let nodes = (0..size).map(|index| ClusterNode::new(&name, index)).collect();
            let mut cluster = NatsCluster { name, nodes };
            match (0..size).try_for_each(|index| cluster.spawn(index)) {
                Ok(()) => {
                    for index in 0..size {
                        assert!(
                            cluster.wait_until_healthy(index, CLUSTER_START_TIMEOUT),
                            "{} did not become healthy; its log:\n{}",
                            cluster.nodes[index].server_name,
                            cluster.log(index)
                        );
                    }
                    return cluster;
                }
                Err(failure) => failures.push(failure),
            }
        }
        panic!("the cluster did not start: {failures:#?}")
    }

    /// Starts one node and waits until it accepts connections; says why not
    /// if it exits or does not listen in time.
    fn spawn(&mut self, index: usize) -> Result<(), String> {
        let routes: Vec<String> = (self.nodes.iter().enumerate())
            .filter(|(other, _)| *other != index)
            .map(|(_, node)| format!("nats://127.0.0.1:{}", node.cluster_port))
            .collect();
        let node = &mut self.nodes[index];
        assert!(node.child.is_none(), "{} is already running", node.server_name);
        let log = node.folder.path().join("nats.log");
        let binary = nats_server_binary();
        let mut command = Command::new(&binary);
        command
            .args(["--addr", "127.0.0.1", "--port", &node.port.to_string()])
            .args(["--http_port", &node.monitor_port.to_string()])
            .args(["--server_name", &node.server_name, "--cluster_name", &self.name])
            .args(["--cluster", &format!("nats://127.0.0.1:{}", node.cluster_port)])
            .args(["--routes", &routes.join(",")])
            .args(["--jetstream", "--store_dir"])
            .arg(node.folder.path().join("store"))
            .arg("--log")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().unwrap_or_else(|error| {
            panic!(
                "cannot start {}: {error}; run scripts/ensure-nats-server.sh or set MOMENTUM_NATS_SERVER",
                binary.display()
            )
        });
        let child = node.child.insert(child);
        let address = SocketAddr::from(([127, 0, 0, 1], node.port));
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                node.child = None;
                return Err(format!("{} exited ({status}); its log:\n{}", node.server_name, read_log(&log)));
            }
            match server_name_at(address) {
                Some(found) if found == node.server_name => return Ok(()),
                // Another test's server took the port first; this node will
                // fail to bind it, and the cluster is tried on new ports.
                Some(found) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    node.child = None;
                    return Err(format!("{address} is another test's server ({found})"));
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        Err(format!("{} did not start listening on {address}; its log:\n{}", node.server_name, read_log(&log)))
    }

    /// How many nodes the cluster has, running or not.
    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// Every node's client URL, comma-separated, as the services take them.
    pub fn url(&self) -> String {
        (0..self.nodes.len()).map(|index| self.node_url(index)).collect::<Vec<_>>().join(",")
    }

    /// The client URL of one node.
    pub fn node_url(&self, index: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[index].port)
    }

    /// The base URL of one node's monitoring endpoints (`/healthz`, `/jsz`, ...).
    pub fn monitor_url(&self, index: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[index].monitor_port)
    }

    /// The `server_name` of one node, as JetStream names peers and leaders.
    pub fn server_name(&self, index: usize) -> &str {
        &self.nodes[index].server_name
    }

    /// The node with the given `server_name`.
    pub fn index_of(&self, server_name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.server_name == server_name)
    }

    /// Whether the node's process is running (it has not been killed).
    pub fn is_running(&self, index: usize) -> bool {
        self.nodes[index].child.is_some()
    }

    /// Kills one node (SIGKILL); its store stays for [`NatsCluster::restart`].
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts one node again on the same ports and store, and waits until it
    /// accepts connections (not until it has caught up: see
    /// [`NatsCluster::wait_until_healthy`]).
    pub fn restart(&mut self, index: usize) {
        self.kill(index);
        if let Err(failure) = self.spawn(index) {
            panic!("could not restart a node: {failure}");
        }
    }

    /// Waits, at most `timeout`, until the node's `/healthz` answers 200:
    /// it is running, JetStream is on, it knows the meta leader and its
    /// streams are current.
    pub fn wait_until_healthy(&self, index: usize, timeout: Duration) -> bool {
        let address = SocketAddr::from(([127, 0, 0, 1], self.nodes[index].monitor_port));
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if http_status(address, "/healthz") == Some(200) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The node's log so far, for failure messages.
    pub fn log(&self, index: usize) -> String {
        read_log(&self.nodes[index].folder.path().join("nats.log"))
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The status code of a plain HTTP/1.0 GET, or `None` if nothing answered.
fn http_status(address: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let status_line = String::from_utf8_lossy(&response).lines().next()?.to_owned();
    status_line.split_whitespace().nth(1)?.parse().ok()
}

/// A child process that is killed when dropped, so a failing test leaves
/// no service running behind it.
#[derive(Debug)]
pub struct ChildProcess(Child);

impl ChildProcess {
    /// Spawns `command`, panicking with the command and the error if it cannot be started.
    pub fn spawn(command: &mut Command) -> ChildProcess {
        ChildProcess(command.spawn().unwrap_or_else(|error| panic!("cannot start {command:?}: {error}")))
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// The child's standard output; spawn it with `Stdio::piped()`.
    pub fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.0.stdout.take().expect("the child was spawned with a piped stdout")
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Sends SIGTERM and waits, at most `timeout`, for the process to exit.
    /// Returns its exit status, or `None` if it did not exit in time.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let sent = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        assert!(sent.is_ok_and(|status| status.success()), "could not send SIGTERM");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_server_accepts_connections_and_stops_when_killed() {
        let mut server = NatsServer::start();
        let address = SocketAddr::from(([127, 0, 0, 1], server.port()));
        assert!(TcpStream::connect(address).is_ok());
        server.kill();
        assert!(TcpStream::connect(address).is_err());
        server.restart();
        assert!(TcpStream::connect(address).is_ok());
    }

    #[test]
    fn a_server_whose_port_another_test_holds_starts_on_another_port() {
        let first = NatsServer::start();
        let store = tempfile::tempdir().unwrap();
        let mut second = NatsServer { port: first.port(), store, child: None, config: None };
        second.spawn_on_a_free_port();
        assert_ne!(second.port(), first.port(), "the second server took the first one's port for its own");
        let first_name = server_name_at(SocketAddr::from(([127, 0, 0, 1], first.port()))).unwrap();
        let second_name = server_name_at(SocketAddr::from(([127, 0, 0, 1], second.port()))).unwrap();
        assert_ne!(first_name, second_name);
        assert!(second_name.starts_with("momentum-test-"), "{second_name}");
    }

    #[test]
    fn a_started_cluster_is_healthy_and_a_killed_node_rejoins_when_restarted() {
        let mut cluster = NatsCluster::start(3);
        assert_eq!(cluster.url().split(',').count(), 3);
        let third = format!("{}-2", cluster.name());
        assert_eq!(cluster.index_of(&third), Some(2), "nodes are named after their cluster");
        cluster.kill(1);
        assert!(!cluster.is_running(1));
        assert_eq!(http_status(SocketAddr::from(([127, 0, 0, 1], cluster.nodes[1].monitor_port)), "/healthz"), None);
        cluster.restart(1);
        assert!(cluster.wait_until_healthy(1, Duration::from_secs(30)), "{}", cluster.log(1));
        assert!(cluster.log(1).contains(cluster.name()), "the node runs in the named cluster");
    }
}
