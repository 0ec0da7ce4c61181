//! Refunds of PayPal purchases, for both money systems, exactly once per
//! PayPal refund id — whether an admin asked for it here or PayPal reports
//! it by webhook (`PAYMENT.CAPTURE.REFUNDED` / `.REVERSED`).
//!
//! Policy:
//! - Several partial refunds may add up to the captured total; more is 400.
//! - Custom credits: the refunded amount is taken back from the balance. If
//!   the user already spent it, an admin refund is refused with 409 unless
//!   `force` is set; then the balance goes negative and is recorded as debt.
//!   A refund or reversal done at PayPal (webhook) is always recorded, as debt
//!   if need be: PayPal has already returned the money.
//! - VirtFusion tokens: refunded in full only (VirtFusion removes a credit
//!   whole); the credit is deleted from VirtFusion; tokens never delivered are
//!   simply no longer owed.

use crate::checkout::write_together;
use crate::orders::{Delivery, OrderRecord, OrderUpdate, PaymentStatus, PurchaseKind};
use crate::{BillingError, Reason};
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use billing_money::Usd;
use ledger::{Change, EntryDetails, EntryKind, Ledger, LedgerError, OnceKey, Overdraft};
use paypal::PayPalClient;
use virtfusion::VirtFusionClient;

/// Who asked for the refund.
#[derive(Clone, Debug)]
pub enum RefundSource {
    Admin {
        admin_id: String,
        reason: Reason,
    },
    /// Reported by PayPal; `reversal` for chargebacks.
    PayPal {
        reversal: bool,
    },
}

/// An admin's refund request (validated).
#[derive(Clone, Debug)]
pub struct AdminRefund {
    pub order_id: String,
    /// `None`: whatever remains of the capture.
    pub amount: Option<Usd>,
    pub reason: Reason,
    pub admin_id: String,
    pub force: bool,
    /// Derived from the caller's Idempotency-Key, if any: makes a retry after
    /// a lost answer reuse the PayPal-Request-Id (so PayPal refunds once).
    pub request_key: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundOutcome {
    pub refund_id: String,
    pub order_id: String,
    pub kind: PurchaseKind,
    pub amount: Usd,
    /// Custom credits: the balance after the refund.
    pub balance: Option<Usd>,
    /// Tokens: whether VirtFusion's credit was removed (or never delivered).
    pub tokens_revoked: Option<bool>,
    /// False when this refund id had been applied before (a replay).
    pub first_time: bool,
}

fn conflict(message: &str, code: &'static str) -> BillingError {
    BillingError::Conflict {
        message: message.into(),
        code,
    }
}

/// `POST /api/admin/refunds`.
pub async fn admin_refund(
    ledger: &Ledger,
    paypal: &PayPalClient,
    virtfusion: Option<&VirtFusionClient>,
    request: AdminRefund,
) -> Result<RefundOutcome, BillingError> {
    let order = crate::orders::load(ledger, &request.order_id)
        .await?
        .ok_or(BillingError::NotFound("Order"))?;
    let (Some(capture_id), Some(captured), PaymentStatus::Completed) = (
        order.capture_id.clone(),
        order.captured_amount,
        order.status,
    ) else {
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
    match order.kind {
        PurchaseKind::Credits => {
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
        PurchaseKind::Tokens => {
            if amount != captured {
                return Err(BillingError::InvalidInput(
                    "Token purchases can only be refunded in full".into(),
                ));
            }
            if matches!(
                order.delivery,
                Some(Delivery::Delivering | Delivery::NeedsReview)
            ) {
                return Err(conflict(
                    "Token delivery is unresolved; resolve it first",
                    "delivery_unresolved",
                ));
            }
        }
    }
    // Deterministic: a retried admin request (same order state, same amount)
    // reuses the id, so PayPal refunds once and returns the same refund.
    let request_id = match &request.request_key {
        Some(key) => format!("refund-{}-{key}", order.order_id),
        None => format!(
            "refund-{}-{}-{}",
            order.order_id,
            order.refunded_amount.cents(),
            amount.cents()
        ),
    };
    let partial = (amount != remaining).then_some(amount);
    let refund = paypal
        .refund_capture(
            &capture_id,
            partial.or(Some(amount)),
            &request_id,
            Some(request.reason.as_str()),
        )
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "PayPal refund failed");
            BillingError::Upstream {
                service: "PayPal",
                transient: e.is_transient(),
            }
        })?;
    let source = RefundSource::Admin {
        admin_id: request.admin_id,
        reason: request.reason,
    };
    apply_refund(
        ledger,
        virtfusion,
        &order.order_id,
        &refund.id,
        refund.amount,
        &source,
    )
    .await
}

