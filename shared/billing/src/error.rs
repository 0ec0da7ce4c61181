use billing_money::Usd;
use ledger::LedgerError;

/// Everything a billing operation can refuse or fail with. The HTTP layer maps
/// each variant to the contract's status code in one `match`.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// Bad input: a 400 with this (user-safe) message.
    #[error("{0}")]
    InvalidInput(String),
    /// An admin tried to remove more than the balance (400 by contract).
    #[error("Insufficient balance")]
    RemovalExceedsBalance { balance: Usd },
    /// The user cannot pay (402).
    #[error("Insufficient balance")]
    InsufficientFunds { balance: Usd },
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request conflicts with the resource's state (409).
    #[error("{message}")]
    Conflict { message: String, code: &'static str },
    /// An upstream service failed; nothing was changed (502/503).
    #[error("{service} is unavailable")]
    Upstream {
        service: &'static str,
        transient: bool,
    },
    /// The `Idempotency-Key` was used before with a different request (422).
    #[error("Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    /// The first request with this `Idempotency-Key` is still running (409).
    #[error("A request with this Idempotency-Key is still in progress")]
    IdempotencyInProgress,
    /// A per-user limit ([`crate::limits`]): 429 with `Retry-After`.
    #[error("{message}")]
    RateLimited {
        message: String,
        code: &'static str,
        retry_after_secs: u64,
    },
    /// Our own storage failed or stayed contended (500/503).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}
