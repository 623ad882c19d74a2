//! `ApiConfig`: where to listen and where ClickHouse is.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tributary_common::{ClickHouseSettings, LakeSettings};
use tributary_raw::topics::TopicsConfig;

/// The API's configuration (`tributary_common::load`: defaults → `--config` file →
/// `TRIBUTARY_*` environment, e.g. `TRIBUTARY_LISTEN=0.0.0.0:8080`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address to listen on.
    pub listen: String,
    /// The ClickHouse holding the marts.
    pub clickhouse: ClickHouseSettings,
    /// The lake, read for time travel (`?as_of=`, `/v1/snapshots`); e.g.
    /// `TRIBUTARY_LAKE__WAREHOUSE=s3://warehouse`, `TRIBUTARY_LAKE__CATALOG_URI=postgres://…`.
    pub lake: LakeSettings,
    /// The Kafka topics, as the lander names them (`TRIBUTARY_TOPICS__FILE_DEAD_LETTERS`, …): they
    /// say which source each dead letter came from.
    pub topics: TopicsConfig,
    /// Where `POST /api/v1/lineage` stores OpenLineage events (the Marquez-compatible subset;
    /// `TRIBUTARY_LINEAGE__URL`, `TRIBUTARY_LINEAGE__SCHEMA`).
    pub lineage: LineageStoreSettings,
    /// Bearer tokens for writes (`POST /api/v1/lineage`; unset: writes refused) and, if set, for
    /// reads (`TRIBUTARY_AUTH__WRITE_TOKEN`, `TRIBUTARY_AUTH__READ_TOKEN`); see `auth`.
    pub auth: crate::auth::AuthSettings,
    /// Backlog thresholds and the source Postgres whose replication slots are watched
    /// (`[health]`, `TRIBUTARY_HEALTH__SOURCE_URL`; empty: not watched).
    pub health: crate::backlog::HealthSettings,
    /// Bounds on what one request may take (`[limits]`, `TRIBUTARY_LIMITS__*`).
    pub limits: LimitSettings,
    /// Holding the latest publication in memory (`serving.refresh_ms`).
    pub serving: crate::serving::ServingSettings,
    /// The marts' kept state, read (never written) for the provenance of the publication it is
    /// folded to: the same `[state]` as the marts' (`TRIBUTARY_STATE__URL`, default the lake's
    /// catalog database; `TRIBUTARY_STATE__SCHEMA`, default `marts_state_<clickhouse
    /// database>`).
    pub state: tributary_marts::config::StateSettings,
}

impl ApiConfig {
    /// The kept state's database URL and schema, with the marts' defaults.
    pub fn state_location(&self) -> (String, String) {
        (
            self.state
                .url
                .clone()
                .unwrap_or_else(|| self.lake.catalog_uri.clone()),
            self.state
                .schema
                .clone()
                .unwrap_or_else(|| format!("marts_state_{}", self.clickhouse.database)),
        )
    }
}

/// Bounds on what one request may take, so no request, and no crowd of them, exhausts the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// A request still running after this many milliseconds is answered 503 `timeout` (and
    /// its work dropped).
    pub request_timeout_ms: u64,
    /// Requests that read the lake (time travel, provenance, snapshots, dead letters) that may
    /// run at once: each may hold a table's worth of rows in memory.
    pub lake_concurrency: usize,
    /// How long a lake request waits for its turn before it is answered 429 `busy`.
    pub lake_queue_ms: u64,
    /// Publications computed from the lake for time travel kept for the next request asking
    /// for the same snapshots (0: none). Each holds one publication's rows.
    pub as_of_cache: usize,
    /// Memory the lake requests running at once may hold together, in MiB (0: no bound): the
    /// current state they materialise and their queries' working memory (sorts spill to
    /// disk first). A request that needs more is answered 503 `lake-memory`.
    pub lake_memory_mb: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            request_timeout_ms: 30_000,
            lake_concurrency: 2,
            lake_queue_ms: 1_000,
            as_of_cache: 4,
            lake_memory_mb: 512,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            clickhouse: ClickHouseSettings::default(),
            lake: LakeSettings::default(),
            topics: TopicsConfig::default(),
            lineage: LineageStoreSettings::default(),
            auth: crate::auth::AuthSettings::default(),
            health: crate::backlog::HealthSettings::default(),
            limits: LimitSettings::default(),
            serving: crate::serving::ServingSettings::default(),
            state: Default::default(),
        }
    }
}

