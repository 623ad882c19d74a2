//! `tributary-bench api`: wrk against the API's ranking and detail endpoints, and against a
//! hello-world poem endpoint served by this process (same machine, same build profile, same
//! poem), so the ratio says what the rankings cost on top of poem itself.
//!
//! The bench starts three `tributary-api` processes (the binary beside its own executable, so
//! the profiles match) on free ports, against the stack's ClickHouse database that the marts
//! job publishes to: one as configured by default, serving the latest publication from memory
//! and sending answers it already rendered from it again; one rendering every answer afresh
//! from memory (`serving.answer_cache_bytes = 0`); and one reading ClickHouse on every request
//! (`serving.refresh_ms = 0`), the baseline. It also
//! measures a revalidation answered 304. Every endpoint is measured `--runs` times, in rounds;
//! it refuses to measure if nothing is published, if the two APIs serve different publications,
//! or if any request fails. The peak resident memory of each API is read at the end (`VmHWM`
//! of `/proc/<pid>/status`, the kernel's high-water mark).

use crate::procfs::peak_rss_kib;
use crate::provenance::{command_version, locked_version};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::RunContext;
use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;

/// How wrk loads each endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Load {
    /// wrk threads (`-t`).
    pub threads: u32,
    /// Open connections (`-c`).
    pub connections: u32,
    /// Seconds per endpoint (`-d`).
    pub seconds: u32,
}

/// What wrk reported for one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WrkResult {
    /// Requests per second.
    pub requests_per_second: f64,
    /// Latency percentiles, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Requests completed.
    pub requests: u64,
    /// Responses other than 2xx/3xx.
    pub non_2xx: u64,
    /// Connect, read, write and timeout errors.
    pub socket_errors: u64,
}

/// One measured endpoint, over every round.
#[derive(Debug, Serialize)]
struct Measured {
    endpoint: String,
    /// `memory` or `clickhouse` (see [`run`]).
    served_by: String,
    path: String,
    /// Requests/s: median, min, max of the rounds.
    rps: (f64, f64, f64),
    /// Median of the rounds' p50, milliseconds.
    p50_ms: f64,
    /// p99 in milliseconds: median, min, max of the rounds.
    p99_ms: (f64, f64, f64),
    /// Median requests/s as a share of the hello-world endpoint's median.
    of_hello_world: f64,
    /// What wrk reported in each round.
    runs: Vec<WrkResult>,
}

/// wrk's request timeout.
const WRK_TIMEOUT_SECS: u32 = 10;

/// A wrk duration (`1.23ms`, `850.00us`, `1.02s`, `2.00m`) in milliseconds.
fn millis(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (value, unit) = text.split_at(split);
    let value: f64 = value.parse().ok()?;
    let factor = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some(value * factor)
}

