#![recursion_limit = "256"]
//! Admin token management (API.md "token management"): grants and removals
//! of VirtFusion tokens through the real VirtFusion client and the
//! stand-in, at most once whatever the retries, the concurrency and
//! VirtFusion do; uncertain outcomes on the review list.

use devstack::virtfusion::FailureMode;
use integration_tests::api::{TestApi, TestResponse};
use integration_tests::new_user;
use ledger::UserId;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

const ADMIN: &str = "77";

/// The `tokens.delivery_needs_review` events the grant `grant_id` committed.
async fn review_events(api: &TestApi, grant_id: &str) -> Vec<Value> {
    integration_tests::events::outbox_details(&api.table, "tokens.delivery_needs_review")
        .await
        .into_iter()
        .filter(|d| d["grantId"] == json!(grant_id))
        .collect()
}

fn tokens_path(user: &UserId) -> String {
    format!("/api/admin/users/{user}/virtfusion-tokens")
}

async fn grant(api: &TestApi, user: &UserId, body: &str, key: Option<&str>) -> TestResponse {
    let token = api.token(ADMIN, true);
    let mut headers = vec![("content-type", "application/json")];
    if let Some(key) = key {
        headers.push(("idempotency-key", key));
    }
    Box::pin(api.call(
        "POST",
        &tokens_path(user),
        Some(&token),
        Some(body),
        &headers,
    ))
    .await
}

async fn remove(api: &TestApi, user: &UserId, credit: &str, body: &str, key: &str) -> TestResponse {
    let token = api.token(ADMIN, true);
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", key),
    ];
    let path = format!("{}/{credit}", tokens_path(user));
    Box::pin(api.call("DELETE", &path, Some(&token), Some(body), &headers)).await
}

/// The user's token history lines (`system` virtfusion), newest first.
async fn token_lines(api: &TestApi, user: &UserId) -> Vec<Value> {
    let token = api.token(user.as_str(), false);
    let page = api.get("/api/billing/transactions?limit=100", &token).await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["system"] == json!("virtfusion"))
        .cloned()
        .collect()
}

async fn review_list(api: &TestApi) -> Vec<Value> {
    let admin = api.token(ADMIN, true);
    let list = api
        .get(
            "/api/admin/virtfusion-deliveries?status=needs_review",
            &admin,
        )
        .await;
    assert_eq!(list.status, 200, "{:?}", list.body);
    list.body["items"].as_array().unwrap().clone()
}

