//! `tributary-bench soak`: the running pipeline (`dev/app up`, maintenance and retention on)
//! under the seeded load of `bench load` at a steady rate, sampled every `sample_s`: the
//! lander's commit time, the marts' run time, the API's p99, snapshots, live files and
//! `metadata.json` per raw table, the warehouse's and ClickHouse's bytes, the inbox's objects and
//! every service's RSS. It ends by waiting for the pipeline to catch up and checking the latest
//! publication against the same rankings recomputed from the lake at its snapshots; it writes
//! `soak.{md,json,svg}` and compares the first window after warm-up with the last.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures::TryStreamExt;
use object_store::ObjectStore;
use serde::Serialize;
use tributary_common::LakeSettings;
use tributary_rankings::{ClickHouseStore, Page, Period, RankingQueries};
use tributary_raw::RawTable;

use crate::load::{self, Shares, Targets, Workload};

/// `tributary-bench soak` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// Changes per second, all sources together (1–5000).
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    /// How long the load runs, minutes (1–240).
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 15)]
    pub sample_s: u64,
    /// Minutes at the start left out of the first window (caches, JIT of the JVM services).
    #[arg(long, default_value_t = 5.0)]
    pub warmup_minutes: f64,
    /// Length of the first and last windows compared, minutes.
    #[arg(long, default_value_t = 5.0)]
    pub window_minutes: f64,
    /// Workload seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The source database.
    #[arg(
        long,
        default_value = "host=127.0.0.1 port=5432 user=tributary password=tributary dbname=salesdb"
    )]
    pub postgres: String,
    /// The partner inbox (`dev/app`'s).
    #[arg(long, default_value = ".stack/inbox")]
    pub inbox: String,
    /// The ERP simulator.
    #[arg(long, default_value = "http://127.0.0.1:8088")]
    pub erp: String,
    /// The API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// The lander's metrics.
    #[arg(long, default_value = "http://127.0.0.1:9101")]
    pub lander: String,
    /// The marts job's metrics.
    #[arg(long, default_value = "http://127.0.0.1:9468")]
    pub marts: String,
    /// ClickHouse's HTTP interface and the marts database.
    #[arg(long, default_value = "http://127.0.0.1:8123")]
    pub clickhouse: String,
    /// The marts database.
    #[arg(long, default_value = "marts")]
    pub database: String,
}

/// One raw table at a sample.
#[derive(Debug, Clone, Default, Serialize)]
struct TableSample {
    snapshots: usize,
    live_files: usize,
    metadata_bytes: u64,
}

/// Everything read at one moment.
#[derive(Debug, Clone, Default, Serialize)]
struct Sample {
    /// Seconds since the load started.
    t_s: f64,
    /// Lander commits since the previous sample, their mean and p99 (bucket bound) seconds.
    lander_commits: f64,
    lander_commit_mean_s: Option<f64>,
    lander_commit_p99_s: Option<f64>,
    /// Records waiting in Kafka.
    lander_lag: f64,
    /// Marts runs that published since the previous sample, and their mean seconds.
    marts_runs: f64,
    marts_run_mean_s: Option<f64>,
    /// p99 of this sample's API requests, milliseconds.
    api_p99_ms: f64,
    /// Every API request latency of this sample, ms (windows take their p99 over all of them).
    api_ms: Vec<f64>,
    tables: BTreeMap<String, TableSample>,
    warehouse_objects: usize,
    warehouse_bytes: u64,
    /// Of them, under a table's `metadata/` (metadata.json, manifest lists, manifests): what
    /// maintenance bounds; the rest is data, which grows with the events (the lake keeps each).
    warehouse_metadata_bytes: u64,
    /// Rows in the raw tables' current snapshots (`total-records`).
    lake_rows: u64,
    clickhouse_bytes: u64,
    clickhouse_publications: u64,
    inbox_objects: usize,
    /// Service → resident set size, KiB.
    rss_kib: BTreeMap<String, u64>,
    /// The cumulative histogram buckets read (kept for window percentiles, not written).
    #[serde(skip)]
    commit_buckets: Vec<(f64, f64)>,
}

