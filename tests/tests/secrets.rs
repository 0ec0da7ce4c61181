//! Secrets Manager over HTTP (moto_server, `MOTO_ENDPOINT`): secrets are
//! read through the real `Secrets` code path, cached for their TTL, and read
//! again when PayPal or VirtFusion refuses them (401), so a rotated secret
//! is picked up without a redeploy. The stand-ins play the rotation: once
//! rotated they accept only the new credentials.

use billing_config::{SecretError, SecretValue, Secrets};
use billing_money::Tokens;
use devstack::paypal::PayPalStandIn;
use devstack::virtfusion::VirtFusionStandIn;
use integration_tests::events::moto_endpoint;
use paypal::{CLIENT_ID_SECRET, CLIENT_SECRET_SECRET, PayPalClient, PayPalError};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use virtfusion::{API_TOKEN_SECRET, VirtFusionClient, VirtFusionError};

/// A JSON secret created in moto; (client, its ARN).
async fn secret(value: Value) -> (aws_sdk_secretsmanager::Client, String) {
    let sdk = billing_config::load_aws_config().await;
    let client = billing_config::secrets_manager_client(&sdk, Some(moto_endpoint()));
    let name = format!("billing-test/{}", uuid::Uuid::new_v4().simple());
    let created = client
        .create_secret()
        .name(name)
        .secret_string(value.to_string())
        .send()
        .await
        .expect("secret created in moto");
    (client, created.arn().expect("arn").to_owned())
}

/// A Secrets Manager client as the functions reading these secrets have it
/// (`reconcile-cron` reads PayPal's and VirtFusion's): its own credentials,
/// through local IAM in front of moto (keep the proxy while reading).
async fn reader() -> (
    aws_sdk_secretsmanager::Client,
    devstack::faultproxy::FaultProxy,
) {
    let iam = integration_tests::events::moto_iam_proxy().await;
    let sdk = integration_tests::events::function_sdk("reconcile-cron").await;
    let client = billing_config::secrets_manager_client(&sdk, Some(iam.endpoint()));
    (client, iam)
}

/// A new version of the secret (what a rotation writes).
async fn rotate(client: &aws_sdk_secretsmanager::Client, arn: &str, value: Value) {
    client
        .put_secret_value()
        .secret_id(arn)
        .secret_string(value.to_string())
        .send()
        .await
        .expect("secret rotated in moto");
}

fn paypal_secret(client_secret: &str) -> Value {
    json!({"clientId": "app-1", "clientSecret": client_secret, "webhookId": "WH-1"})
}

fn order(id: &str) -> paypal::CreateOrder {
    paypal::CreateOrder {
        amount: "5.00".parse().unwrap(),
        custom_id: "42".into(),
        invoice_id: format!("inv-{id}"),
        description: "test".into(),
        request_id: format!("req-{id}"),
        return_url: None,
        cancel_url: None,
    }
}

#[tokio::test]
async fn a_secret_is_cached_for_its_ttl_and_read_again_when_refused() {
    let (sm, arn) = secret(paypal_secret("old")).await;
    let (reads, _iam) = reader().await;
    let secrets = Secrets::new()
        .with_client(reads.clone())
        .with_arn("PAYPAL_SECRET_ARN", &arn)
        .in_lambda(true);
    let old = secrets.resolve(CLIENT_SECRET_SECRET).await.unwrap();
    assert_eq!(old.expose(), "old");
    assert_eq!(
        secrets.resolve(CLIENT_ID_SECRET).await.unwrap().expose(),
        "app-1"
    );

    rotate(&sm, &arn, paypal_secret("new")).await;
    // Within the TTL the cached value is used...
    assert_eq!(
        secrets
            .resolve(CLIENT_SECRET_SECRET)
            .await
            .unwrap()
            .expose(),
        "old"
    );
    // ...until an upstream refuses it: then it is read again, once.
    let fresh = secrets.reread(CLIENT_SECRET_SECRET, &old).await.unwrap();
    assert_eq!(fresh.expose(), "new");
    let again = secrets.reread(CLIENT_SECRET_SECRET, &old).await.unwrap();
    assert_eq!(again, fresh, "a later caller gets the value read already");
    assert_eq!(
        secrets
            .resolve(CLIENT_SECRET_SECRET)
            .await
            .unwrap()
            .expose(),
        "new"
    );

    // A TTL that has passed reads the secret again by itself.
    let short = Secrets::new()
        .with_client(reads.clone())
        .with_arn("PAYPAL_SECRET_ARN", &arn)
        .with_ttl(Duration::ZERO);
    rotate(&sm, &arn, paypal_secret("newer")).await;
    assert_eq!(
        short.resolve(CLIENT_SECRET_SECRET).await.unwrap().expose(),
        "newer"
    );

    // A secret that lacks the field, and one that does not exist, are errors.
    let (_, other) = secret(json!({"clientId": "x"})).await;
    let (reads, _iam) = reader().await;
    let partial = Secrets::new()
        .with_client(reads.clone())
        .with_arn("PAYPAL_SECRET_ARN", other);
    assert!(matches!(
        partial.resolve(CLIENT_SECRET_SECRET).await,
        Err(SecretError::Field { .. })
    ));
    let missing = Secrets::new()
        .with_client(reads.clone())
        .with_arn("PAYPAL_SECRET_ARN", format!("{arn}-gone"));
    assert!(matches!(
        missing.resolve(CLIENT_SECRET_SECRET).await,
        Err(SecretError::Fetch { .. })
    ));
}

