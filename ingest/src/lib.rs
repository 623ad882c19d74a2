//! Getting sales into Kafka.
//!
//! For now the store system's changes reach Kafka through Debezium (its connector config is in
//! `ingest/debezium/`), so this crate holds the sample-data loader: a seeded generator of
//! inserts, updates and deletes against `salesdb` that the demo and the tests use to make the
//! pipeline move. The file-drop and WS-* ingestors join it later.
#![deny(missing_docs)]

pub mod config;
pub mod sample;
pub mod store;
