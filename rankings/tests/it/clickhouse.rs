//! The store contract on a real ClickHouse (127.0.0.1:8123 unless `TRIBUTARY_CLICKHOUSE__URL`
//! says otherwise), each test in a database of its own. Fails — never skips — when ClickHouse
//! is not running: run `make test`.

use crate::contract;

use tributary_rankings::{PublicationWriter, RankingQueries};

#[tokio::test]
async fn clickhouse_round_trip() {
    let store = contract::clickhouse_store("round_trip").await;
    contract::round_trip(&store).await;
    contract::drop_database(&store).await;
}

#[tokio::test]
async fn clickhouse_republishing_replaces_rows() {
    let store = contract::clickhouse_store("republish").await;
    contract::republishing_replaces_rows(&store).await;
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
    contract::drop_database(&store).await;
}

#[tokio::test]
async fn clickhouse_latest_is_the_highest_version() {
    let store = contract::clickhouse_store("latest").await;
    contract::latest_is_the_highest_version(&store).await;
    contract::drop_database(&store).await;
}

#[tokio::test]
async fn clickhouse_empty_publication() {
    let store = contract::clickhouse_store("empty").await;
    contract::an_empty_publication_is_still_a_publication(&store).await;
    contract::drop_database(&store).await;
}

#[tokio::test]
async fn clickhouse_schema_creation_is_idempotent() {
    let store = contract::clickhouse_store("ddl").await;
    store.ensure_schema().await.unwrap();
    store.ensure_schema().await.unwrap();
    contract::drop_database(&store).await;
}

#[tokio::test]
async fn clickhouse_missing_schema_means_nothing_published() {
    // The database is never created: the API asks before the marts' first run.
    let store = contract::clickhouse_store("absent").await;
    assert!(store.latest_publication().await.unwrap().is_none());
}

#[tokio::test]
async fn clickhouse_periods_are_read_apart() {
    let store = contract::clickhouse_store("periods").await;
    contract::periods_are_read_apart(&store).await;
    contract::drop_database(&store).await;
}

#[tokio::test]
async fn clickhouse_runs_are_recorded() {
    let store = contract::clickhouse_store("runs").await;
    contract::runs_are_recorded_newest_first(&store).await;
    contract::drop_database(&store).await;
}

