//! The API over a real ClickHouse (127.0.0.1:8123 unless `TRIBUTARY_CLICKHOUSE__URL` says
//! otherwise): rankings written by the marts' store are read back through HTTP, unchanged.
//! Each test has its own database. Fails — never skips — when ClickHouse is not running:
//! run `make test`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use chrono::DateTime;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tributary_api::ApiConfig;
use tributary_common::ClickHouseSettings;
use tributary_rankings::ranking::{
    CityInfo, CitySalesmanTotals, CityTotals, SalesmanInfo, SalesmanTotals, Summary, Totals,
    rank_all,
};
use tributary_rankings::{
    ClickHouseStore, LakeSnapshot, LakeSnapshots, Money, Month, Publication, PublicationWriter,
    RankingQueries,
};

fn settings(test: &str) -> ClickHouseSettings {
    #[derive(Default, serde::Serialize, serde::Deserialize)]
    #[serde(default)]
    struct Env {
        clickhouse: ClickHouseSettings,
    }
    let env = std::env::vars().filter(|(k, _)| k.starts_with("TRIBUTARY_CLICKHOUSE__"));
    let mut s = tributary_common::load::<Env>(None, env).unwrap().clickhouse;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    s.database = format!("api_test_{test}_{}_{nanos}", std::process::id());
    s
}

async fn store(settings: &ClickHouseSettings) -> ClickHouseStore {
    let store = ClickHouseStore::new(settings).unwrap();
    if let Err(e) = store.ping().await {
        panic!(
            "ClickHouse is not reachable at {} ({e}). These integration tests need the local \
             stack: run `make test` (it starts ClickHouse), or point TRIBUTARY_CLICKHOUSE__URL \
             at a running server.",
            settings.url
        );
    }
    store.ensure_schema().await.unwrap();
    store
}

/// 30 cities and 40 salesmen with ties, unresolved names and cents, so paging and ordering
/// are exercised.
fn publication(run: &str, secs: i64) -> Publication {
    let mut totals = Totals::default();
    for c in 1..=30i64 {
        let cents = (c % 7) * 100_000 + 5; // ties across cities
        totals.cities.push(CityTotals {
            city_id: c,
            info: (c % 10 != 0).then(|| CityInfo {
                name: format!("City {c}"),
                state: "MG".into(),
            }),
            revenue: Money::from_cents(cents),
            sales: c as u64,
        });
        for s in 1..=3i64 {
            let id = (c + s) % 40 + 1;
            totals.city_salesmen.push(CitySalesmanTotals {
                city_id: c,
                salesman: SalesmanTotals {
                    salesman_id: id,
                    info: (id % 9 != 0).then(|| SalesmanInfo {
                        name: format!("Salesman {id}"),
                        code: format!("S{id}"),
                    }),
                    revenue: Money::from_cents(cents / 3 + s),
                    sales: s as u64,
                },
            });
        }
    }
    for id in 1..=40i64 {
        totals.salesmen.push(SalesmanTotals {
            salesman_id: id,
            info: (id % 9 != 0).then(|| SalesmanInfo {
                name: format!("Salesman {id}"),
                code: format!("S{id}"),
            }),
            revenue: Money::from_cents((id % 5) * 12_345_678 + 1),
            sales: id as u64,
        });
    }
    totals.summary = Summary {
        sales: 465,
        revenue: Money::from_cents(987_654_321),
        unresolved_sales: 3,
        unresolved_revenue: Money::from_cents(100),
        sales_without_city: 1,
        sales_without_salesman: 2,
        sales_without_month: 4,
    };
    let snapshots = LakeSnapshots(vec![
        LakeSnapshot {
            table: "pg_sale".into(),
            snapshot_id: Some(7_000_000_000_000_000_001),
        },
        LakeSnapshot {
            table: "pg_salesman".into(),
            snapshot_id: Some(-2),
        },
        LakeSnapshot {
            table: "pg_city".into(),
            snapshot_id: Some(3),
        },
    ]);
    Publication::new(
        snapshots,
        run,
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap(),
        rank_all(totals),
    )
    .with_months(BTreeMap::from([(march(), rank_all(march_totals()))]))
}

