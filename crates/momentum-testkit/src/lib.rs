//! Test support: a real nats-server per test, on a dynamic port with a
//! temporary JetStream store, killed when dropped.
//!
//! The binary is found the way the README's scripts find it:
//! `$MOMENTUM_NATS_SERVER`, else the pinned build under `.tools/` that
//! `scripts/ensure-nats-server.sh` installs, else `nats-server` on `PATH`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
    let pinned = workspace_root().join(format!(".tools/nats-server-{NATS_SERVER_VERSION}/bin/nats-server"));
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
    assert!(
        binary.exists(),
        "{} is missing: build the workspace's binaries first (cargo build --workspace --bins)",
        binary.display()
    );
    binary
}

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

/// A running nats-server with JetStream, owned by one test.
pub struct NatsServer {
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
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
        let mut server = NatsServer { port: free_port(), store, child: None };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let binary = nats_server_binary();
        let child = Command::new(&binary)
            .args(["--addr", "127.0.0.1", "--port", &self.port.to_string(), "--jetstream", "--store_dir"])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start {}: {error}; run scripts/ensure-nats-server.sh or set MOMENTUM_NATS_SERVER",
                    binary.display()
                )
            });
        self.child = Some(child);
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        assert!(wait_for_port(address, START_TIMEOUT), "nats-server did not start listening on {address}");
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

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

/// A child process that is killed when dropped, so a failing test leaves
/// no service running behind it.
#[derive(Debug)]
pub struct ChildProcess(Child);

impl ChildProcess {
    pub fn spawn(command: &mut Command) -> ChildProcess {
        ChildProcess(command.spawn().unwrap_or_else(|error| panic!("cannot start {command:?}: {error}")))
    }

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
}
