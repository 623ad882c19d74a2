//! From raw events to totals, in DataFusion SQL.
//!
//! The raw tables are registered under their own names (`pg_sale`, `pg_salesman`, `pg_city`,
//! `file_sale`, `erp_sale`; see `lake`). The current state of a key is its newest event in its
//! source's own order, whatever order the events were landed in: `(source_lsn, kafka_offset)`
//! for Postgres, `(version_major, version_minor, kafka_offset)` for files and the ERP. If that
//! event is a delete (`op = 'd'`: a CDC delete, a withdrawal from a snapshot file, an ERP
//! cancellation) the sale is gone. A sale is identified by (source, sale id), so the same id in
//! two sources is two sales.
//!
//! Names come from the current `pg_salesman`/`pg_city` rows, so a rename shows everywhere.
//! Files and the ERP may name a salesman by code and a city by name and state; those resolve
//! against the current master data at every run. A sale whose salesman or city is not known
//! yet is kept and counted as *unresolved*: under its id when it has one, in the summary only
//! when it has just a natural key nobody knows yet. It joins the rankings when the master data
//! arrives.
//!
//! Ranking is not done here: the totals go to [`tributary_rankings::ranking`], which is plain Rust.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Decimal128Type, Int64Type};
use datafusion::prelude::SessionContext;

use crate::error::MartsError;
use tributary_rankings::money::Money;
use tributary_rankings::period::Period;
use tributary_rankings::ranking::{
    CityInfo, CitySalesmanTotals, CityTotals, PeriodTotals, SalesmanInfo, SalesmanTotals, Summary,
    Totals,
};

/// Latest version of every Postgres sale still present, with where that version came from.
/// The row-number tie-break is total over one partition (a key's events all go to one Kafka
/// partition), so the choice is deterministic.
pub const CURRENT_PG_SALE: &str = "
SELECT id, salesman_id, city_id, amount, sold_at,
       source_lsn, source_txid, source_ts, kafka_topic, kafka_partition, kafka_offset, ingest_time,
       {trace_id} AS trace_id
FROM (
    SELECT *,
           row_number() OVER (PARTITION BY id ORDER BY source_lsn DESC, kafka_offset DESC) AS newest
    FROM pg_sale
) AS events
WHERE newest = 1 AND op <> 'd'";

/// Latest version of every sale of a sale-event table (`{table}`) still present, with where
/// that version came from.
const CURRENT_EVENT_SALE: &str = "
SELECT origin, sale_id, salesman_id, salesman_code, city_id, city_name, city_state, amount, sold_at,
       version_major, version_minor, produced_at, provenance_json,
       kafka_topic, kafka_partition, kafka_offset, ingest_time, {trace_id} AS trace_id
FROM (
    SELECT *,
           row_number() OVER (
               PARTITION BY origin, sale_id
               ORDER BY version_major DESC, version_minor DESC, kafka_offset DESC
           ) AS newest
    FROM {table}
) AS events
WHERE newest = 1 AND op <> 'd'";

/// One id per salesman code (codes are unique in the store system; `MIN` keeps a duplicate
/// from multiplying sales).
const SALESMAN_BY_CODE: &str = "
SELECT code, MIN(id) AS id FROM current_salesman WHERE code IS NOT NULL GROUP BY code";

/// One id per normalised (city name, state): case, outer and repeated spaces do not matter.
const CITY_BY_NAME: &str = "
SELECT lower(btrim(regexp_replace(name, '\\s+', ' ', 'g'))) AS name_key,
       upper(btrim(state)) AS state_key,
       MIN(id) AS id
FROM current_city
WHERE name IS NOT NULL AND state IS NOT NULL
GROUP BY 1, 2";

/// A sale-event source's current sales with their references resolved where possible.
/// `*_pending` marks a natural key that matches no master data yet. The provenance columns
/// line up with [`CURRENT_SALE`]'s Postgres branch.
const RESOLVED_EVENT_SALE: &str = "
SELECT CAST('{source}' AS VARCHAR) AS source,
       CAST(e.origin || '/' || e.sale_id AS VARCHAR) AS sale_id,
       COALESCE(e.salesman_id, m.id) AS salesman_id,
       COALESCE(e.city_id, c.id) AS city_id,
       e.amount,
       e.sold_at,
       e.salesman_id IS NULL AND m.id IS NULL AS salesman_pending,
       e.city_id IS NULL AND c.id IS NULL AS city_pending,
       CAST(NULL AS BIGINT) AS source_lsn,
       CAST(NULL AS BIGINT) AS source_txid,
       e.produced_at AS source_time,
       e.version_major,
       e.version_minor,
       e.provenance_json,
       e.kafka_topic, e.kafka_partition, e.kafka_offset, e.ingest_time, e.trace_id
FROM current_{table} e
LEFT JOIN salesman_by_code m
       ON e.salesman_id IS NULL AND m.code = e.salesman_code
LEFT JOIN city_by_name c
       ON e.city_id IS NULL
      AND c.name_key = lower(btrim(regexp_replace(e.city_name, '\\s+', ' ', 'g')))
      AND c.state_key = upper(btrim(e.city_state))";

/// Every current sale of every source, with the coordinates of its current version: for
/// Postgres the LSN, transaction and commit time (`source_time`); for files and the ERP the
/// version (file or change sequence, record) and the ingestor's provenance JSON, `source_time`
/// being when the ingestor produced it; for all, the Kafka record, when it was landed and the
/// ingest trace id.
const CURRENT_SALE: &str = "
SELECT CAST('pg' AS VARCHAR) AS source, CAST(id AS VARCHAR) AS sale_id, salesman_id, city_id, amount,
       sold_at,
       FALSE AS salesman_pending, FALSE AS city_pending,
       source_lsn, source_txid, source_ts AS source_time,
       CAST(NULL AS BIGINT) AS version_major,
       CAST(NULL AS BIGINT) AS version_minor,
       CAST(NULL AS VARCHAR) AS provenance_json,
       kafka_topic, kafka_partition, kafka_offset, ingest_time, trace_id
