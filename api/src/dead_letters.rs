//! Dead letters: the records the ingestors or the lander rejected, read from the Iceberg table
//! `raw.dead_letters` (the lake is the only place that keeps them; the marts never read them).
//!
//! Each row says its Kafka topic; the topic says the source (`pg` for Debezium's topics,
//! `files`, `erp`) through the same topic settings the lander uses (`TRIBUTARY_TOPICS__…`),
//! so a renamed topic is still attributed. `kind` is the row's `error_kind` (`bad_amount`,
//! `undecodable`, …). Filtering, ordering and counting are pure functions over the rows; a
//! request reads the table's current snapshot whole, which suits a table that only grows by
//! rejected records (a busy one would want a summary table; see the README).

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType};
use chrono::{DateTime, Utc};
use tributary_raw::schema::{RawTable, col};
use tributary_raw::topics::TopicsConfig;

/// The source of a topic nobody configured (an old topic name, another pipeline's).
pub const UNKNOWN_SOURCE: &str = "unknown";

/// One rejected record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// `pg`, `files`, `erp` or [`UNKNOWN_SOURCE`].
    pub source: String,
    /// Class of the failure (`error_kind`).
    pub kind: String,
    /// Why it was rejected, for a human.
    pub reason: String,
    /// Kafka topic it was read from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Record key (see `key_encoding`).
    pub key: Option<String>,
    /// `utf8` or `base64`.
    pub key_encoding: Option<String>,
    /// Record value: the rejected row or message, whole (see `value_encoding`).
    pub value: Option<String>,
    /// `utf8` or `base64`.
    pub value_encoding: Option<String>,
    /// When the lander read it.
    pub ingested_at: DateTime<Utc>,
}

/// Which source each topic belongs to, from the lander's topic settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSources(BTreeMap<String, &'static str>);

impl TopicSources {
    /// The sources of the topics in `topics` (data topics and the ingestors' reject topics).
    pub fn new(topics: &TopicsConfig) -> Self {
        Self(
            topics
                .routes()
                .into_iter()
                .map(|(topic, route)| (topic, source_of(route.data_table())))
                .collect(),
        )
    }

    /// The source of `topic`, [`UNKNOWN_SOURCE`] for a topic not configured.
    pub fn source(&self, topic: &str) -> &'static str {
        self.0.get(topic).copied().unwrap_or(UNKNOWN_SOURCE)
    }
}

impl Default for TopicSources {
    fn default() -> Self {
        Self::new(&TopicsConfig::default())
    }
}

/// The source a raw data table is fed by, named as the publications name sources.
fn source_of(table: RawTable) -> &'static str {
    match table {
        RawTable::PgSale | RawTable::PgSalesman | RawTable::PgCity => "pg",
        RawTable::FileSale => "files",
        RawTable::ErpSale => "erp",
        RawTable::DeadLetters => UNKNOWN_SOURCE,
    }
}

/// The rows of `batches` (of `raw.dead_letters`), attributed to their sources. A batch
/// without an expected column is an error naming it.
pub fn from_batches(
    batches: &[RecordBatch],
    sources: &TopicSources,
) -> Result<Vec<DeadLetter>, String> {
    let mut out = Vec::new();
    for batch in batches {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| format!("raw.dead_letters has no column {name}"))
        };
        let text = |name: &str| -> Result<_, String> {
            column(name)?
                .as_string_opt::<i32>()
                .ok_or_else(|| format!("raw.dead_letters.{name} is not text"))
        };
        let topics = text(col::KAFKA_TOPIC)?;
        let partitions = column(col::KAFKA_PARTITION)?
            .as_primitive_opt::<Int32Type>()
            .ok_or("raw.dead_letters.kafka_partition is not an int")?;
        let offsets = column(col::KAFKA_OFFSET)?
            .as_primitive_opt::<Int64Type>()
            .ok_or("raw.dead_letters.kafka_offset is not a long")?;
        let keys = text(col::KAFKA_KEY)?;
        let key_encodings = text(col::KAFKA_KEY_ENCODING)?;
        let values = text(col::KAFKA_VALUE)?;
        let value_encodings = text(col::KAFKA_VALUE_ENCODING)?;
        let reasons = text(col::REASON)?;
        let kinds = text(col::ERROR_KIND)?;
        let times = column(col::INGEST_TIME)?
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or("raw.dead_letters.ingest_time is not a timestamp")?;
        let opt = |array: &arrow::array::StringArray, row: usize| {
            (!array.is_null(row)).then(|| array.value(row).to_string())
        };
        for row in 0..batch.num_rows() {
            let topic = topics.value(row).to_string();
            out.push(DeadLetter {
                source: sources.source(&topic).to_string(),
                kind: kinds.value(row).to_string(),
                reason: reasons.value(row).to_string(),
                partition: partitions.value(row),
                offset: offsets.value(row),
                key: opt(keys, row),
                key_encoding: opt(key_encodings, row),
                value: opt(values, row),
                value_encoding: opt(value_encodings, row),
                ingested_at: DateTime::from_timestamp_micros(times.value(row)).unwrap_or_default(),
                topic,
            });
        }
    }
    Ok(out)
}

/// What `GET /v1/dead-letters` selects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this source.
    pub source: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
}

impl Filter {
    fn keeps(&self, d: &DeadLetter) -> bool {
        self.source.as_deref().is_none_or(|s| s == d.source)
            && self.kind.as_deref().is_none_or(|k| k == d.kind)
    }
}

