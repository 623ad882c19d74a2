//! The lander's OpenLineage events (`OPENLINEAGE_*`, off by default; see `lineage/README.md`).
//!
//! - job `tributary-lake` (streaming): one run per process, START at open, COMPLETE at a clean
//!   stop, FAIL when the lander fails;
//! - job `tributary-lake.<namespace>.<table>` (batch task, `parent` = the process run): one run
//!   per Iceberg commit — inputs are the Kafka topics routed to the table with the offsets the
//!   commit covers (`tributary_kafkaOffsets`) and the records read (`inputStatistics`); the
//!   output is the Iceberg table (named by its location) with the new snapshot id (`version`,
//!   `tributary_icebergSnapshot`), its schema and the rows and files added (`outputStatistics`).

use std::collections::BTreeMap;

use tributary_lineage::facets::{
    DatasetVersionDatasetFacet, ErrorMessageRunFacet, Facet, IcebergSnapshotDatasetFacet,
    InputStatisticsInputDatasetFacet, KafkaOffsetsInputDatasetFacet,
    OutputStatisticsOutputDatasetFacet, PartitionOffsets, SchemaDatasetFacet, SchemaField,
};
use tributary_lineage::{
    InputDataset, JobRun, JobSpec, Lineage, OutputDataset, Processing, naming,
};

use crate::config::LanderConfig;
use crate::sink::CommitReport;
use tributary_raw::offsets::OffsetMap;
use tributary_raw::schema::RawTable;

/// The lander's lineage: the process run and the naming of its datasets.
#[derive(Debug, Clone)]
pub struct LakeLineage {
    lineage: Lineage,
    process: JobRun,
    brokers: String,
    warehouse: String,
    namespace: String,
}

/// One maintenance run, between [`LakeLineage::maintenance_started`] and its end.
#[derive(Debug)]
pub struct MaintenanceRun {
    run: JobRun,
    input: InputDataset,
    table: RawTable,
}

/// One commit's run, between [`LakeLineage::commit_started`] and its end.
#[derive(Debug)]
pub struct CommitRun {
    run: JobRun,
    inputs: Vec<InputDataset>,
    table: RawTable,
}

impl LakeLineage {
    /// From `OPENLINEAGE_*`; emits the process run's START.
    pub fn from_env(config: &LanderConfig) -> Self {
        Self::new(Lineage::from_env(), config)
    }

    /// With a given emitter (tests); emits the process run's START.
    pub fn new(lineage: Lineage, config: &LanderConfig) -> Self {
        let process = lineage.run(&JobSpec {
            name: "tributary-lake".into(),
            processing: Processing::Streaming,
            job_type: "JOB",
            source_path: "lake/src/lander.rs",
            description: "Lands the Kafka topics (Debezium, files, ERP) into the raw Iceberg tables, exactly once".into(),
        });
        process.start(vec![], vec![]);
        Self {
            lineage,
            process,
            brokers: config.kafka.brokers.clone(),
            // The location the catalog records (a relative local folder made absolute), so the
            // dataset name is where the table really is.
            warehouse: std::env::current_dir()
                .ok()
                .and_then(|cwd| tributary_raw::catalog::warehouse(&config.lake, &cwd).ok())
                .map(|w| w.location())
                .unwrap_or_else(|| config.lake.warehouse.clone()),
            namespace: config.lake.namespace.clone(),
        }
    }

    /// The emitter (to register its failure counter).
    pub fn lineage(&self) -> &Lineage {
        &self.lineage
    }

    /// The Iceberg table as a dataset: named by its location, with its schema.
    pub fn table_dataset(&self, table: RawTable) -> tributary_lineage::Dataset {
        naming::iceberg_table(&self.warehouse, &self.namespace, table.name()).with_schema(
            SchemaDatasetFacet {
                fields: table
                    .iceberg_schema()
                    .as_struct()
                    .fields()
                    .iter()
                    .map(|f| SchemaField {
                        name: f.name.clone(),
                        data_type: Some(f.field_type.to_string()),
                        description: f.doc.clone(),
                    })
                    .collect(),
            },
        )
    }

