//! A PayPal stand-in: the calls the billing backend makes, with PayPal's
//! paths, bodies, status codes and error shapes, plus webhook signing and
//! delivery.
//!
//! - `POST /v1/oauth2/token` (basic auth with the client id and secret,
//!   `grant_type=client_credentials`) → `{"access_token", "expires_in", ...}`;
//!   a wrong id or secret is 401 `invalid_client`. Every other `/v1` and
//!   `/v2` call needs `Authorization: Bearer <token>` (401 `invalid_token`).
//! - `POST /v2/checkout/orders` → 201 order `CREATED` with an `approve` link
//!   `{base}/checkoutnow?token={id}` (`payer-action` and
//!   `PAYER_ACTION_REQUIRED` when `payment_source.paypal.experience_context`
//!   is given, as PayPal does).
//! - `GET /checkoutnow?token={id}` (no auth) approves the order, as a buyer
//!   would on PayPal's page; [`PayPalStandIn::approve`] does the same.
//! - `GET /v2/checkout/orders/{id}`; `POST /v2/checkout/orders/{id}/capture`
//!   → 201 order `COMPLETED` with `purchase_units[0].payments.captures[0]`;
//!   422 `ORDER_NOT_APPROVED` before approval, 422 `ORDER_ALREADY_CAPTURED`
//!   after a capture, 422 `DUPLICATE_INVOICE_ID` if another order with the
//!   same `invoice_id` was captured.
//! - `GET /v2/payments/captures/{id}`; `POST /v2/payments/captures/{id}/refund`
//!   (no body or no `amount`: what remains; `amount`: partial) → 201 refund;
//!   422 `REFUND_AMOUNT_EXCEEDED` beyond what remains, 422
//!   `CAPTURE_FULLY_REFUNDED` when nothing remains.
//! - `GET /v1/reporting/transactions` (Transaction Search over the book, see
//!   `paypal_reporting.rs`);
//! - `POST /v1/notifications/verify-webhook-signature` →
//!   `{"verification_status": "SUCCESS" | "FAILURE"}`.
//!
//! Create, capture and refund honour `PayPal-Request-Id`: a request id seen
//! before (for the same order / capture) answers the first *successful*
//! response again and does nothing. (Errors are not replayed, so a capture
//! refused as not approved can be repeated with its request id once the
//! buyer approved — except a funding decline, which PayPal may replay; and
//! a simultaneous request with an id still in flight answers 409: see
//! [`crate::paypal_behaviours`].) `Prefer: return=representation` gives the full resource,
//! otherwise the minimal `{id, status, links}`, as PayPal does.
//!
//! # Webhooks
//!
//! Events have PayPal's shape (`id: "WH-..."`, `event_version`,
//! `create_time`, `resource_type`, `event_type`, `summary`, `resource`,
//! `links`) and PayPal's headers (`paypal-transmission-id`, `-time`, `-sig`,
//! `paypal-cert-url`, `paypal-auth-algo: SHA256withRSA`), signed as PayPal
//! signs them: RSA PKCS#1 v1.5 SHA-256 over
//! `transmission_id|transmission_time|webhook_id|crc32(body)` (crc32 in
//! decimal) with a test-only key whose certificate the stand-in serves at
//! `paypal-cert-url` (`GET /v1/notifications/certs/CERT-standin-1`, see
//! [`crate::paypal_signing`]). Its verify endpoint answers `SUCCESS` for a
//! matching signature over the exact event bytes, the stand-in's webhook id
//! and a transmission time within 5 minutes of now.
//!
//! With `auto_webhooks` on, approve, capture, settling a pending capture,
//! refund and reversal deliver the matching event to the webhook target after
//! answering, per the [`WebhookMode`] (normal, each twice, or held until
//! [`PayPalStandIn::flush_held`], which may release them in reverse order).
//!
//! # Switches
//!
//! In-process (methods of [`PayPalStandIn`]) or over HTTP (no auth):
//!
//! - `POST /_control/fail {"operation": "token"|"create"|"get"|"capture"|"refund"|"verify"
//!   (absent: all), "mode": "none"|"status"|"hang"|"apply_then_hang"|"delay"|"refuse",
//!   "status": 503, "ms": 5000, "times": N}` — `refuse` closes the listening
//!   socket (so `/_control` too) for `ms`, default 10 s;
//! - `POST /_control/capture-outcome {"outcome": "completed"|"pending"|"declined", "times": N}`;
//! - `POST /_control/orders/{id}/approve`;
//! - `POST /_control/captures/{id}/settle {"outcome": "completed"|"declined"}` (a pending capture);
//! - `POST /_control/captures/{id}/reverse` (a chargeback: `PAYMENT.CAPTURE.REVERSED`);
//! - `POST /_control/webhooks {"target": URL|null, "auto": bool, "mode": "normal"|"duplicate"|"hold"}`;
//! - `POST /_control/webhooks/send {"eventType": "PAYMENT.CAPTURE.COMPLETED", "resourceId": "..."}`
//!   builds, signs and delivers one event now (`"times": 2` delivers it twice);
//! - `POST /_control/webhooks/flush {"reverse": true}` delivers held events;
//! - `POST /_control/tokens/expire` revokes every access token;
//! - `POST /_control/reporting {"delayMs": N}` — Transaction Search lags by N ms;
//! - `GET /_control/state`; `POST /_control/reset`.
//!
//! State is in memory, and also in a JSON file when
//! [`StandInConfig::state_file`] is set (orders, captures, refunds and
//! request ids survive a restart; switches and tokens do not).

#[path = "paypal_after.rs"]
mod after;
pub use after::RefundSettlement;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::paypal_behaviours::{Decline, Declines, InFlight};

