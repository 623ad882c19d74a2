//! The incremental marts' arithmetic: folding new raw events into kept state. Pure, no I/O.
//!
//! Kept state (see `state`) is
//! - the **current version of every sale** ever seen, keyed by (source, sale id), with its source
//!   order and — for a live sale — the salesman and city it counts under (`SaleRecord`);
//! - the **current master data** (`MasterData`): every salesman and city, deleted ones as
//!   tombstones so that a late, older event cannot bring them back;
//! - **cells** (`Cells`): revenue and count per (period, city, salesman), the finest grain every
//!   ranking and summary is a sum of.
//!
//! A new event for a sale replaces the kept version only if it is newer in the source's own
//! order. The kept version's contribution is then retracted from its cells and the new one added
//! (a delete only retracts). Sales that name their salesman by code or their city by name + state
//! are resolved against the master data; when the master data changes what a code or a city name
//! resolves to, the sales naming it are re-resolved (retracted and added again).
//!
//! The totals — and from them the rankings — are then a sum over cells joined with the current
//! names. They equal what `current_state` computes in SQL from the whole history; the unit tests
//! check exactly that.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use crate::error::MartsError;
use tributary_rankings::RankingsError;
use tributary_rankings::money::Money;
use tributary_rankings::period::{Month, Period};
use tributary_rankings::ranking::{
    CityInfo, CitySalesmanTotals, CityTotals, PeriodTotals, SalesmanInfo, SalesmanTotals, Summary,
    Totals,
};

/// A sale's identity: its source (`pg`, `files`, `erp`) and its id there (`42`, `acme/S-1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SaleKey {
    /// `pg`, `files` or `erp`.
    pub source: String,
    /// The id within the source (`origin/sale_id` for files and the ERP).
    pub sale_id: String,
}

/// Position of an event in its source's own order, compared lexicographically: `(LSN, Kafka
/// offset, 0)` for Postgres, `(version major, version minor, Kafka offset)` for files and the ERP.
pub type SourceOrder = [i64; 3];

/// A city's natural key, normalised the way `current_state` does: the name lower-cased with
/// runs of white space made one space and trimmed; the state upper-cased and trimmed of spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CityKey {
    /// Normalised name.
    pub name: String,
    /// Normalised state.
    pub state: String,
}

impl CityKey {
    /// The key of a city named `name` in `state`.
    pub fn new(name: &str, state: &str) -> Self {
        Self {
            name: name
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase(),
            state: state.trim_matches(' ').to_uppercase(),
        }
    }
}

/// How a sale names its salesman and city, as the source sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleRefs {
    /// Salesman id, when the source gives one.
    pub salesman_id: Option<i64>,
    /// Salesman code, used when there is no id.
    pub salesman_code: Option<String>,
    /// City id, when the source gives one.
    pub city_id: Option<i64>,
    /// City name + state, used when there is no id (`None` unless both were sent).
    pub city_key: Option<CityKey>,
}

/// Where a version of a sale came from, beyond its place in the source's order: what its
/// provenance shows. Kept with the sale so the provenance of a published row is read by key
/// from the kept state rather than from the whole lake. All `None` in a sale kept before the
/// state had them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleOrigin {
    /// Postgres: the transaction id.
    pub txid: Option<i64>,
    /// Postgres: commit time; files and ERP: when the ingestor produced the event (µs, UTC).
    pub source_time_micros: Option<i64>,
    /// Files and ERP: the ingestor's provenance object, as JSON text.
    pub provenance_json: Option<String>,
    /// The Kafka record that carried it: topic.
    pub kafka_topic: Option<String>,
    /// Its partition (its offset is part of the source order).
    pub kafka_partition: Option<i32>,
    /// When the lander read it (µs, UTC).
    pub ingest_time_micros: Option<i64>,
    /// Trace id of the ingest batch.
    pub trace_id: Option<String>,
}

/// One raw event of a sale, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleEvent {
    /// Whose sale.
    pub key: SaleKey,
    /// Its place in the source's order.
    pub order: SourceOrder,
    /// A delete, withdrawal or cancellation.
    pub deleted: bool,
    /// References as sent.
    pub refs: SaleRefs,
    /// Amount (`None` counts as zero revenue, as SQL's `SUM` does).
    pub amount: Option<Money>,
    /// When the sale happened, microseconds since the epoch (UTC).
    pub sold_at_micros: Option<i64>,
    /// Where this version came from.
    pub origin: SaleOrigin,
}

