//! Kafka offsets stored in Iceberg snapshot summaries, and the rules that make landing
//! exactly-once.
//!
//! Every commit to a raw table stores the table's **full** offset map in the snapshot summary
//! property [`OFFSETS_PROPERTY`]: JSON `{"topic/partition": next_offset_to_consume}`. A summary
//! only holds the properties of its own commit, so a partial map would lose partitions.
//!
//! The rules (see `ARCHITECTURE.md` and the crate README):
//! - **Resume**: a partition is consumed from the offset stored by the change table its topic
//!   feeds ([`resume_offset`]), from the beginning when that table has none — never from the
//!   consumer group.
//! - **Land**: a record at `offset` goes to a table only if `offset >=` that table's stored offset
//!   for its partition ([`should_land`]). Each flush commits `dead_letters` before the change
//!   tables, so after a crash between the two commits the replayed range skips what
//!   `dead_letters` already has and lands what the change table misses.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

/// Snapshot summary property holding the table's offset map.
pub const OFFSETS_PROPERTY: &str = "tributary.offsets";
/// Snapshot summary property holding the id of the lander commit that made the snapshot.
pub const COMMIT_ID_PROPERTY: &str = "tributary.commit-id";
/// Snapshot summary property holding the W3C `traceparent` of the lander commit span that made
/// the snapshot: a job reading the snapshot links its own span to it
/// (`tributary_common::telemetry::link_span`).
pub const TRACEPARENT_PROPERTY: &str = "tributary.traceparent";

/// A Kafka topic partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
}

impl TopicPartition {
    /// Builds a topic partition.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

impl FromStr for TopicPartition {
    type Err = OffsetMapError;

    /// Parses `topic/partition`. Kafka topic names cannot contain `/`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || OffsetMapError::BadKey(s.to_string());
        let (topic, partition) = s.rsplit_once('/').ok_or_else(bad)?;
        if topic.is_empty() {
            return Err(bad());
        }
        let partition = partition.parse::<i32>().map_err(|_| bad())?;
        if partition < 0 {
            return Err(bad());
        }
        Ok(Self::new(topic, partition))
    }
}

/// An offset map could not be read from a snapshot summary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OffsetMapError {
    /// The property is not a JSON object of integers.
    #[error("`{OFFSETS_PROPERTY}` is not a JSON object of offsets: {0}")]
    NotJson(String),
    /// A key is not `topic/partition`.
    #[error("`{OFFSETS_PROPERTY}` has key {0:?}, expected \"topic/partition\"")]
    BadKey(String),
    /// An offset is negative.
    #[error("`{OFFSETS_PROPERTY}` has negative offset {offset} for {key:?}")]
    Negative {
        /// The key.
        key: String,
        /// The offset.
        offset: i64,
    },
}

/// Next offset to consume per topic partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetMap(BTreeMap<TopicPartition, i64>);

