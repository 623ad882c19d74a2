//! `tributary-bench load`: a seeded, realistic sales workload into the three sources at a
//! paced rate.
//!
//! The workload ([`Workload`]) is pure: a seed gives the same sequence of changes every time
//! (which source, insert/update/delete, which salesman, city, amount, which live sale an update
//! or delete hits). Sinks turn it into real writes:
//!
//! - Postgres (`sale` of the source database Debezium captures): one transaction per tick,
//!   multi-row statements (ids taken from the table's own sequence, so the same seed writes the
//!   same logical changes whatever ids the table is at). Each transaction first reads
//!   `pg_current_wal_insert_lsn()`: every change of the transaction has a WAL position at or
//!   after it, which is what `cdc` uses to tell when the change is visible in the API.
//! - Partner files: one NDJSON file per second for partner `globex` (incremental mode; a later
//!   file with the same `order_id` corrects the sale) written atomically into a local inbox
//!   folder. An incremental partner file cannot withdraw a sale, so a delete drawn for the file
//!   source is sent as a correction.
//! - The ERP simulator's admin API: `POST /admin/sales` (new sale or correction by `saleId`),
//!   `POST /admin/sales/{id}/cancel`.
//!
//! Skew: salesmen are drawn Zipf-like (s = 1.1: a few star salesmen make most sales), cities
//! too (s = 1.0: a few big cities); 90 % of a salesman's sales are in his home city, and the
//! home cities of salesmen follow the city skew. Amounts are log-uniform between 5 and 5 000.
//!
//! Pacing: a tick every 20 ms generates the changes due since the start (`rate × elapsed`),
//! at most half a second's worth at once, so a sink that falls behind lowers the achieved rate
//! (reported) instead of bursting without bound.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, ensure};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tokio::sync::mpsc;

/// A small, seeded pseudo-random generator (SplitMix64): the same seed gives the same
/// workload on every machine, with no dependency whose algorithm could change under us.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }
}

/// Zipf-like choice among `n` items: item `k` (0-based) has weight `1 / (k + 1)^s`.
#[derive(Debug, Clone)]
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    /// The distribution over `n` items with exponent `s`.
    pub fn new(n: usize, s: f64) -> Self {
        let mut total = 0.0;
        let cumulative = (0..n.max(1))
            .map(|k| {
                total += 1.0 / ((k + 1) as f64).powf(s);
                total
            })
            .collect();
        Self { cumulative }
    }

    /// An item index.
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let total = *self.cumulative.last().expect("at least one item");
        let x = rng.unit() * total;
        self.cumulative
            .partition_point(|&c| c <= x)
            .min(self.cumulative.len() - 1)
    }
}

/// A city of the master data.
#[derive(Debug, Clone, Serialize)]
pub struct City {
    /// Id in the source database.
    pub id: i64,
    /// Name.
    pub name: String,
    /// State (UF).
    pub state: String,
}

/// A salesman of the master data.
#[derive(Debug, Clone, Serialize)]
pub struct Salesman {
    /// Id in the source database.
    pub id: i64,
    /// Code (what files and the ERP send).
    pub code: String,
}

/// The master data sales refer to.
#[derive(Debug, Clone)]
pub struct Master {
    /// Cities, in a fixed order (the first ones are the big cities).
    pub cities: Vec<City>,
    /// Salesmen, in a fixed order (the first ones are the stars).
    pub salesmen: Vec<Salesman>,
}

/// Which source a change goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Postgres `sale`, captured by Debezium.
    Postgres,
    /// Partner files in the inbox.
    Files,
    /// The ERP simulator.
    Erp,
}

/// The contents of a sale.
#[derive(Debug, Clone, PartialEq)]
pub struct Sale {
    /// Index into [`Master::salesmen`].
    pub salesman: usize,
    /// Index into [`Master::cities`].
    pub city: usize,
    /// Amount in cents.
    pub cents: i64,
    /// When it was sold.
    pub sold_at: DateTime<Utc>,
}

/// One change. `key` names a sale of this workload (stable across runs of a seed); sinks map
/// it to the source's own id.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A new sale.
    Insert { key: u64, sale: Sale },
    /// A correction of a live sale.
    Update { key: u64, sale: Sale },
    /// A deletion (Postgres) or cancellation (ERP) of a live sale.
    Delete { key: u64 },
}

