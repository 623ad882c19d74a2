//! A seeded generator of store-system changes: pure, so the same seed always plans the same
//! changes and the plan can be unit-tested without a database.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;

/// What the generator knows about the database before planning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Existing {
    /// Ids of the salesmen with their city.
    pub salesmen: Vec<(i64, i64)>,
    /// Ids of the sales that exist now.
    pub sales: Vec<i64>,
}

/// One change to apply to `salesdb.public.sale`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new sale by `salesman_id` in `city_id`.
    Insert {
        /// Salesman who sold.
        salesman_id: i64,
        /// City where the sale happened (the salesman's).
        city_id: i64,
        /// Amount, two decimals.
        amount: Decimal,
        /// Day of 2026 (0-based) the sale happened.
        day_of_year: u32,
    },
    /// A correction: new amount, and possibly another salesman (and so another city).
    Update {
        /// Sale corrected.
        sale_id: i64,
        /// New amount.
        amount: Decimal,
        /// New salesman and city, if the sale moves.
        moved_to: Option<(i64, i64)>,
    },
    /// A refund: the sale disappears.
    Delete {
        /// Sale removed.
        sale_id: i64,
    },
}

/// How many changes of each kind to plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    /// New sales.
    pub inserts: usize,
    /// Corrections of existing sales.
    pub updates: usize,
    /// Deletions of existing sales.
    pub deletes: usize,
}

/// Plans `mix` changes over `existing`, deterministically for a given `seed`.
///
/// Updates and deletes pick distinct existing sales (never one just deleted), so every planned
/// change applies. If there are fewer sales than asked for, fewer updates/deletes are planned.
pub fn plan(existing: &Existing, mix: Mix, seed: u64) -> Vec<Change> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut changes = Vec::with_capacity(mix.inserts + mix.updates + mix.deletes);
    if !existing.salesmen.is_empty() {
        for _ in 0..mix.inserts {
            let (salesman_id, city_id) =
                existing.salesmen[rng.random_range(0..existing.salesmen.len())];
            changes.push(Change::Insert {
                salesman_id,
                city_id,
                amount: random_amount(&mut rng),
                day_of_year: rng.random_range(0..365),
            });
        }
    }
    let mut candidates = existing.sales.clone();
    for i in 0..(mix.updates + mix.deletes) {
        if candidates.is_empty() {
            break;
        }
        let sale_id = candidates.swap_remove(rng.random_range(0..candidates.len()));
        if i < mix.updates {
            let moved_to = (!existing.salesmen.is_empty() && rng.random_bool(0.5))
                .then(|| existing.salesmen[rng.random_range(0..existing.salesmen.len())]);
            changes.push(Change::Update {
                sale_id,
                amount: random_amount(&mut rng),
                moved_to,
            });
        } else {
            changes.push(Change::Delete { sale_id });
        }
    }
    changes
}

/// Between 5.00 and 5000.00, in cents, so it is exact.
fn random_amount(rng: &mut ChaCha8Rng) -> Decimal {
    Decimal::new(rng.random_range(500..=500_000), 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn existing() -> Existing {
        Existing {
            salesmen: vec![(1, 10), (2, 10), (3, 20)],
            sales: (100..120).collect(),
        }
    }

    const MIX: Mix = Mix {
        inserts: 8,
        updates: 5,
        deletes: 3,
    };

    #[test]
    fn same_seed_same_plan_other_seed_other_plan() {
        assert_eq!(plan(&existing(), MIX, 7), plan(&existing(), MIX, 7));
        assert_ne!(plan(&existing(), MIX, 7), plan(&existing(), MIX, 8));
    }

    #[test]
    fn plan_has_the_mix_and_touches_each_sale_at_most_once() {
        let changes = plan(&existing(), MIX, 1);
        let count = |f: fn(&Change) -> bool| changes.iter().filter(|c| f(c)).count();
        assert_eq!(count(|c| matches!(c, Change::Insert { .. })), 8);
        assert_eq!(count(|c| matches!(c, Change::Update { .. })), 5);
        assert_eq!(count(|c| matches!(c, Change::Delete { .. })), 3);
        let mut touched: Vec<i64> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Update { sale_id, .. } | Change::Delete { sale_id } => Some(*sale_id),
                Change::Insert { .. } => None,
            })
            .collect();
        let before = touched.len();
        touched.sort_unstable();
        touched.dedup();
        assert_eq!(touched.len(), before, "a sale was updated or deleted twice");
    }

    #[test]
    fn inserts_use_the_salesman_city_and_amounts_are_in_cents() {
        for change in plan(&existing(), MIX, 3) {
            if let Change::Insert {
                salesman_id,
                city_id,
                amount,
                ..
            } = change
            {
                assert!(existing().salesmen.contains(&(salesman_id, city_id)));
                assert_eq!(amount.scale(), 2);
                assert!(amount >= Decimal::new(500, 2));
            }
        }
    }

    #[test]
    fn fewer_sales_than_asked_plans_fewer_changes() {
        let small = Existing {
            salesmen: vec![(1, 10)],
            sales: vec![5],
        };
        let changes = plan(&small, MIX, 1);
        assert_eq!(changes.len(), 8 + 1);
    }
}
