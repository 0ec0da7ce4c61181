//! The PayPal stand-in after the purchase: refunds that stay `PENDING` and
//! settle later, refunds made "in the dashboard" (not through our API
//! client), chargebacks and disputes the merchant wins. A child module of
//! `paypal` (it uses the book and signing of the stand-in); its hooks there
//! are small.
//!
//! Events, shaped as PayPal sends them (resource type `refund` unless said):
//!
//! | what happens | event |
//! | --- | --- |
//! | a refund is created `PENDING` | `PAYMENT.REFUND.PENDING` |
//! | a pending refund completes / any refund completes | `PAYMENT.CAPTURE.REFUNDED` (status `COMPLETED`) |
//! | a pending refund fails / is cancelled | `PAYMENT.REFUND.FAILED` / `PAYMENT.REFUND.CANCELLED` (status `FAILED` / `CANCELLED`) |
//! | a chargeback | `PAYMENT.CAPTURE.REVERSED` (no `invoice_id` / `custom_id`, as PayPal's) |
//! | the merchant wins the dispute of a chargeback | `CUSTOMER.DISPUTE.RESOLVED` (resource type `dispute`, `dispute_outcome.outcome_code: RESOLVED_SELLER_FAVOUR`, `disputed_transactions[].seller_transaction_id` = the capture) |
//!
//! In Transaction Search a chargeback is a `T1201` line (it stays there when
//! the dispute is won) and a won dispute a `T1202` line (chargeback
//! reversal: the money back), see `reporting`.

use super::payments::record_refund;
use super::reporting::WonDispute;
use super::shapes::{amount_json, now, paypal_id, refund_json};
use super::webhooks::dispatch;
use super::{Data, EventType, PayPalStandIn, Shared, SignedEvent};
use serde_json::{Value, json};
use std::sync::Arc;

/// Switches of the after-purchase behaviour (kept with the stand-in's state).
#[derive(Clone, Debug, Default)]
pub(super) struct AfterState {
    /// The next refunds created through the API come back `PENDING`
    /// (`None`: no limit while `pending_refunds` is on).
    pending_refunds: bool,
    pending_left: Option<u32>,
}

/// How a pending refund ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefundSettlement {
    Completed,
    Failed,
    Cancelled,
}

impl RefundSettlement {
    fn status(self) -> &'static str {
        match self {
            RefundSettlement::Completed => "COMPLETED",
            RefundSettlement::Failed => "FAILED",
            RefundSettlement::Cancelled => "CANCELLED",
        }
    }

    fn event_type(self) -> &'static str {
        match self {
            RefundSettlement::Completed => "PAYMENT.CAPTURE.REFUNDED",
            RefundSettlement::Failed => "PAYMENT.REFUND.FAILED",
            RefundSettlement::Cancelled => "PAYMENT.REFUND.CANCELLED",
        }
    }
}

/// Hook for the refund API: marks the new refund `PENDING` if the switch
/// says so; true when it did.
pub(super) fn take_pending(data: &mut Data, refund_id: &str) -> bool {
    let state = &mut data.after;
    if !state.pending_refunds {
        return false;
    }
    if let Some(left) = state.pending_left.as_mut() {
        *left = left.saturating_sub(1);
        if *left == 0 {
            state.pending_refunds = false;
            state.pending_left = None;
        }
    }
    match data.book.refunds.get_mut(refund_id) {
        Some(refund) => {
            refund.status = "PENDING".into();
            true
        }
        None => false,
    }
}

/// A refund event of any type about the refund `refund_id` as it is now.
pub(super) fn refund_event(
    shared: &Shared,
    data: &Data,
    event_type: &str,
    refund_id: &str,
) -> Option<SignedEvent> {
    let refund = data.book.refunds.get(refund_id)?;
    Some(shared.signed(event_type, "refund", refund_json(refund, &shared.base_url)))
}

fn dispute_resolved_resource(data: &Data, reversal_id: &str, outcome: &str) -> Option<Value> {
    let reversal = data.book.refunds.get(reversal_id)?;
    let time = now();
    let dispute_id = format!("PP-D-{}", &reversal.id);
    Some(json!({
        "dispute_id": dispute_id,
        "create_time": reversal.create_time,
        "update_time": time,
        "disputed_transactions": [{
            "seller_transaction_id": reversal.capture_id,
            "seller": {"merchant_id": "STANDINMERCHANT1", "name": "Stand-in Store"},
            "items": [],
            "seller_protection_eligible": true,
        }],
        "reason": "UNAUTHORISED",
        "status": "RESOLVED",
        "dispute_amount": amount_json(reversal.amount_cents),
        "dispute_outcome": {
            "outcome_code": outcome,
            "amount_refunded": amount_json(0),
        },
        "dispute_life_cycle_stage": "CHARGEBACK",
        "dispute_channel": "EXTERNAL",
        "links": [{"href": format!("/v1/customer/disputes/{dispute_id}"), "rel": "self", "method": "GET"}],
    }))
}

