//! One marts run, and the schedule that repeats it.
//!
//! A run pins the raw tables at their current snapshots, derives the publication id from them,
//! and — unless that publication is already the latest one — folds what the lake gained since
//! the previous run into the kept state (`fold`, `state`), then ranks and publishes from it.
//! The cost of a run follows the events it reads, not the history: it reads only the data files
//! added since the snapshots the state stopped at (`tributary_raw::incremental::read_added`), and the kept sales it
//! looks up are only those the new events (or a changed natural key) touch.
//!
//! `--rebuild` forgets the state and folds the whole lake again; it must publish exactly what
//! the incremental runs did. Time travel ([`compute_as_of`]) does not use the state: it computes
//! from the lake in SQL (`current_state`), which is also the reference the tests hold the
//! incremental arithmetic to.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;
use iceberg::Catalog;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::behind::{Behind, TakenBehind, pin_state};
use crate::current_state;
use crate::error::MartsError;
use crate::events;
use crate::fold::{SaleEvent, SaleKey, SaleRecord};
use crate::lake;
use crate::lineage::{MartsLineage, MartsRun, table_reads};
use crate::state::{Checkpoint, StateStore};
use tributary_common::names;
use tributary_rankings::publication::{LakeSnapshot, LakeSnapshots, Publication, SourceWatermark};
use tributary_rankings::ranking::{self, PeriodRankings};
use tributary_rankings::schema::{MartRunRow, RunStatus};
use tributary_rankings::store::PublicationWriter;
use tributary_raw::AsOf;
use tributary_raw::snapshots::RAW_TABLES;

/// Lander commits a run span links to, per table (the newest ones).
const MAX_SPAN_LINKS: usize = 64;

/// The events one run reads at most, by default ([`MartsJob::with_max_events_per_run`]).
pub const DEFAULT_MAX_EVENTS_PER_RUN: u64 = 500_000;

/// Where "now" comes from, so tests can fix it.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// Rankings were computed and published.
    Published {
        /// The publication written.
        publication_id: String,
        /// The run that wrote it.
        run_id: String,
        /// Cities ranked.
        cities: usize,
        /// Salesmen ranked nationwide.
        salesmen: usize,
        /// Months ranked (those with at least one current sale).
        months: usize,
        /// Current sales counted.
        sales: u64,
        /// Sales whose salesman or city is not in the lake yet.
        unresolved_sales: u64,
        /// Ranking rows written (the periods published, not those carried).
        rows_out: u64,
        /// Of those, the rows whose totals the run moved, when it published on top of the latest
        /// publication (`None`: a first run, a rebuild, `--force`, the master data moved).
        rows_changed: Option<u64>,
        /// Where the run's time went.
        timings: RunTimings,
        /// Whether the run reached the snapshots current when it started; `false` when it
        /// stopped at its bound on events ([`MartsJob::with_max_events_per_run`]) and the next
        /// run should start at once.
        caught_up: bool,
    },
    /// The lake has not changed since the latest publication; nothing was written.
    Unchanged {
        /// The latest publication, still current.
        publication_id: String,
    },
}

/// Where a published run's time went, in seconds (logged, and reported by the benchmark).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunTimings {
    /// Loading the raw tables from the catalog: a table that committed since the last run is read
    /// and parsed again, and its metadata grows with the snapshots it keeps (`docs/lake.md`).
    pub load: f64,
    /// Reading the data files the lake gained.
    pub read: f64,
    /// Folding them into the kept state (lookups of the sales they touch included).
    pub fold: f64,
    /// Committing the state: waiting for earlier runs' commits to land (a scheduled run waits
    /// only when its queue is full), and this run's own unless it commits behind
    /// ([`MartsJob::run_scheduled`]).
    pub commit: f64,
    /// The earlier runs' state commits that landed during this run, their own seconds (they ran
    /// beside it; 0 when none landed).
    pub commit_behind: f64,
    /// Totalling the cells per period and ranking them.
    pub rank: f64,
    /// Writing the publication to the store.
    pub publish: f64,
}

/// What a run has learnt so far, for its `mart_runs` row (kept when it fails half-way).
#[derive(Debug, Default)]
struct RunProgress {
    snapshots: Option<LakeSnapshots>,
    rows_in: u64,
    rows_out: u64,
    /// Per source, the newest event the published rankings count.
    newest: Option<std::collections::BTreeMap<String, DateTime<Utc>>>,
    /// Rows read per raw table, and written per ranking table (lineage statistics).
    rows_read: std::collections::BTreeMap<String, u64>,
    rows_written: std::collections::BTreeMap<String, u64>,
}

/// Seconds between laps.
struct Stopwatch(std::time::Instant);

impl Stopwatch {
    fn start() -> Self {
        Self(std::time::Instant::now())
    }

    /// Seconds since the start or the previous lap.
    fn lap(&mut self) -> f64 {
        let now = std::time::Instant::now();
        let secs = (now - self.0).as_secs_f64();
        self.0 = now;
        secs
    }
}

