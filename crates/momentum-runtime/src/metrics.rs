//! Prometheus metrics: one registry per service, served at `GET /metrics`
//! in the OpenMetrics text format, and the HTTP metrics every service
//! shares (requests by route, method and status, and their durations).
//!
//! Label values are bounded: routes are axum's route templates (so
//! `/v1/movements/{movement}/trends`, never a movement id), unmatched paths
//! are one `unmatched` route, methods other than HTTP's standard ones are one
//! `other` method, and statuses are the few the services answer.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Bucket bounds, in seconds, of request and publish durations: 0.5 ms to
/// about 16 s, doubling.
pub fn duration_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 16)
}

/// The labels of the HTTP request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// axum's route template, such as `/v1/movements/{movement}/trends`, or `unmatched`.
    pub route: String,
    /// The HTTP method, or `other` for a method that is not one of HTTP's standard ones.
    pub method: String,
    /// The HTTP status code of the answer.
    pub status: u16,
}

/// The labels of a duration histogram kept by route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// axum's route template, or `unmatched`, for HTTP requests; the read's endpoint name (such as `trends`) for the
    /// query service's projector durations.
    pub route: String,
}

/// A service's metrics registry and the HTTP metrics all services share.
pub struct Metrics {
    registry: std::sync::Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram>,
    nats_connected: Gauge,
    /// What the last `/readyz` answered: a readiness that flaps shows as changes.
    ready: Gauge,
}

impl Metrics {
    /// A registry whose metric names start with `momentum_`.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("momentum");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered, by route, method and status", requests.clone());
        let request_seconds =
            Family::<RouteLabels, Histogram>::new_with_constructor(|| Histogram::new(duration_buckets()));
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by route",
            request_seconds.clone(),
        );
        let nats_connected = Gauge::default();
        registry.register("nats_connected", "1 while the service is connected to NATS, else 0", nats_connected.clone());
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 when the last /readyz answered ready, 0 when it answered not ready",
            ready.clone(),
        );
        let registry = std::sync::Mutex::new(registry);
        Arc::new(Metrics { registry, requests, request_seconds, nats_connected, ready })
    }

    /// Records what `/readyz` answered.
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Adds a service's own metric to the registry.
    pub fn register(&self, name: &str, help: &str, metric: impl prometheus_client::registry::Metric) {
        self.registry.lock().expect("the registry is never poisoned").register(name, help, metric);
    }

    /// The registry in the OpenMetrics text format, with the NATS
    /// connection state as of now.
    pub fn encode(&self, nats: Option<&async_nats::Client>) -> String {
        if let Some(nats) = nats {
            let connected = nats.connection_state() == async_nats::connection::State::Connected;
            self.nats_connected.set(i64::from(connected));
        }
        let mut text = String::new();
        let registry = self.registry.lock().expect("the registry is never poisoned");
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("writing to a String cannot fail");
        text
    }

    /// Counts a request and its duration.
    fn observe(&self, route: String, method: String, status: StatusCode, seconds: f64) {
        self.request_seconds.get_or_create(&RouteLabels { route: route.clone() }).observe(seconds);
        self.requests.get_or_create(&RequestLabels { route, method, status: status.as_u16() }).inc();
    }
}

/// Records every request of `router` in `metrics`.
pub fn measure_requests(router: axum::Router, metrics: Arc<Metrics>) -> axum::Router {
    router.layer(axum::middleware::from_fn(move |request: Request, next: Next| {
        let metrics = metrics.clone();
        async move {
            let route = request
                .extensions()
                .get::<MatchedPath>()
                .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
            let method = method_label(request.method()).to_owned();
            let started = Instant::now();
            let response = next.run(request).await;
            metrics.observe(route, method, response.status(), started.elapsed().as_secs_f64());
            response
        }
    }))
}

/// The method as a label: any token is a valid method to hyper, and one
/// label value each would let anyone grow the metrics without bound.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::CONNECT,
        Method::OPTIONS,
        Method::TRACE,
        Method::PATCH,
    ];
    STANDARD.iter().find(|standard| *standard == method).map_or("other", Method::as_str)
}

/// The answer to `GET /metrics`.
pub fn metrics_response(metrics: &Metrics, nats: Option<&async_nats::Client>) -> Response {
    let mut response = (StatusCode::OK, metrics.encode(nats)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_are_counted_by_route_template_method_and_status() {
        let metrics = Metrics::new();
        let router = axum::Router::new()
            .route("/v1/movements/{movement}/trends", axum::routing::get(|| async { "ok" }))
            .fallback(|| async { StatusCode::NOT_FOUND });
        let router = measure_requests(router, metrics.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        let client = reqwest::Client::new();
        for movement in ["leeds", "york"] {
            client.get(format!("{url}/v1/movements/{movement}/trends")).send().await.unwrap();
        }
        client.get(format!("{url}/nowhere")).send().await.unwrap();
        for made_up in ["FETCH1", "FETCH2"] {
            let method = reqwest::Method::from_bytes(made_up.as_bytes()).unwrap();
            client.request(method, format!("{url}/nowhere")).send().await.unwrap();
        }

        let text = metrics.encode(None);
        assert!(
            text.contains(
                r#"momentum_http_requests_total{route="/v1/movements/{movement}/trends",method="GET",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"momentum_http_requests_total{route="unmatched",method="GET",status="404"} 1"#),
            "{text}"
        );
        assert!(!text.contains("leeds"), "movement ids never become labels");
        assert!(
            text.contains(r#"momentum_http_requests_total{route="unmatched",method="other",status="404"} 2"#),
            "made-up methods share one label: {text}"
        );
        assert!(!text.contains("FETCH"), "made-up methods never become labels");
        assert!(text.contains("momentum_http_request_duration_seconds_bucket"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
