//! The file ingestor's Prometheus metrics (`tributary_ingest_*`), bounded labels only, and
//! its readiness checks; both are served on `files.metrics_listen` by the shared listener
//! ([`tributary_common::health::serve`]: `/metrics`, `/healthz`, `/readyz`).

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tributary_common::KafkaSettings;
use tributary_common::health::{self, ReadinessChecks};

use crate::config::FilesConfig;

/// The `partner` label of files in a folder no configured partner owns: the label set stays
/// bounded whatever folders appear in the inbox.
pub const UNKNOWN_PARTNER: &str = "_unknown";

/// Metrics of one file ingestor.
#[derive(Clone)]
pub struct FileMetrics {
    /// Registry to expose.
    pub registry: Registry,
    files: IntCounterVec,
    records: IntCounterVec,
    errors: IntCounterVec,
    inbox: IntCounterVec,
    current_bytes_read: IntGauge,
    current_bytes_total: IntGauge,
}

impl std::fmt::Debug for FileMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileMetrics").finish_non_exhaustive()
    }
}

impl FileMetrics {
    /// Creates and registers the metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let files = IntCounterVec::new(
            Opts::new(
                "tributary_ingest_files_total",
                "Partner files finished, by outcome (done, duplicate, quarantined)",
            ),
            &["partner", "outcome"],
        )?;
        let records = IntCounterVec::new(
            Opts::new(
                "tributary_ingest_records_total",
                "Records of partner files, by outcome (published, rejected, withdrawn)",
            ),
            &["source", "partner", "outcome"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "tributary_ingest_errors_total",
                "Failures that will be retried (object store, Kafka), by stage",
            ),
            &["source", "stage"],
        )?;
        let inbox = IntCounterVec::new(
            Opts::new(
                "tributary_ingest_inbox_objects_total",
                "Inbox objects moved or deleted by the ingestor, by action (archived, expired_processed, expired_quarantined)",
            ),
            &["action"],
        )?;
        let current_bytes_read = IntGauge::new(
            "tributary_ingest_file_read_bytes",
            "Bytes of the file being published read so far (progress of a long ingest)",
        )?;
        let current_bytes_total = IntGauge::new(
            "tributary_ingest_file_size_bytes",
            "Size of the file being published (0 when idle)",
        )?;
        registry.register(Box::new(files.clone()))?;
        registry.register(Box::new(records.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(inbox.clone()))?;
        for action in ["archived", "expired_processed", "expired_quarantined"] {
            inbox.with_label_values(&[action]);
        }
        registry.register(Box::new(current_bytes_read.clone()))?;
        registry.register(Box::new(current_bytes_total.clone()))?;
        Ok(Self {
            registry,
            files,
            records,
            errors,
            inbox,
            current_bytes_read,
            current_bytes_total,
        })
    }

    /// Creates every series of a partner at 0, so rates and alerts work before its first file.
    pub fn init_partner(&self, partner: &str) {
        for outcome in ["done", "duplicate", "quarantined"] {
            self.files.with_label_values(&[partner, outcome]);
        }
        for outcome in ["published", "rejected", "withdrawn"] {
            self.records.with_label_values(&["files", partner, outcome]);
        }
        for stage in ["list", "file", "publish"] {
            self.errors.with_label_values(&["files", stage]);
        }
    }

    /// A file finished with `outcome`.
    pub fn file(&self, partner: &str, outcome: &str) {
        self.files.with_label_values(&[partner, outcome]).inc();
    }

    /// `n` records of a partner had `outcome`.
    pub fn records(&self, partner: &str, outcome: &str, n: u64) {
        self.records
            .with_label_values(&["files", partner, outcome])
            .inc_by(n);
    }

    /// A retryable failure at `stage`.
    pub fn error(&self, stage: &str) {
        self.errors.with_label_values(&["files", stage]).inc();
    }

    /// Inbox objects archived or expired (`action`: archived, expired_processed,
    /// expired_quarantined).
    pub fn inbox_objects(&self, action: &str, n: u64) {
        self.inbox.with_label_values(&[action]).inc_by(n);
    }

    /// Progress of the current file.
    pub fn progress(&self, read: u64, total: u64) {
        self.current_bytes_read.set(read as i64);
        self.current_bytes_total.set(total as i64);
    }

    /// Current count of `outcome` for a partner (tests).
    pub fn records_count(&self, partner: &str, outcome: &str) -> u64 {
        self.records
            .with_label_values(&["files", partner, outcome])
            .get()
    }

    /// Current count of finished files with `outcome` (tests).
    pub fn files_count(&self, partner: &str, outcome: &str) -> u64 {
        self.files.with_label_values(&[partner, outcome]).get()
    }

    /// Current count of inbox objects moved or deleted by `action` (tests).
    pub fn inbox_objects_count(&self, action: &str) -> u64 {
        self.inbox.with_label_values(&[action]).get()
    }
}

/// The Prometheus text exposition of `registry` (what `/metrics` serves).
pub fn encode(registry: &Registry) -> String {
    let mut out = Vec::new();
    // Encoding well-formed families into a Vec cannot fail.
    let _ = prometheus::Encoder::encode(
        &prometheus::TextEncoder::new(),
        &registry.gather(),
        &mut out,
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// What the file ingestor needs (`/readyz`): Kafka, which holds its topics *and* its progress
/// (the compacted progress topic: there is no other progress store), and the inbox — the local
/// folder, or the bucket and prefix on the object store.
pub fn readiness(kafka: &KafkaSettings, files: &FilesConfig) -> ReadinessChecks {
    let checks = ReadinessChecks::new();
    let timeout = checks.timeout();
    checks
        .check("kafka", health::kafka_metadata(kafka, timeout))
        .check(
            "inbox",
            health::object_store_lists(&files.inbox, &files.s3, timeout),
        )
}
