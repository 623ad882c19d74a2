//! The WS ingestor's Prometheus metrics (`tributary_ingest_*`), bounded labels only: the
//! origin is one configured ERP, a stage is an [`ErpError::label`](super::ErpError::label) or
//! `publish`/`progress`, an outcome one of a fixed few.
//!
//! Served on `erp.metrics_listen` by the shared listener ([`tributary_common::health::serve`]:
//! `/metrics`, `/healthz`, and `/readyz` with the checks of [`readiness`]).

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// Metrics of one ERP ingestor.
#[derive(Clone)]
pub struct ErpMetrics {
    /// Registry to expose.
    pub registry: Registry,
    changes: IntCounterVec,
    errors: IntCounterVec,
    pages: IntCounterVec,
    call_retries: IntCounterVec,
    sequence: IntGaugeVec,
    last_success: IntGaugeVec,
}

impl std::fmt::Debug for ErpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErpMetrics").finish_non_exhaustive()
    }
}

impl ErpMetrics {
    /// Creates and registers the metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let changes = IntCounterVec::new(
            Opts::new(
                "tributary_ingest_erp_changes_total",
                "ERP changes committed to Kafka, by outcome (upsert, cancel, rejected)",
            ),
            &["origin", "outcome"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "tributary_ingest_errors_total",
                "Failed polls or publishes, by stage (the ERP error's label, publish, progress)",
            ),
            &["source", "stage"],
        )?;
        let pages = IntCounterVec::new(
            Opts::new(
                "tributary_ingest_erp_pages_total",
                "GetSales pages committed to Kafka with their cursor",
            ),
            &["origin"],
        )?;
        let call_retries = IntCounterVec::new(
            Opts::new(
                "tributary_ingest_erp_call_retries_total",
                "Attempts the client repeated inside successful calls (throttling, transient faults)",
            ),
            &["origin"],
        )?;
        let sequence = IntGaugeVec::new(
            Opts::new(
                "tributary_ingest_erp_sequence",
                "Change sequence of the newest ERP change committed to Kafka",
            ),
            &["origin"],
        )?;
        let last_success = IntGaugeVec::new(
            Opts::new(
                "tributary_ingest_erp_last_success_timestamp_seconds",
                "When a poll last succeeded (a stalled poller shows as an old value)",
            ),
            &["origin"],
        )?;
        for metric in [&changes, &errors, &pages, &call_retries] {
            registry.register(Box::new(metric.clone()))?;
        }
        registry.register(Box::new(sequence.clone()))?;
        registry.register(Box::new(last_success.clone()))?;
        Ok(Self {
            registry,
            changes,
            errors,
            pages,
            call_retries,
            sequence,
            last_success,
        })
    }

    /// A page and its changes reached Kafka.
    pub fn page_committed(
        &self,
        origin: &str,
        upserts: u64,
        cancels: u64,
        rejected: u64,
        retries: u64,
    ) {
        self.pages.with_label_values(&[origin]).inc();
        for (outcome, n) in [
            ("upsert", upserts),
            ("cancel", cancels),
            ("rejected", rejected),
        ] {
            self.changes.with_label_values(&[origin, outcome]).inc_by(n);
        }
        self.call_retries
            .with_label_values(&[origin])
            .inc_by(retries);
        self.last_success
            .with_label_values(&[origin])
            .set(chrono::Utc::now().timestamp());
    }

    /// A poll found nothing new.
    pub fn polled(&self, origin: &str, retries: u64) {
        self.call_retries
            .with_label_values(&[origin])
            .inc_by(retries);
        self.last_success
            .with_label_values(&[origin])
            .set(chrono::Utc::now().timestamp());
    }

    /// The newest change sequence now in Kafka.
    pub fn set_sequence(&self, origin: &str, sequence: i64) {
        self.sequence.with_label_values(&[origin]).set(sequence);
    }

    /// A failure at `stage`.
    pub fn error(&self, stage: &str) {
        self.errors.with_label_values(&["erp", stage]).inc();
    }

    /// Failures counted at `stage` so far (tests).
    pub fn errors_count(&self, stage: &str) -> u64 {
        self.errors.with_label_values(&["erp", stage]).get()
    }

    /// Changes with `outcome` counted so far (tests).
    pub fn changes_count(&self, origin: &str, outcome: &str) -> u64 {
        self.changes.with_label_values(&[origin, outcome]).get()
    }

    /// Pages committed so far (tests).
    pub fn pages_count(&self, origin: &str) -> u64 {
        self.pages.with_label_values(&[origin]).get()
    }

    /// Repeated attempts inside successful calls so far (tests).
    pub fn call_retries_count(&self, origin: &str) -> u64 {
        self.call_retries.with_label_values(&[origin]).get()
    }

    /// The sequence gauge (tests).
    pub fn sequence(&self, origin: &str) -> i64 {
        self.sequence.with_label_values(&[origin]).get()
    }
}

/// What the WS ingestor needs (`/readyz`): Kafka (its topics and its cursor live there) and the
/// ERP's SOAP endpoint.
pub fn readiness(
    kafka: &tributary_common::KafkaSettings,
    endpoint: &str,
) -> tributary_common::health::ReadinessChecks {
    use tributary_common::health::{self, ReadinessChecks};
    let checks = ReadinessChecks::new();
    let timeout = checks.timeout();
    checks
        .check("kafka", health::kafka_metadata(kafka, timeout))
        .check("erp", erp_reachable(endpoint, timeout))
}

/// A cheap reachability check of the ERP: `GET <endpoint>?wsdl` answers with any HTTP status
/// below 500. No SOAP call, so no WS-Security token is spent and nothing is paged.
pub fn erp_reachable(
    endpoint: &str,
    timeout: std::time::Duration,
) -> impl Fn() -> tributary_common::health::CheckFuture + Send + Sync + 'static {
    let url = wsdl_url(endpoint);
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(|e| format!("http client: {e}"));
    move || {
        let (http, url) = (http.clone(), url.clone());
        Box::pin(async move {
            let http = http?;
            let response = http
                .get(&url)
                .send()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            let status = response.status();
            if status.is_server_error() {
                return Err(format!("GET {url}: HTTP {status}").into());
            }
            Ok(format!("GET {url}: HTTP {}", status.as_u16()))
        })
    }
}

/// The endpoint with `?wsdl` (or `&wsdl` when it has a query already). Pure.
fn wsdl_url(endpoint: &str) -> String {
    let separator = if endpoint.contains('?') { '&' } else { '?' };
    format!("{endpoint}{separator}wsdl")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reachability_probe_asks_for_the_wsdl() {
        assert_eq!(
            wsdl_url("http://127.0.0.1:8088/ws/sales"),
            "http://127.0.0.1:8088/ws/sales?wsdl"
        );
        assert_eq!(
            wsdl_url("http://erp/ws?tenant=1"),
            "http://erp/ws?tenant=1&wsdl"
        );
    }
}
