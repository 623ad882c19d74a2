//! A service of ours killed (SIGKILL: no chance to close anything) is found crashed by its next
//! process, through its OpenLineage run journal (lineage/src/journal.rs): the process run the
//! killed one left open is closed as FAILED in the lineage store, the crash is counted in
//! `tributary_process_crashes_total` (kept across restarts, so a crash loop shows as a rate) and
//! listed on the API's status page. A clean stop (SIGTERM) closes its runs and is not a crash.
//! The file ingestor stands for every service: the journal is the emitter's, which they share.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tributary_e2e::{
    LINEAGE_WRITE_TOKEN, Service, TestPipeline, eventually, free_port, repo_root, require_stack,
};
use tributary_lineage::journal::{CRASH_MESSAGE, JournalState};

const JOB: &str = "tributary-ingest.files";

/// A metric's value on `port`'s `/metrics`, `None` while the service does not answer.
async fn metric(http: &reqwest::Client, port: u16, name: &str) -> Option<f64> {
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn journal(path: &Path) -> Result<JournalState> {
    Ok(serde_json::from_slice(&std::fs::read(path)?)?)
}

/// The run of `JOB` open in the journal (the process run), once the process wrote it.
fn open_process_run(path: &Path) -> Option<uuid::Uuid> {
    let state = journal(path).ok()?;
    let runs: Vec<_> = state
        .open
        .iter()
        .filter(|(_, r)| r.job == JOB && r.parent.is_none())
        .map(|(id, _)| *id)
        .collect();
    (runs.len() == 1).then(|| runs[0])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_service_is_closed_in_lineage_and_counted_at_its_next_start() -> Result<()> {
    require_stack();
    let run = TestPipeline::new();
    let ns = run.namespace();
    let api = run.api();
    let http = reqwest::Client::new();
    let _api = run.start_api_with_lineage_store("crashes-api").await?;

    let dir = repo_root().join(format!(".stack/e2e/crashes-{ns}"));
    let journal_path = dir.join("lineage-runs.json");
    let port = free_port();
    let mut env = run.files_env();
    env.extend(
        [
            ("OPENLINEAGE__TRANSPORT__TYPE", "http".to_string()),
            ("OPENLINEAGE_URL", api.clone()),
            ("OPENLINEAGE_NAMESPACE", ns.clone()),
            ("OPENLINEAGE_API_KEY", LINEAGE_WRITE_TOKEN.to_string()),
            (
                "OPENLINEAGE_RUN_JOURNAL",
                journal_path.display().to_string(),
            ),
            (
                "TRIBUTARY_FILES__METRICS_LISTEN",
                format!("127.0.0.1:{port}"),
            ),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    let mut files = Service::start("crashes-files", "tributary-ingest", &["files"], &env);
    let crashes = "tributary_process_crashes_total";
    let settled = |files: &mut Service, want: f64| {
        files.assert_running();
        let http = &http;
        async move { Ok((metric(http, port, crashes).await == Some(want)).then_some(())) }
    };
    eventually(Duration::from_secs(60), || settled(&mut files, 0.0))
        .await
        .context("the file ingestor never reported 0 crashes; see .stack/e2e/crashes-files.log")?;
    let killed = open_process_run(&journal_path).context("no open process run in the journal")?;

    // SIGKILL, and start again: the new process finds the run left open.
    files.kill_hard();
    ensure!(
        open_process_run(&journal_path) == Some(killed),
        "a killed process cannot have closed its run"
    );
    files.restart();
    eventually(Duration::from_secs(60), || settled(&mut files, 1.0))
        .await
        .context("the restarted ingestor did not count the crash")?;
    let last = metric(
        &http,
        port,
        "tributary_process_last_crash_timestamp_seconds",
    )
    .await;
    let now = chrono::Utc::now().timestamp() as f64;
    ensure!(
        last.is_some_and(|t| (now - 120.0..=now + 1.0).contains(&t)),
        "last crash at {last:?}, now {now}"
    );
    let new_run =
        open_process_run(&journal_path).context("the new process run is not journaled")?;
    ensure!(new_run != killed, "the journal still holds the killed run");

    // In the lineage store: the killed run ends FAILED, with the crash message.
    let (db, connection) = tokio_postgres::connect(
        "host=127.0.0.1 port=5432 user=tributary password=tributary dbname=tributary",
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(connection);
    let events = eventually(Duration::from_secs(30), || {
        let db = &db;
        let ns = &ns;
        async move {
            let rows = db
                .query(
                    &format!(
                        "SELECT event_type, event #>> '{{run,facets,errorMessage,message}}' \
                         FROM \"{ns}\".lineage_events WHERE run_id::text = $1 ORDER BY id"
                    ),
                    &[&killed.to_string()],
                )
                .await?;
            let events: Vec<(String, Option<String>)> =
                rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            Ok((events.len() >= 2).then_some(events))
        }
    })
    .await
    .context("the killed run was never closed in the lineage store")?;
    ensure!(events[0].0 == "START", "{events:?}");
    let (last_type, message) = events.last().expect("two events");
    ensure!(last_type == "FAIL", "{events:?}");
    ensure!(
        message
            .as_deref()
            .is_some_and(|m| m.starts_with(CRASH_MESSAGE)),
        "{events:?}"
    );

    // On the status page: one crash of the job.
    let row = format!("data-job=\"{JOB}\"");
    let page = eventually(Duration::from_secs(30), || {
        let (http, api, row) = (&http, &api, &row);
        async move {
            let page = http
                .get(format!("{api}/status"))
                .send()
                .await?
                .text()
                .await?;
            Ok(page.contains(row.as_str()).then_some(page))
        }
    })
    .await
    .context("the status page never listed the crash")?;
    ensure!(
        page.contains(&format!(
            "{row} data-state=\"warn\"><td>{JOB}</td><td class=\"n count\">1</td>"
        )),
        "{page}"
    );

    // A clean stop closes the run and is no crash: the count stays 1 across the next start.
    files.stop();
    ensure!(
        journal(&journal_path)?.open.is_empty(),
        "a clean stop left runs open: {:?}",
        journal(&journal_path)?.open
    );
    files.restart();
    eventually(Duration::from_secs(60), || settled(&mut files, 1.0))
        .await
        .context("the count changed across a clean restart")?;
    let state = journal(&journal_path)?;
    ensure!(state.crashes == 1, "{state:?}");
    drop(files);
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
