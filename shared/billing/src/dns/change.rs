//! Changing DNS plans (`POST /api/dns/subscription/change`).
//!
//! - **Upgrade** (the new plan costs more than the subscription's current
//!   price): applies now. The price difference is charged for the rest of
//!   the current period, prorated by the days left
//!   ([`prorate`](crate::subscriptions::prorate): started days count as
//!   left, half-up to the cent), in one `Ledger::apply` with the
//!   subscription update (402 when short, nothing changes). The update is
//!   conditioned on the period, plan and price read, so a renewal racing it
//!   makes one of the two re-read: each period and each upgrade is charged
//!   once, at the price that was in force. The transaction also checks the
//!   new plan is still active at the price read (as a purchase does): an
//!   admin changing it meanwhile makes the upgrade 409 `plan_changed` (404
//!   if deactivated), nothing charged.
//! - **Downgrade** (same price or cheaper): recorded as the pending plan;
//!   the next renewal switches to it and charges its price. No refund.
//! - The current plan again: 409. Only an `active` subscription changes
//!   plans (409 otherwise; 404 without one), and not while its renewal is
//!   due (409 `renewal_due`: the renewal comes first). The new plan must be
//!   active.

use super::plans::{Plan, PlanId, get_plan};
use super::purchase::{get_subscription, plan_check, plan_refusal};
use crate::BillingError;
use crate::store::attrs::{corrupt, n, s, time, usd};
use crate::subscriptions::store::DNS_SK;
use crate::subscriptions::{Subscription, SubscriptionStatus, prorate};
use aws_sdk_dynamodb::types::{ReturnValue, TransactWriteItem, Update};
use billing_money::Usd;
use ledger::{Change, DNS_PLAN_SERVICE_TYPE, EntryDetails, EntryKind, Ledger, LedgerError, UserId};
use time::OffsetDateTime;

/// What a plan change did.
#[derive(Clone, Debug)]
pub struct PlanChange {
    pub subscription: Subscription,
    pub balance: Usd,
    /// The prorated charge of an upgrade (zero for a downgrade).
    pub charged: Usd,
    pub upgrade: bool,
}

/// Bound on re-reads when a renewal or another change moved first.
const MAX_ROUNDS: u32 = 4;

fn conflict(message: &str, code: &'static str) -> BillingError {
    BillingError::Conflict {
        message: message.into(),
        code,
    }
}

#[tracing::instrument(skip_all, fields(user = %user, plan = plan_id))]
pub async fn change_plan(
    ledger: &Ledger,
    user: &UserId,
    plan_id: &str,
    now: OffsetDateTime,
) -> Result<PlanChange, BillingError> {
    let now = crate::subscriptions::dates::to_millis(now);
    let plan_id = PlanId::parse(plan_id).ok_or(BillingError::NotFound("Plan"))?;
    for _ in 0..MAX_ROUNDS {
        let (plan, sub) = tokio::join!(get_plan(ledger, &plan_id), get_subscription(ledger, user));
        let plan = plan?
            .filter(|p| p.active)
            .ok_or(BillingError::NotFound("Plan"))?;
        let sub = sub?.ok_or(BillingError::NotFound("Subscription"))?;
        let terms = sub
            .dns()
            .ok_or_else(|| corrupt(&sub.to_item(), "DNSSUB is not a DNS plan"))?;
        if sub.status != SubscriptionStatus::Active {
            return Err(conflict(
                "Only an active subscription can change plans",
                "subscription_not_active",
            ));
        }
        if terms.plan_id == plan.id {
            return Err(conflict("You are already on this plan", "same_plan"));
        }
        if now >= sub.next_renewal_date {
            // The paid period is over and its renewal not yet made: the
            // renewal (at the current plan) comes first.
            return Err(conflict(
                "The subscription is due for renewal; change plans after it renews",
                "renewal_due",
            ));
        }
        let outcome = if plan.price > sub.price {
            upgrade(ledger, &sub, &plan, now).await?
        } else {
            downgrade(ledger, &sub, &plan, now).await?
        };
        if let Some(done) = outcome {
            return Ok(done);
        }
        // The subscription changed since it was read (renewed, cancelled,
        // changed): decide again on what it is now.
    }
    Err(LedgerError::Contended {
        attempts: MAX_ROUNDS,
    }
    .into())
}

/// Condition of both kinds of change: still the subscription, period,
/// plan and price read, still active.
fn as_read(
    update: aws_sdk_dynamodb::types::builders::UpdateBuilder,
    sub: &Subscription,
    old_plan: &PlanId,
) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
    update
        .condition_expression(
            "id = :id AND nextRenewalDate = :due AND planId = :old_plan \
             AND price = :seen_price AND #status = :active",
        )
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":id", s(&sub.id))
        .expression_attribute_values(":due", time(sub.next_renewal_date))
        .expression_attribute_values(":old_plan", s(old_plan.as_str()))
        .expression_attribute_values(":seen_price", usd(sub.price))
        .expression_attribute_values(":active", s(SubscriptionStatus::Active.as_str()))
}

