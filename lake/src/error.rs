//! The lake crate's one error type. Each variant says what failed, on which input, and what to
//! do; [`LakeError::is_retryable`] tells a transient failure (retry the step, or let the
//! supervisor restart the lander, which resumes from the lake) from a permanent one (a human
//! must look).

use crate::batch::BatchError;
use tributary_raw::RawError;
use tributary_raw::offsets::OffsetMap;

/// Everything that can go wrong in the lander or when opening the lake.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// Loading the config file/environment failed.
    #[error(transparent)]
    LoadConfig(#[from] tributary_common::ConfigError),
    /// A setting is out of range.
    #[error("invalid lander setting `{field}`: {problem}")]
    InvalidConfig {
        /// Dotted config key.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// Opening or reading the lake failed (catalog, warehouse, a snapshot's offsets).
    #[error(transparent)]
    Raw(#[from] RawError),
    /// An Iceberg operation on a table failed.
    #[error("iceberg {action} on {table} failed: {source}")]
    Iceberg {
        /// What was being done (`load`, `create`, `write`, `commit`, `scan`).
        action: &'static str,
        /// Table or namespace.
        table: String,
        /// The Iceberg error.
        #[source]
        source: Box<iceberg::Error>,
    },
    /// An existing table lacks a required column this lander writes: rows already in it have no
    /// value for it, so it cannot be added automatically.
    #[error(
        "table {table} lacks required column {column:?}: it was created by an older, incompatible lander; migrate the table or land into a new namespace"
    )]
    SchemaDrift {
        /// Table.
        table: String,
        /// The missing column.
        column: String,
    },
    /// Another writer committed to a table this lander writes: its offsets moved under us.
    #[error(
        "table {table} moved under this lander (fenced): expected snapshot {expected_snapshot:?} \
         with offsets {}, found snapshot {found_snapshot:?} with offsets {}; another lander writes \
         the same table — stop it (one writer per table), then restart this one",
        .expected_offsets.encode(), .found_offsets.encode()
    )]
    Fenced {
        /// Table.
        table: String,
        /// Snapshot this lander last saw.
        expected_snapshot: Option<i64>,
        /// Offsets this lander last saw.
        expected_offsets: OffsetMap,
        /// Snapshot found.
        found_snapshot: Option<i64>,
        /// Offsets found.
        found_offsets: OffsetMap,
    },
    /// Another lander holds the writer lock of the namespace.
    #[error(
        "another lander holds the writer lock of namespace {namespace:?} in catalog {catalog:?} \
         (waited {waited_ms} ms); run one lander per namespace"
    )]
    WriterLockBusy {
        /// Catalog.
        catalog: String,
        /// Namespace.
        namespace: String,
        /// How long we waited.
        waited_ms: u64,
    },
    /// The writer lock's Postgres session failed: another lander may take over, so stop.
    #[error("writer lock of namespace {namespace:?} lost or unavailable: {source}")]
    WriterLock {
        /// Namespace.
        namespace: String,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
    /// A Kafka client operation failed.
    #[error("kafka {action} failed (is Kafka up at the configured brokers?): {source}")]
    Kafka {
        /// What was being done.
        action: &'static str,
        /// The client error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A stored offset is outside the partition's log: records were deleted by retention (or the
    /// topic was recreated) before they were landed.
    #[error(
        "kafka partition {partition}: the offset to resume from is no longer in the log \
         ({detail}); records were lost before landing, or the topic was recreated — a human must \
         decide (the lander never skips silently)"
    )]
    OffsetOutOfRange {
        /// `topic/partition`, when known.
        partition: String,
        /// librdkafka's message.
        detail: String,
    },
    /// Lake maintenance found the table moved between its read and its commit (the catalog's
    /// compare-and-swap on `metadata_location` failed): only the lander holding the writer lock
    /// may write, so another writer is at work.
    #[error(
        "maintenance of {table}: the table moved during the run (expected metadata {expected}); \
         another writer is at work — run one lander per namespace, and `tributary-lake maintain` \
         only while it is stopped"
    )]
    MaintenanceConflict {
        /// Table.
        table: String,
        /// The metadata file the run started from.
        expected: String,
    },
    /// The catalog database refused a maintenance commit.
    #[error("maintenance of {table}: catalog database {action} failed: {source}")]
    CatalogDb {
        /// Table.
        table: String,
        /// What was being done.
        action: &'static str,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
    /// Listing or deleting files of the warehouse failed.
    #[error("object store {action} under {location} failed: {source}")]
    Store {
        /// What was being done.
        action: &'static str,
        /// The location.
        location: String,
        /// The store's error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// Rows could not be put into the table's Arrow schema.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// Metrics could not be registered.
    #[error("metrics registration failed: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The metrics listener could not bind.
    #[error("cannot listen for /metrics on {addr}: {source}")]
    Listen {
        /// Address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl LakeError {
    /// A short name of the variant, for a metric label (a bounded set).
    pub fn kind(&self) -> &'static str {
        match self {
            LakeError::LoadConfig(_) => "load_config",
            LakeError::InvalidConfig { .. } => "invalid_config",
            LakeError::Raw(_) => "raw",
            LakeError::Iceberg { .. } => "iceberg",
            LakeError::SchemaDrift { .. } => "schema_drift",
            LakeError::Fenced { .. } => "fenced",
            LakeError::WriterLockBusy { .. } => "writer_lock_busy",
            LakeError::WriterLock { .. } => "writer_lock",
            LakeError::Kafka { .. } => "kafka",
            LakeError::OffsetOutOfRange { .. } => "offset_out_of_range",
            LakeError::MaintenanceConflict { .. } => "maintenance_conflict",
            LakeError::CatalogDb { .. } => "catalog_db",
            LakeError::Store { .. } => "store",
            LakeError::Batch(_) => "batch",
            LakeError::Metrics(_) => "metrics",
            LakeError::Listen { .. } => "listen",
        }
    }

    /// Whether trying the same step again (or restarting the lander) may succeed without a
    /// human: connection trouble, commit conflicts, a lock still held by a dying process.
    pub fn is_retryable(&self) -> bool {
        match self {
            LakeError::Iceberg { source, .. } => {
                source.retryable()
                    || matches!(
                        source.kind(),
                        iceberg::ErrorKind::CatalogCommitConflicts | iceberg::ErrorKind::Unexpected
                    )
            }
            LakeError::Raw(e) => e.is_retryable(),
            LakeError::Kafka { .. } | LakeError::WriterLockBusy { .. } => true,
            LakeError::WriterLock { .. } => true,
            LakeError::CatalogDb { .. } | LakeError::Store { .. } => true,
            LakeError::LoadConfig(_)
            | LakeError::InvalidConfig { .. }
            | LakeError::SchemaDrift { .. }
            | LakeError::Fenced { .. }
            | LakeError::MaintenanceConflict { .. }
            | LakeError::OffsetOutOfRange { .. }
            | LakeError::Batch(_)
            | LakeError::Metrics(_)
            | LakeError::Listen { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fencing_is_permanent_and_says_what_to_do() {
        let e = LakeError::Fenced {
            table: "raw.pg_sale".into(),
            expected_snapshot: Some(1),
            expected_offsets: OffsetMap::new(),
            found_snapshot: Some(2),
            found_offsets: OffsetMap::new(),
        };
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("one writer per table"), "{e}");
    }
}
