//! Bad input visible in the API, and the status page, on the real services: a partner file
//! with a bad row travels through the file ingestor, Kafka and the lander into
//! `raw.dead_letters`; `GET /v1/dead-letters` lists it with its reason, filtered by source and
//! kind, and its counts equal the rows in the lake. The status page, rendered in headless
//! Chromium, shows the same counts and the publication the API serves (screenshot:
//! target/status-page.png).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;
use tributary_e2e::{Service, TestPipeline, browser, dead_letters, eventually, require_stack};
use tributary_ingest::files::inbox::Inbox;

/// The API of `run`, reading the run's lake and naming its topics like its lander does.
fn api_env(run: &TestPipeline) -> BTreeMap<String, String> {
    let mut env = run.api_env();
    env.extend(
        run.lake_env().into_iter().filter(|(k, _)| {
            k.starts_with("TRIBUTARY_LAKE__") || k.starts_with("TRIBUTARY_TOPICS__")
        }),
    );
    env
}

async fn get(http: &reqwest::Client, url: &str) -> Result<Value> {
    let resp = http.get(url).send().await?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    anyhow::ensure!(status.is_success(), "{url}: {status} {body}");
    Ok(body)
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_rows_show_in_the_api_and_on_the_status_page() -> Result<()> {
    require_stack();
    let run = TestPipeline::new();
    let mut lake = Service::start("status-lake", "tributary-lake", &[], &run.lake_env());
    let mut marts = Service::start("status-marts", "tributary-marts", &[], &run.marts_env());
    let mut api = Service::start("status-api", "tributary-api", &[], &api_env(&run));
    let mut ingest = Service::start(
        "status-ingest",
        "tributary-ingest",
        &["files"],
        &run.files_env(),
    );

    // Two bad rows (a negative amount, an impossible date) between good ones.
    let inbox = Inbox::open(&run.inbox(), &Default::default())?;
    inbox
        .put_bytes(
            "acme/bad.csv",
            b"pedido;vendedor;cidade;uf;valor;data\n\
              B-1;S001;Campinas;SP;10,00;15/03/2026 10:00\n\
              B-2;S001;Campinas;SP;-50,00;15/03/2026 10:00\n\
              B-3;S002;Campinas;SP;-7,00;16/03/2026 10:00\n"
                .to_vec(),
        )
        .await?;

    let http = reqwest::Client::new();
    let base = run.api();
    let page = eventually(Duration::from_secs(120), || {
        for service in [&mut lake, &mut marts, &mut api, &mut ingest] {
            service.assert_running();
        }
        let (http, base) = (&http, &base);
        async move {
            let page = get(http, &format!("{base}/v1/dead-letters?source=files")).await?;
            Ok((page["total"].as_u64() == Some(2)).then_some(page))
        }
    })
    .await
    .context(
        "the two bad rows never showed in /v1/dead-letters; logs in .stack/e2e/status-*.log",
    )?;
    let items = page["items"].as_array().context("items")?;
    for item in items {
        assert_eq!(item["source"], "files", "{item}");
        assert_eq!(item["kind"], "bad_amount", "{item}");
        assert_eq!(item["topic"], run.topic("files.dead"), "{item}");
        assert!(
            item["reason"].as_str().unwrap_or("").contains("negative"),
            "{item}"
        );
    }
    // Newest first: both came in one file, so the later Kafka offset comes first.
    assert!(
        items[0]["offset"].as_i64() > items[1]["offset"].as_i64(),
        "{page}"
    );

    let none = get(&http, &format!("{base}/v1/dead-letters?source=erp")).await?;
    assert_eq!(none["total"], 0, "{none}");
    let counts = get(&http, &format!("{base}/v1/dead-letters/counts")).await?;
    let in_lake = dead_letters(&run.namespace()).await?;
    assert_eq!(
        counts["total"].as_u64(),
        Some(in_lake.len() as u64),
        "{counts}"
    );
    let files_bad_amount = counts["items"]
        .as_array()
        .context("items")?
        .iter()
        .find(|c| c["source"] == "files" && c["kind"] == "bad_amount")
        .with_context(|| format!("no files/bad_amount count in {counts}"))?;
    assert_eq!(files_bad_amount["count"], 2, "{counts}");

    status_page_agrees_with_the_api(&http, &base, &counts).await
}

/// The status page, rendered by headless Chromium, shows the latest publication the API
/// names and the dead-letter counts it counts; its screenshot is written under target/.
async fn status_page_agrees_with_the_api(
    http: &reqwest::Client,
    base: &str,
    counts: &Value,
) -> Result<()> {
    let url = format!("{base}/status");
    // The marts publish every second: compare a page and an API answer taken together, until
    // no publication landed in between.
    let dom = eventually(Duration::from_secs(120), || async {
        let before = get(http, &format!("{base}/v1/rankings/salesmen?limit=1")).await;
        let dom = browser::dump_dom(&url)?;
        let after = get(http, &format!("{base}/v1/rankings/salesmen?limit=1")).await;
        let (Ok(before), Ok(after)) = (before, after) else {
            return Ok(None); // nothing published yet
        };
        let id = &before["publication"]["publication_id"];
        let shown = browser::element_text(&dom, r#"id="publication-id""#);
        Ok(
            (id == &after["publication"]["publication_id"] && shown.as_deref() == id.as_str())
                .then_some(dom),
        )
    })
    .await
    .context("the status page never showed the publication the API serves")?;

    let total = browser::element_text(&dom, r#"id="dead-letters-total""#)
        .with_context(|| format!("no dead-letter total on the page: {dom}"))?;
    assert_eq!(
        Some(total.as_str()),
        counts["total"].as_u64().map(|n| n.to_string()).as_deref(),
        "dead letters on the page vs /v1/dead-letters/counts {counts}"
    );
    let files_row = browser::element_text(&dom, r#"data-source="files" data-kind="bad_amount""#)
        .with_context(|| format!("no files/bad_amount row on the page: {dom}"))?;
    assert!(files_row.contains('2'), "{files_row}");
    for stage in [
        "sources",
        "CDC",
        "Kafka",
        "lander",
        "Iceberg",
        "marts",
        "ClickHouse",
        "API",
    ] {
        assert!(
            dom.contains(&format!("data-stage=\"{stage}\"")),
            "stage {stage} missing from the page"
        );
    }
    assert!(
        dom.contains(r#"data-stage="marts" data-state="ok""#),
        "{dom}"
    );
    assert!(dom.contains(r#"class="run""#), "no marts run listed: {dom}");
    // The stack's Debezium slot, with the WAL it holds (the stack's connector reads it).
    assert!(
        dom.contains(r#"data-slot="tributary_salesdb""#),
        "no replication slot on the page: {dom}"
    );

    let png = tributary_e2e::repo_root().join("target/status-page.png");
    let png = browser::screenshot(&url, &png)?;
    println!("status page screenshot: {}", png.display());
    Ok(())
}
