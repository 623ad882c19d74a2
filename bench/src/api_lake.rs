//! `tributary-bench api-lake`: the API while clients keep asking it for rankings computed from a
//! large lake (`as_of`), measured as an operator would see it: the API's resident memory, the
//! latency of the latest publication's ranking (wrk) beside the same without the lake load, and
//! what the `as_of` clients were answered.
//!
//! For each history size a lake of that many Postgres sale events is written into its own
//! namespace (as `tributary-bench marts` writes it). One `tributary-api` is started with that
//! namespace as its lake, its defaults otherwise, except `limits.as_of_cache = 0`: every `as_of`
//! request is computed from the lake, none answered from the cache. Its ClickHouse store is the
//! marts job's (`--database`), whose latest publication wrk loads. Then, `--runs` rounds of: wrk
//! on the ranking alone; then `--clients` clients each sending `as_of` requests one after the
//! other (waiting `Retry-After` after a 429, as a client should), and once they are all
//! running, wrk on the ranking again. Resident memory is sampled every 100 ms throughout; the
//! peak (`VmHWM`) is read at the end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::RunContext;
use crate::api::{Load, Target, WrkResult};

/// `tributary-bench api-lake`.
#[derive(Debug, clap::Args)]
pub struct ApiLakeArgs {
    /// The `tributary-api` binary; default: the one beside this executable (same profile).
    #[arg(long)]
    api_bin: Option<PathBuf>,
    /// ClickHouse database with published rankings (the marts job's).
    #[arg(long, default_value = "marts")]
    database: String,
    /// History sizes (Postgres change events in the lake), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
    histories: Vec<usize>,
    /// Clients sending `as_of` requests at once.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// wrk connections on the ranking.
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// Seconds of each wrk run.
    #[arg(long, default_value_t = 20)]
    seconds: u32,
    /// Rounds (wrk alone, then under the lake load); median and spread reported.
    #[arg(long, default_value_t = 3)]
    runs: u32,
}

/// What the `as_of` clients were answered in one round.
#[derive(Debug, Default, Clone, Serialize)]
struct Answers {
    /// Status (and problem type, for errors) → count.
    by_outcome: BTreeMap<String, u64>,
    /// Seconds each 200 took.
    ok_seconds: Vec<f64>,
}

impl Answers {
    fn add(&mut self, outcome: String, seconds: f64) {
        if outcome == "200" {
            self.ok_seconds.push(seconds);
        }
        *self.by_outcome.entry(outcome).or_default() += 1;
    }

    fn merge(&mut self, other: Answers) {
        for (outcome, n) in other.by_outcome {
            *self.by_outcome.entry(outcome).or_default() += n;
        }
        self.ok_seconds.extend(other.ok_seconds);
    }

    fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .by_outcome
            .iter()
            .map(|(outcome, n)| format!("{n} × {outcome}"))
            .collect();
        if !self.ok_seconds.is_empty() {
            let (median, min, max) = crate::summary(self.ok_seconds.clone());
            parts.push(format!("200 in {median:.1} s [{min:.1}–{max:.1}]"));
        }
        parts.join(", ")
    }
}

/// One history's measurements.
#[derive(Debug, Serialize)]
struct Measured {
    history: usize,
    namespace: String,
    /// wrk on the ranking with no lake request running, each round.
    alone: Vec<WrkResult>,
    /// wrk on the ranking while the clients send `as_of` requests, each round.
    under_load: Vec<WrkResult>,
    /// What the clients were answered, all rounds together.
    answers: Answers,
    /// Highest `VmRSS` sampled every 100 ms, KiB.
    sampled_rss_kib: u64,
    /// `VmHWM` at the end, KiB.
    peak_rss_kib: u64,
}

