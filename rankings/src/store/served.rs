//! The latest publication held in memory and indexed for every read the API makes, so a
//! ranking or detail request is answered without a round trip to ClickHouse.
//!
//! A publication never changes once written (a republish of the same id comes with a higher
//! version), so a copy is as good as the store for as long as it is the latest. [`ServedStore`]
//! wraps the store: [`ServedStore::refresh`] asks it for its latest publication and, when that
//! differs from the one held, reads it whole ([`RankingQueries::publication_rows`]), indexes it
//! ([`ServedPublication::new`], pure) and swaps it in at once; readers holding the old one
//! finish on it. Reads of any other publication (an older id a client still pages through) and
//! everything that is not a publication (`ping`, `runs`) go to the wrapped store.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use super::clickhouse::RankingRow;
use super::scan::revenue_then_city;
use super::{Page, RankingQueries};
use crate::error::RankingsError;
use crate::period::Period;
use crate::publication::PublicationRows;
use crate::schema::{
    CityRankingRow, CitySalesmanRankingRow, MartRunRow, PublicationPeriodRow, PublicationRow,
    PublicationSourceRow, SalesmanRankingRow,
};

/// One period of a served publication, with an index for each read.
#[derive(Debug, Default)]
struct PeriodIndex {
    /// In rank order.
    cities: Vec<CityRankingRow>,
    city_at: HashMap<i64, usize>,
    /// Positions in `cities` of each state's resolved cities, in rank order.
    cities_of_state: HashMap<String, Vec<usize>>,
    /// By city id, then rank.
    city_salesmen: Vec<CitySalesmanRankingRow>,
    salesmen_of_city: HashMap<i64, Range<usize>>,
    /// Positions in `city_salesmen` of each salesman's cities, by revenue (desc) then city id.
    cities_of_salesman: HashMap<i64, Vec<usize>>,
    /// In rank order.
    salesmen: Vec<SalesmanRankingRow>,
    salesman_at: HashMap<i64, usize>,
    /// Positions in `salesmen` of the salesmen who sold in each city, in rank order.
    salesmen_in_city: HashMap<i64, Vec<usize>>,
}

impl PeriodIndex {
    fn new(
        mut cities: Vec<CityRankingRow>,
        mut city_salesmen: Vec<CitySalesmanRankingRow>,
        mut salesmen: Vec<SalesmanRankingRow>,
    ) -> Self {
        cities.sort_by_key(|c| (c.rank, c.city_id));
        city_salesmen.sort_by_key(|s| (s.city_id, s.rank, s.salesman_id));
        salesmen.sort_by_key(|s| (s.rank, s.salesman_id));
        let city_at = cities
            .iter()
            .enumerate()
            .map(|(i, c)| (c.city_id, i))
            .collect();
        let mut cities_of_state: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, c) in cities.iter().enumerate() {
            if c.city_resolved != 0 {
                cities_of_state
                    .entry(c.city_state.clone())
                    .or_default()
                    .push(i);
            }
        }
        let salesman_at: HashMap<i64, usize> = salesmen
            .iter()
            .enumerate()
            .map(|(i, s)| (s.salesman_id, i))
            .collect();
        let mut salesmen_of_city: HashMap<i64, Range<usize>> = HashMap::new();
        let mut cities_of_salesman: HashMap<i64, Vec<usize>> = HashMap::new();
        let mut salesmen_in_city: HashMap<i64, Vec<usize>> = HashMap::new();
        for (i, s) in city_salesmen.iter().enumerate() {
            salesmen_of_city
                .entry(s.city_id)
                .and_modify(|r| r.end = i + 1)
                .or_insert(i..i + 1);
            cities_of_salesman.entry(s.salesman_id).or_default().push(i);
            if let Some(&at) = salesman_at.get(&s.salesman_id) {
                salesmen_in_city.entry(s.city_id).or_default().push(at);
            }
        }
        for positions in cities_of_salesman.values_mut() {
            positions.sort_by(|&a, &b| revenue_then_city(&city_salesmen[a], &city_salesmen[b]));
        }
        for positions in salesmen_in_city.values_mut() {
            positions.sort_unstable();
            positions.dedup();
        }
        Self {
            cities,
            city_at,
            cities_of_state,
            city_salesmen,
            salesmen_of_city,
            cities_of_salesman,
            salesmen,
            salesman_at,
            salesmen_in_city,
        }
    }

    fn city_salesmen_of(&self, city_id: i64) -> &[CitySalesmanRankingRow] {
        self.salesmen_of_city
            .get(&city_id)
            .map_or(&[], |r| &self.city_salesmen[r.clone()])
    }
}

