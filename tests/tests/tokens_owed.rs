#![recursion_limit = "256"]
//! What a token purchase owes at VirtFusion is computed, not chosen
//! (`billing::tokens`): tokens × (1 − completed refunds ÷ captured). Each
//! test plays a path where the old code gave tokens away or took too many,
//! through the PayPal and VirtFusion stand-ins, and ends with VirtFusion's
//! balance equal to what the user paid for and kept.

use aws_sdk_dynamodb::types::AttributeValue;
use billing::orders::Delivery;
use devstack::paypal::RefundSettlement;
use devstack::virtfusion::FailureMode;
use integration_tests::api::TestApi;
use integration_tests::new_user;
use ledger::UserId;
use serde_json::{Value, json};

use integration_tests::flows::{
    admin_refund, deliver_webhook, order, paid_tokens, resolve_delivery as resolve, run_deliveries,
};

const ADMIN: &str = integration_tests::flows::ADMIN;

/// A purchase whose delivery answered 500 (VirtFusion did nothing): under review.
async fn undelivered_under_review(api: &TestApi, amount: &str) -> (String, UserId) {
    api.virtfusion
        .set_failure(FailureMode::Status(500), Some(1));
    let (order_id, user, captured) = paid_tokens(api, amount).await;
    api.virtfusion.clear_failure();
    assert_eq!(captured.body["status"], json!("needs_review"));
    assert_eq!(api.virtfusion.balance(user.as_str()), 0);
    (order_id, user)
}

// Finding 1: settling a review never re-delivers what a refund took back.

#[tokio::test]
async fn a_wholly_refunded_purchase_settled_as_not_delivered_delivers_nothing() {
    let api = TestApi::new().await;
    let (order_id, user) = undelivered_under_review(&api, "10").await;
    let refunded = admin_refund(&api, &order_id, None, "whole").await;
    assert_eq!(refunded["status"], json!("completed"));

    // The review list shows why and what was refunded.
    let admin = api.token(ADMIN, true);
    let listed = api
        .get(
            "/api/admin/virtfusion-deliveries?status=needs_review",
            &admin,
        )
        .await;
    let item = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["orderId"] == json!(order_id))
        .expect("listed")
        .clone();
    assert_eq!(item["reviewReason"], json!("uncertain_outcome"));
    assert_eq!(item["refundedAmount"], json!("10.00"));
    assert_eq!(item["owedTokens"], json!(0));

    // The admin finds nothing at VirtFusion: nothing is owed either, so it closes.
    let settled = resolve(
        &api,
        &order_id,
        json!({"delivered": false, "reason": "no credit in VirtFusion"}),
    )
    .await;
    assert_eq!(settled.status, 200, "{:?}", settled.body);
    assert_eq!(settled.body["delivery"]["status"], json!("refunded"));
    run_deliveries(&api).await;
    assert_eq!(
        api.virtfusion.balance(user.as_str()),
        0,
        "refunded and not delivered"
    );
    assert!(api.virtfusion.credits().is_empty());
    assert_eq!(
        order(&api, &order_id).await.delivery,
        Some(Delivery::Refunded)
    );
}

#[tokio::test]
async fn a_partly_refunded_undelivered_purchase_delivers_only_the_unrefunded_part() {
    let api = TestApi::new().await;
    let (order_id, user) = undelivered_under_review(&api, "10").await;
    admin_refund(&api, &order_id, Some("4.00"), "part").await;
    let settled = resolve(
        &api,
        &order_id,
        json!({"delivered": false, "reason": "no credit in VirtFusion"}),
    )
    .await;
    assert_eq!(settled.body["delivery"]["status"], json!("pending"));
    run_deliveries(&api).await;
    run_deliveries(&api).await;
    assert_eq!(
        api.virtfusion.balance(user.as_str()),
        600,
        "$6.00 kept: 600 tokens"
    );
    let stored = order(&api, &order_id).await;
    assert_eq!(stored.delivery, Some(Delivery::Delivered));
    assert_eq!(stored.credit_tokens.map(|t| t.get()), Some(600));
}

