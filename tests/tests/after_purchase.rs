#![recursion_limit = "256"]
//! After the purchase: refunds (pending, failed, partial, in the
//! dashboard), reversals, won disputes and token deliveries. Each test plays
//! a scenario through the PayPal and VirtFusion stand-ins and ends with the
//! chain audit and exact balances and token counts. The rows of
//! docs/reliability.md "After the purchase" come from these tests.

use billing::orders::{Delivery, OrderRecord};
use devstack::paypal::{EventType, Failure, Operation, RefundSettlement, SignedEvent};
use devstack::virtfusion::FailureMode;
use integration_tests::api::{TestApi, TestResponse};
use integration_tests::{assert_audit, new_user, usd};
use ledger::UserId;
use ledger::dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

const CREDITS: &str = "/api/billing/custom-credits";
const TOKENS: &str = "/api/billing/virtfusion-tokens";
const ADMIN: &str = "900";

async fn deliver(api: &TestApi, event: &SignedEvent) -> TestResponse {
    let headers: Vec<(&str, &str)> = event
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = String::from_utf8(event.body.clone()).unwrap();
    Box::pin(api.call("POST", "/webhooks/paypal", None, Some(&body), &headers)).await
}

/// As PayPal does: a delivery answered 5xx is delivered again (bounded).
async fn deliver_until_accepted(api: &TestApi, event: &SignedEvent) -> TestResponse {
    let mut response = deliver(api, event).await;
    for _ in 0..5 {
        if response.status < 500 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        response = deliver(api, event).await;
    }
    response
}

async fn delivered_ok(api: &TestApi, event: &SignedEvent) -> Value {
    let response = deliver(api, event).await;
    assert_eq!(
        response.status, 200,
        "{}: {:?}",
        event.event_type, response.body
    );
    response.body["outcome"].clone()
}

/// `POST /api/admin/refunds` with an Idempotency-Key.
async fn admin_refund(api: &TestApi, body: &str, key: &str) -> TestResponse {
    let token = api.token(ADMIN, true);
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", key),
    ];
    Box::pin(api.call(
        "POST",
        "/api/admin/refunds",
        Some(&token),
        Some(body),
        &headers,
    ))
    .await
}

