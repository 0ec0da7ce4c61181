//! Serving the PayPal stand-in: the router, the listener supervisor (for
//! refused connections) and the middleware every PayPal route goes through.

use super::control::{
    control_approve, control_capture_outcome, control_expire_tokens, control_fail, control_reset,
    control_reverse, control_settle, control_state, control_webhooks, control_webhooks_flush,
    control_webhooks_send,
};
use super::oauth::oauth_token;
use super::orders::{capture_order, checkout_now, create_order, get_order};
use super::payments::{get_capture, refund_capture};
use super::reporting;
use super::shapes::paypal_error;
use super::webhooks::{dispatch, verify_webhook};
use super::{Answer, Failure, MAX_HANG, Operation, Phase, Shared, SignedEvent};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    let token = Router::new()
        .route("/v1/oauth2/token", post(oauth_token))
        // PayPal serves signing certificates without auth.
        .route(
            "/v1/notifications/certs/{id}",
            get(super::signing::serve_certificate),
        );
    let api = Router::new()
        .route("/v2/checkout/orders", post(create_order))
        .route("/v2/checkout/orders/{id}", get(get_order))
        .route("/v2/checkout/orders/{id}/capture", post(capture_order))
        .route("/v2/payments/captures/{id}", get(get_capture))
        .route("/v2/payments/captures/{id}/refund", post(refund_capture))
        .route("/v1/reporting/transactions", get(reporting::search))
        .route(
            "/v1/notifications/verify-webhook-signature",
            post(verify_webhook),
        )
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            require_bearer,
        ));
    let counted = token
        .merge(api)
        .layer(middleware::from_fn_with_state(shared.clone(), count));
    let control = Router::new()
        .route("/_control/state", get(control_state))
        .route("/_control/fail", post(control_fail))
        .route("/_control/capture-outcome", post(control_capture_outcome))
        .route("/_control/orders/{id}/approve", post(control_approve))
        .route("/_control/captures/{id}/settle", post(control_settle))
        .route("/_control/captures/{id}/reverse", post(control_reverse))
        .route("/_control/webhooks", post(control_webhooks))
        .route("/_control/webhooks/send", post(control_webhooks_send))
        .route("/_control/webhooks/flush", post(control_webhooks_flush))
        .route("/_control/tokens/expire", post(control_expire_tokens))
        .route("/_control/reporting", post(reporting::control))
        .route("/_control/reset", post(control_reset));
    Router::new()
        .route("/", get(root))
        .route("/checkoutnow", get(checkout_now))
        .merge(counted)
        .merge(control)
        .with_state(shared)
}

pub(super) async fn count(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    next.run(request).await
}

pub(super) async fn require_bearer(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let valid = token.is_some_and(|token| {
        let mut data = shared.lock();
        match data.tokens.get(token) {
            Some(expires) if Instant::now() < *expires => true,
            Some(_) => {
                data.tokens.remove(token);
                false
            }
            None => false,
        }
    });
    if valid {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_token", "error_description": "Token signature verification failed"})),
        )
            .into_response()
    }
}

/// Runs `work` (synchronous, under the lock) unless `op` is switched to fail.
/// `work` answers and names the events to send automatically.
pub(super) async fn run_op(
    shared: &Arc<Shared>,
    op: Operation,
    work: impl FnOnce(&Arc<Shared>) -> (Answer, Vec<SignedEvent>),
) -> Response {
    match shared.take_failure(op) {
        None => finish(shared, work(shared)),
        Some(Failure::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            paypal_error(
                status,
                "INJECTED_FAILURE",
                "Failure injected by the stand-in.",
            )
            .into_response()
        }
        Some(Failure::Hang) => hang(shared).await,
        Some(Failure::ApplyThenHang) => {
            let _applied = finish(shared, work(shared));
            hang(shared).await
        }
        Some(Failure::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            finish(shared, work(shared))
        }
    }
}

pub(super) fn finish(
    shared: &Arc<Shared>,
    (answer, events): (Answer, Vec<SignedEvent>),
) -> Response {
    dispatch(shared, events);
    answer.into_response()
}

pub(super) async fn hang(shared: &Shared) -> Response {
    let mut phase = shared.phase.subscribe();
    let _ = tokio::time::timeout(MAX_HANG, async {
        let _ = phase.wait_for(|p| *p == Phase::Shutdown).await;
    })
    .await;
    paypal_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "SHUTTING_DOWN",
        "stand-in shutting down",
    )
    .into_response()
}

pub(super) fn wants_representation(headers: &HeaderMap) -> bool {
    headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("return=representation"))
}

pub(super) fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("paypal-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

// --------------------------------------------------------------- handlers

pub(super) async fn root(State(shared): State<Arc<Shared>>) -> Response {
    Json(json!({"service": "paypal-stand-in", "baseUrl": shared.base_url})).into_response()
}