/// What a salesman or city reference of a live sale counts under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Resolved {
    /// The sale names none: it is in no ranking of that kind.
    None,
    /// This id (known to the master data or not).
    Id(i64),
    /// A natural key nobody has yet: unresolved.
    Pending,
}

/// The kept current version of a sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleRecord {
    /// Whose sale.
    pub key: SaleKey,
    /// Source order of the version kept.
    pub order: SourceOrder,
    /// Deleted: kept as a tombstone so an older event arriving later does not revive it.
    pub deleted: bool,
    /// References as sent.
    pub refs: SaleRefs,
    /// Amount in cents (0 when the source sent none).
    pub amount_cents: i64,
    /// When the sale happened, microseconds since the epoch (UTC).
    pub sold_at_micros: Option<i64>,
    /// The salesman it counts under, as resolved when it was last folded.
    pub salesman: Resolved,
    /// The city it counts under, as resolved when it was last folded.
    pub city: Resolved,
    /// Where the version kept came from.
    #[serde(default)]
    pub origin: SaleOrigin,
}

/// A current salesman.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesmanRow {
    /// Code (natural key).
    pub code: Option<String>,
    /// Name.
    pub name: Option<String>,
}

/// A current city.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CityRow {
    /// Name.
    pub name: Option<String>,
    /// State.
    pub state: Option<String>,
}

/// The kept version of one master-data row: `None` once deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterVersion<T> {
    /// Source order of the version kept.
    pub order: SourceOrder,
    /// The row, or `None` for a tombstone.
    pub row: Option<T>,
}

/// One raw event of a master-data table, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterEvent<T> {
    /// Salesman or city id.
    pub id: i64,
    /// The newer version.
    pub version: MasterVersion<T>,
}

/// Current salesmen and cities, tombstones included.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterData {
    /// By salesman id.
    pub salesmen: BTreeMap<i64, MasterVersion<SalesmanRow>>,
    /// By city id.
    pub cities: BTreeMap<i64, MasterVersion<CityRow>>,
}

fn newer<T>(map: &mut BTreeMap<i64, MasterVersion<T>>, event: MasterEvent<T>) {
    match map.get(&event.id) {
        Some(kept) if kept.order >= event.version.order => {}
        _ => {
            map.insert(event.id, event.version);
        }
    }
}

impl MasterData {
    /// Keeps each event that is newer than what is kept for its id.
    pub fn apply(
        &mut self,
        salesmen: impl IntoIterator<Item = MasterEvent<SalesmanRow>>,
        cities: impl IntoIterator<Item = MasterEvent<CityRow>>,
    ) {
        for event in salesmen {
            newer(&mut self.salesmen, event);
        }
        for event in cities {
            newer(&mut self.cities, event);
        }
    }

    fn salesman(&self, id: i64) -> Option<&SalesmanRow> {
        self.salesmen.get(&id).and_then(|v| v.row.as_ref())
    }

    fn city(&self, id: i64) -> Option<&CityRow> {
        self.cities.get(&id).and_then(|v| v.row.as_ref())
    }

    /// What each natural key resolves to now: the lowest id among the current rows with it
    /// (codes and city names are meant to be unique; the lowest id keeps a duplicate from
    /// counting a sale twice).
    pub fn index(&self) -> NaturalKeys {
        let mut keys = NaturalKeys::default();
        for (&id, version) in &self.salesmen {
            if let Some(code) = version.row.as_ref().and_then(|r| r.code.clone()) {
                keys.codes
                    .entry(code)
                    .and_modify(|min| *min = (*min).min(id))
                    .or_insert(id);
            }
        }
        for (&id, version) in &self.cities {
            if let Some(CityRow {
                name: Some(name),
                state: Some(state),
            }) = version.row.as_ref()
            {
                keys.cities
                    .entry(CityKey::new(name, state))
                    .and_modify(|min| *min = (*min).min(id))
                    .or_insert(id);
            }
        }
        keys
    }
}

/// Natural key → id, as the master data stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NaturalKeys {
    /// Salesman code → salesman id.
    pub codes: HashMap<String, i64>,
    /// City key → city id.
    pub cities: HashMap<CityKey, i64>,
}

impl NaturalKeys {
    /// The codes and city keys that resolve differently in `after` than in `self`: the sales
    /// naming them must be re-resolved.
    pub fn changed(&self, after: &NaturalKeys) -> (Vec<String>, Vec<CityKey>) {
        fn diff<K: Clone + Eq + std::hash::Hash + Ord>(
            a: &HashMap<K, i64>,
            b: &HashMap<K, i64>,
        ) -> Vec<K> {
            let mut keys: Vec<K> = a
                .iter()
                .filter(|(k, v)| b.get(*k) != Some(v))
                .map(|(k, _)| k.clone())
                .chain(b.keys().filter(|k| !a.contains_key(*k)).cloned())
                .collect();
            keys.sort();
            keys
        }
        (
            diff(&self.codes, &after.codes),
            diff(&self.cities, &after.cities),
        )
    }