/// VirtFusion unreachable: connections refused. The stand-in closes its
/// listener asynchronously; give it a moment, so no request races into a
/// closing one (that would be an uncertain outcome, not a refusal).
async fn refuse_connections(api: &TestApi) {
    api.virtfusion.set_failure(FailureMode::Refuse(None), None);
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Back to serving (the stand-in binds again asynchronously).
async fn serve_again(api: &TestApi) {
    api.virtfusion.clear_failure();
    tokio::time::sleep(Duration::from_millis(300)).await;
}

async fn resolve(api: &TestApi, id: &str, delivered: bool) -> TestResponse {
    let admin = api.token(ADMIN, true);
    api.send(
        "POST",
        &format!("/api/admin/virtfusion-deliveries/{id}/resolve"),
        &admin,
        &json!({"delivered": delivered, "reason": "checked the VirtFusion panel"}).to_string(),
    )
    .await
}

#[tokio::test]
async fn a_grant_and_its_removal_reach_virtfusion_once_and_show_in_the_history() {
    let api = TestApi::new().await;
    let user = new_user();
    api.virtfusion.set_balance(user.as_str(), 1250);

    let granted = grant(
        &api,
        &user,
        r#"{"tokens": 500, "reason": "goodwill"}"#,
        Some("g-1"),
    )
    .await;
    assert_eq!(granted.status, 200, "{:?}", granted.body);
    assert_eq!(granted.body["success"], json!(true));
    assert_eq!(granted.body["balance"], json!(1750));
    assert_eq!(granted.body["status"], json!("completed"));
    let credit_id = granted.body["creditId"].as_u64().unwrap();
    let grant_id = granted.body["grantId"].as_str().unwrap().to_owned();
    let credits = api.virtfusion.credits();
    assert_eq!(credits.len(), 1);
    assert_eq!((credits[0].id, credits[0].tokens), (credit_id, 500));
    assert_eq!(credits[0].reference_2.as_deref(), Some(grant_id.as_str()));

    // The retry after a lost answer replays it; VirtFusion is not called to add again.
    let retried = grant(
        &api,
        &user,
        r#"{"tokens": 500, "reason": "goodwill"}"#,
        Some("g-1"),
    )
    .await;
    assert_eq!((retried.status, &retried.body), (200, &granted.body));
    assert_eq!(api.virtfusion.credits().len(), 1);
    assert_eq!(api.virtfusion.balance(user.as_str()), 1750);
    // The same key with another request is refused.
    let reused = grant(
        &api,
        &user,
        r#"{"tokens": 501, "reason": "goodwill"}"#,
        Some("g-1"),
    )
    .await;
    assert_eq!(reused.status, 422, "{:?}", reused.body);

    // The user's token history names the admin and the reason.
    let lines = token_lines(&api, &user).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["id"], json!(grant_id));
    assert_eq!(lines[0]["type"], json!("admin_add"));
    assert_eq!(lines[0]["amount"], json!(500));
    assert_eq!(lines[0]["status"], json!("completed"));
    assert_eq!(lines[0]["adminId"], json!(ADMIN));
    assert_eq!(lines[0]["reason"], json!("goodwill"));
    assert_eq!(lines[0]["creditId"], json!(credit_id));

    let removed = remove(
        &api,
        &user,
        &credit_id.to_string(),
        r#"{"reason": "granted by mistake"}"#,
        "r-1",
    )
    .await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    assert_eq!(removed.body["balance"], json!(1250));
    assert!(api.virtfusion.credits().is_empty());
    // Retried: replayed; removing again with another key: 409, VirtFusion untouched.
    let again = remove(
        &api,
        &user,
        &credit_id.to_string(),
        r#"{"reason": "granted by mistake"}"#,
        "r-1",
    )
    .await;
    assert_eq!((again.status, &again.body), (200, &removed.body));
    let requests = api.virtfusion.request_count();
    let twice = remove(
        &api,
        &user,
        &credit_id.to_string(),
        r#"{"reason": "once more"}"#,
        "r-2",
    )
    .await;
    assert_eq!(twice.status, 409, "{:?}", twice.body);
    assert_eq!(twice.body["code"], json!("credit_removed"));
    assert_eq!(api.virtfusion.request_count(), requests);

    let lines = token_lines(&api, &user).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["type"], json!("admin_remove"));
    assert_eq!(lines[0]["amount"], json!(-500));
    assert_eq!(lines[0]["reason"], json!("granted by mistake"));
    assert_eq!(
        lines[0]["id"],
        json!(grant_id.replace("vfgrant-", "vfremove-"))
    );
    // Both lines have receipts, with the grant.
    let token = api.token(user.as_str(), false);
    for line in &lines {
        let id = line["id"].as_str().unwrap();
        let detail = api
            .get(&format!("/api/billing/transactions/{id}"), &token)
            .await;
        assert_eq!(detail.status, 200, "{id}: {:?}", detail.body);
        assert_eq!(detail.body["transaction"]["grant"]["id"], json!(grant_id));
        assert_eq!(
            detail.body["transaction"]["grant"]["status"],
            json!("removed")
        );
    }
    // Custom credits never moved.
    assert_eq!(
        api.ledger().balance(&user).await.unwrap(),
        integration_tests::usd("0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_key_grant_once() {
    let api = Arc::new(TestApi::new().await);
    let user = new_user();
    // VirtFusion answers slowly: every request overlaps the first.
    api.virtfusion
        .set_failure(FailureMode::Delay(Duration::from_millis(250)), None);
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let (api, user) = (api.clone(), user.clone());
        tasks.spawn(async move {
            grant(
                &api,
                &user,
                r#"{"tokens": 300, "reason": "launch bonus"}"#,
                Some("same"),
            )
            .await
        });
    }
    let mut granted = Vec::new();
    while let Some(response) = tasks.join_next().await {
        let response = response.unwrap();
        match response.status {
            200 => granted.push(response.body),
            409 => assert_eq!(response.body["code"], json!("idempotency_in_progress")),
            other => panic!("unexpected {other}: {:?}", response.body),
        }
    }
    api.virtfusion.clear_failure();
    assert!(!granted.is_empty());
    assert!(granted.windows(2).all(|w| w[0] == w[1]), "{granted:?}");
    assert_eq!(api.virtfusion.credits().len(), 1, "granted once");
    assert_eq!(api.virtfusion.balance(user.as_str()), 300);
    // After the first answered, the key replays it.
    let after = grant(
        &api,
        &user,
        r#"{"tokens": 300, "reason": "launch bonus"}"#,
        Some("same"),
    )
    .await;
    assert_eq!((after.status, &after.body), (200, &granted[0]));
    assert_eq!(token_lines(&api, &user).await.len(), 1);
}

