//! The closed-loop load of the timed stages (3 and 7): each connection a
//! task that sends a request, reads the whole answer and sends the next.
//!
//! Each task holds one plain HTTP/1.1 connection (hyper's own), not a
//! pooled `reqwest` client: the load generator runs on the cores it
//! measures, and reqwest's pool, retry and redirect layers and the copy of
//! every answer into one buffer took 80-110 µs of CPU a request, a quarter
//! of a trend read's cost on two cores (docs/benchmarks.md). Every answer
//! is still read to its end and its status checked.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// One connection to a service, its requests in turn.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    async fn open(address: &str) -> anyhow::Result<Connection> {
        let stream =
            tokio::net::TcpStream::connect(address).await.with_context(|| format!("connecting to {address}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // Drives the connection until its sender is dropped.
        tokio::spawn(connection);
        Ok(Connection { sender })
    }

    /// Sends `request` and reads its answer to the end; the answer's status.
    async fn send(&mut self, request: Request<Full<Bytes>>) -> anyhow::Result<StatusCode> {
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            frame?;
        }
        Ok(status)
    }
}

/// A request of the load: its method, path and query, headers and body.
pub(super) struct LoadRequest {
    pub method: hyper::Method,
    pub path_and_query: String,
    pub content_type: Option<&'static str>,
    pub body: Bytes,
}

/// Runs `connections` connections to `address` (host and port) for
/// `duration`, each sending the requests `request` makes (given the
/// connection's number and the request's) and expecting `expected`.
/// Returns the rate and the latency percentiles of the answered requests;
/// any other answer, or a failed connection, fails all.
pub(super) async fn closed_loop(
    address: &str,
    token: &str,
    connections: usize,
    duration: Duration,
    expected: StatusCode,
    request: impl Fn(usize, usize) -> LoadRequest + Clone + Send + 'static,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let authorization = format!("Bearer {token}");
    let tasks = (0..connections).map(|number| {
        let (request, address, authorization) = (request.clone(), address.to_owned(), authorization.clone());
        tokio::spawn(async move {
            let mut connection = Connection::open(&address).await?;
            let mut latencies = Vec::new();
            for index in 0.. {
                if Instant::now() >= deadline {
                    break;
                }
                let load = request(number, index);
                let mut builder = Request::builder()
                    .method(load.method)
                    .uri(load.path_and_query)
                    .header(hyper::header::HOST, &address)
                    .header(hyper::header::AUTHORIZATION, &authorization);
                if let Some(content_type) = load.content_type {
                    builder = builder.header(hyper::header::CONTENT_TYPE, content_type);
                }
                let sent = Instant::now();
                let status = connection.send(builder.body(Full::new(load.body))?).await?;
                latencies.push(sent.elapsed());
                if status != expected {
                    bail!("a request answered {status}, not {expected}");
                }
            }
            anyhow::Ok(latencies)
        })
    });
    let mut latencies = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        latencies.extend(task.await??);
    }
    Ok(super::rate_and_latencies(latencies, started.elapsed()))
}
