//! The endpoints, one module per resource: [`rankings`] (the two rankings, months,
//! completeness), [`details`] (one salesman, one city), [`provenance`] (the source records
//! behind a ranking row), [`lake`] (snapshots, dead letters) and [`health`]. The
//! Marquez-compatible lineage routes are plain poem routes in [`crate::lineage::store`].
//!
//! Every ranking response is read from one publication — the latest complete one, or one
//! computed on demand from the lake for `as_of` / `as_of_snapshot` — and one period of it (all
//! time, or a UTC calendar month with `?month=YYYY-MM`), and says which (the publication's id
//! and lake snapshots, and the period). That choice is made in one place, [`RankingsApi::source`],
//! from the parameters every such endpoint takes (`month`, `as_of`, `as_of_snapshot`), and
//! paging in one, [`paging`].

mod details;
mod health;
mod lake;
mod provenance;
mod rankings;

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use poem_openapi::Tags;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use tributary_common::health::ReadinessChecks;
use tributary_marts::provenance::RankingKey;
use tributary_rankings::schema::PublicationRow;
use tributary_rankings::{Page, Period, RankingQueries};
use tributary_raw::AsOf;

use crate::error::{ApiError, ProblemResponse};
use crate::lake::Lake;
use crate::model::{LakeSnapshotJson, PeriodJson, PublicationJson, money_of};
use crate::provenance::{ProvenancePage, page_of};

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
                    |e: tributary_rankings::period::MonthError| ApiError::InvalidParameter {
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

/// What a request reads: the store, the publication, the period asked for.
struct Source {
    store: Arc<dyn RankingQueries>,
    row: PublicationRow,
    publication: PublicationJson,
    period: Period,
    summary: PeriodJson,
    /// How the lake is read to explain this publication: at its own snapshots, or as asked.
    as_of: AsOf,
}

/// What the non-OpenAPI routes (`/metrics`, `/status`) read: the store, the lake, the health settings.
pub(crate) type Parts = (
    Arc<dyn RankingQueries>,
    Option<Arc<Lake>>,
    Option<Arc<crate::backlog::Watch>>,
);

/// The API, over a publication store and (for time travel) the lake.
pub struct RankingsApi {
    store: Arc<dyn RankingQueries>,
    lake: Option<Arc<Lake>>,
    readiness: ReadinessChecks,
    /// Thresholds and the source Postgres the status page and metrics judge backlog by.
    health: Option<Arc<crate::backlog::Watch>>,
    limits: crate::config::LimitSettings,
    /// One permit per lake request allowed to run at once (`limits.lake_concurrency`).
    lake_permits: Arc<tokio::sync::Semaphore>,
    /// The latest publication in memory, when `store` is it (set by `serving`; HTTP validators
    /// and the readiness check read it).
    served: Arc<OnceLock<Arc<tributary_rankings::ServedStore>>>,
    /// Answers already rendered from the served publication (`serving.answer_cache_bytes`).
    answers: Option<Arc<crate::serving::AnswerCache>>,
    /// Publications lately computed from the lake for time travel (`limits.as_of_cache`).
    computed: Arc<crate::lake::ComputedCache>,
    /// The marts' kept state, read by key for the provenance of the publication it was folded
    /// to (`None`: provenance always reads the lake).
    kept_sales: Option<Arc<tributary_marts::state::KeptSalesReader>>,
    /// Provenance the kept state gave, by publication, period and row.
    kept_pages: moka::future::Cache<String, Arc<tributary_marts::provenance::Provenance>>,
}

/// Records of provenance kept from the state at most (about 300 bytes each in memory).
const KEPT_PAGES_RECORDS: u64 = 200_000;

fn kept_pages() -> moka::future::Cache<String, Arc<tributary_marts::provenance::Provenance>> {
    moka::future::Cache::builder()
        .max_capacity(KEPT_PAGES_RECORDS)
        .weigher(
            |_, provenance: &Arc<tributary_marts::provenance::Provenance>| {
                u32::try_from(provenance.records.len().max(1)).unwrap_or(u32::MAX)
            },
        )
        .build()
}

/// The lake, for as long as this request holds its turn to read it.
pub(crate) struct LakeTurn<'a> {
    lake: &'a Lake,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl std::ops::Deref for LakeTurn<'_> {
    type Target = Lake;
    fn deref(&self) -> &Lake {
        self.lake
    }
}

impl RankingsApi {
    /// An API reading from `store`, without a lake (`as_of` and `/v1/snapshots` answer 503).
    pub fn new(store: Arc<dyn RankingQueries>) -> Self {
        let ping = store.clone();
        let served: Arc<OnceLock<Arc<tributary_rankings::ServedStore>>> = Arc::default();
        let serving = served.clone();
        // ClickHouse is required unless the API serves a publication from memory: then it goes
        // on answering the latest rankings while ClickHouse is down, and says so.
        let readiness = ReadinessChecks::new().check("clickhouse", move || {
            let store = ping.clone();
            let held = serving.get().and_then(|s| s.served());
            async move {
                match (store.ping().await, held) {
                    (Ok(()), _) => Ok("answers".to_string()),
                    (Err(e), Some(p)) => Ok(format!(
                        "not answering ({e}); serving publication {} from memory",
                        p.row().publication_id
                    )),
                    (Err(e), None) => Err(e.into()),
                }
            }
        });
        Self {
            store,
            lake: None,
            readiness,
            health: None,
            limits: crate::config::LimitSettings::default(),
            lake_permits: Arc::new(tokio::sync::Semaphore::new(
                crate::config::LimitSettings::default().lake_concurrency,
            )),
            served,
            answers: None,
            computed: Arc::new(crate::lake::ComputedCache::new(
                crate::config::LimitSettings::default().as_of_cache,
            )),
            kept_sales: None,
            kept_pages: kept_pages(),
        }
    }

    /// The same API reading the provenance of the publication the marts' state was folded to
    /// from that state (`reader`), by key, instead of from the lake.
    pub fn with_kept_sales(self, reader: Arc<tributary_marts::state::KeptSalesReader>) -> Self {
        Self {
            kept_sales: Some(reader),
            ..self
        }
    }

    /// The same API within `limits` (a `lake_concurrency` of 0 counts as 1).
    pub fn with_limits(self, limits: crate::config::LimitSettings) -> Self {
        Self {
            lake_permits: Arc::new(tokio::sync::Semaphore::new(limits.lake_concurrency.max(1))),
            computed: Arc::new(crate::lake::ComputedCache::new(limits.as_of_cache)),
            limits,
            ..self
        }
    }

    /// The same API reading the publication `served` holds in memory (and the store under it
    /// for anything else), with HTTP validators (`ETag`, 304) on the responses it answers.
    pub fn serving(self, served: Arc<tributary_rankings::ServedStore>) -> Self {
        let _ = self.served.set(served.clone());
        Self {
            store: served,
            ..self
        }
    }

    /// The same API sending the answers it already rendered from the served publication from
    /// `answers` (none: every answer is rendered afresh).
    pub fn with_answers(self, answers: Option<crate::serving::AnswerCache>) -> Self {
        Self {
            answers: answers.map(Arc::new),
            ..self
        }
    }

    /// The answer cache, if the API keeps rendered answers.
    pub(crate) fn answers(&self) -> Option<Arc<crate::serving::AnswerCache>> {
        self.answers.clone()
    }

    /// The served store, if the API answers from memory.
    pub(crate) fn served(&self) -> Option<Arc<tributary_rankings::ServedStore>> {
        self.served.get().cloned()
    }

    /// How long a request may run (`limits.request_timeout_ms`).
    pub fn request_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.limits.request_timeout_ms)
    }

    /// An API reading from `store`, and from `lake` for time travel.
    pub fn with_lake(store: Arc<dyn RankingQueries>, lake: Arc<Lake>) -> Self {
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

    /// Judges backlog by `health` (status page, `/metrics`), and reports the source's
    /// replication slots in `/readyz` (optional: a slot behind does not stop the API serving).
    pub fn with_health(self, health: crate::backlog::HealthSettings) -> Self {
        let health = Arc::new(crate::backlog::Watch::new(health));
        let watched = health.clone();
        let timeout = self.readiness.timeout();
        let readiness = if health.settings.source_url.is_empty() {
            self.readiness.clone()
        } else {
            self.readiness
                .clone()
                .optional_check("replication_slots", move || {
                    let health = watched.clone();
                    async move {
                        let slots = health.slots(timeout).await.unwrap_or(Ok(Vec::new()))?;
                        let behind: Vec<String> = slots
                            .iter()
                            .filter(|s| {
                                crate::backlog::judge_slot(s, &health.settings)
                                    == crate::backlog::Level::Down
                            })
                            .map(|s| s.name.clone())
                            .collect();
                        if behind.is_empty() {
                            Ok(format!("{} slots within their thresholds", slots.len()))
                        } else {
                            Err(format!("slots about to be lost or far behind: {behind:?}").into())
                        }
                    }
                })
        };
        Self {
            health: Some(health),
            readiness,
            ..self
        }
    }

    /// Adds readiness checks (the lineage store's, by the binary).
    pub fn with_readiness(self, add: impl FnOnce(ReadinessChecks) -> ReadinessChecks) -> Self {
        Self {
            readiness: add(self.readiness.clone()),
            ..self
        }
    }

    /// The lake, once this request's turn to read it comes (`limits.lake_concurrency` run at
    /// once; a request that waits longer than `limits.lake_queue_ms` is answered 429).
    pub(crate) async fn lake(&self) -> Result<LakeTurn<'_>, ApiError> {
        let lake = self
            .lake
            .as_deref()
            .ok_or_else(|| ApiError::LakeUnavailable("no lake is configured".to_string()))?;
        let wait = std::time::Duration::from_millis(self.limits.lake_queue_ms);
        match tokio::time::timeout(wait, self.lake_permits.acquire()).await {
            Ok(Ok(permit)) => Ok(LakeTurn {
                lake,
                _permit: permit,
            }),
            _ => Err(ApiError::Busy {
                running: self.limits.lake_concurrency.max(1),
                waited_ms: self.limits.lake_queue_ms,
            }),
        }
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
        let (store, travelled, at, lake_as_of) = match travel_param(as_of, as_of_snapshot)? {
            Travel::Latest => (self.store.clone(), None, None, None),
            Travel::At(at) => {
                let as_of = AsOf::Timestamp(at);
                let (store, row) = self.travel(&as_of).await?;
                (store, Some(row), Some((at, None)), Some(as_of))
            }
            Travel::Snapshot(id) => {
                let cut = self.lake().await?.resolve_snapshot(id).await?;
                let (store, row) = self.travel(&cut.as_of).await?;
                (
                    store,
                    Some(row),
                    Some((cut.committed_at, Some(id))),
                    Some(cut.as_of),
                )
            }
        };
        let row = match travelled {
            Some(row) => row,
            None => store
                .latest_publication()
                .await?
                .ok_or(ApiError::NotPublished)?,
        };
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
            row,
            publication,
            period,
            summary,
            as_of,
        })
    }

    /// The publication of the lake as `as_of` pins it, and the store to read it from: the
    /// retained publication of exactly those snapshots when the store still holds one (the
    /// marts computed it; same snapshots, same rows), else one computed from the lake in a lake
    /// turn and kept in a small cache keyed by the snapshots (`limits.as_of_cache` entries).
    async fn travel(
        &self,
        as_of: &AsOf,
    ) -> Result<(Arc<dyn RankingQueries>, PublicationRow), ApiError> {
        let lake = self
            .lake
            .as_deref()
            .ok_or_else(|| ApiError::LakeUnavailable("no lake is configured".to_string()))?;
        // Metadata only: no turn needed.
        let snapshots = lake.resolve(as_of).await?;
        let id = snapshots.publication_id();
        if let Some(row) = self.store.publication(&id).await? {
            return Ok((self.store.clone(), row));
        }
        let (store, computed) = match self.computed.get(&id) {
            Some(store) => (store, false),
            None => (self.lake().await?.publication_of(as_of).await?, true),
        };
        let row = store
            .latest_publication()
            .await?
            .ok_or(ApiError::NotPublished)?;
        if computed {
            // Keyed by what was computed: an `as_of` at or after now may have seen a commit
            // that landed since it was resolved.
            self.computed.put(row.publication_id.clone(), store.clone());
        }
        Ok((store, row))
    }

    /// The sales behind a ranking row of `src`'s publication from the marts' kept state, when
    /// it is folded to exactly that publication's snapshots (the latest publication, unless the
    /// marts are mid-run). `None`: read the lake (a state that cannot answer, or fails, costs
    /// speed, never an answer).
    ///
    /// A publication never changes, so what the state answered for one of its rows is kept
    /// (bounded by records, [`KEPT_PAGES_RECORDS`]) and requests for a row being read wait for
    /// that one read instead of each querying the state.
    async fn kept_provenance(
        &self,
        src: &Source,
        key: RankingKey,
    ) -> Option<Arc<tributary_marts::provenance::Provenance>> {
        let reader = self.kept_sales.clone()?;
        let snapshots = tributary_rankings::LakeSnapshots(
            src.publication
                .lake_snapshots
                .iter()
                .map(|s| tributary_rankings::LakeSnapshot {
                    table: s.table.clone(),
                    snapshot_id: s.snapshot_id,
                })
                .collect(),
        );
        let row = format!("{}|{}|{key:?}", src.publication.publication_id, src.period);
        let period = src.period;
        // Not answered (`Err(None)`: the state is not at these snapshots) and failures are not
        // kept: a later request asks the state again.
        let read = self
            .kept_pages
            .try_get_with(row, async move {
                match tributary_marts::provenance::provenance_from_state(
                    &reader, &snapshots, period, key,
                )
                .await
                {
                    Ok(Some(provenance)) => Ok(Arc::new(provenance)),
                    Ok(None) => Err(None),
                    Err(error) => Err(Some(error)),
                }
            })
            .await;
        match read {
            Ok(provenance) => Some(provenance),
            Err(error) => {
                if let Some(error) = error.as_ref() {
                    tracing::warn!(%error, "provenance: the kept state cannot be read; reading the lake");
                }
                None
            }
        }
    }

    /// The provenance page of one ranking row: the row as published (or computed for the
    /// time asked), and the sales behind it, read from the marts' kept state when it holds
    /// that publication, else from the lake at the same snapshots.
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
                .store
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
                .store
                .salesman_cities(publication_id, src.period, salesman_id)
                .await?
                .into_iter()
                .find(|c| c.city_id == city_id)
                .map(|c| ("city_salesman", c.rank, c.revenue, c.sales))
                .ok_or_else(|| salesman_not_found(salesman_id))?,
            RankingKey::Salesman { salesman_id } => src
                .store
                .salesman(publication_id, src.period, salesman_id)
                .await?
                .map(|s| ("salesman", s.rank, s.revenue, s.sales))
                .ok_or_else(|| salesman_not_found(salesman_id))?,
        };
        let (provenance, records_from) = match self.kept_provenance(&src, key).await {
            Some(provenance) => (provenance, "kept_state"),
            None => (
                Arc::new(
                    self.lake()
                        .await?
                        .provenance(&src.as_of, src.period, key)
                        .await?,
                ),
                "lake",
            ),
        };
        let records_revenue = provenance.revenue().ok_or_else(|| {
            ApiError::Lake(tributary_marts::MartsError::UnexpectedColumn {
                query: "provenance",
                column: "amount".into(),
                expected: "a sum within Decimal(18,2)",
                found: "an overflowing sum".into(),
            })
        })?;
        let (city_id, salesman_id) = key.ids();
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
            records_from: records_from.to_string(),
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

