//! Marquez's lineage graph, computed from stored OpenLineage `RunEvent`s — the pure part of the
//! Marquez-compatible subset the API serves when Marquez itself is not available.
//!
//! [`parse_event`] checks an incoming event's minimal structure (what a store needs: `eventTime`,
//! `run.runId`, `job.namespace`/`name`, each dataset's `namespace`/`name`) and extracts what the
//! graph needs; it is lenient about everything else, so events of other producers (Debezium's,
//! Airflow's…) are accepted as Marquez accepts them. [`LineageIndex`] folds the events, in the
//! order they arrived, into the state Marquez keeps, and answers its read endpoints:
//!
//! - `GET /api/v1/lineage?nodeId=&depth=` → [`LineageIndex::lineage`]. As in Marquez
//!   (`LineageService`, `LineageDao.getLineage`): a job's inputs and outputs are those of its
//!   *current version* — for a batch job, every dataset named by the events of its latest run
//!   that ended (COMPLETE, ABORT or FAIL); for a streaming job (`jobType.processingType =
//!   STREAMING`), those of its latest run that named any. From the node's job (for a dataset: the
//!   job that currently writes it, else one that reads it) the graph grows job by job through
//!   shared datasets, in both directions, up to `depth` jobs away (Marquez's default 20); it holds
//!   those jobs and every dataset they read or write, with `inEdges`/`outEdges`
//!   `{origin, destination}` between them. A dataset no job currently touches is returned alone.
//! - `GET /api/v1/column-lineage?nodeId=&depth=&withDownstream=` → [`LineageIndex::column_lineage`]
//!   (Marquez `ColumnLineageService`, `ColumnLineageDao.getLineage`): field-to-field edges from
//!   the `columnLineage` facets of output datasets (the latest event naming a pair wins), followed
//!   upstream from the node's fields (a dataset: all its fields; a job: its outputs' fields) for
//!   up to `depth` edges, and downstream too with `withDownstream=true`. Nodes are
//!   `datasetField:<namespace>:<dataset>:<field>`; as in Marquez, a field's `inEdges` are written
//!   `{origin: the field, destination: its input}` and its `outEdges` `{origin: the field,
//!   destination: the output computed from it}`.
//! - `GET /api/v1/namespaces`, `/namespaces/{ns}/jobs`, `/namespaces/{ns}/datasets` →
//!   [`LineageIndex::namespaces`], [`LineageIndex::jobs`], [`LineageIndex::datasets`].
//!
//! Differences from Marquez, on purpose: only `RunEvent`s are stored (a `DatasetEvent` or
//! `JobEvent` is refused); fields need not be declared by a `schema` facet to take part in column
//! lineage; an input field's `transformationType`/`transformationDescription` come from its first
//! entry in `transformations` (OpenLineage ≥ 1.x; Marquez 0.51 reads only the deprecated
//! per-column pair, used here as the fallback); with `withDownstream=true` the walk also starts
//! from the edges that read the node's fields (Marquez starts only from those that write them, so
//! a source column has no downstream there); the dataset-wide `dataset` entries of
//! `columnLineage` are not drawn (Marquez ignores them too). Versioned node ids (`…#<uuid>`) and
//! runs are not served.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Marquez's default `depth`.
pub const DEFAULT_DEPTH: u32 = 20;

/// Why an event was refused: the JSON path of the offending member and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct EventError {
    /// The member, as a JSON path (`run.runId`, `inputs[2].name`).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

fn refuse(field: impl Into<String>, reason: impl Into<String>) -> EventError {
    EventError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The run states of the spec's `eventType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunEventType {
    /// START.
    Start,
    /// RUNNING.
    Running,
    /// COMPLETE.
    Complete,
    /// ABORT.
    Abort,
    /// FAIL.
    Fail,
    /// OTHER (or no `eventType`: Marquez treats it as RUNNING).
    Other,
}

impl RunEventType {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "START" => Self::Start,
            "RUNNING" => Self::Running,
            "COMPLETE" => Self::Complete,
            "ABORT" => Self::Abort,
            "FAIL" => Self::Fail,
            "OTHER" => Self::Other,
            _ => return None,
        })
    }

    /// The run ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Complete | Self::Abort | Self::Fail)
    }

    /// Marquez's name of the run state the event leads to.
    fn run_state(self) -> &'static str {
        match self {
            Self::Start | Self::Running | Self::Other => "RUNNING",
            Self::Complete => "COMPLETED",
            Self::Abort => "ABORTED",
            Self::Fail => "FAILED",
        }
    }
}

/// A dataset's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DatasetId {
    /// Namespace (`kafka://127.0.0.1:9092`).
    pub namespace: String,
    /// Name within it.
    pub name: String,
}

impl DatasetId {
    /// `dataset:<namespace>:<name>`.
    pub fn node_id(&self) -> String {
        format!("dataset:{}:{}", self.namespace, self.name)
    }
}

/// A job's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobId {
    /// Namespace (`tributary`).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl JobId {
    /// `job:<namespace>:<name>`.
    pub fn node_id(&self) -> String {
        format!("job:{}:{}", self.namespace, self.name)
    }
}

/// A column of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct FieldId {
    dataset: DatasetId,
    field: String,
}

impl FieldId {
    fn node_id(&self) -> String {
        format!(
            "datasetField:{}:{}:{}",
            self.dataset.namespace, self.dataset.name, self.field
        )
    }
}

/// A column as a `schema` facet declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// Name.
    pub name: String,
    /// Type (Marquez: `type`; empty when not declared).
    #[serde(rename = "type")]
    pub data_type: String,
    /// Tags (always empty here).
    pub tags: Vec<String>,
    /// Description.
    pub description: Option<String>,
}

/// An input column of one output column, with how it is used.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ColumnInput {
    field: FieldId,
    transformation_type: Option<String>,
    transformation_description: Option<String>,
}

/// A dataset as one event names it.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetMention {
    /// Identity.
    pub id: DatasetId,
    fields: Option<Vec<Field>>,
    source_name: Option<String>,
    description: Option<String>,
    column_lineage: Vec<(String, Vec<ColumnInput>)>,
}

/// What the graph needs of one `RunEvent`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEventSummary {
    /// `eventType` (absent: [`RunEventType::Other`]).
    pub event_type: RunEventType,
    /// `eventTime`.
    pub event_time: DateTime<Utc>,
    /// `run.runId`.
    pub run_id: Uuid,
    /// `job`.
    pub job: JobId,
    /// `jobType.processingType` is `STREAMING`.
    pub streaming: bool,
    parent_job: Option<String>,
    /// A FAIL closing a process run that a crashed process left open
    /// ([`tributary_lineage::journal`]): its `errorMessage` starts with the crash message and it
    /// has no parent run.
    pub crash: bool,
    description: Option<String>,
    location: Option<String>,
    /// `inputs`.
    pub inputs: Vec<DatasetMention>,
    /// `outputs`.
    pub outputs: Vec<DatasetMention>,
}

fn text<'a>(value: &'a Value, path: &str) -> Result<&'a str, EventError> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Ok(s),
        Value::String(_) => Err(refuse(path, "must not be empty")),
        Value::Null => Err(refuse(path, "is required")),
        _ => Err(refuse(path, "must be a string")),
    }
}

