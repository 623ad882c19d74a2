//! The CDC benchmark's report: `cdc.md` and `cdc.json` from the runs' results (the tables of
//! rates and freshness, where a change waits, CPU per process and per landed event, peak RSS)
//! and the freshness chart.

use std::path::Path;

use anyhow::Result;
use serde_json::{Value, json};

use super::RateResult;
use crate::RunContext;

fn fmt_s(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.2}"))
}

/// A table of one row per watched process and one column per window, each cell `cell(window,
/// the process's CPU % in it)`, under `title`.
fn per_process_table(
    title: &str,
    results: &[RateResult],
    cell: impl Fn(&RateResult, f64) -> String,
) -> String {
    let mut md = format!("\n{title}\n\n| process |");
    for r in results {
        md.push_str(&format!(" {:.0}/s |", r.target_rate));
    }
    md.push_str("\n|---|");
    for _ in results {
        md.push_str("---:|");
    }
    md.push('\n');
    // Every process of any window: a Postgres role (an autovacuum worker) may work in some only.
    let names: std::collections::BTreeSet<&String> =
        results.iter().flat_map(|r| r.cpu_percent.keys()).collect();
    for name in names {
        md.push_str(&format!("| {name} |"));
        for r in results {
            let cpu = r.cpu_percent.get(name).copied().unwrap_or(0.0);
            md.push_str(&format!(" {} |", cell(r, cpu)));
        }
        md.push('\n');
    }
    md
}

/// Microseconds of CPU per landed event, from a process's CPU use over a window (% of one core)
/// and the events landed per second in it; `None` when nothing landed.
pub(super) fn cpu_micros_per_event(cpu_percent: f64, landed_per_second: f64) -> Option<f64> {
    (landed_per_second > 0.0).then(|| cpu_percent / 100.0 / landed_per_second * 1e6)
}

/// Per rate with more than one window: the median [min–max] of the landed rate and of the
/// freshness percentiles over its windows (empty when every rate ran once).
fn rate_summary(results: &[RateResult]) -> String {
    let mut rates: Vec<f64> = results.iter().map(|r| r.target_rate).collect();
    rates.dedup();
    if rates.len() == results.len() {
        return String::new();
    }
    let mut md = String::from(
        "\nPer rate, median [min–max] over its windows:\n\n\
         | target | windows | lander → Iceberg /s | freshness p50 s | p95 s | p99 s |\n\
         |---:|---:|---:|---:|---:|---:|\n",
    );
    let spread = |values: Vec<f64>| match values.is_empty() {
        true => "–".to_string(),
        false => {
            let (median, min, max) = crate::summary(values);
            format!("{median:.2} [{min:.2}–{max:.2}]")
        }
    };
    for rate in rates {
        let windows: Vec<&RateResult> = results.iter().filter(|r| r.target_rate == rate).collect();
        let freshness =
            |i: usize| spread(windows.iter().filter_map(|r| r.freshness_s[i]).collect());
        let landed = crate::summary(windows.iter().map(|r| r.lander_rate).collect());
        md.push_str(&format!(
            "| {rate:.0} | {} | {:.0} [{:.0}–{:.0}] | {} | {} | {} |\n",
            windows.len(),
            landed.0,
            landed.1,
            landed.2,
            freshness(0),
            freshness(1),
            freshness(2),
        ));
    }
    md
}

pub(super) fn write(
    out: &Path,
    results: &[RateResult],
    settings: &Value,
    provenance: &crate::provenance::Provenance,
) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let context = RunContext::now();
    let RunContext {
        when,
        machine,
        cores,
        profile,
    } = &context;
    let mut md = context.heading("cdc");
    md.push_str(
        "Postgres → Debezium → Kafka → lander → Iceberg → marts → API, against Debezium alone \
         (a plain consumer of the connector's topic). Rates in changes/s over the load window; \
         times in seconds.\n\n\
         | target | Postgres committed | Debezium alone | lander into Iceberg | lander drain after load | Debezium delay p50/p95/p99 | freshness p50 | p95 | p99 | txns measured (unseen) | load avg at start |\n\
         |---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|\n",
    );
    for r in results {
        md.push_str(&format!(
            "| {:.0} | {:.0} | {:.0} | {:.0} | {} | {} / {} / {} | {} | {} | {} | {} ({}) | {} |\n",
            r.target_rate,
            r.pg_rate,
            r.debezium_rate,
            r.lander_rate,
            fmt_s(r.lander_drain_s),
            fmt_s(r.debezium_delay_s[0]),
            fmt_s(r.debezium_delay_s[1]),
            fmt_s(r.debezium_delay_s[2]),
            fmt_s(r.freshness_s[0]),
            fmt_s(r.freshness_s[1]),
            fmt_s(r.freshness_s[2]),
            r.freshness_samples,
            r.freshness_unseen,
            r.loadavg
        ));
    }
    md.push_str(&rate_summary(results));
    md.push_str(
        "\nWhere a change waits, during the load window: the lander's pg_sale commits and their mean time (Parquet write + Iceberg commit), its consumer lag when the load stopped, and the marts' runs that published and their mean time (read the new events, fold, commit the state, publish):\n\n| target | lander commits | mean commit s | lag at load end (records) | marts runs | mean run s |\n|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in results {
        md.push_str(&format!(
            "| {:.0} | {} | {} | {:.0} | {} | {} |\n",
            r.target_rate,
            r.lander_commits,
            fmt_s(r.lander_commit_mean_s),
            r.lander_lag_at_end,
            r.marts_runs,
            fmt_s(r.marts_run_mean_s),
        ));
    }
    md.push_str(&per_process_table(
        "CPU during the load window, % of one core (2 cores = 200 %):",
        results,
        |_, cpu| format!("{cpu:.0}"),
    ));
    md.push_str(&per_process_table(
        "CPU per landed event: µs of CPU each process spent during the window per pg_sale \
         event the lander landed in it (the whole pipeline's cost of a change, process by process):",
        results,
        |r, cpu| match cpu_micros_per_event(cpu, r.lander_rate) {
            Some(micros) => format!("{micros:.1}"),
            None => "–".to_string(),
        },
    ));
    md.push_str("\nPeak RSS (VmHWM) of our services over the whole run, MiB:\n\n| service | MiB |\n|---|---:|\n");
    if let Some(rss) = settings["peak_rss_mib"].as_object() {
        for (name, mib) in rss {
            md.push_str(&format!(
                "| {name} | {} |\n",
                mib.as_f64().map_or("–".into(), |m| format!("{m:.0}"))
            ));
        }
    }
    md.push_str(&format!(
        "\nSettings: `{}`\n\n{}\n![freshness](cdc-freshness.svg)\n",
        serde_json::to_string(&json!({
            "lander": settings["lander"], "marts": settings["marts"], "freshness": settings["freshness"],
            "side_rate": settings["side_rate"], "seconds": settings["seconds"], "runs": settings["runs"], "seed": settings["seed"],
            "debezium": settings["debezium"]["version"], "source": settings["source"],
        }))?,
        provenance.markdown(),
    ));
    print!("{md}");
    std::fs::write(out.join("cdc.md"), &md)?;
    let json = json!({"benchmark": "cdc", "when": when, "cores": cores, "machine": machine,
                      "profile": profile, "provenance": provenance.json(), "config": settings,
                      "rows": results});
    std::fs::write(out.join("cdc.json"), serde_json::to_string_pretty(&json)?)?;
    std::fs::write(
        out.join("cdc-freshness.svg"),
        crate::plot::cdc_chart(&json)?,
    )?;
    Ok(())
}
