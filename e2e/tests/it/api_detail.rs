//! The API's details and filters on the real stack: `GET /v1/salesmen/{id}`, `GET /v1/cities/{id}`,
//! `/v1/rankings/salesmen?city_id=` and `/v1/rankings/cities?state=` (served by ClickHouse's
//! own queries, `ClickHouseReads`) equal the same numbers computed straight from Postgres'
//! current sales (of the run's own source database), all time and for a month.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tributary_e2e::{
    OracleSale, Service, TestPipeline, api_months, await_rankings, eventually, oracle_ranking,
    oracle_rankings, postgres_sales, require_stack,
};

/// The sales of one period: all time (`None`) or one UTC month.
fn in_period(sales: &[OracleSale], month: Option<&str>) -> Vec<OracleSale> {
    sales
        .iter()
        .filter(|s| month.is_none() || s.month.as_deref() == month)
        .cloned()
        .collect()
}

/// `(id, revenue, sales, rank)` of `id` in `ranking`.
fn find(ranking: &[(i64, String, i64, i64)], id: i64) -> Option<(String, i64, i64)> {
    ranking
        .iter()
        .find(|r| r.0 == id)
        .map(|r| (r.1.clone(), r.2, r.3))
}

/// What a salesman's detail must say: headline `(revenue, sales, rank)`, cities
/// `(city_id, rank_in_city, revenue, sales)` by revenue, months `(month, rank, revenue, sales)`.
type SalesmanView = (
    Option<(String, i64, i64)>,
    Vec<(i64, i64, String, i64)>,
    Vec<(String, i64, String, i64)>,
);

fn oracle_salesman(sales: &[OracleSale], id: i64, month: Option<&str>) -> SalesmanView {
    let period = in_period(sales, month);
    let headline = find(&oracle_ranking(&period, |s| s.salesman_id), id);
    let city_ids: BTreeSet<i64> = period
        .iter()
        .filter(|s| s.salesman_id == Some(id))
        .filter_map(|s| s.city_id)
        .collect();
    let mut cities: Vec<(i64, i64, String, i64, i64)> = city_ids
        .iter()
        .map(|&c| {
            let in_city: Vec<OracleSale> = period
                .iter()
                .filter(|s| s.city_id == Some(c))
                .cloned()
                .collect();
            let (revenue, n, rank) =
                find(&oracle_ranking(&in_city, |s| s.salesman_id), id).expect("sold there");
            let cents: i64 = in_city
                .iter()
                .filter(|s| s.salesman_id == Some(id))
                .map(|s| s.cents)
                .sum();
            (c, rank, revenue, n, cents)
        })
        .collect();
    cities.sort_by(|a, b| b.4.cmp(&a.4).then(a.0.cmp(&b.0)));
    let months: BTreeSet<String> = sales
        .iter()
        .filter(|s| s.salesman_id == Some(id))
        .filter_map(|s| s.month.clone())
        .collect();
    let months = months
        .into_iter()
        .map(|m| {
            let ranking = oracle_ranking(&in_period(sales, Some(&m)), |s| s.salesman_id);
            let (revenue, n, rank) = find(&ranking, id).expect("sold that month");
            (m, rank, revenue, n)
        })
        .collect();
    (
        headline,
        cities
            .into_iter()
            .map(|(c, rank, revenue, n, _)| (c, rank, revenue, n))
            .collect(),
        months,
    )
}

