//! The lander loop: consume → decode → buffer → flush (dead letters first, then the change
//! tables), committing on size or interval, until shutdown or (in drain mode) until caught up.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use iceberg::Catalog;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tributary_common::sale_event::SaleSource;

use crate::batch::{Provenance, change_row, dead_letter_row, event_row};
use crate::catalog::{WriterLock, ensure_tables};
use crate::committer::{Batch, Committed, Committer};
use crate::config::{LanderConfig, Route};
use crate::decode::{Decoded, decode, decode_rejected, decode_sale_event};
use crate::error::LakeError;
use crate::lineage::LakeLineage;
use crate::maintenance::{ApplyRequest, Maintainer, Pass};
use crate::metrics::{Metrics, Outcome};
use crate::sink::TableSink;
use crate::source::{KafkaSource, Record, Source, TraceHeaders};
use tributary_raw::ledger::Fate;
use tributary_raw::offsets::{OffsetMap, StartOffset, TopicPartition, resume_offset, should_land};
use tributary_raw::schema::RawTable;

/// How long drain mode waits without any record before it stops short of the high watermarks
/// (e.g. transaction markers that are never delivered as records).
const DRAIN_IDLE: Duration = Duration::from_secs(30);

/// When the lander stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Run until the shutdown token fires (the service).
    Follow,
    /// Land everything that was in the topics at start, then stop (`--once`, tests).
    Drain,
}

/// What a run did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Change rows committed.
    pub landed: u64,
    /// Dead letters committed.
    pub dead_letters: u64,
    /// Tombstones skipped.
    pub tombstones: u64,
    /// Records not appended because the lake already had them.
    pub skipped_replay: u64,
    /// Iceberg commits made.
    pub commits: u64,
    /// Drain mode only: it stopped because no record came for a while, before every partition
    /// reached its high watermark (something it could not read, or a broker problem).
    pub stopped_short: bool,
}

