use crate::AttrMap;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use billing_money::Usd;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A debit would take the balance below zero; nothing was written.
    #[error("insufficient balance")]
    InsufficientBalance { balance: Usd },
    /// One of the caller's own transaction items failed its condition;
    /// nothing was written. `index` is the position in [`crate::Change::extra`],
    /// `existing` the item as it was (when there was one).
    #[error("condition on transaction item {index} failed")]
    ConditionFailed {
        index: usize,
        existing: Option<Box<AttrMap>>,
    },
    /// The account kept changing under us for the whole retry budget.
    #[error("account is busy; retry budget of {attempts} attempts exhausted")]
    Contended { attempts: u32 },
    /// DynamoDB refused or failed the call (after the SDK's own retries).
    #[error("dynamodb {operation} failed: {message}")]
    Dynamo {
        operation: &'static str,
        message: String,
        /// Throttling / 5xx / timeouts: worth a retry later (503), not our bug.
        transient: bool,
    },
    /// A write's answer was lost and the reads that would tell whether it
    /// committed failed too: the change may or may not have been applied
    /// (503 `outcome_unknown`; retry with the same Idempotency-Key).
    #[error("outcome unknown: {cause}")]
    OutcomeUnknown { cause: String },
    /// An item did not have the shape the ledger writes.
    #[error("malformed ledger item {key}: {problem}")]
    Corrupt { key: String, problem: String },
    #[error("amount overflow")]
    Overflow,
}

impl LedgerError {
    pub fn dynamo<E>(operation: &'static str, err: &SdkError<E, HttpResponse>) -> LedgerError
    where
        E: std::error::Error + ProvideErrorMetadata + 'static,
    {
        let (message, transient) = match err {
            SdkError::ServiceError(service) => {
                let inner = service.err();
                let code = inner.code().unwrap_or("Unknown");
                let transient = matches!(
                    code,
                    "ThrottlingException"
                        | "ProvisionedThroughputExceededException"
                        | "RequestLimitExceeded"
                        | "InternalServerError"
                        | "ServiceUnavailable"
                        | "TransactionInProgressException"
                ) || service.raw().status().is_server_error();
                (
                    format!("{code}: {}", inner.message().unwrap_or("")),
                    transient,
                )
            }
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => (DisplayErrorContext(err).to_string(), true),
            other => (DisplayErrorContext(other).to_string(), false),
        };
        LedgerError::Dynamo {
            operation,
            message,
            transient,
        }
    }

    pub fn corrupt(key: impl Into<String>, problem: impl Into<String>) -> LedgerError {
        LedgerError::Corrupt {
            key: key.into(),
            problem: problem.into(),
        }
    }
}
