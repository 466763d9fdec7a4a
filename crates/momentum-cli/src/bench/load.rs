//! The closed-loop load of the timed stages (3 and 7): each connection a
//! task that sends a request, reads the whole answer and sends the next.
//!
//! Each task holds one plain HTTP/1.1 connection (hyper's own), not a
//! pooled `reqwest` client: the load generator runs on the cores it
//! measures, and reqwest's pool, retry and redirect layers and the copy of
//! every answer into one buffer took 84-100 µs of CPU a request, about a
//! quarter of all a trend read cost on two cores (docs/benchmarks.md).
//! Every answer is still read to its end and its status checked.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// How long one request of the load may take, answer read, before the
/// stage fails: the services bound their own handlers, so only a frozen
/// process comes near it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

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
        // Drives the connection until its sender is dropped, the service
        // closes it or it fails. Its result is not needed: a failure during
        // a request fails that request, and one between requests fails the
        // next one's `ready`.
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

/// A request of the load: its method, path and query, content type and
/// body (the host and the token are added to every request).
pub(super) struct LoadRequest {
    pub method: hyper::Method,
    pub path_and_query: String,
    pub content_type: Option<&'static str>,
    pub body: Bytes,
}

/// Runs `connections` connections to `address` (host and port) for
/// `duration`, each sending the requests `request` makes (given the
/// connection's number and the request's) and expecting `expected_status`.
/// Returns the rate and the latency percentiles of the answered requests;
/// any other answer, or a failed connection, fails all.
pub(super) async fn closed_loop(
    address: &str,
    token: &str,
    connections: usize,
    duration: Duration,
    expected_status: StatusCode,
    request: impl Fn(usize, usize) -> LoadRequest + Clone + Send + 'static,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let authorization = format!("Bearer {token}");
    let tasks = (0..connections).map(|connection_number| {
        let (request, address, authorization) = (request.clone(), address.to_owned(), authorization.clone());
        tokio::spawn(async move {
            let mut connection = Connection::open(&address).await?;
            let mut latencies = Vec::new();
            for index in 0.. {
                if Instant::now() >= deadline {
                    break;
                }
                // Timed from before the request is made, as the reqwest
                // load was, so that latencies compare across the change.
                let sent = Instant::now();
                let next_request = request(connection_number, index);
                let (method, path) = (next_request.method.clone(), next_request.path_and_query.clone());
                let mut builder = Request::builder()
                    .method(next_request.method)
                    .uri(next_request.path_and_query)
                    .header(hyper::header::HOST, &address)
                    .header(hyper::header::AUTHORIZATION, &authorization);
                if let Some(content_type) = next_request.content_type {
                    builder = builder.header(hyper::header::CONTENT_TYPE, content_type);
                }
                let sending = connection.send(builder.body(Full::new(next_request.body))?);
                let status = tokio::time::timeout(REQUEST_TIMEOUT, sending)
                    .await
                    .with_context(|| format!("{method} {path} was not answered within {REQUEST_TIMEOUT:?}"))?
                    .with_context(|| format!("{method} {path} to {address} failed"))?;
                latencies.push(sent.elapsed());
                if status != expected_status {
                    bail!("{method} {path} answered {status}, not {expected_status}");
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
