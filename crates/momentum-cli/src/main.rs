//! `momentum`: command-line tools around the services.

use anyhow::Context;
use clap::{Parser, Subcommand};

/// mimalloc, as in the services: `momentum bench` generates load on the same
/// cores it measures, so its clients should cost as little as they can.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod demo;
mod import;
mod probe;

#[derive(Debug, Parser)]
#[command(name = "momentum", version, about = "momentum command-line tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a realistic demo dataset and post it through the ingestion API.
    Demo(demo::DemoArgs),
    /// Import a spreadsheet (CSV) of volunteer hours, meetings, actions or sign-ups through the ingestion API.
    Import(import::ImportArgs),
    /// Ask a service's /readyz and exit 0 only if it is ready (for container health checks).
    Probe(probe::ProbeArgs),
    /// Measure every stage (ingest, projector, query, sizes) beside the raw ceiling of the same nats-server.
    Bench(bench::BenchArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Demo(arguments) => demo::run(arguments).await.context("posting the demo data failed"),
        Command::Import(arguments) => import::run(arguments).await,
        Command::Probe(arguments) => probe::run(arguments).await,
        Command::Bench(arguments) => bench::run(arguments).await.context("the benchmark failed"),
    }
}
