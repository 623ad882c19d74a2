//! How far one run folds: a bound on the events a run reads, so that neither a marts job that
//! fell behind nor a rebuild of a large lake holds more than a slice of it in memory at once.
//!
//! The lander commits each raw table often (about once a second under load), and each commit's
//! snapshot records how many rows it added (`added-records`, `total-records` in the Iceberg
//! snapshot summary). A run stops each table at one of its snapshots: all of them at the latest
//! commit time `T` whose events, summed over the tables, stay within the bound (at least the
//! first commit, however large). Cutting every table at one time keeps the slice a state the
//! lake was really in — each table as it stood at `T`, what `?as_of=T` reads — rather than one
//! table far ahead of another. Pure: metadata in, snapshot ids out.

use iceberg::spec::{Operation, TableMetadata};

/// A snapshot a run could stop a table at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    /// The snapshot.
    pub snapshot_id: i64,
    /// Its commit time (epoch ms), or a stop's before it if later: a snapshot's clock can lag
    /// its parent's, and the stops of a table are then still in order of time.
    pub committed_ms: i64,
    /// The events a run reads from this table if it stops here, counted from where the kept
    /// state stopped (everything live at this snapshot when it stopped nowhere).
    pub events: u64,
}

/// One raw table as a run finds it: where the kept state stopped, its current snapshot, and the
/// snapshots between (`None`: the chain could not be followed; the run then reads up to the
/// current snapshot, and the incremental read says what is wrong).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRange {
    /// The snapshot the kept state stopped at.
    pub since: Option<i64>,
    /// The table's current snapshot.
    pub current: Option<i64>,
    /// The snapshots after `since` up to `current`, oldest first.
    pub stops: Option<Vec<Stop>>,
}

impl TableRange {
    /// The range of a table from its metadata.
    pub fn of(metadata: &TableMetadata, since: Option<i64>, current: Option<i64>) -> Self {
        let stops = current.and_then(|upto| stops(metadata, since, upto));
        Self {
            since,
            current,
            stops,
        }
    }
}

/// A summary count (`added-records`, `total-records`) of a snapshot, if it has one.
fn summary_count(snapshot: &iceberg::spec::Snapshot, key: &str) -> Option<u64> {
    snapshot
        .summary()
        .additional_properties
        .get(key)
        .and_then(|v| v.parse().ok())
}

/// The snapshots after `since` up to `upto`, oldest first, following parents as the incremental
/// read does (`tributary_raw::incremental`). `None` when that read would refuse the range (a
/// missing `since`, a commit that is neither an append nor a replace).
fn stops(metadata: &TableMetadata, since: Option<i64>, upto: i64) -> Option<Vec<Stop>> {
    // Newest first: (snapshot id, commit time, rows it added, rows live at it).
    let mut chain = Vec::new();
    let mut cursor = Some(upto);
    while let Some(id) = cursor {
        if Some(id) == since {
            break;
        }
        let Some(snapshot) = metadata.snapshot_by_id(id) else {
            // From nothing, expired history is read from the live files of a later snapshot.
            if since.is_none() && id != upto {
                break;
            }
            return None;
        };
        let added = match snapshot.summary().operation {
            Operation::Append => summary_count(snapshot, "added-records").unwrap_or(0),
            // Maintenance rewrites files: nothing new to read.
            Operation::Replace => 0,
            _ => return None,
        };
        let live = summary_count(snapshot, "total-records");
        chain.push((id, snapshot.timestamp_ms(), added, live));
        cursor = snapshot.parent_snapshot_id();
    }
    if since.is_some() && cursor != since {
        return None;
    }
    let mut read = 0u64;
    let mut latest_ms = i64::MIN;
    Some(
        chain
            .into_iter()
            .rev()
            .map(|(snapshot_id, committed_ms, added, live)| {
                read += added;
                latest_ms = latest_ms.max(committed_ms);
                Stop {
                    snapshot_id,
                    committed_ms: latest_ms,
                    // From nothing the read takes every live file of the snapshot it stops at.
                    events: match (since, live) {
                        (None, Some(live)) => live.max(read),
                        _ => read,
                    },
                }
            })
            .collect(),
    )
}

/// The last of `stops` (in order of time) committed at or before `at_ms`.
fn reach(stops: &[Stop], at_ms: i64) -> Option<usize> {
    stops
        .partition_point(|s| s.committed_ms <= at_ms)
        .checked_sub(1)
}

