#![recursion_limit = "256"]
//! The PayPal webhook and refunds: verified, deduplicated, order-independent.

use devstack::paypal::{EventType, SignedEvent};
use integration_tests::api::{TestApi, TestResponse};
use integration_tests::{assert_audit, new_user, usd};
use ledger::UserId;
use proptest::prelude::*;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::task::JoinSet;

const CREDITS: &str = "/api/billing/custom-credits";

async fn deliver(api: &TestApi, event: &SignedEvent) -> TestResponse {
    let headers: Vec<(&str, &str)> = event
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = String::from_utf8(event.body.clone()).unwrap();
    api.call("POST", "/webhooks/paypal", None, Some(&body), &headers)
        .await
}

/// An approved order the client never captured; returns (order id, user, token).
async fn approved_order(api: &TestApi, amount: &str) -> (String, UserId, String) {
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let response = api
        .send(
            "POST",
            &format!("{CREDITS}/add"),
            &token,
            &format!(r#"{{"amount": {amount}}}"#),
        )
        .await;
    let order_id = response.body["orderId"].as_str().unwrap().to_owned();
    assert!(api.paypal.approve(&order_id));
    (order_id, user, token)
}

/// Captured at PayPal (by someone else: an earlier crashed attempt, PayPal's UI…).
async fn captured_at_paypal(api: &TestApi, order_id: &str) -> String {
    let paypal = api.payments.paypal().await.unwrap();
    let order = paypal
        .capture_order(order_id, &format!("elsewhere-{order_id}"))
        .await
        .unwrap();
    order.captures[0].id.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_deliveries_of_one_event_credit_once() {
    let api = Arc::new(TestApi::new().await);
    let (order_id, user, _) = approved_order(&api, "20").await;
    let capture_id = captured_at_paypal(&api, &order_id).await;
    let event = api
        .paypal
        .signed_event(EventType::CaptureCompleted, &capture_id)
        .unwrap();
    let mut tasks = JoinSet::new();
    for _ in 0..50 {
        let (api, event) = (api.clone(), event.clone());
        tasks.spawn(async move { deliver(&api, &event).await });
    }
    while let Some(response) = tasks.join_next().await {
        let response = response.unwrap();
        assert_eq!(response.status, 200, "{:?}", response.body);
    }
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("20.00"));
    assert_eq!(api.ledger().audit(&user).await.unwrap().entries, 1);
    // A later redelivery is recognised.
    assert_eq!(
        deliver(&api, &event).await.body["outcome"],
        json!("duplicate")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_capture_route_and_the_completed_webhook_racing_credit_once() {
    let api = Arc::new(TestApi::new().await);
    let (order_id, user, token) = approved_order(&api, "7.25").await;
    let capture_id = captured_at_paypal(&api, &order_id).await;
    let event = api
        .paypal
        .signed_event(EventType::CaptureCompleted, &capture_id)
        .unwrap();
    let mut tasks = JoinSet::new();
    for i in 0..10 {
        let (api, event, token, order_id) =
            (api.clone(), event.clone(), token.clone(), order_id.clone());
        tasks.spawn(async move {
            if i % 2 == 0 {
                deliver(&api, &event).await
            } else {
                api.send(
                    "POST",
                    &format!("{CREDITS}/capture"),
                    &token,
                    &format!(r#"{{"orderId": "{order_id}"}}"#),
                )
                .await
            }
        });
    }
    while let Some(response) = tasks.join_next().await {
        assert_eq!(response.unwrap().status, 200);
    }
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("7.25"));
}

#[tokio::test]
async fn an_abandoned_approved_order_is_captured_by_the_approved_webhook() {
    let api = TestApi::new().await;
    let (order_id, user, _) = approved_order(&api, "15").await;
    let event = api
        .paypal
        .signed_event(EventType::OrderApproved, &order_id)
        .unwrap();
    assert_eq!(deliver(&api, &event).await.status, 200);
    assert_eq!(deliver(&api, &event).await.status, 200);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("15.00"));
}

#[tokio::test]
async fn forged_tampered_stale_and_malformed_deliveries_change_nothing() {
    let api = TestApi::new().await;
    let (order_id, user, _) = approved_order(&api, "9").await;
    let capture_id = captured_at_paypal(&api, &order_id).await;
    let genuine = api
        .paypal
        .signed_event(EventType::CaptureCompleted, &capture_id)
        .unwrap();

    // Tampered body: the amount changed after signing.
    let mut tampered = genuine.clone();
    tampered.body = String::from_utf8(genuine.body.clone())
        .unwrap()
        .replace("9.00", "900.00")
        .into_bytes();
    assert_ne!(tampered.body, genuine.body);
    assert_eq!(deliver(&api, &tampered).await.status, 401);

    // Forged signature.
    let mut forged = genuine.clone();
    for (name, value) in forged.headers.iter_mut() {
        if name == "paypal-transmission-sig" {
            *value = "Zm9yZ2Vk".into();
        }
    }
    assert_eq!(deliver(&api, &forged).await.status, 401);

    // Stale: signed an hour ago.
    let mut stale = genuine.clone();
    stale.headers = api
        .paypal
        .sign_at(&genuine.body, SystemTime::now() - Duration::from_secs(3600));
    assert_eq!(deliver(&api, &stale).await.status, 401);

    // Signed for another webhook id: a second stand-in with another id signs it.
    let other = devstack::paypal::PayPalStandIn::spawn(
        ([127, 0, 0, 1], 0).into(),
        "a",
        "b",
        "another-webhook",
    )
    .await
    .unwrap();
    let mut wrong_id = genuine.clone();
    wrong_id.headers = other.sign(&genuine.body);
    assert_eq!(deliver(&api, &wrong_id).await.status, 401);

    // Missing headers / not JSON.
    let response = api
        .call(
            "POST",
            "/webhooks/paypal",
            None,
            Some(std::str::from_utf8(&genuine.body).unwrap()),
            &[],
        )
        .await;
    assert_eq!(response.status, 400);
    let junk = b"not json".to_vec();
    let mut malformed = genuine.clone();
    malformed.headers = api.paypal.sign(&junk);
    malformed.body = junk;
    assert_eq!(deliver(&api, &malformed).await.status, 400);

    assert_eq!(
        api.ledger().balance(&user).await.unwrap(),
        usd("0"),
        "nothing credited"
    );
    assert_eq!(deliver(&api, &genuine).await.status, 200);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("9.00"));
}

#[tokio::test]
async fn unknown_event_types_are_ignored_with_200() {
    let api = TestApi::new().await;
    let event = api.paypal.signed_custom_event(
        "BILLING.SUBSCRIPTION.CREATED",
        "subscription",
        json!({"id": "I-1"}),
    );
    let response = deliver(&api, &event).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body["outcome"], json!("ignored"));
}

