//! The one error type of the crate.
//!
//! Each variant says what failed and on which input; [`MartsError::is_retryable`] tells the
//! scheduler (and the API) whether trying again later can help.

use crate::money::MoneyError;

/// What can go wrong computing or publishing the marts, or reading a publication back.
#[derive(Debug, thiserror::Error)]
pub enum MartsError {
    /// A raw table the marts read does not exist (the lander has not created it yet).
    #[cfg(feature = "job")]
    #[error("lake table {table} does not exist; start the lander (tributary-lake) first")]
    LakeTableMissing {
        /// `namespace.table`.
        table: String,
    },

    /// A time-travel request named a snapshot the table does not have (expired, or from
    /// another table), or a table the rankings do not read.
    #[cfg(feature = "job")]
    #[error("lake table {table} has no snapshot {snapshot_id}")]
    UnknownSnapshot {
        /// `namespace.table` (or the unknown table name as given).
        table: String,
        /// The snapshot id asked for.
        snapshot_id: i64,
    },

    /// The Iceberg catalog or a table could not be read.
    #[cfg(feature = "job")]
    #[error("reading lake table {table} failed: {source}")]
    Lake {
        /// `namespace.table`, or `catalog` for catalog-wide operations.
        table: String,
        /// The Iceberg error.
        #[source]
        source: Box<iceberg::Error>,
    },

    /// A DataFusion query failed.
    #[cfg(feature = "job")]
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
    #[cfg(feature = "job")]
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
    #[cfg(feature = "job")]
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
    #[cfg(feature = "job")]
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
    #[cfg(feature = "job")]
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
    #[cfg(feature = "job")]
    #[error("marts state is unreadable: {0}; rebuild it with `tributary-marts run-once --rebuild`")]
    CorruptState(String),

    /// A revenue does not fit `Decimal(18,2)`.
    #[error("revenue of {scope} does not fit Decimal(18,2): {source}")]
    Revenue {
        /// Which total (`city 7`, `salesman 3`, `all sales`).
        scope: String,
        /// The conversion error.
        #[source]
        source: MoneyError,
    },

    /// A ClickHouse request failed.
    #[error("clickhouse: {action} failed: {source}")]
    ClickHouse {
        /// What was being done (`insert into marts.city_ranking`, `read latest publication`, …).
        action: String,
        /// The client error.
        #[source]
        source: clickhouse::error::Error,
    },

    /// The configured ClickHouse database name is not a plain identifier.
    #[error("clickhouse database name {0:?} is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)")]
    InvalidDatabaseName(String),

    /// A stored publication cannot be understood (written by another version, or edited by hand).
    #[error("publication {publication_id} in clickhouse is unreadable: {reason}")]
    CorruptPublication {
        /// The publication.
        publication_id: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl MartsError {
    /// Whether the same operation may succeed later without anyone changing code or config.
    ///
    /// A missing lake table appears once the lander runs; ClickHouse and the object store come
    /// back. Schema disagreements, out-of-range money and bad config do not fix themselves.
    pub fn is_retryable(&self) -> bool {
        match self {
            #[cfg(feature = "job")]
            MartsError::LakeTableMissing { .. } => true,
            #[cfg(feature = "job")]
            MartsError::UnknownSnapshot { .. } => false,
            #[cfg(feature = "job")]
            MartsError::Lake { source, .. } => source.retryable(),
            #[cfg(feature = "job")]
            MartsError::Query { source, .. } => matches!(
                source.as_ref(),
                datafusion::error::DataFusionError::IoError(_)
                    | datafusion::error::DataFusionError::ObjectStore(_)
                    | datafusion::error::DataFusionError::External(_)
            ),
            #[cfg(feature = "job")]
            MartsError::UnexpectedColumn { .. } => false,
            #[cfg(feature = "job")]
            MartsError::StateDiverged { .. } | MartsError::CorruptState(_) => false,
            #[cfg(feature = "job")]
            MartsError::State { source, .. } => {
                source.is_closed() || source.as_db_error().is_none()
            }
            #[cfg(feature = "job")]
            MartsError::StateConflict { .. } => true,
            MartsError::Revenue { .. } => false,
            MartsError::ClickHouse { source, .. } => matches!(
                source,
                clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut
            ),
            MartsError::InvalidDatabaseName(_) => false,
            MartsError::CorruptPublication { .. } => false,
        }
    }
}