#[tokio::test]
async fn a_rotated_paypal_secret_is_picked_up_at_its_first_401() {
    let stand_in = PayPalStandIn::spawn("127.0.0.1:0".parse().unwrap(), "app-1", "old", "WH-1")
        .await
        .unwrap();
    let (sm, arn) = secret(paypal_secret("old")).await;
    let (reads, _iam) = reader().await;
    let secrets = Arc::new(
        Secrets::new()
            .with_client(reads.clone())
            .with_arn("PAYPAL_SECRET_ARN", &arn)
            .in_lambda(true),
    );
    let timeout = Duration::from_secs(5);
    let client = PayPalClient::from_secrets(&stand_in.base_url(), timeout, &secrets)
        .await
        .unwrap();
    assert_eq!(client.webhook_id(), Some("WH-1"));
    let created = client.create_order(&order("1")).await.unwrap();
    // A client that cannot read its secret again: what a redeploy used to fix.
    let pinned = PayPalClient::new(
        &stand_in.base_url(),
        SecretValue::new("app-1"),
        SecretValue::new("old"),
        timeout,
    )
    .unwrap();
    pinned.get_order(&created.id).await.unwrap();

    // The operator rotates the app's secret at PayPal and in Secrets Manager;
    // the access tokens issued before expire.
    stand_in.rotate_credentials("app-1", "new");
    rotate(&sm, &arn, paypal_secret("new")).await;
    stand_in.expire_tokens();
    let tokens_before = stand_in.token_request_count();
    assert_eq!(
        pinned.get_order(&created.id).await.unwrap_err(),
        PayPalError::Auth
    );
    // The first call after it: token refused (401) → secret read again →
    // token with the new secret → the call goes through.
    let read = client.get_order(&created.id).await.unwrap();
    assert_eq!(read.id, created.id);
    assert_eq!(
        secrets
            .resolve(CLIENT_SECRET_SECRET)
            .await
            .unwrap()
            .expose(),
        "new"
    );
    // pinned: one token request refused; client: refused, then granted.
    assert_eq!(stand_in.token_request_count() - tokens_before, 1 + 2);
    // Later calls use the new credentials and token directly.
    client.create_order(&order("2")).await.unwrap();
    assert_eq!(stand_in.token_request_count() - tokens_before, 3);

    // PayPal refuses credentials the secret still holds: one more read, no
    // loop, a clear Auth error.
    stand_in.rotate_credentials("app-1", "newest");
    stand_in.expire_tokens();
    assert_eq!(
        client.get_order(&created.id).await.unwrap_err(),
        PayPalError::Auth
    );
}

#[tokio::test]
async fn a_rotated_virtfusion_token_is_picked_up_at_its_first_401() {
    let stand_in = VirtFusionStandIn::spawn("127.0.0.1:0".parse().unwrap(), "vf-old")
        .await
        .unwrap();
    let value = |token: &str| json!({"baseUrl": stand_in.base_url(), "apiToken": token});
    let (sm, arn) = secret(value("vf-old")).await;
    let (reads, _iam) = reader().await;
    let secrets = Arc::new(
        Secrets::new()
            .with_client(reads.clone())
            .with_arn("VIRTFUSION_SECRET_ARN", &arn)
            .in_lambda(true),
    );
    let client = VirtFusionClient::from_secrets(&secrets, Duration::from_secs(2))
        .await
        .unwrap();
    client
        .add_tokens("42", Tokens::new(100), "ref-1")
        .await
        .unwrap();
    let pinned = VirtFusionClient::new(
        &stand_in.base_url(),
        SecretValue::new("vf-old"),
        Duration::from_secs(2),
    )
    .unwrap();

    stand_in.rotate_api_token("vf-new");
    rotate(&sm, &arn, value("vf-new")).await;
    assert_eq!(
        pinned.token_balance("42").await.unwrap_err(),
        VirtFusionError::Rejected { status: 401 }
    );
    // A credit refused with 401 was not applied: sent once more with the new
    // token, it is applied exactly once.
    client
        .add_tokens("42", Tokens::new(50), "ref-2")
        .await
        .unwrap();
    assert_eq!(
        client.token_balance("42").await.unwrap().whole(),
        Tokens::new(150)
    );
    assert_eq!(stand_in.balance("42"), 150);
    assert_eq!(
        secrets.resolve(API_TOKEN_SECRET).await.unwrap().expose(),
        "vf-new"
    );
}

