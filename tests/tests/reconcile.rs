#![recursion_limit = "256"]
//! Reconciliation with PayPal (API.md "Reconciliation"): `reconcile-cron`
//! against the PayPal stand-in's Transaction Search and DynamoDB Local; the
//! admin routes through the real handler. Webhooks are off in these tests
//! (the stand-in only sends them when asked): every lost message is real.

use devstack::paypal::EventType;
use integration_tests::api::{TestApi, TestResponse};
use integration_tests::{assert_audit, new_user, usd};
use ledger::UserId;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

const CREDITS: &str = "/api/billing/custom-credits";
const TOKENS: &str = "/api/billing/virtfusion-tokens";
const ADMIN: &str = "/api/admin/reconciliation";

fn job(api: &TestApi, page_size: u32) -> reconcile_cron_fn::Deps {
    let paypal = paypal::PayPalClient::new(
        &api.paypal.base_url(),
        billing_config::SecretValue::new(integration_tests::api::PAYPAL_CLIENT.0),
        billing_config::SecretValue::new(integration_tests::api::PAYPAL_CLIENT.1),
        Duration::from_secs(5),
    )
    .unwrap();
    let virtfusion = virtfusion::VirtFusionClient::new(
        &api.virtfusion.base_url(),
        billing_config::SecretValue::new(integration_tests::api::VIRTFUSION_TOKEN),
        Duration::from_millis(500),
    )
    .unwrap();
    let mut deps = reconcile_cron_fn::Deps::new(api.function_ledger("reconcile-cron"))
        .with_clients(paypal, Some(virtfusion));
    deps.options.page_size = page_size;
    deps
}

/// One run as EventBridge invokes it (its `time` = now); the summary.
async fn run_with(deps: &reconcile_cron_fn::Deps) -> Value {
    let now = ledger::now_rfc3339();
    let event = json!({"version": "0", "detail-type": "Scheduled Event", "source": "aws.events",
        "time": now, "detail": {}});
    let event = lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default());
    reconcile_cron_fn::handle(deps, event)
        .await
        .expect("reconciliation runs")
}

async fn run(api: &TestApi) -> Value {
    run_with(&job(api, 500)).await
}

