//! The marts job's OpenLineage events (`OPENLINEAGE_*`, off by default; see `lineage/README.md`).
//!
//! - job `tributary-marts.rankings` (batch): one run per marts run that publishes or fails —
//!   START (dated when the run began, sent once the snapshots are pinned), then COMPLETE with
//!   the raw Iceberg tables at the snapshots folded (`version`, `tributary_icebergSnapshot`, the
//!   rows read in `inputStatistics`) and the ClickHouse ranking tables with the rows written and
//!   their column lineage ([`datasets::MartsDatasets`]), or FAIL with the error;
//! - job `tributary-marts` (streaming): the scheduler process, START when it starts, COMPLETE
//!   when it stops; the `parent` of the runs it schedules (`run-once` runs have no parent).
//!
//! An incremental run that finds the lake unchanged since the latest publication emits
//! nothing (like the ERP ingestor's idle polls): it read no rows and wrote none, and a COMPLETE
//! naming the ranking tables would record in Marquez a new version of tables that did not
//! change. `--force` and `--rebuild` runs publish, so they emit.

pub mod datasets;

use std::collections::BTreeMap;

use self::datasets::{MartsDatasets, TableRead};
use chrono::{DateTime, Utc};
use tributary_lineage::{EventType, JobRun, JobSpec, Lineage, Processing};

use crate::config::MartsConfig;
use tributary_rankings::publication::LakeSnapshots;
use tributary_raw::snapshots::RAW_TABLES;

/// The job of one marts run.
pub const RUN_JOB: &str = "tributary-marts.rankings";
/// The job of the scheduler process.
pub const PROCESS_JOB: &str = "tributary-marts";

/// The marts job's lineage: the emitter and where its datasets live.
#[derive(Debug, Clone)]
pub struct MartsLineage {
    lineage: Lineage,
    datasets: MartsDatasets,
}

impl MartsLineage {
    /// From `OPENLINEAGE_*`, naming the datasets after `config`. Call inside a Tokio runtime.
    pub fn from_env(config: &MartsConfig) -> Self {
        Self::new(Lineage::from_env(), Self::datasets(config))
    }

    /// With a given emitter (tests).
    pub fn new(lineage: Lineage, datasets: MartsDatasets) -> Self {
        Self { lineage, datasets }
    }

    /// Emits nothing.
    pub fn disabled() -> Self {
        Self::new(Lineage::disabled(), Self::datasets(&MartsConfig::default()))
    }

    /// The datasets of `config`: the raw tables named by the location the catalog records (a
    /// relative local warehouse made absolute, as the lander does, so both jobs name a table
    /// the same way) and the ClickHouse database.
    pub fn datasets(config: &MartsConfig) -> MartsDatasets {
        MartsDatasets {
            warehouse: std::env::current_dir()
                .ok()
                .and_then(|cwd| tributary_raw::catalog::warehouse(&config.lake, &cwd).ok())
                .map(|w| w.location())
                .unwrap_or_else(|| config.lake.warehouse.clone()),
            lake_namespace: config.lake.namespace.clone(),
            clickhouse_url: config.clickhouse.url.clone(),
            database: config.clickhouse.database.clone(),
        }
    }

    /// The emitter (to register its failure counter, to flush).
    pub fn lineage(&self) -> &Lineage {
        &self.lineage
    }

    /// The scheduler process's run; emits its START.
    pub fn process(&self) -> JobRun {
        let run = self.lineage.run(&JobSpec {
            name: PROCESS_JOB.into(),
            processing: Processing::Streaming,
            job_type: "JOB",
            source_path: "marts/src/main.rs",
            description: "Runs the marts job on a schedule".into(),
        });
        run.start(vec![], vec![]);
        run
    }

