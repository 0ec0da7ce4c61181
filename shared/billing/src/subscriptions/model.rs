//! What a subscription is, and the engine's rules over it (pure): a
//! subscription names what it renews (a product: a DNS plan, or a platform
//! service with its own price and interval), is paid one anchored period at
//! a time, and moves through the statuses below.
//!
//! ```text
//!            renewal paid                      cancel (owner, service, admin)
//!   active ───────────────▶ active            active ──▶ cancelled ──(period end)──▶ expired
//!      │ renewal short                         past_due ──(cancel)──▶ expired
//!      ▼
//!   past_due ──(paid within 7 days)──▶ active
//!      └──────(grace over)───────────▶ expired
//! ```

use super::dates::{AnchorDay, Interval, grace_end, next_due, period_start, to_millis};
use crate::BillingError;
use crate::dns::PlanId;
use billing_money::Usd;
use ledger::{DNS_PLAN_SERVICE_TYPE, ServiceType, UserId};
use rust_decimal::{Decimal, RoundingStrategy};
use time::OffsetDateTime;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubscriptionStatus {
    /// Paid up; renews at `nextRenewalDate`.
    Active,
    /// A renewal could not be paid; retried by every job run until the
    /// grace period ends, then expired.
    PastDue,
    /// Auto-renew off; active until `nextRenewalDate`, then expired.
    Cancelled,
    /// Over. Does not block a new subscription to the same thing.
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

/// A DNS plan subscription's terms (limits copied from the plan).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsTerms {
    pub plan_id: PlanId,
    pub plan_name: String,
    pub domain_limit: u32,
    pub record_limit: u32,
    /// A downgrade waiting for the next renewal.
    pub pending_plan: Option<PlanId>,
}

/// A platform service subscription's terms (API.md "Platform services").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceTerms {
    pub service_type: ServiceType,
    pub service_id: String,
    pub description: String,
}

/// What a subscription renews.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Product {
    DnsPlan(DnsTerms),
    Service(ServiceTerms),
}

impl Product {
    /// The service type its ledger entries name (`service_renewal_<type>`).
    pub fn service_type(&self) -> &str {
        match self {
            Product::DnsPlan(_) => DNS_PLAN_SERVICE_TYPE,
            Product::Service(terms) => terms.service_type.as_str(),
        }
    }

    /// The service id its ledger entries name.
    pub fn service_id(&self) -> &str {
        match self {
            Product::DnsPlan(terms) => terms.plan_id.as_str(),
            Product::Service(terms) => &terms.service_id,
        }
    }

