//! The marts job's Prometheus metrics, served on `/metrics` (`metrics_listen`).
//!
//! - `tributary_marts_runs_total{status}`: runs by outcome (`published`, `unchanged`, `failed`);
//! - `tributary_marts_run_duration_seconds{status}`: how long they took;
//! - `tributary_marts_events_folded_total`: raw events folded into the kept state;
//! - `tributary_marts_ranking_rows`: ranking rows of the latest publication;
//! - `tributary_marts_newest_event_timestamp_seconds{source}`: the newest source event the
//!   published rankings count (Postgres commit time; files and ERP: when ingested);
//! - `tributary_freshness_seconds{source}`: now − that, computed when scraped: how stale the
//!   rankings are per source. It grows while a source is silent and drops when its events are
//!   published.
//! - `tributary_marts_prunes_total{status}`: retention prunes (`ok`, `failed`);
//! - `tributary_marts_pruned_partitions_total`: publication partitions dropped;
//! - `tributary_marts_retained_publications`: publications ClickHouse holds after the last prune.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use tributary_rankings::schema::RunStatus;

/// The marts metrics (cheap to clone: a handle).
#[derive(Clone)]
pub struct MartsMetrics {
    registry: Registry,
    runs: IntCounterVec,
    duration: HistogramVec,
    events: IntCounter,
    rows: IntGauge,
    failing: IntGauge,
    prunes: IntCounterVec,
    pruned_partitions: IntCounter,
    retained: IntGauge,
    newest: GaugeVec,
    freshness: GaugeVec,
    newest_at: Arc<Mutex<BTreeMap<String, DateTime<Utc>>>>,
    /// When the latest good run (published or unchanged) ended, Unix seconds; the process's
    /// start before the first.
    last_good_run: Arc<std::sync::atomic::AtomicI64>,
}

impl std::fmt::Debug for MartsMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MartsMetrics").finish_non_exhaustive()
    }
}

impl MartsMetrics {
    /// The registry, for other series of the process (the lineage emitter's failure counter).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Registers every series, the per-status ones at zero so rates work from the first scrape.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let runs = IntCounterVec::new(
            Opts::new("tributary_marts_runs_total", "Marts runs, by outcome"),
            &["status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "tributary_marts_run_duration_seconds",
                "Duration of marts runs, by outcome",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            &["status"],
        )?;
        let events = IntCounter::new(
            "tributary_marts_events_folded_total",
            "Raw lake events folded into the kept marts state",
        )?;
        let rows = IntGauge::new(
            "tributary_marts_ranking_rows",
            "Ranking rows of the latest publication",
        )?;
        let failing = IntGauge::new(
            "tributary_marts_consecutive_failed_runs",
            "Scheduled runs failed in a row since the last good one (0 when healthy); a permanent \
             error backs the schedule off instead of failing every tick",
        )?;
        let prunes = IntCounterVec::new(
            Opts::new(
                "tributary_marts_prunes_total",
                "Retention prunes of publications and runs, by outcome",
            ),
            &["status"],
        )?;
        let pruned_partitions = IntCounter::new(
            "tributary_marts_pruned_partitions_total",
            "Publication partitions (lake windows) dropped by retention",
        )?;
        let retained = IntGauge::new(
            "tributary_marts_retained_publications",
            "Publications ClickHouse holds after the last prune",
        )?;
        let newest = GaugeVec::new(
            Opts::new(
                "tributary_marts_newest_event_timestamp_seconds",
                "Newest source event counted by the published rankings, Unix time",
            ),
            &["source"],
        )?;
        let freshness = GaugeVec::new(
            Opts::new(
                "tributary_freshness_seconds",
                "Now minus the newest source event visible in the marts, per source",
            ),
            &["source"],
        )?;
        registry.register(Box::new(runs.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(rows.clone()))?;
        registry.register(Box::new(failing.clone()))?;
        registry.register(Box::new(prunes.clone()))?;
        registry.register(Box::new(pruned_partitions.clone()))?;
        registry.register(Box::new(retained.clone()))?;
        registry.register(Box::new(newest.clone()))?;
        registry.register(Box::new(freshness.clone()))?;
        for status in ["ok", "failed"] {
            prunes.with_label_values(&[status]);
        }
        for status in [
            RunStatus::Published,
            RunStatus::Unchanged,
            RunStatus::Failed,
        ] {
            runs.with_label_values(&[status.as_str()]);
            duration.with_label_values(&[status.as_str()]);
        }
        Ok(Self {
            registry,
            runs,
            duration,
            events,
            rows,
            failing,
            prunes,
            pruned_partitions,
            retained,
            newest,
            freshness,
            newest_at: Arc::default(),
            last_good_run: Arc::new(std::sync::atomic::AtomicI64::new(Utc::now().timestamp())),
        })
    }

    /// How many scheduled runs failed in a row (0 after a good one).
    pub fn consecutive_failures(&self, n: u32) {
        self.failing.set(i64::from(n));
    }