/// The dead letters `filter` keeps, newest first (by ingest time, then topic, partition and
/// offset descending, so the order is total and stable across requests), one page of them,
/// and how many `filter` keeps in all.
pub fn select(
    mut letters: Vec<DeadLetter>,
    filter: &Filter,
    limit: u32,
    offset: u64,
) -> (Vec<DeadLetter>, u64) {
    letters.retain(|d| filter.keeps(d));
    letters.sort_by(|a, b| {
        b.ingested_at
            .cmp(&a.ingested_at)
            .then_with(|| b.topic.cmp(&a.topic))
            .then_with(|| b.partition.cmp(&a.partition))
            .then_with(|| b.offset.cmp(&a.offset))
    });
    let total = letters.len() as u64;
    let page = letters
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(limit as usize)
        .collect();
    (page, total)
}

/// Dead letters of one source and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    /// The source.
    pub source: String,
    /// The kind.
    pub kind: String,
    /// How many.
    pub count: u64,
    /// When the newest of them was landed.
    pub newest_at: DateTime<Utc>,
}

/// Counts per (source, kind), ordered by source then kind.
pub fn counts(letters: &[DeadLetter]) -> Vec<Count> {
    let mut by_key: BTreeMap<(&str, &str), (u64, DateTime<Utc>)> = BTreeMap::new();
    for d in letters {
        let entry = by_key
            .entry((&d.source, &d.kind))
            .or_insert((0, d.ingested_at));
        entry.0 += 1;
        entry.1 = entry.1.max(d.ingested_at);
    }
    by_key
        .into_iter()
        .map(|((source, kind), (count, newest_at))| Count {
            source: source.to_string(),
            kind: kind.to_string(),
            count,
            newest_at,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(topic: &str, offset: i64, kind: &str, second: i64) -> DeadLetter {
        let sources = TopicSources::default();
        DeadLetter {
            source: sources.source(topic).to_string(),
            kind: kind.into(),
            reason: format!("reason {offset}"),
            topic: topic.into(),
            partition: 0,
            offset,
            key: None,
            key_encoding: None,
            value: Some("x".into()),
            value_encoding: Some("utf8".into()),
            ingested_at: DateTime::from_timestamp(1_700_000_000 + second, 0).unwrap(),
        }
    }

    #[test]
    fn topics_name_their_sources() {
        let sources = TopicSources::default();
        assert_eq!(sources.source("salesdb.public.sale"), "pg");
        assert_eq!(sources.source("salesdb.public.city"), "pg");
        assert_eq!(sources.source("raw.files.dead_letters"), "files");
        assert_eq!(sources.source("raw.files.sales"), "files");
        assert_eq!(sources.source("raw.ws.dead_letters"), "erp");
        assert_eq!(sources.source("elsewhere"), UNKNOWN_SOURCE);
        let renamed = TopicSources::new(&TopicsConfig {
            file_dead_letters: "e2e.x.files.dead".into(),
            ..TopicsConfig::default()
        });
        assert_eq!(renamed.source("e2e.x.files.dead"), "files");
    }

    #[test]
    fn selection_filters_then_pages_newest_first() {
        let letters = vec![
            letter("raw.files.dead_letters", 1, "bad_amount", 10),
            letter("raw.files.dead_letters", 2, "bad_date", 30),
            letter("raw.ws.dead_letters", 7, "bad_amount", 20),
            letter("salesdb.public.sale", 3, "undecodable", 20),
        ];
        let (all, total) = select(letters.clone(), &Filter::default(), 10, 0);
        assert_eq!(total, 4);
        let offsets: Vec<i64> = all.iter().map(|d| d.offset).collect();
        // Two at second 20: the topic decides (descending), so the order never flips.
        assert_eq!(offsets, [2, 3, 7, 1]);

        let files = Filter {
            source: Some("files".into()),
            kind: None,
        };
        let (page, total) = select(letters.clone(), &files, 1, 1);
        assert_eq!(total, 2);
        assert_eq!(page[0].offset, 1);

        let amounts = Filter {
            source: None,
            kind: Some("bad_amount".into()),
        };
        let (page, total) = select(letters.clone(), &amounts, 10, 0);
        assert_eq!(total, 2);
        assert_eq!(page[0].source, "erp");
        let (page, total) = select(letters, &amounts, 10, 5);
        assert_eq!((page.len(), total), (0, 2));
    }

    #[test]
    fn counts_per_source_and_kind() {
        let letters = vec![
            letter("raw.files.dead_letters", 1, "bad_amount", 10),
            letter("raw.files.dead_letters", 2, "bad_amount", 30),
            letter("raw.files.dead_letters", 4, "bad_date", 5),
            letter("raw.ws.dead_letters", 7, "bad_amount", 20),
        ];
        let counts = counts(&letters);
        let flat: Vec<(&str, &str, u64, i64)> = counts
            .iter()
            .map(|c| {
                (
                    c.source.as_str(),
                    c.kind.as_str(),
                    c.count,
                    c.newest_at.timestamp() - 1_700_000_000,
                )
            })
            .collect();
        assert_eq!(
            flat,
            [
                ("erp", "bad_amount", 1, 20),
                ("files", "bad_amount", 2, 30),
                ("files", "bad_date", 1, 5),
            ]
        );
    }
}