/// Runs landing sessions from `config` until `shutdown` (or drained, in [`Mode::Drain`]). This
/// is what the binary does.
///
/// A session that fails on a dependency (a retryable [`LakeError`]: the object store, the
/// catalog's Postgres or Kafka down, the writer lock lost with its Postgres session) is started
/// again after a backoff (1 s doubling to 60 s, with jitter; back to 1 s after a session that
/// ran a minute), as a supervisor would restart the process: from what the lake committed, so
/// exactly-once holds as after a crash, and no record is buffered meanwhile. A permanent error
/// (fenced, misconfigured, schema drift) ends the run; so does any error in [`Mode::Drain`].
pub async fn run(
    config: LanderConfig,
    mode: Mode,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<RunSummary, LakeError> {
    config.validate()?;
    let mut backoff = session_backoff();
    loop {
        let started = Instant::now();
        let error = match run_session(config.clone(), mode, metrics.clone(), shutdown.clone()).await
        {
            Ok(summary) => return Ok(summary),
            Err(error) if error.is_retryable() && mode == Mode::Follow => error,
            Err(error) => return Err(error),
        };
        if started.elapsed() >= SESSION_RESET {
            backoff = session_backoff();
        }
        let wait = backoff.next().unwrap_or(SESSION_MAX_WAIT);
        metrics.session_restarted(&error);
        tracing::warn!(%error, kind = error.kind(), ?wait, "landing session failed on a dependency; starting again from what the lake committed");
        tokio::select! {
            _ = shutdown.cancelled() => return Err(error),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Longest wait between two landing sessions.
const SESSION_MAX_WAIT: Duration = Duration::from_secs(60);
/// A session that ran this long resets the backoff.
const SESSION_RESET: Duration = Duration::from_secs(60);

fn session_backoff() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(SESSION_MAX_WAIT)
        .with_jitter()
        .without_max_times()
        .build()
}

/// One landing session: opens the catalog, takes the writer lock, opens Kafka and lands until
/// `shutdown`, drained, or an error.
async fn run_session(
    config: LanderConfig,
    mode: Mode,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<RunSummary, LakeError> {
    let catalog: Arc<dyn Catalog> = Arc::new(tributary_raw::catalog::open(&config.lake).await?);
    // Take the lock before reading any table's offsets: they must not move after we read them.
    let lock = WriterLock::acquire(
        &config.lake,
        &config.lake.namespace,
        Duration::from_millis(config.writer_lock_wait_ms),
    )
    .await?;
    let source = KafkaSource::new(&config.kafka, &config.group_id)?;
    // Its own client: watermark queries on the landing consumer stall its fetches.
    let lag_source = KafkaSource::new(&config.kafka, &format!("{}-lag", config.group_id))?;
    let lander = Lander::open(config, source, catalog, lock, metrics.clone()).await?;
    let landed = lander.landed();
    let stop_lag = shutdown.child_token();
    let lag_task = tokio::spawn({
        let stop = stop_lag.clone();
        async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(LAG_INTERVAL) => {}
                }
                let snapshot = landed.lock().expect("landed offsets lock").clone();
                report_lag(&lag_source, &snapshot, &metrics).await;
            }
        }
    });
    let result = lander.run(mode, shutdown).await;
    stop_lag.cancel();
    let _ = lag_task.await;
    result
}

/// How long partition discovery may fail in a row before the session ends (a retryable error:
/// the next session, after the usual backoff, opens new Kafka clients). A consumer created
/// before a broker outage was seen, once the broker was back, to fail every metadata request
/// for minutes (`BrokerTransportFailure`) while new clients connected at once; a session
/// replaces its clients rather than wait on one that may never reconnect.
const KAFKA_UNREACHABLE_LIMIT: Duration = Duration::from_secs(60);

/// After a failed partition discovery: a permanent error ends the session, a retryable one is
/// logged and tolerated until discovery has failed for [`KAFKA_UNREACHABLE_LIMIT`] since the last
/// success (`unreachable_since`), when it ends the session too.
fn tolerate_discovery_failure(
    error: LakeError,
    unreachable_since: &mut Option<Instant>,
) -> Result<(), LakeError> {
    if !error.is_retryable() {
        return Err(error);
    }
    let since = *unreachable_since.get_or_insert_with(Instant::now);
    if since.elapsed() >= KAFKA_UNREACHABLE_LIMIT {
        tracing::warn!(%error, limit = ?KAFKA_UNREACHABLE_LIMIT, "Kafka unreachable through this session's client: ending the session, the next opens new clients");
        return Err(error);
    }
    tracing::warn!(%error, "partition discovery failed, will retry");
    Ok(())
}

/// How often the consumer lag gauge is refreshed.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// Sets the lag gauge of every partition in `landed`: its high watermark minus the next offset
/// the lake holds. Best effort: a failed query leaves the last value. A partition written in
/// transactions shows a lag of 1 at rest (its final commit marker is never landed).
pub async fn report_lag<S: Source>(source: &S, landed: &OffsetMap, metrics: &Metrics) {
    for (tp, next) in landed.iter() {
        match source.watermarks(tp).await {
            Ok((_, high)) => metrics.lag(&tp.topic, tp.partition, high - next),
            Err(error) => {
                tracing::debug!(partition = %tp, %error, "no watermarks for the lag gauge")
            }
        }
    }
}

/// The lander over any [`Source`] and any Iceberg catalog.
pub struct Lander<S: Source> {
    config: LanderConfig,
    source: S,
    metrics: Metrics,
    routes: HashMap<String, Route>,
    /// The writer of the tables, here when no commit is in flight.
    committer: Option<Committer>,
    /// The commit in flight, if any; it hands the committer back when done.
    in_flight: Option<InFlight>,
    /// Each table's committed offsets as of the last finished commit: records below them are
    /// replays (a commit in flight only covers records below `progress`, so it cannot change
    /// what a record consumed meanwhile is).
    committed: BTreeMap<RawTable, OffsetMap>,
    assigned: BTreeMap<TopicPartition, StartOffset>,
    /// Next offset to consume per partition (what has been read, landed or buffered).
    progress: OffsetMap,
    buffer: Batch,
    /// When the first record of `buffer` was consumed.
    first_at: Option<Instant>,
    /// What the lake holds, shared with the lag reporter.
    landed: Arc<std::sync::Mutex<OffsetMap>>,
    summary: RunSummary,
    /// Lake maintenance (`None` when `maintenance.enabled` is off).
    maintainer: Option<Arc<Maintainer>>,
    /// The maintenance pass running beside the loop, if any: it prepares each table's run and
    /// asks the loop to commit it between two commits ([`crate::maintenance::Pass`]).
    maintenance: Option<Pass>,
    lineage: LakeLineage,
}

/// A commit running beside the consume loop.
type InFlight = tokio::task::JoinHandle<(Committer, Result<Committed, LakeError>)>;

impl<S: Source> Lander<S> {
    /// Creates missing tables and opens one writer per table. `lock` must already be held.
    pub async fn open(
        config: LanderConfig,
        source: S,
        catalog: Arc<dyn Catalog>,
        lock: WriterLock,
        metrics: Metrics,
    ) -> Result<Self, LakeError> {
        config.validate()?;
        ensure_tables(catalog.as_ref(), &config.lake.namespace).await?;
        let mut sinks = BTreeMap::new();
        for table in RawTable::ALL {
            sinks.insert(
                table,
                TableSink::open(catalog.clone(), &config.lake.namespace, table).await?,
            );
        }
        for (table, sink) in &sinks {
            metrics.ledger(*table, sink.ledger());
        }
        let routes: HashMap<String, Route> = config.topics.routes().into_iter().collect();
        let lineage = LakeLineage::from_env(&config);
        let maintainer = if config.maintenance.enabled {
            Some(Arc::new(Maintainer::new(
                config.maintenance.clone(),
                &config.lake,
                &config.lake.namespace,
                catalog.clone(),
            )?))
        } else {
            None
        };
        // Already registered when a test opens several landers on one registry: keep the first.
        let _ = lineage.lineage().register_metrics(metrics.registry());
        let committer = Committer {
            namespace: config.lake.namespace.clone(),
            routes: routes.clone(),
            sinks,
            lock: Some(lock),
            lineage: lineage.clone(),
            metrics: metrics.clone(),
        };
        Ok(Self {
            config,
            source,
            metrics,
            routes,
            committed: committer.offsets(),
            committer: Some(committer),
            in_flight: None,
            assigned: BTreeMap::new(),
            progress: OffsetMap::new(),
            buffer: Batch::default(),
            first_at: None,
            landed: Arc::default(),
            summary: RunSummary::default(),
            maintainer,
            maintenance: None,
            lineage,
        })
    }

    /// The offsets the lake holds per partition, kept current by the lander (for the lag gauge).
    pub fn landed(&self) -> Arc<std::sync::Mutex<OffsetMap>> {
        self.landed.clone()
    }

    /// Runs until `shutdown` (then flushes what was consumed) or, in [`Mode::Drain`], until
    /// every partition reached the high watermark it had at start.
    ///
    /// On error nothing more is committed: the lake holds whatever the last commit made
    /// consistent, and the next run resumes from it.
    pub async fn run(
        mut self,
        mode: Mode,
        shutdown: CancellationToken,
    ) -> Result<RunSummary, LakeError> {
        let mut result = self.run_loop(mode, &shutdown).await;
        if let Some(pass) = self.maintenance.take() {
            pass.abort();
        }
        // A commit still in flight (the loop failed elsewhere) finishes before the lock goes:
        // the next holder must find the tables as this session left them.
        if let Err(error) = self.settle().await
            && result.is_ok()
        {
            result = Err(error);
        }
        let Some(committer) = self.committer.as_mut() else {
            return result;
        };
        committer
            .lineage
            .stopped(
                result
                    .as_ref()
                    .err()
                    .map(|e| tributary_lineage::facets::ErrorMessageRunFacet::from_error(e)),
            )
            .await;
        if let Some(lock) = committer.lock.take() {
            lock.release().await;
        }
        match &result {
            Ok(summary) => tracing::info!(?summary, "lander stopped"),
            Err(error) => {
                tracing::error!(%error, retryable = error.is_retryable(), "lander failed")
            }
        }
        result
    }

    async fn run_loop(
        &mut self,
        mode: Mode,
        shutdown: &CancellationToken,
    ) -> Result<RunSummary, LakeError> {
        self.discover().await?;
        let targets = match mode {
            Mode::Drain => Some(self.drain_targets().await?),
            Mode::Follow => None,
        };
        let commit_interval = Duration::from_millis(self.config.commit_interval_ms);
        let mut discovery =
            tokio::time::interval(Duration::from_millis(self.config.discovery_interval_ms));
        discovery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        discovery.tick().await;
        let maintenance_every = Duration::from_secs(self.config.maintenance.interval_s);
        let mut maintenance =
            tokio::time::interval_at(Instant::now() + maintenance_every, maintenance_every);
        maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_record = Instant::now();
        // Since when partition discovery has failed without a success in between.
        let mut unreachable_since: Option<Instant> = None;
        loop {
            if let Some(targets) = &targets {
                if self.drained(targets) {
                    tracing::info!("drained: every partition reached its high watermark");
                    break;
                }
                if last_record.elapsed() >= DRAIN_IDLE {
                    tracing::warn!(idle = ?DRAIN_IDLE, "drain mode saw no record for a while, stopping short of the watermarks");
                    self.summary.stopped_short = true;
                    break;
                }
            }
            // A maintenance run ready to commit goes first whenever no commit is in flight, also
            // when full batches follow one another (catching up) and the select below is never
            // reached between two commits.
            if self.in_flight.is_none()
                && let Some(pass) = self.maintenance.as_mut()
            {
                match pass.requests.try_recv() {
                    Ok(request) => {
                        self.apply_maintenance(request).await?;
                        continue;
                    }
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                        self.maintenance = None;
                    }
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {}
                }
            }
            if self.buffer.len() >= self.config.batch_max_rows {
                self.flush().await?;
                continue;
            }
            let deadline = self.first_at.map(|t| t + commit_interval);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    tracing::info!("shutdown requested: committing what was consumed");
                    break;
                }
                // A maintenance run ready to commit goes first when no commit is in flight:
                // it is quick, and the run waits for it.
                request = async { self.maintenance.as_mut().expect("guarded by is_some").requests.recv().await },
                    if self.maintenance.is_some() && self.in_flight.is_none() => match request {
                    Some(request) => self.apply_maintenance(request).await?,
                    None => self.maintenance = None,
                },
                // While a commit is in flight the loop goes on consuming past the deadline (a
                // flush would wait for that commit with the consumer idle); the batch is handed
                // over as soon as the commit is back.
                _ = sleep_until(deadline), if self.in_flight.is_none() => self.flush().await?,
                done = async { self.in_flight.as_mut().expect("guarded by is_some").await }, if self.in_flight.is_some() => {
                    self.in_flight = None;
                    self.took_back(done)?;
                }
                _ = maintenance.tick(), if self.maintainer.is_some() => self.start_maintenance(),
                _ = discovery.tick() => {
                    if mode == Mode::Follow {
                        match self.discover().await {
                            Ok(()) => unreachable_since = None,
                            Err(error) => tolerate_discovery_failure(error, &mut unreachable_since)?,
                        }
                    }
                }
                record = self.source.recv() => match record {
                    Ok(record) => {
                        last_record = Instant::now();
                        self.ingest(record);
                        self.take_ready()?;
                    }
                    Err(error) if error.is_retryable() => {
                        tracing::warn!(%error, "consume failed, retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(error) => return Err(error),
                },
            }
        }
        self.flush().await?;
        self.settle().await?;
        Ok(self.summary.clone())
    }

    /// Starts a maintenance pass beside the loop, unless the last one is still running.
    fn start_maintenance(&mut self) {
        let Some(maintainer) = &self.maintainer else {
            return;
        };
        if self.maintenance.is_some() {
            tracing::info!("maintenance pass still running: this interval's pass is skipped");
            return;
        }
        self.maintenance = Some(Pass::start(
            maintainer.clone(),
            self.lineage.clone(),
            self.metrics.clone(),
        ));
    }

    /// Commits a maintenance run the pass prepared, between two commits, and answers the pass
    /// with the table it left. A failed run is the pass's to report, and landing goes on; only a
    /// conflict (another writer moved a table) stops the lander, as a fenced commit would.
    async fn apply_maintenance(&mut self, request: ApplyRequest) -> Result<(), LakeError> {
        let ApplyRequest {
            mut prepared,
            reply,
        } = request;
        let committer = self
            .committer
            .as_mut()
            .expect("no commit in flight: the committer is here");
        if let Some(lock) = committer.lock.as_mut() {
            lock.check().await?;
        }
        let maintainer = self
            .maintainer
            .as_ref()
            .expect("a pass runs with a maintainer");
        let sink = committer
            .sinks
            .get_mut(&prepared.kind())
            .expect("a sink per raw table");
        let result = sink.apply_maintenance(maintainer, &mut prepared).await;
        let at = chrono::Utc::now();
        match result {
            Ok(table) => {
                let _ = reply.send(Ok((prepared, table, at)));
                Ok(())
            }
            Err(LakeError::MaintenanceConflict { table, expected }) => {
                let _ = reply.send(Err(LakeError::MaintenanceConflict {
                    table: table.clone(),
                    expected: expected.clone(),
                }));
                Err(LakeError::MaintenanceConflict { table, expected })
            }
            Err(error) => {
                let _ = reply.send(Err(error));
                Ok(())
            }
        }
    }

    /// Assigns partitions of the configured topics that are not assigned yet, each at the
    /// offset its change table stored.
    async fn discover(&mut self) -> Result<(), LakeError> {
        let topics: Vec<String> = self.routes.keys().cloned().collect();
        let found = self.source.partitions(&topics).await?;
        let mut new = Vec::new();
        for tp in found {
            if self.assigned.contains_key(&tp) {
                continue;
            }
            let route = self.routes[&tp.topic];
            let table = route.landed_in();
            let start = resume_offset(&self.committed[&table], &tp);
            if let StartOffset::At(next) = start {
                self.progress.advance(&tp, next);
            }
            tracing::info!(partition = %tp, %table, ?start, "assigning partition");
            new.push((tp, start));
        }
        if new.is_empty() {
            return Ok(());
        }
        self.source.assign(&new)?;
        {
            let mut landed = self.landed.lock().expect("landed offsets lock");
            for (tp, start) in &new {
                let next = match start {
                    StartOffset::At(next) => *next,
                    StartOffset::Beginning => 0,
                };
                landed.advance(tp, next);
            }
        }
        self.assigned.extend(new);
        Ok(())
    }

    async fn drain_targets(&self) -> Result<BTreeMap<TopicPartition, (i64, i64)>, LakeError> {
        let mut targets = BTreeMap::new();
        for tp in self.assigned.keys() {
            targets.insert(tp.clone(), self.source.watermarks(tp).await?);
        }
        tracing::info!(
            partitions = targets.len(),
            "draining up to the current high watermarks"
        );
        Ok(targets)
    }

    fn drained(&self, targets: &BTreeMap<TopicPartition, (i64, i64)>) -> bool {
        targets.iter().all(|(tp, (low, high))| {
            let landed = self.progress.get(tp).unwrap_or(*low);
            // Past the last record, a partition written in transactions ends with a commit
            // marker: only the consumer's position shows it was passed. Nothing is buffered
            // beyond `landed`, so this never skips a record.
            let position = self.source.position(tp).map_or(landed, |p| p.max(landed));
            position >= *high
        })
    }

    /// Ingests the records already waiting in the consumer, up to the commit size, without a
    /// trip through `select!` each: its timers and polls cost more than a record does (see
    /// bench/README.md). `recv` is cancel-safe, so a receive that is not ready is just dropped.
    fn take_ready(&mut self) -> Result<(), LakeError> {
        while self.buffer.len() < self.config.batch_max_rows {
            match self.source.recv().now_or_never() {
                Some(Ok(record)) => self.ingest(record),
                Some(Err(error)) if error.is_retryable() => {
                    tracing::warn!(%error, "consume failed, retrying");
                    return Ok(());
                }
                Some(Err(error)) => return Err(error),
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// Decodes one record into the buffer (or counts it as a tombstone or a replayed record).
    fn ingest(&mut self, record: Record) {
        let tp = TopicPartition::new(record.topic.clone(), record.partition);
        let Some(&route) = self.routes.get(&record.topic) else {
            tracing::warn!(partition = %tp, "record from a topic that feeds no table, ignored");
            return;
        };
        if self
            .progress
            .get(&tp)
            .is_some_and(|next| record.offset < next)
        {
            // Already consumed in this run (a redelivery): buffering it again would duplicate it.
            tracing::warn!(partition = %tp, offset = record.offset, "record delivered twice, ignored");
            return;
        }
        self.progress.advance(&tp, record.offset + 1);
        self.buffer.touched.insert(tp.clone());
        self.first_at.get_or_insert_with(Instant::now);
        let provenance = Provenance {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            ingest_time_micros: chrono::Utc::now().timestamp_micros(),
            trace_id: record.trace.as_ref().and_then(TraceHeaders::trace_id),
        };
        let table = route.data_table();
        let decoded = match route {
            Route::Rejects(_) => {
                let (reason, kind) = decode_rejected(record.value.as_deref());
                self.count(route, &tp, record.offset, Fate::DeadLettered);
                self.dead_letter(table, &tp, &record, &provenance, &reason, &kind);
                return;
            }
            Route::Data(RawTable::FileSale) => {
                decode_sale_event(SaleSource::Files, record.value.as_deref())
            }
            Route::Data(RawTable::ErpSale) => {
                decode_sale_event(SaleSource::Erp, record.value.as_deref())
            }
            Route::Data(table) => decode(table, record.value.as_deref()),
        };
        let row = match decoded {
            Ok(Decoded::Tombstone) => {
                self.count(route, &tp, record.offset, Fate::Tombstone);
                self.metrics.events(table, Outcome::Tombstone, 1);
                self.summary.tombstones += 1;
                return;
            }
            Ok(Decoded::Change(event)) => change_row(event, &provenance),
            Ok(Decoded::Event(cells)) => event_row(cells, &provenance),
            Err(error) => {
                tracing::debug!(partition = %tp, offset = record.offset, kind = error.kind.as_str(), reason = %error.reason, "dead letter");
                self.count(route, &tp, record.offset, Fate::DeadLettered);
                self.dead_letter(
                    table,
                    &tp,
                    &record,
                    &provenance,
                    &error.reason,
                    error.kind.as_str(),
                );
                return;
            }
        };
        self.count(route, &tp, record.offset, Fate::Landed);
        if should_land(&self.committed[&table], &tp, record.offset) {
            self.buffer.rows.entry(table).or_default().push(row);
            note_upstream(&mut self.buffer.upstream, table, &record);
        } else {
            self.skipped(table);
        }
    }

    /// Counts the fate of the record at `offset` of `tp` in the ledger of the table owning the
    /// partition, unless that table already counted it (a replay after a restart).
    fn count(&mut self, route: Route, tp: &TopicPartition, offset: i64, fate: Fate) {
        let owner = route.landed_in();
        if should_land(&self.committed[&owner], tp, offset) {
            self.buffer
                .counted
                .entry(owner)
                .or_default()
                .count(tp, offset, fate);
        }
    }

    /// Buffers a `dead_letters` row for `record`, which was meant for `table`.
    fn dead_letter(
        &mut self,
        table: RawTable,
        tp: &TopicPartition,
        record: &Record,
        provenance: &Provenance,
        reason: &str,
        kind: &str,
    ) {
        if should_land(&self.committed[&RawTable::DeadLetters], tp, record.offset) {
            self.buffer.dead.push(dead_letter_row(
                provenance,
                record.key.as_deref(),
                record.value.as_deref(),
                reason,
                kind,
            ));
            *self.buffer.dead_by_table.entry(table).or_default() += 1;
            note_upstream(&mut self.buffer.upstream, RawTable::DeadLetters, record);
        } else {
            self.skipped(table);
        }
    }

    fn skipped(&mut self, table: RawTable) {
        self.metrics.events(table, Outcome::SkippedReplay, 1);
        self.summary.skipped_replay += 1;
    }

    /// Hands the buffer to the committer and returns: consuming goes on while it commits
    /// ([`crate::committer`]). The commit in flight, if any, finishes first: one writer, commits
    /// in order, at most one batch committing and one filling.
    async fn flush(&mut self) -> Result<(), LakeError> {
        if self.buffer.touched.is_empty() {
            return Ok(());
        }
        self.settle().await?;
        let mut committer = self
            .committer
            .take()
            .expect("settled: the committer is back");
        let batch = std::mem::take(&mut self.buffer);
        self.first_at = None;
        let progress = self.progress.clone();
        self.in_flight = Some(tokio::spawn(async move {
            let result = committer.commit(batch, progress).await;
            (committer, result)
        }));
        Ok(())
    }

    /// Commits the buffer and waits for it (and for the commit before it).
    #[cfg(test)]
    async fn commit_now(&mut self) -> Result<(), LakeError> {
        self.flush().await?;
        self.settle().await
    }

    /// Waits for the commit in flight, if any, and takes in what it did.
    async fn settle(&mut self) -> Result<(), LakeError> {
        match self.in_flight.take() {
            Some(commit) => {
                let done = commit.await;
                self.took_back(done)
            }
            None => Ok(()),
        }
    }

    /// Takes the committer back from a finished commit and what it stored: the offsets that
    /// tell replays apart, the landed offsets (lag gauge, the consumer group's progress), the
    /// run's summary.
    fn took_back(
        &mut self,
        done: Result<(Committer, Result<Committed, LakeError>), tokio::task::JoinError>,
    ) -> Result<(), LakeError> {
        let (committer, result) = match done {
            Ok(done) => done,
            // A panic in the commit is the lander's panic (and a crash point's abort never
            // returns here).
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        };
        self.committer = Some(committer);
        let committed = result?;
        self.summary.commits += committed.commits;
        self.summary.landed += committed.landed;
        self.summary.dead_letters += committed.dead_letters;
        self.committed = committed.offsets;
        self.source.report_progress(&committed.progress);
        *self.landed.lock().expect("landed offsets lock") = committed.progress;
        Ok(())
    }
}

/// Most producer trace contexts one commit links to; beyond it the commit still lands, with
/// fewer links (a trace backend caps links per span anyway).
pub const MAX_UPSTREAM_TRACES: usize = 64;

fn note_upstream(
    upstream: &mut BTreeMap<RawTable, BTreeSet<TraceHeaders>>,
    table: RawTable,
    record: &Record,
) {
    if let Some(trace) = &record.trace {
        let traces = upstream.entry(table).or_default();
        if traces.len() < MAX_UPSTREAM_TRACES {
            traces.insert(trace.clone());
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray, RecordBatch};
    use arrow::datatypes::{Decimal128Type, Int64Type};

    use super::*;
    use crate::sink::tests::memory_catalog;
    use crate::source::MemorySource;
    use tributary_raw::catalog::{load_table, read_table, snapshot_ledger, snapshot_offsets};
    use tributary_raw::ledger::PartitionLedger;
    use tributary_raw::schema::col;

    const SALE: &str = "salesdb.public.sale";
    const CITY: &str = "salesdb.public.city";

    fn config(batch_max_rows: usize, commit_interval_ms: u64) -> LanderConfig {
        LanderConfig {
            batch_max_rows,
            commit_interval_ms,
            discovery_interval_ms: 20,
            ..LanderConfig::default()
        }
    }

    async fn lander(
        catalog: &Arc<dyn Catalog>,
        source: MemorySource,
        batch_max_rows: usize,
    ) -> Lander<MemorySource> {
        lander_with(catalog, source, config(batch_max_rows, 50)).await
    }

    async fn lander_with(
        catalog: &Arc<dyn Catalog>,
        source: MemorySource,
        config: LanderConfig,
    ) -> Lander<MemorySource> {
        Lander::open(
            config,
            source,
            catalog.clone(),
            WriterLock::none("raw"),
            Metrics::new().unwrap(),
        )
        .await
        .unwrap()
    }

    fn sale(id: i64, amount: &str) -> String {
        format!(
            r#"{{"before":null,"after":{{"id":{id},"salesman_id":1,"city_id":2,"amount":"{amount}","sold_at":"2026-03-01T10:00:00.000000Z","updated_at":"2026-03-01T10:00:00Z"}},"source":{{"lsn":{lsn},"ts_ms":1772359200000,"txId":5}},"op":"c","ts_ms":1772359200001}}"#,
            lsn = 1000 + id
        )
    }

    fn produce_sales(source: &MemorySource, ids: std::ops::Range<i64>) {
        for id in ids {
            let key = format!(r#"{{"id":{id}}}"#);
            source.produce(
                SALE,
                0,
                Some(key.as_bytes()),
                Some(sale(id, "10.50").as_bytes()),
            );
        }
    }

    async fn batches(catalog: &Arc<dyn Catalog>, table: RawTable) -> Vec<RecordBatch> {
        let table = load_table(catalog.as_ref(), "raw", table).await.unwrap();
        read_table(&table, None).await.unwrap()
    }

    async fn ledger(catalog: &Arc<dyn Catalog>, table: RawTable, topic: &str) -> PartitionLedger {
        let table = load_table(catalog.as_ref(), "raw", table).await.unwrap();
        *snapshot_ledger(&table)
            .unwrap()
            .get(&TopicPartition::new(topic, 0))
            .expect("the partition has a ledger")
    }

    fn longs(batches: &[RecordBatch], column: &str) -> Vec<i64> {
        let mut out: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                b.column_by_name(column)
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        out.sort();
        out
    }

    #[tokio::test]
    async fn drains_every_record_exactly_once_with_dead_letters_and_tombstones() {
        let catalog = memory_catalog().await;
        let source = MemorySource::new();
        produce_sales(&source, 0..5);
        source.produce(SALE, 0, Some(b"{\"id\":5}"), Some(b"not json"));
        source.produce(SALE, 0, Some(b"{\"id\":6}"), None);
        source.produce(
            SALE,
            0,
            Some(b"{\"id\":7}"),
            Some(sale(7, "12x").as_bytes()),
        );
        produce_sales(&source, 8..10);
        source.produce(
            CITY,
            0,
            None,
            Some(br#"{"after":{"id":1,"name":"Campinas","state":"SP"},"source":{"lsn":1,"ts_ms":1},"op":"r"}"#),
        );

        let summary = lander(&catalog, source.clone(), 3)
            .await
            .run(Mode::Drain, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(summary.landed, 8);
        assert_eq!(summary.dead_letters, 2);
        assert_eq!(summary.tombstones, 1);

        let sales = batches(&catalog, RawTable::PgSale).await;
        assert_eq!(longs(&sales, col::KAFKA_OFFSET), vec![0, 1, 2, 3, 4, 8, 9]);
        let amount = sales[0].column_by_name(col::AMOUNT).unwrap();
        assert_eq!(
            amount.as_primitive::<Decimal128Type>().value_as_string(0),
            "10.50"
        );

        let dead = batches(&catalog, RawTable::DeadLetters).await;
        assert_eq!(longs(&dead, col::KAFKA_OFFSET), vec![5, 7]);
        let kinds: BTreeSet<String> = dead
            .iter()
            .flat_map(|b| {
                let a = b
                    .column_by_name(col::ERROR_KIND)
                    .unwrap()
                    .as_string::<i32>()
                    .clone();
                (0..a.len()).map(move |i| a.value(i).to_string())
            })
            .collect();
        assert_eq!(
            kinds,
            BTreeSet::from(["bad_decimal".to_string(), "invalid_json".to_string()])
        );

        let table = load_table(catalog.as_ref(), "raw", RawTable::PgSale)
            .await
            .unwrap();
        assert_eq!(
            snapshot_offsets(&table).unwrap().encode(),
            format!(r#"{{"{SALE}/0":10}}"#)
        );
        let table = load_table(catalog.as_ref(), "raw", RawTable::PgCity)
            .await
            .unwrap();
        assert_eq!(
            snapshot_offsets(&table).unwrap().encode(),
            format!(r#"{{"{CITY}/0":1}}"#)
        );
        assert_eq!(
            ledger(&catalog, RawTable::PgCity, CITY).await,
            PartitionLedger {
                first_offset: 0,
                records: 1,
                landed: 1,
                dead_lettered: 0,
                tombstones: 0
            }
        );
        let sale_ledger = ledger(&catalog, RawTable::PgSale, SALE).await;
        assert_eq!(
            sale_ledger,
            PartitionLedger {
                first_offset: 0,
                records: 10,
                landed: 7,
                dead_lettered: 2,
                tombstones: 1
            }
        );
        let coverage = sale_ledger.verify(
            10,
            &longs(&sales, col::KAFKA_OFFSET),
            &longs(&dead, col::KAFKA_OFFSET),
        );
        assert!(coverage.balanced, "{coverage:?}");
    }

    #[tokio::test]
    async fn restart_resumes_from_the_lake_not_from_the_source() {
        let catalog = memory_catalog().await;
        let source = MemorySource::new();
        produce_sales(&source, 0..4);
        lander(&catalog, source.clone(), 100)
            .await
            .run(Mode::Drain, CancellationToken::new())
            .await
            .unwrap();
        produce_sales(&source, 4..7);
        // A new consumer with no position of its own: everything it skips, it skips because of
        // the snapshot summary.
        let summary = lander(&catalog, source.reopen(), 100)
            .await
            .run(Mode::Drain, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(summary.landed, 3);
        assert_eq!(
            summary.skipped_replay, 0,
            "resumed at offset 4, nothing re-read"
        );
        let sales = batches(&catalog, RawTable::PgSale).await;
        assert_eq!(longs(&sales, col::KAFKA_OFFSET), (0..7).collect::<Vec<_>>());
        let sale_ledger = ledger(&catalog, RawTable::PgSale, SALE).await;
        assert_eq!(
            (sale_ledger.records, sale_ledger.landed),
            (7, 7),
            "counted across both runs"
        );
    }

    #[tokio::test]
    async fn crash_after_the_dead_letter_commit_neither_loses_nor_duplicates() {
        let catalog = memory_catalog().await;
        let source = MemorySource::new();
        produce_sales(&source, 0..3);
        source.produce(SALE, 0, None, Some(b"garbage"));
        produce_sales(&source, 4..6);

        // Simulate the crash: commit only dead_letters for offsets 0..6, as a flush would have
        // before dying.
        {
            let mut l = lander(&catalog, source.clone(), 100).await;
            l.discover().await.unwrap();
            for _ in 0..6 {
                let record = l.source.recv().await.unwrap();
                l.ingest(record);
            }
            let dead = std::mem::take(&mut l.buffer.dead);
            let progress = l.progress.clone();
            l.committer
                .as_mut()
                .unwrap()
                .sinks
                .get_mut(&RawTable::DeadLetters)
                .unwrap()
                .commit(&dead, &progress)
                .await
                .unwrap();
        }

        let summary = lander(&catalog, source.reopen(), 100)
            .await
            .run(Mode::Drain, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(summary.landed, 5);
        assert_eq!(summary.dead_letters, 0);
        assert_eq!(
            summary.skipped_replay, 1,
            "the bad record is already in dead_letters"
        );
        assert_eq!(
            longs(
                &batches(&catalog, RawTable::PgSale).await,
                col::KAFKA_OFFSET
            ),
            vec![0, 1, 2, 4, 5]
        );
        assert_eq!(
            longs(
                &batches(&catalog, RawTable::DeadLetters).await,
                col::KAFKA_OFFSET
            ),
            vec![3]
        );
        let sale_ledger = ledger(&catalog, RawTable::PgSale, SALE).await;
        assert_eq!(
            (
                sale_ledger.records,
                sale_ledger.landed,
                sale_ledger.dead_lettered
            ),
            (6, 5, 1),
            "the replayed bad record is counted once, by the table that had not counted it"
        );
        assert!(
            sale_ledger
                .verify(
                    6,
                    &longs(
                        &batches(&catalog, RawTable::PgSale).await,
                        col::KAFKA_OFFSET
                    ),
                    &[3]
                )
                .balanced
        );
    }

    #[tokio::test]
    async fn follow_mode_finds_new_topics_and_commits_on_interval() {
        let catalog = memory_catalog().await;
        let source = MemorySource::new();
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(
            lander(&catalog, source.clone(), 1_000)
                .await
                .run(Mode::Follow, shutdown.clone()),
        );
        // The topic appears after start: discovery picks it up.
        tokio::time::sleep(Duration::from_millis(50)).await;
        produce_sales(&source, 0..3);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let landed = longs(
                &batches(&catalog, RawTable::PgSale).await,
                col::KAFKA_OFFSET,
            );
            if landed.len() == 3 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "interval commit did not happen: {landed:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        assert_eq!(running.await.unwrap().unwrap().landed, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_whose_kafka_client_stays_unreachable_ends_retryably() {
        let catalog = memory_catalog().await;
        let source = MemorySource::new();
        produce_sales(&source, 0..3);
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(
            lander(&catalog, source.clone(), 1_000)
                .await
                .run(Mode::Follow, shutdown.clone()),
        );
        while batches(&catalog, RawTable::PgSale).await.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Unreachable for a while, then one answer: the count starts again.
        source.set_unreachable(true);
        tokio::time::sleep(KAFKA_UNREACHABLE_LIMIT / 2).await;
        source.set_unreachable(false);
        tokio::time::sleep(Duration::from_secs(1)).await;
        source.set_unreachable(true);
        tokio::time::sleep(KAFKA_UNREACHABLE_LIMIT / 2 + Duration::from_secs(5)).await;
        assert!(
            !running.is_finished(),
            "unreachable for less than the limit since the last answer"
        );
        let error = running.await.unwrap().unwrap_err();
        assert!(
            matches!(error, LakeError::Kafka { .. }) && error.is_retryable(),
            "{error}"
        );
    }

    #[tokio::test]
    async fn shutdown_commits_what_was_consumed() {
        let catalog = memory_catalog().await;
        let source = MemorySource::new();
        produce_sales(&source, 0..5);
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(
            lander_with(&catalog, source.clone(), config(1_000, 600_000))
                .await
                .run(Mode::Follow, shutdown.clone()),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            batches(&catalog, RawTable::PgSale).await.is_empty(),
            "nothing due yet"
        );
        shutdown.cancel();
        assert_eq!(running.await.unwrap().unwrap().landed, 5);
        assert_eq!(
            longs(
                &batches(&catalog, RawTable::PgSale).await,
                col::KAFKA_OFFSET
            ),
            (0..5).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn commits_on_size() {
        let catalog = memory_catalog().await;
        let source = MemorySource::new();
        produce_sales(&source, 0..10);
        let summary = lander_with(&catalog, source, config(4, 600_000))
            .await
            .run(Mode::Drain, CancellationToken::new())
            .await
            .unwrap();
        // 4 + 4 + 2 rows: three commits of pg_sale.
        assert_eq!(summary.commits, 3);
        assert_eq!(summary.landed, 10);
    }

    #[tokio::test]
    async fn lands_file_events_and_the_ingestors_rejections() {
        let catalog = memory_catalog().await;
        let source = MemorySource::new();
        let event = r#"{"source":"files","origin":"acme","sale_id":"A-1","op":"upsert","version":{"major":3,"minor":0},"salesman_code":"S001","city_name":"Campinas","city_state":"SP","amount":"10.50","sold_at":"2026-03-01T10:00:00Z","produced_at":"2026-03-02T00:00:00Z","provenance":{"object_url":"file:///inbox/acme/a.csv","record":1}}"#;
        source.produce(
            "raw.files.sales",
            0,
            Some(b"files/acme/A-1"),
            Some(event.as_bytes()),
        );
        let wrong_source = event.replace(r#""source":"files""#, r#""source":"erp""#);
        source.produce(
            "raw.files.sales",
            0,
            Some(b"erp/x/1"),
            Some(wrong_source.as_bytes()),
        );
        let rejected = r#"{"source":"files","origin":"acme","error_kind":"bad_amount","reason":"column \"valor\": \"-3\" is negative","raw":"A-2;-3","produced_at":"2026-03-02T00:00:00Z","provenance":{"record":2}}"#;
        source.produce("raw.files.dead_letters", 0, None, Some(rejected.as_bytes()));

        let summary = lander(&catalog, source, 100)
            .await
            .run(Mode::Drain, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!((summary.landed, summary.dead_letters), (1, 2));

        let sales = batches(&catalog, RawTable::FileSale).await;
        let sale_id = sales[0]
            .column_by_name(col::SALE_ID)
            .unwrap()
            .as_string::<i32>();
        assert_eq!(sale_id.value(0), "A-1");
        let amount = sales[0].column_by_name(col::AMOUNT).unwrap();
        assert_eq!(
            amount.as_primitive::<Decimal128Type>().value_as_string(0),
            "10.50"
        );
        assert_eq!(longs(&sales, col::VERSION_MAJOR), vec![3]);

        let dead = batches(&catalog, RawTable::DeadLetters).await;
        let reasons: BTreeSet<String> = dead
            .iter()
            .flat_map(|b| {
                let a = b
                    .column_by_name(col::REASON)
                    .unwrap()
                    .as_string::<i32>()
                    .clone();
                (0..a.len()).map(move |i| a.value(i).to_string())
            })
            .collect();
        assert!(
            reasons.iter().any(|r| r.contains("is negative")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|r| r.contains("source \"erp\"")),
            "{reasons:?}"
        );
    }

    #[tokio::test]
    async fn lag_is_what_the_partition_has_beyond_the_lake() {
        let catalog = memory_catalog().await;
        let source = MemorySource::new();
        produce_sales(&source, 0..5);
        let mut l = lander(&catalog, source.clone(), 3).await;
        l.discover().await.unwrap();
        let metrics = Metrics::new().unwrap();
        let landed = l.landed().lock().unwrap().clone();
        report_lag(&source, &landed, &metrics).await;
        assert_eq!(metrics.lag_value(SALE, 0), 5);
        for _ in 0..3 {
            let record = l.source.recv().await.unwrap();
            l.ingest(record);
        }
        l.commit_now().await.unwrap();
        let landed = l.landed().lock().unwrap().clone();
        report_lag(&source, &landed, &metrics).await;
        assert_eq!(metrics.lag_value(SALE, 0), 2, "three landed, two to go");
    }

    /// What `lake/tests/bad-inputs/debezium/expectations.toml` says of one record.
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ExpectedRecord {
        file: String,
        fate: String,
        #[serde(default)]
        kind: String,
        #[serde(default)]
        reason: String,
        #[allow(dead_code)]
        why: String,
    }

    #[derive(Debug, serde::Deserialize)]
    struct EnvelopeCorpus {
        record: Vec<ExpectedRecord>,
    }

    /// The committed corpus of bad Debezium change events (`lake/tests/bad-inputs/debezium/`),
    /// produced in a row with a good change after them: each is a dead letter of its kind and
    /// reason (or, where said, lands), counted as such in the ledger, and the good change
    /// lands.
    #[tokio::test]
    async fn every_committed_bad_envelope_is_dead_lettered_with_its_reason_and_holds_up_nothing() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-inputs/debezium");
        let corpus: EnvelopeCorpus = tributary_common::corpus::load(&dir, |c: &EnvelopeCorpus| {
            c.record.iter().map(|r| r.file.clone()).collect()
        });

        let catalog = memory_catalog().await;
        let source = MemorySource::new();
        for record in &corpus.record {
            let bytes = std::fs::read(dir.join(&record.file)).unwrap();
            source.produce(SALE, 0, Some(b"{\"id\":900}"), Some(&bytes));
        }
        let good = corpus.record.len() as i64;
        source.produce(SALE, 0, None, Some(sale(good, "1.00").as_bytes()));
        lander(&catalog, source, 100)
            .await
            .run(Mode::Drain, CancellationToken::new())
            .await
            .unwrap();

        let dead = batches(&catalog, RawTable::DeadLetters).await;
        let mut letters = BTreeMap::new();
        for b in &dead {
            let offsets = b
                .column_by_name(col::KAFKA_OFFSET)
                .unwrap()
                .as_primitive::<Int64Type>();
            let kinds = b
                .column_by_name(col::ERROR_KIND)
                .unwrap()
                .as_string::<i32>();
            let reasons = b.column_by_name(col::REASON).unwrap().as_string::<i32>();
            for i in 0..b.num_rows() {
                letters.insert(
                    offsets.value(i),
                    (kinds.value(i).to_string(), reasons.value(i).to_string()),
                );
            }
        }
        let sales = batches(&catalog, RawTable::PgSale).await;
        let landed = longs(&sales, col::KAFKA_OFFSET);
        let mut problems = Vec::new();
        for (offset, record) in corpus.record.iter().enumerate() {
            let offset = offset as i64;
            let got = match (letters.get(&offset), landed.contains(&offset)) {
                (Some((kind, reason)), false) => format!("dead_letter {kind}: {reason}"),
                (None, true) => "landed".to_string(),
                other => format!("{other:?}"),
            };
            let ok = match record.fate.as_str() {
                "dead_letter" => {
                    letters.get(&offset).is_some_and(|(kind, reason)| {
                        *kind == record.kind && reason.contains(&record.reason)
                    }) && !landed.contains(&offset)
                }
                "landed" => landed.contains(&offset) && !letters.contains_key(&offset),
                other => panic!("{}: unknown fate {other:?}", record.file),
            };
            if !ok {
                problems.push(format!(
                    "{}: expected {} {} {:?}; got {got}",
                    record.file, record.fate, record.kind, record.reason
                ));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        assert!(landed.contains(&good), "the good change after them lands");
        let ledger = ledger(&catalog, RawTable::PgSale, SALE).await;
        let dead_count = corpus
            .record
            .iter()
            .filter(|r| r.fate == "dead_letter")
            .count() as u64;
        assert_eq!(
            (ledger.records, ledger.dead_lettered, ledger.landed),
            (good as u64 + 1, dead_count, good as u64 + 1 - dead_count),
            "the ledger counts each"
        );
    }
}
