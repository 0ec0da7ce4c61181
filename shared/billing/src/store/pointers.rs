//! Pointers to an order, `{pk, sk: "POINTER", orderId}`: how refunds,
//! webhooks and reconciliation find an order by PayPal's capture id or by
//! our purchase id (PayPal's `invoice_id`).

use super::attrs::s;
use crate::BillingError;
use crate::orders::OrderRecord;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use ledger::{Ledger, LedgerError};

pub const POINTER_SK: &str = "POINTER";

/// `CAPTURE#<captureId>` → order id: how refunds and webhooks find an order.
pub fn capture_pointer(capture_id: &str) -> String {
    format!("CAPTURE#{capture_id}")
}

/// `PURCHASE#<purchaseId>` (PayPal `invoice_id`) → order id.
pub fn purchase_pointer(purchase_id: &str) -> String {
    format!("PURCHASE#{purchase_id}")
}

/// A pointer item `{pk, sk: "POINTER", orderId}`; rewriting the same pointer is harmless.
pub(crate) fn pointer_item(
    table: &str,
    pk: &str,
    order_id: &str,
) -> Result<TransactWriteItem, LedgerError> {
    let put = Put::builder()
        .table_name(table)
        .item("pk", s(pk))
        .item("sk", s(POINTER_SK))
        .item("orderId", s(order_id))
        .condition_expression("attribute_not_exists(pk) OR orderId = :order")
        .expression_attribute_values(":order", s(order_id))
        .build()
        .map_err(|e| LedgerError::corrupt(pk, e.to_string()))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// The order a pointer names, if any.
pub async fn follow_pointer(
    ledger: &Ledger,
    pk: &str,
) -> Result<Option<OrderRecord>, BillingError> {
    let item = super::get_item(ledger, pk, POINTER_SK).await?;
    match item.as_ref().and_then(|i| i.get("orderId")) {
        Some(aws_sdk_dynamodb::types::AttributeValue::S(order_id)) => {
            super::orders::load(ledger, order_id).await
        }
        _ => Ok(None),
    }
}
