use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = momentum_query::Config::parse();
    momentum_runtime::init_logging(config.log_json);
    momentum_query::run(config, momentum_runtime::shutdown_signal()).await.context("momentum-query failed")
}
