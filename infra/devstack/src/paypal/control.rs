//! The control plane of the PayPal stand-in (`/_control/...`, no auth):
//! failure switches, capture outcomes, approving orders, settling and
//! reversing captures, webhook target and mode, token expiry, state, reset.

use super::handle::reset;
use super::orders::approve;
use super::payments::{reverse_capture, settle_capture};
use super::webhooks::{deliver, flush_held, resign};
use super::{
    CaptureOutcome, DEFAULT_HTTP_REFUSE, EventType, Failure, Operation, Shared, WebhookMode,
    outcome_name,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

pub(super) fn control_error(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

pub(super) fn json_body(body: &[u8]) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice::<Value>(body).map_err(|_| "body must be JSON".to_owned())
}

pub(super) fn optional_u64(body: &Value, field: &str) -> Result<Option<u64>, String> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("{field} must be a whole number")),
    }
}

pub(super) fn optional_times(body: &Value) -> Result<Option<u32>, String> {
    optional_u64(body, "times")?
        .map(|t| u32::try_from(t).map_err(|_| "times is too large".to_owned()))
        .transpose()
}

pub(super) async fn control_state(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.state_json()).into_response()
}

pub(super) async fn control_fail(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(message) => return control_error(&message),
    };
    let ms = match optional_u64(&body, "ms") {
        Ok(ms) => ms.map(Duration::from_millis),
        Err(message) => return control_error(&message),
    };
    let times = match optional_times(&body) {
        Ok(times) => times,
        Err(message) => return control_error(&message),
    };
    let ops: Vec<Operation> = match body.get("operation").and_then(Value::as_str) {
        None | Some("all") => Operation::ALL.to_vec(),
        Some(name) => match Operation::parse(name) {
            Some(op) => vec![op],
            None => {
                return control_error(
                    "operation must be token, create, get, capture, refund, verify or all",
                );
            }
        },
    };
    let failure = match body.get("mode").and_then(Value::as_str) {
        Some("none") => None,
        Some("status") => match optional_u64(&body, "status") {
            Ok(None) => Some(Failure::Status(503)),
            Ok(Some(status)) => match u16::try_from(status) {
                Ok(status) if (200..=599).contains(&status) => Some(Failure::Status(status)),
                _ => return control_error("status must be 200..599"),
            },
            Err(message) => return control_error(&message),
        },
        Some("hang") => Some(Failure::Hang),
        Some("apply_then_hang") => Some(Failure::ApplyThenHang),
        Some("delay") => match ms {
            Some(ms) => Some(Failure::Delay(ms)),
            None => return control_error("delay needs ms"),
        },
        Some("refuse") => {
            shared.refuse(Some(ms.unwrap_or(DEFAULT_HTTP_REFUSE)));
            return Json(json!({"refusing": true})).into_response();
        }
        _ => {
            return control_error(
                "mode must be none, status, hang, apply_then_hang, delay or refuse",
            );
        }
    };
    for op in ops {
        shared.set_failure(op, failure, times);
    }
    if failure.is_none() {
        shared.accept();
    }
    let state = shared.state_json();
    Json(json!({ "failures": state.get("failures") })).into_response()
}

pub(super) async fn control_capture_outcome(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Response {
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(message) => return control_error(&message),
    };
    let times = match optional_times(&body) {
        Ok(times) => times,
        Err(message) => return control_error(&message),
    };
    let outcome = match body.get("outcome").and_then(Value::as_str) {
        Some("completed") => CaptureOutcome::Completed,
        Some("pending") => CaptureOutcome::Pending,
        Some("declined") => CaptureOutcome::Declined,
        _ => return control_error("outcome must be completed, pending or declined"),
    };
    {
        let mut data = shared.lock();
        data.capture_outcome = outcome;
        data.capture_outcome_left = times;
    }
    Json(json!({"captureOutcome": outcome_name(outcome), "times": times})).into_response()
}

