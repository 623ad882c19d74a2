//! The endpoints. Every ranking response is read from one publication — the latest complete
//! one, or one computed on demand from the lake for `as_of` / `as_of_snapshot` — and one
//! period of it (all time, or a UTC calendar month with `?month=YYYY-MM`), and says which (the
//! publication's id and lake snapshots, and the period).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{OpenApi, Tags};
use tributary_marts::lake::AsOf;
use tributary_marts::provenance::RankingKey;
use tributary_marts::schema::PublicationRow;
use tributary_marts::{Page, Period, PublicationStore};

use crate::dead_letters;
use crate::error::{ApiError, ProblemResponse};
use crate::lake::Lake;
use crate::model::{
    CityDetail, CityJson, CityMonthJson, CityRankingPage, CitySalesmenPage, CompletenessPage,
    DeadLetterCountsPage, DeadLettersPage, LakeSnapshotJson, MonthsPage, PeriodJson,
    PublicationJson, ReadinessJson, SalesmanCityJson, SalesmanDetail, SalesmanJson,
    SalesmanMonthJson, SalesmanRankingPage, SnapshotsPage, SourceCompletenessJson, Status,
    money_of, zero_money,
};
use crate::provenance::{ProvenancePage, page_of};
use crate::reads::{RankingReads, ScanReads};
use tributary_common::health::ReadinessChecks;

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
    /// One salesman or one city in detail.
    Details,
    /// Which source records make up a ranking row.
    Provenance,
    /// Time travel: the lake's snapshots.
    Lake,
    /// Rejected input.
    DeadLetters,
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

/// Which publication a request reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Travel {
    /// The latest publication in the store.
    Latest,
    /// The lake at a time.
    At(DateTime<Utc>),
    /// The lake as it was when a snapshot was committed.
    Snapshot(i64),
}

/// The publication `as_of` and `as_of_snapshot` ask for; at most one of them may be given.
fn travel_param(as_of: Option<&str>, as_of_snapshot: Option<i64>) -> Result<Travel, ApiError> {
    match (as_of_param(as_of)?, as_of_snapshot) {
        (None, None) => Ok(Travel::Latest),
        (Some(at), None) => Ok(Travel::At(at)),
        (None, Some(id)) => Ok(Travel::Snapshot(id)),
        (Some(_), Some(_)) => Err(ApiError::InvalidParameter {
            name: "as_of_snapshot".into(),
            reason: "give either as_of (a time) or as_of_snapshot (a snapshot id), not both".into(),
        }),
    }
}

/// The lake pins that reproduce a publication: each raw table at the snapshot it was computed
/// from. (A table that had no snapshot then is read at its current one; it can only differ if
/// it got its first snapshot since.)
fn publication_pins(publication: &PublicationJson) -> AsOf {
    AsOf::Snapshots(
        publication
            .lake_snapshots
            .iter()
            .filter_map(|s| s.snapshot_id.map(|id| (s.table.clone(), id)))
            .collect(),
    )
}

/// What a request reads: the store and its extra reads, the publication, the period asked for.
struct Source {
    store: Arc<dyn PublicationStore>,
    reads: Arc<dyn RankingReads>,
    row: PublicationRow,
    publication: PublicationJson,
    period: Period,
    summary: PeriodJson,
    /// How the lake is read to explain this publication: at its own snapshots, or as asked.
    as_of: AsOf,
}

/// The API, over a publication store and (for time travel) the lake.
pub struct RankingsApi {
    store: Arc<dyn PublicationStore>,
    reads: Arc<dyn RankingReads>,
    lake: Option<Arc<Lake>>,
    readiness: ReadinessChecks,
}

