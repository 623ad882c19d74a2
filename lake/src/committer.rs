//! The lander's commits, run beside its consume loop: while one batch is being committed (Parquet
//! written, then the catalog commit), the loop goes on consuming and decoding the next.
//!
//! One writer, commits in order: the [`Committer`] owns every table's sink and the writer lock,
//! and the lander hands it one batch at a time, waiting for the commit in flight before it hands
//! over the next (see `Lander::flush`). A batch is exactly what a flush used to commit inline,
//! so exactly-once is unchanged: a commit that fails, or a crash, loses only what no commit
//! stored, and the next session resumes from the offsets the lake holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tracing::Instrument;
use tributary_raw::ledger::Ledger;
use tributary_raw::offsets::OffsetMap;
use tributary_raw::schema::RawTable;

use crate::batch::Row;
use crate::catalog::WriterLock;
use crate::config::Route;
use crate::error::LakeError;
use crate::lineage::LakeLineage;
use crate::metrics::{Metrics, Outcome};
use crate::sink::{CommitReport, TableSink};
use crate::source::TraceHeaders;
use crate::telemetry::{commit_span, record_commit};

/// What the lander consumed since its last flush, ready to commit.
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) rows: BTreeMap<RawTable, Vec<Row>>,
    pub(crate) dead: Vec<Row>,
    /// Dead letters per change table the records were meant for (metric label).
    pub(crate) dead_by_table: BTreeMap<RawTable, u64>,
    /// The partitions read from since the last flush.
    pub(crate) touched: BTreeSet<tributary_raw::offsets::TopicPartition>,
    /// The fate of each record consumed since the last commit, per table owning its partition
    /// (committed with that table's offsets: see [`tributary_raw::ledger`]).
    pub(crate) counted: BTreeMap<RawTable, Ledger>,
    /// Trace contexts of the producers whose records are buffered, per table they land in
    /// (bounded: see [`crate::lander::MAX_UPSTREAM_TRACES`]).
    pub(crate) upstream: BTreeMap<RawTable, BTreeSet<TraceHeaders>>,
}

impl Batch {
    pub(crate) fn len(&self) -> usize {
        self.rows.values().map(Vec::len).sum::<usize>() + self.dead.len()
    }
}

/// What one commit of a batch stored.
#[derive(Debug, Default)]
pub(crate) struct Committed {
    /// Iceberg commits made.
    pub(crate) commits: u64,
    /// Change rows committed.
    pub(crate) landed: u64,
    /// Dead letters committed.
    pub(crate) dead_letters: u64,
    /// Every partition's next offset as far as the batch went (what the lake now holds).
    pub(crate) progress: OffsetMap,
    /// Each table's committed offsets after the commit.
    pub(crate) offsets: BTreeMap<RawTable, OffsetMap>,
}

/// The single writer of a namespace's raw tables.
pub(crate) struct Committer {
    pub(crate) namespace: String,
    pub(crate) routes: HashMap<String, Route>,
    pub(crate) sinks: BTreeMap<RawTable, TableSink>,
    pub(crate) lock: Option<WriterLock>,
    pub(crate) lineage: LakeLineage,
    pub(crate) metrics: Metrics,
}

impl Committer {
    /// Each table's committed offsets.
    pub(crate) fn offsets(&self) -> BTreeMap<RawTable, OffsetMap> {
        self.sinks
            .iter()
            .map(|(table, sink)| (*table, sink.committed().clone()))
            .collect()
    }

