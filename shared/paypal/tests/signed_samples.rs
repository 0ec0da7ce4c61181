//! PayPal's own signed webhook deliveries (tests/fixtures/paypal/signed: webhook
//! simulator events with their headers and PayPal's certificate) verify offline on
//! their exact bytes, and every tampered copy is refused. The certificate expired on
//! 2025-03-07, so the signature is checked apart from the validity window, and the
//! whole path with a clock set to the delivery's time.

use paypal::signature::{self, SignatureError};
use paypal::{SigningCertificate, WebhookHeaders, WebhookVerifier};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/paypal/signed")
}

struct Sample {
    name: String,
    body: Vec<u8>,
    headers: WebhookHeaders,
    crc32: u32,
}

struct Samples {
    webhook_id: String,
    cert_url: String,
    cert: SigningCertificate,
    deliveries: Vec<Sample>,
}

fn samples() -> Samples {
    let signing: Value =
        serde_json::from_slice(&std::fs::read(dir().join("signing.json")).unwrap()).unwrap();
    let cert = SigningCertificate::from_pem(signing["cert_pem"].as_str().unwrap().as_bytes())
        .expect("PayPal's certificate parses");
    let deliveries = signing["deliveries"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, d)| {
            let body = std::fs::read(dir().join(d["body_file"].as_str().unwrap())).unwrap();
            assert_eq!(
                body.len() as u64,
                d["body_bytes"].as_u64().unwrap(),
                "{name}"
            );
            let h = &d["headers"];
            let headers = WebhookHeaders::from_lookup(|n| h[n].as_str()).unwrap();
            Sample {
                name: name.clone(),
                body,
                headers,
                crc32: d["crc32"].as_u64().unwrap() as u32,
            }
        })
        .collect::<Vec<_>>();
    assert_eq!(deliveries.len(), 3);
    Samples {
        webhook_id: signing["webhook_id"].as_str().unwrap().to_owned(),
        cert_url: signing["cert_url"].as_str().unwrap().to_owned(),
        cert,
        deliveries,
    }
}

fn at(text: &str) -> SystemTime {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap();
    SystemTime::from(t)
}

#[test]
fn paypals_samples_verify_on_their_exact_bytes() {
    let s = samples();
    for d in &s.deliveries {
        assert_eq!(signature::body_crc32(&d.body), d.crc32, "{}", d.name);
        signature::check_signature(&d.headers, &s.webhook_id, &d.body, &s.cert)
            .unwrap_or_else(|e| panic!("{}: {e}", d.name));
        // Within the certificate's window, the full offline check passes.
        let when = at(&d.headers.transmission_time) + Duration::from_secs(60);
        signature::verify_offline(&d.headers, &s.webhook_id, &d.body, &s.cert, when)
            .unwrap_or_else(|e| panic!("{}: {e}", d.name));
    }
}

#[test]
fn the_expired_certificate_fails_the_validity_window_only() {
    let s = samples();
    assert_eq!(s.cert.not_after(), at("2025-03-07T23:59:59Z"));
    let d = &s.deliveries[0];
    for when in [
        at("2025-03-08T00:00:00Z"),
        SystemTime::now(),
        at("2024-03-07T00:00:00Z"),
    ] {
        assert_eq!(
            signature::verify_offline(&d.headers, &s.webhook_id, &d.body, &s.cert, when),
            Err(SignatureError::CertificateNotValidNow)
        );
    }
    assert!(signature::check_signature(&d.headers, &s.webhook_id, &d.body, &s.cert).is_ok());
}

