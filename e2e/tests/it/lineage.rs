//! OpenLineage end to end on the real services: the lander, the file ingestor and the ERP
//! ingestor run with the file transport (`OPENLINEAGE__TRANSPORT__TYPE=file`), a small workload
//! goes through them (partner files on the S3 inbox, the ERP simulator's changes, the Debezium
//! topics of the run's own source database), and the events they wrote must
//!
//! - each validate against the vendored official OpenLineage schema (every facet against its own
//!   schema too);
//! - join into one graph: partner file → file ingestor → Kafka topic → lander → Iceberg table,
//!   ERP endpoint → ERP ingestor → Kafka topic → lander → Iceberg table, Debezium topic → lander →
//!   Iceberg table, with every Kafka topic our jobs read named exactly as the job that wrote it
//!   named it (no dangling names) — except Debezium's topics, whose producer events come from
//!   Debezium's OpenLineage integration (off for a run's own connector; the demo connector's are
//!   checked by `debezium_lineage_starts_the_graph_at_the_postgres_tables`; lineage/README.md);
//! - carry the Kafka offsets each commit covers and the Iceberg snapshot it made, and that
//!   snapshot must exist in the catalog;
//! - and a failing run (a file the ingestor must quarantine) is a FAIL with an error message.
//!
//! Marquez is not part of this test: `io.github.marquezproject:marquez-api` is not served by
//! the Maven registry reachable here (see lineage/README.md). The same graph read back from the
//! API's Marquez-compatible store (`/api/v1/lineage`, `/api/v1/column-lineage`), and drawn by
//! its `/lineage` page, is checked in `lineage_store.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use tributary_e2e::{
    Service, TestPipeline, dataset_key, eventually, lineage_events, repo_root, require_stack,
};
use tributary_ingest::files::inbox::Inbox;
use tributary_lineage::validate::SchemaSet;

/// A dataset → job → dataset graph from the COMPLETE events.
#[derive(Default, Debug)]
struct Graph {
    /// (job, input dataset)
    reads: BTreeSet<(String, (String, String))>,
    /// (job, output dataset)
    writes: BTreeSet<(String, (String, String))>,
}

impl Graph {
    fn from(events: &[Value]) -> Self {
        let mut g = Graph::default();
        for e in events.iter().filter(|e| e["eventType"] == "COMPLETE") {
            let job = e["job"]["name"].as_str().unwrap_or_default().to_string();
            for d in e["inputs"].as_array().into_iter().flatten() {
                g.reads.insert((job.clone(), dataset_key(d)));
            }
            for d in e["outputs"].as_array().into_iter().flatten() {
                g.writes.insert((job.clone(), dataset_key(d)));
            }
        }
        g
    }

    fn written_by(&self, job: &str, ds: &(String, String)) -> bool {
        self.writes.contains(&(job.to_string(), ds.clone()))
    }

    fn read_by(&self, job: &str, ds: &(String, String)) -> bool {
        self.reads.contains(&(job.to_string(), ds.clone()))
    }

    /// A path `from` → some job → `via` → `lander` → `to`.
    fn path(
        &self,
        from: &(String, String),
        via: &(String, String),
        lander: &str,
        to: &(String, String),
    ) -> bool {
        self.reads
            .iter()
            .any(|(job, d)| d == from && self.written_by(job, via))
            && self.read_by(lander, via)
            && self.written_by(lander, to)
    }
}

