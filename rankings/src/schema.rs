//! The ClickHouse contract of the marts: DDL and row types, shared by the job (writes) and the
//! API (reads).
//!
//! The SQL runs on ClickHouse 18.16 (Debian's package) and on current releases, so it uses only
//! what both have (`LowCardinality`, experimental in 18.16, only where it is measured
//! to pay, below): no `DateTime64`, no `Bool` (flags are `UInt8`), no
//! window functions, no TTL. Money is `Decimal(18,2)`, an `Int64` of cents in RowBinary.
//!
//! Every publication table is a `ReplacingMergeTree(version)` whose sorting key starts with
//! `publication_id, period`: the API reads exactly one period of one publication
//! (`WHERE publication_id = … AND period = …`, served from the primary index) with `FINAL`, and
//! a rerun of the same publication writes rows with the same keys and a higher `version`,
//! replacing the earlier ones. `period` is `'all'` or a UTC month `'YYYY-MM'` of `sold_at`
//! ([`crate::period`]). The rest of each key is the order the API pages in:
//!
//! - `city_ranking`: `(publication_id, period, rank, city_id)`. Within a period the rank is a
//!   function of the city (ties are broken by id), so `city_id` adds no duplicates; leading with
//!   `rank` lets `ORDER BY rank LIMIT n, m` read the key in order.
//! - `city_salesman_ranking`: `(publication_id, period, city_id, rank, salesman_id)`: one city's
//!   salesmen in rank order are one contiguous key range.
//! - `salesman_ranking`: `(publication_id, period, rank, salesman_id)`, like cities.
//! - `publication_periods`: `(publication_id, period)`: a period's counts; its rows list the
//!   months a publication has, and `rows_publication_id` says which publication's ranking rows
//!   are the period's. A run publishes only the periods it changed: a month no event of the run
//!   touched keeps the rows an earlier publication wrote, by reference (one hop: the reference
//!   names the publication holding the rows). Readers go through it: the rows of publication
//!   `P`, period `m` are those with `(publication_id, period) IN (SELECT rows_publication_id,
//!   period FROM publication_periods FINAL WHERE publication_id = P AND period = m)`.
//! - `publications`: `(publication_id)`; the latest is the one with the highest `version`.
//!
//! Every publication table is partitioned by `lake_window`: the publication's newest lake commit
//! (the latest commit time of the snapshots it was computed from) in [`LAKE_WINDOW_SECONDS`]
//! windows since the epoch. The partition is a function of the publication id (the same
//! snapshots have the same commit times), so a rerun of a publication replaces its rows in the
//! same partition, and retention drops whole partitions of old publications
//! ([`crate::retention`]) instead of deleting rows.
//!
//! A ranking row names its publication and its version; which snapshots and which run wrote it
//! are the `publications` row of the same id (they are not repeated in every ranking row).
//! Its `publication_id` is a `LowCardinality(String)`: the id (about 150 bytes) is the same in
//! every row a publication writes and was two thirds of a ranking row's bytes; dictionary-encoded,
//! ClickHouse keeps it once per part and sorts and merges indices (docs/marts.md, "Choices").
//! 18.16 needs `allow_experimental_low_cardinality_type` to create such a column
//! ([`LOW_CARDINALITY_SETTING`]).
//!
//! `mart_runs` is a plain `MergeTree` ordered by `(started_at, run_id)`: one row per run, written
//! once when it ends, published, unchanged or failed.
//!
//! Tables written before this layout (without a `period`, a `lake_window` or a
//! `rows_publication_id` column, or with a ranking table's `publication_id` a plain `String`) are dropped
//! by `ensure_schema` of the ClickHouse store, all six publication tables together, and
//! recreated; the next run republishes: marts are derived data (ADR 0003).

use chrono::{DateTime, Utc};
use clickhouse::Row;
use serde::{Deserialize, Serialize};

use crate::error::RankingsError;

