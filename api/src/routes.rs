//! The endpoints. Every ranking response is read from one publication — the latest complete
//! one — and one period of it (all time, or a UTC calendar month with `?month=YYYY-MM`), and
//! says which (the publication's id and lake snapshots, and the period).

use std::collections::BTreeMap;
use std::sync::Arc;

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{OpenApi, Tags};
use tributary_marts::schema::PublicationRow;
use tributary_marts::{Page, Period, PublicationStore};

use crate::error::{ApiError, ProblemResponse};
use crate::model::{
    CityJson, CityRankingPage, CitySalesmenPage, MonthsPage, PeriodJson, PublicationJson,
    SalesmanJson, SalesmanRankingPage, Status,
};

/// Default page size.
pub const DEFAULT_LIMIT: u32 = 100;
/// Default number of salesmen embedded per city.
pub const DEFAULT_SALESMEN_PER_CITY: u32 = 10;

fn default_limit() -> u32 {
    DEFAULT_LIMIT
}

fn default_salesmen() -> u32 {
    DEFAULT_SALESMEN_PER_CITY
}

/// The period a `month` parameter asks for: all time when absent. The OpenAPI pattern already
/// refuses most bad months; this also refuses what a pattern cannot (year 0999).
fn period_param(month: Option<&str>) -> Result<Period, ApiError> {
    match month {
        None => Ok(Period::AllTime),
        Some(text) => {
            text.parse()
                .map(Period::Month)
                .map_err(
                    |e: tributary_marts::period::MonthError| ApiError::InvalidParameter {
                        name: "month".into(),
                        reason: e.to_string(),
                    },
                )
        }
    }
}

#[derive(Tags)]
enum ApiTags {
    /// The two rankings.
    Rankings,
    /// Liveness and readiness.
    Health,
}

/// The API, over a publication store.
pub struct RankingsApi {
    store: Arc<dyn PublicationStore>,
}

impl RankingsApi {
    /// An API reading from `store`.
    pub fn new(store: Arc<dyn PublicationStore>) -> Self {
        Self { store }
    }

    async fn latest(&self) -> Result<(PublicationRow, PublicationJson), ProblemResponse> {
        let row = self
            .store
            .latest_publication()
            .await?
            .ok_or(ApiError::NotPublished)?;
        let json = PublicationJson::from_row(&row)?;
        Ok((row, json))
    }

    /// The latest publication and the asked-for period of it. A period without current sales
    /// (a month nobody sold in) is empty, not an error.
    async fn latest_period(
        &self,
        month: Option<&str>,
    ) -> Result<(PublicationRow, PublicationJson, Period, PeriodJson), ProblemResponse> {
        let period = period_param(month)?;
        let (row, publication) = self.latest().await?;
        let summary = match self.store.period(&row.publication_id, period).await? {
            Some(p) => PeriodJson::from(&p),
            None => PeriodJson::empty(period),
        };
        Ok((row, publication, period, summary))
    }
}

type ApiResult<T> = Result<Json<T>, ProblemResponse>;

