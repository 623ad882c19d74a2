//! `tributary-ingest`: the sample-data loader (file and WS-* ingestors come later).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tributary_ingest::{config::IngestConfig, sample, store};

#[derive(Parser)]
#[command(version, about = "Get sales into Tributary")]
struct Cli {
    /// Config file (TOML); `TRIBUTARY_*` environment variables override it.
    #[arg(long, env = "TRIBUTARY_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply a seeded mix of inserts, updates and deletes to salesdb's `sale` table.
    SampleChanges {
        /// New sales to insert.
        #[arg(long, default_value_t = 20)]
        inserts: usize,
        /// Existing sales to correct (amount, sometimes salesman and city).
        #[arg(long, default_value_t = 5)]
        updates: usize,
        /// Existing sales to delete.
        #[arg(long, default_value_t = 2)]
        deletes: usize,
        /// Seed of the generator: the same seed over the same data plans the same changes.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tributary_common::logging::init("ingest");
    let cli = Cli::parse();
    let config: IngestConfig = tributary_common::load(cli.config.as_deref(), std::env::vars())
        .context("loading config")?;
    match cli.command {
        Command::SampleChanges {
            inserts,
            updates,
            deletes,
            seed,
        } => {
            let client = store::connect(&config.salesdb_url).await?;
            let existing = store::existing(&client).await?;
            let mix = sample::Mix {
                inserts,
                updates,
                deletes,
            };
            let changes = sample::plan(&existing, mix, seed);
            let rows = store::apply(&client, &changes).await?;
            tracing::info!(
                changes = changes.len(),
                rows,
                seed,
                "sample changes applied"
            );
        }
    }
    Ok(())
}
