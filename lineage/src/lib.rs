//! OpenLineage for Tributary's jobs.
//!
//! - [`event`] / [`facets`]: the `RunEvent` model of the OpenLineage spec (pinned: release
//!   1.52.0, event schema 2-0-2, vendored in `lineage/spec/`), written with serde;
//! - [`naming`]: dataset namespaces and names per the OpenLineage naming conventions;
//! - [`emitter`]: [`Lineage`] (from `OPENLINEAGE_*`, see [`transport`]) and [`JobRun`], which
//!   emit START / RUNNING / COMPLETE / ABORT / FAIL without ever blocking or failing a job.
//! - [`journal`]: the runs a process has open, on disk, so the next process closes them if it
//!   crashed and counts the crash.
//!
//! ```no_run
//! # async fn demo() {
//! use tributary_lineage::{naming, JobSpec, Lineage, Processing};
//! let lineage = Lineage::from_env();
//! let job = JobSpec {
//!     name: "tributary-marts.rankings".into(),
//!     processing: Processing::Batch,
//!     job_type: "JOB",
//!     source_path: "marts/src/job.rs",
//!     description: "Ranks cities and salesmen".into(),
//! };
//! let run = lineage.run(&job);
//! let input = naming::iceberg_table("s3://warehouse", "raw", "pg_sale");
//! run.start(vec![input.clone().input()], vec![]);
//! run.complete(vec![input.input()], vec![]);
//! lineage.flush().await;
//! # }
//! ```
#![deny(missing_docs)]

pub mod emitter;
pub mod error;
pub mod event;
pub mod facets;
pub mod journal;

pub mod naming;
pub mod transport;

#[cfg(any(test, feature = "validate"))]
pub mod validate;

pub use emitter::{JobRun, JobSpec, Lineage, Processing};
pub use error::LineageError;
pub use event::{Dataset, EventType, InputDataset, Job, OutputDataset, Run, RunEvent};
pub use transport::{LineageConfig, TransportConfig};

/// `producer` of every event and facet Tributary writes.
pub const PRODUCER: &str = concat!(
    "urn:tributary:tributary-lineage:",
    env!("CARGO_PKG_VERSION")
);

/// The event schema the events follow (OpenLineage 2-0-2, vendored in `lineage/spec/`).
pub const RUN_EVENT_SCHEMA_URL: &str =
    "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";

/// The `sourceCodeLocation` URL of `path` (relative to the repository root): a `file://` URL
/// into the workspace this crate was built from (the project has no public repository URL yet).
pub fn source_url(path: &str) -> String {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().unwrap_or(manifest);
    format!("file://{}/{path}", root.display())
}
