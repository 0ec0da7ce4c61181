//! The renewal job: finds the subscriptions that need it through the sparse
//! index (`gsi1pk=RENEWAL`, `gsi1sk <= now`), so its cost grows with the due
//! subscriptions, not with all of them, and for each one:
//!
//! - **active, due**: debits the price and moves `nextRenewalDate` one
//!   anchored month on, in one `Ledger::apply` with the once-key
//!   `renewal/<subId>#<period>` and the subscription update conditioned on
//!   it still being due for that period — however many runs overlap, a
//!   period is charged once;
//! - **short balance**: `past_due` (from the first failure), retried by every
//!   later run; after the grace period
//!   ([`GRACE_PERIOD`](super::dates::GRACE_PERIOD)) it expires;
//! - **cancelled, period over**: expired, no charge.
//!
//! Pages are bounded; the job stops taking pages at the soft deadline and
//! abandons in-flight items at the hard one (each item is one atomic
//! transaction, so an abandoned item is either done or untouched). What is
//! left is still in the index and the next run picks it up.

use super::attrs::{corrupt, s, time};
use super::dates::{format_time, grace_end, next_renewal, period_id, to_millis};
use super::plans::{INDEX_NAME, batch_get};
use super::subscription::subscription_event;
use super::subscription::{
    RENEWAL_INDEX_PK, SUBSCRIPTION_SK, Subscription, SubscriptionStatus, expire, renewal_sort_key,
};
use crate::BillingError;
use crate::events::{self, DetailType, Event, Written};
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use ledger::{
    AttrMap, Change, ChangeOutcome, EntryDetails, EntryKind, Ledger, LedgerError, OnceKey,
};
use serde::Serialize;
use std::collections::HashSet;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Once-key kind of renewal charges (`ONCE#renewal#<subId>#<period>`).
pub const RENEWAL_ONCE_KIND: &str = "renewal";
/// A past-due subscription is looked at again by any run this much later.
pub const PAST_DUE_RETRY_DELAY: time::Duration = time::Duration::seconds(1);

#[derive(Clone, Copy, Debug)]
pub struct RenewalOptions {
    /// Index entries per Query page (≤ 100: one BatchGetItem per page);
    /// also the number of subscriptions processed concurrently.
    pub page_size: u16,
    /// Upper bound on pages per run.
    pub max_pages: u32,
}

impl Default for RenewalOptions {
    fn default() -> Self {
        RenewalOptions {
            page_size: 50,
            max_pages: 400,
        }
    }
}

/// When to stop: no new page after `soft`, in-flight items abandoned at `hard`.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    pub soft: Instant,
    pub hard: Instant,
}

impl Deadline {
    /// Stop taking pages `margin` before `end`, abandon work 2 s before it.
    pub fn before(end: Instant, margin: Duration) -> Deadline {
        let now = Instant::now();
        let hard = end
            .checked_sub(Duration::from_secs(2))
            .unwrap_or(now)
            .max(now);
        let soft = end.checked_sub(margin).unwrap_or(now).max(now).min(hard);
        Deadline { soft, hard }
    }
}

/// The job's JSON summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RenewalSummary {
    /// The job's clock (the event's `time`).
    pub now: String,
    /// Periods charged by this run (including past-due ones that were paid now).
    pub renewed: u64,
    /// Renewals that could not be paid: newly or still `past_due`.
    pub past_due: u64,
    /// Subscriptions ended: cancelled at period end, or past due beyond grace.
    pub expired: u64,
    /// Pending VirtFusion deliveries retried (filled in by the function).
    pub retried: u64,
    /// Looked at but nothing to do (already renewed by an overlapping run, not due, changed meanwhile).
    pub skipped: u64,
    /// Subscriptions whose processing failed (logged; retried by the next run).
    pub errors: u64,
    /// Abandoned at the hard deadline (retried by the next run).
    pub interrupted: u64,
    /// Index entries read (Query `ScannedCount`).
    pub scanned: u64,
    /// Subscription items read.
    pub read: u64,
    pub pages: u64,
    /// Every due subscription was looked at.
    pub complete: bool,
    /// Stopped at the deadline or the page bound with work left.
    pub stopped_early: bool,
    pub elapsed_ms: u64,
}

/// What the job does with a subscription at `now` (pure).
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Renewed,
    PastDue,
    Expired,
    Skipped,
}

