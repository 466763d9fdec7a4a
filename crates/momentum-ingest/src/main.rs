//! `momentum-ingest`: the ingestion service's binary. It reads the settings, sets up logging and serves until
//! SIGINT or SIGTERM; the service itself is the `momentum_ingest` library.

use anyhow::Context;

/// mimalloc rather than glibc malloc: the services allocate many small,
/// short-lived buffers per request, where glibc's allocator was a large
/// share of the CPU (docs/decisions/0003-choices-made-for-speed.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = momentum_runtime::config::parse::<momentum_ingest::Config>();
    momentum_runtime::init_logging(config.log_json);
    momentum_ingest::run(config, momentum_runtime::shutdown_signal()).await.context("momentum-ingest failed")
}
