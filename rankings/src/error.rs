//! The one error type of the rankings contract: building a publication, writing it, reading it
//! back. [`RankingsError::is_retryable`] tells a store that is down from one that never will work.

use crate::money::MoneyError;

/// What can go wrong building, writing or reading a publication.
#[derive(Debug, thiserror::Error)]
pub enum RankingsError {
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

impl RankingsError {
    /// Whether the same operation may succeed later without anyone changing code or config:
    /// ClickHouse comes back; out-of-range money, bad names and unreadable rows do not.
    pub fn is_retryable(&self) -> bool {
        match self {
            RankingsError::ClickHouse { source, .. } => matches!(
                source,
                clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut
            ),
            RankingsError::Revenue { .. }
            | RankingsError::InvalidDatabaseName(_)
            | RankingsError::CorruptPublication { .. } => false,
        }
    }
}