fn optional_text(value: &Value) -> Option<String> {
    value.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

/// Checks `event`'s minimal structure and extracts what the graph needs.
pub fn parse_event(event: &Value) -> Result<RunEventSummary, EventError> {
    if !event.is_object() {
        return Err(refuse("$", "an OpenLineage event must be a JSON object"));
    }
    if event.get("run").is_none() {
        let kind = if event.get("dataset").is_some() {
            "a DatasetEvent"
        } else if event.get("job").is_some() {
            "a JobEvent"
        } else {
            "no run"
        };
        return Err(refuse(
            "run",
            format!("is required: only RunEvents are stored ({kind} was sent)"),
        ));
    }
    let event_time = text(&event["eventTime"], "eventTime")?;
    let event_time = DateTime::parse_from_rfc3339(event_time)
        .map_err(|e| refuse("eventTime", format!("must be an RFC 3339 date-time: {e}")))?
        .with_timezone(&Utc);
    let event_type = match &event["eventType"] {
        Value::Null => RunEventType::Other,
        value => {
            let t = text(value, "eventType")?;
            RunEventType::parse(t).ok_or_else(|| {
                refuse(
                    "eventType",
                    format!("{t:?} is none of START, RUNNING, COMPLETE, ABORT, FAIL, OTHER"),
                )
            })?
        }
    };
    text(&event["producer"], "producer")?;
    text(&event["schemaURL"], "schemaURL")?;
    let run_id = text(&event["run"]["runId"], "run.runId")?;
    let run_id =
        Uuid::parse_str(run_id).map_err(|e| refuse("run.runId", format!("must be a UUID: {e}")))?;
    let job = &event["job"];
    let job_id = JobId {
        namespace: text(&job["namespace"], "job.namespace")?.to_string(),
        name: text(&job["name"], "job.name")?.to_string(),
    };
    let facets = &job["facets"];
    let streaming = facets["jobType"]["processingType"]
        .as_str()
        .is_some_and(|t| t.eq_ignore_ascii_case("STREAMING"));
    let parent_job = optional_text(&event["run"]["facets"]["parent"]["job"]["name"]);
    let crash = event_type == RunEventType::Fail
        && parent_job.is_none()
        && event["run"]["facets"]["errorMessage"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(tributary_lineage::journal::CRASH_MESSAGE));
    let datasets = |member: &str| -> Result<Vec<DatasetMention>, EventError> {
        match &event[member] {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, d)| dataset_mention(d, &format!("{member}[{i}]")))
                .collect(),
            _ => Err(refuse(member, "must be an array")),
        }
    };
    let inputs = datasets("inputs")?;
    let outputs = datasets("outputs")?;
    Ok(RunEventSummary {
        event_type,
        event_time,
        run_id,
        job: job_id,
        streaming,
        crash,
        parent_job,
        description: optional_text(&facets["documentation"]["description"]),
        location: optional_text(&facets["sourceCodeLocation"]["url"]),
        inputs,
        outputs,
    })
}

fn dataset_mention(d: &Value, path: &str) -> Result<DatasetMention, EventError> {
    let id = DatasetId {
        namespace: text(&d["namespace"], &format!("{path}.namespace"))?.to_string(),
        name: text(&d["name"], &format!("{path}.name"))?.to_string(),
    };
    let facets = &d["facets"];
    let fields = facets["schema"]["fields"].as_array().map(|fields| {
        fields
            .iter()
            .filter_map(|f| {
                Some(Field {
                    name: optional_text(&f["name"])?,
                    data_type: optional_text(&f["type"]).unwrap_or_default(),
                    tags: Vec::new(),
                    description: optional_text(&f["description"]),
                })
            })
            .collect()
    });
    let mut column_lineage = Vec::new();
    if let Some(columns) = facets["columnLineage"]["fields"].as_object() {
        for (column, lineage) in columns {
            let inputs = lineage["inputFields"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|input| {
                    let first = &input["transformations"][0];
                    Some(ColumnInput {
                        field: FieldId {
                            dataset: DatasetId {
                                namespace: optional_text(&input["namespace"])?,
                                name: optional_text(&input["name"])?,
                            },
                            field: optional_text(&input["field"])?,
                        },
                        transformation_type: optional_text(&first["type"])
                            .or_else(|| optional_text(&lineage["transformationType"])),
                        transformation_description: optional_text(&first["description"])
                            .or_else(|| optional_text(&first["subtype"]))
                            .or_else(|| optional_text(&lineage["transformationDescription"])),
                    })
                })
                .collect();
            column_lineage.push((column.clone(), inputs));
        }
    }
    Ok(DatasetMention {
        id,
        fields,
        source_name: optional_text(&facets["dataSource"]["name"]),
        description: optional_text(&facets["documentation"]["description"]),
        column_lineage,
    })
}

// ---- the state Marquez keeps ---------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunSummary {
    id: Uuid,
    #[serde(deserialize_with = "run_state")]
    state: RunState,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct JobState {
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    streaming: bool,
    parent_job: Option<String>,
    description: Option<String>,
    location: Option<String>,
    /// The current version's datasets; `None` until a version exists.
    io: Option<RunIo>,
    /// Arrival order of the current version (the newest wins when a dataset picks its job).
    io_seq: u64,
    latest_run: Option<RunSummary>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RunIo {
    inputs: BTreeSet<DatasetId>,
    outputs: BTreeSet<DatasetId>,
}

/// A run that has not ended yet.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OpenRun {
    io: RunIo,
    /// Its newest event.
    seen_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DatasetState {
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_modified_at: Option<DateTime<Utc>>,
    fields: Vec<Field>,
    source_name: Option<String>,
    description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NamespaceState {
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct EdgeInfo {
    transformation_type: Option<String>,
    transformation_description: Option<String>,
}

/// The lineage state of a set of events, folded in arrival order. Its size grows with the
/// number of jobs, datasets and columns, not with the number of events.
#[derive(Debug, Clone, Default)]
pub struct LineageIndex {
    namespaces: BTreeMap<String, NamespaceState>,
    jobs: BTreeMap<JobId, JobState>,
    datasets: BTreeMap<DatasetId, DatasetState>,
    /// Datasets named so far by each run that has not ended, and when it was last heard of.
    open_runs: HashMap<Uuid, OpenRun>,
    /// (output column, input column) → how; the latest event naming the pair wins.
    column_edges: BTreeMap<(FieldId, FieldId), EdgeInfo>,
    /// Crashes of each job's processes (see [`RunEventSummary::crash`]).
    crashes: BTreeMap<JobId, Crashes>,
    events: u64,
}

/// How often a job's processes crashed, within the store's retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crashes {
    /// Process runs closed as crashed.
    pub count: u64,
    /// When the last one was closed (when the next process started).
    pub last_at: DateTime<Utc>,
}

/// A run state (`RUNNING`, `COMPLETED`, …): an alias, so serde's derive does not take the
/// `&'static str` for a string borrowed from the checkpoint's text.
type RunState = &'static str;

/// A run state read back from a checkpoint: one of those [`RunEventType::run_state`] and a new
/// run give.
fn run_state<'de, D: Deserializer<'de>>(deserializer: D) -> Result<RunState, D::Error> {
    let state = String::deserialize(deserializer)?;
    ["NEW", "RUNNING", "COMPLETED", "ABORTED", "FAILED"]
        .into_iter()
        .find(|known| *known == state)
        .ok_or_else(|| serde::de::Error::custom(format!("unknown run state {state:?}")))
}

/// The index as a checkpoint stores it: JSON keys are strings only, so the maps keyed by ids
/// are lists of pairs.
#[derive(Serialize, Deserialize)]
struct IndexImage {
    namespaces: Vec<(String, NamespaceState)>,
    jobs: Vec<(JobId, JobState)>,
    datasets: Vec<(DatasetId, DatasetState)>,
    open_runs: Vec<(Uuid, OpenRun)>,
    column_edges: Vec<((FieldId, FieldId), EdgeInfo)>,
    /// Absent from checkpoints written before crashes were tallied.
    #[serde(default)]
    crashes: Vec<(JobId, Crashes)>,
    events: u64,
}

/// Why a read found nothing to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// The node id names no known job, dataset or field.
    #[error(
        "node {0:?} was not found (ids look like dataset:<namespace>:<name>, job:<namespace>:<name>, datasetField:<namespace>:<dataset>:<field>)"
    )]
    NodeNotFound(String),
    /// The namespace has neither jobs nor datasets.
    #[error("namespace {0:?} was not found")]
    NamespaceNotFound(String),
}

