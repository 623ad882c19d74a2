//! The simulated ERP's data: an append-only change log (sequence = position + 1) and the
//! current version of each sale, seeded deterministically.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;

use crate::erp::model::{ChangeKind, ErpChange, ErpSale, SaleRecord, SaleStatus};

/// The cities of `ingest/sql/sample.sql`, in its order: salesman `S0nn` lives in city
/// `(nn - 1) % 8`.
pub const CITIES: [(&str, &str); 8] = [
    ("São Paulo", "SP"),
    ("Campinas", "SP"),
    ("Rio de Janeiro", "RJ"),
    ("Niterói", "RJ"),
    ("Belo Horizonte", "MG"),
    ("Uberlândia", "MG"),
    ("Curitiba", "PR"),
    ("Londrina", "PR"),
];

/// Cities salesdb does not know (yet): their sales stay unresolved until the master data
/// arrives.
pub const UNKNOWN_CITIES: [(&str, &str); 2] = [("Maringá", "PR"), ("Sorocaba", "SP")];

/// Salesmen in salesdb's sample data: `S001` … `S020`.
pub const KNOWN_SALESMEN: u32 = 20;

/// The values of a new sale or of a correction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SaleInput {
    /// Existing id to correct, or `None` for a new sale.
    pub sale_id: Option<String>,
    /// Salesman code.
    pub salesman_code: String,
    /// City name.
    pub city_name: String,
    /// City state.
    pub city_state: String,
    /// Amount (at most two fraction digits, non-negative).
    pub amount: Decimal,
    /// ISO 4217 code.
    pub currency: String,
    /// When the sale happened.
    pub sold_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct Current {
    sale: ErpSale,
    cancelled: bool,
    last_sequence: i64,
}

/// Why a cancellation was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelError {
    /// No such sale.
    #[error("sale {0} does not exist")]
    Unknown(String),
    /// Cancelled before.
    #[error("sale {0} is already cancelled")]
    AlreadyCancelled(String),
}

/// The log and the current sales.
#[derive(Debug, Clone, Default)]
pub struct Store {
    log: Vec<ErpChange>,
    current: BTreeMap<String, Current>,
    next_id: u64,
}

impl Store {
    /// `changes` changes from `seed`: mostly new sales, every 10th a correction of an earlier
    /// sale, every 23rd a cancellation. One sale in 25 names an unknown salesman, one in 30 an
    /// unknown city. Change times start at 2026-07-01 and advance a minute per change, so the
    /// same seed always gives the same log.
    pub fn generate(seed: u64, changes: u32) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut store = Store::default();
        let start: DateTime<Utc> = DateTime::from_timestamp(1_782_864_000, 0).unwrap_or_default();
        for i in 0..changes {
            let at = start + Duration::minutes(i64::from(i));
            let active: Vec<String> = store
                .current
                .iter()
                .filter(|(_, c)| !c.cancelled)
                .map(|(id, _)| id.clone())
                .collect();
            if i % 23 == 22 && !active.is_empty() {
                let id = &active[rng.random_range(0..active.len())];
                // Cannot fail: the id was just taken from the active sales.
                let _ = store.cancel(id, Some("customer cancelled the order".into()), at);
            } else if i % 10 == 9 && !active.is_empty() {
                let id = active[rng.random_range(0..active.len())].clone();
                let mut input = random_sale(&mut rng);
                let previous = &store.current[&id].sale;
                // A correction fixes the amount and keeps who sold it where and when.
                input.salesman_code = previous.salesman_code.clone();
                input.city_name = previous.city_name.clone();
                input.city_state = previous.city_state.clone();
                input.sold_at = previous.sold_at;
                input.sale_id = Some(id);
                store.upsert(input, at);
            } else {
                let input = random_sale(&mut rng);
                store.upsert(input, at);
            }
        }
        store
    }

    /// Records a new sale or a correction; returns its change.
    pub fn upsert(&mut self, input: SaleInput, at: DateTime<Utc>) -> ErpChange {
        let sale_id = input.sale_id.clone().unwrap_or_else(|| {
            self.next_id += 1;
            format!("ERP-{:06}", self.next_id)
        });
        let revision = self
            .current
            .get(&sale_id)
            .map_or(1, |c| c.sale.revision + 1);
        let sale = ErpSale {
            sale_id: sale_id.clone(),
            revision,
            salesman_code: input.salesman_code,
            city_name: input.city_name,
            city_state: input.city_state,
            amount: input.amount,
            currency: input.currency,
            sold_at: input.sold_at,
        };
        let change = self.append(at, ChangeKind::Upsert(sale.clone()));
        self.current.insert(
            sale_id,
            Current {
                sale,
                cancelled: false,
                last_sequence: change.sequence,
            },
        );
        change
    }

    /// Cancels a sale; returns its change.
    pub fn cancel(
        &mut self,
        sale_id: &str,
        reason: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<ErpChange, CancelError> {
        match self.current.get(sale_id) {
            None => return Err(CancelError::Unknown(sale_id.to_string())),
            Some(c) if c.cancelled => {
                return Err(CancelError::AlreadyCancelled(sale_id.to_string()));
            }
            Some(_) => {}
        }
        let change = self.append(
            at,
            ChangeKind::Cancel {
                sale_id: sale_id.to_string(),
                reason,
            },
        );
        if let Some(current) = self.current.get_mut(sale_id) {
            current.cancelled = true;
            current.last_sequence = change.sequence;
        }
        Ok(change)
    }

    fn append(&mut self, at: DateTime<Utc>, kind: ChangeKind) -> ErpChange {
        let change = ErpChange {
            sequence: self.log.len() as i64 + 1,
            changed_at: at,
            kind,
        };
        self.log.push(change.clone());
        change
    }

    /// Up to `size` changes after sequence `after`, and whether more follow.
    pub fn page(&self, after: i64, size: usize) -> (&[ErpChange], bool) {
        let start = usize::try_from(after).unwrap_or(0).min(self.log.len());
        let end = start.saturating_add(size).min(self.log.len());
        (&self.log[start..end], end < self.log.len())
    }

    /// The sequence of the newest change (0 when the log is empty).
    pub fn last_sequence(&self) -> i64 {
        self.log.len() as i64
    }

    /// One sale's latest version and status.
    pub fn sale(&self, sale_id: &str) -> Option<SaleRecord> {
        self.current.get(sale_id).map(|c| SaleRecord {
            sale: c.sale.clone(),
            status: if c.cancelled {
                SaleStatus::Cancelled
            } else {
                SaleStatus::Active
            },
            last_sequence: c.last_sequence,
        })
    }

    /// The sales that count now (latest versions, cancelled ones left out), by id.
    pub fn active_sales(&self) -> Vec<ErpSale> {
        self.current
            .values()
            .filter(|c| !c.cancelled)
            .map(|c| c.sale.clone())
            .collect()
    }
}

