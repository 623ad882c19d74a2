//! The WS ingestor against real Kafka (the local stack: `dev/up`) and the ERP simulator in
//! process on port 0. Every test has its own topics and transactional id.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;
use tributary_common::KafkaSettings;
use tributary_common::sale_event::{SaleEvent, SaleOp};
use tributary_ingest::erp::ingestor::cursor_key;
use tributary_ingest::erp::sim::{self, Simulator, store::SaleInput};
use tributary_ingest::erp::wssec::SystemClock;
use tributary_ingest::erp::{
    ErpClientConfig, ErpError, ErpIngestConfig, ErpIngestError, ErpIngestor, ErpMetrics,
    ErpProgress, ErpSimConfig, ErpTopics, RetrySettings,
};
use tributary_ingest::publish::{read_progress, read_topic};

fn require_kafka() -> KafkaSettings {
    assert!(
        TcpStream::connect_timeout(&([127, 0, 0, 1], 9092).into(), Duration::from_secs(2)).is_ok(),
        "Kafka is not running on 127.0.0.1:9092: start the local stack with `dev/up` (or `make test`)"
    );
    KafkaSettings::default()
}

struct Sim {
    simulator: Simulator,
    endpoint: String,
    shutdown: CancellationToken,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start_sim(initial_changes: u32) -> Sim {
    let config = ErpSimConfig {
        listen: "127.0.0.1:0".into(),
        initial_changes,
        seed: 5,
        ..ErpSimConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let simulator = Simulator::new(config, Arc::new(SystemClock));
    let shutdown = CancellationToken::new();
    tokio::spawn(sim::serve(listener, simulator.clone(), shutdown.clone()));
    Sim {
        simulator,
        endpoint: format!("http://{addr}/ws/sales"),
        shutdown,
    }
}

/// An ingestor config with topics and transactional id of its own.
fn ingest_config(sim: &Sim, page_size: u32) -> ErpIngestConfig {
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    ErpIngestConfig {
        client: ErpClientConfig {
            endpoint: sim.endpoint.clone(),
            page_size,
            poll_interval_ms: 100,
            retry: RetrySettings {
                max_retries: 3,
                min_delay_ms: 20,
                max_delay_ms: 200,
                max_retry_after_ms: 5_000,
            },
            ..ErpClientConfig::default()
        },
        transactional_id: format!("test-erp-{suffix}"),
        topics: ErpTopics {
            sales: format!("test.erp.{suffix}.sales"),
            dead_letters: format!("test.erp.{suffix}.dead_letters"),
            progress: format!("test.erp.{suffix}.progress"),
        },
        backoff_ms: 50,
        max_backoff_ms: 500,
        permanent_backoff_ms: 200,
        ..ErpIngestConfig::default()
    }
}

async fn open(kafka: &KafkaSettings, config: &ErpIngestConfig) -> ErpIngestor {
    ErpIngestor::open(kafka, config.clone(), ErpMetrics::new().unwrap())
        .await
        .expect("open the erp ingestor")
}

async fn events(kafka: &KafkaSettings, topic: &str) -> Vec<SaleEvent> {
    read_topic(kafka, topic)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            let event: SaleEvent =
                serde_json::from_slice(&r.value.expect("no tombstones")).unwrap();
            assert_eq!(
                r.key.as_deref(),
                Some(event.key().as_str()),
                "key = sale identity"
            );
            event
        })
        .collect()
}

async fn progress(kafka: &KafkaSettings, config: &ErpIngestConfig) -> Option<ErpProgress> {
    read_progress(kafka, &config.topics.progress)
        .await
        .unwrap()
        .get(&cursor_key(&config.client.origin))
        .map(|v| serde_json::from_slice(v).unwrap())
}

