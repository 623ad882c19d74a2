//! A publication: both rankings computed from one set of lake snapshots, and the identity that
//! makes re-publishing it idempotent.
//!
//! The publication id is derived from the snapshot ids read, nothing else
//! (`pg_sale:<id>,pg_salesman:<id>,pg_city:<id>`, `none` for a table with no snapshot yet), so
//! the same lake state always yields the same id and the same ranking rows, and rewriting them
//! replaces them in ClickHouse instead of adding to them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::RankingsError;
use crate::period::{Month, Period};
use crate::ranking::{PeriodRankings, Ranked, Rankings, SalesmanTotals};
use crate::schema::{
    CityRankingRow, CityRankingRowRef, CitySalesmanRankingRow, CitySalesmanRankingRowRef,
    PublicationPeriodRow, PublicationRow, PublicationSourceRow, SalesmanRankingRow,
    SalesmanRankingRowRef,
};

/// The snapshot of one raw table that a publication was computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LakeSnapshot {
    /// Table name inside the `raw` namespace (`pg_sale`).
    pub table: String,
    /// Iceberg snapshot id; `None` when the table had no snapshot (nothing landed yet).
    pub snapshot_id: Option<i64>,
}

/// The snapshots of every table read, in a fixed order (sale, salesman, city).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LakeSnapshots(pub Vec<LakeSnapshot>);

impl LakeSnapshots {
    /// `pg_sale:123,pg_salesman:456,pg_city:none`: deterministic from the snapshots, readable
    /// in ClickHouse and in API responses.
    pub fn publication_id(&self) -> String {
        self.0
            .iter()
            .map(|s| match s.snapshot_id {
                Some(id) => format!("{}:{id}", s.table),
                None => format!("{}:none", s.table),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The JSON stored in every row's `lake_snapshots` column:
    /// `[{"table":"pg_sale","snapshot_id":123},…]`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("lake snapshots always serialize")
    }

    /// Parses a `lake_snapshots` column.
    pub fn from_json(publication_id: &str, json: &str) -> Result<Self, RankingsError> {
        serde_json::from_str(json).map_err(|e| RankingsError::CorruptPublication {
            publication_id: publication_id.to_string(),
            reason: format!("lake_snapshots is not the expected JSON: {e}"),
        })
    }
}

/// How far the events of one source that a publication counts reach: its completeness.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceWatermark {
    /// The furthest source position: Postgres LSN, partner-file sequence, ERP change sequence.
    pub position: Option<i64>,
    /// The newest source time: the Postgres commit time, or when the ingestor produced the
    /// event (files, ERP).
    pub newest_event_at: Option<DateTime<Utc>>,
    /// Events of the source folded in, all runs together.
    pub events: u64,
}

impl SourceWatermark {
    /// Counts one more event, at `position`, from `at` (microseconds since the epoch).
    pub fn saw(&mut self, position: i64, at: Option<i64>) {
        self.position = Some(self.position.map_or(position, |p| p.max(position)));
        if let Some(at) = at.and_then(DateTime::from_timestamp_micros) {
            self.newest_event_at = Some(self.newest_event_at.map_or(at, |n| n.max(at)));
        }
        self.events += 1;
    }

    /// Adds what `other` saw.
    pub fn merge(&mut self, other: SourceWatermark) {
        self.position = self.position.max(other.position);
        self.newest_event_at = self.newest_event_at.max(other.newest_event_at);
        self.events += other.events;
    }
}

/// Both rankings with where they came from and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// [`LakeSnapshots::publication_id`] of `lake_snapshots`.
    pub id: String,
    /// The snapshots read.
    pub lake_snapshots: LakeSnapshots,
    /// Id of the run that computed it (differs between reruns of the same publication).
    pub run_id: String,
    /// When the run started.
    pub computed_at: DateTime<Utc>,
    /// The all-time rankings.
    pub rankings: Rankings,
    /// The rankings of every UTC month of `sold_at` with at least one current sale.
    pub months: BTreeMap<Month, Rankings>,
    /// Months this publication carries from an earlier one, by reference: unchanged since, their
    /// ranking rows are that publication's ([`crate::schema`], `rows_publication_id`). A month
    /// is in `months` or here, never both.
    pub carried: BTreeMap<Month, PublicationPeriodRow>,
    /// Per source (`pg`, `files`, `erp`): how far the events counted reach.
    pub sources: BTreeMap<String, SourceWatermark>,
    /// The newest commit time (epoch ms) of the snapshots read: where its rows are partitioned
    /// ([`crate::schema::lake_window`]). `None` when no table had a snapshot.
    pub lake_committed_ms: Option<i64>,
}

