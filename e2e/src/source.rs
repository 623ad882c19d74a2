//! A source database of one end-to-end run, captured by a Debezium connector of its own.
//!
//! The demo's `salesdb`, its connector `salesdb-connector`, slot `tributary_salesdb` and topics
//! `salesdb.public.*` belong to the demo: a stack that has carried load holds millions of
//! changes there, which a fresh lander would replay from offset 0, and an oracle reading the
//! whole of `salesdb` would compare against other writers' changes. So each run that compares
//! against Postgres gets, under the run's suffix:
//!
//! - a database `e2e_<suffix>` owned by `tributary`, with `ingest/sql/schema.sql` and
//!   `ingest/sql/sample.sql` loaded (the same schema and master data as `salesdb`) and the
//!   publication renamed to `e2e_<suffix>`;
//! - a Debezium connector `e2e-<suffix>` on the stack's Connect worker with the settings of
//!   `ingest/debezium/salesdb-connector.json` (`${env:…}` placeholders left for the worker to
//!   resolve) but its own database, topic prefix `e2e_<suffix>`, slot `e2e_<suffix>` and
//!   publication; its OpenLineage integration is off, so the demo's lineage store and events
//!   file do not list a job per test run (the demo connector's own lineage is tested on the
//!   demo connector, `lineage.rs`);
//! - the topics it writes: `e2e_<suffix>.public.{city,salesman,sale}` and Debezium's heartbeat
//!   topic `__debezium-heartbeat.e2e_<suffix>`.
//!
//! [`SourceDb::remove`] (called when the test has passed) deletes all of it. When a run fails
//! (or never calls it), dropping the `SourceDb` removes the connector, its replication slot (a
//! slot left behind holds the WAL of the whole cluster) and its topics (the run's lake keeps
//! what its lander read from them), and keeps the database to look at: it prints its name and
//! how to remove it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use serde_json::{Value, json};

use crate::repo_root;

const CONNECT: &str = "http://127.0.0.1:8083";
const BROKERS: &str = "127.0.0.1:9092";
const PG: &str = "host=127.0.0.1 port=5432 user=tributary password=tributary";
/// The database administrative statements run in (it always exists on the stack).
const ADMIN_DB: &str = "salesdb";
/// The tables Debezium captures, each into `<prefix>.public.<table>`.
const TABLES: [&str; 3] = ["city", "salesman", "sale"];
/// How long the connector may take to start its task.
const CONNECTOR_START: Duration = Duration::from_secs(90);
/// How long the slot may stay active after its connector was deleted.
const SLOT_RELEASE: Duration = Duration::from_secs(30);

/// The names one run's source is created under, all carrying the run's suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Names {
    database: String,
    connector: String,
    prefix: String,
    slot: String,
    publication: String,
}

impl Names {
    fn new(suffix: &str) -> Self {
        let base = format!("e2e_{suffix}");
        Self {
            database: base.clone(),
            connector: format!("e2e-{suffix}"),
            prefix: base.clone(),
            slot: base.clone(),
            publication: base,
        }
    }

    fn topic(&self, table: &str) -> String {
        format!("{}.public.{table}", self.prefix)
    }

    /// Every topic the connector writes: the tables' and Debezium's heartbeat topic.
    fn topics(&self) -> Vec<String> {
        TABLES
            .iter()
            .map(|t| self.topic(t))
            .chain([format!("__debezium-heartbeat.{}", self.prefix)])
            .collect()
    }
}

/// The source database of one run and the Debezium connector capturing it (see the module
/// docs). Create it with [`SourceDb::create`]; call [`SourceDb::remove`] when the test passed.
pub struct SourceDb {
    names: Names,
    client: tokio_postgres::Client,
    removed: bool,
}

async fn connect(dbname: &str) -> Result<tokio_postgres::Client> {
    let url = format!("{PG} dbname={dbname}");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .with_context(|| {
            format!(
                "connect to database {dbname} on 127.0.0.1:5432 as tributary \
                 (run `make test`, which starts the stack)"
            )
        })?;
    tokio::spawn(connection);
    Ok(client)
}

