//! The facets Tributary emits: the standard ones of the pinned OpenLineage spec (1.52.0, event
//! schema 2-0-2) and two custom ones (`tributary_kafkaOffsets`, `tributary_icebergSnapshot`).
//!
//! Every facet carries `_producer` and `_schemaURL` ([`Facet`] adds them); its body is a plain
//! struct named after the spec's facet.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::PRODUCER;

/// A facet body and the schema it follows.
pub trait FacetSchema {
    /// `_schemaURL`: the facet's JSON schema, with the JSON pointer to its definition.
    const SCHEMA_URL: &'static str;
}

/// A facet as it appears in an event: the body plus `_producer` and `_schemaURL`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Facet<T> {
    /// Who wrote the facet.
    #[serde(rename = "_producer")]
    pub producer: String,
    /// The schema the facet follows.
    #[serde(rename = "_schemaURL")]
    pub schema_url: String,
    /// The facet's own fields.
    #[serde(flatten)]
    pub body: T,
}

impl<T: FacetSchema> Facet<T> {
    /// Wraps `body` with Tributary as producer and the body's schema URL.
    pub fn new(body: T) -> Self {
        Self {
            producer: PRODUCER.to_string(),
            schema_url: T::SCHEMA_URL.to_string(),
            body,
        }
    }
}

impl<T: FacetSchema> From<T> for Facet<T> {
    fn from(body: T) -> Self {
        Self::new(body)
    }
}

// ---- run facets ----------------------------------------------------------------------------

/// `parent`: the run this run is part of (a lander commit's parent is the lander process run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParentRunFacet {
    /// The parent run.
    pub run: ParentRun,
    /// The parent job.
    pub job: ParentJob,
}

/// The parent's run id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRun {
    /// Its id.
    pub run_id: uuid::Uuid,
}

/// The parent's job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParentJob {
    /// Job namespace.
    pub namespace: String,
    /// Job name.
    pub name: String,
}

impl FacetSchema for ParentRunFacet {
    const SCHEMA_URL: &'static str =
        "https://openlineage.io/spec/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet";
}

/// `processing_engine`: what ran the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessingEngineRunFacet {
    /// Engine version.
    pub version: String,
    /// Engine name.
    pub name: String,
    /// Version of the code that produced the OpenLineage events.
    pub openlineage_adapter_version: String,
}

impl FacetSchema for ProcessingEngineRunFacet {
    const SCHEMA_URL: &'static str = "https://openlineage.io/spec/facets/1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet";
}

/// `errorMessage`: why a run failed (on FAIL events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorMessageRunFacet {
    /// The error, as displayed.
    pub message: String,
    /// Always `RUST`.
    pub programming_language: String,
    /// The error's chain of causes (Rust has no stack trace on an error value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_trace: Option<String>,
}

impl FacetSchema for ErrorMessageRunFacet {
    const SCHEMA_URL: &'static str = "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet";
}

impl ErrorMessageRunFacet {
    /// The facet for `error`: its message, and its `source()` chain as the "stack trace".
    pub fn from_error(error: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = Vec::new();
        let mut cause = error.source();
        while let Some(c) = cause {
            chain.push(format!("caused by: {c}"));
            cause = c.source();
        }
        Self {
            message: error.to_string(),
            programming_language: "RUST".to_string(),
            stack_trace: (!chain.is_empty()).then(|| chain.join("\n")),
        }
    }

    /// The facet for a message without an error value.
    pub fn from_message(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            programming_language: "RUST".to_string(),
            stack_trace: None,
        }
    }
}

/// The run facets Tributary sets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunFacets {
    /// The enclosing run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<Facet<ParentRunFacet>>,
    /// What ran it.
    #[serde(rename = "processing_engine", skip_serializing_if = "Option::is_none")]
    pub processing_engine: Option<Facet<ProcessingEngineRunFacet>>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<Facet<ErrorMessageRunFacet>>,
}

impl RunFacets {
    /// No facet set.
    pub fn is_empty(&self) -> bool {
        self.parent.is_none() && self.processing_engine.is_none() && self.error_message.is_none()
    }
}

// ---- job facets ----------------------------------------------------------------------------

/// `jobType`: batch or streaming, and by whom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobTypeJobFacet {
    /// `BATCH` or `STREAMING`.
    pub processing_type: String,
    /// `TRIBUTARY`.
    pub integration: String,
    /// `JOB` (a process) or `TASK` (one unit of work inside it).
    pub job_type: String,
}

impl FacetSchema for JobTypeJobFacet {
    const SCHEMA_URL: &'static str =
        "https://openlineage.io/spec/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet";
}

/// `sourceCodeLocation`: where the job's code lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceCodeLocationJobFacet {
    /// `git`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The code's URL (the repository URL plus the path).
    pub url: String,
    /// The file or folder in the repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The code version (the crate version).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl FacetSchema for SourceCodeLocationJobFacet {
    const SCHEMA_URL: &'static str = "https://openlineage.io/spec/facets/1-1-0/SourceCodeLocationJobFacet.json#/$defs/SourceCodeLocationJobFacet";
}