impl LineageIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// The index as JSON, for a checkpoint ([`LineageIndex::from_checkpoint`] reads it back).
    pub fn to_checkpoint(&self) -> Value {
        let image = IndexImage {
            namespaces: self.namespaces.clone().into_iter().collect(),
            jobs: self.jobs.clone().into_iter().collect(),
            datasets: self.datasets.clone().into_iter().collect(),
            open_runs: self.open_runs.clone().into_iter().collect(),
            column_edges: self.column_edges.clone().into_iter().collect(),
            crashes: self.crashes.clone().into_iter().collect(),
            events: self.events,
        };
        serde_json::to_value(image).expect("the index serializes: its keys are lists of pairs")
    }

    /// The index a checkpoint holds.
    pub fn from_checkpoint(value: Value) -> Result<Self, serde_json::Error> {
        let image: IndexImage = serde_json::from_value(value)?;
        Ok(Self {
            namespaces: image.namespaces.into_iter().collect(),
            jobs: image.jobs.into_iter().collect(),
            datasets: image.datasets.into_iter().collect(),
            open_runs: image.open_runs.into_iter().collect(),
            column_edges: image.column_edges.into_iter().collect(),
            crashes: image.crashes.into_iter().collect(),
            events: image.events,
        })
    }

    /// Forgets what no event since `cutoff` mentions, as the log forgets the events themselves
    /// (the lineage store's retention): jobs last updated before it, datasets last updated before
    /// it that no remaining job reads or writes, the column edges of forgotten datasets,
    /// namespaces left empty, and runs that never ended (crashed) whose newest event is older.
    /// The index then holds what the retention window names, whatever the store's age. Returns
    /// how many jobs and datasets went.
    pub fn forget_before(&mut self, cutoff: DateTime<Utc>) -> usize {
        let before = self.jobs.len() + self.datasets.len();
        self.jobs.retain(|_, job| job.updated_at >= cutoff);
        let named: BTreeSet<DatasetId> = self
            .jobs
            .values()
            .filter_map(|job| job.io.as_ref())
            .flat_map(|io| io.inputs.iter().chain(&io.outputs).cloned())
            .collect();
        self.datasets
            .retain(|id, dataset| dataset.updated_at >= cutoff || named.contains(id));
        let datasets = &self.datasets;
        self.column_edges.retain(|(output, input), _| {
            datasets.contains_key(&output.dataset) && datasets.contains_key(&input.dataset)
        });
        let used: BTreeSet<&str> = (self.jobs.keys().map(|j| j.namespace.as_str()))
            .chain(self.datasets.keys().map(|d| d.namespace.as_str()))
            .collect();
        self.namespaces.retain(|ns, _| used.contains(ns.as_str()));
        self.open_runs.retain(|_, run| run.seen_at >= cutoff);
        self.crashes.retain(|_, c| c.last_at >= cutoff);
        before - (self.jobs.len() + self.datasets.len())
    }

    /// Crashes of each job's processes that the events still held name, by job.
    pub fn crashes(&self) -> Vec<(JobId, Crashes)> {
        self.crashes
            .iter()
            .map(|(job, c)| (job.clone(), *c))
            .collect()
    }

    /// Events folded so far.
    pub fn event_count(&self) -> u64 {
        self.events
    }

    fn touch_namespace(&mut self, namespace: &str, at: DateTime<Utc>) {
        let ns = self
            .namespaces
            .entry(namespace.to_string())
            .or_insert(NamespaceState {
                created_at: at,
                updated_at: at,
            });
        ns.created_at = ns.created_at.min(at);
        ns.updated_at = ns.updated_at.max(at);
    }

    /// Folds one event in (events must come in the order they arrived).
    pub fn add(&mut self, event: &RunEventSummary) {
        self.events += 1;
        let at = event.event_time;
        if event.crash {
            let crashes = self.crashes.entry(event.job.clone()).or_insert(Crashes {
                count: 0,
                last_at: at,
            });
            crashes.count += 1;
            crashes.last_at = crashes.last_at.max(at);
        }
        self.touch_namespace(&event.job.namespace, at);
        for d in event.inputs.iter().chain(&event.outputs) {
            self.touch_namespace(&d.id.namespace, at);
            let state = self
                .datasets
                .entry(d.id.clone())
                .or_insert_with(|| DatasetState {
                    created_at: at,
                    updated_at: at,
                    last_modified_at: None,
                    fields: Vec::new(),
                    source_name: None,
                    description: None,
                });
            state.created_at = state.created_at.min(at);
            state.updated_at = state.updated_at.max(at);
            if let Some(fields) = &d.fields {
                state.fields = fields.clone();
            }
            if d.source_name.is_some() {
                state.source_name = d.source_name.clone();
            }
            if d.description.is_some() {
                state.description = d.description.clone();
            }
        }
        if event.event_type == RunEventType::Complete {
            for d in &event.outputs {
                if let Some(state) = self.datasets.get_mut(&d.id) {
                    state.last_modified_at = Some(state.last_modified_at.map_or(at, |t| t.max(at)));
                }
            }
        }
        for d in &event.outputs {
            for (column, inputs) in &d.column_lineage {
                let output = FieldId {
                    dataset: d.id.clone(),
                    field: column.clone(),
                };
                for input in inputs {
                    self.column_edges.insert(
                        (output.clone(), input.field.clone()),
                        EdgeInfo {
                            transformation_type: input.transformation_type.clone(),
                            transformation_description: input.transformation_description.clone(),
                        },
                    );
                }
            }
        }

        // The run's datasets so far, and the job's current version (see the module docs).
        let open = self
            .open_runs
            .entry(event.run_id)
            .or_insert_with(|| OpenRun {
                io: RunIo::default(),
                seen_at: at,
            });
        open.seen_at = open.seen_at.max(at);
        let run_io = &mut open.io;
        run_io
            .inputs
            .extend(event.inputs.iter().map(|d| d.id.clone()));
        run_io
            .outputs
            .extend(event.outputs.iter().map(|d| d.id.clone()));
        let names_datasets = !(event.inputs.is_empty() && event.outputs.is_empty());
        let new_version = if event.streaming {
            names_datasets.then(|| run_io.clone())
        } else {
            event.event_type.is_terminal().then(|| run_io.clone())
        };
        if event.event_type.is_terminal() {
            self.open_runs.remove(&event.run_id);
        }
        let seq = self.events;
        let job = self
            .jobs
            .entry(event.job.clone())
            .or_insert_with(|| JobState {
                created_at: at,
                updated_at: at,
                streaming: event.streaming,
                parent_job: None,
                description: None,
                location: None,
                io: None,
                io_seq: 0,
                latest_run: None,
            });
        job.created_at = job.created_at.min(at);
        job.updated_at = job.updated_at.max(at);
        job.streaming = event.streaming;
        if event.parent_job.is_some() {
            job.parent_job = event.parent_job.clone();
        }
        if event.description.is_some() {
            job.description = event.description.clone();
        }
        if event.location.is_some() {
            job.location = event.location.clone();
        }
        if let Some(io) = new_version {
            job.io = Some(io);
            job.io_seq = seq;
        }
        let run = match job.latest_run.take() {
            Some(run) if run.id == event.run_id => run,
            _ => RunSummary {
                id: event.run_id,
                state: "NEW",
                created_at: at,
                updated_at: at,
                started_at: None,
                ended_at: None,
            },
        };
        job.latest_run = Some(RunSummary {
            state: event.event_type.run_state(),
            updated_at: at,
            started_at: run
                .started_at
                .or((event.event_type == RunEventType::Start).then_some(at)),
            ended_at: event
                .event_type
                .is_terminal()
                .then_some(at)
                .or(run.ended_at),
            ..run
        });
    }

    // ---- /api/v1/lineage -----------------------------------------------------------------

    fn job_by_node(&self, node_id: &str) -> Option<&JobId> {
        node_id
            .strip_prefix("job:")
            .and_then(|_| self.jobs.keys().find(|j| j.node_id() == node_id))
    }

    fn dataset_by_node(&self, node_id: &str) -> Option<&DatasetId> {
        node_id
            .strip_prefix("dataset:")
            .and_then(|_| self.datasets.keys().find(|d| d.node_id() == node_id))
    }

    /// Marquez's `GET /api/v1/lineage?nodeId=&depth=`.
    pub fn lineage(&self, node_id: &str, depth: u32) -> Result<Lineage, GraphError> {
        let not_found = || GraphError::NodeNotFound(node_id.to_string());
        let start = if let Some(job) = self.job_by_node(node_id) {
            job.clone()
        } else if let Some(dataset) = self.dataset_by_node(node_id) {
            // The job that currently writes it (the newest version), else one that reads it.
            let pick = |outputs: bool| {
                self.jobs
                    .iter()
                    .filter_map(|(id, j)| j.io.as_ref().map(|io| (id, j.io_seq, io)))
                    .filter(|(_, _, io)| {
                        if outputs {
                            io.outputs.contains(dataset)
                        } else {
                            io.inputs.contains(dataset)
                        }
                    })
                    .max_by_key(|(_, seq, _)| *seq)
                    .map(|(id, _, _)| id.clone())
            };
            match pick(true).or_else(|| pick(false)) {
                Some(job) => job,
                None => {
                    return Ok(Lineage {
                        graph: vec![self.dataset_node(dataset)],
                    });
                }
            }
        } else {
            return Err(not_found());
        };

        // Breadth first over jobs that share a dataset, `depth` jobs away at most.
        let mut by_dataset: BTreeMap<&DatasetId, Vec<&JobId>> = BTreeMap::new();
        for (id, job) in &self.jobs {
            if let Some(io) = &job.io {
                for d in io.inputs.union(&io.outputs) {
                    by_dataset.entry(d).or_default().push(id);
                }
            }
        }
        let mut found: BTreeSet<&JobId> = BTreeSet::new();
        let start = self
            .jobs
            .get_key_value(&start)
            .map(|(k, _)| k)
            .ok_or_else(not_found)?;
        found.insert(start);
        let mut queue = VecDeque::from([(start, 0u32)]);
        while let Some((id, hops)) = queue.pop_front() {
            if hops >= depth {
                continue;
            }
            let Some(io) = &self.jobs[id].io else {
                continue;
            };
            for d in io.inputs.union(&io.outputs) {
                for next in by_dataset.get(d).into_iter().flatten() {
                    if found.insert(next) {
                        queue.push_back((next, hops + 1));
                    }
                }
            }
        }

        let mut writers: BTreeMap<&DatasetId, Vec<String>> = BTreeMap::new();
        let mut readers: BTreeMap<&DatasetId, Vec<String>> = BTreeMap::new();
        for id in &found {
            if let Some(io) = &self.jobs[*id].io {
                for d in &io.outputs {
                    writers.entry(d).or_default().push(id.node_id());
                }
                for d in &io.inputs {
                    readers.entry(d).or_default().push(id.node_id());
                }
            }
        }
        let mut graph: Vec<Node> = found.iter().map(|id| self.job_node(id)).collect();
        let datasets: BTreeSet<&DatasetId> =
            writers.keys().chain(readers.keys()).copied().collect();
        for d in datasets {
            let node_id = d.node_id();
            let edges = |jobs: Option<&Vec<String>>, inbound: bool| -> Vec<Edge> {
                let mut edges: Vec<Edge> = jobs
                    .into_iter()
                    .flatten()
                    .map(|job| {
                        if inbound {
                            Edge::new(job, &node_id)
                        } else {
                            Edge::new(&node_id, job)
                        }
                    })
                    .collect();
                edges.sort();
                edges
            };
            let mut node = self.dataset_node(d);
            node.in_edges = edges(writers.get(d), true);
            node.out_edges = edges(readers.get(d), false);
            graph.push(node);
        }
        graph.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Lineage { graph })
    }

    fn job_node(&self, id: &JobId) -> Node {
        let job = &self.jobs[id];
        let node_id = id.node_id();
        let empty = RunIo::default();
        let io = job.io.as_ref().unwrap_or(&empty);
        let simple_name = job
            .parent_job
            .as_deref()
            .and_then(|p| id.name.strip_prefix(p))
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or(&id.name)
            .to_string();
        Node {
            in_edges: io
                .inputs
                .iter()
                .map(|d| Edge::new(&d.node_id(), &node_id))
                .collect(),
            out_edges: io
                .outputs
                .iter()
                .map(|d| Edge::new(&node_id, &d.node_id()))
                .collect(),
            id: node_id,
            kind: NodeType::Job,
            data: NodeData::Job(Box::new(JobData {
                id: id.clone(),
                kind: if job.streaming { "STREAM" } else { "BATCH" },
                name: id.name.clone(),
                simple_name,
                parent_job_name: job.parent_job.clone(),
                parent_job_uuid: None,
                current_run_uuid: job.latest_run.as_ref().map(|r| r.id),
                created_at: timestamp(job.created_at),
                updated_at: timestamp(job.updated_at),
                namespace: id.namespace.clone(),
                inputs: io.inputs.iter().cloned().collect(),
                outputs: io.outputs.iter().cloned().collect(),
                location: job.location.clone(),
                description: job.description.clone(),
                latest_run: job.latest_run.as_ref().map(|r| RunData {
                    id: r.id,
                    created_at: timestamp(r.created_at),
                    updated_at: timestamp(r.updated_at),
                    state: r.state,
                    started_at: r.started_at.map(timestamp),
                    ended_at: r.ended_at.map(timestamp),
                    duration_ms: r
                        .started_at
                        .zip(r.ended_at)
                        .map(|(s, e)| (e - s).num_milliseconds()),
                    job_version: None,
                }),
            })),
        }
    }

    fn dataset_node(&self, id: &DatasetId) -> Node {
        Node {
            id: id.node_id(),
            kind: NodeType::Dataset,
            data: NodeData::Dataset(Box::new(self.dataset_data(id))),
            in_edges: Vec::new(),
            out_edges: Vec::new(),
        }
    }

    fn dataset_data(&self, id: &DatasetId) -> DatasetData {
        let d = &self.datasets[id];
        DatasetData {
            id: id.clone(),
            kind: "DB_TABLE",
            name: id.name.clone(),
            physical_name: id.name.clone(),
            created_at: timestamp(d.created_at),
            updated_at: timestamp(d.updated_at),
            namespace: id.namespace.clone(),
            source_name: d
                .source_name
                .clone()
                .unwrap_or_else(|| id.namespace.clone()),
            fields: d.fields.clone(),
            tags: Vec::new(),
            last_modified_at: d.last_modified_at.map(timestamp),
            description: d.description.clone(),
            last_lifecycle_state: None,
        }
    }

    // ---- /api/v1/column-lineage ----------------------------------------------------------

    /// Every column known of `dataset`: declared by a schema facet or named by column lineage.
    fn fields_of(&self, dataset: &DatasetId) -> BTreeSet<FieldId> {
        let declared = self.datasets.get(dataset).into_iter().flat_map(|d| {
            d.fields.iter().map(|f| FieldId {
                dataset: dataset.clone(),
                field: f.name.clone(),
            })
        });
        let in_lineage = self
            .column_edges
            .keys()
            .flat_map(|(o, i)| [o, i])
            .filter(|f| &f.dataset == dataset)
            .cloned();
        declared.chain(in_lineage).collect()
    }

    fn field_type(&self, field: &FieldId) -> String {
        self.datasets
            .get(&field.dataset)
            .and_then(|d| d.fields.iter().find(|f| f.name == field.field))
            .map(|f| f.data_type.clone())
            .unwrap_or_default()
    }

    /// Marquez's `GET /api/v1/column-lineage?nodeId=&depth=&withDownstream=`.
    pub fn column_lineage(
        &self,
        node_id: &str,
        depth: u32,
        with_downstream: bool,
    ) -> Result<Lineage, GraphError> {
        let not_found = || GraphError::NodeNotFound(node_id.to_string());
        let start: BTreeSet<FieldId> = if let Some(job) = self.job_by_node(node_id) {
            self.jobs[job]
                .io
                .iter()
                .flat_map(|io| io.outputs.iter())
                .flat_map(|d| self.fields_of(d))
                .collect()
        } else if let Some(dataset) = self.dataset_by_node(node_id) {
            self.fields_of(dataset)
        } else if node_id.starts_with("datasetField:") {
            self.datasets
                .keys()
                .flat_map(|d| self.fields_of(d))
                .filter(|f| f.node_id() == node_id)
                .collect()
        } else {
            BTreeSet::new()
        };
        if start.is_empty() {
            return Err(not_found());
        }

        // Edges reachable from the start columns, `depth` edges at most (Marquez counts the
        // first edge as depth 0 and stops at depth - 1).
        let mut selected: BTreeSet<&(FieldId, FieldId)> = BTreeSet::new();
        let mut queue: VecDeque<(&(FieldId, FieldId), u32)> = self
            .column_edges
            .keys()
            .filter(|(output, input)| {
                start.contains(output) || (with_downstream && start.contains(input))
            })
            .map(|edge| (edge, 0))
            .collect();
        let levels = depth.max(1);
        while let Some((edge, level)) = queue.pop_front() {
            if !selected.insert(edge) || level + 1 >= levels {
                continue;
            }
            for next in self.column_edges.keys() {
                let upstream = next.0 == edge.1;
                let downstream = with_downstream && next.1 == edge.0;
                if (upstream || downstream) && !selected.contains(next) {
                    queue.push_back((next, level + 1));
                }
            }
        }

        let mut rows: BTreeMap<&FieldId, Vec<(&FieldId, &EdgeInfo)>> = BTreeMap::new();
        let mut consumers: BTreeMap<&FieldId, Vec<&FieldId>> = BTreeMap::new();
        for edge in &selected {
            let (output, input) = (&edge.0, &edge.1);
            rows.entry(output)
                .or_default()
                .push((input, &self.column_edges[*edge]));
            consumers.entry(input).or_default().push(output);
        }
        let input_data = |input: &FieldId, how: &EdgeInfo| InputFieldData {
            namespace: input.dataset.namespace.clone(),
            dataset: input.dataset.name.clone(),
            dataset_version: None,
            field: input.field.clone(),
            transformation_description: how.transformation_description.clone(),
            transformation_type: how.transformation_type.clone(),
        };
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        for (output, inputs) in &rows {
            let id = output.node_id();
            let data = ColumnNodeData {
                namespace: output.dataset.namespace.clone(),
                dataset: output.dataset.name.clone(),
                dataset_version: None,
                field: output.field.clone(),
                field_type: self.field_type(output),
                transformation_description: inputs[0].1.transformation_description.clone(),
                transformation_type: inputs[0].1.transformation_type.clone(),
                input_fields: inputs.iter().map(|(i, how)| input_data(i, how)).collect(),
            };
            let mut in_edges: Vec<Edge> = inputs
                .iter()
                .map(|(i, _)| Edge::new(&id, &i.node_id()))
                .collect();
            in_edges.sort();
            nodes.insert(
                id.clone(),
                Node {
                    id,
                    kind: NodeType::DatasetField,
                    data: NodeData::Column(Box::new(data)),
                    in_edges,
                    out_edges: Vec::new(),
                },
            );
        }
        for (input, outputs) in &consumers {
            let id = input.node_id();
            let node = nodes.entry(id.clone()).or_insert_with(|| {
                let how = &self.column_edges[&(outputs[0].clone(), (*input).clone())];
                let data = input_data(input, how);
                Node {
                    id: id.clone(),
                    kind: NodeType::DatasetField,
                    data: NodeData::Column(Box::new(ColumnNodeData {
                        namespace: data.namespace,
                        dataset: data.dataset,
                        dataset_version: None,
                        field: data.field,
                        field_type: String::new(),
                        transformation_description: data.transformation_description,
                        transformation_type: data.transformation_type,
                        input_fields: Vec::new(),
                    })),
                    in_edges: Vec::new(),
                    out_edges: Vec::new(),
                }
            });
            node.out_edges = outputs
                .iter()
                .map(|o| Edge::new(&id, &o.node_id()))
                .collect();
            node.out_edges.sort();
        }
        Ok(Lineage {
            graph: nodes.into_values().collect(),
        })
    }

    // ---- lists ---------------------------------------------------------------------------

    /// Marquez's `GET /api/v1/namespaces`: every job and dataset namespace.
    pub fn namespaces(&self) -> NamespaceList {
        NamespaceList {
            namespaces: self
                .namespaces
                .iter()
                .map(|(name, ns)| Namespace {
                    name: name.clone(),
                    created_at: timestamp(ns.created_at),
                    updated_at: timestamp(ns.updated_at),
                    owner_name: "anonymous",
                    description: None,
                    is_hidden: false,
                })
                .collect(),
        }
    }

    fn require_namespace(&self, namespace: &str) -> Result<(), GraphError> {
        if self.namespaces.contains_key(namespace) {
            Ok(())
        } else {
            Err(GraphError::NamespaceNotFound(namespace.to_string()))
        }
    }

    /// Marquez's `GET /api/v1/namespaces/{namespace}/jobs?limit=&offset=`.
    pub fn jobs(
        &self,
        namespace: &str,
        limit: usize,
        offset: usize,
    ) -> Result<JobList, GraphError> {
        self.require_namespace(namespace)?;
        let ids: Vec<&JobId> = self
            .jobs
            .keys()
            .filter(|j| j.namespace == namespace)
            .collect();
        let jobs = ids
            .iter()
            .skip(offset)
            .take(limit)
            .map(|id| match self.job_node(id).data {
                NodeData::Job(data) => *data,
                _ => unreachable!("job_node holds job data"),
            })
            .collect();
        Ok(JobList {
            jobs,
            total_count: ids.len(),
        })
    }

    /// Marquez's `GET /api/v1/namespaces/{namespace}/datasets?limit=&offset=`.
    pub fn datasets(
        &self,
        namespace: &str,
        limit: usize,
        offset: usize,
    ) -> Result<DatasetList, GraphError> {
        self.require_namespace(namespace)?;
        let ids: Vec<&DatasetId> = self
            .datasets
            .keys()
            .filter(|d| d.namespace == namespace)
            .collect();
        Ok(DatasetList {
            datasets: ids
                .iter()
                .skip(offset)
                .take(limit)
                .map(|id| self.dataset_data(id))
                .collect(),
            total_count: ids.len(),
        })
    }
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

