//! `POST /v1/oauth2/token`: client-credentials tokens.

use super::server::run_op;
use super::shapes::{debug_id, now};
use super::{Answer, Operation, Shared};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

pub(super) async fn oauth_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.token_requests.fetch_add(1, Ordering::SeqCst);
    run_op(&shared, Operation::Token, move |shared| {
        let (client_id, client_secret) = shared.lock().credentials.clone().unwrap_or_else(|| {
            (
                shared.config.client_id.clone(),
                shared.config.client_secret.clone(),
            )
        });
        let expected = format!(
            "Basic {}",
            BASE64.encode(format!("{client_id}:{client_secret}"))
        );
        let authorized = headers
            .get(header::AUTHORIZATION)
            .is_some_and(|v| v.as_bytes() == expected.as_bytes());
        if !authorized {
            return (
                Answer::json(
                    StatusCode::UNAUTHORIZED,
                    &json!({"error": "invalid_client", "error_description": "Client Authentication failed"}),
                ),
                Vec::new(),
            );
        }
        let grant = std::str::from_utf8(&body)
            .ok()
            .is_some_and(|b| b.split('&').any(|kv| kv == "grant_type=client_credentials"));
        if !grant {
            return (
                Answer::json(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "unsupported_grant_type", "error_description": "Grant Type is NULL"}),
                ),
                Vec::new(),
            );
        }
        let token = format!(
            "A21AA{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut data = shared.lock();
        let ttl = data.token_ttl;
        let expires = Instant::now().checked_add(ttl).unwrap_or_else(Instant::now);
        data.tokens.insert(token.clone(), expires);
        (
            Answer::json(
                StatusCode::OK,
                &json!({
                    "scope": "https://uri.paypal.com/services/payments/payment https://uri.paypal.com/services/payments/refund",
                    "access_token": token,
                    "token_type": "Bearer",
                    "app_id": "APP-STANDIN0000001",
                    "expires_in": ttl.as_secs(),
                    "nonce": format!("{}{}", now(), debug_id()),
                }),
            ),
            Vec::new(),
        )
    })
    .await
}
