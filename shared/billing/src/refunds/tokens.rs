//! Token purchases after the purchase: what a completed refund or reversal
//! does to the delivery (cancel it, revoke VirtFusion's credit, or send it
//! to review) and the conditional order updates that make those moves.

use super::*;

/// `reviewReason` while a whole refund's VirtFusion credit is being removed.
pub(super) const REVOKING: &str = "refund_revoking";

/// What a completed refund or reversal does to a token purchase's delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum TokenAction {
    /// Whole purchase, delivered, credit id known: remove it at VirtFusion.
    Revoke(u64),
    /// Whole purchase, not delivered yet (nobody is delivering): no longer owed.
    Cancel,
    /// Anything else: the admins' review list, with this reason.
    Review(String),
}

pub(super) fn token_action(
    order: &OrderRecord,
    refunded_total: Usd,
    movement: Movement,
) -> TokenAction {
    let whole = order.captured_amount.is_some_and(|c| refunded_total >= c);
    let case = match (order.delivery, whole, order.credit_id) {
        (Some(Delivery::Refunded), _, _) => return TokenAction::Cancel,
        (Some(Delivery::Pending), true, _) => return TokenAction::Cancel,
        (Some(Delivery::Delivered), true, Some(credit_id)) => {
            return TokenAction::Revoke(credit_id);
        }
        (_, false, _) => "partial",
        (Some(Delivery::Delivering), _, _) => "during_delivery",
        (Some(Delivery::NeedsReview), _, _) => "under_review",
        _ => "without_credit_id",
    };
    TokenAction::Review(format!("{}_{case}", movement.as_str()))
}

/// `update` plus the delivery move of `action` (build `update` with
/// [`guarded`], so it is conditioned on the delivery state it leaves).
pub(super) fn with_token_action(
    update: OrderUpdate,
    order: &OrderRecord,
    action: &TokenAction,
) -> OrderUpdate {
    match action {
        TokenAction::Cancel => update
            .set_s("delivery", Delivery::Refunded.as_str())
            .remove("gsi1pk")
            .remove("gsi1sk"),
        // Listed until VirtFusion confirms the removal: a crash between this
        // write and the VirtFusion call leaves it for an admin, never silently
        // "refunded" with the tokens still there.
        TokenAction::Revoke(_) => to_review(update, order, REVOKING),
        TokenAction::Review(reason) => to_review(update, order, reason),
    }
}

pub(super) fn to_review(update: OrderUpdate, order: &OrderRecord, reason: &str) -> OrderUpdate {
    update
        .set_s("delivery", Delivery::NeedsReview.as_str())
        .set_s("reviewReason", reason)
        .set_s("gsi1pk", DELIVERY_REVIEW)
        .set_s(
            "gsi1sk",
            &format!("{}#{}", order.created_at, order.order_id),
        )
}

/// What a token purchase's refund does to its tokens, for its event.
pub(super) fn with_token_action_of(event: Event, action: Option<&TokenAction>) -> Event {
    match action {
        None => event,
        Some(TokenAction::Cancel) => event.text("tokenAction", "cancel_delivery"),
        Some(TokenAction::Revoke(_)) => event.text("tokenAction", "revoke_credit"),
        Some(TokenAction::Review(reason)) => event
            .text("tokenAction", "review")
            .text("reviewReason", reason.as_str()),
    }
}

/// An order update conditioned on `refundedAmount` and the delivery state
/// as they were read.
pub(super) fn guarded(order: &OrderRecord) -> OrderUpdate {
    let seen = AttributeValue::N(order.refunded_amount.to_string());
    match order.delivery {
        Some(delivery) => OrderUpdate::new(
            &order.order_id,
            "refundedAmount = :seen AND #delivery = :seenDelivery",
        )
        .value(":seen", seen)
        .value(":seenDelivery", AttributeValue::S(delivery.as_str().into())),
        None => OrderUpdate::new(
            &order.order_id,
            "refundedAmount = :seen AND attribute_not_exists(#delivery)",
        )
        .value(":seen", seen),
    }
}

/// Removes the VirtFusion credit of a wholly refunded delivered purchase;
/// if VirtFusion does not confirm, the purchase goes to review.
pub(super) async fn revoke(
    ledger: &Ledger,
    virtfusion: Option<&VirtFusionClient>,
    order: &OrderRecord,
    credit_id: u64,
) -> Result<bool, BillingError> {
    let removed = match virtfusion {
        Some(client) => match client.remove_credit(virtfusion::CreditId(credit_id)).await {
            Ok(()) => true,
            // Already gone counts as taken back.
            Err(virtfusion::VirtFusionError::Rejected { status: 404 }) => true,
            Err(e) => {
                tracing::error!(order_id = %order.order_id, error = %e, "VirtFusion credit not removed after a refund; to review");
                false
            }
        },
        None => false,
    };
    let update = OrderUpdate::new(
        &order.order_id,
        "#delivery = :review AND reviewReason = :revoking",
    )
    .value(
        ":review",
        AttributeValue::S(Delivery::NeedsReview.as_str().into()),
    )
    .value(":revoking", AttributeValue::S(REVOKING.into()))
    .set("tokensRevoked", AttributeValue::Bool(removed));
    let update = if removed {
        update
            .set_s("delivery", Delivery::Refunded.as_str())
            .remove("reviewReason")
            .remove("gsi1pk")
            .remove("gsi1sk")
    } else {
        update.set_s("reviewReason", "refund_revoke_failed")
    };
    update.run(ledger).await?;
    Ok(removed)
}
