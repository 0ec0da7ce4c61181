//! The renewal job of every subscription (DNS plans and platform services,
//! one engine): finds the subscriptions that need it through the sparse
//! index (`gsi1pk=RENEWAL#<shard>`, `gsi1sk <= now`), so its cost grows with
//! the due subscriptions, not with all of them, and for each one:
//!
//! - **active, due**: debits the price and moves `nextRenewalDate` one
//!   anchored month on, in one `Ledger::apply` with the once-key
//!   `renewal/<subId>#<period>` and the subscription update conditioned on
//!   it still being due for that period at the price read — however many
//!   runs overlap, a period is charged once; a DNS plan renews at its plan's
//!   price of the day (and a pending downgrade takes effect), a service at
//!   its own price;
//! - **short balance**: `past_due` (from the first failure), retried by every
//!   later run; after the grace period
//!   ([`GRACE_PERIOD`](super::dates::GRACE_PERIOD)) it expires;
//! - **cancelled, period over**: expired, no charge.
//!
//! The index is sharded ([`RenewalPartition`]: `RENEWAL#0..15` by user, plus
//! the legacy `RENEWAL` partition of items written before sharding, which a
//! renewal or past-due retry moves to their shard). A run is either one
//! invocation over every partition ([`run_renewals`]) or one worker per
//! partition ([`run_partition`], fanned out by `renewal-cron` through SQS to
//! `renewal-worker`); either way each period is charged once, however often
//! or concurrently a partition is run.
//!
//! Pages are bounded; the job stops taking pages at the soft deadline and
//! abandons in-flight items at the hard one (each item is one atomic
//! transaction, so an abandoned item is either done or untouched). What is
//! left is still in the index and the next run picks it up.

use super::dates::{format_time, period_id, to_millis};
use super::model::{Action, Product, Subscription, SubscriptionStatus, decide};
use super::store::{RenewalPartition, expire, renewal_sort_key, subscription_event};
use crate::BillingError;
use crate::dns::plans::{INDEX_NAME, PLAN_SK, Plan, PlanId, batch_get};
use crate::events::{self, DetailType, Event, Written};
use crate::store::attrs::{corrupt, n, s, time, usd};
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use ledger::{
    AttrMap, Change, ChangeOutcome, EntryDetails, EntryKind, Ledger, LedgerError, OnceKey,
};
use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
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
    /// Upper bound on pages (index Queries) per run, all partitions together.
    pub max_pages: u32,
    /// Partitions [`run_renewals`] works through at once (workers in one
    /// invocation; a fanned-out deployment runs one partition per worker).
    pub parallel_partitions: u16,
}