impl RankingsApi {
    /// An API reading from `store`, without a lake (`as_of` and `/v1/snapshots` answer 503).
    pub fn new(store: Arc<dyn PublicationStore>) -> Self {
        let ping = store.clone();
        let readiness = ReadinessChecks::new().check("clickhouse", move || {
            let store = ping.clone();
            async move {
                store.ping().await?;
                Ok("answers".to_string())
            }
        });
        Self {
            reads: Arc::new(ScanReads(store.clone())),
            store,
            lake: None,
            readiness,
        }
    }

    /// An API reading from `store`, and from `lake` for time travel.
    pub fn with_lake(store: Arc<dyn PublicationStore>, lake: Arc<Lake>) -> Self {
        let api = Self::new(store);
        let ping = lake.clone();
        Self {
            lake: Some(lake),
            // Optional: only time travel and provenance read the lake.
            readiness: api.readiness.clone().optional_check("lake", move || {
                let lake = ping.clone();
                async move { Ok(lake.ping().await?) }
            }),
            ..api
        }
    }

    /// Adds readiness checks (the lineage store's, by the binary).
    pub fn with_readiness(self, add: impl FnOnce(ReadinessChecks) -> ReadinessChecks) -> Self {
        Self {
            readiness: add(self.readiness.clone()),
            ..self
        }
    }

    /// Replaces the filtered and detail reads (ClickHouse's own queries instead of scans).
    pub fn with_reads(self, reads: Arc<dyn RankingReads>) -> Self {
        Self { reads, ..self }
    }

    fn lake(&self) -> Result<&Lake, ApiError> {
        self.lake
            .as_deref()
            .ok_or_else(|| ApiError::LakeUnavailable("no lake is configured".to_string()))
    }

    /// The latest publication, or one computed on demand from the lake as it was at `as_of`
    /// or at `as_of_snapshot`, and the asked-for period of it. A period without current sales
    /// (a month nobody sold in) is empty, not an error.
    async fn source(
        &self,
        month: Option<&str>,
        as_of: Option<&str>,
        as_of_snapshot: Option<i64>,
    ) -> Result<Source, ProblemResponse> {
        let period = period_param(month)?;
        let (store, reads, at, lake_as_of) = match travel_param(as_of, as_of_snapshot)? {
            Travel::Latest => (self.store.clone(), self.reads.clone(), None, None),
            Travel::At(at) => {
                let store = self.lake()?.publication_as_of(at).await?;
                let reads: Arc<dyn RankingReads> = Arc::new(ScanReads(store.clone()));
                (store, reads, Some((at, None)), Some(AsOf::Timestamp(at)))
            }
            Travel::Snapshot(id) => {
                let lake = self.lake()?;
                let cut = lake.resolve_snapshot(id).await?;
                let store = lake.publication_of(&cut.as_of).await?;
                let reads: Arc<dyn RankingReads> = Arc::new(ScanReads(store.clone()));
                (
                    store,
                    reads,
                    Some((cut.committed_at, Some(id))),
                    Some(cut.as_of),
                )
            }
        };
        let row = store
            .latest_publication()
            .await?
            .ok_or(ApiError::NotPublished)?;
        let mut publication = PublicationJson::from_row(&row)?;
        if let Some((at, snapshot)) = at {
            publication.as_of = Some(at);
            publication.as_of_snapshot = snapshot;
        }
        let summary = match store.period(&row.publication_id, period).await? {
            Some(p) => PeriodJson::from(&p),
            None => PeriodJson::empty(period),
        };
        let as_of = lake_as_of.unwrap_or_else(|| publication_pins(&publication));
        Ok(Source {
            store,
            reads,
            row,
            publication,
            period,
            summary,
            as_of,
        })
    }

