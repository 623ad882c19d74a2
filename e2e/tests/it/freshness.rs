//! The freshness SLI on the real stack: `tributary_freshness_seconds{source="files"}` on the
//! marts' `/metrics` grows while the file source is silent and drops back when a new file's sales
//! are published. The exposition must also pass `promtool check metrics`. The run has its own
//! Postgres source (a quiet one beside the files), so its lander never replays the demo's topics.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use tributary_e2e::{Service, TestPipeline, eventually, free_port, require_stack};
use tributary_ingest::files::inbox::Inbox;

async fn scrape(url: &str) -> Result<String> {
    Ok(reqwest::get(url).await?.error_for_status()?.text().await?)
}

/// The value of `tributary_freshness_seconds{source="<source>"}`, if exposed.
fn freshness(text: &str, source: &str) -> Option<f64> {
    let prefix = format!("tributary_freshness_seconds{{source=\"{source}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

fn csv(prefix: &str) -> Vec<u8> {
    // The acme dialect (ingest/partners.toml); codes and cities from the sample master data.
    format!(
        "pedido;vendedor;cidade;uf;valor;data\n{prefix}-1;S001;Campinas;SP;100,00;15/03/2026 10:00\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn freshness_grows_while_a_source_is_silent_and_drops_when_it_speaks() -> Result<()> {
    require_stack();
    let run = TestPipeline::with_source().await?;
    let port = free_port();
    let mut marts_env = run.marts_env();
    marts_env.insert(
        "TRIBUTARY_METRICS_LISTEN".into(),
        format!("127.0.0.1:{port}"),
    );
    marts_env.insert("TRIBUTARY_INTERVAL_MS".into(), "1000".into());
    let mut services = [
        Service::start("fresh-lake", "tributary-lake", &[], &run.lake_env()),
        Service::start("fresh-marts", "tributary-marts", &[], &marts_env),
        Service::start("fresh-api", "tributary-api", &[], &run.api_env()),
        Service::start(
            "fresh-ingest",
            "tributary-ingest",
            &["files"],
            &run.files_env(),
        ),
    ];
    let url = format!("http://127.0.0.1:{port}/metrics");
    let inbox = Inbox::open(&run.inbox(), &Default::default())?;
    inbox.put_bytes("acme/first.csv", csv("F1")).await?;

    // The first file's sale is published: freshness for `files` appears, and is small.
    let first = eventually(Duration::from_secs(120), || {
        for s in services.iter_mut() {
            s.assert_running();
        }
        let url = &url;
        async move { Ok(scrape(url).await.ok().and_then(|t| freshness(&t, "files"))) }
    })
    .await
    .context("the marts never exposed freshness for the files source")?;

    // Silence: it grows with the clock.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let text = scrape(&url).await?;
    let silent = freshness(&text, "files").context("freshness vanished")?;
    assert!(
        silent >= first + 5.0,
        "freshness did not grow while the source was silent: {first} s, then {silent} s"
    );

    // The source speaks again: once the new file is published, freshness drops below what it
    // had grown to.
    inbox.put_bytes("acme/second.csv", csv("F2")).await?;
    let fresh = eventually(Duration::from_secs(120), || {
        let url = &url;
        async move {
            let now = scrape(url).await.ok().and_then(|t| freshness(&t, "files"));
            Ok(now.filter(|f| *f < silent))
        }
    })
    .await
    .context("freshness never dropped after a new file was published")?;
    assert!(
        fresh < silent,
        "{fresh} s after a new file, {silent} s before"
    );

    // The API says the same per source: completeness of the published rankings.
    let completeness = eventually(Duration::from_secs(60), || {
        let url = format!("{}/v1/completeness", run.api());
        async move {
            let page: serde_json::Value = match reqwest::get(&url).await {
                Ok(r) if r.status().is_success() => r.json().await?,
                _ => return Ok(None),
            };
            let files = page["items"]
                .as_array()
                .and_then(|items| items.iter().find(|i| i["source"] == "files").cloned());
            Ok(files.filter(|f| f["events"].as_u64() >= Some(2)))
        }
    })
    .await
    .context("/v1/completeness never showed both files' events")?;
    assert!(
        completeness["position"].as_i64().is_some(),
        "{completeness}"
    );
    let behind = completeness["behind_seconds"]
        .as_f64()
        .context("behind_seconds")?;
    assert!(
        behind < silent,
        "the API says files are {behind} s behind, the marts said {fresh} s"
    );

    // The exposition is valid Prometheus text.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("promtool (installed by dev/up with Prometheus)")?;
    promtool
        .stdin
        .take()
        .context("promtool stdin")?
        .write_all(text.as_bytes())?;
    let out = promtool.wait_with_output()?;
    assert!(
        out.status.success(),
        "promtool check metrics refused the marts' /metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "freshness of files: {first:.1} s, {silent:.1} s after 6 s of silence, {fresh:.1} s after a new file"
    );
    drop(services);
    run.finish().await
}
