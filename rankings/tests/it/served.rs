//! The store contract on [`ServedStore`]: every read answered from the publication it holds in
//! memory, over the in-memory store and over a real ClickHouse (which also exercises its
//! one-query-per-table `publication_rows`). `Served` writes to the store underneath, refreshes,
//! and reads through the served store, so each contract function checks the served answers
//! against the rows it published.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tributary_rankings::retention::{PrunePlan, PublicationRetention};
use tributary_rankings::schema::{
    CityRankingRow, CitySalesmanRankingRow, MartRunRow, PublicationPeriodRow, PublicationRow,
    PublicationSourceRow, SalesmanRankingRow,
};
use tributary_rankings::store::Refresh;
use tributary_rankings::{
    MemoryStore, Page, Period, Publication, PublicationWriter, RankingQueries, RankingsError,
    ServedStore,
};

use crate::contract;

/// Writes go to `store`, then the served store refreshes; reads go to the served store.
struct Served<W> {
    store: Arc<W>,
    served: ServedStore,
}

impl<W: PublicationWriter + 'static> Served<W> {
    fn new(store: W) -> Self {
        let store = Arc::new(store);
        Self {
            served: ServedStore::new(store.clone()),
            store,
        }
    }
}

#[async_trait]
impl<W: PublicationWriter + 'static> PublicationWriter for Served<W> {
    async fn ensure_schema(&self) -> Result<(), RankingsError> {
        self.store.ensure_schema().await
    }

    async fn publish(&self, publication: &Publication) -> Result<(), RankingsError> {
        self.store.publish(publication).await?;
        self.served.refresh().await.map(|_| ())
    }

    async fn record_run(&self, run: &MartRunRow) -> Result<(), RankingsError> {
        self.store.record_run(run).await
    }

    async fn prune(
        &self,
        retention: &PublicationRetention,
        now: DateTime<Utc>,
    ) -> Result<PrunePlan, RankingsError> {
        self.store.prune(retention, now).await
    }

    async fn prune_runs(&self, before: DateTime<Utc>) -> Result<u64, RankingsError> {
        self.store.prune_runs(before).await
    }
}

