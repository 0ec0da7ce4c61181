//! Money parsing: `parse_usd_literal`, `Usd::from_json_literal` (and the
//! serde path through it), `Tokens::parse_lenient`.
//!
//! Never panics; whatever is accepted has at most two places, lies within
//! `MAX_ABS_USD_CENTS`, and round-trips through `Display` exactly: the
//! displayed text is the input padded to two places, and parses back to the
//! same value.
#![no_main]

use billing_money::{MAX_ABS_USD_CENTS, MoneyError, Tokens, Usd, parse_usd_literal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_literal(text);
    check_json_literal(text);
    check_tokens(text);
});

/// `text` padded to exactly two places (`"7"` → `"7.00"`, `"7.5"` → `"7.50"`).
fn padded(text: &str) -> String {
    match text.split_once('.') {
        None => format!("{text}.00"),
        Some((_, fraction)) if fraction.len() == 1 => format!("{text}0"),
        Some(_) => text.to_owned(),
    }
}

/// What every accepted amount must satisfy.
fn check_usd(usd: Usd, source: &str) {
    let shown = usd.to_string();
    let (_, places) = shown.split_once('.').expect("Display has a point");
    assert_eq!(places.len(), 2, "{source:?} displayed as {shown:?}");
    assert!(usd.cents().unsigned_abs() <= MAX_ABS_USD_CENTS as u64);
    assert_eq!(
        parse_usd_literal(&shown),
        Ok(usd),
        "{shown:?} does not parse back"
    );
    assert_eq!(usd.as_decimal().scale(), 2);
    assert_eq!(Usd::from_cents(usd.cents()), Ok(usd));
    assert_eq!(usd.to_tokens().get(), usd.cents());
    // Serialized form is the quoted Display text and reads back the same.
    let json = serde_json::to_string(&usd).expect("serializes");
    assert_eq!(json, format!("\"{shown}\""));
    assert_eq!(serde_json::from_str::<Usd>(&json).ok(), Some(usd));
    let _ = usd.formatted();
}

fn check_literal(text: &str) {
    match parse_usd_literal(text) {
        Ok(usd) => {
            check_usd(usd, text);
            assert_eq!(usd.to_string(), padded(text), "{text:?} not canonical");
            if usd.is_zero() {
                assert!(!text.starts_with('-'), "signed zero {text:?} accepted");
            }
        }
        Err(MoneyError::Syntax | MoneyError::TooManyPlaces | MoneyError::OutOfRange) => {}
        Err(other) => panic!("{text:?}: unexpected error {other:?}"),
    }
}

fn check_json_literal(text: &str) {
    let direct = Usd::from_json_literal(text);
    if let Ok(usd) = direct {
        check_usd(usd, text);
        let trimmed = text.trim();
        let inner = trimmed
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(trimmed);
        assert_eq!(usd.to_string(), padded(inner), "{text:?} not canonical");
        assert_eq!(parse_usd_literal(inner), Ok(usd));
    }
    // Through serde: a JSON value read as its literal text, never a float.
    if let Ok(usd) = serde_json::from_str::<Usd>(text) {
        check_usd(usd, text);
        assert_eq!(
            direct,
            Ok(usd),
            "serde and from_json_literal disagree on {text:?}"
        );
    }
}

fn check_tokens(text: &str) {
    let Ok(tokens) = Tokens::parse_lenient(text) else {
        return;
    };
    let shown = tokens.to_string();
    assert_eq!(Tokens::parse_lenient(&shown), Ok(tokens), "{shown:?}");
    // The integer part of the input, exactly (a fraction must be all zeros).
    let inner = text.trim().trim_matches('"').trim();
    let integer = inner.split_once('.').map_or(inner, |(i, _)| i);
    assert_eq!(integer.parse::<i64>().ok(), Some(tokens.get()), "{text:?}");
    match tokens.to_usd() {
        Ok(usd) => assert_eq!(usd.cents(), tokens.get()),
        Err(e) => assert_eq!(e, MoneyError::OutOfRange),
    }
    let _ = tokens.formatted();
}