impl SourceDb {
    /// Creates the database `e2e_<suffix>` with the `salesdb` schema and sample data, registers
    /// its connector and waits until the connector's task runs and Kafka Connect has stored an
    /// offset past its initial snapshot. On any failure what was created is removed again and
    /// the error says what failed.
    pub async fn create(suffix: &str) -> Result<Self> {
        let names = Names::new(suffix);
        let admin = connect(ADMIN_DB).await?;
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {} OWNER tributary",
                names.database
            ))
            .await
            .with_context(|| {
                format!(
                    "create database {} as tributary (it needs CREATEDB; \
                     run `make test`, which sets the stack up)",
                    names.database
                )
            })?;
        let client = match connect(&names.database).await {
            Ok(client) => client,
            Err(e) => {
                remove_all(&names, false).await.ok();
                return Err(e);
            }
        };
        let mut source = Self {
            names,
            client,
            removed: false,
        };
        if let Err(e) = source.set_up().await {
            let cleanup = remove_all(&source.names, false).await;
            source.removed = cleanup.is_ok();
            return Err(e.context(format!(
                "setting up the e2e source {} (run `make test`, which starts the stack \
                 with Kafka Connect and Debezium){}",
                source.names.database,
                cleanup
                    .err()
                    .map(|c| format!("; cleaning up failed too: {c:#}"))
                    .unwrap_or_default()
            )));
        }
        Ok(source)
    }

    async fn set_up(&self) -> Result<()> {
        for file in ["ingest/sql/schema.sql", "ingest/sql/sample.sql"] {
            let path = repo_root().join(file);
            let script = std::fs::read_to_string(&path)
                .with_context(|| format!("read {}", path.display()))?;
            run_psql_script(&self.client, &script)
                .await
                .with_context(|| format!("load {file} into {}", self.names.database))?;
        }
        // schema.sql names the publication after the demo's; publications are per database, but
        // every name of this run carries its suffix.
        self.client
            .batch_execute(&format!(
                "ALTER PUBLICATION tributary_salesdb RENAME TO {}",
                self.names.publication
            ))
            .await
            .context("rename the publication schema.sql created")?;
        register_connector(&self.names).await
    }

    /// A connection to the run's database (its oracles read it, its changes go to it).
    pub fn client(&self) -> &tokio_postgres::Client {
        &self.client
    }

    /// Replaces the connection [`Self::client`] gives by a new one.
    pub async fn reconnect(&mut self) -> Result<()> {
        self.client = connect(&self.names.database).await?;
        Ok(())
    }

    /// Another connection to the run's database (e.g. for a task of its own).
    pub async fn connect(&self) -> Result<tokio_postgres::Client> {
        connect(&self.names.database).await
    }

    /// The connection string of the run's database, for `tributary_ingest::store::connect`.
    pub fn url(&self) -> String {
        format!("{PG} dbname={}", self.names.database)
    }

    /// The database's name, `e2e_<suffix>`.
    pub fn database(&self) -> &str {
        &self.names.database
    }

    /// The run's replication slot, `e2e_<suffix>`.
    pub fn slot(&self) -> &str {
        &self.names.slot
    }

    /// Debezium's topic prefix of this source, `e2e_<suffix>`.
    pub fn prefix(&self) -> &str {
        &self.names.prefix
    }

    /// The Debezium topic of `table` (`city`, `salesman` or `sale`): `<prefix>.public.<table>`.
    pub fn topic(&self, table: &str) -> String {
        self.names.topic(table)
    }

    /// What the capture of this source is doing, for a failing test's message: the connector's
    /// and its task's state as Kafka Connect reports them (with a failed task's trace, first
    /// lines), and how far the replication slot's confirmed position is behind the WAL.
    pub async fn capture_status(&self) -> String {
        let connector = async {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?;
            let status = get_json(
                &http,
                &format!("{CONNECT}/connectors/{}/status", self.names.connector),
            )
            .await?;
            let trace = status["tasks"][0]["trace"]
                .as_str()
                .map(|t| t.lines().take(6).collect::<Vec<_>>().join(" | "))
                .unwrap_or_default();
            anyhow::Ok(format!(
                "connector {} {}, task {} {trace}",
                self.names.connector, status["connector"]["state"], status["tasks"][0]["state"]
            ))
        }
        .await
        .unwrap_or_else(|e| format!("connector {}: no status ({e:#})", self.names.connector));
        let slot = self
            .client
            .query_opt(
                "SELECT s.active, pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint, \
                        s.active_pid, a.backend_start::text, a.state, a.wait_event \
                 FROM pg_replication_slots s LEFT JOIN pg_stat_activity a ON a.pid = s.active_pid \
                 WHERE s.slot_name = $1",
                &[&self.names.slot],
            )
            .await;
        let slot = match slot {
            Ok(Some(row)) => format!(
                "slot {} active {}, {} bytes of WAL behind, held by pid {:?} (connected since {:?}, {:?}, waiting on {:?})",
                self.names.slot,
                row.get::<_, bool>(0),
                row.get::<_, Option<i64>>(1).unwrap_or_default(),
                row.get::<_, Option<i32>>(2),
                row.get::<_, Option<String>>(3),
                row.get::<_, Option<String>>(4),
                row.get::<_, Option<String>>(5),
            ),
            Ok(None) => format!("slot {} missing", self.names.slot),
            Err(e) => format!("slot {}: {e}", self.names.slot),
        };
        format!(
            "{connector}; {slot}; {}",
            crate::connect_log::worker_warnings(&self.names.connector)
        )
    }

    /// The lander's settings reading this source's Debezium topics.
    pub fn lander_env(&self) -> BTreeMap<String, String> {
        [
            ("TRIBUTARY_TOPICS__SALE", "sale"),
            ("TRIBUTARY_TOPICS__SALESMAN", "salesman"),
            ("TRIBUTARY_TOPICS__CITY", "city"),
        ]
        .into_iter()
        .map(|(key, table)| (key.to_string(), self.topic(table)))
        .collect()
    }

    /// Deletes the connector, its slot, the database and the topics. Call it when the test has
    /// passed; a failure says what is left.
    pub async fn remove(mut self) -> Result<()> {
        remove_all(&self.names, false).await?;
        self.removed = true;
        Ok(())
    }
}

