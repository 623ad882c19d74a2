//! The API's Prometheus metrics, served at `/metrics` in the text exposition format.
//!
//! - `tributary_api_requests_total{route,method,status}` and
//!   `tributary_api_request_duration_seconds{route,method,status}`: `route` is the route
//!   *template* (`/v1/cities/{city_id}`), never the raw path, and `method` is one of the standard
//!   methods or `other`, so no label takes unbounded values; a path no route serves is
//!   `route="unmatched"`.
//! - `tributary_api_publication_age_seconds`: now minus the start of the marts run that wrote
//!   the latest publication, read at each scrape; `tributary_api_publication_available` is 0
//!   (and the age absent) while nothing is published or the store cannot be read.
//! - `tributary_api_served_publication_rows`, `…_loads_total`, `…_refresh_failures_total`: the
//!   publication held in memory (`crate::serving`), read from the served store at each scrape.
//! - `tributary_api_answer_cache_lookups_total{outcome="hit"|"miss"}`: cacheable requests of the
//!   served publication sent as already rendered, or rendered afresh (`serving::AnswerCache`).
//! - `tributary_source_replication_slot_retained_bytes{slot}`, `…_safe_wal_bytes{slot}` (what
//!   the slot may still take before Postgres invalidates it; absent without
//!   `max_slot_wal_keep_size`) and `…_active{slot}`: the source Postgres's logical replication
//!   slots, read at each scrape when `health.source_url` is set ([`crate::backlog`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// The `route` label of a request no route serves.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Buckets of the request duration histogram, in seconds: from a cached-looking 2 ms read to a
/// time-travel request recomputing the lake (~0.3 s on the local stack, more on a big lake).
const DURATION_BUCKETS: [f64; 12] = [
    0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The API's metrics, in their own registry (tests build as many as they like).
#[derive(Clone)]
pub struct ApiMetrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    publication_age: Gauge,
    publication_available: IntGauge,
    slot_retained: IntGaugeVec,
    slot_safe: IntGaugeVec,
    slot_active: IntGaugeVec,
    served_rows: IntGauge,
    served_loads: IntCounter,
    served_refresh_failures: IntCounter,
    answer_lookups: IntCounterVec,
    /// Serialises [`ApiMetrics::set_publication`]: two scrapes at once must not both register
    /// the age gauge.
    publication_lock: std::sync::Arc<std::sync::Mutex<()>>,
}

