//! Readiness on the real stack: the lander, both ingestors and the marts job answer `GET /readyz`
//! 200 with every dependency checked and passing; started with one dependency at a closed port
//! each answers 503 naming that dependency and its error (no password in it), while `/healthz`
//! stays 200 — liveness never depends on a dependency.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tributary_common::health::{Readiness, ReadyStatus};
use tributary_e2e::{Service, TestPipeline, eventually, free_port, require_stack};

/// A port nothing listens on (tcpmux, never served here).
const CLOSED: &str = "127.0.0.1:1";

/// `GET /readyz`: the status code and the body.
async fn readyz(http: &reqwest::Client, base: &str) -> Result<(u16, Readiness)> {
    let response = http.get(format!("{base}/readyz")).send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    let body: Readiness =
        serde_json::from_str(&text).with_context(|| format!("/readyz answered {text}"))?;
    Ok((status, body))
}

/// `GET /healthz` is 200 `ok`.
async fn assert_alive(http: &reqwest::Client, base: &str) -> Result<()> {
    let response = http.get(format!("{base}/healthz")).send().await?;
    anyhow::ensure!(
        response.status().as_u16() == 200,
        "/healthz answered {}",
        response.status()
    );
    anyhow::ensure!(response.text().await?.trim() == "ok");
    Ok(())
}

fn names(readiness: &Readiness) -> Vec<&str> {
    readiness.checks.iter().map(|c| c.name.as_str()).collect()
}

/// Waits until the service answers 200 with exactly `checks`, all passing.
async fn await_ready(service: &mut Service, base: &str, checks: &[&str]) -> Result<Readiness> {
    let http = reqwest::Client::new();
    let last = std::cell::RefCell::new(None);
    let outcome = eventually(Duration::from_secs(90), || {
        service.assert_running();
        let (http, last) = (&http, &last);
        async move {
            let (status, body) = readyz(http, base).await?;
            let ready = status == 200 && body.status == ReadyStatus::Ready;
            *last.borrow_mut() = Some((status, body.clone()));
            Ok(ready.then_some(body))
        }
    })
    .await;
    let body = match outcome {
        Ok(body) => body,
        Err(e) => bail!(
            "{base}/readyz never became ready ({e:#}); last answer {last:?}; see {}",
            service.log().display()
        ),
    };
    assert_eq!(names(&body), checks, "{body:?}");
    for check in &body.checks {
        assert!(check.ok && !check.detail.is_empty(), "{check:?}");
    }
    assert_alive(&http, base).await?;
    Ok(body)
}

/// Waits until the service answers 503 with `failing` not ok and every other check of
/// `checks` passing (optional ones are not constrained), while `/healthz` stays 200. Returns the
/// failing check's detail.
async fn await_not_ready(
    service: &mut Service,
    base: &str,
    checks: &[&str],
    failing: &str,
) -> Result<String> {
    let http = reqwest::Client::new();
    let last = std::cell::RefCell::new(None);
    let outcome = eventually(Duration::from_secs(90), || {
        service.assert_running();
        let (http, last) = (&http, &last);
        async move {
            let (status, body) = readyz(http, base).await?;
            let as_expected = status == 503
                && body.status == ReadyStatus::NotReady
                // An optional check other than `failing` may follow from it (the marts' runs fail
                // while ClickHouse is down): it is reported, not constrained.
                && body
                    .checks
                    .iter()
                    .all(|c| c.ok == (c.name != failing) || (!c.required && c.name != failing));
            *last.borrow_mut() = Some((status, body.clone()));
            Ok(as_expected.then_some(body))
        }
    })
    .await;
    let body = match outcome {
        Ok(body) => body,
        Err(e) => bail!(
            "{base}/readyz never reported only {failing} down ({e:#}); last answer {last:?}; see {}",
            service.log().display()
        ),
    };
    assert_eq!(names(&body), checks, "{body:?}");
    let failed = body
        .checks
        .iter()
        .find(|c| c.name == failing)
        .expect("checked above");
    assert!(!failed.detail.is_empty(), "{failed:?}");
    // The process is alive, and the service keeps running.
    assert_alive(&http, base).await?;
    service.assert_running();
    Ok(failed.detail.clone())
}

fn with(mut env: BTreeMap<String, String>, pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    for (key, value) in pairs {
        env.insert(key.to_string(), value.clone());
    }
    env
}

const LANDER_CHECKS: &[&str] = &["kafka", "catalog", "object_store", "backlog"];
const MARTS_CHECKS: &[&str] = &["catalog", "object_store", "state", "clickhouse", "runs"];
const FILES_CHECKS: &[&str] = &["kafka", "inbox"];
const ERP_CHECKS: &[&str] = &["kafka", "erp"];

