//! Storage of refunds and reversals: the `REFUND#<id>` record (one per PayPal
//! refund or reversal id) and the conditional writes that move it forward.
//! The rules live in [`crate::refunds`].

use super::attrs::{ItemReader, s};
use crate::BillingError;
use crate::orders::OrderRecord;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use billing_money::Usd;
use ledger::{AttrMap, Ledger, LedgerError};

pub const REFUND_SK: &str = "REFUND";

/// Where one refund (or reversal) stands. Forward only:
/// refund `pending → completed | failed | cancelled` (and straight to any of
/// them); reversal `completed → cancelled` (the merchant won the dispute).
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum RefundState {
    Pending,
    Completed,
    Failed,
    Cancelled,
}

impl RefundState {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(text: &str) -> Option<RefundState> {
        text.parse().ok()
    }

    /// PayPal's refund status; `None` for a status we do not act on.
    pub fn from_paypal(status: &paypal::RefundStatus) -> Option<RefundState> {
        match status {
            paypal::RefundStatus::Pending => Some(RefundState::Pending),
            paypal::RefundStatus::Completed => Some(RefundState::Completed),
            paypal::RefundStatus::Failed => Some(RefundState::Failed),
            paypal::RefundStatus::Cancelled => Some(RefundState::Cancelled),
            paypal::RefundStatus::Other(_) => None,
        }
    }

    /// Whether the money is taken (pending or completed).
    pub fn holds_money(self) -> bool {
        matches!(self, RefundState::Pending | RefundState::Completed)
    }
}

/// A refund the merchant made, or a reversal (chargeback) PayPal made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Movement {
    Refund,
    Reversal,
}

impl Movement {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A `REFUND#<id>` record as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundRecord {
    pub refund_id: String,
    pub order_id: String,
    pub amount: Usd,
    pub state: RefundState,
    pub movement: Movement,
    /// Token purchases: the history line of this refund, if one was written.
    pub history_sk: Option<String>,
}

pub fn pk(refund_id: &str) -> String {
    format!("REFUND#{refund_id}")
}

/// One consistent read of a refund record.
pub async fn load(ledger: &Ledger, refund_id: &str) -> Result<Option<RefundRecord>, BillingError> {
    let item = super::get_item(ledger, &pk(refund_id), REFUND_SK).await?;
    item.as_ref().map(from_item).transpose()
}

fn from_item(item: &AttrMap) -> Result<RefundRecord, BillingError> {
    let r = ItemReader::new(item, "REFUND#?");
    let bad = |field: &str| r.bad(field);
    let text = |name: &str| r.text(name);
    let amount = r.usd("amount")?.ok_or_else(|| bad("amount"))?;
    // Records written before states existed were applied at once: completed.
    let state = match text("status") {
        Some(status) => RefundState::parse(status).ok_or_else(|| bad("status"))?,
        None => RefundState::Completed,
    };
    let movement = match text("source") {
        Some("paypal_reversal") => Movement::Reversal,
        _ => match text("movement") {
            Some("reversal") => Movement::Reversal,
            _ => Movement::Refund,
        },
    };
    Ok(RefundRecord {
        refund_id: r.key().trim_start_matches("REFUND#").to_owned(),
        order_id: text("orderId").ok_or_else(|| bad("orderId"))?.to_owned(),
        amount,
        state,
        movement,
        history_sk: text("historySk").map(str::to_owned),
    })
}

/// Who asked for a refund, for its record.
pub struct RecordSource<'a> {
    pub admin: Option<(&'a str, &'a str)>,
    pub movement: Movement,
}