impl Default for RenewalOptions {
    fn default() -> Self {
        RenewalOptions {
            page_size: 50,
            max_pages: 400,
            parallel_partitions: 4,
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
    /// Index partitions run (shards and the legacy one).
    pub partitions: u64,
    /// Partition messages sent to the workers (a fanned-out run; the
    /// renewals are then counted by the workers, not here).
    pub dispatched: u64,
    /// Every due subscription was looked at.
    pub complete: bool,
    /// Stopped at the deadline or the page bound with work left.
    pub stopped_early: bool,
    pub elapsed_ms: u64,
}

impl RenewalSummary {
    /// Adds a partition's counts; complete only if every partition is.
    pub fn absorb(&mut self, part: &RenewalSummary) {
        self.renewed += part.renewed;
        self.past_due += part.past_due;
        self.expired += part.expired;
        self.skipped += part.skipped;
        self.errors += part.errors;
        self.interrupted += part.interrupted;
        self.scanned += part.scanned;
        self.read += part.read;
        self.pages += part.pages;
        self.partitions += part.partitions;
        self.complete &= part.complete;
        self.stopped_early |= part.stopped_early;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Renewed,
    PastDue,
    Expired,
    Skipped,
}

/// The plans DNS renewals charge, read once per run (a handful of items).
pub type PlanCache = HashMap<PlanId, Plan>;

/// Processes one subscription as read (consistently) at `now`.
pub async fn process(
    ledger: &Ledger,
    sub: &Subscription,
    plans: &PlanCache,
    now: OffsetDateTime,
) -> Result<Outcome, BillingError> {
    match decide(sub, now) {
        Action::Skip => Ok(Outcome::Skipped),
        Action::Expire => Ok(match expire(ledger, sub, now, false).await? {
            Some(_) => Outcome::Expired,
            None => Outcome::Skipped,
        }),
        Action::Renew => renew(ledger, sub, plans, now).await,
    }
}

/// The condition every renewal-side write carries: still this subscription,
/// still due for the period read at the price read, still renewing.
const STILL_DUE: &str = "id = :id AND nextRenewalDate = :due AND price = :seen_price \
     AND autoRenew = :true AND #status IN (:active, :past_due)";

fn still_due(
    update: aws_sdk_dynamodb::types::builders::UpdateBuilder,
    sub: &Subscription,
) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
    update
        .condition_expression(STILL_DUE)
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":id", s(&sub.id))
        .expression_attribute_values(":due", time(sub.next_renewal_date))
        .expression_attribute_values(":seen_price", usd(sub.price))
        .expression_attribute_values(":true", AttributeValue::Bool(true))
        .expression_attribute_values(":active", s(SubscriptionStatus::Active.as_str()))
        .expression_attribute_values(":past_due", s(SubscriptionStatus::PastDue.as_str()))
}

/// What the next period costs and the product's terms for it: a DNS plan
/// renews at its plan's current price (the pending plan's, after a
/// downgrade); a plan that cannot be read renews as it was.
fn renewal_terms(sub: &Subscription, plans: &PlanCache) -> (ledger::Usd, Option<Plan>) {
    match &sub.product {
        Product::DnsPlan(terms) => {
            let id = terms.pending_plan.as_ref().unwrap_or(&terms.plan_id);
            match plans.get(id) {
                Some(plan) => (plan.price, Some(plan.clone())),
                None => (sub.price, None),
            }
        }
        Product::Service(_) => (sub.price, None),
    }
}

async fn renew(
    ledger: &Ledger,
    sub: &Subscription,
    plans: &PlanCache,
    now: OffsetDateTime,
) -> Result<Outcome, BillingError> {
    let due = sub.next_renewal_date;
    let next = sub
        .following_due()
        .ok_or_else(|| corrupt(&sub.to_item(), "renewal date out of range"))?;
    let period = period_id(due);
    let (price, plan) = renewal_terms(sub, plans);
    let key = sub.key();
    let mut set = String::from(
        "SET #status = :active, nextRenewalDate = :next, lastRenewalDate = :now, \
         price = :price, gsi1pk = :gsi_pk, gsi1sk = :gsi_sk, updatedAt = :now",
    );
    let mut update = Update::builder()
        .table_name(ledger.table())
        .key("pk", s(key.user.pk()))
        .key("sk", s(&key.sk))
        .expression_attribute_values(":next", time(next))
        .expression_attribute_values(":now", time(now))
        .expression_attribute_values(":price", usd(price))
        .expression_attribute_values(":gsi_pk", s(RenewalPartition::of(&sub.user).pk()))
        .expression_attribute_values(":gsi_sk", s(renewal_sort_key(next, &sub.user)));
    let mut label = sub.product.label();
    if let Some(plan) = &plan {
        set.push_str(
            ", planId = :plan_id, planName = :plan_name, domainLimit = :domains, recordLimit = :records",
        );
        update = update
            .expression_attribute_values(":plan_id", s(plan.id.as_str()))
            .expression_attribute_values(":plan_name", s(&plan.name))
            .expression_attribute_values(":domains", n(plan.domain_limit))
            .expression_attribute_values(":records", n(plan.record_limit));
        label = format!("DNS plan {}", plan.name);
    }
    let update = still_due(
        update.update_expression(format!("{set} REMOVE pastDueSince, pendingPlanId")),
        sub,
    )
    .build()
    .map_err(|e| corrupt(&sub.to_item(), e.to_string()))?;
    let service_id = match &plan {
        Some(plan) => plan.id.as_str().to_owned(),
        None => sub.product.service_id().to_owned(),
    };
    let details = EntryDetails::new(
        EntryKind::ServiceRenewal,
        format!("{label}: renewal {} to {}", period, period_id(next)),
    )
    .service(sub.product.service_type(), Some(service_id), None)
    .reference(&sub.id);
    let once = OnceKey::new(RENEWAL_ONCE_KIND, format!("{}#{}", sub.id, period));
    let renewed = subscription_event(DetailType::SubscriptionRenewed, &once.pk(), sub)
        .usd("amount", price)
        .text("period", period.clone())
        .text("renewedAt", format_time(now))
        .text("nextRenewalDate", format_time(next));
    let change = Change::new(sub.user.clone(), -price, details)
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
        // Cancelled, renewed, changed or replaced meanwhile.
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
    let key = sub.key();
    let update = still_due(
        Update::builder()
            .table_name(ledger.table())
            .key("pk", s(key.user.pk()))
            .key("sk", s(&key.sk))
            .update_expression(
                "SET #status = :past_due, pastDueSince = if_not_exists(pastDueSince, :now), \
                 gsi1pk = :gsi_pk, gsi1sk = :gsi_sk, updatedAt = :now",
            )
            .expression_attribute_values(":now", time(now))
            .expression_attribute_values(":gsi_pk", s(RenewalPartition::of(&sub.user).pk()))
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

/// Runs the job at `now` over every partition of the due index (the
/// shards, then the legacy `RENEWAL` partition), at most
/// `options.parallel_partitions` at once, until every due subscription was
/// looked at, the page bound is reached (shared by all partitions), or the
/// deadline. This is the job in one invocation (the local stack, tests, or a
/// deployment without a fan-out queue); a fanned-out deployment runs each
/// partition in its own worker with [`run_partition`]. A failed index Query
/// is an error (the invocation fails and is retried) once the other
/// partitions are done; a failed subscription is counted in `errors` and
/// left for the next run.
#[tracing::instrument(skip_all, fields(now = %now))]
pub async fn run_renewals(
    ledger: &Ledger,
    now: OffsetDateTime,
    deadline: Deadline,
    options: RenewalOptions,
) -> Result<RenewalSummary, BillingError> {
    run_partitions(ledger, &RenewalPartition::all(), now, deadline, options).await
}

/// Runs the job at `now` over the given partitions (each once), at most
/// `options.parallel_partitions` at a time, pulled in order by workers.
pub async fn run_partitions(
    ledger: &Ledger,
    partitions: &[RenewalPartition],
    now: OffsetDateTime,
    deadline: Deadline,
    options: RenewalOptions,
) -> Result<RenewalSummary, BillingError> {
    let started = Instant::now();
    let now = to_millis(now);
    let budget = Arc::new(AtomicU32::new(options.max_pages));
    let queue = Arc::new(std::sync::Mutex::new(
        partitions.iter().copied().collect::<VecDeque<_>>(),
    ));
    let mut workers = JoinSet::new();
    for _ in 0..options.parallel_partitions.clamp(1, 64) {
        let (ledger, budget, queue) = (ledger.clone(), budget.clone(), queue.clone());
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                let Some(partition) = next else { break };
                let result = partition_run(
                    &ledger,
                    partition,
                    now,
                    deadline,
                    options.page_size,
                    &budget,
                )
                .await;
                done.push((partition, result));
            }
            done
        });
    }
    let mut summary = RenewalSummary {
        now: format_time(now),
        complete: true,
        ..RenewalSummary::default()
    };
    let mut failure = None;
    while let Some(joined) = workers.join_next().await {
        let runs = joined.map_err(|e| corrupt(&AttrMap::new(), format!("renewal worker: {e}")))?;
        for (partition, result) in runs {
            match result {
                Ok(run) => summary.absorb(&run),
                Err(error) => {
                    tracing::error!(%partition, %error, "renewal partition failed");
                    failure.get_or_insert(error);
                }
            }
        }
    }
    if let Some(error) = failure {
        return Err(error);
    }
    summary.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(summary)
}