impl Drop for SourceDb {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        // Not removed: the test failed (or did not call `remove`). The connector and its slot
        // go (a slot nobody reads holds WAL for ever), and so do the topics (no Kafka CLI here
        // to remove them later; the run's lake keeps every record its lander read from them).
        // The database stays to be looked at. A runtime of its own on another thread: this may
        // run inside the test's runtime.
        let names = self.names.clone();
        let outcome = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("a runtime to remove the connector")?
                .block_on(remove_all(&names, true))
        })
        .join();
        let removed = match outcome {
            Ok(Ok(())) => format!(
                "its connector {}, slot {} and topics {} are removed",
                self.names.connector,
                self.names.slot,
                self.names.topics().join(", ")
            ),
            Ok(Err(e)) => format!("removing the rest failed: {e:#}"),
            Err(_) => "removing the rest panicked".to_string(),
        };
        eprintln!(
            "e2e source database kept for inspection: {db} (psql \"{PG} dbname={db}\"); \
             {removed}. Remove the database with `DROP DATABASE {db} WITH (FORCE)`.",
            db = self.names.database,
        );
    }
}

/// `salesdb-connector.json` (`template`) for another database: the run's database, topic
/// prefix, slot and publication; `_comment…` keys dropped; `${env:…}` placeholders kept for the
/// worker; OpenLineage off (see the module docs).
fn connector_config(template: &str, names: &Names) -> Result<Value> {
    let mut config: Value =
        serde_json::from_str(template).context("ingest/debezium/salesdb-connector.json")?;
    let object = config
        .as_object_mut()
        .context("the connector config is not a JSON object")?;
    object.retain(|k, _| !k.starts_with('_') && !k.starts_with("transforms"));
    object.insert("database.dbname".into(), json!(names.database));
    object.insert("topic.prefix".into(), json!(names.prefix));
    object.insert("slot.name".into(), json!(names.slot));
    object.insert("publication.name".into(), json!(names.publication));
    object.insert("openlineage.integration.enabled".into(), json!("false"));
    Ok(config)
}

