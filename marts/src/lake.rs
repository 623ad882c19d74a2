//! The raw tables in DataFusion: each pinned at the snapshot an [`AsOf`] picks (resolved by
//! `tributary_raw::snapshots`) and registered under its own name, with the snapshots recorded as
//! the publication's [`LakeSnapshots`].
//!
//! The marts see the lake through `&dyn iceberg::Catalog`: the SQL catalog in production (opened
//! by `tributary_raw::catalog::open`), iceberg's `MemoryCatalog` in tests.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use iceberg::Catalog;
use iceberg_datafusion::IcebergStaticTableProvider;
use tributary_rankings::{LakeSnapshot, LakeSnapshots};
use tributary_raw::snapshots::{AsOf, PinnedTable, pin_raw_tables};

use crate::error::MartsError;

/// Registers each raw table of `namespace` (`raw` in production) in `ctx` under its own name
/// (`pg_sale`, …), pinned to the table's current snapshot, and returns the snapshots. A table
/// with no snapshot yet reads as empty.
pub async fn register_raw_tables(
    catalog: &dyn Catalog,
    namespace: &str,
    ctx: &SessionContext,
) -> Result<LakeSnapshots, MartsError> {
    register_raw_tables_as_of(catalog, namespace, ctx, &AsOf::Latest).await
}

/// The snapshots `as_of` pins each raw table at, without reading any data: what a publication
/// of the lake as of then would name (its id is [`LakeSnapshots::publication_id`]).
pub async fn resolve_as_of(
    catalog: &dyn Catalog,
    namespace: &str,
    as_of: &AsOf,
) -> Result<LakeSnapshots, MartsError> {
    Ok(snapshots_of(
        &pin_raw_tables(catalog, namespace, as_of).await?,
    ))
}

fn snapshots_of(pinned: &[PinnedTable]) -> LakeSnapshots {
    LakeSnapshots(
        pinned
            .iter()
            .map(|p| LakeSnapshot {
                table: p.name.to_string(),
                snapshot_id: p.snapshot_id,
            })
            .collect(),
    )
}

/// Same as [`register_raw_tables`], each table pinned at the snapshot `as_of` picks (an unknown
/// snapshot or table is [`MartsError::UnknownSnapshot`]).
pub async fn register_raw_tables_as_of(
    catalog: &dyn Catalog,
    namespace: &str,
    ctx: &SessionContext,
    as_of: &AsOf,
) -> Result<LakeSnapshots, MartsError> {
    let pinned = pin_raw_tables(catalog, namespace, as_of).await?;
    let snapshots = snapshots_of(&pinned);
    for PinnedTable {
        name,
        table,
        snapshot_id,
    } in pinned
    {
        let qualified = format!("{namespace}.{name}");
        let lake_err = |source| MartsError::Lake {
            table: qualified.clone(),
            source: Box::new(source),
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
    }
    Ok(snapshots)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{DateTime, Utc};
    use std::collections::BTreeMap;
    use tributary_raw::schema::RawTable;
    use tributary_raw::snapshots::load_raw_table;

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
}
