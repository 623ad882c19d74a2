//! Keeping ClickHouse bounded: a prune drops the partitions of publications older than the
//! retention (the store decides which: [`tributary_rankings::retention`]), deletes old
//! `mart_runs` rows, and releases the lake pins of the publications it dropped. The scheduled
//! job prunes every `retention.interval_s`; `tributary-marts prune` prunes once.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tributary_rankings::PublicationWriter;
use tributary_raw::pins::SnapshotPins;

use crate::config::RetentionSettings;
use crate::error::MartsError;

/// The lake-pin holder of one publication of the marts instance `holder`.
pub fn publication_holder(holder: &str, publication_id: &str) -> String {
    format!("{}{publication_id}", publication_prefix(holder))
}

fn publication_prefix(holder: &str) -> String {
    format!("{holder}:publication:")
}

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Partitions (lake windows) dropped from every publication table.
    pub dropped_partitions: Vec<u32>,
    /// The publications they held.
    pub dropped_publications: Vec<String>,
    /// Publications left.
    pub retained_publications: usize,
    /// `mart_runs` rows deleted (asynchronously, by a ClickHouse mutation).
    pub runs_deleted: u64,
    /// Lake pins released (those of dropped publications).
    pub pins_released: u64,
    /// Deleted sales the kept state forgot (past `tombstones_s`).
    pub tombstones_forgotten: u64,
}

/// Prunes `store` at `now` by `settings`; with `pins` (the marts' pins and holder), releases
/// the lake pins of every publication the rule no longer keeps and refreshes the rest.
pub async fn prune(
    store: &dyn PublicationWriter,
    pins: Option<(&SnapshotPins, &str)>,
    namespace: &str,
    settings: &RetentionSettings,
    now: DateTime<Utc>,
) -> Result<PruneReport, MartsError> {
    let plan = store.prune(&settings.publications(), now).await?;
    let runs_before = now - chrono::Duration::seconds(settings.runs_s.min(i64::MAX as u64) as i64);
    let runs_deleted = store.prune_runs(runs_before).await?;
    let mut report = PruneReport {
        dropped_partitions: plan.drop_windows.iter().copied().collect(),
        dropped_publications: plan.dropped,
        retained_publications: plan.retained.len(),
        runs_deleted,
        pins_released: 0,
        tombstones_forgotten: 0,
    };
    if let Some((pins, holder)) = pins {
        // Only what the rule keeps holds lake snapshots: a publication past its retention that
        // still shares a partition with a kept one is going, and must not hold the lake back.
        let keep: Vec<String> = plan
            .kept
            .iter()
            .map(|id| publication_holder(holder, id))
            .collect();
        report.pins_released = pins
            .retain_holders(namespace, &publication_prefix(holder), &keep)
            .await?;
    }
    if !report.dropped_partitions.is_empty() || report.runs_deleted > 0 {
        tracing::info!(
            partitions = ?report.dropped_partitions,
            publications = report.dropped_publications.len(),
            retained = report.retained_publications,
            runs_deleted = report.runs_deleted,
            pins_released = report.pins_released,
            "pruned old publications"
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publication_holders_share_the_instance_prefix() {
        let holder = publication_holder("marts:marts_state_marts", "pg_sale:1,pg_city:none");
        assert_eq!(
            holder,
            "marts:marts_state_marts:publication:pg_sale:1,pg_city:none"
        );
        assert!(holder.starts_with(&publication_prefix("marts:marts_state_marts")));
        assert!(!holder.starts_with(&publication_prefix("marts:marts_state_other")));
    }
}
