//! Shared set-up of the lander's integration tests: the real local stack (Postgres catalog,
//! Kafka, S3), with topics and an Iceberg namespace of each test's own.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type};
use iceberg::Catalog;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tributary_lake::catalog::ensure_tables;
use tributary_lake::{LanderConfig, RawTable};
use tributary_raw::catalog::{self, load_table, read_table};

const START_THE_STACK: &str = "run `make test` (or `dev/up`) to start the local stack";

/// One test's world: its config (own topics, namespace, group) and a producer.
pub struct TestLake {
    pub config: LanderConfig,
    pub producer: FutureProducer,
    pub catalog: Arc<dyn Catalog>,
}

/// Where the test's warehouse lives.
pub enum Store {
    /// `s3://warehouse` on the stack's S3 endpoint.
    S3,
    /// A fresh local folder.
    LocalFolder,
}

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

/// Config for test `name`, from the environment (so `TRIBUTARY_KAFKA__BROKERS` etc. apply) with
/// the test's own topics, namespace and consumer group.
pub fn test_config(name: &str, store: Store) -> LanderConfig {
    let id = short_id();
    let mut config = LanderConfig::load(None, std::env::vars()).expect("lander config loads");
    config.lake.namespace = format!("it_{name}_{id}");
    config.topics.sale = format!("it.{name}.{id}.sale");
    config.topics.salesman = format!("it.{name}.{id}.salesman");
    config.topics.city = format!("it.{name}.{id}.city");
    config.topics.file_sales = format!("it.{name}.{id}.files");
    config.topics.file_dead_letters = format!("it.{name}.{id}.files.dead");
    config.topics.erp_sales = format!("it.{name}.{id}.erp");
    config.topics.erp_dead_letters = format!("it.{name}.{id}.erp.dead");
    config.group_id = format!("it-{name}-{id}");
    config.commit_interval_ms = 200;
    config.discovery_interval_ms = 500;
    config.lake.warehouse = match store {
        Store::S3 => "s3://warehouse".to_string(),
        Store::LocalFolder => std::env::temp_dir()
            .join(format!("tributary-it-{name}-{id}"))
            .to_string_lossy()
            .into_owned(),
    };
    config
}

/// Fails loudly unless Kafka, the Postgres catalog and (for S3) the object store answer, then
/// creates the test's topics.
pub async fn setup(config: &LanderConfig, sale_partitions: i32) -> TestLake {
    if config.lake.warehouse.starts_with("s3://") {
        let endpoint = config
            .lake
            .s3
            .endpoint
            .trim_start_matches("http://")
            .trim_start_matches("https://");
        let addr = endpoint
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| {
                panic!("S3 endpoint {endpoint} does not resolve: {START_THE_STACK}")
            });
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap_or_else(|e| {
            panic!("S3 at {endpoint} is not reachable ({e}): {START_THE_STACK}")
        });
    }
    let catalog = catalog::open(&config.lake)
        .await
        .unwrap_or_else(|e| panic!("{e}: {START_THE_STACK}"));
    ensure_tables(&catalog, &config.lake.namespace)
        .await
        .expect("raw tables can be created");

    let brokers = config.kafka.brokers.clone();
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("kafka client config");
    tokio::task::spawn_blocking(move || probe.fetch_metadata(None, Duration::from_secs(5)))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("Kafka at {brokers} does not answer ({e}): {START_THE_STACK}"));

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.brokers)
        .create()
        .expect("admin client");
    let topics = [
        NewTopic::new(
            &config.topics.sale,
            sale_partitions,
            TopicReplication::Fixed(1),
        ),
        NewTopic::new(&config.topics.salesman, 1, TopicReplication::Fixed(1)),
        NewTopic::new(&config.topics.city, 1, TopicReplication::Fixed(1)),
    ];
    for result in admin
        .create_topics(
            &topics,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create topics")
    {
        result.unwrap_or_else(|(topic, e)| panic!("cannot create topic {topic}: {e}"));
    }

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    TestLake {
        config: config.clone(),
        producer,
        catalog: Arc::new(catalog),
    }
}

