//! The lander loop on an in-memory source and catalog: every record exactly once (dead letters,
//! tombstones, file events, rejections), restarts from the lake, a crash between the dead-letter
//! and change commits, commits on interval and on size, shutdown, lag, an unreachable Kafka.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Decimal128Type, Int64Type};

use super::*;
use crate::sink::tests::memory_catalog;
use crate::source::MemorySource;
use tributary_raw::catalog::{load_table, read_table, snapshot_ledger, snapshot_offsets};
use tributary_raw::ledger::PartitionLedger;
use tributary_raw::schema::col;

const SALE: &str = "salesdb.public.sale";
const CITY: &str = "salesdb.public.city";

fn config(batch_max_rows: usize, commit_interval_ms: u64) -> LanderConfig {
    LanderConfig {
        batch_max_rows,
        commit_interval_ms,
        discovery_interval_ms: 20,
        ..LanderConfig::default()
    }
}

async fn lander(
    catalog: &Arc<dyn Catalog>,
    source: MemorySource,
    batch_max_rows: usize,
) -> Lander<MemorySource> {
    lander_with(catalog, source, config(batch_max_rows, 50)).await
}

pub(crate) async fn lander_with(
    catalog: &Arc<dyn Catalog>,
    source: MemorySource,
    config: LanderConfig,
) -> Lander<MemorySource> {
    Lander::open(
        config,
        source,
        catalog.clone(),
        WriterLock::none("raw"),
        Metrics::new().unwrap(),
    )
    .await
    .unwrap()
}

fn sale(id: i64, amount: &str) -> String {
    format!(
        r#"{{"before":null,"after":{{"id":{id},"salesman_id":1,"city_id":2,"amount":"{amount}","sold_at":"2026-03-01T10:00:00.000000Z","updated_at":"2026-03-01T10:00:00Z"}},"source":{{"lsn":{lsn},"ts_ms":1772359200000,"txId":5}},"op":"c","ts_ms":1772359200001}}"#,
        lsn = 1000 + id
    )
}

