//! The file-drop ingestor: partner files (CSV, JSON, NDJSON) from an inbox (local folder or
//! S3 prefix) to Kafka, exactly once, with bad records dead-lettered and bad files quarantined.
//!
//! ```text
//! list inbox ─► plan (progress) ─► pass 1: check + hash ─► bad file? ─► dead letter + _quarantine/
//!                                        │ same content as before? ─► "duplicate", nothing sent
//!                                        ▼
//!                       pass 2: parse ─► map ─► batch ─► Kafka transaction:
//!                                                     events + dead letters + progress record
//! ```
//!
//! Every file is read twice: the first pass decides, for the whole file, whether it can be
//! read at all (so a file cut in the middle is quarantined instead of half published) and
//! hashes it; the second publishes. Each transaction carries the file's progress, so a crash
//! resumes at the first record not yet in Kafka: nothing lost, nothing twice.

pub mod inbox;
pub mod lineage;
pub mod map;
pub mod metrics;
pub mod parse;
pub mod partners;
pub mod progress;

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tributary_common::KafkaSettings;
use tributary_common::sale_event::{
    RejectedRecord, SaleEvent, SaleOp, SaleSource, SourceVersion, sale_key,
};

use crate::config::FilesConfig;
use crate::publish::{
    OutRecord, PublishError, TopicSpec, TxPublisher, ensure_topics, read_progress,
};
use inbox::{Inbox, InboxError, STATE};
use map::map_record;
use metrics::FileMetrics;
use parse::{FileError, Format, Tap, TapSummary, read_records};
use partners::{FileMode, Partner, Partners};
use progress::{
    ContentSeen, FileProgress, FileStatus, Listed, Plan, ProgressError, ProgressState,
    SnapshotState, content_key, file_key, plan, snapshot_key,
};

/// Why the ingestor stopped or a file could not be finished now.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The object store failed (retry later).
    #[error(transparent)]
    Inbox(#[from] InboxError),
    /// Kafka failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The progress topic holds something we cannot read.
    #[error(transparent)]
    Progress(#[from] ProgressError),
    /// Reading a file failed for a reason that is not the file's (network, disk).
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What failed.
        source: FileError,
    },
    /// The file changed between the check and the publish pass; it is taken again next poll.
    #[error("{path} changed while it was being read; it will be taken again")]
    Changed {
        /// The file.
        path: String,
    },
    /// A metric could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Another ingestor took over our transactional id: this one must stop, and must not
    /// reconnect (that would fence the one that replaced it).
    #[error("another file ingestor with transactional id {transactional_id:?} took over; stopping")]
    Fenced {
        /// The id.
        transactional_id: String,
    },
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

impl FilesError {
    /// Whether the next poll may succeed (everything except a corrupt progress topic or a
    /// fenced producer).
    pub fn is_retryable(&self) -> bool {
        match self {
            FilesError::Publish(e) => e.is_retryable(),
            FilesError::Progress(_)
            | FilesError::Metrics(_)
            | FilesError::InvalidConfig(_)
            | FilesError::Fenced { .. } => false,
            _ => true,
        }
    }
}

/// What one pass over the inbox did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollSummary {
    /// Files fully published in this pass.
    pub files_done: u64,
    /// Files skipped because their content was already published.
    pub duplicates: u64,
    /// Files moved to quarantine.
    pub quarantined: u64,
    /// Sale events published.
    pub published: u64,
    /// Records dead-lettered.
    pub rejected: u64,
    /// Sales withdrawn by snapshot files.
    pub withdrawn: u64,
    /// Whether shutdown interrupted a file (it resumes next time).
    pub interrupted: bool,
}

/// How a file ended in this pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Skipped,
    Done,
    Duplicate,
    Quarantined,
    Interrupted,
}

/// A record ready for Kafka, with its ordinal and what it counts as.
struct Item {
    ordinal: u64,
    rejected: bool,
    record: OutRecord,
}

