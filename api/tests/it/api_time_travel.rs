//! Time travel against the real stack: the API binary's own start-up (`tributary_api::run`)
//! over the S3 warehouse and the Postgres catalog, in a namespace of this test's own.
//!
//! Needs the local stack (`dev/up`; `dev/status`). It fails, never skips, when the stack is
//! missing: a skipped test would pass CI while proving nothing.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tributary_api::ApiConfig;
use tributary_common::LakeSettings;
use tributary_raw::catalog;
use tributary_raw::schema::RawTable;
use tributary_raw::testing::{city, land_in, sale, salesman};

fn lake_settings() -> LakeSettings {
    let id = uuid::Uuid::now_v7().simple().to_string();
    LakeSettings {
        warehouse: "s3://warehouse".into(),
        namespace: format!("it_time_travel_{}", &id[id.len() - 12..]),
        ..LakeSettings::default()
    }
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let resp = reqwest::get(format!("{base}{path}"))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("a JSON body"))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[tokio::test]
async fn rankings_as_of_an_earlier_time_match_the_lake_at_that_moment() {
    let settings = lake_settings();
    let ns = settings.namespace.clone();
    let lake = catalog::open(&settings).await.unwrap_or_else(|e| {
        panic!("the lake catalog must be reachable (start the stack: dev/up): {e}")
    });
    tributary_lake::catalog::ensure_tables(&lake, &ns)
        .await
        .unwrap_or_else(|e| panic!("creating {ns}'s raw tables: {e}"));

    // Round one: Ana (100) sells 10.00 in Campinas, Bruno (200) 30.00 in Santos.
    land_in(
        &lake,
        &ns,
        RawTable::PgSalesman,
        &[
            salesman("r", 100, (1, 0), "S1", "Ana"),
            salesman("r", 200, (2, 1), "S2", "Bruno"),
        ],
    )
    .await;
    land_in(
        &lake,
        &ns,
        RawTable::PgCity,
        &[
            city("r", 7, (1, 0), "Campinas", "SP"),
            city("r", 8, (2, 1), "Santos", "SP"),
        ],
    )
    .await;
    let first = land_in(
        &lake,
        &ns,
        RawTable::PgSale,
        &[
            sale("c", 1, (10, 0), Some(100), Some(7), Some(1000)).sold_at("2026-01-05T10:00:00Z"),
            sale("c", 2, (11, 1), Some(200), Some(8), Some(3000)).sold_at("2026-01-06T10:00:00Z"),
        ],
    )
    .await;
    // Commit times are milliseconds of the catalog host's clock: leave a clear gap.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let between = Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Round two: Bruno's sale is deleted, Ana sells 100.00 more.
    land_in(
        &lake,
        &ns,
        RawTable::PgSale,
        &[
            sale("d", 2, (20, 2), None, None, None),
            sale("c", 3, (21, 3), Some(100), Some(8), Some(10_000)).sold_at("2026-01-07T10:00:00Z"),
        ],
    )
    .await;

    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = ApiConfig {
        listen: "unused".into(),
        lake: settings.clone(),
        ..ApiConfig::default()
    };
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(tributary_api::run(listener, config, shutdown.clone()));

    // The oracle at `between`: round one alone. Bruno 30.00 first, Ana 10.00.
    let (status, then) = get(
        &base,
        &format!("/v1/rankings/salesmen?as_of={}", rfc3339(between)),
    )
    .await;
    assert_eq!(status, 200, "{then}");
    let ranked = |page: &Value| -> Vec<(i64, String)> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["salesman_id"].as_i64().unwrap(),
                    s["revenue"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        ranked(&then),
        vec![(200, "30.00".to_string()), (100, "10.00".to_string())]
    );
    let publication = &then["publication"];
    assert_eq!(publication["run_id"], "on-demand");
    assert_eq!(publication["lake_snapshots"][0]["table"], "pg_sale");
    assert_eq!(publication["lake_snapshots"][0]["snapshot_id"], first);
    assert!(
        publication["publication_id"]
            .as_str()
            .unwrap()
            .starts_with(&format!("pg_sale:{first},")),
        "{publication}"
    );

    // Now: Ana 110.00 alone (Bruno's only sale was deleted); January the same.
    let (status, now) = get(
        &base,
        &format!(
            "/v1/rankings/salesmen?month=2026-01&as_of={}",
            rfc3339(Utc::now())
        ),
    )
    .await;
    assert_eq!(status, 200, "{now}");
    assert_eq!(ranked(&now), vec![(100, "110.00".to_string())]);

    let (status, cities) = get(
        &base,
        &format!("/v1/rankings/cities?as_of={}", rfc3339(between)),
    )
    .await;
    assert_eq!(status, 200, "{cities}");
    let city_ids: Vec<_> = cities["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["city_id"].as_i64().unwrap())
        .collect();
    assert_eq!(city_ids, vec![8, 7]);

    let (status, snapshots) = get(&base, "/v1/snapshots").await;
    assert_eq!(status, 200, "{snapshots}");
    assert_eq!(
        snapshots["tables"][0]["snapshots"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let (status, problem) = get(&base, "/v1/rankings/cities?as_of=not-a-time").await;
    assert_eq!(
        (status, &problem["parameter"]),
        (400, &Value::from("as_of"))
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .expect("the API stops on shutdown")
        .unwrap()
        .unwrap();
}