/// What the stand-in puts in `paypal-auth-algo` (PayPal's value; the
/// signature itself is HMAC, see the module docs).
pub const AUTH_ALGO: &str = "SHA256withRSA";
/// How far a transmission time may be from now and still verify.
pub const MAX_TRANSMISSION_SKEW: Duration = Duration::from_secs(5 * 60);
/// PayPal's access-token lifetime.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(32_400);
/// A hanging request gives up after this long even if nobody shuts it down.
const MAX_HANG: Duration = Duration::from_secs(600);
/// How long `refuse` lasts when set over HTTP without `ms`.
const DEFAULT_HTTP_REFUSE: Duration = Duration::from_secs(10);
/// How long one webhook delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// PayPal's limit on `custom_id`, `invoice_id` and `description`.
const MAX_TEXT_CHARS: usize = 127;
/// Largest amount accepted, in cents ($10,000,000).
const MAX_AMOUNT_CENTS: i64 = 1_000_000_000;

// Transaction Search over the book (`GET /v1/reporting/transactions`).
#[path = "paypal_reporting.rs"]
mod reporting;
pub use reporting::{SeedOrder, SeededOrder};

// ------------------------------------------------------------ public types

/// How the stand-in is set up.
#[derive(Clone, Debug)]
pub struct StandInConfig {
    pub client_id: String,
    pub client_secret: String,
    pub webhook_id: String,
    /// Where webhook events are delivered (`POST`), if anywhere.
    pub webhook_target: Option<String>,
    /// Deliver events by themselves after approve / capture / refund.
    pub auto_webhooks: bool,
    /// Keep orders, captures, refunds and request ids in this JSON file.
    pub state_file: Option<PathBuf>,
}

impl StandInConfig {
    pub fn new(client_id: &str, client_secret: &str, webhook_id: &str) -> StandInConfig {
        StandInConfig {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            webhook_id: webhook_id.to_owned(),
            webhook_target: None,
            auto_webhooks: false,
            state_file: None,
        }
    }
}

/// The local stack's defaults (the `paypal` crate's local defaults).
impl Default for StandInConfig {
    fn default() -> StandInConfig {
        StandInConfig::new("local-client", "local-secret", "local-webhook")
    }
}

/// A PayPal API operation, for failure switches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// `POST /v1/oauth2/token`
    Token,
    /// `POST /v2/checkout/orders`
    CreateOrder,
    /// `GET /v2/checkout/orders/{id}` and `GET /v2/payments/captures/{id}`
    GetOrder,
    /// `POST /v2/checkout/orders/{id}/capture`
    CaptureOrder,
    /// `POST /v2/payments/captures/{id}/refund`
    Refund,
    /// `POST /v1/notifications/verify-webhook-signature`
    VerifyWebhook,
}

impl Operation {
    pub const ALL: [Operation; 6] = [
        Operation::Token,
        Operation::CreateOrder,
        Operation::GetOrder,
        Operation::CaptureOrder,
        Operation::Refund,
        Operation::VerifyWebhook,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Operation::Token => "token",
            Operation::CreateOrder => "create",
            Operation::GetOrder => "get",
            Operation::CaptureOrder => "capture",
            Operation::Refund => "refund",
            Operation::VerifyWebhook => "verify",
        }
    }

    fn parse(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.name() == name)
    }
}

/// How one operation misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Answer this status (PayPal's error shape) without doing anything.
    Status(u16),
    /// Do nothing and never answer (until the stand-in shuts down).
    Hang,
    /// Do the work (capture, refund, ...) and then never answer.
    ApplyThenHang,
    /// Wait this long, then behave.
    Delay(Duration),
}

/// What the next captures come back as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CaptureOutcome {
    #[default]
    Completed,
    /// `PENDING` with `status_details.reason: PENDING_REVIEW`.
    Pending,
    Declined,
}

/// How automatic webhook deliveries go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WebhookMode {
    /// Each event once, right after the call that caused it.
    #[default]
    Normal,
    /// Each event twice (same event id, new transmission).
    Duplicate,
    /// Kept until [`PayPalStandIn::flush_held`] (which may reverse them).
    Hold,
}

/// The webhook events the stand-in produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// `CHECKOUT.ORDER.APPROVED` (resource: the order)
    OrderApproved,
    /// `PAYMENT.CAPTURE.COMPLETED` (resource: the capture)
    CaptureCompleted,
    /// `PAYMENT.CAPTURE.PENDING` (resource: the capture)
    CapturePending,
    /// `PAYMENT.CAPTURE.DENIED` (resource: the capture)
    CaptureDenied,
    /// `PAYMENT.CAPTURE.REFUNDED` (resource: the refund)
    CaptureRefunded,
    /// `PAYMENT.CAPTURE.REVERSED` (resource: the reversal, a refund)
    CaptureReversed,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::OrderApproved => "CHECKOUT.ORDER.APPROVED",
            EventType::CaptureCompleted => "PAYMENT.CAPTURE.COMPLETED",
            EventType::CapturePending => "PAYMENT.CAPTURE.PENDING",
            EventType::CaptureDenied => "PAYMENT.CAPTURE.DENIED",
            EventType::CaptureRefunded => "PAYMENT.CAPTURE.REFUNDED",
            EventType::CaptureReversed => "PAYMENT.CAPTURE.REVERSED",
        }
    }

    pub fn parse(name: &str) -> Option<EventType> {
        [
            EventType::OrderApproved,
            EventType::CaptureCompleted,
            EventType::CapturePending,
            EventType::CaptureDenied,
            EventType::CaptureRefunded,
            EventType::CaptureReversed,
        ]
        .into_iter()
        .find(|t| t.as_str() == name)
    }

    fn resource_type(self) -> &'static str {
        match self {
            EventType::OrderApproved => "checkout-order",
            EventType::CaptureCompleted | EventType::CapturePending | EventType::CaptureDenied => {
                "capture"
            }
            EventType::CaptureRefunded | EventType::CaptureReversed => "refund",
        }
    }
}