/// An order of `amount` the buyer approved; (order id, user, token).
async fn approved(api: &TestApi, base: &str, amount: &str) -> (String, UserId, String) {
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let response = api
        .send(
            "POST",
            &format!("{base}/add"),
            &token,
            &format!(r#"{{"amount": {amount}}}"#),
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let order_id = response.body["orderId"].as_str().unwrap().to_owned();
    assert!(api.paypal.approve(&order_id));
    (order_id, user, token)
}

/// Captured at PayPal, but our capture answer and the webhook were both lost.
async fn captured_at_paypal_only(api: &TestApi, order_id: &str) -> String {
    let paypal = api.payments.paypal().await.unwrap();
    let order = paypal
        .capture_order(order_id, &format!("lost-{order_id}"))
        .await
        .unwrap();
    order.captures[0].id.clone()
}

/// A purchase completed normally through our capture route; its capture id.
async fn bought(api: &TestApi, amount: &str) -> (String, String, UserId) {
    let (order_id, user, token) = approved(api, CREDITS, amount).await;
    let response = api
        .send(
            "POST",
            &format!("{CREDITS}/capture"),
            &token,
            &format!(r#"{{"orderId": "{order_id}"}}"#),
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let capture_id = api.paypal.order(&order_id).unwrap().capture_ids[0].clone();
    (order_id, capture_id, user)
}

async fn entries(api: &TestApi, user: &UserId) -> u64 {
    api.ledger().audit(user).await.unwrap().entries
}

async fn admin_get(api: &TestApi) -> TestResponse {
    let admin = api.token("9001", true);
    api.get(ADMIN, &admin).await
}

fn open_ids(listing: &TestResponse) -> Vec<String> {
    listing.body["openMismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_lost_webhook_and_a_lost_capture_answer_are_healed_once() {
    let api = TestApi::new().await;
    let (order_id, user, _) = approved(&api, CREDITS, "12.34").await;
    let capture_id = captured_at_paypal_only(&api, &order_id).await;
    assert_eq!(api.ledger().balance(&user).await.unwrap(), usd("0"));

    let first = run(&api).await;
    assert_eq!(first["healed"], 1, "{first}");
    assert_eq!(first["healedCaptures"], 1);
    assert_eq!(first["mismatches"], 0, "{first}");
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("12.34"));
    assert_eq!(entries(&api, &user).await, 1);
    let order = billing::orders::load(&api.ledger(), &order_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(order.capture_id.as_deref(), Some(capture_id.as_str()));

    // The same window again: nothing more; and the capture route (the client
    // retrying) only replays the credit.
    let second = run(&api).await;
    assert_eq!(second["healed"], 0, "{second}");
    assert_eq!(second["checked"], first["checked"]);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("12.34"));
    assert_eq!(entries(&api, &user).await, 1);
}

#[tokio::test]
async fn a_paid_token_purchase_never_recorded_becomes_a_pending_delivery() {
    let api = TestApi::new().await;
    let (order_id, user, _) = approved(&api, TOKENS, "5").await;
    captured_at_paypal_only(&api, &order_id).await;
    let summary = run(&api).await;
    assert_eq!(summary["healed"], 1, "{summary}");
    let order = billing::orders::load(&api.ledger(), &order_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(order.status, billing::orders::PaymentStatus::Completed);
    assert_eq!(order.delivery, Some(billing::orders::Delivery::Pending));
    // Owed, listed for the job; nothing sent to VirtFusion by the reconciliation.
    let pending = billing::deliveries::list(&api.ledger(), billing::orders::Delivery::Pending, 100)
        .await
        .unwrap();
    assert!(pending.iter().any(|o| o.order_id == order_id));
    assert_eq!(run(&api).await["healed"], 0);
    // Custom credits untouched.
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("0"));
}

#[tokio::test]
async fn a_dashboard_refund_whose_webhook_never_came_is_applied_once() {
    let api = TestApi::new().await;
    let (_, capture_id, user) = bought(&api, "20").await;
    // Refunded in PayPal's dashboard: our system never hears of it.
    let paypal = api.payments.paypal().await.unwrap();
    let refund = paypal
        .refund_capture(&capture_id, Some(usd("7.50")), "dashboard-1", None)
        .await
        .unwrap();

    let first = run(&api).await;
    assert_eq!(first["healedRefunds"], 1, "{first}");
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("12.50"));
    assert_eq!(entries(&api, &user).await, 2);

    // Twice over the same window, then the late webhook: still one debit.
    assert_eq!(run(&api).await["healed"], 0);
    let event = api
        .paypal
        .signed_event(EventType::CaptureRefunded, &refund.id)
        .unwrap();
    let headers: Vec<(&str, &str)> = event
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = String::from_utf8(event.body.clone()).unwrap();
    let response = api
        .call("POST", "/webhooks/paypal", None, Some(&body), &headers)
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("12.50"));
    assert_eq!(entries(&api, &user).await, 2);
}

#[tokio::test]
async fn a_lost_reversal_is_applied_as_debt_if_need_be() {
    let api = TestApi::new().await;
    let (_, capture_id, user) = bought(&api, "10").await;
    // The user spends part of it, then the buyer's bank takes it all back.
    let admin = api.token("9001", true);
    let spent = api
        .send(
            "DELETE",
            &format!("/api/admin/users/{user}/custom-credits"),
            &admin,
            r#"{"amount": 4, "reason": "spent"}"#,
        )
        .await;
    assert_eq!(spent.status, 200, "{:?}", spent.body);
    assert!(api.paypal.reverse_capture(&capture_id).is_some());

    let summary = run(&api).await;
    assert_eq!(summary["reversals"], 1, "{summary}");
    assert_eq!(summary["healedRefunds"], 1, "{summary}");
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("-4.00"));
    let page = api.ledger().entries(&user, 10, None).await.unwrap();
    assert!(
        page.entries
            .iter()
            .any(|e| e.kind == ledger::EntryKind::Reversal)
    );
    assert_eq!(run(&api).await["healed"], 0);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("-4.00"));
}