/// `POST /api/admin/refunds` with a fresh Idempotency-Key (required).
async fn keyed_refund(api: &TestApi, admin: &str, body: &str) -> TestResponse {
    let key = uuid::Uuid::new_v4().simple().to_string();
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", key.as_str()),
    ];
    Box::pin(api.call(
        "POST",
        "/api/admin/refunds",
        Some(admin),
        Some(body),
        &headers,
    ))
    .await
}

#[tokio::test]
async fn ignored_event_types_answer_200_whatever_their_resource() {
    let api = TestApi::new().await;
    // PayPal's CHECKOUT.PAYMENT-APPROVAL.REVERSED: `order_id`, no `id`.
    let sample: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("CHECKOUT.PAYMENT-APPROVAL.REVERSED.json")).unwrap(),
    )
    .unwrap();
    for (event_type, resource_type, resource) in [
        (
            "CHECKOUT.PAYMENT-APPROVAL.REVERSED",
            "checkout-order",
            sample["resource"].clone(),
        ),
        (
            "PAYMENT.AUTHORIZATION.CREATED",
            "capture",
            json!({"id": "A"}),
        ),
        (
            "CUSTOMER.DISPUTE.UPDATED",
            "refund",
            json!(["not", "an", "object"]),
        ),
    ] {
        let event = api
            .paypal
            .signed_custom_event(event_type, resource_type, resource);
        let response = deliver(&api, &event).await;
        assert_eq!(response.status, 200, "{event_type}: {:?}", response.body);
        assert_eq!(response.body["outcome"], json!("ignored"), "{event_type}");
    }
}

