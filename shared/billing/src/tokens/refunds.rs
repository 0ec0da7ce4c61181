//! What a completed refund or reversal (or a won dispute) does to a token
//! purchase's delivery, and the conditional order updates that make those
//! moves. Called by the PayPal side (`crate::refunds`): it computes what is
//! owed after the movement and moves the delivery towards it.

use crate::events::Event;
use crate::orders::{DELIVERY_PENDING, DELIVERY_REVIEW, Delivery, OrderRecord, OrderUpdate};
use crate::store::refunds::Movement;
use aws_sdk_dynamodb::types::AttributeValue;
use billing_money::Usd;

/// What a completed movement does to a token purchase's delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TokenAction {
    /// VirtFusion must change (a credit holds more than is owed, or more is
    /// owed than is there): `pending`, brought to what is owed by
    /// [`super::deliver`] now or by the job.
    Settle,
    /// Nothing to change now: VirtFusion already holds what is owed, a
    /// pending delivery will send only what is owed, or an admin's review
    /// settlement will compute it.
    Keep,
    /// Nothing owed and nothing there: closed as refunded.
    Cancel,
    /// The admins' review list, with this reason.
    Review(String),
}

/// The action for `order` once its completed refunds total `completed`.
pub(crate) fn token_action(order: &OrderRecord, completed: Usd, movement: Movement) -> TokenAction {
    let owed = super::owed(
        order.tokens.unwrap_or_else(|| order.amount.to_tokens()),
        order.captured_amount.unwrap_or(order.amount),
        completed,
    );
    let case = match order.delivery {
        None | Some(Delivery::Pending) if owed.get() == 0 && order.credit_id.is_none() => {
            return TokenAction::Cancel;
        }
        // A pending delivery removes a credit that holds too much and sends what is owed.
        None | Some(Delivery::Pending) => return TokenAction::Keep,
        Some(Delivery::Refunded) if owed.get() == 0 => return TokenAction::Keep,
        Some(Delivery::Refunded) => return TokenAction::Settle,
        // Delivered but nobody knows its credit: never "kept" silently.
        Some(Delivery::Delivered) if order.credit_id.is_none() => "without_credit_id",
        Some(Delivery::Delivered) if order.tokens_there() == owed => return TokenAction::Keep,
        Some(Delivery::Delivered) if order.credit_id.is_some() => return TokenAction::Settle,
        Some(Delivery::Delivered) => "without_credit_id",
        // The settlement of the review computes what is owed then.
        Some(Delivery::NeedsReview) => return TokenAction::Keep,
        Some(Delivery::Delivering) => "during_delivery",
    };
    TokenAction::Review(format!("{}_{case}", movement.as_str()))
}

/// `update` plus the delivery move of `action` (build `update` with
/// [`guarded`], so it is conditioned on the delivery state it leaves).
pub(crate) fn with_token_action(
    update: OrderUpdate,
    order: &OrderRecord,
    action: &TokenAction,
) -> OrderUpdate {
    match action {
        TokenAction::Cancel => update
            .set_s("delivery", Delivery::Refunded.as_str())
            .remove("gsi1pk")
            .remove("gsi1sk"),
        TokenAction::Keep => update,
        // Pending before VirtFusion is called: a crash between this write and
        // the call leaves it for the job, which does the same.
        TokenAction::Settle => update
            .set_s("delivery", Delivery::Pending.as_str())
            .set_s("gsi1pk", DELIVERY_PENDING)
            .set_s(
                "gsi1sk",
                &format!("{}#{}", order.created_at, order.order_id),
            ),
        TokenAction::Review(reason) => to_review(update, order, reason),
    }
}

pub(crate) fn to_review(update: OrderUpdate, order: &OrderRecord, reason: &str) -> OrderUpdate {
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
pub(crate) fn with_token_action_of(event: Event, action: Option<&TokenAction>) -> Event {
    match action {
        None => event,
        Some(TokenAction::Cancel) => event.text("tokenAction", "cancel_delivery"),
        Some(TokenAction::Keep) => event.text("tokenAction", "none"),
        Some(TokenAction::Settle) => event.text("tokenAction", "settle_at_virtfusion"),
        Some(TokenAction::Review(reason)) => event
            .text("tokenAction", "review")
            .text("reviewReason", reason.as_str()),
    }
}

/// An order update conditioned on `refundedAmount`, `refundsCompleted` and
/// the delivery state as they were read.
pub(crate) fn guarded(order: &OrderRecord) -> OrderUpdate {
    let seen = AttributeValue::N(order.refunded_amount.to_string());
    let completed = match order.refunds_completed {
        Some(_) => "refundsCompleted = :completed",
        // Written before it was recorded (`OrderRecord::completed_refunds`).
        None => "(attribute_not_exists(refundsCompleted) OR refundsCompleted = :completed)",
    };
    let update = match order.delivery {
        Some(delivery) => OrderUpdate::new(
            &order.order_id,
            &format!("refundedAmount = :seen AND {completed} AND #delivery = :seenDelivery"),
        )
        .value(":seenDelivery", AttributeValue::S(delivery.as_str().into())),
        None => OrderUpdate::new(
            &order.order_id,
            &format!("refundedAmount = :seen AND {completed} AND attribute_not_exists(#delivery)"),
        ),
    };
    update.value(":seen", seen).value(
        ":completed",
        AttributeValue::N(order.completed_refunds().to_string()),
    )
}
