//! The incremental marts' kept state: where the last run stopped, and what it had folded.
//!
//! Two parts, written together in one transaction so that a crash repeats a run instead of
//! applying it twice:
//! - the current version of every sale (`SaleRecord`), keyed by (source, sale id): large (one
//!   row per sale ever seen), so it is read and written by key, only for the sales a run touches;
//! - the [`Checkpoint`]: the snapshot of each raw table folded so far, the master data, the
//!   cells, the per-source watermarks. Small (it grows with cities × salesmen × months, not with
//!   the history), so it is read and written whole.
//!
//! A checkpoint carries a generation: a commit succeeds only if the stored generation is still
//! the one the run started from, so two runs at once (or a run during a rebuild) cannot both
//! apply their changes ([`MartsError::StateConflict`]).
//!
//! [`PostgresState`] keeps it in Postgres (production); [`MemoryState`] in memory (tests).

mod memory;
mod postgres;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use self::memory::MemoryState;
pub use self::postgres::PostgresState;
use crate::error::MartsError;
use crate::fold::{Cells, CityKey, MasterData, SaleKey, SaleRecord};
use tributary_rankings::publication::SourceWatermark;

/// Where the kept state stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Incremented by every commit.
    pub generation: u64,
    /// The lake namespace the state was folded from.
    pub namespace: String,
    /// Raw table name → the snapshot folded up to (tables with no snapshot yet are absent).
    pub snapshots: BTreeMap<String, i64>,
    /// Current salesmen and cities.
    pub master: MasterData,
    /// Revenue and count per (period, city, salesman).
    pub cells: Cells,
    /// Source (`pg`, `files`, `erp`) → how far the folded events reach.
    pub watermarks: BTreeMap<String, SourceWatermark>,
}

/// Storage of the kept state.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// The checkpoint, or `None` before the first run (or after a reset).
    async fn checkpoint(&self) -> Result<Option<Checkpoint>, MartsError>;

    /// The kept versions of these sales (those never seen are absent).
    async fn sales(&self, keys: &[SaleKey]) -> Result<Vec<SaleRecord>, MartsError>;

    /// The live file and ERP sales that name their salesman by one of `codes` (and give no
    /// salesman id), or their city by one of `cities` (and give no city id).
    async fn sales_naming(
        &self,
        codes: &[String],
        cities: &[CityKey],
    ) -> Result<Vec<SaleRecord>, MartsError>;

    /// Writes `sales` and `checkpoint` atomically, provided the stored generation is still
    /// `base` (`None`: no checkpoint stored). `checkpoint.generation` is the new generation.
    async fn commit(
        &self,
        base: Option<u64>,
        sales: &[SaleRecord],
        checkpoint: &Checkpoint,
    ) -> Result<(), MartsError>;

    /// Forgets everything (a rebuild starts from here).
    async fn reset(&self) -> Result<(), MartsError>;

    /// Forgets the kept deleted sales (tombstones) whose delete was folded before `before`:
    /// the tombstone horizon. A tombstone only matters to an event of the same sale older than
    /// the delete arriving later; past the horizon none is expected, and keeping every delete
    /// forever would grow the state with history. Returns how many went.
    async fn forget_tombstones(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, MartsError>;
}
