//! Request bodies: `billing_http::json_body` on a `lambda_http::Request`
//! built from the fuzzer's bytes, into the shapes of every request struct of
//! the API (copied here: the originals are private to their handlers), plus
//! `idempotency_key` on an arbitrary header value.
//!
//! Never panics. An accepted body is a JSON object of at most
//! `MAX_BODY_BYTES` with no field outside the struct, and each amount is
//! exactly the literal text sent (two places at most).
#![no_main]

use billing_http::{MAX_BODY_BYTES, idempotency_key, json_body};
use billing_money::{Usd, parse_usd_literal};
use lambda_http::http::HeaderValue;
use lambda_http::{Body, Request};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;

/// `functions/admin-credits`: `POST /api/billing/admin/credits/{userId}`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ChangeBody {
    amount: Usd,
    reason: String,
}

/// `functions/admin-refunds`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RefundBody {
    #[serde(rename = "orderId")]
    order_id: String,
    amount: Option<Usd>,
    reason: String,
    #[serde(default)]
    force: bool,
}

/// `functions/admin-deliveries`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ResolveBody {
    delivered: bool,
    reason: String,
}

/// `shared/http/src/checkout.rs`: the two `.../add` routes.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct OrderBody {
    amount: Usd,
}

/// `shared/http/src/checkout.rs`: the two `.../capture` routes.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct CaptureBody {
    #[serde(rename = "orderId")]
    order_id: String,
}

const CONTENT_TYPES: [Option<&str>; 4] = [
    None,
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("text/plain"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    // Optional Idempotency-Key: the bytes up to the first 0xff, if any.
    let (key, body) = match rest.iter().position(|&b| b == 0xff) {
        Some(at) if selector & 0x40 != 0 => (Some(&rest[..at]), &rest[at + 1..]),
        _ => (None, rest),
    };
    let mut req = Request::new(Body::from(body.to_vec()));
    if let Some(content_type) = CONTENT_TYPES[usize::from(selector >> 4) & 3] {
        req.headers_mut()
            .insert("content-type", HeaderValue::from_static(content_type));
    }
    if let Some(key) = key
        && let Ok(value) = HeaderValue::from_bytes(key)
    {
        req.headers_mut().insert("idempotency-key", value);
    }
    if let Ok(Some(key)) = idempotency_key(&req) {
        assert!(!key.is_empty() && key.len() <= 255);
        assert!(key.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{key:?}");
    }

    match (selector & 0x0f) % 5 {
        0 => {
            if let Ok(b) = json_body::<ChangeBody>(&req) {
                let fields = accepted_object(body, &["amount", "reason"]);
                check_amount(&fields, Some(b.amount));
            }
        }
        1 => {
            if let Ok(b) = json_body::<RefundBody>(&req) {
                let fields = accepted_object(body, &["orderId", "amount", "reason", "force"]);
                check_amount(&fields, b.amount);
            }
        }
        2 => {
            if json_body::<ResolveBody>(&req).is_ok() {
                accepted_object(body, &["delivered", "reason"]);
            }
        }
        3 => {
            if let Ok(b) = json_body::<OrderBody>(&req) {
                let fields = accepted_object(body, &["amount"]);
                check_amount(&fields, Some(b.amount));
            }
        }
        _ => {
            if json_body::<CaptureBody>(&req).is_ok() {
                accepted_object(body, &["orderId"]);
            }
        }
    }
});

/// An accepted body: small, a JSON object, no field outside `allowed`, no
/// field twice. Returns its fields as raw JSON text.
fn accepted_object<'a>(body: &'a [u8], allowed: &[&str]) -> HashMap<String, &'a RawValue> {
    assert!(body.len() <= MAX_BODY_BYTES);
    let fields: HashMap<String, &RawValue> = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("accepted body is not a JSON object ({e}): {body:?}"));
    for name in fields.keys() {
        assert!(
            allowed.contains(&name.as_str()),
            "unknown field {name:?} accepted"
        );
    }
    fields
}

/// The amount read is exactly the literal sent: a number or a numeric string.
fn check_amount(fields: &HashMap<String, &RawValue>, amount: Option<Usd>) {
    let raw = fields.get("amount").map(|r| r.get());
    match (raw, amount) {
        (Some(raw), Some(amount)) => {
            let literal = raw
                .strip_prefix('"')
                .and_then(|r| r.strip_suffix('"'))
                .unwrap_or(raw);
            assert_eq!(parse_usd_literal(literal), Ok(amount), "{raw:?}");
            let shown = amount.to_string();
            assert_eq!(shown.split_once('.').map(|(_, f)| f.len()), Some(2));
        }
        (None | Some("null"), None) => {}
        (raw, amount) => panic!("amount {amount:?} read from {raw:?}"),
    }
}
