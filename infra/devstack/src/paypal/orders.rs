//! Orders v2 routes of the PayPal stand-in: create, get, approve (the
//! buyer's `/checkoutnow` page or the control plane) and capture.

use super::server::{request_id, run_op, wants_representation};
use super::shapes::{
    bad_request, minimal, not_found, now, order_json, parse_cents, paypal_error, paypal_id,
    unprocessable,
};
use super::webhooks::dispatch;
use super::{
    Answer, CaptureOutcome, CaptureRecord, EventType, MAX_TEXT_CHARS, Operation, OrderRecord,
    Shared,
};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

pub(super) fn text_field(unit: &Value, field: &str) -> Result<Option<String>, Answer> {
    match unit.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.chars().count() <= MAX_TEXT_CHARS => {
            Ok(Some(text.clone()))
        }
        Some(Value::String(_)) => Err(bad_request(
            "INVALID_STRING_MAX_LENGTH",
            &format!("{field} is too long."),
        )),
        Some(_) => Err(bad_request(
            "INVALID_PARAMETER_SYNTAX",
            &format!("{field} must be a string."),
        )),
    }
}

pub(super) async fn create_order(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run_op(&shared, Operation::CreateOrder, move |shared| {
        let full = wants_representation(&headers);
        let key = request_id(&headers).map(|id| format!("create:{id}"));
        let mut data = shared.lock();
        if let Some(replay) = key.as_ref().and_then(|k| data.book.replays.get(k)) {
            return (replay.clone(), Vec::new());
        }
        let order = match parse_create(&body) {
            Ok(order) => order,
            Err(answer) => return (answer, Vec::new()),
        };
        let (amount_cents, custom_id, invoice_id, description, payer_action) = order;
        let seq = data.book.seq();
        let time = now();
        let record = OrderRecord {
            id: paypal_id(),
            status: if payer_action {
                "PAYER_ACTION_REQUIRED".into()
            } else {
                "CREATED".into()
            },
            amount_cents,
            custom_id,
            invoice_id,
            description,
            payer_action,
            capture_ids: Vec::new(),
            create_time: time.clone(),
            update_time: time,
            seq,
        };
        let resource = order_json(&data.book, &record, &shared.base_url, true);
        let answer = Answer::json(
            StatusCode::CREATED,
            &if full { resource } else { minimal(&resource) },
        );
        data.book.orders.insert(record.id.clone(), record);
        if let Some(key) = key {
            data.book.replays.insert(key, answer.clone());
        }
        shared.save(&data);
        (answer, Vec::new())
    })
    .await
}

pub(super) type NewOrder = (i64, Option<String>, Option<String>, Option<String>, bool);

pub(super) fn parse_create(body: &[u8]) -> Result<NewOrder, Answer> {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return Err(bad_request(
            "MALFORMED_REQUEST_JSON",
            "The request JSON is not well formed.",
        ));
    };
    if body.get("intent").and_then(Value::as_str) != Some("CAPTURE") {
        return Err(bad_request(
            "INVALID_PARAMETER_VALUE",
            "intent must be CAPTURE (the stand-in supports only CAPTURE).",
        ));
    }
    let units = body
        .get("purchase_units")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let [unit] = units else {
        return Err(bad_request(
            "INVALID_ARRAY_LENGTH",
            "Exactly one purchase unit is supported by the stand-in.",
        ));
    };
    let amount = unit.get("amount").unwrap_or(&Value::Null);
    match amount.get("currency_code").and_then(Value::as_str) {
        Some("USD") => {}
        Some(_) => {
            return Err(unprocessable(
                "CURRENCY_NOT_SUPPORTED",
                "Currency code is not supported by the stand-in (USD only).",
            ));
        }
        None => {
            return Err(bad_request(
                "MISSING_REQUIRED_PARAMETER",
                "amount.currency_code is required.",
            ));
        }
    }
    let Some(cents) = amount
        .get("value")
        .and_then(Value::as_str)
        .and_then(parse_cents)
    else {
        return Err(bad_request(
            "INVALID_PARAMETER_VALUE",
            "amount.value must be a positive decimal string with at most two places.",
        ));
    };
    let custom_id = text_field(unit, "custom_id")?;
    let invoice_id = text_field(unit, "invoice_id")?;
    let description = text_field(unit, "description")?;
    let payer_action = body
        .get("payment_source")
        .and_then(|s| s.get("paypal"))
        .and_then(|p| p.get("experience_context"))
        .is_some();
    Ok((cents, custom_id, invoice_id, description, payer_action))
}

pub(super) async fn get_order(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    run_op(&shared, Operation::GetOrder, move |shared| {
        let data = shared.lock();
        let answer = match data.book.orders.get(&id) {
            Some(order) => Answer::json(
                StatusCode::OK,
                &order_json(&data.book, order, &shared.base_url, true),
            ),
            None => not_found("order_id"),
        };
        (answer, Vec::new())
    })
    .await
}

pub(super) fn approve(shared: &Arc<Shared>, order_id: &str) -> bool {
    let mut data = shared.lock();
    let Some(order) = data.book.orders.get_mut(order_id) else {
        return false;
    };
    if !matches!(order.status.as_str(), "CREATED" | "PAYER_ACTION_REQUIRED") {
        return true;
    }
    order.status = "APPROVED".into();
    order.update_time = now();
    let event = data
        .auto_webhooks
        .then(|| shared.event_for(&data, EventType::OrderApproved, order_id))
        .flatten();
    shared.save(&data);
    drop(data);
    dispatch(shared, event.into_iter().collect());
    true
}

