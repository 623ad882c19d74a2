//! JSON shapes of the API. Money is a decimal string with two places (`"1234.50"`), never a
//! JSON number, so no client parses it into a float by accident.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem_openapi::Object;
use tributary_rankings::schema::{
    CityRankingRow, CitySalesmanRankingRow, PublicationPeriodRow, PublicationRow,
    SalesmanRankingRow,
};
use tributary_rankings::{LakeSnapshots, Money, Period, RankingsError};
use tributary_raw::ledger::PartitionCoverage;
use tributary_raw::snapshots::TableSnapshots;

/// The lake snapshot of one raw table that the numbers were computed from.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct LakeSnapshotJson {
    /// Raw table inside the `raw` namespace (`pg_sale`, `pg_salesman`, `pg_city`).
    pub table: String,
    /// Iceberg snapshot id; null when the table had no snapshot yet.
    pub snapshot_id: Option<i64>,
}

/// Where the numbers of a response come from.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct PublicationJson {
    /// Derived from the lake snapshots: `pg_sale:<id>,pg_salesman:<id>,pg_city:<id>`.
    pub publication_id: String,
    /// The snapshots read.
    pub lake_snapshots: Vec<LakeSnapshotJson>,
    /// The marts run that wrote it.
    pub run_id: String,
    /// When that run started.
    pub computed_at: DateTime<Utc>,
    /// Current sales.
    pub sales: u64,
    /// Their revenue, decimal string.
    pub revenue: String,
    /// Cities ranked.
    pub cities: u64,
    /// Salesmen ranked nationwide.
    pub salesmen: u64,
    /// Sales whose salesman or city is not in the lake yet; they are ranked under their ids
    /// with `resolved: false` and no name.
    pub unresolved_sales: u64,
    /// Revenue of those sales, decimal string.
    pub unresolved_revenue: String,
    /// Sales without a city id (in no city ranking).
    pub sales_without_city: u64,
    /// Sales without a salesman id (in no salesman ranking).
    pub sales_without_salesman: u64,
    /// Only on an answer computed on demand from the lake (`?as_of=`): the time asked for.
    /// `lake_snapshots` are then the snapshots current at that time, `run_id` is
    /// `on-demand` and `computed_at` is when the request computed it; nothing was published.
    #[oai(skip_serializing_if_is_none)]
    pub as_of: Option<DateTime<Utc>>,
    /// Only on an answer computed for `?as_of_snapshot=`: the snapshot id asked for (`as_of` is
    /// then its commit time, and `lake_snapshots` the snapshots current at that time).
    #[oai(skip_serializing_if_is_none)]
    pub as_of_snapshot: Option<i64>,
}

/// One snapshot of a raw table.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct SnapshotJson {
    /// Iceberg snapshot id.
    pub snapshot_id: i64,
    /// The snapshot it was committed on top of.
    pub parent_snapshot_id: Option<i64>,
    /// When it was committed (millisecond precision): `?as_of=` this time or later reads it.
    pub timestamp: DateTime<Utc>,
    /// `append`, `overwrite`, …
    pub operation: String,
    /// The rest of the snapshot summary (`added-records`, `tributary.offsets`: the source
    /// positions landed up to this snapshot, …).
    pub summary: BTreeMap<String, String>,
}

/// A raw table and its snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct TableSnapshotsJson {
    /// Table name in the `raw` namespace.
    pub table: String,
    /// The current snapshot; null while nothing has landed.
    pub current_snapshot_id: Option<i64>,
    /// Oldest first.
    pub snapshots: Vec<SnapshotJson>,
}

/// `/v1/snapshots`.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct SnapshotsPage {
    /// The raw tables the rankings read, then `dead_letters` if it exists.
    pub tables: Vec<TableSnapshotsJson>,
}

impl From<TableSnapshots> for TableSnapshotsJson {
    fn from(t: TableSnapshots) -> Self {
        Self {
            table: t.table,
            current_snapshot_id: t.current_snapshot_id,
            snapshots: t
                .snapshots
                .into_iter()
                .map(|s| SnapshotJson {
                    snapshot_id: s.snapshot_id,
                    parent_snapshot_id: s.parent_snapshot_id,
                    timestamp: s.committed_at,
                    operation: s.operation,
                    summary: s.summary,
                })
                .collect(),
        }
    }
}

