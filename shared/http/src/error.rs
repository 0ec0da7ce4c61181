//! One error type for every handler, and the one place where domain errors
//! become the contract's status codes.

use billing::BillingError;
use ledger::LedgerError;
use serde_json::{Value, json};

/// An error response: status, user-safe message, optional machine code.
/// `cause` is for the log only and never reaches the body.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub code: Option<&'static str>,
    pub details: Option<Value>,
    pub cause: Option<String>,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>, code: &'static str) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            code: Some(code),
            details: None,
            cause: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, message, "invalid_input")
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(401, message, "unauthorized")
    }

    pub fn forbidden() -> ApiError {
        ApiError::new(403, "Forbidden", "forbidden")
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(404, format!("{what} not found"), "not_found")
    }

    pub fn internal(cause: impl Into<String>) -> ApiError {
        ApiError {
            cause: Some(cause.into()),
            ..ApiError::new(500, "Internal server error", "internal")
        }
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }

    pub fn body(&self) -> Value {
        let mut body = json!({ "error": self.message });
        if let Some(code) = self.code {
            body["code"] = json!(code);
        }
        if let Some(details) = &self.details {
            body["details"] = details.clone();
        }
        body
    }
}

impl From<BillingError> for ApiError {
    fn from(err: BillingError) -> ApiError {
        match err {
            BillingError::InvalidInput(message) => ApiError::bad_request(message),
            BillingError::RemovalExceedsBalance { balance } => {
                ApiError::new(400, "Insufficient balance", "insufficient_balance")
                    .with_details(json!({ "balance": balance }))
            }
            BillingError::InsufficientFunds { balance } => {
                ApiError::new(402, "Insufficient balance", "insufficient_balance")
                    .with_details(json!({ "balance": balance }))
            }
            BillingError::NotFound(what) => ApiError::not_found(what),
            BillingError::Conflict { message, code } => ApiError::new(409, message, code),
            BillingError::Upstream { service, transient } => ApiError {
                cause: Some(format!("{service} failed")),
                ..ApiError::new(
                    if transient { 503 } else { 502 },
                    format!("{service} is unavailable; nothing was changed, please retry"),
                    "upstream_unavailable",
                )
            },
            BillingError::IdempotencyKeyReused => ApiError::new(
                422,
                "Idempotency-Key was already used with a different request",
                "idempotency_key_reused",
            ),
            BillingError::IdempotencyInProgress => ApiError::new(
                409,
                "A request with this Idempotency-Key is still in progress",
                "idempotency_in_progress",
            ),
            BillingError::RateLimited {
                message,
                code,
                retry_after_secs,
            } => ApiError {
                retry_after: Some(retry_after_secs),
                ..ApiError::new(429, message, code)
            },
            BillingError::Ledger(err) => err.into(),
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(err: LedgerError) -> ApiError {
        match err {
            LedgerError::InsufficientBalance { balance } => {
                BillingError::InsufficientFunds { balance }.into()
            }
            LedgerError::Contended { .. }
            | LedgerError::Dynamo {
                transient: true, ..
            } => ApiError {
                cause: Some(err.to_string()),
                ..ApiError::new(
                    503,
                    "Service busy; nothing was changed, please retry",
                    "busy",
                )
            },
            LedgerError::OutcomeUnknown { .. } => ApiError {
                cause: Some(err.to_string()),
                ..ApiError::new(
                    503,
                    "The outcome is unknown: the change may have been applied. Retry with the same Idempotency-Key to find out; it will not be applied twice",
                    "outcome_unknown",
                )
            },
            LedgerError::ConditionFailed { .. } => ApiError {
                cause: Some(err.to_string()),
                ..ApiError::new(409, "Conflicting change; nothing was changed", "conflict")
            },
            other => ApiError::internal(other.to_string()),
        }
    }
}
