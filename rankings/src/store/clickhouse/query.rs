//! The API's side: every read of a publication, each one query on the tables' sorting key
//! prefix `(publication_id, period)` with `FINAL` (a whole publication: `FINAL` applied here,
//! [`super::latest_versions`]).

use async_trait::async_trait;

use super::{ClickHouseStore, UNKNOWN_DATABASE, UNKNOWN_TABLE, server_error_code};
use crate::error::RankingsError;
use crate::period::Period;
use crate::publication::PublicationRows;
use crate::schema::{
    CITY_RANKING, CITY_SALESMAN_RANKING, CityRankingRow, CitySalesmanRankingRow, MART_RUNS,
    MartRunRow, PUBLICATION_PERIODS, PUBLICATION_SOURCES, PUBLICATIONS, PublicationPeriodRow,
    PublicationRow, PublicationSourceRow, SALESMAN_RANKING, SalesmanRankingRow,
};
use crate::store::scan::by_revenue_then_city;
use crate::store::{Page, RankingQueries};

#[async_trait]
impl RankingQueries for ClickHouseStore {
    async fn ping(&self) -> Result<(), RankingsError> {
        self.bounded("ping", self.client.query("SELECT 1").fetch_one::<u8>())
            .await
            .map(|_| ())
    }

    async fn latest_publication(&self) -> Result<Option<PublicationRow>, RankingsError> {
        let sql = format!(
            "SELECT ?fields FROM {} FINAL ORDER BY version DESC, publication_id DESC LIMIT 1",
            self.table(PUBLICATIONS)
        );
        self.publication_row("read latest publication", self.client.query(&sql))
            .await
    }

    async fn city_ranking(
        &self,
        publication_id: &str,
        period: Period,
        page: Page,
    ) -> Result<Vec<CityRankingRow>, RankingsError> {
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
    ) -> Result<Vec<CitySalesmanRankingRow>, RankingsError> {
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
        let of_period = self.rows_of_period();
        let sql = format!(
            "SELECT ?fields FROM {} FINAL WHERE {of_period} \
             AND city_id IN ({ids}) AND rank <= ? ORDER BY city_id, rank",
            self.table(CITY_SALESMAN_RANKING)
        );
        let query = self
            .client
            .query(&sql)
            .bind(publication_id)
            .bind(period.key())
            .bind(max_rank);
        self.fetch_rows(publication_id, "read city salesmen", query)
            .await
    }