/// An order created and approved by its buyer; (order id, user, user token).
async fn approved(api: &TestApi, route: &str, amount: &str) -> (String, UserId, String) {
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let response = api
        .send(
            "POST",
            &format!("{route}/add"),
            &token,
            &format!(r#"{{"amount": {amount}}}"#),
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let order_id = response.body["orderId"].as_str().unwrap().to_owned();
    assert!(api.paypal.approve(&order_id));
    (order_id, user, token)
}

async fn capture(api: &TestApi, route: &str, token: &str, order_id: &str) -> TestResponse {
    api.send(
        "POST",
        &format!("{route}/capture"),
        token,
        &format!(r#"{{"orderId": "{order_id}"}}"#),
    )
    .await
}

/// A credits purchase, paid and credited; (order id, user, capture id).
async fn paid_credits(api: &TestApi, amount: &str) -> (String, UserId, String) {
    let (order_id, user, token) = approved(api, CREDITS, amount).await;
    let response = capture(api, CREDITS, &token, &order_id).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let capture_id = api.paypal.order(&order_id).unwrap().capture_ids[0].clone();
    (order_id, user, capture_id)
}

/// A token purchase, paid; the capture route's answer decides the delivery.
async fn paid_tokens(api: &TestApi, amount: &str) -> (String, UserId, String, TestResponse) {
    let (order_id, user, token) = approved(api, TOKENS, amount).await;
    let response = capture(api, TOKENS, &token, &order_id).await;
    let capture_id = api.paypal.order(&order_id).unwrap().capture_ids[0].clone();
    (order_id, user, capture_id, response)
}

async fn order(api: &TestApi, order_id: &str) -> OrderRecord {
    billing::orders::load(&api.ledger(), order_id)
        .await
        .unwrap()
        .expect("order recorded")
}

async fn review_list(api: &TestApi) -> Vec<String> {
    billing::deliveries::list(&api.ledger(), Delivery::NeedsReview, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.order_id)
        .collect()
}

async fn entry_kinds(api: &TestApi, user: &UserId) -> Vec<String> {
    let admin = api.token(ADMIN, true);
    let history = api
        .get(&format!("/api/admin/users/{user}/custom-credits"), &admin)
        .await;
    let mut kinds: Vec<String> = history.body["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap().to_owned())
        .collect();
    kinds.reverse();
    kinds
}

/// One run of the renewal job (`renewal-cron`), which also retries the
/// pending VirtFusion deliveries, with its clock at `at`.
async fn run_job(api: &TestApi, at: time::OffsetDateTime) -> Value {
    let client = virtfusion::VirtFusionClient::new(
        &api.virtfusion.base_url(),
        billing_config::SecretValue::new(integration_tests::api::VIRTFUSION_TOKEN),
        Duration::from_millis(500),
    )
    .unwrap();
    let mut deps =
        renewal_cron_fn::Deps::new(api.function_ledger(integration_tests::IN_PROCESS_RENEWALS))
            .with_virtfusion(client);
    // As locally: the job may run "as of" a later time.
    deps.max_clock_skew = Some(time::Duration::days(30));
    let event = json!({
        "version": "0",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "time": billing::dns::dates::format_time(at),
        "detail": {},
    });
    renewal_cron_fn::handle(
        &deps,
        lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default()),
    )
    .await
    .expect("job runs")
}

// ---------------------------------------------------------------- point 1

#[tokio::test]
async fn a_partial_dashboard_refund_of_a_token_purchase_leaves_only_the_unrefunded_tokens() {
    let api = TestApi::new().await;
    let (order_id, user, capture_id, captured) = paid_tokens(&api, "100").await;
    assert_eq!(captured.body["status"], json!("completed"));
    assert_eq!(api.virtfusion.balance(user.as_str()), 10_000);

    // $10 of $100 refunded in PayPal's dashboard.
    let refund_id = api
        .paypal
        .dashboard_refund(&capture_id, Some(1_000))
        .unwrap();
    let event = api
        .paypal
        .signed_event(EventType::CaptureRefunded, &refund_id)
        .unwrap();
    assert_eq!(delivered_ok(&api, &event).await, json!("processed"));
    assert_eq!(delivered_ok(&api, &event).await, json!("duplicate"));

    // VirtFusion has no partial removal: the credit is replaced by one of
    // what the user kept.
    assert_eq!(api.virtfusion.balance(user.as_str()), 9_000);
    assert_eq!(api.virtfusion.credits().len(), 1);
    let stored = order(&api, &order_id).await;
    assert_eq!(stored.delivery, Some(Delivery::Delivered));
    assert_eq!(stored.refunded_amount, usd("10.00"));
    assert_eq!(stored.credit_id, Some(api.virtfusion.credits()[0].id));
    assert!(!review_list(&api).await.contains(&order_id));
    // The token history shows the refund line next to the purchase.
    let token = api.token(user.as_str(), false);
    let history = api.get("/api/billing/transactions", &token).await;
    let types: Vec<&str> = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, vec!["refund", "purchase"], "{:?}", history.body);
    assert_eq!(history.body["items"][0]["amount"], json!(-1000));
}

#[tokio::test]
async fn a_whole_refund_of_a_delivered_token_purchase_revokes_its_credit_once() {
    let api = TestApi::new().await;
    let (order_id, user, _, captured) = paid_tokens(&api, "5").await;
    assert_eq!(captured.body["status"], json!("completed"));
    let body = format!(r#"{{"orderId": "{order_id}", "reason": "not needed"}}"#);
    let refunded = admin_refund(&api, &body, "whole-1").await;
    assert_eq!(refunded.status, 200, "{:?}", refunded.body);
    assert_eq!(refunded.body["tokensRevoked"], json!(true));
    assert_eq!(refunded.body["status"], json!("completed"));
    assert_eq!(api.virtfusion.balance(user.as_str()), 0);
    let refund_id = refunded.body["refundId"].as_str().unwrap();
    let event = api
        .paypal
        .signed_event(EventType::CaptureRefunded, refund_id)
        .unwrap();
    delivered_ok(&api, &event).await;
    assert_eq!(api.virtfusion.balance(user.as_str()), 0);
    assert!(api.virtfusion.credits().is_empty());
    assert_eq!(
        order(&api, &order_id).await.delivery,
        Some(Delivery::Refunded)
    );
    assert_eq!(api.paypal.refunds().len(), 1);
}

// ---------------------------------------------------------------- point 2

#[tokio::test]
async fn a_refund_of_a_delivery_under_review_keeps_it_on_the_review_list() {
    let api = TestApi::new().await;
    // VirtFusion credits the tokens but its answer never arrives.
    api.virtfusion
        .set_failure(FailureMode::ApplyThenHang, Some(1));
    let (order_id, user, capture_id, captured) = paid_tokens(&api, "5").await;
    api.virtfusion.clear_failure();
    assert_eq!(captured.body["status"], json!("needs_review"));
    assert_eq!(
        api.virtfusion.balance(user.as_str()),
        500,
        "VirtFusion has them"
    );

    let refund_id = api.paypal.dashboard_refund(&capture_id, None).unwrap();
    let event = api
        .paypal
        .signed_event(EventType::CaptureRefunded, &refund_id)
        .unwrap();
    delivered_ok(&api, &event).await;
    let stored = order(&api, &order_id).await;
    assert_eq!(
        stored.delivery,
        Some(Delivery::NeedsReview),
        "not 'refunded'"
    );
    // Its reason stays the delivery's: the settlement computes what is owed then.
    assert_eq!(stored.review_reason.as_deref(), Some("uncertain_outcome"));
    assert_eq!(stored.owed_tokens().get(), 0);
    assert!(review_list(&api).await.contains(&order_id), "still listed");
    assert_eq!(
        api.virtfusion.balance(user.as_str()),
        500,
        "for the admin to settle"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refund_while_the_delivery_is_in_flight_keeps_the_credit_id_and_goes_to_review() {
    let api = Arc::new(TestApi::new().await);
    let (order_id, user, token) = approved(&api, TOKENS, "4").await;
    // VirtFusion answers after 450 ms (within the client's 500 ms timeout).
    api.virtfusion
        .set_failure(FailureMode::Delay(Duration::from_millis(450)), Some(1));
    let capturing = {
        let (api, token, order_id) = (api.clone(), token.clone(), order_id.clone());
        tokio::spawn(async move { capture(&api, TOKENS, &token, &order_id).await })
    };
    // Wait for the delivery claim, then the whole purchase is refunded in
    // PayPal's dashboard and reported (applied straight through the one
    // entry point the webhook uses, to stay inside the 450 ms window).
    let started = Instant::now();
    loop {
        let current = billing::orders::load(&api.ledger(), &order_id)
            .await
            .unwrap();
        if current.is_some_and(|o| o.delivery == Some(Delivery::Delivering)) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "delivery never claimed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let capture_id = api.paypal.order(&order_id).unwrap().capture_ids[0].clone();
    let refund_id = api.paypal.dashboard_refund(&capture_id, None).unwrap();
    let report = billing::refunds::RefundReport {
        refund_id: refund_id.clone(),
        amount: usd("4.00"),
        currency: "USD".into(),
        state: billing::refunds::RefundState::Completed,
        movement: billing::refunds::Movement::Refund,
    };
    billing::refunds::apply_refund(
        &api.ledger(),
        api.payments.virtfusion().await,
        &order_id,
        &report,
        &billing::refunds::RefundSource::PayPal,
    )
    .await
    .unwrap();
    // Its webhook, later, changes nothing more.
    let event = api
        .paypal
        .signed_event(EventType::CaptureRefunded, &refund_id)
        .unwrap();
    let captured = capturing.await.unwrap();
    delivered_ok(&api, &event).await;
    assert_eq!(captured.status, 202, "{:?}", captured.body);
    assert_eq!(
        captured.body["status"],
        json!("needs_review"),
        "never a silent 'completed'"
    );
    assert_eq!(
        api.virtfusion.balance(user.as_str()),
        400,
        "VirtFusion credited them"
    );
    let stored = order(&api, &order_id).await;
    assert_eq!(stored.delivery, Some(Delivery::NeedsReview));
    assert_eq!(
        stored.credit_id,
        Some(api.virtfusion.credits()[0].id),
        "the credit id is stored, so it can be revoked"
    );
    assert_eq!(
        stored.review_reason.as_deref(),
        Some("refund_during_delivery")
    );
    assert!(review_list(&api).await.contains(&order_id));
}

// ---------------------------------------------------------------- point 3

#[tokio::test]
async fn a_pending_refund_takes_the_credits_and_gives_them_back_when_it_fails() {
    let api = TestApi::new().await;
    let (order_id, user, _) = paid_credits(&api, "10").await;
    api.paypal.set_pending_refunds(true, Some(2));

    let body = format!(r#"{{"orderId": "{order_id}", "amount": "4.00", "reason": "echeck"}}"#);
    let pending = admin_refund(&api, &body, "pending-1").await;
    assert_eq!(pending.status, 200, "{:?}", pending.body);
    assert_eq!(pending.body["status"], json!("pending"));
    assert_eq!(pending.body["balance"], json!("6.00"));
    let refund_id = pending.body["refundId"].as_str().unwrap().to_owned();
    let pending_event = api
        .paypal
        .signed_refund_event("PAYMENT.REFUND.PENDING", &refund_id)
        .unwrap();
    delivered_ok(&api, &pending_event).await;
    assert_eq!(api.ledger().balance(&user).await.unwrap(), usd("6.00"));

    // PayPal gives up on it: the credits come back, once.
    assert!(
        api.paypal
            .settle_refund(&refund_id, RefundSettlement::Failed)
    );
    let failed = api
        .paypal
        .signed_refund_event("PAYMENT.REFUND.FAILED", &refund_id)
        .unwrap();
    delivered_ok(&api, &failed).await;
    delivered_ok(&api, &failed).await;
    // A late PENDING redelivery (new event id) changes nothing.
    let late = api
        .paypal
        .signed_refund_event("PAYMENT.REFUND.PENDING", &refund_id)
        .unwrap();
    delivered_ok(&api, &late).await;
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("10.00"));
    assert_eq!(
        entry_kinds(&api, &user).await,
        vec!["purchase", "refund", "refund_reverted"]
    );
    let stored = order(&api, &order_id).await;
    assert_eq!(stored.refunded_amount, usd("0.00"));

    // A second pending refund that completes stays taken.
    let body = format!(r#"{{"orderId": "{order_id}", "amount": "3.00", "reason": "echeck 2"}}"#);
    let second = admin_refund(&api, &body, "pending-2").await;
    assert_eq!(second.body["status"], json!("pending"));
    let second_id = second.body["refundId"].as_str().unwrap().to_owned();
    assert!(
        api.paypal
            .settle_refund(&second_id, RefundSettlement::Completed)
    );
    let completed = api
        .paypal
        .signed_event(EventType::CaptureRefunded, &second_id)
        .unwrap();
    delivered_ok(&api, &completed).await;
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("7.00"));
    let record = billing::refunds::load_refund(&api.ledger(), &second_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, billing::refunds::RefundState::Completed);
    assert_eq!(order(&api, &order_id).await.refunded_amount, usd("3.00"));
}

#[tokio::test]
async fn a_failed_refund_reported_before_its_pending_takes_nothing() {
    let api = TestApi::new().await;
    let (order_id, user, _) = paid_credits(&api, "10").await;
    api.paypal.set_pending_refunds(true, Some(1));
    let paypal = api.payments.paypal().await.unwrap();
    let capture_id = api.paypal.order(&order_id).unwrap().capture_ids[0].clone();
    let refund = paypal
        .refund_capture(&capture_id, Some(usd("2.00")), "dashboard-like", None)
        .await
        .unwrap();
    let pending = api
        .paypal
        .signed_refund_event("PAYMENT.REFUND.PENDING", &refund.id)
        .unwrap();
    assert!(
        api.paypal
            .settle_refund(&refund.id, RefundSettlement::Cancelled)
    );
    let cancelled = api
        .paypal
        .signed_refund_event("PAYMENT.REFUND.CANCELLED", &refund.id)
        .unwrap();
    // Out of order: the outcome first, the pending notice after.
    delivered_ok(&api, &cancelled).await;
    delivered_ok(&api, &pending).await;
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("10.00"));
    assert_eq!(entry_kinds(&api, &user).await, vec!["purchase"]);
}

#[tokio::test]
async fn a_refund_in_another_currency_is_refused() {
    let api = TestApi::new().await;
    let (_, user, capture_id) = paid_credits(&api, "10").await;
    let event = api.paypal.signed_custom_event(
        "PAYMENT.CAPTURE.REFUNDED",
        "refund",
        json!({
            "id": api.paypal.unknown_id(),
            "status": "COMPLETED",
            "amount": {"currency_code": "EUR", "value": "10.00"},
            "links": [{"href": format!("{}/v2/payments/captures/{capture_id}", api.paypal.base_url()), "rel": "up", "method": "GET"}],
        }),
    );
    delivered_ok(&api, &event).await;
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("10.00"));
}

// ---------------------------------------------------------------- point 4

#[tokio::test]
async fn a_reversal_before_the_capture_was_recorded_settles_then_reverses_once() {
    let api = TestApi::new().await;
    let (order_id, user, _) = approved(&api, CREDITS, "10").await;
    // Captured at PayPal; our capture call died before recording it.
    let paypal = api.payments.paypal().await.unwrap();
    let captured = paypal
        .capture_order(&order_id, &format!("died-{order_id}"))
        .await
        .unwrap();
    let capture_id = captured.captures[0].id.clone();
    let reversal_id = api.paypal.reverse_capture(&capture_id).unwrap();
    let reversed = api
        .paypal
        .signed_event(EventType::CaptureReversed, &reversal_id)
        .unwrap();
    let body: Value = serde_json::from_slice(&reversed.body).unwrap();
    assert!(
        body["resource"].get("invoice_id").is_none(),
        "PayPal's REVERSED resource has no invoice_id"
    );
    assert_eq!(delivered_ok(&api, &reversed).await, json!("processed"));
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("0.00"));

    // The COMPLETED event arrives afterwards: nothing more.
    let completed = api
        .paypal
        .signed_event(EventType::CaptureCompleted, &capture_id)
        .unwrap();
    delivered_ok(&api, &completed).await;
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("0.00"));
    assert_eq!(entry_kinds(&api, &user).await, vec!["purchase", "reversal"]);
}

#[tokio::test]
async fn a_refund_event_is_not_marked_processed_while_paypal_cannot_be_asked() {
    let api = TestApi::new().await;
    let (order_id, user, _) = approved(&api, CREDITS, "8").await;
    let paypal = api.payments.paypal().await.unwrap();
    let captured = paypal
        .capture_order(&order_id, &format!("died-{order_id}"))
        .await
        .unwrap();
    let capture_id = captured.captures[0].id.clone();
    let reversal_id = api.paypal.reverse_capture(&capture_id).unwrap();
    let reversed = api
        .paypal
        .signed_event(EventType::CaptureReversed, &reversal_id)
        .unwrap();
    // PayPal's capture lookup is down: 5xx, so PayPal redelivers.
    api.paypal
        .set_failure(Operation::GetOrder, Failure::Status(503), None);
    let response = deliver(&api, &reversed).await;
    assert!(response.status >= 500, "{:?}", response.body);
    api.paypal.clear_failures();
    assert_eq!(delivered_ok(&api, &reversed).await, json!("processed"));
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("0.00"));
    assert_eq!(entry_kinds(&api, &user).await, vec!["purchase", "reversal"]);

    // A refund of a capture that is no order of ours: 200, not applied, not marked.
    let stranger = api.paypal.signed_custom_event(
        "PAYMENT.CAPTURE.REFUNDED",
        "refund",
        json!({
            "id": api.paypal.unknown_id(),
            "status": "COMPLETED",
            "amount": {"currency_code": "USD", "value": "1.00"},
            "links": [{"href": format!("{}/v2/payments/captures/NOSUCHCAPTURE", api.paypal.base_url()), "rel": "up", "method": "GET"}],
        }),
    );
    assert_eq!(delivered_ok(&api, &stranger).await, json!("ignored"));
    assert_eq!(
        delivered_ok(&api, &stranger).await,
        json!("ignored"),
        "looked at again"
    );
}

// ---------------------------------------------------------------- point 5

#[tokio::test]
async fn an_admin_refund_needs_an_idempotency_key_and_its_retry_refunds_once() {
    let api = TestApi::new().await;
    let (order_id, user, _) = paid_credits(&api, "10").await;
    let body = format!(r#"{{"orderId": "{order_id}", "amount": "2.50", "reason": "asked"}}"#);
    let admin = api.token(ADMIN, true);
    let keyless = api.send("POST", "/api/admin/refunds", &admin, &body).await;
    assert_eq!(keyless.status, 400, "{:?}", keyless.body);
    assert!(api.paypal.refunds().is_empty());

    // PayPal refunds, but its answer never arrives: 503 to the admin.
    api.paypal
        .set_failure(Operation::Refund, Failure::ApplyThenHang, Some(1));
    let lost = admin_refund(&api, &body, "retry-1").await;
    assert!(lost.status >= 502, "{:?}", lost.body);
    assert_eq!(api.paypal.refunds().len(), 1, "PayPal did refund");
    let retried = admin_refund(&api, &body, "retry-1").await;
    assert_eq!(retried.status, 200, "{:?}", retried.body);
    assert_eq!(api.paypal.refunds().len(), 1, "not a second PayPal refund");
    assert_eq!(retried.body["balance"], json!("7.50"));
    let again = admin_refund(&api, &body, "retry-1").await;
    assert_eq!(again.body, retried.body, "replayed");
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("7.50"));
}

#[tokio::test]
async fn an_admin_refund_retried_with_an_edited_body_after_a_lost_answer_is_422_and_refunds_once() {
    let api = TestApi::new().await;
    let (order_id, user, _) = paid_credits(&api, "10").await;
    let body = |amount: &str, reason: &str| {
        format!(r#"{{"orderId": "{order_id}", "amount": "{amount}", "reason": "{reason}"}}"#)
    };
    // PayPal refunds, but its answer never arrives: 503 to the admin.
    api.paypal
        .set_failure(Operation::Refund, Failure::ApplyThenHang, Some(1));
    let lost = admin_refund(&api, &body("2.50", "asked"), "edit-1").await;
    assert!(lost.status >= 502, "{:?}", lost.body);
    assert_eq!(api.paypal.refunds().len(), 1, "PayPal did refund");

    // The admin edits the reason (then the amount) and sends the same key again.
    for edited in [body("2.50", "asked by phone"), body("3.00", "asked")] {
        let reused = admin_refund(&api, &edited, "edit-1").await;
        assert_eq!(reused.status, 422, "{:?}", reused.body);
        assert_eq!(reused.body["code"], json!("idempotency_key_reused"));
        assert_eq!(api.paypal.refunds().len(), 1, "no second PayPal refund");
    }
    // The request as first sent settles PayPal's one refund.
    let retried = admin_refund(&api, &body("2.50", "asked"), "edit-1").await;
    assert_eq!(retried.status, 200, "{:?}", retried.body);
    let refunds = api.paypal.refunds();
    assert_eq!(refunds.len(), 1);
    assert_eq!(retried.body["refundId"], json!(refunds[0].id));
    assert_eq!(retried.body["balance"], json!("7.50"));
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("7.50"));
    assert_eq!(entry_kinds(&api, &user).await, vec!["purchase", "refund"]);
}

#[tokio::test]
async fn a_whole_refund_retried_after_its_lost_answer_and_its_webhook_answers_that_refund() {
    let api = TestApi::new().await;
    let (order_id, user, _) = paid_credits(&api, "10").await;
    let body = format!(r#"{{"orderId": "{order_id}", "reason": "whole"}}"#);
    api.paypal
        .set_failure(Operation::Refund, Failure::ApplyThenHang, Some(1));
    let lost = admin_refund(&api, &body, "whole-lost").await;
    assert!(lost.status >= 502, "{:?}", lost.body);
    let refund_id = api.paypal.refunds()[0].id.clone();
    // PayPal's webhook records the refund before the admin retries.
    let refunded = api
        .paypal
        .signed_event(EventType::CaptureRefunded, &refund_id)
        .unwrap();
    delivered_ok(&api, &refunded).await;
    assert_eq!(order(&api, &order_id).await.refunded_amount, usd("10.00"));

    // Nothing remains to refund, yet this key's refund is the one PayPal made.
    let retried = admin_refund(&api, &body, "whole-lost").await;
    assert_eq!(retried.status, 200, "{:?}", retried.body);
    assert_eq!(retried.body["refundId"], json!(refund_id));
    assert_eq!(retried.body["amount"], json!("10.00"));
    assert_eq!(api.paypal.refunds().len(), 1);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("0.00"));
    assert_eq!(entry_kinds(&api, &user).await, vec!["purchase", "refund"]);
}

/// The record's claim as a Lambda that died at PayPal leaves it: held, lease
/// running until `lease_until` (unix seconds).
async fn set_claim(api: &TestApi, key: &str, lease_until: i64) {
    let ledger = api.ledger();
    ledger
        .client()
        .update_item()
        .table_name(ledger.table())
        .key("pk", AttributeValue::S(format!("IDEM#{ADMIN}#{key}")))
        .key("sk", AttributeValue::S("IDEM".into()))
        .update_expression("SET claim = :dead, leaseUntil = :until")
        .expression_attribute_values(":dead", AttributeValue::S("dead-lambda".into()))
        .expression_attribute_values(":until", AttributeValue::N(lease_until.to_string()))
        .condition_expression("attribute_exists(pk)")
        .send()
        .await
        .expect("claim set");
}

#[tokio::test]
async fn an_admin_refund_whose_lambda_died_at_paypal_is_taken_over_once_its_lease_ran_out() {
    let api = TestApi::new().await;
    let (order_id, user, _) = paid_credits(&api, "10").await;
    let body = format!(r#"{{"orderId": "{order_id}", "amount": "4.00", "reason": "died"}}"#);
    api.paypal
        .set_failure(Operation::Refund, Failure::ApplyThenHang, Some(1));
    let lost = admin_refund(&api, &body, "dead-1").await;
    assert!(lost.status >= 502, "{:?}", lost.body);
    // As if that Lambda had died at PayPal instead of letting its claim go.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    set_claim(&api, "dead-1", now + 60).await;
    let held = admin_refund(&api, &body, "dead-1").await;
    assert_eq!(held.status, 409, "{:?}", held.body);
    assert_eq!(held.body["code"], json!("idempotency_in_progress"));
    // Its lease runs out: the retry carries on with the same PayPal call.
    set_claim(&api, "dead-1", now - 1).await;
    let retried = admin_refund(&api, &body, "dead-1").await;
    assert_eq!(retried.status, 200, "{:?}", retried.body);
    let refunds = api.paypal.refunds();
    assert_eq!(refunds.len(), 1);
    assert_eq!(retried.body["refundId"], json!(refunds[0].id));
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("6.00"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_admin_refunds_with_one_key_make_one_paypal_refund() {
    let api = Arc::new(TestApi::new().await);
    let (order_id, user, _) = paid_credits(&api, "10").await;
    let body = |reason: &str| {
        format!(r#"{{"orderId": "{order_id}", "amount": "2.50", "reason": "{reason}"}}"#)
    };
    // PayPal takes its time with the first refund: the others arrive meanwhile.
    api.paypal.set_failure(
        Operation::Refund,
        Failure::Delay(Duration::from_millis(500)),
        Some(1),
    );
    let mut tasks = JoinSet::new();
    for i in 0..8 {
        let (api, body) = (api.clone(), body(if i % 2 == 0 { "a" } else { "b" }));
        tasks.spawn(async move { admin_refund(&api, &body, "same-key").await });
    }
    let (mut answered, mut statuses) = (Vec::new(), Vec::new());
    while let Some(response) = tasks.join_next().await {
        let response = response.unwrap();
        statuses.push(response.status);
        match response.status {
            200 => answered.push(response.body["refundId"].clone()),
            409 => assert_eq!(response.body["code"], json!("idempotency_in_progress")),
            422 => assert_eq!(response.body["code"], json!("idempotency_key_reused")),
            other => panic!("unexpected {other}: {:?}", response.body),
        }
    }
    // While the first is at PayPal: its body is 409 (in progress), the other 422.
    assert!(statuses.contains(&409), "{statuses:?}");
    assert!(statuses.contains(&422), "{statuses:?}");
    let refunds = api.paypal.refunds();
    assert_eq!(refunds.len(), 1, "one PayPal refund for one key");
    assert!(answered.iter().all(|id| *id == json!(refunds[0].id)));
    // Afterwards: the body that won replays it, the other is 422.
    let mut statuses = vec![
        admin_refund(&api, &body("a"), "same-key").await.status,
        admin_refund(&api, &body("b"), "same-key").await.status,
    ];
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 422]);
    assert_eq!(api.paypal.refunds().len(), 1);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("7.50"));
}

// ---------------------------------------------------------------- point 6

#[tokio::test]
async fn deliveries_virtfusion_refuses_for_good_back_off_and_never_block_newer_ones() {
    let api = TestApi::new().await;
    let ledger = api.ledger();
    let vf = api.payments.virtfusion().await;
    // Twelve old purchases for users VirtFusion does not know (404, for good).
    let mut dead = Vec::new();
    for _ in 0..12 {
        let (order_id, user, token) = approved(&api, TOKENS, "1").await;
        api.virtfusion.forget_user(user.as_str());
        let response = capture(&api, TOKENS, &token, &order_id).await;
        assert_eq!(response.body["status"], json!("pending"));
        dead.push(order_id);
    }
    // A newer one whose first delivery failed only because VirtFusion was down.
    api.virtfusion
        .set_failure(FailureMode::Status(503), Some(1));
    let (good_id, good_user, _, response) = paid_tokens(&api, "2").await;
    api.virtfusion.clear_failure();
    assert_eq!(
        response.body["status"],
        json!("needs_review"),
        "{:?}",
        response.body
    );
    // (a 503 may have been applied: review) — resolve it as not delivered, so it is owed again.
    billing::deliveries::resolve(
        &ledger,
        &good_id,
        billing::deliveries::Found::Nothing,
        ADMIN,
        &billing::Reason::parse("VirtFusion shows nothing").unwrap(),
    )
    .await
    .unwrap();

    // Each run retries at most 10, soonest due first.
    let deadline = Instant::now() + Duration::from_secs(30);
    let now = time::OffsetDateTime::now_utc();
    let first = billing::deliveries::retry_pending(&ledger, vf, 10, now, deadline)
        .await
        .unwrap();
    let second = billing::deliveries::retry_pending(&ledger, vf, 10, now, deadline)
        .await
        .unwrap();
    println!("runs at the same clock: {first:?} then {second:?}");
    assert_eq!(
        api.virtfusion.balance(good_user.as_str()),
        200,
        "the newer one is delivered"
    );
    assert_eq!(
        order(&api, &good_id).await.delivery,
        Some(Delivery::Delivered)
    );
    let refused = order(&api, &dead[0]).await;
    assert_eq!(refused.delivery, Some(Delivery::Pending));
    assert!(refused.delivery_attempts >= 1);

    // Later runs (the job's clock a day on each time): after five refusals, review.
    for day in 1..=6 {
        let at = now + time::Duration::days(day);
        billing::deliveries::retry_pending(&ledger, vf, 20, at, deadline)
            .await
            .unwrap();
    }
    for order_id in &dead {
        let stored = order(&api, order_id).await;
        assert_eq!(stored.delivery, Some(Delivery::NeedsReview), "{order_id}");
        assert_eq!(stored.review_reason.as_deref(), Some("refused"));
        assert_eq!(
            stored.delivery_attempts,
            billing::deliveries::MAX_DEFINITE_REFUSALS
        );
    }
    assert_eq!(
        api.virtfusion.credits().len(),
        1,
        "only the good one was ever credited"
    );
}

// ---------------------------------------------------------------- point 7

#[tokio::test]
async fn the_admins_reason_stays_internal_and_the_note_to_payer_reaches_paypal() {
    let api = TestApi::new().await;
    let (order_id, user, _) = paid_credits(&api, "10").await;
    let reason = "r".repeat(300);
    let body = format!(
        r#"{{"orderId": "{order_id}", "amount": 1, "reason": "{reason}", "noteToPayer": "Sorry for the trouble"}}"#
    );
    let response = admin_refund(&api, &body, "note-1").await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let refunds = api.paypal.refunds();
    assert_eq!(refunds[0].note.as_deref(), Some("Sorry for the trouble"));
    let too_long = format!(
        r#"{{"orderId": "{order_id}", "amount": 1, "reason": "r", "noteToPayer": "{}"}}"#,
        "n".repeat(256)
    );
    assert_eq!(admin_refund(&api, &too_long, "note-2").await.status, 400);
    let without_note =
        format!(r#"{{"orderId": "{order_id}", "amount": 1, "reason": "internal only"}}"#);
    assert_eq!(
        admin_refund(&api, &without_note, "note-3").await.status,
        200
    );
    assert_eq!(
        api.paypal.refunds()[1].note,
        None,
        "the reason is never sent"
    );
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("8.00"));
}

// ---------------------------------------------------------------- point 8

#[tokio::test]
async fn a_won_dispute_restores_what_the_reversal_took_exactly_once() {
    let api = TestApi::new().await;
    let (order_id, user, capture_id) = paid_credits(&api, "10").await;
    let admin = api.token(ADMIN, true);
    api.send(
        "DELETE",
        &format!("/api/admin/users/{user}/custom-credits"),
        &admin,
        r#"{"amount": 6, "reason": "spent"}"#,
    )
    .await;
    let reversal_id = api.paypal.reverse_capture(&capture_id).unwrap();
    let reversed = api
        .paypal
        .signed_event(EventType::CaptureReversed, &reversal_id)
        .unwrap();
    delivered_ok(&api, &reversed).await;
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("-6.00"));

    let resolved = api.paypal.win_dispute(&reversal_id).unwrap();
    assert_eq!(resolved.event_type, "CUSTOMER.DISPUTE.RESOLVED");
    assert_eq!(delivered_ok(&api, &resolved).await, json!("processed"));
    assert_eq!(delivered_ok(&api, &resolved).await, json!("duplicate"));
    // The same outcome reported again under another event id: still once.
    let body: Value = serde_json::from_slice(&resolved.body).unwrap();
    let again = api.paypal.signed_custom_event(
        "CUSTOMER.DISPUTE.RESOLVED",
        "dispute",
        body["resource"].clone(),
    );
    delivered_ok(&api, &again).await;
    // And a late redelivery of the reversal does not take it again.
    let late = api
        .paypal
        .signed_event(EventType::CaptureReversed, &reversal_id)
        .unwrap();
    delivered_ok(&api, &late).await;
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("4.00"));
    assert_eq!(
        entry_kinds(&api, &user).await,
        vec!["purchase", "admin_remove", "reversal", "reversal_cancelled"]
    );
    assert_eq!(order(&api, &order_id).await.refunded_amount, usd("0.00"));
}

