//! Reads an account's whole history back and checks the chain invariants.

use crate::item::{AccountState, Entry};
use crate::keys::{ENTRY_SK_PREFIX, UserId};
use crate::{Ledger, LedgerError};
use aws_sdk_dynamodb::types::AttributeValue;
use billing_money::Usd;

/// What an audit found. `problems` is empty for a sound account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditReport {
    pub entries: u64,
    pub balance: Usd,
    pub sum_of_amounts: Usd,
    pub problems: Vec<String>,
}

impl AuditReport {
    pub fn is_sound(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Pure check of the chain: entries numbered 1..n in order, each
/// `balanceAfter = balanceBefore + amount`, each `balanceBefore` the previous
/// `balanceAfter`, and the account equal to the last entry and to the sum.
pub(crate) fn check_chain(account: AccountState, entries: &[Entry]) -> AuditReport {
    let mut problems = Vec::new();
    let mut running = Usd::ZERO;
    let mut sum = Usd::ZERO;
    for (index, entry) in entries.iter().enumerate() {
        let expected_seq = index as u64 + 1;
        if entry.seq != expected_seq {
            problems.push(format!(
                "entry {} found where {expected_seq} was expected",
                entry.seq
            ));
        }
        if entry.balance_before != running {
            problems.push(format!(
                "entry {}: balanceBefore {} but previous balanceAfter {running}",
                entry.seq, entry.balance_before
            ));
        }
        match entry.balance_before.checked_add(entry.amount) {
            Ok(after) if after == entry.balance_after => {}
            _ => problems.push(format!(
                "entry {}: {} + {} != {}",
                entry.seq, entry.balance_before, entry.amount, entry.balance_after
            )),
        }
        sum = sum.checked_add(entry.amount).unwrap_or(sum);
        running = entry.balance_after;
    }
    if account.seq != entries.len() as u64 {
        problems.push(format!(
            "account seq {} but {} entries",
            account.seq,
            entries.len()
        ));
    }
    if account.balance != running {
        problems.push(format!(
            "account balance {} but last balanceAfter {running}",
            account.balance
        ));
    }
    if account.balance != sum {
        problems.push(format!(
            "account balance {} but entries sum to {sum}",
            account.balance
        ));
    }
    AuditReport {
        entries: entries.len() as u64,
        balance: account.balance,
        sum_of_amounts: sum,
        problems,
    }
}

impl Ledger {
    /// Reads every entry of `user` (oldest first, paged) and checks the chain.
    pub async fn audit(&self, user: &UserId) -> Result<AuditReport, LedgerError> {
        let account = self.read_account(user).await?;
        let mut entries = Vec::new();
        let mut start = None;
        // Bounded: one page per 1 MB of entries; an account with more than
        // 100k pages is not something an audit in one call should attempt.
        for _ in 0..100_000 {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", AttributeValue::S(user.pk()))
                .expression_attribute_values(":prefix", AttributeValue::S(ENTRY_SK_PREFIX.into()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| LedgerError::dynamo("Query", &e))?;
            for item in out.items() {
                entries.push(Entry::from_item(item)?);
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        Ok(check_chain(account, &entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::EntryKind;

    fn entry(seq: u64, before: i64, amount: i64, after: i64) -> Entry {
        Entry {
            seq,
            kind: EntryKind::AdminCredit,
            amount: Usd::from_cents(amount).unwrap(),
            balance_before: Usd::from_cents(before).unwrap(),
            balance_after: Usd::from_cents(after).unwrap(),
            description: String::new(),
            created_at: String::new(),
            mutation_id: String::new(),
            admin_id: None,
            reason: None,
            reference: None,
            service: None,
        }
    }

    fn account(balance: i64, seq: u64) -> AccountState {
        AccountState {
            balance: Usd::from_cents(balance).unwrap(),
            seq,
        }
    }

    #[test]
    fn sound_chain_passes() {
        let entries = [entry(1, 0, 500, 500), entry(2, 500, -200, 300)];
        assert!(check_chain(account(300, 2), &entries).is_sound());
    }

    #[test]
    fn each_kind_of_break_is_found() {
        let gap = [entry(1, 0, 500, 500), entry(3, 500, -200, 300)];
        assert!(!check_chain(account(300, 2), &gap).is_sound());
        let bad_math = [entry(1, 0, 500, 400)];
        assert!(!check_chain(account(400, 1), &bad_math).is_sound());
        let broken_link = [entry(1, 0, 500, 500), entry(2, 400, -100, 300)];
        assert!(!check_chain(account(300, 2), &broken_link).is_sound());
        let wrong_balance = [entry(1, 0, 500, 500)];
        assert!(!check_chain(account(600, 1), &wrong_balance).is_sound());
    }
}
