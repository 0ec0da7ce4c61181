#![recursion_limit = "256"]
//! Races and old data on the token paths (found by an adversarial review of issue 25): what a purchase owes at VirtFusion holds under them.

use billing::orders::Delivery;
use devstack::virtfusion::FailureMode;
use integration_tests::api::TestApi;
use serde_json::json;

use integration_tests::flows::{
    admin_refund, order, paid_tokens, resolve_delivery as resolve, run_deliveries,
};

/// A credit found by an admin must be named (`creditId`), or nothing could
/// remove it later; an order delivered without a credit id (settled before
/// that rule) goes to review on a whole refund instead of keeping its tokens.
#[tokio::test]
async fn a_whole_refund_of_a_purchase_delivered_without_credit_id_goes_to_review() {
    let api = TestApi::new().await;
    api.virtfusion
        .set_failure(FailureMode::ApplyThenHang, Some(1));
    let (order_id, user, captured) = paid_tokens(&api, "10").await;
    api.virtfusion.clear_failure();
    assert_eq!(captured.body["status"], json!("needs_review"));
    assert_eq!(api.virtfusion.balance(user.as_str()), 1_000);

    // Without its id the settlement is refused: nothing changes.
    let unnamed = resolve(
        &api,
        &order_id,
        json!({"delivered": true, "reason": "credit is in the panel"}),
    )
    .await;
    assert_eq!(unnamed.status, 400, "{:?}", unnamed.body);
    assert_eq!(
        order(&api, &order_id).await.delivery,
        Some(Delivery::NeedsReview)
    );

    // An order settled before the rule: delivered, no credit id.
    let credit_id = api.virtfusion.credits()[0].id;
    let settled = resolve(
        &api,
        &order_id,
        json!({"delivered": true, "creditId": credit_id, "reason": "credit is in the panel"}),
    )
    .await;
    assert_eq!(settled.status, 200, "{:?}", settled.body);
    api.ledger()
        .client()
        .update_item()
        .table_name(api.ledger().table())
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("ORDER#{order_id}")),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("ORDER".into()),
        )
        .update_expression("REMOVE creditId, creditTokens")
        .send()
        .await
        .unwrap();

    let refunded = admin_refund(&api, &order_id, None, "whole").await;
    assert_eq!(refunded["status"], json!("completed"));
    assert_eq!(refunded["tokensRevoked"], json!(false));
    run_deliveries(&api).await;
    let stored = order(&api, &order_id).await;
    assert_eq!(stored.delivery, Some(Delivery::NeedsReview));
    assert_eq!(
        stored.review_reason.as_deref(),
        Some("refund_without_credit_id")
    );
}

/// An order refunded before this change has `refundedAmount` but no
/// `refundsCompleted` (the field is new and nothing backfills it). Its
/// review, settled with the new rules, computes owed from
/// `refundsCompleted` = 0: the whole purchase is owed again.
#[tokio::test]
async fn a_purchase_refunded_before_the_change_is_owed_in_full_again() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let api = TestApi::new().await;
    api.virtfusion
        .set_failure(FailureMode::Status(500), Some(1));
    let (order_id, user, captured) = paid_tokens(&api, "10").await;
    api.virtfusion.clear_failure();
    assert_eq!(captured.body["status"], json!("needs_review"));
    admin_refund(&api, &order_id, None, "whole").await;
    // As the code before this change stored it: no refundsCompleted.
    let ledger = api.ledger();
    ledger
        .client()
        .update_item()
        .table_name(ledger.table())
        .key("pk", AttributeValue::S(format!("ORDER#{order_id}")))
        .key("sk", AttributeValue::S("ORDER".into()))
        .update_expression("REMOVE refundsCompleted")
        .send()
        .await
        .unwrap();
    let stored = order(&api, &order_id).await;
    assert_eq!(stored.refunded_amount.to_string(), "10.00");
    eprintln!("legacy order: owed {}", stored.owed_tokens().get());

    let settled = resolve(
        &api,
        &order_id,
        json!({"delivered": false, "reason": "no credit in VirtFusion"}),
    )
    .await;
    eprintln!("settled: {:?}", settled.body);
    run_deliveries(&api).await;
    assert_eq!(
        api.virtfusion.balance(user.as_str()),
        0,
        "wholly refunded before the change, delivered in full after it"
    );
}

/// `review::resolve` decides on the owed tokens it read, and its write is
/// conditioned on `delivery = needs_review` only. A completed refund that
/// lands between its read and its write (`token_action` answers Keep for a
/// purchase under review: "the settlement computes it") is not seen: the
/// purchase is closed as `delivered` with the pre-refund credit.
#[tokio::test]
async fn a_refund_landing_during_a_settlement_is_lost() {
    use billing::deliveries::Found;
    use billing::refunds::{Movement, RefundReport, RefundSource, RefundState, apply_refund};
    let api = TestApi::new().await;
    let ledger = api.ledger();
    let reason = billing::Reason::parse("credit is in the panel").unwrap();
    let mut given_away = 0;
    let rounds = 40;
    for round in 0..rounds {
        api.virtfusion
            .set_failure(FailureMode::ApplyThenHang, Some(1));
        let (order_id, user, captured) = paid_tokens(&api, "10").await;
        api.virtfusion.clear_failure();
        assert_eq!(captured.body["status"], json!("needs_review"));
        let credit = api
            .virtfusion
            .credits()
            .into_iter()
            .find(|c| c.user == user.as_str())
            .unwrap();
        let report = RefundReport {
            refund_id: format!("RACE{round}{}", order_id),
            amount: "10.00".parse().unwrap(),
            currency: "USD".into(),
            state: RefundState::Completed,
            movement: Movement::Refund,
        };
        let (settled, refunded) = tokio::join!(
            async {
                tokio::time::sleep(std::time::Duration::from_millis(round as u64)).await;
                billing::deliveries::resolve(
                    &ledger,
                    &order_id,
                    Found::Credit(Some(credit.id)),
                    "admin-1",
                    &reason,
                )
                .await
            },
            apply_refund(&ledger, None, &order_id, &report, &RefundSource::PayPal)
        );
        refunded.unwrap();
        let _ = settled;
        let stored = order(&api, &order_id).await;
        if stored.delivery == Some(Delivery::Delivered)
            && stored.owed_tokens().get() == 0
            && api.virtfusion.balance(user.as_str()) == 1_000
        {
            given_away += 1;
            eprintln!(
                "round {round}: refunded $10, delivered with credit {:?} holding {:?}, owed {}",
                stored.credit_id,
                stored.credit_tokens,
                stored.owed_tokens().get()
            );
        }
    }
    eprintln!("given away in {given_away} of {rounds} rounds");
    assert_eq!(given_away, 0);
}

