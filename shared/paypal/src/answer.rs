//! Reading PayPal's error answers: the status and error body of a non-2xx
//! answer mapped to a [`PayPalError`], keeping only what is safe to log
//! (PayPal's error name, debug id and issue codes; never the body, which may
//! carry payer data).

use crate::PayPalError;
use reqwest::StatusCode;
use serde::Deserialize;

/// Maps a non-2xx answer to its error (2xx passes).
pub(crate) fn expect_success(
    operation: &'static str,
    status: StatusCode,
    body: &[u8],
) -> Result<(), PayPalError> {
    if status.is_success() {
        return Ok(());
    }
    let summary = ErrorSummary::read(body);
    let error = match status.as_u16() {
        404 => PayPalError::NotFound,
        422 if summary.has_issue("ORDER_NOT_APPROVED") => PayPalError::NotApproved,
        422 if summary.funding_decline().is_some() => PayPalError::FundingDeclined {
            issue: summary.funding_decline().unwrap_or_default().to_owned(),
        },
        409 if summary.has_issue("PREVIOUS_REQUEST_IN_PROGRESS") => PayPalError::RequestInProgress,
        401 => PayPalError::Auth,
        code @ 400..=499 => PayPalError::Rejected {
            status: code,
            issue: summary.issues.into_iter().next(),
        },
        code => PayPalError::Upstream { status: code },
    };
    // PayPal's error name, issue and debug id help support; the body itself
    // may carry payer data and is not logged.
    tracing::warn!(
        operation,
        status = status.as_u16(),
        name = summary.name.as_deref().unwrap_or(""),
        debug_id = summary.debug_id.as_deref().unwrap_or(""),
        outcome = %error,
        "PayPal call failed"
    );
    Err(error)
}

pub(crate) fn has_issue(body: &[u8], issue: &str) -> bool {
    ErrorSummary::read(body).has_issue(issue)
}

/// The parts of a PayPal error body that are safe to keep and log.
#[derive(Default)]
pub(crate) struct ErrorSummary {
    pub(crate) name: Option<String>,
    pub(crate) debug_id: Option<String>,
    pub(crate) issues: Vec<String>,
}

impl ErrorSummary {
    pub(crate) fn read(body: &[u8]) -> ErrorSummary {
        let Ok(wire) = serde_json::from_slice::<ErrorWire>(body) else {
            return ErrorSummary::default();
        };
        ErrorSummary {
            name: wire.name.filter(|n| is_code(n)),
            debug_id: wire.debug_id.filter(|d| is_code(d)),
            issues: wire
                .details
                .into_iter()
                .filter_map(|d| d.issue)
                .filter(|i| is_code(i))
                .take(8)
                .collect(),
        }
    }

    fn has_issue(&self, issue: &str) -> bool {
        self.issues.iter().any(|i| i == issue)
    }

    /// The capture issue that means "the buyer must pick another funding
    /// source" (Orders v2 `orders.capture-422`), if any.
    fn funding_decline(&self) -> Option<&str> {
        self.issues
            .iter()
            .map(String::as_str)
            .find(|issue| FUNDING_DECLINES.contains(issue))
    }
}

/// Capture 422 issues after which the buyer must approve again.
pub const FUNDING_DECLINES: [&str; 4] = [
    "INSTRUMENT_DECLINED",
    "PAYER_ACTION_REQUIRED",
    "REDIRECT_PAYER_FOR_ALTERNATE_FUNDING",
    "TRANSACTION_REFUSED",
];

/// PayPal's codes are short words of `A-Z a-z 0-9 _ -`; anything else is not
/// kept (it could be free text).
pub(crate) fn is_code(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[derive(Deserialize)]
struct ErrorWire {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    debug_id: Option<String>,
    #[serde(default)]
    details: Vec<ErrorDetailWire>,
}

#[derive(Deserialize)]
struct ErrorDetailWire {
    #[serde(default)]
    issue: Option<String>,
}
