//! The ClickHouse schema on the real services: a job makes sure of it once (not every run),
//! and again after a run failed, so a marts database dropped under a running job is back at
//! the run after the failure. Fails, never skips, when the stack is not running: run
//! `make test`.

use std::sync::Arc;

use iceberg::Catalog;
use tributary_common::{ClickHouseSettings, LakeSettings};
use tributary_lake::catalog::ensure_tables;
use tributary_marts::state::MemoryState;
use tributary_marts::{MartsJob, RunMode, RunOutcome};
use tributary_rankings::{ClickHouseStore, RankingQueries};
use tributary_raw::testing::{Workload, land_in};

/// Sends one statement to ClickHouse over HTTP, as an operator would.
async fn clickhouse(settings: &ClickHouseSettings, sql: &str) {
    reqwest::Client::new()
        .post(&settings.url)
        .header("X-ClickHouse-User", &settings.user)
        .header("X-ClickHouse-Key", &settings.password)
        .body(sql.to_string())
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("{sql}: {e}: run `make test` (or `dev/up`) to start the stack"));
}

#[tokio::test]
async fn a_database_dropped_under_a_running_job_is_made_again_after_the_failed_run() {
    let lake = LakeSettings::default();
    let catalog: Arc<dyn Catalog> = Arc::new(
        tributary_raw::catalog::open(&lake)
            .await
            .unwrap_or_else(|e| panic!("{e}: run `make test` (or `dev/up`) to start the stack")),
    );
    let suffix = std::process::id();
    let namespace = format!("it_marts_schema_{suffix}");
    ensure_tables(catalog.as_ref(), &namespace).await.unwrap();
    let settings = ClickHouseSettings {
        database: format!("marts_it_schema_{suffix}"),
        ..ClickHouseSettings::default()
    };
    let store = Arc::new(ClickHouseStore::new(&settings).unwrap());
    let job = MartsJob::new(
        catalog.clone(),
        &namespace,
        store.clone(),
        Arc::new(MemoryState::new()),
    );
    let mut workload = Workload::new(7);
    let mut land_a_round = async || {
        for (table, events) in workload.round() {
            land_in(catalog.as_ref(), &namespace, table, &events).await;
        }
    };

    land_a_round().await;
    let first = job.run_with(RunMode::Incremental).await.unwrap();
    assert!(matches!(first, RunOutcome::Published { .. }), "{first:?}");

    clickhouse(&settings, &format!("DROP DATABASE {}", settings.database)).await;
    land_a_round().await;
    // The schema was made sure of by the first run: this one finds it gone and fails.
    let error = job.run_with(RunMode::Incremental).await.unwrap_err();
    assert!(
        error.to_string().contains(&settings.database),
        "the error names what is missing: {error}"
    );
    // After a failure the next run makes sure of the schema again, and publishes.
    let again = job.run_with(RunMode::Incremental).await.unwrap();
    let RunOutcome::Published { publication_id, .. } = again else {
        panic!("{again:?}");
    };
    let latest = store.latest_publication().await.unwrap().unwrap();
    assert_eq!(latest.publication_id, publication_id);

    clickhouse(&settings, &format!("DROP DATABASE {}", settings.database)).await;
}
