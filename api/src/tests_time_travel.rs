//! Time travel on iceberg's `MemoryCatalog`: `?as_of=` answers equal what a publication of the
//! lake at that moment answers, and `/v1/snapshots` lists what can be travelled to.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use iceberg::{Catalog, NamespaceIdent, TableIdent};
use poem::http::StatusCode;
use poem::test::{TestClient, TestResponse};
use serde_json::Value;
use tributary_marts::job::compute;
use tributary_rankings::{MemoryStore, Publication, PublicationWriter};
use tributary_raw::schema::RawTable;
use tributary_raw::testing::{Ev, city, land, memory_lake, sale, salesman};

use crate::lake::Lake;
use crate::{app, app_with_lake};

const ALL: [RawTable; 5] = RawTable::DATA_TABLES;

fn first_sales() -> Vec<Ev> {
    vec![
        sale("c", 1, (10, 0), Some(100), Some(7), Some(1000)).sold_at("2026-01-05T10:00:00Z"),
        sale("c", 2, (11, 1), Some(200), Some(8), Some(3000)).sold_at("2026-02-05T10:00:00Z"),
        sale("c", 3, (12, 2), Some(100), Some(8), Some(2500)).sold_at("2026-02-07T10:00:00Z"),
    ]
}

/// Lands the first round in every ranking table it uses; returns the latest commit time.
pub(crate) async fn land_first(lake: &dyn Catalog) -> DateTime<Utc> {
    land(lake, RawTable::PgSale, &first_sales()).await;
    land_first_masters(lake).await
}

/// The first round's salesmen and cities; returns the latest commit time of the three tables.
async fn land_first_masters(lake: &dyn Catalog) -> DateTime<Utc> {
    land(
        lake,
        RawTable::PgSalesman,
        &[
            salesman("r", 100, (1, 0), "S1", "Ana"),
            salesman("r", 200, (2, 1), "S2", "Bruno"),
        ],
    )
    .await;
    land(
        lake,
        RawTable::PgCity,
        &[
            city("r", 7, (1, 0), "Campinas", "SP"),
            city("r", 8, (2, 1), "Santos", "SP"),
        ],
    )
    .await;
    let mut latest = 0;
    for table in [RawTable::PgSale, RawTable::PgSalesman, RawTable::PgCity] {
        let ident = TableIdent::new(NamespaceIdent::new("raw".into()), table.name().into());
        let t = lake.load_table(&ident).await.unwrap();
        latest = latest.max(t.metadata().current_snapshot().unwrap().timestamp_ms());
    }
    DateTime::from_timestamp_millis(latest).unwrap()
}

/// A store holding one publication of the lake as it is now, as a marts run would write it.
pub(crate) async fn published(lake: &dyn Catalog) -> Arc<MemoryStore> {
    let (snapshots, rankings) = compute(lake, "raw").await.unwrap();
    let store = Arc::new(MemoryStore::new());
    store
        .publish(&Publication::of_periods(
            snapshots,
            "run-1",
            Utc::now(),
            rankings,
        ))
        .await
        .unwrap();
    store
}

async fn body(resp: TestResponse) -> Value {
    resp.json().await.value().deserialize()
}

