//! RFC 9457 problem details: the body of every error answer of both
//! services, and the answers every router gives to a path or method it
//! does not serve.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One thing wrong with a request, at a JSON Pointer into its body (or the
/// name of a query parameter).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ProblemField {
    /// Where the problem is: a JSON Pointer (RFC 6901) into the event or
    /// request body, such as `/data/hours` (`""` is the whole event; in a
    /// batch, pointers are into the event of the result's `index`), or the
    /// name of a path or query parameter, such as `interval`.
    #[schema(examples("/data/hours", "interval"))]
    pub pointer: String,
    /// What is wrong there, in words.
    pub message: String,
}

/// An RFC 9457 problem details document (`application/problem+json`), the
/// body of every error answer.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem; `urn:momentum:problem:<kind>`.
    #[serde(rename = "type")]
    #[schema(example = "urn:momentum:problem:invalid-parameter")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code of the answer.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong in this request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Each field or parameter that is wrong (absent when none is named).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub errors: Vec<ProblemField>,
    /// Seconds a client should wait before retrying, also sent as `Retry-After`.
    #[serde(skip)]
    pub retry_after_seconds: Option<u32>,
}

impl Problem {
    /// A problem with this status, of kind `urn:momentum:problem:<kind>` and with this title; no
    /// detail or field errors yet.
    pub fn new(status: StatusCode, kind: &str, title: &str) -> Problem {
        Problem {
            kind: format!("urn:momentum:problem:{kind}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: None,
            errors: Vec::new(),
            retry_after_seconds: None,
        }
    }

    /// Sets what went wrong in this request.
    pub fn detail(mut self, detail: impl Into<String>) -> Problem {
        self.detail = Some(detail.into());
        self
    }

    /// Sets the field errors, replacing any added before.
    pub fn errors(mut self, errors: Vec<ProblemField>) -> Problem {
        self.errors = errors;
        self
    }

    /// Adds one field error.
    pub fn field(mut self, pointer: &str, message: impl Into<String>) -> Problem {
        self.errors.push(ProblemField { pointer: pointer.to_owned(), message: message.into() });
        self
    }

    /// Asks the client to wait `seconds` before retrying, sent as `Retry-After`.
    pub fn retry_after(mut self, seconds: u32) -> Problem {
        self.retry_after_seconds = Some(seconds);
        self
    }

    /// A parameter of the request is wrong: 400 naming it.
    pub fn bad_parameter(name: &str, message: impl Into<String>) -> Problem {
        let message = message.into();
        Problem::new(StatusCode::BAD_REQUEST, "invalid-parameter", "a request parameter is not valid")
            .detail(format!("{name}: {message}"))
            .errors(vec![ProblemField { pointer: name.to_owned(), message }])
    }

    /// A dependency is away: 503 with `Retry-After`, safe to retry.
    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the service is temporarily unavailable")
            .detail(detail)
            .retry_after(1)
    }

    /// Something failed inside: 500, with the cause in the log, not the body.
    pub fn internal() -> Problem {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
            .detail("the error has been logged")
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).expect("a problem always serialises");
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(seconds) = self.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The answer to a known path asked with a method it does not serve.
pub async fn method_not_allowed() -> Problem {
    Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "this path does not serve that method")
        .detail("see the API document at /openapi.json for each path's methods")
}
