use super::shapes::{money, now, parse_cents, paypal_id, rfc3339, rfc3339_millis};
use super::signing;
use super::webhooks::fresh;

#[test]
fn the_signed_string_ends_with_zlibs_crc32_in_decimal() {
    // zlib.crc32(b"123456789") == 0xCBF43926 == 3421780262
    assert_eq!(
        signing::message("WH-1", "2025-11-25T12:00:00Z", "WEBHOOK", b"123456789"),
        "WH-1|2025-11-25T12:00:00Z|WEBHOOK|3421780262"
    );
    assert!(signing::message("a", "b", "c", b"").ends_with("|0"));
}

#[test]
fn amounts_are_parsed_exactly() {
    assert_eq!(parse_cents("10"), Some(1000));
    assert_eq!(parse_cents("10.5"), Some(1050));
    assert_eq!(parse_cents("0.01"), Some(1));
    for bad in [
        "",
        "0",
        "0.00",
        "-1",
        "1.",
        ".5",
        "01",
        "1.001",
        "1e3",
        "abc",
        "99999999999",
    ] {
        assert_eq!(parse_cents(bad), None, "{bad}");
    }
    assert_eq!(money(1050), "10.50");
    assert_eq!(money(-5), "-0.05");
}

#[test]
fn ids_look_like_paypal_ids() {
    let id = paypal_id();
    assert_eq!(id.len(), 17);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    );
    assert_ne!(paypal_id(), paypal_id());
}

#[test]
fn times_are_rfc3339_seconds() {
    let at = time::macros::datetime!(2025-11-25 12:00:00.5 UTC);
    assert_eq!(rfc3339(at), "2025-11-25T12:00:00Z");
    assert_eq!(rfc3339_millis(at), "2025-11-25T12:00:00.500Z");
    assert!(fresh(&now()));
    assert!(!fresh("2020-01-01T00:00:00Z"));
    assert!(!fresh("yesterday"));
}