/// Records a PayPal refund once (by refund id) and takes back what it paid for.
pub async fn apply_refund(
    ledger: &Ledger,
    virtfusion: Option<&VirtFusionClient>,
    order_id: &str,
    refund_id: &str,
    amount: Usd,
    source: &RefundSource,
) -> Result<RefundOutcome, BillingError> {
    let once = OnceKey::new("refund", refund_id);
    // Bounded: each round loses only to another refund of the same order.
    for _ in 0..8 {
        let order = crate::orders::load(ledger, order_id)
            .await?
            .ok_or(BillingError::NotFound("Order"))?;
        let refunded = order
            .refunded_amount
            .checked_add(amount)
            .map_err(|_| LedgerError::Overflow)?;
        let counted = OrderUpdate::new(order_id, "refundedAmount = :seen")
            .value(
                ":seen",
                AttributeValue::N(order.refunded_amount.to_string()),
            )
            .set("refundedAmount", AttributeValue::N(refunded.to_string()));
        let record = refund_record(ledger.table(), &order, refund_id, amount, source)?;
        let outcome = match order.kind {
            PurchaseKind::Credits => {
                credit_refund(
                    ledger, &order, refund_id, amount, source, &once, counted, record,
                )
                .await?
            }
            PurchaseKind::Tokens => {
                token_refund(
                    ledger, virtfusion, &order, refund_id, amount, &once, counted, record,
                )
                .await?
            }
        };
        if let Some(outcome) = outcome {
            return Ok(outcome);
        }
    }
    Err(BillingError::Ledger(LedgerError::Contended { attempts: 8 }))
}

