//! Reading the raw tables: each pinned at one snapshot — the current one, a chosen one, or the
//! one current at a given time (time travel) — with the snapshot id recorded.
//!
//! The marts see the lake through `&dyn iceberg::Catalog`: the SQL catalog in production (opened
//! by `tributary-lake`), iceberg's `MemoryCatalog` in tests.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use iceberg::spec::TableMetadata;
use iceberg::table::Table;
use iceberg::{Catalog, NamespaceIdent, TableIdent};
use iceberg_datafusion::IcebergStaticTableProvider;
use serde::Serialize;
use tributary_common::names;

use crate::error::MartsError;
use crate::publication::{LakeSnapshot, LakeSnapshots};

/// The raw tables the rankings are computed from, in publication-id order.
pub const RAW_TABLES: [&str; 5] = [
    names::TABLE_PG_SALE,
    names::TABLE_PG_SALESMAN,
    names::TABLE_PG_CITY,
    names::TABLE_FILE_SALE,
    names::TABLE_ERP_SALE,
];

/// Which snapshot of each raw table to read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AsOf {
    /// Each table's current snapshot (what a scheduled run publishes).
    #[default]
    Latest,
    /// These snapshot ids, by table name (`pg_sale` → id). A raw table not named is read at
    /// its current snapshot, so pinning only `pg_sale` replays the sales against today's names.
    Snapshots(BTreeMap<String, i64>),
    /// Per table, the latest snapshot committed at or before this time; a table with no
    /// snapshot by then reads as empty (nothing had landed in it yet).
    Timestamp(DateTime<Utc>),
}

impl AsOf {
    /// Parses `pg_sale=123,pg_city=456` (the CLI's `--snapshot`) into
    /// [`AsOf::Snapshots`]. Table names are checked when the tables are read.
    pub fn parse_snapshots(text: &str) -> Result<Self, String> {
        let mut pins = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (table, id) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not table=snapshot_id"))?;
            let id: i64 = id
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: snapshot id is not an integer"))?;
            if pins.insert(table.trim().to_string(), id).is_some() {
                return Err(format!("table {} named twice", table.trim()));
            }
        }
        if pins.is_empty() {
            return Err("expected table=snapshot_id[,table=snapshot_id…]".to_string());
        }
        Ok(AsOf::Snapshots(pins))
    }
}

/// Registers each raw table of `namespace` (`raw` in production) in `ctx` under its own name
/// (`pg_sale`, …), pinned to the table's current snapshot, and returns the snapshots. A table
/// with no snapshot yet reads as empty.
///
/// The tables are loaded one after another, so the snapshots are not one atomic cut of the
/// lake; each is recorded, which is what makes the publication reproducible.
pub async fn register_raw_tables(
    catalog: &dyn Catalog,
    namespace: &str,
    ctx: &SessionContext,
) -> Result<LakeSnapshots, MartsError> {
    register_raw_tables_as_of(catalog, namespace, ctx, &AsOf::Latest).await
}