#[tokio::test]
async fn forged_deliveries_cost_no_call_to_paypal() {
    let api = TestApi::new().await;
    let (order_id, user, _) = approved_order(&api, "6").await;
    let capture_id = captured_at_paypal(&api, &order_id).await;
    let genuine = api
        .paypal
        .signed_event(EventType::CaptureCompleted, &capture_id)
        .unwrap();
    // The first genuine delivery fetches the stand-in's certificate once.
    assert_eq!(deliver(&api, &genuine).await.status, 200);
    let calls = api.paypal.request_count();
    let other = api.paypal.signed_custom_event(
        "PAYMENT.CAPTURE.COMPLETED",
        "capture",
        json!({"id": "FORGED", "status": "COMPLETED",
               "amount": {"currency_code": "USD", "value": "999.00"}}),
    );
    for i in 0..40 {
        let mut forged = genuine.clone();
        match i % 4 {
            // Another event's valid signature on this body.
            0 => forged.headers = other.headers.clone(),
            // A body changed after signing.
            1 => forged.body = other.body.clone(),
            // A certificate somewhere else (never fetched).
            2 => set_header(
                &mut forged,
                "paypal-cert-url",
                &format!("http://127.0.0.1:9/v1/notifications/certs/CERT-{i}"),
            ),
            // Garbage signature.
            _ => set_header(&mut forged, "paypal-transmission-sig", "Zm9yZ2Vk"),
        }
        assert_eq!(deliver(&api, &forged).await.status, 401, "forgery {i}");
    }
    assert_eq!(api.paypal.request_count(), calls, "no call reached PayPal");
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("6.00"));
}

/// The signing certificate cannot be fetched (PayPal unreachable): 503, nothing done,
/// and PayPal's redelivery verifies once it can be (a network failure is not cached).
#[tokio::test]
async fn an_unreachable_certificate_is_503_and_the_redelivery_verifies() {
    let api = TestApi::new().await;
    let (order_id, user, _) = approved_order(&api, "4").await;
    let capture_id = captured_at_paypal(&api, &order_id).await;
    let event = api
        .paypal
        .signed_event(EventType::CaptureCompleted, &capture_id)
        .unwrap();
    api.paypal.refuse_connections(None);
    assert_eq!(deliver(&api, &event).await.status, 503);
    api.paypal.accept_connections();
    // (At most 10 certificate fetches a minute: a few tries while the stand-in rebinds.)
    let mut status = 0;
    for _ in 0..8 {
        let redelivery = SignedEvent {
            headers: api.paypal.sign(&event.body),
            ..event.clone()
        };
        status = deliver(&api, &redelivery).await.status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(status, 200);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("4.00"));
}

fn set_header(event: &mut SignedEvent, name: &str, value: &str) {
    for (n, v) in event.headers.iter_mut() {
        if n == name {
            *v = value.to_owned();
        }
    }
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/paypal")
        .join(name)
}