/// Shares of the sources (they need not sum to 1; they are normalised).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Shares {
    /// Postgres.
    pub postgres: f64,
    /// Partner files.
    pub files: f64,
    /// The ERP.
    pub erp: f64,
}

/// The seeded workload. Pure: no I/O.
#[derive(Debug, Clone)]
pub struct Workload {
    rng: Rng,
    salesmen: Zipf,
    cities: Zipf,
    homes: Vec<usize>,
    n_salesmen: usize,
    n_cities: usize,
    shares: [f64; 3],
    live: [Vec<u64>; 3],
    next_key: u64,
    epoch: DateTime<Utc>,
}

impl Workload {
    /// A workload over `master`'s sizes. `epoch` anchors `sold_at` (sales of the last 30 days
    /// before it, most of them recent), so a seed with the same epoch is the same workload.
    pub fn new(
        seed: u64,
        n_salesmen: usize,
        n_cities: usize,
        shares: Shares,
        epoch: DateTime<Utc>,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let cities = Zipf::new(n_cities, 1.0);
        let homes = (0..n_salesmen).map(|_| cities.sample(&mut rng)).collect();
        let total = (shares.postgres + shares.files + shares.erp).max(f64::MIN_POSITIVE);
        Self {
            rng,
            salesmen: Zipf::new(n_salesmen, 1.1),
            cities,
            homes,
            n_salesmen,
            n_cities,
            shares: [
                shares.postgres / total,
                shares.files / total,
                shares.erp / total,
            ],
            live: [Vec::new(), Vec::new(), Vec::new()],
            next_key: 0,
            epoch,
        }
    }

    /// A workload over `master` anchored at midnight UTC today: the same seed on the same day
    /// writes the same sales.
    pub fn today(seed: u64, master: &Master, shares: Shares) -> Self {
        Self::new(
            seed,
            master.salesmen.len(),
            master.cities.len(),
            shares,
            Utc::now()
                .date_naive()
                .and_hms_opt(0, 0, 0)
                .expect("midnight")
                .and_utc(),
        )
    }

    fn sale(&mut self) -> Sale {
        let salesman = self.salesmen.sample(&mut self.rng).min(self.n_salesmen - 1);
        let city = if self.rng.unit() < 0.9 {
            self.homes[salesman]
        } else {
            self.cities.sample(&mut self.rng)
        }
        .min(self.n_cities - 1);
        // Log-uniform 5.00 .. 5000.00.
        let cents = (500.0 * 1000f64.powf(self.rng.unit())) as i64;
        // Most sales are recent: the square pulls the age towards zero; 30 days at most.
        let age_s = (self.rng.unit().powi(3) * 30.0 * 86_400.0) as i64;
        Sale {
            salesman,
            city,
            cents,
            sold_at: self.epoch - chrono::Duration::seconds(age_s),
        }
    }

    /// The next change and its source: 80 % inserts, 15 % updates, 5 % deletes (an update or
    /// delete with no live sale in its source becomes an insert).
    pub fn next_change(&mut self) -> (Source, Change) {
        let pick = self.rng.unit();
        let source = if pick < self.shares[0] {
            Source::Postgres
        } else if pick < self.shares[0] + self.shares[1] {
            Source::Files
        } else {
            Source::Erp
        };
        let slot = source as usize;
        let op = self.rng.unit();
        let live = self.live[slot].len();
        if op >= 0.80 && live > 0 {
            let index = self.rng.below(live);
            let key = self.live[slot][index];
            // Files cannot withdraw a sale in incremental mode: their deletes are corrections.
            if op >= 0.95 && source != Source::Files {
                self.live[slot].swap_remove(index);
                return (source, Change::Delete { key });
            }
            let mut sale = self.sale();
            // A correction keeps who sold it most of the time; it fixes the amount or the date.
            if self.rng.unit() < 0.8 {
                sale.salesman = usize::MAX;
            }
            return (source, Change::Update { key, sale });
        }
        let key = self.next_key;
        self.next_key += 1;
        self.live[slot].push(key);
        let sale = self.sale();
        (source, Change::Insert { key, sale })
    }
}

/// A Postgres transaction of the workload: when it was acknowledged and the WAL position all
/// of its changes are at or after.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Probe {
    /// `pg_current_wal_insert_lsn()` read in the transaction before its first change.
    pub lsn_before: u64,
    /// Wall time the COMMIT was acknowledged.
    pub committed_at: SystemTime,
    /// Changes in the transaction.
    pub changes: usize,
}