#[tokio::test]
async fn an_uncertain_grant_goes_to_review_and_is_never_sent_again() {
    let api = TestApi::new().await;
    let user = new_user();
    // VirtFusion credits it, then never answers: the client times out.
    api.virtfusion
        .set_failure(FailureMode::ApplyThenHang, Some(1));
    let body = r#"{"tokens": 700, "reason": "support ticket 42"}"#;
    let first = grant(&api, &user, body, Some("u-1")).await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    assert_eq!(first.body["status"], json!("needs_review"));
    assert_eq!(first.body["creditId"], Value::Null);
    let grant_id = first.body["grantId"].as_str().unwrap().to_owned();
    assert_eq!(api.virtfusion.credits().len(), 1);

    // Retried: the same 202, and VirtFusion is not asked again.
    let requests = api.virtfusion.request_count();
    let retried = grant(&api, &user, body, Some("u-1")).await;
    assert_eq!((retried.status, &retried.body), (202, &first.body));
    assert_eq!(api.virtfusion.request_count(), requests);

    // Listed with the purchase deliveries; the line shows it under review.
    let listed = review_list(&api).await;
    let item = listed
        .iter()
        .find(|i| i["orderId"] == json!(grant_id))
        .expect("listed");
    assert_eq!(item["kind"], json!("admin_grant"));
    assert_eq!(item["operation"], json!("grant"));
    assert_eq!(item["status"], json!("needs_review"));
    assert_eq!(item["reviewReason"], json!("uncertain_outcome"));
    assert_eq!(item["adminId"], json!(ADMIN));
    let lines = token_lines(&api, &user).await;
    assert_eq!(lines[0]["status"], json!("needs_review"));
    // Announced once, with the state change (the retry adds none).
    let announced = review_events(&api, &grant_id).await;
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(announced[0]["reason"], json!("uncertain_outcome"));
    assert_eq!(announced[0]["operation"], json!("grant"));
    assert_eq!(announced[0]["tokens"], json!(700));
    assert_eq!(announced[0]["userId"], json!(user.as_str()));

    // The admin finds the credit in VirtFusion: granted.
    let resolved = resolve(&api, &grant_id, true).await;
    assert_eq!(resolved.status, 200, "{:?}", resolved.body);
    assert_eq!(resolved.body["delivery"]["status"], json!("granted"));
    assert!(
        review_list(&api)
            .await
            .iter()
            .all(|i| i["orderId"] != json!(grant_id))
    );
    assert_eq!(
        token_lines(&api, &user).await[0]["status"],
        json!("completed")
    );
    assert_eq!(resolve(&api, &grant_id, true).await.status, 409);
    assert_eq!(api.virtfusion.credits().len(), 1);
}

