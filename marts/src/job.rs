//! One marts run, and the schedule that repeats it.
//!
//! A run pins the raw tables at their current snapshots, derives the publication id from them,
//! and — unless that publication is already the latest one — recomputes both rankings from
//! scratch and publishes them. Recomputing everything is the simple, obviously-correct first
//! version; DESIGN.md describes the incremental one that will replace it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;
use iceberg::Catalog;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::current_state;
use crate::error::MartsError;
use crate::lake;
use crate::publication::{LakeSnapshots, Publication};
use crate::ranking::{self, Rankings};
use crate::store::PublicationStore;

/// Where "now" comes from, so tests can fix it.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Rankings were computed and published.
    Published {
        /// The publication written.
        publication_id: String,
        /// The run that wrote it.
        run_id: String,
        /// Cities ranked.
        cities: usize,
        /// Salesmen ranked nationwide.
        salesmen: usize,
        /// Current sales counted.
        sales: u64,
        /// Sales whose salesman or city is not in the lake yet.
        unresolved_sales: u64,
    },
    /// The lake has not changed since the latest publication; nothing was written.
    Unchanged {
        /// The latest publication, still current.
        publication_id: String,
    },
}

/// Reads the raw tables at their current snapshots and computes both rankings.
pub async fn compute(catalog: &dyn Catalog) -> Result<(LakeSnapshots, Rankings), MartsError> {
    let ctx = SessionContext::new();
    let snapshots = lake::register_raw_tables(catalog, &ctx).await?;
    let totals = current_state::compute_totals(&ctx).await?;
    Ok((snapshots, ranking::rank_all(totals)))
}

/// The marts job: a lake to read, a store to publish to, a clock.
pub struct MartsJob {
    catalog: Arc<dyn Catalog>,
    store: Arc<dyn PublicationStore>,
    clock: Arc<dyn Clock>,
}

impl MartsJob {
    /// A job reading `catalog` and publishing to `store`, on the system clock.
    pub fn new(catalog: Arc<dyn Catalog>, store: Arc<dyn PublicationStore>) -> Self {
        Self::with_clock(catalog, store, Arc::new(SystemClock))
    }

    /// Same, with an injected clock (tests).
    pub fn with_clock(
        catalog: Arc<dyn Catalog>,
        store: Arc<dyn PublicationStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            catalog,
            store,
            clock,
        }
    }

    /// One run. With `force`, publishes even when the lake has not changed since the latest
    /// publication (a rerun writes the same rows, which replace the earlier ones).
    pub async fn run_once(&self, force: bool) -> Result<RunOutcome, MartsError> {
        let run_id = uuid::Uuid::now_v7().to_string();
        let computed_at = self.clock.now();
        let span = tracing::info_span!("marts_run", run_id = %run_id);
        async {
            self.store.ensure_schema().await?;
            let ctx = SessionContext::new();
            let snapshots = lake::register_raw_tables(self.catalog.as_ref(), &ctx).await?;
            let publication_id = snapshots.publication_id();
            if !force {
                let latest = self.store.latest_publication().await?;
                if latest.is_some_and(|p| p.publication_id == publication_id) {
                    tracing::info!(publication_id, "lake unchanged since the latest publication");
                    return Ok(RunOutcome::Unchanged { publication_id });
                }
            }
            let totals = current_state::compute_totals(&ctx).await?;
            let rankings = ranking::rank_all(totals);
            let publication = Publication::new(snapshots, run_id.clone(), computed_at, rankings);
            self.store.publish(&publication).await?;
            let summary = &publication.rankings.summary;
            let outcome = RunOutcome::Published {
                publication_id,
                run_id: run_id.clone(),
                cities: publication.rankings.cities.len(),
                salesmen: publication.rankings.salesmen.len(),
                sales: summary.sales,
                unresolved_sales: summary.unresolved_sales,
            };
            tracing::info!(
                publication_id = %publication.id,
                cities = publication.rankings.cities.len(),
                salesmen = publication.rankings.salesmen.len(),
                sales = summary.sales,
                unresolved_sales = summary.unresolved_sales,
                "published rankings"
            );
            Ok(outcome)
        }
        .instrument(span)
        .await
    }

    /// Runs now, then every `interval` (measured start to start; a run longer than the
    /// interval delays the next rather than overlapping it) until `shutdown` is cancelled.
    ///
    /// A failed run is logged and retried at the next tick. Shutdown does not wait for a run
    /// in flight: ranking rows are replaceable and the publication row is written last, so an
    /// interrupted run leaves nothing a reader can see, and the next run repeats it.
    pub async fn run_scheduled(&self, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => {
                    tracing::info!("shutdown during a run; the next start repeats it");
                    break;
                }
                result = self.run_once(false) => {
                    if let Err(error) = result {
                        tracing::error!(
                            %error,
                            retryable = error.is_retryable(),
                            "marts run failed; retrying at the next tick"
                        );
                    }
                }
            }
        }
        tracing::info!("marts scheduler stopped");
    }
}
