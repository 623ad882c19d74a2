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
pub(crate) mod tests;
