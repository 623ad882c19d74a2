//! Retention on the real services: publications in ClickHouse and their lake pins in the
//! catalog's Postgres (the local stack's). Fails — never skips — when they are not running:
//! run `make test`.

use std::collections::BTreeSet;

use chrono::{Duration, Utc};
use tributary_common::{ClickHouseSettings, LakeSettings};
use tributary_marts::config::RetentionSettings;
use tributary_marts::retention::{prune, publication_holder};
use tributary_rankings::ranking::Rankings;
use tributary_rankings::{
    ClickHouseStore, LakeSnapshot, LakeSnapshots, Publication, PublicationWriter, RankingQueries,
};
use tributary_raw::pins::SnapshotPins;

fn snapshots(sale: i64) -> LakeSnapshots {
    LakeSnapshots(vec![LakeSnapshot {
        table: "pg_sale".into(),
        snapshot_id: Some(sale),
    }])
}

/// Three publications, five hours, four hours and a moment old, each pinning its lake snapshot;
/// a retention of an hour with the second pinned by the operator: the first goes from every
/// table, its pin with it; the marts' own checkpoint pin is not a publication's and stays.
#[tokio::test]
async fn prune_drops_old_publications_and_releases_their_lake_pins() {
    let suffix = std::process::id();
    let store = ClickHouseStore::new(&ClickHouseSettings {
        database: format!("marts_it_prune_{suffix}"),
        ..ClickHouseSettings::default()
    })
    .unwrap();
    store
        .ensure_schema()
        .await
        .unwrap_or_else(|e| panic!("{e}: run `make test` (or `dev/up`) to start the stack"));
    let pins = SnapshotPins::new(&LakeSettings::default()).unwrap();
    let namespace = format!("it_prune_{suffix}");
    let holder = "marts:it_prune";

    let now = Utc::now();
    let mut ids = Vec::new();
    for (sale, hours_ago) in [(1, 5), (2, 4), (3, 0)] {
        let at = now - Duration::hours(hours_ago);
        let publication = Publication::new(
            snapshots(sale),
            format!("run-{sale}"),
            at,
            Rankings::default(),
        )
        .with_lake_committed_ms(Some(at.timestamp_millis() - 60_000));
        store.publish(&publication).await.unwrap();
        pins.pin_exactly(
            &publication_holder(holder, &publication.id),
            &namespace,
            &[("pg_sale", sale, at.timestamp_millis())],
        )
        .await
        .unwrap();
        ids.push(publication.id);
    }
    pins.pin(
        holder,
        &namespace,
        &[("pg_sale", 3, now.timestamp_millis())],
    )
    .await
    .unwrap();

    let settings = RetentionSettings {
        publications_s: 3_600,
        pinned_publications: vec![ids[1].clone()],
        ..RetentionSettings::default()
    };
    let report = prune(&store, Some((&pins, holder)), &namespace, &settings, now)
        .await
        .unwrap();
    assert_eq!(report.dropped_publications, [ids[0].clone()], "{report:?}");
    assert_eq!(report.retained_publications, 2);
    assert_eq!(report.dropped_partitions.len(), 1);
    assert_eq!(report.pins_released, 1);
    assert!(store.sources(&ids[0]).await.unwrap().is_empty());
    assert_eq!(
        store
            .latest_publication()
            .await
            .unwrap()
            .unwrap()
            .publication_id,
        ids[2]
    );
    let holders: BTreeSet<String> = pins
        .pins(&namespace, "pg_sale")
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.holder)
        .collect();
    let expected: BTreeSet<String> = [
        holder.to_string(),
        publication_holder(holder, &ids[1]),
        publication_holder(holder, &ids[2]),
    ]
    .into();
    assert_eq!(holders, expected);

    // Again: nothing more to drop or release.
    let again = prune(&store, Some((&pins, holder)), &namespace, &settings, now)
        .await
        .unwrap();
    assert!(
        again.dropped_partitions.is_empty() && again.pins_released == 0,
        "{again:?}"
    );

    pins.retain_holders(&namespace, "", &[]).await.unwrap();
    store
        .client()
        .query(&format!("DROP DATABASE IF EXISTS {}", store.database()))
        .execute()
        .await
        .unwrap();
}