/// An order as the stand-in keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub id: String,
    /// `CREATED`, `PAYER_ACTION_REQUIRED`, `APPROVED` or `COMPLETED`.
    pub status: String,
    pub amount_cents: i64,
    pub custom_id: Option<String>,
    pub invoice_id: Option<String>,
    pub description: Option<String>,
    pub payer_action: bool,
    pub capture_ids: Vec<String>,
    pub create_time: String,
    pub update_time: String,
    pub seq: u64,
}

/// A capture as the stand-in keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureRecord {
    pub id: String,
    pub order_id: String,
    /// `COMPLETED`, `PENDING`, `DECLINED`, `PARTIALLY_REFUNDED` or `REFUNDED`.
    pub status: String,
    pub status_reason: Option<String>,
    pub amount_cents: i64,
    pub refunded_cents: i64,
    pub custom_id: Option<String>,
    pub invoice_id: Option<String>,
    pub create_time: String,
    pub update_time: String,
    pub seq: u64,
}

/// A refund (or a reversal) as the stand-in keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRecord {
    pub id: String,
    pub capture_id: String,
    pub amount_cents: i64,
    pub status: String,
    /// A chargeback (`PAYMENT.CAPTURE.REVERSED`) rather than a refund call.
    pub reversal: bool,
    pub note: Option<String>,
    pub custom_id: Option<String>,
    pub invoice_id: Option<String>,
    pub create_time: String,
    pub seq: u64,
}

/// A webhook event ready to send: the body and PayPal's signature headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedEvent {
    pub event_id: String,
    pub event_type: String,
    /// `paypal-transmission-id`, `-time`, `-sig`, `paypal-cert-url`,
    /// `paypal-auth-algo` (lowercase names).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SignedEvent {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One webhook delivery attempt and how the target answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub event_id: String,
    pub event_type: String,
    pub status: Option<u16>,
    pub error: Option<String>,
}

// ------------------------------------------------------------------ state

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Book {
    orders: BTreeMap<String, OrderRecord>,
    captures: BTreeMap<String, CaptureRecord>,
    refunds: BTreeMap<String, RefundRecord>,
    /// Successful answers by request-id key.
    replays: BTreeMap<String, Answer>,
    next_seq: u64,
}

impl Book {
    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn json(status: StatusCode, body: &Value) -> Answer {
        Answer {
            status: status.as_u16(),
            body: body.to_string(),
        }
    }

    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body,
        )
            .into_response()
    }
}

#[derive(Clone, Copy, Debug)]
struct ActiveFailure {
    failure: Failure,
    remaining: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Serving,
    Refusing,
    Shutdown,
}

struct Data {
    book: Book,
    tokens: HashMap<String, Instant>,
    token_ttl: Duration,
    failures: BTreeMap<Operation, ActiveFailure>,
    refuse_until: Option<Instant>,
    capture_outcome: CaptureOutcome,
    capture_outcome_left: Option<u32>,
    webhook_target: Option<String>,
    auto_webhooks: bool,
    webhook_mode: WebhookMode,
    held: Vec<SignedEvent>,
    deliveries: Vec<Delivery>,
    /// After-purchase switches (pending refunds), see `paypal_after.rs`.
    after: after::AfterState,
    declines: Declines,
    /// REST credentials accepted instead of the configured ones (a rotation).
    credentials: Option<(String, String)>,
}

impl Data {
    fn new(book: Book, config: &StandInConfig) -> Data {
        Data {
            book,
            tokens: HashMap::new(),
            token_ttl: DEFAULT_TOKEN_TTL,
            failures: BTreeMap::new(),
            refuse_until: None,
            capture_outcome: CaptureOutcome::Completed,
            capture_outcome_left: None,
            webhook_target: config.webhook_target.clone(),
            auto_webhooks: config.auto_webhooks,
            webhook_mode: WebhookMode::Normal,
            held: Vec::new(),
            deliveries: Vec::new(),
            after: after::AfterState::default(),
            declines: Declines::default(),
            credentials: None,
        }
    }
}

