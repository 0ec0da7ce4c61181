//! A user's DNS subscription: `pk=USER#<id>`, `sk=DNSSUB` (one per user; a
//! new purchase after expiry replaces the expired one — the ledger entries
//! keep the history, each referencing its subscription id).
//!
//! While the renewal job has work for it, the item carries the sparse index
//! keys `gsi1pk=RENEWAL`, `gsi1sk=<when the job should look at it>#<user>`:
//! the renewal date (active, cancelled) or the next retry (past_due).
//! Expired subscriptions leave the index.

use super::attrs::{
    corrupt, get_bool, get_s, get_time, get_u32, get_usd, n, opt_time, s, time, usd,
};
use super::dates::{AnchorDay, format_time, next_renewal, to_millis};
use super::plans::{PLAN_SK, Plan, PlanId, get_plan};
use crate::BillingError;
use crate::events::{self, DetailType, Event, Written};
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use billing_money::Usd;
use ledger::{AttrMap, Change, EntryDetails, EntryKind, Ledger, LedgerError, UserId};
use time::OffsetDateTime;

pub const SUBSCRIPTION_SK: &str = "DNSSUB";
/// `gsi1pk` of subscriptions the renewal job has work for.
pub const RENEWAL_INDEX_PK: &str = "RENEWAL";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubscriptionStatus {
    /// Paid up; renews at `nextRenewalDate`.
    Active,
    /// A renewal could not be paid; retried by every job run until the
    /// grace period ends, then expired.
    PastDue,
    /// Auto-renew off; active until `nextRenewalDate`, then expired.
    Cancelled,
    /// Over. Does not block a new purchase.
    Expired,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::PastDue => "past_due",
            SubscriptionStatus::Cancelled => "cancelled",
            SubscriptionStatus::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<SubscriptionStatus> {
        [
            SubscriptionStatus::Active,
            SubscriptionStatus::PastDue,
            SubscriptionStatus::Cancelled,
            SubscriptionStatus::Expired,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub user: UserId,
    pub id: String,
    pub plan_id: PlanId,
    pub plan_name: String,
    /// What each renewal charges: the plan's price when bought. A later
    /// change of the plan's price does not change existing subscriptions.
    pub price: Usd,
    pub domain_limit: u32,
    pub record_limit: u32,
    pub status: SubscriptionStatus,
    pub auto_renew: bool,
    pub start_date: OffsetDateTime,
    /// End of the paid period: the next charge (active), or the end of service (cancelled).
    pub next_renewal_date: OffsetDateTime,
    /// When the current period was paid (the purchase, then each renewal).
    pub last_renewal_date: Option<OffsetDateTime>,
    pub anchor_day: AnchorDay,
    /// When the first failed renewal of the unpaid period happened.
    pub past_due_since: Option<OffsetDateTime>,
    pub cancelled_at: Option<OffsetDateTime>,
    pub expired_at: Option<OffsetDateTime>,
}

/// The index sort key: the time the job should look at it, then the user.
pub fn renewal_sort_key(at: OffsetDateTime, user: &UserId) -> String {
    format!("{}#{}", format_time(at), user.as_str())
}

impl Subscription {
    /// A new subscription to `plan`, paid for one month from `now`.
    pub fn start(
        user: UserId,
        plan: &Plan,
        now: OffsetDateTime,
    ) -> Result<Subscription, BillingError> {
        let now = to_millis(now);
        let anchor_day = AnchorDay::of(now);
        let next = next_renewal(now, anchor_day)
            .ok_or_else(|| BillingError::InvalidInput("date out of range".into()))?;
        Ok(Subscription {
            user,
            id: format!("sub_{}", uuid::Uuid::new_v4().simple()),
            plan_id: plan.id.clone(),
            plan_name: plan.name.clone(),
            price: plan.price,
            domain_limit: plan.domain_limit,
            record_limit: plan.record_limit,
            status: SubscriptionStatus::Active,
            auto_renew: true,
            start_date: now,
            next_renewal_date: next,
            last_renewal_date: Some(now),
            anchor_day,
            past_due_since: None,
            cancelled_at: None,
            expired_at: None,
        })
    }

    /// Whether the user may not buy another plan while this one exists: it is
    /// active or past due, or cancelled with time left.
    pub fn blocks_purchase(&self, now: OffsetDateTime) -> bool {
        match self.status {
            SubscriptionStatus::Active | SubscriptionStatus::PastDue => true,
            SubscriptionStatus::Cancelled => now < self.next_renewal_date,
            SubscriptionStatus::Expired => false,
        }
    }

    pub fn to_item(&self) -> AttrMap {
        let mut item = AttrMap::new();
        item.insert("pk".into(), s(self.user.pk()));
        item.insert("sk".into(), s(SUBSCRIPTION_SK));
        item.insert("user".into(), s(self.user.as_str()));
        item.insert("id".into(), s(&self.id));
        item.insert("planId".into(), s(self.plan_id.as_str()));
        item.insert("planName".into(), s(&self.plan_name));
        item.insert("price".into(), usd(self.price));
        item.insert("domainLimit".into(), n(self.domain_limit));
        item.insert("recordLimit".into(), n(self.record_limit));
        item.insert("status".into(), s(self.status.as_str()));
        item.insert("autoRenew".into(), AttributeValue::Bool(self.auto_renew));
        item.insert("startDate".into(), time(self.start_date));
        item.insert("nextRenewalDate".into(), time(self.next_renewal_date));
        item.insert("anchorDay".into(), n(self.anchor_day.get()));
        for (name, value) in [
            ("lastRenewalDate", self.last_renewal_date),
            ("pastDueSince", self.past_due_since),
            ("cancelledAt", self.cancelled_at),
            ("expiredAt", self.expired_at),
        ] {
            if let Some(value) = value {
                item.insert(name.into(), time(value));
            }
        }
        // In the renewal index unless expired.
        let job_at = match self.status {
            SubscriptionStatus::Expired => None,
            _ => Some(self.next_renewal_date),
        };
        if let Some(at) = job_at {
            item.insert("gsi1pk".into(), s(RENEWAL_INDEX_PK));
            item.insert("gsi1sk".into(), s(renewal_sort_key(at, &self.user)));
        }
        item
    }

    pub fn from_item(item: &AttrMap) -> Result<Subscription, BillingError> {
        let user = get_s(item, "pk")?
            .strip_prefix("USER#")
            .and_then(|id| UserId::parse(id).ok())
            .ok_or_else(|| corrupt(item, "pk is not a user key"))?;
        let status = SubscriptionStatus::parse(get_s(item, "status")?)
            .ok_or_else(|| corrupt(item, "unknown status"))?;
        let anchor_day = u8::try_from(get_u32(item, "anchorDay")?)
            .ok()
            .and_then(AnchorDay::new)
            .ok_or_else(|| corrupt(item, "anchorDay out of range"))?;
        let plan_id = PlanId::parse(get_s(item, "planId")?)
            .ok_or_else(|| corrupt(item, "planId is not a plan id"))?;
        Ok(Subscription {
            user,
            id: get_s(item, "id")?.to_owned(),
            plan_id,
            plan_name: get_s(item, "planName")?.to_owned(),
            price: get_usd(item, "price")?,
            domain_limit: get_u32(item, "domainLimit")?,
            record_limit: get_u32(item, "recordLimit")?,
            status,
            auto_renew: get_bool(item, "autoRenew")?,
            start_date: get_time(item, "startDate")?,
            next_renewal_date: get_time(item, "nextRenewalDate")?,
            last_renewal_date: opt_time(item, "lastRenewalDate")?,
            anchor_day,
            past_due_since: opt_time(item, "pastDueSince")?,
            cancelled_at: opt_time(item, "cancelledAt")?,
            expired_at: opt_time(item, "expiredAt")?,
        })
    }
}

/// The user's subscription (any status), read consistently.
pub async fn get_subscription(
    ledger: &Ledger,
    user: &UserId,
) -> Result<Option<Subscription>, BillingError> {
    let out = ledger
        .client()
        .get_item()
        .table_name(ledger.table())
        .key("pk", s(user.pk()))
        .key("sk", s(SUBSCRIPTION_SK))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| LedgerError::dynamo("GetItem", &e))?;
    out.item.as_ref().map(Subscription::from_item).transpose()
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
    if existing?.is_some_and(|sub| sub.blocks_purchase(now)) {
        return Err(already_subscribed());
    }
    let subscription = Subscription::start(user.clone(), &plan, now)?;
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
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(sub.to_item()))
            .condition_expression(
                "attribute_not_exists(pk) OR #status = :expired \
                 OR (#status = :cancelled AND nextRenewalDate <= :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":expired", s(SubscriptionStatus::Expired.as_str()))
            .expression_attribute_values(":cancelled", s(SubscriptionStatus::Cancelled.as_str()))
            .expression_attribute_values(":now", time(self.now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| corrupt(&sub.to_item(), e.to_string()))?;
        let plan_check = ConditionCheck::builder()
            .table_name(table)
            .key("pk", s(self.plan.id.pk()))
            .key("sk", s(PLAN_SK))
            .condition_expression("#active = :true AND price = :price")
            .expression_attribute_names("#active", "active")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":price", usd(self.plan.price))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| corrupt(&self.plan.to_item(), e.to_string()))?;
        let details = EntryDetails::new(
            EntryKind::DnsPurchase,
            format!(
                "DNS plan {}: {} to {}",
                self.plan.name,
                super::dates::period_id(sub.start_date),
                super::dates::period_id(sub.next_renewal_date)
            ),
        )
        .reference(&sub.id);
        Ok(Change::new(sub.user.clone(), -self.plan.price, details)
            .with_item(TransactWriteItem::builder().put(put).build())
            .with_item(
                TransactWriteItem::builder()
                    .condition_check(plan_check)
                    .build(),
            ))
    }
}

