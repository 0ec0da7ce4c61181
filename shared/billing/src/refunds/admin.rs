//! `POST /api/admin/refunds`: an admin refunds a PayPal purchase, whole or
//! partial, under a required `Idempotency-Key`.
//!
//! The key is claimed *before* PayPal is called
//! ([`IdempotencyKey::claim`]), with the request's fingerprint and the
//! amount to refund, and PayPal's `PayPal-Request-Id` is derived from the
//! key alone ([`IdempotencyKey::request_id`]). So:
//!
//! - a retry after a lost answer (same key, same body) takes the claim over
//!   and sends the *same* refund call, with the same request id: PayPal
//!   answers the refund it made, which settles once (by refund id), even if
//!   a webhook recorded it meanwhile (the checks that ran before the first
//!   call are not run again);
//! - the same key with another body (an edited reason, amount or note) is
//!   422 and never reaches PayPal;
//! - a request with the key while the first is still running is 409.
//!
//! Refusals before the claim (not paid, nothing left, credits spent) store
//! nothing: the key stays free. An error after the claim lets it go but
//! keeps the record: the call may have been applied, so only the same body
//! may carry on with it.

use super::{Movement, RefundOutcome, RefundReport, RefundSource, apply_refund, conflict};
use crate::idempotency::{Claim, IdempotencyKey, StoredResponse};
use crate::orders::{OrderRecord, PaymentStatus, PurchaseKind};
use crate::store::attrs::{get_usd, usd};
use crate::{BillingError, Reason};
use billing_money::Usd;
use ledger::{AttrMap, Ledger};
use paypal::PayPalClient;
use serde_json::json;
use virtfusion::VirtFusionClient;

pub const MAX_NOTE_TO_PAYER: usize = 255;

/// The route of the `Idempotency-Key` fingerprint.
const ROUTE: &str = "admin-refunds";

/// The claim's field holding the amount sent to PayPal.
const AMOUNT_FIELD: &str = "refundAmount";

/// An admin's refund request (validated).
#[derive(Clone, Debug)]
pub struct AdminRefund {
    pub order_id: String,
    /// `None`: whatever remains of the capture.
    pub amount: Option<Usd>,
    pub reason: Reason,
    /// Shown to the buyer by PayPal (≤ 255 characters); the reason never is.
    pub note_to_payer: Option<String>,
    pub admin_id: String,
    pub force: bool,
}

impl AdminRefund {
    /// The admin's `Idempotency-Key` for this request: scoped to the admin,
    /// bound to the whole body (`10` and `"10.00"` are the same amount).
    pub fn key(&self, admin: &ledger::UserId, key: &str) -> IdempotencyKey {
        let canonical = format!(
            "{}|{}|{}|{}|{}",
            self.order_id,
            self.amount.map(|a| a.to_string()).unwrap_or_default(),
            self.reason.as_str(),
            self.force,
            self.note_to_payer.as_deref().unwrap_or_default()
        );
        IdempotencyKey::new(admin, key, ROUTE, &canonical)
    }
}

/// `POST /api/admin/refunds`: the response to send (fresh or replayed).
#[tracing::instrument(skip_all, fields(order_id = %request.order_id))]
pub async fn admin_refund(
    ledger: &Ledger,
    paypal: &PayPalClient,
    virtfusion: Option<&VirtFusionClient>,
    key: &IdempotencyKey,
    request: AdminRefund,
) -> Result<StoredResponse, BillingError> {
    if request
        .note_to_payer
        .as_deref()
        .is_some_and(|n| n.chars().count() > MAX_NOTE_TO_PAYER)
    {
        return Err(BillingError::InvalidInput(format!(
            "noteToPayer must be at most {MAX_NOTE_TO_PAYER} characters"
        )));
    }
    let order = crate::orders::load(ledger, &request.order_id)
        .await?
        .ok_or(BillingError::NotFound("Order"))?;
    let claim = match key.resume(ledger).await? {
        Some(claim) => claim,
        None => {
            let amount = refundable(ledger, &order, &request).await?;
            let fields = AttrMap::from([(AMOUNT_FIELD.to_owned(), usd(amount))]);
            key.claim(ledger, fields).await?
        }
    };
    let (token, record) = match claim {
        Claim::Replay(response) => return Ok(response),
        Claim::Held { token, record } => (token, record),
    };
    let settled = async {
        let amount = get_usd(&record, AMOUNT_FIELD)?;
        let outcome = refund(ledger, paypal, virtfusion, key, &order, request, amount).await?;
        let response = response(&outcome);
        key.complete(ledger, &response).await?;
        Ok(response)
    }
    .await;
    if settled.is_err()
        && let Err(e) = key.let_go(ledger, &token).await
    {
        // The lease runs out on its own.
        tracing::warn!(error = %e, "could not let the refund's key go");
    }
    settled
}

