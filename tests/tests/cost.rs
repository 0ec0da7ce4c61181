#![recursion_limit = "256"]
//! What each operation costs in DynamoDB capacity, measured on the wire: the
//! functions' client carries `ledger::CapacityMeter`, which asks every call
//! for `ReturnConsumedCapacity = TOTAL` and adds up the answers. Each test
//! bounds one operation, so a change that makes it read or write more fails
//! here. `-- --nocapture` prints the table behind docs/benchmarks.md
//! ("Cost per operation").

use devstack::paypal::{EventType, SignedEvent};
use integration_tests::api::{TestApi, TestResponse};
use integration_tests::{assert_audit, new_user, usd};
use ledger::{CapacityMeter, Change, Consumed, EntryDetails, EntryKind, UserId};
use serde_json::json;
use std::time::{Duration, Instant};

const CREDITS: &str = "/api/billing/custom-credits";

struct Metered {
    api: TestApi,
    meter: CapacityMeter,
}

impl Metered {
    async fn new() -> Metered {
        let meter = CapacityMeter::default();
        let sdk = billing_config::load_aws_config().await;
        let m = meter.clone();
        let client = billing_config::dynamo_client_with(&sdk, move |b| b.interceptor(m));
        let api = TestApi::with_client(client, ledger::RetryPolicy::default()).await;
        billing::dns::seed_default_plans(&api.ledger())
            .await
            .expect("seed plans");
        Metered { api, meter }
    }

    /// Runs `op`, returning what it consumed and how long it took.
    async fn measure<T>(
        &self,
        op: impl std::future::Future<Output = T>,
    ) -> (T, Consumed, Duration) {
        self.meter.reset();
        let started = Instant::now();
        let out = op.await;
        let took = started.elapsed();
        let by_operation: Vec<String> = self
            .meter
            .snapshot()
            .iter()
            .map(|(op, c)| {
                format!(
                    "{op} {:.1}R/{:.1}W/{:.1}W by rule",
                    c.read_units, c.write_units, c.rule_write_units
                )
            })
            .collect();
        println!("  by operation: {}", by_operation.join(", "));
        (out, self.meter.total(), took)
    }

    async fn fund(&self, user: &UserId, amount: &str) {
        let details = EntryDetails::new(EntryKind::AdminCredit, "funds").admin("9000", "funds");
        self.api
            .ledger()
            .apply(Change::new(user.clone(), usd(amount), details))
            .await
            .expect("credit");
    }
}

fn report(operation: &str, consumed: Consumed, took: Duration) {
    println!(
        "| {operation} | {:.1} | {:.1} | {:.1} | {} | {:.0} |",
        consumed.read_units,
        consumed.write_units,
        consumed.rule_write_units,
        consumed.unreported_calls,
        took.as_secs_f64() * 1000.0
    );
}

fn ok(response: &TestResponse) {
    assert_eq!(response.status, 200, "{:?}", response.body);
}

#[tokio::test]
async fn a_balance_read_is_one_strongly_consistent_item_read() {
    let m = Metered::new().await;
    let user = new_user();
    m.fund(&user, "10.00").await;
    let token = m.api.token(user.as_str(), false);
    // Warm: the first call also connects to VirtFusion.
    ok(&m.api.get("/api/billing/balance", &token).await);
    let (response, consumed, took) = m.measure(m.api.get("/api/billing/balance", &token)).await;
    ok(&response);
    report("balance read", consumed, took);
    // One account item under 4 KB, read strongly consistent: 1 RCU, no writes.
    assert_eq!((consumed.read_units, consumed.write_units), (1.0, 0.0));
}

#[tokio::test]
async fn a_credits_purchase_costs_a_bounded_number_of_units() {
    let m = Metered::new().await;
    let user = new_user();
    let token = m.api.token(user.as_str(), false);
    let (response, order_cost, order_took) = m
        .measure(m.api.send(
            "POST",
            &format!("{CREDITS}/add"),
            &token,
            r#"{"amount": 10}"#,
        ))
        .await;
    ok(&response);
    report("credits order (`/add`)", order_cost, order_took);
    let order_id = response.body["orderId"]
        .as_str()
        .expect("orderId")
        .to_owned();
    assert!(m.api.paypal.approve(&order_id));
    let body = json!({ "orderId": order_id }).to_string();
    let (response, capture_cost, capture_took) = m
        .measure(
            m.api
                .send("POST", &format!("{CREDITS}/capture"), &token, &body),
        )
        .await;
    ok(&response);
    report("credits capture (`/capture`)", capture_cost, capture_took);
    assert_eq!(assert_audit(&m.api.ledger(), &user).await, usd("10.00"));
    // The order is one transaction (order, purchase pointer, open-order
    // place: 6 units), the user's rate bucket (one UpdateItem) and the
    // place's reservation (one PutItem); the capture one ledger transaction
    // (account, entry, once-marker, order state, outbox event) and the
    // place's delete.
    assert!(order_cost.rule_write_units <= 8.0, "{order_cost:?}");
    assert!(capture_cost.rule_write_units <= 14.0, "{capture_cost:?}");
    // (+1: the query of the user's open-order places.)
    assert!(capture_cost.read_units <= 3.0, "{capture_cost:?}");
}

