//! The PayPal client against the devstack stand-in: the purchase flow, each
//! error class, idempotency by `PayPal-Request-Id`, the token cache, and
//! webhook signatures.

use billing_config::SecretValue;
use billing_money::Usd;
use devstack::paypal::{
    CaptureOutcome, EventType, Failure, Operation, PayPalStandIn, SignedEvent, StandInConfig,
    WebhookMode,
};
use paypal::{
    CaptureStatus, CreateOrder, OrderStatus, PayPalClient, PayPalError, RefundStatus,
    WebhookHeaders, WebhookResource, parse_webhook_event,
};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const CLIENT_ID: &str = "test-client";
const CLIENT_SECRET: &str = "test-secret";
const WEBHOOK_ID: &str = "WH-TEST-1";
const USER: &str = "user-42";

async fn stand_in() -> PayPalStandIn {
    PayPalStandIn::spawn(
        "127.0.0.1:0".parse().unwrap(),
        CLIENT_ID,
        CLIENT_SECRET,
        WEBHOOK_ID,
    )
    .await
    .unwrap()
}

fn client_with(base_url: &str, secret: &str, timeout_ms: u64) -> PayPalClient {
    PayPalClient::new(
        base_url,
        SecretValue::new(CLIENT_ID),
        SecretValue::new(secret),
        Duration::from_millis(timeout_ms),
    )
    .unwrap()
    .with_webhook_id(WEBHOOK_ID)
}

fn client(pp: &PayPalStandIn) -> PayPalClient {
    client_with(&pp.base_url(), CLIENT_SECRET, 300)
}

fn usd(text: &str) -> Usd {
    text.parse().unwrap()
}

fn order_req(purchase: &str, amount: &str) -> CreateOrder {
    CreateOrder {
        amount: usd(amount),
        custom_id: USER.into(),
        invoice_id: purchase.into(),
        description: "Custom credits".into(),
        request_id: format!("create-{purchase}"),
        return_url: None,
        cancel_url: None,
    }
}

/// Creates and approves an order; its id.
async fn approved_order(
    pp: &PayPalStandIn,
    c: &PayPalClient,
    purchase: &str,
    amount: &str,
) -> String {
    let order = c.create_order(&order_req(purchase, amount)).await.unwrap();
    assert!(pp.approve(&order.id));
    order.id
}

fn webhook_headers(event: &SignedEvent) -> WebhookHeaders {
    WebhookHeaders::from_lookup(|name| event.header(name)).unwrap()
}

