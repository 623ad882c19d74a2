//! `tributary-bench cdc`: the sustained change rate from Postgres through Debezium, Kafka and
//! the lander into Iceberg, against Debezium alone, and freshness (source commit → visible in
//! the API), at given rates of changes per second.
//!
//! Isolation: the run gets its own source database (`tributary_bench_<id>`, the `salesdb`
//! schema, 50 cities and 500 salesmen), captured by its own Debezium connector on the stack's
//! Connect worker (same Debezium, same settings as `salesdb-connector`; its own slot,
//! publication and topic prefix), and our services (lander, marts, API, both ingestors, the ERP
//! simulator) as processes with their own lake namespace, ClickHouse database, topics and
//! ports, like the e2e harness. Nothing another engineer or test reads is written: the shared
//! `salesdb` is left alone, because an oracle test compares the whole of it with its API and
//! would never converge under 5 000 foreign changes/s. At the end the connector, its slot, the
//! database and the topics are removed, and so is what the services wrote (lake namespace,
//! ClickHouse database, the marts' kept state), unless `--keep`.
//!
//! Measured per rate, over the load window:
//! - Postgres: changes committed per second by the load generator (one transaction per 20 ms
//!   tick, multi-row statements);
//! - Debezium alone: records arriving on the connector's `sale` topic per second, read by a
//!   plain consumer, and their delay from the source commit (`source.ts_ms`, ms resolution);
//! - the lander: `tributary_lander_events_total{table="pg_sale",outcome="landed"}` from its
//!   `/metrics` (counted when the Iceberg commit is done);
//! - freshness: every Postgres transaction of the load records the WAL position before its first
//!   change and the wall time its COMMIT was acknowledged; a poller asks the API's
//!   `/v1/completeness` every `--poll-ms`, whose `pg.position` is the furthest Postgres LSN the
//!   published rankings include. A transaction is visible at the first answer whose position is
//!   at or past its WAL position (one writer: any change of the database at or past it is its
//!   own or a later one). Freshness = that answer's arrival − the commit ack: an upper bound by
//!   at most one poll interval plus the request.
//! - CPU per process from `/proc/<pid>/stat` (utime + stime), the Postgres server's split by
//!   what its backends do (the source database, Debezium's walsender, Tributary's database,
//!   checkpointer, autovacuum: `cdc/cpu.rs`), and each of our services' peak RSS (`VmHWM`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use serde_json::{Value, json};
use tributary_raw::RawTable;

mod cpu;
mod report;
use crate::cleanup;
use crate::load::{self, Shares, Source, Targets, Workload};

const BROKERS: &str = "127.0.0.1:9092";
const CONNECT: &str = "http://127.0.0.1:8083";
const PG: &str = "host=127.0.0.1 port=5432 user=tributary password=tributary";

/// `tributary-bench cdc` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct CdcArgs {
    /// Postgres change rates to drive, changes/s, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    pub rates: Vec<f64>,
    /// Seconds of load per rate.
    #[arg(long, default_value_t = 45.0)]
    pub seconds: f64,
    /// Changes/s into the partner files and the ERP beside Postgres (3:1), so the ingestors run
    /// too; 0 for Postgres alone.
    #[arg(long, default_value_t = 20.0)]
    pub side_rate: f64,
    /// The lander's commit interval (bounds freshness from below; its default).
    #[arg(long, default_value_t = tributary_lake::LanderConfig::default().commit_interval_ms)]
    pub lander_commit_interval_ms: u64,
    /// The lander's commit size (rows; its default).
    #[arg(long, default_value_t = tributary_lake::LanderConfig::default().batch_max_rows)]
    pub lander_batch_max_rows: usize,
    /// The marts job's longest wait between runs (its default: runs start on each lake commit
    /// the lander announces).
    #[arg(long, default_value_t = tributary_marts::MartsConfig::default().interval_ms)]
    pub marts_interval_ms: u64,
    /// How often freshness polls `/v1/completeness`. Each freshness is late by up to this much
    /// (half of it on average): 20 ms keeps that small next to the second being measured, at
    /// 50 requests/s the API answers from memory.
    #[arg(long, default_value_t = 20)]
    pub poll_ms: u64,
    /// Load windows per rate (each rate's windows one after another); the report gives each
    /// window and, per rate, the median and spread.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Seed of the workload.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Before the services start, age the raw tables that take a commit a second under load
    /// (`pg_sale`, `file_sale`, `erp_sale`) to this many snapshots each (empty commits, the
    /// lander's maintenance every 100): at the defaults a busy table keeps up to ~1,400 (10
    /// minutes of its own, the snapshots of 10 to 20 minutes of retained publications, 168
    /// hourly ones); at the former 1-h windows 3,600 and more. 0 measures new tables.
    #[arg(long, default_value_t = 0)]
    pub aged_snapshots: usize,
    /// Where our services' binaries are (default: beside this executable, the same profile).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Keep the source database, connector and topics, and what the services wrote (lake
    /// namespace, ClickHouse database, the marts' kept state), afterwards (to look at them).
    #[arg(long)]
    pub keep: bool,
}