async fn get(client: &TestClient<impl poem::Endpoint>, uri: &str) -> (StatusCode, Value) {
    let resp = client.get(uri).send().await;
    let status = resp.0.status();
    (status, body(resp).await)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[tokio::test]
async fn rankings_as_of_an_earlier_time_equal_a_publication_of_that_moment() {
    let lake = memory_lake(&ALL).await;
    let t1 = land_first(lake.as_ref()).await;
    // Iceberg commit times are milliseconds: the second round must be visibly later.
    tokio::time::sleep(Duration::from_millis(20)).await;
    land(
        lake.as_ref(),
        RawTable::PgSale,
        &[
            sale("d", 2, (20, 3), None, None, None),
            sale("c", 4, (21, 4), Some(300), Some(7), Some(90_000)).sold_at("2026-02-09T10:00:00Z"),
        ],
    )
    .await;

    // The oracle: a lake holding only the first round, published as the marts would.
    let oracle_lake = memory_lake(&ALL).await;
    land_first(oracle_lake.as_ref()).await;
    let oracle_store = published(oracle_lake.as_ref()).await;
    let oracle = TestClient::new(app(oracle_store));

    // No publication in ClickHouse at all: as_of does not need one.
    let api = TestClient::new(app_with_lake(
        Arc::new(MemoryStore::new()),
        Arc::new(Lake::from_catalog(lake.clone(), "raw")),
    ));
    let at = rfc3339(t1);
    for path in [
        "/v1/rankings/salesmen",
        "/v1/rankings/cities",
        "/v1/rankings/salesmen?month=2026-02",
        "/v1/rankings/cities?month=2026-02&salesmen=1",
        "/v1/rankings/cities/8/salesmen",
    ] {
        let sep = if path.contains('?') { '&' } else { '?' };
        let (status, travelled) = get(&api, &format!("{path}{sep}as_of={at}")).await;
        assert_eq!(status, StatusCode::OK, "{path}: {travelled}");
        let (_, expected) = get(&oracle, path).await;
        assert_eq!(travelled["items"], expected["items"], "{path}");
        assert_eq!(travelled["period"], expected["period"], "{path}");
        let publication = &travelled["publication"];
        assert_eq!(publication["run_id"], "on-demand", "{path}");
        let as_of: DateTime<Utc> = publication["as_of"].as_str().unwrap().parse().unwrap();
        assert_eq!(as_of, t1, "{path}");
        assert_eq!(publication["sales"], expected["publication"]["sales"]);
        assert!(
            publication["publication_id"]
                .as_str()
                .unwrap()
                .starts_with("pg_sale:"),
            "{publication}"
        );
    }

    // As of now: the second round is in (sale 2 deleted, salesman 300 on top).
    let (status, now) = get(
        &api,
        &format!("/v1/rankings/salesmen?as_of={}", rfc3339(Utc::now())),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(now["items"][0]["salesman_id"], 300, "{now}");
    assert_eq!(now["publication"]["sales"], 3);

    // Before the first snapshot: 200, empty rankings, every snapshot null.
    let before = rfc3339(t1 - chrono::Duration::days(1));
    let (status, empty) = get(&api, &format!("/v1/rankings/cities?as_of={before}")).await;
    assert_eq!(status, StatusCode::OK, "{empty}");
    assert_eq!(empty["items"], Value::Array(vec![]));
    assert_eq!(empty["total"], 0);
    assert!(
        empty["publication"]["lake_snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["snapshot_id"].is_null()),
        "{empty}"
    );

    // The snapshots to travel to.
    let (status, listed) = get(&api, "/v1/snapshots").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let tables = listed["tables"].as_array().unwrap();
    assert_eq!(tables[0]["table"], "pg_sale");
    let sale_snapshots = tables[0]["snapshots"].as_array().unwrap();
    assert_eq!(sale_snapshots.len(), 2);
    assert_eq!(sale_snapshots[0]["operation"], "append");
    assert_eq!(sale_snapshots[1]["summary"]["added-records"], "2");
    assert_eq!(
        tables[0]["current_snapshot_id"],
        sale_snapshots[1]["snapshot_id"]
    );
}

#[tokio::test]
async fn bad_times_are_400_naming_as_of_and_a_missing_lake_is_503() {
    let lake = memory_lake(&ALL).await;
    let api = TestClient::new(app_with_lake(
        Arc::new(MemoryStore::new()),
        Arc::new(Lake::from_catalog(lake, "raw")),
    ));
    for bad in ["yesterday", "2026-02-30T00:00:00Z", "2026-01-01"] {
        let (status, problem) = get(&api, &format!("/v1/rankings/salesmen?as_of={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {problem}");
        assert_eq!(problem["parameter"], "as_of", "{problem}");
        assert_eq!(problem["type"], "urn:tributary:problem:invalid-parameter");
    }

    // Tables not created yet (the lander never ran): the lake is not there yet.
    let half = memory_lake(&[RawTable::PgSale]).await;
    let api = TestClient::new(app_with_lake(
        Arc::new(MemoryStore::new()),
        Arc::new(Lake::from_catalog(half, "raw")),
    ));
    let (status, problem) = get(&api, "/v1/rankings/cities?as_of=2026-01-01T00:00:00Z").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert_eq!(problem["type"], "urn:tributary:problem:lake-unavailable");
    let (status, _) = get(&api, "/v1/snapshots").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    // Readiness reports the lake, but only ClickHouse gates it: rankings serve without a lake.
    let (status, ready) = get(&api, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["checks"][1]["name"], "lake", "{ready}");
    assert_eq!(ready["checks"][1]["ok"], true, "{ready}");
    let elsewhere = TestClient::new(app_with_lake(
        Arc::new(MemoryStore::new()),
        Arc::new(Lake::from_catalog(memory_lake(&ALL).await, "not_there")),
    ));
    let (status, ready) = get(&elsewhere, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["status"], "ready");
    let lake = &ready["checks"][1];
    assert_eq!(
        (lake["ok"].as_bool(), lake["required"].as_bool()),
        (Some(false), Some(false))
    );
    assert!(
        lake["detail"].as_str().unwrap().contains("not_there"),
        "{ready}"
    );

    // A server without a lake.
    let api = TestClient::new(app(Arc::new(MemoryStore::new())));
    let (status, problem) = get(&api, "/v1/rankings/salesmen?as_of=2026-01-01T00:00:00Z").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert_eq!(problem["type"], "urn:tributary:problem:lake-unavailable");
}

#[tokio::test]
async fn as_of_and_snapshots_are_documented() {
    let doc: Value = serde_json::from_str(&crate::openapi_json()).unwrap();
    for path in [
        "/v1/rankings/cities",
        "/v1/rankings/salesmen",
        "/v1/rankings/cities/{city_id}/salesmen",
    ] {
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        let as_of = params.iter().find(|p| p["name"] == "as_of").expect(path);
        assert!(as_of["description"].as_str().unwrap().contains("RFC 3339"));
    }
    assert!(doc["paths"]["/v1/snapshots"]["get"].is_object());
}

#[tokio::test]
async fn as_of_snapshot_reads_the_lake_when_that_snapshot_was_committed() {
    let lake = memory_lake(&ALL).await;
    land(lake.as_ref(), RawTable::PgSale, &first_sales()).await;
    // Commit times are milliseconds: the masters must come visibly after the sales.
    tokio::time::sleep(Duration::from_millis(20)).await;
    land_first_masters(lake.as_ref()).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    land(
        lake.as_ref(),
        RawTable::PgSale,
        &[sale("c", 4, (21, 4), Some(300), Some(7), Some(90_000))],
    )
    .await;

    let oracle_lake = memory_lake(&ALL).await;
    land_first(oracle_lake.as_ref()).await;
    let oracle_store = published(oracle_lake.as_ref()).await;
    let oracle = TestClient::new(app(oracle_store));
    let api = TestClient::new(app_with_lake(
        Arc::new(MemoryStore::new()),
        Arc::new(Lake::from_catalog(lake.clone(), "raw")),
    ));

    let (_, listed) = get(&api, "/v1/snapshots").await;
    let first_of = |table: &str| {
        listed["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == table)
            .unwrap()["snapshots"][0]["snapshot_id"]
            .as_i64()
            .unwrap()
    };
    // pg_city was landed last in the first round: its first snapshot sees the whole round,
    // the later pg_sale append not.
    let city_snapshot = first_of("pg_city");
    for path in [
        "/v1/rankings/salesmen",
        "/v1/rankings/cities?month=2026-02",
        "/v1/salesmen/200",
        "/v1/cities/8",
    ] {
        let sep = if path.contains('?') { '&' } else { '?' };
        let (status, travelled) =
            get(&api, &format!("{path}{sep}as_of_snapshot={city_snapshot}")).await;
        assert_eq!(status, StatusCode::OK, "{path}: {travelled}");
        let (_, expected) = get(&oracle, path).await;
        for field in [
            "items", "period", "rank", "revenue", "months", "cities", "salesmen",
        ] {
            assert_eq!(travelled[field], expected[field], "{path} {field}");
        }
        assert_eq!(travelled["publication"]["as_of_snapshot"], city_snapshot);
        assert_eq!(travelled["publication"]["run_id"], "on-demand");
    }

    // pg_sale's first snapshot came before any salesman or city: those tables read as empty.
    let sale_snapshot = first_of("pg_sale");
    let (status, early) = get(
        &api,
        &format!("/v1/rankings/salesmen?as_of_snapshot={sale_snapshot}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{early}");
    let pins = early["publication"]["lake_snapshots"].as_array().unwrap();
    assert_eq!(pins[0]["snapshot_id"], sale_snapshot, "{early}");
    assert!(
        pins[1..].iter().all(|p| p["snapshot_id"].is_null()),
        "{early}"
    );
    assert!(
        early["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["resolved"] == false),
        "{early}"
    );

    let (status, problem) = get(&api, "/v1/rankings/cities?as_of_snapshot=42").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    assert_eq!(problem["type"], "urn:tributary:problem:snapshot-not-found");
    assert_eq!(problem["parameter"], "as_of_snapshot");
    let (status, problem) = get(
        &api,
        &format!("/v1/rankings/cities?as_of_snapshot={sale_snapshot}&as_of=2026-01-01T00:00:00Z"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["parameter"], "as_of_snapshot");
}

/// Lake requests take turns: past `lake_concurrency` running, one that waits longer than
/// `lake_queue_ms` is a 429 `busy` problem; and no request outlives `request_timeout_ms` (503
/// `timeout`, its work dropped).
#[tokio::test]
async fn lake_requests_take_turns_and_none_runs_unbounded() {
    use crate::config::LimitSettings;
    use crate::error::ProblemResponse;
    use crate::routes::RankingsApi;
    use poem::IntoResponse;

    let lake = memory_lake(&ALL).await;
    land_first(lake.as_ref()).await;
    let lake = Arc::new(Lake::from_catalog(lake, "raw"));
    let api = RankingsApi::with_lake(Arc::new(MemoryStore::new()), lake.clone()).with_limits(
        LimitSettings {
            lake_concurrency: 1,
            lake_queue_ms: 20,
            ..LimitSettings::default()
        },
    );
    let turn = api.lake().await.unwrap();
    let busy = api.lake().await.err().expect("the one turn is taken");
    let resp = ProblemResponse::from(busy).into_response();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "1");
    let problem: Value =
        serde_json::from_slice(&resp.into_body().into_vec().await.unwrap()).unwrap();
    assert_eq!(problem["type"], "urn:tributary:problem:busy");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("lake_concurrency")
    );
    drop(turn);
    assert!(api.lake().await.is_ok(), "the turn is free again");

    // A limit of nothing: the as_of computation cannot finish in time.
    let at = rfc3339(Utc::now());
    let timed = TestClient::new(crate::app_of(
        RankingsApi::with_lake(Arc::new(MemoryStore::new()), lake).with_limits(LimitSettings {
            request_timeout_ms: 0,
            ..LimitSettings::default()
        }),
        Arc::new(crate::lineage::store::LineageStore::in_memory()),
        Arc::default(),
    ));
    let (status, problem) = get(&timed, &format!("/v1/rankings/salesmen?as_of={at}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert_eq!(problem["type"], "urn:tributary:problem:timeout");
}

/// A lake computation that needs more than `lake_memory_mb` leaves it is refused with a 503
/// `lake-memory` problem naming the setting (the process does not grow past it), and the same
/// request fits in the default budget.
#[tokio::test]
async fn a_lake_computation_over_its_memory_budget_is_refused_by_name() {
    use crate::routes::RankingsApi;

    let lake = memory_lake(&ALL).await;
    land_first(lake.as_ref()).await;
    let at = rfc3339(Utc::now());
    let client = |lake: Lake| {
        TestClient::new(crate::app_of(
            RankingsApi::with_lake(Arc::new(MemoryStore::new()), Arc::new(lake)),
            Arc::new(crate::lineage::store::LineageStore::in_memory()),
            Arc::default(),
        ))
    };
    let tight = client(
        Lake::from_catalog(lake.clone(), "raw")
            .with_memory_limit(Some(1024))
            .unwrap(),
    );
    for path in [
        format!("/v1/rankings/salesmen?as_of={at}"),
        format!("/v1/rankings/cities/8/provenance?as_of={at}"),
    ] {
        let (status, problem) = get(&tight, &path).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {problem}");
        assert_eq!(
            problem["type"], "urn:tributary:problem:lake-memory",
            "{path}"
        );
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("limits.lake_memory_mb"), "{detail}");
    }

    let default_budget = crate::config::LimitSettings::default().lake_memory_mb << 20;
    let ample = client(
        Lake::from_catalog(lake, "raw")
            .with_memory_limit(Some(default_budget))
            .unwrap(),
    );
    let (status, answer) = get(&ample, &format!("/v1/rankings/salesmen?as_of={at}")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["items"].as_array().map(Vec::len),
        Some(2),
        "{answer}"
    );
}

/// An `as_of` that resolves to the snapshots of a retained publication is answered from it
/// (no lake computation: its `run_id` is the marts run's), with the same numbers a computation
/// gives; a moment no publication covers is computed, and kept for the next request.
/// Lands a sale that makes salesman 300 the top seller, visibly after the commits before it
/// (Iceberg commit times are milliseconds).
async fn land_top_seller_later(lake: &dyn Catalog) {
    tokio::time::sleep(Duration::from_millis(20)).await;
    land(
        lake,
        RawTable::PgSale,
        &[sale("c", 4, (21, 4), Some(300), Some(7), Some(90_000)).sold_at("2026-02-09T10:00:00Z")],
    )
    .await;
}

#[tokio::test]
async fn as_of_a_published_moment_is_answered_from_that_publication() {
    let lake = memory_lake(&ALL).await;
    let t1 = land_first(lake.as_ref()).await;
    let store = published(lake.as_ref()).await;
    land_top_seller_later(lake.as_ref()).await;
    let api = TestClient::new(app_with_lake(
        store,
        Arc::new(Lake::from_catalog(lake.clone(), "raw")),
    ));
    let computed = TestClient::new(app_with_lake(
        Arc::new(MemoryStore::new()),
        Arc::new(Lake::from_catalog(lake.clone(), "raw")),
    ));
    for path in [
        "/v1/rankings/salesmen",
        "/v1/rankings/cities?month=2026-02&salesmen=1",
        "/v1/salesmen/200",
    ] {
        let sep = if path.contains('?') { '&' } else { '?' };
        let uri = format!("{path}{sep}as_of={}", rfc3339(t1));
        let (status, retained) = get(&api, &uri).await;
        assert_eq!(status, StatusCode::OK, "{path}: {retained}");
        assert_eq!(retained["publication"]["run_id"], "run-1", "{path}");
        let as_of: DateTime<Utc> = retained["publication"]["as_of"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(as_of, t1);
        let (_, on_demand) = get(&computed, &uri).await;
        assert_eq!(on_demand["publication"]["run_id"], "on-demand", "{path}");
        assert_eq!(
            retained["publication"]["publication_id"],
            on_demand["publication"]["publication_id"]
        );
        for field in ["items", "period", "salesman", "cities", "months"] {
            assert_eq!(retained[field], on_demand[field], "{path}: {field}");
        }
    }
    // Now: no publication of these snapshots, so it is computed.
    let (status, now) = get(
        &api,
        &format!("/v1/rankings/salesmen?as_of={}", rfc3339(Utc::now())),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{now}");
    assert_eq!(now["publication"]["run_id"], "on-demand");
    assert_eq!(now["items"][0]["salesman_id"], 300, "{now}");
}

/// The tables' metadata read for one `as_of` answers the next ones within a second, but never
/// a time after that reading: a commit that landed since is seen by an `as_of` after it.
#[tokio::test]
async fn an_as_of_after_the_last_metadata_reading_sees_what_landed_since() {
    let lake = memory_lake(&ALL).await;
    land_first(lake.as_ref()).await;
    let api = TestClient::new(app_with_lake(
        Arc::new(MemoryStore::new()),
        Arc::new(Lake::from_catalog(lake.clone(), "raw")),
    ));
    let before = rfc3339(Utc::now());
    let top = |answer: &Value| answer["items"][0]["salesman_id"].clone();
    let (status, first) = get(&api, &format!("/v1/rankings/salesmen?as_of={before}")).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(top(&first), 100, "{first}");
    land_top_seller_later(lake.as_ref()).await;
    let after = rfc3339(Utc::now());
    let (status, second) = get(&api, &format!("/v1/rankings/salesmen?as_of={after}")).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(top(&second), 300, "{second}");
    // The earlier time, within the second: still the lake before the second round.
    let (_, again) = get(&api, &format!("/v1/rankings/salesmen?as_of={before}")).await;
    assert_eq!(again["items"], first["items"]);
    assert_eq!(
        again["publication"]["publication_id"],
        first["publication"]["publication_id"]
    );
}
#[test]
fn the_computed_cache_keeps_the_most_recently_used() {
    use crate::lake::ComputedCache;
    let store = || -> Arc<dyn tributary_rankings::RankingQueries> { Arc::new(MemoryStore::new()) };
    let cache = ComputedCache::new(2);
    cache.put("a".into(), store());
    cache.put("b".into(), store());
    assert!(cache.get("a").is_some());
    cache.put("c".into(), store());
    assert_eq!(cache.ids(), ["a", "c"]);
    assert!(cache.get("b").is_none());
    cache.put("a".into(), store());
    assert_eq!(cache.ids(), ["c", "a"]);
    let none = ComputedCache::new(0);
    none.put("a".into(), store());
    assert!(none.get("a").is_none() && none.ids().is_empty());
}

/// Lake computations run on a thread of their own at nice 10, so they cannot take the cores
/// from the requests answered from memory; one whose request is dropped stops.
#[tokio::test]
async fn lake_computations_run_at_a_lower_priority_and_stop_with_their_request() {
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::lake::on_lake_thread;

    let (nice, thread) = on_lake_thread(async {
        let nice = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
        (nice.ok(), std::thread::current().name().map(str::to_string))
    })
    .await
    .unwrap();
    assert_eq!(nice, Some(10), "the lake thread's nice value");
    assert_eq!(thread.as_deref(), Some("lake"));
    let here = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
    assert!(
        here < 10,
        "the request's own thread keeps its priority ({here})"
    );

    let finished = Arc::new(AtomicBool::new(false));
    let flag = finished.clone();
    let request = on_lake_thread(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        flag.store(true, Ordering::SeqCst);
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(50), request)
            .await
            .is_err(),
        "the computation takes 300 ms"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !finished.load(Ordering::SeqCst),
        "the computation went on after its request was dropped"
    );
}
