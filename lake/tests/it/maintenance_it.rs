//! Lake maintenance against the real stack (Postgres SQL catalog, S3): compaction, manifest
//! merging, snapshot expiry with pins, the file sweep — and the lake still holds every row once,
//! the lander goes on committing, and the incremental read follows across a `replace`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use iceberg::Catalog;
use iceberg::spec::Operation;
use iceberg::table::Table;
use tributary_lake::LanderConfig;
use tributary_lake::batch::{Provenance, Row, change_row};
use tributary_lake::catalog::ensure_tables;
use tributary_lake::decode::{Cell, ChangeEvent, Op};
use tributary_lake::maintenance::{Maintainer, MaintenanceSettings};
use tributary_lake::sink::TableSink;
use tributary_raw::catalog::{self, load_table, read_table, snapshot_ledger, snapshot_offsets};
use tributary_raw::incremental::{live_file_rows, read_added};
use tributary_raw::ledger::{Fate, Ledger};
use tributary_raw::offsets::{OffsetMap, TopicPartition};
use tributary_raw::pins::SnapshotPins;
use tributary_raw::schema::RawTable;

use crate::common::{Store, provenance_counts, test_config};

const TOPIC: &str = "city";

pub(crate) fn city_row(offset: i64) -> Row {
    let event = ChangeEvent {
        op: Op::Create,
        image: vec![
            Cell::Long(offset),
            Cell::Str(format!("city {offset}")),
            Cell::Null,
        ],
        before_json: None,
        after_json: Some(format!(r#"{{"id":{offset}}}"#)),
        source_lsn: 100 + offset,
        source_ts_micros: 1,
        source_txid: Some(1),
    };
    let prov = Provenance {
        topic: TOPIC.into(),
        partition: 0,
        offset,
        ingest_time_micros: 2,
        trace_id: None,
    };
    change_row(event, &prov)
}

pub(crate) fn next(offset: i64) -> OffsetMap {
    [(TopicPartition::new(TOPIC, 0), offset)]
        .into_iter()
        .collect()
}

/// The ledger of a commit of the two records at `first` and `first + 1`, both landed.
fn two_landed(first: i64) -> Ledger {
    let mut ledger = Ledger::new();
    for offset in [first, first + 1] {
        ledger.count(&TopicPartition::new(TOPIC, 0), offset, Fate::Landed);
    }
    ledger
}

/// Kafka offsets of the rows, each with how many times it appears.
pub(crate) fn offsets_in(batches: &[arrow::array::RecordBatch]) -> BTreeMap<i64, usize> {
    provenance_counts(batches)
        .into_iter()
        .map(|((_, _, offset), n)| (offset, n))
        .collect()
}

pub(crate) fn once(offsets: impl IntoIterator<Item = i64>) -> BTreeMap<i64, usize> {
    offsets.into_iter().map(|o| (o, 1)).collect()
}

/// The objects under the table's folder, as Iceberg locations.
async fn objects(table: &Table) -> BTreeSet<String> {
    let settings = tributary_lake::LanderConfig::load(None, std::env::vars())
        .unwrap()
        .lake
        .s3;
    let location = table.metadata().location();
    let rest = location.strip_prefix("s3://").expect("an s3 table");
    let (bucket, key) = rest.split_once('/').unwrap();
    let store = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_endpoint(&settings.endpoint)
        .with_access_key_id(&settings.access_key_id)
        .with_secret_access_key(&settings.secret_access_key)
        .with_region(&settings.region)
        .with_allow_http(true)
        .build()
        .unwrap();
    use futures::TryStreamExt;
    use object_store::ObjectStore;
    store
        .list(Some(&object_store::path::Path::from(key)))
        .map_ok(|meta| format!("s3://{bucket}/{}", meta.location))
        .try_collect()
        .await
        .unwrap()
}

/// A namespace of its own (named after `name`) on the stack's catalog and object store, and the
/// writer of its `pg_city` table.
pub(crate) async fn city_sink(name: &str) -> (LanderConfig, Arc<dyn Catalog>, String, TableSink) {
    let config = test_config(name, Store::S3);
    let catalog: Arc<dyn Catalog> = Arc::new(
        catalog::open(&config.lake)
            .await
            .unwrap_or_else(|e| panic!("{e}: run `make test` (or `dev/up`) to start the stack")),
    );
    let namespace = config.lake.namespace.clone();
    ensure_tables(catalog.as_ref(), &namespace).await.unwrap();
    let sink = TableSink::open(catalog.clone(), &namespace, RawTable::PgCity)
        .await
        .unwrap();
    (config, catalog, namespace, sink)
}

/// No time window: only pins and the newest 3 hold snapshots back; no grace; 8 small files
/// compact, more than 4 manifests merge.
fn no_window_settings() -> MaintenanceSettings {
    MaintenanceSettings {
        snapshot_retention_s: 0,
        history_retention_s: 0,
        min_snapshots_to_keep: 3,
        target_file_bytes: 8 * 1024 * 1024,
        min_input_files: 8,
        max_manifests: 4,
        orphan_grace_s: 0,
        ..MaintenanceSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_compacts_merges_expires_and_sweeps_keeping_every_row_once() {
    let (config, catalog, namespace, mut sink) = city_sink("maint").await;

    // 30 small commits of 2 rows: 30 data files, 30 manifests, 30 snapshots.
    let mut snapshots = Vec::new();
    for commit in 0..30 {
        let first = commit * 2;
        let report = sink
            .commit_counted(
                &[city_row(first), city_row(first + 1)],
                &next(first + 2),
                &two_landed(first),
            )
            .await
            .unwrap();
        snapshots.push(report.snapshot_id);
    }
    let before = load_table(catalog.as_ref(), &namespace, RawTable::PgCity)
        .await
        .unwrap();
    assert_eq!(
        offsets_in(&read_table(&before, None).await.unwrap()),
        once(0..60)
    );
    let objects_before = objects(&before).await;

    // A reader continues from the 20th snapshot: it and everything after it stay.
    let pins = SnapshotPins::new(&config.lake).unwrap();
    let pinned = snapshots[19];
    let pinned_ms = before
        .metadata()
        .snapshot_by_id(pinned)
        .unwrap()
        .timestamp_ms();
    pins.pin("it-reader", &namespace, &[("pg_city", pinned, pinned_ms)])
        .await
        .unwrap();
    // A retained publication was computed from the 6th snapshot: it stays, alone.
    let published = snapshots[5];
    let published_ms = before
        .metadata()
        .snapshot_by_id(published)
        .unwrap()
        .timestamp_ms();
    pins.pin_exactly(
        "it-publication",
        &namespace,
        &[("pg_city", published, published_ms)],
    )
    .await
    .unwrap();

    let settings = no_window_settings();
    let maintainer =
        Maintainer::new(settings.clone(), &config.lake, &namespace, catalog.clone()).unwrap();
    let report = sink.maintain(&maintainer).await.unwrap();
    assert_eq!(report.files_rewritten, 30, "{report:?}");
    assert_eq!(report.files_written, 1, "{report:?}");
    assert_eq!(report.rows_rewritten, 60, "{report:?}");
    assert_eq!((report.manifests_before, report.manifests_after), (30, 1));
    // Snapshots 1..19 but the 6th expire; the 6th, 20..30 and the replace stay.
    assert_eq!((report.snapshots_before, report.snapshots_after), (30, 13));
    // Their manifest lists were the only files nothing reaches any more (the 20th snapshot
    // still reaches every data file and manifest before it).
    assert_eq!(report.files_deleted, 18, "{report:?}");

    let after = load_table(catalog.as_ref(), &namespace, RawTable::PgCity)
        .await
        .unwrap();
    let current = after.metadata().current_snapshot().unwrap();
    assert_eq!(current.summary().operation, Operation::Replace);
    assert_eq!(current.parent_snapshot_id(), Some(snapshots[29]));
    assert_eq!(
        snapshot_offsets(&after).unwrap(),
        next(60),
        "a replace moves no offset"
    );
    assert_eq!(
        snapshot_ledger(&after)
            .unwrap()
            .get(&TopicPartition::new(TOPIC, 0))
            .map(|l| (l.first_offset, l.records, l.landed)),
        Some((0, 60, 60)),
        "nor the ledger"
    );
    assert_eq!(Some(current.snapshot_id()), sink.snapshot_id());
    assert_eq!(
        offsets_in(&read_table(&after, None).await.unwrap()),
        once(0..60)
    );
    assert_eq!(
        live_file_rows(&after, current.snapshot_id())
            .await
            .unwrap()
            .len(),
        1
    );
    for (n, id) in snapshots.iter().enumerate() {
        assert_eq!(
            after.metadata().snapshot_by_id(*id).is_some(),
            n >= 19 || n == 5,
            "snapshot {n} kept iff at or after the pin, or pinned exactly"
        );
    }
    // The exactly pinned snapshot reads what the publication read.
    assert_eq!(
        offsets_in(&read_table(&after, Some(published)).await.unwrap()),
        once(0..12)
    );
    // A kept snapshot before the replace still reads its rows (time travel inside retention).
    assert_eq!(
        offsets_in(&read_table(&after, Some(snapshots[24])).await.unwrap()),
        once(0..50)
    );
    let objects_after = objects(&after).await;
    let gone: Vec<&String> = objects_before.difference(&objects_after).collect();
    assert_eq!(gone.len(), 18);
    assert!(
        gone.iter().all(|p| p.contains("/metadata/snap-")),
        "{gone:?}"
    );

    // The incremental read follows across the replace, from the pin or from nothing.
    let (batches, appends) = read_added(&after, "pg_city", Some(pinned), current.snapshot_id())
        .await
        .unwrap();
    assert_eq!(offsets_in(&batches), once(40..60));
    assert_eq!(appends.len(), 10);
    let (batches, _) = read_added(&after, "pg_city", None, current.snapshot_id())
        .await
        .unwrap();
    assert_eq!(offsets_in(&batches), once(0..60));

    // The lander goes on from the replace.
    let landed = sink.commit(&[city_row(60)], &next(61)).await.unwrap();
    let table = load_table(catalog.as_ref(), &namespace, RawTable::PgCity)
        .await
        .unwrap();
    let (batches, _) = read_added(&table, "pg_city", Some(pinned), landed.snapshot_id)
        .await
        .unwrap();
    assert_eq!(offsets_in(&batches), once(40..61));
    let (batches, _) = read_added(
        &table,
        "pg_city",
        Some(current.snapshot_id()),
        landed.snapshot_id,
    )
    .await
    .unwrap();
    assert_eq!(offsets_in(&batches), once([60]));

    // Pin released, one snapshot kept: the small files compaction replaced go, and what is
    // left in the folder is exactly what the current snapshot reaches plus the metadata.
    assert_eq!(pins.release("it-reader", &namespace).await.unwrap(), 1);
    // The publication is pruned: its holder (a prefix, none kept) lets go as well.
    assert_eq!(
        pins.retain_holders(&namespace, "it-publication", &[])
            .await
            .unwrap(),
        1
    );
    let maintainer = Maintainer::new(
        MaintenanceSettings {
            min_snapshots_to_keep: 1,
            ..settings
        },
        &config.lake,
        &namespace,
        catalog.clone(),
    )
    .unwrap();
    let report = sink.maintain(&maintainer).await.unwrap();
    assert_eq!(report.snapshots_after, 1, "{report:?}");
    assert_eq!(
        report.replace_snapshot_id, None,
        "2 files, 2 manifests: nothing to rewrite"
    );
    let table = load_table(catalog.as_ref(), &namespace, RawTable::PgCity)
        .await
        .unwrap();
    assert_eq!(
        offsets_in(&read_table(&table, None).await.unwrap()),
        once(0..61)
    );
    let live = live_file_rows(&table, landed.snapshot_id).await.unwrap();
    assert_eq!(live.len(), 2);
    let data: BTreeSet<String> = objects(&table)
        .await
        .into_iter()
        .filter(|p| p.contains("/data/"))
        .collect();
    assert_eq!(data, live.keys().cloned().collect::<BTreeSet<_>>());
    // The 30 small files were deleted with their manifests and lists.
    assert!(report.files_deleted >= 30, "{report:?}");

    // Time travel before the kept history is refused, naming the oldest moment and the
    // retention; at or after it, it reads.
    let kept = table.metadata().current_snapshot().unwrap().timestamp_ms();
    let before = chrono::DateTime::from_timestamp_millis(kept - 1).unwrap();
    let error = tributary_raw::snapshots::pin_raw_tables(
        catalog.as_ref(),
        &namespace,
        &tributary_raw::AsOf::Timestamp(before),
    )
    .await
    .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, tributary_raw::RawError::BeforeRetention { .. })
            && message.contains("keeps its history from")
            && message.contains("every snapshot of the last 0 s"),
        "{message}"
    );
    let at = chrono::DateTime::from_timestamp_millis(kept).unwrap();
    let pinned = tributary_raw::snapshots::pin_raw_tables(
        catalog.as_ref(),
        &namespace,
        &tributary_raw::AsOf::Timestamp(at),
    )
    .await
    .unwrap();
    assert_eq!(
        pinned[2].snapshot_id,
        Some(landed.snapshot_id),
        "pg_city at its kept snapshot"
    );
}

/// A run prepared beside the writer (as the lander's maintenance pass does) commits on the
/// table as the writer left it: the appends made meanwhile are carried into the replace, every
/// row is there once, the offsets are the newest, and the writer goes on. A run whose table
/// another maintenance commit moved meanwhile is refused without stopping the writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_prepared_beside_the_writer_commits_over_the_appends_made_meanwhile() {
    let (config, catalog, namespace, mut sink) = city_sink("beside").await;
    let commit = async |sink: &mut TableSink, first: i64| {
        sink.commit_counted(
            &[city_row(first), city_row(first + 1)],
            &next(first + 2),
            &two_landed(first),
        )
        .await
        .unwrap()
    };
    for first in (0..24).step_by(2) {
        commit(&mut sink, first).await;
    }
    let maintainer = Maintainer::new(
        no_window_settings(),
        &config.lake,
        &namespace,
        catalog.clone(),
    )
    .unwrap();
    let read = maintainer.load(RawTable::PgCity).await.unwrap();
    let mut prepared = maintainer.prepare(RawTable::PgCity, &read).await.unwrap();
    // A second run read the same table: it will find the first one's replace in its way.
    let mut stale = maintainer.prepare(RawTable::PgCity, &read).await.unwrap();

    // The writer goes on meanwhile: three more commits.
    let mut last = None;
    for first in (24..30).step_by(2) {
        last = Some(commit(&mut sink, first).await.snapshot_id);
    }
    let table = sink
        .apply_maintenance(&maintainer, &mut prepared)
        .await
        .unwrap();
    let current = table.metadata().current_snapshot().unwrap();
    assert_eq!(current.summary().operation, Operation::Replace);
    assert_eq!(current.parent_snapshot_id(), last);
    assert_eq!(Some(current.snapshot_id()), sink.snapshot_id());
    assert_eq!(
        snapshot_offsets(&table).unwrap(),
        next(30),
        "the replace carries the newest offsets"
    );
    assert_eq!(
        offsets_in(&read_table(&table, None).await.unwrap()),
        once(0..30)
    );
    let live = live_file_rows(&table, current.snapshot_id()).await.unwrap();
    assert_eq!(
        live.len(),
        4,
        "one compacted file and the three appended since: {live:?}"
    );
    let summary = &current.summary().additional_properties;
    assert_eq!(summary.get("total-records").map(String::as_str), Some("30"));
    assert_eq!(
        summary.get("total-data-files").map(String::as_str),
        Some("4")
    );
    // The incremental read sees the replace add nothing.
    let (batches, _) = read_added(&table, "pg_city", last, current.snapshot_id())
        .await
        .unwrap();
    assert!(batches.iter().all(|b| b.num_rows() == 0), "{batches:?}");

    // The sweep from the table the writer left keeps everything a snapshot reaches.
    let report = maintainer
        .sweep(prepared, &table, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(report.files_rewritten, 12, "{report:?}");
    assert!(report.commit_elapsed <= report.elapsed, "{report:?}");
    assert_eq!(
        offsets_in(&read_table(&table, None).await.unwrap()),
        once(0..30)
    );

    // The stale run is refused (its entries predate the replace); the writer goes on.
    let error = sink
        .apply_maintenance(&maintainer, &mut stale)
        .await
        .unwrap_err();
    assert!(
        !matches!(error, tributary_lake::LakeError::MaintenanceConflict { .. })
            && error.to_string().contains("not an append"),
        "{error}"
    );
    commit(&mut sink, 30).await;
    let table = load_table(catalog.as_ref(), &namespace, RawTable::PgCity)
        .await
        .unwrap();
    assert_eq!(
        offsets_in(&read_table(&table, None).await.unwrap()),
        once(0..32)
    );
}
