//! Harness for the end-to-end tests: the real local stack (`dev/up`) plus Tributary's own
//! binaries, started as processes with their own lake namespace and ClickHouse database.
//!
//! Nothing here mocks a service. When the stack is not running the tests fail with a message
//! that says how to start it.
//!
//! A test that compares against Postgres owns its source too ([`SourceDb`], through
//! [`TestPipeline::with_source`]): a database, Debezium connector, slot and topics of its own, so
//! it neither replays the demo's `salesdb.public.*` topics nor sees anyone else's changes.

pub mod browser;
mod connect_log;
pub mod kafka;
pub mod proxy;
mod service;
mod source;
pub mod stack;

pub use service::{Service, last_warnings};
pub use source::SourceDb;

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
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

/// The repository root (this crate lives in `<root>/e2e`). `cargo test` sets
/// `CARGO_MANIFEST_DIR` when it runs the tests too, and that one wins: a target directory
/// shared by two checkouts keeps a test binary built in the other one (cargo rebuilds on
/// changed sources, not on a moved checkout), whose compile-time path would read the other
/// checkout's files.
pub fn repo_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .expect("e2e has a parent")
        .to_path_buf()
}

/// Directory holding the workspace's binaries: the test executable is in `<target>/debug/deps`.
pub(crate) fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// Connects to the demo's shared `salesdb` source database. Only for tests whose subject is the
/// demo's own connector: a test comparing the pipeline with Postgres reads its own
/// [`SourceDb`] ([`TestPipeline::db`]).
pub async fn salesdb() -> Result<tokio_postgres::Client> {
    postgres("salesdb").await
}

/// Connects to the stack's Postgres database `dbname` as `tributary`.
pub async fn postgres(dbname: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port=5432 user=tributary password=tributary dbname={dbname}"),
        tokio_postgres::NoTls,
    )
    .await
    .with_context(|| {
        format!("connect to {dbname} on 127.0.0.1:5432 (run `make test` or `dev/up`)")
    })?;
    tokio::spawn(connection);
    Ok(client)
}

/// `GET url`, which must answer 2xx with JSON.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Result<serde_json::Value> {
    http.get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?
        .error_for_status()?
        .json()
        .await
        .with_context(|| format!("GET {url}: not JSON"))
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

/// One ranking row as both sides report it: (id, revenue as a decimal string, sales, rank).
pub type RankRow = (i64, String, i64, i64);

/// A ranking from the API, all time, every row of it (one page of up to 1000).
pub async fn api_rankings(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    id_field: &str,
) -> Result<Vec<RankRow>> {
    api_ranking_for(http, base, path, id_field, None).await
}

/// A ranking from the API for one calendar month (`YYYY-MM`), or all time.
pub async fn api_ranking_for(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    id_field: &str,
    month: Option<&str>,
) -> Result<Vec<RankRow>> {
    let url = match month {
        Some(m) => format!("{base}{path}?month={m}&limit=1000"),
        None => format!("{base}{path}?limit=1000"),
    };
    let body = get_json(http, &url).await?;
    if let Some(m) = month {
        anyhow::ensure!(
            body["period"]["period"] == m,
            "{url} answered for another period: {body}"
        );
    }
    let items = body["items"]
        .as_array()
        .with_context(|| format!("{path}: no `items` array in {body}"))?;
    items
        .iter()
        .map(|item| {
            let field = |name: &str| {
                item.get(name)
                    .with_context(|| format!("no {name} in {item}"))
            };
            Ok((
                field(id_field)?.as_i64().context("id is not an integer")?,
                field("revenue")?
                    .as_str()
                    .context("revenue is not a string")?
                    .to_string(),
                field("sales")?
                    .as_i64()
                    .context("sales is not an integer")?,
                field("rank")?.as_i64().context("rank is not an integer")?,
            ))
        })
        .collect()
}

/// A current sale as the oracle sees it: resolved ids (or `None`) and the amount in cents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OracleSale {
    /// Salesman id, if known.
    pub salesman_id: Option<i64>,
    /// City id, if known.
    pub city_id: Option<i64>,
    /// Amount in cents.
    pub cents: i64,
    /// Its salesman or city is named but not in the master data (yet): a natural key no row
    /// has, or an id no row has. Counted in a period's `unresolved_sales`.
    pub unresolved: bool,
    /// UTC calendar month of `sold_at` (`YYYY-MM`), if it has one.
    pub month: Option<String>,
}

