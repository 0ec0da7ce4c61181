#![recursion_limit = "256"]
//! Events of the after-purchase movements and of the reconciliation, end to
//! end as in `events.rs`: the change commits its outbox item, the stream is
//! read as Lambda's event source mapping reads it, the real
//! `events-publisher` calls `PutEvents` on moto's EventBridge, and the tests
//! read the events back from an SQS queue a rule targets. Each movement is
//! reported exactly once; a repeated webhook, a replayed admin request or a
//! rerun of the reconciliation publishes nothing more.

use billing::events::DetailType;
use devstack::paypal::{EventType, RefundSettlement, SignedEvent};
use integration_tests::api::{TestApi, TestResponse};
use integration_tests::events::{EventsEnv, Received};
use integration_tests::{assert_audit, new_user, usd};
use ledger::UserId;
use serde_json::{Value, json};
use std::time::Duration;

const CREDITS: &str = "/api/billing/custom-credits";
const TOKENS: &str = "/api/billing/virtfusion-tokens";

async fn deliver(api: &TestApi, event: &SignedEvent) -> Value {
    let headers: Vec<(&str, &str)> = event
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = String::from_utf8(event.body.clone()).unwrap();
    let response =
        Box::pin(api.call("POST", "/webhooks/paypal", None, Some(&body), &headers)).await;
    assert_eq!(
        response.status, 200,
        "{}: {:?}",
        event.event_type, response.body
    );
    response.body["outcome"].clone()
}

