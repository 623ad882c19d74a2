//! The `PublicationWriter` contract, run against `MemoryStore` (tests/store_contract.rs) and a
//! real ClickHouse (tests/clickhouse_store.rs).
#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tributary_common::ClickHouseSettings;
use tributary_rankings::ranking::{
    CityInfo, CitySalesmanTotals, CityTotals, SalesmanInfo, SalesmanTotals, Summary, Totals,
    rank_all,
};
use tributary_rankings::schema::{CityRankingRow, MartRunRow, RunStatus, SalesmanRankingRow};
use tributary_rankings::{
    ClickHouseStore, LakeSnapshot, LakeSnapshots, Money, Month, Page, Period, Publication,
    PublicationWriter, RankingQueries,
};

pub fn snapshots(sale: i64) -> LakeSnapshots {
    LakeSnapshots(vec![
        LakeSnapshot {
            table: "pg_sale".into(),
            snapshot_id: Some(sale),
        },
        LakeSnapshot {
            table: "pg_salesman".into(),
            snapshot_id: Some(20),
        },
        LakeSnapshot {
            table: "pg_city".into(),
            snapshot_id: None,
        },
    ])
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
}

fn salesman(id: i64, cents: i64, sales: u64, name: Option<&str>) -> SalesmanTotals {
    SalesmanTotals {
        salesman_id: id,
        info: name.map(|n| SalesmanInfo {
            name: n.to_string(),
            code: format!("S{id}"),
        }),
        revenue: Money::from_cents(cents),
        sales,
    }
}

/// Three cities (one unresolved, two tied), four salesmen, amounts with cents.
pub fn sample(sale_snapshot: i64, run: &str, secs: i64) -> Publication {
    let city = |id, cents, sales, name: Option<&str>| CityTotals {
        city_id: id,
        info: name.map(|n| CityInfo {
            name: n.to_string(),
            state: "SP".into(),
        }),
        revenue: Money::from_cents(cents),
        sales,
    };
    let cs = |city_id, s| CitySalesmanTotals {
        city_id,
        salesman: s,
    };
    let totals = Totals {
        cities: vec![
            city(7, 123_450, 3, Some("Campinas")),
            city(3, 50_005, 2, Some("São Paulo")),
            city(9, 50_005, 1, None),
        ],
        city_salesmen: vec![
            cs(7, salesman(1, 100_000, 1, Some("Ana"))),
            cs(7, salesman(2, 23_450, 2, Some("Bruno"))),
            cs(3, salesman(2, 50_005, 2, Some("Bruno"))),
            cs(9, salesman(4, 50_005, 1, None)),
        ],
        salesmen: vec![
            salesman(1, 100_000, 1, Some("Ana")),
            salesman(2, 73_455, 4, Some("Bruno")),
            salesman(4, 50_005, 1, None),
        ],
        summary: Summary {
            sales: 6,
            revenue: Money::from_cents(223_460),
            unresolved_sales: 1,
            unresolved_revenue: Money::from_cents(50_005),
            sales_without_city: 0,
            sales_without_salesman: 0,
            sales_without_month: 0,
        },
    };
    Publication::new(snapshots(sale_snapshot), run, at(secs), rank_all(totals))
}

const ALL: Page = Page {
    limit: 1000,
    offset: 0,
};

