//! Record-level provenance: which source records make up one ranking row.
//!
//! A ranking row's revenue and sales count are the sum and count of the current sales in its
//! period and key (city; city and salesman; salesman). This module lists exactly those sales
//! — the same `sale_period` rows the SQL totals in [`crate::current_state`] aggregate, read
//! from the lake pinned at the snapshots asked for — each with the coordinates of its current
//! version: where it was in its source (Postgres LSN and transaction; the file or ERP change
//! and record, with the ingestor's provenance JSON), which Kafka record carried it, when it was
//! landed and the trace id of the ingest batch. So the amounts sum to the row's revenue and
//! their count is its sales count, at any snapshot.

use chrono::{DateTime, Utc};
use datafusion::logical_expr::{col, lit};
use datafusion::prelude::SessionContext;
use iceberg::Catalog;

use std::collections::BTreeMap;

use crate::current_state::{Columns, register_current_state};
use crate::error::MartsError;
use crate::lake::register_raw_tables_as_of;
use crate::state::{KeptSalesReader, RowSales};
use tributary_rankings::money::Money;
use tributary_rankings::period::Period;
use tributary_rankings::publication::LakeSnapshots;
use tributary_raw::AsOf;

/// The key of one ranking row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankingKey {
    /// A row of the city ranking (`city_ranking`).
    City {
        /// The city.
        city_id: i64,
    },
    /// A row of a city's salesman ranking (`city_salesman_ranking`).
    CitySalesman {
        /// The city.
        city_id: i64,
        /// The salesman.
        salesman_id: i64,
    },
    /// A row of the nationwide salesman ranking (`salesman_ranking`).
    Salesman {
        /// The salesman.
        salesman_id: i64,
    },
}

impl RankingKey {
    /// The row's city and salesman, each when the row has one.
    pub fn ids(self) -> (Option<i64>, Option<i64>) {
        match self {
            RankingKey::City { city_id } => (Some(city_id), None),
            RankingKey::CitySalesman {
                city_id,
                salesman_id,
            } => (Some(city_id), Some(salesman_id)),
            RankingKey::Salesman { salesman_id } => (None, Some(salesman_id)),
        }
    }
}

/// One current sale counted in a ranking row, and where its current version came from.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    /// `pg`, `files` or `erp`.
    pub source: String,
    /// The sale's id in its source (`origin/id` for files and the ERP).
    pub sale_id: String,
    /// Resolved salesman.
    pub salesman_id: Option<i64>,
    /// Resolved city.
    pub city_id: Option<i64>,
    /// Amount (a sale without one counts with zero revenue).
    pub amount: Option<Money>,
    /// When the sale happened.
    pub sold_at: Option<DateTime<Utc>>,
    /// Postgres: WAL position of the change (`source.lsn`).
    pub source_lsn: Option<i64>,
    /// Postgres: transaction id.
    pub source_txid: Option<i64>,
    /// Postgres: commit time; files and ERP: when the ingestor produced the event.
    pub source_time: Option<DateTime<Utc>>,
    /// Files/ERP: file sequence or ERP change sequence.
    pub version_major: Option<i64>,
    /// Files/ERP: record ordinal.
    pub version_minor: Option<i64>,
    /// Files/ERP: the ingestor's provenance object (object URL and record; or endpoint,
    /// cursor and request id), as JSON text.
    pub provenance_json: Option<String>,
    /// Kafka topic of the record.
    pub kafka_topic: String,
    /// Kafka partition.
    pub kafka_partition: i64,
    /// Kafka offset.
    pub kafka_offset: i64,
    /// When the lander read it.
    pub ingest_time: Option<DateTime<Utc>>,
    /// Trace id of the ingest batch (null for Debezium's records, and rows landed before the
    /// lake had the column).
    pub trace_id: Option<String>,
}

/// The sales behind one ranking row and the snapshots they were read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    /// The raw tables' snapshots read.
    pub snapshots: LakeSnapshots,
    /// The sales, largest amount first (then source and id).
    pub records: Vec<SourceRecord>,
}

impl Provenance {
    /// Sum of the amounts (a missing amount is zero); `None` if it leaves `Decimal(18,2)`.
    pub fn revenue(&self) -> Option<Money> {
        self.records
            .iter()
            .filter_map(|r| r.amount)
            .try_fold(Money::ZERO, Money::checked_add)
    }
}

/// The current sales behind the ranking row `key` of `period`, with the lake read as `as_of`.
pub async fn provenance(
    catalog: &dyn Catalog,
    namespace: &str,
    as_of: &AsOf,
    period: Period,
    key: RankingKey,
) -> Result<Provenance, MartsError> {
    provenance_in(
        &SessionContext::new(),
        catalog,
        namespace,
        as_of,
        period,
        key,
    )
    .await
}