fn produce_sales(source: &MemorySource, ids: std::ops::Range<i64>) {
    for id in ids {
        let key = format!(r#"{{"id":{id}}}"#);
        source.produce(
            SALE,
            0,
            Some(key.as_bytes()),
            Some(sale(id, "10.50").as_bytes()),
        );
    }
}

async fn batches(catalog: &Arc<dyn Catalog>, table: RawTable) -> Vec<RecordBatch> {
    let table = load_table(catalog.as_ref(), "raw", table).await.unwrap();
    read_table(&table, None).await.unwrap()
}

async fn ledger(catalog: &Arc<dyn Catalog>, table: RawTable, topic: &str) -> PartitionLedger {
    let table = load_table(catalog.as_ref(), "raw", table).await.unwrap();
    *snapshot_ledger(&table)
        .unwrap()
        .get(&TopicPartition::new(topic, 0))
        .expect("the partition has a ledger")
}

fn longs(batches: &[RecordBatch], column: &str) -> Vec<i64> {
    let mut out: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(column)
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn drains_every_record_exactly_once_with_dead_letters_and_tombstones() {
    let catalog = memory_catalog().await;
    let source = MemorySource::new();
    produce_sales(&source, 0..5);
    source.produce(SALE, 0, Some(b"{\"id\":5}"), Some(b"not json"));
    source.produce(SALE, 0, Some(b"{\"id\":6}"), None);
    source.produce(
        SALE,
        0,
        Some(b"{\"id\":7}"),
        Some(sale(7, "12x").as_bytes()),
    );
    produce_sales(&source, 8..10);
    source.produce(
        CITY,
        0,
        None,
        Some(br#"{"after":{"id":1,"name":"Campinas","state":"SP"},"source":{"lsn":1,"ts_ms":1},"op":"r"}"#),
    );

    let summary = lander(&catalog, source.clone(), 3)
        .await
        .run(Mode::Drain, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(summary.landed, 8);
    assert_eq!(summary.dead_letters, 2);
    assert_eq!(summary.tombstones, 1);

    let sales = batches(&catalog, RawTable::PgSale).await;
    assert_eq!(longs(&sales, col::KAFKA_OFFSET), vec![0, 1, 2, 3, 4, 8, 9]);
    let amount = sales[0].column_by_name(col::AMOUNT).unwrap();
    assert_eq!(
        amount.as_primitive::<Decimal128Type>().value_as_string(0),
        "10.50"
    );

    let dead = batches(&catalog, RawTable::DeadLetters).await;
    assert_eq!(longs(&dead, col::KAFKA_OFFSET), vec![5, 7]);
    let kinds: BTreeSet<String> = dead
        .iter()
        .flat_map(|b| {
            let a = b
                .column_by_name(col::ERROR_KIND)
                .unwrap()
                .as_string::<i32>()
                .clone();
            (0..a.len()).map(move |i| a.value(i).to_string())
        })
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["bad_decimal".to_string(), "invalid_json".to_string()])
    );

    let table = load_table(catalog.as_ref(), "raw", RawTable::PgSale)
        .await
        .unwrap();
    assert_eq!(
        snapshot_offsets(&table).unwrap().encode(),
        format!(r#"{{"{SALE}/0":10}}"#)
    );
    let table = load_table(catalog.as_ref(), "raw", RawTable::PgCity)
        .await
        .unwrap();
    assert_eq!(
        snapshot_offsets(&table).unwrap().encode(),
        format!(r#"{{"{CITY}/0":1}}"#)
    );
    assert_eq!(
        ledger(&catalog, RawTable::PgCity, CITY).await,
        PartitionLedger {
            first_offset: 0,
            records: 1,
            landed: 1,
            dead_lettered: 0,
            tombstones: 0
        }
    );
    let sale_ledger = ledger(&catalog, RawTable::PgSale, SALE).await;
    assert_eq!(
        sale_ledger,
        PartitionLedger {
            first_offset: 0,
            records: 10,
            landed: 7,
            dead_lettered: 2,
            tombstones: 1
        }
    );
    let coverage = sale_ledger.verify(
        10,
        &longs(&sales, col::KAFKA_OFFSET),
        &longs(&dead, col::KAFKA_OFFSET),
    );
    assert!(coverage.balanced, "{coverage:?}");
}

#[tokio::test]
async fn restart_resumes_from_the_lake_not_from_the_source() {
    let catalog = memory_catalog().await;
    let source = MemorySource::new();
    produce_sales(&source, 0..4);
    lander(&catalog, source.clone(), 100)
        .await
        .run(Mode::Drain, CancellationToken::new())
        .await
        .unwrap();
    produce_sales(&source, 4..7);
    // A new consumer with no position of its own: everything it skips, it skips because of
    // the snapshot summary.
    let summary = lander(&catalog, source.reopen(), 100)
        .await
        .run(Mode::Drain, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(summary.landed, 3);
    assert_eq!(
        summary.skipped_replay, 0,
        "resumed at offset 4, nothing re-read"
    );
    let sales = batches(&catalog, RawTable::PgSale).await;
    assert_eq!(longs(&sales, col::KAFKA_OFFSET), (0..7).collect::<Vec<_>>());
    let sale_ledger = ledger(&catalog, RawTable::PgSale, SALE).await;
    assert_eq!(
        (sale_ledger.records, sale_ledger.landed),
        (7, 7),
        "counted across both runs"
    );
}

#[tokio::test]
async fn crash_after_the_dead_letter_commit_neither_loses_nor_duplicates() {
    let catalog = memory_catalog().await;
    let source = MemorySource::new();
    produce_sales(&source, 0..3);
    source.produce(SALE, 0, None, Some(b"garbage"));
    produce_sales(&source, 4..6);

    // Simulate the crash: commit only dead_letters for offsets 0..6, as a flush would have
    // before dying.
    {
        let mut l = lander(&catalog, source.clone(), 100).await;
        l.discover().await.unwrap();
        for _ in 0..6 {
            let record = l.source.recv().await.unwrap();
            l.ingest(record);
        }
        let dead = std::mem::take(&mut l.buffer.dead);
        let progress = l.progress.clone();
        l.committer
            .as_mut()
            .unwrap()
            .sinks
            .get_mut(&RawTable::DeadLetters)
            .unwrap()
            .commit(&dead, &progress)
            .await
            .unwrap();
    }

    let summary = lander(&catalog, source.reopen(), 100)
        .await
        .run(Mode::Drain, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(summary.landed, 5);
    assert_eq!(summary.dead_letters, 0);
    assert_eq!(
        summary.skipped_replay, 1,
        "the bad record is already in dead_letters"
    );
    assert_eq!(
        longs(
            &batches(&catalog, RawTable::PgSale).await,
            col::KAFKA_OFFSET
        ),
        vec![0, 1, 2, 4, 5]
    );
    assert_eq!(
        longs(
            &batches(&catalog, RawTable::DeadLetters).await,
            col::KAFKA_OFFSET
        ),
        vec![3]
    );
    let sale_ledger = ledger(&catalog, RawTable::PgSale, SALE).await;
    assert_eq!(
        (
            sale_ledger.records,
            sale_ledger.landed,
            sale_ledger.dead_lettered
        ),
        (6, 5, 1),
        "the replayed bad record is counted once, by the table that had not counted it"
    );
    assert!(
        sale_ledger
            .verify(
                6,
                &longs(
                    &batches(&catalog, RawTable::PgSale).await,
                    col::KAFKA_OFFSET
                ),
                &[3]
            )
            .balanced
    );
}

#[tokio::test]
async fn follow_mode_finds_new_topics_and_commits_on_interval() {
    let catalog = memory_catalog().await;
    let source = MemorySource::new();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(
        lander(&catalog, source.clone(), 1_000)
            .await
            .run(Mode::Follow, shutdown.clone()),
    );
    // The topic appears after start: discovery picks it up.
    tokio::time::sleep(Duration::from_millis(50)).await;
    produce_sales(&source, 0..3);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let landed = longs(
            &batches(&catalog, RawTable::PgSale).await,
            col::KAFKA_OFFSET,
        );
        if landed.len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "interval commit did not happen: {landed:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    assert_eq!(running.await.unwrap().unwrap().landed, 3);
}

#[tokio::test(start_paused = true)]
async fn a_session_whose_kafka_client_stays_unreachable_ends_retryably() {
    let catalog = memory_catalog().await;
    let source = MemorySource::new();
    produce_sales(&source, 0..3);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(
        lander(&catalog, source.clone(), 1_000)
            .await
            .run(Mode::Follow, shutdown.clone()),
    );
    while batches(&catalog, RawTable::PgSale).await.is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Unreachable for a while, then one answer: the count starts again.
    source.set_unreachable(true);
    tokio::time::sleep(KAFKA_UNREACHABLE_LIMIT / 2).await;
    source.set_unreachable(false);
    tokio::time::sleep(Duration::from_secs(1)).await;
    source.set_unreachable(true);
    tokio::time::sleep(KAFKA_UNREACHABLE_LIMIT / 2 + Duration::from_secs(5)).await;
    assert!(
        !running.is_finished(),
        "unreachable for less than the limit since the last answer"
    );
    let error = running.await.unwrap().unwrap_err();
    assert!(
        matches!(error, LakeError::Kafka { .. }) && error.is_retryable(),
        "{error}"
    );
}

#[tokio::test]
async fn shutdown_commits_what_was_consumed() {
    let catalog = memory_catalog().await;
    let source = MemorySource::new();
    produce_sales(&source, 0..5);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(
        lander_with(&catalog, source.clone(), config(1_000, 600_000))
            .await
            .run(Mode::Follow, shutdown.clone()),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        batches(&catalog, RawTable::PgSale).await.is_empty(),
        "nothing due yet"
    );
    shutdown.cancel();
    assert_eq!(running.await.unwrap().unwrap().landed, 5);
    assert_eq!(
        longs(
            &batches(&catalog, RawTable::PgSale).await,
            col::KAFKA_OFFSET
        ),
        (0..5).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn commits_on_size() {
    let catalog = memory_catalog().await;
    let source = MemorySource::new();
    produce_sales(&source, 0..10);
    let summary = lander_with(&catalog, source, config(4, 600_000))
        .await
        .run(Mode::Drain, CancellationToken::new())
        .await
        .unwrap();
    // 4 + 4 + 2 rows: three commits of pg_sale.
    assert_eq!(summary.commits, 3);
    assert_eq!(summary.landed, 10);
}

#[tokio::test]
async fn lands_file_events_and_the_ingestors_rejections() {
    let catalog = memory_catalog().await;
    let source = MemorySource::new();
    let event = r#"{"source":"files","origin":"acme","sale_id":"A-1","op":"upsert","version":{"major":3,"minor":0},"salesman_code":"S001","city_name":"Campinas","city_state":"SP","amount":"10.50","sold_at":"2026-03-01T10:00:00Z","produced_at":"2026-03-02T00:00:00Z","provenance":{"object_url":"file:///inbox/acme/a.csv","record":1}}"#;
    source.produce(
        "raw.files.sales",
        0,
        Some(b"files/acme/A-1"),
        Some(event.as_bytes()),
    );
    let wrong_source = event.replace(r#""source":"files""#, r#""source":"erp""#);
    source.produce(
        "raw.files.sales",
        0,
        Some(b"erp/x/1"),
        Some(wrong_source.as_bytes()),
    );
    let rejected = r#"{"source":"files","origin":"acme","error_kind":"bad_amount","reason":"column \"valor\": \"-3\" is negative","raw":"A-2;-3","produced_at":"2026-03-02T00:00:00Z","provenance":{"record":2}}"#;
    source.produce("raw.files.dead_letters", 0, None, Some(rejected.as_bytes()));

    let summary = lander(&catalog, source, 100)
        .await
        .run(Mode::Drain, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!((summary.landed, summary.dead_letters), (1, 2));

    let sales = batches(&catalog, RawTable::FileSale).await;
    let sale_id = sales[0]
        .column_by_name(col::SALE_ID)
        .unwrap()
        .as_string::<i32>();
    assert_eq!(sale_id.value(0), "A-1");
    let amount = sales[0].column_by_name(col::AMOUNT).unwrap();
    assert_eq!(
        amount.as_primitive::<Decimal128Type>().value_as_string(0),
        "10.50"
    );
    assert_eq!(longs(&sales, col::VERSION_MAJOR), vec![3]);

    let dead = batches(&catalog, RawTable::DeadLetters).await;
    let reasons: BTreeSet<String> = dead
        .iter()
        .flat_map(|b| {
            let a = b
                .column_by_name(col::REASON)
                .unwrap()
                .as_string::<i32>()
                .clone();
            (0..a.len()).map(move |i| a.value(i).to_string())
        })
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("is negative")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("source \"erp\"")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn lag_is_what_the_partition_has_beyond_the_lake() {
    let catalog = memory_catalog().await;
    let source = MemorySource::new();
    produce_sales(&source, 0..5);
    let mut l = lander(&catalog, source.clone(), 3).await;
    l.discover().await.unwrap();
    let metrics = Metrics::new().unwrap();
    let landed = l.landed().lock().unwrap().clone();
    report_lag(&source, &landed, &metrics).await;
    assert_eq!(metrics.lag_value(SALE, 0), 5);
    for _ in 0..3 {
        let record = l.source.recv().await.unwrap();
        l.ingest(record);
    }
    l.commit_now().await.unwrap();
    let landed = l.landed().lock().unwrap().clone();
    report_lag(&source, &landed, &metrics).await;
    assert_eq!(metrics.lag_value(SALE, 0), 2, "three landed, two to go");
}

/// What `lake/tests/bad-inputs/debezium/expectations.toml` says of one record.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedRecord {
    file: String,
    fate: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    reason: String,
    #[allow(dead_code)]
    why: String,
}

#[derive(Debug, serde::Deserialize)]
struct EnvelopeCorpus {
    record: Vec<ExpectedRecord>,
}

/// The committed corpus of bad Debezium change events (`lake/tests/bad-inputs/debezium/`),
/// produced in a row with a good change after them: each is a dead letter of its kind and
/// reason (or, where said, lands), counted as such in the ledger, and the good change
/// lands.
#[tokio::test]
async fn every_committed_bad_envelope_is_dead_lettered_with_its_reason_and_holds_up_nothing() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-inputs/debezium");
    let corpus: EnvelopeCorpus = tributary_common::corpus::load(&dir, |c: &EnvelopeCorpus| {
        c.record.iter().map(|r| r.file.clone()).collect()
    });

    let catalog = memory_catalog().await;
    let source = MemorySource::new();
    for record in &corpus.record {
        let bytes = std::fs::read(dir.join(&record.file)).unwrap();
        source.produce(SALE, 0, Some(b"{\"id\":900}"), Some(&bytes));
    }
    let good = corpus.record.len() as i64;
    source.produce(SALE, 0, None, Some(sale(good, "1.00").as_bytes()));
    lander(&catalog, source, 100)
        .await
        .run(Mode::Drain, CancellationToken::new())
        .await
        .unwrap();

    let dead = batches(&catalog, RawTable::DeadLetters).await;
    let mut letters = BTreeMap::new();
    for b in &dead {
        let offsets = b
            .column_by_name(col::KAFKA_OFFSET)
            .unwrap()
            .as_primitive::<Int64Type>();
        let kinds = b
            .column_by_name(col::ERROR_KIND)
            .unwrap()
            .as_string::<i32>();
        let reasons = b.column_by_name(col::REASON).unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            letters.insert(
                offsets.value(i),
                (kinds.value(i).to_string(), reasons.value(i).to_string()),
            );
        }
    }
    let sales = batches(&catalog, RawTable::PgSale).await;
    let landed = longs(&sales, col::KAFKA_OFFSET);
    let mut problems = Vec::new();
    for (offset, record) in corpus.record.iter().enumerate() {
        let offset = offset as i64;
        let got = match (letters.get(&offset), landed.contains(&offset)) {
            (Some((kind, reason)), false) => format!("dead_letter {kind}: {reason}"),
            (None, true) => "landed".to_string(),
            other => format!("{other:?}"),
        };
        let ok = match record.fate.as_str() {
            "dead_letter" => {
                letters.get(&offset).is_some_and(|(kind, reason)| {
                    *kind == record.kind && reason.contains(&record.reason)
                }) && !landed.contains(&offset)
            }
            "landed" => landed.contains(&offset) && !letters.contains_key(&offset),
            other => panic!("{}: unknown fate {other:?}", record.file),
        };
        if !ok {
            problems.push(format!(
                "{}: expected {} {} {:?}; got {got}",
                record.file, record.fate, record.kind, record.reason
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(landed.contains(&good), "the good change after them lands");
    let ledger = ledger(&catalog, RawTable::PgSale, SALE).await;
    let dead_count = corpus
        .record
        .iter()
        .filter(|r| r.fate == "dead_letter")
        .count() as u64;
    assert_eq!(
        (ledger.records, ledger.dead_lettered, ledger.landed),
        (good as u64 + 1, dead_count, good as u64 + 1 - dead_count),
        "the ledger counts each"
    );
}
