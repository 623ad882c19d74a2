//! The offset-coverage ledger: what the lander did with every Kafka record it consumed.
//!
//! Next to its offset map, every lander commit stores in the snapshot summary property
//! [`LEDGER_PROPERTY`] the **cumulative** fate of the records of each partition the table owns
//! (a change table owns its topics' partitions, `dead_letters` the ingestors' rejection
//! topics): from the first offset the ledger counted up to the table's stored offset, how many
//! records there were and how many were landed as rows, dead-lettered or skipped as
//! tombstones. The counts move in the same commit as the offsets, so a replay after a crash
//! counts each record once, as it lands each record once.
//!
//! [`PartitionLedger::verify`] checks one partition's ledger against the rows the lake holds
//! (consumed = landed + dead-lettered + tombstones, every count matching the rows, no offset
//! twice); a Kafka reader checks `records` against the log (no gap).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::offsets::{OffsetMap, OffsetMapError, TopicPartition};
use crate::schema::RawTable;

/// Snapshot summary property holding the table's ledger: JSON
/// `{"topic/partition": {"first_offset": …, "records": …, …}}`.
pub const LEDGER_PROPERTY: &str = "tributary.ledger";

/// What became of one consumed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Appended to its table as a row.
    Landed,
    /// Appended to `dead_letters` with the reason it could not be landed.
    DeadLettered,
    /// A Kafka tombstone (a null value after a delete): nothing to land.
    Tombstone,
}

/// One partition's ledger, cumulative from `first_offset` up to the table's stored offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionLedger {
    /// The first offset counted (earlier offsets were landed before the ledger existed, or had
    /// left the log before the lander first read the partition).
    pub first_offset: i64,
    /// Records consumed.
    pub records: u64,
    /// Of them, landed as rows of the table.
    pub landed: u64,
    /// Of them, dead-lettered.
    pub dead_lettered: u64,
    /// Of them, tombstones.
    pub tombstones: u64,
}

impl PartitionLedger {
    /// An empty ledger starting at `first_offset`.
    pub fn starting_at(first_offset: i64) -> Self {
        Self {
            first_offset,
            ..Self::default()
        }
    }

    /// Counts one record.
    pub fn count(&mut self, fate: Fate) {
        self.records += 1;
        match fate {
            Fate::Landed => self.landed += 1,
            Fate::DeadLettered => self.dead_lettered += 1,
            Fate::Tombstone => self.tombstones += 1,
        }
    }

    /// Whether every record counted has exactly one fate.
    pub fn accounted(&self) -> bool {
        self.records == self.landed + self.dead_lettered + self.tombstones
    }

    /// Checks this ledger, covering offsets `first_offset..next_offset`, against the offsets
    /// of the partition's rows in its table (`landed`) and in `dead_letters` (`dead`), in any
    /// order and over any range (rows outside the covered range are not this ledger's).
    pub fn verify(&self, next_offset: i64, landed: &[i64], dead: &[i64]) -> Coverage {
        let covered = |o: &&i64| (self.first_offset..next_offset).contains(*o);
        let mut offsets: Vec<i64> = landed.iter().filter(covered).copied().collect();
        let landed_rows = offsets.len() as u64;
        offsets.extend(dead.iter().filter(covered));
        let dead_letter_rows = offsets.len() as u64 - landed_rows;
        offsets.sort_unstable();
        offsets.dedup();
        let duplicate_offsets = landed_rows + dead_letter_rows - offsets.len() as u64;
        Coverage {
            landed_rows,
            dead_letter_rows,
            duplicate_offsets,
            balanced: self.accounted()
                && landed_rows == self.landed
                && dead_letter_rows == self.dead_lettered
                && duplicate_offsets == 0,
        }
    }
}

/// A partition's ledger held against the lake's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    /// Rows of the partition in its table, within the ledger's range.
    pub landed_rows: u64,
    /// Rows of the partition in `dead_letters`, within the ledger's range.
    pub dead_letter_rows: u64,
    /// Offsets present more than once among those rows (in one table or across both).
    pub duplicate_offsets: u64,
    /// Every record has one fate and the lake holds exactly the rows the ledger counted.
    pub balanced: bool,
}

