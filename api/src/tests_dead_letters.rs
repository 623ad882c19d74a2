//! Dead letters over iceberg's `MemoryCatalog`: rows written as the lander writes them come
//! back through `/v1/dead-letters` (filtered, paged, newest first) and `/counts`.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::test::TestClient;
use serde_json::{Value, json};
use tributary_lake::batch::{Provenance, dead_letter_row};
use tributary_lake::sink::TableSink;
use tributary_rankings::MemoryStore;
use tributary_raw::ledger::{Fate, Ledger};
use tributary_raw::offsets::{OffsetMap, TopicPartition};
use tributary_raw::schema::RawTable;
use tributary_raw::testing::memory_lake;

use crate::app_with_lake;
use crate::lake::Lake;

async fn get(client: &TestClient<impl poem::Endpoint>, uri: &str) -> (StatusCode, Value) {
    let resp = client.get(uri).send().await;
    let status = resp.0.status();
    (status, resp.json().await.value().deserialize())
}

/// `(topic, offset, kind, seconds after a base time)` rows, committed as one lander flush.
async fn land_dead_letters(catalog: Arc<dyn iceberg::Catalog>, rows: &[(&str, i64, &str, i64)]) {
    let mut sink = TableSink::open(catalog, "raw", RawTable::DeadLetters)
        .await
        .unwrap();
    let mut offsets = OffsetMap::new();
    let rows: Vec<_> = rows
        .iter()
        .map(|(topic, offset, kind, second)| {
            offsets.advance(&TopicPartition::new(*topic, 0), offset + 1);
            let prov = Provenance {
                topic: topic.to_string(),
                partition: 0,
                offset: *offset,
                ingest_time_micros: (1_700_000_000 + second) * 1_000_000,
                trace_id: None,
            };
            dead_letter_row(
                &prov,
                Some(b"key-1"),
                Some(format!("row {offset}").as_bytes()),
                &format!("{kind} at offset {offset}"),
                kind,
            )
        })
        .collect();
    sink.commit(&rows, &offsets).await.unwrap();
}

#[tokio::test]
async fn dead_letters_are_listed_filtered_and_counted() {
    let catalog = memory_lake(&[RawTable::DeadLetters]).await;
    land_dead_letters(
        catalog.clone(),
        &[
            ("raw.files.dead_letters", 0, "bad_amount", 10),
            ("raw.files.dead_letters", 1, "bad_date", 11),
            ("raw.files.dead_letters", 2, "bad_amount", 12),
            ("raw.ws.dead_letters", 0, "bad_amount", 5),
            ("salesdb.public.sale", 41, "undecodable", 20),
        ],
    )
    .await;
    let api = TestClient::new(app_with_lake(
        Arc::new(MemoryStore::new()),
        Arc::new(Lake::from_catalog(catalog, "raw")),
    ));

    let (status, all) = get(&api, "/v1/dead-letters").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all["total"], 5);
    let order: Vec<(&str, i64)> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["source"].as_str().unwrap(), d["offset"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        order,
        [
            ("pg", 41),
            ("files", 2),
            ("files", 1),
            ("files", 0),
            ("erp", 0)
        ]
    );
    let newest = &all["items"][0];
    assert_eq!(newest["kind"], "undecodable");
    assert_eq!(newest["value"], "row 41");
    assert_eq!(newest["value_encoding"], "utf8");
    assert_eq!(newest["key"], "key-1");
    assert_eq!(newest["reason"], "undecodable at offset 41");
    assert_eq!(newest["ingested_at"], "2023-11-14T22:13:40+00:00");

    let (_, files) = get(
        &api,
        "/v1/dead-letters?source=files&kind=bad_amount&limit=1",
    )
    .await;
    assert_eq!(files["total"], 2);
    assert_eq!(files["items"].as_array().unwrap().len(), 1);
    assert_eq!(files["items"][0]["offset"], 2);
    let (_, second) = get(
        &api,
        "/v1/dead-letters?source=files&kind=bad_amount&limit=1&offset=1",
    )
    .await;
    assert_eq!(second["items"][0]["offset"], 0);

    let (status, counts) = get(&api, "/v1/dead-letters/counts").await;
    assert_eq!(status, StatusCode::OK, "{counts}");
    assert_eq!(counts["total"], 5);
    assert_eq!(
        counts["items"],
        json!([
            {"source": "erp", "kind": "bad_amount", "count": 1, "newest_at": "2023-11-14T22:13:25+00:00"},
            {"source": "files", "kind": "bad_amount", "count": 2, "newest_at": "2023-11-14T22:13:32+00:00"},
            {"source": "files", "kind": "bad_date", "count": 1, "newest_at": "2023-11-14T22:13:31+00:00"},
            {"source": "pg", "kind": "undecodable", "count": 1, "newest_at": "2023-11-14T22:13:40+00:00"},
        ])
    );

    let (status, problem) = get(&api, "/v1/dead-letters?source=kafka").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["parameter"], "source");
    let (status, problem) = get(&api, "/v1/dead-letters?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["parameter"], "limit");
}

