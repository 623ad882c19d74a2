//! Partner files end to end on the real services: CSV, JSON and NDJSON dropped into the S3
//! inbox travel through the file ingestor, Kafka, the lander, Iceberg, the marts and ClickHouse,
//! and the API's rankings equal the rankings computed from the sources' own current state
//! (Postgres, the run's own source database, plus the files as written): partner codes and
//! cities resolve against that database's master data. Then a partner sends a correction
//! (amounts changed, a sale moved to another salesman) and the rankings follow.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use tributary_e2e::{
    MasterData, NaturalSale, RankRow, Service, TestPipeline, await_rankings, current_sales,
    dead_letters, eventually, oracle_rankings, require_stack,
};
use tributary_ingest::files::inbox::Inbox;

/// One partner sale as written into a file.
#[derive(Debug, Clone)]
struct FileSale {
    id: String,
    code: String,
    city: (String, String),
    cents: i64,
}

fn csv(sales: &[FileSale]) -> Vec<u8> {
    // The acme dialect from ingest/partners.toml: semicolons, decimal commas, local times.
    let mut out = String::from("pedido;vendedor;cidade;uf;valor;data\n");
    for s in sales {
        out.push_str(&format!(
            "{};{};{};{};{},{:02};15/03/2026 10:00\n",
            s.id,
            s.code,
            s.city.0,
            s.city.1,
            s.cents / 100,
            s.cents % 100
        ));
    }
    out.into_bytes()
}

fn ndjson(sales: &[FileSale], city_ids: &BTreeMap<String, i64>) -> Vec<u8> {
    // The globex shape: nested seller code, city id, amount as a JSON number.
    let mut out = String::new();
    for s in sales {
        out.push_str(&format!(
            "{{\"order_id\":\"{}\",\"seller\":{{\"code\":\"{}\"}},\"city_id\":{},\"total\":{}.{:02},\"created_at\":\"2026-04-01T12:00:00Z\"}}\n",
            s.id, s.code, city_ids[&s.city.0], s.cents / 100, s.cents % 100
        ));
    }
    out.into_bytes()
}

/// The rankings the API must show: Postgres sales plus the current file sales, resolved
/// against the master data; sales with an unknown code are in no salesman ranking.
async fn oracle(
    db: &tokio_postgres::Client,
    files: &[&[FileSale]],
) -> Result<(Vec<RankRow>, Vec<RankRow>)> {
    let files = files
        .iter()
        .flat_map(|partner| partner.iter())
        .map(|s| NaturalSale {
            code: &s.code,
            city: (&s.city.0, &s.city.1),
            cents: s.cents,
            month: None,
        });
    Ok(oracle_rankings(&current_sales(db, files).await?))
}

#[tokio::test(flavor = "multi_thread")]
async fn partner_files_and_their_corrections_show_in_the_rankings() -> Result<()> {
    require_stack();
    let run = TestPipeline::with_source().await?;

    let db = run.db();
    let master = MasterData::load(db).await?;
    let codes: Vec<String> = master.salesman_by_code.keys().cloned().collect();
    let cities: Vec<(String, String, i64)> = db
        .query("SELECT name, state, id FROM city ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(
        codes.len() >= 5 && cities.len() >= 3,
        "the run's source database has no sample master data (ingest/sql/sample.sql)"
    );
    let city_ids: BTreeMap<String, i64> =
        cities.iter().map(|(n, _, id)| (n.clone(), *id)).collect();
    let sale = |id: String, i: usize, cents: i64| FileSale {
        id,
        code: codes[i % codes.len()].clone(),
        city: (
            cities[i % cities.len()].0.clone(),
            cities[i % cities.len()].1.clone(),
        ),
        cents,
    };
    let mut acme: Vec<FileSale> = (0..30)
        .map(|i| sale(format!("E-{i}"), i * 7, 10_000 + (i as i64 * 7919) % 90_000))
        .collect();
    // A salesman nobody knows yet: counted in its city, in no salesman ranking.
    acme[3].code = "S-UNKNOWN".into();
    let globex: Vec<FileSale> = (0..12)
        .map(|i| {
            sale(
                format!("G-{i}"),
                i * 3 + 1,
                5_000 + (i as i64 * 104_729) % 400_000,
            )
        })
        .collect();

    let mut lake = Service::start("files-lake", "tributary-lake", &[], &run.lake_env());
    let mut marts = Service::start("files-marts", "tributary-marts", &[], &run.marts_env());
    let mut api = Service::start("files-api", "tributary-api", &[], &run.api_env());
    let mut ingest = Service::start(
        "files-ingest",
        "tributary-ingest",
        &["files"],
        &run.files_env(),
    );

    let inbox = Inbox::open(&run.inbox(), &Default::default())?;
    inbox.put_bytes("acme/march.csv", csv(&acme)).await?;
    inbox
        .put_bytes("globex/april.ndjson", ndjson(&globex, &city_ids))
        .await?;
    // A refund sent as a negative amount: a bad row, dead-lettered with its reason, never counted.
    inbox
        .put_bytes(
            "acme/refund.csv",
            b"pedido;vendedor;cidade;uf;valor;data\nR-1;S001;Campinas;SP;-50,00;15/03/2026 10:00\n"
                .to_vec(),
        )
        .await?;

    let base = run.api();
    let http = reqwest::Client::new();
    let mut check = async |stage: &str, acme: &[FileSale]| -> Result<()> {
        let want = oracle(db, &[acme, &globex]).await?;
        let services = &mut [&mut lake, &mut marts, &mut api, &mut ingest];
        await_rankings(&http, &base, &want, services, stage, "files-*").await
    };
    check("first drop", &acme).await?;
    let namespace = run.namespace();
    let dead_topic = run.topic("files.dead");
    let refund = eventually(Duration::from_secs(60), || {
        let (namespace, dead_topic) = (&namespace, &dead_topic);
        async move {
            Ok(dead_letters(namespace)
                .await?
                .into_iter()
                .find(|d| d.topic == *dead_topic))
        }
    })
    .await?;
    assert_eq!(refund.error_kind, "bad_amount");
    assert!(refund.reason.contains("negative"), "{refund:?}");

    // The correction: three amounts change and one sale moves to another salesman and city.
    let mut corrected = vec![
        acme[0].clone(),
        acme[1].clone(),
        acme[2].clone(),
        acme[4].clone(),
    ];
    corrected[0].cents += 12_345;
    corrected[1].cents = 1;
    corrected[2].cents *= 3;
    corrected[3].code = codes[(codes.len() - 1) % codes.len()].clone();
    corrected[3].city = (cities[0].0.clone(), cities[0].1.clone());
    inbox
        .put_bytes("acme/march-corrected.csv", csv(&corrected))
        .await?;
    for c in &corrected {
        let slot = acme
            .iter_mut()
            .find(|s| s.id == c.id)
            .expect("corrected sale exists");
        *slot = c.clone();
    }
    check("after the correction", &acme).await?;
    drop((lake, marts, api, ingest));
    run.finish().await
}
