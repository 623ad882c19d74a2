//! The lander's metrics, in their own registry (so tests can run several landers in one
//! process). They are served on `metrics_listen` by the shared listener
//! ([`tributary_common::health::serve`]: `/metrics`, `/healthz`, `/readyz`).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use tributary_raw::schema::RawTable;

/// What happened to a consumed record; the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Appended to its change table (counted when the commit succeeds).
    Landed,
    /// Appended to `dead_letters` (counted when the commit succeeds).
    DeadLetter,
    /// A null value: nothing to land.
    Tombstone,
    /// Already in the lake (replay after a restart): not appended again.
    SkippedReplay,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 4] = [
        Outcome::Landed,
        Outcome::DeadLetter,
        Outcome::Tombstone,
        Outcome::SkippedReplay,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Landed => "landed",
            Outcome::DeadLetter => "dead_letter",
            Outcome::Tombstone => "tombstone",
            Outcome::SkippedReplay => "skipped_replay",
        }
    }
}

/// Counters and histograms of one lander.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    events: IntCounterVec,
    commit_seconds: HistogramVec,
    data_files: IntCounterVec,
    last_commit: IntGaugeVec,
    commit_files: HistogramVec,
    commit_bytes: HistogramVec,
    data_bytes: IntCounterVec,
    lag: IntGaugeVec,
    /// The committed ledgers' counts, by table and fate.
    ledger: IntGaugeVec,
    /// Sessions that ended on a dependency's failure and were started again.
    sessions_restarted: IntCounterVec,
    maintenance: MaintenanceMetrics,
}

/// Lake maintenance, by table.
#[derive(Debug, Clone)]
struct MaintenanceMetrics {
    runs: IntCounterVec,
    seconds: HistogramVec,
    commit_seconds: HistogramVec,
    files_deleted: IntCounterVec,
    bytes_deleted: IntCounterVec,
    files_rewritten: IntCounterVec,
    snapshots: IntGaugeVec,
    manifests: IntGaugeVec,
    files: IntGaugeVec,
    bytes: IntGaugeVec,
}

impl MaintenanceMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let gauge = |name: &str, help: &str| -> Result<IntGaugeVec, prometheus::Error> {
            let g = IntGaugeVec::new(Opts::new(name, help), &["table"])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let histogram = |name: &str, help: &str| -> Result<HistogramVec, prometheus::Error> {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help)
                    .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0]),
                &["table"],
            )?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let seconds = histogram(
            "tributary_lake_maintenance_seconds",
            "Time of one maintenance run on one table",
        )?;
        let commit_seconds = histogram(
            "tributary_lake_maintenance_commit_seconds",
            "Of a maintenance run, the commit: the only part the lander waits for",
        )?;
        Ok(Self {
            runs: counter(
                "tributary_lake_maintenance_runs_total",
                "Maintenance runs, by table and outcome (ok, failed)",
                &["table", "outcome"],
            )?,
            seconds,
            commit_seconds,
            files_deleted: counter(
                "tributary_lake_maintenance_files_deleted_total",
                "Files maintenance deleted (expired snapshots', old metadata, orphans), by table",
                &["table"],
            )?,
            bytes_deleted: counter(
                "tributary_lake_maintenance_bytes_deleted_total",
                "Bytes of the files maintenance deleted, by table",
                &["table"],
            )?,
            files_rewritten: counter(
                "tributary_lake_maintenance_files_rewritten_total",
                "Small data files compaction rewrote, by table",
                &["table"],
            )?,
            snapshots: gauge(
                "tributary_lake_table_snapshots",
                "Snapshots in the table's metadata after the last maintenance run",
            )?,
            manifests: gauge(
                "tributary_lake_table_manifests",
                "Manifests of the current snapshot after the last maintenance run",
            )?,
            files: gauge(
                "tributary_lake_table_files",
                "Files in the table's folder (data and metadata) after the last maintenance run",
            )?,
            bytes: gauge(
                "tributary_lake_table_bytes",
                "Bytes in the table's folder after the last maintenance run",
            )?,
        })
    }
}