fn api_salesman(body: &Value) -> Result<SalesmanView> {
    let headline = match body["rank"].as_i64() {
        None => None,
        Some(rank) => Some((
            body["revenue"].as_str().context("revenue")?.to_string(),
            body["sales"].as_i64().context("sales")?,
            rank,
        )),
    };
    let cities = body["cities"]
        .as_array()
        .with_context(|| format!("no cities in {body}"))?
        .iter()
        .map(|c| {
            (
                c["city_id"].as_i64().unwrap_or(-1),
                c["rank_in_city"].as_i64().unwrap_or(-1),
                c["revenue"].as_str().unwrap_or("?").to_string(),
                c["sales"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let months = months_of(body, |m| {
        (
            m["period"].as_str().unwrap_or("?").to_string(),
            m["rank"].as_i64().unwrap_or(-1),
            m["revenue"].as_str().unwrap_or("?").to_string(),
            m["sales"].as_i64().unwrap_or(-1),
        )
    })?;
    Ok((headline, cities, months))
}

fn months_of<T>(body: &Value, f: impl Fn(&Value) -> T) -> Result<Vec<T>> {
    Ok(body["months"]
        .as_array()
        .with_context(|| format!("no months in {body}"))?
        .iter()
        .map(f)
        .collect())
}

/// What a city's detail must say: headline `(revenue, sales, rank)`, its salesmen ranked,
/// months `(month, rank, revenue, sales, salesmen)`.
type CityView = (
    Option<(String, i64, i64)>,
    Vec<(i64, String, i64, i64)>,
    Vec<(String, i64, String, i64, i64)>,
);

fn oracle_city(sales: &[OracleSale], id: i64, month: Option<&str>) -> CityView {
    let period = in_period(sales, month);
    let headline = find(&oracle_ranking(&period, |s| s.city_id), id);
    let in_city: Vec<OracleSale> = period
        .iter()
        .filter(|s| s.city_id == Some(id))
        .cloned()
        .collect();
    let salesmen = oracle_ranking(&in_city, |s| s.salesman_id);
    let months: BTreeSet<String> = sales
        .iter()
        .filter(|s| s.city_id == Some(id))
        .filter_map(|s| s.month.clone())
        .collect();
    let months = months
        .into_iter()
        .map(|m| {
            let month_sales = in_period(sales, Some(&m));
            let (revenue, n, rank) =
                find(&oracle_ranking(&month_sales, |s| s.city_id), id).expect("sold then");
            let salesmen: BTreeSet<i64> = month_sales
                .iter()
                .filter(|s| s.city_id == Some(id))
                .filter_map(|s| s.salesman_id)
                .collect();
            (m, rank, revenue, n, salesmen.len() as i64)
        })
        .collect();
    (headline, salesmen, months)
}

fn api_city(body: &Value) -> Result<CityView> {
    let headline = match body["rank"].as_i64() {
        None => None,
        Some(rank) => Some((
            body["revenue"].as_str().context("revenue")?.to_string(),
            body["sales"].as_i64().context("sales")?,
            rank,
        )),
    };
    let salesmen = body["salesmen"]
        .as_array()
        .with_context(|| format!("no salesmen in {body}"))?
        .iter()
        .map(|s| {
            (
                s["salesman_id"].as_i64().unwrap_or(-1),
                s["revenue"].as_str().unwrap_or("?").to_string(),
                s["sales"].as_i64().unwrap_or(-1),
                s["rank"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let months = months_of(body, |m| {
        (
            m["period"].as_str().unwrap_or("?").to_string(),
            m["rank"].as_i64().unwrap_or(-1),
            m["revenue"].as_str().unwrap_or("?").to_string(),
            m["sales"].as_i64().unwrap_or(-1),
            m["salesmen"].as_i64().unwrap_or(-1),
        )
    })?;
    Ok((headline, salesmen, months))
}

async fn get(http: &reqwest::Client, url: &str) -> Result<Value> {
    let resp = http.get(url).send().await?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    if !status.is_success() {
        bail!("{url}: {status} {body}");
    }
    Ok(body)
}

fn rank_rows(body: &Value, id_field: &str) -> Vec<(i64, String, i64, i64)> {
    body["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    (
                        i[id_field].as_i64().unwrap_or(-1),
                        i["revenue"].as_str().unwrap_or("?").to_string(),
                        i["sales"].as_i64().unwrap_or(-1),
                        i["rank"].as_i64().unwrap_or(-1),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every difference between the API and the oracle, for the chosen salesmen, cities, state
/// and month. Empty when they agree.
async fn differences(
    http: &reqwest::Client,
    base: &str,
    db: &tokio_postgres::Client,
    month: &str,
) -> Result<Vec<String>> {
    let sales = postgres_sales(db).await?;
    let (cities, salesmen) = oracle_rankings(&sales);
    let mut diffs = Vec::new();
    let pick = |ranking: &[(i64, String, i64, i64)]| -> Vec<i64> {
        let mut ids: Vec<i64> = ranking.iter().take(3).map(|r| r.0).collect();
        ids.extend(ranking.last().map(|r| r.0));
        ids
    };
    for id in pick(&salesmen) {
        for period in [None, Some(month)] {
            let url = match period {
                None => format!("{base}/v1/salesmen/{id}"),
                Some(m) => format!("{base}/v1/salesmen/{id}?month={m}"),
            };
            let got = api_salesman(&get(http, &url).await?)?;
            let want = oracle_salesman(&sales, id, period);
            if got != want {
                diffs.push(format!("{url}\n  api    {got:?}\n  oracle {want:?}"));
            }
        }
    }
    for id in pick(&cities) {
        for period in [None, Some(month)] {
            let url = match period {
                None => format!("{base}/v1/cities/{id}?limit=1000"),
                Some(m) => format!("{base}/v1/cities/{id}?limit=1000&month={m}"),
            };
            let got = api_city(&get(http, &url).await?)?;
            let want = oracle_city(&sales, id, period);
            if got != want {
                diffs.push(format!("{url}\n  api    {got:?}\n  oracle {want:?}"));
            }
        }
    }

    // The nationwide ranking of the salesmen who sold in the top city, all time and in `month`.
    let top_city = cities.first().context("no city has sales")?.0;
    for period in [None, Some(month)] {
        let period_sales = in_period(&sales, period);
        let sold_there: BTreeSet<i64> = period_sales
            .iter()
            .filter(|s| s.city_id == Some(top_city))
            .filter_map(|s| s.salesman_id)
            .collect();
        let want: Vec<_> = oracle_ranking(&period_sales, |s| s.salesman_id)
            .into_iter()
            .filter(|r| sold_there.contains(&r.0))
            .collect();
        let url = match period {
            None => format!("{base}/v1/rankings/salesmen?city_id={top_city}&limit=1000"),
            Some(m) => {
                format!("{base}/v1/rankings/salesmen?city_id={top_city}&limit=1000&month={m}")
            }
        };
        let body = get(http, &url).await?;
        let got = rank_rows(&body, "salesman_id");
        if got != want || body["total"].as_u64() != Some(want.len() as u64) {
            diffs.push(format!("{url}\n  api    {got:?}\n  oracle {want:?}"));
        }
    }

    // The cities of the top city's state, keeping their national rank.
    let states: BTreeMap<i64, String> = db
        .query("SELECT id, state FROM city", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let state = states
        .get(&top_city)
        .context("the top city is not in the city table")?;
    let want: Vec<_> = cities
        .iter()
        .filter(|c| states.get(&c.0) == Some(state))
        .cloned()
        .collect();
    let url = format!("{base}/v1/rankings/cities?limit=1000&state={state}");
    let body = get(http, &url).await?;
    let got = rank_rows(&body, "city_id");
    if got != want || body["total"].as_u64() != Some(want.len() as u64) {
        diffs.push(format!("{url}\n  api    {got:?}\n  oracle {want:?}"));
    }
    Ok(diffs)
}

#[tokio::test(flavor = "multi_thread")]
async fn salesman_and_city_details_equal_the_oracle() -> Result<()> {
    require_stack();
    let run = TestPipeline::with_source().await?;
    let mut lake = Service::start("detail-lake", "tributary-lake", &[], &run.lake_env());
    let mut marts = Service::start("detail-marts", "tributary-marts", &[], &run.marts_env());
    let mut api = Service::start("detail-api", "tributary-api", &[], &run.api_env());

    let db = run.db();
    let http = reqwest::Client::new();
    let base = run.api();
    let want = oracle_rankings(&postgres_sales(db).await?);
    await_rankings(
        &http,
        &base,
        &want,
        &mut [&mut lake, &mut marts, &mut api],
        "settled",
        "detail-*",
    )
    .await?;
    let months = api_months(&http, &base).await?;
    let month = months
        .last()
        .context("the sample data has no month with sales")?
        .clone();

    // The source is quiet now, but the details are read from tables the marts publish every
    // second: compare until one publication answers every question alike.
    let outcome = eventually(Duration::from_secs(120), || {
        lake.assert_running();
        marts.assert_running();
        api.assert_running();
        let (http, base, month) = (&http, &base, &month);
        async move {
            Ok(differences(http, base, db, month)
                .await?
                .is_empty()
                .then_some(()))
        }
    })
    .await;
    if outcome.is_err() {
        let diffs = differences(&http, &base, db, &month).await?;
        bail!(
            "the API's details never matched the oracle; logs in .stack/e2e/detail-*.log\n{}",
            diffs.join("\n")
        );
    }
    drop((lake, marts, api));
    run.finish().await
}
