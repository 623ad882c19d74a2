//! The marts' side: creating the schema and writing publications and runs.

use async_trait::async_trait;

use super::ClickHouseStore;
use crate::error::RankingsError;
use crate::publication::Publication;
use crate::schema::{
    self, CITY_RANKING, CITY_SALESMAN_RANKING, MART_RUNS, MartRunRow, PUBLICATION_PERIODS,
    PUBLICATION_SOURCES, PUBLICATIONS, RANKING_TABLES, SALESMAN_RANKING,
};
use crate::store::PublicationWriter;

impl ClickHouseStore {
    /// Drops the tables of the layout before periods (ranking tables without a `period`
    /// column), with `publications` and `publication_periods`, so the `CREATE … IF NOT EXISTS`
    /// that follow build the current layout and the next run republishes. The marts are derived
    /// from the lake, so nothing is lost; the API answers "not published" (503) until then
    /// rather than serving rows without a period. ADR 0003.
    async fn drop_old_layout(&self) -> Result<(), RankingsError> {
        let tables = RANKING_TABLES
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "SELECT table FROM system.columns WHERE database = ? AND table IN ({tables}) \
             GROUP BY table HAVING sum(name = 'period') = 0"
        );
        let old: Vec<String> = self
            .client
            .query(&sql)
            .bind(self.database.as_str())
            .fetch_all()
            .await
            .map_err(|source| RankingsError::ClickHouse {
                action: "inspect the marts layout (system.columns)".into(),
                source,
            })?;
        if old.is_empty() {
            return Ok(());
        }
        tracing::warn!(
            database = %self.database,
            tables = ?old,
            "marts tables without a period column; dropping them so the next run republishes"
        );
        let drop = old
            .iter()
            .map(String::as_str)
            .chain([PUBLICATIONS, PUBLICATION_PERIODS]);
        for table in drop {
            let name = self.table(table);
            self.client
                .query(&format!("DROP TABLE IF EXISTS {name}"))
                .execute()
                .await
                .map_err(|source| RankingsError::ClickHouse {
                    action: format!("drop old-layout table {name}"),
                    source,
                })?;
        }
        Ok(())
    }
}

#[async_trait]
impl PublicationWriter for ClickHouseStore {
    async fn ensure_schema(&self) -> Result<(), RankingsError> {
        self.drop_old_layout().await?;
        for statement in schema::ddl(&self.database)? {
            self.client
                .query(&statement)
                .execute()
                .await
                .map_err(|source| RankingsError::ClickHouse {
                    action: format!("create schema ({})", first_line(&statement)),
                    source,
                })?;
        }
        Ok(())
    }

    async fn publish(&self, publication: &Publication) -> Result<(), RankingsError> {
        let rows = publication.rows();
        self.insert(CITY_RANKING, &rows.cities).await?;
        self.insert(CITY_SALESMAN_RANKING, &rows.city_salesmen)
            .await?;
        self.insert(SALESMAN_RANKING, &rows.salesmen).await?;
        self.insert(PUBLICATION_PERIODS, &rows.periods).await?;
        self.insert(PUBLICATION_SOURCES, &rows.sources).await?;
        // Last: a reader that sees this row sees all of the publication's rows.
        self.insert(PUBLICATIONS, std::slice::from_ref(&rows.publication))
            .await
    }

    async fn record_run(&self, run: &MartRunRow) -> Result<(), RankingsError> {
        self.insert(MART_RUNS, std::slice::from_ref(run)).await
    }
}

fn first_line(sql: &str) -> &str {
    sql.lines().next().unwrap_or(sql).trim_end_matches(" (")
}
