//! Money as an exact count of cents.
//!
//! The lake holds `decimal(18,2)`, ClickHouse `Decimal(18,2)` (an `Int64` of cents in RowBinary),
//! and the API prints decimal strings; nothing on the way is a float. [`Money`] is that `Int64`.

use std::fmt;
use std::str::FromStr;

/// Largest magnitude, in cents, that fits `Decimal(18,2)`: eighteen nines.
pub const MAX_CENTS: i64 = 999_999_999_999_999_999;

/// An amount of money with two decimal places, stored as cents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

/// A value cannot be represented as `Decimal(18,2)` money.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// More than eighteen digits.
    #[error("{value} (scale {scale}) does not fit Decimal(18,2)")]
    OutOfRange {
        /// The unscaled value that was offered.
        value: i128,
        /// Its scale.
        scale: i8,
    },
    /// More than two decimal places, which would need rounding.
    #[error("{value} (scale {scale}) has more than two decimal places")]
    TooPrecise {
        /// The unscaled value that was offered.
        value: i128,
        /// Its scale.
        scale: i8,
    },
    /// Not a decimal number such as `1234.50`.
    #[error("{0:?} is not a decimal amount such as \"1234.50\"")]
    Unparsable(String),
}

impl Money {
    /// Zero.
    pub const ZERO: Money = Money(0);

    /// `cents / 100`. Callers keep `|cents| <= MAX_CENTS` (checked by [`Money::try_from_cents`]).
    pub const fn from_cents(cents: i64) -> Self {
        Money(cents)
    }

    /// `cents / 100`, refusing what does not fit `Decimal(18,2)`.
    pub fn try_from_cents(cents: i128) -> Result<Self, MoneyError> {
        Self::from_unscaled(cents, 2)
    }

    /// The amount in cents: the unscaled value of `Decimal(18,2)`.
    pub const fn cents(self) -> i64 {
        self.0
    }

    /// From an Arrow/Iceberg decimal's unscaled value and scale, exactly (no rounding).
    pub fn from_unscaled(value: i128, scale: i8) -> Result<Self, MoneyError> {
        let cents = match scale {
            s if s <= 2 => 10i128
                .checked_pow(u32::from((2 - s).unsigned_abs()))
                .and_then(|factor| value.checked_mul(factor)),
            s => {
                let factor = 10i128.checked_pow(u32::from((s - 2).unsigned_abs()));
                match factor {
                    Some(f) if value % f == 0 => Some(value / f),
                    Some(_) => return Err(MoneyError::TooPrecise { value, scale }),
                    None => None,
                }
            }
        };
        match cents {
            Some(c) if c.unsigned_abs() <= MAX_CENTS as u128 => Ok(Money(c as i64)),
            _ => Err(MoneyError::OutOfRange { value, scale }),
        }
    }

    /// Sum, refusing to leave `Decimal(18,2)`.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0
            .checked_add(other.0)
            .filter(|c| c.unsigned_abs() <= MAX_CENTS as u64)
            .map(Money)
    }
}

