//! The local stack's own services (`dev/up`): SIGKILLed and started again by the chaos test, as a
//! crash of the machine's Postgres, broker, Connect worker, ClickHouse or object store would.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::repo_root;

/// The stack's services the chaos test may kill: each is started again by `dev/up <name>`.
pub const KILLABLE: [&str; 5] = ["postgres", "kafka", "connect", "clickhouse", "s3"];

fn pidfile(name: &str) -> PathBuf {
    repo_root().join(".stack").join(name).join("pid")
}

fn alive(pid: i32) -> bool {
    PathBuf::from(format!("/proc/{pid}")).exists()
}

/// SIGKILLs the stack's service `name` and everything in its process group (`dev/lib.sh` starts
/// each with `setsid`: a JVM's helpers, Postgres's backends), with no chance to flush, and waits
/// until it is gone.
pub fn kill_hard(name: &str) -> Result<()> {
    let path = pidfile(name);
    let pid: i32 = std::fs::read_to_string(&path)
        .with_context(|| format!("read {} (is the stack up?)", path.display()))?
        .trim()
        .parse()
        .with_context(|| format!("{} holds no pid", path.display()))?;
    ensure!(alive(pid), "{name} (pid {pid}) is not running");
    let group = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status()?;
    if !group.success() {
        // not a group leader (Postgres is started by pg_ctl): its backends follow the postmaster
        Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()?;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        ensure!(
            Instant::now() < deadline,
            "{name} (pid {pid}) still runs 10 s after SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Starts the stack's service `name` again with `dev/up <name>`, which returns once it is
/// healthy; its output goes to `.stack/e2e/dev-up-<name>.log`.
pub fn start(name: &str) -> Result<Duration> {
    run_dev("up", name)
}

/// Runs `dev/<command> <name>`, its output appended to `.stack/e2e/dev-<command>-<name>.log`;
/// returns how long it took.
fn run_dev(command: &str, name: &str) -> Result<Duration> {
    let log_path = repo_root()
        .join(".stack/e2e")
        .join(format!("dev-{command}-{name}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("open {}", log_path.display()))?;
    let started = Instant::now();
    let status = Command::new(repo_root().join("dev").join(command))
        .arg(name)
        .current_dir(repo_root())
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("run dev/{command}"))?;
    ensure!(
        status.success(),
        "dev/{command} {name} failed ({status}); see {}",
        log_path.display()
    );
    Ok(started.elapsed())
}

/// Stops the stack's service `name` cleanly with `dev/down <name>` (an outage, not a crash).
pub fn stop(name: &str) -> Result<()> {
    run_dev("down", name).map(|_| ())
}