/// Finding 4 of issue 25: PayPal reports the won dispute before the
/// reversal it undoes (webhooks are not ordered). The win is remembered and
/// applied when the reversal lands, once, whatever the duplicates.
#[tokio::test]
async fn a_dispute_won_before_its_reversal_lands_restores_it_when_it_does() {
    let api = TestApi::new().await;
    let (order_id, user, capture_id) = paid_credits(&api, "10").await;
    let reversal_id = api.paypal.reverse_capture(&capture_id).unwrap();
    let reversed = api
        .paypal
        .signed_event(EventType::CaptureReversed, &reversal_id)
        .unwrap();
    let resolved = api.paypal.win_dispute(&reversal_id).unwrap();

    // The dispute's outcome arrives first: nothing to restore yet, but remembered.
    assert_eq!(delivered_ok(&api, &resolved).await, json!("processed"));
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("10.00"));
    // The late reversal: taken, then restored at once (the dispute was won).
    assert_eq!(delivered_ok(&api, &reversed).await, json!("processed"));
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("10.00"));
    // Duplicates of both, and the outcome again under another event id.
    assert_eq!(delivered_ok(&api, &reversed).await, json!("duplicate"));
    assert_eq!(delivered_ok(&api, &resolved).await, json!("duplicate"));
    let body: Value = serde_json::from_slice(&resolved.body).unwrap();
    let again = api.paypal.signed_custom_event(
        "CUSTOMER.DISPUTE.RESOLVED",
        "dispute",
        body["resource"].clone(),
    );
    delivered_ok(&api, &again).await;
    let late = api
        .paypal
        .signed_event(EventType::CaptureReversed, &reversal_id)
        .unwrap();
    delivered_ok(&api, &late).await;
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("10.00"));
    assert_eq!(
        entry_kinds(&api, &user).await,
        vec!["purchase", "reversal", "reversal_cancelled"]
    );
    assert_eq!(order(&api, &order_id).await.refunded_amount, usd("0.00"));
    let record = billing::refunds::load_refund(&api.ledger(), &reversal_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, billing::refunds::RefundState::Cancelled);
}

