//! `tributary-bench`: measures Tributary's stages on the real local stack against the baselines
//! a user would pick instead, in the same run, and writes the results (Markdown and JSON) to
//! `bench/results/`. Benchmarks print numbers; nothing here asserts a time.
//!
//! - `lander`: events/s landed into Iceberg from a pre-filled topic, against the lander's own
//!   Kafka source consuming and decoding the same topic (the ceiling: what reading and decoding
//!   alone cost with the lander's consumer, with no Parquet, no object store, no catalog commit), and with `--iceberg-connect`
//!   against Apache Iceberg's own Kafka Connect sink on the same topic (`iceberg_connect.rs`).
//! - `marts`: an incremental marts run's time for 10 K new events on 100 K, 1 M and 10 M events
//!   of history, against a full recompute (see `marts.rs`).
//! - `rebuild`: the marts' full rebuild on DataFusion against the same rebuild on Trino, on the
//!   same histories, with median, spread and peak memory (see `rebuild.rs`).

mod aging;
mod api;
mod api_lake;
mod cdc;
mod cleanup;
mod iceberg_connect;
mod load;
mod marts;
mod plot;
mod procfs;
mod provenance;
mod publish;
mod rebuild;
mod soak;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tributary_lake::decode::decode;
use tributary_lake::metrics::Metrics;
use tributary_lake::{LanderConfig, Mode, RawTable};