#[tokio::test]
async fn a_removal_that_worked_but_never_answered_is_settled_as_refunded() {
    let api = TestApi::new().await;
    let (order_id, user, captured) = paid_tokens(&api, "5").await;
    assert_eq!(captured.body["status"], json!("completed"));
    assert_eq!(api.virtfusion.balance(user.as_str()), 500);
    // VirtFusion removes the credit, then its answer never arrives.
    api.virtfusion
        .set_failure(FailureMode::ApplyThenHang, Some(1));
    let refunded = admin_refund(&api, &order_id, None, "whole").await;
    api.virtfusion.clear_failure();
    assert_eq!(refunded["tokensRevoked"], json!(false));
    assert_eq!(api.virtfusion.balance(user.as_str()), 0, "it did remove it");
    assert_eq!(
        order(&api, &order_id).await.delivery,
        Some(Delivery::NeedsReview)
    );

    let settled = resolve(
        &api,
        &order_id,
        json!({"delivered": false, "reason": "the credit is gone"}),
    )
    .await;
    assert_eq!(settled.body["delivery"]["status"], json!("refunded"));
    run_deliveries(&api).await;
    assert_eq!(
        api.virtfusion.balance(user.as_str()),
        0,
        "never delivered again"
    );
}

#[tokio::test]
async fn a_credit_found_after_a_partial_refund_is_corrected_to_what_is_owed() {
    let api = TestApi::new().await;
    // VirtFusion credits the tokens but its answer never arrives.
    api.virtfusion
        .set_failure(FailureMode::ApplyThenHang, Some(1));
    let (order_id, user, captured) = paid_tokens(&api, "10").await;
    api.virtfusion.clear_failure();
    assert_eq!(captured.body["status"], json!("needs_review"));
    admin_refund(&api, &order_id, Some("2.50"), "part").await;
    let credit_id = api.virtfusion.credits()[0].id;

    // Without the credit id nothing could remove it: 400, nothing changes.
    let without = resolve(
        &api,
        &order_id,
        json!({"delivered": true, "reason": "found it"}),
    )
    .await;
    assert_eq!(without.status, 400, "{:?}", without.body);
    let settled = resolve(
        &api,
        &order_id,
        json!({"delivered": true, "creditId": credit_id, "reason": "found it"}),
    )
    .await;
    assert_eq!(settled.status, 200, "{:?}", settled.body);
    run_deliveries(&api).await;
    assert_eq!(api.virtfusion.balance(user.as_str()), 750);
    assert_eq!(api.virtfusion.credits().len(), 1);
}

// Finding 2: only completed refunds take tokens back.

#[tokio::test]
async fn a_pending_refund_that_fails_takes_no_tokens() {
    let api = TestApi::new().await;
    let (order_id, user, captured) = paid_tokens(&api, "100").await;
    assert_eq!(captured.body["status"], json!("completed"));
    assert_eq!(api.virtfusion.balance(user.as_str()), 10_000);

    api.paypal.set_pending_refunds(true, Some(1));
    let pending = admin_refund(&api, &order_id, Some("50.00"), "a").await;
    assert_eq!(pending["status"], json!("pending"));
    assert_eq!(
        api.virtfusion.balance(user.as_str()),
        10_000,
        "pending takes nothing"
    );
    let completed = admin_refund(&api, &order_id, Some("50.00"), "b").await;
    assert_eq!(completed["status"], json!("completed"));
    assert_eq!(
        api.virtfusion.balance(user.as_str()),
        5_000,
        "only the completed half is taken back"
    );

    let refund_a = pending["refundId"].as_str().unwrap().to_owned();
    assert!(
        api.paypal
            .settle_refund(&refund_a, RefundSettlement::Failed)
    );
    let failed = api
        .paypal
        .signed_refund_event("PAYMENT.REFUND.FAILED", &refund_a)
        .unwrap();
    deliver_webhook(&api, &failed).await;
    run_deliveries(&api).await;
    assert_eq!(
        api.virtfusion.balance(user.as_str()),
        5_000,
        "the failed refund gave the buyer nothing, so the user keeps half"
    );
    let stored = order(&api, &order_id).await;
    assert_eq!(stored.owed_tokens().get(), 5_000);
    assert_eq!(stored.delivery, Some(Delivery::Delivered));
}

// Finding 7: one event per movement of tokens to VirtFusion.