FROM current_pg_sale
UNION ALL
SELECT * FROM resolved_file_sale
UNION ALL
SELECT * FROM resolved_erp_sale";

/// Every current sale once for all time and once more for its UTC calendar month of `sold_at`
/// (`YYYY-MM`). `sold_at` is an Iceberg `timestamptz`, UTC in Arrow (`+00:00`), so the month
/// is the UTC month. A sale without `sold_at` is in `all` only. The aggregations group by
/// `period`, so every period is computed by the same query as all time.
pub const SALE_PERIOD: &str = "
SELECT CAST('all' AS VARCHAR) AS period, s.* FROM current_sale s
UNION ALL
SELECT CAST(to_char(s.sold_at, '%Y-%m') AS VARCHAR) AS period, s.* FROM current_sale s
WHERE s.sold_at IS NOT NULL";

/// Latest version of every salesman still present.
pub const CURRENT_SALESMAN: &str = "
SELECT id, code, name, city_id
FROM (
    SELECT id, op, code, name, city_id,
           row_number() OVER (PARTITION BY id ORDER BY source_lsn DESC, kafka_offset DESC) AS newest
    FROM pg_salesman
) AS events
WHERE newest = 1 AND op <> 'd'";

/// Latest version of every city still present.
pub const CURRENT_CITY: &str = "
SELECT id, name, state
FROM (
    SELECT id, op, name, state,
           row_number() OVER (PARTITION BY id ORDER BY source_lsn DESC, kafka_offset DESC) AS newest
    FROM pg_city
) AS events
WHERE newest = 1 AND op <> 'd'";

/// Per city (of the sale): revenue and count, with the city's current name if known.
pub const CITY_TOTALS: &str = "
SELECT s.period AS period,
       s.city_id AS city_id,
       c.name AS name,
       c.state AS state,
       c.id IS NOT NULL AS resolved,
       CAST(SUM(s.amount) AS DECIMAL(38, 2)) AS revenue,
       COUNT(*) AS sales
FROM sale_period s
LEFT JOIN current_city c ON s.city_id = c.id
WHERE s.city_id IS NOT NULL
GROUP BY s.period, s.city_id, c.id, c.name, c.state";

/// Per (city, salesman): the salesman's revenue and count in that city.
pub const CITY_SALESMAN_TOTALS: &str = "
SELECT s.period AS period,
       s.city_id AS city_id,
       s.salesman_id AS salesman_id,
       m.name AS name,
       m.code AS code,
       m.id IS NOT NULL AS resolved,
       CAST(SUM(s.amount) AS DECIMAL(38, 2)) AS revenue,
       COUNT(*) AS sales
FROM sale_period s
LEFT JOIN current_salesman m ON s.salesman_id = m.id
WHERE s.city_id IS NOT NULL AND s.salesman_id IS NOT NULL
GROUP BY s.period, s.city_id, s.salesman_id, m.id, m.name, m.code";

/// Per salesman, nationwide.
pub const SALESMAN_TOTALS: &str = "
SELECT s.period AS period,
       s.salesman_id AS salesman_id,
       m.name AS name,
       m.code AS code,
       m.id IS NOT NULL AS resolved,
       CAST(SUM(s.amount) AS DECIMAL(38, 2)) AS revenue,
       COUNT(*) AS sales
FROM sale_period s
LEFT JOIN current_salesman m ON s.salesman_id = m.id
WHERE s.salesman_id IS NOT NULL
GROUP BY s.period, s.salesman_id, m.id, m.name, m.code";

/// Whole-set counts, including what no ranking shows (sales without a city or salesman id).
/// A sale is unresolved when it names a city or salesman (by id or natural key) the lake does
/// not have (yet).
pub const SUMMARY: &str = "
SELECT period,
       COUNT(*) AS sales,
       CAST(SUM(amount) AS DECIMAL(38, 2)) AS revenue,
       CAST(SUM(CASE WHEN unresolved THEN 1 ELSE 0 END) AS BIGINT) AS unresolved_sales,
       CAST(SUM(CASE WHEN unresolved THEN amount END) AS DECIMAL(38, 2)) AS unresolved_revenue,
       CAST(SUM(CASE WHEN city_id IS NULL AND NOT city_pending THEN 1 ELSE 0 END) AS BIGINT)
           AS sales_without_city,
       CAST(SUM(CASE WHEN salesman_id IS NULL AND NOT salesman_pending THEN 1 ELSE 0 END) AS BIGINT)
           AS sales_without_salesman,
       CAST(SUM(CASE WHEN sold_at IS NULL THEN 1 ELSE 0 END) AS BIGINT) AS sales_without_month
FROM (
    SELECT s.period, s.amount, s.sold_at, s.city_id, s.salesman_id, s.city_pending, s.salesman_pending,
           (s.city_id IS NOT NULL AND c.id IS NULL)
               OR (s.salesman_id IS NOT NULL AND m.id IS NULL)
               OR s.city_pending OR s.salesman_pending AS unresolved
    FROM sale_period s
    LEFT JOIN current_city c ON s.city_id = c.id
    LEFT JOIN current_salesman m ON s.salesman_id = m.id
) AS sales
GROUP BY period";

async fn collect(
    ctx: &SessionContext,
    query: &'static str,
    sql: &str,
) -> Result<Vec<RecordBatch>, MartsError> {
    let df_err = |source| MartsError::Query {
        query,
        source: Box::new(source),
    };
    ctx.sql(sql)
        .await
        .map_err(df_err)?
        .collect()
        .await
        .map_err(df_err)
}

/// The expression of a sale table's trace id when its snapshot predates the column.
pub const NO_TRACE_ID: &str = "CAST(NULL AS VARCHAR)";

