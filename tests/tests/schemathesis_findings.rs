//! Regression tests for what schemathesis (infra/schemathesis.sh) found
//! against the local stack. Each reproduces the request it sent.

use integration_tests::api::TestApi;

const BOGUS_SIGNATURE_HEADERS: [(&str, &str); 6] = [
    ("content-type", "application/json"),
    ("paypal-transmission-id", "0"),
    ("paypal-transmission-time", "0"),
    ("paypal-transmission-sig", "0"),
    ("paypal-cert-url", "0"),
    ("paypal-auth-algo", "0"),
];

/// Found: `POST /webhooks/paypal` with body `null` (and any signature
/// headers) answered 503 "Signature verification unavailable": PayPal refuses
/// to verify a non-object event (400 MISSING_REQUIRED_PARAMETER) and every
/// refusal read as "unavailable". A malformed delivery is 400.
#[tokio::test]
async fn a_webhook_body_that_is_not_an_object_is_400() {
    let api = TestApi::new().await;
    for body in ["null", "[]", "1", "\"event\"", " true "] {
        let response = api
            .call(
                "POST",
                "/webhooks/paypal",
                None,
                Some(body),
                &BOGUS_SIGNATURE_HEADERS,
            )
            .await;
        assert_eq!(response.status, 400, "{body}: {:?}", response.body);
    }
}

/// A JSON object with unusable signature headers: refused (400/401), never 5xx.
#[tokio::test]
async fn a_webhook_with_unusable_signature_headers_is_refused_not_5xx() {
    let api = TestApi::new().await;
    for body in ["{}", r#"{"id": "WH-1", "event_type": "X", "resource": {}}"#] {
        let response = api
            .call(
                "POST",
                "/webhooks/paypal",
                None,
                Some(body),
                &BOGUS_SIGNATURE_HEADERS,
            )
            .await;
        assert!(
            [400, 401].contains(&response.status),
            "{body}: {} {:?}",
            response.status,
            response.body
        );
    }
}
