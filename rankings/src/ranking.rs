//! The rankings themselves: pure functions over plain totals.
//!
//! DataFusion turns the raw events into these totals (see `current_state`); everything here is
//! deterministic ordering with no I/O, so the definitions in DESIGN.md ("The two pipelines") are
//! tested directly:
//!
//! - ranks are 1-based and dense over rows (1, 2, 3, …): ties in revenue are broken by id
//!   ascending, so no two rows share a rank;
//! - a sale whose salesman or city is not (yet) in the lake still counts: its row carries the id
//!   with `info: None` ("unresolved") and takes its place in the ranking like any other.

use std::collections::BTreeMap;

use crate::money::Money;
use crate::period::Month;

/// Current name of a city, from the latest `pg_city` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CityInfo {
    /// City name.
    pub name: String,
    /// State (the natural key of a city is name + state).
    pub state: String,
}

/// Current name of a salesman, from the latest `pg_salesman` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesmanInfo {
    /// Salesman name.
    pub name: String,
    /// Salesman code (the natural key partner files use).
    pub code: String,
}

/// A city's totals over the current sales.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CityTotals {
    /// `sale.city_id`.
    pub city_id: i64,
    /// `None` while the city is not in the lake yet (unresolved).
    pub info: Option<CityInfo>,
    /// Sum of `amount`.
    pub revenue: Money,
    /// Number of current sales.
    pub sales: u64,
}

/// A salesman's totals over the current sales, nationwide or within one city.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesmanTotals {
    /// `sale.salesman_id`.
    pub salesman_id: i64,
    /// `None` while the salesman is not in the lake yet (unresolved).
    pub info: Option<SalesmanInfo>,
    /// Sum of `amount`.
    pub revenue: Money,
    /// Number of current sales.
    pub sales: u64,
}

/// A salesman's totals within one city (the city the sale was made in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CitySalesmanTotals {
    /// `sale.city_id`.
    pub city_id: i64,
    /// The salesman's totals in that city.
    pub salesman: SalesmanTotals,
}

/// Counts over the whole current set of sales, kept with each publication so nothing that is
/// left out of a ranking disappears silently.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Current sales.
    pub sales: u64,
    /// Their revenue.
    pub revenue: Money,
    /// Sales whose salesman or city is not in the lake yet (they are ranked under their ids).
    pub unresolved_sales: u64,
    /// Revenue of those sales.
    pub unresolved_revenue: Money,
    /// Sales with no `city_id` at all: in the salesman ranking, in no city ranking.
    pub sales_without_city: u64,
    /// Sales with no `salesman_id` at all: in their city's revenue, in no salesman ranking.
    pub sales_without_salesman: u64,
    /// Sales with no `sold_at`: counted all-time, in no monthly ranking (always 0 for a month).
    pub sales_without_month: u64,
}

/// Everything the rankings are computed from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// One row per city with at least one current sale.
    pub cities: Vec<CityTotals>,
    /// One row per (city, salesman) with at least one current sale.
    pub city_salesmen: Vec<CitySalesmanTotals>,
    /// One row per salesman with at least one current sale.
    pub salesmen: Vec<SalesmanTotals>,
    /// Whole-set counts.
    pub summary: Summary,
}

/// A row with its rank (1 = top).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranked<T> {
    /// 1-based position.
    pub rank: u32,
    /// The ranked row.
    pub row: T,
}

/// A ranked city with its salesmen ranked by their revenue in that city.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankedCity {
    /// The city's rank by revenue among all cities.
    pub rank: u32,
    /// Its totals.
    pub city: CityTotals,
    /// Salesmen who sold there, ranked by their revenue there.
    pub salesmen: Vec<Ranked<SalesmanTotals>>,
}

/// Both rankings of one publication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rankings {
    /// Top sales per city, in rank order.
    pub cities: Vec<RankedCity>,
    /// Top salesman nationwide, in rank order.
    pub salesmen: Vec<Ranked<SalesmanTotals>>,
    /// Whole-set counts.
    pub summary: Summary,
}