    /// The provenance page of one ranking row: the row as published (or computed for the
    /// time asked), and the sales behind it read from the lake at the same snapshots.
    async fn provenance(
        &self,
        key: RankingKey,
        (month, as_of, as_of_snapshot): (Option<&str>, Option<&str>, Option<i64>),
        limit: u32,
        offset: u64,
    ) -> ApiResult<ProvenancePage> {
        let src = self.source(month, as_of, as_of_snapshot).await?;
        let publication_id = &src.row.publication_id;
        let salesman_not_found = |salesman_id| ApiError::SalesmanNotFound {
            salesman_id,
            publication_id: publication_id.clone(),
        };
        let (ranking, rank, revenue, sales) = match key {
            RankingKey::City { city_id } => src
                .reads
                .cities(publication_id, src.period, &[city_id])
                .await?
                .into_iter()
                .next()
                .map(|c| ("city", c.rank, c.revenue, c.sales))
                .ok_or_else(|| ApiError::CityNotFound {
                    city_id,
                    publication_id: publication_id.clone(),
                })?,
            RankingKey::CitySalesman {
                city_id,
                salesman_id,
            } => src
                .reads
                .salesman_cities(publication_id, src.period, salesman_id)
                .await?
                .into_iter()
                .find(|c| c.city_id == city_id)
                .map(|c| ("city_salesman", c.rank, c.revenue, c.sales))
                .ok_or_else(|| salesman_not_found(salesman_id))?,
            RankingKey::Salesman { salesman_id } => src
                .reads
                .salesman(publication_id, src.period, salesman_id)
                .await?
                .map(|s| ("salesman", s.rank, s.revenue, s.sales))
                .ok_or_else(|| salesman_not_found(salesman_id))?,
        };
        let provenance = self.lake()?.provenance(&src.as_of, src.period, key).await?;
        let records_revenue = provenance.revenue().ok_or_else(|| {
            ApiError::Lake(tributary_marts::MartsError::UnexpectedColumn {
                query: "provenance",
                column: "amount".into(),
                expected: "a sum within Decimal(18,2)",
                found: "an overflowing sum".into(),
            })
        })?;
        let (city_id, salesman_id) = match key {
            RankingKey::City { city_id } => (Some(city_id), None),
            RankingKey::CitySalesman {
                city_id,
                salesman_id,
            } => (Some(city_id), Some(salesman_id)),
            RankingKey::Salesman { salesman_id } => (None, Some(salesman_id)),
        };
        Ok(Json(ProvenancePage {
            publication: src.publication,
            period: src.period.key(),
            ranking: ranking.to_string(),
            city_id,
            salesman_id,
            rank,
            revenue: money_of(revenue),
            sales,
            records_revenue: records_revenue.to_string(),
            lake_snapshots: provenance
                .snapshots
                .0
                .iter()
                .map(|s| LakeSnapshotJson {
                    table: s.table.clone(),
                    snapshot_id: s.snapshot_id,
                })
                .collect(),
            total: provenance.records.len() as u64,
            limit,
            offset,
            records: page_of(&provenance, limit, offset),
        }))
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
    /// salesmen ranked by their revenue in that city. All time by default; with `month`, over
    /// the sales of that UTC calendar month only (a month without sales: no items, total 0).
    /// With `state`, only that state's cities, keeping their national rank. 503 until the
    /// marts have published.
    #[oai(
        path = "/v1/rankings/cities",
        method = "get",
        tag = "ApiTags::Rankings",
        operation_id = "city_ranking"
    )]
    #[allow(clippy::too_many_arguments)]
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
        /// Only the cities of this state (exact, as stored: `SP`), each keeping its national
        /// rank; `total` counts them. Unresolved cities (no state known yet) never match.
        #[oai(validator(min_length = 1, max_length = 100))]
        state: Query<Option<String>>,
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
    ) -> ApiResult<CityRankingPage> {
        let src = self
            .source(month.0.as_deref(), as_of.0.as_deref(), as_of_snapshot.0)
            .await?;
        let page = Page {
            limit: limit.0,
            offset: offset.0,
        };
        let pub_id = &src.row.publication_id;
        let (city_rows, total) = match state.0.as_deref() {
            None => (
                src.store.city_ranking(pub_id, src.period, page).await?,
                src.summary.cities,
            ),
            Some(state) => {
                src.reads
                    .cities_in_state(pub_id, src.period, state, page)
                    .await?
            }
        };
        let ids: Vec<i64> = city_rows.iter().map(|c| c.city_id).collect();
        let mut by_city: BTreeMap<i64, Vec<SalesmanJson>> = BTreeMap::new();
        for s in src
            .store
            .top_city_salesmen(pub_id, src.period, &ids, salesmen.0)
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
            total,
            publication: src.publication,
            period: src.summary,
            limit: limit.0,
            offset: offset.0,
            items,
        }))
    }

    /// Salesmen ranked within one city.
    ///
    /// By their revenue in that city (ties: lower salesman id first), all time or in one UTC
    /// `month`. 404 if the city has no current sales in the publication at all; a city
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
        /// Time travel to a snapshot id of any raw table (`/v1/snapshots`): that table is read
        /// at exactly this snapshot, every other raw table at its snapshot current when this
        /// one was committed. 404 `snapshot-not-found` if no raw table has it; not together
        /// with `as_of`.
        as_of_snapshot: Query<Option<i64>>,
    ) -> ApiResult<CitySalesmenPage> {
        let src = self
            .source(month.0.as_deref(), as_of.0.as_deref(), as_of_snapshot.0)
            .await?;
        let city = self.city_or_404(&src, city_id.0).await?;
        let page = Page {
            limit: limit.0,
            offset: offset.0,
        };
        let items = src
            .store
            .city_salesman_ranking(&src.row.publication_id, src.period, city_id.0, page)
            .await?
            .iter()
            .map(SalesmanJson::from)
            .collect();
        Ok(Json(CitySalesmenPage {
            publication: src.publication,
            period: src.summary,
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
    /// first), or over those of one UTC `month`; rank 1 is the top salesman. With `city_id`,
    /// only the salesmen who sold in that city (in the period), each keeping his nationwide
    /// rank and totals (his ranking *within* the city is `/v1/rankings/cities/{city_id}/salesmen`).
    /// A month without sales: no items, total 0. 503 until the marts have published.
    #[oai(
        path = "/v1/rankings/salesmen",
        method = "get",
        tag = "ApiTags::Rankings",
        operation_id = "salesman_ranking"
    )]
    #[allow(clippy::too_many_arguments)]
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
        /// Only the salesmen with sales in this city (in the period); `total` counts them. A
        /// city nobody sold in gives no items and total 0.
        city_id: Query<Option<i64>>,
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
    ) -> ApiResult<SalesmanRankingPage> {
        let src = self
            .source(month.0.as_deref(), as_of.0.as_deref(), as_of_snapshot.0)
            .await?;
        let page = Page {
            limit: limit.0,
            offset: offset.0,
        };
        let pub_id = &src.row.publication_id;
        let (rows, total) = match city_id.0 {
            None => (
                src.store.salesman_ranking(pub_id, src.period, page).await?,
                src.summary.salesmen,
            ),
            Some(city_id) => {
                src.reads
                    .salesmen_in_city(pub_id, src.period, city_id, page)
                    .await?
            }
        };
        Ok(Json(SalesmanRankingPage {
            total,
            publication: src.publication,
            period: src.summary,
            limit: limit.0,
            offset: offset.0,
            items: rows.iter().map(SalesmanJson::from).collect(),
        }))
    }

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
        let in_period = src.reads.salesman(pub_id, src.period, id).await?;
        let all_time = match (&in_period, src.period) {
            (Some(row), Period::AllTime) => row.clone(),
            _ => src
                .reads
                .salesman(pub_id, Period::AllTime, id)
                .await?
                .ok_or_else(|| ApiError::SalesmanNotFound {
                    salesman_id: id,
                    publication_id: pub_id.clone(),
                })?,
        };
        let city_rows = src.reads.salesman_cities(pub_id, src.period, id).await?;
        let ids: Vec<i64> = city_rows.iter().map(|c| c.city_id).collect();
        let cities: BTreeMap<i64, _> = src
            .reads
            .cities(pub_id, src.period, &ids)
            .await?
            .into_iter()
            .map(|c| (c.city_id, c))
            .collect();
        let months = src.reads.salesman_months(pub_id, id).await?;
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
        let page = Page {
            limit: limit.0,
            offset: offset.0,
        };
        let salesmen = src
            .store
            .city_salesman_ranking(pub_id, src.period, id, page)
            .await?;
        let months = src.reads.city_months(pub_id, id).await?;
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

    /// Which sales make up a city's row of the city ranking.
    ///
    /// The current sales of that city in the period (all time, or `month`) — their amounts
    /// sum to the row's revenue and their count is its sales count — each with where its
    /// current version came from: the Postgres LSN and transaction, or the file/ERP record and
    /// the ingestor's provenance; the Kafka record; when it was landed; the ingest trace id.
    /// Read from the lake at the publication's own snapshots, or as `as_of` /
    /// `as_of_snapshot` say. 404 `city-not-found` if the city has no row in the period.
    #[oai(
        path = "/v1/rankings/cities/:city_id/provenance",
        method = "get",
        tag = "ApiTags::Provenance",
        operation_id = "city_provenance"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn city_provenance(
        &self,
        /// City id.
        city_id: Path<i64>,
        /// The period of the row (`YYYY-MM`, UTC); all time when absent.
        #[oai(validator(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$"))]
        month: Query<Option<String>>,
        /// Time travel to a time (RFC 3339), as on the rankings.
        as_of: Query<Option<String>>,
        /// Time travel to a snapshot id, as on the rankings.
        as_of_snapshot: Query<Option<i64>>,
        /// Records per page, 1..=1000.
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
        /// Records to skip.
        #[oai(default)]
        offset: Query<u64>,
    ) -> ApiResult<ProvenancePage> {
        let key = RankingKey::City { city_id: city_id.0 };
        let travel = (month.0.as_deref(), as_of.0.as_deref(), as_of_snapshot.0);
        self.provenance(key, travel, limit.0, offset.0).await
    }

    /// Which sales make up a salesman's row in a city's salesman ranking.
    ///
    /// As `/v1/rankings/cities/{city_id}/provenance`, for the sales of that salesman in that
    /// city. 404 `salesman-not-found` if he has no row there in the period.
    #[oai(
        path = "/v1/rankings/cities/:city_id/salesmen/:salesman_id/provenance",
        method = "get",
        tag = "ApiTags::Provenance",
        operation_id = "city_salesman_provenance"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn city_salesman_provenance(
        &self,
        /// City id.
        city_id: Path<i64>,
        /// Salesman id.
        salesman_id: Path<i64>,
        /// The period of the row (`YYYY-MM`, UTC); all time when absent.
        #[oai(validator(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$"))]
        month: Query<Option<String>>,
        /// Time travel to a time (RFC 3339), as on the rankings.
        as_of: Query<Option<String>>,
        /// Time travel to a snapshot id, as on the rankings.
        as_of_snapshot: Query<Option<i64>>,
        /// Records per page, 1..=1000.
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
        /// Records to skip.
        #[oai(default)]
        offset: Query<u64>,
    ) -> ApiResult<ProvenancePage> {
        let key = RankingKey::CitySalesman {
            city_id: city_id.0,
            salesman_id: salesman_id.0,
        };
        let travel = (month.0.as_deref(), as_of.0.as_deref(), as_of_snapshot.0);
        self.provenance(key, travel, limit.0, offset.0).await
    }

    /// Which sales make up a salesman's row of the nationwide ranking.
    ///
    /// As `/v1/rankings/cities/{city_id}/provenance`, for all of his sales in the period.
    /// 404 `salesman-not-found` if he has no row in the period.
    #[oai(
        path = "/v1/rankings/salesmen/:salesman_id/provenance",
        method = "get",
        tag = "ApiTags::Provenance",
        operation_id = "salesman_provenance"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn salesman_provenance(
        &self,
        /// Salesman id.
        salesman_id: Path<i64>,
        /// The period of the row (`YYYY-MM`, UTC); all time when absent.
        #[oai(validator(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$"))]
        month: Query<Option<String>>,
        /// Time travel to a time (RFC 3339), as on the rankings.
        as_of: Query<Option<String>>,
        /// Time travel to a snapshot id, as on the rankings.
        as_of_snapshot: Query<Option<i64>>,
        /// Records per page, 1..=1000.
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
        /// Records to skip.
        #[oai(default)]
        offset: Query<u64>,
    ) -> ApiResult<ProvenancePage> {
        let key = RankingKey::Salesman {
            salesman_id: salesman_id.0,
        };
        let travel = (month.0.as_deref(), as_of.0.as_deref(), as_of_snapshot.0);
        self.provenance(key, travel, limit.0, offset.0).await
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

    /// Completeness: how far the published rankings reach in each source.
    ///
    /// Per source (`pg`, `files`, `erp`), the furthest source position and the newest source
    /// event the latest publication counts, and how many seconds behind now that is: a late or
    /// silent source shows here before anyone wonders why a sale is missing. 503 until the
    /// marts have published.
    #[oai(
        path = "/v1/completeness",
        method = "get",
        tag = "ApiTags::Rankings",
        operation_id = "completeness"
    )]
    async fn completeness(&self) -> ApiResult<CompletenessPage> {
        let (row, publication) = self.latest().await?;
        let now = chrono::Utc::now();
        let items = self
            .store
            .sources(&row.publication_id)
            .await?
            .into_iter()
            .map(|s| {
                // The marts store "none yet" as -1 and the Unix epoch (no Nullable in ClickHouse 18).
                let newest = (s.newest_event_at.timestamp() > 0).then_some(s.newest_event_at);
                SourceCompletenessJson {
                    source: s.source,
                    position: (s.position >= 0).then_some(s.position),
                    newest_event_at: newest,
                    behind_seconds: newest
                        .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0),
                    events: s.events,
                }
            })
            .collect();
        Ok(Json(CompletenessPage { publication, items }))
    }

    /// Every raw table's snapshots.
    ///
    /// Id, commit time and summary of each snapshot of each raw table, oldest first: the
    /// points `as_of` and `as_of_snapshot` can travel to. 503 when the lake cannot be read.
    #[oai(
        path = "/v1/snapshots",
        method = "get",
        tag = "ApiTags::Lake",
        operation_id = "snapshots"
    )]
    async fn snapshots(&self) -> ApiResult<SnapshotsPage> {
        let tables = self.lake()?.snapshots().await?;
        Ok(Json(SnapshotsPage {
            tables: tables.into_iter().map(Into::into).collect(),
        }))
    }

    /// Dead letters: the records that were rejected.
    ///
    /// Every record an ingestor or the lander rejected, from the lake table
    /// `raw.dead_letters`, newest first, with its reason and the record itself. Filter by
    /// `source` and `kind`; page with `limit`/`offset`. 503 when the lake cannot be read.
    #[oai(
        path = "/v1/dead-letters",
        method = "get",
        tag = "ApiTags::DeadLetters",
        operation_id = "dead_letters"
    )]
    async fn dead_letters(
        &self,
        /// Only this source: `pg` (Debezium's topics), `files`, `erp`, or `unknown`.
        #[oai(validator(pattern = "^(pg|files|erp|unknown)$"))]
        source: Query<Option<String>>,
        /// Only this kind of failure (`error_kind`, e.g. `bad_amount`; the counts list them).
        #[oai(validator(min_length = 1, max_length = 100))]
        kind: Query<Option<String>>,
        /// Dead letters per page, 1..=1000.
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
        /// Dead letters to skip (newest first).
        #[oai(default)]
        offset: Query<u64>,
    ) -> ApiResult<DeadLettersPage> {
        let letters = self.lake()?.dead_letters().await?;
        let filter = dead_letters::Filter {
            source: source.0,
            kind: kind.0,
        };
        let (items, total) = dead_letters::select(letters, &filter, limit.0, offset.0);
        Ok(Json(DeadLettersPage {
            total,
            limit: limit.0,
            offset: offset.0,
            items: items.into_iter().map(Into::into).collect(),
        }))
    }

    /// Dead letters counted per source and kind.
    ///
    /// How many records each source had rejected, by kind of failure, and when the newest
    /// was landed. 503 when the lake cannot be read.
    #[oai(
        path = "/v1/dead-letters/counts",
        method = "get",
        tag = "ApiTags::DeadLetters",
        operation_id = "dead_letter_counts"
    )]
    async fn dead_letter_counts(&self) -> ApiResult<DeadLetterCountsPage> {
        let letters = self.lake()?.dead_letters().await?;
        Ok(Json(DeadLetterCountsPage {
            total: letters.len() as u64,
            items: dead_letters::counts(&letters)
                .iter()
                .map(Into::into)
                .collect(),
        }))
    }

    /// Liveness: the process is up.
    #[oai(path = "/healthz", method = "get", tag = "ApiTags::Health")]
    async fn healthz(&self) -> Json<Status> {
        Json(Status {
            status: "ok".into(),
        })
    }

    /// Readiness: 200 when ClickHouse answers (the rankings need nothing else), 503 when it
    /// does not. The lake (time travel, provenance) and the lineage store are checked and
    /// reported too, as optional (`required: false`): their failure does not make the API
    /// unready. The same body as every other Tributary service's `/readyz`.
    #[oai(path = "/readyz", method = "get", tag = "ApiTags::Health")]
    async fn readyz(&self) -> ReadyResponse {
        let readiness = self.readiness.run().await;
        if readiness.is_ready() {
            ReadyResponse::Ready(Json(readiness.into()))
        } else {
            ReadyResponse::NotReady(Json(readiness.into()))
        }
    }
}