/// The rows one publication writes, in the order they must be written: rankings first, the
/// publication row last, so a reader that finds the publication row finds all of its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicationRows {
    /// `city_ranking` rows, every period.
    pub cities: Vec<CityRankingRow>,
    /// `city_salesman_ranking` rows, every period.
    pub city_salesmen: Vec<CitySalesmanRankingRow>,
    /// `salesman_ranking` rows, every period.
    pub salesmen: Vec<SalesmanRankingRow>,
    /// `publication_periods` rows: `all` first, then the months in order.
    pub periods: Vec<PublicationPeriodRow>,
    /// `publication_sources` rows, one per source.
    pub sources: Vec<PublicationSourceRow>,
    /// The `publications` row, written last.
    pub publication: PublicationRow,
}

impl PublicationRows {
    /// Ranking rows of every table and period together (`mart_runs.rows_out`).
    pub fn ranking_rows(&self) -> u64 {
        (self.cities.len() + self.city_salesmen.len() + self.salesmen.len()) as u64
    }
}

impl Publication {
    /// An all-time publication of `rankings`, identified by the snapshots they were computed
    /// from (add the months with [`Publication::with_months`]).
    pub fn new(
        lake_snapshots: LakeSnapshots,
        run_id: impl Into<String>,
        computed_at: DateTime<Utc>,
        rankings: Rankings,
    ) -> Self {
        Self {
            id: lake_snapshots.publication_id(),
            lake_snapshots,
            run_id: run_id.into(),
            computed_at,
            rankings,
            months: BTreeMap::new(),
            carried: BTreeMap::new(),
            sources: BTreeMap::new(),
            lake_committed_ms: None,
        }
    }

    /// A publication of every period's rankings.
    pub fn of_periods(
        lake_snapshots: LakeSnapshots,
        run_id: impl Into<String>,
        computed_at: DateTime<Utc>,
        rankings: PeriodRankings,
    ) -> Self {
        Self::new(lake_snapshots, run_id, computed_at, rankings.all).with_months(rankings.months)
    }

    /// The same publication with these monthly rankings.
    pub fn with_months(mut self, months: BTreeMap<Month, Rankings>) -> Self {
        self.months = months;
        self
    }

    /// The same publication carrying, by reference, every month of `previous` (the periods of
    /// the publication it follows) that it does not rank itself and `unchanged` says no event
    /// since touched: such a month's rows stay where they are. A month `unchanged` rejects and
    /// the publication does not rank has no current sale left: it is dropped, not carried.
    pub fn carrying(
        mut self,
        previous: impl IntoIterator<Item = PublicationPeriodRow>,
        unchanged: impl Fn(Month) -> bool,
    ) -> Self {
        self.carried = previous
            .into_iter()
            .filter_map(|row| match row.period.parse() {
                Ok(Period::Month(month))
                    if unchanged(month) && !self.months.contains_key(&month) =>
                {
                    Some((month, row))
                }
                _ => None,
            })
            .collect();
        self
    }

    /// The same publication, its snapshots' newest commit at `committed_ms` (epoch ms).
    pub fn with_lake_committed_ms(mut self, committed_ms: Option<i64>) -> Self {
        self.lake_committed_ms = committed_ms;
        self
    }

    /// The same publication with these per-source watermarks.
    pub fn with_sources(mut self, sources: BTreeMap<String, SourceWatermark>) -> Self {
        self.sources = sources;
        self
    }

    /// Every period's rankings, all time first.
    pub fn periods(&self) -> impl Iterator<Item = (Period, &Rankings)> {
        std::iter::once((Period::AllTime, &self.rankings))
            .chain(self.months.iter().map(|(m, r)| (Period::Month(*m), r)))
    }

