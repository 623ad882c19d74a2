//! `tributary-bench marts`: the cost of an incremental marts run against the history it sits
//! on. For each history size, the raw tables are filled with that many Postgres change events
//! (skewed salesmen, each selling mostly in their home city, 80/15/5 insert/update/delete,
//! two years of months; the new events mostly in the latest month), the marts state is built, then
//! 10 K new events are appended and timed three ways (the incremental run `--runs` times, each
//! with 10 K more, median and spread):
//! - the incremental run (reads the new files, folds them into the kept state in Postgres,
//!   ranks and publishes to ClickHouse), then `--runs` more whose events all stay in the latest
//!   month (new sales in it, updates and deletes of sales made since), so that the other months
//!   are carried by reference;
//! - a full recompute of the same rankings from the whole lake in DataFusion SQL (what the
//!   marts did before they were incremental, and what time travel still does);
//! - the first run over the history (building the state from nothing: what `--rebuild` costs).
//!
//! The goal is a flat incremental line.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use tributary_common::{ClickHouseSettings, LakeSettings};
use tributary_lake::batch::{Provenance, Row, change_row};
use tributary_lake::decode::{Cell, ChangeEvent, Op};
use tributary_lake::sink::TableSink;
use tributary_marts::job::compute;
use tributary_marts::state::{PostgresState, StateStore};
use tributary_marts::{MartsJob, RunMode, RunOutcome};
use tributary_rankings::ClickHouseStore;
use tributary_raw::RawTable;
use tributary_raw::offsets::{OffsetMap, TopicPartition};
use tributary_raw::testing::Rng;

use crate::Row as ResultRow;

const CITIES: i64 = 50;
const SALESMEN: i64 = 500;
const APPEND_ROWS: usize = 100_000;

/// 1..=n from `rng`, skewed towards the low ids (a few big cities, a few star salesmen).
fn skewed(rng: &mut Rng, n: i64) -> i64 {
    1 + ((rng.unit() * rng.unit()) * n as f64) as i64
}

/// Appends change events to one raw table, one commit per call, with made-up Kafka offsets.
struct Writer {
    sink: TableSink,
    topic: String,
    next_offset: i64,
}

impl Writer {
    async fn open(catalog: Arc<dyn iceberg::Catalog>, ns: &str, table: RawTable) -> Result<Self> {
        Ok(Self {
            sink: TableSink::open(catalog, ns, table).await?,
            topic: format!("bench.{ns}.{table}"),
            next_offset: 0,
        })
    }

    async fn append(&mut self, events: Vec<ChangeEvent>) -> Result<()> {
        let now = chrono::Utc::now().timestamp_micros();
        let rows: Vec<Row> = events
            .into_iter()
            .map(|e| {
                let prov = Provenance {
                    topic: self.topic.clone(),
                    partition: 0,
                    offset: self.next_offset,
                    ingest_time_micros: now,
                    trace_id: None,
                };
                self.next_offset += 1;
                change_row(e, &prov)
            })
            .collect();
        let mut offsets = OffsetMap::new();
        offsets.advance(
            &TopicPartition::new(self.topic.clone(), 0),
            self.next_offset,
        );
        self.sink.commit(&rows, &offsets).await?;
        Ok(())
    }
}

fn change(op: Op, lsn: i64, image: Vec<Cell>) -> ChangeEvent {
    ChangeEvent {
        op,
        image,
        before_json: None,
        after_json: None,
        source_lsn: lsn,
        source_ts_micros: chrono::Utc::now().timestamp_micros(),
        source_txid: None,
    }
}

/// The Postgres sale workload: inserts of new ids, updates and deletes of existing ones.
struct Sales {
    rng: Rng,
    lsn: i64,
    next_id: i64,
    /// Sales happen over two years of history; once `live` is set, mostly in the latest month.
    live: bool,
    /// Once set (to the first id made since), every event stays in the latest month: new sales
    /// are made in it, and only sales made since are updated or deleted.
    recent_from: Option<i64>,
}

impl Sales {
    fn next(&mut self) -> ChangeEvent {
        self.lsn += 1;
        let roll = self.rng.unit();
        let first = self.recent_from.unwrap_or(1);
        let existing = self.next_id > first;
        let (op, id) = if roll < 0.80 || !existing {
            self.next_id += 1;
            (Op::Create, self.next_id - 1)
        } else {
            let id = first + (self.rng.next_u64() % (self.next_id - first) as u64) as i64;
            (if roll < 0.95 { Op::Update } else { Op::Delete }, id)
        };
        // Two years of history, so there are 24 monthly rankings to keep; new sales are in the
        // latest month, but one in ten is late (an old month).
        const TWO_YEARS_MICROS: f64 = 63_072_000e6;
        const MONTH_MICROS: f64 = 2_592_000e6;
        let start = 1_735_689_600_000_000;
        let sold_at = if self.recent_from.is_some() || (self.live && self.rng.unit() < 0.9) {
            start + (TWO_YEARS_MICROS - MONTH_MICROS + self.rng.unit() * MONTH_MICROS) as i64
        } else {
            start + (self.rng.unit() * TWO_YEARS_MICROS) as i64
        };
        // Salesmen sell mostly in their home city.
        let salesman = skewed(&mut self.rng, SALESMEN);
        let city = if self.rng.unit() < 0.9 {
            1 + salesman % CITIES
        } else {
            skewed(&mut self.rng, CITIES)
        };
        let image = vec![
            Cell::Long(id),
            Cell::Long(salesman),
            Cell::Long(city),
            Cell::Money(i128::from(100 + (self.rng.next_u64() % 1_000_000) as i64)),
            Cell::Timestamp(sold_at),
            Cell::Null,
        ];
        change(op, self.lsn, image)
    }
}

