//! The two balances a user sees, read concurrently.

use crate::BillingError;
use billing_money::{TokenBalance, Usd};
use ledger::{Ledger, UserId};
use std::future::Future;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalanceView {
    pub credits: Usd,
    /// `None` when VirtFusion could not be reached: the custom credits are
    /// still answered (the contract's `available: false`). Exact, possibly
    /// fractional (VirtFusion's hourly billing).
    pub tokens: Option<TokenBalance>,
}

/// Reads the ledger balance (one `GetItem`) while `tokens` fetches the
/// VirtFusion balance; a VirtFusion failure is not an error.
#[tracing::instrument(skip_all)]
pub async fn balance_view<F>(
    ledger: &Ledger,
    user: &UserId,
    tokens: F,
) -> Result<BalanceView, BillingError>
where
    F: Future<Output = Option<TokenBalance>>,
{
    let (credits, tokens) = tokio::join!(ledger.balance(user), tokens);
    Ok(BalanceView {
        credits: credits?,
        tokens,
    })
}
