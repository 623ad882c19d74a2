//! The incremental marts' kept state: where the last run stopped, and what it had folded.
//!
//! Three parts, written together in one transaction so that a crash repeats a run instead of
//! applying it twice:
//! - the current version of every sale (`SaleRecord`), keyed by (source, sale id): large (one
//!   row per sale ever seen), so it is read and written by key, only for the sales a run touches;
//! - the cells (revenue and count per period, city and salesman): one row each, so a commit
//!   writes the cells its run changed ([`Cells::changed`]), not all of them; they grow with
//!   cities × salesmen × months, not with the history, and are read whole only when a process
//!   starts (the marts job keeps the last committed checkpoint in memory and reads it again only
//!   when the stored [`StateVersion`] is not the one it committed);
//! - the [`Checkpoint`]'s small rest: the snapshot of each raw table folded so far, the master
//!   data, the per-source watermarks, read and written whole.
//!
//! A checkpoint carries a generation: a commit succeeds only if the stored generation is still
//! the one the run started from, so two runs at once (or a run during a rebuild) cannot both
//! apply their changes ([`MartsError::StateConflict`]). Its epoch, drawn when a state is first
//! written, tells a state rebuilt since apart from the one a process remembers.
//!
//! [`PostgresState`] keeps it in Postgres (production); [`MemoryState`] in memory (tests).

mod memory;
mod postgres;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use self::memory::MemoryState;
pub use self::postgres::{KeptSalesReader, PostgresState, RowSales};
use crate::error::MartsError;
use crate::fold::{Cells, CityKey, MasterData, SaleKey, SaleRecord};
use tributary_rankings::publication::SourceWatermark;

/// Where the kept state stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Incremented by every commit.
    pub generation: u64,
    /// Drawn at random when the state is first written (generation 1), then carried: a state
    /// forgotten and folded again since has another.
    #[serde(default)]
    pub epoch: u64,
    /// The lake namespace the state was folded from.
    pub namespace: String,
    /// Raw table name → the snapshot folded up to (tables with no snapshot yet are absent).
    pub snapshots: BTreeMap<String, i64>,
    /// Current salesmen and cities.
    pub master: MasterData,
    /// Revenue and count per (period, city, salesman).
    #[serde(default)]
    pub cells: Cells,
    /// Source (`pg`, `files`, `erp`) → how far the folded events reach.
    pub watermarks: BTreeMap<String, SourceWatermark>,
}

/// Which checkpoint is stored: its generation and epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateVersion {
    /// [`Checkpoint::generation`].
    pub generation: u64,
    /// [`Checkpoint::epoch`].
    pub epoch: u64,
}

impl Checkpoint {
    /// Its [`StateVersion`].
    pub fn version(&self) -> StateVersion {
        StateVersion {
            generation: self.generation,
            epoch: self.epoch,
        }
    }

    /// What a commit writes while the next fold goes on: this checkpoint with, of its cells,
    /// only those changed since they were last stored ([`Cells::take_changes`]), which count
    /// as stored from now on.
    pub fn take_changes(&mut self) -> Checkpoint {
        Checkpoint {
            generation: self.generation,
            epoch: self.epoch,
            namespace: self.namespace.clone(),
            snapshots: self.snapshots.clone(),
            master: self.master.clone(),
            cells: self.cells.take_changes(),
            watermarks: self.watermarks.clone(),
        }
    }
}

/// Storage of the kept state.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Which checkpoint is stored (`None` before the first run): cheap, unlike
    /// [`StateStore::checkpoint`].
    async fn version(&self) -> Result<Option<StateVersion>, MartsError>;

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
    /// Of its cells only those changed since they were last stored are written
    /// ([`Cells::changed`]; the others may be absent, as in [`Checkpoint::take_changes`]): the
    /// stored cells are the last ones with these changes applied.
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
