//! The incremental marts across real lake maintenance: the seeded random workload of the
//! marts' own incremental-vs-recompute test, landed into the real lake (SQL catalog on the
//! stack's Postgres, files on its object store) with the lander's maintenance run between
//! rounds at a retention of nothing — small files compacted into `replace` snapshots, manifests
//! merged, every snapshot the marts' checkpoint pin does not hold expired, orphans swept. After
//! every round an incremental run (a new job on the same state, as after a restart; never a
//! rebuild: a diverged state fails the run) must rank exactly what the SQL recompute ranks from
//! the whole lake, and so must a job bounded to a few events a run (`max_events_per_run`), run
//! until it catches up; at the end a rebuild from nothing agrees too. Fails, never skips, when the
//! stack is not running: run `make test`.

use std::sync::Arc;

use iceberg::Catalog;
use tributary_common::LakeSettings;
use tributary_lake::catalog::ensure_tables;
use tributary_lake::maintenance::{Maintainer, MaintenanceSettings};
use tributary_marts::job::compute;
use tributary_marts::state::MemoryState;
use tributary_marts::{MartsJob, RunMode, RunOutcome};
use tributary_rankings::store::MemoryStore;
use tributary_raw::pins::SnapshotPins;
use tributary_raw::schema::RawTable;
use tributary_raw::testing::{Workload, land_in};

/// Maintenance that does everything it can on every run: any two small files are compacted,
/// any second manifest merged, every unpinned snapshot but the current one expired, every
/// unreachable file deleted at once.
fn eager() -> MaintenanceSettings {
    MaintenanceSettings {
        snapshot_retention_s: 0,
        history_retention_s: 0,
        history_granularity_s: 1,
        min_snapshots_to_keep: 1,
        min_input_files: 2,
        max_manifests: 1,
        orphan_grace_s: 0,
        ..MaintenanceSettings::default()
    }
}

/// Events a run of the bounded job reads at most: a few commits of a round.
const SMALL_BOUND: u64 = 7;

/// Runs `job` until a run catches up with the lake; returns the runs it took.
async fn run_until_caught_up(job: &MartsJob, seed: u64, round: usize) -> usize {
    for runs in 1..1_000 {
        match job.run_with(RunMode::Incremental).await {
            Ok(RunOutcome::Published {
                caught_up: false, ..
            }) => {}
            Ok(_) => return runs,
            Err(e) => panic!("seed {seed}, round {round}: bounded run {runs}: {e}"),
        }
    }
    panic!("seed {seed}, round {round}: bounded runs never caught up");
}

async fn check_seed(seed: u64) {
    let lake = LakeSettings::default();
    let catalog: Arc<dyn Catalog> = Arc::new(
        tributary_raw::catalog::open(&lake)
            .await
            .unwrap_or_else(|e| panic!("{e}: run `make test` (or `dev/up`) to start the stack")),
    );
    let namespace = format!("it_marts_maintained_{}_{seed}", std::process::id());
    ensure_tables(catalog.as_ref(), &namespace).await.unwrap();
    let pins = Arc::new(SnapshotPins::new(&lake).unwrap());
    // No lander runs on this namespace: the test is its only writer, as the writer lock makes
    // the lander for its maintenance.
    let maintainer = Maintainer::new(eager(), &lake, &namespace, catalog.clone()).unwrap();
    let store = Arc::new(MemoryStore::new());
    let state = Arc::new(MemoryState::new());
    let job = |state: Arc<MemoryState>| {
        MartsJob::new(catalog.clone(), &namespace, store.clone(), state)
            .with_pins(pins.clone(), format!("marts:{namespace}"))
    };
    // The same rounds folded a few events a run (stopping at snapshots maintenance may replace
    // or expire around), with a store, a state and a pin of its own.
    let sliced_state = Arc::new(MemoryState::new());
    let sliced = MartsJob::new(
        catalog.clone(),
        &namespace,
        Arc::new(MemoryStore::new()),
        sliced_state.clone(),
    )
    .with_pins(pins.clone(), format!("marts-sliced:{namespace}"))
    .with_max_events_per_run(SMALL_BOUND);
    let mut sliced_runs = 0;
    let mut workload = Workload::new(seed);
    let (mut replaced, mut expired) = (0, 0);
    for round in 0..10 {
        for (table, events) in workload.round() {
            land_in(catalog.as_ref(), &namespace, table, &events).await;
        }
        // Maintenance on most rounds, so that some runs find `replace` snapshots and expired
        // ancestors in what is new to them, and some find two rounds of appends.
        if workload.below(4) != 0 {
            for kind in RawTable::DATA_TABLES {
                let table = tributary_raw::catalog::load_table(catalog.as_ref(), &namespace, kind)
                    .await
                    .unwrap();
                let (_, report) = maintainer.maintain(kind, &table).await.unwrap();
                let replace = usize::from(report.replace_snapshot_id.is_some());
                replaced += replace;
                expired += report.snapshots_before + replace - report.snapshots_after;
            }
        }
        job(state.clone())
            .run_with(RunMode::Incremental)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}, round {round}: incremental run: {e}"));
        let (_, expected) = compute(catalog.as_ref(), &namespace).await.unwrap();
        let kept = job(state.clone()).kept_rankings().await.unwrap().unwrap();
        assert_eq!(
            kept, expected,
            "seed {seed}, round {round}: incremental rankings differ from the SQL recompute"
        );
        sliced_runs += run_until_caught_up(&sliced, seed, round).await;
        assert_eq!(
            sliced.kept_rankings().await.unwrap().unwrap(),
            expected,
            "seed {seed}, round {round}: runs bounded to {SMALL_BOUND} events differ from the SQL recompute"
        );
    }
    eprintln!(
        "seed {seed}: {replaced} replace snapshots, {expired} snapshots expired, {sliced_runs} bounded runs"
    );
    assert!(
        sliced_runs > 10,
        "seed {seed}: the bound never stopped a run short ({sliced_runs} runs in 10 rounds)"
    );
    // The test is only worth its name if maintenance did rewrite and expire.
    assert!(
        replaced > 0 && expired > 0,
        "seed {seed}: maintenance replaced {replaced} times and expired {expired} snapshots"
    );
    let rebuilt = job(Arc::new(MemoryState::new()));
    rebuilt.run_with(RunMode::Rebuild).await.unwrap();
    assert_eq!(
        rebuilt.kept_rankings().await.unwrap(),
        job(state).kept_rankings().await.unwrap(),
        "seed {seed}: a rebuild differs from the incremental runs"
    );
}

#[tokio::test]
async fn incremental_runs_rank_what_the_recompute_ranks_across_compaction_and_expiry() {
    // Replayable by number; MARTS_MAINTENANCE_SEED adds one.
    let mut seeds = vec![7, 2026];
    if let Some(extra) = std::env::var("MARTS_MAINTENANCE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        seeds.push(extra);
    }
    for seed in seeds {
        check_seed(seed).await;
    }
}
