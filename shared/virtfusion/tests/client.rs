//! The VirtFusion client against the devstack stand-in: every outcome class
//! of the delivery policy (applied, not applied, uncertain, unreadable).

use billing_config::SecretValue;
use billing_money::Tokens;
use devstack::virtfusion::{FailureMode, TokensFormat, VirtFusionStandIn};
use std::time::{Duration, Instant};
use virtfusion::{CreditId, VirtFusionClient, VirtFusionError};

const TOKEN: &str = "test-virtfusion-token";
const USER: &str = "42";

async fn stand_in() -> VirtFusionStandIn {
    VirtFusionStandIn::spawn("127.0.0.1:0".parse().unwrap(), TOKEN)
        .await
        .unwrap()
}

fn client_with(base_url: &str, token: &str, timeout_ms: u64) -> VirtFusionClient {
    VirtFusionClient::new(
        base_url,
        SecretValue::new(token),
        Duration::from_millis(timeout_ms),
    )
    .unwrap()
}

fn client(vf: &VirtFusionStandIn) -> VirtFusionClient {
    client_with(&vf.base_url(), TOKEN, 300)
}

#[tokio::test]
async fn balance_as_number() {
    let vf = stand_in().await;
    vf.set_balance(USER, 1250);
    assert_eq!(
        client(&vf).token_balance(USER).await.unwrap().whole(),
        Tokens::new(1250)
    );
}

#[tokio::test]
async fn balance_as_numeric_strings() {
    let vf = stand_in().await;
    vf.set_balance(USER, 1250);
    let c = client(&vf);
    vf.set_tokens_format(TokensFormat::String);
    assert_eq!(
        c.token_balance(USER).await.unwrap().whole(),
        Tokens::new(1250)
    );
    vf.set_tokens_format(TokensFormat::DecimalString);
    assert_eq!(
        c.token_balance(USER).await.unwrap().whole(),
        Tokens::new(1250)
    );
}

#[tokio::test]
async fn unknown_user_starts_at_zero() {
    let vf = stand_in().await;
    assert_eq!(
        client(&vf).token_balance("new-user").await.unwrap().whole(),
        Tokens::new(0)
    );
}

#[tokio::test]
async fn add_then_remove_tokens() {
    let vf = stand_in().await;
    vf.set_balance(USER, 50);
    let c = client(&vf);

    let first = c
        .add_tokens(USER, Tokens::new(1000), "order-1")
        .await
        .unwrap();
    let second = c
        .add_tokens(USER, Tokens::new(200), "order-2")
        .await
        .unwrap();
    assert_ne!(first, second);
    assert_eq!(vf.balance(USER), 1250);
    assert_eq!(
        c.token_balance(USER).await.unwrap().whole(),
        Tokens::new(1250)
    );
    let credits = vf.credits();
    assert_eq!(credits.len(), 2);
    assert_eq!(credits[0].id, first.get());
    assert_eq!(credits[0].tokens, 1000);
    assert_eq!(credits[0].reference_2.as_deref(), Some("order-1"));

    c.remove_credit(first).await.unwrap();
    assert_eq!(vf.balance(USER), 250);
    assert_eq!(vf.credits().len(), 1);
    // Gone already: the caller decides what a 404 means.
    assert_eq!(
        c.remove_credit(first).await,
        Err(VirtFusionError::Rejected { status: 404 })
    );
    assert_eq!(vf.balance(USER), 250);
}

#[tokio::test]
async fn delete_of_unknown_credit_is_rejected_404() {
    let vf = stand_in().await;
    let err = client(&vf)
        .remove_credit(CreditId(999_999))
        .await
        .unwrap_err();
    assert_eq!(err, VirtFusionError::Rejected { status: 404 });
    assert!(err.is_definitely_not_applied());
}