fn march() -> Month {
    "2026-03".parse().unwrap()
}

/// March alone: two cities (tied, so the lower id leads) and two salesmen.
fn march_totals() -> Totals {
    let salesman = |id: i64, cents: i64| SalesmanTotals {
        salesman_id: id,
        info: Some(SalesmanInfo {
            name: format!("Salesman {id}"),
            code: format!("S{id}"),
        }),
        revenue: Money::from_cents(cents),
        sales: 1,
    };
    let city = |id: i64| CityTotals {
        city_id: id,
        info: Some(CityInfo {
            name: format!("City {id}"),
            state: "SP".into(),
        }),
        revenue: Money::from_cents(500),
        sales: 1,
    };
    Totals {
        cities: vec![city(5), city(2)],
        city_salesmen: vec![
            CitySalesmanTotals {
                city_id: 2,
                salesman: salesman(9, 500),
            },
            CitySalesmanTotals {
                city_id: 5,
                salesman: salesman(4, 500),
            },
        ],
        salesmen: vec![salesman(4, 500), salesman(9, 500)],
        summary: Summary {
            sales: 2,
            revenue: Money::from_cents(1000),
            ..Summary::default()
        },
    }
}

struct Server {
    base: String,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), tributary_api::ApiError>>,
}

async fn start(settings: &ClickHouseSettings) -> Server {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = ApiConfig {
        listen: "unused".into(),
        clickhouse: settings.clone(),
        ..ApiConfig::default()
    };
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(tributary_api::run(listener, config, shutdown.clone()));
    Server {
        base,
        shutdown,
        handle,
    }
}

impl Server {
    async fn get(&self, path: &str) -> (u16, String, Value) {
        let resp = reqwest::get(format!("{}{path}", self.base)).await.unwrap();
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, content_type, resp.json().await.unwrap())
    }

    /// `get` until the answer is from the publication of `run_id`: the API swaps in a newer
    /// publication within `serving.refresh_ms` of its appearing.
    async fn get_from(&self, path: &str, run_id: &str) -> (u16, String, Value) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let answer = self.get(path).await;
            if answer.2["publication"]["run_id"] == run_id || std::time::Instant::now() > deadline {
                return answer;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.unwrap().unwrap();
    }
}

fn money(cents: i64) -> String {
    Money::from_cents(cents).to_string()
}

async fn drop_database(store: &ClickHouseStore) {
    store
        .client()
        .query(&format!("DROP DATABASE IF EXISTS {}", store.database()))
        .execute()
        .await
        .unwrap();
}