#[derive(Parser)]
#[command(
    version,
    about = "Benchmarks on the real local stack (start it with `make up`)"
)]
struct Cli {
    /// Where the results go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The lander against its own Kafka source consuming and decoding the same pre-filled topic.
    Lander {
        /// Change events in the topic.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// Partitions of the topic.
        #[arg(long, default_value_t = 2)]
        partitions: i32,
        /// Lander commit size.
        #[arg(long, default_value_t = 50_000)]
        batch_max_rows: usize,
        /// Warehouse: `s3://warehouse` (the stack's object store) or a local folder.
        #[arg(long, default_value = "s3://warehouse")]
        warehouse: String,
        /// Also time Apache Iceberg's own Kafka Connect sink on the same topic (needs the worker
        /// of `dev/iceberg-connect/worker up`; `make bench` starts it).
        #[arg(long)]
        iceberg_connect: bool,
        /// REST API of that worker.
        #[arg(long, default_value = "http://127.0.0.1:8084")]
        iceberg_connect_url: String,
        /// The sink's `iceberg.control.commit.interval-ms`.
        #[arg(long, default_value_t = 1000)]
        iceberg_commit_interval_ms: u64,
        /// The sink's `tasks.max` (default: one per partition).
        #[arg(long)]
        iceberg_tasks: Option<i32>,
        /// Runs, each on a topic and namespace of its own; every run's rows are reported, then
        /// per subject the median and spread.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// An incremental marts run on growing histories, against a full recompute.
    Marts {
        /// History sizes (Postgres change events already in the lake), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "100000,1000000,10000000")]
        histories: Vec<usize>,
        /// New events the timed incremental run folds.
        #[arg(long, default_value_t = 10_000)]
        new_events: usize,
        /// Timed incremental runs per history (each folds `new_events` more); the median and
        /// spread are reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// The marts' bound on the events one run reads (`max_events_per_run`); 0: none, the
        /// whole history in one slice, as before the bound.
        #[arg(long, default_value_t = tributary_marts::job::DEFAULT_MAX_EVENTS_PER_RUN)]
        max_events_per_run: u64,
        /// Warehouse: `s3://warehouse` (the stack's object store) or a local folder.
        #[arg(long, default_value = "s3://warehouse")]
        warehouse: String,
    },
    /// Writing one publication to ClickHouse: LZ4 bodies (the default) against uncompressed.
    Publish {
        /// Salesmen in each city's ranking of each period (250: about 340 000 ranking rows, as
        /// the marts benchmark's 10 M-event history publishes).
        #[arg(long, default_value_t = 250)]
        salesmen_per_city: i64,
        /// Publications written through each variant (median and spread reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// The marts' full rebuild on DataFusion vs on Trino (`dev/up trino`), on growing histories.
    Rebuild {
        /// History sizes (Postgres change events in the lake), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "100000,1000000,10000000")]
        histories: Vec<usize>,
        /// Runs of each rebuild per history (median and spread reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Trino's pid file (its peak memory is read from /proc).
        #[arg(long, default_value = ".stack/trino/pid")]
        trino_pid_file: PathBuf,
        /// Trino coordinator.
        #[arg(long, default_value = "http://127.0.0.1:8089")]
        trino_url: String,
    },
    /// wrk against the API's ranking endpoints vs a hello-world poem endpoint; the API's peak RSS.
    Api(api::ApiArgs),
    /// The API while clients keep asking for rankings computed from a large lake (`as_of`):
    /// its RSS, the latest ranking's latency beside the same without them, what they were
    /// answered.
    ApiLake(api_lake::ApiLakeArgs),
    /// A seeded sales workload into Postgres, the inbox and the ERP simulator at a paced rate.
    Load(load::LoadArgs),
    /// CDC end to end at given rates: Postgres → Debezium → lander → API, against Debezium alone; freshness; CPU and peak RSS.
    Cdc(cdc::CdcArgs),
    /// Commit time against a table's age: many small commits into one table, without and with
    /// lake maintenance.
    Aging {
        /// Commits per variant.
        #[arg(long, default_value_t = 20_000)]
        commits: usize,
        /// Commits of the unmaintained variant (its commit cost grows with its age: it stops here).
        #[arg(long, default_value_t = 1_000)]
        plain_commits: usize,
        /// Maintenance runs after every this many commits (the maintained variant).
        #[arg(long, default_value_t = 100)]
        maintain_every: usize,
        /// Seconds every snapshot is kept (the maintained variant): 5 lets the table reach its
        /// bound within minutes; 3600 (the lander's former default) keeps every snapshot of the run,
        /// as a table at those defaults kept an hour of them.
        #[arg(long, default_value_t = 5)]
        snapshot_retention_s: u64,
        /// Warehouse: `s3://warehouse` (the stack's object store) or a local folder.
        #[arg(long, default_value = "s3://warehouse")]
        warehouse: String,
    },
    /// The running pipeline (`make soak`) under a steady load for minutes, sampled every few
    /// seconds: commit and run times, API p99, lake metadata and files, bytes, RSS; ends with a
    /// check of the latest publication against the lake.
    Soak(soak::SoakArgs),
    /// Redraws the SVG charts from the results files (`marts.svg` from `marts.json`).
    Plot,
}

#[derive(Debug, Clone, Serialize)]
struct Row {
    benchmark: String,
    subject: String,
    events: usize,
    seconds: f64,
    events_per_second: f64,
    note: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    tributary_common::logging::init("bench");
    let cli = Cli::parse();
    match cli.command {
        Command::Lander {
            events,
            partitions,
            batch_max_rows,
            warehouse,
            iceberg_connect,
            iceberg_connect_url,
            iceberg_commit_interval_ms,
            iceberg_tasks,
            runs,
        } => {
            let sink = iceberg_connect.then(|| iceberg_connect::SinkSettings {
                connect_url: iceberg_connect_url,
                commit_interval_ms: iceberg_commit_interval_ms,
                tasks: iceberg_tasks.unwrap_or(partitions),
                format: "avro".into(),
            });
            let mut rows = Vec::new();
            let mut configs = Vec::new();
            for run in 1..=runs.max(1) {
                eprintln!("lander benchmark: run {run} of {runs}");
                let (run_rows, config) = lander(
                    events,
                    partitions,
                    batch_max_rows,
                    &warehouse,
                    sink.as_ref(),
                )
                .await?;
                rows.extend(run_rows.into_iter().map(|r| Row {
                    note: format!("run {run}: {}", r.note),
                    ..r
                }));
                configs.push(config);
            }
            let medians = medians_by_subject(&rows, runs);
            rows.extend(medians);
            let config = serde_json::json!({"runs": runs, "each": configs});
            write_results(&cli.out, "lander", &rows, &config).await?;
        }
        Command::Marts {
            histories,
            new_events,
            runs,
            max_events_per_run,
            warehouse,
        } => {
            let lake = tributary_common::LakeSettings {
                warehouse,
                ..Default::default()
            };
            let clickhouse = clickhouse_settings()?;
            let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
            let mut rows = Vec::new();
            for history in histories {
                rows.extend(
                    marts::history(
                        &lake,
                        &clickhouse,
                        &id,
                        history,
                        new_events,
                        runs,
                        max_events_per_run,
                    )
                    .await?,
                );
            }
            let config = serde_json::json!({
                "max_events_per_run": max_events_per_run,
                "clickhouse_compression": clickhouse.compression,
            });
            write_results(&cli.out, "marts", &rows, &config).await?;
        }
        Command::Publish {
            salesmen_per_city,
            runs,
        } => {
            let clickhouse = clickhouse_settings()?;
            let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
            let rows = publish::run(&clickhouse, &id, salesmen_per_city, runs).await?;
            let config =
                serde_json::json!({ "salesmen_per_city": salesmen_per_city, "runs": runs });
            write_results(&cli.out, "publish", &rows, &config).await?;
        }
        Command::Rebuild {
            histories,
            runs,
            trino_pid_file,
            trino_url,
        } => {
            let lake = tributary_common::LakeSettings {
                warehouse: "s3://warehouse".into(),
                ..Default::default()
            };
            let clickhouse = clickhouse_settings()?;
            let trino = tributary_marts::trino::TrinoSettings {
                url: trino_url,
                ..Default::default()
            };
            let version = tributary_marts::trino::TrinoClient::new(&trino)?
                .version()
                .await
                .context("Trino is not running: `dev/up trino`")?;
            let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
            let mut rows = Vec::new();
            for history in &histories {
                rows.extend(
                    rebuild::history(
                        &lake,
                        &clickhouse,
                        &trino,
                        &trino_pid_file,
                        &id,
                        *history,
                        runs,
                    )
                    .await?,
                );
            }
            let config = serde_json::json!({
                "trino": version,
                "histories": histories,
                "runs": runs,
            });
            write_results(&cli.out, "rebuild", &rows, &config).await?;
        }
        Command::Aging {
            commits,
            plain_commits,
            maintain_every,
            snapshot_retention_s,
            warehouse,
        } => {
            let lake = tributary_common::LakeSettings {
                warehouse,
                ..Default::default()
            };
            let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
            let rows = aging::run(
                &lake,
                &id,
                commits,
                plain_commits,
                maintain_every,
                snapshot_retention_s,
            )
            .await?;
            let config = serde_json::json!({
                "commits": commits,
                "plain_commits": plain_commits,
                "maintain_every": maintain_every,
                "maintenance": aging::settings(snapshot_retention_s),
            });
            write_results(&cli.out, "aging", &rows, &config).await?;
        }
        Command::Api(args) => api::main(args, &cli.out).await?,
        Command::ApiLake(args) => api_lake::main(args, &cli.out).await?,
        Command::Load(args) => load::main(args).await?,
        Command::Cdc(args) => cdc::main(args, &cli.out).await?,
        Command::Plot => plot::main(&cli.out)?,
        Command::Soak(args) => soak::main(args, &cli.out, provenance::git_commit()).await?,
    }
    Ok(())
}

const BROKERS: &str = "127.0.0.1:9092";

fn envelope(id: usize) -> String {
    format!(
        r#"{{"before":null,"after":{{"id":{id},"salesman_id":{},"city_id":{},"amount":"{}.{:02}","sold_at":"2026-03-01T10:00:00.000000Z","updated_at":"2026-03-01T10:00:00Z"}},"source":{{"version":"3.6.1.Final","connector":"postgresql","name":"salesdb","ts_ms":1772359200000,"snapshot":"false","db":"salesdb","schema":"public","table":"sale","txId":{},"lsn":{}}},"op":"c","ts_ms":1772359200001}}"#,
        id % 20 + 1,
        id % 8 + 1,
        id % 5000,
        id % 100,
        id / 10,
        1_000_000 + id
    )
}

async fn fill_topic(topic: &str, partitions: i32, events: usize) -> Result<f64> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", BROKERS)
        .create()?;
    admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", BROKERS)
        .set("linger.ms", "50")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let start = Instant::now();
    for id in 0..events {
        let key = format!(r#"{{"id":{id}}}"#);
        let value = envelope(id);
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&value)
            .partition((id % partitions as usize) as i32);
        // Queue without waiting for each delivery; flush below waits for all.
        if let Err((e, _)) = producer.send_result(record) {
            bail!("queueing event {id}: {e}");
        }
        if id % 100_000 == 99_999 {
            producer.flush(Duration::from_secs(60))?;
        }
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(start.elapsed().as_secs_f64())
}

/// The ceiling: consume every record of `topic` and decode it, nothing else — through the
/// lander's own Kafka source (`tributary_lake::source::KafkaSource`: the same consumer settings,
/// partitions assigned the same way, one task receiving as the lander's loop does), so the only
/// difference from the lander is what it does with a record.
async fn consume_and_decode(topic: &str, partitions: i32, events: usize) -> Result<f64> {
    use tributary_lake::source::Source;
    let kafka = tributary_common::KafkaSettings {
        brokers: BROKERS.into(),
    };
    let mut source =
        tributary_lake::source::KafkaSource::new(&kafka, &format!("bench-ceiling-{topic}"))?;
    let starts: Vec<_> = (0..partitions)
        .map(|p| {
            (
                tributary_raw::offsets::TopicPartition::new(topic.to_string(), p),
                tributary_raw::offsets::StartOffset::Beginning,
            )
        })
        .collect();
    source.assign(&starts)?;
    let start = Instant::now();
    let (mut seen, mut decoded) = (0usize, 0usize);
    while seen < events {
        let record = tokio::time::timeout(Duration::from_secs(30), source.recv())
            .await
            .map_err(|_| anyhow::anyhow!("no record for 30 s after {seen} of {events}"))??;
        seen += 1;
        if decode(RawTable::PgSale, record.value.as_deref()).is_ok() {
            decoded += 1;
        }
    }
    anyhow::ensure!(decoded == events, "decoded {decoded} of {events}");
    Ok(start.elapsed().as_secs_f64())
}

async fn lander(
    events: usize,
    partitions: i32,
    batch_max_rows: usize,
    warehouse: &str,
    sink: Option<&iceberg_connect::SinkSettings>,
) -> Result<(Vec<Row>, serde_json::Value)> {
    let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let topic = format!("bench.{id}.sale");
    eprintln!("filling {topic}: {events} Debezium envelopes over {partitions} partitions");
    let fill = fill_topic(&topic, partitions, events).await?;

    eprintln!("ceiling: the lander's Kafka source + decode");
    let ceiling = consume_and_decode(&topic, partitions, events).await?;

    eprintln!("the lander, drain mode, commits of {batch_max_rows}");
    let unused = |t: &str| format!("bench.{id}.unused.{t}");
    let mut config = LanderConfig::default();
    config.lake.warehouse = warehouse.to_string();
    config.lake.namespace = format!("bench_{id}");
    config.topics.sale = topic.clone();
    config.topics.salesman = unused("salesman");
    config.topics.city = unused("city");
    config.topics.file_sales = unused("files");
    config.topics.file_dead_letters = unused("files.dead");
    config.topics.erp_sales = unused("erp");
    config.topics.erp_dead_letters = unused("erp.dead");
    config.group_id = format!("bench-lander-{id}");
    config.batch_max_rows = batch_max_rows;
    config.commit_interval_ms = 10_000;
    let lake = config.lake.clone();
    let start = Instant::now();
    let summary = tributary_lake::run(
        config,
        Mode::Drain,
        Metrics::new()?,
        CancellationToken::new(),
    )
    .await
    .context("lander run")?;
    let landed_secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        summary.landed as usize == events,
        "the lander landed {} of {events}: {summary:?}",
        summary.landed
    );
    let per_second = |secs: f64| events as f64 / secs;
    let note = format!(
        "{partitions} partitions, commits of {batch_max_rows}, {} commits, warehouse {warehouse}",
        summary.commits
    );
    let mut rows = vec![
        Row {
            benchmark: "lander".into(),
            subject: "fill: rdkafka producer (acks=all default, lz4)".into(),
            events,
            seconds: fill,
            events_per_second: per_second(fill),
            note: "writing the topic, for scale".into(),
        },
        Row {
            benchmark: "lander".into(),
            subject: "ceiling: the lander's Kafka source + Debezium decode".into(),
            events,
            seconds: ceiling,
            events_per_second: per_second(ceiling),
            note: "no Parquet, no object store, no commit".into(),
        },
        Row {
            benchmark: "lander".into(),
            subject: "tributary-lake (drain) into Iceberg".into(),
            events,
            seconds: landed_secs,
            events_per_second: per_second(landed_secs),
            note: format!(
                "{note}; {:.0}% of the ceiling",
                100.0 * ceiling / landed_secs
            ),
        },
    ];
    let mut config = serde_json::json!({
        "events": events,
        "partitions": partitions,
        "lander": {"batch_max_rows": batch_max_rows, "commits": summary.commits, "format": "parquet", "warehouse": warehouse},
    });
    if let Some(sink) = sink {
        eprintln!(
            "Apache Iceberg's Kafka Connect sink at {}, commit interval {} ms, {} tasks, {}",
            sink.connect_url, sink.commit_interval_ms, sink.tasks, sink.format
        );
        let run = iceberg_connect::run(&lake, sink, BROKERS, &topic, events, &id).await?;
        let ratio = run.seconds / landed_secs;
        rows.push(Row {
            benchmark: "lander".into(),
            subject: format!(
                "Apache Iceberg Kafka Connect sink {} into Iceberg ({})",
                run.version, sink.format
            ),
            events,
            seconds: run.seconds,
            events_per_second: per_second(run.seconds),
            note: format!(
                "from creating the connector until its table's total-records = {events}; {} tasks, commit interval {} ms, {} commits; the lander is {ratio:.2}x this",
                sink.tasks, sink.commit_interval_ms, run.commits
            ),
        });
        if let Some((records, seconds)) = run.steady {
            rows.push(Row {
                benchmark: "lander".into(),
                subject: format!(
                    "Apache Iceberg Kafka Connect sink {}, first to last commit",
                    run.version
                ),
                events: records as usize,
                seconds,
                events_per_second: records as f64 / seconds,
                note: "its rate once running: without start-up (tasks, catalog, table creation) and the records of the first commit".into(),
            });
        }
        config["iceberg_connect"] = serde_json::json!({
            "version": run.version,
            "format": sink.format,
            "commit_interval_ms": sink.commit_interval_ms,
            "tasks": sink.tasks,
            "commits": run.commits,
            "table": run.table,
            "catalog": "JDBC (the stack's Postgres), S3FileIO",
            "transform": "org.apache.iceberg.connect.transforms.DebeziumTransform",
            "lander_over_sink": ratio,
        });
    }
    // The lander's lake tables (the sink's table is its own, in its own catalog tables).
    crate::cleanup::drop_lake_namespace(&lake).await;
    Ok((rows, config))
}

/// Writes `<name>.md` and `<name>.json`; `config` (the settings of the run, or null) goes into both.
async fn write_results(
    dir: &PathBuf,
    name: &str,
    rows: &[Row],
    config: &serde_json::Value,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let context = RunContext::now();
    let RunContext {
        when,
        machine,
        cores,
        profile,
    } = &context;
    let provenance = provenance::Provenance::collect().await;
    let mut md = context.heading(name);
    md.push_str("| subject | events | seconds | events/s | note |\n|---|---:|---:|---:|---|\n");
    for r in rows {
        md.push_str(&format!(
            "| {} | {} | {:.2} | {:.0} | {} |\n",
            r.subject, r.events, r.seconds, r.events_per_second, r.note
        ));
    }
    if !config.is_null() {
        md.push_str(&format!(
            "\nConfiguration: `{}`\n",
            serde_json::to_string(config)?
        ));
    }
    md.push_str(&format!("\n{}", provenance.markdown()));
    print!("{md}");
    std::fs::write(dir.join(format!("{name}.md")), &md)?;
    let json = serde_json::json!({"benchmark": name, "when": when, "cores": cores, "machine": machine, "profile": profile, "provenance": provenance.json(), "config": config, "rows": rows});
    std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_string_pretty(&json)?,
    )?;
    Ok(())
}

