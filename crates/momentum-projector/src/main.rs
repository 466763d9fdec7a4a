use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = momentum_runtime::config::parse::<momentum_projector::Config>();
    momentum_runtime::init_logging(config.log_json);
    momentum_projector::run(config, momentum_runtime::shutdown_signal()).await.context("momentum-projector failed")
}