#[tokio::test]
async fn purchase_flow_with_partial_refunds() {
    let pp = stand_in().await;
    let c = client(&pp);

    let order = c
        .create_order(&order_req("purchase-1", "10.00"))
        .await
        .unwrap();
    assert_eq!(order.status, OrderStatus::Created);
    assert_eq!(order.custom_id.as_deref(), Some(USER));
    assert_eq!(order.invoice_id.as_deref(), Some("purchase-1"));
    assert!(order.captures.is_empty());
    let approve_url = order.approve_url.clone().unwrap();
    assert_eq!(
        approve_url,
        format!("{}/checkoutnow?token={}", pp.base_url(), order.id)
    );
    let stored = pp.order(&order.id).unwrap();
    assert_eq!(stored.amount_cents, 1000);
    assert_eq!(stored.description.as_deref(), Some("Custom credits"));

    // The buyer opens the approve URL.
    let page = reqwest::get(&approve_url).await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        c.get_order(&order.id).await.unwrap().status,
        OrderStatus::Approved
    );

    let captured = c
        .capture_order(&order.id, "capture-purchase-1")
        .await
        .unwrap();
    assert_eq!(captured.status, OrderStatus::Completed);
    let [capture] = captured.captures.as_slice() else {
        panic!("one capture expected: {captured:?}")
    };
    assert_eq!(capture.status, CaptureStatus::Completed);
    assert_eq!(capture.amount, usd("10.00"));
    assert_eq!(capture.currency, "USD");
    assert_eq!(capture.custom_id.as_deref(), Some(USER));
    assert_eq!(capture.invoice_id.as_deref(), Some("purchase-1"));
    assert_eq!(capture.order_id.as_deref(), Some(order.id.as_str()));
    assert_eq!(c.get_order(&order.id).await.unwrap(), captured);

    let first = c
        .refund_capture(&capture.id, Some(usd("2.50")), "refund-1", Some("partial"))
        .await
        .unwrap();
    assert_eq!(first.status, RefundStatus::Completed);
    assert_eq!(first.amount, usd("2.50"));
    assert_eq!(first.capture_id.as_deref(), Some(capture.id.as_str()));
    assert_eq!(
        pp.capture(&capture.id).unwrap().status,
        "PARTIALLY_REFUNDED"
    );
    let order_now = c.get_order(&order.id).await.unwrap();
    assert_eq!(
        order_now.captures[0].status,
        CaptureStatus::PartiallyRefunded
    );

    // More than what remains (7.50) is refused and changes nothing.
    let over = c
        .refund_capture(&capture.id, Some(usd("7.51")), "refund-2", None)
        .await
        .unwrap_err();
    assert_eq!(
        over,
        PayPalError::Rejected {
            status: 422,
            issue: Some("REFUND_AMOUNT_EXCEEDED".into())
        }
    );
    assert!(!over.is_transient());

    // The rest, with an empty body.
    let rest = c
        .refund_capture(&capture.id, None, "refund-3", None)
        .await
        .unwrap();
    assert_eq!(rest.amount, usd("7.50"));
    assert_eq!(pp.capture(&capture.id).unwrap().status, "REFUNDED");
    let refunds = pp.refunds();
    assert_eq!(refunds.len(), 2);
    assert_eq!(refunds.iter().map(|r| r.amount_cents).sum::<i64>(), 1000);

    let nothing_left = c
        .refund_capture(&capture.id, Some(usd("0.01")), "refund-4", None)
        .await
        .unwrap_err();
    assert_eq!(
        nothing_left,
        PayPalError::Rejected {
            status: 422,
            issue: Some("CAPTURE_FULLY_REFUNDED".into())
        }
    );
    // One token for the whole flow.
    assert_eq!(pp.token_request_count(), 1);
}

#[tokio::test]
async fn second_capture_reads_the_order() {
    let pp = stand_in().await;
    let c = client(&pp);
    let id = approved_order(&pp, &c, "purchase-2", "25.00").await;
    let first = c.capture_order(&id, "capture-a").await.unwrap();
    // Another request id: PayPal says ORDER_ALREADY_CAPTURED; the client
    // answers the order as it is.
    let second = c.capture_order(&id, "capture-b").await.unwrap();
    assert_eq!(second, first);
    assert_eq!(second.captures[0].amount, usd("25.00"));
    assert_eq!(pp.captures().len(), 1);
}

#[tokio::test]
async fn capture_before_approval_is_not_approved_then_works() {
    let pp = stand_in().await;
    let c = client(&pp);
    let order = c
        .create_order(&order_req("purchase-3", "5.00"))
        .await
        .unwrap();
    let err = c.capture_order(&order.id, "capture-3").await.unwrap_err();
    assert_eq!(err, PayPalError::NotApproved);
    assert!(err.is_definitely_not_applied());
    assert!(pp.captures().is_empty());
    // The same request id works once the buyer approved (errors are not replayed).
    assert!(pp.approve(&order.id));
    let captured = c.capture_order(&order.id, "capture-3").await.unwrap();
    assert_eq!(captured.captures[0].status, CaptureStatus::Completed);
}

#[tokio::test]
async fn request_ids_are_replayed_not_reapplied() {
    let pp = stand_in().await;
    let c = client(&pp);
    let req = order_req("purchase-4", "12.34");
    let a = c.create_order(&req).await.unwrap();
    let b = c.create_order(&req).await.unwrap();
    assert_eq!(a.id, b.id);
    assert_eq!(pp.orders().len(), 1);

    assert!(pp.approve(&a.id));
    let first = c.capture_order(&a.id, "capture-4").await.unwrap();
    let again = c.capture_order(&a.id, "capture-4").await.unwrap();
    assert_eq!(first, again);
    assert_eq!(pp.captures().len(), 1);

    let capture_id = &first.captures[0].id;
    let r1 = c
        .refund_capture(capture_id, Some(usd("1.00")), "refund-4", None)
        .await
        .unwrap();
    let r2 = c
        .refund_capture(capture_id, Some(usd("1.00")), "refund-4", None)
        .await
        .unwrap();
    assert_eq!(r1, r2);
    assert_eq!(pp.refunds().len(), 1);
    assert_eq!(pp.capture(capture_id).unwrap().refunded_cents, 100);
}

