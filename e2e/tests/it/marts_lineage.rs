//! The marts job's OpenLineage on the real services: the lander and the file ingestor run with
//! the file transport, a partner file and the Debezium topics of the run's own source reach the
//! raw Iceberg tables, then `tributary-marts run-once` (same transport, same file) must
//!
//! - emit START then COMPLETE for `tributary-marts.rankings`, every event valid against the
//!   vendored official schema;
//! - read the Iceberg tables under the very names the lander's events wrote them, at snapshots
//!   the lander's events announced (so the graph joins: lander → Iceberg table → marts);
//! - write the ClickHouse ranking tables with row counts and column lineage: `revenue` from the
//!   `amount` of every raw sale table, `sales` counted from their ids;
//! - and with ClickHouse unreachable (a closed port), exit non-zero after a START and a FAIL
//!   carrying an `errorMessage` facet.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use tributary_e2e::{
    Service, TestPipeline, clickhouse_query, dataset_key, eventually, free_port, lineage_events,
    repo_root, require_stack, run_bin,
};
use tributary_ingest::files::inbox::Inbox;
use tributary_lineage::validate::SchemaSet;

const MARTS_JOB: &str = "tributary-marts.rankings";

/// (dataset, snapshot id) of every Iceberg commit the lander's COMPLETE events announce.
fn lander_snapshots(events: &[Value], ns: &str) -> BTreeSet<((String, String), i64)> {
    events
        .iter()
        .filter(|e| {
            e["eventType"] == "COMPLETE"
                && e["job"]["name"]
                    .as_str()
                    .is_some_and(|j| j.starts_with(&format!("tributary-lake.{ns}.")))
        })
        .flat_map(|e| e["outputs"].as_array().cloned().unwrap_or_default())
        .filter_map(|o| {
            let snapshot = o["facets"]["tributary_icebergSnapshot"]["snapshotId"].as_i64()?;
            Some((dataset_key(&o), snapshot))
        })
        .collect()
}

