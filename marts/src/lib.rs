//! Tributary marts: the rankings, computed from the raw Iceberg tables with DataFusion and
//! published to ClickHouse.
//!
//! ```text
//!  raw.pg_sale / raw.pg_salesman / raw.pg_city      (Iceberg, append-only change events)
//!        │  lake: pin each table (tributary_raw) and register it in DataFusion → publication id
//!        ▼
//!  current_state: latest event per id (source_lsn, kafka_offset), deletes removed,
//!                 current names joined; each sale under `all` and its UTC month of `sold_at`;
//!                 totals per period and city / (city, salesman) / salesman
//!        │        (incremental runs: fold + state, only the files added since the last run)
//!        ▼
//!  ranking: each period on its own, revenue desc, id asc (tributary_rankings::ranking, pure)
//!        │
//!        ▼
//!  PublicationWriter (tributary_rankings): ClickHouse `marts` — ranking rows of every period
//!                 first, then `publication_periods`, the `publications` row last; one
//!                 `mart_runs` row per run
//!        │
//!        ▼
//!  retention: every `retention.interval_s`, partitions of publications older than the
//!             retention dropped (latest and pinned kept), their lake pins released
//! ```
//!
//! Time travel: `tributary_raw::AsOf` pins each raw table at chosen snapshots or at the snapshot
//! current at a given time, and [`job::compute_as_of`] computes both rankings from that state
//! (`tributary-marts as-of`, the API's `?as_of=`).
//!
//! The publication model and the ClickHouse store are `tributary-rankings`'; reading the lake's
//! metadata is `tributary-raw`'s. This crate owns the computation, its kept state and its lineage.
#![deny(missing_docs)]

pub mod config;
pub mod current_state;
pub mod error;
pub mod events;
pub mod fold;
#[cfg(test)]
mod incremental_tests;
pub mod job;
pub mod lake;
pub mod lineage;
pub mod metrics;
pub mod provenance;
pub mod retention;
pub mod slice;
pub mod state;
#[cfg(test)]
mod test_support;
pub mod trino;

pub use config::MartsConfig;
pub use error::MartsError;
pub use job::{MartsJob, RunMode, RunOutcome, RunTimings};