#[tokio::test]
async fn capture_applied_then_timed_out_is_settled_by_retrying_the_request_id() {
    let pp = stand_in().await;
    let c = client(&pp);
    let id = approved_order(&pp, &c, "purchase-5", "8.00").await;
    pp.set_failure(Operation::CaptureOrder, Failure::ApplyThenHang, Some(1));
    let err = c.capture_order(&id, "capture-5").await.unwrap_err();
    assert_eq!(err, PayPalError::Timeout);
    assert!(err.is_transient());
    assert!(!err.is_definitely_not_applied());
    assert_eq!(pp.captures().len(), 1);
    let retried = c.capture_order(&id, "capture-5").await.unwrap();
    assert_eq!(retried.captures[0].id, pp.captures()[0].id);
    assert_eq!(pp.captures().len(), 1);
}

#[tokio::test]
async fn token_is_cached_and_refreshed_once_on_401() {
    let pp = stand_in().await;
    let c = client(&pp);
    let id = c
        .create_order(&order_req("purchase-6", "1.00"))
        .await
        .unwrap()
        .id;
    for _ in 0..3 {
        c.get_order(&id).await.unwrap();
    }
    // Clones share the cache.
    c.clone().get_order(&id).await.unwrap();
    assert_eq!(pp.token_request_count(), 1);

    pp.expire_tokens();
    let requests = pp.request_count();
    c.get_order(&id).await.unwrap();
    assert_eq!(pp.token_request_count(), 2);
    // 401, token, retry.
    assert_eq!(pp.request_count(), requests + 3);
    c.get_order(&id).await.unwrap();
    assert_eq!(pp.token_request_count(), 2);
}

#[tokio::test]
async fn token_is_renewed_a_minute_before_it_expires() {
    let pp = stand_in().await;
    // Tokens living 60 s are already due when they arrive.
    pp.set_token_ttl(Duration::from_secs(60));
    let c = client(&pp);
    let id = c
        .create_order(&order_req("purchase-7", "1.00"))
        .await
        .unwrap()
        .id;
    c.get_order(&id).await.unwrap();
    assert_eq!(pp.token_request_count(), 2);
    pp.set_token_ttl(Duration::from_secs(3600));
    c.get_order(&id).await.unwrap();
    c.get_order(&id).await.unwrap();
    assert_eq!(pp.token_request_count(), 3);
}

#[tokio::test]
async fn wrong_credentials_are_auth_errors() {
    let pp = stand_in().await;
    let c = client_with(&pp.base_url(), "wrong-secret", 300);
    let err = c.get_order("ANYORDER").await.unwrap_err();
    assert_eq!(err, PayPalError::Auth);
    assert!(!err.is_transient());
    assert!(pp.orders().is_empty());
}

#[tokio::test]
async fn token_endpoint_failures_mean_not_sent_or_upstream() {
    let pp = stand_in().await;
    let c = client(&pp);
    pp.set_failure(Operation::Token, Failure::Status(503), Some(1));
    assert_eq!(
        c.create_order(&order_req("purchase-8", "1.00")).await,
        Err(PayPalError::Upstream { status: 503 })
    );
    pp.set_failure(Operation::Token, Failure::Hang, Some(1));
    assert_eq!(
        c.create_order(&order_req("purchase-8", "1.00")).await,
        Err(PayPalError::NotSent)
    );
    assert!(pp.orders().is_empty());
    c.create_order(&order_req("purchase-8", "1.00"))
        .await
        .unwrap();
}

#[tokio::test]
async fn server_errors_are_upstream_and_times_count_down() {
    let pp = stand_in().await;
    let c = client(&pp);
    let id = approved_order(&pp, &c, "purchase-9", "3.00").await;
    pp.set_failure(Operation::CaptureOrder, Failure::Status(500), Some(2));
    for _ in 0..2 {
        let err = c.capture_order(&id, "capture-9").await.unwrap_err();
        assert_eq!(err, PayPalError::Upstream { status: 500 });
        assert!(err.is_transient());
    }
    assert!(pp.captures().is_empty());
    c.capture_order(&id, "capture-9").await.unwrap();
    assert_eq!(pp.captures().len(), 1);
}

