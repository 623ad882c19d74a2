//! The detail and filtered reads of [`RankingQueries`] derived from its plain ranking pages by
//! reading whole rankings: the trait's default, right for the few thousand rows of an in-memory
//! publication; ClickHouse overrides each with one indexed query.

use std::collections::BTreeSet;

use super::{Page, RankingQueries};
use crate::error::RankingsError;
use crate::period::Period;
use crate::publication::PublicationRows;
use crate::schema::{
    CityRankingRow, CitySalesmanRankingRow, PublicationPeriodRow, PublicationRow,
    SalesmanRankingRow,
};

/// Every row of a ranking: the store pages, this reads them all.
const EVERYTHING: Page = Page {
    limit: u32::MAX,
    offset: 0,
};

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

/// The order of a salesman's cities [`RankingQueries::salesman_cities`] promises: revenue
/// (desc), then city id.
pub(super) fn revenue_then_city(
    a: &CitySalesmanRankingRow,
    b: &CitySalesmanRankingRow,
) -> std::cmp::Ordering {
    b.revenue.cmp(&a.revenue).then(a.city_id.cmp(&b.city_id))
}

/// Orders a salesman's cities as [`RankingQueries::salesman_cities`] promises.
pub(super) fn by_revenue_then_city(rows: &mut [CitySalesmanRankingRow]) {
    rows.sort_by(revenue_then_city);
}

async fn months<S: RankingQueries + ?Sized>(
    store: &S,
    publication_id: &str,
) -> Result<Vec<Period>, RankingsError> {
    Ok(store
        .periods(publication_id)
        .await?
        .iter()
        .filter(|p| p.period != Period::ALL)
        .filter_map(|p| p.period.parse().ok().map(Period::Month))
        .collect())
}

async fn all_city_salesmen<S: RankingQueries + ?Sized>(
    store: &S,
    publication_id: &str,
    period: Period,
) -> Result<Vec<CitySalesmanRankingRow>, RankingsError> {
    let ids: Vec<i64> = store
        .city_ranking(publication_id, period, EVERYTHING)
        .await?
        .iter()
        .map(|c| c.city_id)
        .collect();
    store
        .top_city_salesmen(publication_id, period, &ids, u32::MAX)
        .await
}
pub(super) async fn cities_in_state<S: RankingQueries + ?Sized>(
    store: &S,
    publication_id: &str,
    period: Period,
    state: &str,
    page: Page,
) -> Result<(Vec<CityRankingRow>, u64), RankingsError> {
    let rows = store
        .city_ranking(publication_id, period, EVERYTHING)
        .await?
        .into_iter()
        .filter(|c| c.city_resolved != 0 && c.city_state == state)
        .collect();
    Ok(paged(rows, page))
}

pub(super) async fn salesmen_in_city<S: RankingQueries + ?Sized>(
    store: &S,
    publication_id: &str,
    period: Period,
    city_id: i64,
    page: Page,
) -> Result<(Vec<SalesmanRankingRow>, u64), RankingsError> {
    let in_city: BTreeSet<i64> = store
        .city_salesman_ranking(publication_id, period, city_id, EVERYTHING)
        .await?
        .iter()
        .map(|s| s.salesman_id)
        .collect();
    let rows = store
        .salesman_ranking(publication_id, period, EVERYTHING)
        .await?
        .into_iter()
        .filter(|s| in_city.contains(&s.salesman_id))
        .collect();
    Ok(paged(rows, page))
}

pub(super) async fn salesman<S: RankingQueries + ?Sized>(
    store: &S,
    publication_id: &str,
    period: Period,
    salesman_id: i64,
) -> Result<Option<SalesmanRankingRow>, RankingsError> {
    Ok(store
        .salesman_ranking(publication_id, period, EVERYTHING)
        .await?
        .into_iter()
        .find(|s| s.salesman_id == salesman_id))
}

pub(super) async fn salesman_cities<S: RankingQueries + ?Sized>(
    store: &S,
    publication_id: &str,
    period: Period,
    salesman_id: i64,
) -> Result<Vec<CitySalesmanRankingRow>, RankingsError> {
    let mut rows: Vec<_> = all_city_salesmen(store, publication_id, period)
        .await?
        .into_iter()
        .filter(|s| s.salesman_id == salesman_id)
        .collect();
    by_revenue_then_city(&mut rows);
    Ok(rows)
}

pub(super) async fn cities<S: RankingQueries + ?Sized>(
    store: &S,
    publication_id: &str,
    period: Period,
    city_ids: &[i64],
) -> Result<Vec<CityRankingRow>, RankingsError> {
    let mut out = Vec::with_capacity(city_ids.len());
    for &id in city_ids {
        out.extend(store.city(publication_id, period, id).await?);
    }
    Ok(out)
}

pub(super) async fn salesman_months<S: RankingQueries + ?Sized>(
    store: &S,
    publication_id: &str,
    salesman_id: i64,
) -> Result<Vec<SalesmanRankingRow>, RankingsError> {
    let mut out = Vec::new();
    for month in months(store, publication_id).await? {
        out.extend(salesman(store, publication_id, month, salesman_id).await?);
    }
    Ok(out)
}

pub(super) async fn city_months<S: RankingQueries + ?Sized>(
    store: &S,
    publication_id: &str,
    city_id: i64,
) -> Result<Vec<CityRankingRow>, RankingsError> {
    let mut out = Vec::new();
    for month in months(store, publication_id).await? {
        out.extend(store.city(publication_id, month, city_id).await?);
    }
    Ok(out)
}

pub(super) async fn publication_rows<S: RankingQueries + ?Sized>(
    store: &S,
    publication: &PublicationRow,
) -> Result<PublicationRows, RankingsError> {
    publication_rows_of(store, publication, None, None).await
}

/// The rows of `publication` (its `periods` read here unless given), the ranking rows of `only`
/// these periods when given.
pub(super) async fn publication_rows_of<S: RankingQueries + ?Sized>(
    store: &S,
    publication: &PublicationRow,
    periods: Option<Vec<PublicationPeriodRow>>,
    only: Option<&[Period]>,
) -> Result<PublicationRows, RankingsError> {
    let id = publication.publication_id.as_str();
    let periods = match periods {
        Some(periods) => periods,
        None => store.periods(id).await?,
    };
    let mut rows = PublicationRows {
        cities: Vec::new(),
        city_salesmen: Vec::new(),
        salesmen: Vec::new(),
        sources: store.sources(id).await?,
        periods: Vec::new(),
        publication: publication.clone(),
    };
    for period in periods
        .iter()
        .filter_map(|p| p.period.parse::<Period>().ok())
        .filter(|period| only.is_none_or(|only| only.contains(period)))
    {
        rows.cities
            .extend(store.city_ranking(id, period, EVERYTHING).await?);
        rows.city_salesmen
            .extend(all_city_salesmen(store, id, period).await?);
        rows.salesmen
            .extend(store.salesman_ranking(id, period, EVERYTHING).await?);
    }
    rows.periods = periods;
    Ok(rows)
}
