//! Maintenance beside the lander: a pass over every table runs in a task of its own, and only
//! the commit of each table's run waits for the lander's loop.
//!
//! Compacting a table that takes 10 000 changes a second rewrites hundreds of files (seconds of
//! reading and writing Parquet); run between the loop's commits, it stopped landing for that
//! long. Here a pass prepares each table's run ([`Maintainer::prepare`]: plan, compacted files)
//! while the lander goes on, then sends it to the loop, which commits it between two of its own
//! commits on the table as it is by then ([`crate::sink::TableSink::apply_maintenance`]: the one
//! writer stays the one writer) and answers with the table it left. The pass sweeps from that
//! table: at that moment no commit was in flight, so a file written before it is either in the
//! table or reached by nothing, and files written after it are not touched.
//!
//! The pass runs on a thread of its own at a lower scheduling priority
//! ([`tributary_common::background`]), every minute by default: compacting `pg_sale` at 10 000
//! changes a second took 18–21 s of CPU every 5 minutes, and the marts' runs beside it, starved of
//! the same two cores, grew to 30–50 K events and set the freshness tail
//! (`bench/results/cdc-2026-12-07-8a0a553-10k-10min.md`); a pass a minute compacts a fifth as
//! much, in 2–8 s. At nice 10 it takes what the others leave; on an idle machine all of it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use iceberg::table::Table;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;
use tributary_raw::schema::RawTable;

use super::{Maintainer, MaintenanceReport, Prepared};
use crate::error::LakeError;
use crate::lineage::LakeLineage;
use crate::metrics::Metrics;

/// What the loop answers a [`ApplyRequest`] with: the run (its report filled in), the table as
/// the commit left it, and when (no commit of the lander was in flight then).
pub type Applied = Result<(Prepared, Table, DateTime<Utc>), LakeError>;

/// A prepared run waiting for the table's writer.
#[derive(Debug)]
pub struct ApplyRequest {
    /// The run.
    pub prepared: Prepared,
    /// Where the writer answers.
    pub reply: oneshot::Sender<Applied>,
}

/// A pass running: its task, and the runs it asks the writer to commit.
#[derive(Debug)]
pub struct Pass {
    task: tokio::task::JoinHandle<()>,
    /// Runs waiting for the writer (closed when the pass is over).
    pub requests: mpsc::Receiver<ApplyRequest>,
}

impl Pass {
    /// Starts a pass over every raw table, on the maintenance thread.
    pub fn start(maintainer: Arc<Maintainer>, lineage: LakeLineage, metrics: Metrics) -> Self {
        static MAINTENANCE_THREAD: std::sync::OnceLock<tokio::runtime::Handle> =
            std::sync::OnceLock::new();
        let runtime = MAINTENANCE_THREAD
            .get_or_init(|| tributary_common::background::low_priority_runtime("maintenance"));
        let (writer, requests) = mpsc::channel(1);
        let task = runtime.spawn(pass(maintainer, lineage, metrics, writer));
        Self { task, requests }
    }

    /// Stops it where it is (files it wrote and never committed are orphans the next sweep
    /// deletes).
    pub fn abort(self) {
        self.task.abort();
    }
}

async fn pass(
    maintainer: Arc<Maintainer>,
    lineage: LakeLineage,
    metrics: Metrics,
    writer: mpsc::Sender<ApplyRequest>,
) {
    for kind in RawTable::ALL {
        let span = tracing::info_span!("maintain", table = %kind);
        let run = lineage.maintenance_started(kind);
        let result = one_table(&maintainer, kind, &writer).instrument(span).await;
        match result {
            Ok(Some(report)) => {
                lineage.maintenance_done(run, Ok(&report));
                metrics.maintained(kind, Some(&report));
            }
            // The lander stopped.
            Ok(None) => return,
            Err(error) => {
                lineage.maintenance_done(run, Err(&error));
                metrics.maintained(kind, None);
                tracing::warn!(table = %kind, %error, retryable = error.is_retryable(), "maintenance failed; landing goes on, the next run retries");
            }
        }
    }
}

/// One table's run; `None` when the writer went away before answering.
async fn one_table(
    maintainer: &Maintainer,
    kind: RawTable,
    writer: &mpsc::Sender<ApplyRequest>,
) -> Result<Option<MaintenanceReport>, LakeError> {
    let table = maintainer.load(kind).await?;
    let prepared = maintainer.prepare(kind, &table).await?;
    let (reply, replied) = oneshot::channel();
    if writer.send(ApplyRequest { prepared, reply }).await.is_err() {
        return Ok(None);
    }
    let Ok(applied) = replied.await else {
        return Ok(None);
    };
    let (prepared, table, at) = applied?;
    let grace = chrono::Duration::from_std(std::time::Duration::from_secs(
        maintainer.settings().orphan_grace_s,
    ))
    .unwrap_or(chrono::Duration::MAX);
    // A second off `at`: object stores may give write times in whole seconds.
    let written_before = (at - chrono::Duration::seconds(1)).min(Utc::now() - grace);
    Ok(Some(
        maintainer.sweep(prepared, &table, written_before).await?,
    ))
}
