//! `/provenance` on iceberg's `MemoryCatalog`: the records behind a published row are the
//! current sales of the publication's own snapshots (not newer ones), they sum to the row,
//! they page, and a time-travelled row is explained at its snapshot.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::test::TestClient;
use serde_json::Value;
use tributary_raw::schema::RawTable;
use tributary_raw::testing::{land, land_ana_in_campinas, memory_lake, sale};

use crate::app_with_lake;
use crate::lake::Lake;
use crate::tests_time_travel::published;

async fn get(client: &TestClient<impl poem::Endpoint>, uri: &str) -> (StatusCode, Value) {
    let resp = client.get(uri).send().await;
    let status = resp.0.status();
    (status, resp.0.into_body().into_json().await.unwrap())
}

fn sale_ids(page: &Value) -> Vec<&str> {
    page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sale_id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_published_row_is_explained_by_the_sales_of_its_own_snapshots() {
    let lake = memory_lake(&RawTable::DATA_TABLES).await;
    let lake_ref = lake.as_ref();
    land_ana_in_campinas(lake_ref).await;
    let first = land(
        lake_ref,
        RawTable::PgSale,
        &[
            sale("c", 1, (10, 0), Some(100), Some(7), Some(1_000)).sold_at("2026-01-05T10:00:00Z"),
            sale("c", 2, (11, 1), Some(100), Some(7), Some(2_500)).sold_at("2026-02-05T10:00:00Z"),
            sale("c", 3, (12, 2), Some(100), Some(7), Some(40)).sold_at("2026-02-06T10:00:00Z"),
        ],
    )
    .await;
    // Published now; then sale 2 is deleted in the lake, and the marts have not run since.
    let store = published(lake_ref).await;
    land(
        lake_ref,
        RawTable::PgSale,
        &[sale("d", 2, (20, 3), None, None, None)],
    )
    .await;
    let api = TestClient::new(app_with_lake(
        store,
        Arc::new(Lake::from_catalog(lake.clone(), "raw")),
    ));

    let (status, page) = get(&api, "/v1/rankings/cities/7/provenance").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        (page["revenue"].as_str(), page["sales"].as_i64()),
        (Some("35.40"), Some(3))
    );
    assert_eq!(page["records_revenue"], "35.40");
    assert_eq!(
        sale_ids(&page),
        ["2", "1", "3"],
        "the published snapshot, largest first"
    );
    let first_record = &page["records"][0];
    assert_eq!(first_record["source"], "pg");
    assert_eq!(first_record["amount"], "25.00");
    assert_eq!(first_record["source_record"]["lsn"], 11);
    assert_eq!(first_record["kafka"]["topic"], "test.pg_sale");
    assert_eq!(first_record["kafka"]["offset"], 1);
    let pinned = page["lake_snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["table"] == "pg_sale")
        .unwrap();
    assert_eq!(pinned["snapshot_id"], first);

    // The salesman's February row, paged.
    let (_, feb) = get(
        &api,
        "/v1/rankings/salesmen/100/provenance?month=2026-02&limit=1",
    )
    .await;
    assert_eq!(
        (feb["total"].as_i64(), feb["sales"].as_i64()),
        (Some(2), Some(2))
    );
    assert_eq!(sale_ids(&feb), ["2"]);
    assert_eq!(feb["records_revenue"], "25.40");
    let (_, rest) = get(
        &api,
        "/v1/rankings/cities/7/salesmen/100/provenance?month=2026-02&limit=1&offset=1",
    )
    .await;
    assert_eq!(sale_ids(&rest), ["3"]);

    // Travelling to the latest pg_sale snapshot: sale 2 is gone there.
    let latest = {
        let (_, snaps) = get(&api, "/v1/snapshots").await;
        snaps["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == "pg_sale")
            .unwrap()["current_snapshot_id"]
            .as_i64()
            .unwrap()
    };
    let (status, now) = get(
        &api,
        &format!("/v1/rankings/cities/7/provenance?as_of_snapshot={latest}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{now}");
    assert_eq!(sale_ids(&now), ["1", "3"]);
    assert_eq!(
        (now["revenue"].as_str(), now["sales"].as_i64()),
        (Some("10.40"), Some(2))
    );

    // Rows that do not exist, and bad parameters.
    let (status, problem) = get(&api, "/v1/rankings/cities/8/provenance").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("city-not-found"),
        "{problem}"
    );
    let (status, _) = get(&api, "/v1/rankings/salesmen/100/provenance?month=2025-12").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(&api, "/v1/rankings/cities/7/salesmen/999/provenance").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(&api, "/v1/rankings/cities/7/provenance?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// The latest publication's provenance is read by key from the marts' kept state (a real
/// Postgres, the local stack's): the same records the lake gives; kept for the publication, so
/// the state is read once per row; and a state that cannot answer leaves the lake to.
#[tokio::test]
async fn the_latest_publications_rows_are_explained_from_the_kept_state() {
    use tributary_marts::job::MartsJob;
    use tributary_marts::state::{KeptSalesReader, PostgresState, StateStore};
    use tributary_rankings::MemoryStore;

    let lake = memory_lake(&RawTable::DATA_TABLES).await;
    land_ana_in_campinas(lake.as_ref()).await;
    land(
        lake.as_ref(),
        RawTable::PgSale,
        &[
            sale("c", 1, (10, 0), Some(100), Some(7), Some(1_000)).sold_at("2026-01-05T10:00:00Z"),
            sale("c", 2, (11, 1), Some(100), Some(7), Some(2_500)).sold_at("2026-02-05T10:00:00Z"),
            sale("u", 1, (12, 2), Some(100), Some(7), Some(1_200)).sold_at("2026-01-05T10:00:00Z"),
        ],
    )
    .await;
    let url = std::env::var("MARTS_STATE_TEST_URL")
        .unwrap_or_else(|_| "postgres://tributary:tributary@127.0.0.1:5432/tributary".into());
    let schema = format!("marts_state_api_test_{}", std::process::id());
    let state = Arc::new(PostgresState::new(url.clone(), &schema).unwrap());
    let store = Arc::new(MemoryStore::new());
    MartsJob::new(lake.clone(), "raw", store.clone(), state.clone())
        .run_once(false)
        .await
        .expect("the marts fold the lake into the state and publish");

    let from_lake = TestClient::new(app_with_lake(
        store.clone(),
        Arc::new(Lake::from_catalog(lake.clone(), "raw")),
    ));
    let from_state = TestClient::new(crate::app_of(
        crate::routes::RankingsApi::with_lake(
            store.clone(),
            Arc::new(Lake::from_catalog(lake.clone(), "raw")),
        )
        .with_kept_sales(Arc::new(KeptSalesReader::new(url, &schema).unwrap())),
        Arc::new(crate::lineage::store::LineageStore::in_memory()),
        Arc::default(),
    ));
    for path in [
        "/v1/rankings/cities/7/provenance",
        "/v1/rankings/salesmen/100/provenance?month=2026-01",
        "/v1/rankings/cities/7/salesmen/100/provenance?month=2026-02",
    ] {
        let (status, mut lake_page) = get(&from_lake, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {lake_page}");
        let (status, mut state_page) = get(&from_state, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {state_page}");
        assert_eq!(lake_page["records_from"], "lake", "{path}");
        assert_eq!(state_page["records_from"], "kept_state", "{path}");
        lake_page["records_from"] = Value::Null;
        state_page["records_from"] = Value::Null;
        assert_eq!(
            state_page, lake_page,
            "{path}: the state's page is the lake's"
        );
    }
    let (_, all_time) = get(&from_state, "/v1/rankings/cities/7/provenance").await;
    assert_eq!(
        sale_ids(&all_time),
        ["2", "1"],
        "sale 1 as updated, largest first"
    );

    // Gone: the rows already read are kept for this publication; another is read from the lake.
    state.reset().await.unwrap();
    let (_, again) = get(&from_state, "/v1/rankings/cities/7/provenance").await;
    assert_eq!(again["records_from"], "kept_state");
    assert_eq!(again, all_time);
    let (status, other) = get(&from_state, "/v1/rankings/salesmen/100/provenance").await;
    assert_eq!(status, StatusCode::OK, "{other}");
    assert_eq!(other["records_from"], "lake");
    assert_eq!(sale_ids(&other), ["2", "1"]);
}
