//! The emitter: jobs hand it events and go on. A background task sends them to every configured
//! transport; a failure (or a full queue) is counted in `tributary_lineage_emit_failures_total`
//! and logged, never returned to the job.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::error::LineageError;
use crate::event::{EventType, InputDataset, Job, OutputDataset, Run, RunEvent};
use crate::facets::{
    DocumentationJobFacet, ErrorMessageRunFacet, Facet, JobFacets, JobTypeJobFacet, ParentJob,
    ParentRun, ParentRunFacet, ProcessingEngineRunFacet, RunFacets, SourceCodeLocationJobFacet,
};
use crate::journal::RunJournal;
use crate::transport::{DEFAULT_NAMESPACE, LineageConfig, Transport};

/// Events waiting to be sent; beyond this a new event is dropped (and counted), so a dead
/// Marquez can never make a job wait or grow its memory.
const QUEUE_CAPACITY: usize = 4096;
/// How long [`Lineage::flush`] waits at most.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(15);

enum Message {
    Event(Box<RunEvent>),
    Flush(oneshot::Sender<()>),
}

/// The lineage emitter of one process. Cheap to clone; a disabled one does nothing.
#[derive(Clone)]
pub struct Lineage {
    namespace: String,
    sender: Option<mpsc::Sender<Message>>,
    failures: IntCounterVec,
    /// The runs this process has open, on disk (`OPENLINEAGE_RUN_JOURNAL`).
    journal: Option<Arc<RunJournal>>,
    crashes: CrashMetrics,
}

/// `tributary_process_crashes_total` and `tributary_process_last_crash_timestamp_seconds`, from
/// the run journal.
#[derive(Clone)]
struct CrashMetrics {
    total: IntCounter,
    last_at: IntGauge,
}

impl CrashMetrics {
    fn new() -> Self {
        Self {
            total: IntCounter::new(
                "tributary_process_crashes_total",
                "Processes of this service that ended without closing their runs (killed or crashed), found by the next one at its start; counted since the run journal was created (OPENLINEAGE_RUN_JOURNAL)",
            )
            .expect("valid metric definition"),
            last_at: IntGauge::new(
                "tributary_process_last_crash_timestamp_seconds",
                "When the last crash of this service was found (0: none since the run journal was created)",
            )
            .expect("valid metric definition"),
        }
    }
}

impl std::fmt::Debug for Lineage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lineage")
            .field("namespace", &self.namespace)
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

fn failures_counter() -> IntCounterVec {
    IntCounterVec::new(
        Opts::new(
            "tributary_lineage_emit_failures_total",
            "OpenLineage events that could not be delivered, by transport (`queue`: dropped because the send queue was full)",
        ),
        &["transport"],
    )
    .expect("valid metric definition")
}

impl Lineage {
    /// An emitter that emits nothing.
    pub fn disabled() -> Self {
        Self {
            namespace: DEFAULT_NAMESPACE.to_string(),
            sender: None,
            failures: failures_counter(),
            journal: None,
            crashes: CrashMetrics::new(),
        }
    }

    /// The emitter the `OPENLINEAGE_*` environment asks for (see [`crate::transport`]). A bad
    /// setting is logged and leaves lineage off: lineage must never stop a job from starting.
    /// Call inside a Tokio runtime.
    pub fn from_env() -> Self {
        match LineageConfig::from_vars(std::env::vars()).and_then(Self::from_config) {
            Ok(lineage) => lineage,
            Err(error) => {
                tracing::error!(%error, "OpenLineage is off");
                Self::disabled()
            }
        }
    }

    /// The emitter for `config`; starts its sending task on the current Tokio runtime. With a
    /// run journal, the runs a crashed predecessor left open are closed (FAIL) first.
    pub fn from_config(config: LineageConfig) -> Result<Self, LineageError> {
        let failures = failures_counter();
        // The transports first: a bad one refuses the config before the journal is touched.
        let sender = if config.transports.is_empty() {
            None
        } else {
            let transports = config
                .transports
                .iter()
                .map(Transport::open)
                .collect::<Result<Vec<_>, _>>()?;
            let runtime = tokio::runtime::Handle::try_current()
                .map_err(|_| LineageError::Config("the emitter needs a Tokio runtime".into()))?;
            let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
            runtime.spawn(send_loop(receiver, transports, failures.clone()));
            tracing::info!(
                namespace = %config.namespace,
                transports = ?config.transports.iter().map(|t| match t {
                    crate::transport::TransportConfig::Http { url, .. } => format!("http {url}"),
                    crate::transport::TransportConfig::File { path } => format!("file {}", path.display()),
                    crate::transport::TransportConfig::Console => "console".to_string(),
                }).collect::<Vec<_>>(),
                "OpenLineage on"
            );
            Some(sender)
        };
        let crashes = CrashMetrics::new();
        let (journal, left_open) = match &config.journal {
            None => (None, Vec::new()),
            // The journal must never stop a job from starting: without it, crashes go uncounted.
            Some(path) => match RunJournal::open(path) {
                Ok((journal, left_open)) => (Some(Arc::new(journal)), left_open),
                Err(error) => {
                    tracing::error!(%error, "running without an OpenLineage run journal");
                    (None, Vec::new())
                }
            },
        };
        if let Some(journal) = &journal {
            let (total, last_at) = journal.crashes();
            crashes.total.inc_by(total);
            crashes.last_at.set(last_at.map_or(0, |t| t.timestamp()));
            if !left_open.is_empty() {
                tracing::warn!(
                    crashes = total,
                    runs = left_open.len(),
                    "the previous process of this service ended without closing its runs (killed or crashed): closing them as FAILED"
                );
            }
        }
        let lineage = Self {
            namespace: config.namespace,
            sender,
            failures,
            journal,
            crashes,
        };
        let now = chrono::Utc::now();
        for (run_id, run) in &left_open {
            lineage.emit(crate::journal::crash_event(*run_id, run, now));
        }
        Ok(lineage)
    }