/// One of our binaries as a child process; killed when dropped.
struct Service {
    name: String,
    child: Child,
}

impl Service {
    fn start(
        bins: &Path,
        name: &str,
        bin: &str,
        args: &[&str],
        env: &BTreeMap<String, String>,
        logs: &Path,
    ) -> Result<Self> {
        let path = bins.join(bin);
        ensure!(
            path.exists(),
            "{} is missing: build the workspace in this profile first",
            path.display()
        );
        let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
        // The local stack's credentials are the development ones (common/src/profile.rs).
        let child = Command::new(&path)
            .args(args)
            .envs(env)
            .env("TRIBUTARY_PROFILE", "development")
            .env("RUST_LOG", "info")
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("start {}", path.display()))?;
        Ok(Self {
            name: name.to_string(),
            child,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn check(&mut self, logs: &Path) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited with {status}; see {}",
                self.name,
                logs.join(format!("{}.log", self.name)).display()
            );
        }
        Ok(())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn env(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Creates the run's source database with the `salesdb` schema (`ingest/sql/schema.sql`: the
/// connector's heartbeat table too), its publication and master data.
async fn create_source(database: &str) -> Result<load::Master> {
    let admin = load::connect(&format!("{PG} dbname=salesdb")).await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await
        .with_context(|| format!("create database {database}"))?;
    let db = load::connect(&format!("{PG} dbname={database}")).await?;
    // psql meta-commands (`\set ON_ERROR_STOP on`) are psql's, not SQL.
    let schema = std::fs::read_to_string("ingest/sql/schema.sql")
        .context("read ingest/sql/schema.sql (run from the repository root)")?;
    let schema: String = schema
        .lines()
        .filter(|line| !line.starts_with('\\'))
        .map(|line| format!("{line}\n"))
        .collect();
    db.batch_execute(&schema)
        .await
        .context("create the source schema (ingest/sql/schema.sql)")?;
    db.batch_execute(
        "ALTER PUBLICATION tributary_salesdb RENAME TO tributary_bench;
         INSERT INTO city (name, state)
           SELECT 'Bench City ' || lpad(i::text, 2, '0'), (ARRAY['SP','RJ','MG','BA','PR','RS','PE','CE'])[1 + i % 8]
           FROM generate_series(1, 50) AS i;
         INSERT INTO salesman (code, name, city_id)
           SELECT 'B' || lpad(i::text, 4, '0'), 'Bench Salesman ' || i, 1 + (i * 7) % 50
           FROM generate_series(1, 500) AS i;",
    )
    .await
    .context("insert the bench's cities and salesmen")?;
    load::master(&db).await
}

async fn drop_source(database: &str, slot: &str) {
    let Ok(admin) = load::connect(&format!("{PG} dbname=salesdb")).await else {
        return;
    };
    // The slot is released a moment after the connector's task stops.
    for _ in 0..30 {
        let dropped = admin
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active",
                &[&slot],
            )
            .await;
        let left = admin
            .query(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map(|r| r.len())
            .unwrap_or(0);
        if dropped.is_ok() && left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if let Err(e) = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await
    {
        eprintln!("cdc: could not drop {database}: {e}");
    }
}

/// Registers the run's Debezium connector: `salesdb-connector`'s settings on another database.
async fn register_connector(
    http: &reqwest::Client,
    name: &str,
    database: &str,
    prefix: &str,
    slot: &str,
) -> Result<Value> {
    let template = std::fs::read_to_string("ingest/debezium/salesdb-connector.json")
        .context("read ingest/debezium/salesdb-connector.json (run from the repository root)")?;
    let mut config: Value = serde_json::from_str(&template)?;
    let object = config.as_object_mut().context("connector config object")?;
    object.retain(|k, _| !k.starts_with('_'));
    object.insert("database.dbname".into(), json!(database));
    object.insert("topic.prefix".into(), json!(prefix));
    object.insert("publication.name".into(), json!("tributary_bench"));
    object.insert("slot.name".into(), json!(slot));
    http.put(format!("{CONNECT}/connectors/{name}/config"))
        .json(&config)
        .send()
        .await?
        .error_for_status()
        .context("register the bench connector")?;
    let start = Instant::now();
    loop {
        let status: Value = http
            .get(format!("{CONNECT}/connectors/{name}/status"))
            .send()
            .await?
            .json()
            .await?;
        if status["tasks"][0]["state"] == "RUNNING" {
            return Ok(config);
        }
        if status["tasks"][0]["state"] == "FAILED" || start.elapsed() > Duration::from_secs(60) {
            bail!("the bench connector did not start: {status}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A process whose CPU the run reports.
#[derive(Debug, Clone)]
struct Watched {
    name: String,
    pid: u32,
}

fn stack_pid(name: &str) -> Option<u32> {
    crate::stack_service_pid(&std::path::Path::new(".stack").join(name))
}

/// The sum of the samples of `metric` (a Prometheus text exposition) whose labels contain every
/// one of `labels`.
fn metric_sum(text: &str, metric: &str, labels: &[&str]) -> f64 {
    let prefix = format!("{metric}{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix) && labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The lander's pg_sale commit-time histogram: (sum of seconds, commits), and its consumer lag.
async fn lander_commits(http: &reqwest::Client, metrics: &str) -> Result<(f64, f64, f64)> {
    let text = http.get(metrics).send().await?.text().await?;
    let pg_sale = [r#"table="pg_sale""#];
    Ok((
        metric_sum(&text, "tributary_lander_commit_seconds_sum", &pg_sale),
        metric_sum(&text, "tributary_lander_commit_seconds_count", &pg_sale),
        metric_sum(&text, "tributary_lander_consumer_lag_records", &[]),
    ))
}

/// The marts' runs that published so far: (sum of their seconds, runs).
async fn marts_runs(http: &reqwest::Client, metrics: &str) -> Result<(f64, f64)> {
    let text = http.get(metrics).send().await?.text().await?;
    let published = [r#"status="published""#];
    Ok((
        metric_sum(
            &text,
            "tributary_marts_run_duration_seconds_sum",
            &published,
        ),
        metric_sum(
            &text,
            "tributary_marts_run_duration_seconds_count",
            &published,
        ),
    ))
}

async fn landed_pg_sale(http: &reqwest::Client, metrics: &str) -> Result<u64> {
    let text = http.get(metrics).send().await?.text().await?;
    let landed = [r#"table="pg_sale""#, r#"outcome="landed""#];
    Ok(metric_sum(&text, "tributary_lander_events_total", &landed) as u64)
}

/// The furthest Postgres position the published rankings include, if any.
async fn pg_position(http: &reqwest::Client, api: &str) -> Result<Option<i64>> {
    let response = http.get(format!("{api}/v1/completeness")).send().await?;
    if !response.status().is_success() {
        return Ok(None);
    }
    let body: Value = response.json().await?;
    Ok(body["items"].as_array().and_then(|items| {
        items
            .iter()
            .find(|i| i["source"] == "pg")
            .and_then(|i| i["position"].as_i64())
    }))
}

/// Percentiles (nearest rank) of `values` in the unit they are in.
pub fn percentiles(values: &mut [f64], ps: &[f64]) -> Vec<Option<f64>> {
    values.sort_by(f64::total_cmp);
    ps.iter()
        .map(|p| {
            if values.is_empty() {
                return None;
            }
            let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
            Some(values[rank.clamp(1, values.len()) - 1])
        })
        .collect()
}

/// Freshness of each probe (seconds): the first poll at or after its commit whose position
/// reaches its WAL position. Pure. `polls` are (arrival, position) in arrival order.
pub fn freshness(probes: &[(u64, SystemTime)], polls: &[(SystemTime, i64)]) -> (Vec<f64>, usize) {
    let mut seen = Vec::new();
    let mut unseen = 0;
    for (lsn, committed) in probes {
        let first = polls
            .iter()
            .find(|(at, position)| at >= committed && *position >= *lsn as i64);
        match first {
            Some((at, _)) => seen.push(
                at.duration_since(*committed)
                    .unwrap_or_default()
                    .as_secs_f64(),
            ),
            None => unseen += 1,
        }
    }
    (seen, unseen)
}

/// What the plain consumer saw on Debezium's topic: arrival time and source commit time (ms).
type Arrivals = Arc<Mutex<Vec<(SystemTime, i64)>>>;

fn debezium_consumer(topic: String, stop: Arc<AtomicBool>, arrivals: Arrivals) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", BROKERS)
        .set("group.id", format!("bench-cdc-debezium-{topic}"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
    let mut list = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            list.add_partition_offset(&topic, p.id(), Offset::End)?;
        }
    }
    consumer.assign(&list)?;
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let at = SystemTime::now();
                let ts = message
                    .payload()
                    .and_then(|p| serde_json::from_slice::<Value>(p).ok())
                    .and_then(|v| v["source"]["ts_ms"].as_i64())
                    .unwrap_or(0);
                arrivals.lock().expect("arrivals").push((at, ts));
            }
            Some(Err(e)) => bail!("debezium consumer: {e}"),
            None => {}
        }
    }
    Ok(())
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64
}

/// One rate's measurements.
#[derive(Debug, Serialize)]
pub struct RateResult {
    /// Target Postgres changes/s.
    pub target_rate: f64,
    /// Seconds of load.
    pub seconds: f64,
    /// Postgres changes committed.
    pub pg_changes: u64,
    /// Postgres changes/s committed by the generator.
    pub pg_rate: f64,
    /// Postgres transactions.
    pub pg_transactions: usize,
    /// Side changes (files + ERP) applied.
    pub side_changes: u64,
    /// Records on Debezium's topic during the load window, per second.
    pub debezium_rate: f64,
    /// Debezium records in total (after the drain).
    pub debezium_records: u64,
    /// Seconds after the load stopped until Debezium's last record of it.
    pub debezium_drain_s: f64,
    /// Source commit → record on the topic: p50, p95, p99 (s).
    pub debezium_delay_s: [Option<f64>; 3],
    /// pg_sale events landed in Iceberg during the load window, per second.
    pub lander_rate: f64,
    /// pg_sale events landed in total (after the drain).
    pub lander_landed: u64,
    /// Seconds after the load stopped until everything was landed.
    pub lander_drain_s: Option<f64>,
    /// The lander's pg_sale commits during the window and their mean time (s): writing the
    /// Parquet file and committing the Iceberg snapshot.
    pub lander_commits: u64,
    /// Mean time of those commits, seconds.
    pub lander_commit_mean_s: Option<f64>,
    /// The lander's consumer lag (records) when the load stopped.
    pub lander_lag_at_end: f64,
    /// The marts' runs that published during the window.
    pub marts_runs: u64,
    /// Mean time of those runs (read the new events, fold, commit the state, publish), seconds.
    pub marts_run_mean_s: Option<f64>,
    /// Freshness (commit → visible in the API), p50, p95, p99 (s).
    pub freshness_s: [Option<f64>; 3],
    /// Transactions never seen in the API before the drain timeout.
    pub freshness_unseen: usize,
    /// Transactions measured.
    pub freshness_samples: usize,
    /// CPU use per process during the load window, % of one core.
    pub cpu_percent: BTreeMap<String, f64>,
    /// Load average when the window started (1, 5, 15 min).
    pub loadavg: String,
}

/// Runs the CDC benchmark; returns the rows and the settings for the results files.
pub async fn run(args: &CdcArgs) -> Result<(Vec<RateResult>, Value)> {
    let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let database = format!("tributary_bench_{id}");
    let prefix = format!("benchcdc_{id}");
    let slot = format!("tributary_bench_{id}");
    let connector = format!("tributary-bench-cdc-{id}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    eprintln!("cdc: source database {database}, connector {connector}");
    let master = create_source(&database).await?;
    let outcome = run_with_source(args, &id, &database, &prefix, &connector, &slot, master).await;
    if !args.keep {
        eprintln!("cdc: removing the connector, its slot, the database and the topics");
        let _ = http
            .delete(format!("{CONNECT}/connectors/{connector}"))
            .send()
            .await;
        drop_source(&database, &slot).await;
        let admin: Result<AdminClient<DefaultClientContext>, _> = ClientConfig::new()
            .set("bootstrap.servers", BROKERS)
            .create();
        if let Ok(admin) = admin {
            let topics: Vec<String> = ["city", "salesman", "sale"]
                .iter()
                .map(|t| format!("{prefix}.public.{t}"))
                .chain(
                    [
                        "files.sales",
                        "files.dead",
                        "files.progress",
                        "erp.sales",
                        "erp.dead",
                        "erp.progress",
                    ]
                    .iter()
                    .map(|t| format!("bench.{id}.{t}")),
                )
                .collect();
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
        }
        drop_sinks(&format!("bench_{id}")).await;
    }
    outcome
}

/// Removes what the run's services wrote under `namespace`: the ClickHouse database of their
/// rankings, the marts' kept state and the lake namespace's tables with their files, where the
/// marts' own settings put them (the run sets only the namespace, the database and the
/// warehouse). Left behind, a 5 K/s run's ~3 M ranking rows and 200 MB of kept state stayed on
/// the stack for good, ClickHouse merging them beside the next runs.
async fn drop_sinks(namespace: &str) {
    eprintln!("cdc: removing {namespace}: ClickHouse database, kept state, lake tables");
    let mut marts = tributary_marts::MartsConfig::default();
    marts.lake.warehouse = "s3://warehouse".into();
    marts.lake.namespace = namespace.into();
    marts.clickhouse.database = namespace.into();
    cleanup::drop_clickhouse_database(&marts.clickhouse, &marts.clickhouse.database).await;
    cleanup::drop_postgres_schema(marts.state_url(), &marts.state_schema()).await;
    cleanup::drop_lake_namespace(&marts.lake).await;
}

async fn run_with_source(
    args: &CdcArgs,
    id: &str,
    database: &str,
    prefix: &str,
    connector: &str,
    slot: &str,
    master: load::Master,
) -> Result<(Vec<RateResult>, Value)> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let connector_config = register_connector(&http, connector, database, prefix, slot).await?;

    // Beside this executable by default: the same build profile as the bench.
    let bins = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("exe dir")?
            .to_path_buf(),
    };
    let logs = PathBuf::from(format!(".stack/bench/cdc-{id}"));
    std::fs::create_dir_all(&logs)?;
    let inbox = logs.join("inbox");
    std::fs::create_dir_all(inbox.join("globex"))?;
    let namespace = format!("bench_{id}");
    let aged = if args.aged_snapshots > 0 {
        let lake = tributary_common::LakeSettings {
            warehouse: "s3://warehouse".into(),
            namespace: namespace.clone(),
            ..Default::default()
        };
        let busy = [RawTable::PgSale, RawTable::FileSale, RawTable::ErpSale];
        crate::aging::age_tables(&lake, &busy, args.aged_snapshots).await?
    } else {
        BTreeMap::new()
    };
    let topic = |t: &str| format!("bench.{id}.{t}");
    let (api_port, erp_port, lander_metrics, marts_metrics) =
        (free_port()?, free_port()?, free_port()?, free_port()?);
    let lake = [
        ("TRIBUTARY_LAKE__WAREHOUSE", "s3://warehouse".to_string()),
        ("TRIBUTARY_LAKE__NAMESPACE", namespace.clone()),
    ];
    let mut lander_env = env(&lake);
    lander_env.extend(env(&[
        (
            "TRIBUTARY_COMMIT_INTERVAL_MS",
            args.lander_commit_interval_ms.to_string(),
        ),
        ("TRIBUTARY_GROUP_ID", format!("bench-cdc-{id}")),
        (
            "TRIBUTARY_BATCH_MAX_ROWS",
            args.lander_batch_max_rows.to_string(),
        ),
        (
            "TRIBUTARY_METRICS_LISTEN",
            format!("127.0.0.1:{lander_metrics}"),
        ),
        ("TRIBUTARY_TOPICS__SALE", format!("{prefix}.public.sale")),
        (
            "TRIBUTARY_TOPICS__SALESMAN",
            format!("{prefix}.public.salesman"),
        ),
        ("TRIBUTARY_TOPICS__CITY", format!("{prefix}.public.city")),
        ("TRIBUTARY_TOPICS__FILE_SALES", topic("files.sales")),
        ("TRIBUTARY_TOPICS__FILE_DEAD_LETTERS", topic("files.dead")),
        ("TRIBUTARY_TOPICS__ERP_SALES", topic("erp.sales")),
        ("TRIBUTARY_TOPICS__ERP_DEAD_LETTERS", topic("erp.dead")),
    ]));
    let mut marts_env = env(&lake);
    marts_env.extend(env(&[
        ("TRIBUTARY_CLICKHOUSE__DATABASE", namespace.clone()),
        ("TRIBUTARY_INTERVAL_MS", args.marts_interval_ms.to_string()),
        (
            "TRIBUTARY_METRICS_LISTEN",
            format!("127.0.0.1:{marts_metrics}"),
        ),
    ]));
    let mut api_env = env(&lake);
    api_env.extend(env(&[
        ("TRIBUTARY_CLICKHOUSE__DATABASE", namespace.clone()),
        ("TRIBUTARY_LISTEN", format!("127.0.0.1:{api_port}")),
    ]));
    let files_env = env(&[
        ("TRIBUTARY_FILES__INBOX", inbox.display().to_string()),
        ("TRIBUTARY_FILES__MIN_AGE_MS", "0".into()),
        ("TRIBUTARY_FILES__POLL_INTERVAL_MS", "300".into()),
        ("TRIBUTARY_FILES__TRANSACTIONAL_ID", topic("files")),
        ("TRIBUTARY_FILES__TOPICS__SALES", topic("files.sales")),
        ("TRIBUTARY_FILES__TOPICS__DEAD_LETTERS", topic("files.dead")),
        ("TRIBUTARY_FILES__TOPICS__PROGRESS", topic("files.progress")),
    ]);
    let sim_env = env(&[
        ("TRIBUTARY_LISTEN", format!("127.0.0.1:{erp_port}")),
        ("TRIBUTARY_SEED", args.seed.to_string()),
        ("TRIBUTARY_INITIAL_CHANGES", "0".into()),
        // The load injects its ERP sales through /admin (off by default).
        ("TRIBUTARY_ADMIN", "true".into()),
    ]);
    let erp_env = env(&[
        (
            "TRIBUTARY_ERP__CLIENT__ENDPOINT",
            format!("http://127.0.0.1:{erp_port}/ws/sales"),
        ),
        ("TRIBUTARY_ERP__CLIENT__POLL_INTERVAL_MS", "300".into()),
        ("TRIBUTARY_ERP__TRANSACTIONAL_ID", topic("erp")),
        ("TRIBUTARY_ERP__TOPICS__SALES", topic("erp.sales")),
        ("TRIBUTARY_ERP__TOPICS__DEAD_LETTERS", topic("erp.dead")),
        ("TRIBUTARY_ERP__TOPICS__PROGRESS", topic("erp.progress")),
    ]);
    let mut services = vec![
        Service::start(&bins, "erp-sim", "tributary-erp-sim", &[], &sim_env, &logs)?,
        Service::start(&bins, "lander", "tributary-lake", &[], &lander_env, &logs)?,
        Service::start(&bins, "marts", "tributary-marts", &[], &marts_env, &logs)?,
        Service::start(&bins, "api", "tributary-api", &[], &api_env, &logs)?,
        Service::start(
            &bins,
            "ingest-files",
            "tributary-ingest",
            &["files"],
            &files_env,
            &logs,
        )?,
    ];
    let api = format!("http://127.0.0.1:{api_port}");
    let erp = format!("http://127.0.0.1:{erp_port}");
    // The ERP ingestor once the simulator answers.
    let start = Instant::now();
    while http
        .get(format!("{erp}/ws/sales?wsdl"))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        services[0].check(&logs)?;
        ensure!(
            start.elapsed() < Duration::from_secs(30),
            "the ERP simulator never answered"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    services.push(Service::start(
        &bins,
        "ingest-erp",
        "tributary-ingest",
        &["erp"],
        &erp_env,
        &logs,
    )?);

    // Warm-up: the snapshot of the master data published, so the API answers completeness.
    eprintln!(
        "cdc: services started (logs in {}), warming up",
        logs.display()
    );
    let warm = Instant::now();
    let db = load::connect(&format!("{PG} dbname={database}")).await?;
    db.execute(
        "INSERT INTO sale (salesman_id, city_id, amount, sold_at) VALUES (1, 1, 1.00, now())",
        &[],
    )
    .await?;
    loop {
        for s in services.iter_mut() {
            s.check(&logs)?;
        }
        if pg_position(&http, &api).await.ok().flatten().is_some() {
            break;
        }
        ensure!(
            warm.elapsed() < Duration::from_secs(300),
            "nothing published within 300 s; see {}",
            logs.display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "cdc: first publication after {:.1} s",
        warm.elapsed().as_secs_f64()
    );

    let mut watched: Vec<Watched> = [
        "lander",
        "marts",
        "api",
        "ingest-files",
        "ingest-erp",
        "erp-sim",
    ]
    .iter()
    .zip([1, 2, 3, 4, 5, 0])
    .map(|(name, i)| Watched {
        name: name.to_string(),
        pid: services[i].pid(),
    })
    .collect();
    watched.push(Watched {
        name: "tributary-bench (load generator)".into(),
        pid: std::process::id(),
    });
    for (name, dir) in [
        ("kafka", "kafka"),
        ("kafka connect + debezium", "connect"),
        ("clickhouse", "clickhouse"),
        ("object store", "s3"),
    ] {
        if let Some(pid) = stack_pid(dir) {
            watched.push(Watched {
                name: name.into(),
                pid,
            });
        }
    }
    // Postgres is sampled by role ([`cpu::PostgresCpu`]), its total beside the roles.
    let postmaster = stack_pid("postgres");

    let metrics = format!("http://127.0.0.1:{lander_metrics}/metrics");
    let marts_metrics = format!("http://127.0.0.1:{marts_metrics}/metrics");
    let sale_topic = format!("{prefix}.public.sale");
    let mut results = Vec::new();
    let windows: Vec<f64> = args
        .rates
        .iter()
        .flat_map(|&rate| std::iter::repeat_n(rate, args.runs.max(1)))
        .collect();
    for (round, &rate) in windows.iter().enumerate() {
        for s in services.iter_mut() {
            s.check(&logs)?;
        }
        eprintln!(
            "cdc: {rate} Postgres changes/s (+{} side) for {} s",
            args.side_rate, args.seconds
        );
        let stop = Arc::new(AtomicBool::new(false));
        let arrivals: Arrivals = Arc::default();
        let consumer = {
            let (topic, stop, arrivals) = (sale_topic.clone(), stop.clone(), arrivals.clone());
            std::thread::spawn(move || debezium_consumer(topic, stop, arrivals))
        };
        let polls: Arc<Mutex<Vec<(SystemTime, i64)>>> = Arc::default();
        let poll_stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (http, api, polls, stop) =
                (http.clone(), api.clone(), polls.clone(), poll_stop.clone());
            let every = Duration::from_millis(args.poll_ms);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    if let Ok(Some(position)) = pg_position(&http, &api).await {
                        polls
                            .lock()
                            .expect("polls")
                            .push((SystemTime::now(), position));
                    }
                }
            })
        };
        // Give the consumer its assignment at the end of the topic before the load starts.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let loadavg = std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        let landed_before = landed_pg_sale(&http, &metrics).await?;
        let commits_before = lander_commits(&http, &metrics).await?;
        let marts_before = marts_runs(&http, &marts_metrics).await?;
        let cpu_before: Vec<f64> = watched.iter().map(|w| cpu::cpu_seconds(w.pid)).collect();
        let postgres_cpu = postmaster.map(|pid| cpu::PostgresCpu::start(pid, database.to_string()));
        let window_start = SystemTime::now();
        let total = rate + args.side_rate;
        let workload = Workload::new(
            args.seed + round as u64,
            master.salesmen.len(),
            master.cities.len(),
            Shares {
                postgres: rate / total,
                files: 0.75 * args.side_rate / total,
                erp: 0.25 * args.side_rate / total,
            },
            chrono::Utc::now(),
        );
        let targets = Targets {
            postgres: format!("{PG} dbname={database}"),
            inbox: inbox.clone(),
            erp: erp.clone(),
            run: format!("r{round}"),
        };
        let report = load::run(workload, master.clone(), &targets, total, args.seconds).await?;
        let window_end = SystemTime::now();
        let window = window_end
            .duration_since(window_start)
            .unwrap_or_default()
            .as_secs_f64();
        let cpu_after: Vec<f64> = watched.iter().map(|w| cpu::cpu_seconds(w.pid)).collect();
        let postgres_seconds = postgres_cpu
            .map(cpu::PostgresCpu::finish)
            .unwrap_or_default();
        let landed_at_end = landed_pg_sale(&http, &metrics).await?;
        let commits_at_end = lander_commits(&http, &metrics).await?;
        let marts_at_end = marts_runs(&http, &marts_metrics).await?;
        let pg_changes = report.applied.get(&Source::Postgres).copied().unwrap_or(0);
        let side_changes = report.applied.get(&Source::Files).copied().unwrap_or(0)
            + report.applied.get(&Source::Erp).copied().unwrap_or(0);

        // Drain: until everything is landed and every transaction visible (at most 180 s).
        let last_lsn = report.probes.last().map_or(0, |p| p.lsn_before) as i64;
        let drain = Instant::now();
        let mut lander_drain_s = None;
        loop {
            for s in services.iter_mut() {
                s.check(&logs)?;
            }
            let landed = landed_pg_sale(&http, &metrics).await?;
            if lander_drain_s.is_none() && landed >= landed_before + pg_changes {
                lander_drain_s = Some(drain.elapsed().as_secs_f64());
            }
            let visible = polls
                .lock()
                .expect("polls")
                .last()
                .is_some_and(|(_, p)| *p >= last_lsn);
            if (visible && lander_drain_s.is_some()) || drain.elapsed() > Duration::from_secs(180) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // A last second of polls, then stop the watchers.
        tokio::time::sleep(Duration::from_secs(1)).await;
        poll_stop.store(true, Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        poller.await?;
        consumer.join().expect("consumer thread")?;
        let landed_total = landed_pg_sale(&http, &metrics).await? - landed_before;

        let arrivals = arrivals.lock().expect("arrivals").clone();
        let in_window = arrivals.iter().filter(|(at, _)| *at <= window_end).count();
        let debezium_drain_s = arrivals.last().map_or(0.0, |(at, _)| {
            at.duration_since(window_end)
                .unwrap_or_default()
                .as_secs_f64()
        });
        let mut delays: Vec<f64> = arrivals
            .iter()
            .filter(|(_, ts)| *ts > 0)
            .map(|(at, ts)| (millis(*at) - ts) as f64 / 1000.0)
            .collect();
        let debezium_delay = percentiles(&mut delays, &[50.0, 95.0, 99.0]);

        let probes: Vec<(u64, SystemTime)> = report
            .probes
            .iter()
            .filter(|p| p.changes > 0)
            .map(|p| (p.lsn_before, p.committed_at))
            .collect();
        let polls = polls.lock().expect("polls").clone();
        let (mut seen, unseen) = freshness(&probes, &polls);
        let fresh = percentiles(&mut seen, &[50.0, 95.0, 99.0]);
        let mut cpu_percent: BTreeMap<String, f64> = watched
            .iter()
            .zip(cpu_before.iter().zip(&cpu_after))
            .map(|(w, (b, a))| (w.name.clone(), 100.0 * (a - b) / window))
            .collect();
        if !postgres_seconds.is_empty() {
            let total: f64 = postgres_seconds.values().sum();
            cpu_percent.insert("postgres (all backends)".into(), 100.0 * total / window);
            cpu_percent.extend(
                postgres_seconds
                    .iter()
                    .map(|(role, s)| (role.to_string(), 100.0 * s / window)),
            );
        }
        let result = RateResult {
            target_rate: rate,
            seconds: report.seconds,
            pg_changes,
            pg_rate: pg_changes as f64 / report.seconds,
            pg_transactions: probes.len(),
            side_changes,
            debezium_rate: in_window as f64 / window,
            debezium_records: arrivals.len() as u64,
            debezium_drain_s,
            debezium_delay_s: [debezium_delay[0], debezium_delay[1], debezium_delay[2]],
            lander_rate: (landed_at_end - landed_before) as f64 / window,
            lander_landed: landed_total,
            lander_drain_s,
            lander_commits: (commits_at_end.1 - commits_before.1) as u64,
            lander_commit_mean_s: (commits_at_end.1 > commits_before.1).then(|| {
                (commits_at_end.0 - commits_before.0) / (commits_at_end.1 - commits_before.1)
            }),
            lander_lag_at_end: commits_at_end.2,
            marts_runs: (marts_at_end.1 - marts_before.1) as u64,
            marts_run_mean_s: (marts_at_end.1 > marts_before.1)
                .then(|| (marts_at_end.0 - marts_before.0) / (marts_at_end.1 - marts_before.1)),
            freshness_s: [fresh[0], fresh[1], fresh[2]],
            freshness_unseen: unseen,
            freshness_samples: seen.len(),
            cpu_percent,
            loadavg,
        };
        eprintln!("{}", serde_json::to_string_pretty(&result)?);
        results.push(result);
    }

    let peak_rss: BTreeMap<String, Option<f64>> = watched
        .iter()
        .take(6)
        .map(|w| (w.name.clone(), crate::procfs::peak_rss_mib(w.pid).ok()))
        .collect();
    let versions = http
        .get(format!("{CONNECT}/connector-plugins"))
        .send()
        .await
        .ok();
    let debezium = match versions {
        Some(r) => r
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| {
                v.as_array()?
                    .iter()
                    .find(|p| p["class"] == "io.debezium.connector.postgresql.PostgresConnector")
                    .map(|p| p["version"].clone())
            })
            .unwrap_or(Value::Null),
        None => Value::Null,
    };
    let settings = json!({
        "source": {"database": database, "cities": master.cities.len(), "salesmen": master.salesmen.len(),
                   "writer": "one connection, one transaction per 20 ms tick, multi-row INSERT/UPDATE/DELETE"},
        "debezium": {"version": debezium, "connector": connector_config},
        "lander": {"commit_interval_ms": args.lander_commit_interval_ms, "batch_max_rows": args.lander_batch_max_rows, "aged_snapshots": args.aged_snapshots, "aged_metadata_bytes": aged},
        "marts": {"interval_ms": args.marts_interval_ms},
        "freshness": {"poll_ms": args.poll_ms, "endpoint": "/v1/completeness (pg.position = furthest LSN published)"},
        "side_rate": args.side_rate,
        "seconds": args.seconds,
        "runs": args.runs,
        "seed": args.seed,
        "peak_rss_mib": peak_rss,
        "binaries": bins.display().to_string(),
        "logs": logs.display().to_string(),
    });
    Ok((results, settings))
}

/// `tributary-bench cdc`: runs and writes `cdc.md`, `cdc.json` and `cdc-freshness.svg`.
pub async fn main(args: CdcArgs, out: &Path) -> Result<()> {
    let (results, settings) = run(&args).await?;
    let provenance = crate::provenance::Provenance::collect().await;
    report::write(out, &results, &settings, &provenance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_adds_the_samples_carrying_every_label() {
        let text = "# TYPE tributary_lander_events_total counter\n\
            tributary_lander_events_total{outcome=\"landed\",table=\"pg_sale\"} 7\n\
            tributary_lander_events_total{outcome=\"dead_letter\",table=\"pg_sale\"} 2\n\
            tributary_lander_events_total{outcome=\"landed\",table=\"file_sale\"} 5\n\
            tributary_lander_events_total_other{outcome=\"landed\",table=\"pg_sale\"} 100\n";
        let metric = "tributary_lander_events_total";
        let landed = [r#"table="pg_sale""#, r#"outcome="landed""#];
        assert_eq!(metric_sum(text, metric, &landed), 7.0);
        assert_eq!(metric_sum(text, metric, &[r#"table="pg_sale""#]), 9.0);
        assert_eq!(metric_sum(text, metric, &[]), 14.0);
    }

    #[test]
    fn cpu_per_landed_event() {
        // Half a core while landing 5 000 events/s: 100 µs of CPU per event.
        assert_eq!(report::cpu_micros_per_event(50.0, 5_000.0), Some(100.0));
        assert_eq!(report::cpu_micros_per_event(50.0, 0.0), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(
            percentiles(&mut v, &[50.0, 95.0, 99.0]),
            vec![Some(50.0), Some(95.0), Some(99.0)]
        );
        assert_eq!(percentiles(&mut [], &[50.0]), vec![None]);
    }

    #[test]
    fn a_transaction_is_visible_at_the_first_poll_reaching_its_position() {
        let t = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        let probes = [(100, t(1000)), (200, t(1100)), (300, t(1200))];
        let polls = [
            (t(900), 150),
            (t(1500), 150),
            (t(1600), 250),
            (t(2000), 250),
        ];
        let (seen, unseen) = freshness(&probes, &polls);
        // The first probe's position was reached before its commit ack: the first poll after.
        assert_eq!(seen, vec![0.5, 0.5]);
        assert_eq!(unseen, 1);
    }
}
