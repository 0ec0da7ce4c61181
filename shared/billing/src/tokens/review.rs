//! Token deliveries that need the scheduled job (`pending`) or an admin
//! (`needs_review`), found through the sparse index `gsi1` — only orders in
//! those states carry `gsi1pk`, so the cost grows with them, not with all orders.

use super::delivery::{deliver, needs_review, tokens_purchased};
use crate::BillingError;
use crate::orders::Settlement;
use crate::orders::{
    DELIVERY_CLAIMED, DELIVERY_PENDING, DELIVERY_REVIEW, Delivery, OrderRecord, OrderUpdate,
};
use aws_sdk_dynamodb::types::AttributeValue;
use billing_money::Tokens;
use ledger::{Ledger, LedgerError};
use std::time::Instant;
use virtfusion::VirtFusionClient;

/// Definite VirtFusion refusals (4xx other than 429) after which a delivery
/// goes to review instead of being retried again.
pub const MAX_DEFINITE_REFUSALS: u32 = 5;
/// First retry delay after a failed delivery; doubles per attempt.
pub const RETRY_BASE_SECONDS: i64 = 300;
/// Longest wait between two retries.
pub const RETRY_MAX_SECONDS: i64 = 6 * 3600;

/// A refusal that will not change by itself (VirtFusion answered 4xx, not
/// 429; or the request itself is unusable), as opposed to "not reachable".
pub fn is_refusal(error: &virtfusion::VirtFusionError) -> bool {
    match error {
        virtfusion::VirtFusionError::Rejected { status } => *status != 429,
        virtfusion::VirtFusionError::Invalid(_) => true,
        _ => false,
    }
}

/// When the `attempts`-th failed delivery is next due: exponential backoff
/// from [`RETRY_BASE_SECONDS`], capped at [`RETRY_MAX_SECONDS`].
pub fn next_attempt_at(now: time::OffsetDateTime, attempts: u32) -> String {
    let shift = attempts.saturating_sub(1).min(16);
    let delay = (RETRY_BASE_SECONDS << shift).min(RETRY_MAX_SECONDS);
    ledger::format_rfc3339(now + time::Duration::seconds(delay))
}

/// Pending deliveries due at `now` (their next attempt time has come),
/// soonest due first: a delivery VirtFusion keeps refusing waits longer and
/// longer and never holds up newer ones.
pub async fn list_due(
    ledger: &Ledger,
    now: time::OffsetDateTime,
    limit: u32,
) -> Result<Vec<OrderRecord>, BillingError> {
    // '~' sorts after '#' and every digit: everything due up to `now` inclusive.
    let upper = format!("{}~", ledger::format_rfc3339(now));
    let out = ledger
        .client()
        .query()
        .table_name(ledger.table())
        .index_name("gsi1")
        .key_condition_expression("gsi1pk = :p AND gsi1sk <= :due")
        .expression_attribute_values(":p", AttributeValue::S(DELIVERY_PENDING.into()))
        .expression_attribute_values(":due", AttributeValue::S(upper))
        .limit(limit.clamp(1, 100) as i32)
        .send()
        .await
        .map_err(|e| LedgerError::dynamo("Query", &e))?;
    reread(ledger, out.items(), Delivery::Pending).await
}

async fn reread(
    ledger: &Ledger,
    keys: &[std::collections::HashMap<String, AttributeValue>],
    state: Delivery,
) -> Result<Vec<OrderRecord>, BillingError> {
    let mut orders = Vec::new();
    for key in keys {
        let Some(AttributeValue::S(pk)) = key.get("pk") else {
            continue;
        };
        let Some(order_id) = pk.strip_prefix("ORDER#") else {
            continue;
        };
        // The index is eventually consistent: re-read and keep what is still in that state.
        if let Some(order) = crate::orders::load(ledger, order_id).await?
            && order.delivery == Some(state)
        {
            orders.push(order);
        }
    }
    Ok(orders)
}

