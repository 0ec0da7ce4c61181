//! PayPal webhook deliveries: `paypal::WebhookHeaders::from_lookup` on
//! arbitrary header values and `paypal::parse_webhook_event` on an arbitrary
//! body (the verification itself is PayPal's API call; what it is given, the
//! headers and the raw body, is what is fuzzed here).
//!
//! Never panics. Accepted headers are trimmed, non-empty and bounded; an
//! accepted event has an id and an event type, and any amount it carries is
//! positive with at most two places.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paypal::{WebhookHeaders, WebhookResource, parse_webhook_event};

const NAMES: [&str; 5] = [
    "paypal-auth-algo",
    "paypal-cert-url",
    "paypal-transmission-id",
    "paypal-transmission-sig",
    "paypal-transmission-time",
];

fuzz_target!(|data: &[u8]| {
    // Layout: five header values separated by 0x00, then the body.
    let mut parts = data.splitn(6, |&b| b == 0);
    let values: Vec<Option<&str>> = (0..5)
        .map(|_| parts.next().and_then(|v| std::str::from_utf8(v).ok()))
        .collect();
    let body = parts.next().unwrap_or(data);

    let lookup = |name: &str| {
        let at = NAMES.iter().position(|n| *n == name)?;
        values[at]
    };
    if let Ok(headers) = WebhookHeaders::from_lookup(lookup) {
        for (value, raw) in [
            &headers.auth_algo,
            &headers.cert_url,
            &headers.transmission_id,
            &headers.transmission_sig,
            &headers.transmission_time,
        ]
        .into_iter()
        .zip(&values)
        {
            assert!(!value.is_empty() && value.len() <= 2048);
            assert_eq!(Some(value.as_str()), raw.map(str::trim));
        }
    }

    for raw in [body, data] {
        let Ok(event) = parse_webhook_event(raw) else {
            continue;
        };
        assert!(!event.id.is_empty() && !event.event_type.is_empty());
        let amount = match &event.resource {
            WebhookResource::Capture(c) => {
                assert!(!c.id.is_empty());
                Some((c.amount, &c.currency))
            }
            WebhookResource::Refund(r) => {
                assert!(!r.id.is_empty());
                if let Some(capture) = &r.capture_id {
                    assert!(!capture.is_empty() && !capture.contains('/'));
                }
                Some((r.amount, &r.currency))
            }
            WebhookResource::Order(o) => {
                assert!(!o.id.is_empty());
                for c in &o.captures {
                    assert!(c.amount.is_positive());
                }
                None
            }
            WebhookResource::Other => None,
        };
        if let Some((amount, currency)) = amount {
            assert!(amount.is_positive(), "{amount:?}");
            assert_eq!(amount.as_decimal().scale(), 2);
            assert!(currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()));
        }
    }
});
