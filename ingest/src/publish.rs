//! Publishing to Kafka exactly once: a batch of events *and* the ingestor's progress go out in
//! one Kafka transaction, so after a crash the progress says exactly what reached Kafka.
//!
//! The progress lives in a compacted topic (one key per file, or one per ERP cursor) that the
//! ingestor reads back at start with `read_committed`. Readers of the event topics (the lander)
//! also read `read_committed`, so an aborted or unfinished batch is never seen by anyone. The
//! transactional id fences a zombie: a second ingestor with the same id makes the first one's
//! next commit fail instead of interleaving.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tracing::Instrument;
use tributary_common::KafkaSettings;

/// Time allowed for transaction control calls (init, commit, abort) and metadata.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the broker lets one of our transactions stay open before it aborts it and bumps the
/// producer's epoch (`transaction.timeout.ms`). A transaction can outlive it only when the broker
/// was away (an outage longer than this): the next call then fails as if fenced.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The action of a transaction that failed because the broker timed it out: not a second
/// producer, so reconnecting (a new epoch) and sending the batch again is right.
const TIMED_OUT_BY_BROKER: &str = "transaction open longer than transaction.timeout.ms (the broker, back from an outage, aborted it)";

/// A Kafka call failed.
#[derive(Debug, thiserror::Error)]
#[error("kafka: {action}: {source}")]
pub struct PublishError {
    /// What we were doing.
    pub action: &'static str,
    /// librdkafka's error.
    #[source]
    pub source: KafkaError,
}

impl PublishError {
    fn new(action: &'static str) -> impl FnOnce(KafkaError) -> Self {
        move |source| Self { action, source }
    }

    /// Whether retrying the same batch may succeed (broker unavailable, timeouts). A fenced
    /// producer, an invalid config or a record larger than Kafka takes is permanent: the same
    /// batch would fail the same way forever. A transaction the broker timed out during an
    /// outage looks fenced to librdkafka but is not: a new producer may send it again.
    pub fn is_retryable(&self) -> bool {
        if self.action == TIMED_OUT_BY_BROKER {
            return true;
        }
        // Transaction errors too: retriable and abortable ones succeed in a new transaction,
        // fatal ones other than fencing (a producer the broker left in an invalid state across an
        // outage: INVALID_TXN_STATE) with a new producer, which callers make after any failure.
        !matches!(
            self.source.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::Fenced
                    | RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::MessageSizeTooLarge
                    | RDKafkaErrorCode::MessageBatchTooLarge
            )
        )
    }
}

/// One record to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    /// Topic.
    pub topic: String,
    /// Key (the sale identity for sale events).
    pub key: String,
    /// Value bytes; `None` is a tombstone (used to forget a progress key).
    pub value: Option<Vec<u8>>,
    /// Headers (provenance), UTF-8 values.
    pub headers: Vec<(String, String)>,
}

/// A topic the ingestor needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Name.
    pub name: String,
    /// Partitions when created (an existing topic is left as it is).
    pub partitions: i32,
    /// `cleanup.policy=compact` (progress topics) instead of delete.
    pub compacted: bool,
}

/// The span of one published batch (one Kafka transaction), named and attributed by the
/// OpenTelemetry messaging conventions. `messaging.destination.name` is the topic most events go
/// to (events carry provenance headers; the progress records riding along carry none);
/// `tributary.kafka.topics` lists all.
fn batch_span(records: &[OutRecord]) -> tracing::Span {
    let topics = batch_topics(records);
    let destination = topics.first().map_or("", |(topic, _)| topic.as_str());
    let all: Vec<&str> = topics.iter().map(|(topic, _)| topic.as_str()).collect();
    tracing::info_span!(
        "kafka batch",
        otel.name = %format!("send {destination}"),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        messaging.system = "kafka",
        messaging.operation.type = "send",
        messaging.operation.name = "send",
        messaging.destination.name = %destination,
        messaging.batch.message_count = records.len() as i64,
        tributary.kafka.topics = %all.join(","),
    )
}

/// Topics of a batch with their record counts: most events (records with headers) first, then
/// most records, then by name.
fn batch_topics(records: &[OutRecord]) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for record in records {
        let (events, all) = counts.entry(record.topic.as_str()).or_default();
        *events += usize::from(!record.headers.is_empty());
        *all += 1;
    }
    let mut topics: Vec<(&str, (usize, usize))> = counts.into_iter().collect();
    topics.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    topics
        .into_iter()
        .map(|(topic, (_, all))| (topic.to_string(), all))
        .collect()
}