/// One Kafka partition's offset-coverage ledger held against the lake.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct LedgerPartitionJson {
    /// The raw table owning the partition (its stored offset says how far it was landed).
    pub table: String,
    /// Kafka topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// First offset the ledger counted.
    pub first_offset: i64,
    /// The table's stored offset: the ledger covers `first_offset..next_offset`.
    pub next_offset: i64,
    /// Records the lander consumed in that range (a `read_committed` reader sees as many).
    pub consumed: u64,
    /// Of them, landed as rows of `table`.
    pub landed: u64,
    /// Of them, dead-lettered.
    pub dead_lettered: u64,
    /// Of them, tombstones (nothing to land).
    pub tombstones: u64,
    /// Rows of the partition in `table` within the range, as the lake holds them.
    pub landed_rows: u64,
    /// Rows of the partition in `dead_letters` within the range.
    pub dead_letter_rows: u64,
    /// Offsets held more than once among those rows.
    pub duplicate_offsets: u64,
    /// consumed = landed + dead_lettered + tombstones, the rows are exactly those, none twice.
    pub balanced: bool,
}

/// One version of one partner file: its records, numbered from 1, held against the lake.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct FileLedgerJson {
    /// Where it was read from.
    pub object_url: String,
    /// Which version of it (`last_modified` and `e_tag`).
    pub version: String,
    /// Its records that are sale events in the lake.
    pub sales: u64,
    /// Its records that are dead letters in the lake.
    pub dead_letters: u64,
    /// The highest record number in the lake.
    pub last_record: i64,
    /// Numbers from 1 to `last_record` the lake lacks.
    pub missing: u64,
    /// Numbers the lake holds more than once.
    pub duplicates: u64,
    /// None missing, none twice.
    pub balanced: bool,
}

/// One ERP endpoint's changes, by sequence number, held against the lake.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct ErpLedgerJson {
    /// The endpoint polled.
    pub endpoint: String,
    /// Changes that are sale events in the lake.
    pub sales: u64,
    /// Changes that are dead letters in the lake.
    pub dead_letters: u64,
    /// Lowest sequence in the lake.
    pub first_sequence: i64,
    /// Highest sequence in the lake.
    pub last_sequence: i64,
    /// Sequences in between the lake lacks (the ERP may skip numbers: reported, not judged).
    pub missing: u64,
    /// Sequences the lake holds more than once.
    pub duplicates: u64,
    /// None twice.
    pub balanced: bool,
}

/// `/v1/ledger`.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct LedgerPage {
    /// Every partition balanced.
    pub balanced: bool,
    /// How many are not.
    pub unbalanced: u64,
    /// Every partition a raw table keeps a ledger for, by table, topic and partition.
    pub partitions: Vec<LedgerPartitionJson>,
    /// Every version of every partner file with numbered records in the lake.
    pub files: Vec<FileLedgerJson>,
    /// Every ERP endpoint with changes in the lake.
    pub erp: Vec<ErpLedgerJson>,
}

impl From<crate::source_ledger::FileLedger> for FileLedgerJson {
    fn from(f: crate::source_ledger::FileLedger) -> Self {
        Self {
            balanced: f.balanced(),
            object_url: f.object_url,
            version: f.version,
            sales: f.sales,
            dead_letters: f.dead_letters,
            last_record: f.records.last,
            missing: f.records.missing,
            duplicates: f.records.duplicates,
        }
    }
}

impl From<crate::source_ledger::ErpLedger> for ErpLedgerJson {
    fn from(e: crate::source_ledger::ErpLedger) -> Self {
        Self {
            balanced: e.balanced(),
            endpoint: e.endpoint,
            sales: e.sales,
            dead_letters: e.dead_letters,
            first_sequence: e.changes.first,
            last_sequence: e.changes.last,
            missing: e.changes.missing,
            duplicates: e.changes.duplicates,
        }
    }
}

impl From<PartitionCoverage> for LedgerPartitionJson {
    fn from(p: PartitionCoverage) -> Self {
        Self {
            table: p.table.name().to_string(),
            topic: p.partition.topic,
            partition: p.partition.partition,
            first_offset: p.ledger.first_offset,
            next_offset: p.next_offset,
            consumed: p.ledger.records,
            landed: p.ledger.landed,
            dead_lettered: p.ledger.dead_lettered,
            tombstones: p.ledger.tombstones,
            landed_rows: p.coverage.landed_rows,
            dead_letter_rows: p.coverage.dead_letter_rows,
            duplicate_offsets: p.coverage.duplicate_offsets,
            balanced: p.coverage.balanced,
        }
    }
}

