//! [`PublicationStore`] on ClickHouse over HTTP, compatible with 18.16 and current servers.
//!
//! The `clickhouse` crate validates rows through `RowBinaryWithNamesAndTypes`, which 18.16 does
//! not speak, so validation is off and the row types in [`crate::schema`] must match the DDL
//! column for column (the contract tests check a round trip on a real server).

use async_trait::async_trait;
use clickhouse::{Client, RowOwned, RowRead, RowWrite};
use tributary_common::ClickHouseSettings;

use super::{Page, PublicationStore};
use crate::error::MartsError;
use crate::period::Period;
use crate::publication::Publication;
use crate::schema::{
    self, CITY_RANKING, CITY_SALESMAN_RANKING, CityRankingRow, CitySalesmanRankingRow, MART_RUNS,
    MartRunRow, PUBLICATION_PERIODS, PUBLICATION_SOURCES, PUBLICATIONS, PublicationPeriodRow,
    PublicationRow, RANKING_TABLES, SALESMAN_RANKING, SalesmanRankingRow,
};

/// The marts database on a ClickHouse server.
#[derive(Clone)]
pub struct ClickHouseStore {
    client: Client,
    database: String,
}

impl std::fmt::Debug for ClickHouseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseStore")
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl ClickHouseStore {
    /// A store on the server and database of `settings`. Nothing is contacted yet.
    pub fn new(settings: &ClickHouseSettings) -> Result<Self, MartsError> {
        schema::validate_database(&settings.database)?;
        let client = Client::default()
            .with_url(&settings.url)
            .with_user(&settings.user)
            .with_password(&settings.password)
            .with_validation(false);
        Ok(Self {
            client,
            database: settings.database.clone(),
        })
    }

    /// The database this store writes to.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// A client on the server, for tests and tooling (queries name `database.table` in full).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn table(&self, table: &str) -> String {
        format!("{}.{table}", self.database)
    }

    async fn insert<T>(&self, table: &str, rows: &[T]) -> Result<(), MartsError>
    where
        T: RowOwned + RowWrite,
    {
        let name = self.table(table);
        let err = |source| MartsError::ClickHouse {
            action: format!("insert into {name}"),
            source,
        };
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self
            .client
            .insert_unescaped::<T>(&name)
            .await
            .map_err(err)?;
        for row in rows {
            insert.write(row).await.map_err(err)?;
        }
        insert.end().await.map_err(err)
    }

    /// One page of a ranking table of one publication, in rank order.
    async fn ranking_page<T>(
        &self,
        table: &str,
        action: &str,
        publication_id: &str,
        period: Period,
        page: Page,
    ) -> Result<Vec<T>, MartsError>
    where
        T: RowOwned + RowRead,
    {
        let sql = format!(
            "SELECT ?fields FROM {} FINAL WHERE publication_id = ? AND period = ? \
             ORDER BY rank LIMIT ?, ?",
            self.table(table)
        );
        let query = self
            .client
            .query(&sql)
            .bind(publication_id)
            .bind(period.key())
            .bind(page.offset)
            .bind(page.limit);
        self.fetch_all(action, query).await
    }

    async fn fetch_all<T>(
        &self,
        action: &str,
        query: clickhouse::query::Query,
    ) -> Result<Vec<T>, MartsError>
    where
        T: RowOwned + RowRead,
    {
        query
            .fetch_all::<T>()
            .await
            .map_err(|source| MartsError::ClickHouse {
                action: action.to_string(),
                source,
            })
    }
}

