//! The WS ingestor: polls the ERP page by page and publishes each page exactly once.
//!
//! ```text
//! open: ensure topics ─► fence (transactional id) ─► read cursor:<origin> from the progress topic
//! loop: poll_page(cursor) ─► one Kafka transaction:
//!           sale events (raw.ws.sales) + rejected changes (raw.ws.dead_letters)
//!           + progress record {next_cursor, last sequence, counts}
//!       ─► commit ─► cursor = next_cursor ─► again at once while has_more, else sleep
//! ```
//!
//! The cursor only moves forward in memory once the transaction holding the page *and* the new
//! cursor committed, so a crash at any point resumes from a cursor that matches exactly what is
//! in Kafka: no gap, no duplicate. A publish whose outcome is unknown (a commit that timed out)
//! is settled by reconnecting — which fences and aborts whatever is still open — and reading the
//! cursor back, never by guessing.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tributary_common::KafkaSettings;
use tributary_common::sale_event::{SaleOp, SaleSource, sale_key};

use super::client::ErpClient;
use super::config::ErpIngestConfig;
use super::error::ErpError;
use super::metrics::ErpMetrics;
use super::poller::{ErpPoller, Page};
use crate::publish::{
    OutRecord, PublishError, TopicSpec, TxPublisher, ensure_topics, read_progress,
};

/// Why a poll did not get a page into Kafka, or why the ingestor stopped.
#[derive(Debug, thiserror::Error)]
pub enum ErpIngestError {
    /// The ERP call failed (after the client's own retries).
    #[error(transparent)]
    Erp(#[from] ErpError),
    /// Kafka failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// Another ingestor with the same transactional id took over: this one must stop (its
    /// last transaction was aborted, so nothing it sent is visible).
    #[error(
        "fenced: another ERP ingestor with transactional id {transactional_id:?} took over ({source})"
    )]
    Fenced {
        /// The id both use.
        transactional_id: String,
        /// The failed publish.
        source: PublishError,
    },
    /// The progress topic holds a cursor record we cannot read: it was written by something
    /// else. Fix or delete the key (a tombstone restarts from the beginning of the ERP's log).
    #[error("progress record {key:?} in {topic} is unreadable: {message}")]
    Progress {
        /// The topic.
        topic: String,
        /// The key.
        key: String,
        /// serde's message.
        message: String,
    },
    /// A metric could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl ErpIngestError {
    /// Whether polling the same cursor again later may succeed without anyone acting:
    /// transient ERP failures and Kafka outages. Refused credentials, unsafe or off-schema
    /// responses, a fenced producer and a corrupt progress topic are permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            ErpIngestError::Erp(e) => e.is_retryable(),
            ErpIngestError::Publish(e) => e.is_retryable(),
            ErpIngestError::Fenced { .. }
            | ErpIngestError::Progress { .. }
            | ErpIngestError::Metrics(_)
            | ErpIngestError::Config(_) => false,
        }
    }

    /// Whether the service must stop rather than wait and try again: another ingestor took over
    /// the transactional id, or our own state cannot be read.
    pub fn is_fatal(&self) -> bool {
        match self {
            ErpIngestError::Publish(e) => !e.is_retryable(),
            ErpIngestError::Fenced { .. }
            | ErpIngestError::Progress { .. }
            | ErpIngestError::Metrics(_)
            | ErpIngestError::Config(_) => true,
            ErpIngestError::Erp(_) => false,
        }
    }

    /// The `stage` label of `tributary_ingest_errors_total`.
    pub fn stage(&self) -> &'static str {
        match self {
            ErpIngestError::Erp(e) => e.label(),
            ErpIngestError::Publish(_) => "publish",
            ErpIngestError::Fenced { .. } => "fenced",
            ErpIngestError::Progress { .. } => "progress",
            ErpIngestError::Metrics(_) => "metrics",
            ErpIngestError::Config(_) => "config",
        }
    }

    /// The delay the ERP asked for, if any.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            ErpIngestError::Erp(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// What the ingestor remembers about one ERP, under the key [`cursor_key`] of the progress
/// topic, written in the same transaction as the page it follows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErpProgress {
    /// The cursor to ask with next (empty = the start of the ERP's log).
    pub cursor: String,
    /// The newest change sequence published (0 before the first).
    pub last_sequence: i64,
    /// Pages published so far.
    pub pages: u64,
    /// Upserts published so far.
    pub upserts: u64,
    /// Cancellations published so far.
    pub cancels: u64,
    /// Changes dead-lettered so far.
    pub rejected: u64,
    /// The endpoint polled.
    pub endpoint: String,
    /// When this record was written, RFC 3339.
    pub updated_at: String,
}

