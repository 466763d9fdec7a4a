//! `momentum-dev`: the developer tools, kept out of the shipped image: the
//! demo data generator and the benchmark. The shipped `momentum` binary
//! holds what operators and partners run: `import` and `probe`.

use anyhow::Context;
use clap::{Parser, Subcommand};

/// mimalloc, as in the services: `momentum-dev bench` generates load on the
/// same cores it measures, so its clients should cost as little as they can.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod demo;

#[derive(Debug, Parser)]
#[command(name = "momentum-dev", version, about = "momentum developer tools: demo data and the benchmark")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a realistic demo dataset and post it through the ingestion API.
    Demo(demo::DemoArgs),
    /// Measure every stage (ingest, projector, query, sizes) beside the raw ceiling of the same nats-server.
    Bench(bench::BenchArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Demo(arguments) => demo::run(arguments).await.context("posting the demo data failed"),
        Command::Bench(arguments) => bench::run(arguments).await.context("the benchmark failed"),
    }
}