fn kafka(topic: &str) -> (String, String) {
    ("kafka://127.0.0.1:9092".into(), topic.into())
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_emit_valid_openlineage_that_joins_into_one_graph() -> Result<()> {
    require_stack();
    let run = TestPipeline::with_source().await?;
    let ns = run.namespace();
    let events_path = repo_root().join(format!(".stack/e2e/lineage-{}.jsonl", run.suffix));
    let openlineage: BTreeMap<String, String> = [
        ("OPENLINEAGE__TRANSPORT__TYPE", "file".to_string()),
        (
            "OPENLINEAGE__TRANSPORT__LOG_FILE_PATH",
            events_path.display().to_string(),
        ),
        ("OPENLINEAGE_NAMESPACE", ns.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let with_lineage = |mut env: BTreeMap<String, String>| {
        env.extend(openlineage.clone());
        env
    };

    let mut sim = run.start_sim("lineage-erp-sim", 7, 30).await?;
    let mut lake = Service::start(
        "lineage-lake",
        "tributary-lake",
        &[],
        &with_lineage(run.lake_env()),
    );
    let mut files = Service::start(
        "lineage-files",
        "tributary-ingest",
        &["files"],
        &with_lineage(run.files_env()),
    );
    let mut erp = Service::start(
        "lineage-erp",
        "tributary-ingest",
        &["erp"],
        &with_lineage(run.erp_env()),
    );

    let inbox = Inbox::open(&run.inbox(), &Default::default())?;
    inbox
        .put_bytes(
            "acme/lineage.csv",
            b"pedido;vendedor;cidade;uf;valor;data\nL-1;S001;Campinas;SP;10,00;15/03/2026 10:00\nL-2;S002;Campinas;SP;20,50;16/03/2026 10:00\n"
                .to_vec(),
        )
        .await?;
    // Not a format the ingestor reads: quarantined, so its run must FAIL with the reason.
    inbox
        .put_bytes("acme/notes.txt", b"call the partner".to_vec())
        .await?;

    let file_topic = kafka(&run.topic("files.sales"));
    let erp_topic = kafka(&run.topic("erp.sales"));
    let debezium_topic = kafka(&run.source().topic("sale"));
    let table = |name: &str| ("s3://warehouse".to_string(), format!("{ns}/{name}"));
    let lander = |name: &str| format!("tributary-lake.{ns}.{name}");
    let csv = (
        "s3://inbox".to_string(),
        format!("e2e-{}/acme/lineage.csv", run.suffix),
    );
    let erp_endpoint = (run.erp(), "ws/sales".to_string());

    // Wait for the whole graph: each source has reached its Iceberg table, and the bad file failed.
    let events = eventually(Duration::from_secs(120), || {
        for s in [&mut sim, &mut lake, &mut files, &mut erp] {
            s.assert_running();
        }
        let (path, file_topic, erp_topic, debezium_topic) =
            (&events_path, &file_topic, &erp_topic, &debezium_topic);
        let (csv, erp_endpoint, table, lander) = (&csv, &erp_endpoint, &table, &lander);
        async move {
            let events = lineage_events(path);
            let g = Graph::from(&events);
            let failed = events.iter().any(|e| {
                e["eventType"] == "FAIL" && e["job"]["name"] == "tributary-ingest.files.acme"
            });
            let done = g.path(csv, file_topic, &lander("file_sale"), &table("file_sale"))
                && g.path(
                    erp_endpoint,
                    erp_topic,
                    &lander("erp_sale"),
                    &table("erp_sale"),
                )
                && g.read_by(&lander("pg_sale"), debezium_topic)
                && g.written_by(&lander("pg_sale"), &table("pg_sale"))
                && failed;
            Ok(done.then_some(events))
        }
    })
    .await
    .with_context(|| {
        format!(
            "the lineage graph did not complete; events in {}, logs in .stack/e2e/lineage-*.log",
            events_path.display()
        )
    })?;
    // A clean stop closes the runs a service has open: read the events after it, or a task run
    // in flight when the graph completed shows only its START (it failed CI so once).
    for s in [&mut lake, &mut files, &mut erp] {
        s.stop();
    }
    let settled = lineage_events(&events_path);
    ensure!(
        settled.len() >= events.len(),
        "events disappeared from {}",
        events_path.display()
    );
    let events = settled;

    // 1. Every event is valid against the official schema (and each facet against its own).
    let schemas = SchemaSet::load().map_err(anyhow::Error::msg)?;
    for e in &events {
        let errors = schemas.errors(e);
        ensure!(errors.is_empty(), "invalid event {e}: {errors:#?}");
        ensure!(e["job"]["namespace"] == ns.as_str(), "job namespace: {e}");
    }

    // 2. Runs: a child run's START and its end share the run id; ends come after starts.
    let mut by_run: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for e in &events {
        by_run
            .entry(e["run"]["runId"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(e);
    }
    for (id, run_events) in &by_run {
        let kinds: Vec<&str> = run_events
            .iter()
            .map(|e| e["eventType"].as_str().unwrap_or_default())
            .collect();
        ensure!(
            kinds.first() == Some(&"START"),
            "run {id} does not begin with START: {kinds:?}"
        );
        if run_events[0]["run"]["facets"]["parent"].is_object() {
            ensure!(
                kinds.len() == 2 && ["COMPLETE", "FAIL", "ABORT"].contains(&kinds[1]),
                "task run {id}: {kinds:?}"
            );
            let parent = run_events[0]["run"]["facets"]["parent"]["run"]["runId"]
                .as_str()
                .unwrap_or_default();
            ensure!(
                by_run.contains_key(parent),
                "run {id}: parent {parent} never started"
            );
        }
    }

    // 3. No dangling names: every Kafka topic a lander run read is one a job of ours wrote,
    //    except Debezium's own topics (their producer is Debezium's OpenLineage integration).
    let g = Graph::from(&events);
    let written: BTreeSet<&(String, String)> = g.writes.iter().map(|(_, d)| d).collect();
    let dangling: BTreeSet<&str> = g
        .reads
        .iter()
        .filter(|(job, d)| job.starts_with("tributary-lake.") && !written.contains(d))
        .map(|(_, d)| d.1.as_str())
        .collect();
    let debezium_topics = format!("{}.public.", run.source().prefix());
    ensure!(
        dangling.iter().all(|t| t.starts_with(&debezium_topics)),
        "topics read by the lander that no job wrote: {dangling:?}"
    );
    for (job, d) in &g.writes {
        if job.starts_with("tributary-lake.") {
            ensure!(
                d.0 == "s3://warehouse" && d.1.starts_with(&format!("{ns}/")),
                "lander output not named by its table location: {d:?}"
            );
        }
    }

    // 4. Each lander commit names the offsets it covers and the snapshot it made, which exists.
    let catalog = tributary_raw::catalog::open(&tributary_common::LakeSettings {
        warehouse: "s3://warehouse".into(),
        namespace: ns.clone(),
        ..Default::default()
    })
    .await?;
    let mut checked = 0;
    for e in events.iter().filter(|e| {
        e["eventType"] == "COMPLETE" && e["job"]["name"] == lander("file_sale").as_str()
    }) {
        let input = &e["inputs"][0];
        ensure!(input["name"] == file_topic.1.as_str(), "{e}");
        let parts = input["inputFacets"]["tributary_kafkaOffsets"]["partitions"]
            .as_array()
            .context("kafka offsets facet")?;
        ensure!(
            parts
                .iter()
                .any(|p| p["endOffset"].as_i64() > p["startOffset"].as_i64()),
            "a commit that covers no offset: {e}"
        );
        let snapshot = e["outputs"][0]["facets"]["tributary_icebergSnapshot"]["snapshotId"]
            .as_i64()
            .context("iceberg snapshot facet")?;
        ensure!(
            e["outputs"][0]["facets"]["version"]["datasetVersion"] == snapshot.to_string().as_str(),
            "version facet = snapshot id: {e}"
        );
        let table =
            tributary_raw::catalog::load_table(&catalog, &ns, tributary_raw::RawTable::FileSale)
                .await?;
        ensure!(
            table.metadata().snapshot_by_id(snapshot).is_some(),
            "snapshot {snapshot} named by the lineage is not in the table"
        );
        checked += 1;
    }
    ensure!(checked > 0, "no commit of file_sale was checked");

    // 5. The quarantined file's run failed, saying why.
    let fail = events
        .iter()
        .find(|e| e["eventType"] == "FAIL" && e["job"]["name"] == "tributary-ingest.files.acme")
        .context("FAIL event")?;
    let message = fail["run"]["facets"]["errorMessage"]["message"]
        .as_str()
        .unwrap_or_default();
    if !(message.contains("quarantined") && message.contains("unknown file type")) {
        bail!("FAIL without the reason: {fail}");
    }
    ensure!(
        fail["inputs"][0]["name"]
            .as_str()
            .unwrap_or_default()
            .ends_with("acme/notes.txt"),
        "FAIL names the file: {fail}"
    );

    for s in [&mut sim, &mut lake, &mut files, &mut erp] {
        s.assert_running();
    }
    // The events stay in .stack/e2e/ (beside the services' logs) for a reader to inspect.
    eprintln!("{} events checked: {}", events.len(), events_path.display());
    drop((sim, lake, files, erp));
    run.finish().await
}

/// Debezium's own OpenLineage integration (switched on in `ingest/debezium/salesdb-connector.json`,
/// its `openlineage.yml` written by `dev/up connect`; lineage/README.md, "Debezium's own
/// OpenLineage") appends to the same file as our jobs, `.stack/lineage/events.jsonl`. After a
/// change to a sale, that file holds Debezium's events for the job `tributary` / `salesdb.0`: each
/// valid against the vendored schema, reading the three Postgres tables and writing the topic
/// `salesdb.public.sale` — named exactly as `tributary_lineage::naming` names them, so the topics
/// the demo's lander reads (the only dangling inputs of a lander's graph, see
/// `jobs_emit_valid_openlineage_that_joins_into_one_graph`) have Debezium upstream and the graph
/// starts at the Postgres tables.
///
/// `DEBEZIUM_TOPIC_PREFIX` and `DEBEZIUM_LINEAGE_FILE` point it at another connector (a test
/// worker with its own `topic.prefix` and events file; defaults `salesdb` and the file above).
///
/// Only events newer than the test's start count: it restarts the connector's task
/// (`<prefix>-connector` on `DEBEZIUM_CONNECT_URL`, default the local worker), which makes
/// Debezium report its job afresh.
///
/// This test keeps the demo's shared source (`salesdb`, `salesdb-connector`, `salesdb.public.*`):
/// its subject is that connector's own OpenLineage job. It reads no topic and compares no
/// state; its only writes are no-op updates of one `salesdb` sale.
#[tokio::test(flavor = "multi_thread")]
async fn debezium_lineage_starts_the_graph_at_the_postgres_tables() -> Result<()> {
    use tributary_lineage::naming;
    require_stack();
    let prefix = std::env::var("DEBEZIUM_TOPIC_PREFIX").unwrap_or_else(|_| "salesdb".into());
    let path = std::env::var_os("DEBEZIUM_LINEAGE_FILE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".stack/lineage/events.jsonl"));
    let job_name = format!("{prefix}.0");
    let job = ("tributary", job_name.as_str());
    let tables: BTreeSet<(String, String)> = ["city", "salesman", "sale"]
        .into_iter()
        .map(|t| {
            dataset_pair(&naming::postgres_table(
                "127.0.0.1",
                5432,
                "salesdb",
                "public",
                t,
            ))
        })
        .collect();
    let topic = dataset_pair(&naming::kafka_topic(
        "127.0.0.1:9092",
        &format!("{prefix}.public.sale"),
    ));

    // Only this test's events count: a restart of the connector's task makes Debezium report its
    // job afresh (START, the tables as it reads their schemas, each topic at its first record).
    let started = chrono::Utc::now();
    let connect =
        std::env::var("DEBEZIUM_CONNECT_URL").unwrap_or_else(|_| "http://127.0.0.1:8083".into());
    let task = format!("{connect}/connectors/{prefix}-connector/tasks/0");
    let http = reqwest::Client::new();
    http.post(format!("{task}/restart"))
        .send()
        .await?
        .error_for_status()
        .with_context(|| format!("restart {task}"))?;
    eventually(Duration::from_secs(60), || {
        let (http, task) = (&http, &task);
        async move {
            let status = tributary_e2e::get_json(http, &format!("{task}/status")).await?;
            Ok((status["state"] == "RUNNING").then_some(()))
        }
    })
    .await
    .with_context(|| format!("{task} is not RUNNING again"))?;

    // A change that alters no value still flows through the connector (an update event), so the
    // new task reports the output dataset; made again at every look, in case the old task still
    // carried the first one.
    let db = tributary_e2e::salesdb().await?;
    let events = eventually(Duration::from_secs(60), || {
        let (path, tables, topic, db) = (&path, &tables, &topic, &db);
        async move {
            let updated = db
                .execute(
                    "UPDATE sale SET amount = amount WHERE id = (SELECT min(id) FROM sale)",
                    &[],
                )
                .await?;
            ensure!(updated == 1, "salesdb has no sale to touch");
            let events: Vec<Value> = lineage_events(path)
                .into_iter()
                .filter(|e| e["job"]["namespace"] == job.0 && e["job"]["name"] == job.1)
                .filter(|e| {
                    e["eventTime"]
                        .as_str()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .is_some_and(|t| t >= started)
                })
                .collect();
            let side = |member: &str| -> BTreeSet<(String, String)> {
                events
                    .iter()
                    .flat_map(|e| e[member].as_array().cloned().unwrap_or_default())
                    .map(|d| dataset_key(&d))
                    .collect()
            };
            let done = tables.is_subset(&side("inputs")) && side("outputs").contains(topic);
            Ok(done.then_some(events))
        }
    })
    .await
    .with_context(|| {
        format!(
            "no Debezium lineage in {} naming {tables:?} → {topic:?}: is the integration on \
             (`dev/up connect`, a worker started with the OpenLineage jars; lineage/README.md)?",
            path.display()
        )
    })?;

    let schemas = SchemaSet::load().map_err(anyhow::Error::msg)?;
    let vendored = vendored_facet_ids()?;
    for e in &events {
        let errors = schemas.errors(&as_vendored_facet_versions(e, &vendored));
        ensure!(errors.is_empty(), "invalid Debezium event {e}: {errors:#?}");
        ensure!(
            e["producer"]
                .as_str()
                .is_some_and(|p| p.contains("debezium")),
            "producer of {e}"
        );
    }
    ensure!(
        events.iter().any(|e| e["eventType"] == "START"),
        "Debezium's job never started a run: {} events",
        events.len()
    );
    eprintln!(
        "{} Debezium events checked: {}",
        events.len(),
        path.display()
    );
    Ok(())
}

fn dataset_pair(d: &tributary_lineage::event::Dataset) -> (String, String) {
    (d.namespace.clone(), d.name.clone())
}

/// The vendored facet schemas by file name (`DocumentationJobFacet.json` → its `$id`).
fn vendored_facet_ids() -> Result<BTreeMap<String, String>> {
    let dir = tributary_lineage::validate::spec_dir().join("facets");
    let mut ids = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
        let path = entry?.path();
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        if let (Some(file), Some(id)) = (path.file_name(), schema["$id"].as_str()) {
            ids.insert(file.to_string_lossy().into_owned(), id.to_string());
        }
    }
    Ok(ids)
}

/// Debezium's event as the vendored schemas can check it. Debezium 3.6 builds its events with
/// openlineage-java 1.31, which names older minor versions of some standard facets than the
/// vendored 1.52.0 set (`DocumentationJobFacet` 1-0-1, `JobTypeJobFacet` 2-0-3,
/// `SchemaDatasetFacet` 1-1-1, `DatasetTypeDatasetFacet` 1-0-0); facet schemas only grow by
/// optional members within a major version, so such a facet is checked against the vendored
/// schema of the same facet and major version. Debezium's own run facet `debezium_config` (the
/// connector configuration, passwords masked) has no published schema and is left out; the
/// event schema itself still checks it as a generic facet (`_producer`, `_schemaURL`).
fn as_vendored_facet_versions(event: &Value, vendored: &BTreeMap<String, String>) -> Value {
    let mut event = event.clone();
    if let Some(run_facets) = event["run"]["facets"].as_object_mut() {
        run_facets.remove("debezium_config");
    }
    let major = |url: &str| -> Option<(String, String)> {
        // https://openlineage.io/spec/facets/<M-m-p>/<File>.json
        let mut parts = url.split('#').next()?.rsplit('/');
        let file = parts.next()?.to_string();
        let version_major = parts.next()?.split('-').next()?.to_string();
        Some((file, version_major))
    };
    let rewrite = |facets: &mut Value| {
        for facet in facets
            .as_object_mut()
            .into_iter()
            .flat_map(|m| m.values_mut())
        {
            let Some(url) = facet["_schemaURL"].as_str() else {
                continue;
            };
            let (Some((file, used_major)), true) =
                (major(url), url.starts_with("https://openlineage.io/"))
            else {
                continue;
            };
            if let Some(id) = vendored.get(&file)
                && major(id).is_some_and(|(_, m)| m == used_major)
                && !url.starts_with(id.as_str())
            {
                let fragment = url.split_once('#').map(|(_, f)| f).unwrap_or_default();
                facet["_schemaURL"] = Value::String(format!("{id}#{fragment}"));
            }
        }
    };
    rewrite(&mut event["run"]["facets"]);
    rewrite(&mut event["job"]["facets"]);
    for side in ["inputs", "outputs"] {
        if let Some(datasets) = event[side].as_array_mut() {
            for d in datasets {
                rewrite(&mut d["facets"]);
            }
        }
    }
    event
}