pub async fn round_trip(store: &dyn PublicationWriter) {
    store.ensure_schema().await.unwrap();
    store.ping().await.unwrap();
    assert!(store.latest_publication().await.unwrap().is_none());

    let p = sample(10, "run-1", 0);
    store.publish(&p).await.unwrap();
    let rows = p.rows();

    let latest = store.latest_publication().await.unwrap().unwrap();
    assert_eq!(latest, rows.publication);
    assert_eq!(
        store.publication(&p.id).await.unwrap(),
        Some(rows.publication.clone())
    );
    assert_eq!(store.publication("pg_sale:404").await.unwrap(), None);
    assert_eq!(
        latest.publication_id,
        "pg_sale:10,pg_salesman:20,pg_city:none"
    );
    assert_eq!(
        LakeSnapshots::from_json(&latest.publication_id, &latest.lake_snapshots).unwrap(),
        snapshots(10)
    );

    assert_eq!(
        store
            .city_ranking(&p.id, Period::AllTime, ALL)
            .await
            .unwrap(),
        rows.cities
    );
    let order: Vec<_> = rows.cities.iter().map(|c| (c.rank, c.city_id)).collect();
    assert_eq!(order, vec![(1, 7), (2, 3), (3, 9)]);
    assert_eq!(
        store
            .salesman_ranking(&p.id, Period::AllTime, ALL)
            .await
            .unwrap(),
        rows.salesmen
    );

    let page = Page {
        limit: 1,
        offset: 1,
    };
    assert_eq!(
        store
            .city_ranking(&p.id, Period::AllTime, page)
            .await
            .unwrap(),
        rows.cities[1..2].to_vec()
    );
    assert_eq!(
        store
            .salesman_ranking(&p.id, Period::AllTime, page)
            .await
            .unwrap(),
        rows.salesmen[1..2].to_vec()
    );

    let top = store
        .top_city_salesmen(&p.id, Period::AllTime, &[7, 9], 1)
        .await
        .unwrap();
    let top: Vec<_> = top
        .iter()
        .map(|r| (r.city_id, r.rank, r.salesman_id))
        .collect();
    assert_eq!(top, vec![(7, 1, 1), (9, 1, 4)]);
    assert!(
        store
            .top_city_salesmen(&p.id, Period::AllTime, &[], 10)
            .await
            .unwrap()
            .is_empty()
    );

    let in7 = store
        .city_salesman_ranking(&p.id, Period::AllTime, 7, ALL)
        .await
        .unwrap();
    let expected: Vec<_> = rows
        .city_salesmen
        .iter()
        .filter(|r| r.city_id == 7)
        .cloned()
        .collect();
    assert_eq!(in7, expected);
    assert_eq!(
        store
            .city(&p.id, Period::AllTime, 3)
            .await
            .unwrap()
            .unwrap(),
        rows.cities[1]
    );
    assert!(
        store
            .city(&p.id, Period::AllTime, 12345)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .city_ranking("no-such-publication", Period::AllTime, ALL)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn republishing_replaces_rows(store: &dyn PublicationWriter) {
    store.ensure_schema().await.unwrap();
    let first = sample(10, "run-1", 0);
    let second = sample(10, "run-2", 60);
    assert_eq!(first.id, second.id);
    store.publish(&first).await.unwrap();
    store.publish(&second).await.unwrap();
    // Re-publishing the older run must not win either.
    store.publish(&first).await.unwrap();

    let latest = store.latest_publication().await.unwrap().unwrap();
    assert_eq!(latest.run_id, "run-2");
    let cities = store
        .city_ranking(&first.id, Period::AllTime, ALL)
        .await
        .unwrap();
    assert_eq!(cities, second.rows().cities);
    let salesmen = store
        .salesman_ranking(&first.id, Period::AllTime, ALL)
        .await
        .unwrap();
    assert_eq!(salesmen, second.rows().salesmen);
    let in7 = store
        .city_salesman_ranking(&first.id, Period::AllTime, 7, ALL)
        .await
        .unwrap();
    assert_eq!(in7.len(), 2);
    assert!(in7.iter().all(|r| r.version == second.version()));
}

pub async fn latest_is_the_highest_version(store: &dyn PublicationWriter) {
    store.ensure_schema().await.unwrap();
    let older = sample(10, "run-1", 0);
    let newer = sample(11, "run-2", 60);
    store.publish(&newer).await.unwrap();
    store.publish(&older).await.unwrap();
    let latest = store.latest_publication().await.unwrap().unwrap();
    assert_eq!(latest.publication_id, newer.id);
    // Both publications stay readable by id.
    assert_eq!(
        store.publication(&older.id).await.unwrap().unwrap().run_id,
        "run-1"
    );
    assert_eq!(
        store
            .city_ranking(&older.id, Period::AllTime, ALL)
            .await
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        store
            .city_ranking(&newer.id, Period::AllTime, ALL)
            .await
            .unwrap()
            .len(),
        3
    );
}

pub async fn an_empty_publication_is_still_a_publication(store: &dyn PublicationWriter) {
    store.ensure_schema().await.unwrap();
    let empty = Publication::new(snapshots(1), "run-e", at(0), rank_all(Totals::default()));
    store.publish(&empty).await.unwrap();
    let latest = store.latest_publication().await.unwrap().unwrap();
    assert_eq!(latest.publication_id, empty.id);
    assert_eq!((latest.cities, latest.salesmen, latest.sales), (0, 0, 0));
    assert!(
        store
            .city_ranking(&empty.id, Period::AllTime, ALL)
            .await
            .unwrap()
            .is_empty()
    );
}

/// ClickHouse settings from the environment (`TRIBUTARY_CLICKHOUSE__URL`, …; default
/// 127.0.0.1:8123) with a database of this test's own.
pub fn clickhouse_settings(test: &str) -> ClickHouseSettings {
    #[derive(Default, serde::Serialize, serde::Deserialize)]
    #[serde(default)]
    struct Env {
        clickhouse: ClickHouseSettings,
    }
    let env = std::env::vars().filter(|(k, _)| k.starts_with("TRIBUTARY_CLICKHOUSE__"));
    let mut settings = tributary_common::load::<Env>(None, env)
        .expect("TRIBUTARY_CLICKHOUSE__* settings")
        .clickhouse;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    settings.database = format!("marts_test_{test}_{}_{nanos}", std::process::id());
    settings
}

/// A store on a fresh database; panics with instructions when ClickHouse is not running.
pub async fn clickhouse_store(test: &str) -> ClickHouseStore {
    let settings = clickhouse_settings(test);
    let store = ClickHouseStore::new(&settings).unwrap();
    if let Err(e) = store.ping().await {
        panic!(
            "ClickHouse is not reachable at {} ({e}). These integration tests need the local \
             stack: run `make test` (it starts ClickHouse), or point TRIBUTARY_CLICKHOUSE__URL \
             at a running server.",
            settings.url
        );
    }
    store
}

/// Drops the test's database (only after the test passed, so a failure leaves it to inspect).
pub async fn drop_database(store: &ClickHouseStore) {
    store
        .client()
        .query(&format!("DROP DATABASE IF EXISTS {}", store.database()))
        .execute()
        .await
        .unwrap();
}

pub fn month(text: &str) -> Month {
    text.parse().unwrap()
}

/// `sample` plus two months: January (two salesmen tied, one city) and March (one of each).
pub fn sample_with_months(sale_snapshot: i64, run: &str, secs: i64) -> Publication {
    let totals = |salesmen: Vec<SalesmanTotals>, city_id: i64| {
        let revenue = salesmen.iter().map(|s| s.revenue.cents()).sum::<i64>();
        let sales = salesmen.iter().map(|s| s.sales).sum::<u64>();
        Totals {
            cities: vec![CityTotals {
                city_id,
                info: None,
                revenue: Money::from_cents(revenue),
                sales,
            }],
            city_salesmen: salesmen
                .iter()
                .map(|s| CitySalesmanTotals {
                    city_id,
                    salesman: s.clone(),
                })
                .collect(),
            summary: Summary {
                sales,
                revenue: Money::from_cents(revenue),
                ..Summary::default()
            },
            salesmen,
        }
    };
    let months = BTreeMap::from([
        (
            month("2026-01"),
            rank_all(totals(
                vec![
                    salesman(2, 300, 1, Some("Bruno")),
                    salesman(1, 300, 1, Some("Ana")),
                ],
                7,
            )),
        ),
        (
            month("2026-03"),
            rank_all(totals(vec![salesman(4, 50_005, 1, None)], 9)),
        ),
    ]);
    sample(sale_snapshot, run, secs).with_months(months)
}

pub async fn periods_are_read_apart(store: &dyn PublicationWriter) {
    store.ensure_schema().await.unwrap();
    let p = sample_with_months(10, "run-1", 0);
    store.publish(&p).await.unwrap();
    let rows = p.rows();
    let jan = Period::Month(month("2026-01"));
    let mar = Period::Month(month("2026-03"));

    // All time is unchanged by the months next to it.
    let all = store
        .city_ranking(&p.id, Period::AllTime, ALL)
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|r| r.period == "all"));
    let salesmen = store
        .salesman_ranking(&p.id, Period::AllTime, ALL)
        .await
        .unwrap();
    assert_eq!(salesmen.len(), 3);

    // January: the tie goes to the lower id.
    let jan_salesmen = store.salesman_ranking(&p.id, jan, ALL).await.unwrap();
    let order: Vec<_> = jan_salesmen
        .iter()
        .map(|r| (r.period.as_str(), r.rank, r.salesman_id, r.revenue))
        .collect();
    assert_eq!(order, vec![("2026-01", 1, 1, 300), ("2026-01", 2, 2, 300)]);
    let expected: Vec<_> = rows
        .salesmen
        .iter()
        .filter(|r| r.period == "2026-01")
        .cloned()
        .collect();
    assert_eq!(jan_salesmen, expected);
    let in7 = store
        .city_salesman_ranking(&p.id, jan, 7, ALL)
        .await
        .unwrap();
    assert_eq!(in7.len(), 2);
    assert_eq!(
        store
            .top_city_salesmen(&p.id, jan, &[7, 9], 1)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store.city(&p.id, jan, 9).await.unwrap().is_none());
    assert_eq!(store.city(&p.id, mar, 9).await.unwrap().unwrap().rank, 1);
    assert_eq!(store.city_ranking(&p.id, mar, ALL).await.unwrap().len(), 1);

    // The periods: all first, then the months in order; a month without sales has none.
    let periods = store.periods(&p.id).await.unwrap();
    assert_eq!(periods, rows.periods);
    let keys: Vec<_> = periods.iter().map(|r| r.period.as_str()).collect();
    assert_eq!(keys, vec!["all", "2026-01", "2026-03"]);
    let jan_row = store.period(&p.id, jan).await.unwrap().unwrap();
    assert_eq!(
        (jan_row.sales, jan_row.revenue, jan_row.salesmen),
        (2, 600, 2)
    );
    let empty = Period::Month(month("2025-12"));
    assert!(store.period(&p.id, empty).await.unwrap().is_none());
    assert!(
        store
            .salesman_ranking(&p.id, empty, ALL)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .city_ranking(&p.id, empty, ALL)
            .await
            .unwrap()
            .is_empty()
    );
}