#[tokio::test]
async fn wrong_token_is_rejected_401_and_changes_nothing() {
    let vf = stand_in().await;
    vf.set_balance(USER, 10);
    let c = client_with(&vf.base_url(), "wrong-token", 300);
    let rejected = VirtFusionError::Rejected { status: 401 };
    assert_eq!(c.token_balance(USER).await, Err(rejected.clone()));
    assert_eq!(
        c.add_tokens(USER, Tokens::new(5), "o").await,
        Err(rejected.clone())
    );
    assert_eq!(c.remove_credit(CreditId(1001)).await, Err(rejected));
    assert_eq!(vf.balance(USER), 10);
    assert!(vf.credits().is_empty());
    assert_eq!(vf.request_count(), 3);
}

#[tokio::test]
async fn server_error_is_uncertain_and_times_counts_down() {
    let vf = stand_in().await;
    let c = client(&vf);
    vf.set_failure(FailureMode::Status(503), Some(2));
    let err = c
        .add_tokens(USER, Tokens::new(100), "order-5xx")
        .await
        .unwrap_err();
    assert_eq!(err, VirtFusionError::Uncertain);
    assert!(!err.is_definitely_not_applied());
    assert_eq!(c.token_balance(USER).await, Err(VirtFusionError::Uncertain));
    // Only the next two requests failed.
    c.add_tokens(USER, Tokens::new(100), "order-ok")
        .await
        .unwrap();
    assert_eq!(vf.balance(USER), 100);
}

#[tokio::test]
async fn client_errors_are_rejected() {
    let vf = stand_in().await;
    vf.set_failure(FailureMode::Status(422), Some(1));
    let err = client(&vf)
        .add_tokens(USER, Tokens::new(1), "o")
        .await
        .unwrap_err();
    assert_eq!(err, VirtFusionError::Rejected { status: 422 });
    assert!(vf.credits().is_empty());
}

#[tokio::test]
async fn unreadable_success_is_a_bad_response() {
    let vf = stand_in().await;
    vf.set_failure(FailureMode::Status(200), None);
    let c = client(&vf);
    assert!(matches!(
        c.add_tokens(USER, Tokens::new(1), "o").await,
        Err(VirtFusionError::BadResponse(_))
    ));
    assert!(matches!(
        c.token_balance(USER).await,
        Err(VirtFusionError::BadResponse(_))
    ));
}

#[tokio::test]
async fn hang_past_timeout_is_uncertain_and_applies_nothing() {
    let vf = stand_in().await;
    vf.set_failure(FailureMode::Hang, None);
    let started = Instant::now();
    let err = client(&vf)
        .add_tokens(USER, Tokens::new(100), "order-hang")
        .await
        .unwrap_err();
    assert_eq!(err, VirtFusionError::Uncertain);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(vf.credits().is_empty());
    assert_eq!(vf.balance(USER), 0);
}

#[tokio::test]
async fn apply_then_hang_is_uncertain_but_was_applied() {
    let vf = stand_in().await;
    vf.set_failure(FailureMode::ApplyThenHang, Some(1));
    let c = client(&vf);
    let err = c
        .add_tokens(USER, Tokens::new(700), "order-uncertain")
        .await
        .unwrap_err();
    assert_eq!(err, VirtFusionError::Uncertain);
    let credits = vf.credits();
    assert_eq!(credits.len(), 1);
    assert_eq!(credits[0].reference_2.as_deref(), Some("order-uncertain"));
    assert_eq!(vf.balance(USER), 700);
    // This is why an uncertain delivery is never retried blindly.
    assert_eq!(
        c.token_balance(USER).await.unwrap().whole(),
        Tokens::new(700)
    );
}

#[tokio::test]
async fn short_delay_is_fine() {
    let vf = stand_in().await;
    vf.set_failure(FailureMode::Delay(Duration::from_millis(50)), None);
    client(&vf)
        .add_tokens(USER, Tokens::new(3), "o")
        .await
        .unwrap();
    assert_eq!(vf.balance(USER), 3);
}

