//! `momentum probe`: asks a service's `/readyz` and exits 0 only on a 200.
//! Container images have no curl (they are distroless), so health checks
//! run this instead. Without a URL it asks the service in the same
//! container, at the port of `MOMENTUM_HTTP_ADDR`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};

#[derive(Debug, clap::Args)]
pub(crate) struct ProbeArgs {
    /// The URL to ask; by default `/readyz` at MOMENTUM_HTTP_ADDR (an
    /// unspecified address such as 0.0.0.0 is asked on loopback).
    url: Option<String>,
    /// The address of the service in this container.
    #[arg(long, env = "MOMENTUM_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// How long to wait for the answer.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
}

/// The readiness URL of a service listening on `address`.
fn readiness_url(address: SocketAddr) -> String {
    let host = match address {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => "127.0.0.1".to_owned(),
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => "[::1]".to_owned(),
        SocketAddr::V4(v4) => v4.ip().to_string(),
        SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
    };
    format!("http://{host}:{}/readyz", address.port())
}

pub(crate) async fn run(arguments: ProbeArgs) -> anyhow::Result<()> {
    let url = arguments.url.unwrap_or_else(|| readiness_url(arguments.http_addr));
    let client = reqwest::Client::builder().timeout(Duration::from_millis(arguments.timeout_ms)).build()?;
    let response = client.get(&url).send().await.with_context(|| format!("no answer from {url}"))?;
    if response.status() != reqwest::StatusCode::OK {
        bail!("{url} answered {}", response.status());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_listening_on_every_address_is_asked_on_loopback() {
        assert_eq!(readiness_url("0.0.0.0:8080".parse().unwrap()), "http://127.0.0.1:8080/readyz");
        assert_eq!(readiness_url("[::]:8081".parse().unwrap()), "http://[::1]:8081/readyz");
        assert_eq!(readiness_url("10.1.2.3:9000".parse().unwrap()), "http://10.1.2.3:9000/readyz");
    }
}