impl RankingsApi {
    /// The city's row in the source's period. "No such city" (404) is decided on all time, so
    /// a month without the city's sales is `None` rather than a 404 suggesting a wrong id.
    async fn city_or_404(
        &self,
        src: &Source,
        city_id: i64,
    ) -> Result<Option<tributary_rankings::schema::CityRankingRow>, ProblemResponse> {
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
    pub(crate) fn parts(&self) -> Parts {
        (self.store.clone(), self.lake.clone(), self.health.clone())
    }
}

/// The page `limit` and `offset` ask for (their ranges are checked by the OpenAPI validators).
fn paging(limit: &Query<u32>, offset: &Query<u64>) -> Page {
    Page {
        limit: limit.0,
        offset: offset.0,
    }
}

/// One group of endpoints (one `#[OpenApi]` impl each) over the shared [`RankingsApi`].
macro_rules! route_group {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        pub struct $name(Arc<RankingsApi>);

        impl std::ops::Deref for $name {
            type Target = RankingsApi;

            fn deref(&self) -> &RankingsApi {
                &self.0
            }
        }
    )*};
}

route_group!(
    /// `/v1/rankings/…`, `/v1/months`, `/v1/completeness`.
    Rankings,
    /// `/v1/salesmen/{id}`, `/v1/cities/{id}`.
    Details,
    /// `/v1/rankings/…/provenance`.
    Provenance,
    /// `/v1/snapshots`, `/v1/dead-letters`.
    LakeRoutes,
    /// `/healthz`, `/readyz`.
    Health,
);

/// Every endpoint group, as `OpenApiService` takes them.
pub type Services = (Rankings, Details, Provenance, LakeRoutes, Health);

impl RankingsApi {
    /// The endpoint groups, sharing this API's store, lake and readiness checks.
    pub fn services(self) -> Services {
        let api = Arc::new(self);
        (
            Rankings(api.clone()),
            Details(api.clone()),
            Provenance(api.clone()),
            LakeRoutes(api.clone()),
            Health(api),
        )
    }
}