/// `(table, snapshot id, commit time in epoch ms)` of each table read that has a snapshot.
fn snapshot_times(
    tables: &[(&'static str, iceberg::table::Table, Option<i64>)],
) -> Vec<(&'static str, i64, i64)> {
    tables
        .iter()
        .filter_map(|(name, table, id)| {
            let id = (*id)?;
            let at = table.metadata().snapshot_by_id(id)?.timestamp_ms();
            Some((*name, id, at))
        })
        .collect()
}

/// Snapshot ids by table as a publication names them (a table with none as `None`).
fn lake_snapshots(ids: impl IntoIterator<Item = (&'static str, Option<i64>)>) -> LakeSnapshots {
    LakeSnapshots(
        ids.into_iter()
            .map(|(name, snapshot_id)| LakeSnapshot {
                table: name.to_string(),
                snapshot_id,
            })
            .collect(),
    )
}

/// The tables' snapshots as a publication names them.
fn lake_snapshots_of(
    tables: &[(&'static str, iceberg::table::Table, Option<i64>)],
) -> LakeSnapshots {
    lake_snapshots(tables.iter().map(|(name, _, id)| (*name, *id)))
}

/// The snapshot id of each table that has one, as a checkpoint keeps them.
fn snapshot_ids(
    tables: &[(&'static str, iceberg::table::Table, Option<i64>)],
) -> BTreeMap<String, i64> {
    tables
        .iter()
        .filter_map(|(name, _, id)| id.map(|id| (name.to_string(), id)))
        .collect()
}

/// ClickHouse `DateTime` has second precision; a row read back then equals the row written.
fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// Reads the raw tables at their current snapshots and computes both rankings, all time and
/// per month.
pub async fn compute(
    catalog: &dyn Catalog,
    namespace: &str,
) -> Result<(LakeSnapshots, PeriodRankings), MartsError> {
    compute_as_of(catalog, namespace, &AsOf::Latest).await
}

/// Reads the raw tables at the snapshots `as_of` picks and computes both rankings from them
/// (time travel): the same computation as a run, so the answer as of a past publication's
/// snapshots is that publication.
pub async fn compute_as_of(
    catalog: &dyn Catalog,
    namespace: &str,
    as_of: &AsOf,
) -> Result<(LakeSnapshots, PeriodRankings), MartsError> {
    compute_as_of_in(&SessionContext::new(), catalog, namespace, as_of).await
}

/// [`compute_as_of`] in a session of the caller's (e.g. one with a memory limit: the API's
/// time travel). `ctx` should be fresh: the raw tables and the current state are registered
/// in it.
pub async fn compute_as_of_in(
    ctx: &SessionContext,
    catalog: &dyn Catalog,
    namespace: &str,
    as_of: &AsOf,
) -> Result<(LakeSnapshots, PeriodRankings), MartsError> {
    let snapshots = lake::register_raw_tables_as_of(catalog, namespace, ctx, as_of).await?;
    let totals = current_state::compute_totals(ctx).await?;
    Ok((snapshots, ranking::rank_periods(totals)))
}

/// The marts job: a lake (catalog and namespace) to read, kept state to fold into, a store to
/// publish to, a clock.
pub struct MartsJob {
    catalog: Arc<dyn Catalog>,
    namespace: String,
    store: Arc<dyn PublicationWriter>,
    state: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
    metrics: Option<crate::metrics::MartsMetrics>,
    lineage: MartsLineage,
    engine: Engine,
    /// Where the state's snapshots are pinned against lake maintenance, and as whom.
    pins: Option<(Arc<tributary_raw::pins::SnapshotPins>, String)>,
    /// How long publications and runs stay; `None`: the scheduler never prunes.
    retention: Option<crate::config::RetentionSettings>,
    /// Woken by the lander's commits ([`tributary_raw::commits`]): the scheduler starts a run
    /// then instead of at its next tick. `None`: ticks only.
    commits: Option<Arc<tokio::sync::Notify>>,
    /// Announces each publication, so the API swaps it in at once rather than at its next
    /// refresh.
    announcer: Option<tributary_raw::commits::Announcer>,
    /// The checkpoint this process last committed: the next run folds on from it without
    /// reading the state again, unless the stored version is another (a rebuild, another
    /// process). Taken by a run, given back once its commit succeeded.
    kept: std::sync::Mutex<Option<Checkpoint>>,
    /// The state commits of this process's scheduled runs that may not have landed: they commit
    /// behind ([`MartsJob::run_scheduled`]), the next runs folding and publishing meanwhile.
    in_flight: std::sync::Mutex<Behind>,
    /// Whether this process has made sure of the ClickHouse schema (once, and again after a
    /// failed run: the database may have been dropped meanwhile). A dozen DDL round trips a
    /// run were a good part of a small run's time.
    schema_ready: std::sync::atomic::AtomicBool,
    /// The events one run reads at most (see [`crate::slice`]).
    max_events_per_run: u64,
}

/// Logs a published run: what it read and wrote and where its time went (the benchmarks read
/// the timings from these lines).
fn log_published(
    outcome: &RunOutcome,
    progress: &RunProgress,
    sales_changed: Option<usize>,
    sales_queued: usize,
) {
    if let RunOutcome::Published {
        publication_id,
        cities,
        salesmen,
        months,
        sales,
        unresolved_sales,
        rows_out,
        rows_changed,
        timings,
        ..
    } = outcome
    {
        tracing::info!(
            %publication_id,
            events_in = progress.rows_in,
            sales_changed = ?sales_changed,
            sales_queued,
            cities,
            salesmen,
            months,
            sales,
            unresolved_sales,
            rows_out,
            rows_changed = ?rows_changed,
            ?timings,
            "published rankings"
        );
    }
}

/// Waits for a lake commit to be announced on `commits`; forever without notifications.
async fn announced(commits: Option<&tokio::sync::Notify>) {
    match commits {
        Some(commits) => commits.notified().await,
        None => std::future::pending().await,
    }
}

/// How a run treats the kept state and the latest publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunMode {
    /// Fold what is new; publish unless the lake is unchanged since the latest publication.
    #[default]
    Incremental,
    /// Fold what is new and publish even if nothing changed (the rows replace the earlier ones).
    Force,
    /// Forget the kept state, fold the whole lake again and publish.
    Rebuild,
}

/// What computes the totals of a rebuild ([`RunMode::Rebuild`]); incremental runs always fold.
#[derive(Debug, Clone, Default)]
pub enum Engine {
    /// Fold the whole lake in this process (the kept state is rebuilt with it).
    #[default]
    DataFusion,
    /// Have Trino compute the totals from the lake ([`crate::trino`]); the kept state is left
    /// as it is.
    Trino(crate::trino::TrinoClient),
}

/// What a run publishes besides its totals.
struct Publish<'a> {
    run_id: &'a str,
    computed_at: DateTime<Utc>,
    snapshots: LakeSnapshots,
    watermarks: std::collections::BTreeMap<String, SourceWatermark>,
    /// `(table, snapshot id, commit time in epoch ms)` of every table with a snapshot.
    snapshot_times: Vec<(&'static str, i64, i64)>,
    /// The periods of the publication this one follows and the months changed since: the
    /// others are carried by reference. `None`: every month is published.
    carry: Option<Carry>,
}

/// What a run publishing only the months it changed needs to carry the others.
struct Carry {
    /// The periods of the latest publication (what the kept state was folded to).
    previous: Vec<tributary_rankings::schema::PublicationPeriodRow>,
    /// The months whose cells the run changed: ranked and published again.
    changed: std::collections::BTreeSet<tributary_rankings::Month>,
    /// The ranking rows whose totals the run moved ([`crate::fold::Cells::changed_ranking_rows`]):
    /// of the rows it writes, those whose totals differ from the latest publication's.
    rows_changed: u64,
}

/// The new events of one run, decoded, and how far they reach per source.
#[derive(Debug, Default)]
struct NewEvents {
    sales: Vec<SaleEvent>,
    salesmen: Vec<crate::fold::MasterEvent<crate::fold::SalesmanRow>>,
    cities: Vec<crate::fold::MasterEvent<crate::fold::CityRow>>,
    watermarks: std::collections::BTreeMap<String, SourceWatermark>,
    rows: u64,
    rows_by_table: std::collections::BTreeMap<String, u64>,
}

impl MartsJob {
    /// A job reading the raw tables of `namespace` in `catalog`, keeping its state in `state`
    /// and publishing to `store`, on the system clock.
    pub fn new(
        catalog: Arc<dyn Catalog>,
        namespace: impl Into<String>,
        store: Arc<dyn PublicationWriter>,
        state: Arc<dyn StateStore>,
    ) -> Self {
        Self::with_clock(catalog, namespace, store, state, Arc::new(SystemClock))
    }

    /// Same, with an injected clock (tests).
    pub fn with_clock(
        catalog: Arc<dyn Catalog>,
        namespace: impl Into<String>,
        store: Arc<dyn PublicationWriter>,
        state: Arc<dyn StateStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            catalog,
            namespace: namespace.into(),
            store,
            state,
            clock,
            metrics: None,
            lineage: MartsLineage::disabled(),
            engine: Engine::DataFusion,
            pins: None,
            retention: None,
            commits: None,
            announcer: None,
            kept: std::sync::Mutex::new(None),
            in_flight: std::sync::Mutex::new(Behind::default()),
            schema_ready: std::sync::atomic::AtomicBool::new(false),
            max_events_per_run: DEFAULT_MAX_EVENTS_PER_RUN,
        }
    }

    /// The same job, emitting OpenLineage events for its runs (see [`crate::lineage`]).
    pub fn with_lineage(mut self, lineage: MartsLineage) -> Self {
        self.lineage = lineage;
        self
    }

    /// The same job, computing its rebuilds with `engine`.
    pub fn with_engine(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    /// The same job, pinning the snapshots its kept state continues from (as `holder`) after
    /// each state commit, so lake maintenance keeps every snapshot its next run reads.
    pub fn with_pins(
        mut self,
        pins: Arc<tributary_raw::pins::SnapshotPins>,
        holder: impl Into<String>,
    ) -> Self {
        self.pins = Some((pins, holder.into()));
        self
    }

    /// The same job, pruning what `retention` no longer keeps every `retention.interval_s` of
    /// its schedule (when `retention.enabled`).
    pub fn with_retention(mut self, retention: crate::config::RetentionSettings) -> Self {
        self.retention = Some(retention);
        self
    }

    /// The same job, its scheduler starting a run when `commits` is woken (a lake commit
    /// announced, see [`tributary_raw::commits::listen`]) rather than at the next tick only.
    pub fn with_commit_notifications(mut self, commits: Arc<tokio::sync::Notify>) -> Self {
        self.commits = Some(commits);
        self
    }

    /// The same job, announcing each publication with `announcer` (see
    /// [`tributary_raw::commits::listen_for_publications`]).
    pub fn with_publication_announcer(
        mut self,
        announcer: Option<tributary_raw::commits::Announcer>,
    ) -> Self {
        self.announcer = announcer;
        self
    }

    /// The same job, reading at most about `events` events a run (at least one commit of each
    /// table, however large; see [`crate::slice`]). A run that stops short of the lake publishes
    /// what it folded when the latest publication is its starting point (the scheduler then
    /// runs again at once), and otherwise — a rebuild, a first run — folds on slice by slice,
    /// committing the state after each, and publishes once, at the end.
    pub fn with_max_events_per_run(mut self, events: u64) -> Self {
        self.max_events_per_run = events.max(1);
        self
    }

    /// The same job, counting its runs in `metrics`.
    pub fn with_metrics(mut self, metrics: crate::metrics::MartsMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// One incremental run ([`RunMode::Force`] with `force`); see [`MartsJob::run_with`].
    pub async fn run_once(&self, force: bool) -> Result<RunOutcome, MartsError> {
        self.run_with(if force {
            RunMode::Force
        } else {
            RunMode::Incremental
        })
        .await
    }

    /// One run, recorded in `mart_runs` whatever its outcome.
    ///
    /// Recording is best effort: a run that failed because ClickHouse is down cannot record
    /// that either, and a record that fails to be written must not turn a published run into
    /// an error (the publication is already visible), so such a failure is only logged.
    pub async fn run_with(&self, mode: RunMode) -> Result<RunOutcome, MartsError> {
        self.run_under(mode, None, false).await
    }

    /// [`MartsJob::run_with`], its lineage run the child of `parent` (the scheduler's).
    async fn run_under(
        &self,
        mode: RunMode,
        parent: Option<&tributary_lineage::JobRun>,
        behind: bool,
    ) -> Result<RunOutcome, MartsError> {
        let run_id = uuid::Uuid::now_v7().to_string();
        let started_at = self.clock.now();
        let mut lineage = self.lineage.begin(parent, started_at);
        let span = tracing::info_span!("marts_run", run_id = %run_id, mode = ?mode);
        let mut progress = RunProgress::default();
        let timer = std::time::Instant::now();
        let result = self
            .run(
                &run_id,
                started_at,
                mode,
                behind,
                &mut progress,
                &mut lineage,
            )
            .instrument(span.clone())
            .await;
        if result.is_err() {
            self.schema_ready
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
        let (status, error) = match &result {
            Ok(RunOutcome::Published { .. }) => (RunStatus::Published, String::new()),
            Ok(RunOutcome::Unchanged { .. }) => (RunStatus::Unchanged, String::new()),
            Err(e) => (RunStatus::Failed, e.to_string()),
        };
        let record = MartRunRow {
            run_id: run_id.clone(),
            started_at: whole_seconds(started_at),
            finished_at: whole_seconds(self.clock.now()),
            status: status.as_str().to_string(),
            error,
            publication_id: progress
                .snapshots
                .as_ref()
                .map(LakeSnapshots::publication_id)
                .unwrap_or_default(),
            lake_snapshots: progress
                .snapshots
                .as_ref()
                .map_or_else(|| "[]".to_string(), LakeSnapshots::to_json),
            rows_in: progress.rows_in,
            rows_out: progress.rows_out,
        };
        if let Err(error) = self.store.record_run(&record).await {
            let _guard = span.enter();
            tracing::warn!(%error, status = status.as_str(), "could not record the run in mart_runs");
        }
        let reads = table_reads(progress.snapshots.as_ref(), &progress.rows_read);
        match &result {
            Ok(RunOutcome::Published { .. }) => lineage.complete(&reads, &progress.rows_written),
            // Nothing read, nothing written: no events (see `crate::lineage`).
            Ok(RunOutcome::Unchanged { .. }) => {}
            Err(error) => lineage.fail(&reads, error),
        }
        // Delivered before a `run-once` process exits (bounded; immediate when lineage is off).
        self.lineage.lineage().flush().await;
        if let Some(metrics) = &self.metrics {
            metrics.run(status, timer.elapsed().as_secs_f64(), progress.rows_in);
            self.record_freshness(metrics, &result, progress).await;
        }
        result
    }

    async fn run(
        &self,
        run_id: &str,
        computed_at: DateTime<Utc>,
        mode: RunMode,
        behind: bool,
        progress: &mut RunProgress,
        lineage: &mut MartsRun,
    ) -> Result<RunOutcome, MartsError> {
        let mut timings = RunTimings::default();
        let mut previous = TakenBehind::take(&self.in_flight);
        // Commits behind land before a run that does not fold on from them (a rebuild, a forced
        // run); otherwise a landed one only makes way for the queued one.
        if mode == RunMode::Incremental {
            self.start_queued_if_landed(&mut previous.behind, &mut timings)
                .await?;
        } else {
            self.settle_counted(&mut previous.behind, &mut timings)
                .await?;
        }
        if !self.schema_ready.load(std::sync::atomic::Ordering::Relaxed) {
            self.store.ensure_schema().await?;
            self.schema_ready
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if mode == RunMode::Rebuild && matches!(self.engine, Engine::DataFusion) {
            tracing::info!("rebuild: forgetting the kept state");
            self.state.reset().await?;
        }
        let mut watch = Stopwatch::start();
        // Each table's metadata is a catalog query and an object-store read: all at once.
        let tables = futures::future::try_join_all(RAW_TABLES.into_iter().map(|name| async move {
            let table = tributary_raw::snapshots::load_raw_table(
                self.catalog.as_ref(),
                &self.namespace,
                name,
            )
            .await?;
            let snapshot_id = table.metadata().current_snapshot().map(|s| s.snapshot_id());
            Ok::<_, MartsError>((name, table, snapshot_id))
        }))
        .await?;
        timings.load = watch.lap();
        let snapshots = lake_snapshots_of(&tables);
        progress.snapshots = Some(snapshots.clone());
        if let (RunMode::Rebuild, Engine::Trino(client)) = (mode, &self.engine) {
            lineage.on_engine("trino", &client.version().await?);
            lineage.start(&table_reads(Some(&snapshots), &Default::default()));
            return self
                .rebuild_on_trino(
                    client,
                    run_id,
                    computed_at,
                    snapshots,
                    snapshot_times(&tables),
                    progress,
                )
                .await;
        }

        let remembered = self.kept.lock().unwrap_or_else(|e| e.into_inner()).take();
        let base = match remembered {
            // Ahead of the store by the commits behind (which fail if another wrote since).
            Some(checkpoint) if !previous.behind.is_empty() => Some(checkpoint),
            remembered => {
                self.settle_counted(&mut previous.behind, &mut timings)
                    .await?;
                let stored = self.state.version().await?;
                match remembered.filter(|c| Some(c.version()) == stored) {
                    Some(checkpoint) => Some(checkpoint),
                    None => self.state.checkpoint().await?,
                }
            }
        };
        let latest = match mode {
            RunMode::Rebuild => None,
            RunMode::Incremental | RunMode::Force => self.store.latest_publication().await?,
        };
        if mode == RunMode::Incremental {
            let publication_id = snapshots.publication_id();
            // A run publishes before it commits the state: a publication of these snapshots
            // whose state commit failed (or was cut short) still needs the fold committed.
            let state_current = base
                .as_ref()
                .is_some_and(|b| b.snapshots == snapshot_ids(&tables));
            if state_current
                && latest
                    .as_ref()
                    .is_some_and(|p| p.publication_id == publication_id)
            {
                tracing::info!(
                    publication_id,
                    "lake unchanged since the latest publication"
                );
                *self.kept.lock().unwrap_or_else(|e| e.into_inner()) = base;
                return Ok(RunOutcome::Unchanged { publication_id });
            }
        }
        // Whether a slice short of the lake may be published: only when the kept state is what
        // the latest publication shows, so publications keep moving forward. A rebuild, a first
        // run, or a state behind or ahead of the latest publication folds slice by slice and
        // publishes once, caught up: readers never see the rankings go back in time.
        let publishes_slices = base.as_ref().is_some_and(|b| {
            latest.as_ref().is_some_and(|p| {
                p.publication_id
                    == lake_snapshots(
                        tables
                            .iter()
                            .map(|(name, _, _)| (*name, b.snapshots.get(*name).copied())),
                    )
                    .publication_id()
            })
        });
        let mut first_slice = Some(
            self.slice(
                &tables,
                base.as_ref()
                    .map(|b| &b.snapshots)
                    .unwrap_or(&BTreeMap::new()),
            ),
        );
        // What the run will publish from: the lake as it is, or (a job behind) its one slice.
        let reads = match &first_slice {
            Some(slice) if publishes_slices => lake_snapshots_of(slice),
            _ => snapshots.clone(),
        };
        lineage.start(&table_reads(Some(&reads), &Default::default()));
        if let Some(kept) = &base
            && kept.namespace != self.namespace
        {
            return Err(MartsError::StateDiverged {
                table: self.namespace.clone(),
                reason: format!("the state was folded from namespace {:?}", kept.namespace),
            });
        }
        let mut base_generation = base.as_ref().map(|b| b.generation);
        let mut checkpoint = base.unwrap_or_else(|| Checkpoint {
            namespace: self.namespace.clone(),
            epoch: uuid::Uuid::new_v4().as_u64_pair().0,
            ..Checkpoint::default()
        });
        loop {
            let mut watch = Stopwatch::start();
            let slice = first_slice
                .take()
                .unwrap_or_else(|| self.slice(&tables, &checkpoint.snapshots));
            let caught_up = snapshot_ids(&slice) == snapshot_ids(&tables);
            let new = self.read_new_events(&slice, &checkpoint).await?;
            timings.read += watch.lap();
            let events_in = new.rows;
            progress.rows_in += new.rows;
            for (table, rows) in &new.rows_by_table {
                *progress.rows_read.entry(table.clone()).or_default() += rows;
            }
            // A run that publishes its one slice over the latest publication may carry the months
            // it does not change; a change to the master data (names, resolution) touches them all.
            let master_before = publishes_slices.then(|| checkpoint.master.clone());
            let changed = self
                .fold(&mut checkpoint, new, &mut previous.behind)
                .await?;
            timings.fold += watch.lap();
            checkpoint.snapshots = snapshot_ids(&slice);
            checkpoint.generation = base_generation.map_or(1, |g| g + 1);
            if !caught_up && !publishes_slices {
                // A slice on the way to the lake's current snapshots: kept, not published.
                timings.commit_behind += self.settle(&mut previous.behind).await?;
                self.state
                    .commit(base_generation, &changed, &checkpoint)
                    .await?;
                checkpoint.cells.stored();
                self.pin_checkpoint(&slice).await;
                timings.commit += watch.lap();
                base_generation = Some(checkpoint.generation);
                tracing::info!(
                    events_in,
                    sales_changed = changed.len(),
                    snapshots = ?checkpoint.snapshots,
                    "folded a slice of the lake; folding on"
                );
                continue;
            }
            let cells_changed = checkpoint.cells.changed_count();

            // Published first, the state committed after: the rankings are visible as soon as
            // they are made, not a state commit later (the larger part of a run under a steady
            // stream of changes). Safe either way round: a publication is a function of its
            // snapshots, so a run that stops between the two (a crash, a failed or fenced
            // commit) leaves a correct publication, and the next run folds again from the state
            // it finds and publishes the same rows (or newer ones). Provenance reads the kept
            // state only when its checkpoint names the publication's snapshots, and the lake
            // meanwhile.
            // Only the months this run changed are ranked and published again when the kept state
            // was folded exactly to the latest publication (its rows are those of that state) and
            // the master data did not move; the others keep that publication's rows, by
            // reference. Otherwise (a rebuild, `--force`, a state apart from the latest
            // publication) every month is published.
            let carry_from = match (&latest, master_before) {
                (Some(latest), Some(before))
                    if mode == RunMode::Incremental && before == checkpoint.master =>
                {
                    Some(latest)
                }
                _ => None,
            };
            let carry = match carry_from {
                Some(latest) => Some(Carry {
                    previous: self.store.periods(&latest.publication_id).await?,
                    changed: checkpoint.cells.changed_months(),
                    rows_changed: checkpoint.cells.changed_ranking_rows(),
                }),
                None => None,
            };
            let totals = checkpoint
                .cells
                .totals_of(&checkpoint.master, carry.as_ref().map(|c| &c.changed))?;
            timings.rank += watch.lap();
            let snapshots = lake_snapshots_of(&slice);
            progress.snapshots = Some(snapshots.clone());
            let publish = Publish {
                run_id,
                computed_at,
                snapshots,
                snapshot_times: snapshot_times(&slice),
                watermarks: checkpoint.watermarks.clone(),
                carry,
            };
            let mut outcome = self
                .rank_and_publish(publish, totals, progress, timings, caught_up)
                .await?;
            tributary_common::failpoint::crash_point(
                tributary_common::failpoint::MARTS_AFTER_PUBLISH,
            );
            // In order, one at a time: this run's commit starts once the last one landed, or is
            // queued behind it.
            let mut commit_timings = RunTimings::default();
            let sales_changed = changed.len();
            self.commit_behind(
                &mut previous.behind,
                base_generation,
                changed,
                &mut checkpoint,
                &slice,
                &mut commit_timings,
            )
            .await?;
            // Ahead of the store until the commits behind land; dropped if one fails.
            *self.kept.lock().unwrap_or_else(|e| e.into_inner()) = Some(checkpoint);
            if !behind {
                self.settle_counted(&mut previous.behind, &mut commit_timings)
                    .await?;
                tracing::debug!(cells_changed, "state committed");
            }
            if let RunOutcome::Published { timings, .. } = &mut outcome {
                timings.commit += commit_timings.commit;
                timings.commit_behind += commit_timings.commit_behind;
            }
            log_published(
                &outcome,
                progress,
                Some(sales_changed),
                previous.behind.sales_queued(),
            );
            return Ok(outcome);
        }
    }

    /// The raw tables at the snapshots a run folds up to from `since` (where the state
    /// stopped): their current ones, or earlier ones when that is more than the run's bound on
    /// events ([`crate::slice`]).
    fn slice(
        &self,
        tables: &[(&'static str, iceberg::table::Table, Option<i64>)],
        since: &BTreeMap<String, i64>,
    ) -> Vec<(&'static str, iceberg::table::Table, Option<i64>)> {
        let ranges: Vec<crate::slice::TableRange> = tables
            .iter()
            .map(|(name, table, current)| {
                let since = since.get(*name).copied();
                crate::slice::TableRange::of(table.metadata(), since, *current)
            })
            .collect();
        let targets = crate::slice::targets(&ranges, self.max_events_per_run);
        tables
            .iter()
            .zip(targets)
            .map(|((name, table, _), target)| (*name, table.clone(), target))
            .collect()
    }

    /// A rebuild on Trino: Trino reads the pinned snapshots and computes the totals; the kept
    /// state is left as it is (it stays consistent with its own checkpoint, and the next
    /// incremental run folds on from there).
    async fn rebuild_on_trino(
        &self,
        client: &crate::trino::TrinoClient,
        run_id: &str,
        computed_at: DateTime<Utc>,
        snapshots: LakeSnapshots,
        snapshot_times: Vec<(&'static str, i64, i64)>,
        progress: &mut RunProgress,
    ) -> Result<RunOutcome, MartsError> {
        tracing::info!(trino = %client.settings().url, "rebuild: computing the totals on Trino");
        let started = std::time::Instant::now();
        let computed = crate::trino::compute_totals(client, &self.namespace, &snapshots).await?;
        let timings = RunTimings {
            read: started.elapsed().as_secs_f64(),
            ..RunTimings::default()
        };
        tracing::info!(
            queries = ?computed.query_ids,
            peak_memory_bytes = computed.peak_memory_bytes,
            seconds = timings.read,
            "Trino computed the totals"
        );
        progress.rows_in = computed.watermarks.values().map(|w| w.events).sum();
        let publish = Publish {
            run_id,
            computed_at,
            snapshots,
            snapshot_times,
            watermarks: computed.watermarks,
            carry: None,
        };
        let outcome = self
            .rank_and_publish(publish, computed.totals, progress, timings, true)
            .await?;
        log_published(&outcome, progress, None, 0);
        Ok(outcome)
    }

    /// Ranks `totals` and publishes them with `publish`'s snapshots and sources, whichever
    /// engine computed the totals (an incremental run commits its state after; the caller logs).
    async fn rank_and_publish(
        &self,
        publish: Publish<'_>,
        totals: tributary_rankings::ranking::PeriodTotals,
        progress: &mut RunProgress,
        mut timings: RunTimings,
        caught_up: bool,
    ) -> Result<RunOutcome, MartsError> {
        let Publish {
            run_id,
            computed_at,
            snapshots,
            snapshot_times,
            watermarks,
            carry,
        } = publish;
        let publication_id = snapshots.publication_id();
        let mut watch = Stopwatch::start();
        let rankings = ranking::rank_periods(totals);
        let mut publication = Publication::of_periods(snapshots, run_id, computed_at, rankings)
            .with_sources(watermarks)
            .with_lake_committed_ms(snapshot_times.iter().map(|(_, _, ms)| *ms).max());
        let rows_changed = carry.as_ref().map(|c| c.rows_changed);
        if let Some(Carry {
            previous, changed, ..
        }) = carry
        {
            publication = publication.carrying(previous, |month| !changed.contains(&month));
            tracing::debug!(
                months_published = publication.months.len(),
                months_carried = publication.carried.len(),
                "months no event changed are carried by reference"
            );
        }
        timings.rank += watch.lap();
        self.store.publish(&publication).await?;
        if let Some(announcer) = &self.announcer {
            announcer.publication().await;
        }
        self.pin_publication(&publication.id, &snapshot_times).await;
        timings.publish = watch.lap();
        // Counted, not made again: making the rows is a good part of publishing them.
        let (cities, city_salesmen, salesmen) = publication.ranking_row_counts();
        progress.rows_out = (cities + city_salesmen + salesmen) as u64;
        progress.rows_written = [
            (tributary_rankings::schema::CITY_RANKING, cities),
            (
                tributary_rankings::schema::CITY_SALESMAN_RANKING,
                city_salesmen,
            ),
            (tributary_rankings::schema::SALESMAN_RANKING, salesmen),
        ]
        .into_iter()
        .map(|(table, n)| (table.to_string(), n as u64))
        .collect();
        progress.newest = Some(
            publication
                .sources
                .iter()
                .filter_map(|(source, w)| w.newest_event_at.map(|at| (source.clone(), at)))
                .collect(),
        );
        let summary = &publication.rankings.summary;
        let outcome = RunOutcome::Published {
            publication_id,
            run_id: run_id.to_string(),
            cities: publication.rankings.cities.len(),
            salesmen: publication.rankings.salesmen.len(),
            months: publication.months.len() + publication.carried.len(),
            sales: summary.sales,
            unresolved_sales: summary.unresolved_sales,
            rows_out: progress.rows_out,
            rows_changed,
            timings,
            caught_up,
        };
        Ok(outcome)
    }

    /// Tells the metrics what the latest publication counts. After a restart whose first run
    /// finds the lake unchanged, that is read back from the publication's sources.
    async fn record_freshness(
        &self,
        metrics: &crate::metrics::MartsMetrics,
        result: &Result<RunOutcome, MartsError>,
        progress: RunProgress,
    ) {
        match (result, progress.newest) {
            (Ok(RunOutcome::Published { .. }), Some(newest)) => {
                metrics.published(Some(progress.rows_out), &newest);
            }
            (Ok(RunOutcome::Unchanged { publication_id }), _) if !metrics.knows_sources() => {
                match self.store.sources(publication_id).await {
                    Ok(rows) => {
                        let newest = rows
                            .into_iter()
                            .filter(|r| r.newest_event_at.timestamp() > 0)
                            .map(|r| (r.source, r.newest_event_at))
                            .collect();
                        metrics.published(None, &newest);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not read the publication's sources")
                    }
                }
            }
            _ => {}
        }
    }

    /// Pins the snapshots the state now continues from ([`pin_state`]).
    async fn pin_checkpoint(&self, tables: &[(&'static str, iceberg::table::Table, Option<i64>)]) {
        pin_state(self.pins.as_ref(), &self.namespace, &snapshot_times(tables)).await;
    }

    /// Pins exactly the snapshots a publication was computed from, for as long as retention
    /// keeps it ([`crate::retention`] releases it). Best effort: while the lake keeps every
    /// snapshot of its full-resolution window, a missing pin matters only once a publication
    /// outlives that window.
    async fn pin_publication(&self, publication_id: &str, times: &[(&'static str, i64, i64)]) {
        let Some((pins, holder)) = &self.pins else {
            return;
        };
        let holder = crate::retention::publication_holder(holder, publication_id);
        if let Err(error) = pins.pin_exactly(&holder, &self.namespace, times).await {
            tracing::warn!(%error, holder, "could not pin the publication's snapshots");
        }
    }

    /// Reads and decodes what each raw table gained since the checkpoint's snapshot of it.
    async fn read_new_events(
        &self,
        tables: &[(&'static str, iceberg::table::Table, Option<i64>)],
        checkpoint: &Checkpoint,
    ) -> Result<NewEvents, MartsError> {
        let mut new = NewEvents::default();
        for (name, table, current) in tables {
            let qualified = format!("{}.{name}", self.namespace);
            let since = checkpoint.snapshots.get(*name).copied();
            new.rows_by_table.entry(name.to_string()).or_default();
            let Some(upto) = *current else {
                if since.is_some() {
                    return Err(MartsError::StateDiverged {
                        table: qualified,
                        reason: "the table has no snapshot any more".into(),
                    });
                }
                continue;
            };
            if since == Some(upto) {
                continue;
            }
            let (batches, snapshots) =
                tributary_raw::incremental::read_added(table, &qualified, since, upto).await?;
            // One trace follows a sale from its ingest batch through the lander commit to this
            // run: link the run span to the commits (their span is in the snapshot summary).
            for id in snapshots.iter().take(MAX_SPAN_LINKS) {
                if let Some(parent) = table.metadata().snapshot_by_id(*id).and_then(|s| {
                    tributary_raw::catalog::snapshot_traceparent(&s.summary().additional_properties)
                        .map(str::to_string)
                }) {
                    tributary_common::telemetry::link_span(&tracing::Span::current(), &parent);
                }
            }
            let source = crate::fold::source_of_table(name);
            let watermark = new.watermarks.entry(source.to_string()).or_default();
            for batch in &batches {
                new.rows += batch.num_rows() as u64;
                *new.rows_by_table.entry(name.to_string()).or_default() += batch.num_rows() as u64;
                match *name {
                    names::TABLE_PG_SALE => new.sales.extend(events::pg_sales(batch, watermark)?),
                    names::TABLE_PG_SALESMAN => {
                        new.salesmen.extend(events::salesmen(batch, watermark)?)
                    }
                    names::TABLE_PG_CITY => new.cities.extend(events::cities(batch, watermark)?),
                    _ => new
                        .sales
                        .extend(events::event_sales(source, batch, watermark)?),
                }
            }
            tracing::debug!(table = %qualified, ?since, upto, rows = new.rows, "read what the table gained");
        }
        Ok(new)
    }

    /// Folds `new` into `checkpoint` (master data, cells, watermarks) and returns the sales
    /// whose kept version changed.
    async fn fold(
        &self,
        checkpoint: &mut Checkpoint,
        new: NewEvents,
        behind: &mut Behind,
    ) -> Result<Vec<SaleRecord>, MartsError> {
        let before = checkpoint.master.index();
        checkpoint.master.apply(new.salesmen, new.cities);
        let keys = checkpoint.master.index();
        let (codes, city_keys) = before.changed(&keys);

        // The newest event of each sale within the batch; older ones change nothing.
        let mut newest: HashMap<SaleKey, SaleEvent> = HashMap::with_capacity(new.sales.len());
        for event in new.sales {
            match newest.get(&event.key) {
                Some(kept) if kept.order >= event.order => {}
                _ => {
                    newest.insert(event.key.clone(), event);
                }
            }
        }
        // The kept versions: those the commits behind write from them, the others from the store.
        let mut kept: HashMap<SaleKey, SaleRecord> = HashMap::with_capacity(newest.len());
        let mut wanted: Vec<SaleKey> = Vec::with_capacity(newest.len());
        for key in newest.keys() {
            match behind.sale(key) {
                Some(record) => {
                    kept.insert(key.clone(), record.clone());
                }
                None => wanted.push(key.clone()),
            }
        }
        kept.extend(
            self.state
                .sales(&wanted)
                .await?
                .into_iter()
                .map(|r| (r.key.clone(), r)),
        );
        let mut changed: HashMap<SaleKey, SaleRecord> = HashMap::new();
        for (key, event) in newest {
            if let Some(record) = checkpoint.cells.fold_event(kept.get(&key), event, &keys) {
                changed.insert(key, record);
            }
        }
        // Sales naming a code or city whose resolution moved count somewhere else now. Those
        // folded just above were resolved against the new keys already. Rare (the master data
        // moved): read from the store once the commits behind have landed.
        if !codes.is_empty() || !city_keys.is_empty() {
            self.settle(behind).await?;
        }
        for record in self.state.sales_naming(&codes, &city_keys).await? {
            if changed.contains_key(&record.key) {
                continue;
            }
            if let Some(moved) = checkpoint.cells.reresolve(&record, &keys) {
                changed.insert(moved.key.clone(), moved);
            }
        }
        for (source, seen) in new.watermarks {
            checkpoint.watermarks.entry(source).or_default().merge(seen);
        }
        Ok(changed.into_values().collect())
    }

    /// The rankings as the kept state has them (what the latest incremental run published),
    /// without reading the lake. `None` before the first run.
    pub async fn kept_rankings(&self) -> Result<Option<PeriodRankings>, MartsError> {
        match self.state.checkpoint().await? {
            Some(c) => Ok(Some(ranking::rank_periods(c.cells.totals(&c.master)?))),
            None => Ok(None),
        }
    }

    /// Prunes once by `settings` (the job's own retention when it has one): old publications'
    /// partitions, old runs, and the lake pins of what was dropped. Counted in the metrics.
    pub async fn prune(
        &self,
        settings: &crate::config::RetentionSettings,
    ) -> Result<crate::retention::PruneReport, MartsError> {
        let pins = self
            .pins
            .as_ref()
            .map(|(pins, holder)| (pins.as_ref(), holder.as_str()));
        let now = self.clock.now();
        let mut result =
            crate::retention::prune(self.store.as_ref(), pins, &self.namespace, settings, now)
                .await;
        if let Ok(report) = &mut result {
            let horizon =
                chrono::Duration::seconds(settings.tombstones_s.min(i64::MAX as u64) as i64);
            match self.state.forget_tombstones(now - horizon).await {
                Ok(n) => report.tombstones_forgotten = n,
                Err(error) => result = Err(error),
            }
        }
        if let Some(metrics) = &self.metrics {
            metrics.pruned(
                result
                    .as_ref()
                    .ok()
                    .map(|r| (r.dropped_partitions.len(), r.retained_publications)),
            );
        }
        result
    }

    /// Runs now, then whenever a lake commit is announced (with
    /// [`with_commit_notifications`](Self::with_commit_notifications)) and at least every
    /// `interval` (measured start to start; a run longer than the interval delays the next
    /// rather than overlapping it) until `shutdown` is cancelled. Commits announced during a
    /// run start the next one as soon as it ends, once for all of them. A run that stopped
    /// at its bound on events ([`with_max_events_per_run`](Self::with_max_events_per_run)) is
    /// followed at once by the next. While runs fail, only the backoff decides when the next
    /// starts.
    ///
    /// A failed run is logged and retried at the next tick. Shutdown does not wait for a run
    /// in flight: ranking rows are replaceable and the publication row is written last, so an
    /// interrupted run leaves nothing a reader can see, and the next run repeats it.
    pub async fn run_scheduled(&self, interval: Duration, shutdown: CancellationToken) {
        let process = self.lineage.process();
        let mut failures = Failures::default();
        let mut next_start = tokio::time::Instant::now();
        let mut last_prune: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(next_start) => {}
                _ = announced(self.commits.as_deref()), if failures.in_a_row == 0 => {}
            }
            let started = tokio::time::Instant::now();
            tokio::select! {
                _ = shutdown.cancelled() => {
                    tracing::info!("shutdown during a run; the next start repeats it");
                    break;
                }
                result = self.run_under(RunMode::Incremental, Some(&process), true) => {
                    let delay = failures.after(result.as_ref().err(), interval);
                    if let Err(error) = &result {
                        tracing::error!(
                            %error,
                            retryable = error.is_retryable(),
                            failures_in_a_row = failures.in_a_row,
                            next_run_in_ms = delay.as_millis() as u64,
                            "marts run failed"
                        );
                    }
                    if let Some(metrics) = &self.metrics {
                        metrics.consecutive_failures(failures.in_a_row);
                    }
                    // Stopped at its bound with more of the lake to fold: on at once.
                    let behind =
                        matches!(result, Ok(RunOutcome::Published { caught_up: false, .. }));
                    next_start = if behind {
                        tokio::time::Instant::now()
                    } else {
                        started + delay
                    };
                    self.prune_if_due(&mut last_prune).await;
                }
            }
        }
        // The last run's commit, landed before the process goes.
        if let Err(error) = self.settle_in_flight().await {
            tracing::warn!(%error, "the last state commit failed; the next start folds again");
        }
        process.complete(vec![], vec![]);
        self.lineage.lineage().flush().await;
        tracing::info!("marts scheduler stopped");
    }

    /// Prunes when the job has an enabled retention and its interval has passed since the last
    /// prune (the first prune follows the first run). A failed prune is logged and counted; the
    /// next is tried an interval later.
    async fn prune_if_due(&self, last: &mut Option<tokio::time::Instant>) {
        let Some(settings) = self.retention.as_ref().filter(|r| r.enabled) else {
            return;
        };
        let interval = Duration::from_secs(settings.interval_s);
        if last.is_some_and(|at| at.elapsed() < interval) {
            return;
        }
        *last = Some(tokio::time::Instant::now());
        // Forgetting tombstones and a commit upserting sales at once could deadlock on a row:
        // the commit lands first (a failed one is the next run's error).
        let _ = self.settle_in_flight().await;
        if let Err(error) = self.prune(settings).await {
            tracing::warn!(%error, "retention prune failed; tried again next interval");
        }
    }
}

/// The longest a failing schedule waits between runs.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Failed scheduled runs in a row, and when to run next. A retryable failure (ClickHouse or the
/// lake briefly away) is tried again at the next tick; a permanent one (a total out of range, a
/// diverged state) doubles the wait each time up to [`MAX_BACKOFF`], so a run that cannot
/// succeed neither hammers its dependencies every tick nor goes quiet: it stays visible in the
/// logs, `mart_runs` and `tributary_marts_consecutive_failed_runs` until someone acts. Pure.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Failures {
    in_a_row: u32,
    permanent_in_a_row: u32,
}

impl Failures {
    /// Records a run's outcome; returns the delay until the next start.
    fn after(&mut self, error: Option<&MartsError>, interval: Duration) -> Duration {
        match error {
            None => {
                *self = Failures::default();
                interval
            }
            Some(e) if e.is_retryable() => {
                self.in_a_row += 1;
                self.permanent_in_a_row = 0;
                interval
            }
            Some(_) => {
                self.in_a_row += 1;
                self.permanent_in_a_row += 1;
                let factor = 2u32.saturating_pow(self.permanent_in_a_row.min(16));
                interval
                    .saturating_mul(factor)
                    .min(MAX_BACKOFF.max(interval))
            }
        }
    }
}

mod behind;
#[cfg(test)]
mod tests;