/// Table of publications, one row each, written after all of its ranking rows.
pub const PUBLICATIONS: &str = "publications";
/// Top sales per city.
pub const CITY_RANKING: &str = "city_ranking";
/// Salesmen ranked within each city.
pub const CITY_SALESMAN_RANKING: &str = "city_salesman_ranking";
/// Top salesman nationwide.
pub const SALESMAN_RANKING: &str = "salesman_ranking";
/// Per publication and period: the period's counts (and, by existing, which months there are).
pub const PUBLICATION_PERIODS: &str = "publication_periods";
/// Per publication and source: how far the counted events reach (completeness, freshness).
pub const PUBLICATION_SOURCES: &str = "publication_sources";
/// One row per marts run, whatever its outcome.
pub const MART_RUNS: &str = "mart_runs";
/// The ranking tables, whose sorting key has `period` right after `publication_id`.
pub const RANKING_TABLES: [&str; 3] = [CITY_RANKING, CITY_SALESMAN_RANKING, SALESMAN_RANKING];

/// Every table of a publication, partitioned by `lake_window`, the `publications` row last:
/// the order a publication is written in, and the reverse of the order retention drops it in.
pub const PUBLICATION_TABLES: [&str; 6] = [
    CITY_RANKING,
    CITY_SALESMAN_RANKING,
    SALESMAN_RANKING,
    PUBLICATION_PERIODS,
    PUBLICATION_SOURCES,
    PUBLICATIONS,
];

/// The setting ClickHouse 18.16 needs to create a `LowCardinality` column (later releases know it
/// as obsolete or not at all): `ensure_schema` passes it when the server lists it.
pub const LOW_CARDINALITY_SETTING: &str = "allow_experimental_low_cardinality_type";

/// Width of a `lake_window`, the partition of the publication tables: ten minutes.
pub const LAKE_WINDOW_SECONDS: i64 = 600;

/// The `lake_window` of a publication whose newest lake commit was at `committed_ms` (epoch
/// ms); window 0 when nothing was committed yet.
pub fn lake_window(committed_ms: Option<i64>) -> u32 {
    committed_ms
        .map(|ms| ms.div_euclid(1_000 * LAKE_WINDOW_SECONDS))
        .and_then(|w| u32::try_from(w).ok())
        .unwrap_or(0)
}

/// Columns every row carries: where it came from and which run wrote it.
const PROVENANCE_COLUMNS: &str = "\
    lake_snapshots String,
    run_id String,
    computed_at DateTime,
    version UInt64,
    lake_window UInt32";

/// The same for the ranking rows, by far the most numerous: which snapshots and which run are
/// their `publications` row's (same `publication_id`), not repeated in each (they were about
/// 300 of the 480 bytes of a row). Ranking tables created before still have both columns:
/// rows written since leave them empty.
const RANKING_ROW_PROVENANCE_COLUMNS: &str = "\
    computed_at DateTime,
    version UInt64,
    lake_window UInt32";

/// Refuses database names that would need quoting: they are spliced into DDL and queries.
pub fn validate_database(name: &str) -> Result<(), RankingsError> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(RankingsError::InvalidDatabaseName(name.to_string()))
    }
}

