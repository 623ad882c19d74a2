//! In-memory [`PublicationWriter`](super::PublicationWriter) and
//! [`RankingQueries`](super::RankingQueries) with ClickHouse's `ReplacingMergeTree … FINAL` semantics:
//! rows are keyed by their table's sorting key and a row with a higher or equal version
//! replaces the one with the same key.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::clickhouse::RankingRow;
use super::{Page, PublicationWriter, RankingQueries};
use crate::error::RankingsError;
use crate::period::Period;
use crate::publication::Publication;
use crate::retention::{self, PrunePlan, PublicationAge, PublicationRetention};
use crate::schema::{
    CityRankingRow, CitySalesmanRankingRow, MartRunRow, PublicationPeriodRow, PublicationRow,
    SalesmanRankingRow,
};

/// Keys are the tables' sorting keys, with the period as a [`Period`] so `all` sorts before
/// the months as `Period`'s order says (ClickHouse never relies on that order: it filters on
/// one period).
#[derive(Debug, Default)]
struct Tables {
    publications: BTreeMap<String, PublicationRow>,
    periods: BTreeMap<(String, Period), PublicationPeriodRow>,
    sources: BTreeMap<(String, String), crate::schema::PublicationSourceRow>,
    cities: BTreeMap<(String, Period, u32, i64), CityRankingRow>,
    city_salesmen: BTreeMap<(String, Period, i64, u32, i64), CitySalesmanRankingRow>,
    salesmen: BTreeMap<(String, Period, u32, i64), SalesmanRankingRow>,
    runs: Vec<MartRunRow>,
}

impl Tables {
    /// Whether a ranking row keyed `(row_publication, row_period, …)` is one of the rows of
    /// `period` of `publication_id`, wherever they are.
    fn serves(&self, publication_id: &str, period: Period, row: (&str, Period)) -> bool {
        row.1 == period
            && self
                .periods
                .get(&(publication_id.to_string(), period))
                .is_some_and(|p| p.rows_publication_id == row.0)
    }
}

/// A ranking row as `publication_id` serves it (read where it is, named for it).
fn named<T: RankingRow + Clone>(row: &T, publication_id: &str) -> T {
    let mut row = row.clone();
    row.set_publication_id(publication_id);
    row
}

/// The store in memory, for tests. [`MemoryStore::set_unavailable`] makes every
/// call fail as if the server were unreachable.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
    unavailable: AtomicBool,
}

fn upsert<K: Ord, V>(map: &mut BTreeMap<K, V>, key: K, row: V, version: impl Fn(&V) -> u64) {
    match map.get(&key) {
        Some(old) if version(old) > version(&row) => {}
        _ => {
            map.insert(key, row);
        }
    }
}

fn page<'a, T: Clone + 'a>(rows: impl Iterator<Item = &'a T>, page: Page) -> Vec<T> {
    rows.skip(usize::try_from(page.offset).unwrap_or(usize::MAX))
        .take(page.limit as usize)
        .cloned()
        .collect()
}

