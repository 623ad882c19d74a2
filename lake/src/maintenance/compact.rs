//! Compaction: small data files rewritten into files of the target size, streaming (a group is
//! never held in memory), with the row count checked against the manifests.

use std::collections::HashSet;

use futures::TryStreamExt;
use iceberg::spec::{DataFile, ManifestEntry};
use iceberg::table::Table;
use iceberg::writer::IcebergWriter;
use tributary_raw::incremental::{FileToRead, read_stream};

use super::MaintenanceSettings;
use super::plan::FileInfo;
use crate::error::LakeError;
use crate::sink::data_file_writer;

/// What compaction did: files to add, paths to remove, rows moved.
#[derive(Debug, Default)]
pub(super) struct Compacted {
    /// The files written.
    pub added: Vec<DataFile>,
    /// The paths they replace.
    pub removed: HashSet<String>,
    /// Rows rewritten (equal in `added` and in `removed`).
    pub rows: u64,
}

/// Rewrites each group of `groups` (paths of live `entries`) into files of
/// `settings.target_file_bytes`, named after the `replace` snapshot that will commit them.
pub(super) async fn rewrite(
    table: &Table,
    entries: &[ManifestEntry],
    groups: &[Vec<FileInfo>],
    snapshot_id: i64,
    settings: &MaintenanceSettings,
) -> Result<Compacted, LakeError> {
    let qualified = table.identifier().to_string();
    let iceberg = |action| super::iceberg_err(action, &qualified);
    let target = usize::try_from(settings.target_file_bytes).unwrap_or(usize::MAX);
    let mut compacted = Compacted::default();
    for (n, group) in groups.iter().enumerate() {
        let paths: HashSet<&str> = group.iter().map(|f| f.path.as_str()).collect();
        let inputs: Vec<&ManifestEntry> = entries
            .iter()
            .filter(|e| paths.contains(e.file_path()))
            .collect();
        let expected_rows: u64 = inputs.iter().map(|e| e.record_count()).sum();
        let files = inputs
            .iter()
            .map(|e| FileToRead::of(e.data_file()))
            .collect();
        let mut stream = read_stream(table, files, &qualified)?;
        let mut writer = data_file_writer(table, "compact", &format!("{snapshot_id}-{n}"), target)
            .await
            .map_err(iceberg("open compaction writer"))?;
        let mut rows = 0u64;
        while let Some(batch) = stream
            .try_next()
            .await
            .map_err(iceberg("read small files"))?
        {
            rows += batch.num_rows() as u64;
            writer
                .write(batch)
                .await
                .map_err(iceberg("write compacted file"))?;
        }
        let written = writer
            .close()
            .await
            .map_err(iceberg("close compacted file"))?;
        let written_rows: u64 = written.iter().map(DataFile::record_count).sum();
        if rows != expected_rows || written_rows != expected_rows {
            // Never commit a rewrite that does not hold exactly the rows it replaces; the files
            // written are orphans the sweep deletes.
            return Err(LakeError::Iceberg {
                action: "compact",
                table: qualified.clone(),
                source: Box::new(iceberg::Error::new(
                    iceberg::ErrorKind::DataInvalid,
                    format!(
                        "compaction read {rows} and wrote {written_rows} rows where the manifests list {expected_rows}"
                    ),
                )),
            });
        }
        compacted.rows += rows;
        compacted.added.extend(written);
        compacted
            .removed
            .extend(inputs.iter().map(|e| e.file_path().to_string()));
    }
    Ok(compacted)
}