/// [`provenance`] in a session of the caller's (e.g. one with a memory limit); `ctx` should be
/// fresh.
pub async fn provenance_in(
    ctx: &SessionContext,
    catalog: &dyn Catalog,
    namespace: &str,
    as_of: &AsOf,
    period: Period,
    key: RankingKey,
) -> Result<Provenance, MartsError> {
    let snapshots = register_raw_tables_as_of(catalog, namespace, ctx, as_of).await?;
    let _held = register_current_state(ctx).await?;
    let query = "provenance";
    let df_err = |source| MartsError::Query {
        query,
        source: Box::new(source),
    };
    let period_filter = col("period").eq(lit(period.key()));
    let key_filter = match key {
        RankingKey::City { city_id } => col("city_id").eq(lit(city_id)),
        RankingKey::CitySalesman {
            city_id,
            salesman_id,
        } => col("city_id")
            .eq(lit(city_id))
            .and(col("salesman_id").eq(lit(salesman_id))),
        RankingKey::Salesman { salesman_id } => col("salesman_id").eq(lit(salesman_id)),
    };
    let batches = ctx
        .table("sale_period")
        .await
        .map_err(df_err)?
        .filter(period_filter.and(key_filter))
        .map_err(df_err)?
        .collect()
        .await
        .map_err(df_err)?;
    let mut records = Vec::new();
    for batch in &batches {
        records.extend(decode(&Columns::new(query, batch), batch.num_rows())?);
    }
    sort_records(&mut records);
    Ok(Provenance { snapshots, records })
}

/// The current sales behind the ranking row `key` of `period` in the publication of
/// `snapshots`, read by key from the marts' kept state (indexed by city and by salesman), not
/// from the lake. `None` when the state cannot answer for that publication — it has been folded
/// past (or not up to) those snapshots, or it holds sales kept before it had their origins —
/// and the caller reads the lake instead ([`provenance`]).
///
/// The same records [`provenance`] reads from the lake at those snapshots, but for one detail:
/// a sale whose source sent no amount shows an amount of zero (the state keeps cents).
pub async fn provenance_from_state(
    reader: &KeptSalesReader,
    snapshots: &LakeSnapshots,
    period: Period,
    key: RankingKey,
) -> Result<Option<Provenance>, MartsError> {
    let (city_id, salesman_id) = key.ids();
    let row = RowSales {
        city_id,
        salesman_id,
        sold_between: month_micros(period),
    };
    let Some((folded, kept)) = reader.row_sales(row).await? else {
        return Ok(None);
    };
    let published: BTreeMap<String, i64> = snapshots
        .0
        .iter()
        .filter_map(|s| Some((s.table.clone(), s.snapshot_id?)))
        .collect();
    if folded != published || kept.iter().any(|s| s.origin.kafka_topic.is_none()) {
        return Ok(None);
    }
    let micros = |m: Option<i64>| m.and_then(DateTime::from_timestamp_micros);
    let mut records = kept
        .into_iter()
        .map(|sale| {
            let amount =
                Money::try_from_cents(i128::from(sale.amount_cents)).map_err(|source| {
                    MartsError::Rankings(tributary_rankings::RankingsError::Revenue {
                        scope: format!("provenance of sale {:?}", sale.key.sale_id),
                        source,
                    })
                })?;
            let pg = sale.key.source == crate::fold::SOURCE_PG;
            let [a, b, c] = sale.order;
            let id = |r: crate::fold::Resolved| match r {
                crate::fold::Resolved::Id(id) => Some(id),
                _ => None,
            };
            Ok(SourceRecord {
                salesman_id: id(sale.salesman),
                city_id: id(sale.city),
                amount: Some(amount),
                sold_at: micros(sale.sold_at_micros),
                source_lsn: pg.then_some(a),
                source_txid: sale.origin.txid,
                source_time: micros(sale.origin.source_time_micros),
                version_major: (!pg).then_some(a),
                version_minor: (!pg).then_some(b),
                provenance_json: sale.origin.provenance_json,
                kafka_topic: sale.origin.kafka_topic.unwrap_or_default(),
                kafka_partition: sale.origin.kafka_partition.map_or(0, i64::from),
                kafka_offset: if pg { b } else { c },
                ingest_time: micros(sale.origin.ingest_time_micros),
                trace_id: sale.origin.trace_id,
                source: sale.key.source,
                sale_id: sale.key.sale_id,
            })
        })
        .collect::<Result<Vec<_>, MartsError>>()?;
    sort_records(&mut records);
    Ok(Some(Provenance {
        snapshots: snapshots.clone(),
        records,
    }))
}

