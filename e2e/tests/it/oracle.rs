//! The oracle test: a seeded random workload on all three real sources at once, and after each
//! round the API's rankings must equal the rankings computed directly from the sources' own
//! current state. Zero differences. At the end, record-level provenance: for random rows of
//! each ranking the API's `/provenance` records sum exactly to the row and each is a real,
//! current source record (Postgres row, file row, ERP sale, and the Kafka record that carried
//! it); and a `--rebuild` publishes exactly what the incremental runs did.
//!
//! - Postgres (the run's own source database and Debezium connector): inserts, updates of
//!   amount / salesman / city / date, deletes, salesman renames, and a salesman that arrives
//!   late (files and the ERP name its code before it exists).
//! - Partner files: new sales, corrections (amount, salesman, city, date), byte-identical
//!   re-drops of earlier files.
//! - The ERP: new sales, corrections, cancellations (through the simulator's admin API).
//! - Sales land in random months of 2025–2026: late events for old months.
//!
//! The seed is printed; replay a failure with `ORACLE_SEED=<seed>` (not a `TRIBUTARY_*` name:
//! the services would refuse it as an unknown setting).
//! `ORACLE_ROUNDS` (default 3) sets the length; a long run is a loop over seeds.
//!
//! The chaos test runs the same workload while it SIGKILLs our services at seeded random
//! moments, and checks the lake against Kafka offset by offset at the end (`CHAOS_SEED`,
//! `CHAOS_ROUNDS`, `CHAOS_KILLS`; `make chaos` runs it longer).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::disruption::{
    Disruption, Kills, Probe, SlowDependencies, arm_crash_point, await_crash, chaos, crash_point,
    outage, slowdown,
};
use crate::records_trail::{run_topics, where_the_records_are};
use anyhow::{Context, Result};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};
use tributary_e2e::kafka::{committed_offsets, exactly_once_diff, offsets_in};
use tributary_e2e::{
    MasterData, NaturalSale, OracleSale, RankRow, Service, TestPipeline, api_months,
    api_ranking_for, clickhouse_query, current_sales, eventually, get_json, oracle_ranking,
    oracle_rankings, require_stack, run_bin, stack,
};
use tributary_ingest::files::inbox::Inbox;
use tributary_raw::catalog::{load_table, read_table};
use tributary_raw::schema::RawTable;

/// A sale from a file or the ERP as its source holds it now.
#[derive(Debug, Clone, PartialEq)]
struct SourceSale {
    code: String,
    city: (String, String),
    cents: i64,
    sold_at: String,
}

/// How partners really write cities: sometimes in capitals with doubled spaces (the same city
/// once normalised), sometimes one Postgres does not have (unresolved: in the salesman rankings
/// and the period's `unresolved_sales`, in no city ranking).
fn vary_city(rng: &mut ChaCha8Rng, sale: &mut SourceSale, round: usize) {
    match rng.random_range(0..8) {
        0 => sale.city.0 = format!("  {}  ", sale.city.0.to_uppercase().replace(' ', "  ")),
        1 => sale.city.1 = sale.city.1.to_lowercase(),
        2 => sale.city = (format!("Vila Desconhecida {round}"), "ZZ".to_string()),
        _ => {}
    }
}

/// The initech CSV dialect (a snapshot partner, `ingest/partners.toml`): commas, decimal
/// points, RFC 3339 times; every file is its full list of sales.
fn initech_csv(sales: &BTreeMap<String, SourceSale>) -> Vec<u8> {
    let mut out = String::from("id,rep,city,state,amount,sold_at\n");
    for (id, s) in sales {
        out.push_str(&format!(
            "{id},{},{},{},{}.{:02},{}\n",
            s.code,
            s.city.0,
            s.city.1,
            s.cents / 100,
            s.cents % 100,
            s.sold_at
        ));
    }
    out.into_bytes()
}

/// A random time from 2025-01-01 to yesterday (whole minutes, UTC): never in the future, which
/// partner files may not send.
fn random_time(rng: &mut ChaCha8Rng) -> chrono::DateTime<chrono::Utc> {
    let start = chrono::DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let minutes = (chrono::Utc::now() - chrono::Duration::days(1) - start).num_minutes();
    start + chrono::Duration::minutes(rng.random_range(0..minutes))
}

/// The acme CSV dialect (see `ingest/partners.toml`): semicolons, decimal commas, local time.
fn acme_csv(sales: &[(String, SourceSale)]) -> Vec<u8> {
    let mut out = String::from("pedido;vendedor;cidade;uf;valor;data\n");
    for (id, s) in sales {
        let local = chrono::DateTime::parse_from_rfc3339(&s.sold_at)
            .unwrap()
            .with_timezone(&chrono::FixedOffset::west_opt(3 * 3600).unwrap());
        out.push_str(&format!(
            "{id};{};{};{};{},{:02};{}\n",
            s.code,
            s.city.0,
            s.city.1,
            s.cents / 100,
            s.cents % 100,
            local.format("%d/%m/%Y %H:%M")
        ));
    }
    out.into_bytes()
}

async fn erp_sales(http: &reqwest::Client, erp: &str) -> Result<BTreeMap<String, SourceSale>> {
    let body = get_json(http, &format!("{erp}/admin/sales")).await?;
    let mut out = BTreeMap::new();
    for s in body["sales"].as_array().context("no sales")? {
        let text = |k: &str| {
            s[k].as_str()
                .map(str::to_string)
                .with_context(|| format!("no {k} in {s}"))
        };
        let amount: Decimal = text("amount")?.parse()?;
        out.insert(
            text("saleId")?,
            SourceSale {
                code: text("salesmanCode")?,
                city: (text("cityName")?, text("cityState")?),
                cents: (amount * Decimal::from(100)).to_i64().context("cents")?,
                sold_at: text("soldAt")?,
            },
        );
    }
    Ok(out)
}

/// (cities, salesmen) rankings, all time (`None`) and per UTC month.
type Rankings = BTreeMap<Option<String>, (Vec<RankRow>, Vec<RankRow>)>;

/// Every current sale of the sources: Postgres as it is, the files as the test wrote them, the
/// ERP as it reports itself; natural keys resolved against the master data.
async fn source_sales(
    db: &tokio_postgres::Client,
    files: &BTreeMap<String, SourceSale>,
    erp: &BTreeMap<String, SourceSale>,
) -> Result<Vec<OracleSale>> {
    let others = files.values().chain(erp.values()).map(|s| NaturalSale {
        code: &s.code,
        city: (&s.city.0, &s.city.1),
        cents: s.cents,
        month: Some(&s.sold_at[..7]),
    });
    let sales = current_sales(db, others).await?;
    Ok(sales)
}

/// Rankings from the sources: Postgres as it is, the files as the test wrote them, the ERP as
/// it reports itself; natural keys resolved against the master data; all time and per month.
async fn oracle(
    db: &tokio_postgres::Client,
    files: &BTreeMap<String, SourceSale>,
    erp: &BTreeMap<String, SourceSale>,
) -> Result<Rankings> {
    let sales = source_sales(db, files, erp).await?;
    let mut rankings = BTreeMap::new();
    rankings.insert(None, oracle_rankings(&sales));
    let months: BTreeSet<String> = sales.iter().filter_map(|s| s.month.clone()).collect();
    for month in months {
        let in_month: Vec<OracleSale> = sales
            .iter()
            .filter(|s| s.month.as_deref() == Some(month.as_str()))
            .cloned()
            .collect();
        rankings.insert(Some(month), oracle_rankings(&in_month));
    }
    Ok(rankings)
}