impl OffsetMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next offset to consume for `tp`, if known.
    pub fn get(&self, tp: &TopicPartition) -> Option<i64> {
        self.0.get(tp).copied()
    }

    /// Records that everything below `next` has been consumed; never moves backwards.
    pub fn advance(&mut self, tp: &TopicPartition, next: i64) {
        match self.0.get_mut(tp) {
            Some(current) => *current = (*current).max(next),
            None => {
                self.0.insert(tp.clone(), next);
            }
        }
    }

    /// This map advanced by every entry of `other` (the per-partition maximum).
    pub fn merged(&self, other: &OffsetMap) -> OffsetMap {
        let mut out = self.clone();
        for (tp, next) in other.iter() {
            out.advance(tp, next);
        }
        out
    }

    /// Only the partitions of the given topics.
    pub fn restricted_to(&self, topics: &[&str]) -> OffsetMap {
        OffsetMap(
            self.0
                .iter()
                .filter(|(tp, _)| topics.contains(&tp.topic.as_str()))
                .map(|(tp, o)| (tp.clone(), *o))
                .collect(),
        )
    }

    /// Entries in topic/partition order.
    pub fn iter(&self) -> impl Iterator<Item = (&TopicPartition, i64)> {
        self.0.iter().map(|(tp, o)| (tp, *o))
    }

    /// Number of partitions.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no partition is recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// JSON text for the snapshot summary, keys sorted.
    pub fn encode(&self) -> String {
        let map: BTreeMap<String, i64> =
            self.0.iter().map(|(tp, o)| (tp.to_string(), *o)).collect();
        serde_json::to_string(&map).expect("a map of strings to integers always serialises")
    }

    /// Parses the JSON text written by [`OffsetMap::encode`].
    pub fn decode(text: &str) -> Result<Self, OffsetMapError> {
        let raw: BTreeMap<String, i64> =
            serde_json::from_str(text).map_err(|e| OffsetMapError::NotJson(e.to_string()))?;
        let mut map = BTreeMap::new();
        for (key, offset) in raw {
            if offset < 0 {
                return Err(OffsetMapError::Negative { key, offset });
            }
            map.insert(key.parse::<TopicPartition>()?, offset);
        }
        Ok(Self(map))
    }

    /// Reads the map from a snapshot summary's properties; no property means an empty map
    /// (a table no lander has committed to yet).
    pub fn from_summary(properties: &HashMap<String, String>) -> Result<Self, OffsetMapError> {
        match properties.get(OFFSETS_PROPERTY) {
            Some(text) => Self::decode(text),
            None => Ok(Self::default()),
        }
    }
}

impl FromIterator<(TopicPartition, i64)> for OffsetMap {
    fn from_iter<I: IntoIterator<Item = (TopicPartition, i64)>>(iter: I) -> Self {
        let mut map = OffsetMap::new();
        for (tp, o) in iter {
            map.advance(&tp, o);
        }
        map
    }
}

/// Where to start consuming a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    /// The first offset still in the log: nothing of this partition has been landed.
    Beginning,
    /// This exact offset.
    At(i64),
}

/// Where to resume `tp`, given the offset map of the change table its topic feeds.
///
/// The change table, not `dead_letters`, decides: `dead_letters` commits only when it has rows,
/// so its map can lag far behind; and every change-table commit comes after the
/// `dead_letters` commit of the same flush, so a change table's offset implies that every bad
/// record below it is already in `dead_letters`.
pub fn resume_offset(change_table: &OffsetMap, tp: &TopicPartition) -> StartOffset {
    match change_table.get(tp) {
        Some(next) => StartOffset::At(next),
        None => StartOffset::Beginning,
    }
}