/// A page of `rows`, cloned.
fn page_of<T: Clone>(rows: &[T], page: Page) -> Vec<T> {
    let start = usize::try_from(page.offset)
        .unwrap_or(usize::MAX)
        .min(rows.len());
    let end = start.saturating_add(page.limit as usize).min(rows.len());
    rows[start..end].to_vec()
}

/// A page of the rows of `all` at `positions`, and how many there are.
fn page_at<T: Clone>(all: &[T], positions: &[usize], page: Page) -> (Vec<T>, u64) {
    let items = page_of(positions, page)
        .into_iter()
        .map(|i| all[i].clone())
        .collect();
    (items, positions.len() as u64)
}

/// One publication in memory, indexed by period and by every key the API reads with.
#[derive(Debug)]
pub struct ServedPublication {
    row: PublicationRow,
    /// `all` first, then the months in order.
    periods: Vec<PublicationPeriodRow>,
    sources: Vec<PublicationSourceRow>,
    /// Keyed by the stored period text (`all`, `YYYY-MM`); a period carried by reference is
    /// shared with the publication served before, whose index holds the same rows.
    index: HashMap<String, Arc<PeriodIndex>>,
    rows: u64,
}

impl ServedPublication {
    /// Indexes every row of one publication (the rows of other publications are ignored).
    pub fn new(rows: PublicationRows) -> Self {
        Self::reusing(rows, None)
    }

    /// Indexes one publication whose `rows` may lack the ranking rows of periods `earlier`
    /// holds already (the same rows: [`Self::holds_rows_of`]); those periods share its index.
    fn reusing(rows: PublicationRows, earlier: Option<&ServedPublication>) -> Self {
        let PublicationRows {
            cities,
            city_salesmen,
            salesmen,
            mut periods,
            mut sources,
            publication,
        } = rows;
        let id = publication.publication_id.as_str();
        let mut by_period: HashMap<String, (Vec<_>, Vec<_>, Vec<_>)> = HashMap::new();
        for c in cities.into_iter().filter(|c| c.publication_id == id) {
            by_period.entry(c.period.clone()).or_default().0.push(c);
        }
        for s in city_salesmen.into_iter().filter(|s| s.publication_id == id) {
            by_period.entry(s.period.clone()).or_default().1.push(s);
        }
        for s in salesmen.into_iter().filter(|s| s.publication_id == id) {
            by_period.entry(s.period.clone()).or_default().2.push(s);
        }
        let mut index: HashMap<String, Arc<PeriodIndex>> = by_period
            .into_iter()
            .map(|(period, (c, cs, s))| (period, Arc::new(PeriodIndex::new(c, cs, s))))
            .collect();
        periods.retain(|p| p.publication_id == id);
        for period in &periods {
            if let Some(shared) = earlier
                .filter(|e| !index.contains_key(&period.period) && e.holds_rows_of(period))
                .and_then(|e| e.index.get(&period.period))
            {
                index.insert(period.period.clone(), shared.clone());
            }
        }
        let ranking_rows = index
            .values()
            .map(|i| (i.cities.len() + i.city_salesmen.len() + i.salesmen.len()) as u64)
            .sum();
        // `all` sorts before every `YYYY-MM` as a `Period`, as `periods` promises.
        periods.sort_by_key(|p| p.period.parse::<Period>().ok());
        sources.retain(|s| s.publication_id == id);
        sources.sort_by(|a, b| a.source.cmp(&b.source));
        Self {
            row: publication,
            periods,
            sources,
            index,
            rows: ranking_rows,
        }
    }