/// The amount a new refund request may take (checked before its key is
/// claimed: a refusal leaves the key free).
async fn refundable(
    ledger: &Ledger,
    order: &OrderRecord,
    request: &AdminRefund,
) -> Result<Usd, BillingError> {
    let (Some(_), Some(captured), PaymentStatus::Completed) =
        (&order.capture_id, order.captured_amount, order.status)
    else {
        return Err(conflict("Order has not been paid", "not_paid"));
    };
    let remaining = captured
        .checked_sub(order.refunded_amount)
        .map_err(|_| BillingError::InvalidInput("amount".into()))?;
    if !remaining.is_positive() {
        return Err(BillingError::InvalidInput(
            "Order is already fully refunded".into(),
        ));
    }
    let amount = request.amount.unwrap_or(remaining);
    if !amount.is_positive() {
        return Err(BillingError::InvalidInput(
            "amount must be more than 0.00".into(),
        ));
    }
    if amount > remaining {
        return Err(BillingError::InvalidInput(format!(
            "Refund exceeds the captured amount: at most {remaining} can be refunded"
        )));
    }
    if order.kind == PurchaseKind::Credits {
        let balance = ledger.balance(&order.user).await?;
        if balance < amount && !request.force {
            return Err(BillingError::Conflict {
                message: format!(
                    "Credits already spent: balance is {balance}; use \"force\": true to refund anyway and record the difference as debt"
                ),
                code: "credits_spent",
            });
        }
    }
    Ok(amount)
}

/// The refund call under the claimed key, and what PayPal answers applied.
async fn refund(
    ledger: &Ledger,
    paypal: &PayPalClient,
    virtfusion: Option<&VirtFusionClient>,
    key: &IdempotencyKey,
    order: &OrderRecord,
    request: AdminRefund,
    amount: Usd,
) -> Result<RefundOutcome, BillingError> {
    let Some(capture_id) = order.capture_id.as_deref() else {
        return Err(conflict("Order has not been paid", "not_paid"));
    };
    // Tokens: whatever the delivery does during the PayPal call, the
    // transition re-reads the order and conditions on what it saw.
    // The order is part of it: the same key reused on another order after its
    // record expired (48 h; PayPal keeps request ids longer) is a new refund.
    let request_id = format!("refund-{}-{}", order.order_id, key.request_id());
    let refund = paypal
        .refund_capture(
            capture_id,
            Some(amount),
            &request_id,
            request.note_to_payer.as_deref(),
        )
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "PayPal refund failed");
            BillingError::Upstream {
                service: "PayPal",
                transient: e.is_transient(),
            }
        })?;
    let Some(report) = RefundReport::from_paypal(&refund, Movement::Refund) else {
        tracing::error!(refund_id = %refund.id, status = refund.status.as_str(), "PayPal refund in an unknown state");
        return Err(BillingError::Upstream {
            service: "PayPal",
            transient: true,
        });
    };
    let source = RefundSource::Admin {
        admin_id: request.admin_id,
        reason: request.reason,
    };
    apply_refund(ledger, virtfusion, &order.order_id, &report, &source).await
}

fn response(outcome: &RefundOutcome) -> StoredResponse {
    let mut body = json!({
        "success": true,
        "refundId": outcome.refund_id,
        "orderId": outcome.order_id,
        "amount": outcome.amount,
        "status": outcome.status.as_str(),
    });
    if let Some(balance) = outcome.balance {
        body["balance"] = json!(balance);
    }
    if let Some(revoked) = outcome.tokens_revoked {
        body["tokensRevoked"] = json!(revoked);
    }
    if let Some(reason) = &outcome.review_reason {
        body["reviewReason"] = json!(reason);
    }
    StoredResponse { status: 200, body }
}