/// The file ingestor over one inbox.
pub struct FileIngestor {
    config: FilesConfig,
    kafka: KafkaSettings,
    /// Set when a transaction failed: whether it committed is unknown, so the next poll starts
    /// from a fresh producer and the progress as Kafka has it, not as we remember it.
    resync: bool,
    partners: Partners,
    inbox: Inbox,
    publisher: TxPublisher,
    state: ProgressState,
    next_seq: i64,
    metrics: FileMetrics,
    progress_bar: Option<indicatif::ProgressBar>,
    /// OpenLineage: a run per file (`OPENLINEAGE_*`, off by default).
    lineage: lineage::FilesLineage,
    /// Why the last file was quarantined (for its FAIL event).
    last_quarantine: Option<String>,
}

impl std::fmt::Debug for FileIngestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileIngestor")
            .field("inbox", &self.inbox)
            .finish_non_exhaustive()
    }
}

impl FileIngestor {
    /// Creates the topics if needed, takes over the transactional id (fencing any earlier
    /// ingestor, whose unfinished transaction is aborted), then reads the progress back.
    pub async fn open(
        kafka: &KafkaSettings,
        config: FilesConfig,
        partners: Partners,
        metrics: FileMetrics,
    ) -> Result<Self, FilesError> {
        config.validate().map_err(FilesError::InvalidConfig)?;
        let inbox = Inbox::open(&config.inbox, &config.s3)?;
        ensure_topics(
            kafka,
            &[
                TopicSpec {
                    name: config.topics.sales.clone(),
                    partitions: 1,
                    compacted: false,
                },
                TopicSpec {
                    name: config.topics.dead_letters.clone(),
                    partitions: 1,
                    compacted: false,
                },
                TopicSpec {
                    name: config.topics.progress.clone(),
                    partitions: 1,
                    compacted: true,
                },
            ],
        )
        .await?;
        for name in partners.partners.keys() {
            metrics.init_partner(name);
        }
        // Fence first, read second: once we are the producer, nobody else can add progress.
        let publisher = TxPublisher::connect(kafka, &config.transactional_id).await?;
        let records = read_progress(kafka, &config.topics.progress).await?;
        let state = ProgressState::from_records(&records)?;
        let lineage = lineage::FilesLineage::from_env(
            inbox.url(),
            &kafka.brokers,
            &config.topics.sales,
            &config.topics.dead_letters,
        );
        // Already registered when a test opens several ingestors on one registry: keep the first.
        let _ = lineage.lineage().register_metrics(&metrics.registry);
        let next_seq = state.next_file_seq();
        tracing::info!(
            inbox = inbox.url(),
            files_known = state.files.len(),
            next_seq,
            "file ingestor ready"
        );
        Ok(Self {
            config,
            kafka: kafka.clone(),
            resync: false,
            partners,
            inbox,
            publisher,
            state,
            next_seq,
            metrics,
            progress_bar: None,
            lineage,
            last_quarantine: None,
        })
    }

    /// Shows a progress bar per file on the terminal (the CLI's `--once`).
    pub fn with_progress_bar(mut self) -> Self {
        self.progress_bar = Some(indicatif::ProgressBar::hidden());
        self
    }

    /// The inbox.
    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    /// Polls until `shutdown`, or once when `once`. Transient failures are logged, counted
    /// and retried at the next poll; permanent ones stop the ingestor.
    pub async fn run(
        self,
        once: bool,
        shutdown: CancellationToken,
    ) -> Result<PollSummary, FilesError> {
        let lineage = self.lineage.clone();
        let result = self.run_passes(once, shutdown).await;
        lineage
            .stopped(
                result
                    .as_ref()
                    .err()
                    .map(|e| tributary_lineage::facets::ErrorMessageRunFacet::from_error(e)),
            )
            .await;
        result
    }

    async fn run_passes(
        mut self,
        once: bool,
        shutdown: CancellationToken,
    ) -> Result<PollSummary, FilesError> {
        let mut total = PollSummary::default();
        let sweep_every = Duration::from_secs(self.config.sweep_interval_s.max(1));
        let mut last_sweep: Option<std::time::Instant> = None;
        loop {
            if last_sweep.is_none_or(|at| at.elapsed() >= sweep_every) {
                last_sweep = Some(std::time::Instant::now());
                self.sweep().await;
            }
            match self.poll(&shutdown).await {
                Ok(summary) => {
                    if summary != PollSummary::default() {
                        tracing::info!(?summary, "inbox pass finished");
                    }
                    total.files_done += summary.files_done;
                    total.duplicates += summary.duplicates;
                    total.quarantined += summary.quarantined;
                    total.published += summary.published;
                    total.rejected += summary.rejected;
                    total.withdrawn += summary.withdrawn;
                    total.interrupted |= summary.interrupted;
                }
                Err(error) if error.is_retryable() && !once => {
                    tracing::warn!(%error, "inbox pass failed, retrying at the next poll");
                }
                Err(error) => return Err(error),
            }
            if once || shutdown.is_cancelled() {
                return Ok(total);
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(total),
                _ = tokio::time::sleep(Duration::from_millis(self.config.poll_interval_ms)) => {}
            }
        }
    }

