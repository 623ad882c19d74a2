//! Time travel: the API's read access to the lake, for `?as_of=` and `/v1/snapshots`.
//!
//! An `as_of` answer is computed on demand — the marts' own computation
//! (`tributary_marts::job::compute_as_of`) over the snapshots current at that time — and put
//! in a throw-away `MemoryStore` as a publication, so the handlers page and shape it exactly
//! like a published one. Nothing is cached: each request reads the lake again (about 0.3 s on
//! the local stack's ~4,000 sales; it grows with the lake).
//!
//! The catalog is opened on first use, not at start-up: the ClickHouse endpoints must keep
//! working while the lake is down, and a lake that comes back is picked up by the next request.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use iceberg::Catalog;
use tokio::sync::OnceCell;
use tributary_common::LakeSettings;
use tributary_marts::job::compute_as_of;
use tributary_marts::lake::{AsOf, TableSnapshots, list_snapshots};
use tributary_marts::{MemoryStore, Publication, PublicationStore};

use crate::error::ApiError;

/// The `run_id` of an on-demand publication: no marts run wrote it.
pub const ON_DEMAND_RUN_ID: &str = "on-demand";

/// Where the raw tables are, opened lazily.
pub struct Lake {
    settings: Option<LakeSettings>,
    namespace: String,
    catalog: OnceCell<Arc<dyn Catalog>>,
}

impl Lake {
    /// The lake of `settings` (the SQL catalog), opened at the first request that needs it.
    pub fn from_settings(settings: LakeSettings) -> Self {
        Self {
            namespace: settings.namespace.clone(),
            settings: Some(settings),
            catalog: OnceCell::new(),
        }
    }

    /// An already open catalog (tests: iceberg's `MemoryCatalog`).
    pub fn from_catalog(catalog: Arc<dyn Catalog>, namespace: impl Into<String>) -> Self {
        Self {
            settings: None,
            namespace: namespace.into(),
            catalog: OnceCell::new_with(Some(catalog)),
        }
    }

    async fn catalog(&self) -> Result<Arc<dyn Catalog>, ApiError> {
        self.catalog
            .get_or_try_init(|| async {
                let settings = self.settings.as_ref().ok_or_else(|| {
                    ApiError::LakeUnavailable("no lake is configured".to_string())
                })?;
                let catalog = tributary_lake::catalog::open(settings)
                    .await
                    .map_err(|e| ApiError::LakeUnavailable(e.to_string()))?;
                Ok::<Arc<dyn Catalog>, ApiError>(Arc::new(catalog))
            })
            .await
            .cloned()
    }

    /// Every raw table's snapshots.
    pub async fn snapshots(&self) -> Result<Vec<TableSnapshots>, ApiError> {
        let catalog = self.catalog().await?;
        list_snapshots(catalog.as_ref(), &self.namespace)
            .await
            .map_err(ApiError::Lake)
    }

    /// Both rankings as of `at`, as a one-publication store. A time before the first snapshot
    /// gives an empty publication (every snapshot null): nothing had landed yet.
    pub async fn publication_as_of(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Arc<dyn PublicationStore>, ApiError> {
        let catalog = self.catalog().await?;
        let (snapshots, rankings) =
            compute_as_of(catalog.as_ref(), &self.namespace, &AsOf::Timestamp(at))
                .await
                .map_err(ApiError::Lake)?;
        let publication =
            Publication::of_periods(snapshots, ON_DEMAND_RUN_ID, Utc::now(), rankings);
        let store = MemoryStore::new();
        store.publish(&publication).await?;
        Ok(Arc::new(store))
    }
}