#[tokio::test]
async fn a_grant_found_not_delivered_leaves_no_line_and_a_5xx_is_uncertain_too() {
    let api = TestApi::new().await;
    let user = new_user();
    api.virtfusion
        .set_failure(FailureMode::Status(500), Some(1));
    let first = grant(
        &api,
        &user,
        r#"{"tokens": 50, "reason": "trial"}"#,
        Some("k5"),
    )
    .await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    let grant_id = first.body["grantId"].as_str().unwrap().to_owned();
    assert!(api.virtfusion.credits().is_empty());
    let resolved = resolve(&api, &grant_id, false).await;
    assert_eq!(resolved.status, 200, "{:?}", resolved.body);
    assert_eq!(resolved.body["delivery"]["status"], json!("failed"));
    assert!(
        token_lines(&api, &user).await.is_empty(),
        "nothing was granted"
    );
}

#[tokio::test]
async fn a_refused_grant_changes_nothing_and_the_key_may_be_retried() {
    let api = TestApi::new().await;
    let user = new_user();
    let body = r#"{"tokens": 100, "reason": "compensation"}"#;

    // Not reachable at all: surely not sent.
    refuse_connections(&api).await;
    let down = grant(&api, &user, body, Some("k1")).await;
    serve_again(&api).await;
    assert_eq!(down.status, 503, "{:?}", down.body);
    // VirtFusion refuses (4xx): nothing applied.
    api.virtfusion
        .set_failure(FailureMode::Status(422), Some(1));
    let refused = grant(&api, &user, body, Some("k1")).await;
    assert_eq!(refused.status, 502, "{:?}", refused.body);
    assert!(api.virtfusion.credits().is_empty());
    assert!(token_lines(&api, &user).await.is_empty());
    assert!(review_list(&api).await.is_empty());

    // The same key now succeeds, once.
    let ok = grant(&api, &user, body, Some("k1")).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(api.virtfusion.credits().len(), 1);

    // A user VirtFusion does not know: 404, nothing recorded.
    let stranger = new_user();
    api.virtfusion.forget_user(stranger.as_str());
    let unknown = grant(&api, &stranger, body, Some("k2")).await;
    assert_eq!(unknown.status, 404, "{:?}", unknown.body);
    assert!(token_lines(&api, &stranger).await.is_empty());
}

