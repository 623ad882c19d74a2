//! The maintenance commit: a `replace` snapshot (merged manifest, compacted files) and expired
//! snapshots, as one new metadata file swapped into the SQL catalog's row for the table.
//!
//! iceberg-rust 0.10 builds commits only through its transaction actions, of which only
//! `fast_append` produces a snapshot, and `TableCommit` cannot be built outside the crate. So
//! this writes what a Java `RewriteFiles` + `ExpireSnapshots` would — manifest, manifest list,
//! metadata (through the public writers and `TableMetadataBuilder`) — and commits as the SQL
//! catalog does: `UPDATE iceberg_tables SET metadata_location = new WHERE … AND
//! metadata_location = old`. If the row moved, nothing is committed (the files written are
//! orphans the sweep removes).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use iceberg::MetadataLocation;
use iceberg::spec::{
    FormatVersion, MAIN_BRANCH, ManifestEntry, ManifestFile, ManifestListWriter,
    ManifestWriterBuilder, Operation, Snapshot, Summary, TableMetadata,
};
use iceberg::table::Table;
use sqlx::Connection;
use tributary_common::LakeSettings;
use tributary_raw::incremental::manifest_list;
use tributary_raw::ledger::LEDGER_PROPERTY;
use tributary_raw::offsets::{OFFSETS_PROPERTY, TRACEPARENT_PROPERTY};
use tributary_raw::snapshots::RETENTION_PROPERTY;

use super::compact::Compacted;
use crate::error::LakeError;

/// Marks the snapshots maintenance commits (`tributary.maintenance` = what it did).
pub const MAINTENANCE_PROPERTY: &str = "tributary.maintenance";

