//! Trino as the marts' engine for a full rebuild (`tributary-marts run-once --rebuild --engine
//! trino`): the same current-state and totals SQL as DataFusion's ([`crate::current_state`]),
//! in Trino's dialect, run by a Trino cluster over the raw Iceberg tables pinned at the run's
//! snapshots (`FOR VERSION AS OF`). Trino returns the totals (a few rows per city and salesman
//! and period), the marts rank and publish them through the same path as every run.
//!
//! What stays on one machine: the lander (one writer per table, fenced by its lock) and the
//! ranking and publication of the totals, whose size is the number of cities and salesmen, not
//! the history. What Trino spreads over its workers: reading every event and folding it to the
//! current state and the totals.

pub mod batch;
pub mod client;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tributary_rankings::publication::{LakeSnapshots, SourceWatermark};
use tributary_rankings::ranking::PeriodTotals;

pub use client::{QueryResult, TrinoClient};

use crate::current_state::{NO_TRACE_ID, TOTALS_QUERIES, current_state_steps, totals_from_batches};
use crate::error::MartsError;
use crate::fold::source_of_table;

/// Where the Trino coordinator is and how to reach the lake through it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrinoSettings {
    /// Coordinator URL (`dev/up trino` runs one on `http://127.0.0.1:8089`).
    pub url: String,
    /// Trino catalog configured on the lake (dev/trino/iceberg.properties: `iceberg`).
    pub catalog: String,
    /// User named in `X-Trino-User`.
    pub user: String,
    /// Longest a query may take, in seconds.
    pub query_timeout_s: u64,
}

impl Default for TrinoSettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8089".into(),
            catalog: "iceberg".into(),
            user: "tributary".into(),
            query_timeout_s: 3600,
        }
    }
}

/// The DataFusion idioms of [`crate::current_state`]'s SQL and their Trino equivalents.
/// Trino's `regexp_replace` replaces every match (DataFusion needs the `'g'` flag), `to_char`
/// is `format_datetime` with Java's pattern letters (both on the UTC `timestamptz`), and `btrim`
/// is `trim`.
const DIALECT: [(&str, &str); 3] = [
    (", 'g')", ")"),
    (
        "to_char(s.sold_at, '%Y-%m')",
        "format_datetime(s.sold_at, 'yyyy-MM')",
    ),
    ("btrim(", "trim("),
];

/// `sql` (DataFusion's) in Trino's dialect.
pub fn to_trino_dialect(sql: &str) -> String {
    DIALECT
        .iter()
        .fold(sql.to_string(), |sql, (from, to)| sql.replace(from, to))
}

/// `"name"`, with embedded quotes doubled.
fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// The `WITH` clause every totals query starts with: each raw table at its pinned snapshot
/// (empty when it had none), then the current-state views.
pub fn with_current_state(catalog: &str, namespace: &str, snapshots: &LakeSnapshots) -> String {
    let raw = snapshots.0.iter().map(|s| {
        let table = format!(
            "{}.{}.{}",
            quoted(catalog),
            quoted(namespace),
            quoted(&s.table)
        );
        match s.snapshot_id {
            Some(id) => format!(
                "{} AS (SELECT * FROM {table} FOR VERSION AS OF {id})",
                s.table
            ),
            None => format!("{} AS (SELECT * FROM {table} WHERE FALSE)", s.table),
        }
    });
    // Trace ids are provenance, not totals: none of the totals reads them.
    let steps = current_state_steps([NO_TRACE_ID; 3])
        .into_iter()
        .map(|(name, sql)| format!("{name} AS ({})", to_trino_dialect(&sql)));
    format!("WITH {}", raw.chain(steps).collect::<Vec<_>>().join(",\n"))
}

/// Per source: the furthest position, the newest source time (ISO 8601) and the events, over
/// every event of the source's tables (what the marts' fold counts in its watermarks).
const WATERMARKS: &str = "
SELECT 'pg' AS source, MAX(position) AS position, to_iso8601(MAX(at)) AS newest, COUNT(*) AS events
FROM (SELECT source_lsn AS position, source_ts AS at FROM pg_sale
      UNION ALL SELECT source_lsn, source_ts FROM pg_salesman
      UNION ALL SELECT source_lsn, source_ts FROM pg_city) AS pg
UNION ALL
SELECT 'files', MAX(version_major), to_iso8601(MAX(produced_at)), COUNT(*) FROM file_sale
UNION ALL
SELECT 'erp', MAX(version_major), to_iso8601(MAX(produced_at)), COUNT(*) FROM erp_sale";

/// What Trino computed for one publication.
#[derive(Debug, Clone)]
pub struct TrinoTotals {
    /// Every total the rankings need.
    pub totals: PeriodTotals,
    /// Per source, how far the totals reach.
    pub watermarks: BTreeMap<String, SourceWatermark>,
    /// The queries' ids, in the order run.
    pub query_ids: Vec<String>,
    /// The largest peak memory of any of the queries, in bytes.
    pub peak_memory_bytes: u64,
}

