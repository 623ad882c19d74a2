//! Settings of the ERP client (the WS ingestor) and of the ERP simulator.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tributary_common::names;

use super::soap::SoapVersion;
use super::xml::XmlLimits;

/// How the ingestor talks to the ERP. Embed it in the ingestor's config (for example as
/// `erp`, so `TRIBUTARY_ERP__ENDPOINT` sets [`Self::endpoint`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErpClientConfig {
    /// The SOAP endpoint (the WSDL's `soap:address`).
    pub endpoint: String,
    /// The ERP system's name: the `origin` of every event.
    pub origin: String,
    /// WS-Security user.
    pub username: String,
    /// WS-Security password (only its digest goes over the wire).
    pub password: String,
    /// `"1.1"` or `"1.2"`.
    pub soap_version: SoapVersion,
    /// Changes asked for per `GetSales` call.
    pub page_size: u32,
    /// Pause between polls once the ERP has nothing new.
    pub poll_interval_ms: u64,
    /// Timeout of one HTTP exchange.
    pub request_timeout_ms: u64,
    /// Largest response accepted; bigger ones are refused unread.
    pub max_response_bytes: usize,
    /// Deepest element nesting accepted in a response.
    pub max_depth: usize,
    /// Retries of transient failures.
    pub retry: RetrySettings,
}

impl Default for ErpClientConfig {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:8088/ws/sales".into(),
            origin: "erp".into(),
            username: "tributary".into(),
            password: "tributary-erp".into(),
            soap_version: SoapVersion::V11,
            page_size: 100,
            poll_interval_ms: 2_000,
            request_timeout_ms: 30_000,
            max_response_bytes: 4 * 1024 * 1024,
            max_depth: 32,
            retry: RetrySettings::default(),
        }
    }
}

impl ErpClientConfig {
    /// The XML limits for responses.
    pub fn xml_limits(&self) -> XmlLimits {
        XmlLimits {
            max_bytes: self.max_response_bytes,
            max_depth: self.max_depth,
        }
    }

    /// [`Self::poll_interval_ms`] as a duration.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }
}

/// Exponential backoff with jitter; a throttling fault's retry-after overrides a shorter delay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// Retries after the first attempt (0 = no retry).
    pub max_retries: usize,
    /// First delay.
    pub min_delay_ms: u64,
    /// Longest backoff delay.
    pub max_delay_ms: u64,
    /// Longest retry-after honoured; a service asking for more is waited for this long.
    pub max_retry_after_ms: u64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_retries: 6,
            min_delay_ms: 200,
            max_delay_ms: 10_000,
            max_retry_after_ms: 60_000,
        }
    }
}

/// The WS ingestor (`tributary-ingest erp`): the ERP it polls, and where its events, rejected
/// records and cursor go. Embedded in the ingest binary's config as `erp`:
/// `TRIBUTARY_ERP__CLIENT__ENDPOINT`, `TRIBUTARY_ERP__TOPICS__SALES`, `TRIBUTARY_ERP__METRICS_LISTEN`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErpIngestConfig {
    /// How to reach the ERP (endpoint, credentials, page size, poll interval, retries).
    pub client: ErpClientConfig,
    /// Kafka transactional id. One ingestor per ERP: a second one with the same id fences the
    /// first, so two pollers never interleave cursors.
    pub transactional_id: String,
    /// Topics.
    pub topics: ErpTopics,
    /// First pause after a failed poll or publish (doubling up to [`Self::max_backoff_ms`]);
    /// the ERP's retry-after wins when it asks for longer.
    pub backoff_ms: u64,
    /// Longest pause after a transient failure.
    pub max_backoff_ms: u64,
    /// Pause after a permanent failure (refused credentials, unsafe or off-schema response):
    /// long, because only a person can fix it, but the service keeps trying the same cursor
    /// instead of dying or skipping the page.
    pub permanent_backoff_ms: u64,
    /// `--once` gives up after this many failed attempts in a row at transient failures.
    pub once_max_failures: u32,
    /// `host:port` for `/metrics` and `/healthz`; empty disables the listener.
    pub metrics_listen: String,
}

