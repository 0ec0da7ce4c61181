//! JSON shapes of the PayPal stand-in: amounts, orders, captures, refunds,
//! PayPal's error bodies, ids and times.

use super::{Answer, Book, CaptureRecord, MAX_AMOUNT_CENTS, OrderRecord, RefundRecord};
use axum::http::StatusCode;
use serde_json::{Value, json};

pub(super) fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// A positive amount `0|[1-9][0-9]*` with an optional `.d` or `.dd`, in cents.
pub(super) fn parse_cents(text: &str) -> Option<i64> {
    let (integer, fraction) = match text.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (text, None),
    };
    if integer.is_empty()
        || integer.len() > 10
        || !integer.bytes().all(|b| b.is_ascii_digit())
        || (integer.len() > 1 && integer.starts_with('0'))
    {
        return None;
    }
    let fraction = match fraction {
        None => "",
        Some(f) if (1..=2).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => f,
        Some(_) => return None,
    };
    let mut cents: i64 = 0;
    for digit in integer.bytes().chain(fraction.bytes()) {
        cents = cents
            .checked_mul(10)?
            .checked_add(i64::from(digit - b'0'))?;
    }
    for _ in fraction.len()..2 {
        cents = cents.checked_mul(10)?;
    }
    (cents > 0 && cents <= MAX_AMOUNT_CENTS).then_some(cents)
}

pub(super) fn amount_json(cents: i64) -> Value {
    json!({"currency_code": "USD", "value": money(cents)})
}

pub(super) fn order_json(book: &Book, order: &OrderRecord, base: &str, full: bool) -> Value {
    let self_link = format!("{base}/v2/checkout/orders/{}", order.id);
    let mut links = vec![json!({"href": self_link, "rel": "self", "method": "GET"})];
    match order.status.as_str() {
        "CREATED" | "PAYER_ACTION_REQUIRED" => {
            let rel = if order.payer_action {
                "payer-action"
            } else {
                "approve"
            };
            links.push(json!({"href": format!("{base}/checkoutnow?token={}", order.id), "rel": rel, "method": "GET"}));
            links.push(json!({"href": self_link, "rel": "update", "method": "PATCH"}));
            links.push(
                json!({"href": format!("{self_link}/capture"), "rel": "capture", "method": "POST"}),
            );
        }
        "APPROVED" => {
            links.push(json!({"href": self_link, "rel": "update", "method": "PATCH"}));
            links.push(
                json!({"href": format!("{self_link}/capture"), "rel": "capture", "method": "POST"}),
            );
        }
        _ => {}
    }
    if !full {
        return json!({"id": order.id, "status": order.status, "links": links});
    }
    let mut unit = json!({
        "reference_id": "default",
        "amount": amount_json(order.amount_cents),
        "payee": {"email_address": "merchant@example.com", "merchant_id": "STANDINMERCHANT1"},
    });
    if let Some(description) = &order.description {
        unit["description"] = json!(description);
    }
    if let Some(custom_id) = &order.custom_id {
        unit["custom_id"] = json!(custom_id);
    }
    if let Some(invoice_id) = &order.invoice_id {
        unit["invoice_id"] = json!(invoice_id);
    }
    let captures: Vec<Value> = order
        .capture_ids
        .iter()
        .filter_map(|id| book.captures.get(id))
        .map(|capture| capture_json(capture, base, false))
        .collect();
    if !captures.is_empty() {
        unit["payments"] = json!({ "captures": captures });
    }
    let mut out = json!({
        "id": order.id,
        "intent": "CAPTURE",
        "status": order.status,
        "purchase_units": [unit],
        "create_time": order.create_time,
        "update_time": order.update_time,
        "links": links,
    });
    if matches!(order.status.as_str(), "APPROVED" | "COMPLETED") {
        // Payer data, as PayPal sends it: a client must never log it.
        out["payer"] = json!({
            "name": {"given_name": "Stand", "surname": "In"},
            "email_address": "buyer@example.com",
            "payer_id": "STANDINBUYER0001",
            "address": {"country_code": "US"},
        });
        out["payment_source"] = json!({"paypal": {
            "email_address": "buyer@example.com",
            "account_id": "STANDINBUYER0001",
            "account_status": "VERIFIED",
            "name": {"given_name": "Stand", "surname": "In"},
        }});
    }
    out
}