/// The master data of a source database, for resolving natural keys the way DESIGN.md says.
#[derive(Debug, Clone, Default)]
pub struct MasterData {
    /// Salesman code → id.
    pub salesman_by_code: BTreeMap<String, i64>,
    /// (lower-cased name with single spaces, upper-cased state) → city id.
    pub city_by_name: BTreeMap<(String, String), i64>,
}

impl MasterData {
    /// Reads the current master data of `db` (a run's [`SourceDb`]).
    pub async fn load(db: &tokio_postgres::Client) -> Result<Self> {
        let mut data = MasterData::default();
        for row in db.query("SELECT code, id FROM salesman", &[]).await? {
            data.salesman_by_code.insert(row.get(0), row.get(1));
        }
        for row in db.query("SELECT name, state, id FROM city", &[]).await? {
            let (name, state): (String, String) = (row.get(0), row.get(1));
            data.city_by_name
                .insert(city_key(&name, &state), row.get(2));
        }
        Ok(data)
    }

    /// The id of a salesman code, if known.
    pub fn salesman(&self, code: &str) -> Option<i64> {
        self.salesman_by_code.get(code).copied()
    }

    /// The id of a city by name and state, if known.
    pub fn city(&self, name: &str, state: &str) -> Option<i64> {
        self.city_by_name.get(&city_key(name, state)).copied()
    }
}

fn city_key(name: &str, state: &str) -> (String, String) {
    (
        name.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase(),
        state.trim().to_uppercase(),
    )
}

/// The current sales of `db` (a run's [`SourceDb`]).
pub async fn postgres_sales(db: &tokio_postgres::Client) -> Result<Vec<OracleSale>> {
    let rows = db
        .query(
            "SELECT s.salesman_id, s.city_id, (s.amount * 100)::bigint, \
                    to_char(s.sold_at AT TIME ZONE 'UTC', 'YYYY-MM'), \
                    (s.salesman_id IS NOT NULL \
                       AND NOT EXISTS (SELECT 1 FROM salesman m WHERE m.id = s.salesman_id)) \
                    OR (s.city_id IS NOT NULL \
                       AND NOT EXISTS (SELECT 1 FROM city c WHERE c.id = s.city_id)) \
             FROM sale s",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| OracleSale {
            salesman_id: r.get(0),
            city_id: r.get(1),
            cents: r.get(2),
            month: r.get(3),
            unresolved: r.get(4),
        })
        .collect())
}

/// Ranks `sales` by `key` (revenue desc, then id asc), as the API reports a ranking.
pub fn oracle_ranking(sales: &[OracleSale], key: fn(&OracleSale) -> Option<i64>) -> Vec<RankRow> {
    let mut totals: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for sale in sales {
        if let Some(id) = key(sale) {
            let t = totals.entry(id).or_default();
            t.0 += sale.cents;
            t.1 += 1;
        }
    }
    let mut rows: Vec<(i64, i64, i64)> =
        totals.into_iter().map(|(id, (c, n))| (id, c, n)).collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    rows.into_iter()
        .enumerate()
        .map(|(i, (id, cents, n))| {
            (
                id,
                format!("{}.{:02}", cents / 100, cents % 100),
                n,
                i as i64 + 1,
            )
        })
        .collect()
}

/// A row of `raw.dead_letters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Topic the record came from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Why it was rejected.
    pub reason: String,
    /// Class of the failure.
    pub error_kind: String,
}

/// Every dead letter in `<namespace>.dead_letters` of the S3 warehouse.
pub async fn dead_letters(namespace: &str) -> Result<Vec<DeadLetter>> {
    use arrow::array::AsArray;
    use arrow::datatypes::{Int32Type, Int64Type};
    use tributary_raw::catalog::{self, load_table, read_table};
    use tributary_raw::schema::{RawTable, col};

    let settings = tributary_common::LakeSettings {
        warehouse: "s3://warehouse".into(),
        namespace: namespace.to_string(),
        ..Default::default()
    };
    let lake = catalog::open(&settings).await?;
    let table = load_table(&lake, namespace, RawTable::DeadLetters).await?;
    let mut out = Vec::new();
    for batch in read_table(&table, None).await? {
        let column = |name| {
            batch
                .column_by_name(name)
                .with_context(|| format!("no {name}"))
        };
        let topics = column(col::KAFKA_TOPIC)?.as_string::<i32>();
        let partitions = column(col::KAFKA_PARTITION)?.as_primitive::<Int32Type>();
        let offsets = column(col::KAFKA_OFFSET)?.as_primitive::<Int64Type>();
        let reasons = column(col::REASON)?.as_string::<i32>();
        let kinds = column(col::ERROR_KIND)?.as_string::<i32>();
        for row in 0..batch.num_rows() {
            out.push(DeadLetter {
                topic: topics.value(row).to_string(),
                partition: partitions.value(row),
                offset: offsets.value(row),
                reason: reasons.value(row).to_string(),
                error_kind: kinds.value(row).to_string(),
            });
        }
    }
    Ok(out)
}