/// Whether the record at `offset` of `tp` still has to be appended to a table whose stored map
/// is `committed`.
pub fn should_land(committed: &OffsetMap, tp: &TopicPartition, offset: i64) -> bool {
    offset >= committed.get(tp).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(topic: &str, p: i32) -> TopicPartition {
        TopicPartition::new(topic, p)
    }

    #[test]
    fn round_trip() {
        let map: OffsetMap = [
            (tp("salesdb.public.sale", 0), 1234),
            (tp("salesdb.public.sale", 1), 0),
            (tp("salesdb.public.city", 0), 7),
        ]
        .into_iter()
        .collect();
        let text = map.encode();
        assert_eq!(
            text,
            r#"{"salesdb.public.city/0":7,"salesdb.public.sale/0":1234,"salesdb.public.sale/1":0}"#
        );
        assert_eq!(OffsetMap::decode(&text).unwrap(), map);
        assert_eq!(OffsetMap::decode("{}").unwrap(), OffsetMap::new());
    }

    #[test]
    fn topic_names_with_dots_and_dashes_parse() {
        assert_eq!(
            "it-restart.ab12.sale/3".parse::<TopicPartition>().unwrap(),
            tp("it-restart.ab12.sale", 3)
        );
    }

    #[test]
    fn malformed_maps_are_refused() {
        assert!(matches!(
            OffsetMap::decode("[1]"),
            Err(OffsetMapError::NotJson(_))
        ));
        assert!(matches!(
            OffsetMap::decode(r#"{"sale":1}"#),
            Err(OffsetMapError::BadKey(_))
        ));
        assert!(matches!(
            OffsetMap::decode(r#"{"sale/x":1}"#),
            Err(OffsetMapError::BadKey(_))
        ));
        assert!(matches!(
            OffsetMap::decode(r#"{"/0":1}"#),
            Err(OffsetMapError::BadKey(_))
        ));
        assert!(matches!(
            OffsetMap::decode(r#"{"sale/0":-1}"#),
            Err(OffsetMapError::Negative { .. })
        ));
        assert!(matches!(
            OffsetMap::decode(r#"{"sale/0":"1"}"#),
            Err(OffsetMapError::NotJson(_))
        ));
    }

    #[test]
    fn summary_without_property_is_empty() {
        let mut props = HashMap::new();
        assert!(OffsetMap::from_summary(&props).unwrap().is_empty());
        props.insert(OFFSETS_PROPERTY.to_string(), r#"{"t/0":5}"#.to_string());
        assert_eq!(
            OffsetMap::from_summary(&props).unwrap().get(&tp("t", 0)),
            Some(5)
        );
    }

    #[test]
    fn advance_and_merge_never_go_backwards() {
        let mut map = OffsetMap::new();
        map.advance(&tp("t", 0), 10);
        map.advance(&tp("t", 0), 5);
        assert_eq!(map.get(&tp("t", 0)), Some(10));
        let other: OffsetMap = [(tp("t", 0), 8), (tp("t", 1), 3)].into_iter().collect();
        let merged = map.merged(&other);
        assert_eq!(merged.get(&tp("t", 0)), Some(10));
        assert_eq!(merged.get(&tp("t", 1)), Some(3));
        assert_eq!(merged.restricted_to(&["u"]).len(), 0);
    }

    #[test]
    fn resume_from_the_change_table_or_the_beginning() {
        let sale: OffsetMap = [(tp("sale", 0), 100)].into_iter().collect();
        assert_eq!(resume_offset(&sale, &tp("sale", 0)), StartOffset::At(100));
        assert_eq!(resume_offset(&sale, &tp("sale", 1)), StartOffset::Beginning);
    }

    #[test]
    fn skip_rule() {
        let committed: OffsetMap = [(tp("sale", 0), 100)].into_iter().collect();
        assert!(!should_land(&committed, &tp("sale", 0), 99));
        assert!(should_land(&committed, &tp("sale", 0), 100));
        assert!(should_land(&committed, &tp("sale", 0), 101));
        assert!(should_land(&committed, &tp("sale", 1), 0));
    }

    /// A crash after `dead_letters` committed a flush but before the change table did: the
    /// replay lands each record exactly once in the table it belongs to.
    #[test]
    fn crash_between_dead_letter_and_change_commit_replays_exactly_once() {
        let p = tp("sale", 0);
        // Offsets 0..10 were consumed; 3 and 7 were bad. dead_letters committed {sale/0: 10},
        // then the process died before pg_sale committed (pg_sale still at 0).
        let dead_letters: OffsetMap = [(p.clone(), 10)].into_iter().collect();
        let pg_sale = OffsetMap::new();
        let bad = |o: i64| o == 3 || o == 7;

        let StartOffset::Beginning = resume_offset(&pg_sale, &p) else {
            panic!("pg_sale has no offset: replay from the beginning");
        };
        let mut landed_sale = vec![];
        let mut landed_dead = vec![];
        for offset in 0..12 {
            let committed = if bad(offset) { &dead_letters } else { &pg_sale };
            if should_land(committed, &p, offset) {
                if bad(offset) {
                    landed_dead.push(offset)
                } else {
                    landed_sale.push(offset)
                }
            }
        }
        assert_eq!(landed_sale, vec![0, 1, 2, 4, 5, 6, 8, 9, 10, 11]);
        assert!(
            landed_dead.is_empty(),
            "3 and 7 are already in dead_letters"
        );
    }
}