/// Where the load goes.
#[derive(Debug, Clone)]
pub struct Targets {
    /// Postgres connection string of the source database.
    pub postgres: String,
    /// Local inbox folder of the file ingestor (partner `globex` goes under `globex/`).
    pub inbox: PathBuf,
    /// Base URL of the ERP simulator.
    pub erp: String,
    /// Unique run tag (file names, ERP sale ids).
    pub run: String,
}

/// What a load run did.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Target rate, changes/s.
    pub target_rate: f64,
    /// Seconds the generator ran.
    pub seconds: f64,
    /// Changes generated.
    pub generated: u64,
    /// Changes applied per source.
    pub applied: HashMap<Source, u64>,
    /// Applied changes per second.
    pub achieved_rate: f64,
    /// Inserts, updates, deletes generated.
    pub mix: [u64; 3],
    /// Postgres transactions with their commit times and WAL positions.
    #[serde(skip)]
    pub probes: Vec<Probe>,
}

/// Reads the master data of the source database (cities by id, salesmen by id).
pub async fn master(db: &tokio_postgres::Client) -> Result<Master> {
    let cities = db
        .query("SELECT id, name, state FROM city ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| City {
            id: r.get(0),
            name: r.get(1),
            state: r.get(2),
        })
        .collect::<Vec<_>>();
    let salesmen = db
        .query("SELECT id, code FROM salesman ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| Salesman {
            id: r.get(0),
            code: r.get(1),
        })
        .collect::<Vec<_>>();
    ensure!(
        !cities.is_empty() && !salesmen.is_empty(),
        "the source database has no cities or salesmen (load the sample data: `make demo`)"
    );
    Ok(Master { cities, salesmen })
}

/// Connects to Postgres.
pub async fn connect(dsn: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connect to Postgres ({dsn})"))?;
    tokio::spawn(connection);
    Ok(client)
}

fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an LSN `X/Y` as Postgres prints it.
pub fn parse_lsn(text: &str) -> Result<u64> {
    let (hi, lo) = text.split_once('/').context("an LSN is X/Y")?;
    Ok((u64::from_str_radix(hi, 16)? << 32) | u64::from_str_radix(lo, 16)?)
}

type Batch = Vec<Change>;