    /// What `refs` counts under now.
    pub fn resolve(&self, refs: &SaleRefs) -> (Resolved, Resolved) {
        let salesman = match (refs.salesman_id, &refs.salesman_code) {
            (Some(id), _) => Resolved::Id(id),
            (None, Some(code)) => self
                .codes
                .get(code)
                .map_or(Resolved::Pending, |&id| Resolved::Id(id)),
            // A sale-event source always names a salesman somehow; one that names none is
            // waiting for data like one whose code is unknown (as `current_state` counts it).
            (None, None) => Resolved::Pending,
        };
        let city = match (refs.city_id, &refs.city_key) {
            (Some(id), _) => Resolved::Id(id),
            (None, Some(key)) => self
                .cities
                .get(key)
                .map_or(Resolved::Pending, |&id| Resolved::Id(id)),
            (None, None) => Resolved::Pending,
        };
        (salesman, city)
    }
}

/// Where a Postgres sale counts: its ids as they are (Postgres sales name no natural keys).
fn resolve_by_id(refs: &SaleRefs) -> (Resolved, Resolved) {
    (
        refs.salesman_id.map_or(Resolved::None, Resolved::Id),
        refs.city_id.map_or(Resolved::None, Resolved::Id),
    )
}

/// The finest grain of the rankings: one period, one city, one salesman.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CellKey {
    /// `None` for all time, else the month of `sold_at`.
    pub month: Option<(u16, u8)>,
    /// The city the sales count under.
    pub city: Resolved,
    /// The salesman the sales count under.
    pub salesman: Resolved,
}

impl CellKey {
    fn period(&self) -> Period {
        match self.month.and_then(|(y, m)| Month::new(y, m)) {
            Some(month) => Period::Month(month),
            None => Period::AllTime,
        }
    }

    /// The city and the salesman the cell counts under in the rankings, each only when resolved
    /// to an id: a cell naming none, or a key nobody has yet, is in no ranking of that kind, and
    /// the (city, salesman) ranking needs both.
    fn ranked_ids(&self) -> (Option<i64>, Option<i64>) {
        let id = |r: Resolved| match r {
            Resolved::Id(id) => Some(id),
            Resolved::None | Resolved::Pending => None,
        };
        (id(self.city), id(self.salesman))
    }
}

/// Revenue and count of one cell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellTotals {
    /// Sum of amounts, in cents: i128, so no number of `Decimal(18,2)` amounts can overflow it
    /// (ten of the largest already would an i64); a total that does not fit `Decimal(18,2)` is
    /// refused when the totals are built ([`Cells::totals`]).
    pub cents: i128,
    /// Number of sales.
    pub sales: i64,
}

/// Every non-empty cell, and the cells changed since the kept state last stored them (so a
/// commit writes those, not every cell: [`crate::state`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cells(
    #[serde(with = "cells_as_list")] pub BTreeMap<CellKey, CellTotals>,
    #[serde(skip)] BTreeSet<CellKey>,
);

impl PartialEq for Cells {
    // What changed since the last store is bookkeeping, not the cells' value.
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Cells {}

/// JSON maps need string keys; cells are stored as a list of pairs.
mod cells_as_list {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        cells: &BTreeMap<CellKey, CellTotals>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(cells.iter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<CellKey, CellTotals>, D::Error> {
        let pairs: Vec<(CellKey, CellTotals)> = Vec::deserialize(d)?;
        Ok(pairs.into_iter().collect())
    }
}

fn month_of(micros: i64) -> Option<(u16, u8)> {
    let at: DateTime<Utc> = DateTime::from_timestamp_micros(micros)?;
    Some((
        u16::try_from(at.year()).ok()?,
        u8::try_from(at.month()).ok()?,
    ))
}

impl Cells {
    /// The cells changed (added, altered or emptied) since [`Cells::stored`] was last called.
    pub fn changed(&self) -> impl Iterator<Item = (&CellKey, Option<&CellTotals>)> {
        self.1.iter().map(|key| (key, self.0.get(key)))
    }

    /// The months of the cells changed since [`Cells::stored`] was last called: the only ones
    /// whose rankings can differ from those of the state then stored.
    pub fn changed_months(&self) -> BTreeSet<Month> {
        self.1
            .iter()
            .filter_map(|key| match key.period() {
                Period::Month(month) => Some(month),
                Period::AllTime => None,
            })
            .collect()
    }

