//! Where records come from: Kafka through rdkafka, or an in-memory log for tests.
//!
//! The lander assigns partitions itself at offsets it read from the lake (no group
//! subscription, no auto commit), so the source only has to list partitions, assign them at
//! given offsets, hand out records and report watermarks.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;
use tributary_common::KafkaSettings;
use tributary_common::telemetry::{TRACEPARENT, TRACESTATE};

use crate::error::LakeError;
use tributary_raw::offsets::{OffsetMap, StartOffset, TopicPartition};

/// One consumed record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// The producer's W3C trace context (`traceparent`, `tracestate` headers), if it sent one
    /// (our ingestors do; Debezium does not).
    pub trace: Option<TraceHeaders>,
}

/// W3C Trace Context carried by a record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TraceHeaders {
    /// `traceparent`.
    pub traceparent: String,
    /// `tracestate`, when present.
    pub tracestate: Option<String>,
}

impl TraceHeaders {
    /// The trace context in Kafka headers, if there is a `traceparent`.
    pub fn from_kafka<H: Headers>(headers: &H) -> Option<Self> {
        let mut traceparent = None;
        let mut tracestate = None;
        for header in headers.iter() {
            let value = header
                .value
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_string);
            match header.key {
                TRACEPARENT => traceparent = value,
                TRACESTATE => tracestate = value,
                _ => {}
            }
        }
        traceparent.map(|traceparent| Self {
            traceparent,
            tracestate,
        })
    }

    /// The trace id of a well-formed `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), lower case;
    /// `None` for a malformed one or the all-zero (invalid) id.
    pub fn trace_id(&self) -> Option<String> {
        let mut parts = self.traceparent.trim().split('-');
        let (_version, trace_id) = (parts.next()?, parts.next()?);
        let valid = trace_id.len() == 32
            && trace_id.bytes().all(|b| b.is_ascii_hexdigit())
            && trace_id.bytes().any(|b| b != b'0');
        valid.then(|| trace_id.to_ascii_lowercase())
    }
}

/// A partitioned log the lander reads.
pub trait Source: Send {
    /// The partitions of `topics` that exist now; a topic that does not exist yet has none.
    fn partitions(
        &self,
        topics: &[String],
    ) -> impl Future<Output = Result<Vec<TopicPartition>, LakeError>> + Send;

    /// Starts reading these partitions at these offsets, keeping those already assigned.
    fn assign(&mut self, starts: &[(TopicPartition, StartOffset)]) -> Result<(), LakeError>;

    /// The next record of any assigned partition. Must be cancel-safe (used in `select!`).
    fn recv(&self) -> impl Future<Output = Result<Record, LakeError>> + Send;

    /// `(low, high)` watermarks of a partition: the first offset still in the log and the offset
    /// the next produced record will get.
    fn watermarks(
        &self,
        tp: &TopicPartition,
    ) -> impl Future<Output = Result<(i64, i64), LakeError>> + Send;

    /// Publishes how far the lander has landed, for lag monitoring only. Best effort.
    fn report_progress(&self, _landed: &OffsetMap) {}

    /// The consumer's own position in a partition, when it knows one. It can be ahead of the
    /// last record handed out: transaction markers take offsets but are never delivered.
    fn position(&self, _tp: &TopicPartition) -> Option<i64> {
        None
    }
}

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Kafka via rdkafka's `StreamConsumer` with manual assignment.
pub struct KafkaSource {
    consumer: Arc<StreamConsumer>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource").finish_non_exhaustive()
    }
}

impl KafkaSource {
    /// A consumer on `kafka.brokers`. `group_id` only receives offsets for lag monitoring.
    pub fn new(kafka: &KafkaSettings, group_id: &str) -> Result<Self, LakeError> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &kafka.brokers)
            .set("group.id", group_id)
            .set("client.id", "tributary-lander")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A stored offset outside the log means records were lost before landing: surface it
            // instead of jumping to the start or the end.
            .set("auto.offset.reset", "error")
            .set("enable.partition.eof", "false")
            .set("isolation.level", "read_committed")
            .create()
            .map_err(|source| LakeError::Kafka {
                action: "create consumer",
                source,
            })?;
        Ok(Self {
            consumer: Arc::new(consumer),
        })
    }
}