/// Key of an ERP's cursor in the progress topic.
pub fn cursor_key(origin: &str) -> String {
    format!("cursor:{origin}")
}

/// What one successful poll did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollOutcome {
    /// Upserts published.
    pub upserts: u64,
    /// Cancellations published.
    pub cancels: u64,
    /// Changes dead-lettered.
    pub rejected: u64,
    /// Whether the ERP had more right away.
    pub has_more: bool,
}

/// Totals of a [`ErpIngestor::run`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Pages published.
    pub pages: u64,
    /// Upserts published.
    pub upserts: u64,
    /// Cancellations published.
    pub cancels: u64,
    /// Changes dead-lettered.
    pub rejected: u64,
    /// Polls that failed (and were retried).
    pub failures: u64,
}

/// Polls one ERP into Kafka.
pub struct ErpIngestor {
    kafka: KafkaSettings,
    config: ErpIngestConfig,
    poller: ErpPoller,
    /// `None` after a publish failed: reconnected (and the cursor re-read) before the next poll.
    publisher: Option<TxPublisher>,
    progress: ErpProgress,
    metrics: ErpMetrics,
    /// OpenLineage: a run per published page (`OPENLINEAGE_*`, off by default).
    lineage: super::lineage::ErpLineage,
}

impl std::fmt::Debug for ErpIngestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErpIngestor")
            .field("endpoint", &self.config.client.endpoint)
            .field("cursor", &self.progress.cursor)
            .finish_non_exhaustive()
    }
}

impl ErpIngestor {
    /// Creates the topics if needed, takes over the transactional id (fencing any earlier
    /// ingestor, whose unfinished transaction is aborted), then reads the cursor back.
    pub async fn open(
        kafka: &KafkaSettings,
        config: ErpIngestConfig,
        metrics: ErpMetrics,
    ) -> Result<Self, ErpIngestError> {
        let client = ErpClient::new(config.client.clone())?;
        Self::with_client(kafka, config, client, metrics).await
    }

    /// As [`Self::open`] with a given client (tests inject a clock or nonce source).
    pub async fn with_client(
        kafka: &KafkaSettings,
        config: ErpIngestConfig,
        client: ErpClient,
        metrics: ErpMetrics,
    ) -> Result<Self, ErpIngestError> {
        config.validate().map_err(ErpIngestError::Config)?;
        let topics = &config.topics;
        ensure_topics(
            kafka,
            &[
                TopicSpec {
                    name: topics.sales.clone(),
                    partitions: 1,
                    compacted: false,
                },
                TopicSpec {
                    name: topics.dead_letters.clone(),
                    partitions: 1,
                    compacted: false,
                },
                TopicSpec {
                    name: topics.progress.clone(),
                    partitions: 1,
                    compacted: true,
                },
            ],
        )
        .await?;
        let lineage = super::lineage::ErpLineage::from_env(
            &config.client.endpoint,
            &config.client.origin,
            &kafka.brokers,
            &topics.sales,
            &topics.dead_letters,
        );
        // Already registered when a test opens several ingestors on one registry: keep the first.
        let _ = lineage.lineage().register_metrics(&metrics.registry);
        let mut ingestor = Self {
            kafka: kafka.clone(),
            poller: ErpPoller::new(client),
            config,
            publisher: None,
            progress: ErpProgress::default(),
            metrics,
            lineage,
        };
        ingestor.connect().await?;
        tracing::info!(
            endpoint = ingestor.config.client.endpoint,
            origin = ingestor.config.client.origin,
            cursor = ingestor.progress.cursor,
            last_sequence = ingestor.progress.last_sequence,
            pages = ingestor.progress.pages,
            "erp ingestor ready"
        );
        Ok(ingestor)
    }

    /// Fence first, read second: once we are the producer, nobody else can move the cursor,
    /// so what we read is what is in Kafka.
    async fn connect(&mut self) -> Result<(), ErpIngestError> {
        self.publisher = None;
        let publisher = TxPublisher::connect(&self.kafka, &self.config.transactional_id).await?;
        let topic = &self.config.topics.progress;
        let key = cursor_key(&self.config.client.origin);
        let records = read_progress(&self.kafka, topic).await?;
        self.progress = match records.get(&key) {
            Some(value) => serde_json::from_slice(value).map_err(|e| ErpIngestError::Progress {
                topic: topic.clone(),
                key: key.clone(),
                message: e.to_string(),
            })?,
            None => ErpProgress::default(),
        };
        self.metrics
            .set_sequence(&self.config.client.origin, self.progress.last_sequence);
        self.publisher = Some(publisher);
        Ok(())
    }