struct Shared {
    config: StandInConfig,
    base_url: String,
    data: Mutex<Data>,
    requests: AtomicU64,
    token_requests: AtomicU64,
    phase: watch::Sender<Phase>,
    http: reqwest::Client,
    reporting: reporting::Settings,
    in_flight: InFlight,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Data> {
        // A panic elsewhere must not take the stand-in down with it.
        self.data
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_phase(&self, new: Phase) {
        self.phase.send_if_modified(|phase| {
            if *phase == Phase::Shutdown || *phase == new {
                false
            } else {
                *phase = new;
                true
            }
        });
    }

    fn refuse(&self, duration: Option<Duration>) {
        self.lock().refuse_until = duration.and_then(|d| Instant::now().checked_add(d));
        self.set_phase(Phase::Refusing);
    }

    fn accept(&self) {
        self.lock().refuse_until = None;
        self.set_phase(Phase::Serving);
    }

    fn end_refusal_if_due(&self, until: Instant) {
        let due = self.lock().refuse_until == Some(until);
        if due {
            self.accept();
        }
    }

    fn set_failure(&self, op: Operation, failure: Option<Failure>, times: Option<u32>) {
        let mut data = self.lock();
        match (failure, times) {
            (None, _) | (_, Some(0)) => {
                data.failures.remove(&op);
            }
            (Some(failure), remaining) => {
                data.failures
                    .insert(op, ActiveFailure { failure, remaining });
            }
        }
    }

    /// The failure for this request of `op`, counting down `times`.
    fn take_failure(&self, op: Operation) -> Option<Failure> {
        let mut data = self.lock();
        let active = data.failures.get_mut(&op)?;
        let failure = active.failure;
        if let Some(left) = active.remaining.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                data.failures.remove(&op);
            }
        }
        Some(failure)
    }

    fn take_capture_outcome(data: &mut Data) -> CaptureOutcome {
        let outcome = data.capture_outcome;
        if let Some(left) = data.capture_outcome_left.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                data.capture_outcome = CaptureOutcome::Completed;
                data.capture_outcome_left = None;
            }
        }
        outcome
    }

    /// Writes the book to the state file, if any (best effort, logged).
    fn save(&self, data: &Data) {
        let Some(path) = &self.config.state_file else {
            return;
        };
        let result = serde_json::to_vec(&data.book)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, bytes)?;
                std::fs::rename(&tmp, path)
            });
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "PayPal stand-in could not save its state");
        }
    }

    fn sign_at(&self, body: &[u8], at: time::OffsetDateTime) -> Vec<(String, String)> {
        let transmission_id = uuid::Uuid::new_v4().to_string();
        let transmission_time = rfc3339(at);
        let signature = crate::paypal_signing::sign(
            &transmission_id,
            &transmission_time,
            &self.config.webhook_id,
            body,
        );
        vec![
            ("paypal-transmission-id".into(), transmission_id),
            ("paypal-transmission-time".into(), transmission_time),
            ("paypal-transmission-sig".into(), signature),
            (
                "paypal-cert-url".into(),
                format!("{}{}", self.base_url, crate::paypal_signing::CERT_PATH),
            ),
            ("paypal-auth-algo".into(), AUTH_ALGO.into()),
        ]
    }

    fn signed(&self, event_type: &str, resource_type: &str, resource: Value) -> SignedEvent {
        let event_id = format!("WH-{}-{}", paypal_id(), paypal_id());
        let summary = match resource
            .get("amount")
            .and_then(|a| a.get("value"))
            .and_then(Value::as_str)
        {
            Some(value) => format!("{event_type} for $ {value} USD"),
            None => event_type.to_owned(),
        };
        let event = json!({
            "id": event_id,
            "event_version": "1.0",
            "create_time": rfc3339_millis(time::OffsetDateTime::now_utc()),
            "resource_type": resource_type,
            "resource_version": "2.0",
            "event_type": event_type,
            "summary": summary,
            "resource": resource,
            "links": [
                {"href": format!("{}/v1/notifications/webhooks-events/{event_id}", self.base_url), "rel": "self", "method": "GET"},
                {"href": format!("{}/v1/notifications/webhooks-events/{event_id}/resend", self.base_url), "rel": "resend", "method": "POST"}
            ]
        });
        let body = event.to_string().into_bytes();
        SignedEvent {
            headers: self.sign_at(&body, time::OffsetDateTime::now_utc()),
            event_id,
            event_type: event_type.to_owned(),
            body,
        }
    }

    /// Builds `event_type` for the resource `id` from the current state.
    fn event_for(&self, data: &Data, event_type: EventType, id: &str) -> Option<SignedEvent> {
        let book = &data.book;
        let resource = match event_type {
            EventType::OrderApproved => {
                order_json(book, book.orders.get(id)?, &self.base_url, true)
            }
            EventType::CaptureCompleted | EventType::CapturePending | EventType::CaptureDenied => {
                capture_json(book.captures.get(id)?, &self.base_url, true)
            }
            EventType::CaptureRefunded | EventType::CaptureReversed => {
                refund_json(book.refunds.get(id)?, &self.base_url)
            }
        };
        Some(self.signed(event_type.as_str(), event_type.resource_type(), resource))
    }

    fn state_json(&self) -> Value {
        let data = self.lock();
        let failures: BTreeMap<&str, Value> = data
            .failures
            .iter()
            .map(|(op, active)| (op.name(), failure_json(active.failure, active.remaining)))
            .collect();
        json!({
            "baseUrl": self.base_url,
            "webhookId": self.config.webhook_id,
            "orders": sorted(data.book.orders.values().cloned().collect(), |o: &OrderRecord| o.seq),
            "captures": sorted(data.book.captures.values().cloned().collect(), |c: &CaptureRecord| c.seq),
            "refunds": sorted(data.book.refunds.values().cloned().collect(), |r: &RefundRecord| r.seq),
            "requestCount": self.requests.load(Ordering::SeqCst),
            "tokenRequests": self.token_requests.load(Ordering::SeqCst),
            "failures": failures,
            "refusing": data.refuse_until.is_some() || *self.phase.borrow() == Phase::Refusing,
            "captureOutcome": outcome_name(data.capture_outcome),
            "webhooks": {
                "target": data.webhook_target,
                "auto": data.auto_webhooks,
                "mode": match data.webhook_mode {
                    WebhookMode::Normal => "normal",
                    WebhookMode::Duplicate => "duplicate",
                    WebhookMode::Hold => "hold",
                },
                "held": data.held.len(),
                "deliveries": data.deliveries,
            },
        })
    }
}

fn sorted<T>(mut items: Vec<T>, key: impl Fn(&T) -> u64) -> Vec<T> {
    items.sort_by_key(|item| key(item));
    items
}

fn outcome_name(outcome: CaptureOutcome) -> &'static str {
    match outcome {
        CaptureOutcome::Completed => "completed",
        CaptureOutcome::Pending => "pending",
        CaptureOutcome::Declined => "declined",
    }
}