/// Creates the topics that do not exist yet. Existing ones are left alone.
pub async fn ensure_topics(
    kafka: &KafkaSettings,
    topics: &[TopicSpec],
) -> Result<(), PublishError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .create()
        .map_err(PublishError::new("create admin client"))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let topic = NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(1));
            if t.compacted {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(CONTROL_TIMEOUT)),
        )
        .await
        .map_err(PublishError::new("create topics"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(PublishError {
                    action: "create topic",
                    source: KafkaError::AdminOp(code),
                });
            }
        }
    }
    Ok(())
}

/// A librdkafka client destroyed on a thread of its own when dropped. Dropping the last handle of
/// a producer purges its queue, flushes for up to 500 ms and joins librdkafka's threads
/// (`rd_kafka_destroy`), which is known to hang now and then while a broker is away
/// (confluentinc/librdkafka#1640, #3470). The ingestors drop their producer after every failed
/// publish, typically during a Kafka outage: on an async worker that would stall the ingestor's
/// loop with it (its `/readyz` still answering), so the drop is nobody's wait.
struct OffThreadDrop<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> std::ops::Deref for OffThreadDrop<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.0.as_ref().expect("present until dropped")
    }
}

impl<T: Send + 'static> Drop for OffThreadDrop<T> {
    fn drop(&mut self) {
        let Some(client) = self.0.take() else { return };
        let destroyed = std::thread::Builder::new()
            .name("kafka-client-drop".into())
            .spawn(move || {
                tracing::info!("destroying a Kafka client on a thread of its own");
                let started = Instant::now();
                drop(client);
                let took = started.elapsed();
                if took > Duration::from_secs(5) {
                    tracing::warn!(?took, "destroying a Kafka client took long");
                } else {
                    tracing::info!(?took, "Kafka client destroyed");
                }
            });
        if let Err(error) = destroyed {
            tracing::warn!(%error, "no thread to destroy a Kafka client on; it is leaked");
        }
    }
}

/// A transactional producer: `acks=all`, idempotent, one transaction per [`publish`](Self::publish).
pub struct TxPublisher {
    producer: OffThreadDrop<Arc<FutureProducer>>,
    /// Set when a transaction failed fenced after being open longer than
    /// [`TRANSACTION_TIMEOUT`]: the broker's own timeout fenced it, not another producer.
    timed_out_by_broker: AtomicBool,
}

impl std::fmt::Debug for TxPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxPublisher").finish_non_exhaustive()
    }
}

