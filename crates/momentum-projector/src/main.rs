//! `momentum-projector`: the projection service's binary. It reads its settings from flags, the
//! environment and a config file, then folds the event stream into the participation ledger and
//! answers the query service's reads over NATS until SIGINT or SIGTERM.

use anyhow::Context;

/// mimalloc rather than glibc malloc: the services allocate many small,
/// short-lived buffers per request, where glibc's allocator was a large
/// share of the CPU (docs/decisions/0003-choices-made-for-speed.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = momentum_runtime::config::parse::<momentum_projector::Config>();
    momentum_runtime::init_logging(config.log_json);
    momentum_projector::run(config, momentum_runtime::shutdown_signal()).await.context("momentum-projector failed")
}
