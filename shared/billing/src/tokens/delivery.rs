//! Bringing VirtFusion to what a purchase owes, at most one caller at a
//! time: the claim (`pending → delivering`), the VirtFusion calls (remove a
//! credit that no longer matches, add what is owed), and the release.
//!
//! A definite failure leaves the delivery `pending` (the scheduled job
//! retries it with backoff); an uncertain one (timeout/5xx after sending)
//! becomes `needs_review` and is never retried blindly — VirtFusion cannot
//! look a credit up by reference.

use crate::BillingError;
use crate::events::{DetailType, Event};
use crate::orders::{
    DELIVERY_CLAIMED, DELIVERY_PENDING, DELIVERY_REVIEW, Delivery, OrderRecord, OrderUpdate,
    PurchaseKind, Settlement,
};
use crate::store::orders::{history_line_status_item, join_credits};
use crate::store::write_together;
use billing_money::Tokens;
use ledger::Ledger;
use virtfusion::{CreditId, VirtFusionClient, VirtFusionError};

use super::review::{MAX_DEFINITE_REFUSALS, is_refusal, next_attempt_at};

/// What the VirtFusion calls of one claim did.
struct Calls {
    /// Stray credits removed (or already gone).
    strays_removed: Vec<u64>,
    /// The credit that no longer matched was removed (or was already gone).
    removed: Option<u64>,
    /// The credit added for what is owed.
    added: Option<CreditId>,
    /// The first call that did not succeed, if any.
    failed: Option<VirtFusionError>,
}

/// Brings VirtFusion to what `order_id` owes, under a claim (see the module
/// docs). Returns the purchase's settlement as it stands afterwards.
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
pub async fn deliver(
    ledger: &Ledger,
    virtfusion: Option<&VirtFusionClient>,
    order_id: &str,
) -> Result<Settlement, BillingError> {
    let claim = uuid::Uuid::new_v4().simple().to_string();
    let claimed_at = ledger::now_rfc3339();
    let claimed = OrderUpdate::new(order_id, "#delivery = :pending")
        .value_s(":pending", Delivery::Pending.as_str())
        .set_s("delivery", Delivery::Delivering.as_str())
        .set_s("deliveryClaim", &claim)
        .set_s("deliveryClaimedAt", &claimed_at)
        // Indexed while claimed, so a claim whose Lambda died is found (see
        // `review::review_stale_claims`).
        .indexed(DELIVERY_CLAIMED, &ledger::now_rfc3339())
        .run(ledger)
        .await?;
    let order = crate::orders::load(ledger, order_id)
        .await?
        .ok_or(BillingError::NotFound("Order"))?;
    if !claimed {
        // Delivered, under review, or someone else is delivering right now.
        return Ok(settled(&order));
    }
    let owed = order.owed_tokens();
    let calls = call_virtfusion(virtfusion, &order, owed).await;
    let removed = calls.removed.is_some();
    let (delivery, history_status, mut update) = match (&calls.failed, calls.added) {
        (None, Some(credit_id)) => (
            Delivery::Delivered,
            "completed",
            OrderUpdate::release_claim(order_id, &claim, Delivery::Delivered)
                .set_n("creditId", credit_id.get())
                .set_n("creditTokens", owed.get())
                .remove("gsi1pk")
                .remove("gsi1sk"),
        ),
        // Nothing to add: VirtFusion holds what is owed (nothing, or the credit kept).
        (None, None) => {
            let delivery = if owed.get() > 0 {
                Delivery::Delivered
            } else {
                Delivery::Refunded
            };
            let status = if owed.get() > 0 {
                "completed"
            } else {
                "refunded"
            };
            (
                delivery,
                status,
                OrderUpdate::release_claim(order_id, &claim, delivery)
                    .remove("gsi1pk")
                    .remove("gsi1sk"),
            )
        }
        (Some(e), _) if e.is_definitely_not_applied() => {
            let attempts = order.delivery_attempts.saturating_add(1);
            if is_refusal(e) && attempts >= MAX_DEFINITE_REFUSALS {
                tracing::error!(order_id, error = %e, attempts, "VirtFusion keeps refusing the delivery; to review");
                (
                    Delivery::NeedsReview,
                    "needs_review",
                    OrderUpdate::release_claim(order_id, &claim, Delivery::NeedsReview)
                        .set_n("deliveryAttempts", attempts)
                        .set_s("reviewReason", "refused")
                        .indexed(DELIVERY_REVIEW, &order.created_at),
                )
            } else {
                let next = next_attempt_at(time::OffsetDateTime::now_utc(), attempts);
                tracing::warn!(order_id, error = %e, attempts, next_attempt_at = %next, "VirtFusion delivery failed; will retry");
                (
                    Delivery::Pending,
                    "pending",
                    OrderUpdate::release_claim(order_id, &claim, Delivery::Pending)
                        .set_n("deliveryAttempts", attempts)
                        .set_s("nextAttemptAt", &next)
                        // Ordered by when it is due: a refused order never blocks newer ones.
                        .indexed(DELIVERY_PENDING, &next),
                )
            }
        }
        (Some(e), _) => {
            tracing::error!(order_id, error = %e, "VirtFusion delivery outcome unknown; needs review");
            let reason = if order.credit_id.is_some() && !removed {
                "revoke_uncertain"
            } else {
                "uncertain_outcome"
            };
            (
                Delivery::NeedsReview,
                "needs_review",
                OrderUpdate::release_claim(order_id, &claim, Delivery::NeedsReview)
                    .set_s("reviewReason", reason)
                    .set_n("sendingTokens", owed.get())
                    .indexed(DELIVERY_REVIEW, &order.created_at),
            )
        }
    };
    if removed && calls.added.is_none() {
        update = update.remove("creditId").remove("creditTokens");
    }
    if !calls.strays_removed.is_empty() {
        let left: Vec<u64> = order
            .stray_credits
            .iter()
            .copied()
            .filter(|id| !calls.strays_removed.contains(id))
            .collect();
        update = match left.is_empty() {
            true => update.remove("strayCredits"),
            false => update.set_s("strayCredits", &join_credits(&left)),
        };
    }
    if matches!(delivery, Delivery::Delivered | Delivery::Refunded) {
        update = update.remove("reviewReason");
    }
    let mut items = vec![update.item(ledger.table())?];
    if let Some(history) = history_line_status_item(ledger, &order, history_status).await? {
        items.push(history);
    }
    let event = match (delivery, calls.added) {
        (Delivery::Delivered, Some(credit_id)) => {
            Some(tokens_purchased(&order, owed, &credit_id.get().to_string()))
        }
        (Delivery::NeedsReview, _) => Some(needs_review(&order, &claimed_at, "outcome_unknown")),
        _ => None,
    };
    if let Some(event) = event {
        items.push(event.item(ledger.table())?);
    }
    if write_together(ledger, items).await?.is_some() {
        // The claim was taken from us while VirtFusion was called (a refund
        // sent the purchase to review, or the stale-claim sweep did).
        return claim_lost(ledger, order_id, &claim, &calls, owed).await;
    }
    let tokens = order.tokens.unwrap_or_else(|| order.amount.to_tokens());
    Ok(Settlement::Tokens { tokens, delivery })
}

