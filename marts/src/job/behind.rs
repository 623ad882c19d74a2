//! Committing the kept state behind: a scheduled run's state commit runs in a task of its own
//! while the next runs read, fold and publish ([`MartsJob::run_scheduled`], `docs/marts.md`).
//! One commit runs at a time, in order; the runs that end while it is in flight queue their
//! changes, which go as one commit once it lands ([`Behind`]). A run reads the sales those
//! commits write from memory ([`Behind::sale`]), waits only when the queue is full
//! ([`MAX_QUEUED_SALES`]) and forgets its state in memory if a commit failed.

use std::collections::HashMap;
use std::sync::Arc;

use tracing::Instrument;

use super::{MartsJob, RunTimings, Stopwatch, snapshot_times};
#[cfg(test)]
use super::{RunMode, RunOutcome};
use crate::error::MartsError;
use crate::fold::{SaleKey, SaleRecord};
use crate::state::Checkpoint;

/// The most sales the runs queue behind a commit in flight before one waits for it. Under a
/// steady stream the queue stays about one commit's worth (the runs' changes while the last
/// commit ran); it grows only while commits are slower than the stream (a Postgres checkpoint
/// writing full pages), and a full one makes the next run wait, as every run did before
/// commits were queued. A queued sale holds its kept version (with its provenance): the bound
/// is also the queue's bound on memory.
pub(super) const MAX_QUEUED_SALES: usize = 200_000;

/// The state commits of this process's runs that have not landed: at most one in flight, and
/// the changes of the runs that ended since, queued to go as one commit when it lands.
#[derive(Default)]
pub(super) struct Behind {
    in_flight: Option<InFlightCommit>,
    queued: Option<QueuedCommit>,
}

/// Runs' changes waiting for the commit in flight: one commit's worth, newer over older.
struct QueuedCommit {
    /// The generation the commit in flight writes: this one's base.
    base: Option<u64>,
    sales: HashMap<SaleKey, SaleRecord>,
    /// The newest run's checkpoint with, of its cells, those changed since the commit in flight
    /// ([`Checkpoint::take_changes`] of each run, applied in order).
    changes: Checkpoint,
    /// The snapshots it continues from, pinned once it lands.
    times: Vec<(&'static str, i64, i64)>,
}

impl QueuedCommit {
    /// Adds a later run's changes: its sales over those queued, its checkpoint over the
    /// queued one, the cells changed by either.
    fn merge(
        &mut self,
        sales: Vec<SaleRecord>,
        later: Checkpoint,
        times: Vec<(&'static str, i64, i64)>,
    ) {
        self.sales
            .extend(sales.into_iter().map(|r| (r.key.clone(), r)));
        let mut cells = std::mem::take(&mut self.changes.cells);
        cells.apply(&later.cells);
        self.changes = Checkpoint { cells, ..later };
        self.times = times;
    }
}

impl Behind {
    /// Whether nothing is in flight or queued: the store has every commit of this process.
    pub(super) fn is_empty(&self) -> bool {
        self.in_flight.is_none() && self.queued.is_none()
    }

    /// Whether the commit in flight, if any, has ended (landed or failed): settling it costs
    /// nothing.
    pub(super) fn in_flight_ended(&self) -> bool {
        self.in_flight.as_ref().is_none_or(|c| c.task.is_finished())
    }

    /// How many sales are queued behind the commit in flight.
    pub(super) fn sales_queued(&self) -> usize {
        self.queued.as_ref().map_or(0, |q| q.sales.len())
    }

    /// The newest version of `key` not yet in the store, if any: queued, else in flight.
    pub(super) fn sale(&self, key: &SaleKey) -> Option<&SaleRecord> {
        self.queued
            .as_ref()
            .and_then(|q| q.sales.get(key))
            .or_else(|| self.in_flight.as_ref().and_then(|c| c.sale(key)))
    }
}

/// A state commit running beside the next runs: the sales it writes are newer than the store's
/// until it lands.
struct InFlightCommit {
    sales: Arc<Vec<SaleRecord>>,
    by_key: HashMap<SaleKey, usize>,
    /// The commit (and the pin of its snapshots); its seconds once landed.
    task: tokio::task::JoinHandle<Result<f64, MartsError>>,
}

impl InFlightCommit {
    /// The version of `key` this commit writes, if it writes one.
    fn sale(&self, key: &SaleKey) -> Option<&SaleRecord> {
        self.by_key.get(key).map(|&i| &self.sales[i])
    }

    /// Waits for it to land: its seconds, or why it failed.
    async fn landed(self) -> Result<f64, MartsError> {
        match self.task.await {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => Err(MartsError::CommitCancelled),
        }
    }
}

/// The job's commits behind, taken by a run: given back when the run ends (or fails, or is
/// dropped at shutdown), so the job never loses track of a commit.
pub(super) struct TakenBehind<'a> {
    slot: &'a std::sync::Mutex<Behind>,
    pub(super) behind: Behind,
}

impl<'a> TakenBehind<'a> {
    pub(super) fn take(slot: &'a std::sync::Mutex<Behind>) -> Self {
        let behind = std::mem::take(&mut *slot.lock().unwrap_or_else(|e| e.into_inner()));
        Self { slot, behind }
    }
}

impl Drop for TakenBehind<'_> {
    fn drop(&mut self) {
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = std::mem::take(&mut self.behind);
    }
}

