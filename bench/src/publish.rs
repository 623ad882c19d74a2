//! What writing one publication to ClickHouse costs, by how the HTTP bodies travel: LZ4 blocks
//! (`clickhouse.compression = "lz4"`, the default, as the `clickhouse` crate's) against
//! uncompressed (`"none"`), the same publication through both, the two alternating run by run so
//! they see the same machine. The marts benchmark times a whole run, in which this is
//! one phase among others and the machine's drift between runs hides it; here nothing else runs.
//! (Until 2026-12-08 this compared the ranking tables' `publication_id` as `LowCardinality` with
//! a plain `String`: `bench/results/publish-2026-12-06-c7807e6.md`.)
//!
//! The rankings are synthetic, sized like the benchmark's 10 M-event history (25 months and all
//! time, 50 cities, 500 salesmen, `--salesmen-per-city` salesmen in each city's ranking): only
//! their number and the width of their rows matter to ClickHouse.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use tributary_common::{ClickHouseCompression, ClickHouseSettings};
use tributary_rankings::money::Money;
use tributary_rankings::period::Month;
use tributary_rankings::publication::{LakeSnapshot, LakeSnapshots, Publication};
use tributary_rankings::ranking::{
    CityInfo, CitySalesmanTotals, CityTotals, PeriodTotals, SalesmanInfo, SalesmanTotals, Summary,
    Totals, rank_periods,
};
use tributary_rankings::store::{ClickHouseStore, PublicationWriter};

use crate::Row;

const CITIES: i64 = 50;
const SALESMEN: i64 = 500;
const MONTHS: u16 = 25;

/// The settings compared: the name in results, and the client's body compression.
const VARIANTS: [(&str, ClickHouseCompression); 2] = [
    ("LZ4 bodies (the default)", ClickHouseCompression::Lz4),
    ("uncompressed bodies", ClickHouseCompression::None),
];

/// xorshift64: revenues that differ from row to row, the same every run.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn cents(seed: &mut u64, max: u64) -> Money {
    Money::try_from_cents(i128::from(next(seed) % max)).expect("small amounts fit")
}

fn salesman(id: i64, seed: &mut u64) -> SalesmanTotals {
    SalesmanTotals {
        salesman_id: id,
        info: Some(SalesmanInfo {
            name: format!("Salesman {id}"),
            code: format!("S{id}"),
        }),
        revenue: cents(seed, 100_000_000),
        sales: 10,
    }
}

/// One period's totals: every city, `per_city` salesmen in each, every salesman nationwide.
fn period_totals(per_city: i64, seed: &mut u64) -> Totals {
    let cities = (1..=CITIES)
        .map(|id| CityTotals {
            city_id: id,
            info: Some(CityInfo {
                name: format!("City {id}"),
                state: "SP".into(),
            }),
            revenue: cents(seed, 1_000_000_000),
            sales: 100,
        })
        .collect();
    let city_salesmen = (1..=CITIES)
        .flat_map(|city| (0..per_city).map(move |n| (city, 1 + (city * 7 + n * 13) % SALESMEN)))
        .map(|(city_id, id)| CitySalesmanTotals {
            city_id,
            salesman: salesman(id, seed),
        })
        .collect();
    Totals {
        cities,
        city_salesmen,
        salesmen: (1..=SALESMEN).map(|id| salesman(id, seed)).collect(),
        summary: Summary::default(),
    }
}

