/// What went wrong with a PayPal call, classified by what it means for money
/// (DESIGN.md, "External services" -> PayPal).
///
/// Unlike VirtFusion, PayPal de-duplicates by `PayPal-Request-Id`: repeating
/// a create, capture or refund with the *same* request id never applies it
/// twice, so "maybe applied" outcomes are safe to retry with that id.
///
/// | variant | applied? | what a caller does |
/// | --- | --- | --- |
/// | [`NotSent`](Self::NotSent) | surely not | retry (any id) |
/// | [`Timeout`](Self::Timeout) | maybe | retry with the **same** request id, or read the order |
/// | [`Upstream`](Self::Upstream) | maybe | retry with the **same** request id, or read the order |
/// | [`Rejected`](Self::Rejected) | no | report; 429 may be retried later |
/// | [`NotApproved`](Self::NotApproved) | no | the buyer has not approved the order yet |
/// | [`FundingDeclined`](Self::FundingDeclined) | no | the buyer must approve again (another funding source); use a new request id |
/// | [`RequestInProgress`](Self::RequestInProgress) | the first request with this id is being applied | wait, retry with the **same** request id |
/// | [`NotFound`](Self::NotFound) | no | unknown order / capture id |
/// | [`Auth`](Self::Auth) | no | fix the credentials |
/// | [`BadResponse`](Self::BadResponse) | 2xx: yes, result unreadable | read the order again |
/// | [`Invalid`](Self::Invalid) | surely not (nothing sent) | fix the input |
///
/// Messages never contain credentials, tokens or payer data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayPalError {
    /// The connection was never established (refused, DNS, connect timeout),
    /// or the OAuth token could not be fetched for lack of a connection: the
    /// call surely did not reach PayPal.
    #[error("PayPal could not be reached (request not sent)")]
    NotSent,
    /// No answer in time, or the connection was lost after the request was
    /// sent: the call may have been applied. Create, capture and refund are
    /// safe to retry with the same `PayPal-Request-Id`.
    #[error("PayPal did not answer in time (the request may have been applied)")]
    Timeout,
    /// PayPal refused the request with a 4xx other than the ones with their
    /// own variant; `issue` is PayPal's `details[0].issue` when there is one
    /// (e.g. `REFUND_AMOUNT_EXCEEDED`, `DUPLICATE_INVOICE_ID`).
    #[error("PayPal rejected the request with status {status} ({})", issue.as_deref().unwrap_or("no issue given"))]
    Rejected { status: u16, issue: Option<String> },
    /// 422 `ORDER_NOT_APPROVED`: the buyer has not approved the order.
    #[error("the PayPal order has not been approved by the buyer")]
    NotApproved,
    /// 422 on capture with `details[0].issue` `INSTRUMENT_DECLINED`,
    /// `PAYER_ACTION_REQUIRED`, `REDIRECT_PAYER_FOR_ALTERNATE_FUNDING` or
    /// `TRANSACTION_REFUSED`: nothing was captured; the buyer must approve
    /// the order again with another funding source. PayPal may replay this
    /// answer to the same `PayPal-Request-Id`, so the next capture needs a
    /// new one.
    #[error("PayPal declined the buyer's funding source ({issue})")]
    FundingDeclined { issue: String },
    /// 409 `PREVIOUS_REQUEST_IN_PROGRESS`: a simultaneous request with the
    /// same `PayPal-Request-Id` is still being processed. Retrying with the
    /// same id after a short wait gets the first request's answer.
    #[error("a previous PayPal request with this request id is still in progress")]
    RequestInProgress,
    /// 404: no such order, capture or refund.
    #[error("PayPal does not know this resource")]
    NotFound,
    /// PayPal answered 5xx (or another non-2xx, non-4xx status): the call
    /// may have been applied.
    #[error("PayPal answered with server error {status}")]
    Upstream { status: u16 },
    /// OAuth failed: the credentials were refused, or a fresh token was
    /// refused too.
    #[error("PayPal authentication failed")]
    Auth,
    /// PayPal answered 2xx but the body could not be read or is not what the
    /// API promises (missing field, non-USD-shaped amount, ...).
    #[error("PayPal answered with an unexpected response: {0}")]
    BadResponse(String),
    /// Nothing was sent: an argument is unusable (empty or odd id, request id
    /// that is not a header value, non-positive amount, ...).
    #[error("PayPal request not sent: {0}")]
    Invalid(String),
}