    /// How many rows of each ranking table [`Publication::rows`] makes (without making them):
    /// `(city_ranking, city_salesman_ranking, salesman_ranking)`.
    pub fn ranking_row_counts(&self) -> (usize, usize, usize) {
        self.periods()
            .fold((0, 0, 0), |(cities, city_salesmen, salesmen), (_, r)| {
                (
                    cities + r.cities.len(),
                    city_salesmen + r.cities.iter().map(|c| c.salesmen.len()).sum::<usize>(),
                    salesmen + r.salesmen.len(),
                )
            })
    }

    /// The ReplacingMergeTree version of every row: the run's start in milliseconds, so a
    /// later run of the same publication replaces an earlier one's rows.
    pub fn version(&self) -> u64 {
        u64::try_from(self.computed_at.timestamp_millis()).unwrap_or(0)
    }

    /// The rows to write to ClickHouse.
    pub fn rows(&self) -> PublicationRows {
        let ranking = self.ranking_rows();
        let RecordRows {
            periods,
            sources,
            publication,
        } = self.record_rows();
        PublicationRows {
            cities: ranking.cities().map(Into::into).collect(),
            city_salesmen: ranking.city_salesmen().map(Into::into).collect(),
            salesmen: ranking.salesmen().map(Into::into).collect(),
            periods,
            sources,
            publication,
        }
    }

    /// The ranking rows of the periods this publication writes, borrowed from it.
    pub(crate) fn ranking_rows(&self) -> RankingRows<'_> {
        RankingRows {
            publication_id: &self.id,
            periods: self.periods().map(|(p, r)| (p.key(), r)).collect(),
            computed_at: self.row_computed_at(),
            version: self.version(),
            lake_window: crate::schema::lake_window(self.lake_committed_ms),
        }
    }

    /// `computed_at` as the rows store it: ClickHouse `DateTime` has second precision.
    fn row_computed_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.computed_at.timestamp(), 0).unwrap_or(self.computed_at)
    }

    /// The rows of `publication_periods`, `publication_sources` and `publications`.
    pub(crate) fn record_rows(&self) -> RecordRows {
        let snapshots = self.lake_snapshots.to_json();
        let version = self.version();
        let lake_window = crate::schema::lake_window(self.lake_committed_ms);
        let computed_at = self.row_computed_at();
        let mut periods = Vec::new();
        for (period, rankings) in self.periods() {
            let summary = &rankings.summary;
            periods.push(PublicationPeriodRow {
                publication_id: self.id.clone(),
                rows_publication_id: self.id.clone(),
                period: period.key(),
                sales: summary.sales,
                revenue: summary.revenue.cents(),
                cities: rankings.cities.len() as u64,
                salesmen: rankings.salesmen.len() as u64,
                unresolved_sales: summary.unresolved_sales,
                unresolved_revenue: summary.unresolved_revenue.cents(),
                sales_without_city: summary.sales_without_city,
                sales_without_salesman: summary.sales_without_salesman,
                sales_without_month: summary.sales_without_month,
                lake_snapshots: snapshots.clone(),
                run_id: self.run_id.clone(),
                computed_at,
                version,
                lake_window,
            });
        }
        // Carried months: this publication's period rows (its counts are the earlier ones'), the
        // ranking rows where they are.
        periods.extend(self.carried.values().map(|carried| PublicationPeriodRow {
            publication_id: self.id.clone(),
            lake_snapshots: snapshots.clone(),
            run_id: self.run_id.clone(),
            computed_at,
            version,
            lake_window,
            ..carried.clone()
        }));
        // `all` first, then the months in order (`YYYY-MM` sorts as text in calendar order).
        periods.sort_by(|a, b| {
            (a.period != Period::ALL, &a.period).cmp(&(b.period != Period::ALL, &b.period))
        });
        let sources = self
            .sources
            .iter()
            .map(|(source, w)| PublicationSourceRow {
                publication_id: self.id.clone(),
                source: source.clone(),
                position: w.position.unwrap_or(-1),
                newest_event_at: w
                    .newest_event_at
                    .and_then(|t| DateTime::from_timestamp(t.timestamp(), 0))
                    .unwrap_or_default(),
                events: w.events,
                lake_snapshots: snapshots.clone(),
                run_id: self.run_id.clone(),
                computed_at,
                version,
                lake_window,
            })
            .collect();
        let summary = &self.rankings.summary;
        let publication = PublicationRow {
            publication_id: self.id.clone(),
            lake_snapshots: snapshots,
            run_id: self.run_id.clone(),
            computed_at,
            version,
            lake_window,
            sales: summary.sales,
            revenue: summary.revenue.cents(),
            cities: self.rankings.cities.len() as u64,
            salesmen: self.rankings.salesmen.len() as u64,
            unresolved_sales: summary.unresolved_sales,
            unresolved_revenue: summary.unresolved_revenue.cents(),
            sales_without_city: summary.sales_without_city,
            sales_without_salesman: summary.sales_without_salesman,
        };
        RecordRows {
            periods,
            sources,
            publication,
        }
    }
}

