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

/// What `ingest/tests/bad-inputs/files/expectations.toml` says of one input file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    /// Path under the corpus folder, the partner first (`globex/…`).
    path: String,
    /// `quarantined` (the whole file refused) or `done` (read to the end).
    outcome: String,
    /// For `quarantined`: words the quarantine note must contain.
    #[serde(default)]
    reason: String,
    /// For `done`: sale events published.
    #[serde(default)]
    published: u64,
    /// For `done`: every dead letter, as `"<kind>: <words of its reason>"`, in record order.
    #[serde(default)]
    dead_letters: Vec<String>,
    /// Why this input is here.
    #[allow(dead_code)]
    why: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Corpus {
    file: Vec<Expected>,
}

/// The committed corpus of hostile partner files (`ingest/tests/bad-inputs/files/`): each is
/// dropped into the inbox with a good file after them all; each ends as its expectation says
/// (quarantined with its reason, or read with exactly its sales published and its dead letters'
/// kinds and reasons), each counted in the metrics, and the good file is published: no bad
/// input holds up another.
#[tokio::test(flavor = "multi_thread")]
async fn every_committed_bad_file_is_refused_with_its_reason_and_holds_up_nothing() {
    require_stack();
    let corpus_dir = repo().join("ingest/tests/bad-inputs/files");
    let corpus: Corpus =
        toml::from_str(&std::fs::read_to_string(corpus_dir.join("expectations.toml")).unwrap())
            .expect("expectations.toml parses");
    let on_disk: BTreeSet<String> = walk(&corpus_dir)
        .into_iter()
        .filter(|p| p != "expectations.toml")
        .collect();
    let expected: BTreeSet<String> = corpus.file.iter().map(|f| f.path.clone()).collect();
    assert_eq!(on_disk, expected, "every corpus file has one expectation");

    let suffix = suffix();
    let config = config(&suffix);
    let (mut ingestor, metrics) = open_ingestor(&config).await;
    let inbox = ingestor.inbox().clone();
    for file in &corpus.file {
        let bytes = std::fs::read(corpus_dir.join(&file.path)).unwrap();
        inbox.put_bytes(&file.path, bytes).await.unwrap();
    }
    // After every bad one (the inbox lists in path order): a good file.
    inbox
        .put_bytes(
            "globex/zz-good.ndjson",
            sample("globex/orders-2026-05.ndjson"),
        )
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let mut summary = ingestor.poll(&shutdown).await.unwrap();
    for _ in 0..5 {
        let more = ingestor.poll(&shutdown).await.unwrap();
        summary.files_done += more.files_done;
        summary.quarantined += more.quarantined;
        summary.published += more.published;
        summary.rejected += more.rejected;
    }

    let progress = tributary_ingest::files::progress::ProgressState::from_records(
        &tributary_ingest::publish::read_progress(
            &KafkaSettings::default(),
            &config.topics.progress,
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let dead = rejections(&config.topics.dead_letters).await;
    let published = events(&config.topics.sales).await;
    let object = |path: &str| format!("s3://inbox/it-{suffix}/{path}");
    let mut problems = Vec::new();
    for file in &corpus.file {
        let Some(state) = progress.files.get(&file.path) else {
            problems.push(format!("{}: never taken", file.path));
            continue;
        };
        let status = format!("{:?}", state.status).to_lowercase();
        let note = state.note.clone().unwrap_or_default();
        let letters: Vec<String> = dead
            .iter()
            .filter(|d| d.provenance.get("object_url") == Some(&object(&file.path).into()))
            .map(|d| format!("{}: {}", d.error_kind, d.reason))
            .collect();
        let sales = published
            .iter()
            .filter(|e| e.provenance.get("object_url") == Some(&object(&file.path).into()))
            .count() as u64;
        let letters_as_said = letters.len() == file.dead_letters.len()
            && letters.iter().zip(&file.dead_letters).all(|(got, want)| {
                let (kind, words) = want.split_once(": ").unwrap_or((want, ""));
                got.starts_with(&format!("{kind}: ")) && got.contains(words)
            });
        let ok = letters_as_said
            && match file.outcome.as_str() {
                "quarantined" => status == "quarantined" && note.contains(&file.reason),
                "done" => {
                    status == "done"
                        && sales == file.published
                        && (state.published, state.rejected) == (sales, letters.len() as u64)
                }
                other => panic!("{}: unknown outcome {other:?}", file.path),
            };
        if !ok {
            problems.push(format!(
                "{}: expected {} ({:?}, {} published, {:?}); got {status} (note {note:?}), {sales} published, dead letters {letters:?}; counted {} published, {} rejected",
                file.path, file.outcome, file.reason, file.published, file.dead_letters, state.published, state.rejected
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let good = progress
        .files
        .get("globex/zz-good.ndjson")
        .expect("the good file was taken");
    assert_eq!(
        (format!("{:?}", good.status), good.published),
        ("Done".to_string(), 2),
        "the good file after the bad ones is published"
    );
    let quarantined = corpus
        .file
        .iter()
        .filter(|f| f.outcome == "quarantined")
        .count() as u64;
    let rejected: u64 = corpus
        .file
        .iter()
        .filter(|f| f.outcome == "done")
        .map(|f| f.dead_letters.len() as u64)
        .sum();
    // The good file (the sample) has a bad line of its own.
    let rejected = rejected + good.rejected;
    assert_eq!(
        (summary.quarantined, summary.rejected),
        (quarantined, rejected),
        "counted: {summary:?}"
    );
    let partners = ["acme", "globex", UNKNOWN_PARTNER];
    assert_eq!(
        (
            partners
                .iter()
                .map(|p| metrics.files_count(p, "quarantined"))
                .sum::<u64>(),
            partners
                .iter()
                .map(|p| metrics.records_count(p, "rejected"))
                .sum::<u64>()
        ),
        (quarantined, rejected),
        "the metrics count each"
    );
}

/// Every file under `dir`, as a path relative to it with `/` separators.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            out.extend(walk(&path).into_iter().map(|p| format!("{name}/{p}")));
        } else {
            out.push(path.file_name().unwrap().to_string_lossy().to_string());
        }
    }
    out
}