// ---- Marquez's response shapes -------------------------------------------------------------

/// `{"graph": [...]}`: nodes sorted by id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lineage {
    /// The nodes.
    pub graph: Vec<Node>,
}

impl Lineage {
    /// The node with `id`, if in the graph.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.graph.iter().find(|n| n.id == id)
    }

    /// Every edge of the graph as (origin, destination), from the nodes' `outEdges`.
    pub fn edges(&self) -> BTreeSet<(String, String)> {
        self.graph
            .iter()
            .flat_map(|n| &n.out_edges)
            .map(|e| (e.origin.clone(), e.destination.clone()))
            .collect()
    }
}

/// `DATASET`, `JOB` or `DATASET_FIELD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeType {
    /// A dataset.
    Dataset,
    /// A job.
    Job,
    /// A dataset's column (column lineage).
    DatasetField,
}

/// One node: `{"id", "type", "data", "inEdges", "outEdges"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// `dataset:<ns>:<name>`, `job:<ns>:<name>` or `datasetField:<ns>:<name>:<field>`.
    pub id: String,
    /// Its kind.
    #[serde(rename = "type")]
    pub kind: NodeType,
    /// What Marquez knows of it.
    pub data: NodeData,
    /// Edges into it.
    pub in_edges: Vec<Edge>,
    /// Edges out of it.
    pub out_edges: Vec<Edge>,
}