/// The named views from the raw tables to `sale_period`, in dependency order (each reads the
/// ones before it). `trace_ids` gives, for `pg_sale`, `file_sale` and `erp_sale`, the expression
/// of the trace id: `trace_id`, or [`NO_TRACE_ID`].
pub fn current_state_steps(trace_ids: [&str; 3]) -> [(&'static str, String); 11] {
    let [pg_trace, file_trace, erp_trace] = trace_ids;
    let pg_sale = CURRENT_PG_SALE.replace("{trace_id}", pg_trace);
    let file_sale = CURRENT_EVENT_SALE
        .replace("{table}", "file_sale")
        .replace("{trace_id}", file_trace);
    let erp_sale = CURRENT_EVENT_SALE
        .replace("{table}", "erp_sale")
        .replace("{trace_id}", erp_trace);
    let resolved = |table: &str, source: &str| {
        RESOLVED_EVENT_SALE
            .replace("{table}", table)
            .replace("{source}", source)
    };
    [
        ("current_salesman", CURRENT_SALESMAN.into()),
        ("current_city", CURRENT_CITY.into()),
        ("salesman_by_code", SALESMAN_BY_CODE.into()),
        ("city_by_name", CITY_BY_NAME.into()),
        ("current_pg_sale", pg_sale),
        ("current_file_sale", file_sale),
        ("current_erp_sale", erp_sale),
        ("resolved_file_sale", resolved("file_sale", "files")),
        ("resolved_erp_sale", resolved("erp_sale", "erp")),
        ("current_sale", CURRENT_SALE.into()),
        ("sale_period", SALE_PERIOD.into()),
    ]
}

/// The materialised current state's rows, counted in the session's memory pool for as long as
/// this is held: drop it when the queries over them are done.
#[must_use = "the materialised tables are counted in the memory pool only while this is held"]
#[derive(Debug)]
pub struct HeldState {
    _reservation: datafusion::execution::memory_pool::MemoryReservation,
}

/// Materialises the current state of each raw table once (as `current_sale`,
/// `current_salesman`, `current_city`), so the aggregations below do not rescan the lake.
///
/// The rows kept are counted in `ctx`'s memory pool (unbounded by default): in a session with a
/// memory limit, a state that does not fit fails with DataFusion's `ResourcesExhausted`
/// ([`MartsError::is_out_of_memory`]) instead of growing the process without bound.
pub async fn register_current_state(ctx: &SessionContext) -> Result<HeldState, MartsError> {
    use datafusion::execution::memory_pool::MemoryConsumer;
    let mut held = HeldState {
        _reservation: MemoryConsumer::new("tributary current state")
            .register(&ctx.runtime_env().memory_pool),
    };
    let mut counted = CountedBuffers::default();
    // A snapshot written before the lake had `trace_id` is read with the schema it was written
    // with, so the column may be missing: it reads as null then.
    let trace_id = |table: &'static str| async move {
        let has = ctx.table_provider(table).await.is_ok_and(|provider| {
            provider
                .schema()
                .column_with_name(tributary_raw::schema::col::TRACE_ID)
                .is_some()
        });
        if has { "trace_id" } else { NO_TRACE_ID }
    };
    let trace_ids = [
        trace_id("pg_sale").await,
        trace_id("file_sale").await,
        trace_id("erp_sale").await,
    ];
    for (name, sql) in current_state_steps(trace_ids) {
        let df_err = |source| MartsError::Query {
            query: name,
            source: Box::new(source),
        };
        let frame = ctx.sql(&sql).await.map_err(df_err)?;
        let table = materialise(frame, &mut held._reservation, &mut counted)
            .await
            .map_err(df_err)?;
        ctx.register_table(name, table).map_err(df_err)?;
    }
    Ok(held)
}

/// The distinct allocations seen in batches kept so far: a batch sliced from a larger one
/// shares its buffers, so each allocation is counted once, at its capacity.
#[derive(Default)]
struct CountedBuffers(std::collections::HashSet<usize>);

impl CountedBuffers {
    /// The bytes of `batch`'s allocations not counted before.
    fn new_bytes(&mut self, batch: &RecordBatch) -> usize {
        fn walk(data: &arrow::array::ArrayData, seen: &mut CountedBuffers) -> usize {
            let mut bytes = 0;
            let nulls = data.nulls().map(|n| n.buffer());
            for buffer in data.buffers().iter().chain(nulls) {
                if seen.0.insert(buffer.data_ptr().as_ptr() as usize) {
                    bytes += buffer.capacity();
                }
            }
            bytes
                + data
                    .child_data()
                    .iter()
                    .map(|child| walk(child, seen))
                    .sum::<usize>()
        }
        batch
            .columns()
            .iter()
            .map(|column| walk(&column.to_data(), self))
            .sum()
    }
}

/// Runs `frame` once and keeps its rows in memory, with the Parquet field ids and docs the
/// lake's columns carry stripped: the sources' metadata differ, and DataFusion refuses a union
/// (or a cached plan) whose branches' field metadata do not match.
///
/// Each batch is counted in `reservation` as it arrives, so a state too large for the session's
/// memory pool stops at the batch that would exceed it.
async fn materialise(
    frame: datafusion::dataframe::DataFrame,
    reservation: &mut datafusion::execution::memory_pool::MemoryReservation,
    counted: &mut CountedBuffers,
) -> datafusion::error::Result<std::sync::Arc<datafusion::datasource::MemTable>> {
    use std::sync::Arc;

    use arrow::datatypes::{Field, Schema};
    use futures::StreamExt;

    let fields: Vec<Field> = frame
        .schema()
        .as_arrow()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_metadata(Default::default()))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let mut stream = frame.execute_stream().await?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        reservation.try_grow(counted.new_bytes(&batch))?;
        batches.push(RecordBatch::try_new(
            schema.clone(),
            batch.columns().to_vec(),
        )?);
    }
    Ok(Arc::new(datafusion::datasource::MemTable::try_new(
        schema,
        vec![batches],
    )?))
}