/// Applies a prepared purchase's change: debit and subscription, all or nothing.
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
        LedgerError::ConditionFailed { index: 1, existing } => {
            let still_active = existing
                .as_deref()
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
        e => e.into(),
    }
}

/// Buys `plan_id` for `user` at `now`: one atomic debit + subscription.
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

/// Turns auto-renew off. An active subscription becomes `cancelled` and
/// stays usable until `nextRenewalDate` (the job expires it then, without a
/// charge); a `past_due` one has no paid time left and expires now.
/// Cancelling twice answers the cancelled subscription again.
pub async fn cancel(
    ledger: &Ledger,
    user: &UserId,
    now: OffsetDateTime,
) -> Result<Subscription, BillingError> {
    let now = to_millis(now);
    // Bounded: each round loses only to a concurrent renewal or expiry.
    for _ in 0..4 {
        let update = aws_sdk_dynamodb::types::Update::builder()
            .table_name(ledger.table())
            .key("pk", s(user.pk()))
            .key("sk", s(SUBSCRIPTION_SK))
            .update_expression("SET #status = :cancelled, autoRenew = :false, cancelledAt = :now, updatedAt = :now")
            .condition_expression("#status = :active")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":cancelled", s(SubscriptionStatus::Cancelled.as_str()))
            .expression_attribute_values(":active", s(SubscriptionStatus::Active.as_str()))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":now", time(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| LedgerError::corrupt(user.pk(), e.to_string()))?;
        // The event names the subscription it cancels: read it first (the
        // condition makes sure it is still the active one).
        let Some(current) = get_subscription(ledger, user).await? else {
            return Err(BillingError::NotFound("Subscription"));
        };
        let event = subscription_event(
            DetailType::SubscriptionCancelled,
            &format!("{}#cancelled", current.id),
            &current,
        )
        .text("cancelledAt", format_time(now));
        let update = TransactWriteItem::builder().update(update).build();
        let existing = match events::write_with(ledger, update, &[event]).await? {
            Written::Yes => {
                return get_subscription(ledger, user)
                    .await?
                    .ok_or(BillingError::NotFound("Subscription"));
            }
            Written::ConditionFailed { existing } => existing.map(|item| *item),
        };
        let Some(existing) = existing else {
            return Err(BillingError::NotFound("Subscription"));
        };
        let sub = Subscription::from_item(&existing)?;
        match sub.status {
            SubscriptionStatus::Active => continue,
            SubscriptionStatus::Cancelled => return Ok(sub),
            SubscriptionStatus::Expired => {
                return Err(BillingError::Conflict {
                    message: "The subscription has already ended".into(),
                    code: "subscription_ended",
                });
            }
            SubscriptionStatus::PastDue => {
                if let Some(expired) = expire(ledger, &sub, now, true).await? {
                    return Ok(expired);
                }
            }
        }
    }
    Err(LedgerError::Contended { attempts: 4 }.into())
}

