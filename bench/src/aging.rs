//! `tributary-bench aging`: does a table's commit cost grow with its age? `commits` small
//! commits (10 rows each, through the lander's own `TableSink`) into one table, once without
//! maintenance (at most `plain_commits`: its cost grows with its age) and once with it run every
//! `maintain_every` commits (as the lander runs it on its interval). Reported: the median commit
//! time of commits 51–150 against the 100 before commit 1,000, 2,000, 5,000, 10,000 and the
//! last, and the table's `metadata.json`, snapshots and manifests at the end.
//!
//! The benchmark compresses a table's age into minutes, so maintenance runs with a short
//! retention (5 s at full resolution, then one snapshot per 10 s for a minute): at the lander's
//! defaults (1 h, then hourly for a week) the same bound holds, reached after an hour.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use iceberg::Catalog;
use tributary_common::LakeSettings;
use tributary_lake::batch::{Provenance, Row, change_row};
use tributary_lake::catalog::ensure_tables;
use tributary_lake::decode::{Cell, ChangeEvent, Op};
use tributary_lake::maintenance::{Maintainer, MaintenanceSettings};
use tributary_lake::sink::TableSink;
use tributary_raw::RawTable;
use tributary_raw::offsets::{OffsetMap, TopicPartition};

use crate::Row as ResultRow;

const ROWS_PER_COMMIT: i64 = 10;

