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
//!   `paypal/reporting.rs`);
//! - `POST /v1/notifications/verify-webhook-signature` →
//!   `{"verification_status": "SUCCESS" | "FAILURE"}`.
//!
//! Create, capture and refund honour `PayPal-Request-Id`: a request id seen
//! before (for the same order / capture) answers the first *successful*
//! response again and does nothing. (Errors are not replayed, so a capture
//! refused as not approved can be repeated with its request id once the
//! buyer approved — except a funding decline, which PayPal may replay; and
//! a simultaneous request with an id still in flight answers 409: see
//! [`behaviours`].) `Prefer: return=representation` gives the full resource,
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
//! [`signing`]). Its verify endpoint answers `SUCCESS` for a
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

mod after;
pub mod behaviours;
mod control;
mod handle;
mod oauth;
mod orders;
mod payments;
mod reporting;
mod server;
mod shapes;
pub mod signing;
#[cfg(test)]
mod tests;
mod webhooks;

pub use after::RefundSettlement;
pub use handle::serve_forever;
pub use reporting::{SeedOrder, SeededOrder};

use crate::listener::{Phase, Supervised};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

use behaviours::{Declines, InFlight};

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
    /// Chargebacks the merchant won (Transaction Search's `T1202` lines), by
    /// reversal id.
    #[serde(default)]
    disputes_won: BTreeMap<String, reporting::WonDispute>,
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
    /// After-purchase switches (pending refunds), see `after.rs`.
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

impl Supervised for Shared {
    fn phase(&self) -> &watch::Sender<Phase> {
        &self.phase
    }

    fn refuse_until(&self) -> Option<Instant> {
        self.lock().refuse_until
    }

    fn end_refusal_if_due(&self, until: Instant) {
        Shared::end_refusal_if_due(self, until);
    }
}