#[tokio::test]
async fn other_client_errors_are_rejected_with_their_issue() {
    let pp = stand_in().await;
    let c = client(&pp);
    pp.set_failure(Operation::CreateOrder, Failure::Status(429), Some(1));
    let err = c.create_order(&order_req("p", "1.00")).await.unwrap_err();
    assert_eq!(
        err,
        PayPalError::Rejected {
            status: 429,
            issue: Some("INJECTED_FAILURE".into())
        }
    );
    assert!(err.is_transient());
    assert_eq!(c.get_order("NOSUCHORDER").await, Err(PayPalError::NotFound));
    assert_eq!(
        c.refund_capture("NOSUCHCAPTURE", None, "r", None).await,
        Err(PayPalError::NotFound)
    );
}

#[tokio::test]
async fn hang_is_a_timeout_and_applies_nothing() {
    let pp = stand_in().await;
    let c = client(&pp);
    let id = approved_order(&pp, &c, "purchase-10", "4.00").await;
    pp.set_failure(Operation::CaptureOrder, Failure::Hang, None);
    let started = Instant::now();
    assert_eq!(
        c.capture_order(&id, "capture-10").await,
        Err(PayPalError::Timeout)
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(pp.captures().is_empty());
    pp.clear_failures();
    c.capture_order(&id, "capture-10").await.unwrap();
}

#[tokio::test]
async fn short_delay_is_fine() {
    let pp = stand_in().await;
    pp.set_failure(
        Operation::CreateOrder,
        Failure::Delay(Duration::from_millis(50)),
        None,
    );
    client(&pp)
        .create_order(&order_req("purchase-11", "1.00"))
        .await
        .unwrap();
}

#[tokio::test]
async fn connection_refused_is_not_sent() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let c = client_with(&format!("http://127.0.0.1:{port}"), CLIENT_SECRET, 300);
    let err = c.get_order("ORDER").await.unwrap_err();
    assert_eq!(err, PayPalError::NotSent);
    assert!(err.is_transient());
    assert!(err.is_definitely_not_applied());
}

#[tokio::test]
async fn stand_in_refusing_is_not_sent_then_recovers() {
    let pp = stand_in().await;
    let c = client(&pp);
    let id = approved_order(&pp, &c, "purchase-12", "2.00").await;
    pp.refuse_connections(None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        c.capture_order(&id, "capture-12").await,
        Err(PayPalError::NotSent)
    );
    assert!(pp.captures().is_empty());
    pp.accept_connections();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match c.capture_order(&id, "capture-12").await {
            Ok(order) => break assert_eq!(order.status, OrderStatus::Completed),
            Err(PayPalError::NotSent) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("stand-in did not come back: {e}"),
        }
    }
}

#[tokio::test]
async fn pending_and_declined_captures() {
    let pp = stand_in().await;
    let c = client(&pp);
    pp.set_capture_outcome(CaptureOutcome::Pending, Some(1));
    let id = approved_order(&pp, &c, "purchase-13", "6.00").await;
    let order = c.capture_order(&id, "capture-13").await.unwrap();
    let capture = &order.captures[0];
    assert_eq!(capture.status, CaptureStatus::Pending);
    assert_eq!(capture.status_reason.as_deref(), Some("PENDING_REVIEW"));
    assert!(!capture.status.is_paid());
    assert_eq!(capture.amount, usd("6.00"));
    // A pending capture cannot be refunded yet.
    assert_eq!(
        c.refund_capture(&capture.id, None, "refund-13", None)
            .await
            .unwrap_err(),
        PayPalError::Rejected {
            status: 422,
            issue: Some("REFUND_NOT_ALLOWED".into())
        }
    );
    assert!(pp.settle_capture(&capture.id, CaptureOutcome::Completed));
    let settled = c.get_order(&id).await.unwrap();
    assert_eq!(settled.captures[0].status, CaptureStatus::Completed);
    assert_eq!(settled.captures[0].status_reason, None);

    pp.set_capture_outcome(CaptureOutcome::Declined, None);
    let id = approved_order(&pp, &c, "purchase-14", "7.00").await;
    let order = c.capture_order(&id, "capture-14").await.unwrap();
    assert_eq!(order.captures[0].status, CaptureStatus::Declined);
    assert!(!order.captures[0].status.is_paid());
}

