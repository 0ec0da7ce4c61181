//! The renewal job against DynamoDB Local: each period is charged once
//! however runs overlap, month ends stay anchored, past-due subscriptions
//! renew when funds arrive or expire after the grace period, cancelled ones
//! expire without a charge, and the job's reads grow with the *due*
//! subscriptions only.

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use billing::dns::renewal::{RenewalOptions, run_renewals};
use billing::dns::{Deadline, Subscription, SubscriptionStatus, default_plans, seed_default_plans};
use integration_tests::{TestTable, assert_audit, new_user, usd};
use lambda_runtime::{Context, LambdaEvent};
use ledger::{Change, EntryDetails, EntryKind, Ledger, UserId};
use renewal_cron_fn::{Deps, handle};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use time::macros::datetime;
use tokio::task::JoinSet;

async fn setup() -> (TestTable, Deps) {
    let table = TestTable::new().await;
    seed_default_plans(&table.ledger()).await.expect("seed");
    let deps = Deps::new(table.function_ledger(integration_tests::IN_PROCESS_RENEWALS));
    (table, deps)
}

async fn credit(ledger: &Ledger, user: &UserId, amount: &str) {
    let details =
        EntryDetails::new(EntryKind::AdminCredit, "test funds").admin("9000", "test funds");
    ledger
        .apply(Change::new(user.clone(), usd(amount), details))
        .await
        .expect("credit");
}

/// A user with `funds` who bought `plan` at `at`.
async fn subscriber(
    ledger: &Ledger,
    funds: &str,
    plan: &str,
    at: OffsetDateTime,
) -> (UserId, Subscription) {
    let user = new_user();
    credit(ledger, &user, funds).await;
    let bought = billing::dns::purchase(ledger, &user, plan, at)
        .await
        .expect("purchase");
    (user, bought.subscription)
}

async fn job(deps: &Deps, at: OffsetDateTime) -> Value {
    let event = json!({
        "version": "0",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "time": billing::dns::dates::format_time(at),
        "detail": {},
    });
    handle(deps, LambdaEvent::new(event, Context::default()))
        .await
        .expect("job runs")
}

async fn sub_of(ledger: &Ledger, user: &UserId) -> Subscription {
    billing::dns::get_subscription(ledger, user)
        .await
        .unwrap()
        .expect("subscription")
}

async fn renewals_of(ledger: &Ledger, user: &UserId) -> usize {
    let page = ledger.entries(user, 1000, None).await.unwrap();
    page.entries
        .iter()
        .filter(|e| e.type_name() == "service_renewal_dns_plan")
        .count()
}