/// Tables of an earlier layout (as the local stack has them from earlier runs: before periods,
/// before carried months, before dictionary-encoded publication ids) are
/// replaced, and their publication forgotten so the next run republishes; the current layout
/// is left alone.
#[tokio::test]
async fn clickhouse_old_layout_is_replaced() {
    let store = contract::clickhouse_store("old_layout").await;
    let db = store.database();
    let exec = |sql: String| {
        let client = store.client().clone();
        async move { client.query(&sql).execute().await.unwrap() }
    };
    exec(format!("CREATE DATABASE {db}")).await;
    exec(format!(
        "CREATE TABLE {db}.salesman_ranking (publication_id String, rank UInt32, \
         salesman_id Int64, version UInt64) ENGINE = ReplacingMergeTree(version) \
         ORDER BY (publication_id, rank, salesman_id)"
    ))
    .await;
    store.ensure_schema().await.unwrap();
    let has_period = |table: &'static str| {
        let client = store.client().clone();
        let db = db.to_string();
        async move {
            client
                .query(
                    "SELECT toUInt64(count()) FROM system.columns \
                     WHERE database = ? AND table = ? AND name = 'period'",
                )
                .bind(db)
                .bind(table)
                .fetch_one::<u64>()
                .await
                .unwrap()
        }
    };
    for table in ["city_ranking", "city_salesman_ranking", "salesman_ranking"] {
        assert_eq!(has_period(table).await, 1, "{table}");
    }
    // The current layout survives ensure_schema with its data.
    store
        .publish(&contract::sample(10, "run-1", 0))
        .await
        .unwrap();
    store.ensure_schema().await.unwrap();
    assert!(store.latest_publication().await.unwrap().is_some());

    // Now an old table again: ensure_schema drops it with the publications.
    exec(format!("DROP TABLE {db}.city_ranking")).await;
    exec(format!(
        "CREATE TABLE {db}.city_ranking (publication_id String, rank UInt32, city_id Int64, \
         version UInt64) ENGINE = ReplacingMergeTree(version) ORDER BY (publication_id, rank, city_id)"
    ))
    .await;
    store.ensure_schema().await.unwrap();
    assert_eq!(has_period("city_ranking").await, 1);
    assert!(
        store.latest_publication().await.unwrap().is_none(),
        "the publication of the old layout is forgotten, so the next run republishes"
    );
    // And `publication_periods` from before periods were carried by reference.
    store
        .publish(&contract::sample(11, "run-2", 60))
        .await
        .unwrap();
    exec(format!("DROP TABLE {db}.publication_periods")).await;
    exec(format!(
        "CREATE TABLE {db}.publication_periods (publication_id String, period String, \
         version UInt64, lake_window UInt32) ENGINE = ReplacingMergeTree(version) \
         PARTITION BY lake_window ORDER BY (publication_id, period)"
    ))
    .await;
    store.ensure_schema().await.unwrap();
    assert!(store.latest_publication().await.unwrap().is_none());
    store
        .publish(&contract::sample(12, "run-3", 120))
        .await
        .unwrap();
    assert_eq!(
        store
            .periods(&contract::sample(12, "run-3", 120).id)
            .await
            .unwrap()
            .len(),
        1
    );
    // And a ranking table of the layout before its publication id was dictionary-encoded: the
    // same columns, `publication_id` a plain `String`.
    let ddl = store
        .client()
        .query("SELECT create_table_query FROM system.tables WHERE database = ? AND name = ?")
        .bind(db)
        .bind("salesman_ranking")
        .fetch_one::<String>()
        .await
        .unwrap();
    assert!(
        ddl.contains("publication_id LowCardinality(String)"),
        "{ddl}"
    );
    exec(format!("DROP TABLE {db}.salesman_ranking")).await;
    exec(ddl.replace(
        "publication_id LowCardinality(String)",
        "publication_id String",
    ))
    .await;
    store.ensure_schema().await.unwrap();
    assert!(store.latest_publication().await.unwrap().is_none());
    let recreated = store
        .client()
        .query("SELECT type FROM system.columns WHERE database = ? AND table = ? AND name = ?")
        .bind(db)
        .bind("salesman_ranking")
        .bind("publication_id")
        .fetch_one::<String>()
        .await
        .unwrap();
    assert_eq!(recreated, "LowCardinality(String)");
    contract::drop_database(&store).await;
}

#[tokio::test]
async fn clickhouse_detail_reads() {
    let store = contract::clickhouse_store("detail_reads").await;
    contract::detail_reads_agree_with_the_rankings(&store).await;
    contract::drop_database(&store).await;
}

/// Retention on a real server: `ALTER TABLE … DROP PARTITION` on every publication table, and
/// only the partitions of the kept publications are left.
#[tokio::test]
async fn clickhouse_pruning_drops_whole_partitions() {
    let store = contract::clickhouse_store("pruning").await;
    contract::pruning_keeps_the_latest_the_pinned_and_the_recent(&store).await;
    let partitions: Vec<(String, u64)> = store
        .client()
        .query(
            "SELECT table, toUInt64(uniqExact(partition)) FROM system.parts \
             WHERE database = ? AND active AND table != 'mart_runs' GROUP BY table ORDER BY table",
        )
        .bind(store.database())
        .fetch_all()
        .await
        .unwrap();
    // Every table but `publication_sources` (the samples have no sources).
    assert_eq!(partitions.len(), 5, "{partitions:?}");
    for (table, n) in &partitions {
        assert_eq!(
            *n, 2,
            "{table}: the pinned and the latest publication's partitions"
        );
    }
    contract::drop_database(&store).await;
}

#[tokio::test]
async fn clickhouse_carried_months() {
    let store = contract::clickhouse_store("carried_months").await;
    contract::carried_months_read_as_their_own(&store).await;
    contract::drop_database(&store).await;
}