/// A capture. Inside an order (`standalone: false`) it carries
/// `invoice_id` but not `custom_id` (the purchase unit has it); on its own
/// or in a webhook it carries both and `supplementary_data.related_ids`.
pub(super) fn capture_json(capture: &CaptureRecord, base: &str, standalone: bool) -> Value {
    let self_link = format!("{base}/v2/payments/captures/{}", capture.id);
    let mut out = json!({
        "id": capture.id,
        "status": capture.status,
        "amount": amount_json(capture.amount_cents),
        "final_capture": true,
        "seller_protection": {"status": "ELIGIBLE", "dispute_categories": ["ITEM_NOT_RECEIVED", "UNAUTHORIZED_TRANSACTION"]},
        "create_time": capture.create_time,
        "update_time": capture.update_time,
        "links": [
            {"href": self_link, "rel": "self", "method": "GET"},
            {"href": format!("{self_link}/refund"), "rel": "refund", "method": "POST"},
            {"href": format!("{base}/v2/checkout/orders/{}", capture.order_id), "rel": "up", "method": "GET"},
        ],
    });
    if let Some(reason) = &capture.status_reason {
        out["status_details"] = json!({ "reason": reason });
    }
    if let Some(invoice_id) = &capture.invoice_id {
        out["invoice_id"] = json!(invoice_id);
    }
    if standalone {
        if let Some(custom_id) = &capture.custom_id {
            out["custom_id"] = json!(custom_id);
        }
        out["supplementary_data"] = json!({"related_ids": {"order_id": capture.order_id}});
    }
    out
}

pub(super) fn refund_json(refund: &RefundRecord, base: &str) -> Value {
    let mut out = json!({
        "id": refund.id,
        "status": refund.status,
        "amount": amount_json(refund.amount_cents),
        "create_time": refund.create_time,
        "update_time": refund.create_time,
        "links": [
            {"href": format!("{base}/v2/payments/refunds/{}", refund.id), "rel": "self", "method": "GET"},
            {"href": format!("{base}/v2/payments/captures/{}", refund.capture_id), "rel": "up", "method": "GET"},
        ],
    });
    if let Some(note) = &refund.note {
        out["note_to_payer"] = json!(note);
    }
    // PayPal's REVERSED resource carries neither (see after.rs).
    if !refund.reversal {
        if let Some(custom_id) = &refund.custom_id {
            out["custom_id"] = json!(custom_id);
        }
        if let Some(invoice_id) = &refund.invoice_id {
            out["invoice_id"] = json!(invoice_id);
        }
    }
    out
}

pub(super) fn minimal(resource: &Value) -> Value {
    json!({
        "id": resource.get("id"),
        "status": resource.get("status"),
        "links": resource.get("links"),
    })
}

/// PayPal's error shape.
pub(super) fn paypal_error(status: StatusCode, issue: &str, description: &str) -> Answer {
    let (name, message) = match status.as_u16() {
        400 => (
            "INVALID_REQUEST",
            "Request is not well-formed, syntactically incorrect, or violates schema.",
        ),
        401 => (
            "AUTHENTICATION_FAILURE",
            "Authentication failed due to invalid authentication credentials or a missing Authorization header.",
        ),
        403 => (
            "NOT_AUTHORIZED",
            "Authorization failed due to insufficient permissions.",
        ),
        404 => (
            "RESOURCE_NOT_FOUND",
            "The specified resource does not exist.",
        ),
        422 => (
            "UNPROCESSABLE_ENTITY",
            "The requested action could not be performed, semantically incorrect, or failed business validation.",
        ),
        409 => (
            "RESOURCE_CONFLICT",
            "The server has detected a conflict while processing this request.",
        ),
        429 => (
            "RATE_LIMIT_REACHED",
            "Too many requests. Blocked due to rate limiting.",
        ),
        _ => (
            "INTERNAL_SERVER_ERROR",
            "An internal server error has occurred.",
        ),
    };
    let mut body = json!({"name": name, "message": message, "debug_id": debug_id()});
    if status.is_client_error() {
        body["details"] = json!([{"issue": issue, "description": description}]);
        body["links"] = json!([{
            "href": format!("https://developer.paypal.com/docs/api/orders/v2/#error-{issue}"),
            "rel": "information_link",
            "method": "GET",
        }]);
    }
    Answer::json(status, &body)
}

pub(super) fn not_found(what: &str) -> Answer {
    paypal_error(
        StatusCode::NOT_FOUND,
        "INVALID_RESOURCE_ID",
        &format!(
            "Specified resource ID does not exist. Please check the resource ID ({what}) and try again."
        ),
    )
}

pub(super) fn bad_request(issue: &str, description: &str) -> Answer {
    paypal_error(StatusCode::BAD_REQUEST, issue, description)
}

pub(super) fn unprocessable(issue: &str, description: &str) -> Answer {
    paypal_error(StatusCode::UNPROCESSABLE_ENTITY, issue, description)
}

// ------------------------------------------------------------- ids, time

pub(super) const ID_ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// A 17-character id like PayPal's (`5O190127TN364715T`).
pub(super) fn paypal_id() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    a.as_bytes()
        .iter()
        .chain(b.as_bytes())
        .take(17)
        .map(|byte| char::from(ID_ALPHABET[usize::from(*byte) % ID_ALPHABET.len()]))
        .collect()
}

pub(super) fn debug_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..13].to_owned()
}

/// `2025-11-25T12:00:00Z`.
pub(super) fn rfc3339(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    at.format(&format).unwrap_or_default()
}

/// `2025-11-25T12:00:00.123Z` (webhook `create_time`).
pub(super) fn rfc3339_millis(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    at.format(&format).unwrap_or_default()
}

pub(super) fn now() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}