pub fn run_row(run_id: &str, secs: i64, status: RunStatus) -> MartRunRow {
    MartRunRow {
        run_id: run_id.to_string(),
        started_at: at(secs),
        finished_at: at(secs + 2),
        status: status.as_str().to_string(),
        error: match status {
            RunStatus::Failed => "lake table raw.pg_sale does not exist".into(),
            _ => String::new(),
        },
        publication_id: "pg_sale:10,pg_salesman:20,pg_city:none".into(),
        lake_snapshots: snapshots(10).to_json(),
        rows_in: 6,
        rows_out: 10,
    }
}

pub async fn runs_are_recorded_newest_first(store: &dyn PublicationWriter) {
    store.ensure_schema().await.unwrap();
    assert!(store.runs(10).await.unwrap().is_empty());
    let runs = [
        run_row("run-1", 0, RunStatus::Published),
        run_row("run-3", 120, RunStatus::Failed),
        run_row("run-2", 60, RunStatus::Unchanged),
    ];
    for r in &runs {
        store.record_run(r).await.unwrap();
    }
    let latest = store.runs(2).await.unwrap();
    assert_eq!(latest, vec![runs[1].clone(), runs[2].clone()]);
    assert_eq!(store.runs(10).await.unwrap().len(), 3);
}

/// The filtered and detail reads the API serves (`RankingQueries`' defaults scan whole rankings;
/// ClickHouse answers each with its own query): the same answers on every store.
pub async fn detail_reads_agree_with_the_rankings(store: &dyn PublicationWriter) {
    store.ensure_schema().await.unwrap();
    let p = sample_with_months(10, "run-1", 0);
    store.publish(&p).await.unwrap();
    let id = p.rows().publication.publication_id.clone();
    let all = Period::AllTime;
    let page = |limit, offset| Page { limit, offset };

    // A state's cities keep their national rank; the unresolved city (no state) never matches.
    let (cities, total) = store
        .cities_in_state(&id, all, "SP", page(10, 0))
        .await
        .unwrap();
    assert_eq!(total, 2);
    let ranked: Vec<_> = cities.iter().map(|c| (c.city_id, c.rank)).collect();
    assert_eq!(ranked, [(7, 1), (3, 2)]);
    let (second, total) = store
        .cities_in_state(&id, all, "SP", page(1, 1))
        .await
        .unwrap();
    assert_eq!((second.len(), second[0].city_id, total), (1, 3, 2));
    assert_eq!(
        store
            .cities_in_state(&id, all, "RJ", page(10, 0))
            .await
            .unwrap()
            .1,
        0
    );

    // The nationwide ranking restricted to one city's salesmen keeps the nationwide rank.
    let (in_campinas, total) = store
        .salesmen_in_city(&id, all, 7, page(10, 0))
        .await
        .unwrap();
    let ranked: Vec<_> = in_campinas
        .iter()
        .map(|s| (s.salesman_id, s.rank))
        .collect();
    assert_eq!((ranked, total), (vec![(1, 1), (2, 2)], 2));

    // One salesman; his cities by his revenue there, then city id.
    let bruno = store.salesman(&id, all, 2).await.unwrap().unwrap();
    assert_eq!((bruno.rank, bruno.revenue, bruno.sales), (2, 73_455, 4));
    assert!(store.salesman(&id, all, 99).await.unwrap().is_none());
    let cities: Vec<_> = store
        .salesman_cities(&id, all, 2)
        .await
        .unwrap()
        .iter()
        .map(|c| (c.city_id, c.revenue))
        .collect();
    assert_eq!(cities, [(3, 50_005), (7, 23_450)]);

    // Cities by id (any order, absent ones left out).
    let mut some: Vec<_> = store
        .cities(&id, all, &[9, 7, 42])
        .await
        .unwrap()
        .iter()
        .map(|c| c.city_id)
        .collect();
    some.sort();
    assert_eq!(some, [7, 9]);

    // Per month, oldest first: Bruno sold in January only; city 9 in March only.
    let months: Vec<_> = store
        .salesman_months(&id, 2)
        .await
        .unwrap()
        .iter()
        .map(|s| (s.period.clone(), s.rank))
        .collect();
    assert_eq!(months, [("2026-01".to_string(), 2)]);
    let months: Vec<_> = store
        .city_months(&id, 9)
        .await
        .unwrap()
        .iter()
        .map(|c| c.period.clone())
        .collect();
    assert_eq!(months, ["2026-03"]);
}

