//! The lander benchmark's second baseline: Apache Iceberg's own Kafka Connect sink
//! (`org.apache.iceberg:iceberg-kafka-connect`, from Maven Central) landing the same pre-filled
//! topic into the same lake, run by a separate Connect worker (`dev/iceberg-connect/worker up`,
//! REST on :8084) so the shared Debezium worker on :8083 is never touched.
//!
//! The sink is created through the worker's REST API, timed until the snapshot summary of its
//! table says every record is committed (`total-records`, read with our own catalog code), and
//! deleted again. It writes into its own namespace (`bench_iceberg_connect`), one table per run.
//!
//! Its configuration, and why: Avro data files, because Iceberg's Parquet writer is built on
//! Hadoop's `Configuration` and the project ships no Hadoop (dev/iceberg-connect/pom.xml); the
//! JDBC catalog on the stack's Postgres and S3FileIO on its object store, so no Hadoop is needed
//! there either; Iceberg's own `DebeziumTransform`, so the envelope's `after` becomes the row plus
//! a `_cdc` struct (op, ts, offset, source) — the same information our raw table keeps.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use iceberg::{Catalog, NamespaceIdent, TableIdent};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use reqwest::Url;
use serde_json::{Value, json};
use tributary_common::LakeSettings;

/// The namespace every run's table goes to (never one of ours).
pub const NAMESPACE: &str = "bench_iceberg_connect";

/// How the sink is run: the knobs that matter for its throughput, reported with the results.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    /// The worker's REST API.
    pub connect_url: String,
    /// `iceberg.control.commit.interval-ms`: how often the coordinator asks for a commit.
    pub commit_interval_ms: u64,
    /// `tasks.max` (at most one task per partition does any work).
    pub tasks: i32,
    /// `write.format.default` of the table it creates.
    pub format: String,
}

/// What one run measured.
#[derive(Debug)]
pub struct SinkRun {
    /// From the connector's creation until its table holds every record.
    pub seconds: f64,
    /// Snapshots that added records.
    pub commits: usize,
    /// Records and seconds between the first and the last of those snapshots (the rate once
    /// it runs, without its start-up and the wait for the first commit); `None` with one commit.
    pub steady: Option<(u64, f64)>,
    /// `namespace.table` it wrote.
    pub table: String,
    /// The sink's version, as the worker reports it.
    pub version: String,
}

/// The JDBC catalog's connection from our catalog URL `postgres://user:password@host:port/db`:
/// (`jdbc:postgresql://host:port/db`, user, password). Pure.
pub fn jdbc_catalog(catalog_uri: &str) -> Result<(String, String, String)> {
    let url = Url::parse(catalog_uri).with_context(|| "the lake's catalog_uri is not a URL")?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        bail!(
            "the Iceberg sink baseline needs a Postgres catalog, not {}",
            url.scheme()
        );
    }
    let host = url.host_str().context("catalog_uri has no host")?;
    let port = url.port().unwrap_or(5432);
    let jdbc = format!("jdbc:postgresql://{host}:{port}{}", url.path());
    Ok((
        jdbc,
        url.username().to_string(),
        url.password().unwrap_or("").to_string(),
    ))
}