/// Processes one subscription as read (consistently) at `now`.
pub async fn process(
    ledger: &Ledger,
    sub: &Subscription,
    now: OffsetDateTime,
) -> Result<Outcome, BillingError> {
    match decide(sub, now) {
        Action::Skip => Ok(Outcome::Skipped),
        Action::Expire => Ok(match expire(ledger, sub, now, false).await? {
            Some(_) => Outcome::Expired,
            None => Outcome::Skipped,
        }),
        Action::Renew => renew(ledger, sub, now).await,
    }
}

/// The condition every renewal-side write carries: still this subscription,
/// still due for the period read, still renewing.
const STILL_DUE: &str =
    "id = :id AND nextRenewalDate = :due AND autoRenew = :true AND #status IN (:active, :past_due)";

fn still_due(
    update: aws_sdk_dynamodb::types::builders::UpdateBuilder,
    sub: &Subscription,
) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
    update
        .condition_expression(STILL_DUE)
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":id", s(&sub.id))
        .expression_attribute_values(":due", time(sub.next_renewal_date))
        .expression_attribute_values(":true", AttributeValue::Bool(true))
        .expression_attribute_values(":active", s(SubscriptionStatus::Active.as_str()))
        .expression_attribute_values(":past_due", s(SubscriptionStatus::PastDue.as_str()))
}

async fn renew(
    ledger: &Ledger,
    sub: &Subscription,
    now: OffsetDateTime,
) -> Result<Outcome, BillingError> {
    let due = sub.next_renewal_date;
    let next = next_renewal(due, sub.anchor_day)
        .ok_or_else(|| corrupt(&sub.to_item(), "renewal date out of range"))?;
    let period = period_id(due);
    let update = still_due(
        Update::builder()
            .table_name(ledger.table())
            .key("pk", s(sub.user.pk()))
            .key("sk", s(SUBSCRIPTION_SK))
            .update_expression(
                "SET #status = :active, nextRenewalDate = :next, lastRenewalDate = :now, \
                 gsi1pk = :gsi_pk, gsi1sk = :gsi_sk, updatedAt = :now REMOVE pastDueSince",
            )
            .expression_attribute_values(":next", time(next))
            .expression_attribute_values(":now", time(now))
            .expression_attribute_values(":gsi_pk", s(RENEWAL_INDEX_PK))
            .expression_attribute_values(":gsi_sk", s(renewal_sort_key(next, &sub.user))),
        sub,
    )
    .build()
    .map_err(|e| corrupt(&sub.to_item(), e.to_string()))?;
    let details = EntryDetails::new(
        EntryKind::DnsRenewal,
        format!(
            "DNS plan {}: renewal {} to {}",
            sub.plan_name,
            period,
            period_id(next)
        ),
    )
    .reference(&sub.id);
    let once = OnceKey::new(RENEWAL_ONCE_KIND, format!("{}#{}", sub.id, period));
    let renewed = subscription_event(DetailType::SubscriptionRenewed, &once.pk(), sub)
        .usd("amount", sub.price)
        .text("period", period.clone())
        .text("renewedAt", format_time(now))
        .text("nextRenewalDate", format_time(next));
    let change = Change::new(sub.user.clone(), -sub.price, details)
        .once(once)
        .with_item(TransactWriteItem::builder().update(update).build())
        .with_item_for(events::outbox(ledger.table(), move |preview| {
            renewed.clone().usd("balance", preview.balance_after)
        }));
    match ledger.apply(change).await {
        Ok(ChangeOutcome::Applied(_)) => Ok(Outcome::Renewed),
        // Another run charged this period first.
        Ok(ChangeOutcome::AlreadyApplied(_)) => Ok(Outcome::Skipped),
        Err(LedgerError::InsufficientBalance { .. }) => mark_past_due(ledger, sub, now).await,
        // Cancelled, renewed or replaced meanwhile.
        Err(LedgerError::ConditionFailed { .. }) => Ok(Outcome::Skipped),
        Err(e) => Err(e.into()),
    }
}

