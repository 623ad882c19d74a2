//! Serving from memory over HTTP: the served API answers exactly what the store answers,
//! without the store once loaded, and with validators (`ETag`, 304) that follow the publication.

use std::sync::Arc;

use poem::http::{StatusCode, header};
use poem::test::TestClient;
use serde_json::Value;
use tributary_rankings::{MemoryStore, PublicationWriter, ServedStore};

use crate::lineage::store::LineageStore;
use crate::routes::RankingsApi;
use crate::serving::AnswerCache;
use crate::tests::publication;
use crate::{app, app_of};

const PATHS: [&str; 10] = [
    "/v1/rankings/cities",
    "/v1/rankings/cities?month=2026-02&salesmen=1",
    "/v1/rankings/cities?state=SP&limit=1&offset=0",
    "/v1/rankings/cities/7/salesmen",
    "/v1/rankings/cities/9/salesmen?month=2026-02",
    "/v1/rankings/salesmen?city_id=9",
    "/v1/rankings/salesmen?month=2026-02&limit=1&offset=1",
    "/v1/salesmen/1",
    "/v1/cities/9",
    "/v1/months",
];

async fn served(store: Arc<MemoryStore>) -> (Arc<ServedStore>, TestClient<impl poem::Endpoint>) {
    let served = Arc::new(ServedStore::new(store.clone()));
    served.refresh().await.unwrap();
    let api = RankingsApi::new(store)
        .serving(served.clone())
        .with_answers(AnswerCache::new(1024 * 1024));
    let client = TestClient::new(app_of(
        api,
        Arc::new(LineageStore::in_memory()),
        Arc::default(),
    ));
    (served, client)
}

async fn json(resp: poem::test::TestResponse) -> Value {
    resp.json().await.value().deserialize()
}

/// Publishes `first` again a minute later as run `run-2`, and has `served` load it.
async fn publish_newer(
    store: &MemoryStore,
    served: &ServedStore,
    first: tributary_rankings::Publication,
) {
    let newer = tributary_rankings::Publication {
        computed_at: first.computed_at + chrono::Duration::seconds(60),
        run_id: "run-2".into(),
        ..first
    };
    store.publish(&newer).await.unwrap();
    served.refresh().await.unwrap();
}

#[tokio::test]
async fn memory_answers_equal_the_store_answers_and_need_no_store() {
    let store = Arc::new(MemoryStore::new());
    store.publish(&publication()).await.unwrap();
    let direct = TestClient::new(app(store.clone()));
    let (_, client) = served(store.clone()).await;
    let mut expected = Vec::new();
    for path in PATHS {
        let want = direct.get(path).send().await;
        want.assert_status_is_ok();
        expected.push(json(want).await);
    }
    // The store goes away: every ranking and detail read is still answered, identically.
    store.set_unavailable(true);
    for (path, want) in PATHS.iter().zip(expected) {
        let got = client.get(*path).send().await;
        got.assert_status_is_ok();
        assert_eq!(json(got).await, want, "{path}");
    }
}

#[tokio::test]
async fn validators_follow_the_publication() {
    let store = Arc::new(MemoryStore::new());
    let first = publication();
    store.publish(&first).await.unwrap();
    let (served, client) = served(store.clone()).await;

    let mut tags = std::collections::BTreeSet::new();
    for path in PATHS {
        let resp = client.get(path).send().await;
        resp.assert_status_is_ok();
        resp.assert_header(header::CACHE_CONTROL, crate::serving::CACHE_CONTROL);
        let tag = resp.0.headers()[header::ETAG].to_str().unwrap().to_string();
        assert!(tags.insert(tag.clone()), "{path}: one tag per request");

        // Revalidation: 304, no body, the same tag.
        let again = client
            .get(path)
            .header(header::IF_NONE_MATCH, &tag)
            .send()
            .await;
        again.assert_status(StatusCode::NOT_MODIFIED);
        again.assert_header(header::ETAG, &tag);
        assert!(again.0.into_body().into_bytes().await.unwrap().is_empty());
        // Another tag is not a match.
        client
            .get(path)
            .header(header::IF_NONE_MATCH, "\"0-0\"")
            .send()
            .await
            .assert_status_is_ok();
    }

    // A newer publication: the old tags no longer match, the answers carry new ones.
    publish_newer(&store, &served, first).await;
    let path = PATHS[0];
    let old_tags: Vec<String> = tags.into_iter().collect();
    let resp = client
        .get(path)
        .header(header::IF_NONE_MATCH, old_tags.join(", "))
        .send()
        .await;
    resp.assert_status_is_ok();
    let tag = resp.0.headers()[header::ETAG].to_str().unwrap().to_string();
    assert!(!old_tags.contains(&tag));
    assert_eq!(json(resp).await["publication"]["run_id"], "run-2");

    // Not tagged: errors, time travel, what is not read from the publication alone.
    for path in [
        "/v1/cities/12345",
        "/v1/rankings/cities?as_of=2026-03-01T00:00:00Z",
        "/v1/completeness",
        "/healthz",
    ] {
        let resp = client.get(path).send().await;
        assert!(
            resp.0.headers().get(header::ETAG).is_none(),
            "{path}: {}",
            resp.0.status()
        );
    }
}

