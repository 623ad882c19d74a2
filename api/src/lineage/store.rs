//! A Marquez-compatible subset of Marquez's lineage API, over OpenLineage events stored in
//! Postgres — because the Marquez API cannot be installed here (`io.github.marquezproject:
//! marquez-api` is not served by the reachable Maven registry; lineage/README.md).
//!
//! ```text
//!  job ─POST /api/v1/lineage─► parse_event (minimal structure) ─► EventLog (Postgres
//!      `<schema>.lineage_events`, one row per event, in arrival order)
//!  GET /api/v1/lineage, /column-lineage, /namespaces… ─► LineageStore: catches up on the rows
//!      it has not folded yet ─► LineageIndex (lineage::graph, pure) ─► Marquez's JSON
//! ```
//!
//! Postgres is the source of truth; each API process keeps a [`LineageIndex`] folded from the
//! rows (by id) and folds the new ones before answering, so several API processes over one
//! store agree. The index grows with the jobs, datasets and columns, not with the events.
//! Errors are problem JSON like the rest of the API: 400 `invalid-lineage-event` (the member
//! named in `parameter`) or `invalid-parameter`, 404 `node-not-found` / `namespace-not-found`,
//! 503 `lineage-store-unavailable`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::lineage::graph::{self, DEFAULT_DEPTH, EventError, GraphError, LineageIndex};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::web::{Path, Query};
use poem::{Body, IntoResponse, Response, Route, handler};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::config::LineageStoreSettings;
use crate::error::Problem;

/// Largest page of jobs or datasets (Marquez's default limit is 100).
const MAX_LIMIT: usize = 1000;
/// Deepest graph walk a request may ask for: the pipeline is a few hops deep, and each hop of a
/// walk costs the whole index, so an unbounded `depth` is a denial of service.
const MAX_DEPTH: u32 = 100;
/// Largest accepted event body.
const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// What can go wrong storing or reading lineage.
#[derive(Debug, thiserror::Error)]
pub enum LineageApiError {
    /// The body is not JSON.
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    /// The event lacks what a store needs.
    #[error("not a storable OpenLineage RunEvent: {0}")]
    InvalidEvent(#[from] EventError),
    /// A query parameter is missing or malformed.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// Its name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No such node or namespace.
    #[error(transparent)]
    NotFound(#[from] GraphError),
    /// Postgres cannot be reached or refused the statement; retrying later may help.
    #[error("lineage store unavailable: {0}")]
    StoreUnavailable(String),
    /// The store holds a row that is not an event (written by something else).
    #[error("lineage store row {id} is not an event: {reason}")]
    CorruptRow {
        /// Row id.
        id: i64,
        /// Why.
        reason: String,
    },
}

impl LineageApiError {
    /// The HTTP status of each error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotJson(_) | Self::InvalidEvent(_) | Self::InvalidParameter { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::CorruptRow { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem-JSON body.
    pub fn problem(&self) -> Problem {
        let (slug, title, parameter) = match self {
            Self::NotJson(_) => ("invalid-lineage-event", "Invalid lineage event", None),
            Self::InvalidEvent(e) => (
                "invalid-lineage-event",
                "Invalid lineage event",
                Some(e.field.clone()),
            ),
            Self::InvalidParameter { name, .. } => (
                "invalid-parameter",
                "Invalid request parameter",
                Some(name.to_string()),
            ),
            Self::NotFound(GraphError::NodeNotFound(_)) => (
                "node-not-found",
                "Lineage node not found",
                Some("nodeId".to_string()),
            ),
            Self::NotFound(GraphError::NamespaceNotFound(_)) => {
                ("namespace-not-found", "Namespace not found", None)
            }
            Self::StoreUnavailable(_) => (
                "lineage-store-unavailable",
                "Lineage store unavailable",
                None,
            ),
            Self::CorruptRow { .. } => ("internal", "Internal error", None),
        };
        let status = self.status();
        Problem {
            kind: format!("urn:tributary:problem:{slug}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: self.to_string(),
            parameter,
        }
    }
}

impl IntoResponse for LineageApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, status = status.as_u16(), "lineage request failed");
        }
        let body = poem_openapi::types::ToJSON::to_json(&self.problem()).unwrap_or_default();
        Response::builder()
            .status(status)
            .content_type("application/problem+json")
            .body(body.to_string())
    }
}

