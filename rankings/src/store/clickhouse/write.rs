//! The marts' side: creating the schema, writing publications and runs, and pruning them.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clickhouse::Row;
use serde::Deserialize;

use super::ClickHouseStore;
use crate::error::RankingsError;
use crate::publication::Publication;
use crate::retention::{self, PrunePlan, PublicationAge, PublicationRetention};
use crate::schema::{
    self, CITY_RANKING, CITY_SALESMAN_RANKING, CityRankingRowRef, CitySalesmanRankingRowRef,
    LOW_CARDINALITY_SETTING, MART_RUNS, MartRunRow, PUBLICATION_PERIODS, PUBLICATION_SOURCES,
    PUBLICATION_TABLES, PUBLICATIONS, PublicationPeriodRow, PublicationRow, PublicationSourceRow,
    RANKING_TABLES, SALESMAN_RANKING, SalesmanRankingRowRef,
};
use crate::store::PublicationWriter;

/// What retention reads of each publication.
#[derive(Debug, Row, Deserialize)]
struct PublicationAgeRow {
    publication_id: String,
    lake_window: u32,
    version: u64,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    computed_at: DateTime<Utc>,
}

impl ClickHouseStore {
    fn ch_err(action: impl Into<String>) -> impl FnOnce(clickhouse::error::Error) -> RankingsError {
        let action = action.into();
        move |source| RankingsError::ClickHouse { action, source }
    }

    /// The publication tables joined for an `IN (…)` list.
    fn publication_tables_list() -> String {
        Self::tables_list(&PUBLICATION_TABLES)
    }