/// `CREATE … IF NOT EXISTS` statements for the database and its four tables, in order.
pub fn ddl(database: &str) -> Result<Vec<String>, RankingsError> {
    validate_database(database)?;
    let db = database;
    Ok(vec![
        format!("CREATE DATABASE IF NOT EXISTS {db}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{PUBLICATIONS} (
    publication_id String,
{PROVENANCE_COLUMNS},
    sales UInt64,
    revenue Decimal(18, 2),
    cities UInt64,
    salesmen UInt64,
    unresolved_sales UInt64,
    unresolved_revenue Decimal(18, 2),
    sales_without_city UInt64,
    sales_without_salesman UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY lake_window
ORDER BY publication_id"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{CITY_RANKING} (
    publication_id LowCardinality(String),
    period String,
    rank UInt32,
    city_id Int64,
    city_name String,
    city_state String,
    city_resolved UInt8,
    revenue Decimal(18, 2),
    sales UInt64,
    salesmen UInt64,
{RANKING_ROW_PROVENANCE_COLUMNS}
) ENGINE = ReplacingMergeTree(version)
PARTITION BY lake_window
ORDER BY (publication_id, period, rank, city_id)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{CITY_SALESMAN_RANKING} (
    publication_id LowCardinality(String),
    period String,
    city_id Int64,
    rank UInt32,
    salesman_id Int64,
    salesman_name String,
    salesman_code String,
    salesman_resolved UInt8,
    revenue Decimal(18, 2),
    sales UInt64,
{RANKING_ROW_PROVENANCE_COLUMNS}
) ENGINE = ReplacingMergeTree(version)
PARTITION BY lake_window
ORDER BY (publication_id, period, city_id, rank, salesman_id)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{SALESMAN_RANKING} (
    publication_id LowCardinality(String),
    period String,
    rank UInt32,
    salesman_id Int64,
    salesman_name String,
    salesman_code String,
    salesman_resolved UInt8,
    revenue Decimal(18, 2),
    sales UInt64,
{RANKING_ROW_PROVENANCE_COLUMNS}
) ENGINE = ReplacingMergeTree(version)
PARTITION BY lake_window
ORDER BY (publication_id, period, rank, salesman_id)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{PUBLICATION_PERIODS} (
    publication_id String,
    period String,
    rows_publication_id String,
    sales UInt64,
    revenue Decimal(18, 2),
    cities UInt64,
    salesmen UInt64,
    unresolved_sales UInt64,
    unresolved_revenue Decimal(18, 2),
    sales_without_city UInt64,
    sales_without_salesman UInt64,
    sales_without_month UInt64,
{PROVENANCE_COLUMNS}
) ENGINE = ReplacingMergeTree(version)
PARTITION BY lake_window
ORDER BY (publication_id, period)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{PUBLICATION_SOURCES} (
    publication_id String,
    source String,
    position Int64,
    newest_event_at DateTime,
    events UInt64,
{PROVENANCE_COLUMNS}
) ENGINE = ReplacingMergeTree(version)
PARTITION BY lake_window
ORDER BY (publication_id, source)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{MART_RUNS} (
    run_id String,
    started_at DateTime,
    finished_at DateTime,
    status String,
    error String,
    publication_id String,
    lake_snapshots String,
    rows_in UInt64,
    rows_out UInt64
) ENGINE = MergeTree
ORDER BY (started_at, run_id)"
        ),
    ])
}

/// A row of `publications`.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct PublicationRow {
    /// Derived from the lake snapshots read.
    pub publication_id: String,
    /// JSON list of `{table, snapshot_id}`.
    pub lake_snapshots: String,
    /// The run that wrote this row.
    pub run_id: String,
    /// When that run started (seconds).
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub computed_at: DateTime<Utc>,
    /// ReplacingMergeTree version: the run's start in milliseconds.
    pub version: u64,
    /// The publication's lake window ([`lake_window`]): the partition its rows live in.
    pub lake_window: u32,
    /// Current sales.
    pub sales: u64,
    /// Their revenue, in cents (`Decimal(18,2)`).
    pub revenue: i64,
    /// Rows in `city_ranking`.
    pub cities: u64,
    /// Rows in `salesman_ranking`.
    pub salesmen: u64,
    /// Sales whose salesman or city is not in the lake yet.
    pub unresolved_sales: u64,
    /// Their revenue, in cents.
    pub unresolved_revenue: i64,
    /// Sales without a `city_id`.
    pub sales_without_city: u64,
    /// Sales without a `salesman_id`.
    pub sales_without_salesman: u64,
}

/// A row of `city_ranking`.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct CityRankingRow {
    /// The publication.
    pub publication_id: String,
    /// `all` or `YYYY-MM` (UTC month of `sold_at`).
    pub period: String,
    /// 1 = the city with the highest revenue.
    pub rank: u32,
    /// City id.
    pub city_id: i64,
    /// Current name; empty while unresolved.
    pub city_name: String,
    /// Current state; empty while unresolved.
    pub city_state: String,
    /// 1 when the city is known in the lake, 0 while it is not (yet).
    pub city_resolved: u8,
    /// Revenue in cents.
    pub revenue: i64,
    /// Number of current sales.
    pub sales: u64,
    /// Number of salesmen ranked in this city.
    pub salesmen: u64,
    /// When the run that wrote it started (which run, and the snapshots: the `publications` row).
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub computed_at: DateTime<Utc>,
    /// ReplacingMergeTree version.
    pub version: u64,
    /// The publication's lake window ([`lake_window`]): the partition its rows live in.
    pub lake_window: u32,
}

