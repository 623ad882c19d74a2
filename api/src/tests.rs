//! The HTTP surface on a `MemoryStore`: parameter validation, problem bodies, the shapes of
//! the ranking responses. No services needed.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::DateTime;
use poem::http::StatusCode;
use poem::test::{TestClient, TestResponse};
use serde_json::{Value, json};
use tributary_rankings::ranking::{
    CityInfo, CitySalesmanTotals, CityTotals, SalesmanInfo, SalesmanTotals, Summary, Totals,
    rank_all,
};
use tributary_rankings::{
    LakeSnapshot, LakeSnapshots, MemoryStore, Money, Publication, PublicationWriter,
};

use crate::app;

pub(crate) fn publication() -> Publication {
    let salesman = |id, cents, name: Option<&str>| SalesmanTotals {
        salesman_id: id,
        info: name.map(|n| SalesmanInfo {
            name: n.into(),
            code: format!("S{id}"),
        }),
        revenue: Money::from_cents(cents),
        sales: 1,
    };
    let city = |id, cents, name: Option<&str>| CityTotals {
        city_id: id,
        info: name.map(|n| CityInfo {
            name: n.into(),
            state: "SP".into(),
        }),
        revenue: Money::from_cents(cents),
        sales: 2,
    };
    let totals = Totals {
        cities: vec![city(7, 123_450, Some("Campinas")), city(9, 5, None)],
        city_salesmen: vec![
            CitySalesmanTotals {
                city_id: 7,
                salesman: salesman(1, 100_000, Some("Ana")),
            },
            CitySalesmanTotals {
                city_id: 7,
                salesman: salesman(2, 23_450, None),
            },
            CitySalesmanTotals {
                city_id: 9,
                salesman: salesman(1, 5, Some("Ana")),
            },
        ],
        salesmen: vec![salesman(1, 100_005, Some("Ana")), salesman(2, 23_450, None)],
        summary: Summary {
            sales: 4,
            revenue: Money::from_cents(123_455),
            unresolved_sales: 2,
            unresolved_revenue: Money::from_cents(23_455),
            sales_without_city: 0,
            sales_without_salesman: 0,
            sales_without_month: 0,
        },
    };
    let snapshots = LakeSnapshots(vec![
        LakeSnapshot {
            table: "pg_sale".into(),
            snapshot_id: Some(11),
        },
        LakeSnapshot {
            table: "pg_salesman".into(),
            snapshot_id: Some(22),
        },
        LakeSnapshot {
            table: "pg_city".into(),
            snapshot_id: None,
        },
    ]);
    Publication::new(
        snapshots,
        "run-1",
        DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        rank_all(totals),
    )
    // February: Ana (1) and Bruno (2) tie in city 9; the lower id ranks first. City 7 sold
    // nothing in February.
    .with_months(BTreeMap::from([(
        "2026-02".parse().unwrap(),
        rank_all(Totals {
            cities: vec![city(9, 200, Some("Santos"))],
            city_salesmen: vec![
                CitySalesmanTotals {
                    city_id: 9,
                    salesman: salesman(2, 100, None),
                },
                CitySalesmanTotals {
                    city_id: 9,
                    salesman: salesman(1, 100, Some("Ana")),
                },
            ],
            salesmen: vec![salesman(2, 100, None), salesman(1, 100, Some("Ana"))],
            summary: Summary {
                sales: 2,
                revenue: Money::from_cents(200),
                ..Summary::default()
            },
        }),
    )]))
}

async fn published() -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    store.publish(&publication()).await.unwrap();
    store
}

async fn body(resp: TestResponse) -> Value {
    resp.json().await.value().deserialize()
}

async fn assert_problem(resp: TestResponse, status: StatusCode, kind: &str) -> Value {
    resp.assert_status(status);
    resp.assert_content_type("application/problem+json");
    let problem = body(resp).await;
    assert_eq!(problem["status"], status.as_u16(), "{problem}");
    assert_eq!(
        problem["type"],
        format!("urn:tributary:problem:{kind}"),
        "{problem}"
    );
    assert!(problem["title"].is_string(), "{problem}");
    assert!(problem["detail"].is_string(), "{problem}");
    problem
}

