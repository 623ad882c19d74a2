//! Tributary API: the rankings in ClickHouse over HTTP, with an OpenAPI document and Swagger UI.
//!
//! ```text
//!  request ─► metrics (route template, method, status) ─► poem Route
//!     ├─► ETag / 304 (serving.rs) ─► RankingsApi (poem-openapi)
//!     │        ├─► ServedStore: the latest publication in memory (refreshed, serving.rs)
//!     │        ├─► RankingQueries (tributary-rankings) ─► ClickHouse `marts`
//!     │        └─► Lake (as_of, as_of_snapshot, /v1/snapshots, /v1/dead-letters) ─► Iceberg `raw`
//!     ├─► /metrics (metrics.rs)   └─► /status (status.rs: server-rendered HTML)
//!     └── every error ─► ApiError::status + problem JSON (error.rs)
//! ```
//!
//! Routes: `/v1/rankings/cities` (`?state=`), `/v1/rankings/cities/{city_id}/salesmen`,
//! `/v1/rankings/salesmen` (`?city_id=`), `/v1/salesmen/{salesman_id}`, `/v1/cities/{city_id}`,
//! `/v1/months`, `/v1/snapshots`, `/v1/dead-letters`, `/v1/dead-letters/counts`, `/healthz`,
//! `/readyz`, `/metrics`, `/status`, `/openapi.json`, Swagger UI at `/docs`. Each ranking
//! response is read from the latest complete publication and names it, and the period it
//! ranks: all time, or one UTC calendar month with `?month=YYYY-MM`.
//!
//! Time travel: with `?as_of=<RFC 3339>` a ranking or detail is instead computed on demand from
//! the lake as it was then (each raw table at its latest snapshot committed by that time; see
//! [`lake`]), and its `publication` names those snapshots, `run_id: "on-demand"` and `as_of`;
//! `?as_of_snapshot=<id>` does the same as of the commit of one snapshot of any raw table
//! ([`Lake::resolve_snapshot`]).
#![deny(missing_docs)]

pub mod auth;
pub mod backlog;
pub mod config;
pub mod dead_letters;
pub mod error;
pub mod lake;
pub mod lineage;
pub mod metrics;
pub mod model;
pub mod provenance;
pub mod routes;
pub mod serving;
pub mod source_ledger;
pub mod status;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_dead_letters;
#[cfg(test)]
mod tests_openapi;
#[cfg(test)]
mod tests_provenance;
#[cfg(test)]
mod tests_serving;
#[cfg(test)]
mod tests_time_travel;

use std::sync::Arc;
use std::time::{Duration, Instant};

use poem::listener::TcpAcceptor;
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route, Server};
use poem_openapi::OpenApiService;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tributary_rankings::{ClickHouseStore, RankingQueries};

use crate::auth::AuthSettings;
pub use crate::config::ApiConfig;
pub use crate::error::ApiError;
use crate::error::{ProblemResponse, from_poem_error};
pub use crate::lake::Lake;
use crate::lineage::store::{self as lineage_store, LineageStore, PostgresEventLog};
use crate::metrics::{ApiMetrics, route_template};
use crate::routes::{RankingsApi, Services};

/// How long a graceful shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a `/metrics` scrape waits for the source Postgres's replication slots.
const SLOTS_SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

fn openapi_service(api: RankingsApi) -> OpenApiService<Services, ()> {
    OpenApiService::new(api.services(), "Tributary API", env!("CARGO_PKG_VERSION")).description(
        "Sales rankings computed by the Tributary marts from the lake. Money is a decimal \
         string with two places; every error is problem JSON (application/problem+json).",
    )
}

/// The OpenAPI document, as served at `/openapi.json`.
pub fn openapi_json() -> String {
    openapi_service(RankingsApi::new(Arc::new(
        tributary_rankings::MemoryStore::new(),
    )))
    .spec()
}

/// The whole HTTP application over `store`, without a lake (time travel answers 503) and taking
/// no writes (no `auth.write_token`).
pub fn app(store: Arc<dyn RankingQueries>) -> impl Endpoint<Output = Response> {
    app_with_auth(store, AuthSettings::default())
}

/// [`app`] with the bearer tokens of `auth`.
pub fn app_with_auth(
    store: Arc<dyn RankingQueries>,
    auth: AuthSettings,
) -> impl Endpoint<Output = Response> {
    app_of(
        RankingsApi::new(store),
        Arc::new(LineageStore::in_memory()),
        Arc::new(auth),
    )
}

/// The whole HTTP application over `store`, with `lake` for time travel.
pub fn app_with_lake(
    store: Arc<dyn RankingQueries>,
    lake: Arc<Lake>,
) -> impl Endpoint<Output = Response> {
    app_of(
        RankingsApi::with_lake(store, lake),
        Arc::new(LineageStore::in_memory()),
        Arc::default(),
    )
}