/// `name{labels} value` lines of a Prometheus text exposition whose name is `name`.
fn series<'a>(text: &'a str, name: &str) -> Vec<(&'a str, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (metric, labels) = match key.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (key, ""),
            };
            (metric == name)
                .then(|| (labels, value.parse().ok()))?
                .1
                .map(|v| (labels, v))
        })
        .collect()
}

fn sum(text: &str, name: &str, filter: &str) -> f64 {
    series(text, name)
        .iter()
        .filter(|(labels, _)| labels.contains(filter))
        .map(|(_, v)| v)
        .sum()
}

/// Cumulative buckets `(le, count)` of a histogram, summed over its other labels.
fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for (labels, v) in series(text, &format!("{name}_bucket")) {
        let Some(le) = labels.split(',').find_map(|l| l.strip_prefix("le=\"")) else {
            continue;
        };
        let le: f64 = match le.trim_end_matches('"') {
            "+Inf" => f64::INFINITY,
            x => x.parse().unwrap_or(f64::INFINITY),
        };
        let e = by_le.entry(le.to_bits()).or_insert((le, 0.0));
        e.1 += v;
    }
    let mut out: Vec<(f64, f64)> = by_le.into_values().collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The bucket bound under which 99 % of the observations between two cumulative readings fall.
fn p99_between(before: &[(f64, f64)], after: &[(f64, f64)]) -> Option<f64> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            let was = before
                .iter()
                .find(|(b, _)| b == le)
                .map_or(0.0, |(_, c)| *c);
            (*le, n - was)
        })
        .collect();
    let total = delta.last()?.1;
    (total > 0.0).then(|| {
        delta
            .iter()
            .find(|(_, n)| *n >= 0.99 * total)
            .map_or(f64::INFINITY, |(le, _)| *le)
    })
}

/// Nearest-rank percentile.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Resident set size (KiB) of the service whose `.stack` folder is `dir`.
fn rss_kib(dir: &Path) -> Option<u64> {
    let pid = crate::stack_service_pid(dir)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => count_files(&e.path()),
                Ok(_) => 1,
                Err(_) => 0,
            })
            .sum()
    })
}

struct Sampler {
    args: SoakArgs,
    http: reqwest::Client,
    lake: LakeSettings,
    catalog: std::sync::Arc<dyn iceberg::Catalog>,
    warehouse: Box<dyn ObjectStore>,
    stack: std::path::PathBuf,
    prev_lander: String,
    prev_marts: String,
    /// What [`probe_api`] measured since the last sample, ms.
    api_latencies: ApiLatencies,
}

/// API request latencies in milliseconds, shared by the prober and the sampler.
type ApiLatencies = std::sync::Arc<std::sync::Mutex<Vec<f64>>>;

