//! The ERP ingestor's OpenLineage events (`OPENLINEAGE_*`, off by default; see
//! `lineage/README.md`): one run per page published (a poll batch), job
//! `tributary-ingest.erp.<origin>` (parent: the ingestor's process run, job
//! `tributary-ingest.erp`). Input: the ERP's SOAP endpoint (namespace `http://host:port`, name
//! the service path); outputs: the sales and dead-letter topics with the records each received.
//! An idle poll (nothing new) emits nothing; a failed poll is a FAIL with the error.

use chrono::{DateTime, Utc};
use tributary_lineage::facets::{
    ErrorMessageRunFacet, InputStatisticsInputDatasetFacet, OutputStatisticsOutputDatasetFacet,
};
use tributary_lineage::{EventType, JobRun, JobSpec, Lineage, Processing, naming};

use super::ingestor::{ErpIngestError, PollOutcome};

/// The ERP ingestor's lineage.
#[derive(Debug, Clone)]
pub struct ErpLineage {
    lineage: Lineage,
    process: JobRun,
    endpoint: String,
    origin: String,
    brokers: String,
    sales_topic: String,
    dead_letters_topic: String,
}

impl ErpLineage {
    /// From `OPENLINEAGE_*`; emits the process run's START.
    pub fn from_env(
        endpoint: &str,
        origin: &str,
        brokers: &str,
        sales: &str,
        dead_letters: &str,
    ) -> Self {
        let lineage = Lineage::from_env();
        let process = lineage.run(&JobSpec {
            name: "tributary-ingest.erp".into(),
            processing: Processing::Streaming,
            job_type: "JOB",
            source_path: "ingest/src/erp/ingestor.rs",
            description: "Polls the legacy ERP (SOAP, WS-Security) by cursor and publishes its sale changes to Kafka, exactly once".into(),
        });
        process.start(vec![], vec![]);
        Self {
            lineage,
            process,
            endpoint: endpoint.to_string(),
            origin: origin.to_string(),
            brokers: brokers.to_string(),
            sales_topic: sales.to_string(),
            dead_letters_topic: dead_letters.to_string(),
        }
    }

    /// The emitter (to register its failure counter).
    pub fn lineage(&self) -> &Lineage {
        &self.lineage
    }

    /// START and end of one poll's run, after the fact (only a poll that published something or
    /// failed is a run worth recording).
    pub fn poll(&self, started_at: DateTime<Utc>, result: &Result<PollOutcome, ErpIngestError>) {
        if let Ok(outcome) = result
            && outcome.upserts + outcome.cancels + outcome.rejected == 0
        {
            return;
        }
        let run = self.process.child(&JobSpec {
            name: format!("tributary-ingest.erp.{}", self.origin),
            processing: Processing::Batch,
            job_type: "TASK",
            source_path: "ingest/src/erp/ingestor.rs",
            description: format!("One page of ERP {:?} changes into Kafka", self.origin),
        });
        let erp = naming::location(&self.endpoint);
        let mut start = run.event(EventType::Start, vec![erp.clone().input()], vec![], None);
        start.event_time = started_at;
        run.emit(start);
        let out = |topic: &str, rows: u64| {
            naming::kafka_topic(&self.brokers, topic).output_with_stats(
                OutputStatisticsOutputDatasetFacet {
                    row_count: Some(rows),
                    size: None,
                    file_count: None,
                },
            )
        };
        match result {
            Ok(outcome) => run.complete(
                vec![erp.input_with_stats(InputStatisticsInputDatasetFacet {
                    row_count: Some(outcome.upserts + outcome.cancels + outcome.rejected),
                    size: None,
                    file_count: None,
                })],
                vec![
                    out(&self.sales_topic, outcome.upserts + outcome.cancels),
                    out(&self.dead_letters_topic, outcome.rejected),
                ],
            ),
            Err(error) => run.fail(
                vec![erp.input()],
                vec![out(&self.sales_topic, 0), out(&self.dead_letters_topic, 0)],
                error,
            ),
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
