//! One simulated world: one table on DynamoDB Local, one PayPal and one
//! VirtFusion stand-in, many users. Runs the steps of `super` through the
//! real handlers (`TestApi`) and the stand-ins' controls. A step whose
//! target does not exist (yet) does nothing. Webhooks never go out by
//! themselves: each change at PayPal puts its event on the user's queue, and
//! the `Webhook` steps deliver, duplicate, reorder or lose them.

use super::{CaptureMode, Retry, Settle, Step, VfMode, WebhookAction};
use crate::api::{TestApi, TestResponse};
use devstack::paypal::{
    CaptureOutcome, EventType, Failure, Operation, RefundRecord, RefundSettlement, SignedEvent,
};
use devstack::virtfusion::FailureMode;
use ledger::UserId;
use serde_json::{Value, json};

pub const CREDITS: &str = "/api/billing/custom-credits";
pub const TOKENS: &str = "/api/billing/virtfusion-tokens";
pub const ADMIN: &str = "900";
/// The DNS plans of a fresh stack and their prices in cents.
pub const DNS_PLANS: [(&str, i64); 3] = [("basic", 500), ("pro", 1500), ("enterprise", 5000)];

/// A check that failed: what was seen, for the report.
pub type Outcome = Result<(), String>;

pub struct Purchase {
    pub order_id: String,
    pub tokens: bool,
    /// The last capture status seen at PayPal (its event is queued on change).
    seen: Option<String>,
}

pub struct SimUser {
    pub id: UserId,
    pub(super) token: String,
    pub purchases: Vec<Purchase>,
    /// Webhook events PayPal has not delivered yet (held back).
    pub queue: Vec<SignedEvent>,
    /// Admin grants and removals of credits, service charges and DNS
    /// purchases that the answers said happened, in cents (+ in, − out).
    pub adjust_cents: i64,
    /// Admin token grants asked for (one per idempotency key).
    pub grant_intents: u32,
    pub(super) intents: u32,
}

pub struct World {
    pub api: TestApi,
    pub users: Vec<SimUser>,
    /// A user outside every lifecycle, with credits: must never change.
    pub bystander: UserId,
    pub bystander_cents: i64,
    pub(super) jobs: i64,
    vf_fault_steps: u8,
    /// Known paths left alone (`SIM_AVOID`, see [`World::avoids`]).
    avoid: Vec<String>,
    /// One line per step: what happened (printed with a failure).
    pub trace: Vec<String>,
}

pub(super) fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn vf_failure(mode: VfMode) -> FailureMode {
    match mode {
        VfMode::Answered => FailureMode::None,
        VfMode::Status500 => FailureMode::Status(500),
        VfMode::Busy => FailureMode::Status(429),
        VfMode::ApplyThenHang => FailureMode::ApplyThenHang,
        VfMode::Refusing => FailureMode::Refuse(None),
    }
}

/// Settled, money moved: the statuses of a capture that PayPal captured.
pub fn captured_status(status: &str) -> bool {
    matches!(status, "COMPLETED" | "PARTIALLY_REFUNDED" | "REFUNDED")
}

impl World {
    pub async fn new(lifecycles: usize) -> World {
        let api = TestApi::new().await;
        billing::dns::seed_default_plans(&api.ledger())
            .await
            .expect("seed DNS plans");
        let users = (0..lifecycles)
            .map(|_| {
                let id = crate::new_user();
                let token = api.token(id.as_str(), false);
                SimUser {
                    id,
                    token,
                    purchases: Vec::new(),
                    queue: Vec::new(),
                    adjust_cents: 0,
                    grant_intents: 0,
                    intents: 0,
                }
            })
            .collect();
        let bystander = crate::new_user();
        let world = World {
            api,
            users,
            bystander: bystander.clone(),
            bystander_cents: 1234,
            jobs: 0,
            vf_fault_steps: 0,
            avoid: std::env::var("SIM_AVOID")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            trace: Vec::new(),
        };
        let admin = world.api.token(ADMIN, true);
        let granted = world
            .api
            .send(
                "POST",
                &format!("/api/admin/users/{bystander}/custom-credits"),
                &admin,
                r#"{"amount": "12.34", "reason": "bystander"}"#,
            )
            .await;
        assert_eq!(granted.status, 200, "{:?}", granted.body);
        world
    }

