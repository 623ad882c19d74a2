//! Which publications ClickHouse keeps, decided from the publications alone. Pure: the store
//! applies the plan by dropping whole `lake_window` partitions ([`crate::schema`]).
//!
//! Kept: the latest publication, any publication an operator pinned, and every publication
//! computed within the retention. A partition is dropped only when it holds none of those, is
//! older than the latest publication's and its whole window is older than the retention; a
//! publication that shares a partition with a kept one stays with it. A partition holding ranking
//! rows that a publication staying carries by reference (a period unchanged since) stays too.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::schema::LAKE_WINDOW_SECONDS;

/// How long publications are kept (the marts' `[retention]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicationRetention {
    /// Publications computed within this many seconds are kept.
    pub publications_s: u64,
    /// Publications kept at any age (by id).
    pub pinned: BTreeSet<String>,
}

/// One publication, as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicationAge {
    /// Its id.
    pub publication_id: String,
    /// The partition its rows are in.
    pub lake_window: u32,
    /// Its ReplacingMergeTree version (the latest publication has the highest).
    pub version: u64,
    /// When the run that wrote it started.
    pub computed_at: DateTime<Utc>,
    /// The earlier publications whose ranking rows it carries periods of, by reference
    /// ([`crate::schema`]): their partitions stay as long as it does.
    pub carries_from: BTreeSet<String>,
}

/// What a prune does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunePlan {
    /// Partitions to drop from every publication table.
    pub drop_windows: BTreeSet<u32>,
    /// The publications those partitions hold.
    pub dropped: Vec<String>,
    /// The publications that stay, oldest first.
    pub retained: Vec<String>,
    /// Of those, the ones the rule keeps (latest, pinned, recent), oldest first: the others
    /// only share a partition with one of these and go with it later.
    pub kept: Vec<String>,
}

/// Plans a prune at `now` of the `publications` (one entry each) whose tables hold the
/// partitions `windows` (which may include partitions with no publication row: a run that
/// stopped before writing it).
pub fn plan_prune(
    publications: &[PublicationAge],
    windows: &BTreeSet<u32>,
    now: DateTime<Utc>,
    retention: &PublicationRetention,
) -> PrunePlan {
    let Some(latest) = publications
        .iter()
        .max_by(|a, b| (a.version, &a.publication_id).cmp(&(b.version, &b.publication_id)))
    else {
        // Nothing published yet: whatever is there belongs to the first publication.
        return PrunePlan {
            retained: Vec::new(),
            ..PrunePlan::default()
        };
    };
    let cutoff = now
        .timestamp()
        .saturating_sub(retention.publications_s.min(i64::MAX as u64) as i64);
    let kept = |p: &PublicationAge| {
        p.publication_id == latest.publication_id
            || retention.pinned.contains(&p.publication_id)
            || p.computed_at.timestamp() >= cutoff
    };
    let mut kept_windows: BTreeSet<u32> = publications
        .iter()
        .filter(|p| kept(p))
        .map(|p| p.lake_window)
        .collect();
    // Every publication in a kept partition stays readable, so the partitions holding the rows
    // it carries by reference stay too, and theirs in turn.
    let window_of: BTreeMap<&str, u32> = publications
        .iter()
        .map(|p| (p.publication_id.as_str(), p.lake_window))
        .collect();
    loop {
        let referenced: BTreeSet<u32> = publications
            .iter()
            .filter(|p| kept_windows.contains(&p.lake_window))
            .flat_map(|p| p.carries_from.iter())
            .filter_map(|id| window_of.get(id.as_str()).copied())
            .filter(|w| !kept_windows.contains(w))
            .collect();
        if referenced.is_empty() {
            break;
        }
        kept_windows.extend(referenced);
    }
    let drop_windows: BTreeSet<u32> = windows
        .iter()
        .copied()
        .filter(|w| {
            !kept_windows.contains(w)
                && *w < latest.lake_window
                && (i64::from(*w) + 1) * LAKE_WINDOW_SECONDS <= cutoff
        })
        .collect();
    let mut by_age: BTreeMap<(u64, &str), &PublicationAge> = BTreeMap::new();
    for p in publications {
        by_age.insert((p.version, &p.publication_id), p);
    }
    let (dropped, retained): (Vec<&PublicationAge>, Vec<&PublicationAge>) = by_age
        .into_values()
        .partition(|p| drop_windows.contains(&p.lake_window));
    let ids = |ps: Vec<&PublicationAge>| ps.into_iter().map(|p| p.publication_id.clone()).collect();
    let kept_ids = retained
        .iter()
        .filter(|p| kept(p))
        .map(|p| p.publication_id.clone())
        .collect();
    PrunePlan {
        drop_windows,
        dropped: ids(dropped),
        retained: ids(retained),
        kept: kept_ids,
    }
}

