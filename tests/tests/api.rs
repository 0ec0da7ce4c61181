//! Every route and every error class of the contract (API.md), through the
//! real handlers and DynamoDB Local.

use billing::purchases::TokenPurchase;
use billing_money::Tokens;
use devstack::virtfusion::{FailureMode, TokensFormat};
use integration_tests::api::{JWT_SECRET, TestApi, token_with};
use integration_tests::{assert_audit, new_user, usd};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::task::JoinSet;

fn admin_path(user: &ledger::UserId) -> String {
    format!("/api/admin/users/{user}/custom-credits")
}

#[tokio::test]
async fn balance_shows_both_systems() {
    let api = TestApi::new().await;
    let user = new_user();
    api.virtfusion.set_balance(user.as_str(), 1250);
    let admin = api.token("9000", true);
    let added = api
        .send(
            "POST",
            &admin_path(&user),
            &admin,
            r#"{"amount": 12.5, "reason": "welcome"}"#,
        )
        .await;
    assert_eq!(added.status, 200, "{:?}", added.body);

    let response = api
        .get("/api/billing/balance", &api.token(user.as_str(), false))
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.body,
        json!({
            "virtFusion": {"balance": 1250, "exact": "1250", "formatted": "1,250 Tokens", "available": true},
            "customCredits": {"balance": "12.50", "formatted": "$12.50"},
        })
    );
    assert!(response.request_id.is_some_and(|id| !id.is_empty()));
}

#[tokio::test]
async fn balance_reads_virtfusion_numeric_strings() {
    let api = TestApi::new().await;
    let user = new_user();
    api.virtfusion.set_balance(user.as_str(), 70);
    api.virtfusion
        .set_tokens_format(TokensFormat::DecimalString);
    let response = api
        .get("/api/billing/balance", &api.token(user.as_str(), false))
        .await;
    assert_eq!(response.body["virtFusion"]["balance"], json!(70));
}

