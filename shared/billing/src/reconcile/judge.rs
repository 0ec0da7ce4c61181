//! The judgment of one PayPal line against our records (pure: no I/O):
//! in sync, healable, a mismatch, or nothing to do yet.

use super::{MismatchKind, store};
use crate::orders::{OrderRecord, PaymentStatus};
use billing_money::Usd;
use paypal::{ReportedTransaction, TransactionStatus};

/// A finding before it is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub kind: MismatchKind,
    pub transaction_id: String,
    pub order_id: Option<String>,
    pub user: Option<String>,
    pub paypal_amount: Option<Usd>,
    pub ledger_amount: Option<Usd>,
    pub currency: Option<String>,
    pub detail: String,
}

impl Finding {
    pub(super) fn new(kind: MismatchKind, txn: &ReportedTransaction, detail: &str) -> Finding {
        Finding {
            kind,
            transaction_id: txn.id.clone(),
            order_id: None,
            user: txn.custom_field.clone(),
            paypal_amount: Some(txn.amount),
            ledger_amount: None,
            currency: Some(txn.currency.clone()),
            detail: detail.to_owned(),
        }
    }

    pub(super) fn order(mut self, order: &OrderRecord, ledger_amount: Option<Usd>) -> Finding {
        self.order_id = Some(order.order_id.clone());
        self.user = Some(order.user.as_str().to_owned());
        self.ledger_amount = ledger_amount;
        self
    }
}

/// What to do about one PayPal line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    InSync,
    /// Not final at PayPal yet (pending) or not ours to act on.
    Wait,
    /// Settle this order from PayPal (a completed capture never settled).
    SettleCapture(Box<OrderRecord>),
    /// Apply this refund or reversal through the webhook's path.
    ApplyRefund,
    /// PayPal denied (failed) a refund the ledger holds as pending: apply
    /// its failure through the webhook's path (what the pending refund took
    /// is given back), as the lost `PAYMENT.REFUND.FAILED` would have.
    FailRefund,
    /// A chargeback reversal (`T1202`, the dispute won): restore the
    /// reversal of its capture through the webhook's dispute path.
    RestoreReversal,
    Mismatch(Box<Finding>),
}

fn mismatch(finding: Finding) -> Verdict {
    Verdict::Mismatch(Box::new(finding))
}

/// A payment line against the order it paid for (if we know one).
pub fn judge_payment(txn: &ReportedTransaction, order: Option<&OrderRecord>) -> Verdict {
    let Some(order) = order else {
        return if txn.status.is_done() {
            mismatch(Finding::new(
                MismatchKind::UnknownPayment,
                txn,
                "PayPal holds a payment for no order we know",
            ))
        } else {
            Verdict::Wait
        };
    };
    let ours = order.capture_id.as_deref() == Some(txn.id.as_str());
    if txn.status == TransactionStatus::Denied {
        return if ours && order.status == PaymentStatus::Completed {
            mismatch(
                Finding::new(
                    MismatchKind::StatusDiffers,
                    txn,
                    "PayPal denied a payment the ledger settled",
                )
                .order(order, order.captured_amount),
            )
        } else {
            Verdict::InSync
        };
    }
    if !txn.status.is_done() {
        return Verdict::Wait;
    }
    if txn.currency != "USD" {
        return mismatch(
            Finding::new(
                MismatchKind::CurrencyDiffers,
                txn,
                "PayPal captured another currency than USD",
            )
            .order(order, Some(order.amount)),
        );
    }
    if txn
        .custom_field
        .as_deref()
        .is_some_and(|c| c != order.user.as_str())
    {
        return mismatch(
            Finding::new(
                MismatchKind::UserDiffers,
                txn,
                "PayPal's custom_id names another user than the order",
            )
            .order(order, Some(order.amount)),
        );
    }
    match order.status {
        PaymentStatus::Completed if ours => match order.captured_amount {
            Some(captured) if captured == txn.amount => Verdict::InSync,
            captured => mismatch(
                Finding::new(
                    MismatchKind::AmountDiffers,
                    txn,
                    "the ledger settled another amount than PayPal captured",
                )
                .order(order, captured),
            ),
        },
        PaymentStatus::Completed => mismatch(
            Finding::new(
                MismatchKind::UnknownPayment,
                txn,
                "a second PayPal payment for an order settled by another capture",
            )
            .order(order, order.captured_amount),
        ),
        _ if order.amount != txn.amount => mismatch(
            Finding::new(
                MismatchKind::AmountDiffers,
                txn,
                "PayPal captured another amount than the order's; not credited",
            )
            .order(order, Some(order.amount)),
        ),
        _ => Verdict::SettleCapture(Box::new(order.clone())),
    }
}

