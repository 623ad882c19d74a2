//! Reading the raw tables: each at its current snapshot, pinned, with the snapshot id recorded.
//!
//! The marts see the lake through `&dyn iceberg::Catalog`: the SQL catalog in production (opened
//! by `tributary-lake`), iceberg's `MemoryCatalog` in tests.

use std::sync::Arc;

use datafusion::prelude::SessionContext;
use iceberg::{Catalog, NamespaceIdent, TableIdent};
use iceberg_datafusion::IcebergStaticTableProvider;
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

/// Registers each raw table of `namespace` (`raw` in production) in `ctx` under its own name
/// (`pg_sale`, …), pinned to the table's current snapshot, and returns the snapshots. A table
/// with no snapshot yet reads as empty.
///
/// The tables are loaded one after another, so the three snapshots are not one atomic cut of
/// the lake; each is recorded, which is what makes the publication reproducible.
pub async fn register_raw_tables(
    catalog: &dyn Catalog,
    namespace: &str,
    ctx: &SessionContext,
) -> Result<LakeSnapshots, MartsError> {
    let namespace_ident = NamespaceIdent::new(namespace.to_string());
    let mut snapshots = Vec::with_capacity(RAW_TABLES.len());
    for name in RAW_TABLES {
        let ident = TableIdent::new(namespace_ident.clone(), name.to_string());
        let qualified = format!("{namespace}.{name}");
        let lake_err = |source| MartsError::Lake {
            table: qualified.clone(),
            source: Box::new(source),
        };
        if !catalog.table_exists(&ident).await.map_err(lake_err)? {
            return Err(MartsError::LakeTableMissing { table: qualified });
        }
        let table = catalog.load_table(&ident).await.map_err(lake_err)?;
        let snapshot_id = table.metadata().current_snapshot().map(|s| s.snapshot_id());
        let provider = match snapshot_id {
            Some(id) => IcebergStaticTableProvider::try_new_from_table_snapshot(table, id).await,
            // No snapshot: the scan plans no files and the table reads as empty.
            None => IcebergStaticTableProvider::try_new_from_table(table).await,
        }
        .map_err(lake_err)?;
        ctx.register_table(name, Arc::new(provider))
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