#[tokio::test]
async fn a_dns_purchase_is_one_transaction() {
    let m = Metered::new().await;
    let user = new_user();
    m.fund(&user, "20.00").await;
    let token = m.api.token(user.as_str(), false);
    let (response, consumed, took) = m
        .measure(m.api.call(
            "POST",
            "/api/dns/plans/basic/purchase",
            Some(&token),
            None,
            &[],
        ))
        .await;
    ok(&response);
    report("DNS plan purchase", consumed, took);
    assert!(consumed.rule_write_units <= 12.0, "{consumed:?}");
    assert!(consumed.read_units <= 3.0, "{consumed:?}");
}

#[tokio::test]
async fn a_service_charge_is_one_transaction() {
    let m = Metered::new().await;
    let user = new_user();
    m.fund(&user, "50.00").await;
    let token = m.api.service_token("panel");
    let body = json!({
        "userId": user.as_str(),
        "amount": "12.50",
        "serviceType": "dedicated_server",
        "serviceId": "ds-1",
        "description": "DS-1, December",
    })
    .to_string();
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", "cost-charge-1"),
    ];
    let (response, consumed, took) = m
        .measure(m.api.call(
            "POST",
            "/api/services/charges",
            Some(&token),
            Some(&body),
            &headers,
        ))
        .await;
    ok(&response);
    report("service charge", consumed, took);
    assert!(consumed.rule_write_units <= 11.0, "{consumed:?}");
    assert!(consumed.read_units <= 1.0, "{consumed:?}");
}

#[tokio::test]
async fn a_renewal_reads_only_what_is_due() {
    let m = Metered::new().await;
    let user = new_user();
    m.fund(&user, "20.00").await;
    let token = m.api.token(user.as_str(), false);
    ok(&m
        .api
        .call(
            "POST",
            "/api/dns/plans/basic/purchase",
            Some(&token),
            None,
            &[],
        )
        .await);
    // The job's own client is metered too: it reads through the functions' ledger.
    let mut deps = renewal_cron_fn::Deps::new(
        m.api
            .function_ledger(integration_tests::IN_PROCESS_RENEWALS),
    );
    deps.max_clock_skew = Some(time::Duration::days(40));
    let at = time::OffsetDateTime::now_utc() + time::Duration::days(32);
    let event = json!({
        "version": "0",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "time": billing::dns::dates::format_time(at),
        "detail": {},
    });
    let (summary, consumed, took) = m
        .measure(renewal_cron_fn::handle(
            &deps,
            lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default()),
        ))
        .await;
    let summary = summary.expect("job runs");
    assert_eq!(summary["renewed"], 1, "{summary}");
    report("renewal run (one due subscription)", consumed, took);
    assert!(consumed.rule_write_units <= 11.0, "{consumed:?}");
    assert!(consumed.read_units <= 4.0, "{consumed:?}");
}

#[tokio::test]
async fn a_completed_capture_webhook_credits_within_bounds() {
    let m = Metered::new().await;
    let user = new_user();
    let token = m.api.token(user.as_str(), false);
    let response = m
        .api
        .send(
            "POST",
            &format!("{CREDITS}/add"),
            &token,
            r#"{"amount": 7.25}"#,
        )
        .await;
    let order_id = response.body["orderId"]
        .as_str()
        .expect("orderId")
        .to_owned();
    assert!(m.api.paypal.approve(&order_id));
    let paypal = m.api.payments.paypal().await.expect("paypal");
    let order = paypal
        .capture_order(&order_id, &format!("elsewhere-{order_id}"))
        .await
        .expect("captured at PayPal");
    let event = m
        .api
        .paypal
        .signed_event(EventType::CaptureCompleted, &order.captures[0].id)
        .expect("event");
    let (response, consumed, took) = m.measure(deliver(&m.api, &event)).await;
    ok(&response);
    report(
        "webhook PAYMENT.CAPTURE.COMPLETED (credits)",
        consumed,
        took,
    );
    assert_eq!(assert_audit(&m.api.ledger(), &user).await, usd("7.25"));
    assert!(consumed.rule_write_units <= 14.0, "{consumed:?}");
    assert!(consumed.read_units <= 3.0, "{consumed:?}");
}

async fn deliver(api: &TestApi, event: &SignedEvent) -> TestResponse {
    let headers: Vec<(&str, &str)> = event
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = String::from_utf8(event.body.clone()).expect("utf-8 body");
    api.call("POST", "/webhooks/paypal", None, Some(&body), &headers)
        .await
}
