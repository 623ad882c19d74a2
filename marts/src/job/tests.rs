//! The job's runs and schedule against the in-memory lake, state and store (`test_support`).

use tributary_raw::schema::RawTable;

use super::*;
use crate::state::MemoryState;
use crate::test_support::{city, land, land_ana_in_campinas, memory_lake, sale, salesman};
use tributary_rankings::period::Period;
use tributary_rankings::store::{MemoryStore, Page, RankingQueries};

#[test]
fn permanent_failures_back_off_and_a_good_run_resets() {
    let tick = Duration::from_secs(1);
    let permanent = MartsError::CorruptState("bad".into());
    let transient = MartsError::StateConflict {
        expected: 1,
        found: 2,
    };
    let mut f = Failures::default();
    assert_eq!(f.after(Some(&transient), tick), tick);
    let delays: Vec<u64> = (0..10)
        .map(|_| f.after(Some(&permanent), tick).as_secs())
        .collect();
    assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    assert_eq!(f.in_a_row, 11);
    assert_eq!(f.after(None, tick), tick);
    assert_eq!(f, Failures::default());
}

struct FixedClock(DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

fn job(
    catalog: Arc<dyn Catalog>,
    store: Arc<MemoryStore>,
    state: Arc<MemoryState>,
    secs: i64,
) -> MartsJob {
    let now = DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap();
    MartsJob::with_clock(catalog, "raw", store, state, Arc::new(FixedClock(now)))
}

const ALL: [RawTable; 5] = RawTable::DATA_TABLES;
const PAGE: Page = Page {
    limit: 100,
    offset: 0,
};

#[tokio::test]
async fn reads_iceberg_snapshots_publishes_and_skips_an_unchanged_lake() {
    let lake = memory_lake(&ALL).await;
    let sale_snap = land(
        lake.as_ref(),
        RawTable::PgSale,
        &[
            sale("c", 1, (10, 0), Some(100), Some(7), Some(1000)),
            sale("c", 2, (11, 1), Some(200), Some(7), Some(3000)),
            sale("c", 3, (12, 2), Some(200), Some(8), Some(500)),
        ],
    )
    .await;
    let salesman_snap = land(
        lake.as_ref(),
        RawTable::PgSalesman,
        &[salesman("r", 100, (1, 0), "S1", "Ana")],
    )
    .await;
    let city_snap = land(
        lake.as_ref(),
        RawTable::PgCity,
        &[
            city("r", 7, (1, 0), "Campinas", "SP"),
            city("r", 8, (2, 1), "Santos", "SP"),
        ],
    )
    .await;

    let store = Arc::new(MemoryStore::new());
    let state = Arc::new(MemoryState::new());
    let outcome = job(lake.clone(), store.clone(), state.clone(), 0)
        .run_once(false)
        .await
        .unwrap();
    let expected_id = format!(
        "pg_sale:{sale_snap},pg_salesman:{salesman_snap},pg_city:{city_snap},file_sale:none,erp_sale:none"
    );
    let RunOutcome::Published {
        publication_id,
        cities,
        salesmen,
        sales,
        unresolved_sales,
        ..
    } = outcome
    else {
        panic!("expected a publication, got {outcome:?}");
    };
    assert_eq!(publication_id, expected_id);
    assert_eq!((cities, salesmen, sales, unresolved_sales), (2, 2, 3, 2));

    let latest = store.latest_publication().await.unwrap().unwrap();
    assert_eq!(latest.publication_id, expected_id);
    assert!(latest.lake_snapshots.contains(&sale_snap.to_string()));
    let ranking = store
        .salesman_ranking(&expected_id, Period::AllTime, PAGE)
        .await
        .unwrap();
    let top: Vec<_> = ranking
        .iter()
        .map(|r| (r.rank, r.salesman_id, r.salesman_name.as_str(), r.revenue))
        .collect();
    assert_eq!(top, vec![(1, 200, "", 3500), (2, 100, "Ana", 1000)]);

    // Same snapshots: nothing to do, unless forced.
    let again = job(lake.clone(), store.clone(), state.clone(), 60)
        .run_once(false)
        .await
        .unwrap();
    assert_eq!(
        again,
        RunOutcome::Unchanged {
            publication_id: expected_id.clone()
        }
    );
    let forced = job(lake.clone(), store.clone(), state.clone(), 60)
        .run_once(true)
        .await
        .unwrap();
    assert!(
        matches!(forced, RunOutcome::Published { ref publication_id, .. } if *publication_id == expected_id)
    );

    // The salesman arrives late: a new snapshot, a new publication, the name resolved.
    let late = land(
        lake.as_ref(),
        RawTable::PgSalesman,
        &[salesman("c", 200, (5, 1), "S2", "Bruno")],
    )
    .await;
    let next = job(lake.clone(), store.clone(), state.clone(), 120)
        .run_once(false)
        .await
        .unwrap();
    let new_id = format!(
        "pg_sale:{sale_snap},pg_salesman:{late},pg_city:{city_snap},file_sale:none,erp_sale:none"
    );
    assert!(
        matches!(next, RunOutcome::Published { ref publication_id, unresolved_sales: 0, .. } if *publication_id == new_id)
    );
    assert_eq!(
        store
            .latest_publication()
            .await
            .unwrap()
            .unwrap()
            .publication_id,
        new_id
    );
    let city7 = store
        .top_city_salesmen(&new_id, Period::AllTime, &[7], 10)
        .await
        .unwrap();
    let names: Vec<_> = city7
        .iter()
        .map(|r| (r.rank, r.salesman_name.as_str()))
        .collect();
    assert_eq!(names, vec![(1, "Bruno"), (2, "Ana")]);
}

#[tokio::test]
async fn a_run_publishes_before_its_state_commit_and_a_failed_commit_is_made_good() {
    let lake = memory_lake(&ALL).await;
    let sale_snap = land(
        lake.as_ref(),
        RawTable::PgSale,
        &[sale("c", 1, (10, 0), Some(100), Some(7), Some(1000))],
    )
    .await;
    let store = Arc::new(MemoryStore::new());
    let state = Arc::new(MemoryState::new());
    let expected_id =
        format!("pg_sale:{sale_snap},pg_salesman:none,pg_city:none,file_sale:none,erp_sale:none");

    // The commit fails after the publication is written: the run fails, the rankings are
    // visible all the same, the state is untouched.
    state.fail_next_commit();
    let failed = job(lake.clone(), store.clone(), state.clone(), 0)
        .run_once(false)
        .await;
    assert!(
        matches!(failed, Err(MartsError::StateConflict { .. })),
        "{failed:?}"
    );
    let latest = store.latest_publication().await.unwrap().unwrap();
    assert_eq!(latest.publication_id, expected_id);
    assert_eq!(state.version().await.unwrap(), None);

    // The lake has not changed, but the state is behind the publication: the next run
    // folds and commits (and writes the same publication again) instead of skipping.
    let again = job(lake.clone(), store.clone(), state.clone(), 60)
        .run_once(false)
        .await
        .unwrap();
    assert!(
        matches!(again, RunOutcome::Published { ref publication_id, sales: 1, .. } if *publication_id == expected_id),
        "{again:?}"
    );
    let kept = state.checkpoint().await.unwrap().unwrap();
    assert_eq!(kept.generation, 1);
    assert_eq!(kept.snapshots.get("pg_sale"), Some(&sale_snap));

    // Now both are at the lake's snapshots: nothing to do.
    let third = job(lake.clone(), store.clone(), state.clone(), 120)
        .run_once(false)
        .await
        .unwrap();
    assert_eq!(
        third,
        RunOutcome::Unchanged {
            publication_id: expected_id
        }
    );
}

#[tokio::test]
async fn tables_without_snapshots_read_as_empty() {
    let lake = memory_lake(&ALL).await;
    let store = Arc::new(MemoryStore::new());
    let state = Arc::new(MemoryState::new());
    let outcome = job(lake, store.clone(), state.clone(), 0)
        .run_once(false)
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        RunOutcome::Published { ref publication_id, cities: 0, salesmen: 0, .. }
            if publication_id == "pg_sale:none,pg_salesman:none,pg_city:none,file_sale:none,erp_sale:none"
    ));
    assert!(store.latest_publication().await.unwrap().is_some());
}