async fn mark_past_due(
    ledger: &Ledger,
    sub: &Subscription,
    now: OffsetDateTime,
) -> Result<Outcome, BillingError> {
    let retry_at = now
        .checked_add(PAST_DUE_RETRY_DELAY)
        .ok_or_else(|| corrupt(&sub.to_item(), "time out of range"))?;
    let update = still_due(
        Update::builder()
            .table_name(ledger.table())
            .key("pk", s(sub.user.pk()))
            .key("sk", s(SUBSCRIPTION_SK))
            .update_expression(
                "SET #status = :past_due, pastDueSince = if_not_exists(pastDueSince, :now), \
                 gsi1sk = :gsi_sk, updatedAt = :now",
            )
            .expression_attribute_values(":now", time(now))
            .expression_attribute_values(":gsi_sk", s(renewal_sort_key(retry_at, &sub.user))),
        sub,
    )
    .build()
    .map_err(|e| corrupt(&sub.to_item(), e.to_string()))?;
    // The first failure of a period is reported; later retries of it are not.
    let reported: Vec<Event> = if sub.status == SubscriptionStatus::Active {
        vec![
            subscription_event(
                DetailType::SubscriptionPastDue,
                &format!("{}#{}#past_due", sub.id, period_id(sub.next_renewal_date)),
                sub,
            )
            .text("pastDueSince", format_time(now))
            .usd("amountDue", sub.price),
        ]
    } else {
        Vec::new()
    };
    let update = TransactWriteItem::builder().update(update).build();
    match events::write_with(ledger, update, &reported).await? {
        Written::Yes => Ok(Outcome::PastDue),
        Written::ConditionFailed { .. } => Ok(Outcome::Skipped),
    }
}

/// Runs the job at `now` until every due subscription was looked at, the
/// page bound is reached, or the deadline. A failed index Query is an error
/// (the invocation fails and is retried); a failed subscription is counted
/// in `errors` and left for the next run.
pub async fn run_renewals(
    ledger: &Ledger,
    now: OffsetDateTime,
    deadline: Deadline,
    options: RenewalOptions,
) -> Result<RenewalSummary, BillingError> {
    let started = Instant::now();
    let now = to_millis(now);
    let mut summary = RenewalSummary {
        now: format_time(now),
        ..RenewalSummary::default()
    };
    let upper = format!("{}#~", format_time(now)); // '~' sorts after every user id character
    let page_size = i32::from(options.page_size.clamp(1, 100));
    let mut start_key: Option<AttrMap> = None;
    let mut seen: HashSet<String> = HashSet::new();
    let mut exhausted = false;
    for _ in 0..options.max_pages {
        if Instant::now() >= deadline.soft {
            break;
        }
        let out = ledger
            .client()
            .query()
            .table_name(ledger.table())
            .index_name(INDEX_NAME)
            .key_condition_expression("gsi1pk = :pk AND gsi1sk <= :upper")
            .expression_attribute_values(":pk", s(RENEWAL_INDEX_PK))
            .expression_attribute_values(":upper", s(upper.as_str()))
            .limit(page_size)
            .set_exclusive_start_key(start_key.take())
            .send()
            .await
            .map_err(|e| LedgerError::dynamo("Query", &e))?;
        summary.pages += 1;
        summary.scanned += u64::try_from(out.scanned_count()).unwrap_or(0);
        // One period per subscription per run: a renewed subscription that is
        // still due (catching up) may come round again in a later page.
        let keys: Vec<AttrMap> = out
            .items()
            .iter()
            .filter_map(|k| {
                let pk = k.get("pk")?.clone();
                let sk = k.get("sk")?.clone();
                let AttributeValue::S(text) = &pk else {
                    return None;
                };
                seen.insert(text.clone())
                    .then(|| AttrMap::from([("pk".to_owned(), pk), ("sk".to_owned(), sk)]))
            })
            .collect();
        if !keys.is_empty() {
            let items = batch_get(ledger, keys, true).await?;
            summary.read += items.len() as u64;
            process_page(ledger, items, now, deadline, &mut summary).await;
        }
        match out.last_evaluated_key {
            Some(key) if !key.is_empty() => start_key = Some(key),
            _ => {
                exhausted = true;
                break;
            }
        }
    }
    summary.complete = exhausted && summary.interrupted == 0;
    summary.stopped_early = !exhausted;
    summary.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(summary)
}

