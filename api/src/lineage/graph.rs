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
mod tests;
