#![recursion_limit = "256"]
//! PayPal purchases of custom credits and VirtFusion tokens, exactly once,
//! whatever the client, the network, PayPal or VirtFusion do.

use devstack::paypal::{CaptureOutcome, Failure, Operation};
use devstack::virtfusion::FailureMode;
use integration_tests::api::{TestApi, TestResponse};
use integration_tests::{assert_audit, new_user, usd};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

const CREDITS: &str = "/api/billing/custom-credits";
const TOKENS: &str = "/api/billing/virtfusion-tokens";

/// Creates an order and returns its id and approve URL.
async fn order(api: &TestApi, base: &str, token: &str, amount: &str) -> (String, String) {
    let response = api
        .send(
            "POST",
            &format!("{base}/add"),
            token,
            &format!(r#"{{"amount": {amount}}}"#),
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let order_id = response.body["orderId"].as_str().unwrap().to_owned();
    let approve = response.body["approveUrl"].as_str().unwrap().to_owned();
    (order_id, approve)
}

/// The buyer approves on "PayPal's page": a real GET of the approveUrl.
async fn buyer_approves(approve_url: &str) {
    let status = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(approve_url)
        .send()
        .await
        .unwrap()
        .status();
    assert!(
        status.is_success() || status.is_redirection(),
        "approve answered {status}"
    );
}

async fn capture(api: &TestApi, base: &str, token: &str, order_id: &str) -> TestResponse {
    api.send(
        "POST",
        &format!("{base}/capture"),
        token,
        &format!(r#"{{"orderId": "{order_id}"}}"#),
    )
    .await
}

#[tokio::test]
async fn credits_purchase_happy_path_and_replayed_capture() {
    let api = TestApi::new().await;
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let (order_id, approve) = order(&api, CREDITS, &token, "10").await;
    // Recorded before its id was returned.
    assert!(
        billing::orders::load(&api.ledger(), &order_id)
            .await
            .unwrap()
            .is_some()
    );
    buyer_approves(&approve).await;

    let first = capture(&api, CREDITS, &token, &order_id).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(
        first.body,
        json!({"success": true, "amount": "10.00", "balance": "10.00"})
    );
    let again = capture(&api, CREDITS, &token, &order_id).await;
    assert_eq!(
        again.body,
        json!({"success": true, "amount": "10.00", "balance": "10.00"})
    );
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("10.00"));

    let history = api.get("/api/billing/transactions", &token).await;
    assert_eq!(history.body["items"][0]["type"], json!("purchase"));
    assert_eq!(history.body["items"][0]["amount"], json!("10.00"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twelve_concurrent_captures_credit_once() {
    let api = Arc::new(TestApi::new().await);
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let (order_id, approve) = order(&api, CREDITS, &token, "25.50").await;
    buyer_approves(&approve).await;
    let mut tasks = JoinSet::new();
    for _ in 0..12 {
        let (api, token, order_id) = (api.clone(), token.clone(), order_id.clone());
        tasks.spawn(async move { capture(&api, CREDITS, &token, &order_id).await });
    }
    while let Some(response) = tasks.join_next().await {
        let response = response.unwrap();
        assert_eq!(response.status, 200, "{:?}", response.body);
        assert_eq!(response.body["amount"], json!("25.50"));
    }
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("25.50"));
    assert_eq!(api.ledger().audit(&user).await.unwrap().entries, 1);
}

#[tokio::test]
async fn unapproved_and_foreign_orders_are_refused() {
    let api = TestApi::new().await;
    let (owner, thief) = (new_user(), new_user());
    let owner_token = api.token(owner.as_str(), false);
    let (order_id, approve) = order(&api, CREDITS, &owner_token, "5").await;

    let early = capture(&api, CREDITS, &owner_token, &order_id).await;
    assert_eq!(early.status, 409);
    assert_eq!(early.body["error"], json!("Payment not completed"));

    buyer_approves(&approve).await;
    let foreign = capture(&api, CREDITS, &api.token(thief.as_str(), false), &order_id).await;
    assert_eq!(foreign.status, 404);
    // A credits order cannot be captured through the tokens route either.
    assert_eq!(
        capture(&api, TOKENS, &owner_token, &order_id).await.status,
        404
    );
    assert_eq!(
        capture(&api, CREDITS, &owner_token, "NOPE123").await.status,
        404
    );
    for bad in [
        r#"{"orderId": ""}"#,
        r#"{"orderId": "../x"}"#,
        r#"{}"#,
        r#"{"orderId": 5}"#,
    ] {
        let response = api
            .send("POST", &format!("{CREDITS}/capture"), &owner_token, bad)
            .await;
        assert_eq!(response.status, 400, "{bad}");
    }
    assert_eq!(api.ledger().balance(&owner).await.unwrap(), usd("0"));
    assert_eq!(api.ledger().balance(&thief).await.unwrap(), usd("0"));
}

#[tokio::test]
async fn limits_are_enforced_before_paypal_is_called() {
    let api = TestApi::new().await;
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let calls_before = api.paypal.request_count();
    for amount in ["0.99", "1000.01", "0", "-5", "\"1e3\"", "10.001"] {
        let response = api
            .send(
                "POST",
                &format!("{CREDITS}/add"),
                &token,
                &format!(r#"{{"amount": {amount}}}"#),
            )
            .await;
        assert_eq!(response.status, 400, "{amount}: {:?}", response.body);
        let response = api
            .send(
                "POST",
                &format!("{TOKENS}/add"),
                &token,
                &format!(r#"{{"amount": {amount}}}"#),
            )
            .await;
        assert_eq!(response.status, 400, "{amount}: {:?}", response.body);
    }
    // Maximum balance ($10,000): 9,995.00 + 10 would exceed it.
    let admin = api.token("1", true);
    let path = format!("/api/admin/users/{user}/custom-credits");
    api.send(
        "POST",
        &path,
        &admin,
        r#"{"amount": 9995, "reason": "big customer"}"#,
    )
    .await;
    let response = api
        .send(
            "POST",
            &format!("{CREDITS}/add"),
            &token,
            r#"{"amount": 10}"#,
        )
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(
        api.paypal.request_count(),
        calls_before,
        "PayPal was never called"
    );
    // 5.00 fits exactly.
    assert_eq!(
        api.send(
            "POST",
            &format!("{CREDITS}/add"),
            &token,
            r#"{"amount": 5}"#
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn a_crash_between_paypal_and_dynamodb_is_healed_by_the_retry() {
    let api = TestApi::new().await;
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let (order_id, approve) = order(&api, CREDITS, &token, "42").await;
    buyer_approves(&approve).await;
    // Our Lambda captured at PayPal and died before writing to DynamoDB.
    let paypal = api.payments.paypal().await.unwrap();
    paypal
        .capture_order(&order_id, "some-earlier-attempt")
        .await
        .unwrap();
    assert_eq!(api.ledger().balance(&user).await.unwrap(), usd("0"));

    let retry = capture(&api, CREDITS, &token, &order_id).await;
    assert_eq!(retry.status, 200, "{:?}", retry.body);
    assert_eq!(retry.body["amount"], json!("42.00"));
    capture(&api, CREDITS, &token, &order_id).await;
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("42.00"));
}

#[tokio::test]
async fn paypal_failures_on_capture_are_clean_5xx_and_a_retry_succeeds() {
    let api = TestApi::new().await;
    let user = new_user();
    let token = api.token(user.as_str(), false);
    for failure in [Failure::Status(500), Failure::Hang, Failure::ApplyThenHang] {
        let (order_id, approve) = order(&api, CREDITS, &token, "3").await;
        buyer_approves(&approve).await;
        api.paypal
            .set_failure(Operation::CaptureOrder, failure, Some(1));
        let failed = capture(&api, CREDITS, &token, &order_id).await;
        assert!(
            [502, 503].contains(&failed.status),
            "{failure:?}: {} {:?}",
            failed.status,
            failed.body
        );
        assert!(failed.body["error"].is_string());
        let retried = capture(&api, CREDITS, &token, &order_id).await;
        assert_eq!(retried.status, 200, "{failure:?}: {:?}", retried.body);
    }
    // Three orders of $3, each credited exactly once.
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("9.00"));
}

#[tokio::test]
async fn a_pending_capture_is_credited_once_when_paypal_completes_it() {
    let api = TestApi::new().await;
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let (order_id, approve) = order(&api, CREDITS, &token, "8").await;
    buyer_approves(&approve).await;
    api.paypal
        .set_capture_outcome(CaptureOutcome::Pending, Some(1));
    let pending = capture(&api, CREDITS, &token, &order_id).await;
    assert_eq!(pending.status, 202, "{:?}", pending.body);
    assert_eq!(pending.body["status"], json!("pending"));
    assert_eq!(api.ledger().balance(&user).await.unwrap(), usd("0"));

    let capture_id = api.paypal.order(&order_id).unwrap().capture_ids[0].clone();
    assert!(
        api.paypal
            .settle_capture(&capture_id, CaptureOutcome::Completed)
    );
    for _ in 0..2 {
        let done = capture(&api, CREDITS, &token, &order_id).await;
        assert_eq!(done.status, 200, "{:?}", done.body);
    }
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("8.00"));
}

#[tokio::test]
async fn a_declined_capture_credits_nothing() {
    let api = TestApi::new().await;
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let (order_id, approve) = order(&api, CREDITS, &token, "8").await;
    buyer_approves(&approve).await;
    api.paypal
        .set_capture_outcome(CaptureOutcome::Declined, Some(1));
    let declined = capture(&api, CREDITS, &token, &order_id).await;
    assert_eq!(declined.status, 409, "{:?}", declined.body);
    assert_eq!(declined.body["code"], json!("payment_declined"));
    assert_eq!(capture(&api, CREDITS, &token, &order_id).await.status, 409);
    assert_eq!(api.ledger().balance(&user).await.unwrap(), usd("0"));
}

#[tokio::test]
async fn an_idempotency_key_returns_the_same_order() {
    let api = TestApi::new().await;
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let add = |body: &'static str| {
        let (api, token) = (&api, token.clone());
        async move {
            api.call(
                "POST",
                &format!("{CREDITS}/add"),
                Some(&token),
                Some(body),
                &[
                    ("content-type", "application/json"),
                    ("idempotency-key", "checkout-1"),
                ],
            )
            .await
        }
    };
    let first = add(r#"{"amount": 10}"#).await;
    let second = add(r#"{"amount": "10.00"}"#).await;
    assert_eq!(first.status, 200);
    assert_eq!(second.body, first.body);
    assert_eq!(api.paypal.orders().len(), 1, "one PayPal order");
    assert_eq!(add(r#"{"amount": 11}"#).await.status, 422);
}

#[tokio::test]
async fn tokens_purchase_delivers_to_virtfusion_once() {
    let api = Arc::new(TestApi::new().await);
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let response = api
        .send(
            "POST",
            &format!("{TOKENS}/add"),
            &token,
            r#"{"amount": 10}"#,
        )
        .await;
    assert_eq!(response.body["tokens"], json!(1000));
    let order_id = response.body["orderId"].as_str().unwrap().to_owned();
    buyer_approves(response.body["approveUrl"].as_str().unwrap()).await;

    let mut tasks = JoinSet::new();
    for _ in 0..12 {
        let (api, token, order_id) = (api.clone(), token.clone(), order_id.clone());
        tasks.spawn(async move { capture(&api, TOKENS, &token, &order_id).await });
    }
    let mut completed = 0;
    while let Some(response) = tasks.join_next().await {
        let response = response.unwrap();
        assert!([200, 202].contains(&response.status), "{:?}", response.body);
        assert_eq!(response.body["tokens"], json!(1000));
        completed += usize::from(response.body["status"] == json!("completed"));
    }
    assert!(completed >= 1);
    let credits = api.virtfusion.credits();
    assert_eq!(credits.len(), 1, "tokens granted once: {credits:?}");
    assert_eq!(credits[0].tokens, 1000);
    assert_eq!(credits[0].reference_2.as_deref(), Some(order_id.as_str()));
    assert_eq!(api.virtfusion.balance(user.as_str()), 1000);
    let done = capture(&api, TOKENS, &token, &order_id).await;
    assert_eq!(
        done.body,
        json!({"success": true, "tokens": 1000, "status": "completed"})
    );
    // Custom credits untouched; the purchase shows in the merged history.
    assert_eq!(api.ledger().balance(&user).await.unwrap(), usd("0"));
    let history = api.get("/api/billing/transactions", &token).await;
    assert_eq!(history.body["items"][0]["system"], json!("virtfusion"));
    assert_eq!(history.body["items"][0]["status"], json!("completed"));
}

#[tokio::test]
async fn virtfusion_down_leaves_tokens_pending_until_the_job_delivers_them_once() {
    let api = TestApi::new().await;
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let response = api
        .send("POST", &format!("{TOKENS}/add"), &token, r#"{"amount": 2}"#)
        .await;
    let order_id = response.body["orderId"].as_str().unwrap().to_owned();
    buyer_approves(response.body["approveUrl"].as_str().unwrap()).await;

    api.virtfusion.set_failure(FailureMode::Refuse(None), None);
    let pending = capture(&api, TOKENS, &token, &order_id).await;
    assert_eq!(pending.status, 202, "{:?}", pending.body);
    assert_eq!(
        pending.body,
        json!({"success": true, "tokens": 200, "status": "pending"})
    );
    let ledger = api.ledger();
    let vf = api.payments.virtfusion().await;
    // While VirtFusion stays down, the job leaves it pending.
    let deadline = Instant::now() + Duration::from_secs(20);
    let summary = billing::deliveries::retry_pending(&ledger, vf, 10, an_hour_later(), deadline)
        .await
        .unwrap();
    assert_eq!((summary.attempted, summary.still_pending), (1, 1));

    api.virtfusion.clear_failure();
    let summary = billing::deliveries::retry_pending(&ledger, vf, 10, an_hour_later(), deadline)
        .await
        .unwrap();
    assert_eq!(summary.delivered, 1);
    let again = billing::deliveries::retry_pending(&ledger, vf, 10, an_hour_later(), deadline)
        .await
        .unwrap();
    assert_eq!(again.attempted, 0, "nothing left to deliver");
    assert_eq!(api.virtfusion.credits().len(), 1);
    assert_eq!(api.virtfusion.balance(user.as_str()), 200);
    let done = capture(&api, TOKENS, &token, &order_id).await;
    assert_eq!(done.body["status"], json!("completed"));
}

#[tokio::test]
async fn an_uncertain_delivery_goes_to_review_and_is_never_retried_blindly() {
    let api = TestApi::new().await;
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let admin = api.token("1", true);
    let response = api
        .send("POST", &format!("{TOKENS}/add"), &token, r#"{"amount": 3}"#)
        .await;
    let order_id = response.body["orderId"].as_str().unwrap().to_owned();
    buyer_approves(response.body["approveUrl"].as_str().unwrap()).await;

    // VirtFusion applies the credit but the answer never arrives.
    api.virtfusion
        .set_failure(FailureMode::ApplyThenHang, Some(1));
    let review = capture(&api, TOKENS, &token, &order_id).await;
    assert_eq!(review.status, 202);
    assert_eq!(review.body["status"], json!("needs_review"));
    api.virtfusion.clear_failure();
    let vf = api.payments.virtfusion().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let summary =
        billing::deliveries::retry_pending(&api.ledger(), vf, 10, an_hour_later(), deadline)
            .await
            .unwrap();
    assert_eq!(summary.attempted, 0, "needs_review is not retried");
    assert_eq!(
        capture(&api, TOKENS, &token, &order_id).await.body["status"],
        json!("needs_review")
    );
    assert_eq!(
        api.virtfusion.credits().len(),
        1,
        "granted once, by the uncertain call"
    );

    let listed = api
        .get(
            "/api/admin/virtfusion-deliveries?status=needs_review",
            &admin,
        )
        .await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["items"][0]["orderId"], json!(order_id));
    assert_eq!(
        api.get("/api/admin/virtfusion-deliveries", &token)
            .await
            .status,
        403
    );

    let resolve = format!("/api/admin/virtfusion-deliveries/{order_id}/resolve");
    assert_eq!(
        api.send("POST", &resolve, &admin, r#"{"delivered": true}"#)
            .await
            .status,
        400,
        "reason required"
    );
    // A credit found must be named, so a refund can remove it later.
    let unnamed = api
        .send(
            "POST",
            &resolve,
            &admin,
            r#"{"delivered": true, "reason": "seen in VirtFusion"}"#,
        )
        .await;
    assert_eq!(unnamed.status, 400, "{:?}", unnamed.body);
    let credit_id = api.virtfusion.credits()[0].id;
    let resolved = api
        .send(
            "POST",
            &resolve,
            &admin,
            &json!({"delivered": true, "creditId": credit_id, "reason": "seen in VirtFusion"})
                .to_string(),
        )
        .await;
    assert_eq!(resolved.status, 200, "{:?}", resolved.body);
    assert_eq!(resolved.body["delivery"]["status"], json!("delivered"));
    assert_eq!(
        api.send(
            "POST",
            &resolve,
            &admin,
            r#"{"delivered": true, "reason": "again"}"#
        )
        .await
        .status,
        409
    );
    let listed = api
        .get(
            "/api/admin/virtfusion-deliveries?status=needs_review",
            &admin,
        )
        .await;
    assert_eq!(listed.body["items"], json!([]));
    assert_eq!(api.virtfusion.credits().len(), 1);
}

#[tokio::test]
async fn the_renewal_job_delivers_pending_tokens() {
    let api = TestApi::new().await;
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let response = api
        .send("POST", &format!("{TOKENS}/add"), &token, r#"{"amount": 4}"#)
        .await;
    let order_id = response.body["orderId"].as_str().unwrap().to_owned();
    buyer_approves(response.body["approveUrl"].as_str().unwrap()).await;
    api.virtfusion.set_failure(FailureMode::Refuse(None), None);
    assert_eq!(
        capture(&api, TOKENS, &token, &order_id).await.body["status"],
        json!("pending")
    );
    api.virtfusion.clear_failure();

    let client = virtfusion::VirtFusionClient::new(
        &api.virtfusion.base_url(),
        billing_config::SecretValue::new(integration_tests::api::VIRTFUSION_TOKEN),
        Duration::from_secs(2),
    )
    .unwrap();
    let deps =
        renewal_cron_fn::Deps::new(api.function_ledger(integration_tests::IN_PROCESS_RENEWALS))
            .with_virtfusion(client);
    // The job's next run, ten minutes on: the failed delivery backs off
    // (first retry due five minutes after the failure).
    let next_run =
        ledger::format_rfc3339(time::OffsetDateTime::now_utc() + time::Duration::minutes(10));
    let event = json!({"detail-type": "Scheduled Event", "source": "aws.events", "time": next_run});
    let summary = renewal_cron_fn::handle(
        &deps,
        lambda_runtime::LambdaEvent::new(event, Default::default()),
    )
    .await
    .unwrap();
    assert_eq!(summary["retried"], json!(1), "{summary}");
    assert_eq!(api.virtfusion.balance(user.as_str()), 400);
    assert_eq!(
        capture(&api, TOKENS, &token, &order_id).await.body["status"],
        json!("completed")
    );
}

#[tokio::test]
async fn a_delivery_claim_left_by_a_dead_lambda_goes_to_review() {
    let api = TestApi::new().await;
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let response = api
        .send("POST", &format!("{TOKENS}/add"), &token, r#"{"amount": 1}"#)
        .await;
    let order_id = response.body["orderId"].as_str().unwrap().to_owned();
    buyer_approves(response.body["approveUrl"].as_str().unwrap()).await;
    api.virtfusion.set_failure(FailureMode::Refuse(None), None);
    assert_eq!(
        capture(&api, TOKENS, &token, &order_id).await.body["status"],
        json!("pending")
    );
    api.virtfusion.clear_failure();
    // A caller claimed it ten minutes ago and never came back.
    let ten_minutes_ago =
        ledger::format_rfc3339(time::OffsetDateTime::now_utc() - time::Duration::minutes(10));
    billing::orders::OrderUpdate::new(&order_id, "attribute_exists(pk)")
        .set_s("delivery", "delivering")
        .set_s("deliveryClaim", "dead-lambda")
        .set_s("deliveryClaimedAt", &ten_minutes_ago)
        .set_s("gsi1pk", billing::orders::DELIVERY_CLAIMED)
        .set_s("gsi1sk", &format!("{ten_minutes_ago}#{order_id}"))
        .run(&api.ledger())
        .await
        .unwrap();
    let vf = api.payments.virtfusion().await;
    let summary = billing::deliveries::retry_pending(
        &api.ledger(),
        vf,
        10,
        an_hour_later(),
        Instant::now() + Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert_eq!((summary.stale_to_review, summary.attempted), (1, 0));
    assert_eq!(
        capture(&api, TOKENS, &token, &order_id).await.body["status"],
        json!("needs_review")
    );
    assert!(
        api.virtfusion.credits().is_empty(),
        "not redelivered blindly"
    );
}

/// The job's clock an hour from now: failed deliveries back off (minutes),
/// so a retry "now" would find nothing due.
fn an_hour_later() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::hours(1)
}

/// PayPal declines the buyer's funding source at capture (422 with one of the four
/// issues, replayed by PayPal to the same PayPal-Request-Id): the client gets a 409 it
/// can act on, and after the buyer approves again the next capture succeeds, because it
/// carries a new request id.
#[tokio::test]
async fn a_funding_decline_asks_for_a_new_approval_and_never_wedges_the_order() {
    use devstack::paypal_behaviours::Decline;
    let api = TestApi::new().await;
    for decline in Decline::ALL {
        let user = new_user();
        let token = api.token(user.as_str(), false);
        let (order_id, approve) = order(&api, CREDITS, &token, "4").await;
        buyer_approves(&approve).await;
        api.paypal.set_capture_decline(Some(decline), Some(1));
        let declined = capture(&api, CREDITS, &token, &order_id).await;
        assert_eq!(declined.status, 409, "{decline:?}: {:?}", declined.body);
        assert_eq!(
            declined.body["code"],
            json!("payment_source_declined"),
            "{decline:?}"
        );
        // The buyer approves again with another funding source, the client captures.
        buyer_approves(&approve).await;
        let paid = capture(&api, CREDITS, &token, &order_id).await;
        assert_eq!(paid.status, 200, "{decline:?}: {:?}", paid.body);
        assert_eq!(paid.body["amount"], json!("4.00"));
        assert_eq!(assert_audit(&api.ledger(), &user).await, usd("4.00"));
    }
}

/// The approved-order webhook and the buyer's capture reach PayPal at the same time
/// with the same PayPal-Request-Id; PayPal fails the second (409
/// PREVIOUS_REQUEST_IN_PROGRESS). Both paths still end in one credit, and the charged
/// buyer sees no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_capture_route_and_the_approved_webhook_at_once_credit_once_without_error() {
    use devstack::paypal::EventType;
    let api = Arc::new(TestApi::new().await);
    api.paypal
        .set_capture_processing_time(Duration::from_millis(400));
    for round in 0..3 {
        let user = new_user();
        let token = api.token(user.as_str(), false);
        let (order_id, approve) = order(&api, CREDITS, &token, "3").await;
        buyer_approves(&approve).await;
        let event = api
            .paypal
            .signed_event(EventType::OrderApproved, &order_id)
            .unwrap();
        let webhook = {
            let (api, event) = (api.clone(), event.clone());
            tokio::spawn(async move {
                let headers: Vec<(&str, &str)> = event
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let body = String::from_utf8(event.body.clone()).unwrap();
                api.call("POST", "/webhooks/paypal", None, Some(&body), &headers)
                    .await
            })
        };
        let route = {
            let (api, token, order_id) = (api.clone(), token.clone(), order_id.clone());
            tokio::spawn(async move {
                // Let either side be first across the rounds.
                tokio::time::sleep(Duration::from_millis(round * 60)).await;
                capture(&api, CREDITS, &token, &order_id).await
            })
        };
        let (webhook, route) = (webhook.await.unwrap(), route.await.unwrap());
        assert_eq!(webhook.status, 200, "round {round}: {:?}", webhook.body);
        assert_eq!(route.status, 200, "round {round}: {:?}", route.body);
        assert_eq!(route.body["amount"], json!("3.00"));
        assert_eq!(api.paypal.order(&order_id).unwrap().capture_ids.len(), 1);
        assert_eq!(assert_audit(&api.ledger(), &user).await, usd("3.00"));
        assert_eq!(api.ledger().audit(&user).await.unwrap().entries, 1);
    }
}
