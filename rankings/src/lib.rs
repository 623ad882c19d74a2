//! The rankings contract between the marts (who write them) and the API (who serves them).
//!
//! ```text
//!  money, period      Decimal(18,2) cents; `all` or a UTC month
//!  ranking            totals → ranked rows (revenue desc, id asc): pure
//!  publication        one publication: its lake snapshots (→ publication id), every period's
//!                     rankings, the rows it becomes
//!  schema             ClickHouse DDL and row types (18.16 and current servers)
//!  retention          which publications stay, which partitions go: pure
//!  store              PublicationWriter (marts) and RankingQueries (API),
//!                     on ClickHouse (clickhouse/{write,query}.rs) and in memory
//! ```
#![deny(missing_docs)]

pub mod error;
pub mod money;
pub mod period;
pub mod publication;
pub mod ranking;
pub mod retention;
pub mod schema;
pub mod store;

pub use error::RankingsError;
pub use money::Money;
pub use period::{Month, Period};
pub use publication::{LakeSnapshot, LakeSnapshots, Publication};
pub use store::{
    ClickHouseStore, MemoryStore, Page, PublicationWriter, RankingQueries, ServedStore,
};
