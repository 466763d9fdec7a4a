//! The closed-loop load of the timed stages (3 and 7): each connection a
//! task that sends a request, reads the whole answer and sends the next.
//!
//! Each task writes its requests as bytes on its own TCP connection and
//! reads the answers with `httparse`, as load generators such as wrk do,
//! rather than through an HTTP client library. The load runs on the two
//! cores it measures, and an HTTP client library's pool and tasks cost
//! several times the CPU a request of this (docs/benchmarks.md). Every
//! answer is still read to its end and its status checked.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one request of the load may take, answer read, before the
/// stage fails: the services bound their own handlers, so only a frozen
/// process comes near it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Header lines an answer may have; the services send about six.
const ANSWER_HEADERS_MAX: usize = 32;

/// Bytes an answer may have, head and body: a trend of three years of
/// weeks is about 100 KB, and anything far larger is a fault, not a load.
const ANSWER_BYTES_MAX: usize = 16 * 1024 * 1024;

/// One keep-alive HTTP/1.1 connection to a service, its requests in turn.
struct Connection {
    stream: TcpStream,
    /// What has been read and not yet taken as an answer.
    received: Vec<u8>,
}

impl Connection {
    async fn open(address: &str) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(address).await.with_context(|| format!("connecting to {address}"))?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream, received: Vec::with_capacity(64 * 1024) })
    }

    /// Sends one request, written whole in `request`, and reads its answer
    /// to the end; the answer's status.
    async fn send(&mut self, request: &[u8]) -> anyhow::Result<StatusCode> {
        if !self.received.is_empty() {
            bail!("the service sent {} bytes nobody asked for", self.received.len());
        }
        self.stream.write_all(request).await?;
        let (status, answer_length) = loop {
            if let Some(head) = read_head(&self.received)? {
                break head;
            }
            self.read_more().await?;
        };
        while self.received.len() < answer_length {
            self.read_more().await?;
        }
        // One request is in flight at a time, so nothing follows the
        // answer; draining keeps the buffer's capacity for the next.
        self.received.drain(..answer_length);
        Ok(status)
    }

    async fn read_more(&mut self) -> anyhow::Result<()> {
        if self.received.len() >= ANSWER_BYTES_MAX {
            bail!("an answer was longer than {ANSWER_BYTES_MAX} bytes");
        }
        self.received.reserve(64 * 1024);
        if self.stream.read_buf(&mut self.received).await? == 0 {
            bail!("the service closed the connection before answering");
        }
        Ok(())
    }
}

/// An answer's status and its whole length (head and body), once its head
/// has arrived; `None` until then.
fn read_head(received: &[u8]) -> anyhow::Result<Option<(StatusCode, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; ANSWER_HEADERS_MAX];
    let mut answer = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_length) = answer.parse(received).context("reading an answer's head")? else {
        return Ok(None);
    };
    let status = StatusCode::from_u16(answer.code.unwrap_or_default()).context("reading an answer's status")?;
    let header = |name: &str| answer.headers.iter().find(|header| header.name.eq_ignore_ascii_case(name));
    if header("connection").is_some_and(|value| value.value.eq_ignore_ascii_case(b"close")) {
        bail!("the service answered {status} and closed the connection");
    }
    // The services' answers are whole bodies of known length; a chunked
    // one would be a change worth failing the stage for, not guessing at.
    let body_length = header("content-length")
        .and_then(|value| std::str::from_utf8(value.value).ok()?.trim().parse::<usize>().ok())
        .with_context(|| format!("the service answered {status} without a Content-Length"))?;
    let answer_length = head_length.saturating_add(body_length);
    if answer_length > ANSWER_BYTES_MAX {
        bail!(
            "the service answered {status} with {answer_length} bytes, more than the {ANSWER_BYTES_MAX} the load reads"
        );
    }
    Ok(Some((status, answer_length)))
}

/// A request of the load: its method, path and query, content type and
/// body (the host and the token are added to every request).
pub(super) struct LoadRequest {
    pub method: &'static str,
    pub path_and_query: String,
    pub content_type: Option<&'static str>,
    pub body: Vec<u8>,
}

