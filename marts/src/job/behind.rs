//! Committing the kept state behind: a scheduled run's state commit runs in a task of its own
//! while the next run reads and folds ([`MartsJob::run_scheduled`], `docs/marts.md`). The next
//! run reads the sales that commit writes from it ([`InFlightCommit::sale`]), waits for it to
//! land before its own commit ([`MartsJob::settle`]), and forgets its state in memory if it
//! failed.

use std::collections::HashMap;
use std::sync::Arc;

use tracing::Instrument;

use super::{MartsJob, RunTimings, Stopwatch, snapshot_times};
#[cfg(test)]
use super::{RunMode, RunOutcome};
use crate::error::MartsError;
use crate::fold::{SaleKey, SaleRecord};
use crate::state::Checkpoint;

/// A state commit running beside the next run: the sales it writes are newer than the store's
/// until it lands, so the next fold reads those from here and the others from the store.
pub(super) struct InFlightCommit {
    sales: Arc<Vec<SaleRecord>>,
    by_key: HashMap<SaleKey, usize>,
    /// The commit (and the pin of its snapshots); its seconds once landed.
    task: tokio::task::JoinHandle<Result<f64, MartsError>>,
}

impl InFlightCommit {
    /// Whether it has ended (landed or failed): waiting for it costs nothing.
    pub(super) fn has_ended(&self) -> bool {
        self.task.is_finished()
    }

    /// How many sales it writes.
    pub(super) fn sales_written(&self) -> usize {
        self.sales.len()
    }

    /// The version of `key` this commit writes, if it writes one.
    pub(super) fn sale(&self, key: &SaleKey) -> Option<&SaleRecord> {
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

/// The job's commit in flight, taken by a run: given back when the run ends without settling
/// it (failed, or dropped at shutdown), so the job never loses track of a commit.
pub(super) struct TakenCommit<'a> {
    slot: &'a std::sync::Mutex<Option<InFlightCommit>>,
    pub(super) commit: Option<InFlightCommit>,
}

impl<'a> TakenCommit<'a> {
    pub(super) fn take(slot: &'a std::sync::Mutex<Option<InFlightCommit>>) -> Self {
        let commit = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        Self { slot, commit }
    }
}

impl Drop for TakenCommit<'_> {
    fn drop(&mut self) {
        if let Some(commit) = self.commit.take() {
            *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(commit);
        }
    }
}

impl MartsJob {
    /// Starts committing `sales` and the changes of `checkpoint` (which count as stored from
    /// now on) over generation `base`, then pinning the slice's snapshots: a task of its own,
    /// so the caller may fold on meanwhile ([`MartsJob::settle`] waits for it).
    pub(super) fn start_commit(
        &self,
        base: Option<u64>,
        sales: Vec<SaleRecord>,
        checkpoint: &mut Checkpoint,
        slice: &[(&'static str, iceberg::table::Table, Option<i64>)],
    ) -> InFlightCommit {
        let changes = checkpoint.take_changes();
        let sales = Arc::new(sales);
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
        let (written, times) = (sales.clone(), snapshot_times(slice));
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

    /// Waits for the commit in flight, if any: its seconds. A failed one also drops the
    /// checkpoint in memory (it ran ahead of a store that lacks it), so the next run folds
    /// again from the stored state.
    pub(super) async fn settle(
        &self,
        in_flight: &mut Option<InFlightCommit>,
    ) -> Result<f64, MartsError> {
        let Some(commit) = in_flight.take() else {
            return Ok(0.0);
        };
        commit.landed().await.inspect_err(|error| {
            self.kept.lock().unwrap_or_else(|e| e.into_inner()).take();
            tracing::warn!(%error, "a state commit failed; the next run folds again from the stored state");
        })
    }

    /// [`MartsJob::settle`], the wait counted in `timings` (`commit`) and the landed commit's
    /// own seconds too (`commit_behind`).
    pub(super) async fn settle_counted(
        &self,
        in_flight: &mut Option<InFlightCommit>,
        timings: &mut RunTimings,
    ) -> Result<(), MartsError> {
        let mut watch = Stopwatch::start();
        timings.commit_behind += self.settle(in_flight).await?;
        timings.commit += watch.lap();
        Ok(())
    }

    /// An incremental run as the scheduler makes it, its state commit left in flight.
    #[cfg(test)]
    pub(crate) async fn run_behind(&self) -> Result<RunOutcome, MartsError> {
        self.run_under(RunMode::Incremental, None, true).await
    }

    /// Waits for the job's commit in flight, if any (see [`MartsJob::settle`]).
    pub(crate) async fn settle_in_flight(&self) -> Result<f64, MartsError> {
        self.settle(&mut TakenCommit::take(&self.in_flight).commit)
            .await
    }
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
