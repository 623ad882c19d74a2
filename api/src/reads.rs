//! Reads the API needs beyond [`PublicationStore`]: filtered rankings (a state's cities, a
//! city's salesmen in the nationwide ranking) and the detail of one salesman or one city.
//!
//! Two implementations: [`ClickHouseReads`] asks ClickHouse for exactly the rows it needs (by
//! the tables' sorting keys, see `tributary_marts::schema`), and [`ScanReads`] derives the same
//! answers from any [`PublicationStore`] by reading whole rankings — what the on-demand
//! (`as_of`) publications and the unit tests use, both held in a `MemoryStore`. The ClickHouse
//! queries are checked against the scanning ones by the end-to-end tests (`e2e/tests/api_detail.rs`).

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use tributary_marts::schema::{
    CITY_RANKING, CITY_SALESMAN_RANKING, CityRankingRow, CitySalesmanRankingRow, SALESMAN_RANKING,
    SalesmanRankingRow,
};
use tributary_marts::{ClickHouseStore, MartsError, Page, Period, PublicationStore};

/// Every row of a ranking: the store pages, this reads them all.
const EVERYTHING: Page = Page {
    limit: u32::MAX,
    offset: 0,
};

/// Reads over one publication, beyond the plain ranking pages.
#[async_trait]
pub trait RankingReads: Send + Sync {
    /// A page of the cities whose state is `state` (exact match), in rank order (the national
    /// rank is kept), and how many such cities there are.
    async fn cities_in_state(
        &self,
        publication_id: &str,
        period: Period,
        state: &str,
        page: Page,
    ) -> Result<(Vec<CityRankingRow>, u64), MartsError>;

    /// A page of the nationwide salesman ranking restricted to the salesmen with sales in
    /// `city_id` (their nationwide rank and totals are kept), and how many there are.
    async fn salesmen_in_city(
        &self,
        publication_id: &str,
        period: Period,
        city_id: i64,
        page: Page,
    ) -> Result<(Vec<SalesmanRankingRow>, u64), MartsError>;

    /// One salesman's row of the nationwide ranking.
    async fn salesman(
        &self,
        publication_id: &str,
        period: Period,
        salesman_id: i64,
    ) -> Result<Option<SalesmanRankingRow>, MartsError>;

    /// The salesman's rows of every city he sold in, by his revenue there (desc), then city id.
    async fn salesman_cities(
        &self,
        publication_id: &str,
        period: Period,
        salesman_id: i64,
    ) -> Result<Vec<CitySalesmanRankingRow>, MartsError>;

    /// The rows of `city_ids` in the city ranking (any order; absent cities are left out).
    async fn cities(
        &self,
        publication_id: &str,
        period: Period,
        city_ids: &[i64],
    ) -> Result<Vec<CityRankingRow>, MartsError>;

    /// The salesman's nationwide row in every month he sold in, oldest first.
    async fn salesman_months(
        &self,
        publication_id: &str,
        salesman_id: i64,
    ) -> Result<Vec<SalesmanRankingRow>, MartsError>;

    /// The city's row in every month it sold in, oldest first.
    async fn city_months(
        &self,
        publication_id: &str,
        city_id: i64,
    ) -> Result<Vec<CityRankingRow>, MartsError>;
}

/// Pages rows already in rank order.
fn paged<T>(rows: Vec<T>, page: Page) -> (Vec<T>, u64) {
    let total = rows.len() as u64;
    let items = rows
        .into_iter()
        .skip(usize::try_from(page.offset).unwrap_or(usize::MAX))
        .take(page.limit as usize)
        .collect();
    (items, total)
}

/// Orders a salesman's cities as [`RankingReads::salesman_cities`] promises.
fn by_revenue_then_city(rows: &mut [CitySalesmanRankingRow]) {
    rows.sort_by(|a, b| b.revenue.cmp(&a.revenue).then(a.city_id.cmp(&b.city_id)));
}

/// [`RankingReads`] over any store, by reading whole rankings: fine for the few thousand rows
/// of an on-demand publication, not for ClickHouse.
pub struct ScanReads(pub Arc<dyn PublicationStore>);