fn count(summary: &Value, key: &str) -> u64 {
    summary[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {summary}"))
}

#[tokio::test]
async fn a_due_subscription_is_charged_and_moves_one_month_on() {
    let (table, deps) = setup().await;
    let ledger = table.ledger();
    let (user, bought) = subscriber(&ledger, "40.00", "pro", datetime!(2024-01-31 10:00 UTC)).await;
    assert_eq!(bought.next_renewal_date, datetime!(2024-02-29 10:00 UTC));

    // Not yet due: nothing read from the index.
    let early = job(&deps, datetime!(2024-02-29 09:59:59 UTC)).await;
    assert_eq!(
        (count(&early, "renewed"), count(&early, "scanned")),
        (0, 0),
        "{early}"
    );

    let summary = job(&deps, datetime!(2024-02-29 10:00 UTC)).await;
    assert_eq!(count(&summary, "renewed"), 1, "{summary}");
    assert_eq!(summary["retried"], json!(0));
    assert_eq!(summary["complete"], json!(true));
    let sub = sub_of(&ledger, &user).await;
    assert_eq!(sub.status, SubscriptionStatus::Active);
    assert_eq!(
        sub.next_renewal_date,
        datetime!(2024-03-31 10:00 UTC),
        "back to the 31st"
    );
    assert_eq!(sub.last_renewal_date, Some(datetime!(2024-02-29 10:00 UTC)));
    assert_eq!(
        assert_audit(&ledger, &user).await,
        usd("10.00"),
        "40.00 - 15.00 - 15.00"
    );
    let entry = &ledger.entries(&user, 1, None).await.unwrap().entries[0];
    assert_eq!(entry.kind, EntryKind::ServiceRenewal);
    assert_eq!(entry.amount, usd("-15.00"));
    assert_eq!(entry.reference.as_deref(), Some(sub.id.as_str()));

    // The same run again (a retry of the invocation) charges nothing.
    let again = job(&deps, datetime!(2024-02-29 10:00 UTC)).await;
    assert_eq!(count(&again, "renewed"), 0, "{again}");
    assert_eq!(renewals_of(&ledger, &user).await, 1);
}

#[tokio::test]
async fn month_ends_stay_anchored_in_common_and_leap_years() {
    let (table, deps) = setup().await;
    let ledger = table.ledger();
    let cases = [
        (
            datetime!(2023-01-31 08:00 UTC),
            vec![
                datetime!(2023-02-28 08:00 UTC),
                datetime!(2023-03-31 08:00 UTC),
                datetime!(2023-04-30 08:00 UTC),
                datetime!(2023-05-31 08:00 UTC),
            ],
        ),
        (
            datetime!(2024-01-31 08:00 UTC),
            vec![
                datetime!(2024-02-29 08:00 UTC),
                datetime!(2024-03-31 08:00 UTC),
                datetime!(2024-04-30 08:00 UTC),
                datetime!(2024-05-31 08:00 UTC),
            ],
        ),
        (
            datetime!(2024-02-29 08:00 UTC),
            vec![
                datetime!(2024-03-29 08:00 UTC),
                datetime!(2024-04-29 08:00 UTC),
                datetime!(2024-05-29 08:00 UTC),
                datetime!(2024-06-29 08:00 UTC),
            ],
        ),
        (
            datetime!(2024-12-30 23:30 UTC),
            vec![
                datetime!(2025-01-30 23:30 UTC),
                datetime!(2025-02-28 23:30 UTC),
                datetime!(2025-03-30 23:30 UTC),
                datetime!(2025-04-30 23:30 UTC),
            ],
        ),
    ];
    for (start, expected) in cases {
        let (user, bought) = subscriber(&ledger, "100.00", "basic", start).await;
        let mut due = bought.next_renewal_date;
        assert_eq!(due, expected[0], "first renewal of {start}");
        for next in &expected[1..] {
            let summary = job(&deps, due).await;
            assert!(count(&summary, "renewed") >= 1, "{summary}");
            due = sub_of(&ledger, &user).await.next_renewal_date;
            assert_eq!(due, *next, "start {start}");
        }
        assert_eq!(renewals_of(&ledger, &user).await, 3);
        assert_eq!(assert_audit(&ledger, &user).await, usd("80.00"));
    }
}

#[tokio::test]
async fn a_late_run_charges_one_period_at_a_time() {
    let (table, deps) = setup().await;
    let ledger = table.ledger();
    let (user, _) = subscriber(&ledger, "100.00", "basic", datetime!(2024-01-31 10:00 UTC)).await;
    // The job did not run for months: each run catches up one period.
    let late = datetime!(2024-05-01 00:00 UTC);
    for (run, next) in [
        datetime!(2024-03-31 10:00 UTC),
        datetime!(2024-04-30 10:00 UTC),
        datetime!(2024-05-31 10:00 UTC),
    ]
    .into_iter()
    .enumerate()
    {
        let summary = job(&deps, late).await;
        assert_eq!(count(&summary, "renewed"), 1, "run {run}: {summary}");
        assert_eq!(sub_of(&ledger, &user).await.next_renewal_date, next);
    }
    assert_eq!(count(&job(&deps, late).await, "renewed"), 0);
    assert_eq!(assert_audit(&ledger, &user).await, usd("80.00"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_runs_charge_each_period_once() {
    let (table, deps) = setup().await;
    let ledger = table.ledger();
    let start = datetime!(2025-03-31 12:00 UTC);
    let mut users = Vec::new();
    for _ in 0..20 {
        users.push(subscriber(&ledger, "60.00", "pro", start).await.0);
    }
    let deps = Arc::new(deps);
    let now = datetime!(2025-04-30 12:00 UTC);
    let mut runs = JoinSet::new();
    for _ in 0..8 {
        let deps = deps.clone();
        runs.spawn(async move { job(&deps, now).await });
    }
    let mut renewed = 0;
    while let Some(summary) = runs.join_next().await {
        let summary = summary.unwrap();
        assert_eq!(count(&summary, "errors"), 0, "{summary}");
        renewed += count(&summary, "renewed");
    }
    assert_eq!(renewed, 20, "each subscription renewed by exactly one run");
    for user in &users {
        assert_eq!(renewals_of(&ledger, user).await, 1, "{user}");
        assert_eq!(assert_audit(&ledger, user).await, usd("30.00"));
        assert_eq!(
            sub_of(&ledger, user).await.next_renewal_date,
            datetime!(2025-05-31 12:00 UTC)
        );
    }
}

#[tokio::test]
async fn short_balance_goes_past_due_and_renews_when_funds_arrive() {
    let (table, deps) = setup().await;
    let ledger = table.ledger();
    let (user, bought) =
        subscriber(&ledger, "5.00", "basic", datetime!(2025-01-31 09:00 UTC)).await;
    let due = bought.next_renewal_date;
    assert_eq!(due, datetime!(2025-02-28 09:00 UTC));

    let first = job(&deps, due).await;
    assert_eq!(
        (count(&first, "pastDue"), count(&first, "renewed")),
        (1, 0),
        "{first}"
    );
    let sub = sub_of(&ledger, &user).await;
    assert_eq!(sub.status, SubscriptionStatus::PastDue);
    assert_eq!(sub.past_due_since, Some(due));
    assert_eq!(
        sub.next_renewal_date, due,
        "the unpaid period is still the one due"
    );

    // Retried by later runs; the grace clock keeps its start.
    let later = due + time::Duration::hours(1);
    let second = job(&deps, later).await;
    assert_eq!(count(&second, "pastDue"), 1, "{second}");
    assert_eq!(sub_of(&ledger, &user).await.past_due_since, Some(due));

    credit(&ledger, &user, "5.00").await;
    let paid = job(&deps, due + time::Duration::days(3)).await;
    assert_eq!(count(&paid, "renewed"), 1, "{paid}");
    let sub = sub_of(&ledger, &user).await;
    assert_eq!(sub.status, SubscriptionStatus::Active);
    assert_eq!(sub.past_due_since, None);
    assert_eq!(
        sub.next_renewal_date,
        datetime!(2025-03-31 09:00 UTC),
        "still anchored to the 31st"
    );
    assert_eq!(assert_audit(&ledger, &user).await, usd("0.00"));
    assert_eq!(renewals_of(&ledger, &user).await, 1);
}

#[tokio::test]
async fn past_due_expires_after_the_grace_period_without_a_charge() {
    let (table, deps) = setup().await;
    let ledger = table.ledger();
    let (user, bought) =
        subscriber(&ledger, "7.00", "basic", datetime!(2024-02-29 18:00 UTC)).await;
    let due = bought.next_renewal_date;
    assert_eq!(due, datetime!(2024-03-29 18:00 UTC));
    assert_eq!(count(&job(&deps, due).await, "pastDue"), 1);

    let almost = due + time::Duration::days(7) - time::Duration::seconds(1);
    let summary = job(&deps, almost).await;
    assert_eq!(
        (count(&summary, "pastDue"), count(&summary, "expired")),
        (1, 0),
        "{summary}"
    );

    let summary = job(&deps, due + time::Duration::days(7)).await;
    assert_eq!(count(&summary, "expired"), 1, "{summary}");
    let sub = sub_of(&ledger, &user).await;
    assert_eq!(sub.status, SubscriptionStatus::Expired);
    assert!(!sub.auto_renew);
    assert_eq!(renewals_of(&ledger, &user).await, 0);
    assert_eq!(assert_audit(&ledger, &user).await, usd("2.00"));

    // Out of the index: later runs never read it again.
    let after = job(&deps, due + time::Duration::days(60)).await;
    assert_eq!(count(&after, "scanned"), 0, "{after}");

    // An expired subscription does not block a new purchase.
    credit(&ledger, &user, "13.00").await;
    let now = due + time::Duration::days(8);
    let again = billing::dns::purchase(&ledger, &user, "pro", now)
        .await
        .expect("buy again");
    assert_ne!(again.subscription.id, sub.id);
    assert_eq!(again.balance, usd("0.00"));
}

#[tokio::test]
async fn cancelled_subscriptions_expire_at_period_end_without_a_charge() {
    let (table, deps) = setup().await;
    let ledger = table.ledger();
    let start = datetime!(2025-05-31 07:00 UTC);
    let (user, bought) = subscriber(&ledger, "50.00", "enterprise", start).await;
    let cancelled = billing::dns::cancel(&ledger, &user, start + time::Duration::days(2))
        .await
        .unwrap();
    assert_eq!(cancelled.status, SubscriptionStatus::Cancelled);
    let end = bought.next_renewal_date;
    assert_eq!(end, datetime!(2025-06-30 07:00 UTC));

    let before = job(&deps, end - time::Duration::minutes(1)).await;
    assert_eq!(count(&before, "expired"), 0, "{before}");
    assert_eq!(
        sub_of(&ledger, &user).await.status,
        SubscriptionStatus::Cancelled
    );

    let at_end = job(&deps, end).await;
    assert_eq!(
        (count(&at_end, "expired"), count(&at_end, "renewed")),
        (1, 0),
        "{at_end}"
    );
    let sub = sub_of(&ledger, &user).await;
    assert_eq!(sub.status, SubscriptionStatus::Expired);
    assert_eq!(sub.expired_at, Some(end));
    assert_eq!(assert_audit(&ledger, &user).await, usd("0.00"));
    assert_eq!(renewals_of(&ledger, &user).await, 0);
    assert_eq!(
        count(&job(&deps, end + time::Duration::days(40)).await, "scanned"),
        0
    );
}

#[tokio::test]
async fn cancelling_a_past_due_subscription_ends_it_now() {
    let (table, deps) = setup().await;
    let ledger = table.ledger();
    let (user, bought) =
        subscriber(&ledger, "5.00", "basic", datetime!(2025-01-10 00:00 UTC)).await;
    assert_eq!(
        count(&job(&deps, bought.next_renewal_date).await, "pastDue"),
        1
    );
    let now = bought.next_renewal_date + time::Duration::days(1);
    let sub = billing::dns::cancel(&ledger, &user, now).await.unwrap();
    assert_eq!(sub.status, SubscriptionStatus::Expired);
    assert_eq!(sub.cancelled_at, Some(now));
    let summary = job(&deps, now + time::Duration::hours(1)).await;
    assert_eq!(count(&summary, "scanned"), 0, "{summary}");
    assert_eq!(assert_audit(&ledger, &user).await, usd("0.00"));
    let again = billing::dns::cancel(&ledger, &user, now).await;
    assert!(
        matches!(
            again,
            Err(billing::BillingError::Conflict {
                code: "subscription_ended",
                ..
            })
        ),
        "{again:?}"
    );
}

#[tokio::test]
async fn the_job_stops_at_its_deadline_and_the_next_run_finishes() {
    let (table, _deps) = setup().await;
    let ledger = table.ledger();
    let start = datetime!(2025-02-01 00:00 UTC);
    let mut users = Vec::new();
    for _ in 0..25 {
        users.push(subscriber(&ledger, "20.00", "basic", start).await.0);
    }
    let now = datetime!(2025-03-01 00:00 UTC);
    let options = RenewalOptions {
        page_size: 10,
        max_pages: 400,
        ..RenewalOptions::default()
    };
    // Deadline already reached: nothing is started.
    let expired = Deadline::before(tokio::time::Instant::now(), Duration::from_secs(10));
    let summary = run_renewals(&ledger, now, expired, options).await.unwrap();
    assert_eq!((summary.pages, summary.renewed), (0, 0));
    assert!(summary.stopped_early && !summary.complete);

    // A page bound (for the whole run, all partitions together): one
    // bounded page of one shard, the rest left in the index.
    let plenty = Deadline::before(
        tokio::time::Instant::now() + Duration::from_secs(60),
        Duration::from_secs(10),
    );
    let one_page = RenewalOptions {
        page_size: 10,
        max_pages: 1,
        ..RenewalOptions::default()
    };
    let summary = run_renewals(&ledger, now, plenty, one_page).await.unwrap();
    assert_eq!(summary.pages, 1, "{summary:?}");
    assert_eq!(summary.renewed, summary.scanned, "{summary:?}");
    assert!(summary.renewed <= 10, "{summary:?}");
    assert!(summary.stopped_early && !summary.complete);
    let first = summary.renewed;

    let summary = run_renewals(&ledger, now, plenty, options).await.unwrap();
    assert_eq!(summary.renewed, 25 - first, "{summary:?}");
    assert_eq!(summary.partitions, 17, "16 shards and the legacy partition");
    assert!(summary.complete && !summary.stopped_early);
    for user in &users {
        assert_eq!(renewals_of(&ledger, user).await, 1);
        assert_audit(&ledger, user).await;
    }
}

#[tokio::test]
async fn the_sample_event_runs_the_job_and_bad_clocks_are_refused() {
    let (table, deps) = setup().await;
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/renewal-cron.json");
    let event: Value = serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    assert_eq!(event["detail-type"], json!("Scheduled Event"));
    let (user, _) = subscriber(
        &table.ledger(),
        "10.00",
        "basic",
        datetime!(2025-10-25 12:00 UTC),
    )
    .await;
    let summary = handle(&deps, LambdaEvent::new(event.clone(), Context::default()))
        .await
        .unwrap();
    assert_eq!(summary["now"], json!("2025-11-25T12:00:00.000Z"));
    assert_eq!(count(&summary, "renewed"), 1, "{summary}");
    for key in [
        "renewed", "pastDue", "expired", "retried", "skipped", "errors",
    ] {
        assert!(summary[key].is_u64(), "{key} in {summary}");
    }
    assert_eq!(assert_audit(&table.ledger(), &user).await, usd("0.00"));

    // A clock far ahead is refused by name (errorType ClockSkew), nothing charged.
    let mut future = event.clone();
    future["time"] = json!("2999-01-01T00:00:00Z");
    let refused = handle(&deps, LambdaEvent::new(future, Context::default()))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, renewal_cron_fn::JobError::ClockSkew(_)),
        "{refused:?}"
    );
    assert_eq!(
        lambda_runtime::Diagnostic::from(refused).error_type,
        "ClockSkew"
    );
    let mut garbage = event.clone();
    garbage["time"] = json!("tomorrow");
    let invalid = handle(&deps, LambdaEvent::new(garbage, Context::default()))
        .await
        .unwrap_err();
    assert_eq!(
        lambda_runtime::Diagnostic::from(invalid).error_type,
        "InvalidEvent"
    );
    assert_eq!(assert_audit(&table.ledger(), &user).await, usd("0.00"));

    // The local stack turns the limit off: "as of next month" renews (short
    // balance here: past due), whatever the wall clock says.
    let mut local = Deps::new(table.function_ledger(integration_tests::IN_PROCESS_RENEWALS));
    local.max_clock_skew = renewal_cron_fn::parse_max_clock_skew(Some("off"));
    let mut next_month = event;
    next_month["time"] = json!("2999-01-01T00:00:00Z");
    let summary = handle(&local, LambdaEvent::new(next_month, Context::default()))
        .await
        .unwrap();
    assert_eq!(count(&summary, "pastDue"), 1, "{summary}");
}

/// A service subscription of `user` created at `at` through the engine's
/// service product (the same code as `POST /api/services/subscriptions`).
async fn service_subscriber(
    ledger: &Ledger,
    user: &UserId,
    service_id: &str,
    price: &str,
    interval: &str,
    at: OffsetDateTime,
) -> billing::subscriptions::Subscription {
    use billing::services::subscriptions::{SubscribeRequest, prepare, subscribe};
    let caller = UserId::parse("svc-panel").unwrap();
    let request = SubscribeRequest {
        user_id: user.as_str().to_owned(),
        service_type: "dedicated_server".into(),
        service_id: service_id.into(),
        price: usd(price),
        interval: interval.into(),
        description: format!("server {service_id}"),
    };
    let key = format!("{user}-{service_id}");
    let prepared = prepare(ledger, &caller, &key, request, at)
        .await
        .expect("prepare");
    let sub = prepared.subscription.clone();
    subscribe(ledger, prepared, |_, _| {
        billing::idempotency::StoredResponse {
            status: 200,
            body: json!({}),
        }
    })
    .await
    .expect("subscribe");
    sub
}

async fn engine_sub(
    ledger: &Ledger,
    sub: &billing::subscriptions::Subscription,
) -> billing::subscriptions::Subscription {
    billing::subscriptions::get(ledger, &sub.key())
        .await
        .unwrap()
        .expect("subscription")
}

fn service_renewals(entries: &[ledger::Entry]) -> usize {
    entries
        .iter()
        .filter(|e| e.type_name() == "service_renewal_dedicated_server")
        .count()
}

#[tokio::test]
async fn a_yearly_subscription_started_on_february_29_renews_on_28_then_29() {
    let (table, mut deps) = setup().await;
    // The run "as of" 2027 and 2028: the clock-skew guard is off, as locally.
    deps.max_clock_skew = Some(time::Duration::days(3650));
    let ledger = table.ledger();
    let user = new_user();
    credit(&ledger, &user, "500.00").await;
    let start = datetime!(2024-02-29 09:00 UTC);
    let sub = service_subscriber(&ledger, &user, "srv-leap", "100.00", "year", start).await;
    assert_eq!(sub.next_renewal_date, datetime!(2025-02-28 09:00 UTC));
    // Not due the day before.
    let early = job(&deps, datetime!(2025-02-27 09:00 UTC)).await;
    assert_eq!(count(&early, "renewed"), 0, "{early}");
    let expected = [
        datetime!(2025-02-28 09:00 UTC),
        datetime!(2026-02-28 09:00 UTC),
        datetime!(2027-02-28 09:00 UTC),
        datetime!(2028-02-29 09:00 UTC),
    ];
    for window in expected.windows(2) {
        let summary = job(&deps, window[0]).await;
        assert_eq!(count(&summary, "renewed"), 1, "{summary}");
        let now = engine_sub(&ledger, &sub).await;
        assert_eq!(now.next_renewal_date, window[1], "renewed on {}", window[0]);
        assert_eq!(now.last_renewal_date, Some(window[0]));
    }
    let entries = ledger.entries(&user, 100, None).await.unwrap().entries;
    assert_eq!(service_renewals(&entries), 3);
    assert_eq!(entries[0].amount, usd("-100.00"));
    assert_eq!(assert_audit(&ledger, &user).await, usd("100.00"));
}

/// DNS plans and service subscriptions due together, the job run three
/// times at once: each due subscription renewed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_concurrent_runs_renew_each_mixed_subscription_once() {
    let (table, deps) = setup().await;
    let ledger = table.ledger();
    let start = datetime!(2025-01-31 12:00 UTC);
    let mut users = Vec::new();
    for i in 0..6 {
        let (user, _) = subscriber(&ledger, "100.00", "basic", start).await;
        service_subscriber(&ledger, &user, &format!("srv-{i}"), "20.00", "month", start).await;
        users.push(user);
    }
    let deps = Arc::new(deps);
    let now = datetime!(2025-02-28 12:00 UTC);
    let mut runs = JoinSet::new();
    for _ in 0..3 {
        let deps = deps.clone();
        runs.spawn(async move { job(&deps, now).await });
    }
    let mut renewed = 0;
    while let Some(summary) = runs.join_next().await {
        let summary = summary.unwrap();
        assert_eq!(count(&summary, "errors"), 0, "{summary}");
        renewed += count(&summary, "renewed");
    }
    assert_eq!(renewed, 12, "6 DNS plans + 6 servers, once each");
    for user in &users {
        let entries = ledger.entries(user, 100, None).await.unwrap().entries;
        assert_eq!(renewals_of(&ledger, user).await, 1, "{user}");
        assert_eq!(service_renewals(&entries), 1, "{user}");
        // 100 - 5 - 20 (first periods) - 5 - 20 (renewals)
        assert_eq!(assert_audit(&ledger, user).await, usd("50.00"));
    }
}

/// One user, a DNS plan and two servers all due in one run, with credits
/// for two renewals: two are renewed, the third is `past_due`, nothing is
/// half done (no charge without its renewal, no renewal without its charge).
#[tokio::test]
async fn one_run_with_funds_for_two_of_three_leaves_the_third_past_due() {
    let (table, deps) = setup().await;
    let ledger = table.ledger();
    let start = datetime!(2025-03-10 08:00 UTC);
    // 5 (DNS basic) + 2 × 20 (servers) for the first periods, then 40 for the renewals.
    let (user, dns) = subscriber(&ledger, "45.00", "basic", start).await;
    let a = service_subscriber(&ledger, &user, "srv-a", "20.00", "month", start).await;
    let b = service_subscriber(&ledger, &user, "srv-b", "20.00", "month", start).await;
    assert_eq!(ledger.balance(&user).await.unwrap(), usd("0.00"));
    credit(&ledger, &user, "40.00").await;

    let due = datetime!(2025-04-10 08:00 UTC);
    let summary = job(&deps, due).await;
    assert_eq!(count(&summary, "errors"), 0, "{summary}");
    let renewed = count(&summary, "renewed");
    let past_due = count(&summary, "pastDue");
    assert_eq!(renewed + past_due, 3, "{summary}");
    // $40 pays both servers, or one server and the DNS plan (and then the
    // other server is short): two or one renewals, the rest past due.
    let subs = [
        sub_of(&ledger, &user).await,
        engine_sub(&ledger, &a).await,
        engine_sub(&ledger, &b).await,
    ];
    let paid: Vec<_> = subs
        .iter()
        .filter(|s| s.status == SubscriptionStatus::Active)
        .collect();
    let unpaid: Vec<_> = subs
        .iter()
        .filter(|s| s.status == SubscriptionStatus::PastDue)
        .collect();
    assert_eq!(paid.len() as u64, renewed);
    assert_eq!(unpaid.len() as u64, past_due);
    assert!(past_due >= 1, "{summary}");
    for s in &paid {
        assert!(s.next_renewal_date > due, "renewed: moved on");
    }
    for s in &unpaid {
        assert_eq!(
            s.next_renewal_date, due,
            "past due: still the unpaid period"
        );
        assert!(s.past_due_since.is_some());
    }
    let charged: ledger::Usd = paid
        .iter()
        .map(|s| s.price)
        .fold(usd("0.00"), |acc, p| acc.checked_add(p).unwrap());
    let balance = assert_audit(&ledger, &user).await;
    assert_eq!(balance, usd("40.00").checked_sub(charged).unwrap());
    assert_eq!(dns.price, usd("5.00"));
    if renewed == 2 && paid.iter().all(|s| s.price == usd("20.00")) {
        // Both servers: the DNS plan (5.00 > 0.00 left) is the one past due.
        assert_eq!(balance, usd("0.00"));
    }
    // Funds arrive: the next run renews what is past due.
    credit(&ledger, &user, "50.00").await;
    let later = job(&deps, datetime!(2025-04-11 08:00 UTC)).await;
    assert_eq!(count(&later, "renewed"), past_due, "{later}");
    assert_eq!(count(&later, "pastDue"), 0, "{later}");
    assert_eq!(
        assert_audit(&ledger, &user).await,
        usd("45.00"),
        "90 - 45 of renewals"
    );
}

/// 10,000 subscriptions, 100 of them due: the job reads about 100 index
/// entries and 100 subscriptions, not 10,000. Prints the throughput recorded
/// in docs/benchmarks.md ("Renewal job").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_subscriptions_hundred_due_reads_about_a_hundred() {
    const TOTAL: usize = 10_000;
    const DUE: usize = 100;
    let (table, deps) = setup().await;
    let ledger = table.ledger();
    let plan = &default_plans()[0];
    let now = datetime!(2025-06-15 12:00 UTC);
    let due_start = datetime!(2025-05-10 12:00 UTC); // renews 2025-06-10
    let later_start = datetime!(2025-05-20 12:00 UTC); // renews 2025-06-20

    let setup_started = std::time::Instant::now();
    let mut due_users = Vec::new();
    let mut items = Vec::with_capacity(TOTAL);
    // Mixed kinds: every other subscription is a monthly dedicated server at
    // the DNS plan's price, so every due user can pay exactly one renewal.
    for i in 0..TOTAL {
        let user = new_user();
        let start = if i < DUE { due_start } else { later_start };
        let sub = if i % 2 == 0 {
            billing::dns::start_subscription(user.clone(), plan, start).unwrap()
        } else {
            billing::subscriptions::Subscription::start(
                user.clone(),
                billing::subscriptions::Product::Service(billing::subscriptions::ServiceTerms {
                    service_type: ledger::ServiceType::parse("dedicated_server").unwrap(),
                    service_id: format!("srv-{i}"),
                    description: "DS-1".into(),
                }),
                plan.price,
                billing::subscriptions::Interval::Month,
                start,
            )
            .unwrap()
        };
        items.push(sub.to_item());
        if i < DUE {
            due_users.push(user);
        }
    }
    batch_write(&table, items).await;
    let mut credits = JoinSet::new();
    for user in due_users.clone() {
        let ledger = ledger.clone();
        credits.spawn(async move { credit(&ledger, &user, "5.00").await });
    }
    while let Some(done) = credits.join_next().await {
        done.unwrap();
    }
    let setup_ms = setup_started.elapsed().as_millis();

    table.calls.reset();
    let started = std::time::Instant::now();
    let summary = job(&deps, now).await;
    let elapsed = started.elapsed();
    let calls = table.calls.snapshot();
    println!("renewal job, {TOTAL} subscriptions / {DUE} due: {summary}");
    println!("DynamoDB calls during the run: {calls:?}");
    let per_second = DUE as u128 * 1000 / elapsed.as_millis().max(1);
    println!(
        "throughput: {DUE} renewals in {} ms = {per_second} renewals/s (setup {setup_ms} ms)",
        elapsed.as_millis()
    );

    assert_eq!(count(&summary, "renewed"), DUE as u64, "{summary}");
    assert_eq!(count(&summary, "errors"), 0);
    assert_eq!(count(&summary, "scanned"), DUE as u64, "index entries read");
    assert_eq!(count(&summary, "read"), DUE as u64, "subscriptions read");
    let queries = calls.get("Query").copied().unwrap_or(0);
    let batch_gets = calls.get("BatchGetItem").copied().unwrap_or(0);
    // One Query per partition of the due index (16 shards + the legacy one;
    // ~6 due each, under a page) + 1 Query each of the pending and the
    // claimed (stale-claim check) delivery partitions.
    assert!(queries <= 17 + 2 + 2, "{calls:?}");
    // One page of subscriptions per shard, plus the DNS plans they renew at
    // (read once per partition run: a handful of items).
    assert!(batch_gets <= 16 * 2, "{calls:?}");
    assert_eq!(
        calls.get("TransactWriteItems").copied(),
        Some(DUE as u64),
        "{calls:?}"
    );
    assert_eq!(
        calls.get("GetItem").copied(),
        Some(DUE as u64),
        "one account read per renewal: {calls:?}"
    );
    assert!(!calls.contains_key("Scan"));
    for user in due_users.iter().take(10) {
        assert_eq!(assert_audit(&ledger, user).await, usd("0.00"));
    }

    // Nothing left due: the next run reads nothing.
    table.calls.reset();
    let idle = job(&deps, now).await;
    assert_eq!(
        (count(&idle, "scanned"), count(&idle, "read")),
        (0, 0),
        "{idle}"
    );
    // One empty Query per partition of the due index (17), one each of
    // claimed and pending deliveries.
    assert_eq!(
        table.calls.total(),
        17 + 2,
        "only empty Queries: {:?}",
        table.calls.snapshot()
    );
}

