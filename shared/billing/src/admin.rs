//! Admin changes to a user's custom credits: always with a reason, always
//! audited with the admin's id, never below zero.

use crate::idempotency::{IdempotencyKey, StoredResponse, apply_with_key};
use crate::{BillingError, Reason};
use billing_money::Usd;
use ledger::{Change, EntryDetails, EntryKind, Ledger, LedgerError, UserId};
use serde_json::json;

/// Largest single admin change.
pub const MAX_ADMIN_AMOUNT_CENTS: i64 = 10_000_000; // $100,000.00

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Add,
    Remove,
}

/// A validated admin change request.
#[derive(Clone, Debug)]
pub struct AdminChange {
    pub target: UserId,
    pub admin_id: String,
    pub amount: Usd,
    pub reason: Reason,
    pub direction: Direction,
}

/// Admin amounts: more than zero, at most $100,000.00, two places at most
/// (the two places are guaranteed by `Usd` itself).
pub fn admin_amount(amount: Usd) -> Result<Usd, BillingError> {
    let max = Usd::from_cents(MAX_ADMIN_AMOUNT_CENTS)
        .map_err(|_| BillingError::InvalidInput("amount".into()))?;
    if !amount.is_positive() || amount > max {
        return Err(BillingError::InvalidInput(format!(
            "amount must be more than 0.00 and at most {max}"
        )));
    }
    Ok(amount)
}

impl AdminChange {
    /// The ledger change this request makes (callers may add items to it,
    /// e.g. an idempotency record).
    pub fn to_ledger_change(&self) -> Change {
        let (signed, kind, verb) = match self.direction {
            Direction::Add => (self.amount, EntryKind::AdminCredit, "added"),
            Direction::Remove => (-self.amount, EntryKind::AdminDebit, "removed"),
        };
        let details = EntryDetails::new(
            kind,
            format!("Credits {verb} by admin: {}", self.reason.as_str()),
        )
        .admin(&self.admin_id, self.reason.as_str());
        Change::new(self.target.clone(), signed, details)
    }
}

impl AdminChange {
    /// The request in canonical form, for the idempotency fingerprint.
    pub fn canonical(&self) -> String {
        format!(
            "{:?}|{}|{}|{}",
            self.direction,
            self.target,
            self.amount,
            self.reason.as_str()
        )
    }
}

/// Applies an admin change (under an optional `Idempotency-Key`) and returns
/// the contract's response: `{"success": true, "balance": "17.50"}`.
#[tracing::instrument(skip_all, fields(user = %change.target, admin = %change.admin_id, amount = %change.amount, keyed = key.is_some()))]
pub async fn apply(
    ledger: &Ledger,
    change: &AdminChange,
    key: Option<&IdempotencyKey>,
) -> Result<StoredResponse, BillingError> {
    let direction = change.direction;
    apply_with_key(
        ledger,
        change.to_ledger_change(),
        key,
        |preview| StoredResponse {
            status: 200,
            body: json!({ "success": true, "balance": preview.balance_after }),
        },
        move |err| match err {
            LedgerError::InsufficientBalance { balance } if direction == Direction::Remove => {
                BillingError::RemovalExceedsBalance { balance }
            }
            other => other.into(),
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_amounts_are_bounded() {
        assert!(admin_amount("0".parse().unwrap()).is_err());
        assert!(admin_amount("-1".parse().unwrap()).is_err());
        assert!(admin_amount("100000.01".parse().unwrap()).is_err());
        assert!(admin_amount("100000.00".parse().unwrap()).is_ok());
        assert!(admin_amount("0.01".parse().unwrap()).is_ok());
    }
}
