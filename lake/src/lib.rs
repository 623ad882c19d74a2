//! The lander: Debezium change topics from Kafka into append-only raw Iceberg tables, exactly
//! once, with undecodable records in `dead_letters`.
//!
//! ```text
//! source (rdkafka, manual assign at lake offsets)
//!   → decode (envelope → typed change event | DecodeError)
//!   → batch (rows → Arrow in the table's schema)
//!   → sink (Parquet + fast_append, full offset map in the snapshot summary, fenced)
//! ```
//!
//! Pure modules ([`decode`], [`batch`], [`offsets`], [`schema`]) are unit-tested without
//! services; I/O lives in [`catalog`], [`sink`] and [`source`]; [`lander`] wires them.
//!
//! `marts` uses this crate as a library: [`catalog::open`] opens the SQL catalog,
//! [`catalog::table_ident`] / [`schema::RawTable`] name the tables, [`schema::col`] names their
//! columns, [`catalog::snapshot_offsets`] reads a snapshot's offsets and
//! [`catalog::read_table`] reads a table at a snapshot.
#![deny(missing_docs)]

pub mod batch;
pub mod catalog;
pub mod config;
pub mod decode;
pub mod error;
pub mod lander;
pub mod lineage;
pub mod metrics;
pub mod sink;
pub mod source;
pub mod telemetry;

pub use config::LanderConfig;
pub use error::LakeError;
pub use lander::{Lander, Mode, RunSummary, run};
pub use tributary_raw::RawTable;