    /// The publication's row.
    pub fn row(&self) -> &PublicationRow {
        &self.row
    }

    /// How many ranking rows it holds (all periods, all three rankings).
    pub fn ranking_rows(&self) -> u64 {
        self.rows
    }

    /// Whether this publication holds the ranking rows of `period`, a period row of another
    /// publication carrying them by reference: the rows of the same earlier publication. (A
    /// period a publication wrote itself is always read: a rerun of the same id rewrites its
    /// rows.)
    fn holds_rows_of(&self, period: &PublicationPeriodRow) -> bool {
        period.rows_publication_id != period.publication_id
            && self.index.contains_key(&period.period)
            && self.periods.iter().any(|p| {
                p.period == period.period && p.rows_publication_id == period.rows_publication_id
            })
    }

    fn period(&self, period: Period) -> Option<&PeriodIndex> {
        self.index.get(&period.key()).map(Arc::as_ref)
    }

    fn months(&self) -> impl Iterator<Item = &PeriodIndex> {
        self.periods
            .iter()
            .filter(|p| p.period != Period::ALL)
            .filter_map(|p| self.index.get(&p.period))
            .map(Arc::as_ref)
    }
}

/// Ranking rows as a served publication answers them, each naming it: a period it shares with
/// the publication served before (carried by reference) holds rows naming that one.
trait Named {
    fn named(self, publication_id: &str) -> Self;
}

impl<T: RankingRow> Named for Vec<T> {
    fn named(mut self, publication_id: &str) -> Self {
        for row in &mut self {
            row.set_publication_id(publication_id);
        }
        self
    }
}

impl<T: RankingRow> Named for Option<T> {
    fn named(self, publication_id: &str) -> Self {
        self.map(|mut row| {
            row.set_publication_id(publication_id);
            row
        })
    }
}

impl<T: RankingRow> Named for (Vec<T>, u64) {
    fn named(self, publication_id: &str) -> Self {
        (self.0.named(publication_id), self.1)
    }
}

fn named<R: Named>(rows: R, served: &ServedPublication) -> R {
    rows.named(&served.row.publication_id)
}

/// A [`RankingQueries`] answering reads of the latest publication from memory (see the module
/// documentation); [`ServedStore::refresh`] keeps it the latest.
pub struct ServedStore {
    store: Arc<dyn RankingQueries>,
    served: RwLock<Option<Arc<ServedPublication>>>,
    /// Publications loaded since start (metrics).
    loads: AtomicU64,
    /// Refreshes that failed since start (metrics).
    refresh_failures: AtomicU64,
}

/// What a [`ServedStore::refresh`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// The store's latest publication is the one already served (or there is none yet).
    Unchanged,
    /// A different publication was read and is now served.
    Loaded {
        /// Its id.
        publication_id: String,
        /// Its version.
        version: u64,
        /// Its ranking rows.
        rows: u64,
        /// Of those, the rows read from the store: the others are those of months it carries
        /// by reference from rows the publication served before held already.
        rows_read: u64,
    },
}

impl ServedStore {
    /// Serves `store`'s publications; nothing is held until the first [`Self::refresh`].
    pub fn new(store: Arc<dyn RankingQueries>) -> Self {
        Self {
            store,
            served: RwLock::new(None),
            loads: AtomicU64::new(0),
            refresh_failures: AtomicU64::new(0),
        }
    }