fn marts_events<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["job"]["name"] == MARTS_JOB && e["eventType"] == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_marts_run_emits_lineage_joined_to_the_lander_and_fails_loudly() -> Result<()> {
    require_stack();
    let run = TestPipeline::with_source().await?;
    let ns = run.namespace();
    let events_path = repo_root().join(format!(".stack/e2e/marts-lineage-{}.jsonl", run.suffix));
    let with_lineage = |mut env: BTreeMap<String, String>| {
        env.extend(
            [
                ("OPENLINEAGE__TRANSPORT__TYPE", "file".to_string()),
                (
                    "OPENLINEAGE__TRANSPORT__LOG_FILE_PATH",
                    events_path.display().to_string(),
                ),
                ("OPENLINEAGE_NAMESPACE", ns.clone()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        env
    };

    let mut lake = Service::start(
        "marts-lineage-lake",
        "tributary-lake",
        &[],
        &with_lineage(run.lake_env()),
    );
    let mut files = Service::start(
        "marts-lineage-files",
        "tributary-ingest",
        &["files"],
        &with_lineage(run.files_env()),
    );
    Inbox::open(&run.inbox(), &Default::default())?
        .put_bytes(
            "acme/marts.csv",
            b"pedido;vendedor;cidade;uf;valor;data\nML-1;S001;Campinas;SP;10,00;15/03/2026 10:00\nML-2;S002;Campinas;SP;20,50;16/03/2026 10:00\n"
                .to_vec(),
        )
        .await?;

    // The raw tables the marts read have been committed to by the lander (Debezium's tables
    // from the run's own source database, file_sale from the file above).
    let table = |name: &str| ("s3://warehouse".to_string(), format!("{ns}/{name}"));
    eventually(Duration::from_secs(120), || {
        lake.assert_running();
        files.assert_running();
        let (path, ns, table) = (&events_path, &ns, &table);
        async move {
            let written: BTreeSet<(String, String)> = lander_snapshots(&lineage_events(path), ns)
                .into_iter()
                .map(|(d, _)| d)
                .collect();
            Ok(["pg_sale", "pg_salesman", "pg_city", "file_sale"]
                .iter()
                .all(|t| written.contains(&table(t)))
                .then_some(()))
        }
    })
    .await
    .with_context(|| {
        format!(
            "the lander did not commit every table; events in {}",
            events_path.display()
        )
    })?;

    let marts_env = with_lineage(run.marts_env());
    let out = run_bin("tributary-marts", &["run-once"], &marts_env)?;
    ensure!(
        out.lines().any(|l| l.starts_with("published ")),
        "run-once: {out}"
    );
    let out = run_bin("tributary-marts", &["run-once", "--force"], &marts_env)?;
    ensure!(
        out.lines().any(|l| l.starts_with("published ")),
        "run-once --force: {out}"
    );

    // A run that cannot reach ClickHouse.
    let mut unreachable = marts_env.clone();
    unreachable.insert(
        "TRIBUTARY_CLICKHOUSE__URL".into(),
        format!("http://127.0.0.1:{}", free_port()),
    );
    let failed = run_bin("tributary-marts", &["run-once"], &unreachable);
    ensure!(
        failed.is_err(),
        "run-once against a closed port succeeded: {failed:?}"
    );

    // The lander may still be committing: wait until it announced the snapshots the marts read.
    let events = eventually(Duration::from_secs(30), || {
        let (path, ns) = (&events_path, &ns);
        async move {
            let events = lineage_events(path);
            let announced = lander_snapshots(&events, ns);
            let joined = marts_events(&events, "COMPLETE").iter().all(|c| {
                c["inputs"].as_array().into_iter().flatten().all(|i| {
                    match i["facets"]["tributary_icebergSnapshot"]["snapshotId"].as_i64() {
                        Some(s) => announced.contains(&(dataset_key(i), s)),
                        None => true,
                    }
                })
            });
            Ok(joined.then_some(events))
        }
    })
    .await
    .context("the marts read snapshots the lander's events never announced")?;
    lake.assert_running();
    files.assert_running();

    // 1. Every event is valid, and the marts runs START then end.
    let schemas = SchemaSet::load().map_err(anyhow::Error::msg)?;
    for e in &events {
        let errors = schemas.errors(e);
        ensure!(errors.is_empty(), "invalid event {e}: {errors:#?}");
    }
    let marts: Vec<&Value> = events
        .iter()
        .filter(|e| e["job"]["name"] == MARTS_JOB)
        .collect();
    let kinds: Vec<&str> = marts
        .iter()
        .map(|e| e["eventType"].as_str().unwrap_or_default())
        .collect();
    ensure!(
        kinds == ["START", "COMPLETE", "START", "COMPLETE", "START", "FAIL"],
        "marts events: {kinds:?}"
    );
    for pair in marts.chunks(2) {
        ensure!(
            pair[0]["run"]["runId"] == pair[1]["run"]["runId"],
            "{pair:?}"
        );
        ensure!(
            pair[0]["job"]["namespace"] == ns.as_str(),
            "job namespace: {}",
            pair[0]
        );
    }

    // 2. Inputs: the lander's tables, by the lander's names, at snapshots it announced.
    let complete = marts[1];
    let announced = lander_snapshots(&events, &ns);
    let lander_tables: BTreeSet<&(String, String)> = announced.iter().map(|(d, _)| d).collect();
    let inputs: BTreeMap<(String, String), &Value> = complete["inputs"]
        .as_array()
        .context("inputs")?
        .iter()
        .map(|i| (dataset_key(i), i))
        .collect();
    for t in ["pg_sale", "pg_salesman", "pg_city", "file_sale", "erp_sale"] {
        ensure!(
            inputs.contains_key(&table(t)),
            "marts input {t} missing: {complete}"
        );
    }
    for t in ["pg_sale", "pg_salesman", "pg_city", "file_sale"] {
        let input = inputs[&table(t)];
        ensure!(
            lander_tables.contains(&table(t)),
            "{t}: no lander output of that name"
        );
        let snapshot = input["facets"]["tributary_icebergSnapshot"]["snapshotId"]
            .as_i64()
            .with_context(|| format!("{t}: no snapshot facet: {input}"))?;
        ensure!(
            announced.contains(&(table(t), snapshot)),
            "{t}: snapshot {snapshot} not announced by the lander"
        );
        ensure!(
            input["facets"]["version"]["datasetVersion"] == snapshot.to_string().as_str(),
            "{t}: version = snapshot: {input}"
        );
        ensure!(
            input["inputFacets"]["inputStatistics"]["rowCount"].as_u64() > Some(0),
            "{t}: the first run read its rows: {input}"
        );
    }

    // 3. Outputs: the ClickHouse rankings, with row counts and column lineage.
    let outputs: BTreeMap<(String, String), &Value> = complete["outputs"]
        .as_array()
        .context("outputs")?
        .iter()
        .map(|o| (dataset_key(o), o))
        .collect();
    let publication: String = clickhouse_query(&format!(
        "SELECT publication_id FROM {ns}.publications ORDER BY computed_at DESC LIMIT 1"
    ))
    .await?
    .trim()
    .to_string();
    ensure!(!publication.is_empty(), "no publication in {ns}");
    for t in ["city_ranking", "salesman_ranking", "city_salesman_ranking"] {
        let output = outputs
            .get(&(
                "clickhouse://127.0.0.1:8123".to_string(),
                format!("{ns}.{t}"),
            ))
            .with_context(|| format!("no output {ns}.{t}: {complete}"))?;
        let rows = output["outputFacets"]["outputStatistics"]["rowCount"]
            .as_u64()
            .with_context(|| format!("{t}: no row count"))?;
        ensure!(rows > 0, "{t}: no rows written");
        let fields = &output["facets"]["columnLineage"]["fields"];
        let revenue: BTreeSet<(String, String)> = fields["revenue"]["inputFields"]
            .as_array()
            .with_context(|| format!("{t}: no revenue lineage"))?
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap_or_default().to_string(),
                    f["field"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        for sale in ["pg_sale", "file_sale", "erp_sale"] {
            ensure!(
                revenue.contains(&(format!("{ns}/{sale}"), "amount".to_string())),
                "{t}: revenue not from {sale}.amount: {revenue:?}"
            );
        }
        let sales = fields["sales"]["inputFields"]
            .as_array()
            .with_context(|| format!("{t}: no sales lineage"))?;
        ensure!(
            sales.len() == 3
                && sales.iter().all(|f| f["namespace"] == "s3://warehouse"
                    && f["transformations"][0]["subtype"] == "AGGREGATION"),
            "{t}: sales lineage: {sales:?}"
        );
    }
    // The forced run published the same snapshots: it read nothing new.
    let forced = marts[3];
    ensure!(
        forced["inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|i| i["inputFacets"]["inputStatistics"]["rowCount"] == 0),
        "--force read rows: {forced}"
    );

    // 4. ClickHouse unreachable: FAIL with the error.
    let fail = marts[5];
    let message = fail["run"]["facets"]["errorMessage"]["message"]
        .as_str()
        .unwrap_or_default();
    ensure!(
        message.starts_with("clickhouse: "),
        "FAIL without the reason: {fail}"
    );
    ensure!(
        fail["run"]["facets"]["errorMessage"]["programmingLanguage"] == "RUST",
        "{fail}"
    );
    eprintln!(
        "{} events checked ({} of the marts): {}",
        events.len(),
        marts.len(),
        events_path.display()
    );
    drop((lake, files));
    run.finish().await
}