    /// Whether the run leaves a known path alone (`SIM_AVOID`, comma
    /// separated), to look for other defects while a known one is open:
    /// `token_partial_refund` (no partial refund of a token purchase),
    /// `token_pending_refund` (admin refunds of token purchases complete at
    /// once), `edited_retry` (a retried admin refund keeps its body),
    /// `early_dispute` (a dispute is won only once its reversal is recorded),
    /// `token_review` (VirtFusion never answers 500 or hangs after applying
    /// at a purchase, and no VirtFusion faults for others' calls: no token
    /// delivery or revocation goes to review).
    pub fn avoids(&self, path: &str) -> bool {
        self.avoid.iter().any(|a| a == path)
    }

    /// Under `token_review`, the VirtFusion answers that lead to review
    /// become a 429 (surely not applied).
    fn calm(&self, mode: VfMode) -> VfMode {
        match mode {
            VfMode::Status500 | VfMode::ApplyThenHang if self.avoids("token_review") => {
                VfMode::Busy
            }
            other => other,
        }
    }

    fn is_tokens(&self, u: usize, p: usize) -> bool {
        let purchases = &self.users[u].purchases;
        !purchases.is_empty() && purchases[p % purchases.len()].tokens
    }

    pub(super) fn note(&mut self, line: String) {
        self.trace.push(line);
    }

    /// Runs one step; `Err` when a check made during the step fails.
    pub async fn step(&mut self, step: Step) -> Outcome {
        let result = self.run(step).await;
        if self.vf_fault_steps > 0 {
            self.vf_fault_steps -= 1;
            if self.vf_fault_steps == 0 {
                self.api.virtfusion.clear_failure();
            }
        }
        result
    }

