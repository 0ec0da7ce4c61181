//! A VirtFusion token *balance* as VirtFusion reports it. Purchases and
//! refunds move whole [`Tokens`], but VirtFusion bills servers by the hour and
//! reports balances with fractions (`"1250.57"`; SkyPANEL parses them as
//! floats and shows decimals). The balance is kept exact, as a decimal read
//! from its literal text, never through a float.

use crate::{MoneyError, Tokens, group_thousands};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use std::fmt;
use std::str::FromStr;

/// Most fraction digits accepted (VirtFusion shows at most a few).
const MAX_PLACES: usize = 12;
/// Most integer digits accepted (far above any real balance).
const MAX_INTEGER_DIGITS: usize = 15;

/// An exact, possibly fractional, signed token balance.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TokenBalance(Decimal);

impl TokenBalance {
    pub const ZERO: TokenBalance = TokenBalance(Decimal::ZERO);

    /// A JSON number or numeric string (`1250`, `"1250"`, `1250.5`,
    /// `"1250.50"`, `-3.25`): plain decimal syntax only (no exponent, NaN,
    /// Infinity, spaces inside, or more than 12 places).
    pub fn parse_lenient(text: &str) -> Result<TokenBalance, MoneyError> {
        let text = text.trim();
        let text = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            Some(inner) => inner.trim(),
            None => text,
        };
        let unsigned = text.strip_prefix('-').unwrap_or(text);
        let (integer, fraction) = match unsigned.split_once('.') {
            Some((integer, fraction)) if !fraction.is_empty() => (integer, fraction),
            Some(_) => return Err(MoneyError::Syntax),
            None => (unsigned, ""),
        };
        let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if integer.is_empty()
            || integer.len() > MAX_INTEGER_DIGITS
            || fraction.len() > MAX_PLACES
            || !digits(integer)
            || !digits(fraction)
        {
            return Err(MoneyError::Syntax);
        }
        Decimal::from_str(text)
            .map(|d| TokenBalance(d.normalize()))
            .map_err(|_| MoneyError::Syntax)
    }

    pub fn from_tokens(tokens: Tokens) -> TokenBalance {
        TokenBalance(Decimal::from(tokens.get()))
    }

    /// The whole tokens in the balance (rounded down: a fraction of a token
    /// cannot be spent whole).
    pub fn whole(self) -> Tokens {
        // Integral after floor(): an exact integer conversion, no float.
        Tokens::new(self.0.floor().to_i64().unwrap_or(0))
    }

    pub fn is_whole(self) -> bool {
        self.0.fract().is_zero()
    }

    /// The exact value as decimal text, without trailing zeros: `"1250"`, `"1250.5"`.
    pub fn exact(self) -> String {
        self.0.normalize().to_string()
    }

    /// `"1,250 Tokens"`, `"1,250.5 Tokens"`, `"1 Token"`.
    pub fn formatted(self) -> String {
        let value = self.0.normalize();
        let sign = if value.is_sign_negative() && !value.is_zero() {
            "-"
        } else {
            ""
        };
        let abs = value.abs();
        let int_u64 = abs.trunc().to_u64().unwrap_or(0);
        let fraction = abs.fract().normalize().to_string();
        let fraction = fraction.strip_prefix('0').unwrap_or("");
        let unit = if abs == Decimal::ONE {
            "Token"
        } else {
            "Tokens"
        };
        format!("{sign}{}{fraction} {unit}", group_thousands(int_u64))
    }
}

impl fmt::Display for TokenBalance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.exact())
    }
}

impl fmt::Debug for TokenBalance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenBalance({})", self.exact())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(text: &str) -> TokenBalance {
        TokenBalance::parse_lenient(text).unwrap()
    }

    #[test]
    fn whole_and_fractional_balances_are_exact() {
        assert_eq!(b("1250").exact(), "1250");
        assert_eq!(b("\"1250.00\"").exact(), "1250");
        assert_eq!(b("1250.50").exact(), "1250.5");
        assert_eq!(b("0.1").exact(), "0.1");
        // 0.1 + 0.2 is exact here (a float would say 0.30000000000000004).
        assert_eq!(TokenBalance(b("0.1").0 + b("0.2").0).exact(), "0.3");
        assert_eq!(b("-3.25").exact(), "-3.25");
        assert_eq!(b("1234567.891").formatted(), "1,234,567.891 Tokens");
        assert_eq!(b("1").formatted(), "1 Token");
        assert_eq!(b("0").formatted(), "0 Tokens");
        assert_eq!(b("-0.5").formatted(), "-0.5 Tokens");
        assert_eq!(b("1250.5").whole(), Tokens::new(1250));
        assert_eq!(b("-0.5").whole(), Tokens::new(-1));
        assert_eq!(b("7").whole(), Tokens::new(7));
        assert!(b("7.000").is_whole());
        assert!(!b("7.001").is_whole());
    }

    #[test]
    fn odd_literals_are_refused() {
        for bad in [
            "",
            "\"\"",
            "abc",
            "1e3",
            "1E3",
            "NaN",
            "Infinity",
            "1.",
            ".5",
            "1 2",
            "+1",
            "--1",
            "1.0000000000001",
            "null",
            "true",
            "1234567890123456",
        ] {
            assert!(TokenBalance::parse_lenient(bad).is_err(), "{bad}");
        }
    }
}