#[tokio::test]
async fn bad_limits_are_400_problems_naming_the_parameter() {
    let client = TestClient::new(app(published().await));
    for (path, value) in [
        ("/v1/rankings/cities", "0"),
        ("/v1/rankings/cities", "abc"),
        ("/v1/rankings/cities", "100000"),
        ("/v1/rankings/cities", "-1"),
        ("/v1/rankings/salesmen", "0"),
        ("/v1/rankings/salesmen", "1001"),
        ("/v1/rankings/cities/7/salesmen", "abc"),
    ] {
        let resp = client.get(path).query("limit", &value).send().await;
        let problem = assert_problem(resp, StatusCode::BAD_REQUEST, "invalid-parameter").await;
        assert_eq!(
            problem["parameter"], "limit",
            "{path}?limit={value}: {problem}"
        );
        assert!(
            problem["detail"].as_str().unwrap().contains("limit"),
            "{problem}"
        );
    }
    let resp = client
        .get("/v1/rankings/salesmen")
        .query("offset", &"-3")
        .send()
        .await;
    let problem = assert_problem(resp, StatusCode::BAD_REQUEST, "invalid-parameter").await;
    assert_eq!(problem["parameter"], "offset");
    let resp = client
        .get("/v1/rankings/cities/seven/salesmen")
        .send()
        .await;
    let problem = assert_problem(resp, StatusCode::BAD_REQUEST, "invalid-parameter").await;
    assert_eq!(problem["parameter"], "city_id");
    let resp = client
        .get("/v1/rankings/cities")
        .query("salesmen", &"101")
        .send()
        .await;
    let problem = assert_problem(resp, StatusCode::BAD_REQUEST, "invalid-parameter").await;
    assert_eq!(problem["parameter"], "salesmen");
}

#[tokio::test]
async fn limits_at_the_bounds_are_accepted() {
    let client = TestClient::new(app(published().await));
    for limit in ["1", "1000"] {
        let resp = client
            .get("/v1/rankings/cities")
            .query("limit", &limit)
            .send()
            .await;
        resp.assert_status_is_ok();
    }
}

#[tokio::test]
async fn no_publication_yet_is_a_503_problem() {
    let client = TestClient::new(app(Arc::new(MemoryStore::new())));
    for path in [
        "/v1/rankings/cities",
        "/v1/rankings/salesmen",
        "/v1/rankings/cities/7/salesmen",
    ] {
        let resp = client.get(path).send().await;
        let problem = assert_problem(resp, StatusCode::SERVICE_UNAVAILABLE, "not-published").await;
        assert!(problem["detail"].as_str().unwrap().contains("marts"));
    }
}

#[tokio::test]
async fn city_ranking_embeds_top_salesmen_and_names_its_publication() {
    let client = TestClient::new(app(published().await));
    let resp = client
        .get("/v1/rankings/cities")
        .query("salesmen", &1)
        .send()
        .await;
    resp.assert_status_is_ok();
    resp.assert_content_type("application/json; charset=utf-8");
    let page = body(resp).await;
    assert_eq!(
        page["publication"]["publication_id"],
        "pg_sale:11,pg_salesman:22,pg_city:none"
    );
    assert_eq!(
        page["publication"]["lake_snapshots"],
        json!([
            {"table": "pg_sale", "snapshot_id": 11},
            {"table": "pg_salesman", "snapshot_id": 22},
            {"table": "pg_city", "snapshot_id": null},
        ])
    );
    assert_eq!(page["publication"]["revenue"], "1234.55");
    assert_eq!(page["publication"]["unresolved_revenue"], "234.55");
    assert_eq!(page["total"], 2);
    assert_eq!(page["limit"], 100);
    assert_eq!(page["offset"], 0);
    assert_eq!(
        page["items"][0],
        json!({
            "rank": 1, "city_id": 7, "name": "Campinas", "state": "SP", "resolved": true,
            "revenue": "1234.50", "sales": 2, "salesmen_total": 2,
            "salesmen": [
                {"rank": 1, "salesman_id": 1, "name": "Ana", "code": "S1", "resolved": true,
                 "revenue": "1000.00", "sales": 1}
            ]
        })
    );
    assert_eq!(page["items"][1]["city_id"], 9);
    assert_eq!(page["items"][1]["resolved"], false);
    assert_eq!(page["items"][1]["name"], Value::Null);
    assert_eq!(page["items"][1]["revenue"], "0.05");
}

