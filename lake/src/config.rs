//! The lander's typed config: defaults → file (`--config`/`TRIBUTARY_CONFIG`) → `TRIBUTARY_*`
//! environment (`TRIBUTARY_BATCH_MAX_ROWS=500`, `TRIBUTARY_TOPICS__SALE=…`).

use std::path::Path;

use serde::{Deserialize, Serialize};
use tributary_common::{KafkaSettings, LakeSettings};

use crate::error::LakeError;
use crate::maintenance::MaintenanceSettings;
pub use tributary_raw::topics::{Route, TopicsConfig};

/// Everything the lander needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LanderConfig {
    /// Where Kafka is.
    pub kafka: KafkaSettings,
    /// Where the lake is.
    pub lake: LakeSettings,
    /// Which topic feeds which raw table.
    pub topics: TopicsConfig,
    /// Consumer group id. Used only to publish consumed offsets for lag monitoring: the lander
    /// never reads its position from the group, only from the lake.
    pub group_id: String,
    /// Commit when this many rows (change + dead-letter) are buffered.
    pub batch_max_rows: usize,
    /// Commit at the latest this long after the first buffered record.
    pub commit_interval_ms: u64,
    /// How often to look for topics/partitions that appeared since start (Debezium creates the
    /// topics when it first sees a table).
    pub discovery_interval_ms: u64,
    /// How long to wait at start for the namespace's writer lock (a lander that just died still
    /// holds it until Postgres notices).
    pub writer_lock_wait_ms: u64,
    /// `host:port` for `/metrics` and `/healthz`; empty disables the listener.
    pub metrics_listen: String,
    /// Lake maintenance the lander runs between its commits (`[maintenance]`).
    pub maintenance: MaintenanceSettings,
    /// When `/readyz` reports the lander behind (`[health]`).
    pub health: crate::metrics::BacklogSettings,
}

impl Default for LanderConfig {
    fn default() -> Self {
        Self {
            kafka: KafkaSettings::default(),
            lake: LakeSettings::default(),
            topics: TopicsConfig::default(),
            group_id: "tributary-lander".into(),
            batch_max_rows: 50_000,
            commit_interval_ms: 1_000,
            discovery_interval_ms: 5_000,
            writer_lock_wait_ms: 30_000,
            metrics_listen: String::new(),
            maintenance: MaintenanceSettings::default(),
            health: crate::metrics::BacklogSettings::default(),
        }
    }
}

impl LanderConfig {
    /// Loads defaults → `file` → environment, then validates.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, LakeError> {
        let config: LanderConfig = tributary_common::load(file, env)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and that no topic feeds two tables.
    pub fn validate(&self) -> Result<(), LakeError> {
        let invalid = |field, problem: &str| {
            Err(LakeError::InvalidConfig {
                field,
                problem: problem.to_string(),
            })
        };
        if self.batch_max_rows == 0 {
            return invalid("batch_max_rows", "must be at least 1");
        }
        if self.commit_interval_ms == 0 {
            return invalid("commit_interval_ms", "must be at least 1");
        }
        if self.discovery_interval_ms == 0 {
            return invalid("discovery_interval_ms", "must be at least 1");
        }
        if self.lake.namespace.trim().is_empty() {
            return invalid("lake.namespace", "must not be empty");
        }
        if self.group_id.trim().is_empty() {
            return invalid("group_id", "must not be empty");
        }
        self.maintenance.validate()?;
        let routes = self.topics.routes();
        for (i, (topic, _)) in routes.iter().enumerate() {
            let valid = !topic.is_empty()
                && topic
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
            if !valid {
                return invalid(
                    "topics",
                    &format!("{topic:?} is not a valid Kafka topic name"),
                );
            }
            if routes[..i].iter().any(|(t, _)| t == topic) {
                return invalid("topics", &format!("{topic:?} feeds two tables"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// compose.yaml sets every setting of the lander that defaults to loopback to a compose host.
    #[test]
    fn compose_wiring() {
        tributary_common::compose::assert_wired(
            env!("CARGO_MANIFEST_DIR"),
            "lake",
            &LanderConfig::default(),
        );
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_architecture() {
        let c = LanderConfig::load(None, env(&[])).unwrap();
        assert_eq!(c.batch_max_rows, 50_000);
        assert_eq!(c.commit_interval_ms, 1_000);
        assert_eq!(c.lake.namespace, "raw");
        assert_eq!(c.topics.sale, "salesdb.public.sale");
        assert_eq!(c.lake.catalog_name, "tributary");
    }

    #[test]
    fn environment_overrides() {
        let c = LanderConfig::load(
            None,
            env(&[
                ("TRIBUTARY_BATCH_MAX_ROWS", "500"),
                ("TRIBUTARY_TOPICS__SALE", "it.sale"),
                ("TRIBUTARY_LAKE__NAMESPACE", "raw_it"),
            ]),
        )
        .unwrap();
        assert_eq!(c.batch_max_rows, 500);
        assert_eq!(c.topics.sale, "it.sale");
        assert_eq!(c.lake.namespace, "raw_it");
    }

    #[test]
    fn bad_values_are_refused_with_the_key() {
        let e = LanderConfig::load(None, env(&[("TRIBUTARY_BATCH_MAX_ROWS", "0")])).unwrap_err();
        assert!(e.to_string().contains("batch_max_rows"), "{e}");
        let e = LanderConfig::load(
            None,
            env(&[("TRIBUTARY_TOPICS__CITY", "salesdb.public.sale")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("feeds two tables"), "{e}");
        let e = LanderConfig::load(None, env(&[("TRIBUTARY_TOPICS__CITY", "a/b")])).unwrap_err();
        assert!(e.to_string().contains("not a valid Kafka topic"), "{e}");
        assert!(LanderConfig::load(None, env(&[("TRIBUTARY_BATCH_ROWS", "1")])).is_err());
    }
}
