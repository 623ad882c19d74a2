//! Time travel: the API's read access to the lake, for `?as_of=` and `/v1/snapshots`.
//!
//! An `as_of` answer is computed on demand — the marts' own computation
//! (`tributary_marts::job::compute_as_of`) over the snapshots current at that time — and put
//! in a throw-away `MemoryStore` as a publication, so the handlers page and shape it exactly
//! like a published one. Before computing, the `as_of` is resolved to its snapshots (metadata
//! only): if the store still holds the publication of exactly those snapshots, that is the
//! answer; a computed one is kept in a small [`ComputedCache`] (about 0.3 s on the local
//! stack's ~4,000 sales to compute; it grows with the lake).
//!
//! The catalog is opened on first use, not at start-up: the ClickHouse endpoints must keep
//! working while the lake is down, and a lake that comes back is picked up by the next request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use iceberg::Catalog;
use iceberg::spec::TableMetadataRef;
use tokio::sync::OnceCell;
use tributary_common::{LakeSettings, names};
use tributary_marts::job::compute_as_of_in;
use tributary_marts::provenance::{Provenance, RankingKey, provenance_in};
use tributary_rankings::{
    LakeSnapshot, LakeSnapshots, MemoryStore, Period, Publication, PublicationWriter,
    RankingQueries,
};
use tributary_raw::RawError;
use tributary_raw::catalog::{
    read_columns, read_table, row_offsets, snapshot_ledger, snapshot_offsets,
};
use tributary_raw::ledger::{PartitionCoverage, cover};
use tributary_raw::schema::{RawTable, col};
use tributary_raw::snapshots::{
    AsOf, RAW_TABLES, SnapshotCut, TableSnapshots, list_snapshots, load_raw_table, pick_snapshot,
};
use tributary_raw::topics::TopicsConfig;

use crate::dead_letters::{self, DeadLetter, TopicSources};
use crate::error::ApiError;
use crate::source_ledger::{self, ErpLedger, FileLedger, Mention};

/// The `run_id` of an on-demand publication: no marts run wrote it.
pub const ON_DEMAND_RUN_ID: &str = "on-demand";

/// Where the raw tables are, opened lazily.
pub struct Lake {
    settings: Option<LakeSettings>,
    namespace: String,
    sources: TopicSources,
    catalog: OnceCell<Arc<dyn Catalog>>,
    /// DataFusion's runtime for every computation over the lake: its memory pool, shared by
    /// the requests running at once, is the bound `limits.lake_memory_mb` sets.
    runtime: Arc<RuntimeEnv>,
    /// The raw tables' metadata as an `as_of` last read it, reused for the times it answers
    /// ([`Lake::resolve`]).
    recent: RecentMetadata,
}

impl Lake {
    /// The lake of `settings` (the SQL catalog), opened at the first request that needs it.
    pub fn from_settings(settings: LakeSettings) -> Self {
        Self {
            namespace: settings.namespace.clone(),
            settings: Some(settings),
            sources: TopicSources::default(),
            catalog: OnceCell::new(),
            runtime: Arc::default(),
            recent: RecentMetadata::default(),
        }
    }

    /// An already open catalog (tests: iceberg's `MemoryCatalog`).
    pub fn from_catalog(catalog: Arc<dyn Catalog>, namespace: impl Into<String>) -> Self {
        Self {
            settings: None,
            namespace: namespace.into(),
            sources: TopicSources::default(),
            catalog: OnceCell::new_with(Some(catalog)),
            runtime: Arc::default(),
            recent: RecentMetadata::default(),
        }
    }

    /// Computations over the lake hold at most `bytes` together (`None`: no bound). Past it,
    /// a computation fails with [`ApiError::LakeMemory`] rather than growing the process.
    pub fn with_memory_limit(self, bytes: Option<usize>) -> Result<Self, ApiError> {
        let runtime = match bytes {
            Some(bytes) => RuntimeEnvBuilder::new()
                .with_memory_limit(bytes, 1.0)
                .build_arc()
                .map_err(|e| ApiError::LakeUnavailable(format!("lake runtime: {e}")))?,
            None => Arc::default(),
        };
        Ok(Self { runtime, ..self })
    }

