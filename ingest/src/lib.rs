//! Getting sales into Kafka.
//!
//! - The store system's changes reach Kafka through Debezium (its connector config is in
//!   `ingest/debezium/`); [`sample`] and [`store`] are the seeded change generator the demo and
//!   the tests use to make it move.
//! - [`files`]: the file-drop ingestor (CSV, JSON, NDJSON partner exports from a local folder
//!   or an S3 prefix).
//! - [`publish`]: exactly-once publishing (events and progress in one Kafka transaction),
//!   shared by the ingestors.
#![deny(missing_docs)]

pub mod config;
pub mod erp;
pub mod files;
pub mod publish;
pub mod sample;
pub mod store;
