//! Money for the billing API: exact USD amounts and integer VirtFusion tokens.
//!
//! Amounts never pass through a float. Text is parsed digit by digit into a
//! [`rust_decimal::Decimal`] with exactly two places; JSON numbers are read as
//! their literal text (`serde_json::value::RawValue`), never as `f64`.

mod parse;
mod token_balance;
mod tokens;

pub use parse::parse_usd_literal;
pub use token_balance::TokenBalance;
pub use tokens::{TOKENS_PER_USD, Tokens};

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Decimal places of every USD amount.
pub const USD_SCALE: u32 = 2;

/// Largest magnitude the system ever handles (any amount, balance or sum):
/// far above any real balance, far below `Decimal`'s limits.
pub const MAX_ABS_USD_CENTS: i64 = 100_000_000_000_000; // $1e12 in cents

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount must be a decimal number such as 12.50")]
    Syntax,
    #[error("amount must have at most two decimal places")]
    TooManyPlaces,
    #[error("amount is out of range")]
    OutOfRange,
    #[error("amount must be between {min} and {max}")]
    NotInRange { min: Usd, max: Usd },
    #[error("token amount must be a whole number")]
    FractionalTokens,
}

/// A signed USD amount with exactly two decimal places.
///
/// Built only through parsing or cent arithmetic, so any value held is exact
/// and within [`MAX_ABS_USD_CENTS`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Usd(Decimal);

impl Usd {
    pub const ZERO: Usd = Usd(Decimal::from_parts(0, 0, 0, false, USD_SCALE));

    /// `cents / 100` dollars.
    pub fn from_cents(cents: i64) -> Result<Usd, MoneyError> {
        if cents.checked_abs().is_none_or(|c| c > MAX_ABS_USD_CENTS) {
            return Err(MoneyError::OutOfRange);
        }
        Ok(Usd(Decimal::new(cents, USD_SCALE)))
    }

    /// Accepts a decimal with at most two places (more is an error, never rounded).
    pub fn from_decimal(value: Decimal) -> Result<Usd, MoneyError> {
        let normalized = value.normalize();
        if normalized.scale() > USD_SCALE {
            return Err(MoneyError::TooManyPlaces);
        }
        let mut exact = normalized;
        exact.rescale(USD_SCALE);
        let cents = exact.mantissa();
        let cents = i64::try_from(cents).map_err(|_| MoneyError::OutOfRange)?;
        Usd::from_cents(cents)
    }

    pub fn as_decimal(self) -> Decimal {
        self.0
    }

    pub fn cents(self) -> i64 {
        // Scale is always 2 and magnitude is bounded, so the mantissa is the cent count.
        self.0.mantissa() as i64
    }

    pub fn is_negative(self) -> bool {
        self.0.is_sign_negative() && !self.0.is_zero()
    }

    pub fn is_positive(self) -> bool {
        self.0.is_sign_positive() && !self.0.is_zero()
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    pub fn checked_add(self, other: Usd) -> Result<Usd, MoneyError> {
        let sum = self
            .cents()
            .checked_add(other.cents())
            .ok_or(MoneyError::OutOfRange)?;
        Usd::from_cents(sum)
    }

    pub fn checked_sub(self, other: Usd) -> Result<Usd, MoneyError> {
        self.checked_add(-other)
    }

    pub fn abs(self) -> Usd {
        Usd(self.0.abs())
    }

    /// Tokens this amount buys (100 per dollar); exact because amounts have two places.
    pub fn to_tokens(self) -> Tokens {
        Tokens::new(self.cents())
    }

    /// `"$12.50"`, `"$1,250.00"`, `"-$3.00"`.
    pub fn formatted(self) -> String {
        let cents = self.cents();
        let sign = if cents < 0 { "-" } else { "" };
        let abs = cents.unsigned_abs();
        format!("{sign}${}.{:02}", group_thousands(abs / 100), abs % 100)
    }

    /// Checks `min <= self <= max`.
    pub fn ensure_within(self, min: Usd, max: Usd) -> Result<Usd, MoneyError> {
        if self < min || self > max {
            return Err(MoneyError::NotInRange { min, max });
        }
        Ok(self)
    }
}

impl std::ops::Neg for Usd {
    type Output = Usd;
    fn neg(self) -> Usd {
        if self.0.is_zero() {
            Usd::ZERO
        } else {
            Usd(-self.0)
        }
    }
}

/// `"12.50"`: the wire and storage form (a DynamoDB `N` takes it as is).
impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cents = self.cents();
        let sign = if cents < 0 { "-" } else { "" };
        let abs = cents.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl fmt::Debug for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Usd({self})")
    }
}