/// VirtFusion's real balance shapes: no `tokens` key means 0 (not "unavailable"), and
/// hourly billing leaves fractions, shown exactly; a purchase still adds whole tokens.
#[tokio::test]
async fn balance_reads_virtfusions_missing_and_fractional_tokens() {
    let api = TestApi::new().await;
    let user = new_user();
    let token = api.token(user.as_str(), false);
    api.virtfusion.set_tokens_format(TokensFormat::Missing);
    let response = api.get("/api/billing/balance", &token).await;
    assert_eq!(
        response.body["virtFusion"],
        json!({"balance": 0, "exact": "0", "formatted": "0 Tokens", "available": true})
    );
    api.virtfusion.set_tokens_format(TokensFormat::Number);
    api.virtfusion.set_balance(user.as_str(), 1250);
    api.virtfusion
        .set_balance_fraction(user.as_str(), Some("57"));
    let response = api.get("/api/billing/balance", &token).await;
    assert_eq!(
        response.body["virtFusion"],
        json!({"balance": 1250, "exact": "1250.57", "formatted": "1,250.57 Tokens", "available": true})
    );
    // A purchase adds whole tokens to the fractional balance.
    let order = api
        .send(
            "POST",
            "/api/billing/virtfusion-tokens/add",
            &token,
            r#"{"amount": 10}"#,
        )
        .await;
    let order_id = order.body["orderId"].as_str().unwrap().to_owned();
    assert!(api.paypal.approve(&order_id));
    let captured = api
        .send(
            "POST",
            "/api/billing/virtfusion-tokens/capture",
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
    assert_eq!(api.virtfusion.credits().last().unwrap().tokens, 1000);
    api.virtfusion.set_tokens_format(TokensFormat::String);
    let response = api.get("/api/billing/balance", &token).await;
    assert_eq!(response.body["virtFusion"]["exact"], json!("2250.57"));
    assert_eq!(response.body["virtFusion"]["balance"], json!(2250));
}

/// A `sub` that is not a canonical integer (`"u-…"`, or `"0…"`, which VirtFusion would
/// read as another user's integer id) is sent as a relation string (`relStr=true`):
/// its balance reads and its purchase is delivered, never refused forever.
#[tokio::test]
async fn non_numeric_subs_reach_virtfusion_as_relation_strings() {
    let api = TestApi::new().await;
    for sub in [format!("u-{}", new_user()), format!("0{}", new_user())] {
        let user = ledger::UserId::parse(&sub).unwrap();
        let token = api.token(&sub, false);
        api.virtfusion.set_balance(&sub, 30);
        let balance = api.get("/api/billing/balance", &token).await;
        assert_eq!(balance.body["virtFusion"]["balance"], json!(30), "{sub}");
        let order = api
            .send(
                "POST",
                "/api/billing/virtfusion-tokens/add",
                &token,
                r#"{"amount": 2}"#,
            )
            .await;
        let order_id = order.body["orderId"].as_str().unwrap().to_owned();
        assert!(api.paypal.approve(&order_id));
        let captured = api
            .send(
                "POST",
                "/api/billing/virtfusion-tokens/capture",
                &token,
                &format!(r#"{{"orderId": "{order_id}"}}"#),
            )
            .await;
        assert_eq!(captured.status, 200, "{sub}: {:?}", captured.body);
        assert_eq!(captured.body["status"], json!("completed"), "{sub}");
        assert_eq!(api.virtfusion.balance(&sub), 230, "{sub}");
        assert_eq!(assert_audit(&api.ledger(), &user).await, usd("0.00"));
    }
}

#[tokio::test]
async fn balance_survives_virtfusion_being_down() {
    let api = TestApi::new().await;
    let user = new_user();
    for mode in [FailureMode::Status(503), FailureMode::Hang] {
        api.virtfusion.set_failure(mode, None);
        let response = api
            .get("/api/billing/balance", &api.token(user.as_str(), false))
            .await;
        assert_eq!(response.status, 200, "{mode:?}");
        assert_eq!(
            response.body["virtFusion"],
            json!({"balance": null, "formatted": null, "available": false})
        );
        assert_eq!(response.body["customCredits"]["balance"], json!("0.00"));
    }
}

#[tokio::test]
async fn tokens_are_checked() {
    let api = TestApi::new().await;
    let path = "/api/billing/balance";
    let forged = token_with("1", false, 3600, "not-the-secret");
    let expired = token_with("1", false, -120, JWT_SECRET);
    // {"alg":"none"} . {"sub":"1","roles":["admin"],"exp":9999999999} . (no signature)
    let alg_none =
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIiwicm9sZXMiOlsiYWRtaW4iXSwiZXhwIjo5OTk5OTk5OTk5fQ.";
    for (token, why) in [
        (None, "missing"),
        (Some(forged.as_str()), "forged"),
        (Some(expired.as_str()), "expired"),
        (Some(alg_none), "alg none"),
        (Some("garbage"), "malformed"),
    ] {
        let response = api.call("GET", path, token, None, &[]).await;
        assert_eq!(response.status, 401, "{why}: {:?}", response.body);
        assert!(response.body["error"].is_string(), "{why}");
        assert!(
            response.request_id.is_some(),
            "{why}: x-request-id on errors too"
        );
    }
    // Scheme other than Bearer.
    let basic = api
        .call(
            "GET",
            path,
            None,
            None,
            &[("authorization", "Basic dXNlcjpwYXNz")],
        )
        .await;
    assert_eq!(basic.status, 401);
}

#[tokio::test]
async fn admin_routes_need_the_admin_role() {
    let api = TestApi::new().await;
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let path = admin_path(&user);
    assert_eq!(api.get(&path, &token).await.status, 403);
    let response = api
        .send(
            "POST",
            &path,
            &token,
            r#"{"amount": 5, "reason": "self-service"}"#,
        )
        .await;
    assert_eq!(response.status, 403);
    assert_eq!(api.ledger().balance(&user).await.unwrap(), usd("0"));
}

#[tokio::test]
async fn admin_add_read_remove_with_audit_fields() {
    let api = TestApi::new().await;
    let user = new_user();
    let admin = api.token("42", true);
    let path = admin_path(&user);

    let added = api
        .send(
            "POST",
            &path,
            &admin,
            r#"{"amount": "17.50", "reason": "goodwill"}"#,
        )
        .await;
    assert_eq!(added.body, json!({"success": true, "balance": "17.50"}));
    let removed = api
        .send(
            "DELETE",
            &path,
            &admin,
            r#"{"amount": 5, "reason": "correction"}"#,
        )
        .await;
    assert_eq!(removed.body, json!({"success": true, "balance": "12.50"}));

    let read = api.get(&path, &admin).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["balance"], json!("12.50"));
    assert_eq!(read.body["formatted"], json!("$12.50"));
    let latest = &read.body["transactions"][0];
    assert_eq!(latest["amount"], json!("-5.00"));
    assert_eq!(latest["adminId"], json!("42"));
    assert_eq!(latest["reason"], json!("correction"));
    assert_eq!(latest["balanceBefore"], json!("17.50"));
    assert_eq!(latest["balanceAfter"], json!("12.50"));
    assert_audit(&api.ledger(), &user).await;
}

#[tokio::test]
async fn removing_more_than_the_balance_is_400_and_changes_nothing() {
    let api = TestApi::new().await;
    let user = new_user();
    let admin = api.token("42", true);
    let path = admin_path(&user);
    api.send("POST", &path, &admin, r#"{"amount": 3, "reason": "r"}"#)
        .await;
    let response = api
        .send(
            "DELETE",
            &path,
            &admin,
            r#"{"amount": 3.01, "reason": "too much"}"#,
        )
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(response.body["error"], json!("Insufficient balance"));
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("3.00"));
}

#[tokio::test]
async fn every_bad_admin_body_is_400_and_changes_nothing() {
    let api = TestApi::new().await;
    let user = new_user();
    let admin = api.token("42", true);
    let path = admin_path(&user);
    let huge = format!(r#"{{"amount": 1, "reason": "{}"}}"#, "x".repeat(20_000));
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let bodies: Vec<(&str, String)> = vec![
        ("zero", r#"{"amount": 0, "reason": "r"}"#.into()),
        ("negative", r#"{"amount": -5, "reason": "r"}"#.into()),
        (
            "negative zero",
            r#"{"amount": "-0.00", "reason": "r"}"#.into(),
        ),
        (
            "too large",
            r#"{"amount": 100000.01, "reason": "r"}"#.into(),
        ),
        ("three places", r#"{"amount": 1.005, "reason": "r"}"#.into()),
        ("exponent", r#"{"amount": 1e2, "reason": "r"}"#.into()),
        ("NaN", r#"{"amount": "NaN", "reason": "r"}"#.into()),
        (
            "Infinity",
            r#"{"amount": "Infinity", "reason": "r"}"#.into(),
        ),
        (
            "amount as bool",
            r#"{"amount": true, "reason": "r"}"#.into(),
        ),
        ("amount missing", r#"{"reason": "r"}"#.into()),
        ("reason missing", r#"{"amount": 5}"#.into()),
        ("reason blank", r#"{"amount": 5, "reason": "   "}"#.into()),
        (
            "reason not a string",
            r#"{"amount": 5, "reason": 7}"#.into(),
        ),
        (
            "unknown field",
            r#"{"amount": 5, "reason": "r", "userId": "1"}"#.into(),
        ),
        ("not JSON", "amount=5".into()),
        ("truncated JSON", r#"{"amount": 5, "reason": "#.into()),
        ("array", "[1,2]".into()),
        ("empty", "".into()),
        ("too large body", huge),
        ("deeply nested", deep),
    ];
    for (why, body) in bodies {
        for method in ["POST", "DELETE"] {
            let response = api.send(method, &path, &admin, &body).await;
            assert_eq!(
                response.status, 400,
                "{why} ({method}): {:?}",
                response.body
            );
            assert!(response.body["error"].is_string(), "{why}");
        }
    }
    let wrong_type = api
        .call(
            "POST",
            &path,
            Some(&admin),
            Some(r#"{"amount": 5, "reason": "r"}"#),
            &[("content-type", "text/plain")],
        )
        .await;
    assert_eq!(wrong_type.status, 400);
    let bad_user = api
        .send(
            "POST",
            "/api/admin/users/a%23b/custom-credits",
            &admin,
            r#"{"amount": 5, "reason": "r"}"#,
        )
        .await;
    assert_eq!(bad_user.status, 400);
    assert_eq!(
        api.ledger().audit(&user).await.unwrap().entries,
        0,
        "nothing was written"
    );
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let api = TestApi::new().await;
    let token = api.token("1", true);
    assert_eq!(api.get("/api/billing/nothing", &token).await.status, 404);
    assert_eq!(
        api.call("PUT", "/api/billing/balance", Some(&token), None, &[])
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn bad_query_parameters_are_400() {
    let api = TestApi::new().await;
    let token = api.token("1", false);
    for query in [
        "limit=0",
        "limit=101",
        "limit=abc",
        "limit=-1",
        "cursor=%%%",
        "cursor=bm90LWpzb24",
    ] {
        let response = api
            .get(&format!("/api/billing/transactions?{query}"), &token)
            .await;
        assert_eq!(response.status, 400, "{query}: {:?}", response.body);
    }
}

#[tokio::test]
async fn transactions_merge_both_systems_and_page_without_duplicates() {
    let api = TestApi::new().await;
    let user = new_user();
    let admin = api.token("42", true);
    // Interleave 7 credit entries and 6 token purchases in time.
    for i in 0..13 {
        if i % 2 == 0 {
            let body = format!(r#"{{"amount": {}, "reason": "r{i}"}}"#, i + 1);
            assert_eq!(
                api.send("POST", &admin_path(&user), &admin, &body)
                    .await
                    .status,
                200
            );
        } else {
            let created_at = ledger::now_rfc3339();
            let order_id = format!("ORDER-{i}");
            let purchase = TokenPurchase {
                sort_key: TokenPurchase::sort_key_for(&created_at, &order_id),
                order_id,
                kind: "purchase".into(),
                tokens: Tokens::new(100 * i),
                status: "completed".into(),
                description: "VirtFusion tokens".into(),
                created_at,
                admin: None,
            };
            api.table
                .client
                .put_item()
                .table_name(&api.table.name)
                .set_item(Some(purchase.to_item(&user)))
                .send()
                .await
                .unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let token = api.token(user.as_str(), false);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let path = match &cursor {
            Some(c) => format!("/api/billing/transactions?limit=4&cursor={c}"),
            None => "/api/billing/transactions?limit=4".into(),
        };
        let page = api.get(&path, &token).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        let items = page.body["items"].as_array().unwrap().clone();
        assert!(items.len() <= 4);
        seen.extend(items);
        match page.body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 13, "every item once");
    let ids: HashSet<String> = seen
        .iter()
        .map(|i| format!("{}:{}", i["system"], i["id"]))
        .collect();
    assert_eq!(ids.len(), 13, "no duplicates");
    let times: Vec<&str> = seen
        .iter()
        .map(|i| i["createdAt"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let systems: HashSet<&str> = seen.iter().map(|i| i["system"].as_str().unwrap()).collect();
    assert_eq!(systems, HashSet::from(["custom_credits", "virtfusion"]));
    let credit = seen
        .iter()
        .find(|i| i["system"] == "custom_credits")
        .unwrap();
    for field in [
        "id",
        "type",
        "amount",
        "status",
        "description",
        "createdAt",
        "balanceBefore",
        "balanceAfter",
    ] {
        assert!(!credit[field].is_null(), "credit item lacks {field}");
    }
    let tokens = seen.iter().find(|i| i["system"] == "virtfusion").unwrap();
    assert!(tokens["amount"].is_i64(), "token amounts are integers");
    assert!(
        credit["amount"].is_string(),
        "credit amounts are decimal strings"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_admin_removals_never_overdraw() {
    let api = Arc::new(TestApi::new().await);
    let user = new_user();
    let admin = api.token("42", true);
    let path = admin_path(&user);
    api.send(
        "POST",
        &path,
        &admin,
        r#"{"amount": 20, "reason": "start"}"#,
    )
    .await;

    let mut tasks = JoinSet::new();
    for _ in 0..24 {
        let (api, path, admin) = (api.clone(), path.clone(), admin.clone());
        tasks.spawn(async move {
            api.send(
                "DELETE",
                &path,
                &admin,
                r#"{"amount": 3, "reason": "load"}"#,
            )
            .await
        });
    }
    let mut statuses = Vec::new();
    while let Some(response) = tasks.join_next().await {
        statuses.push(response.unwrap().status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        6,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        18,
        "{statuses:?}"
    );
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("2.00"));
}

#[tokio::test]
async fn sample_events_drive_their_functions() {
    let api = TestApi::new().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    // The fixtures act on user 1001; fund it so the DELETE fixture can succeed.
    let funding = ledger::Change::new(
        ledger::UserId::parse("1001").unwrap(),
        usd("100.00"),
        ledger::EntryDetails::new(ledger::EntryKind::AdminCredit, "fixture funding"),
    );
    api.ledger().apply(funding).await.unwrap();
    let mut served = 0;
    for entry in std::fs::read_dir(&dir).expect("events/ exists") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let function = name.split('.').next().unwrap().to_owned();
        if !["balance", "transactions", "admin-credits"].contains(&function.as_str()) {
            continue;
        }
        // Fixtures carry long-lived local tokens; swap in one signed with this test's secret.
        let mut event: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let admin = event["rawPath"]
            .as_str()
            .unwrap_or("")
            .starts_with("/api/admin");
        event["headers"]["authorization"] = json!(format!("Bearer {}", api.token("1001", admin)));
        let response = api.invoke(&function, &event.to_string()).await;
        assert!(
            response.status < 300,
            "{name}: {} {:?}",
            response.status,
            response.body
        );
        served += 1;
    }
    assert!(served >= 5, "expected a fixture per route, found {served}");
}