    /// How many cells changed since [`Cells::stored`] was last called.
    pub fn changed_count(&self) -> usize {
        self.1.len()
    }

    /// How many ranking rows hold a total that the changed cells moved: per period (each
    /// changed cell's month, and all time), its distinct cities, (city, salesman) pairs and
    /// salesmen. Only these rows' totals differ from those published from the state last stored
    /// (others may only change rank); a run rewrites every row of each period it changed, and
    /// ADR 0008 (proposed) would write only these.
    pub fn changed_ranking_rows(&self) -> u64 {
        let mut cities = BTreeSet::new();
        let mut city_salesmen = BTreeSet::new();
        let mut salesmen = BTreeSet::new();
        for key in &self.1 {
            let (city, salesman) = key.ranked_ids();
            for period in [key.period(), Period::AllTime] {
                cities.extend(city.map(|c| (period, c)));
                city_salesmen.extend(city.zip(salesman).map(|(c, s)| (period, c, s)));
                salesmen.extend(salesman.map(|s| (period, s)));
            }
        }
        (cities.len() + city_salesmen.len() + salesmen.len()) as u64
    }

    /// The kept state now has every cell as it is: nothing has changed since.
    pub fn stored(&mut self) {
        self.1.clear();
    }

    /// The cells changed since [`Cells::stored`] was last called, as cells of their own (the
    /// emptied ones changed and absent), and these cells marked stored: what a commit running
    /// beside the next fold writes ([`Cells::apply`] is its inverse).
    pub fn take_changes(&mut self) -> Cells {
        let changed = std::mem::take(&mut self.1);
        let values = changed
            .iter()
            .filter_map(|key| self.0.get(key).map(|totals| (*key, *totals)))
            .collect();
        Cells(values, changed)
    }

    /// Applies `changes` ([`Cells::take_changes`]): their cells set, their emptied ones removed,
    /// each marked changed.
    pub fn apply(&mut self, changes: &Cells) {
        for (key, totals) in changes.changed() {
            match totals {
                Some(totals) => self.0.insert(*key, *totals),
                None => self.0.remove(key),
            };
            self.1.insert(*key);
        }
    }

    /// The kept state has none of the cells (a state written before cells were rows): every
    /// cell counts as changed.
    pub fn none_stored(&mut self) {
        self.1 = self.0.keys().copied().collect();
    }

    fn add(&mut self, record: &SaleRecord, sign: i64) {
        if record.deleted {
            return;
        }
        let months = [None, record.sold_at_micros.and_then(month_of)];
        for (i, month) in months.into_iter().enumerate() {
            if i == 1 && month.is_none() {
                continue;
            }
            let key = CellKey {
                month,
                city: record.city,
                salesman: record.salesman,
            };
            self.1.insert(key);
            let cell = self.0.entry(key).or_default();
            cell.cents += i128::from(sign) * i128::from(record.amount_cents);
            cell.sales += sign;
            if cell.sales == 0 {
                debug_assert_eq!(cell.cents, 0, "an empty cell has no revenue");
                self.0.remove(&key);
            }
        }
    }

    /// Folds a new event of a sale into the cells, given the kept version (if any) and the
    /// natural keys as they stand. Returns the new kept version, or `None` when the event is
    /// not newer than the kept one (it changes nothing).
    pub fn fold_event(
        &mut self,
        kept: Option<&SaleRecord>,
        event: SaleEvent,
        keys: &NaturalKeys,
    ) -> Option<SaleRecord> {
        if kept.is_some_and(|k| k.order >= event.order) {
            return None;
        }
        if let Some(kept) = kept {
            self.add(kept, -1);
        }
        let (salesman, city) = if event.key.source == SOURCE_PG {
            resolve_by_id(&event.refs)
        } else {
            keys.resolve(&event.refs)
        };
        let record = SaleRecord {
            key: event.key,
            order: event.order,
            deleted: event.deleted,
            amount_cents: event.amount.map_or(0, Money::cents),
            sold_at_micros: event.sold_at_micros,
            refs: event.refs,
            salesman,
            city,
            origin: event.origin,
        };
        self.add(&record, 1);
        Some(record)
    }