/// A delivery's claim is taken by a refund (`refund_during_delivery`)
/// while its VirtFusion call is still running; the admin, seeing no credit
/// yet, settles "nothing there"; the job delivers what is owed. When the
/// first call's answer arrives, `claim_lost` overwrites `creditId` with its
/// own credit (condition: `attribute_exists(pk)` only): the job's credit is
/// forgotten, and no settlement can name two credits.
#[tokio::test]
async fn a_late_answer_is_waited_for_and_its_credit_corrected_to_what_is_owed() {
    use billing::deliveries::Found;
    use billing::refunds::{Movement, RefundReport, RefundSource, RefundState, apply_refund};
    use std::time::Duration;
    let api = TestApi::new().await;
    let ledger = api.ledger();
    let client = virtfusion::VirtFusionClient::new(
        &api.virtfusion.base_url(),
        billing_config::SecretValue::new(integration_tests::api::VIRTFUSION_TOKEN),
        Duration::from_millis(5_000),
    )
    .unwrap();
    // Paid; VirtFusion refused once: pending.
    api.virtfusion
        .set_failure(FailureMode::Status(409), Some(1));
    let (order_id, user, captured) = paid_tokens(&api, "10").await;
    api.virtfusion.clear_failure();
    assert_eq!(
        captured.body["status"],
        json!("pending"),
        "{:?}",
        captured.body
    );

    api.virtfusion
        .set_failure(FailureMode::Delay(Duration::from_millis(1_500)), Some(1));
    let reason = billing::Reason::parse("nothing in the panel").unwrap();
    let report = RefundReport {
        refund_id: format!("LATE{order_id}"),
        amount: "4.00".parse().unwrap(),
        currency: "USD".into(),
        state: RefundState::Completed,
        movement: Movement::Refund,
    };
    let (first, _) = tokio::join!(
        billing::tokens::deliver(&ledger, Some(&client), &order_id),
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            apply_refund(&ledger, None, &order_id, &report, &RefundSource::PayPal)
                .await
                .unwrap();
            let o = order(&api, &order_id).await;
            eprintln!("after refund: {:?} {:?}", o.delivery, o.review_reason);
            // The admin looks: no credit yet; but the call may still answer.
            assert_eq!(api.virtfusion.balance(user.as_str()), 0);
            let early = billing::deliveries::resolve(
                &ledger,
                &order_id,
                Found::Nothing,
                "admin-1",
                &reason,
            )
            .await;
            assert!(
                matches!(
                    early,
                    Err(billing::BillingError::Conflict {
                        code: "delivery_in_flight",
                        ..
                    })
                ),
                "{early:?}"
            );
        }
    );
    // The late answer is recorded (its credit kept); the truthful settlement
    // then corrects VirtFusion to what is owed.
    let recorded = order(&api, &order_id).await;
    assert_eq!(recorded.delivery, Some(Delivery::NeedsReview));
    assert!(recorded.credit_id.is_some());
    // The review it went to is announced, with the state change.
    let announced =
        integration_tests::events::outbox_details(&api.table, "tokens.delivery_needs_review").await;
    assert!(
        announced.iter().any(|d| d["orderId"] == json!(order_id)
            && d["reason"] == json!("delivered_after_claim_lost")),
        "{announced:?}"
    );
    billing::deliveries::resolve(&ledger, &order_id, Found::Credit(None), "admin-1", &reason)
        .await
        .unwrap();
    let second = billing::tokens::deliver(&ledger, Some(&client), &order_id)
        .await
        .unwrap();
    eprintln!("second delivery: {second:?}");
    eprintln!("first delivery: {first:?}");
    let stored = order(&api, &order_id).await;
    eprintln!(
        "order: {:?} reason {:?} creditId {:?} creditTokens {:?}; VirtFusion credits {:?}, balance {}",
        stored.delivery,
        stored.review_reason,
        stored.credit_id,
        stored.credit_tokens,
        api.virtfusion
            .credits()
            .iter()
            .filter(|c| c.user == user.as_str())
            .map(|c| (c.id, c.tokens))
            .collect::<Vec<_>>(),
        api.virtfusion.balance(user.as_str())
    );
    // Settle truthfully as far as the API allows: the recorded credit is there.
    let again =
        billing::deliveries::resolve(&ledger, &order_id, Found::Credit(None), "admin-1", &reason)
            .await;
    eprintln!("second settlement: {:?}", again.map(|o| o.delivery));
    billing::tokens::deliver(&ledger, Some(&client), &order_id)
        .await
        .unwrap();
    eprintln!(
        "final balance {} (owed 600)",
        api.virtfusion.balance(user.as_str())
    );
    assert_eq!(api.virtfusion.balance(user.as_str()), 600);
}