/// A row of `city_salesman_ranking`.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct CitySalesmanRankingRow {
    /// The publication.
    pub publication_id: String,
    /// `all` or `YYYY-MM` (UTC month of `sold_at`).
    pub period: String,
    /// The city the sales were made in.
    pub city_id: i64,
    /// 1 = the salesman with the highest revenue in this city.
    pub rank: u32,
    /// Salesman id.
    pub salesman_id: i64,
    /// Current name; empty while unresolved.
    pub salesman_name: String,
    /// Current code; empty while unresolved.
    pub salesman_code: String,
    /// 1 when the salesman is known in the lake.
    pub salesman_resolved: u8,
    /// Revenue in this city, in cents.
    pub revenue: i64,
    /// Number of current sales in this city.
    pub sales: u64,
    /// When the run that wrote it started (which run, and the snapshots: the `publications` row).
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub computed_at: DateTime<Utc>,
    /// ReplacingMergeTree version.
    pub version: u64,
    /// The publication's lake window ([`lake_window`]): the partition its rows live in.
    pub lake_window: u32,
}

/// A row of `salesman_ranking`.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct SalesmanRankingRow {
    /// The publication.
    pub publication_id: String,
    /// `all` or `YYYY-MM` (UTC month of `sold_at`).
    pub period: String,
    /// 1 = the top salesman nationwide.
    pub rank: u32,
    /// Salesman id.
    pub salesman_id: i64,
    /// Current name; empty while unresolved.
    pub salesman_name: String,
    /// Current code; empty while unresolved.
    pub salesman_code: String,
    /// 1 when the salesman is known in the lake.
    pub salesman_resolved: u8,
    /// Revenue in cents.
    pub revenue: i64,
    /// Number of current sales.
    pub sales: u64,
    /// When the run that wrote it started (which run, and the snapshots: the `publications` row).
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub computed_at: DateTime<Utc>,
    /// ReplacingMergeTree version.
    pub version: u64,
    /// The publication's lake window ([`lake_window`]): the partition its rows live in.
    pub lake_window: u32,
}

/// [`CityRankingRow`] as the marts write it: its text borrowed from the publication. A run
/// writes up to hundreds of thousands of ranking rows; owned, each would first copy its
/// publication id, period and names into strings of its own.
/// Same columns in the same order (a test checks).
#[derive(Debug, Clone, Copy, Row, Serialize)]
pub(crate) struct CityRankingRowRef<'a> {
    pub(crate) publication_id: &'a str,
    pub(crate) period: &'a str,
    pub(crate) rank: u32,
    pub(crate) city_id: i64,
    pub(crate) city_name: &'a str,
    pub(crate) city_state: &'a str,
    pub(crate) city_resolved: u8,
    pub(crate) revenue: i64,
    pub(crate) sales: u64,
    pub(crate) salesmen: u64,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub(crate) computed_at: DateTime<Utc>,
    pub(crate) version: u64,
    pub(crate) lake_window: u32,
}

/// [`CitySalesmanRankingRow`] borrowing its text, as [`CityRankingRowRef`].
#[derive(Debug, Clone, Copy, Row, Serialize)]
pub(crate) struct CitySalesmanRankingRowRef<'a> {
    pub(crate) publication_id: &'a str,
    pub(crate) period: &'a str,
    pub(crate) city_id: i64,
    pub(crate) rank: u32,
    pub(crate) salesman_id: i64,
    pub(crate) salesman_name: &'a str,
    pub(crate) salesman_code: &'a str,
    pub(crate) salesman_resolved: u8,
    pub(crate) revenue: i64,
    pub(crate) sales: u64,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub(crate) computed_at: DateTime<Utc>,
    pub(crate) version: u64,
    pub(crate) lake_window: u32,
}