/// Delivers a PayPal-signed webhook through the local API; its status.
async fn deliver(api: &TestApi, event: &devstack::paypal::SignedEvent) -> u16 {
    let headers: Vec<(&str, &str)> = event
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = String::from_utf8(event.body.clone()).unwrap();
    api.call("POST", "/webhooks/paypal", None, Some(&body), &headers)
        .await
        .status
}

async fn entry_kinds(api: &TestApi, user: &UserId) -> Vec<String> {
    let page = api.ledger().entries(user, 20, None).await.unwrap();
    let mut kinds: Vec<String> = page
        .entries
        .iter()
        .map(|e| e.kind.as_str().to_owned())
        .collect();
    kinds.reverse();
    kinds
}

/// Finding 4 of issue 25: a chargeback and its won dispute that no webhook
/// reported. PayPal's report holds the chargeback (`T1201`) and its
/// reversal (`T1202`, the money back): the ledger ends where PayPal is.
#[tokio::test]
async fn a_chargeback_and_its_won_dispute_never_reported_net_to_nothing() {
    let api = TestApi::new().await;
    let (_, capture_id, user) = bought(&api, "10").await;
    let reversal_id = api.paypal.reverse_capture(&capture_id).unwrap();
    api.paypal.win_dispute(&reversal_id).unwrap();

    let first = run(&api).await;
    assert_eq!(first["mismatches"], 0, "{first}");
    assert_eq!(
        first["healedRefunds"], 2,
        "the chargeback, then its reversal: {first}"
    );
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("10.00"));
    assert_eq!(
        entry_kinds(&api, &user).await,
        vec!["purchase", "reversal", "reversal_cancelled"]
    );
    let again = run(&api).await;
    assert_eq!(again["healed"], 0, "{again}");
    assert_eq!(again["mismatches"], 0, "{again}");
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("10.00"));
}

/// The chargeback's webhook came, the won dispute's was lost: the `T1202`
/// line restores it; and a won dispute whose chargeback is unknown here is
/// remembered until the chargeback is applied.
#[tokio::test]
async fn a_won_dispute_whose_webhook_was_lost_is_restored_by_reconciliation() {
    let api = TestApi::new().await;
    let (_, capture_id, user) = bought(&api, "8").await;
    let reversal_id = api.paypal.reverse_capture(&capture_id).unwrap();
    let reversed = api
        .paypal
        .signed_event(EventType::CaptureReversed, &reversal_id)
        .unwrap();
    assert_eq!(deliver(&api, &reversed).await, 200);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("0.00"));
    let resolved = api.paypal.win_dispute(&reversal_id).unwrap();

    let summary = run(&api).await;
    assert_eq!(summary["healedRefunds"], 1, "{summary}");
    assert_eq!(summary["mismatches"], 0, "{summary}");
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("8.00"));
    // The dispute's webhook arrives after all: nothing more.
    assert_eq!(deliver(&api, &resolved).await, 200);
    assert_eq!(run(&api).await["healed"], 0);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("8.00"));
    assert_eq!(
        entry_kinds(&api, &user).await,
        vec!["purchase", "reversal", "reversal_cancelled"]
    );
}

