use crate::{MoneyError, Usd};

/// Most integer digits accepted before the amount is simply out of range;
/// bounds the work done on hostile input.
const MAX_INTEGER_DIGITS: usize = 13;

/// Strict decimal literal: `-?(0|[1-9][0-9]*)(\.[0-9]{1,2})?`.
///
/// Refused: exponents, `NaN`/`Infinity`, leading `+`, leading zeros, a bare
/// or trailing `.`, whitespace, more than two places, and `-0` in any spelling
/// (a sign on zero is a trick, not an amount).
pub fn parse_usd_literal(text: &str) -> Result<Usd, MoneyError> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (integer, fraction) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    if integer.is_empty() || !integer.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MoneyError::Syntax);
    }
    if integer.len() > 1 && integer.starts_with('0') {
        return Err(MoneyError::Syntax);
    }
    let fraction = fraction.unwrap_or("");
    if body.contains('.') && fraction.is_empty() {
        return Err(MoneyError::Syntax);
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MoneyError::Syntax);
    }
    if fraction.len() > 2 {
        return Err(MoneyError::TooManyPlaces);
    }
    if integer.len() > MAX_INTEGER_DIGITS {
        return Err(MoneyError::OutOfRange);
    }
    let mut cents: i64 = 0;
    for digit in integer.bytes().chain(fraction.bytes()) {
        cents = cents * 10 + i64::from(digit - b'0');
    }
    for _ in fraction.len()..2 {
        cents *= 10;
    }
    if negative {
        if cents == 0 {
            return Err(MoneyError::Syntax);
        }
        cents = -cents;
    }
    Usd::from_cents(cents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_plain_amounts() {
        for (text, cents) in [
            ("0", 0),
            ("1", 100),
            ("10.5", 1050),
            ("10.05", 1005),
            ("0.01", 1),
            ("-3.25", -325),
            ("1000", 100_000),
        ] {
            assert_eq!(parse_usd_literal(text).unwrap().cents(), cents, "{text}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        for text in [
            "",
            "-",
            ".",
            "1.",
            ".5",
            "+1",
            "01",
            "00.5",
            "1e3",
            "1E3",
            "1.0e1",
            "NaN",
            "nan",
            "Infinity",
            "-Infinity",
            "inf",
            " 1",
            "1 ",
            "1,000",
            "$1",
            "0x10",
            "1.2.3",
            "-0",
            "-0.00",
            "-0.0",
            "١",
            "1_000",
        ] {
            assert!(parse_usd_literal(text).is_err(), "{text:?} accepted");
        }
        assert_eq!(parse_usd_literal("1.001"), Err(MoneyError::TooManyPlaces));
        assert_eq!(
            parse_usd_literal("99999999999999999999999999999999"),
            Err(MoneyError::OutOfRange)
        );
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(cents in -100_000_000_000i64..100_000_000_000i64) {
            let usd = Usd::from_cents(cents).unwrap();
            prop_assert_eq!(parse_usd_literal(&usd.to_string()).unwrap(), usd);
            prop_assert_eq!(Usd::from_json_literal(&serde_json::to_string(&usd).unwrap()).unwrap(), usd);
        }

        #[test]
        fn three_places_always_refused(cents in 0i64..10_000_000, extra in 1u8..10) {
            let text = format!("{}.{:02}{}", cents / 100, cents % 100, extra);
            prop_assert_eq!(parse_usd_literal(&text), Err(MoneyError::TooManyPlaces));
        }

        #[test]
        fn exponents_always_refused(mantissa in 0u32..100_000, exp in -5i32..5) {
            let is_err = parse_usd_literal(&format!("{mantissa}e{exp}")).is_err();
            prop_assert!(is_err);
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,40}") {
            let _ = parse_usd_literal(&text);
            let _ = Usd::from_json_literal(&text);
        }

        #[test]
        fn addition_is_exact(a in -1_000_000_000i64..1_000_000_000, b in -1_000_000_000i64..1_000_000_000) {
            let sum = Usd::from_cents(a).unwrap().checked_add(Usd::from_cents(b).unwrap()).unwrap();
            prop_assert_eq!(sum.cents(), a + b);
        }
    }
}