async fn fill_master(catalog: Arc<dyn iceberg::Catalog>, ns: &str) -> Result<()> {
    let mut cities = Writer::open(catalog.clone(), ns, RawTable::PgCity).await?;
    cities
        .append(
            (1..=CITIES)
                .map(|id| {
                    change(
                        Op::Read,
                        id,
                        vec![
                            Cell::Long(id),
                            Cell::Str(format!("City {id}")),
                            Cell::Str("SP".into()),
                        ],
                    )
                })
                .collect(),
        )
        .await?;
    let mut salesmen = Writer::open(catalog, ns, RawTable::PgSalesman).await?;
    salesmen
        .append(
            (1..=SALESMEN)
                .map(|id| {
                    change(
                        Op::Read,
                        id,
                        vec![
                            Cell::Long(id),
                            Cell::Str(format!("S{id}")),
                            Cell::Str(format!("Salesman {id}")),
                            Cell::Long(1 + id % CITIES),
                        ],
                    )
                })
                .collect(),
        )
        .await
}

/// A raw lake of `history` Postgres sale events (and the master data) in its own namespace,
/// with the workload and the writer to append more.
pub struct History {
    pub catalog: Arc<dyn iceberg::Catalog>,
    pub ns: String,
    sales: Sales,
    writer: Writer,
}

/// Writes a history of `history` events into `bench_marts_<id>_<history>`.
pub async fn fill_history(lake: &LakeSettings, id: &str, history: usize) -> Result<History> {
    let ns = format!("bench_marts_{id}_{history}");
    let mut settings = lake.clone();
    settings.namespace = ns.clone();
    let catalog: Arc<dyn iceberg::Catalog> =
        Arc::new(tributary_raw::catalog::open(&settings).await?);
    tributary_lake::catalog::ensure_tables(catalog.as_ref(), &ns).await?;
    fill_master(catalog.clone(), &ns).await?;

    eprintln!("{ns}: writing {history} sale events of history");
    let started = Instant::now();
    let mut sales = Sales {
        rng: Rng(history as u64),
        lsn: 1_000,
        next_id: 1,
        live: false,
        recent_from: None,
    };
    let mut writer = Writer::open(catalog.clone(), &ns, RawTable::PgSale).await?;
    let mut left = history;
    while left > 0 {
        let n = left.min(APPEND_ROWS);
        writer
            .append((0..n).map(|_| sales.next()).collect())
            .await?;
        left -= n;
    }
    eprintln!(
        "{ns}: history written in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(History {
        catalog,
        ns,
        sales,
        writer,
    })
}

