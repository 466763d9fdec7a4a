//! `momentum`: command-line tools around the services.

use anyhow::Context;
use clap::{Parser, Subcommand};

mod demo;

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Demo(arguments) => demo::run(arguments).await.context("posting the demo data failed"),
    }
}