    /// Publications loaded, and refreshes failed, since start.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.loads.load(Ordering::Relaxed),
            self.refresh_failures.load(Ordering::Relaxed),
        )
    }

    /// The publication served now, if one was loaded.
    pub fn served(&self) -> Option<Arc<ServedPublication>> {
        self.served
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads the store's latest publication and, if it is not the one served, loads it whole
    /// and serves it from now on. A newer publication found by a concurrent refresh is never
    /// replaced by an older one.
    pub async fn refresh(&self) -> Result<Refresh, RankingsError> {
        let refreshed = self.load_if_newer().await;
        match &refreshed {
            Ok(Refresh::Loaded { .. }) => self.loads.fetch_add(1, Ordering::Relaxed),
            Ok(Refresh::Unchanged) => 0,
            Err(_) => self.refresh_failures.fetch_add(1, Ordering::Relaxed),
        };
        refreshed
    }

    async fn load_if_newer(&self) -> Result<Refresh, RankingsError> {
        let Some(latest) = self.store.latest_publication().await? else {
            return Ok(Refresh::Unchanged);
        };
        let same = |p: &ServedPublication| {
            p.row.publication_id == latest.publication_id && p.row.version == latest.version
        };
        if self.served().is_some_and(|p| same(p.as_ref())) {
            return Ok(Refresh::Unchanged);
        }
        let rows_read;
        let loaded = Arc::new(match self.served() {
            // The months the new publication carries by reference from rows the served one
            // holds are shared, not read again: a load costs what the publication changed.
            Some(earlier) => {
                let periods = self.store.periods(&latest.publication_id).await?;
                let unheld: Vec<Period> = periods
                    .iter()
                    .filter(|p| !earlier.holds_rows_of(p))
                    .filter_map(|p| p.period.parse().ok())
                    .collect();
                let rows = self
                    .store
                    .publication_rows_of(&latest, periods, &unheld)
                    .await?;
                rows_read = rows.ranking_rows();
                ServedPublication::reusing(rows, Some(&earlier))
            }
            None => {
                let rows = self.store.publication_rows(&latest).await?;
                rows_read = rows.ranking_rows();
                ServedPublication::new(rows)
            }
        });
        let refresh = Refresh::Loaded {
            publication_id: latest.publication_id.clone(),
            version: latest.version,
            rows: loaded.ranking_rows(),
            rows_read,
        };
        let mut served = self
            .served
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if served
            .as_ref()
            .is_some_and(|p| p.row.version > latest.version)
        {
            return Ok(Refresh::Unchanged);
        }
        *served = Some(loaded);
        Ok(refresh)
    }

    /// The served publication if it is `publication_id`.
    fn serving(&self, publication_id: &str) -> Option<Arc<ServedPublication>> {
        self.served()
            .filter(|p| p.row.publication_id == publication_id)
    }
}

#[async_trait]
impl RankingQueries for ServedStore {
    async fn ping(&self) -> Result<(), RankingsError> {
        self.store.ping().await
    }

    async fn latest_publication(&self) -> Result<Option<PublicationRow>, RankingsError> {
        match self.served() {
            Some(p) => Ok(Some(p.row.clone())),
            None => self.store.latest_publication().await,
        }
    }

    async fn publication(
        &self,
        publication_id: &str,
    ) -> Result<Option<PublicationRow>, RankingsError> {
        match self.serving(publication_id) {
            Some(p) => Ok(Some(p.row.clone())),
            None => self.store.publication(publication_id).await,
        }
    }

    async fn publication_rows(
        &self,
        publication: &PublicationRow,
    ) -> Result<PublicationRows, RankingsError> {
        self.store.publication_rows(publication).await
    }

    async fn publication_rows_of(
        &self,
        publication: &PublicationRow,
        periods: Vec<PublicationPeriodRow>,
        only: &[Period],
    ) -> Result<PublicationRows, RankingsError> {
        self.store
            .publication_rows_of(publication, periods, only)
            .await
    }

