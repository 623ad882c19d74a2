//! The lineage index on hand-written and emitter-built events: parsing, folding, graph and
//! column-lineage reads, checkpoints, retention, crash tallies.

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