/// One partition's ledger held against the lake's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionCoverage {
    /// The table owning the partition.
    pub table: RawTable,
    /// The partition.
    pub partition: TopicPartition,
    /// The table's stored offset for it: the ledger covers `first_offset..next_offset`.
    pub next_offset: i64,
    /// What the lander counted.
    pub ledger: PartitionLedger,
    /// What the lake holds.
    pub coverage: Coverage,
}

/// Every partition `table` keeps a ledger for (its stored `offsets` and `ledger`), checked
/// against the offsets of its own rows (`rows`; none for `dead_letters`, which owns only the
/// ingestors' rejection topics) and of `dead_letters`' rows (`dead`).
pub fn cover(
    table: RawTable,
    offsets: &OffsetMap,
    ledger: &Ledger,
    rows: &BTreeMap<TopicPartition, Vec<i64>>,
    dead: &BTreeMap<TopicPartition, Vec<i64>>,
) -> Vec<PartitionCoverage> {
    ledger
        .iter()
        .map(|(tp, counted)| {
            let next_offset = offsets.get(tp).unwrap_or(counted.first_offset);
            let landed = if table == RawTable::DeadLetters {
                &[][..]
            } else {
                rows.get(tp).map_or(&[][..], Vec::as_slice)
            };
            let dead = dead.get(tp).map_or(&[][..], Vec::as_slice);
            PartitionCoverage {
                table,
                partition: tp.clone(),
                next_offset,
                ledger: *counted,
                coverage: counted.verify(next_offset, landed, dead),
            }
        })
        .collect()
}

/// A source's own numbering of what it sent, held against the lake: the ordinals of a
/// partner file's records (1, 2, …: its sales and its dead letters) or the ERP's change
/// sequences. Pure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numbering {
    /// The first number (a file's first record is 1; the ERP: the lowest sequence seen).
    pub first: i64,
    /// The highest number seen.
    pub last: i64,
    /// Distinct numbers seen.
    pub seen: u64,
    /// Numbers in `first..=last` not seen (a gap).
    pub missing: u64,
    /// Numbers seen more than once (an overlap).
    pub duplicates: u64,
}

impl Numbering {
    /// The numbering of `numbers` (any order), counted from `from` (`None`: the lowest seen).
    pub fn of(mut numbers: Vec<i64>, from: Option<i64>) -> Self {
        numbers.sort_unstable();
        let total = numbers.len() as u64;
        numbers.dedup();
        let seen = numbers.len() as u64;
        let first = from.or(numbers.first().copied()).unwrap_or(0);
        let last = numbers.last().copied().unwrap_or(first - 1);
        let in_range = numbers.iter().filter(|n| **n >= first).count() as u64;
        let span = u64::try_from(last - first + 1).unwrap_or(0);
        Self {
            first,
            last,
            seen,
            missing: span.saturating_sub(in_range),
            duplicates: total - seen,
        }
    }
}