#[tokio::test]
async fn pages_follow_limit_and_offset() {
    let client = TestClient::new(app(published().await));
    let resp = client
        .get("/v1/rankings/salesmen")
        .query("limit", &1)
        .query("offset", &1)
        .send()
        .await;
    resp.assert_status_is_ok();
    let page = body(resp).await;
    assert_eq!(page["total"], 2);
    assert_eq!(
        page["items"],
        json!([{"rank": 2, "salesman_id": 2, "name": null, "code": null, "resolved": false,
                "revenue": "234.50", "sales": 1}])
    );
    let resp = client
        .get("/v1/rankings/cities")
        .query("offset", &50)
        .send()
        .await;
    resp.assert_status_is_ok();
    assert_eq!(body(resp).await["items"], json!([]));
}

#[tokio::test]
async fn city_salesmen_lists_the_city_and_404s_unknown_cities() {
    let client = TestClient::new(app(published().await));
    let resp = client.get("/v1/rankings/cities/7/salesmen").send().await;
    resp.assert_status_is_ok();
    let page = body(resp).await;
    assert_eq!(page["city"]["name"], "Campinas");
    assert_eq!(page["total"], 2);
    let ids: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["rank"].clone(), s["salesman_id"].clone()))
        .collect();
    assert_eq!(ids, vec![(json!(1), json!(1)), (json!(2), json!(2))]);

    let resp = client.get("/v1/rankings/cities/404/salesmen").send().await;
    assert_problem(resp, StatusCode::NOT_FOUND, "city-not-found").await;
}

