//! `tributary-marts`: parse the CLI, load config, open the lake and ClickHouse, then run once
//! or on a schedule until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tributary_common::health::{self, ReadinessChecks};
use tributary_marts::job::Engine;
use tributary_marts::job::compute_as_of;
use tributary_marts::state::PostgresState;
use tributary_marts::trino::TrinoClient;
use tributary_marts::{MartsConfig, MartsJob, RunMode, RunOutcome};
use tributary_rankings::ranking::PeriodRankings;
use tributary_rankings::{
    ClickHouseStore, LakeSnapshots, Month, PublicationWriter, RankingQueries,
};
use tributary_raw::AsOf;
use tributary_raw::snapshots::{TableSnapshots, list_snapshots};

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
    /// With a single run: forget the kept incremental state and fold the whole lake again (the
    /// result must equal the incremental runs'; use it after the lake was recreated).
    #[arg(long, global = true)]
    rebuild: bool,
    /// With `--rebuild`: the engine that computes the totals. `trino` has the Trino cluster of
    /// the config's `trino` section compute them from the lake (for histories larger than one
    /// machine); the kept incremental state is then left as it is.
    #[arg(long, value_enum, default_value_t = EngineArg::Datafusion, requires = "rebuild", global = true)]
    engine: EngineArg,
    #[command(subcommand)]
    command: Option<Command>,
}

