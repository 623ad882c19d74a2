//! An engine that is not ours reads the lake: Trino (`dev/up trino`, the Iceberg connector on the
//! lander's JDBC catalog and bucket) against what the three sources landed in this run's
//! namespace (Postgres with an update and a delete, a partner file naming salesmen by code and a
//! city in another case and spacing, the ERP simulator).
//!
//! - Trino lists exactly the tables iceberg-rust lists, and every snapshot of every table reads
//!   (`FOR VERSION AS OF`) with iceberg-rust's row count.
//! - Time travel: at the snapshots an earlier publication recorded, Trino's plain SQL (current
//!   state per key, codes and city names resolved) gives the rankings DataFusion gives there.
//! - `tributary-marts run-once --rebuild --engine trino` publishes, row for row, the rankings the
//!   incremental marts published for the same snapshots, and so does the DataFusion rebuild;
//!   its lineage names Trino as the processing engine.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use iceberg::{Catalog, NamespaceIdent};
use tributary_e2e::{
    Service, TestPipeline, clickhouse_query, eventually, lineage_events, repo_root, require_stack,
    run_bin,
};
use tributary_ingest::files::inbox::Inbox;
use tributary_marts::job::compute_as_of;
use tributary_marts::trino::{TrinoClient, TrinoSettings};
use tributary_rankings::ranking::rank_periods;
use tributary_rankings::{LakeSnapshot, LakeSnapshots};
use tributary_raw::AsOf;
use tributary_raw::snapshots::{RAW_TABLES, list_snapshots, load_raw_table};

/// The stack's Trino, or a loud failure saying how to start it.
async fn require_trino() -> Result<TrinoClient> {
    let trino = TrinoClient::new(&TrinoSettings::default())?;
    let version = trino.version().await.with_context(|| {
        "Trino is not running on 127.0.0.1:8089: start it with `dev/up trino` (make interop does)"
    })?;
    ensure!(version == "476", "Trino {version}: the stack pins 476");
    Ok(trino)
}

/// Rows of `table` at `snapshot` (the current one when `None`) as iceberg-rust reads them.
async fn iceberg_rows(catalog: &dyn Catalog, ns: &str, table: &str, snapshot: i64) -> Result<u64> {
    let table = load_raw_table(catalog, ns, table).await?;
    let batches = tributary_raw::catalog::read_table(&table, Some(snapshot)).await?;
    Ok(batches.iter().map(|b| b.num_rows() as u64).sum())
}

/// A single number Trino answers.
async fn trino_count(trino: &TrinoClient, sql: &str) -> Result<u64> {
    let answer = trino.query("interop", sql).await?;
    answer
        .rows
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_u64())
        .with_context(|| format!("{sql}: no count in {:?}", answer.rows))
}

/// The business columns of every row of publication `id` written by its latest run, per table,
/// in a stable order (TSV): what two runs of the same publication must agree on.
/// A ranking table's rows are each period's where they are (the publication that wrote them,
/// which is an earlier one for a month carried by reference), those of the latest write of it.
async fn publication_rows(db: &str, id: &str) -> Result<String> {
    let mut out = String::new();
    for (table, columns) in [
        (
            "city_ranking",
            "period, rank, city_id, city_name, city_state, city_resolved, revenue, sales, salesmen",
        ),
        (
            "city_salesman_ranking",
            "period, city_id, rank, salesman_id, salesman_name, salesman_code, salesman_resolved, revenue, sales",
        ),
        (
            "salesman_ranking",
            "period, rank, salesman_id, salesman_name, salesman_code, salesman_resolved, revenue, sales",
        ),
        (
            "publication_periods",
            "period, sales, revenue, cities, salesmen, unresolved_sales, unresolved_revenue, \
             sales_without_city, sales_without_salesman, sales_without_month",
        ),
        (
            "publication_sources",
            "source, position, newest_event_at, events",
        ),
    ] {
        let sql = if table.ends_with("_ranking") {
            let rows_of = format!(
                "(publication_id, period) IN (SELECT rows_publication_id, period \
                 FROM {db}.publication_periods FINAL WHERE publication_id = '{id}')"
            );
            format!(
                "SELECT {columns} FROM {db}.{table} \
                  WHERE (publication_id, period, version) IN (SELECT publication_id, period, max(version) \
                    FROM {db}.{table} WHERE {rows_of} GROUP BY publication_id, period) \
                  ORDER BY {columns} FORMAT TSV"
            )
        } else {
            format!(
                "SELECT {columns} FROM {db}.{table} \
                  WHERE publication_id = '{id}' \
                    AND version = (SELECT max(version) FROM {db}.{table} WHERE publication_id = '{id}') \
                  ORDER BY {columns} FORMAT TSV"
            )
        };
        let rows = clickhouse_query(&sql).await?;
        out.push_str(&format!("# {table}\n{rows}"));
    }
    Ok(out)
}

