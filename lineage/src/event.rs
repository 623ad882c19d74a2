//! The OpenLineage `RunEvent` (spec 2-0-2) and its parts, serialised with serde exactly as the
//! JSON schema names them.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

use crate::facets::{
    DatasetFacets, DatasourceDatasetFacet, Facet, InputDatasetFacets,
    InputStatisticsInputDatasetFacet, JobFacets, OutputDatasetFacets,
    OutputStatisticsOutputDatasetFacet, RunFacets, SchemaDatasetFacet,
};
use crate::{PRODUCER, RUN_EVENT_SCHEMA_URL};

/// The run state transition an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    /// The run began.
    Start,
    /// The run is going on (a long-running job reporting progress).
    Running,
    /// The run finished successfully.
    Complete,
    /// The run was stopped before it finished (e.g. shutdown).
    Abort,
    /// The run failed (with an `errorMessage` run facet).
    Fail,
}

/// One OpenLineage run event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunEvent {
    /// The transition.
    pub event_type: EventType,
    /// When it happened (RFC 3339, UTC, milliseconds).
    #[serde(serialize_with = "rfc3339_millis")]
    pub event_time: DateTime<Utc>,
    /// The run.
    pub run: Run,
    /// The job.
    pub job: Job,
    /// Datasets read.
    pub inputs: Vec<InputDataset>,
    /// Datasets written.
    pub outputs: Vec<OutputDataset>,
    /// Who produced the event.
    pub producer: String,
    /// The event schema.
    #[serde(rename = "schemaURL")]
    pub schema_url: String,
}

fn rfc3339_millis<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Millis, true))
}

impl RunEvent {
    /// An event of `event_type` now, with Tributary as producer.
    pub fn new(event_type: EventType, run: Run, job: Job) -> Self {
        Self {
            event_type,
            event_time: Utc::now(),
            run,
            job,
            inputs: Vec::new(),
            outputs: Vec::new(),
            producer: PRODUCER.to_string(),
            schema_url: RUN_EVENT_SCHEMA_URL.to_string(),
        }
    }

    /// Every dataset the event names, inputs first, as `(namespace, name)`.
    pub fn dataset_names(&self) -> impl Iterator<Item = (&str, &str)> {
        self.inputs
            .iter()
            .map(|d| (d.namespace.as_str(), d.name.as_str()))
            .chain(
                self.outputs
                    .iter()
                    .map(|d| (d.namespace.as_str(), d.name.as_str())),
            )
    }
}

/// A run: one execution of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// Unique per run (UUID v7: ordered by start time).
    pub run_id: Uuid,
    /// Run facets.
    #[serde(default, skip_serializing_if = "RunFacets::is_empty")]
    pub facets: RunFacets,
}

/// A job: a recurring process, named within a namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Job namespace (`OPENLINEAGE_NAMESPACE`, default `tributary`).
    pub namespace: String,
    /// Job name (`tributary-lake.raw.pg_sale`, …).
    pub name: String,
    /// Job facets.
    #[serde(default, skip_serializing_if = "JobFacets::is_empty")]
    pub facets: JobFacets,
}

/// A dataset read by a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputDataset {
    /// Where the dataset lives (`postgres://host:port`, `kafka://host:port`, `s3://bucket`, …).
    pub namespace: String,
    /// Its name within the namespace.
    pub name: String,
    /// Dataset facets.
    #[serde(default, skip_serializing_if = "DatasetFacets::is_empty")]
    pub facets: DatasetFacets,
    /// Facets about this run's reading of it.
    #[serde(default, skip_serializing_if = "InputDatasetFacets::is_empty")]
    pub input_facets: InputDatasetFacets,
}

/// A dataset written by a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputDataset {
    /// Where the dataset lives.
    pub namespace: String,
    /// Its name within the namespace.
    pub name: String,
    /// Dataset facets.
    #[serde(default, skip_serializing_if = "DatasetFacets::is_empty")]
    pub facets: DatasetFacets,
    /// Facets about this run's writing of it.
    #[serde(default, skip_serializing_if = "OutputDatasetFacets::is_empty")]
    pub output_facets: OutputDatasetFacets,
}

/// A dataset identity plus its dataset facets; turned into an input or an output.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Dataset facets.
    pub facets: DatasetFacets,
}

impl Dataset {
    /// A dataset with a `dataSource` facet naming its namespace.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        let namespace = namespace.into();
        // `file` is a namespace but not a URI: its data source URI is `file:///`.
        let uri = if namespace.contains("://") {
            namespace.clone()
        } else {
            format!("{namespace}:///")
        };
        Self {
            facets: DatasetFacets {
                data_source: Some(Facet::new(DatasourceDatasetFacet {
                    name: namespace.clone(),
                    uri,
                })),
                ..DatasetFacets::default()
            },
            namespace,
            name: name.into(),
        }
    }

    /// With a `schema` facet.
    pub fn with_schema(mut self, schema: SchemaDatasetFacet) -> Self {
        self.facets.schema = Some(Facet::new(schema));
        self
    }

    /// As an input, without input facets.
    pub fn input(self) -> InputDataset {
        InputDataset {
            namespace: self.namespace,
            name: self.name,
            facets: self.facets,
            input_facets: InputDatasetFacets::default(),
        }
    }

    /// As an input with `inputStatistics`.
    pub fn input_with_stats(self, stats: InputStatisticsInputDatasetFacet) -> InputDataset {
        let mut input = self.input();
        input.input_facets.input_statistics = Some(Facet::new(stats));
        input
    }

    /// As an output, without output facets.
    pub fn output(self) -> OutputDataset {
        OutputDataset {
            namespace: self.namespace,
            name: self.name,
            facets: self.facets,
            output_facets: OutputDatasetFacets::default(),
        }
    }

    /// As an output with `outputStatistics`.
    pub fn output_with_stats(self, stats: OutputStatisticsOutputDatasetFacet) -> OutputDataset {
        let mut output = self.output();
        output.output_facets.output_statistics = Some(Facet::new(stats));
        output
    }
}