/// `{"origin", "destination"}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Edge {
    /// Where the edge starts.
    pub origin: String,
    /// Where it ends.
    pub destination: String,
}

impl Edge {
    fn new(origin: &str, destination: &str) -> Self {
        Self {
            origin: origin.to_string(),
            destination: destination.to_string(),
        }
    }
}

/// A node's `data`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum NodeData {
    /// A job's.
    Job(Box<JobData>),
    /// A dataset's.
    Dataset(Box<DatasetData>),
    /// A column's.
    Column(Box<ColumnNodeData>),
}

/// Marquez's `JobData` (a subset: no facets, no versions).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct JobData {
    pub id: JobId,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: String,
    pub simple_name: String,
    pub parent_job_name: Option<String>,
    pub parent_job_uuid: Option<Uuid>,
    pub current_run_uuid: Option<Uuid>,
    pub created_at: String,
    pub updated_at: String,
    pub namespace: String,
    pub inputs: Vec<DatasetId>,
    pub outputs: Vec<DatasetId>,
    pub location: Option<String>,
    pub description: Option<String>,
    pub latest_run: Option<RunData>,
}

/// Marquez's `Run` (a subset).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct RunData {
    pub id: Uuid,
    pub created_at: String,
    pub updated_at: String,
    pub state: &'static str,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub job_version: Option<Value>,
}