async fn paid_credits(api: &TestApi, amount: &str) -> (String, UserId, String) {
    let (order_id, user, token) = approved_order(api, amount).await;
    let response = api
        .send(
            "POST",
            &format!("{CREDITS}/capture"),
            &token,
            &format!(r#"{{"orderId": "{order_id}"}}"#),
        )
        .await;
    assert_eq!(response.status, 200);
    (order_id, user, token)
}

#[tokio::test]
async fn partial_refunds_add_up_to_the_capture_and_no_further() {
    let api = TestApi::new().await;
    let admin = api.token("900", true);
    let (order_id, user, _) = paid_credits(&api, "30").await;
    let refund = |amount: &str| {
        let body = format!(
            r#"{{"orderId": "{order_id}", "amount": "{amount}", "reason": "customer asked"}}"#
        );
        let (api, admin) = (&api, admin.clone());
        async move { keyed_refund(api, &admin, &body).await }
    };
    let first = refund("10.00").await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.body["balance"], json!("20.00"));
    assert!(first.body["refundId"].is_string());
    assert_eq!(refund("15.00").await.status, 200);
    let beyond = refund("5.01").await;
    assert_eq!(beyond.status, 400, "{:?}", beyond.body);
    assert_eq!(refund("5.00").await.status, 200);
    assert_eq!(refund("0.01").await.status, 400, "fully refunded");
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("0.00"));
    let history = api
        .get(&format!("/api/admin/users/{user}/custom-credits"), &admin)
        .await;
    assert_eq!(history.body["transactions"][0]["adminId"], json!("900"));
    assert_eq!(
        history.body["transactions"][0]["reason"],
        json!("customer asked")
    );
    assert_eq!(api.paypal.refunds().len(), 3);
}

#[tokio::test]
async fn spent_credits_are_refunded_only_with_force_and_recorded_as_debt() {
    let api = TestApi::new().await;
    let admin = api.token("900", true);
    let (order_id, user, _) = paid_credits(&api, "10").await;
    let spend = format!("/api/admin/users/{user}/custom-credits");
    api.send(
        "DELETE",
        &spend,
        &admin,
        r#"{"amount": 8, "reason": "used for a service"}"#,
    )
    .await;
    let body = format!(r#"{{"orderId": "{order_id}", "reason": "chargeback threat"}}"#);
    let refused = keyed_refund(&api, &admin, &body).await;
    assert_eq!(refused.status, 409);
    assert_eq!(refused.body["code"], json!("credits_spent"));
    assert!(api.paypal.refunds().is_empty(), "PayPal not called");
    let forced =
        format!(r#"{{"orderId": "{order_id}", "reason": "chargeback threat", "force": true}}"#);
    let response = keyed_refund(&api, &admin, &forced).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.body["balance"], json!("-8.00"));
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("-8.00"));
}

#[tokio::test]
async fn an_admin_refund_and_its_refunded_webhook_debit_once() {
    let api = TestApi::new().await;
    let admin = api.token("900", true);
    let (order_id, user, _) = paid_credits(&api, "12").await;
    let body = format!(r#"{{"orderId": "{order_id}", "amount": 4, "reason": "partial"}}"#);
    let response = keyed_refund(&api, &admin, &body).await;
    let refund_id = response.body["refundId"].as_str().unwrap().to_owned();
    let event = api
        .paypal
        .signed_event(EventType::CaptureRefunded, &refund_id)
        .unwrap();
    assert_eq!(deliver(&api, &event).await.status, 200);
    assert_eq!(deliver(&api, &event).await.status, 200);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("8.00"));
}

#[tokio::test]
async fn a_reversal_takes_back_even_spent_credits_as_debt() {
    let api = TestApi::new().await;
    let admin = api.token("900", true);
    let (order_id, user, _) = paid_credits(&api, "10").await;
    api.send(
        "DELETE",
        &format!("/api/admin/users/{user}/custom-credits"),
        &admin,
        r#"{"amount": 10, "reason": "spent"}"#,
    )
    .await;
    let capture_id = api.paypal.order(&order_id).unwrap().capture_ids[0].clone();
    let reversal_id = api.paypal.reverse_capture(&capture_id).unwrap();
    let event = api
        .paypal
        .signed_event(EventType::CaptureReversed, &reversal_id)
        .unwrap();
    assert_eq!(deliver(&api, &event).await.status, 200);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("-10.00"));
}