/// `documentation`: what the job does, for a reader of the lineage graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentationJobFacet {
    /// The description.
    pub description: String,
}

impl FacetSchema for DocumentationJobFacet {
    const SCHEMA_URL: &'static str = "https://openlineage.io/spec/facets/1-1-0/DocumentationJobFacet.json#/$defs/DocumentationJobFacet";
}

/// The job facets Tributary sets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobFacets {
    /// Batch or streaming.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_type: Option<Facet<JobTypeJobFacet>>,
    /// Where the code is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_code_location: Option<Facet<SourceCodeLocationJobFacet>>,
    /// What it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documentation: Option<Facet<DocumentationJobFacet>>,
}

impl JobFacets {
    /// No facet set.
    pub fn is_empty(&self) -> bool {
        self.job_type.is_none()
            && self.source_code_location.is_none()
            && self.documentation.is_none()
    }
}

// ---- dataset facets ------------------------------------------------------------------------

/// `schema`: the dataset's columns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchemaDatasetFacet {
    /// The columns, in order.
    pub fields: Vec<SchemaField>,
}

/// One column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaField {
    /// Column name.
    pub name: String,
    /// Type as the dataset's system names it (`bigint`, `decimal(18,2)`, `string`…).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub data_type: Option<String>,
    /// What it holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl SchemaField {
    /// A column with its type.
    pub fn new(name: impl Into<String>, data_type: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            data_type: Some(data_type.into()),
            description: None,
        }
    }
}

impl SchemaDatasetFacet {
    /// The facet from `(name, type)` pairs.
    pub fn from_columns<'a>(columns: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            fields: columns
                .into_iter()
                .map(|(name, ty)| SchemaField::new(name, ty))
                .collect(),
        }
    }
}

impl FacetSchema for SchemaDatasetFacet {
    const SCHEMA_URL: &'static str = "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet";
}

/// `dataSource`: the system holding the dataset (name = the namespace, uri = where to reach it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasourceDatasetFacet {
    /// The data source's name (Tributary uses the dataset namespace).
    pub name: String,
    /// Its URI.
    pub uri: String,
}

impl FacetSchema for DatasourceDatasetFacet {
    const SCHEMA_URL: &'static str = "https://openlineage.io/spec/facets/1-0-1/DatasourceDatasetFacet.json#/$defs/DatasourceDatasetFacet";
}

/// `columnLineage`: for each output column, the input columns it is computed from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ColumnLineageDatasetFacet {
    /// Output column → its inputs.
    pub fields: BTreeMap<String, ColumnLineageInputs>,
    /// Input columns that affect the whole dataset (filters, grouping, joins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dataset: Vec<InputField>,
}

/// The inputs of one output column.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ColumnLineageInputs {
    /// Input columns.
    pub input_fields: Vec<InputField>,
}

/// One input column and how it is used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputField {
    /// Input dataset namespace.
    pub namespace: String,
    /// Input dataset name.
    pub name: String,
    /// Input column.
    pub field: String,
    /// How the output depends on it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transformations: Vec<Transformation>,
}

/// A transformation (spec: type DIRECT or INDIRECT; subtype IDENTITY, TRANSFORMATION,
/// AGGREGATION, JOIN, GROUP_BY, FILTER, SORT, WINDOW…).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transformation {
    /// `DIRECT` or `INDIRECT`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The kind of transformation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subtype: Option<String>,
    /// In words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether the output hides the input's values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masking: Option<bool>,
}

impl Transformation {
    /// `DIRECT` with `subtype`.
    pub fn direct(subtype: &str) -> Self {
        Self {
            kind: "DIRECT".into(),
            subtype: Some(subtype.into()),
            description: None,
            masking: Some(false),
        }
    }
    /// `INDIRECT` with `subtype`.
    pub fn indirect(subtype: &str) -> Self {
        Self {
            kind: "INDIRECT".into(),
            subtype: Some(subtype.into()),
            description: None,
            masking: Some(false),
        }
    }
    /// With a description.
    pub fn described(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }
}

impl FacetSchema for ColumnLineageDatasetFacet {
    const SCHEMA_URL: &'static str = "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet";
}

impl ColumnLineageDatasetFacet {
    /// Adds `input` to the inputs of `output_column`.
    pub fn add(&mut self, output_column: &str, input: InputField) -> &mut Self {
        self.fields
            .entry(output_column.to_string())
            .or_default()
            .input_fields
            .push(input);
        self
    }
}

/// `version`: the dataset version a run wrote or read (Iceberg: the snapshot id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetVersionDatasetFacet {
    /// The version.
    pub dataset_version: String,
}

impl FacetSchema for DatasetVersionDatasetFacet {
    const SCHEMA_URL: &'static str = "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet";
}

