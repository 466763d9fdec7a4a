//! `momentum`: the command-line tools shipped with the services: importing
//! a partner's spreadsheet or attendance from another system, exporting a
//! movement's events, and the containers' health probe. The demo data
//! generator and the benchmark are developer tools, in `momentum-dev`.

use clap::{Parser, Subcommand};

/// `momentum export` folds a whole log and writes a table of it, with many
/// short-lived buffers per event, where glibc's allocator was a large share
/// of the CPU, as it was in the services
/// (docs/decisions/0003-choices-made-for-speed.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod export;
mod import;
mod probe;
mod progress;

#[derive(Debug, Parser)]
#[command(name = "momentum", version, about = "momentum command-line tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Import a spreadsheet (CSV) of hours, meetings, actions or sign-ups, or attendance from OSDI or Mobilize.
    Import(import::ImportArgs),
    /// Export a movement's events to a file, straight from the event stream (NDJSON or Parquet).
    Export(export::ExportArgs),
    /// Ask a service's /readyz and exit 0 only if it is ready (for container health checks).
    Probe(probe::ProbeArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Import(arguments) => import::run(arguments).await,
        Command::Export(arguments) => export::run(arguments).await,
        Command::Probe(arguments) => probe::run(arguments).await,
    }
}
