//! `MartsConfig`: where the lake and ClickHouse are, and how often to run.

use serde::{Deserialize, Serialize};
use tributary_common::{ClickHouseSettings, LakeSettings};

/// The marts job's configuration (`tributary_common::load`: defaults → `--config` file →
/// `TRIBUTARY_*` environment, e.g. `TRIBUTARY_INTERVAL_MS=5000`,
/// `TRIBUTARY_CLICKHOUSE__URL=http://…`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MartsConfig {
    /// The Iceberg catalog and warehouse the raw tables are in.
    pub lake: LakeSettings,
    /// Where the rankings are published.
    pub clickhouse: ClickHouseSettings,
    /// Longest time between the starts of two scheduled runs, in milliseconds: a run also starts
    /// as soon as the lander announces a commit (Postgres catalogs).
    pub interval_ms: u64,
    /// The events one run reads at most (about: every table stops at one commit time, and a
    /// run takes at least the next commit, however large). A marts job that fell behind, or a
    /// rebuild of a large lake, then works through it in slices whose memory this bounds (about
    /// 1–2 KB per event) instead of holding all of it at once.
    pub max_events_per_run: u64,
    /// Where the incremental state is kept.
    pub state: StateSettings,
    /// `host:port` for `/metrics` and `/healthz`; empty (the default) disables the listener.
    pub metrics_listen: String,
    /// The Trino coordinator a `--engine trino` rebuild runs on (`dev/up trino`).
    pub trino: crate::trino::TrinoSettings,
    /// How long publications and runs stay in ClickHouse.
    pub retention: RetentionSettings,
    /// When `/readyz` reports the runs behind.
    pub health: HealthSettings,
}

/// When the marts' `/readyz` reports them behind (`[health]`, an optional check: a marts job
/// behind is reported, not taken out of service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSettings {
    /// Scheduled runs failed in a row before the check fails.
    pub max_failed_runs: u32,
    /// Seconds without a good run (published or unchanged) before the check fails.
    pub max_run_gap_s: u64,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            max_failed_runs: 3,
            max_run_gap_s: 600,
        }
    }
}

/// The Postgres database and schema of the kept incremental state (see `state`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateSettings {
    /// Postgres URL; default: the lake's catalog database (`lake.catalog_uri`).
    pub url: Option<String>,
    /// Schema; default: `marts_state_<clickhouse.database>`, so each marts database has its
    /// own state.
    pub schema: Option<String>,
}

/// Retention of what the marts write to ClickHouse (`[retention]`). Publications go by whole
/// partitions ([`tributary_rankings::retention`]); the latest and the pinned ones stay at any
/// age, and each retained publication pins its lake snapshots against lake maintenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Whether the scheduled job prunes at all (`tributary-marts prune` prunes anyway).
    pub enabled: bool,
    /// Seconds between two prunes.
    pub interval_s: u64,
    /// Publications computed within this many seconds stay (default 10 minutes, the lake's
    /// full-resolution window: older publications would pin snapshots the lake thins out, and
    /// every pinned snapshot is in the `metadata.json` each commit rewrites, `docs/lake.md`).
    pub publications_s: u64,
    /// Publications kept at any age, by id (`pg_sale:…,pg_salesman:…,pg_city:…`).
    pub pinned_publications: Vec<String>,
    /// `mart_runs` rows of runs started within this many seconds stay (default 7 days).
    pub runs_s: u64,
    /// The tombstone horizon: a sale deleted longer ago than this many seconds is forgotten by
    /// the kept state (default 30 days, past the raw topics' 7-day retention). An event of that
    /// sale older than its delete arriving after the horizon would count it again (a full
    /// rebuild would not).
    pub tombstones_s: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_s: 60,
            publications_s: 600,
            pinned_publications: Vec::new(),
            runs_s: 7 * 24 * 3_600,
            tombstones_s: 30 * 24 * 3_600,
        }
    }
}

impl RetentionSettings {
    /// The rule the store applies.
    pub fn publications(&self) -> tributary_rankings::retention::PublicationRetention {
        tributary_rankings::retention::PublicationRetention {
            publications_s: self.publications_s,
            pinned: self.pinned_publications.iter().cloned().collect(),
        }
    }
}

impl Default for MartsConfig {
    fn default() -> Self {
        Self {
            lake: LakeSettings::default(),
            clickhouse: ClickHouseSettings::default(),
            interval_ms: 30_000,
            max_events_per_run: crate::job::DEFAULT_MAX_EVENTS_PER_RUN,
            state: StateSettings::default(),
            metrics_listen: String::new(),
            trino: crate::trino::TrinoSettings::default(),
            retention: RetentionSettings::default(),
            health: HealthSettings::default(),
        }
    }
}

/// A config value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid marts config: {field}: {reason}")]
pub struct InvalidConfig {
    /// The offending key.
    pub field: &'static str,
    /// Why.
    pub reason: &'static str,
}

impl MartsConfig {
    /// The state database URL, defaulting to the catalog's.
    pub fn state_url(&self) -> &str {
        self.state.url.as_deref().unwrap_or(&self.lake.catalog_uri)
    }

    /// The state schema, defaulting to `marts_state_<clickhouse database>`.
    pub fn state_schema(&self) -> String {
        self.state
            .schema
            .clone()
            .unwrap_or_else(|| format!("marts_state_{}", self.clickhouse.database))
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.interval_ms == 0 {
            return Err(InvalidConfig {
                field: "interval_ms",
                reason: "must be at least 1",
            });
        }
        if tributary_rankings::schema::validate_database(&self.clickhouse.database).is_err() {
            return Err(InvalidConfig {
                field: "clickhouse.database",
                reason: "must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*)",
            });
        }
        if tributary_rankings::schema::validate_database(&self.state_schema()).is_err() {
            return Err(InvalidConfig {
                field: "state.schema",
                reason: "must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*)",
            });
        }
        if self.max_events_per_run == 0 {
            return Err(InvalidConfig {
                field: "max_events_per_run",
                reason: "must be at least 1",
            });
        }
        if self.retention.interval_s == 0 || self.retention.publications_s == 0 {
            return Err(InvalidConfig {
                field: "retention",
                reason: "interval_s and publications_s must be at least 1",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// compose.yaml sets every setting of the marts that defaults to loopback to a compose host.
    #[test]
    fn compose_wiring() {
        tributary_common::compose::assert_wired(
            env!("CARGO_MANIFEST_DIR"),
            "marts",
            &MartsConfig::default(),
        );
    }

    #[test]
    fn loads_defaults_and_environment() {
        let env = vec![
            ("TRIBUTARY_INTERVAL_MS".to_string(), "5000".to_string()),
            (
                "TRIBUTARY_CLICKHOUSE__DATABASE".to_string(),
                "marts_dev".to_string(),
            ),
        ];
        let config: MartsConfig = tributary_common::load(None, env).unwrap();
        assert_eq!(config.interval_ms, 5000);
        assert_eq!(config.clickhouse.database, "marts_dev");
        assert_eq!(config.lake, LakeSettings::default());
        assert!(config.validate().is_ok());
    }

    #[test]
    fn zero_interval_and_odd_database_names_are_refused() {
        let mut config = MartsConfig {
            interval_ms: 0,
            ..MartsConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "interval_ms");
        config.interval_ms = 1;
        config.clickhouse.database = "marts; DROP".into();
        assert_eq!(config.validate().unwrap_err().field, "clickhouse.database");
    }
}