#[tokio::test]
async fn months_are_published_and_every_run_is_recorded() {
    let lake = memory_lake(&ALL).await;
    land(
        lake.as_ref(),
        RawTable::PgSale,
        &[
            sale("c", 1, (10, 0), Some(100), Some(7), Some(1000)).sold_at("2026-01-05T10:00:00Z"),
            sale("c", 2, (11, 1), Some(100), Some(7), Some(500)).sold_at("2026-02-05T10:00:00Z"),
            sale("c", 3, (12, 2), Some(100), Some(7), Some(1)),
        ],
    )
    .await;
    let store = Arc::new(MemoryStore::new());
    let state = Arc::new(MemoryState::new());
    let outcome = job(lake.clone(), store.clone(), state.clone(), 0)
        .run_once(false)
        .await
        .unwrap();
    let RunOutcome::Published {
        publication_id,
        months,
        rows_changed,
        ..
    } = outcome
    else {
        panic!("expected a publication, got {outcome:?}");
    };
    assert_eq!(months, 2);
    assert_eq!(
        rows_changed, None,
        "a first publication has nothing to compare with"
    );
    let feb = Period::Month("2026-02".parse().unwrap());
    let top = store
        .salesman_ranking(&publication_id, feb, PAGE)
        .await
        .unwrap();
    assert_eq!(
        top.iter()
            .map(|r| (r.salesman_id, r.revenue))
            .collect::<Vec<_>>(),
        vec![(100, 500)]
    );
    let all = store
        .period(&publication_id, Period::AllTime)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (all.sales, all.revenue, all.sales_without_month),
        (3, 1501, 1)
    );

    job(lake.clone(), store.clone(), state.clone(), 60)
        .run_once(false)
        .await
        .unwrap();
    let runs = store.runs(10).await.unwrap();
    let summary: Vec<_> = runs
        .iter()
        .map(|r| {
            (
                r.status.as_str(),
                r.publication_id.as_str(),
                r.rows_in,
                r.rows_out,
            )
        })
        .collect();
    // Newest first. Published: 3 current sales in; per period (all, January, February) one
    // city, one salesman in it and one nationwide: 9 rows out.
    assert_eq!(
        summary,
        vec![
            ("unchanged", publication_id.as_str(), 0, 0),
            ("published", publication_id.as_str(), 3, 9),
        ]
    );
    assert!(runs.iter().all(|r| r.error.is_empty()));
    assert!(runs[1].lake_snapshots.contains("pg_sale"));

    // A new salesman sells in city 7 in February: all time and February are published again
    // (city 7, salesmen 100 and 200 in it and nationwide: 5 rows each), January is carried; of
    // those 10 rows, the run moved city 7's, (7, 200)'s and salesman 200's in both periods.
    land(
        lake.as_ref(),
        RawTable::PgSale,
        &[sale("c", 4, (13, 3), Some(200), Some(7), Some(50)).sold_at("2026-02-06T10:00:00Z")],
    )
    .await;
    let outcome = job(lake.clone(), store.clone(), state.clone(), 120)
        .run_once(false)
        .await
        .unwrap();
    let RunOutcome::Published {
        rows_out,
        rows_changed,
        ..
    } = outcome
    else {
        panic!("expected a publication, got {outcome:?}");
    };
    assert_eq!((rows_out, rows_changed), (10, Some(6)));
}
#[tokio::test]
async fn a_missing_raw_table_is_a_retryable_error() {
    let lake = memory_lake(&[RawTable::PgSale, RawTable::PgCity]).await;
    let store = Arc::new(MemoryStore::new());
    let state = Arc::new(MemoryState::new());
    let err = job(lake, store.clone(), state.clone(), 0)
        .run_once(false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MartsError::LakeTableMissing { table } if table == "raw.pg_salesman"),
        "{err}"
    );
    assert!(err.is_retryable());
    assert!(store.latest_publication().await.unwrap().is_none());
    // Failed runs are recorded too, with what went wrong.
    let runs = store.runs(10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, "failed");
    assert!(
        runs[0].error.contains("raw.pg_salesman"),
        "{}",
        runs[0].error
    );
    assert_eq!(
        (
            runs[0].publication_id.as_str(),
            runs[0].lake_snapshots.as_str()
        ),
        ("", "[]")
    );
}