#[tokio::test]
async fn health_readiness_and_unknown_routes() {
    let store = published().await;
    let client = TestClient::new(app(store.clone()));
    let resp = client.get("/healthz").send().await;
    resp.assert_status_is_ok();
    resp.assert_json(json!({"status": "ok"})).await;
    let resp = client.get("/readyz").send().await;
    resp.assert_status_is_ok();
    let ready = body(resp).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"][0]["name"], "clickhouse");
    assert_eq!(ready["checks"][0]["required"], true);

    store.set_unavailable(true);
    // An answer is given again for a second (a flood of probes is one probe): wait it out.
    tokio::time::sleep(tributary_common::health::READINESS_REUSE).await;
    let resp = client.get("/readyz").send().await;
    resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    let not_ready = body(resp).await;
    assert_eq!(not_ready["status"], "not_ready");
    assert_eq!(not_ready["checks"][0]["ok"], false, "{not_ready}");
    let resp = client.get("/v1/rankings/salesmen").send().await;
    assert_problem(resp, StatusCode::SERVICE_UNAVAILABLE, "store-unavailable").await;
    // Liveness does not depend on ClickHouse.
    client.get("/healthz").send().await.assert_status_is_ok();

    let resp = client.get("/v1/nope").send().await;
    assert_problem(resp, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn openapi_document_and_swagger_ui_are_served() {
    let client = TestClient::new(app(published().await));
    let resp = client.get("/openapi.json").send().await;
    resp.assert_status_is_ok();
    let doc = body(resp).await;
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/v1/rankings/cities",
        "/v1/rankings/cities/{city_id}/salesmen",
        "/v1/rankings/salesmen",
        "/healthz",
        "/readyz",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from {:?}",
            paths.keys()
        );
    }
    let limit = doc["paths"]["/v1/rankings/cities"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap()
        .clone();
    assert_eq!(limit["schema"]["minimum"].as_f64(), Some(1.0));
    assert_eq!(limit["schema"]["maximum"].as_f64(), Some(1000.0));
    let bad_request = &doc["paths"]["/v1/rankings/cities"]["get"]["responses"]["400"]["content"];
    assert!(
        bad_request.get("application/problem+json").is_some(),
        "{bad_request}"
    );

    let resp = client.get("/docs").send().await;
    resp.assert_status_is_ok();
    let html = resp.0.into_body().into_string().await.unwrap();
    assert!(html.to_lowercase().contains("swagger"), "{html}");
}

#[tokio::test]
async fn month_selects_that_months_rankings_and_says_so() {
    let client = TestClient::new(app(published().await));
    let resp = client
        .get("/v1/rankings/salesmen")
        .query("month", &"2026-02")
        .send()
        .await;
    resp.assert_status_is_ok();
    let page = body(resp).await;
    assert_eq!(page["period"]["period"], "2026-02");
    assert_eq!(page["period"]["revenue"], "2.00");
    assert_eq!(page["total"], 2);
    let order: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["rank"].clone(), s["salesman_id"].clone()))
        .collect();
    assert_eq!(order, vec![(json!(1), json!(1)), (json!(2), json!(2))]);

    let resp = client
        .get("/v1/rankings/cities")
        .query("month", &"2026-02")
        .send()
        .await;
    resp.assert_status_is_ok();
    let page = body(resp).await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["city_id"], 9);
    assert_eq!(page["items"][0]["name"], "Santos");
    assert_eq!(page["items"][0]["salesmen"][0]["salesman_id"], 1);

    let resp = client
        .get("/v1/rankings/cities/9/salesmen")
        .query("month", &"2026-02")
        .send()
        .await;
    resp.assert_status_is_ok();
    let page = body(resp).await;
    assert_eq!(page["city"]["revenue"], "2.00");
    assert_eq!(page["total"], 2);

    // All time is the default and says so.
    let page = body(client.get("/v1/rankings/salesmen").send().await).await;
    assert_eq!(page["period"]["period"], "all");
    assert_eq!(page["items"][0]["revenue"], "1000.05");
}

#[tokio::test]
async fn a_month_without_sales_is_empty_not_an_error() {
    let client = TestClient::new(app(published().await));
    for path in ["/v1/rankings/salesmen", "/v1/rankings/cities"] {
        let resp = client.get(path).query("month", &"1999-01").send().await;
        resp.assert_status_is_ok();
        let page = body(resp).await;
        assert_eq!(page["total"], 0, "{path}");
        assert_eq!(page["items"], json!([]), "{path}");
        assert_eq!(page["period"]["period"], "1999-01");
        assert_eq!(page["period"]["sales"], 0);
    }
    // City 7 sold all time, not in February: 200 with no city; an unknown city stays 404.
    let resp = client
        .get("/v1/rankings/cities/7/salesmen")
        .query("month", &"2026-02")
        .send()
        .await;
    resp.assert_status_is_ok();
    let page = body(resp).await;
    assert_eq!(page["city"], Value::Null);
    assert_eq!(
        (page["total"].clone(), page["items"].clone()),
        (json!(0), json!([]))
    );
    let resp = client
        .get("/v1/rankings/cities/404/salesmen")
        .query("month", &"2026-02")
        .send()
        .await;
    assert_problem(resp, StatusCode::NOT_FOUND, "city-not-found").await;
}