/// Reads wrk's `--latency` report. Pure.
pub fn parse_wrk(output: &str) -> Result<WrkResult> {
    let mut rps = None;
    let (mut p50, mut p99, mut requests) = (None, None, None);
    let (mut non_2xx, mut socket_errors) = (0, 0);
    for line in output.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", value] => rps = value.parse::<f64>().ok(),
            ["50%", value] => p50 = millis(value),
            ["99%", value] => p99 = millis(value),
            [count, "requests", "in", ..] => requests = count.parse::<u64>().ok(),
            ["Non-2xx", "or", "3xx", "responses:", count] => non_2xx = count.parse()?,
            ["Socket", "errors:", rest @ ..] => {
                // `connect 0, read 0, write 0, timeout 0`
                socket_errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    Ok(WrkResult {
        requests_per_second: rps.context("no Requests/sec in wrk's output")?,
        p50_ms: p50.context("no 50% latency (was --latency given?)")?,
        p99_ms: p99.context("no 99% latency")?,
        requests: requests.context("no request count")?,
        non_2xx,
        socket_errors,
    })
}

/// [`wrk`] off the async runtime.
pub(crate) async fn wrk_blocking(target: &Target, load: &Load) -> Result<WrkResult> {
    let (target, load) = (target.clone(), load.clone());
    tokio::task::spawn_blocking(move || wrk(&target, &load)).await?
}

fn wrk(target: &Target, load: &Load) -> Result<WrkResult> {
    let url = target.url.as_str();
    let mut command = Command::new("wrk");
    if let Some(header) = &target.header {
        command.args(["-H", header]);
    }
    let output = command
        .args([
            &format!("-t{}", load.threads),
            &format!("-c{}", load.connections),
            &format!("-d{}s", load.seconds),
            "--latency",
            // A slow answer is latency, not a socket error (wrk's default gives up at 2 s).
            &format!("--timeout={}s", WRK_TIMEOUT_SECS),
            url,
        ])
        .output()
        .context("running wrk (install it: `make prereqs`)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "wrk {url} failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result = parse_wrk(&text).with_context(|| format!("wrk {url}: {text}"))?;
    // Throughput of error responses says nothing about the rankings. Socket errors (a request
    // over the timeout) are reported beside the numbers.
    ensure!(
        result.non_2xx == 0,
        "wrk {url}: {} non-2xx responses: {text}",
        result.non_2xx
    );
    Ok(result)
}

/// The hello-world baseline: poem with one route, on the bench's own Tokio runtime.
async fn start_hello_world() -> Result<(u16, tokio::task::JoinHandle<()>)> {
    use poem::{Route, Server, get, handler, listener::TcpListener};

    #[handler]
    fn hello() -> &'static str {
        "hello, world"
    }

    let port = free_port()?;
    let app = Route::new().at("/hello", get(hello));
    let server = Server::new(TcpListener::bind(format!("127.0.0.1:{port}")));
    let task = tokio::spawn(async move {
        if let Err(error) = server.run(app).await {
            eprintln!("hello-world server: {error}");
        }
    });
    Ok((port, task))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The API process; killed when dropped.
pub(crate) struct ApiProcess(Child);

impl ApiProcess {
    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_api(
    bin: &Path,
    port: u16,
    database: &str,
    log: &Path,
    env: &[(&str, &str)],
) -> Result<ApiProcess> {
    let log_file = std::fs::File::create(log)?;
    // The local stack's credentials are the development ones (common/src/profile.rs).
    let child = Command::new(bin)
        .envs(env.iter().copied())
        .env("TRIBUTARY_PROFILE", "development")
        .env("TRIBUTARY_LISTEN", format!("127.0.0.1:{port}"))
        .env("TRIBUTARY_CLICKHOUSE__DATABASE", database)
        .env("TRIBUTARY_LAKE__WAREHOUSE", "s3://warehouse")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(ApiProcess(child))
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<serde_json::Value> {
    let response = http.get(url).send().await?;
    let status = response.status();
    let body = response.text().await?;
    ensure!(status.is_success(), "GET {url}: {status}: {body}");
    Ok(serde_json::from_str(&body)?)
}

/// `tributary-bench api`.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// The `tributary-api` binary; default: the one beside this executable (same profile).
    #[arg(long)]
    api_bin: Option<PathBuf>,
    /// ClickHouse database with published rankings (the marts job's).
    #[arg(long, default_value = "marts")]
    database: String,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// wrk connections.
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// Seconds per endpoint.
    #[arg(long, default_value_t = 20)]
    seconds: u32,
    /// Rounds: each endpoint is measured this many times (median and spread reported).
    #[arg(long, default_value_t = 3)]
    runs: u32,
}

/// Runs the benchmark and writes `api.md` and `api.json` into `out_dir`.
pub async fn main(args: ApiArgs, out_dir: &Path) -> Result<()> {
    let api_bin = api_bin(args.api_bin)?;
    let settings = Settings {
        api_bin,
        database: args.database,
        load: Load {
            threads: args.threads,
            connections: args.connections,
            seconds: args.seconds,
        },
        runs: args.runs.max(1),
    };
    let (md, json) = run(&settings, out_dir).await?;
    std::fs::write(out_dir.join("api.md"), &md)?;
    std::fs::write(
        out_dir.join("api.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )?;
    print!("{md}");
    Ok(())
}

/// `bin`, or the `tributary-api` beside this executable (same profile); it must exist.
pub(crate) fn api_bin(bin: Option<PathBuf>) -> Result<PathBuf> {
    let api_bin = match bin {
        Some(bin) => bin,
        None => std::env::current_exe()?
            .parent()
            .context("the bench's own folder")?
            .join("tributary-api"),
    };
    ensure!(
        api_bin.exists(),
        "{} is not built (cargo build [--release] -p tributary-api)",
        api_bin.display()
    );
    Ok(api_bin)
}

/// Settings of one benchmark run.
struct Settings {
    /// The `tributary-api` binary.
    api_bin: PathBuf,
    /// ClickHouse database with published rankings.
    database: String,
    /// wrk's load.
    load: Load,
    /// Rounds of every endpoint.
    runs: u32,
}

/// Runs the benchmark; returns the Markdown report and the JSON document.
///
/// Three API processes over the same publication: one serving it from memory (the default),
/// one rendering every answer afresh (`serving.answer_cache_bytes = 0`) and one with
/// `serving.refresh_ms = 0`, reading ClickHouse on every request (the baseline, as the API was
/// before). Each round runs wrk once per endpoint, every endpoint in turn, so drift on
/// the machine falls on all of them alike; the report gives the median and the spread.
async fn run(settings: &Settings, out_dir: &Path) -> Result<(String, serde_json::Value)> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    std::fs::create_dir_all(out_dir)?;
    let (memory, memory_port) = start_api_with(settings, &[])?;
    let (direct, direct_port) =
        start_api_with(settings, &[("TRIBUTARY_SERVING__REFRESH_MS", "0")])?;
    let (rendering, rendering_port) =
        start_api_with(settings, &[("TRIBUTARY_SERVING__ANSWER_CACHE_BYTES", "0")])?;
    let memory_base = format!("http://127.0.0.1:{memory_port}");
    let direct_base = format!("http://127.0.0.1:{direct_port}");
    let rendering_base = format!("http://127.0.0.1:{rendering_port}");
    let (publication, month, city, salesman) = published(&http, &memory_base).await?;
    for base in [&direct_base, &rendering_base] {
        let (other, ..) = published(&http, base).await?;
        ensure!(
            publication == other,
            "the APIs serve different publications ({publication}, {other}): is the marts job still publishing? Stop it (`dev/app down`) for a stable measurement"
        );
    }
    let rss_before = peak_rss_kib(memory.0.id())?;
    let (provenance_path, provenance_sales) =
        provenance_row(&http, &memory_base, &month, PROVENANCE_SALES).await?;
    let records_from =
        get_json(&http, &format!("{rendering_base}{provenance_path}")).await?["records_from"]
            .as_str()
            .unwrap_or("?")
            .to_string();

    let retained_path = retained_as_of_path(&http, &memory_base).await?;

    let (hello_port, hello_task) = start_hello_world().await?;
    let paths = [
        (
            "top sales per city, one month",
            format!("/v1/rankings/cities?month={month}"),
        ),
        (
            "top salesmen nationwide",
            "/v1/rankings/salesmen".to_string(),
        ),
        (
            "top salesmen of one city",
            format!("/v1/rankings/cities/{city}/salesmen"),
        ),
        ("one salesman in detail", format!("/v1/salesmen/{salesman}")),
        (
            "provenance of one row (latest publication)",
            provenance_path.clone(),
        ),
        (
            "top salesmen nationwide as of the latest publication (retained)",
            retained_path.clone(),
        ),
    ];
    let mut targets = vec![Target {
        endpoint: "hello world (poem, 1 route)".into(),
        served_by: "–",
        url: format!("http://127.0.0.1:{hello_port}/hello"),
        header: None,
    }];
    for (name, path) in &paths {
        for (served_by, base) in [
            ("memory", &memory_base),
            ("memory, rendered", &rendering_base),
            ("clickhouse", &direct_base),
        ] {
            targets.push(Target {
                endpoint: name.to_string(),
                served_by,
                url: format!("{base}{path}"),
                header: None,
            });
        }
    }
    // Revalidation: the client already holds the answer.
    let etag = etag_of(&http, &format!("{memory_base}{}", paths[1].1)).await?;
    targets.push(Target {
        endpoint: "top salesmen nationwide, revalidated (304)".into(),
        served_by: "memory",
        url: format!("{memory_base}{}", paths[1].1),
        header: Some(format!("If-None-Match: {etag}")),
    });

    let mut runs: Vec<Vec<WrkResult>> = vec![Vec::new(); targets.len()];
    for round in 1..=settings.runs {
        for (target, results) in targets.iter().zip(runs.iter_mut()) {
            eprintln!("round {round}/{}: wrk {}", settings.runs, target.url);
            let result = wrk_blocking(target, &settings.load).await?;
            eprintln!(
                "  {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
                result.requests_per_second, result.p50_ms, result.p99_ms
            );
            results.push(result);
        }
    }
    hello_task.abort();
    let rss_peak = peak_rss_kib(memory.0.id())?;
    let direct_rss_peak = peak_rss_kib(direct.0.id())?;
    drop((memory, rendering, direct));

    let hello_rps = crate::summary(rps_of(&runs[0])).0;
    let measured: Vec<Measured> = targets
        .iter()
        .zip(runs)
        .map(|(target, results)| Measured::of(target, results, hello_rps))
        .collect();
    let provenance = crate::provenance::Provenance::collect().await;
    let mut versions = provenance.versions.clone();
    versions.insert("poem-openapi", locked_version("poem-openapi"));
    versions.insert("wrk", command_version("wrk", &["-v"]));
    let RunContext {
        when,
        machine,
        cores,
        profile,
    } = RunContext::now();
    let load = &settings.load;
    let (command, commit) = (&provenance.command, &provenance.commit);
    let mut md = format!(
        "# api\n\n{when}, commit `{commit}`, {cores} cores ({machine}), {profile} build of `tributary-api` and of \
         the hello-world server; `{command}`. wrk `-t{} -c{} -d{}s --latency --timeout={WRK_TIMEOUT_SECS}s` per \
         endpoint, {} rounds of every endpoint in turn, wrk on the same machine; median of the rounds, \
         [min–max] beside it. Served by `memory`: the API as configured by default (the latest publication \
         held in memory, answers already rendered from it sent again); `memory, rendered`: the same with \
         `serving.answer_cache_bytes = 0`, every answer rendered afresh from memory; `clickhouse`: the same binary with `serving.refresh_ms = 0`, every request read \
         from ClickHouse. Publication `{publication}` in ClickHouse database `{}`, month {month}, city {city}, \
         salesman {salesman}. The provenance row has {provenance_sales} sales, all on the page; its \
         records were read from `{records_from}` (the API's `records_from`).\n\n\
         | endpoint | served by | path | req/s | p50 ms | p99 ms | of hello world |\n\
         |---|---|---|---:|---:|---:|---:|\n",
        load.threads, load.connections, load.seconds, settings.runs, settings.database
    );
    for m in &measured {
        md.push_str(&format!(
            "| {} | {} | `{}` | {:.0} [{:.0}–{:.0}] | {:.2} | {:.2} [{:.2}–{:.2}] | {:.1}% |\n",
            m.endpoint,
            m.served_by,
            m.path,
            m.rps.0,
            m.rps.1,
            m.rps.2,
            m.p50_ms,
            m.p99_ms.0,
            m.p99_ms.1,
            m.p99_ms.2,
            100.0 * m.of_hello_world,
        ));
    }
    md.push_str(&format!(
        "\nPeak RSS (`VmHWM`) of the API serving from memory: {:.1} MiB after start-up and loading the \
         publication, {:.1} MiB at the end; of the API reading ClickHouse: {:.1} MiB at the end.\n\n\
         Versions: {}\n",
        rss_before as f64 / 1024.0,
        rss_peak as f64 / 1024.0,
        direct_rss_peak as f64 / 1024.0,
        versions
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let json = serde_json::json!({
        "benchmark": "api",
        "date": when,
        "commit": commit,
        "command": command,
        "machine": {"cores": cores, "cpu": machine},
        "profile": profile,
        "versions": versions,
        "load": load,
        "rounds": settings.runs,
        "database": settings.database,
        "publication_id": publication,
        "month": month,
        "city_id": city,
        "salesman_id": salesman,
        "provenance": {"path": provenance_path, "sales": provenance_sales, "records_from": records_from},
        "endpoints": measured,
        "api_peak_rss_kib": {
            "memory_after_startup": rss_before,
            "memory_end": rss_peak,
            "clickhouse_end": direct_rss_peak,
        },
    });
    Ok((md, json))
}

/// One thing wrk loads.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) endpoint: String,
    /// `memory`, `memory, rendered`, `clickhouse`, or `–` for the hello world.
    pub(crate) served_by: &'static str,
    pub(crate) url: String,
    /// One request header (`If-None-Match: "…"`).
    pub(crate) header: Option<String>,
}

fn rps_of(results: &[WrkResult]) -> Vec<f64> {
    results.iter().map(|r| r.requests_per_second).collect()
}

impl Measured {
    fn of(target: &Target, results: Vec<WrkResult>, hello_rps: f64) -> Self {
        let rps = crate::summary(rps_of(&results));
        let p99 = crate::summary(results.iter().map(|r| r.p99_ms).collect());
        let p50 = crate::summary(results.iter().map(|r| r.p50_ms).collect()).0;
        let path = target
            .url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|at| rest[at..].to_string()))
            .unwrap_or_default();
        Self {
            endpoint: target.endpoint.clone(),
            served_by: target.served_by.to_string(),
            path,
            rps,
            p50_ms: p50,
            p99_ms: p99,
            of_hello_world: rps.0 / hello_rps,
            runs: results,
        }
    }
}

/// Starts an API with `env` on a free port.
fn start_api_with(settings: &Settings, env: &[(&str, &str)]) -> Result<(ApiProcess, u16)> {
    start_api_with_env(&settings.api_bin, &settings.database, env)
}

/// Starts the API `bin` over ClickHouse `database` with `env` on a free port; its log goes to
/// the temporary folder.
pub(crate) fn start_api_with_env(
    bin: &Path,
    database: &str,
    env: &[(&str, &str)],
) -> Result<(ApiProcess, u16)> {
    let port = free_port()?;
    let log = std::env::temp_dir().join(format!("tributary-bench-api-{port}.log"));
    let api = start_api(bin, port, database, &log, env)?;
    Ok((api, port))
}

/// Waits for the API at `base` to answer with published rankings; returns the publication id,
/// the latest month, a city and a salesman to measure with.
pub(crate) async fn published(
    http: &reqwest::Client,
    base: &str,
) -> Result<(String, String, i64, i64)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let salesmen = loop {
        match get_json(http, &format!("{base}/v1/rankings/salesmen?limit=1")).await {
            Ok(body) if body["items"].as_array().is_some_and(|i| !i.is_empty()) => break body,
            Ok(body) => bail!("no published salesmen: {body} (run the pipeline: `dev/app up`)"),
            Err(error) if Instant::now() > deadline => {
                bail!("the API at {base} did not answer in 60 s: {error:#}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let months = get_json(http, &format!("{base}/v1/months")).await?;
    let month = months["items"]
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .filter_map(|m| m["period"].as_str())
                .next_back()
        })
        .context("no month published")?
        .to_string();
    let cities = get_json(http, &format!("{base}/v1/rankings/cities?limit=1")).await?;
    let city = cities["items"][0]["city_id"]
        .as_i64()
        .context("no city published")?;
    let salesman = salesmen["items"][0]["salesman_id"]
        .as_i64()
        .context("no salesman published")?;
    let publication = salesmen["publication"]["publication_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Ok((publication, month, city, salesman))
}

/// `/v1/rankings/salesmen?as_of=<T>`, T the moment the latest publication's lake snapshots were
/// all current (the latest commit time among them, from `/v1/snapshots`): a time travel the API
/// answers from the publication it retains (the goal: p99 ≤ 20 ms), checked to be
/// answered so before it is measured (`publication.run_id` is not `on-demand`).
async fn retained_as_of_path(http: &reqwest::Client, base: &str) -> Result<String> {
    let latest = get_json(http, &format!("{base}/v1/rankings/salesmen?limit=1")).await?;
    // A table without a snapshot (null id) pins no commit time.
    let pinned: BTreeSet<(&str, i64)> = latest["publication"]["lake_snapshots"]
        .as_array()
        .context("the latest publication lists no lake_snapshots")?
        .iter()
        .filter_map(|s| Some((s["table"].as_str()?, s["snapshot_id"].as_i64()?)))
        .collect();
    let snapshots = get_json(http, &format!("{base}/v1/snapshots")).await?;
    let mut committed = Vec::new();
    for table in snapshots["tables"].as_array().into_iter().flatten() {
        let name = table["table"].as_str().unwrap_or_default();
        for snapshot in table["snapshots"].as_array().into_iter().flatten() {
            let Some(id) = snapshot["snapshot_id"].as_i64() else {
                continue;
            };
            if pinned.contains(&(name, id)) {
                let at: chrono::DateTime<chrono::Utc> = snapshot["timestamp"]
                    .as_str()
                    .context("a snapshot without a timestamp")?
                    .parse()?;
                committed.push(at);
            }
        }
    }
    ensure!(
        committed.len() == pinned.len(),
        "/v1/snapshots lists {} of the latest publication's {} snapshots",
        committed.len(),
        pinned.len()
    );
    let at = committed
        .into_iter()
        .max()
        .context("a publication of no snapshot")?;
    let path = format!(
        "/v1/rankings/salesmen?as_of={}",
        at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    );
    let answer = get_json(http, &format!("{base}{path}")).await?;
    let run_id = answer["publication"]["run_id"].as_str().unwrap_or_default();
    ensure!(
        !run_id.is_empty() && run_id != "on-demand",
        "{path} was not answered from the retained publication (run_id {run_id:?})"
    );
    Ok(path)
}

/// The most sales a measured provenance row may have (the goal is for rows of up to 1 000).
const PROVENANCE_SALES: u64 = 1_000;

/// The provenance path of the city-salesman row of `month` with the most sales up to `most`
/// (all of its records on one page), and its sales.
async fn provenance_row(
    http: &reqwest::Client,
    base: &str,
    month: &str,
    most: u64,
) -> Result<(String, u64)> {
    let cities = get_json(
        http,
        &format!("{base}/v1/rankings/cities?month={month}&limit=1000"),
    )
    .await?;
    let mut best: Option<(u64, i64, i64)> = None;
    for city in cities["items"].as_array().into_iter().flatten() {
        let city_id = city["city_id"].as_i64().context("a city without an id")?;
        let salesmen = get_json(
            http,
            &format!("{base}/v1/rankings/cities/{city_id}/salesmen?month={month}&limit=1000"),
        )
        .await?;
        for row in salesmen["items"].as_array().into_iter().flatten() {
            let (Some(sales), Some(salesman_id)) =
                (row["sales"].as_u64(), row["salesman_id"].as_i64())
            else {
                continue;
            };
            if sales <= most && best.is_none_or(|(b, ..)| sales > b) {
                best = Some((sales, city_id, salesman_id));
            }
        }
    }
    let (sales, city, salesman) =
        best.with_context(|| format!("no city-salesman row of {month} with at most {most} sales"))?;
    Ok((
        format!(
            "/v1/rankings/cities/{city}/salesmen/{salesman}/provenance?month={month}&limit={most}"
        ),
        sales,
    ))
}

/// The `ETag` of the answer at `url`, once the API holds the publication in memory (10 s).
async fn etag_of(http: &reqwest::Client, url: &str) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = http.get(url).send().await?;
        ensure!(
            response.status().is_success(),
            "GET {url}: {}",
            response.status()
        );
        if let Some(tag) = response.headers().get("etag").and_then(|v| v.to_str().ok()) {
            return Ok(tag.to_string());
        }
        ensure!(
            Instant::now() < deadline,
            "GET {url} has no ETag after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 20s test @ http://127.0.0.1:8080/v1/rankings/salesmen
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.21ms    1.02ms  40.11ms   90.12%
    Req/Sec     5.01k   312.40     5.80k    71.00%
  Latency Distribution
     50%    3.05ms
     75%    3.60ms
     90%    4.20ms
     99%    1.20s
  199512 requests in 20.00s, 150.21MB read
  Socket errors: connect 0, read 0, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:   9975.12
Transfer/sec:      7.51MB
";

    #[test]
    fn reads_wrk_latency_report() {
        let r = parse_wrk(WRK).unwrap();
        assert_eq!(r.requests_per_second, 9975.12);
        assert_eq!(r.p50_ms, 3.05);
        assert_eq!(r.p99_ms, 1200.0);
        assert_eq!((r.requests, r.non_2xx, r.socket_errors), (199512, 7, 2));
        assert_eq!(millis("850.00us"), Some(0.85));
        assert!(parse_wrk("Requests/sec: 1").is_err());
    }
}
