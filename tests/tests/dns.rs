//! DNS plans through the real handlers and DynamoDB Local: listing, the
//! atomic purchase (and its refusals, which change nothing), the
//! subscription view, cancellation, the sample events and the deploy-time seed.

use billing::dns::{Plan, PlanId, seed_default_plans};
use devstack::faultproxy::{Fault, FaultConfig, FaultProxy, FaultRule};
use integration_tests::api::TestApi;
use integration_tests::{assert_audit, dynamo_endpoint, new_user, usd};
use ledger::{Change, EntryDetails, EntryKind, Ledger, UserId};
use serde_json::{Value, json};
use std::sync::Arc;
use time::OffsetDateTime;
use time::macros::datetime;
use tokio::task::JoinSet;

const PLANS: &str = "/api/dns/plans";
const SUBSCRIPTION: &str = "/api/dns/subscription";
const CANCEL: &str = "/api/dns/subscription/cancel";

fn purchase_path(plan: &str) -> String {
    format!("/api/dns/plans/{plan}/purchase")
}

async fn seeded_api() -> TestApi {
    let api = TestApi::new().await;
    seed_default_plans(&api.ledger()).await.expect("seed plans");
    api
}

async fn credit(ledger: &Ledger, user: &UserId, amount: &str) {
    let details =
        EntryDetails::new(EntryKind::AdminCredit, "test funds").admin("9000", "test funds");
    ledger
        .apply(Change::new(user.clone(), usd(amount), details))
        .await
        .expect("credit");
}

/// Kinds of the user's entries, oldest first.
async fn entry_kinds(ledger: &Ledger, user: &UserId) -> Vec<EntryKind> {
    let page = ledger.entries(user, 1000, None).await.expect("entries");
    page.entries.iter().rev().map(|e| e.kind).collect()
}

async fn buy(api: &TestApi, user: &UserId, plan: &str) -> integration_tests::api::TestResponse {
    api.call(
        "POST",
        &purchase_path(plan),
        Some(&api.token(user.as_str(), false)),
        None,
        &[],
    )
    .await
}