fn city_row(offset: i64) -> Row {
    let event = ChangeEvent {
        op: Op::Create,
        image: vec![
            Cell::Long(offset),
            Cell::Str(format!("city {offset}")),
            Cell::Str("SP".into()),
        ],
        before_json: None,
        after_json: Some(format!(r#"{{"id":{offset}}}"#)),
        source_lsn: offset,
        source_ts_micros: 1,
        source_txid: Some(1),
    };
    let prov = Provenance {
        topic: "aging.city".into(),
        partition: 0,
        offset,
        ingest_time_micros: 2,
        trace_id: None,
    };
    change_row(event, &prov)
}

/// The maintenance the benchmark runs: the lander's defaults with a retention short enough for
/// the table to reach it within the run (5 s), or as given (`--snapshot-retention-s`): at 3,600,
/// the lander's former default, nothing expires within the run, so the table holds every
/// snapshot, as a table at those defaults held an hour of them (3,600 at one commit a second).
pub fn settings(snapshot_retention_s: u64) -> MaintenanceSettings {
    MaintenanceSettings {
        snapshot_retention_s,
        history_retention_s: snapshot_retention_s.max(60),
        history_granularity_s: 10,
        orphan_grace_s: 0,
        ..MaintenanceSettings::default()
    }
}

fn median(values: Vec<f64>) -> f64 {
    crate::summary(values).0
}

/// Both variants; the result rows.
pub async fn run(
    lake: &LakeSettings,
    id: &str,
    commits: usize,
    plain_commits: usize,
    maintain_every: usize,
    snapshot_retention_s: u64,
) -> Result<Vec<ResultRow>> {
    anyhow::ensure!(
        commits.min(plain_commits) >= 250,
        "at least 250 commits per variant (the windows are 100 each)"
    );
    let catalog: Arc<dyn Catalog> = Arc::new(tributary_raw::catalog::open(lake).await?);
    let mut rows = Vec::new();
    for maintained in [false, true] {
        // The unmaintained table's commit cost grows with its age (about 1.2 ms a commit per
        // snapshot here), so it stops at `plain_commits`: 20,000 would take days.
        let commits = if maintained {
            commits
        } else {
            commits.min(plain_commits)
        };
        let namespace = format!(
            "bench_aging_{id}_{}",
            if maintained { "maintained" } else { "plain" }
        );
        ensure_tables(catalog.as_ref(), &namespace).await?;
        let mut sink = TableSink::open(catalog.clone(), &namespace, RawTable::PgCity).await?;
        let maintainer = Maintainer::new(
            settings(snapshot_retention_s),
            lake,
            &namespace,
            catalog.clone(),
        )?;
        let mut seconds = Vec::with_capacity(commits);
        let mut maintenance_seconds = Vec::new();
        let started = Instant::now();
        for commit in 0..commits as i64 {
            let first = commit * ROWS_PER_COMMIT;
            let batch: Vec<Row> = (first..first + ROWS_PER_COMMIT).map(city_row).collect();
            let offsets: OffsetMap = [(
                TopicPartition::new("aging.city", 0),
                first + ROWS_PER_COMMIT,
            )]
            .into_iter()
            .collect();
            let report = sink.commit(&batch, &offsets).await?;
            seconds.push(report.elapsed.as_secs_f64());
            if maintained && (commit + 1) % maintain_every as i64 == 0 {
                let report = sink.maintain(&maintainer).await?;
                maintenance_seconds.push(report.elapsed.as_secs_f64());
            }
            if (commit + 1) % 1000 == 0 {
                eprintln!(
                    "aging: maintained={maintained} commit {} took {:.3} s",
                    commit + 1,
                    seconds[seconds.len() - 1]
                );
            }
        }
        let total = started.elapsed().as_secs_f64();
        let table =
            tributary_raw::catalog::load_table(catalog.as_ref(), &namespace, RawTable::PgCity)
                .await?;
        let metadata_bytes = metadata_bytes(&table).await?;
        let snapshot = table
            .metadata()
            .current_snapshot()
            .expect("a table committed to has a snapshot");
        let manifests = tributary_raw::incremental::manifest_list(&table, snapshot, &namespace)
            .await?
            .entries()
            .len();
        let subject = if maintained {
            format!("maintained every {maintain_every} commits")
        } else {
            "no maintenance".to_string()
        };
        let early = median(seconds[50..150].to_vec());
        rows.push(window_row(&subject, 51, 150, early, String::new()));
        // The 100 commits before each of these ends, the last one's note saying where the
        // table stands.
        let ends: Vec<usize> = [1_000, 2_000, 3_000, 4_000, 5_000, 10_000]
            .into_iter()
            .filter(|&end| end < commits)
            .chain([commits])
            .collect();
        for end in ends {
            let late = median(seconds[end - 100..end].to_vec());
            let mut note = format!("{:.2}× commits 51–150", late / early);
            if end == commits {
                note.push_str(&format!(
                    "; at the end: metadata.json {:.0} KB, {} snapshots, {} manifests",
                    metadata_bytes as f64 / 1024.0,
                    table.metadata().snapshots().len(),
                    manifests
                ));
                if maintained {
                    note.push_str(&format!(
                        "; {} maintenance runs, median {:.3} s, max {:.3} s",
                        maintenance_seconds.len(),
                        median(maintenance_seconds.clone()),
                        maintenance_seconds.iter().copied().fold(0.0, f64::max)
                    ));
                }
            }
            rows.push(window_row(&subject, end - 99, end, late, note));
        }
        eprintln!(
            "aging: maintained={maintained} {commits} commits in {total:.0} s: median {early:.3} s early"
        );
        let mut settings = lake.clone();
        settings.namespace = namespace;
        crate::cleanup::drop_lake_namespace(&settings).await;
    }
    Ok(rows)
}

/// The median commit of commits `first`–`last` of one variant.
fn window_row(subject: &str, first: usize, last: usize, median: f64, note: String) -> ResultRow {
    ResultRow {
        benchmark: "aging".into(),
        subject: format!("{subject}: commits {first}–{last}, median commit"),
        events: 100 * ROWS_PER_COMMIT as usize,
        seconds: median,
        events_per_second: ROWS_PER_COMMIT as f64 / median,
        note,
    }
}

/// The size of `table`'s current `metadata.json` (0 before its first commit).
pub async fn metadata_bytes(table: &iceberg::table::Table) -> Result<u64> {
    Ok(match table.metadata_location() {
        Some(location) => table.file_io().new_input(location)?.metadata().await?.size,
        None => 0,
    })
}

/// Ages `tables` of `lake`'s namespace (made here if missing) to `snapshots` snapshots each, with
/// empty commits (no rows, no offsets) and the lander's default maintenance every 100 of them,
/// all tables at once; returns each table's `metadata.json` bytes at the end, by table name. A
/// busy table at the lander's defaults keeps up to ~1,400 (3,600 and more at the former 1-h
/// windows) and its commits cost more with them (`aging --snapshot-retention-s 3600`):
/// `cdc --aged-snapshots` measures freshness on such tables instead of new ones.
pub async fn age_tables(
    lake: &LakeSettings,
    tables: &[RawTable],
    snapshots: usize,
) -> Result<BTreeMap<String, u64>> {
    let started = Instant::now();
    let catalog: Arc<dyn Catalog> = Arc::new(tributary_raw::catalog::open(lake).await?);
    ensure_tables(catalog.as_ref(), &lake.namespace).await?;
    let age = |table: RawTable| {
        let catalog = catalog.clone();
        async move {
            let mut sink = TableSink::open(catalog.clone(), &lake.namespace, table).await?;
            let maintainer = Maintainer::new(
                MaintenanceSettings::default(),
                lake,
                &lake.namespace,
                catalog.clone(),
            )?;
            for commit in 1..=snapshots {
                sink.commit(&[], &OffsetMap::new()).await?;
                if commit % 100 == 0 {
                    sink.maintain(&maintainer).await?;
                }
            }
            let loaded =
                tributary_raw::catalog::load_table(catalog.as_ref(), &lake.namespace, table)
                    .await?;
            anyhow::Ok((table.to_string(), metadata_bytes(&loaded).await?))
        }
    };
    let aged: BTreeMap<String, u64> = futures::future::try_join_all(tables.iter().map(|&t| age(t)))
        .await?
        .into_iter()
        .collect();
    eprintln!(
        "aging: {aged:?} (metadata.json bytes) at {snapshots} snapshots in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(aged)
}
