//! Request ids: every HTTP request gets one, taken from its `X-Request-Id`
//! header when that is a sensible id, else made up. It is echoed in the
//! response, carried by every log line written while the request is handled
//! (a tracing span), and ingest passes it on to NATS in the
//! [`NATS_HEADER`] of each event it publishes, so the projector's log line
//! for an event names the request that brought it.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The HTTP header a request id arrives and leaves in.
pub const HTTP_HEADER: &str = "x-request-id";
/// The NATS header ingest writes a request id into.
pub const NATS_HEADER: &str = "Momentum-Request-Id";
/// The longest request id taken from a client; longer ones are replaced.
pub const REQUEST_ID_BYTES_MAX: usize = 64;

/// The id of the request being handled, in the request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Whether a client's id is safe to log and to pass on: 1 to 64 letters,
/// digits, `-`, `_`, `.` or `:`.
fn is_acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= REQUEST_ID_BYTES_MAX
        && id.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':'))
}

/// Middleware: gives the request its id, handles it inside a span that
/// carries the id, and answers with the id in `X-Request-Id`.
pub async fn assign_request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(HTTP_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_acceptable(id))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    request.extensions_mut().insert(RequestId(id.clone()));
    let span =
        tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path());
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HTTP_HEADER, value);
    }
    response
}

/// Wraps every route of `router` with [`assign_request_id`].
pub fn with_request_ids(router: axum::Router) -> axum::Router {
    router.layer(axum::middleware::from_fn(assign_request_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sensible_client_id_is_kept_and_anything_else_is_replaced_by_a_fresh_one() {
        let router = with_request_ids(axum::Router::new().route(
            "/",
            axum::routing::get(|axum::Extension(RequestId(id)): axum::Extension<RequestId>| async move { id }),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        let client = reqwest::Client::new();

        let kept = client.get(&url).header(HTTP_HEADER, "partner-42.batch:7").send().await.unwrap();
        assert_eq!(kept.headers()[HTTP_HEADER], "partner-42.batch:7");
        assert_eq!(kept.text().await.unwrap(), "partner-42.batch:7", "the handler sees the same id");

        for unacceptable in ["", "has space", "a\u{7f}b", &"x".repeat(65)] {
            let replaced = client.get(&url).header(HTTP_HEADER, unacceptable).send().await;
            let Ok(replaced) = replaced else { continue };
            let id = replaced.headers()[HTTP_HEADER].to_str().unwrap().to_owned();
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{unacceptable:?} became {id:?}");
        }
        let fresh = client.get(&url).send().await.unwrap();
        assert!(uuid::Uuid::parse_str(fresh.headers()[HTTP_HEADER].to_str().unwrap()).is_ok());
    }
}