fn failure_json(failure: Failure, times: Option<u32>) -> Value {
    match failure {
        Failure::Status(status) => json!({"mode": "status", "status": status, "times": times}),
        Failure::Hang => json!({"mode": "hang", "times": times}),
        Failure::ApplyThenHang => json!({"mode": "apply_then_hang", "times": times}),
        Failure::Delay(d) => json!({"mode": "delay", "ms": duration_ms(d), "times": times}),
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

// ------------------------------------------------------------------ handle

/// A running stand-in. Dropping it (or [`shutdown`](Self::shutdown)) stops
/// the server and releases requests left hanging.
pub struct PayPalStandIn {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl PayPalStandIn {
    /// Starts the stand-in on `addr` (port 0 picks a free port) with these
    /// REST credentials and webhook id. Needs a Tokio runtime.
    pub async fn spawn(
        addr: SocketAddr,
        client_id: &str,
        client_secret: &str,
        webhook_id: &str,
    ) -> std::io::Result<PayPalStandIn> {
        PayPalStandIn::spawn_with(
            addr,
            StandInConfig::new(client_id, client_secret, webhook_id),
        )
        .await
    }

    /// Starts the stand-in with a full configuration (state file, webhooks).
    pub async fn spawn_with(
        addr: SocketAddr,
        config: StandInConfig,
    ) -> std::io::Result<PayPalStandIn> {
        let book = match &config.state_file {
            Some(path) => load_book(path)?,
            None => Book::default(),
        };
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(DELIVERY_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(std::io::Error::other)?;
        let (phase, _) = watch::channel(Phase::Serving);
        let shared = Arc::new(Shared {
            base_url: format!("http://{addr}"),
            data: Mutex::new(Data::new(book, &config)),
            config,
            requests: AtomicU64::new(0),
            token_requests: AtomicU64::new(0),
            phase,
            http,
            reporting: reporting::Settings::default(),
            in_flight: InFlight::default(),
        });
        tokio::spawn(supervise(shared.clone(), listener, router(shared.clone())));
        Ok(PayPalStandIn { shared, addr })
    }

    /// `http://127.0.0.1:PORT`: PayPal's API base URL.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn webhook_id(&self) -> &str {
        &self.shared.config.webhook_id
    }

    /// The buyer approves the order (same as fetching its approve URL).
    /// False for an unknown order.
    pub fn approve(&self, order_id: &str) -> bool {
        approve(&self.shared, order_id)
    }

    pub fn order(&self, order_id: &str) -> Option<OrderRecord> {
        self.shared.lock().book.orders.get(order_id).cloned()
    }

    /// Every order, oldest first.
    pub fn orders(&self) -> Vec<OrderRecord> {
        let data = self.shared.lock();
        sorted(data.book.orders.values().cloned().collect(), |o| o.seq)
    }

    pub fn capture(&self, capture_id: &str) -> Option<CaptureRecord> {
        self.shared.lock().book.captures.get(capture_id).cloned()
    }

    /// Every capture, oldest first.
    pub fn captures(&self) -> Vec<CaptureRecord> {
        let data = self.shared.lock();
        sorted(data.book.captures.values().cloned().collect(), |c| c.seq)
    }

    /// Every refund and reversal, oldest first.
    pub fn refunds(&self) -> Vec<RefundRecord> {
        let data = self.shared.lock();
        sorted(data.book.refunds.values().cloned().collect(), |r| r.seq)
    }

    /// Misbehave on `op`: always (`times: None`) or for its next `times` calls.
    pub fn set_failure(&self, op: Operation, failure: Failure, times: Option<u32>) {
        self.shared.set_failure(op, Some(failure), times);
    }

    /// Misbehave on every operation (each counts its own `times`).
    pub fn set_failure_all(&self, failure: Failure, times: Option<u32>) {
        for op in Operation::ALL {
            self.shared.set_failure(op, Some(failure), times);
        }
    }

    /// Every operation behaves again (and connections are accepted).
    pub fn clear_failures(&self) {
        self.shared.lock().failures.clear();
        self.shared.accept();
    }

    /// Close the listening socket so connections are refused: for
    /// `duration`, or until [`accept_connections`](Self::accept_connections).
    pub fn refuse_connections(&self, duration: Option<Duration>) {
        self.shared.refuse(duration);
    }

    pub fn accept_connections(&self) {
        self.shared.accept();
    }

    /// The next captures (all, or the next `times`) come back as `outcome`.
    pub fn set_capture_outcome(&self, outcome: CaptureOutcome, times: Option<u32>) {
        let mut data = self.shared.lock();
        if times == Some(0) {
            data.capture_outcome = CaptureOutcome::Completed;
            data.capture_outcome_left = None;
        } else {
            data.capture_outcome = outcome;
            data.capture_outcome_left = times;
        }
    }

    /// The next captures (all, or the next `times`) are refused with a 422
    /// funding decline (see [`crate::paypal_behaviours`]); `None` stops it.
    pub fn set_capture_decline(&self, decline: Option<Decline>, times: Option<u32>) {
        self.shared.lock().declines.set(decline, times);
    }

    /// Each capture holds its answer this long while its `PayPal-Request-Id`
    /// is in flight; a simultaneous capture with the same id answers 409
    /// `PREVIOUS_REQUEST_IN_PROGRESS` (see [`crate::paypal_behaviours`]).
    pub fn set_capture_processing_time(&self, processing: Duration) {
        self.shared.in_flight.set_processing_time(processing);
    }

    /// A `PENDING` capture clears (`Completed`) or is denied (`Declined`),
    /// with its webhook when automatic. False if not a pending capture.
    pub fn settle_capture(&self, capture_id: &str, outcome: CaptureOutcome) -> bool {
        settle_capture(&self.shared, capture_id, outcome)
    }

    /// A chargeback of what remains of a capture: records a reversal
    /// (refund-shaped), marks the capture `REFUNDED`, sends
    /// `PAYMENT.CAPTURE.REVERSED` when automatic. Returns the reversal's id.
    pub fn reverse_capture(&self, capture_id: &str) -> Option<String> {
        reverse_capture(&self.shared, capture_id)
    }

    /// Lifetime of tokens issued from now on (`expires_in`).
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.shared.lock().token_ttl = ttl;
    }

    /// Revokes every access token: the next API call answers 401.
    pub fn expire_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// Rotates the REST app's credentials, as PayPal's dashboard does: from
    /// now on only these get a token (the old ones answer 401
    /// `invalid_client`). Tokens already issued stay valid until they expire.
    pub fn rotate_credentials(&self, client_id: &str, client_secret: &str) {
        self.shared.lock().credentials = Some((client_id.to_owned(), client_secret.to_owned()));
    }

    /// `POST /v1/oauth2/token` requests so far.
    pub fn token_request_count(&self) -> u64 {
        self.shared.token_requests.load(Ordering::SeqCst)
    }

    /// `/v1` and `/v2` requests so far, token requests included.
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    pub fn set_webhook_target(&self, target: Option<&str>) {
        self.shared.lock().webhook_target = target.map(str::to_owned);
    }

    pub fn set_auto_webhooks(&self, on: bool) {
        self.shared.lock().auto_webhooks = on;
    }

    pub fn set_webhook_mode(&self, mode: WebhookMode) {
        self.shared.lock().webhook_mode = mode;
    }

    /// `event_type` about the resource `id` (an order id for
    /// `OrderApproved`, a capture id for capture events, a refund or reversal
    /// id for `CaptureRefunded` / `CaptureReversed`) as it is now, signed and
    /// not delivered. None for an unknown id.
    pub fn signed_event(&self, event_type: EventType, id: &str) -> Option<SignedEvent> {
        let data = self.shared.lock();
        self.shared.event_for(&data, event_type, id)
    }

    /// Any event, signed: `{"id": "WH-...", "event_type", "resource_type", "resource", ...}`.
    pub fn signed_custom_event(
        &self,
        event_type: &str,
        resource_type: &str,
        resource: Value,
    ) -> SignedEvent {
        self.shared.signed(event_type, resource_type, resource)
    }

    /// The signature headers for `body`, sent now.
    pub fn sign(&self, body: &[u8]) -> Vec<(String, String)> {
        self.shared.sign_at(body, time::OffsetDateTime::now_utc())
    }

    /// The signature headers for `body` with this transmission time (to
    /// test stale or future deliveries).
    pub fn sign_at(&self, body: &[u8], transmission_time: SystemTime) -> Vec<(String, String)> {
        self.shared
            .sign_at(body, time::OffsetDateTime::from(transmission_time))
    }

    /// Delivers `event` to the webhook target now; the target's status.
    pub async fn deliver(&self, event: &SignedEvent) -> Result<u16, String> {
        deliver(&self.shared, event).await
    }

    /// Delivers the held events (oldest first, or newest first with
    /// `reverse`), and forgets them.
    pub async fn flush_held(&self, reverse: bool) -> Vec<Delivery> {
        flush_held(&self.shared, reverse).await
    }

    pub fn held_count(&self) -> usize {
        self.shared.lock().held.len()
    }

    /// Every delivery attempt so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.lock().deliveries.clone()
    }

    /// Forgets orders, captures, refunds, request ids, tokens, switches and
    /// held events (request counts stay; webhook target and auto stay).
    pub fn reset(&self) {
        reset(&self.shared);
    }

    /// Stops the server now (same as dropping the handle).
    pub fn shutdown(self) {}
}

impl Drop for PayPalStandIn {
    fn drop(&mut self) {
        self.shared
            .phase
            .send_modify(|phase| *phase = Phase::Shutdown);
    }
}

/// Runs the stand-in until the process ends (for the `devstack` binary).
pub async fn serve_forever(addr: SocketAddr, config: StandInConfig) -> std::io::Result<()> {
    let stand_in = PayPalStandIn::spawn_with(addr, config).await?;
    tracing::info!(base_url = %stand_in.base_url(), "PayPal stand-in listening");
    std::future::pending::<()>().await;
    drop(stand_in);
    Ok(())
}

fn load_book(path: &std::path::Path) -> std::io::Result<Book> {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(book) => Ok(book),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "PayPal stand-in state unreadable; starting empty");
                Ok(Book::default())
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Book::default()),
        Err(e) => Err(e),
    }
}