impl ScanReads {
    async fn months(&self, publication_id: &str) -> Result<Vec<Period>, MartsError> {
        Ok(self
            .0
            .periods(publication_id)
            .await?
            .iter()
            .filter(|p| p.period != Period::ALL)
            .filter_map(|p| p.period.parse().ok().map(Period::Month))
            .collect())
    }

    async fn all_city_salesmen(
        &self,
        publication_id: &str,
        period: Period,
    ) -> Result<Vec<CitySalesmanRankingRow>, MartsError> {
        let ids: Vec<i64> = self
            .0
            .city_ranking(publication_id, period, EVERYTHING)
            .await?
            .iter()
            .map(|c| c.city_id)
            .collect();
        self.0
            .top_city_salesmen(publication_id, period, &ids, u32::MAX)
            .await
    }
}

#[async_trait]
impl RankingReads for ScanReads {
    async fn cities_in_state(
        &self,
        publication_id: &str,
        period: Period,
        state: &str,
        page: Page,
    ) -> Result<(Vec<CityRankingRow>, u64), MartsError> {
        let rows = self
            .0
            .city_ranking(publication_id, period, EVERYTHING)
            .await?
            .into_iter()
            .filter(|c| c.city_resolved != 0 && c.city_state == state)
            .collect();
        Ok(paged(rows, page))
    }

    async fn salesmen_in_city(
        &self,
        publication_id: &str,
        period: Period,
        city_id: i64,
        page: Page,
    ) -> Result<(Vec<SalesmanRankingRow>, u64), MartsError> {
        let in_city: BTreeSet<i64> = self
            .0
            .city_salesman_ranking(publication_id, period, city_id, EVERYTHING)
            .await?
            .iter()
            .map(|s| s.salesman_id)
            .collect();
        let rows = self
            .0
            .salesman_ranking(publication_id, period, EVERYTHING)
            .await?
            .into_iter()
            .filter(|s| in_city.contains(&s.salesman_id))
            .collect();
        Ok(paged(rows, page))
    }

    async fn salesman(
        &self,
        publication_id: &str,
        period: Period,
        salesman_id: i64,
    ) -> Result<Option<SalesmanRankingRow>, MartsError> {
        Ok(self
            .0
            .salesman_ranking(publication_id, period, EVERYTHING)
            .await?
            .into_iter()
            .find(|s| s.salesman_id == salesman_id))
    }

    async fn salesman_cities(
        &self,
        publication_id: &str,
        period: Period,
        salesman_id: i64,
    ) -> Result<Vec<CitySalesmanRankingRow>, MartsError> {
        let mut rows: Vec<_> = self
            .all_city_salesmen(publication_id, period)
            .await?
            .into_iter()
            .filter(|s| s.salesman_id == salesman_id)
            .collect();
        by_revenue_then_city(&mut rows);
        Ok(rows)
    }

    async fn cities(
        &self,
        publication_id: &str,
        period: Period,
        city_ids: &[i64],
    ) -> Result<Vec<CityRankingRow>, MartsError> {
        let mut out = Vec::with_capacity(city_ids.len());
        for &id in city_ids {
            out.extend(self.0.city(publication_id, period, id).await?);
        }
        Ok(out)
    }

    async fn salesman_months(
        &self,
        publication_id: &str,
        salesman_id: i64,
    ) -> Result<Vec<SalesmanRankingRow>, MartsError> {
        let mut out = Vec::new();
        for month in self.months(publication_id).await? {
            out.extend(self.salesman(publication_id, month, salesman_id).await?);
        }
        Ok(out)
    }

    async fn city_months(
        &self,
        publication_id: &str,
        city_id: i64,
    ) -> Result<Vec<CityRankingRow>, MartsError> {
        let mut out = Vec::new();
        for month in self.months(publication_id).await? {
            out.extend(self.0.city(publication_id, month, city_id).await?);
        }
        Ok(out)
    }
}

/// [`RankingReads`] on the marts' ClickHouse tables: each read is one query on the sorting
/// key's prefix `(publication_id, period)` with `FINAL`, like the store's own reads.
pub struct ClickHouseReads(pub ClickHouseStore);

