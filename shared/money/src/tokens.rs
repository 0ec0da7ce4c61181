use crate::{MoneyError, Usd, group_thousands};
use serde::{Deserialize, Serialize};
use std::fmt;

/// VirtFusion tokens per US dollar.
pub const TOKENS_PER_USD: i64 = 100;

/// A whole number of VirtFusion tokens (signed: a refund takes tokens back).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tokens(i64);

impl Tokens {
    pub const fn new(count: i64) -> Tokens {
        Tokens(count)
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    /// The dollar value (exact: one token is one cent).
    pub fn to_usd(self) -> Result<Usd, MoneyError> {
        Usd::from_cents(self.0)
    }

    /// `"1,250 Tokens"`.
    pub fn formatted(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let unit = if self.0.unsigned_abs() == 1 {
            "Token"
        } else {
            "Tokens"
        };
        format!("{sign}{} {unit}", group_thousands(self.0.unsigned_abs()))
    }

    /// VirtFusion reports balances as numbers or numeric strings (`"1250"`,
    /// `"1250.00"`). Whole values only; a real fraction is an error.
    pub fn parse_lenient(text: &str) -> Result<Tokens, MoneyError> {
        let text = text.trim().trim_matches('"').trim();
        let (integer, fraction) = text.split_once('.').unwrap_or((text, ""));
        if !fraction.bytes().all(|b| b == b'0') {
            return if fraction.bytes().all(|b| b.is_ascii_digit()) {
                Err(MoneyError::FractionalTokens)
            } else {
                Err(MoneyError::Syntax)
            };
        }
        let digits = integer.strip_prefix('-').unwrap_or(integer);
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MoneyError::Syntax);
        }
        integer
            .parse::<i64>()
            .map(Tokens)
            .map_err(|_| MoneyError::Syntax)
    }
}

impl fmt::Display for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tokens({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_grouping() {
        assert_eq!(Tokens::new(1250).formatted(), "1,250 Tokens");
        assert_eq!(Tokens::new(0).formatted(), "0 Tokens");
        assert_eq!(Tokens::new(1).formatted(), "1 Token");
        assert_eq!(Tokens::new(1_000_000).formatted(), "1,000,000 Tokens");
    }

    #[test]
    fn parses_virtfusion_balances_leniently() {
        assert_eq!(Tokens::parse_lenient("1250").unwrap().get(), 1250);
        assert_eq!(Tokens::parse_lenient("\"1250\"").unwrap().get(), 1250);
        assert_eq!(Tokens::parse_lenient("1250.00").unwrap().get(), 1250);
        assert_eq!(Tokens::parse_lenient("-5").unwrap().get(), -5);
        assert_eq!(
            Tokens::parse_lenient("12.5"),
            Err(MoneyError::FractionalTokens)
        );
        assert!(Tokens::parse_lenient("abc").is_err());
        assert!(Tokens::parse_lenient("1e3").is_err());
        assert!(Tokens::parse_lenient("").is_err());
    }

    #[test]
    fn one_token_is_one_cent() {
        assert_eq!(Tokens::new(1250).to_usd().unwrap().to_string(), "12.50");
    }
}