/// Removes the credit that no longer matches what is owed, then adds what
/// is owed; stops at the first call that does not succeed.
async fn call_virtfusion(
    virtfusion: Option<&VirtFusionClient>,
    order: &OrderRecord,
    owed: Tokens,
) -> Calls {
    let mut calls = Calls {
        strays_removed: Vec::new(),
        removed: None,
        added: None,
        failed: None,
    };
    let mut there = order.tokens_there();
    if there == owed && order.stray_credits.is_empty() {
        return calls;
    }
    let Some(client) = virtfusion else {
        calls.failed = Some(VirtFusionError::NotSent);
        return calls;
    };
    // Credits a late answer left beside the purchase's own: never owed.
    for &stray in &order.stray_credits {
        match client.remove_credit(CreditId(stray)).await {
            Ok(()) | Err(VirtFusionError::Rejected { status: 404 }) => {
                calls.strays_removed.push(stray);
            }
            Err(e) => {
                calls.failed = Some(e);
                return calls;
            }
        }
    }
    if there == owed {
        return calls;
    }
    if let Some(credit_id) = order.credit_id {
        match client.remove_credit(CreditId(credit_id)).await {
            // Already gone counts as removed.
            Ok(()) | Err(VirtFusionError::Rejected { status: 404 }) => {
                calls.removed = Some(credit_id);
                there = Tokens::new(0);
            }
            Err(e) => {
                calls.failed = Some(e);
                return calls;
            }
        }
    }
    if owed.get() > 0 && there.get() == 0 {
        match client
            .add_tokens(order.user.as_str(), owed, &order.order_id)
            .await
        {
            Ok(credit_id) => calls.added = Some(credit_id),
            Err(e) => calls.failed = Some(e),
        }
    }
    calls
}