/// How often [`probe_api`] sends a request.
const API_PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// Requests a ranking every [`API_PROBE_INTERVAL`] (the salesmen's and the cities' in turn)
/// for as long as the soak runs, so that a window's p99 is taken over requests spread evenly in
/// time (about 2,850 a window), not over a burst sent right after each sample's scrapes.
async fn probe_api(http: reqwest::Client, api: String, latencies: ApiLatencies) {
    let mut tick = tokio::time::interval(API_PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for path in [
        "/v1/rankings/salesmen?limit=10",
        "/v1/rankings/cities?limit=10",
    ]
    .iter()
    .cycle()
    {
        tick.tick().await;
        let started = Instant::now();
        // A failed request counts with the time it took to fail (up to the client's timeout).
        if let Ok(response) = http.get(format!("{api}{path}")).send().await {
            let _ = response.bytes().await;
        }
        let ms = started.elapsed().as_secs_f64() * 1e3;
        latencies.lock().expect("api latencies lock").push(ms);
    }
}

impl Sampler {
    async fn metrics(&self, base: &str) -> Result<String> {
        Ok(self
            .http
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    async fn clickhouse(&self, sql: &str) -> Result<u64> {
        let text = self
            .http
            .post(&self.args.clickhouse)
            .body(sql.to_string())
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(text.trim().parse().unwrap_or(0))
    }

    async fn sample(&mut self, t_s: f64) -> Result<Sample> {
        let mut s = Sample {
            t_s,
            ..Sample::default()
        };
        let lander = self.metrics(&self.args.lander).await?;
        let commit = "tributary_lander_commit_seconds";
        let commits = sum(&lander, &format!("{commit}_count"), "")
            - sum(&self.prev_lander, &format!("{commit}_count"), "");
        let seconds = sum(&lander, &format!("{commit}_sum"), "")
            - sum(&self.prev_lander, &format!("{commit}_sum"), "");
        s.lander_commits = commits;
        s.lander_commit_mean_s = (commits > 0.0).then(|| seconds / commits);
        s.commit_buckets = buckets(&lander, commit);
        s.lander_commit_p99_s = p99_between(&buckets(&self.prev_lander, commit), &s.commit_buckets);
        s.lander_lag = sum(&lander, "tributary_lander_consumer_lag_records", "");
        self.prev_lander = lander;

        let marts = self.metrics(&self.args.marts).await?;
        let run = "tributary_marts_run_duration_seconds";
        let published = "status=\"published\"";
        let runs = sum(&marts, &format!("{run}_count"), published)
            - sum(&self.prev_marts, &format!("{run}_count"), published);
        let seconds = sum(&marts, &format!("{run}_sum"), published)
            - sum(&self.prev_marts, &format!("{run}_sum"), published);
        s.marts_runs = runs;
        s.marts_run_mean_s = (runs > 0.0).then(|| seconds / runs);
        self.prev_marts = marts;

        s.api_ms = std::mem::take(&mut *self.api_latencies.lock().expect("api latencies lock"));
        s.api_p99_ms = percentile(&s.api_ms, 99.0);

        for table in RawTable::ALL {
            let t = tributary_raw::catalog::load_table(
                self.catalog.as_ref(),
                &self.lake.namespace,
                table,
            )
            .await?;
            let metadata = t.metadata();
            s.lake_rows += metadata
                .current_snapshot()
                .and_then(|c| c.summary().additional_properties.get("total-records"))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            let mut sample = TableSample {
                snapshots: metadata.snapshots().count(),
                ..TableSample::default()
            };
            sample.metadata_bytes = crate::aging::metadata_bytes(&t).await?;
            if let Some(current) = metadata.current_snapshot() {
                sample.live_files = tributary_raw::incremental::live_files(
                    &t,
                    current.snapshot_id(),
                    table.name(),
                    |_| true,
                )
                .await?
                .len();
            }
            s.tables.insert(table.name().to_string(), sample);
        }
        let objects: Vec<object_store::ObjectMeta> =
            self.warehouse.list(None).try_collect().await?;
        s.warehouse_objects = objects.len();
        s.warehouse_bytes = objects.iter().map(|o| o.size).sum();
        s.warehouse_metadata_bytes = objects
            .iter()
            .filter(|o| o.location.parts().any(|p| p.as_ref() == "metadata"))
            .map(|o| o.size)
            .sum();
        let db = &self.args.database;
        s.clickhouse_bytes = self
            .clickhouse(&format!(
                "SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = '{db}'"
            ))
            .await?;
        s.clickhouse_publications = self
            .clickhouse(&format!("SELECT count() FROM {db}.publications FINAL"))
            .await?;
        s.inbox_objects = count_files(Path::new(&self.args.inbox));
        for entry in std::fs::read_dir(&self.stack)?.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(kib) = rss_kib(&entry.path()) {
                s.rss_kib.insert(name, kib);
            }
        }
        Ok(s)
    }
}

/// What one window of samples shows.
#[derive(Debug, Clone, Serialize)]
struct Window {
    from_s: f64,
    to_s: f64,
    lander_commit_p99_s: Option<f64>,
    lander_commit_mean_s: Option<f64>,
    marts_run_mean_s: Option<f64>,
    api_p99_ms: f64,
    warehouse_bytes: u64,
    warehouse_metadata_bytes: u64,
    /// Data bytes (warehouse less metadata) per lake row, at the window's end.
    data_bytes_per_row: Option<f64>,
    clickhouse_bytes: u64,
    /// The most ClickHouse held in the window: publications come and go in a saw-tooth (pruned
    /// whole, a lake window at a time), so a bound shows in the peaks, not in a mean that depends
    /// on where in the tooth the window falls.
    clickhouse_bytes_peak: u64,
    rss_kib: BTreeMap<String, u64>,
    /// The highest RSS sampled in the window: a leak raises the peaks too, while the mean moves
    /// with whether a compaction or a merge happened to run at a sample.
    rss_peak_kib: BTreeMap<String, u64>,
}

fn window(samples: &[Sample], from_s: f64, to_s: f64) -> Option<Window> {
    let inside: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t_s >= from_s && s.t_s <= to_s)
        .collect();
    let (first, last) = (inside.first()?, inside.last()?);
    let weighted = |n: fn(&Sample) -> f64, mean: fn(&Sample) -> Option<f64>| {
        let total: f64 = inside.iter().skip(1).map(|s| n(s)).sum();
        (total > 0.0).then(|| {
            inside
                .iter()
                .skip(1)
                .map(|s| n(s) * mean(s).unwrap_or(0.0))
                .sum::<f64>()
                / total
        })
    };
    let api: Vec<f64> = inside
        .iter()
        .flat_map(|s| s.api_ms.iter().copied())
        .collect();
    let mut rss: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for s in &inside {
        for (k, v) in &s.rss_kib {
            rss.entry(k.clone()).or_default().push(*v);
        }
    }
    let mean_u64 = |v: &[u64]| v.iter().sum::<u64>() / v.len().max(1) as u64;
    Some(Window {
        from_s: first.t_s,
        to_s: last.t_s,
        lander_commit_p99_s: p99_between(&first.commit_buckets, &last.commit_buckets),
        lander_commit_mean_s: weighted(|s| s.lander_commits, |s| s.lander_commit_mean_s),
        marts_run_mean_s: weighted(|s| s.marts_runs, |s| s.marts_run_mean_s),
        api_p99_ms: percentile(&api, 99.0),
        warehouse_bytes: mean_u64(&inside.iter().map(|s| s.warehouse_bytes).collect::<Vec<_>>()),
        warehouse_metadata_bytes: mean_u64(
            &inside
                .iter()
                .map(|s| s.warehouse_metadata_bytes)
                .collect::<Vec<_>>(),
        ),
        data_bytes_per_row: (last.lake_rows > 0).then(|| {
            last.warehouse_bytes
                .saturating_sub(last.warehouse_metadata_bytes) as f64
                / last.lake_rows as f64
        }),
        clickhouse_bytes: mean_u64(
            &inside
                .iter()
                .map(|s| s.clickhouse_bytes)
                .collect::<Vec<_>>(),
        ),
        clickhouse_bytes_peak: inside.iter().map(|s| s.clickhouse_bytes).max().unwrap_or(0),
        rss_peak_kib: rss
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().copied().max().unwrap_or(0)))
            .collect(),
        rss_kib: rss.into_iter().map(|(k, v)| (k, mean_u64(&v))).collect(),
    })
}