fn sequences(events: &[SaleEvent]) -> Vec<i64> {
    events.iter().map(|e| e.version.major).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn paging_publishes_every_change_exactly_once_with_the_cursor() {
    let kafka = require_kafka();
    let sim = start_sim(300).await;
    let config = ingest_config(&sim, 17);
    let ingestor = open(&kafka, &config).await;
    let metrics = ingestor.metrics().clone();
    let started = Instant::now();
    let summary = ingestor
        .run(true, CancellationToken::new())
        .await
        .expect("--once drains the ERP");
    eprintln!("300 changes in 18 pages: {:?}", started.elapsed());
    assert_eq!(summary.pages, 300u64.div_ceil(17));
    assert_eq!(summary.upserts + summary.cancels, 300);
    assert!(summary.cancels > 0, "the seeded log cancels sales");

    let published = events(&kafka, &config.topics.sales).await;
    assert_eq!(sequences(&published), (1..=300).collect::<Vec<_>>());
    let first = &published[0];
    assert_eq!(first.provenance["endpoint"], sim.endpoint.as_str());
    assert_eq!(first.provenance["operation"], "GetSales");
    assert_eq!(first.provenance["cursor"], "");

    let saved = progress(&kafka, &config).await.expect("a cursor was saved");
    assert_eq!(saved.last_sequence, 300);
    assert_eq!(saved.pages, summary.pages);
    assert_eq!(saved.upserts + saved.cancels, 300);
    assert_eq!(metrics.pages_count("erp"), summary.pages);
    assert_eq!(metrics.sequence("erp"), 300);
    assert_eq!(
        metrics.changes_count("erp", "upsert") + metrics.changes_count("erp", "cancel"),
        300
    );

    // Nothing new: a second run publishes nothing and leaves the cursor alone.
    let again = open(&kafka, &config).await;
    assert_eq!(again.cursor(), saved.cursor);
    let summary = again.run(true, CancellationToken::new()).await.unwrap();
    assert_eq!(summary.upserts + summary.cancels, 0);
    assert_eq!(events(&kafka, &config.topics.sales).await.len(), 300);
    assert_eq!(progress(&kafka, &config).await.unwrap().pages, saved.pages);
    assert!(
        read_topic(&kafka, &config.topics.dead_letters)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_mid_paging_neither_skips_nor_repeats_and_fences_the_old_poller() {
    let kafka = require_kafka();
    let sim = start_sim(200).await;
    let config = ingest_config(&sim, 13);
    let mut first = open(&kafka, &config).await;
    for _ in 0..5 {
        assert!(first.poll_once().await.unwrap().has_more);
    }
    let cursor_after_five = first.cursor().to_string();
    assert_eq!(events(&kafka, &config.topics.sales).await.len(), 5 * 13);

    // A new ingestor takes over while the old one is still alive (a zombie after a network
    // partition): it resumes from the cursor in Kafka, and the old one can no longer publish.
    let mut second = open(&kafka, &config).await;
    assert_eq!(second.cursor(), cursor_after_five);
    let zombie = first
        .poll_once()
        .await
        .expect_err("the old poller is fenced");
    assert!(
        matches!(zombie, ErpIngestError::Fenced { .. }) && zombie.is_fatal(),
        "{zombie:?}"
    );
    assert_eq!(first.metrics().errors_count("fenced"), 1);
    // It stays fenced: it does not reconnect and take the id back.
    assert!(first.poll_once().await.unwrap_err().is_fatal());
    assert_eq!(events(&kafka, &config.topics.sales).await.len(), 5 * 13);

    // Two more pages, then the second one goes away too, and a third finishes.
    second.poll_once().await.unwrap();
    second.poll_once().await.unwrap();
    drop(second);
    let third = open(&kafka, &config).await;
    third.run(true, CancellationToken::new()).await.unwrap();
    drop(first);

    let published = events(&kafka, &config.topics.sales).await;
    assert_eq!(sequences(&published), (1..=200).collect::<Vec<_>>());
    let saved = progress(&kafka, &config).await.unwrap();
    assert_eq!(saved.last_sequence, 200);
    assert_eq!(saved.pages, 200u64.div_ceil(13));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancellation_arrives_as_a_delete_after_the_sale() {
    let kafka = require_kafka();
    let sim = start_sim(20).await;
    let config = ingest_config(&sim, 50);
    open(&kafka, &config)
        .await
        .run(true, CancellationToken::new())
        .await
        .unwrap();

    let sold_at: DateTime<Utc> = "2026-08-01T12:00:00Z".parse().unwrap();
    let sale = sim.simulator.upsert(SaleInput {
        sale_id: None,
        salesman_code: "S001".into(),
        city_name: "Campinas".into(),
        city_state: "SP".into(),
        amount: Decimal::new(123_456, 2),
        currency: "BRL".into(),
        sold_at,
    });
    let sale_id = sale.sale_id().to_string();
    let cancel = sim
        .simulator
        .cancel(&sale_id, Some("customer changed their mind".into()))
        .unwrap();
    let summary = open(&kafka, &config)
        .await
        .run(true, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!((summary.upserts, summary.cancels), (1, 1));

    let published = events(&kafka, &config.topics.sales).await;
    let of_sale: Vec<&SaleEvent> = published.iter().filter(|e| e.sale_id == sale_id).collect();
    assert_eq!(of_sale.len(), 2, "{of_sale:?}");
    assert_eq!(of_sale[0].op, SaleOp::Upsert);
    assert_eq!(of_sale[0].amount.as_deref(), Some("1234.56"));
    assert_eq!(of_sale[0].salesman_code.as_deref(), Some("S001"));
    assert_eq!(of_sale[1].op, SaleOp::Delete);
    assert_eq!(of_sale[1].version.major, cancel.sequence);
    assert!(of_sale[1].version > of_sale[0].version);
    assert_eq!(of_sale[1].key(), of_sale[0].key());
    assert_eq!(
        of_sale[1].provenance["cancel_reason"],
        "customer changed their mind"
    );
    assert_eq!(sequences(&published), (1..=22).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_counted_and_nothing_is_published() {
    let kafka = require_kafka();
    let sim = start_sim(30).await;
    let mut config = ingest_config(&sim, 10);
    config.client.password = "not-the-password".into();

    // --once fails on a permanent error.
    let ingestor = open(&kafka, &config).await;
    let metrics = ingestor.metrics().clone();
    let error = ingestor
        .run(true, CancellationToken::new())
        .await
        .expect_err("refused credentials fail --once");
    assert!(
        matches!(error, ErpIngestError::Erp(ErpError::Authentication { .. })),
        "{error:?}"
    );
    assert!(error.to_string().contains("credentials"), "{error}");
    assert_eq!(metrics.errors_count("auth"), 1);

    // The service keeps asking for the same cursor (slowly), and still publishes nothing.
    let ingestor = open(&kafka, &config).await;
    let metrics = ingestor.metrics().clone();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(ingestor.run(false, shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(900)).await;
    shutdown.cancel();
    let summary = running.await.unwrap().expect("the service does not die");
    assert!(summary.failures >= 2, "{summary:?}");
    assert_eq!(metrics.errors_count("auth"), summary.failures);
    assert_eq!(summary.pages, 0);

    assert!(events(&kafka, &config.topics.sales).await.is_empty());
    assert!(progress(&kafka, &config).await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_faults_are_retried_and_nothing_is_lost() {
    let kafka = require_kafka();
    let sim = start_sim(60).await;

    // The client retries inside the call, waiting as long as the fault asks.
    let config = ingest_config(&sim, 25);
    sim.simulator.throttle_next(2, Duration::from_secs(1));
    let ingestor = open(&kafka, &config).await;
    let metrics = ingestor.metrics().clone();
    let started = Instant::now();
    ingestor.run(true, CancellationToken::new()).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "retry-after honoured"
    );
    assert_eq!(metrics.call_retries_count("erp"), 2);
    assert_eq!(metrics.errors_count("throttled"), 0);
    assert_eq!(
        sequences(&events(&kafka, &config.topics.sales).await),
        (1..=60).collect::<Vec<_>>()
    );

    // With no retries left in the client, the ingestor counts the fault and tries again.
    let mut config = ingest_config(&sim, 25);
    config.client.retry.max_retries = 0;
    sim.simulator.throttle_next(2, Duration::from_secs(1));
    let ingestor = open(&kafka, &config).await;
    let metrics = ingestor.metrics().clone();
    let started = Instant::now();
    let summary = ingestor.run(true, CancellationToken::new()).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "retry-after honoured"
    );
    assert_eq!(summary.failures, 2);
    assert_eq!(metrics.errors_count("throttled"), 2);
    assert_eq!(
        sequences(&events(&kafka, &config.topics.sales).await),
        (1..=60).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn records_carry_provenance_headers_and_progress_survives_in_the_compacted_topic() {
    let kafka = require_kafka();
    let sim = start_sim(10).await;
    let config = ingest_config(&sim, 4);
    open(&kafka, &config)
        .await
        .run(true, CancellationToken::new())
        .await
        .unwrap();
    let headers = headers_of_first(&kafka, &config.topics.sales);
    assert_eq!(headers["tributary-source"], "erp");
    assert_eq!(headers["tributary-endpoint"], sim.endpoint);
    assert_eq!(headers["tributary-operation"], "GetSales");
    assert_eq!(headers["tributary-cursor"], "");
    assert_eq!(headers["tributary-sequence"], "1");
    assert!(headers["tributary-request-id"].len() >= 32);
    let progress_records = read_topic(&kafka, &config.topics.progress).await.unwrap();
    assert_eq!(progress_records.len(), 3, "one progress record per page");
}

/// The headers of the first record of `topic` (read committed).
fn headers_of_first(kafka: &KafkaSettings, topic: &str) -> BTreeMap<String, String> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", "erp-ingest-test-headers")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    list.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&list).unwrap();
    let message = consumer
        .poll(Duration::from_secs(30))
        .expect("a record within 30 s")
        .unwrap();
    let headers = message.headers().expect("headers");
    headers
        .iter()
        .map(|h| {
            (
                h.key.to_string(),
                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
            )
        })
        .collect()
}

const BILLION_LAUGHS: &str = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
]>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetSalesResponse xmlns="urn:tributary:erp:sales:v1"><nextCursor>&lol2;</nextCursor><hasMore>false</hasMore></GetSalesResponse></soap:Body></soap:Envelope>"#;

/// The simulator behind a switch: while `hostile` is on, every SOAP call gets an XML bomb.
async fn start_switchable_sim(initial_changes: u32) -> (Sim, Arc<AtomicBool>) {
    use poem::{Endpoint, IntoResponse, Request, Response};
    let config = ErpSimConfig {
        listen: "127.0.0.1:0".into(),
        initial_changes,
        seed: 9,
        ..ErpSimConfig::default()
    };
    let simulator = Simulator::new(config, Arc::new(SystemClock));
    let app = Arc::new(simulator.app());
    let hostile = Arc::new(AtomicBool::new(false));
    let switch = hostile.clone();
    let endpoint = poem::endpoint::make(move |req: Request| {
        let (app, hostile) = (app.clone(), switch.clone());
        async move {
            if hostile.load(Ordering::SeqCst) {
                Ok::<Response, poem::Error>(
                    Response::builder()
                        .content_type("text/xml; charset=utf-8")
                        .body(BILLION_LAUGHS),
                )
            } else {
                app.call(req).await.map(IntoResponse::into_response)
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        poem::Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(endpoint, stop.cancelled_owned(), None)
            .await
    });
    let sim = Sim {
        simulator,
        endpoint: format!("http://{addr}/ws/sales"),
        shutdown,
    };
    (sim, hostile)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_xml_bomb_mid_paging_is_refused_counted_and_the_same_cursor_retried() {
    let kafka = require_kafka();
    let (sim, hostile) = start_switchable_sim(50).await;
    let config = ingest_config(&sim, 10);
    let mut ingestor = open(&kafka, &config).await;
    ingestor.poll_once().await.unwrap();
    ingestor.poll_once().await.unwrap();
    let cursor = ingestor.cursor().to_string();

    // The ERP (or something in between) starts answering with an XML bomb: --once fails, the
    // error is counted under its own label, and nothing of the bad answer lands.
    hostile.store(true, Ordering::SeqCst);
    let metrics = ingestor.metrics().clone();
    let error = ingestor
        .run(true, CancellationToken::new())
        .await
        .expect_err("an unsafe response fails --once");
    assert!(
        matches!(error, ErpIngestError::Erp(ErpError::UnsafeXml(_))),
        "{error:?}"
    );
    assert!(error.stage().starts_with("xml_"), "{}", error.stage());
    assert_eq!(metrics.errors_count(error.stage()), 1);
    assert_eq!(
        sequences(&events(&kafka, &config.topics.sales).await),
        (1..=20).collect::<Vec<_>>()
    );

    // The service neither dies nor skips: it keeps asking for the same cursor...
    let ingestor = open(&kafka, &config).await;
    assert_eq!(ingestor.cursor(), cursor);
    let metrics = ingestor.metrics().clone();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(ingestor.run(false, shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(metrics.errors_count(error.stage()) >= 2);
    assert_eq!(events(&kafka, &config.topics.sales).await.len(), 20);

    // ...and carries on from there once the ERP answers sanely again.
    hostile.store(false, Ordering::SeqCst);
    let drained = async {
        while metrics.sequence("erp") < 50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), drained)
        .await
        .expect("the service resumes within the permanent backoff");
    shutdown.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(
        sequences(&events(&kafka, &config.topics.sales).await),
        (1..=50).collect::<Vec<_>>()
    );
}

/// A `GetSalesResponse` with one good change and one whose amount cannot be read.
const PAGE_WITH_A_BAD_CHANGE: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetSalesResponse xmlns="urn:tributary:erp:sales:v1"><change><sequence>1</sequence><changedAt>2026-07-01T00:00:00Z</changedAt><sale><saleId>ERP-1</saleId><revision>1</revision><salesmanCode>S001</salesmanCode><city><name>Campinas</name><state>SP</state></city><amount>10.50</amount><currency>BRL</currency><soldAt>2026-06-01T10:00:00Z</soldAt></sale></change><change><sequence>2</sequence><changedAt>2026-07-01T00:01:00Z</changedAt><sale><saleId>ERP-2</saleId><revision>1</revision><salesmanCode>S002</salesmanCode><city><name>Campinas</name><state>SP</state></city><amount>12,x</amount><currency>BRL</currency><soldAt>2026-06-01T11:00:00Z</soldAt></sale></change><nextCursor>after-2</nextCursor><hasMore>false</hasMore></GetSalesResponse></soap:Body></soap:Envelope>"#;

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_change_is_dead_lettered_with_the_page() {
    let kafka = require_kafka();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let endpoint = poem::endpoint::make_sync(|_| {
        poem::Response::builder()
            .content_type("text/xml; charset=utf-8")
            .body(PAGE_WITH_A_BAD_CHANGE)
    });
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        poem::Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(endpoint, stop.cancelled_owned(), None)
            .await
    });
    let sim = Sim {
        simulator: Simulator::new(ErpSimConfig::default(), Arc::new(SystemClock)),
        endpoint: format!("http://{addr}/ws/sales"),
        shutdown,
    };
    let config = ingest_config(&sim, 10);
    let ingestor = open(&kafka, &config).await;
    let metrics = ingestor.metrics().clone();
    let summary = ingestor.run(true, CancellationToken::new()).await.unwrap();
    assert_eq!((summary.upserts, summary.rejected), (1, 1));
    assert_eq!(metrics.changes_count("erp", "rejected"), 1);

    let published = events(&kafka, &config.topics.sales).await;
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].sale_id, "ERP-1");
    let dead = read_topic(&kafka, &config.topics.dead_letters)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    let rejected: tributary_common::sale_event::RejectedRecord =
        serde_json::from_slice(dead[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(rejected.error_kind, "bad_amount");
    assert!(rejected.reason.contains("12,x"), "{}", rejected.reason);
    assert!(rejected.raw.contains("ERP-2"), "{}", rejected.raw);
    assert_eq!(rejected.provenance["cursor"], "");
    let saved = progress(&kafka, &config).await.unwrap();
    assert_eq!((saved.cursor.as_str(), saved.rejected), ("after-2", 1));
}