/// The release of a delivery claim failed. What VirtFusion did is stored
/// anyway: a credit added keeps its id (or nothing could ever remove it) —
/// beside the purchase's own credit if it has another one by now (a stray,
/// removed by the next delivery), never over it; a credit removed loses its
/// id. The purchase goes to (or stays on) the review list: never a silent
/// "completed". Conditioned on the credits as read; read again on a race.
async fn claim_lost(
    ledger: &Ledger,
    order_id: &str,
    claim: &str,
    calls: &Calls,
    owed: Tokens,
) -> Result<Settlement, BillingError> {
    for _ in 0..4 {
        let order = crate::orders::load(ledger, order_id)
            .await?
            .ok_or(BillingError::NotFound("Order"))?;
        // The claim is over: an admin's settlement need not wait for it.
        let mut update = OrderUpdate::new(order_id, "deliveryClaim = :claim")
            .value_s(":claim", claim)
            .set_s("claimLostAt", &ledger::now_rfc3339())
            .remove("deliveryClaimedAt");
        let changed =
            calls.added.is_some() || calls.removed.is_some() || !calls.strays_removed.is_empty();
        // The review is announced in the same transaction as the state change.
        let mut events = Vec::new();
        if changed {
            events.push(needs_review(
                &order,
                &format!("lost#{claim}"),
                "delivered_after_claim_lost",
            ));
            tracing::error!(
                order_id,
                "VirtFusion changed for a delivery whose claim was lost; to review"
            );
            update = OrderUpdate::new(order_id, "attribute_exists(pk)")
                .credits_as_read(&order)
                .set_s("deliveredAfterClaimLost", &ledger::now_rfc3339())
                .set_s("delivery", Delivery::NeedsReview.as_str())
                .indexed(DELIVERY_REVIEW, &order.created_at)
                .remove("deliveryClaimedAt");
            let mut strays: Vec<u64> = order
                .stray_credits
                .iter()
                .copied()
                .filter(|id| !calls.strays_removed.contains(id))
                .collect();
            let mut own = order.credit_id;
            if calls.removed.is_some() && own == calls.removed {
                own = None;
                update = update.remove("creditId").remove("creditTokens");
            }
            if let Some(added) = calls.added.map(|c| c.get()) {
                match own {
                    Some(other) if other != added => strays.push(added),
                    _ => {
                        update = update
                            .set_n("creditId", added)
                            .set_n("creditTokens", owed.get());
                    }
                }
            }
            if strays != order.stray_credits {
                update = match strays.is_empty() {
                    true => update.remove("strayCredits"),
                    false => update.set_s("strayCredits", &join_credits(&strays)),
                };
            }
            if order.review_reason.is_none() {
                update = update.set_s("reviewReason", "delivered_after_claim_lost");
            }
        }
        if update.run_with(ledger, &events).await? || !changed {
            let order = crate::orders::load(ledger, order_id)
                .await?
                .ok_or(BillingError::NotFound("Order"))?;
            return Ok(match changed {
                true => Settlement::Tokens {
                    tokens: order.tokens.unwrap_or_else(|| order.amount.to_tokens()),
                    delivery: Delivery::NeedsReview,
                },
                false => settled(&order),
            });
        }
    }
    Err(BillingError::Ledger(ledger::LedgerError::Contended {
        attempts: 4,
    }))
}

/// Where a token purchase stands, without calling anyone.
pub(crate) fn settled(order: &OrderRecord) -> Settlement {
    debug_assert_eq!(order.kind, PurchaseKind::Tokens);
    Settlement::Tokens {
        tokens: order.tokens.unwrap_or_else(|| order.amount.to_tokens()),
        delivery: order.delivery.unwrap_or(Delivery::Pending),
    }
}

/// `tokens.purchased`: once per movement of tokens to VirtFusion (`movement`
/// names it: the credit id added, or an admin's settlement), so a second
/// real delivery (after a partial refund) is a new event, not a rewrite.
pub(crate) fn tokens_purchased(order: &OrderRecord, tokens: Tokens, movement: &str) -> Event {
    Event::new(
        DetailType::TokensPurchased,
        &format!("{}#delivered#{movement}", OrderRecord::pk(&order.order_id)),
        &order.user,
    )
    .value("tokens", tokens.get())
    .usd("amount", order.captured_amount.unwrap_or(order.amount))
    .text("orderId", &order.order_id)
}

/// `tokens.delivery_needs_review`: once per delivery claim that ended in review.
pub(crate) fn needs_review(order: &OrderRecord, claimed_at: &str, reason: &str) -> Event {
    Event::new(
        DetailType::TokensDeliveryNeedsReview,
        &format!("{}#claim#{claimed_at}", OrderRecord::pk(&order.order_id)),
        &order.user,
    )
    .usd("amount", order.captured_amount.unwrap_or(order.amount))
    .value("tokens", order.tokens.map(|t| t.get()))
    .text("orderId", &order.order_id)
    .text("reason", reason)
}