/// One history size: returns the rows of the results table.
pub async fn history(
    lake: &LakeSettings,
    clickhouse: &ClickHouseSettings,
    id: &str,
    history: usize,
    new_events: usize,
    runs: usize,
    max_events_per_run: u64,
) -> Result<Vec<ResultRow>> {
    let History {
        catalog,
        ns,
        mut sales,
        mut writer,
    } = fill_history(lake, id, history).await?;

    let mut ch = clickhouse.clone();
    ch.database = format!("bench_marts_{id}");
    let state = Arc::new(PostgresState::new(
        &lake.catalog_uri,
        format!("marts_state_{ns}"),
    )?);
    let job = MartsJob::new(
        catalog.clone(),
        ns.clone(),
        Arc::new(ClickHouseStore::new(&ch)?),
        state.clone(),
    )
    // 0: no bound (u64::MAX).
    .with_max_events_per_run(match max_events_per_run {
        0 => u64::MAX,
        n => n,
    });
    // The first run's own peak memory: this process's peak, reset before it.
    let me = std::process::id();
    crate::procfs::reset_peak_rss(me)?;
    let started = Instant::now();
    job.run_with(RunMode::Rebuild)
        .await
        .context("first run (rebuild)")?;
    let build = started.elapsed().as_secs_f64();
    let build_peak_mib = crate::procfs::peak_rss_mib(me)?;

    sales.live = true;
    let spread = timed_runs(&job, &mut writer, &mut sales, new_events, runs).await?;
    // The same again with every event in the latest month: a run ranks and publishes all time
    // and that month, and carries the others by reference.
    sales.recent_from = Some(sales.next_id);
    let recent = timed_runs(&job, &mut writer, &mut sales, new_events, runs).await?;
    let publish = spread.phases[4];

    let started = Instant::now();
    let (_, full) = compute(catalog.as_ref(), &ns)
        .await
        .context("full recompute")?;
    let recompute = started.elapsed().as_secs_f64();
    // The two must agree, or the timing compares different work.
    let kept = job.kept_rankings().await?.context("state after the run")?;
    anyhow::ensure!(
        kept == full,
        "{ns}: incremental rankings differ from the full recompute"
    );
    state.reset().await?;
    // The lake of this history and the rankings it published: a 10 M history is gigabytes.
    let mut settings = lake.clone();
    settings.namespace = ns.clone();
    crate::cleanup::drop_lake_namespace(&settings).await;
    crate::cleanup::drop_clickhouse_database(&ch, &ch.database).await;

    let total = history + new_events;
    let row = |subject: String, events: usize, seconds: f64, note: String| ResultRow {
        benchmark: "marts".into(),
        subject,
        events,
        seconds,
        events_per_second: events as f64 / seconds,
        note,
    };
    Ok(vec![
        row(
            format!("incremental run: {new_events} new on {history} history"),
            new_events,
            spread.median,
            format!(
                "{}; {:.1}x faster than recompute + publish; every month changes (late events, updates and deletes of any sale)",
                spread.note(runs),
                (recompute + publish) / spread.median
            ),
        ),
        row(
            format!("incremental run: {new_events} new in the latest month on {history} history"),
            new_events,
            recent.median,
            format!(
                "{}; the other months carried by reference",
                recent.note(runs)
            ),
        ),
        row(
            format!("full recompute (DataFusion SQL) of {total}, + the same publish"),
            total,
            recompute + publish,
            format!("reads every event; the baseline (compute {recompute:.2}s)"),
        ),
        row(
            format!("first run / --rebuild over {history}"),
            history,
            build,
            format!(
                "builds the kept state in Postgres from nothing, {}; peak RSS of the bench process during it {build_peak_mib:.0} MiB",
                match max_events_per_run {
                    0 => "in one slice".to_string(),
                    n => format!("in slices of at most {n} events"),
                }
            ),
        ),
    ])
}

/// The timings of a series of incremental runs: medians (of the phases too) and spread.
struct Timed {
    median: f64,
    fastest: f64,
    slowest: f64,
    /// Medians of read, fold, state commit, rank, publish.
    phases: [f64; 5],
    /// Medians of the ranking rows written and of those whose totals the run moved (`None` when
    /// a run published without the latest publication to compare with).
    rows: (f64, Option<f64>),
}

impl Timed {
    fn note(&self, runs: usize) -> String {
        let [read, fold, commit, rank, publish] = self.phases;
        format!(
            "median of {runs} (min {:.2}s, max {:.2}s); medians: read {read:.2}s, fold {fold:.2}s, state commit {commit:.2}s, rank {rank:.2}s, publish {publish:.2}s; ranking rows written {:.0}{}",
            self.fastest,
            self.slowest,
            self.rows.0,
            self.rows.1.map_or(String::new(), |moved| format!(
                ", of which {moved:.0} with a total the run moved"
            ))
        )
    }
}

/// `runs` incremental runs, each folding `new_events` more from `sales`: the state stays the one
/// the rebuild wrote plus what earlier runs folded, as in production.
async fn timed_runs(
    job: &MartsJob,
    writer: &mut Writer,
    sales: &mut Sales,
    new_events: usize,
    runs: usize,
) -> Result<Timed> {
    let mut totals = Vec::with_capacity(runs);
    let mut phases: [Vec<f64>; 5] = Default::default();
    let (mut written, mut moved) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for _ in 0..runs.max(1) {
        writer
            .append((0..new_events).map(|_| sales.next()).collect())
            .await?;
        let started = Instant::now();
        let outcome = job
            .run_with(RunMode::Incremental)
            .await
            .context("incremental run")?;
        totals.push(started.elapsed().as_secs_f64());
        let RunOutcome::Published {
            timings: t,
            rows_out,
            rows_changed,
            ..
        } = outcome
        else {
            anyhow::bail!("the incremental run published nothing");
        };
        for (phase, seconds) in phases
            .iter_mut()
            .zip([t.read, t.fold, t.commit, t.rank, t.publish])
        {
            phase.push(seconds);
        }
        written.push(rows_out as f64);
        moved.extend(rows_changed.map(|n| n as f64));
    }
    let (median, fastest, slowest) = crate::summary(totals);
    let phases = phases.map(|p| crate::summary(p).0);
    // A median of the rows moved only when every run could count them.
    let moved = (moved.len() == written.len()).then(|| crate::summary(moved).0);
    let rows = (crate::summary(written).0, moved);
    Ok(Timed {
        median,
        fastest,
        slowest,
        phases,
        rows,
    })
}