/// The connector's configuration: `topic` into `namespace.table` of the same catalog and
/// warehouse as the lake. Pure.
pub fn connector_config(
    lake: &LakeSettings,
    settings: &SinkSettings,
    brokers: &str,
    topic: &str,
    table: &str,
    control_topic: &str,
) -> Result<Value> {
    let (jdbc, user, password) = jdbc_catalog(&lake.catalog_uri)?;
    if !lake.warehouse.starts_with("s3://") {
        bail!(
            "the Iceberg sink baseline writes to the object store (S3FileIO); --warehouse {} is not s3://",
            lake.warehouse
        );
    }
    let s3 = &lake.s3;
    Ok(json!({
        "connector.class": "org.apache.iceberg.connect.IcebergSinkConnector",
        "tasks.max": settings.tasks.to_string(),
        "topics": topic,
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "transforms": "debezium",
        "transforms.debezium.type": "org.apache.iceberg.connect.transforms.DebeziumTransform",
        "iceberg.tables": format!("{NAMESPACE}.{table}"),
        "iceberg.tables.auto-create-enabled": "true",
        "iceberg.tables.auto-create-props.write.format.default": settings.format,
        "iceberg.tables.write-props.write.format.default": settings.format,
        "iceberg.control.topic": control_topic,
        "iceberg.control.commit.interval-ms": settings.commit_interval_ms.to_string(),
        "iceberg.kafka.bootstrap.servers": brokers,
        "iceberg.catalog": lake.catalog_name,
        "iceberg.catalog.catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
        "iceberg.catalog.uri": jdbc,
        "iceberg.catalog.jdbc.user": user,
        "iceberg.catalog.jdbc.password": password,
        "iceberg.catalog.warehouse": lake.warehouse.trim_end_matches('/'),
        "iceberg.catalog.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
        "iceberg.catalog.s3.endpoint": s3.endpoint,
        "iceberg.catalog.s3.path-style-access": "true",
        "iceberg.catalog.s3.access-key-id": s3.access_key_id,
        "iceberg.catalog.s3.secret-access-key": s3.secret_access_key,
        "iceberg.catalog.client.region": s3.region,
    }))
}

/// Runs the sink over `topic` (already holding `events` records) and times it.
pub async fn run(
    lake: &LakeSettings,
    settings: &SinkSettings,
    brokers: &str,
    topic: &str,
    events: usize,
    id: &str,
) -> Result<SinkRun> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let base = settings.connect_url.trim_end_matches('/');
    let plugins = http
        .get(format!("{base}/connector-plugins"))
        .send()
        .await
        .and_then(|r| r.error_for_status());
    let plugins: Vec<Value> = match plugins {
        Ok(r) => r.json().await?,
        Err(e) => bail!(
            "no Kafka Connect worker with the Iceberg sink at {base} ({e}); start it with `dev/iceberg-connect/worker up`"
        ),
    };
    let Some(version) = plugins
        .iter()
        .find(|p| p["class"] == "org.apache.iceberg.connect.IcebergSinkConnector")
        .map(|p| p["version"].as_str().unwrap_or("?").to_string())
    else {
        bail!(
            "the worker at {base} has no IcebergSinkConnector plugin (dev/iceberg-connect/worker up installs it)"
        );
    };

    let catalog = tributary_raw::catalog::open(lake).await?;
    let table = format!("sale_{id}");
    let ident = TableIdent::new(NamespaceIdent::new(NAMESPACE.into()), table.clone());
    let control_topic = format!("bench.{id}.iceberg-control");
    create_topic(brokers, &control_topic).await?;
    let name = format!("bench-iceberg-{id}");
    let config = connector_config(lake, settings, brokers, topic, &table, &control_topic)?;

    let start = Instant::now();
    let created = http
        .put(format!("{base}/connectors/{name}/config"))
        .json(&config)
        .send()
        .await?;
    if !created.status().is_success() {
        let status = created.status();
        bail!(
            "creating connector {name}: HTTP {status}: {}",
            created.text().await?
        );
    }
    let waited = wait_until_committed(&http, base, &name, &catalog, &ident, events, start).await;
    let seconds = start.elapsed().as_secs_f64();
    // Delete it whatever happened, so no sink keeps running after the benchmark.
    let deleted = http
        .delete(format!("{base}/connectors/{name}"))
        .send()
        .await
        .and_then(|r| r.error_for_status());
    waited?;
    deleted.with_context(|| format!("deleting connector {name}"))?;

    let table_now = catalog.load_table(&ident).await?;
    let mut commits: Vec<(i64, u64)> = table_now
        .metadata()
        .snapshots()
        .filter(|s| added_records(s.summary()) > 0)
        .map(|s| (s.timestamp_ms(), total_records(s.summary())))
        .collect();
    commits.sort();
    let steady = match (commits.first(), commits.last()) {
        (Some(&(t0, r0)), Some(&(t1, r1))) if commits.len() > 1 && t1 > t0 => {
            Some((r1 - r0, (t1 - t0) as f64 / 1000.0))
        }
        _ => None,
    };
    Ok(SinkRun {
        seconds,
        commits: commits.len(),
        steady,
        table: ident.to_string(),
        version,
    })
}

