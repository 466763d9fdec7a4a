//! The evaluators' dashboard: one HTML page, one JS module, one CSS file and
//! the vendored uPlot, all embedded in the binary and served without a
//! token. The page asks for a token and reads the figures from the API,
//! which does need one. These are pages, not API operations, so they are
//! kept out of the route lists the OpenAPI document is checked against.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use momentum_runtime::Problem;

const INDEX_HTML: &str = include_str!("../assets/index.html");

/// An embedded file: its body, media type and whether its URL names its
/// version (then it never changes and is cached for a year).
struct Asset {
    path: &'static str,
    body: &'static [u8],
    content_type: &'static str,
    versioned: bool,
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "dashboard.js",
        body: include_bytes!("../assets/dashboard.js"),
        content_type: "text/javascript; charset=utf-8",
        versioned: false,
    },
    Asset {
        path: "dashboard.css",
        body: include_bytes!("../assets/dashboard.css"),
        content_type: "text/css; charset=utf-8",
        versioned: false,
    },
    Asset {
        path: "vendor/uplot-1.6.32/uPlot.iife.min.js",
        body: include_bytes!("../assets/vendor/uplot-1.6.32/uPlot.iife.min.js"),
        content_type: "text/javascript; charset=utf-8",
        versioned: true,
    },
    Asset {
        path: "vendor/uplot-1.6.32/uPlot.min.css",
        body: include_bytes!("../assets/vendor/uplot-1.6.32/uPlot.min.css"),
        content_type: "text/css; charset=utf-8",
        versioned: true,
    },
    Asset {
        path: "vendor/uplot-1.6.32/LICENSE",
        body: include_bytes!("../assets/vendor/uplot-1.6.32/LICENSE"),
        content_type: "text/plain; charset=utf-8",
        versioned: true,
    },
];

/// Only our own files and the API may be loaded; nothing inline, nothing
/// from elsewhere (the token lives in this page's `sessionStorage`).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `GET /` (the overview), `GET /movements/{movement}` (a movement's page;
/// the same HTML, the script reads the path) and `GET /assets/{*path}`.
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(page)).route("/movements/{movement}", get(page)).route("/assets/{*path}", get(asset))
}

async fn page(headers: HeaderMap) -> Response {
    let mut response = cached(&headers, INDEX_HTML.as_bytes(), "text/html; charset=utf-8", false);
    response.headers_mut().insert("content-security-policy", HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    response.headers_mut().insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}

/// Takes the path as it came, not through axum's `Path`: that answers a
/// segment that does not decode (`/assets/%FF`) in plain text, and no asset
/// name needs decoding.
async fn asset(uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().strip_prefix("/assets/").unwrap_or_default();
    match ASSETS.iter().find(|asset| asset.path == path) {
        Some(asset) => cached(&headers, asset.body, asset.content_type, asset.versioned),
        None => Problem::new(StatusCode::NOT_FOUND, "not-found", "no such resource")
            .detail("no such dashboard asset")
            .into_response(),
    }
}

/// A file with its media type and cache headers: versioned files for a
/// year; our own files revalidated each time by their entity tag (a 304
/// when the browser's copy is current).
fn cached(request: &HeaderMap, body: &'static [u8], content_type: &'static str, versioned: bool) -> Response {
    let tag = entity_tag(body);
    let mut response = if request.get(header::IF_NONE_MATCH).and_then(|value| value.to_str().ok()) == Some(&tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response()
    };
    let headers = response.headers_mut();
    let cache = if versioned { "public, max-age=31536000, immutable" } else { "no-cache" };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::ETAG, HeaderValue::from_str(&tag).expect("hex digits are a valid header"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// A strong entity tag: the 64-bit FNV-1a hash of the body, which is fixed
/// at build time.
fn entity_tag(body: &[u8]) -> String {
    let hash = body
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3));
    format!("\"{hash:016x}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The uPlot release in `assets/vendor/`, served under a versioned
    /// folder so that it may be cached for good.
    const UPLOT_VERSION: &str = "1.6.32";

    #[test]
    fn the_vendored_uplot_is_the_version_the_assets_name() {
        let folder = format!("vendor/uplot-{UPLOT_VERSION}/");
        assert!(ASSETS.iter().filter(|asset| asset.versioned).all(|asset| asset.path.starts_with(&folder)));
        let script = ASSETS.iter().find(|asset| asset.path.ends_with("uPlot.iife.min.js")).unwrap();
        assert!(String::from_utf8_lossy(&script.body[..80]).contains(&format!("(v{UPLOT_VERSION})")));
        assert!(INDEX_HTML.contains(&format!("/assets/{folder}uPlot.iife.min.js")));
        assert!(INDEX_HTML.contains(&format!("/assets/{folder}uPlot.min.css")));
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for text in [INDEX_HTML.as_bytes(), ASSETS[0].body, ASSETS[1].body] {
            let text = String::from_utf8_lossy(text);
            assert!(!text.contains("http://") && !text.contains("https://"), "an external address in an asset");
        }
    }

    #[tokio::test]
    async fn assets_have_their_media_type_and_cache_headers() {
        let response = asset(Uri::from_static("/assets/dashboard.js"), HeaderMap::new()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
        let tag = response.headers()[header::ETAG].clone();
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, tag);
        let response = asset(Uri::from_static("/assets/dashboard.js"), again).await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);

        let path = format!("/assets/vendor/uplot-{UPLOT_VERSION}/uPlot.min.css");
        let response = asset(path.parse().unwrap(), HeaderMap::new()).await;
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/css; charset=utf-8");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "public, max-age=31536000, immutable");

        let response = asset(Uri::from_static("/assets/../Cargo.toml"), HeaderMap::new()).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);

        let response = page(HeaderMap::new()).await;
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(response.headers().contains_key("content-security-policy"));
    }
}
