//! Property test: random sequences of ledger operations against DynamoDB
//! Local agree with a simple in-memory model and keep the chain sound.

use integration_tests::{TestTable, new_user};
use ledger::{Change, ChangeOutcome, EntryDetails, EntryKind, LedgerError, OnceKey, Usd};
use proptest::prelude::*;
use std::collections::HashSet;

#[derive(Clone, Debug)]
enum Op {
    Credit(i64),
    Debit(i64),
    /// A credit guarded by one of a few once-keys (so keys repeat).
    OnceCredit(u8, i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1i64..50_000).prop_map(Op::Credit),
        (1i64..50_000).prop_map(Op::Debit),
        (0u8..4, 1i64..10_000).prop_map(|(k, c)| Op::OnceCredit(k, c)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    #[test]
    fn random_operations_match_the_model(ops in prop::collection::vec(op(), 1..25)) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let table = TestTable::new().await;
            let ledger = table.ledger();
            let user = new_user();
            let mut model: i64 = 0;
            let mut used_keys = HashSet::new();
            for op in &ops {
                let details = EntryDetails::new(EntryKind::AdminCredit, "prop");
                match *op {
                    Op::Credit(c) => {
                        ledger.apply(Change::new(user.clone(), Usd::from_cents(c).unwrap(), details)).await.unwrap();
                        model += c;
                    }
                    Op::Debit(c) => {
                        let change = Change::new(user.clone(), -Usd::from_cents(c).unwrap(), details);
                        match ledger.apply(change).await {
                            Ok(_) => { assert!(model >= c); model -= c; }
                            Err(LedgerError::InsufficientBalance { .. }) => assert!(model < c),
                            Err(e) => panic!("{e}"),
                        }
                    }
                    Op::OnceCredit(key, c) => {
                        let once = OnceKey::new("prop", format!("{user}-{key}"));
                        let change = Change::new(user.clone(), Usd::from_cents(c).unwrap(), details).once(once);
                        match ledger.apply(change).await.unwrap() {
                            ChangeOutcome::Applied(_) => { assert!(used_keys.insert(key)); model += c; }
                            ChangeOutcome::AlreadyApplied(_) => assert!(used_keys.contains(&key)),
                        }
                    }
                }
            }
            let report = ledger.audit(&user).await.unwrap();
            assert!(report.is_sound(), "{:?}", report.problems);
            assert_eq!(report.balance.cents(), model);
        });
    }
}