#[tokio::test]
async fn no_dead_letter_table_yet_is_none_and_no_lake_is_503() {
    let catalog = memory_lake(&[]).await;
    let api = TestClient::new(app_with_lake(
        Arc::new(MemoryStore::new()),
        Arc::new(Lake::from_catalog(catalog, "raw")),
    ));
    let (status, page) = get(&api, "/v1/dead-letters/counts").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page, json!({"total": 0, "items": []}));

    let api = TestClient::new(crate::app(Arc::new(MemoryStore::new())));
    let resp = api.get("/v1/dead-letters").send().await;
    resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    resp.assert_content_type("application/problem+json");
}

/// `/v1/ledger` holds each partition's counts against the rows: balanced while they agree,
/// and a commit whose ledger claims a record the lake does not hold is named.
#[tokio::test]
async fn the_ledger_is_held_against_the_rows() {
    let catalog = memory_lake(&[RawTable::DeadLetters]).await;
    let rejects = "raw.files.dead_letters";
    let row = |offset: i64| {
        let provenance = Provenance {
            topic: rejects.to_string(),
            partition: 0,
            offset,
            ingest_time_micros: 1_700_000_000_000_000,
            trace_id: None,
        };
        dead_letter_row(&provenance, None, Some(b"x"), "bad", "bad_amount")
    };
    let tp = TopicPartition::new(rejects, 0);
    let mut sink = TableSink::open(catalog.clone(), "raw", RawTable::DeadLetters)
        .await
        .unwrap();
    let mut counted = Ledger::new();
    for offset in 0..3 {
        counted.count(&tp, offset, Fate::DeadLettered);
    }
    let offsets: OffsetMap = [(tp.clone(), 3)].into_iter().collect();
    sink.commit_counted(&[row(0), row(1), row(2)], &offsets, &counted)
        .await
        .unwrap();
    let api = TestClient::new(app_with_lake(
        Arc::new(MemoryStore::new()),
        Arc::new(Lake::from_catalog(catalog.clone(), "raw")),
    ));
    let (status, ledger) = get(&api, "/v1/ledger").await;
    assert_eq!(status, StatusCode::OK, "{ledger}");
    assert_eq!(
        ledger,
        json!({"balanced": true, "unbalanced": 0, "partitions": [{
            "table": "dead_letters", "topic": rejects, "partition": 0,
            "first_offset": 0, "next_offset": 3, "consumed": 3, "landed": 0,
            "dead_lettered": 3, "tombstones": 0, "landed_rows": 0, "dead_letter_rows": 3,
            "duplicate_offsets": 0, "balanced": true
        }], "files": [], "erp": []})
    );

    // Offset 3 counted as dead-lettered, but the commit carries no row for it.
    let mut lost = Ledger::new();
    lost.count(&tp, 3, Fate::DeadLettered);
    let offsets: OffsetMap = [(tp, 4)].into_iter().collect();
    sink.commit_counted(&[], &offsets, &lost).await.unwrap();
    let (_, ledger) = get(&api, "/v1/ledger").await;
    assert_eq!(ledger["balanced"], false, "{ledger}");
    assert_eq!(ledger["unbalanced"], 1);
    assert_eq!(ledger["partitions"][0]["dead_lettered"], 4);
    assert_eq!(ledger["partitions"][0]["dead_letter_rows"], 3);
}