    /// Whether events go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.sender.is_some()
    }

    /// The job namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Registers `tributary_lineage_emit_failures_total`, `tributary_process_crashes_total` and
    /// `tributary_process_last_crash_timestamp_seconds` in the service's registry.
    pub fn register_metrics(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.failures.clone()))?;
        registry.register(Box::new(self.crashes.total.clone()))?;
        registry.register(Box::new(self.crashes.last_at.clone()))
    }

    /// Crashes of this service counted by its run journal (0 without one).
    pub fn crashes(&self) -> u64 {
        self.crashes.total.get()
    }

    /// Failures counted so far, all transports.
    pub fn failures(&self) -> u64 {
        ["queue", "http", "file", "console", "serialize"]
            .iter()
            .map(|t| self.failures.with_label_values(&[t]).get())
            .sum()
    }

    /// Queues `event` without waiting. A full queue drops it (counted, logged).
    pub fn emit(&self, event: RunEvent) {
        if let Some(journal) = &self.journal {
            journal.follow(&event);
        }
        let Some(sender) = &self.sender else { return };
        if let Err(error) = sender.try_send(Message::Event(Box::new(event))) {
            self.failures.with_label_values(&["queue"]).inc();
            tracing::warn!(%error, "OpenLineage event dropped: send queue full or closed");
        }
    }

    /// Waits (at most 15 s) until every event queued before this call was handed to the
    /// transports. For shutdown and tests.
    pub async fn flush(&self) {
        let Some(sender) = &self.sender else { return };
        let (done, wait) = oneshot::channel();
        if sender.send(Message::Flush(done)).await.is_ok()
            && tokio::time::timeout(FLUSH_TIMEOUT, wait).await.is_err()
        {
            tracing::warn!("OpenLineage flush timed out");
        }
    }

    /// A new run of `job`.
    pub fn run(&self, job: &JobSpec) -> JobRun {
        JobRun {
            lineage: self.clone(),
            job: job.to_job(&self.namespace),
            run_id: Uuid::now_v7(),
            parent: None,
            engine: None,
        }
    }
}

async fn send_loop(
    mut receiver: mpsc::Receiver<Message>,
    transports: Vec<Transport>,
    failures: IntCounterVec,
) {
    while let Some(message) = receiver.recv().await {
        match message {
            Message::Flush(done) => {
                let _ = done.send(());
            }
            Message::Event(event) => {
                let json = match serde_json::to_string(&event) {
                    Ok(json) => json,
                    Err(error) => {
                        failures.with_label_values(&["serialize"]).inc();
                        tracing::warn!(%error, "OpenLineage event not serialisable");
                        continue;
                    }
                };
                for transport in &transports {
                    if let Err(error) = transport.send(&event, &json).await {
                        failures.with_label_values(&[transport.name()]).inc();
                        tracing::warn!(
                            %error,
                            transport = transport.name(),
                            job = %event.job.name,
                            event_type = ?event.event_type,
                            "OpenLineage event not delivered"
                        );
                    }
                }
            }
        }
    }
}

/// Batch (a run ends) or streaming (a process that keeps running).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processing {
    /// A run reads a bounded input and ends.
    Batch,
    /// A run follows an unbounded input.
    Streaming,
}

/// What a job is, for its `Job` and job facets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// Job name, e.g. `tributary-lake.raw.pg_sale`.
    pub name: String,
    /// Batch or streaming.
    pub processing: Processing,
    /// `JOB` for a process, `TASK` for a unit of work inside one (a commit, a file).
    pub job_type: &'static str,
    /// The code's path in the repository, e.g. `lake/src/lander.rs`.
    pub source_path: &'static str,
    /// What the job does, in a sentence.
    pub description: String,
}