/// One partition of the due index (what a fanned-out worker runs for one
/// message): every subscription of it due at `now`, within the page bound
/// and the deadline. Running it twice, or concurrently, charges each period
/// once (the once-key and the `nextRenewalDate` condition). One period per
/// subscription per partition run: a late one catches up a period a run.
#[tracing::instrument(skip_all, fields(partition = %partition, now = %now))]
pub async fn run_partition(
    ledger: &Ledger,
    partition: RenewalPartition,
    now: OffsetDateTime,
    deadline: Deadline,
    options: RenewalOptions,
) -> Result<RenewalSummary, BillingError> {
    run_partitions(ledger, &[partition], now, deadline, options).await
}

/// One partition's pages: Query the due keys a page at a time, read the
/// subscriptions (one BatchGetItem per page), process them.
async fn partition_run(
    ledger: &Ledger,
    partition: RenewalPartition,
    now: OffsetDateTime,
    deadline: Deadline,
    page_size: u16,
    budget: &AtomicU32,
) -> Result<RenewalSummary, BillingError> {
    let mut summary = RenewalSummary {
        partitions: 1,
        ..RenewalSummary::default()
    };
    let upper = format!("{}#~", format_time(now)); // '~' sorts after every user id character
    let page_size = i32::from(page_size.clamp(1, 100));
    let mut start_key: Option<AttrMap> = None;
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut plans = PlanCache::new();
    let mut exhausted = false;
    loop {
        if Instant::now() >= deadline.soft || !take_page(budget) {
            break;
        }
        let out = ledger
            .client()
            .query()
            .table_name(ledger.table())
            .index_name(INDEX_NAME)
            .key_condition_expression("gsi1pk = :pk AND gsi1sk <= :upper")
            .expression_attribute_values(":pk", s(partition.pk()))
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
                let (AttributeValue::S(pk), AttributeValue::S(sk)) = (k.get("pk")?, k.get("sk")?)
                else {
                    return None;
                };
                seen.insert((pk.clone(), sk.clone()))
                    .then(|| AttrMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))]))
            })
            .collect();
        if !keys.is_empty() {
            let items = batch_get(ledger, keys, true).await?;
            summary.read += items.len() as u64;
            let subs = parse_page(items, &mut summary);
            load_plans(ledger, &subs, &mut plans).await?;
            process_page(
                ledger,
                subs,
                Arc::new(plans.clone()),
                now,
                deadline,
                &mut summary,
            )
            .await;
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
    Ok(summary)
}