/// `before` rounded down to the hour: `mart_runs` rows of runs started earlier go.
pub fn runs_cutoff(before: DateTime<Utc>) -> DateTime<Utc> {
    let secs = before.timestamp();
    DateTime::from_timestamp(secs - secs.rem_euclid(3_600), 0).unwrap_or(before)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600;

    /// A publication computed at `secs` whose lake commit was a minute earlier.
    fn publication(id: &str, secs: i64) -> PublicationAge {
        PublicationAge {
            publication_id: id.into(),
            lake_window: crate::schema::lake_window(Some((secs - 60) * 1_000)),
            version: u64::try_from(secs * 1_000).unwrap(),
            computed_at: DateTime::from_timestamp(secs, 0).unwrap(),
            carries_from: BTreeSet::new(),
        }
    }

    fn retention(hours: u64, pinned: &[&str]) -> PublicationRetention {
        PublicationRetention {
            publications_s: hours * 3_600,
            pinned: pinned.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn windows(ps: &[PublicationAge]) -> BTreeSet<u32> {
        ps.iter().map(|p| p.lake_window).collect()
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn drops_what_is_older_than_the_retention_and_keeps_the_rest() {
        let t0 = 1_000 * HOUR;
        let ps: Vec<PublicationAge> = (0..10)
            .map(|i| publication(&format!("p{i}"), t0 + i * HOUR))
            .collect();
        // Now: an hour after the last one, retention 3 hours: p7, p8, p9 stay.
        let plan = plan_prune(&ps, &windows(&ps), at(t0 + 10 * HOUR), &retention(3, &[]));
        assert_eq!(plan.retained, ["p7", "p8", "p9"]);
        assert_eq!(plan.kept, plan.retained);
        assert_eq!(plan.dropped, ["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);
        assert_eq!(plan.drop_windows.len(), 7);
    }

    #[test]
    fn the_latest_and_pinned_publications_stay_at_any_age() {
        let t0 = 1_000 * HOUR;
        let ps = vec![
            publication("old", t0),
            publication("pinned", t0 + HOUR),
            publication("latest", t0 + 2 * HOUR),
        ];
        let plan = plan_prune(
            &ps,
            &windows(&ps),
            at(t0 + 100 * HOUR),
            &retention(1, &["pinned"]),
        );
        assert_eq!(plan.retained, ["pinned", "latest"]);
        assert_eq!(plan.dropped, ["old"]);
    }

    #[test]
    fn a_partition_shared_with_a_kept_publication_stays_whole() {
        let t0 = 1_000 * HOUR;
        // Two publications a minute apart share a ten-minute window; the second is pinned.
        let ps = vec![
            publication("a", t0 + 60),
            publication("b", t0 + 120),
            publication("latest", t0 + 5 * HOUR),
        ];
        assert_eq!(ps[0].lake_window, ps[1].lake_window);
        let plan = plan_prune(
            &ps,
            &windows(&ps),
            at(t0 + 10 * HOUR),
            &retention(1, &["b"]),
        );
        assert!(plan.drop_windows.is_empty());
        assert_eq!(plan.retained, ["a", "b", "latest"]);
        // `a` stays only with `b`'s partition: not kept by the rule.
        assert_eq!(plan.kept, ["b", "latest"]);
    }

    #[test]
    fn partitions_holding_rows_a_staying_publication_carries_stay_with_it() {
        let t0 = 1_000 * HOUR;
        let carrying = |id: &str, secs: i64, from: &[&str]| PublicationAge {
            carries_from: from.iter().map(|s| s.to_string()).collect(),
            ..publication(id, secs)
        };
        // `latest` carries a month from `mid`, which carries another from `first` (a chain of
        // references across publications, one hop each); `other` is referenced by nobody.
        let ps = vec![
            publication("first", t0),
            publication("other", t0 + HOUR),
            carrying("mid", t0 + 2 * HOUR, &["first"]),
            carrying("latest", t0 + 50 * HOUR, &["mid", "first"]),
        ];
        let plan = plan_prune(&ps, &windows(&ps), at(t0 + 100 * HOUR), &retention(1, &[]));
        assert_eq!(plan.dropped, ["other"]);
        assert_eq!(plan.retained, ["first", "mid", "latest"]);
        assert_eq!(plan.kept, ["latest"]);
        // A reference to a publication no longer there (its partition already gone) is no
        // reason to keep anything else.
        let ps = vec![
            publication("other", t0 + HOUR),
            carrying("latest", t0 + 50 * HOUR, &["gone"]),
        ];
        let plan = plan_prune(&ps, &windows(&ps), at(t0 + 100 * HOUR), &retention(1, &[]));
        assert_eq!(plan.dropped, ["other"]);
    }

    #[test]
    fn partitions_without_a_publication_row_go_once_old_and_never_when_new() {
        let t0 = 1_000 * HOUR;
        let ps = vec![publication("latest", t0 + 5 * HOUR)];
        // An old run that stopped before its publication row, and a run writing right now.
        let orphan = crate::schema::lake_window(Some(t0 * 1_000));
        let in_flight = crate::schema::lake_window(Some((t0 + 6 * HOUR) * 1_000));
        let mut present = windows(&ps);
        present.extend([orphan, in_flight]);
        let plan = plan_prune(&ps, &present, at(t0 + 100 * HOUR), &retention(1, &[]));
        assert_eq!(plan.drop_windows, [orphan].into());
        assert!(plan.dropped.is_empty());
    }

    #[test]
    fn runs_are_cut_at_the_hour() {
        assert_eq!(runs_cutoff(at(10 * HOUR + 59 * 60)), at(10 * HOUR));
        assert_eq!(runs_cutoff(at(10 * HOUR)), at(10 * HOUR));
    }

    #[test]
    fn nothing_published_drops_nothing() {
        let plan = plan_prune(&[], &[1, 2, 3].into(), at(1_000 * HOUR), &retention(1, &[]));
        assert_eq!(plan, PrunePlan::default());
    }
}