impl JobSpec {
    fn to_job(&self, namespace: &str) -> Job {
        Job {
            namespace: namespace.to_string(),
            name: self.name.clone(),
            facets: JobFacets {
                job_type: Some(Facet::new(JobTypeJobFacet {
                    processing_type: match self.processing {
                        Processing::Batch => "BATCH",
                        Processing::Streaming => "STREAMING",
                    }
                    .into(),
                    integration: "TRIBUTARY".into(),
                    job_type: self.job_type.into(),
                })),
                source_code_location: Some(Facet::new(SourceCodeLocationJobFacet {
                    kind: "git".into(),
                    url: crate::source_url(self.source_path),
                    path: Some(self.source_path.to_string()),
                    version: Some(env!("CARGO_PKG_VERSION").to_string()),
                })),
                documentation: (!self.description.is_empty()).then(|| {
                    Facet::new(DocumentationJobFacet {
                        description: self.description.clone(),
                    })
                }),
            },
        }
    }
}

/// One run of a job: emits its events, all with the same run id.
#[derive(Debug, Clone)]
pub struct JobRun {
    lineage: Lineage,
    job: Job,
    run_id: Uuid,
    parent: Option<ParentRunFacet>,
    /// The engine that ran it, when not Tributary itself: (name, version).
    engine: Option<(String, String)>,
}

impl JobRun {
    /// Names `name` `version` as the engine that ran this run (its `processing_engine` facet),
    /// e.g. Trino for a rebuild computed there.
    pub fn set_engine(&mut self, name: &str, version: &str) {
        self.engine = Some((name.to_string(), version.to_string()));
    }

    /// The run id.
    pub fn run_id(&self) -> Uuid {
        self.run_id
    }

    /// The job.
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// A new run of `job` whose `parent` facet names this run.
    pub fn child(&self, job: &JobSpec) -> JobRun {
        let mut run = self.lineage.run(job);
        run.parent = Some(ParentRunFacet {
            run: ParentRun {
                run_id: self.run_id,
            },
            job: ParentJob {
                namespace: self.job.namespace.clone(),
                name: self.job.name.clone(),
            },
        });
        run
    }

    /// The event of this run (pure: nothing is sent).
    pub fn event(
        &self,
        event_type: EventType,
        inputs: Vec<InputDataset>,
        outputs: Vec<OutputDataset>,
        error: Option<ErrorMessageRunFacet>,
    ) -> RunEvent {
        let facets = RunFacets {
            parent: self.parent.clone().map(Facet::new),
            processing_engine: Some(Facet::new(ProcessingEngineRunFacet {
                version: self
                    .engine
                    .as_ref()
                    .map_or(env!("CARGO_PKG_VERSION"), |(_, v)| v.as_str())
                    .into(),
                name: self
                    .engine
                    .as_ref()
                    .map_or("tributary", |(name, _)| name.as_str())
                    .into(),
                openlineage_adapter_version: concat!(
                    "tributary-lineage ",
                    env!("CARGO_PKG_VERSION")
                )
                .into(),
            })),
            error_message: error.map(Facet::new),
        };
        let mut event = RunEvent::new(
            event_type,
            Run {
                run_id: self.run_id,
                facets,
            },
            self.job.clone(),
        );
        event.inputs = inputs;
        event.outputs = outputs;
        event
    }

    /// Sends an event built with [`JobRun::event`] (e.g. with an earlier `event_time`).
    pub fn emit(&self, event: RunEvent) {
        self.lineage.emit(event);
    }

    /// START.
    pub fn start(&self, inputs: Vec<InputDataset>, outputs: Vec<OutputDataset>) {
        self.lineage
            .emit(self.event(EventType::Start, inputs, outputs, None));
    }

    /// RUNNING (progress of a long run).
    pub fn running(&self, inputs: Vec<InputDataset>, outputs: Vec<OutputDataset>) {
        self.lineage
            .emit(self.event(EventType::Running, inputs, outputs, None));
    }

    /// COMPLETE, with what was read and written (statistics, versions).
    pub fn complete(&self, inputs: Vec<InputDataset>, outputs: Vec<OutputDataset>) {
        self.lineage
            .emit(self.event(EventType::Complete, inputs, outputs, None));
    }

    /// ABORT (stopped before finishing, e.g. shutdown).
    pub fn abort(&self, inputs: Vec<InputDataset>, outputs: Vec<OutputDataset>) {
        self.lineage
            .emit(self.event(EventType::Abort, inputs, outputs, None));
    }

    /// FAIL with an `errorMessage` facet built from `error` and its causes.
    pub fn fail(
        &self,
        inputs: Vec<InputDataset>,
        outputs: Vec<OutputDataset>,
        error: &(dyn std::error::Error + 'static),
    ) {
        self.fail_with(inputs, outputs, ErrorMessageRunFacet::from_error(error));
    }

    /// FAIL with the given error facet.
    pub fn fail_with(
        &self,
        inputs: Vec<InputDataset>,
        outputs: Vec<OutputDataset>,
        error: ErrorMessageRunFacet,
    ) {
        self.lineage
            .emit(self.event(EventType::Fail, inputs, outputs, Some(error)));
    }
}
