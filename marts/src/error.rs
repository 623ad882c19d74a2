//! The one error type of the crate.
//!
//! Each variant says what failed and on which input; [`MartsError::is_retryable`] tells the
//! scheduler (and the API) whether trying again later can help.

use tributary_rankings::RankingsError;
use tributary_raw::RawError;

/// What can go wrong computing or publishing the marts, or reading a publication back.
#[derive(Debug, thiserror::Error)]
pub enum MartsError {
    /// A raw table the marts read does not exist (the lander has not created it yet).
    #[error("lake table {table} does not exist; start the lander (tributary-lake) first")]
    LakeTableMissing {
        /// `namespace.table`.
        table: String,
    },

    /// A time-travel request named a snapshot the table does not have (expired, or from
    /// another table), or a table the rankings do not read.
    #[error("lake table {table} has no snapshot {snapshot_id}")]
    UnknownSnapshot {
        /// `namespace.table` (or the unknown table name as given).
        table: String,
        /// The snapshot id asked for.
        snapshot_id: i64,
    },

    /// The Iceberg catalog or a table could not be read.
    #[error("reading lake table {table} failed: {source}")]
    Lake {
        /// `namespace.table`, or `catalog` for catalog-wide operations.
        table: String,
        /// The Iceberg error.
        #[source]
        source: Box<iceberg::Error>,
    },

    /// A DataFusion query failed.
    #[error("marts query {query} failed: {source}")]
    Query {
        /// Which query (`current_sale`, `city_totals`, …).
        query: &'static str,
        /// The DataFusion error.
        #[source]
        source: Box<datafusion::error::DataFusionError>,
    },

    /// A query produced a column of an unexpected type: the raw table schema and the marts
    /// disagree, which retrying will not fix.
    #[error("marts query {query}: column {column} is {found}, expected {expected}")]
    UnexpectedColumn {
        /// Which query.
        query: &'static str,
        /// Column name.
        column: String,
        /// What the marts expect.
        expected: &'static str,
        /// What the query produced.
        found: String,
    },

    /// The kept incremental state cannot continue from the lake as it is: it was folded from a
    /// snapshot that is no longer an ancestor of the table's current one (the table was
    /// recreated, rolled back or its snapshots expired), or the lake holds a non-append commit.
    #[error(
        "marts state cannot follow lake table {table}: {reason}; rebuild it from the lake with `tributary-marts run-once --rebuild`"
    )]
    StateDiverged {
        /// `namespace.table`.
        table: String,
        /// What does not line up.
        reason: String,
    },

    /// The state store (Postgres) failed.
    #[error("marts state: {action} failed: {source}")]
    State {
        /// What was being done.
        action: String,
        /// The client error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// Another run changed the kept state while this one was computing (two runs at once, or a
    /// rebuild); this run's changes were rolled back, and the next one starts from the new state.
    #[error(
        "marts state changed under this run (generation {expected} expected, {found} found); nothing was written"
    )]
    StateConflict {
        /// The generation this run started from.
        expected: u64,
        /// The generation found at commit.
        found: u64,
    },

    /// The kept state cannot be read back.
    #[error("marts state is unreadable: {0}; rebuild it with `tributary-marts run-once --rebuild`")]
    CorruptState(String),

    /// A state commit running beside the next run was cancelled before it ended (the runtime
    /// shutting down): the store has the state before it or after it, never half of it.
    #[error("the marts state commit was cancelled; the next run folds again from the stored state")]
    CommitCancelled,

    /// A Trino query failed (unreachable, refused, timed out); the rebuild may be repeated.
    #[error("trino query {query} failed: {message}")]
    Trino {
        /// Which query.
        query: String,
        /// Why, with Trino's query id when it had one.
        message: String,
    },

    /// Building, writing or reading a publication failed (ClickHouse, money out of range).
    #[error(transparent)]
    Rankings(#[from] RankingsError),

    /// Opening or reading the lake failed (catalog, warehouse, a table's metadata or files).
    #[error(transparent)]
    Raw(RawError),
}

impl MartsError {
    /// A query stopped because its session's memory pool could not grant it more
    /// (DataFusion's `ResourcesExhausted`, however deep it was wrapped).
    pub fn is_out_of_memory(&self) -> bool {
        matches!(
            self,
            MartsError::Query { source, .. } if matches!(
                source.find_root(),
                datafusion::error::DataFusionError::ResourcesExhausted(_)
            )
        )
    }

    /// Whether the same operation may succeed later without anyone changing code or config.
    ///
    /// A missing lake table appears once the lander runs; ClickHouse and the object store come
    /// back. Schema disagreements, out-of-range money and bad config do not fix themselves.
    pub fn is_retryable(&self) -> bool {
        match self {
            MartsError::LakeTableMissing { .. } => true,
            MartsError::UnknownSnapshot { .. } => false,
            MartsError::Lake { source, .. } => source.retryable(),
            MartsError::Query { source, .. } => matches!(
                source.as_ref(),
                datafusion::error::DataFusionError::IoError(_)
                    | datafusion::error::DataFusionError::ObjectStore(_)
                    | datafusion::error::DataFusionError::External(_)
            ),
            MartsError::UnexpectedColumn { .. } => false,
            MartsError::Trino { .. } => true,
            MartsError::StateDiverged { .. } | MartsError::CorruptState(_) => false,
            MartsError::State { source, .. } => {
                source.is_closed() || source.as_db_error().is_none()
            }
            MartsError::StateConflict { .. } | MartsError::CommitCancelled => true,
            MartsError::Rankings(e) => e.is_retryable(),
            MartsError::Raw(e) => e.is_retryable(),
        }
    }
}

/// The read model's answers the marts act on keep their own variants (a missing table waits for
/// the lander, a diverged table needs a rebuild); the rest is [`MartsError::Raw`].
impl From<RawError> for MartsError {
    fn from(error: RawError) -> Self {
        match error {
            RawError::TableMissing { table } => MartsError::LakeTableMissing { table },
            RawError::UnknownSnapshot { table, snapshot_id } => {
                MartsError::UnknownSnapshot { table, snapshot_id }
            }
            RawError::Diverged { table, reason } => MartsError::StateDiverged { table, reason },
            other => MartsError::Raw(other),
        }
    }
}