/// Same as [`register_raw_tables`], each table pinned at the snapshot `as_of` picks.
///
/// A snapshot id that the table does not have, or a table name that is not a raw table, is
/// [`MartsError::UnknownSnapshot`]: reading the current snapshot instead would answer a
/// different question than the one asked.
pub async fn register_raw_tables_as_of(
    catalog: &dyn Catalog,
    namespace: &str,
    ctx: &SessionContext,
    as_of: &AsOf,
) -> Result<LakeSnapshots, MartsError> {
    if let AsOf::Snapshots(pins) = as_of
        && let Some((table, snapshot_id)) =
            pins.iter().find(|(t, _)| !RAW_TABLES.contains(&t.as_str()))
    {
        return Err(MartsError::UnknownSnapshot {
            table: table.clone(),
            snapshot_id: *snapshot_id,
        });
    }
    let mut snapshots = Vec::with_capacity(RAW_TABLES.len());
    for name in RAW_TABLES {
        let qualified = format!("{namespace}.{name}");
        let lake_err = |source| MartsError::Lake {
            table: qualified.clone(),
            source: Box::new(source),
        };
        let table = load_raw_table(catalog, namespace, name).await?;
        let snapshot_id = match as_of {
            AsOf::Latest => table.metadata().current_snapshot().map(|s| s.snapshot_id()),
            AsOf::Snapshots(pins) => match pins.get(name) {
                Some(&id) => {
                    if table.metadata().snapshot_by_id(id).is_none() {
                        return Err(MartsError::UnknownSnapshot {
                            table: qualified,
                            snapshot_id: id,
                        });
                    }
                    Some(id)
                }
                None => table.metadata().current_snapshot().map(|s| s.snapshot_id()),
            },
            AsOf::Timestamp(at) => snapshot_at(table.metadata(), *at),
        };
        let provider: Arc<dyn TableProvider> =
            match snapshot_id {
                Some(id) => Arc::new(
                    IcebergStaticTableProvider::try_new_from_table_snapshot(table, id)
                        .await
                        .map_err(lake_err)?,
                ),
                // No snapshot yet: the scan plans no files and the table reads as empty.
                None if table.metadata().current_snapshot().is_none() => Arc::new(
                    IcebergStaticTableProvider::try_new_from_table(table)
                        .await
                        .map_err(lake_err)?,
                ),
                // No snapshot *by then*, though there is one now: an empty table of the same
                // columns (the iceberg provider has no "before the first snapshot").
                None => {
                    let schema =
                        iceberg::arrow::schema_to_arrow_schema(table.metadata().current_schema())
                            .map_err(lake_err)?;
                    Arc::new(MemTable::try_new(Arc::new(schema), vec![vec![]]).map_err(
                        |source| MartsError::Query {
                            query: "empty raw table",
                            source: Box::new(source),
                        },
                    )?)
                }
            };
        ctx.register_table(name, provider)
            .map_err(|source| MartsError::Query {
                query: "register raw table",
                source: Box::new(source),
            })?;
        tracing::debug!(table = %qualified, snapshot_id = ?snapshot_id, "raw table pinned");
        snapshots.push(LakeSnapshot {
            table: name.to_string(),
            snapshot_id,
        });
    }
    Ok(LakeSnapshots(snapshots))
}

/// Loads raw table `name` of `namespace` (a missing table is [`MartsError::LakeTableMissing`]).
pub async fn load_raw_table(
    catalog: &dyn Catalog,
    namespace: &str,
    name: &str,
) -> Result<Table, MartsError> {
    let ident = TableIdent::new(NamespaceIdent::new(namespace.to_string()), name.to_string());
    let qualified = format!("{namespace}.{name}");
    let lake_err = |source| MartsError::Lake {
        table: qualified.clone(),
        source: Box::new(source),
    };
    if !catalog.table_exists(&ident).await.map_err(lake_err)? {
        return Err(MartsError::LakeTableMissing { table: qualified });
    }
    catalog.load_table(&ident).await.map_err(lake_err)
}

