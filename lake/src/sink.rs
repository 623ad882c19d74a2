//! One writer per raw table: writes a flush's rows as Parquet and commits them with the table's
//! full offset map in the snapshot summary, fenced against any other writer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iceberg::Catalog;
use iceberg::spec::{DataFile, DataFileFormat, TableProperties};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::batch::{Row, record_batch};
use crate::catalog::fnv1a64;
use crate::error::LakeError;
use crate::maintenance::{Maintainer, MaintenanceReport, Prepared};
use tributary_raw::catalog::{load_table, snapshot_ledger, snapshot_offsets};
use tributary_raw::ledger::{LEDGER_PROPERTY, Ledger};
use tributary_raw::offsets::{
    COMMIT_ID_PROPERTY, OFFSETS_PROPERTY, OffsetMap, TRACEPARENT_PROPERTY,
};
use tributary_raw::schema::RawTable;

/// How many times a retryable commit failure is retried before the lander gives up (and its
/// supervisor restarts it, which resumes from the lake).
const COMMIT_ATTEMPTS: u32 = 5;

/// What one commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitReport {
    /// The new snapshot.
    pub snapshot_id: i64,
    /// Data files added.
    pub files: usize,
    /// Rows added.
    pub rows: usize,
    /// Bytes of the data files added (Parquet, as written).
    pub bytes: u64,
    /// Wall time of write + commit.
    pub elapsed: Duration,
}

/// The single writer of one raw table.
#[derive(Debug)]
pub struct TableSink {
    catalog: Arc<dyn Catalog>,
    namespace: String,
    kind: RawTable,
    table: Table,
    committed: OffsetMap,
    ledger: Ledger,
    snapshot_id: Option<i64>,
}

impl TableSink {
    /// Loads the table and the offsets of its current snapshot.
    pub async fn open(
        catalog: Arc<dyn Catalog>,
        namespace: &str,
        kind: RawTable,
    ) -> Result<Self, LakeError> {
        let table = load_table(catalog.as_ref(), namespace, kind).await?;
        let committed = snapshot_offsets(&table)?;
        let ledger = snapshot_ledger(&table)?;
        let snapshot_id = table.metadata().current_snapshot_id();
        tracing::info!(table = %table.identifier(), ?snapshot_id, offsets = %committed.encode(), "opened table");
        Ok(Self {
            catalog,
            namespace: namespace.to_string(),
            kind,
            table,
            committed,
            ledger,
            snapshot_id,
        })
    }

    /// Which raw table this writes.
    pub fn kind(&self) -> RawTable {
        self.kind
    }

    /// Offsets of the last snapshot this writer saw (its own last commit, or the one at open).
    pub fn committed(&self) -> &OffsetMap {
        &self.committed
    }

    /// The offset-coverage ledger of the last snapshot this writer saw.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The last snapshot this writer saw.
    pub fn snapshot_id(&self) -> Option<i64> {
        self.snapshot_id
    }

    /// Appends `rows` (possibly none: a commit that only moves offsets, e.g. over tombstones or
    /// records that all went to `dead_letters`) and stores `offsets` as the table's full map.
    ///
    /// Fails with [`LakeError::Fenced`] if anyone else committed to the table since this writer
    /// last did. Data file names derive from the offset range, so retrying the same flush
    /// writes the same paths (over what a failed attempt left), never a second copy.
    pub async fn commit(
        &mut self,
        rows: &[Row],
        offsets: &OffsetMap,
    ) -> Result<CommitReport, LakeError> {
        self.commit_counted(rows, offsets, &Ledger::new()).await
    }