/// The append-only log of events: Postgres, or memory for tests.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Appends one event (already checked).
    async fn append(
        &self,
        event: &Value,
        summary: &graph::RunEventSummary,
    ) -> Result<(), LineageApiError>;
    /// The events with a row id above `after`, in id order, at most `limit`.
    async fn since(&self, after: i64, limit: i64) -> Result<Vec<(i64, Value)>, LineageApiError>;
    /// Deletes the events received before `before`; returns how many.
    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, LineageApiError>;
    /// Keeps `index` (JSON), folded from the events up to row id `position`, as the checkpoint a
    /// new process starts from; an older position never overwrites a newer one.
    async fn save_checkpoint(&self, position: i64, index: &Value) -> Result<(), LineageApiError>;
    /// The checkpoint saved last, if any: its position and index.
    async fn load_checkpoint(&self) -> Result<Option<(i64, Value)>, LineageApiError>;
}

/// Events in memory (unit tests, and the API served without a configured store).
#[derive(Debug, Default)]
pub struct MemoryEventLog {
    events: std::sync::Mutex<Vec<(i64, DateTime<Utc>, Value)>>,
    /// The last row id given: ids keep rising after a prune, as a sequence does.
    last_id: std::sync::atomic::AtomicI64,
    checkpoint: std::sync::Mutex<Option<(i64, Value)>>,
}

#[async_trait]
impl EventLog for MemoryEventLog {
    async fn append(
        &self,
        event: &Value,
        _summary: &graph::RunEventSummary,
    ) -> Result<(), LineageApiError> {
        let mut events = self.events.lock().expect("event log lock");
        let id = self
            .last_id
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        events.push((id, Utc::now(), event.clone()));
        Ok(())
    }

    async fn since(&self, after: i64, limit: i64) -> Result<Vec<(i64, Value)>, LineageApiError> {
        let events = self.events.lock().expect("event log lock");
        Ok(events
            .iter()
            .filter(|(id, _, _)| *id > after)
            .take(limit.max(0) as usize)
            .map(|(id, _, e)| (*id, e.clone()))
            .collect())
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, LineageApiError> {
        let mut events = self.events.lock().expect("event log lock");
        let len = events.len();
        events.retain(|(_, received, _)| *received >= before);
        Ok((len - events.len()) as u64)
    }

    async fn save_checkpoint(&self, position: i64, index: &Value) -> Result<(), LineageApiError> {
        let mut checkpoint = self.checkpoint.lock().expect("checkpoint lock");
        if checkpoint
            .as_ref()
            .is_none_or(|(saved, _)| *saved <= position)
        {
            *checkpoint = Some((position, index.clone()));
        }
        Ok(())
    }

    async fn load_checkpoint(&self) -> Result<Option<(i64, Value)>, LineageApiError> {
        Ok(self.checkpoint.lock().expect("checkpoint lock").clone())
    }
}

/// Events in Postgres: `<schema>.lineage_events`, created on first use if missing. The
/// connection is opened lazily and reopened after it breaks, so the API starts (and serves the
/// rankings) while Postgres is down.
pub struct PostgresEventLog {
    settings: LineageStoreSettings,
    client: Mutex<Option<tokio_postgres::Client>>,
}

impl std::fmt::Debug for PostgresEventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresEventLog")
            .field("settings", &self.settings)
            .finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> LineageApiError {
    LineageApiError::StoreUnavailable(e.to_string())
}

impl PostgresEventLog {
    /// A log in `settings.schema` of `settings.url` (the schema name is checked here).
    pub fn new(settings: LineageStoreSettings) -> Result<Self, String> {
        settings.checked_schema()?;
        Ok(Self {
            settings,
            client: Mutex::new(None),
        })
    }

    fn table(&self) -> String {
        format!("\"{}\".lineage_events", self.settings.schema)
    }

    fn checkpoint_table(&self) -> String {
        format!("\"{}\".lineage_index_checkpoint", self.settings.schema)
    }

    /// Connects and creates the schema and table if missing (at start-up, and after a break).
    pub async fn connect(&self) -> Result<(), LineageApiError> {
        let mut slot = self.client.lock().await;
        self.connected(&mut slot).await.map(|_| ())
    }