    /// Moves a file whose every record is in Kafka out of the inbox (`_processed`). Best
    /// effort: a failure is logged and counted, and the next poll, finding the file done, moves
    /// it again.
    async fn archive(&self, path: &str) {
        match self.inbox.archive(path).await {
            Ok(_) => self.metrics.inbox_objects("archived", 1),
            Err(error) => {
                self.metrics.error("archive");
                tracing::warn!(path, %error, "could not move a finished file to _processed; retried next poll");
            }
        }
    }

    /// Deletes archived and quarantined files older than their retentions. Best effort, like
    /// [`Self::archive`].
    async fn sweep(&self) {
        let now = Utc::now();
        for (prefix, retention_s, action) in [
            (
                inbox::PROCESSED,
                self.config.processed_retention_s,
                "expired_processed",
            ),
            (
                inbox::QUARANTINE,
                self.config.quarantine_retention_s,
                "expired_quarantined",
            ),
        ] {
            let before = now - chrono::Duration::seconds(retention_s.min(i64::MAX as u64) as i64);
            match self.inbox.expire(prefix, before).await {
                Ok(0) => {}
                Ok(n) => {
                    self.metrics.inbox_objects(action, n);
                    tracing::info!(prefix, deleted = n, retention_s, "expired old inbox files");
                }
                Err(error) => {
                    self.metrics.error("sweep");
                    tracing::warn!(prefix, %error, "could not expire old inbox files; retried next sweep");
                }
            }
        }
    }

    /// One pass over the inbox: every waiting file, oldest first.
    pub async fn poll(&mut self, shutdown: &CancellationToken) -> Result<PollSummary, FilesError> {
        if self.resync {
            self.resync_with_kafka().await?;
        }
        let min_age = chrono::Duration::milliseconds(self.config.min_age_ms as i64);
        let listed = self
            .inbox
            .list(min_age)
            .await
            .inspect_err(|_| self.metrics.error("list"))?;
        let mut summary = PollSummary::default();
        for file in listed {
            if shutdown.is_cancelled() {
                summary.interrupted = true;
                break;
            }
            // A file finished before needs no span: idle passes must not flood the traces. It is
            // still here if the ingestor stopped between its last transaction and the move.
            if plan(self.state.files.get(&file.path), &file) == Plan::Skip {
                self.archive(&file.path).await;
                continue;
            }
            // Every line about this file, and the Kafka batches it publishes (children), share
            // the file's trace.
            let span = file_span(&file);
            let step = self
                .ingest_file(&file, shutdown, &mut summary)
                .instrument(span)
                .await?;
            if step.is_break() {
                break;
            }
        }
        Ok(summary)
    }