impl TxPublisher {
    /// Connects and initialises transactions for `transactional_id`, fencing any earlier
    /// producer with the same id (its open transaction is aborted by the broker).
    pub async fn connect(
        kafka: &KafkaSettings,
        transactional_id: &str,
    ) -> Result<Self, PublishError> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &kafka.brokers)
            .set("client.id", transactional_id)
            .set("transactional.id", transactional_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "20")
            .set(
                "transaction.timeout.ms",
                TRANSACTION_TIMEOUT.as_millis().to_string(),
            )
            .create()
            .map_err(PublishError::new("create producer"))?;
        let producer = OffThreadDrop(Some(Arc::new(producer)));
        let init = Arc::clone(&producer);
        tokio::task::spawn_blocking(move || init.init_transactions(CONTROL_TIMEOUT))
            .await
            .expect("init_transactions does not panic")
            .map_err(PublishError::new("init transactions"))?;
        Ok(Self {
            producer,
            timed_out_by_broker: AtomicBool::new(false),
        })
    }

    /// Publishes `records` in one transaction: all of them become visible to `read_committed`
    /// readers, or none does. On failure the transaction is aborted (best effort) and the
    /// caller may retry the same batch.
    ///
    /// The transaction is one span (`send <topic>`, messaging semantic conventions) whose W3C
    /// `traceparent`/`tracestate` go into every record's headers, so the lander can continue
    /// the trace.
    pub async fn publish(&self, records: &[OutRecord]) -> Result<(), PublishError> {
        let span = batch_span(records);
        let began = Instant::now();
        let mut result = self
            .publish_in_transaction(records)
            .instrument(span.clone())
            .await;
        if let Err(error) = &mut result
            && self.fatally_fenced()
            && outlived_the_broker_timeout(began.elapsed())
        {
            tracing::warn!(%error, open_for = ?began.elapsed(), "the broker timed the transaction out (it was away); reconnecting, not fenced");
            self.timed_out_by_broker.store(true, Ordering::Relaxed);
            error.action = TIMED_OUT_BY_BROKER;
        }
        if let Err(error) = &result {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", error.action);
        }
        result
    }

    async fn publish_in_transaction(&self, records: &[OutRecord]) -> Result<(), PublishError> {
        self.producer
            .begin_transaction()
            .map_err(PublishError::new("begin transaction"))?;
        match self.send_all(records).await {
            Ok(()) => {
                tributary_common::failpoint::crash_point(
                    tributary_common::failpoint::INGEST_IN_TRANSACTION,
                );
                let producer = self.producer.clone();
                let committed = tokio::task::spawn_blocking(move || {
                    producer.commit_transaction(CONTROL_TIMEOUT)
                })
                .await
                .expect("commit_transaction does not panic");
                if let Err(source) = committed {
                    self.abort().await;
                    return Err(PublishError {
                        action: "commit transaction",
                        source,
                    });
                }
                Ok(())
            }
            Err(error) => {
                self.abort().await;
                Err(error)
            }
        }
    }

    /// Whether another producer with the same transactional id took over (librdkafka reports
    /// it as a fatal error once a transaction fails). A fenced publisher can never publish
    /// again, and must not reconnect either: that would fence the ingestor that replaced it.
    pub fn is_fenced(&self) -> bool {
        self.fatally_fenced() && !self.timed_out_by_broker.load(Ordering::Relaxed)
    }

    /// librdkafka's fatal "fenced": another producer with our id, or the broker's transaction
    /// timeout (see [`is_fenced`](Self::is_fenced)).
    fn fatally_fenced(&self) -> bool {
        matches!(
            self.producer.client().fatal_error(),
            Some((
                RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced,
                _
            ))
        )
    }

    async fn send_all(&self, records: &[OutRecord]) -> Result<(), PublishError> {
        let mut deliveries = Vec::with_capacity(records.len());
        // The batch span's context: the same `traceparent` on every record of the transaction.
        let trace_headers = tributary_common::telemetry::current_trace_headers();
        for record in records {
            let mut headers =
                OwnedHeaders::new_with_capacity(record.headers.len() + trace_headers.len());
            for (key, value) in record.headers.iter().chain(&trace_headers) {
                headers = headers.insert(Header {
                    key,
                    value: Some(value.as_bytes()),
                });
            }
            let mut out = FutureRecord::to(&record.topic)
                .key(record.key.as_bytes())
                .headers(headers);
            if let Some(value) = &record.value {
                out = out.payload(value);
            }
            // `send_result` queues without waiting; a full queue is retried after a short wait.
            let mut pending = out;
            loop {
                match self.producer.send_result(pending) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        pending = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((source, _)) => {
                        return Err(PublishError {
                            action: "queue record",
                            source,
                        });
                    }
                }
            }
        }
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((source, _))) => {
                    return Err(PublishError {
                        action: "deliver record",
                        source,
                    });
                }
                Err(_canceled) => {
                    return Err(PublishError {
                        action: "deliver record",
                        source: KafkaError::Canceled,
                    });
                }
            }
        }
        Ok(())
    }

    async fn abort(&self) {
        let producer = self.producer.clone();
        let aborted =
            tokio::task::spawn_blocking(move || producer.abort_transaction(CONTROL_TIMEOUT))
                .await
                .expect("abort_transaction does not panic");
        if let Err(error) = aborted {
            tracing::warn!(%error, "could not abort the transaction (the broker aborts it on timeout)");
        }
    }
}

/// Whether a transaction open for `open_for` may have been aborted by the broker's timeout
/// rather than by another producer: a fence after that long is the broker's.
fn outlived_the_broker_timeout(open_for: Duration) -> bool {
    open_for >= TRANSACTION_TIMEOUT
}

/// Reads a compacted progress topic from the beginning to its end (`read_committed`), last
/// value per key wins, a tombstone removes the key. A topic that does not exist yet is empty.
pub async fn read_progress(
    kafka: &KafkaSettings,
    topic: &str,
) -> Result<BTreeMap<String, Vec<u8>>, PublishError> {
    let mut progress = BTreeMap::new();
    for record in read_topic(kafka, topic).await? {
        let Some(key) = record.key else { continue };
        match record.value {
            Some(value) => progress.insert(key, value),
            None => progress.remove(&key),
        };
    }
    Ok(progress)
}