/// The ledgers of every partition one table owns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger(BTreeMap<TopicPartition, PartitionLedger>);

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts the record at `offset` of `tp`; the first record counted for a partition starts
    /// its range.
    pub fn count(&mut self, tp: &TopicPartition, offset: i64, fate: Fate) {
        self.0
            .entry(tp.clone())
            .or_insert_with(|| PartitionLedger::starting_at(offset))
            .count(fate);
    }

    /// The ledger of `tp`, if it has one.
    pub fn get(&self, tp: &TopicPartition) -> Option<&PartitionLedger> {
        self.0.get(tp)
    }

    /// This ledger with `delta` (the counts of the records after it) added: counts add up, a
    /// range keeps its first offset.
    pub fn merged(&self, delta: &Ledger) -> Ledger {
        let mut out = self.clone();
        for (tp, more) in &delta.0 {
            let entry = out.0.entry(tp.clone()).or_insert(PartitionLedger {
                first_offset: more.first_offset,
                ..PartitionLedger::default()
            });
            entry.records += more.records;
            entry.landed += more.landed;
            entry.dead_lettered += more.dead_lettered;
            entry.tombstones += more.tombstones;
        }
        out
    }

    /// Entries in topic/partition order.
    pub fn iter(&self) -> impl Iterator<Item = (&TopicPartition, &PartitionLedger)> {
        self.0.iter()
    }

    /// Whether no partition is counted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The counts of every partition added up.
    pub fn total(&self) -> PartitionLedger {
        let mut total = PartitionLedger::default();
        for entry in self.0.values() {
            total.records += entry.records;
            total.landed += entry.landed;
            total.dead_lettered += entry.dead_lettered;
            total.tombstones += entry.tombstones;
        }
        total
    }

    /// JSON text for the snapshot summary, keys sorted.
    pub fn encode(&self) -> String {
        let map: BTreeMap<String, &PartitionLedger> =
            self.0.iter().map(|(tp, l)| (tp.to_string(), l)).collect();
        serde_json::to_string(&map).expect("a map of strings to counts always serialises")
    }

    /// Parses the JSON text written by [`Ledger::encode`].
    pub fn decode(text: &str) -> Result<Self, LedgerError> {
        let raw: BTreeMap<String, PartitionLedger> =
            serde_json::from_str(text).map_err(|e| LedgerError::NotJson(e.to_string()))?;
        let mut map = BTreeMap::new();
        for (key, ledger) in raw {
            if ledger.first_offset < 0 || !ledger.accounted() {
                return Err(LedgerError::Inconsistent { key, ledger });
            }
            map.insert(key.parse::<TopicPartition>()?, ledger);
        }
        Ok(Self(map))
    }

    /// Reads the ledger from a snapshot summary's properties; no property means an empty
    /// ledger (a table no ledger-keeping lander has committed to yet).
    pub fn from_summary(properties: &HashMap<String, String>) -> Result<Self, LedgerError> {
        match properties.get(LEDGER_PROPERTY) {
            Some(text) => Self::decode(text),
            None => Ok(Self::default()),
        }
    }
}