/// A plain-string secret created in moto (the JWT signing key); (client, its ARN).
async fn plain_secret(value: &str) -> (aws_sdk_secretsmanager::Client, String) {
    let sdk = billing_config::load_aws_config().await;
    let client = billing_config::secrets_manager_client(&sdk, Some(moto_endpoint()));
    let created = client
        .create_secret()
        .name(format!(
            "billing-test/jwt-{}",
            uuid::Uuid::new_v4().simple()
        ))
        .secret_string(value)
        .send()
        .await
        .expect("secret created in moto");
    (client, created.arn().expect("arn").to_owned())
}

/// A new version of a plain-string secret: AWSCURRENT moves to it, the
/// version it replaces becomes AWSPREVIOUS (what a rotation does).
async fn rotate_plain(client: &aws_sdk_secretsmanager::Client, arn: &str, value: &str) {
    client
        .put_secret_value()
        .secret_id(arn)
        .secret_string(value)
        .send()
        .await
        .expect("secret rotated in moto");
}

/// A request carrying a user token signed with `key`.
fn signed_request(key: &str) -> billing_http::Request {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = billing_http::jwt::sign(
        &billing_http::jwt::Claims {
            sub: "1001".into(),
            roles: vec![],
            exp: now + 600,
            nbf: None,
            iat: None,
        },
        key.as_bytes(),
    );
    lambda_http::http::Request::builder()
        .header("authorization", format!("Bearer {token}"))
        .body(billing_http::Body::Empty)
        .expect("request")
}

/// A rotation of the JWT signing key logs nobody out: while the cache
/// still holds the old key, a token signed with the new one is accepted
/// (the secret is read again, at most once per interval); once the new key
/// is cached, tokens signed with the old one (`AWSPREVIOUS`) still pass
/// until the next rotation retires it.
#[tokio::test]
async fn a_jwt_key_rotation_logs_nobody_out() {
    let (sm, arn) = plain_secret("jwt-key-1").await;
    let secrets = Arc::new(
        Secrets::new()
            .with_client(sm.clone())
            .with_arn("JWT_SECRET_ARN", &arn)
            .in_lambda(true),
    );
    // Here the key may be read again at each unknown signature (in AWS at
    // most every 30 s per instance).
    let auth = billing_http::Auth::new(secrets.clone()).with_key_refresh_interval(Duration::ZERO);
    assert!(auth.caller(&signed_request("jwt-key-1")).await.is_ok());
    assert!(auth.caller(&signed_request("jwt-key-2")).await.is_err());

    // The issuer starts signing with key 2 before this cache expires.
    rotate_plain(&sm, &arn, "jwt-key-2").await;
    let caller = auth.caller(&signed_request("jwt-key-2")).await.unwrap();
    assert_eq!(caller.user.as_str(), "1001");
    // Tokens issued before the rotation (key 1, now AWSPREVIOUS) still pass.
    assert!(auth.caller(&signed_request("jwt-key-1")).await.is_ok());
    // A forged token is still refused (and reads nothing more).
    assert!(auth.caller(&signed_request("not-a-key")).await.is_err());

    // A fresh cold start after the rotation: both versions accepted.
    let cold = billing_http::Auth::new(Arc::new(
        Secrets::new()
            .with_client(sm.clone())
            .with_arn("JWT_SECRET_ARN", &arn)
            .in_lambda(true),
    ));
    assert!(cold.caller(&signed_request("jwt-key-2")).await.is_ok());
    assert!(cold.caller(&signed_request("jwt-key-1")).await.is_ok());

    // Within the refresh interval an unknown signature reads nothing:
    // forged tokens cannot drive Secrets Manager calls.
    let throttled = billing_http::Auth::new(Arc::new(
        Secrets::new()
            .with_client(sm.clone())
            .with_arn("JWT_SECRET_ARN", &arn)
            .in_lambda(true),
    ));
    assert!(throttled.caller(&signed_request("jwt-key-2")).await.is_ok());
    // The next rotation retires key 1.
    rotate_plain(&sm, &arn, "jwt-key-3").await;
    assert!(
        throttled
            .caller(&signed_request("jwt-key-3"))
            .await
            .is_err()
    );
    assert!(throttled.caller(&signed_request("jwt-key-2")).await.is_ok());
    let later = billing_http::Auth::new(Arc::new(
        Secrets::new()
            .with_client(sm)
            .with_arn("JWT_SECRET_ARN", &arn)
            .in_lambda(true),
    ));
    assert!(later.caller(&signed_request("jwt-key-3")).await.is_ok());
    assert!(later.caller(&signed_request("jwt-key-2")).await.is_ok());
    assert!(later.caller(&signed_request("jwt-key-1")).await.is_err());
}

