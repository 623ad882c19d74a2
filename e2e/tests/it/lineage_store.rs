//! The lineage graph read back from a Marquez-compatible server, on the real services: the API
//! stores the OpenLineage events the jobs POST to it (`OPENLINEAGE__TRANSPORT__TYPE=http`,
//! `OPENLINEAGE_URL` = the API; its events table in a Postgres schema of this run), and
//! `GET /api/v1/lineage`, `/api/v1/column-lineage` answer Marquez's JSON. Marquez itself cannot
//! run here (`io.github.marquezproject:marquez-api` is not served by the reachable Maven
//! registry; lineage/README.md), so this is the store the issue allows instead.
//!
//! The graph must hold every edge of the pipeline: the partner file → file ingestor → Kafka
//! topic → lander → Iceberg table, the ERP endpoint → ERP ingestor → topic → lander → table,
//! Debezium's topic → lander → `pg_sale` (here the graph starts at the topic of the run's own
//! source, `e2e_<suffix>.public.sale`: its connector sends no OpenLineage events; the demo
//! connector's own are checked in lineage.rs), and the Iceberg tables → marts job → ClickHouse
//! rankings with column lineage (`revenue` ← each source's `amount`). The lineage page, rendered
//! by headless Chromium, draws the same nodes and edges (screenshot: .stack/e2e/lineage-page.png). A
//! second test shows the store is Postgres: what one API process stored, a new one reads back; a
//! bad event is refused with problem JSON and not stored.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use tributary_e2e::{
    LINEAGE_WRITE_TOKEN, Service, TestPipeline, browser, eventually, repo_root, require_stack,
};
use tributary_ingest::files::inbox::Inbox;

type Edges = BTreeSet<(String, String)>;

/// GET `url` as JSON; `None` for a 404 (the node is not known yet).
async fn get(http: &reqwest::Client, url: &str) -> Result<Option<Value>> {
    let resp = http.get(url).send().await?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let body: Value = resp.json().await?;
    ensure!(status.is_success(), "{url}: {status} {body}");
    Ok(Some(body))
}

/// `/api/v1/lineage?nodeId=…` (depth 20), or `None` while the node is unknown.
async fn lineage(http: &reqwest::Client, api: &str, node: &str) -> Result<Option<Value>> {
    let url = reqwest::Url::parse_with_params(
        &format!("{api}/api/v1/lineage"),
        &[("nodeId", node), ("depth", "20")],
    )?;
    get(http, url.as_str()).await
}