/// Something ranked by revenue, ties broken by id.
pub trait Rankable {
    /// Revenue: higher ranks first.
    fn revenue(&self) -> Money;
    /// Id: the lower id wins a tie.
    fn id(&self) -> i64;
}

impl Rankable for CityTotals {
    fn revenue(&self) -> Money {
        self.revenue
    }
    fn id(&self) -> i64 {
        self.city_id
    }
}

impl Rankable for SalesmanTotals {
    fn revenue(&self) -> Money {
        self.revenue
    }
    fn id(&self) -> i64 {
        self.salesman_id
    }
}

/// Orders by revenue descending, then id ascending, and numbers the rows from 1.
pub fn rank<T: Rankable>(mut rows: Vec<T>) -> Vec<Ranked<T>> {
    rows.sort_by(|a, b| {
        b.revenue()
            .cmp(&a.revenue())
            .then_with(|| a.id().cmp(&b.id()))
    });
    rows.into_iter()
        .zip(1u32..)
        .map(|(row, rank)| Ranked { rank, row })
        .collect()
}

/// Computes both rankings from the totals.
///
/// Per-city salesman rows are attached to their city; the totals come from one set of sales, so
/// every such row has its city (a row without one would be a bug upstream and is ranked in no
/// city, which the per-city tests would catch).
pub fn rank_all(totals: Totals) -> Rankings {
    let mut by_city: BTreeMap<i64, Vec<SalesmanTotals>> = BTreeMap::new();
    for row in totals.city_salesmen {
        by_city.entry(row.city_id).or_default().push(row.salesman);
    }
    let cities = rank(totals.cities)
        .into_iter()
        .map(
            |Ranked {
                 rank: city_rank,
                 row: city,
             }| RankedCity {
                rank: city_rank,
                salesmen: rank(by_city.remove(&city.city_id).unwrap_or_default()),
                city,
            },
        )
        .collect();
    debug_assert!(
        by_city.is_empty(),
        "per-city salesman totals for cities without totals: {:?}",
        by_city.keys().collect::<Vec<_>>()
    );
    Rankings {
        cities,
        salesmen: rank(totals.salesmen),
        summary: totals.summary,
    }
}

/// Totals for all time and for every month with at least one current sale.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeriodTotals {
    /// Every current sale.
    pub all: Totals,
    /// The current sales of each UTC calendar month of `sold_at`.
    pub months: BTreeMap<Month, Totals>,
}

/// Both rankings for all time and for every month.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeriodRankings {
    /// All-time rankings.
    pub all: Rankings,
    /// Each month's rankings, ranked within the month alone.
    pub months: BTreeMap<Month, Rankings>,
}

