#![recursion_limit = "256"]
//! The history routes of the billing page and the admin console: one
//! transaction with its receipt references, the CSV export of a date range,
//! and every user's entries for admins through the day index (no Scan).

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use billing::history::admin::{AdminFilter, ReadStats, admin_entries};
use integration_tests::api::{TestApi, TestResponse};
use integration_tests::{assert_audit, new_user, usd};
use ledger::UserId;
use ledger::keys::{entry_index_pk, entry_index_shard, entry_index_sk, entry_sk};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use time::OffsetDateTime;

const ADMIN: &str = "42";

fn today() -> time::Date {
    OffsetDateTime::now_utc().date()
}

fn at(day: time::Date, seconds: u32) -> String {
    format!(
        "{day}T{:02}:{:02}:{:02}.000Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// Writes `entries` (time, type, signed amount, description) as the user's
/// whole ledger — numbered, chained, with their day-index keys, as
/// `Ledger::apply` writes them — as if they had been written at those times.
async fn seed_ledger(api: &TestApi, user: &UserId, entries: &[(String, &str, &str, &str)]) {
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let n = |v: String| AttributeValue::N(v);
    let mut balance = usd("0");
    let mut items = Vec::new();
    for (i, (created_at, kind, amount, description)) in entries.iter().enumerate() {
        let seq = i as u64 + 1;
        let after = balance.checked_add(usd(amount)).unwrap();
        let mut item = HashMap::new();
        item.insert("pk".to_owned(), s(&user.pk()));
        item.insert("sk".to_owned(), s(&entry_sk(seq)));
        item.insert("seq".to_owned(), n(seq.to_string()));
        item.insert("kind".to_owned(), s(kind));
        item.insert("amount".to_owned(), n(usd(amount).to_string()));
        item.insert("balanceBefore".to_owned(), n(balance.to_string()));
        item.insert("balanceAfter".to_owned(), n(after.to_string()));
        item.insert("description".to_owned(), s(description));
        item.insert("createdAt".to_owned(), s(created_at));
        item.insert("mutationId".to_owned(), s(&format!("seed-{seq}")));
        if kind.starts_with("admin_") {
            item.insert("adminId".to_owned(), s(ADMIN));
            item.insert("reason".to_owned(), s(description));
        }
        if let Some(service) = kind.strip_prefix("service_purchase_") {
            item.insert("serviceType".to_owned(), s(service));
        }
        item.insert(
            "gsi3pk".to_owned(),
            s(&entry_index_pk(
                &created_at[..10],
                entry_index_shard(user, seq),
            )),
        );
        item.insert(
            "gsi3sk".to_owned(),
            s(&entry_index_sk(created_at, user, seq)),
        );
        items.push(item);
        balance = after;
    }
    let mut account = HashMap::new();
    account.insert("pk".to_owned(), s(&user.pk()));
    account.insert("sk".to_owned(), s("CREDITS"));
    account.insert("balance".to_owned(), n(balance.to_string()));
    account.insert("seq".to_owned(), n(entries.len().to_string()));
    items.push(account);
    put_all(api, items).await;
}

async fn put_all(api: &TestApi, items: Vec<HashMap<String, AttributeValue>>) {
    for chunk in items.chunks(25) {
        let writes: Vec<WriteRequest> = chunk
            .iter()
            .map(|item| {
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(item.clone()))
                            .build()
                            .unwrap(),
                    )
                    .build()
            })
            .collect();
        let mut pending = HashMap::from([(api.table.name.clone(), writes)]);
        while !pending.is_empty() {
            let out = api
                .table
                .client
                .batch_write_item()
                .set_request_items(Some(pending))
                .send()
                .await
                .unwrap();
            pending = out.unprocessed_items.unwrap_or_default();
            pending.retain(|_, w| !w.is_empty());
        }
    }
}

async fn admin_add(api: &TestApi, user: &UserId, amount: &str, reason: &str) {
    let admin = api.token(ADMIN, true);
    let response = api
        .send(
            "POST",
            &format!("/api/admin/users/{user}/custom-credits"),
            &admin,
            &json!({"amount": amount, "reason": reason}).to_string(),
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
}

async fn keyed(
    api: &TestApi,
    method: &str,
    path: &str,
    token: &str,
    key: &str,
    body: &Value,
) -> TestResponse {
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", key),
    ];
    Box::pin(api.call(method, path, Some(token), Some(&body.to_string()), &headers)).await
}

