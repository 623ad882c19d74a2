//! `tributary-bench rebuild`: the marts' full rebuild on DataFusion (this process reads every
//! event and folds the whole lake into the kept state) against the same rebuild on Trino (the
//! stack's single node, `dev/up trino`: Trino reads every event and computes the totals, this
//! process ranks and publishes), on the histories of `tributary-bench marts`, each run `runs`
//! times: median and spread of the wall time, and the peak resident memory of the process that
//! did the work (this one for DataFusion, Trino's JVM for Trino), reset before each run through
//! `/proc/<pid>/clear_refs`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use tributary_common::{ClickHouseSettings, LakeSettings};
use tributary_marts::job::Engine;
use tributary_marts::state::{PostgresState, StateStore};
use tributary_marts::trino::{TrinoClient, TrinoSettings};
use tributary_marts::{MartsJob, RunMode};
use tributary_rankings::ClickHouseStore;

use crate::Row as ResultRow;
use crate::marts::{History, fill_history};

/// One rebuild by `job`: its wall time in seconds and the peak RSS (MiB) of `pid`, the process
/// doing the work.
async fn timed_rebuild(job: &MartsJob, pid: u32) -> Result<(f64, f64)> {
    crate::procfs::reset_peak_rss(pid)?;
    let started = Instant::now();
    job.run_with(RunMode::Rebuild).await?;
    Ok((
        started.elapsed().as_secs_f64(),
        crate::procfs::peak_rss_mib(pid)?,
    ))
}

/// One history size, both engines: the rows of the results table.
pub async fn history(
    lake: &LakeSettings,
    clickhouse: &ClickHouseSettings,
    trino: &TrinoSettings,
    trino_pid_file: &Path,
    id: &str,
    history: usize,
    runs: usize,
) -> Result<Vec<ResultRow>> {
    let History { catalog, ns, .. } = fill_history(lake, id, history).await?;
    let trino_pid = std::fs::read_to_string(trino_pid_file)
        .with_context(|| {
            format!(
                "no Trino pid in {}: start it with `dev/up trino`",
                trino_pid_file.display()
            )
        })?
        .trim()
        .parse::<u32>()
        .with_context(|| format!("{} holds no pid", trino_pid_file.display()))?;
    let mut ch = clickhouse.clone();
    ch.database = format!("bench_rebuild_{id}");
    let store = Arc::new(ClickHouseStore::new(&ch)?);
    let state = Arc::new(PostgresState::new(
        &lake.catalog_uri,
        format!("marts_state_rebuild_{ns}"),
    )?);
    let on_datafusion = MartsJob::new(catalog.clone(), ns.clone(), store.clone(), state.clone());
    let on_trino = MartsJob::new(catalog, ns.clone(), store, state.clone())
        .with_engine(Engine::Trino(TrinoClient::new(trino)?));
    let me = std::process::id();
    let (mut df_secs, mut df_mib, mut trino_secs, mut trino_mib) = (vec![], vec![], vec![], vec![]);
    for run in 1..=runs {
        let (secs, mib) = timed_rebuild(&on_datafusion, me)
            .await
            .context("DataFusion rebuild")?;
        df_secs.push(secs);
        df_mib.push(mib);
        let (secs, mib) = timed_rebuild(&on_trino, trino_pid)
            .await
            .context("Trino rebuild")?;
        trino_secs.push(secs);
        trino_mib.push(mib);
        eprintln!(
            "{ns}: run {run}/{runs}: DataFusion {:.2}s (peak {:.0} MiB), Trino {:.2}s (peak {:.0} MiB)",
            df_secs[run - 1],
            df_mib[run - 1],
            trino_secs[run - 1],
            trino_mib[run - 1]
        );
    }
    state.reset().await?;
    // The lake of this history and the rankings it published: a 10 M history is gigabytes.
    let mut settings = lake.clone();
    settings.namespace = ns.clone();
    crate::cleanup::drop_lake_namespace(&settings).await;
    crate::cleanup::drop_clickhouse_database(&ch, &ch.database).await;

    let row = |engine: &str, secs: Vec<f64>, mib: Vec<f64>, what: &str| {
        let (median, min, max) = crate::summary(secs);
        let (peak, _, peak_max) = crate::summary(mib);
        ResultRow {
            benchmark: "rebuild".into(),
            subject: format!("{engine} rebuild over {history}"),
            events: history,
            seconds: median,
            events_per_second: history as f64 / median,
            note: format!(
                "median of {runs} (min {min:.2}s, max {max:.2}s); peak RSS of {what} median {peak:.0} MiB (max {peak_max:.0})"
            ),
        }
    };
    Ok(vec![
        row(
            "DataFusion (in process, kept state rebuilt)",
            df_secs,
            df_mib,
            "the marts process",
        ),
        row(
            "Trino 1 node (totals on Trino, kept state untouched)",
            trino_secs,
            trino_mib,
            "Trino's JVM",
        ),
    ])
}