pub(super) async fn control_approve(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    if approve(&shared, &id) {
        Json(json!({"approved": id})).into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "unknown order"})),
        )
            .into_response()
    }
}

pub(super) async fn control_settle(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(message) => return control_error(&message),
    };
    let outcome = match body.get("outcome").and_then(Value::as_str) {
        None | Some("completed") => CaptureOutcome::Completed,
        Some("declined") => CaptureOutcome::Declined,
        _ => return control_error("outcome must be completed or declined"),
    };
    if settle_capture(&shared, &id, outcome) {
        Json(json!({"settled": id, "outcome": outcome_name(outcome)})).into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no pending capture with this id"})),
        )
            .into_response()
    }
}

pub(super) async fn control_reverse(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    match reverse_capture(&shared, &id) {
        Some(reversal_id) => Json(json!({"reversalId": reversal_id})).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no reversible capture with this id"})),
        )
            .into_response(),
    }
}

pub(super) async fn control_webhooks(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(message) => return control_error(&message),
    };
    let target = match body.get("target") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(url)) if url.starts_with("http://") || url.starts_with("https://") => {
            Some(Some(url.clone()))
        }
        Some(_) => return control_error("target must be an http(s) URL or null"),
    };
    let auto = match body.get("auto") {
        None => None,
        Some(Value::Bool(on)) => Some(*on),
        Some(_) => return control_error("auto must be true or false"),
    };
    let mode = match body.get("mode").and_then(Value::as_str) {
        None => None,
        Some("normal") => Some(WebhookMode::Normal),
        Some("duplicate") => Some(WebhookMode::Duplicate),
        Some("hold") => Some(WebhookMode::Hold),
        Some(_) => return control_error("mode must be normal, duplicate or hold"),
    };
    {
        let mut data = shared.lock();
        if let Some(target) = target {
            data.webhook_target = target;
        }
        if let Some(auto) = auto {
            data.auto_webhooks = auto;
        }
        if let Some(mode) = mode {
            data.webhook_mode = mode;
        }
    }
    let state = shared.state_json();
    Json(json!({ "webhooks": state.get("webhooks") })).into_response()
}

pub(super) async fn control_webhooks_send(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Response {
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(message) => return control_error(&message),
    };
    let Some(event_type) = body
        .get("eventType")
        .and_then(Value::as_str)
        .and_then(EventType::parse)
    else {
        return control_error("eventType must be one of the stand-in's event types");
    };
    let Some(id) = body.get("resourceId").and_then(Value::as_str) else {
        return control_error("resourceId is required");
    };
    let times = match optional_times(&body) {
        Ok(times) => times.unwrap_or(1).clamp(1, 10),
        Err(message) => return control_error(&message),
    };
    let event = {
        let data = shared.lock();
        shared.event_for(&data, event_type, id)
    };
    let Some(event) = event else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "unknown resource"})),
        )
            .into_response();
    };
    let mut statuses = Vec::new();
    for attempt in 0..times {
        let event = if attempt == 0 {
            event.clone()
        } else {
            resign(&shared, &event)
        };
        statuses.push(match deliver(&shared, &event).await {
            Ok(status) => json!(status),
            Err(error) => json!(error),
        });
    }
    Json(json!({"eventId": event.event_id, "eventType": event.event_type, "results": statuses}))
        .into_response()
}

pub(super) async fn control_webhooks_flush(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Response {
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(message) => return control_error(&message),
    };
    let reverse = body
        .get("reverse")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let deliveries = flush_held(&shared, reverse).await;
    Json(json!({ "deliveries": deliveries })).into_response()
}

pub(super) async fn control_expire_tokens(State(shared): State<Arc<Shared>>) -> Response {
    shared.lock().tokens.clear();
    Json(json!({"expired": true})).into_response()
}

pub(super) async fn control_reset(State(shared): State<Arc<Shared>>) -> Response {
    reset(&shared);
    Json(json!({ "reset": true })).into_response()
}
