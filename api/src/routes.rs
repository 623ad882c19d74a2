//! The endpoints. Every ranking response is read from one publication — the latest complete
//! one — and one period of it (all time, or a UTC calendar month with `?month=YYYY-MM`), and
//! says which (the publication's id and lake snapshots, and the period).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{OpenApi, Tags};
use tributary_marts::schema::PublicationRow;
use tributary_marts::{Page, Period, PublicationStore};

use crate::error::{ApiError, ProblemResponse};
use crate::lake::Lake;
use crate::model::{
    CityJson, CityRankingPage, CitySalesmenPage, MonthsPage, PeriodJson, PublicationJson,
    SalesmanJson, SalesmanRankingPage, SnapshotsPage, Status,
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

/// The time an `as_of` parameter asks for, if any.
fn as_of_param(as_of: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    as_of
        .map(|text| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| ApiError::InvalidParameter {
                    name: "as_of".into(),
                    reason: format!(
                        "{text:?} is not an RFC 3339 time such as 2026-03-01T12:00:00Z: {e}"
                    ),
                })
        })
        .transpose()
}

/// What a ranking request reads: the store, its publication and the period asked for.
type Source = (
    Arc<dyn PublicationStore>,
    PublicationRow,
    PublicationJson,
    Period,
    PeriodJson,
);

/// The API, over a publication store and (for time travel) the lake.
pub struct RankingsApi {
    store: Arc<dyn PublicationStore>,
    lake: Option<Arc<Lake>>,
}

impl RankingsApi {
    /// An API reading from `store`, without a lake (`as_of` and `/v1/snapshots` answer 503).
    pub fn new(store: Arc<dyn PublicationStore>) -> Self {
        Self { store, lake: None }
    }

    /// An API reading from `store`, and from `lake` for time travel.
    pub fn with_lake(store: Arc<dyn PublicationStore>, lake: Arc<Lake>) -> Self {
        Self {
            store,
            lake: Some(lake),
        }
    }

    fn lake(&self) -> Result<&Lake, ApiError> {
        self.lake
            .as_deref()
            .ok_or_else(|| ApiError::LakeUnavailable("no lake is configured".to_string()))
    }

    /// The latest publication, or with `as_of` one computed on demand from the lake as it was
    /// then, and the asked-for period of it.
    async fn source(
        &self,
        month: Option<&str>,
        as_of: Option<&str>,
    ) -> Result<Source, ProblemResponse> {
        let period = period_param(month)?;
        let Some(at) = as_of_param(as_of)? else {
            let (row, publication, period, summary) = self.latest_period(month).await?;
            return Ok((self.store.clone(), row, publication, period, summary));
        };
        let store = self.lake()?.publication_as_of(at).await?;
        let row = store
            .latest_publication()
            .await?
            .ok_or(ApiError::NotPublished)?;
        let mut publication = PublicationJson::from_row(&row)?;
        publication.as_of = Some(at);
        let summary = match store.period(&row.publication_id, period).await? {
            Some(p) => PeriodJson::from(&p),
            None => PeriodJson::empty(period),
        };
        Ok((store, row, publication, period, summary))
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
        /// Time travel: rank the lake as it was at this time (RFC 3339, e.g.
        /// `2026-03-01T12:00:00Z`), computed on demand from each raw table's latest snapshot
        /// committed at or before it (`/v1/snapshots` lists them). A time before the first
        /// snapshot answers 200 with empty rankings. Latest publication when absent.
        as_of: Query<Option<String>>,
    ) -> ApiResult<CityRankingPage> {
        let (store, row, publication, period, summary) =
            self.source(month.0.as_deref(), as_of.0.as_deref()).await?;
        let page = Page {
            limit: limit.0,
            offset: offset.0,
        };
        let city_rows = store
            .city_ranking(&row.publication_id, period, page)
            .await?;
        let ids: Vec<i64> = city_rows.iter().map(|c| c.city_id).collect();
        let mut by_city: BTreeMap<i64, Vec<SalesmanJson>> = BTreeMap::new();
        for s in store
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
        /// Time travel: rank the lake as it was at this time (RFC 3339, e.g.
        /// `2026-03-01T12:00:00Z`), computed on demand from each raw table's latest snapshot
        /// committed at or before it (`/v1/snapshots` lists them). A time before the first
        /// snapshot answers 200 with empty rankings. Latest publication when absent.
        as_of: Query<Option<String>>,
    ) -> ApiResult<CitySalesmenPage> {
        let (store, row, publication, period, summary) =
            self.source(month.0.as_deref(), as_of.0.as_deref()).await?;
        let city = store.city(&row.publication_id, period, city_id.0).await?;
        // "No such city" is decided on all time, so a month without the city's sales is an
        // empty page rather than a 404 that would suggest a wrong id.
        if city.is_none()
            && (period == Period::AllTime
                || store
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
        let items = store
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
        /// Time travel: rank the lake as it was at this time (RFC 3339, e.g.
        /// `2026-03-01T12:00:00Z`), computed on demand from each raw table's latest snapshot
        /// committed at or before it (`/v1/snapshots` lists them). A time before the first
        /// snapshot answers 200 with empty rankings. Latest publication when absent.
        as_of: Query<Option<String>>,
    ) -> ApiResult<SalesmanRankingPage> {
        let (store, row, publication, period, summary) =
            self.source(month.0.as_deref(), as_of.0.as_deref()).await?;
        let page = Page {
            limit: limit.0,
            offset: offset.0,
        };
        let items = store
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

    /// Every raw table's snapshots.
    ///
    /// Id, commit time and summary of each snapshot of each raw table, oldest first: the
    /// points `as_of` can travel to. 503 when the lake cannot be read.
    #[oai(
        path = "/v1/snapshots",
        method = "get",
        tag = "ApiTags::Rankings",
        operation_id = "snapshots"
    )]
    async fn snapshots(&self) -> ApiResult<SnapshotsPage> {
        let tables = self.lake()?.snapshots().await?;
        Ok(Json(SnapshotsPage {
            tables: tables.into_iter().map(Into::into).collect(),
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
