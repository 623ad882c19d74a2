//! The store contract on `MemoryStore` (no services needed).

mod common;

use tributary_marts::MemoryStore;

#[tokio::test]
async fn memory_round_trip() {
    common::round_trip(&MemoryStore::new()).await;
}

#[tokio::test]
async fn memory_republishing_replaces_rows() {
    common::republishing_replaces_rows(&MemoryStore::new()).await;
}

#[tokio::test]
async fn memory_latest_is_the_highest_version() {
    common::latest_is_the_highest_version(&MemoryStore::new()).await;
}

#[tokio::test]
async fn memory_empty_publication() {
    common::an_empty_publication_is_still_a_publication(&MemoryStore::new()).await;
}

#[tokio::test]
async fn memory_unavailable_fails_retryably() {
    use tributary_marts::PublicationStore;
    let store = MemoryStore::new();
    store.set_unavailable(true);
    let err = store.ping().await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn memory_periods_are_read_apart() {
    common::periods_are_read_apart(&MemoryStore::new()).await;
}

#[tokio::test]
async fn memory_runs_are_recorded() {
    common::runs_are_recorded_newest_first(&MemoryStore::new()).await;
}