/// Finding 5 of issue 25: PayPal completed a refund the ledger holds as
/// failed (or cancelled after taking it at pending). PayPal is the source
/// of truth: reconciliation applies it, as any completed refund never
/// applied, once.
#[tokio::test]
async fn a_refund_paypal_completed_but_the_ledger_holds_as_failed_is_applied_once() {
    use billing::refunds::{Movement, RefundReport, RefundSource, RefundState, apply_refund};
    let api = TestApi::new().await;
    let ledger = api.ledger();
    let paypal = api.payments.paypal().await.unwrap();
    // A: reported failed straight away (nothing taken); B: pending (taken),
    // then cancelled (given back). PayPal completed both.
    let (order_a, capture_a, user_a) = bought(&api, "20").await;
    let (order_b, capture_b, user_b) = bought(&api, "20").await;
    api.paypal.set_pending_refunds(true, Some(2));
    let refund_a = paypal
        .refund_capture(&capture_a, Some(usd("7.00")), "dash-a", None)
        .await
        .unwrap();
    let refund_b = paypal
        .refund_capture(&capture_b, Some(usd("6.00")), "dash-b", None)
        .await
        .unwrap();
    let report = |id: &str, amount: &str, state| RefundReport {
        refund_id: id.to_owned(),
        amount: usd(amount),
        currency: "USD".into(),
        state,
        movement: Movement::Refund,
    };
    let a = report(&refund_a.id, "7.00", RefundState::Failed);
    apply_refund(&ledger, None, &order_a, &a, &RefundSource::PayPal)
        .await
        .unwrap();
    let b = report(&refund_b.id, "6.00", RefundState::Pending);
    apply_refund(&ledger, None, &order_b, &b, &RefundSource::PayPal)
        .await
        .unwrap();
    let b = report(&refund_b.id, "6.00", RefundState::Cancelled);
    apply_refund(&ledger, None, &order_b, &b, &RefundSource::PayPal)
        .await
        .unwrap();
    assert_eq!(assert_audit(&ledger, &user_a).await, usd("20.00"));
    assert_eq!(assert_audit(&ledger, &user_b).await, usd("20.00"));
    for id in [&refund_a.id, &refund_b.id] {
        assert!(
            api.paypal
                .settle_refund(id, devstack::paypal::RefundSettlement::Completed)
        );
    }

    let first = run(&api).await;
    assert_eq!(first["healedRefunds"], 2, "{first}");
    assert_eq!(first["mismatches"], 0, "{first}");
    assert_eq!(assert_audit(&ledger, &user_a).await, usd("13.00"));
    assert_eq!(assert_audit(&ledger, &user_b).await, usd("14.00"));
    for id in [&refund_a.id, &refund_b.id] {
        let record = billing::refunds::load_refund(&ledger, id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.state, RefundState::Completed, "{id}");
    }
    let again = run(&api).await;
    assert_eq!(again["healed"], 0, "{again}");
    // A late webhook of the completion: nothing more.
    let late = api
        .paypal
        .signed_event(EventType::CaptureRefunded, &refund_a.id)
        .unwrap();
    assert_eq!(deliver(&api, &late).await, 200);
    assert_eq!(assert_audit(&ledger, &user_a).await, usd("13.00"));
    assert_eq!(assert_audit(&ledger, &user_b).await, usd("14.00"));
    assert_eq!(
        entry_kinds(&api, &user_b).await,
        vec!["purchase", "refund", "refund_reverted", "refund"]
    );
    let order = billing::orders::load(&ledger, &order_a)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(order.refunded_amount, usd("7.00"));
}

