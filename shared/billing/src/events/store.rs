//! The outbox item (`pk=OUTBOX#<eventId>`, `sk=OUTBOX`) and its reading back
//! from a stream image. Put without condition: the same change written twice
//! (a retry, a race) writes the same key, which the stream reports as a
//! `MODIFY` — the publisher takes `INSERT`s only, so it is published once.

use super::{Event, SOURCE};
use crate::BillingError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use ledger::{AttrMap, Ledger, LedgerError};
use serde_json::Value;

pub const OUTBOX_PK_PREFIX: &str = "OUTBOX#";
pub const OUTBOX_SK: &str = "OUTBOX";
/// Outbox items expire (table TTL `expiresAt`) well after the stream's 24 h
/// retention: kept for an operator who re-drives a dead-lettered batch.
const OUTBOX_KEEP_SECONDS: i64 = 14 * 24 * 3600;

pub(super) fn outbox_put(table: &str, event: &Event) -> Result<TransactWriteItem, LedgerError> {
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let now = time::OffsetDateTime::now_utc();
    let created_at = ledger::format_rfc3339(now);
    // Every event says when its change happened: the emitter's own time when
    // it gave one, else this write's (the change's transaction).
    let mut detail = event.detail();
    if let Value::Object(fields) = &mut detail {
        fields
            .entry("occurredAt")
            .or_insert_with(|| Value::String(created_at.clone()));
    }
    let detail = serde_json::to_string(&detail)
        .map_err(|e| LedgerError::corrupt("outbox", e.to_string()))?;
    let mut put = Put::builder()
        .table_name(table)
        .item("pk", s(&format!("{OUTBOX_PK_PREFIX}{}", event.event_id())))
        .item("sk", s(OUTBOX_SK))
        .item("eventId", s(event.event_id()))
        .item("source", s(SOURCE))
        .item("detailType", s(event.detail_type().as_str()))
        .item("detail", s(&detail))
        .item("createdAt", s(&created_at))
        .item(
            "expiresAt",
            AttributeValue::N((now.unix_timestamp() + OUTBOX_KEEP_SECONDS).to_string()),
        );
    if let Some(user) = event.user() {
        put = put.item("userId", s(user.as_str()));
    }
    let put = put
        .build()
        .map_err(|e| LedgerError::corrupt("outbox", e.to_string()))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// An outbox item as the publisher reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxRecord {
    pub event_id: String,
    pub source: String,
    pub detail_type: String,
    /// The JSON text of `detail`.
    pub detail: String,
    pub created_at: Option<String>,
}

impl OutboxRecord {
    /// From a DynamoDB Stream `NewImage` in Lambda's JSON form
    /// (`{"pk": {"S": "..."}, ...}`); `None` for anything that is not an outbox item.
    pub fn from_stream_image(image: &Value) -> Option<OutboxRecord> {
        let text = |name: &str| image.get(name)?.get("S")?.as_str().map(str::to_owned);
        if !text("pk")?.starts_with(OUTBOX_PK_PREFIX) || text("sk")? != OUTBOX_SK {
            return None;
        }
        Some(OutboxRecord {
            event_id: text("eventId")?,
            source: text("source").unwrap_or_else(|| SOURCE.to_owned()),
            detail_type: text("detailType")?,
            detail: text("detail")?,
            created_at: text("createdAt"),
        })
    }
}

/// Whether a conditional write happened.
#[derive(Clone, Debug, PartialEq)]
pub enum Written {
    Yes,
    /// The item's condition failed: nothing was written (`existing` when the
    /// item asked for `ReturnValuesOnConditionCheckFailure::AllOld`).
    ConditionFailed {
        existing: Option<Box<AttrMap>>,
    },
}

/// One conditional `item` (an `Update`/`Put` that is not a ledger change)
/// and the events it reports, in one `TransactWriteItems`.
pub async fn write_with(
    ledger: &Ledger,
    item: TransactWriteItem,
    events: &[Event],
) -> Result<Written, BillingError> {
    let mut items = vec![item];
    for event in events {
        items.push(event.item(ledger.table())?);
    }
    // Bounded: a TransactionConflict only means a concurrent write of the same item.
    for attempt in 0..4u64 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
        }
        let result = ledger
            .client()
            .transact_write_items()
            .set_transact_items(Some(items.clone()))
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(Written::Yes),
            Err(err) => err,
        };
        let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) =
            err.as_service_error()
        else {
            return Err(LedgerError::dynamo("TransactWriteItems", &err).into());
        };
        let reasons = cancel.cancellation_reasons();
        if let Some(first) = reasons.first()
            && first.code() == Some("ConditionalCheckFailed")
        {
            return Ok(Written::ConditionFailed {
                existing: first.item().cloned().map(Box::new),
            });
        }
        if !reasons
            .iter()
            .any(|r| r.code() == Some("TransactionConflict"))
        {
            return Err(LedgerError::dynamo("TransactWriteItems", &err).into());
        }
    }
    Err(LedgerError::Contended { attempts: 4 }.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::DetailType;
    use ledger::UserId;

    #[test]
    fn stream_images_of_outbox_items_are_read_and_others_ignored() {
        let user = UserId::parse("9").unwrap();
        let event = Event::new(DetailType::TokensPurchased, "o1", &user).value("tokens", 500);
        let image = serde_json::json!({
            "pk": {"S": format!("OUTBOX#{}", event.event_id())},
            "sk": {"S": "OUTBOX"},
            "eventId": {"S": event.event_id()},
            "detailType": {"S": "tokens.purchased"},
            "detail": {"S": event.detail().to_string()},
        });
        let record = OutboxRecord::from_stream_image(&image).unwrap();
        assert_eq!(record.detail_type, "tokens.purchased");
        assert_eq!(record.source, SOURCE);
        let account = serde_json::json!({"pk": {"S": "USER#9"}, "sk": {"S": "CREDITS"}});
        assert_eq!(OutboxRecord::from_stream_image(&account), None);
    }
}
