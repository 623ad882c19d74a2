//! The lineage store's retention on the real Postgres (the local stack's): events received
//! before the cutoff are deleted, the index forgets what only they named, and a new API process
//! folds only what is left; a process started after a checkpoint restores the index from it and
//! folds only what came after. Fails — never skips — when Postgres is not running: run `make test`.

use std::sync::Arc;

use chrono::{Duration, Utc};
use serde_json::json;
use tributary_api::config::LineageStoreSettings;
use tributary_api::lineage::store::{LineageStore, PostgresEventLog};

fn event(job: &str, at: chrono::DateTime<Utc>) -> Vec<u8> {
    json!({
        "eventType": "COMPLETE",
        "eventTime": at.to_rfc3339(),
        "producer": "urn:test",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": uuid::Uuid::new_v4().to_string()},
        "job": {"namespace": "tributary", "name": job},
        "inputs": [{"namespace": "kafka://127.0.0.1:9092", "name": format!("{job}.in")}],
        "outputs": [{"namespace": "s3://warehouse", "name": format!("{job}.out")}],
    })
    .to_string()
    .into_bytes()
}

fn store(settings: &LineageStoreSettings) -> LineageStore {
    LineageStore::new(Arc::new(PostgresEventLog::new(settings.clone()).unwrap()))
}

#[tokio::test]
async fn old_events_are_deleted_and_forgotten() {
    let settings = LineageStoreSettings {
        schema: format!("lineage_it_retention_{}", std::process::id()),
        ..LineageStoreSettings::default()
    };
    let now = Utc::now();
    let first = store(&settings);
    first
        .record(&event("old-job", now - Duration::days(40)))
        .await
        .unwrap_or_else(|e| panic!("{e}: run `make test` (or `dev/up`) to start the stack"));
    first.record(&event("new-job", now)).await.unwrap();
    let (client, connection) = tokio_postgres::connect(&settings.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let table = format!("\"{}\".lineage_events", settings.schema);
    client
        .execute(
            &format!(
                "UPDATE {table} SET received_at = now() - interval '40 days' WHERE job_name = 'old-job'"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        first
            .read(|i| Ok(i.jobs("tributary", 10, 0)?.total_count))
            .await
            .unwrap(),
        2
    );

    let (deleted, forgotten) = first.prune(now - Duration::days(30)).await.unwrap();
    assert_eq!(deleted, 1);
    // The old job and its two datasets.
    assert_eq!(forgotten, 3);
    let jobs = |i: &tributary_api::lineage::graph::LineageIndex| {
        Ok(i.jobs("tributary", 10, 0)?
            .jobs
            .into_iter()
            .map(|j| j.name)
            .collect::<Vec<_>>())
    };
    assert_eq!(first.read(jobs).await.unwrap(), ["new-job"]);

    // A new process folds only what is left.
    let second = store(&settings);
    assert_eq!(second.read(|i| Ok(i.event_count())).await.unwrap(), 1);
    assert_eq!(second.read(jobs).await.unwrap(), ["new-job"]);

    // The checkpoint: a process started after it restores the index (with the count of every
    // event the first folded, although the log holds one now) and folds only what came after.
    let position = first
        .checkpoint()
        .await
        .unwrap()
        .expect("the prune changed the index");
    assert_eq!(position, first.position().await);
    let later = now + Duration::seconds(1);
    first.record(&event("later-job", later)).await.unwrap();
    let third = store(&settings);
    assert_eq!(third.read(|i| Ok(i.event_count())).await.unwrap(), 3);
    assert!(third.position().await > position);
    assert_eq!(third.read(jobs).await.unwrap(), ["later-job", "new-job"]);

    client
        .batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE", settings.schema))
        .await
        .unwrap();
}
