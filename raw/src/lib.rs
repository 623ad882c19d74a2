//! The lake's read model: what the raw Iceberg tables are and how to read them.
//!
//! ```text
//!  schema      RawTable, its columns (Iceberg and Arrow types), column names
//!  offsets     the Kafka offset map every lander commit stores in its snapshot summary
//!  ledger      the fate of every record consumed (landed, dead-lettered, tombstone), idem
//!  catalog     open the SQL catalog (S3 or a folder), name/load a table, read a snapshot
//!  caching_catalog  the SQL catalog answering loads from memory while a table is unchanged
//!  commits     the lander announces each commit, the marts each publication (Postgres NOTIFY)
//!  snapshots   AsOf pins (latest, ids, a time), list snapshots, resolve one id to a cut
//!  topics      which Kafka topic feeds which raw table
//!  incremental the rows a range of append snapshots added (the marts' per-run read)
//!  pins        snapshots a reader continues from, kept by lake maintenance
//!  testing     raw events and an in-memory lake for other crates' tests (hidden)
//! ```
//!
//! The lander (`tributary-lake`) writes the tables this crate describes; the marts and the API
//! only read them, and link no Kafka client and no writer by depending on this crate alone.
#![deny(missing_docs)]

pub mod caching_catalog;
pub mod catalog;
pub mod commits;
pub mod error;
pub mod incremental;
pub mod ledger;
pub mod offsets;
pub mod pins;
pub mod schema;
pub mod snapshots;
#[doc(hidden)]
#[allow(missing_docs)]
pub mod testing;
pub mod topics;

pub use error::RawError;
pub use schema::RawTable;
pub use snapshots::{AsOf, PinnedTable, SnapshotCut};