fn random_sale(rng: &mut ChaCha8Rng) -> SaleInput {
    let salesman = rng.random_range(1..=KNOWN_SALESMEN);
    let salesman_code = if rng.random_ratio(1, 25) {
        format!("S9{:02}", rng.random_range(0..100))
    } else {
        format!("S{salesman:03}")
    };
    let (city_name, city_state) = if rng.random_ratio(1, 30) {
        UNKNOWN_CITIES[rng.random_range(0..UNKNOWN_CITIES.len())]
    } else if rng.random_ratio(1, 5) {
        CITIES[rng.random_range(0..CITIES.len())]
    } else {
        CITIES[((salesman - 1) % 8) as usize]
    };
    let cents: i64 = rng.random_range(5_000..150_000);
    let day = rng.random_range(0..181);
    let minute = rng.random_range(0..(10 * 60));
    let jan_first_9am: DateTime<Utc> =
        DateTime::from_timestamp(1_767_258_000, 0).unwrap_or_default();
    SaleInput {
        sale_id: None,
        salesman_code,
        city_name: city_name.to_string(),
        city_state: city_state.to_string(),
        amount: Decimal::new(cents, 2),
        currency: "BRL".into(),
        sold_at: jan_first_9am + Duration::days(day) + Duration::minutes(minute),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_log() {
        let a = Store::generate(7, 200);
        let b = Store::generate(7, 200);
        assert_eq!(a.log, b.log);
        assert_ne!(a.log, Store::generate(8, 200).log);
        assert_eq!(a.last_sequence(), 200);
    }

    #[test]
    fn the_log_mixes_sales_corrections_cancellations_and_unknown_references() {
        let store = Store::generate(42, 300);
        let cancels = store
            .log
            .iter()
            .filter(|c| matches!(c.kind, ChangeKind::Cancel { .. }))
            .count();
        let corrections = store
            .log
            .iter()
            .filter(|c| matches!(&c.kind, ChangeKind::Upsert(s) if s.revision > 1))
            .count();
        assert!(cancels >= 10, "{cancels}");
        assert!(corrections >= 20, "{corrections}");
        let sales: Vec<_> = store
            .log
            .iter()
            .filter_map(|c| match &c.kind {
                ChangeKind::Upsert(s) => Some(s),
                _ => None,
            })
            .collect();
        assert!(sales.iter().any(|s| s.salesman_code.starts_with("S9")));
        assert!(
            sales
                .iter()
                .any(|s| UNKNOWN_CITIES.contains(&(s.city_name.as_str(), s.city_state.as_str())))
        );
        assert!(
            sales
                .iter()
                .all(|s| s.sold_at.format("%Y").to_string() == "2026")
        );
    }

    #[test]
    fn pages_and_cancellations() {
        let mut store = Store::generate(1, 25);
        let (page, more) = store.page(0, 10);
        assert_eq!(page.len(), 10);
        assert_eq!(page[0].sequence, 1);
        assert!(more);
        let (page, more) = store.page(20, 10);
        assert_eq!(page.len(), 5);
        assert!(!more);
        assert!(store.page(25, 10).0.is_empty());
        let id = store.active_sales()[0].sale_id.clone();
        let change = store.cancel(&id, None, Utc::now()).unwrap();
        assert_eq!(change.sequence, 26);
        assert_eq!(
            store.cancel(&id, None, Utc::now()),
            Err(CancelError::AlreadyCancelled(id.clone()))
        );
        assert_eq!(store.sale(&id).unwrap().status, SaleStatus::Cancelled);
        assert!(store.active_sales().iter().all(|s| s.sale_id != id));
    }
}