#[tokio::test]
async fn payer_action_link_when_return_urls_are_given() {
    let pp = stand_in().await;
    let c = client(&pp);
    let mut req = order_req("purchase-15", "9.99");
    req.return_url = Some("https://billing.example.com/paypal/return".into());
    req.cancel_url = Some("https://billing.example.com/paypal/cancel".into());
    let order = c.create_order(&req).await.unwrap();
    assert_eq!(order.status, OrderStatus::PayerActionRequired);
    let url = order.approve_url.unwrap();
    assert!(
        url.ends_with(&format!("/checkoutnow?token={}", order.id)),
        "{url}"
    );
    reqwest::get(&url)
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    assert_eq!(
        c.get_order(&order.id).await.unwrap().status,
        OrderStatus::Approved
    );
}

#[tokio::test]
async fn a_reused_invoice_id_cannot_be_captured_twice() {
    let pp = stand_in().await;
    let c = client(&pp);
    let first = approved_order(&pp, &c, "purchase-16", "1.00").await;
    c.capture_order(&first, "capture-16a").await.unwrap();
    let mut req = order_req("purchase-16", "1.00");
    req.request_id = "create-purchase-16-again".into();
    let second = c.create_order(&req).await.unwrap();
    assert!(pp.approve(&second.id));
    assert_eq!(
        c.capture_order(&second.id, "capture-16b").await,
        Err(PayPalError::Rejected {
            status: 422,
            issue: Some("DUPLICATE_INVOICE_ID".into())
        })
    );
}

#[tokio::test]
async fn invalid_inputs_are_not_sent() {
    let pp = stand_in().await;
    let c = client(&pp);
    let mut zero = order_req("p", "1.00");
    zero.amount = Usd::ZERO;
    let mut no_user = order_req("p", "1.00");
    no_user.custom_id.clear();
    let mut long = order_req("p", "1.00");
    long.description = "d".repeat(128);
    let mut no_request_id = order_req("p", "1.00");
    no_request_id.request_id.clear();
    for req in [zero, no_user, long, no_request_id] {
        assert!(
            matches!(c.create_order(&req).await, Err(PayPalError::Invalid(_))),
            "{req:?}"
        );
    }
    assert!(matches!(
        c.get_order("../admin").await,
        Err(PayPalError::Invalid(_))
    ));
    assert!(matches!(
        c.capture_order("ORDER", "with space").await,
        Err(PayPalError::Invalid(_))
    ));
    assert!(matches!(
        c.refund_capture("CAP", Some(usd("-1.00")), "r", None).await,
        Err(PayPalError::Invalid(_))
    ));
    assert!(matches!(
        c.verify_webhook_signature(
            &WebhookHeaders {
                auth_algo: "a".into(),
                cert_url: "c".into(),
                transmission_id: "t".into(),
                transmission_sig: "s".into(),
                transmission_time: "x".into(),
            },
            WEBHOOK_ID,
            b"not json"
        )
        .await,
        Err(PayPalError::Invalid(_))
    ));
    assert_eq!(pp.request_count(), 0);
}

