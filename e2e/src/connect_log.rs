//! What the local Kafka Connect worker last warned about, read from the end of its log, for a
//! failing test's message: why a connector stays stopped is said there, not in its status.

use crate::repo_root;

/// The last warnings and errors of the local Kafka Connect worker, from the end of
/// `.stack/connect/connect.log`: its herder's (the part that joins the group and starts
/// connectors: why a connector stays stopped is said there, not in its status) and those of
/// `connector`'s own threads (its task and Debezium's, e.g. a task that could not stop or a slot
/// held by another reader).
pub(crate) fn worker_warnings(connector: &str) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let path = repo_root().join(".stack/connect/connect.log");
    let tail = std::fs::File::open(&path).and_then(|mut file| {
        let length = file.metadata()?.len();
        file.seek(SeekFrom::Start(length.saturating_sub(4 << 20)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    });
    let tail = match tail {
        Ok(tail) => tail,
        Err(e) => return format!("no worker log at {} ({e})", path.display()),
    };
    let warnings = |of: &dyn Fn(&str) -> bool| -> Vec<String> {
        let lines: Vec<&str> = tail
            .lines()
            .filter(|line| (line.contains(" WARN ") || line.contains(" ERROR ")) && of(line))
            .collect();
        lines[lines.len().saturating_sub(3)..]
            .iter()
            .map(|line| line.chars().take(400).collect())
            .collect()
    };
    let debezium = connector.replace('-', "_");
    format!(
        "worker's last herder warnings: {:?}; the connector's last warnings: {:?}",
        warnings(&|line| line.contains("DistributedHerder")),
        warnings(&|line| line.contains(connector) || line.contains(&debezium)),
    )
}
