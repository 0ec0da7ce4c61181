//! PayPal webhook events, after their signature was verified.
//!
//! Each handler is idempotent on its own key (the capture id credits once,
//! the refund id debits once) and state only moves forward, so duplicated,
//! concurrent and out-of-order deliveries end in the state in-order delivery
//! reaches. The event id is marked processed *after* the effect (a marker
//! that never expires), so a redelivery is answered without work, and a
//! failure midway lets PayPal's retry finish the job.

use crate::BillingError;
use crate::checkout::{self, pick_capture, settle};
use crate::orders::{OrderRecord, PaymentStatus};
use crate::refunds::Movement;
use crate::store::pointers::{capture_pointer, follow_pointer, purchase_pointer};
use aws_sdk_dynamodb::types::AttributeValue;
use ledger::{Ledger, LedgerError, OnceKey};
use paypal::{Capture, PayPalClient, WebhookEvent, WebhookResource};
use virtfusion::VirtFusionClient;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookOutcome {
    Processed,
    /// This event id was processed before.
    Duplicate,
    /// Not ours or not a type we act on.
    Ignored,
}

impl WebhookOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Processed => "processed",
            WebhookOutcome::Duplicate => "duplicate",
            WebhookOutcome::Ignored => "ignored",
        }
    }
}

#[tracing::instrument(skip_all, fields(event_id = %event.id, event_type = %event.event_type))]
pub async fn handle_event(
    ledger: &Ledger,
    paypal: &PayPalClient,
    virtfusion: Option<&VirtFusionClient>,
    event: &WebhookEvent,
) -> Result<WebhookOutcome, BillingError> {
    let marker = OnceKey::new("event", &event.id);
    if ledger.was_applied(&marker).await? {
        return Ok(WebhookOutcome::Duplicate);
    }
    let outcome = match (event.event_type.as_str(), &event.resource) {
        ("CHECKOUT.ORDER.APPROVED", WebhookResource::Order(order)) => {
            capture_abandoned(ledger, paypal, virtfusion, &order.id).await?
        }
        (
            "PAYMENT.CAPTURE.COMPLETED"
            | "PAYMENT.CAPTURE.PENDING"
            | "PAYMENT.CAPTURE.DENIED"
            | "PAYMENT.CAPTURE.DECLINED",
            WebhookResource::Capture(capture),
        ) => match find_order_of_capture(ledger, capture).await? {
            Some(order) => settled_or_declined(settle(ledger, virtfusion, &order, capture).await)?,
            None => WebhookOutcome::Ignored,
        },
        (
            "PAYMENT.CAPTURE.REFUNDED"
            | "PAYMENT.CAPTURE.REVERSED"
            | "PAYMENT.REFUND.PENDING"
            | "PAYMENT.REFUND.COMPLETED"
            | "PAYMENT.REFUND.FAILED"
            | "PAYMENT.REFUND.CANCELLED",
            WebhookResource::Refund(refund),
        ) => {
            let movement = if event.event_type == "PAYMENT.CAPTURE.REVERSED" {
                Movement::Reversal
            } else {
                Movement::Refund
            };
            match crate::after_webhook::refund_reported(
                ledger, paypal, virtfusion, refund, movement,
            )
            .await?
            {
                // Not matched to any order of ours: not marked processed, so
                // a redelivery is looked at again (reconciliation reports it).
                WebhookOutcome::Ignored => return Ok(WebhookOutcome::Ignored),
                outcome => outcome,
            }
        }
        ("CUSTOMER.DISPUTE.RESOLVED", WebhookResource::Dispute(dispute)) => {
            crate::after_webhook::dispute_resolved(ledger, paypal, virtfusion, dispute).await?
        }
        _ => WebhookOutcome::Ignored,
    };
    mark_processed(ledger, &marker, &event.event_type).await?;
    Ok(outcome)
}

/// A buyer approved but the client never captured: capture server-side,
/// with the same request id the capture route would use.
async fn capture_abandoned(
    ledger: &Ledger,
    paypal: &PayPalClient,
    virtfusion: Option<&VirtFusionClient>,
    order_id: &str,
) -> Result<WebhookOutcome, BillingError> {
    let Some(order) = crate::orders::load(ledger, order_id).await? else {
        return Ok(WebhookOutcome::Ignored);
    };
    if order.status != PaymentStatus::Created {
        return Ok(WebhookOutcome::Processed);
    }
    let paypal_order = match checkout::capture_at_paypal(
        paypal,
        order_id,
        &order.capture_request_id(),
    )
    .await
    {
        Ok(paypal_order) => paypal_order,
        Err(paypal::PayPalError::NotApproved) => return Ok(WebhookOutcome::Ignored),
        // The buyer must approve again (a new CHECKOUT.ORDER.APPROVED will
        // come); the next capture needs a fresh request id.
        Err(paypal::PayPalError::FundingDeclined { issue }) => {
            tracing::info!(order_id, issue = %issue, "capture declined; awaiting a new approval");
            checkout::next_capture_attempt(ledger, &order).await?;
            return Ok(WebhookOutcome::Ignored);
        }
        Err(e) => {
            return Err(BillingError::Upstream {
                service: "PayPal",
                transient: e.is_transient(),
            });
        }
    };
    match pick_capture(&paypal_order.captures) {
        Some(capture) => settled_or_declined(settle(ledger, virtfusion, &order, capture).await),
        None => Ok(WebhookOutcome::Ignored),
    }
}

async fn find_order_of_capture(
    ledger: &Ledger,
    capture: &Capture,
) -> Result<Option<OrderRecord>, BillingError> {
    if let Some(order_id) = &capture.order_id
        && let Some(order) = crate::orders::load(ledger, order_id).await?
    {
        return Ok(Some(order));
    }
    if let Some(order) = follow_pointer(ledger, &capture_pointer(&capture.id)).await? {
        return Ok(Some(order));
    }
    match &capture.invoice_id {
        Some(invoice) => follow_pointer(ledger, &purchase_pointer(invoice)).await,
        None => Ok(None),
    }
}

/// A declined payment is a fact to record, not a failure of the webhook.
pub(crate) fn settled_or_declined(
    result: Result<checkout::Settlement, BillingError>,
) -> Result<WebhookOutcome, BillingError> {
    match result {
        Ok(_) => Ok(WebhookOutcome::Processed),
        Err(BillingError::Conflict { code, .. }) => {
            tracing::info!(code, "webhook settled without credit");
            Ok(WebhookOutcome::Processed)
        }
        Err(e) => Err(e),
    }
}

async fn mark_processed(
    ledger: &Ledger,
    marker: &OnceKey,
    event_type: &str,
) -> Result<(), BillingError> {
    let result = ledger
        .client()
        .put_item()
        .table_name(ledger.table())
        .item("pk", AttributeValue::S(marker.pk()))
        .item("sk", AttributeValue::S("ONCE".into()))
        .item("eventType", AttributeValue::S(event_type.to_owned()))
        .item("createdAt", AttributeValue::S(ledger::now_rfc3339()))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
        {
            Ok(())
        }
        Err(err) => Err(LedgerError::dynamo("PutItem", &err).into()),
    }
}
