//! The stand-in's Transaction Search (`GET /v1/reporting/transactions`),
//! served over its own book, with PayPal's transaction event codes: every
//! capture is a payment line (`T0006`, its order as `paypal_reference_id` of
//! type `ODR`), every refund a `T1107` and every chargeback (reversal) a
//! `T1201` line (the capture as `paypal_reference_id`, type `TXN`, a
//! negative amount); a chargeback whose dispute the merchant won stays
//! listed and adds a `T1202` line (chargeback reversal: its own id, the
//! capture as reference, the amount returned, positive). Lines carry
//! PayPal's status letters: `S` success, `P` pending, `D` denied, `F`
//! partially refunded, `V` refunded or reversed in full.
//!
//! - `start_date`, `end_date` (RFC 3339, required, at most 31 days apart;
//!   both inclusive) select lines by `transaction_initiation_date`;
//! - `page_size` 1–500 (default 100), `page` from 1; the answer carries
//!   `page`, `total_items`, `total_pages` and `last_refreshed_datetime`;
//! - `fields` (`transaction_info` or `all`) is accepted; lines only carry
//!   `transaction_info`.
//!
//! PayPal lists a transaction up to about three hours after it happened; the
//! stand-in can do the same: with a reporting delay set
//! ([`PayPalStandIn::set_reporting_delay`], or `POST /_control/reporting
//! {"delayMs": N}`), lines newer than `now - delay` are not listed yet and
//! `last_refreshed_datetime` is `now - delay`.
//!
//! [`PayPalStandIn::seed_paid_orders`] writes captured orders straight into
//! the book (benchmarks need thousands of them at given times).

use super::control::{control_error, json_body, optional_u64};
use super::shapes::{bad_request, money, paypal_id, rfc3339};
use super::{Answer, CaptureRecord, OrderRecord, PayPalStandIn, RefundRecord, Shared};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// PayPal's largest page.
pub const MAX_PAGE_SIZE: u64 = 500;
const DEFAULT_PAGE_SIZE: u64 = 100;
/// PayPal's longest window.
const MAX_WINDOW: time::Duration = time::Duration::days(31);

/// Per-instance reporting switches (a field of the stand-in's shared state).
#[derive(Debug, Default)]
pub(super) struct Settings {
    delay_ms: AtomicU64,
    searches: AtomicU64,
}

/// A captured order to write into the book.
#[derive(Clone, Debug)]
pub struct SeedOrder {
    pub amount_cents: i64,
    /// Our user id.
    pub custom_id: String,
    /// Our purchase id.
    pub invoice_id: String,
    pub at: OffsetDateTime,
}

/// What [`PayPalStandIn::seed_paid_orders`] created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeededOrder {
    pub order_id: String,
    pub capture_id: String,
}

impl PayPalStandIn {
    /// Lines newer than `now - delay` are not listed yet (PayPal: up to ~3 h).
    pub fn set_reporting_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.reporting.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// How many Transaction Search pages were served.
    pub fn search_count(&self) -> u64 {
        self.shared.reporting.searches.load(Ordering::Relaxed)
    }

    /// Writes approved-and-captured orders (status `COMPLETED`, one
    /// `COMPLETED` capture each) straight into the book, as if buyers had
    /// paid at `at`. No webhooks are sent.
    pub fn seed_paid_orders(&self, orders: &[SeedOrder]) -> Vec<SeededOrder> {
        let mut data = self.shared.lock();
        let mut seeded = Vec::with_capacity(orders.len());
        for seed in orders {
            let time = rfc3339(seed.at);
            let order_id = paypal_id();
            let capture_id = paypal_id();
            let order_seq = data.book.seq();
            data.book.orders.insert(
                order_id.clone(),
                OrderRecord {
                    id: order_id.clone(),
                    status: "COMPLETED".into(),
                    amount_cents: seed.amount_cents,
                    custom_id: Some(seed.custom_id.clone()),
                    invoice_id: Some(seed.invoice_id.clone()),
                    description: None,
                    payer_action: false,
                    capture_ids: vec![capture_id.clone()],
                    create_time: time.clone(),
                    update_time: time.clone(),
                    seq: order_seq,
                },
            );
            let capture_seq = data.book.seq();
            data.book.captures.insert(
                capture_id.clone(),
                CaptureRecord {
                    id: capture_id.clone(),
                    order_id: order_id.clone(),
                    status: "COMPLETED".into(),
                    status_reason: None,
                    amount_cents: seed.amount_cents,
                    refunded_cents: 0,
                    custom_id: Some(seed.custom_id.clone()),
                    invoice_id: Some(seed.invoice_id.clone()),
                    create_time: time.clone(),
                    update_time: time,
                    seq: capture_seq,
                },
            );
            seeded.push(SeededOrder {
                order_id,
                capture_id,
            });
        }
        self.shared.save(&data);
        seeded
    }
}