/// Writes items with BatchWriteItem, 25 a call, 16 calls in flight.
async fn batch_write(table: &TestTable, items: Vec<ledger::AttrMap>) {
    let mut tasks = JoinSet::new();
    let chunks: Vec<Vec<ledger::AttrMap>> = items.chunks(25).map(<[_]>::to_vec).collect();
    for chunk in chunks {
        if tasks.len() >= 16 {
            tasks.join_next().await.unwrap().unwrap();
        }
        let (client, name) = (table.client.clone(), table.name.clone());
        tasks.spawn(async move {
            let mut requests: Vec<WriteRequest> = chunk
                .into_iter()
                .map(|item| {
                    WriteRequest::builder()
                        .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                        .build()
                })
                .collect();
            for _ in 0..10 {
                let out = client
                    .batch_write_item()
                    .request_items(&name, requests)
                    .send()
                    .await
                    .expect("batch write");
                requests = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&name))
                    .unwrap_or_default();
                if requests.is_empty() {
                    return;
                }
            }
            panic!("unprocessed items remained");
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

// ---------------------------------------------------------------- sharded index, fan-out

use billing::subscriptions::fanout::PartitionMessage;
use billing::subscriptions::{RENEWAL_SHARDS, RenewalPartition};

/// The `gsi1pk` of a user's DNS subscription as stored.
async fn index_pk(table: &TestTable, user: &UserId) -> Option<String> {
    let out = table
        .client
        .get_item()
        .table_name(&table.name)
        .key("pk", AttributeValue::S(user.pk()))
        .key("sk", AttributeValue::S("DNSSUB".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    match out.item.unwrap().get("gsi1pk") {
        Some(AttributeValue::S(pk)) => Some(pk.clone()),
        _ => None,
    }
}

/// Index entries of one partition (all of them, due or not).
async fn partition_size(table: &TestTable, partition: RenewalPartition) -> usize {
    let out = table
        .client
        .query()
        .table_name(&table.name)
        .index_name("gsi1")
        .key_condition_expression("gsi1pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(partition.pk()))
        .send()
        .await
        .unwrap();
    out.items().len()
}

/// A fresh queue on moto (a real SQS API over HTTP): the test's client, the
/// URL, and the renewal cron's client (its own credentials, through local
/// IAM: the proxy returned).
async fn queue() -> (
    aws_sdk_sqs::Client,
    String,
    aws_sdk_sqs::Client,
    devstack::faultproxy::FaultProxy,
) {
    let sdk = billing_config::load_aws_config().await;
    let client =
        renewal_cron_fn::fanout::client(&sdk, Some(integration_tests::events::moto_endpoint()));
    let iam = integration_tests::events::moto_iam_proxy().await;
    let cron = renewal_cron_fn::fanout::client(
        &integration_tests::events::function_sdk("renewal-cron").await,
        Some(iam.endpoint()),
    );
    let url = client
        .create_queue()
        .queue_name(format!("renewals-{}", uuid::Uuid::new_v4().simple()))
        .send()
        .await
        .expect("queue created")
        .queue_url
        .expect("queue url");
    (client, url, cron, iam)
}

/// Every message in the queue (as the event source mapping would receive them).
async fn receive_all(
    client: &aws_sdk_sqs::Client,
    url: &str,
    expected: usize,
) -> Vec<aws_sdk_sqs::types::Message> {
    let mut messages = Vec::new();
    for _ in 0..20 {
        if messages.len() >= expected {
            break;
        }
        let out = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        messages.extend(out.messages.unwrap_or_default());
    }
    messages
}

/// An SQS event of one message, as Lambda hands it to `renewal-worker`.
fn sqs_event(message_id: &str, body: &str) -> Value {
    json!({"Records": [{
        "messageId": message_id,
        "receiptHandle": "handle",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:renewals",
        "awsRegion": "us-east-1",
    }]})
}

async fn work(deps: &renewal_worker_fn::Deps, event: Value) -> Value {
    renewal_worker_fn::handle(deps, LambdaEvent::new(event, Context::default()))
        .await
        .expect("worker runs")
}

/// The deployed shape: the schedule's run sends one SQS message per
/// partition; four workers take them from the queue at once (as the event
/// source mapping would) and renew their partitions. Every subscription,
/// spread over the shards, is renewed exactly once; the shard it sits in is
/// its user's, before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fanned_out_workers_renew_every_shard_once() {
    let (table, mut coordinator) = setup().await;
    let ledger = table.ledger();
    let (sqs, url, cron_sqs, _iam) = queue().await;
    // With a queue the job only dispatches: it signs as itself.
    coordinator.ledger = table.function_ledger("renewal-cron");
    coordinator.fan_out = Some(renewal_cron_fn::fanout::FanOut::new(cron_sqs, url.clone()));
    let start = datetime!(2025-01-15 06:00 UTC);
    let mut users = Vec::new();
    for _ in 0..40 {
        users.push(subscriber(&ledger, "10.00", "basic", start).await.0);
    }
    let mut shards = std::collections::HashSet::new();
    for user in &users {
        let partition = RenewalPartition::of(user);
        assert_eq!(index_pk(&table, user).await, Some(partition.pk()));
        shards.insert(partition);
    }
    assert!(shards.len() >= 10, "40 users over {} shards", shards.len());

    let now = datetime!(2025-02-15 06:00 UTC);
    let summary = job(&coordinator, now).await;
    assert_eq!(
        count(&summary, "dispatched"),
        u64::from(RENEWAL_SHARDS) + 1,
        "{summary}"
    );
    assert_eq!(
        count(&summary, "renewed"),
        0,
        "the workers renew, not the coordinator"
    );
    assert_eq!(
        assert_audit(&ledger, &users[0]).await,
        usd("5.00"),
        "nothing charged yet"
    );

    let messages = receive_all(&sqs, &url, 17).await;
    assert_eq!(messages.len(), 17);
    let worker = Arc::new(renewal_worker_fn::Deps::new(
        table.function_ledger("renewal-worker"),
    ));
    let queue = Arc::new(std::sync::Mutex::new(messages));
    let mut workers = JoinSet::new();
    for _ in 0..4 {
        let (worker, queue, sqs, url) = (worker.clone(), queue.clone(), sqs.clone(), url.clone());
        workers.spawn(async move {
            loop {
                let next = queue.lock().unwrap().pop();
                let Some(message) = next else { break };
                let body = message.body().unwrap();
                assert_eq!(PartitionMessage::parse(body).unwrap().time, now);
                let answer = work(&worker, sqs_event(message.message_id().unwrap(), body)).await;
                assert_eq!(answer, json!({"batchItemFailures": []}));
                sqs.delete_message()
                    .queue_url(&url)
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.unwrap();
    }
    for user in &users {
        assert_eq!(renewals_of(&ledger, user).await, 1, "{user}");
        assert_eq!(assert_audit(&ledger, user).await, usd("0.00"));
        let sub = sub_of(&ledger, user).await;
        assert_eq!(sub.next_renewal_date, datetime!(2025-03-15 06:00 UTC));
        assert_eq!(
            index_pk(&table, user).await,
            Some(RenewalPartition::of(user).pk())
        );
    }
    // Drained; every partition run again at the same clock (a retried
    // schedule run) finds nothing left to charge.
    assert!(receive_all(&sqs, &url, 1).await.is_empty());
    for partition in RenewalPartition::all() {
        let body = PartitionMessage {
            partition,
            time: now,
        }
        .to_body();
        assert_eq!(
            work(&worker, sqs_event("again", &body)).await,
            json!({"batchItemFailures": []})
        );
    }
    for user in &users {
        assert_eq!(renewals_of(&ledger, user).await, 1, "{user}");
    }
}

/// SQS may deliver a message twice, and a redelivery may overlap a slow
/// first run: the same partition processed by several workers at once
/// charges each period once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_shard_processed_concurrently_renews_each_subscription_once() {
    let (table, _deps) = setup().await;
    let ledger = table.ledger();
    let start = datetime!(2025-04-30 18:00 UTC);
    // Users of one shard only, with a DNS plan and a server each.
    let target = RenewalPartition::Shard(5);
    let mut users = Vec::new();
    while users.len() < 12 {
        let user = new_user();
        if RenewalPartition::of(&user) != target {
            continue;
        }
        credit(&ledger, &user, "100.00").await;
        billing::dns::purchase(&ledger, &user, "basic", start)
            .await
            .unwrap();
        service_subscriber(&ledger, &user, "srv-dup", "20.00", "month", start).await;
        users.push(user);
    }
    assert_eq!(partition_size(&table, target).await, 24);
    let now = datetime!(2025-05-30 18:00 UTC);
    let body = PartitionMessage {
        partition: target,
        time: now,
    }
    .to_body();
    let worker = Arc::new(renewal_worker_fn::Deps::new(
        table.function_ledger("renewal-worker"),
    ));
    let mut deliveries = JoinSet::new();
    for copy in 0..4 {
        let (worker, body) = (worker.clone(), body.clone());
        deliveries.spawn(async move {
            let deadline = Deadline::before(
                tokio::time::Instant::now() + Duration::from_secs(60),
                Duration::from_secs(10),
            );
            let summary =
                renewal_worker_fn::run_message(&worker, &body, OffsetDateTime::now_utc(), deadline)
                    .await
                    .unwrap_or_else(|e| panic!("delivery {copy}: {e:?}"));
            assert_eq!(summary.errors, 0, "{summary:?}");
            summary.renewed
        });
    }
    let mut renewed = 0;
    while let Some(done) = deliveries.join_next().await {
        renewed += done.unwrap();
    }
    assert_eq!(
        renewed, 24,
        "12 DNS plans + 12 servers, once each over 4 deliveries"
    );
    for user in &users {
        let entries = ledger.entries(user, 100, None).await.unwrap().entries;
        assert_eq!(renewals_of(&ledger, user).await, 1, "{user}");
        assert_eq!(service_renewals(&entries), 1, "{user}");
        // 100 - 5 - 20 (first periods) - 5 - 20 (renewals)
        assert_eq!(assert_audit(&ledger, user).await, usd("50.00"));
    }
}

/// Subscriptions indexed before the index was sharded (`gsi1pk=RENEWAL`)
/// are still found and renewed — by the in-process job and by a worker given
/// the legacy partition — and move to their shard when renewed or marked
/// past due; a cancelled one still expires from there.
#[tokio::test]
async fn legacy_renewal_items_still_renew_and_move_to_their_shard() {
    let (table, deps) = setup().await;
    let ledger = table.ledger();
    let start = datetime!(2025-06-10 09:00 UTC);
    let (paying, _) = subscriber(&ledger, "10.00", "basic", start).await;
    let (short, _) = subscriber(&ledger, "5.00", "basic", start).await;
    let (leaving, _) = subscriber(&ledger, "10.00", "basic", start).await;
    billing::dns::cancel(&ledger, &leaving, start + time::Duration::days(1))
        .await
        .unwrap();
    let (by_worker, _) = subscriber(&ledger, "10.00", "basic", start).await;
    // As written before sharding: the one legacy partition.
    for user in [&paying, &short, &leaving, &by_worker] {
        table
            .client
            .update_item()
            .table_name(&table.name)
            .key("pk", AttributeValue::S(user.pk()))
            .key("sk", AttributeValue::S("DNSSUB".into()))
            .update_expression("SET gsi1pk = :legacy")
            .expression_attribute_values(":legacy", AttributeValue::S("RENEWAL".into()))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(partition_size(&table, RenewalPartition::Legacy).await, 4);
    let due = datetime!(2025-07-10 09:00 UTC);

    // A worker given the legacy partition renews what it finds there (all
    // four are due: one renewed, one past due, one expired, and the fourth
    // too — the test then checks each).
    let worker = renewal_worker_fn::Deps::new(table.function_ledger("renewal-worker"));
    let legacy = PartitionMessage {
        partition: RenewalPartition::Legacy,
        time: due,
    }
    .to_body();
    assert_eq!(
        work(&worker, sqs_event("legacy", &legacy)).await,
        json!({"batchItemFailures": []})
    );
    assert_eq!(renewals_of(&ledger, &paying).await, 1);
    assert_eq!(renewals_of(&ledger, &by_worker).await, 1);
    assert_eq!(
        sub_of(&ledger, &short).await.status,
        SubscriptionStatus::PastDue
    );
    assert_eq!(
        sub_of(&ledger, &leaving).await.status,
        SubscriptionStatus::Expired
    );
    // Moved out of the legacy partition: to their shards, or out of the index.
    assert_eq!(partition_size(&table, RenewalPartition::Legacy).await, 0);
    for user in [&paying, &short, &by_worker] {
        assert_eq!(
            index_pk(&table, user).await,
            Some(RenewalPartition::of(user).pk()),
            "{user}"
        );
    }
    assert_eq!(index_pk(&table, &leaving).await, None);

    // From its shard now, the past-due one renews when funds arrive, and the
    // in-process job reads the legacy partition too (empty here: one Query).
    credit(&ledger, &short, "5.00").await;
    let later = job(&deps, due + time::Duration::days(1)).await;
    assert_eq!(
        (count(&later, "renewed"), count(&later, "partitions")),
        (1, 17),
        "{later}"
    );
    assert_eq!(assert_audit(&ledger, &short).await, usd("0.00"));
    for user in [&paying, &short, &by_worker] {
        assert_eq!(renewals_of(&ledger, user).await, 1, "{user}");
    }

    // The in-process job renews a legacy item too.
    let (old, _) = subscriber(&ledger, "15.00", "pro", start).await;
    table
        .client
        .update_item()
        .table_name(&table.name)
        .key("pk", AttributeValue::S(old.pk()))
        .key("sk", AttributeValue::S("DNSSUB".into()))
        .update_expression("SET gsi1pk = :legacy")
        .expression_attribute_values(":legacy", AttributeValue::S("RENEWAL".into()))
        .send()
        .await
        .unwrap();
    credit(&ledger, &old, "15.00").await;
    let summary = job(&deps, due + time::Duration::days(2)).await;
    assert_eq!(count(&summary, "renewed"), 1, "{summary}");
    assert_eq!(renewals_of(&ledger, &old).await, 1);
    assert_eq!(
        index_pk(&table, &old).await,
        Some(RenewalPartition::of(&old).pk())
    );
}

/// A worker refuses what it must not run: an unreadable message and a
/// clock too far ahead (the schedule's rule) are failed messages (SQS
/// delivers them again, then to the dead-letter queue), nothing charged;
/// an event that is not an SQS batch is an error by name.
#[tokio::test]
async fn workers_refuse_bad_messages_and_clocks_ahead() {
    let (table, _deps) = setup().await;
    let ledger = table.ledger();
    let (user, _) = subscriber(&ledger, "10.00", "basic", datetime!(2025-10-25 12:00 UTC)).await;
    let mut worker = renewal_worker_fn::Deps::new(table.function_ledger("renewal-worker"));
    worker.max_clock_skew = Some(time::Duration::seconds(900));
    let shard = RenewalPartition::of(&user);
    let ahead = PartitionMessage {
        partition: shard,
        time: datetime!(2999-01-01 0:00 UTC),
    }
    .to_body();
    let mut event = sqs_event("ahead", &ahead);
    event["Records"]
        .as_array_mut()
        .unwrap()
        .push(sqs_event("garbage", "{\"partition\": \"RENEWAL#99\"}")["Records"][0].clone());
    let answer = work(&worker, event).await;
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "ahead"}, {"itemIdentifier": "garbage"}]})
    );
    assert_eq!(renewals_of(&ledger, &user).await, 0);
    let deadline = Deadline::before(
        tokio::time::Instant::now() + Duration::from_secs(60),
        Duration::from_secs(10),
    );
    let refused =
        renewal_worker_fn::run_message(&worker, &ahead, OffsetDateTime::now_utc(), deadline)
            .await
            .unwrap_err();
    assert_eq!(refused.error_type, "ClockSkew");

    let not_sqs = renewal_worker_fn::handle(
        &worker,
        LambdaEvent::new(json!({"time": "2025-11-25T12:00:00Z"}), Context::default()),
    )
    .await
    .unwrap_err();
    assert_eq!(
        lambda_runtime::Diagnostic::from(not_sqs).error_type,
        "InvalidEvent"
    );

    // The sample event (events/renewal-worker.json) drives the worker: its
    // partition is renewed at its clock (nothing due there in this table).
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/renewal-worker.json");
    let sample: Value = serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    assert_eq!(
        work(&worker, sample).await,
        json!({"batchItemFailures": []})
    );
}

/// What one receive finds in `url` (one call, one second's wait).
async fn receive_some(client: &aws_sdk_sqs::Client, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    client
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default()
}

/// A worker whose queue and dead-letter queue are `url` and `dead_letter_url` on moto.
/// SQS as the worker reaches it: signed as `renewal-worker`, through the
/// proxy that checks its policy.
async fn worker_sqs(iam: &devstack::faultproxy::FaultProxy) -> aws_sdk_sqs::Client {
    renewal_cron_fn::fanout::client(
        &integration_tests::events::function_sdk("renewal-worker").await,
        Some(iam.endpoint()),
    )
}

fn queued_worker(
    ledger: &Ledger,
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    dead_letter_url: &str,
) -> renewal_worker_fn::Deps {
    let mut worker = renewal_worker_fn::Deps::new(ledger.clone());
    worker.requeue = Some(renewal_worker_fn::Requeue::new(
        sqs.clone(),
        url,
        dead_letter_url,
    ));
    worker
}

/// A busy partition (more due than one invocation gets through) hands the
/// rest to a new message instead of failing its own: it never spends the
/// queue's `maxReceiveCount` and so never reaches the dead-letter queue
/// while it is getting somewhere. Every subscription is renewed once.
#[tokio::test]
async fn a_partition_still_making_progress_continues_in_a_new_message() {
    let (table, _deps) = setup().await;
    let ledger = table.ledger();
    let start = datetime!(2025-04-30 18:00 UTC);
    let target = RenewalPartition::Shard(9);
    let mut users = Vec::new();
    while users.len() < 5 {
        let user = new_user();
        if RenewalPartition::of(&user) != target {
            continue;
        }
        credit(&ledger, &user, "100.00").await;
        billing::dns::purchase(&ledger, &user, "basic", start)
            .await
            .unwrap();
        users.push(user);
    }
    let (sqs, url, _, iam) = queue().await;
    let (_, dead_letter_url, _, _) = queue().await;
    let worker_sqs = worker_sqs(&iam).await;
    let mut worker = queued_worker(&ledger, &worker_sqs, &url, &dead_letter_url);
    // Two subscriptions per invocation: the page bound stops each run early.
    worker.options.page_size = 2;
    worker.options.max_pages = 1;
    let now = datetime!(2025-05-30 18:00 UTC);
    let mut body = PartitionMessage {
        partition: target,
        time: now,
    }
    .to_body();
    let mut hops = 0;
    loop {
        let answer = work(&worker, sqs_event(&format!("m{hops}"), &body)).await;
        assert_eq!(
            answer,
            json!({"batchItemFailures": []}),
            "hop {hop}: a partition making progress is not failed",
            hop = hops
        );
        let next = receive_some(&sqs, &url).await;
        let [message] = next.as_slice() else {
            assert!(next.is_empty(), "one continuation at a time: {next:?}");
            break;
        };
        let text = message.body().unwrap().to_owned();
        let parsed = PartitionMessage::parse(&text).unwrap();
        assert_eq!((parsed.partition, parsed.time), (target, now));
        sqs.delete_message()
            .queue_url(&url)
            .receipt_handle(message.receipt_handle().unwrap())
            .send()
            .await
            .unwrap();
        body = text;
        hops += 1;
        assert!(hops <= 5, "the continuations end");
    }
    assert!(hops >= 2, "5 due at 2 per invocation: {hops} continuations");
    for user in &users {
        assert_eq!(renewals_of(&ledger, user).await, 1, "{user}");
        assert_eq!(assert_audit(&ledger, user).await, usd("90.00"));
    }
    assert!(receive_some(&sqs, &dead_letter_url).await.is_empty());
}

/// A message no worker can ever read goes to the dead-letter queue at once
/// (with why), not through five receives and their visibility timeouts.
#[tokio::test]
async fn a_malformed_message_goes_straight_to_the_dead_letter_queue() {
    let (table, _deps) = setup().await;
    let (sqs, url, _, iam) = queue().await;
    let (_, dead_letter_url, _, _) = queue().await;
    let worker_sqs = worker_sqs(&iam).await;
    let worker = queued_worker(&table.ledger(), &worker_sqs, &url, &dead_letter_url);
    let garbage = "{\"partition\": \"RENEWAL#99\"}";
    let answer = work(&worker, sqs_event("garbage", garbage)).await;
    assert_eq!(answer, json!({"batchItemFailures": []}), "not retried");
    let dead = receive_some(&sqs, &dead_letter_url).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].body(), Some(garbage));
    assert!(receive_some(&sqs, &url).await.is_empty());
}