/// A PayPal purchase (order, approval, capture); returns the order id.
async fn buy(api: &TestApi, route: &str, token: &str, amount: &str) -> String {
    let response = api
        .send(
            "POST",
            &format!("{route}/add"),
            token,
            &format!(r#"{{"amount": {amount}}}"#),
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let order_id = response.body["orderId"].as_str().unwrap().to_owned();
    assert!(api.paypal.approve(&order_id));
    let captured = api
        .send(
            "POST",
            &format!("{route}/capture"),
            token,
            &json!({"orderId": order_id}).to_string(),
        )
        .await;
    assert_eq!(captured.status, 200, "{:?}", captured.body);
    order_id
}

async fn history(api: &TestApi, token: &str) -> Vec<Value> {
    let page = api.get("/api/billing/transactions?limit=100", token).await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    page.body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_transaction_shows_its_receipt_to_its_owner_only() {
    let api = TestApi::new().await;
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let admin = api.token(ADMIN, true);
    let credits_order = buy(&api, "/api/billing/custom-credits", &token, "10").await;
    let tokens_order = buy(&api, "/api/billing/virtfusion-tokens", &token, "5").await;
    let refund = keyed(
        &api,
        "POST",
        "/api/admin/refunds",
        &admin,
        "refund-1",
        &json!({"orderId": tokens_order, "reason": "customer request"}),
    )
    .await;
    assert_eq!(refund.status, 200, "{:?}", refund.body);
    let refund_id = refund.body["refundId"].as_str().unwrap().to_owned();
    let charge = keyed(
        &api,
        "POST",
        "/api/services/charges",
        &api.service_token("svc-panel"),
        "charge-1",
        &json!({"userId": user.as_str(), "amount": "3.00", "serviceType": "dedicated_server",
                "serviceId": "srv-9", "description": "DS-1, March"}),
    )
    .await;
    assert_eq!(charge.status, 200, "{:?}", charge.body);
    let charge_id = charge.body["charge"]["id"].as_str().unwrap().to_owned();
    let grant = keyed(
        &api,
        "POST",
        &format!("/api/admin/users/{user}/virtfusion-tokens"),
        &admin,
        "grant-1",
        &json!({"tokens": 250, "reason": "sorry for the outage"}),
    )
    .await;
    assert_eq!(grant.status, 200, "{:?}", grant.body);

    let items = history(&api, &token).await;
    let mut seen = BTreeSet::new();
    for item in &items {
        let id = item["id"].as_str().unwrap();
        let detail = api
            .get(&format!("/api/billing/transactions/{id}"), &token)
            .await;
        assert_eq!(detail.status, 200, "{id}: {:?}", detail.body);
        let receipt = &detail.body["transaction"];
        // The list item, exactly, plus its references.
        for (field, value) in item.as_object().unwrap() {
            assert_eq!(&receipt[field], value, "{id}.{field}");
        }
        let kind = format!(
            "{}:{}",
            item["system"].as_str().unwrap(),
            item["type"].as_str().unwrap()
        );
        match kind.as_str() {
            "custom_credits:purchase" => {
                assert_eq!(receipt["order"]["id"], json!(credits_order));
                assert_eq!(receipt["order"]["capturedAmount"], json!("10.00"));
                assert!(receipt["order"]["captureId"].is_string());
            }
            "custom_credits:service_purchase_dedicated_server" => {
                assert_eq!(receipt["charge"]["id"], json!(charge_id));
                assert_eq!(receipt["charge"]["amount"], json!("3.00"));
            }
            "virtfusion:purchase" => {
                assert_eq!(receipt["order"]["id"], json!(tokens_order));
                assert_eq!(receipt["order"]["tokens"], json!(500));
            }
            "virtfusion:refund" => {
                assert_eq!(id, format!("{tokens_order}-{refund_id}"));
                assert_eq!(receipt["refund"]["id"], json!(refund_id));
                assert_eq!(receipt["refund"]["amount"], json!("5.00"));
                assert_eq!(receipt["order"]["refundedAmount"], json!("5.00"));
            }
            "virtfusion:admin_add" => {
                assert_eq!(receipt["grant"]["id"], grant.body["grantId"]);
                assert_eq!(receipt["grant"]["creditId"], grant.body["creditId"]);
                assert_eq!(receipt["adminId"], json!(ADMIN));
            }
            other => panic!("unexpected item {other}: {item}"),
        }
        seen.insert(kind);
    }
    assert_eq!(seen.len(), 5, "{seen:?}");

    // Anyone else — and any unknown id — finds nothing.
    let stranger = api.token(new_user().as_str(), false);
    for item in &items {
        let id = item["id"].as_str().unwrap();
        let other = api
            .get(&format!("/api/billing/transactions/{id}"), &stranger)
            .await;
        assert_eq!(other.status, 404, "{id}: {:?}", other.body);
    }
    for id in [
        "cc-99",
        "cc-0",
        "cc-01",
        "NOSUCHORDER",
        &format!("{tokens_order}-NOREFUND"),
        &credits_order,
        "vfgrant-00000000000000000000000000000000",
        "vfremove-00000000000000000000000000000000",
        "a.b",
        &"x".repeat(300),
    ] {
        let response = api
            .get(&format!("/api/billing/transactions/{id}"), &token)
            .await;
        assert_eq!(response.status, 404, "{id}: {:?}", response.body);
    }
    assert_eq!(
        api.get("/api/billing/transactions/cc-1", "bad")
            .await
            .status,
        401
    );
    assert_audit(&api.ledger(), &user).await;
}

/// A tiny RFC 4180 reader (quoted fields, doubled quotes, CRLF rows).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = vec![String::new()];
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', false) => quoted = true,
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                row.last_mut().unwrap().push('"');
            }
            ('"', true) => quoted = false,
            (',', false) => row.push(String::new()),
            ('\r', false) if chars.peek() == Some(&'\n') => {
                chars.next();
                rows.push(std::mem::replace(&mut row, vec![String::new()]));
            }
            (c, _) => row.last_mut().unwrap().push(c),
        }
    }
    assert_eq!(row, vec![String::new()], "the file ends with CRLF");
    rows
}