/// Every edge of a Marquez graph, from the nodes' `outEdges`, checked against their `inEdges`.
fn edges(graph: &Value) -> Result<Edges> {
    let nodes = graph["graph"].as_array().context("no graph array")?;
    let pairs = |member: &str| -> Edges {
        nodes
            .iter()
            .flat_map(|n| n[member].as_array().cloned().unwrap_or_default())
            .map(|e| {
                (
                    e["origin"].as_str().unwrap_or_default().to_string(),
                    e["destination"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let (out_edges, in_edges) = (pairs("outEdges"), pairs("inEdges"));
    ensure!(
        out_edges == in_edges,
        "inEdges and outEdges disagree: {graph}"
    );
    Ok(out_edges)
}

fn node<'a>(graph: &'a Value, id: &str) -> Option<&'a Value> {
    graph["graph"]
        .as_array()?
        .iter()
        .find(|n| n["id"].as_str() == Some(id))
}

/// A job that reads `from` and writes `to`, if the graph has one.
fn job_between(edges: &Edges, from: &str, to: &str) -> Option<String> {
    edges
        .iter()
        .filter(|(o, j)| o == from && j.starts_with("job:"))
        .map(|(_, j)| j.clone())
        .find(|j| edges.contains(&(j.clone(), to.to_string())))
}

fn dataset(namespace: &str, name: &str) -> String {
    format!("dataset:{namespace}:{name}")
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_send_lineage_to_the_api_store_and_the_graph_reads_back() -> Result<()> {
    require_stack();
    let run = TestPipeline::with_source().await?;
    let ns = run.namespace();
    let api = run.api();
    let http = reqwest::Client::new();

    // The API first (it receives every event, the jobs' first START included), with its events
    // table in a schema of this run.
    let mut api_service = run
        .start_api_with_lineage_store("lineage-store-api")
        .await?;

    let openlineage: BTreeMap<String, String> = [
        ("OPENLINEAGE__TRANSPORT__TYPE", "http".to_string()),
        ("OPENLINEAGE_URL", api.clone()),
        ("OPENLINEAGE_NAMESPACE", ns.clone()),
        ("OPENLINEAGE_API_KEY", LINEAGE_WRITE_TOKEN.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let with_lineage = |mut env: BTreeMap<String, String>| {
        env.extend(openlineage.clone());
        env
    };
    let mut sim = run.start_sim("lineage-store-erp-sim", 11, 30).await?;
    let mut lake = Service::start(
        "lineage-store-lake",
        "tributary-lake",
        &[],
        &with_lineage(run.lake_env()),
    );
    let mut marts = Service::start(
        "lineage-store-marts",
        "tributary-marts",
        &[],
        &with_lineage(run.marts_env()),
    );
    let mut files = Service::start(
        "lineage-store-files",
        "tributary-ingest",
        &["files"],
        &with_lineage(run.files_env()),
    );
    let mut erp = Service::start(
        "lineage-store-erp",
        "tributary-ingest",
        &["erp"],
        &with_lineage(run.erp_env()),
    );
    Inbox::open(&run.inbox(), &Default::default())?
        .put_bytes(
            "acme/store.csv",
            b"pedido;vendedor;cidade;uf;valor;data\nM-1;S001;Campinas;SP;10,00;15/03/2026 10:00\nM-2;S002;Campinas;SP;20,50;16/03/2026 10:00\n"
                .to_vec(),
        )
        .await?;

    const KAFKA: &str = "kafka://127.0.0.1:9092";
    let topic = |name: &str| dataset(KAFKA, &run.topic(name));
    let table = |name: &str| dataset("s3://warehouse", &format!("{ns}/{name}"));
    let lander = |name: &str| format!("job:{ns}:tributary-lake.{ns}.{name}");
    let csv = dataset("s3://inbox", &format!("e2e-{}/acme/store.csv", run.suffix));
    let erp_endpoint = dataset(&run.erp(), "ws/sales");
    let debezium_topic = dataset(KAFKA, &run.source().topic("sale"));

    // 1. Sources → ingestors → Kafka → lander → Iceberg, each branch read back from its table.
    let branches = eventually(Duration::from_secs(180), || {
        for s in [&mut api_service, &mut sim, &mut lake, &mut marts, &mut files, &mut erp] {
            s.assert_running();
        }
        let (http, api) = (&http, &api);
        let (topic, table, lander) = (&topic, &table, &lander);
        let (csv, erp_endpoint, debezium_topic) = (&csv, &erp_endpoint, &debezium_topic);
        async move {
            let (Some(files_graph), Some(erp_graph), Some(pg_graph)) = (
                lineage(http, api, &table("file_sale")).await?,
                lineage(http, api, &table("erp_sale")).await?,
                lineage(http, api, &table("pg_sale")).await?,
            ) else {
                return Ok(None);
            };
            let (f, e, p) = (edges(&files_graph)?, edges(&erp_graph)?, edges(&pg_graph)?);
            let done = job_between(&f, csv, &topic("files.sales")).is_some()
                && f.contains(&(topic("files.sales"), lander("file_sale")))
                && f.contains(&(lander("file_sale"), table("file_sale")))
                && job_between(&e, erp_endpoint, &topic("erp.sales")).is_some()
                && e.contains(&(topic("erp.sales"), lander("erp_sale")))
                && e.contains(&(lander("erp_sale"), table("erp_sale")))
                && p.contains(&(debezium_topic.clone(), lander("pg_sale")))
                && p.contains(&(lander("pg_sale"), table("pg_sale")));
            Ok(done.then_some((files_graph, pg_graph)))
        }
    })
    .await
    .context(
        "the store never held the sources → Kafka → lander → Iceberg edges; logs in .stack/e2e/lineage-store-*.log",
    )?;
    let (files_graph, pg_graph) = branches;
    let ingestor = job_between(&edges(&files_graph)?, &csv, &topic("files.sales"))
        .context("file ingestor job")?;
    ensure!(
        ingestor == format!("job:{ns}:tributary-ingest.files.acme"),
        "{ingestor}"
    );
    // Debezium's topic is where the graph starts: no job of ours writes it.
    let debezium = node(&pg_graph, &debezium_topic).context("Debezium topic node")?;
    ensure!(
        debezium["inEdges"].as_array().is_some_and(|e| e.is_empty()),
        "{debezium}"
    );
    let lander_node = node(&pg_graph, &lander("pg_sale")).context("lander node")?;
    ensure!(lander_node["type"] == "JOB", "{lander_node}");
    ensure!(
        lander_node["data"]["latestRun"]["state"] == "COMPLETED",
        "{lander_node}"
    );

    // 2. Iceberg → marts job → ClickHouse rankings (the marts job's own lineage), waited for
    //    while the marts run every second; checked after the page so that part is reported too.
    let clickhouse = |t: &str| dataset("clickhouse://127.0.0.1:8123", &format!("{ns}.{t}"));
    let marts_graph = eventually(Duration::from_secs(90), || {
        for s in [&mut api_service, &mut lake, &mut marts] {
            s.assert_running();
        }
        let (http, api, clickhouse, table) = (&http, &api, &clickhouse, &table);
        async move {
            let Some(graph) = lineage(http, api, &clickhouse("salesman_ranking")).await? else {
                return Ok(None);
            };
            let e = edges(&graph)?;
            let joined = ["pg_sale", "file_sale", "erp_sale"].iter().all(|t| {
                ["city_ranking", "salesman_ranking", "city_salesman_ranking"]
                    .iter()
                    .all(|r| job_between(&e, &table(t), &clickhouse(r)).is_some())
            });
            Ok(joined.then_some(graph))
        }
    })
    .await;

    // 3. The page draws the graph the API answers: every node and edge, in headless Chromium.
    let shown = if marts_graph.is_ok() {
        clickhouse("salesman_ranking")
    } else {
        table("file_sale")
    };
    let want = lineage(&http, &api, &shown).await?.context("graph shown")?;
    let want_edges = edges(&want)?;
    let page = reqwest::Url::parse_with_params(&format!("{api}/lineage"), &[("nodeId", &shown)])?;
    let dom = browser::dump_dom_after_scripts(page.as_str(), 10_000)?;
    // Kept beside the services' logs for a reader (and for a failing assertion below).
    std::fs::write(repo_root().join(".stack/e2e/lineage-page.html"), &dom)?;
    eprintln!(
        "marts lineage: {}",
        match &marts_graph {
            Ok(_) => "in the store".to_string(),
            Err(e) => format!("missing ({e:#})"),
        }
    );
    ensure!(
        dom.contains(r#"data-state="drawn""#),
        "the page did not draw: {dom}"
    );
    let summary = browser::element_text(&dom, r#"id="summary""#).unwrap_or_default();
    let nodes = want["graph"].as_array().map_or(0, Vec::len);
    ensure!(
        dom.contains(&format!(r#"data-nodes="{nodes}""#))
            && dom.contains(&format!(r#"data-edges="{}""#, want_edges.len())),
        "page summary {summary:?} vs {nodes} nodes, {} edges",
        want_edges.len()
    );
    for n in want["graph"].as_array().into_iter().flatten() {
        let id = n["id"].as_str().unwrap_or_default();
        ensure!(
            dom.contains(&format!(r#"data-node-id="{id}""#)),
            "node {id} not drawn"
        );
    }
    for (origin, destination) in &want_edges {
        ensure!(
            dom.contains(&format!(
                r#"data-origin="{origin}" data-destination="{destination}""#
            )),
            "edge {origin} → {destination} not drawn"
        );
    }
    // Sources left of what they feed: the lander's table is right of the topic it reads.
    let column = |id: &str| -> Option<u32> {
        let at = dom.find(&format!(r#"data-node-id="{id}""#))?;
        let rest = &dom[at..];
        let c = rest.find("data-column=\"")? + "data-column=\"".len();
        rest[c..].split('"').next()?.parse().ok()
    };
    ensure!(
        column(&topic("files.sales")) < column(&table("file_sale")),
        "columns do not run from sources to marts: topic {:?}, table {:?} (.stack/e2e/lineage-page.html)",
        column(&topic("files.sales")),
        column(&table("file_sale"))
    );
    let png = browser::screenshot_after_scripts(
        page.as_str(),
        // Into .stack (git-ignored): a test run leaves the work tree clean; copy it over
        // docs/lineage-page.png to refresh the picture in the docs.
        &repo_root().join(".stack/e2e/lineage-page.png"),
        10_000,
    )?;
    println!("lineage page screenshot: {}", png.display());

    // 2 (continued). The ClickHouse part, and its column lineage.
    let marts_graph = marts_graph.context(
        "no Iceberg → marts job → ClickHouse edges in the store: does the marts job emit its \
         OpenLineage events (marts/src/job.rs)? logs in .stack/e2e/lineage-store-marts.log",
    )?;
    let e = edges(&marts_graph)?;
    let marts_job =
        job_between(&e, &table("pg_sale"), &clickhouse("salesman_ranking")).context("marts job")?;
    ensure!(
        e.contains(&(lander("file_sale"), table("file_sale"))),
        "the marts graph does not reach back to the lander: {e:?}"
    );
    let url = reqwest::Url::parse_with_params(
        &format!("{api}/api/v1/column-lineage"),
        &[("nodeId", clickhouse("salesman_ranking").as_str())],
    )?;
    let columns = get(&http, url.as_str())
        .await?
        .context("no column lineage for the salesman ranking")?;
    let revenue = node(
        &columns,
        &format!("datasetField:clickhouse://127.0.0.1:8123:{ns}.salesman_ranking:revenue"),
    )
    .with_context(|| format!("no revenue column in {columns}"))?;
    let inputs: BTreeSet<String> = revenue["data"]["inputFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            format!(
                "{}:{}:{}",
                i["namespace"].as_str().unwrap_or_default(),
                i["dataset"].as_str().unwrap_or_default(),
                i["field"].as_str().unwrap_or_default()
            )
        })
        .collect();
    for t in ["pg_sale", "file_sale", "erp_sale"] {
        let amount = format!("s3://warehouse:{ns}/{t}:amount");
        if !inputs.contains(&amount) {
            bail!("revenue does not come from {amount}: {inputs:?}");
        }
    }
    eprintln!(
        "lineage read back: marts job {marts_job}, {} edges around the rankings",
        e.len()
    );
    drop((api_service, sim, lake, marts, files, erp));
    run.finish().await
}

/// The store is Postgres, not the API's memory: events posted to one API process are read back
/// by a new one over the same schema, bad events are refused with problem JSON and not stored.
#[tokio::test(flavor = "multi_thread")]
async fn the_store_outlives_the_api_process_and_refuses_bad_events() -> Result<()> {
    require_stack();
    let run = TestPipeline::new();
    let ns = run.namespace();
    let api = run.api();
    let http = reqwest::Client::new();
    let first = run
        .start_api_with_lineage_store("lineage-store-api-1")
        .await?;
    let run_id = uuid::Uuid::new_v4().to_string();
    let event = |kind: &str| {
        serde_json::json!({
            "eventType": kind,
            "eventTime": "2026-11-26T02:00:00.000Z",
            "producer": "urn:e2e",
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
            "run": {"runId": run_id},
            "job": {"namespace": ns, "name": "copy"},
            "inputs": [{"namespace": "postgres://127.0.0.1:5432", "name": "salesdb.public.sale"}],
            "outputs": [{"namespace": "file", "name": "/tmp/copy.csv"}],
        })
    };
    // Writes need the bearer token: none, or a wrong one, is 401 and stores nothing.
    for token in [None, Some("not-the-write-token")] {
        let mut post = http
            .post(format!("{api}/api/v1/lineage"))
            .json(&event("START"));
        if let Some(token) = token {
            post = post.bearer_auth(token);
        }
        let resp = post.send().await?;
        ensure!(
            resp.status() == reqwest::StatusCode::UNAUTHORIZED
                && resp.headers().get("www-authenticate").is_some(),
            "token {token:?}: {}",
            resp.status()
        );
    }
    for kind in ["START", "COMPLETE"] {
        let resp = http
            .post(format!("{api}/api/v1/lineage"))
            .bearer_auth(LINEAGE_WRITE_TOKEN)
            .json(&event(kind))
            .send()
            .await?;
        ensure!(
            resp.status() == reqwest::StatusCode::CREATED,
            "{kind}: {}",
            resp.status()
        );
    }
    let mut bad = event("COMPLETE");
    bad["job"] = serde_json::json!({"namespace": ns});
    let resp = http
        .post(format!("{api}/api/v1/lineage"))
        .bearer_auth(LINEAGE_WRITE_TOKEN)
        .json(&bad)
        .send()
        .await?;
    ensure!(resp.status() == reqwest::StatusCode::BAD_REQUEST);
    let problem: Value = resp.json().await?;
    ensure!(problem["parameter"] == "job.name", "{problem}");
    drop(first); // SIGKILL: nothing but Postgres remembers

    let _second = run
        .start_api_with_lineage_store("lineage-store-api-2")
        .await?;
    let graph = lineage(&http, &api, &format!("job:{ns}:copy"))
        .await?
        .context("the new API process does not know the job")?;
    let e = edges(&graph)?;
    ensure!(
        e.contains(&(
            "dataset:postgres://127.0.0.1:5432:salesdb.public.sale".into(),
            format!("job:{ns}:copy")
        )) && e.contains(&(
            format!("job:{ns}:copy"),
            "dataset:file:/tmp/copy.csv".into()
        )),
        "{e:?}"
    );
    let (db, connection) = tokio_postgres::connect(
        "host=127.0.0.1 port=5432 user=tributary password=tributary dbname=tributary",
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(connection);
    let rows = db
        .query_one(
            &format!("SELECT count(*) FROM \"{ns}\".lineage_events WHERE job_name = 'copy'"),
            &[],
        )
        .await?;
    let stored: i64 = rows.get(0);
    ensure!(stored == 2, "{stored} rows stored, want the 2 good events");
    Ok(())
}