    /// One listed file: process it, report its lineage run, count how it ended. `Break` when
    /// shutdown interrupted it, or a failed transaction ends the pass.
    async fn ingest_file(
        &mut self,
        file: &Listed,
        shutdown: &CancellationToken,
        summary: &mut PollSummary,
    ) -> Result<ControlFlow<()>, FilesError> {
        let (started_at, before) = (Utc::now(), (summary.published, summary.rejected));
        let ended = self.process(file, shutdown, summary).await;
        let outcome = match &ended {
            Ok(Ended::Skipped) => lineage::FileOutcome::Skipped,
            Ok(Ended::Done | Ended::Duplicate) => lineage::FileOutcome::Done,
            Ok(Ended::Interrupted) => lineage::FileOutcome::Interrupted,
            Ok(Ended::Quarantined) => {
                lineage::FileOutcome::Quarantined(self.last_quarantine.take().unwrap_or_default())
            }
            Err(error) => lineage::FileOutcome::Failed(error),
        };
        self.lineage.file(
            file,
            started_at,
            outcome,
            summary.published - before.0,
            summary.rejected - before.1,
        );
        let span = tracing::Span::current();
        span.record(
            "tributary.outcome",
            match &ended {
                Ok(Ended::Done) => "done",
                Ok(Ended::Duplicate) => "duplicate",
                Ok(Ended::Quarantined) => "quarantined",
                Ok(Ended::Interrupted) => "interrupted",
                Ok(Ended::Skipped) => "skipped",
                Err(_) => "failed",
            },
        );
        if matches!(ended, Ok(Ended::Done | Ended::Duplicate)) {
            self.archive(&file.path).await;
        }
        match ended {
            Ok(Ended::Done) => summary.files_done += 1,
            Ok(Ended::Duplicate) => summary.duplicates += 1,
            Ok(Ended::Quarantined) => summary.quarantined += 1,
            Ok(Ended::Interrupted) => {
                summary.interrupted = true;
                return Ok(ControlFlow::Break(()));
            }
            Ok(Ended::Skipped) => {}
            Err(error) if error.is_retryable() => {
                self.metrics.error("file");
                span.record("otel.status_code", "ERROR");
                tracing::warn!(path = file.path, %error, "file not finished, will retry");
                if self.resync {
                    // The failed transaction leaves a producer to replace: the next pass
                    // resyncs with Kafka before any other file is sent.
                    return Ok(ControlFlow::Break(()));
                }
            }
            Err(error) => {
                span.record("otel.status_code", "ERROR");
                return Err(error);
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    async fn process(
        &mut self,
        listed: &Listed,
        shutdown: &CancellationToken,
        summary: &mut PollSummary,
    ) -> Result<Ended, FilesError> {
        let plan = plan(self.state.files.get(&listed.path), listed);
        if plan == Plan::Skip {
            return Ok(Ended::Skipped);
        }
        let folder = listed.path.split('/').next().unwrap_or_default();
        let Some((partner_name, partner)) = self
            .partners
            .by_folder(folder)
            .map(|(n, p)| (n.to_string(), p.clone()))
        else {
            let reason = format!(
                "no partner is configured for folder {folder:?} (add it to the partner mapping file)"
            );
            return self
                .quarantine(listed, folder, "unknown_partner", &reason)
                .await;
        };
        let Some(format) = Format::from_path(&listed.path) else {
            let reason = "unknown file type: name it .csv, .json, .ndjson or .jsonl".to_string();
            return self
                .quarantine(listed, &partner_name, "unknown_format", &reason)
                .await;
        };

        let tap = match self.check(listed, format, &partner).await {
            Ok(tap) => tap,
            Err(FilesError::Read { source, .. }) if source.is_bad_file() => {
                let reason = source.to_string();
                return self
                    .quarantine(listed, &partner_name, source.kind(), &reason)
                    .await;
            }
            Err(other) => return Err(other),
        };

        let (file_seq, start_at) = match plan {
            Plan::Resume {
                file_seq,
                records_done,
                sha256,
            } if sha256 == tap.sha256 => (file_seq, records_done),
            _ => {
                if let Some(seen) = self
                    .state
                    .content
                    .get(&(partner_name.clone(), tap.sha256.clone()))
                    .cloned()
                {
                    let note = format!(
                        "same content as {} (file {}), already published",
                        seen.path, seen.file_seq
                    );
                    let progress = self.file_progress(
                        listed,
                        &partner_name,
                        &tap,
                        seen.file_seq,
                        FileStatus::Duplicate,
                        Some(note.clone()),
                    );
                    self.publish_progress(vec![], vec![progress]).await?;
                    tracing::Span::current().record("tributary.file_seq", seen.file_seq);
                    self.metrics.file(&partner_name, "duplicate");
                    tracing::info!(path = listed.path, %note, "duplicate file, nothing published");
                    return Ok(Ended::Duplicate);
                }
                let seq = self.next_seq;
                self.next_seq += 1;
                (seq, 0)
            }
        };
        tracing::Span::current().record("tributary.file_seq", file_seq);
        self.publish_file(
            listed,
            &partner_name,
            &partner,
            format,
            &tap,
            file_seq,
            start_at,
            shutdown,
            summary,
        )
        .await
    }

    /// After a failed transaction: a new producer (fencing our old one) and the progress read
    /// back from Kafka, so a batch that did commit is not sent again.
    async fn resync_with_kafka(&mut self) -> Result<(), FilesError> {
        self.publisher = TxPublisher::connect(&self.kafka, &self.config.transactional_id).await?;
        let records = read_progress(&self.kafka, &self.config.topics.progress).await?;
        self.state = ProgressState::from_records(&records)?;
        self.next_seq = self.state.next_file_seq();
        self.resync = false;
        tracing::info!(
            files_known = self.state.files.len(),
            "progress re-read from Kafka after a failed transaction"
        );
        Ok(())
    }

    /// Pass 1: reads the whole file without publishing, hashing it. A [`FileError`] that
    /// is the file's fault means quarantine.
    async fn check(
        &self,
        listed: &Listed,
        format: Format,
        partner: &Partner,
    ) -> Result<TapSummary, FilesError> {
        let reader = self.inbox.reader(&listed.path).await?;
        let csv = partner.csv.clone();
        let path = listed.path.clone();
        tokio::task::spawn_blocking(move || {
            let (tap, handle) = Tap::new(reader);
            read_records(format, &csv, tap, &handle, &mut |_| true)
                .map(|_| handle.summary())
                .map_err(|source| FilesError::Read { path, source })
        })
        .await
        .expect("check pass does not panic")
    }

    fn file_progress(
        &self,
        listed: &Listed,
        partner: &str,
        tap: &TapSummary,
        file_seq: i64,
        status: FileStatus,
        note: Option<String>,
    ) -> FileProgress {
        FileProgress {
            path: listed.path.clone(),
            partner: partner.to_string(),
            size: listed.size,
            e_tag: listed.e_tag.clone(),
            last_modified: listed.last_modified.clone(),
            sha256: tap.sha256.clone(),
            file_seq,
            status,
            records_done: 0,
            published: 0,
            rejected: 0,
            withdrawn: 0,
            note,
        }
    }

    fn progress_record(&self, key: String, value: &impl serde::Serialize) -> OutRecord {
        OutRecord {
            topic: self.config.topics.progress.clone(),
            key,
            value: Some(serde_json::to_vec(value).expect("progress serialises")),
            headers: vec![],
        }
    }

    /// Publishes `records` plus the file progress records in one transaction, then updates
    /// the in-memory state (only after the commit: the state mirrors the topic).
    async fn publish_progress(
        &mut self,
        mut records: Vec<OutRecord>,
        files: Vec<FileProgress>,
    ) -> Result<(), FilesError> {
        for f in &files {
            records.push(self.progress_record(file_key(&f.path), f));
        }
        if let Err(error) = self.publisher.publish(&records).await {
            self.metrics.error("publish");
            if self.publisher.is_fenced() {
                return Err(FilesError::Fenced {
                    transactional_id: self.config.transactional_id.clone(),
                });
            }
            self.resync = true;
            return Err(error.into());
        }
        for f in files {
            self.state.files.insert(f.path.clone(), f);
        }
        Ok(())
    }

    async fn quarantine(
        &mut self,
        listed: &Listed,
        partner: &str,
        kind: &str,
        reason: &str,
    ) -> Result<Ended, FilesError> {
        self.last_quarantine = Some(reason.to_string());
        let target = format!("{}/{}", inbox::QUARANTINE, listed.path);
        let mut provenance = self.provenance(listed);
        provenance.insert(
            "quarantined_to".into(),
            json!(self.inbox.object_url(&target)),
        );
        let rejected = RejectedRecord {
            source: SaleSource::Files,
            origin: partner.to_string(),
            error_kind: kind.to_string(),
            reason: format!("file quarantined: {reason}"),
            raw: String::new(),
            produced_at: now(),
            provenance,
        };
        let dead = OutRecord {
            topic: self.config.topics.dead_letters.clone(),
            key: format!("{}#file", listed.path),
            value: Some(serde_json::to_vec(&rejected).expect("rejection serialises")),
            headers: source_headers(&self.inbox.object_url(&listed.path), None),
        };
        let progress = FileProgress {
            note: Some(reason.to_string()),
            ..self.file_progress(
                listed,
                partner,
                &TapSummary::default(),
                0,
                FileStatus::Quarantined,
                None,
            )
        };
        // Record first, move second: a crash in between quarantines (and records) it again,
        // which is better than a moved file nobody was told about.
        self.publish_progress(vec![dead], vec![progress]).await?;
        let reason_text = format!(
            "{reason}\n\nfile: {}\nkind: {kind}\nquarantined at: {}\n",
            self.inbox.object_url(&listed.path),
            now()
        );
        self.inbox.quarantine(&listed.path, &reason_text).await?;
        // Metric labels stay a bounded set: the configured partners, plus one for any folder no
        // partner owns (a hostile or mistaken drop must not mint a time series per folder name).
        let label = if self.partners.partners.contains_key(partner) {
            partner
        } else {
            metrics::UNKNOWN_PARTNER
        };
        self.metrics.file(label, "quarantined");
        tracing::warn!(path = listed.path, kind, reason, "file quarantined");
        Ok(Ended::Quarantined)
    }

    fn provenance(&self, listed: &Listed) -> Map<String, Value> {
        let mut p = Map::new();
        p.insert(
            "object_url".into(),
            json!(self.inbox.object_url(&listed.path)),
        );
        p.insert("size".into(), json!(listed.size));
        p.insert("e_tag".into(), json!(listed.e_tag));
        p.insert("last_modified".into(), json!(listed.last_modified));
        p
    }

    /// Pass 2: publishes records `start_at..` in transactions of `batch_records`, then the
    /// withdrawals (snapshot partners) and the final progress.
    #[allow(clippy::too_many_arguments)]
    async fn publish_file(
        &mut self,
        listed: &Listed,
        partner_name: &str,
        partner: &Partner,
        format: Format,
        tap: &TapSummary,
        file_seq: i64,
        start_at: u64,
        shutdown: &CancellationToken,
        summary: &mut PollSummary,
    ) -> Result<Ended, FilesError> {
        let batch_records = self.config.batch_records.max(1);
        let (sender, mut receiver) = mpsc::channel::<Item>(batch_records);
        let reader = self.inbox.reader(&listed.path).await?;
        let (tapped, handle) = Tap::new(reader);
        let read_so_far = handle.clone();
        let mut base = self.provenance(listed);
        base.insert("sha256".into(), json!(tap.sha256));
        base.insert("file_seq".into(), json!(file_seq));
        let worker = {
            let partner = partner.clone();
            let partner_name = partner_name.to_string();
            let topics = self.config.topics.clone();
            let object_url = self.inbox.object_url(&listed.path);
            let path = listed.path.clone();
            let base = base.clone();
            tokio::task::spawn_blocking(move || {
                let mut ids = BTreeSet::new();
                let snapshot = partner.mode == FileMode::Snapshot;
                let now_utc = Utc::now();
                let mut visit = |record: parse::RecordRef<'_>| {
                    if snapshot
                        && let Ok(fields) = &record.fields
                        && let Some(map::FieldValue::Text(id)) =
                            fields.get(&partner.columns.sale_id)
                    {
                        ids.insert(id.to_string());
                    }
                    if record.ordinal < start_at {
                        return true;
                    }
                    let item = to_item(
                        &record,
                        &partner,
                        &partner_name,
                        &topics,
                        &object_url,
                        &base,
                        file_seq,
                        now_utc,
                    );
                    sender.blocking_send(item).is_ok()
                };
                let count = read_records(format, &partner.csv, tapped, &handle, &mut visit)
                    .map_err(|source| FilesError::Read { path, source })?;
                Ok::<_, FilesError>((count, ids, handle.summary()))
            })
        };

        let mut progress = self.file_progress(
            listed,
            partner_name,
            tap,
            file_seq,
            FileStatus::InProgress,
            None,
        );
        progress.records_done = start_at;
        if let Some(known) = self.state.files.get(&listed.path)
            && known.file_seq == file_seq
        {
            progress.published = known.published;
            progress.rejected = known.rejected;
        }
        if let Some(bar) = &self.progress_bar {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            bar.set_length(listed.size);
            bar.set_position(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_message(listed.path.clone());
        }
        self.metrics.progress(0, listed.size);

        let mut batch: Vec<OutRecord> = Vec::with_capacity(batch_records);
        let (mut published, mut rejected) = (0u64, 0u64);
        let mut interrupted = false;
        loop {
            let item = receiver.recv().await;
            let closed = item.is_none();
            if let Some(item) = item {
                progress.records_done = item.ordinal + 1;
                if item.rejected {
                    rejected += 1;
                } else {
                    published += 1;
                }
                batch.push(item.record);
            }
            if closed {
                break;
            }
            if batch.len() >= batch_records {
                progress.published += published;
                progress.rejected += rejected;
                self.publish_progress(std::mem::take(&mut batch), vec![progress.clone()])
                    .await?;
                self.count(partner_name, published, rejected, summary);
                (published, rejected) = (0, 0);
                let read = read_so_far.bytes();
                self.metrics.progress(read, listed.size);
                if let Some(bar) = &self.progress_bar {
                    bar.set_position(read);
                }
                if shutdown.is_cancelled() {
                    interrupted = true;
                    break;
                }
            }
        }
        if interrupted {
            drop(receiver);
            let _ = worker.await;
            tracing::info!(
                path = listed.path,
                records_done = progress.records_done,
                "interrupted, the file resumes here next time"
            );
            return Ok(Ended::Interrupted);
        }
        let (count, ids, read) = worker.await.expect("publish pass does not panic")?;
        if read.sha256 != tap.sha256 {
            return Err(FilesError::Changed {
                path: listed.path.clone(),
            });
        }

        // The last transaction: what is left, the withdrawals, and "done".
        let mut withdrawn = 0u64;
        let mut extra = Vec::new();
        if partner.mode == FileMode::Snapshot {
            let previous: BTreeSet<String> = match self.state.snapshots.get(partner_name) {
                Some(s) => self
                    .inbox
                    .get_text(&s.ids_path)
                    .await?
                    .lines()
                    .map(str::to_string)
                    .collect(),
                None => BTreeSet::new(),
            };
            for gone in previous.difference(&ids) {
                batch.push(self.withdrawal(partner_name, gone, file_seq, count, &base));
                withdrawn += 1;
            }
            let ids_path = format!("{STATE}/snapshots/{partner_name}/{file_seq}.ids");
            let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
            self.inbox.put_text(&ids_path, text).await?;
            let snapshot = SnapshotState { file_seq, ids_path };
            extra.push(self.progress_record(snapshot_key(partner_name), &snapshot));
            self.state
                .snapshots
                .insert(partner_name.to_string(), snapshot);
        }
        let seen = ContentSeen {
            path: listed.path.clone(),
            file_seq,
        };
        extra.push(self.progress_record(content_key(partner_name, &tap.sha256), &seen));
        batch.extend(extra);
        progress.status = FileStatus::Done;
        progress.records_done = count;
        progress.published += published;
        progress.rejected += rejected;
        progress.withdrawn = withdrawn;
        self.publish_progress(batch, vec![progress.clone()]).await?;
        self.state
            .content
            .insert((partner_name.to_string(), tap.sha256.clone()), seen);
        self.count(partner_name, published, rejected, summary);
        self.metrics.records(partner_name, "withdrawn", withdrawn);
        summary.withdrawn += withdrawn;
        self.metrics.file(partner_name, "done");
        self.metrics.progress(0, 0);
        if let Some(bar) = &self.progress_bar {
            bar.finish_and_clear();
        }
        tracing::info!(
            path = listed.path,
            file_seq,
            records = count,
            published = progress.published,
            rejected = progress.rejected,
            withdrawn,
            "file published"
        );
        Ok(Ended::Done)
    }

    fn count(&self, partner: &str, published: u64, rejected: u64, summary: &mut PollSummary) {
        self.metrics.records(partner, "published", published);
        self.metrics.records(partner, "rejected", rejected);
        summary.published += published;
        summary.rejected += rejected;
    }

    fn withdrawal(
        &self,
        partner: &str,
        sale_id: &str,
        file_seq: i64,
        records: u64,
        base: &Map<String, Value>,
    ) -> OutRecord {
        let mut provenance = base.clone();
        provenance.insert(
            "withdrawn".into(),
            json!("the partner's snapshot file no longer contains this sale"),
        );
        let event = SaleEvent {
            source: SaleSource::Files,
            origin: partner.to_string(),
            sale_id: sale_id.to_string(),
            op: SaleOp::Delete,
            version: SourceVersion {
                major: file_seq,
                minor: records as i64,
            },
            salesman_id: None,
            salesman_code: None,
            city_id: None,
            city_name: None,
            city_state: None,
            amount: None,
            currency: None,
            sold_at: None,
            produced_at: now(),
            provenance,
        };
        OutRecord {
            topic: self.config.topics.sales.clone(),
            key: event.key(),
            value: Some(serde_json::to_vec(&event).expect("event serialises")),
            headers: source_headers(
                base.get("object_url")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                None,
            ),
        }
    }
}

/// The root span of one file's ingestion (`ingest_file`): the file's path, size and partner
/// folder from the start; its sequence number, and the outcome, once known.
fn file_span(file: &Listed) -> tracing::Span {
    let folder = file.path.split('/').next().unwrap_or_default();
    tracing::info_span!(
        parent: None,
        "ingest_file",
        otel.status_code = tracing::field::Empty,
        file.path = %file.path,
        file.size = file.size,
        tributary.partner_folder = %folder,
        tributary.file_seq = tracing::field::Empty,
        tributary.outcome = tracing::field::Empty,
    )
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn source_headers(object_url: &str, record: Option<u64>) -> Vec<(String, String)> {
    let mut headers = vec![
        ("tributary-source".to_string(), "files".to_string()),
        ("tributary-object".to_string(), object_url.to_string()),
    ];
    if let Some(record) = record {
        headers.push(("tributary-record".to_string(), record.to_string()));
    }
    headers
}

/// Turns one read record into the Kafka record to send: a sale event, or a dead letter.
#[allow(clippy::too_many_arguments)]
fn to_item(
    record: &parse::RecordRef<'_>,
    partner: &Partner,
    partner_name: &str,
    topics: &crate::config::FileTopics,
    object_url: &str,
    base: &Map<String, Value>,
    file_seq: i64,
    now_utc: chrono::DateTime<Utc>,
) -> Item {
    let mut provenance = base.clone();
    provenance.insert("record".into(), json!(record.ordinal + 1));
    if let Some(line) = record.line {
        provenance.insert("line".into(), json!(line));
    }
    let headers = source_headers(object_url, Some(record.ordinal + 1));
    let mapped = match &record.fields {
        Ok(fields) => map_record(*fields, partner, now_utc),
        Err(reason) => Err(map::Rejection::new("bad_record", reason.clone())),
    };
    match mapped {
        Ok(sale) => {
            let event = SaleEvent {
                source: SaleSource::Files,
                origin: partner_name.to_string(),
                sale_id: sale.sale_id,
                op: SaleOp::Upsert,
                version: SourceVersion {
                    major: file_seq,
                    minor: record.ordinal as i64,
                },
                salesman_id: sale.salesman_id,
                salesman_code: sale.salesman_code,
                city_id: sale.city_id,
                city_name: sale.city_name,
                city_state: sale.city_state,
                amount: Some(sale.amount),
                currency: sale.currency,
                sold_at: Some(sale.sold_at),
                produced_at: now(),
                provenance,
            };
            Item {
                ordinal: record.ordinal,
                rejected: false,
                record: OutRecord {
                    topic: topics.sales.clone(),
                    key: event.key(),
                    value: Some(serde_json::to_vec(&event).expect("event serialises")),
                    headers,
                },
            }
        }
        Err(rejection) => {
            let rejected = RejectedRecord {
                source: SaleSource::Files,
                origin: partner_name.to_string(),
                error_kind: rejection.kind.to_string(),
                reason: rejection.reason,
                raw: (record.raw)(),
                produced_at: now(),
                provenance,
            };
            Item {
                ordinal: record.ordinal,
                rejected: true,
                record: OutRecord {
                    topic: topics.dead_letters.clone(),
                    key: format!(
                        "{}#{}",
                        sale_key(SaleSource::Files, partner_name, ""),
                        record.ordinal + 1
                    ),
                    value: Some(serde_json::to_vec(&rejected).expect("rejection serialises")),
                    headers,
                },
            }
        }
    }
}