/// Computes every total the rankings need. Expects the raw tables registered in `ctx`.
pub async fn compute_totals(ctx: &SessionContext) -> Result<PeriodTotals, MartsError> {
    let _held = register_current_state(ctx).await?;
    let mut results: [Vec<RecordBatch>; 4] = Default::default();
    for (result, (name, sql)) in results.iter_mut().zip(TOTALS_QUERIES) {
        *result = collect(ctx, name, sql).await?;
    }
    totals_from_batches(&results)
}

/// The aggregations over `sale_period`, `current_city` and `current_salesman` whose results
/// [`totals_from_batches`] reads, in its order.
pub const TOTALS_QUERIES: [(&str, &str); 4] = [
    ("city_totals", CITY_TOTALS),
    ("city_salesman_totals", CITY_SALESMAN_TOTALS),
    ("salesman_totals", SALESMAN_TOTALS),
    ("summary", SUMMARY),
];

/// The totals from the results of [`TOTALS_QUERIES`], whatever engine ran them (DataFusion
/// here, Trino in [`crate::trino`]).
pub fn totals_from_batches(results: &[Vec<RecordBatch>; 4]) -> Result<PeriodTotals, MartsError> {
    let [city_totals, city_salesman_totals, salesman_totals, summary] = results;
    let mut totals = PeriodTotals::default();
    for batch in city_totals {
        let cols = Columns::new("city_totals", batch);
        let period = cols.period()?;
        let (city_id, name, state) = (cols.i64("city_id")?, cols.str("name")?, cols.str("state")?);
        let (resolved, revenue, sales) = (
            cols.bool("resolved")?,
            cols.money("revenue")?,
            cols.i64("sales")?,
        );
        for i in 0..batch.num_rows() {
            let id = required(&city_id, i, "city_totals", "city_id")?;
            period_totals(&mut totals, period[i])
                .cities
                .push(CityTotals {
                    city_id: id,
                    info: resolved[i].then(|| CityInfo {
                        name: name[i].clone().unwrap_or_default(),
                        state: state[i].clone().unwrap_or_default(),
                    }),
                    revenue: money(&revenue, i, || format!("city {id}"))?,
                    sales: count(&sales, i),
                });
        }
    }
    for batch in city_salesman_totals {
        let cols = Columns::new("city_salesman_totals", batch);
        let period = cols.period()?;
        let (city_id, salesman_id) = (cols.i64("city_id")?, cols.i64("salesman_id")?);
        let (name, code, resolved) = (cols.str("name")?, cols.str("code")?, cols.bool("resolved")?);
        let (revenue, sales) = (cols.money("revenue")?, cols.i64("sales")?);
        for i in 0..batch.num_rows() {
            let city = required(&city_id, i, "city_salesman_totals", "city_id")?;
            let id = required(&salesman_id, i, "city_salesman_totals", "salesman_id")?;
            period_totals(&mut totals, period[i])
                .city_salesmen
                .push(CitySalesmanTotals {
                    city_id: city,
                    salesman: SalesmanTotals {
                        salesman_id: id,
                        info: resolved[i].then(|| SalesmanInfo {
                            name: name[i].clone().unwrap_or_default(),
                            code: code[i].clone().unwrap_or_default(),
                        }),
                        revenue: money(&revenue, i, || format!("salesman {id} in city {city}"))?,
                        sales: count(&sales, i),
                    },
                });
        }
    }
    for batch in salesman_totals {
        let cols = Columns::new("salesman_totals", batch);
        let period = cols.period()?;
        let (salesman_id, name, code) = (
            cols.i64("salesman_id")?,
            cols.str("name")?,
            cols.str("code")?,
        );
        let (resolved, revenue, sales) = (
            cols.bool("resolved")?,
            cols.money("revenue")?,
            cols.i64("sales")?,
        );
        for i in 0..batch.num_rows() {
            let id = required(&salesman_id, i, "salesman_totals", "salesman_id")?;
            period_totals(&mut totals, period[i])
                .salesmen
                .push(SalesmanTotals {
                    salesman_id: id,
                    info: resolved[i].then(|| SalesmanInfo {
                        name: name[i].clone().unwrap_or_default(),
                        code: code[i].clone().unwrap_or_default(),
                    }),
                    revenue: money(&revenue, i, || format!("salesman {id}"))?,
                    sales: count(&sales, i),
                });
        }
    }

    for batch in summary {
        let cols = Columns::new("summary", batch);
        let period = cols.period()?;
        let (sales, revenue) = (cols.i64("sales")?, cols.money("revenue")?);
        let (unresolved, unresolved_revenue) = (
            cols.i64("unresolved_sales")?,
            cols.money("unresolved_revenue")?,
        );
        let (without_city, without_salesman, without_month) = (
            cols.i64("sales_without_city")?,
            cols.i64("sales_without_salesman")?,
            cols.i64("sales_without_month")?,
        );
        for (i, period) in period.into_iter().enumerate() {
            period_totals(&mut totals, period).summary = Summary {
                sales: count(&sales, i),
                revenue: money(&revenue, i, || format!("all sales of {period}"))?,
                unresolved_sales: count(&unresolved, i),
                unresolved_revenue: money(&unresolved_revenue, i, || {
                    format!("unresolved sales of {period}")
                })?,
                sales_without_city: count(&without_city, i),
                sales_without_salesman: count(&without_salesman, i),
                sales_without_month: count(&without_month, i),
            };
        }
    }

    Ok(totals)
}

/// The totals of `period`, created empty on first use.
fn period_totals(totals: &mut PeriodTotals, period: Period) -> &mut Totals {
    match period {
        Period::AllTime => &mut totals.all,
        Period::Month(m) => totals.months.entry(m).or_default(),
    }
}

/// Typed access to a result batch's columns, with errors naming the query and column.
pub(crate) struct Columns<'a> {
    query: &'static str,
    batch: &'a RecordBatch,
}

/// A decimal column's values (unscaled) and scale.
pub(crate) struct Decimals {
    pub(crate) values: Vec<Option<i128>>,
    pub(crate) scale: i8,
}