    /// The cursor the next poll asks with (as last committed to Kafka).
    pub fn cursor(&self) -> &str {
        &self.progress.cursor
    }

    /// The progress as last committed.
    pub fn progress(&self) -> &ErpProgress {
        &self.progress
    }

    /// The metrics.
    pub fn metrics(&self) -> &ErpMetrics {
        &self.metrics
    }

    /// Fetches the page after the current cursor and publishes it with the next cursor in one
    /// transaction. On failure the cursor stays where it was and the error is counted. The
    /// poll is one `erp_poll` span: its log lines carry its trace id, and the Kafka batch it
    /// publishes is its child.
    pub async fn poll_once(&mut self) -> Result<PollOutcome, ErpIngestError> {
        let span = self.poll_span();
        self.poll_counted().instrument(span).await
    }

    /// The root span of one poll: the ERP, the cursor asked with; what came back once known.
    fn poll_span(&self) -> tracing::Span {
        tracing::info_span!(
            parent: None,
            "erp_poll",
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            url.full = %tributary_common::config::redact_url(&self.config.client.endpoint),
            tributary.erp.origin = %self.config.client.origin,
            tributary.erp.cursor = %self.progress.cursor,
            tributary.erp.changes = tracing::field::Empty,
            tributary.erp.has_more = tracing::field::Empty,
        )
    }

    /// [`Self::poll_once`] inside the current span: lineage, error counts, span attributes.
    async fn poll_counted(&mut self) -> Result<PollOutcome, ErpIngestError> {
        let started_at = chrono::Utc::now();
        let result = self.try_poll().await;
        self.lineage.poll(started_at, &result);
        let span = tracing::Span::current();
        match &result {
            Ok(outcome) => {
                span.record(
                    "tributary.erp.changes",
                    (outcome.upserts + outcome.cancels + outcome.rejected) as i64,
                );
                span.record("tributary.erp.has_more", outcome.has_more);
            }
            Err(error) => {
                self.metrics.error(error.stage());
                span.record("otel.status_code", "ERROR");
                span.record("error.type", error.stage());
            }
        }
        result
    }

    async fn try_poll(&mut self) -> Result<PollOutcome, ErpIngestError> {
        if self.publisher.is_none() {
            self.connect().await?;
        }
        let page = self.poller.poll_page(&self.progress.cursor).await?;
        if page.events.is_empty()
            && page.rejected.is_empty()
            && page.next_cursor == self.progress.cursor
        {
            // Nothing new: no transaction, so an idle poller does not grow the progress topic.
            self.metrics.polled(
                &self.config.client.origin,
                u64::from(page.call.attempts.saturating_sub(1)),
            );
            return Ok(PollOutcome {
                has_more: page.has_more,
                ..PollOutcome::default()
            });
        }
        let (records, next, outcome) = self.page_records(&page);
        let publisher = self
            .publisher
            .as_ref()
            .expect("connected above: a publisher is present");
        if let Err(error) = publisher.publish(&records).await {
            if publisher.is_fenced() {
                return Err(ErpIngestError::Fenced {
                    transactional_id: self.config.transactional_id.clone(),
                    source: error,
                });
            }
            // The commit may or may not have happened: settle it by reconnecting before the
            // next poll instead of assuming either.
            self.publisher = None;
            return Err(error.into());
        }
        let origin = &self.config.client.origin;
        self.metrics.page_committed(
            origin,
            outcome.upserts,
            outcome.cancels,
            outcome.rejected,
            u64::from(page.call.attempts.saturating_sub(1)),
        );
        self.metrics.set_sequence(origin, next.last_sequence);
        if !page.events.is_empty() || !page.rejected.is_empty() {
            tracing::info!(
                cursor = page.cursor,
                next_cursor = page.next_cursor,
                last_sequence = next.last_sequence,
                upserts = outcome.upserts,
                cancels = outcome.cancels,
                rejected = outcome.rejected,
                request_id = page.call.request_id,
                has_more = page.has_more,
                "erp page published"
            );
        }
        self.progress = next;
        Ok(outcome)
    }

