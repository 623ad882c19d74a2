//! The catalog the lake opens answers a load from memory while the table's metadata file is
//! still the current one: a commit made through another catalog (another process) is seen at
//! once all the same, and still fences this process's writer.

use std::sync::Arc;

use iceberg::Catalog;
use tributary_lake::error::LakeError;
use tributary_lake::sink::TableSink;
use tributary_raw::catalog::{self, load_table, read_table, snapshot_offsets};
use tributary_raw::schema::RawTable;

use crate::maintenance_it::{city_row, city_sink, next, offsets_in, once};

#[tokio::test]
async fn a_commit_through_another_catalog_is_seen_at_once_and_fences_this_writer() {
    let (config, catalog_a, namespace, mut writer_a) = city_sink("cached_catalog").await;
    let catalog_b: Arc<dyn Catalog> = Arc::new(catalog::open(&config.lake).await.unwrap());
    let load = |catalog: Arc<dyn Catalog>| {
        let namespace = namespace.clone();
        async move {
            load_table(catalog.as_ref(), &namespace, RawTable::PgCity)
                .await
                .unwrap()
        }
    };

    writer_a
        .commit(&[city_row(0), city_row(1)], &next(2))
        .await
        .unwrap();
    let (seen_by_a, seen_by_b) = (load(catalog_a.clone()).await, load(catalog_b.clone()).await);
    assert_eq!(
        seen_by_a.metadata().current_snapshot_id(),
        writer_a.snapshot_id()
    );
    assert_eq!(seen_by_b.metadata_location(), seen_by_a.metadata_location());
    // Loaded again unchanged: the same metadata, from memory.
    let again = load(catalog_a.clone()).await;
    assert!(Arc::ptr_eq(
        &again.metadata_ref(),
        &seen_by_a.metadata_ref()
    ));

    // Another writer moves the table through its own catalog; this catalog had kept the
    // metadata before that commit, and must not answer with it.
    let mut writer_b = TableSink::open(catalog_b.clone(), &namespace, RawTable::PgCity)
        .await
        .unwrap();
    writer_b.commit(&[city_row(2)], &next(3)).await.unwrap();
    let now_seen_by_a = load(catalog_a.clone()).await;
    assert_eq!(
        now_seen_by_a.metadata().current_snapshot_id(),
        writer_b.snapshot_id()
    );
    assert_eq!(snapshot_offsets(&now_seen_by_a).unwrap(), next(3));

    let error = writer_a
        .commit(&[city_row(3)], &next(4))
        .await
        .expect_err("the first writer's table moved under it");
    assert!(matches!(error, LakeError::Fenced { .. }), "{error}");

    let table = load(catalog_a).await;
    assert_eq!(
        offsets_in(&read_table(&table, None).await.unwrap()),
        once(0..3)
    );
}