/// The months `/v1/months` lists for the latest publication.
pub async fn api_months(http: &reqwest::Client, base: &str) -> Result<Vec<String>> {
    let body: serde_json::Value = http
        .get(format!("{base}/v1/months"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    body["items"]
        .as_array()
        .with_context(|| format!("no items in {body}"))?
        .iter()
        .map(|m| {
            m["period"]
                .as_str()
                .map(str::to_string)
                .with_context(|| format!("no period in {m}"))
        })
        .collect()
}

/// The settings of one end-to-end run of the whole pipeline: its own lake namespace,
/// ClickHouse database, file and ERP topics, inbox prefix and ports, so runs never see each
/// other's data; and, from [`Self::with_source`], its own Postgres source ([`SourceDb`]: a
/// database, Debezium connector, slot and topics), which its oracles read and its changes go to.
///
/// Without a source of its own the lander reads Postgres topics nobody writes
/// (`e2e.<suffix>.unused.*`): never the demo's `salesdb.public.*`, whose history a stack that
/// has carried load holds by the million.
pub struct TestPipeline {
    /// Unique suffix of every name.
    pub suffix: String,
    /// Port of the API.
    pub api_port: u16,
    /// Port of the ERP simulator.
    pub erp_port: u16,
    source: Option<SourceDb>,
}

impl Default for TestPipeline {
    fn default() -> Self {
        Self::new()
    }
}

fn env_map(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// The bearer token [`TestPipeline::api_env`]'s API takes lineage writes with (services send it
/// as `OPENLINEAGE_API_KEY`).
pub const LINEAGE_WRITE_TOKEN: &str = "e2e-lineage-write-token";

/// The read-only ClickHouse user the API reads as, as in `dev/app` (dev/clickhouse/users.xml):
/// every end-to-end read of the rankings goes through a user that can write nothing.
pub const CLICKHOUSE_READER: (&str, &str) = ("tributary_reader", "tributary-reader");

impl TestPipeline {
    /// Fresh names and ports, no Postgres source (for tests of files, the ERP or a service's
    /// behaviour that compare nothing with Postgres).
    pub fn new() -> Self {
        Self {
            suffix: unique_suffix(),
            api_port: free_port(),
            erp_port: free_port(),
            source: None,
        }
    }

    /// Fresh names and ports, and a Postgres source of this run: `e2e_<suffix>` with the
    /// sample data of `salesdb`, captured by its own Debezium connector into
    /// `e2e_<suffix>.public.*`, which [`Self::lake_env`] has the lander read. Call
    /// [`Self::finish`] at the end of the test to remove it.
    pub async fn with_source() -> Result<Self> {
        require_stack();
        let mut run = Self::new();
        run.source = Some(SourceDb::create(&run.suffix).await?);
        Ok(run)
    }

    /// This run's source. Panics for a run made by [`Self::new`].
    pub fn source(&self) -> &SourceDb {
        self.source
            .as_ref()
            .expect("this run has no source of its own: make it with TestPipeline::with_source")
    }

    /// A connection to this run's source database (see [`Self::source`]).
    pub fn db(&self) -> &tokio_postgres::Client {
        self.source().client()
    }

    /// Connects to this run's source database again (after Postgres was restarted under the
    /// test: the old connection is gone for good).
    pub async fn reconnect_source(&mut self) -> Result<()> {
        self.source
            .as_mut()
            .expect("this run has no source of its own")
            .reconnect()
            .await
    }

    /// Removes this run's source (database, connector, slot, topics): call it when the test
    /// has passed. A run dropped without it (a failed test) keeps the source database to look
    /// at and says so; see [`SourceDb`].
    pub async fn finish(mut self) -> Result<()> {
        match self.source.take() {
            Some(source) => source.remove().await,
            None => Ok(()),
        }
    }

    /// `e2e.<suffix>.<name>`: a topic (or transactional id) of this run.
    pub fn topic(&self, name: &str) -> String {
        format!("e2e.{}.{name}", self.suffix)
    }

    /// The Iceberg namespace and ClickHouse database of this run.
    pub fn namespace(&self) -> String {
        format!("e2e_{}", self.suffix)
    }

    /// The API's base URL.
    pub fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// The ERP simulator's base URL.
    pub fn erp(&self) -> String {
        format!("http://127.0.0.1:{}", self.erp_port)
    }

    /// The partner-file inbox of this run on the stack's S3.
    pub fn inbox(&self) -> String {
        format!("s3://inbox/e2e-{}", self.suffix)
    }

    fn lake(&self) -> BTreeMap<String, String> {
        env_map(&[
            ("TRIBUTARY_LAKE__WAREHOUSE", "s3://warehouse".into()),
            ("TRIBUTARY_LAKE__NAMESPACE", self.namespace()),
        ])
    }

    /// The lander: this run's Debezium topics (its source's, or topics nobody writes when it
    /// has none), file and ERP topics.
    pub fn lake_env(&self) -> BTreeMap<String, String> {
        let mut env = self.lake();
        match &self.source {
            Some(source) => env.extend(source.lander_env()),
            None => env.extend(env_map(&[
                ("TRIBUTARY_TOPICS__SALE", self.topic("unused.sale")),
                ("TRIBUTARY_TOPICS__SALESMAN", self.topic("unused.salesman")),
                ("TRIBUTARY_TOPICS__CITY", self.topic("unused.city")),
            ])),
        }
        env.extend(env_map(&[
            ("TRIBUTARY_COMMIT_INTERVAL_MS", "500".into()),
            ("TRIBUTARY_TOPICS__FILE_SALES", self.topic("files.sales")),
            (
                "TRIBUTARY_TOPICS__FILE_DEAD_LETTERS",
                self.topic("files.dead"),
            ),
            ("TRIBUTARY_TOPICS__ERP_SALES", self.topic("erp.sales")),
            ("TRIBUTARY_TOPICS__ERP_DEAD_LETTERS", self.topic("erp.dead")),
        ]));
        env
    }

    /// The lander with lake maintenance running every 2 s as hard as it goes: merging at two
    /// manifests, compacting two small files, no full-resolution window (a 5 s-granular history
    /// for an hour), one snapshot kept beyond the pins, no grace for unreferenced files. The
    /// oracle runs with it: the rankings must not notice.
    pub fn lake_env_with_maintenance(&self) -> BTreeMap<String, String> {
        let mut env = self.lake_env();
        env.extend(env_map(&[
            ("TRIBUTARY_MAINTENANCE__INTERVAL_S", "2".into()),
            ("TRIBUTARY_MAINTENANCE__SNAPSHOT_RETENTION_S", "0".into()),
            ("TRIBUTARY_MAINTENANCE__HISTORY_RETENTION_S", "3600".into()),
            ("TRIBUTARY_MAINTENANCE__HISTORY_GRANULARITY_S", "5".into()),
            ("TRIBUTARY_MAINTENANCE__MIN_SNAPSHOTS_TO_KEEP", "1".into()),
            ("TRIBUTARY_MAINTENANCE__MIN_INPUT_FILES", "2".into()),
            ("TRIBUTARY_MAINTENANCE__MAX_MANIFESTS", "2".into()),
            ("TRIBUTARY_MAINTENANCE__ORPHAN_GRACE_S", "0".into()),
        ]));
        env
    }

    /// The marts job, every second.
    pub fn marts_env(&self) -> BTreeMap<String, String> {
        let mut env = self.lake();
        env.extend(env_map(&[
            ("TRIBUTARY_CLICKHOUSE__DATABASE", self.namespace()),
            ("TRIBUTARY_INTERVAL_MS", "1000".into()),
        ]));
        env
    }

    /// The marts job (as [`Self::marts_env`]) pruning every second with a one-second publication
    /// retention: only the latest publication keeps its lake snapshots pinned, so the lake's
    /// maintenance ([`Self::lake_env_with_maintenance`]) expires the rest under the oracle.
    pub fn marts_env_with_retention(&self) -> BTreeMap<String, String> {
        let mut env = self.marts_env();
        env.extend(env_map(&[
            ("TRIBUTARY_RETENTION__INTERVAL_S", "1".into()),
            ("TRIBUTARY_RETENTION__PUBLICATIONS_S", "1".into()),
        ]));
        env
    }

    /// The API, reading this run's lake for time travel and provenance.
    pub fn api_env(&self) -> BTreeMap<String, String> {
        let mut env = self.lake();
        env.extend(env_map(&[
            ("TRIBUTARY_AUTH__WRITE_TOKEN", LINEAGE_WRITE_TOKEN.into()),
            ("TRIBUTARY_CLICKHOUSE__DATABASE", self.namespace()),
            ("TRIBUTARY_CLICKHOUSE__USER", CLICKHOUSE_READER.0.into()),
            ("TRIBUTARY_CLICKHOUSE__PASSWORD", CLICKHOUSE_READER.1.into()),
            ("TRIBUTARY_LISTEN", format!("127.0.0.1:{}", self.api_port)),
        ]));
        env
    }

    /// The file ingestor on [`Self::inbox`].
    pub fn files_env(&self) -> BTreeMap<String, String> {
        env_map(&[
            ("TRIBUTARY_FILES__INBOX", self.inbox()),
            ("TRIBUTARY_FILES__MIN_AGE_MS", "0".into()),
            ("TRIBUTARY_FILES__POLL_INTERVAL_MS", "300".into()),
            ("TRIBUTARY_FILES__TRANSACTIONAL_ID", self.topic("files")),
            ("TRIBUTARY_FILES__TOPICS__SALES", self.topic("files.sales")),
            (
                "TRIBUTARY_FILES__TOPICS__DEAD_LETTERS",
                self.topic("files.dead"),
            ),
            (
                "TRIBUTARY_FILES__TOPICS__PROGRESS",
                self.topic("files.progress"),
            ),
        ])
    }

    /// The ERP simulator, seeded, with `initial_changes` in its log.
    pub fn sim_env(&self, seed: u64, initial_changes: u32) -> BTreeMap<String, String> {
        env_map(&[
            ("TRIBUTARY_LISTEN", format!("127.0.0.1:{}", self.erp_port)),
            ("TRIBUTARY_SEED", seed.to_string()),
            ("TRIBUTARY_INITIAL_CHANGES", initial_changes.to_string()),
            ("TRIBUTARY_ADMIN", "true".into()),
        ])
    }

    /// The ERP ingestor polling [`Self::erp`].
    pub fn erp_env(&self) -> BTreeMap<String, String> {
        env_map(&[
            (
                "TRIBUTARY_ERP__CLIENT__ENDPOINT",
                format!("{}/ws/sales", self.erp()),
            ),
            ("TRIBUTARY_ERP__CLIENT__PAGE_SIZE", "40".into()),
            ("TRIBUTARY_ERP__CLIENT__POLL_INTERVAL_MS", "300".into()),
            ("TRIBUTARY_ERP__TRANSACTIONAL_ID", self.topic("erp")),
            ("TRIBUTARY_ERP__TOPICS__SALES", self.topic("erp.sales")),
            (
                "TRIBUTARY_ERP__TOPICS__DEAD_LETTERS",
                self.topic("erp.dead"),
            ),
            (
                "TRIBUTARY_ERP__TOPICS__PROGRESS",
                self.topic("erp.progress"),
            ),
        ])
    }

    /// Starts the API ([`Self::api_env`]) with its lineage event store in a Postgres schema of
    /// this run, and waits until it answers `/healthz`.
    pub async fn start_api_with_lineage_store(&self, name: &str) -> Result<Service> {
        let mut env = self.api_env();
        env.insert("TRIBUTARY_LINEAGE__SCHEMA".into(), self.namespace());
        let mut api = Service::start(name, "tributary-api", &[], &env);
        let (http, base) = (reqwest::Client::new(), self.api());
        eventually(Duration::from_secs(60), || {
            api.assert_running();
            let (http, base) = (&http, &base);
            async move {
                Ok(http
                    .get(format!("{base}/healthz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
                    .then_some(()))
            }
        })
        .await
        .with_context(|| format!("the API never answered /healthz; see .stack/e2e/{name}.log"))?;
        Ok(api)
    }

    /// Starts the ERP simulator and waits until it serves its WSDL.
    pub async fn start_sim(&self, name: &str, seed: u64, initial_changes: u32) -> Result<Service> {
        let mut sim = Service::start(
            name,
            "tributary-erp-sim",
            &[],
            &self.sim_env(seed, initial_changes),
        );
        let http = reqwest::Client::new();
        let url = format!("{}/ws/sales?wsdl", self.erp());
        eventually(Duration::from_secs(30), || {
            sim.assert_running();
            let (http, url) = (&http, &url);
            async move {
                Ok(http
                    .get(url.as_str())
                    .send()
                    .await?
                    .status()
                    .is_success()
                    .then_some(()))
            }
        })
        .await?;
        Ok(sim)
    }
}

/// Waits until the API's all-time (cities, salesmen) rankings equal `want`, while `services`
/// keep running; fails with both sides and where the logs are (`.stack/e2e/<logs>.log`).
pub async fn await_rankings(
    http: &reqwest::Client,
    base: &str,
    want: &(Vec<RankRow>, Vec<RankRow>),
    services: &mut [&mut Service],
    stage: &str,
    logs: &str,
) -> Result<()> {
    let outcome = eventually(Duration::from_secs(180), || {
        for service in services.iter_mut() {
            service.assert_running();
        }
        async move {
            let cities = api_rankings(http, base, "/v1/rankings/cities", "city_id").await?;
            let salesmen = api_rankings(http, base, "/v1/rankings/salesmen", "salesman_id").await?;
            Ok((cities == want.0 && salesmen == want.1).then_some(()))
        }
    })
    .await;
    if let Err(e) = outcome {
        let cities = api_rankings(http, base, "/v1/rankings/cities", "city_id").await;
        let salesmen = api_rankings(http, base, "/v1/rankings/salesmen", "salesman_id").await;
        bail!(
            "{stage}: the API never matched the sources ({e:#})\nwant cities   {:?}\n\
             got cities    {cities:?}\nwant salesmen {:?}\ngot salesmen  {salesmen:?}\n\
             logs in .stack/e2e/{logs}.log",
            want.0,
            want.1
        );
    }
    Ok(())
}

/// A file or ERP sale as its source holds it: natural keys, amount, month.
#[derive(Debug, Clone, Copy)]
pub struct NaturalSale<'a> {
    /// Salesman code.
    pub code: &'a str,
    /// City name and state.
    pub city: (&'a str, &'a str),
    /// Amount in cents.
    pub cents: i64,
    /// UTC month of `sold_at`, when the oracle compares months.
    pub month: Option<&'a str>,
}

/// The current sales of every source as the oracle sees them: Postgres as it is, plus
/// `others` resolved against the master data (an unknown code or city resolves to `None`).
pub async fn current_sales<'a>(
    db: &tokio_postgres::Client,
    others: impl IntoIterator<Item = NaturalSale<'a>>,
) -> Result<Vec<OracleSale>> {
    let master = MasterData::load(db).await?;
    let mut sales = postgres_sales(db).await?;
    sales.extend(others.into_iter().map(|s| {
        let (salesman_id, city_id) = (master.salesman(s.code), master.city(s.city.0, s.city.1));
        OracleSale {
            salesman_id,
            city_id,
            cents: s.cents,
            month: s.month.map(str::to_string),
            unresolved: salesman_id.is_none() || city_id.is_none(),
        }
    }));
    Ok(sales)
}

/// All-time (cities, salesmen) rankings of `sales`.
pub fn oracle_rankings(sales: &[OracleSale]) -> (Vec<RankRow>, Vec<RankRow>) {
    (
        oracle_ranking(sales, |s| s.city_id),
        oracle_ranking(sales, |s| s.salesman_id),
    )
}

/// Runs one of our binaries to its end with `env` (e.g. `tributary-marts run-once --rebuild`)
/// and returns its standard output; an exit other than success is an error with its stderr.
pub fn run_bin(bin: &str, args: &[&str], env: &BTreeMap<String, String>) -> Result<String> {
    let path = bin_dir().join(bin);
    let output = std::process::Command::new(&path)
        .args(args)
        .env("TRIBUTARY_PROFILE", "development")
        .envs(env)
        .output()
        .with_context(|| format!("running {}", path.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "{bin} {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `sql` on the local ClickHouse (HTTP, 127.0.0.1:8123) and returns its text output.
pub async fn clickhouse_query(sql: &str) -> Result<String> {
    let response = reqwest::Client::new()
        .post("http://127.0.0.1:8123/")
        .body(sql.to_string())
        .send()
        .await
        .context("clickhouse unreachable")?;
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(status.is_success(), "clickhouse: {sql}: {status}: {text}");
    Ok(text)
}

/// The OpenLineage events a file transport has written so far (one JSON object per line; a
/// line still being written is skipped).
pub fn lineage_events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// An OpenLineage dataset's `(namespace, name)`.
pub fn dataset_key(d: &serde_json::Value) -> (String, String) {
    (
        d["namespace"].as_str().unwrap_or_default().to_string(),
        d["name"].as_str().unwrap_or_default().to_string(),
    )
}