    /// A fresh DataFusion session over the lake's runtime, for one computation: one partition
    /// (the computation has one thread, [`on_lake_thread`]; more partitions would only hold
    /// more memory at once).
    fn session(&self) -> SessionContext {
        SessionContext::new_with_config_rt(
            SessionConfig::new().with_target_partitions(1),
            self.runtime.clone(),
        )
    }

    /// Attributes dead letters to sources by these topics (the lander's `topics` settings).
    pub fn with_topics(self, topics: &TopicsConfig) -> Self {
        Self {
            sources: TopicSources::new(topics),
            ..self
        }
    }

    /// Every row of `dead_letters` at its current snapshot, attributed to its source. A lake
    /// without the table yet (the lander never ran) has none.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, ApiError> {
        let catalog = self.catalog().await?;
        let table = match load_raw_table(
            catalog.as_ref(),
            &self.namespace,
            names::TABLE_DEAD_LETTERS,
        )
        .await
        {
            Ok(table) => table,
            Err(RawError::TableMissing { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let batches = read_table(&table, None)
            .await
            .map_err(|e| ApiError::LakeUnavailable(e.to_string()))?;
        dead_letters::from_batches(&batches, &self.sources).map_err(ApiError::DeadLetterRows)
    }

    async fn catalog(&self) -> Result<Arc<dyn Catalog>, ApiError> {
        self.catalog
            .get_or_try_init(|| async {
                let settings = self.settings.as_ref().ok_or_else(|| {
                    ApiError::LakeUnavailable("no lake is configured".to_string())
                })?;
                let catalog = tributary_raw::catalog::open(settings)
                    .await
                    .map_err(|e| ApiError::LakeUnavailable(e.to_string()))?;
                Ok::<Arc<dyn Catalog>, ApiError>(Arc::new(catalog))
            })
            .await
            .cloned()
    }

    /// Readiness: the catalog opens and the raw namespace is there.
    pub async fn ping(&self) -> Result<String, ApiError> {
        let catalog = self.catalog().await?;
        let namespace = iceberg::NamespaceIdent::new(self.namespace.clone());
        match catalog.namespace_exists(&namespace).await {
            Ok(true) => Ok(format!(
                "catalog answers; namespace {} exists",
                self.namespace
            )),
            Ok(false) => Err(ApiError::LakeUnavailable(format!(
                "namespace {} does not exist yet (has the lander run?)",
                self.namespace
            ))),
            Err(e) => Err(ApiError::LakeUnavailable(e.to_string())),
        }
    }

    /// The current sales behind one ranking row, the lake read as `as_of` says.
    pub async fn provenance(
        &self,
        as_of: &AsOf,
        period: Period,
        key: RankingKey,
    ) -> Result<Provenance, ApiError> {
        let catalog = self.catalog().await?;
        let (ctx, namespace, as_of) = (self.session(), self.namespace.clone(), as_of.clone());
        on_lake_thread(async move {
            provenance_in(&ctx, catalog.as_ref(), &namespace, &as_of, period, key).await
        })
        .await?
        .map_err(ApiError::from_lake)
    }

    /// Every partition the raw tables keep an offset-coverage ledger for, held against their
    /// rows (three columns of every raw table read). The change tables are loaded before
    /// `dead_letters`: a change table's ledger only counts dead letters that `dead_letters`
    /// committed before it, so they are all in the later read.
    pub async fn ledger(&self) -> Result<Vec<PartitionCoverage>, ApiError> {
        let catalog = self.catalog().await?;
        let lake_error = |e: RawError| ApiError::LakeUnavailable(e.to_string());
        let mut tables = Vec::new();
        for kind in RawTable::DATA_TABLES
            .into_iter()
            .chain([RawTable::DeadLetters])
        {
            match load_raw_table(catalog.as_ref(), &self.namespace, kind.name()).await {
                Ok(table) => tables.push((kind, table)),
                Err(RawError::TableMissing { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let dead = match tables
            .iter()
            .find(|(kind, _)| *kind == RawTable::DeadLetters)
        {
            Some((_, table)) => row_offsets(table).await.map_err(lake_error)?,
            None => BTreeMap::new(),
        };
        let mut covered = Vec::new();
        for (kind, table) in &tables {
            let ledger = snapshot_ledger(table)?;
            if ledger.is_empty() {
                continue;
            }
            let rows = if *kind == RawTable::DeadLetters {
                BTreeMap::new()
            } else {
                row_offsets(table).await.map_err(lake_error)?
            };
            covered.extend(cover(
                *kind,
                &snapshot_offsets(table)?,
                &ledger,
                &rows,
                &dead,
            ));
        }
        Ok(covered)
    }

    /// The files' and the ERP's own numbering held against the lake
    /// ([`crate::source_ledger`]): the `provenance` of every file and ERP sale event and of
    /// their dead letters. Exact once what the ingestors sent has landed; while a file is in
    /// flight its sales and its dead letters may land in different commits (two topics), so
    /// a gap may show for a moment.
    pub async fn source_ledger(&self) -> Result<(Vec<FileLedger>, Vec<ErpLedger>), ApiError> {
        use arrow::array::{Array, AsArray};
        let catalog = self.catalog().await?;
        let mut rows: Vec<(
            &'static str,
            bool,
            serde_json::Map<String, serde_json::Value>,
        )> = Vec::new();
        for letter in self.dead_letters().await? {
            let source = match letter.source.as_str() {
                "files" => "files",
                "erp" => "erp",
                _ => continue,
            };
            let Some(value) = letter.value.as_deref() else {
                continue;
            };
            if let Ok(serde_json::Value::Object(mut rejected)) = serde_json::from_str(value)
                && let Some(serde_json::Value::Object(provenance)) = rejected.remove("provenance")
            {
                rows.push((source, true, provenance));
            }
        }
        for (kind, source) in [(RawTable::FileSale, "files"), (RawTable::ErpSale, "erp")] {
            let table = match load_raw_table(catalog.as_ref(), &self.namespace, kind.name()).await {
                Ok(table) => table,
                Err(RawError::TableMissing { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let batches = read_columns(&table, &[col::PROVENANCE_JSON])
                .await
                .map_err(|e| ApiError::LakeUnavailable(e.to_string()))?;
            for batch in batches {
                let column = batch.column(0).as_string::<i32>();
                for i in 0..batch.num_rows() {
                    if !column.is_null(i)
                        && let Ok(serde_json::Value::Object(provenance)) =
                            serde_json::from_str(column.value(i))
                    {
                        rows.push((source, false, provenance));
                    }
                }
            }
        }
        Ok(source_ledger::ledgers(rows.iter().map(
            |(source, dead_letter, provenance)| Mention {
                source,
                dead_letter: *dead_letter,
                provenance,
            },
        )))
    }

    /// Every raw table's snapshots.
    pub async fn snapshots(&self) -> Result<Vec<TableSnapshots>, ApiError> {
        let catalog = self.catalog().await?;
        Ok(list_snapshots(catalog.as_ref(), &self.namespace).await?)
    }

    /// The snapshots `as_of` pins each raw table at (table metadata only, no data read): the
    /// id of the publication it gives.
    ///
    /// A time is resolved against the tables' metadata as read for an earlier request when that
    /// reading is under [`METADATA_REUSE`] old and the time is not after it: what a fresh read
    /// gives for such a time, without reading the catalog and the object store for every
    /// request (that was most of the cost of an `as_of` answered from a retained publication).
    pub async fn resolve(&self, as_of: &AsOf) -> Result<LakeSnapshots, ApiError> {
        let catalog = self.catalog().await?;
        if let AsOf::Timestamp(at) = as_of {
            let metadata = self
                .recent
                .for_time(*at, catalog.as_ref(), &self.namespace)
                .await?;
            return Ok(metadata.resolve(&self.namespace, as_of)?);
        }
        tributary_marts::lake::resolve_as_of(catalog.as_ref(), &self.namespace, as_of)
            .await
            .map_err(ApiError::Lake)
    }

    /// Both rankings as of `at`, as a one-publication store. A time before the first snapshot
    /// gives an empty publication (every snapshot null): nothing had landed yet.
    pub async fn publication_as_of(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Arc<dyn RankingQueries>, ApiError> {
        self.publication_of(&AsOf::Timestamp(at)).await
    }

    /// Both rankings with the raw tables pinned as `as_of` says, as a one-publication store.
    pub async fn publication_of(&self, as_of: &AsOf) -> Result<Arc<dyn RankingQueries>, ApiError> {
        let catalog = self.catalog().await?;
        let (ctx, namespace, as_of) = (self.session(), self.namespace.clone(), as_of.clone());
        let (snapshots, rankings) = on_lake_thread(async move {
            compute_as_of_in(&ctx, catalog.as_ref(), &namespace, &as_of).await
        })
        .await?
        .map_err(ApiError::from_lake)?;
        let publication =
            Publication::of_periods(snapshots, ON_DEMAND_RUN_ID, Utc::now(), rankings);
        let store = MemoryStore::new();
        store.publish(&publication).await?;
        Ok(Arc::new(store))
    }

    /// What `?as_of_snapshot=<id>` reads: the lake as it was when snapshot `snapshot_id` was
    /// committed. The id is looked up among every raw table's snapshots (`dead_letters`
    /// included); that table is read at exactly this snapshot, every other raw table at its
    /// snapshot current at the commit time (empty if it had none yet). An id no table has is
    /// [`ApiError::SnapshotNotFound`].
    pub async fn resolve_snapshot(&self, snapshot_id: i64) -> Result<SnapshotCut, ApiError> {
        let catalog = self.catalog().await?;
        Ok(tributary_raw::snapshots::resolve_snapshot(
            catalog.as_ref(),
            &self.namespace,
            snapshot_id,
        )
        .await?)
    }
}

/// How long a reading of the raw tables' metadata answers later `as_of` times (not after it).
pub const METADATA_REUSE: Duration = Duration::from_secs(1);

/// The raw tables' metadata, read at one moment.
struct MetadataReading {
    /// When the reading started: a commit visible to it was committed before this.
    started_at: DateTime<Utc>,
    /// The same moment on the monotonic clock, for its age.
    started: Instant,
    tables: Vec<(&'static str, TableMetadataRef)>,
}

impl MetadataReading {
    async fn read(catalog: &dyn Catalog, namespace: &str) -> Result<Self, RawError> {
        let (started_at, started) = (Utc::now(), Instant::now());
        let mut tables = Vec::with_capacity(RAW_TABLES.len());
        for name in RAW_TABLES {
            let table = load_raw_table(catalog, namespace, name).await?;
            tables.push((name, table.metadata_ref()));
        }
        Ok(Self {
            started_at,
            started,
            tables,
        })
    }

    /// Whether it answers `at` as a reading started now would: taken at or after `at`, and
    /// recent enough that it misses only commits of the last [`METADATA_REUSE`].
    fn answers(&self, at: DateTime<Utc>) -> bool {
        at <= self.started_at && self.started.elapsed() <= METADATA_REUSE
    }

    /// Each table's snapshot `as_of` picks.
    fn resolve(&self, namespace: &str, as_of: &AsOf) -> Result<LakeSnapshots, RawError> {
        let snapshots = self
            .tables
            .iter()
            .map(|(name, metadata)| {
                Ok(LakeSnapshot {
                    table: name.to_string(),
                    snapshot_id: pick_snapshot(metadata, namespace, name, as_of)?,
                })
            })
            .collect::<Result<_, RawError>>()?;
        Ok(LakeSnapshots(snapshots))
    }
}

/// The last [`MetadataReading`], shared by the requests it answers; one reading at a time, so
/// the requests that find it stale wait for the one under way and most reuse it.
#[derive(Default)]
struct RecentMetadata {
    last: std::sync::RwLock<Option<Arc<MetadataReading>>>,
    reading: tokio::sync::Mutex<()>,
}

impl RecentMetadata {
    fn answering(&self, at: DateTime<Utc>) -> Option<Arc<MetadataReading>> {
        let last = self.last.read().unwrap_or_else(|e| e.into_inner());
        last.as_ref().filter(|r| r.answers(at)).cloned()
    }

    /// A reading that answers `at`: the last one, or a new one.
    async fn for_time(
        &self,
        at: DateTime<Utc>,
        catalog: &dyn Catalog,
        namespace: &str,
    ) -> Result<Arc<MetadataReading>, RawError> {
        // A time to come reads the lake as it is: any reading started from now on answers it.
        let at = at.min(Utc::now());
        if let Some(reading) = self.answering(at) {
            return Ok(reading);
        }
        let _one_at_a_time = self.reading.lock().await;
        if let Some(reading) = self.answering(at) {
            return Ok(reading);
        }
        let reading = Arc::new(MetadataReading::read(catalog, namespace).await?);
        *self.last.write().unwrap_or_else(|e| e.into_inner()) = Some(reading.clone());
        Ok(reading)
    }
}

/// Runs a computation over the lake (`as_of`, provenance) on the lake thread: one worker
/// thread of its own, at a lower scheduling priority (nice 10), started on first use and kept
/// for the process's life. The requests answered from memory run on the API's other threads,
/// so however many lake computations are under way (at most `limits.lake_concurrency`), they
/// cannot take the cores from them: a busy machine slows the lake, not the rankings. The
/// computation is aborted when the request that waits for it is dropped (its timeout, a client
/// gone), as it was when it ran on the request's own task.
pub(crate) async fn on_lake_thread<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, ApiError> {
    static LAKE_THREAD: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();
    let handle =
        LAKE_THREAD.get_or_init(|| tributary_common::background::low_priority_runtime("lake"));
    tokio_util::task::AbortOnDropHandle::new(handle.spawn(work))
        .await
        .map_err(|e| ApiError::LakeUnavailable(format!("the lake computation stopped: {e}")))
}

/// The last few publications computed from the lake for time travel, by publication id, so a
/// client paging through an `as_of` answer (or several asking for the same moment) computes it
/// once. Bounded by count (`limits.as_of_cache`; 0 keeps none): each entry holds one
/// publication's rows. Least recently used goes first.
pub struct ComputedCache {
    capacity: usize,
    entries: std::sync::Mutex<std::collections::VecDeque<(String, Arc<dyn RankingQueries>)>>,
}

impl ComputedCache {
    /// A cache of at most `capacity` publications.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: std::sync::Mutex::new(std::collections::VecDeque::with_capacity(capacity)),
        }
    }

    fn entries(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(String, Arc<dyn RankingQueries>)>>
    {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The publication `publication_id`, if computed lately (it becomes the most recent).
    pub fn get(&self, publication_id: &str) -> Option<Arc<dyn RankingQueries>> {
        let mut entries = self.entries();
        let at = entries.iter().position(|(id, _)| id == publication_id)?;
        let entry = entries.remove(at)?;
        let store = entry.1.clone();
        entries.push_back(entry);
        Some(store)
    }

    /// Keeps `store` as `publication_id`, dropping the least recently used beyond capacity.
    pub fn put(&self, publication_id: String, store: Arc<dyn RankingQueries>) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries();
        entries.retain(|(id, _)| *id != publication_id);
        entries.push_back((publication_id, store));
        while entries.len() > self.capacity {
            entries.pop_front();
        }
    }

    /// Publication ids held, least recently used first.
    pub fn ids(&self) -> Vec<String> {
        self.entries().iter().map(|(id, _)| id.clone()).collect()
    }
}