    async fn connected<'a>(
        &self,
        slot: &'a mut Option<tokio_postgres::Client>,
    ) -> Result<&'a tokio_postgres::Client, LineageApiError> {
        if slot.as_ref().is_none_or(|c| c.is_closed()) {
            let (client, connection) =
                tokio_postgres::connect(&self.settings.url, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| unavailable(format!("connect to the lineage store: {e}")))?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::warn!(%error, "lineage store connection closed");
                }
            });
            let schema = &self.settings.schema;
            client
                .batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
                     CREATE TABLE IF NOT EXISTS {table} (
                         id            bigserial PRIMARY KEY,
                         received_at   timestamptz NOT NULL DEFAULT now(),
                         event_time    timestamptz NOT NULL,
                         event_type    text NOT NULL,
                         run_id        uuid NOT NULL,
                         job_namespace text NOT NULL,
                         job_name      text NOT NULL,
                         event         jsonb NOT NULL
                     );
                     CREATE INDEX IF NOT EXISTS lineage_events_run ON {table} (run_id);
                     CREATE INDEX IF NOT EXISTS lineage_events_received ON {table} (received_at);
                     CREATE TABLE IF NOT EXISTS {checkpoint} (
                         id       int PRIMARY KEY CHECK (id = 1),
                         position bigint NOT NULL,
                         saved_at timestamptz NOT NULL DEFAULT now(),
                         index    jsonb NOT NULL
                     );",
                    table = self.table(),
                    checkpoint = self.checkpoint_table()
                ))
                .await
                .map_err(|e| unavailable(format!("create {}: {e}", self.table())))?;
            tracing::info!(table = %self.table(), "lineage store ready");
            *slot = Some(client);
        }
        Ok(slot.as_ref().expect("connected above"))
    }
}

#[async_trait]
impl EventLog for PostgresEventLog {
    async fn append(
        &self,
        event: &Value,
        summary: &graph::RunEventSummary,
    ) -> Result<(), LineageApiError> {
        let mut slot = self.client.lock().await;
        let client = self.connected(&mut slot).await?;
        // Text parameters cast in SQL: no extra tokio-postgres type features needed.
        let event_type = serde_json::to_value(summary.event_type)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let result = client
            .execute(
                &format!(
                    "INSERT INTO {} (event_time, event_type, run_id, job_namespace, job_name, event)
                     VALUES ($1::text::timestamptz, $2, $3::text::uuid, $4, $5, $6::text::jsonb)",
                    self.table()
                ),
                &[
                    &summary.event_time.to_rfc3339(),
                    &event_type,
                    &summary.run_id.to_string(),
                    &summary.job.namespace,
                    &summary.job.name,
                    &event.to_string(),
                ],
            )
            .await;
        if let Err(e) = result {
            *slot = None; // reconnect next time
            return Err(unavailable(format!("insert into {}: {e}", self.table())));
        }
        Ok(())
    }

    async fn since(&self, after: i64, limit: i64) -> Result<Vec<(i64, Value)>, LineageApiError> {
        let mut slot = self.client.lock().await;
        let client = self.connected(&mut slot).await?;
        let rows = match client
            .query(
                &format!(
                    "SELECT id, event::text FROM {} WHERE id > $1 ORDER BY id LIMIT $2",
                    self.table()
                ),
                &[&after, &limit],
            )
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                *slot = None;
                return Err(unavailable(format!("read {}: {e}", self.table())));
            }
        };
        rows.iter()
            .map(|row| {
                let id: i64 = row.get(0);
                let text: String = row.get(1);
                serde_json::from_str(&text).map(|v| (id, v)).map_err(|e| {
                    LineageApiError::CorruptRow {
                        id,
                        reason: e.to_string(),
                    }
                })
            })
            .collect()
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, LineageApiError> {
        let mut slot = self.client.lock().await;
        let client = self.connected(&mut slot).await?;
        let result = client
            .execute(
                &format!(
                    "DELETE FROM {} WHERE received_at < $1::text::timestamptz",
                    self.table()
                ),
                &[&before.to_rfc3339()],
            )
            .await;
        match result {
            Ok(n) => Ok(n),
            Err(e) => {
                *slot = None;
                Err(unavailable(format!("prune {}: {e}", self.table())))
            }
        }
    }

    async fn save_checkpoint(&self, position: i64, index: &Value) -> Result<(), LineageApiError> {
        let mut slot = self.client.lock().await;
        let client = self.connected(&mut slot).await?;
        let result = client
            .execute(
                &format!(
                    "INSERT INTO {table} AS saved (id, position, index) VALUES (1, $1, $2::text::jsonb)
                     ON CONFLICT (id) DO UPDATE
                     SET position = EXCLUDED.position, saved_at = now(), index = EXCLUDED.index
                     WHERE saved.position <= EXCLUDED.position",
                    table = self.checkpoint_table()
                ),
                &[&position, &index.to_string()],
            )
            .await;
        if let Err(e) = result {
            *slot = None;
            return Err(unavailable(format!(
                "save {}: {e}",
                self.checkpoint_table()
            )));
        }
        Ok(())
    }

    async fn load_checkpoint(&self) -> Result<Option<(i64, Value)>, LineageApiError> {
        let mut slot = self.client.lock().await;
        let client = self.connected(&mut slot).await?;
        let row = match client
            .query_opt(
                &format!(
                    "SELECT position, index::text FROM {} WHERE id = 1",
                    self.checkpoint_table()
                ),
                &[],
            )
            .await
        {
            Ok(row) => row,
            Err(e) => {
                *slot = None;
                return Err(unavailable(format!(
                    "read {}: {e}",
                    self.checkpoint_table()
                )));
            }
        };
        let Some(row) = row else { return Ok(None) };
        let position: i64 = row.get(0);
        let text: String = row.get(1);
        serde_json::from_str(&text)
            .map(|index| Some((position, index)))
            .map_err(|e| LineageApiError::CorruptRow {
                id: position,
                reason: format!("lineage index checkpoint: {e}"),
            })
    }
}