/// A salesman in a ranking (nationwide, or within one city).
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct SalesmanJson {
    /// 1 = top.
    pub rank: u32,
    /// Salesman id.
    pub salesman_id: i64,
    /// Current name; null while unresolved.
    pub name: Option<String>,
    /// Current code; null while unresolved.
    pub code: Option<String>,
    /// False while the salesman is not in the lake yet.
    pub resolved: bool,
    /// Revenue, decimal string (`"1234.50"`).
    pub revenue: String,
    /// Number of current sales.
    pub sales: u64,
}

/// A city in the city ranking.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct CityJson {
    /// 1 = the city with the highest revenue.
    pub rank: u32,
    /// City id.
    pub city_id: i64,
    /// Current name; null while unresolved.
    pub name: Option<String>,
    /// Current state; null while unresolved.
    pub state: Option<String>,
    /// False while the city is not in the lake yet.
    pub resolved: bool,
    /// Revenue, decimal string.
    pub revenue: String,
    /// Number of current sales.
    pub sales: u64,
    /// Number of salesmen ranked in this city (all of them, not only those listed).
    pub salesmen_total: u64,
    /// The city's top salesmen (as many as `salesmen` asked for), ranked by their revenue in
    /// this city. The whole list: `/v1/rankings/cities/{city_id}/salesmen`.
    pub salesmen: Vec<SalesmanJson>,
}

/// A page of the city ranking.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct CityRankingPage {
    /// Where the numbers come from.
    pub publication: PublicationJson,
    /// The period ranked (`all` or a UTC month) and its counts.
    pub period: PeriodJson,
    /// Cities in the ranking.
    pub total: u64,
    /// The `limit` applied.
    pub limit: u32,
    /// The `offset` applied.
    pub offset: u64,
    /// Cities in rank order.
    pub items: Vec<CityJson>,
}

/// A page of one city's salesman ranking.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct CitySalesmenPage {
    /// Where the numbers come from.
    pub publication: PublicationJson,
    /// The period ranked (`all` or a UTC month) and its counts.
    pub period: PeriodJson,
    /// The city in the period (its `salesmen` list left empty; the page is below); null when
    /// it has no sales in the period.
    pub city: Option<CityJson>,
    /// Salesmen ranked in this city in the period.
    pub total: u64,
    /// The `limit` applied.
    pub limit: u32,
    /// The `offset` applied.
    pub offset: u64,
    /// Salesmen in rank order.
    pub items: Vec<SalesmanJson>,
}

/// A page of the nationwide salesman ranking.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct SalesmanRankingPage {
    /// Where the numbers come from.
    pub publication: PublicationJson,
    /// The period ranked (`all` or a UTC month) and its counts.
    pub period: PeriodJson,
    /// Salesmen in the ranking.
    pub total: u64,
    /// The `limit` applied.
    pub limit: u32,
    /// The `offset` applied.
    pub offset: u64,
    /// Salesmen in rank order.
    pub items: Vec<SalesmanJson>,
}

/// One period of a publication: all time, or a calendar month of `sold_at` in UTC.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct PeriodJson {
    /// `all`, or the month as `YYYY-MM` (UTC).
    pub period: String,
    /// Current sales in the period.
    pub sales: u64,
    /// Their revenue, decimal string.
    pub revenue: String,
    /// Cities ranked in the period.
    pub cities: u64,
    /// Salesmen ranked nationwide in the period.
    pub salesmen: u64,
    /// Sales in the period whose salesman or city is not in the lake yet.
    pub unresolved_sales: u64,
    /// Sales without `sold_at`: counted in all time, in no month (0 for a month).
    pub sales_without_month: u64,
}

/// The months of the latest publication.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct MonthsPage {
    /// Where the numbers come from.
    pub publication: PublicationJson,
    /// Months with at least one current sale, oldest first.
    pub items: Vec<PeriodJson>,
}

