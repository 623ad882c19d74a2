//! Lake maintenance: what keeps a table's commit cost, metadata and storage bounded while the
//! lake keeps every event.
//!
//! One run on one table, by the lander in a pass beside its consume loop that waits for the loop
//! only to commit ([`beside`]; the lander holds the namespace's writer lock and stays its tables'
//! one writer), or by `tributary-lake maintain`:
//!
//! 1. **compaction** — small data files are rewritten into files of `target_file_bytes`;
//! 2. **manifest merging** — the current snapshot's manifests become one (each fast append adds
//!    one, so a commit would otherwise read and write a list that grows with the table's age);
//! 3. **snapshot expiry** — snapshots outside the retention ([`plan::plan_expiry`]) leave the
//!    metadata, so `metadata.json`, rewritten by every commit, stays bounded;
//! 4. **file sweep** — files of the table's folder that no kept snapshot reaches (those of the
//!    expired snapshots, old metadata files, leftovers of a crashed commit) are deleted once
//!    older than `orphan_grace_s`.
//!
//! 1 and 2 make one Iceberg `replace` snapshot holding exactly the rows of the snapshot before
//! it (the incremental read skips it: it adds no event), committed together with 3 as one new
//! metadata file and a compare-and-swap of the catalog's `metadata_location` row ([`commit`]):
//! iceberg-rust 0.10 offers only `fast_append` as a snapshot-producing action.

mod beside;
mod commit;
mod compact;
pub mod plan;
mod sweep;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iceberg::Catalog;
use iceberg::spec::{ManifestContentType, ManifestEntry};
use iceberg::table::Table;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tributary_common::LakeSettings;
use tributary_raw::catalog::load_table;
use tributary_raw::incremental::manifest_list;
use tributary_raw::pins::{PinKind, SnapshotPins};
use tributary_raw::schema::RawTable;

use crate::error::LakeError;
pub use beside::{ApplyRequest, Pass};
use plan::{FileInfo, HeldByPins, SnapshotInfo};

/// When and how hard maintenance works (`[maintenance]` in the lander's config). The defaults
/// are the retention the README promises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceSettings {
    /// Whether the lander runs maintenance at all (`tributary-lake maintain` runs it anyway).
    pub enabled: bool,
    /// Seconds between two runs over every table.
    pub interval_s: u64,
    /// Every snapshot of the last this many seconds is kept: time travel inside this window
    /// reads exactly what the lake held at that moment.
    pub snapshot_retention_s: u64,
    /// Older snapshots are thinned, not dropped, up to this age: one per
    /// `history_granularity_s` is kept.
    pub history_retention_s: u64,
    /// The thinned history's resolution.
    pub history_granularity_s: u64,
    /// The current snapshot and this many of its newest ancestors are kept at any age.
    pub min_snapshots_to_keep: usize,
    /// A reader's pin (the marts' checkpoint) not refreshed for this long stops holding the
    /// history back (a marts database nobody runs any more).
    pub pin_max_age_s: u64,
    /// Size compaction writes files at; files under three quarters of it are small.
    pub target_file_bytes: u64,
    /// Compaction waits for at least this many small files.
    pub min_input_files: usize,
    /// Manifests are merged when the current snapshot has more than this many.
    pub max_manifests: usize,
    /// A file no snapshot reaches is deleted only once it is this old (longer than any commit
    /// takes between writing a file and committing it).
    pub orphan_grace_s: u64,
}

impl Default for MaintenanceSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_s: 60,
            snapshot_retention_s: 600,
            history_retention_s: 7 * 24 * 3_600,
            history_granularity_s: 3_600,
            min_snapshots_to_keep: 10,
            pin_max_age_s: 30 * 24 * 3_600,
            target_file_bytes: 64 * 1024 * 1024,
            min_input_files: 8,
            max_manifests: 16,
            orphan_grace_s: 3_600,
        }
    }
}

