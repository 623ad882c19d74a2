//! The incremental read: the rows a raw table gained between two of its snapshots, read from the
//! data files those commits added — what the incremental marts read on every run.
//!
//! The lander appends; lake maintenance (`tributary-lake`'s `maintenance`) adds `replace`
//! snapshots that rewrite files and merge manifests without changing a row, and expires old
//! snapshots. The read follows both: a `replace` adds nothing new, and a run that starts from
//! nothing reads the current snapshot's live files, whatever history is left.

use std::collections::{HashMap, HashSet};

use arrow::array::RecordBatch;
use futures::TryStreamExt;
use iceberg::spec::{ManifestContentType, ManifestList, ManifestStatus, Operation, TableMetadata};
use iceberg::table::Table;

use crate::error::RawError;

/// The rows a raw table gained between two of its snapshots: the data files that the append
/// snapshots after `since` (exclusive) up to `upto` (inclusive) added, read in full. This is the
/// incremental marts' read: its cost follows what was added, not the table's history (one
/// manifest list, plus one per maintenance rewrite in the range, the manifests written in the
/// range, their files).
///
/// With `since` = `None` (nothing read yet) it reads every live row of `upto`: the table's
/// whole content, however much of its history maintenance expired.
///
/// The lander only appends and maintenance only rewrites (`replace`), so "added by the appends
/// in the range" is exactly "new since `since`". A range that is not such a chain — `since` is
/// not an ancestor of `upto` (the table was recreated or rolled back, or `since` expired), or a
/// commit in it is neither an append nor a replace — is [`RawError::Diverged`]: whatever was
/// folded from the earlier range must be rebuilt.
///
/// Also returns the append snapshot ids in the range, newest first (the run links its span to
/// the lander commits that wrote them).
pub async fn read_added(
    table: &Table,
    qualified: &str,
    since: Option<i64>,
    upto: i64,
) -> Result<(Vec<RecordBatch>, Vec<i64>), RawError> {
    let metadata = table.metadata();
    let chain = walk_range(metadata, qualified, since, upto)?;
    let lake_err = |source| RawError::iceberg("read added files", qualified, source);
    if since.is_none() {
        let files = live_files(table, upto, qualified, |_| true).await?;
        return Ok((read_files(table, files, qualified).await?, chain.appends));
    }
    if chain.appends.is_empty() {
        return Ok((Vec::new(), chain.appends));
    }
    let appends: HashSet<i64> = chain.appends.iter().copied().collect();
    let file_io = table.file_io();
    let mut seen_manifests = HashSet::new();
    let mut files = Vec::new();
    for list_of in chain.lists_to_read {
        let snapshot = metadata
            .snapshot_by_id(list_of)
            .ok_or_else(|| RawError::Diverged {
                table: qualified.to_string(),
                reason: format!("snapshot {list_of} is not in the table metadata"),
            })?;
        let list = manifest_list(table, snapshot, qualified).await?;
        for manifest_file in list.entries() {
            if manifest_file.content != ManifestContentType::Data
                || !appends.contains(&manifest_file.added_snapshot_id)
                || !seen_manifests.insert(manifest_file.manifest_path.clone())
            {
                continue;
            }
            let manifest = manifest_file
                .load_manifest(file_io)
                .await
                .map_err(lake_err)?;
            for entry in manifest.entries() {
                let added_here = entry.status() == ManifestStatus::Added
                    && entry.snapshot_id().is_some_and(|id| appends.contains(&id));
                if added_here {
                    files.push(FileToRead::of(entry.data_file()));
                }
            }
        }
    }
    Ok((read_files(table, files, qualified).await?, chain.appends))
}

/// The snapshots of a range, as [`read_added`] needs them.
#[derive(Debug, PartialEq, Eq)]
struct Range {
    /// Append snapshots after `since` up to `upto`, newest first.
    appends: Vec<i64>,
    /// The snapshots whose manifest lists hold every manifest the appends wrote: `upto` if it is
    /// an append, and the parent of each `replace` in the range when that parent is an append in
    /// the range (a `replace` merges the manifests before it into its own).
    lists_to_read: Vec<i64>,
}

/// Follows parents from `upto` back to `since`. Pure (metadata only).
fn walk_range(
    metadata: &TableMetadata,
    qualified: &str,
    since: Option<i64>,
    upto: i64,
) -> Result<Range, RawError> {
    let diverged = |reason: String| RawError::Diverged {
        table: qualified.to_string(),
        reason,
    };
    let mut range = Range {
        appends: Vec::new(),
        lists_to_read: Vec::new(),
    };
    // Whether the snapshot just visited (the child of `cursor`) is a replace.
    let mut child_is_replace = false;
    let mut cursor = Some(upto);
    while let Some(id) = cursor {
        if Some(id) == since {
            return Ok(range);
        }
        let Some(snapshot) = metadata.snapshot_by_id(id) else {
            if since.is_none() && id != upto {
                // Maintenance expired the history before this point; reading from nothing
                // reads the live files of `upto`, which still hold every row.
                return Ok(range);
            }
            return Err(diverged(format!(
                "snapshot {id} is not in the table metadata (expired?)"
            )));
        };
        match &snapshot.summary().operation {
            Operation::Append => {
                if id == upto || child_is_replace {
                    range.lists_to_read.push(id);
                }
                range.appends.push(id);
                child_is_replace = false;
            }
            Operation::Replace => child_is_replace = true,
            other => {
                return Err(diverged(format!(
                    "snapshot {id} is a {} commit; the marts follow append-only tables",
                    other.as_str()
                )));
            }
        }
        cursor = snapshot.parent_snapshot_id();
    }
    match since {
        None => Ok(range),
        Some(since) => Err(diverged(format!(
            "snapshot {since} (where the state stopped) is not an ancestor of the current snapshot {upto}"
        ))),
    }
}