    async fn city_ranking(
        &self,
        publication_id: &str,
        period: Period,
        page: Page,
    ) -> Result<Vec<CityRankingRow>, RankingsError> {
        match self.serving(publication_id) {
            Some(p) => Ok(named(
                p.period(period)
                    .map_or_else(Vec::new, |i| page_of(&i.cities, page)),
                &p,
            )),
            None => self.store.city_ranking(publication_id, period, page).await,
        }
    }

    async fn top_city_salesmen(
        &self,
        publication_id: &str,
        period: Period,
        city_ids: &[i64],
        max_rank: u32,
    ) -> Result<Vec<CitySalesmanRankingRow>, RankingsError> {
        let Some(p) = self.serving(publication_id) else {
            return self
                .store
                .top_city_salesmen(publication_id, period, city_ids, max_rank)
                .await;
        };
        let Some(index) = p.period(period) else {
            return Ok(Vec::new());
        };
        let mut ids = city_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        Ok(named(
            ids.iter()
                .flat_map(|&id| index.city_salesmen_of(id))
                .filter(|s| s.rank <= max_rank)
                .cloned()
                .collect::<Vec<_>>(),
            &p,
        ))
    }

    async fn city_salesman_ranking(
        &self,
        publication_id: &str,
        period: Period,
        city_id: i64,
        page: Page,
    ) -> Result<Vec<CitySalesmanRankingRow>, RankingsError> {
        match self.serving(publication_id) {
            Some(p) => Ok(named(
                p.period(period)
                    .map_or_else(Vec::new, |i| page_of(i.city_salesmen_of(city_id), page)),
                &p,
            )),
            None => {
                self.store
                    .city_salesman_ranking(publication_id, period, city_id, page)
                    .await
            }
        }
    }

    async fn city(
        &self,
        publication_id: &str,
        period: Period,
        city_id: i64,
    ) -> Result<Option<CityRankingRow>, RankingsError> {
        match self.serving(publication_id) {
            Some(p) => Ok(named(
                p.period(period)
                    .and_then(|i| i.city_at.get(&city_id).map(|&at| i.cities[at].clone())),
                &p,
            )),
            None => self.store.city(publication_id, period, city_id).await,
        }
    }

    async fn salesman_ranking(
        &self,
        publication_id: &str,
        period: Period,
        page: Page,
    ) -> Result<Vec<SalesmanRankingRow>, RankingsError> {
        match self.serving(publication_id) {
            Some(p) => Ok(named(
                p.period(period)
                    .map_or_else(Vec::new, |i| page_of(&i.salesmen, page)),
                &p,
            )),
            None => {
                self.store
                    .salesman_ranking(publication_id, period, page)
                    .await
            }
        }
    }

    async fn period(
        &self,
        publication_id: &str,
        period: Period,
    ) -> Result<Option<PublicationPeriodRow>, RankingsError> {
        match self.serving(publication_id) {
            Some(p) => {
                let key = period.key();
                Ok(p.periods.iter().find(|row| row.period == key).cloned())
            }
            None => self.store.period(publication_id, period).await,
        }
    }

    async fn periods(
        &self,
        publication_id: &str,
    ) -> Result<Vec<PublicationPeriodRow>, RankingsError> {
        match self.serving(publication_id) {
            Some(p) => Ok(p.periods.clone()),
            None => self.store.periods(publication_id).await,
        }
    }

    async fn sources(
        &self,
        publication_id: &str,
    ) -> Result<Vec<PublicationSourceRow>, RankingsError> {
        match self.serving(publication_id) {
            Some(p) => Ok(p.sources.clone()),
            None => self.store.sources(publication_id).await,
        }
    }

    async fn runs(&self, limit: u32) -> Result<Vec<MartRunRow>, RankingsError> {
        self.store.runs(limit).await
    }