impl ClickHouseReads {
    fn table(&self, table: &str) -> String {
        format!("{}.{table}", self.0.database())
    }

    async fn fetch<T>(&self, action: &str, query: clickhouse::query::Query) -> Result<T, MartsError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        query
            .fetch_one::<T>()
            .await
            .map_err(|source| MartsError::ClickHouse {
                action: action.to_string(),
                source,
            })
    }

    async fn fetch_all<T>(
        &self,
        action: &str,
        query: clickhouse::query::Query,
    ) -> Result<Vec<T>, MartsError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
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

/// `IN (…)` of integers, formatted here: the crate binds slices as `[…]`, which old servers
/// (18.16) do not accept on the right of IN. Integers need no escaping.
fn in_list(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

#[async_trait]
impl RankingReads for ClickHouseReads {
    async fn cities_in_state(
        &self,
        publication_id: &str,
        period: Period,
        state: &str,
        page: Page,
    ) -> Result<(Vec<CityRankingRow>, u64), MartsError> {
        let table = self.table(CITY_RANKING);
        let filter = "publication_id = ? AND period = ? AND city_resolved = 1 AND city_state = ?";
        let client = self.0.client();
        let rows = self
            .fetch_all(
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
    ) -> Result<(Vec<SalesmanRankingRow>, u64), MartsError> {
        let salesmen = self.table(SALESMAN_RANKING);
        let city_salesmen = self.table(CITY_SALESMAN_RANKING);
        let filter = format!(
            "publication_id = ? AND period = ? AND salesman_id IN (SELECT salesman_id FROM \
             {city_salesmen} FINAL WHERE publication_id = ? AND period = ? AND city_id = ?)"
        );
        let client = self.0.client();
        let rows = self
            .fetch_all(
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
    ) -> Result<Option<SalesmanRankingRow>, MartsError> {
        let table = self.table(SALESMAN_RANKING);
        let rows: Vec<SalesmanRankingRow> = self
            .fetch_all(
                "read one salesman",
                self.0
                    .client()
                    .query(&format!(
                        "SELECT ?fields FROM {table} FINAL WHERE publication_id = ? AND period = ? \
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
    ) -> Result<Vec<CitySalesmanRankingRow>, MartsError> {
        let table = self.table(CITY_SALESMAN_RANKING);
        let mut rows: Vec<CitySalesmanRankingRow> = self
            .fetch_all(
                "read a salesman's cities",
                self.0
                    .client()
                    .query(&format!(
                        "SELECT ?fields FROM {table} FINAL WHERE publication_id = ? AND period = ? \
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
    ) -> Result<Vec<CityRankingRow>, MartsError> {
        if city_ids.is_empty() {
            return Ok(Vec::new());
        }
        let table = self.table(CITY_RANKING);
        let ids = in_list(city_ids);
        self.fetch_all(
            "read cities by id",
            self.0
                .client()
                .query(&format!(
                    "SELECT ?fields FROM {table} FINAL WHERE publication_id = ? AND period = ? \
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
    ) -> Result<Vec<SalesmanRankingRow>, MartsError> {
        let table = self.table(SALESMAN_RANKING);
        self.fetch_all(
            "read a salesman's months",
            self.0
                .client()
                .query(&format!(
                    "SELECT ?fields FROM {table} FINAL WHERE publication_id = ? AND period != ? \
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
    ) -> Result<Vec<CityRankingRow>, MartsError> {
        let table = self.table(CITY_RANKING);
        self.fetch_all(
            "read a city's months",
            self.0
                .client()
                .query(&format!(
                    "SELECT ?fields FROM {table} FINAL WHERE publication_id = ? AND period != ? \
                     AND city_id = ? ORDER BY period"
                ))
                .bind(publication_id)
                .bind(Period::ALL)
                .bind(city_id),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_lists_are_plain_integers() {
        assert_eq!(in_list(&[3, -1, 42]), "3,-1,42");
    }

    #[test]
    fn pages_count_every_row() {
        let (items, total) = paged(
            (1..=5).collect::<Vec<_>>(),
            Page {
                limit: 2,
                offset: 3,
            },
        );
        assert_eq!((items, total), (vec![4, 5], 5));
    }
}