fn export_path(from: &str, to: &str) -> String {
    format!("/api/billing/transactions/export?from={from}&to={to}")
}

#[tokio::test]
async fn the_export_is_a_csv_of_both_systems_in_the_range() {
    let api = TestApi::new().await;
    let user = new_user();
    let token = api.token(user.as_str(), false);
    // Sixty entries, one every two days from 2025-01-01, before today's.
    let start = time::macros::date!(2025 - 01 - 01);
    let mut seeded = Vec::new();
    for i in 0..60u32 {
        let day = start + time::Duration::days(2 * i64::from(i));
        let (kind, amount, description) = match i % 3 {
            0 => (
                "admin_add",
                "10.00",
                "Credits added by admin: goodwill, \"VIP\"",
            ),
            1 => ("service_purchase_dns_plan", "-2.50", "=DNS Basic"),
            _ => ("purchase", "0.05", "PayPal purchase"),
        };
        seeded.push((at(day, 3600 + i), kind, amount, description));
    }
    seed_ledger(&api, &user, &seeded).await;
    // Today's entry goes through the ledger (after the seeded chain).
    admin_add(&api, &user, "1.25", "today").await;
    // Token lines: one in February, one in March.
    for (created_at, order_id, tokens) in [
        ("2025-02-03T09:00:00.000Z", "TOKORDER1", 1000),
        ("2025-03-10T09:00:00.000Z", "TOKORDER2", 300),
    ] {
        let line = billing::purchases::TokenPurchase {
            order_id: order_id.into(),
            kind: "purchase".into(),
            tokens: billing_money::Tokens::new(tokens),
            status: "completed".into(),
            description: "VirtFusion tokens purchased with PayPal".into(),
            created_at: created_at.into(),
            sort_key: billing::purchases::TokenPurchase::sort_key_for(created_at, order_id),
            admin: None,
        };
        put_all(&api, vec![line.to_item(&user)]).await;
    }

    let response = api
        .get(&export_path("2025-02-01", "2025-02-28"), &token)
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(
        response.header("content-type"),
        Some("text/csv; charset=utf-8")
    );
    assert_eq!(
        response.header("content-disposition"),
        Some("attachment; filename=\"transactions-2025-02-01-to-2025-02-28.csv\"")
    );
    let rows = parse_csv(response.body.as_str().unwrap());
    assert_eq!(
        rows[0],
        [
            "id",
            "createdAt",
            "system",
            "type",
            "amount",
            "unit",
            "status",
            "description",
            "balanceBefore",
            "balanceAfter",
            "reference"
        ]
    );
    let expected: Vec<usize> = seeded
        .iter()
        .enumerate()
        .filter(|(_, e)| e.0.starts_with("2025-02"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(rows.len(), 1 + expected.len() + 1, "{rows:?}");
    let credits: Vec<&Vec<String>> = rows[1..]
        .iter()
        .filter(|r| r[2] == "custom_credits")
        .collect();
    for (row, &i) in credits.iter().zip(&expected) {
        let (created_at, kind, amount, description) = &seeded[i];
        assert_eq!(row[0], format!("cc-{}", i + 1));
        assert_eq!(
            (&row[1], &row[3], &row[4], &row[5]),
            (
                created_at,
                &kind.to_string(),
                &amount.to_string(),
                &"USD".to_owned()
            )
        );
        let shown = if description.starts_with('=') {
            format!("'{description}")
        } else {
            description.to_string()
        };
        assert_eq!(
            row[7], shown,
            "formulas are defused, quotes and commas kept"
        );
    }
    // Balances chain exactly from row to row.
    for pair in credits.windows(2) {
        assert_eq!(pair[0][9], pair[1][8]);
    }
    let tokens: Vec<&Vec<String>> = rows[1..].iter().filter(|r| r[2] == "virtfusion").collect();
    assert_eq!(tokens.len(), 1);
    assert_eq!(
        (&tokens[0][0], &tokens[0][4], &tokens[0][5]),
        (
            &"TOKORDER1".to_owned(),
            &"1000".to_owned(),
            &"tokens".to_owned()
        )
    );
    let times: Vec<&String> = rows[1..].iter().map(|r| &r[1]).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");

    // Today holds exactly today's entry.
    let today = today().to_string();
    let response = api.get(&export_path(&today, &today), &token).await;
    let rows = parse_csv(response.body.as_str().unwrap());
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[1][0].as_str(), rows[1][4].as_str()),
        ("cc-61", "1.25")
    );

    // Someone else's export is a header only.
    let stranger = api.token(new_user().as_str(), false);
    let empty = api
        .get(&export_path("2025-02-01", "2025-02-28"), &stranger)
        .await;
    assert_eq!(parse_csv(empty.body.as_str().unwrap()).len(), 1);

    for query in [
        "",
        "?from=2025-02-01",
        "?to=2025-02-01",
        "?from=2025-2-1&to=2025-02-03",
        "?from=2025-02-30&to=2025-03-01",
        "?from=2025-03-01&to=2025-02-01",
        "?from=2024-01-01&to=2025-01-01",
        "?from=yesterday&to=today",
    ] {
        let response = api
            .get(&format!("/api/billing/transactions/export{query}"), &token)
            .await;
        assert_eq!(response.status, 400, "{query}: {:?}", response.body);
        assert_eq!(
            response.body["code"],
            json!("invalid_input"),
            "a JSON error"
        );
    }
    assert_eq!(
        api.get(&export_path("2025-01-01", "2025-12-31"), &token)
            .await
            .status,
        200
    );
    assert_eq!(
        api.get(&export_path("2025-01-01", "2025-01-01"), "bad")
            .await
            .status,
        401
    );
}