#[derive(Deserialize)]
pub(super) struct CheckoutQuery {
    token: Option<String>,
}

pub(super) async fn checkout_now(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<CheckoutQuery>,
) -> Response {
    let Some(order_id) = query.token else {
        return (StatusCode::BAD_REQUEST, "token is required").into_response();
    };
    if approve(&shared, &order_id) {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!doctype html><title>PayPal stand-in</title><p>Payment approved. You can close this page.</p>",
        )
            .into_response()
    } else {
        (StatusCode::NOT_FOUND, "unknown order").into_response()
    }
}

pub(super) async fn capture_order(
    State(shared): State<Arc<Shared>>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    // One request per PayPal-Request-Id at a time (behaviours.rs).
    let in_flight = request_id(&headers).map(|id| format!("capture:{order_id}:{id}"));
    let _in_flight = match in_flight.as_deref().map(|key| shared.in_flight.begin(key)) {
        Some(None) => {
            return paypal_error(
                StatusCode::CONFLICT,
                "PREVIOUS_REQUEST_IN_PROGRESS",
                "A previous request on this resource is currently in progress. Please wait for some time and try again.",
            )
            .into_response();
        }
        Some(Some(guard)) => Some(guard),
        None => None,
    };
    let processing = shared.in_flight.processing_time();
    let response = capture_now(&shared, order_id, headers).await;
    if !processing.is_zero() {
        tokio::time::sleep(processing).await;
    }
    response
}

pub(super) async fn capture_now(
    shared: &Arc<Shared>,
    order_id: String,
    headers: HeaderMap,
) -> Response {
    run_op(shared, Operation::CaptureOrder, move |shared| {
        let full = wants_representation(&headers);
        let key = request_id(&headers).map(|id| format!("capture:{order_id}:{id}"));
        let mut data = shared.lock();
        if let Some(replay) = key.as_ref().and_then(|k| data.book.replays.get(k)) {
            return (replay.clone(), Vec::new());
        }
        let Some(order) = data.book.orders.get(&order_id).cloned() else {
            return (not_found("order_id"), Vec::new());
        };
        match order.status.as_str() {
            "APPROVED" => {}
            "COMPLETED" => {
                return (
                    unprocessable(
                        "ORDER_ALREADY_CAPTURED",
                        "Order already captured. If 'intent=CAPTURE' only one capture per order is allowed.",
                    ),
                    Vec::new(),
                );
            }
            _ => {
                return (
                    unprocessable(
                        "ORDER_NOT_APPROVED",
                        "Payer has not yet approved the Order for payment.",
                    ),
                    Vec::new(),
                );
            }
        }
        if let Some(invoice_id) = &order.invoice_id {
            let duplicate = data.book.captures.values().any(|c| {
                c.order_id != order.id
                    && c.invoice_id.as_ref() == Some(invoice_id)
                    && c.status != "DECLINED"
            });
            if duplicate {
                return (
                    unprocessable(
                        "DUPLICATE_INVOICE_ID",
                        "Duplicate Invoice ID detected. To avoid a potential duplicate transaction your account setting requires that Invoice Id be unique for each transaction.",
                    ),
                    Vec::new(),
                );
            }
        }
        if let Some(decline) = data.declines.take() {
            // The buyer must approve again; PayPal may replay this 422 to
            // the same request id.
            let answer = unprocessable(decline.issue(), decline.description());
            if let Some(stored) = data.book.orders.get_mut(&order.id) {
                stored.status = if stored.payer_action {
                    "PAYER_ACTION_REQUIRED".into()
                } else {
                    "CREATED".into()
                };
                stored.update_time = now();
            }
            if let Some(key) = key {
                data.book.replays.insert(key, answer.clone());
            }
            shared.save(&data);
            return (answer, Vec::new());
        }
        let outcome = Shared::take_capture_outcome(&mut data);
        let (status, reason, event_type) = match outcome {
            CaptureOutcome::Completed => ("COMPLETED", None, EventType::CaptureCompleted),
            CaptureOutcome::Pending => (
                "PENDING",
                Some("PENDING_REVIEW".to_owned()),
                EventType::CapturePending,
            ),
            CaptureOutcome::Declined => ("DECLINED", None, EventType::CaptureDenied),
        };
        let time = now();
        let seq = data.book.seq();
        let capture = CaptureRecord {
            id: paypal_id(),
            order_id: order.id.clone(),
            status: status.into(),
            status_reason: reason,
            amount_cents: order.amount_cents,
            refunded_cents: 0,
            custom_id: order.custom_id.clone(),
            invoice_id: order.invoice_id.clone(),
            create_time: time.clone(),
            update_time: time.clone(),
            seq,
        };
        let capture_id = capture.id.clone();
        data.book.captures.insert(capture_id.clone(), capture);
        let Some(stored) = data.book.orders.get_mut(&order.id) else {
            return (not_found("order_id"), Vec::new());
        };
        stored.status = "COMPLETED".into();
        stored.update_time = time;
        stored.capture_ids.push(capture_id.clone());
        let Some(stored) = data.book.orders.get(&order.id) else {
            return (not_found("order_id"), Vec::new());
        };
        let resource = order_json(&data.book, stored, &shared.base_url, true);
        let answer = Answer::json(
            StatusCode::CREATED,
            &if full { resource } else { minimal(&resource) },
        );
        if let Some(key) = key {
            data.book.replays.insert(key, answer.clone());
        }
        let events = data
            .auto_webhooks
            .then(|| shared.event_for(&data, event_type, &capture_id))
            .flatten()
            .into_iter()
            .collect();
        shared.save(&data);
        (answer, events)
    })
    .await
}