    /// Re-resolves a kept sale against changed natural keys. Returns the new kept version, or
    /// `None` if it still counts where it did.
    pub fn reresolve(&mut self, kept: &SaleRecord, keys: &NaturalKeys) -> Option<SaleRecord> {
        if kept.deleted || kept.key.source == SOURCE_PG {
            return None;
        }
        let (salesman, city) = keys.resolve(&kept.refs);
        if (salesman, city) == (kept.salesman, kept.city) {
            return None;
        }
        self.add(kept, -1);
        let record = SaleRecord {
            salesman,
            city,
            ..kept.clone()
        };
        self.add(&record, 1);
        Some(record)
    }

    /// Every total the rankings need, with the current names from `master`: the same numbers
    /// `current_state::compute_totals` gets from the whole history.
    ///
    /// A total that does not fit `Decimal(18,2)` (the rankings' money) is
    /// [`MartsError::Rankings`] with [`RankingsError::Revenue`] naming it: never a wrapped sum.
    pub fn totals(&self, master: &MasterData) -> Result<PeriodTotals, MartsError> {
        self.totals_of(master, None)
    }

    /// [`Cells::totals`] of all time and of the `months` given (every month when `None`): what a
    /// run publishes when it carries the other months by reference.
    pub fn totals_of(
        &self,
        master: &MasterData,
        months: Option<&BTreeSet<Month>>,
    ) -> Result<PeriodTotals, MartsError> {
        #[derive(Default)]
        struct Acc {
            cities: BTreeMap<i64, CellTotals>,
            /// One entry per (city, salesman): a cell of its own, in key order.
            city_salesmen: Vec<((i64, i64), CellTotals)>,
            salesmen: BTreeMap<i64, CellTotals>,
            summary: Summary,
            unresolved_cents: i128,
            cents: i128,
        }
        fn bump(t: &mut CellTotals, by: &CellTotals) {
            t.cents += by.cents;
            t.sales += by.sales;
        }
        // The cells are in key order, so each period's are one run: a period is looked up once
        // per run, not once per cell (a 10 M-event history has some 340 000 cells).
        let mut periods: Vec<(Period, Acc)> = Vec::new();
        let mut run: Option<(Option<(u16, u8)>, bool)> = None;
        // Sales with a month, every month together: all time's `sales_without_month` is the rest.
        let mut dated: u64 = 0;
        for (key, cell) in &self.0 {
            if key.month.is_some() {
                dated += u64::try_from(cell.sales).unwrap_or(0);
            }
            let wanted = match run {
                Some((month, wanted)) if month == key.month => wanted,
                _ => {
                    let period = key.period();
                    let wanted = match period {
                        Period::Month(month) => months.is_none_or(|m| m.contains(&month)),
                        Period::AllTime => true,
                    };
                    if wanted {
                        periods.push((period, Acc::default()));
                    }
                    run = Some((key.month, wanted));
                    wanted
                }
            };
            if !wanted {
                continue;
            }
            let acc = &mut periods.last_mut().expect("pushed with its run").1;
            let (city, salesman) = key.ranked_ids();
            if let Some(city) = city {
                bump(acc.cities.entry(city).or_default(), cell);
            }
            if let Some(pair) = city.zip(salesman) {
                acc.city_salesmen.push((pair, *cell));
            }
            if let Some(salesman) = salesman {
                bump(acc.salesmen.entry(salesman).or_default(), cell);
            }
            let unknown = |r: Resolved, known: &dyn Fn(i64) -> bool| match r {
                Resolved::Id(id) => !known(id),
                Resolved::Pending => true,
                Resolved::None => false,
            };
            let sales = u64::try_from(cell.sales).unwrap_or(0);
            acc.summary.sales += sales;
            acc.cents += cell.cents;
            if unknown(key.city, &|id| master.city(id).is_some())
                || unknown(key.salesman, &|id| master.salesman(id).is_some())
            {
                acc.summary.unresolved_sales += sales;
                acc.unresolved_cents += cell.cents;
            }
            if key.city == Resolved::None {
                acc.summary.sales_without_city += sales;
            }
            if key.salesman == Resolved::None {
                acc.summary.sales_without_salesman += sales;
            }
        }
        let city_info = |id: i64| {
            master.city(id).map(|c| CityInfo {
                name: c.name.clone().unwrap_or_default(),
                state: c.state.clone().unwrap_or_default(),
            })
        };
        let salesman_info = |id: i64| {
            master.salesman(id).map(|s| SalesmanInfo {
                name: s.name.clone().unwrap_or_default(),
                code: s.code.clone().unwrap_or_default(),
            })
        };
        let money = |cents: i128, scope: &dyn Fn() -> String| {
            Money::try_from_cents(cents).map_err(|source| {
                MartsError::Rankings(RankingsError::Revenue {
                    scope: scope(),
                    source,
                })
            })
        };
        let salesman_totals = |id: i64, t: &CellTotals, period: Period| {
            Ok::<_, MartsError>(SalesmanTotals {
                salesman_id: id,
                info: salesman_info(id),
                revenue: money(t.cents, &|| format!("salesman {id} in {period}"))?,
                sales: u64::try_from(t.sales).unwrap_or(0),
            })
        };
        let mut out = PeriodTotals::default();
        for (period, mut acc) in periods {
            acc.summary.revenue = money(acc.cents, &|| format!("all sales in {period}"))?;
            acc.summary.unresolved_revenue = money(acc.unresolved_cents, &|| {
                format!("unresolved sales in {period}")
            })?;
            if period == Period::AllTime {
                acc.summary.sales_without_month = acc.summary.sales.saturating_sub(dated);
            }
            let totals = Totals {
                cities: acc
                    .cities
                    .iter()
                    .map(|(&id, t)| {
                        Ok(CityTotals {
                            city_id: id,
                            info: city_info(id),
                            revenue: money(t.cents, &|| format!("city {id} in {period}"))?,
                            sales: u64::try_from(t.sales).unwrap_or(0),
                        })
                    })
                    .collect::<Result<_, MartsError>>()?,
                city_salesmen: acc
                    .city_salesmen
                    .iter()
                    .map(|((city, salesman), t)| {
                        Ok(CitySalesmanTotals {
                            city_id: *city,
                            salesman: salesman_totals(*salesman, t, period)?,
                        })
                    })
                    .collect::<Result<_, MartsError>>()?,
                salesmen: acc
                    .salesmen
                    .iter()
                    .map(|(&id, t)| salesman_totals(id, t, period))
                    .collect::<Result<_, MartsError>>()?,
                summary: acc.summary,
            };
            match period {
                Period::AllTime => out.all = totals,
                Period::Month(m) => {
                    out.months.insert(m, totals);
                }
            }
        }
        Ok(out)
    }
}

/// Source name of Postgres sales.
pub const SOURCE_PG: &str = "pg";
/// Source name of partner-file sales.
pub const SOURCE_FILES: &str = "files";
/// Source name of ERP sales.
pub const SOURCE_ERP: &str = "erp";

/// The source a raw table's events come from: `file_sale` files, `erp_sale` the ERP, every
/// other (`pg_*`) Postgres.
pub fn source_of_table(table: &str) -> &'static str {
    match table {
        tributary_common::names::TABLE_FILE_SALE => SOURCE_FILES,
        tributary_common::names::TABLE_ERP_SALE => SOURCE_ERP,
        _ => SOURCE_PG,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(source: &str, id: &str, order: i64, refs: SaleRefs, cents: i64) -> SaleEvent {
        SaleEvent {
            key: SaleKey {
                source: source.into(),
                sale_id: id.into(),
            },
            order: [order, 0, 0],
            deleted: false,
            refs,
            amount: Some(Money::from_cents(cents)),
            sold_at_micros: Some(JAN),
            origin: SaleOrigin::default(),
        }
    }

    fn ids(salesman: i64, city: i64) -> SaleRefs {
        SaleRefs {
            salesman_id: Some(salesman),
            city_id: Some(city),
            ..SaleRefs::default()
        }
    }

    /// The first instants of January, February and March 2026, UTC (microseconds).
    const JAN: i64 = 1_767_225_600_000_000;
    const FEB: i64 = 1_769_904_000_000_000;
    const MAR: i64 = 1_772_323_200_000_000;

    /// [`event`] sold at `at` (`None`: without a month).
    fn dated(id: &str, order: i64, refs: SaleRefs, at: Option<i64>) -> SaleEvent {
        SaleEvent {
            sold_at_micros: at,
            ..event("pg", id, order, refs, 100)
        }
    }

    #[test]
    fn city_keys_normalise_like_the_sql() {
        assert_eq!(
            CityKey::new("  São\t Paulo ", " sp "),
            CityKey {
                name: "são paulo".into(),
                state: "SP".into()
            }
        );
    }

    /// The months a batch changed are those of the cells it touched (the month a sale left as
    /// well as the one it moved to); totals of some months are those months of the whole
    /// totals, all time included, and all time still counts the sales of every month.
    #[test]
    fn changed_months_and_the_totals_of_some_months() {
        let keys = NaturalKeys::default();
        let mut cells = Cells::default();
        let month = |micros: i64| {
            let (y, m) = month_of(micros).unwrap();
            Month::new(y, m).unwrap()
        };
        let dated = |id: &str, order: i64, at: Option<i64>| dated(id, order, ids(1, 7), at);
        let a = cells
            .fold_event(None, dated("a", 1, Some(JAN)), &keys)
            .unwrap();
        cells
            .fold_event(None, dated("b", 1, Some(FEB)), &keys)
            .unwrap();
        cells.fold_event(None, dated("c", 1, None), &keys).unwrap();
        cells.stored();
        assert!(cells.changed_months().is_empty());
        // Sale `a` moves from January to March.
        cells
            .fold_event(Some(&a), dated("a", 2, Some(MAR)), &keys)
            .unwrap();
        assert_eq!(
            cells.changed_months(),
            BTreeSet::from([month(JAN), month(MAR)])
        );
        let master = MasterData::default();
        let whole = cells.totals(&master).unwrap();
        let some = cells
            .totals_of(&master, Some(&BTreeSet::from([month(MAR)])))
            .unwrap();
        assert_eq!(some.all, whole.all);
        assert_eq!(some.all.summary.sales_without_month, 1);
        assert_eq!(
            some.months.keys().copied().collect::<Vec<_>>(),
            [month(MAR)]
        );
        assert_eq!(some.months[&month(MAR)], whole.months[&month(MAR)]);
        assert!(whole.months.contains_key(&month(FEB)));
        assert!(
            !whole.months.contains_key(&month(JAN)),
            "January has no sale left"
        );
    }

    /// The changes taken for a commit are exactly what moved since the last store (the emptied
    /// cells included, as absent), the cells keep every value and count as stored, and applying
    /// the changes to the cells as last stored gives the cells as they are.
    #[test]
    fn changes_taken_for_a_commit_rebuild_the_cells_from_the_last_stored() {
        let keys = NaturalKeys::default();
        let mut cells = Cells::default();
        let a = cells
            .fold_event(None, event("pg", "a", 1, ids(1, 7), 100), &keys)
            .unwrap();
        cells
            .fold_event(None, event("pg", "b", 1, ids(2, 7), 250), &keys)
            .unwrap();
        cells.stored();
        let stored = cells.clone();
        // Salesman 1's one sale is deleted (its cells emptied), salesman 3 sells.
        let gone = SaleEvent {
            deleted: true,
            ..event("pg", "a", 2, ids(1, 7), 100)
        };
        cells.fold_event(Some(&a), gone, &keys).unwrap();
        cells
            .fold_event(None, event("pg", "c", 1, ids(3, 8), 40), &keys)
            .unwrap();
        let moved = cells.changed_count();
        let changes = cells.take_changes();
        assert_eq!(changes.changed_count(), moved);
        assert_eq!(cells.changed_count(), 0, "taken: nothing left to store");
        assert_eq!(
            changes.changed().filter(|(_, t)| t.is_none()).count(),
            2,
            "salesman 1's cells, all time and January, emptied"
        );
        let mut rebuilt = stored;
        rebuilt.apply(&changes);
        assert_eq!(rebuilt, cells);
        assert_eq!(rebuilt.changed_count(), moved);
    }

    /// The rows a run's changed cells move: each changed cell's city, (city, salesman) and
    /// salesman rows, in its month and in all time, each row once; a sale without a month moves
    /// all time only, and one whose salesman is not known yet moves only its city's rows.
    #[test]
    fn changed_ranking_rows_count_each_moved_row_once() {
        let keys = NaturalKeys::default();
        let mut cells = Cells::default();
        let a = cells
            .fold_event(None, dated("a", 1, ids(1, 7), Some(JAN)), &keys)
            .unwrap();
        cells.stored();
        assert_eq!(cells.changed_ranking_rows(), 0);
        // `a` moves from January to March: city 7, (7, 1) and salesman 1 in January, March and
        // all time.
        cells
            .fold_event(Some(&a), dated("a", 2, ids(1, 7), Some(MAR)), &keys)
            .unwrap();
        assert_eq!(cells.changed_ranking_rows(), 9);
        // Salesman 2 sells in city 7 without a month: (7, 2) and salesman 2 in all time.
        cells
            .fold_event(None, dated("c", 1, ids(2, 7), None), &keys)
            .unwrap();
        assert_eq!(cells.changed_ranking_rows(), 11);
        // A sale in city 8 whose salesman is not known yet: city 8 in February and all time.
        let unknown_salesman = SaleRefs {
            city_id: Some(8),
            ..SaleRefs::default()
        };
        cells
            .fold_event(None, dated("d", 1, unknown_salesman, Some(FEB)), &keys)
            .unwrap();
        assert_eq!(cells.changed_ranking_rows(), 13);
    }

    /// Ten of the largest `Decimal(18,2)` amounts for one salesman: the sum is kept exactly
    /// (no i64 wrap, no debug-build panic), and a total that cannot be published as
    /// `Decimal(18,2)` is a named, permanent error; taking sales away brings it back in range.
    #[test]
    fn totals_beyond_decimal_18_2_are_refused_not_wrapped() {
        use tributary_rankings::money::MAX_CENTS;
        let keys = NaturalKeys::default();
        let mut cells = Cells::default();
        let mut kept = Vec::new();
        for i in 0..10 {
            let sale = event("erp", &i.to_string(), 1, ids(1, 7), MAX_CENTS);
            kept.push(cells.fold_event(None, sale, &keys).unwrap());
        }
        let cell = cells.0.values().next().unwrap();
        assert_eq!(cell.cents, 10 * i128::from(MAX_CENTS));
        let err = cells.totals(&MasterData::default()).unwrap_err();
        assert!(!err.is_retryable());
        assert!(
            err.to_string().contains("does not fit Decimal(18,2)"),
            "{err}"
        );
        for (i, k) in kept.iter().enumerate().skip(1) {
            let mut gone = event("erp", &i.to_string(), 2, ids(1, 7), 0);
            gone.deleted = true;
            cells.fold_event(Some(k), gone, &keys).unwrap();
        }
        let totals = cells.totals(&MasterData::default()).unwrap();
        assert_eq!(totals.all.salesmen[0].revenue.cents(), MAX_CENTS);
    }

    #[test]
    fn a_newer_version_moves_revenue_and_an_older_one_changes_nothing() {
        let keys = NaturalKeys::default();
        let mut cells = Cells::default();
        let v1 = cells
            .fold_event(None, event("pg", "1", 10, ids(1, 7), 500), &keys)
            .unwrap();
        let v2 = cells
            .fold_event(Some(&v1), event("pg", "1", 20, ids(2, 8), 300), &keys)
            .unwrap();
        assert!(
            cells
                .fold_event(Some(&v2), event("pg", "1", 15, ids(1, 7), 900), &keys)
                .is_none()
        );
        let totals = cells.totals(&MasterData::default()).unwrap();
        let salesmen: Vec<_> = totals
            .all
            .salesmen
            .iter()
            .map(|s| (s.salesman_id, s.revenue.cents()))
            .collect();
        assert_eq!(salesmen, vec![(2, 300)]);
        assert_eq!(totals.months.len(), 1);

        let mut deleted = event("pg", "1", 30, ids(2, 8), 0);
        deleted.deleted = true;
        let tomb = cells.fold_event(Some(&v2), deleted, &keys).unwrap();
        assert!(tomb.deleted);
        assert!(cells.0.is_empty(), "{:?}", cells.0);
    }

    #[test]
    fn a_code_that_appears_later_resolves_the_sales_that_named_it() {
        let mut master = MasterData::default();
        let before = master.index();
        let mut cells = Cells::default();
        let refs = SaleRefs {
            salesman_code: Some("S9".into()),
            city_id: Some(7),
            ..SaleRefs::default()
        };
        let kept = cells
            .fold_event(None, event("files", "acme/1", 1, refs, 100), &before)
            .unwrap();
        assert_eq!(kept.salesman, Resolved::Pending);
        assert_eq!(
            cells.totals(&master).unwrap().all.summary.unresolved_sales,
            1
        );

        master.apply(
            [MasterEvent {
                id: 9,
                version: MasterVersion {
                    order: [5, 0, 0],
                    row: Some(SalesmanRow {
                        code: Some("S9".into()),
                        name: Some("Ana".into()),
                    }),
                },
            }],
            [MasterEvent {
                id: 7,
                version: MasterVersion {
                    order: [6, 0, 0],
                    row: Some(CityRow {
                        name: Some("Campinas".into()),
                        state: Some("SP".into()),
                    }),
                },
            }],
        );
        let after = master.index();
        assert_eq!(
            before.changed(&after),
            (vec!["S9".to_string()], vec![CityKey::new("Campinas", "SP")])
        );
        let moved = cells.reresolve(&kept, &after).unwrap();
        assert_eq!(moved.salesman, Resolved::Id(9));
        assert!(cells.reresolve(&moved, &after).is_none());
        let totals = cells.totals(&master).unwrap();
        assert_eq!(totals.all.summary.unresolved_sales, 0);
        assert_eq!(totals.all.salesmen[0].info.as_ref().unwrap().name, "Ana");
    }
}
