//! One salesman or one city in detail: rank and totals in the period, per city or salesman,
//! and per month.

use std::collections::BTreeMap;

use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use tributary_rankings::Period;

use super::{ApiResult, ApiTags, Details, default_limit, paging};
use crate::error::ApiError;
use crate::model::{
    CityDetail, CityJson, CityMonthJson, SalesmanCityJson, SalesmanDetail, SalesmanJson,
    SalesmanMonthJson, money_of, zero_money,
};

#[OpenApi]
impl Details {
    /// One salesman.
    ///
    /// His nationwide rank, revenue and sales in the period (all time, or `month`), every city
    /// he sold in with his rank among that city's salesmen, and his rank, revenue and sales in
    /// every month he sold in. 404 `salesman-not-found` if he has no current sale at all.
    #[oai(
        path = "/v1/salesmen/:salesman_id",
        method = "get",
        tag = "ApiTags::Details",
        operation_id = "salesman_detail"
    )]
    async fn salesman_detail(
        &self,
        /// Salesman id.
        salesman_id: Path<i64>,
        /// Rank the sales of this calendar month of `sold_at`, in UTC (`YYYY-MM`, e.g.
        /// `2026-03`); all time when absent. Sales without `sold_at` count in all time only.
        #[oai(validator(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$"))]
        month: Query<Option<String>>,
        /// Time travel: rank the lake as it was at this time (RFC 3339, e.g.
        /// `2026-03-01T12:00:00Z`), computed on demand from each raw table's latest snapshot
        /// committed at or before it (`/v1/snapshots` lists them). A time before the first
        /// snapshot answers 200 with empty rankings. Latest publication when absent.
        as_of: Query<Option<String>>,
        /// Time travel to a snapshot id of any raw table (`/v1/snapshots`): that table is read
        /// at exactly this snapshot, every other raw table at its snapshot current when this
        /// one was committed. 404 `snapshot-not-found` if no raw table has it; not together
        /// with `as_of`.
        as_of_snapshot: Query<Option<i64>>,
    ) -> ApiResult<SalesmanDetail> {
        let src = self
            .source(month.0.as_deref(), as_of.0.as_deref(), as_of_snapshot.0)
            .await?;
        let (pub_id, id) = (&src.row.publication_id, salesman_id.0);
        let in_period = src.store.salesman(pub_id, src.period, id).await?;
        let all_time = match (&in_period, src.period) {
            (Some(row), Period::AllTime) => row.clone(),
            _ => src
                .store
                .salesman(pub_id, Period::AllTime, id)
                .await?
                .ok_or_else(|| ApiError::SalesmanNotFound {
                    salesman_id: id,
                    publication_id: pub_id.clone(),
                })?,
        };
        let city_rows = src.store.salesman_cities(pub_id, src.period, id).await?;
        let ids: Vec<i64> = city_rows.iter().map(|c| c.city_id).collect();
        let cities: BTreeMap<i64, _> = src
            .store
            .cities(pub_id, src.period, &ids)
            .await?
            .into_iter()
            .map(|c| (c.city_id, c))
            .collect();
        let months = src.store.salesman_months(pub_id, id).await?;
        let named = SalesmanJson::from(&all_time);
        Ok(Json(SalesmanDetail {
            publication: src.publication,
            period: src.summary,
            salesman_id: id,
            name: named.name,
            code: named.code,
            resolved: named.resolved,
            rank: in_period.as_ref().map(|s| s.rank),
            revenue: in_period
                .as_ref()
                .map_or_else(zero_money, |s| money_of(s.revenue)),
            sales: in_period.as_ref().map_or(0, |s| s.sales),
            cities: city_rows
                .iter()
                .map(|c| SalesmanCityJson::new(c, cities.get(&c.city_id)))
                .collect(),
            months: months.iter().map(SalesmanMonthJson::from).collect(),
        }))
    }

    /// One city.
    ///
    /// Its rank, revenue and sales in the period (all time, or `month`), its salesmen ranked
    /// by their revenue there (paged by `limit`/`offset`), and its rank, revenue, sales and
    /// number of salesmen in every month it sold in. 404 `city-not-found` if it has no
    /// current sale at all.
    #[oai(
        path = "/v1/cities/:city_id",
        method = "get",
        tag = "ApiTags::Details",
        operation_id = "city_detail"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn city_detail(
        &self,
        /// City id.
        city_id: Path<i64>,
        /// Salesmen per page, 1..=1000.
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
        /// Salesmen to skip (rank order).
        #[oai(default)]
        offset: Query<u64>,
        /// Rank the sales of this calendar month of `sold_at`, in UTC (`YYYY-MM`, e.g.
        /// `2026-03`); all time when absent. Sales without `sold_at` count in all time only.
        #[oai(validator(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$"))]
        month: Query<Option<String>>,
        /// Time travel: rank the lake as it was at this time (RFC 3339, e.g.
        /// `2026-03-01T12:00:00Z`), computed on demand from each raw table's latest snapshot
        /// committed at or before it (`/v1/snapshots` lists them). A time before the first
        /// snapshot answers 200 with empty rankings. Latest publication when absent.
        as_of: Query<Option<String>>,
        /// Time travel to a snapshot id of any raw table (`/v1/snapshots`): that table is read
        /// at exactly this snapshot, every other raw table at its snapshot current when this
        /// one was committed. 404 `snapshot-not-found` if no raw table has it; not together
        /// with `as_of`.
        as_of_snapshot: Query<Option<i64>>,
    ) -> ApiResult<CityDetail> {
        let src = self
            .source(month.0.as_deref(), as_of.0.as_deref(), as_of_snapshot.0)
            .await?;
        let (pub_id, id) = (&src.row.publication_id, city_id.0);
        let in_period = self.city_or_404(&src, id).await?;
        let all_time = match (&in_period, src.period) {
            (Some(row), Period::AllTime) => row.clone(),
            _ => src
                .store
                .city(pub_id, Period::AllTime, id)
                .await?
                .ok_or_else(|| ApiError::CityNotFound {
                    city_id: id,
                    publication_id: pub_id.clone(),
                })?,
        };
        let page = paging(&limit, &offset);
        let salesmen = src
            .store
            .city_salesman_ranking(pub_id, src.period, id, page)
            .await?;
        let months = src.store.city_months(pub_id, id).await?;
        let named = CityJson::from(&all_time);
        Ok(Json(CityDetail {
            publication: src.publication,
            period: src.summary,
            city_id: id,
            name: named.name,
            state: named.state,
            resolved: named.resolved,
            rank: in_period.as_ref().map(|c| c.rank),
            revenue: in_period
                .as_ref()
                .map_or_else(zero_money, |c| money_of(c.revenue)),
            sales: in_period.as_ref().map_or(0, |c| c.sales),
            salesmen_total: in_period.as_ref().map_or(0, |c| c.salesmen),
            limit: limit.0,
            offset: offset.0,
            salesmen: salesmen.iter().map(SalesmanJson::from).collect(),
            months: months.iter().map(CityMonthJson::from).collect(),
        }))
    }
}