/// The rows a raw table gained between two of its snapshots: the data files that the
/// snapshots after `since` (exclusive; `None` = from the first) up to `upto` (inclusive)
/// added, read in full. This is the incremental marts' read: its cost follows what was added,
/// not the table's history (one manifest list, the manifests written in the range, their files).
///
/// The lander only appends, so "added in the range" is exactly "new since `since`". A range that
/// is not a plain chain of appends from `since` — `since` is not an ancestor of `upto` (the table
/// was recreated or rolled back, or snapshots expired), or a commit in it is not an append — is
/// [`MartsError::StateDiverged`]: the kept state must then be rebuilt.
///
/// Also returns the snapshot ids in the range, newest first (the run links its span to the
/// lander commits that wrote them).
pub async fn read_added(
    table: &Table,
    qualified: &str,
    since: Option<i64>,
    upto: i64,
) -> Result<(Vec<arrow::array::RecordBatch>, Vec<i64>), MartsError> {
    use futures::TryStreamExt;
    use iceberg::spec::{ManifestContentType, ManifestList, ManifestStatus, Operation};

    let metadata = table.metadata();
    let diverged = |reason: String| MartsError::StateDiverged {
        table: qualified.to_string(),
        reason,
    };
    let lake_err = |source| MartsError::Lake {
        table: qualified.to_string(),
        source: Box::new(source),
    };
    // The snapshots in the range, newest first, following parents from `upto`.
    let mut range = std::collections::HashSet::new();
    let mut in_order = Vec::new();
    let mut cursor = Some(upto);
    while let Some(id) = cursor {
        if Some(id) == since {
            break;
        }
        let snapshot = metadata
            .snapshot_by_id(id)
            .ok_or_else(|| diverged(format!("snapshot {id} is not in the table metadata")))?;
        if snapshot.summary().operation != Operation::Append {
            return Err(diverged(format!(
                "snapshot {id} is a {} commit; the marts follow append-only tables",
                snapshot.summary().operation.as_str()
            )));
        }
        range.insert(id);
        in_order.push(id);
        cursor = snapshot.parent_snapshot_id();
    }
    if since.is_some() && cursor.is_none() {
        return Err(diverged(format!(
            "snapshot {} (where the state stopped) is not an ancestor of the current snapshot {upto}",
            since.unwrap_or_default()
        )));
    }
    if range.is_empty() {
        return Ok((Vec::new(), in_order));
    }
    let snapshot = metadata
        .snapshot_by_id(upto)
        .ok_or_else(|| diverged(format!("snapshot {upto} is not in the table metadata")))?;
    let file_io = table.file_io();
    let list_bytes = file_io
        .new_input(snapshot.manifest_list())
        .map_err(lake_err)?
        .read()
        .await
        .map_err(lake_err)?;
    let list = ManifestList::parse_with_version(&list_bytes, metadata.format_version())
        .map_err(lake_err)?;
    let schema = metadata.current_schema().clone();
    let field_ids: Vec<i32> = schema.as_struct().fields().iter().map(|f| f.id).collect();
    let mut tasks = Vec::new();
    for manifest_file in list.entries() {
        if manifest_file.content != ManifestContentType::Data
            || !range.contains(&manifest_file.added_snapshot_id)
        {
            continue;
        }
        let manifest = manifest_file
            .load_manifest(file_io)
            .await
            .map_err(lake_err)?;
        for entry in manifest.entries() {
            let added_here = entry.status() == ManifestStatus::Added
                && entry.snapshot_id().is_some_and(|id| range.contains(&id));
            if !added_here {
                continue;
            }
            tasks.push(Ok(iceberg::scan::FileScanTask::builder()
                .with_file_size_in_bytes(entry.file_size_in_bytes())
                .with_start(0)
                .with_length(entry.file_size_in_bytes())
                .with_record_count(Some(entry.record_count()))
                .with_data_file_path(entry.file_path().to_string())
                .with_data_file_format(entry.file_format())
                .with_schema(schema.clone())
                .with_project_field_ids(field_ids.clone())
                .with_case_sensitive(true)
                .build()));
        }
    }
    let reader =
        iceberg::arrow::ArrowReaderBuilder::new(file_io.clone(), iceberg::Runtime::current())
            .build();
    let stream = reader
        .read(Box::pin(futures::stream::iter(tasks)))
        .map_err(lake_err)?
        .stream();
    let batches = stream.try_collect().await.map_err(lake_err)?;
    Ok((batches, in_order))
}

/// The snapshot that was current at `at`: the latest entry of the snapshot log (the history of
/// the current snapshot, so a rolled-back branch is not picked) committed at or before `at`,
/// falling back to the snapshots themselves when the log is empty. Millisecond precision, as
/// Iceberg records it. Pure.
pub fn snapshot_at(metadata: &TableMetadata, at: DateTime<Utc>) -> Option<i64> {
    let at_ms = at.timestamp_millis();
    let from_log = metadata
        .history()
        .iter()
        .filter(|entry| entry.timestamp_ms <= at_ms)
        .filter(|entry| metadata.snapshot_by_id(entry.snapshot_id).is_some())
        .max_by_key(|entry| entry.timestamp_ms)
        .map(|entry| entry.snapshot_id);
    if !metadata.history().is_empty() {
        return from_log;
    }
    metadata
        .snapshots()
        .filter(|s| s.timestamp_ms() <= at_ms)
        .max_by_key(|s| (s.timestamp_ms(), s.sequence_number()))
        .map(|s| s.snapshot_id())
}

/// One snapshot of a raw table, as `tributary-marts snapshots` and `GET /v1/snapshots` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    /// Iceberg snapshot id.
    pub snapshot_id: i64,
    /// The snapshot it was committed on top of.
    pub parent_snapshot_id: Option<i64>,
    /// When it was committed.
    pub committed_at: DateTime<Utc>,
    /// `append`, `overwrite`, …
    pub operation: String,
    /// The rest of the snapshot summary (`added-records`, `tributary.offsets`, …).
    pub summary: BTreeMap<String, String>,
}

/// A raw table and its snapshots, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableSnapshots {
    /// Table name inside the namespace (`pg_sale`).
    pub table: String,
    /// The current snapshot, if any.
    pub current_snapshot_id: Option<i64>,
    /// Every snapshot the table metadata still holds, oldest first.
    pub snapshots: Vec<SnapshotInfo>,
}

/// The tables [`list_snapshots`] shows: those the rankings read, then the dead letters.
pub const LISTED_TABLES: [&str; 6] = [
    names::TABLE_PG_SALE,
    names::TABLE_PG_SALESMAN,
    names::TABLE_PG_CITY,
    names::TABLE_FILE_SALE,
    names::TABLE_ERP_SALE,
    names::TABLE_DEAD_LETTERS,
];

