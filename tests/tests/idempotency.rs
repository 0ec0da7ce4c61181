//! Idempotency-Key on money-moving routes (API.md "Conventions").

use integration_tests::api::TestApi;
use integration_tests::{assert_audit, new_user, usd};
use ledger::dynamodb::types::AttributeValue;
use serde_json::json;
use std::sync::Arc;
use tokio::task::JoinSet;

const JSON: (&str, &str) = ("content-type", "application/json");

fn path(user: &ledger::UserId) -> String {
    format!("/api/admin/users/{user}/custom-credits")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_key_credit_once() {
    let api = Arc::new(TestApi::new().await);
    let user = new_user();
    let admin = api.token("77", true);
    let mut tasks = JoinSet::new();
    for _ in 0..6 {
        let (api, path, admin) = (api.clone(), path(&user), admin.clone());
        tasks.spawn(async move {
            api.call(
                "POST",
                &path,
                Some(&admin),
                Some(r#"{"amount": 5, "reason": "double click"}"#),
                &[JSON, ("idempotency-key", "click-1")],
            )
            .await
        });
    }
    let mut ok_bodies = Vec::new();
    while let Some(response) = tasks.join_next().await {
        let response = response.unwrap();
        match response.status {
            200 => ok_bodies.push(response.body),
            409 => assert_eq!(response.body["code"], json!("idempotency_in_progress")),
            other => panic!("unexpected {other}: {:?}", response.body),
        }
    }
    assert!(!ok_bodies.is_empty());
    assert!(
        ok_bodies
            .iter()
            .all(|b| *b == json!({"success": true, "balance": "5.00"})),
        "{ok_bodies:?}"
    );
    assert_eq!(
        assert_audit(&api.ledger(), &user).await,
        usd("5.00"),
        "credited once"
    );
}

#[tokio::test]
async fn a_late_retry_replays_the_first_response() {
    let api = TestApi::new().await;
    let user = new_user();
    let admin = api.token("77", true);
    let keyed = |body: &'static str| {
        let (api, path, admin) = (&api, path(&user), admin.clone());
        async move {
            api.call(
                "POST",
                &path,
                Some(&admin),
                Some(body),
                &[JSON, ("idempotency-key", "k-late")],
            )
            .await
        }
    };
    let first = keyed(r#"{"amount": 5, "reason": "goodwill"}"#).await;
    assert_eq!(first.status, 200);
    // Something else moves the balance in between.
    api.send(
        "POST",
        &path(&user),
        &admin,
        r#"{"amount": 1, "reason": "other"}"#,
    )
    .await;
    // Same request, written differently ("5.00" is 5): replayed, not re-applied.
    let retry = keyed(r#"{"reason": "goodwill", "amount": "5.00"}"#).await;
    assert_eq!(retry.status, 200);
    assert_eq!(
        retry.body, first.body,
        "the stored first response, balance included"
    );
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("6.00"));
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422_and_moves_nothing() {
    let api = TestApi::new().await;
    let user = new_user();
    let admin = api.token("77", true);
    let call = |body: &'static str| {
        let (api, path, admin) = (&api, path(&user), admin.clone());
        async move {
            api.call(
                "POST",
                &path,
                Some(&admin),
                Some(body),
                &[JSON, ("idempotency-key", "k-reuse")],
            )
            .await
        }
    };
    assert_eq!(
        call(r#"{"amount": 5, "reason": "goodwill"}"#).await.status,
        200
    );
    let reused = call(r#"{"amount": 50, "reason": "goodwill"}"#).await;
    assert_eq!(reused.status, 422);
    assert_eq!(reused.body["code"], json!("idempotency_key_reused"));
    // A different route (removal) with the same key is a different request too.
    let removal = api
        .call(
            "DELETE",
            &path(&user),
            Some(&admin),
            Some(r#"{"amount": 5, "reason": "goodwill"}"#),
            &[JSON, ("idempotency-key", "k-reuse")],
        )
        .await;
    assert_eq!(removal.status, 422);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("5.00"));
}

#[tokio::test]
async fn keys_are_scoped_to_the_caller() {
    let api = TestApi::new().await;
    let user = new_user();
    let body = r#"{"amount": 2, "reason": "shift handover"}"#;
    for admin in ["81", "82"] {
        let token = api.token(admin, true);
        let response = api
            .call(
                "POST",
                &path(&user),
                Some(&token),
                Some(body),
                &[JSON, ("idempotency-key", "same")],
            )
            .await;
        assert_eq!(response.status, 200);
    }
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("4.00"));
}

#[tokio::test]
async fn malformed_keys_are_400() {
    let api = TestApi::new().await;
    let user = new_user();
    let admin = api.token("77", true);
    let long = "k".repeat(256);
    for key in ["", long.as_str(), "tab\there"] {
        let response = api
            .call(
                "POST",
                &path(&user),
                Some(&admin),
                Some(r#"{"amount": 1, "reason": "r"}"#),
                &[JSON, ("idempotency-key", key)],
            )
            .await;
        assert_eq!(response.status, 400, "{key:?}");
    }
    assert_eq!(api.ledger().audit(&user).await.unwrap().entries, 0);
}

#[tokio::test]
async fn the_key_record_rides_in_the_money_transaction() {
    let api = TestApi::new().await;
    let user = new_user();
    let admin = api.token("77", true);
    api.send(
        "POST",
        &path(&user),
        &admin,
        r#"{"amount": 1, "reason": "warm"}"#,
    )
    .await;
    api.table.calls.reset();
    let response = api
        .call(
            "POST",
            &path(&user),
            Some(&admin),
            Some(r#"{"amount": 1, "reason": "r"}"#),
            &[JSON, ("idempotency-key", "rt")],
        )
        .await;
    assert_eq!(response.status, 200);
    let calls = api.table.calls.snapshot();
    assert_eq!(
        api.table.calls.total(),
        2,
        "GetItem + TransactWriteItems only: {calls:?}"
    );

    // The record expires (TTL) no sooner than 24 hours from now.
    let record = api
        .table
        .client
        .get_item()
        .table_name(&api.table.name)
        .key("pk", AttributeValue::S("IDEM#77#rt".into()))
        .key("sk", AttributeValue::S("IDEM".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("record stored");
    let expires: i64 = record["expiresAt"].as_n().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(expires >= now + 24 * 3600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keyed_dns_purchase_charges_once_and_replays() {
    let api = Arc::new(TestApi::new().await);
    billing::dns::seed_default_plans(&api.ledger())
        .await
        .unwrap();
    let user = new_user();
    let admin = api.token("77", true);
    api.send(
        "POST",
        &path(&user),
        &admin,
        r#"{"amount": 20, "reason": "dns"}"#,
    )
    .await;
    let token = api.token(user.as_str(), false);
    let mut tasks = JoinSet::new();
    for _ in 0..4 {
        let (api, token) = (api.clone(), token.clone());
        tasks.spawn(async move {
            api.call(
                "POST",
                "/api/dns/plans/basic/purchase",
                Some(&token),
                None,
                &[("idempotency-key", "buy-basic")],
            )
            .await
        });
    }
    let mut bodies = Vec::new();
    while let Some(response) = tasks.join_next().await {
        let response = response.unwrap();
        assert!([200, 409].contains(&response.status), "{:?}", response.body);
        if response.status == 200 {
            bodies.push(response.body);
        } else {
            assert_eq!(response.body["code"], json!("idempotency_in_progress"));
        }
    }
    let late = api
        .call(
            "POST",
            "/api/dns/plans/basic/purchase",
            Some(&token),
            None,
            &[("idempotency-key", "buy-basic")],
        )
        .await;
    assert_eq!(late.status, 200, "a late retry replays: {:?}", late.body);
    bodies.push(late.body);
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "identical replays: {bodies:?}"
    );
    assert_eq!(bodies[0]["balance"], json!("15.00"));
    assert_eq!(
        assert_audit(&api.ledger(), &user).await,
        usd("15.00"),
        "charged once"
    );
    // Without the key, a second purchase is the contract's 409.
    let again = api
        .call(
            "POST",
            "/api/dns/plans/basic/purchase",
            Some(&token),
            None,
            &[],
        )
        .await;
    assert_eq!(again.status, 409);
}
