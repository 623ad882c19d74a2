//! What Kafka holds, to check the lake against it offset by offset: every record a topic's
//! readers may see lands exactly once (as a raw row or a dead letter), nothing else does.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tributary_raw::schema::col;

const BROKERS: &str = "127.0.0.1:9092";

/// Kafka's [low, high) watermarks of every partition of `topic`.
pub fn watermarks(topic: &str) -> Result<BTreeMap<i32, (i64, i64)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", BROKERS)
        .set("group.id", "tributary-e2e-watermarks")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata
        .topics()
        .first()
        .context("topic metadata missing")?
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect::<Vec<_>>();
    partitions
        .into_iter()
        .map(|p| {
            Ok((
                p,
                consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?,
            ))
        })
        .collect()
}

/// The (partition, offset) of every record a `read_committed` reader of `topic` sees, up to its
/// high watermarks now: every record of a topic written without transactions; of a
/// transactional one the committed records, not the aborted ones (a producer killed mid
/// transaction) nor the transaction markers. This is what the lander must land.
pub fn committed_offsets(topic: &str) -> Result<BTreeSet<(i32, i64)>> {
    let marks = watermarks(topic)?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", BROKERS)
        .set(
            "group.id",
            format!("tributary-e2e-committed-{}", crate::unique_suffix()),
        )
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for p in marks.keys() {
        assignment.add_partition_offset(topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut offsets = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match consumer.poll(Duration::from_millis(300)) {
            Some(message) => {
                let message = message?;
                offsets.insert((message.partition(), message.offset()));
            }
            None => {
                let positions = consumer.position()?;
                let done = marks.iter().all(|(p, (low, high))| {
                    low == high
                        || positions.find_partition(topic, *p).is_some_and(
                            |tp| matches!(tp.offset(), Offset::Offset(o) if o >= *high),
                        )
                });
                if done {
                    return Ok(offsets);
                }
                if Instant::now() > deadline {
                    bail!(
                        "reading {topic} read_committed did not reach its high watermarks {marks:?} in 60 s (an open transaction?): at {positions:?}"
                    );
                }
            }
        }
    }
}

/// Adds every (partition, offset) of `topic` that `batches` (raw rows or dead letters) hold to
/// `counts`, counting how many times each appears.
pub fn offsets_in(batches: &[RecordBatch], topic: &str, counts: &mut BTreeMap<(i32, i64), u32>) {
    for batch in batches {
        let topics = batch
            .column_by_name(col::KAFKA_TOPIC)
            .expect("kafka_topic")
            .as_string::<i32>();
        let partitions = batch
            .column_by_name(col::KAFKA_PARTITION)
            .expect("kafka_partition")
            .as_primitive::<Int32Type>();
        let offsets = batch
            .column_by_name(col::KAFKA_OFFSET)
            .expect("kafka_offset")
            .as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            if topics.value(row) == topic {
                *counts
                    .entry((partitions.value(row), offsets.value(row)))
                    .or_default() += 1;
            }
        }
    }
}

/// How `landed` (offset → times landed) compares with `expected`: offsets landed more than
/// once, offsets never landed, offsets landed that no reader sees (first ten of each).
pub fn exactly_once_diff(
    expected: &BTreeSet<(i32, i64)>,
    landed: &BTreeMap<(i32, i64), u32>,
) -> Option<String> {
    let duplicates: Vec<_> = landed.iter().filter(|(_, n)| **n > 1).take(10).collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|o| !landed.contains_key(o))
        .take(10)
        .collect();
    let stray: Vec<_> = landed
        .keys()
        .filter(|o| !expected.contains(o))
        .take(10)
        .collect();
    (!(duplicates.is_empty() && missing.is_empty() && stray.is_empty())).then(|| {
        format!(
            "landed more than once: {duplicates:?}; never landed: {missing:?}; landed but not committed in Kafka: {stray:?}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_once_names_duplicates_gaps_and_strays() {
        let expected: BTreeSet<(i32, i64)> = [(0, 0), (0, 1), (0, 3)].into();
        let once: BTreeMap<(i32, i64), u32> = expected.iter().map(|o| (*o, 1)).collect();
        assert_eq!(exactly_once_diff(&expected, &once), None);

        let mut twice = once.clone();
        twice.insert((0, 1), 2);
        assert!(
            exactly_once_diff(&expected, &twice)
                .unwrap()
                .contains("more than once: [((0, 1), 2)]")
        );

        let mut gap = once.clone();
        gap.remove(&(0, 3));
        assert!(
            exactly_once_diff(&expected, &gap)
                .unwrap()
                .contains("never landed: [(0, 3)]")
        );

        // Offset 2 is an aborted record or a transaction marker: nothing may land there.
        let mut stray = once;
        stray.insert((0, 2), 1);
        assert!(
            exactly_once_diff(&expected, &stray)
                .unwrap()
                .contains("not committed in Kafka: [(0, 2)]")
        );
    }
}
