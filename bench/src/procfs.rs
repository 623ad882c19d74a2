//! A process's peak resident memory, from Linux's `/proc`: what the benchmarks report as peak RSS.

use anyhow::{Context, Result};

/// `VmHWM` (peak resident set) of `pid`, KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/<pid>/status")
}

/// [`peak_rss_kib`] in MiB.
pub(crate) fn peak_rss_mib(pid: u32) -> Result<f64> {
    Ok(peak_rss_kib(pid)? as f64 / 1024.0)
}

/// Resets `pid`'s peak resident set to its current one, so the next [`peak_rss_kib`] is the
/// peak of what follows.
pub(crate) fn reset_peak_rss(pid: u32) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .with_context(|| format!("resetting the peak RSS of {pid} (needs root or the same user)"))
}