/// The store: the log, and the index folded from it so far.
pub struct LineageStore {
    log: Arc<dyn EventLog>,
    folded: Mutex<Folded>,
}

/// The index and how far into the log it reaches.
#[derive(Default)]
struct Folded {
    index: LineageIndex,
    /// The row id of the last event folded.
    position: i64,
    /// Whether the saved checkpoint was looked for (once, before the first fold).
    restored: bool,
    /// Whether the index changed since the checkpoint last saved.
    dirty: bool,
}

/// The checkpoint's layout; a checkpoint of another is ignored (the log is folded from its
/// start instead).
const CHECKPOINT_FORMAT: u64 = 1;

impl std::fmt::Debug for LineageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineageStore").finish_non_exhaustive()
    }
}

impl LineageStore {
    /// A store over `log`.
    pub fn new(log: Arc<dyn EventLog>) -> Self {
        Self {
            log,
            folded: Mutex::new(Folded::default()),
        }
    }

    /// A store in memory.
    pub fn in_memory() -> Self {
        Self::new(Arc::new(MemoryEventLog::default()))
    }

    /// Checks and appends one event (the body of `POST /api/v1/lineage`).
    pub async fn record(&self, body: &[u8]) -> Result<(), LineageApiError> {
        let event: Value =
            serde_json::from_slice(body).map_err(|e| LineageApiError::NotJson(e.to_string()))?;
        let summary = graph::parse_event(&event)?;
        self.log.append(&event, &summary).await
    }

    /// The retention: deletes the events received before `before` and forgets from the index
    /// what no later event names ([`LineageIndex::forget_before`], by event time). Returns the
    /// events deleted and the jobs and datasets forgotten.
    pub async fn prune(&self, before: DateTime<Utc>) -> Result<(u64, usize), LineageApiError> {
        // The checkpoint restored first: what it holds is forgotten now, not at the next prune.
        self.fold(&mut *self.folded.lock().await).await?;
        let deleted = self.log.prune(before).await?;
        let mut folded = self.folded.lock().await;
        let forgotten = folded.index.forget_before(before);
        folded.dirty |= forgotten > 0;
        Ok((deleted, forgotten))
    }