impl MaintenanceSettings {
    /// The retention in words, as maintenance records it on each table (readers name it when a
    /// time-travel request is older).
    pub fn retention(&self) -> String {
        format!(
            "every snapshot of the last {} s, then one per {} s up to {} s, and the newest {}",
            self.snapshot_retention_s,
            self.history_granularity_s,
            self.history_retention_s,
            self.min_snapshots_to_keep
        )
    }

    /// Checks ranges; the message names the field.
    pub fn validate(&self) -> Result<(), LakeError> {
        let invalid = |field, problem: &str| {
            Err(LakeError::InvalidConfig {
                field,
                problem: problem.to_string(),
            })
        };
        if self.interval_s == 0 {
            return invalid("maintenance.interval_s", "must be at least 1");
        }
        if self.history_granularity_s == 0 {
            return invalid("maintenance.history_granularity_s", "must be at least 1");
        }
        if self.history_retention_s < self.snapshot_retention_s {
            return invalid(
                "maintenance.history_retention_s",
                "must be at least maintenance.snapshot_retention_s",
            );
        }
        if self.min_snapshots_to_keep == 0 {
            return invalid("maintenance.min_snapshots_to_keep", "must be at least 1");
        }
        if self.target_file_bytes < 1024 * 1024 {
            return invalid("maintenance.target_file_bytes", "must be at least 1 MiB");
        }
        if self.min_input_files < 2 {
            return invalid("maintenance.min_input_files", "must be at least 2");
        }
        if self.max_manifests == 0 {
            return invalid("maintenance.max_manifests", "must be at least 1");
        }
        Ok(())
    }
}

/// What one maintenance run did to one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MaintenanceReport {
    /// `namespace.table`.
    pub table: String,
    /// The `replace` snapshot committed, if files were rewritten or manifests merged.
    pub replace_snapshot_id: Option<i64>,
    /// Small data files rewritten.
    pub files_rewritten: usize,
    /// Data files compaction wrote.
    pub files_written: usize,
    /// Rows compaction rewrote (each is still in the table exactly once).
    pub rows_rewritten: u64,
    /// Manifests of the current snapshot before and after.
    pub manifests_before: usize,
    /// See `manifests_before`.
    pub manifests_after: usize,
    /// Snapshots in the metadata before and after.
    pub snapshots_before: usize,
    /// See `snapshots_before`.
    pub snapshots_after: usize,
    /// Files deleted (data, manifests, manifest lists, metadata).
    pub files_deleted: usize,
    /// Their bytes.
    pub bytes_deleted: u64,
    /// Files the table's folder holds after the run.
    pub files_kept: usize,
    /// Their bytes.
    pub bytes_kept: u64,
    /// Holders whose pin was too old to count.
    pub stale_pins: Vec<String>,
    /// Wall time, from reading the table to the end of the sweep.
    #[serde(serialize_with = "serialize_seconds")]
    pub elapsed: Duration,
    /// Of which committing (the only part during which the table's writer waits).
    #[serde(serialize_with = "serialize_seconds")]
    pub commit_elapsed: Duration,
}

fn serialize_seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Runs maintenance on the tables of one namespace. Holds what runs share: the pins, the
/// warehouse's object store, a connection to the catalog database for commits, and per table
/// what the sweep already read (manifests never change once written).
pub struct Maintainer {
    settings: MaintenanceSettings,
    lake: LakeSettings,
    namespace: String,
    catalog: Arc<dyn Catalog>,
    pins: SnapshotPins,
    store: sweep::WarehouseStore,
    catalog_db: Mutex<Option<sqlx::PgConnection>>,
    reach_cache: Mutex<HashMap<RawTable, sweep::ReachCache>>,
}

impl std::fmt::Debug for Maintainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maintainer")
            .field("settings", &self.settings)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// A maintenance run on one table, prepared beside the lander: the compacted files written and
/// the expiry planned from the snapshot it started on, waiting to be committed on the table as
/// it is by then ([`Maintainer::apply`]).
#[derive(Debug)]
pub struct Prepared {
    kind: RawTable,
    started: Instant,
    report: MaintenanceReport,
    /// The snapshot the run read (`None`: the table had none, nothing to do).
    base_snapshot: Option<i64>,
    /// The manifests of that snapshot: any other manifest of the table a commit finds was added
    /// by an append since, and is carried into the replace as it is.
    base_manifests: HashSet<String>,
    /// The live entries of that snapshot, in commit order.
    entries: Vec<ManifestEntry>,
    replace: Option<(i64, compact::Compacted)>,
    expire: Vec<i64>,
}

