//! Purchase flows the integration tests share: a paid token purchase, an
//! admin refund, a webhook delivery, an admin's settlement, the delivery job.

use crate::api::{TestApi, TestResponse};
use crate::new_user;
use billing::orders::OrderRecord;
use devstack::paypal::SignedEvent;
use ledger::UserId;
use serde_json::{Value, json};
use std::time::Duration;

pub const TOKENS: &str = "/api/billing/virtfusion-tokens";
/// The admin the flows act as.
pub const ADMIN: &str = "900";

pub async fn paid_tokens(api: &TestApi, amount: &str) -> (String, UserId, TestResponse) {
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let added = api
        .send(
            "POST",
            &format!("{TOKENS}/add"),
            &token,
            &format!(r#"{{"amount": {amount}}}"#),
        )
        .await;
    assert_eq!(added.status, 200, "{:?}", added.body);
    let order_id = added.body["orderId"].as_str().unwrap().to_owned();
    assert!(api.paypal.approve(&order_id));
    let captured = api
        .send(
            "POST",
            &format!("{TOKENS}/capture"),
            &token,
            &format!(r#"{{"orderId": "{order_id}"}}"#),
        )
        .await;
    (order_id, user, captured)
}

pub async fn admin_refund(api: &TestApi, order_id: &str, amount: Option<&str>, key: &str) -> Value {
    let token = api.token(ADMIN, true);
    let body = match amount {
        Some(amount) => json!({"orderId": order_id, "amount": amount, "reason": "customer asked"}),
        None => json!({"orderId": order_id, "reason": "customer asked"}),
    };
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", key),
    ];
    let response = Box::pin(api.call(
        "POST",
        "/api/admin/refunds",
        Some(&token),
        Some(&body.to_string()),
        &headers,
    ))
    .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    response.body
}

pub async fn resolve_delivery(api: &TestApi, id: &str, body: Value) -> TestResponse {
    let admin = api.token(ADMIN, true);
    api.send(
        "POST",
        &format!("/api/admin/virtfusion-deliveries/{id}/resolve"),
        &admin,
        &body.to_string(),
    )
    .await
}

pub async fn order(api: &TestApi, order_id: &str) -> OrderRecord {
    billing::orders::load(&api.ledger(), order_id)
        .await
        .unwrap()
        .expect("order recorded")
}

/// The delivery job (as `renewal-cron` runs it, under its IAM policy), an hour later.
pub async fn run_deliveries(api: &TestApi) {
    let client = virtfusion::VirtFusionClient::new(
        &api.virtfusion.base_url(),
        billing_config::SecretValue::new(crate::api::VIRTFUSION_TOKEN),
        Duration::from_millis(500),
    )
    .unwrap();
    let later = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    billing::deliveries::retry_pending(
        &api.function_ledger("renewal-cron"),
        Some(&client),
        20,
        later,
        deadline,
    )
    .await
    .unwrap();
}

pub async fn deliver_webhook(api: &TestApi, event: &SignedEvent) {
    let headers: Vec<(&str, &str)> = event
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = String::from_utf8(event.body.clone()).unwrap();
    let response =
        Box::pin(api.call("POST", "/webhooks/paypal", None, Some(&body), &headers)).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
}
