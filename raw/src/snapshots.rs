//! Which snapshot of each raw table to read: the current one, chosen ids, or the one current at a
//! given time (time travel); listing what there is to travel to; and resolving one snapshot id
//! to a cut of the whole lake (`?as_of_snapshot=`).
//!
//! Everything here reads table metadata only. Turning a pin into rows is the reader's business:
//! [`crate::incremental`] reads what a range of snapshots added, the marts register each pinned
//! table in DataFusion, [`crate::catalog::read_table`] reads a whole table.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use iceberg::spec::TableMetadata;
use iceberg::table::Table;
use iceberg::{Catalog, NamespaceIdent, TableIdent};
use serde::Serialize;
use tributary_common::names;

use crate::error::RawError;

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

/// A raw table loaded with the snapshot an [`AsOf`] picks for it.
#[derive(Debug)]
pub struct PinnedTable {
    /// Table name inside the namespace (`pg_sale`).
    pub name: &'static str,
    /// The table as loaded (its metadata holds every snapshot).
    pub table: Table,
    /// The snapshot to read; `None` when the table had no snapshot by then (it reads as empty).
    pub snapshot_id: Option<i64>,
}

/// Loads each of [`RAW_TABLES`] of `namespace` (`raw` in production), in order, with the
/// snapshot `as_of` picks.
///
/// The tables are loaded one after another, so the snapshots are not one atomic cut of the
/// lake; each is recorded, which is what makes a publication reproducible.
///
/// A snapshot id that the table does not have, or a table name that is not a raw table, is
/// [`RawError::UnknownSnapshot`]: reading the current snapshot instead would answer a different
/// question than the one asked.
pub async fn pin_raw_tables(
    catalog: &dyn Catalog,
    namespace: &str,
    as_of: &AsOf,
) -> Result<Vec<PinnedTable>, RawError> {
    if let AsOf::Snapshots(pins) = as_of
        && let Some((table, snapshot_id)) =
            pins.iter().find(|(t, _)| !RAW_TABLES.contains(&t.as_str()))
    {
        return Err(RawError::UnknownSnapshot {
            table: table.clone(),
            snapshot_id: *snapshot_id,
        });
    }
    let mut pinned = Vec::with_capacity(RAW_TABLES.len());
    for name in RAW_TABLES {
        let table = load_raw_table(catalog, namespace, name).await?;
        let snapshot_id = pick_snapshot(table.metadata(), namespace, name, as_of)?;
        pinned.push(PinnedTable {
            name,
            table,
            snapshot_id,
        });
    }
    Ok(pinned)
}

/// The snapshot `as_of` picks in raw table `name` of `namespace`, whose metadata is `metadata`
/// (`None`: the table had no snapshot by then and reads as empty). Pure: what
/// [`pin_raw_tables`] does with each table it loads, for callers that already hold the metadata.
pub fn pick_snapshot(
    metadata: &TableMetadata,
    namespace: &str,
    name: &str,
    as_of: &AsOf,
) -> Result<Option<i64>, RawError> {
    Ok(match as_of {
        AsOf::Latest => metadata.current_snapshot().map(|s| s.snapshot_id()),
        AsOf::Snapshots(pins) => match pins.get(name) {
            Some(&id) => {
                if metadata.snapshot_by_id(id).is_none() {
                    return Err(RawError::UnknownSnapshot {
                        table: format!("{namespace}.{name}"),
                        snapshot_id: id,
                    });
                }
                Some(id)
            }
            None => metadata.current_snapshot().map(|s| s.snapshot_id()),
        },
        AsOf::Timestamp(at) => {
            if let Some(oldest) = history_starts(metadata)
                && at.timestamp_millis() < oldest
            {
                return Err(RawError::BeforeRetention {
                    table: format!("{namespace}.{name}"),
                    at: *at,
                    oldest: DateTime::from_timestamp_millis(oldest).unwrap_or_default(),
                    retention: metadata
                        .properties()
                        .get(RETENTION_PROPERTY)
                        .cloned()
                        .unwrap_or_else(|| "see the lander's [maintenance] settings".into()),
                });
            }
            snapshot_at(metadata, *at)
        }
    })
}

/// Loads raw table `name` of `namespace` (a missing table is [`RawError::TableMissing`]).
pub async fn load_raw_table(
    catalog: &dyn Catalog,
    namespace: &str,
    name: &str,
) -> Result<Table, RawError> {
    let ident = TableIdent::new(NamespaceIdent::new(namespace.to_string()), name.to_string());
    let qualified = format!("{namespace}.{name}");
    let exists = catalog
        .table_exists(&ident)
        .await
        .map_err(|e| RawError::iceberg("table_exists", qualified.clone(), e))?;
    if !exists {
        return Err(RawError::TableMissing { table: qualified });
    }
    catalog
        .load_table(&ident)
        .await
        .map_err(|e| RawError::iceberg("load_table", qualified, e))
}

/// The table property where lake maintenance records its retention, in words, for readers'
/// messages (`full resolution for 3600 s, then one snapshot per 3600 s up to 604800 s`).
pub const RETENTION_PROPERTY: &str = "tributary.retention";