async fn upgrade(
    ledger: &Ledger,
    sub: &Subscription,
    plan: &Plan,
    now: OffsetDateTime,
) -> Result<Option<PlanChange>, BillingError> {
    let old = sub
        .dns()
        .map(|t| t.plan_id.clone())
        .unwrap_or_else(|| plan.id.clone());
    let start = sub
        .current_period_start()
        .ok_or_else(|| corrupt(&sub.to_item(), "period start out of range"))?;
    let difference = plan
        .price
        .checked_sub(sub.price)
        .map_err(|_| BillingError::InvalidInput("price out of range".into()))?;
    let charge = prorate(difference, start, sub.next_renewal_date, now)?;
    let update = as_read(
        Update::builder()
            .table_name(ledger.table())
            .key("pk", s(sub.user.pk()))
            .key("sk", s(DNS_SK))
            .update_expression(
                "SET planId = :plan_id, planName = :plan_name, domainLimit = :domains, \
                 recordLimit = :records, price = :price, updatedAt = :now REMOVE pendingPlanId",
            )
            .expression_attribute_values(":plan_id", s(plan.id.as_str()))
            .expression_attribute_values(":plan_name", s(&plan.name))
            .expression_attribute_values(":domains", n(plan.domain_limit))
            .expression_attribute_values(":records", n(plan.record_limit))
            .expression_attribute_values(":price", usd(plan.price))
            .expression_attribute_values(":now", time(now)),
        sub,
        &old,
    )
    .build()
    .map_err(|e| corrupt(&sub.to_item(), e.to_string()))?;
    let mut changed = sub.clone();
    changed.price = plan.price;
    if let crate::subscriptions::Product::DnsPlan(terms) = &mut changed.product {
        terms.plan_id = plan.id.clone();
        terms.plan_name = plan.name.clone();
        terms.domain_limit = plan.domain_limit;
        terms.record_limit = plan.record_limit;
        terms.pending_plan = None;
    }
    if !charge.is_positive() {
        // Nothing left of the period to pay for: the change alone.
        return match plain_update(ledger, &update).await? {
            true => Ok(Some(PlanChange {
                subscription: changed,
                balance: ledger.balance(&sub.user).await?,
                charged: Usd::ZERO,
                upgrade: true,
            })),
            false => Ok(None),
        };
    }
    let details = EntryDetails::new(
        EntryKind::ServicePurchase,
        format!(
            "DNS plan upgrade to {}: prorated difference to {}",
            plan.name,
            crate::subscriptions::dates::period_id(sub.next_renewal_date)
        ),
    )
    .service(
        DNS_PLAN_SERVICE_TYPE,
        Some(plan.id.as_str().to_owned()),
        None,
    )
    .reference(&sub.id);
    // Item 0: the subscription as read; item 1: the plan still at the price
    // charged for (an admin may change it meanwhile, as for a purchase).
    let change = Change::new(sub.user.clone(), -charge, details)
        .with_item(TransactWriteItem::builder().update(update).build())
        .with_item(plan_check(ledger.table(), plan)?);
    match ledger.apply(change).await {
        Ok(outcome) => Ok(Some(PlanChange {
            subscription: changed,
            balance: outcome.into_applied().balance,
            charged: charge,
            upgrade: true,
        })),
        Err(LedgerError::InsufficientBalance { balance }) => {
            Err(BillingError::InsufficientFunds { balance })
        }
        Err(LedgerError::ConditionFailed { index: 1, existing }) => {
            Err(plan_refusal(existing.as_deref()))
        }
        Err(LedgerError::ConditionFailed { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn downgrade(
    ledger: &Ledger,
    sub: &Subscription,
    plan: &Plan,
    now: OffsetDateTime,
) -> Result<Option<PlanChange>, BillingError> {
    let old = sub
        .dns()
        .map(|t| t.plan_id.clone())
        .unwrap_or_else(|| plan.id.clone());
    let update = as_read(
        Update::builder()
            .table_name(ledger.table())
            .key("pk", s(sub.user.pk()))
            .key("sk", s(DNS_SK))
            .update_expression("SET pendingPlanId = :pending, updatedAt = :now")
            .expression_attribute_values(":pending", s(plan.id.as_str()))
            .expression_attribute_values(":now", time(now)),
        sub,
        &old,
    )
    .build()
    .map_err(|e| corrupt(&sub.to_item(), e.to_string()))?;
    if !plain_update(ledger, &update).await? {
        return Ok(None);
    }
    let mut changed = sub.clone();
    if let crate::subscriptions::Product::DnsPlan(terms) = &mut changed.product {
        terms.pending_plan = Some(plan.id.clone());
    }
    Ok(Some(PlanChange {
        subscription: changed,
        balance: ledger.balance(&sub.user).await?,
        charged: Usd::ZERO,
        upgrade: false,
    }))
}

/// The transaction item's update as a plain UpdateItem; `false` when its
/// condition failed.
async fn plain_update(ledger: &Ledger, update: &Update) -> Result<bool, BillingError> {
    let result = ledger
        .client()
        .update_item()
        .table_name(update.table_name())
        .set_key(Some(update.key().clone()))
        .update_expression(update.update_expression())
        .set_condition_expression(update.condition_expression().map(str::to_owned))
        .set_expression_attribute_names(update.expression_attribute_names().cloned())
        .set_expression_attribute_values(update.expression_attribute_values().cloned())
        .return_values(ReturnValue::None)
        .send()
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
        {
            Ok(false)
        }
        Err(err) => Err(LedgerError::dynamo("UpdateItem", &err).into()),
    }
}
