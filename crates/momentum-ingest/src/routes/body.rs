//! A request body as ingest reads it: its kind by `Content-Type`, its
//! bytes within the size and time bounds, and its JSON.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{StatusCode, header};
use momentum_runtime::{Problem, problem_responses};
use serde_json::Value;

use crate::REQUEST_BYTES_MAX;

/// What a request body holds, by its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Single,
    Batch,
}

pub(crate) fn body_kind(request: &Request) -> Result<BodyKind, Problem> {
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match media_type.as_str() {
        "application/cloudevents+json" | "application/json" => Ok(BodyKind::Single),
        "application/cloudevents-batch+json" => Ok(BodyKind::Batch),
        _ => Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "the request body has an unsupported content type",
        )
        .detail(format!(
            "got {content_type:?}; send one event as application/cloudevents+json (or application/json) \
             or an array of events as application/cloudevents-batch+json"
        ))),
    }
}

pub(super) async fn read_body(body: Body, timeout: Duration) -> Result<Bytes, Problem> {
    let reading = axum::body::to_bytes(body, REQUEST_BYTES_MAX);
    match tokio::time::timeout(timeout, reading).await {
        Err(_) => Err(Problem::new(StatusCode::REQUEST_TIMEOUT, "body-timeout", "the request body arrived too slowly")
            .detail(format!("a request body must arrive within {} ms", timeout.as_millis()))),
        Ok(Err(_)) => {
            Err(Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "the request body is too large")
                .detail(format!("a request body may be at most {REQUEST_BYTES_MAX} bytes")))
        }
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

pub(crate) fn parse_json(bytes: &[u8]) -> Result<Value, Problem> {
    serde_json::from_slice(bytes).map_err(|error| {
        Problem::new(StatusCode::BAD_REQUEST, "malformed-json", "the request body is not valid JSON").detail(format!(
            "line {}, column {}: {error}",
            error.line(),
            error.column()
        ))
    })
}

pub(crate) fn not_a_batch() -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "not-a-batch", "a batch must be a JSON array")
        .detail("application/cloudevents-batch+json bodies are arrays of events")
}

/// Examples of the problems above, for the API document.
pub(super) mod examples {
    use super::*;

    pub(in crate::routes) fn body_timeout() -> Problem {
        Problem::new(StatusCode::REQUEST_TIMEOUT, "body-timeout", "the request body arrived too slowly")
            .detail("a request body must arrive within 30000 ms")
    }

    pub(in crate::routes) fn payload_too_large() -> Problem {
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "the request body is too large")
            .detail(format!("a request body may be at most {REQUEST_BYTES_MAX} bytes"))
    }

    pub(in crate::routes) fn unsupported_media_type() -> Problem {
        let request = Request::builder().header(header::CONTENT_TYPE, "text/plain").body(Body::empty());
        body_kind(&request.expect("a request")).expect_err("text is not accepted")
    }
}

problem_responses! {
    BodyTimeout => ("The request body did not arrive in time (`MOMENTUM_BODY_TIMEOUT_MS`).", [
        examples::body_timeout(),
    ]);
}