#[tokio::test]
async fn plans_are_listed_cheapest_first_and_only_when_active() {
    let api = seeded_api().await;
    let token = api.token(new_user().as_str(), false);
    let response = api.get(PLANS, &token).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let plans = response.body["plans"]
        .as_array()
        .expect("plans array")
        .clone();
    let summary: Vec<(Value, Value, Value)> = plans
        .iter()
        .map(|p| (p["id"].clone(), p["name"].clone(), p["price"].clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (json!("basic"), json!("Basic"), json!("5.00")),
            (json!("pro"), json!("Pro"), json!("15.00")),
            (json!("enterprise"), json!("Enterprise"), json!("50.00")),
        ]
    );
    for plan in &plans {
        let keys: Vec<&str> = plan
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 6, "{plan}");
        assert!(plan["description"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(plan["domainLimit"].is_u64() && plan["recordLimit"].is_u64());
    }
    assert_eq!(plans[0]["domainLimit"], json!(5));
    assert_eq!(plans[0]["recordLimit"], json!(100));

    // Seeding again creates nothing and changes nothing; a deactivated plan disappears.
    assert_eq!(seed_default_plans(&api.ledger()).await.unwrap(), 0);
    deactivate(&api.ledger(), "pro").await;
    let response = api.get(PLANS, &token).await;
    let ids: Vec<&str> = response.body["plans"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(ids, ["basic", "enterprise"]);
    assert_eq!(
        seed_default_plans(&api.ledger()).await.unwrap(),
        0,
        "never overwrites an admin's change"
    );
}

async fn deactivate(ledger: &Ledger, id: &str) {
    let mut plan: Plan = billing::dns::get_plan(ledger, &PlanId::parse(id).unwrap())
        .await
        .unwrap()
        .expect("plan exists");
    plan.active = false;
    ledger
        .client()
        .put_item()
        .table_name(ledger.table())
        .set_item(Some(plan.to_item()))
        .send()
        .await
        .expect("write plan");
}

#[tokio::test]
async fn purchase_debits_and_creates_the_subscription_at_once() {
    let api = seeded_api().await;
    let user = new_user();
    credit(&api.ledger(), &user, "12.50").await;

    let response = buy(&api, &user, "basic").await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.body["success"], json!(true));
    assert_eq!(response.body["balance"], json!("7.50"));
    let sub = &response.body["subscription"];
    assert!(sub["id"].as_str().is_some_and(|id| id.starts_with("sub_")));
    assert_eq!(sub["planId"], json!("basic"));
    assert_eq!(sub["planName"], json!("Basic"));
    assert_eq!(sub["price"], json!("5.00"));
    assert_eq!(sub["status"], json!("active"));
    assert_eq!(sub["autoRenew"], json!(true));
    assert_eq!(sub["domainLimit"], json!(5));
    let start = billing::dns::dates::parse_time(sub["startDate"].as_str().unwrap()).unwrap();
    let next = billing::dns::dates::parse_time(sub["nextRenewalDate"].as_str().unwrap()).unwrap();
    let anchor = billing::dns::dates::AnchorDay::of(start);
    assert_eq!(Some(next), billing::dns::dates::next_renewal(start, anchor));
    assert_eq!(sub["lastRenewalDate"], sub["startDate"]);

    let read = api
        .get(SUBSCRIPTION, &api.token(user.as_str(), false))
        .await;
    assert_eq!(read.status, 200);
    assert_eq!(&read.body["subscription"], sub);

    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("7.50"));
    let page = api.ledger().entries(&user, 10, None).await.unwrap();
    let debit = &page.entries[0];
    assert_eq!(debit.kind, EntryKind::ServicePurchase);
    assert_eq!(debit.amount, usd("-5.00"));
    assert_eq!(debit.reference.as_deref(), sub["id"].as_str());

    // It shows in the history the user sees.
    let history = api
        .get(
            "/api/billing/transactions",
            &api.token(user.as_str(), false),
        )
        .await;
    assert_eq!(
        history.body["items"][0]["type"],
        json!("service_purchase_dns_plan")
    );
    assert_eq!(history.body["items"][0]["amount"], json!("-5.00"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_purchases_make_one_subscription_and_one_charge() {
    let api = Arc::new(seeded_api().await);
    let user = new_user();
    credit(&api.ledger(), &user, "100.00").await;
    let mut tasks = JoinSet::new();
    for i in 0..10 {
        let (api, user) = (api.clone(), user.clone());
        let plan = ["basic", "pro"][i % 2];
        tasks.spawn(async move { (plan, buy(&api, &user, plan).await) });
    }
    let mut wins = Vec::new();
    let mut statuses = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (plan, response) = joined.unwrap();
        statuses.push(response.status);
        if response.status == 200 {
            wins.push((plan, response.body));
        } else {
            assert_eq!(
                response.body["code"],
                json!("already_subscribed"),
                "{:?}",
                response.body
            );
        }
    }
    assert_eq!(wins.len(), 1, "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        9,
        "{statuses:?}"
    );
    let (plan, body) = &wins[0];
    let price = if *plan == "basic" {
        usd("5.00")
    } else {
        usd("15.00")
    };
    let expected = usd("100.00").checked_sub(price).unwrap();
    assert_eq!(assert_audit(&api.ledger(), &user).await, expected);
    let kinds = entry_kinds(&api.ledger(), &user).await;
    assert_eq!(kinds, [EntryKind::AdminCredit, EntryKind::ServicePurchase]);
    let stored = billing::dns::get_subscription(&api.ledger(), &user)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        body["subscription"]["id"].as_str(),
        Some(stored.id.as_str())
    );
}

#[tokio::test]
async fn short_balance_is_402_and_changes_nothing() {
    let api = seeded_api().await;
    let user = new_user();
    credit(&api.ledger(), &user, "4.99").await;
    let response = buy(&api, &user, "basic").await;
    assert_eq!(response.status, 402, "{:?}", response.body);
    assert_eq!(response.body["error"], json!("Insufficient balance"));
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("4.99"));
    assert_eq!(
        entry_kinds(&api.ledger(), &user).await,
        [EntryKind::AdminCredit]
    );
    let read = api
        .get(SUBSCRIPTION, &api.token(user.as_str(), false))
        .await;
    assert_eq!(read.body, json!({"subscription": null}));

    // A user with no account at all.
    let nobody = new_user();
    assert_eq!(buy(&api, &nobody, "basic").await.status, 402);
    assert_eq!(api.ledger().audit(&nobody).await.unwrap().entries, 0);
}