    async fn run(&mut self, step: Step) -> Outcome {
        let n = self.users.len();
        match step {
            Step::Buy {
                u,
                tokens,
                cents,
                capture,
                vf,
            } => {
                let vf = self.calm(vf);
                self.buy(u % n, tokens, cents, capture, vf).await
            }
            Step::RetryCapture { u, p } => {
                let Some(order) = self.order_id(u % n, p) else {
                    return Ok(());
                };
                let response = self.capture(u % n, p).await;
                self.note(format!("retry capture {order}: {}", response.status));
                self.observe(u % n, p);
                Ok(())
            }
            Step::SettleCapture { u, p, complete } => {
                let Some(capture) = self.capture_with(u % n, p, |s| s == "PENDING") else {
                    return Ok(());
                };
                let outcome = if complete {
                    CaptureOutcome::Completed
                } else {
                    CaptureOutcome::Declined
                };
                self.api.paypal.settle_capture(&capture, outcome);
                self.note(format!("PayPal settles capture {capture}: {outcome:?}"));
                self.observe(u % n, p);
                Ok(())
            }
            Step::Webhook { u, r, action } => self.webhook(u % n, r, action).await,
            Step::FlushWebhooks { u, reversed } => {
                if reversed {
                    self.users[u % n].queue.reverse();
                }
                self.flush_user(u % n).await
            }
            Step::DashboardRefund { u, p, percent } => {
                if percent.is_some()
                    && self.is_tokens(u % n, p)
                    && self.avoids("token_partial_refund")
                {
                    return Ok(());
                }
                self.dashboard_refund(u % n, p, percent);
                Ok(())
            }
            Step::AdminRefund {
                u,
                p,
                percent,
                pending,
                lost_answer,
                retry,
            } => {
                let tokens = self.is_tokens(u % n, p);
                if percent.is_some() && tokens && self.avoids("token_partial_refund") {
                    return Ok(());
                }
                let pending = pending && !(tokens && self.avoids("token_pending_refund"));
                let retry = if retry == Retry::Edited && self.avoids("edited_retry") {
                    Retry::Same
                } else {
                    retry
                };
                self.admin_refund(u % n, p, percent, pending, lost_answer, retry)
                    .await
            }
            Step::SettleRefund { u, r, outcome } => {
                let pending: Vec<RefundRecord> = self
                    .refunds_of(u % n)
                    .into_iter()
                    .filter(|r| r.status == "PENDING")
                    .collect();
                if pending.is_empty() {
                    return Ok(());
                }
                let refund = &pending[r % pending.len()];
                self.settle_refund(u % n, &refund.id, outcome);
                Ok(())
            }
            Step::Reverse { u, p } => {
                let Some(capture) = self.capture_with(u % n, p, captured_status) else {
                    return Ok(());
                };
                if let Some(id) = self.api.paypal.reverse_capture(&capture) {
                    self.note(format!("chargeback {id} of {capture}"));
                    let event = self
                        .api
                        .paypal
                        .signed_event(EventType::CaptureReversed, &id);
                    self.hold(u % n, event);
                }
                Ok(())
            }
            Step::WinDispute { u, r } => {
                let reversals: Vec<RefundRecord> = self
                    .refunds_of(u % n)
                    .into_iter()
                    .filter(|r| r.reversal && r.status == "COMPLETED")
                    .collect();
                if reversals.is_empty() {
                    return Ok(());
                }
                let reversal = reversals[r % reversals.len()].id.clone();
                if self.avoids("early_dispute")
                    && billing::store::refunds::load(&self.api.ledger(), &reversal)
                        .await
                        .ok()
                        .flatten()
                        .is_none()
                {
                    return Ok(());
                }
                let event = self.api.paypal.win_dispute(&reversal);
                self.note(format!("dispute of {reversal} won"));
                self.hold(u % n, event);
                Ok(())
            }
            Step::VfFault { mode, times } => {
                if self.avoids("token_review") {
                    // A failed revocation goes to review too.
                    return Ok(());
                }
                self.api
                    .virtfusion
                    .set_failure(vf_failure(mode), Some(u32::from(times)));
                self.vf_fault_steps = 4;
                self.note(format!("VirtFusion {mode:?} for {times} calls"));
                Ok(())
            }
            Step::DeliveryJob => self.delivery_job().await,
            Step::SettleReviews => self.settle_reviews().await,
            Step::Reconcile => self.reconcile().await,
            Step::AdminCredits { u, cents, grant } => self.admin_credits(u % n, cents, grant).await,
            Step::AdminTokenGrant {
                u,
                tokens,
                lost_answer,
            } => self.admin_token_grant(u % n, tokens, lost_answer).await,
            Step::AdminTokenRemove { u, r } => self.admin_token_remove(u % n, r).await,
            Step::ServiceCharge { u, cents, retried } => {
                self.service_charge(u % n, cents, retried).await
            }
            Step::DnsPurchase { u, plan } => {
                let (plan, price) = DNS_PLANS[usize::from(plan) % DNS_PLANS.len()];
                let token = self.users[u % n].token.clone();
                let response = self
                    .api
                    .send(
                        "POST",
                        &format!("/api/dns/plans/{plan}/purchase"),
                        &token,
                        "",
                    )
                    .await;
                self.note(format!("DNS {plan} for u{}: {}", u % n, response.status));
                match response.status {
                    200 => self.users[u % n].adjust_cents -= price,
                    402 | 409 => {}
                    other => {
                        return Err(format!(
                            "[answer] DNS purchase answered {other}: {}",
                            response.body
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    // ------------------------------------------------------------ purchases

    fn order_id(&self, u: usize, p: usize) -> Option<String> {
        let purchases = &self.users[u].purchases;
        (!purchases.is_empty()).then(|| purchases[p % purchases.len()].order_id.clone())
    }

    /// The capture of purchase `p` whose status `pred` accepts.
    fn capture_with(&self, u: usize, p: usize, pred: impl Fn(&str) -> bool) -> Option<String> {
        let order = self.order_id(u, p)?;
        let record = self.api.paypal.order(&order)?;
        record.capture_ids.iter().find_map(|id| {
            let capture = self.api.paypal.capture(id)?;
            pred(&capture.status).then(|| capture.id.clone())
        })
    }

    /// Every refund and reversal of the user's captures, as PayPal has them.
    pub fn refunds_of(&self, u: usize) -> Vec<RefundRecord> {
        let captures: Vec<String> = self.users[u]
            .purchases
            .iter()
            .filter_map(|p| self.api.paypal.order(&p.order_id))
            .flat_map(|o| o.capture_ids)
            .collect();
        self.api
            .paypal
            .refunds()
            .into_iter()
            .filter(|r| captures.contains(&r.capture_id))
            .collect()
    }

    fn hold(&mut self, u: usize, event: Option<SignedEvent>) {
        if let Some(event) = event {
            self.users[u].queue.push(event);
        }
    }

    /// Queues the event PayPal sends when a capture of purchase `p` changed.
    fn observe(&mut self, u: usize, p: usize) {
        let purchases = &self.users[u].purchases;
        if purchases.is_empty() {
            return;
        }
        let p = p % purchases.len();
        let Some(order) = self.api.paypal.order(&purchases[p].order_id) else {
            return;
        };
        let Some(capture) = order
            .capture_ids
            .first()
            .and_then(|id| self.api.paypal.capture(id))
        else {
            return;
        };
        if self.users[u].purchases[p].seen.as_deref() == Some(capture.status.as_str()) {
            return;
        }
        let event_type = match capture.status.as_str() {
            "PENDING" => Some(EventType::CapturePending),
            "DECLINED" => Some(EventType::CaptureDenied),
            "COMPLETED" => Some(EventType::CaptureCompleted),
            // Refunded since: its events come with the refunds.
            _ => None,
        };
        self.users[u].purchases[p].seen = Some(capture.status.clone());
        if let Some(event_type) = event_type {
            let event = self.api.paypal.signed_event(event_type, &capture.id);
            self.hold(u, event);
        }
    }

    async fn capture(&self, u: usize, p: usize) -> TestResponse {
        let purchase = &self.users[u].purchases[p % self.users[u].purchases.len()];
        let route = if purchase.tokens { TOKENS } else { CREDITS };
        self.api
            .send(
                "POST",
                &format!("{route}/capture"),
                &self.users[u].token,
                &json!({"orderId": purchase.order_id}).to_string(),
            )
            .await
    }

    async fn buy(
        &mut self,
        u: usize,
        tokens: bool,
        cents: i64,
        capture: CaptureMode,
        vf: VfMode,
    ) -> Outcome {
        let route = if tokens { TOKENS } else { CREDITS };
        let token = self.users[u].token.clone();
        let added = self
            .api
            .send(
                "POST",
                &format!("{route}/add"),
                &token,
                &format!(r#"{{"amount": {}}}"#, money(cents)),
            )
            .await;
        if added.status != 200 {
            return Err(format!(
                "[answer] add answered {}: {}",
                added.status, added.body
            ));
        }
        let order_id = added.body["orderId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.api.paypal.approve(&order_id);
        self.users[u].purchases.push(Purchase {
            order_id: order_id.clone(),
            tokens,
            seen: None,
        });
        let p = self.users[u].purchases.len() - 1;
        let paypal = &self.api.paypal;
        match capture {
            CaptureMode::Answered => {}
            CaptureMode::LostAfterApplying => {
                paypal.set_failure(Operation::CaptureOrder, Failure::ApplyThenHang, Some(1));
            }
            CaptureMode::Failed => {
                paypal.set_failure(Operation::CaptureOrder, Failure::Status(500), Some(1));
            }
            CaptureMode::Pending => paypal.set_capture_outcome(CaptureOutcome::Pending, Some(1)),
            CaptureMode::Declined => paypal.set_capture_outcome(CaptureOutcome::Declined, Some(1)),
        }
        if vf != VfMode::Answered {
            self.api.virtfusion.set_failure(vf_failure(vf), Some(1));
        }
        let response = self.capture(u, p).await;
        self.api.paypal.clear_failures();
        self.api
            .paypal
            .set_capture_outcome(CaptureOutcome::Completed, None);
        if vf != VfMode::Answered {
            self.api.virtfusion.clear_failure();
        }
        self.note(format!(
            "u{u} buys {} {} ({capture:?}, VirtFusion {vf:?}): {} {}",
            if tokens { "tokens" } else { "credits" },
            money(cents),
            response.status,
            response.body["status"]
        ));
        self.observe(u, p);
        Ok(())
    }

    // ------------------------------------------------------------- webhooks

    /// Delivers as PayPal does; the status.
    pub async fn deliver(&self, event: &SignedEvent) -> TestResponse {
        let headers: Vec<(&str, &str)> = event
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let body = String::from_utf8_lossy(&event.body).into_owned();
        self.api
            .call("POST", "/webhooks/paypal", None, Some(&body), &headers)
            .await
    }

    async fn webhook(&mut self, u: usize, r: usize, action: WebhookAction) -> Outcome {
        let queue_len = self.users[u].queue.len();
        if queue_len == 0 {
            return Ok(());
        }
        let i = r % queue_len;
        let event = self.users[u].queue[i].clone();
        if action == WebhookAction::Lose {
            self.users[u].queue.remove(i);
            self.note(format!("webhook {} lost", event.event_type));
            return Ok(());
        }
        let response = self.deliver(&event).await;
        self.note(format!(
            "webhook {} {:?}: {} {}",
            event.event_type, action, response.status, response.body["outcome"]
        ));
        if action == WebhookAction::Deliver && response.status == 200 {
            self.users[u].queue.remove(i);
        }
        if response.status != 200 && response.status < 500 {
            return Err(format!(
                "[webhook] {} answered {}: {}",
                event.event_type, response.status, response.body
            ));
        }
        Ok(())
    }

    /// Delivers every held event in order (a 5xx is redelivered, as PayPal
    /// does, a few times).
    pub async fn flush_webhooks(&mut self) -> Outcome {
        for u in 0..self.users.len() {
            self.flush_user(u).await?;
        }
        Ok(())
    }

    async fn flush_user(&mut self, u: usize) -> Outcome {
        let queue = std::mem::take(&mut self.users[u].queue);
        for event in queue {
            let mut last = None;
            for _ in 0..4 {
                let response = self.deliver(&event).await;
                if response.status == 200 {
                    last = None;
                    break;
                }
                last = Some((response.status, response.body));
            }
            if let Some((status, body)) = last {
                return Err(format!(
                    "[webhook] {} of u{u} never accepted: {status} {body}",
                    event.event_type
                ));
            }
            self.note(format!("flushed webhook {} of u{u}", event.event_type));
        }
        Ok(())
    }

    // -------------------------------------------------------------- refunds

    fn dashboard_refund(&mut self, u: usize, p: usize, percent: Option<u8>) {
        let Some(capture_id) = self.capture_with(u, p, captured_status) else {
            return;
        };
        let Some(capture) = self.api.paypal.capture(&capture_id) else {
            return;
        };
        let cents = percent.map(|pc| (capture.amount_cents * i64::from(pc) / 100).max(1));
        if let Some(id) = self.api.paypal.dashboard_refund(&capture_id, cents) {
            self.note(format!("dashboard refund {id} of {capture_id}: {cents:?}"));
            let event = self
                .api
                .paypal
                .signed_event(EventType::CaptureRefunded, &id);
            self.hold(u, event);
        }
    }

    async fn admin_refund_call(&self, body: &Value, key: &str) -> TestResponse {
        let token = self.api.token(ADMIN, true);
        let headers = [
            ("content-type", "application/json"),
            ("idempotency-key", key),
        ];
        self.api
            .call(
                "POST",
                "/api/admin/refunds",
                Some(&token),
                Some(&body.to_string()),
                &headers,
            )
            .await
    }

    async fn admin_refund(
        &mut self,
        u: usize,
        p: usize,
        percent: Option<u8>,
        pending: bool,
        lost_answer: bool,
        retry: Retry,
    ) -> Outcome {
        let Some(order_id) = self.order_id(u, p) else {
            return Ok(());
        };
        let amount_cents = self
            .api
            .paypal
            .order(&order_id)
            .map(|o| o.amount_cents)
            .unwrap_or(0);
        self.users[u].intents += 1;
        let key = format!("sim-{}-{}", self.users[u].id, self.users[u].intents);
        let mut body = json!({"orderId": order_id, "reason": "simulated refund"});
        if let Some(pc) = percent {
            body["amount"] = json!(money((amount_cents * i64::from(pc) / 100).max(1)));
        }
        let before: Vec<String> = self.refunds_of(u).into_iter().map(|r| r.id).collect();
        if pending {
            self.api.paypal.set_pending_refunds(true, Some(1));
        }
        if lost_answer {
            self.api
                .paypal
                .set_failure(Operation::Refund, Failure::ApplyThenHang, Some(1));
        }
        let first = self.admin_refund_call(&body, &key).await;
        self.api.paypal.clear_failures();
        self.api.paypal.set_pending_refunds(false, None);
        let mut line = format!(
            "admin refund {key} of {order_id} {:?} (pending {pending}, lost {lost_answer}): {} {}",
            body.get("amount"),
            first.status,
            first.body["status"]
        );
        if lost_answer && retry != Retry::None {
            if retry == Retry::Edited {
                body["reason"] = json!("simulated refund, reason edited on retry");
            }
            let again = self.admin_refund_call(&body, &key).await;
            line.push_str(&format!("; retried {retry:?}: {}", again.status));
        }
        self.note(line);
        let new: Vec<RefundRecord> = self
            .refunds_of(u)
            .into_iter()
            .filter(|r| !before.contains(&r.id))
            .collect();
        for refund in &new {
            let event = if refund.status == "PENDING" {
                self.api
                    .paypal
                    .signed_refund_event("PAYMENT.REFUND.PENDING", &refund.id)
            } else {
                self.api
                    .paypal
                    .signed_event(EventType::CaptureRefunded, &refund.id)
            };
            self.hold(u, event);
        }
        if new.len() > 1 {
            return Err(format!(
                "[refund-once] one admin refund intent ({key}) became {} PayPal refunds",
                new.len()
            ));
        }
        Ok(())
    }

    pub fn settle_refund(&mut self, u: usize, refund_id: &str, outcome: Settle) {
        let settlement = match outcome {
            Settle::Completed => RefundSettlement::Completed,
            Settle::Failed => RefundSettlement::Failed,
            Settle::Cancelled => RefundSettlement::Cancelled,
        };
        if !self.api.paypal.settle_refund(refund_id, settlement) {
            return;
        }
        self.note(format!("PayPal settles refund {refund_id}: {outcome:?}"));
        let event = match outcome {
            Settle::Completed => self
                .api
                .paypal
                .signed_event(EventType::CaptureRefunded, refund_id),
            Settle::Failed => self
                .api
                .paypal
                .signed_refund_event("PAYMENT.REFUND.FAILED", refund_id),
            Settle::Cancelled => self
                .api
                .paypal
                .signed_refund_event("PAYMENT.REFUND.CANCELLED", refund_id),
        };
        self.hold(u, event);
    }

    /// PayPal settles whatever is still pending (captures complete, refunds
    /// complete), as it eventually does.
    pub fn settle_everything_pending(&mut self) {
        for u in 0..self.users.len() {
            for p in 0..self.users[u].purchases.len() {
                if let Some(capture) = self.capture_with(u, p, |s| s == "PENDING") {
                    self.api
                        .paypal
                        .settle_capture(&capture, CaptureOutcome::Completed);
                    self.observe(u, p);
                }
            }
            let pending: Vec<String> = self
                .refunds_of(u)
                .into_iter()
                .filter(|r| r.status == "PENDING")
                .map(|r| r.id)
                .collect();
            for id in pending {
                self.settle_refund(u, &id, Settle::Completed);
            }
        }
    }
}
