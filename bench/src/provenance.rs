//! What every results file records about how its numbers were made, so each can be traced and
//! measured again: the commit (`-dirty` when the work tree differed), the command line, and the
//! versions of what was measured and of what it ran on.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{Value, json};

/// The commit, command and versions of one benchmark run.
#[derive(Debug, Clone)]
pub(crate) struct Provenance {
    pub(crate) commit: String,
    pub(crate) command: String,
    pub(crate) versions: BTreeMap<&'static str, String>,
}

impl Provenance {
    /// Collected now: versions of the crates from `Cargo.lock`, of librdkafka from the library
    /// linked in, of rustc, Kafka and Debezium from the local stack (`dev/lib.sh` pins them; the
    /// Debezium connector's own answer is preferred when Connect runs) and of ClickHouse from
    /// the server. What cannot be found is recorded as empty rather than guessed.
    pub(crate) async fn collect() -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .expect("HTTP client");
        let clickhouse = match http
            .post("http://127.0.0.1:8123/")
            .body("SELECT version()")
            .send()
            .await
        {
            Ok(answer) => answer.text().await.unwrap_or_default().trim().to_string(),
            Err(_) => String::new(),
        };
        let debezium = match debezium_version(&http).await {
            Some(version) => version,
            None => pinned("DEBEZIUM_VERSION"),
        };
        let versions = BTreeMap::from([
            ("tributary", env!("CARGO_PKG_VERSION").to_string()),
            ("rustc", command_version("rustc", &["--version"])),
            ("librdkafka", rdkafka::util::get_rdkafka_version().1),
            ("rdkafka", locked_version("rdkafka")),
            ("iceberg-rust", locked_version("iceberg")),
            ("datafusion", locked_version("datafusion")),
            ("arrow", locked_version("arrow")),
            ("parquet", locked_version("parquet")),
            ("poem", locked_version("poem")),
            ("kafka", pinned("KAFKA_VERSION")),
            ("debezium", debezium),
            ("clickhouse", clickhouse),
            ("kernel", command_version("uname", &["-r"])),
        ]);
        Self {
            commit: git_commit(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            versions,
        }
    }

    /// One Markdown paragraph.
    pub(crate) fn markdown(&self) -> String {
        let versions: Vec<String> = self
            .versions
            .iter()
            .map(|(name, version)| format!("{name} {version}"))
            .collect();
        format!(
            "Commit `{}`; `{}`.\n\nVersions: {}.\n",
            self.commit,
            self.command,
            versions.join(", ")
        )
    }

    /// `{"commit", "command", "versions"}`.
    pub(crate) fn json(&self) -> Value {
        json!({"commit": self.commit, "command": self.command, "versions": self.versions})
    }
}

/// The Debezium Postgres connector's version as Kafka Connect reports it.
async fn debezium_version(http: &reqwest::Client) -> Option<String> {
    let plugins: Value = http
        .get("http://127.0.0.1:8083/connector-plugins")
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    plugins
        .as_array()?
        .iter()
        .find(|p| p["class"] == "io.debezium.connector.postgresql.PostgresConnector")
        .and_then(|p| p["version"].as_str().map(str::to_string))
}

/// A version `dev/lib.sh` pins for the local stack (`NAME=version`).
fn pinned(name: &str) -> String {
    let script = include_str!("../../dev/lib.sh");
    let prefix = format!("{name}=");
    script
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default()
        .to_string()
}

/// The first line `program args` prints (stdout or stderr), or empty.
pub(crate) fn command_version(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines().next().unwrap_or_default().trim().to_string()
        })
        .unwrap_or_default()
}

/// The version of `package` in the workspace's `Cargo.lock`.
pub(crate) fn locked_version(package: &str) -> String {
    let lock = include_str!("../../Cargo.lock");
    let header = format!("name = \"{package}\"\nversion = \"");
    lock.find(&header)
        .and_then(|at| lock[at + header.len()..].split('"').next())
        .unwrap_or("?")
        .to_string()
}

/// The commit the benchmark ran at (`git rev-parse HEAD`, `-dirty` when the work tree differs
/// outside `bench/results`).
pub(crate) fn git_commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let head = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // Results files a benchmark run rewrote (one of `make bench`'s earlier steps) do not make
    // the measured code differ.
    match git(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ".",
        ":(exclude)bench/results",
    ]) {
        Some(changes) if !changes.is_empty() => format!("{head}-dirty"),
        _ => head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_and_locked_versions_are_found() {
        assert!(
            pinned("KAFKA_VERSION").starts_with('4'),
            "{}",
            pinned("KAFKA_VERSION")
        );
        assert!(pinned("DEBEZIUM_VERSION").ends_with("Final"));
        assert!(locked_version("iceberg").starts_with("0."));
        assert!(locked_version("datafusion").starts_with("53"));
        assert_eq!(locked_version("no-such-crate"), "?");
    }
}