#[allow(clippy::too_many_arguments)]
async fn credit_refund(
    ledger: &Ledger,
    order: &OrderRecord,
    refund_id: &str,
    amount: Usd,
    source: &RefundSource,
    once: &OnceKey,
    counted: OrderUpdate,
    record: TransactWriteItem,
) -> Result<Option<RefundOutcome>, BillingError> {
    let (kind, description) = match source {
        RefundSource::PayPal { reversal: true } => (
            EntryKind::Reversal,
            "PayPal payment reversed (chargeback)".to_owned(),
        ),
        RefundSource::PayPal { reversal: false } => {
            (EntryKind::Refund, "PayPal purchase refunded".to_owned())
        }
        RefundSource::Admin { reason, .. } => (
            EntryKind::Refund,
            format!("PayPal purchase refunded: {}", reason.as_str()),
        ),
    };
    let mut details = EntryDetails::new(kind, description).reference(&order.order_id);
    if let RefundSource::Admin { admin_id, reason } = source {
        details = details.admin(admin_id, reason.as_str());
    }
    // PayPal has returned the money already: the debit is recorded even into debt.
    let change = Change::new(order.user.clone(), -amount, details)
        .once(once.clone())
        .overdraft(Overdraft::Allow)
        .with_item(counted.item(ledger.table())?)
        .with_item(record);
    match ledger.apply(change).await {
        Ok(outcome) => {
            let first_time = outcome.is_first_time();
            let applied = outcome.into_applied();
            Ok(Some(RefundOutcome {
                refund_id: refund_id.to_owned(),
                order_id: order.order_id.clone(),
                kind: PurchaseKind::Credits,
                amount: -applied.entry.amount,
                balance: Some(applied.balance),
                tokens_revoked: None,
                first_time,
            }))
        }
        // Another refund of this order moved refundedAmount first: read again.
        Err(LedgerError::ConditionFailed { index: 0, .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn token_refund(
    ledger: &Ledger,
    virtfusion: Option<&VirtFusionClient>,
    order: &OrderRecord,
    refund_id: &str,
    amount: Usd,
    once: &OnceKey,
    counted: OrderUpdate,
    record: TransactWriteItem,
) -> Result<Option<RefundOutcome>, BillingError> {
    let now = ledger::now_rfc3339();
    let was_delivered = order.delivery == Some(Delivery::Delivered);
    // Tokens not yet delivered are simply no longer owed.
    let counted = counted
        .set_s("delivery", Delivery::Refunded.as_str())
        .remove("gsi1pk")
        .remove("gsi1sk");
    let items = vec![
        counted.item(ledger.table())?,
        once.marker_item(ledger.table(), &order.user, &now)?,
        record,
    ];
    if let Some(codes) = write_together(ledger, items).await? {
        if codes.get(1).map(String::as_str) == Some("ConditionalCheckFailed") {
            // Applied before: report it as it stands.
            return Ok(Some(RefundOutcome {
                refund_id: refund_id.to_owned(),
                order_id: order.order_id.clone(),
                kind: PurchaseKind::Tokens,
                amount,
                balance: None,
                tokens_revoked: None,
                first_time: false,
            }));
        }
        return Ok(None);
    }
    let revoked = match (was_delivered, order.credit_id, virtfusion) {
        (false, _, _) => true,
        (true, Some(credit_id), Some(client)) => {
            match client.remove_credit(virtfusion::CreditId(credit_id)).await {
                Ok(()) => true,
                // Already gone counts as taken back.
                Err(virtfusion::VirtFusionError::Rejected { status: 404 }) => true,
                Err(e) => {
                    tracing::error!(order_id = %order.order_id, error = %e, "VirtFusion credit not removed after refund; needs an admin");
                    false
                }
            }
        }
        _ => false,
    };
    OrderUpdate::new(&order.order_id, "attribute_exists(pk)")
        .set("tokensRevoked", AttributeValue::Bool(revoked))
        .run(ledger)
        .await?;
    Ok(Some(RefundOutcome {
        refund_id: refund_id.to_owned(),
        order_id: order.order_id.clone(),
        kind: PurchaseKind::Tokens,
        amount,
        balance: None,
        tokens_revoked: Some(revoked),
        first_time: true,
    }))
}

/// `REFUND#<refundId>`: what was refunded, by whom and why.
fn refund_record(
    table: &str,
    order: &OrderRecord,
    refund_id: &str,
    amount: Usd,
    source: &RefundSource,
) -> Result<TransactWriteItem, LedgerError> {
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let mut put = Put::builder()
        .table_name(table)
        .item("pk", s(&format!("REFUND#{refund_id}")))
        .item("sk", s("REFUND"))
        .item("orderId", s(&order.order_id))
        .item("user", s(order.user.as_str()))
        .item("kind", s(order.kind.as_str()))
        .item("amount", AttributeValue::N(amount.to_string()))
        .item("createdAt", s(&ledger::now_rfc3339()));
    put = match source {
        RefundSource::Admin { admin_id, reason } => put
            .item("source", s("admin"))
            .item("adminId", s(admin_id))
            .item("reason", s(reason.as_str())),
        RefundSource::PayPal { reversal } => put.item(
            "source",
            s(if *reversal {
                "paypal_reversal"
            } else {
                "paypal"
            }),
        ),
    };
    let put = put
        .build()
        .map_err(|e| LedgerError::corrupt("refund", e.to_string()))?;
    Ok(TransactWriteItem::builder().put(put).build())
}