#[tokio::test(flavor = "multi_thread")]
async fn the_lander_is_ready_with_its_dependencies_and_not_without_kafka() -> Result<()> {
    require_stack();
    let run = TestPipeline::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut lake = Service::start(
        "readiness-lake",
        "tributary-lake",
        &[],
        &with(
            run.lake_env(),
            &[("TRIBUTARY_METRICS_LISTEN", format!("127.0.0.1:{port}"))],
        ),
    );
    let ready = await_ready(&mut lake, &base, LANDER_CHECKS).await?;
    let object_store = &ready.checks[2];
    assert!(
        object_store.detail.contains("s3://warehouse"),
        "{object_store:?}"
    );
    drop(lake);

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut lake = Service::start(
        "readiness-lake-no-kafka",
        "tributary-lake",
        &[],
        &with(
            run.lake_env(),
            &[
                ("TRIBUTARY_METRICS_LISTEN", format!("127.0.0.1:{port}")),
                ("TRIBUTARY_KAFKA__BROKERS", CLOSED.to_string()),
            ],
        ),
    );
    let detail = await_not_ready(&mut lake, &base, LANDER_CHECKS, "kafka").await?;
    assert!(detail.contains(CLOSED), "{detail}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_marts_job_is_ready_with_its_dependencies_and_not_without_clickhouse() -> Result<()> {
    require_stack();
    let run = TestPipeline::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut marts = Service::start(
        "readiness-marts",
        "tributary-marts",
        &[],
        &with(
            run.marts_env(),
            &[("TRIBUTARY_METRICS_LISTEN", format!("127.0.0.1:{port}"))],
        ),
    );
    await_ready(&mut marts, &base, MARTS_CHECKS).await?;
    drop(marts);

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut marts = Service::start(
        "readiness-marts-no-clickhouse",
        "tributary-marts",
        &[],
        &with(
            run.marts_env(),
            &[
                ("TRIBUTARY_METRICS_LISTEN", format!("127.0.0.1:{port}")),
                ("TRIBUTARY_CLICKHOUSE__URL", format!("http://{CLOSED}")),
            ],
        ),
    );
    let detail = await_not_ready(&mut marts, &base, MARTS_CHECKS, "clickhouse").await?;
    assert!(detail.contains(CLOSED), "{detail}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_database_that_does_not_answer_is_named_without_its_password() -> Result<()> {
    require_stack();
    let run = TestPipeline::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut marts = Service::start(
        "readiness-marts-no-state",
        "tributary-marts",
        &[],
        &with(
            run.marts_env(),
            &[
                ("TRIBUTARY_METRICS_LISTEN", format!("127.0.0.1:{port}")),
                (
                    "TRIBUTARY_STATE__URL",
                    format!("postgres://tributary:not-for-your-eyes@{CLOSED}/tributary"),
                ),
            ],
        ),
    );
    let detail = await_not_ready(&mut marts, &base, MARTS_CHECKS, "state").await?;
    assert!(
        detail.contains(&format!(
            "postgres://tributary:<redacted>@{CLOSED}/tributary"
        )),
        "{detail}"
    );
    assert!(!detail.contains("not-for-your-eyes"), "{detail}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_file_ingestor_is_ready_with_kafka_and_its_inbox_and_not_without_the_store()
-> Result<()> {
    require_stack();
    let run = TestPipeline::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut files = Service::start(
        "readiness-files",
        "tributary-ingest",
        &["files"],
        &with(
            run.files_env(),
            &[(
                "TRIBUTARY_FILES__METRICS_LISTEN",
                format!("127.0.0.1:{port}"),
            )],
        ),
    );
    let ready = await_ready(&mut files, &base, FILES_CHECKS).await?;
    assert!(
        ready.checks[1].detail.contains(&run.inbox()),
        "{:?}",
        ready.checks[1]
    );
    drop(files);

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut files = Service::start(
        "readiness-files-no-store",
        "tributary-ingest",
        &["files"],
        &with(
            run.files_env(),
            &[
                (
                    "TRIBUTARY_FILES__METRICS_LISTEN",
                    format!("127.0.0.1:{port}"),
                ),
                ("TRIBUTARY_FILES__S3__ENDPOINT", format!("http://{CLOSED}")),
            ],
        ),
    );
    let detail = await_not_ready(&mut files, &base, FILES_CHECKS, "inbox").await?;
    assert!(detail.contains(&run.inbox()), "{detail}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_erp_ingestor_is_ready_with_kafka_and_the_erp_and_not_without_the_erp() -> Result<()> {
    require_stack();
    let run = TestPipeline::new();
    let _sim = run.start_sim("readiness-erp-sim", 7, 10).await?;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut erp = Service::start(
        "readiness-erp",
        "tributary-ingest",
        &["erp"],
        &with(
            run.erp_env(),
            &[("TRIBUTARY_ERP__METRICS_LISTEN", format!("127.0.0.1:{port}"))],
        ),
    );
    let ready = await_ready(&mut erp, &base, ERP_CHECKS).await?;
    assert!(
        ready.checks[1].detail.contains("HTTP 200"),
        "{:?}",
        ready.checks[1]
    );
    drop(erp);

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut erp = Service::start(
        "readiness-erp-no-erp",
        "tributary-ingest",
        &["erp"],
        &with(
            run.erp_env(),
            &[
                ("TRIBUTARY_ERP__METRICS_LISTEN", format!("127.0.0.1:{port}")),
                (
                    "TRIBUTARY_ERP__CLIENT__ENDPOINT",
                    format!("http://{CLOSED}/ws/sales"),
                ),
            ],
        ),
    );
    let detail = await_not_ready(&mut erp, &base, ERP_CHECKS, "erp").await?;
    assert!(detail.contains(CLOSED), "{detail}");
    Ok(())
}