fn reset(shared: &Shared) {
    let mut data = shared.lock();
    let fresh = Data::new(Book::default(), &shared.config);
    let (target, auto) = (data.webhook_target.take(), data.auto_webhooks);
    *data = fresh;
    data.webhook_target = target;
    data.auto_webhooks = auto;
    shared.save(&data);
    drop(data);
    shared.in_flight.clear();
    shared.accept();
}

// ------------------------------------------------------------ supervision

/// Serves while the phase is `Serving`; while `Refusing`, keeps no socket
/// open so connections are refused, then binds the same address again.
async fn supervise(shared: Arc<Shared>, first: TcpListener, app: Router) {
    let addr = match first.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            tracing::error!(error = %e, "PayPal stand-in has no address");
            return;
        }
    };
    let mut listener = Some(first);
    let mut phase = shared.phase.subscribe();
    loop {
        let current = *phase.borrow_and_update();
        match current {
            Phase::Shutdown => return,
            Phase::Refusing => {
                listener = None;
                let until = shared.lock().refuse_until;
                match until {
                    Some(until) => {
                        tokio::select! {
                            changed = phase.changed() => if changed.is_err() { return },
                            () = tokio::time::sleep_until(until.into()) => shared.end_refusal_if_due(until),
                        }
                    }
                    None => {
                        if phase.changed().await.is_err() {
                            return;
                        }
                    }
                }
            }
            Phase::Serving => {
                let bound = match listener.take() {
                    Some(bound) => bound,
                    None => match TcpListener::bind(addr).await {
                        Ok(bound) => bound,
                        Err(e) => {
                            tracing::warn!(%addr, error = %e, "PayPal stand-in cannot bind again; retrying");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let mut stop = shared.phase.subscribe();
                let server = axum::serve(bound, app.clone()).with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|p| *p != Phase::Serving).await;
                });
                tokio::spawn(async move {
                    if let Err(e) = server.await {
                        tracing::warn!(error = %e, "PayPal stand-in server stopped");
                    }
                });
                if phase.wait_for(|p| *p != Phase::Serving).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let token = Router::new()
        .route("/v1/oauth2/token", post(oauth_token))
        // PayPal serves signing certificates without auth.
        .route(
            "/v1/notifications/certs/{id}",
            get(crate::paypal_signing::serve_certificate),
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

// ------------------------------------------------------------ JSON shapes

fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// A positive amount `0|[1-9][0-9]*` with an optional `.d` or `.dd`, in cents.
fn parse_cents(text: &str) -> Option<i64> {
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

fn amount_json(cents: i64) -> Value {
    json!({"currency_code": "USD", "value": money(cents)})
}

fn order_json(book: &Book, order: &OrderRecord, base: &str, full: bool) -> Value {
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
fn capture_json(capture: &CaptureRecord, base: &str, standalone: bool) -> Value {
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

fn refund_json(refund: &RefundRecord, base: &str) -> Value {
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
    // PayPal's REVERSED resource carries neither (see paypal_after.rs).
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

fn minimal(resource: &Value) -> Value {
    json!({
        "id": resource.get("id"),
        "status": resource.get("status"),
        "links": resource.get("links"),
    })
}

/// PayPal's error shape.
fn paypal_error(status: StatusCode, issue: &str, description: &str) -> Answer {
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

fn not_found(what: &str) -> Answer {
    paypal_error(
        StatusCode::NOT_FOUND,
        "INVALID_RESOURCE_ID",
        &format!(
            "Specified resource ID does not exist. Please check the resource ID ({what}) and try again."
        ),
    )
}

fn bad_request(issue: &str, description: &str) -> Answer {
    paypal_error(StatusCode::BAD_REQUEST, issue, description)
}

fn unprocessable(issue: &str, description: &str) -> Answer {
    paypal_error(StatusCode::UNPROCESSABLE_ENTITY, issue, description)
}

// ------------------------------------------------------------- ids, time

const ID_ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// A 17-character id like PayPal's (`5O190127TN364715T`).
fn paypal_id() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    a.as_bytes()
        .iter()
        .chain(b.as_bytes())
        .take(17)
        .map(|byte| char::from(ID_ALPHABET[usize::from(*byte) % ID_ALPHABET.len()]))
        .collect()
}

fn debug_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..13].to_owned()
}

/// `2025-11-25T12:00:00Z`.
fn rfc3339(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    at.format(&format).unwrap_or_default()
}

/// `2025-11-25T12:00:00.123Z` (webhook `create_time`).
fn rfc3339_millis(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    at.format(&format).unwrap_or_default()
}

fn now() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

/// CRC-32 (IEEE 802.3, as zlib's `crc32`), as PayPal's signed string uses.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

// ------------------------------------------------------------- middleware

async fn count(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    next.run(request).await
}

async fn require_bearer(
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
async fn run_op(
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

fn finish(shared: &Arc<Shared>, (answer, events): (Answer, Vec<SignedEvent>)) -> Response {
    dispatch(shared, events);
    answer.into_response()
}

async fn hang(shared: &Shared) -> Response {
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

fn wants_representation(headers: &HeaderMap) -> bool {
    headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("return=representation"))
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("paypal-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

// --------------------------------------------------------------- handlers

async fn root(State(shared): State<Arc<Shared>>) -> Response {
    Json(json!({"service": "paypal-stand-in", "baseUrl": shared.base_url})).into_response()
}

async fn oauth_token(
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

fn text_field(unit: &Value, field: &str) -> Result<Option<String>, Answer> {
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

async fn create_order(
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

type NewOrder = (i64, Option<String>, Option<String>, Option<String>, bool);

fn parse_create(body: &[u8]) -> Result<NewOrder, Answer> {
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

async fn get_order(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
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

async fn get_capture(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
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

fn approve(shared: &Arc<Shared>, order_id: &str) -> bool {
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
struct CheckoutQuery {
    token: Option<String>,
}

async fn checkout_now(
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

async fn capture_order(
    State(shared): State<Arc<Shared>>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    // One request per PayPal-Request-Id at a time (paypal_behaviours).
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

async fn capture_now(shared: &Arc<Shared>, order_id: String, headers: HeaderMap) -> Response {
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

async fn refund_capture(
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
fn record_refund(
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

type RefundRequest = (Option<i64>, Option<String>);

fn parse_refund(body: &[u8]) -> Result<RefundRequest, Answer> {
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

fn settle_capture(shared: &Arc<Shared>, capture_id: &str, outcome: CaptureOutcome) -> bool {
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

fn reverse_capture(shared: &Arc<Shared>, capture_id: &str) -> Option<String> {
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

#[derive(Deserialize)]
struct VerifyRequest<'a> {
    auth_algo: Option<String>,
    cert_url: Option<String>,
    transmission_id: Option<String>,
    transmission_sig: Option<String>,
    transmission_time: Option<String>,
    webhook_id: Option<String>,
    #[serde(borrow)]
    webhook_event: Option<&'a RawValue>,
}

async fn verify_webhook(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    run_op(&shared, Operation::VerifyWebhook, move |shared| {
        let Ok(request) = serde_json::from_slice::<VerifyRequest<'_>>(&body) else {
            return (
                bad_request("MALFORMED_REQUEST_JSON", "The request JSON is not well formed."),
                Vec::new(),
            );
        };
        let (
            Some(auth_algo),
            Some(cert_url),
            Some(transmission_id),
            Some(transmission_sig),
            Some(transmission_time),
            Some(webhook_id),
            Some(event),
        ) = (
            request.auth_algo,
            request.cert_url,
            request.transmission_id,
            request.transmission_sig,
            request.transmission_time,
            request.webhook_id,
            request.webhook_event,
        )
        else {
            return (
                bad_request(
                    "MISSING_REQUIRED_PARAMETER",
                    "auth_algo, cert_url, transmission_id, transmission_sig, transmission_time, webhook_id and webhook_event are required.",
                ),
                Vec::new(),
            );
        };
        let verified = auth_algo == AUTH_ALGO
            && !cert_url.is_empty()
            && webhook_id == shared.config.webhook_id
            && fresh(&transmission_time)
            && signature_matches(
                &transmission_id,
                &transmission_time,
                &webhook_id,
                event.get().as_bytes(),
                &transmission_sig,
            );
        let status = if verified { "SUCCESS" } else { "FAILURE" };
        (
            Answer::json(StatusCode::OK, &json!({ "verification_status": status })),
            Vec::new(),
        )
    })
    .await
}

fn fresh(transmission_time: &str) -> bool {
    let Ok(at) = time::OffsetDateTime::parse(
        transmission_time,
        &time::format_description::well_known::Rfc3339,
    ) else {
        return false;
    };
    let skew = (time::OffsetDateTime::now_utc() - at).abs();
    skew <= MAX_TRANSMISSION_SKEW
}

fn signature_matches(
    transmission_id: &str,
    transmission_time: &str,
    webhook_id: &str,
    body: &[u8],
    signature: &str,
) -> bool {
    crate::paypal_signing::verify(
        transmission_id,
        transmission_time,
        webhook_id,
        body,
        signature,
    )
}

// -------------------------------------------------------------- webhooks

/// Sends automatic events per the webhook mode (after the answer is built;
/// delivery runs in its own task).
fn dispatch(shared: &Arc<Shared>, events: Vec<SignedEvent>) {
    if events.is_empty() {
        return;
    }
    let mode = {
        let mut data = shared.lock();
        if data.webhook_mode == WebhookMode::Hold {
            data.held.extend(events);
            return;
        }
        data.webhook_mode
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        for event in events {
            let _ = deliver(&shared, &event).await;
            if mode == WebhookMode::Duplicate {
                let again = resign(&shared, &event);
                let _ = deliver(&shared, &again).await;
            }
        }
    });
}

/// The same event (same id and body) in a new transmission.
fn resign(shared: &Shared, event: &SignedEvent) -> SignedEvent {
    SignedEvent {
        headers: shared.sign_at(&event.body, time::OffsetDateTime::now_utc()),
        ..event.clone()
    }
}

async fn deliver(shared: &Shared, event: &SignedEvent) -> Result<u16, String> {
    let target = shared.lock().webhook_target.clone();
    let result = match target {
        None => Err("no webhook target".to_owned()),
        Some(target) => {
            let mut request = shared
                .http
                .post(&target)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::USER_AGENT, "PayPal/AUHD-214.0-58794166")
                .body(event.body.clone());
            for (name, value) in &event.headers {
                request = request.header(name.as_str(), value.as_str());
            }
            match request.send().await {
                Ok(response) => Ok(response.status().as_u16()),
                Err(e) => Err(format!("delivery failed: {e}")),
            }
        }
    };
    let delivery = Delivery {
        event_id: event.event_id.clone(),
        event_type: event.event_type.clone(),
        status: result.as_ref().ok().copied(),
        error: result.as_ref().err().cloned(),
    };
    match &result {
        Ok(status) => {
            tracing::info!(event_id = %event.event_id, event_type = %event.event_type, status, "PayPal stand-in delivered a webhook")
        }
        Err(error) => {
            tracing::warn!(event_id = %event.event_id, event_type = %event.event_type, error, "PayPal stand-in could not deliver a webhook")
        }
    }
    shared.lock().deliveries.push(delivery);
    result
}

async fn flush_held(shared: &Shared, reverse: bool) -> Vec<Delivery> {
    let mut held = std::mem::take(&mut shared.lock().held);
    if reverse {
        held.reverse();
    }
    let mut out = Vec::with_capacity(held.len());
    for event in held {
        let event = resign(shared, &event);
        let result = deliver(shared, &event).await;
        out.push(Delivery {
            event_id: event.event_id,
            event_type: event.event_type,
            status: result.as_ref().ok().copied(),
            error: result.err(),
        });
    }
    out
}

// --------------------------------------------------------------- control

fn control_error(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

fn json_body(body: &[u8]) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice::<Value>(body).map_err(|_| "body must be JSON".to_owned())
}

fn optional_u64(body: &Value, field: &str) -> Result<Option<u64>, String> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("{field} must be a whole number")),
    }
}

fn optional_times(body: &Value) -> Result<Option<u32>, String> {
    optional_u64(body, "times")?
        .map(|t| u32::try_from(t).map_err(|_| "times is too large".to_owned()))
        .transpose()
}

async fn control_state(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.state_json()).into_response()
}

async fn control_fail(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
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

async fn control_capture_outcome(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
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

async fn control_approve(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
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

async fn control_settle(
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

async fn control_reverse(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match reverse_capture(&shared, &id) {
        Some(reversal_id) => Json(json!({"reversalId": reversal_id})).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no reversible capture with this id"})),
        )
            .into_response(),
    }
}

async fn control_webhooks(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
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

async fn control_webhooks_send(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
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

async fn control_webhooks_flush(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
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

async fn control_expire_tokens(State(shared): State<Arc<Shared>>) -> Response {
    shared.lock().tokens.clear();
    Json(json!({"expired": true})).into_response()
}

async fn control_reset(State(shared): State<Arc<Shared>>) -> Response {
    reset(&shared);
    Json(json!({ "reset": true })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn amounts_are_parsed_exactly() {
        assert_eq!(parse_cents("10"), Some(1000));
        assert_eq!(parse_cents("10.5"), Some(1050));
        assert_eq!(parse_cents("0.01"), Some(1));
        for bad in [
            "",
            "0",
            "0.00",
            "-1",
            "1.",
            ".5",
            "01",
            "1.001",
            "1e3",
            "abc",
            "99999999999",
        ] {
            assert_eq!(parse_cents(bad), None, "{bad}");
        }
        assert_eq!(money(1050), "10.50");
        assert_eq!(money(-5), "-0.05");
    }

    #[test]
    fn ids_look_like_paypal_ids() {
        let id = paypal_id();
        assert_eq!(id.len(), 17);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        );
        assert_ne!(paypal_id(), paypal_id());
    }

    #[test]
    fn times_are_rfc3339_seconds() {
        let at = time::macros::datetime!(2025-11-25 12:00:00.5 UTC);
        assert_eq!(rfc3339(at), "2025-11-25T12:00:00Z");
        assert_eq!(rfc3339_millis(at), "2025-11-25T12:00:00.500Z");
        assert!(fresh(&now()));
        assert!(!fresh("2020-01-01T00:00:00Z"));
        assert!(!fresh("yesterday"));
    }
}