/// `--engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum EngineArg {
    /// Fold the whole lake in this process (DataFusion and the kept state).
    Datafusion,
    /// Compute the totals on Trino.
    Trino,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run once and exit: non-zero if the run failed.
    RunOnce,
    /// Run now and then every `interval_ms` until SIGINT/SIGTERM (the default).
    Schedule,
    /// Time travel: compute both rankings from the lake as it was, print them and the
    /// snapshots read. Publishes nothing; ClickHouse is not needed.
    AsOf {
        /// Pin snapshots, `pg_sale=<id>,pg_salesman=<id>,…`; tables not named are read at
        /// their current snapshot (`tributary-marts snapshots` lists the ids).
        #[arg(long, value_parser = AsOf::parse_snapshots, conflicts_with = "time", required_unless_present = "time")]
        snapshot: Option<AsOf>,
        /// Each table as it was at this time (RFC 3339, e.g. `2026-11-25T12:00:00Z`): its
        /// latest snapshot committed at or before it; a table with none by then is empty.
        #[arg(long)]
        time: Option<DateTime<Utc>>,
        /// Show this UTC month of `sold_at` (`YYYY-MM`) instead of all time.
        #[arg(long)]
        month: Option<Month>,
        /// Rows per ranking (and salesmen per city).
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// List every raw table's snapshots: id, commit time, operation, summary (with the
    /// `tributary.offsets` the lander records).
    Snapshots,
    /// Prune ClickHouse once by `[retention]` (scheduled runs do it every `interval_s`):
    /// partitions of publications older than the retention dropped (the latest and the pinned
    /// stay), old `mart_runs` deleted, the dropped publications' lake pins released. Prints
    /// what it did as JSON.
    Prune,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = tributary_common::telemetry::init("tributary-marts");
    let mut config: MartsConfig = tributary_common::load(cli.config.as_deref(), std::env::vars())?;
    if let Some(interval) = cli.interval {
        config.interval_ms = interval;
    }
    config.validate()?;
    tributary_common::profile::check_section("", &config, config.lake.unused_credentials())?;

    let catalog = tributary_raw::catalog::open(&config.lake)
        .await
        .context("opening the lake catalog")?;
    match cli.command {
        Some(Command::AsOf {
            snapshot,
            time,
            month,
            top,
        }) => {
            let as_of = match (snapshot, time) {
                (Some(pins), _) => pins,
                (None, Some(at)) => AsOf::Timestamp(at),
                // clap requires one of the two.
                (None, None) => AsOf::Latest,
            };
            let (snapshots, rankings) =
                compute_as_of(&catalog, &config.lake.namespace, &as_of).await?;
            print!(
                "{}",
                render_as_of(&as_of, &snapshots, &rankings, month, top)
            );
            return Ok(());
        }
        Some(Command::Snapshots) => {
            let tables = list_snapshots(&catalog, &config.lake.namespace).await?;
            print!("{}", render_snapshots(&tables));
            return Ok(());
        }
        _ => {}
    }
    let state = PostgresState::new(config.state_url(), config.state_schema())?;
    let metrics = tributary_marts::metrics::MartsMetrics::new()?;
    let lineage = tributary_marts::lineage::MartsLineage::from_env(&config);
    // Emitting never blocks a run; failures are counted here (`tributary_lineage_emit_failures_total`).
    let _ = lineage.lineage().register_metrics(metrics.registry());
    let store = Arc::new(ClickHouseStore::new(&config.clickhouse)?);
    let job = MartsJob::new(
        Arc::new(catalog),
        config.lake.namespace.clone(),
        store.clone(),
        Arc::new(state),
    )
    .with_metrics(metrics.clone())
    .with_lineage(lineage)
    .with_pins(
        Arc::new(tributary_raw::pins::SnapshotPins::new(&config.lake)?),
        format!("marts:{}", config.state_schema()),
    )
    .with_retention(config.retention.clone())
    .with_max_events_per_run(config.max_events_per_run)
    .with_publication_announcer(tributary_raw::commits::Announcer::for_publications(
        &config.lake,
    ));
    let job = match cli.engine {
        EngineArg::Datafusion => job,
        EngineArg::Trino => job.with_engine(Engine::Trino(TrinoClient::new(&config.trino)?)),
    };

    if matches!(cli.command, Some(Command::Prune)) {
        store.ensure_schema().await?;
        let report = job.prune(&config.retention).await?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    if cli.once || cli.rebuild || matches!(cli.command, Some(Command::RunOnce)) {
        let mut mode = if cli.rebuild {
            RunMode::Rebuild
        } else if cli.force {
            RunMode::Force
        } else {
            RunMode::Incremental
        };
        // Once means up to the lake as it is now: a run stopped at its bound on events is
        // followed by incremental runs until one catches up.
        loop {
            match job.run_with(mode).await? {
                RunOutcome::Published {
                    publication_id,
                    caught_up,
                    ..
                } => {
                    println!("published {publication_id}");
                    if caught_up {
                        break;
                    }
                }
                RunOutcome::Unchanged { publication_id } => {
                    println!("unchanged {publication_id}");
                    break;
                }
            }
            mode = RunMode::Incremental;
        }
        return Ok(());
    }

    let shutdown = CancellationToken::new();
    if !config.metrics_listen.is_empty() {
        let listener = tokio::net::TcpListener::bind(&config.metrics_listen)
            .await
            .with_context(|| format!("cannot listen for /metrics on {}", config.metrics_listen))?;
        tracing::info!(addr = %config.metrics_listen, "serving /metrics, /healthz and /readyz");
        tokio::spawn(health::serve(
            listener,
            {
                let metrics = metrics.clone();
                move || metrics.encode()
            },
            readiness(&config, store, metrics),
            shutdown.clone(),
        ));
    }
    tokio::spawn(tributary_common::shutdown::cancel_on_signal(
        shutdown.clone(),
    ));
    // Runs start when the lander announces a commit; the interval is the longest wait.
    let (job, listening) = match tributary_raw::commits::listen(&config.lake).await {
        Some((commits, task)) => (job.with_commit_notifications(commits), Some(task)),
        None => (job, None),
    };
    tracing::info!(interval_ms = config.interval_ms, "marts scheduler started");
    job.run_scheduled(Duration::from_millis(config.interval_ms), shutdown)
        .await;
    if let Some(task) = listening {
        task.abort();
    }
    Ok(())
}

/// What a scheduled run needs: the Iceberg SQL catalog, the warehouse it points into, the
/// Postgres of the kept incremental state, and ClickHouse where the rankings are published.
fn readiness(
    config: &MartsConfig,
    store: Arc<ClickHouseStore>,
    metrics: tributary_marts::metrics::MartsMetrics,
) -> ReadinessChecks {
    let checks = ReadinessChecks::new();
    let timeout = checks.timeout();
    let clickhouse_url = config.clickhouse.url.clone();
    let settings = config.health.clone();
    checks
        .check(
            "catalog",
            health::postgres_answers(&config.lake.catalog_uri),
        )
        .check(
            "object_store",
            health::object_store_lists(&config.lake.warehouse, &config.lake.s3, timeout),
        )
        .check("state", health::postgres_answers(config.state_url()))
        .check("clickhouse", move || {
            let (store, url) = (store.clone(), clickhouse_url.clone());
            async move {
                store
                    .ping()
                    .await
                    .map(|()| format!("{url} answers"))
                    .map_err(|e| format!("{url}: {e}").into())
            }
        })
        // Optional: runs failing or stalled are reported, not taken out of service.
        .optional_check("runs", move || {
            let (failed, last_good) = metrics.runs_behind();
            let judged = tributary_marts::metrics::judge_runs(
                failed,
                last_good,
                chrono::Utc::now().timestamp(),
                &settings,
            );
            async move { judged.map_err(Into::into) }
        })
}

/// The `as-of` report: what was read, then both rankings of the chosen period. Pure.
fn render_as_of(
    as_of: &AsOf,
    snapshots: &LakeSnapshots,
    rankings: &PeriodRankings,
    month: Option<Month>,
    top: usize,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let asked = match as_of {
        AsOf::Latest => "latest".to_string(),
        AsOf::Timestamp(at) => format!("time {}", at.to_rfc3339()),
        AsOf::Snapshots(pins) => format!("snapshots {pins:?}"),
    };
    let _ = writeln!(out, "as of {asked}");
    let _ = writeln!(out, "publication_id {}", snapshots.publication_id());
    let _ = writeln!(out, "{:<12} {:>20}", "table", "snapshot_id");
    for s in &snapshots.0 {
        let id = s
            .snapshot_id
            .map_or_else(|| "none (empty)".to_string(), |id| id.to_string());
        let _ = writeln!(out, "{:<12} {:>20}", s.table, id);
    }
    let (period, ranked) = match month {
        None => ("all time".to_string(), Some(&rankings.all)),
        Some(m) => (m.to_string(), rankings.months.get(&m)),
    };
    let _ = writeln!(out);
    let Some(ranked) = ranked else {
        let _ = writeln!(out, "{period}: no current sales");
        return out;
    };
    let summary = &ranked.summary;
    let _ = writeln!(
        out,
        "{period}: {} sales, revenue {}, {} unresolved",
        summary.sales, summary.revenue, summary.unresolved_sales
    );
    let _ = writeln!(out, "\ntop sales per city");
    let _ = writeln!(
        out,
        "{:>4} {:>10} {:<24} {:>16} {:>7}   top salesmen there",
        "rank", "city_id", "city", "revenue", "sales"
    );
    for city in ranked.cities.iter().take(top) {
        let name = city.city.info.as_ref().map_or_else(
            || "(unresolved)".to_string(),
            |i| format!("{}/{}", i.name, i.state),
        );
        let there: Vec<String> = city
            .salesmen
            .iter()
            .take(top)
            .map(|s| format!("{}. {} {}", s.rank, salesman_name(&s.row), s.row.revenue))
            .collect();
        let _ = writeln!(
            out,
            "{:>4} {:>10} {:<24} {:>16} {:>7}   {}",
            city.rank,
            city.city.city_id,
            name,
            city.city.revenue,
            city.city.sales,
            there.join("; ")
        );
    }
    let _ = writeln!(out, "\ntop salesmen nationwide");
    let _ = writeln!(
        out,
        "{:>4} {:>12} {:<24} {:>16} {:>7}",
        "rank", "salesman_id", "salesman", "revenue", "sales"
    );
    for s in ranked.salesmen.iter().take(top) {
        let _ = writeln!(
            out,
            "{:>4} {:>12} {:<24} {:>16} {:>7}",
            s.rank,
            s.row.salesman_id,
            salesman_name(&s.row),
            s.row.revenue,
            s.row.sales
        );
    }
    out
}

fn salesman_name(s: &tributary_rankings::ranking::SalesmanTotals) -> String {
    s.info.as_ref().map_or_else(
        || format!("#{} (unresolved)", s.salesman_id),
        |i| i.name.clone(),
    )
}

/// The `snapshots` listing, oldest first per table. Pure.
fn render_snapshots(tables: &[TableSnapshots]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for table in tables {
        let current = table
            .current_snapshot_id
            .map_or_else(|| "none".to_string(), |id| id.to_string());
        let _ = writeln!(
            out,
            "{} (current {current}, {} snapshots)",
            table.table,
            table.snapshots.len()
        );
        for s in &table.snapshots {
            let summary: Vec<String> = s.summary.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(
                out,
                "  {:>20}  {}  {:<9} {}",
                s.snapshot_id,
                s.committed_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                s.operation,
                summary.join(" ")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_cli_is_consistent_and_as_of_needs_a_snapshot_or_a_time() {
        Cli::command().debug_assert();
        assert!(Cli::try_parse_from(["m", "as-of"]).is_err());
        assert!(Cli::try_parse_from(["m", "as-of", "--time", "yesterday"]).is_err());
        assert!(
            Cli::try_parse_from([
                "m",
                "as-of",
                "--time",
                "2026-01-01T00:00:00Z",
                "--snapshot",
                "pg_sale=1"
            ])
            .is_err()
        );
        let cli = Cli::try_parse_from([
            "m",
            "as-of",
            "--snapshot",
            "pg_sale=1",
            "--month",
            "2026-02",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::AsOf {
                snapshot: Some(AsOf::Snapshots(_)),
                month: Some(_),
                ..
            })
        ));
        assert!(matches!(
            Cli::try_parse_from(["m", "snapshots"]).unwrap().command,
            Some(Command::Snapshots)
        ));
    }

    #[test]
    fn an_empty_lake_renders() {
        let snapshots = LakeSnapshots(vec![tributary_rankings::LakeSnapshot {
            table: "pg_sale".into(),
            snapshot_id: None,
        }]);
        let text = render_as_of(
            &AsOf::Latest,
            &snapshots,
            &PeriodRankings::default(),
            Some("2026-01".parse().unwrap()),
            10,
        );
        assert!(text.contains("pg_sale:none"), "{text}");
        assert!(text.contains("2026-01: no current sales"), "{text}");
    }
}