impl TestLake {
    /// Produces one record to `topic`/`partition` and returns its offset.
    pub async fn produce(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&str>,
        value: Option<&[u8]>,
    ) -> i64 {
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).partition(partition);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        let delivery = self
            .producer
            .send(record, Duration::from_secs(10))
            .await
            .unwrap_or_else(|(e, _)| panic!("produce to {topic}/{partition} failed: {e}"));
        delivery.offset
    }

    /// Every row of `table` (current snapshot, or `snapshot_id`).
    pub async fn read(&self, table: RawTable, snapshot_id: Option<i64>) -> Vec<RecordBatch> {
        let t = load_table(self.catalog.as_ref(), &self.config.lake.namespace, table)
            .await
            .expect("table exists");
        read_table(&t, snapshot_id).await.expect("scan")
    }

    /// Current snapshot id of `table`.
    pub async fn snapshot_id(&self, table: RawTable) -> Option<i64> {
        load_table(self.catalog.as_ref(), &self.config.lake.namespace, table)
            .await
            .expect("table exists")
            .metadata()
            .current_snapshot_id()
    }

    /// Offset map in the current snapshot summary of `table`, as JSON.
    pub async fn offsets(&self, table: RawTable) -> String {
        let t = load_table(self.catalog.as_ref(), &self.config.lake.namespace, table)
            .await
            .expect("table exists");
        catalog::snapshot_offsets(&t).expect("offsets").encode()
    }

    /// The offset-coverage ledger in the current snapshot summary of `table`, as JSON.
    pub async fn ledger(&self, table: RawTable) -> String {
        let t = load_table(self.catalog.as_ref(), &self.config.lake.namespace, table)
            .await
            .expect("table exists");
        catalog::snapshot_ledger(&t).expect("ledger").encode()
    }
}

/// `(topic, partition, offset)` of every row, with how many times each appears.
pub fn provenance_counts(batches: &[RecordBatch]) -> BTreeMap<(String, i32, i64), usize> {
    let mut counts = BTreeMap::new();
    for b in batches {
        let topic = b.column_by_name("kafka_topic").unwrap().as_string::<i32>();
        let partition = b
            .column_by_name("kafka_partition")
            .unwrap()
            .as_primitive::<Int32Type>();
        let offset = b
            .column_by_name("kafka_offset")
            .unwrap()
            .as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            *counts
                .entry((
                    topic.value(i).to_string(),
                    partition.value(i),
                    offset.value(i),
                ))
                .or_insert(0) += 1;
        }
    }
    counts
}

/// Asserts every expected `(topic, partition, offset)` appears exactly once and nothing else.
pub fn assert_exactly_once(batches: &[RecordBatch], expected: &BTreeSet<(String, i32, i64)>) {
    let counts = provenance_counts(batches);
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "duplicated rows: {duplicates:?}");
    let found: BTreeSet<_> = counts.keys().cloned().collect();
    let missing: Vec<_> = expected.difference(&found).collect();
    let extra: Vec<_> = found.difference(expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, unexpected {extra:?}"
    );
}

/// Rows as maps column → display string, ordered by (partition, offset).
pub fn rows(batches: &[RecordBatch]) -> Vec<BTreeMap<String, Option<String>>> {
    let mut out = Vec::new();
    for b in batches {
        let schema = b.schema();
        for i in 0..b.num_rows() {
            let mut row = BTreeMap::new();
            for (field, column) in schema.fields().iter().zip(b.columns()) {
                let value = if column.is_null(i) {
                    None
                } else {
                    Some(
                        arrow::util::display::array_value_to_string(column, i)
                            .expect("displayable"),
                    )
                };
                row.insert(field.name().clone(), value);
            }
            out.push(row);
        }
    }
    out.sort_by_key(|r| {
        (
            r["kafka_partition"]
                .clone()
                .unwrap_or_default()
                .parse::<i32>()
                .unwrap_or(0),
            r["kafka_offset"]
                .clone()
                .unwrap_or_default()
                .parse::<i64>()
                .unwrap_or(0),
        )
    });
    out
}

/// A Debezium envelope as the JSON converter writes it with `schemas.enable=false`.
pub fn envelope(op: &str, before: Option<&str>, after: Option<&str>, lsn: i64) -> Vec<u8> {
    format!(
        r#"{{"before":{},"after":{},"source":{{"version":"3.6.1.Final","connector":"postgresql","name":"salesdb","ts_ms":1772359200000,"snapshot":"false","db":"salesdb","sequence":"[null,\"{lsn}\"]","schema":"public","table":"sale","txId":{txid},"lsn":{lsn},"xmin":null}},"op":"{op}","ts_ms":1772359200100,"transaction":null}}"#,
        before.unwrap_or("null"),
        after.unwrap_or("null"),
        txid = 700 + lsn % 100,
    )
    .into_bytes()
}

/// The `after`/`before` image of a sale.
pub fn sale_image(id: i64, salesman_id: i64, city_id: i64, amount: &str, sold_at: &str) -> String {
    format!(
        r#"{{"id":{id},"salesman_id":{salesman_id},"city_id":{city_id},"amount":"{amount}","sold_at":"{sold_at}","updated_at":"2026-03-02T00:00:00.000000Z"}}"#
    )
}