#[tokio::test]
async fn a_second_real_delivery_is_a_second_event() {
    let api = TestApi::new().await;
    let (order_id, user, captured) = paid_tokens(&api, "10").await;
    assert_eq!(captured.body["status"], json!("completed"));
    admin_refund(&api, &order_id, Some("4.00"), "part").await;
    assert_eq!(api.virtfusion.balance(user.as_str()), 600);

    let scanned = api
        .ledger()
        .client()
        .scan()
        .table_name(api.ledger().table())
        .filter_expression("detailType = :t AND userId = :u")
        .expression_attribute_values(":t", AttributeValue::S("tokens.purchased".into()))
        .expression_attribute_values(":u", AttributeValue::S(user.as_str().into()))
        .send()
        .await
        .unwrap();
    let mut tokens: Vec<i64> = scanned
        .items()
        .iter()
        .map(|item| {
            let AttributeValue::S(detail) = &item["detail"] else {
                panic!("detail")
            };
            serde_json::from_str::<Value>(detail).unwrap()["tokens"]
                .as_i64()
                .unwrap()
        })
        .collect();
    tokens.sort_unstable();
    assert_eq!(tokens, vec![600, 1_000], "one outbox item per delivery");
}

// Finding 8: a grant settled as delivered can be removed through the API.

#[tokio::test]
async fn a_grant_settled_with_its_credit_id_can_be_removed() {
    let api = TestApi::new().await;
    let user = new_user();
    let admin = api.token(ADMIN, true);
    api.virtfusion
        .set_failure(FailureMode::ApplyThenHang, Some(1));
    let path = format!("/api/admin/users/{user}/virtfusion-tokens");
    let granted = Box::pin(api.call(
        "POST",
        &path,
        Some(&admin),
        Some(r#"{"tokens": 300, "reason": "goodwill"}"#),
        &[
            ("content-type", "application/json"),
            ("idempotency-key", "g1"),
        ],
    ))
    .await;
    api.virtfusion.clear_failure();
    assert_eq!(granted.status, 202, "{:?}", granted.body);
    let grant_id = granted.body["grantId"].as_str().unwrap().to_owned();
    let credit_id = api.virtfusion.credits()[0].id;
    let settled = resolve(
        &api,
        &grant_id,
        json!({"delivered": true, "creditId": credit_id, "reason": "in the panel"}),
    )
    .await;
    assert_eq!(settled.status, 200, "{:?}", settled.body);
    assert_eq!(settled.body["delivery"]["creditId"], json!(credit_id));

    let removed = Box::pin(api.call(
        "DELETE",
        &format!("{path}/{credit_id}"),
        Some(&admin),
        Some(r#"{"reason": "goodwill withdrawn"}"#),
        &[
            ("content-type", "application/json"),
            ("idempotency-key", "r1"),
        ],
    ))
    .await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    assert!(api.virtfusion.credits().is_empty());
}

// A won dispute makes the tokens its reversal took back owed again.

#[tokio::test]
async fn a_won_dispute_of_a_token_purchase_delivers_its_tokens_again_once() {
    let api = TestApi::new().await;
    let (order_id, user, captured) = paid_tokens(&api, "5").await;
    assert_eq!(captured.body["status"], json!("completed"));
    let capture_id = api.paypal.order(&order_id).unwrap().capture_ids[0].clone();
    let reversal_id = api.paypal.reverse_capture(&capture_id).unwrap();
    let reversed = api
        .paypal
        .signed_event(devstack::paypal::EventType::CaptureReversed, &reversal_id)
        .unwrap();
    deliver_webhook(&api, &reversed).await;
    assert_eq!(
        api.virtfusion.balance(user.as_str()),
        0,
        "the chargeback takes them"
    );
    assert_eq!(
        order(&api, &order_id).await.delivery,
        Some(Delivery::Refunded)
    );

    let won = api.paypal.win_dispute(&reversal_id).unwrap();
    deliver_webhook(&api, &won).await;
    deliver_webhook(&api, &won).await;
    run_deliveries(&api).await;
    run_deliveries(&api).await;
    assert_eq!(
        api.virtfusion.balance(user.as_str()),
        500,
        "owed again, delivered once"
    );
    assert_eq!(api.virtfusion.credits().len(), 1);
    let stored = order(&api, &order_id).await;
    assert_eq!(stored.delivery, Some(Delivery::Delivered));
    assert_eq!(stored.owed_tokens().get(), 500);
}