#[OpenApi]
impl RankingsApi {
    /// Top sales per city.
    ///
    /// Cities ranked by revenue (ties: lower city id first), each with its top `salesmen`
    /// salesmen ranked by their revenue in that city. All time by default; with `month`, over
    /// the sales of that UTC calendar month only (a month without sales: no items, total 0).
    /// 503 until the marts have published.
    #[oai(
        path = "/v1/rankings/cities",
        method = "get",
        tag = "ApiTags::Rankings",
        operation_id = "city_ranking"
    )]
    async fn city_ranking(
        &self,
        /// Cities per page, 1..=1000.
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
        /// Cities to skip (rank order).
        #[oai(default)]
        offset: Query<u64>,
        /// Salesmen to embed per city, 0..=100 (the full list is
        /// `/v1/rankings/cities/{city_id}/salesmen`).
        #[oai(default = "default_salesmen", validator(maximum(value = "100")))]
        salesmen: Query<u32>,
        /// Rank the sales of this calendar month of `sold_at`, in UTC (`YYYY-MM`, e.g.
        /// `2026-03`); all time when absent. Sales without `sold_at` count in all time only.
        #[oai(validator(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$"))]
        month: Query<Option<String>>,
    ) -> ApiResult<CityRankingPage> {
        let (row, publication, period, summary) = self.latest_period(month.0.as_deref()).await?;
        let page = Page {
            limit: limit.0,
            offset: offset.0,
        };
        let city_rows = self
            .store
            .city_ranking(&row.publication_id, period, page)
            .await?;
        let ids: Vec<i64> = city_rows.iter().map(|c| c.city_id).collect();
        let mut by_city: BTreeMap<i64, Vec<SalesmanJson>> = BTreeMap::new();
        for s in self
            .store
            .top_city_salesmen(&row.publication_id, period, &ids, salesmen.0)
            .await?
        {
            by_city.entry(s.city_id).or_default().push((&s).into());
        }
        let items = city_rows
            .iter()
            .map(|c| {
                let mut city = CityJson::from(c);
                city.salesmen = by_city.remove(&c.city_id).unwrap_or_default();
                city.salesmen.sort_by_key(|s| s.rank);
                city
            })
            .collect();
        Ok(Json(CityRankingPage {
            total: summary.cities,
            publication,
            period: summary,
            limit: limit.0,
            offset: offset.0,
            items,
        }))
    }

    /// Salesmen ranked within one city.
    ///
    /// By their revenue in that city (ties: lower salesman id first), all time or in one UTC
    /// `month`. 404 if the city has no current sales in the latest publication at all; a city
    /// with sales, but none in `month`, answers 200 with `city: null`, no items and total 0.
    #[oai(
        path = "/v1/rankings/cities/:city_id/salesmen",
        method = "get",
        tag = "ApiTags::Rankings",
        operation_id = "city_salesman_ranking"
    )]
    async fn city_salesman_ranking(
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
    ) -> ApiResult<CitySalesmenPage> {
        let (row, publication, period, summary) = self.latest_period(month.0.as_deref()).await?;
        let city = self
            .store
            .city(&row.publication_id, period, city_id.0)
            .await?;
        // "No such city" is decided on all time, so a month without the city's sales is an
        // empty page rather than a 404 that would suggest a wrong id.
        if city.is_none()
            && (period == Period::AllTime
                || self
                    .store
                    .city(&row.publication_id, Period::AllTime, city_id.0)
                    .await?
                    .is_none())
        {
            return Err(ApiError::CityNotFound {
                city_id: city_id.0,
                publication_id: row.publication_id.clone(),
            }
            .into());
        }
        let page = Page {
            limit: limit.0,
            offset: offset.0,
        };
        let items = self
            .store
            .city_salesman_ranking(&row.publication_id, period, city_id.0, page)
            .await?
            .iter()
            .map(SalesmanJson::from)
            .collect();
        Ok(Json(CitySalesmenPage {
            publication,
            period: summary,
            total: city.as_ref().map_or(0, |c| c.salesmen),
            city: city.as_ref().map(CityJson::from),
            limit: limit.0,
            offset: offset.0,
            items,
        }))
    }

    /// Top salesman nationwide.
    ///
    /// Salesmen ranked by revenue over all their current sales (ties: lower salesman id
    /// first), or over those of one UTC `month`; rank 1 is the top salesman. A month without
    /// sales: no items, total 0. 503 until the marts have published.
    #[oai(
        path = "/v1/rankings/salesmen",
        method = "get",
        tag = "ApiTags::Rankings",
        operation_id = "salesman_ranking"
    )]
    async fn salesman_ranking(
        &self,
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
    ) -> ApiResult<SalesmanRankingPage> {
        let (row, publication, period, summary) = self.latest_period(month.0.as_deref()).await?;
        let page = Page {
            limit: limit.0,
            offset: offset.0,
        };
        let items = self
            .store
            .salesman_ranking(&row.publication_id, period, page)
            .await?
            .iter()
            .map(SalesmanJson::from)
            .collect();
        Ok(Json(SalesmanRankingPage {
            total: summary.salesmen,
            publication,
            period: summary,
            limit: limit.0,
            offset: offset.0,
            items,
        }))
    }

    /// The months with rankings.
    ///
    /// Every UTC calendar month of `sold_at` with at least one current sale in the latest
    /// publication, oldest first, with its counts: the values `month` takes. 503 until the
    /// marts have published.
    #[oai(
        path = "/v1/months",
        method = "get",
        tag = "ApiTags::Rankings",
        operation_id = "months"
    )]
    async fn months(&self) -> ApiResult<MonthsPage> {
        let (row, publication) = self.latest().await?;
        let items = self
            .store
            .periods(&row.publication_id)
            .await?
            .iter()
            .filter(|p| p.period != Period::ALL)
            .map(PeriodJson::from)
            .collect();
        Ok(Json(MonthsPage { publication, items }))
    }

    /// Liveness: the process is up.
    #[oai(path = "/healthz", method = "get", tag = "ApiTags::Health")]
    async fn healthz(&self) -> Json<Status> {
        Json(Status {
            status: "ok".into(),
        })
    }

    /// Readiness: ClickHouse answers. 503 (problem JSON) when it does not.
    #[oai(path = "/readyz", method = "get", tag = "ApiTags::Health")]
    async fn readyz(&self) -> ApiResult<Status> {
        self.store.ping().await?;
        Ok(Json(Status {
            status: "ready".into(),
        }))
    }
}