/// A refund or reversal line against its refund record (if applied).
pub fn judge_refund(txn: &ReportedTransaction, seen: Option<&store::RefundSeen>) -> Verdict {
    if txn.status == TransactionStatus::Denied
        && txn.kind != paypal::TransactionKind::Reversal
        && seen.is_some_and(|s| s.status.as_deref() == Some("pending"))
    {
        // Its failure webhook was lost: the pending refund still holds money.
        return Verdict::FailRefund;
    }
    if txn.status != TransactionStatus::Success {
        // Pending refunds are followed by the after-purchase flow; denied ones
        // not held as pending here moved nothing.
        return Verdict::Wait;
    }
    if txn.currency != "USD" {
        return mismatch(Finding::new(
            MismatchKind::CurrencyDiffers,
            txn,
            "PayPal refunded in another currency than USD",
        ));
    }
    match seen {
        Some(seen) if seen.is_final() => match seen.amount {
            Some(amount) if amount == txn.amount => Verdict::InSync,
            amount => {
                let mut finding = Finding::new(
                    MismatchKind::AmountDiffers,
                    txn,
                    "the ledger applied another amount than PayPal refunded",
                );
                finding.ledger_amount = amount;
                mismatch(finding)
            }
        },
        // Held as failed or cancelled, but for another amount: not applied blindly.
        Some(seen)
            if matches!(seen.status.as_deref(), Some("failed" | "cancelled"))
                && seen.amount.is_some_and(|a| a != txn.amount) =>
        {
            let mut finding = Finding::new(
                MismatchKind::AmountDiffers,
                txn,
                "PayPal completed a refund the ledger holds as not completed, for another amount",
            );
            finding.ledger_amount = seen.amount;
            mismatch(finding)
        }
        // Never applied, pending here, or held as failed / cancelled: PayPal
        // completed it, so it is applied (once, through the webhook's path).
        _ => Verdict::ApplyRefund,
    }
}

/// A chargeback reversal line (`T1202`: the merchant won the dispute,
/// PayPal returned the money) against the reversal of its capture's order
/// (`None`: no reversal applied here, or no order found by our pointers).
pub fn judge_chargeback_reversal(
    txn: &ReportedTransaction,
    reversal: Option<&store::RefundSeen>,
) -> Verdict {
    if txn.status != TransactionStatus::Success {
        return Verdict::Wait;
    }
    if txn.currency != "USD" {
        return mismatch(Finding::new(
            MismatchKind::CurrencyDiffers,
            txn,
            "PayPal returned a chargeback in another currency than USD",
        ));
    }
    match reversal {
        Some(seen) if seen.reversal && seen.amount.is_some_and(|a| a != txn.amount) => {
            let mut finding = Finding::new(
                MismatchKind::AmountDiffers,
                txn,
                "PayPal returned another amount than the reversal took",
            );
            finding.ledger_amount = seen.amount;
            mismatch(finding)
        }
        Some(seen) if seen.is_restored() => Verdict::InSync,
        // Restored now, or remembered until its reversal is applied.
        _ => Verdict::RestoreReversal,
    }
}
