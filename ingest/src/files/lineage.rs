//! The file ingestor's OpenLineage events (`OPENLINEAGE_*`, off by default; see
//! `lineage/README.md`): one run per file taken from the inbox, job
//! `tributary-ingest.files.<partner folder>` (parent: the ingestor's process run, job
//! `tributary-ingest.files`). Input: the file (`s3://bucket` + key, or `file` + path); outputs:
//! the sales topic and the dead-letter topic, with the records each received. A quarantined file
//! or a file that could not be finished is a FAIL with the reason; an interrupted one an ABORT.
//! Files already finished (skipped by the plan) emit nothing.

use chrono::{DateTime, Utc};
use tributary_lineage::facets::{
    ErrorMessageRunFacet, InputStatisticsInputDatasetFacet, OutputStatisticsOutputDatasetFacet,
};
use tributary_lineage::{EventType, JobRun, JobSpec, Lineage, Processing, naming};

use super::progress::Listed;

/// How a file's run ended, as far as lineage cares.
#[derive(Debug)]
pub enum FileOutcome<'a> {
    /// Nothing was done (already finished before): no event.
    Skipped,
    /// Published (or recognised as a duplicate: zero records).
    Done,
    /// Quarantined, with the reason.
    Quarantined(String),
    /// Shutdown stopped it; it resumes later.
    Interrupted,
    /// It failed.
    Failed(&'a (dyn std::error::Error + 'static)),
}

/// The ingestor's lineage.
#[derive(Debug, Clone)]
pub struct FilesLineage {
    lineage: Lineage,
    process: JobRun,
    inbox_url: String,
    brokers: String,
    sales_topic: String,
    dead_letters_topic: String,
}

impl FilesLineage {
    /// From `OPENLINEAGE_*`; emits the process run's START.
    pub fn from_env(inbox_url: &str, brokers: &str, sales: &str, dead_letters: &str) -> Self {
        let lineage = Lineage::from_env();
        let process = lineage.run(&JobSpec {
            name: "tributary-ingest.files".into(),
            processing: Processing::Streaming,
            job_type: "JOB",
            source_path: "ingest/src/files/mod.rs",
            description:
                "Publishes partner files (CSV, JSON, NDJSON) from the inbox to Kafka, exactly once"
                    .into(),
        });
        process.start(vec![], vec![]);
        Self {
            lineage,
            process,
            inbox_url: inbox_url.to_string(),
            brokers: brokers.to_string(),
            sales_topic: sales.to_string(),
            dead_letters_topic: dead_letters.to_string(),
        }
    }

    /// The emitter (to register its failure counter).
    pub fn lineage(&self) -> &Lineage {
        &self.lineage
    }

    /// Emits START and the end of one file's run (after the fact: whether a listed file is
    /// worked on at all is known only once it was looked at).
    pub fn file(
        &self,
        listed: &Listed,
        started_at: DateTime<Utc>,
        outcome: FileOutcome<'_>,
        published: u64,
        rejected: u64,
    ) {
        if matches!(outcome, FileOutcome::Skipped) {
            return;
        }
        let folder = listed.path.split('/').next().unwrap_or_default();
        let run = self.process.child(&JobSpec {
            name: format!("tributary-ingest.files.{folder}"),
            processing: Processing::Batch,
            job_type: "TASK",
            source_path: "ingest/src/files/mod.rs",
            description: format!("Files of partner folder {folder:?} into Kafka"),
        });
        let file = naming::location(&format!(
            "{}/{}",
            self.inbox_url.trim_end_matches('/'),
            listed.path
        ));
        let mut start = run.event(EventType::Start, vec![file.clone().input()], vec![], None);
        start.event_time = started_at;
        run.emit(start);
        let input = file.input_with_stats(InputStatisticsInputDatasetFacet {
            row_count: Some(published + rejected),
            size: Some(listed.size),
            file_count: Some(1),
        });
        let out = |topic: &str, rows: u64| {
            naming::kafka_topic(&self.brokers, topic).output_with_stats(
                OutputStatisticsOutputDatasetFacet {
                    row_count: Some(rows),
                    size: None,
                    file_count: None,
                },
            )
        };
        let quarantine_rows = u64::from(matches!(outcome, FileOutcome::Quarantined(_)));
        let outputs = vec![
            out(&self.sales_topic, published),
            out(&self.dead_letters_topic, rejected + quarantine_rows),
        ];
        match outcome {
            FileOutcome::Skipped => {}
            FileOutcome::Done => run.complete(vec![input], outputs),
            FileOutcome::Interrupted => run.abort(vec![input], outputs),
            FileOutcome::Quarantined(reason) => run.fail_with(
                vec![input],
                outputs,
                ErrorMessageRunFacet::from_message(format!("file quarantined: {reason}")),
            ),
            FileOutcome::Failed(error) => run.fail(vec![input], outputs, error),
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