/// Put of a new record in `state`; fails if this refund id is recorded already.
pub fn new_record_item(
    table: &str,
    order: &OrderRecord,
    refund_id: &str,
    amount: Usd,
    state: RefundState,
    source: &RecordSource<'_>,
    history_sk: Option<&str>,
) -> Result<TransactWriteItem, LedgerError> {
    let now = ledger::now_rfc3339();
    let mut put = Put::builder()
        .table_name(table)
        .item("pk", s(pk(refund_id)))
        .item("sk", s(REFUND_SK))
        .item("orderId", s(&order.order_id))
        .item("user", s(order.user.as_str()))
        .item("kind", s(order.kind.as_str()))
        .item("amount", AttributeValue::N(amount.to_string()))
        .item("status", s(state.as_str()))
        .item("movement", s(source.movement.as_str()))
        .item("createdAt", s(&now))
        .item("updatedAt", s(&now))
        .condition_expression("attribute_not_exists(pk)");
    put = match source.admin {
        Some((admin_id, reason)) => put
            .item("source", s("admin"))
            .item("adminId", s(admin_id))
            .item("reason", s(reason)),
        None => put.item(
            "source",
            s(match source.movement {
                Movement::Reversal => "paypal_reversal",
                Movement::Refund => "paypal",
            }),
        ),
    };
    if let Some(history_sk) = history_sk {
        put = put.item("historySk", s(history_sk));
    }
    let put = put
        .build()
        .map_err(|e| LedgerError::corrupt("refund", e.to_string()))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// Moves a record `from → to` (the condition names the state it leaves).
pub fn transition_item(
    table: &str,
    refund_id: &str,
    from: RefundState,
    to: RefundState,
) -> Result<TransactWriteItem, LedgerError> {
    let update = Update::builder()
        .table_name(table)
        .key("pk", s(pk(refund_id)))
        .key("sk", s(REFUND_SK))
        .update_expression("SET #status = :to, updatedAt = :now")
        .condition_expression("#status = :from")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":from", s(from.as_str()))
        .expression_attribute_values(":to", s(to.as_str()))
        .expression_attribute_values(":now", s(ledger::now_rfc3339()))
        .build()
        .map_err(|e| LedgerError::corrupt("refund", e.to_string()))?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// A token refund's history line (`type` refund or reversal, negative tokens).
pub fn token_history_item(
    table: &str,
    order: &OrderRecord,
    refund_id: &str,
    amount: Usd,
    movement: Movement,
    state: RefundState,
) -> Result<(String, TransactWriteItem), LedgerError> {
    let now = ledger::now_rfc3339();
    let sk = format!(
        "{}{now}#{}#{refund_id}",
        crate::purchases::TOKEN_PURCHASE_SK_PREFIX,
        order.order_id
    );
    let tokens = amount.to_tokens();
    let description = match movement {
        Movement::Refund => format!("PayPal refund of a token purchase ({})", amount.formatted()),
        Movement::Reversal => format!(
            "PayPal reversal (chargeback) of a token purchase ({})",
            amount.formatted()
        ),
    };
    let put = Put::builder()
        .table_name(table)
        .item("pk", s(order.user.pk()))
        .item("sk", s(&sk))
        .item("orderId", s(&order.order_id))
        .item("type", s(movement.as_str()))
        .item("tokens", AttributeValue::N((-tokens.get()).to_string()))
        .item("status", s(state.as_str()))
        .item("description", s(&description))
        .item("createdAt", s(&now))
        .build()
        .map_err(|e| LedgerError::corrupt("token refund", e.to_string()))?;
    Ok((sk, TransactWriteItem::builder().put(put).build()))
}

/// Sets a token history line's status.
pub fn history_status_item(
    table: &str,
    order: &OrderRecord,
    history_sk: &str,
    status: &str,
) -> Result<TransactWriteItem, LedgerError> {
    let update = Update::builder()
        .table_name(table)
        .key("pk", s(order.user.pk()))
        .key("sk", s(history_sk))
        .update_expression("SET #status = :status")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":status", s(status))
        .build()
        .map_err(|e| LedgerError::corrupt("token refund", e.to_string()))?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// A refund recorded failed or cancelled that PayPal completed after all:
/// `prior.state → completed` (the condition names the state it leaves),
/// with the history line written now, if any.
pub fn reinstate_item(
    table: &str,
    prior: &RefundRecord,
    history_sk: Option<&str>,
) -> Result<TransactWriteItem, LedgerError> {
    let mut update = Update::builder()
        .table_name(table)
        .key("pk", s(pk(&prior.refund_id)))
        .key("sk", s(REFUND_SK))
        .condition_expression("#status = :from")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":from", s(prior.state.as_str()))
        .expression_attribute_values(":to", s(RefundState::Completed.as_str()))
        .expression_attribute_values(":now", s(ledger::now_rfc3339()));
    update = match history_sk {
        Some(sk) => update
            .update_expression("SET #status = :to, updatedAt = :now, historySk = :h")
            .expression_attribute_values(":h", s(sk)),
        None => update.update_expression("SET #status = :to, updatedAt = :now"),
    };
    let update = update
        .build()
        .map_err(|e| LedgerError::corrupt("refund", e.to_string()))?;
    Ok(TransactWriteItem::builder().update(update).build())
}