/// The lineage event store: a Postgres database and the schema of its table `lineage_events`
/// (created at start-up if missing).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LineageStoreSettings {
    /// Postgres URL (`postgres://user:password@host:port/database`).
    pub url: String,
    /// Schema of the events table (letters, digits and `_`; tests use their own).
    pub schema: String,
    /// Events received more than this many seconds ago are deleted, and what only they named
    /// leaves the API's lineage index (default 30 days).
    pub retention_s: u64,
    /// Seconds between two prunes.
    pub prune_interval_s: u64,
    /// Seconds between two saves of the index (with its position in the log) that a new API
    /// process starts from instead of folding every event kept.
    pub checkpoint_interval_s: u64,
}

impl Default for LineageStoreSettings {
    fn default() -> Self {
        Self {
            url: "postgres://tributary:tributary@127.0.0.1:5432/tributary".into(),
            schema: "lineage".into(),
            retention_s: 30 * 24 * 3_600,
            prune_interval_s: 3_600,
            checkpoint_interval_s: 60,
        }
    }
}

impl std::fmt::Debug for LineageStoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        let url = match self.url.split_once('@') {
            Some((_, host)) => format!("postgres://***@{host}"),
            None => self.url.clone(),
        };
        f.debug_struct("LineageStoreSettings")
            .field("url", &url)
            .field("schema", &self.schema)
            .field("retention_s", &self.retention_s)
            .field("prune_interval_s", &self.prune_interval_s)
            .field("checkpoint_interval_s", &self.checkpoint_interval_s)
            .finish()
    }
}

impl LineageStoreSettings {
    /// The schema name, checked: it is spliced into SQL.
    pub fn checked_schema(&self) -> Result<&str, String> {
        let ok = !self.schema.is_empty()
            && self.schema.len() <= 63
            && self
                .schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !self.schema.starts_with(|c: char| c.is_ascii_digit());
        if ok {
            Ok(&self.schema)
        } else {
            Err(format!(
                "invalid api config: lineage.schema = {:?} must be letters, digits and _ (not starting with a digit)",
                self.schema
            ))
        }
    }
}

impl ApiConfig {
    /// The listen address, parsed.
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.listen.parse().map_err(|e| {
            format!(
                "invalid api config: listen = {:?} is not an address such as 127.0.0.1:8080: {e}",
                self.listen
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// compose.yaml sets every setting of the API that defaults to loopback to a compose host
    /// (its lake and lineage store included: without them time travel, provenance and dead
    /// letters answer 503 in a container).
    #[test]
    fn compose_wiring() {
        tributary_common::compose::assert_wired(
            env!("CARGO_MANIFEST_DIR"),
            "api",
            &ApiConfig::default(),
        );
    }

    #[test]
    fn defaults_and_environment() {
        let config: ApiConfig = tributary_common::load(
            None,
            vec![
                ("TRIBUTARY_LISTEN".to_string(), "0.0.0.0:9999".to_string()),
                (
                    "TRIBUTARY_LAKE__WAREHOUSE".to_string(),
                    "s3://warehouse".to_string(),
                ),
            ],
        )
        .unwrap();
        assert_eq!(config.lake.warehouse, "s3://warehouse");
        assert_eq!(config.listen_addr().unwrap().port(), 9999);
        assert_eq!(config.clickhouse, ClickHouseSettings::default());
        assert_eq!(ApiConfig::default().listen, "127.0.0.1:8080");
    }

    #[test]
    fn the_lineage_store_from_the_environment() {
        let config: ApiConfig = tributary_common::load(
            None,
            vec![
                ("TRIBUTARY_LINEAGE__SCHEMA".to_string(), "e2e_1".to_string()),
                (
                    "TRIBUTARY_LINEAGE__URL".to_string(),
                    "postgres://u:secret@db:5432/x".to_string(),
                ),
            ],
        )
        .unwrap();
        assert_eq!(config.lineage.checked_schema(), Ok("e2e_1"));
        assert!(!format!("{:?}", config.lineage).contains("secret"));
        assert_eq!(ApiConfig::default().lineage.schema, "lineage");
        let bad = LineageStoreSettings {
            schema: "1x".into(),
            ..Default::default()
        };
        assert!(bad.checked_schema().unwrap_err().contains("lineage.schema"));
    }

    #[test]
    fn a_bad_listen_address_is_a_clear_error() {
        let config = ApiConfig {
            listen: "localhost".into(),
            ..ApiConfig::default()
        };
        assert!(config.listen_addr().unwrap_err().contains("listen"));
    }
}