/// Ranks every period on its own: a month's rank 1 is the top of that month, whatever the
/// other months or all time say.
pub fn rank_periods(totals: PeriodTotals) -> PeriodRankings {
    PeriodRankings {
        all: rank_all(totals.all),
        months: totals
            .months
            .into_iter()
            .map(|(month, t)| (month, rank_all(t)))
            .collect(),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn city(id: i64, cents: i64) -> CityTotals {
        CityTotals {
            city_id: id,
            info: Some(CityInfo {
                name: format!("city {id}"),
                state: "SP".into(),
            }),
            revenue: Money::from_cents(cents),
            sales: 1,
        }
    }

    fn salesman(id: i64, cents: i64) -> SalesmanTotals {
        SalesmanTotals {
            salesman_id: id,
            info: None,
            revenue: Money::from_cents(cents),
            sales: 1,
        }
    }

    fn order<T: Rankable>(ranked: &[Ranked<T>]) -> Vec<(u32, i64)> {
        ranked.iter().map(|r| (r.rank, r.row.id())).collect()
    }

    #[test]
    fn empty_input_gives_empty_rankings() {
        assert!(rank::<CityTotals>(vec![]).is_empty());
        let rankings = rank_all(Totals::default());
        assert!(rankings.cities.is_empty());
        assert!(rankings.salesmen.is_empty());
    }

    #[test]
    fn higher_revenue_ranks_first_and_ranks_start_at_one() {
        let ranked = rank(vec![city(1, 100), city(2, 300), city(3, 200)]);
        assert_eq!(order(&ranked), vec![(1, 2), (2, 3), (3, 1)]);
    }

    #[test]
    fn ties_break_by_id_ascending_whatever_the_input_order() {
        let forward = rank(vec![salesman(7, 500), salesman(3, 500), salesman(5, 500)]);
        let backward = rank(vec![salesman(5, 500), salesman(3, 500), salesman(7, 500)]);
        assert_eq!(order(&forward), vec![(1, 3), (2, 5), (3, 7)]);
        assert_eq!(forward, backward);
    }

    #[test]
    fn sales_count_does_not_break_ties() {
        let mut many = salesman(9, 100);
        many.sales = 50;
        let ranked = rank(vec![many, salesman(2, 100)]);
        assert_eq!(order(&ranked), vec![(1, 2), (2, 9)]);
    }

    #[test]
    fn negative_and_zero_revenue_rank_last() {
        let ranked = rank(vec![city(1, -50), city(2, 0), city(3, 1)]);
        assert_eq!(order(&ranked), vec![(1, 3), (2, 2), (3, 1)]);
    }

    #[test]
    fn unresolved_rows_are_ranked_like_any_other() {
        let mut unknown = city(4, 1_000);
        unknown.info = None;
        let ranked = rank(vec![city(1, 10), unknown]);
        assert_eq!(order(&ranked), vec![(1, 4), (2, 1)]);
        assert!(ranked[0].row.info.is_none());
    }

    #[test]
    fn salesmen_are_ranked_within_each_city_by_their_revenue_there() {
        let cs = |city_id, id, cents| CitySalesmanTotals {
            city_id,
            salesman: salesman(id, cents),
        };
        let totals = Totals {
            cities: vec![city(10, 300), city(20, 900)],
            city_salesmen: vec![
                cs(10, 1, 100),
                cs(10, 2, 200),
                cs(20, 1, 800),
                cs(20, 2, 100),
            ],
            salesmen: vec![salesman(1, 900), salesman(2, 300)],
            summary: Summary::default(),
        };
        let rankings = rank_all(totals);
        let cities: Vec<_> = rankings
            .cities
            .iter()
            .map(|c| (c.rank, c.city.city_id, order(&c.salesmen)))
            .collect();
        assert_eq!(
            cities,
            vec![(1, 20, vec![(1, 1), (2, 2)]), (2, 10, vec![(1, 2), (2, 1)]),]
        );
        assert_eq!(order(&rankings.salesmen), vec![(1, 1), (2, 2)]);
    }

    #[test]
    fn each_month_is_ranked_on_its_own_with_the_same_tie_break() {
        let month = |m| Month::new(2026, m).unwrap();
        let totals = |salesmen: Vec<SalesmanTotals>| Totals {
            salesmen,
            ..Totals::default()
        };
        let ranked = rank_periods(PeriodTotals {
            // All time: 1 leads on the sum of both months.
            all: totals(vec![salesman(1, 900), salesman(2, 600), salesman(3, 300)]),
            months: BTreeMap::from([
                // January: 1 and 3 tie; the lower id wins.
                (month(1), totals(vec![salesman(3, 300), salesman(1, 300)])),
                // February: 2 beats 1 although 1 leads all time.
                (
                    month(2),
                    totals(vec![salesman(1, 600), salesman(2, 600 + 1)]),
                ),
            ]),
        });
        assert_eq!(order(&ranked.all.salesmen), vec![(1, 1), (2, 2), (3, 3)]);
        assert_eq!(
            order(&ranked.months[&month(1)].salesmen),
            vec![(1, 1), (2, 3)]
        );
        assert_eq!(
            order(&ranked.months[&month(2)].salesmen),
            vec![(1, 2), (2, 1)]
        );
    }
}