#[tokio::test]
async fn a_token_refund_removes_the_virtfusion_credit() {
    let api = TestApi::new().await;
    let admin = api.token("900", true);
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let response = api
        .send(
            "POST",
            "/api/billing/virtfusion-tokens/add",
            &token,
            r#"{"amount": 5}"#,
        )
        .await;
    let order_id = response.body["orderId"].as_str().unwrap().to_owned();
    assert!(api.paypal.approve(&order_id));
    let captured = api
        .send(
            "POST",
            "/api/billing/virtfusion-tokens/capture",
            &token,
            &format!(r#"{{"orderId": "{order_id}"}}"#),
        )
        .await;
    assert_eq!(captured.body["status"], json!("completed"));
    assert_eq!(api.virtfusion.balance(user.as_str()), 500);

    let full = format!(r#"{{"orderId": "{order_id}", "reason": "not needed"}}"#);
    let refunded = keyed_refund(&api, &admin, &full).await;
    assert_eq!(refunded.status, 200, "{:?}", refunded.body);
    assert_eq!(refunded.body["tokensRevoked"], json!(true));
    assert_eq!(api.virtfusion.balance(user.as_str()), 0);
    let again = keyed_refund(&api, &admin, &full).await;
    assert_eq!(again.status, 400, "nothing left: {:?}", again.body);
}

#[tokio::test]
async fn refunds_validate_their_input() {
    let api = TestApi::new().await;
    let admin = api.token("900", true);
    let (order_id, _, token) = paid_credits(&api, "5").await;
    for body in [
        format!(r#"{{"orderId": "{order_id}"}}"#),
        format!(r#"{{"orderId": "{order_id}", "reason": " "}}"#),
        format!(r#"{{"orderId": "{order_id}", "reason": "r", "amount": 1.001}}"#),
        format!(r#"{{"orderId": "{order_id}", "reason": "r", "amount": -1}}"#),
        r#"{"orderId": "bad/id", "reason": "r"}"#.to_owned(),
    ] {
        assert_eq!(
            keyed_refund(&api, &admin, &body).await.status,
            400,
            "{body}"
        );
    }
    let unknown = keyed_refund(&api, &admin, r#"{"orderId": "NOPE", "reason": "r"}"#).await;
    assert_eq!(unknown.status, 404);
    let not_admin = api
        .send(
            "POST",
            "/api/admin/refunds",
            &token,
            &format!(r#"{{"orderId": "{order_id}", "reason": "r"}}"#),
        )
        .await;
    assert_eq!(not_admin.status, 403);
}

/// One paid order and one partial refund; the webhook events of both,
/// delivered in the given order (with duplicates), must end where in-order
/// delivery ends: credited once, refunded once.
async fn deliver_sequence(sequence: Vec<bool>) {
    let api = TestApi::new().await;
    let (order_id, user, _) = approved_order(&api, "10").await;
    let capture_id = captured_at_paypal(&api, &order_id).await;
    let paypal = api.payments.paypal().await.unwrap();
    let refund = paypal
        .refund_capture(&capture_id, Some(usd("3.00")), "prop-refund", None)
        .await
        .unwrap();
    let completed = api
        .paypal
        .signed_event(EventType::CaptureCompleted, &capture_id)
        .unwrap();
    let refunded = api
        .paypal
        .signed_event(EventType::CaptureRefunded, &refund.id)
        .unwrap();
    for is_completed in sequence {
        let event = if is_completed { &completed } else { &refunded };
        assert_eq!(deliver(&api, event).await.status, 200);
    }
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("7.00"));
    assert_eq!(api.ledger().audit(&user).await.unwrap().entries, 2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, .. ProptestConfig::default() })]

    #[test]
    fn shuffled_and_duplicated_deliveries_reach_the_in_order_state(
        extra in prop::collection::vec(any::<bool>(), 0..4),
        refund_first in any::<bool>(),
    ) {
        // Each event at least once, in a random order, plus random duplicates.
        let mut sequence = if refund_first { vec![false, true] } else { vec![true, false] };
        sequence.extend(extra);
        tokio::runtime::Runtime::new().unwrap().block_on(deliver_sequence(sequence));
    }
}

// ------------------------------------------------------- PayPal's real payloads

/// A fixture event (PayPal's own shape), `edit`ed to name a test order, signed by the
/// stand-in.
fn real_event(api: &TestApi, file: &str, edit: impl FnOnce(&mut serde_json::Value)) -> SignedEvent {
    let mut event: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture(file)).unwrap()).unwrap();
    edit(&mut event);
    let body = serde_json::to_vec(&event).unwrap();
    SignedEvent {
        event_id: event["id"].as_str().unwrap().to_owned(),
        event_type: event["event_type"].as_str().unwrap().to_owned(),
        headers: api.paypal.sign(&body),
        body,
    }
}

/// Each event id is processed once: fixtures reused within one table get a fresh id.
fn fresh_id(event: &mut serde_json::Value) {
    event["id"] = json!(format!("WH-{}", uuid::Uuid::new_v4().simple()));
}

fn set_capture(event: &mut serde_json::Value, capture_id: &str, amount: &str) {
    fresh_id(event);
    event["resource"]["id"] = json!(capture_id);
    event["resource"]["amount"]["value"] = json!(amount);
}

fn set_up_link(event: &mut serde_json::Value, href: &str) {
    for link in event["resource"]["links"].as_array_mut().unwrap() {
        if link["rel"] == "up" {
            link["href"] = json!(href);
        }
    }
}

async fn purchase_id(api: &TestApi, order_id: &str) -> String {
    billing::orders::load(&api.ledger(), order_id)
        .await
        .unwrap()
        .unwrap()
        .purchase_id
}

#[tokio::test]
async fn paypals_sample_events_drive_the_handlers() {
    use devstack::paypal::CaptureOutcome;
    let api = TestApi::new().await;

    // PAYMENT.CAPTURE.COMPLETED (the signed simulator body): credited once.
    let (order_id, user, _) = approved_order(&api, "20").await;
    let capture_id = captured_at_paypal(&api, &order_id).await;
    let invoice = purchase_id(&api, &order_id).await;
    let completed =
        |capture_id: String, order_id: String, invoice: String, amount: &'static str| {
            move |e: &mut serde_json::Value| {
                set_capture(e, &capture_id, amount);
                e["resource"]["supplementary_data"]["related_ids"]["order_id"] = json!(order_id);
                e["resource"]["invoice_id"] = json!(invoice);
            }
        };
    let event = real_event(
        &api,
        "signed/paypal-webhook-PAYMENT.CAPTURE.COMPLETED.signed.json",
        completed(capture_id.clone(), order_id.clone(), invoice, "20.00"),
    );
    let response = deliver(&api, &event).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.body["outcome"], json!("processed"));
    assert_eq!(
        deliver(&api, &event).await.body["outcome"],
        json!("duplicate")
    );
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("20.00"));

    // PAYMENT.CAPTURE.REFUNDED (the signed simulator body, 0.99): debited once.
    let event = real_event(
        &api,
        "signed/paypal-webhook-PAYMENT.CAPTURE.REFUNDED.signed.json",
        |e| {
            fresh_id(e);
            set_up_link(
                e,
                &format!("https://api.paypal.com/v2/payments/captures/{capture_id}"),
            );
        },
    );
    assert_eq!(deliver(&api, &event).await.status, 200);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("19.01"));

    // PAYMENT.CAPTURE.PENDING (signed simulator body): recorded, nothing credited;
    // then its COMPLETED: credited.
    let (order_id, user, _) = approved_order(&api, "8").await;
    api.paypal
        .set_capture_outcome(CaptureOutcome::Pending, Some(1));
    let capture_id = captured_at_paypal(&api, &order_id).await;
    let event = real_event(
        &api,
        "signed/paypal-webhook-PAYMENT.CAPTURE.PENDING.signed.json",
        |e| {
            set_capture(e, &capture_id, "8.00");
            set_up_link(
                e,
                &format!("https://api.paypal.com/v2/checkout/orders/{order_id}"),
            );
        },
    );
    assert_eq!(deliver(&api, &event).await.status, 200);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("0.00"));
    let order = billing::orders::load(&api.ledger(), &order_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(order.status, billing::orders::PaymentStatus::CapturePending);
    let invoice = purchase_id(&api, &order_id).await;
    let event = real_event(
        &api,
        "signed/paypal-webhook-PAYMENT.CAPTURE.COMPLETED.signed.json",
        completed(capture_id.clone(), order_id.clone(), invoice, "8.00"),
    );
    assert_eq!(deliver(&api, &event).await.status, 200);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("8.00"));

    // PAYMENT.CAPTURE.DECLINED (PayPal's sample, EUR receivable and all): the pending
    // order fails, nothing is credited.
    let (order_id, user, _) = approved_order(&api, "5").await;
    api.paypal
        .set_capture_outcome(CaptureOutcome::Pending, Some(1));
    let capture_id = captured_at_paypal(&api, &order_id).await;
    let invoice = purchase_id(&api, &order_id).await;
    let event = real_event(&api, "PAYMENT.CAPTURE.DECLINED.json", |e| {
        set_capture(e, &capture_id, "5.00");
        e["resource"]["supplementary_data"]["related_ids"]["order_id"] = json!(order_id);
        e["resource"]["invoice_id"] = json!(invoice);
        e["resource"]["custom_id"] = json!(user.as_str());
    });
    assert_eq!(deliver(&api, &event).await.status, 200);
    let order = billing::orders::load(&api.ledger(), &order_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(order.status, billing::orders::PaymentStatus::Failed);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("0.00"));

    // PAYMENT.CAPTURE.REVERSED (PayPal's sample, 2.51): taken back.
    let (order_id, user, token) = approved_order(&api, "2.51").await;
    let captured = api
        .send(
            "POST",
            &format!("{CREDITS}/capture"),
            &token,
            &format!(r#"{{"orderId": "{order_id}"}}"#),
        )
        .await;
    assert_eq!(captured.status, 200);
    let capture_id = api.paypal.order(&order_id).unwrap().capture_ids[0].clone();
    let event = real_event(&api, "PAYMENT.CAPTURE.REVERSED.json", |e| {
        fresh_id(e);
        set_up_link(
            e,
            &format!("https://api.paypal.com/v2/payments/captures/{capture_id}"),
        );
    });
    assert_eq!(deliver(&api, &event).await.status, 200);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("0.00"));

    // CHECKOUT.ORDER.APPROVED (PayPal's sample): the abandoned order is captured and
    // credited what PayPal captured.
    let (order_id, user, _) = approved_order(&api, "15").await;
    let event = real_event(&api, "CHECKOUT.ORDER.APPROVED.json", |e| {
        fresh_id(e);
        e["resource"]["id"] = json!(order_id);
    });
    assert_eq!(deliver(&api, &event).await.status, 200);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("15.00"));
}

/// A real Orders v2 capture answer whose capture is DECLINED credits nothing and fails
/// the order.
#[tokio::test]
async fn a_real_declined_capture_answer_fails_the_order() {
    let api = TestApi::new().await;
    let (order_id, user, _) = approved_order(&api, "25.04").await;
    let text = std::fs::read_to_string(fixture("capture-response-DECLINED.json"))
        .unwrap()
        .replace("5B57438865155480N", &order_id);
    let answer = paypal::parse_order(text.as_bytes()).unwrap();
    let capture = billing::checkout::pick_capture(&answer.captures).unwrap();
    let order = billing::orders::load(&api.ledger(), &order_id)
        .await
        .unwrap()
        .unwrap();
    let settled = billing::checkout::settle(&api.ledger(), None, &order, capture).await;
    assert!(
        matches!(
            &settled,
            Err(billing::BillingError::Conflict {
                code: "payment_declined",
                ..
            })
        ),
        "{settled:?}"
    );
    let order = billing::orders::load(&api.ledger(), &order_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(order.status, billing::orders::PaymentStatus::Failed);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("0.00"));
}
