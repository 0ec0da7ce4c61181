/// What went wrong with a VirtFusion call, classified by what it means for a
/// token delivery (DESIGN.md, "External services" -> VirtFusion).
///
/// VirtFusion cannot look a credit up by our reference, so after a failed
/// `add_tokens` the only safe question is "did it surely *not* happen?":
///
/// | variant | applied? | what a caller does |
/// | --- | --- | --- |
/// | [`NotSent`](Self::NotSent) | surely not | retry later (bounded) |
/// | [`Rejected`](Self::Rejected) | surely not | retry later or fail; 404 on delete = already gone |
/// | [`Invalid`](Self::Invalid) | surely not (nothing sent) | fix the configuration or the input |
/// | [`Uncertain`](Self::Uncertain) | maybe | **never retry blindly**: `needs_review` |
/// | [`BadResponse`](Self::BadResponse) | yes, but unreadable | **never retry blindly**: `needs_review` |
///
/// Messages never contain the API token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VirtFusionError {
    /// The connection was never established (DNS failure, connection refused,
    /// connect timeout): the request surely did not reach VirtFusion, so it is
    /// safe to retry.
    #[error("VirtFusion could not be reached (request not sent)")]
    NotSent,
    /// VirtFusion answered 4xx: it refused the request, nothing was applied.
    #[error("VirtFusion rejected the request with status {status}")]
    Rejected { status: u16 },
    /// The request may have been received and applied: a timeout after it was
    /// sent, a connection lost mid-request, or a 5xx (or any other non-2xx,
    /// non-4xx status). Must not be retried blindly.
    #[error("VirtFusion outcome unknown (timeout or server error after the request was sent)")]
    Uncertain,
    /// VirtFusion answered 2xx but the body could not be read or parsed: the
    /// call was applied, but its result (e.g. the credit id) is unknown.
    #[error("VirtFusion answered with an unexpected response: {0}")]
    BadResponse(String),
    /// Nothing was sent because the client configuration or an argument is
    /// unusable (bad base URL, token not a valid header, empty user id, ...).
    #[error("VirtFusion request not sent: {0}")]
    Invalid(String),
}

impl VirtFusionError {
    /// True when VirtFusion surely did not apply the call ([`NotSent`](Self::NotSent),
    /// [`Rejected`](Self::Rejected), [`Invalid`](Self::Invalid)), so a token
    /// delivery may be retried later without risk of granting twice. False for
    /// [`Uncertain`](Self::Uncertain) and [`BadResponse`](Self::BadResponse).
    pub fn is_definitely_not_applied(&self) -> bool {
        match self {
            VirtFusionError::NotSent
            | VirtFusionError::Rejected { .. }
            | VirtFusionError::Invalid(_) => true,
            VirtFusionError::Uncertain | VirtFusionError::BadResponse(_) => false,
        }
    }
}

/// Why [`from_env`](crate::from_env) could not build a client.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Secret(#[from] billing_config::SecretError),
    #[error("VIRTFUSION_TIMEOUT_MS must be a whole number of milliseconds from 1 to 60000")]
    Timeout,
    #[error(transparent)]
    Client(#[from] VirtFusionError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sure_failures_are_retryable() {
        assert!(VirtFusionError::NotSent.is_definitely_not_applied());
        assert!(VirtFusionError::Rejected { status: 404 }.is_definitely_not_applied());
        assert!(VirtFusionError::Invalid("x".into()).is_definitely_not_applied());
        assert!(!VirtFusionError::Uncertain.is_definitely_not_applied());
        assert!(!VirtFusionError::BadResponse("x".into()).is_definitely_not_applied());
    }
}