/// Orders whose delivery is `state` (pending or needs_review), oldest first.
#[tracing::instrument(skip_all)]
pub async fn list(
    ledger: &Ledger,
    state: Delivery,
    limit: u32,
) -> Result<Vec<OrderRecord>, BillingError> {
    let keys = index_keys(ledger, partition(state)?, limit).await?;
    reread(ledger, &keys, state).await
}

/// One item of the admins' delivery list: a purchase's delivery, or an
/// admin token grant (or its removal) whose outcome is under review.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReviewItem {
    Order(OrderRecord),
    Grant(super::grants::TokenGrant),
}

/// [`list`], with the admin token grants in the same state (`needs_review`:
/// grants and removals under review), oldest first.
pub async fn list_items(
    ledger: &Ledger,
    state: Delivery,
    limit: u32,
) -> Result<Vec<ReviewItem>, BillingError> {
    use super::grants::{GrantState, grant_id_of_key, load_grant};
    let keys = index_keys(ledger, partition(state)?, limit).await?;
    let mut items = Vec::new();
    for key in &keys {
        if let Some(grant_id) = grant_id_of_key(key) {
            // Re-read: the index is eventually consistent.
            if let Some(grant) = load_grant(ledger, &grant_id).await?
                && state == Delivery::NeedsReview
                && matches!(
                    grant.state,
                    GrantState::NeedsReview | GrantState::RemovalReview
                )
            {
                items.push(ReviewItem::Grant(grant));
            }
        } else {
            let orders = reread(ledger, std::slice::from_ref(key), state).await?;
            items.extend(orders.into_iter().map(ReviewItem::Order));
        }
    }
    Ok(items)
}

fn partition(state: Delivery) -> Result<&'static str, BillingError> {
    Ok(match state {
        Delivery::Pending => DELIVERY_PENDING,
        Delivery::NeedsReview => DELIVERY_REVIEW,
        Delivery::Delivering => DELIVERY_CLAIMED,
        _ => {
            return Err(BillingError::InvalidInput(
                "status must be pending or needs_review".into(),
            ));
        }
    })
}

/// The keys (`gsi1`, KEYS_ONLY) of up to `limit` items of a delivery
/// partition, oldest first: orders (`ORDER#`) and admin grants (`VFGRANT#`).
pub(crate) async fn index_keys(
    ledger: &Ledger,
    partition: &str,
    limit: u32,
) -> Result<Vec<std::collections::HashMap<String, AttributeValue>>, BillingError> {
    let out = ledger
        .client()
        .query()
        .table_name(ledger.table())
        .index_name("gsi1")
        .key_condition_expression("gsi1pk = :p")
        .expression_attribute_values(":p", AttributeValue::S(partition.into()))
        .limit(limit.clamp(1, 100) as i32)
        .send()
        .await
        .map_err(|e| LedgerError::dynamo("Query", &e))?;
    Ok(out.items().to_vec())
}

/// What an admin found at VirtFusion for a purchase under review.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// No credit of this purchase is there.
    Nothing,
    /// A credit of this purchase is there (its id, when the admin gives it
    /// or the order knows it).
    Credit(Option<u64>),
}

