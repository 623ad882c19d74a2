//! The store contract on a real ClickHouse (127.0.0.1:8123 unless `TRIBUTARY_CLICKHOUSE__URL`
//! says otherwise), each test in a database of its own. Fails — never skips — when ClickHouse
//! is not running: run `make test`.

mod common;

use tributary_marts::PublicationStore;

#[tokio::test]
async fn clickhouse_round_trip() {
    let store = common::clickhouse_store("round_trip").await;
    common::round_trip(&store).await;
    common::drop_database(&store).await;
}

#[tokio::test]
async fn clickhouse_republishing_replaces_rows() {
    let store = common::clickhouse_store("republish").await;
    common::republishing_replaces_rows(&store).await;
    // No duplicates survive FINAL, whatever the merges have done so far.
    let db = store.database();
    for table in [
        "publications",
        "city_ranking",
        "city_salesman_ranking",
        "salesman_ranking",
    ] {
        let sql =
            format!("SELECT toUInt64(count()) FROM {db}.{table} FINAL WHERE publication_id = ?");
        let final_rows: u64 = store
            .client()
            .query(&sql)
            .bind("pg_sale:10,pg_salesman:20,pg_city:none")
            .fetch_one()
            .await
            .unwrap();
        let expected = match table {
            "publications" => 1,
            "city_ranking" => 3,
            "city_salesman_ranking" => 4,
            _ => 3,
        };
        assert_eq!(final_rows, expected, "{table}");
    }
    common::drop_database(&store).await;
}

#[tokio::test]
async fn clickhouse_latest_is_the_highest_version() {
    let store = common::clickhouse_store("latest").await;
    common::latest_is_the_highest_version(&store).await;
    common::drop_database(&store).await;
}

#[tokio::test]
async fn clickhouse_empty_publication() {
    let store = common::clickhouse_store("empty").await;
    common::an_empty_publication_is_still_a_publication(&store).await;
    common::drop_database(&store).await;
}

#[tokio::test]
async fn clickhouse_schema_creation_is_idempotent() {
    let store = common::clickhouse_store("ddl").await;
    store.ensure_schema().await.unwrap();
    store.ensure_schema().await.unwrap();
    common::drop_database(&store).await;
}

#[tokio::test]
async fn clickhouse_missing_schema_means_nothing_published() {
    // The database is never created: the API asks before the marts' first run.
    let store = common::clickhouse_store("absent").await;
    assert!(store.latest_publication().await.unwrap().is_none());
}