impl ClickHouseStore {
    /// Drops the tables of the layout before periods (ranking tables without a `period`
    /// column), with `publications` and `publication_periods`, so the `CREATE … IF NOT EXISTS`
    /// that follow build the current layout and the next run republishes. The marts are derived
    /// from the lake, so nothing is lost; the API answers "not published" (503) until then
    /// rather than serving rows without a period. ADR 0003.
    async fn drop_old_layout(&self) -> Result<(), MartsError> {
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
            .map_err(|source| MartsError::ClickHouse {
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
                .map_err(|source| MartsError::ClickHouse {
                    action: format!("drop old-layout table {name}"),
                    source,
                })?;
        }
        Ok(())
    }
}

#[async_trait]
impl PublicationStore for ClickHouseStore {
    async fn ensure_schema(&self) -> Result<(), MartsError> {
        self.drop_old_layout().await?;
        for statement in schema::ddl(&self.database)? {
            self.client
                .query(&statement)
                .execute()
                .await
                .map_err(|source| MartsError::ClickHouse {
                    action: format!("create schema ({})", first_line(&statement)),
                    source,
                })?;
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), MartsError> {
        self.client
            .query("SELECT 1")
            .fetch_one::<u8>()
            .await
            .map(|_| ())
            .map_err(|source| MartsError::ClickHouse {
                action: "ping".into(),
                source,
            })
    }

    async fn publish(&self, publication: &Publication) -> Result<(), MartsError> {
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

    async fn latest_publication(&self) -> Result<Option<PublicationRow>, MartsError> {
        let sql = format!(
            "SELECT ?fields FROM {} FINAL ORDER BY version DESC, publication_id DESC LIMIT 1",
            self.table(PUBLICATIONS)
        );
        match self.client.query(&sql).fetch_all::<PublicationRow>().await {
            Ok(rows) => Ok(rows.into_iter().next()),
            // Before the marts' first run the database or table does not exist yet: that is
            // "nothing published", not a failure.
            Err(clickhouse::error::Error::BadResponse(message))
                if matches!(
                    server_error_code(&message),
                    Some(UNKNOWN_TABLE | UNKNOWN_DATABASE)
                ) =>
            {
                Ok(None)
            }
            Err(source) => Err(MartsError::ClickHouse {
                action: "read latest publication".into(),
                source,
            }),
        }
    }

    async fn city_ranking(
        &self,
        publication_id: &str,
        period: Period,
        page: Page,
    ) -> Result<Vec<CityRankingRow>, MartsError> {
        self.ranking_page(
            CITY_RANKING,
            "read city ranking",
            publication_id,
            period,
            page,
        )
        .await
    }

    async fn top_city_salesmen(
        &self,
        publication_id: &str,
        period: Period,
        city_ids: &[i64],
        max_rank: u32,
    ) -> Result<Vec<CitySalesmanRankingRow>, MartsError> {
        if city_ids.is_empty() || max_rank == 0 {
            return Ok(Vec::new());
        }
        // `IN (…)` of integers formatted here: the crate binds slices as `[…]`, which old
        // servers do not accept on the right of IN.
        let ids = city_ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "SELECT ?fields FROM {} FINAL WHERE publication_id = ? AND period = ? \
             AND city_id IN ({ids}) AND rank <= ? ORDER BY city_id, rank",
            self.table(CITY_SALESMAN_RANKING)
        );
        let query = self
            .client
            .query(&sql)
            .bind(publication_id)
            .bind(period.key())
            .bind(max_rank);
        self.fetch_all("read city salesmen", query).await
    }

    async fn city_salesman_ranking(
        &self,
        publication_id: &str,
        period: Period,
        city_id: i64,
        page: Page,
    ) -> Result<Vec<CitySalesmanRankingRow>, MartsError> {
        let sql = format!(
            "SELECT ?fields FROM {} FINAL WHERE publication_id = ? AND period = ? \
             AND city_id = ? ORDER BY rank LIMIT ?, ?",
            self.table(CITY_SALESMAN_RANKING)
        );
        let query = self
            .client
            .query(&sql)
            .bind(publication_id)
            .bind(period.key())
            .bind(city_id)
            .bind(page.offset)
            .bind(page.limit);
        self.fetch_all("read city salesman ranking", query).await
    }

    async fn city(
        &self,
        publication_id: &str,
        period: Period,
        city_id: i64,
    ) -> Result<Option<CityRankingRow>, MartsError> {
        let sql = format!(
            "SELECT ?fields FROM {} FINAL WHERE publication_id = ? AND period = ? \
             AND city_id = ? LIMIT 1",
            self.table(CITY_RANKING)
        );
        let query = self
            .client
            .query(&sql)
            .bind(publication_id)
            .bind(period.key())
            .bind(city_id);
        let rows = self.fetch_all("read city", query).await?;
        Ok(rows.into_iter().next())
    }

    async fn salesman_ranking(
        &self,
        publication_id: &str,
        period: Period,
        page: Page,
    ) -> Result<Vec<SalesmanRankingRow>, MartsError> {
        self.ranking_page(
            SALESMAN_RANKING,
            "read salesman ranking",
            publication_id,
            period,
            page,
        )
        .await
    }

    async fn period(
        &self,
        publication_id: &str,
        period: Period,
    ) -> Result<Option<PublicationPeriodRow>, MartsError> {
        let sql = format!(
            "SELECT ?fields FROM {} FINAL WHERE publication_id = ? AND period = ? LIMIT 1",
            self.table(PUBLICATION_PERIODS)
        );
        let query = self
            .client
            .query(&sql)
            .bind(publication_id)
            .bind(period.key());
        let rows = self.fetch_all("read publication period", query).await?;
        Ok(rows.into_iter().next())
    }

    async fn periods(&self, publication_id: &str) -> Result<Vec<PublicationPeriodRow>, MartsError> {
        // `all` first, then the months: `YYYY-MM` sorts as text in calendar order.
        let sql = format!(
            "SELECT ?fields FROM {} FINAL WHERE publication_id = ? \
             ORDER BY period = 'all' DESC, period",
            self.table(PUBLICATION_PERIODS)
        );
        let query = self.client.query(&sql).bind(publication_id);
        self.fetch_all("read publication periods", query).await
    }

    async fn sources(
        &self,
        publication_id: &str,
    ) -> Result<Vec<crate::schema::PublicationSourceRow>, MartsError> {
        let sql = format!(
            "SELECT ?fields FROM {} FINAL WHERE publication_id = ? ORDER BY source",
            self.table(PUBLICATION_SOURCES)
        );
        let query = self.client.query(&sql).bind(publication_id);
        self.fetch_all("read publication sources", query).await
    }

    async fn record_run(&self, run: &MartRunRow) -> Result<(), MartsError> {
        self.insert(MART_RUNS, std::slice::from_ref(run)).await
    }

    async fn runs(&self, limit: u32) -> Result<Vec<MartRunRow>, MartsError> {
        let sql = format!(
            "SELECT ?fields FROM {} ORDER BY started_at DESC, run_id DESC LIMIT ?",
            self.table(MART_RUNS)
        );
        let query = self.client.query(&sql).bind(limit);
        self.fetch_all("read mart runs", query).await
    }
}

fn first_line(sql: &str) -> &str {
    sql.lines().next().unwrap_or(sql).trim_end_matches(" (")
}

/// ClickHouse `UNKNOWN_TABLE`.
const UNKNOWN_TABLE: u32 = 60;
/// ClickHouse `UNKNOWN_DATABASE`.
const UNKNOWN_DATABASE: u32 = 81;

/// The error code of a server exception: `Code: 81, e.displayText() = …` (18.16) or
/// `Code: 81. DB::Exception: …` (current releases).
fn server_error_code(message: &str) -> Option<u32> {
    let rest = &message[message.find("Code: ")? + "Code: ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_server_error_codes_of_old_and_new_servers() {
        let old = "Code: 81, e.displayText() = DB::Exception: Database x doesn't exist";
        let new = "Code: 60. DB::Exception: Table x.y does not exist. (UNKNOWN_TABLE)";
        assert_eq!(server_error_code(old), Some(UNKNOWN_DATABASE));
        assert_eq!(server_error_code(new), Some(UNKNOWN_TABLE));
        assert_eq!(server_error_code("Code: 600. other"), Some(600));
        assert_eq!(server_error_code("connection reset"), None);
    }
}
