//! Webhook handlers for money that moves after the purchase: refunds (any
//! state), reversals and disputes the merchant won. Each finds the order the
//! capture belongs to — by our pointers, else by asking PayPal which order
//! the capture is part of (PayPal's `REVERSED` event carries no
//! `invoice_id`) — settles the order first if its capture was never recorded
//! here, then applies the movement through [`crate::refunds`]. A won
//! dispute is remembered and restores its reversal whichever report lands
//! first (`refunds::reversals`).

use crate::BillingError;
use crate::checkout::{pick_capture, settle};
use crate::orders::{OrderRecord, PaymentStatus};
use crate::refunds::{
    Movement, RefundOutcome, RefundReport, RefundSource, Restoration, apply_refund, dispute_won,
    restore_won,
};
use crate::store::pointers::{capture_pointer, follow_pointer, purchase_pointer};
use crate::webhook::{WebhookOutcome, settled_or_declined};
use ledger::Ledger;
use paypal::{Dispute, PayPalClient, PayPalError, Refund};
use virtfusion::VirtFusionClient;

fn paypal_down(e: PayPalError) -> BillingError {
    tracing::warn!(error = %e, "PayPal lookup failed; the webhook will be redelivered");
    BillingError::Upstream {
        service: "PayPal",
        transient: true,
    }
}

/// The order of a capture: our pointers first, then PayPal's record of the
/// capture. `None`: not an order of ours. An unreachable PayPal is an error
/// (5xx), so PayPal redelivers rather than the event being dropped.
pub async fn order_of_capture(
    ledger: &Ledger,
    paypal: &PayPalClient,
    capture_id: Option<&str>,
    invoice_id: Option<&str>,
) -> Result<Option<OrderRecord>, BillingError> {
    if let Some(capture_id) = capture_id
        && let Some(order) = follow_pointer(ledger, &capture_pointer(capture_id)).await?
    {
        return Ok(Some(order));
    }
    if let Some(invoice) = invoice_id
        && let Some(order) = follow_pointer(ledger, &purchase_pointer(invoice)).await?
    {
        return Ok(Some(order));
    }
    let Some(capture_id) = capture_id else {
        return Ok(None);
    };
    let capture = match paypal.get_capture(capture_id).await {
        Ok(capture) => capture,
        Err(PayPalError::NotFound) => return Ok(None),
        Err(e) => return Err(paypal_down(e)),
    };
    if let Some(order_id) = &capture.order_id
        && let Some(order) = crate::orders::load(ledger, order_id).await?
    {
        return Ok(Some(order));
    }
    match &capture.invoice_id {
        Some(invoice) => follow_pointer(ledger, &purchase_pointer(invoice)).await,
        None => Ok(None),
    }
}

/// An order whose capture was never recorded here (the capture call died
/// after PayPal captured) is settled from PayPal's view first, so a refund
/// or reversal never arrives before the purchase it undoes.
async fn ensure_settled(
    ledger: &Ledger,
    paypal: &PayPalClient,
    virtfusion: Option<&VirtFusionClient>,
    order: OrderRecord,
) -> Result<OrderRecord, BillingError> {
    if order.status == PaymentStatus::Completed {
        return Ok(order);
    }
    let paypal_order = paypal
        .get_order(&order.order_id)
        .await
        .map_err(paypal_down)?;
    if let Some(capture) = pick_capture(&paypal_order.captures) {
        settled_or_declined(settle(ledger, virtfusion, &order, capture).await)?;
    }
    let order = crate::orders::load(ledger, &order.order_id)
        .await?
        .ok_or(BillingError::NotFound("Order"))?;
    if order.status != PaymentStatus::Completed {
        // Not settled yet at PayPal either: let PayPal redeliver later.
        return Err(BillingError::Conflict {
            message: "Payment not settled yet".into(),
            code: "payment_not_completed",
        });
    }
    Ok(order)
}

/// What one refund or reversal report did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reported {
    pub outcome: RefundOutcome,
    /// A reversal whose dispute was won before it landed: restored at once.
    pub restoration: Option<Restoration>,
}

impl Reported {
    /// Whether this report moved anything (not a replay).
    pub fn moved(&self) -> bool {
        self.outcome.first_time || self.restoration == Some(Restoration::Restored)
    }
}