async fn create_topic(brokers: &str, topic: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?;
    for result in results {
        if let Err((topic, e)) = result {
            bail!("creating control topic {topic}: {e}");
        }
    }
    Ok(())
}

/// Polls the table until its current snapshot holds `events` records; fails at once if the
/// connector or a task fails, and after 10 minutes.
async fn wait_until_committed(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    catalog: &dyn Catalog,
    ident: &TableIdent,
    events: usize,
    start: Instant,
) -> Result<()> {
    let mut polls = 0u64;
    loop {
        if catalog.table_exists(ident).await? {
            let table = catalog.load_table(ident).await?;
            let landed = table
                .metadata()
                .current_snapshot()
                .map_or(0, |s| total_records(s.summary()));
            if landed as usize == events {
                return Ok(());
            }
            if landed as usize > events {
                bail!("{ident} holds {landed} records, more than the {events} in the topic");
            }
        }
        // The connector's state every ~2 s: a failed task never commits.
        if polls.is_multiple_of(8) {
            let status: Value = http
                .get(format!("{base}/connectors/{name}/status"))
                .send()
                .await?
                .json()
                .await?;
            if status.to_string().contains("\"FAILED\"") {
                bail!("connector {name} failed: {status}");
            }
        }
        if start.elapsed() > Duration::from_secs(600) {
            bail!("connector {name}: not every record committed to {ident} after 10 minutes");
        }
        polls += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn summary_number(summary: &iceberg::spec::Summary, key: &str) -> u64 {
    summary
        .additional_properties
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn total_records(summary: &iceberg::spec::Summary) -> u64 {
    summary_number(summary, "total-records")
}

fn added_records(summary: &iceberg::spec::Summary) -> u64 {
    summary_number(summary, "added-records")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jdbc_catalog_from_the_lake_url() {
        let (jdbc, user, password) =
            jdbc_catalog("postgres://tributary:secret@127.0.0.1:5433/tributary").unwrap();
        assert_eq!(jdbc, "jdbc:postgresql://127.0.0.1:5433/tributary");
        assert_eq!((user.as_str(), password.as_str()), ("tributary", "secret"));
        assert!(jdbc_catalog("sqlite://x.db").is_err());
    }

    #[test]
    fn connector_config_points_at_the_lake_and_refuses_a_local_warehouse() {
        let mut lake = LakeSettings {
            warehouse: "s3://warehouse/".into(),
            ..Default::default()
        };
        let settings = SinkSettings {
            connect_url: "http://127.0.0.1:8084".into(),
            commit_interval_ms: 1000,
            tasks: 2,
            format: "avro".into(),
        };
        let config =
            connector_config(&lake, &settings, "127.0.0.1:9092", "t", "sale_x", "c").unwrap();
        assert_eq!(config["iceberg.tables"], "bench_iceberg_connect.sale_x");
        assert_eq!(config["iceberg.catalog.warehouse"], "s3://warehouse");
        assert_eq!(
            config["iceberg.tables.write-props.write.format.default"],
            "avro"
        );
        assert_eq!(config["tasks.max"], "2");
        lake.warehouse = ".stack/warehouse".into();
        assert!(connector_config(&lake, &settings, "b", "t", "x", "c").is_err());
    }
}