#[tokio::test]
async fn webhook_signatures_verify_only_when_intact() {
    let pp = stand_in().await;
    let c = client(&pp);
    let id = approved_order(&pp, &c, "purchase-17", "15.00").await;
    let order = c.capture_order(&id, "capture-17").await.unwrap();
    let capture_id = &order.captures[0].id;
    let event = pp
        .signed_event(EventType::CaptureCompleted, capture_id)
        .unwrap();
    let headers = webhook_headers(&event);
    assert_eq!(headers.auth_algo, "SHA256withRSA");
    assert!(
        c.verify_webhook_signature(&headers, WEBHOOK_ID, &event.body)
            .await
            .unwrap()
    );
    assert_eq!(c.webhook_id(), Some(WEBHOOK_ID));

    // What the handler reads once verified.
    let parsed = parse_webhook_event(&event.body).unwrap();
    assert!(parsed.id.starts_with("WH-"));
    assert_eq!(parsed.event_type, "PAYMENT.CAPTURE.COMPLETED");
    let WebhookResource::Capture(capture) = parsed.resource else {
        panic!("capture expected")
    };
    assert_eq!(&capture.id, capture_id);
    assert_eq!(capture.order_id.as_deref(), Some(id.as_str()));
    assert_eq!(capture.custom_id.as_deref(), Some(USER));
    assert_eq!(capture.amount, usd("15.00"));

    // One changed byte in the body.
    let tampered = String::from_utf8(event.body.clone())
        .unwrap()
        .replace("\"15.00\"", "\"99.00\"");
    assert_ne!(tampered.as_bytes(), event.body.as_slice());
    assert!(
        !c.verify_webhook_signature(&headers, WEBHOOK_ID, tampered.as_bytes())
            .await
            .unwrap()
    );
    // Another webhook's id.
    assert!(
        !c.verify_webhook_signature(&headers, "WH-OTHER", &event.body)
            .await
            .unwrap()
    );
    // A forged signature.
    let mut forged = headers.clone();
    forged.transmission_sig = "AAAA".into();
    assert!(
        !c.verify_webhook_signature(&forged, WEBHOOK_ID, &event.body)
            .await
            .unwrap()
    );
    // Signed ten minutes ago.
    let stale_headers = pp.sign_at(&event.body, SystemTime::now() - Duration::from_secs(600));
    let stale = WebhookHeaders::from_lookup(|name| {
        stale_headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    })
    .unwrap();
    assert!(
        !c.verify_webhook_signature(&stale, WEBHOOK_ID, &event.body)
            .await
            .unwrap()
    );
    // A minute ago is fine.
    let recent_headers = pp.sign_at(&event.body, SystemTime::now() - Duration::from_secs(60));
    let recent = WebhookHeaders::from_lookup(|name| {
        recent_headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    })
    .unwrap();
    assert!(
        c.verify_webhook_signature(&recent, WEBHOOK_ID, &event.body)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn refund_and_reversal_events_name_their_capture() {
    let pp = stand_in().await;
    let c = client(&pp);
    let id = approved_order(&pp, &c, "purchase-18", "20.00").await;
    let capture_id = c.capture_order(&id, "capture-18").await.unwrap().captures[0]
        .id
        .clone();
    let refund = c
        .refund_capture(&capture_id, Some(usd("5.00")), "refund-18", None)
        .await
        .unwrap();
    let event = pp
        .signed_event(EventType::CaptureRefunded, &refund.id)
        .unwrap();
    assert!(
        c.verify_webhook_signature(&webhook_headers(&event), WEBHOOK_ID, &event.body)
            .await
            .unwrap()
    );
    let WebhookResource::Refund(parsed) = parse_webhook_event(&event.body).unwrap().resource else {
        panic!("refund expected")
    };
    assert_eq!(parsed.id, refund.id);
    assert_eq!(parsed.amount, usd("5.00"));
    assert_eq!(parsed.capture_id.as_deref(), Some(capture_id.as_str()));
    assert_eq!(parsed.invoice_id.as_deref(), Some("purchase-18"));

    let reversal_id = pp.reverse_capture(&capture_id).unwrap();
    let event = pp
        .signed_event(EventType::CaptureReversed, &reversal_id)
        .unwrap();
    let parsed = parse_webhook_event(&event.body).unwrap();
    assert_eq!(parsed.event_type, "PAYMENT.CAPTURE.REVERSED");
    let WebhookResource::Refund(reversal) = parsed.resource else {
        panic!("refund-shaped reversal expected")
    };
    assert_eq!(reversal.amount, usd("15.00"));
    assert_eq!(reversal.capture_id.as_deref(), Some(capture_id.as_str()));
    assert_eq!(pp.capture(&capture_id).unwrap().status, "REFUNDED");

    let approved = pp.signed_event(EventType::OrderApproved, &id).unwrap();
    let WebhookResource::Order(order) = parse_webhook_event(&approved.body).unwrap().resource
    else {
        panic!("order expected")
    };
    assert_eq!(order.id, id);
    assert!(
        pp.signed_event(EventType::CaptureCompleted, "NOPE")
            .is_none()
    );
}

/// One request a receiver got: (lowercase headers, body).
type Received = (Vec<(String, String)>, Vec<u8>);

/// A webhook receiver: answers 200 to every POST and forwards (headers, body).
async fn receiver() -> (String, mpsc::UnboundedReceiver<Received>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/paypal", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                    let headers: Vec<(String, String)> = head
                        .lines()
                        .skip(1)
                        .filter_map(|line| line.split_once(':'))
                        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .collect();
                    let length = headers
                        .iter()
                        .find(|(n, _)| n == "content-length")
                        .and_then(|(_, v)| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if buffer.len() < end + 4 + length {
                        continue;
                    }
                    let body = buffer[end + 4..end + 4 + length].to_vec();
                    buffer.drain(..end + 4 + length);
                    let _ = tx.send((headers, body));
                    if socket
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (url, rx)
}

async fn next_delivery(rx: &mut mpsc::UnboundedReceiver<Received>) -> (WebhookHeaders, Vec<u8>) {
    let (headers, body) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a webhook delivery")
        .unwrap();
    let headers = WebhookHeaders::from_lookup(|name| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    })
    .unwrap();
    (headers, body)
}

#[tokio::test]
async fn automatic_webhooks_are_delivered_signed() {
    let pp = stand_in().await;
    let (url, mut rx) = receiver().await;
    pp.set_webhook_target(Some(&url));
    pp.set_auto_webhooks(true);
    let c = client(&pp);
    let id = approved_order(&pp, &c, "purchase-19", "11.00").await;
    let (headers, body) = next_delivery(&mut rx).await;
    assert!(
        c.verify_webhook_signature(&headers, WEBHOOK_ID, &body)
            .await
            .unwrap()
    );
    assert_eq!(
        parse_webhook_event(&body).unwrap().event_type,
        "CHECKOUT.ORDER.APPROVED"
    );

    let order = c.capture_order(&id, "capture-19").await.unwrap();
    let (headers, body) = next_delivery(&mut rx).await;
    assert!(
        c.verify_webhook_signature(&headers, WEBHOOK_ID, &body)
            .await
            .unwrap()
    );
    let event = parse_webhook_event(&body).unwrap();
    assert_eq!(event.event_type, "PAYMENT.CAPTURE.COMPLETED");
    let WebhookResource::Capture(capture) = event.resource else {
        panic!("capture expected")
    };
    assert_eq!(capture.id, order.captures[0].id);

    c.refund_capture(&capture.id, None, "refund-19", None)
        .await
        .unwrap();
    let (_, body) = next_delivery(&mut rx).await;
    assert_eq!(
        parse_webhook_event(&body).unwrap().event_type,
        "PAYMENT.CAPTURE.REFUNDED"
    );
    assert!(pp.deliveries().iter().all(|d| d.status == Some(200)));
}

#[tokio::test]
async fn duplicate_and_out_of_order_deliveries() {
    let pp = stand_in().await;
    let (url, mut rx) = receiver().await;
    pp.set_webhook_target(Some(&url));
    pp.set_auto_webhooks(true);
    pp.set_webhook_mode(WebhookMode::Duplicate);
    pp.set_capture_outcome(CaptureOutcome::Pending, Some(1));
    let c = client(&pp);
    let order = c
        .create_order(&order_req("purchase-20", "30.00"))
        .await
        .unwrap();
    assert!(pp.approve(&order.id));
    let (_, first) = next_delivery(&mut rx).await;
    let (_, second) = next_delivery(&mut rx).await;
    // The same event twice (same id), each a valid transmission.
    assert_eq!(first, second);

    pp.set_webhook_mode(WebhookMode::Hold);
    let captured = c.capture_order(&order.id, "capture-20").await.unwrap();
    let capture_id = captured.captures[0].id.clone();
    assert!(pp.settle_capture(&capture_id, CaptureOutcome::Completed));
    c.refund_capture(&capture_id, Some(usd("10.00")), "refund-20", None)
        .await
        .unwrap();
    assert_eq!(pp.held_count(), 3);
    let flushed = pp.flush_held(true).await;
    assert_eq!(
        flushed
            .iter()
            .map(|d| d.event_type.as_str())
            .collect::<Vec<_>>(),
        [
            "PAYMENT.CAPTURE.REFUNDED",
            "PAYMENT.CAPTURE.COMPLETED",
            "PAYMENT.CAPTURE.PENDING"
        ]
    );
    for expected in [
        "PAYMENT.CAPTURE.REFUNDED",
        "PAYMENT.CAPTURE.COMPLETED",
        "PAYMENT.CAPTURE.PENDING",
    ] {
        let (headers, body) = next_delivery(&mut rx).await;
        assert_eq!(parse_webhook_event(&body).unwrap().event_type, expected);
        assert!(
            c.verify_webhook_signature(&headers, WEBHOOK_ID, &body)
                .await
                .unwrap()
        );
    }
    assert_eq!(pp.held_count(), 0);
}

#[tokio::test]
async fn control_api_over_http() {
    let pp = stand_in().await;
    let (url, mut rx) = receiver().await;
    let http = reqwest::Client::new();
    let control = |path: &str| format!("{}/_control/{path}", pp.base_url());
    let c = client(&pp);

    let set = http
        .post(control("fail"))
        .body(r#"{"operation": "get", "mode": "status", "status": 502, "times": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(
        c.get_order("X").await,
        Err(PayPalError::Upstream { status: 502 })
    );
    assert_eq!(c.get_order("X").await, Err(PayPalError::NotFound));

    let bad = http
        .post(control("fail"))
        .body(r#"{"mode": "explode"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let outcome = http
        .post(control("capture-outcome"))
        .body(r#"{"outcome": "declined", "times": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(outcome.status(), 200);
    let order = c
        .create_order(&order_req("purchase-21", "2.00"))
        .await
        .unwrap();
    let approve = http
        .post(control(&format!("orders/{}/approve", order.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(approve.status(), 200);
    let captured = c.capture_order(&order.id, "capture-21").await.unwrap();
    assert_eq!(captured.captures[0].status, CaptureStatus::Declined);

    let hooks = http
        .post(control("webhooks"))
        .body(format!(r#"{{"target": "{url}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(hooks.status(), 200);
    let send = http
        .post(control("webhooks/send"))
        .body(format!(
            r#"{{"eventType": "PAYMENT.CAPTURE.DENIED", "resourceId": "{}", "times": 2}}"#,
            captured.captures[0].id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(send.status(), 200);
    for _ in 0..2 {
        let (headers, body) = next_delivery(&mut rx).await;
        assert!(
            c.verify_webhook_signature(&headers, WEBHOOK_ID, &body)
                .await
                .unwrap()
        );
        let WebhookResource::Capture(capture) = parse_webhook_event(&body).unwrap().resource else {
            panic!("capture expected")
        };
        assert_eq!(capture.status, CaptureStatus::Declined);
    }

    let expire = http.post(control("tokens/expire")).send().await.unwrap();
    assert_eq!(expire.status(), 200);
    c.get_order(&order.id).await.unwrap();
    assert_eq!(pp.token_request_count(), 2);

    let state = http.get(control("state")).send().await.unwrap();
    assert_eq!(state.status(), 200);
    let state: serde_json::Value = serde_json::from_slice(&state.bytes().await.unwrap()).unwrap();
    assert_eq!(state["orders"][0]["id"], order.id.as_str());
    assert_eq!(state["captures"][0]["status"], "DECLINED");
    assert_eq!(state["tokenRequests"], 2);
    assert_eq!(state["webhooks"]["deliveries"].as_array().unwrap().len(), 2);

    let reset = http.post(control("reset")).send().await.unwrap();
    assert_eq!(reset.status(), 200);
    assert!(pp.orders().is_empty());
}

#[tokio::test]
async fn state_file_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("paypal-standin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.json");
    let _ = std::fs::remove_file(&path);
    let mut config = StandInConfig::new(CLIENT_ID, CLIENT_SECRET, WEBHOOK_ID);
    config.state_file = Some(path.clone());

    let pp = PayPalStandIn::spawn_with("127.0.0.1:0".parse().unwrap(), config.clone())
        .await
        .unwrap();
    let c = client(&pp);
    let id = approved_order(&pp, &c, "purchase-22", "3.00").await;
    let captured = c.capture_order(&id, "capture-22").await.unwrap();
    drop(pp);

    let pp = PayPalStandIn::spawn_with("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let c = client(&pp);
    assert_eq!(c.get_order(&id).await.unwrap(), captured);
    // Request ids are remembered too.
    assert_eq!(
        c.capture_order(&id, "capture-22").await.unwrap().captures,
        captured.captures
    );
    assert_eq!(pp.captures().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