/// How far the published rankings reach in one source.
#[derive(Debug, Clone, PartialEq, Object)]
pub struct SourceCompletenessJson {
    /// `pg` (store system, via Debezium), `files` (partner files) or `erp` (the WS-* ERP).
    pub source: String,
    /// The furthest source position the rankings include: Postgres LSN, partner-file
    /// sequence, ERP change sequence; null before the first event.
    pub position: Option<i64>,
    /// The newest source event the rankings include: Postgres commit time; for files and the
    /// ERP, when the ingestor produced it.
    pub newest_event_at: Option<DateTime<Utc>>,
    /// Seconds from that event to now: how far behind this source the rankings are.
    pub behind_seconds: Option<f64>,
    /// Events of the source the rankings include.
    pub events: u64,
}

/// Per source, how far the latest publication reaches.
#[derive(Debug, Clone, PartialEq, Object)]
pub struct CompletenessPage {
    /// Where the numbers come from.
    pub publication: PublicationJson,
    /// One item per source with events in the lake, by source name.
    pub items: Vec<SourceCompletenessJson>,
}

/// `/healthz` and `/readyz` bodies.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct Status {
    /// `ok` (alive) or `ready` (ClickHouse answers).
    pub status: String,
}

/// One dependency in the `/readyz` body.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct CheckJson {
    /// `clickhouse`, `lake`, `lineage_store`.
    pub name: String,
    /// Whether it answered in time.
    pub ok: bool,
    /// What it answered, or the error (passwords redacted).
    pub detail: String,
    /// How long the check took.
    pub latency_ms: u64,
    /// Whether readiness depends on it (only ClickHouse does: the rankings need nothing else).
    pub required: bool,
}

/// The `/readyz` body, the same shape on every Tributary service.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct ReadinessJson {
    /// `ready` or `not_ready`.
    pub status: String,
    /// Every dependency checked.
    pub checks: Vec<CheckJson>,
}

impl From<tributary_common::health::Readiness> for ReadinessJson {
    fn from(r: tributary_common::health::Readiness) -> Self {
        Self {
            status: if r.is_ready() { "ready" } else { "not_ready" }.to_string(),
            checks: r
                .checks
                .into_iter()
                .map(|c| CheckJson {
                    name: c.name,
                    ok: c.ok,
                    detail: c.detail,
                    latency_ms: c.latency_ms,
                    required: c.required,
                })
                .collect(),
        }
    }
}

fn money(cents: i64) -> String {
    Money::from_cents(cents).to_string()
}

fn known(resolved: u8, value: &str) -> Option<String> {
    (resolved != 0).then(|| value.to_string())
}

impl PublicationJson {
    /// From the `publications` row.
    pub fn from_row(row: &PublicationRow) -> Result<Self, RankingsError> {
        let snapshots = LakeSnapshots::from_json(&row.publication_id, &row.lake_snapshots)?;
        Ok(Self {
            publication_id: row.publication_id.clone(),
            lake_snapshots: snapshots
                .0
                .into_iter()
                .map(|s| LakeSnapshotJson {
                    table: s.table,
                    snapshot_id: s.snapshot_id,
                })
                .collect(),
            run_id: row.run_id.clone(),
            computed_at: row.computed_at,
            sales: row.sales,
            revenue: money(row.revenue),
            cities: row.cities,
            salesmen: row.salesmen,
            unresolved_sales: row.unresolved_sales,
            unresolved_revenue: money(row.unresolved_revenue),
            sales_without_city: row.sales_without_city,
            sales_without_salesman: row.sales_without_salesman,
            as_of: None,
            as_of_snapshot: None,
        })
    }
}

impl From<&CityRankingRow> for CityJson {
    fn from(row: &CityRankingRow) -> Self {
        Self {
            rank: row.rank,
            city_id: row.city_id,
            name: known(row.city_resolved, &row.city_name),
            state: known(row.city_resolved, &row.city_state),
            resolved: row.city_resolved != 0,
            revenue: money(row.revenue),
            sales: row.sales,
            salesmen_total: row.salesmen,
            salesmen: Vec::new(),
        }
    }
}

impl From<&CitySalesmanRankingRow> for SalesmanJson {
    fn from(row: &CitySalesmanRankingRow) -> Self {
        Self {
            rank: row.rank,
            salesman_id: row.salesman_id,
            name: known(row.salesman_resolved, &row.salesman_name),
            code: known(row.salesman_resolved, &row.salesman_code),
            resolved: row.salesman_resolved != 0,
            revenue: money(row.revenue),
            sales: row.sales,
        }
    }
}