#[tokio::test]
async fn invalid_requests_are_4xx_and_change_nothing() {
    let api = TestApi::new().await;
    let user = new_user();
    let requests = api.virtfusion.request_count();
    for (body, key) in [
        (r#"{"tokens": 500, "reason": "goodwill"}"#, None),
        (r#"{"tokens": 0, "reason": "goodwill"}"#, Some("v")),
        (r#"{"tokens": -5, "reason": "goodwill"}"#, Some("v")),
        (r#"{"tokens": 10000001, "reason": "goodwill"}"#, Some("v")),
        (r#"{"tokens": 1.5, "reason": "goodwill"}"#, Some("v")),
        (r#"{"tokens": "500", "reason": "goodwill"}"#, Some("v")),
        (r#"{"tokens": 500}"#, Some("v")),
        (r#"{"tokens": 500, "reason": "   "}"#, Some("v")),
        (
            r#"{"tokens": 500, "reason": "goodwill", "extra": 1}"#,
            Some("v"),
        ),
        (r#"[500, "goodwill"]"#, Some("v")),
        ("", Some("v")),
    ] {
        let response = grant(&api, &user, body, key).await;
        assert_eq!(response.status, 400, "{body} {key:?}: {:?}", response.body);
    }
    let most = grant(
        &api,
        &user,
        r#"{"tokens": 10000000, "reason": "max"}"#,
        Some("max"),
    )
    .await;
    assert_eq!(most.status, 200, "{:?}", most.body);
    let credit = most.body["creditId"].as_u64().unwrap().to_string();
    assert_eq!(
        api.virtfusion.request_count(),
        requests + 2,
        "one add, one balance read"
    );

    // Removal: bad credit ids, bodies, keys; other users' and unknown credits.
    let token = api.token(ADMIN, true);
    let no_key = api
        .call(
            "DELETE",
            &format!("{}/{credit}", tokens_path(&user)),
            Some(&token),
            Some(r#"{"reason": "x"}"#),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(no_key.status, 400);
    for bad in ["0", "abc", "-1", "1.5"] {
        let response = remove(&api, &user, bad, r#"{"reason": "x"}"#, "d").await;
        assert_eq!(response.status, 400, "{bad}: {:?}", response.body);
    }
    for body in [
        r#"{"reason": ""}"#,
        r#"{}"#,
        r#"{"reason": "x", "tokens": 1}"#,
    ] {
        let response = remove(&api, &user, &credit, body, "d").await;
        assert_eq!(response.status, 400, "{body}: {:?}", response.body);
    }
    let other = new_user();
    assert_eq!(
        remove(&api, &other, &credit, r#"{"reason": "x"}"#, "d")
            .await
            .status,
        404
    );
    assert_eq!(
        remove(&api, &user, "999999", r#"{"reason": "x"}"#, "d")
            .await
            .status,
        404
    );
    assert_eq!(api.virtfusion.request_count(), requests + 2);
    assert_eq!(api.virtfusion.credits().len(), 1);

    // Not an admin, or no token at all.
    let user_token = api.token(user.as_str(), false);
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", "x"),
    ];
    let body = r#"{"tokens": 5, "reason": "me"}"#;
    let forbidden = api
        .call(
            "POST",
            &tokens_path(&user),
            Some(&user_token),
            Some(body),
            &headers,
        )
        .await;
    assert_eq!(forbidden.status, 403);
    let anonymous = api
        .call("POST", &tokens_path(&user), None, Some(body), &headers)
        .await;
    assert_eq!(anonymous.status, 401);
    let path = format!("{}/{credit}", tokens_path(&user));
    let forbidden = api
        .call(
            "DELETE",
            &path,
            Some(&user_token),
            Some(r#"{"reason": "x"}"#),
            &headers,
        )
        .await;
    assert_eq!(forbidden.status, 403);
    assert_eq!(api.virtfusion.credits().len(), 1);
    assert_eq!(token_lines(&api, &user).await.len(), 1);
}

#[tokio::test]
async fn an_uncertain_removal_goes_to_review() {
    let api = TestApi::new().await;
    let user = new_user();
    let granted = grant(
        &api,
        &user,
        r#"{"tokens": 90, "reason": "promo"}"#,
        Some("g"),
    )
    .await;
    let credit = granted.body["creditId"].as_u64().unwrap().to_string();
    let grant_id = granted.body["grantId"].as_str().unwrap().to_owned();

    // Surely not sent: back to granted, the key is free again.
    refuse_connections(&api).await;
    let down = remove(&api, &user, &credit, r#"{"reason": "promo ended"}"#, "rm").await;
    serve_again(&api).await;
    assert_eq!(down.status, 503, "{:?}", down.body);

    api.virtfusion
        .set_failure(FailureMode::ApplyThenHang, Some(1));
    let uncertain = remove(&api, &user, &credit, r#"{"reason": "promo ended"}"#, "rm").await;
    assert_eq!(uncertain.status, 202, "{:?}", uncertain.body);
    assert!(
        api.virtfusion.credits().is_empty(),
        "VirtFusion did remove it"
    );
    let listed = review_list(&api).await;
    let item = listed
        .iter()
        .find(|i| i["orderId"] == json!(grant_id))
        .expect("listed");
    assert_eq!(item["operation"], json!("removal"));
    assert_eq!(item["status"], json!("removal_review"));
    assert_eq!(item["reason"], json!("promo ended"));
    let announced = review_events(&api, &grant_id).await;
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(announced[0]["operation"], json!("removal"));
    let other_key = remove(&api, &user, &credit, r#"{"reason": "again"}"#, "rm2").await;
    assert_eq!(other_key.status, 409, "{:?}", other_key.body);

    let resolved = resolve(&api, &grant_id, true).await;
    assert_eq!(resolved.body["delivery"]["status"], json!("removed"));
    let lines = token_lines(&api, &user).await;
    assert_eq!(lines[0]["type"], json!("admin_remove"));
    assert_eq!(lines[0]["status"], json!("completed"));
}

#[tokio::test]
async fn a_claim_left_by_a_dead_lambda_goes_to_review() {
    let api = TestApi::new().await;
    let user = new_user();
    let body = r#"{"tokens": 40, "reason": "ticket 7"}"#;
    // The Lambda dies while VirtFusion has the request: the handler's future
    // is dropped after the claim was written.
    // It is cut off once VirtFusion has the request (the claim is written
    // before any VirtFusion call), not after a fixed time a busy machine
    // may not reach the claim in.
    api.virtfusion.set_failure(FailureMode::Hang, None);
    let before = api.virtfusion.request_count();
    let mut request = Box::pin(grant(&api, &user, body, Some("dead")));
    let virtfusion_has_it = async {
        while api.virtfusion.request_count() == before {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        answered = &mut request => panic!("answered while VirtFusion hangs: {:?}", answered.body),
        reached = tokio::time::timeout(Duration::from_secs(20), virtfusion_has_it) => {
            assert!(reached.is_ok(), "the grant never reached VirtFusion");
        }
    }
    drop(request);
    api.virtfusion.clear_failure();
    // A retry while the claim is fresh: still running, never sent again.
    let requests = api.virtfusion.request_count();
    let busy = grant(&api, &user, body, Some("dead")).await;
    assert_eq!(busy.status, 409, "{:?}", busy.body);
    assert_eq!(api.virtfusion.request_count(), requests);

    // The renewal job's sweep, later: the claim is stale, to review.
    let later = time::OffsetDateTime::now_utc() + time::Duration::minutes(10);
    let moved = billing::deliveries::review_stale_claims(&api.ledger(), later, 100)
        .await
        .unwrap();
    assert_eq!(moved, 1);
    let retried = grant(&api, &user, body, Some("dead")).await;
    assert_eq!(retried.status, 202, "{:?}", retried.body);
    assert_eq!(retried.body["status"], json!("needs_review"));
    let listed = review_list(&api).await;
    assert!(
        listed
            .iter()
            .any(|i| i["reviewReason"] == json!("claim_abandoned"))
    );
    let grant_id = retried.body["grantId"].as_str().unwrap_or_default();
    let announced = review_events(&api, grant_id).await;
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(announced[0]["reason"], json!("claim_abandoned"));
    assert_eq!(api.virtfusion.request_count(), requests);
}

/// The `events/` samples of the route drive the function: grant 500 tokens
/// to user 1001, then remove credit 1001 (the stand-in's first credit id).
#[tokio::test]
async fn sample_events_grant_and_remove() {
    let api = TestApi::new().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    for name in [
        "admin-virtfusion-tokens.post.json",
        "admin-virtfusion-tokens.delete.json",
    ] {
        let mut event: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap();
        event["headers"]["authorization"] = json!(format!("Bearer {}", api.token("1", true)));
        let response = api
            .invoke("admin-virtfusion-tokens", &event.to_string())
            .await;
        assert_eq!(response.status, 200, "{name}: {:?}", response.body);
    }
    assert!(api.virtfusion.credits().is_empty());
    assert_eq!(api.virtfusion.balance("1001"), 0);
}
