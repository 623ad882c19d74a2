//! The walking skeleton, end to end on the real services: sales inserted, updated (amount and
//! salesman) and deleted in Postgres travel through Debezium, Kafka, the lander, Iceberg, the
//! marts job and ClickHouse, and the API's two rankings equal the rankings computed by SQL
//! directly on Postgres (the run's own source database, captured by its own Debezium connector).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tributary_e2e::{
    RankRow, Service, TestPipeline, api_rankings, dead_letters, eventually, require_stack,
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

#[tokio::test(flavor = "multi_thread")]
async fn rankings_in_the_api_equal_rankings_computed_on_postgres() -> Result<()> {
    require_stack();
    let run = TestPipeline::with_source().await?;
    let mut lake = Service::start("pipeline-lake", "tributary-lake", &[], &run.lake_env());
    let mut marts = Service::start("pipeline-marts", "tributary-marts", &[], &run.marts_env());
    let mut api = Service::start("pipeline-api", "tributary-api", &[], &run.api_env());

    // A record on the run's Debezium sale topic that the lander cannot decode (an amount that is
    // no number): it must land in the dead letters with its reason, and the pipeline must go on.
    let sale_topic = run.source().topic("sale");
    let (bad_partition, bad_offset) = produce_undecodable_sale(&sale_topic).await?;

    // Changes on the source: three new sales, one of them corrected (amount and salesman), one
    // deleted, each its own transaction as a till would commit them.
    let db = run.db();
    let salesmen: Vec<(i64, i64)> = db
        .query("SELECT id, city_id FROM salesman ORDER BY id LIMIT 2", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        salesmen.len(),
        2,
        "the run's source database has no sample salesmen (ingest/sql/sample.sql)"
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

    let want_cities = postgres_rankings(db, "city_id").await?;
    let want_salesmen = postgres_rankings(db, "salesman_id").await?;
    let base = run.api();
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

    let reason =
        dead_letter_reason(&run.namespace(), &sale_topic, bad_partition, bad_offset).await?;
    assert!(
        reason.contains("amount"),
        "dead letter reason does not name the field: {reason}"
    );
    drop((lake, marts, api));
    run.finish().await
}

/// Produces a Debezium-shaped envelope whose amount is not a number onto `topic` (the run's
/// Debezium sale topic).
async fn produce_undecodable_sale(topic: &str) -> Result<(i32, i64)> {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:9092")
        .set("acks", "all")
        .create()?;
    let value = r#"{"before":null,"after":{"id":-1,"salesman_id":1,"city_id":1,"amount":"12x","sold_at":"2026-01-01T00:00:00Z"},"source":{"lsn":1,"ts_ms":1,"txId":1},"op":"c","ts_ms":1}"#;
    let delivered = producer
        .send(
            FutureRecord::to(topic).key(r#"{"id":-1}"#).payload(value),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    Ok((delivered.partition, delivered.offset))
}

/// The reason the lander gave for dead-lettering `partition`/`offset` of `topic`.
async fn dead_letter_reason(
    namespace: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<String> {
    dead_letters(namespace)
        .await?
        .into_iter()
        .find(|d| d.topic == topic && d.partition == partition && d.offset == offset)
        .map(|d| d.reason)
        .with_context(|| {
            format!("offset {partition}/{offset} of {topic} is not in {namespace}.dead_letters")
        })
}