    /// A marts run beginning now (nothing is emitted until [`MartsRun::start`] or its end).
    pub fn begin(&self, parent: Option<&JobRun>, now: DateTime<Utc>) -> MartsRun {
        let spec = JobSpec {
            name: RUN_JOB.into(),
            processing: Processing::Batch,
            job_type: "JOB",
            source_path: "marts/src/job.rs",
            description:
                "Ranks cities and salesmen from the raw Iceberg tables into ClickHouse (incremental)"
                    .into(),
        };
        MartsRun {
            run: match parent {
                Some(parent) => parent.child(&spec),
                None => self.lineage.run(&spec),
            },
            datasets: self.datasets.clone(),
            began_at: now,
            started: false,
        }
    }
}

/// One marts run's events.
#[derive(Debug)]
pub struct MartsRun {
    run: JobRun,
    datasets: MartsDatasets,
    began_at: DateTime<Utc>,
    started: bool,
}

/// What a run read: each raw table at its snapshot, with the rows read from it when known.
/// Before the snapshots are pinned, every raw table without a version.
pub fn table_reads(
    snapshots: Option<&LakeSnapshots>,
    rows: &BTreeMap<String, u64>,
) -> Vec<TableRead> {
    match snapshots {
        Some(snapshots) => snapshots
            .0
            .iter()
            .map(|s| TableRead {
                table: s.table.clone(),
                snapshot_id: s.snapshot_id,
                rows: rows.get(&s.table).copied(),
            })
            .collect(),
        None => RAW_TABLES
            .iter()
            .map(|t| TableRead {
                table: t.to_string(),
                snapshot_id: None,
                rows: None,
            })
            .collect(),
    }
}

impl MartsRun {
    /// Names the engine that computes this run (Trino for a rebuild on Trino) in its events.
    pub fn on_engine(&mut self, name: &str, version: &str) {
        self.run.set_engine(name, version);
    }

    /// The run id.
    pub fn run_id(&self) -> uuid::Uuid {
        self.run.run_id()
    }

    /// START, dated when the run began, once (later calls do nothing).
    pub fn start(&mut self, reads: &[TableRead]) {
        if self.started {
            return;
        }
        self.started = true;
        let mut event = self.run.event(
            EventType::Start,
            self.datasets.inputs(reads),
            self.datasets.outputs(&BTreeMap::new()),
            None,
        );
        event.event_time = self.began_at;
        self.run.emit(event);
    }

    /// COMPLETE: the tables at the snapshots folded and the rows written per ranking table.
    pub fn complete(mut self, reads: &[TableRead], rows_written: &BTreeMap<String, u64>) {
        self.start(reads);
        self.run.complete(
            self.datasets.inputs(reads),
            self.datasets.outputs(rows_written),
        );
    }