/// Runs the benchmark and writes `api-lake.md` and `api-lake.json` into `out_dir`.
pub async fn main(args: ApiLakeArgs, out_dir: &Path) -> Result<()> {
    let api_bin = crate::api::api_bin(args.api_bin.clone())?;
    let lake = tributary_common::LakeSettings {
        warehouse: "s3://warehouse".into(),
        ..Default::default()
    };
    let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let load = Load {
        threads: 2,
        connections: args.connections,
        seconds: args.seconds,
    };
    let mut measured = Vec::new();
    for &history in &args.histories {
        let filled = crate::marts::fill_history(&lake, &id, history).await?;
        measured.push(
            measure(
                &api_bin,
                &args.database,
                history,
                filled.ns.clone(),
                args.clients,
                &load,
                args.runs.max(1),
            )
            .await?,
        );
        // A 10 M-event lake is gigabytes; the API that read it has stopped.
        let mut settings = lake.clone();
        settings.namespace = filled.ns.clone();
        crate::cleanup::drop_lake_namespace(&settings).await;
    }
    let (md, json) = report(&measured, &args, &load).await;
    std::fs::create_dir_all(out_dir)?;
    std::fs::write(out_dir.join("api-lake.md"), &md)?;
    std::fs::write(
        out_dir.join("api-lake.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )?;
    print!("{md}");
    Ok(())
}

/// `VmRSS` of `pid`, KiB (0 once it is gone).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn measure(
    api_bin: &Path,
    database: &str,
    history: usize,
    namespace: String,
    clients: usize,
    load: &Load,
    runs: u32,
) -> Result<Measured> {
    let (api, port) = crate::api::start_api_with_env(
        api_bin,
        database,
        &[
            ("TRIBUTARY_LAKE__NAMESPACE", namespace.as_str()),
            ("TRIBUTARY_LIMITS__AS_OF_CACHE", "0"),
        ],
    )?;
    let pid = api.pid();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    crate::api::published(&http, &base).await?;
    let ranking = Target {
        endpoint: "top salesmen nationwide".into(),
        served_by: "memory",
        url: format!("{base}/v1/rankings/salesmen"),
        header: None,
    };

    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let sampling = sampling.clone();
        async move {
            let mut highest = 0;
            while sampling.load(Ordering::Relaxed) {
                highest = highest.max(rss_kib(pid));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            highest
        }
    });

    let (mut alone, mut under_load, mut answers) = (Vec::new(), Vec::new(), Answers::default());
    for round in 1..=runs {
        eprintln!(
            "{namespace} round {round}/{runs}: wrk {} alone",
            ranking.url
        );
        alone.push(crate::api::wrk_blocking(&ranking, load).await?);

        eprintln!("{namespace} round {round}/{runs}: {clients} as_of clients, then wrk");
        let running = Arc::new(AtomicBool::new(true));
        let mut senders = JoinSet::new();
        for _ in 0..clients {
            let (http, base, running) = (http.clone(), base.clone(), running.clone());
            senders.spawn(async move { ask_as_of(&http, &base, &running).await });
        }
        // Every client has sent its first request by now; two hold the lake's turns.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let result = crate::api::wrk_blocking(&ranking, load).await;
        running.store(false, Ordering::Relaxed);
        while let Some(done) = senders.join_next().await {
            answers.merge(done?);
        }
        under_load.push(result?);
        eprintln!("  as_of so far: {}", answers.describe());
    }
    sampling.store(false, Ordering::Relaxed);
    let sampled_rss_kib = sampler.await?;
    let peak_rss_kib = crate::procfs::peak_rss_kib(pid)?;
    ensure!(
        sampled_rss_kib > 0,
        "the API (pid {pid}) was gone while measured: see its log"
    );
    drop(api);
    Ok(Measured {
        history,
        namespace,
        alone,
        under_load,
        answers,
        sampled_rss_kib,
        peak_rss_kib,
    })
}