#[test]
fn any_changed_byte_of_body_headers_or_webhook_id_fails() {
    let s = samples();
    let mut checked = 0;
    for d in &s.deliveries {
        let refused = |headers: &WebhookHeaders, webhook_id: &str, body: &[u8]| {
            signature::check_signature(headers, webhook_id, body, &s.cert).is_err()
        };
        for i in 0..d.body.len() {
            let mut body = d.body.clone();
            body[i] ^= 0x01;
            assert!(
                refused(&d.headers, &s.webhook_id, &body),
                "{} body byte {i}",
                d.name
            );
            checked += 1;
        }
        let mut longer = d.body.clone();
        longer.push(b'\n');
        assert!(
            refused(&d.headers, &s.webhook_id, &longer),
            "{} trailing newline",
            d.name
        );
        for i in 0..s.webhook_id.len() {
            let mut id = s.webhook_id.clone().into_bytes();
            id[i] ^= 0x01;
            let id = String::from_utf8(id).unwrap();
            assert!(
                refused(&d.headers, &id, &d.body),
                "{} webhook id byte {i}",
                d.name
            );
            checked += 1;
        }
        type Field = fn(&mut WebhookHeaders) -> &mut String;
        let fields: [(&str, Field); 4] = [
            ("transmission_id", |h| &mut h.transmission_id),
            ("transmission_time", |h| &mut h.transmission_time),
            ("transmission_sig", |h| &mut h.transmission_sig),
            ("auth_algo", |h| &mut h.auth_algo),
        ];
        for (field, get) in fields {
            let len = get(&mut d.headers.clone()).len();
            for i in 0..len {
                let mut headers = d.headers.clone();
                let value = get(&mut headers);
                let mut bytes = value.clone().into_bytes();
                // Stay printable ASCII: flip a low bit, never to a control char.
                bytes[i] = if bytes[i] == b'~' {
                    b'}'
                } else {
                    bytes[i] ^ 0x01
                };
                *value = String::from_utf8(bytes).unwrap();
                assert!(
                    refused(&headers, &s.webhook_id, &d.body),
                    "{} {field} byte {i}",
                    d.name
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 4000, "{checked}");
}

#[tokio::test]
async fn the_verifier_accepts_them_as_of_their_time_and_refuses_them_today() {
    let s = samples();
    let verifier_at = |when: &'static str| {
        WebhookVerifier::new(Duration::from_secs(1))
            .unwrap()
            .with_certificate(&s.cert_url, s.cert.clone())
            .with_clock(move || at(when))
    };
    let then = verifier_at("2024-08-02T19:36:00Z");
    for d in &s.deliveries {
        then.verify(&d.headers, &s.webhook_id, &d.body)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", d.name));
        assert_eq!(
            then.verify(&d.headers, "another-webhook", &d.body).await,
            Err(SignatureError::BadSignature)
        );
    }
    // Replayed a day later: stale transmission (nothing fetched).
    let later = verifier_at("2024-08-03T19:36:00Z");
    let d = &s.deliveries[0];
    assert_eq!(
        later.verify(&d.headers, &s.webhook_id, &d.body).await,
        Err(SignatureError::StaleTransmission)
    );
    // Today the certificate has expired.
    let today = WebhookVerifier::new(Duration::from_secs(1))
        .unwrap()
        .with_certificate(&s.cert_url, s.cert.clone())
        .with_max_transmission_skew(Duration::from_secs(10 * 365 * 86_400));
    assert_eq!(
        today.verify(&d.headers, &s.webhook_id, &d.body).await,
        Err(SignatureError::CertificateNotValidNow)
    );
    // A certificate URL off PayPal's hosts is refused before anything else.
    let mut elsewhere = d.headers.clone();
    elsewhere.cert_url = "https://example.com/v1/notifications/certs/CERT-1".into();
    assert_eq!(
        then.verify(&elsewhere, &s.webhook_id, &d.body).await,
        Err(SignatureError::CertificateUrlNotAllowed)
    );
}

#[test]
fn the_samples_parse_as_events() {
    for d in samples().deliveries {
        let event = paypal::parse_webhook_event(&d.body).unwrap();
        assert_eq!(event.event_type, d.name);
        assert!(event.id.starts_with("WH-"));
        assert!(
            matches!(
                event.resource,
                paypal::WebhookResource::Capture(_) | paypal::WebhookResource::Refund(_)
            ),
            "{}: {:?}",
            d.name,
            event.resource
        );
    }
}