impl PayPalStandIn {
    /// The next `times` refunds created through the API (all while `None`)
    /// come back `PENDING` (eCheck, low merchant balance), with
    /// `PAYMENT.REFUND.PENDING`; settle them with [`Self::settle_refund`].
    pub fn set_pending_refunds(&self, on: bool, times: Option<u32>) {
        let mut data = self.shared.lock();
        data.after.pending_refunds = on && times != Some(0);
        data.after.pending_left = times;
    }

    /// A `PENDING` refund completes, fails or is cancelled (failed and
    /// cancelled refunds give the capture its money back), with its webhook
    /// when automatic. False if it is not a pending refund.
    pub fn settle_refund(&self, refund_id: &str, outcome: RefundSettlement) -> bool {
        settle_refund(&self.shared, refund_id, outcome)
    }

    /// A refund made in PayPal's dashboard (not through the API): what
    /// remains, or `cents`; sends `PAYMENT.CAPTURE.REFUNDED` when automatic.
    /// `None` for an unknown, unrefundable or exceeded capture.
    pub fn dashboard_refund(&self, capture_id: &str, cents: Option<i64>) -> Option<String> {
        let mut data = self.shared.lock();
        let capture = data.book.captures.get(capture_id).cloned()?;
        let remaining = capture.amount_cents - capture.refunded_cents;
        let amount = cents.unwrap_or(remaining);
        if amount <= 0
            || amount > remaining
            || !matches!(capture.status.as_str(), "COMPLETED" | "PARTIALLY_REFUNDED")
        {
            return None;
        }
        let refund_id = record_refund(&mut data, &capture, amount, None, false);
        let event = data
            .auto_webhooks
            .then(|| {
                self.shared
                    .event_for(&data, EventType::CaptureRefunded, &refund_id)
            })
            .flatten();
        self.shared.save(&data);
        drop(data);
        dispatch(&self.shared, event.into_iter().collect());
        Some(refund_id)
    }

    /// The merchant won the dispute of the chargeback `reversal_id`: PayPal
    /// returns the money (the capture gets it back) and reports
    /// `CUSTOMER.DISPUTE.RESOLVED` (`RESOLVED_SELLER_FAVOUR`) when automatic.
    /// Returns that event (also when not automatic); `None` if not a reversal.
    pub fn win_dispute(&self, reversal_id: &str) -> Option<SignedEvent> {
        let mut data = self.shared.lock();
        let reversal = data.book.refunds.get_mut(reversal_id)?;
        if !reversal.reversal || reversal.status == "CANCELLED" {
            return None;
        }
        reversal.status = "CANCELLED".into();
        let (capture_id, amount) = (reversal.capture_id.clone(), reversal.amount_cents);
        let (custom_id, invoice_id) = (reversal.custom_id.clone(), reversal.invoice_id.clone());
        give_back(&mut data, &capture_id, amount);
        let seq = data.book.seq();
        data.book.disputes_won.insert(
            reversal_id.to_owned(),
            WonDispute {
                id: paypal_id(),
                capture_id,
                amount_cents: amount,
                custom_id,
                invoice_id,
                create_time: now(),
                seq,
            },
        );
        let resource = dispute_resolved_resource(&data, reversal_id, "RESOLVED_SELLER_FAVOUR")?;
        let event = self
            .shared
            .signed("CUSTOMER.DISPUTE.RESOLVED", "dispute", resource);
        let auto = data.auto_webhooks;
        self.shared.save(&data);
        drop(data);
        if auto {
            dispatch(&self.shared, vec![event.clone()]);
        }
        Some(event)
    }

    /// `event_type` (`PAYMENT.REFUND.PENDING`, `PAYMENT.REFUND.FAILED`, ...)
    /// about the refund `refund_id` as it is now, signed, not delivered.
    pub fn signed_refund_event(&self, event_type: &str, refund_id: &str) -> Option<SignedEvent> {
        let data = self.shared.lock();
        refund_event(&self.shared, &data, event_type, refund_id)
    }

    /// A fresh refund id that PayPal never issued (for "unknown" events).
    pub fn unknown_id(&self) -> String {
        paypal_id()
    }
}

/// A failed or cancelled refund, or a won dispute: the capture's money back.
fn give_back(data: &mut Data, capture_id: &str, cents: i64) {
    if let Some(capture) = data.book.captures.get_mut(capture_id) {
        capture.refunded_cents = (capture.refunded_cents - cents).max(0);
        capture.status = if capture.refunded_cents == 0 {
            "COMPLETED".into()
        } else {
            "PARTIALLY_REFUNDED".into()
        };
        capture.update_time = now();
    }
}

fn settle_refund(shared: &Arc<Shared>, refund_id: &str, outcome: RefundSettlement) -> bool {
    let mut data = shared.lock();
    let Some(refund) = data.book.refunds.get_mut(refund_id) else {
        return false;
    };
    if refund.status != "PENDING" {
        return false;
    }
    refund.status = outcome.status().into();
    let (capture_id, amount) = (refund.capture_id.clone(), refund.amount_cents);
    if outcome != RefundSettlement::Completed {
        give_back(&mut data, &capture_id, amount);
    }
    let event = data
        .auto_webhooks
        .then(|| refund_event(shared, &data, outcome.event_type(), refund_id))
        .flatten();
    shared.save(&data);
    drop(data);
    dispatch(shared, event.into_iter().collect());
    true
}
