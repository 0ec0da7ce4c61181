//! [`PayPalStandIn`], the in-process API of the stand-in (start, switches,
//! state, webhook delivery), and [`serve_forever`] for the `devstack` binary.

use super::orders::approve;
use super::payments::{reverse_capture, settle_capture};
use super::reporting;
use super::server::router;
use super::webhooks::{deliver, flush_held};
use super::{
    Book, CaptureOutcome, CaptureRecord, DELIVERY_TIMEOUT, Data, Delivery, EventType, Failure,
    Operation, OrderRecord, PayPalStandIn, Phase, RefundRecord, Shared, SignedEvent, StandInConfig,
    WebhookMode, sorted,
};
use crate::listener::supervise;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::behaviours::{Decline, InFlight};

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
        tokio::spawn(supervise(
            "PayPal",
            shared.clone(),
            listener,
            router(shared.clone()),
        ));
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
    /// funding decline (see [`super::behaviours`]); `None` stops it.
    pub fn set_capture_decline(&self, decline: Option<Decline>, times: Option<u32>) {
        self.shared.lock().declines.set(decline, times);
    }

    /// Each capture holds its answer this long while its `PayPal-Request-Id`
    /// is in flight; a simultaneous capture with the same id answers 409
    /// `PREVIOUS_REQUEST_IN_PROGRESS` (see [`super::behaviours`]).
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

pub(super) fn load_book(path: &std::path::Path) -> std::io::Result<Book> {
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

pub(super) fn reset(shared: &Shared) {
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