impl Metrics {
    /// Creates the metrics in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let events = IntCounterVec::new(
            Opts::new(
                "tributary_lander_events_total",
                "Kafka records consumed by the lander, by table they belong to and outcome",
            ),
            &["table", "outcome"],
        )?;
        let commit_seconds = HistogramVec::new(
            HistogramOpts::new(
                "tributary_lander_commit_seconds",
                "Time to write and commit one flush to one Iceberg table",
            )
            .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["table"],
        )?;
        let data_files = IntCounterVec::new(
            Opts::new(
                "tributary_lander_data_files_total",
                "Parquet data files committed, by table",
            ),
            &["table"],
        )?;
        let last_commit = IntGaugeVec::new(
            Opts::new(
                "tributary_lander_last_commit_timestamp_seconds",
                "Unix time of the last successful commit, by table",
            ),
            &["table"],
        )?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(commit_seconds.clone()))?;
        registry.register(Box::new(data_files.clone()))?;
        let lag = IntGaugeVec::new(
            Opts::new(
                "tributary_lander_consumer_lag_records",
                "Records in a partition the lander has not consumed yet (high watermark minus its position)",
            ),
            &["topic", "partition"],
        )?;
        let commit_files = HistogramVec::new(
            HistogramOpts::new(
                "tributary_lander_commit_files",
                "Parquet data files added by one commit, by table",
            )
            .buckets(vec![0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
            &["table"],
        )?;
        let commit_bytes = HistogramVec::new(
            HistogramOpts::new(
                "tributary_lander_commit_bytes",
                "Bytes of Parquet data added by one commit, by table",
            )
            .buckets(prometheus::exponential_buckets(1024.0, 4.0, 10)?),
            &["table"],
        )?;
        let data_bytes = IntCounterVec::new(
            Opts::new(
                "tributary_lander_data_bytes_total",
                "Bytes of Parquet data committed, by table",
            ),
            &["table"],
        )?;
        registry.register(Box::new(commit_files.clone()))?;
        registry.register(Box::new(commit_bytes.clone()))?;
        registry.register(Box::new(data_bytes.clone()))?;
        registry.register(Box::new(last_commit.clone()))?;
        registry.register(Box::new(lag.clone()))?;
        let sessions_restarted = IntCounterVec::new(
            Opts::new(
                "tributary_lander_sessions_restarted_total",
                "Landing sessions that failed on a dependency (object store, catalog, Kafka) and were started again from what the lake committed, by the failing error's kind",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(sessions_restarted.clone()))?;
        let ledger = IntGaugeVec::new(
            Opts::new(
                "tributary_lake_ledger_records",
                "Records the lake's committed offset-coverage ledgers account for, by table (the one owning the record's partition) and fate (consumed = landed + dead_letter + tombstone; consumed counts them all)",
            ),
            &["table", "fate"],
        )?;
        registry.register(Box::new(ledger.clone()))?;
        let maintenance = MaintenanceMetrics::new(&registry)?;
        // Every series exists from the start (at 0), so rates and alerts work before the first event.
        for table in RawTable::ALL {
            for outcome in Outcome::ALL {
                events.with_label_values(&[table.name(), outcome.as_str()]);
            }
            commit_seconds.with_label_values(&[table.name()]);
            data_files.with_label_values(&[table.name()]);
            commit_files.with_label_values(&[table.name()]);
            commit_bytes.with_label_values(&[table.name()]);
            data_bytes.with_label_values(&[table.name()]);
            for outcome in ["ok", "failed"] {
                maintenance.runs.with_label_values(&[table.name(), outcome]);
            }
        }
        Ok(Self {
            registry,
            events,
            commit_seconds,
            data_files,
            last_commit,
            commit_files,
            commit_bytes,
            data_bytes,
            lag,
            maintenance,
            sessions_restarted,
            ledger,
        })
    }

    /// The registry, to expose or to read in tests.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts `n` records of `table` with `outcome`.
    pub fn events(&self, table: RawTable, outcome: Outcome, n: u64) {
        self.events
            .with_label_values(&[table.name(), outcome.as_str()])
            .inc_by(n);
    }

    /// Current value of an events counter.
    pub fn events_count(&self, table: RawTable, outcome: Outcome) -> u64 {
        self.events
            .with_label_values(&[table.name(), outcome.as_str()])
            .get()
    }

    /// Counts a landing session started again after `error` (a retryable [`LakeError`](crate::LakeError)).
    pub fn session_restarted(&self, error: &crate::LakeError) {
        self.sessions_restarted
            .with_label_values(&[error.kind()])
            .inc();
    }

    /// Publishes `table`'s committed ledger (all its partitions added up).
    pub fn ledger(&self, table: RawTable, ledger: &tributary_raw::ledger::Ledger) {
        let total = ledger.total();
        for (fate, n) in [
            ("consumed", total.records),
            ("landed", total.landed),
            ("dead_letter", total.dead_lettered),
            ("tombstone", total.tombstones),
        ] {
            self.ledger
                .with_label_values(&[table.name(), fate])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Sets the consumer lag of one partition.
    pub fn lag(&self, topic: &str, partition: i32, records: i64) {
        self.lag
            .with_label_values(&[topic, &partition.to_string()])
            .set(records.max(0));
    }

    /// Current lag of one partition (tests).
    pub fn lag_value(&self, topic: &str, partition: i32) -> i64 {
        self.lag
            .with_label_values(&[topic, &partition.to_string()])
            .get()
    }

    /// Records not consumed yet, all partitions together, and the Unix time of the newest
    /// commit to any table (`None` before the first): what the backlog check judges.
    pub fn backlog(&self) -> (i64, Option<i64>) {
        use prometheus::core::Collector;
        let values = |gauges: &IntGaugeVec| -> Vec<i64> {
            gauges
                .collect()
                .iter()
                .flat_map(|family| {
                    family
                        .get_metric()
                        .iter()
                        .map(|m| m.get_gauge().value() as i64)
                })
                .collect::<Vec<_>>()
        };
        let lag = values(&self.lag).iter().sum();
        let newest = values(&self.last_commit).into_iter().max();
        (lag, newest)
    }

    /// Records one successful commit.
    pub fn committed(&self, table: RawTable, seconds: f64, files: usize) {
        self.commit_seconds
            .with_label_values(&[table.name()])
            .observe(seconds);
        self.data_files
            .with_label_values(&[table.name()])
            .inc_by(files as u64);
        self.commit_files
            .with_label_values(&[table.name()])
            .observe(files as f64);
        self.last_commit
            .with_label_values(&[table.name()])
            .set(chrono::Utc::now().timestamp());
    }

    /// Records the size of one successful commit (with [`Self::committed`]).
    pub fn committed_bytes(&self, table: RawTable, bytes: u64) {
        self.commit_bytes
            .with_label_values(&[table.name()])
            .observe(bytes as f64);
        self.data_bytes
            .with_label_values(&[table.name()])
            .inc_by(bytes);
    }

    /// Records one maintenance run (`report` is `None` when it failed).
    pub fn maintained(
        &self,
        table: RawTable,
        report: Option<&crate::maintenance::MaintenanceReport>,
    ) {
        let m = &self.maintenance;
        let t = table.name();
        let Some(report) = report else {
            m.runs.with_label_values(&[t, "failed"]).inc();
            return;
        };
        m.runs.with_label_values(&[t, "ok"]).inc();
        m.seconds
            .with_label_values(&[t])
            .observe(report.elapsed.as_secs_f64());
        m.commit_seconds
            .with_label_values(&[t])
            .observe(report.commit_elapsed.as_secs_f64());
        m.files_deleted
            .with_label_values(&[t])
            .inc_by(report.files_deleted as u64);
        m.bytes_deleted
            .with_label_values(&[t])
            .inc_by(report.bytes_deleted);
        m.files_rewritten
            .with_label_values(&[t])
            .inc_by(report.files_rewritten as u64);
        let gauge = |g: &IntGaugeVec, v: u64| {
            g.with_label_values(&[t])
                .set(i64::try_from(v).unwrap_or(i64::MAX))
        };
        gauge(&m.snapshots, report.snapshots_after as u64);
        gauge(&m.manifests, report.manifests_after as u64);
        gauge(&m.files, report.files_kept as u64);
        gauge(&m.bytes, report.bytes_kept);
    }

    /// Count of maintenance runs of `table` with `outcome` (`ok`, `failed`; tests).
    pub fn maintenance_runs(&self, table: RawTable, outcome: &str) -> u64 {
        self.maintenance
            .runs
            .with_label_values(&[table.name(), outcome])
            .get()
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The lander's backlog thresholds (`[health]`): `/readyz` reports the backlog check failed
/// (optional: it does not take the lander out of service, it says it is behind).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BacklogSettings {
    /// More records than this waiting in Kafka is behind.
    pub max_lag_records: i64,
    /// Records waiting and no commit for this many seconds is stuck.
    pub max_commit_gap_s: i64,
}

impl Default for BacklogSettings {
    fn default() -> Self {
        Self {
            max_lag_records: 100_000,
            max_commit_gap_s: 120,
        }
    }
}

/// Judges the backlog: `lag` records waiting, the newest commit at `newest_commit` (Unix
/// seconds), at `now`. Pure.
pub fn judge_backlog(
    lag: i64,
    newest_commit: Option<i64>,
    now: i64,
    settings: &BacklogSettings,
) -> Result<String, String> {
    let since = newest_commit.map(|t| now - t);
    if lag > settings.max_lag_records {
        return Err(format!(
            "{lag} records wait in Kafka (more than {})",
            settings.max_lag_records
        ));
    }
    match since {
        Some(s) if lag > 0 && s > settings.max_commit_gap_s => Err(format!(
            "{lag} records wait and the last commit was {s} s ago (more than {} s)",
            settings.max_commit_gap_s
        )),
        Some(s) => Ok(format!("{lag} records wait; last commit {s} s ago")),
        None => Ok(format!("{lag} records wait; nothing committed yet")),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        let m = Metrics::new().unwrap();
        m.events(RawTable::PgSale, Outcome::Landed, 3);
        m.committed(RawTable::PgSale, 0.2, 1);
        let text = m.encode();
        assert!(
            text.contains(r#"tributary_lander_events_total{outcome="landed",table="pg_sale"} 3"#),
            "{text}"
        );
        assert!(
            text.contains("tributary_lander_commit_seconds_bucket"),
            "{text}"
        );
        assert_eq!(m.events_count(RawTable::PgSale, Outcome::Landed), 3);
        assert!(
            text.contains(
                r#"tributary_lander_events_total{outcome="dead_letter",table="pg_city"} 0"#
            ),
            "{text}"
        );
    }

    #[test]
    fn the_backlog_is_behind_past_its_thresholds() {
        let s = BacklogSettings::default();
        assert!(judge_backlog(0, None, 1_000, &s).is_ok());
        assert!(judge_backlog(50, Some(990), 1_000, &s).is_ok());
        // Far behind, even while committing.
        let err = judge_backlog(200_000, Some(999), 1_000, &s).unwrap_err();
        assert!(err.contains("200000 records wait"), "{err}");
        // Records wait, no commit for minutes: stuck.
        assert!(judge_backlog(10, Some(700), 1_000, &s).is_err());
        // Nothing waits: an idle lander is fine however old its last commit.
        assert!(judge_backlog(0, Some(0), 1_000, &s).is_ok());
    }

    #[test]
    fn the_backlog_sums_partitions_and_finds_the_newest_commit() {
        let metrics = Metrics::new().unwrap();
        assert_eq!(metrics.backlog(), (0, None));
        metrics.lag("raw.files.sales", 0, 5);
        metrics.lag("salesdb.public.sale", 2, 7);
        metrics.committed(RawTable::PgSale, 0.1, 1);
        let (lag, newest) = metrics.backlog();
        assert_eq!(lag, 12);
        assert!(newest.is_some_and(|t| (chrono::Utc::now().timestamp() - t).abs() < 5));
    }
}