    /// The transaction for `page`: events, dead letters, and the progress that follows them.
    fn page_records(&self, page: &Page) -> (Vec<OutRecord>, ErpProgress, PollOutcome) {
        let topics = &self.config.topics;
        let origin = &self.config.client.origin;
        let headers = page_headers(page);
        let mut records = Vec::with_capacity(page.events.len() + page.rejected.len() + 1);
        let mut outcome = PollOutcome {
            has_more: page.has_more,
            ..PollOutcome::default()
        };
        let mut last_sequence = self.progress.last_sequence;
        for event in &page.events {
            match event.op {
                SaleOp::Upsert => outcome.upserts += 1,
                SaleOp::Delete => outcome.cancels += 1,
            }
            last_sequence = last_sequence.max(event.version.major);
            let mut headers = headers.clone();
            headers.push(("tributary-sequence".into(), event.version.major.to_string()));
            records.push(OutRecord {
                topic: topics.sales.clone(),
                key: event.key(),
                value: Some(serde_json::to_vec(event).expect("a sale event serialises")),
                headers,
            });
        }
        for (i, rejected) in page.rejected.iter().enumerate() {
            outcome.rejected += 1;
            records.push(OutRecord {
                topic: topics.dead_letters.clone(),
                // Unique per change: the request that brought it and its place in the page.
                key: format!(
                    "{}#{}#{}",
                    sale_key(SaleSource::Erp, origin, ""),
                    page.call.request_id,
                    i + 1
                ),
                value: Some(serde_json::to_vec(rejected).expect("a rejection serialises")),
                headers: headers.clone(),
            });
        }
        let next = ErpProgress {
            cursor: page.next_cursor.clone(),
            last_sequence,
            pages: self.progress.pages + 1,
            upserts: self.progress.upserts + outcome.upserts,
            cancels: self.progress.cancels + outcome.cancels,
            rejected: self.progress.rejected + outcome.rejected,
            endpoint: page.call.endpoint.clone(),
            updated_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        };
        records.push(OutRecord {
            topic: topics.progress.clone(),
            key: cursor_key(origin),
            value: Some(serde_json::to_vec(&next).expect("progress serialises")),
            headers: vec![],
        });
        (records, next, outcome)
    }