    /// [`TableSink::commit`], adding `counted` (the fate of the records of this table's
    /// partitions consumed since its last commit) to the table's ledger in the same commit.
    pub async fn commit_counted(
        &mut self,
        rows: &[Row],
        offsets: &OffsetMap,
        counted: &Ledger,
    ) -> Result<CommitReport, LakeError> {
        let started = Instant::now();
        let new_offsets = self.committed.merged(offsets);
        let new_ledger = self.ledger.merged(counted);
        let commit_id = commit_id(self.kind, &self.committed, &new_offsets);
        self.fence().await?;
        let files = if rows.is_empty() {
            Vec::new()
        } else {
            self.write_files(rows, &commit_id).await?
        };
        tributary_common::failpoint::crash_point(
            tributary_common::failpoint::LANDER_AFTER_DATA_FILES,
        );
        let file_count = files.len();
        let bytes = files.iter().map(DataFile::file_size_in_bytes).sum();
        let mut attempt = 1;
        let table = loop {
            match self
                .try_commit(files.clone(), &new_offsets, &new_ledger, &commit_id)
                .await
            {
                Ok(table) => {
                    tributary_common::failpoint::crash_point(
                        tributary_common::failpoint::LANDER_AFTER_COMMIT,
                    );
                    break table;
                }
                Err(error) if error.is_retryable() && attempt < COMMIT_ATTEMPTS => {
                    let backoff = Duration::from_millis(250 << attempt);
                    tracing::warn!(table = %self.table.identifier(), attempt, %error, ?backoff, "commit failed, retrying");
                    tokio::time::sleep(backoff).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        };
        let snapshot = table
            .metadata()
            .current_snapshot()
            .expect("a table just committed to has a current snapshot");
        // Belt and braces: the commit must sit directly on the snapshot we fenced on; iceberg's
        // own retry rebases silently on a concurrent append.
        if snapshot.parent_snapshot_id() != self.snapshot_id {
            return Err(LakeError::Fenced {
                table: self.table.identifier().to_string(),
                expected_snapshot: self.snapshot_id,
                expected_offsets: self.committed.clone(),
                found_snapshot: snapshot.parent_snapshot_id(),
                found_offsets: OffsetMap::new(),
            });
        }
        let report = CommitReport {
            snapshot_id: snapshot.snapshot_id(),
            files: file_count,
            rows: rows.len(),
            bytes,
            elapsed: started.elapsed(),
        };
        tracing::debug!(table = %self.table.identifier(), snapshot_id = report.snapshot_id, rows = report.rows, files = report.files, offsets = %new_offsets.encode(), "committed");
        self.snapshot_id = Some(report.snapshot_id);
        self.committed = new_offsets;
        self.ledger = new_ledger;
        self.table = table;
        Ok(report)
    }

    /// Runs lake maintenance on this table (between commits: the caller holds the writer lock)
    /// and continues from what it committed. A maintenance commit moves no offset.
    pub async fn maintain(
        &mut self,
        maintainer: &Maintainer,
    ) -> Result<MaintenanceReport, LakeError> {
        let result = maintainer.maintain(self.kind, &self.table).await;
        match result {
            Ok((table, report)) => {
                self.snapshot_id = table.metadata().current_snapshot_id();
                self.table = table;
                Ok(report)
            }
            Err(error) => Err(self.after_failed_maintenance(error).await),
        }
    }

    /// Commits a maintenance run prepared beside this writer ([`Maintainer::prepare`]) on the
    /// table as this writer left it, and continues from what it committed. Returns the table as
    /// it is now, which the run's sweep reads.
    pub async fn apply_maintenance(
        &mut self,
        maintainer: &Maintainer,
        prepared: &mut Prepared,
    ) -> Result<Table, LakeError> {
        match maintainer.apply(prepared, &self.table).await {
            Ok(Some(table)) => {
                self.snapshot_id = table.metadata().current_snapshot_id();
                self.table = table;
                Ok(self.table.clone())
            }
            Ok(None) => Ok(self.table.clone()),
            Err(error) => Err(self.after_failed_maintenance(error).await),
        }
    }

    /// After a failed maintenance run, which may have committed before it failed: continues
    /// from the table as it is if only maintenance moved it (same offsets); anything else
    /// fences the next commit. Returns `error`.
    async fn after_failed_maintenance(&mut self, error: LakeError) -> LakeError {
        if let Ok(table) = load_table(self.catalog.as_ref(), &self.namespace, self.kind).await
            && snapshot_offsets(&table).is_ok_and(|o| o == self.committed)
        {
            self.snapshot_id = table.metadata().current_snapshot_id();
            self.table = table;
        }
        error
    }

    /// Reloads the table and checks nobody else moved it.
    async fn fence(&mut self) -> Result<(), LakeError> {
        let table = load_table(self.catalog.as_ref(), &self.namespace, self.kind).await?;
        let found_snapshot = table.metadata().current_snapshot_id();
        let found_offsets = snapshot_offsets(&table)?;
        if found_snapshot != self.snapshot_id || found_offsets != self.committed {
            return Err(LakeError::Fenced {
                table: table.identifier().to_string(),
                expected_snapshot: self.snapshot_id,
                expected_offsets: self.committed.clone(),
                found_snapshot,
                found_offsets,
            });
        }
        self.table = table;
        Ok(())
    }

    async fn try_commit(
        &self,
        files: Vec<DataFile>,
        offsets: &OffsetMap,
        ledger: &Ledger,
        commit_id: &str,
    ) -> Result<Table, LakeError> {
        let mut properties = HashMap::from([
            (OFFSETS_PROPERTY.to_string(), offsets.encode()),
            (COMMIT_ID_PROPERTY.to_string(), commit_id.to_string()),
        ]);
        if !ledger.is_empty() {
            properties.insert(LEDGER_PROPERTY.to_string(), ledger.encode());
        }
        // The commit span (the lander runs this inside it): later jobs link their runs to it.
        if let Some(traceparent) =
            tributary_common::telemetry::traceparent(&tracing::Span::current())
        {
            properties.insert(TRACEPARENT_PROPERTY.to_string(), traceparent);
        }
        let iceberg = |source| LakeError::Iceberg {
            action: "commit",
            table: self.table.identifier().to_string(),
            source: Box::new(source),
        };
        let tx = Transaction::new(&self.table);
        // iceberg's duplicate check reads every manifest of the table, on every commit: a cost
        // that grows with the manifests since the last merge (one per commit). It can find
        // nothing here: file names derive from the offset range this commit starts at, and the
        // fence just saw the table at exactly this writer's offsets, below that range.
        let append = tx
            .fast_append()
            .with_check_duplicate(false)
            .add_data_files(files)
            .set_snapshot_properties(properties);
        let tx = append.apply(tx).map_err(iceberg)?;
        match tx.commit(self.catalog.as_ref()).await {
            Ok(table) => Ok(table),
            Err(source) => {
                // An error does not prove the commit failed (the catalog may have applied it and
                // the answer got lost): look before retrying, or a retry would append twice.
                let current = load_table(self.catalog.as_ref(), &self.namespace, self.kind).await?;
                if let Some(snapshot) = current.metadata().current_snapshot() {
                    let props = &snapshot.summary().additional_properties;
                    if props.get(COMMIT_ID_PROPERTY).map(String::as_str) == Some(commit_id) {
                        tracing::warn!(table = %current.identifier(), error = %source, "commit reported an error but is in the table");
                        return Ok(current);
                    }
                }
                if current.metadata().current_snapshot_id() != self.snapshot_id {
                    return Err(LakeError::Fenced {
                        table: current.identifier().to_string(),
                        expected_snapshot: self.snapshot_id,
                        expected_offsets: self.committed.clone(),
                        found_snapshot: current.metadata().current_snapshot_id(),
                        found_offsets: snapshot_offsets(&current)?,
                    });
                }
                Err(iceberg(source))
            }
        }
    }

    async fn write_files(&self, rows: &[Row], commit_id: &str) -> Result<Vec<DataFile>, LakeError> {
        let iceberg = |source| LakeError::Iceberg {
            action: "write",
            table: self.table.identifier().to_string(),
            source: Box::new(source),
        };
        let schema = self.table.metadata().current_schema().clone();
        let arrow_schema =
            Arc::new(iceberg::arrow::schema_to_arrow_schema(&schema).map_err(iceberg)?);
        let batch = record_batch(self.kind, arrow_schema, rows)?;
        // Deterministic names: the same flush (same offset range) always writes the same paths.
        let mut writer = data_file_writer(
            &self.table,
            self.kind.name(),
            commit_id,
            TableProperties::PROPERTY_WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT,
        )
        .await
        .map_err(iceberg)?;
        writer.write(batch).await.map_err(iceberg)?;
        writer.close().await.map_err(iceberg)
    }
}

/// A writer of the table's data files (zstd Parquet in the table's data folder, named
/// `<prefix>-<n>-<suffix>.parquet`, a new file past `target_file_bytes`): the lander's flushes
/// and maintenance's compaction write through it.
pub(crate) async fn data_file_writer(
    table: &Table,
    prefix: &str,
    suffix: &str,
    target_file_bytes: usize,
) -> iceberg::Result<impl IcebergWriter + use<>> {
    let metadata = table.metadata();
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let parquet = ParquetWriterBuilder::new(properties, metadata.current_schema().clone());
    let locations = DefaultLocationGenerator::new(metadata)?;
    let names = DefaultFileNameGenerator::new(
        prefix.to_string(),
        Some(suffix.to_string()),
        DataFileFormat::Parquet,
    );
    let rolling = RollingFileWriterBuilder::new(
        parquet,
        target_file_bytes,
        table.file_io().clone(),
        locations,
        names,
    );
    DataFileWriterBuilder::new(rolling).build(None).await
}

/// `o<first offset>-<hash of the offset range>`: unique per (table, from, to) offsets and
/// stable across retries of the same flush.
fn commit_id(kind: RawTable, from: &OffsetMap, to: &OffsetMap) -> String {
    let first = to
        .iter()
        .map(|(tp, _)| from.get(tp).unwrap_or(0))
        .min()
        .unwrap_or(0);
    let range = format!("{}|{}|{}", kind.name(), from.encode(), to.encode());
    format!("o{first}-{:016x}", fnv1a64(range.as_bytes()))
}

#[cfg(test)]
pub(crate) mod tests {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    use iceberg::CatalogBuilder;
    use iceberg::memory::{MEMORY_CATALOG_WAREHOUSE, MemoryCatalogBuilder};

    use super::*;
    use crate::batch::{Provenance, change_row};
    use crate::catalog::ensure_tables;
    use crate::decode::{Cell, ChangeEvent, Op};
    use tributary_raw::catalog::read_table;
    use tributary_raw::offsets::TopicPartition;
    use tributary_raw::schema::col;

    pub(crate) async fn memory_catalog() -> Arc<dyn Catalog> {
        let catalog = MemoryCatalogBuilder::default()
            .load(
                "memory",
                HashMap::from([(
                    MEMORY_CATALOG_WAREHOUSE.to_string(),
                    "memory:///lake".to_string(),
                )]),
            )
            .await
            .unwrap();
        let catalog: Arc<dyn Catalog> = Arc::new(catalog);
        ensure_tables(catalog.as_ref(), "raw").await.unwrap();
        catalog
    }

    fn city_row(id: i64, offset: i64) -> Row {
        let event = ChangeEvent {
            op: Op::Create,
            image: vec![Cell::Long(id), Cell::Str(format!("city {id}")), Cell::Null],
            before_json: None,
            after_json: Some(format!(r#"{{"id":{id}}}"#)),
            source_lsn: 100 + offset,
            source_ts_micros: 1,
            source_txid: Some(1),
        };
        let prov = Provenance {
            topic: "city".into(),
            partition: 0,
            offset,
            ingest_time_micros: 2,
            trace_id: None,
        };
        change_row(event, &prov)
    }

    fn offsets(next: i64) -> OffsetMap {
        [(TopicPartition::new("city", 0), next)]
            .into_iter()
            .collect()
    }

    #[test]
    fn commit_ids_are_stable_and_distinct() {
        let a = commit_id(RawTable::PgCity, &offsets(0), &offsets(10));
        assert_eq!(a, commit_id(RawTable::PgCity, &offsets(0), &offsets(10)));
        assert!(a.starts_with("o0-"), "{a}");
        assert_ne!(a, commit_id(RawTable::PgCity, &offsets(0), &offsets(11)));
        assert_ne!(a, commit_id(RawTable::PgSale, &offsets(0), &offsets(10)));
        assert!(commit_id(RawTable::PgCity, &offsets(10), &offsets(20)).starts_with("o10-"));
    }

    #[tokio::test]
    async fn commits_store_the_full_offset_map_and_rows() {
        let catalog = memory_catalog().await;
        let mut sink = TableSink::open(catalog.clone(), "raw", RawTable::PgCity)
            .await
            .unwrap();
        assert!(sink.committed().is_empty());
        sink.commit(&[city_row(1, 0), city_row(2, 1)], &offsets(2))
            .await
            .unwrap();
        let other: OffsetMap = [(TopicPartition::new("city", 1), 5)].into_iter().collect();
        let report = sink.commit(&[], &other).await.unwrap();
        assert_eq!(report.files, 0);

        // A fresh writer sees both partitions: every summary holds the full map.
        let reopened = TableSink::open(catalog.clone(), "raw", RawTable::PgCity)
            .await
            .unwrap();
        assert_eq!(reopened.committed().encode(), r#"{"city/0":2,"city/1":5}"#);
        assert_eq!(reopened.snapshot_id(), Some(report.snapshot_id));

        let table = load_table(catalog.as_ref(), "raw", RawTable::PgCity)
            .await
            .unwrap();
        let batches = read_table(&table, None).await.unwrap();
        let offsets: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                b.column_by_name(col::KAFKA_OFFSET)
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(offsets, vec![0, 1]);
    }

    #[tokio::test]
    async fn a_second_writer_is_fenced() {
        let catalog = memory_catalog().await;
        let mut first = TableSink::open(catalog.clone(), "raw", RawTable::PgCity)
            .await
            .unwrap();
        let mut second = TableSink::open(catalog.clone(), "raw", RawTable::PgCity)
            .await
            .unwrap();
        first.commit(&[city_row(1, 0)], &offsets(1)).await.unwrap();
        let err = second
            .commit(&[city_row(1, 0)], &offsets(1))
            .await
            .unwrap_err();
        assert!(matches!(err, LakeError::Fenced { .. }), "{err}");
        assert!(!err.is_retryable());
        // The first writer goes on.
        first.commit(&[city_row(2, 1)], &offsets(2)).await.unwrap();
    }
}