async fn admin_refund(api: &TestApi, body: &str, key: &str) -> TestResponse {
    let token = api.token("900", true);
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

/// A purchase paid through the capture route; (order id, user, capture id, capture answer).
async fn paid(api: &TestApi, route: &str, amount: &str) -> (String, UserId, String, Value) {
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let created = api
        .send(
            "POST",
            &format!("{route}/add"),
            &token,
            &format!(r#"{{"amount": {amount}}}"#),
        )
        .await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let order_id = created.body["orderId"].as_str().unwrap().to_owned();
    assert!(api.paypal.approve(&order_id));
    let captured = api
        .send(
            "POST",
            &format!("{route}/capture"),
            &token,
            &format!(r#"{{"orderId": "{order_id}"}}"#),
        )
        .await;
    assert_eq!(captured.status, 200, "{:?}", captured.body);
    let capture_id = api.paypal.order(&order_id).unwrap().capture_ids[0].clone();
    (order_id, user, capture_id, captured.body)
}

/// Publishes what is pending; what arrived, sorted by type.
async fn published(events: &mut EventsEnv) -> Vec<Received> {
    let pumped = events.publish().await;
    assert_eq!(pumped.failed_batches, 0, "publisher failed");
    let mut got = events.received().await;
    got.sort_by(|a, b| a.detail_type.cmp(&b.detail_type));
    got
}

fn types(events: &[Received]) -> Vec<&str> {
    events.iter().map(|e| e.detail_type.as_str()).collect()
}

fn one(events: &[Received], t: DetailType) -> &Received {
    let found: Vec<&Received> = events
        .iter()
        .filter(|e| e.detail_type == t.as_str())
        .collect();
    assert_eq!(found.len(), 1, "one {}: {events:?}", t.as_str());
    found[0]
}

#[tokio::test]
async fn refunds_publish_completed_or_failed_once_whoever_reports_them() {
    let api = TestApi::new().await;
    let mut events = EventsEnv::new(&api.table).await;
    let (order_id, user, capture_id, _) = paid(&api, CREDITS, "20").await;
    assert_eq!(types(&published(&mut events).await), ["credits.purchased"]);

    // A pending refund reports nothing yet; its failure reports refund.failed once.
    api.paypal.set_pending_refunds(true, Some(1));
    let body = format!(r#"{{"orderId": "{order_id}", "amount": "4.00", "reason": "echeck"}}"#);
    let pending = admin_refund(&api, &body, "pending-1").await;
    assert_eq!(
        pending.body["status"],
        json!("pending"),
        "{:?}",
        pending.body
    );
    let refund_id = pending.body["refundId"].as_str().unwrap().to_owned();
    let notice = api
        .paypal
        .signed_refund_event("PAYMENT.REFUND.PENDING", &refund_id)
        .unwrap();
    deliver(&api, &notice).await;
    assert!(published(&mut events).await.is_empty());
    assert!(
        api.paypal
            .settle_refund(&refund_id, RefundSettlement::Failed)
    );
    let failed = api
        .paypal
        .signed_refund_event("PAYMENT.REFUND.FAILED", &refund_id)
        .unwrap();
    deliver(&api, &failed).await;
    assert_eq!(deliver(&api, &failed).await, json!("duplicate"));
    let late = api
        .paypal
        .signed_refund_event("PAYMENT.REFUND.PENDING", &refund_id)
        .unwrap();
    deliver(&api, &late).await;
    let got = published(&mut events).await;
    assert_eq!(types(&got), ["refund.failed"]);
    let detail = &got[0].detail;
    assert_eq!(detail["userId"], json!(user.as_str()));
    assert_eq!(detail["refundId"], json!(refund_id));
    assert_eq!(detail["orderId"], json!(order_id));
    assert_eq!(detail["status"], json!("failed"));
    assert_eq!(detail["amount"], json!("4.00"));
    assert_eq!(detail["amountReturned"], json!("4.00"));
    assert_eq!(detail["balance"], json!("20.00"));
    assert_eq!(detail["refundedAmount"], json!("0.00"));

    // Pending, then completed at PayPal: refund.completed when it completes
    // (the credits were taken at pending), once.
    api.paypal.set_pending_refunds(true, Some(1));
    let body = format!(r#"{{"orderId": "{order_id}", "amount": "5.00", "reason": "echeck 2"}}"#);
    let second = admin_refund(&api, &body, "pending-2").await;
    assert_eq!(second.body["status"], json!("pending"), "{:?}", second.body);
    let second_id = second.body["refundId"].as_str().unwrap().to_owned();
    assert!(published(&mut events).await.is_empty());
    assert!(
        api.paypal
            .settle_refund(&second_id, RefundSettlement::Completed)
    );
    let completed = api
        .paypal
        .signed_event(EventType::CaptureRefunded, &second_id)
        .unwrap();
    deliver(&api, &completed).await;
    assert_eq!(deliver(&api, &completed).await, json!("duplicate"));
    let got = published(&mut events).await;
    assert_eq!(types(&got), ["refund.completed"]);
    assert_eq!(got[0].detail["refundId"], json!(second_id));
    assert_eq!(got[0].detail["amount"], json!("5.00"));
    assert_eq!(got[0].detail["refundedAmount"], json!("5.00"));

    // Completed at once: refund.completed; the admin's retry (same key) and
    // PayPal's webhook about the same refund add nothing.
    let body = format!(r#"{{"orderId": "{order_id}", "amount": "3.00", "reason": "goodwill"}}"#);
    let done = admin_refund(&api, &body, "done-1").await;
    assert_eq!(done.body["status"], json!("completed"), "{:?}", done.body);
    let done_id = done.body["refundId"].as_str().unwrap().to_owned();
    assert_eq!(admin_refund(&api, &body, "done-1").await.status, 200);
    let refunded = api
        .paypal
        .signed_event(EventType::CaptureRefunded, &done_id)
        .unwrap();
    deliver(&api, &refunded).await;
    let got = published(&mut events).await;
    assert_eq!(types(&got), ["refund.completed"]);
    let detail = &got[0].detail;
    assert_eq!(detail["refundId"], json!(done_id));
    assert_eq!(detail["amount"], json!("3.00"));
    assert_eq!(detail["balance"], json!("12.00"));
    assert_eq!(detail["refundedAmount"], json!("8.00"));
    assert_eq!(detail["capturedAmount"], json!("20.00"));
    assert_eq!(detail["kind"], json!("credits"));
    assert_eq!(got[0].event_id().len(), 36);

    // Cancelled before its pending notice arrived (a dashboard refund):
    // refund.failed with nothing given back, once.
    api.paypal.set_pending_refunds(true, Some(1));
    let paypal = api.payments.paypal().await.unwrap();
    let dashboard = paypal
        .refund_capture(&capture_id, Some(usd("2.00")), "dashboard-like", None)
        .await
        .unwrap();
    let notice = api
        .paypal
        .signed_refund_event("PAYMENT.REFUND.PENDING", &dashboard.id)
        .unwrap();
    assert!(
        api.paypal
            .settle_refund(&dashboard.id, RefundSettlement::Cancelled)
    );
    let cancelled = api
        .paypal
        .signed_refund_event("PAYMENT.REFUND.CANCELLED", &dashboard.id)
        .unwrap();
    deliver(&api, &cancelled).await;
    deliver(&api, &notice).await;
    let got = published(&mut events).await;
    assert_eq!(types(&got), ["refund.failed"]);
    assert_eq!(got[0].detail["status"], json!("cancelled"));
    assert_eq!(got[0].detail["amountReturned"], json!("0.00"));
    assert_eq!(got[0].detail["refundId"], json!(dashboard.id));
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("12.00"));
}

#[tokio::test]
async fn a_reversal_and_its_won_dispute_publish_once_each() {
    let api = TestApi::new().await;
    let mut events = EventsEnv::new(&api.table).await;
    let (order_id, user, capture_id, _) = paid(&api, CREDITS, "10").await;
    published(&mut events).await;

    let reversal_id = api.paypal.reverse_capture(&capture_id).unwrap();
    let reversed = api
        .paypal
        .signed_event(EventType::CaptureReversed, &reversal_id)
        .unwrap();
    deliver(&api, &reversed).await;
    deliver(&api, &reversed).await;
    let got = published(&mut events).await;
    // 10.00 → 0.00 also crosses the low-balance threshold.
    assert_eq!(types(&got), ["credits.balance_low", "payment.reversed"]);
    let detail = &one(&got, DetailType::PaymentReversed).detail;
    assert_eq!(detail["reversalId"], json!(reversal_id));
    assert_eq!(detail["orderId"], json!(order_id));
    assert_eq!(detail["userId"], json!(user.as_str()));
    assert_eq!(detail["amount"], json!("10.00"));
    assert_eq!(detail["balance"], json!("0.00"));

    let won = api.paypal.win_dispute(&reversal_id).unwrap();
    assert_eq!(deliver(&api, &won).await, json!("processed"));
    assert_eq!(deliver(&api, &won).await, json!("duplicate"));
    // The same outcome under another event id, and a late reversal: nothing more.
    let body: Value = serde_json::from_slice(&won.body).unwrap();
    let again = api.paypal.signed_custom_event(
        "CUSTOMER.DISPUTE.RESOLVED",
        "dispute",
        body["resource"].clone(),
    );
    deliver(&api, &again).await;
    deliver(&api, &reversed).await;
    let got = published(&mut events).await;
    assert_eq!(types(&got), ["payment.reversal_cancelled"]);
    let detail = &got[0].detail;
    assert_eq!(detail["reversalId"], json!(reversal_id));
    assert_eq!(detail["amount"], json!("10.00"));
    assert_eq!(detail["creditsReturned"], json!("10.00"));
    assert_eq!(detail["balance"], json!("10.00"));
    assert_eq!(detail["refundedAmount"], json!("0.00"));
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("10.00"));
}

#[tokio::test]
async fn a_whole_token_refund_reports_the_tokens_and_what_happens_to_them() {
    let api = TestApi::new().await;
    let mut events = EventsEnv::new(&api.table).await;
    let (order_id, user, _, body) = paid(&api, TOKENS, "4").await;
    assert_eq!(body["status"], json!("completed"), "{body:?}");
    assert_eq!(types(&published(&mut events).await), ["tokens.purchased"]);

    let request = format!(r#"{{"orderId": "{order_id}", "reason": "changed mind"}}"#);
    let refund = admin_refund(&api, &request, "tokens-1").await;
    assert_eq!(refund.status, 200, "{:?}", refund.body);
    assert_eq!(
        refund.body["tokensRevoked"],
        json!(true),
        "{:?}",
        refund.body
    );
    let refund_id = refund.body["refundId"].as_str().unwrap().to_owned();
    let webhook = api
        .paypal
        .signed_event(EventType::CaptureRefunded, &refund_id)
        .unwrap();
    deliver(&api, &webhook).await;
    let got = published(&mut events).await;
    assert_eq!(types(&got), ["refund.completed"]);
    let detail = &got[0].detail;
    assert_eq!(detail["userId"], json!(user.as_str()));
    assert_eq!(detail["kind"], json!("tokens"));
    assert_eq!(detail["tokens"], json!(400));
    assert_eq!(detail["amount"], json!("4.00"));
    assert_eq!(detail["tokenAction"], json!("settle_at_virtfusion"));
    assert!(
        detail.get("balance").is_none(),
        "no credits moved: {detail}"
    );
}

#[tokio::test]
async fn a_new_mismatch_publishes_once_and_reruns_publish_nothing() {
    let api = TestApi::new().await;
    let mut events = EventsEnv::new(&api.table).await;
    // A payment for no order of ours (someone used the PayPal account by hand).
    let paypal = api.payments.paypal().await.unwrap();
    let foreign = paypal
        .create_order(&paypal::CreateOrder {
            amount: usd("3.00"),
            custom_id: "someone".into(),
            invoice_id: "not-ours-1".into(),
            description: "elsewhere".into(),
            request_id: "foreign-1".into(),
            return_url: None,
            cancel_url: None,
        })
        .await
        .unwrap();
    assert!(api.paypal.approve(&foreign.id));
    let captured = paypal
        .capture_order(&foreign.id, "foreign-capture")
        .await
        .unwrap();
    let capture_id = captured.captures[0].id.clone();

    let job = reconcile_cron_fn::Deps::new(api.function_ledger("reconcile-cron")).with_clients(
        paypal::PayPalClient::new(
            &api.paypal.base_url(),
            billing_config::SecretValue::new(integration_tests::api::PAYPAL_CLIENT.0),
            billing_config::SecretValue::new(integration_tests::api::PAYPAL_CLIENT.1),
            Duration::from_secs(5),
        )
        .unwrap(),
        None,
    );
    let run = || async {
        let event = json!({"version": "0", "detail-type": "Scheduled Event",
            "source": "aws.events", "time": ledger::now_rfc3339(), "detail": {}});
        reconcile_cron_fn::handle(
            &job,
            lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default()),
        )
        .await
        .expect("reconciliation runs")
    };
    let first = run().await;
    assert_eq!(first["newMismatches"], 1, "{first}");
    let got = published(&mut events).await;
    assert_eq!(types(&got), ["reconciliation.mismatch"]);
    let detail = &got[0].detail;
    assert_eq!(detail["mismatchId"], json!(format!("{capture_id}-unknown")));
    assert_eq!(detail["kind"], json!("unknown_payment"));
    assert_eq!(detail["transactionId"], json!(capture_id));
    assert_eq!(detail["paypalAmount"], json!("3.00"));
    assert_eq!(detail["currency"], json!("USD"));
    // PayPal's custom_id is the only user this payment names.
    assert_eq!(detail["userId"], json!("someone"));
    assert_eq!(detail["runId"], first["runId"]);

    // A rerun finds the same open mismatch: nothing new is published.
    let second = run().await;
    assert_eq!(second["mismatches"], 1, "{second}");
    assert_eq!(second["newMismatches"], 0);
    assert!(published(&mut events).await.is_empty());
}

/// Finding 7 of issue 25 (first half): `reconcile-cron` watches low
/// balances as every other function does. Its `Deps` are given a bare
/// ledger (as `from_env` builds one); a refund it applies that takes the
/// balance below the threshold publishes `credits.balance_low`.
#[tokio::test]
async fn a_reconciliation_debit_crossing_the_threshold_publishes_balance_low() {
    let api = TestApi::new().await;
    let mut events = EventsEnv::new(&api.table).await;
    let (_, user, capture_id, _) = paid(&api, CREDITS, "10").await;
    published(&mut events).await;
    // Refunded in PayPal's dashboard; no webhook: only reconciliation sees it.
    let paypal = api.payments.paypal().await.unwrap();
    paypal
        .refund_capture(&capture_id, Some(usd("7.00")), "dashboard-low", None)
        .await
        .unwrap();

    let bare = ledger::Ledger::new(api.table.client.clone(), &api.table.name);
    let job = reconcile_cron_fn::Deps::new(bare).with_clients(
        paypal::PayPalClient::new(
            &api.paypal.base_url(),
            billing_config::SecretValue::new(integration_tests::api::PAYPAL_CLIENT.0),
            billing_config::SecretValue::new(integration_tests::api::PAYPAL_CLIENT.1),
            Duration::from_secs(5),
        )
        .unwrap(),
        None,
    );
    let event = json!({"version": "0", "detail-type": "Scheduled Event",
        "source": "aws.events", "time": ledger::now_rfc3339(), "detail": {}});
    let summary = reconcile_cron_fn::handle(
        &job,
        lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default()),
    )
    .await
    .expect("reconciliation runs");
    assert_eq!(summary["healedRefunds"], 1, "{summary}");
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("3.00"));
    let got = published(&mut events).await;
    assert_eq!(types(&got), ["credits.balance_low", "refund.completed"]);
    let low = &one(&got, DetailType::CreditsBalanceLow).detail;
    assert_eq!(low["balance"], json!("3.00"));
    assert_eq!(low["previousBalance"], json!("10.00"));
    assert_eq!(low["entryType"], json!("refund"));
}