    /// Prunes every `interval` with `retention` until `shutdown` (the API's background task).
    /// A failed prune is logged and tried again an interval later.
    pub async fn prune_every(
        self: Arc<Self>,
        interval: std::time::Duration,
        retention: chrono::Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            match self.prune(Utc::now() - retention).await {
                Ok((0, 0)) => {}
                Ok((events, forgotten)) => {
                    tracing::info!(events, forgotten, "pruned the lineage store")
                }
                Err(error) => tracing::warn!(%error, "lineage store prune failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// Folds what is new and saves the index with its position as the checkpoint a new process
    /// starts from, if it changed since the last save. Returns the position saved.
    pub async fn checkpoint(&self) -> Result<Option<i64>, LineageApiError> {
        let (position, image) = {
            let mut folded = self.folded.lock().await;
            self.fold(&mut folded).await?;
            if !folded.dirty {
                return Ok(None);
            }
            folded.dirty = false;
            let image = serde_json::json!({
                "format": CHECKPOINT_FORMAT,
                "index": folded.index.to_checkpoint(),
            });
            (folded.position, image)
        };
        if let Err(error) = self.log.save_checkpoint(position, &image).await {
            self.folded.lock().await.dirty = true;
            return Err(error);
        }
        Ok(Some(position))
    }

    /// Checkpoints every `interval` until `shutdown` (the API's background task), and once
    /// more on the way out. A failed save is logged and tried again an interval later.
    pub async fn checkpoint_every(
        self: Arc<Self>,
        interval: std::time::Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            let stopping = tokio::select! {
                _ = shutdown.cancelled() => true,
                _ = tokio::time::sleep(interval) => false,
            };
            match self.checkpoint().await {
                Ok(Some(position)) => {
                    tracing::debug!(position, "saved the lineage index checkpoint")
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "lineage index checkpoint failed"),
            }
            if stopping {
                return;
            }
        }
    }

    /// Runs `read` on the index, after folding the events appended since the last read.
    pub async fn read<T>(
        &self,
        read: impl FnOnce(&LineageIndex) -> Result<T, GraphError>,
    ) -> Result<T, LineageApiError> {
        let mut folded = self.folded.lock().await;
        self.fold(&mut folded).await?;
        Ok(read(&folded.index)?)
    }

    /// Where the index stands: the row id of the last event folded.
    pub async fn position(&self) -> i64 {
        self.folded.lock().await.position
    }

    /// Starts from the saved checkpoint (the first time), then folds the events appended since.
    async fn fold(&self, folded: &mut Folded) -> Result<(), LineageApiError> {
        const BATCH: i64 = 5000;
        if !folded.restored {
            if let Some((position, image)) = self.log.load_checkpoint().await? {
                match restore(image) {
                    Ok(index) => {
                        tracing::info!(position, "lineage index restored from its checkpoint");
                        folded.index = index;
                        folded.position = position;
                    }
                    Err(why) => tracing::warn!(
                        position,
                        why,
                        "lineage index checkpoint not used; folding the whole store"
                    ),
                }
            }
            folded.restored = true;
        }
        loop {
            let rows = self.log.since(folded.position, BATCH).await?;
            let n = rows.len() as i64;
            for (id, event) in rows {
                // Rows were checked when appended; one another writer put there is skipped.
                match graph::parse_event(&event) {
                    Ok(summary) => folded.index.add(&summary),
                    Err(error) => tracing::warn!(id, %error, "skipping a stored lineage row"),
                }
                folded.position = id;
                folded.dirty = true;
            }
            if n < BATCH {
                return Ok(());
            }
        }
    }
}

/// The index a checkpoint holds, if its format is this one's.
fn restore(mut image: Value) -> Result<LineageIndex, String> {
    let format = image["format"].as_u64();
    if format != Some(CHECKPOINT_FORMAT) {
        return Err(format!(
            "format {format:?}, this API reads {CHECKPOINT_FORMAT}"
        ));
    }
    LineageIndex::from_checkpoint(image["index"].take()).map_err(|e| e.to_string())
}

fn json(value: &impl serde::Serialize) -> Response {
    Response::builder()
        .content_type("application/json")
        .body(serde_json::to_string(value).unwrap_or_else(|_| "{}".into()))
}

type Params = Query<BTreeMap<String, String>>;

fn node_id(params: &Params) -> Result<String, LineageApiError> {
    params
        .get("nodeId")
        .filter(|n| !n.trim().is_empty())
        .cloned()
        .ok_or(LineageApiError::InvalidParameter {
            name: "nodeId",
            reason: "is required: dataset:<namespace>:<name>, job:<namespace>:<name> or datasetField:<namespace>:<dataset>:<field>".into(),
        })
}

fn number(params: &Params, name: &'static str, default: usize) -> Result<usize, LineageApiError> {
    match params.get(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| LineageApiError::InvalidParameter {
                name,
                reason: format!("{v:?} is not a non-negative integer"),
            }),
    }
}

fn depth(params: &Params) -> Result<u32, LineageApiError> {
    let depth = number(params, "depth", DEFAULT_DEPTH as usize)?;
    match u32::try_from(depth) {
        Ok(depth) if depth <= MAX_DEPTH => Ok(depth),
        _ => Err(LineageApiError::InvalidParameter {
            name: "depth",
            reason: format!("must be at most {MAX_DEPTH}"),
        }),
    }
}

fn page(params: &Params) -> Result<(usize, usize), LineageApiError> {
    let limit = number(params, "limit", 100)?;
    if limit == 0 || limit > MAX_LIMIT {
        return Err(LineageApiError::InvalidParameter {
            name: "limit",
            reason: format!("must be 1..={MAX_LIMIT}"),
        });
    }
    Ok((limit, number(params, "offset", 0)?))
}

fn answer<T: serde::Serialize>(result: Result<T, LineageApiError>) -> Response {
    match result {
        Ok(value) => json(&value),
        Err(error) => error.into_response(),
    }
}

#[handler]
async fn post_event(store: poem::web::Data<&Arc<LineageStore>>, body: Body) -> Response {
    let bytes = match body.into_bytes_limit(MAX_EVENT_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => return LineageApiError::NotJson(e.to_string()).into_response(),
    };
    match store.record(&bytes).await {
        Ok(()) => StatusCode::CREATED.into_response(),
        Err(error) => error.into_response(),
    }
}

#[handler]
async fn get_lineage(store: poem::web::Data<&Arc<LineageStore>>, params: Params) -> Response {
    let result = async {
        let (node, depth) = (node_id(&params)?, depth(&params)?);
        store.read(|index| index.lineage(&node, depth)).await
    };
    answer(result.await)
}

#[handler]
async fn get_column_lineage(
    store: poem::web::Data<&Arc<LineageStore>>,
    params: Params,
) -> Response {
    let result = async {
        let (node, depth) = (node_id(&params)?, depth(&params)?);
        let downstream = match params.get("withDownstream").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(LineageApiError::InvalidParameter {
                    name: "withDownstream",
                    reason: format!("{other:?} is neither true nor false"),
                });
            }
        };
        store
            .read(|index| index.column_lineage(&node, depth, downstream))
            .await
    };
    answer(result.await)
}