/// Rows were written from a [`Period`], so their text always parses back.
fn period_of(text: &str) -> Period {
    text.parse()
        .unwrap_or_else(|e| panic!("memory store row with a bad period: {e}"))
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail (`true`) or work again (`false`).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    fn tables(&self, action: &str) -> Result<std::sync::MutexGuard<'_, Tables>, RankingsError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(RankingsError::ClickHouse {
                action: action.to_string(),
                source: clickhouse::error::Error::Network(Box::new(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "memory store set unavailable",
                ))),
            });
        }
        // A panic while holding the lock leaves plain data behind; keep serving it.
        Ok(self.tables.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[async_trait]
impl PublicationWriter for MemoryStore {
    async fn ensure_schema(&self) -> Result<(), RankingsError> {
        self.tables("create schema").map(|_| ())
    }

    async fn publish(&self, publication: &Publication) -> Result<(), RankingsError> {
        let rows = publication.rows();
        let mut t = self.tables("publish")?;
        for r in rows.cities {
            let key = (
                r.publication_id.clone(),
                period_of(&r.period),
                r.rank,
                r.city_id,
            );
            upsert(&mut t.cities, key, r, |r| r.version);
        }
        for r in rows.city_salesmen {
            let key = (
                r.publication_id.clone(),
                period_of(&r.period),
                r.city_id,
                r.rank,
                r.salesman_id,
            );
            upsert(&mut t.city_salesmen, key, r, |r| r.version);
        }
        for r in rows.salesmen {
            let key = (
                r.publication_id.clone(),
                period_of(&r.period),
                r.rank,
                r.salesman_id,
            );
            upsert(&mut t.salesmen, key, r, |r| r.version);
        }
        for r in rows.periods {
            let key = (r.publication_id.clone(), period_of(&r.period));
            upsert(&mut t.periods, key, r, |r| r.version);
        }
        for r in rows.sources {
            let key = (r.publication_id.clone(), r.source.clone());
            upsert(&mut t.sources, key, r, |r| r.version);
        }
        let p = rows.publication;
        upsert(&mut t.publications, p.publication_id.clone(), p, |r| {
            r.version
        });
        Ok(())
    }

    async fn record_run(&self, run: &MartRunRow) -> Result<(), RankingsError> {
        self.tables("record run")?.runs.push(run.clone());
        Ok(())
    }

    async fn prune(
        &self,
        retention: &PublicationRetention,
        now: DateTime<Utc>,
    ) -> Result<PrunePlan, RankingsError> {
        let mut t = self.tables("prune")?;
        let mut carries_from: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for p in t.periods.values() {
            if p.rows_publication_id != p.publication_id {
                carries_from
                    .entry(p.publication_id.clone())
                    .or_default()
                    .insert(p.rows_publication_id.clone());
            }
        }
        let publications: Vec<PublicationAge> = t
            .publications
            .values()
            .map(|p| PublicationAge {
                carries_from: carries_from.remove(&p.publication_id).unwrap_or_default(),
                publication_id: p.publication_id.clone(),
                lake_window: p.lake_window,
                version: p.version,
                computed_at: p.computed_at,
            })
            .collect();
        let windows: BTreeSet<u32> = (t.publications.values().map(|r| r.lake_window))
            .chain(t.periods.values().map(|r| r.lake_window))
            .chain(t.sources.values().map(|r| r.lake_window))
            .chain(t.cities.values().map(|r| r.lake_window))
            .chain(t.city_salesmen.values().map(|r| r.lake_window))
            .chain(t.salesmen.values().map(|r| r.lake_window))
            .collect();
        let plan = retention::plan_prune(&publications, &windows, now, retention);
        let kept = |w: u32| !plan.drop_windows.contains(&w);
        t.publications.retain(|_, r| kept(r.lake_window));
        t.periods.retain(|_, r| kept(r.lake_window));
        t.sources.retain(|_, r| kept(r.lake_window));
        t.cities.retain(|_, r| kept(r.lake_window));
        t.city_salesmen.retain(|_, r| kept(r.lake_window));
        t.salesmen.retain(|_, r| kept(r.lake_window));
        Ok(plan)
    }

    async fn prune_runs(&self, before: DateTime<Utc>) -> Result<u64, RankingsError> {
        let cutoff = retention::runs_cutoff(before);
        let mut t = self.tables("prune runs")?;
        let before_len = t.runs.len();
        t.runs.retain(|r| r.started_at >= cutoff);
        Ok((before_len - t.runs.len()) as u64)
    }
}

#[async_trait]
impl RankingQueries for MemoryStore {
    async fn ping(&self) -> Result<(), RankingsError> {
        self.tables("ping").map(|_| ())
    }

    async fn latest_publication(&self) -> Result<Option<PublicationRow>, RankingsError> {
        let t = self.tables("read latest publication")?;
        Ok(t.publications
            .values()
            .max_by(|a, b| (a.version, &a.publication_id).cmp(&(b.version, &b.publication_id)))
            .cloned())
    }

    async fn publication(
        &self,
        publication_id: &str,
    ) -> Result<Option<PublicationRow>, RankingsError> {
        let t = self.tables("read a publication")?;
        Ok(t.publications.get(publication_id).cloned())
    }

    async fn city_ranking(
        &self,
        publication_id: &str,
        period: Period,
        p: Page,
    ) -> Result<Vec<CityRankingRow>, RankingsError> {
        let t = self.tables("read city ranking")?;
        let rows = t
            .cities
            .iter()
            .filter(|(k, _)| t.serves(publication_id, period, (&k.0, k.1)))
            .map(|(_, r)| r);
        Ok(page(rows, p)
            .iter()
            .map(|r| named(r, publication_id))
            .collect())
    }

    async fn top_city_salesmen(
        &self,
        publication_id: &str,
        period: Period,
        city_ids: &[i64],
        max_rank: u32,
    ) -> Result<Vec<CitySalesmanRankingRow>, RankingsError> {
        let t = self.tables("read city salesmen")?;
        Ok(t.city_salesmen
            .iter()
            .filter(|(k, r)| {
                t.serves(publication_id, period, (&k.0, k.1))
                    && city_ids.contains(&r.city_id)
                    && r.rank <= max_rank
            })
            .map(|(_, r)| named(r, publication_id))
            .collect())
    }

    async fn city_salesman_ranking(
        &self,
        publication_id: &str,
        period: Period,
        city_id: i64,
        p: Page,
    ) -> Result<Vec<CitySalesmanRankingRow>, RankingsError> {
        let t = self.tables("read city salesman ranking")?;
        let rows = t
            .city_salesmen
            .iter()
            .filter(|(k, _)| t.serves(publication_id, period, (&k.0, k.1)) && k.2 == city_id)
            .map(|(_, r)| r);
        Ok(page(rows, p)
            .iter()
            .map(|r| named(r, publication_id))
            .collect())
    }

    async fn city(
        &self,
        publication_id: &str,
        period: Period,
        city_id: i64,
    ) -> Result<Option<CityRankingRow>, RankingsError> {
        let t = self.tables("read city")?;
        Ok(t.cities
            .iter()
            .find(|(k, _)| t.serves(publication_id, period, (&k.0, k.1)) && k.3 == city_id)
            .map(|(_, r)| named(r, publication_id)))
    }

    async fn salesman_ranking(
        &self,
        publication_id: &str,
        period: Period,
        p: Page,
    ) -> Result<Vec<SalesmanRankingRow>, RankingsError> {
        let t = self.tables("read salesman ranking")?;
        let rows = t
            .salesmen
            .iter()
            .filter(|(k, _)| t.serves(publication_id, period, (&k.0, k.1)))
            .map(|(_, r)| r);
        Ok(page(rows, p)
            .iter()
            .map(|r| named(r, publication_id))
            .collect())
    }

    async fn period(
        &self,
        publication_id: &str,
        period: Period,
    ) -> Result<Option<PublicationPeriodRow>, RankingsError> {
        let t = self.tables("read publication period")?;
        Ok(t.periods
            .get(&(publication_id.to_string(), period))
            .cloned())
    }

    async fn periods(
        &self,
        publication_id: &str,
    ) -> Result<Vec<PublicationPeriodRow>, RankingsError> {
        let t = self.tables("read publication periods")?;
        Ok(t.periods
            .iter()
            .filter(|(k, _)| k.0 == publication_id)
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn sources(
        &self,
        publication_id: &str,
    ) -> Result<Vec<crate::schema::PublicationSourceRow>, RankingsError> {
        let t = self.tables("read publication sources")?;
        Ok(t.sources
            .iter()
            .filter(|(k, _)| k.0 == publication_id)
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn runs(&self, limit: u32) -> Result<Vec<MartRunRow>, RankingsError> {
        let t = self.tables("read runs")?;
        let mut runs = t.runs.clone();
        runs.sort_by(|a, b| (&b.started_at, &b.run_id).cmp(&(&a.started_at, &a.run_id)));
        runs.truncate(limit as usize);
        Ok(runs)
    }
}