/// Computes the totals of the raw tables of `namespace` at `snapshots` with Trino.
pub async fn compute_totals(
    client: &TrinoClient,
    namespace: &str,
    snapshots: &LakeSnapshots,
) -> Result<TrinoTotals, MartsError> {
    let with = with_current_state(&client.settings().catalog, namespace, snapshots);
    let mut results: [Vec<arrow::array::RecordBatch>; 4] = Default::default();
    let mut query_ids = Vec::new();
    let mut peak_memory_bytes = 0;
    for (result, (name, sql)) in results.iter_mut().zip(TOTALS_QUERIES) {
        let answer = client
            .query(name, &format!("{with}\n{}", to_trino_dialect(sql)))
            .await?;
        *result = vec![batch::to_record_batch(name, &answer)?];
        query_ids.push(answer.query_id);
        peak_memory_bytes = peak_memory_bytes.max(answer.peak_memory_bytes);
    }
    let answer = client
        .query("watermarks", &format!("{with}\n{WATERMARKS}"))
        .await?;
    query_ids.push(answer.query_id.clone());
    peak_memory_bytes = peak_memory_bytes.max(answer.peak_memory_bytes);
    Ok(TrinoTotals {
        totals: totals_from_batches(&results)?,
        watermarks: watermarks(&answer, snapshots)?,
        query_ids,
        peak_memory_bytes,
    })
}

/// The sources whose tables have a snapshot, with what [`WATERMARKS`] found in them.
fn watermarks(
    answer: &QueryResult,
    snapshots: &LakeSnapshots,
) -> Result<BTreeMap<String, SourceWatermark>, MartsError> {
    let bad = |found: String| MartsError::UnexpectedColumn {
        query: "watermarks",
        column: "*".into(),
        expected: "source, position, newest (ISO 8601), events",
        found,
    };
    let landed: Vec<&str> = snapshots
        .0
        .iter()
        .filter(|s| s.snapshot_id.is_some())
        .map(|s| source_of_table(&s.table))
        .collect();
    let mut out = BTreeMap::new();
    for row in &answer.rows {
        let [source, position, newest, events] = row.as_slice() else {
            return Err(bad(format!("{row:?}")));
        };
        let source = source.as_str().ok_or_else(|| bad(source.to_string()))?;
        if !landed.contains(&source) {
            continue;
        }
        let newest_event_at = match newest {
            Value::Null => None,
            Value::String(at) => Some(
                DateTime::parse_from_rfc3339(at)
                    .map_err(|_| bad(at.clone()))?
                    .with_timezone(&Utc),
            ),
            other => return Err(bad(other.to_string())),
        };
        out.insert(
            source.to_string(),
            SourceWatermark {
                position: position.as_i64(),
                newest_event_at,
                events: events.as_u64().ok_or_else(|| bad(events.to_string()))?,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::current_state::TOTALS_QUERIES;
    use tributary_rankings::publication::LakeSnapshot;

    /// Every DataFusion idiom the translation knows is still in the SQL (else the translation
    /// is stale), and none is left after it.
    #[test]
    fn the_dialect_covers_the_sql_it_translates() {
        let steps = current_state_steps([NO_TRACE_ID; 3]);
        let all: String = steps
            .iter()
            .map(|(_, sql)| sql.as_str())
            .chain(TOTALS_QUERIES.iter().map(|(_, sql)| *sql))
            .collect();
        for (from, _) in DIALECT {
            assert!(all.contains(from), "no {from:?} left to translate");
        }
        let trino = to_trino_dialect(&all);
        for idiom in ["'g')", "to_char(", "btrim(", "%Y"] {
            assert!(!trino.contains(idiom), "{idiom} survives the translation");
        }
    }

    #[test]
    fn raw_tables_are_pinned_and_empty_tables_read_as_empty() {
        let snapshots = LakeSnapshots(vec![
            LakeSnapshot {
                table: "pg_sale".into(),
                snapshot_id: Some(42),
            },
            LakeSnapshot {
                table: "erp_sale".into(),
                snapshot_id: None,
            },
        ]);
        let with = with_current_state("iceberg", "we\"ird", &snapshots);
        assert!(with.starts_with(
            "WITH pg_sale AS (SELECT * FROM \"iceberg\".\"we\"\"ird\".\"pg_sale\" FOR VERSION AS OF 42),\n"
        ));
        assert!(with.contains(
            "erp_sale AS (SELECT * FROM \"iceberg\".\"we\"\"ird\".\"erp_sale\" WHERE FALSE)"
        ));
        assert!(with.contains("sale_period AS ("));
    }

    #[test]
    fn watermarks_cover_the_sources_that_landed() {
        let snapshots = LakeSnapshots(vec![
            LakeSnapshot {
                table: "pg_city".into(),
                snapshot_id: Some(1),
            },
            LakeSnapshot {
                table: "erp_sale".into(),
                snapshot_id: None,
            },
        ]);
        let answer = QueryResult {
            rows: vec![
                vec![
                    "pg".into(),
                    7.into(),
                    "2026-12-03T18:34:50.311Z".into(),
                    3.into(),
                ],
                vec!["erp".into(), Value::Null, Value::Null, 0.into()],
            ],
            ..QueryResult::default()
        };
        let w = watermarks(&answer, &snapshots).unwrap();
        assert_eq!(w.keys().collect::<Vec<_>>(), vec!["pg"]);
        assert_eq!(w["pg"].position, Some(7));
        assert_eq!(w["pg"].events, 3);
        assert_eq!(
            w["pg"].newest_event_at.unwrap().timestamp_micros(),
            1_796_322_890_311_000
        );
    }
}