/// The rows of a publication's own tables, beside its ranking rows.
#[derive(Debug)]
pub(crate) struct RecordRows {
    /// `publication_periods` rows: `all` first, then the months in order.
    pub(crate) periods: Vec<PublicationPeriodRow>,
    /// `publication_sources` rows, one per source.
    pub(crate) sources: Vec<PublicationSourceRow>,
    /// The `publications` row, written last.
    pub(crate) publication: PublicationRow,
}

/// The ranking rows of a publication's periods, borrowing their text from it: made one at a
/// time as they are written ([`Publication::rows`] makes owned ones of them).
#[derive(Debug)]
pub(crate) struct RankingRows<'a> {
    publication_id: &'a str,
    /// The periods written, each with its key (`all`, `YYYY-MM`).
    periods: Vec<(String, &'a Rankings)>,
    computed_at: DateTime<Utc>,
    version: u64,
    lake_window: u32,
}

impl RankingRows<'_> {
    /// `city_ranking` rows, every period.
    pub(crate) fn cities(&self) -> impl Iterator<Item = CityRankingRowRef<'_>> + Send {
        self.periods.iter().flat_map(move |(period, rankings)| {
            rankings.cities.iter().map(move |city| {
                let (city_name, city_state, city_resolved) = city
                    .city
                    .info
                    .as_ref()
                    .map_or(("", "", 0), |i| (i.name.as_str(), i.state.as_str(), 1));
                CityRankingRowRef {
                    publication_id: self.publication_id,
                    period,
                    rank: city.rank,
                    city_id: city.city.city_id,
                    city_name,
                    city_state,
                    city_resolved,
                    revenue: city.city.revenue.cents(),
                    sales: city.city.sales,
                    salesmen: city.salesmen.len() as u64,
                    computed_at: self.computed_at,
                    version: self.version,
                    lake_window: self.lake_window,
                }
            })
        })
    }

    /// `city_salesman_ranking` rows, every period.
    pub(crate) fn city_salesmen(
        &self,
    ) -> impl Iterator<Item = CitySalesmanRankingRowRef<'_>> + Send {
        self.periods.iter().flat_map(move |(period, rankings)| {
            rankings.cities.iter().flat_map(move |city| {
                city.salesmen.iter().map(move |Ranked { rank, row }| {
                    let (salesman_name, salesman_code, salesman_resolved) = salesman_fields(row);
                    CitySalesmanRankingRowRef {
                        publication_id: self.publication_id,
                        period,
                        city_id: city.city.city_id,
                        rank: *rank,
                        salesman_id: row.salesman_id,
                        salesman_name,
                        salesman_code,
                        salesman_resolved,
                        revenue: row.revenue.cents(),
                        sales: row.sales,
                        computed_at: self.computed_at,
                        version: self.version,
                        lake_window: self.lake_window,
                    }
                })
            })
        })
    }

    /// `salesman_ranking` rows, every period.
    pub(crate) fn salesmen(&self) -> impl Iterator<Item = SalesmanRankingRowRef<'_>> + Send {
        self.periods.iter().flat_map(move |(period, rankings)| {
            rankings.salesmen.iter().map(move |Ranked { rank, row }| {
                let (salesman_name, salesman_code, salesman_resolved) = salesman_fields(row);
                SalesmanRankingRowRef {
                    publication_id: self.publication_id,
                    period,
                    rank: *rank,
                    salesman_id: row.salesman_id,
                    salesman_name,
                    salesman_code,
                    salesman_resolved,
                    revenue: row.revenue.cents(),
                    sales: row.sales,
                    computed_at: self.computed_at,
                    version: self.version,
                    lake_window: self.lake_window,
                }
            })
        })
    }
}

