//! One signed-in user cannot take the API down for everyone: the routes that
//! create PayPal orders take from a per-user token bucket kept in the table
//! (429 with `Retry-After` beyond it), a user holds at most five unpaid
//! orders, and the read routes pay nothing for it.

use devstack::paypal::{Failure, Operation};
use integration_tests::api::{TestApi, TestResponse};
use integration_tests::new_user;
use std::sync::Arc;
use tokio::task::JoinSet;

const CREDITS: &str = "/api/billing/custom-credits";

async fn add(api: &TestApi, token: &str) -> TestResponse {
    api.send("POST", &format!("{CREDITS}/add"), token, r#"{"amount": 5}"#)
        .await
}

fn retry_after(response: &TestResponse) -> u64 {
    response
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("429 without a Retry-After: {response:?}"))
}

#[tokio::test]
async fn one_user_looping_on_add_is_throttled_while_another_is_served() {
    let api = Arc::new(TestApi::new().await);
    let greedy = api.token(new_user().as_str(), false);
    let other = api.token(new_user().as_str(), false);
    let paypal_before = api.paypal.request_count();
    let mut tasks = JoinSet::new();
    for _ in 0..30 {
        let (api, token) = (api.clone(), greedy.clone());
        tasks.spawn(async move { add(&api, &token).await });
    }
    // Meanwhile another user's order goes through.
    let served = add(&api, &other).await;
    assert_eq!(served.status, 200, "{:?}", served.body);
    let (mut ok, mut limited, mut by_rate) = (0, 0, 0);
    while let Some(response) = tasks.join_next().await {
        let response = response.unwrap();
        match response.status {
            200 => ok += 1,
            429 => {
                limited += 1;
                let code = response.body["code"].as_str().unwrap_or_default();
                by_rate += usize::from(code == "rate_limited");
                assert!(
                    code == "rate_limited" || code == "too_many_open_orders",
                    "{:?}",
                    response.body
                );
                let wait = retry_after(&response);
                assert!((1..=3 * 60 * 60).contains(&wait), "Retry-After {wait}");
            }
            other => panic!("{other}: {:?}", response.body),
        }
    }
    // The bucket let at most 10 through; of those, the open-orders cap
    // (places taken by conditional puts) at most 5, even at once.
    assert!(
        (1..=5).contains(&ok),
        "{ok} unpaid orders beyond the cap of 5"
    );
    assert_eq!(ok + limited, 30);
    assert!(by_rate >= 20, "{by_rate} refused by the bucket");
    // At most one PayPal order per allowed request (plus the other user's,
    // and the client's one OAuth token request).
    let paypal_calls = api.paypal.request_count() - paypal_before;
    assert!(
        paypal_calls <= ok + 2,
        "{paypal_calls} PayPal calls for {ok} + 1 orders"
    );

    // The bucket refills one request per 6 s: right away the user is still
    // refused (by the bucket, or by the open-orders cap if a concurrent
    // request read the clock a moment earlier and left the 10th token).
    let again = add(&api, &greedy).await;
    assert_eq!(again.status, 429, "{:?}", again.body);
    if again.body["code"] == "rate_limited" {
        assert!(retry_after(&again) <= 6, "{again:?}");
    }
    // The other user's bucket is their own.
    assert_eq!(add(&api, &other).await.status, 200);
}

#[tokio::test]
async fn a_user_holds_at_most_five_unpaid_orders() {
    let api = TestApi::new().await;
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let mut orders = Vec::new();
    for _ in 0..5 {
        let response = add(&api, &token).await;
        assert_eq!(response.status, 200, "{:?}", response.body);
        orders.push((
            response.body["orderId"].as_str().unwrap().to_owned(),
            response.body["approveUrl"].as_str().unwrap().to_owned(),
        ));
    }
    let paypal_before = api.paypal.request_count();
    let refused = add(&api, &token).await;
    assert_eq!(refused.status, 429, "{:?}", refused.body);
    assert_eq!(refused.body["code"], "too_many_open_orders");
    assert!(
        retry_after(&refused) > 60,
        "an open order lapses after hours"
    );
    assert_eq!(
        api.paypal.request_count(),
        paypal_before,
        "PayPal not called"
    );

    // Paying one frees its place.
    let (order_id, approve_url) = &orders[0];
    let status = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(approve_url)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success() || status.is_redirection());
    let captured = api
        .send(
            "POST",
            &format!("{CREDITS}/capture"),
            &token,
            &format!(r#"{{"orderId": "{order_id}"}}"#),
        )
        .await;
    assert_eq!(captured.status, 200, "{:?}", captured.body);
    let response = add(&api, &token).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
}

#[tokio::test]
async fn an_order_paypal_refused_gives_its_place_back() {
    let api = TestApi::new().await;
    let token = api.token(new_user().as_str(), false);
    // Five refusals by PayPal hold no place: five orders still fit after them.
    api.paypal
        .set_failure(Operation::CreateOrder, Failure::Status(500), Some(5));
    for _ in 0..5 {
        let response = add(&api, &token).await;
        assert!(response.status >= 500, "{:?}", response.body);
    }
    for _ in 0..5 {
        let response = add(&api, &token).await;
        assert_eq!(response.status, 200, "{:?}", response.body);
    }
}

#[tokio::test]
async fn read_routes_make_no_extra_dynamodb_call() {
    let api = TestApi::new().await;
    let user = new_user();
    let token = api.token(user.as_str(), false);
    for (path, expected) in [
        ("/api/billing/balance", 1),
        ("/api/billing/transactions", 2),
    ] {
        api.table.calls.reset();
        let response = api.get(path, &token).await;
        assert_eq!(response.status, 200, "{path}: {:?}", response.body);
        let calls = api.table.calls.snapshot();
        assert!(!calls.contains_key("UpdateItem"), "{path}: {calls:?}");
        assert_eq!(api.table.calls.total(), expected, "{path}: {calls:?}");
    }
    // And no bucket was created for the reader.
    let items = api
        .ledger()
        .client()
        .query()
        .table_name(api.ledger().table())
        .key_condition_expression("pk = :pk AND begins_with(sk, :rate)")
        .expression_attribute_values(":pk", aws_sdk_dynamodb::types::AttributeValue::S(user.pk()))
        .expression_attribute_values(
            ":rate",
            aws_sdk_dynamodb::types::AttributeValue::S("RATE#".into()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(items.count(), 0);
    // The add route does take from the bucket: one conditional UpdateItem.
    api.table.calls.reset();
    assert_eq!(add(&api, &token).await.status, 200);
    assert_eq!(api.table.calls.snapshot().get("UpdateItem"), Some(&1));
}