/// One line of the report, before paging.
struct Line {
    at: OffsetDateTime,
    seq: u64,
    info: Value,
}

fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

fn capture_status(capture: &CaptureRecord) -> &'static str {
    match capture.status.as_str() {
        "PENDING" => "P",
        "DECLINED" | "FAILED" => "D",
        "PARTIALLY_REFUNDED" => "F",
        "REFUNDED" => "V",
        _ => "S",
    }
}

fn capture_line(capture: &CaptureRecord) -> Option<Line> {
    Some(Line {
        at: parse_time(&capture.create_time)?,
        seq: capture.seq,
        info: json!({
            "transaction_id": capture.id,
            "paypal_reference_id": capture.order_id,
            "paypal_reference_id_type": "ODR",
            "transaction_event_code": "T0006",
            "transaction_initiation_date": capture.create_time,
            "transaction_updated_date": capture.update_time,
            "transaction_amount": {"currency_code": "USD", "value": money(capture.amount_cents)},
            "transaction_status": capture_status(capture),
            "invoice_id": capture.invoice_id,
            "custom_field": capture.custom_id,
            "protection_eligibility": "01",
        }),
    })
}

/// A chargeback the merchant won (a `T1202` line), kept by reversal id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct WonDispute {
    /// The chargeback reversal's own transaction id.
    pub id: String,
    pub capture_id: String,
    pub amount_cents: i64,
    pub custom_id: Option<String>,
    pub invoice_id: Option<String>,
    pub create_time: String,
    pub seq: u64,
}

fn won_line(won: &WonDispute) -> Option<Line> {
    Some(Line {
        at: parse_time(&won.create_time)?,
        seq: won.seq,
        info: json!({
            "transaction_id": won.id,
            "paypal_reference_id": won.capture_id,
            "paypal_reference_id_type": "TXN",
            "transaction_event_code": "T1202",
            "transaction_initiation_date": won.create_time,
            "transaction_updated_date": won.create_time,
            "transaction_amount": {"currency_code": "USD", "value": money(won.amount_cents)},
            "transaction_status": "S",
            "invoice_id": won.invoice_id,
            "custom_field": won.custom_id,
        }),
    })
}

fn refund_line(refund: &RefundRecord) -> Option<Line> {
    let status = match refund.status.as_str() {
        "COMPLETED" => "S",
        // A chargeback whose dispute was won happened all the same (`T1202` follows).
        "CANCELLED" if refund.reversal => "S",
        "PENDING" => "P",
        _ => "D",
    };
    Some(Line {
        at: parse_time(&refund.create_time)?,
        seq: refund.seq,
        info: json!({
            "transaction_id": refund.id,
            "paypal_reference_id": refund.capture_id,
            "paypal_reference_id_type": "TXN",
            "transaction_event_code": if refund.reversal { "T1201" } else { "T1107" },
            "transaction_initiation_date": refund.create_time,
            "transaction_updated_date": refund.create_time,
            "transaction_amount": {"currency_code": "USD", "value": money(-refund.amount_cents)},
            "transaction_status": status,
            "invoice_id": refund.invoice_id,
            "custom_field": refund.custom_id,
        }),
    })
}

fn bad(description: &str) -> Response {
    bad_request("INVALID_PARAMETER_VALUE", description).into_response()
}