/// A salesman's name, code and whether it is known (empty and 0 while unresolved).
fn salesman_fields(s: &SalesmanTotals) -> (&str, &str, u8) {
    s.info
        .as_ref()
        .map_or(("", "", 0), |i| (i.name.as_str(), i.code.as_str(), 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshots(sale: Option<i64>) -> LakeSnapshots {
        LakeSnapshots(vec![
            LakeSnapshot {
                table: "pg_sale".into(),
                snapshot_id: sale,
            },
            LakeSnapshot {
                table: "pg_salesman".into(),
                snapshot_id: Some(2),
            },
            LakeSnapshot {
                table: "pg_city".into(),
                snapshot_id: Some(-3),
            },
        ])
    }

    #[test]
    fn publication_id_is_derived_from_the_snapshots_only() {
        assert_eq!(
            snapshots(Some(1)).publication_id(),
            "pg_sale:1,pg_salesman:2,pg_city:-3"
        );
        assert_eq!(
            snapshots(None).publication_id(),
            "pg_sale:none,pg_salesman:2,pg_city:-3"
        );
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let t1 = DateTime::from_timestamp(1_700_000_100, 0).unwrap();
        let a = Publication::new(snapshots(Some(1)), "run-a", t0, Rankings::default());
        let b = Publication::new(snapshots(Some(1)), "run-b", t1, Rankings::default());
        assert_eq!(a.id, b.id);
        assert!(b.version() > a.version());
    }

    #[test]
    fn lake_snapshots_round_trip_through_json() {
        let s = snapshots(None);
        assert_eq!(
            s.to_json(),
            r#"[{"table":"pg_sale","snapshot_id":null},{"table":"pg_salesman","snapshot_id":2},{"table":"pg_city","snapshot_id":-3}]"#
        );
        assert_eq!(LakeSnapshots::from_json("p", &s.to_json()).unwrap(), s);
        assert!(LakeSnapshots::from_json("p", "{").is_err());
    }

    /// A period row of `publication` for `month`, as a store returns it.
    fn period_row(publication: &str, month: &str, sales: u64) -> PublicationPeriodRow {
        PublicationPeriodRow {
            publication_id: publication.into(),
            period: month.into(),
            rows_publication_id: publication.into(),
            sales,
            revenue: 0,
            cities: 1,
            salesmen: 1,
            unresolved_sales: 0,
            unresolved_revenue: 0,
            sales_without_city: 0,
            sales_without_salesman: 0,
            sales_without_month: 0,
            lake_snapshots: String::new(),
            run_id: "run-0".into(),
            computed_at: DateTime::from_timestamp(0, 0).unwrap(),
            version: 1,
            lake_window: 0,
        }
    }

    #[test]
    fn carried_months_keep_their_rows_where_they_are() {
        let month = |s: &str| s.parse::<Month>().unwrap();
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut older = period_row("p0", "2026-01", 4);
        older.publication_id = "p1".into();
        let previous = vec![
            period_row("p1", "all", 9),
            older,
            period_row("p1", "2026-02", 3),
            period_row("p1", "2026-03", 2),
            period_row("p1", "2026-04", 1),
        ];
        // March is ranked again; April changed and has no sale left; January and February did
        // not change.
        let p = Publication::new(snapshots(Some(2)), "run-2", t0, Rankings::default())
            .with_months(BTreeMap::from([(month("2026-03"), Rankings::default())]))
            .carrying(previous, |m| m != month("2026-03") && m != month("2026-04"));
        assert_eq!(
            p.carried.keys().copied().collect::<Vec<_>>(),
            [month("2026-01"), month("2026-02")]
        );
        let rows = p.rows().periods;
        let held: Vec<_> = rows
            .iter()
            .map(|r| (r.period.as_str(), r.rows_publication_id.as_str(), r.sales))
            .collect();
        // One hop: January's rows stay with `p0`, whoever carried them before.
        assert_eq!(
            held,
            [
                ("all", p.id.as_str(), 0),
                ("2026-01", "p0", 4),
                ("2026-02", "p1", 3),
                ("2026-03", p.id.as_str(), 0),
            ]
        );
        assert!(
            rows.iter()
                .all(|r| r.publication_id == p.id && r.run_id == "run-2")
        );
        assert_eq!(p.ranking_row_counts(), (0, 0, 0));
    }
}