#[tokio::test]
async fn already_subscribed_is_409_and_changes_nothing() {
    let api = seeded_api().await;
    let user = new_user();
    credit(&api.ledger(), &user, "100.00").await;
    assert_eq!(buy(&api, &user, "basic").await.status, 200);
    let before = billing::dns::get_subscription(&api.ledger(), &user)
        .await
        .unwrap();
    for plan in ["basic", "enterprise"] {
        let response = buy(&api, &user, plan).await;
        assert_eq!(response.status, 409, "{:?}", response.body);
        assert_eq!(response.body["code"], json!("already_subscribed"));
    }
    assert_eq!(
        billing::dns::get_subscription(&api.ledger(), &user)
            .await
            .unwrap(),
        before
    );
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("95.00"));
}

#[tokio::test]
async fn unknown_or_inactive_plans_are_404_and_change_nothing() {
    let api = seeded_api().await;
    let user = new_user();
    credit(&api.ledger(), &user, "100.00").await;
    deactivate(&api.ledger(), "enterprise").await;
    for plan in ["gold", "Basic", "a%23b", "enterprise"] {
        let response = buy(&api, &user, plan).await;
        assert_eq!(response.status, 404, "{plan}: {:?}", response.body);
        assert_eq!(response.body["error"], json!("Plan not found"));
    }
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("100.00"));
    assert_eq!(
        billing::dns::get_subscription(&api.ledger(), &user)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_plan_deactivated_between_read_and_write_is_refused_in_the_transaction() {
    let api = seeded_api().await;
    let ledger = api.ledger();
    let user = new_user();
    credit(&ledger, &user, "100.00").await;
    let now = time::OffsetDateTime::now_utc();
    let prepared = billing::dns::prepare_purchase(&ledger, &user, "pro", now)
        .await
        .unwrap();
    deactivate(&ledger, "pro").await;
    let change = prepared.to_ledger_change(ledger.table()).unwrap();
    let result = billing::dns::apply_purchase(&ledger, prepared, change).await;
    assert!(
        matches!(result, Err(billing::BillingError::NotFound("Plan"))),
        "{result:?}"
    );
    assert_eq!(assert_audit(&ledger, &user).await, usd("100.00"));
    assert_eq!(
        billing::dns::get_subscription(&ledger, &user)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn cancel_turns_auto_renew_off_and_keeps_the_period() {
    let api = seeded_api().await;
    let user = new_user();
    let token = api.token(user.as_str(), false);
    credit(&api.ledger(), &user, "40.00").await;
    let bought = buy(&api, &user, "pro").await;
    assert_eq!(bought.status, 200);

    let cancelled = api.call("POST", CANCEL, Some(&token), None, &[]).await;
    assert_eq!(cancelled.status, 200, "{:?}", cancelled.body);
    assert_eq!(cancelled.body["success"], json!(true));
    let sub = &cancelled.body["subscription"];
    assert_eq!(sub["status"], json!("cancelled"));
    assert_eq!(sub["autoRenew"], json!(false));
    assert_eq!(sub["id"], bought.body["subscription"]["id"]);
    assert_eq!(
        sub["nextRenewalDate"], bought.body["subscription"]["nextRenewalDate"],
        "active until then"
    );
    assert!(sub["cancelledAt"].is_string());

    // Cancelling again answers the same; buying again waits for the period to end.
    let again = api.call("POST", CANCEL, Some(&token), None, &[]).await;
    assert_eq!(again.status, 200);
    assert_eq!(&again.body["subscription"], sub);
    assert_eq!(buy(&api, &user, "basic").await.status, 409);
    let read = api.get(SUBSCRIPTION, &token).await;
    assert_eq!(&read.body["subscription"], sub);
    assert_eq!(
        assert_audit(&api.ledger(), &user).await,
        usd("25.00"),
        "cancel refunds nothing and charges nothing"
    );
}

#[tokio::test]
async fn cancel_without_a_subscription_is_404_and_routes_need_a_token() {
    let api = seeded_api().await;
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let response = api.call("POST", CANCEL, Some(&token), None, &[]).await;
    assert_eq!(response.status, 404, "{:?}", response.body);
    assert_eq!(response.body["error"], json!("Subscription not found"));
    for (method, path) in [
        ("GET", PLANS),
        ("GET", SUBSCRIPTION),
        ("POST", CANCEL),
        ("POST", "/api/dns/plans/basic/purchase"),
    ] {
        let response = api.call(method, path, None, None, &[]).await;
        assert_eq!(response.status, 401, "{method} {path}");
        assert!(response.request_id.is_some());
    }
    assert_eq!(
        api.call("GET", CANCEL, Some(&token), None, &[])
            .await
            .status,
        404,
        "no such route"
    );
}

#[tokio::test]
async fn sample_events_drive_the_dns_functions() {
    let api = seeded_api().await;
    let user = UserId::parse("1001").unwrap();
    credit(&api.ledger(), &user, "5.00").await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    // In the order a user would: list, buy, read, cancel.
    for (file, function, expected) in [
        ("dns-plans.get.json", "dns-plans", json!(3)),
        ("dns-purchase.post.json", "dns-purchase", json!("0.00")),
        (
            "dns-subscription.get.json",
            "dns-subscription",
            json!("active"),
        ),
        (
            "dns-subscription.post.json",
            "dns-subscription",
            json!("cancelled"),
        ),
    ] {
        let text =
            std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut event: Value = serde_json::from_str(&text).unwrap();
        // Fixtures carry long-lived local tokens; swap in one signed with this test's secret.
        event["headers"]["authorization"] = json!(format!("Bearer {}", api.token("1001", false)));
        let response = api.invoke(function, &event.to_string()).await;
        assert_eq!(response.status, 200, "{file}: {:?}", response.body);
        let seen = match function {
            "dns-plans" => json!(response.body["plans"].as_array().map(Vec::len)),
            "dns-purchase" => response.body["balance"].clone(),
            _ => response.body["subscription"]["status"].clone(),
        };
        assert_eq!(seen, expected, "{file}");
    }
    assert_audit(&api.ledger(), &user).await;
}

/// One HTTP exchange on a local port: answers 200 and hands back the request.
async fn one_http_exchange() -> (String, tokio::task::JoinHandle<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/cfn-response?X-Amz-Signature=abc",
        listener.local_addr().unwrap()
    );
    let handle = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let read = socket.read(&mut buffer).await.unwrap();
            request.extend_from_slice(&buffer[..read]);
            let text = String::from_utf8_lossy(&request).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_owned())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    break;
                }
            }
            if read == 0 {
                break;
            }
        }
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8_lossy(&request).to_string()
    });
    (url, handle)
}

