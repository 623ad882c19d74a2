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
//! Pure modules ([`decode`], [`batch`]) are unit-tested without services; I/O lives in
//! [`catalog`] (creating the tables, the writer lock), [`sink`] and [`source`]; [`lander`] wires
//! them. What the tables are (schemas, the offset map) and how to open and read them is
//! `tributary-raw`'s: the marts and the API read the lake through it, never through this crate.
#![deny(missing_docs)]

pub mod batch;
pub mod catalog;
mod committer;
pub mod config;
pub mod decode;
pub mod error;
pub mod lander;
pub mod lineage;
pub mod maintenance;
pub mod metrics;
pub mod sink;
pub mod source;
pub mod telemetry;

pub use config::LanderConfig;
pub use error::LakeError;
pub use lander::{Lander, Mode, RunSummary, run};
pub use tributary_raw::RawTable;