#[tokio::test]
async fn metrics_tell_what_is_held_in_memory() {
    let store = Arc::new(MemoryStore::new());
    let p = publication();
    store.publish(&p).await.unwrap();
    let (served, client) = served(store.clone()).await;
    for _ in 0..3 {
        client.get(PATHS[0]).send().await.assert_status_is_ok();
    }
    store.set_unavailable(true);
    assert!(served.refresh().await.is_err());
    let resp = client.get("/metrics").send().await;
    resp.assert_status_is_ok();
    let text = resp.0.into_body().into_string().await.unwrap();
    for line in [
        format!(
            "tributary_api_served_publication_rows {}",
            p.rows().ranking_rows()
        ),
        "tributary_api_served_publication_loads_total 1".to_string(),
        "tributary_api_served_publication_refresh_failures_total 1".to_string(),
        "tributary_api_answer_cache_lookups_total{outcome=\"hit\"} 2".to_string(),
        "tributary_api_answer_cache_lookups_total{outcome=\"miss\"} 1".to_string(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
    }
}

#[tokio::test]
async fn rendered_answers_are_sent_again_until_a_newer_publication() {
    let store = Arc::new(MemoryStore::new());
    let first = publication();
    store.publish(&first).await.unwrap();
    let (served, client) = served(store.clone()).await;
    let parts = |resp: poem::test::TestResponse| async move {
        resp.assert_status_is_ok();
        let headers = resp.0.headers().clone();
        let body = resp.0.into_body().into_bytes().await.unwrap();
        (headers, body)
    };
    let mut first_tags = Vec::new();
    for path in PATHS {
        let (rendered_headers, rendered) = parts(client.get(path).send().await).await;
        first_tags.push(rendered_headers[header::ETAG].clone());
        // Sent again from the cache even with the store gone: the same bytes and headers.
        store.set_unavailable(true);
        let (again_headers, again) = parts(client.get(path).send().await).await;
        store.set_unavailable(false);
        assert_eq!(again, rendered, "{path}");
        for name in [header::ETAG, header::CONTENT_TYPE, header::CACHE_CONTROL] {
            assert_eq!(
                again_headers.get(&name),
                rendered_headers.get(&name),
                "{path}: {name}"
            );
        }
    }

    // A newer publication: no answer of the first is sent again.
    publish_newer(&store, &served, first).await;
    for (path, first_tag) in PATHS.iter().zip(first_tags) {
        let resp = client.get(*path).send().await;
        resp.assert_status_is_ok();
        assert_ne!(resp.0.headers()[header::ETAG], first_tag, "{path}");
        if path.starts_with("/v1/rankings/") {
            assert_eq!(json(resp).await["publication"]["run_id"], "run-2", "{path}");
        }
    }
}

#[tokio::test]
async fn ready_while_clickhouse_is_down_as_long_as_a_publication_is_held() {
    let store = Arc::new(MemoryStore::new());
    // Nothing held and the store down: not ready.
    let empty = Arc::new(ServedStore::new(store.clone()));
    let client = TestClient::new(app_of(
        RankingsApi::new(store.clone()).serving(empty),
        Arc::new(LineageStore::in_memory()),
        Arc::default(),
    ));
    store.set_unavailable(true);
    client
        .get("/readyz")
        .send()
        .await
        .assert_status(StatusCode::SERVICE_UNAVAILABLE);

    // A publication held: ready with the store down, and the check says what it serves.
    store.set_unavailable(false);
    store.publish(&publication()).await.unwrap();
    let (_, client) = served(store.clone()).await;
    store.set_unavailable(true);
    let resp = client.get("/readyz").send().await;
    resp.assert_status_is_ok();
    let body = resp.0.into_body().into_string().await.unwrap();
    assert!(
        body.contains("not answering") && body.contains("from memory"),
        "{body}"
    );
}

#[tokio::test]
async fn an_announced_publication_is_swapped_in_before_the_next_refresh() {
    let store = Arc::new(MemoryStore::new());
    let first = publication();
    store.publish(&first).await.unwrap();
    let served = Arc::new(ServedStore::new(store.clone()));
    let announced = Arc::new(tokio::sync::Notify::new());
    let shutdown = tokio_util::sync::CancellationToken::new();
    // An hour between refreshes: only the first one and the announcement can load anything.
    let refreshing = tokio::spawn(crate::serving::keep_fresh(
        served.clone(),
        std::time::Duration::from_secs(3600),
        Some(announced.clone()),
        shutdown.clone(),
    ));
    let held_run = |served: &ServedStore| served.served().map(|p| p.row().run_id.clone());
    for _ in 0..500 {
        if held_run(&served).is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(held_run(&served).as_deref(), Some(first.run_id.as_str()));

    let newer = tributary_rankings::Publication {
        computed_at: first.computed_at + chrono::Duration::seconds(60),
        run_id: "run-2".into(),
        ..first
    };
    store.publish(&newer).await.unwrap();
    announced.notify_one();
    for _ in 0..500 {
        if held_run(&served).as_deref() == Some("run-2") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(held_run(&served).as_deref(), Some("run-2"));
    shutdown.cancel();
    refreshing.await.unwrap();
}