/// `tributary_icebergSnapshot` (custom): the Iceberg snapshot written or read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IcebergSnapshotDatasetFacet {
    /// `namespace.table` in the catalog.
    pub table: String,
    /// The snapshot id.
    pub snapshot_id: i64,
    /// The snapshot it was committed on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_snapshot_id: Option<i64>,
    /// Records added by this snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added_records: Option<u64>,
    /// Data files added by this snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added_data_files: Option<u64>,
}

impl FacetSchema for IcebergSnapshotDatasetFacet {
    const SCHEMA_URL: &'static str = "https://tributary.invalid/spec/facets/1-0-0/TributaryIcebergSnapshotDatasetFacet.json#/$defs/TributaryIcebergSnapshotDatasetFacet";
}

/// The dataset facets Tributary sets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetFacets {
    /// Columns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<Facet<SchemaDatasetFacet>>,
    /// The system holding it.
    #[serde(rename = "dataSource", skip_serializing_if = "Option::is_none")]
    pub data_source: Option<Facet<DatasourceDatasetFacet>>,
    /// Column lineage (outputs).
    #[serde(rename = "columnLineage", skip_serializing_if = "Option::is_none")]
    pub column_lineage: Option<Facet<ColumnLineageDatasetFacet>>,
    /// Version written or read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Facet<DatasetVersionDatasetFacet>>,
    /// The Iceberg snapshot written or read.
    #[serde(
        rename = "tributary_icebergSnapshot",
        skip_serializing_if = "Option::is_none"
    )]
    pub iceberg_snapshot: Option<Facet<IcebergSnapshotDatasetFacet>>,
}

impl DatasetFacets {
    /// No facet set.
    pub fn is_empty(&self) -> bool {
        self.schema.is_none()
            && self.data_source.is_none()
            && self.column_lineage.is_none()
            && self.version.is_none()
            && self.iceberg_snapshot.is_none()
    }
}

// ---- input / output dataset facets ---------------------------------------------------------

/// `inputStatistics`: what a run read from one input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputStatisticsInputDatasetFacet {
    /// Rows (records) read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_count: Option<u64>,
    /// Bytes read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Files read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_count: Option<u64>,
}

impl FacetSchema for InputStatisticsInputDatasetFacet {
    const SCHEMA_URL: &'static str = "https://openlineage.io/spec/facets/1-0-0/InputStatisticsInputDatasetFacet.json#/$defs/InputStatisticsInputDatasetFacet";
}

/// `outputStatistics`: what a run wrote to one output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputStatisticsOutputDatasetFacet {
    /// Rows (records) written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_count: Option<u64>,
    /// Bytes written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Files written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_count: Option<u64>,
}

impl FacetSchema for OutputStatisticsOutputDatasetFacet {
    const SCHEMA_URL: &'static str = "https://openlineage.io/spec/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet";
}

/// `tributary_kafkaOffsets` (custom): the offsets of one topic a run consumed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KafkaOffsetsInputDatasetFacet {
    /// The topic.
    pub topic: String,
    /// Per partition, `[startOffset, endOffset)`.
    pub partitions: Vec<PartitionOffsets>,
}

/// The offsets covered in one partition: `start` inclusive, `end` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionOffsets {
    /// Partition.
    pub partition: i32,
    /// First offset covered.
    pub start_offset: i64,
    /// Offset after the last one covered.
    pub end_offset: i64,
}

impl FacetSchema for KafkaOffsetsInputDatasetFacet {
    const SCHEMA_URL: &'static str = "https://tributary.invalid/spec/facets/1-0-0/TributaryKafkaOffsetsInputDatasetFacet.json#/$defs/TributaryKafkaOffsetsInputDatasetFacet";
}

/// The input facets Tributary sets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputDatasetFacets {
    /// What was read.
    #[serde(rename = "inputStatistics", skip_serializing_if = "Option::is_none")]
    pub input_statistics: Option<Facet<InputStatisticsInputDatasetFacet>>,
    /// The Kafka offsets read.
    #[serde(
        rename = "tributary_kafkaOffsets",
        skip_serializing_if = "Option::is_none"
    )]
    pub kafka_offsets: Option<Facet<KafkaOffsetsInputDatasetFacet>>,
}

impl InputDatasetFacets {
    /// No facet set.
    pub fn is_empty(&self) -> bool {
        self.input_statistics.is_none() && self.kafka_offsets.is_none()
    }
}

/// The output facets Tributary sets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputDatasetFacets {
    /// What was written.
    #[serde(rename = "outputStatistics", skip_serializing_if = "Option::is_none")]
    pub output_statistics: Option<Facet<OutputStatisticsOutputDatasetFacet>>,
}

impl OutputDatasetFacets {
    /// No facet set.
    pub fn is_empty(&self) -> bool {
        self.output_statistics.is_none()
    }
}
