//! PayPal orders as we record them: one item per order, `pk=ORDER#<id>`,
//! written before the order id reaches the client and moved forward only
//! (created → capture_pending → completed | failed), always by a conditional
//! write, so retries, webhooks and the scheduled job never move it back.
//!
//! This module is the order's model; its item mapping, reads and the
//! conditional update builder live in [`crate::store::orders`] (re-exported
//! here).

use billing_money::{Tokens, Usd};
use ledger::UserId;

pub use crate::store::orders::{
    DELIVERY_CLAIMED, DELIVERY_PENDING, DELIVERY_REVIEW, ORDER_SK, OrderUpdate, load,
    load_with_history_sk,
};

/// What an order buys (stored as `credits` / `tokens`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum PurchaseKind {
    Credits,
    Tokens,
}

impl PurchaseKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether settling it talks to VirtFusion (token purchases deliver there).
    pub fn delivers_to_virtfusion(self) -> bool {
        self == PurchaseKind::Tokens
    }
}

/// Payment state of an order (stored snake_case: `capture_pending`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum PaymentStatus {
    /// Order created at PayPal; the buyer has not paid yet.
    Created,
    /// PayPal captured it as PENDING; the COMPLETED webhook settles it.
    CapturePending,
    /// Captured and settled: credits credited, or tokens owed (see [`Delivery`]).
    Completed,
    /// Declined or failed at PayPal; nothing is owed.
    Failed,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Where a paid token purchase stands with VirtFusion (stored snake_case).
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum Delivery {
    /// Owed; VirtFusion surely does not have it yet (retried by the job).
    Pending,
    /// One caller holds the claim and is talking to VirtFusion now.
    Delivering,
    Delivered,
    /// VirtFusion may or may not have it (timeout/5xx after sending): an admin decides.
    NeedsReview,
    /// The purchase was refunded: tokens taken back, or never delivered.
    Refunded,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub const ALL: [Delivery; 5] = [
        Delivery::Pending,
        Delivery::Delivering,
        Delivery::Delivered,
        Delivery::NeedsReview,
        Delivery::Refunded,
    ];
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRecord {
    pub order_id: String,
    pub user: UserId,
    pub kind: PurchaseKind,
    /// What the order was created for (the credited amount is what PayPal captured).
    pub amount: Usd,
    pub tokens: Option<Tokens>,
    /// Our purchase id (PayPal `invoice_id`).
    pub purchase_id: String,
    pub status: PaymentStatus,
    pub capture_id: Option<String>,
    pub captured_amount: Option<Usd>,
    /// Sum of the refunds (and reversals) applied so far.
    pub refunded_amount: Usd,
    /// Bumped after PayPal answered "not approved" (nothing captured), so the
    /// next capture uses a fresh `PayPal-Request-Id`; retries after an
    /// unknown outcome reuse the same one.
    pub capture_attempt: u32,
    pub delivery: Option<Delivery>,
    pub credit_id: Option<u64>,
    pub created_at: String,
    /// The last reversal (chargeback) applied, so the dispute's outcome can
    /// find what to restore.
    pub reversal_id: Option<String>,
    /// Token deliveries under review: why (uncertain outcome, partial refund,
    /// refund during delivery, ...).
    pub review_reason: Option<String>,
    /// Definite VirtFusion refusals so far (deliveries back off and go to
    /// review after [`crate::deliveries::MAX_DEFINITE_REFUSALS`]).
    pub delivery_attempts: u32,
}

impl OrderRecord {
    /// The `PayPal-Request-Id` of the next capture call.
    pub fn capture_request_id(&self) -> String {
        format!("capture-{}-{}", self.order_id, self.capture_attempt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_round_trip() {
        for delivery in Delivery::ALL {
            assert_eq!(delivery.as_str().parse::<Delivery>(), Ok(delivery));
        }
        assert_eq!(Delivery::NeedsReview.as_str(), "needs_review");
        for kind in [PurchaseKind::Credits, PurchaseKind::Tokens] {
            assert_eq!(kind.as_str().parse::<PurchaseKind>(), Ok(kind));
        }
        for status in ["created", "capture_pending", "completed", "failed"] {
            assert_eq!(
                status.parse::<PaymentStatus>().map(PaymentStatus::as_str),
                Ok(status)
            );
        }
        assert!("Completed".parse::<PaymentStatus>().is_err());
    }
}