/// A PayPal claim (`INTERNAL`) the merchant won reversed nothing: it is not
/// remembered, so a later card chargeback of the same capture (the buyer
/// went to the bank after losing) stays taken.
#[tokio::test]
async fn a_won_paypal_claim_is_not_taken_for_a_later_chargeback() {
    let api = TestApi::new().await;
    let (_, user, capture_id) = paid_credits(&api, "10").await;
    let claim = api.paypal.signed_custom_event(
        "CUSTOMER.DISPUTE.RESOLVED",
        "dispute",
        json!({
            "dispute_id": "PP-D-CLAIM-1",
            "disputed_transactions": [{"seller_transaction_id": capture_id}],
            "reason": "MERCHANDISE_OR_SERVICE_NOT_RECEIVED",
            "status": "RESOLVED",
            "dispute_amount": {"currency_code": "USD", "value": "10.00"},
            "dispute_outcome": {"outcome_code": "RESOLVED_SELLER_FAVOUR"},
            "dispute_life_cycle_stage": "CHARGEBACK",
            "dispute_channel": "INTERNAL",
        }),
    );
    assert_eq!(delivered_ok(&api, &claim).await, json!("processed"));
    let reversal_id = api.paypal.reverse_capture(&capture_id).unwrap();
    let reversed = api
        .paypal
        .signed_event(EventType::CaptureReversed, &reversal_id)
        .unwrap();
    assert_eq!(delivered_ok(&api, &reversed).await, json!("processed"));
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("0.00"));
    assert_eq!(entry_kinds(&api, &user).await, vec!["purchase", "reversal"]);
}