#[tokio::test]
async fn malformed_months_are_400_problems_naming_month() {
    let client = TestClient::new(app(published().await));
    for path in [
        "/v1/rankings/salesmen",
        "/v1/rankings/cities",
        "/v1/rankings/cities/7/salesmen",
    ] {
        for bad in [
            "2026-13",
            "2026-00",
            "2026-1",
            "26-01",
            "2026-01-05",
            "jan",
            "",
            "0999-01",
        ] {
            let resp = client.get(path).query("month", &bad).send().await;
            let problem = assert_problem(resp, StatusCode::BAD_REQUEST, "invalid-parameter").await;
            assert_eq!(
                problem["parameter"], "month",
                "{path}?month={bad}: {problem}"
            );
        }
    }
}

#[tokio::test]
async fn months_lists_the_publications_months() {
    let client = TestClient::new(app(published().await));
    let resp = client.get("/v1/months").send().await;
    resp.assert_status_is_ok();
    let page = body(resp).await;
    assert_eq!(
        page["publication"]["publication_id"],
        "pg_sale:11,pg_salesman:22,pg_city:none"
    );
    assert_eq!(
        page["items"],
        json!([{"period": "2026-02", "sales": 2, "revenue": "2.00", "cities": 1,
                "salesmen": 2, "unresolved_sales": 0, "sales_without_month": 0}])
    );
    let client = TestClient::new(app(Arc::new(MemoryStore::new())));
    let resp = client.get("/v1/months").send().await;
    assert_problem(resp, StatusCode::SERVICE_UNAVAILABLE, "not-published").await;
}

#[tokio::test]
async fn every_parameter_is_documented() {
    let doc: Value = serde_json::from_str(&crate::openapi_json()).unwrap();
    assert!(doc["paths"]["/v1/months"]["get"].is_object());
    for path in [
        "/v1/rankings/cities",
        "/v1/rankings/cities/{city_id}/salesmen",
        "/v1/rankings/salesmen",
    ] {
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        for p in params {
            let description = p["description"].as_str().unwrap_or_default();
            assert!(
                !description.is_empty(),
                "{path} {}: undocumented",
                p["name"]
            );
        }
        let month = params.iter().find(|p| p["name"] == "month").unwrap();
        assert!(month["description"].as_str().unwrap().contains("UTC"));
        assert_eq!(month["required"], false);
    }
}

async fn get_json(client: &TestClient<impl poem::Endpoint>, uri: &str) -> (StatusCode, Value) {
    let resp = client.get(uri).send().await;
    let status = resp.0.status();
    (status, body(resp).await)
}