/// librdkafka reports reaching the end of a partition as an error through the client context;
/// for a reader that asks for it (`enable.partition.eof`) it is the expected way to stop.
struct QuietEof;

impl rdkafka::ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !eof {
            tracing::error!(%error, reason, "librdkafka error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for QuietEof {}

/// A record read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key, as text.
    pub key: Option<String>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
}

/// Every committed record of `topic`, from the beginning to the end as of now
/// (`read_committed`: aborted transactions are skipped). Loads them all into memory: for
/// progress topics, tests and tools, not for event streams in production.
pub async fn read_topic(
    kafka: &KafkaSettings,
    topic: &str,
) -> Result<Vec<ReadRecord>, PublishError> {
    let kafka = kafka.clone();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || read_topic_blocking(&kafka, &topic))
        .await
        .expect("topic reader does not panic")
}

fn read_topic_blocking(
    kafka: &KafkaSettings,
    topic: &str,
) -> Result<Vec<ReadRecord>, PublishError> {
    let consumer: BaseConsumer<QuietEof> = ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", "tributary-progress-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        // EOF is reported at the last stable offset, after any transaction markers.
        .set("enable.partition.eof", "true")
        .create_with_context(QuietEof)
        .map_err(PublishError::new("create topic reader"))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), CONTROL_TIMEOUT)
        .map_err(PublishError::new("fetch topic metadata"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut records = Vec::new();
    if partitions.is_empty() {
        return Ok(records);
    }
    let mut list = TopicPartitionList::new();
    let mut pending = std::collections::BTreeSet::new();
    for p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, *p, CONTROL_TIMEOUT)
            .map_err(PublishError::new("fetch watermarks"))?;
        if high > low {
            pending.insert(*p);
        }
        list.add_partition_offset(topic, *p, Offset::Beginning)
            .map_err(PublishError::new("assign partition"))?;
    }
    consumer
        .assign(&list)
        .map_err(PublishError::new("assign partitions"))?;
    while !pending.is_empty() {
        match consumer.poll(CONTROL_TIMEOUT) {
            None => {
                return Err(PublishError {
                    action: "read topic (no end of partition within the timeout)",
                    source: KafkaError::NoMessageReceived,
                });
            }
            Some(Ok(message)) => records.push(ReadRecord {
                partition: message.partition(),
                offset: message.offset(),
                key: message
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned()),
                value: message.payload().map(<[u8]>::to_vec),
            }),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
            }
            Some(Err(source)) => {
                return Err(PublishError {
                    action: "read topic",
                    source,
                });
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_records_and_fencing_are_permanent_timeouts_are_not() {
        let error = |code| PublishError {
            action: "produce",
            source: KafkaError::MessageProduction(code),
        };
        assert!(!error(RDKafkaErrorCode::MessageSizeTooLarge).is_retryable());
        assert!(!error(RDKafkaErrorCode::ProducerFenced).is_retryable());
        assert!(error(RDKafkaErrorCode::MessageTimedOut).is_retryable());
        assert!(error(RDKafkaErrorCode::BrokerTransportFailure).is_retryable());
        let timed_out = PublishError {
            action: TIMED_OUT_BY_BROKER,
            source: KafkaError::MessageProduction(RDKafkaErrorCode::Fenced),
        };
        assert!(
            timed_out.is_retryable(),
            "a broker timeout is not a second producer"
        );
        assert!(!outlived_the_broker_timeout(Duration::from_secs(5)));
        assert!(outlived_the_broker_timeout(TRANSACTION_TIMEOUT));
    }

    fn record(topic: &str) -> OutRecord {
        OutRecord {
            topic: topic.into(),
            key: "k".into(),
            value: Some(b"v".to_vec()),
            headers: vec![("tributary-source".into(), "files".into())],
        }
    }

    fn progress(topic: &str) -> OutRecord {
        OutRecord {
            headers: Vec::new(),
            ..record(topic)
        }
    }

    #[test]
    fn the_batch_destination_is_the_topic_most_events_go_to() {
        let batch = [
            progress("raw.files.progress"),
            progress("raw.files.progress"),
            progress("raw.files.progress"),
            record("raw.files.sales"),
            record("raw.files.dead_letters"),
            record("raw.files.sales"),
        ];
        let topics = batch_topics(&batch);
        assert_eq!(topics[0], ("raw.files.sales".to_string(), 2));
        assert_eq!(topics.len(), 3);
        assert!(batch_topics(&[]).is_empty());
    }
}