    /// Polls until `shutdown`, or, when `once`, until the ERP has nothing more.
    ///
    /// Transient failures are counted, logged and retried after an exponential backoff (at
    /// least the ERP's retry-after). Permanent ones (refused credentials, an unsafe or
    /// off-schema response) are counted and logged as errors; the service then waits
    /// `permanent_backoff_ms` and asks for the *same* cursor again — it neither dies on one bad
    /// response nor skips it — while `--once` fails at once. A fenced producer or an unreadable
    /// progress topic always stops the ingestor.
    pub async fn run(
        self,
        once: bool,
        shutdown: CancellationToken,
    ) -> Result<RunSummary, ErpIngestError> {
        let lineage = self.lineage.clone();
        let result = self.run_polls(once, shutdown).await;
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

    async fn run_polls(
        mut self,
        once: bool,
        shutdown: CancellationToken,
    ) -> Result<RunSummary, ErpIngestError> {
        let mut summary = RunSummary::default();
        let mut failures_in_a_row: u32 = 0;
        loop {
            if shutdown.is_cancelled() {
                return Ok(summary);
            }
            let span = self.poll_span();
            let polled = self.poll_counted().instrument(span.clone()).await;
            let pause = match polled {
                Ok(outcome) => {
                    failures_in_a_row = 0;
                    summary.pages += 1;
                    summary.upserts += outcome.upserts;
                    summary.cancels += outcome.cancels;
                    summary.rejected += outcome.rejected;
                    if outcome.has_more {
                        continue;
                    }
                    if once {
                        return Ok(summary);
                    }
                    self.config.client.poll_interval()
                }
                Err(error) => {
                    // What is decided about a failed poll is logged in its span (no await here).
                    let _in_poll = span.enter();
                    summary.failures += 1;
                    failures_in_a_row = failures_in_a_row.saturating_add(1);
                    let stage = error.stage();
                    if error.is_fatal() {
                        tracing::error!(%error, stage, "erp ingestor cannot go on");
                        return Err(error);
                    }
                    if !error.is_retryable() {
                        if once {
                            tracing::error!(%error, stage, cursor = self.progress.cursor, "erp poll failed permanently");
                            return Err(error);
                        }
                        let pause = Duration::from_millis(self.config.permanent_backoff_ms);
                        tracing::error!(
                            %error,
                            stage,
                            cursor = self.progress.cursor,
                            retry_in_ms = pause.as_millis() as u64,
                            "erp poll failed permanently: needs a person (credentials, clock, the ERP's output); retrying the same cursor"
                        );
                        pause
                    } else {
                        if once && failures_in_a_row >= self.config.once_max_failures.max(1) {
                            tracing::error!(%error, stage, failures_in_a_row, "erp poll keeps failing, giving up (--once)");
                            return Err(error);
                        }
                        let pause = backoff(&self.config, failures_in_a_row, error.retry_after());
                        tracing::warn!(
                            %error,
                            stage,
                            cursor = self.progress.cursor,
                            retry_in_ms = pause.as_millis() as u64,
                            "erp poll failed, retrying"
                        );
                        pause
                    }
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(summary),
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// Exponential from `backoff_ms`, capped, with up to 25 % jitter so a fleet of pollers does not
/// retry in step; never shorter than what the ERP asked for (itself capped, so a hostile value
/// cannot park the poller for days).
fn backoff(config: &ErpIngestConfig, failures_in_a_row: u32, asked: Option<Duration>) -> Duration {
    let base = config.backoff_ms.max(1);
    let exp = base.saturating_mul(1u64 << failures_in_a_row.saturating_sub(1).min(20));
    let capped = exp.min(config.max_backoff_ms.max(base));
    let jitter = rand::random_range(0..=capped / 4);
    let delay = Duration::from_millis(capped + jitter);
    let asked = asked.unwrap_or_default().min(Duration::from_millis(
        config.client.retry.max_retry_after_ms,
    ));
    delay.max(asked)
}

/// Provenance headers of every record of a page (the lander keeps the value whole; headers let
/// a consumer route or trace without parsing it).
fn page_headers(page: &Page) -> Vec<(String, String)> {
    vec![
        ("tributary-source".into(), "erp".into()),
        ("tributary-endpoint".into(), page.call.endpoint.clone()),
        (
            "tributary-operation".into(),
            page.call.operation.as_str().into(),
        ),
        ("tributary-cursor".into(), page.cursor.clone()),
        ("tributary-request-id".into(), page.call.request_id.clone()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_round_trips_and_old_records_still_read() {
        let p = ErpProgress {
            cursor: "abc".into(),
            last_sequence: 7,
            pages: 2,
            upserts: 6,
            cancels: 1,
            rejected: 0,
            endpoint: "http://erp/ws/sales".into(),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
        };
        let json = serde_json::to_vec(&p).unwrap();
        assert_eq!(serde_json::from_slice::<ErpProgress>(&json).unwrap(), p);
        assert_eq!(cursor_key("erp"), "cursor:erp");
    }

    #[test]
    fn errors_sort_into_retry_wait_and_stop() {
        let auth = ErpIngestError::Erp(ErpError::Config { reason: "x".into() });
        assert!(!auth.is_retryable() && !auth.is_fatal());
        assert_eq!(auth.stage(), "config");
        let throttled = ErpIngestError::Erp(ErpError::Throttled {
            reason: "slow down".into(),
            retry_after: Some(Duration::from_secs(3)),
        });
        assert!(throttled.is_retryable() && !throttled.is_fatal());
        assert_eq!(throttled.stage(), "throttled");
        assert_eq!(throttled.retry_after(), Some(Duration::from_secs(3)));
        let corrupt = ErpIngestError::Progress {
            topic: "t".into(),
            key: "k".into(),
            message: "m".into(),
        };
        assert!(corrupt.is_fatal());
    }

    #[test]
    fn backoff_doubles_caps_and_honours_retry_after() {
        let config = ErpIngestConfig {
            backoff_ms: 100,
            max_backoff_ms: 1_000,
            ..ErpIngestConfig::default()
        };
        let ms = |n, asked| backoff(&config, n, asked).as_millis() as u64;
        assert!((100..=125).contains(&ms(1, None)));
        assert!((400..=500).contains(&ms(3, None)));
        assert!((1_000..=1_250).contains(&ms(30, None)));
        assert_eq!(ms(1, Some(Duration::from_secs(5))), 5_000);
        // A retry-after beyond the configured bound is cut to it.
        assert_eq!(ms(1, Some(Duration::from_secs(86_400))), 60_000);
    }
}
