//! What a maintenance run will do to one table, decided from its metadata alone. Pure: every
//! input (the time, the pins, the live files) is passed in, so each rule is unit-tested.

use std::collections::BTreeSet;

use super::MaintenanceSettings;

/// One snapshot, as the expiry rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Its id.
    pub id: i64,
    /// Its parent, if any.
    pub parent: Option<i64>,
    /// Commit time, epoch ms.
    pub timestamp_ms: i64,
}

/// What the live pins of a table hold, as the expiry rule sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldByPins {
    /// Commit time (epoch ms) of the oldest snapshot a live `from` pin holds.
    pub from_ms: Option<i64>,
    /// Snapshots live `exactly` pins hold.
    pub exactly: BTreeSet<i64>,
}

/// Which snapshots to expire, and why the oldest kept one is kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExpiryPlan {
    /// Snapshots to remove from the metadata.
    pub expire: BTreeSet<i64>,
    /// Snapshots kept.
    pub keep: BTreeSet<i64>,
}

/// Chooses the snapshots to expire (Iceberg's `expire_snapshots` with Tributary's rules):
///
/// - the current snapshot and the newest `min_snapshots_to_keep` of its ancestry are kept;
/// - every snapshot committed within `snapshot_retention_s` is kept (time travel to any moment
///   of that window reads exactly what the lake held then);
/// - older than that and within `history_retention_s`, the last snapshot of each
///   `history_granularity_s` bucket is kept (time travel there reads the lake as of the end of
///   the bucket before);
/// - every snapshot from the oldest live `from` pin's on is kept (a reader continuing from a
///   pinned snapshot finds its whole range), and every snapshot a live `exactly` pin holds (a
///   retained publication's);
/// - everything else expires.
pub fn plan_expiry(
    snapshots: &[SnapshotInfo],
    current: Option<i64>,
    now_ms: i64,
    held: &HeldByPins,
    settings: &MaintenanceSettings,
) -> ExpiryPlan {
    let full_from = now_ms.saturating_sub(secs_to_ms(settings.snapshot_retention_s));
    let full_from = held.from_ms.map_or(full_from, |pin| full_from.min(pin));
    let history_from = now_ms.saturating_sub(secs_to_ms(settings.history_retention_s));
    let bucket_ms = secs_to_ms(settings.history_granularity_s).max(1);

    let mut keep = BTreeSet::new();
    // The current snapshot and its newest ancestors.
    let by_id: std::collections::HashMap<i64, &SnapshotInfo> =
        snapshots.iter().map(|s| (s.id, s)).collect();
    let mut cursor = current;
    while let Some(id) = cursor {
        if keep.len() >= settings.min_snapshots_to_keep.max(1) {
            break;
        }
        let Some(snapshot) = by_id.get(&id) else {
            break;
        };
        keep.insert(id);
        cursor = snapshot.parent;
    }
    // The full-resolution window, and the newest snapshot of each older bucket.
    let mut newest_in_bucket: std::collections::BTreeMap<i64, &SnapshotInfo> =
        std::collections::BTreeMap::new();
    for snapshot in snapshots {
        if snapshot.timestamp_ms >= full_from {
            keep.insert(snapshot.id);
        } else if snapshot.timestamp_ms >= history_from {
            let bucket = snapshot.timestamp_ms.div_euclid(bucket_ms);
            let newest = newest_in_bucket.entry(bucket).or_insert(snapshot);
            if (snapshot.timestamp_ms, snapshot.id) > (newest.timestamp_ms, newest.id) {
                *newest = snapshot;
            }
        }
    }
    keep.extend(newest_in_bucket.values().map(|s| s.id));
    keep.extend(
        snapshots
            .iter()
            .map(|s| s.id)
            .filter(|id| held.exactly.contains(id)),
    );
    let expire = snapshots
        .iter()
        .map(|s| s.id)
        .filter(|id| !keep.contains(id))
        .collect();
    ExpiryPlan { expire, keep }
}

/// One live data file, as compaction sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Its path.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Groups the table's small live files into rewrites of at most `target_file_bytes` each
/// (first-fit in the order given, which is commit order), or nothing when there are fewer
/// than `min_input_files` small files: compacting two files every run would rewrite the table
/// for nothing. A file is small below three quarters of the target. Groups of one are dropped
/// (rewriting a file alone changes nothing).
pub fn plan_compaction(files: &[FileInfo], settings: &MaintenanceSettings) -> Vec<Vec<FileInfo>> {
    let target = settings.target_file_bytes.max(1);
    let small: Vec<&FileInfo> = files.iter().filter(|f| f.bytes < target / 4 * 3).collect();
    if small.len() < settings.min_input_files.max(2) {
        return Vec::new();
    }
    let mut groups: Vec<(u64, Vec<FileInfo>)> = Vec::new();
    for file in small {
        match groups.last_mut() {
            Some((bytes, group)) if *bytes + file.bytes <= target => {
                *bytes += file.bytes;
                group.push(file.clone());
            }
            _ => groups.push((file.bytes, vec![file.clone()])),
        }
    }
    groups
        .into_iter()
        .map(|(_, group)| group)
        .filter(|group| group.len() > 1)
        .collect()
}