/// A data file to read in full.
#[derive(Debug, Clone)]
pub struct FileToRead {
    path: String,
    size: u64,
    records: u64,
    format: iceberg::spec::DataFileFormat,
}

impl FileToRead {
    /// The file a manifest entry names.
    pub fn of(file: &iceberg::spec::DataFile) -> Self {
        Self {
            path: file.file_path().to_string(),
            size: file.file_size_in_bytes(),
            records: file.record_count(),
            format: file.file_format(),
        }
    }
}

/// The live data files of `snapshot_id` (status added or existing) that `keep` accepts.
pub async fn live_files(
    table: &Table,
    snapshot_id: i64,
    qualified: &str,
    keep: impl Fn(&iceberg::spec::DataFile) -> bool,
) -> Result<Vec<FileToRead>, RawError> {
    let lake_err = |source| RawError::iceberg("list live files", qualified, source);
    let metadata = table.metadata();
    let snapshot =
        metadata
            .snapshot_by_id(snapshot_id)
            .ok_or_else(|| RawError::UnknownSnapshot {
                table: qualified.to_string(),
                snapshot_id,
            })?;
    let list = manifest_list(table, snapshot, qualified).await?;
    let mut files = Vec::new();
    for manifest_file in list.entries() {
        if manifest_file.content != ManifestContentType::Data {
            continue;
        }
        let manifest = manifest_file
            .load_manifest(table.file_io())
            .await
            .map_err(lake_err)?;
        files.extend(
            manifest
                .entries()
                .iter()
                .filter(|e| e.is_alive() && keep(e.data_file()))
                .map(|e| FileToRead::of(e.data_file())),
        );
    }
    Ok(files)
}

/// Reads `files` in full with the table's current schema (columns a file predates read null).
pub async fn read_files(
    table: &Table,
    files: Vec<FileToRead>,
    qualified: &str,
) -> Result<Vec<RecordBatch>, RawError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let lake_err = |source| RawError::iceberg("read data files", qualified, source);
    read_stream(table, files, qualified)?
        .try_collect()
        .await
        .map_err(lake_err)
}

/// Streams the rows of `files` with the table's current schema, batch by batch (compaction
/// rewrites files through it without holding them in memory).
pub fn read_stream(
    table: &Table,
    files: Vec<FileToRead>,
    qualified: &str,
) -> Result<iceberg::scan::ArrowRecordBatchStream, RawError> {
    let lake_err = |source| RawError::iceberg("read data files", qualified, source);
    let schema = table.metadata().current_schema().clone();
    let field_ids: Vec<i32> = schema.as_struct().fields().iter().map(|f| f.id).collect();
    let tasks = files.into_iter().map(|file| {
        Ok(iceberg::scan::FileScanTask::builder()
            .with_file_size_in_bytes(file.size)
            .with_start(0)
            .with_length(file.size)
            .with_record_count(Some(file.records))
            .with_data_file_path(file.path)
            .with_data_file_format(file.format)
            .with_schema(schema.clone())
            .with_project_field_ids(field_ids.clone())
            .with_case_sensitive(true)
            .build())
    });
    let reader = iceberg::arrow::ArrowReaderBuilder::new(
        table.file_io().clone(),
        iceberg::Runtime::current(),
    )
    .build();
    Ok(reader
        .read(Box::pin(futures::stream::iter(tasks.collect::<Vec<_>>())))
        .map_err(lake_err)?
        .stream())
}