async fn postgres_sink(
    dsn: String,
    master: Arc<Master>,
    mut batches: mpsc::Receiver<Batch>,
) -> Result<(u64, Vec<Probe>)> {
    let mut db = connect(&dsn).await?;
    let mut ids: HashMap<u64, i64> = HashMap::new();
    let mut probes = Vec::new();
    let mut applied = 0u64;
    while let Some(batch) = batches.recv().await {
        let inserts: Vec<(u64, &Sale)> = batch
            .iter()
            .filter_map(|c| match c {
                Change::Insert { key, sale } => Some((*key, sale)),
                _ => None,
            })
            .collect();
        // The last correction of a key in this batch wins (one UPDATE row per id).
        let mut updates: Vec<(u64, &Sale)> = Vec::new();
        for c in &batch {
            if let Change::Update { key, sale } = c {
                updates.retain(|(k, _)| k != key);
                updates.push((*key, sale));
            }
        }
        let deletes: Vec<u64> = batch
            .iter()
            .filter_map(|c| match c {
                Change::Delete { key } => Some(*key),
                _ => None,
            })
            .collect();
        let tx = db.transaction().await?;
        let lsn: String = tx
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await?
            .get(0);
        let mut rows = 0u64;
        if !inserts.is_empty() {
            let n = inserts.len() as i64;
            let new_ids: Vec<i64> = tx
                .query(
                    "SELECT nextval(pg_get_serial_sequence('sale', 'id')) FROM generate_series(1::bigint, $1::bigint)",
                    &[&n],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let (mut id, mut salesman, mut city, mut amount, mut sold_at) =
                (vec![], vec![], vec![], vec![], vec![]);
            for ((key, sale), new_id) in inserts.iter().zip(&new_ids) {
                ids.insert(*key, *new_id);
                id.push(*new_id);
                salesman.push(master.salesmen[sale.salesman].id);
                city.push(master.cities[sale.city].id);
                amount.push(money(sale.cents));
                sold_at.push(time(&sale.sold_at));
            }
            rows += tx
                .execute(
                    "INSERT INTO sale (id, salesman_id, city_id, amount, sold_at, updated_at) \
                     SELECT i, s, c, a::numeric, t::timestamptz, clock_timestamp() \
                     FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[]) AS u(i, s, c, a, t)",
                    &[&id, &salesman, &city, &amount, &sold_at],
                )
                .await?;
        }
        if !updates.is_empty() {
            let (mut id, mut salesman, mut city, mut amount, mut sold_at) =
                (vec![], vec![], vec![], vec![], vec![]);
            for (key, sale) in &updates {
                let Some(row) = ids.get(key) else { continue };
                id.push(*row);
                // usize::MAX: the correction keeps the salesman.
                salesman.push(master.salesmen.get(sale.salesman).map(|s| s.id));
                city.push(master.cities[sale.city].id);
                amount.push(money(sale.cents));
                sold_at.push(time(&sale.sold_at));
            }
            rows += tx
                .execute(
                    "UPDATE sale SET salesman_id = coalesce(u.s, sale.salesman_id), city_id = u.c, \
                     amount = u.a::numeric, sold_at = u.t::timestamptz, updated_at = clock_timestamp() \
                     FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[]) AS u(i, s, c, a, t) \
                     WHERE sale.id = u.i",
                    &[&id, &salesman, &city, &amount, &sold_at],
                )
                .await?;
        }
        if !deletes.is_empty() {
            let id: Vec<i64> = deletes.iter().filter_map(|k| ids.remove(k)).collect();
            rows += tx
                .execute("DELETE FROM sale WHERE id = ANY($1)", &[&id])
                .await?;
        }
        tx.commit().await?;
        let committed_at = SystemTime::now();
        applied += rows;
        probes.push(Probe {
            lsn_before: parse_lsn(&lsn)?,
            committed_at,
            changes: rows as usize,
        });
    }
    Ok((applied, probes))
}

fn globex_line(master: &Master, run: &str, key: u64, sale: &Sale, salesman: usize) -> String {
    let salesman = &master.salesmen[salesman];
    serde_json::json!({
        "order_id": format!("{run}-F{key}"),
        "seller": {"code": salesman.code},
        "city_id": master.cities[sale.city].id,
        "total": money(sale.cents),
        "created_at": time(&sale.sold_at),
        "currency": "BRL",
    })
    .to_string()
}

async fn files_sink(
    inbox: PathBuf,
    run: String,
    master: Arc<Master>,
    mut batches: mpsc::Receiver<Batch>,
) -> Result<u64> {
    let folder = inbox.join("globex");
    tokio::fs::create_dir_all(&folder).await?;
    let mut pending: Vec<String> = Vec::new();
    let mut salesman_of: HashMap<u64, usize> = HashMap::new();
    let mut applied = 0u64;
    let mut last_flush = Instant::now();
    let mut files = 0u64;
    let flush = |pending: &mut Vec<String>, files: &mut u64| -> Result<u64> {
        if pending.is_empty() {
            return Ok(0);
        }
        let name = format!("{run}-{:06}.ndjson", *files);
        *files += 1;
        let tmp = inbox.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, pending.join("\n") + "\n")?;
        // Rename into the partner folder: the ingestor never sees a half-written file.
        std::fs::rename(&tmp, folder.join(&name))?;
        let n = pending.len() as u64;
        pending.clear();
        Ok(n)
    };
    while let Some(batch) = batches.recv().await {
        for change in batch {
            match change {
                Change::Insert { key, sale } | Change::Update { key, sale } => {
                    // usize::MAX: a correction that keeps the salesman the sale has.
                    let salesman = if sale.salesman == usize::MAX {
                        *salesman_of.get(&key).unwrap_or(&0)
                    } else {
                        salesman_of.insert(key, sale.salesman);
                        sale.salesman
                    };
                    pending.push(globex_line(&master, &run, key, &sale, salesman))
                }
                Change::Delete { .. } => {}
            }
        }
        if last_flush.elapsed() >= Duration::from_secs(1) {
            applied += flush(&mut pending, &mut files)?;
            last_flush = Instant::now();
        }
    }
    applied += flush(&mut pending, &mut files)?;
    Ok(applied)
}