/// Whether the current snapshot's manifests should be merged: more of them than
/// `max_manifests` (every fast append adds one, so a commit's manifest list grows by one per
/// commit until merged).
pub fn should_merge_manifests(manifests: usize, settings: &MaintenanceSettings) -> bool {
    manifests > settings.max_manifests.max(1)
}

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn settings() -> MaintenanceSettings {
        MaintenanceSettings {
            snapshot_retention_s: 600,
            history_retention_s: 3600,
            history_granularity_s: 900,
            min_snapshots_to_keep: 2,
            ..MaintenanceSettings::default()
        }
    }

    /// A chain of snapshots 1..=n, snapshot i committed at minute i.
    fn chain(n: i64) -> Vec<SnapshotInfo> {
        (1..=n)
            .map(|i| SnapshotInfo {
                id: i,
                parent: (i > 1).then_some(i - 1),
                timestamp_ms: i * MIN,
            })
            .collect()
    }

    #[test]
    fn keeps_the_full_window_thins_the_history_and_drops_the_rest() {
        // 200 snapshots, one a minute; now = minute 200.
        let snapshots = chain(200);
        let plan = plan_expiry(
            &snapshots,
            Some(200),
            200 * MIN,
            &HeldByPins::default(),
            &settings(),
        );
        // Full resolution for the last 10 minutes (190..=200).
        for id in 190..=200 {
            assert!(plan.keep.contains(&id), "{id} is in the full window");
        }
        // The hour before: the newest snapshot of each 15-minute bucket (minutes 140..190).
        let history: Vec<i64> = plan.keep.iter().copied().filter(|id| *id < 190).collect();
        assert_eq!(history, vec![149, 164, 179, 189]);
        // Older than an hour: gone.
        assert!(plan.expire.contains(&1) && plan.expire.contains(&139));
        assert_eq!(plan.keep.len() + plan.expire.len(), 200);
        assert!(plan.keep.is_disjoint(&plan.expire));
    }

    #[test]
    fn a_live_pin_keeps_everything_after_it() {
        let snapshots = chain(200);
        let plan = plan_expiry(
            &snapshots,
            Some(200),
            200 * MIN,
            &HeldByPins {
                from_ms: Some(50 * MIN),
                ..HeldByPins::default()
            },
            &settings(),
        );
        assert!((50..=200).all(|id| plan.keep.contains(&id)));
        assert_eq!(plan.expire, (1..50).collect());
    }

    #[test]
    fn the_newest_snapshots_stay_however_old() {
        let snapshots = chain(5);
        // A day later nothing was committed: the current snapshot and one ancestor stay.
        let plan = plan_expiry(
            &snapshots,
            Some(5),
            24 * 60 * MIN,
            &HeldByPins::default(),
            &settings(),
        );
        assert_eq!(plan.keep, [4, 5].into());
        assert_eq!(plan.expire, [1, 2, 3].into());
    }

    #[test]
    fn a_young_table_expires_nothing() {
        let snapshots = chain(5);
        let plan = plan_expiry(
            &snapshots,
            Some(5),
            6 * MIN,
            &HeldByPins::default(),
            &settings(),
        );
        assert!(plan.expire.is_empty());
    }

    #[test]
    fn an_exact_pin_keeps_that_snapshot_only() {
        let snapshots = chain(200);
        let held = HeldByPins {
            exactly: [20, 77].into(),
            ..HeldByPins::default()
        };
        let plan = plan_expiry(&snapshots, Some(200), 200 * MIN, &held, &settings());
        let unpinned = plan_expiry(
            &snapshots,
            Some(200),
            200 * MIN,
            &HeldByPins::default(),
            &settings(),
        );
        let mut expected = unpinned.keep.clone();
        expected.extend([20, 77]);
        assert_eq!(plan.keep, expected);
        assert!(plan.expire.contains(&19) && plan.expire.contains(&21));
    }

    fn file(path: &str, bytes: u64) -> FileInfo {
        FileInfo {
            path: path.into(),
            bytes,
        }
    }

    #[test]
    fn compaction_packs_small_files_up_to_the_target() {
        let settings = MaintenanceSettings {
            target_file_bytes: 100,
            min_input_files: 3,
            ..MaintenanceSettings::default()
        };
        let files = [
            file("a", 40),
            file("big", 90),
            file("b", 40),
            file("c", 30),
            file("d", 50),
            file("e", 10),
        ];
        let groups = plan_compaction(&files, &settings);
        let paths: Vec<Vec<&str>> = groups
            .iter()
            .map(|g| g.iter().map(|f| f.path.as_str()).collect())
            .collect();
        // `big` is not small; a+b+c = 110 > 100, so c starts the next group.
        assert_eq!(paths, vec![vec!["a", "b"], vec!["c", "d", "e"]]);
        // Too few small files: nothing.
        assert!(plan_compaction(&files[..3], &settings).is_empty());
    }

    #[test]
    fn manifests_merge_past_the_limit() {
        let settings = MaintenanceSettings {
            max_manifests: 4,
            ..MaintenanceSettings::default()
        };
        assert!(!should_merge_manifests(4, &settings));
        assert!(should_merge_manifests(5, &settings));
    }
}
