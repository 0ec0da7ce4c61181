//! Won disputes: PayPal returned a chargeback's money, so what the reversal
//! took is restored, once (reversal `completed → cancelled`).
//!
//! PayPal's reports are not ordered: the won dispute
//! (`CUSTOMER.DISPUTE.RESOLVED`, or a `T1202` line) may land before the
//! reversal it undoes (`PAYMENT.CAPTURE.REVERSED`, or a `T1201` line). So a
//! won dispute is first remembered, durably, under its capture
//! (`DISPUTEWON#<captureId>`), then its reversal is looked for; and every
//! applied reversal looks for a won dispute of its capture. Each side writes
//! before it reads (strongly consistent), so at least one of two racing
//! reports sees the other; the restoration itself is one transaction
//! conditioned on the reversal still being `completed`, with the once-key
//! `reversal_cancelled#<reversalId>` and the won dispute claimed for that
//! reversal. Whichever order, whatever the duplicates: restored once. One
//! won dispute restores one reversal.

use crate::BillingError;
use crate::events;
use crate::orders::{OrderRecord, OrderUpdate, PurchaseKind};
use crate::refund_events::Reached;
use crate::store::disputes;
use crate::store::refunds::{self as store, Movement, RefundRecord, RefundState};
use crate::store::write_together;
use crate::tokens::refunds::{guarded, token_action, with_token_action, with_token_action_of};
use aws_sdk_dynamodb::types::AttributeValue;
use ledger::{Change, EntryDetails, EntryKind, Ledger, LedgerError, OnceKey};

/// Where the reversal of a capture whose dispute was won stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restoration {
    /// Restored now (this call moved the money back).
    Restored,
    /// Restored before (or this won dispute already restored another reversal).
    AlreadyRestored,
    /// The win is remembered; no reversal of the capture is applied here
    /// yet. It is restored when the reversal lands.
    Waiting,
    /// No dispute of this capture was won (or a PayPal claim won with no
    /// reversal here: nothing to restore, nothing remembered).
    NotWon,
}

/// PayPal reports that the merchant won the dispute of `capture_id` (paid
/// for `order`): remember it, then restore the reversal if it is here.
/// `source` names the report (the dispute id, or the `T1202` line's id).
/// `chargeback`: the dispute's money was reversed (a card chargeback, a
/// `T1202` line), so the win waits for a reversal reported later. Otherwise
/// (a PayPal claim won: PayPal held, reversed nothing) only a reversal
/// already here is restored, and nothing is remembered that a later,
/// separate chargeback of the capture could be taken for.
#[tracing::instrument(skip_all, fields(order_id = %order.order_id, capture_id))]
pub async fn dispute_won(
    ledger: &Ledger,
    order: &OrderRecord,
    capture_id: &str,
    source: &str,
    chargeback: bool,
) -> Result<Restoration, BillingError> {
    if !chargeback && !reversal_applied(ledger, order).await? {
        return Ok(Restoration::NotWon);
    }
    disputes::remember(ledger, capture_id, order, source).await?;
    restore_won(ledger, &order.order_id, capture_id).await
}

/// Whether `order` has a reversal applied and not restored.
async fn reversal_applied(ledger: &Ledger, order: &OrderRecord) -> Result<bool, BillingError> {
    let Some(reversal_id) = &order.reversal_id else {
        return Ok(false);
    };
    Ok(store::load(ledger, reversal_id)
        .await?
        .is_some_and(|r| r.movement == Movement::Reversal && r.state == RefundState::Completed))
}