    /// How history names it ("DNS plan Pro", "dedicated_server srv-42").
    pub fn label(&self) -> String {
        match self {
            Product::DnsPlan(terms) => format!("DNS plan {}", terms.plan_name),
            Product::Service(terms) => format!("{}: {}", terms.service_type, terms.description),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub user: UserId,
    pub id: String,
    pub product: Product,
    /// What the current period cost, and what the next renewal charges
    /// unless the product says otherwise (a DNS plan renews at its plan's
    /// price of the day).
    pub price: Usd,
    pub interval: Interval,
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

impl Subscription {
    /// A new subscription, paid for one period from `now`.
    pub fn start(
        user: UserId,
        product: Product,
        price: Usd,
        interval: Interval,
        now: OffsetDateTime,
    ) -> Result<Subscription, BillingError> {
        let now = to_millis(now);
        let anchor_day = AnchorDay::of(now);
        let next = next_due(now, anchor_day, interval)
            .ok_or_else(|| BillingError::InvalidInput("date out of range".into()))?;
        Ok(Subscription {
            user,
            id: format!("sub_{}", uuid::Uuid::new_v4().simple()),
            product,
            price,
            interval,
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

    /// Whether a new subscription to the same thing is refused while this
    /// one exists: it is active or past due, or cancelled with time left.
    pub fn blocks_new(&self, now: OffsetDateTime) -> bool {
        match self.status {
            SubscriptionStatus::Active | SubscriptionStatus::PastDue => true,
            SubscriptionStatus::Cancelled => now < self.next_renewal_date,
            SubscriptionStatus::Expired => false,
        }
    }

    pub fn dns(&self) -> Option<&DnsTerms> {
        match &self.product {
            Product::DnsPlan(terms) => Some(terms),
            Product::Service(_) => None,
        }
    }

    /// The renewal date after the current one.
    pub fn following_due(&self) -> Option<OffsetDateTime> {
        next_due(self.next_renewal_date, self.anchor_day, self.interval)
    }

    /// When the current period began.
    pub fn current_period_start(&self) -> Option<OffsetDateTime> {
        period_start(self.next_renewal_date, self.anchor_day, self.interval)
    }
}

/// What the renewal job does with a subscription at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Charge the period ending at `nextRenewalDate` and start the next one.
    Renew,
    /// End it without a charge.
    Expire,
    /// Nothing to do (not due, or already over).
    Skip,
}

pub fn decide(sub: &Subscription, now: OffsetDateTime) -> Action {
    match sub.status {
        SubscriptionStatus::Expired => Action::Skip,
        _ if sub.next_renewal_date > now => Action::Skip,
        SubscriptionStatus::Active if sub.auto_renew => Action::Renew,
        SubscriptionStatus::Active | SubscriptionStatus::Cancelled => Action::Expire,
        SubscriptionStatus::PastDue => {
            let since = sub.past_due_since.unwrap_or(sub.next_renewal_date);
            match grace_end(since) {
                Some(end) if now < end && sub.auto_renew => Action::Renew,
                _ => Action::Expire,
            }
        }
    }
}

/// The part of `difference` (a price per period) owed for the rest of the
/// period `[start, end)` at `now`: `difference × days left / days in the
/// period`, where a started day counts as left (days left rounded up) and
/// the result is rounded half-up to the cent. Zero at or past the end.
pub fn prorate(
    difference: Usd,
    start: OffsetDateTime,
    end: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<Usd, BillingError> {
    const DAY: i64 = 86_400;
    let period_days = ((end - start).whole_seconds() + DAY / 2) / DAY;
    let left_seconds = (end - now).whole_seconds().max(0);
    let left_days = ((left_seconds + DAY - 1) / DAY).min(period_days);
    if period_days <= 0 || left_days == 0 {
        return Ok(Usd::ZERO);
    }
    let exact = difference.as_decimal() * Decimal::from(left_days) / Decimal::from(period_days);
    let cents = exact.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    Usd::from_decimal(cents)
        .map_err(|_| BillingError::InvalidInput("prorated amount out of range".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn usd(text: &str) -> Usd {
        billing_money::parse_usd_literal(text).unwrap()
    }

    #[test]
    fn proration_counts_started_days_and_rounds_half_up() {
        let start = datetime!(2024-04-01 00:00 UTC);
        let end = datetime!(2024-05-01 00:00 UTC); // 30 days
        // Day 10 of 30 over: 20 days left of 10.00 → 6.666… → 6.67.
        let day_10 = datetime!(2024-04-11 00:00 UTC);
        assert_eq!(
            prorate(usd("10.00"), start, end, day_10).unwrap(),
            usd("6.67")
        );
        // A started day counts as left.
        let later = datetime!(2024-04-11 00:00:01 UTC);
        assert_eq!(
            prorate(usd("10.00"), start, end, later).unwrap(),
            usd("6.67")
        );
        // 15 of 30 days of 0.01 = 0.005 → half-up 0.01.
        let half = datetime!(2024-04-16 00:00 UTC);
        assert_eq!(prorate(usd("0.01"), start, end, half).unwrap(), usd("0.01"));
        assert_eq!(
            prorate(usd("10.00"), start, end, start).unwrap(),
            usd("10.00")
        );
        assert_eq!(prorate(usd("10.00"), start, end, end).unwrap(), Usd::ZERO);
    }

    #[test]
    fn decisions() {
        let user = UserId::parse("7").unwrap();
        let product = Product::Service(ServiceTerms {
            service_type: ServiceType::parse("dedicated_server").unwrap(),
            service_id: "srv-1".into(),
            description: "DS-1".into(),
        });
        let mut sub = Subscription::start(
            user,
            product,
            usd("49.00"),
            Interval::Year,
            datetime!(2024-02-29 10:00 UTC),
        )
        .unwrap();
        assert_eq!(sub.next_renewal_date, datetime!(2025-02-28 10:00 UTC));
        assert_eq!(decide(&sub, datetime!(2025-02-28 09:59 UTC)), Action::Skip);
        assert_eq!(decide(&sub, datetime!(2025-02-28 10:00 UTC)), Action::Renew);
        sub.status = SubscriptionStatus::PastDue;
        sub.past_due_since = Some(datetime!(2025-02-28 10:00 UTC));
        assert_eq!(decide(&sub, datetime!(2025-03-07 09:59 UTC)), Action::Renew);
        assert_eq!(
            decide(&sub, datetime!(2025-03-07 10:00 UTC)),
            Action::Expire
        );
        sub.status = SubscriptionStatus::Cancelled;
        assert_eq!(
            decide(&sub, datetime!(2025-02-28 10:00 UTC)),
            Action::Expire
        );
        assert!(!sub.blocks_new(datetime!(2025-02-28 10:00 UTC)));
        assert!(sub.blocks_new(datetime!(2025-02-01 10:00 UTC)));
    }
}
