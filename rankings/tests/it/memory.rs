//! The store contract on `MemoryStore` (no services needed).

use crate::contract;

use tributary_rankings::MemoryStore;

#[tokio::test]
async fn memory_round_trip() {
    contract::round_trip(&MemoryStore::new()).await;
}

#[tokio::test]
async fn memory_republishing_replaces_rows() {
    contract::republishing_replaces_rows(&MemoryStore::new()).await;
}

#[tokio::test]
async fn memory_latest_is_the_highest_version() {
    contract::latest_is_the_highest_version(&MemoryStore::new()).await;
}

#[tokio::test]
async fn memory_empty_publication() {
    contract::an_empty_publication_is_still_a_publication(&MemoryStore::new()).await;
}

#[tokio::test]
async fn memory_unavailable_fails_retryably() {
    use tributary_rankings::RankingQueries;
    let store = MemoryStore::new();
    store.set_unavailable(true);
    let err = store.ping().await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn memory_periods_are_read_apart() {
    contract::periods_are_read_apart(&MemoryStore::new()).await;
}

#[tokio::test]
async fn memory_runs_are_recorded() {
    contract::runs_are_recorded_newest_first(&MemoryStore::new()).await;
}

#[tokio::test]
async fn memory_detail_reads() {
    contract::detail_reads_agree_with_the_rankings(&MemoryStore::new()).await;
}

#[tokio::test]
async fn memory_pruning() {
    contract::pruning_keeps_the_latest_the_pinned_and_the_recent(&MemoryStore::new()).await;
}

/// The counts a run reports without making the rows are those of the rows it publishes.
#[test]
fn ranking_row_counts_are_those_of_the_rows() {
    for publication in [
        contract::sample(1, "run-a", 1_700_000_000),
        contract::sample_with_months(2, "run-b", 1_700_000_100),
    ] {
        let rows = publication.rows();
        let (cities, city_salesmen, salesmen) = publication.ranking_row_counts();
        assert!(cities > 0 && city_salesmen > 0 && salesmen > 0);
        assert_eq!(
            (cities, city_salesmen, salesmen),
            (
                rows.cities.len(),
                rows.city_salesmen.len(),
                rows.salesmen.len()
            )
        );
    }
}

#[tokio::test]
async fn memory_carried_months() {
    contract::carried_months_read_as_their_own(&MemoryStore::new()).await;
}