/// How many rows each live data file of `snapshot_id` holds, by path (tests and maintenance
/// checks).
pub async fn live_file_rows(
    table: &Table,
    snapshot_id: i64,
) -> Result<HashMap<String, u64>, RawError> {
    let qualified = table.identifier().to_string();
    Ok(live_files(table, snapshot_id, &qualified, |_| true)
        .await?
        .into_iter()
        .map(|f| (f.path, f.records))
        .collect())
}
/// Reads the manifest list of `snapshot` (maintenance and the incremental read).
pub async fn manifest_list(
    table: &Table,
    snapshot: &iceberg::spec::Snapshot,
    qualified: &str,
) -> Result<ManifestList, RawError> {
    let lake_err = |source| RawError::iceberg("read manifest list", qualified, source);
    let bytes = table
        .file_io()
        .new_input(snapshot.manifest_list())
        .map_err(lake_err)?
        .read()
        .await
        .map_err(lake_err)?;
    ManifestList::parse_with_version(&bytes, table.metadata().format_version()).map_err(lake_err)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use iceberg::spec::{
        FormatVersion, MAIN_BRANCH, Schema, Snapshot, SortOrder, Summary, TableMetadataBuilder,
        UnboundPartitionSpec,
    };

    use super::*;

    /// A table whose snapshots 1..=n are `ops[i - 1]`, each the parent of the next, with the
    /// snapshots in `expired` removed (as maintenance removes them).
    fn table(ops: &[Operation], expired: &[i64]) -> TableMetadata {
        let mut metadata = TableMetadataBuilder::new(
            Schema::builder().build().unwrap(),
            UnboundPartitionSpec::builder().build(),
            SortOrder::unsorted_order(),
            "memory://lake/t".into(),
            FormatVersion::V2,
            HashMap::new(),
        )
        .unwrap()
        .build()
        .unwrap()
        .metadata;
        // Iceberg refuses a snapshot older than the metadata's last update (now).
        let base = chrono::Utc::now().timestamp_millis() + 1_000;
        for (i, op) in ops.iter().enumerate() {
            let id = i as i64 + 1;
            let snapshot = Snapshot::builder()
                .with_snapshot_id(id)
                .with_parent_snapshot_id((id > 1).then_some(id - 1))
                .with_sequence_number(id)
                .with_timestamp_ms(base + id)
                .with_manifest_list(format!("memory://lake/t/snap-{id}.avro"))
                .with_summary(Summary {
                    operation: op.clone(),
                    additional_properties: HashMap::new(),
                })
                .build();
            metadata = metadata
                .into_builder(None)
                .set_branch_snapshot(snapshot, MAIN_BRANCH)
                .unwrap()
                .build()
                .unwrap()
                .metadata;
        }
        metadata
            .into_builder(None)
            .remove_snapshots(expired)
            .build()
            .unwrap()
            .metadata
    }

    use Operation::{Append, Overwrite, Replace};

    #[test]
    fn a_plain_chain_reads_the_newest_list_only() {
        let metadata = table(&[Append, Append, Append, Append], &[]);
        let range = walk_range(&metadata, "t", Some(1), 4).unwrap();
        assert_eq!(range.appends, vec![4, 3, 2]);
        assert_eq!(range.lists_to_read, vec![4]);
    }

    #[test]
    fn a_replace_adds_nothing_and_its_parent_list_holds_what_it_merged() {
        // 1 A, 2 A, 3 A, 4 R (merges 1–3), 5 A, 6 R, 7 R, 8 A.
        let ops = [
            Append, Append, Append, Replace, Append, Replace, Replace, Append,
        ];
        let metadata = table(&ops, &[]);
        let range = walk_range(&metadata, "t", Some(1), 8).unwrap();
        assert_eq!(range.appends, vec![8, 5, 3, 2]);
        // 8 holds 8's manifest; 5 (parent of the replace 6) holds 5's; 3 (parent of 4) holds 2
        // and 3's. 6 is the parent of 7 but a replace itself: nothing of its own.
        assert_eq!(range.lists_to_read, vec![8, 5, 3]);
        // Ending on a replace: its parent's list.
        let range = walk_range(&metadata, "t", Some(4), 7).unwrap();
        assert_eq!(range.appends, vec![5]);
        assert_eq!(range.lists_to_read, vec![5]);
    }

    #[test]
    fn expired_history_is_fine_from_nothing_or_from_a_kept_snapshot_only() {
        let metadata = table(&[Append, Append, Replace, Append, Append], &[1, 2]);
        // From nothing: the walk stops where history was expired (the read takes live files).
        let range = walk_range(&metadata, "t", None, 5).unwrap();
        assert_eq!(range.appends, vec![5, 4]);
        // From a kept snapshot.
        assert_eq!(
            walk_range(&metadata, "t", Some(3), 5).unwrap().appends,
            vec![5, 4]
        );
        // From the expired parent of a kept one: the range (2, 5] is still whole.
        assert_eq!(
            walk_range(&metadata, "t", Some(2), 5).unwrap().appends,
            vec![5, 4]
        );
        // From further back: the state must be rebuilt.
        let error = walk_range(&metadata, "t", Some(1), 5).unwrap_err();
        assert!(matches!(error, RawError::Diverged { .. }), "{error}");
    }

    #[test]
    fn the_kept_history_starts_at_the_oldest_snapshot_whose_parent_expired() {
        let whole = table(&[Append, Append, Append], &[]);
        assert_eq!(crate::snapshots::history_starts(&whole), None);
        let thinned = table(&[Append, Append, Append, Append], &[1, 2]);
        let third = thinned.snapshot_by_id(3).unwrap().timestamp_ms();
        assert_eq!(crate::snapshots::history_starts(&thinned), Some(third));
    }

    #[test]
    fn anything_but_appends_and_replaces_diverges() {
        let metadata = table(&[Append, Overwrite, Append], &[]);
        let error = walk_range(&metadata, "t", Some(1), 3).unwrap_err();
        assert!(error.to_string().contains("overwrite"), "{error}");
    }
}