    /// `tables` joined for an `IN (…)` list.
    fn tables_list(tables: &[&str]) -> String {
        tables
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Drops the publication tables of an earlier layout (without a `lake_window` column: before
    /// partitions, ranking tables before periods lack it too; `publication_periods` without
    /// `rows_publication_id`: before periods were carried by reference; a ranking table whose
    /// `publication_id` is a plain `String`: before it was dictionary-encoded), all six together, so the
    /// `CREATE … IF NOT EXISTS` that follow build the current layout and the next run
    /// republishes. The marts are derived from the lake, so nothing is lost; the API answers
    /// "not published" (503) until then. ADR 0003.
    async fn drop_old_layout(&self) -> Result<(), RankingsError> {
        let sql = format!(
            "SELECT table FROM system.columns WHERE database = ? AND table IN ({}) \
             GROUP BY table HAVING sum(name = 'lake_window') = 0 \
             OR (table = '{PUBLICATION_PERIODS}' AND sum(name = 'rows_publication_id') = 0) \
             OR (table IN ({}) AND sum(name = 'publication_id' AND type = 'String') > 0)",
            Self::publication_tables_list(),
            Self::tables_list(&RANKING_TABLES)
        );
        let old: Vec<String> = self
            .client
            .query(&sql)
            .bind(self.database.as_str())
            .fetch_all()
            .await
            .map_err(Self::ch_err("inspect the marts layout (system.columns)"))?;
        if old.is_empty() {
            return Ok(());
        }
        tracing::warn!(
            database = %self.database,
            tables = ?old,
            "marts tables of an earlier layout; dropping the publication tables so the next run republishes"
        );
        for table in PUBLICATION_TABLES.iter().rev() {
            let name = self.table(table);
            self.client
                .query(&format!("DROP TABLE IF EXISTS {name}"))
                .execute()
                .await
                .map_err(Self::ch_err(format!("drop old-layout table {name}")))?;
        }
        Ok(())
    }

    /// The partitions present in any publication table (active parts only).
    async fn lake_windows(&self) -> Result<BTreeSet<u32>, RankingsError> {
        let sql = format!(
            "SELECT DISTINCT partition FROM system.parts \
             WHERE database = ? AND table IN ({}) AND active",
            Self::publication_tables_list()
        );
        let partitions: Vec<String> = self
            .client
            .query(&sql)
            .bind(self.database.as_str())
            .fetch_all()
            .await
            .map_err(Self::ch_err(
                "list the publication partitions (system.parts)",
            ))?;
        Ok(partitions
            .iter()
            .filter_map(|p| match p.trim_matches('\'').parse() {
                Ok(window) => Some(window),
                Err(_) => {
                    tracing::warn!(partition = %p, "a publication partition that is not a lake window; left alone");
                    None
                }
            })
            .collect())
    }
}

#[async_trait]
impl PublicationWriter for ClickHouseStore {
    async fn ensure_schema(&self) -> Result<(), RankingsError> {
        self.drop_old_layout().await?;
        // 18.16 creates a `LowCardinality` column only with this setting; later releases have
        // it as obsolete or not at all, and would refuse an unknown one.
        let low_cardinality_setting: u64 = self
            .client
            .query("SELECT count() FROM system.settings WHERE name = ?")
            .bind(LOW_CARDINALITY_SETTING)
            .fetch_one()
            .await
            .map_err(Self::ch_err("read the server's settings (system.settings)"))?;
        for statement in schema::ddl(&self.database)? {
            let mut query = self.client.query(&statement);
            if low_cardinality_setting > 0 {
                query = query.with_setting(LOW_CARDINALITY_SETTING, "1");
            }
            query.execute().await.map_err(Self::ch_err(format!(
                "create schema ({})",
                first_line(&statement)
            )))?;
        }
        Ok(())
    }

    async fn publish(&self, publication: &Publication) -> Result<(), RankingsError> {
        // The ranking rows are made as they are written, borrowing the publication's text.
        let ranking = publication.ranking_rows();
        let records = publication.record_rows();
        // Independent tables, one insert (HTTP request) each: at once, so serializing one
        // table's rows here overlaps ClickHouse writing another's.
        tokio::try_join!(
            self.insert::<CityRankingRowRef<'_>>(CITY_RANKING, ranking.cities()),
            self.insert::<CitySalesmanRankingRowRef<'_>>(
                CITY_SALESMAN_RANKING,
                ranking.city_salesmen()
            ),
            self.insert::<SalesmanRankingRowRef<'_>>(SALESMAN_RANKING, ranking.salesmen()),
            self.insert::<PublicationPeriodRow>(PUBLICATION_PERIODS, records.periods),
            self.insert::<PublicationSourceRow>(PUBLICATION_SOURCES, records.sources),
        )?;
        // Last: a reader that sees this row sees all of the publication's rows.
        self.insert::<PublicationRow>(PUBLICATIONS, [records.publication])
            .await
    }

    async fn record_run(&self, run: &MartRunRow) -> Result<(), RankingsError> {
        self.insert::<MartRunRow>(MART_RUNS, [run.clone()]).await
    }

    async fn prune(
        &self,
        retention: &PublicationRetention,
        now: DateTime<Utc>,
    ) -> Result<PrunePlan, RankingsError> {
        let sql = format!(
            "SELECT publication_id, rows_publication_id FROM {} FINAL \
             WHERE rows_publication_id != publication_id GROUP BY publication_id, rows_publication_id",
            self.table(PUBLICATION_PERIODS)
        );
        let mut carries_from: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (publication, rows_from) in self
            .client
            .query(&sql)
            .fetch_all::<(String, String)>()
            .await
            .map_err(Self::ch_err("read the periods carried by reference"))?
        {
            carries_from
                .entry(publication)
                .or_default()
                .insert(rows_from);
        }
        let sql = format!("SELECT ?fields FROM {} FINAL", self.table(PUBLICATIONS));
        let publications: Vec<PublicationAge> = self
            .client
            .query(&sql)
            .fetch_all::<PublicationAgeRow>()
            .await
            .map_err(Self::ch_err("read the publications' ages"))?
            .into_iter()
            .map(|r| PublicationAge {
                carries_from: carries_from.remove(&r.publication_id).unwrap_or_default(),
                publication_id: r.publication_id,
                lake_window: r.lake_window,
                version: r.version,
                computed_at: r.computed_at,
            })
            .collect();
        let windows = self.lake_windows().await?;
        let plan = retention::plan_prune(&publications, &windows, now, retention);
        for window in &plan.drop_windows {
            // `publications` first (the list ends with it): the publication disappears as a
            // whole before its rows do.
            for table in PUBLICATION_TABLES.iter().rev() {
                let name = self.table(table);
                self.client
                    .query(&format!("ALTER TABLE {name} DROP PARTITION {window}"))
                    .execute()
                    .await
                    .map_err(Self::ch_err(format!("drop partition {window} of {name}")))?;
            }
        }
        Ok(plan)
    }

    async fn prune_runs(&self, before: DateTime<Utc>) -> Result<u64, RankingsError> {
        let cutoff = u32::try_from(retention::runs_cutoff(before).timestamp()).unwrap_or(0);
        let name = self.table(MART_RUNS);
        let old: u64 = self
            .client
            .query(&format!(
                "SELECT count() FROM {name} WHERE started_at < toDateTime(?)"
            ))
            .bind(cutoff)
            .fetch_one()
            .await
            .map_err(Self::ch_err(format!("count old runs in {name}")))?;
        if old > 0 {
            // A mutation (ClickHouse 18.16 has no TTL): asynchronous, the rows go once it has
            // rewritten the parts holding them.
            self.client
                .query(&format!(
                    "ALTER TABLE {name} DELETE WHERE started_at < toDateTime(?)"
                ))
                .bind(cutoff)
                .execute()
                .await
                .map_err(Self::ch_err(format!("delete old runs from {name}")))?;
        }
        Ok(old)
    }
}

fn first_line(sql: &str) -> &str {
    sql.lines().next().unwrap_or(sql).trim_end_matches(" (")
}