/// Marquez's `DatasetData`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct DatasetData {
    pub id: DatasetId,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: String,
    pub physical_name: String,
    pub created_at: String,
    pub updated_at: String,
    pub namespace: String,
    pub source_name: String,
    pub fields: Vec<Field>,
    pub tags: Vec<String>,
    pub last_modified_at: Option<String>,
    pub description: Option<String>,
    pub last_lifecycle_state: Option<String>,
}

/// Marquez's `ColumnLineageNodeData`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ColumnNodeData {
    pub namespace: String,
    pub dataset: String,
    pub dataset_version: Option<Uuid>,
    pub field: String,
    pub field_type: String,
    pub transformation_description: Option<String>,
    pub transformation_type: Option<String>,
    pub input_fields: Vec<InputFieldData>,
}

/// Marquez's `InputFieldNodeData`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct InputFieldData {
    pub namespace: String,
    pub dataset: String,
    pub dataset_version: Option<Uuid>,
    pub field: String,
    pub transformation_description: Option<String>,
    pub transformation_type: Option<String>,
}

/// `{"namespaces": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[allow(missing_docs)]
pub struct NamespaceList {
    pub namespaces: Vec<Namespace>,
}

/// Marquez's `Namespace`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Namespace {
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
    pub owner_name: &'static str,
    pub description: Option<String>,
    pub is_hidden: bool,
}

/// `{"jobs": [...], "totalCount"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct JobList {
    pub jobs: Vec<JobData>,
    pub total_count: usize,
}

