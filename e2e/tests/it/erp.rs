//! The legacy ERP end to end on the real services: the simulator (`tributary-erp-sim`) is polled
//! by the WS ingestor (`tributary-ingest erp`) into Kafka, landed, counted by the marts and
//! served by the API, and the API's rankings equal the rankings computed from the sources' own
//! current state: Postgres (the run's own source database) plus the ERP's current sales (its
//! `GET /admin/sales`), resolved by salesman code and city name + state against that database's
//! master data. Then a sale is cancelled in the ERP and its salesman's revenue drops by exactly
//! its amount.

use std::time::Instant;

use anyhow::{Context, Result};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::Value;
use tributary_e2e::{
    MasterData, NaturalSale, RankRow, Service, TestPipeline, await_rankings, current_sales,
    oracle_rankings, require_stack,
};

/// One current ERP sale, as the simulator reports it.
#[derive(Debug, Clone)]
struct ErpSale {
    id: String,
    code: String,
    city: (String, String),
    cents: i64,
}

async fn erp_sales(http: &reqwest::Client, erp: &str) -> Result<Vec<ErpSale>> {
    let body: Value = http
        .get(format!("{erp}/admin/sales"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let sales = body["sales"]
        .as_array()
        .with_context(|| format!("no `sales` in {body}"))?;
    sales
        .iter()
        .map(|s| {
            let text = |k: &str| {
                s[k].as_str()
                    .map(str::to_string)
                    .with_context(|| format!("no {k} in {s}"))
            };
            let amount: Decimal = text("amount")?.parse()?;
            Ok(ErpSale {
                id: text("saleId")?,
                code: text("salesmanCode")?,
                city: (text("cityName")?, text("cityState")?),
                cents: (amount * Decimal::from(100))
                    .to_i64()
                    .with_context(|| format!("amount {amount} in cents"))?,
            })
        })
        .collect()
}

/// The rankings the API must show: Postgres plus the ERP, natural keys resolved against the
/// master data; a sale whose salesman (or city) is unknown is in no salesman (or city) ranking.
async fn oracle(
    db: &tokio_postgres::Client,
    erp: &[ErpSale],
) -> Result<(Vec<RankRow>, Vec<RankRow>)> {
    let erp = erp.iter().map(|s| NaturalSale {
        code: &s.code,
        city: (&s.city.0, &s.city.1),
        cents: s.cents,
        month: None,
    });
    Ok(oracle_rankings(&current_sales(db, erp).await?))
}

#[tokio::test(flavor = "multi_thread")]
async fn erp_sales_and_a_cancellation_show_in_the_rankings() -> Result<()> {
    require_stack();
    let run = TestPipeline::with_source().await?;
    let erp = run.erp();
    let db = run.db();
    let http = reqwest::Client::new();
    let mut sim = run.start_sim("erp-sim", 2026, 150).await?;
    let mut lake = Service::start("erp-lake", "tributary-lake", &[], &run.lake_env());
    let mut marts = Service::start("erp-marts", "tributary-marts", &[], &run.marts_env());
    let mut api = Service::start("erp-api", "tributary-api", &[], &run.api_env());
    let mut ingest = Service::start("erp-ingest", "tributary-ingest", &["erp"], &run.erp_env());

    let base = run.api();
    let mut check = async |stage: &str| -> Result<Vec<RankRow>> {
        let sales = erp_sales(&http, &erp).await?;
        let want = oracle(db, &sales).await?;
        let started = Instant::now();
        let services = &mut [&mut sim, &mut lake, &mut marts, &mut api, &mut ingest];
        await_rankings(&http, &base, &want, services, stage, "erp-*").await?;
        eprintln!(
            "{stage}: API equal to Postgres + ERP after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(want.1)
    };
    let before = check("initial ERP log").await?;

    // Cancel the biggest ERP sale of a salesman the master data knows.
    let master = MasterData::load(db).await?;
    let victim = erp_sales(&http, &erp)
        .await?
        .into_iter()
        .filter(|s| master.salesman(&s.code).is_some())
        .max_by_key(|s| (s.cents, s.id.clone()))
        .context("the ERP has no sale of a known salesman")?;
    let salesman = master.salesman(&victim.code).expect("filtered above");
    let revenue_of = |rows: &[RankRow]| -> Option<String> {
        rows.iter().find(|r| r.0 == salesman).map(|r| r.1.clone())
    };
    let cents = |text: &str| -> i64 {
        let d: Decimal = text.parse().expect("a decimal revenue");
        (d * Decimal::from(100))
            .to_i64()
            .expect("revenue in cents fits")
    };
    let revenue_before = revenue_of(&before).context("the salesman is ranked")?;
    http.post(format!("{erp}/admin/sales/{}/cancel", victim.id))
        .json(&serde_json::json!({ "reason": "e2e: customer cancelled" }))
        .send()
        .await?
        .error_for_status()?;
    let after = check("after the cancellation").await?;
    let revenue_after = revenue_of(&after).unwrap_or_else(|| "0.00".into());
    assert_eq!(
        cents(&revenue_before) - cents(&revenue_after),
        victim.cents,
        "salesman {salesman}'s revenue went from {revenue_before} to {revenue_after}; the \
         cancelled sale {} was {} cents",
        victim.id,
        victim.cents
    );
    drop((sim, lake, marts, api, ingest));
    run.finish().await
}