/// `PAYMENT.CAPTURE.REFUNDED`, `PAYMENT.CAPTURE.REVERSED` and
/// `PAYMENT.REFUND.*`: the refund resource's own status decides.
#[tracing::instrument(skip_all, fields(refund_id = %refund.id, movement = movement.as_str()))]
pub async fn refund_reported(
    ledger: &Ledger,
    paypal: &PayPalClient,
    virtfusion: Option<&VirtFusionClient>,
    refund: &Refund,
    movement: Movement,
) -> Result<WebhookOutcome, BillingError> {
    match report_refund(ledger, paypal, virtfusion, refund, movement).await {
        Ok(Some(_)) => Ok(WebhookOutcome::Processed),
        Ok(None) => Ok(WebhookOutcome::Ignored),
        // Refused for good (another currency): a fact, logged; redelivery cannot change it.
        Err(BillingError::Conflict {
            code: "currency_mismatch",
            ..
        }) => Ok(WebhookOutcome::Processed),
        Err(e) => Err(e),
    }
}

/// [`refund_reported`] with what it did (reconciliation counts what it
/// healed). `None`: a status we do not act on, or no order of ours.
pub async fn report_refund(
    ledger: &Ledger,
    paypal: &PayPalClient,
    virtfusion: Option<&VirtFusionClient>,
    refund: &Refund,
    movement: Movement,
) -> Result<Option<Reported>, BillingError> {
    let Some(report) = RefundReport::from_paypal(refund, movement) else {
        tracing::warn!(
            status = refund.status.as_str(),
            "refund in a state we do not act on"
        );
        return Ok(None);
    };
    let Some(order) = order_of_capture(
        ledger,
        paypal,
        refund.capture_id.as_deref(),
        refund.invoice_id.as_deref(),
    )
    .await?
    else {
        tracing::warn!("refund for a capture of no order of ours; not applied");
        return Ok(None);
    };
    let order = ensure_settled(ledger, paypal, virtfusion, order).await?;
    let outcome = apply_refund(
        ledger,
        virtfusion,
        &order.order_id,
        &report,
        &RefundSource::PayPal,
    )
    .await?;
    // A reversal looks for a won dispute of its capture after it is applied
    // (the dispute's report may have come first): see `refunds::reversals`.
    let capture_id = refund.capture_id.as_deref().or(order.capture_id.as_deref());
    let restoration = match (movement, capture_id) {
        (Movement::Reversal, Some(capture_id)) => {
            Some(restore_won(ledger, &order.order_id, capture_id).await?)
        }
        _ => None,
    };
    Ok(Some(Reported {
        outcome,
        restoration,
    }))
}

/// `CUSTOMER.DISPUTE.RESOLVED`: when the merchant won (or the buyer
/// cancelled), PayPal returned the reversed money: each disputed capture's
/// win is remembered and its reversal restored, once — now if the reversal
/// is here, else when it lands.
#[tracing::instrument(skip_all)]
pub async fn dispute_resolved(
    ledger: &Ledger,
    paypal: &PayPalClient,
    virtfusion: Option<&VirtFusionClient>,
    dispute: &Dispute,
) -> Result<WebhookOutcome, BillingError> {
    if !dispute.merchant_won() {
        // Lost: the reversal already took back what the payment bought.
        return Ok(WebhookOutcome::Processed);
    }
    let source = dispute.id.as_deref().unwrap_or("CUSTOMER.DISPUTE.RESOLVED");
    let chargeback = dispute.is_chargeback();
    for capture_id in dispute.capture_ids.iter().take(10) {
        let restoration =
            capture_dispute_won(ledger, paypal, virtfusion, capture_id, source, chargeback).await?;
        tracing::info!(capture_id = %capture_id, ?restoration, "dispute won");
    }
    Ok(WebhookOutcome::Processed)
}

/// The dispute of `capture_id` was won (a webhook, or reconciliation's
/// `T1202` line named `source`): its order found (settled first if need be),
/// the win remembered (a chargeback's; see [`dispute_won`]), the reversal
/// restored if it is here. `None`: the capture is no order of ours.
pub async fn capture_dispute_won(
    ledger: &Ledger,
    paypal: &PayPalClient,
    virtfusion: Option<&VirtFusionClient>,
    capture_id: &str,
    source: &str,
    chargeback: bool,
) -> Result<Option<Restoration>, BillingError> {
    let Some(order) = order_of_capture(ledger, paypal, Some(capture_id), None).await? else {
        return Ok(None);
    };
    let order = ensure_settled(ledger, paypal, virtfusion, order).await?;
    dispute_won(ledger, &order, capture_id, source, chargeback)
        .await
        .map(Some)
}
