//! The status page's rendering, on views built by hand (no services).

use super::*;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
}

fn view() -> StatusView {
    StatusView {
        now: at(600),
        store_ping: Ok(()),
        publication: Ok(Some(PublicationRow {
            publication_id: "pg_sale:1,pg_salesman:2<x>".into(),
            lake_snapshots: "[]".into(),
            run_id: "run-7".into(),
            computed_at: at(480),
            version: 1,
            lake_window: 0,
            sales: 42,
            revenue: 12_345,
            cities: 3,
            salesmen: 5,
            unresolved_sales: 1,
            unresolved_revenue: 10,
            sales_without_city: 0,
            sales_without_salesman: 0,
        })),
        sources: Ok(Vec::new()),
        runs: Ok(vec![MartRunRow {
            run_id: "run-7".into(),
            started_at: at(480),
            finished_at: at(482),
            status: "failed".into(),
            error: "lake <down>".into(),
            publication_id: String::new(),
            lake_snapshots: "[]".into(),
            rows_in: 0,
            rows_out: 0,
        }]),
        tables: Err("catalog refused".into()),
        dead_letters: Ok(vec![Count {
            source: "files".into(),
            kind: "bad_amount".into(),
            count: 2,
            newest_at: at(300),
        }]),
        slots: None,
        lander_backlog: None,
        crashes: None,
        health: HealthSettings::default(),
    }
}

#[test]
fn the_page_shows_each_part_and_escapes_what_it_shows() {
    let html = render(&view());
    assert!(
        html.contains(
            "<td id=\"publication-id\" class=\"id\">pg_sale:1,pg_salesman:2&lt;x&gt;</td>"
        )
    );
    assert!(html.contains("data-seconds=\"120\">2 min</td>"), "{html}");
    assert!(html.contains("<b id=\"dead-letters-total\">2</b>"));
    assert!(html.contains("data-source=\"files\" data-kind=\"bad_amount\""));
    assert!(html.contains("lake unavailable: catalog refused"));
    assert!(html.contains("lake &lt;down&gt;"));
    assert!(html.contains("data-stage=\"marts\" data-state=\"down\""));
    assert!(html.contains("data-stage=\"Iceberg\" data-state=\"down\""));
    assert!(html.contains("data-stage=\"ClickHouse\" data-state=\"ok\""));
    assert!(!html.contains("<script"));
}

#[test]
fn crashes_are_listed_and_recent_ones_stand_out() {
    let mut v = view();
    assert!(
        !render(&v).contains("<h2>Crashes</h2>"),
        "no lineage store, no section"
    );
    v.crashes = Some(Ok(Vec::new()));
    assert!(render(&v).contains("id=\"crashes\" data-none=\"true\""));
    let job = |name: &str| JobId {
        namespace: "tributary".into(),
        name: name.into(),
    };
    v.crashes = Some(Ok(vec![
        (
            job("tributary-lake"),
            Crashes {
                count: 3,
                last_at: at(540),
            },
        ),
        (
            job("tributary-marts<x>"),
            Crashes {
                count: 1,
                last_at: at(-3600),
            },
        ),
    ]));
    let html = render(&v);
    assert!(
            html.contains("data-job=\"tributary-lake\" data-state=\"warn\"><td>tributary-lake</td><td class=\"n count\">3</td>"),
            "{html}"
        );
    assert!(html.contains("data-job=\"tributary-marts&lt;x&gt;\" data-state=\"ok\""));
    v.crashes = Some(Err("lineage store down".into()));
    assert!(render(&v).contains("crashes (lineage store) unavailable: lineage store down"));
}

#[test]
fn nothing_published_is_said_plainly() {
    let mut v = view();
    v.publication = Ok(None);
    v.runs = Ok(Vec::new());
    let html = render(&v);
    assert!(html.contains("nothing published yet"));
    assert!(html.contains("data-stage=\"marts\" data-state=\"warn\""));
}

