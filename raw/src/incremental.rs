//! The incremental read: the rows a raw table gained between two of its snapshots, read from the
//! data files those commits added — what the incremental marts read on every run.

use std::collections::HashSet;

use arrow::array::RecordBatch;
use futures::TryStreamExt;
use iceberg::spec::{ManifestContentType, ManifestList, ManifestStatus, Operation};
use iceberg::table::Table;

use crate::error::RawError;

/// The rows a raw table gained between two of its snapshots: the data files that the
/// snapshots after `since` (exclusive; `None` = from the first) up to `upto` (inclusive)
/// added, read in full. This is the incremental marts' read: its cost follows what was added,
/// not the table's history (one manifest list, the manifests written in the range, their files).
///
/// The lander only appends, so "added in the range" is exactly "new since `since`". A range that
/// is not a plain chain of appends from `since` — `since` is not an ancestor of `upto` (the table
/// was recreated or rolled back, or snapshots expired), or a commit in it is not an append — is
/// [`RawError::Diverged`]: whatever was folded from the earlier range must be rebuilt.
///
/// Also returns the snapshot ids in the range, newest first (the run links its span to the
/// lander commits that wrote them).
pub async fn read_added(
    table: &Table,
    qualified: &str,
    since: Option<i64>,
    upto: i64,
) -> Result<(Vec<RecordBatch>, Vec<i64>), RawError> {
    let metadata = table.metadata();
    let diverged = |reason: String| RawError::Diverged {
        table: qualified.to_string(),
        reason,
    };
    let lake_err = |source| RawError::iceberg("read added files", qualified, source);
    // The snapshots in the range, newest first, following parents from `upto`.
    let mut range = HashSet::new();
    let mut in_order = Vec::new();
    let mut cursor = Some(upto);
    while let Some(id) = cursor {
        if Some(id) == since {
            break;
        }
        let snapshot = metadata
            .snapshot_by_id(id)
            .ok_or_else(|| diverged(format!("snapshot {id} is not in the table metadata")))?;
        if snapshot.summary().operation != Operation::Append {
            return Err(diverged(format!(
                "snapshot {id} is a {} commit; the marts follow append-only tables",
                snapshot.summary().operation.as_str()
            )));
        }
        range.insert(id);
        in_order.push(id);
        cursor = snapshot.parent_snapshot_id();
    }
    if since.is_some() && cursor.is_none() {
        return Err(diverged(format!(
            "snapshot {} (where the state stopped) is not an ancestor of the current snapshot {upto}",
            since.unwrap_or_default()
        )));
    }
    if range.is_empty() {
        return Ok((Vec::new(), in_order));
    }
    let snapshot = metadata
        .snapshot_by_id(upto)
        .ok_or_else(|| diverged(format!("snapshot {upto} is not in the table metadata")))?;
    let file_io = table.file_io();
    let list_bytes = file_io
        .new_input(snapshot.manifest_list())
        .map_err(lake_err)?
        .read()
        .await
        .map_err(lake_err)?;
    let list = ManifestList::parse_with_version(&list_bytes, metadata.format_version())
        .map_err(lake_err)?;
    let schema = metadata.current_schema().clone();
    let field_ids: Vec<i32> = schema.as_struct().fields().iter().map(|f| f.id).collect();
    let mut tasks = Vec::new();
    for manifest_file in list.entries() {
        if manifest_file.content != ManifestContentType::Data
            || !range.contains(&manifest_file.added_snapshot_id)
        {
            continue;
        }
        let manifest = manifest_file
            .load_manifest(file_io)
            .await
            .map_err(lake_err)?;
        for entry in manifest.entries() {
            let added_here = entry.status() == ManifestStatus::Added
                && entry.snapshot_id().is_some_and(|id| range.contains(&id));
            if !added_here {
                continue;
            }
            tasks.push(Ok(iceberg::scan::FileScanTask::builder()
                .with_file_size_in_bytes(entry.file_size_in_bytes())
                .with_start(0)
                .with_length(entry.file_size_in_bytes())
                .with_record_count(Some(entry.record_count()))
                .with_data_file_path(entry.file_path().to_string())
                .with_data_file_format(entry.file_format())
                .with_schema(schema.clone())
                .with_project_field_ids(field_ids.clone())
                .with_case_sensitive(true)
                .build()));
        }
    }
    let reader =
        iceberg::arrow::ArrowReaderBuilder::new(file_io.clone(), iceberg::Runtime::current())
            .build();
    let stream = reader
        .read(Box::pin(futures::stream::iter(tasks)))
        .map_err(lake_err)?
        .stream();
    let batches = stream.try_collect().await.map_err(lake_err)?;
    Ok((batches, in_order))
}
