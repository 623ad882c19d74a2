//! The read model's one error type. [`RawError::is_retryable`] tells a lake that is down or busy
//! (try again) from a question the lake cannot answer (a snapshot it does not have, a history
//! that is not a chain of appends).

use crate::offsets::OffsetMapError;

/// What can go wrong opening or reading the raw tables.
#[derive(Debug, thiserror::Error)]
pub enum RawError {
    /// The warehouse location cannot be used.
    #[error("warehouse {warehouse:?}: {problem}")]
    Warehouse {
        /// The configured warehouse.
        warehouse: String,
        /// What is wrong.
        problem: String,
    },
    /// The SQL catalog could not be opened (Postgres down, wrong credentials, …).
    #[error(
        "cannot open Iceberg catalog {catalog:?} at {uri} (is Postgres up? run `make test` or `dev/up`): {source}"
    )]
    OpenCatalog {
        /// Catalog name.
        catalog: String,
        /// Catalog URI, password redacted.
        uri: String,
        /// The catalog's error.
        #[source]
        source: Box<iceberg::Error>,
    },
    /// An Iceberg read of a table or namespace failed.
    #[error("iceberg {action} on {table} failed: {source}")]
    Iceberg {
        /// What was being done (`load_table`, `scan`, `read manifest list`, …).
        action: &'static str,
        /// `namespace.table`, or the namespace.
        table: String,
        /// The Iceberg error.
        #[source]
        source: Box<iceberg::Error>,
    },
    /// A raw table does not exist (the lander has not created it yet).
    #[error("lake table {table} does not exist; start the lander (tributary-lake) first")]
    TableMissing {
        /// `namespace.table`.
        table: String,
    },
    /// A snapshot was asked for that the table does not have (expired, or from another table),
    /// or a table that is not a raw table.
    #[error("lake table {table} has no snapshot {snapshot_id}")]
    UnknownSnapshot {
        /// `namespace.table` (or the unknown table name as given).
        table: String,
        /// The snapshot id asked for.
        snapshot_id: i64,
    },
    /// No raw table has this snapshot id.
    #[error("no raw table has snapshot {snapshot_id}")]
    SnapshotNotFound {
        /// The snapshot id asked for.
        snapshot_id: i64,
    },
    /// An incremental read cannot follow the table: the snapshot it continues from is no longer
    /// an ancestor of the current one (recreated, rolled back, expired), or a commit in the range
    /// is not an append.
    #[error("lake table {table} cannot be read incrementally: {reason}")]
    Diverged {
        /// `namespace.table`.
        table: String,
        /// What does not line up.
        reason: String,
    },
    /// The snapshot pins (next to the catalog) could not be read or written.
    #[error("snapshot pins: {action} failed (is Postgres up?): {source}")]
    Pins {
        /// What was being done.
        action: &'static str,
        /// The database error.
        #[source]
        source: Box<sqlx::Error>,
    },
    /// A time-travel request for a moment before the history lake maintenance kept.
    #[error(
        "lake table {table} keeps its history from {oldest} on (maintenance expires older snapshots: {retention}); {at} is before it"
    )]
    BeforeRetention {
        /// `namespace.table`.
        table: String,
        /// The moment asked for.
        at: chrono::DateTime<chrono::Utc>,
        /// The oldest snapshot kept.
        oldest: chrono::DateTime<chrono::Utc>,
        /// The retention as the table records it (`tributary.retention` property), or
        /// "see the lander's [maintenance] settings".
        retention: String,
    },
    /// A snapshot summary holds an unreadable offset map.
    #[error("table {table}: snapshot {snapshot_id} has an unreadable offset map: {source}")]
    BadOffsets {
        /// Table.
        table: String,
        /// Snapshot.
        snapshot_id: i64,
        /// Why.
        #[source]
        source: OffsetMapError,
    },
    /// A snapshot summary holds an unreadable offset-coverage ledger.
    #[error("table {table}: snapshot {snapshot_id} has an unreadable ledger: {source}")]
    BadLedger {
        /// Table.
        table: String,
        /// Snapshot.
        snapshot_id: i64,
        /// Why.
        #[source]
        source: crate::ledger::LedgerError,
    },
}

impl RawError {
    /// Whether the same read may succeed later without anyone changing code or config: the
    /// catalog or the store comes back, a missing table appears once the lander runs.
    pub fn is_retryable(&self) -> bool {
        match self {
            RawError::OpenCatalog { source, .. } | RawError::Iceberg { source, .. } => {
                source.retryable()
                    || matches!(
                        source.kind(),
                        iceberg::ErrorKind::CatalogCommitConflicts | iceberg::ErrorKind::Unexpected
                    )
            }
            RawError::TableMissing { .. } => true,
            RawError::Pins { .. } => true,
            RawError::Warehouse { .. }
            | RawError::UnknownSnapshot { .. }
            | RawError::SnapshotNotFound { .. }
            | RawError::Diverged { .. }
            | RawError::BeforeRetention { .. }
            | RawError::BadOffsets { .. }
            | RawError::BadLedger { .. } => false,
        }
    }

    /// The Iceberg error of `action` on `table`.
    pub fn iceberg(action: &'static str, table: impl Into<String>, source: iceberg::Error) -> Self {
        RawError::Iceberg {
            action,
            table: table.into(),
            source: Box::new(source),
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`, for messages and logs.
pub fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return uri.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_uri("postgres://tributary:tributary@127.0.0.1:5432/tributary"),
            "postgres://tributary:***@127.0.0.1:5432/tributary"
        );
        assert_eq!(redact_uri("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(redact_uri("postgres://h/db"), "postgres://h/db");
    }

    #[test]
    fn unanswerable_questions_are_permanent() {
        let missing = RawError::UnknownSnapshot {
            table: "raw.pg_sale".into(),
            snapshot_id: 1,
        };
        assert!(!missing.is_retryable());
        assert!(
            RawError::TableMissing {
                table: "raw.pg_sale".into()
            }
            .is_retryable()
        );
    }
}