/// A sample publication of sale snapshot `sale`, computed `secs` after the epoch of [`at`],
/// from lake snapshots committed a minute before.
fn aged(sale: i64, secs: i64) -> Publication {
    sample(sale, &format!("run-{sale}"), secs)
        .with_lake_committed_ms(Some(at(secs - 60).timestamp_millis()))
}

/// Retention drops whole partitions of old publications from every table, keeps the latest,
/// the pinned and the recent ones whole, is a no-op when repeated, and deletes old runs.
pub async fn pruning_keeps_the_latest_the_pinned_and_the_recent(store: &dyn PublicationWriter) {
    use tributary_rankings::retention::PublicationRetention;
    store.ensure_schema().await.unwrap();
    const HOUR: i64 = 3_600;
    let old = aged(1, 0);
    let pinned = aged(2, HOUR);
    let middle = aged(3, 2 * HOUR);
    let latest = aged(4, 3 * HOUR);
    for p in [&old, &pinned, &middle, &latest] {
        store.publish(p).await.unwrap();
    }
    let retention = PublicationRetention {
        publications_s: 30 * 60,
        pinned: [pinned.id.clone()].into(),
    };
    let now = at(3 * HOUR + 10 * 60);
    let plan = store.prune(&retention, now).await.unwrap();
    assert_eq!(plan.dropped, [old.id.clone(), middle.id.clone()]);
    assert_eq!(plan.retained, [pinned.id.clone(), latest.id.clone()]);
    assert_eq!(plan.drop_windows.len(), 2);

    let latest_row = store.latest_publication().await.unwrap().unwrap();
    assert_eq!(latest_row, latest.rows().publication);
    for gone in [&old, &middle] {
        assert!(
            store
                .period(&gone.id, Period::AllTime)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .city_ranking(&gone.id, Period::AllTime, ALL)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .salesman_ranking(&gone.id, Period::AllTime, ALL)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.sources(&gone.id).await.unwrap().is_empty());
    }
    for kept in [&pinned, &latest] {
        let rows = kept.rows();
        assert_eq!(
            store
                .city_ranking(&kept.id, Period::AllTime, ALL)
                .await
                .unwrap(),
            rows.cities
        );
        assert_eq!(
            store
                .salesman_ranking(&kept.id, Period::AllTime, ALL)
                .await
                .unwrap(),
            rows.salesmen
        );
    }
    // Nothing more to drop.
    let again = store.prune(&retention, now).await.unwrap();
    assert!(again.drop_windows.is_empty(), "{again:?}");
    assert_eq!(again.retained, plan.retained);

    // Runs: the one started before the cutoff hour goes (the delete may be asynchronous).
    store
        .record_run(&run_row("run-old", 0, RunStatus::Published))
        .await
        .unwrap();
    store
        .record_run(&run_row("run-new", 3 * HOUR, RunStatus::Published))
        .await
        .unwrap();
    assert_eq!(store.prune_runs(at(2 * HOUR)).await.unwrap(), 1);
    let mut runs = store.runs(10).await.unwrap();
    for _ in 0..100 {
        if runs.len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        runs = store.runs(10).await.unwrap();
    }
    assert_eq!(
        runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(),
        ["run-new"]
    );
}

