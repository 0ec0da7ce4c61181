//! PayPal orders as we record them: one item per order, `pk=ORDER#<id>`,
//! written before the order id reaches the client and moved forward only
//! (created → capture_pending → completed | failed), always by a conditional
//! write, so retries, webhooks and the scheduled job never move it back.
//!
//! This module is the order's model; its item mapping, reads and the
//! conditional update builder live in [`crate::store::orders`] (re-exported
//! here).

use crate::idempotency::StoredResponse;
use billing_money::{Tokens, Usd};
use ledger::UserId;
use serde_json::json;

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

/// What a settled capture came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// Custom credits credited (now or earlier); `balance` is today's.
    Credited { amount: Usd, balance: Usd },
    /// Tokens paid; where their delivery stands.
    Tokens { tokens: Tokens, delivery: Delivery },
    /// PayPal holds the payment as PENDING; the COMPLETED webhook settles it.
    PaymentPending { amount: Usd },
}

impl Settlement {
    /// The capture routes' response.
    pub fn response(&self) -> StoredResponse {
        match self {
            Settlement::Credited { amount, balance } => StoredResponse {
                status: 200,
                body: json!({ "success": true, "amount": amount, "balance": balance }),
            },
            Settlement::Tokens { tokens, delivery } => {
                let (status, label) = match delivery {
                    Delivery::Delivered => (200, "completed"),
                    Delivery::Refunded => (200, "refunded"),
                    Delivery::NeedsReview => (202, "needs_review"),
                    Delivery::Pending | Delivery::Delivering => (202, "pending"),
                };
                StoredResponse {
                    status,
                    body: json!({ "success": true, "tokens": tokens.get(), "status": label }),
                }
            }
            Settlement::PaymentPending { amount } => StoredResponse {
                status: 202,
                body: json!({ "success": true, "status": "pending", "amount": amount }),
            },
        }
    }
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
    /// Sum of the refunds (and reversals) applied so far, pending ones included.
    pub refunded_amount: Usd,
    /// Token purchases: the completed refunds and reversals not won — the
    /// part of the capture the user no longer owns. Pending refunds are not
    /// in it: they never take tokens back (see [`crate::tokens`]). `None` on
    /// orders written before it was recorded: see [`Self::completed_refunds`].
    pub refunds_completed: Option<Usd>,
    /// Bumped after PayPal answered "not approved" (nothing captured), so the
    /// next capture uses a fresh `PayPal-Request-Id`; retries after an
    /// unknown outcome reuse the same one.
    pub capture_attempt: u32,
    pub delivery: Option<Delivery>,
    /// The VirtFusion credit this purchase holds there now, if any.
    pub credit_id: Option<u64>,
    /// How many tokens that credit holds (absent on orders delivered before
    /// it was recorded: then the whole purchase).
    pub credit_tokens: Option<Tokens>,
    /// Tokens of the VirtFusion call whose outcome is unknown (a delivery
    /// under review): what its credit holds if the admin finds one.
    pub sending_tokens: Option<Tokens>,
    /// Credits of this purchase VirtFusion holds besides `creditId` (a late
    /// answer after the purchase moved on): the next delivery removes them.
    pub stray_credits: Vec<u64>,
    pub created_at: String,
    /// The last reversal (chargeback) applied, so the dispute's outcome can
    /// find what to restore.
    pub reversal_id: Option<String>,
    /// Token deliveries under review: why (uncertain outcome, partial refund,
    /// refund during delivery, ...).
    pub review_reason: Option<String>,
    /// Definite VirtFusion refusals so far (deliveries back off and go to
    /// review after [`crate::tokens::review::MAX_DEFINITE_REFUSALS`]).
    pub delivery_attempts: u32,
}

impl OrderRecord {
    /// Tokens this purchase owes at VirtFusion now (see [`crate::tokens::owed`]).
    pub fn owed_tokens(&self) -> Tokens {
        crate::tokens::owed(
            self.tokens.unwrap_or_else(|| self.amount.to_tokens()),
            self.captured_amount.unwrap_or(self.amount),
            self.completed_refunds(),
        )
    }

    /// [`Self::refunds_completed`]; on an order written before it was
    /// recorded, everything refunded so far counts as completed (refunds
    /// pending then were rare; one that fails later lowers `refundedAmount`
    /// and with it this).
    pub fn completed_refunds(&self) -> Usd {
        self.refunds_completed.unwrap_or(self.refunded_amount)
    }

    /// Tokens VirtFusion holds from this purchase, as far as we know.
    pub fn tokens_there(&self) -> Tokens {
        match self.credit_id {
            Some(_) => self
                .credit_tokens
                .or(self.tokens)
                .unwrap_or_else(|| self.amount.to_tokens()),
            None => Tokens::new(0),
        }
    }

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