impl From<&SalesmanRankingRow> for SalesmanJson {
    fn from(row: &SalesmanRankingRow) -> Self {
        Self {
            rank: row.rank,
            salesman_id: row.salesman_id,
            name: known(row.salesman_resolved, &row.salesman_name),
            code: known(row.salesman_resolved, &row.salesman_code),
            resolved: row.salesman_resolved != 0,
            revenue: money(row.revenue),
            sales: row.sales,
        }
    }
}

impl PeriodJson {
    /// A period without current sales.
    pub fn empty(period: Period) -> Self {
        Self {
            period: period.key(),
            sales: 0,
            revenue: money(0),
            cities: 0,
            salesmen: 0,
            unresolved_sales: 0,
            sales_without_month: 0,
        }
    }
}

impl From<&PublicationPeriodRow> for PeriodJson {
    fn from(row: &PublicationPeriodRow) -> Self {
        Self {
            period: row.period.clone(),
            sales: row.sales,
            revenue: money(row.revenue),
            cities: row.cities,
            salesmen: row.salesmen,
            unresolved_sales: row.unresolved_sales,
            sales_without_month: row.sales_without_month,
        }
    }
}

/// A city a salesman sold in, with his standing there.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct SalesmanCityJson {
    /// City id.
    pub city_id: i64,
    /// Current name of the city; null while unresolved.
    pub name: Option<String>,
    /// Current state of the city; null while unresolved.
    pub state: Option<String>,
    /// False while the city is not in the lake yet.
    pub resolved: bool,
    /// The salesman's rank among the city's salesmen (1 = top seller of the city).
    pub rank_in_city: u32,
    /// The salesman's revenue in this city, decimal string.
    pub revenue: String,
    /// The salesman's current sales in this city.
    pub sales: u64,
    /// The city's own rank in the city ranking; null if the city row is missing.
    pub city_rank: Option<u32>,
}

/// A salesman's nationwide standing in one month.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct SalesmanMonthJson {
    /// The UTC month, `YYYY-MM`.
    pub period: String,
    /// Nationwide rank in that month.
    pub rank: u32,
    /// Revenue in that month, decimal string.
    pub revenue: String,
    /// Current sales in that month.
    pub sales: u64,
}

/// `GET /v1/salesmen/{salesman_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct SalesmanDetail {
    /// Where the numbers come from.
    pub publication: PublicationJson,
    /// The period of `rank`, `revenue`, `sales` and `cities` (`all`, or `month`).
    pub period: PeriodJson,
    /// Salesman id.
    pub salesman_id: i64,
    /// Current name; null while unresolved.
    pub name: Option<String>,
    /// Current code; null while unresolved.
    pub code: Option<String>,
    /// False while the salesman is not in the lake yet.
    pub resolved: bool,
    /// Nationwide rank in the period; null when he sold nothing in it.
    pub rank: Option<u32>,
    /// Revenue in the period, decimal string.
    pub revenue: String,
    /// Current sales in the period.
    pub sales: u64,
    /// Every city he sold in during the period, by his revenue there (highest first).
    pub cities: Vec<SalesmanCityJson>,
    /// Every month he sold in, oldest first (independent of `month`).
    pub months: Vec<SalesmanMonthJson>,
}

/// A city's standing in one month.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct CityMonthJson {
    /// The UTC month, `YYYY-MM`.
    pub period: String,
    /// Rank among the cities in that month.
    pub rank: u32,
    /// Revenue in that month, decimal string.
    pub revenue: String,
    /// Current sales in that month.
    pub sales: u64,
    /// Salesmen who sold in the city that month.
    pub salesmen: u64,
}

/// `GET /v1/cities/{city_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct CityDetail {
    /// Where the numbers come from.
    pub publication: PublicationJson,
    /// The period of `rank`, `revenue`, `sales` and `salesmen` (`all`, or `month`).
    pub period: PeriodJson,
    /// City id.
    pub city_id: i64,
    /// Current name; null while unresolved.
    pub name: Option<String>,
    /// Current state; null while unresolved.
    pub state: Option<String>,
    /// False while the city is not in the lake yet.
    pub resolved: bool,
    /// Rank among the cities in the period; null when it sold nothing in it.
    pub rank: Option<u32>,
    /// Revenue in the period, decimal string.
    pub revenue: String,
    /// Current sales in the period.
    pub sales: u64,
    /// Salesmen ranked in the city in the period (all of them; `salesmen` is one page).
    pub salesmen_total: u64,
    /// The `limit` applied to `salesmen`.
    pub limit: u32,
    /// The `offset` applied to `salesmen`.
    pub offset: u64,
    /// The city's salesmen in the period, ranked by their revenue in this city.
    pub salesmen: Vec<SalesmanJson>,
    /// Every month the city sold in, oldest first (independent of `month`).
    pub months: Vec<CityMonthJson>,
}