impl Source for KafkaSource {
    async fn partitions(&self, topics: &[String]) -> Result<Vec<TopicPartition>, LakeError> {
        let consumer = self.consumer.clone();
        let topics = topics.to_vec();
        // rdkafka's metadata calls block; keep them off the async workers.
        tokio::task::spawn_blocking(move || {
            let metadata = consumer
                .fetch_metadata(None, METADATA_TIMEOUT)
                .map_err(|source| LakeError::Kafka {
                    action: "fetch metadata",
                    source,
                })?;
            Ok(metadata
                .topics()
                .iter()
                .filter(|t| topics.iter().any(|name| name == t.name()) && t.error().is_none())
                .flat_map(|t| {
                    t.partitions()
                        .iter()
                        .map(|p| TopicPartition::new(t.name(), p.id()))
                })
                .collect())
        })
        .await
        .expect("metadata task does not panic")
    }

    fn assign(&mut self, starts: &[(TopicPartition, StartOffset)]) -> Result<(), LakeError> {
        let mut list = TopicPartitionList::new();
        for (tp, start) in starts {
            let offset = match start {
                StartOffset::Beginning => Offset::Beginning,
                StartOffset::At(o) => Offset::Offset(*o),
            };
            list.add_partition_offset(&tp.topic, tp.partition, offset)
                .map_err(|source| LakeError::Kafka {
                    action: "build assignment",
                    source,
                })?;
        }
        self.consumer
            .incremental_assign(&list)
            .map_err(|source| LakeError::Kafka {
                action: "assign partitions",
                source,
            })
    }

    async fn recv(&self) -> Result<Record, LakeError> {
        match self.consumer.recv().await {
            Ok(message) => Ok(Record {
                topic: message.topic().to_string(),
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
                trace: message.headers().and_then(TraceHeaders::from_kafka),
            }),
            Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset)) => {
                Err(LakeError::OffsetOutOfRange {
                    partition: "(see librdkafka log)".into(),
                    detail: "auto.offset.reset=error triggered".into(),
                })
            }
            Err(source) => Err(LakeError::Kafka {
                action: "consume",
                source,
            }),
        }
    }

    async fn watermarks(&self, tp: &TopicPartition) -> Result<(i64, i64), LakeError> {
        let consumer = self.consumer.clone();
        let tp = tp.clone();
        tokio::task::spawn_blocking(move || {
            consumer
                .fetch_watermarks(&tp.topic, tp.partition, METADATA_TIMEOUT)
                .map_err(|source| LakeError::Kafka {
                    action: "fetch watermarks",
                    source,
                })
        })
        .await
        .expect("watermark task does not panic")
    }

    fn position(&self, tp: &TopicPartition) -> Option<i64> {
        let assignment = self.consumer.position().ok()?;
        match assignment.find_partition(&tp.topic, tp.partition)?.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    }

    fn report_progress(&self, landed: &OffsetMap) {
        let mut list = TopicPartitionList::new();
        for (tp, next) in landed.iter() {
            let _ = list.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(next));
        }
        if list.count() == 0 {
            return;
        }
        if let Err(error) = self.consumer.commit(&list, CommitMode::Async) {
            tracing::debug!(%error, "could not publish offsets to the consumer group (monitoring only)");
        }
    }
}

/// An in-memory partitioned log: the test double of [`KafkaSource`]. Clones share the log and
/// the read positions; [`MemorySource::reopen`] shares only the log (a restarted consumer).
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    log: Arc<SharedLog>,
    positions: Arc<Mutex<BTreeMap<TopicPartition, i64>>>,
    /// While set, metadata requests fail as when no broker answers.
    unreachable: Arc<std::sync::atomic::AtomicBool>,
}

