//! The file ingestor against the real object store (the stack's S3 on :9000, bucket `inbox`)
//! and the real Kafka: the shipped partner mapping and sample files, each format, a re-drop, a
//! correction, a snapshot withdrawal, bad rows and a bad file, and a SIGKILL mid-file.
//!
//! Each test has its own inbox prefix, topics and transactional id. The stack must be running
//! (`make test` starts it); these tests fail, never skip, when it is not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio_util::sync::CancellationToken;
use tributary_common::KafkaSettings;
use tributary_common::sale_event::{RejectedRecord, SaleEvent, SaleOp};
use tributary_ingest::config::FilesConfig;
use tributary_ingest::files::FileIngestor;
use tributary_ingest::files::inbox::Inbox;
use tributary_ingest::files::metrics::{FileMetrics, UNKNOWN_PARTNER};
use tributary_ingest::files::partners::Partners;
use tributary_ingest::publish::read_topic;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn suffix() -> String {
    format!(
        "{}{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

fn require_stack() {
    for (name, port) in [("kafka", 9092), ("object store", 9000)] {
        assert!(
            std::net::TcpStream::connect_timeout(
                &([127, 0, 0, 1], port).into(),
                Duration::from_secs(1)
            )
            .is_ok(),
            "{name} is not running on 127.0.0.1:{port}: run `make test` (or `dev/up`) first"
        );
    }
}

fn config(suffix: &str) -> FilesConfig {
    let mut c = FilesConfig {
        inbox: format!("s3://inbox/it-{suffix}"),
        min_age_ms: 0,
        batch_records: 3,
        transactional_id: format!("it-files-{suffix}"),
        ..FilesConfig::default()
    };
    c.topics.sales = format!("it.{suffix}.files.sales");
    c.topics.dead_letters = format!("it.{suffix}.files.dead");
    c.topics.progress = format!("it.{suffix}.files.progress");
    c
}

fn partners() -> Partners {
    Partners::load(&repo().join("ingest/partners.toml")).expect("the shipped partner mapping loads")
}

fn sample(path: &str) -> Vec<u8> {
    std::fs::read(repo().join("ingest/samples").join(path)).unwrap()
}

async fn open_ingestor(config: &FilesConfig) -> (FileIngestor, FileMetrics) {
    let metrics = FileMetrics::new().unwrap();
    let ingestor = FileIngestor::open(
        &KafkaSettings::default(),
        config.clone(),
        partners(),
        metrics.clone(),
    )
    .await
    .expect("open the file ingestor");
    (ingestor, metrics)
}

async fn events(topic: &str) -> Vec<SaleEvent> {
    read_topic(&KafkaSettings::default(), topic)
        .await
        .unwrap()
        .into_iter()
        .map(|r| serde_json::from_slice(&r.value.unwrap()).unwrap())
        .collect()
}

async fn rejections(topic: &str) -> Vec<RejectedRecord> {
    read_topic(&KafkaSettings::default(), topic)
        .await
        .unwrap()
        .into_iter()
        .map(|r| serde_json::from_slice(&r.value.unwrap()).unwrap())
        .collect()
}

/// The newest event per key, in the source's order (what the marts will compute).
fn latest(events: &[SaleEvent]) -> BTreeMap<String, SaleEvent> {
    let mut out: BTreeMap<String, SaleEvent> = BTreeMap::new();
    for e in events {
        let newer = out.get(&e.key()).is_none_or(|old| old.version < e.version);
        if newer {
            out.insert(e.key(), e.clone());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn formats_redrops_corrections_and_quarantine_on_the_real_store_and_kafka() {
    require_stack();
    let suffix = suffix();
    let config = config(&suffix);
    let (mut ingestor, metrics) = open_ingestor(&config).await;
    let inbox = ingestor.inbox().clone();
    for path in [
        "acme/2026-03-vendas.csv",
        "globex/orders-2026-04.json",
        "globex/orders-2026-05.ndjson",
        "globex/orders-broken.json",
    ] {
        inbox.put_bytes(path, sample(path)).await.unwrap();
    }
    inbox
        .put_bytes("nobody/sales.csv", b"id\n1\n".to_vec())
        .await
        .unwrap();
    inbox
        .put_bytes("acme/sales.xlsx", b"PK\x03\x04".to_vec())
        .await
        .unwrap();

    let shutdown = CancellationToken::new();
    let first = ingestor.poll(&shutdown).await.unwrap();
    assert_eq!(
        (
            first.files_done,
            first.quarantined,
            first.published,
            first.rejected
        ),
        (3, 3, 9, 4),
        "{first:?}"
    );

    // Each format published its good rows, keyed by sale identity, money exact.
    let published = events(&config.topics.sales).await;
    let keys: BTreeSet<String> = published.iter().map(SaleEvent::key).collect();
    let expected: BTreeSet<String> = [
        "acme/A-1001",
        "acme/A-1002",
        "acme/A-1003",
        "acme/A-1004",
        "acme/A-1007",
        "globex/G-501",
        "globex/G-502",
        "globex/G-601",
        "globex/G-602",
    ]
    .iter()
    .map(|k| format!("files/{k}"))
    .collect();
    assert_eq!(keys, expected);
    let a1001 = published.iter().find(|e| e.sale_id == "A-1001").unwrap();
    assert_eq!(a1001.amount.as_deref(), Some("1250.00"));
    assert_eq!(a1001.sold_at.as_deref(), Some("2026-03-02T13:15:00Z"));
    assert_eq!(a1001.salesman_code.as_deref(), Some("S001"));
    assert_eq!(a1001.city_name.as_deref(), Some("São Paulo"));
    assert_eq!(
        a1001.provenance["object_url"],
        format!("s3://inbox/it-{suffix}/acme/2026-03-vendas.csv")
    );
    assert_eq!(a1001.provenance["record"], 1);
    assert_eq!(a1001.provenance["line"], 2);
    let g501 = published.iter().find(|e| e.sale_id == "G-501").unwrap();
    assert_eq!(
        (g501.amount.as_deref(), g501.city_id),
        (Some("1830.25"), Some(5))
    );

    // Bad rows are dead letters with the reason and the raw text; bad files too.
    let dead = rejections(&config.topics.dead_letters).await;
    let by_kind: BTreeMap<&str, &RejectedRecord> =
        dead.iter().map(|d| (d.error_kind.as_str(), d)).collect();
    assert!(
        by_kind["bad_amount"].reason.contains("negative"),
        "{dead:?}"
    );
    assert!(by_kind["bad_amount"].raw.contains("A-1005"), "{dead:?}");
    assert!(
        by_kind["bad_timestamp"].reason.contains("32/03/2026"),
        "{dead:?}"
    );
    assert!(by_kind["bad_currency"].reason.contains("USD"), "{dead:?}");
    assert!(
        by_kind["missing_field"].reason.contains("no city"),
        "{dead:?}"
    );
    assert!(
        by_kind["truncated"].reason.contains("quarantined"),
        "{dead:?}"
    );
    assert!(
        by_kind["unknown_partner"].reason.contains("nobody"),
        "{dead:?}"
    );
    assert!(
        by_kind["unknown_format"].reason.contains(".csv"),
        "{dead:?}"
    );
    assert_eq!(dead.len(), 7);

    // Bad files moved aside with their reason; nothing of them was published.
    assert!(!inbox.exists("globex/orders-broken.json").await.unwrap());
    assert!(
        inbox
            .exists("_quarantine/globex/orders-broken.json")
            .await
            .unwrap()
    );
    let reason = inbox
        .get_text("_quarantine/globex/orders-broken.json.reason.txt")
        .await
        .unwrap();
    assert!(reason.starts_with("truncated"), "{reason}");
    assert!(
        inbox
            .exists("_quarantine/nobody/sales.csv.reason.txt")
            .await
            .unwrap()
    );

    // Finished files moved to `_processed`: the next poll lists only what waits.
    for path in [
        "acme/2026-03-vendas.csv",
        "globex/orders-2026-04.json",
        "globex/orders-2026-05.ndjson",
    ] {
        assert!(!inbox.exists(path).await.unwrap(), "{path}");
        let archived = format!("_processed/{path}");
        assert!(inbox.exists(&archived).await.unwrap(), "{archived}");
    }
    assert_eq!(metrics.inbox_objects_count("archived"), 3);

    // The same bytes again, under another name and under the same name: nothing new.
    inbox
        .put_bytes("acme/copy-of-march.csv", sample("acme/2026-03-vendas.csv"))
        .await
        .unwrap();
    inbox
        .put_bytes(
            "globex/orders-2026-04.json",
            sample("globex/orders-2026-04.json"),
        )
        .await
        .unwrap();
    let again = ingestor.poll(&shutdown).await.unwrap();
    assert_eq!(
        (again.duplicates, again.published, again.rejected),
        (2, 0, 0),
        "{again:?}"
    );
    assert_eq!(events(&config.topics.sales).await.len(), published.len());

    // A correction: the same keys again with a newer version; the newest wins.
    inbox
        .put_bytes(
            "acme/2026-03-vendas-corrigido.csv",
            sample("acme/2026-03-vendas-corrigido.csv"),
        )
        .await
        .unwrap();
    let corrected = ingestor.poll(&shutdown).await.unwrap();
    assert_eq!(corrected.published, 2, "{corrected:?}");
    let current = latest(&events(&config.topics.sales).await);
    assert_eq!(
        current["files/acme/A-1002"].amount.as_deref(),
        Some("449.90")
    );
    assert_eq!(
        current["files/acme/A-1005"].amount.as_deref(),
        Some("15.00")
    );
    assert_eq!(
        current["files/acme/A-1001"].amount.as_deref(),
        Some("1250.00")
    );
    assert_eq!(current.len(), 10);

    // Counted.
    assert_eq!(metrics.records_count("acme", "published"), 7);
    assert_eq!(metrics.records_count("globex", "rejected"), 2);
    assert_eq!(metrics.files_count("globex", "quarantined"), 1);
    assert_eq!(metrics.files_count("acme", "duplicate"), 1);
    // Duplicates and the correction were archived too.
    assert_eq!(metrics.inbox_objects_count("archived"), 6);
    // The folder nobody owns counts under one bounded label, not a series of its own.
    assert_eq!(metrics.files_count(UNKNOWN_PARTNER, "quarantined"), 1);
    let text = tributary_ingest::files::metrics::encode(&metrics.registry);
    assert!(!text.contains("partner=\"nobody\""), "{text}");

    // A restarted ingestor knows all of it: nothing to do.
    drop(ingestor);
    let (mut restarted, _) = open_ingestor(&config).await;
    let idle = restarted.poll(&shutdown).await.unwrap();
    assert_eq!(idle, Default::default());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_partner_withdraws_what_its_next_file_no_longer_has() {
    require_stack();
    let suffix = suffix();
    let config = config(&suffix);
    let (mut ingestor, _) = open_ingestor(&config).await;
    let inbox = ingestor.inbox().clone();
    let shutdown = CancellationToken::new();
    let header = "id,rep,city,state,amount,sold_at\n";
    let row =
        |id: &str, amount: &str| format!("{id},S001,Campinas,SP,{amount},2026-02-01T10:00:00Z\n");
    let first = format!(
        "{header}{}{}{}",
        row("I-1", "10.00"),
        row("I-2", "20.00"),
        row("I-3", "30.00")
    );
    inbox
        .put_bytes("initech/full-1.csv", first.into_bytes())
        .await
        .unwrap();
    ingestor.poll(&shutdown).await.unwrap();
    let second = format!("{header}{}{}", row("I-1", "10.00"), row("I-3", "33.00"));
    inbox
        .put_bytes("initech/full-2.csv", second.into_bytes())
        .await
        .unwrap();
    let summary = ingestor.poll(&shutdown).await.unwrap();
    assert_eq!(
        (summary.published, summary.withdrawn),
        (2, 1),
        "{summary:?}"
    );

    let current = latest(&events(&config.topics.sales).await);
    assert_eq!(current["files/initech/I-2"].op, SaleOp::Delete);
    assert_eq!(
        current["files/initech/I-3"].amount.as_deref(),
        Some("33.00")
    );
    assert_eq!(current["files/initech/I-1"].op, SaleOp::Upsert);
    assert!(
        current["files/initech/I-2"].version > current["files/initech/I-3"].version,
        "the withdrawal comes after every record of its file"
    );
}

/// High watermark of a topic (committed or not): how far a running producer got.
fn high_watermark(topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:9092")
        .create()
        .unwrap();
    consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(5))
        .map(|(_, high)| high)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkilled_mid_file_every_record_is_published_exactly_once() {
    require_stack();
    let suffix = suffix();
    let config = config(&suffix);
    const ROWS: usize = 60_000;
    let mut csv = String::from("pedido;vendedor;cidade;uf;valor;data\n");
    for i in 0..ROWS {
        csv.push_str(&format!(
            "K-{i};S{:03};Campinas;SP;{},{:02};01/02/2026 10:00\n",
            i % 20 + 1,
            i % 1000,
            i % 100
        ));
    }
    let inbox = Inbox::open(&config.inbox, &config.s3).unwrap();
    inbox
        .put_bytes("acme/big.csv", csv.into_bytes())
        .await
        .unwrap();

    let env = [
        ("TRIBUTARY_FILES__INBOX", config.inbox.clone()),
        ("TRIBUTARY_FILES__MIN_AGE_MS", "0".into()),
        ("TRIBUTARY_FILES__BATCH_RECORDS", "2000".into()),
        (
            "TRIBUTARY_FILES__TRANSACTIONAL_ID",
            config.transactional_id.clone(),
        ),
        (
            "TRIBUTARY_FILES__TOPICS__SALES",
            config.topics.sales.clone(),
        ),
        (
            "TRIBUTARY_FILES__TOPICS__DEAD_LETTERS",
            config.topics.dead_letters.clone(),
        ),
        (
            "TRIBUTARY_FILES__TOPICS__PROGRESS",
            config.topics.progress.clone(),
        ),
    ];
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_tributary-ingest"))
            .args(["files", "--once"])
            .env("TRIBUTARY_PROFILE", "development")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(repo())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tributary-ingest")
    };

    // Kill it twice in the middle of the file, after some transactions made it.
    let mut kills = 0;
    for target in [10_000, 30_000] {
        let mut child = start();
        let deadline = Instant::now() + Duration::from_secs(120);
        while high_watermark(&config.topics.sales) < target {
            assert!(Instant::now() < deadline, "the ingestor made no progress");
            if child.try_wait().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(
        kills >= 1,
        "the file was finished before any kill: make it bigger"
    );

    let status = start().wait().unwrap();
    assert!(status.success(), "the last run failed: {status}");

    let published = events(&config.topics.sales).await;
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for e in &published {
        *per_key.entry(e.sale_id.clone()).or_default() += 1;
    }
    let twice: Vec<_> = per_key.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "published more than once: {twice:?}");
    assert_eq!(per_key.len(), ROWS, "every row published");
    let versions: BTreeSet<_> = published.iter().map(|e| e.version.major).collect();
    assert_eq!(
        versions.len(),
        1,
        "a resumed file keeps its sequence number"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fenced_ingestor_stops_instead_of_retrying() {
    require_stack();
    let suffix = suffix();
    let config = config(&suffix);
    let (mut old, _) = open_ingestor(&config).await;
    // A second ingestor on the same inbox and transactional id takes over.
    let (_new, _) = open_ingestor(&config).await;
    old.inbox()
        .put_bytes("acme/late.csv", sample("acme/2026-03-vendas.csv"))
        .await
        .unwrap();
    let error = old.poll(&CancellationToken::new()).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(error.to_string().contains("took over"), "{error}");
    assert!(events(&config.topics.sales).await.is_empty());
}