#[tokio::test]
async fn deploy_time_seed_answers_cloudformation() {
    let table = integration_tests::TestTable::new().await;
    let deps = dns_seed_fn::Deps::new(table.function_ledger("dns-seed")).expect("http client");
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/dns-seed.create.json");
    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();

    for (request_type, created) in [("Create", 3), ("Update", 0), ("Delete", 0)] {
        let (url, server) = one_http_exchange().await;
        event["RequestType"] = json!(request_type);
        event["ResponseURL"] = json!(url);
        let context = lambda_runtime::Context::default();
        let result = dns_seed_fn::handle(
            &deps,
            lambda_runtime::LambdaEvent::new(event.clone(), context),
        )
        .await
        .expect("answered");
        assert_eq!(result["Status"], json!("SUCCESS"), "{request_type}");
        let request = server.await.unwrap();
        assert!(
            request.starts_with("PUT /cfn-response?X-Amz-Signature=abc "),
            "{request}"
        );
        let body: Value = serde_json::from_str(request.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(body["Status"], json!("SUCCESS"));
        assert_eq!(
            body["PhysicalResourceId"],
            json!(dns_seed_fn::PHYSICAL_RESOURCE_ID)
        );
        assert_eq!(body["RequestId"], event["RequestId"]);
        assert_eq!(body["LogicalResourceId"], json!("DnsPlansSeed"));
        assert_eq!(body["StackId"], event["StackId"]);
        if request_type != "Delete" {
            assert_eq!(body["Data"]["created"], json!(created), "{request_type}");
        }
    }
    let plans = billing::dns::list_active_plans(&table.ledger())
        .await
        .unwrap();
    assert_eq!(plans.len(), 3);
}

// ------------------------------------------------------------ plan changes

/// A user on `plan` since `at`, with `funds` before buying.
async fn dns_subscriber(ledger: &Ledger, funds: &str, plan: &str, at: OffsetDateTime) -> UserId {
    let user = new_user();
    credit(ledger, &user, funds).await;
    billing::dns::purchase(ledger, &user, plan, at)
        .await
        .expect("purchase");
    user
}

async fn renewal_job(api: &TestApi, at: OffsetDateTime) -> Value {
    let deps =
        renewal_cron_fn::Deps::new(api.function_ledger(integration_tests::IN_PROCESS_RENEWALS));
    let event = json!({"time": billing::dns::dates::format_time(at), "detail": {}});
    renewal_cron_fn::handle(
        &deps,
        lambda_runtime::LambdaEvent::new(event, Default::default()),
    )
    .await
    .expect("job runs")
}

#[tokio::test]
async fn an_upgrade_on_day_10_of_30_charges_the_prorated_difference_at_once() {
    let api = seeded_api().await;
    let ledger = api.ledger();
    // Basic (5.00) from Apr 1: the period is Apr 1 - May 1, 30 days.
    let user = dns_subscriber(&ledger, "50.00", "basic", datetime!(2024-04-01 00:00 UTC)).await;
    let day_10 = datetime!(2024-04-11 00:00 UTC); // 10 days used, 20 left
    let changed = billing::dns::change_plan(&ledger, &user, "pro", day_10)
        .await
        .expect("upgrade");
    // (15.00 - 5.00) × 20 / 30 = 6.666… → 6.67 (half-up).
    assert_eq!(changed.charged, usd("6.67"));
    assert!(changed.upgrade);
    assert_eq!(changed.balance, usd("38.33"));
    let sub = billing::dns::get_subscription(&ledger, &user)
        .await
        .unwrap()
        .unwrap();
    let terms = sub.dns().unwrap();
    assert_eq!(terms.plan_id.as_str(), "pro");
    assert_eq!((terms.domain_limit, sub.price), (25, usd("15.00")));
    assert_eq!(
        sub.next_renewal_date,
        datetime!(2024-05-01 00:00 UTC),
        "same period"
    );
    let entry = &ledger.entries(&user, 1, None).await.unwrap().entries[0];
    assert_eq!(entry.type_name(), "service_purchase_dns_plan");
    assert_eq!(entry.amount, usd("-6.67"));
    assert_eq!(entry.reference.as_deref(), Some(sub.id.as_str()));

    // Through the route: the current plan is 409, an unknown plan 404,
    // a short balance 402 — nothing changes.
    let token = api.token(user.as_str(), false);
    let same = api
        .send(
            "POST",
            "/api/dns/subscription/change",
            &token,
            r#"{"planId":"pro"}"#,
        )
        .await;
    assert_eq!(same.status, 409, "{:?}", same.body);
    let unknown = api
        .send(
            "POST",
            "/api/dns/subscription/change",
            &token,
            r#"{"planId":"gold"}"#,
        )
        .await;
    assert_eq!(unknown.status, 404);
    let bad = api
        .send(
            "POST",
            "/api/dns/subscription/change",
            &token,
            r#"{"planId":"pro","x":1}"#,
        )
        .await;
    assert_eq!(bad.status, 400);
    // Through the route the clock is the wall clock: a fresh subscription.
    let poor = dns_subscriber(&ledger, "5.00", "basic", OffsetDateTime::now_utc()).await;
    let short = api
        .send(
            "POST",
            "/api/dns/subscription/change",
            &api.token(poor.as_str(), false),
            r#"{"planId":"enterprise"}"#,
        )
        .await;
    assert_eq!(short.status, 402, "{:?}", short.body);
    let nobody = api
        .send(
            "POST",
            "/api/dns/subscription/change",
            &api.token(new_user().as_str(), false),
            r#"{"planId":"pro"}"#,
        )
        .await;
    assert_eq!(nobody.status, 404);
    // A subscription whose period is over waits for its renewal: 409.
    let due = api
        .send(
            "POST",
            "/api/dns/subscription/change",
            &token,
            r#"{"planId":"enterprise"}"#,
        )
        .await;
    assert_eq!(due.status, 409, "{:?}", due.body);
    assert_eq!(assert_audit(&ledger, &user).await, usd("38.33"));
    assert_eq!(assert_audit(&ledger, &poor).await, usd("0.00"));
    assert_eq!(
        billing::dns::get_subscription(&ledger, &poor)
            .await
            .unwrap()
            .unwrap()
            .dns()
            .unwrap()
            .plan_id
            .as_str(),
        "basic"
    );
}

#[tokio::test]
async fn a_downgrade_waits_for_the_next_renewal_and_renews_at_the_new_price() {
    let api = seeded_api().await;
    let ledger = api.ledger();
    let user = dns_subscriber(&ledger, "40.00", "pro", datetime!(2025-01-15 10:00 UTC)).await;
    let changed =
        billing::dns::change_plan(&ledger, &user, "basic", datetime!(2025-01-20 10:00 UTC))
            .await
            .expect("downgrade");
    assert!(!changed.upgrade);
    assert_eq!(changed.charged, usd("0.00"));
    assert_eq!(changed.balance, usd("25.00"), "no refund, no charge");
    let terms = changed.subscription.dns().unwrap();
    assert_eq!(terms.plan_id.as_str(), "pro", "still pro");
    assert_eq!(
        terms.pending_plan.as_ref().map(|p| p.as_str()),
        Some("basic")
    );
    // The route shows the pending plan.
    let view = api
        .get(SUBSCRIPTION, &api.token(user.as_str(), false))
        .await;
    assert_eq!(
        view.body["subscription"]["pendingPlanId"],
        json!("basic"),
        "{:?}",
        view.body
    );

    let summary = renewal_job(&api, datetime!(2025-02-15 10:00 UTC)).await;
    assert_eq!(summary["renewed"], json!(1), "{summary}");
    let sub = billing::dns::get_subscription(&ledger, &user)
        .await
        .unwrap()
        .unwrap();
    let terms = sub.dns().unwrap();
    assert_eq!(terms.plan_id.as_str(), "basic");
    assert!(terms.pending_plan.is_none());
    assert_eq!(sub.price, usd("5.00"));
    let entry = &ledger.entries(&user, 1, None).await.unwrap().entries[0];
    assert_eq!(entry.type_name(), "service_renewal_dns_plan");
    assert_eq!(entry.amount, usd("-5.00"));
    assert_eq!(assert_audit(&ledger, &user).await, usd("20.00"));
}

/// An upgrade and the renewal of the same subscription at once: whichever
/// commits first, the other re-reads; each charge happens once and the
/// subscription ends on the dearer plan, in a state one of the two orders
/// explains.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgrade_racing_a_renewal_ends_in_one_consistent_state() {
    let api = seeded_api().await;
    let ledger = api.ledger();
    for round in 0..4 {
        let user =
            dns_subscriber(&ledger, "100.00", "basic", datetime!(2025-06-01 00:00 UTC)).await;
        let due = datetime!(2025-07-01 00:00 UTC);
        let upgrade_at = datetime!(2025-06-30 12:00 UTC); // one started day left of 30
        let (job, change) = tokio::join!(
            renewal_job(&api, due),
            billing::dns::change_plan(&ledger, &user, "pro", upgrade_at)
        );
        let change = change.expect("upgrade");
        assert_eq!(job["errors"], json!(0), "{job}");
        // A later run renews what the race left due.
        renewal_job(&api, due).await;
        let sub = billing::dns::get_subscription(&ledger, &user)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(sub.dns().unwrap().plan_id.as_str(), "pro", "round {round}");
        assert_eq!(sub.next_renewal_date, datetime!(2025-08-01 00:00 UTC));
        let entries = ledger.entries(&user, 100, None).await.unwrap().entries;
        let renewals: Vec<_> = entries
            .iter()
            .filter(|e| e.type_name() == "service_renewal_dns_plan")
            .collect();
        assert_eq!(
            renewals.len(),
            1,
            "one renewal of the period, round {round}"
        );
        let balance = assert_audit(&ledger, &user).await;
        // Upgrade first: 1/30 of 10.00 = 0.33, then the renewal at 15.00.
        // Renewal first: 5.00 at basic, then the upgrade for the whole new
        // period (it had not started at upgrade time): 10.00.
        let upgrade_first = usd("100.00")
            .checked_sub(usd("5.00"))
            .unwrap()
            .checked_sub(usd("0.33"))
            .unwrap()
            .checked_sub(usd("15.00"))
            .unwrap();
        let renewal_first = usd("100.00")
            .checked_sub(usd("5.00"))
            .unwrap()
            .checked_sub(usd("5.00"))
            .unwrap()
            .checked_sub(usd("10.00"))
            .unwrap();
        if change.charged == usd("0.33") {
            assert_eq!(balance, upgrade_first, "round {round}");
            assert_eq!(renewals[0].amount, usd("-15.00"));
        } else {
            assert_eq!(change.charged, usd("10.00"), "round {round}");
            assert_eq!(balance, renewal_first, "round {round}");
            assert_eq!(renewals[0].amount, usd("-5.00"));
        }
    }
}