/// When the table's kept history starts, in epoch ms, if maintenance expired older snapshots:
/// the commit time of the oldest snapshot kept, when its parent is gone. `None` for a table whose
/// whole history is there (a time before its first snapshot is then simply before anything
/// landed). Pure.
pub fn history_starts(metadata: &TableMetadata) -> Option<i64> {
    let oldest = metadata
        .snapshots()
        .min_by_key(|s| (s.timestamp_ms(), s.sequence_number()))?;
    let parent_expired = oldest
        .parent_snapshot_id()
        .is_some_and(|parent| metadata.snapshot_by_id(parent).is_none());
    parent_expired.then(|| oldest.timestamp_ms())
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
) -> Result<Vec<TableSnapshots>, RawError> {
    let mut out = Vec::with_capacity(LISTED_TABLES.len());
    for name in LISTED_TABLES {
        let table = match load_raw_table(catalog, namespace, name).await {
            Ok(table) => table,
            Err(RawError::TableMissing { .. }) if name == names::TABLE_DEAD_LETTERS => {
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

/// Where a snapshot id sits in the lake, and how to read the lake as of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotCut {
    /// The raw table the snapshot belongs to.
    pub table: String,
    /// When it was committed.
    pub committed_at: DateTime<Utc>,
    /// The pins that read the lake as it was then.
    pub as_of: AsOf,
}

/// The lake as it was when snapshot `snapshot_id` was committed. The id is looked up among every
/// raw table's snapshots (`dead_letters` included); that table is read at exactly this snapshot,
/// every other raw table at its snapshot current at the commit time (empty if it had none yet).
/// An id no table has is [`RawError::SnapshotNotFound`].
pub async fn resolve_snapshot(
    catalog: &dyn Catalog,
    namespace: &str,
    snapshot_id: i64,
) -> Result<SnapshotCut, RawError> {
    let mut tables = Vec::with_capacity(LISTED_TABLES.len());
    for name in LISTED_TABLES {
        match load_raw_table(catalog, namespace, name).await {
            Ok(table) => tables.push((name, table)),
            Err(RawError::TableMissing { .. }) if !RAW_TABLES.contains(&name) => {}
            Err(e) => return Err(e),
        }
    }
    let (owner, committed_ms) = tables
        .iter()
        .find_map(|(name, table)| {
            table
                .metadata()
                .snapshot_by_id(snapshot_id)
                .map(|s| (*name, s.timestamp_ms()))
        })
        .ok_or(RawError::SnapshotNotFound { snapshot_id })?;
    let at = DateTime::from_timestamp_millis(committed_ms).unwrap_or_default();
    let owner_is_read = RAW_TABLES.contains(&owner);
    let as_of = match tables.iter().find(|(name, _)| *name == owner) {
        // Another snapshot of the owner committed in the same millisecond, after it: the time
        // alone would pick that one, so pin every table that had a snapshot by then.
        Some((_, table))
            if owner_is_read && snapshot_at(table.metadata(), at) != Some(snapshot_id) =>
        {
            let pins = tables
                .iter()
                .filter(|(name, _)| RAW_TABLES.contains(name))
                .filter_map(|(name, table)| {
                    let id = if *name == owner {
                        Some(snapshot_id)
                    } else {
                        snapshot_at(table.metadata(), at)
                    };
                    id.map(|id| (name.to_string(), id))
                })
                .collect();
            AsOf::Snapshots(pins)
        }
        _ => AsOf::Timestamp(at),
    };
    Ok(SnapshotCut {
        table: owner.to_string(),
        committed_at: at,
        as_of,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::RawTable;
    use crate::testing::{land, memory_lake, sale};

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
        let lake = memory_lake(&RawTable::DATA_TABLES).await;
        let pins = |table: &str, id| AsOf::Snapshots(BTreeMap::from([(table.to_string(), id)]));
        let err = pin_raw_tables(lake.as_ref(), "raw", &pins("pg_sale", 42))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RawError::UnknownSnapshot { table, snapshot_id: 42 } if table == "raw.pg_sale"),
            "{err}"
        );
        let err = pin_raw_tables(lake.as_ref(), "raw", &pins("orders", 1))
            .await
            .unwrap_err();
        assert!(matches!(err, RawError::UnknownSnapshot { .. }));
        assert!(!err.is_retryable());
        let err = resolve_snapshot(lake.as_ref(), "raw", 7).await.unwrap_err();
        assert!(matches!(err, RawError::SnapshotNotFound { snapshot_id: 7 }));
    }

    #[tokio::test]
    async fn snapshots_are_listed_oldest_first_with_their_summaries() {
        let lake = memory_lake(&RawTable::DATA_TABLES).await;
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

        // A snapshot resolves to the lake as of its commit, its own table pinned to it.
        let cut = resolve_snapshot(lake.as_ref(), "raw", first).await.unwrap();
        assert_eq!(cut.table, "pg_sale");
        let pinned = pin_raw_tables(lake.as_ref(), "raw", &cut.as_of)
            .await
            .unwrap();
        assert_eq!(pinned[0].snapshot_id, Some(first));
        assert!(pinned[1..].iter().all(|p| p.snapshot_id.is_none()));
    }
}