/// The snapshot each table is folded up to by a run reading at most about `max_events` events
/// (in `ranges`' order). Every table's current snapshot when all that is new fits; otherwise
/// each table as it stood at the latest commit time whose events fit, and never less than the
/// earliest commit: a run always makes progress.
pub fn targets(ranges: &[TableRange], max_events: u64) -> Vec<Option<i64>> {
    let mut times: Vec<i64> = ranges
        .iter()
        .flat_map(|r| r.stops.iter().flatten().map(|s| s.committed_ms))
        .collect();
    times.sort_unstable();
    times.dedup();
    let events_at = |at_ms: i64| -> u64 {
        ranges
            .iter()
            .filter_map(|r| {
                let stops = r.stops.as_deref()?;
                reach(stops, at_ms).map(|i| stops[i].events)
            })
            .sum()
    };
    // The events read grow with the time cut at, so the last time that fits is found by
    // bisection (a rebuild's range can hold thousands of commits); if none fits, the first.
    let fitting = times.partition_point(|&at| events_at(at) <= max_events);
    let cut = times.get(fitting.saturating_sub(1)).copied();
    ranges
        .iter()
        .map(|r| match (&r.stops, cut) {
            (Some(stops), Some(cut)) => match reach(stops, cut) {
                Some(i) => Some(stops[i].snapshot_id),
                None => r.since,
            },
            _ => r.current,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table whose commits (at these ms) added these many events each, after `since`.
    fn table(since: Option<i64>, first_id: i64, commits: &[(i64, u64)]) -> TableRange {
        let mut events = 0;
        let stops: Vec<Stop> = commits
            .iter()
            .enumerate()
            .map(|(i, &(committed_ms, added))| {
                events += added;
                Stop {
                    snapshot_id: first_id + i as i64,
                    committed_ms,
                    events,
                }
            })
            .collect();
        TableRange {
            since,
            current: stops.last().map(|s| s.snapshot_id).or(since),
            stops: Some(stops),
        }
    }

    #[test]
    fn everything_new_fits_so_every_table_goes_to_its_current_snapshot() {
        let ranges = [
            table(Some(1), 10, &[(100, 5), (200, 5)]),
            table(None, 20, &[(150, 3)]),
            table(Some(30), 31, &[]),
        ];
        assert_eq!(targets(&ranges, 13), [Some(11), Some(20), Some(30)]);
    }

    #[test]
    fn a_run_cuts_every_table_at_the_same_commit_time() {
        let sales = table(Some(1), 10, &[(100, 4), (200, 4), (300, 4)]);
        let cities = table(Some(2), 20, &[(150, 1), (250, 1)]);
        // At 200: 8 + 1 events; at 250: 8 + 2 = 10; at 300: 12 + 2.
        let ranges = [sales, cities];
        assert_eq!(targets(&ranges, 9), [Some(11), Some(20)]);
        assert_eq!(targets(&ranges, 10), [Some(11), Some(21)]);
        assert_eq!(targets(&ranges, 13), [Some(11), Some(21)]);
        assert_eq!(targets(&ranges, 14), [Some(12), Some(21)]);
    }

    #[test]
    fn a_table_with_nothing_committed_by_the_cut_stays_where_it_was() {
        let ranges = [
            table(Some(1), 10, &[(100, 6), (400, 6)]),
            table(Some(7), 20, &[(300, 1)]),
            table(None, 30, &[(350, 1)]),
        ];
        assert_eq!(targets(&ranges, 6), [Some(10), Some(7), None]);
    }

    #[test]
    fn the_first_commit_is_folded_however_large() {
        let ranges = [
            table(None, 10, &[(100, 1_000), (200, 1)]),
            table(None, 20, &[(150, 1)]),
        ];
        assert_eq!(targets(&ranges, 10), [Some(10), None]);
    }

    #[test]
    fn a_table_whose_chain_cannot_be_followed_goes_to_its_current_snapshot() {
        let unknown = TableRange {
            since: Some(3),
            current: Some(9),
            stops: None,
        };
        let ranges = [table(Some(1), 10, &[(100, 5), (200, 5)]), unknown];
        assert_eq!(targets(&ranges, 5), [Some(10), Some(9)]);
    }

    /// The cut found by bisection against trying every commit time, on seeded random tables.
    #[test]
    fn bisection_finds_the_cut_trying_every_time_would() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n.max(1)
        };
        for _ in 0..200 {
            let ranges: Vec<TableRange> = (0..3)
                .map(|t| {
                    let mut at = next(50) as i64;
                    let commits: Vec<(i64, u64)> = (0..next(40))
                        .map(|_| {
                            at += next(20) as i64;
                            (at, next(10))
                        })
                        .collect();
                    table(Some(t), 100 * (t + 1), &commits)
                })
                .collect();
            let max_events = next(150);
            let stops_by = |r: &TableRange, at: i64| -> Vec<Stop> {
                r.stops
                    .iter()
                    .flatten()
                    .filter(|s| s.committed_ms <= at)
                    .copied()
                    .collect()
            };
            let fits = |at: i64| {
                ranges
                    .iter()
                    .map(|r| stops_by(r, at).last().map_or(0, |s| s.events))
                    .sum::<u64>()
                    <= max_events
            };
            let mut times: Vec<i64> = ranges
                .iter()
                .flat_map(|r| r.stops.iter().flatten().map(|s| s.committed_ms))
                .collect();
            times.sort_unstable();
            let cut = times.iter().rev().find(|&&at| fits(at)).or(times.first());
            let by_hand: Vec<Option<i64>> = ranges
                .iter()
                .map(|r| match cut {
                    None => r.current,
                    Some(&cut) => stops_by(r, cut).last().map(|s| s.snapshot_id).or(r.since),
                })
                .collect();
            assert_eq!(
                targets(&ranges, max_events),
                by_hand,
                "{ranges:?} within {max_events}"
            );
        }
    }

    #[test]
    fn commits_at_one_time_are_cut_together() {
        let ranges = [
            table(Some(1), 10, &[(100, 3), (100, 3), (200, 3)]),
            table(Some(2), 20, &[(100, 3)]),
        ];
        // Nothing fits 5, so the first time (100) is taken whole: all three commits there.
        assert_eq!(targets(&ranges, 5), [Some(11), Some(20)]);
    }
}
