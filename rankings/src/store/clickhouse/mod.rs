//! [`PublicationWriter`](super::PublicationWriter) and [`RankingQueries`](super::RankingQueries) on ClickHouse over HTTP, compatible with 18.16 and current servers.
//!
//! The `clickhouse` crate validates rows through `RowBinaryWithNamesAndTypes`, which 18.16 does
//! not speak, so validation is off and the row types in [`crate::schema`] must match the DDL
//! column for column (the contract tests check a round trip on a real server).

mod query;
mod write;

use clickhouse::{Client, Row, RowOwned, RowRead, RowWrite};
use tributary_common::{ClickHouseCompression, ClickHouseSettings};

use super::Page;
use crate::error::RankingsError;
use crate::period::Period;
use crate::schema;

/// The marts database on a ClickHouse server.
#[derive(Clone)]
pub struct ClickHouseStore {
    client: Client,
    database: String,
    /// Bound on each query (`clickhouse.timeout_ms`; `None`: unbounded).
    timeout: Option<std::time::Duration>,
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
    pub fn new(settings: &ClickHouseSettings) -> Result<Self, RankingsError> {
        schema::validate_database(&settings.database)?;
        let client = Client::default()
            .with_url(&settings.url)
            .with_user(&settings.user)
            .with_password(&settings.password)
            .with_validation(false)
            .with_compression(match settings.compression {
                ClickHouseCompression::None => clickhouse::Compression::None,
                ClickHouseCompression::Lz4 => clickhouse::Compression::Lz4,
            });
        Ok(Self {
            client,
            database: settings.database.clone(),
            timeout: (settings.timeout_ms > 0)
                .then(|| std::time::Duration::from_millis(settings.timeout_ms)),
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

    /// The condition on a ranking table for the rows of one period of one publication (binds:
    /// the publication id, then the period's key): its own rows, or those of the earlier
    /// publication it carries the period from by reference (`publication_periods`
    /// `.rows_publication_id`, [`crate::schema`]).
    fn rows_of_period(&self) -> String {
        self.rows_of("publication_id = ? AND period = ?")
    }

    /// The same for every month of one publication (binds: the publication id, then
    /// [`Period::ALL`]).
    fn rows_of_months(&self) -> String {
        self.rows_of("publication_id = ? AND period != ?")
    }

    /// The same for every period of one publication (binds: the publication id).
    fn rows_of_publication(&self) -> String {
        self.rows_of("publication_id = ?")
    }

    fn rows_of(&self, periods: &str) -> String {
        format!(
            "(publication_id, period) IN (SELECT rows_publication_id, period FROM {} FINAL \
             WHERE {periods})",
            self.table(schema::PUBLICATION_PERIODS)
        )
    }

    async fn insert<'r, T>(
        &self,
        table: &str,
        rows: impl IntoIterator<Item = T::Value<'r>, IntoIter: Send>,
    ) -> Result<(), RankingsError>
    where
        T: Row + RowWrite,
    {
        let name = self.table(table);
        let err = |source| RankingsError::ClickHouse {
            action: format!("insert into {name}"),
            source,
        };
        let mut rows = rows.into_iter().peekable();
        if rows.peek().is_none() {
            return Ok(());
        }
        let mut insert = self
            .client
            .insert_unescaped::<T>(&name)
            .await
            .map_err(err)?;
        insert = insert.with_timeouts(self.timeout, self.timeout);
        for row in rows {
            insert.write(&row).await.map_err(err)?;
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
    ) -> Result<Vec<T>, RankingsError>
    where
        T: RowOwned + RowRead + RankingRow,
    {
        let sql = format!(
            "SELECT ?fields FROM {} FINAL WHERE {} ORDER BY rank LIMIT ?, ?",
            self.table(table),
            self.rows_of_period()
        );
        let query = self
            .client
            .query(&sql)
            .bind(publication_id)
            .bind(period.key())
            .bind(page.offset)
            .bind(page.limit);
        self.fetch_rows(publication_id, action, query).await
    }

    /// Every row of one publication in a ranking table, every period (one pass over the
    /// partition; the order is left to the reader), on the path from a publication to the API
    /// serving it; the periods it carries by reference are read where they are. `FINAL` is applied here rather than by the server ([`latest_versions`]): the
    /// same rows, read about twice as fast from an 18.16 server
    /// (bench/results/clickhouse-final-2026-12-06.md). The `publication_id` column is not sent:
    /// it is the same in every row, and the widest (about 150 of a row's 235 bytes); the rows
    /// get it back here. (Its stand-in is not named `publication_id`: in ClickHouse an alias
    /// of the select list would be the column `WHERE` compares.)
    async fn whole_table<T>(
        &self,
        table: &str,
        action: &str,
        publication_id: &str,
        only: Option<&[Period]>,
    ) -> Result<Vec<T>, RankingsError>
    where
        T: RowOwned + RowRead + RankingRow,
    {
        if only.is_some_and(<[Period]>::is_empty) {
            return Ok(Vec::new());
        }
        let rows_of = match only {
            None => self.rows_of_publication(),
            // Keys of parsed periods (`all`, `YYYY-MM`): nothing to escape.
            Some(periods) => self.rows_of(&format!(
                "publication_id = ? AND period IN ({})",
                periods
                    .iter()
                    .map(|p| format!("'{}'", p.key()))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
        };
        let sql = format!(
            "SELECT '' AS unsent, {} FROM {} WHERE {rows_of}",
            T::COLUMNS_AFTER_ID,
            self.table(table),
        );
        let query = self.client.query(&sql).bind(publication_id);
        let mut rows: Vec<T> = latest_versions(self.fetch_all(action, query).await?);
        for row in &mut rows {
            row.set_publication_id(publication_id);
        }
        Ok(rows)
    }

    /// Ranking rows read for `publication_id` (by [`Self::rows_of_period`] or its kin): each gets
    /// that publication, as if it had written them all, whichever publication holds them.
    async fn fetch_rows<T>(
        &self,
        publication_id: &str,
        action: &str,
        query: clickhouse::query::Query,
    ) -> Result<Vec<T>, RankingsError>
    where
        T: RowOwned + RowRead + RankingRow,
    {
        let mut rows: Vec<T> = self.fetch_all(action, query).await?;
        for row in &mut rows {
            row.set_publication_id(publication_id);
        }
        Ok(rows)
    }

    async fn fetch<T>(
        &self,
        action: &str,
        query: clickhouse::query::Query,
    ) -> Result<T, RankingsError>
    where
        T: RowOwned + RowRead,
    {
        self.bounded(action, query.fetch_one::<T>()).await
    }

    async fn fetch_all<T>(
        &self,
        action: &str,
        query: clickhouse::query::Query,
    ) -> Result<Vec<T>, RankingsError>
    where
        T: RowOwned + RowRead,
    {
        self.bounded(action, query.fetch_all::<T>()).await
    }

    /// Runs `work` (one query) within the configured timeout: a stalled server or connection
    /// fails it with `TimedOut` rather than holding the caller.
    async fn bounded<T>(
        &self,
        action: &str,
        work: impl std::future::Future<Output = Result<T, clickhouse::error::Error>>,
    ) -> Result<T, RankingsError> {
        let result = match self.timeout {
            Some(limit) => match tokio::time::timeout(limit, work).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(RankingsError::ClickHouse {
                        action: format!("{action} (no answer within {} ms)", limit.as_millis()),
                        source: clickhouse::error::Error::TimedOut,
                    });
                }
            },
            None => work.await,
        };
        result.map_err(|source| RankingsError::ClickHouse {
            action: action.to_string(),
            source,
        })
    }
}

/// A row of a ranking table (a `ReplacingMergeTree(version)`), as a publication is read whole:
/// the sorting key `FINAL` collapses rows by, the version it keeps, and the columns read.
pub(super) trait RankingRow {
    /// The row's columns after `publication_id`, in the order of its fields (rows are read by
    /// position, as the module documentation says).
    const COLUMNS_AFTER_ID: &'static str;
    /// Orders by the table's sorting key (`ORDER BY` of its DDL, [`crate::schema`]).
    fn cmp_key(&self, other: &Self) -> std::cmp::Ordering;
    /// The `version` column.
    fn version(&self) -> u64;
    /// Gives the row its publication (read without it).
    fn set_publication_id(&mut self, id: &str);
}

impl RankingRow for schema::CityRankingRow {
    const COLUMNS_AFTER_ID: &'static str = "period, rank, city_id, city_name, city_state, \
        city_resolved, revenue, sales, salesmen, computed_at, version, lake_window";
    fn cmp_key(&self, other: &Self) -> std::cmp::Ordering {
        (&self.publication_id, &self.period, self.rank, self.city_id).cmp(&(
            &other.publication_id,
            &other.period,
            other.rank,
            other.city_id,
        ))
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn set_publication_id(&mut self, id: &str) {
        self.publication_id.clear();
        self.publication_id.push_str(id);
    }
}

impl RankingRow for schema::CitySalesmanRankingRow {
    const COLUMNS_AFTER_ID: &'static str = "period, city_id, rank, salesman_id, salesman_name, \
        salesman_code, salesman_resolved, revenue, sales, computed_at, version, lake_window";
    fn cmp_key(&self, other: &Self) -> std::cmp::Ordering {
        (
            &self.publication_id,
            &self.period,
            self.city_id,
            self.rank,
            self.salesman_id,
        )
            .cmp(&(
                &other.publication_id,
                &other.period,
                other.city_id,
                other.rank,
                other.salesman_id,
            ))
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn set_publication_id(&mut self, id: &str) {
        self.publication_id.clear();
        self.publication_id.push_str(id);
    }
}

impl RankingRow for schema::SalesmanRankingRow {
    const COLUMNS_AFTER_ID: &'static str = "period, rank, salesman_id, salesman_name, \
        salesman_code, salesman_resolved, revenue, sales, computed_at, version, lake_window";
    fn cmp_key(&self, other: &Self) -> std::cmp::Ordering {
        (
            &self.publication_id,
            &self.period,
            self.rank,
            self.salesman_id,
        )
            .cmp(&(
                &other.publication_id,
                &other.period,
                other.rank,
                other.salesman_id,
            ))
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn set_publication_id(&mut self, id: &str) {
        self.publication_id.clear();
        self.publication_id.push_str(id);
    }
}

/// What `SELECT … FINAL` returns from `rows`: of those sharing a sorting key, the one with the
/// highest version (a publication written again — a forced run, a run repeated after a failed
/// state commit — has its rows twice until ClickHouse merges them). In key order. Pure.
fn latest_versions<T: RankingRow>(mut rows: Vec<T>) -> Vec<T> {
    rows.sort_unstable_by(|a, b| a.cmp_key(b).then_with(|| b.version().cmp(&a.version())));
    // Keeps the first of each run of equal keys: the highest version.
    rows.dedup_by(|later, kept| later.cmp_key(kept).is_eq());
    rows
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

    fn row(period: &str, rank: u32, salesman_id: i64, version: u64) -> schema::SalesmanRankingRow {
        schema::SalesmanRankingRow {
            publication_id: "p".into(),
            period: period.into(),
            rank,
            salesman_id,
            salesman_name: String::new(),
            salesman_code: String::new(),
            salesman_resolved: 0,
            revenue: i64::from(rank) * 100,
            sales: 1,
            computed_at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            version,
            lake_window: 0,
        }
    }

    #[test]
    fn latest_versions_keeps_what_final_keeps() {
        // Written at version 1, then again (partly, as after a crash, then whole) at 2 and 3.
        let rows = vec![
            row("all", 2, 20, 1),
            row("all", 1, 10, 3),
            row("2026-12", 1, 10, 1),
            row("all", 1, 10, 1),
            row("all", 2, 20, 3),
            row("all", 1, 10, 2),
        ];
        let kept: Vec<_> = latest_versions(rows)
            .into_iter()
            .map(|r| (r.period, r.rank, r.salesman_id, r.version))
            .collect();
        assert_eq!(
            kept,
            vec![
                ("2026-12".to_string(), 1, 10, 1),
                ("all".to_string(), 1, 10, 3),
                ("all".to_string(), 2, 20, 3),
            ]
        );
        assert!(latest_versions(Vec::<schema::SalesmanRankingRow>::new()).is_empty());
    }

    /// The columns read are the row's fields, in order: rows are read by position, so a column
    /// out of place would fill the wrong field. (`COLUMN_NAMES` is the derive's own list, not a
    /// stable API: good enough for a test.)
    #[test]
    fn ranking_rows_read_their_fields_in_order() {
        fn check<T: RankingRow + clickhouse::Row>() {
            let read: Vec<&str> = T::COLUMNS_AFTER_ID.split(", ").collect();
            assert_eq!(T::COLUMN_NAMES[0], "publication_id");
            assert_eq!(read, T::COLUMN_NAMES[1..], "{}", std::any::type_name::<T>());
        }
        check::<schema::CityRankingRow>();
        check::<schema::CitySalesmanRankingRow>();
        check::<schema::SalesmanRankingRow>();
    }

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