impl Prepared {
    /// The table it maintains.
    pub fn kind(&self) -> RawTable {
        self.kind
    }

    /// The snapshots to expire that `current` still holds (never its current one).
    fn expire_in(&self, current: &Table) -> Vec<i64> {
        let metadata = current.metadata();
        self.expire
            .iter()
            .copied()
            .filter(|id| {
                metadata.snapshot_by_id(*id).is_some()
                    && metadata.current_snapshot_id() != Some(*id)
            })
            .collect()
    }
}

impl Maintainer {
    /// A maintainer of `namespace` in the lake of `lake`. The caller must hold the namespace's
    /// writer lock whenever it calls [`Maintainer::maintain`] or [`Maintainer::apply`].
    pub fn new(
        settings: MaintenanceSettings,
        lake: &LakeSettings,
        namespace: &str,
        catalog: Arc<dyn Catalog>,
    ) -> Result<Self, LakeError> {
        settings.validate()?;
        Ok(Self {
            store: sweep::WarehouseStore::new(lake)?,
            pins: SnapshotPins::new(lake)?,
            settings,
            lake: lake.clone(),
            namespace: namespace.to_string(),
            catalog,
            catalog_db: Mutex::new(None),
            reach_cache: Mutex::new(HashMap::new()),
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> &MaintenanceSettings {
        &self.settings
    }

    /// `kind`'s table as the catalog has it now.
    pub async fn load(&self, kind: RawTable) -> Result<Table, LakeError> {
        Ok(load_table(self.catalog.as_ref(), &self.namespace, kind).await?)
    }

    /// One whole run on `kind`, whose current state is `table`: [`Maintainer::prepare`],
    /// [`Maintainer::apply`] on the same table, [`Maintainer::sweep`]. Returns the table as it is
    /// after the run (reloaded when the run committed) and what the run did.
    pub async fn maintain(
        &self,
        kind: RawTable,
        table: &Table,
    ) -> Result<(Table, MaintenanceReport), LakeError> {
        let mut prepared = self.prepare(kind, table).await?;
        let table = self
            .apply(&mut prepared, table)
            .await?
            .unwrap_or_else(|| table.clone());
        let grace = chrono::Duration::from_std(Duration::from_secs(self.settings.orphan_grace_s))
            .unwrap_or(chrono::Duration::MAX);
        let report = self
            .sweep(prepared, &table, chrono::Utc::now() - grace)
            .await?;
        Ok((table, report))
    }

    /// The slow part of a run, which commits nothing and may run beside the table's writer:
    /// plans the expiry, reads the current snapshot's manifests and writes the compacted files
    /// (named after the `replace` snapshot that will commit them).
    pub async fn prepare(&self, kind: RawTable, table: &Table) -> Result<Prepared, LakeError> {
        let started = Instant::now();
        let qualified = table.identifier().to_string();
        let metadata = table.metadata();
        let mut prepared = Prepared {
            kind,
            started,
            report: MaintenanceReport {
                table: qualified.clone(),
                snapshots_before: metadata.snapshots().len(),
                ..MaintenanceReport::default()
            },
            base_snapshot: None,
            base_manifests: HashSet::new(),
            entries: Vec::new(),
            replace: None,
            expire: Vec::new(),
        };
        let Some(current) = metadata.current_snapshot().cloned() else {
            return Ok(prepared);
        };
        prepared.base_snapshot = Some(current.snapshot_id());
        // Pins: only live ones hold history back.
        let max_age = Duration::from_secs(self.settings.pin_max_age_s);
        let pins = self.pins.pins(&self.namespace, kind.name()).await?;
        let live = || {
            pins.iter()
                .filter(|p| p.age <= max_age && metadata.snapshot_by_id(p.snapshot_id).is_some())
        };
        let held = HeldByPins {
            from_ms: live()
                .filter(|p| p.kind == PinKind::From)
                .map(|p| p.snapshot_ms)
                .min(),
            exactly: live()
                .filter(|p| p.kind == PinKind::Exactly)
                .map(|p| p.snapshot_id)
                .collect(),
        };
        let report = &mut prepared.report;
        report.stale_pins = pins
            .iter()
            .filter(|p| p.age > max_age)
            .map(|p| p.holder.clone())
            .collect();
        if !report.stale_pins.is_empty() {
            tracing::warn!(table = %qualified, holders = ?report.stale_pins, max_age_s = self.settings.pin_max_age_s, "pins too old to hold the history back: their holders will rebuild");
        }
        let snapshots: Vec<SnapshotInfo> = metadata
            .snapshots()
            .map(|s| SnapshotInfo {
                id: s.snapshot_id(),
                parent: s.parent_snapshot_id(),
                timestamp_ms: s.timestamp_ms(),
            })
            .collect();
        // Still right when the commit comes later: a snapshot only ages, and the ones added
        // meanwhile are newer than all of these.
        prepared.expire = plan::plan_expiry(
            &snapshots,
            Some(current.snapshot_id()),
            chrono::Utc::now().timestamp_millis(),
            &held,
            &self.settings,
        )
        .expire
        .into_iter()
        .collect();

        // The current snapshot's live files, in commit order.
        let list = manifest_list(table, &current, &qualified).await?;
        report.manifests_before = list.entries().len();
        report.manifests_after = report.manifests_before;
        let mut entries: Vec<ManifestEntry> = Vec::new();
        for manifest_file in list.entries() {
            if manifest_file.content != ManifestContentType::Data {
                return Err(iceberg_err("maintain", &qualified)(iceberg::Error::new(
                    iceberg::ErrorKind::FeatureUnsupported,
                    "the table has delete files; the raw tables are append-only and maintenance does not rewrite deletes",
                )));
            }
            prepared
                .base_manifests
                .insert(manifest_file.manifest_path.clone());
            let manifest = manifest_file
                .load_manifest(table.file_io())
                .await
                .map_err(iceberg_err("read manifest", &qualified))?;
            entries.extend(
                manifest
                    .entries()
                    .iter()
                    .filter(|e| e.is_alive())
                    .map(|e| e.as_ref().clone()),
            );
        }
        entries.sort_by_key(|e| (e.sequence_number, e.file_path().to_string()));
        let files: Vec<FileInfo> = entries
            .iter()
            .map(|e| FileInfo {
                path: e.file_path().to_string(),
                bytes: e.file_size_in_bytes(),
            })
            .collect();
        let groups = plan::plan_compaction(&files, &self.settings);
        if !groups.is_empty()
            || plan::should_merge_manifests(report.manifests_before, &self.settings)
        {
            let snapshot_id = commit::new_snapshot_id(metadata);
            let compacted =
                compact::rewrite(table, &entries, &groups, snapshot_id, &self.settings).await?;
            report.files_rewritten = compacted.removed.len();
            report.files_written = compacted.added.len();
            report.rows_rewritten = compacted.rows;
            prepared.replace = Some((snapshot_id, compacted));
        }
        prepared.entries = entries;
        Ok(prepared)
    }

    /// The quick part of a run, by the table's writer between its commits: commits `prepared`'s
    /// `replace` snapshot and expiry on `current` — the table as the writer left it, which may
    /// hold appends made since the run read it (their manifests are carried into the replace
    /// unchanged). Returns the table after the commit, `None` when there was nothing to commit.
    pub async fn apply(
        &self,
        prepared: &mut Prepared,
        current: &Table,
    ) -> Result<Option<Table>, LakeError> {
        let applying = Instant::now();
        let expire = prepared.expire_in(current);
        let mut table = None;
        if prepared.replace.is_some() || !expire.is_empty() {
            let replace = prepared.replace.take();
            prepared.report.replace_snapshot_id = replace.as_ref().map(|(id, _)| *id);
            let base = commit::Base {
                snapshot_id: prepared.base_snapshot,
                manifests: &prepared.base_manifests,
                entries: &prepared.entries,
            };
            let mut db = self.catalog_db.lock().await;
            let manifests = commit::commit(
                &mut db,
                &self.lake,
                current,
                base,
                replace,
                &expire,
                &self.settings.retention(),
            )
            .await?;
            if let Some(manifests) = manifests {
                prepared.report.manifests_after = manifests;
            }
            drop(db);
            table = Some(self.load(prepared.kind).await?);
        }
        let after = table.as_ref().unwrap_or(current);
        prepared.report.snapshots_after = after.metadata().snapshots().len();
        prepared.report.commit_elapsed = applying.elapsed();
        Ok(table)
    }

    /// The end of a run, which may run beside the table's writer: deletes the files of `table`'s
    /// folder no kept snapshot of `table` reaches that were written before `written_before`.
    /// `table` must be the table as it was at a moment no commit was in flight (after
    /// [`Maintainer::apply`], by the writer), and `written_before` no later than that moment:
    /// then every older file is either in `table` or reached by nothing, ever again.
    pub async fn sweep(
        &self,
        prepared: Prepared,
        table: &Table,
        written_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<MaintenanceReport, LakeError> {
        let Prepared {
            kind,
            started,
            mut report,
            ..
        } = prepared;
        let mut caches = self.reach_cache.lock().await;
        let cache = caches.entry(kind).or_default();
        let swept = sweep::sweep(table, &self.store, cache, written_before).await?;
        report.files_deleted = swept.files_deleted;
        report.bytes_deleted = swept.bytes_deleted;
        report.files_kept = swept.files_kept;
        report.bytes_kept = swept.bytes_kept;
        report.elapsed = started.elapsed();
        tracing::info!(table = %report.table, replace = ?report.replace_snapshot_id, rewritten = report.files_rewritten, written = report.files_written, manifests = report.manifests_after, snapshots = report.snapshots_after, expired = report.snapshots_before.saturating_sub(report.snapshots_after), deleted = report.files_deleted, elapsed_s = report.elapsed.as_secs_f64(), commit_s = report.commit_elapsed.as_secs_f64(), "maintained");
        Ok(report)
    }
}

fn iceberg_err(
    action: &'static str,
    table: &str,
) -> impl FnOnce(iceberg::Error) -> LakeError + use<> {
    let table = table.to_string();
    move |source| LakeError::Iceberg {
        action,
        table,
        source: Box::new(source),
    }
}

/// Runs maintenance once over `tables` of the configured namespace (all raw tables when empty),
/// holding the namespace's writer lock — what `tributary-lake maintain` does. Fails with
/// [`LakeError::WriterLockBusy`] while a lander runs (it maintains the lake itself).
pub async fn maintain_once(
    config: &crate::LanderConfig,
    tables: &[RawTable],
) -> Result<Vec<MaintenanceReport>, LakeError> {
    config.validate()?;
    let catalog: Arc<dyn Catalog> = Arc::new(tributary_raw::catalog::open(&config.lake).await?);
    let lock = crate::catalog::WriterLock::acquire(
        &config.lake,
        &config.lake.namespace,
        Duration::from_millis(config.writer_lock_wait_ms),
    )
    .await?;
    let maintainer = Maintainer::new(
        config.maintenance.clone(),
        &config.lake,
        &config.lake.namespace,
        catalog.clone(),
    )?;
    let tables = if tables.is_empty() {
        RawTable::ALL.to_vec()
    } else {
        tables.to_vec()
    };
    let mut reports = Vec::with_capacity(tables.len());
    let mut result = Ok(());
    for kind in tables {
        let table = match load_table(catalog.as_ref(), &config.lake.namespace, kind).await {
            Ok(table) => table,
            Err(error) => {
                result = Err(error.into());
                break;
            }
        };
        match maintainer.maintain(kind, &table).await {
            Ok((_, report)) => reports.push(report),
            Err(error) => {
                result = Err(error);
                break;
            }
        }
    }
    lock.release().await;
    result.map(|()| reports)
}
