//! Tributary marts: the rankings, computed from the raw Iceberg tables with DataFusion and
//! published to ClickHouse.
//!
//! ```text
//!  raw.pg_sale / raw.pg_salesman / raw.pg_city      (Iceberg, append-only change events)
//!        │  lake: pin each table at its current snapshot → publication id
//!        ▼
//!  current_state: latest event per id (source_lsn, kafka_offset), deletes removed,
//!                 current names joined; each sale under `all` and its UTC month of `sold_at`;
//!                 totals per period and city / (city, salesman) / salesman
//!        │
//!        ▼
//!  ranking: each period on its own, revenue desc, id asc, ranks 1..n   (pure Rust)
//!        │
//!        ▼
//!  store: ClickHouse `marts` — ranking rows of every period first, then
//!                 `publication_periods`, the `publications` row last; one `mart_runs` row per run
//! ```
//!
//! Time travel: [`lake::AsOf`] pins each raw table at chosen snapshots or at the snapshot
//! current at a given time, and [`job::compute_as_of`] computes both rankings from that state
//! (`tributary-marts as-of`, the API's `?as_of=`); [`lake::list_snapshots`] lists what there is
//! to travel to (`tributary-marts snapshots`, `GET /v1/snapshots`).
//!
//! Without the default `job` feature the crate is only the ClickHouse contract
//! ([`schema`], [`store`], [`publication`], [`ranking`], [`period`], [`money`]), which
//! `tributary-api` reads through.
#![deny(missing_docs)]

#[cfg(feature = "job")]
pub mod config;
#[cfg(feature = "job")]
pub mod current_state;
pub mod error;
#[cfg(feature = "job")]
pub mod events;
#[cfg(feature = "job")]
pub mod fold;
#[cfg(all(test, feature = "job"))]
mod incremental_tests;
#[cfg(feature = "job")]
pub mod job;
#[cfg(feature = "job")]
pub mod lake;
#[cfg(feature = "job")]
pub mod lineage;
#[cfg(feature = "job")]
pub mod metrics;
pub mod money;
pub mod period;
#[cfg(feature = "job")]
pub mod provenance;
pub mod publication;
pub mod ranking;
pub mod schema;
#[cfg(feature = "job")]
pub mod state;
pub mod store;
/// Test helpers (raw events, an in-memory lake); `test-support` feature, tests only.
#[cfg(any(all(test, feature = "job"), feature = "test-support"))]
#[doc(hidden)]
#[allow(missing_docs)]
pub mod test_support;

#[cfg(feature = "job")]
pub use config::MartsConfig;
pub use error::MartsError;
#[cfg(feature = "job")]
pub use job::{MartsJob, RunMode, RunOutcome, RunTimings};
pub use money::Money;
pub use period::{Month, Period};
pub use publication::{LakeSnapshot, LakeSnapshots, Publication};
pub use store::{ClickHouseStore, MemoryStore, Page, PublicationStore};