/// An admin settles a `needs_review` delivery by saying what VirtFusion
/// shows; the system decides what to do: close it (VirtFusion holds what is
/// owed: `delivered`, or nothing owed: `refunded`), or make it `pending` so
/// the job removes a credit that holds too much and adds what is owed.
/// 409 when it is not under review, or while a delivery call that a refund
/// interrupted may still answer; 400 when a credit is there but its id is
/// unknown (the admin must give `creditId`: nothing could remove it later).
/// The write is conditioned on everything the decision read (amounts,
/// delivery, credits); a race reads again.
#[tracing::instrument(skip_all, fields(order_id = %order_id, admin = %admin_id))]
pub async fn resolve(
    ledger: &Ledger,
    order_id: &str,
    found: Found,
    admin_id: &str,
    reason: &crate::Reason,
) -> Result<OrderRecord, BillingError> {
    for _ in 0..4 {
        let order = crate::orders::load(ledger, order_id)
            .await?
            .ok_or(BillingError::NotFound("Delivery"))?;
        if order.delivery != Some(Delivery::NeedsReview) {
            return Err(not_in_review());
        }
        if call_may_still_answer(ledger, &order).await? {
            return Err(BillingError::Conflict {
                message: "A VirtFusion call for this purchase may still answer; settle it in a few minutes".into(),
                code: "delivery_in_flight",
            });
        }
        let owed = order.owed_tokens();
        // What VirtFusion holds from this purchase, as the admin found it.
        let (credit_id, there) = match found {
            Found::Nothing => (None, Tokens::new(0)),
            Found::Credit(given) => {
                let credit_id = given.or(order.credit_id);
                let there = if credit_id.is_some() && credit_id == order.credit_id {
                    order.tokens_there()
                } else {
                    // The credit of the call whose outcome was unknown.
                    order.sending_tokens.or(order.tokens).unwrap_or(owed)
                };
                (credit_id, there)
            }
        };
        if there.get() > 0 && credit_id.is_none() {
            return Err(BillingError::InvalidInput(
                "creditId is required: give the VirtFusion credit id of this purchase, so it can be removed if a refund needs it".into(),
            ));
        }
        let to = match (
            there == owed && order.stray_credits.is_empty(),
            owed.get() > 0,
        ) {
            (true, true) => Delivery::Delivered,
            (true, false) => Delivery::Refunded,
            (false, _) => Delivery::Pending,
        };
        let mut update = super::refunds::guarded(&order)
            .credits_as_read(&order)
            .set_s("resolvedBy", admin_id)
            .set_s("resolution", reason.as_str())
            .set_s("resolvedAt", &ledger::now_rfc3339())
            .set_s("delivery", to.as_str())
            .remove("reviewReason")
            .remove("sendingTokens");
        update = match credit_id {
            Some(credit_id) if there.get() > 0 => update
                .set_n("creditId", credit_id)
                .set_n("creditTokens", there.get()),
            _ => update.remove("creditId").remove("creditTokens"),
        };
        update = match to {
            Delivery::Pending => update
                .set_s("gsi1pk", DELIVERY_PENDING)
                .set_s("gsi1sk", &format!("{}#{order_id}", order.created_at)),
            _ => update.remove("gsi1pk").remove("gsi1sk"),
        };
        // Settled as delivered: the tokens reached VirtFusion (one event per credit).
        let reported: Vec<crate::events::Event> = match (to, credit_id) {
            (Delivery::Delivered, Some(id)) => {
                vec![tokens_purchased(&order, there, &id.to_string()).text("resolvedBy", admin_id)]
            }
            _ => Vec::new(),
        };
        if update.run_with(ledger, &reported).await? {
            return crate::orders::load(ledger, order_id)
                .await?
                .ok_or(BillingError::NotFound("Delivery"));
        }
    }
    Err(BillingError::Conflict {
        message: "The purchase changed while it was being settled; try again".into(),
        code: "changed_meanwhile",
    })
}

/// A delivery whose claim a refund interrupted (`…_during_delivery`) may
/// still get VirtFusion's answer until the claim is over (its caller records
/// what VirtFusion did and ends it) or stale.
async fn call_may_still_answer(ledger: &Ledger, order: &OrderRecord) -> Result<bool, BillingError> {
    if !order
        .review_reason
        .as_deref()
        .is_some_and(|r| r.ends_with("_during_delivery"))
    {
        return Ok(false);
    }
    let Some(at) = claimed_at(ledger, &order.order_id).await? else {
        return Ok(false);
    };
    let cutoff = ledger::format_rfc3339(
        time::OffsetDateTime::now_utc() - time::Duration::seconds(STALE_CLAIM_SECONDS),
    );
    Ok(at > cutoff)
}