impl PayPalError {
    /// True when trying again later may succeed: [`NotSent`](Self::NotSent),
    /// [`Timeout`](Self::Timeout), [`Upstream`](Self::Upstream) and a 429
    /// [`Rejected`](Self::Rejected). Retries of create, capture and refund
    /// must reuse the same `PayPal-Request-Id`.
    pub fn is_transient(&self) -> bool {
        match self {
            PayPalError::NotSent
            | PayPalError::Timeout
            | PayPalError::Upstream { .. }
            | PayPalError::RequestInProgress => true,
            PayPalError::Rejected { status, .. } => *status == 429,
            PayPalError::NotApproved
            | PayPalError::FundingDeclined { .. }
            | PayPalError::NotFound
            | PayPalError::Auth
            | PayPalError::BadResponse(_)
            | PayPalError::Invalid(_) => false,
        }
    }

    /// True when PayPal surely did not apply the call.
    pub fn is_definitely_not_applied(&self) -> bool {
        match self {
            PayPalError::NotSent
            | PayPalError::Rejected { .. }
            | PayPalError::NotApproved
            | PayPalError::FundingDeclined { .. }
            | PayPalError::NotFound
            | PayPalError::Auth
            | PayPalError::Invalid(_) => true,
            PayPalError::Timeout
            | PayPalError::Upstream { .. }
            | PayPalError::RequestInProgress
            | PayPalError::BadResponse(_) => false,
        }
    }
}

/// Why [`from_env`](crate::from_env) or [`PayPalClient::new`](crate::PayPalClient::new)
/// could not build a client. Never repeats a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Secret(#[from] billing_config::SecretError),
    #[error("PAYPAL_BASE_URL {0}")]
    BaseUrl(&'static str),
    #[error("PAYPAL_TIMEOUT_MS must be a whole number of milliseconds from 1 to 60000")]
    Timeout,
    #[error("PayPal client id and secret must be non-empty")]
    Credentials,
    #[error("the HTTP client could not be built")]
    Http,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors() {
        assert!(PayPalError::NotSent.is_transient());
        assert!(PayPalError::Timeout.is_transient());
        assert!(PayPalError::Upstream { status: 503 }.is_transient());
        assert!(
            PayPalError::Rejected {
                status: 429,
                issue: None
            }
            .is_transient()
        );
        for e in [
            PayPalError::Rejected {
                status: 422,
                issue: Some("REFUND_AMOUNT_EXCEEDED".into()),
            },
            PayPalError::NotApproved,
            PayPalError::NotFound,
            PayPalError::Auth,
            PayPalError::BadResponse("x".into()),
            PayPalError::Invalid("x".into()),
        ] {
            assert!(!e.is_transient(), "{e:?}");
        }
    }

    #[test]
    fn maybe_applied_errors() {
        for e in [
            PayPalError::Timeout,
            PayPalError::Upstream { status: 500 },
            PayPalError::BadResponse("x".into()),
        ] {
            assert!(!e.is_definitely_not_applied(), "{e:?}");
        }
        assert!(PayPalError::NotSent.is_definitely_not_applied());
        assert!(PayPalError::NotApproved.is_definitely_not_applied());
    }

    #[test]
    fn rejected_message_names_the_issue() {
        let e = PayPalError::Rejected {
            status: 422,
            issue: Some("DUPLICATE_INVOICE_ID".into()),
        };
        assert_eq!(
            e.to_string(),
            "PayPal rejected the request with status 422 (DUPLICATE_INVOICE_ID)"
        );
    }
}
