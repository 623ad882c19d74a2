//! Where publications go and are read back from: ClickHouse in production, memory in tests.
//!
//! The job only calls [`PublicationStore::publish`]; the API only reads. Both implementations
//! pass the same contract tests (`tests/store_contract.rs` for memory, `tests/clickhouse_store.rs`
//! for a real server), so the API's unit tests on [`MemoryStore`] mean something.

mod clickhouse;
mod memory;

use async_trait::async_trait;

pub use self::clickhouse::ClickHouseStore;
pub use self::memory::MemoryStore;
use crate::error::MartsError;
use crate::period::Period;
use crate::publication::Publication;
use crate::schema::{
    CityRankingRow, CitySalesmanRankingRow, MartRunRow, PublicationPeriodRow, PublicationRow,
    SalesmanRankingRow,
};

/// A page of a ranking, in rank order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Rows to return at most.
    pub limit: u32,
    /// Rows to skip first.
    pub offset: u64,
}

/// Writes publications and reads the latest one back. Every ranking read names one period
/// (all time or a UTC month) of one publication.
#[async_trait]
pub trait PublicationStore: Send + Sync {
    /// Creates the database and tables if absent (and replaces tables of an older layout).
    async fn ensure_schema(&self) -> Result<(), MartsError>;

    /// Checks the store answers (the API's readiness).
    async fn ping(&self) -> Result<(), MartsError>;

    /// Writes every ranking row of `publication`, then its `publications` row. Writing the same
    /// publication again replaces its rows.
    async fn publish(&self, publication: &Publication) -> Result<(), MartsError>;

    /// The publication with the highest version, if any was completed.
    async fn latest_publication(&self) -> Result<Option<PublicationRow>, MartsError>;

    /// A page of the city ranking of `publication_id`.
    async fn city_ranking(
        &self,
        publication_id: &str,
        period: Period,
        page: Page,
    ) -> Result<Vec<CityRankingRow>, MartsError>;

    /// The salesmen ranked `1..=max_rank` in each of `city_ids`, ordered by city then rank.
    async fn top_city_salesmen(
        &self,
        publication_id: &str,
        period: Period,
        city_ids: &[i64],
        max_rank: u32,
    ) -> Result<Vec<CitySalesmanRankingRow>, MartsError>;

    /// A page of the salesmen ranked within one city.
    async fn city_salesman_ranking(
        &self,
        publication_id: &str,
        period: Period,
        city_id: i64,
        page: Page,
    ) -> Result<Vec<CitySalesmanRankingRow>, MartsError>;

    /// One city's row, to tell "no such city" from "no salesmen on this page".
    async fn city(
        &self,
        publication_id: &str,
        period: Period,
        city_id: i64,
    ) -> Result<Option<CityRankingRow>, MartsError>;

    /// A page of the nationwide salesman ranking.
    async fn salesman_ranking(
        &self,
        publication_id: &str,
        period: Period,
        page: Page,
    ) -> Result<Vec<SalesmanRankingRow>, MartsError>;

    /// One period of a publication: its counts, or `None` when the period has no current sales
    /// (a month nobody sold in).
    async fn period(
        &self,
        publication_id: &str,
        period: Period,
    ) -> Result<Option<PublicationPeriodRow>, MartsError>;

    /// Every period of a publication, `all` first, then the months in order.
    async fn periods(&self, publication_id: &str) -> Result<Vec<PublicationPeriodRow>, MartsError>;

    /// Per source, how far the events a publication counts reach (sorted by source).
    async fn sources(
        &self,
        publication_id: &str,
    ) -> Result<Vec<crate::schema::PublicationSourceRow>, MartsError>;

    /// Records one run in `mart_runs`.
    async fn record_run(&self, run: &MartRunRow) -> Result<(), MartsError>;

    /// The latest `limit` runs, newest first.
    async fn runs(&self, limit: u32) -> Result<Vec<MartRunRow>, MartsError>;
}