async fn register_connector(names: &Names) -> Result<()> {
    let path = repo_root().join("ingest/debezium/salesdb-connector.json");
    let template =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let config = connector_config(&template, names)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("{CONNECT}/connectors/{}", names.connector);
    let response = http
        .put(format!("{url}/config"))
        .json(&config)
        .send()
        .await
        .context("Kafka Connect on 127.0.0.1:8083 does not answer")?;
    let status = response.status();
    ensure!(
        status.is_success(),
        "Kafka Connect refused the connector {}: {status} {}",
        names.connector,
        response.text().await.unwrap_or_default()
    );
    let start = Instant::now();
    loop {
        let answer = get_json(&http, &format!("{url}/status")).await;
        if let Ok(status) = &answer {
            let task = &status["tasks"][0]["state"];
            if task == "RUNNING" {
                return wait_for_committed_snapshot(&http, names).await;
            }
            if task == "FAILED" || status["connector"]["state"] == "FAILED" {
                bail!(
                    "the connector {} failed to start: {status}",
                    names.connector
                );
            }
        }
        if start.elapsed() > CONNECTOR_START {
            bail!(
                "the connector {}'s task was not RUNNING after {CONNECTOR_START:?}: {answer:?}",
                names.connector
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A JSON answer of Kafka Connect's REST API.
async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value> {
    Ok(http
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Waits until Kafka Connect has stored an offset past the connector's initial snapshot. Until
/// then a restart of the task (a broker outage revokes it) finds no offset and snapshots the
/// tables again: a row deleted meanwhile is then never deleted downstream, as a snapshot emits
/// no deletes (Debezium's documented behaviour; see ingest/debezium/README.md). Tests that stop
/// the stack's services start from a committed snapshot, as an operator does (the same check:
/// `GET /connectors/<name>/offsets`).
async fn wait_for_committed_snapshot(http: &reqwest::Client, names: &Names) -> Result<()> {
    let url = format!("{CONNECT}/connectors/{}/offsets", names.connector);
    let start = Instant::now();
    loop {
        let answer = get_json(http, &url).await;
        if let Ok(offsets) = &answer
            && let Some(offset) = offsets["offsets"]
                .as_array()
                .and_then(|all| all.first())
                .map(|o| &o["offset"])
            && (offset.get("snapshot").is_none() || offset["last_snapshot_record"] == true)
        {
            return Ok(());
        }
        if start.elapsed() > CONNECTOR_START {
            bail!(
                "the connector {} stored no offset past its snapshot after {CONNECTOR_START:?}: {answer:?}",
                names.connector
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Deletes the connector, its slot, the topics and (unless `keep_database`) the database.
/// Every step is tried; the error lists the ones that failed.
async fn remove_all(names: &Names, keep_database: bool) -> Result<()> {
    let mut failed = Vec::new();
    if let Err(e) = delete_connector(&names.connector).await {
        failed.push(format!("connector {}: {e:#}", names.connector));
    }
    match connect(ADMIN_DB).await {
        Err(e) => failed.push(format!("{e:#}")),
        Ok(admin) => {
            if let Err(e) = drop_slot(&admin, &names.slot).await {
                failed.push(format!("slot {}: {e:#}", names.slot));
            }
            if !keep_database
                && let Err(e) = admin
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        names.database
                    ))
                    .await
            {
                failed.push(format!("database {}: {e}", names.database));
            }
        }
    }
    if let Err(e) = delete_topics(&names.topics()).await {
        failed.push(format!("topics: {e:#}"));
    }
    ensure!(
        failed.is_empty(),
        "removing the e2e source {} left: {}",
        names.database,
        failed.join("; ")
    );
    Ok(())
}

async fn delete_connector(name: &str) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let response = http
        .delete(format!("{CONNECT}/connectors/{name}"))
        .send()
        .await?;
    let status = response.status();
    ensure!(
        status.is_success() || status == reqwest::StatusCode::NOT_FOUND,
        "{status} {}",
        response.text().await.unwrap_or_default()
    );
    Ok(())
}

/// Drops `slot` once its connector's task has let go of it (a moment after the connector is
/// deleted); a walsender still holding it after [`SLOT_RELEASE`] is terminated.
async fn drop_slot(admin: &tokio_postgres::Client, slot: &str) -> Result<()> {
    let start = Instant::now();
    loop {
        let row = admin
            .query_opt(
                "SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await?;
        let Some(row) = row else {
            return Ok(());
        };
        let (active, pid): (bool, Option<i32>) = (row.get(0), row.get(1));
        if !active {
            // Another moment may have re-activated it: then the next round sees it again.
            let _ = admin
                .execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                     WHERE slot_name = $1 AND NOT active",
                    &[&slot],
                )
                .await;
        } else if start.elapsed() > SLOT_RELEASE
            && let Some(pid) = pid
        {
            admin
                .execute("SELECT pg_terminate_backend($1)", &[&pid])
                .await?;
        }
        if start.elapsed() > SLOT_RELEASE * 2 {
            bail!("still active (pid {pid:?}) after {:?}", SLOT_RELEASE * 2);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn delete_topics(topics: &[String]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", BROKERS)
        .create()
        .context("a Kafka admin client")?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .delete_topics(&names, &options)
        .await
        .context("delete topics")?;
    let failed: Vec<String> = results
        .into_iter()
        .filter_map(Result::err)
        .filter(|(_, code)| *code != RDKafkaErrorCode::UnknownTopicOrPartition)
        .map(|(topic, code)| format!("{topic}: {code}"))
        .collect();
    ensure!(failed.is_empty(), "{}", failed.join(", "));
    Ok(())
}

/// One step of a psql script, as far as `ingest/sql/*.sql` use psql: SQL, `\gset`, `\if`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Statements to run as they are.
    Sql(String),
    /// A query whose one row sets a variable per column (`… \gset`).
    Gset(String),
    /// `\if :variable`.
    If(String),
    /// `\else`.
    Else,
    /// `\endif`.
    Endif,
}

/// Whether `sql` holds nothing but blanks and `--` comments.
fn is_blank(sql: &str) -> bool {
    sql.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with("--"))
}

/// Whether `sql` ends at the end of a statement (ignoring blanks and `--` comments after it).
fn statements_end(sql: &str) -> bool {
    sql.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("--"))
        .is_none_or(|l| l.ends_with(';'))
}

/// The steps of a psql script, so the harness loads the same files `dev/up` loads with psql
/// without needing psql. `\set` is ignored (statements stop at the first error anyway); other
/// meta-commands are refused.
fn psql_steps(script: &str) -> Result<Vec<Step>> {
    fn flush(buffer: &mut String, steps: &mut Vec<Step>) {
        if !is_blank(buffer) {
            steps.push(Step::Sql(std::mem::take(buffer)));
        }
        buffer.clear();
    }
    let mut steps = Vec::new();
    let mut buffer = String::new();
    for (number, line) in script.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(query) = trimmed.strip_suffix("\\gset") {
            ensure!(
                statements_end(&buffer),
                "line {}: a \\gset query must be on one line",
                number + 1
            );
            flush(&mut buffer, &mut steps);
            steps.push(Step::Gset(query.trim().to_string()));
        } else if let Some(meta) = trimmed.strip_prefix('\\') {
            flush(&mut buffer, &mut steps);
            let mut words = meta.split_whitespace();
            match (words.next(), words.next()) {
                (Some("set"), _) => {}
                (Some("if"), Some(var)) => steps.push(Step::If(
                    var.strip_prefix(':')
                        .with_context(|| format!("line {}: \\if needs :variable", number + 1))?
                        .to_string(),
                )),
                (Some("else"), None) => steps.push(Step::Else),
                (Some("endif"), None) => steps.push(Step::Endif),
                _ => bail!("line {}: unsupported psql command {trimmed}", number + 1),
            }
        } else {
            buffer.push_str(line);
            buffer.push('\n');
        }
    }
    flush(&mut buffer, &mut steps);
    Ok(steps)
}

/// Runs a psql script (see [`psql_steps`]) on `db`.
async fn run_psql_script(db: &tokio_postgres::Client, script: &str) -> Result<()> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    // One entry per open `\if`: whether its current branch runs.
    let mut branches: Vec<bool> = Vec::new();
    for step in psql_steps(script)? {
        let live = branches.iter().all(|b| *b);
        match step {
            Step::If(var) => {
                let value = vars
                    .get(&var)
                    .with_context(|| format!("\\if :{var}: no such variable"))?;
                let truthy =
                    ["t", "true", "on", "yes", "1"].contains(&value.to_ascii_lowercase().as_str());
                branches.push(truthy);
            }
            Step::Else => {
                let branch = branches.last_mut().context("\\else without \\if")?;
                *branch = !*branch;
            }
            Step::Endif => {
                branches.pop().context("\\endif without \\if")?;
            }
            Step::Sql(sql) if live => {
                db.batch_execute(&sql).await.with_context(|| sql.clone())?;
            }
            Step::Gset(query) if live => {
                let rows: Vec<_> = db
                    .simple_query(&query)
                    .await
                    .with_context(|| query.clone())?
                    .into_iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
                        _ => None,
                    })
                    .collect();
                ensure!(
                    rows.len() == 1,
                    "{query}: \\gset needs one row, got {}",
                    rows.len()
                );
                let row = &rows[0];
                for (i, column) in row.columns().iter().enumerate() {
                    vars.insert(
                        column.name().to_string(),
                        row.get(i).unwrap_or_default().to_string(),
                    );
                }
            }
            Step::Sql(_) | Step::Gset(_) => {}
        }
    }
    ensure!(branches.is_empty(), "\\if without \\endif");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_carries_the_suffix() {
        let names = Names::new("0123abcd45");
        for name in [
            &names.database,
            &names.connector,
            &names.prefix,
            &names.slot,
            &names.publication,
        ] {
            assert!(name.contains("0123abcd45"), "{name}");
        }
        assert_eq!(names.topic("sale"), "e2e_0123abcd45.public.sale");
        assert!(names.topics().iter().all(|t| t.contains("0123abcd45")));
    }

    #[test]
    fn the_connector_is_the_demo_one_on_another_database() {
        let template =
            std::fs::read_to_string(repo_root().join("ingest/debezium/salesdb-connector.json"))
                .expect("the connector config");
        let names = Names::new("0123abcd45");
        let config = connector_config(&template, &names).unwrap();
        assert_eq!(config["database.dbname"], "e2e_0123abcd45");
        assert_eq!(config["topic.prefix"], "e2e_0123abcd45");
        assert_eq!(config["slot.name"], "e2e_0123abcd45");
        assert_eq!(config["publication.name"], "e2e_0123abcd45");
        // The worker resolves the placeholders; the demo's decoding settings are kept.
        assert_eq!(config["database.hostname"], "${env:SALESDB_HOST}");
        assert_eq!(config["decimal.handling.mode"], "string");
        assert_eq!(config["openlineage.integration.enabled"], "false");
        let keys: Vec<&String> = config.as_object().unwrap().keys().collect();
        assert!(
            keys.iter()
                .all(|k| !k.starts_with('_') && !k.starts_with("transforms")),
            "{keys:?}"
        );
    }

    #[test]
    fn the_sample_script_becomes_guarded_inserts() {
        let script =
            std::fs::read_to_string(repo_root().join("ingest/sql/sample.sql")).expect("sample.sql");
        let steps = psql_steps(&script).unwrap();
        let gsets: Vec<&Step> = steps
            .iter()
            .filter(|s| matches!(s, Step::Gset(_)))
            .collect();
        let ifs = steps.iter().filter(|s| matches!(s, Step::If(_))).count();
        let endifs = steps.iter().filter(|s| **s == Step::Endif).count();
        assert_eq!((gsets.len(), ifs, endifs), (3, 3, 3), "{steps:#?}");
        assert!(steps.iter().all(|s| match s {
            Step::Sql(sql) => !sql.contains('\\'),
            _ => true,
        }));
    }

    #[test]
    fn psql_steps_split_meta_commands_from_sql() {
        let steps = psql_steps(
            "\\set ON_ERROR_STOP on\nSET ROLE tributary;\n-- a comment\n\
             SELECT true AS go \\gset\n\\if :go\nINSERT INTO t VALUES (1);\n\
             \\else\nSELECT 1;\n\\endif\n",
        )
        .unwrap();
        assert_eq!(
            steps,
            vec![
                Step::Sql("SET ROLE tributary;\n-- a comment\n".into()),
                Step::Gset("SELECT true AS go".into()),
                Step::If("go".into()),
                Step::Sql("INSERT INTO t VALUES (1);\n".into()),
                Step::Else,
                Step::Sql("SELECT 1;\n".into()),
                Step::Endif,
            ]
        );
        assert!(psql_steps("\\copy t FROM 'x'\n").is_err());
        assert!(psql_steps("SELECT 1,\n2 \\gset\n").is_err());
    }
}