fn source(name: &str, newest_at: DateTime<Utc>) -> PublicationSourceRow {
    PublicationSourceRow {
        publication_id: "p".into(),
        source: name.into(),
        position: 1,
        newest_event_at: newest_at,
        events: 10,
        lake_snapshots: "[]".into(),
        run_id: "run-7".into(),
        computed_at: at(480),
        version: 1,
        lake_window: 0,
    }
}

/// A source minutes behind turns the sources stage amber, half an hour red, whatever the
/// commits do; a slot holding WAL turns the CDC stage amber, one about to be lost red.
#[test]
fn stages_are_judged_by_freshness_and_backlog() {
    let mut v = view();
    v.sources = Ok(vec![source("pg", at(590)), source("files", at(580))]);
    assert!(render(&v).contains("data-stage=\"sources\" data-state=\"ok\""));
    v.sources = Ok(vec![source("pg", at(590)), source("files", at(600 - 400))]);
    let html = render(&v);
    assert!(
        html.contains("data-stage=\"sources\" data-state=\"warn\""),
        "{html}"
    );
    assert!(html.contains("data-source=\"files\" data-state=\"warn\""));
    assert!(html.contains("data-source=\"pg\" data-state=\"ok\""));
    v.sources = Ok(vec![source("erp", at(600 - 3_600))]);
    assert!(render(&v).contains("data-stage=\"sources\" data-state=\"down\""));

    assert!(render(&v).contains("data-stage=\"CDC\" data-state=\"unknown\""));
    let slot = |retained_bytes, wal_status: &str| SlotState {
        name: "tributary_debezium".into(),
        active: true,
        wal_status: wal_status.into(),
        retained_bytes,
        safe_wal_bytes: Some(1 << 30),
    };
    v.slots = Some(Ok(vec![slot(1 << 20, "reserved")]));
    assert!(render(&v).contains("data-stage=\"CDC\" data-state=\"ok\""));
    v.slots = Some(Ok(vec![slot(2 << 30, "extended")]));
    let html = render(&v);
    assert!(
        html.contains("data-stage=\"CDC\" data-state=\"warn\""),
        "{html}"
    );
    assert!(html.contains("holds 2.0 GiB of WAL"));
    v.slots = Some(Ok(vec![slot(1 << 20, "reserved"), slot(0, "unreserved")]));
    assert!(render(&v).contains("data-stage=\"CDC\" data-state=\"down\""));

    // Kafka: the lander's own judgement of the records waiting for it.
    assert!(render(&v).contains("data-stage=\"Kafka\" data-state=\"unknown\""));
    let backlog = |ok, detail: &str| CheckReport {
        name: "backlog".into(),
        ok,
        detail: detail.into(),
        latency_ms: 0,
        required: false,
    };
    v.lander_backlog = Some(Ok(backlog(true, "12 records wait; last commit 1 s ago")));
    let html = render(&v);
    assert!(
        html.contains("data-stage=\"Kafka\" data-state=\"ok\""),
        "{html}"
    );
    assert!(html.contains("12 records wait"));
    v.lander_backlog = Some(Ok(backlog(false, "200000 records wait in Kafka")));
    assert!(render(&v).contains("data-stage=\"Kafka\" data-state=\"warn\""));
    v.lander_backlog = Some(Err("the lander did not answer".into()));
    let html = render(&v);
    assert!(html.contains("data-stage=\"Kafka\" data-state=\"unknown\""));
    assert!(html.contains("the lander did not answer"));
}
#[test]
fn ages_read_at_a_glance() {
    assert_eq!(human_age(-5), "0 s");
    assert_eq!(human_age(59), "59 s");
    assert_eq!(human_age(61), "1 min");
    assert_eq!(human_age(3 * 3600 + 120), "3 h 2 min");
    assert_eq!(human_age(2 * 86_400 + 3600), "2 d 1 h");
}