    async fn cities_in_state(
        &self,
        publication_id: &str,
        period: Period,
        state: &str,
        page: Page,
    ) -> Result<(Vec<CityRankingRow>, u64), RankingsError> {
        match self.serving(publication_id) {
            Some(p) => Ok(named(
                p.period(period)
                    .and_then(|i| {
                        i.cities_of_state
                            .get(state)
                            .map(|at| page_at(&i.cities, at, page))
                    })
                    .unwrap_or_default(),
                &p,
            )),
            None => {
                self.store
                    .cities_in_state(publication_id, period, state, page)
                    .await
            }
        }
    }

    async fn salesmen_in_city(
        &self,
        publication_id: &str,
        period: Period,
        city_id: i64,
        page: Page,
    ) -> Result<(Vec<SalesmanRankingRow>, u64), RankingsError> {
        match self.serving(publication_id) {
            Some(p) => Ok(named(
                p.period(period)
                    .and_then(|i| {
                        i.salesmen_in_city
                            .get(&city_id)
                            .map(|at| page_at(&i.salesmen, at, page))
                    })
                    .unwrap_or_default(),
                &p,
            )),
            None => {
                self.store
                    .salesmen_in_city(publication_id, period, city_id, page)
                    .await
            }
        }
    }

    async fn salesman(
        &self,
        publication_id: &str,
        period: Period,
        salesman_id: i64,
    ) -> Result<Option<SalesmanRankingRow>, RankingsError> {
        match self.serving(publication_id) {
            Some(p) => Ok(named(
                p.period(period).and_then(|i| {
                    i.salesman_at
                        .get(&salesman_id)
                        .map(|&at| i.salesmen[at].clone())
                }),
                &p,
            )),
            None => {
                self.store
                    .salesman(publication_id, period, salesman_id)
                    .await
            }
        }
    }

    async fn salesman_cities(
        &self,
        publication_id: &str,
        period: Period,
        salesman_id: i64,
    ) -> Result<Vec<CitySalesmanRankingRow>, RankingsError> {
        match self.serving(publication_id) {
            Some(p) => Ok(named(
                p.period(period)
                    .and_then(|i| {
                        i.cities_of_salesman
                            .get(&salesman_id)
                            .map(|at| at.iter().map(|&k| i.city_salesmen[k].clone()).collect())
                    })
                    .unwrap_or_default(),
                &p,
            )),
            None => {
                self.store
                    .salesman_cities(publication_id, period, salesman_id)
                    .await
            }
        }
    }

    async fn cities(
        &self,
        publication_id: &str,
        period: Period,
        city_ids: &[i64],
    ) -> Result<Vec<CityRankingRow>, RankingsError> {
        match self.serving(publication_id) {
            Some(p) => Ok(named(
                p.period(period)
                    .map(|i| {
                        city_ids
                            .iter()
                            .filter_map(|id| i.city_at.get(id).map(|&at| i.cities[at].clone()))
                            .collect()
                    })
                    .unwrap_or_default(),
                &p,
            )),
            None => self.store.cities(publication_id, period, city_ids).await,
        }
    }

    async fn salesman_months(
        &self,
        publication_id: &str,
        salesman_id: i64,
    ) -> Result<Vec<SalesmanRankingRow>, RankingsError> {
        match self.serving(publication_id) {
            Some(p) => Ok(named(
                p.months()
                    .filter_map(|i| {
                        i.salesman_at
                            .get(&salesman_id)
                            .map(|&at| i.salesmen[at].clone())
                    })
                    .collect(),
                &p,
            )),
            None => {
                self.store
                    .salesman_months(publication_id, salesman_id)
                    .await
            }
        }
    }

    async fn city_months(
        &self,
        publication_id: &str,
        city_id: i64,
    ) -> Result<Vec<CityRankingRow>, RankingsError> {
        match self.serving(publication_id) {
            Some(p) => Ok(named(
                p.months()
                    .filter_map(|i| i.city_at.get(&city_id).map(|&at| i.cities[at].clone()))
                    .collect(),
                &p,
            )),
            None => self.store.city_months(publication_id, city_id).await,
        }
    }
}