fn not_in_review() -> BillingError {
    BillingError::Conflict {
        message: "Delivery is not awaiting review".into(),
        code: "not_in_review",
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetrySummary {
    /// Stale claims (a caller died mid-delivery) moved to review.
    pub stale_to_review: u32,
    pub attempted: u32,
    pub delivered: u32,
    pub still_pending: u32,
    pub needs_review: u32,
}

/// A claim older than this belongs to a caller that died mid-call.
pub const STALE_CLAIM_SECONDS: i64 = 300;

/// Claims left by a Lambda that stopped while talking to VirtFusion: the
/// outcome is unknown, so they go to review (never redelivered blindly).
#[tracing::instrument(skip_all, fields(max))]
pub async fn review_stale_claims(
    ledger: &Ledger,
    now: time::OffsetDateTime,
    max: u32,
) -> Result<u32, BillingError> {
    let cutoff = ledger::format_rfc3339(now - time::Duration::seconds(STALE_CLAIM_SECONDS));
    let mut moved = 0;
    // One read of the claimed partition: purchase deliveries and admin grants.
    let keys = index_keys(ledger, DELIVERY_CLAIMED, max).await?;
    for order in reread(ledger, &keys, Delivery::Delivering).await? {
        let claimed_at = claimed_at(ledger, &order.order_id).await?;
        if claimed_at.as_deref().is_none_or(|at| at >= cutoff.as_str()) {
            continue;
        }
        let moved_now = OrderUpdate::new(
            &order.order_id,
            "#delivery = :delivering AND deliveryClaimedAt = :at",
        )
        .value(
            ":delivering",
            AttributeValue::S(Delivery::Delivering.as_str().into()),
        )
        .value(
            ":at",
            AttributeValue::S(claimed_at.clone().unwrap_or_default()),
        )
        .set_s("delivery", Delivery::NeedsReview.as_str())
        .set_s("gsi1pk", DELIVERY_REVIEW)
        .set_s(
            "gsi1sk",
            &format!("{}#{}", order.created_at, order.order_id),
        )
        .run_with(
            ledger,
            &[needs_review(
                &order,
                claimed_at.as_deref().unwrap_or_default(),
                "claim_abandoned",
            )],
        )
        .await?;
        if moved_now {
            tracing::error!(order_id = %order.order_id, "stale VirtFusion delivery claim moved to review");
            moved += 1;
        }
    }
    // Admin token grants and removals claimed by a Lambda that died.
    moved += super::grants::review_stale_grants(ledger, &keys, now).await?;
    Ok(moved)
}

async fn claimed_at(ledger: &Ledger, order_id: &str) -> Result<Option<String>, BillingError> {
    let out = ledger
        .client()
        .get_item()
        .table_name(ledger.table())
        .key("pk", AttributeValue::S(OrderRecord::pk(order_id)))
        .key("sk", AttributeValue::S(crate::orders::ORDER_SK.into()))
        .projection_expression("deliveryClaimedAt")
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| LedgerError::dynamo("GetItem", &e))?;
    Ok(
        match out.item.as_ref().and_then(|i| i.get("deliveryClaimedAt")) {
            Some(AttributeValue::S(at)) => Some(at.clone()),
            _ => None,
        },
    )
}

/// Retries the pending deliveries due at `now` (the job's clock), soonest
/// due first, until `deadline` or `max`.
#[tracing::instrument(skip_all, fields(max))]
pub async fn retry_pending(
    ledger: &Ledger,
    virtfusion: Option<&VirtFusionClient>,
    max: u32,
    now: time::OffsetDateTime,
    deadline: Instant,
) -> Result<RetrySummary, BillingError> {
    let mut summary = RetrySummary {
        stale_to_review: review_stale_claims(ledger, time::OffsetDateTime::now_utc(), max).await?,
        ..RetrySummary::default()
    };
    if virtfusion.is_none() {
        return Ok(summary);
    }
    for order in list_due(ledger, now, max).await? {
        if Instant::now() >= deadline {
            break;
        }
        summary.attempted += 1;
        match deliver(ledger, virtfusion, &order.order_id).await {
            Ok(Settlement::Tokens {
                delivery: Delivery::Delivered,
                ..
            }) => summary.delivered += 1,
            Ok(Settlement::Tokens {
                delivery: Delivery::NeedsReview,
                ..
            }) => summary.needs_review += 1,
            Ok(_) => summary.still_pending += 1,
            Err(e) => {
                tracing::warn!(order_id = %order.order_id, error = %e, "delivery retry failed");
                summary.still_pending += 1;
            }
        }
    }
    Ok(summary)
}
