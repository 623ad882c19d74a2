//! In-memory [`PublicationStore`] with ClickHouse's `ReplacingMergeTree … FINAL` semantics:
//! rows are keyed by their table's sorting key and a row with a higher or equal version
//! replaces the one with the same key.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use super::{Page, PublicationStore};
use crate::error::MartsError;
use crate::publication::Publication;
use crate::schema::{CityRankingRow, CitySalesmanRankingRow, PublicationRow, SalesmanRankingRow};

#[derive(Debug, Default)]
struct Tables {
    publications: BTreeMap<String, PublicationRow>,
    cities: BTreeMap<(String, u32, i64), CityRankingRow>,
    city_salesmen: BTreeMap<(String, i64, u32, i64), CitySalesmanRankingRow>,
    salesmen: BTreeMap<(String, u32, i64), SalesmanRankingRow>,
}

/// A [`PublicationStore`] in memory, for tests. [`MemoryStore::set_unavailable`] makes every
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

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail (`true`) or work again (`false`).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    fn tables(&self, action: &str) -> Result<std::sync::MutexGuard<'_, Tables>, MartsError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(MartsError::ClickHouse {
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
impl PublicationStore for MemoryStore {
    async fn ensure_schema(&self) -> Result<(), MartsError> {
        self.tables("create schema").map(|_| ())
    }

    async fn ping(&self) -> Result<(), MartsError> {
        self.tables("ping").map(|_| ())
    }

    async fn publish(&self, publication: &Publication) -> Result<(), MartsError> {
        let rows = publication.rows();
        let mut t = self.tables("publish")?;
        for r in rows.cities {
            let key = (r.publication_id.clone(), r.rank, r.city_id);
            upsert(&mut t.cities, key, r, |r| r.version);
        }
        for r in rows.city_salesmen {
            let key = (r.publication_id.clone(), r.city_id, r.rank, r.salesman_id);
            upsert(&mut t.city_salesmen, key, r, |r| r.version);
        }
        for r in rows.salesmen {
            let key = (r.publication_id.clone(), r.rank, r.salesman_id);
            upsert(&mut t.salesmen, key, r, |r| r.version);
        }
        let p = rows.publication;
        upsert(&mut t.publications, p.publication_id.clone(), p, |r| {
            r.version
        });
        Ok(())
    }

    async fn latest_publication(&self) -> Result<Option<PublicationRow>, MartsError> {
        let t = self.tables("read latest publication")?;
        Ok(t.publications
            .values()
            .max_by(|a, b| (a.version, &a.publication_id).cmp(&(b.version, &b.publication_id)))
            .cloned())
    }

    async fn city_ranking(
        &self,
        publication_id: &str,
        p: Page,
    ) -> Result<Vec<CityRankingRow>, MartsError> {
        let t = self.tables("read city ranking")?;
        let rows = t
            .cities
            .values()
            .filter(|r| r.publication_id == publication_id);
        Ok(page(rows, p))
    }

    async fn top_city_salesmen(
        &self,
        publication_id: &str,
        city_ids: &[i64],
        max_rank: u32,
    ) -> Result<Vec<CitySalesmanRankingRow>, MartsError> {
        let t = self.tables("read city salesmen")?;
        Ok(t.city_salesmen
            .values()
            .filter(|r| {
                r.publication_id == publication_id
                    && city_ids.contains(&r.city_id)
                    && r.rank <= max_rank
            })
            .cloned()
            .collect())
    }

    async fn city_salesman_ranking(
        &self,
        publication_id: &str,
        city_id: i64,
        p: Page,
    ) -> Result<Vec<CitySalesmanRankingRow>, MartsError> {
        let t = self.tables("read city salesman ranking")?;
        let rows = t
            .city_salesmen
            .values()
            .filter(|r| r.publication_id == publication_id && r.city_id == city_id);
        Ok(page(rows, p))
    }

    async fn city(
        &self,
        publication_id: &str,
        city_id: i64,
    ) -> Result<Option<CityRankingRow>, MartsError> {
        let t = self.tables("read city")?;
        Ok(t.cities
            .values()
            .find(|r| r.publication_id == publication_id && r.city_id == city_id)
            .cloned())
    }

    async fn salesman_ranking(
        &self,
        publication_id: &str,
        p: Page,
    ) -> Result<Vec<SalesmanRankingRow>, MartsError> {
        let t = self.tables("read salesman ranking")?;
        let rows = t
            .salesmen
            .values()
            .filter(|r| r.publication_id == publication_id);
        Ok(page(rows, p))
    }
}