/// Every read of the contract, the detail reads included, through the served store.
#[async_trait]
impl<W: PublicationWriter + 'static> RankingQueries for Served<W> {
    async fn ping(&self) -> Result<(), RankingsError> {
        self.served.ping().await
    }
    async fn latest_publication(&self) -> Result<Option<PublicationRow>, RankingsError> {
        self.served.latest_publication().await
    }
    async fn publication(&self, id: &str) -> Result<Option<PublicationRow>, RankingsError> {
        self.served.publication(id).await
    }
    async fn city_ranking(
        &self,
        id: &str,
        period: Period,
        page: Page,
    ) -> Result<Vec<CityRankingRow>, RankingsError> {
        self.served.city_ranking(id, period, page).await
    }
    async fn top_city_salesmen(
        &self,
        id: &str,
        period: Period,
        city_ids: &[i64],
        max_rank: u32,
    ) -> Result<Vec<CitySalesmanRankingRow>, RankingsError> {
        self.served
            .top_city_salesmen(id, period, city_ids, max_rank)
            .await
    }
    async fn city_salesman_ranking(
        &self,
        id: &str,
        period: Period,
        city_id: i64,
        page: Page,
    ) -> Result<Vec<CitySalesmanRankingRow>, RankingsError> {
        self.served
            .city_salesman_ranking(id, period, city_id, page)
            .await
    }
    async fn city(
        &self,
        id: &str,
        period: Period,
        city_id: i64,
    ) -> Result<Option<CityRankingRow>, RankingsError> {
        self.served.city(id, period, city_id).await
    }
    async fn salesman_ranking(
        &self,
        id: &str,
        period: Period,
        page: Page,
    ) -> Result<Vec<SalesmanRankingRow>, RankingsError> {
        self.served.salesman_ranking(id, period, page).await
    }
    async fn period(
        &self,
        id: &str,
        period: Period,
    ) -> Result<Option<PublicationPeriodRow>, RankingsError> {
        self.served.period(id, period).await
    }
    async fn periods(&self, id: &str) -> Result<Vec<PublicationPeriodRow>, RankingsError> {
        self.served.periods(id).await
    }
    async fn sources(&self, id: &str) -> Result<Vec<PublicationSourceRow>, RankingsError> {
        self.served.sources(id).await
    }
    async fn runs(&self, limit: u32) -> Result<Vec<MartRunRow>, RankingsError> {
        self.served.runs(limit).await
    }
    async fn cities_in_state(
        &self,
        id: &str,
        period: Period,
        state: &str,
        page: Page,
    ) -> Result<(Vec<CityRankingRow>, u64), RankingsError> {
        self.served.cities_in_state(id, period, state, page).await
    }
    async fn salesmen_in_city(
        &self,
        id: &str,
        period: Period,
        city_id: i64,
        page: Page,
    ) -> Result<(Vec<SalesmanRankingRow>, u64), RankingsError> {
        self.served
            .salesmen_in_city(id, period, city_id, page)
            .await
    }
    async fn salesman(
        &self,
        id: &str,
        period: Period,
        salesman_id: i64,
    ) -> Result<Option<SalesmanRankingRow>, RankingsError> {
        self.served.salesman(id, period, salesman_id).await
    }
    async fn salesman_cities(
        &self,
        id: &str,
        period: Period,
        salesman_id: i64,
    ) -> Result<Vec<CitySalesmanRankingRow>, RankingsError> {
        self.served.salesman_cities(id, period, salesman_id).await
    }
    async fn cities(
        &self,
        id: &str,
        period: Period,
        city_ids: &[i64],
    ) -> Result<Vec<CityRankingRow>, RankingsError> {
        self.served.cities(id, period, city_ids).await
    }
    async fn salesman_months(
        &self,
        id: &str,
        salesman_id: i64,
    ) -> Result<Vec<SalesmanRankingRow>, RankingsError> {
        self.served.salesman_months(id, salesman_id).await
    }
    async fn city_months(
        &self,
        id: &str,
        city_id: i64,
    ) -> Result<Vec<CityRankingRow>, RankingsError> {
        self.served.city_months(id, city_id).await
    }
}