/// Strict parse of a decimal literal (see [`parse_usd_literal`]).
impl FromStr for Usd {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Usd, MoneyError> {
        parse_usd_literal(s)
    }
}

impl Serialize for Usd {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Reads a JSON number *or* a decimal string as its literal text, so
/// `10.1` never becomes `10.0999…`. Only works with `serde_json`.
impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Usd, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        Usd::from_json_literal(raw.get()).map_err(serde::de::Error::custom)
    }
}

impl Usd {
    /// Parses the literal text of a JSON value: a number (`10`, `10.5`) or a
    /// string holding one (`"10.50"`). Exponents, NaN, Infinity, `-0`, more
    /// than two places and anything else are refused.
    pub fn from_json_literal(json: &str) -> Result<Usd, MoneyError> {
        let json = json.trim();
        let inner = match json.strip_prefix('"') {
            Some(rest) => rest.strip_suffix('"').ok_or(MoneyError::Syntax)?,
            None => json,
        };
        parse_usd_literal(inner)
    }
}

pub(crate) fn group_thousands(mut value: u64) -> String {
    let mut groups = Vec::new();
    loop {
        let group = value % 1000;
        value /= 1000;
        if value == 0 {
            groups.push(group.to_string());
            break;
        }
        groups.push(format!("{group:03}"));
    }
    groups.reverse();
    groups.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> Usd {
        s.parse().unwrap()
    }

    #[test]
    fn displays_two_places() {
        assert_eq!(usd("12.5").to_string(), "12.50");
        assert_eq!(usd("0").to_string(), "0.00");
        assert_eq!((-usd("3")).to_string(), "-3.00");
    }

    #[test]
    fn formats_dollars_with_grouping() {
        assert_eq!(usd("12.5").formatted(), "$12.50");
        assert_eq!(usd("1250").formatted(), "$1,250.00");
        assert_eq!(usd("1234567.89").formatted(), "$1,234,567.89");
        assert_eq!((-usd("3")).formatted(), "-$3.00");
    }

    #[test]
    fn json_numbers_are_read_exactly() {
        #[derive(serde::Deserialize)]
        struct Body {
            amount: Usd,
        }
        let body: Body = serde_json::from_str(r#"{"amount": 10.1}"#).unwrap();
        assert_eq!(body.amount.cents(), 1010);
        let body: Body = serde_json::from_str(r#"{"amount": "0.07"}"#).unwrap();
        assert_eq!(body.amount.cents(), 7);
        for bad in [
            r#"{"amount": 1e3}"#,
            r#"{"amount": 10.001}"#,
            r#"{"amount": "NaN"}"#,
            r#"{"amount": "Infinity"}"#,
            r#"{"amount": null}"#,
            r#"{"amount": true}"#,
            r#"{"amount": [1]}"#,
            r#"{"amount": "-0"}"#,
            r#"{"amount": -0.0}"#,
            r#"{"amount": " 5"}"#,
        ] {
            assert!(serde_json::from_str::<Body>(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn serializes_as_string() {
        assert_eq!(serde_json::to_string(&usd("7.5")).unwrap(), r#""7.50""#);
    }

    #[test]
    fn from_decimal_refuses_rounding() {
        assert_eq!(
            Usd::from_decimal(Decimal::new(1001, 3)),
            Err(MoneyError::TooManyPlaces)
        );
        assert_eq!(Usd::from_decimal(Decimal::new(1000, 3)).unwrap(), usd("1"));
    }

    #[test]
    fn range_check_is_inclusive() {
        let (min, max) = (usd("1"), usd("1000"));
        assert!(usd("1").ensure_within(min, max).is_ok());
        assert!(usd("1000").ensure_within(min, max).is_ok());
        assert!(usd("0.99").ensure_within(min, max).is_err());
        assert!(usd("1000.01").ensure_within(min, max).is_err());
    }

    #[test]
    fn tokens_from_usd() {
        assert_eq!(usd("10").to_tokens().get(), 1000);
        assert_eq!(usd("0.01").to_tokens().get(), 1);
    }
}
