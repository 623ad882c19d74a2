//! Where publications go and are read back from: ClickHouse in production, memory in tests.
//!
//! Two interfaces, one per side of the contract: the marts write through [`PublicationWriter`],
//! the API reads through [`RankingQueries`] (a writer can read back what it wrote). Every
//! ClickHouse statement lives in `clickhouse/` (`write.rs`, `query.rs`). Both implementations
//! pass one contract suite (`tests/it/contract.rs`, run on memory and on a real server), so the
//! API's and the marts' unit tests on [`MemoryStore`] mean something.

mod clickhouse;
mod memory;
mod scan;
mod served;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use self::clickhouse::ClickHouseStore;
pub use self::memory::MemoryStore;
pub use self::served::{Refresh, ServedPublication, ServedStore};
use crate::error::RankingsError;
use crate::period::Period;
use crate::publication::{Publication, PublicationRows};
use crate::retention::{PrunePlan, PublicationRetention};
use crate::schema::{
    CityRankingRow, CitySalesmanRankingRow, MartRunRow, PublicationPeriodRow, PublicationRow,
    PublicationSourceRow, SalesmanRankingRow,
};

/// A page of a ranking, in rank order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Rows to return at most.
    pub limit: u32,
    /// Rows to skip first.
    pub offset: u64,
}

/// Writes publications and runs (the marts). Reading back is [`RankingQueries`].
#[async_trait]
pub trait PublicationWriter: RankingQueries {
    /// Creates the database and tables if absent (and replaces tables of an older layout).
    async fn ensure_schema(&self) -> Result<(), RankingsError>;

    /// Writes every ranking row of `publication`, then its `publications` row. Writing the same
    /// publication again replaces its rows.
    async fn publish(&self, publication: &Publication) -> Result<(), RankingsError>;

    /// Records one run in `mart_runs`.
    async fn record_run(&self, run: &MartRunRow) -> Result<(), RankingsError>;

    /// Drops the partitions of the publications `retention` no longer keeps at `now`
    /// ([`crate::retention::plan_prune`]), the `publications` table's first so a reader never
    /// finds a publication whose rows are gone. Returns the plan it applied.
    async fn prune(
        &self,
        retention: &PublicationRetention,
        now: DateTime<Utc>,
    ) -> Result<PrunePlan, RankingsError>;

    /// Deletes the `mart_runs` rows of runs started before `before`, rounded down to the hour
    /// (so `mart_runs` is rewritten at most once an hour). Returns how many rows went.
    async fn prune_runs(&self, before: DateTime<Utc>) -> Result<u64, RankingsError>;
}

/// Reads the latest publication and its rankings (the API). Every ranking read names one period
/// (all time or a UTC month) of one publication.
///
/// The filtered and detail reads at the end have defaults derived from the plain pages (reading
/// whole rankings); ClickHouse answers each with one query on the tables' sorting keys.
#[async_trait]
pub trait RankingQueries: Send + Sync {
    /// Checks the store answers (the API's readiness).
    async fn ping(&self) -> Result<(), RankingsError>;

    /// The publication with the highest version, if any was completed.
    async fn latest_publication(&self) -> Result<Option<PublicationRow>, RankingsError>;

    /// The publication `publication_id` if the store holds it (a retained one, not only the
    /// latest): time travel answers from it when an `as_of` resolves to its snapshots.
    async fn publication(
        &self,
        publication_id: &str,
    ) -> Result<Option<PublicationRow>, RankingsError>;

    /// Every row of `publication` (every period of the three rankings, its periods and
    /// sources), to hold it in memory ([`ServedStore`]). The default reads each period's whole
    /// rankings; ClickHouse reads each table once.
    async fn publication_rows(
        &self,
        publication: &PublicationRow,
    ) -> Result<PublicationRows, RankingsError> {
        scan::publication_rows(self, publication).await
    }

    /// Like [`Self::publication_rows`] for a publication whose `periods` the caller read
    /// already ([`Self::periods`]), with the ranking rows of `only` these periods: what a served
    /// publication reads of a newer one whose other periods it holds already (carried by
    /// reference, the same rows).
    async fn publication_rows_of(
        &self,
        publication: &PublicationRow,
        periods: Vec<PublicationPeriodRow>,
        only: &[Period],
    ) -> Result<PublicationRows, RankingsError> {
        scan::publication_rows_of(self, publication, Some(periods), Some(only)).await
    }