/// Takes one page from the run's bound; false when none is left.
fn take_page(budget: &AtomicU32) -> bool {
    budget
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        })
        .is_ok()
}

/// One subscription's renewal failed: `RenewalFailures` (embedded metric
/// format, whatever the log level), paged by RenewalFailuresAlarm even when
/// the run itself goes on and succeeds.
fn renewal_failed(subscription: &str, error: &str) {
    billing_config::metrics::emit(
        &[billing_config::metrics::Metric::count("RenewalFailures", 1)],
        &[
            ("subscriptionId", serde_json::json!(subscription)),
            ("error", serde_json::json!(error)),
        ],
    );
}

fn parse_page(items: Vec<AttrMap>, summary: &mut RenewalSummary) -> Vec<Subscription> {
    let mut subs = Vec::with_capacity(items.len());
    for item in items {
        match Subscription::from_item(&item) {
            Ok(sub) => subs.push(sub),
            Err(error) => {
                tracing::error!(%error, "unreadable subscription skipped");
                renewal_failed("unreadable", &error.to_string());
                summary.errors += 1;
            }
        }
    }
    subs
}

/// Reads the plans of the page's DNS subscriptions not read yet this run
/// (one BatchGetItem, only when a page has a DNS plan not seen before).
async fn load_plans(
    ledger: &Ledger,
    subs: &[Subscription],
    plans: &mut PlanCache,
) -> Result<(), BillingError> {
    let wanted: HashSet<PlanId> = subs
        .iter()
        .filter_map(Subscription::dns)
        .flat_map(|terms| std::iter::once(&terms.plan_id).chain(terms.pending_plan.as_ref()))
        .filter(|id| !plans.contains_key(*id))
        .cloned()
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let keys = wanted
        .iter()
        .map(|id| AttrMap::from([("pk".to_owned(), s(id.pk())), ("sk".to_owned(), s(PLAN_SK))]))
        .collect();
    for item in batch_get(ledger, keys, true).await? {
        let plan = Plan::from_item(&item)?;
        plans.insert(plan.id.clone(), plan);
    }
    Ok(())
}

