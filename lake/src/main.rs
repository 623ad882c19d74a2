//! `tributary-lake`: lands the Debezium topics into the raw Iceberg tables.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tributary_lake::metrics::{self, Metrics};
use tributary_lake::{LanderConfig, Mode};

/// Lands Debezium change events from Kafka into the raw Iceberg tables, exactly once.
///
/// Settings come from the config file and `TRIBUTARY_*` environment variables
/// (e.g. `TRIBUTARY_KAFKA__BROKERS`, `TRIBUTARY_LAKE__WAREHOUSE`, `TRIBUTARY_BATCH_MAX_ROWS`).
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// TOML config file.
    #[arg(long, env = "TRIBUTARY_CONFIG")]
    config: Option<PathBuf>,
    /// Land what is in the topics now, then exit (instead of following them).
    #[arg(long)]
    once: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = tributary_common::telemetry::init("tributary-lake");
    let config = LanderConfig::load(cli.config.as_deref(), std::env::vars())?;
    let metrics = Metrics::new()?;
    let shutdown = CancellationToken::new();

    if !config.metrics_listen.is_empty() {
        let listener = tokio::net::TcpListener::bind(&config.metrics_listen)
            .await
            .with_context(|| format!("cannot listen for /metrics on {}", config.metrics_listen))?;
        tracing::info!(addr = %config.metrics_listen, "serving /metrics and /healthz");
        let served = metrics.clone();
        tokio::spawn(metrics::serve(
            listener,
            move || served.encode(),
            shutdown.clone(),
        ));
    }

    tokio::spawn(tributary_common::shutdown::cancel_on_signal(
        shutdown.clone(),
    ));

    let mode = if cli.once { Mode::Drain } else { Mode::Follow };
    let summary = tributary_lake::run(config, mode, metrics, shutdown.clone()).await;
    shutdown.cancel();
    let summary = summary?;
    tracing::info!(
        landed = summary.landed,
        dead_letters = summary.dead_letters,
        commits = summary.commits,
        "done"
    );
    Ok(())
}
