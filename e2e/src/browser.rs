//! Headless Chromium (Debian's `chromium`, installed by `dev/prereqs`): render a page as a
//! person would see it — its DOM after parsing, and a PNG screenshot.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

/// The Chromium binary: `CHROMIUM` if set (a test-only override), else `chromium` on the PATH.
fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_string())
}

/// Runs headless Chromium on `url` with `extra` flags, in a profile directory of its own (so
/// runs in parallel never share a lock), and fails loudly if it is missing.
fn run(url: &str, extra: &[String]) -> Result<Output> {
    let profile =
        std::env::temp_dir().join(format!("tributary-chromium-{}", crate::unique_suffix()));
    let mut command = Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url);
    let output = command.output().with_context(|| {
        format!(
            "cannot run {}: install Debian's chromium (`make prereqs` / dev/prereqs does)",
            chromium()
        )
    });
    let _ = std::fs::remove_dir_all(&profile);
    let output = output?;
    if !output.status.success() {
        bail!(
            "chromium failed on {url} ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

/// The page's DOM after Chromium parsed it (`--dump-dom`).
pub fn dump_dom(url: &str) -> Result<String> {
    let output = run(url, &["--dump-dom".to_string()])?;
    let dom = String::from_utf8(output.stdout).context("the DOM is not UTF-8")?;
    if dom.trim().is_empty() {
        bail!("chromium printed no DOM for {url}");
    }
    Ok(dom)
}

/// The DOM once the page's own scripts have run: Chromium lets up to `budget_ms` of virtual
/// time pass (it waits for the page's fetches) before dumping it.
pub fn dump_dom_after_scripts(url: &str, budget_ms: u32) -> Result<String> {
    let output = run(
        url,
        &[
            format!("--virtual-time-budget={budget_ms}"),
            "--dump-dom".to_string(),
        ],
    )?;
    let dom = String::from_utf8(output.stdout).context("the DOM is not UTF-8")?;
    if dom.trim().is_empty() {
        bail!("chromium printed no DOM for {url}");
    }
    Ok(dom)
}

/// A screenshot like [`screenshot`], taken once the page's scripts have run (see
/// [`dump_dom_after_scripts`]).
pub fn screenshot_after_scripts(url: &str, path: &Path, budget_ms: u32) -> Result<PathBuf> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let path = std::path::absolute(path)?;
    run(
        url,
        &[
            format!("--virtual-time-budget={budget_ms}"),
            format!("--screenshot={}", path.display()),
        ],
    )?;
    let bytes = std::fs::read(&path)
        .with_context(|| format!("chromium wrote no screenshot at {}", path.display()))?;
    if !bytes.starts_with(b"\x89PNG") {
        bail!("{} is not a PNG", path.display());
    }
    Ok(path)
}

/// A 1280×900 screenshot of `url`, written to `path` (parent folders created); returns the path.
pub fn screenshot(url: &str, path: &Path) -> Result<PathBuf> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let path = std::path::absolute(path)?;
    run(url, &[format!("--screenshot={}", path.display())])?;
    let bytes = std::fs::read(&path)
        .with_context(|| format!("chromium wrote no screenshot at {}", path.display()))?;
    if !bytes.starts_with(b"\x89PNG") {
        bail!("{} is not a PNG", path.display());
    }
    Ok(path)
}

/// The text inside the first element whose opening tag contains `marker` (e.g.
/// `id="dead-letters-total"`), tags stripped and whitespace trimmed.
pub fn element_text(dom: &str, marker: &str) -> Option<String> {
    let at = dom.find(marker)?;
    let open_end = at + dom[at..].find('>')? + 1;
    let tag_start = dom[..at].rfind('<')?;
    let name: String = dom[tag_start + 1..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let close = dom[open_end..].find(&format!("</{name}>"))? + open_end;
    let mut text = String::new();
    let mut in_tag = false;
    for c in dom[open_end..close].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    Some(text.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_text_finds_by_attribute() {
        let dom =
            r#"<p>total <b id="dead-letters-total">2</b></p><td id="x"><span>a</span> b</td>"#;
        assert_eq!(
            element_text(dom, r#"id="dead-letters-total""#).as_deref(),
            Some("2")
        );
        assert_eq!(element_text(dom, r#"id="x""#).as_deref(), Some("a b"));
        assert_eq!(element_text(dom, r#"id="y""#), None);
    }
}