/// Names the API shows, all time, that differ from the source's current ones: a salesman's name
/// and code, a city's name and state, by id (after the workload's renames, and for the salesman
/// who arrives late); a row whose id the source lacks must show no name (unresolved).
async fn name_mismatches(
    http: &reqwest::Client,
    base: &str,
    db: &tokio_postgres::Client,
) -> Result<Vec<String>> {
    let current = |sql: &'static str| async move {
        Ok::<_, anyhow::Error>(
            db.query(sql, &[])
                .await?
                .iter()
                .map(|r| {
                    (
                        r.get::<_, i64>(0),
                        (r.get::<_, String>(1), r.get::<_, String>(2)),
                    )
                })
                .collect::<BTreeMap<i64, (String, String)>>(),
        )
    };
    let salesmen = current("SELECT id, name, code FROM salesman").await?;
    let cities = current("SELECT id, name, state FROM city").await?;
    let mut out = Vec::new();
    for (path, id_field, second, known) in [
        ("/v1/rankings/salesmen", "salesman_id", "code", &salesmen),
        ("/v1/rankings/cities", "city_id", "state", &cities),
    ] {
        let body = get_json(http, &format!("{base}{path}?limit=1000")).await?;
        for item in body["items"].as_array().context("no items")? {
            let id = item[id_field].as_i64().context("no id")?;
            let shown = (item["name"].as_str(), item[second].as_str());
            let want = known
                .get(&id)
                .map_or((None, None), |(a, b)| (Some(a.as_str()), Some(b.as_str())));
            if shown != want {
                out.push(format!(
                    "{path} {id}: shows {shown:?}, the source has {want:?}"
                ));
            }
        }
    }
    Ok(out)
}

/// Each city's own salesman ranking, all time, from the sources (every city with a current
/// sale; a city whose sales name no known salesman ranks nobody).
async fn oracle_city_salesmen(
    db: &tokio_postgres::Client,
    files: &BTreeMap<String, SourceSale>,
    erp: &BTreeMap<String, SourceSale>,
) -> Result<BTreeMap<i64, Vec<RankRow>>> {
    let sales = source_sales(db, files, erp).await?;
    let cities: BTreeSet<i64> = sales.iter().filter_map(|s| s.city_id).collect();
    Ok(cities
        .into_iter()
        .map(|city| {
            let in_city: Vec<OracleSale> = sales
                .iter()
                .filter(|s| s.city_id == Some(city))
                .cloned()
                .collect();
            (city, oracle_ranking(&in_city, |s| s.salesman_id))
        })
        .collect())
}

/// What the API ranks within each city of `want` (`/v1/rankings/cities/{id}/salesmen`).
async fn api_city_salesmen(
    http: &reqwest::Client,
    base: &str,
    want: &BTreeMap<i64, Vec<RankRow>>,
) -> Result<BTreeMap<i64, Vec<RankRow>>> {
    let mut out = BTreeMap::new();
    for city in want.keys() {
        let path = format!("/v1/rankings/cities/{city}/salesmen");
        out.insert(
            *city,
            api_ranking_for(http, base, &path, "salesman_id", None).await?,
        );
    }
    Ok(out)
}