/// A publication of all time and `MONTHS` months, named after `run` (each run writes new rows).
fn publication(per_city: i64, run: usize, seed: &mut u64) -> Publication {
    let months: BTreeMap<Month, Totals> = (0..MONTHS)
        .filter_map(|i| Month::new(2025 + i / 12, (i % 12 + 1) as u8))
        .map(|month| (month, period_totals(per_city, seed)))
        .collect();
    let all = period_totals(per_city, seed);
    let snapshot = |table: &str, id: i64| LakeSnapshot {
        table: table.into(),
        snapshot_id: Some(id),
    };
    // Ids as long as real ones (19 digits each): their width is what the layouts differ in.
    let snapshots = LakeSnapshots(vec![
        snapshot("pg_sale", 1_234_567_890_123_456_789 + run as i64),
        snapshot("pg_salesman", 2_234_567_890_123_456_789),
        snapshot("pg_city", 3_234_567_890_123_456_789),
        snapshot("file_sale", 4_234_567_890_123_456_789),
        snapshot("erp_sale", 5_234_567_890_123_456_789),
    ]);
    let now = chrono::Utc::now();
    Publication::of_periods(
        snapshots,
        format!("bench-publish-{run}"),
        now,
        rank_periods(PeriodTotals { all, months }),
    )
    .with_lake_committed_ms(Some(now.timestamp_millis()))
}

/// `runs` publications through each variant, alternating which goes first; a row per variant
/// with the median time and its spread.
pub async fn run(
    clickhouse: &ClickHouseSettings,
    id: &str,
    per_city: i64,
    runs: usize,
) -> Result<Vec<Row>> {
    let mut stores = Vec::new();
    for (n, (_, compression)) in VARIANTS.iter().enumerate() {
        let database = format!("bench_publish_{id}_{n}");
        let store = ClickHouseStore::new(&ClickHouseSettings {
            database: database.clone(),
            compression: *compression,
            ..clickhouse.clone()
        })?;
        store.ensure_schema().await?;
        stores.push((database, store));
    }
    // The databases are dropped whether or not every publish succeeded.
    let timed = timed_publishes(&stores, per_city, runs).await;
    for (database, _) in &stores {
        crate::cleanup::drop_clickhouse_database(clickhouse, database).await;
    }
    let (seconds, ranking_rows) = timed?;
    report(seconds, ranking_rows, runs)
}

/// Times `runs` publications through each of `stores`, alternating which goes first: the
/// seconds of each variant, and the ranking rows of a publication.
async fn timed_publishes(
    stores: &[(String, ClickHouseStore)],
    per_city: i64,
    runs: usize,
) -> Result<([Vec<f64>; 2], usize)> {
    let mut seed = 88_172_645_463_325_252_u64;
    let mut seconds: [Vec<f64>; 2] = Default::default();
    let mut ranking_rows = 0;
    for run in 0..runs.max(1) {
        let publication = publication(per_city, run, &mut seed);
        let (cities, city_salesmen, salesmen) = publication.ranking_row_counts();
        ranking_rows = cities + city_salesmen + salesmen;
        let order = if run % 2 == 0 { [0, 1] } else { [1, 0] };
        for variant in order {
            let started = Instant::now();
            stores[variant].1.publish(&publication).await?;
            seconds[variant].push(started.elapsed().as_secs_f64());
        }
    }
    Ok((seconds, ranking_rows))
}

/// A row per variant with the median time and its spread.
fn report(seconds: [Vec<f64>; 2], ranking_rows: usize, runs: usize) -> Result<Vec<Row>> {
    let medians = seconds.clone().map(|s| crate::summary(s).0);
    Ok(VARIANTS
        .iter()
        .zip(seconds)
        .enumerate()
        .map(|(n, ((variant, _), s))| {
            let (median, min, max) = crate::summary(s);
            let versus = if n == 0 {
                format!("; {:.2}x the uncompressed time", median / medians[1])
            } else {
                String::new()
            };
            Row {
                benchmark: "publish".into(),
                subject: format!("publish {ranking_rows} ranking rows, {variant}"),
                events: ranking_rows,
                seconds: median,
                events_per_second: ranking_rows as f64 / median,
                note: format!(
                    "median of {} (min {min:.2}s, max {max:.2}s), the variants alternating{versus}",
                    runs.max(1)
                ),
            }
        })
        .collect())
}