/// [`SalesmanRankingRow`] borrowing its text, as [`CityRankingRowRef`].
#[derive(Debug, Clone, Copy, Row, Serialize)]
pub(crate) struct SalesmanRankingRowRef<'a> {
    pub(crate) publication_id: &'a str,
    pub(crate) period: &'a str,
    pub(crate) rank: u32,
    pub(crate) salesman_id: i64,
    pub(crate) salesman_name: &'a str,
    pub(crate) salesman_code: &'a str,
    pub(crate) salesman_resolved: u8,
    pub(crate) revenue: i64,
    pub(crate) sales: u64,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub(crate) computed_at: DateTime<Utc>,
    pub(crate) version: u64,
    pub(crate) lake_window: u32,
}

impl From<CityRankingRowRef<'_>> for CityRankingRow {
    /// The owned row (what a reader gets back).
    fn from(r: CityRankingRowRef<'_>) -> Self {
        Self {
            publication_id: r.publication_id.to_string(),
            period: r.period.to_string(),
            rank: r.rank,
            city_id: r.city_id,
            city_name: r.city_name.to_string(),
            city_state: r.city_state.to_string(),
            city_resolved: r.city_resolved,
            revenue: r.revenue,
            sales: r.sales,
            salesmen: r.salesmen,
            computed_at: r.computed_at,
            version: r.version,
            lake_window: r.lake_window,
        }
    }
}

impl From<CitySalesmanRankingRowRef<'_>> for CitySalesmanRankingRow {
    /// The owned row (what a reader gets back).
    fn from(r: CitySalesmanRankingRowRef<'_>) -> Self {
        Self {
            publication_id: r.publication_id.to_string(),
            period: r.period.to_string(),
            city_id: r.city_id,
            rank: r.rank,
            salesman_id: r.salesman_id,
            salesman_name: r.salesman_name.to_string(),
            salesman_code: r.salesman_code.to_string(),
            salesman_resolved: r.salesman_resolved,
            revenue: r.revenue,
            sales: r.sales,
            computed_at: r.computed_at,
            version: r.version,
            lake_window: r.lake_window,
        }
    }
}

impl From<SalesmanRankingRowRef<'_>> for SalesmanRankingRow {
    /// The owned row (what a reader gets back).
    fn from(r: SalesmanRankingRowRef<'_>) -> Self {
        Self {
            publication_id: r.publication_id.to_string(),
            period: r.period.to_string(),
            rank: r.rank,
            salesman_id: r.salesman_id,
            salesman_name: r.salesman_name.to_string(),
            salesman_code: r.salesman_code.to_string(),
            salesman_resolved: r.salesman_resolved,
            revenue: r.revenue,
            sales: r.sales,
            computed_at: r.computed_at,
            version: r.version,
            lake_window: r.lake_window,
        }
    }
}

/// A row of `publication_sources`: one per source a publication counts events of.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct PublicationSourceRow {
    /// The publication.
    pub publication_id: String,
    /// `pg`, `files` or `erp`.
    pub source: String,
    /// The furthest source position counted: Postgres LSN, file sequence, ERP change sequence
    /// (-1: none yet; the DDL avoids `Nullable`, see the module docs).
    pub position: i64,
    /// The newest source time counted (Postgres commit time; files and ERP: when ingested);
    /// the Unix epoch when none is known.
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub newest_event_at: DateTime<Utc>,
    /// Events of the source counted in total.
    pub events: u64,
    /// JSON list of `{table, snapshot_id}`.
    pub lake_snapshots: String,
    /// The run that wrote this row.
    pub run_id: String,
    /// When that run started.
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub computed_at: DateTime<Utc>,
    /// ReplacingMergeTree version.
    pub version: u64,
    /// The publication's lake window ([`lake_window`]): the partition its rows live in.
    pub lake_window: u32,
}