#[handler]
async fn get_namespaces(store: poem::web::Data<&Arc<LineageStore>>) -> Response {
    answer(store.read(|index| Ok(index.namespaces())).await)
}

#[handler]
async fn get_jobs(
    store: poem::web::Data<&Arc<LineageStore>>,
    Path(namespace): Path<String>,
    params: Params,
) -> Response {
    let result = async {
        let (limit, offset) = page(&params)?;
        store
            .read(|index| index.jobs(&namespace, limit, offset))
            .await
    };
    answer(result.await)
}

#[handler]
async fn get_datasets(
    store: poem::web::Data<&Arc<LineageStore>>,
    Path(namespace): Path<String>,
    params: Params,
) -> Response {
    let result = async {
        let (limit, offset) = page(&params)?;
        store
            .read(|index| index.datasets(&namespace, limit, offset))
            .await
    };
    answer(result.await)
}

/// The routes, to nest under `/api/v1`.
pub fn routes(store: Arc<LineageStore>) -> impl poem::Endpoint<Output = Response> {
    use poem::EndpointExt;
    Route::new()
        .at("/lineage", poem::post(post_event).get(get_lineage))
        .at("/column-lineage", poem::get(get_column_lineage))
        .at("/namespaces", poem::get(get_namespaces))
        .at("/namespaces/:namespace/jobs", poem::get(get_jobs))
        .at("/namespaces/:namespace/datasets", poem::get(get_datasets))
        .data(store)
        .map_to_response()
}

