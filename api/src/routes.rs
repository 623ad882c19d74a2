//! The endpoints. Every ranking response is read from one publication — the latest complete
//! one — and says which (its id and lake snapshots).

use std::collections::BTreeMap;
use std::sync::Arc;

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{OpenApi, Tags};
use tributary_marts::schema::PublicationRow;
use tributary_marts::{Page, PublicationStore};

use crate::error::{ApiError, ProblemResponse};
use crate::model::{
    CityJson, CityRankingPage, CitySalesmenPage, PublicationJson, SalesmanJson,
    SalesmanRankingPage, Status,
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
}

type ApiResult<T> = Result<Json<T>, ProblemResponse>;

#[OpenApi]
impl RankingsApi {
    /// Top sales per city.
    ///
    /// Cities ranked by revenue (ties: lower city id first), each with its top `salesmen`
    /// salesmen ranked by their revenue in that city. 503 until the marts have published.
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
    ) -> ApiResult<CityRankingPage> {
        let (row, publication) = self.latest().await?;
        let page = Page {
            limit: limit.0,
            offset: offset.0,
        };
        let city_rows = self.store.city_ranking(&row.publication_id, page).await?;
        let ids: Vec<i64> = city_rows.iter().map(|c| c.city_id).collect();
        let mut by_city: BTreeMap<i64, Vec<SalesmanJson>> = BTreeMap::new();
        for s in self
            .store
            .top_city_salesmen(&row.publication_id, &ids, salesmen.0)
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
            total: row.cities,
            publication,
            limit: limit.0,
            offset: offset.0,
            items,
        }))
    }

    /// Salesmen ranked within one city.
    ///
    /// By their revenue in that city (ties: lower salesman id first). 404 if the city has no
    /// current sales in the latest publication.
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
    ) -> ApiResult<CitySalesmenPage> {
        let (row, publication) = self.latest().await?;
        let city = self
            .store
            .city(&row.publication_id, city_id.0)
            .await?
            .ok_or_else(|| ApiError::CityNotFound {
                city_id: city_id.0,
                publication_id: row.publication_id.clone(),
            })?;
        let page = Page {
            limit: limit.0,
            offset: offset.0,
        };
        let items = self
            .store
            .city_salesman_ranking(&row.publication_id, city_id.0, page)
            .await?
            .iter()
            .map(SalesmanJson::from)
            .collect();
        Ok(Json(CitySalesmenPage {
            publication,
            total: city.salesmen,
            city: CityJson::from(&city),
            limit: limit.0,
            offset: offset.0,
            items,
        }))
    }

    /// Top salesman nationwide.
    ///
    /// Salesmen ranked by revenue over all their current sales (ties: lower salesman id
    /// first); rank 1 is the top salesman. 503 until the marts have published.
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
    ) -> ApiResult<SalesmanRankingPage> {
        let (row, publication) = self.latest().await?;
        let page = Page {
            limit: limit.0,
            offset: offset.0,
        };
        let items = self
            .store
            .salesman_ranking(&row.publication_id, page)
            .await?
            .iter()
            .map(SalesmanJson::from)
            .collect();
        Ok(Json(SalesmanRankingPage {
            total: row.salesmen,
            publication,
            limit: limit.0,
            offset: offset.0,
            items,
        }))
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