/// `{"datasets": [...], "totalCount"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct DatasetList {
    pub datasets: Vec<DatasetData>,
    pub total_count: usize,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use tributary_lineage::{EventType, JobSpec, Lineage as Emitter, Processing};
    use tributary_marts::lineage::datasets::{MartsDatasets, TableRead};

    const KAFKA: &str = "kafka://127.0.0.1:9092";
    const S3: &str = "s3://warehouse";

    fn ds(namespace: &str, name: &str) -> Value {
        json!({"namespace": namespace, "name": name})
    }

    fn event(kind: &str, run: Uuid, job: &str, inputs: Vec<Value>, outputs: Vec<Value>) -> Value {
        json!({
            "eventType": kind,
            "eventTime": "2026-11-26T01:00:00.000Z",
            "producer": "urn:test",
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
            "run": {"runId": run.to_string()},
            "job": {"namespace": "tributary", "name": job},
            "inputs": inputs,
            "outputs": outputs,
        })
    }

    fn index(events: &[Value]) -> LineageIndex {
        let mut index = LineageIndex::new();
        for e in events {
            index.add(&parse_event(e).unwrap());
        }
        index
    }

    /// file → ingestor → topic → lander → table; Debezium's topic → lander → pg table.
    fn pipeline() -> Vec<Value> {
        let (ingest, lander, pg_lander) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        vec![
            event(
                "START",
                ingest,
                "ingest.files.acme",
                vec![ds("s3://inbox", "acme/a.csv")],
                vec![],
            ),
            event(
                "COMPLETE",
                ingest,
                "ingest.files.acme",
                vec![],
                vec![ds(KAFKA, "raw.files.sales")],
            ),
            event(
                "COMPLETE",
                lander,
                "lake.file_sale",
                vec![ds(KAFKA, "raw.files.sales")],
                vec![ds(S3, "raw/file_sale")],
            ),
            event(
                "COMPLETE",
                pg_lander,
                "lake.pg_sale",
                vec![ds(KAFKA, "salesdb.public.sale")],
                vec![ds(S3, "raw/pg_sale")],
            ),
        ]
    }

    fn edge(a: &str, b: &str) -> (String, String) {
        (a.to_string(), b.to_string())
    }

    #[test]
    fn a_batch_job_gets_every_dataset_of_its_run_and_the_graph_joins() {
        let index = index(&pipeline());
        let g = index
            .lineage(
                "dataset:kafka://127.0.0.1:9092:raw.files.sales",
                DEFAULT_DEPTH,
            )
            .unwrap();
        let edges = g.edges();
        // START named the file, COMPLETE the topic: the run's version has both.
        assert!(edges.contains(&edge(
            "dataset:s3://inbox:acme/a.csv",
            "job:tributary:ingest.files.acme"
        )));
        assert!(edges.contains(&edge(
            "job:tributary:ingest.files.acme",
            "dataset:kafka://127.0.0.1:9092:raw.files.sales"
        )));
        assert!(edges.contains(&edge(
            "dataset:kafka://127.0.0.1:9092:raw.files.sales",
            "job:tributary:lake.file_sale"
        )));
        assert!(edges.contains(&edge(
            "job:tributary:lake.file_sale",
            "dataset:s3://warehouse:raw/file_sale"
        )));
        // The pg branch shares no dataset with this one.
        assert!(g.node("job:tributary:lake.pg_sale").is_none());
        // Nodes sorted by id, in- and out-edges agree, Marquez's JSON names.
        let ids: Vec<&str> = g.graph.iter().map(|n| n.id.as_str()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        let in_edges: BTreeSet<(String, String)> = g
            .graph
            .iter()
            .flat_map(|n| &n.in_edges)
            .map(|e| (e.origin.clone(), e.destination.clone()))
            .collect();
        assert_eq!(in_edges, edges);
        let json = serde_json::to_value(&g).unwrap();
        let lander = json["graph"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == "job:tributary:lake.file_sale")
            .unwrap();
        assert_eq!(lander["type"], "JOB");
        assert_eq!(lander["data"]["type"], "BATCH");
        assert_eq!(lander["data"]["latestRun"]["state"], "COMPLETED");
        assert_eq!(lander["data"]["inputs"][0]["name"], "raw.files.sales");
        assert_eq!(
            lander["inEdges"][0],
            json!({"origin": "dataset:kafka://127.0.0.1:9092:raw.files.sales", "destination": "job:tributary:lake.file_sale"})
        );
        let table = json["graph"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == "dataset:s3://warehouse:raw/file_sale")
            .unwrap();
        assert_eq!(table["type"], "DATASET");
        assert_eq!(
            table["data"]["id"],
            json!({"namespace": S3, "name": "raw/file_sale"})
        );
        assert_eq!(table["outEdges"], json!([]));
    }

    #[test]
    fn depth_counts_jobs_away_from_the_start() {
        let index = index(&pipeline());
        let start = "job:tributary:ingest.files.acme";
        let near = index.lineage(start, 0).unwrap();
        assert!(near.node("job:tributary:lake.file_sale").is_none());
        // Its datasets are there, without the edges of jobs outside the graph.
        let topic = near
            .node("dataset:kafka://127.0.0.1:9092:raw.files.sales")
            .unwrap();
        assert!(topic.out_edges.is_empty());
        let one = index.lineage(start, 1).unwrap();
        assert!(one.node("job:tributary:lake.file_sale").is_some());
        assert!(one.node("dataset:s3://warehouse:raw/file_sale").is_some());
    }

    #[test]
    fn the_current_version_is_the_latest_ended_run() {
        let mut events = pipeline();
        // A later run of the lander reads another topic; one that only started changes nothing.
        let later = Uuid::new_v4();
        events.push(event(
            "COMPLETE",
            later,
            "lake.file_sale",
            vec![ds(KAFKA, "raw.files.other")],
            vec![ds(S3, "raw/file_sale")],
        ));
        events.push(event(
            "START",
            Uuid::new_v4(),
            "lake.file_sale",
            vec![ds(KAFKA, "raw.files.third")],
            vec![],
        ));
        let g = index(&events)
            .lineage("job:tributary:lake.file_sale", 1)
            .unwrap();
        let edges = g.edges();
        assert!(edges.contains(&edge(
            "dataset:kafka://127.0.0.1:9092:raw.files.other",
            "job:tributary:lake.file_sale"
        )));
        assert!(!edges.contains(&edge(
            "dataset:kafka://127.0.0.1:9092:raw.files.sales",
            "job:tributary:lake.file_sale"
        )));
        assert!(!edges.iter().any(|(a, _)| a.contains("raw.files.third")));
        let lander = g.node("job:tributary:lake.file_sale").unwrap();
        let NodeData::Job(data) = &lander.data else {
            panic!("job data")
        };
        assert_eq!(data.latest_run.as_ref().unwrap().state, "RUNNING");
    }

    #[test]
    fn unknown_nodes_are_not_found_and_an_untouched_dataset_stands_alone() {
        let mut events = pipeline();
        // Only a START names this dataset: no job version has it.
        events.push(event(
            "START",
            Uuid::new_v4(),
            "other",
            vec![ds("file", "/tmp/x")],
            vec![],
        ));
        let index = index(&events);
        assert_eq!(
            index.lineage("dataset:kafka://127.0.0.1:9092:nope", 20),
            Err(GraphError::NodeNotFound(
                "dataset:kafka://127.0.0.1:9092:nope".into()
            ))
        );
        assert!(index.lineage("run:123", 20).is_err());
        let alone = index.lineage("dataset:file:/tmp/x", 20).unwrap();
        assert_eq!(alone.graph.len(), 1);
        assert!(alone.graph[0].in_edges.is_empty() && alone.graph[0].out_edges.is_empty());
        // The job without a version is there alone too.
        let job = index.lineage("job:tributary:other", 20).unwrap();
        assert_eq!(job.graph.len(), 1);
    }

    #[test]
    fn a_streaming_job_takes_the_datasets_of_its_latest_run_that_named_any() {
        let run = Uuid::new_v4();
        let mut start = event(
            "START",
            run,
            "stream",
            vec![ds(KAFKA, "a")],
            vec![ds(S3, "b")],
        );
        start["job"]["facets"] = json!({"jobType": {"_producer": "p", "_schemaURL": "s", "processingType": "STREAMING", "integration": "X", "jobType": "JOB"}});
        let mut end = event("COMPLETE", run, "stream", vec![], vec![]);
        end["job"] = start["job"].clone();
        let index = index(&[start, end]);
        let g = index.lineage("job:tributary:stream", 20).unwrap();
        assert!(g.edges().contains(&edge(
            "dataset:kafka://127.0.0.1:9092:a",
            "job:tributary:stream"
        )));
        let NodeData::Job(data) = &g.node("job:tributary:stream").unwrap().data else {
            panic!()
        };
        assert_eq!(data.kind, "STREAM");
    }

    /// A marts run as the lineage crate builds it: raw Iceberg tables → ClickHouse rankings.
    fn marts_event() -> Value {
        let m = MartsDatasets {
            warehouse: S3.into(),
            lake_namespace: "raw".into(),
            clickhouse_url: "http://127.0.0.1:8123".into(),
            database: "marts".into(),
        };
        let reads: Vec<TableRead> = ["pg_sale", "file_sale", "erp_sale", "pg_salesman", "pg_city"]
            .iter()
            .map(|t| TableRead {
                table: t.to_string(),
                snapshot_id: Some(1),
                rows: Some(1),
            })
            .collect();
        let run = Emitter::disabled().run(&JobSpec {
            name: "tributary-marts.rankings".into(),
            processing: Processing::Batch,
            job_type: "JOB",
            source_path: "marts/src/job.rs",
            description: "ranks".into(),
        });
        serde_json::to_value(run.event(
            EventType::Complete,
            m.inputs(&reads),
            m.outputs(&BTreeMap::new()),
            None,
        ))
        .unwrap()
    }

    #[test]
    fn column_lineage_follows_the_facets_upstream() {
        let mut events = pipeline();
        events.push(marts_event());
        let index = index(&events);
        let ranking = "dataset:clickhouse://127.0.0.1:8123:marts.salesman_ranking";
        let g = index.column_lineage(ranking, DEFAULT_DEPTH, false).unwrap();
        let revenue = g
            .node("datasetField:clickhouse://127.0.0.1:8123:marts.salesman_ranking:revenue")
            .expect("revenue");
        assert_eq!(revenue.kind, NodeType::DatasetField);
        let inputs: BTreeSet<&str> = revenue
            .in_edges
            .iter()
            .map(|e| e.destination.as_str())
            .collect();
        for table in ["pg_sale", "file_sale", "erp_sale"] {
            let amount = format!("datasetField:s3://warehouse:raw/{table}:amount");
            assert!(inputs.contains(amount.as_str()), "{inputs:?}");
            // Marquez writes a field's inEdges from the field to its input.
            assert!(revenue.in_edges.iter().all(|e| e.origin == revenue.id));
            let input = g.node(&amount).expect("input node");
            assert!(input.out_edges.iter().any(|e| e.destination == revenue.id));
        }
        let json = serde_json::to_value(&revenue.data).unwrap();
        assert_eq!(json["dataset"], "marts.salesman_ranking");
        assert_eq!(json["field"], "revenue");
        let amount = json["inputFields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["dataset"] == "raw/pg_sale" && i["field"] == "amount")
            .unwrap();
        assert_eq!(amount["transformationType"], "DIRECT");
        // No other ranking table's columns when asked for one table upstream only.
        assert!(g.graph.iter().all(|n| !n.id.contains("marts.city_ranking")));

        let one_field = index
            .column_lineage(
                "datasetField:clickhouse://127.0.0.1:8123:marts.salesman_ranking:revenue",
                1,
                false,
            )
            .unwrap();
        assert!(one_field.graph.iter().all(|n| !n.id.ends_with(":rank")));
        // Downstream from an input column reaches every ranking it feeds.
        let down = index
            .column_lineage("datasetField:s3://warehouse:raw/pg_sale:amount", 20, true)
            .unwrap();
        assert!(
            down.node("datasetField:clickhouse://127.0.0.1:8123:marts.city_ranking:revenue")
                .is_some()
        );
        // The job's outputs' columns.
        let by_job = index
            .column_lineage("job:tributary:tributary-marts.rankings", 20, false)
            .unwrap();
        assert!(
            by_job
                .node("datasetField:clickhouse://127.0.0.1:8123:marts.city_ranking:revenue")
                .is_some()
        );
        assert!(
            index
                .column_lineage("datasetField:x:y:z", 20, false)
                .is_err()
        );
        // And the dataset graph joins the lake to ClickHouse through the marts job.
        let g = index.lineage(ranking, 20).unwrap();
        assert!(g.edges().contains(&edge(
            "dataset:s3://warehouse:raw/file_sale",
            "job:tributary:tributary-marts.rankings"
        )));
        assert!(
            g.edges()
                .contains(&edge("job:tributary:tributary-marts.rankings", ranking))
        );
        assert!(g.edges().contains(&edge(
            "job:tributary:lake.file_sale",
            "dataset:s3://warehouse:raw/file_sale"
        )));
    }

    #[test]
    fn bad_events_name_the_member() {
        let good = event("START", Uuid::new_v4(), "j", vec![ds(KAFKA, "t")], vec![]);
        assert!(parse_event(&good).is_ok());
        let mut no_time = good.clone();
        no_time.as_object_mut().unwrap().remove("eventTime");
        assert_eq!(parse_event(&no_time).unwrap_err().field, "eventTime");
        let mut bad_time = good.clone();
        bad_time["eventTime"] = json!("yesterday");
        assert_eq!(parse_event(&bad_time).unwrap_err().field, "eventTime");
        let mut bad_run = good.clone();
        bad_run["run"]["runId"] = json!("42");
        assert_eq!(parse_event(&bad_run).unwrap_err().field, "run.runId");
        let mut bad_type = good.clone();
        bad_type["eventType"] = json!("DONE");
        assert_eq!(parse_event(&bad_type).unwrap_err().field, "eventType");
        let mut bad_dataset = good.clone();
        bad_dataset["inputs"][0]["name"] = json!("");
        assert_eq!(
            parse_event(&bad_dataset).unwrap_err().field,
            "inputs[0].name"
        );
        let mut no_job = good.clone();
        no_job["job"] = json!({"namespace": "n"});
        assert_eq!(parse_event(&no_job).unwrap_err().field, "job.name");
        let dataset_event = json!({"eventTime": "2026-11-26T01:00:00Z", "producer": "p", "schemaURL": "s", "dataset": {"namespace": "n", "name": "d"}});
        let err = parse_event(&dataset_event).unwrap_err();
        assert!(err.reason.contains("DatasetEvent"), "{err}");
        assert!(parse_event(&json!([1])).is_err());
    }

    #[test]
    fn lists_by_namespace() {
        let index = index(&pipeline());
        let names: Vec<String> = index
            .namespaces()
            .namespaces
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(
            names,
            [
                "kafka://127.0.0.1:9092",
                "s3://inbox",
                "s3://warehouse",
                "tributary"
            ]
        );
        let jobs = index.jobs("tributary", 2, 1).unwrap();
        assert_eq!(jobs.total_count, 3);
        assert_eq!(jobs.jobs.len(), 2);
        let datasets = index.datasets(KAFKA, 100, 0).unwrap();
        assert_eq!(datasets.total_count, 2);
        assert!(index.jobs("nope", 10, 0).is_err());
    }

    #[test]
    fn forgetting_before_a_cutoff_keeps_what_the_window_names() {
        let mut events = pipeline();
        // A run that never ended (its process crashed), and a newer run of the pg lander.
        events.push(event("START", Uuid::new_v4(), "ingest.erp", vec![], vec![]));
        let mut newer = event(
            "COMPLETE",
            Uuid::new_v4(),
            "lake.pg_sale",
            vec![ds(KAFKA, "salesdb.public.sale")],
            vec![ds(S3, "raw/pg_sale")],
        );
        newer["eventTime"] = json!("2026-12-26T01:00:00.000Z");
        events.push(newer);
        let mut index = index(&events);
        assert_eq!(index.open_runs.len(), 1);

        let cutoff = "2026-12-01T00:00:00Z".parse().unwrap();
        // Jobs: ingest.files.acme, lake.file_sale, ingest.erp; datasets: the file, the files
        // topic and table.
        assert_eq!(index.forget_before(cutoff), 6);
        assert!(index.open_runs.is_empty());
        let jobs: Vec<String> = index
            .jobs("tributary", 100, 0)
            .unwrap()
            .jobs
            .into_iter()
            .map(|j| j.name)
            .collect();
        assert_eq!(jobs, ["lake.pg_sale"]);
        // The datasets the remaining job reads and writes stay, whatever their age.
        assert_eq!(index.datasets(KAFKA, 100, 0).unwrap().total_count, 1);
        assert_eq!(index.datasets(S3, 100, 0).unwrap().total_count, 1);
        let names: Vec<String> = index
            .namespaces()
            .namespaces
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(names, [KAFKA, S3, "tributary"]);
        // Forgetting again changes nothing.
        assert_eq!(index.forget_before(cutoff), 0);
    }

    #[test]
    fn crashed_process_runs_are_tallied_per_job() {
        use tributary_lineage::journal::{OpenRun, crash_event};
        let now: DateTime<Utc> = "2026-11-26T01:00:00Z".parse().unwrap();
        let later = now + chrono::Duration::minutes(5);
        let crash = |job: &str, parent: Option<(Uuid, String, String)>, at: DateTime<Utc>| {
            let run = OpenRun {
                namespace: "tributary".into(),
                job: job.into(),
                started_at: now,
                parent,
            };
            serde_json::to_value(crash_event(Uuid::now_v7(), &run, at)).unwrap()
        };
        let mut failed = event("FAIL", Uuid::new_v4(), "tributary-lake", vec![], vec![]);
        failed["run"]["facets"] = json!({"errorMessage": {
            "_producer": "urn:test",
            "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json",
            "message": "disk full",
            "programmingLanguage": "RUST",
        }});
        let lake = ("tributary".to_string(), "tributary-lake".to_string());
        let index = index(&[
            crash("tributary-lake", None, now),
            crash("tributary-lake", None, later),
            crash("tributary-marts", None, now),
            // A task of a crashed process, closed with it: the process's crash is what counts.
            crash(
                "tributary-lake.raw.pg_sale",
                Some((Uuid::now_v7(), lake.0, lake.1)),
                now,
            ),
            // A failure, not a crash.
            failed,
        ]);
        let tally = |index: &LineageIndex| -> BTreeMap<String, (u64, DateTime<Utc>)> {
            index
                .crashes()
                .into_iter()
                .map(|(job, c)| (job.name, (c.count, c.last_at)))
                .collect()
        };
        assert_eq!(
            tally(&index),
            BTreeMap::from([
                ("tributary-lake".to_string(), (2, later)),
                ("tributary-marts".to_string(), (1, now)),
            ])
        );
        // Kept by a checkpoint; forgotten with the events, past the retention.
        let mut restored = LineageIndex::from_checkpoint(index.to_checkpoint()).unwrap();
        assert_eq!(tally(&restored), tally(&index));
        restored.forget_before(now + chrono::Duration::minutes(1));
        assert_eq!(
            tally(&restored),
            BTreeMap::from([("tributary-lake".to_string(), (2, later))])
        );
    }
}