impl RankingsApi {
    /// The city's row in the source's period. "No such city" (404) is decided on all time, so
    /// a month without the city's sales is `None` rather than a 404 suggesting a wrong id.
    async fn city_or_404(
        &self,
        src: &Source,
        city_id: i64,
    ) -> Result<Option<tributary_marts::schema::CityRankingRow>, ProblemResponse> {
        let pub_id = &src.row.publication_id;
        let city = src.store.city(pub_id, src.period, city_id).await?;
        if city.is_none()
            && (src.period == Period::AllTime
                || src
                    .store
                    .city(pub_id, Period::AllTime, city_id)
                    .await?
                    .is_none())
        {
            return Err(ApiError::CityNotFound {
                city_id,
                publication_id: pub_id.clone(),
            }
            .into());
        }
        Ok(city)
    }
}

impl RankingsApi {
    /// The store and the lake, for the routes outside the OpenAPI document (`/metrics`,
    /// `/status`).
    pub(crate) fn parts(&self) -> (Arc<dyn PublicationStore>, Option<Arc<Lake>>) {
        (self.store.clone(), self.lake.clone())
    }
}

/// `/readyz`: the same body either way, 200 or 503.
#[derive(poem_openapi::ApiResponse)]
enum ReadyResponse {
    /// ClickHouse answers: the rankings can be served.
    #[oai(status = 200)]
    Ready(Json<ReadinessJson>),
    /// ClickHouse does not answer (see `checks`).
    #[oai(status = 503)]
    NotReady(Json<ReadinessJson>),
}
