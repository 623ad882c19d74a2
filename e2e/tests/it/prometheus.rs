//! Observability contracts checked with Prometheus' own tool (`promtool`, from Debian's
//! `prometheus` package that `dev/up` installs): the shipped scrape config and alerting rules are
//! valid, the rules fire on the series they are meant for (`dev/prometheus/rules_test.yml`), and
//! every service's `/metrics` is valid Prometheus exposition.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tributary_e2e::{Service, eventually, free_port, repo_root, unique_suffix};

fn promtool(args: &[&str], stdin: Option<&[u8]>) -> Result<String> {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("promtool is missing: run `make test` (or `dev/up prometheus`), which installs Debian's prometheus")?;
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input)?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("promtool {} failed: {text}", args.join(" "));
    }
    Ok(text)
}

#[test]
fn the_shipped_scrape_config_and_rules_are_valid_and_the_alerts_fire() -> Result<()> {
    let dir = repo_root().join("dev/prometheus");
    let tmp = std::env::temp_dir().join(format!("tributary-prom-{}", unique_suffix()));
    std::fs::create_dir_all(&tmp)?;
    let mut config = std::fs::read_to_string(dir.join("prometheus.yml"))?;
    for host in [
        "LAKE",
        "INGEST_FILES",
        "INGEST_ERP",
        "API",
        "MARTS",
        "PROMETHEUS",
    ] {
        config = config.replace(&format!("@{host}_HOST@"), "127.0.0.1");
    }
    assert!(!config.contains('@'), "a placeholder is left: {config}");
    std::fs::write(tmp.join("prometheus.yml"), config)?;
    std::fs::copy(dir.join("rules.yml"), tmp.join("rules.yml"))?;
    let checked = promtool(
        &[
            "check",
            "config",
            tmp.join("prometheus.yml").to_str().unwrap(),
        ],
        None,
    )?;
    assert!(checked.contains("SUCCESS"), "{checked}");
    let rules = promtool(
        &["check", "rules", dir.join("rules.yml").to_str().unwrap()],
        None,
    )?;
    // Every alert in the file is a rule promtool accepted.
    let alerts = std::fs::read_to_string(dir.join("rules.yml"))?
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    assert!(
        rules.contains(&format!("SUCCESS: {alerts} rules found")),
        "{rules}"
    );
    let tested = promtool(
        &[
            "test",
            "rules",
            dir.join("rules_test.yml").to_str().unwrap(),
        ],
        None,
    )?;
    assert!(tested.contains("SUCCESS"), "{tested}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_service_serves_valid_prometheus_metrics() -> Result<()> {
    tributary_e2e::require_stack();
    let suffix = unique_suffix();
    let owned = |pairs: &[(&str, String)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    };
    let unused = |t: &str| format!("e2e.{suffix}.metrics.{t}");
    let (lake_port, files_port, erp_port, sim_port, api_port) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let inbox = std::env::temp_dir().join(format!("tributary-metrics-inbox-{suffix}"));

    let mut services = [
        Service::start(
            "metrics-lake",
            "tributary-lake",
            &[],
            &owned(&[
                ("TRIBUTARY_LAKE__NAMESPACE", format!("e2e_metrics_{suffix}")),
                ("TRIBUTARY_METRICS_LISTEN", format!("127.0.0.1:{lake_port}")),
                ("TRIBUTARY_TOPICS__SALE", unused("sale")),
                ("TRIBUTARY_TOPICS__SALESMAN", unused("salesman")),
                ("TRIBUTARY_TOPICS__CITY", unused("city")),
                ("TRIBUTARY_TOPICS__FILE_SALES", unused("files")),
                ("TRIBUTARY_TOPICS__FILE_DEAD_LETTERS", unused("files.dead")),
                ("TRIBUTARY_TOPICS__ERP_SALES", unused("erp")),
                ("TRIBUTARY_TOPICS__ERP_DEAD_LETTERS", unused("erp.dead")),
            ]),
        ),
        Service::start(
            "metrics-ingest-files",
            "tributary-ingest",
            &["files"],
            &owned(&[
                ("TRIBUTARY_FILES__INBOX", inbox.display().to_string()),
                (
                    "TRIBUTARY_FILES__METRICS_LISTEN",
                    format!("127.0.0.1:{files_port}"),
                ),
                ("TRIBUTARY_FILES__TRANSACTIONAL_ID", unused("files.txn")),
                ("TRIBUTARY_FILES__TOPICS__SALES", unused("files")),
                (
                    "TRIBUTARY_FILES__TOPICS__DEAD_LETTERS",
                    unused("files.dead"),
                ),
                (
                    "TRIBUTARY_FILES__TOPICS__PROGRESS",
                    unused("files.progress"),
                ),
            ]),
        ),
        Service::start(
            "metrics-erp-sim",
            "tributary-erp-sim",
            &[],
            &owned(&[("TRIBUTARY_LISTEN", format!("127.0.0.1:{sim_port}"))]),
        ),
        Service::start(
            "metrics-ingest-erp",
            "tributary-ingest",
            &["erp"],
            &owned(&[
                (
                    "TRIBUTARY_ERP__CLIENT__ENDPOINT",
                    format!("http://127.0.0.1:{sim_port}/ws/sales"),
                ),
                (
                    "TRIBUTARY_ERP__METRICS_LISTEN",
                    format!("127.0.0.1:{erp_port}"),
                ),
                ("TRIBUTARY_ERP__TRANSACTIONAL_ID", unused("erp.txn")),
                ("TRIBUTARY_ERP__TOPICS__SALES", unused("erp")),
                ("TRIBUTARY_ERP__TOPICS__DEAD_LETTERS", unused("erp.dead")),
                ("TRIBUTARY_ERP__TOPICS__PROGRESS", unused("erp.progress")),
            ]),
        ),
        Service::start(
            "metrics-api",
            "tributary-api",
            &[],
            &owned(&[
                ("TRIBUTARY_LISTEN", format!("127.0.0.1:{api_port}")),
                (
                    "TRIBUTARY_CLICKHOUSE__DATABASE",
                    format!("e2e_metrics_{suffix}"),
                ),
            ]),
        ),
    ];

    let http = reqwest::Client::new();
    for (port, must_have) in [
        (lake_port, "tributary_lander_consumer_lag_records"),
        (files_port, "tributary_ingest_files_total"),
        (erp_port, "tributary_ingest_erp_sequence"),
        // Counted after each response: the second scrape shows the first.
        (api_port, "tributary_api_request_duration_seconds_bucket"),
    ] {
        let text = eventually(Duration::from_secs(60), || {
            for s in services.iter_mut() {
                s.assert_running();
            }
            let http = &http;
            async move {
                let body = http
                    .get(format!("http://127.0.0.1:{port}/metrics"))
                    .send()
                    .await?
                    .error_for_status()?
                    .text()
                    .await?;
                Ok(body.contains(must_have).then_some(body))
            }
        })
        .await
        .with_context(|| format!("/metrics on {port} never showed {must_have}"))?;
        let checked = promtool(&["check", "metrics"], Some(text.as_bytes()))?;
        assert!(
            !checked.contains("error"),
            "promtool check metrics on port {port}: {checked}"
        );
    }
    Ok(())
}