/// Waits for the pipeline to settle (the lake's snapshots unchanged over 10 s, the lander's lag
/// under 1 000 records: transaction markers keep it above 0 for good, and the marts' latest
/// publication computed from exactly those snapshots), then compares that publication with the
/// rankings recomputed from the lake at them. Returns a one-line verdict.
async fn check_end(sampler: &Sampler, store: &ClickHouseStore) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut previous = String::new();
    loop {
        let lander = sampler.metrics(&sampler.args.lander).await?;
        let lag = sum(&lander, "tributary_lander_consumer_lag_records", "");
        // The publication id the lake's current snapshots make (the marts build it the same
        // way: `tributary_marts::lake`), without recomputing anything.
        let current = tributary_rankings::LakeSnapshots(
            tributary_raw::snapshots::pin_raw_tables(
                sampler.catalog.as_ref(),
                &sampler.lake.namespace,
                &tributary_raw::AsOf::Latest,
            )
            .await?
            .iter()
            .map(|t| tributary_rankings::LakeSnapshot {
                table: t.name.to_string(),
                snapshot_id: t.snapshot_id,
            })
            .collect(),
        )
        .publication_id();
        let settled = current == previous && lag < 1_000.0;
        if settled {
            let latest = store.latest_publication().await?;
            if latest.is_some_and(|p| p.publication_id == current) {
                break;
            }
        }
        previous = current;
        ensure!(
            Instant::now() < deadline,
            "the pipeline did not settle within 10 minutes of the load's end (lag {lag})"
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    let publication = store
        .latest_publication()
        .await?
        .context("no publication")?;
    let snapshots = tributary_rankings::LakeSnapshots::from_json(
        &publication.publication_id,
        &publication.lake_snapshots,
    )?;
    let pins = snapshots
        .0
        .iter()
        .filter_map(|s| s.snapshot_id.map(|id| (s.table.clone(), id)))
        .collect();
    let (_, recomputed) = tributary_marts::job::compute_as_of(
        sampler.catalog.as_ref(),
        &sampler.lake.namespace,
        &tributary_raw::AsOf::Snapshots(pins),
    )
    .await?;
    let all = Page {
        limit: 100_000,
        offset: 0,
    };
    let published: Vec<(i64, i64, u64)> = store
        .salesman_ranking(&publication.publication_id, Period::AllTime, all)
        .await?
        .iter()
        .map(|r| (r.salesman_id, r.revenue, r.sales))
        .collect();
    let expected: Vec<(i64, i64, u64)> = recomputed
        .all
        .salesmen
        .iter()
        .map(|r| (r.row.salesman_id, r.row.revenue.cents(), r.row.sales))
        .collect();
    ensure!(
        published == expected,
        "the published salesman ranking differs from the lake recomputed at its snapshots"
    );
    let cities: Vec<(i64, i64, u64)> = store
        .city_ranking(&publication.publication_id, Period::AllTime, all)
        .await?
        .iter()
        .map(|r| (r.city_id, r.revenue, r.sales))
        .collect();
    let expected_cities: Vec<(i64, i64, u64)> = recomputed
        .all
        .cities
        .iter()
        .map(|c| (c.city.city_id, c.city.revenue.cents(), c.city.sales))
        .collect();
    ensure!(
        cities == expected_cities,
        "the published city ranking differs from the lake recomputed at its snapshots"
    );
    Ok(format!(
        "publication {} equals the full recompute at its snapshots: {} salesmen, {} cities, {} sales",
        publication.publication_id,
        published.len(),
        cities.len(),
        publication.sales
    ))
}

/// Runs the soak and writes `soak.{md,json,svg}` into `out`.
pub async fn main(args: SoakArgs, out: &Path, commit: String) -> Result<()> {
    ensure!(
        (1.0..=5_000.0).contains(&args.rate),
        "--rate must be within 1..=5000 changes/s"
    );
    ensure!(
        (1.0..=240.0).contains(&args.minutes),
        "--minutes must be within 1..=240"
    );
    let lake = LakeSettings {
        warehouse: "s3://warehouse".into(),
        ..LakeSettings::default()
    };
    let catalog: std::sync::Arc<dyn iceberg::Catalog> =
        std::sync::Arc::new(tributary_raw::catalog::open(&lake).await?);
    let warehouse = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("warehouse")
        .with_endpoint(&lake.s3.endpoint)
        .with_access_key_id(&lake.s3.access_key_id)
        .with_secret_access_key(&lake.s3.secret_access_key)
        .with_region(&lake.s3.region)
        .with_allow_http(true)
        .build()?;
    let store = ClickHouseStore::new(&tributary_common::ClickHouseSettings {
        url: args.clickhouse.clone(),
        database: args.database.clone(),
        ..Default::default()
    })?;
    let mut sampler = Sampler {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        lake: lake.clone(),
        catalog,
        warehouse: Box::new(warehouse),
        stack: std::path::PathBuf::from(".stack"),
        prev_lander: String::new(),
        prev_marts: String::new(),
        api_latencies: ApiLatencies::default(),
        args: args.clone(),
    };
    let prober = tokio::spawn(probe_api(
        sampler.http.clone(),
        args.api.clone(),
        sampler.api_latencies.clone(),
    ));
    // Baselines for the counters, and a first sample before any load.
    sampler.prev_lander = sampler
        .metrics(&args.lander)
        .await
        .context("the lander's /metrics does not answer: start the pipeline (`make soak` does)")?;
    sampler.prev_marts = sampler.metrics(&args.marts).await?;

    let db = load::connect(&args.postgres).await?;
    let master = load::master(&db).await?;
    let shares = Shares {
        postgres: 80.0,
        files: 15.0,
        erp: 5.0,
    };
    let workload = Workload::today(args.seed, &master, shares);
    let targets = Targets {
        postgres: args.postgres.clone(),
        inbox: std::path::PathBuf::from(&args.inbox),
        erp: args.erp.clone(),
        run: format!("soak{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
    };
    let seconds = args.minutes * 60.0;
    eprintln!(
        "soak: {} changes/s for {} min, a sample every {} s",
        args.rate, args.minutes, args.sample_s
    );
    let started = Instant::now();
    let mut load =
        tokio::spawn(
            async move { load::run(workload, master, &targets, args.rate, seconds).await },
        );
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(args.sample_s));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let report = loop {
        tokio::select! {
            done = &mut load => break done??,
            _ = tick.tick() => {
                let s = sampler.sample(started.elapsed().as_secs_f64()).await?;
                eprintln!(
                    "soak {:>6.0} s: commit mean {:?} s, marts {:?} s, api p99 {:.1} ms, lag {}, warehouse {} MB, clickhouse {} MB",
                    s.t_s,
                    s.lander_commit_mean_s.map(|v| (v * 1000.0).round() / 1000.0),
                    s.marts_run_mean_s.map(|v| (v * 1000.0).round() / 1000.0),
                    s.api_p99_ms,
                    s.lander_lag,
                    s.warehouse_bytes / 1_000_000,
                    s.clickhouse_bytes / 1_000_000
                );
                samples.push(s);
            }
        }
    };
    prober.abort();
    let end_check = check_end(&sampler, &store).await;
    let warmup = args.warmup_minutes * 60.0;
    let span = args.window_minutes * 60.0;
    let first = window(&samples, warmup, warmup + span);
    let last = window(&samples, seconds - span, seconds);
    write(
        out, &args, &commit, &samples, &report, first, last, &end_check,
    )?;
    end_check.map(|_| ())
}

#[allow(clippy::too_many_arguments)]
fn write(
    out: &Path,
    args: &SoakArgs,
    commit: &str,
    samples: &[Sample],
    load: &load::LoadReport,
    first: Option<Window>,
    last: Option<Window>,
    end_check: &Result<String>,
) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let ctx = crate::RunContext::now();
    let verdict = match end_check {
        Ok(v) => format!("equal: {v}"),
        Err(e) => format!("FAILED: {e:#}"),
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => format!("{:.2}×", b / a),
        _ => "—".into(),
    };
    let mut md = format!(
        "# soak\n\n{}, {} cores ({}), services: `dev/app` builds; commit {commit}\n\n\
         Command: `{}`. Load: {} changes/s for {} min (achieved {:.0}/s, {} changes), seed {}; a \
         sample every {} s. Maintenance and retention as `make soak` sets them (see the README).\n\n\
         End check: {verdict}\n\n",
        ctx.when,
        ctx.cores,
        ctx.machine,
        std::env::args().collect::<Vec<_>>().join(" "),
        args.rate,
        args.minutes,
        load.achieved_rate,
        load.generated,
        args.seed,
        args.sample_s
    );
    if let (Some(f), Some(l)) = (&first, &last) {
        md.push_str(&format!(
            "| measure | first window ({:.0}–{:.0} s) | last window ({:.0}–{:.0} s) | last / first |\n|---|---:|---:|---:|\n",
            f.from_s, f.to_s, l.from_s, l.to_s
        ));
        let opt = |v: Option<f64>, unit: &str| v.map_or("—".into(), |v| format!("{v:.3} {unit}"));
        let rows = [
            (
                "lander commit p99 (bucket bound)",
                opt(f.lander_commit_p99_s, "s"),
                opt(l.lander_commit_p99_s, "s"),
                ratio(f.lander_commit_p99_s, l.lander_commit_p99_s),
            ),
            (
                "lander commit mean",
                opt(f.lander_commit_mean_s, "s"),
                opt(l.lander_commit_mean_s, "s"),
                ratio(f.lander_commit_mean_s, l.lander_commit_mean_s),
            ),
            (
                "marts run mean (published)",
                opt(f.marts_run_mean_s, "s"),
                opt(l.marts_run_mean_s, "s"),
                ratio(f.marts_run_mean_s, l.marts_run_mean_s),
            ),
            (
                "API p99",
                format!("{:.1} ms", f.api_p99_ms),
                format!("{:.1} ms", l.api_p99_ms),
                ratio(Some(f.api_p99_ms), Some(l.api_p99_ms)),
            ),
            (
                "warehouse bytes",
                format!("{}", f.warehouse_bytes),
                format!("{}", l.warehouse_bytes),
                ratio(
                    Some(f.warehouse_bytes as f64),
                    Some(l.warehouse_bytes as f64),
                ),
            ),
            (
                "warehouse metadata bytes (bounded by maintenance)",
                format!("{}", f.warehouse_metadata_bytes),
                format!("{}", l.warehouse_metadata_bytes),
                ratio(
                    Some(f.warehouse_metadata_bytes as f64),
                    Some(l.warehouse_metadata_bytes as f64),
                ),
            ),
            (
                "warehouse data bytes per lake row",
                opt(f.data_bytes_per_row, "B"),
                opt(l.data_bytes_per_row, "B"),
                ratio(f.data_bytes_per_row, l.data_bytes_per_row),
            ),
            (
                "ClickHouse bytes, mean",
                format!("{}", f.clickhouse_bytes),
                format!("{}", l.clickhouse_bytes),
                ratio(
                    Some(f.clickhouse_bytes as f64),
                    Some(l.clickhouse_bytes as f64),
                ),
            ),
            (
                "ClickHouse bytes, peak",
                format!("{}", f.clickhouse_bytes_peak),
                format!("{}", l.clickhouse_bytes_peak),
                ratio(
                    Some(f.clickhouse_bytes_peak as f64),
                    Some(l.clickhouse_bytes_peak as f64),
                ),
            ),
        ];
        for (name, a, b, r) in rows {
            md.push_str(&format!("| {name} | {a} | {b} | {r} |\n"));
        }
        let mib = |kib: Option<u64>| kib.map_or("—".into(), |k| (k / 1024).to_string());
        for (service, kib) in &f.rss_kib {
            let after = l.rss_kib.get(service).copied();
            let (peak, peak_after) = (
                f.rss_peak_kib.get(service).copied(),
                l.rss_peak_kib.get(service).copied(),
            );
            md.push_str(&format!(
                "| RSS {service}, mean (peak) | {} ({}) MiB | {} ({}) MiB | {} ({}) |\n",
                kib / 1024,
                mib(peak),
                mib(after),
                mib(peak_after),
                ratio(Some(*kib as f64), after.map(|k| k as f64)),
                ratio(peak.map(|k| k as f64), peak_after.map(|k| k as f64)),
            ));
        }
    } else {
        md.push_str("The run was too short for a first and a last window after warm-up.\n");
    }
    md.push_str("\n## Every minute\n\n| t (s) | commits | commit mean (s) | marts mean (s) | API p99 (ms) | lag | pg_sale snapshots | pg_sale files | pg_sale metadata.json (KB) | warehouse (MB) | of which metadata (MB) | lake rows | ClickHouse (MB) | publications | inbox objects |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let per_minute = (60 / args.sample_s.max(1)).max(1) as usize;
    for s in samples.iter().step_by(per_minute) {
        let pg = s.tables.get("pg_sale").cloned().unwrap_or_default();
        md.push_str(&format!(
            "| {:.0} | {:.0} | {} | {} | {:.1} | {:.0} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {} |\n",
            s.t_s,
            s.lander_commits,
            s.lander_commit_mean_s
                .map_or("—".into(), |v| format!("{v:.3}")),
            s.marts_run_mean_s.map_or("—".into(), |v| format!("{v:.3}")),
            s.api_p99_ms,
            s.lander_lag,
            pg.snapshots,
            pg.live_files,
            pg.metadata_bytes / 1000,
            s.warehouse_bytes / 1_000_000,
            s.warehouse_metadata_bytes as f64 / 1e6,
            s.lake_rows,
            s.clickhouse_bytes / 1_000_000,
            s.clickhouse_publications,
            s.inbox_objects
        ));
    }
    md.push_str(
        "\nChart: [soak.svg](soak.svg) (each measure over time, relative to its median).\n",
    );
    print!("{md}");
    std::fs::write(out.join("soak.md"), &md)?;
    let json = serde_json::json!({
        "benchmark": "soak", "when": ctx.when, "cores": ctx.cores, "machine": ctx.machine,
        "commit": commit, "command": std::env::args().collect::<Vec<_>>().join(" "),
        "rate": args.rate, "minutes": args.minutes, "sample_s": args.sample_s, "seed": args.seed,
        "load": load, "first_window": first, "last_window": last, "end_check": verdict,
        "samples": samples,
    });
    std::fs::write(out.join("soak.json"), serde_json::to_string_pretty(&json)?)?;
    std::fs::write(out.join("soak.svg"), chart(samples))?;
    Ok(())
}

/// How a chart line reads one sample.
type Measure = fn(&Sample) -> Option<f64>;

/// Each measure over time relative to its median (1 = its usual value), so flat lines are what
/// "bounded" looks like.
fn chart(samples: &[Sample]) -> String {
    let minutes = |s: &Sample| s.t_s / 60.0;
    let measures: [(&str, Measure); 7] = [
        ("lander commit mean", |s| s.lander_commit_mean_s),
        ("marts run mean", |s| s.marts_run_mean_s),
        ("API p99", |s| Some(s.api_p99_ms)),
        ("pg_sale metadata.json", |s| {
            s.tables.get("pg_sale").map(|t| t.metadata_bytes as f64)
        }),
        ("warehouse bytes", |s| Some(s.warehouse_bytes as f64)),
        ("warehouse metadata bytes", |s| {
            Some(s.warehouse_metadata_bytes as f64)
        }),
        ("ClickHouse bytes", |s| Some(s.clickhouse_bytes as f64)),
    ];
    let series: Vec<(String, Vec<(f64, f64)>)> = measures
        .iter()
        .map(|(name, f)| {
            let values: Vec<f64> = samples.iter().filter_map(f).filter(|v| *v > 0.0).collect();
            let median = percentile(&values, 50.0).max(f64::MIN_POSITIVE);
            let points = samples
                .iter()
                .filter_map(|s| f(s).filter(|v| *v > 0.0).map(|v| (minutes(s), v / median)))
                .collect();
            (name.to_string(), points)
        })
        .collect();
    crate::plot::log_lines(
        "soak: each measure / its median, over the run",
        "minutes",
        "relative to the median (log)",
        &series,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x\n\
tributary_lander_commit_seconds_bucket{table=\"pg_sale\",le=\"0.1\"} 5\n\
tributary_lander_commit_seconds_bucket{table=\"pg_sale\",le=\"0.5\"} 9\n\
tributary_lander_commit_seconds_bucket{table=\"pg_sale\",le=\"+Inf\"} 10\n\
tributary_lander_commit_seconds_bucket{table=\"pg_city\",le=\"0.1\"} 10\n\
tributary_lander_commit_seconds_bucket{table=\"pg_city\",le=\"0.5\"} 10\n\
tributary_lander_commit_seconds_bucket{table=\"pg_city\",le=\"+Inf\"} 10\n\
tributary_lander_commit_seconds_count{table=\"pg_sale\"} 10\n\
tributary_lander_consumer_lag_records{topic=\"a\",partition=\"0\"} 7\n";

    #[test]
    fn reads_counters_and_histogram_buckets() {
        assert_eq!(sum(TEXT, "tributary_lander_consumer_lag_records", ""), 7.0);
        assert_eq!(
            sum(TEXT, "tributary_lander_commit_seconds_count", "pg_sale"),
            10.0
        );
        let b = buckets(TEXT, "tributary_lander_commit_seconds");
        assert_eq!(b, vec![(0.1, 15.0), (0.5, 19.0), (f64::INFINITY, 20.0)]);
        // 20 observations: 99 % of them (19.8) only under +Inf.
        assert_eq!(p99_between(&[], &b), Some(f64::INFINITY));
        let before = vec![(0.1, 10.0), (0.5, 10.0), (f64::INFINITY, 10.0)];
        // Since `before`: 5 under 0.1, 9 under 0.5, 10 in all → p99 ≤ +Inf; 90 % ≤ 0.5.
        assert_eq!(p99_between(&before, &b), Some(f64::INFINITY));
        assert_eq!(p99_between(&b, &b), None);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
    }
}