    async fn city_salesman_ranking(
        &self,
        publication_id: &str,
        period: Period,
        city_id: i64,
        page: Page,
    ) -> Result<Vec<CitySalesmanRankingRow>, RankingsError> {
        let of_period = self.rows_of_period();
        let sql = format!(
            "SELECT ?fields FROM {} FINAL WHERE {of_period} \
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
        self.fetch_rows(publication_id, "read city salesman ranking", query)
            .await
    }

    async fn city(
        &self,
        publication_id: &str,
        period: Period,
        city_id: i64,
    ) -> Result<Option<CityRankingRow>, RankingsError> {
        let of_period = self.rows_of_period();
        let sql = format!(
            "SELECT ?fields FROM {} FINAL WHERE {of_period} \
             AND city_id = ? LIMIT 1",
            self.table(CITY_RANKING)
        );
        let query = self
            .client
            .query(&sql)
            .bind(publication_id)
            .bind(period.key())
            .bind(city_id);
        let rows = self.fetch_rows(publication_id, "read city", query).await?;
        Ok(rows.into_iter().next())
    }

    async fn salesman_ranking(
        &self,
        publication_id: &str,
        period: Period,
        page: Page,
    ) -> Result<Vec<SalesmanRankingRow>, RankingsError> {
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
    ) -> Result<Option<PublicationPeriodRow>, RankingsError> {
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

    async fn periods(
        &self,
        publication_id: &str,
    ) -> Result<Vec<PublicationPeriodRow>, RankingsError> {
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
    ) -> Result<Vec<PublicationSourceRow>, RankingsError> {
        let sql = format!(
            "SELECT ?fields FROM {} FINAL WHERE publication_id = ? ORDER BY source",
            self.table(PUBLICATION_SOURCES)
        );
        let query = self.client.query(&sql).bind(publication_id);
        self.fetch_all("read publication sources", query).await
    }

    async fn publication(
        &self,
        publication_id: &str,
    ) -> Result<Option<PublicationRow>, RankingsError> {
        let sql = format!(
            "SELECT ?fields FROM {} FINAL WHERE publication_id = ? ORDER BY version DESC LIMIT 1",
            self.table(PUBLICATIONS)
        );
        let query = self.client.query(&sql).bind(publication_id);
        self.publication_row("read a publication", query).await
    }

    async fn publication_rows(
        &self,
        publication: &PublicationRow,
    ) -> Result<PublicationRows, RankingsError> {
        self.rows_of_publication_in(publication, None, None).await
    }

    async fn publication_rows_of(
        &self,
        publication: &PublicationRow,
        periods: Vec<PublicationPeriodRow>,
        only: &[Period],
    ) -> Result<PublicationRows, RankingsError> {
        self.rows_of_publication_in(publication, Some(periods), Some(only))
            .await
    }

    async fn runs(&self, limit: u32) -> Result<Vec<MartRunRow>, RankingsError> {
        let sql = format!(
            "SELECT ?fields FROM {} ORDER BY started_at DESC, run_id DESC LIMIT ?",
            self.table(MART_RUNS)
        );
        let query = self.client.query(&sql).bind(limit);
        self.fetch_all("read mart runs", query).await
    }

    async fn cities_in_state(
        &self,
        publication_id: &str,
        period: Period,
        state: &str,
        page: Page,
    ) -> Result<(Vec<CityRankingRow>, u64), RankingsError> {
        let table = self.table(CITY_RANKING);
        let filter = format!(
            "{} AND city_resolved = 1 AND city_state = ?",
            self.rows_of_period()
        );
        let client = self.client();
        let rows = self
            .fetch_rows(
                publication_id,
                "read a state's cities",
                client
                    .query(&format!(
                        "SELECT ?fields FROM {table} FINAL WHERE {filter} ORDER BY rank LIMIT ?, ?"
                    ))
                    .bind(publication_id)
                    .bind(period.key())
                    .bind(state)
                    .bind(page.offset)
                    .bind(page.limit),
            )
            .await?;
        let total: u64 = self
            .fetch(
                "count a state's cities",
                client
                    .query(&format!("SELECT count() FROM {table} FINAL WHERE {filter}"))
                    .bind(publication_id)
                    .bind(period.key())
                    .bind(state),
            )
            .await?;
        Ok((rows, total))
    }

    async fn salesmen_in_city(
        &self,
        publication_id: &str,
        period: Period,
        city_id: i64,
        page: Page,
    ) -> Result<(Vec<SalesmanRankingRow>, u64), RankingsError> {
        let salesmen = self.table(SALESMAN_RANKING);
        let city_salesmen = self.table(CITY_SALESMAN_RANKING);
        let of_period = self.rows_of_period();
        let filter = format!(
            "{of_period} AND salesman_id IN (SELECT salesman_id FROM \
             {city_salesmen} FINAL WHERE {of_period} AND city_id = ?)"
        );
        let client = self.client();
        let rows = self
            .fetch_rows(
                publication_id,
                "read a city's salesmen nationwide",
                client
                    .query(&format!(
                        "SELECT ?fields FROM {salesmen} FINAL WHERE {filter} ORDER BY rank LIMIT ?, ?"
                    ))
                    .bind(publication_id)
                    .bind(period.key())
                    .bind(publication_id)
                    .bind(period.key())
                    .bind(city_id)
                    .bind(page.offset)
                    .bind(page.limit),
            )
            .await?;
        let total: u64 = self
            .fetch(
                "count a city's salesmen nationwide",
                client
                    .query(&format!(
                        "SELECT count() FROM {salesmen} FINAL WHERE {filter}"
                    ))
                    .bind(publication_id)
                    .bind(period.key())
                    .bind(publication_id)
                    .bind(period.key())
                    .bind(city_id),
            )
            .await?;
        Ok((rows, total))
    }

    async fn salesman(
        &self,
        publication_id: &str,
        period: Period,
        salesman_id: i64,
    ) -> Result<Option<SalesmanRankingRow>, RankingsError> {
        let table = self.table(SALESMAN_RANKING);
        let of_period = self.rows_of_period();
        let rows: Vec<SalesmanRankingRow> = self
            .fetch_rows(
                publication_id,
                "read one salesman",
                self.client()
                    .query(&format!(
                        "SELECT ?fields FROM {table} FINAL WHERE {of_period} \
                         AND salesman_id = ? LIMIT 1"
                    ))
                    .bind(publication_id)
                    .bind(period.key())
                    .bind(salesman_id),
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    async fn salesman_cities(
        &self,
        publication_id: &str,
        period: Period,
        salesman_id: i64,
    ) -> Result<Vec<CitySalesmanRankingRow>, RankingsError> {
        let table = self.table(CITY_SALESMAN_RANKING);
        let of_period = self.rows_of_period();
        let mut rows: Vec<CitySalesmanRankingRow> = self
            .fetch_rows(
                publication_id,
                "read a salesman's cities",
                self.client()
                    .query(&format!(
                        "SELECT ?fields FROM {table} FINAL WHERE {of_period} \
                         AND salesman_id = ?"
                    ))
                    .bind(publication_id)
                    .bind(period.key())
                    .bind(salesman_id),
            )
            .await?;
        by_revenue_then_city(&mut rows);
        Ok(rows)
    }

    async fn cities(
        &self,
        publication_id: &str,
        period: Period,
        city_ids: &[i64],
    ) -> Result<Vec<CityRankingRow>, RankingsError> {
        if city_ids.is_empty() {
            return Ok(Vec::new());
        }
        let table = self.table(CITY_RANKING);
        let of_period = self.rows_of_period();
        let ids = in_list(city_ids);
        self.fetch_rows(
            publication_id,
            "read cities by id",
            self.client()
                .query(&format!(
                    "SELECT ?fields FROM {table} FINAL WHERE {of_period} \
                     AND city_id IN ({ids})"
                ))
                .bind(publication_id)
                .bind(period.key()),
        )
        .await
    }

    async fn salesman_months(
        &self,
        publication_id: &str,
        salesman_id: i64,
    ) -> Result<Vec<SalesmanRankingRow>, RankingsError> {
        let table = self.table(SALESMAN_RANKING);
        let of_months = self.rows_of_months();
        self.fetch_rows(
            publication_id,
            "read a salesman's months",
            self.client()
                .query(&format!(
                    "SELECT ?fields FROM {table} FINAL WHERE {of_months} \
                     AND salesman_id = ? ORDER BY period"
                ))
                .bind(publication_id)
                .bind(Period::ALL)
                .bind(salesman_id),
        )
        .await
    }

    async fn city_months(
        &self,
        publication_id: &str,
        city_id: i64,
    ) -> Result<Vec<CityRankingRow>, RankingsError> {
        let table = self.table(CITY_RANKING);
        let of_months = self.rows_of_months();
        self.fetch_rows(
            publication_id,
            "read a city's months",
            self.client()
                .query(&format!(
                    "SELECT ?fields FROM {table} FINAL WHERE {of_months} \
                     AND city_id = ? ORDER BY period"
                ))
                .bind(publication_id)
                .bind(Period::ALL)
                .bind(city_id),
        )
        .await
    }
}

/// `IN (…)` of integers, formatted here: the crate binds slices as `[…]`, which old servers
/// (18.16) do not accept on the right of IN. Integers need no escaping.
fn in_list(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

impl ClickHouseStore {
    /// Every row of `publication` (its `periods` read here unless given), the ranking rows of
    /// `only` these periods when given.
    async fn rows_of_publication_in(
        &self,
        publication: &PublicationRow,
        periods: Option<Vec<PublicationPeriodRow>>,
        only: Option<&[Period]>,
    ) -> Result<PublicationRows, RankingsError> {
        let id = publication.publication_id.as_str();
        // Independent reads, at once: loading a new publication is on the path of every
        // change to the API.
        let (cities, city_salesmen, salesmen, periods, sources) = tokio::try_join!(
            self.whole_table(CITY_RANKING, "read a publication's city ranking", id, only),
            self.whole_table(
                CITY_SALESMAN_RANKING,
                "read a publication's city salesman ranking",
                id,
                only,
            ),
            self.whole_table(
                SALESMAN_RANKING,
                "read a publication's salesman ranking",
                id,
                only,
            ),
            async {
                match periods {
                    Some(periods) => Ok(periods),
                    None => self.periods(id).await,
                }
            },
            self.sources(id),
        )?;
        Ok(PublicationRows {
            cities,
            city_salesmen,
            salesmen,
            periods,
            sources,
            publication: publication.clone(),
        })
    }

    /// The first `publications` row `query` returns. Before the marts' first run the database
    /// or table does not exist yet: that is "nothing published", not a failure.
    async fn publication_row(
        &self,
        action: &str,
        query: clickhouse::query::Query,
    ) -> Result<Option<PublicationRow>, RankingsError> {
        match self
            .bounded(action, query.fetch_all::<PublicationRow>())
            .await
        {
            Ok(rows) => Ok(rows.into_iter().next()),
            Err(RankingsError::ClickHouse {
                source: clickhouse::error::Error::BadResponse(message),
                ..
            }) if matches!(
                server_error_code(&message),
                Some(UNKNOWN_TABLE | UNKNOWN_DATABASE)
            ) =>
            {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_lists_are_plain_integers() {
        assert_eq!(in_list(&[3, -1, 42]), "3,-1,42");
    }
}