/// Every snapshot of every raw table of `namespace`. `dead_letters` is listed only if it
/// exists (the rankings never read it); a missing ranking table is an error as for a run.
pub async fn list_snapshots(
    catalog: &dyn Catalog,
    namespace: &str,
) -> Result<Vec<TableSnapshots>, MartsError> {
    let mut out = Vec::with_capacity(LISTED_TABLES.len());
    for name in LISTED_TABLES {
        let table = match load_raw_table(catalog, namespace, name).await {
            Ok(table) => table,
            Err(MartsError::LakeTableMissing { .. }) if name == names::TABLE_DEAD_LETTERS => {
                continue;
            }
            Err(e) => return Err(e),
        };
        let metadata = table.metadata();
        let mut snapshots: Vec<SnapshotInfo> = metadata
            .snapshots()
            .map(|s| SnapshotInfo {
                snapshot_id: s.snapshot_id(),
                parent_snapshot_id: s.parent_snapshot_id(),
                committed_at: DateTime::from_timestamp_millis(s.timestamp_ms()).unwrap_or_default(),
                operation: s.summary().operation.as_str().to_string(),
                summary: s
                    .summary()
                    .additional_properties
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            })
            .collect();
        snapshots.sort_by_key(|s| (s.committed_at, s.snapshot_id));
        out.push(TableSnapshots {
            table: name.to_string(),
            current_snapshot_id: metadata.current_snapshot().map(|s| s.snapshot_id()),
            snapshots,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tributary_lake::schema::RawTable;

    use super::*;
    use crate::job::{compute, compute_as_of};
    use crate::test_support::{city, land, memory_lake, sale, salesman};

    const ALL: [RawTable; 5] = RawTable::DATA_TABLES;

    async fn commit_time(catalog: &dyn Catalog, table: &str, snapshot_id: i64) -> DateTime<Utc> {
        let t = load_raw_table(catalog, "raw", table).await.unwrap();
        let ms = t
            .metadata()
            .snapshot_by_id(snapshot_id)
            .unwrap()
            .timestamp_ms();
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    /// A second, separate lake holding only the first append's events: the oracle.
    async fn first_append_only() -> Arc<dyn Catalog> {
        let lake = memory_lake(&ALL).await;
        land_first(lake.as_ref()).await;
        lake
    }

    async fn land_first(lake: &dyn Catalog) -> (i64, i64) {
        let sale_snap = land(
            lake,
            RawTable::PgSale,
            &[
                sale("c", 1, (10, 0), Some(100), Some(7), Some(1000))
                    .sold_at("2026-01-05T10:00:00Z"),
                sale("c", 2, (11, 1), Some(200), Some(8), Some(3000))
                    .sold_at("2026-02-05T10:00:00Z"),
            ],
        )
        .await;
        let city_snap = land(
            lake,
            RawTable::PgCity,
            &[
                city("r", 7, (1, 0), "Campinas", "SP"),
                city("r", 8, (2, 1), "Santos", "SP"),
            ],
        )
        .await;
        (sale_snap, city_snap)
    }

    #[tokio::test]
    async fn rankings_as_of_the_first_append_equal_the_first_append_alone() {
        let lake = memory_lake(&ALL).await;
        let (sale1, city1) = land_first(lake.as_ref()).await;
        let t1 = commit_time(lake.as_ref(), "pg_sale", sale1)
            .await
            .max(commit_time(lake.as_ref(), "pg_city", city1).await);
        // Iceberg times are milliseconds: the second append must be visibly later.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let sale2 = land(
            lake.as_ref(),
            RawTable::PgSale,
            &[
                // Sale 1 moves to salesman 200, sale 2 is deleted, a new one arrives.
                sale("u", 1, (20, 2), Some(200), Some(7), Some(1000))
                    .sold_at("2026-01-05T10:00:00Z"),
                sale("d", 2, (21, 3), None, None, None),
                sale("c", 3, (22, 4), Some(300), Some(8), Some(50_000))
                    .sold_at("2026-02-06T10:00:00Z"),
            ],
        )
        .await;
        // The salesman table's first snapshot is after t1: as of t1 it reads as empty.
        let salesman1 = land(
            lake.as_ref(),
            RawTable::PgSalesman,
            &[salesman("c", 100, (1, 0), "S1", "Ana")],
        )
        .await;

        let oracle = compute(first_append_only().await.as_ref(), "raw")
            .await
            .unwrap()
            .1;
        let (at_snapshots, pinned) = compute_as_of(
            lake.as_ref(),
            "raw",
            &AsOf::Snapshots(BTreeMap::from([
                ("pg_sale".to_string(), sale1),
                ("pg_salesman".to_string(), salesman1),
            ])),
        )
        .await
        .unwrap();
        assert_eq!(
            at_snapshots.publication_id(),
            format!(
                "pg_sale:{sale1},pg_salesman:{salesman1},pg_city:{city1},file_sale:none,erp_sale:none"
            )
        );
        // Pinned sales, today's names: the same numbers as the oracle, Ana resolved.
        assert_eq!(
            (pinned.all.summary.sales, pinned.all.summary.revenue),
            (oracle.all.summary.sales, oracle.all.summary.revenue)
        );
        assert_eq!(pinned.all.salesmen.len(), oracle.all.salesmen.len());
        assert!(pinned.all.salesmen.iter().any(|r| r.row.info.is_some()));

        let (at_time, as_of_t1) = compute_as_of(lake.as_ref(), "raw", &AsOf::Timestamp(t1))
            .await
            .unwrap();
        assert_eq!(
            at_time.publication_id(),
            format!(
                "pg_sale:{sale1},pg_salesman:none,pg_city:{city1},file_sale:none,erp_sale:none"
            )
        );
        assert_eq!(as_of_t1, oracle);

        // Before anything landed: every table empty, nothing ranked.
        let before = t1 - chrono::Duration::days(1);
        let (none, empty) = compute_as_of(lake.as_ref(), "raw", &AsOf::Timestamp(before))
            .await
            .unwrap();
        assert!(none.0.iter().all(|s| s.snapshot_id.is_none()));
        assert!(empty.all.cities.is_empty() && empty.months.is_empty());

        // As of now is the latest.
        let latest = compute(lake.as_ref(), "raw").await.unwrap();
        let now = compute_as_of(lake.as_ref(), "raw", &AsOf::Timestamp(Utc::now()))
            .await
            .unwrap();
        assert_eq!(now, latest);
        assert!(now.0.publication_id().contains(&format!("pg_sale:{sale2}")));
        assert_ne!(now.1, oracle);
    }

    #[test]
    fn snapshot_pins_parse() {
        assert_eq!(
            AsOf::parse_snapshots("pg_sale=1, pg_city=-2").unwrap(),
            AsOf::Snapshots(BTreeMap::from([
                ("pg_sale".to_string(), 1),
                ("pg_city".to_string(), -2)
            ]))
        );
        for bad in ["", "pg_sale", "pg_sale=x", "pg_sale=1,pg_sale=2"] {
            assert!(AsOf::parse_snapshots(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn unknown_snapshots_and_tables_are_refused() {
        let lake = memory_lake(&ALL).await;
        let err = compute_as_of(
            lake.as_ref(),
            "raw",
            &AsOf::Snapshots(BTreeMap::from([("pg_sale".to_string(), 42)])),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, MartsError::UnknownSnapshot { table, snapshot_id: 42 } if table == "raw.pg_sale"),
            "{err}"
        );
        let err = compute_as_of(
            lake.as_ref(),
            "raw",
            &AsOf::Snapshots(BTreeMap::from([("orders".to_string(), 1)])),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, MartsError::UnknownSnapshot { .. }));
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn snapshots_are_listed_oldest_first_with_their_summaries() {
        let lake = memory_lake(&ALL).await;
        let first = land(
            lake.as_ref(),
            RawTable::PgSale,
            &[sale("c", 1, (1, 0), Some(1), Some(1), Some(1))],
        )
        .await;
        let second = land(
            lake.as_ref(),
            RawTable::PgSale,
            &[sale("c", 2, (2, 1), Some(1), Some(1), Some(1))],
        )
        .await;
        let listed = list_snapshots(lake.as_ref(), "raw").await.unwrap();
        // No dead_letters table in this lake: the five ranking tables only.
        assert_eq!(
            listed.iter().map(|t| t.table.as_str()).collect::<Vec<_>>(),
            RAW_TABLES.to_vec()
        );
        let sales = &listed[0];
        assert_eq!(sales.current_snapshot_id, Some(second));
        let ids: Vec<_> = sales.snapshots.iter().map(|s| s.snapshot_id).collect();
        assert_eq!(ids, vec![first, second]);
        assert_eq!(sales.snapshots[1].parent_snapshot_id, Some(first));
        assert_eq!(sales.snapshots[0].operation, "append");
        assert_eq!(
            sales.snapshots[0]
                .summary
                .get("added-records")
                .map(String::as_str),
            Some("1")
        );
        assert!(listed[1].snapshots.is_empty());
    }
}