#[tokio::test]
async fn served_round_trip() {
    contract::round_trip(&Served::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn served_republishing_replaces_rows() {
    contract::republishing_replaces_rows(&Served::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn served_latest_is_the_highest_version() {
    contract::latest_is_the_highest_version(&Served::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn served_empty_publication() {
    contract::an_empty_publication_is_still_a_publication(&Served::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn served_periods_are_read_apart() {
    contract::periods_are_read_apart(&Served::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn served_detail_reads_agree_with_the_rankings() {
    contract::detail_reads_agree_with_the_rankings(&Served::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn served_pruning_keeps_the_latest_the_pinned_and_the_recent() {
    contract::pruning_keeps_the_latest_the_pinned_and_the_recent(&Served::new(MemoryStore::new()))
        .await;
}

/// Once loaded, the latest publication is answered with the store down: no round trip.
#[tokio::test]
async fn the_latest_publication_is_answered_without_the_store() {
    let store = Arc::new(MemoryStore::new());
    let served = ServedStore::new(store.clone());
    assert_eq!(served.refresh().await.unwrap(), Refresh::Unchanged);
    let p = contract::sample_with_months(10, "run-1", 0);
    store.publish(&p).await.unwrap();
    let rows = p.rows();
    let loaded = served.refresh().await.unwrap();
    assert_eq!(
        loaded,
        Refresh::Loaded {
            publication_id: p.id.clone(),
            version: p.version(),
            rows: rows.ranking_rows(),
            rows_read: rows.ranking_rows(),
        }
    );
    assert_eq!(served.refresh().await.unwrap(), Refresh::Unchanged);

    store.set_unavailable(true);
    assert!(served.ping().await.is_err(), "ping still asks the store");
    let all = Period::AllTime;
    let everything = Page {
        limit: u32::MAX,
        offset: 0,
    };
    assert_eq!(
        served.latest_publication().await.unwrap(),
        Some(rows.publication.clone())
    );
    assert_eq!(
        served.city_ranking(&p.id, all, everything).await.unwrap(),
        rows.cities
            .iter()
            .filter(|c| c.period == Period::ALL)
            .cloned()
            .collect::<Vec<_>>()
    );
    assert_eq!(served.periods(&p.id).await.unwrap(), rows.periods);
    assert_eq!(served.sources(&p.id).await.unwrap(), rows.sources);
    // Another publication is the store's to answer: it is down.
    assert!(served.city_ranking("other", all, everything).await.is_err());
    // A store that is down keeps the served publication: refresh fails, reads still work.
    assert!(served.refresh().await.is_err());
    assert!(
        served
            .salesman_ranking(&p.id, all, everything)
            .await
            .is_ok()
    );

    // A newer publication replaces it at the next refresh.
    store.set_unavailable(false);
    let newer = contract::sample_with_months(11, "run-2", 60);
    store.publish(&newer).await.unwrap();
    assert!(matches!(
        served.refresh().await.unwrap(),
        Refresh::Loaded { publication_id, .. } if publication_id == newer.id
    ));
    assert_eq!(
        served
            .latest_publication()
            .await
            .unwrap()
            .unwrap()
            .publication_id,
        newer.id
    );
}

#[tokio::test]
async fn served_over_clickhouse_round_trip() {
    let store = contract::clickhouse_store("served_round_trip").await;
    let served = Served::new(store);
    contract::round_trip(&served).await;
    contract::drop_database(&served.store).await;
}

#[tokio::test]
async fn served_over_clickhouse_detail_reads_agree_with_the_rankings() {
    let store = contract::clickhouse_store("served_details").await;
    let served = Served::new(store);
    contract::detail_reads_agree_with_the_rankings(&served).await;
    contract::drop_database(&served.store).await;
}

#[tokio::test]
async fn served_carried_months_read_as_their_own() {
    contract::carried_months_read_as_their_own(&Served::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn served_over_clickhouse_carried_months_read_as_their_own() {
    let store = contract::clickhouse_store("served_carried").await;
    let served = Served::new(store);
    contract::carried_months_read_as_their_own(&served).await;
    contract::drop_database(&served.store).await;
}

/// A newer publication that carries a month the served one holds shares its rows: a load
/// reads only what the publication changed, and the carried month is still answered (naming
/// the new publication) with the store down.
#[tokio::test]
async fn a_load_reads_only_the_months_not_held_already() {
    let store = Arc::new(MemoryStore::new());
    let served = ServedStore::new(store.clone());
    let first = contract::sample_with_months(1, "run-1", 0);
    store.publish(&first).await.unwrap();
    served.refresh().await.unwrap();
    let march = contract::month("2026-03");
    let whole = contract::sample_with_months(2, "run-2", 60);
    let second = whole
        .clone()
        .with_months([(march, whole.months[&march].clone())].into())
        .carrying(store.periods(&first.id).await.unwrap(), |m| m != march);
    store.publish(&second).await.unwrap();
    let Refresh::Loaded {
        rows, rows_read, ..
    } = served.refresh().await.unwrap()
    else {
        panic!("the newer publication was not loaded");
    };
    let (cities, city_salesmen, salesmen) = whole.ranking_row_counts();
    assert_eq!(rows, (cities + city_salesmen + salesmen) as u64);
    let january = whole
        .rows()
        .salesmen
        .iter()
        .filter(|r| r.period == "2026-01")
        .count()
        + whole
            .rows()
            .cities
            .iter()
            .filter(|r| r.period == "2026-01")
            .count()
        + whole
            .rows()
            .city_salesmen
            .iter()
            .filter(|r| r.period == "2026-01")
            .count();
    assert!(january > 0);
    assert_eq!(
        rows_read,
        rows - january as u64,
        "January was not read again"
    );

    store.set_unavailable(true);
    let jan = Period::Month(contract::month("2026-01"));
    let everything = Page {
        limit: u32::MAX,
        offset: 0,
    };
    let january = served
        .salesman_ranking(&second.id, jan, everything)
        .await
        .unwrap();
    assert_eq!(january.len(), 2);
    assert!(january.iter().all(|r| r.publication_id == second.id));
}