#[tokio::test]
async fn the_schedule_runs_until_shutdown() {
    let lake = memory_lake(&ALL).await;
    let store = Arc::new(MemoryStore::new());
    let state = Arc::new(MemoryState::new());
    let job = job(lake, store.clone(), state.clone(), 0);
    let scheduled = Scheduled::start(job, Duration::from_millis(10));
    for _ in 0..200 {
        if store.latest_publication().await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(store.latest_publication().await.unwrap().is_some());
    scheduled.stop().await;
}
#[tokio::test]
async fn an_announced_commit_starts_a_run_before_the_next_tick() {
    let lake = memory_lake(&ALL).await;
    let store = Arc::new(MemoryStore::new());
    let state = Arc::new(MemoryState::new());
    let commits = Arc::new(tokio::sync::Notify::new());
    let job = job(lake.clone(), store.clone(), state.clone(), 0)
        .with_commit_notifications(commits.clone());
    // An hour between ticks: only the first run and the announced commit can publish.
    let scheduled = Scheduled::start(job, Duration::from_secs(3600));
    wait_for_run(&store, "pg_sale:none").await;
    let sale_snap = land(
        lake.as_ref(),
        RawTable::PgSale,
        &[sale("c", 1, (10, 0), Some(100), Some(7), Some(1000))],
    )
    .await;
    commits.notify_one();
    wait_for_run(&store, &format!("pg_sale:{sale_snap},")).await;
    scheduled.stop().await;
}

/// Waits for a published run whose publication id starts with `prefix`; panics after 10 s
/// (the scheduler's next tick is an hour away).
async fn wait_for_run(store: &MemoryStore, prefix: &str) {
    for _ in 0..1000 {
        let runs = store.runs(10).await.unwrap();
        if runs
            .iter()
            .any(|r| r.status == "published" && r.publication_id.starts_with(prefix))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no run published {prefix}… within 10 s");
}

#[tokio::test]
async fn a_run_stopped_at_its_bound_is_followed_at_once_and_each_publishes_its_slice() {
    let lake = memory_lake(&ALL).await;
    let store = Arc::new(MemoryStore::new());
    let state = Arc::new(MemoryState::new());
    let commits = Arc::new(tokio::sync::Notify::new());
    // The system clock: publications are ordered by their run's start.
    let job = MartsJob::new(lake.clone(), "raw", store.clone(), state.clone())
        .with_commit_notifications(commits.clone())
        .with_max_events_per_run(1);
    // An hour between ticks and one announcement for three commits: only runs that follow a
    // run stopped short at once can reach the third.
    let scheduled = Scheduled::start(job, Duration::from_secs(3600));
    wait_for_run(&store, "pg_sale:none").await;
    let mut snapshots = Vec::new();
    for id in 1..=3 {
        snapshots.push(
            land(
                lake.as_ref(),
                RawTable::PgSale,
                &[sale("c", id, (10 + id, 0), Some(100), Some(7), Some(1000))],
            )
            .await,
        );
        // Commits a few ms apart: a run cuts every table at one commit time.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    commits.notify_one();
    for snapshot in &snapshots {
        wait_for_run(&store, &format!("pg_sale:{snapshot},")).await;
    }
    scheduled.stop().await;
}

/// A job's scheduler running in a task of its own until [`Scheduled::stop`].
struct Scheduled {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Scheduled {
    fn start(job: MartsJob, interval: Duration) -> Self {
        let shutdown = CancellationToken::new();
        let stopper = shutdown.clone();
        let task = tokio::spawn(async move { job.run_scheduled(interval, stopper).await });
        Self { shutdown, task }
    }

    /// Cancels the schedule; panics unless it stops within 5 s.
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("scheduler stops on shutdown")
            .unwrap();
    }
}

/// A run that commits behind and whose commit fails: the next run fails with that error (it
/// folded on from a state the store never got) and forgets its state in memory; the run after
/// folds again from the store and publishes and commits the whole lake.
#[tokio::test]
async fn a_failed_commit_behind_fails_the_next_run_and_the_one_after_folds_from_the_store() {
    let lake = memory_lake(&ALL).await;
    let store = Arc::new(MemoryStore::new());
    let state = Arc::new(MemoryState::new());
    let job = job(lake.clone(), store.clone(), state.clone(), 0);
    land(
        lake.as_ref(),
        RawTable::PgSale,
        &[sale("c", 1, (10, 0), Some(100), Some(7), Some(1000))],
    )
    .await;
    state.fail_next_commit();
    job.run_behind().await.unwrap();
    land(
        lake.as_ref(),
        RawTable::PgSale,
        &[sale("u", 1, (11, 1), Some(100), Some(7), Some(4000))],
    )
    .await;
    let failed = job.run_behind().await;
    assert!(
        matches!(failed, Err(MartsError::StateConflict { .. })),
        "{failed:?}"
    );
    assert_eq!(
        state.version().await.unwrap(),
        None,
        "nothing was committed"
    );
    let again = job.run_behind().await.unwrap();
    assert!(
        matches!(again, RunOutcome::Published { sales: 1, .. }),
        "{again:?}"
    );
    job.settle_in_flight().await.unwrap();
    let kept = state.checkpoint().await.unwrap().unwrap();
    assert_eq!(kept.generation, 1, "folded from nothing, committed once");
    let (_, expected) = compute(lake.as_ref(), "raw").await.unwrap();
    assert_eq!(job.kept_rankings().await.unwrap().unwrap(), expected);
    assert_eq!(
        expected.all.salesmen[0].row.revenue.cents(),
        4000,
        "the update counted once"
    );
}

/// Runs that end while a state commit is in flight publish without waiting for it: they queue
/// their changes, read the queued sales from memory (an update of a queued sale replaces it),
/// and the queue goes as one commit once the one in flight lands.
#[tokio::test]
async fn runs_behind_a_commit_in_flight_queue_their_changes_and_commit_them_as_one() {
    let lake = memory_lake(&ALL).await;
    let store = Arc::new(MemoryStore::new());
    let state = Arc::new(MemoryState::new());
    let job = job(lake.clone(), store.clone(), state.clone(), 0);
    land_ana_in_campinas(lake.as_ref()).await;
    state.hold_commits(true);
    // A new sale (its commit in flight), its update and another sale (both queued behind it).
    let runs = [
        (2, "c", 500, 20, 500),
        (2, "u", 700, 21, 700),
        (3, "c", 300, 22, 1000),
    ];
    for (id, op, cents, lsn, total) in runs {
        land(
            lake.as_ref(),
            RawTable::PgSale,
            &[sale(op, id, (lsn, 0), Some(100), Some(7), Some(cents))],
        )
        .await;
        let RunOutcome::Published { publication_id, .. } = job.run_behind().await.unwrap() else {
            panic!("published");
        };
        let ranking = store
            .salesman_ranking(&publication_id, Period::AllTime, PAGE)
            .await
            .unwrap();
        assert_eq!(
            ranking[0].revenue, total,
            "published at once; an update of a queued sale replaces it"
        );
    }
    assert_eq!(state.commits(), 0, "the first commit is still in flight");
    assert_eq!(state.version().await.unwrap(), None);

    state.hold_commits(false);
    job.settle_in_flight().await.unwrap();
    assert_eq!(
        state.commits(),
        2,
        "the first run's commit, then the two queued runs' as one"
    );
    assert_eq!(
        state.version().await.unwrap().map(|v| v.generation),
        Some(3)
    );
    // The queued sales reached the store: a job that reads the state replaces them on update.
    land(
        lake.as_ref(),
        RawTable::PgSale,
        &[sale("u", 2, (23, 0), Some(100), Some(7), Some(900))],
    )
    .await;
    let fresh = super::tests::job(lake.clone(), store.clone(), state.clone(), 1);
    fresh.run_with(RunMode::Incremental).await.unwrap();
    let (_, expected) = compute(lake.as_ref(), "raw").await.unwrap();
    assert_eq!(fresh.kept_rankings().await.unwrap().unwrap(), expected);
    assert_eq!(expected.all.salesmen[0].row.revenue.cents(), 1200);
}