impl fmt::Display for Money {
    /// `1234.50`, `-0.05`: always two decimals, no grouping.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    /// Accepts `12`, `12.5`, `-12.50`; refuses a third decimal, exponents and grouping.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MoneyError::Unparsable(s.to_string());
        let (negative, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(frac) || frac.len() > 2 {
            return Err(bad());
        }
        if digits.contains('.') && frac.is_empty() {
            return Err(bad());
        }
        let whole: i128 = whole.parse().map_err(|_| bad())?;
        let frac_cents: i128 = match frac.len() {
            0 => 0,
            1 => frac.parse::<i128>().map_err(|_| bad())? * 10,
            _ => frac.parse().map_err(|_| bad())?,
        };
        let cents = whole
            .checked_mul(100)
            .and_then(|w| w.checked_add(frac_cents))
            .ok_or_else(bad)?;
        Money::try_from_cents(if negative { -cents } else { cents })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_two_decimals() {
        assert_eq!(Money::from_cents(123450).to_string(), "1234.50");
        assert_eq!(Money::from_cents(5).to_string(), "0.05");
        assert_eq!(Money::from_cents(-5).to_string(), "-0.05");
        assert_eq!(Money::from_cents(-12345).to_string(), "-123.45");
        assert_eq!(Money::ZERO.to_string(), "0.00");
        assert_eq!(
            Money::from_cents(MAX_CENTS).to_string(),
            "9999999999999999.99"
        );
    }

    #[test]
    fn parses_what_it_prints() {
        for cents in [0, 1, 5, 99, 100, 123450, -5, -123450, MAX_CENTS, -MAX_CENTS] {
            let m = Money::from_cents(cents);
            assert_eq!(m.to_string().parse::<Money>(), Ok(m));
        }
        assert_eq!("12".parse::<Money>(), Ok(Money::from_cents(1200)));
        assert_eq!("12.5".parse::<Money>(), Ok(Money::from_cents(1250)));
        for bad in [
            "",
            "-",
            "1.",
            ".5",
            "1.234",
            "1e3",
            "1,000.00",
            "abc",
            "+1",
            "10000000000000000.00",
        ] {
            assert!(bad.parse::<Money>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn converts_decimals_exactly() {
        assert_eq!(Money::from_unscaled(12345, 2), Ok(Money::from_cents(12345)));
        assert_eq!(
            Money::from_unscaled(123450, 3),
            Ok(Money::from_cents(12345))
        );
        assert_eq!(Money::from_unscaled(12, 0), Ok(Money::from_cents(1200)));
        assert!(matches!(
            Money::from_unscaled(123451, 3),
            Err(MoneyError::TooPrecise { .. })
        ));
        assert!(matches!(
            Money::from_unscaled(i128::from(MAX_CENTS) + 1, 2),
            Err(MoneyError::OutOfRange { .. })
        ));
        assert!(matches!(
            Money::from_unscaled(1, -40),
            Err(MoneyError::OutOfRange { .. })
        ));
    }

    #[test]
    fn addition_stays_in_range() {
        let max = Money::from_cents(MAX_CENTS);
        assert_eq!(max.checked_add(Money::from_cents(1)), None);
        assert_eq!(
            Money::from_cents(1).checked_add(Money::from_cents(2)),
            Some(Money::from_cents(3))
        );
    }

    mod properties {
        //! Money at its bounds, as property tests: every amount Decimal(18,2) holds survives
        //! printing and parsing, and nothing outside it gets in, by any door.
        use proptest::prelude::*;

        use super::super::*;

        const MAX: i128 = MAX_CENTS as i128;

        fn fits(cents: i128) -> bool {
            cents.unsigned_abs() <= MAX as u128
        }

        /// Cents near the bounds and zero as often as anywhere else.
        fn cents() -> impl Strategy<Value = i128> {
            prop_oneof![
                -MAX..=MAX,
                (MAX - 1_000)..=(MAX + 1_000),
                (-MAX - 1_000)..=(-MAX + 1_000),
                -1_000i128..=1_000,
                any::<i64>().prop_map(i128::from),
                any::<i128>(),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 2_000,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn in_range_exactly_when_decimal_18_2_holds_it(c in cents()) {
                match Money::try_from_cents(c) {
                    Ok(m) => {
                        prop_assert!(fits(c));
                        prop_assert_eq!(i128::from(m.cents()), c);
                        prop_assert_eq!(m.to_string().parse::<Money>(), Ok(m));
                    }
                    Err(MoneyError::OutOfRange { .. }) => prop_assert!(!fits(c)),
                    Err(other) => prop_assert!(false, "{c}: {other}"),
                }
            }

            #[test]
            fn printed_amounts_parse_back_and_nothing_else_overflows(c in cents(), frac in 0u8..100) {
                let whole = c / 100;
                let text = format!("{whole}.{frac:02}");
                let frac = i128::from(frac);
                let exact = whole.checked_mul(100).and_then(|w| {
                    if text.starts_with('-') { w.checked_sub(frac) } else { w.checked_add(frac) }
                });
                match (text.parse::<Money>(), exact) {
                    (Ok(m), Some(exact)) => prop_assert_eq!(i128::from(m.cents()), exact),
                    (Err(_), Some(exact)) => prop_assert!(!fits(exact), "{text} refused"),
                    (Err(_), None) => {}
                    (Ok(m), None) => prop_assert!(false, "{text} parsed as {m}"),
                }
            }

            #[test]
            fn sums_are_exact_or_refused(a in cents(), b in cents()) {
                let (Ok(x), Ok(y)) = (Money::try_from_cents(a), Money::try_from_cents(b)) else {
                    return Ok(());
                };
                match x.checked_add(y) {
                    Some(sum) => prop_assert_eq!(i128::from(sum.cents()), a + b),
                    None => prop_assert!(!fits(a + b)),
                }
            }

            #[test]
            fn a_fold_never_wraps(amounts in proptest::collection::vec(cents(), 0..40)) {
                let amounts: Vec<Money> = amounts.into_iter().filter_map(|c| Money::try_from_cents(c).ok()).collect();
                let folded = amounts.iter().try_fold(Money::ZERO, |acc, m| acc.checked_add(*m));
                let mut exact = 0i128;
                let mut left = false;
                for m in &amounts {
                    exact += i128::from(m.cents());
                    left |= !fits(exact);
                }
                match folded {
                    Some(total) => {
                        prop_assert!(!left);
                        prop_assert_eq!(i128::from(total.cents()), exact);
                    }
                    None => prop_assert!(left),
                }
            }

            #[test]
            fn decimals_of_any_scale_convert_exactly(value in cents(), scale in -6i8..=24) {
                let exact: Option<i128> = if scale <= 2 {
                    10i128.checked_pow(u32::from((2 - scale).unsigned_abs())).and_then(|f| value.checked_mul(f))
                } else {
                    let f = 10i128.checked_pow(u32::from((scale - 2).unsigned_abs()));
                    match f {
                        Some(f) if value % f != 0 => {
                            let precise = matches!(Money::from_unscaled(value, scale), Err(MoneyError::TooPrecise { .. }));
                            prop_assert!(precise, "{value}e-{scale} was not refused as too precise");
                            return Ok(());
                        }
                        Some(f) => Some(value / f),
                        None => None,
                    }
                };
                match (Money::from_unscaled(value, scale), exact) {
                    (Ok(m), Some(c)) => prop_assert_eq!(i128::from(m.cents()), c),
                    (Err(MoneyError::OutOfRange { .. }), Some(c)) => prop_assert!(!fits(c)),
                    (Err(MoneyError::OutOfRange { .. }), None) => {}
                    (got, want) => prop_assert!(false, "{value}e-{scale}: {got:?}, exact {want:?}"),
                }
            }
        }
    }
}