#[tokio::test]
async fn salesman_detail_has_rank_cities_and_months() {
    let client = TestClient::new(app(published().await));
    let (status, ana) = get_json(&client, "/v1/salesmen/1").await;
    assert_eq!(status, StatusCode::OK, "{ana}");
    assert_eq!(ana["name"], "Ana");
    assert_eq!(ana["code"], "S1");
    assert_eq!(ana["rank"], 1);
    assert_eq!(ana["revenue"], "1000.05");
    assert_eq!(ana["sales"], 1);
    assert_eq!(ana["period"]["period"], "all");
    assert_eq!(
        ana["cities"],
        json!([
            {"city_id": 7, "name": "Campinas", "state": "SP", "resolved": true,
             "rank_in_city": 1, "revenue": "1000.00", "sales": 1, "city_rank": 1},
            {"city_id": 9, "name": null, "state": null, "resolved": false,
             "rank_in_city": 1, "revenue": "0.05", "sales": 1, "city_rank": 2},
        ])
    );
    assert_eq!(
        ana["months"],
        json!([{"period": "2026-02", "rank": 1, "revenue": "1.00", "sales": 1}])
    );
    assert_eq!(
        ana["publication"]["publication_id"],
        "pg_sale:11,pg_salesman:22,pg_city:none"
    );

    // An unresolved salesman in one month: second in February (tie broken by id).
    let (status, bruno) = get_json(&client, "/v1/salesmen/2?month=2026-02").await;
    assert_eq!(status, StatusCode::OK, "{bruno}");
    assert_eq!(bruno["name"], Value::Null);
    assert_eq!(bruno["resolved"], false);
    assert_eq!(bruno["rank"], 2);
    assert_eq!(bruno["revenue"], "1.00");
    assert_eq!(bruno["period"]["period"], "2026-02");
    assert_eq!(bruno["cities"][0]["city_id"], 9);
    assert_eq!(bruno["cities"][0]["rank_in_city"], 2);
    assert_eq!(bruno["cities"].as_array().unwrap().len(), 1);

    // A month he sold nothing in: 200, no rank, zero revenue; his months are still listed.
    let (status, quiet) = get_json(&client, "/v1/salesmen/1?month=2026-05").await;
    assert_eq!(status, StatusCode::OK, "{quiet}");
    assert_eq!(quiet["rank"], Value::Null);
    assert_eq!(quiet["revenue"], "0.00");
    assert_eq!(quiet["cities"], json!([]));
    assert_eq!(quiet["months"].as_array().unwrap().len(), 1);

    let resp = client.get("/v1/salesmen/99").send().await;
    let problem = assert_problem(resp, StatusCode::NOT_FOUND, "salesman-not-found").await;
    assert!(problem["detail"].as_str().unwrap().contains("99"));
    let resp = client.get("/v1/salesmen/ana").send().await;
    let problem = assert_problem(resp, StatusCode::BAD_REQUEST, "invalid-parameter").await;
    assert_eq!(problem["parameter"], "salesman_id");
    let resp = client.get("/v1/salesmen/1?month=2026-13").send().await;
    let problem = assert_problem(resp, StatusCode::BAD_REQUEST, "invalid-parameter").await;
    assert_eq!(problem["parameter"], "month");
}