/// One client: `as_of` requests one after the other until `running` is cleared (the one in
/// flight then is waited for: its answer counts). After a 429 it waits `Retry-After`.
async fn ask_as_of(http: &reqwest::Client, base: &str, running: &AtomicBool) -> Answers {
    let mut answers = Answers::default();
    while running.load(Ordering::Relaxed) {
        let at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let url = format!("{base}/v1/rankings/salesmen?as_of={at}");
        let started = Instant::now();
        let (outcome, retry_after) = match http.get(&url).send().await {
            Ok(response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                let outcome = match body["type"].as_str() {
                    Some(kind) if !status.is_success() => format!(
                        "{} {}",
                        status.as_u16(),
                        kind.trim_start_matches("urn:tributary:problem:")
                    ),
                    _ => status.as_u16().to_string(),
                };
                (outcome, retry_after)
            }
            Err(error) => (format!("error {}", error.without_url()), None),
        };
        answers.add(outcome, started.elapsed().as_secs_f64());
        if let Some(seconds) = retry_after {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
        }
    }
    answers
}

async fn report(
    measured: &[Measured],
    args: &ApiLakeArgs,
    load: &Load,
) -> (String, serde_json::Value) {
    let provenance = crate::provenance::Provenance::collect().await;
    let RunContext {
        when,
        machine,
        cores,
        profile,
    } = RunContext::now();
    let (command, commit) = (&provenance.command, &provenance.commit);
    let mut md = format!(
        "# api-lake\n\n{when}, commit `{commit}`, {cores} cores ({machine}), {profile} build of \
         `tributary-api`; `{command}`. Per history: one API with that lake namespace, its \
         defaults but `limits.as_of_cache = 0` (every `as_of` computed from the lake; \
         `lake_concurrency` 2, `lake_queue_ms` 1 000, `request_timeout_ms` 30 000, \
         `lake_memory_mb` 512). {} rounds of wrk `-t{} -c{} -d{}s` on `/v1/rankings/salesmen` \
         (the latest publication of ClickHouse `{}`) alone, then with {} clients sending \
         `/v1/rankings/salesmen?as_of=<now>` one after the other (after a 429, waiting its \
         `Retry-After`); median of the rounds, [min–max].\n\n\
         | history | ranking p99 alone, ms | ranking p99 under as_of load, ms | req/s alone | req/s under load | as_of answers | API RSS peak |\n\
         |---:|---:|---:|---:|---:|---|---:|\n",
        args.runs.max(1),
        load.threads,
        load.connections,
        load.seconds,
        args.database,
        args.clients,
    );
    for m in measured {
        let p99 = |runs: &[WrkResult]| crate::summary(runs.iter().map(|r| r.p99_ms).collect());
        let rps = |runs: &[WrkResult]| {
            crate::summary(runs.iter().map(|r| r.requests_per_second).collect())
        };
        let (alone, loaded) = (p99(&m.alone), p99(&m.under_load));
        let (rps_alone, rps_loaded) = (rps(&m.alone), rps(&m.under_load));
        md.push_str(&format!(
            "| {} | {:.2} [{:.2}–{:.2}] | {:.2} [{:.2}–{:.2}] | {:.0} | {:.0} | {} | {:.0} MiB |\n",
            m.history,
            alone.0,
            alone.1,
            alone.2,
            loaded.0,
            loaded.1,
            loaded.2,
            rps_alone.0,
            rps_loaded.0,
            m.answers.describe(),
            m.peak_rss_kib.max(m.sampled_rss_kib) as f64 / 1024.0,
        ));
    }
    md.push_str(&format!(
        "\nAPI RSS peak: the larger of `VmHWM` at the end and `VmRSS` sampled every 100 ms.\n\n{}",
        provenance.markdown()
    ));
    let json = serde_json::json!({
        "benchmark": "api-lake",
        "date": when,
        "commit": commit,
        "command": command,
        "machine": {"cores": cores, "cpu": machine},
        "profile": profile,
        "versions": provenance.versions,
        "load": load,
        "clients": args.clients,
        "rounds": args.runs.max(1),
        "database": args.database,
        "histories": measured,
    });
    (md, json)
}
