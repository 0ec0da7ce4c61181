//! The ledger's retry policy under the faults DynamoDB Local never produces:
//! transaction conflicts, throttling, 5xx and writes that happened without the
//! client seeing the answer — injected by `devstack::faultproxy` between a
//! second DynamoDB client and DynamoDB Local. Tables are created and audited
//! directly; only the code under test goes through the proxy.
//!
//! The proxied client keeps the SDK's standard retry mode (3 attempts per
//! call, its own retries of throttling/5xx/connection errors) but with a
//! 20 ms initial backoff instead of 1 s, to keep the file fast. Results are
//! recorded in docs/reliability.md.

use devstack::faultproxy::{Fault, FaultConfig, FaultProxy, FaultRule, ProxyStats};
use integration_tests::api::{TestApi, TestResponse};
use integration_tests::{TestTable, assert_audit, dynamo_endpoint, new_user, usd};
use ledger::dynamodb::Client;
use ledger::dynamodb::config::retry::{RetryConfig, RetryPartition};
use ledger::dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use ledger::{
    Change, ChangeOutcome, DynamoCallCounter, EntryDetails, EntryKind, Ledger, LedgerError,
    OnceKey, RetryPolicy, UserId,
};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

const TWI: &str = "TransactWriteItems";
const GET: &str = "GetItem";

/// A test table plus a client that reaches it through a fault proxy.
struct Faulty {
    table: TestTable,
    proxy: FaultProxy,
    client: Client,
    /// Calls as the SDK sent them (each SDK attempt counts).
    calls: DynamoCallCounter,
}

async fn start_proxy() -> FaultProxy {
    FaultProxy::spawn(([127, 0, 0, 1], 0).into(), dynamo_endpoint())
        .await
        .expect("fault proxy starts")
}

/// A DynamoDB client whose endpoint is the proxy, with its own retry
/// partition (the SDK's retry quota is not shared with other tests).
async fn proxied_client(proxy: &FaultProxy) -> (Client, DynamoCallCounter) {
    let sdk = billing_config::load_aws_config().await;
    let calls = DynamoCallCounter::default();
    let (counter, endpoint) = (calls.clone(), proxy.endpoint());
    let partition = RetryPartition::new(format!("faults-{}", uuid::Uuid::new_v4().simple()));
    let client = billing_config::dynamo_client_with(&sdk, move |b| {
        b.endpoint_url(endpoint)
            .interceptor(counter)
            .retry_partition(partition)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(20)),
            )
    });
    (client, calls)
}

async fn faulty(config: FaultConfig) -> Faulty {
    let table = TestTable::new().await;
    let proxy = start_proxy().await;
    proxy.set_faults(config);
    let (client, calls) = proxied_client(&proxy).await;
    Faulty {
        table,
        proxy,
        client,
        calls,
    }
}

impl Faulty {
    /// The ledger under test: through the proxy.
    fn ledger(&self, retry: RetryPolicy) -> Ledger {
        Ledger::new(self.client.clone(), &self.table.name).with_retry_policy(retry)
    }

    /// For setup and audits: straight to DynamoDB Local.
    fn direct(&self) -> Ledger {
        self.table.ledger()
    }

    async fn item(&self, pk: &str, sk: &str) -> Option<ledger::AttrMap> {
        self.table
            .client
            .get_item()
            .table_name(&self.table.name)
            .key("pk", AttributeValue::S(pk.into()))
            .key("sk", AttributeValue::S(sk.into()))
            .consistent_read(true)
            .send()
            .await
            .expect("direct GetItem")
            .item
    }
}

fn budget(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay_ms: 2,
        max_delay_ms: 20,
        ..RetryPolicy::default()
    }
}

fn credit(user: &UserId, amount: &str) -> Change {
    Change::new(
        user.clone(),
        usd(amount),
        EntryDetails::new(EntryKind::AdminCredit, "fault test credit"),
    )
}

