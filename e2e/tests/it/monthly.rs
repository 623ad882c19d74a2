//! Monthly rankings end to end on the real services (Postgres-only data, in the run's own source
//! database): sales whose `sold_at` is in an old month (a late event), one moved to another month
//! by an update, one made late on a local evening that is already the next month in UTC. The
//! API's monthly rankings must equal the rankings SQL computes on Postgres per
//! `date_trunc('month', sold_at AT TIME ZONE 'UTC')`, for every month, and `/v1/months` must
//! list exactly Postgres's months.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use tributary_e2e::{
    RankRow, Service, TestPipeline, api_months, api_ranking_for, eventually, require_stack,
};

/// Postgres's UTC month of `sold_at`, as the API names months.
const MONTH: &str = "to_char(date_trunc('month', sold_at AT TIME ZONE 'UTC'), 'YYYY-MM')";

/// The oracle: per UTC month, the ranking by `dimension` computed by SQL on the source.
async fn postgres_monthly(
    db: &tokio_postgres::Client,
    dimension: &str,
) -> Result<BTreeMap<String, Vec<RankRow>>> {
    // `dimension` is a column name we control (city_id or salesman_id), never user input.
    let sql = format!(
        "SELECT {MONTH} AS month, {dimension}, sum(amount)::numeric(18,2)::text, count(*) \
           FROM sale WHERE {dimension} IS NOT NULL AND sold_at IS NOT NULL \
          GROUP BY 1, {dimension} ORDER BY 1, sum(amount) DESC, {dimension} ASC"
    );
    let mut months: BTreeMap<String, Vec<RankRow>> = BTreeMap::new();
    for r in db.query(&sql, &[]).await? {
        let ranking = months.entry(r.get(0)).or_default();
        let rank = ranking.len() as i64 + 1;
        ranking.push((r.get(1), r.get(2), r.get(3), rank));
    }
    Ok(months)
}

/// Every month's ranking from the API, for the months Postgres has.
async fn api_monthly(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    id_field: &str,
    months: impl Iterator<Item = &String>,
) -> Result<BTreeMap<String, Vec<RankRow>>> {
    let mut out = BTreeMap::new();
    for month in months {
        out.insert(
            month.clone(),
            api_ranking_for(http, base, path, id_field, Some(month)).await?,
        );
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn monthly_rankings_in_the_api_equal_postgres_per_utc_month() -> Result<()> {
    require_stack();
    let run = TestPipeline::with_source().await?;
    let mut lake = Service::start("monthly-lake", "tributary-lake", &[], &run.lake_env());
    let mut marts = Service::start("monthly-marts", "tributary-marts", &[], &run.marts_env());
    let mut api = Service::start("monthly-api", "tributary-api", &[], &run.api_env());

    let db = run.db();
    let (salesman, city): (i64, i64) = db
        .query_one("SELECT id, city_id FROM salesman ORDER BY id LIMIT 1", &[])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .context("the run's source database has no sample salesmen (ingest/sql/sample.sql)")?;
    let insert = |sold_at: &'static str, amount: &'static str| async move {
        db.query_one(
            "INSERT INTO sale (salesman_id, city_id, amount, sold_at) \
             VALUES ($1, $2, $3::text::numeric, $4::text::timestamptz) RETURNING id",
            &[&salesman, &city, &amount, &sold_at],
        )
        .await
        .map(|r| r.get::<_, i64>(0))
    };
    // 23:30 on 30 November in São Paulo is 02:30 UTC on 1 December: December.
    insert("2024-11-30T23:30:00-03:00", "777.77").await?;
    // A late event for an old month, then moved to the month before.
    let moved = insert("2024-10-10T12:00:00Z", "123.45").await?;
    db.execute(
        "UPDATE sale SET sold_at = '2024-09-10T12:00:00Z' WHERE id = $1",
        &[&moved],
    )
    .await?;

    let want_cities = postgres_monthly(db, "city_id").await?;
    let want_salesmen = postgres_monthly(db, "salesman_id").await?;
    assert!(want_salesmen.contains_key("2024-12") && want_salesmen.contains_key("2024-09"));
    let want_months: Vec<String> = want_salesmen.keys().cloned().collect();
    let base = run.api();
    let http = reqwest::Client::new();
    let check = || {
        lake.assert_running();
        marts.assert_running();
        api.assert_running();
        let (http, base) = (&http, &base);
        let (want_cities, want_salesmen, want_months) =
            (&want_cities, &want_salesmen, &want_months);
        async move {
            let months = api_months(http, base).await?;
            if months != *want_months {
                return Ok(None);
            }
            let cities =
                api_monthly(http, base, "/v1/rankings/cities", "city_id", months.iter()).await?;
            let salesmen = api_monthly(
                http,
                base,
                "/v1/rankings/salesmen",
                "salesman_id",
                months.iter(),
            )
            .await?;
            Ok((cities == *want_cities && salesmen == *want_salesmen).then_some(()))
        }
    };
    if let Err(e) = eventually(Duration::from_secs(240), check).await {
        let months = api_months(&http, &base).await;
        panic!(
            "the API's monthly rankings never matched Postgres ({e:#})\nwant months {want_months:?}\n\
             got months  {months:?}\nlogs: {}, {}, {}",
            lake.log().display(),
            marts.log().display(),
            api.log().display()
        );
    }
    // The moved sale left October: no ranking there has its revenue any more.
    let october = api_ranking_for(
        &http,
        &base,
        "/v1/rankings/salesmen",
        "salesman_id",
        Some("2024-10"),
    )
    .await?;
    assert_eq!(
        october,
        want_salesmen.get("2024-10").cloned().unwrap_or_default()
    );
    drop((lake, marts, api));
    run.finish().await
}