/// The admin changes the upgrade's plan price after the upgrade read it and
/// before its transaction lands (held 600 ms by the fault proxy): the
/// transaction conditions on the price it charges for, so it is refused
/// (409 `plan_changed`, nothing charged), as a purchase is; the next try
/// charges the new price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_never_charges_a_plan_price_changed_before_its_write() {
    let api = seeded_api().await;
    let ledger = api.ledger();
    let user = dns_subscriber(&ledger, "50.00", "basic", datetime!(2024-04-01 00:00 UTC)).await;
    let proxy = FaultProxy::spawn(([127, 0, 0, 1], 0).into(), dynamo_endpoint())
        .await
        .expect("fault proxy starts");
    proxy.set_faults(FaultConfig::seeded(6).with_rule(FaultRule {
        operation: "TransactWriteItems".into(),
        fault: Fault::Latency { ms: 600 },
        rate: 1.0,
        skip: 0,
        max: Some(1),
    }));
    let sdk = billing_config::load_aws_config().await;
    let endpoint = proxy.endpoint();
    let client = billing_config::dynamo_client_with(&sdk, move |b| b.endpoint_url(endpoint));
    let proxied = Ledger::new(client, ledger.table());
    let day_10 = datetime!(2024-04-11 00:00 UTC); // 20 of 30 days left
    let upgrade = tokio::spawn({
        let user = user.clone();
        async move { billing::dns::change_plan(&proxied, &user, "pro", day_10).await }
    });
    // The upgrade has read Pro at 15.00 and sent its transaction: Pro goes to 25.00.
    let started = std::time::Instant::now();
    while proxy.stats().requests("TransactWriteItems") == 0 {
        assert!(started.elapsed().as_secs() < 10, "the upgrade never wrote");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let patch = billing::dns::PlanPatch {
        price: Some(usd("25.00")),
        ..Default::default()
    };
    billing::dns::update_plan(&ledger, "pro", patch)
        .await
        .expect("price changed");
    let result = upgrade.await.unwrap();
    assert!(
        matches!(
            result,
            Err(billing::BillingError::Conflict {
                code: "plan_changed",
                ..
            })
        ),
        "the old price (6.67) must not be charged: {result:?}"
    );
    assert_eq!(assert_audit(&ledger, &user).await, usd("45.00"));
    let sub = billing::dns::get_subscription(&ledger, &user)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (sub.dns().unwrap().plan_id.as_str(), sub.price),
        ("basic", usd("5.00"))
    );
    // Asked again: (25.00 - 5.00) × 20 / 30 = 13.33.
    let changed = billing::dns::change_plan(&ledger, &user, "pro", day_10)
        .await
        .expect("upgrade at the new price");
    assert_eq!(changed.charged, usd("13.33"));
    assert_eq!(changed.subscription.price, usd("25.00"));
    assert_eq!(assert_audit(&ledger, &user).await, usd("31.67"));
}

