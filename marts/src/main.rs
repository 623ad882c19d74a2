//! `tributary-marts`: parse the CLI, load config, open the lake and ClickHouse, then run once
//! or on a schedule until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tributary_marts::{ClickHouseStore, MartsConfig, MartsJob, RunOutcome};

/// Computes the rankings from the raw Iceberg tables and publishes them to ClickHouse.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// TOML config file; `TRIBUTARY_*` environment variables override it
    /// (`TRIBUTARY_INTERVAL_MS`, `TRIBUTARY_CLICKHOUSE__URL`, `TRIBUTARY_LAKE__CATALOG_URI`, …).
    #[arg(long, env = "TRIBUTARY_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Milliseconds between scheduled runs; overrides the config's `interval_ms`.
    #[arg(long, global = true)]
    interval: Option<u64>,
    /// Run once and exit (same as the `run-once` command).
    #[arg(long, global = true)]
    once: bool,
    /// With a single run: publish even if the lake has not changed since the latest publication.
    #[arg(long, global = true)]
    force: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run once and exit: non-zero if the run failed.
    RunOnce,
    /// Run now and then every `interval_ms` until SIGINT/SIGTERM (the default).
    Schedule,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tributary_common::logging::init("tributary-marts");
    let mut config: MartsConfig = tributary_common::load(cli.config.as_deref(), std::env::vars())?;
    if let Some(interval) = cli.interval {
        config.interval_ms = interval;
    }
    config.validate()?;

    let catalog = tributary_lake::catalog::open(&config.lake)
        .await
        .context("opening the lake catalog")?;
    let store = ClickHouseStore::new(&config.clickhouse)?;
    let job = MartsJob::new(
        Arc::new(catalog),
        config.lake.namespace.clone(),
        Arc::new(store),
    );

    if cli.once || matches!(cli.command, Some(Command::RunOnce)) {
        match job.run_once(cli.force).await? {
            RunOutcome::Published { publication_id, .. } => {
                println!("published {publication_id}");
            }
            RunOutcome::Unchanged { publication_id } => {
                println!("unchanged {publication_id}");
            }
        }
        return Ok(());
    }

    let shutdown = CancellationToken::new();
    tokio::spawn(tributary_common::shutdown::cancel_on_signal(
        shutdown.clone(),
    ));
    tracing::info!(interval_ms = config.interval_ms, "marts scheduler started");
    job.run_scheduled(Duration::from_millis(config.interval_ms), shutdown)
        .await;
    Ok(())
}
