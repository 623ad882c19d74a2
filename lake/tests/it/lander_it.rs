//! Integration tests of the lander against the real local stack (Postgres SQL catalog, Kafka,
//! S3). `make test` starts the stack; without it these tests fail, they never skip.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Store, assert_exactly_once, envelope, rows, sale_image, setup, test_config};
use tokio_util::sync::CancellationToken;
use tributary_lake::catalog::WriterLock;
use tributary_lake::metrics::Metrics;
use tributary_lake::{LakeError, Mode, RawTable};

fn key(id: i64) -> String {
    format!(r#"{{"id":{id}}}"#)
}

async fn drain(config: &tributary_lake::LanderConfig) -> tributary_lake::RunSummary {
    tokio::time::timeout(
        Duration::from_secs(120),
        tributary_lake::run(
            config.clone(),
            Mode::Drain,
            Metrics::new().unwrap(),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("drain finishes within 2 minutes")
    .expect("lander run succeeds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lands_every_change_event_exactly_once_with_typed_columns() {
    let config = test_config("land", Store::S3);
    let lake = setup(&config, 2).await;
    let (sale, salesman, city) = (
        &config.topics.sale,
        &config.topics.salesman,
        &config.topics.city,
    );
    let mut expected = BTreeSet::new();

    // Sales on two partitions: snapshot read, insert, update, delete.
    let events = [
        (
            0,
            "r",
            None,
            Some(sale_image(
                1,
                10,
                100,
                "0.10",
                "2026-01-01T00:00:00.000000Z",
            )),
        ),
        (
            1,
            "c",
            None,
            Some(sale_image(
                2,
                11,
                101,
                "12345678.90",
                "2026-03-01T10:00:00.000000Z",
            )),
        ),
        (
            0,
            "u",
            Some(sale_image(
                1,
                10,
                100,
                "0.10",
                "2026-01-01T00:00:00.000000Z",
            )),
            Some(sale_image(
                1,
                10,
                100,
                "99.99",
                "2026-01-01T00:00:00.000000Z",
            )),
        ),
        (
            1,
            "d",
            Some(sale_image(
                2,
                11,
                101,
                "12345678.90",
                "2026-03-01T10:00:00.000000Z",
            )),
            None,
        ),
    ];
    for (i, (partition, op, before, after)) in events.iter().enumerate() {
        let value = envelope(op, before.as_deref(), after.as_deref(), 1000 + i as i64);
        let offset = lake
            .produce(sale, *partition, Some(&key(1)), Some(&value))
            .await;
        expected.insert((sale.clone(), *partition, offset));
    }
    // A tombstone: counted, not landed.
    lake.produce(sale, 1, Some(&key(2)), None).await;
    let salesman_after = r#"{"id":10,"code":"S010","name":"João Pereira","city_id":100}"#;
    lake.produce(
        salesman,
        0,
        Some(&key(10)),
        Some(&envelope("c", None, Some(salesman_after), 2000)),
    )
    .await;
    let city_after = r#"{"id":100,"name":"São Paulo","state":"SP"}"#;
    lake.produce(
        city,
        0,
        Some(&key(100)),
        Some(&envelope("r", None, Some(city_after), 3000)),
    )
    .await;

    let summary = drain(&config).await;
    assert_eq!(summary.landed, 6, "{summary:?}");
    assert_eq!(summary.tombstones, 1);
    assert_eq!(summary.dead_letters, 0);

    let sales = lake.read(RawTable::PgSale, None).await;
    assert_exactly_once(&sales, &expected);
    let sales = rows(&sales);
    let by_op = |op: &str| {
        sales
            .iter()
            .find(|r| r["op"].as_deref() == Some(op))
            .unwrap()
            .clone()
    };
    let read = by_op("r");
    assert_eq!(read["amount"].as_deref(), Some("0.10"));
    assert_eq!(read["sold_at"].as_deref(), Some("2026-01-01T00:00:00Z"));
    assert_eq!(read["salesman_id"].as_deref(), Some("10"));
    assert_eq!(read["source_ts"].as_deref(), Some("2026-03-01T10:00:00Z"));
    assert_eq!(read["before_json"], None);
    let insert = by_op("c");
    assert_eq!(insert["amount"].as_deref(), Some("12345678.90"));
    assert_eq!(insert["id"].as_deref(), Some("2"));
    let update = by_op("u");
    assert_eq!(update["amount"].as_deref(), Some("99.99"));
    assert!(
        update["before_json"]
            .as_deref()
            .unwrap()
            .contains(r#""amount":"0.10""#)
    );
    let delete = by_op("d");
    assert_eq!(
        delete["id"].as_deref(),
        Some("2"),
        "a delete carries the before image"
    );
    assert_eq!(delete["amount"].as_deref(), Some("12345678.90"));
    assert_eq!(delete["after_json"], None);
    assert_eq!(delete["source_lsn"].as_deref(), Some("1003"));
    assert_eq!(delete["source_txid"].as_deref(), Some("703"));

    let salesmen = rows(&lake.read(RawTable::PgSalesman, None).await);
    assert_eq!(salesmen.len(), 1);
    assert_eq!(salesmen[0]["name"].as_deref(), Some("João Pereira"));
    let cities = rows(&lake.read(RawTable::PgCity, None).await);
    assert_eq!(cities[0]["state"].as_deref(), Some("SP"));

    // The summary holds the full offset map: both partitions, tombstone included.
    assert_eq!(
        lake.offsets(RawTable::PgSale).await,
        format!(r#"{{"{sale}/0":2,"{sale}/1":3}}"#)
    );

    // More events, another run: reading at the first snapshot still shows the old table.
    let first_snapshot = lake.snapshot_id(RawTable::PgSale).await.unwrap();
    let value = envelope(
        "c",
        None,
        Some(&sale_image(3, 10, 100, "1.00", "2026-04-01T00:00:00Z")),
        5000,
    );
    let offset = lake.produce(sale, 0, Some(&key(3)), Some(&value)).await;
    expected.insert((sale.clone(), 0, offset));
    assert_eq!(drain(&config).await.landed, 1);
    assert_exactly_once(&lake.read(RawTable::PgSale, None).await, &expected);
    assert_eq!(
        rows(&lake.read(RawTable::PgSale, Some(first_snapshot)).await).len(),
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_go_to_dead_letters_and_the_good_ones_around_them_land() {
    let config = test_config("dead", Store::LocalFolder);
    let lake = setup(&config, 1).await;
    let sale = &config.topics.sale;
    let good = |id: i64| {
        envelope(
            "c",
            None,
            Some(&sale_image(id, 1, 1, "5.00", "2026-02-01T00:00:00Z")),
            id,
        )
    };

    let mut expected_good = BTreeSet::new();
    let o = lake.produce(sale, 0, Some(&key(1)), Some(&good(1))).await;
    expected_good.insert((sale.clone(), 0, o));
    let not_json = lake
        .produce(sale, 0, Some(&key(2)), Some(b"this is not json {"))
        .await;
    let o = lake.produce(sale, 0, Some(&key(3)), Some(&good(3))).await;
    expected_good.insert((sale.clone(), 0, o));
    let bad_amount_value = envelope(
        "c",
        None,
        Some(&sale_image(4, 1, 1, "12x", "2026-02-01T00:00:00Z")),
        4,
    );
    let bad_amount = lake
        .produce(sale, 0, Some(&key(4)), Some(&bad_amount_value))
        .await;
    let o = lake.produce(sale, 0, Some(&key(5)), Some(&good(5))).await;
    expected_good.insert((sale.clone(), 0, o));

    // The marts listen for the lander's commits (tributary_raw::commits): it announces them.
    let (announced, listening) = tributary_raw::commits::listen(&config.lake)
        .await
        .expect("the test catalog is on Postgres");
    let summary = drain(&config).await;
    tokio::time::timeout(Duration::from_secs(10), announced.notified())
        .await
        .expect("the lander announces its commits");
    listening.abort();
    assert_eq!(
        (summary.landed, summary.dead_letters),
        (3, 2),
        "{summary:?}"
    );

    assert_exactly_once(&lake.read(RawTable::PgSale, None).await, &expected_good);
    let dead_batches = lake.read(RawTable::DeadLetters, None).await;
    assert_exactly_once(
        &dead_batches,
        &BTreeSet::from([(sale.clone(), 0, not_json), (sale.clone(), 0, bad_amount)]),
    );
    let dead = rows(&dead_batches);
    assert_eq!(
        dead[0]["kafka_offset"].as_deref(),
        Some(not_json.to_string().as_str())
    );
    assert_eq!(dead[0]["error_kind"].as_deref(), Some("invalid_json"));
    assert!(
        dead[0]["reason"]
            .as_deref()
            .unwrap()
            .contains("not valid JSON")
    );
    assert_eq!(
        dead[0]["kafka_value"].as_deref(),
        Some("this is not json {")
    );
    assert_eq!(dead[0]["kafka_key"].as_deref(), Some(r#"{"id":2}"#));
    assert_eq!(dead[0]["kafka_topic"].as_deref(), Some(sale.as_str()));
    assert_eq!(dead[0]["kafka_partition"].as_deref(), Some("0"));
    assert_eq!(dead[1]["error_kind"].as_deref(), Some("bad_decimal"));
    let reason = dead[1]["reason"].as_deref().unwrap();
    assert!(
        reason.contains("after.amount") && reason.contains("12x"),
        "{reason}"
    );

    // dead_letters is committed first and holds the full map too.
    assert_eq!(
        lake.offsets(RawTable::DeadLetters).await,
        format!(r#"{{"{sale}/0":5}}"#)
    );
    assert_eq!(
        lake.offsets(RawTable::PgSale).await,
        format!(r#"{{"{sale}/0":5}}"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_the_snapshot_offsets_exactly_once() {
    let base = test_config("restart", Store::S3);
    let lake = setup(&base, 2).await;
    let sale = base.topics.sale.clone();
    let mut expected = BTreeSet::new();
    let mut next_id = 0;
    let mut produce = async |n: usize, expected: &mut BTreeSet<(String, i32, i64)>| {
        for _ in 0..n {
            next_id += 1;
            let partition = (next_id % 2) as i32;
            let value = envelope(
                "c",
                None,
                Some(&sale_image(next_id, 1, 1, "1.00", "2026-05-01T00:00:00Z")),
                next_id,
            );
            let offset = lake
                .produce(&sale, partition, Some(&key(next_id)), Some(&value))
                .await;
            expected.insert((sale.clone(), partition, offset));
        }
    };
    produce(400, &mut expected).await;

    // Run 1: follow, small batches; killed (task dropped, nothing flushed) once some landed.
    let mut config = base.clone();
    config.batch_max_rows = 10;
    let run1 = tokio::spawn(tributary_lake::run(
        config.clone(),
        Mode::Follow,
        Metrics::new().unwrap(),
        CancellationToken::new(),
    ));
    wait_for_rows(&lake, 10).await;
    run1.abort();
    let _ = run1.await;
    let landed_by_run1 = count(&lake).await;
    eprintln!("run 1 was killed after landing {landed_by_run1} of 400 rows");
    produce(100, &mut expected).await;

    // Run 2: a fresh consumer group (so nothing can come from the group), stopped gracefully.
    config.group_id = format!("{}-second", base.group_id);
    let shutdown = CancellationToken::new();
    let run2 = tokio::spawn(tributary_lake::run(
        config.clone(),
        Mode::Follow,
        Metrics::new().unwrap(),
        shutdown.clone(),
    ));
    wait_for_rows(&lake, 450).await;
    shutdown.cancel();
    let summary2 = run2.await.unwrap().expect("second run succeeds");
    eprintln!("run 2: {summary2:?}; run 3 follows");
    assert_eq!(
        summary2.skipped_replay, 0,
        "run 2 resumed at the snapshot offsets"
    );
    produce(50, &mut expected).await;

    // Run 3: yet another group, drains the rest.
    config.group_id = format!("{}-third", base.group_id);
    let summary3 = drain(&config).await;
    assert_eq!(
        summary3.skipped_replay, 0,
        "resumed exactly at the snapshot offsets: {summary3:?}"
    );

    let landed = lake.read(RawTable::PgSale, None).await;
    assert_exactly_once(&landed, &expected);
    assert_eq!(expected.len(), 550);
    assert!(summary2.landed > 0, "{summary2:?}");
    let offsets = lake.offsets(RawTable::PgSale).await;
    assert_eq!(offsets, format!(r#"{{"{sale}/0":275,"{sale}/1":275}}"#));
    // Three runs, one killed mid-flush: the ledger counts each record once, like the rows.
    let each = r#"{"first_offset":0,"records":275,"landed":275,"dead_lettered":0,"tombstones":0}"#;
    assert_eq!(
        lake.ledger(RawTable::PgSale).await,
        format!(r#"{{"{sale}/0":{each},"{sale}/1":{each}}}"#)
    );
}

async fn count(lake: &common::TestLake) -> usize {
    lake.read(RawTable::PgSale, None)
        .await
        .iter()
        .map(|b| b.num_rows())
        .sum()
}

async fn wait_for_rows(lake: &common::TestLake, at_least: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let n = count(lake).await;
        if n >= at_least {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {n} rows landed, expected {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_lander_on_the_same_namespace_is_refused() {
    let config = test_config("lock", Store::LocalFolder);
    let _lake = setup(&config, 1).await;
    let wait = Duration::from_millis(300);
    let first = WriterLock::acquire(&config.lake, &config.lake.namespace, wait)
        .await
        .expect("first lander takes the lock");
    let err = WriterLock::acquire(&config.lake, &config.lake.namespace, wait)
        .await
        .expect_err("second lander must not write the same tables");
    assert!(matches!(err, LakeError::WriterLockBusy { .. }), "{err}");
    // Another namespace is independent.
    let other = WriterLock::acquire(
        &config.lake,
        &format!("{}_other", config.lake.namespace),
        wait,
    )
    .await
    .expect("other namespace");
    other.release().await;
    // Released (or its process gone): the next lander gets it.
    first.release().await;
    WriterLock::acquire(&config.lake, &config.lake.namespace, wait)
        .await
        .expect("lock is free again")
        .release()
        .await;
}

/// Sale events written in Kafka transactions (as the file and ERP ingestors write them): each
/// committed transaction ends with a marker that takes an offset but is never delivered, and an
/// aborted one leaves records no `read_committed` reader sees. Drain mode must land exactly the
/// committed events and still recognise the end of the partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_topics_land_committed_events_only_and_drain_to_the_end() {
    use rdkafka::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let config = test_config("txn", Store::LocalFolder);
    let _lake = setup(&config, 1).await;
    let topic = config.topics.file_sales.clone();
    let event = |id: usize| {
        format!(
            r#"{{"source":"files","origin":"it","sale_id":"T-{id}","op":"upsert","version":{{"major":1,"minor":{id}}},"salesman_id":1,"city_id":1,"amount":"1.00","sold_at":"2026-01-01T00:00:00Z","produced_at":"2026-01-01T00:00:00Z","provenance":{{}}}}"#
        )
    };
    let brokers = config.kafka.brokers.clone();
    let produce = tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("transactional.id", format!("it-txn-{topic}"))
            .create()
            .unwrap();
        producer.init_transactions(Duration::from_secs(30)).unwrap();
        // Three committed transactions of 10 and one aborted one between them.
        for batch in 0..4usize {
            producer.begin_transaction().unwrap();
            for i in 0..10 {
                let value = event(batch * 10 + i);
                let key = format!("files/it/T-{}", batch * 10 + i);
                producer
                    .send(BaseRecord::to(&topic).key(&key).payload(&value))
                    .map_err(|(e, _)| e)
                    .unwrap();
            }
            producer.flush(Duration::from_secs(30)).unwrap();
            if batch == 2 {
                producer.abort_transaction(Duration::from_secs(30)).unwrap();
            } else {
                producer
                    .commit_transaction(Duration::from_secs(30))
                    .unwrap();
            }
        }
    });
    produce.await.unwrap();

    let summary = drain(&config).await;
    assert_eq!(summary.landed, 30, "{summary:?}");
    assert!(
        !summary.stopped_short,
        "drain must see the end of a partition that ends with a transaction marker: {summary:?}"
    );
}