type Entry = (Option<Vec<u8>>, Option<Vec<u8>>, Option<TraceHeaders>);

#[derive(Debug, Default)]
struct SharedLog {
    partitions: Mutex<BTreeMap<TopicPartition, Vec<Entry>>>,
    appended: Notify,
}

impl MemorySource {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a record and returns its offset (creating the topic partition if needed).
    pub fn produce(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> i64 {
        self.produce_traced(topic, partition, key, value, None)
    }

    /// [`Self::produce`] with a producer's trace context in the record's headers.
    pub fn produce_traced(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        trace: Option<TraceHeaders>,
    ) -> i64 {
        let offset = {
            let mut partitions = self.log.partitions.lock().expect("memory log lock");
            let log = partitions
                .entry(TopicPartition::new(topic, partition))
                .or_default();
            log.push((key.map(<[u8]>::to_vec), value.map(<[u8]>::to_vec), trace));
            log.len() as i64 - 1
        };
        self.log.appended.notify_waiters();
        offset
    }

    /// Makes this consumer (and its clones, not a reopened one) fail every metadata request
    /// as one that cannot reach a broker does, or answer again.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.unreachable
            .store(unreachable, std::sync::atomic::Ordering::SeqCst);
    }

    /// A new consumer on the same log, with nothing assigned.
    pub fn reopen(&self) -> Self {
        Self {
            log: self.log.clone(),
            positions: Arc::default(),
            unreachable: Arc::default(),
        }
    }

    fn take_next(&self) -> Option<Record> {
        let partitions = self.log.partitions.lock().expect("memory log lock");
        let mut positions = self.positions.lock().expect("memory positions lock");
        for (tp, position) in positions.iter_mut() {
            let Some(log) = partitions.get(tp) else {
                continue;
            };
            if let Some((key, value, trace)) = log.get(*position as usize) {
                let record = Record {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset: *position,
                    key: key.clone(),
                    value: value.clone(),
                    trace: trace.clone(),
                };
                *position += 1;
                return Some(record);
            }
        }
        None
    }
}

impl Source for MemorySource {
    async fn partitions(&self, topics: &[String]) -> Result<Vec<TopicPartition>, LakeError> {
        if self.unreachable.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(LakeError::Kafka {
                action: "fetch metadata",
                source: KafkaError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure),
            });
        }
        let partitions = self.log.partitions.lock().expect("memory log lock");
        Ok(partitions
            .keys()
            .filter(|tp| topics.contains(&tp.topic))
            .cloned()
            .collect())
    }

    fn assign(&mut self, starts: &[(TopicPartition, StartOffset)]) -> Result<(), LakeError> {
        let mut positions = self.positions.lock().expect("memory positions lock");
        for (tp, start) in starts {
            let at = match start {
                StartOffset::Beginning => 0,
                StartOffset::At(o) => *o,
            };
            positions.insert(tp.clone(), at);
        }
        Ok(())
    }

    async fn recv(&self) -> Result<Record, LakeError> {
        loop {
            let appended = self.log.appended.notified();
            tokio::pin!(appended);
            // Register before looking, so a record produced in between still wakes us.
            appended.as_mut().enable();
            if let Some(record) = self.take_next() {
                return Ok(record);
            }
            appended.await;
        }
    }

    async fn watermarks(&self, tp: &TopicPartition) -> Result<(i64, i64), LakeError> {
        let partitions = self.log.partitions.lock().expect("memory log lock");
        Ok((0, partitions.get(tp).map_or(0, |l| l.len() as i64)))
    }
}

#[cfg(test)]
mod tests {
    use super::TraceHeaders;

    fn trace_id(traceparent: &str) -> Option<String> {
        TraceHeaders {
            traceparent: traceparent.into(),
            tracestate: None,
        }
        .trace_id()
    }

    #[test]
    fn trace_id_comes_from_a_well_formed_traceparent_only() {
        assert_eq!(
            trace_id("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            trace_id("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id("00-4bf92f35-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id("garbage"), None);
        assert_eq!(trace_id(""), None);
    }
}