/// `GET /v1/reporting/transactions`.
pub(super) async fn search(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let field = |name: &str| query.get(name).map(String::as_str);
    let (Some(start), Some(end)) = (
        field("start_date").and_then(parse_time),
        field("end_date").and_then(parse_time),
    ) else {
        return bad("start_date and end_date are required, in RFC 3339 with seconds");
    };
    if end < start || end - start > MAX_WINDOW {
        return bad("end_date must follow start_date by at most 31 days");
    }
    let page_size = match field("page_size").map(str::parse::<u64>) {
        None => DEFAULT_PAGE_SIZE,
        Some(Ok(n)) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
        Some(_) => return bad("page_size must be 1 to 500"),
    };
    let page = match field("page").map(str::parse::<u64>) {
        None => 1,
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => return bad("page must be 1 or more"),
    };
    if let Some(fields) = field("fields")
        && !fields
            .split(',')
            .all(|f| matches!(f, "all" | "transaction_info"))
    {
        return bad("fields must be transaction_info or all");
    }
    shared.reporting.searches.fetch_add(1, Ordering::Relaxed);
    let delay = Duration::from_millis(shared.reporting.delay_ms.load(Ordering::Relaxed));
    let refreshed = OffsetDateTime::now_utc() - delay;

    let mut lines: Vec<Line> = {
        let data = shared.lock();
        let captures = data.book.captures.values().filter_map(capture_line);
        let refunds = data.book.refunds.values().filter_map(refund_line);
        let won = data.book.disputes_won.values().filter_map(won_line);
        captures
            .chain(refunds)
            .chain(won)
            .filter(|line| line.at >= start && line.at <= end && line.at <= refreshed)
            .collect()
    };
    lines.sort_by_key(|line| (line.at, line.seq));
    let total_items = lines.len() as u64;
    let total_pages = total_items.div_ceil(page_size).max(1);
    let skip = usize::try_from((page - 1).saturating_mul(page_size)).unwrap_or(usize::MAX);
    let details: Vec<Value> = lines
        .into_iter()
        .skip(skip)
        .take(usize::try_from(page_size).unwrap_or(usize::MAX))
        .map(|line| json!({ "transaction_info": line.info }))
        .collect();
    let base = &shared.base_url;
    let link = |p: u64, rel: &str| {
        json!({
            "href": format!("{base}/v1/reporting/transactions?start_date={}&end_date={}&page_size={page_size}&page={p}",
                rfc3339(start), rfc3339(end)),
            "rel": rel,
            "method": "GET",
        })
    };
    let mut links = vec![link(page, "self")];
    if page < total_pages {
        links.push(link(page + 1, "next"));
    }
    links.push(link(total_pages, "last"));
    Answer::json(
        StatusCode::OK,
        &json!({
            "transaction_details": details,
            "account_number": "STANDINMERCHANT",
            "start_date": rfc3339(start),
            "end_date": rfc3339(end),
            "last_refreshed_datetime": rfc3339(refreshed),
            "page": page,
            "total_items": total_items,
            "total_pages": total_pages,
            "links": links,
        }),
    )
    .into_response()
}

/// `POST /_control/reporting {"delayMs": N}`.
pub(super) async fn control(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let parsed = json_body(&body).and_then(|body| optional_u64(&body, "delayMs"));
    match parsed {
        Ok(delay) => {
            let delay = delay.unwrap_or(0);
            shared.reporting.delay_ms.store(delay, Ordering::Relaxed);
            Json(json!({ "delayMs": delay })).into_response()
        }
        Err(message) => control_error(&message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_use_paypal_letters() {
        let mut capture = CaptureRecord {
            id: "C".into(),
            order_id: "O".into(),
            status: "COMPLETED".into(),
            status_reason: None,
            amount_cents: 1000,
            refunded_cents: 0,
            custom_id: None,
            invoice_id: None,
            create_time: "2025-11-25T12:00:00Z".into(),
            update_time: "2025-11-25T12:00:00Z".into(),
            seq: 1,
        };
        assert_eq!(capture_status(&capture), "S");
        capture.status = "PARTIALLY_REFUNDED".into();
        assert_eq!(capture_status(&capture), "F");
        capture.status = "PENDING".into();
        assert_eq!(capture_status(&capture), "P");
        let line = capture_line(&capture).unwrap();
        assert_eq!(line.info["transaction_amount"]["value"], "10.00");
        assert_eq!(line.info["paypal_reference_id"], "O");
    }

    #[test]
    fn chargebacks_and_won_disputes_use_paypal_event_codes() {
        let mut reversal = RefundRecord {
            id: "R".into(),
            capture_id: "C".into(),
            amount_cents: 1000,
            status: "COMPLETED".into(),
            reversal: true,
            note: None,
            custom_id: None,
            invoice_id: None,
            create_time: "2025-11-25T12:00:00Z".into(),
            seq: 2,
        };
        let line = refund_line(&reversal).unwrap();
        assert_eq!(line.info["transaction_event_code"], "T1201");
        assert_eq!(line.info["transaction_amount"]["value"], "-10.00");
        reversal.status = "CANCELLED".into();
        let line = refund_line(&reversal).unwrap();
        assert_eq!(
            line.info["transaction_status"], "S",
            "the chargeback happened"
        );
        let won = won_line(&WonDispute {
            id: "W".into(),
            capture_id: "C".into(),
            amount_cents: 1000,
            custom_id: None,
            invoice_id: None,
            create_time: "2025-11-26T12:00:00Z".into(),
            seq: 3,
        })
        .unwrap();
        assert_eq!(won.info["transaction_event_code"], "T1202");
        assert_eq!(won.info["paypal_reference_id"], "C");
        assert_eq!(won.info["transaction_amount"]["value"], "10.00");
    }
}
