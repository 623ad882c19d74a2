//! Harness for the end-to-end tests: the real local stack (`dev/up`) plus Tributary's own
//! binaries, started as processes with their own lake namespace and ClickHouse database.
//!
//! Nothing here mocks a service. When the stack is not running the tests fail with a message
//! that says how to start it.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Services of the local stack the end-to-end tests need, with their ports.
const STACK: &[(&str, u16)] = &[
    ("postgres", 5432),
    ("kafka", 9092),
    ("kafka-connect", 8083),
    ("object store", 9000),
    ("clickhouse", 8123),
];

/// Fails the test loudly unless every service of the local stack answers on its port.
pub fn require_stack() {
    let missing: Vec<String> = STACK
        .iter()
        .filter(|(_, port)| {
            TcpStream::connect_timeout(&([127, 0, 0, 1], *port).into(), Duration::from_secs(1))
                .is_err()
        })
        .map(|(name, port)| format!("{name} (127.0.0.1:{port})"))
        .collect();
    assert!(
        missing.is_empty(),
        "the local stack is not running: {} unreachable. Run `make test` (or `dev/up` first).",
        missing.join(", ")
    );
}

/// A short unique suffix for namespaces, databases and topics of one test run.
pub fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_string()
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// The repository root (this crate lives in `<root>/e2e`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e has a parent")
        .to_path_buf()
}

/// Directory holding the workspace's binaries: the test executable is in `<target>/debug/deps`.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

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

    /// Starts the process again with the same arguments and settings.
    pub fn restart(&mut self) {
        self.kill_hard();
        self.spawn();
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

/// Connects to the `salesdb` source database.
pub async fn salesdb() -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(
        "host=127.0.0.1 port=5432 user=tributary password=tributary dbname=salesdb",
        tokio_postgres::NoTls,
    )
    .await
    .context("connect to salesdb on 127.0.0.1:5432 (run `make test` or `dev/up`)")?;
    tokio::spawn(connection);
    Ok(client)
}

/// Polls `check` until it returns `Ok(Some(v))`, or fails after `timeout` with the last reason.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last = String::from("condition never checked");
    while start.elapsed() < timeout {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => last = "condition not met yet".into(),
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("gave up after {timeout:?}: {last}")
}

/// Lander settings pointing the file and ERP topics at names nobody writes to, for tests whose
/// oracle is Postgres alone: the demo and other tests publish to the default topics of the
/// same Kafka.
pub fn postgres_only_topics(suffix: &str) -> BTreeMap<String, String> {
    [
        "FILE_SALES",
        "FILE_DEAD_LETTERS",
        "ERP_SALES",
        "ERP_DEAD_LETTERS",
    ]
    .iter()
    .map(|t| {
        (
            format!("TRIBUTARY_TOPICS__{t}"),
            format!("e2e.{suffix}.unused.{}", t.to_ascii_lowercase()),
        )
    })
    .collect()
}
