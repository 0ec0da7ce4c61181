//! The ledger's invariants against real DynamoDB Local, under real concurrency.

use integration_tests::{TestTable, assert_audit, new_user, usd};
use ledger::dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use ledger::{
    Change, ChangeOutcome, EntryDetails, EntryKind, LedgerError, OnceKey, Overdraft, Usd,
};
use std::sync::Arc;
use tokio::task::JoinSet;

fn credit(user: &ledger::UserId, amount: &str) -> Change {
    Change::new(
        user.clone(),
        usd(amount),
        EntryDetails::new(EntryKind::AdminCredit, "test credit"),
    )
}

fn debit(user: &ledger::UserId, amount: &str) -> Change {
    Change::new(
        user.clone(),
        -usd(amount),
        EntryDetails::new(EntryKind::AdminDebit, "test debit"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_debits_never_overdraw() {
    let table = TestTable::new().await;
    let ledger = Arc::new(table.ledger());
    let user = new_user();
    ledger.apply(credit(&user, "100.00")).await.unwrap();

    let mut tasks = JoinSet::new();
    for _ in 0..64 {
        let (ledger, user) = (ledger.clone(), user.clone());
        tasks.spawn(async move { ledger.apply(debit(&user, "3.00")).await });
    }
    let (mut ok, mut short) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(ChangeOutcome::Applied(_)) => ok += 1,
            Err(LedgerError::InsufficientBalance { .. }) => short += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((ok, short), (33, 31));
    assert_eq!(ledger.balance(&user).await.unwrap(), usd("1.00"));
    assert_eq!(assert_audit(&ledger, &user).await, usd("1.00"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_mixed_changes_lose_no_update() {
    let table = TestTable::new().await;
    let ledger = Arc::new(table.ledger());
    let user = new_user();
    ledger.apply(credit(&user, "50.00")).await.unwrap();

    let mut tasks = JoinSet::new();
    for i in 0..40 {
        let (ledger, user) = (ledger.clone(), user.clone());
        tasks.spawn(async move {
            let change = if i % 2 == 0 {
                credit(&user, "2.50")
            } else {
                debit(&user, "1.25")
            };
            ledger.apply(change).await
        });
    }
    while let Some(result) = tasks.join_next().await {
        assert!(matches!(result.unwrap(), Ok(ChangeOutcome::Applied(_))));
    }
    // 50 + 20 × 2.50 − 20 × 1.25
    assert_eq!(assert_audit(&ledger, &user).await, usd("75.00"));
    assert_eq!(ledger.audit(&user).await.unwrap().entries, 41);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_once_key_moves_money_once_under_concurrency() {
    let table = TestTable::new().await;
    let ledger = Arc::new(table.ledger());
    let user = new_user();
    let key = OnceKey::new("capture", "CAPTURE-1");

    let mut tasks = JoinSet::new();
    for _ in 0..20 {
        let (ledger, user, key) = (ledger.clone(), user.clone(), key.clone());
        tasks.spawn(async move { ledger.apply(credit(&user, "10.00").once(key)).await });
    }
    let (mut first, mut replays) = (Vec::new(), Vec::new());
    while let Some(result) = tasks.join_next().await {
        match result.unwrap().unwrap() {
            ChangeOutcome::Applied(a) => first.push(a),
            ChangeOutcome::AlreadyApplied(a) => replays.push(a),
        }
    }
    assert_eq!(first.len(), 1, "exactly one caller moves the money");
    assert_eq!(replays.len(), 19);
    for replay in &replays {
        assert_eq!(
            replay.entry, first[0].entry,
            "replays report the original entry"
        );
    }
    assert_eq!(assert_audit(&ledger, &user).await, usd("10.00"));
    assert!(ledger.was_applied(&key).await.unwrap());
}

#[tokio::test]
async fn a_failed_caller_condition_rolls_back_everything() {
    let table = TestTable::new().await;
    let ledger = table.ledger();
    let user = new_user();
    ledger.apply(credit(&user, "20.00")).await.unwrap();

    // The caller's item demands something that is not there.
    let guarded = TransactWriteItem::builder()
        .put(
            Put::builder()
                .table_name(&table.name)
                .item("pk", AttributeValue::S(format!("THING#{user}")))
                .item("sk", AttributeValue::S("THING".into()))
                .condition_expression("attribute_exists(pk)")
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .unwrap(),
        )
        .build();
    let key = OnceKey::new("test", format!("rollback-{user}"));
    let result = ledger
        .apply(debit(&user, "5.00").once(key.clone()).with_item(guarded))
        .await;
    assert!(
        matches!(result, Err(LedgerError::ConditionFailed { index: 0, .. })),
        "{result:?}"
    );

    assert_eq!(ledger.balance(&user).await.unwrap(), usd("20.00"));
    assert_eq!(
        ledger.audit(&user).await.unwrap().entries,
        1,
        "no entry written"
    );
    assert!(
        !ledger.was_applied(&key).await.unwrap(),
        "no marker written"
    );
    assert_audit(&ledger, &user).await;
}

#[tokio::test]
async fn a_short_debit_writes_nothing() {
    let table = TestTable::new().await;
    let ledger = table.ledger();
    let user = new_user();
    ledger.apply(credit(&user, "2.00")).await.unwrap();
    let result = ledger.apply(debit(&user, "2.01")).await;
    assert!(
        matches!(result, Err(LedgerError::InsufficientBalance { balance }) if balance == usd("2.00"))
    );
    assert_eq!(assert_audit(&ledger, &user).await, usd("2.00"));
    assert_eq!(ledger.audit(&user).await.unwrap().entries, 1);
}

#[tokio::test]
async fn overdraft_is_only_for_reversals_and_is_recorded_as_debt() {
    let table = TestTable::new().await;
    let ledger = table.ledger();
    let user = new_user();
    ledger.apply(credit(&user, "3.00")).await.unwrap();
    let reversal = Change::new(
        user.clone(),
        -usd("10.00"),
        EntryDetails::new(EntryKind::Reversal, "chargeback"),
    )
    .overdraft(Overdraft::Allow);
    let applied = ledger.apply(reversal).await.unwrap().into_applied();
    assert_eq!(applied.balance, usd("-7.00"));
    assert_eq!(applied.entry.balance_after, usd("-7.00"));
    // While in debt, spending is refused.
    assert!(matches!(
        ledger.apply(debit(&user, "0.01")).await,
        Err(LedgerError::InsufficientBalance { .. })
    ));
    assert_eq!(assert_audit(&ledger, &user).await, usd("-7.00"));
}

#[tokio::test]
async fn a_balance_change_costs_two_round_trips_and_a_read_one() {
    let table = TestTable::new().await;
    let ledger = table.ledger();
    let user = new_user();
    ledger.apply(credit(&user, "1.00")).await.unwrap();
    table.calls.reset();

    ledger.apply(credit(&user, "1.00")).await.unwrap();
    let calls = table.calls.snapshot();
    assert_eq!(calls.get("GetItem"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("TransactWriteItems"), Some(&1), "{calls:?}");
    assert_eq!(table.calls.total(), 2);

    table.calls.reset();
    assert_eq!(ledger.balance(&user).await.unwrap(), usd("2.00"));
    assert_eq!(table.calls.total(), 1);
}

#[tokio::test]
async fn history_pages_newest_first_without_gaps_or_duplicates() {
    let table = TestTable::new().await;
    let ledger = table.ledger();
    let user = new_user();
    for i in 1..=23 {
        ledger
            .apply(credit(&user, &format!("{i}.00")))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    for _ in 0..10 {
        let page = ledger.entries(&user, 5, cursor).await.unwrap();
        assert!(page.entries.len() <= 5);
        seen.extend(page.entries.iter().map(|e| e.seq));
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, (1..=23).rev().collect::<Vec<u64>>());
    // An opaque cursor survives the round trip through text.
    let first = ledger.entries(&user, 5, None).await.unwrap();
    let token = first.next.unwrap().encode();
    let second = ledger
        .entries(&user, 5, ledger::EntryCursor::decode(&token))
        .await
        .unwrap();
    assert_eq!(second.entries[0].seq, 18);
}

#[tokio::test]
async fn entries_record_audit_fields_exactly() {
    let table = TestTable::new().await;
    let ledger = table.ledger();
    let user = new_user();
    let change = Change::new(
        user.clone(),
        usd("0.10"),
        EntryDetails::new(EntryKind::AdminCredit, "goodwill").admin("admin-7", "outage credit"),
    );
    ledger.apply(change).await.unwrap();
    ledger.apply(credit(&user, "0.20")).await.unwrap();
    let page = ledger.entries(&user, 10, None).await.unwrap();
    let first = &page.entries[1];
    assert_eq!(first.admin_id.as_deref(), Some("admin-7"));
    assert_eq!(first.reason.as_deref(), Some("outage credit"));
    // 0.10 + 0.20 is exactly 0.30: no binary floating point anywhere.
    assert_eq!(page.entries[0].balance_after, usd("0.30"));
    assert_eq!(
        ledger.balance(&user).await.unwrap(),
        Usd::from_cents(30).unwrap()
    );
}