    /// FAIL with `error` (and its causes) in the `errorMessage` facet.
    pub fn fail(mut self, reads: &[TableRead], error: &(dyn std::error::Error + 'static)) {
        self.start(reads);
        self.run.fail(
            self.datasets.inputs(reads),
            self.datasets.outputs(&BTreeMap::new()),
            error,
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::Value;
    use tokio_util::sync::CancellationToken;
    use tributary_lineage::validate::SchemaSet;
    use tributary_lineage::{LineageConfig, TransportConfig};
    use tributary_raw::schema::RawTable;

    use super::*;
    use crate::state::MemoryState;
    use crate::test_support::{land, land_ana_in_campinas, memory_lake, sale};
    use crate::{MartsJob, RunMode, RunOutcome};
    use tributary_rankings::store::{MemoryStore, RankingQueries};

    fn events_file() -> PathBuf {
        std::env::temp_dir().join(format!("marts-lineage-{}.jsonl", uuid::Uuid::now_v7()))
    }

    /// Lineage into `path` through the real file transport.
    fn lineage_to(path: &Path) -> MartsLineage {
        let lineage = Lineage::from_config(LineageConfig {
            namespace: "tributary".into(),
            transports: vec![TransportConfig::File {
                path: path.to_path_buf(),
            }],
            journal: None,
        })
        .unwrap();
        MartsLineage::new(
            lineage,
            MartsDatasets {
                warehouse: "s3://warehouse".into(),
                lake_namespace: "raw".into(),
                clickhouse_url: "http://127.0.0.1:8123".into(),
                database: "marts".into(),
            },
        )
    }

    /// Every event written, each validated against the vendored OpenLineage schema.
    fn valid_events(path: &Path) -> Vec<Value> {
        let schemas = SchemaSet::load().unwrap();
        let events: Vec<Value> = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for e in &events {
            let errors = schemas.errors(e);
            assert!(errors.is_empty(), "invalid event {e}: {errors:#?}");
        }
        std::fs::remove_file(path).unwrap();
        events
    }

    fn kinds(events: &[Value]) -> Vec<(&str, &str)> {
        events
            .iter()
            .map(|e| {
                (
                    e["eventType"].as_str().unwrap(),
                    e["job"]["name"].as_str().unwrap(),
                )
            })
            .collect()
    }

    fn input<'a>(event: &'a Value, table: &str) -> &'a Value {
        event["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == format!("raw/{table}").as_str())
            .unwrap_or_else(|| panic!("no input {table} in {event}"))
    }

    fn output<'a>(event: &'a Value, table: &str) -> &'a Value {
        event["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == format!("marts.{table}").as_str())
            .unwrap_or_else(|| panic!("no output {table} in {event}"))
    }

    #[tokio::test]
    async fn a_run_emits_start_then_complete_or_fail_and_an_unchanged_lake_nothing() {
        let lake = memory_lake(&RawTable::DATA_TABLES).await;
        let sales = land(
            lake.as_ref(),
            RawTable::PgSale,
            &[
                sale("c", 1, (10, 0), Some(100), Some(7), Some(1000)),
                sale("c", 2, (11, 1), Some(200), Some(7), Some(3000)),
                sale("c", 3, (12, 2), Some(200), Some(8), Some(500)),
            ],
        )
        .await;
        land_ana_in_campinas(lake.as_ref()).await;
        let path = events_file();
        let store = Arc::new(MemoryStore::new());
        let job = MartsJob::new(
            lake.clone(),
            "raw",
            store.clone(),
            Arc::new(MemoryState::new()),
        )
        .with_lineage(lineage_to(&path));

        assert!(matches!(
            job.run_with(RunMode::Incremental).await.unwrap(),
            RunOutcome::Published { .. }
        ));
        assert!(matches!(
            job.run_with(RunMode::Incremental).await.unwrap(),
            RunOutcome::Unchanged { .. }
        ));
        assert!(matches!(
            job.run_with(RunMode::Force).await.unwrap(),
            RunOutcome::Published { .. }
        ));
        assert!(matches!(
            job.run_with(RunMode::Rebuild).await.unwrap(),
            RunOutcome::Published { .. }
        ));
        store.set_unavailable(true);
        let error = job.run_with(RunMode::Incremental).await.unwrap_err();

        let events = valid_events(&path);
        let run = RUN_JOB;
        // The unchanged run is silent; the others START and end, one run id each.
        assert_eq!(
            kinds(&events),
            [
                ("START", run),
                ("COMPLETE", run),
                ("START", run),
                ("COMPLETE", run),
                ("START", run),
                ("COMPLETE", run),
                ("START", run),
                ("FAIL", run)
            ]
        );
        for pair in events.chunks(2) {
            assert_eq!(pair[0]["run"]["runId"], pair[1]["run"]["runId"]);
            assert!(pair[0]["eventTime"].as_str() <= pair[1]["eventTime"].as_str());
            assert!(pair[0]["run"]["facets"]["parent"].is_null());
            assert_eq!(
                pair[0]["run"]["facets"]["processing_engine"]["name"],
                "tributary"
            );
            assert_eq!(
                pair[0]["job"]["facets"]["sourceCodeLocation"]["path"],
                "marts/src/job.rs"
            );
        }

        // The first run read pg_sale at its snapshot, all three rows, and wrote the rankings.
        let first = &events[1];
        let pg_sale = input(first, "pg_sale");
        assert_eq!(pg_sale["namespace"], "s3://warehouse");
        assert_eq!(
            pg_sale["facets"]["version"]["datasetVersion"],
            sales.to_string().as_str()
        );
        assert_eq!(
            pg_sale["facets"]["tributary_icebergSnapshot"]["snapshotId"],
            sales
        );
        assert_eq!(pg_sale["inputFacets"]["inputStatistics"]["rowCount"], 3);
        // file_sale has no snapshot: read, empty, no version.
        assert!(input(first, "file_sale")["facets"]["version"].is_null());
        let salesmen = output(first, "salesman_ranking");
        assert_eq!(salesmen["namespace"], "clickhouse://127.0.0.1:8123");
        assert_eq!(salesmen["outputFacets"]["outputStatistics"]["rowCount"], 2);
        assert_eq!(
            output(first, "city_ranking")["outputFacets"]["outputStatistics"]["rowCount"],
            2
        );
        let fields = &salesmen["facets"]["columnLineage"]["fields"];
        assert_eq!(fields["revenue"]["inputFields"][0]["field"], "amount");
        assert!(fields["sales"].is_object() && fields["rank"].is_object());
        // START names the same snapshots, without statistics.
        assert_eq!(
            input(&events[0], "pg_sale")["facets"]["version"],
            pg_sale["facets"]["version"]
        );
        assert!(
            output(&events[0], "salesman_ranking")["outputFacets"]["outputStatistics"]["rowCount"]
                .is_null()
        );

        // --force publishes the same snapshots again, reading nothing new; --rebuild rereads all.
        assert_eq!(
            input(&events[3], "pg_sale")["inputFacets"]["inputStatistics"]["rowCount"],
            0
        );
        assert_eq!(
            input(&events[5], "pg_sale")["inputFacets"]["inputStatistics"]["rowCount"],
            3
        );

        // ClickHouse unreachable: FAIL with the error. The schema was made sure of by the first
        // run, so this one fails at its first ClickHouse read, after finding the lake's snapshots
        // (unchanged since): FAIL names them.
        let fail = &events[7];
        assert_eq!(
            fail["run"]["facets"]["errorMessage"]["message"],
            error.to_string().as_str()
        );
        assert_eq!(
            fail["run"]["facets"]["errorMessage"]["programmingLanguage"],
            "RUST"
        );
        assert_eq!(
            input(fail, "pg_sale")["facets"]["version"],
            pg_sale["facets"]["version"]
        );
    }

    #[tokio::test]
    async fn the_scheduler_is_the_parent_of_its_runs() {
        let lake = memory_lake(&RawTable::DATA_TABLES).await;
        let path = events_file();
        let store = Arc::new(MemoryStore::new());
        let job = MartsJob::new(lake, "raw", store.clone(), Arc::new(MemoryState::new()))
            .with_lineage(lineage_to(&path));
        let shutdown = CancellationToken::new();
        let stopper = shutdown.clone();
        let scheduler = tokio::spawn(async move {
            job.run_scheduled(Duration::from_millis(10), stopper).await;
        });
        for _ in 0..500 {
            if store.latest_publication().await.unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Let the first run's COMPLETE out before stopping (later runs are unchanged: silent).
        for _ in 0..500 {
            let written = std::fs::read_to_string(&path).unwrap_or_default();
            if written.contains("\"COMPLETE\"") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.cancel();
        scheduler.await.unwrap();

        let events = valid_events(&path);
        assert_eq!(
            kinds(&events),
            [
                ("START", PROCESS_JOB),
                ("START", RUN_JOB),
                ("COMPLETE", RUN_JOB),
                ("COMPLETE", PROCESS_JOB)
            ]
        );
        let process = &events[0];
        assert_eq!(
            process["job"]["facets"]["jobType"]["processingType"],
            "STREAMING"
        );
        assert_eq!(events[3]["run"]["runId"], process["run"]["runId"]);
        for child in &events[1..3] {
            let parent = &child["run"]["facets"]["parent"];
            assert_eq!(parent["run"]["runId"], process["run"]["runId"]);
            assert_eq!(parent["job"]["name"], PROCESS_JOB);
            assert_eq!(child["job"]["facets"]["jobType"]["processingType"], "BATCH");
        }
    }
}