impl std::fmt::Debug for ApiMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiMetrics").finish_non_exhaustive()
    }
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ApiMetrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let labels = ["route", "method", "status"];
        let requests = IntCounterVec::new(
            Opts::new(
                "tributary_api_requests_total",
                "HTTP requests served, by route template, method and status",
            ),
            &labels,
        )
        .expect("valid counter");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "tributary_api_request_duration_seconds",
                "Time to serve an HTTP request, by route template, method and status",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &labels,
        )
        .expect("valid histogram");
        let publication_age = Gauge::new(
            "tributary_api_publication_age_seconds",
            "Seconds since the marts run that wrote the latest publication started",
        )
        .expect("valid gauge");
        let publication_available = IntGauge::new(
            "tributary_api_publication_available",
            "1 when a publication could be read at the last scrape, else 0",
        )
        .expect("valid gauge");
        let slot_gauge = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["slot"]).expect("valid gauge")
        };
        let slot_retained = slot_gauge(
            "tributary_source_replication_slot_retained_bytes",
            "WAL the source Postgres holds for a logical replication slot (current LSN minus its restart LSN)",
        );
        let slot_safe = slot_gauge(
            "tributary_source_replication_slot_safe_wal_bytes",
            "WAL a replication slot may still take before Postgres invalidates it (max_slot_wal_keep_size)",
        );
        let slot_active = slot_gauge(
            "tributary_source_replication_slot_active",
            "1 when a reader (Debezium) is connected to the replication slot",
        );
        let served_rows = IntGauge::new(
            "tributary_api_served_publication_rows",
            "Ranking rows of the publication the API holds in memory (0 while it holds none)",
        )
        .expect("valid gauge");
        let served_loads = IntCounter::new(
            "tributary_api_served_publication_loads_total",
            "Publications the API read whole from ClickHouse to serve from memory",
        )
        .expect("valid counter");
        let served_refresh_failures = IntCounter::new(
            "tributary_api_served_publication_refresh_failures_total",
            "Checks for a newer publication that failed (the one held kept being served)",
        )
        .expect("valid counter");
        let answer_lookups = IntCounterVec::new(
            Opts::new(
                "tributary_api_answer_cache_lookups_total",
                "Cacheable requests answered from the answers already rendered (hit) or rendered afresh (miss)",
            ),
            &["outcome"],
        )
        .expect("valid counter");
        let registry = Registry::new();
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(publication_available.clone()),
            Box::new(slot_retained.clone()),
            Box::new(slot_safe.clone()),
            Box::new(slot_active.clone()),
            Box::new(served_rows.clone()),
            Box::new(served_loads.clone()),
            Box::new(served_refresh_failures.clone()),
            Box::new(answer_lookups.clone()),
        ] {
            registry.register(collector).expect("unique metric names");
        }
        Self {
            registry,
            requests,
            duration,
            publication_age,
            publication_available,
            slot_retained,
            slot_safe,
            slot_active,
            served_rows,
            served_loads,
            served_refresh_failures,
            answer_lookups,
            publication_lock: Default::default(),
        }
    }

    /// Counts one request and its duration.
    pub fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let status = status.to_string();
        let labels = [route, method_label(method), status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.duration
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Sets the publication gauges from the latest publication's start, if one was read.
    pub fn set_publication(&self, computed_at: Option<DateTime<Utc>>, now: DateTime<Utc>) {
        let _one_at_a_time = self
            .publication_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The age gauge is registered only while there is an age, so "no publication" is an
        // absent series rather than a misleading 0.
        let _ = self
            .registry
            .unregister(Box::new(self.publication_age.clone()));
        match computed_at {
            Some(at) => {
                let age = (now - at).num_milliseconds() as f64 / 1000.0;
                self.publication_age.set(age.max(0.0));
                self.registry
                    .register(Box::new(self.publication_age.clone()))
                    .expect("age gauge unregistered just before");
                self.publication_available.set(1);
            }
            None => self.publication_available.set(0),
        }
    }

    /// Sets the served-publication metrics from the served store's figures: ranking rows held
    /// in memory (0 while none), and the loads and failed refreshes since start (counters,
    /// advanced to the store's counts).
    pub fn set_served(&self, rows: Option<u64>, loads: u64, refresh_failures: u64) {
        self.served_rows
            .set(i64::try_from(rows.unwrap_or(0)).unwrap_or(i64::MAX));
        for (counter, count) in [
            (&self.served_loads, loads),
            (&self.served_refresh_failures, refresh_failures),
        ] {
            counter.inc_by(count.saturating_sub(counter.get()));
        }
    }

    /// Advances the answer cache's lookup counters to its `hits` and `misses` since start.
    pub fn set_answers(&self, hits: u64, misses: u64) {
        for (outcome, count) in [("hit", hits), ("miss", misses)] {
            let counter = self.answer_lookups.with_label_values(&[outcome]);
            counter.inc_by(count.saturating_sub(counter.get()));
        }
    }

    /// Sets the replication slot gauges to `slots` (a slot that is gone leaves no series).
    pub fn set_slots(&self, slots: &[crate::backlog::SlotState]) {
        for gauge in [&self.slot_retained, &self.slot_safe, &self.slot_active] {
            gauge.reset();
        }
        for s in slots {
            let slot = [s.name.as_str()];
            self.slot_retained
                .with_label_values(&slot)
                .set(s.retained_bytes);
            if let Some(safe) = s.safe_wal_bytes {
                self.slot_safe.with_label_values(&slot).set(safe);
            }
            self.slot_active
                .with_label_values(&slot)
                .set(i64::from(s.active));
        }
    }

    /// Every metric in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding to memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// The `method` label: a standard method, or `other` (clients can send any token).
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

/// The route template `path` is served by: the first of `templates` (`/v1/cities/{city_id}`)
/// whose segments match, a `prefix/*` template for everything under a prefix, or
/// [`UNMATCHED_ROUTE`]. Pure, and allocates nothing: it runs on every request.
pub fn route_template<'a>(templates: &'a [String], path: &str) -> &'a str {
    let is_var = |p: &str| p.starts_with('{') && p.ends_with('}');
    let trimmed = path.trim_matches('/');
    templates
        .iter()
        .find(|template| {
            if let Some(prefix) = template.strip_suffix("/*") {
                return path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            }
            let (mut parts, mut segments) =
                (template.trim_matches('/').split('/'), trimmed.split('/'));
            loop {
                match (parts.next(), segments.next()) {
                    (None, None) => return true,
                    (Some(p), Some(s)) if (is_var(p) && !s.is_empty()) || p == s => {}
                    _ => return false,
                }
            }
        })
        .map_or(UNMATCHED_ROUTE, String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn templates() -> Vec<String> {
        [
            "/v1/rankings/cities",
            "/v1/rankings/cities/{city_id}/salesmen",
            "/v1/cities/{city_id}",
            "/metrics",
            "/docs/*",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn paths_map_to_their_templates_and_nothing_else() {
        let t = templates();
        assert_eq!(route_template(&t, "/v1/cities/7"), "/v1/cities/{city_id}");
        assert_eq!(
            route_template(&t, "/v1/rankings/cities/123/salesmen"),
            "/v1/rankings/cities/{city_id}/salesmen"
        );
        assert_eq!(
            route_template(&t, "/v1/rankings/cities"),
            "/v1/rankings/cities"
        );
        assert_eq!(route_template(&t, "/docs/index.css"), "/docs/*");
        assert_eq!(route_template(&t, "/docs"), "/docs/*");
        for unknown in ["/v1/cities/7/extra", "/v1/cities/", "/nope", "/", "/docsx"] {
            assert_eq!(route_template(&t, unknown), UNMATCHED_ROUTE, "{unknown}");
        }
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("BREW"), "other");
    }

    #[test]
    fn requests_and_publication_age_are_exposed() {
        let metrics = ApiMetrics::new();
        metrics.observe("/v1/cities/{city_id}", "GET", 200, Duration::from_millis(3));
        metrics.observe(
            "/v1/cities/{city_id}",
            "GET",
            200,
            Duration::from_millis(30),
        );
        metrics.observe(UNMATCHED_ROUTE, "BREW", 404, Duration::from_millis(1));
        let now = DateTime::from_timestamp(1_700_000_100, 0).unwrap();
        metrics.set_publication(None, now);
        let text = metrics.encode();
        assert!(
            text.contains("tributary_api_publication_available 0"),
            "{text}"
        );
        assert!(
            !text.contains("tributary_api_publication_age_seconds"),
            "{text}"
        );
        assert!(text.contains(
            r#"tributary_api_requests_total{method="GET",route="/v1/cities/{city_id}",status="200"} 2"#
        ), "{text}");
        assert!(text.contains(
            r#"tributary_api_request_duration_seconds_bucket{method="GET",route="/v1/cities/{city_id}",status="200",le="0.005"} 1"#
        ), "{text}");
        assert!(
            text.contains(
                r#"tributary_api_requests_total{method="other",route="unmatched",status="404"} 1"#
            ),
            "{text}"
        );

        metrics.set_publication(DateTime::from_timestamp(1_700_000_000, 0), now);
        metrics.set_publication(DateTime::from_timestamp(1_700_000_040, 0), now);
        let text = metrics.encode();
        assert!(
            text.contains("tributary_api_publication_age_seconds 60"),
            "{text}"
        );
        assert!(
            text.contains("tributary_api_publication_available 1"),
            "{text}"
        );
    }
}