/// The path templates of these routes, for the request metrics.
pub const ROUTE_TEMPLATES: &[&str] = &[
    "/api/v1/lineage",
    "/api/v1/column-lineage",
    "/api/v1/namespaces",
    "/api/v1/namespaces/{namespace}/jobs",
    "/api/v1/namespaces/{namespace}/datasets",
    "/lineage",
];

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use poem::http::StatusCode;
    use poem::test::TestClient;
    use serde_json::{Value, json};
    use tributary_rankings::MemoryStore;

    use crate::app_with_auth;
    use crate::auth::AuthSettings;

    const WRITE_TOKEN: &str = "lineage-write-token-for-tests";

    /// The whole app with a write token, every request sending it.
    fn writable_client() -> TestClient<impl poem::Endpoint> {
        let auth = AuthSettings {
            write_token: Some(WRITE_TOKEN.into()),
            read_token: None,
        };
        TestClient::new(app_with_auth(Arc::new(MemoryStore::new()), auth))
            .default_header("Authorization", format!("Bearer {WRITE_TOKEN}"))
    }

    fn event(kind: &str, run: &str, job: &str, input: &str, output: &str) -> Value {
        json!({
            "eventType": kind,
            "eventTime": "2026-11-26T01:00:00.000Z",
            "producer": "urn:test",
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
            "run": {"runId": run},
            "job": {"namespace": "tributary", "name": job},
            "inputs": [{"namespace": "kafka://127.0.0.1:9092", "name": input}],
            "outputs": [{"namespace": "s3://warehouse", "name": output}],
        })
    }

    async fn body(resp: poem::test::TestResponse) -> Value {
        resp.json().await.value().deserialize()
    }

    /// What `api/tests/bad-inputs/lineage/expectations.toml` says of one posted event.
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ExpectedRefusal {
        file: String,
        status: u16,
        detail: String,
        #[allow(dead_code)]
        why: String,
    }

    #[derive(Debug, serde::Deserialize)]
    struct EventCorpus {
        event: Vec<ExpectedRefusal>,
    }

    /// The committed corpus of bad lineage events (`api/tests/bad-inputs/lineage/`): each
    /// `POST /api/v1/lineage` is refused with its status and a problem naming what is wrong,
    /// nothing of it is stored, and a good event after them all is taken.
    #[tokio::test]
    async fn every_committed_bad_event_is_refused_with_its_reason() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-inputs/lineage");
        let corpus: EventCorpus = tributary_common::corpus::load(&dir, |c: &EventCorpus| {
            c.event.iter().map(|e| e.file.clone()).collect()
        });
        let client = writable_client();
        let mut problems = Vec::new();
        for expected in &corpus.event {
            let resp = client
                .post("/api/v1/lineage")
                .content_type("application/json")
                .body(std::fs::read(dir.join(&expected.file)).unwrap())
                .send()
                .await;
            let status = resp.0.status().as_u16();
            let text = resp.0.into_body().into_string().await.unwrap_or_default();
            if status != expected.status || !text.contains(&expected.detail) {
                problems.push(format!(
                    "{}: expected {} {:?}; got {status} {text}",
                    expected.file, expected.status, expected.detail
                ));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        let namespaces = body(client.get("/api/v1/namespaces").send().await).await;
        assert_eq!(
            namespaces["namespaces"],
            json!([]),
            "nothing of them stored"
        );
        client
            .post("/api/v1/lineage")
            .body_json(&event(
                "START",
                "0190d3a4-6b1e-7c2d-8e3f-000000000010",
                "j",
                "i",
                "o",
            ))
            .send()
            .await
            .assert_status(StatusCode::CREATED);
    }

    #[tokio::test]
    async fn events_posted_come_back_as_marquez_graphs() {
        let client = writable_client();
        let run = "0190d3a4-6b1e-7c2d-8e3f-000000000001";
        for kind in ["START", "COMPLETE"] {
            client
                .post("/api/v1/lineage")
                .body_json(&event(
                    kind,
                    run,
                    "lake.pg_sale",
                    "salesdb.public.sale",
                    "raw/pg_sale",
                ))
                .send()
                .await
                .assert_status(StatusCode::CREATED);
        }
        let resp = client
            .get("/api/v1/lineage")
            .query(
                "nodeId",
                &"dataset:kafka://127.0.0.1:9092:salesdb.public.sale",
            )
            .send()
            .await;
        resp.assert_status_is_ok();
        let graph = body(resp).await;
        let ids: Vec<&str> = graph["graph"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [
                "dataset:kafka://127.0.0.1:9092:salesdb.public.sale",
                "dataset:s3://warehouse:raw/pg_sale",
                "job:tributary:lake.pg_sale"
            ]
        );
        assert_eq!(
            graph["graph"][2]["outEdges"],
            json!([{"origin": "job:tributary:lake.pg_sale", "destination": "dataset:s3://warehouse:raw/pg_sale"}])
        );

        let namespaces = body(client.get("/api/v1/namespaces").send().await).await;
        assert_eq!(namespaces["namespaces"].as_array().unwrap().len(), 3);
        // A namespace with `://` in it, percent-encoded in the path.
        let datasets = body(
            client
                .get("/api/v1/namespaces/kafka%3A%2F%2F127.0.0.1%3A9092/datasets")
                .send()
                .await,
        )
        .await;
        assert_eq!(datasets["totalCount"], 1);
        assert_eq!(datasets["datasets"][0]["name"], "salesdb.public.sale");
        let jobs = body(client.get("/api/v1/namespaces/tributary/jobs").send().await).await;
        assert_eq!(jobs["jobs"][0]["latestRun"]["state"], "COMPLETED");
    }

    /// A new process starts from the checkpoint and folds only what came after it: with every
    /// event already gone from the log, the restored index still answers as the first did.
    #[tokio::test]
    async fn a_new_store_starts_from_the_checkpoint() {
        use super::{EventLog, LineageStore, MemoryEventLog};
        let log = Arc::new(MemoryEventLog::default());
        let first = LineageStore::new(log.clone());
        for (kind, run) in [("START", "01"), ("COMPLETE", "01"), ("START", "02")] {
            let run = format!("018f7a2e-0000-7000-8000-0000000000{run}");
            let body = event(kind, &run, "lander", "sales.pg_sale", "raw.pg_sale");
            first.record(body.to_string().as_bytes()).await.unwrap();
        }
        assert_eq!(first.checkpoint().await.unwrap(), Some(3));
        assert_eq!(
            first.checkpoint().await.unwrap(),
            None,
            "nothing new to save"
        );
        let folded = first.read(|index| Ok(index.to_checkpoint())).await.unwrap();

        let later = event(
            "COMPLETE",
            "018f7a2e-0000-7000-8000-000000000002",
            "lander",
            "sales.pg_sale",
            "raw.pg_sale",
        );
        first.record(later.to_string().as_bytes()).await.unwrap();
        // Every event before the checkpoint leaves the log; the one after it stays.
        let received_cutoff = chrono::Utc::now() + chrono::Duration::hours(1);
        let kept: Vec<_> = log.since(3, 10).await.unwrap();
        assert_eq!(log.prune(received_cutoff).await.unwrap(), 4);
        for (_, event) in &kept {
            let summary = crate::lineage::graph::parse_event(event).unwrap();
            log.append(event, &summary).await.unwrap();
        }

        let second = LineageStore::new(log.clone());
        let restored = second.read(|index| Ok(index.to_checkpoint())).await;
        assert_eq!(
            second.position().await,
            5,
            "checkpoint at 3, then the re-appended event"
        );
        let expected = first.read(|index| Ok(index.to_checkpoint())).await.unwrap();
        assert_eq!(restored.unwrap(), expected);
        assert_ne!(
            folded, expected,
            "the event after the checkpoint was folded too"
        );

        // A checkpoint of another format is not used: the log is folded from its start.
        log.save_checkpoint(9, &json!({"format": 999, "index": {}}))
            .await
            .unwrap();
        let third = LineageStore::new(log.clone());
        let from_log = third.read(|index| Ok(index.to_checkpoint())).await.unwrap();
        assert_eq!(third.position().await, 5);
        assert_ne!(
            from_log, expected,
            "only the re-appended event is left to fold"
        );
    }

    #[tokio::test]
    async fn bad_events_and_unknown_nodes_are_problems() {
        let client = writable_client();
        let mut bad = event("COMPLETE", "not-a-uuid", "j", "t", "o");
        let resp = client.post("/api/v1/lineage").body_json(&bad).send().await;
        resp.assert_status(StatusCode::BAD_REQUEST);
        resp.assert_content_type("application/problem+json");
        let problem = body(resp).await;
        assert_eq!(
            problem["type"],
            "urn:tributary:problem:invalid-lineage-event"
        );
        assert_eq!(problem["parameter"], "run.runId");
        bad["run"]["runId"] = json!("0190d3a4-6b1e-7c2d-8e3f-000000000002");
        bad["outputs"] = json!("raw/x");
        let problem = body(client.post("/api/v1/lineage").body_json(&bad).send().await).await;
        assert_eq!(problem["parameter"], "outputs");
        let resp = client
            .post("/api/v1/lineage")
            .body("{not json")
            .send()
            .await;
        resp.assert_status(StatusCode::BAD_REQUEST);

        let resp = client
            .get("/api/v1/lineage")
            .query("nodeId", &"job:tributary:nope")
            .send()
            .await;
        resp.assert_status(StatusCode::NOT_FOUND);
        assert_eq!(
            body(resp).await["type"],
            "urn:tributary:problem:node-not-found"
        );
        let resp = client.get("/api/v1/lineage").send().await;
        resp.assert_status(StatusCode::BAD_REQUEST);
        assert_eq!(body(resp).await["parameter"], "nodeId");
        let resp = client
            .get("/api/v1/column-lineage")
            .query("nodeId", &"dataset:a:b")
            .query("depth", &"-1")
            .send()
            .await;
        assert_eq!(body(resp).await["parameter"], "depth");
        for too_deep in ["101", "4294967295"] {
            let resp = client
                .get("/api/v1/lineage")
                .query("nodeId", &"dataset:a:b")
                .query("depth", &too_deep)
                .send()
                .await;
            resp.assert_status(StatusCode::BAD_REQUEST);
            assert_eq!(body(resp).await["parameter"], "depth", "{too_deep}");
        }
        let resp = client.get("/api/v1/namespaces/nope/jobs").send().await;
        resp.assert_status(StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn the_page_is_self_contained() {
        let client = writable_client();
        let resp = client.get("/lineage").send().await;
        resp.assert_status_is_ok();
        let html = resp.0.into_body().into_string().await.unwrap();
        assert!(html.contains("<svg") && html.contains("/api/v1/lineage?nodeId="));
        // Nothing loaded from elsewhere.
        assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    }

    #[test]
    fn a_schema_that_is_not_an_identifier_is_refused() {
        let settings = crate::config::LineageStoreSettings {
            schema: "x; DROP TABLE y".into(),
            ..Default::default()
        };
        assert!(super::PostgresEventLog::new(settings).is_err());
        assert!(super::PostgresEventLog::new(Default::default()).is_ok());
    }
}