#[tokio::test]
async fn rankings_written_to_clickhouse_read_back_equal_through_the_api() {
    let settings = settings("equal");
    let store = store(&settings).await;
    let server = start(&settings).await;

    // Nothing published yet.
    let (status, content_type, problem) = server.get("/v1/rankings/salesmen").await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(problem["type"], "urn:tributary:problem:not-published");

    let p = publication("run-1", 0);
    store.publish(&p).await.unwrap();

    // The nationwide ranking, paged through in 7s, equals the computed one.
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let (status, _, page) = server
            .get(&format!("/v1/rankings/salesmen?limit=7&offset={offset}"))
            .await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["publication"]["publication_id"], p.id);
        assert_eq!(page["total"], 40);
        let rows = page["items"].as_array().unwrap().clone();
        if rows.is_empty() {
            break;
        }
        offset += rows.len();
        seen.extend(rows);
    }
    let expected: Vec<Value> = p
        .rankings
        .salesmen
        .iter()
        .map(|r| {
            json!({
                "rank": r.rank,
                "salesman_id": r.row.salesman_id,
                "name": r.row.info.as_ref().map(|i| i.name.clone()),
                "code": r.row.info.as_ref().map(|i| i.code.clone()),
                "resolved": r.row.info.is_some(),
                "revenue": money(r.row.revenue.cents()),
                "sales": r.row.sales,
            })
        })
        .collect();
    assert_eq!(seen, expected);

    // The city ranking with every salesman embedded equals the computed one.
    let (status, _, page) = server
        .get("/v1/rankings/cities?limit=1000&salesmen=100")
        .await;
    assert_eq!(status, 200, "{page}");
    let expected: Vec<Value> = p
        .rankings
        .cities
        .iter()
        .map(|c| {
            json!({
                "rank": c.rank,
                "city_id": c.city.city_id,
                "name": c.city.info.as_ref().map(|i| i.name.clone()),
                "state": c.city.info.as_ref().map(|i| i.state.clone()),
                "resolved": c.city.info.is_some(),
                "revenue": money(c.city.revenue.cents()),
                "sales": c.city.sales,
                "salesmen_total": c.salesmen.len(),
                "salesmen": c.salesmen.iter().map(|r| json!({
                    "rank": r.rank,
                    "salesman_id": r.row.salesman_id,
                    "name": r.row.info.as_ref().map(|i| i.name.clone()),
                    "code": r.row.info.as_ref().map(|i| i.code.clone()),
                    "resolved": r.row.info.is_some(),
                    "revenue": money(r.row.revenue.cents()),
                    "sales": r.row.sales,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    assert_eq!(page["items"], Value::Array(expected));
    assert_eq!(
        page["publication"]["lake_snapshots"],
        json!([
            {"table": "pg_sale", "snapshot_id": 7_000_000_000_000_000_001i64},
            {"table": "pg_salesman", "snapshot_id": -2},
            {"table": "pg_city", "snapshot_id": 3},
        ])
    );
    assert_eq!(page["publication"]["revenue"], "9876543.21");
    assert_eq!(page["publication"]["run_id"], "run-1");

    // One city's salesmen, second page.
    let top = &p.rankings.cities[0];
    let (status, _, page) = server
        .get(&format!(
            "/v1/rankings/cities/{}/salesmen?limit=2&offset=1",
            top.city.city_id
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    let ids: Vec<i64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["salesman_id"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = top.salesmen[1..3]
        .iter()
        .map(|r| r.row.salesman_id)
        .collect();
    assert_eq!(ids, expected);

    let (status, _, _) = server.get("/readyz").await;
    assert_eq!(status, 200);
    server.stop().await;
    drop_database(&store).await;
}

#[tokio::test]
async fn republishing_the_same_snapshots_shows_no_duplicates() {
    let settings = settings("rerun");
    let store = store(&settings).await;
    let server = start(&settings).await;
    store.publish(&publication("run-1", 0)).await.unwrap();
    store.publish(&publication("run-2", 60)).await.unwrap();

    let (status, _, page) = server
        .get_from("/v1/rankings/salesmen?limit=1000", "run-2")
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["publication"]["run_id"], "run-2");
    assert_eq!(page["items"].as_array().unwrap().len(), 40);
    let (_, _, page) = server.get("/v1/rankings/cities?limit=1000").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 30);

    let final_count: u64 = store
        .client()
        .query(&format!(
            "SELECT toUInt64(count()) FROM {}.salesman_ranking FINAL WHERE period = 'all'",
            store.database()
        ))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(final_count, 40);
    server.stop().await;
    drop_database(&store).await;
}

#[tokio::test]
async fn bad_parameters_are_400_problem_json() {
    let settings = settings("bad_params");
    let store = store(&settings).await;
    let server = start(&settings).await;
    store.publish(&publication("run-1", 0)).await.unwrap();
    for query in ["limit=0", "limit=abc", "limit=100000"] {
        let (status, content_type, problem) =
            server.get(&format!("/v1/rankings/cities?{query}")).await;
        assert_eq!(status, 400, "{query}: {problem}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(problem["type"], "urn:tributary:problem:invalid-parameter");
        assert_eq!(problem["status"], 400);
        assert_eq!(problem["parameter"], "limit");
        assert!(problem["title"].is_string());
        assert!(problem["detail"].as_str().unwrap().contains("limit"));
    }
    server.stop().await;
    drop_database(&store).await;
}

#[tokio::test]
async fn before_the_first_marts_run_the_api_answers_503_not_published() {
    // No schema at all: the database does not exist yet.
    let settings = settings("absent");
    let _ = ClickHouseStore::new(&settings).unwrap();
    let server = start(&settings).await;
    let (status, content_type, problem) = server.get("/v1/rankings/cities").await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(problem["type"], "urn:tributary:problem:not-published");
    let (status, _, _) = server.get("/readyz").await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn monthly_rankings_read_back_through_the_api() {
    let settings = settings("monthly");
    let store = store(&settings).await;
    let server = start(&settings).await;
    store.publish(&publication("run-1", 0)).await.unwrap();

    let (status, _, months) = server.get("/v1/months").await;
    assert_eq!(status, 200, "{months}");
    let listed: Vec<_> = months["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["period"].clone(),
                m["sales"].clone(),
                m["revenue"].clone(),
            )
        })
        .collect();
    assert_eq!(listed, vec![(json!("2026-03"), json!(2), json!("10.00"))]);

    let (status, _, all) = server.get("/v1/rankings/salesmen?limit=1").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["period"]["period"], "all");
    assert_eq!(all["period"]["sales_without_month"], 4);
    assert_eq!(all["total"], 40);

    let (status, _, march) = server.get("/v1/rankings/salesmen?month=2026-03").await;
    assert_eq!(status, 200, "{march}");
    assert_eq!(march["period"]["period"], "2026-03");
    assert_eq!(march["total"], 2);
    let order: Vec<_> = march["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["rank"].clone(),
                s["salesman_id"].clone(),
                s["revenue"].clone(),
            )
        })
        .collect();
    assert_eq!(
        order,
        vec![
            (json!(1), json!(4), json!("5.00")),
            (json!(2), json!(9), json!("5.00"))
        ]
    );

    let (status, _, cities) = server
        .get("/v1/rankings/cities?month=2026-03&salesmen=5")
        .await;
    assert_eq!(status, 200, "{cities}");
    let order: Vec<_> = cities["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["city_id"].clone(),
                c["salesmen"][0]["salesman_id"].clone(),
            )
        })
        .collect();
    assert_eq!(order, vec![(json!(2), json!(9)), (json!(5), json!(4))]);

    let (status, _, in5) = server
        .get("/v1/rankings/cities/5/salesmen?month=2026-03")
        .await;
    assert_eq!(status, 200, "{in5}");
    assert_eq!(in5["city"]["rank"], 2);
    assert_eq!(in5["items"][0]["salesman_id"], 4);
    // City 7 sold, but not in March: an empty page, not a 404.
    let (status, _, in7) = server
        .get("/v1/rankings/cities/7/salesmen?month=2026-03")
        .await;
    assert_eq!(status, 200, "{in7}");
    assert_eq!(
        (in7["city"].clone(), in7["total"].clone()),
        (Value::Null, json!(0))
    );

    // A month nobody sold in.
    for path in [
        "/v1/rankings/salesmen?month=2025-12",
        "/v1/rankings/cities?month=2025-12",
    ] {
        let (status, _, empty) = server.get(path).await;
        assert_eq!(status, 200, "{path}: {empty}");
        assert_eq!(empty["total"], 0);
        assert_eq!(empty["items"], json!([]));
        assert_eq!(empty["period"]["period"], "2025-12");
    }

    for bad in ["2026-13", "2026-3", "march", "2026-03-01"] {
        let (status, content_type, problem) = server
            .get(&format!("/v1/rankings/salesmen?month={bad}"))
            .await;
        assert_eq!(status, 400, "{bad}: {problem}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(problem["parameter"], "month", "{bad}: {problem}");
    }
    server.stop().await;
    drop_database(&store).await;
}

/// The filters and details read by ClickHouse's own queries (`ClickHouseStore`'s `RankingQueries`, what
/// `tributary_api::run` serves) answer exactly what the scanning reads answer over a
/// `MemoryStore` holding the same publication (the scanning defaults of `RankingQueries`, what
/// the unit tests check).
#[tokio::test]
async fn details_and_filters_on_clickhouse_equal_those_on_memory() {
    let settings = settings("details");
    let store = store(&settings).await;
    let p = publication("run-1", 0);
    store.publish(&p).await.unwrap();
    let on_clickhouse = start(&settings).await;

    let memory = std::sync::Arc::new(tributary_rankings::MemoryStore::new());
    memory.publish(&p).await.unwrap();
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(tributary_api::serve(
        listener,
        memory,
        std::sync::Arc::new(tributary_api::Lake::from_settings(Default::default())),
        shutdown.clone(),
    ));
    let on_memory = Server {
        base,
        shutdown,
        handle,
    };

    let mut checked = 0;
    for path in [
        "/v1/salesmen/1",
        "/v1/salesmen/4",
        "/v1/salesmen/9",
        "/v1/salesmen/4?month=2026-03",
        "/v1/salesmen/12?month=2026-03",
        "/v1/salesmen/999",
        "/v1/cities/2",
        "/v1/cities/10",
        "/v1/cities/5?month=2026-03",
        "/v1/cities/7?month=2026-03&limit=1",
        "/v1/cities/3?limit=2&offset=1",
        "/v1/cities/999",
        "/v1/rankings/cities?state=MG&limit=5&offset=3",
        "/v1/rankings/cities?state=SP&month=2026-03",
        "/v1/rankings/cities?state=XX",
        "/v1/rankings/salesmen?city_id=3",
        "/v1/rankings/salesmen?city_id=2&month=2026-03",
        "/v1/rankings/salesmen?city_id=30&limit=2&offset=1",
    ] {
        let (status, _, got) = on_clickhouse.get(path).await;
        let (want_status, _, want) = on_memory.get(path).await;
        assert_eq!(status, want_status, "{path}: {got} vs {want}");
        if status == 200 {
            assert_eq!(
                without_computed_at(got),
                without_computed_at(want),
                "{path}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} paths answered 200");
    on_clickhouse.stop().await;
    on_memory.stop().await;
    drop_database(&store).await;
}

/// `computed_at` of a ClickHouse row has second precision, the memory store keeps what it got.
fn without_computed_at(mut body: Value) -> Value {
    if let Some(p) = body.get_mut("publication").and_then(Value::as_object_mut) {
        p.remove("computed_at");
    }
    body
}

/// The read-only user of the local stack (dev/clickhouse/users.xml), as `dev/app` gives the API.
fn as_reader(settings: &ClickHouseSettings) -> ClickHouseSettings {
    ClickHouseSettings {
        user: "tributary_reader".into(),
        password: "tributary-reader".into(),
        ..settings.clone()
    }
}

/// The API reads everything it serves as a user that can write nothing: the rankings answer,
/// while every write the marts make is refused to that user by ClickHouse itself.
#[tokio::test]
async fn the_api_reads_as_a_user_that_cannot_write() {
    let settings = settings("reader");
    let store = store(&settings).await;
    store.publish(&publication("run-1", 0)).await.unwrap();
    let reader = as_reader(&settings);
    let server = start(&reader).await;
    let (status, _, page) = server.get("/v1/rankings/salesmen?limit=1000").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 40);
    let (status, _, ready) = server.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    server.stop().await;

    let read_only = ClickHouseStore::new(&reader).unwrap();
    read_only.ping().await.unwrap();
    assert!(read_only.latest_publication().await.unwrap().is_some());
    let refused = read_only
        .publish(&publication("run-2", 60))
        .await
        .expect_err("the reader published");
    assert!(refused.to_string().contains("readonly"), "{refused}");
    for sql in [
        format!("DROP TABLE {}.salesman_ranking", settings.database),
        format!("CREATE DATABASE {}_other", settings.database),
        format!(
            "ALTER TABLE {}.publications DELETE WHERE 1",
            settings.database
        ),
    ] {
        let error = read_only
            .client()
            .query(&sql)
            .execute()
            .await
            .expect_err(&sql);
        assert!(error.to_string().contains("readonly"), "{sql}: {error}");
    }
    // Nothing changed.
    assert_eq!(
        store.latest_publication().await.unwrap().unwrap().run_id,
        "run-1"
    );
    drop_database(&store).await;
}

/// Served from memory over a real ClickHouse: the API takes up a newer publication by itself,
/// and its validators follow it (304 while it stands, 200 with a new tag after).
#[tokio::test]
async fn the_api_serves_the_newest_publication_with_validators() {
    let settings = settings("served");
    let store = store(&settings).await;
    store.publish(&publication("run-1", 0)).await.unwrap();
    let server = start(&settings).await;
    let path = "/v1/rankings/salesmen?limit=5";
    let (status, _, page) = server.get_from(path, "run-1").await;
    assert_eq!(status, 200, "{page}");
    let url = format!("{}{path}", server.base);
    let http = reqwest::Client::new();
    // Once held in memory every answer carries the tag (the first may predate the load).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let tag = loop {
        let resp = http.get(&url).send().await.unwrap();
        if let Some(tag) = resp.headers().get("etag") {
            break tag.to_str().unwrap().to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no ETag in 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let revalidated = http
        .get(&url)
        .header("if-none-match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status().as_u16(), 304);
    assert_eq!(revalidated.headers()["cache-control"], "public, no-cache");

    store.publish(&publication("run-2", 60)).await.unwrap();
    let (status, _, page) = server.get_from(path, "run-2").await;
    assert_eq!(
        (status, &page["publication"]["run_id"]),
        (200, &json!("run-2"))
    );
    let after = http
        .get(&url)
        .header("if-none-match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status().as_u16(), 200);
    assert_ne!(after.headers()["etag"].to_str().unwrap(), tag);
    server.stop().await;
    drop_database(&store).await;
}

/// ClickHouse slow, then stalled (a proxy between the API and the server that delays every
/// chunk, then forwards nothing): the API keeps answering the rankings it holds, says on
/// `/readyz` that ClickHouse does not answer within `clickhouse.timeout_ms` while it serves from
/// memory, keeps no newer publication from appearing once ClickHouse answers again, and no
/// request waits on the stalled server.
#[tokio::test]
async fn a_slow_or_stalled_clickhouse_holds_up_no_ranking_request() {
    let settings = settings("stalled");
    let store = store(&settings).await;
    store.publish(&publication("run-1", 0)).await.unwrap();
    let upstream = settings
        .url
        .trim_start_matches("http://")
        .parse::<SocketAddr>()
        .expect("the local stack's ClickHouse URL is http://<ip>:<port>");
    let proxy = crate::stall_proxy::StallProxy::start(upstream).await;
    let proxied = ClickHouseSettings {
        url: proxy.url(),
        timeout_ms: 500,
        ..settings.clone()
    };
    let server = start(&proxied).await;
    let path = "/v1/rankings/salesmen?limit=5";
    let (status, _, before) = server.get_from(path, "run-1").await;
    assert_eq!(status, 200, "{before}");
    // A client that gives up long before the API's own request timeout (30 s): an answer
    // that waited on ClickHouse would fail here.
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("{}{path}", server.base);
    // Only once the API holds the publication in memory (its answers carry an ETag then; the
    // first may come from ClickHouse before the load) is nothing left to wait on ClickHouse.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while http
        .get(&url)
        .send()
        .await
        .unwrap()
        .headers()
        .get("etag")
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "not held in memory within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let url = format!("{}{path}", server.base);
    let rankings = async || -> (u16, Value) {
        let resp = http.get(&url).send().await.expect("answered");
        (resp.status().as_u16(), resp.json().await.unwrap())
    };

    proxy.delay(std::time::Duration::from_millis(200));
    for _ in 0..10 {
        assert_eq!(rankings().await, (200, before.clone()), "ClickHouse slow");
    }

    proxy.stall(true);
    for _ in 0..20 {
        assert_eq!(
            rankings().await,
            (200, before.clone()),
            "ClickHouse stalled"
        );
    }
    let readyz = format!("{}/readyz", server.base);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let resp = http.get(&readyz).send().await.expect("/readyz answered");
        let body = resp.text().await.unwrap();
        if body.contains("no answer within 500 ms") {
            assert!(body.contains("from memory"), "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz never said ClickHouse does not answer: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Published meanwhile (straight to ClickHouse): seen once the proxy forwards again.
    store.publish(&publication("run-2", 60)).await.unwrap();
    assert_eq!(rankings().await, (200, before.clone()));
    proxy.stall(false);
    proxy.delay(std::time::Duration::ZERO);
    let (status, _, after) = server.get_from(path, "run-2").await;
    assert_eq!(
        (status, &after["publication"]["run_id"]),
        (200, &json!("run-2")),
        "{after}"
    );
    server.stop().await;
    drop_database(&store).await;
}
