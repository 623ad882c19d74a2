//! Periods of a ranking: all time, or one calendar month of `sold_at` in UTC.
//!
//! A period is stored as text in every ranking row (`'all'` or `'YYYY-MM'`), so one publication
//! holds every period and a reader picks one with `WHERE publication_id = ? AND period = ?`.
//! Months are UTC calendar months: the lake stores `sold_at` as a UTC `timestamptz`, and a
//! store's local midnight would make the same sale land in different months for different
//! readers. A sale without `sold_at` counts in the all-time rankings only.

use std::fmt;
use std::str::FromStr;

/// A calendar month (UTC), `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: u16,
    month: u8,
}

/// Why a text is not a month.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a month: expected YYYY-MM with a month 01..12 (e.g. 2026-03)")]
pub struct MonthError {
    /// The text given.
    pub input: String,
}

impl Month {
    /// A month, if `month` is 1..=12 and `year` has four digits.
    pub fn new(year: u16, month: u8) -> Option<Self> {
        ((1000..=9999).contains(&year) && (1..=12).contains(&month)).then_some(Self { year, month })
    }

    /// The year.
    pub fn year(self) -> u16 {
        self.year
    }

    /// The month, 1..=12.
    pub fn month(self) -> u8 {
        self.month
    }
}

impl FromStr for Month {
    type Err = MonthError;

    /// Exactly `YYYY-MM`: no day, no time zone, no sign, no short forms, so a client never
    /// gets a different month from the one it meant.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MonthError {
            input: s.to_string(),
        };
        let b = s.as_bytes();
        if b.len() != 7
            || b[4] != b'-'
            || !s[..4]
                .bytes()
                .chain(s[5..].bytes())
                .all(|c| c.is_ascii_digit())
        {
            return Err(err());
        }
        let year = s[..4].parse().map_err(|_| err())?;
        let month = s[5..].parse().map_err(|_| err())?;
        Month::new(year, month).ok_or_else(err)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// All time or one month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Period {
    /// Every current sale, with or without `sold_at`.
    #[default]
    AllTime,
    /// The current sales whose `sold_at` falls in this UTC month.
    Month(Month),
}

impl Period {
    /// The stored form of all time.
    pub const ALL: &'static str = "all";

    /// `'all'` or `'YYYY-MM'`, as stored in the `period` columns.
    pub fn key(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::AllTime => f.write_str(Period::ALL),
            Period::Month(m) => m.fmt(f),
        }
    }
}

impl FromStr for Period {
    type Err = MonthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == Period::ALL {
            Ok(Period::AllTime)
        } else {
            s.parse().map(Period::Month)
        }
    }
}

impl From<Month> for Period {
    fn from(m: Month) -> Self {
        Period::Month(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_only_in_the_canonical_form() {
        assert_eq!(
            "2026-03".parse::<Month>().unwrap(),
            Month::new(2026, 3).unwrap()
        );
        assert_eq!("1999-12".parse::<Month>().unwrap().to_string(), "1999-12");
        for bad in [
            "",
            "2026",
            "2026-3",
            "2026-13",
            "2026-00",
            "26-03",
            "2026/03",
            "2026-03-01",
            "+026-03",
            "2026-0a",
            " 2026-03",
            "２０２６-03",
            "0999-01",
        ] {
            assert!(bad.parse::<Month>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn periods_round_trip_and_all_time_sorts_first() {
        for p in ["all", "2026-01", "2025-12"] {
            assert_eq!(p.parse::<Period>().unwrap().to_string(), p);
        }
        let mut periods: Vec<Period> = ["2026-01", "all", "2025-12"]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        periods.sort();
        let keys: Vec<_> = periods.iter().map(|p| p.key()).collect();
        assert_eq!(keys, vec!["all", "2025-12", "2026-01"]);
        assert!("ALL".parse::<Period>().is_err());
    }
}