impl<'a> Columns<'a> {
    pub(crate) fn new(query: &'static str, batch: &'a RecordBatch) -> Self {
        Self { query, batch }
    }

    fn column(&self, name: &str) -> Result<&'a ArrayRef, MartsError> {
        self.batch
            .column_by_name(name)
            .ok_or_else(|| MartsError::UnexpectedColumn {
                query: self.query,
                column: name.to_string(),
                expected: "a column of that name",
                found: "no such column".into(),
            })
    }

    fn unexpected(&self, name: &str, expected: &'static str, found: &DataType) -> MartsError {
        MartsError::UnexpectedColumn {
            query: self.query,
            column: name.to_string(),
            expected,
            found: found.to_string(),
        }
    }

    pub(crate) fn i64(&self, name: &str) -> Result<Vec<Option<i64>>, MartsError> {
        let col = self.column(name)?;
        col.as_primitive_opt::<Int64Type>()
            .map(|a| a.iter().collect())
            .ok_or_else(|| self.unexpected(name, "Int64", col.data_type()))
    }

    /// Any integer column (or an all-null one), widened to `i64`.
    pub(crate) fn int(&self, name: &str) -> Result<Vec<Option<i64>>, MartsError> {
        let col = self.column(name)?;
        if !(col.data_type().is_integer() || col.data_type() == &DataType::Null) {
            return Err(self.unexpected(name, "an integer", col.data_type()));
        }
        let wide = cast(col, &DataType::Int64)
            .map_err(|_| self.unexpected(name, "an integer", col.data_type()))?;
        Ok(wide.as_primitive::<Int64Type>().iter().collect())
    }

    /// A microsecond timestamp column (the lake's `timestamptz`), as UTC times.
    pub(crate) fn timestamp(
        &self,
        name: &str,
    ) -> Result<Vec<Option<chrono::DateTime<chrono::Utc>>>, MartsError> {
        let col = self.column(name)?;
        match col.data_type() {
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, _) => Ok(col
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                .iter()
                .map(|v| v.and_then(chrono::DateTime::from_timestamp_micros))
                .collect()),
            other => Err(self.unexpected(name, "Timestamp(µs)", other)),
        }
    }

    fn bool(&self, name: &str) -> Result<Vec<bool>, MartsError> {
        let col = self.column(name)?;
        col.as_boolean_opt()
            .map(|a| a.iter().map(|v| v.unwrap_or(false)).collect())
            .ok_or_else(|| self.unexpected(name, "Boolean", col.data_type()))
    }

    /// Utf8, LargeUtf8 or Utf8View (DataFusion may produce any of them).
    pub(crate) fn str(&self, name: &str) -> Result<Vec<Option<String>>, MartsError> {
        let col = self.column(name)?;
        let utf8 = match col.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
                cast(col, &DataType::Utf8)
                    .map_err(|_| self.unexpected(name, "a string", col.data_type()))?
            }
            other => return Err(self.unexpected(name, "a string", other)),
        };
        let strings = utf8.as_string::<i32>();
        Ok(strings.iter().map(|s| s.map(str::to_string)).collect())
    }

    /// The `period` column, parsed (`all` or `YYYY-MM`).
    fn period(&self) -> Result<Vec<Period>, MartsError> {
        self.str("period")?
            .into_iter()
            .map(|p| {
                p.as_deref().and_then(|p| p.parse().ok()).ok_or_else(|| {
                    MartsError::UnexpectedColumn {
                        query: self.query,
                        column: "period".into(),
                        expected: "all or YYYY-MM",
                        found: format!("{p:?}"),
                    }
                })
            })
            .collect()
    }

    pub(crate) fn money(&self, name: &str) -> Result<Decimals, MartsError> {
        let col = self.column(name)?;
        match col.data_type() {
            DataType::Decimal128(_, scale) => Ok(Decimals {
                values: col.as_primitive::<Decimal128Type>().iter().collect(),
                scale: *scale,
            }),
            other => Err(self.unexpected(name, "Decimal128", other)),
        }
    }
}

fn required(
    values: &[Option<i64>],
    i: usize,
    query: &'static str,
    column: &str,
) -> Result<i64, MartsError> {
    values[i].ok_or_else(|| MartsError::UnexpectedColumn {
        query,
        column: column.to_string(),
        expected: "no nulls",
        found: "a null".into(),
    })
}

/// `COUNT`/`SUM` of ones are never negative or null; a null (no rows) counts as zero.
fn count(values: &[Option<i64>], i: usize) -> u64 {
    values[i].map_or(0, |v| u64::try_from(v).unwrap_or(0))
}