impl Default for ErpIngestConfig {
    fn default() -> Self {
        Self {
            client: ErpClientConfig::default(),
            transactional_id: "tributary-erp".into(),
            topics: ErpTopics::default(),
            backoff_ms: 1_000,
            max_backoff_ms: 60_000,
            permanent_backoff_ms: 300_000,
            once_max_failures: 5,
            metrics_listen: String::new(),
        }
    }
}

impl ErpIngestConfig {
    /// Checks what the ingestor cannot run without; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.transactional_id.trim().is_empty() {
            return Err("erp.transactional_id must not be empty".into());
        }
        if self.client.origin.trim().is_empty() {
            return Err("erp.client.origin must not be empty".into());
        }
        if self.client.page_size == 0 {
            return Err("erp.client.page_size must be at least 1".into());
        }
        for (key, topic) in [
            ("erp.topics.sales", &self.topics.sales),
            ("erp.topics.dead_letters", &self.topics.dead_letters),
            ("erp.topics.progress", &self.topics.progress),
        ] {
            if topic.trim().is_empty() {
                return Err(format!("{key} must not be empty"));
            }
        }
        Ok(())
    }
}

/// Where the WS ingestor writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErpTopics {
    /// Sale events and cancellations.
    pub sales: String,
    /// Changes the ingestor could not read.
    pub dead_letters: String,
    /// The cursor (compacted, written in the same transactions as the events).
    pub progress: String,
}

impl Default for ErpTopics {
    fn default() -> Self {
        Self {
            sales: names::TOPIC_ERP_SALES.into(),
            dead_letters: names::TOPIC_ERP_DEAD_LETTERS.into(),
            progress: names::TOPIC_ERP_PROGRESS.into(),
        }
    }
}

/// The ERP simulator (`tributary-erp-sim`). Top-level keys, like every service:
/// `TRIBUTARY_LISTEN=127.0.0.1:8088`, `TRIBUTARY_SEED=7`, …
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErpSimConfig {
    /// Address to listen on.
    pub listen: String,
    /// Base URL written into the served WSDL's `soap:address`; empty = from the request's
    /// `Host` header.
    pub public_url: String,
    /// The accepted WS-Security user.
    pub username: String,
    /// Its password.
    pub password: String,
    /// Seed of the data generator: the same seed gives the same change log.
    pub seed: u64,
    /// Changes generated at start-up (new sales, plus some corrections and cancellations).
    pub initial_changes: u32,
    /// Largest `pageSize` accepted.
    pub max_page_size: u32,
    /// Accepted distance between `wsu:Created` and the simulator's clock, both ways; nonces
    /// are remembered this long.
    pub max_clock_skew_secs: u64,
    /// SOAP requests allowed per second before `Throttled` faults (0 = unlimited).
    pub rate_limit_per_sec: u32,
    /// The retry-after sent with a `Throttled` fault.
    pub throttle_retry_after_secs: u64,
    /// Largest request accepted.
    pub max_request_bytes: usize,
    /// Deepest element nesting accepted in a request.
    pub max_depth: usize,
    /// Serve the `/admin` endpoints (injecting sales, cancellations and throttling). Off by
    /// default: they are unauthenticated, for tests and the demo (`TRIBUTARY_ADMIN=true`).
    pub admin: bool,
    /// A file that records every change injected through `/admin` and is replayed at start,
    /// so a restarted simulator has the same log (and a saved cursor stays valid) like a real
    /// ERP would. Empty: memory only.
    pub journal: String,
}

impl Default for ErpSimConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8088".into(),
            public_url: String::new(),
            username: "tributary".into(),
            password: "tributary-erp".into(),
            seed: 42,
            initial_changes: 300,
            max_page_size: 1_000,
            max_clock_skew_secs: 300,
            rate_limit_per_sec: 0,
            throttle_retry_after_secs: 1,
            max_request_bytes: 1024 * 1024,
            max_depth: 32,
            admin: false,
            journal: String::new(),
        }
    }
}

