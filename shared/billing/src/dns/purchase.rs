//! Buying a DNS plan: the plan's price debited and the subscription (an
//! engine [`Subscription`] of the DNS product) created in one transaction.
//! The DNS product's rule "one active DNS plan per user" is its key: every
//! user has one DNS subscription item (`USER#<id>` / `DNSSUB`), replaced by
//! a new purchase only once it no longer blocks one.

use super::plans::{PLAN_SK, Plan, PlanId, get_plan};
use crate::BillingError;
use crate::store::attrs::{corrupt, s, usd};
use crate::subscriptions::dates::{Interval, period_id, to_millis};
use crate::subscriptions::store::{DNS_SK, SubKey};
use crate::subscriptions::{DnsTerms, Product, Subscription};
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use billing_money::Usd;
use ledger::{
    AttrMap, Change, DNS_PLAN_SERVICE_TYPE, EntryDetails, EntryKind, Ledger, LedgerError, UserId,
};
use time::OffsetDateTime;

/// A new monthly subscription to `plan`, paid for one month from `now`.
pub fn start_subscription(
    user: UserId,
    plan: &Plan,
    now: OffsetDateTime,
) -> Result<Subscription, BillingError> {
    Subscription::start(
        user,
        Product::DnsPlan(DnsTerms {
            plan_id: plan.id.clone(),
            plan_name: plan.name.clone(),
            domain_limit: plan.domain_limit,
            record_limit: plan.record_limit,
            pending_plan: None,
        }),
        plan.price,
        Interval::Month,
        now,
    )
}

fn dns_key(user: &UserId) -> SubKey {
    SubKey {
        user: user.clone(),
        sk: DNS_SK.to_owned(),
    }
}

/// The user's DNS subscription (any status), read consistently.
pub async fn get_subscription(
    ledger: &Ledger,
    user: &UserId,
) -> Result<Option<Subscription>, BillingError> {
    crate::subscriptions::get(ledger, &dns_key(user)).await
}

fn already_subscribed() -> BillingError {
    BillingError::Conflict {
        message: "You already have an active DNS subscription".into(),
        code: "already_subscribed",
    }
}

/// A purchase checked against the current state, ready to apply.
#[derive(Clone, Debug)]
pub struct PreparedPurchase {
    pub plan: Plan,
    pub subscription: Subscription,
    pub now: OffsetDateTime,
}

/// What a purchase produced.
#[derive(Clone, Debug)]
pub struct Purchased {
    pub subscription: Subscription,
    /// The credits balance after the debit.
    pub balance: Usd,
}

/// Reads the plan and the user's subscription (concurrently) and refuses
/// early: 404 unknown or inactive plan, 409 already subscribed. These reads
/// only make the answer precise; the transaction's conditions enforce.
pub async fn prepare_purchase(
    ledger: &Ledger,
    user: &UserId,
    plan_id: &str,
    now: OffsetDateTime,
) -> Result<PreparedPurchase, BillingError> {
    let plan_id = PlanId::parse(plan_id).ok_or(BillingError::NotFound("Plan"))?;
    let (plan, existing) = tokio::join!(get_plan(ledger, &plan_id), get_subscription(ledger, user));
    let plan = plan?
        .filter(|p| p.active)
        .ok_or(BillingError::NotFound("Plan"))?;
    let now = to_millis(now);
    if existing?.is_some_and(|sub| sub.blocks_new(now)) {
        return Err(already_subscribed());
    }
    let subscription = start_subscription(user.clone(), &plan, now)?;
    Ok(PreparedPurchase {
        plan,
        subscription,
        now,
    })
}

impl PreparedPurchase {
    /// The ledger change: the debit, plus (item 0) the subscription put only
    /// if the user has none that blocks it, plus (item 1) a check that the
    /// plan is still active at this price. Callers may add items after these.
    pub fn to_ledger_change(&self, table: &str) -> Result<Change, BillingError> {
        let sub = &self.subscription;
        let put = sub.create_item(table, self.now)?;
        let details = EntryDetails::new(
            EntryKind::ServicePurchase,
            format!(
                "DNS plan {}: {} to {}",
                self.plan.name,
                period_id(sub.start_date),
                period_id(sub.next_renewal_date)
            ),
        )
        .service(
            DNS_PLAN_SERVICE_TYPE,
            Some(self.plan.id.as_str().to_owned()),
            None,
        )
        .reference(&sub.id);
        // No event: API.md "Events" lists none for a new subscription.
        Ok(Change::new(sub.user.clone(), -self.plan.price, details)
            .with_item(put)
            .with_item(plan_check(table, &self.plan)?)
            .with_item(sub.pointer_item(table)?))
    }
}

/// A transaction item that checks `plan` is still active at the price read
/// (a purchase or an upgrade charges that price); refused: [`plan_refusal`].
pub(super) fn plan_check(table: &str, plan: &Plan) -> Result<TransactWriteItem, BillingError> {
    let check = ConditionCheck::builder()
        .table_name(table)
        .key("pk", s(plan.id.pk()))
        .key("sk", s(PLAN_SK))
        .condition_expression("#active = :true AND price = :price")
        .expression_attribute_names("#active", "active")
        .expression_attribute_values(":true", AttributeValue::Bool(true))
        .expression_attribute_values(":price", usd(plan.price))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(|e| corrupt(&plan.to_item(), e.to_string()))?;
    Ok(TransactWriteItem::builder().condition_check(check).build())
}