/// When and where a benchmark ran: the header of every results file.
pub(crate) struct RunContext {
    /// RFC 3339, seconds.
    pub when: String,
    /// The CPU model (`/proc/cpuinfo`).
    pub machine: String,
    /// Cores available to this process.
    pub cores: usize,
    /// `debug` or `release`: the build of this benchmark (and of the binaries it starts).
    pub profile: &'static str,
}

impl RunContext {
    /// Now, on this machine.
    pub fn now() -> Self {
        let machine = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
            })
            .unwrap_or_default();
        Self {
            when: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            machine,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        }
    }

    /// A results file's first lines: `# title`, then when, where and which build.
    pub fn heading(&self, title: &str) -> String {
        let Self {
            when,
            machine,
            cores,
            profile,
        } = self;
        format!(
            "# {title}\n\n{when}, {cores} cores ({machine}), {profile} build, tributary {}\n\n",
            env!("CARGO_PKG_VERSION")
        )
    }
}

/// The pid of the process a local-stack service runs as, from its folder under `.stack`: the
/// service itself for one of ours under `dev/supervise` (`service.pid`), else the pid `dev/lib.sh`
/// recorded (`pid`).
fn stack_service_pid(dir: &std::path::Path) -> Option<u32> {
    ["service.pid", "pid"].iter().find_map(|file| {
        std::fs::read_to_string(dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    })
}

/// Per subject measured in every one of `runs` runs, the row of the run with the median rate
/// (its events and seconds: the runs of a subject may differ in events), with the spread
/// (min–max) in the note.
fn medians_by_subject(rows: &[Row], runs: usize) -> Vec<Row> {
    let mut subjects: Vec<&str> = Vec::new();
    for r in rows {
        if !subjects.contains(&r.subject.as_str()) {
            subjects.push(&r.subject);
        }
    }
    subjects
        .into_iter()
        .filter_map(|subject| {
            let mut of: Vec<&Row> = rows.iter().filter(|r| r.subject == subject).collect();
            if of.len() != runs || runs < 2 {
                return None;
            }
            of.sort_by(|a, b| a.events_per_second.total_cmp(&b.events_per_second));
            let (min, max) = (of[0].events_per_second, of[of.len() - 1].events_per_second);
            let median = of[of.len() / 2];
            Some(Row {
                subject: format!("median of {runs}: {subject}"),
                note: format!("events/s [{min:.0}–{max:.0}]"),
                ..median.clone()
            })
        })
        .collect()
}

/// Median, min and max of several runs' values (at least one).
pub(crate) fn summary(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    (median, values[0], values[values.len() - 1])
}

/// ClickHouse as the services see it: the defaults, then `TRIBUTARY_CLICKHOUSE__*` (e.g.
/// `TRIBUTARY_CLICKHOUSE__COMPRESSION=lz4`), which the services a cdc run starts inherit.
fn clickhouse_settings() -> Result<tributary_common::ClickHouseSettings> {
    #[derive(Default, Serialize, serde::Deserialize)]
    #[serde(default)]
    struct Env {
        clickhouse: tributary_common::ClickHouseSettings,
    }
    let env = std::env::vars().filter(|(k, _)| k.starts_with("TRIBUTARY_CLICKHOUSE__"));
    Ok(tributary_common::load::<Env>(None, env)
        .context("TRIBUTARY_CLICKHOUSE__* settings")?
        .clickhouse)
}

#[cfg(test)]
mod summary_tests {
    #[test]
    fn medians_by_subject_only_of_subjects_in_every_run() {
        let row = |subject: &str, seconds: f64| super::Row {
            benchmark: "lander".into(),
            subject: subject.into(),
            events: 100,
            seconds,
            events_per_second: 100.0 / seconds,
            note: String::new(),
        };
        let rows = [
            row("lander", 1.0),
            row("sink", 4.0),
            super::Row {
                events: 300,
                events_per_second: 150.0,
                ..row("lander", 2.0)
            },
            row("lander", 0.5),
            row("sink", 5.0),
        ];
        let medians = super::medians_by_subject(&rows, 3);
        assert_eq!(medians.len(), 1, "the sink ran twice of three");
        assert_eq!(medians[0].subject, "median of 3: lander");
        // The run of the median rate, whole: 300 events in 2 s.
        assert_eq!(
            (
                medians[0].events,
                medians[0].seconds,
                medians[0].events_per_second
            ),
            (300, 2.0, 150.0)
        );
        assert_eq!(medians[0].note, "events/s [100–200]");
    }

    #[test]
    fn median_and_spread() {
        assert_eq!(super::summary(vec![3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(super::summary(vec![5.0]), (5.0, 5.0, 5.0));
    }
}
