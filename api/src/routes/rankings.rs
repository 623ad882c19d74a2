//! The two rankings — top sales per city (with each city's salesmen) and top salesman
//! nationwide — and what a publication holds: its months and how far it reaches per source.

use std::collections::BTreeMap;

use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use tributary_rankings::Period;

use super::{ApiResult, ApiTags, Rankings, default_limit, default_salesmen, paging};
use crate::model::{
    CityJson, CityRankingPage, CitySalesmenPage, CompletenessPage, MonthsPage, PeriodJson,
    SalesmanJson, SalesmanRankingPage, SourceCompletenessJson,
};

#[OpenApi]
impl Rankings {
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
        let page = paging(&limit, &offset);
        let pub_id = &src.row.publication_id;
        let (city_rows, total) = match state.0.as_deref() {
            None => (
                src.store.city_ranking(pub_id, src.period, page).await?,
                src.summary.cities,
            ),
            Some(state) => {
                src.store
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
        let page = paging(&limit, &offset);
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
        let page = paging(&limit, &offset);
        let pub_id = &src.row.publication_id;
        let (rows, total) = match city_id.0 {
            None => (
                src.store.salesman_ranking(pub_id, src.period, page).await?,
                src.summary.salesmen,
            ),
            Some(city_id) => {
                src.store
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
}