#[tokio::test]
async fn connection_refused_is_not_sent() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let c = client_with(&format!("http://127.0.0.1:{port}"), TOKEN, 300);
    let err = c.add_tokens(USER, Tokens::new(1), "o").await.unwrap_err();
    assert_eq!(err, VirtFusionError::NotSent);
    assert!(err.is_definitely_not_applied());
    assert_eq!(c.token_balance(USER).await, Err(VirtFusionError::NotSent));
}

#[tokio::test]
async fn stand_in_refusing_is_not_sent_then_recovers() {
    let vf = stand_in().await;
    let c = client(&vf);
    // A pooled keep-alive connection exists before the outage.
    c.token_balance(USER).await.unwrap();
    vf.set_failure(FailureMode::Refuse(None), None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        c.add_tokens(USER, Tokens::new(1), "o").await,
        Err(VirtFusionError::NotSent)
    );
    assert!(vf.credits().is_empty());

    vf.clear_failure();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match c.token_balance(USER).await {
            Ok(balance) => break assert_eq!(balance.whole(), Tokens::new(0)),
            Err(VirtFusionError::NotSent) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("stand-in did not come back: {e}"),
        }
    }
}

#[tokio::test]
async fn invalid_inputs_are_not_sent() {
    let vf = stand_in().await;
    let c = client(&vf);
    assert!(matches!(
        c.add_tokens(USER, Tokens::new(0), "o").await,
        Err(VirtFusionError::Invalid(_))
    ));
    assert!(matches!(
        c.token_balance("..").await,
        Err(VirtFusionError::Invalid(_))
    ));
    assert_eq!(vf.request_count(), 0);
}

#[tokio::test]
async fn odd_user_ids_stay_in_their_path_segment() {
    let vf = stand_in().await;
    let c = client(&vf);
    c.add_tokens("a/b c", Tokens::new(9), "o").await.unwrap();
    assert_eq!(vf.balance("a/b c"), 9);
}

#[tokio::test]
async fn control_api_over_http() {
    let vf = stand_in().await;
    let http = reqwest::Client::new();
    let control = |path: &str| format!("{}/_control/{path}", vf.base_url());

    let set = http
        .post(control("users/7/tokens"))
        .body(r#"{"tokens": 300}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(vf.balance("7"), 300);

    let fail = http
        .post(control("fail"))
        .body(r#"{"mode": "status", "status": 502, "times": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(fail.status(), 200);
    let c = client(&vf);
    assert_eq!(c.token_balance("7").await, Err(VirtFusionError::Uncertain));
    assert_eq!(
        c.token_balance("7").await.unwrap().whole(),
        Tokens::new(300)
    );

    let bad = http
        .post(control("fail"))
        .body(r#"{"mode": "explode"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let id = c
        .add_tokens("7", Tokens::new(5), "order-http")
        .await
        .unwrap();
    let state = http.get(control("state")).send().await.unwrap();
    assert_eq!(state.status(), 200);
    let state: serde_json::Value = serde_json::from_slice(&state.bytes().await.unwrap()).unwrap();
    assert_eq!(state["balances"]["7"], 305);
    assert_eq!(state["credits"][0]["id"], id.get());
    assert_eq!(state["credits"][0]["reference_2"], "order-http");
    assert_eq!(state["requestCount"], 3);
    assert_eq!(state["failure"]["mode"], "none");
}

/// SkyPANEL stores VirtFusion's URL with `/api/v1`; the client accepts it with or
/// without (never `/api/v1/api/v1`).
#[tokio::test]
async fn base_url_with_api_v1_works_too() {
    let vf = stand_in().await;
    vf.set_balance(USER, 5);
    for (added, base) in [
        vf.base_url(),
        format!("{}/api/v1", vf.base_url()),
        format!("{}/api/v1/", vf.base_url()),
    ]
    .into_iter()
    .enumerate()
    {
        let c = client_with(&base, TOKEN, 300);
        let expected = (5 + added).to_string();
        assert_eq!(
            c.token_balance(USER).await.unwrap().exact(),
            expected,
            "{base}"
        );
        c.add_tokens(USER, Tokens::new(1), "order-x").await.unwrap();
    }
    assert_eq!(vf.balance(USER), 8);
}