fn app_of(
    api: RankingsApi,
    lineage: Arc<LineageStore>,
    auth: Arc<AuthSettings>,
) -> impl Endpoint<Output = Response> {
    let timeout = api.request_timeout();
    let served = api.served();
    let answers = api.answers();
    let (store, lake, health) = api.parts();
    let api = openapi_service(api);
    let docs = api.swagger_ui();
    let spec = api.spec_endpoint();
    let mut templates = path_templates(&api.spec());
    // Routes outside the OpenAPI document, so /metrics labels them by template too.
    templates.extend(
        ["/metrics", "/status", "/openapi.json", "/docs/*"]
            .into_iter()
            .map(String::from),
    );
    templates.extend(lineage_store::ROUTE_TEMPLATES.iter().map(|t| t.to_string()));
    let templates = Arc::new(templates);
    let metrics = Arc::new(ApiMetrics::new());
    let scrape = {
        let (store, metrics, health) = (store.clone(), metrics.clone(), health.clone());
        let (served, answers) = (served.clone(), answers.clone());
        poem::endpoint::make(move |_req| {
            let (store, metrics, health) = (store.clone(), metrics.clone(), health.clone());
            let (served, answers) = (served.clone(), answers.clone());
            async move {
                if let Some(served) = served.as_deref() {
                    let (loads, failures) = served.counts();
                    metrics.set_served(served.served().map(|p| p.ranking_rows()), loads, failures);
                }
                if let Some(answers) = answers.as_deref() {
                    let (hits, misses) = answers.counts();
                    metrics.set_answers(hits, misses);
                }
                if let Some(h) = health.as_deref() {
                    match h.slots(SLOTS_SCRAPE_TIMEOUT).await {
                        Some(Ok(slots)) => metrics.set_slots(&slots),
                        Some(Err(error)) => {
                            tracing::warn!(%error, "could not read the replication slots for /metrics")
                        }
                        None => {}
                    }
                }
                let computed_at = store
                    .latest_publication()
                    .await
                    .ok()
                    .flatten()
                    .map(|p| p.computed_at);
                metrics.set_publication(computed_at, chrono::Utc::now());
                metrics
                    .encode()
                    .with_content_type("text/plain; version=0.0.4; charset=utf-8")
            }
        })
    };
    let status_page = {
        let lineage = lineage.clone();
        poem::endpoint::make(move |_req| {
            let (store, lake, health) = (store.clone(), lake.clone(), health.clone());
            let lineage = lineage.clone();
            async move {
                status::page(
                    store.as_ref(),
                    lake.as_deref(),
                    health.as_deref(),
                    Some(&lineage),
                    chrono::Utc::now(),
                )
                .await
            }
        })
    };
    Route::new()
        .nest("/", api)
        .at("/openapi.json", spec)
        .at("/metrics", poem::get(scrape))
        .at("/status", poem::get(status_page))
        .nest("/api/v1", lineage_store::routes(lineage))
        .at("/lineage", poem::get(crate::lineage::page::page))
        .nest("/docs", docs)
        // Innermost: a 304 costs no handler, and the tag names the publication the handler read.
        .around(move |ep, req: Request| {
            let (served, answers) = (served.clone(), answers.clone());
            async move {
                match served.as_deref() {
                    Some(served) => {
                        serving::conditional(served, answers.as_deref(), &ep, req).await
                    }
                    None => ep.call(req).await.map(IntoResponse::into_response),
                }
            }
        })
        // No request runs unbounded: past the limit its work is dropped and it is answered 503.
        .around(move |ep, req: Request| async move {
            match tokio::time::timeout(timeout, ep.call(req)).await {
                Ok(answer) => answer,
                Err(_) => Ok(ProblemResponse::from(ApiError::TimedOut {
                    after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                })
                .into_response()),
            }
        })
        // Inside the request metrics and span below, so a refusal is counted and traced too.
        .around(move |ep, req: Request| {
            let auth = auth.clone();
            async move {
                match auth.check(&req) {
                    Ok(()) => ep.call(req).await,
                    Err(refused) => Ok(crate::auth::refusal(refused)),
                }
            }
        })
        .around(move |ep, req: Request| {
            let (templates, metrics) = (templates.clone(), metrics.clone());
            async move {
                let started = Instant::now();
                let path = req.uri().path().to_string();
                let method = req.method().to_string();
                let route = route_template(&templates, &path);
                // One server span per request (HTTP semantic conventions), continuing the
                // caller's trace when it sends a W3C `traceparent`.
                let span = tracing::info_span!(
                    "http_request",
                    otel.name = %format!("{method} {route}"),
                    otel.kind = "server",
                    http.request.method = %method,
                    http.route = %route,
                    url.path = %path,
                    http.response.status_code = tracing::field::Empty,
                );
                if let Some(parent) = req.header("traceparent").and_then(|tp| {
                    tributary_common::telemetry::remote_context(tp, req.header("tracestate"))
                }) {
                    tributary_common::telemetry::set_remote_parent(&span, parent);
                }
                let resp = match ep.call(req).instrument(span.clone()).await {
                    Ok(resp) => resp,
                    // Errors poem raised itself (parameter parsing, unknown routes): same
                    // problem-JSON shape as the handlers' own errors.
                    Err(err) if err.is_from_response() => err.into_response(),
                    Err(err) => {
                        let error = from_poem_error(&err, &path, &templates);
                        ProblemResponse::from(error).into_response()
                    }
                };
                span.record("http.response.status_code", resp.status().as_u16());
                metrics.observe(route, &method, resp.status().as_u16(), started.elapsed());
                Ok(resp)
            }
        })
}