/// Processes a page: one task per user, each renewing that user's
/// subscriptions one after the other (a user's renewals debit one account:
/// concurrent ones would only conflict on its `seq` and retry).
async fn process_page(
    ledger: &Ledger,
    subs: Vec<Subscription>,
    plans: Arc<PlanCache>,
    now: OffsetDateTime,
    deadline: Deadline,
    summary: &mut RenewalSummary,
) {
    let mut by_user: Vec<Vec<Subscription>> = Vec::new();
    let mut slot: HashMap<ledger::UserId, usize> = HashMap::new();
    for sub in subs {
        match slot.get(&sub.user) {
            Some(&i) => by_user[i].push(sub),
            None => {
                slot.insert(sub.user.clone(), by_user.len());
                by_user.push(vec![sub]);
            }
        }
    }
    let mut tasks = JoinSet::new();
    for subs in by_user {
        let (ledger, plans) = (ledger.clone(), plans.clone());
        tasks.spawn(async move {
            let mut results = Vec::with_capacity(subs.len());
            for sub in subs {
                let result =
                    tokio::time::timeout_at(deadline.hard, process(&ledger, &sub, &plans, now))
                        .await;
                results.push((sub, result));
            }
            results
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let results = match joined {
            Ok(results) => results,
            Err(error) => {
                tracing::error!(%error, "renewal task failed");
                summary.errors += 1;
                continue;
            }
        };
        for result in results {
            match result {
                (_, Ok(Ok(outcome))) => match outcome {
                    Outcome::Renewed => summary.renewed += 1,
                    Outcome::PastDue => summary.past_due += 1,
                    Outcome::Expired => summary.expired += 1,
                    Outcome::Skipped => summary.skipped += 1,
                },
                (sub, Ok(Err(error))) => {
                    tracing::error!(user = %sub.user, subscription = %sub.id, %error, "renewal failed; left for the next run");
                    renewal_failed(&sub.id, &error.to_string());
                    summary.errors += 1;
                }
                (sub, Err(_elapsed)) => {
                    tracing::warn!(user = %sub.user, subscription = %sub.id, "renewal abandoned at the deadline");
                    summary.interrupted += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::dates::GRACE_PERIOD;
    use super::super::model::{Action, decide};
    use super::*;
    use ledger::UserId;
    use time::macros::datetime;

    fn sub(status: SubscriptionStatus, auto_renew: bool) -> Subscription {
        let plan = &crate::dns::default_plans()[1];
        let mut sub = crate::dns::start_subscription(
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
            "partitions",
            "dispatched",
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