/// A row of `publication_periods`: one per period of a publication (`all`, and every month
/// with at least one current sale).
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct PublicationPeriodRow {
    /// The publication.
    pub publication_id: String,
    /// `all` or `YYYY-MM`.
    pub period: String,
    /// The publication whose ranking rows are this period's: `publication_id` itself when
    /// this publication wrote them, an earlier one when the period had not changed since and
    /// its rows were carried by reference (never a chain: always the one holding the rows).
    pub rows_publication_id: String,
    /// Current sales in the period.
    pub sales: u64,
    /// Their revenue, in cents.
    pub revenue: i64,
    /// Rows in `city_ranking` for the period.
    pub cities: u64,
    /// Rows in `salesman_ranking` for the period.
    pub salesmen: u64,
    /// Sales in the period whose salesman or city is not in the lake yet.
    pub unresolved_sales: u64,
    /// Their revenue, in cents.
    pub unresolved_revenue: i64,
    /// Sales without a `city_id`.
    pub sales_without_city: u64,
    /// Sales without a `salesman_id`.
    pub sales_without_salesman: u64,
    /// Sales without `sold_at` (all time only: they belong to no month).
    pub sales_without_month: u64,
    /// JSON list of `{table, snapshot_id}`.
    pub lake_snapshots: String,
    /// The run that wrote this row.
    pub run_id: String,
    /// When that run started.
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub computed_at: DateTime<Utc>,
    /// ReplacingMergeTree version.
    pub version: u64,
    /// The publication's lake window ([`lake_window`]): the partition its rows live in.
    pub lake_window: u32,
}

/// How a marts run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Rankings were computed and published.
    Published,
    /// The lake had not changed since the latest publication; nothing was written.
    Unchanged,
    /// The run failed (`error` says why).
    Failed,
}

impl RunStatus {
    /// The stored form: `published`, `unchanged`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Published => "published",
            RunStatus::Unchanged => "unchanged",
            RunStatus::Failed => "failed",
        }
    }
}

/// A row of `mart_runs`.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct MartRunRow {
    /// The run (UUID v7, so ids sort by start).
    pub run_id: String,
    /// When it started.
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub started_at: DateTime<Utc>,
    /// When it ended.
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub finished_at: DateTime<Utc>,
    /// [`RunStatus::as_str`].
    pub status: String,
    /// Why it failed; empty otherwise.
    pub error: String,
    /// The publication written or found unchanged; empty if the run failed before knowing it.
    pub publication_id: String,
    /// JSON list of `{table, snapshot_id}` read; `[]` if the run failed before reading them.
    pub lake_snapshots: String,
    /// Current sales read (0 when nothing was computed).
    pub rows_in: u64,
    /// Ranking rows written, every period and table together (0 unless published).
    pub rows_out: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_must_be_plain_identifiers() {
        for ok in ["marts", "marts_test_42", "_x"] {
            assert!(validate_database(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1marts", "marts;DROP", "a.b", "a-b", "`x`"] {
            assert!(validate_database(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn borrowed_ranking_rows_write_the_owned_rows_columns() {
        assert_eq!(
            CityRankingRowRef::COLUMN_NAMES,
            CityRankingRow::COLUMN_NAMES
        );
        assert_eq!(
            CitySalesmanRankingRowRef::COLUMN_NAMES,
            CitySalesmanRankingRow::COLUMN_NAMES
        );
        assert_eq!(
            SalesmanRankingRowRef::COLUMN_NAMES,
            SalesmanRankingRow::COLUMN_NAMES
        );
    }

    #[test]
    fn ddl_avoids_what_clickhouse_18_lacks() {
        let sql = ddl("marts").unwrap().join("\n");
        for missing in ["DateTime64", "Bool", "TTL", "Nullable"] {
            assert!(!sql.contains(missing), "{missing} in DDL");
        }
        // Only the ranking rows' publication id is dictionary-encoded.
        assert_eq!(sql.matches("LowCardinality").count(), 3);
        assert_eq!(
            sql.matches("publication_id LowCardinality(String)").count(),
            3
        );
        assert_eq!(sql.matches("ReplacingMergeTree(version)").count(), 6);
        assert_eq!(sql.matches("PARTITION BY lake_window").count(), 6);
        assert_eq!(sql.matches("ENGINE = MergeTree").count(), 1);
    }

    #[test]
    fn lake_windows_are_ten_minutes_of_epoch_time() {
        assert_eq!(lake_window(None), 0);
        assert_eq!(lake_window(Some(0)), 0);
        assert_eq!(lake_window(Some(599_999)), 0);
        assert_eq!(lake_window(Some(600_000)), 1);
        // 2026-12-04T00:00:00Z
        assert_eq!(lake_window(Some(1_796_342_400_000)), 2_993_904);
    }
}
