//! The walking skeleton, end to end on the real services: sales inserted, updated (amount and
//! salesman) and deleted in Postgres travel through Debezium, Kafka, the lander, Iceberg, the
//! marts job and ClickHouse, and the API's two rankings equal the rankings computed by SQL
//! directly on Postgres.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tributary_common::names;
use tributary_e2e::{
    RankRow, Service, api_rankings, dead_letters, eventually, free_port, postgres_only_topics,
    require_stack, salesdb, unique_suffix,
};

/// The oracle: the rankings computed by SQL straight on the source database.
async fn postgres_rankings(db: &tokio_postgres::Client, dimension: &str) -> Result<Vec<RankRow>> {
    // `dimension` is a column name we control (city_id or salesman_id), never user input.
    let sql = format!(
        "SELECT {dimension}, sum(amount)::numeric(18,2)::text, count(*) \
           FROM sale WHERE {dimension} IS NOT NULL \
          GROUP BY {dimension} ORDER BY sum(amount) DESC, {dimension} ASC"
    );
    let rows = db.query(&sql, &[]).await?;
    Ok(rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.get(0), r.get(1), r.get(2), i as i64 + 1))
        .collect())
}

fn service_env(suffix: &str, api_port: u16) -> BTreeMap<String, String> {
    [
        ("TRIBUTARY_LAKE__WAREHOUSE", "s3://warehouse".to_string()),
        ("TRIBUTARY_LAKE__NAMESPACE", format!("e2e_{suffix}")),
        ("TRIBUTARY_CLICKHOUSE__DATABASE", format!("e2e_{suffix}")),
        ("TRIBUTARY_LISTEN", format!("127.0.0.1:{api_port}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn rankings_in_the_api_equal_rankings_computed_on_postgres() -> Result<()> {
    require_stack();
    let suffix = unique_suffix();
    let api_port = free_port();
    let env = service_env(&suffix, api_port);
    let only = |keys: &[&str]| -> BTreeMap<String, String> {
        env.iter()
            .filter(|(k, _)| keys.iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let mut lake_env = only(&["TRIBUTARY_LAKE__"]);
    lake_env.extend(postgres_only_topics(&suffix));
    lake_env.insert("TRIBUTARY_COMMIT_INTERVAL_MS".into(), "500".into());
    let mut marts_env = only(&["TRIBUTARY_LAKE__", "TRIBUTARY_CLICKHOUSE__"]);
    marts_env.insert("TRIBUTARY_INTERVAL_MS".into(), "1000".into());
    let api_env = only(&["TRIBUTARY_CLICKHOUSE__", "TRIBUTARY_LISTEN"]);

    let mut lake = Service::start("pipeline-lake", "tributary-lake", &[], &lake_env);
    let mut marts = Service::start("pipeline-marts", "tributary-marts", &[], &marts_env);
    let mut api = Service::start("pipeline-api", "tributary-api", &[], &api_env);

    // A record on the Debezium topic that the lander cannot decode (an amount that is no number):
    // it must land in the dead letters with its reason, and the pipeline must go on.
    let (bad_partition, bad_offset) = produce_undecodable_sale().await?;

    // Changes on the source: three new sales, one of them corrected (amount and salesman), one
    // deleted, each its own transaction as a till would commit them.
    let db = salesdb().await?;
    let salesmen: Vec<(i64, i64)> = db
        .query("SELECT id, city_id FROM salesman ORDER BY id LIMIT 2", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        salesmen.len(),
        2,
        "salesdb has no sample salesmen: did `dev/up` load sample.sql?"
    );
    let mut new_ids = Vec::new();
    for (i, amount) in ["1999.99", "0.01", "25000.50"].iter().enumerate() {
        let (salesman, city) = salesmen[i % 2];
        let row = db
            .query_one(
                "INSERT INTO sale (salesman_id, city_id, amount, sold_at) \
                 VALUES ($1, $2, $3::text::numeric, now()) RETURNING id",
                &[&salesman, &city, amount],
            )
            .await?;
        new_ids.push(row.get::<_, i64>(0));
    }
    let (other_salesman, other_city) = salesmen[1];
    db.execute(
        "UPDATE sale SET amount = 31337.00, salesman_id = $2, city_id = $3 WHERE id = $1",
        &[&new_ids[0], &other_salesman, &other_city],
    )
    .await?;
    db.execute("DELETE FROM sale WHERE id = $1", &[&new_ids[1]])
        .await?;
    let committed = Instant::now();

    let want_cities = postgres_rankings(&db, "city_id").await?;
    let want_salesmen = postgres_rankings(&db, "salesman_id").await?;
    let base = format!("http://127.0.0.1:{api_port}");
    let http = reqwest::Client::new();
    let outcome = eventually(Duration::from_secs(240), || {
        lake.assert_running();
        marts.assert_running();
        api.assert_running();
        let (http, base, want_cities, want_salesmen) = (&http, &base, &want_cities, &want_salesmen);
        async move {
            let cities = api_rankings(http, base, "/v1/rankings/cities", "city_id").await?;
            let salesmen = api_rankings(http, base, "/v1/rankings/salesmen", "salesman_id").await?;
            Ok(
                (cities == *want_cities && salesmen == *want_salesmen)
                    .then_some((cities, salesmen)),
            )
        }
    })
    .await;
    let latency = committed.elapsed();
    let (cities, salesmen) = match outcome {
        Ok(rankings) => rankings,
        Err(e) => {
            let cities = api_rankings(&http, &base, "/v1/rankings/cities", "city_id").await;
            let salesmen = api_rankings(&http, &base, "/v1/rankings/salesmen", "salesman_id").await;
            panic!(
                "the API's rankings never matched Postgres ({e:#})\nwant cities   {want_cities:?}\n\
                 got cities    {cities:?}\nwant salesmen {want_salesmen:?}\ngot salesmen  {salesmen:?}\n\
                 logs: {}, {}, {}",
                lake.log().display(),
                marts.log().display(),
                api.log().display()
            )
        }
    };
    eprintln!(
        "postgres commit -> visible in the API: {:.1} s ({} cities, {} salesmen ranked)",
        latency.as_secs_f64(),
        cities.len(),
        salesmen.len()
    );
    assert!(!cities.is_empty() && !salesmen.is_empty());

    let reason = dead_letter_reason(&format!("e2e_{suffix}"), bad_partition, bad_offset).await?;
    assert!(
        reason.contains("amount"),
        "dead letter reason does not name the field: {reason}"
    );
    Ok(())
}

/// Produces a Debezium-shaped envelope whose amount is not a number onto the real sale topic.
async fn produce_undecodable_sale() -> Result<(i32, i64)> {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:9092")
        .set("acks", "all")
        .create()?;
    let value = r#"{"before":null,"after":{"id":-1,"salesman_id":1,"city_id":1,"amount":"12x","sold_at":"2026-01-01T00:00:00Z"},"source":{"lsn":1,"ts_ms":1,"txId":1},"op":"c","ts_ms":1}"#;
    let delivered = producer
        .send(
            FutureRecord::to(names::TOPIC_PG_SALE)
                .key(r#"{"id":-1}"#)
                .payload(value),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    Ok((delivered.partition, delivered.offset))
}

/// The reason the lander gave for dead-lettering `partition`/`offset` of the sale topic.
async fn dead_letter_reason(namespace: &str, partition: i32, offset: i64) -> Result<String> {
    dead_letters(namespace)
        .await?
        .into_iter()
        .find(|d| d.topic == names::TOPIC_PG_SALE && d.partition == partition && d.offset == offset)
        .map(|d| d.reason)
        .with_context(|| {
            format!(
                "offset {partition}/{offset} of {} is not in {namespace}.dead_letters",
                names::TOPIC_PG_SALE
            )
        })
}