/// What a reader compares of a ranking row: everything but which publication wrote it and
/// when (`publication_id`, `computed_at`, `version`, `lake_window`).
fn city_keys(rows: &[CityRankingRow]) -> Vec<(String, u32, i64, i64, u64)> {
    rows.iter()
        .map(|r| (r.period.clone(), r.rank, r.city_id, r.revenue, r.sales))
        .collect()
}

fn salesman_keys(rows: &[SalesmanRankingRow]) -> Vec<(String, u32, i64, i64, u64)> {
    rows.iter()
        .map(|r| (r.period.clone(), r.rank, r.salesman_id, r.revenue, r.sales))
        .collect()
}

/// A publication that ranks only the months that changed and carries the others by reference
/// reads, through every query, as if it had written them all (each row naming it); retention
/// keeps the partition holding the carried rows while a publication carrying them stays.
pub async fn carried_months_read_as_their_own(store: &dyn PublicationWriter) {
    use tributary_rankings::retention::PublicationRetention;
    store.ensure_schema().await.unwrap();
    const HOUR: i64 = 3_600;
    let jan = Period::Month(month("2026-01"));
    let mar = Period::Month(month("2026-03"));
    let first =
        sample_with_months(1, "run-1", 0).with_lake_committed_ms(Some(at(-60).timestamp_millis()));
    store.publish(&first).await.unwrap();
    // Five hours later only March changed: January is carried from `first`.
    let whole = sample_with_months(2, "run-2", 5 * HOUR)
        .with_lake_committed_ms(Some(at(5 * HOUR - 60).timestamp_millis()));
    let march = BTreeMap::from([(month("2026-03"), whole.months[&month("2026-03")].clone())]);
    let previous = store.periods(&first.id).await.unwrap();
    let second = whole
        .clone()
        .with_months(march)
        .carrying(previous, |m| m != month("2026-03"));
    assert_eq!(
        second.carried.keys().copied().collect::<Vec<_>>(),
        [month("2026-01")]
    );
    let (_, written, _) = second.ranking_row_counts();
    assert!(
        written < whole.ranking_row_counts().1,
        "January's rows are not written again"
    );
    store.publish(&second).await.unwrap();

    let periods = store.periods(&second.id).await.unwrap();
    let held: Vec<_> = periods
        .iter()
        .map(|p| (p.period.as_str(), p.rows_publication_id.as_str()))
        .collect();
    assert_eq!(
        held,
        [
            ("all", second.id.as_str()),
            ("2026-01", first.id.as_str()),
            ("2026-03", second.id.as_str())
        ]
    );
    assert!(periods.iter().all(|p| p.publication_id == second.id));
    assert_eq!(
        (periods[1].sales, periods[1].revenue),
        (2, 600),
        "a carried month keeps its counts"
    );

    // Every read of the carried month answers what a publication writing it whole would.
    let expected = whole.rows();
    for period in [Period::AllTime, jan, mar] {
        let key = period.key();
        let cities = store.city_ranking(&second.id, period, ALL).await.unwrap();
        let expected_cities: Vec<_> = expected
            .cities
            .iter()
            .filter(|r| r.period == key)
            .cloned()
            .collect();
        assert_eq!(city_keys(&cities), city_keys(&expected_cities), "{key}");
        assert!(
            cities.iter().all(|r| r.publication_id == second.id),
            "{key}"
        );
        let salesmen = store
            .salesman_ranking(&second.id, period, ALL)
            .await
            .unwrap();
        let expected_salesmen: Vec<_> = expected
            .salesmen
            .iter()
            .filter(|r| r.period == key)
            .cloned()
            .collect();
        assert_eq!(
            salesman_keys(&salesmen),
            salesman_keys(&expected_salesmen),
            "{key}"
        );
        assert!(
            salesmen.iter().all(|r| r.publication_id == second.id),
            "{key}"
        );
    }
    let in7 = store
        .city_salesman_ranking(&second.id, jan, 7, ALL)
        .await
        .unwrap();
    assert_eq!(in7.len(), 2);
    assert!(in7.iter().all(|r| r.publication_id == second.id));
    assert_eq!(
        store
            .top_city_salesmen(&second.id, jan, &[7], 1)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .city(&second.id, jan, 7)
            .await
            .unwrap()
            .unwrap()
            .publication_id,
        second.id
    );
    assert_eq!(
        store
            .salesman(&second.id, jan, 1)
            .await
            .unwrap()
            .unwrap()
            .rank,
        1
    );
    let months: Vec<_> = store
        .salesman_months(&second.id, 2)
        .await
        .unwrap()
        .iter()
        .map(|s| (s.period.clone(), s.rank, s.publication_id == second.id))
        .collect();
    assert_eq!(months, [("2026-01".to_string(), 2, true)]);
    let months: Vec<_> = store
        .city_months(&second.id, 9)
        .await
        .unwrap()
        .iter()
        .map(|c| c.period.clone())
        .collect();
    assert_eq!(months, ["2026-03"]);
    // The whole publication, as the API loads it to serve from memory.
    let row = store.publication(&second.id).await.unwrap().unwrap();
    let loaded = store.publication_rows(&row).await.unwrap();
    let mut cities = loaded.cities.clone();
    cities.sort_by(|a, b| (&a.period, a.rank).cmp(&(&b.period, b.rank)));
    let mut expected_cities = expected.cities.clone();
    expected_cities.sort_by(|a, b| (&a.period, a.rank).cmp(&(&b.period, b.rank)));
    assert_eq!(city_keys(&cities), city_keys(&expected_cities));
    assert_eq!(loaded.city_salesmen.len(), expected.city_salesmen.len());
    assert!(
        loaded
            .city_salesmen
            .iter()
            .all(|r| r.publication_id == second.id)
    );

    // Retention keeps `first`'s partition (its January rows) while `second` stays, even with
    // `first` past the retention; once a publication writes January again, it goes.
    let retention = PublicationRetention {
        publications_s: 60,
        pinned: Default::default(),
    };
    let plan = store.prune(&retention, at(6 * HOUR)).await.unwrap();
    assert!(plan.dropped.is_empty(), "{plan:?}");
    assert_eq!(
        store
            .salesman_ranking(&second.id, jan, ALL)
            .await
            .unwrap()
            .len(),
        2
    );
    let third = sample_with_months(3, "run-3", 10 * HOUR)
        .with_lake_committed_ms(Some(at(10 * HOUR - 60).timestamp_millis()));
    store.publish(&third).await.unwrap();
    let plan = store.prune(&retention, at(11 * HOUR)).await.unwrap();
    assert_eq!(plan.dropped, [first.id.clone(), second.id.clone()]);
    assert_eq!(
        store
            .salesman_ranking(&third.id, jan, ALL)
            .await
            .unwrap()
            .len(),
        2
    );
}