    /// Scheduled runs failed in a row, and when the latest good run ended (Unix seconds).
    pub fn runs_behind(&self) -> (i64, i64) {
        (
            self.failing.get(),
            self.last_good_run
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Counts a prune: the partitions it dropped and the publications left, or a failure.
    pub fn pruned(&self, outcome: Option<(usize, usize)>) {
        match outcome {
            Some((dropped, retained)) => {
                self.prunes.with_label_values(&["ok"]).inc();
                self.pruned_partitions.inc_by(dropped as u64);
                self.retained
                    .set(i64::try_from(retained).unwrap_or(i64::MAX));
            }
            None => self.prunes.with_label_values(&["failed"]).inc(),
        }
    }

    /// Counts a run.
    pub fn run(&self, status: RunStatus, seconds: f64, events_in: u64) {
        if status != RunStatus::Failed {
            self.last_good_run
                .store(Utc::now().timestamp(), std::sync::atomic::Ordering::Relaxed);
        }
        self.runs.with_label_values(&[status.as_str()]).inc();
        self.duration
            .with_label_values(&[status.as_str()])
            .observe(seconds);
        self.events.inc_by(events_in);
    }

    /// Records what the latest publication holds.
    pub fn published(&self, ranking_rows: Option<u64>, newest: &BTreeMap<String, DateTime<Utc>>) {
        if let Some(rows) = ranking_rows {
            self.rows.set(i64::try_from(rows).unwrap_or(i64::MAX));
        }
        let mut kept = self.newest_at.lock().unwrap_or_else(|e| e.into_inner());
        for (source, at) in newest {
            kept.insert(source.clone(), *at);
            self.newest
                .with_label_values(&[source.as_str()])
                .set(at.timestamp_millis() as f64 / 1000.0);
        }
    }

    /// Whether the newest event times are known (after a publication by this process).
    pub fn knows_sources(&self) -> bool {
        !self
            .newest_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Prometheus text exposition, with freshness computed against `now`.
    pub fn encode_at(&self, now: DateTime<Utc>) -> String {
        for (source, at) in self
            .newest_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let age = (now - *at).num_milliseconds().max(0) as f64 / 1000.0;
            self.freshness
                .with_label_values(&[source.as_str()])
                .set(age);
        }
        let mut out = Vec::new();
        // Encoding well-formed families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Prometheus text exposition now.
    pub fn encode(&self) -> String {
        self.encode_at(Utc::now())
    }
}

/// Judges the scheduled runs: `failed_in_a_row` since the last good one, which ended at
/// `last_good` (Unix seconds), at `now`. Pure.
pub fn judge_runs(
    failed_in_a_row: i64,
    last_good: i64,
    now: i64,
    settings: &crate::config::HealthSettings,
) -> Result<String, String> {
    let since = now - last_good;
    if failed_in_a_row >= i64::from(settings.max_failed_runs) {
        return Err(format!(
            "{failed_in_a_row} runs failed in a row (the last good one {since} s ago)"
        ));
    }
    if since > i64::try_from(settings.max_run_gap_s).unwrap_or(i64::MAX) {
        return Err(format!(
            "no good run for {since} s (more than {} s)",
            settings.max_run_gap_s
        ));
    }
    Ok(format!(
        "last good run {since} s ago; {failed_in_a_row} failed since"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_behind_after_failures_in_a_row_or_a_long_gap() {
        let settings = crate::config::HealthSettings {
            max_failed_runs: 3,
            max_run_gap_s: 600,
        };
        assert!(judge_runs(0, 1_000, 1_005, &settings).is_ok());
        assert!(judge_runs(2, 1_000, 1_100, &settings).is_ok());
        let failing = judge_runs(3, 1_000, 1_100, &settings).unwrap_err();
        assert!(failing.contains("3 runs failed in a row"), "{failing}");
        let gap = judge_runs(0, 1_000, 1_601, &settings).unwrap_err();
        assert!(gap.contains("no good run for 601 s"), "{gap}");
    }

    #[test]
    fn freshness_is_the_age_of_the_newest_published_event() {
        let m = MartsMetrics::new().unwrap();
        let text = m.encode();
        assert!(
            text.contains(r#"tributary_marts_runs_total{status="failed"} 0"#),
            "{text}"
        );
        assert!(!text.contains("tributary_freshness_seconds{"), "{text}");
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        m.run(RunStatus::Published, 0.3, 42);
        m.published(Some(7), &BTreeMap::from([("files".to_string(), at)]));
        let later = at + chrono::Duration::seconds(90);
        let text = m.encode_at(later);
        assert!(
            text.contains(r#"tributary_freshness_seconds{source="files"} 90"#),
            "{text}"
        );
        assert!(
            text.contains("tributary_marts_events_folded_total 42"),
            "{text}"
        );
        assert!(text.contains("tributary_marts_ranking_rows 7"), "{text}");
        assert!(m.knows_sources());
    }
}