    /// START of the run of one commit to `table`, reading `[committed, moved)` of each
    /// partition in `moved` (`records`: how many records it lands).
    pub fn commit_started(
        &self,
        table: RawTable,
        committed: &OffsetMap,
        moved: &OffsetMap,
        records: u64,
    ) -> CommitRun {
        let run = self.process.child(&JobSpec {
            name: format!("tributary-lake.{}.{}", self.namespace, table.name()),
            processing: Processing::Batch,
            job_type: "TASK",
            source_path: "lake/src/sink.rs",
            description: format!("One Iceberg commit to {}.{}", self.namespace, table.name()),
        });
        let mut by_topic: BTreeMap<&str, Vec<PartitionOffsets>> = BTreeMap::new();
        for (tp, end) in moved.iter() {
            let start = committed.get(tp).unwrap_or(0).min(end);
            by_topic
                .entry(&tp.topic)
                .or_default()
                .push(PartitionOffsets {
                    partition: tp.partition,
                    start_offset: start,
                    end_offset: end,
                });
        }
        let topics = by_topic.len() as u64;
        let inputs: Vec<InputDataset> = by_topic
            .into_iter()
            .map(|(topic, partitions)| {
                let mut input = naming::kafka_topic(&self.brokers, topic).input_with_stats(
                    InputStatisticsInputDatasetFacet {
                        // Per topic when the commit reads one; spread otherwise (a flush does
                        // not keep per-topic counts).
                        row_count: (topics == 1).then_some(records),
                        size: None,
                        file_count: None,
                    },
                );
                input.input_facets.kafka_offsets =
                    Some(Facet::new(KafkaOffsetsInputDatasetFacet {
                        topic: topic.to_string(),
                        partitions,
                    }));
                input
            })
            .collect();
        run.start(inputs.clone(), vec![self.table_dataset(table).output()]);
        CommitRun { run, inputs, table }
    }

    /// COMPLETE of a commit's run: the snapshot it made.
    pub fn commit_done(&self, commit: CommitRun, report: &CommitReport, parent: Option<i64>) {
        let mut dataset = self.table_dataset(commit.table);
        dataset.facets.version = Some(Facet::new(DatasetVersionDatasetFacet {
            dataset_version: report.snapshot_id.to_string(),
        }));
        dataset.facets.iceberg_snapshot = Some(Facet::new(IcebergSnapshotDatasetFacet {
            table: format!("{}.{}", self.namespace, commit.table.name()),
            snapshot_id: report.snapshot_id,
            parent_snapshot_id: parent,
            added_records: Some(report.rows as u64),
            added_data_files: Some(report.files as u64),
        }));
        let output: OutputDataset = dataset.output_with_stats(OutputStatisticsOutputDatasetFacet {
            row_count: Some(report.rows as u64),
            size: None,
            file_count: Some(report.files as u64),
        });
        commit.run.complete(commit.inputs, vec![output]);
    }

    /// FAIL of a commit's run.
    pub fn commit_failed(&self, commit: CommitRun, error: &(dyn std::error::Error + 'static)) {
        let output = self.table_dataset(commit.table).output();
        commit.run.fail(commit.inputs, vec![output], error);
    }

    /// START of one maintenance run on `table` (job `tributary-lake.<namespace>.<table>.maintenance`,
    /// a task of the process run): it reads and writes the table.
    pub fn maintenance_started(&self, table: RawTable) -> MaintenanceRun {
        let run = self.process.child(&JobSpec {
            name: format!(
                "tributary-lake.{}.{}.maintenance",
                self.namespace,
                table.name()
            ),
            processing: Processing::Batch,
            job_type: "TASK",
            source_path: "lake/src/maintenance/mod.rs",
            description: format!(
                "Lake maintenance of {}.{}: compaction, manifest merging, snapshot expiry, file sweep",
                self.namespace,
                table.name()
            ),
        });
        let input = self.table_dataset(table).input();
        run.start(
            vec![input.clone()],
            vec![self.table_dataset(table).output()],
        );
        MaintenanceRun { run, input, table }
    }

    /// COMPLETE of a maintenance run: the `replace` snapshot it made, if any, and the files it
    /// wrote; or FAIL.
    pub fn maintenance_done(
        &self,
        maintenance: MaintenanceRun,
        result: Result<&crate::maintenance::MaintenanceReport, &crate::LakeError>,
    ) {
        let mut dataset = self.table_dataset(maintenance.table);
        match result {
            Ok(report) => {
                if let Some(snapshot_id) = report.replace_snapshot_id {
                    dataset.facets.version = Some(Facet::new(DatasetVersionDatasetFacet {
                        dataset_version: snapshot_id.to_string(),
                    }));
                }
                let output = dataset.output_with_stats(OutputStatisticsOutputDatasetFacet {
                    row_count: Some(report.rows_rewritten),
                    size: None,
                    file_count: Some(report.files_written as u64),
                });
                maintenance
                    .run
                    .complete(vec![maintenance.input], vec![output]);
            }
            Err(error) => {
                maintenance
                    .run
                    .fail(vec![maintenance.input], vec![dataset.output()], error)
            }
        }
    }

    /// End of the process run: COMPLETE, or FAIL with `error`; then waits for the events to
    /// leave (bounded).
    pub async fn stopped(&self, error: Option<ErrorMessageRunFacet>) {
        match error {
            None => self.process.complete(vec![], vec![]),
            Some(error) => self.process.fail_with(vec![], vec![], error),
        }
        self.lineage.flush().await;
    }
}