/// Ends `sub` now (no charge) if it is still as read: status, period and id
/// unchanged. Leaves the renewal index. `None` when it changed meanwhile.
pub(crate) async fn expire(
    ledger: &Ledger,
    sub: &Subscription,
    now: OffsetDateTime,
    cancelled_by_user: bool,
) -> Result<Option<Subscription>, BillingError> {
    let set = if cancelled_by_user {
        "SET #status = :expired, autoRenew = :false, expiredAt = :now, cancelledAt = :now, updatedAt = :now"
    } else {
        "SET #status = :expired, autoRenew = :false, expiredAt = :now, updatedAt = :now"
    };
    let update = aws_sdk_dynamodb::types::Update::builder()
        .table_name(ledger.table())
        .key("pk", s(sub.user.pk()))
        .key("sk", s(SUBSCRIPTION_SK))
        .update_expression(format!("{set} REMOVE gsi1pk, gsi1sk"))
        .condition_expression("id = :id AND #status = :seen AND nextRenewalDate = :due")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":expired", s(SubscriptionStatus::Expired.as_str()))
        .expression_attribute_values(":false", AttributeValue::Bool(false))
        .expression_attribute_values(":now", time(now))
        .expression_attribute_values(":id", s(&sub.id))
        .expression_attribute_values(":seen", s(sub.status.as_str()))
        .expression_attribute_values(":due", time(sub.next_renewal_date))
        .build()
        .map_err(|e| corrupt(&sub.to_item(), e.to_string()))?;
    // One expiry per subscription, ever; a past-due one the user cancels is
    // both cancelled and expired.
    let mut reported = vec![
        subscription_event(
            DetailType::SubscriptionExpired,
            &format!("{}#expired", sub.id),
            sub,
        )
        .text("expiredAt", format_time(now))
        .text(
            "reason",
            if cancelled_by_user {
                "cancelled"
            } else if sub.status == SubscriptionStatus::PastDue {
                "unpaid"
            } else {
                "ended"
            },
        ),
    ];
    if cancelled_by_user {
        reported.push(
            subscription_event(
                DetailType::SubscriptionCancelled,
                &format!("{}#cancelled", sub.id),
                sub,
            )
            .text("cancelledAt", format_time(now)),
        );
    }
    let update = TransactWriteItem::builder().update(update).build();
    match events::write_with(ledger, update, &reported).await? {
        Written::Yes => get_subscription(ledger, &sub.user).await,
        Written::ConditionFailed { .. } => Ok(None),
    }
}

/// An event about `sub` (`subscription.*`): its id, product and plan, price,
/// status as read and the end of its paid period.
pub(crate) fn subscription_event(detail_type: DetailType, key: &str, sub: &Subscription) -> Event {
    Event::new(detail_type, key, &sub.user)
        .text("subscriptionId", &sub.id)
        .text("product", "dns_plan")
        .text("planId", sub.plan_id.as_str())
        .usd("price", sub.price)
        .text("nextRenewalDate", format_time(sub.next_renewal_date))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn sample() -> Subscription {
        let plan = &super::super::plans::default_plans()[0];
        Subscription::start(
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
        assert_eq!(item["gsi1pk"], s("RENEWAL"));
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
            assert_eq!(sub.blocks_purchase(before_end), before, "{status:?}");
            assert_eq!(sub.blocks_purchase(after_end), after, "{status:?}");
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
