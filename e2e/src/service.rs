//! One of Tributary's binaries as a child process of a test: started with its settings, its
//! log in `.stack/e2e/<name>.log`, killed (SIGKILL) or stopped (SIGTERM) and started again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{bin_dir, repo_root};

/// One of Tributary's binaries running as a child process; killed when dropped.
pub struct Service {
    name: String,
    bin: PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Service {
    /// Starts `bin` (e.g. `tributary-lake`) with `args` and `TRIBUTARY_*` settings in `env`.
    pub fn start(name: &str, bin: &str, args: &[&str], env: &BTreeMap<String, String>) -> Self {
        let path = bin_dir().join(bin);
        assert!(
            path.exists(),
            "{} is missing: build the binaries first (`make build`, which `make test` runs)",
            path.display()
        );
        let log_dir = repo_root().join(".stack/e2e");
        std::fs::create_dir_all(&log_dir).expect("create .stack/e2e");
        let mut service = Self {
            name: name.to_string(),
            bin: path,
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env.clone(),
            log: log_dir.join(format!("{name}.log")),
            child: None,
        };
        // A new service starts a new log (restarts append to it): tests read their service's
        // log, and must not find an earlier run's lines there.
        std::fs::write(&service.log, b"").expect("truncate service log");
        service.spawn();
        service
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open service log");
        let child = Command::new(&self.bin)
            .args(&self.args)
            // The local stack's credentials are the development ones (common/src/profile.rs).
            .env("TRIBUTARY_PROFILE", "development")
            .envs(&self.env)
            .env("RUST_LOG", "info")
            .current_dir(repo_root())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        self.child = Some(child);
    }

    /// SIGKILLs the process: no chance to flush or commit.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL service");
            child.wait().expect("reap service");
        }
    }

    /// SIGTERM, as an operator's stop (it drains and closes its runs); SIGKILL after 30 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        child.kill().expect("SIGKILL service");
        child.wait().expect("reap service");
    }

    /// Starts the process again with the same arguments and settings (SIGKILLing it first if
    /// it still runs).
    pub fn restart(&mut self) {
        self.kill_hard();
        self.spawn();
    }

    /// Stops the process (SIGTERM, as [`Self::stop`]) and starts it again with `key` set to
    /// `value` in its environment, or removed when `None`.
    pub fn restart_with_env(&mut self, key: &str, value: Option<&str>) {
        self.stop();
        match value {
            Some(value) => self.env.insert(key.to_string(), value.to_string()),
            None => self.env.remove(key),
        };
        self.spawn();
    }

    /// Waits up to `timeout` for the process to exit by itself and returns how it ended;
    /// `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts the process again if it is not running (after it exited by itself).
    pub fn start_again(&mut self) {
        if self.child.is_none() {
            self.spawn();
        }
    }

    /// Fails if the process has exited, pointing at its log.
    pub fn assert_running(&mut self) {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!(
                "{} exited with {status}; see {}",
                self.name,
                self.log.display()
            );
        }
    }

    /// The service's name (its log is `.stack/e2e/<name>.log`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Path of the service's log file.
    pub fn log(&self) -> &Path {
        &self.log
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// Reconnection noise of librdkafka while a broker is away: says nothing a failure needs.
const BROKER_AWAY_NOISE: [&str; 4] = ["Connect to ipv4", "Global error", "FAIL [", "REQTMOUT"];

/// For a failure message: the last `per_service` warnings and errors in each service's log
/// (without librdkafka's reconnection noise), after copying the logs to `.stack/e2e/kept/<keep_as>/`
/// where the next test starting services of the same names does not overwrite them.
pub fn last_warnings(services: &[Service], per_service: usize, keep_as: &str) -> String {
    let kept = repo_root().join(".stack/e2e/kept").join(keep_as);
    let copied = std::fs::create_dir_all(&kept).and_then(|()| {
        services.iter().try_for_each(|s| {
            std::fs::copy(&s.log, kept.join(format!("{}.log", s.name))).map(|_| ())
        })
    });
    let mut lines = vec![match copied {
        Ok(()) => format!("logs kept in {}", kept.display()),
        Err(e) => format!("logs not kept ({e})"),
    }];
    for service in services {
        let text = std::fs::read_to_string(&service.log).unwrap_or_default();
        let warnings: Vec<String> = text
            .lines()
            .map(strip_ansi)
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .filter(|l| !BROKER_AWAY_NOISE.iter().any(|noise| l.contains(noise)))
            .collect();
        let last = &warnings[warnings.len().saturating_sub(per_service)..];
        lines.push(format!(
            "{}: {} warnings and errors, the last:",
            service.name,
            warnings.len()
        ));
        lines.extend(
            last.iter()
                .map(|l| format!("  {}", l.chars().take(400).collect::<String>())),
        );
    }
    lines.join("\n")
}

/// `line` without ANSI colour sequences (`ESC [ … m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_sequences_are_stripped() {
        assert_eq!(
            strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m x"),
            "2026  WARN x"
        );
    }
}