/// A failed [`plan_check`] (`existing`: the plan as it is now): 409
/// `plan_changed` if it is still sold at another price, else 404.
pub(super) fn plan_refusal(existing: Option<&AttrMap>) -> BillingError {
    let still_active = existing
        .and_then(|item| Plan::from_item(item).ok())
        .is_some_and(|plan| plan.active);
    if still_active {
        BillingError::Conflict {
            message: "The plan's price changed; please review and retry".into(),
            code: "plan_changed",
        }
    } else {
        BillingError::NotFound("Plan")
    }
}

/// Applies a prepared purchase's change: debit and subscription, all or nothing.
#[tracing::instrument(skip_all)]
pub async fn apply_purchase(
    ledger: &Ledger,
    prepared: PreparedPurchase,
    change: Change,
) -> Result<Purchased, BillingError> {
    match ledger.apply(change).await {
        Ok(outcome) => Ok(Purchased {
            subscription: prepared.subscription,
            balance: outcome.into_applied().balance,
        }),
        Err(e) => Err(purchase_refusal(e)),
    }
}

/// What a refused purchase transaction means for the buyer.
pub fn purchase_refusal(err: LedgerError) -> BillingError {
    match err {
        LedgerError::InsufficientBalance { balance } => BillingError::InsufficientFunds { balance },
        LedgerError::ConditionFailed { index: 0, .. } => already_subscribed(),
        LedgerError::ConditionFailed { index: 1, existing } => plan_refusal(existing.as_deref()),
        e => e.into(),
    }
}

/// Buys `plan_id` for `user` at `now`: one atomic debit + subscription.
#[tracing::instrument(skip_all, fields(user = %user, plan = plan_id))]
pub async fn purchase(
    ledger: &Ledger,
    user: &UserId,
    plan_id: &str,
    now: OffsetDateTime,
) -> Result<Purchased, BillingError> {
    let prepared = prepare_purchase(ledger, user, plan_id, now).await?;
    let change = prepared.to_ledger_change(ledger.table())?;
    apply_purchase(ledger, prepared, change).await
}

/// Turns auto-renew off (see [`crate::subscriptions::cancel`]).
#[tracing::instrument(skip_all, fields(user = %user))]
pub async fn cancel(
    ledger: &Ledger,
    user: &UserId,
    now: OffsetDateTime,
) -> Result<Subscription, BillingError> {
    crate::subscriptions::cancel(ledger, &dns_key(user), to_millis(now)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::attrs::n;
    use crate::subscriptions::SubscriptionStatus;
    use time::macros::datetime;

    fn sample() -> Subscription {
        let plan = &super::super::plans::default_plans()[0];
        start_subscription(
            UserId::parse("42").unwrap(),
            plan,
            datetime!(2024-01-31 10:00:00.5 UTC),
        )
        .unwrap()
    }

    #[test]
    fn a_new_subscription_is_paid_for_one_anchored_month() {
        let sub = sample();
        assert_eq!(sub.status, SubscriptionStatus::Active);
        assert!(sub.auto_renew);
        assert_eq!(sub.anchor_day.get(), 31);
        assert_eq!(sub.next_renewal_date, datetime!(2024-02-29 10:00:00.5 UTC));
        assert_eq!(sub.last_renewal_date, Some(sub.start_date));
        assert_eq!(sub.price.to_string(), "5.00");
    }

    #[test]
    fn items_round_trip_and_carry_index_keys_unless_expired() {
        let mut sub = sample();
        let item = sub.to_item();
        assert_eq!(Subscription::from_item(&item).unwrap(), sub);
        assert_eq!(item["gsi1pk"], s("RENEWAL#3"), "user 42's shard");
        assert_eq!(item["gsi1sk"], s("2024-02-29T10:00:00.500Z#42"));
        sub.status = SubscriptionStatus::Expired;
        let item = sub.to_item();
        assert!(!item.contains_key("gsi1pk") && !item.contains_key("gsi1sk"));
        assert_eq!(Subscription::from_item(&item).unwrap(), sub);
    }

    #[test]
    fn what_blocks_a_new_purchase() {
        let mut sub = sample();
        let before_end = datetime!(2024-02-10 00:00 UTC);
        let after_end = datetime!(2024-03-01 00:00 UTC);
        for (status, before, after) in [
            (SubscriptionStatus::Active, true, true),
            (SubscriptionStatus::PastDue, true, true),
            (SubscriptionStatus::Cancelled, true, false),
            (SubscriptionStatus::Expired, false, false),
        ] {
            sub.status = status;
            assert_eq!(sub.blocks_new(before_end), before, "{status:?}");
            assert_eq!(sub.blocks_new(after_end), after, "{status:?}");
        }
    }

    #[test]
    fn malformed_items_are_errors() {
        let mut item = sample().to_item();
        item.insert("status".into(), s("paused"));
        assert!(Subscription::from_item(&item).is_err());
        let mut item = sample().to_item();
        item.insert("anchorDay".into(), n(32));
        assert!(Subscription::from_item(&item).is_err());
        let mut item = sample().to_item();
        item.insert("nextRenewalDate".into(), s("soon"));
        assert!(Subscription::from_item(&item).is_err());
    }
}
