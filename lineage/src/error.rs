//! Errors of the lineage crate. Only configuration errors reach a caller; sending errors are
//! counted and logged by the emitter, never returned to a job.

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum LineageError {
    /// The `OPENLINEAGE_*` settings are inconsistent.
    #[error("OpenLineage configuration: {0}")]
    Config(String),
    /// An event could not be delivered.
    #[error("OpenLineage emit failed: {0}")]
    Send(String),
    /// The run journal could not be opened, read or written.
    #[error("OpenLineage run journal: {0}")]
    Journal(String),
}