/// The path templates of the OpenAPI document (`/v1/rankings/cities/{city_id}/salesmen`, …).
fn path_templates(spec_json: &str) -> Vec<String> {
    serde_json::from_str::<serde_json::Value>(spec_json)
        .ok()
        .and_then(|doc| {
            doc.get("paths")
                .and_then(|p| p.as_object())
                .map(|paths| paths.keys().cloned().collect())
        })
        .unwrap_or_default()
}

/// Serves the API on `listener` until `shutdown` is cancelled, reading ClickHouse as configured.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: ApiConfig,
    shutdown: CancellationToken,
) -> Result<(), ApiError> {
    let store: Arc<dyn RankingQueries> = Arc::new(ClickHouseStore::new(&config.clickhouse)?);
    // The marts announce each publication of rankings computed from this lake namespace.
    let published = if config.serving.refresh_ms > 0 {
        tributary_raw::commits::listen_for_publications(&config.lake).await
    } else {
        None
    };
    let (state_url, state_schema) = config.state_location();
    let lake_memory =
        (config.limits.lake_memory_mb > 0).then_some(config.limits.lake_memory_mb << 20);
    let lake = Arc::new(
        Lake::from_settings(config.lake)
            .with_topics(&config.topics)
            .with_memory_limit(lake_memory)?,
    );
    let lineage_check = tributary_common::health::postgres_answers(&config.lineage.url);
    let mut api = RankingsApi::with_lake(store.clone(), lake)
        .with_readiness(|checks| checks.optional_check("lineage_store", lineage_check))
        .with_health(config.health.clone())
        .with_limits(config.limits.clone())
        .with_kept_sales(Arc::new(
            tributary_marts::state::KeptSalesReader::new(state_url, state_schema)
                .map_err(ApiError::Lake)?,
        ));
    if config.serving.refresh_ms > 0 {
        let served = Arc::new(tributary_rankings::ServedStore::new(store));
        tokio::spawn(serving::keep_fresh(
            served.clone(),
            std::time::Duration::from_millis(config.serving.refresh_ms),
            published.as_ref().map(|(wake, _)| wake.clone()),
            shutdown.clone(),
        ));
        api = api
            .serving(served)
            .with_answers(serving::AnswerCache::new(config.serving.answer_cache_bytes));
    }
    // The lineage store is opened now if Postgres answers, else at the first lineage request:
    // the rankings do not depend on it.
    let (retention_s, prune_interval_s, checkpoint_interval_s) = (
        config.lineage.retention_s,
        config.lineage.prune_interval_s,
        config.lineage.checkpoint_interval_s,
    );
    let log = PostgresEventLog::new(config.lineage)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    if let Err(error) = log.connect().await {
        tracing::warn!(%error, "lineage store not ready yet; retrying at each lineage request");
    }
    let lineage = Arc::new(LineageStore::new(Arc::new(log)));
    tokio::spawn(lineage.clone().prune_every(
        std::time::Duration::from_secs(prune_interval_s.max(1)),
        chrono::Duration::seconds(retention_s.min(i64::MAX as u64) as i64),
        shutdown.clone(),
    ));
    tokio::spawn(lineage.clone().checkpoint_every(
        std::time::Duration::from_secs(checkpoint_interval_s.max(1)),
        shutdown.clone(),
    ));
    let served = serve_api(listener, api, lineage, Arc::new(config.auth), shutdown).await;
    if let Some((_, listening)) = published {
        listening.abort();
    }
    served
}

/// Serves the API over any store and lake (tests use `MemoryStore` and a memory catalog).
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<dyn RankingQueries>,
    lake: Arc<Lake>,
    shutdown: CancellationToken,
) -> Result<(), ApiError> {
    serve_api(
        listener,
        RankingsApi::with_lake(store, lake),
        Arc::new(LineageStore::in_memory()),
        Arc::default(),
        shutdown,
    )
    .await
}

/// Serves `api` on `listener` until `shutdown` is cancelled.
async fn serve_api(
    listener: tokio::net::TcpListener,
    api: RankingsApi,
    lineage: Arc<LineageStore>,
    auth: Arc<AuthSettings>,
    shutdown: CancellationToken,
) -> Result<(), ApiError> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "api listening");
    Server::new_with_acceptor(TcpAcceptor::from_tokio(listener)?)
        .run_with_graceful_shutdown(
            app_of(api, lineage, auth),
            shutdown.cancelled_owned(),
            Some(SHUTDOWN_GRACE),
        )
        .await?;
    tracing::info!("api stopped");
    Ok(())
}
