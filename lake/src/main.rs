//! `tributary-lake`: lands the Debezium topics into the raw Iceberg tables.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tributary_common::health::{self, ReadinessChecks};
use tributary_lake::metrics::Metrics;
use tributary_lake::{LanderConfig, Mode, RawTable};

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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Run lake maintenance once (compaction, manifest merging, snapshot expiry, file sweep)
    /// with the `[maintenance]` settings, print one JSON report per table, and exit. Takes the
    /// namespace's writer lock: stop the lander first (it runs maintenance itself).
    Maintain {
        /// Only these tables (`pg_sale`, …); all raw tables by default.
        #[arg(long = "table", value_parser = parse_table)]
        tables: Vec<RawTable>,
    },
}

fn parse_table(name: &str) -> Result<RawTable, String> {
    RawTable::ALL
        .into_iter()
        .find(|t| t.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = RawTable::ALL.iter().map(|t| t.name()).collect();
            format!("unknown table {name:?}; one of {}", names.join(", "))
        })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = tributary_common::telemetry::init("tributary-lake");
    let config = LanderConfig::load(cli.config.as_deref(), std::env::vars())?;
    tributary_common::profile::check_section("", &config, config.lake.unused_credentials())?;
    if let Some(Command::Maintain { tables }) = &cli.command {
        for report in tributary_lake::maintenance::maintain_once(&config, tables).await? {
            println!("{}", serde_json::to_string(&report)?);
        }
        return Ok(());
    }
    let metrics = Metrics::new()?;
    let shutdown = CancellationToken::new();

    if !config.metrics_listen.is_empty() {
        let listener = tokio::net::TcpListener::bind(&config.metrics_listen)
            .await
            .with_context(|| format!("cannot listen for /metrics on {}", config.metrics_listen))?;
        tracing::info!(addr = %config.metrics_listen, "serving /metrics, /healthz and /readyz");
        let served = metrics.clone();
        tokio::spawn(health::serve(
            listener,
            move || served.encode(),
            readiness(&config, &metrics),
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

/// What the lander needs to do its work: Kafka (metadata answers), the Iceberg SQL catalog's
/// Postgres, and the warehouse on the object store (or its local folder); and whether it keeps
/// up (the records waiting in Kafka, the time since its last commit: `[health]`).
fn readiness(config: &LanderConfig, metrics: &Metrics) -> ReadinessChecks {
    let checks = ReadinessChecks::new();
    let timeout = checks.timeout();
    let (metrics, settings) = (metrics.clone(), config.health.clone());
    checks
        .check("kafka", health::kafka_metadata(&config.kafka, timeout))
        .check(
            "catalog",
            health::postgres_answers(&config.lake.catalog_uri),
        )
        .check(
            "object_store",
            health::object_store_lists(&config.lake.warehouse, &config.lake.s3, timeout),
        )
        // Optional: a lander behind is reported, not taken out of service (it is catching up).
        .optional_check("backlog", move || {
            let (lag, newest) = metrics.backlog();
            let judged = tributary_lake::metrics::judge_backlog(
                lag,
                newest,
                chrono::Utc::now().timestamp(),
                &settings,
            );
            async move { judged.map_err(Into::into) }
        })
}
