//! A seeded random workload over every data table, for the incremental-vs-recompute tests (the
//! marts' own on an in-memory lake, and the one on the real lake with maintenance in between):
//! inserts, updates that move sales between salesmen, cities and months, deletes, renames, codes
//! and city names that appear, move or vanish, late (older) events, file corrections and
//! withdrawals, ERP cancellations.

use super::{Ev, Ref, Val, city, file_sale, sale, salesman};
use crate::schema::RawTable;

/// SplitMix64: a few lines, deterministic, good enough to pick test and benchmark data.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// 0..n.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

const MONTHS: [&str; 4] = [
    "2026-01-15T10:00:00Z",
    "2026-01-31T23:59:59Z",
    "2026-02-01T00:00:00Z",
    "2026-03-10T08:30:00Z",
];
const CODES: [&str; 6] = ["S1", "S2", "S3", "S4", "S5", "S99"];
const CITY_NAMES: [(&str, &str); 5] = [
    ("Campinas", "SP"),
    ("campinas ", " sp"),
    ("São  Paulo", "SP"),
    ("Rio", "RJ"),
    ("Nowhere", "XX"),
];

/// The workload of one seed: call [`Workload::round`] for each round of appends.
pub struct Workload {
    rng: Rng,
    /// Source positions: LSNs and file/ERP sequences move forward, sometimes backwards (late).
    position: i64,
    /// Kafka offsets: unique, so no two events of a key tie.
    offset: i64,
}

impl Workload {
    /// The workload of `seed` (the same seed, the same events).
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Rng(seed),
            position: 1_000,
            offset: 0,
        }
    }

    /// A number below `n`, from the workload's generator (for a test's own choices, such as
    /// when to run maintenance, replayable with the seed).
    pub fn below(&mut self, n: u64) -> u64 {
        self.rng.below(n)
    }

    /// One round of appends: per data table, a few events (none for some), in table order.
    pub fn round(&mut self) -> Vec<(RawTable, Vec<Ev>)> {
        let mut round = Vec::new();
        for table in RawTable::DATA_TABLES {
            let n = self.rng.below(match table {
                RawTable::PgSalesman | RawTable::PgCity => 4,
                _ => 12,
            });
            let events: Vec<Ev> = (0..n)
                .map(|_| match table {
                    RawTable::PgSale => self.pg_sale(),
                    RawTable::PgSalesman | RawTable::PgCity => self.master(table),
                    RawTable::FileSale => self.event_sale(&["acme", "beta"]),
                    _ => self.event_sale(&["erp1"]),
                })
                .collect();
            if !events.is_empty() {
                round.push((table, events));
            }
        }
        round
    }

    fn position(&mut self) -> i64 {
        self.position += 1 + self.rng.below(3) as i64;
        if self.rng.chance(10) {
            // A late event: older than some already landed.
            self.position - 1 - self.rng.below(300) as i64
        } else {
            self.position
        }
    }
    fn offset(&mut self) -> i64 {
        self.offset += 1;
        self.offset
    }
    fn sold_at(&mut self, mut ev: Ev) -> Ev {
        if !self.rng.chance(10) {
            let at = self.rng.pick(&MONTHS);
            ev = ev.sold_at(at);
        }
        ev
    }
    fn op(&mut self, delete_percent: u64) -> &'static str {
        if self.rng.chance(delete_percent) {
            "d"
        } else {
            "u"
        }
    }

    fn pg_sale(&mut self) -> Ev {
        let op = self.op(12);
        let id = 1 + self.rng.below(25) as i64;
        let salesman = (!self.rng.chance(5)).then(|| 1 + self.rng.below(9) as i64);
        let city = (!self.rng.chance(5)).then(|| 1 + self.rng.below(7) as i64);
        let cents = (!self.rng.chance(3)).then(|| 1 + self.rng.below(100_000) as i64);
        let mut ev = sale(op, id, (self.position(), 0), salesman, city, cents);
        ev.offset = self.offset();
        self.sold_at(ev)
    }

    fn master(&mut self, table: RawTable) -> Ev {
        let op = self.op(10);
        let lsn = self.position();
        let mut ev = if table == RawTable::PgSalesman {
            let id = 1 + self.rng.below(8) as i64;
            let code = self.rng.pick(&CODES[..5]);
            salesman(
                op,
                id,
                (lsn, 0),
                code,
                leak(format!("Salesman {}", self.rng.below(100))),
            )
        } else {
            let id = 1 + self.rng.below(7) as i64;
            let (name, state) = self.rng.pick(&CITY_NAMES[..4]);
            city(op, id, (lsn, 0), name, state)
        };
        ev.offset = self.offset();
        ev
    }

    fn event_sale(&mut self, origins: &[&'static str]) -> Ev {
        let op = self.op(10);
        let origin = self.rng.pick(origins);
        let id = leak(format!("S-{}", self.rng.below(15)));
        let salesman = if self.rng.chance(30) {
            Ref::Id(1 + self.rng.below(9) as i64)
        } else {
            Ref::Key(self.rng.pick(&CODES))
        };
        let city = if self.rng.chance(30) {
            Ref::Id(1 + self.rng.below(7) as i64)
        } else {
            let (name, state) = self.rng.pick(&CITY_NAMES);
            Ref::Key(leak(format!("{name}|{state}")))
        };
        let cents = Some(1 + self.rng.below(50_000) as i64);
        let major = self.position();
        let minor = self.rng.below(5) as i64;
        let mut ev = file_sale(op, (origin, id), (major, minor), salesman, city, cents);
        ev.offset = self.offset();
        if let Some(Val::Cents(_)) = ev.values.get("amount") {
            ev = self.sold_at(ev);
        }
        ev
    }
}
