//! Payments v2 routes of the PayPal stand-in: get a capture, refund it;
//! settling a pending capture and reversals (chargebacks).

use super::after;
use super::server::{request_id, run_op, wants_representation};
use super::shapes::{
    bad_request, capture_json, minimal, not_found, now, parse_cents, paypal_id, refund_json,
    unprocessable,
};
use super::webhooks::dispatch;
use super::{
    Answer, CaptureOutcome, CaptureRecord, Data, EventType, Operation, RefundRecord, Shared,
};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;
use std::sync::Arc;

pub(super) async fn get_capture(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    run_op(&shared, Operation::GetOrder, move |shared| {
        let data = shared.lock();
        let answer = match data.book.captures.get(&id) {
            Some(capture) => Answer::json(
                StatusCode::OK,
                &capture_json(capture, &shared.base_url, true),
            ),
            None => not_found("capture_id"),
        };
        (answer, Vec::new())
    })
    .await
}

pub(super) async fn refund_capture(
    State(shared): State<Arc<Shared>>,
    Path(capture_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run_op(&shared, Operation::Refund, move |shared| {
        let full = wants_representation(&headers);
        let key = request_id(&headers).map(|id| format!("refund:{capture_id}:{id}"));
        let mut data = shared.lock();
        if let Some(replay) = key.as_ref().and_then(|k| data.book.replays.get(k)) {
            return (replay.clone(), Vec::new());
        }
        let (requested, note) = match parse_refund(&body) {
            Ok(parsed) => parsed,
            Err(answer) => return (answer, Vec::new()),
        };
        let Some(capture) = data.book.captures.get(&capture_id).cloned() else {
            return (not_found("capture_id"), Vec::new());
        };
        let remaining = capture.amount_cents - capture.refunded_cents;
        match capture.status.as_str() {
            "COMPLETED" | "PARTIALLY_REFUNDED" => {}
            "REFUNDED" => {
                return (
                    unprocessable(
                        "CAPTURE_FULLY_REFUNDED",
                        "The capture has already been fully refunded.",
                    ),
                    Vec::new(),
                );
            }
            _ => {
                return (
                    unprocessable(
                        "REFUND_NOT_ALLOWED",
                        "Refund cannot be issued against a capture that is not completed.",
                    ),
                    Vec::new(),
                );
            }
        }
        let amount = requested.unwrap_or(remaining);
        if amount > remaining {
            return (
                unprocessable(
                    "REFUND_AMOUNT_EXCEEDED",
                    "The refund amount must be less than or equal to the capture amount that has not yet been refunded.",
                ),
                Vec::new(),
            );
        }
        let refund_id = record_refund(&mut data, &capture, amount, note, false);
        let pending = after::take_pending(&mut data, &refund_id);
        let Some(refund) = data.book.refunds.get(&refund_id) else {
            return (not_found("refund_id"), Vec::new());
        };
        let resource = refund_json(refund, &shared.base_url);
        let answer = Answer::json(
            StatusCode::CREATED,
            &if full { resource } else { minimal(&resource) },
        );
        if let Some(key) = key {
            data.book.replays.insert(key, answer.clone());
        }
        let events = data
            .auto_webhooks
            .then(|| match pending {
                true => after::refund_event(shared, &data, "PAYMENT.REFUND.PENDING", &refund_id),
                false => shared.event_for(&data, EventType::CaptureRefunded, &refund_id),
            })
            .flatten()
            .into_iter()
            .collect();
        shared.save(&data);
        (answer, events)
    })
    .await
}

/// Records a refund (or reversal) of `amount` cents and moves the capture's
/// status; returns the refund id.
pub(super) fn record_refund(
    data: &mut Data,
    capture: &CaptureRecord,
    amount: i64,
    note: Option<String>,
    reversal: bool,
) -> String {
    let time = now();
    let seq = data.book.seq();
    let refund = RefundRecord {
        id: paypal_id(),
        capture_id: capture.id.clone(),
        amount_cents: amount,
        status: "COMPLETED".into(),
        reversal,
        note,
        custom_id: capture.custom_id.clone(),
        invoice_id: capture.invoice_id.clone(),
        create_time: time.clone(),
        seq,
    };
    let id = refund.id.clone();
    data.book.refunds.insert(id.clone(), refund);
    if let Some(stored) = data.book.captures.get_mut(&capture.id) {
        stored.refunded_cents += amount;
        stored.status = if stored.refunded_cents >= stored.amount_cents {
            "REFUNDED".into()
        } else {
            "PARTIALLY_REFUNDED".into()
        };
        stored.update_time = time;
    }
    id
}

pub(super) type RefundRequest = (Option<i64>, Option<String>);

pub(super) fn parse_refund(body: &[u8]) -> Result<RefundRequest, Answer> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((None, None));
    }
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return Err(bad_request(
            "MALFORMED_REQUEST_JSON",
            "The request JSON is not well formed.",
        ));
    };
    let note = match body.get("note_to_payer") {
        None | Some(Value::Null) => None,
        Some(Value::String(note)) if note.chars().count() <= 255 => Some(note.clone()),
        Some(_) => {
            return Err(bad_request(
                "INVALID_PARAMETER_VALUE",
                "note_to_payer must be a string of at most 255 characters.",
            ));
        }
    };
    let amount = match body.get("amount") {
        None | Some(Value::Null) => None,
        Some(amount) => {
            match amount.get("currency_code").and_then(Value::as_str) {
                Some("USD") => {}
                _ => {
                    return Err(unprocessable(
                        "CURRENCY_MISMATCH",
                        "Refund must be in the same currency as the capture (USD).",
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
            Some(cents)
        }
    };
    Ok((amount, note))
}

pub(super) fn settle_capture(
    shared: &Arc<Shared>,
    capture_id: &str,
    outcome: CaptureOutcome,
) -> bool {
    let mut data = shared.lock();
    let Some(capture) = data.book.captures.get_mut(capture_id) else {
        return false;
    };
    if capture.status != "PENDING" {
        return false;
    }
    let event_type = match outcome {
        CaptureOutcome::Completed | CaptureOutcome::Pending => {
            capture.status = "COMPLETED".into();
            EventType::CaptureCompleted
        }
        CaptureOutcome::Declined => {
            capture.status = "DECLINED".into();
            EventType::CaptureDenied
        }
    };
    capture.status_reason = None;
    capture.update_time = now();
    let event = data
        .auto_webhooks
        .then(|| shared.event_for(&data, event_type, capture_id))
        .flatten();
    shared.save(&data);
    drop(data);
    dispatch(shared, event.into_iter().collect());
    true
}

pub(super) fn reverse_capture(shared: &Arc<Shared>, capture_id: &str) -> Option<String> {
    let mut data = shared.lock();
    let capture = data.book.captures.get(capture_id).cloned()?;
    let remaining = capture.amount_cents - capture.refunded_cents;
    if remaining <= 0 || !matches!(capture.status.as_str(), "COMPLETED" | "PARTIALLY_REFUNDED") {
        return None;
    }
    let reversal_id = record_refund(
        &mut data,
        &capture,
        remaining,
        Some("Payment reversed".into()),
        true,
    );
    let event = data
        .auto_webhooks
        .then(|| shared.event_for(&data, EventType::CaptureReversed, &reversal_id))
        .flatten();
    shared.save(&data);
    drop(data);
    dispatch(shared, event.into_iter().collect());
    Some(reversal_id)
}