#[tokio::test]
async fn admins_manage_plans_and_new_prices_apply_from_the_next_renewal() {
    let api = seeded_api().await;
    let ledger = api.ledger();
    let admin = api.token("1", true);
    let user_token = api.token(new_user().as_str(), false);
    const ADMIN_PLANS: &str = "/api/admin/dns/plans";

    let listed = api.get(ADMIN_PLANS, &admin).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    assert_eq!(listed.body["plans"].as_array().unwrap().len(), 3);
    assert_eq!(api.get(ADMIN_PLANS, &user_token).await.status, 403);

    let team = r#"{"id":"team","name":"Team","description":"50 domains","price":"25.00","domainLimit":50,"recordLimit":5000}"#;
    let created = api.send("POST", ADMIN_PLANS, &admin, team).await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    assert_eq!(created.body["plan"]["isActive"], json!(true));
    assert_eq!(
        api.send("POST", ADMIN_PLANS, &admin, team).await.status,
        409
    );
    for bad in [
        r#"{"id":"Bad Id","name":"x","description":"x","price":"1.00","domainLimit":1,"recordLimit":1}"#,
        r#"{"id":"ok","name":"","description":"x","price":"1.00","domainLimit":1,"recordLimit":1}"#,
        r#"{"id":"ok","name":"x","description":"x","price":"0.001","domainLimit":1,"recordLimit":1}"#,
        r#"{"id":"ok","name":"x","description":"x","price":"1.00","domainLimit":-1,"recordLimit":1}"#,
        r#"{"id":"ok","name":"x","description":"x","price":"1.00","domainLimit":1}"#,
    ] {
        assert_eq!(
            api.send("POST", ADMIN_PLANS, &admin, bad).await.status,
            400,
            "{bad}"
        );
    }

    // A subscriber of Basic at 5.00; then Basic costs 6.00.
    let user = dns_subscriber(&ledger, "20.00", "basic", datetime!(2025-03-05 00:00 UTC)).await;
    let patched = api
        .send(
            "PATCH",
            &format!("{ADMIN_PLANS}/basic"),
            &admin,
            r#"{"price":"6.00"}"#,
        )
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    assert_eq!(patched.body["plan"]["price"], json!("6.00"));
    assert_eq!(
        api.send(
            "PATCH",
            &format!("{ADMIN_PLANS}/gold"),
            &admin,
            r#"{"price":"6.00"}"#
        )
        .await
        .status,
        404
    );
    assert_eq!(
        api.send("PATCH", &format!("{ADMIN_PLANS}/basic"), &admin, "{}")
            .await
            .status,
        400
    );
    assert_eq!(
        api.send(
            "PATCH",
            &format!("{ADMIN_PLANS}/basic"),
            &admin,
            r#"{"price":"-1"}"#
        )
        .await
        .status,
        400
    );
    // The current period stays as paid; the renewal charges the new price.
    let sub = billing::dns::get_subscription(&ledger, &user)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sub.price, usd("5.00"));
    let summary = renewal_job(&api, datetime!(2025-04-05 00:00 UTC)).await;
    assert_eq!(summary["renewed"], json!(1), "{summary}");
    assert_eq!(
        ledger.entries(&user, 1, None).await.unwrap().entries[0].amount,
        usd("-6.00")
    );

    // Deactivated: no longer listed or sold, but its subscriptions renew.
    let off = api
        .send(
            "PATCH",
            &format!("{ADMIN_PLANS}/basic"),
            &admin,
            r#"{"isActive":false}"#,
        )
        .await;
    assert_eq!(off.body["plan"]["isActive"], json!(false));
    let public = api.get(PLANS, &user_token).await;
    assert!(
        public.body["plans"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["id"] != json!("basic"))
    );
    let buyer = new_user();
    credit(&ledger, &buyer, "50.00").await;
    assert_eq!(buy(&api, &buyer, "basic").await.status, 404);
    let summary = renewal_job(&api, datetime!(2025-05-05 00:00 UTC)).await;
    assert_eq!(summary["renewed"], json!(1), "{summary}");
    assert_eq!(
        assert_audit(&ledger, &user).await,
        usd("3.00"),
        "20 - 5 - 6 - 6"
    );
    assert_eq!(assert_audit(&ledger, &buyer).await, usd("50.00"));
}