    /// Commits `batch`, whose records end at `progress`: `dead_letters` first, then each change
    /// table whose partitions moved; then announces the commit to readers.
    pub(crate) async fn commit(
        &mut self,
        batch: Batch,
        progress: OffsetMap,
    ) -> Result<Committed, LakeError> {
        if let Some(lock) = self.lock.as_mut() {
            lock.check().await?;
        }
        let mut done = Committed::default();
        let moved: OffsetMap = batch
            .touched
            .iter()
            .filter_map(|tp| progress.get(tp).map(|next| (tp.clone(), next)))
            .collect();

        let context = TableCommit {
            namespace: &self.namespace,
            lineage: &self.lineage,
            metrics: &self.metrics,
        };

        if !batch.dead.is_empty() {
            // The full map: every partition read so far is complete in dead_letters up to here.
            let sink = self
                .sinks
                .get_mut(&RawTable::DeadLetters)
                .expect("a sink per table");
            let (report, span) = context
                .commit(
                    sink,
                    &batch.dead,
                    &progress,
                    &moved,
                    batch.counted.get(&RawTable::DeadLetters),
                    batch.upstream.get(&RawTable::DeadLetters),
                )
                .await?;
            for (table, n) in &batch.dead_by_table {
                self.metrics.events(*table, Outcome::DeadLetter, *n);
            }
            done.dead_letters += batch.dead.len() as u64;
            done.commits += 1;
            // Inside the commit span, so the line carries its trace id.
            span.in_scope(|| tracing::info!(table = %RawTable::DeadLetters, rows = report.rows, snapshot_id = report.snapshot_id, "committed dead letters"));
            tributary_common::failpoint::crash_point(
                tributary_common::failpoint::LANDER_AFTER_DEAD_LETTERS,
            );
        }

        // The change tables commit at once: each stores its own partitions' offsets with its
        // rows, so no order between them matters to a restart, and a batch costs its slowest
        // table's commit rather than the sum of them.
        let mut rows_by_table = batch.rows;
        let mut commits = Vec::new();
        for (table, sink) in &mut self.sinks {
            if !RawTable::DATA_TABLES.contains(table) {
                continue;
            }
            let topics: Vec<&str> = self
                .routes
                .iter()
                .filter(|(_, route)| **route == Route::Data(*table))
                .map(|(topic, _)| topic.as_str())
                .collect();
            let table_moved = moved.restricted_to(&topics);
            if table_moved.is_empty() {
                continue;
            }
            let rows = rows_by_table.remove(table).unwrap_or_default();
            let (counted, upstream) = (batch.counted.get(table), batch.upstream.get(table));
            commits.push(async move {
                let committed = context
                    .commit(sink, &rows, &table_moved, &table_moved, counted, upstream)
                    .await;
                (*table, rows.len(), committed, sink.committed().encode())
            });
        }
        // Every commit is waited for, even after one failed: a commit dropped half-way would
        // leave its sink not knowing what the catalog holds.
        let mut failed = None;
        for (table, rows, committed, offsets) in futures::future::join_all(commits).await {
            let (report, span) = match committed {
                Ok(done) => done,
                Err(error) => {
                    failed.get_or_insert(error);
                    continue;
                }
            };
            self.metrics.events(table, Outcome::Landed, rows as u64);
            done.landed += rows as u64;
            done.commits += 1;
            // Inside the commit span, so the line carries its trace id.
            span.in_scope(|| tracing::info!(%table, rows = report.rows, files = report.files, snapshot_id = report.snapshot_id, %offsets, "committed"));
        }
        if let Some(error) = failed {
            return Err(error);
        }
        if let Some(lock) = self.lock.as_mut() {
            lock.announce_commit().await;
        }
        done.offsets = self.offsets();
        done.progress = progress;
        Ok(done)
    }
}

/// What every table's commit shares: the namespace its spans name, the lineage run each commit
/// is, the metrics it counts in. Borrowed by the commits of a batch running at once.
#[derive(Clone, Copy)]
struct TableCommit<'a> {
    namespace: &'a str,
    lineage: &'a LakeLineage,
    metrics: &'a Metrics,
}

impl TableCommit<'_> {
    /// Commits `rows` to `sink`'s table up to `offsets`, as one OpenLineage run reading `moved`
    /// and one span continuing or linking the producers' traces (returned, for the caller's log
    /// line); counts the commit in the metrics.
    async fn commit(
        self,
        sink: &mut TableSink,
        rows: &[Row],
        offsets: &OffsetMap,
        moved: &OffsetMap,
        counted: Option<&Ledger>,
        upstream: Option<&BTreeSet<TraceHeaders>>,
    ) -> Result<(CommitReport, tracing::Span), LakeError> {
        let table = sink.kind();
        let run = self
            .lineage
            .commit_started(table, sink.committed(), moved, rows.len() as u64);
        let parent = sink.snapshot_id();
        let span = commit_span(self.namespace, table, rows.len(), upstream);
        let committed = sink
            .commit_counted(rows, offsets, counted.unwrap_or(&Ledger::new()))
            .instrument(span.clone())
            .await;
        record_commit(&span, &committed);
        let report = match committed {
            Ok(report) => {
                self.lineage.commit_done(run, &report, parent);
                report
            }
            Err(error) => {
                self.lineage.commit_failed(run, &error);
                return Err(error);
            }
        };
        self.metrics
            .committed(table, report.elapsed.as_secs_f64(), report.files);
        self.metrics.committed_bytes(table, report.bytes);
        self.metrics.ledger(table, sink.ledger());
        Ok((report, span))
    }
}