/// A null sum (every amount null) is zero revenue.
fn money(values: &Decimals, i: usize, scope: impl FnOnce() -> String) -> Result<Money, MartsError> {
    match values.values[i] {
        None => Ok(Money::ZERO),
        Some(v) => Money::from_unscaled(v, values.scale).map_err(|source| {
            MartsError::Rankings(tributary_rankings::RankingsError::Revenue {
                scope: scope(),
                source,
            })
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{Ev, city, memtable_context, sale, salesman};

    async fn totals(sales: &[Ev], salesmen: &[Ev], cities: &[Ev]) -> Totals {
        let ctx = memtable_context(sales, salesmen, cities);
        compute_totals(&ctx).await.expect("totals").all
    }

    async fn current_sales(sales: &[Ev]) -> Vec<(i64, Option<i64>, Option<i64>, Option<i128>)> {
        let ctx = memtable_context(sales, &[], &[]);
        let current = CURRENT_PG_SALE.replace("{trace_id}", "trace_id");
        let sql = format!("SELECT * FROM ({current}) AS s ORDER BY id");
        let batches = collect(&ctx, "test", &sql).await.unwrap();
        let mut out = Vec::new();
        for b in &batches {
            let cols = Columns::new("test", b);
            let (id, sm, c) = (
                cols.i64("id").unwrap(),
                cols.i64("salesman_id").unwrap(),
                cols.i64("city_id").unwrap(),
            );
            let amount = cols.money("amount").unwrap();
            for i in 0..b.num_rows() {
                out.push((id[i].unwrap(), sm[i], c[i], amount.values[i]));
            }
        }
        out
    }

    #[tokio::test]
    async fn the_current_state_is_counted_in_the_sessions_memory_pool() {
        use crate::test_support::memtable_context_limited;
        let sales: Vec<Ev> = (0..2_000)
            .map(|i| {
                sale(
                    "c",
                    i,
                    (100 + i, i),
                    Some(i % 7),
                    Some(i % 3),
                    Some(1_000 + i),
                )
            })
            .collect();
        // Totals come in no particular order.
        let sorted = |mut t: Totals| {
            t.cities.sort_by_key(|c| c.city_id);
            t.city_salesmen
                .sort_by_key(|c| (c.city_id, c.salesman.salesman_id));
            t.salesmen.sort_by_key(|s| s.salesman_id);
            t
        };
        let unbounded = sorted(totals(&sales, &[], &[]).await);

        let ample = memtable_context_limited(256 << 20, &sales, &[], &[]);
        let bounded = compute_totals(&ample).await.expect("totals").all;
        assert_eq!(sorted(bounded), unbounded);
        assert_eq!(
            ample.runtime_env().memory_pool.reserved(),
            0,
            "the materialised state is released with the totals computed"
        );

        let tight = memtable_context_limited(16 << 10, &sales, &[], &[]);
        let error = compute_totals(&tight)
            .await
            .expect_err("2,000 sales do not fit in 16 KiB");
        assert!(error.is_out_of_memory(), "{error}");
        assert!(!error.is_retryable(), "{error}");
    }

    #[tokio::test]
    async fn latest_event_per_id_wins_and_deletes_remove() {
        let sales = [
            sale("r", 1, (100, 0), Some(10), Some(7), Some(1000)),
            sale("c", 2, (110, 1), Some(10), Some(7), Some(500)),
            sale("u", 1, (120, 2), Some(11), Some(7), Some(1500)),
            sale("c", 3, (130, 3), Some(11), Some(8), Some(700)),
            sale("d", 2, (140, 4), Some(10), Some(7), Some(500)),
        ];
        assert_eq!(
            current_sales(&sales).await,
            vec![
                (1, Some(11), Some(7), Some(1500)),
                (3, Some(11), Some(8), Some(700))
            ]
        );
    }

    #[tokio::test]
    async fn source_order_decides_not_landing_order() {
        // The update has the higher LSN but was landed first (lower offset in another batch).
        let sales = [
            sale("u", 1, (200, 5), Some(10), Some(7), Some(2000)),
            sale("c", 1, (100, 9), Some(10), Some(7), Some(1000)),
            // Same LSN (e.g. a snapshot read): the higher offset wins.
            sale("r", 2, (50, 1), Some(10), Some(7), Some(1)),
            sale("r", 2, (50, 2), Some(10), Some(7), Some(2)),
            // A delete that precedes a re-insert of the same id in source order.
            sale("d", 3, (300, 3), Some(10), Some(7), Some(10)),
            sale("c", 3, (310, 4), Some(10), Some(7), Some(30)),
        ];
        assert_eq!(
            current_sales(&sales).await,
            vec![
                (1, Some(10), Some(7), Some(2000)),
                (2, Some(10), Some(7), Some(2)),
                (3, Some(10), Some(7), Some(30)),
            ]
        );
    }

    #[tokio::test]
    async fn empty_tables_give_empty_totals() {
        let t = totals(&[], &[], &[]).await;
        assert!(t.cities.is_empty() && t.city_salesmen.is_empty() && t.salesmen.is_empty());
        assert_eq!(t.summary, Summary::default());
    }

    #[tokio::test]
    async fn file_sales_resolve_natural_keys_take_corrections_and_withdrawals() {
        use crate::test_support::{Ref, file_sale, memtable_context_with_files};
        let sales = [sale("c", 1, (10, 0), Some(100), Some(7), Some(1000))];
        let salesmen = [salesman("c", 100, (1, 0), "S100", "Ana")];
        let cities = [city("c", 7, (1, 0), "São  Paulo", "SP")];
        let files = [
            // Same id as the Postgres sale: another source, another sale.
            file_sale(
                "u",
                ("acme", "1"),
                (1, 0),
                Ref::Key("S100"),
                Ref::Key(" são paulo |sp"),
                Some(500),
            ),
            // Corrected by file 2 (later in source order even though it appears first here).
            file_sale(
                "u",
                ("acme", "2"),
                (2, 0),
                Ref::Key("S100"),
                Ref::Id(7),
                Some(300),
            ),
            file_sale(
                "u",
                ("acme", "2"),
                (1, 1),
                Ref::Key("S100"),
                Ref::Id(7),
                Some(9999),
            ),
            // Withdrawn by a later snapshot.
            file_sale(
                "u",
                ("acme", "3"),
                (1, 2),
                Ref::Id(100),
                Ref::Id(7),
                Some(7000),
            ),
            file_sale("d", ("acme", "3"), (2, 5), Ref::Id(100), Ref::Id(7), None),
            // A salesman code nobody knows yet: in the city, unresolved, in no salesman ranking.
            file_sale(
                "u",
                ("globex", "9"),
                (3, 0),
                Ref::Key("S999"),
                Ref::Id(7),
                Some(40),
            ),
            // A city nobody knows yet: the salesman counts it, no city does.
            file_sale(
                "u",
                ("globex", "10"),
                (3, 1),
                Ref::Id(100),
                Ref::Key("Atlantis|XX"),
                Some(2),
            ),
        ];
        let ctx = memtable_context_with_files(&sales, &salesmen, &cities, &files);
        let t = compute_totals(&ctx).await.unwrap().all;
        let city7 = t.cities.iter().find(|c| c.city_id == 7).unwrap();
        assert_eq!(
            (city7.revenue.cents(), city7.sales),
            (1000 + 500 + 300 + 40, 4)
        );
        assert_eq!(t.cities.len(), 1, "the unknown city is not ranked");
        let ana = t.salesmen.iter().find(|s| s.salesman_id == 100).unwrap();
        assert_eq!((ana.revenue.cents(), ana.sales), (1000 + 500 + 300 + 2, 4));
        assert_eq!(t.salesmen.len(), 1, "the unknown code is not ranked");
        assert_eq!(t.summary.sales, 5);
        assert_eq!(t.summary.unresolved_sales, 2);
        assert_eq!(t.summary.unresolved_revenue.cents(), 42);
        assert_eq!(t.summary.sales_without_city, 0);
        assert_eq!(t.summary.sales_without_salesman, 0);
    }

    #[tokio::test]
    async fn totals_join_current_names_and_keep_unresolved_sales() {
        let sales = [
            sale("c", 1, (10, 0), Some(100), Some(7), Some(1050)),
            sale("c", 2, (11, 1), Some(100), Some(7), Some(2000)),
            sale("c", 3, (12, 2), Some(200), Some(7), Some(999)),
            sale("c", 4, (13, 3), Some(200), Some(8), Some(1)),
            // Salesman 300 and city 9 are not in the lake yet.
            sale("c", 5, (14, 4), Some(300), Some(9), Some(5000)),
            // No city / no salesman at all.
            sale("c", 6, (15, 5), Some(100), None, Some(10)),
            sale("c", 7, (16, 6), None, Some(8), Some(20)),
            // Deleted: in no total.
            sale("c", 8, (17, 7), Some(100), Some(7), Some(100_000)),
            sale("d", 8, (18, 8), Some(100), Some(7), Some(100_000)),
        ];
        let salesmen = [
            salesman("c", 100, (1, 0), "S100", "Ana"),
            salesman("c", 200, (2, 1), "S200", "Bruno"),
            // Renamed: the new name shows everywhere.
            salesman("u", 100, (3, 2), "S100", "Ana Maria"),
        ];
        let cities = [
            city("c", 7, (1, 0), "Campinas", "SP"),
            city("c", 8, (2, 1), "Santos", "SP"),
            // A deleted city is not current (and has no sales here).
            city("c", 10, (3, 2), "Gone", "RJ"),
            city("d", 10, (4, 3), "Gone", "RJ"),
        ];
        let mut t = totals(&sales, &salesmen, &cities).await;
        t.cities.sort_by_key(|c| c.city_id);
        t.salesmen.sort_by_key(|s| s.salesman_id);
        t.city_salesmen
            .sort_by_key(|c| (c.city_id, c.salesman.salesman_id));

        let cities: Vec<_> = t
            .cities
            .iter()
            .map(|c| {
                (
                    c.city_id,
                    c.info.as_ref().map(|i| i.name.as_str()),
                    c.revenue.cents(),
                    c.sales,
                )
            })
            .collect();
        assert_eq!(
            cities,
            vec![
                (7, Some("Campinas"), 1050 + 2000 + 999, 3),
                (8, Some("Santos"), 1 + 20, 2),
                (9, None, 5000, 1),
            ]
        );
        let salesmen: Vec<_> = t
            .salesmen
            .iter()
            .map(|s| {
                (
                    s.salesman_id,
                    s.info.as_ref().map(|i| i.name.as_str()),
                    s.revenue.cents(),
                    s.sales,
                )
            })
            .collect();
        assert_eq!(
            salesmen,
            vec![
                (100, Some("Ana Maria"), 1050 + 2000 + 10, 3),
                (200, Some("Bruno"), 999 + 1, 2),
                (300, None, 5000, 1),
            ]
        );
        let per_city: Vec<_> = t
            .city_salesmen
            .iter()
            .map(|c| {
                (
                    c.city_id,
                    c.salesman.salesman_id,
                    c.salesman.revenue.cents(),
                    c.salesman.sales,
                )
            })
            .collect();
        assert_eq!(
            per_city,
            vec![
                (7, 100, 3050, 2),
                (7, 200, 999, 1),
                (8, 200, 1, 1),
                (9, 300, 5000, 1)
            ]
        );
        assert_eq!(
            t.summary,
            Summary {
                sales: 7,
                revenue: Money::from_cents(1050 + 2000 + 999 + 1 + 5000 + 10 + 20),
                unresolved_sales: 1,
                unresolved_revenue: Money::from_cents(5000),
                sales_without_city: 1,
                sales_without_salesman: 1,
                sales_without_month: 7,
            }
        );
    }

    #[tokio::test]
    async fn a_sale_with_no_amount_counts_with_zero_revenue() {
        let sales = [sale("c", 1, (1, 0), Some(1), Some(1), None)];
        let t = totals(&sales, &[], &[]).await;
        assert_eq!(t.cities[0].revenue, Money::ZERO);
        assert_eq!(t.cities[0].sales, 1);
        assert_eq!(t.summary.sales, 1);
    }

    fn month(text: &str) -> tributary_rankings::period::Month {
        text.parse().unwrap()
    }

    /// `(salesman_id, cents, sales)` of one period's salesman totals, by id.
    fn salesmen_of(t: &Totals) -> Vec<(i64, i64, u64)> {
        let mut rows: Vec<_> = t
            .salesmen
            .iter()
            .map(|s| (s.salesman_id, s.revenue.cents(), s.sales))
            .collect();
        rows.sort();
        rows
    }

    #[tokio::test]
    async fn sales_count_in_their_utc_month_and_all_time() {
        let sales = [
            // The last second of January in UTC, already February in Tokyo: January, because
            // months are UTC.
            sale("c", 1, (10, 0), Some(100), Some(7), Some(1000)).sold_at("2026-01-31T23:59:59Z"),
            // 08:30 in Tokyo on 1 February is 23:30 UTC on 31 January: January.
            sale("c", 2, (11, 1), Some(100), Some(7), Some(500))
                .sold_at("2026-02-01T08:30:00+09:00"),
            sale("c", 3, (12, 2), Some(200), Some(8), Some(700)).sold_at("2026-02-01T00:00:00Z"),
            // No sold_at: all time only, counted as such.
            sale("c", 4, (13, 3), Some(200), Some(8), Some(1)),
        ];
        let ctx = memtable_context(&sales, &[], &[]);
        let t = compute_totals(&ctx).await.unwrap();
        assert_eq!(salesmen_of(&t.all), vec![(100, 1500, 2), (200, 701, 2)]);
        assert_eq!(t.all.summary.sales_without_month, 1);
        assert_eq!(
            t.months.keys().copied().collect::<Vec<_>>(),
            vec![month("2026-01"), month("2026-02")]
        );
        assert_eq!(
            salesmen_of(&t.months[&month("2026-01")]),
            vec![(100, 1500, 2)]
        );
        assert_eq!(
            salesmen_of(&t.months[&month("2026-02")]),
            vec![(200, 700, 1)]
        );
        let feb = &t.months[&month("2026-02")];
        assert_eq!((feb.summary.sales, feb.summary.revenue.cents()), (1, 700));
        assert_eq!(feb.summary.sales_without_month, 0);
        assert_eq!(feb.cities.len(), 1);
        assert_eq!(feb.city_salesmen.len(), 1);
    }

    #[tokio::test]
    async fn a_sale_moved_to_another_month_moves_its_revenue_and_empties_the_old_month() {
        let sales = [
            sale("c", 1, (10, 0), Some(100), Some(7), Some(1000)).sold_at("2026-03-10T12:00:00Z"),
            sale("c", 2, (11, 1), Some(200), Some(7), Some(400)).sold_at("2026-03-11T12:00:00Z"),
            // A correction of sale 1's date (and amount): it leaves March for April.
            sale("u", 1, (20, 2), Some(100), Some(7), Some(1200)).sold_at("2026-04-02T12:00:00Z"),
            // Sale 2 is deleted: March has no sales left.
            sale("d", 2, (21, 3), Some(200), Some(7), Some(400)).sold_at("2026-03-11T12:00:00Z"),
        ];
        let ctx = memtable_context(&sales, &[], &[]);
        let t = compute_totals(&ctx).await.unwrap();
        assert!(
            !t.months.contains_key(&month("2026-03")),
            "March keeps nothing: {:?}",
            t.months.keys()
        );
        assert_eq!(
            salesmen_of(&t.months[&month("2026-04")]),
            vec![(100, 1200, 1)]
        );
        assert_eq!(salesmen_of(&t.all), vec![(100, 1200, 1)]);
    }

    #[tokio::test]
    async fn a_late_event_for_an_old_month_counts_in_that_month_and_ties_break_by_id() {
        let sales = [
            sale("c", 1, (10, 0), Some(300), Some(7), Some(500)).sold_at("2026-05-03T09:00:00Z"),
            sale("c", 2, (11, 1), Some(100), Some(8), Some(900)).sold_at("2026-05-04T09:00:00Z"),
            // Arrives last (highest LSN) but happened in January.
            sale("c", 3, (99, 2), Some(200), Some(8), Some(500)).sold_at("2026-01-15T09:00:00Z"),
            sale("c", 4, (100, 3), Some(300), Some(7), Some(250)).sold_at("2026-01-20T09:00:00Z"),
            sale("c", 5, (101, 4), Some(300), Some(7), Some(250)).sold_at("2026-01-21T09:00:00Z"),
        ];
        let ctx = memtable_context(&sales, &[], &[]);
        let ranked = tributary_rankings::ranking::rank_periods(compute_totals(&ctx).await.unwrap());
        let order = |r: &tributary_rankings::ranking::Rankings| {
            r.salesmen
                .iter()
                .map(|s| (s.rank, s.row.salesman_id, s.row.revenue.cents()))
                .collect::<Vec<_>>()
        };
        // January: 200 and 300 tie at 5.00; the lower id ranks first.
        assert_eq!(
            order(&ranked.months[&month("2026-01")]),
            vec![(1, 200, 500), (2, 300, 500)]
        );
        assert_eq!(
            order(&ranked.months[&month("2026-05")]),
            vec![(1, 100, 900), (2, 300, 500)]
        );
        assert_eq!(
            order(&ranked.all),
            vec![(1, 300, 1000), (2, 100, 900), (3, 200, 500)]
        );
        // Cities tie too in January (7: 5.00, 8: 5.00): city 7 first.
        let jan_cities: Vec<_> = ranked.months[&month("2026-01")]
            .cities
            .iter()
            .map(|c| (c.rank, c.city.city_id))
            .collect();
        assert_eq!(jan_cities, vec![(1, 7), (2, 8)]);
    }

    #[tokio::test]
    async fn file_sales_count_in_their_month() {
        use crate::test_support::{Ref, file_sale, memtable_context_with_files};
        let files = [
            file_sale(
                "u",
                ("acme", "1"),
                (1, 0),
                Ref::Id(100),
                Ref::Id(7),
                Some(500),
            )
            .sold_at("2026-06-30T23:00:00Z"),
            // A later file corrects the date into July.
            file_sale(
                "u",
                ("acme", "1"),
                (2, 0),
                Ref::Id(100),
                Ref::Id(7),
                Some(500),
            )
            .sold_at("2026-07-01T01:00:00Z"),
        ];
        let ctx = memtable_context_with_files(&[], &[], &[], &files);
        let t = compute_totals(&ctx).await.unwrap();
        assert_eq!(
            t.months.keys().copied().collect::<Vec<_>>(),
            vec![month("2026-07")]
        );
        assert_eq!(
            salesmen_of(&t.months[&month("2026-07")]),
            vec![(100, 500, 1)]
        );
    }
}
