//! Billing's storage layer: how its items look in the one DynamoDB table and
//! the reads and conditional writes that move them. The rule modules
//! (`checkout`, `refunds`, `webhook`, `deliveries`, `admin_tokens`, …) decide
//! *what* to write; this module knows *how* it is written:
//!
//! - [`attrs`]: attribute-map helpers (`s`, `n`, `usd`, typed getters, the
//!   [`attrs::ItemReader`] of optional fields) shared by every item mapping;
//! - [`orders`]: the `ORDER#<id>` item, its conditional update builder
//!   ([`orders::OrderUpdate`]) and index keys;
//! - [`pointers`]: `CAPTURE#` / `PURCHASE#` pointers to an order;
//! - [`refunds`]: the `REFUND#<id>` record and its transitions;
//! - [`disputes`]: `DISPUTEWON#<captureId>`, a won dispute remembered until its reversal is restored;
//! - [`write_together`] and [`get_item`]: one `TransactWriteItems` with the
//!   "condition failed" outcome told apart, and one consistent `GetItem`.
//!
//! Storage of a sub-domain with its own directory (`subscriptions::store`,
//! `admin_tokens::store`, `reconcile::store`, `services::charge_store`,
//! `events::store`) lives beside its rules and uses these helpers.

pub(crate) mod attrs;
pub mod disputes;
pub mod orders;
pub mod pointers;
pub mod refunds;

use crate::BillingError;
use aws_sdk_dynamodb::types::TransactWriteItem;
use ledger::{AttrMap, Ledger, LedgerError};

/// One `TransactWriteItems`. `Ok(Some(codes))` when it was cancelled by a
/// failed condition (nothing written); other failures are errors.
pub(crate) async fn write_together(
    ledger: &Ledger,
    items: Vec<TransactWriteItem>,
) -> Result<Option<Vec<String>>, BillingError> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    let result = ledger
        .client()
        .transact_write_items()
        .set_transact_items(Some(items))
        .send()
        .await;
    match result {
        Ok(_) => Ok(None),
        Err(err) => match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(c))
                if c.cancellation_reasons()
                    .iter()
                    .any(|r| r.code() == Some("ConditionalCheckFailed")) =>
            {
                Ok(Some(
                    c.cancellation_reasons()
                        .iter()
                        .map(|r| r.code().unwrap_or("None").to_owned())
                        .collect(),
                ))
            }
            _ => Err(LedgerError::dynamo("TransactWriteItems", &err).into()),
        },
    }
}

/// One strongly consistent `GetItem` of `(pk, sk)`.
pub(crate) async fn get_item(
    ledger: &Ledger,
    pk: &str,
    sk: &str,
) -> Result<Option<AttrMap>, BillingError> {
    let out = ledger
        .client()
        .get_item()
        .table_name(ledger.table())
        .key("pk", attrs::s(pk))
        .key("sk", attrs::s(sk))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| LedgerError::dynamo("GetItem", &e))?;
    Ok(out.item)
}