/// The publication id a `run-once` printed.
fn published(out: &str) -> Result<String> {
    out.lines()
        .find_map(|l| l.strip_prefix("published "))
        .map(str::to_string)
        .with_context(|| format!("the run published nothing: {out}"))
}

/// `pg_sale:1,pg_salesman:2,…` back into the snapshots it names.
fn snapshots_of(publication_id: &str) -> Result<LakeSnapshots> {
    publication_id
        .split(',')
        .map(|pin| {
            let (table, id) = pin.split_once(':').context("table:snapshot")?;
            Ok(LakeSnapshot {
                table: table.to_string(),
                snapshot_id: if id == "none" {
                    None
                } else {
                    Some(id.parse()?)
                },
            })
        })
        .collect::<Result<_>>()
        .map(LakeSnapshots)
}

#[tokio::test(flavor = "multi_thread")]
async fn trino_reads_every_snapshot_and_rebuilds_the_rankings_row_for_row() -> Result<()> {
    require_stack();
    let trino = require_trino().await?;
    let run = TestPipeline::with_source().await?;
    let ns = run.namespace();
    let db = run.db();
    let settings = tributary_common::LakeSettings {
        warehouse: "s3://warehouse".into(),
        namespace: ns.clone(),
        ..Default::default()
    };
    let catalog = tributary_raw::catalog::open(&settings).await?;

    let mut services = vec![run.start_sim("interop-erp-sim", 19, 30).await?];
    for (name, bin, args, env) in [
        ("interop-lake", "tributary-lake", &[][..], run.lake_env()),
        (
            "interop-files",
            "tributary-ingest",
            &["files"],
            run.files_env(),
        ),
        ("interop-erp", "tributary-ingest", &["erp"], run.erp_env()),
    ] {
        services.push(Service::start(name, bin, args, &env));
    }
    // Natural keys: a known code in a city written in another case and spacing, and a code no
    // one knows (an unresolved sale).
    Inbox::open(&run.inbox(), &Default::default())?
        .put_bytes(
            "acme/interop.csv",
            b"pedido;vendedor;cidade;uf;valor;data\n\
              I-1;S001;  campinas ;sp;10,00;15/03/2026 10:00\n\
              I-2;S002;CAMPINAS;SP;20,50;16/04/2026 10:00\n\
              I-3;ZZZ9;Campinas;SP;5,00;16/04/2026 11:00\n"
                .to_vec(),
        )
        .await?;
    let sample: i64 = db.query_one("SELECT count(*) FROM sale", &[]).await?.get(0);
    let landed = |want_pg_sale: u64| {
        let (catalog, ns) = (&catalog, &ns);
        async move {
            let mut rows = Vec::new();
            for table in RAW_TABLES {
                let loaded = match load_raw_table(catalog, ns, table).await {
                    Ok(t) => t,
                    Err(_) => return Ok(None),
                };
                let Some(current) = loaded.metadata().current_snapshot_id() else {
                    return Ok(None);
                };
                rows.push(iceberg_rows(catalog, ns, table, current).await?);
            }
            // pg_sale, pg_salesman, pg_city, file_sale, erp_sale
            Ok((rows[0] >= want_pg_sale && rows[3] >= 3 && rows[4] > 0).then_some(()))
        }
    };
    let sample_rows = u64::try_from(sample)?;
    eventually(Duration::from_secs(180), || landed(sample_rows))
        .await
        .context("the lander did not land every source")?;
    let marts_env = run.marts_env();
    let earlier = published(&run_bin("tributary-marts", &["run-once"], &marts_env)?)?;

    // Changes after that publication: an update and a delete in Postgres.
    db.execute(
        "UPDATE sale SET amount = amount + 1000 WHERE id = (SELECT min(id) FROM sale)",
        &[],
    )
    .await?;
    db.execute(
        "DELETE FROM sale WHERE id = (SELECT max(id) FROM sale)",
        &[],
    )
    .await?;
    eventually(Duration::from_secs(120), || landed(sample_rows + 2))
        .await
        .context("the update and the delete did not land")?;
    drop(services); // the lake stands still from here
    let latest = published(&run_bin("tributary-marts", &["run-once"], &marts_env)?)?;
    ensure!(latest != earlier, "the changes made no new publication");

    // Trino lists what iceberg-rust lists.
    let rust_tables: BTreeSet<String> = catalog
        .list_tables(&NamespaceIdent::new(ns.clone()))
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    let trino_tables: BTreeSet<String> = trino
        .query("interop", &format!("SHOW TABLES FROM iceberg.\"{ns}\""))
        .await?
        .rows
        .iter()
        .filter_map(|r| r.first()?.as_str().map(str::to_string))
        .collect();
    ensure!(
        trino_tables == rust_tables,
        "Trino lists {trino_tables:?}, iceberg-rust {rust_tables:?}"
    );

    // Every snapshot of every table, same row count.
    let snapshots_checked = every_snapshot_reads_the_same(&trino, &catalog, &ns).await?;
    // Every raw table, and pg_sale at least twice (before and after the update and delete).
    ensure!(
        snapshots_checked > RAW_TABLES.len(),
        "only {snapshots_checked} snapshots read"
    );

    // Time travel: the rankings at the earlier publication's snapshots, by both engines.
    let earlier_snapshots = snapshots_of(&earlier)?;
    let pins = AsOf::Snapshots(
        earlier_snapshots
            .0
            .iter()
            .filter_map(|s| Some((s.table.clone(), s.snapshot_id?)))
            .collect(),
    );
    let (_, by_datafusion) = compute_as_of(&catalog, &ns, &pins).await?;
    let by_trino = tributary_marts::trino::compute_totals(&trino, &ns, &earlier_snapshots).await?;
    ensure!(
        rank_periods(by_trino.totals) == by_datafusion,
        "Trino's rankings at {earlier} differ from DataFusion's"
    );

    // The rebuild on Trino publishes the incremental run's rows, and so does DataFusion's.
    let incremental = publication_rows(&ns, &latest).await?;
    ensure!(incremental.contains("\nall\t"), "{incremental}");
    let events_path = repo_root().join(format!(".stack/e2e/interop-lineage-{}.jsonl", run.suffix));
    let mut trino_env = marts_env.clone();
    trino_env.extend(
        [
            ("OPENLINEAGE__TRANSPORT__TYPE", "file".to_string()),
            (
                "OPENLINEAGE__TRANSPORT__LOG_FILE_PATH",
                events_path.display().to_string(),
            ),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    let out = run_bin(
        "tributary-marts",
        &["run-once", "--rebuild", "--engine", "trino"],
        &trino_env,
    )?;
    ensure!(published(&out)? == latest, "{out}");
    let on_trino = publication_rows(&ns, &latest).await?;
    ensure!(
        on_trino == incremental,
        "Trino's rebuild differs:\n{on_trino}\nincremental:\n{incremental}"
    );
    let engines: Vec<String> = lineage_events(&events_path)
        .iter()
        .filter(|e| e["job"]["name"] == "tributary-marts.rankings")
        .map(|e| {
            format!(
                "{} {}",
                e["eventType"].as_str().unwrap_or("?"),
                e["run"]["facets"]["processing_engine"]["name"]
                    .as_str()
                    .unwrap_or("?")
            )
        })
        .collect();
    ensure!(
        engines == ["START trino", "COMPLETE trino"],
        "lineage of the Trino rebuild: {engines:?}"
    );
    let out = run_bin("tributary-marts", &["run-once", "--rebuild"], &marts_env)?;
    ensure!(published(&out)? == latest, "{out}");
    let on_datafusion = publication_rows(&ns, &latest).await?;
    ensure!(
        on_datafusion == incremental,
        "DataFusion's rebuild differs:\n{on_datafusion}\nincremental:\n{incremental}"
    );

    // Maintenance (the lander stopped, so `maintain` takes its lock): every table compacted and
    // merged into a replace snapshot, the history expired, unreferenced files deleted. Trino
    // reads what we wrote exactly as iceberg-rust does, and the marts carry on.
    let mut maintain_env = run.lake_env();
    maintain_env.extend(
        [
            ("TRIBUTARY_MAINTENANCE__SNAPSHOT_RETENTION_S", "0"),
            ("TRIBUTARY_MAINTENANCE__HISTORY_RETENTION_S", "0"),
            ("TRIBUTARY_MAINTENANCE__MIN_SNAPSHOTS_TO_KEEP", "2"),
            ("TRIBUTARY_MAINTENANCE__MIN_INPUT_FILES", "2"),
            ("TRIBUTARY_MAINTENANCE__MAX_MANIFESTS", "1"),
            ("TRIBUTARY_MAINTENANCE__ORPHAN_GRACE_S", "0"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let out = run_bin("tributary-lake", &["maintain"], &maintain_env)?;
    let reports: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    ensure!(reports.len() == 6, "one report per raw table: {out}");
    let sales = load_raw_table(&catalog, &ns, "pg_sale").await?;
    let current = sales
        .metadata()
        .current_snapshot()
        .context("pg_sale is empty")?;
    ensure!(
        current.summary().operation == iceberg::spec::Operation::Replace
            && sales.metadata().snapshots().len() <= 3,
        "pg_sale was not compacted and expired: {out}"
    );
    let checked = every_snapshot_reads_the_same(&trino, &catalog, &ns).await?;
    ensure!(
        checked >= RAW_TABLES.len(),
        "only {checked} snapshots read after maintenance"
    );
    let out = run_bin("tributary-marts", &["run-once"], &marts_env)?;
    let after_maintenance = published(&out)?;
    ensure!(
        publication_rows(&ns, &after_maintenance).await? == incremental,
        "the incremental run after maintenance publishes other rows"
    );
    let out = run_bin(
        "tributary-marts",
        &["run-once", "--rebuild", "--engine", "trino"],
        &marts_env,
    )?;
    ensure!(published(&out)? == after_maintenance, "{out}");
    ensure!(
        publication_rows(&ns, &after_maintenance).await? == incremental,
        "Trino's rebuild after maintenance publishes other rows"
    );
    run.finish().await
}

/// Trino and iceberg-rust see the same snapshots of every table of `ns`, and read the same row
/// count at each; returns how many snapshots were read.
async fn every_snapshot_reads_the_same(
    trino: &TrinoClient,
    catalog: &dyn Catalog,
    ns: &str,
) -> Result<usize> {
    let mut snapshots_checked = 0;
    for table in list_snapshots(catalog, ns).await? {
        let trino_ids: BTreeSet<i64> = trino
            .query(
                "interop",
                &format!(
                    "SELECT snapshot_id FROM iceberg.\"{ns}\".\"{}$snapshots\"",
                    table.table
                ),
            )
            .await?
            .rows
            .iter()
            .filter_map(|r| r.first()?.as_i64())
            .collect();
        let rust_ids: BTreeSet<i64> = table.snapshots.iter().map(|s| s.snapshot_id).collect();
        ensure!(
            trino_ids == rust_ids,
            "{}: Trino sees snapshots {trino_ids:?}, iceberg-rust {rust_ids:?}",
            table.table
        );
        for snapshot in &table.snapshots {
            let id = snapshot.snapshot_id;
            let in_trino = trino_count(
                trino,
                &format!(
                    "SELECT count(*) FROM iceberg.\"{ns}\".\"{}\" FOR VERSION AS OF {id}",
                    table.table
                ),
            )
            .await?;
            let in_rust = iceberg_rows(catalog, ns, &table.table, id).await?;
            ensure!(
                in_trino == in_rust,
                "{} at {id}: Trino reads {in_trino} rows, iceberg-rust {in_rust}",
                table.table
            );
            snapshots_checked += 1;
        }
    }
    Ok(snapshots_checked)
}