/// Restores the reversal of `order_id` if the dispute of `capture_id` was
/// won; called after every applied reversal, and by [`dispute_won`].
#[tracing::instrument(skip_all, fields(order_id = %order_id, capture_id))]
pub async fn restore_won(
    ledger: &Ledger,
    order_id: &str,
    capture_id: &str,
) -> Result<Restoration, BillingError> {
    // Bounded: each round loses only to another movement of the same order.
    for _ in 0..8 {
        let Some(won) = disputes::load(ledger, capture_id).await? else {
            return Ok(Restoration::NotWon);
        };
        let order = crate::orders::load(ledger, order_id)
            .await?
            .ok_or(BillingError::NotFound("Order"))?;
        let Some(reversal_id) = order.reversal_id.clone() else {
            return Ok(Restoration::Waiting);
        };
        if won.reversal_id.as_deref().is_some_and(|r| r != reversal_id) {
            // This win restored an earlier reversal of the capture.
            return Ok(Restoration::AlreadyRestored);
        }
        let Some(record) = store::load(ledger, &reversal_id).await? else {
            return Ok(Restoration::Waiting);
        };
        match (record.movement, record.state) {
            (Movement::Reversal, RefundState::Completed) => {}
            (Movement::Reversal, RefundState::Cancelled) => {
                return Ok(Restoration::AlreadyRestored);
            }
            _ => return Ok(Restoration::Waiting),
        }
        if cancel(ledger, &order, &record, capture_id).await? {
            tracing::info!(reversal_id = %reversal_id, "won dispute: reversal restored");
            return Ok(Restoration::Restored);
        }
    }
    Err(BillingError::Ledger(LedgerError::Contended { attempts: 8 }))
}

/// Reversal `completed → cancelled` in one transaction: what it took given
/// back (credits), or owed again at VirtFusion (tokens: the token room
/// computes what is owed and the job delivers it), the won dispute claimed. False when a condition failed (read
/// again).
async fn cancel(
    ledger: &Ledger,
    order: &OrderRecord,
    record: &RefundRecord,
    capture_id: &str,
) -> Result<bool, BillingError> {
    let reversal_id = &record.refund_id;
    let back = order
        .refunded_amount
        .checked_sub(record.amount)
        .map_err(|_| LedgerError::Overflow)?;
    let counted = OrderUpdate::new(&order.order_id, "refundedAmount = :seen")
        .value(
            ":seen",
            AttributeValue::N(order.refunded_amount.to_string()),
        )
        .set("refundedAmount", AttributeValue::N(back.to_string()));
    let record_moved = store::transition_item(
        ledger.table(),
        reversal_id,
        RefundState::Completed,
        RefundState::Cancelled,
    )?;
    let claimed = disputes::claim_item(ledger.table(), capture_id, reversal_id)?;
    let restored = Reached {
        order,
        refund_id: reversal_id,
        amount: record.amount,
        movement: Movement::Reversal,
        to: RefundState::Cancelled,
        refunded_total: back,
    }
    .reversal_cancelled();
    match order.kind {
        PurchaseKind::Credits => {
            let change = Change::new(
                order.user.clone(),
                record.amount,
                EntryDetails::new(
                    EntryKind::ReversalCancelled,
                    "PayPal reversal cancelled: dispute won, money returned",
                )
                .reference(&order.order_id),
            )
            .once(OnceKey::new("reversal_cancelled", reversal_id))
            .with_item(counted.item(ledger.table())?)
            .with_item(record_moved)
            .with_item(claimed)
            .with_item_for(events::outbox(ledger.table(), {
                let restored = restored.usd("creditsReturned", record.amount);
                move |preview| restored.clone().usd("balance", preview.balance_after)
            }));
            match ledger.apply(change).await {
                Ok(_) => Ok(true),
                Err(LedgerError::ConditionFailed { .. }) => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
        PurchaseKind::Tokens => {
            // The reversal no longer counts: what it took back is owed again.
            let completed = order
                .completed_refunds()
                .checked_sub(record.amount)
                .map_err(|_| LedgerError::Overflow)?;
            let completed = if completed.is_negative() {
                billing_money::Usd::ZERO
            } else {
                completed
            };
            let action = token_action(order, completed, Movement::Reversal);
            let review = with_token_action(
                guarded(order)
                    .set("refundedAmount", AttributeValue::N(back.to_string()))
                    .set("refundsCompleted", AttributeValue::N(completed.to_string())),
                order,
                &action,
            );
            let mut items = vec![
                review.item(ledger.table())?,
                OnceKey::new("reversal_cancelled", reversal_id).marker_item(
                    ledger.table(),
                    &order.user,
                    &ledger::now_rfc3339(),
                )?,
                record_moved,
                claimed,
            ];
            if let Some(sk) = &record.history_sk {
                items.push(store::history_status_item(
                    ledger.table(),
                    order,
                    sk,
                    "reversal_cancelled",
                )?);
            }
            items.push(with_token_action_of(restored, Some(&action)).item(ledger.table())?);
            Ok(write_together(ledger, items).await?.is_none())
        }
    }
}