/// HttpApi prefers a static segment to `{id}`; so does the local gateway
/// that both the tests (`TestApi::call`) and `devstack gateway` route with.
#[test]
fn export_is_routed_before_the_transaction_id() {
    let routes = devstack::template::Template::load(&devstack::template_path())
        .unwrap()
        .routes();
    let function = |path: &str| {
        devstack::gateway::match_route(&routes, "GET", path).map(|r| r.function.clone())
    };
    assert_eq!(
        function("/api/billing/transactions/export").as_deref(),
        Some("transactions-export")
    );
    assert_eq!(
        function("/api/billing/transactions/cc-1").as_deref(),
        Some("transaction-detail")
    );
    assert_eq!(
        function("/api/billing/transactions/exports").as_deref(),
        Some("transaction-detail")
    );
    assert_eq!(
        function("/api/billing/transactions").as_deref(),
        Some("transactions")
    );
}

fn admin_page_path(query: &str) -> String {
    format!("/api/admin/transactions?{query}")
}

/// Every page until `nextCursor` is null.
async fn all_pages(api: &TestApi, query: &str) -> (Vec<Value>, usize) {
    let admin = api.token(ADMIN, true);
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => admin_page_path(&format!("{query}&cursor={c}")),
            None => admin_page_path(query),
        };
        let page = api.get(&path, &admin).await;
        assert_eq!(page.status, 200, "{path}: {:?}", page.body);
        pages += 1;
        items.extend(page.body["items"].as_array().unwrap().iter().cloned());
        match page.body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (items, pages),
        }
        assert!(pages < 200, "paging ends");
    }
}