async fn erp_sink(
    erp: String,
    run: String,
    master: Arc<Master>,
    mut batches: mpsc::Receiver<Batch>,
) -> Result<u64> {
    let http = reqwest::Client::new();
    let mut applied = 0u64;
    let mut salesman_of: HashMap<u64, usize> = HashMap::new();
    while let Some(batch) = batches.recv().await {
        for change in batch {
            let response = match change {
                Change::Insert { key, sale } | Change::Update { key, sale } => {
                    let salesman = if sale.salesman == usize::MAX {
                        *salesman_of.get(&key).unwrap_or(&0)
                    } else {
                        salesman_of.insert(key, sale.salesman);
                        sale.salesman
                    };
                    let city = &master.cities[sale.city];
                    http.post(format!("{erp}/admin/sales"))
                        .json(&serde_json::json!({
                            "saleId": format!("{run}-E{key}"),
                            "salesmanCode": master.salesmen[salesman].code,
                            "cityName": city.name,
                            "cityState": city.state,
                            "amount": money(sale.cents),
                            "soldAt": time(&sale.sold_at),
                        }))
                        .send()
                        .await?
                }
                Change::Delete { key } => {
                    http.post(format!("{erp}/admin/sales/{run}-E{key}/cancel"))
                        .json(&serde_json::json!({"reason": "bench: cancelled"}))
                        .send()
                        .await?
                }
            };
            let status = response.status();
            ensure!(
                status.is_success(),
                "ERP admin API answered {status}: {}",
                response.text().await.unwrap_or_default()
            );
            applied += 1;
        }
    }
    Ok(applied)
}

/// Runs `workload` at `rate` changes/s for `seconds` into `targets`.
pub async fn run(
    mut workload: Workload,
    master: Master,
    targets: &Targets,
    rate: f64,
    seconds: f64,
) -> Result<LoadReport> {
    ensure!(rate > 0.0, "the rate must be positive");
    let master = Arc::new(master);
    // A few seconds of ticks may queue; beyond that the generator waits for the sink.
    let (pg_tx, pg_rx) = mpsc::channel::<Batch>(100);
    let (file_tx, file_rx) = mpsc::channel::<Batch>(100);
    let (erp_tx, erp_rx) = mpsc::channel::<Batch>(100);
    let pg = tokio::spawn(postgres_sink(
        targets.postgres.clone(),
        master.clone(),
        pg_rx,
    ));
    let files = tokio::spawn(files_sink(
        targets.inbox.clone(),
        targets.run.clone(),
        master.clone(),
        file_rx,
    ));
    let erp = tokio::spawn(erp_sink(
        targets.erp.clone(),
        targets.run.clone(),
        master.clone(),
        erp_rx,
    ));
    let start = Instant::now();
    let mut generated = 0u64;
    let mut mix = [0u64; 3];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let max_burst = (rate / 2.0).max(1.0) as u64;
    loop {
        tick.tick().await;
        let elapsed = start.elapsed().as_secs_f64();
        if elapsed >= seconds {
            break;
        }
        let due = ((rate * elapsed) as u64).saturating_sub(generated);
        let n = due.min(max_burst);
        if n == 0 {
            continue;
        }
        let (mut to_pg, mut to_files, mut to_erp) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let (source, change) = workload.next_change();
            mix[match change {
                Change::Insert { .. } => 0,
                Change::Update { .. } => 1,
                Change::Delete { .. } => 2,
            }] += 1;
            match source {
                Source::Postgres => to_pg.push(change),
                Source::Files => to_files.push(change),
                Source::Erp => to_erp.push(change),
            }
        }
        generated += n;
        // A closed channel means its sink failed: stop and report its error below.
        if (!to_pg.is_empty() && pg_tx.send(to_pg).await.is_err())
            || (!to_files.is_empty() && file_tx.send(to_files).await.is_err())
            || (!to_erp.is_empty() && erp_tx.send(to_erp).await.is_err())
        {
            break;
        }
    }
    drop((pg_tx, file_tx, erp_tx));
    let (pg_applied, probes) = pg.await?.context("Postgres sink")?;
    let files_applied = files.await?.context("file sink")?;
    let erp_applied = erp.await?.context("ERP sink")?;
    let seconds = start.elapsed().as_secs_f64();
    let applied = HashMap::from([
        (Source::Postgres, pg_applied),
        (Source::Files, files_applied),
        (Source::Erp, erp_applied),
    ]);
    let total: u64 = applied.values().sum();
    Ok(LoadReport {
        target_rate: rate,
        seconds,
        generated,
        applied,
        achieved_rate: total as f64 / seconds,
        mix,
        probes,
    })
}