/// Random Postgres changes: inserts, updates of every field, deletes, a rename.
async fn postgres_round(
    db: &tokio_postgres::Client,
    rng: &mut ChaCha8Rng,
    salesmen: &[(i64, i64)],
    cities: &[i64],
) -> Result<()> {
    for _ in 0..12 {
        let (salesman, city) = *salesmen.choose(rng).unwrap();
        let cents: i64 = rng.random_range(100..500_000);
        db.execute(
            "INSERT INTO sale (salesman_id, city_id, amount, sold_at) VALUES ($1, $2, $3::text::numeric, $4::text::timestamptz)",
            &[&salesman, &city, &format!("{}.{:02}", cents / 100, cents % 100), &random_time(rng).to_rfc3339()],
        )
        .await?;
    }
    let ids: Vec<i64> = db
        .query("SELECT id FROM sale ORDER BY id DESC LIMIT 200", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for id in ids.choose_multiple(rng, 10) {
        let cents: i64 = rng.random_range(100..500_000);
        let amount = format!("{}.{:02}", cents / 100, cents % 100);
        match rng.random_range(0..4) {
            0 => {
                db.execute(
                    "UPDATE sale SET amount = $2::text::numeric WHERE id = $1",
                    &[id, &amount],
                )
                .await?
            }
            1 => {
                let (salesman, _) = *salesmen.choose(rng).unwrap();
                db.execute(
                    "UPDATE sale SET salesman_id = $2 WHERE id = $1",
                    &[id, &salesman],
                )
                .await?
            }
            2 => {
                let city = *cities.choose(rng).unwrap();
                db.execute("UPDATE sale SET city_id = $2 WHERE id = $1", &[id, &city])
                    .await?
            }
            _ => {
                db.execute(
                    "UPDATE sale SET sold_at = $2::text::timestamptz WHERE id = $1",
                    &[id, &random_time(rng).to_rfc3339()],
                )
                .await?
            }
        };
    }
    for id in ids.choose_multiple(rng, 4) {
        db.execute("DELETE FROM sale WHERE id = $1", &[id]).await?;
    }
    let (renamed, _) = *salesmen.choose(rng).unwrap();
    db.execute(
        "UPDATE salesman SET name = split_part(name, ' #', 1) || ' #' || $2 WHERE id = $1",
        &[&renamed, &rng.random_range(0..1000i32).to_string()],
    )
    .await?;
    Ok(())
}

/// Two neighbours of `ranking` whose revenues differ (a seeded pair, the higher first), with the
/// difference in cents; none when every revenue is the same (a tie already).
fn untied_neighbours(ranking: &[RankRow], rng: &mut ChaCha8Rng) -> Result<Option<(i64, i64, i64)>> {
    let mut pairs = Vec::new();
    for pair in ranking.windows(2) {
        let (high, low) = (&pair[0], &pair[1]);
        let gap = cents_of(&high.1)? - cents_of(&low.1)?;
        if gap > 0 {
            pairs.push((high.0, low.0, gap));
        }
    }
    Ok(pairs.choose(rng).copied())
}

/// Inserts Postgres sales that make equal totals, so that every round ranks ties (the rankings
/// break them by id): two cities all time, two salesmen in one month, two salesmen all time.
/// Each sale is chosen not to undo the ties made before it. Returns the ties it made, as
/// (period, ranking, the two ids), for the test to find in the API's answer.
async fn force_ties(
    db: &tokio_postgres::Client,
    files: &BTreeMap<String, SourceSale>,
    erp: &BTreeMap<String, SourceSale>,
    rng: &mut ChaCha8Rng,
    salesmen: &[(i64, i64)],
    cities: &[i64],
) -> Result<Vec<(Option<String>, &'static str, [i64; 2])>> {
    let insert = |salesman: i64, city: i64, cents: i64, month: String| async move {
        db.execute(
            "INSERT INTO sale (salesman_id, city_id, amount, sold_at) \
             VALUES ($1, $2, $3::text::numeric, $4::text::timestamptz)",
            &[
                &salesman,
                &city,
                &format!("{}.{:02}", cents / 100, cents % 100),
                &format!("{month}-15T12:00:00Z"),
            ],
        )
        .await
        .context("insert a tying sale")
    };
    let mut ties = Vec::new();

    // Cities, all time: the lower one gets the gap, sold by a salesman in no tie below.
    let now = oracle(db, files, erp).await?;
    let months: Vec<String> = now.keys().flatten().cloned().collect();
    let mut city_pair = [0, 0];
    if let Some((high, low, gap)) = untied_neighbours(&now[&None].0, rng)? {
        let month = months.choose(rng).context("no month")?.clone();
        insert(salesmen.choose(rng).unwrap().0, low, gap, month).await?;
        city_pair = [high, low];
        ties.push((None, "cities", city_pair));
    }
    let other_city = *cities
        .iter()
        .find(|c| !city_pair.contains(c))
        .context("fewer than three cities")?;

    // Salesmen in one month, then all time in another month.
    let now = oracle(db, files, erp).await?;
    let month = months.choose(rng).context("no month")?.clone();
    let in_month = &now[&Some(month.clone())].1;
    if let Some((high, low, gap)) = untied_neighbours(in_month, rng)? {
        insert(low, other_city, gap, month.clone()).await?;
        ties.push((Some(month.clone()), "salesmen", [high, low]));
    }
    let now = oracle(db, files, erp).await?;
    if let Some((high, low, gap)) = untied_neighbours(&now[&None].1, rng)? {
        let elsewhere = months
            .iter()
            .filter(|m| **m != month)
            .collect::<Vec<_>>()
            .choose(rng)
            .map(|m| m.to_string())
            .context("a single month")?;
        insert(low, other_city, gap, elsewhere).await?;
        ties.push((None, "salesmen", [high, low]));
    }
    Ok(ties)
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn random_workload_on_all_sources_ranks_exactly_like_the_sources() -> Result<()> {
    let seed = env_number("ORACLE_SEED").unwrap_or_else(rand::random);
    let rounds = env_number("ORACLE_ROUNDS").unwrap_or(3);
    eprintln!("oracle seed {seed}, {rounds} rounds (replay: ORACLE_SEED={seed})");
    workload(seed, rounds, Disruption::None).await
}

/// The chaos test: the oracle's workload while our services (lander, marts, API, both
/// ingestors; not the ERP simulator, which stands for the partner's system) and the stack's
/// (Postgres, the Kafka broker, Kafka Connect, ClickHouse, the object store) are SIGKILLed at
/// seeded random moments and started again. After every round the rankings equal the
/// sources'; at the end every record of every topic of the run that a reader may see
/// (`read_committed`) is in the lake exactly once, as a raw row or a dead letter, and nothing
/// else is. `CHAOS_SEED`, `CHAOS_ROUNDS` (default 2), `CHAOS_KILLS` (of ours a round, default
/// 3), `CHAOS_STACK_KILLS` (of the stack's a round, default 1).
#[tokio::test(flavor = "multi_thread")]
async fn services_killed_at_random_moments_lose_and_duplicate_nothing() -> Result<()> {
    let seed = env_number("CHAOS_SEED").unwrap_or_else(rand::random);
    let rounds = env_number("CHAOS_ROUNDS").unwrap_or(2);
    let kills = Kills {
        ours: env_number("CHAOS_KILLS").unwrap_or(3),
        stack: env_number("CHAOS_STACK_KILLS").unwrap_or(1),
    };
    eprintln!(
        "chaos seed {seed}, {rounds} rounds, a round {} SIGKILLs of ours and {} of the stack's (replay: CHAOS_SEED={seed})",
        kills.ours, kills.stack
    );
    workload(seed, rounds, Disruption::Kills(kills)).await
}

/// `rounds` of the seeded workload, checked against the sources after each, disturbed as
/// `disruption` says; a disturbed run ends with every record in the lake exactly once.
async fn workload(seed: u64, rounds: usize, disruption: Disruption) -> Result<()> {
    require_stack();
    let replay = match disruption {
        Disruption::Kills(_) => format!("CHAOS_SEED={seed}"),
        Disruption::Outages(_) => format!("OUTAGE_SEED={seed}"),
        Disruption::CrashPoints => format!("CRASH_SEED={seed}"),
        Disruption::Slowdowns(_) => format!("SLOW_SEED={seed}"),
        Disruption::None => format!("ORACLE_SEED={seed}"),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    let mut run = TestPipeline::with_source().await?;
    let erp = run.erp();

    let db = run.db();
    let http = reqwest::Client::new();
    let salesmen: Vec<(i64, i64)> = db
        .query("SELECT id, city_id FROM salesman ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let cities: Vec<(i64, String, String)> = db
        .query("SELECT id, name, state FROM city ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(
        salesmen.len() >= 5 && cities.len() >= 3,
        "the run's source database has no sample master data (ingest/sql/sample.sql)"
    );
    let city_ids: Vec<i64> = cities.iter().map(|c| c.0).collect();
    let mut codes: Vec<String> = MasterData::load(db)
        .await?
        .salesman_by_code
        .into_keys()
        .collect();
    // A salesman nobody knows yet: files and the ERP name him before Postgres has him.
    let late_code = format!("L{}", seed % 1_000_000);
    codes.push(late_code.clone());

    // The slowdown test puts the object store, ClickHouse, Postgres (the catalog and the marts'
    // state) and Kafka behind proxies it can slow.
    let slow = match disruption {
        Disruption::Slowdowns(_) => Some(SlowDependencies::start().await),
        _ => None,
    };
    let mut services = vec![run.start_sim("oracle-erp-sim", seed % 100_000, 80).await?];
    // Each service but the API on a /readyz port of its own (the outage test reads them).
    let mut probes = Vec::new();
    for (name, bin, args, mut env, listen, checks) in [
        (
            "oracle-lake",
            "tributary-lake",
            &[][..],
            run.lake_env_with_maintenance(),
            "TRIBUTARY_METRICS_LISTEN",
            &["kafka", "catalog", "object_store"][..],
        ),
        (
            "oracle-marts",
            "tributary-marts",
            &[],
            run.marts_env_with_retention(),
            "TRIBUTARY_METRICS_LISTEN",
            &["catalog", "object_store", "state", "clickhouse"],
        ),
        ("oracle-api", "tributary-api", &[], run.api_env(), "", &[]),
        (
            "oracle-files",
            "tributary-ingest",
            &["files"],
            run.files_env(),
            "TRIBUTARY_FILES__METRICS_LISTEN",
            &["kafka", "inbox"],
        ),
        (
            "oracle-erp",
            "tributary-ingest",
            &["erp"],
            run.erp_env(),
            "TRIBUTARY_ERP__METRICS_LISTEN",
            &["kafka"],
        ),
    ] {
        if !listen.is_empty() {
            let port = tributary_e2e::free_port();
            env.insert(listen.to_string(), format!("127.0.0.1:{port}"));
            probes.push(Probe {
                service: name,
                base: format!("http://127.0.0.1:{port}"),
                checks,
            });
        }
        if let Some(slow) = &slow
            && ["oracle-lake", "oracle-marts", "oracle-api"].contains(&name)
        {
            env.insert("TRIBUTARY_LAKE__S3__ENDPOINT".into(), slow.s3.url());
            env.insert(
                "TRIBUTARY_LAKE__CATALOG_URI".into(),
                format!(
                    "postgres://tributary:tributary@127.0.0.1:{}/tributary",
                    slow.postgres.port()
                ),
            );
            if name != "oracle-lake" {
                env.insert("TRIBUTARY_CLICKHOUSE__URL".into(), slow.clickhouse.url());
                env.insert("TRIBUTARY_CLICKHOUSE__TIMEOUT_MS".into(), "2000".into());
            }
        }
        if let Some(slow) = &slow
            && ["oracle-lake", "oracle-files", "oracle-erp"].contains(&name)
        {
            env.insert(
                "TRIBUTARY_KAFKA__BROKERS".into(),
                format!("127.0.0.1:{}", slow.kafka.port()),
            );
        }
        services.push(Service::start(name, bin, args, &env));
    }

    let inbox = Inbox::open(&run.inbox(), &Default::default())?;
    let mut files: BTreeMap<String, SourceSale> = BTreeMap::new();
    let mut dropped: Vec<Vec<u8>> = Vec::new();
    // The snapshot partner's current list (each of its files replaces the one before).
    let mut initech: BTreeMap<String, SourceSale> = BTreeMap::new();
    let base = run.api();
    let random_sale = |rng: &mut ChaCha8Rng| {
        let city = cities.choose(rng).unwrap();
        SourceSale {
            code: codes.choose(rng).unwrap().clone(),
            city: (city.1.clone(), city.2.clone()),
            cents: rng.random_range(100..500_000),
            sold_at: random_time(rng).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    };

    for round in 0..rounds {
        if matches!(disruption, Disruption::CrashPoints) {
            arm_crash_point(&mut services, round);
        }
        let db = run.db();
        postgres_round(db, &mut rng, &salesmen, &city_ids).await?;

        // Files: new sales and corrections in one new file, sometimes an old file again.
        let mut batch: Vec<(String, SourceSale)> = Vec::new();
        for i in 0..8 {
            let mut sale = random_sale(&mut rng);
            vary_city(&mut rng, &mut sale, round);
            batch.push((format!("O{round}-{i}"), sale));
        }
        let known: Vec<String> = files.keys().cloned().collect();
        for id in known.choose_multiple(&mut rng, 4) {
            let mut corrected = files[id].clone();
            match rng.random_range(0..4) {
                0 => corrected.cents = rng.random_range(100..500_000),
                1 => corrected.code = codes.choose(&mut rng).unwrap().clone(),
                2 => {
                    let c = cities.choose(&mut rng).unwrap();
                    corrected.city = (c.1.clone(), c.2.clone());
                }
                _ => {
                    corrected.sold_at =
                        random_time(&mut rng).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                }
            }
            batch.push((id.clone(), corrected));
        }
        // And a line the ingestor must dead-letter (an amount that is no number): every round
        // has a dead letter, which the ledger and the dead-letter crash point need.
        let mut bytes = acme_csv(&batch);
        bytes.extend_from_slice(
            format!(
                "BAD-{round};{};Campinas;SP;12,3x;01/03/2026 10:00\n",
                codes[0]
            )
            .as_bytes(),
        );
        inbox
            .put_bytes(&format!("acme/round-{round}.csv"), bytes.clone())
            .await?;
        for (id, sale) in batch {
            files.insert(id, sale);
        }
        if let Some(old) = dropped.choose(&mut rng).cloned() {
            // Same bytes, new name: a duplicate, nothing changes.
            inbox
                .put_bytes(&format!("acme/round-{round}-again.csv"), old)
                .await?;
        }
        dropped.push(bytes);

        // The snapshot partner: its full list every round, about a third of the last one left
        // out (withdrawn), some amounts changed, three new sales.
        let mut snapshot: BTreeMap<String, SourceSale> = BTreeMap::new();
        for (id, sale) in &initech {
            if rng.random_range(0..3) > 0 {
                let mut kept = sale.clone();
                if rng.random_range(0..4) == 0 {
                    kept.cents = rng.random_range(100..500_000);
                }
                snapshot.insert(id.clone(), kept);
            }
        }
        for i in 0..3 {
            snapshot.insert(format!("I{round}-{i}"), random_sale(&mut rng));
        }
        inbox
            .put_bytes(
                &format!("initech/snapshot-{round:04}.csv"),
                initech_csv(&snapshot),
            )
            .await?;
        let withdrawn = initech
            .keys()
            .filter(|id| !snapshot.contains_key(*id))
            .count();
        initech = snapshot;
        let files_now: BTreeMap<String, SourceSale> = files
            .iter()
            .chain(&initech)
            .map(|(id, sale)| (id.clone(), sale.clone()))
            .collect();

        // The ERP: new sales, corrections, cancellations.
        let current = erp_sales(&http, &erp).await?;
        for _ in 0..5 {
            let s = random_sale(&mut rng);
            http.post(format!("{erp}/admin/sales"))
                .json(&json!({"salesmanCode": s.code, "cityName": s.city.0, "cityState": s.city.1,
                              "amount": format!("{}.{:02}", s.cents / 100, s.cents % 100), "soldAt": s.sold_at}))
                .send()
                .await?
                .error_for_status()?;
        }
        let ids: Vec<&String> = current.keys().collect();
        for id in ids.choose_multiple(&mut rng, 3) {
            let s = random_sale(&mut rng);
            http.post(format!("{erp}/admin/sales"))
                .json(&json!({"saleId": id, "salesmanCode": s.code, "cityName": s.city.0, "cityState": s.city.1,
                              "amount": format!("{}.{:02}", s.cents / 100, s.cents % 100), "soldAt": s.sold_at}))
                .send()
                .await?
                .error_for_status()?;
        }
        for id in ids.choose_multiple(&mut rng, 2) {
            // Already cancelled by a correction above? Then 409, which is fine.
            let _ = http
                .post(format!("{erp}/admin/sales/{id}/cancel"))
                .json(&json!({"reason": "oracle: cancelled"}))
                .send()
                .await?;
        }

        // The late salesman arrives in Postgres in the middle of the run.
        if round == rounds / 2 {
            db.execute(
                "INSERT INTO salesman (code, name, city_id) VALUES ($1, $2, $3) ON CONFLICT (code) DO NOTHING",
                &[&late_code, &format!("Late Arrival {late_code}"), &city_ids[0]],
            )
            .await?;
        }

        // Equal totals every round: ties the rankings must break by id, as the oracle does.
        let erp_now = erp_sales(&http, &erp).await?;
        let ties = force_ties(db, &files_now, &erp_now, &mut rng, &salesmen, &city_ids).await?;
        anyhow::ensure!(!ties.is_empty(), "seed {seed} round {round} made no tie");

        match disruption {
            Disruption::None => {}
            Disruption::Kills(kills) => {
                chaos(&mut services, &mut rng, kills, seed, round).await?;
            }
            Disruption::Outages(down) => {
                let dependencies = outage_dependencies()?;
                let dependency = dependencies[round % dependencies.len()];
                outage(dependency, down, &mut services, &probes, seed, round).await?;
            }
            Disruption::CrashPoints => await_crash(&mut services, seed, round)?,
            Disruption::Slowdowns(down) => {
                let slow = slow.as_ref().expect("proxies for the slowdown test");
                slowdown(slow, down, &mut services, &probes, seed, round).await?;
            }
        }
        if !matches!(disruption, Disruption::None) {
            // Postgres may have been restarted under the test's own connection.
            run.reconnect_source().await?;
        }
        let db = run.db();
        let erp_now = erp_sales(&http, &erp).await?;
        let want = oracle(db, &files_now, &erp_now).await?;
        let want_in_cities = oracle_city_salesmen(db, &files_now, &erp_now).await?;
        let want_summaries = oracle_summaries(db, &files_now, &erp_now).await?;
        let started = Instant::now();
        let matched = eventually(Duration::from_secs(240), || {
            for s in services.iter_mut() {
                s.assert_running();
            }
            let (http, base, want, want_in_cities, want_summaries) =
                (&http, &base, &want, &want_in_cities, &want_summaries);
            async move {
                Ok((api_all(http, base, want).await? == *want
                    && api_city_salesmen(http, base, want_in_cities).await? == *want_in_cities
                    && name_mismatches(http, base, db).await?.is_empty()
                    && summary_mismatches(http, base, want_summaries)
                        .await?
                        .is_empty())
                .then_some(()))
            }
        })
        .await;
        if let Err(e) = matched {
            let got = api_all(&http, &base, &want).await?;
            let got_in_cities = api_city_salesmen(&http, &base, &want_in_cities).await?;
            let mut diffs: Vec<String> = want
                .iter()
                .filter(|(period, w)| got.get(*period) != Some(w))
                .take(3)
                .map(|(period, (cities, salesmen))| {
                    let (got_cities, got_salesmen) = got.get(period).cloned().unwrap_or_default();
                    format!(
                        "{}: cities {:?}; salesmen {:?}",
                        period.as_deref().unwrap_or("all time"),
                        diff(cities, &got_cities),
                        diff(salesmen, &got_salesmen)
                    )
                })
                .collect();
            diffs.extend(name_mismatches(&http, &base, db).await?.into_iter().take(5));
            diffs.extend(
                summary_mismatches(&http, &base, &want_summaries)
                    .await?
                    .into_iter()
                    .take(5),
            );
            diffs.extend(
                want_in_cities
                    .iter()
                    .filter(|(city, w)| got_in_cities.get(*city) != Some(w))
                    .take(3)
                    .map(|(city, w)| {
                        format!(
                            "salesmen in city {city}: {:?}",
                            diff(w, &got_in_cities[city])
                        )
                    }),
            );
            diffs.push(format!("capture: {}", run.source().capture_status().await));
            diffs.push(where_the_records_are(&run, &http, &base, &probes).await);
            diffs.push(tributary_e2e::last_warnings(
                &services,
                6,
                &format!("{}-round-{round}", replay.replace('=', "-")),
            ));
            panic!(
                "seed {seed} round {round}: the API never matched the sources ({e:#})\n{}\n\
                 replay: {replay}; logs in .stack/e2e/oracle-*.log",
                diffs.join("\n")
            );
        }
        eprintln!(
            "seed {seed} round {round}: all time and {} months, {} cities and {} salesmen, {} sales ({} unresolved, {withdrawn} withdrawn by the snapshot partner), equal to the sources after {:.1} s, {} ties",
            want.len() - 1,
            want[&None].0.len(),
            want[&None].1.len(),
            want_summaries[&None].0,
            want_summaries[&None].2,
            started.elapsed().as_secs_f64(),
            ties.len()
        );
        for (period, ranking, ids) in &ties {
            let (cities, salesmen) = &want[period];
            let rows = if *ranking == "cities" {
                cities
            } else {
                salesmen
            };
            let revenue = |id: i64| rows.iter().find(|r| r.0 == id).map(|r| r.1.clone());
            let (a, b) = (revenue(ids[0]), revenue(ids[1]));
            assert!(
                a.is_some() && a == b,
                "seed {seed} round {round}: the {ranking} tie of {period:?} between {ids:?} is gone: {a:?} and {b:?} ({replay})"
            );
        }
    }

    if !matches!(disruption, Disruption::None) {
        check_exactly_once(&run, &http, &base, &replay).await?;
        drop(services);
        return run.finish().await;
    }

    // Provenance of the final state (the sources are quiet now and equal to the API).
    let db = run.db();
    let erp_now = erp_sales(&http, &erp).await?;
    let files: BTreeMap<String, SourceSale> = files.into_iter().chain(initech).collect();
    let want = oracle(db, &files, &erp_now).await?;
    check_provenance(&http, &base, &mut rng, &want, (db, &files, &erp_now))
        .await
        .with_context(|| format!("seed {seed}: provenance (replay: ORACLE_SEED={seed})"))?;

    // Maintenance ran under the marts all along: the lake holds replace snapshots and expired
    // history, and the rankings above still equal the sources. Whether the workload's own
    // commits gave it a snapshot to expire depends on how they fell into its 5-s history
    // buckets (a snapshot alone in its bucket is kept); when they did not, the test changes one
    // sale again and again (a cent dearer each time, a commit apart) until maintenance has
    // expired some, then waits until the API serves the last change, so the lake is settled
    // for the rebuild below.
    let settings = tributary_common::LakeSettings {
        warehouse: "s3://warehouse".into(),
        namespace: run.namespace(),
        ..Default::default()
    };
    let catalog = tributary_raw::catalog::open(&settings).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut changes = 0;
    let (replaces, expired) = loop {
        let sales =
            tributary_raw::snapshots::load_raw_table(&catalog, &run.namespace(), "pg_sale").await?;
        let (replaces, expired) = maintained(&sales);
        if replaces > 0 && expired > 0 {
            break (replaces, expired);
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: maintenance did not run under the oracle ({replaces} replace snapshots, {expired} with an expired parent in pg_sale, after {changes} more changes)"
        );
        db.execute(
            "UPDATE sale SET amount = amount + 0.01 WHERE id = (SELECT min(id) FROM sale)",
            &[],
        )
        .await?;
        changes += 1;
        tokio::time::sleep(Duration::from_millis(700)).await;
    };
    if changes > 0 {
        let want_summaries = oracle_summaries(db, &files, &erp_now).await?;
        eventually(Duration::from_secs(60), || {
            let (http, base, want) = (&http, &base, &want_summaries);
            async move {
                Ok(summary_mismatches(http, base, want)
                    .await?
                    .is_empty()
                    .then_some(()))
            }
        })
        .await
        .with_context(|| {
            format!("seed {seed}: the API never served the {changes} changes made for maintenance")
        })?;
    }
    eprintln!(
        "seed {seed}: pg_sale holds {replaces} replace snapshots and {expired} snapshots whose parent expired ({changes} changes made for maintenance)"
    );

    // Incremental = rebuild: the marts service has folded the workload run by run; a rebuild
    // from the whole lake, into a database (and state) of its own, must publish the same rows.
    let rebuild_db = format!("{}_rebuild", run.namespace());
    let mut rebuild_env = run.marts_env();
    rebuild_env.insert("TRIBUTARY_CLICKHOUSE__DATABASE".into(), rebuild_db.clone());
    let out = run_bin("tributary-marts", &["run-once", "--rebuild"], &rebuild_env)?;
    let publication = out
        .lines()
        .find_map(|line| line.strip_prefix("published "))
        .with_context(|| format!("tributary-marts --rebuild printed {out:?}"))?
        .to_string();
    let latest_sql = format!(
        "SELECT publication_id FROM {}.publications FINAL ORDER BY version DESC LIMIT 1",
        run.namespace()
    );
    eventually(Duration::from_secs(60), || {
        let (sql, publication) = (&latest_sql, &publication);
        async move { Ok((clickhouse_query(sql).await?.trim() == publication).then_some(())) }
    })
    .await
    .with_context(|| format!("the incremental marts never published {publication}"))?;
    for (table, columns) in [
        (
            "city_ranking",
            "period, rank, city_id, city_name, city_state, revenue, sales, salesmen",
        ),
        (
            "city_salesman_ranking",
            "period, city_id, rank, salesman_id, salesman_name, revenue, sales",
        ),
        (
            "salesman_ranking",
            "period, rank, salesman_id, salesman_name, salesman_code, revenue, sales",
        ),
        (
            "publication_periods",
            "period, sales, revenue, unresolved_sales, unresolved_revenue, sales_without_city, sales_without_salesman, sales_without_month",
        ),
        (
            "publication_sources",
            "source, position, newest_event_at, events",
        ),
    ] {
        let rows = |db: String| {
            // A ranking table's rows of a month carried by reference are the earlier
            // publication's that wrote them.
            let of_publication = if table.ends_with("_ranking") {
                format!(
                    "(publication_id, period) IN (SELECT rows_publication_id, period \
                     FROM {db}.publication_periods FINAL WHERE publication_id = '{publication}')"
                )
            } else {
                format!("publication_id = '{publication}'")
            };
            let sql = format!(
                "SELECT {columns} FROM {db}.{table} FINAL WHERE {of_publication} \
                 ORDER BY {columns} FORMAT TabSeparated"
            );
            async move { clickhouse_query(&sql).await }
        };
        let incremental = rows(run.namespace()).await?;
        let rebuilt = rows(rebuild_db.clone()).await?;
        assert!(
            !rebuilt.trim().is_empty(),
            "seed {seed}: the rebuild wrote no {table} rows"
        );
        assert_eq!(
            incremental, rebuilt,
            "seed {seed}: {table} of the incremental runs differs from a --rebuild"
        );
    }
    eprintln!(
        "seed {seed}: a --rebuild publishes exactly what the incremental runs did ({publication})"
    );
    clickhouse_query(&format!("DROP DATABASE IF EXISTS {rebuild_db}")).await?;
    drop(services);
    run.finish().await
}

/// Of `table`'s snapshots, how many maintenance's compaction committed (`replace`) and how many
/// have a parent that maintenance expired.
fn maintained(table: &iceberg::table::Table) -> (usize, usize) {
    let metadata = table.metadata();
    let replaces = metadata
        .snapshots()
        .filter(|s| s.summary().operation == iceberg::spec::Operation::Replace)
        .count();
    let expired = metadata
        .snapshots()
        .filter(|s| {
            s.parent_snapshot_id()
                .is_some_and(|p| metadata.snapshot_by_id(p).is_none())
        })
        .count();
    (replaces, expired)
}

/// What the API serves for every period of `want` (all time and each month), and for any month
/// the API lists that `want` does not have.
async fn api_all(http: &reqwest::Client, base: &str, want: &Rankings) -> Result<Rankings> {
    let mut periods: BTreeSet<Option<String>> = want.keys().cloned().collect();
    periods.extend(api_months(http, base).await?.into_iter().map(Some));
    let mut out = Rankings::new();
    for period in periods {
        let month = period.as_deref();
        let cities = api_ranking_for(http, base, "/v1/rankings/cities", "city_id", month).await?;
        let salesmen =
            api_ranking_for(http, base, "/v1/rankings/salesmen", "salesman_id", month).await?;
        out.insert(period, (cities, salesmen));
    }
    Ok(out)
}

/// Per period (all time, then each month): current sales, their revenue in cents, and how many
/// of them are unresolved.
type Summaries = BTreeMap<Option<String>, (u64, i64, u64)>;

/// What each period's summary (`period` of a ranking page, from `publication_periods`) must
/// say, from the sources: Postgres as it is, the files and the ERP as they hold their sales.
async fn oracle_summaries(
    db: &tokio_postgres::Client,
    files: &BTreeMap<String, SourceSale>,
    erp: &BTreeMap<String, SourceSale>,
) -> Result<Summaries> {
    let mut out = Summaries::new();
    for sale in source_sales(db, files, erp).await? {
        for period in std::iter::once(None).chain(sale.month.clone().map(Some)) {
            let s = out.entry(period).or_default();
            s.0 += 1;
            s.1 += sale.cents;
            s.2 += u64::from(sale.unresolved);
        }
    }
    Ok(out)
}

/// The periods whose summary the API states differently from `want` (and any period the API
/// has that the sources lack), also requiring `sales_without_month` 0 (every source sale has a
/// time).
async fn summary_mismatches(
    http: &reqwest::Client,
    base: &str,
    want: &Summaries,
) -> Result<Vec<String>> {
    let mut periods: BTreeSet<Option<String>> = want.keys().cloned().collect();
    periods.extend(api_months(http, base).await?.into_iter().map(Some));
    let mut out = Vec::new();
    for period in periods {
        let url = match &period {
            Some(m) => format!("{base}/v1/rankings/cities?limit=1&month={m}"),
            None => format!("{base}/v1/rankings/cities?limit=1"),
        };
        let body = get_json(http, &url).await?;
        let p = &body["period"];
        let got = (
            p["sales"].as_u64().unwrap_or(u64::MAX),
            cents_of(p["revenue"].as_str().unwrap_or("-"))?,
            p["unresolved_sales"].as_u64().unwrap_or(u64::MAX),
        );
        let expected = want.get(&period).copied().unwrap_or_default();
        if got != expected || p["sales_without_month"] != 0 {
            out.push(format!(
                "period {}: (sales, cents, unresolved) {got:?}, sales_without_month {}; the sources: {expected:?}",
                period.as_deref().unwrap_or("all time"),
                p["sales_without_month"]
            ));
        }
    }
    Ok(out)
}

/// Rows of `want` that `got` lacks or has differently (the first 10).
fn diff(want: &[RankRow], got: &[RankRow]) -> Vec<String> {
    let got: BTreeMap<i64, &RankRow> = got.iter().map(|r| (r.0, r)).collect();
    want.iter()
        .filter(|w| got.get(&w.0) != Some(w))
        .take(10)
        .map(|w| format!("want {w:?} got {:?}", got.get(&w.0)))
        .collect()
}

/// `"1234.50"` → cents.
fn cents_of(text: &str) -> Result<i64> {
    let amount: Decimal = text
        .parse()
        .with_context(|| format!("{text:?} is no amount"))?;
    (amount * Decimal::from(100))
        .to_i64()
        .with_context(|| format!("{text} in cents"))
}

/// The value of the Kafka record at `topic`/`partition`/`offset`, as text.
fn kafka_record(topic: &str, partition: i32, offset: i64) -> Result<String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};

    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:9092")
        .set("group.id", "e2e-provenance")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) if m.offset() == offset => {
                let value = m.payload().context("a tombstone")?;
                return Ok(String::from_utf8_lossy(value).into_owned());
            }
            Some(Ok(m)) => anyhow::bail!("asked for offset {offset}, Kafka gave {}", m.offset()),
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    anyhow::bail!("no record at {topic}/{partition}@{offset}")
}

/// The sources as they are now: Postgres, the files written, the ERP's current sales.
type Sources<'a> = (
    &'a tokio_postgres::Client,
    &'a BTreeMap<String, SourceSale>,
    &'a BTreeMap<String, SourceSale>,
);

/// Checks one `/provenance` answer (every page of it): its records sum exactly to
/// `(revenue, sales)` (the row as the oracle computed it, when given) and, with `sources`,
/// each record is a real source record with that amount now. Returns the number of records.
async fn check_provenance_page(
    http: &reqwest::Client,
    url: &str,
    want: Option<(&str, i64)>,
    sources: Option<Sources<'_>>,
) -> Result<usize> {
    let page = |offset: usize| async move {
        let url = format!("{url}&offset={offset}");
        let body: Value = http
            .get(&url)
            .send()
            .await?
            .error_for_status()
            .with_context(|| url.clone())?
            .json()
            .await?;
        anyhow::Ok(body)
    };
    let body = page(0).await?;
    let mut records = body["records"].as_array().context("no records")?.clone();
    let (revenue, sales) = (
        body["revenue"].as_str().context("no revenue")?,
        body["sales"].as_i64().context("no sales")?,
    );
    if let Some((want_revenue, want_sales)) = want {
        assert_eq!(
            (revenue, sales),
            (want_revenue, want_sales),
            "{url}: the row differs from the oracle"
        );
    }
    assert_eq!(body["total"].as_i64(), Some(sales), "{url}: total");
    while (records.len() as i64) < sales {
        let more = page(records.len()).await?;
        let more = more["records"].as_array().context("no records")?;
        anyhow::ensure!(!more.is_empty(), "{url}: pages end before total {sales}");
        records.extend(more.iter().cloned());
    }
    assert_eq!(records.len() as i64, sales, "{url}: every page together");
    assert_eq!(body["records_revenue"].as_str(), Some(revenue), "{url}");
    let mut sum = 0i64;
    for (i, r) in records.iter().enumerate() {
        let amount = r["amount"].as_str().map(cents_of).transpose()?.unwrap_or(0);
        sum += amount;
        let sale_id = r["sale_id"].as_str().context("sale_id")?;
        let kafka = &r["kafka"];
        let (topic, partition, offset) = (
            kafka["topic"].as_str().context("topic")?,
            kafka["partition"].as_i64().context("partition")? as i32,
            kafka["offset"].as_i64().context("offset")?,
        );
        let Some((db, files, erp)) = sources else {
            continue;
        };
        match r["source"].as_str() {
            Some("pg") => {
                let id: i64 = sale_id.parse()?;
                let row = db
                    .query_opt(
                        "SELECT (amount * 100)::bigint FROM sale WHERE id = $1",
                        &[&id],
                    )
                    .await?
                    .with_context(|| format!("{url}: pg sale {id} is not in Postgres"))?;
                assert_eq!(row.get::<_, i64>(0), amount, "{url}: pg sale {id}");
                assert!(r["source_record"]["lsn"].as_i64().is_some(), "{url}: {r}");
            }
            Some(source @ ("files" | "erp")) => {
                let (_, id) = sale_id.split_once('/').context("origin/id")?;
                let held = if source == "files" { files } else { erp };
                let sale = held
                    .get(id)
                    .with_context(|| format!("{url}: {source} sale {sale_id} is not current"))?;
                assert_eq!(sale.cents, amount, "{url}: {source} sale {sale_id}");
                assert!(r["source_record"]["detail"].is_object(), "{url}: {r}");
                let trace_id = r["trace_id"].as_str().unwrap_or_default();
                assert!(
                    trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{url}: {source} sale {sale_id} has no ingest trace id: {r}"
                );
            }
            other => panic!("{url}: unknown source {other:?} in {r}"),
        }
        // The carrying Kafka record is there and is about this sale (a sample: each fetch
        // opens a consumer).
        if i < 3 {
            let value = kafka_record(topic, partition, offset)?;
            let bare_id = sale_id.rsplit('/').next().unwrap_or(sale_id);
            assert!(
                value.contains(bare_id),
                "{url}: {topic}/{partition}@{offset} does not mention sale {sale_id}: {value}"
            );
        }
    }
    assert_eq!(
        sum,
        cents_of(revenue)?,
        "{url}: the records do not sum to the row's revenue"
    );
    if body["records_from"] == "kept_state" {
        FROM_KEPT_STATE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(records.len())
}

/// Provenance pages whose records the API read from the marts' kept state (the rest: from the
/// lake), so the checks above are known to have held for that path too.
static FROM_KEPT_STATE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Record-level provenance on the final state: for random rows of each ranking, all time and
/// in random months, the records behind the row sum exactly to it and are real source records;
/// and at an earlier snapshot they sum to that snapshot's row.
async fn check_provenance(
    http: &reqwest::Client,
    base: &str,
    rng: &mut ChaCha8Rng,
    want: &Rankings,
    sources: Sources<'_>,
) -> Result<()> {
    let months: Vec<&Option<String>> = want.keys().filter(|m| m.is_some()).collect();
    let mut periods = vec![&None];
    periods.extend(months.choose_multiple(rng, 2).copied());
    let (mut rows, mut records) = (0, 0);
    let from_state_before = FROM_KEPT_STATE.load(std::sync::atomic::Ordering::Relaxed);
    for period in periods {
        let month = period
            .as_deref()
            .map_or(String::new(), |m| format!("&month={m}"));
        let (cities, salesmen) = &want[period];
        for (city, revenue, sales, _) in cities.choose_multiple(rng, 3) {
            let url = format!("{base}/v1/rankings/cities/{city}/provenance?limit=1000{month}");
            records +=
                check_provenance_page(http, &url, Some((revenue, *sales)), Some(sources)).await?;
            // One of its salesmen there: the API's row is the reference (the oracle's
            // per-city salesman rows are not kept here), and the records must be his, there.
            let body: Value = http.get(&url).send().await?.json().await?;
            let salesman = body["records"]
                .as_array()
                .and_then(|r| r.choose(rng))
                .and_then(|r| r["salesman_id"].as_i64());
            if let Some(salesman) = salesman {
                let url = format!(
                    "{base}/v1/rankings/cities/{city}/salesmen/{salesman}/provenance?limit=1000{month}"
                );
                records += check_provenance_page(http, &url, None, Some(sources)).await?;
                rows += 1;
            }
            rows += 1;
        }
        for (salesman, revenue, sales, _) in salesmen.choose_multiple(rng, 3) {
            let url =
                format!("{base}/v1/rankings/salesmen/{salesman}/provenance?limit=1000{month}");
            records +=
                check_provenance_page(http, &url, Some((revenue, *sales)), Some(sources)).await?;
            rows += 1;
        }
    }
    // The pipeline is settled here: the marts' state is folded to the latest publication, so
    // its rows' records come from the state (a page read while a run was between its state
    // commit and its publish would come from the lake: not every page, then, but not none).
    let from_state = FROM_KEPT_STATE.load(std::sync::atomic::Ordering::Relaxed) - from_state_before;
    anyhow::ensure!(
        from_state > 0,
        "provenance: none of the latest publication's pages was read from the marts' kept state"
    );
    eprintln!("provenance: {from_state} pages of the latest publication read from the kept state");

    // Maintenance runs every 2 s without a full-resolution window and the marts pin only the
    // latest publication's snapshots, so a snapshot listed here may expire before it is read
    // (410 before-retention): list again and retry, a few times.
    let mut attempt = 0;
    let middle = loop {
        attempt += 1;
        match provenance_in_the_past(http, base).await {
            Ok(middle) => break middle,
            Err(e) if attempt < 5 && format!("{e:#}").contains("410") => {
                eprintln!(
                    "time travel attempt {attempt}: the snapshot expired meanwhile ({e:#}); again"
                );
            }
            Err(e) => return Err(e),
        }
    };
    eprintln!(
        "provenance: {rows} ranking rows, {records} source records, each sums exactly; at snapshot {middle} too"
    );
    Ok(())
}

/// Time travel: at a pg_sale snapshot from the middle of the run (any table's, when pg_sale has
/// none inside every table's kept history), the provenance of that
/// snapshot's top city sums to that snapshot's row (the sources have moved on since, so only the
/// sums are checked). Returns the snapshot.
async fn provenance_in_the_past(http: &reqwest::Client, base: &str) -> Result<i64> {
    let snapshots: Value = http
        .get(format!("{base}/v1/snapshots"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let pg_sale = snapshots["tables"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["table"] == "pg_sale"))
        .and_then(|t| t["snapshots"].as_array())
        .context("no pg_sale snapshots")?;
    // A time the whole lake can still be cut at: each table's kept history starts at its oldest
    // snapshot when that one's parent expired (`tributary_raw::snapshots::history_starts`), and
    // the API refuses times before any table's start (410 before-retention).
    let at = |s: &Value| {
        s["timestamp"]
            .as_str()
            .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
    };
    let cut_from = snapshots["tables"]
        .as_array()
        .context("no tables")?
        .iter()
        .filter_map(|t| {
            let listed = t["snapshots"].as_array()?;
            let oldest = listed.iter().min_by_key(|s| at(s))?;
            let parent = oldest["parent_snapshot_id"].as_i64()?;
            let expired = !listed
                .iter()
                .any(|s| s["snapshot_id"].as_i64() == Some(parent));
            expired.then(|| at(oldest)).flatten()
        })
        .max();
    let cuttable = |listed: &[Value]| -> Vec<Value> {
        let mut kept: Vec<Value> = listed
            .iter()
            .filter(|s| cut_from.is_none_or(|from| at(s).is_some_and(|t| t >= from)))
            .cloned()
            .collect();
        kept.sort_by_key(|s| at(s));
        kept
    };
    // pg_sale's newest snapshot may be older than another table's oldest kept one (that table
    // committed last and its history was expired since): then any table's snapshot inside the
    // kept history cuts the whole lake just as well.
    let mut candidates = cuttable(pg_sale);
    if candidates.is_empty() {
        let every: Vec<Value> = snapshots["tables"]
            .as_array()
            .context("no tables")?
            .iter()
            .filter_map(|t| t["snapshots"].as_array())
            .flatten()
            .cloned()
            .collect();
        candidates = cuttable(&every);
    }
    let middle = candidates
        .get(candidates.len() / 2)
        .context("no snapshot inside every table's kept history")?["snapshot_id"]
        .as_i64()
        .context("snapshot_id")?;
    let then: Value = http
        .get(format!(
            "{base}/v1/rankings/cities?as_of_snapshot={middle}&limit=1"
        ))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    if let Some(top) = then["items"].as_array().and_then(|i| i.first()) {
        let city = top["city_id"].as_i64().context("city_id")?;
        let url = format!(
            "{base}/v1/rankings/cities/{city}/provenance?as_of_snapshot={middle}&limit=1000"
        );
        let (revenue, sales) = (
            top["revenue"].as_str().context("revenue")?,
            top["sales"].as_i64().context("sales")?,
        );
        // The sources have moved on since: only the sums are checked.
        check_provenance_page(http, &url, Some((revenue, sales)), None).await?;
    }
    Ok(middle)
}

/// The outage test: the oracle's workload while, each round, one of the stack's services
/// (Postgres, the Kafka broker, Kafka Connect, ClickHouse, the object store, in turn) is
/// stopped for `OUTAGE_SECONDS` (default 60) right after the round's changes: none of our
/// services exits, each with a readiness check on it reports not ready meanwhile, and once it
/// is back the rankings equal the sources' and every record is in the lake exactly once.
/// `OUTAGE_SEED`; `OUTAGE_ROUNDS` (default 5: each service once). `OUTAGE_DEPENDENCIES`
/// (comma-separated, default all of them in that order) picks the services stopped in turn.
#[tokio::test(flavor = "multi_thread")]
async fn each_dependency_down_for_a_while_stalls_nothing_and_loses_nothing() -> Result<()> {
    let seed = env_number("OUTAGE_SEED").unwrap_or_else(rand::random);
    let rounds = env_number("OUTAGE_ROUNDS").unwrap_or(stack::KILLABLE.len());
    let down = Duration::from_secs(env_number("OUTAGE_SECONDS").unwrap_or(60));
    eprintln!(
        "outage seed {seed}, {rounds} rounds, {down:?} down a round (replay: OUTAGE_SEED={seed})"
    );
    workload(seed, rounds, Disruption::Outages(down)).await
}

/// The crash point test: the oracle's workload while, each round, one service of ours is
/// armed to abort at one exact step (`tributary_common::failpoint::POINTS`, in turn: after a
/// flush's Parquet files are written and before the catalog commit; after a commit the lander
/// never saw the answer of; between the dead-letter and the change-table commits; between the
/// marts' publication and their state commit; inside an ingestor's Kafka transaction). The
/// service must abort there (SIGABRT) once the round's changes reach it; started again, the
/// rankings equal the sources' and every record is in the lake exactly once, the ledger
/// balanced. `CRASH_SEED`; `CRASH_ROUNDS` (default: each point once).
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_at_each_crash_point_loses_and_duplicates_nothing() -> Result<()> {
    let seed = env_number("CRASH_SEED").unwrap_or_else(rand::random);
    let rounds = env_number("CRASH_ROUNDS").unwrap_or(tributary_common::failpoint::POINTS.len());
    let points: Vec<String> = (0..rounds)
        .map(|r| format!("{} in {}", crash_point(r).0, crash_point(r).1.join(" and ")))
        .collect();
    eprintln!(
        "crash seed {seed}, {rounds} rounds: {} (replay: CRASH_SEED={seed})",
        points.join(", ")
    );
    workload(seed, rounds, Disruption::CrashPoints).await
}

/// The slowdown test: the oracle's workload while, each round, the object store, ClickHouse,
/// Postgres and Kafka (behind proxies the lander, the marts and the API go through) answer every chunk 200 ms late
/// for `SLOW_SECONDS` (default 15), then stall (connections open, nothing forwarded) for as
/// long: none of our services exits, the lander and the marts report not ready while stalled,
/// and once they answer again the rankings equal the sources' and every record is in the lake
/// exactly once. `SLOW_SEED`; `SLOW_ROUNDS` (default 2).
#[tokio::test(flavor = "multi_thread")]
async fn slow_and_stalled_dependencies_stall_nothing_for_good_and_lose_nothing() -> Result<()> {
    let seed = env_number("SLOW_SEED").unwrap_or_else(rand::random);
    let rounds = env_number("SLOW_ROUNDS").unwrap_or(2);
    let down = Duration::from_secs(env_number("SLOW_SECONDS").unwrap_or(15));
    eprintln!(
        "slowdown seed {seed}, {rounds} rounds, {down:?} slow then {down:?} stalled a round (replay: SLOW_SEED={seed})"
    );
    workload(seed, rounds, Disruption::Slowdowns(down)).await
}

/// Every record a `read_committed` reader sees on every topic of the run (the source's three
/// Debezium topics, the ingestors' sales and dead-letter topics) is in the lake exactly once,
/// as a raw row or a dead letter, and nothing else is. Waits up to two minutes for the lander to
/// land what no ranking shows, then names what differs.
async fn check_exactly_once(
    run: &TestPipeline,
    http: &reqwest::Client,
    base: &str,
    replay: &str,
) -> Result<()> {
    let settings = tributary_common::LakeSettings {
        warehouse: "s3://warehouse".into(),
        namespace: run.namespace(),
        ..Default::default()
    };
    let lake = tributary_raw::catalog::open(&settings).await?;
    let topics = run_topics(run);
    let mut expected = BTreeMap::new();
    for topic in &topics {
        expected.insert(topic.clone(), committed_offsets(topic)?);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut batches = Vec::new();
        for table in RawTable::ALL {
            let table = load_table(&lake, &run.namespace(), table).await?;
            batches.extend(read_table(&table, None).await?);
        }
        let problems: Vec<String> = topics
            .iter()
            .filter_map(|topic| {
                let mut landed = BTreeMap::new();
                offsets_in(&batches, topic, &mut landed);
                exactly_once_diff(&expected[topic], &landed).map(|d| format!("{topic}: {d}"))
            })
            .collect();
        if problems.is_empty() {
            let records: usize = expected.values().map(BTreeSet::len).sum();
            eprintln!(
                "{records} records on {} topics, each in the lake exactly once",
                topics.len()
            );
            return check_ledger(http, base, &expected, replay).await;
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the lake does not hold each committed record exactly once (replay: {replay}):\n{}",
                problems.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// The API's offset-coverage ledger (`/v1/ledger`) agrees with Kafka and the lake: every
/// partition balanced (each consumed record landed, dead-lettered or a tombstone, the rows
/// exactly those), each counting as many records as a `read_committed` reader sees in its
/// range (no gap), and covering every committed record of the run's topics.
async fn check_ledger(
    http: &reqwest::Client,
    base: &str,
    committed: &BTreeMap<String, BTreeSet<(i32, i64)>>,
    replay: &str,
) -> Result<()> {
    let ledger = get_json(http, &format!("{base}/v1/ledger")).await?;
    let partitions = ledger["partitions"]
        .as_array()
        .context("/v1/ledger: no partitions")?;
    let mut problems = Vec::new();
    for p in partitions.iter().filter(|p| p["balanced"] != true) {
        problems.push(format!("unbalanced: {p}"));
    }
    let mut consumed = 0;
    for (topic, records) in committed {
        let partitions_of_topic: BTreeSet<i32> = records.iter().map(|(p, _)| *p).collect();
        for partition in partitions_of_topic {
            let Some(entry) = partitions
                .iter()
                .find(|p| p["topic"] == topic.as_str() && p["partition"] == partition)
            else {
                problems.push(format!("{topic}/{partition}: no ledger"));
                continue;
            };
            let (first, next) = (
                entry["first_offset"].as_i64().unwrap_or(-1),
                entry["next_offset"].as_i64().unwrap_or(-1),
            );
            let in_log: Vec<i64> = records
                .iter()
                .filter(|(p, _)| *p == partition)
                .map(|(_, o)| *o)
                .collect();
            let in_range = in_log.iter().filter(|o| (first..next).contains(*o)).count();
            if entry["consumed"].as_u64() != Some(in_range as u64)
                || in_log.iter().any(|o| !(first..next).contains(o))
            {
                problems.push(format!(
                    "{topic}/{partition}: the ledger covers {first}..{next} with {} records; Kafka has {} records at offsets {:?}..={:?}, {in_range} in that range",
                    entry["consumed"],
                    in_log.len(),
                    in_log.first(),
                    in_log.last()
                ));
            }
            consumed += in_range;
        }
    }
    // The sources' own numbering: every record of every partner file once, none missing; every
    // ERP change once, and (the simulator numbers its changes without gaps) none missing.
    let (files, erp) = (
        ledger["files"].as_array().context("/v1/ledger: no files")?,
        ledger["erp"].as_array().context("/v1/ledger: no erp")?,
    );
    anyhow::ensure!(
        !files.is_empty() && !erp.is_empty(),
        "the ledger numbers no file or ERP change: {ledger}"
    );
    for entry in files.iter().chain(erp) {
        if entry["balanced"] != true || entry["missing"] != 0 {
            problems.push(format!("source numbering: {entry}"));
        }
    }
    anyhow::ensure!(
        problems.is_empty(),
        "the ledger does not account for the run's records (replay: {replay}):\n{}",
        problems.join("\n")
    );
    eprintln!(
        "ledger: {} partitions balanced, {consumed} records each accounted for once; {} file versions and {} ERP changes numbered without a gap",
        partitions.len(),
        files.len(),
        erp.iter()
            .map(|e| e["sales"].as_u64().unwrap_or(0) + e["dead_letters"].as_u64().unwrap_or(0))
            .sum::<u64>()
    );
    Ok(())
}

/// The services the outage test stops in turn: `OUTAGE_DEPENDENCIES` (comma-separated names of
/// [`stack::KILLABLE`]) or all of them.
fn outage_dependencies() -> Result<Vec<&'static str>> {
    let Ok(names) = std::env::var("OUTAGE_DEPENDENCIES") else {
        return Ok(stack::KILLABLE.to_vec());
    };
    let picked = names
        .split(',')
        .map(|name| {
            let name = name.trim();
            stack::KILLABLE
                .iter()
                .find(|known| **known == name)
                .copied()
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "OUTAGE_DEPENDENCIES: {name:?} is not one of {:?}",
                        stack::KILLABLE
                    )
                })
        })
        .collect::<Result<Vec<_>>>()?;
    anyhow::ensure!(!picked.is_empty(), "OUTAGE_DEPENDENCIES names no service");
    Ok(picked)
}