async fn process_page(
    ledger: &Ledger,
    items: Vec<AttrMap>,
    now: OffsetDateTime,
    deadline: Deadline,
    summary: &mut RenewalSummary,
) {
    let mut tasks = JoinSet::new();
    for item in items {
        let sub = match Subscription::from_item(&item) {
            Ok(sub) => sub,
            Err(error) => {
                tracing::error!(%error, "unreadable subscription skipped");
                summary.errors += 1;
                continue;
            }
        };
        let ledger = ledger.clone();
        tasks.spawn(async move {
            let result = tokio::time::timeout_at(deadline.hard, process(&ledger, &sub, now)).await;
            (sub, result)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((_, Ok(Ok(outcome)))) => match outcome {
                Outcome::Renewed => summary.renewed += 1,
                Outcome::PastDue => summary.past_due += 1,
                Outcome::Expired => summary.expired += 1,
                Outcome::Skipped => summary.skipped += 1,
            },
            Ok((sub, Ok(Err(error)))) => {
                tracing::error!(user = %sub.user, subscription = %sub.id, %error, "renewal failed; left for the next run");
                summary.errors += 1;
            }
            Ok((sub, Err(_elapsed))) => {
                tracing::warn!(user = %sub.user, subscription = %sub.id, "renewal abandoned at the deadline");
                summary.interrupted += 1;
            }
            Err(error) => {
                tracing::error!(%error, "renewal task failed");
                summary.errors += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::dates::GRACE_PERIOD;
    use super::*;
    use ledger::UserId;
    use time::macros::datetime;

    fn sub(status: SubscriptionStatus, auto_renew: bool) -> Subscription {
        let plan = &super::super::plans::default_plans()[1];
        let mut sub = Subscription::start(
            UserId::parse("7").unwrap(),
            plan,
            datetime!(2024-01-31 10:00 UTC),
        )
        .unwrap();
        sub.status = status;
        sub.auto_renew = auto_renew;
        sub
    }

    #[test]
    fn nothing_happens_before_the_renewal_date() {
        let before = datetime!(2024-02-29 09:59:59.999 UTC);
        for status in [SubscriptionStatus::Active, SubscriptionStatus::Cancelled] {
            assert_eq!(decide(&sub(status, true), before), Action::Skip);
        }
        assert_eq!(
            decide(
                &sub(SubscriptionStatus::Expired, false),
                datetime!(2030-01-01 0:00 UTC)
            ),
            Action::Skip
        );
    }

    #[test]
    fn due_subscriptions_renew_or_end() {
        let due = datetime!(2024-02-29 10:00 UTC);
        assert_eq!(
            decide(&sub(SubscriptionStatus::Active, true), due),
            Action::Renew
        );
        assert_eq!(
            decide(&sub(SubscriptionStatus::Active, false), due),
            Action::Expire
        );
        assert_eq!(
            decide(&sub(SubscriptionStatus::Cancelled, false), due),
            Action::Expire
        );
    }

    #[test]
    fn past_due_is_retried_for_the_grace_period_then_expires() {
        let mut past_due = sub(SubscriptionStatus::PastDue, true);
        past_due.past_due_since = Some(datetime!(2024-02-29 11:00 UTC));
        assert_eq!(
            decide(&past_due, datetime!(2024-03-07 10:59:59.999 UTC)),
            Action::Renew
        );
        assert_eq!(
            decide(&past_due, datetime!(2024-03-07 11:00 UTC)),
            Action::Expire
        );
        assert_eq!(GRACE_PERIOD, time::Duration::days(7));
        // Without a recorded start the grace runs from the due date.
        past_due.past_due_since = None;
        assert_eq!(
            decide(&past_due, datetime!(2024-03-07 10:00 UTC)),
            Action::Expire
        );
        past_due.auto_renew = false;
        past_due.past_due_since = Some(datetime!(2024-03-01 0:00 UTC));
        assert_eq!(
            decide(&past_due, datetime!(2024-03-01 1:00 UTC)),
            Action::Expire
        );
    }

    #[test]
    fn summary_serialises_in_camel_case() {
        let json = serde_json::to_value(RenewalSummary::default()).unwrap();
        for key in [
            "renewed",
            "pastDue",
            "expired",
            "retried",
            "skipped",
            "errors",
            "scanned",
            "stoppedEarly",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
    }

    #[tokio::test]
    async fn deadlines_never_lie_in_the_past_and_soft_comes_first() {
        let now = Instant::now();
        let d = Deadline::before(now + Duration::from_secs(60), Duration::from_secs(10));
        assert!(d.soft <= d.hard && d.soft >= now + Duration::from_secs(49));
        let late = Deadline::before(now, Duration::from_secs(10));
        assert!(late.soft >= now && late.soft <= late.hard);
    }
}