impl From<&SalesmanRankingRow> for SalesmanMonthJson {
    fn from(row: &SalesmanRankingRow) -> Self {
        Self {
            period: row.period.clone(),
            rank: row.rank,
            revenue: money(row.revenue),
            sales: row.sales,
        }
    }
}

impl From<&CityRankingRow> for CityMonthJson {
    fn from(row: &CityRankingRow) -> Self {
        Self {
            period: row.period.clone(),
            rank: row.rank,
            revenue: money(row.revenue),
            sales: row.sales,
            salesmen: row.salesmen,
        }
    }
}

impl SalesmanCityJson {
    /// The salesman's row in a city, with the city's own row when there is one.
    pub fn new(row: &CitySalesmanRankingRow, city: Option<&CityRankingRow>) -> Self {
        Self {
            city_id: row.city_id,
            name: city.and_then(|c| known(c.city_resolved, &c.city_name)),
            state: city.and_then(|c| known(c.city_resolved, &c.city_state)),
            resolved: city.is_some_and(|c| c.city_resolved != 0),
            rank_in_city: row.rank,
            revenue: money(row.revenue),
            sales: row.sales,
            city_rank: city.map(|c| c.rank),
        }
    }
}

/// Zero money, as the API writes it.
pub fn zero_money() -> String {
    money(0)
}

/// A row's revenue, as the API writes it.
pub fn money_of(cents: i64) -> String {
    money(cents)
}

/// One rejected record of `raw.dead_letters`.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct DeadLetterJson {
    /// `pg`, `files`, `erp`, or `unknown` for a topic the API's `topics` settings do not name.
    pub source: String,
    /// Class of the failure (`bad_amount`, `undecodable`, …).
    pub kind: String,
    /// Why it was rejected.
    pub reason: String,
    /// Kafka topic it was read from.
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// Kafka offset.
    pub offset: i64,
    /// Record key, as text or base64 (`key_encoding`).
    pub key: Option<String>,
    /// `utf8` or `base64`.
    pub key_encoding: Option<String>,
    /// The rejected record (row, message) whole, as text or base64 (`value_encoding`).
    pub value: Option<String>,
    /// `utf8` or `base64`.
    pub value_encoding: Option<String>,
    /// When the lander landed it.
    pub ingested_at: DateTime<Utc>,
}

/// `GET /v1/dead-letters`.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct DeadLettersPage {
    /// Dead letters matching the filters.
    pub total: u64,
    /// The `limit` applied.
    pub limit: u32,
    /// The `offset` applied.
    pub offset: u64,
    /// Newest first.
    pub items: Vec<DeadLetterJson>,
}

/// Dead letters of one source and kind.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct DeadLetterCountJson {
    /// `pg`, `files`, `erp` or `unknown`.
    pub source: String,
    /// Class of the failure.
    pub kind: String,
    /// How many.
    pub count: u64,
    /// When the newest of them was landed.
    pub newest_at: DateTime<Utc>,
}

/// `GET /v1/dead-letters/counts`.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct DeadLetterCountsPage {
    /// Every dead letter.
    pub total: u64,
    /// Per source and kind, by source then kind.
    pub items: Vec<DeadLetterCountJson>,
}

impl From<crate::dead_letters::DeadLetter> for DeadLetterJson {
    fn from(d: crate::dead_letters::DeadLetter) -> Self {
        Self {
            source: d.source,
            kind: d.kind,
            reason: d.reason,
            topic: d.topic,
            partition: d.partition,
            offset: d.offset,
            key: d.key,
            key_encoding: d.key_encoding,
            value: d.value,
            value_encoding: d.value_encoding,
            ingested_at: d.ingested_at,
        }
    }
}

impl From<&crate::dead_letters::Count> for DeadLetterCountJson {
    fn from(c: &crate::dead_letters::Count) -> Self {
        Self {
            source: c.source.clone(),
            kind: c.kind.clone(),
            count: c.count,
            newest_at: c.newest_at,
        }
    }
}