/// Secrets Manager failing after the TTL (here: the secret is gone) does
/// not turn every request into a 500: the cached value serves for a
/// bounded grace, then the failure shows.
#[tokio::test]
async fn a_failed_refresh_serves_the_cached_secret_for_a_bounded_grace() {
    let (sm, arn) = plain_secret("jwt-key-1").await;
    let secrets = Secrets::new()
        .with_client(sm.clone())
        .with_arn("JWT_SECRET_ARN", &arn)
        .with_ttl(Duration::ZERO)
        .in_lambda(true);
    let auth = billing_http::Auth::new(Arc::new(
        Secrets::new()
            .with_client(sm.clone())
            .with_arn("JWT_SECRET_ARN", &arn)
            .with_ttl(Duration::ZERO)
            .in_lambda(true),
    ));
    assert_eq!(
        secrets
            .resolve(billing_http::JWT_SECRET)
            .await
            .unwrap()
            .expose(),
        "jwt-key-1"
    );
    assert!(auth.caller(&signed_request("jwt-key-1")).await.is_ok());
    sm.delete_secret()
        .secret_id(&arn)
        .force_delete_without_recovery(true)
        .send()
        .await
        .expect("secret deleted in moto");
    // The TTL has passed (zero) and the refresh fails: the cached value serves.
    for _ in 0..3 {
        assert_eq!(
            secrets
                .resolve(billing_http::JWT_SECRET)
                .await
                .unwrap()
                .expose(),
            "jwt-key-1"
        );
    }
    assert!(auth.caller(&signed_request("jwt-key-1")).await.is_ok());
    // Forged tokens during the outage ask for the key again: they stay
    // 401, and the cached key keeps serving genuine ones.
    let (sm_live, arn_live) = plain_secret("jwt-key-1").await;
    let forgers = billing_http::Auth::new(Arc::new(
        Secrets::new()
            .with_client(sm_live.clone())
            .with_arn("JWT_SECRET_ARN", &arn_live)
            .in_lambda(true),
    ))
    .with_key_refresh_interval(Duration::ZERO);
    assert!(forgers.caller(&signed_request("jwt-key-1")).await.is_ok());
    sm_live
        .delete_secret()
        .secret_id(&arn_live)
        .force_delete_without_recovery(true)
        .send()
        .await
        .expect("secret deleted in moto");
    for _ in 0..3 {
        let forged = forgers
            .caller(&signed_request("not-a-key"))
            .await
            .unwrap_err();
        assert_eq!(forged.status, 401, "{forged:?}");
        assert!(forgers.caller(&signed_request("jwt-key-1")).await.is_ok());
    }

    // The grace is bounded: past it the failure shows (a 500 on the route).
    let (sm, arn) = plain_secret("jwt-key-1").await;
    let bounded = Secrets::new()
        .with_client(sm.clone())
        .with_arn("JWT_SECRET_ARN", &arn)
        .with_ttl(Duration::ZERO)
        .with_stale_grace(Duration::from_millis(200))
        .in_lambda(true);
    bounded.resolve(billing_http::JWT_SECRET).await.unwrap();
    sm.delete_secret()
        .secret_id(&arn)
        .force_delete_without_recovery(true)
        .send()
        .await
        .expect("secret deleted in moto");
    assert!(bounded.resolve(billing_http::JWT_SECRET).await.is_ok());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(matches!(
        bounded.resolve(billing_http::JWT_SECRET).await,
        Err(SecretError::Fetch { .. })
    ));
}
