//! The kept state in memory, for tests.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Checkpoint, StateStore, StateVersion};
use crate::error::MartsError;
use crate::fold::{CityKey, SOURCE_PG, SaleKey, SaleRecord};

#[derive(Debug, Default)]
struct Kept {
    checkpoint: Option<Checkpoint>,
    sales: HashMap<SaleKey, SaleRecord>,
    /// When each kept deleted sale was first folded as deleted.
    deleted_at: HashMap<SaleKey, DateTime<Utc>>,
}

/// [`StateStore`] in a mutex.
#[derive(Debug, Default)]
pub struct MemoryState {
    inner: Mutex<Kept>,
    /// How many times the whole checkpoint was read.
    checkpoint_reads: std::sync::atomic::AtomicU64,
    /// The next commit fails (as a fenced one would) and writes nothing.
    fail_next_commit: std::sync::atomic::AtomicBool,
    /// Whether a commit waits for the next read of kept sales before it lands (a commit still
    /// in flight while the next run folds), and what wakes it.
    land_after_reads: std::sync::atomic::AtomicBool,
    reads: std::sync::atomic::AtomicU64,
    read: tokio::sync::Notify,
    /// While `true`, commits wait ([`MemoryState::hold_commits`]).
    held: tokio::sync::watch::Sender<bool>,
    /// How many commits landed.
    commits: std::sync::atomic::AtomicU64,
}

impl MemoryState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many times [`StateStore::checkpoint`] was called (a job that remembers its last
    /// checkpoint reads it only when another wrote since).
    pub fn checkpoint_reads(&self) -> u64 {
        self.checkpoint_reads
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Makes the next [`StateStore::commit`] fail with a conflict, writing nothing.
    pub fn fail_next_commit(&self) {
        self.fail_next_commit
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// From now on each commit lands only after a read of kept sales that follows its start
    /// (or [`MemoryState::land_held_commit`]), or 100 ms at most: the next run folds while it
    /// is in flight.
    pub fn land_commits_after_reads(&self) {
        self.land_after_reads
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Lets a commit held by [`MemoryState::land_commits_after_reads`] land.
    pub fn land_held_commit(&self) {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.read.notify_waiters();
    }

    /// While `held`, commits wait before they land (a commit in flight across several runs);
    /// `false` lets them land.
    pub fn hold_commits(&self, held: bool) {
        self.held.send_replace(held);
    }

    /// How many commits have landed.
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl StateStore for MemoryState {
    async fn checkpoint(&self) -> Result<Option<Checkpoint>, MartsError> {
        self.checkpoint_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self.lock().checkpoint.clone())
    }

    async fn version(&self) -> Result<Option<StateVersion>, MartsError> {
        Ok(self.lock().checkpoint.as_ref().map(Checkpoint::version))
    }

    async fn sales(&self, keys: &[SaleKey]) -> Result<Vec<SaleRecord>, MartsError> {
        let found = {
            let state = self.lock();
            keys.iter()
                .filter_map(|k| state.sales.get(k).cloned())
                .collect()
        };
        self.land_held_commit();
        Ok(found)
    }

    async fn sales_naming(
        &self,
        codes: &[String],
        cities: &[CityKey],
    ) -> Result<Vec<SaleRecord>, MartsError> {
        let state = self.lock();
        Ok(state
            .sales
            .values()
            .filter(|r| !r.deleted && r.key.source != SOURCE_PG)
            .filter(|r| {
                (r.refs.salesman_id.is_none()
                    && r.refs
                        .salesman_code
                        .as_ref()
                        .is_some_and(|c| codes.contains(c)))
                    || (r.refs.city_id.is_none()
                        && r.refs.city_key.as_ref().is_some_and(|k| cities.contains(k)))
            })
            .cloned()
            .collect())
    }

    async fn commit(
        &self,
        base: Option<u64>,
        sales: &[SaleRecord],
        checkpoint: &Checkpoint,
    ) -> Result<(), MartsError> {
        if self
            .land_after_reads
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            let seen = self.reads.load(std::sync::atomic::Ordering::SeqCst);
            let next_read = async {
                loop {
                    let read = self.read.notified();
                    tokio::pin!(read);
                    read.as_mut().enable();
                    if self.reads.load(std::sync::atomic::Ordering::SeqCst) > seen {
                        break;
                    }
                    read.await;
                }
            };
            // A commit the job itself waits for (a full queue, a change to the master data)
            // has no read to come: it lands after a while instead.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(100), next_read).await;
        }
        // Never fails: the sender lives in `self`.
        let _ = self.held.subscribe().wait_for(|held| !held).await;
        let mut state = self.lock();
        let found = state.checkpoint.as_ref().map(|c| c.generation);
        let injected = self
            .fail_next_commit
            .swap(false, std::sync::atomic::Ordering::Relaxed);
        if found != base || injected {
            return Err(MartsError::StateConflict {
                expected: base.unwrap_or(0),
                found: found.unwrap_or(0),
            });
        }
        let now = Utc::now();
        for record in sales {
            if record.deleted {
                state.deleted_at.entry(record.key.clone()).or_insert(now);
            } else {
                state.deleted_at.remove(&record.key);
            }
            state.sales.insert(record.key.clone(), record.clone());
        }
        // The cells as Postgres keeps them: the last stored, with the changed ones applied.
        let mut cells = state
            .checkpoint
            .take()
            .map(|stored| stored.cells)
            .unwrap_or_default();
        cells.apply(&checkpoint.cells);
        cells.stored();
        state.checkpoint = Some(Checkpoint {
            cells,
            ..checkpoint.clone()
        });
        self.commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn reset(&self) -> Result<(), MartsError> {
        *self.lock() = Default::default();
        Ok(())
    }

    async fn forget_tombstones(&self, before: DateTime<Utc>) -> Result<u64, MartsError> {
        let mut state = self.lock();
        let old: Vec<SaleKey> = state
            .deleted_at
            .iter()
            .filter(|(_, at)| **at < before)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &old {
            state.deleted_at.remove(key);
            state.sales.remove(key);
        }
        Ok(old.len() as u64)
    }
}
