//! Admin changes to a user's custom credits: always with a reason, always
//! audited with the admin's id, never below zero.

use crate::{BillingError, Reason};
use billing_money::Usd;
use ledger::{Change, EntryDetails, EntryKind, Ledger, LedgerError, UserId};

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
    let max = Usd::from_cents(MAX_ADMIN_AMOUNT_CENTS).map_err(|_| BillingError::InvalidInput("amount".into()))?;
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
        let details = EntryDetails::new(kind, format!("Credits {verb} by admin: {}", self.reason.as_str()))
            .admin(&self.admin_id, self.reason.as_str());
        Change::new(self.target.clone(), signed, details)
    }
}

/// Applies an admin change; returns the new balance.
pub async fn apply(ledger: &Ledger, change: Change, direction: Direction) -> Result<Usd, BillingError> {
    match ledger.apply(change).await {
        Ok(outcome) => Ok(outcome.into_applied().balance),
        Err(LedgerError::InsufficientBalance { balance }) if direction == Direction::Remove => {
            Err(BillingError::RemovalExceedsBalance { balance })
        }
        Err(e) => Err(e.into()),
    }
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