/// `tributary-bench load` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Changes per second, all sources together.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// How long to run.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// Seed of the workload: the same seed gives the same changes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Shares of Postgres, files and the ERP, e.g. `80,15,5`.
    #[arg(long, value_delimiter = ',', default_value = "80,15,5")]
    pub shares: Vec<f64>,
    /// The source database (Debezium's `salesdb` on the local stack).
    #[arg(
        long,
        default_value = "host=127.0.0.1 port=5432 user=tributary password=tributary dbname=salesdb"
    )]
    pub postgres: String,
    /// The file ingestor's local inbox folder.
    #[arg(long, default_value = ".stack/inbox")]
    pub inbox: PathBuf,
    /// The ERP simulator.
    #[arg(long, default_value = "http://127.0.0.1:8088")]
    pub erp: String,
}

impl LoadArgs {
    /// The source shares.
    pub fn shares(&self) -> Result<Shares> {
        ensure!(
            self.shares.len() == 3 && self.shares.iter().all(|s| *s >= 0.0),
            "--shares takes three non-negative numbers: postgres,files,erp"
        );
        Ok(Shares {
            postgres: self.shares[0],
            files: self.shares[1],
            erp: self.shares[2],
        })
    }
}

/// `tributary-bench load`: runs the workload and prints what it did.
pub async fn main(args: LoadArgs) -> Result<()> {
    let db = connect(&args.postgres).await?;
    let master = master(&db).await?;
    let tag = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let workload = Workload::today(args.seed, &master, args.shares()?);
    let targets = Targets {
        postgres: args.postgres.clone(),
        inbox: args.inbox.clone(),
        erp: args.erp.clone(),
        run: tag,
    };
    eprintln!(
        "load: {} changes/s for {} s, seed {}, shares pg/files/erp {:?}, {} salesmen, {} cities",
        args.rate,
        args.seconds,
        args.seed,
        args.shares,
        master.salesmen.len(),
        master.cities.len()
    );
    let report = run(workload, master, &targets, args.rate, args.seconds).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(seed: u64) -> Workload {
        let epoch = DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        Workload::new(
            seed,
            100,
            20,
            Shares {
                postgres: 80.0,
                files: 15.0,
                erp: 5.0,
            },
            epoch,
        )
    }

    #[test]
    fn the_same_seed_is_the_same_workload() {
        let (mut a, mut b, mut c) = (workload(7), workload(7), workload(8));
        let xs: Vec<_> = (0..1000).map(|_| a.next_change()).collect();
        let ys: Vec<_> = (0..1000).map(|_| b.next_change()).collect();
        let zs: Vec<_> = (0..1000).map(|_| c.next_change()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn mix_shares_and_skew_are_as_configured() {
        let mut w = workload(1);
        let n = 100_000;
        let (mut ops, mut sources) = ([0usize; 3], [0usize; 3]);
        let mut by_salesman = vec![0usize; 100];
        for _ in 0..n {
            let (source, change) = w.next_change();
            sources[source as usize] += 1;
            match change {
                Change::Insert { sale, .. } => {
                    ops[0] += 1;
                    by_salesman[sale.salesman] += 1;
                }
                Change::Update { .. } => ops[1] += 1,
                Change::Delete { .. } => ops[2] += 1,
            }
        }
        let share = |x: usize| x as f64 / n as f64;
        // Files turn their deletes into corrections: 5 % of 15 % moves from deletes to updates.
        assert!((share(ops[0]) - 0.80).abs() < 0.01, "{ops:?}");
        assert!((share(ops[1]) - 0.1575).abs() < 0.01, "{ops:?}");
        assert!((share(ops[2]) - 0.0425).abs() < 0.01, "{ops:?}");
        assert!((share(sources[0]) - 0.80).abs() < 0.01, "{sources:?}");
        assert!((share(sources[1]) - 0.15).abs() < 0.01, "{sources:?}");
        // The star salesman sells far more than the median one.
        let mut sorted = by_salesman.clone();
        sorted.sort_unstable();
        assert!(by_salesman[0] > 10 * sorted[50], "{by_salesman:?}");
    }

    #[test]
    fn lsn_text_is_parsed_as_postgres_prints_it() {
        assert_eq!(parse_lsn("0/16B3748").unwrap(), 0x16B_3748);
        assert_eq!(parse_lsn("1/0").unwrap(), 1 << 32);
        assert!(parse_lsn("nonsense").is_err());
    }
}
