//! The renewal job against DynamoDB Local: each period is charged once
//! however runs overlap, month ends stay anchored, past-due subscriptions
//! renew when funds arrive or expire after the grace period, cancelled ones
//! expire without a charge, and the job's reads grow with the *due*
//! subscriptions only.

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
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
    let deps = Deps::new(table.ledger());
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
    };
    // Deadline already reached: nothing is started.
    let expired = Deadline::before(tokio::time::Instant::now(), Duration::from_secs(10));
    let summary = run_renewals(&ledger, now, expired, options).await.unwrap();
    assert_eq!((summary.pages, summary.renewed), (0, 0));
    assert!(summary.stopped_early && !summary.complete);

    // A page bound: one bounded page, the rest left in the index.
    let plenty = Deadline::before(
        tokio::time::Instant::now() + Duration::from_secs(60),
        Duration::from_secs(10),
    );
    let one_page = RenewalOptions {
        page_size: 10,
        max_pages: 1,
    };
    let summary = run_renewals(&ledger, now, plenty, one_page).await.unwrap();
    assert_eq!(
        (summary.pages, summary.renewed, summary.scanned),
        (1, 10, 10)
    );
    assert!(summary.stopped_early && !summary.complete);

    let summary = run_renewals(&ledger, now, plenty, options).await.unwrap();
    assert_eq!(summary.renewed, 15, "{summary:?}");
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
    let mut local = Deps::new(table.ledger());
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
    // Up to 3 pages of due renewals + 1 Query each of the pending and the
    // claimed (stale-claim check) delivery partitions.
    assert!(queries <= 5, "{calls:?}");
    // Two pages of subscriptions, plus the DNS plans they renew at, read
    // once per run (a handful of items).
    assert!(batch_gets <= 3, "{calls:?}");
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
    // One empty Query of due renewals, one each of claimed and pending deliveries.
    assert_eq!(
        table.calls.total(),
        3,
        "three empty Queries: {:?}",
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