impl MartsJob {
    /// Commits a run's `sales` and the changes of `checkpoint` (which count as stored from now
    /// on) over generation `base`, behind: at once in a task of its own when no commit is in
    /// flight, else queued with the runs' changes since, which go as one commit when it lands.
    /// Waits (the returned seconds, the landed commit's own added to `timings.commit_behind`)
    /// only when the queue is full.
    pub(super) async fn commit_behind(
        &self,
        behind: &mut Behind,
        base: Option<u64>,
        sales: Vec<SaleRecord>,
        checkpoint: &mut Checkpoint,
        slice: &[(&'static str, iceberg::table::Table, Option<i64>)],
        timings: &mut RunTimings,
    ) -> Result<(), MartsError> {
        let (changes, times) = (checkpoint.take_changes(), snapshot_times(slice));
        match &mut behind.queued {
            Some(queued) => queued.merge(sales, changes, times),
            None => {
                behind.queued = Some(QueuedCommit {
                    base,
                    sales: sales.into_iter().map(|r| (r.key.clone(), r)).collect(),
                    changes,
                    times,
                })
            }
        }
        if behind.in_flight_ended() || behind.sales_queued() >= MAX_QUEUED_SALES {
            counted(timings, self.start_queued(behind)).await?;
        }
        Ok(())
    }

    /// Waits for the commit in flight (its seconds), then starts the queued one, if any.
    async fn start_queued(&self, behind: &mut Behind) -> Result<f64, MartsError> {
        let landed = self.settle_in_flight_only(behind).await?;
        if let Some(queued) = behind.queued.take() {
            behind.in_flight = Some(self.start_commit(queued));
        }
        Ok(landed)
    }

    /// Waits for the commit in flight, if any: its seconds. A failed one also drops the queue
    /// (its base is a generation the store never got) and the checkpoint in memory (it ran
    /// ahead of a store that lacks it), so the next run folds again from the stored state.
    async fn settle_in_flight_only(&self, behind: &mut Behind) -> Result<f64, MartsError> {
        let Some(commit) = behind.in_flight.take() else {
            return Ok(0.0);
        };
        commit.landed().await.inspect_err(|error| {
            behind.queued = None;
            self.kept.lock().unwrap_or_else(|e| e.into_inner()).take();
            tracing::warn!(%error, "a state commit failed; the next run folds again from the stored state");
        })
    }

    /// Starts committing `queued`, then pinning the snapshots it continues from: a task of its
    /// own, so the caller may fold on meanwhile.
    fn start_commit(&self, queued: QueuedCommit) -> InFlightCommit {
        let QueuedCommit {
            base,
            sales,
            changes,
            times,
        } = queued;
        let sales: Arc<Vec<SaleRecord>> = Arc::new(sales.into_values().collect());
        let by_key = sales
            .iter()
            .enumerate()
            .map(|(i, r)| (r.key.clone(), i))
            .collect();
        let (state, pins, namespace) = (
            self.state.clone(),
            self.pins.clone(),
            self.namespace.clone(),
        );
        let written = sales.clone();
        let task = tokio::spawn(
            async move {
                let started = std::time::Instant::now();
                state.commit(base, &written, &changes).await?;
                pin_state(pins.as_ref(), &namespace, &times).await;
                Ok(started.elapsed().as_secs_f64())
            }
            .in_current_span(),
        );
        InFlightCommit {
            sales,
            by_key,
            task,
        }
    }

    /// Lands every commit behind: the one in flight, then the queued one. Their seconds.
    pub(super) async fn settle(&self, behind: &mut Behind) -> Result<f64, MartsError> {
        let mut seconds = 0.0;
        while !behind.is_empty() {
            seconds += self.start_queued(behind).await?;
        }
        Ok(seconds)
    }

    /// [`MartsJob::settle`], the wait counted in `timings` (`commit`) and the landed commits'
    /// own seconds too (`commit_behind`).
    pub(super) async fn settle_counted(
        &self,
        behind: &mut Behind,
        timings: &mut RunTimings,
    ) -> Result<(), MartsError> {
        counted(timings, self.settle(behind)).await
    }

    /// Settles a commit in flight that has ended and starts the queued one: at a run's start,
    /// so queued changes go even when no later run publishes.
    pub(super) async fn start_queued_if_landed(
        &self,
        behind: &mut Behind,
        timings: &mut RunTimings,
    ) -> Result<(), MartsError> {
        if behind.in_flight.is_some() && behind.in_flight_ended() {
            timings.commit_behind += self.start_queued(behind).await?;
        }
        Ok(())
    }

    /// An incremental run as the scheduler makes it, its state commit left behind.
    #[cfg(test)]
    pub(crate) async fn run_behind(&self) -> Result<RunOutcome, MartsError> {
        self.run_under(RunMode::Incremental, None, true).await
    }

    /// Lands the job's commits behind, if any (see [`MartsJob::settle`]).
    pub(crate) async fn settle_in_flight(&self) -> Result<f64, MartsError> {
        self.settle(&mut TakenBehind::take(&self.in_flight).behind)
            .await
    }
}

/// Waits for commits behind to land (`landing`: their own seconds), the wait counted in
/// `timings.commit` and their own seconds in `commit_behind`.
async fn counted(
    timings: &mut RunTimings,
    landing: impl std::future::Future<Output = Result<f64, MartsError>>,
) -> Result<(), MartsError> {
    let mut watch = Stopwatch::start();
    timings.commit_behind += landing.await?;
    timings.commit += watch.lap();
    Ok(())
}

/// Pins the snapshots the state continues from in `pins` (as its holder). Best effort: a failed
/// pin leaves the previous, older one, which keeps more history, never less.
pub(super) async fn pin_state(
    pins: Option<&(Arc<tributary_raw::pins::SnapshotPins>, String)>,
    namespace: &str,
    times: &[(&'static str, i64, i64)],
) {
    let Some((pins, holder)) = pins else {
        return;
    };
    if let Err(error) = pins.pin(holder, namespace, times).await {
        tracing::warn!(%error, holder, "could not pin the state's snapshots; lake maintenance may expire them (the next run would rebuild)");
    }
}