/// Finding 5 for token purchases: the whole refund PayPal completed, held
/// here as failed (straight away, or after pending), is taken as a
/// completed refund is: the delivered credit revoked at VirtFusion once,
/// one history line saying completed.
#[tokio::test]
async fn a_token_refund_paypal_completed_but_held_as_failed_revokes_once() {
    use billing::refunds::{Movement, RefundReport, RefundSource, RefundState, apply_refund};
    let api = TestApi::new().await;
    let ledger = api.ledger();
    let paypal = api.payments.paypal().await.unwrap();
    let mut cases = Vec::new();
    for (i, via_pending) in [false, true].into_iter().enumerate() {
        let (order_id, user, token) = approved(&api, TOKENS, "3").await;
        let captured = api
            .send(
                "POST",
                &format!("{TOKENS}/capture"),
                &token,
                &format!(r#"{{"orderId": "{order_id}"}}"#),
            )
            .await;
        assert_eq!(
            captured.body["status"],
            json!("completed"),
            "{:?}",
            captured.body
        );
        assert_eq!(api.virtfusion.balance(user.as_str()), 300);
        let capture_id = api.paypal.order(&order_id).unwrap().capture_ids[0].clone();
        api.paypal.set_pending_refunds(true, Some(1));
        let refund = paypal
            .refund_capture(&capture_id, None, &format!("tok-{i}"), None)
            .await
            .unwrap();
        let report = |state| RefundReport {
            refund_id: refund.id.clone(),
            amount: usd("3.00"),
            currency: "USD".into(),
            state,
            movement: Movement::Refund,
        };
        let states = if via_pending {
            vec![RefundState::Pending, RefundState::Failed]
        } else {
            vec![RefundState::Failed]
        };
        for state in states {
            apply_refund(
                &ledger,
                None,
                &order_id,
                &report(state),
                &RefundSource::PayPal,
            )
            .await
            .unwrap();
        }
        assert!(
            api.paypal
                .settle_refund(&refund.id, devstack::paypal::RefundSettlement::Completed)
        );
        cases.push((order_id, user, refund.id));
    }

    let first = run(&api).await;
    assert_eq!(first["healedRefunds"], 2, "{first}");
    assert_eq!(first["mismatches"], 0, "{first}");
    assert_eq!(run(&api).await["healed"], 0);
    for (order_id, user, refund_id) in &cases {
        let order = billing::orders::load(&ledger, order_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(order.refunded_amount, usd("3.00"));
        assert_eq!(order.delivery, Some(billing::orders::Delivery::Refunded));
        assert_eq!(api.virtfusion.balance(user.as_str()), 0, "revoked once");
        let record = billing::refunds::load_refund(&ledger, refund_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.state, RefundState::Completed);
        let (lines, _) = billing::purchases::token_purchases(&ledger, user, 10, None)
            .await
            .unwrap();
        let refunds: Vec<_> = lines.iter().filter(|l| l.kind == "refund").collect();
        assert_eq!(refunds.len(), 1, "{lines:?}");
        assert_eq!(refunds[0].status, "completed");
        assert_eq!(refunds[0].tokens.get(), -300);
    }
    assert_eq!(api.virtfusion.credits().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconciliation_racing_a_late_webhook_and_a_capture_retry_credits_once() {
    let api = Arc::new(TestApi::new().await);
    let (order_id, user, token) = approved(&api, CREDITS, "9.99").await;
    let capture_id = captured_at_paypal_only(&api, &order_id).await;
    let event = api
        .paypal
        .signed_event(EventType::CaptureCompleted, &capture_id)
        .unwrap();
    let deps = Arc::new(job(&api, 500));
    let mut tasks = JoinSet::new();
    for i in 0..12 {
        let (api, event, token, order_id, deps) = (
            api.clone(),
            event.clone(),
            token.clone(),
            order_id.clone(),
            deps.clone(),
        );
        tasks.spawn(async move {
            match i % 3 {
                0 => {
                    run_with(&deps).await;
                    200
                }
                1 => {
                    let headers: Vec<(&str, &str)> = event
                        .headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    let body = String::from_utf8(event.body.clone()).unwrap();
                    api.call("POST", "/webhooks/paypal", None, Some(&body), &headers)
                        .await
                        .status
                }
                _ => {
                    api.send(
                        "POST",
                        &format!("{CREDITS}/capture"),
                        &token,
                        &format!(r#"{{"orderId": "{order_id}"}}"#),
                    )
                    .await
                    .status
                }
            }
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("9.99"));
    assert_eq!(entries(&api, &user).await, 1);
    assert_eq!(run(&api).await["healed"], 0);
}

#[tokio::test]
async fn mismatches_are_listed_move_nothing_and_are_resolved_by_an_admin() {
    let api = TestApi::new().await;
    // 1. An amount that differs: our order says 12.00, PayPal captured 10.00.
    let (order_id, user, _) = approved(&api, CREDITS, "10").await;
    let amount_capture = captured_at_paypal_only(&api, &order_id).await;
    api.table
        .client
        .update_item()
        .table_name(&api.table.name)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("ORDER#{order_id}")),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("ORDER".into()),
        )
        .update_expression("SET amount = :a")
        .expression_attribute_values(
            ":a",
            aws_sdk_dynamodb::types::AttributeValue::N("12.00".into()),
        )
        .send()
        .await
        .unwrap();
    // 2. A payment for no order of ours (someone used the PayPal account directly).
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
    let foreign_capture = captured_at_paypal_only(&api, &foreign.id).await;
    // 3. A purchase in our books that PayPal does not know.
    let (ghost_order, ghost_user) = ghost_purchase(&api, "8.00").await;

    let first = run(&api).await;
    assert_eq!(first["healed"], 0, "{first}");
    assert_eq!(first["mismatches"], 3, "{first}");
    assert_eq!(first["newMismatches"], 3);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("0"));
    let order = billing::orders::load(&api.ledger(), &order_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(order.status, billing::orders::PaymentStatus::Created);

    let listing = admin_get(&api).await;
    assert_eq!(listing.status, 200, "{:?}", listing.body);
    let ids = open_ids(&listing);
    let amount_id = format!("{amount_capture}-amount");
    let foreign_id = format!("{foreign_capture}-unknown");
    assert!(ids.contains(&amount_id), "{ids:?}");
    assert!(ids.contains(&foreign_id), "{ids:?}");
    let ghost = listing.body["openMismatches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "unknown_to_paypal")
        .expect("the ghost purchase is listed");
    assert_eq!(ghost["orderId"], json!(ghost_order));
    let amount = listing.body["openMismatches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == json!(amount_id))
        .unwrap();
    assert_eq!(amount["paypalAmount"], "10.00");
    assert_eq!(amount["ledgerAmount"], "12.00");
    assert_eq!(listing.body["runs"][0]["mismatches"], 3);

    // Again: the same open mismatches, nothing new, nothing moved.
    let second = run(&api).await;
    assert_eq!(second["mismatches"], 3, "{second}");
    assert_eq!(second["newMismatches"], 0);
    assert_eq!(open_ids(&admin_get(&api).await).len(), ids.len());

    // Resolving: admin only, a reason, once.
    let admin = api.token("9001", true);
    let path = format!("{ADMIN}/{foreign_id}/resolve");
    let user_token = api.token(user.as_str(), false);
    assert_eq!(
        api.send("POST", &path, &user_token, r#"{"reason": "x"}"#)
            .await
            .status,
        403
    );
    assert_eq!(
        api.send("POST", &path, &admin, r#"{"reason": "  "}"#)
            .await
            .status,
        400
    );
    let resolved = api
        .send(
            "POST",
            &path,
            &admin,
            r#"{"reason": "PayPal account used by hand"}"#,
        )
        .await;
    assert_eq!(resolved.status, 200, "{:?}", resolved.body);
    assert_eq!(resolved.body["success"], true);
    assert_eq!(resolved.body["mismatch"]["status"], "resolved");
    assert_eq!(resolved.body["mismatch"]["resolvedBy"], "9001");
    let again = api
        .send("POST", &path, &admin, r#"{"reason": "again"}"#)
        .await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    let unknown = api
        .send(
            "POST",
            &format!("{ADMIN}/NOSUCHID-amount/resolve"),
            &admin,
            r#"{"reason": "x"}"#,
        )
        .await;
    assert_eq!(unknown.status, 404);
    assert!(!open_ids(&admin_get(&api).await).contains(&foreign_id));
    // A resolved mismatch is not reopened by the next run.
    let third = run(&api).await;
    assert_eq!(third["newMismatches"], 0, "{third}");
    assert!(!open_ids(&admin_get(&api).await).contains(&foreign_id));

    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("0"));
    assert_eq!(assert_audit(&api.ledger(), &ghost_user).await, usd("8.00"));
}

/// A settled order (credited, indexed) whose capture PayPal never made:
/// written as the settlement writes it, with an id PayPal does not know.
async fn ghost_purchase(api: &TestApi, amount: &str) -> (String, UserId) {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    let user = new_user();
    let order_id = format!("GHOST{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let capture_id = format!("GC{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    // Settled a minute ago: before PayPal's report was last refreshed (its
    // `last_refreshed_datetime` has whole seconds), so it is due in this run.
    let now = ledger::format_rfc3339(time::OffsetDateTime::now_utc() - time::Duration::minutes(1));
    let record = billing::orders::OrderRecord {
        order_id: order_id.clone(),
        user: user.clone(),
        kind: billing::orders::PurchaseKind::Credits,
        amount: usd(amount),
        tokens: None,
        purchase_id: format!("ghost-{order_id}"),
        status: billing::orders::PaymentStatus::Completed,
        capture_id: Some(capture_id.clone()),
        captured_amount: Some(usd(amount)),
        refunded_amount: usd("0"),
        refunds_completed: None,
        capture_attempt: 0,
        delivery: None,
        credit_id: None,
        credit_tokens: None,
        sending_tokens: None,
        stray_credits: Vec::new(),
        created_at: now.clone(),
        reversal_id: None,
        review_reason: None,
        delivery_attempts: 0,
    };
    let mut item = record.to_item();
    item.insert("settledAt".into(), A::S(now.clone()));
    item.insert(
        "gsi2pk".into(),
        A::S(billing::reconcile::settled_partition(&now)),
    );
    item.insert("gsi2sk".into(), A::S(format!("{now}#{order_id}")));
    api.table
        .client
        .put_item()
        .table_name(&api.table.name)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
    let change = ledger::Change::new(
        user.clone(),
        usd(amount),
        ledger::EntryDetails::new(ledger::EntryKind::Purchase, "ghost").reference(&order_id),
    )
    .once(ledger::OnceKey::new("capture", &capture_id));
    api.ledger().apply(change).await.unwrap();
    (order_id, user)
}

#[tokio::test]
async fn paging_across_several_pages_heals_every_line() {
    let api = TestApi::new().await;
    let mut users = Vec::new();
    for i in 0..5 {
        let (order_id, user, _) = approved(&api, CREDITS, &format!("{}.00", i + 1)).await;
        let capture_id = captured_at_paypal_only(&api, &order_id).await;
        if i % 2 == 0 {
            // Refunded at PayPal too: the refund names a capture the ledger
            // has not settled yet — settled first, then refunded.
            let paypal = api.payments.paypal().await.unwrap();
            paypal
                .refund_capture(&capture_id, Some(usd("0.50")), &format!("dash-{i}"), None)
                .await
                .unwrap();
        }
        users.push((user, i));
    }
    let deps = job(&api, 2);
    let before = api.paypal.search_count();
    let summary = run_with(&deps).await;
    assert_eq!(summary["checked"], 8, "{summary}");
    assert_eq!(summary["pages"], 4, "{summary}");
    assert_eq!(api.paypal.search_count() - before, 4);
    assert_eq!(summary["healed"], 8, "{summary}");
    assert_eq!(summary["complete"], true);
    for (user, i) in &users {
        let expected = if i % 2 == 0 {
            format!("{}.50", i)
        } else {
            format!("{}.00", i + 1)
        };
        assert_eq!(
            assert_audit(&api.ledger(), user).await,
            usd(&expected),
            "user {i}"
        );
    }
    let again = run_with(&deps).await;
    assert_eq!(again["healed"], 0, "{again}");
    for (user, _) in &users {
        assert_audit(&api.ledger(), user).await;
    }
}

#[tokio::test]
async fn what_paypal_has_not_reported_yet_waits_for_a_later_run() {
    let api = TestApi::new().await;
    let (order_id, user, _) = approved(&api, CREDITS, "6").await;
    captured_at_paypal_only(&api, &order_id).await;
    // A settled purchase PayPal has not reported yet is no mismatch either.
    let (_, _, buyer) = bought(&api, "4").await;
    api.paypal
        .set_reporting_delay(Duration::from_secs(3 * 3600));
    let early = run(&api).await;
    assert_eq!(early["checked"], 0, "{early}");
    assert_eq!(early["healed"], 0);
    assert_eq!(early["mismatches"], 0, "{early}");
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("0"));

    api.paypal.set_reporting_delay(Duration::ZERO);
    let later = run(&api).await;
    assert_eq!(later["healed"], 1, "{later}");
    assert_eq!(later["mismatches"], 0, "{later}");
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("6.00"));
    assert_eq!(assert_audit(&api.ledger(), &buyer).await, usd("4.00"));
}

#[tokio::test]
async fn the_sample_event_runs_and_a_clock_ahead_is_refused() {
    let api = TestApi::new().await;
    let deps = job(&api, 500);
    let sample = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../events/reconcile-cron.json"
    ))
    .unwrap();
    let event: Value = serde_json::from_str(&sample).unwrap();
    let summary = reconcile_cron_fn::handle(
        &deps,
        lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default()),
    )
    .await
    .expect("the sample event runs");
    assert_eq!(summary["complete"], true);
    let ahead = json!({"time": "2999-01-01T00:00:00Z"});
    let refused = reconcile_cron_fn::handle(
        &deps,
        lambda_runtime::LambdaEvent::new(ahead, lambda_runtime::Context::default()),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.error_type, "ClockSkew");
}

#[tokio::test]
async fn the_admin_sample_events_drive_their_function() {
    let api = TestApi::new().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    for (file, expected) in [
        ("admin-reconciliation.get.json", 200),
        // No mismatch of that id in a fresh table.
        ("admin-reconciliation.post.json", 404),
    ] {
        let mut event: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
        event["headers"]["authorization"] = json!(format!("Bearer {}", api.token("1", true)));
        let response = api.invoke("admin-reconciliation", &event.to_string()).await;
        assert_eq!(response.status, expected, "{file}: {:?}", response.body);
    }
}

#[tokio::test]
async fn paypal_down_fails_the_run_with_a_named_error_and_moves_nothing() {
    let api = TestApi::new().await;
    let (order_id, user, _) = approved(&api, CREDITS, "3").await;
    captured_at_paypal_only(&api, &order_id).await;
    api.paypal.refuse_connections(None);
    let deps = job(&api, 500);
    let event = json!({"time": ledger::now_rfc3339()});
    let refused = reconcile_cron_fn::handle(
        &deps,
        lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default()),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.error_type, "PayPalUnavailable");
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("0"));
    // Back up: the schedule's retry heals it.
    api.paypal.accept_connections();
    assert_eq!(run(&api).await["healed"], 1);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("3.00"));
}

/// A pending refund that PayPal then failed, whose `PAYMENT.REFUND.FAILED`
/// webhook was lost: Transaction Search lists it denied (`D`), so
/// reconciliation applies the failure and the pending refund's money comes
/// back, once (found by the simulator, seed 5212919827310436867).
#[tokio::test]
async fn a_pending_refund_failed_at_paypal_whose_webhook_was_lost_is_given_back() {
    use billing::refunds::{Movement, RefundReport, RefundSource, RefundState, apply_refund};
    let api = TestApi::new().await;
    let ledger = api.ledger();
    let paypal = api.payments.paypal().await.unwrap();
    let (order, capture, user) = bought(&api, "20").await;
    api.paypal.set_pending_refunds(true, Some(1));
    let refund = paypal
        .refund_capture(&capture, Some(usd("7.00")), "dash-pending", None)
        .await
        .unwrap();
    let pending = RefundReport {
        refund_id: refund.id.clone(),
        amount: usd("7.00"),
        currency: "USD".into(),
        state: RefundState::Pending,
        movement: Movement::Refund,
    };
    apply_refund(&ledger, None, &order, &pending, &RefundSource::PayPal)
        .await
        .unwrap();
    assert_eq!(assert_audit(&ledger, &user).await, usd("13.00"));
    // PayPal fails it; its webhook never arrives.
    assert!(
        api.paypal
            .settle_refund(&refund.id, devstack::paypal::RefundSettlement::Failed)
    );

    let first = run(&api).await;
    assert_eq!(first["healedRefunds"], 1, "{first}");
    assert_eq!(first["mismatches"], 0, "{first}");
    assert_eq!(assert_audit(&ledger, &user).await, usd("20.00"));
    let record = billing::refunds::load_refund(&ledger, &refund.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, RefundState::Failed);
    let again = run(&api).await;
    assert_eq!(again["healed"], 0, "{again}");
    assert_eq!(assert_audit(&ledger, &user).await, usd("20.00"));
}