fn debit(user: &UserId, amount: &str) -> Change {
    Change::new(
        user.clone(),
        -usd(amount),
        EntryDetails::new(EntryKind::AdminDebit, "fault test debit"),
    )
}

fn applied(result: Result<ChangeOutcome, LedgerError>) -> ledger::Applied {
    match result {
        Ok(ChangeOutcome::Applied(applied)) => applied,
        other => panic!("expected the change applied (first time), got {other:?}"),
    }
}

fn summary(stats: &ProxyStats) -> String {
    format!(
        "requests {:?}; faults {:?}; unacknowledged writes {:?}; forwarded {:?}; token mismatches {}",
        stats.requests, stats.faults, stats.unacknowledged, stats.forwarded, stats.token_mismatches
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_are_retried_to_the_same_outcome() {
    let env = faulty(FaultConfig::seeded(11).with(TWI, Fault::Conflict, 0.3)).await;
    let ledger = env.ledger(RetryPolicy::default());
    let user = new_user();
    let started = Instant::now();
    for _ in 0..20 {
        applied(ledger.apply(credit(&user, "1.25")).await);
    }
    for _ in 0..10 {
        applied(ledger.apply(debit(&user, "0.50")).await);
    }
    let elapsed = started.elapsed();
    let stats = env.proxy.stats();
    let conflicts = stats.fault("conflict", TWI);
    println!(
        "conflicts 30%: 30 changes, {}; {elapsed:?}",
        summary(&stats)
    );
    assert!(
        conflicts >= 3,
        "the proxy injected conflicts: {}",
        summary(&stats)
    );
    // Every cancelled attempt costs exactly one more read and one more write:
    // the SDK does not retry cancellations, the ledger does.
    assert_eq!(stats.requests(TWI), 30 + conflicts);
    assert_eq!(stats.requests(GET), 30 + conflicts);
    // Backoff is bounded: a change's n-th retry waits at most 5 ms × 2ⁿ
    // (capped at 640 ms); with sequential changes n stays small, so 160 ms per
    // conflict is generous.
    assert!(
        elapsed < Duration::from_millis(160 * conflicts + 5_000),
        "{elapsed:?}"
    );
    assert_eq!(assert_audit(&env.direct(), &user).await, usd("20.00"));
    assert_eq!(env.direct().audit(&user).await.unwrap().entries, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttles_and_server_errors_are_retried_to_the_same_outcome() {
    let config = FaultConfig::seeded(12)
        .with("*", Fault::Throttling, 0.15)
        .with("*", Fault::ProvisionedThroughput, 0.10)
        .with("*", Fault::InternalError, 0.10);
    let env = faulty(config).await;
    let ledger = env.ledger(RetryPolicy::default());
    let user = new_user();
    let mut expected = usd("0.00");
    for i in 1..=20 {
        let amount = format!("{i}.{:02}", i * 3);
        expected = expected.checked_add(usd(&amount)).unwrap();
        let done = applied(ledger.apply(credit(&user, &amount)).await);
        assert_eq!(done.entry.amount, usd(&amount));
        assert_eq!(done.balance, expected);
    }
    let stats = env.proxy.stats();
    println!(
        "throttling 15% + PTE 10% + 500 10%, all ops: 20 credits, {}",
        summary(&stats)
    );
    let injected = stats.fault_total("throttling")
        + stats.fault_total("provisioned_throughput")
        + stats.fault_total("internal_error");
    assert!(injected >= 10, "{}", summary(&stats));
    // Nothing reached DynamoDB Local twice: one successful write per credit.
    assert_eq!(stats.forwarded(TWI), 20, "{}", summary(&stats));
    assert_eq!(assert_audit(&env.direct(), &user).await, expected);
    assert_eq!(env.direct().audit(&user).await.unwrap().entries, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_writes_are_never_applied_twice() {
    let config = FaultConfig::seeded(13)
        .with(TWI, Fault::DropAfterForward, 0.3)
        .with(TWI, Fault::ErrorAfterForward, 0.2);
    let env = faulty(config).await;
    let ledger = env.ledger(RetryPolicy::default());
    let user = new_user();
    let mut expected = usd("0.00");
    for i in 1..=20 {
        let amount = format!("0.{i:02}");
        expected = expected.checked_add(usd(&amount)).unwrap();
        let done = applied(ledger.apply(credit(&user, &amount)).await);
        assert_eq!((done.entry.amount, done.balance), (usd(&amount), expected));
    }
    let stats = env.proxy.stats();
    println!(
        "drop-after-forward 30% + 500-after-forward 20%: 20 credits, {}",
        summary(&stats)
    );
    assert!(stats.unacknowledged(TWI) >= 5, "{}", summary(&stats));
    assert_eq!(
        assert_audit(&env.direct(), &user).await,
        expected,
        "each credit exactly once"
    );
    assert_eq!(env.direct().audit(&user).await.unwrap().entries, 20);
}

#[tokio::test]
async fn a_write_unacknowledged_on_the_last_attempt_is_found_not_reported_failed() {
    // Every TransactWriteItems is applied and its answer lost (the SDK's own
    // 3 attempts included); the ledger has a budget of one attempt.
    let env = faulty(FaultConfig::seeded(14).with(TWI, Fault::DropAfterForward, 1.0)).await;
    let ledger = env.ledger(budget(1));
    let user = new_user();
    let result = ledger.apply(credit(&user, "7.00")).await;
    let stats = env.proxy.stats();
    println!(
        "drop-after-forward 100%, budget 1: {result:?}; {}",
        summary(&stats)
    );
    assert!(stats.unacknowledged(TWI) >= 1);
    // The money moved, so the caller must not be told "nothing was changed".
    let done = applied(result);
    assert_eq!(done.balance, usd("7.00"));
    assert_eq!(assert_audit(&env.direct(), &user).await, usd("7.00"));
    assert_eq!(env.direct().audit(&user).await.unwrap().entries, 1);
}

#[tokio::test]
async fn a_resend_cancelled_after_a_lost_acknowledgement_is_not_reported_refused() {
    // The SDK's first send commits but its answer is lost; the SDK resends
    // the same transaction and that send is cancelled (TransactionConflict).
    // The cancellation says nothing about the first send: the ledger must
    // look, not conclude "nothing written" (here it would then see $1.00 and
    // refuse a debit that in fact happened).
    let once = |fault, skip| FaultRule {
        operation: TWI.into(),
        fault,
        rate: 1.0,
        skip,
        max: Some(1),
    };
    let config = FaultConfig::seeded(22)
        .with_rule(once(Fault::DropAfterForward, 0))
        .with_rule(once(Fault::Conflict, 1));
    let env = faulty(config).await;
    let user = new_user();
    env.direct().apply(credit(&user, "4.00")).await.unwrap();
    let result = env.ledger(budget(4)).apply(debit(&user, "3.00")).await;
    let stats = env.proxy.stats();
    println!(
        "first send unacknowledged, resend cancelled: {result:?}; {}",
        summary(&stats)
    );
    assert_eq!(
        (stats.unacknowledged(TWI), stats.fault("conflict", TWI)),
        (1, 1)
    );
    let done = applied(result);
    assert_eq!(done.balance, usd("1.00"));
    assert_eq!(done.entry.amount, -usd("3.00"));
    assert_eq!(assert_audit(&env.direct(), &user).await, usd("1.00"));
    assert_eq!(env.direct().audit(&user).await.unwrap().entries, 2);
}

#[tokio::test]
async fn a_read_failing_after_a_lost_acknowledgement_does_not_hide_the_write() {
    // The first write lands unacknowledged (all 3 SDK attempts); the next
    // read is throttled through all of the SDK's attempts; then all is well.
    let config = FaultConfig::seeded(15)
        .with_rule(FaultRule {
            operation: TWI.into(),
            fault: Fault::DropAfterForward,
            rate: 1.0,
            skip: 0,
            max: Some(3),
        })
        .with_rule(FaultRule {
            operation: GET.into(),
            fault: Fault::Throttling,
            rate: 1.0,
            skip: 1,
            max: Some(3),
        });
    let env = faulty(config).await;
    let ledger = env.ledger(budget(4));
    let user = new_user();
    let result = ledger.apply(credit(&user, "4.00")).await;
    println!(
        "drop 3 writes then throttle 3 reads, budget 4: {result:?}; {}",
        summary(&env.proxy.stats())
    );
    let done = applied(result);
    assert_eq!(done.balance, usd("4.00"));
    assert_eq!(assert_audit(&env.direct(), &user).await, usd("4.00"));
    assert_eq!(env.direct().audit(&user).await.unwrap().entries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_once_key_change_under_dropped_acknowledgements_is_applied_once() {
    let env = faulty(FaultConfig::seeded(16).with(TWI, Fault::DropAfterForward, 0.5)).await;
    let ledger = Arc::new(env.ledger(RetryPolicy::default()));
    let user = new_user();
    let key = OnceKey::new("capture", format!("X-{user}"));

    // Eight racing callers (a capture, its webhook, retries): one moves the money.
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let (ledger, user, key) = (ledger.clone(), user.clone(), key.clone());
        tasks.spawn(async move { ledger.apply(credit(&user, "10.00").once(key)).await });
    }
    let (mut first, mut replays) = (Vec::new(), Vec::new());
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(ChangeOutcome::Applied(a)) => first.push(a),
            Ok(ChangeOutcome::AlreadyApplied(a)) => replays.push(a),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    let stats = env.proxy.stats();
    println!(
        "drop-after-forward 50%, 8 racing once-key credits: {}",
        summary(&stats)
    );
    assert_eq!(
        first.len(),
        1,
        "exactly one caller reports moving the money"
    );
    assert_eq!(replays.len(), 7);
    assert!(replays.iter().all(|r| r.entry == first[0].entry));
    // A late retry replays the original.
    let late = ledger
        .apply(credit(&user, "10.00").once(key.clone()))
        .await
        .unwrap();
    assert!(!late.is_first_time());
    assert_eq!(late.applied().entry, first[0].entry);
    assert!(env.direct().was_applied(&key).await.unwrap());
    assert_eq!(assert_audit(&env.direct(), &user).await, usd("10.00"));
    assert_eq!(env.direct().audit(&user).await.unwrap().entries, 1);
}

#[tokio::test]
async fn a_lost_acknowledgement_of_a_change_with_caller_items_is_still_applied() {
    // The first write lands but its answer is lost; the SDK resends the same
    // transaction, whose conditions now fail on our own items.
    let config = FaultConfig::seeded(17).with_rule(FaultRule {
        operation: TWI.into(),
        fault: Fault::DropAfterForward,
        rate: 1.0,
        skip: 0,
        max: Some(1),
    });
    let env = faulty(config).await;
    let ledger = env.ledger(budget(4));
    let user = new_user();
    let order = Put::builder()
        .table_name(&env.table.name)
        .item("pk", AttributeValue::S(format!("ORDER#{user}")))
        .item("sk", AttributeValue::S("ORDER".into()))
        .item("status", AttributeValue::S("captured".into()))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .unwrap();
    let change = credit(&user, "12.00").with_item(TransactWriteItem::builder().put(order).build());
    let result = ledger.apply(change).await;
    println!(
        "first write unacknowledged, change with a caller item: {result:?}; {}",
        summary(&env.proxy.stats())
    );
    assert_eq!(env.proxy.stats().unacknowledged(TWI), 1);
    let done = applied(result);
    assert_eq!(done.balance, usd("12.00"));
    assert!(env.item(&format!("ORDER#{user}"), "ORDER").await.is_some());
    assert_eq!(assert_audit(&env.direct(), &user).await, usd("12.00"));
}

#[tokio::test]
async fn after_the_budget_conflicts_end_contended_with_nothing_written() {
    let env = faulty(FaultConfig::seeded(18).with(TWI, Fault::Conflict, 1.0)).await;
    let user = new_user();
    env.direct().apply(credit(&user, "9.00")).await.unwrap();
    let ledger = env.ledger(budget(4));
    let key = OnceKey::new("capture", format!("C-{user}"));
    let thing = Put::builder()
        .table_name(&env.table.name)
        .item("pk", AttributeValue::S(format!("THING#{user}")))
        .item("sk", AttributeValue::S("THING".into()))
        .build()
        .unwrap();
    let change = debit(&user, "2.00")
        .once(key.clone())
        .with_item(TransactWriteItem::builder().put(thing).build());
    let result = ledger.apply(change).await;
    let stats = env.proxy.stats();
    println!("conflict 100%, budget 4: {result:?}; {}", summary(&stats));
    assert!(
        matches!(result, Err(LedgerError::Contended { attempts: 4 })),
        "{result:?}"
    );
    assert_eq!(
        stats.requests(TWI),
        4,
        "one write per attempt, none after the budget"
    );
    // Nothing half-written: balance, chain, marker, caller item all untouched.
    assert_eq!(assert_audit(&env.direct(), &user).await, usd("9.00"));
    assert_eq!(env.direct().audit(&user).await.unwrap().entries, 1);
    assert!(!env.direct().was_applied(&key).await.unwrap());
    assert!(env.item(&format!("THING#{user}"), "THING").await.is_none());
}

#[tokio::test]
async fn after_the_budget_throttling_ends_transient_with_nothing_written() {
    let env = faulty(FaultConfig::seeded(19).with(TWI, Fault::Throttling, 1.0)).await;
    let user = new_user();
    env.direct().apply(credit(&user, "9.00")).await.unwrap();
    let key = OnceKey::new("capture", format!("T-{user}"));
    let result = env
        .ledger(budget(2))
        .apply(debit(&user, "2.00").once(key.clone()))
        .await;
    let stats = env.proxy.stats();
    println!(
        "throttling 100% on writes, budget 2: {result:?}; {}",
        summary(&stats)
    );
    assert!(
        matches!(
            result,
            Err(LedgerError::Contended { .. }
                | LedgerError::Dynamo {
                    transient: true,
                    ..
                })
        ),
        "{result:?}"
    );
    assert_eq!(
        stats.requests(TWI),
        2 * 3,
        "2 ledger attempts × 3 SDK attempts"
    );
    assert_eq!(env.calls.snapshot().get(TWI), Some(&6));

    // Reads throttled for good: a transient error, not a hang.
    env.proxy
        .set_faults(FaultConfig::seeded(19).with(GET, Fault::ProvisionedThroughput, 1.0));
    let result = env.ledger(budget(2)).apply(debit(&user, "2.00")).await;
    println!(
        "throughput exceeded 100% on reads, budget 2: {result:?}; {}",
        summary(&env.proxy.stats())
    );
    assert!(
        matches!(
            result,
            Err(LedgerError::Dynamo {
                transient: true,
                ..
            })
        ),
        "{result:?}"
    );

    assert_eq!(assert_audit(&env.direct(), &user).await, usd("9.00"));
    assert_eq!(env.direct().audit(&user).await.unwrap().entries, 1);
    assert!(!env.direct().was_applied(&key).await.unwrap());
}

/// The hot-account scenario of docs/reliability.md. Budget: with
/// `RetryPolicy::default()` (40 attempts or 6 s, backoff ≤ 640 ms) no change may end
/// in anything but success or InsufficientBalance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_debits_on_a_hot_account_under_conflicts_and_lost_acknowledgements() {
    let config = FaultConfig::seeded(20)
        .with(TWI, Fault::Conflict, 0.3)
        .with(TWI, Fault::DropAfterForward, 0.1);
    let env = faulty(config).await;
    let user = new_user();
    env.direct().apply(credit(&user, "100.00")).await.unwrap();
    let ledger = Arc::new(env.ledger(RetryPolicy::default()));

    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..64 {
        let (ledger, user) = (ledger.clone(), user.clone());
        tasks.spawn(async move {
            let started = Instant::now();
            let result = ledger.apply(debit(&user, "3.00")).await;
            (result, started.elapsed())
        });
    }
    let (mut ok, mut short, mut other, mut latencies) = (0, 0, Vec::new(), Vec::new());
    while let Some(joined) = tasks.join_next().await {
        let (result, latency) = joined.unwrap();
        latencies.push(latency);
        match result {
            Ok(ChangeOutcome::Applied(_)) => ok += 1,
            Err(LedgerError::InsufficientBalance { .. }) => short += 1,
            unexpected => other.push(format!("{unexpected:?}")),
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let stats = env.proxy.stats();
    let sdk = env.calls.snapshot();
    println!(
        "hot account: ok {ok}, insufficient {short}, other {}, {elapsed:?} (per debit p50 {:?}, max {:?}); \
         SDK calls {sdk:?}; {}",
        other.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        summary(&stats)
    );
    let report = env.direct().audit(&user).await.unwrap();
    println!("hot account audit: {report:?}");
    assert!(other.is_empty(), "outside the budget: {other:?}");
    assert_eq!((ok, short), (33, 31));
    assert_eq!(assert_audit(&env.direct(), &user).await, usd("1.00"));
    assert_eq!(env.direct().balance(&user).await.unwrap(), usd("1.00"));
    assert_eq!(env.direct().audit(&user).await.unwrap().entries, 34);
    assert!(
        stats.fault("conflict", TWI) > 0 && stats.fault("drop_after_forward", TWI) > 0,
        "{}",
        summary(&stats)
    );
}

fn admin_path(user: &UserId) -> String {
    format!("/api/admin/users/{user}/custom-credits")
}

/// A keyed admin add (boxed: the handler's future is large in debug builds).
async fn admin_add(
    api: &TestApi,
    user: &UserId,
    token: &str,
    body: &str,
    key: &str,
) -> TestResponse {
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", key),
    ];
    Box::pin(api.call("POST", &admin_path(user), Some(token), Some(body), &headers)).await
}

#[tokio::test]
async fn the_admin_route_answers_503_with_nothing_written_after_the_budget() {
    let proxy = start_proxy().await;
    let (client, _) = proxied_client(&proxy).await;
    let api = TestApi::with_client(client, budget(3)).await;
    let user = new_user();
    let admin = api.token("77", true);
    let body = r#"{"amount": 5, "reason": "goodwill"}"#;

    proxy.set_faults(FaultConfig::seeded(21).with(TWI, Fault::Conflict, 1.0));
    let busy = admin_add(&api, &user, &admin, body, "busy-1").await;
    println!(
        "admin add, conflict 100%, budget 3: {} {}; {}",
        busy.status,
        busy.body,
        summary(&proxy.stats())
    );
    assert_eq!(busy.status, 503, "{:?}", busy.body);
    assert_eq!(busy.body["code"], json!("busy"));
    assert_eq!(proxy.stats().requests(TWI), 3);
    assert_eq!(
        api.ledger().audit(&user).await.unwrap().entries,
        0,
        "no entry"
    );
    assert_eq!(api.ledger().balance(&user).await.unwrap(), usd("0.00"));
    let record = api
        .table
        .client
        .get_item()
        .table_name(&api.table.name)
        .key("pk", AttributeValue::S("IDEM#77#busy-1".into()))
        .key("sk", AttributeValue::S("IDEM".into()))
        .send()
        .await
        .unwrap()
        .item;
    assert!(
        record.is_none(),
        "no idempotency record for a request that changed nothing"
    );

    // The client retries with the same key once DynamoDB is well, and the
    // first write of that retry loses its answer: still one credit, one body.
    proxy.set_faults(FaultConfig::seeded(21).with_rule(FaultRule {
        operation: TWI.into(),
        fault: Fault::DropAfterForward,
        rate: 1.0,
        skip: 0,
        max: Some(1),
    }));
    let retry = admin_add(&api, &user, &admin, body, "busy-1").await;
    println!(
        "admin add retried, first write unacknowledged: {} {}; {}",
        retry.status,
        retry.body,
        summary(&proxy.stats())
    );
    assert_eq!(retry.status, 200, "{:?}", retry.body);
    assert_eq!(retry.body, json!({"success": true, "balance": "5.00"}));
    assert_eq!(proxy.stats().unacknowledged(TWI), 1);
    let again = admin_add(&api, &user, &admin, body, "busy-1").await;
    assert_eq!(again.body, retry.body, "replayed");
    assert_eq!(
        assert_audit(&api.ledger(), &user).await,
        usd("5.00"),
        "credited once"
    );
}

#[tokio::test]
async fn a_retry_at_an_unchanged_seq_is_a_new_transaction_not_a_token_mismatch() {
    // Issue 13 point 10. Two keyed admin adds lose their first attempts to
    // conflicts; the ledger's next attempt finds the account unchanged. Its
    // idempotency record is rebuilt (fresh createdAt/expiresAt), so reusing
    // the ClientRequestToken would be IdempotentParameterMismatch on real
    // DynamoDB (the proxy checks tokens as DynamoDB does) and a 500 here.
    let proxy = start_proxy().await;
    let (client, _) = proxied_client(&proxy).await;
    let api = TestApi::with_client(client, budget(4)).await;
    let user = new_user();
    let admin = api.token("77", true);
    let body = r#"{"amount": 5, "reason": "goodwill"}"#;
    proxy.set_faults(
        FaultConfig::seeded(31)
            .with_rule(FaultRule {
                operation: TWI.into(),
                fault: Fault::Conflict,
                rate: 1.0,
                skip: 0,
                max: Some(2),
            })
            .with_rule(FaultRule {
                operation: TWI.into(),
                fault: Fault::Latency { ms: 15 },
                rate: 1.0,
                skip: 0,
                max: Some(2),
            }),
    );
    let response = admin_add(&api, &user, &admin, body, "same-seq-1").await;
    let stats = proxy.stats();
    println!(
        "two conflicts then a retry at the same seq: {} {}; {}; token mismatches {}",
        response.status,
        response.body,
        summary(&stats),
        stats.token_mismatches
    );
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(stats.fault("conflict", TWI), 2);
    assert_eq!(stats.token_mismatches, 0);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("5.00"));
    assert_eq!(api.ledger().audit(&user).await.unwrap().entries, 1);
}

#[tokio::test]
async fn a_lost_answer_that_cannot_be_verified_is_outcome_unknown_not_nothing_changed() {
    // Issue 13 point 9. The only write lands but every answer is lost (the
    // SDK's 3 sends); the verification read is throttled through all of the
    // SDK's attempts. The ledger cannot say "nothing was changed".
    let config = FaultConfig::seeded(32)
        .with_rule(FaultRule {
            operation: TWI.into(),
            fault: Fault::DropAfterForward,
            rate: 1.0,
            skip: 0,
            max: Some(3),
        })
        .with_rule(FaultRule {
            operation: GET.into(),
            fault: Fault::Throttling,
            rate: 1.0,
            skip: 1,
            max: Some(3),
        });
    let env = faulty(config).await;
    let user = new_user();
    let result = env.ledger(budget(1)).apply(credit(&user, "6.00")).await;
    println!(
        "write unacknowledged, verification unreadable: {result:?}; {}",
        summary(&env.proxy.stats())
    );
    assert!(
        matches!(result, Err(LedgerError::OutcomeUnknown { .. })),
        "{result:?}"
    );
    let api_error = billing_http::ApiError::from(result.unwrap_err());
    assert_eq!(
        (api_error.status, api_error.code),
        (503, Some("outcome_unknown"))
    );
    assert!(
        !api_error.message.contains("nothing was changed"),
        "{}",
        api_error.message
    );
    // It did happen, once; a retry with the same once-key or key finds it.
    assert_eq!(assert_audit(&env.direct(), &user).await, usd("6.00"));
}

/// A client through the proxy that stops waiting for an answer after
/// 300 ms and resends once (the SDK's attempt timeout, shortened).
async fn impatient_client(proxy: &FaultProxy) -> Client {
    let sdk = billing_config::load_aws_config().await;
    let endpoint = proxy.endpoint();
    billing_config::dynamo_client_with(&sdk, move |b| {
        b.endpoint_url(endpoint)
            .retry_partition(RetryPartition::new(format!(
                "faults-{}",
                uuid::Uuid::new_v4().simple()
            )))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(2)
                    .with_initial_backoff(Duration::from_millis(20)),
            )
            .timeout_config(
                ledger::dynamodb::config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_millis(300))
                    .build(),
            )
    })
}

#[tokio::test]
async fn a_send_still_on_its_way_when_the_budget_ends_is_outcome_unknown_not_busy() {
    // The SDK gives up on a send (its attempt timeout) that is still on its
    // way to DynamoDB; its resend meets a conflict; the budget ends. The
    // first send lands afterwards. "Busy, nothing written" would be false.
    let config = FaultConfig::seeded(41)
        .with_rule(FaultRule {
            operation: TWI.into(),
            fault: Fault::Latency { ms: 1_500 },
            rate: 1.0,
            skip: 0,
            max: Some(1),
        })
        .with_rule(FaultRule {
            operation: TWI.into(),
            fault: Fault::Conflict,
            rate: 1.0,
            skip: 1,
            max: Some(1),
        });
    let env = faulty(config).await;
    let impatient = impatient_client(&env.proxy).await;
    let user = new_user();
    let result = Ledger::new(impatient, &env.table.name)
        .with_retry_policy(budget(1))
        .apply(credit(&user, "4.00"))
        .await;
    println!(
        "send on its way at the budget's end: {result:?}; {}",
        summary(&env.proxy.stats())
    );
    assert!(
        matches!(result, Err(LedgerError::OutcomeUnknown { .. })),
        "{result:?}"
    );
    // The delayed send lands (1.5 s after it was sent; a loaded store may
    // take longer): the change did happen, once.
    let waiting = Instant::now();
    while env.item(&user.pk(), "CREDITS").await.is_none()
        && waiting.elapsed() < Duration::from_secs(15)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(assert_audit(&env.direct(), &user).await, usd("4.00"));
}

#[tokio::test]
async fn a_send_that_lands_between_attempts_is_found_not_applied_again() {
    // Attempt 1's send is delayed 400 ms; the SDK stops waiting at 300 ms
    // and its resend meets a conflict. Attempt 2 reads before that send
    // lands and its own send meets a conflict too (an answered one). Then
    // the delayed send lands, and attempt 3 reads the account one change
    // further on: it must find its own entry, not credit a second time.
    let config = FaultConfig::seeded(43)
        .with_rule(FaultRule {
            operation: TWI.into(),
            fault: Fault::Latency { ms: 400 },
            rate: 1.0,
            skip: 0,
            max: Some(1),
        })
        .with_rule(FaultRule {
            operation: TWI.into(),
            fault: Fault::Conflict,
            rate: 1.0,
            skip: 1,
            max: Some(2),
        })
        .with_rule(FaultRule {
            operation: GET.into(),
            fault: Fault::Latency { ms: 1_000 },
            rate: 1.0,
            skip: 2,
            max: Some(1),
        });
    let env = faulty(config).await;
    let user = new_user();
    let result = Ledger::new(impatient_client(&env.proxy).await, &env.table.name)
        .with_retry_policy(budget(5))
        .apply(credit(&user, "4.00"))
        .await;
    println!(
        "send landed between attempts: {result:?}; {}",
        summary(&env.proxy.stats())
    );
    let applied = result.expect("the change happened").into_applied();
    assert_eq!(applied.entry.seq, 1, "{applied:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(assert_audit(&env.direct(), &user).await, usd("4.00"));
}