/// A ledger could not be read from a snapshot summary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The property is not a JSON object of partition ledgers.
    #[error("`{LEDGER_PROPERTY}` is not a JSON object of partition ledgers: {0}")]
    NotJson(String),
    /// A key is not `topic/partition`.
    #[error("`{LEDGER_PROPERTY}`: {0}")]
    BadKey(#[from] OffsetMapError),
    /// Counts that cannot be (a negative offset, or records with no or two fates).
    #[error("`{LEDGER_PROPERTY}` has inconsistent counts for {key:?}: {ledger:?}")]
    Inconsistent {
        /// The key.
        key: String,
        /// What it held.
        ledger: PartitionLedger,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("salesdb.public.sale", p)
    }

    #[test]
    fn counts_round_trip_through_the_summary() {
        let mut ledger = Ledger::new();
        ledger.count(&tp(0), 7, Fate::Landed);
        ledger.count(&tp(0), 8, Fate::DeadLettered);
        ledger.count(&tp(0), 9, Fate::Tombstone);
        ledger.count(&tp(1), 0, Fate::Landed);
        let text = ledger.encode();
        assert_eq!(
            text,
            r#"{"salesdb.public.sale/0":{"first_offset":7,"records":3,"landed":1,"dead_lettered":1,"tombstones":1},"salesdb.public.sale/1":{"first_offset":0,"records":1,"landed":1,"dead_lettered":0,"tombstones":0}}"#
        );
        let props = HashMap::from([(LEDGER_PROPERTY.to_string(), text)]);
        assert_eq!(Ledger::from_summary(&props).unwrap(), ledger);
        assert!(Ledger::from_summary(&HashMap::new()).unwrap().is_empty());
    }

    #[test]
    fn a_delta_adds_to_the_committed_counts_and_keeps_the_first_offset() {
        let mut committed = Ledger::new();
        committed.count(&tp(0), 3, Fate::Landed);
        let mut delta = Ledger::new();
        delta.count(&tp(0), 4, Fate::DeadLettered);
        delta.count(&tp(1), 10, Fate::Landed);
        let merged = committed.merged(&delta);
        assert_eq!(
            merged.get(&tp(0)),
            Some(&PartitionLedger {
                first_offset: 3,
                records: 2,
                landed: 1,
                dead_lettered: 1,
                tombstones: 0
            })
        );
        assert_eq!(merged.get(&tp(1)).unwrap().first_offset, 10);
        assert_eq!(merged.total().records, 3);
    }

    #[test]
    fn refuses_counts_that_cannot_be() {
        for text in [
            "[]",
            r#"{"nopartition":{"first_offset":0,"records":0,"landed":0,"dead_lettered":0,"tombstones":0}}"#,
            r#"{"t/0":{"first_offset":0,"records":2,"landed":1,"dead_lettered":0,"tombstones":0}}"#,
            r#"{"t/0":{"first_offset":-1,"records":0,"landed":0,"dead_lettered":0,"tombstones":0}}"#,
        ] {
            assert!(Ledger::decode(text).is_err(), "{text}");
        }
    }

    fn ledger(first: i64, landed: u64, dead: u64, tombstones: u64) -> PartitionLedger {
        PartitionLedger {
            first_offset: first,
            records: landed + dead + tombstones,
            landed,
            dead_lettered: dead,
            tombstones,
        }
    }

    #[test]
    fn verify_balances_when_the_rows_are_exactly_the_counted_ones() {
        // Offsets 10..16: 10, 11, 13 landed, 12 dead, 14 a tombstone, 15 landed. Rows below
        // the ledger's range and dead letters past the table's offset are not its business.
        let l = ledger(10, 4, 1, 1);
        let coverage = l.verify(16, &[3, 10, 11, 13, 15], &[12, 16]);
        assert_eq!(
            coverage,
            Coverage {
                landed_rows: 4,
                dead_letter_rows: 1,
                duplicate_offsets: 0,
                balanced: true
            }
        );
    }

    #[test]
    fn verify_finds_a_lost_row_a_duplicate_and_an_overlap() {
        let l = ledger(0, 3, 1, 0);
        let lost = l.verify(4, &[0, 1], &[3]);
        assert!(!lost.balanced);
        assert_eq!(lost.landed_rows, 2);
        let twice = l.verify(4, &[0, 1, 2, 2], &[3]);
        assert_eq!((twice.duplicate_offsets, twice.balanced), (1, false));
        let both = l.verify(4, &[0, 1, 2], &[2]);
        assert_eq!((both.duplicate_offsets, both.balanced), (1, false));
        let unaccounted = PartitionLedger { records: 5, ..l };
        assert!(!unaccounted.verify(4, &[0, 1, 2], &[3]).balanced);
    }

    #[test]
    fn numbering_finds_gaps_and_overlaps() {
        let file = Numbering::of(vec![3, 1, 2, 4], Some(1));
        assert_eq!(
            (
                file.first,
                file.last,
                file.seen,
                file.missing,
                file.duplicates
            ),
            (1, 4, 4, 0, 0)
        );
        let gap = Numbering::of(vec![2, 4, 4], Some(1));
        assert_eq!(
            (gap.seen, gap.missing, gap.duplicates),
            (2, 2, 1),
            "1 and 3 missing, 4 twice"
        );
        let erp = Numbering::of(vec![10, 12, 11], None);
        assert_eq!((erp.first, erp.missing), (10, 0));
        let none = Numbering::of(vec![], None);
        assert_eq!((none.seen, none.missing, none.duplicates), (0, 0, 0));
    }

    #[test]
    fn cover_holds_each_owned_partition_against_its_rows_and_the_dead_letters() {
        let mut counted = Ledger::new();
        for (offset, fate) in [
            (0, Fate::Landed),
            (1, Fate::DeadLettered),
            (2, Fate::Landed),
        ] {
            counted.count(&tp(0), offset, fate);
        }
        let offsets: OffsetMap = [(tp(0), 3)].into_iter().collect();
        let rows = BTreeMap::from([(tp(0), vec![0, 2]), (tp(1), vec![0])]);
        let dead = BTreeMap::from([(tp(0), vec![1])]);
        let covered = cover(RawTable::PgSale, &offsets, &counted, &rows, &dead);
        assert_eq!(covered.len(), 1, "only the partitions with a ledger");
        assert_eq!(covered[0].next_offset, 3);
        assert!(covered[0].coverage.balanced);
        // The same counts read as dead_letters' own: its rows are dead letters, not landed.
        let as_dead_letters = cover(RawTable::DeadLetters, &offsets, &counted, &rows, &dead);
        assert!(!as_dead_letters[0].coverage.balanced);
    }
}