impl ErpSimConfig {
    /// The XML limits for requests.
    pub fn xml_limits(&self) -> XmlLimits {
        XmlLimits {
            max_bytes: self.max_request_bytes,
            max_depth: self.max_depth,
        }
    }
}

// Config structs end up in logs and error messages: never show the WS-Security password.
impl std::fmt::Debug for ErpClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErpClientConfig")
            .field("endpoint", &self.endpoint)
            .field("origin", &self.origin)
            .field("username", &self.username)
            .field("password", &tributary_common::config::REDACTED)
            .field("soap_version", &self.soap_version)
            .field("page_size", &self.page_size)
            .field("poll_interval_ms", &self.poll_interval_ms)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_depth", &self.max_depth)
            .field("retry", &self.retry)
            .finish()
    }
}

impl std::fmt::Debug for ErpSimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErpSimConfig")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("username", &self.username)
            .field("password", &tributary_common::config::REDACTED)
            .field("seed", &self.seed)
            .field("initial_changes", &self.initial_changes)
            .field("max_page_size", &self.max_page_size)
            .field("max_clock_skew_secs", &self.max_clock_skew_secs)
            .field("rate_limit_per_sec", &self.rate_limit_per_sec)
            .field("throttle_retry_after_secs", &self.throttle_retry_after_secs)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_depth", &self.max_depth)
            .field("admin", &self.admin)
            .field("journal", &self.journal)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Ingestor {
        erp: ErpClientConfig,
    }

    #[test]
    fn client_config_loads_with_env_overrides() {
        let cfg: Ingestor = tributary_common::load(
            None,
            [
                ("TRIBUTARY_ERP__SOAP_VERSION".to_string(), "1.2".to_string()),
                ("TRIBUTARY_ERP__PAGE_SIZE".to_string(), "7".to_string()),
                (
                    "TRIBUTARY_ERP__RETRY__MAX_RETRIES".to_string(),
                    "2".to_string(),
                ),
            ],
        )
        .unwrap();
        assert_eq!(cfg.erp.soap_version, SoapVersion::V12);
        assert_eq!(cfg.erp.page_size, 7);
        assert_eq!(cfg.erp.retry.max_retries, 2);
        assert_eq!(cfg.erp.endpoint, "http://127.0.0.1:8088/ws/sales");
    }

    #[test]
    fn ingest_config_nests_the_client_and_validates() {
        let cfg: crate::config::IngestConfig = tributary_common::load(
            None,
            [
                (
                    "TRIBUTARY_ERP__CLIENT__ENDPOINT".to_string(),
                    "http://erp:8088/ws/sales".to_string(),
                ),
                ("TRIBUTARY_ERP__TOPICS__SALES".to_string(), "s".to_string()),
                (
                    "TRIBUTARY_ERP__METRICS_LISTEN".to_string(),
                    "127.0.0.1:9467".to_string(),
                ),
            ],
        )
        .unwrap();
        assert_eq!(cfg.erp.client.endpoint, "http://erp:8088/ws/sales");
        assert_eq!(cfg.erp.topics.sales, "s");
        assert_eq!(cfg.erp.topics.progress, names::TOPIC_ERP_PROGRESS);
        assert_eq!(cfg.erp.metrics_listen, "127.0.0.1:9467");
        assert!(cfg.erp.validate().is_ok());
        let bad = ErpIngestConfig {
            transactional_id: " ".into(),
            ..ErpIngestConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("erp.transactional_id"));
    }

    #[test]
    fn sim_config_defaults_and_refuses_typos() {
        let cfg: ErpSimConfig = tributary_common::load(None, Vec::new()).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:8088");
        let err = tributary_common::load::<ErpSimConfig>(
            None,
            [("TRIBUTARY_SEEDS".to_string(), "1".to_string())],
        )
        .unwrap_err();
        assert!(err.to_string().contains("seeds"), "{err}");
    }
}