/// `[first µs of the month, first µs of the next)` in UTC; `None` for all time.
fn month_micros(period: Period) -> Option<(i64, i64)> {
    let Period::Month(month) = period else {
        return None;
    };
    let start = |year: i32, month: u32| {
        chrono::NaiveDate::from_ymd_opt(year, month, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp_micros())
    };
    let (year, m) = (i32::from(month.year()), u32::from(month.month()));
    let (next_year, next) = if m == 12 {
        (year + 1, 1)
    } else {
        (year, m + 1)
    };
    Some((start(year, m)?, start(next_year, next)?))
}

/// Largest amount first, then by source and id: one order for the lake's and the state's.
fn sort_records(records: &mut [SourceRecord]) {
    records.sort_by(|a, b| {
        b.amount
            .cmp(&a.amount)
            .then_with(|| (&a.source, &a.sale_id).cmp(&(&b.source, &b.sale_id)))
    });
}

fn decode(cols: &Columns<'_>, rows: usize) -> Result<Vec<SourceRecord>, MartsError> {
    let (source, sale_id) = (cols.str("source")?, cols.str("sale_id")?);
    let (salesman_id, city_id) = (cols.int("salesman_id")?, cols.int("city_id")?);
    let amount = cols.money("amount")?;
    let sold_at = cols.timestamp("sold_at")?;
    let (source_lsn, source_txid) = (cols.int("source_lsn")?, cols.int("source_txid")?);
    let source_time = cols.timestamp("source_time")?;
    let (version_major, version_minor) = (cols.int("version_major")?, cols.int("version_minor")?);
    let provenance_json = cols.str("provenance_json")?;
    let (kafka_topic, kafka_partition, kafka_offset) = (
        cols.str("kafka_topic")?,
        cols.int("kafka_partition")?,
        cols.int("kafka_offset")?,
    );
    let ingest_time = cols.timestamp("ingest_time")?;
    let trace_id = cols.str("trace_id")?;
    let missing = |column: &str| MartsError::UnexpectedColumn {
        query: "provenance",
        column: column.to_string(),
        expected: "no nulls",
        found: "a null".into(),
    };
    (0..rows)
        .map(|i| {
            let amount = amount.values[i]
                .map(|v| Money::from_unscaled(v, amount.scale))
                .transpose()
                .map_err(|source| {
                    MartsError::Rankings(tributary_rankings::RankingsError::Revenue {
                        scope: format!("provenance of sale {:?}", sale_id[i]),
                        source,
                    })
                })?;
            Ok(SourceRecord {
                source: source[i].clone().ok_or_else(|| missing("source"))?,
                sale_id: sale_id[i].clone().ok_or_else(|| missing("sale_id"))?,
                salesman_id: salesman_id[i],
                city_id: city_id[i],
                amount,
                sold_at: sold_at[i],
                source_lsn: source_lsn[i],
                source_txid: source_txid[i],
                source_time: source_time[i],
                version_major: version_major[i],
                version_minor: version_minor[i],
                provenance_json: provenance_json[i].clone(),
                kafka_topic: kafka_topic[i]
                    .clone()
                    .ok_or_else(|| missing("kafka_topic"))?,
                kafka_partition: kafka_partition[i].ok_or_else(|| missing("kafka_partition"))?,
                kafka_offset: kafka_offset[i].ok_or_else(|| missing("kafka_offset"))?,
                ingest_time: ingest_time[i],
                trace_id: trace_id[i].clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tributary_raw::schema::RawTable;

    use super::*;
    use crate::job::compute_as_of;
    use crate::test_support::{city, land, memory_lake, sale, salesman};
    use tributary_rankings::ranking::{PeriodRankings, Rankings};

    /// Every ranking row of `rankings` with its period, key, revenue and count.
    fn rows(rankings: &PeriodRankings) -> Vec<(Period, RankingKey, Money, u64)> {
        let periods = std::iter::once((Period::AllTime, &rankings.all))
            .chain(rankings.months.iter().map(|(m, r)| (Period::Month(*m), r)));
        let mut out = Vec::new();
        for (period, r) in periods {
            let Rankings {
                cities, salesmen, ..
            } = r;
            for c in cities {
                let city_id = c.city.city_id;
                out.push((
                    period,
                    RankingKey::City { city_id },
                    c.city.revenue,
                    c.city.sales,
                ));
                for s in &c.salesmen {
                    let salesman_id = s.row.salesman_id;
                    let key = RankingKey::CitySalesman {
                        city_id,
                        salesman_id,
                    };
                    out.push((period, key, s.row.revenue, s.row.sales));
                }
            }
            for s in salesmen {
                let key = RankingKey::Salesman {
                    salesman_id: s.row.salesman_id,
                };
                out.push((period, key, s.row.revenue, s.row.sales));
            }
        }
        out
    }

    async fn check_every_row(lake: &dyn Catalog, as_of: &AsOf) -> usize {
        let (_, rankings) = compute_as_of(lake, "raw", as_of).await.unwrap();
        let rows = rows(&rankings);
        for (period, key, revenue, sales) in &rows {
            let p = provenance(lake, "raw", as_of, *period, *key).await.unwrap();
            assert_eq!(p.revenue(), Some(*revenue), "{period} {key:?}");
            assert_eq!(p.records.len() as u64, *sales, "{period} {key:?}");
        }
        rows.len()
    }

    #[tokio::test]
    async fn records_sum_to_every_ranking_row_and_point_at_the_current_version() {
        let lake = memory_lake(&RawTable::DATA_TABLES).await;
        let lake = lake.as_ref();
        land(
            lake,
            RawTable::PgCity,
            &[
                city("c", 1, (1, 0), "Recife", "PE"),
                city("c", 2, (2, 1), "Natal", "RN"),
            ],
        )
        .await;
        land(
            lake,
            RawTable::PgSalesman,
            &[
                salesman("c", 10, (3, 0), "S10", "Ana"),
                salesman("c", 11, (4, 1), "S11", "Bia"),
            ],
        )
        .await;
        let first = land(
            lake,
            RawTable::PgSale,
            &[
                sale("c", 100, (10, 0), Some(10), Some(1), Some(1_000))
                    .sold_at("2026-01-10T10:00:00Z"),
                sale("c", 101, (11, 1), Some(11), Some(1), Some(2_550))
                    .sold_at("2026-01-11T10:00:00Z"),
                sale("c", 102, (12, 2), Some(10), Some(2), Some(700))
                    .sold_at("2026-02-01T00:00:00Z"),
                sale("c", 103, (13, 3), Some(11), Some(2), None),
            ],
        )
        .await;
        // 100 moves to Natal and grows, 101 is deleted; an older event of 102 lands late.
        land(
            lake,
            RawTable::PgSale,
            &[
                sale("u", 100, (20, 4), Some(10), Some(2), Some(1_500))
                    .sold_at("2026-01-10T10:00:00Z"),
                sale("d", 101, (21, 5), None, None, None),
                sale("c", 102, (5, 6), Some(11), Some(1), Some(99_999))
                    .sold_at("2026-02-01T00:00:00Z"),
            ],
        )
        .await;
        assert!(check_every_row(lake, &AsOf::Latest).await > 6);

        let natal = provenance(
            lake,
            "raw",
            &AsOf::Latest,
            Period::AllTime,
            RankingKey::City { city_id: 2 },
        )
        .await
        .unwrap();
        let by_id: BTreeMap<_, _> = natal
            .records
            .iter()
            .map(|r| (r.sale_id.as_str(), r))
            .collect();
        assert_eq!(
            by_id.keys().copied().collect::<Vec<_>>(),
            ["100", "102", "103"]
        );
        // The coordinates are those of the version that counts: 100's update, 102's newest LSN.
        assert_eq!(
            (by_id["100"].source_lsn, by_id["100"].kafka_offset),
            (Some(20), 4)
        );
        assert_eq!(by_id["100"].amount, Some(Money::from_cents(1_500)));
        assert_eq!(
            (by_id["102"].source_lsn, by_id["102"].kafka_offset),
            (Some(12), 2)
        );
        assert_eq!(by_id["100"].kafka_topic, "test.pg_sale");
        assert_eq!(by_id["103"].amount, None);

        // At the first sale snapshot, Recife still has 100 and 101 as they were.
        let pins = AsOf::Snapshots(BTreeMap::from([("pg_sale".to_string(), first)]));
        assert!(check_every_row(lake, &pins).await > 6);
        let recife = provenance(
            lake,
            "raw",
            &pins,
            Period::AllTime,
            RankingKey::City { city_id: 1 },
        )
        .await
        .unwrap();
        let ids: Vec<_> = recife.records.iter().map(|r| r.sale_id.as_str()).collect();
        assert_eq!(ids, ["101", "100"], "largest amount first");
        assert_eq!(recife.revenue(), Some(Money::from_cents(3_550)));
        assert_eq!(recife.snapshots.0[0].snapshot_id, Some(first));
    }
}