#[tokio::test]
async fn city_detail_has_rank_salesmen_and_months() {
    let client = TestClient::new(app(published().await));
    let (status, campinas) = get_json(&client, "/v1/cities/7").await;
    assert_eq!(status, StatusCode::OK, "{campinas}");
    assert_eq!(campinas["name"], "Campinas");
    assert_eq!(campinas["state"], "SP");
    assert_eq!(campinas["rank"], 1);
    assert_eq!(campinas["revenue"], "1234.50");
    assert_eq!(campinas["sales"], 2);
    assert_eq!(campinas["salesmen_total"], 2);
    let ids: Vec<&Value> = campinas["salesmen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["salesman_id"])
        .collect();
    assert_eq!(ids, [&json!(1), &json!(2)]);
    assert_eq!(campinas["months"], json!([]));

    let (_, page) = get_json(&client, "/v1/cities/7?limit=1&offset=1").await;
    assert_eq!(page["salesmen"].as_array().unwrap().len(), 1);
    assert_eq!(page["salesmen"][0]["salesman_id"], 2);
    assert_eq!(page["salesmen_total"], 2);

    let (status, santos) = get_json(&client, "/v1/cities/9?month=2026-02").await;
    assert_eq!(status, StatusCode::OK, "{santos}");
    // Unresolved in all time, named in the February fixture: the detail names it as all time
    // does (resolution is per publication in real runs, so the two agree there).
    assert_eq!(santos["rank"], 1);
    assert_eq!(santos["revenue"], "2.00");
    assert_eq!(santos["salesmen_total"], 2);
    assert_eq!(
        santos["months"],
        json!([{"period": "2026-02", "rank": 1, "revenue": "2.00", "sales": 2, "salesmen": 2}])
    );

    // Campinas sold nothing in February: 200 with no rank.
    let (status, quiet) = get_json(&client, "/v1/cities/7?month=2026-02").await;
    assert_eq!(status, StatusCode::OK, "{quiet}");
    assert_eq!(quiet["rank"], Value::Null);
    assert_eq!(quiet["salesmen"], json!([]));

    let resp = client.get("/v1/cities/1234").send().await;
    assert_problem(resp, StatusCode::NOT_FOUND, "city-not-found").await;
    let resp = client.get("/v1/cities/7?limit=0").send().await;
    let problem = assert_problem(resp, StatusCode::BAD_REQUEST, "invalid-parameter").await;
    assert_eq!(problem["parameter"], "limit");
}

#[tokio::test]
async fn rankings_filter_by_state_and_by_city() {
    let client = TestClient::new(app(published().await));
    let (status, sp) = get_json(&client, "/v1/rankings/cities?state=SP").await;
    assert_eq!(status, StatusCode::OK, "{sp}");
    // City 9 is unresolved: its state is not known, so it is not in SP yet.
    assert_eq!(sp["total"], 1);
    assert_eq!(sp["items"][0]["city_id"], 7);
    assert_eq!(sp["items"][0]["rank"], 1);
    let (_, rj) = get_json(&client, "/v1/rankings/cities?state=RJ").await;
    assert_eq!(rj["total"], 0);
    assert_eq!(rj["items"], json!([]));
    let resp = client.get("/v1/rankings/cities?state=").send().await;
    let problem = assert_problem(resp, StatusCode::BAD_REQUEST, "invalid-parameter").await;
    assert_eq!(problem["parameter"], "state");

    // Salesmen who sold in city 9 in February, with their nationwide February ranks.
    let (_, feb) = get_json(&client, "/v1/rankings/salesmen?city_id=9&month=2026-02").await;
    assert_eq!(feb["total"], 2, "{feb}");
    let ranks: Vec<(i64, i64)> = feb["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["salesman_id"].as_i64().unwrap(),
                s["rank"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ranks, [(1, 1), (2, 2)]);
    // All time, only Ana sold in city 9; paging applies after the filter.
    let (_, all) = get_json(&client, "/v1/rankings/salesmen?city_id=9").await;
    assert_eq!(all["total"], 1);
    assert_eq!(all["items"][0]["salesman_id"], 1);
    assert_eq!(all["items"][0]["revenue"], "1000.05");
    let (_, paged) = get_json(&client, "/v1/rankings/salesmen?city_id=7&limit=1&offset=1").await;
    assert_eq!(paged["total"], 2);
    assert_eq!(paged["items"][0]["salesman_id"], 2);
    let (_, nobody) = get_json(&client, "/v1/rankings/salesmen?city_id=7&month=2026-02").await;
    assert_eq!(nobody["total"], 0);
}

#[tokio::test]
async fn time_travel_needs_a_lake_and_one_kind_of_pin() {
    let client = TestClient::new(app(published().await));
    let resp = client
        .get("/v1/salesmen/1?as_of_snapshot=5&as_of=2026-01-01T00:00:00Z")
        .send()
        .await;
    let problem = assert_problem(resp, StatusCode::BAD_REQUEST, "invalid-parameter").await;
    assert_eq!(problem["parameter"], "as_of_snapshot");
    let resp = client.get("/v1/cities/7?as_of_snapshot=5").send().await;
    assert_problem(resp, StatusCode::SERVICE_UNAVAILABLE, "lake-unavailable").await;
    let resp = client
        .get("/v1/rankings/salesmen?as_of_snapshot=x")
        .send()
        .await;
    let problem = assert_problem(resp, StatusCode::BAD_REQUEST, "invalid-parameter").await;
    assert_eq!(problem["parameter"], "as_of_snapshot");
}

#[tokio::test]
async fn every_parameter_and_error_response_is_documented() {
    let doc: Value = serde_json::from_str(&crate::openapi_json()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/v1/salesmen/{salesman_id}",
        "/v1/cities/{city_id}",
        "/v1/rankings/cities",
        "/v1/rankings/salesmen",
    ] {
        let op = &paths[path]["get"];
        for param in op["parameters"].as_array().unwrap() {
            assert!(
                param["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{path}: {param}"
            );
        }
        for status in ["200", "400", "404", "500", "503"] {
            assert!(op["responses"][status].is_object(), "{path} {status}");
        }
        assert!(
            op["responses"]["400"]["content"]["application/problem+json"].is_object(),
            "{path}"
        );
    }
    let names = |path: &str| -> Vec<String> {
        paths[path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(names("/v1/rankings/cities").contains(&"state".to_string()));
    assert!(names("/v1/rankings/salesmen").contains(&"city_id".to_string()));
    assert!(names("/v1/salesmen/{salesman_id}").contains(&"as_of_snapshot".to_string()));
}

#[tokio::test]
async fn completeness_says_how_far_each_source_reaches() {
    use tributary_rankings::publication::SourceWatermark;

    let newest = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let store = Arc::new(MemoryStore::new());
    let publication = publication().with_sources(BTreeMap::from([
        (
            "pg".to_string(),
            SourceWatermark {
                position: Some(4242),
                newest_event_at: Some(newest),
                events: 12,
            },
        ),
        ("erp".to_string(), SourceWatermark::default()),
    ]));
    store.publish(&publication).await.unwrap();
    let client = TestClient::new(app(store));
    let (status, page) = get_json(&client, "/v1/completeness").await;
    assert_eq!(status, StatusCode::OK);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{page}");
    assert_eq!(items[0]["source"], "erp");
    assert!(items[0]["position"].is_null() && items[0]["newest_event_at"].is_null());
    assert_eq!(items[1]["source"], "pg");
    assert_eq!(items[1]["position"], 4242);
    assert_eq!(items[1]["events"], 12);
    assert!(
        items[1]["behind_seconds"].as_f64().unwrap() > 1.0e6,
        "{page}"
    );

    let client = TestClient::new(app(Arc::new(MemoryStore::new())));
    let resp = client.get("/v1/completeness").send().await;
    assert_problem(resp, StatusCode::SERVICE_UNAVAILABLE, "not-published").await;
}

/// Writes are refused unless a write token is configured and sent; a read token closes every
/// read but the probes. The full app, so the middleware's place in it is what is tested.
#[tokio::test]
async fn bearer_tokens_guard_writes_and_optionally_reads() {
    let event = json!({"eventType": "START"});
    let open = TestClient::new(app(Arc::new(MemoryStore::new())));
    let resp = open.post("/api/v1/lineage").body_json(&event).send().await;
    resp.assert_status(StatusCode::FORBIDDEN);
    resp.assert_content_type("application/problem+json");
    let problem: Value = resp.json().await.value().deserialize();
    assert_eq!(problem["type"], "urn:tributary:problem:writes-disabled");

    let (write, read) = ("write-token-0123456789", "read-token-0123456789");
    let guarded = TestClient::new(crate::app_with_auth(
        Arc::new(MemoryStore::new()),
        crate::auth::AuthSettings {
            write_token: Some(write.into()),
            read_token: Some(read.into()),
        },
    ));
    let resp = guarded
        .post("/api/v1/lineage")
        .body_json(&event)
        .send()
        .await;
    resp.assert_status(StatusCode::UNAUTHORIZED);
    resp.assert_header("www-authenticate", "Bearer");
    let body = resp.0.into_body().into_string().await.unwrap();
    assert!(!body.contains(write), "{body}");
    // With the token the event reaches the store, which judges it (400: no runId).
    guarded
        .post("/api/v1/lineage")
        .header("Authorization", format!("Bearer {write}"))
        .body_json(&event)
        .send()
        .await
        .assert_status(StatusCode::BAD_REQUEST);
    guarded
        .get("/v1/rankings/cities")
        .send()
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
    guarded
        .get("/v1/rankings/cities")
        .header("Authorization", format!("Bearer {read}"))
        .send()
        .await
        .assert_status(StatusCode::SERVICE_UNAVAILABLE); // nothing published yet: past auth
    for probe in ["/healthz", "/metrics"] {
        guarded.get(probe).send().await.assert_status_is_ok();
    }
}
