//! Settings of the ingest binary: defaults → `--config` TOML → `TRIBUTARY_*` environment
//! (`TRIBUTARY_FILES__INBOX=s3://inbox/drop`, `TRIBUTARY_KAFKA__BROKERS=…`).

use serde::{Deserialize, Serialize};
use tributary_common::{KafkaSettings, S3Settings, names};

/// Configuration of `tributary-ingest`, loaded by [`tributary_common::load`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Connection string of the store system's database (`salesdb`).
    pub salesdb_url: String,
    /// Where Kafka is.
    pub kafka: KafkaSettings,
    /// The file-drop ingestor.
    pub files: FilesConfig,
    /// The WS ingestor polling the legacy ERP (`tributary-ingest erp`).
    pub erp: crate::erp::ErpIngestConfig,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            salesdb_url:
                "host=127.0.0.1 port=5432 user=tributary password=tributary dbname=salesdb".into(),
            kafka: KafkaSettings::default(),
            files: FilesConfig::default(),
            erp: crate::erp::ErpIngestConfig::default(),
        }
    }
}

/// The file-drop ingestor's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// The inbox: a local folder (absolute, or relative to the working directory) or
    /// `s3://bucket[/prefix]` on the object store in `s3`.
    pub inbox: String,
    /// Object-store endpoint and credentials, used when `inbox` is `s3://…`.
    pub s3: S3Settings,
    /// The partner mapping file (TOML or YAML).
    pub partners: String,
    /// How often to list the inbox.
    pub poll_interval_ms: u64,
    /// A file is taken only once it is this old, so a file still being copied into a local
    /// folder is not read half-written (S3 objects appear whole; 0 is fine there).
    pub min_age_ms: u64,
    /// Records per Kafka transaction (and per progress record).
    pub batch_records: usize,
    /// Kafka transactional id. One ingestor per inbox: a second one with the same id fences
    /// the first.
    pub transactional_id: String,
    /// Topics.
    pub topics: FileTopics,
    /// Files moved to `_processed` once every record is in Kafka are deleted after this many
    /// seconds (default 7 days; the lake keeps every event).
    pub processed_retention_s: u64,
    /// Quarantined files and their reasons are deleted after this many seconds (default 30
    /// days: time for the partner to send a fixed file).
    pub quarantine_retention_s: u64,
    /// Seconds between two sweeps of `_processed` and `_quarantine`.
    pub sweep_interval_s: u64,
    /// `host:port` for `/metrics` and `/healthz`; empty disables the listener.
    pub metrics_listen: String,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            inbox: ".stack/inbox".into(),
            s3: S3Settings::default(),
            partners: "ingest/partners.toml".into(),
            poll_interval_ms: 2_000,
            min_age_ms: 1_000,
            batch_records: 5_000,
            transactional_id: "tributary-files".into(),
            topics: FileTopics::default(),
            metrics_listen: String::new(),
            processed_retention_s: 7 * 24 * 3_600,
            quarantine_retention_s: 30 * 24 * 3_600,
            sweep_interval_s: 3_600,
        }
    }
}

/// Where the file ingestor writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileTopics {
    /// Sale events.
    pub sales: String,
    /// Rejected records and files.
    pub dead_letters: String,
    /// The ingestor's own progress (compacted).
    pub progress: String,
}

impl Default for FileTopics {
    fn default() -> Self {
        Self {
            sales: names::TOPIC_FILE_SALES.into(),
            dead_letters: names::TOPIC_FILE_DEAD_LETTERS.into(),
            progress: names::TOPIC_FILE_PROGRESS.into(),
        }
    }
}

impl FilesConfig {
    /// Checks what the ingestor cannot run without; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.inbox.trim().is_empty() {
            return Err("files.inbox must name a folder or s3://bucket/prefix".into());
        }
        if self.transactional_id.trim().is_empty() {
            return Err("files.transactional_id must not be empty".into());
        }
        if self.batch_records == 0 {
            return Err("files.batch_records must be at least 1".into());
        }
        for (key, topic) in [
            ("files.topics.sales", &self.topics.sales),
            ("files.topics.dead_letters", &self.topics.dead_letters),
            ("files.topics.progress", &self.topics.progress),
        ] {
            if topic.trim().is_empty() {
                return Err(format!("{key} must not be empty"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tributary_common::compose::assert_wired;

    use super::*;
    use crate::erp::ErpSimConfig;

    /// compose.yaml sets every setting each ingest service uses that defaults to loopback to a
    /// compose host (each service is checked on the parts of the config it reads).
    #[test]
    fn compose_wiring() {
        let config = IngestConfig::default();
        let files = serde_json::json!({"kafka": config.kafka, "files": config.files});
        let erp = serde_json::json!({"kafka": config.kafka, "erp": config.erp});
        let manifest = env!("CARGO_MANIFEST_DIR");
        assert_wired(manifest, "ingest-files", &files);
        assert_wired(manifest, "ingest-erp", &erp);
        assert_wired(manifest, "erp-sim", &ErpSimConfig::default());
    }
}