    /// A page of the city ranking of `publication_id`.
    async fn city_ranking(
        &self,
        publication_id: &str,
        period: Period,
        page: Page,
    ) -> Result<Vec<CityRankingRow>, RankingsError>;

    /// The salesmen ranked `1..=max_rank` in each of `city_ids`, ordered by city then rank.
    async fn top_city_salesmen(
        &self,
        publication_id: &str,
        period: Period,
        city_ids: &[i64],
        max_rank: u32,
    ) -> Result<Vec<CitySalesmanRankingRow>, RankingsError>;

    /// A page of the salesmen ranked within one city.
    async fn city_salesman_ranking(
        &self,
        publication_id: &str,
        period: Period,
        city_id: i64,
        page: Page,
    ) -> Result<Vec<CitySalesmanRankingRow>, RankingsError>;

    /// One city's row, to tell "no such city" from "no salesmen on this page".
    async fn city(
        &self,
        publication_id: &str,
        period: Period,
        city_id: i64,
    ) -> Result<Option<CityRankingRow>, RankingsError>;

    /// A page of the nationwide salesman ranking.
    async fn salesman_ranking(
        &self,
        publication_id: &str,
        period: Period,
        page: Page,
    ) -> Result<Vec<SalesmanRankingRow>, RankingsError>;

    /// One period of a publication: its counts, or `None` when the period has no current sales
    /// (a month nobody sold in).
    async fn period(
        &self,
        publication_id: &str,
        period: Period,
    ) -> Result<Option<PublicationPeriodRow>, RankingsError>;

    /// Every period of a publication, `all` first, then the months in order.
    async fn periods(
        &self,
        publication_id: &str,
    ) -> Result<Vec<PublicationPeriodRow>, RankingsError>;

    /// Per source, how far the events a publication counts reach (sorted by source).
    async fn sources(
        &self,
        publication_id: &str,
    ) -> Result<Vec<PublicationSourceRow>, RankingsError>;

    /// The latest `limit` runs, newest first.
    async fn runs(&self, limit: u32) -> Result<Vec<MartRunRow>, RankingsError>;

    /// A page of the cities whose state is `state` (exact match), in rank order (the national
    /// rank is kept), and how many such cities there are.
    async fn cities_in_state(
        &self,
        publication_id: &str,
        period: Period,
        state: &str,
        page: Page,
    ) -> Result<(Vec<CityRankingRow>, u64), RankingsError> {
        scan::cities_in_state(self, publication_id, period, state, page).await
    }

    /// A page of the nationwide salesman ranking restricted to the salesmen with sales in
    /// `city_id` (their nationwide rank and totals are kept), and how many there are.
    async fn salesmen_in_city(
        &self,
        publication_id: &str,
        period: Period,
        city_id: i64,
        page: Page,
    ) -> Result<(Vec<SalesmanRankingRow>, u64), RankingsError> {
        scan::salesmen_in_city(self, publication_id, period, city_id, page).await
    }

    /// One salesman's row of the nationwide ranking.
    async fn salesman(
        &self,
        publication_id: &str,
        period: Period,
        salesman_id: i64,
    ) -> Result<Option<SalesmanRankingRow>, RankingsError> {
        scan::salesman(self, publication_id, period, salesman_id).await
    }

    /// The salesman's rows of every city he sold in, by his revenue there (desc), then city id.
    async fn salesman_cities(
        &self,
        publication_id: &str,
        period: Period,
        salesman_id: i64,
    ) -> Result<Vec<CitySalesmanRankingRow>, RankingsError> {
        scan::salesman_cities(self, publication_id, period, salesman_id).await
    }

    /// The rows of `city_ids` in the city ranking (any order; absent cities are left out).
    async fn cities(
        &self,
        publication_id: &str,
        period: Period,
        city_ids: &[i64],
    ) -> Result<Vec<CityRankingRow>, RankingsError> {
        scan::cities(self, publication_id, period, city_ids).await
    }

    /// The salesman's nationwide row in every month he sold in, oldest first.
    async fn salesman_months(
        &self,
        publication_id: &str,
        salesman_id: i64,
    ) -> Result<Vec<SalesmanRankingRow>, RankingsError> {
        scan::salesman_months(self, publication_id, salesman_id).await
    }

    /// The city's row in every month it sold in, oldest first.
    async fn city_months(
        &self,
        publication_id: &str,
        city_id: i64,
    ) -> Result<Vec<CityRankingRow>, RankingsError> {
        scan::city_months(self, publication_id, city_id).await
    }
}