/// A snapshot id the table does not use yet (as iceberg-rust picks them: random, positive).
pub(super) fn new_snapshot_id(metadata: &TableMetadata) -> i64 {
    loop {
        let (a, b) = uuid::Uuid::new_v4().as_u64_pair();
        let id = ((a ^ b) >> 1) as i64;
        if id != 0 && metadata.snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

/// What a maintenance run read: a snapshot, its manifests and their live entries.
pub(super) struct Base<'a> {
    pub snapshot_id: Option<i64>,
    pub manifests: &'a HashSet<String>,
    pub entries: &'a [ManifestEntry],
}

/// Commits `replace` (its snapshot id and the files compaction changed; every other live entry
/// of `base` is carried into one merged manifest) and removes the `expire` snapshots, on top
/// of exactly the metadata `table` was loaded from. `table` may have moved on from `base` by
/// appends only: their manifests go into the replace as they are. Returns how many manifests
/// the replace snapshot lists (`None` without one).
pub(super) async fn commit(
    db: &mut Option<sqlx::PgConnection>,
    lake: &LakeSettings,
    table: &Table,
    base: Base<'_>,
    replace: Option<(i64, Compacted)>,
    expire: &[i64],
    retention: &str,
) -> Result<Option<usize>, LakeError> {
    let qualified = table.identifier().to_string();
    let iceberg = |action| super::iceberg_err(action, &qualified);
    let metadata = table.metadata();
    let current_location = table
        .metadata_location()
        .ok_or_else(|| {
            iceberg("maintenance commit")(iceberg::Error::new(
                iceberg::ErrorKind::DataInvalid,
                "the table was loaded without a metadata location",
            ))
        })?
        .to_string();
    if metadata.format_version() != FormatVersion::V2 {
        return Err(iceberg("maintenance commit")(iceberg::Error::new(
            iceberg::ErrorKind::FeatureUnsupported,
            format!(
                "maintenance writes format v2 tables; this one is {}",
                metadata.format_version()
            ),
        )));
    }
    let mut builder = metadata
        .clone()
        .into_builder(Some(current_location.clone()));
    let mut manifests = None;
    if let Some((snapshot_id, compacted)) = replace {
        let appended = appended_since(table, &base).await?;
        manifests = Some(1 + appended.len());
        if metadata.snapshot_by_id(snapshot_id).is_some() {
            return Err(iceberg("maintenance commit")(iceberg::Error::new(
                iceberg::ErrorKind::DataInvalid,
                format!("snapshot id {snapshot_id} was taken since the run drew it"),
            )));
        }
        let snapshot =
            write_replace_snapshot(table, base.entries, appended, snapshot_id, &compacted)
                .await
                .map_err(iceberg("write replace snapshot"))?;
        builder = builder
            .set_branch_snapshot(snapshot, MAIN_BRANCH)
            .map_err(iceberg("add replace snapshot"))?;
    }
    if !expire.is_empty() {
        builder = builder.remove_snapshots(expire);
    }
    if metadata
        .properties()
        .get(RETENTION_PROPERTY)
        .map(String::as_str)
        != Some(retention)
    {
        builder = builder
            .set_properties(HashMap::from([(
                RETENTION_PROPERTY.to_string(),
                retention.to_string(),
            )]))
            .map_err(iceberg("record the retention"))?;
    }
    let built = builder.build().map_err(iceberg("build metadata"))?;
    let location = MetadataLocation::from_str(&current_location)
        .map_err(iceberg("parse metadata location"))?
        .with_next_version()
        .with_new_metadata(&built.metadata);
    built
        .metadata
        .write_to(table.file_io(), &location)
        .await
        .map_err(iceberg("write metadata"))?;
    swap_metadata_location(db, lake, table, &current_location, &location.to_string()).await?;
    Ok(manifests)
}

/// The manifests `table`'s current snapshot has beyond those of `base`: what the appends since
/// added. Fails unless every snapshot between them is an append (another maintenance commit in
/// between would make the run's entries stale; the next run starts again from the table).
async fn appended_since(table: &Table, base: &Base<'_>) -> Result<Vec<ManifestFile>, LakeError> {
    let qualified = table.identifier().to_string();
    let metadata = table.metadata();
    let moved = |problem: String| {
        super::iceberg_err("maintenance commit", &qualified)(iceberg::Error::new(
            iceberg::ErrorKind::DataInvalid,
            format!("{problem}; the next maintenance run starts again from the table"),
        ))
    };
    let Some(current) = metadata.current_snapshot() else {
        return Err(moved("the table lost its current snapshot".into()));
    };
    if Some(current.snapshot_id()) == base.snapshot_id {
        return Ok(Vec::new());
    }
    let mut at = Some(current.clone());
    while let Some(snapshot) = at {
        if Some(snapshot.snapshot_id()) == base.snapshot_id {
            let list = manifest_list(table, current, &qualified).await?;
            return Ok(list
                .entries()
                .iter()
                .filter(|m| !base.manifests.contains(&m.manifest_path))
                .cloned()
                .collect());
        }
        if snapshot.summary().operation != Operation::Append {
            return Err(moved(format!(
                "snapshot {} since the run read the table is a {:?}, not an append",
                snapshot.snapshot_id(),
                snapshot.summary().operation
            )));
        }
        at = snapshot
            .parent_snapshot_id()
            .and_then(|parent| metadata.snapshot_by_id(parent).cloned());
    }
    Err(moved(format!(
        "snapshot {:?} the run read is no longer an ancestor of the current one",
        base.snapshot_id
    )))
}

/// A total of a snapshot summary, if it has it.
fn total(summary: &Summary, name: &str) -> Option<u64> {
    summary.additional_properties.get(name)?.parse().ok()
}

/// Writes the merged manifest and the manifest list of a `replace` snapshot on top of the
/// current one, and returns the snapshot (not yet committed). `appended`: manifests of appends
/// since `entries` were read, listed as they are.
async fn write_replace_snapshot(
    table: &Table,
    entries: &[ManifestEntry],
    appended: Vec<ManifestFile>,
    snapshot_id: i64,
    compacted: &Compacted,
) -> iceberg::Result<Snapshot> {
    let metadata = table.metadata();
    let sequence_number = metadata.next_sequence_number();
    let commit = uuid::Uuid::new_v4();
    let manifest_path = format!("{}/metadata/{commit}-m0.avro", metadata.location());
    let mut manifest = ManifestWriterBuilder::new(
        table.file_io().new_output(&manifest_path)?,
        Some(snapshot_id),
        metadata.current_schema().clone(),
        metadata.default_partition_spec().as_ref().clone(),
    )
    .build_v2_data();
    for entry in entries
        .iter()
        .filter(|e| !compacted.removed.contains(e.file_path()))
    {
        manifest.add_existing_file(
            entry.data_file().clone(),
            entry.snapshot_id().unwrap_or(snapshot_id),
            entry.sequence_number().unwrap_or(0),
            entry.file_sequence_number,
        )?;
    }
    let mut removed_rows = 0;
    let mut removed_bytes = 0;
    for entry in entries
        .iter()
        .filter(|e| compacted.removed.contains(e.file_path()))
    {
        removed_rows += entry.record_count();
        removed_bytes += entry.file_size_in_bytes();
        manifest.add_delete_file(
            entry.data_file().clone(),
            entry.sequence_number().unwrap_or(0),
            entry.file_sequence_number,
        )?;
    }
    for file in &compacted.added {
        manifest.add_file(file.clone(), sequence_number)?;
    }
    let manifest_file = manifest.write_manifest_file().await?;

    let list_path = format!(
        "{}/metadata/snap-{snapshot_id}-0-{commit}.avro",
        metadata.location()
    );
    let parent = metadata.current_snapshot();
    let mut list = ManifestListWriter::v2(
        table.file_io().new_output(&list_path)?.writer().await?,
        snapshot_id,
        parent.map(|s| s.snapshot_id()),
        sequence_number,
    );
    let carried = appended.len();
    list.add_manifests(std::iter::once(manifest_file).chain(appended))?;
    list.close().await?;

    // The offsets, the ledger and the commit's trace stay those of the last landing: a replace moves no
    // offset, and the lander resumes from the current snapshot's map.
    let mut properties: HashMap<String, String> = parent
        .map(|s| {
            s.summary()
                .additional_properties
                .iter()
                .filter(|(k, _)| {
                    [OFFSETS_PROPERTY, LEDGER_PROPERTY, TRACEPARENT_PROPERTY].contains(&k.as_str())
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let added_rows: u64 = compacted.added.iter().map(|f| f.record_count()).sum();
    let added_bytes: u64 = compacted.added.iter().map(|f| f.file_size_in_bytes()).sum();
    // The parent's totals when it has them (they count the appends carried as they are), else
    // the entries' (all there is when nothing was carried).
    let parent_totals = parent.and_then(|s| {
        Some((
            total(s.summary(), "total-data-files")?,
            total(s.summary(), "total-records")?,
            total(s.summary(), "total-files-size")?,
        ))
    });
    let (total_files, total_rows, total_bytes) = match parent_totals {
        Some((files, rows, bytes)) => (
            files + compacted.added.len() as u64 - compacted.removed.len() as u64,
            rows,
            bytes + added_bytes - removed_bytes,
        ),
        None if carried == 0 => (
            (entries.len() - compacted.removed.len() + compacted.added.len()) as u64,
            entries.iter().map(|e| e.record_count()).sum(),
            entries.iter().map(|e| e.file_size_in_bytes()).sum::<u64>() - removed_bytes
                + added_bytes,
        ),
        None => {
            return Err(iceberg::Error::new(
                iceberg::ErrorKind::DataInvalid,
                "the current snapshot's summary has no totals to carry the appends' into",
            ));
        }
    };
    let what = if compacted.added.is_empty() {
        "merge-manifests"
    } else {
        "compact"
    };
    properties.extend([
        (MAINTENANCE_PROPERTY.to_string(), what.to_string()),
        ("added-data-files".into(), compacted.added.len().to_string()),
        (
            "deleted-data-files".into(),
            compacted.removed.len().to_string(),
        ),
        ("added-records".into(), added_rows.to_string()),
        ("deleted-records".into(), removed_rows.to_string()),
        ("added-files-size".into(), added_bytes.to_string()),
        ("removed-files-size".into(), removed_bytes.to_string()),
        ("total-data-files".into(), total_files.to_string()),
        ("total-records".into(), total_rows.to_string()),
        ("total-files-size".into(), total_bytes.to_string()),
        ("total-delete-files".into(), "0".into()),
        ("total-position-deletes".into(), "0".into()),
        ("total-equality-deletes".into(), "0".into()),
    ]);
    Ok(Snapshot::builder()
        .with_manifest_list(list_path)
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(parent.map(|s| s.snapshot_id()))
        .with_sequence_number(sequence_number)
        .with_summary(Summary {
            operation: Operation::Replace,
            additional_properties: properties,
        })
        .with_schema_id(metadata.current_schema_id())
        .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
        .build())
}

/// The SQL catalog's compare-and-swap of the table's row, on a connection of maintenance's own.
async fn swap_metadata_location(
    db: &mut Option<sqlx::PgConnection>,
    lake: &LakeSettings,
    table: &Table,
    expected: &str,
    new: &str,
) -> Result<(), LakeError> {
    let qualified = table.identifier().to_string();
    let db_err = |action| {
        let qualified = qualified.clone();
        move |source| LakeError::CatalogDb {
            table: qualified,
            action,
            source,
        }
    };
    let alive = match db.as_mut() {
        Some(connection) => connection.ping().await.is_ok(),
        None => false,
    };
    if !alive {
        *db = Some(
            sqlx::PgConnection::connect(&lake.catalog_uri)
                .await
                .map_err(db_err("connect"))?,
        );
    }
    let connection = db.as_mut().expect("connected above");
    let swapped = tributary_raw::caching_catalog::swap_metadata_location(
        connection,
        &lake.catalog_name,
        table.identifier(),
        expected,
        new,
    )
    .await
    .map_err(db_err("swap metadata_location"))?;
    if !swapped {
        return Err(LakeError::MaintenanceConflict {
            table: qualified,
            expected: expected.to_string(),
        });
    }
    Ok(())
}
