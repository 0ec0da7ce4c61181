//! Storage of won disputes: `DISPUTEWON#<captureId>` / `WON`, written when
//! PayPal reports that the merchant won the dispute of a capture (a
//! `CUSTOMER.DISPUTE.RESOLVED` webhook, or a `T1202` line of Transaction
//! Search), whether or not its reversal is known here yet. The reversal it
//! restores is claimed on it (`reversalId`) in the restoring transaction, so
//! one won dispute restores one reversal, once. The rules live in
//! [`crate::refunds`] (`restore_won`).

use super::attrs::{ItemReader, s};
use crate::BillingError;
use crate::orders::OrderRecord;
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use ledger::{Ledger, LedgerError};

pub const WON_SK: &str = "WON";

pub fn pk(capture_id: &str) -> String {
    format!("DISPUTEWON#{capture_id}")
}

/// A won dispute as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WonDispute {
    pub capture_id: String,
    /// PayPal's dispute id, or the `T1202` line's id when reconciliation found it.
    pub source: String,
    /// The reversal it restored (claimed in the restoring transaction).
    pub reversal_id: Option<String>,
}

/// Remembers that the dispute of `capture_id` was won. Writing it again is
/// harmless (the first record stays, with its claim).
pub async fn remember(
    ledger: &Ledger,
    capture_id: &str,
    order: &OrderRecord,
    source: &str,
) -> Result<(), BillingError> {
    let result = ledger
        .client()
        .put_item()
        .table_name(ledger.table())
        .item("pk", s(pk(capture_id)))
        .item("sk", s(WON_SK))
        .item("captureId", s(capture_id))
        .item("orderId", s(&order.order_id))
        .item("user", s(order.user.as_str()))
        .item("source", s(source))
        .item("createdAt", s(ledger::now_rfc3339()))
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

/// One consistent read of the won dispute of `capture_id`, if any.
pub async fn load(ledger: &Ledger, capture_id: &str) -> Result<Option<WonDispute>, BillingError> {
    let Some(item) = super::get_item(ledger, &pk(capture_id), WON_SK).await? else {
        return Ok(None);
    };
    let r = ItemReader::new(&item, "DISPUTEWON#?");
    Ok(Some(WonDispute {
        capture_id: capture_id.to_owned(),
        source: r.text("source").unwrap_or_default().to_owned(),
        reversal_id: r.text("reversalId").map(str::to_owned),
    }))
}

/// Claims the won dispute of `capture_id` for `reversal_id` (condition: it
/// exists and restored no other reversal).
pub fn claim_item(
    table: &str,
    capture_id: &str,
    reversal_id: &str,
) -> Result<TransactWriteItem, LedgerError> {
    let update = Update::builder()
        .table_name(table)
        .key("pk", s(pk(capture_id)))
        .key("sk", s(WON_SK))
        .update_expression("SET reversalId = :r, restoredAt = :now")
        .condition_expression(
            "attribute_exists(pk) AND (attribute_not_exists(reversalId) OR reversalId = :r)",
        )
        .expression_attribute_values(":r", s(reversal_id))
        .expression_attribute_values(":now", s(ledger::now_rfc3339()))
        .build()
        .map_err(|e| LedgerError::corrupt("won dispute", e.to_string()))?;
    Ok(TransactWriteItem::builder().update(update).build())
}