/// The won dispute and its reversal delivered at once, in both orders and
/// duplicated: each purchase ends restored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_won_dispute_racing_its_reversal_restores_exactly_once() {
    let api = Arc::new(TestApi::new().await);
    let mut users = Vec::new();
    let mut tasks = JoinSet::new();
    for _ in 0..4 {
        let (_, user, capture_id) = paid_credits(&api, "6").await;
        let reversal_id = api.paypal.reverse_capture(&capture_id).unwrap();
        let reversed = api
            .paypal
            .signed_event(EventType::CaptureReversed, &reversal_id)
            .unwrap();
        let resolved = api.paypal.win_dispute(&reversal_id).unwrap();
        users.push(user);
        for i in 0..6 {
            let api = api.clone();
            let event = if i % 2 == 0 {
                reversed.clone()
            } else {
                resolved.clone()
            };
            tasks.spawn(async move { deliver_until_accepted(&api, &event).await.status });
        }
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    for user in &users {
        assert_eq!(assert_audit(&api.ledger(), user).await, usd("6.00"));
        assert_eq!(
            entry_kinds(&api, user).await,
            vec!["purchase", "reversal", "reversal_cancelled"]
        );
    }
}

// ------------------------------------------------------------------ races

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_refund_retries_webhooks_and_the_renewal_job_racing_take_back_once() {
    let api = Arc::new(TestApi::new().await);
    let (order_id, user, capture_id) = paid_credits(&api, "20").await;
    let body = format!(r#"{{"orderId": "{order_id}", "amount": "5.00", "reason": "race"}}"#);
    let first = admin_refund(&api, &body, "race-1").await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let refund_id = first.body["refundId"].as_str().unwrap().to_owned();
    let refunded = api
        .paypal
        .signed_event(EventType::CaptureRefunded, &refund_id)
        .unwrap();
    // A dashboard refund of the same order, racing too.
    let dashboard_id = api.paypal.dashboard_refund(&capture_id, Some(300)).unwrap();
    let dashboard = api
        .paypal
        .signed_event(EventType::CaptureRefunded, &dashboard_id)
        .unwrap();
    let mut tasks = JoinSet::new();
    for i in 0..24 {
        let (api, body, refunded, dashboard) = (
            api.clone(),
            body.clone(),
            refunded.clone(),
            dashboard.clone(),
        );
        tasks.spawn(async move {
            let response = match i % 4 {
                0 => admin_refund(&api, &body, "race-1").await,
                1 => deliver_until_accepted(&api, &refunded).await,
                2 => deliver_until_accepted(&api, &dashboard).await,
                _ => TestResponse {
                    status: 200,
                    body: run_job(&api, time::OffsetDateTime::now_utc()).await,
                    request_id: None,
                    headers: Vec::new(),
                },
            };
            (i, response.status, response.body)
        });
    }
    while let Some(status) = tasks.join_next().await {
        let (i, status, body) = status.unwrap();
        assert_eq!(status, 200, "task {i}: {body}");
    }
    assert_eq!(
        api.paypal.refunds().len(),
        2,
        "one admin refund, one dashboard refund"
    );
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("12.00"));
    assert_eq!(api.ledger().audit(&user).await.unwrap().entries, 3);
    assert_eq!(order(&api, &order_id).await.refunded_amount, usd("8.00"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_refund_racing_the_delivery_job_either_revokes_or_lists_never_gives_away() {
    for round in 0..3 {
        let api = Arc::new(TestApi::new().await);
        // Capture while VirtFusion is unreachable: the delivery is owed.
        api.virtfusion
            .set_failure(FailureMode::Status(429), Some(1));
        let (order_id, user, capture_id, captured) = paid_tokens(&api, "3").await;
        api.virtfusion.clear_failure();
        assert_eq!(
            captured.body["status"],
            json!("pending"),
            "{:?}",
            captured.body
        );
        let refund_id = api.paypal.dashboard_refund(&capture_id, None).unwrap();
        let event = api
            .paypal
            .signed_event(EventType::CaptureRefunded, &refund_id)
            .unwrap();
        let later = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        let mut tasks = JoinSet::new();
        for i in 0..6 {
            let (api, event) = (api.clone(), event.clone());
            tasks.spawn(async move {
                if i % 2 == 0 {
                    assert_eq!(deliver_until_accepted(&api, &event).await.status, 200);
                } else {
                    // The renewal job (it retries pending deliveries).
                    run_job(&api, later).await;
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        let stored = order(&api, &order_id).await;
        let tokens = api.virtfusion.balance(user.as_str());
        println!(
            "round {round}: delivery {:?}, reason {:?}, tokens {tokens}",
            stored.delivery, stored.review_reason
        );
        match stored.delivery {
            // Cancelled before delivery, or delivered then revoked.
            Some(Delivery::Refunded) => {
                assert_eq!(tokens, 0);
                assert!(api.virtfusion.credits().is_empty());
            }
            // Delivered while refunded: listed, with the credit id to revoke.
            Some(Delivery::NeedsReview) => {
                assert_eq!(tokens, 300);
                assert_eq!(stored.credit_id, Some(api.virtfusion.credits()[0].id));
                assert!(review_list(&api).await.contains(&order_id));
            }
            other => panic!("unexpected delivery state {other:?}"),
        }
        assert_eq!(stored.refunded_amount, usd("3.00"));
        assert_eq!(api.paypal.refunds().len(), 1);
        assert_eq!(assert_audit(&api.ledger(), &user).await, usd("0.00"));
    }
}