#[tokio::test]
async fn admins_page_every_users_entries_newest_first_through_the_index() {
    let api = TestApi::new().await;
    let (a, b, c) = (new_user(), new_user(), new_user());
    let today = today();
    let kinds = [
        "admin_add",
        "purchase",
        "service_purchase_dns_plan",
        "admin_remove",
    ];
    let mut expected: Vec<(String, String, String)> = Vec::new(); // (createdAt, user, type)
    for (u, user) in [&a, &b, &c].into_iter().enumerate() {
        let mut entries = Vec::new();
        for i in 0..(8 + 3 * u as u32) {
            let day = today - time::Duration::days(1 + i64::from(i % 3));
            let kind = kinds[(i as usize + u) % 4];
            let amount = if kind == "admin_remove" || kind.starts_with("service") {
                "-0.50"
            } else {
                "5.00"
            };
            entries.push((
                at(day, 7 * 3600 + 97 * i + 13 * u as u32),
                kind,
                amount,
                "seeded",
            ));
        }
        entries.sort_by(|x, y| x.0.cmp(&y.0));
        for e in &entries {
            expected.push((e.0.clone(), user.to_string(), e.1.to_owned()));
        }
        seed_ledger(&api, user, &entries).await;
    }
    // Today's entries are written by the ledger itself, with their index keys.
    for user in [&a, &b] {
        admin_add(&api, user, "2.00", "written today").await;
    }
    api.table.calls.reset();

    let from = (today - time::Duration::days(10)).to_string();
    let (items, pages) = all_pages(&api, &format!("limit=5&from={from}")).await;
    assert_eq!(items.len(), expected.len() + 2, "every entry once");
    assert!(pages >= items.len() / 5);
    let keys: BTreeSet<(String, String)> = items
        .iter()
        .map(|i| {
            (
                i["userId"].as_str().unwrap().to_owned(),
                i["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(keys.len(), items.len(), "no duplicates");
    let times: Vec<&str> = items
        .iter()
        .map(|i| i["createdAt"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    assert_eq!(items[0]["reason"], json!("written today"));
    assert_eq!(items[0]["adminId"], json!(ADMIN));
    for (created_at, user, kind) in &expected {
        assert!(
            items.iter().any(|i| i["createdAt"] == json!(created_at)
                && i["userId"] == json!(user)
                && i["type"] == json!(kind)),
            "{created_at} {user} {kind}"
        );
    }
    let calls = api.table.calls.snapshot();
    assert!(!calls.contains_key("Scan"), "never a Scan: {calls:?}");
    assert_eq!(calls.keys().collect::<Vec<_>>(), ["Query"], "{calls:?}");

    // Bounded by days, and by type.
    let day = (today - time::Duration::days(2)).to_string();
    let (one_day, _) = all_pages(&api, &format!("limit=4&from={day}&to={day}")).await;
    assert_eq!(
        one_day.len(),
        expected.iter().filter(|e| e.0.starts_with(&day)).count()
    );
    let (adds, _) = all_pages(&api, &format!("limit=3&from={from}&type=admin_add")).await;
    assert_eq!(
        adds.len(),
        expected.iter().filter(|e| e.2 == "admin_add").count() + 2
    );
    assert!(adds.iter().all(|i| i["type"] == json!("admin_add")));
    let (services, _) = all_pages(
        &api,
        &format!("limit=100&from={from}&type=service_purchase"),
    )
    .await;
    assert_eq!(
        services.len(),
        expected
            .iter()
            .filter(|e| e.2.starts_with("service_purchase"))
            .count()
    );

    // The cursor keeps its filters.
    let admin = api.token(ADMIN, true);
    let first = api
        .get(
            &admin_page_path(&format!("limit=2&from={from}&type=admin_add")),
            &admin,
        )
        .await;
    let cursor = first.body["nextCursor"].as_str().unwrap();
    let other = api
        .get(
            &admin_page_path(&format!(
                "limit=2&from={from}&type=purchase&cursor={cursor}"
            )),
            &admin,
        )
        .await;
    assert_eq!(other.status, 400, "{:?}", other.body);

    let long_ago = (today - time::Duration::days(400)).to_string();
    for query in [
        "limit=0",
        "limit=101",
        "from=2026-13-01",
        &format!("from={long_ago}"),
        &format!("from={}&to={}", today, today - time::Duration::days(1)),
        "type=bogus",
        "type=admin_credit",
        "cursor=%%%",
        "cursor=e30",
    ] {
        let response = api.get(&admin_page_path(query), &admin).await;
        assert_eq!(response.status, 400, "{query}: {:?}", response.body);
    }
    let user_token = api.token(a.as_str(), false);
    assert_eq!(
        api.get(&admin_page_path("limit=5"), &user_token)
            .await
            .status,
        403
    );
}

fn summary(stats: &[ReadStats]) -> (usize, f64, u32, f64, f64) {
    let pages = stats.len();
    let scanned: u32 = stats.iter().map(|s| s.scanned).sum();
    let max = stats.iter().map(|s| s.scanned).max().unwrap_or(0);
    let queries: u32 = stats.iter().map(|s| s.queries).sum();
    let rcu: f64 = stats.iter().map(|s| s.consumed_rcu).sum();
    (
        pages,
        f64::from(scanned) / pages as f64,
        max,
        f64::from(queries) / pages as f64,
        rcu / pages as f64,
    )
}

/// Items read per page (`ScannedCount`, `ConsumedCapacity`) of the admin
/// listing over 2,000 entries of 50 users on 5 days (docs/benchmarks.md):
/// `cargo test -p integration-tests --test history -- --nocapture admin_listing_reads`.
#[tokio::test]
async fn admin_listing_reads_about_one_page_per_page() {
    let api = TestApi::new().await;
    let today = today();
    for u in 0..50u32 {
        let user = new_user();
        let entries: Vec<(String, &str, &str, &str)> = (0..40u32)
            .map(|i| {
                let day = today - time::Duration::days(1 + i64::from(i / 8));
                // One entry in ten is an admin_add: the filtered case.
                let kind = if (i + u) % 10 == 0 {
                    "admin_add"
                } else {
                    "purchase"
                };
                (
                    at(day, 80_000 - 1_000 * (i % 8) - 13 * u),
                    kind,
                    "1.00",
                    "seeded",
                )
            })
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        seed_ledger(&api, &user, &entries).await;
    }
    let ledger = api.ledger();
    let filter = |kind: Option<&str>| AdminFilter {
        from: today - time::Duration::days(6),
        to: today,
        kind: kind.map(str::to_owned),
    };
    for (label, kind, limit) in [
        ("unfiltered", None, 25),
        ("unfiltered", None, 100),
        ("type=admin_add", Some("admin_add"), 25),
    ] {
        let filter = filter(kind);
        let mut start = None;
        let (mut stats, mut returned) = (Vec::new(), 0);
        loop {
            let page = admin_entries(&ledger, &filter, start, limit).await.unwrap();
            returned += page.items.len();
            stats.push(page.stats);
            match page.next {
                Some(next) => {
                    let (parsed, position) =
                        billing::history::admin::admin_filter(None, None, None, Some(&next), today)
                            .unwrap();
                    assert_eq!(parsed.kind, filter.kind);
                    start = position;
                }
                None => break,
            }
        }
        let expected = if kind.is_some() { 200 } else { 2000 };
        assert_eq!(returned, expected, "{label}");
        let (pages, mean, max, queries, rcu) = summary(&stats);
        println!(
            "admin listing {label} limit={limit}: {pages} pages, items read per page mean {mean:.1} max {max}, \
             queries per page {queries:.1}, RCU per page {rcu:.2}"
        );
        if kind.is_none() {
            // About one page of items read per page (+ each shard's slack of 2).
            let slack = f64::from(2 * ledger::ENTRY_INDEX_SHARDS);
            assert!(
                mean <= f64::from(limit) * 1.5 + slack,
                "{label}: mean {mean}"
            );
        }
    }
}