impl LoadRequest {
    /// Writes the request as HTTP/1.1 bytes into `out`, emptied first.
    fn write(&self, out: &mut Vec<u8>, host: &str, authorization: &str) {
        use std::io::Write;
        out.clear();
        let Self { method, path_and_query, content_type, body } = self;
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{method} {path_and_query} HTTP/1.1\r\nhost: {host}\r\nauthorization: {authorization}\r\n");
        if let Some(content_type) = content_type {
            let _ = write!(out, "content-type: {content_type}\r\n");
        }
        let _ = write!(out, "content-length: {}\r\n\r\n", body.len());
        out.extend_from_slice(body);
    }
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
            let (mut latencies, mut bytes) = (Vec::new(), Vec::new());
            for index in 0.. {
                if Instant::now() >= deadline {
                    break;
                }
                // Timed from before the request is made, as the earlier
                // loads were, so that latencies compare across the change.
                let sent = Instant::now();
                let next_request = request(connection_number, index);
                next_request.write(&mut bytes, &address, &authorization);
                let status = tokio::time::timeout(REQUEST_TIMEOUT, connection.send(&bytes))
                    .await
                    .with_context(|| {
                        format!(
                            "{} {} was not answered within {REQUEST_TIMEOUT:?}",
                            next_request.method, next_request.path_and_query
                        )
                    })?
                    .with_context(|| {
                        format!("{} {} to {address} failed", next_request.method, next_request.path_and_query)
                    })?;
                latencies.push(sent.elapsed());
                if status != expected_status {
                    bail!(
                        "{} {} answered {status}, not {expected_status}",
                        next_request.method,
                        next_request.path_and_query
                    );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_whole_only_once_its_head_and_its_content_length_of_body_have_arrived() {
        let answer = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\nContent-Length: 5\r\n\r\n{\"a\":";
        assert_eq!(read_head(&answer[..20]).unwrap(), None, "the head is cut");
        let (status, length) = read_head(answer).unwrap().unwrap();
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(length, answer.len(), "the body's five bytes are counted");
    }

    #[test]
    fn an_answer_without_a_length_or_that_closes_its_connection_fails_the_load() {
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(read_head(chunked).unwrap_err().to_string().contains("without a Content-Length"));
        let closing = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert!(read_head(closing).unwrap_err().to_string().contains("closed the connection"));
        assert!(read_head(b"SMTP nonsense\r\n\r\n").is_err());
        let huge = b"HTTP/1.1 200 OK\r\ncontent-length: 18446744073709551615\r\n\r\n";
        assert!(read_head(huge).unwrap_err().to_string().contains("more than"));
    }

    #[tokio::test]
    async fn answers_arriving_in_pieces_are_read_whole_one_after_another_on_one_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let body = "x".repeat(100_000);
        let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0; 1024];
            for _ in 0..2 {
                let _ = socket.read(&mut request).await.unwrap();
                // The head cut in two and the body after it, each sent apart.
                for piece in [&answer.as_bytes()[..10], &answer.as_bytes()[10..50], &answer.as_bytes()[50..]] {
                    socket.write_all(piece).await.unwrap();
                    socket.flush().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        let mut connection = Connection::open(&address).await.unwrap();
        for _ in 0..2 {
            assert_eq!(connection.send(b"GET / HTTP/1.1\r\n\r\n").await.unwrap(), StatusCode::OK);
            assert!(connection.received.is_empty(), "the whole answer was taken, nothing more");
        }
        server.await.unwrap();
        assert!(connection.send(b"GET / HTTP/1.1\r\n\r\n").await.is_err(), "the server has closed the connection");
    }

    #[test]
    fn a_request_is_written_with_its_host_token_type_and_length() {
        let request = LoadRequest {
            method: "POST",
            path_and_query: "/v1/events".to_owned(),
            content_type: Some("application/json"),
            body: b"{}".to_vec(),
        };
        let mut bytes = b"left over".to_vec();
        request.write(&mut bytes, "127.0.0.1:1", "Bearer t");
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "POST /v1/events HTTP/1.1\r\nhost: 127.0.0.1:1\r\nauthorization: Bearer t\r\n\
             content-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
        );
    }
}
