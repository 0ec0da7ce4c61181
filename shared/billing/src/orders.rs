//! PayPal orders as we record them: one item per order, `pk=ORDER#<id>`,
//! written before the order id reaches the client and moved forward only
//! (created → capture_pending → completed | failed), always by a conditional
//! write, so retries, webhooks and the scheduled job never move it back.

use crate::BillingError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use billing_money::{Tokens, Usd};
use ledger::{AttrMap, Ledger, LedgerError, UserId};

pub const ORDER_SK: &str = "ORDER";
/// Sparse index partitions (gsi1pk) for token deliveries the job or an admin must handle.
pub const DELIVERY_PENDING: &str = "DELIVERY#pending";
pub const DELIVERY_REVIEW: &str = "DELIVERY#needs_review";
/// Claimed by a caller that is talking to VirtFusion right now.
pub const DELIVERY_CLAIMED: &str = "DELIVERY#delivering";

/// What an order buys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PurchaseKind {
    Credits,
    Tokens,
}

impl PurchaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PurchaseKind::Credits => "credits",
            PurchaseKind::Tokens => "tokens",
        }
    }

    fn parse(text: &str) -> Option<PurchaseKind> {
        match text {
            "credits" => Some(PurchaseKind::Credits),
            "tokens" => Some(PurchaseKind::Tokens),
            _ => None,
        }
    }
}

/// Payment state of an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentStatus {
    /// Order created at PayPal; the buyer has not paid yet.
    Created,
    /// PayPal captured it as PENDING; the COMPLETED webhook settles it.
    CapturePending,
    /// Captured and settled: credits credited, or tokens owed (see [`Delivery`]).
    Completed,
    /// Declined or failed at PayPal; nothing is owed.
    Failed,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Created => "created",
            PaymentStatus::CapturePending => "capture_pending",
            PaymentStatus::Completed => "completed",
            PaymentStatus::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<PaymentStatus> {
        [
            PaymentStatus::Created,
            PaymentStatus::CapturePending,
            PaymentStatus::Completed,
            PaymentStatus::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// Where a paid token purchase stands with VirtFusion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Owed; VirtFusion surely does not have it yet (retried by the job).
    Pending,
    /// One caller holds the claim and is talking to VirtFusion now.
    Delivering,
    Delivered,
    /// VirtFusion may or may not have it (timeout/5xx after sending): an admin decides.
    NeedsReview,
    /// The purchase was refunded: tokens taken back, or never delivered.
    Refunded,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Pending => "pending",
            Delivery::Delivering => "delivering",
            Delivery::Delivered => "delivered",
            Delivery::NeedsReview => "needs_review",
            Delivery::Refunded => "refunded",
        }
    }

    pub const ALL: [Delivery; 5] = [
        Delivery::Pending,
        Delivery::Delivering,
        Delivery::Delivered,
        Delivery::NeedsReview,
        Delivery::Refunded,
    ];

    fn parse(text: &str) -> Option<Delivery> {
        Delivery::ALL.into_iter().find(|d| d.as_str() == text)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRecord {
    pub order_id: String,
    pub user: UserId,
    pub kind: PurchaseKind,
    /// What the order was created for (the credited amount is what PayPal captured).
    pub amount: Usd,
    pub tokens: Option<Tokens>,
    /// Our purchase id (PayPal `invoice_id`).
    pub purchase_id: String,
    pub status: PaymentStatus,
    pub capture_id: Option<String>,
    pub captured_amount: Option<Usd>,
    /// Sum of the refunds (and reversals) applied so far.
    pub refunded_amount: Usd,
    /// Bumped after PayPal answered "not approved" (nothing captured), so the
    /// next capture uses a fresh `PayPal-Request-Id`; retries after an
    /// unknown outcome reuse the same one.
    pub capture_attempt: u32,
    pub delivery: Option<Delivery>,
    pub credit_id: Option<u64>,
    pub created_at: String,
    /// The last reversal (chargeback) applied, so the dispute's outcome can
    /// find what to restore.
    pub reversal_id: Option<String>,
    /// Token deliveries under review: why (uncertain outcome, partial refund,
    /// refund during delivery, ...).
    pub review_reason: Option<String>,
    /// Definite VirtFusion refusals so far (deliveries back off and go to
    /// review after [`crate::deliveries::MAX_DEFINITE_REFUSALS`]).
    pub delivery_attempts: u32,
}

impl OrderRecord {
    pub fn pk(order_id: &str) -> String {
        format!("ORDER#{order_id}")
    }

    pub fn to_item(&self) -> AttrMap {
        let mut item = AttrMap::new();
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let n = |v: String| AttributeValue::N(v);
        item.insert("pk".into(), s(&OrderRecord::pk(&self.order_id)));
        item.insert("sk".into(), s(ORDER_SK));
        item.insert("orderId".into(), s(&self.order_id));
        item.insert("user".into(), s(self.user.as_str()));
        item.insert("kind".into(), s(self.kind.as_str()));
        item.insert("amount".into(), n(self.amount.to_string()));
        item.insert("purchaseId".into(), s(&self.purchase_id));
        item.insert("status".into(), s(self.status.as_str()));
        item.insert("createdAt".into(), s(&self.created_at));
        if let Some(tokens) = self.tokens {
            item.insert("tokens".into(), n(tokens.get().to_string()));
        }
        if let Some(capture_id) = &self.capture_id {
            item.insert("captureId".into(), s(capture_id));
        }
        if let Some(captured) = self.captured_amount {
            item.insert("capturedAmount".into(), n(captured.to_string()));
        }
        item.insert("refundedAmount".into(), n(self.refunded_amount.to_string()));
        item.insert("captureAttempt".into(), n(self.capture_attempt.to_string()));
        if let Some(delivery) = self.delivery {
            item.insert("delivery".into(), s(delivery.as_str()));
        }
        if let Some(credit_id) = self.credit_id {
            item.insert("creditId".into(), n(credit_id.to_string()));
        }
        if let Some(reversal_id) = &self.reversal_id {
            item.insert("reversalId".into(), s(reversal_id));
        }
        if let Some(reason) = &self.review_reason {
            item.insert("reviewReason".into(), s(reason));
        }
        if self.delivery_attempts > 0 {
            item.insert(
                "deliveryAttempts".into(),
                n(self.delivery_attempts.to_string()),
            );
        }
        item
    }

    pub fn from_item(item: &AttrMap) -> Result<OrderRecord, BillingError> {
        let key = match item.get("pk") {
            Some(AttributeValue::S(pk)) => pk.clone(),
            _ => "ORDER#?".into(),
        };
        let bad = |field: &str| {
            BillingError::Ledger(LedgerError::corrupt(
                &key,
                format!("{field} missing or malformed"),
            ))
        };
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(v)) => Some(v.as_str()),
            _ => None,
        };
        let num = |name: &str| match item.get(name) {
            Some(AttributeValue::N(v)) => Some(v.as_str()),
            _ => None,
        };
        let usd = |name: &str| num(name).map(billing_money::parse_usd_literal);
        Ok(OrderRecord {
            order_id: text("orderId").ok_or_else(|| bad("orderId"))?.to_owned(),
            user: text("user")
                .and_then(|u| UserId::parse(u).ok())
                .ok_or_else(|| bad("user"))?,
            kind: text("kind")
                .and_then(PurchaseKind::parse)
                .ok_or_else(|| bad("kind"))?,
            amount: usd("amount")
                .and_then(Result::ok)
                .ok_or_else(|| bad("amount"))?,
            tokens: match num("tokens") {
                Some(t) => Some(Tokens::new(t.parse().map_err(|_| bad("tokens"))?)),
                None => None,
            },
            purchase_id: text("purchaseId")
                .ok_or_else(|| bad("purchaseId"))?
                .to_owned(),
            status: text("status")
                .and_then(PaymentStatus::parse)
                .ok_or_else(|| bad("status"))?,
            capture_id: text("captureId").map(str::to_owned),
            captured_amount: usd("capturedAmount")
                .transpose()
                .map_err(|_| bad("capturedAmount"))?,
            refunded_amount: usd("refundedAmount")
                .transpose()
                .map_err(|_| bad("refundedAmount"))?
                .unwrap_or(Usd::ZERO),
            capture_attempt: match num("captureAttempt") {
                Some(a) => a.parse().map_err(|_| bad("captureAttempt"))?,
                None => 0,
            },
            delivery: match text("delivery") {
                Some(d) => Some(Delivery::parse(d).ok_or_else(|| bad("delivery"))?),
                None => None,
            },
            credit_id: match num("creditId") {
                Some(c) => Some(c.parse().map_err(|_| bad("creditId"))?),
                None => None,
            },
            created_at: text("createdAt")
                .ok_or_else(|| bad("createdAt"))?
                .to_owned(),
            reversal_id: text("reversalId").map(str::to_owned),
            review_reason: text("reviewReason").map(str::to_owned),
            delivery_attempts: match num("deliveryAttempts") {
                Some(a) => a.parse().map_err(|_| bad("deliveryAttempts"))?,
                None => 0,
            },
        })
    }

    /// The `PayPal-Request-Id` of the next capture call.
    pub fn capture_request_id(&self) -> String {
        format!("capture-{}-{}", self.order_id, self.capture_attempt)
    }

    /// Put of a new order; a retry of the same purchase (same purchase id) may overwrite it.
    pub fn create_item(&self, table: &str) -> Result<TransactWriteItem, LedgerError> {
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(self.to_item()))
            .condition_expression(
                "attribute_not_exists(pk) OR (purchaseId = :pid AND #status = :created)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pid", AttributeValue::S(self.purchase_id.clone()))
            .expression_attribute_values(
                ":created",
                AttributeValue::S(PaymentStatus::Created.as_str().into()),
            )
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| LedgerError::corrupt("order", e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

/// One consistent read of an order.
pub async fn load(ledger: &Ledger, order_id: &str) -> Result<Option<OrderRecord>, BillingError> {
    let out = ledger
        .client()
        .get_item()
        .table_name(ledger.table())
        .key("pk", AttributeValue::S(OrderRecord::pk(order_id)))
        .key("sk", AttributeValue::S(ORDER_SK.into()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| LedgerError::dynamo("GetItem", &e))?;
    out.item.as_ref().map(OrderRecord::from_item).transpose()
}

/// An order and the sort key of its token history line (`historySk`, token
/// purchases once paid), in one consistent read.
pub async fn load_with_history_sk(
    ledger: &Ledger,
    order_id: &str,
) -> Result<Option<(OrderRecord, Option<String>)>, BillingError> {
    let out = ledger
        .client()
        .get_item()
        .table_name(ledger.table())
        .key("pk", AttributeValue::S(OrderRecord::pk(order_id)))
        .key("sk", AttributeValue::S(ORDER_SK.into()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| LedgerError::dynamo("GetItem", &e))?;
    let Some(item) = out.item else {
        return Ok(None);
    };
    let history_sk = match item.get("historySk") {
        Some(AttributeValue::S(sk)) => Some(sk.clone()),
        _ => None,
    };
    Ok(Some((OrderRecord::from_item(&item)?, history_sk)))
}

type NamePair = (String, String);
type ValuePair = (String, AttributeValue);

/// A conditional update of an order as a transaction item:
/// `SET <assignments>` (and `REMOVE <removals>`) `IF <condition>`.
pub struct OrderUpdate {
    order_id: String,
    sets: Vec<(String, AttributeValue)>,
    removes: Vec<&'static str>,
    condition: String,
    values: Vec<(String, AttributeValue)>,
}

impl OrderUpdate {
    /// `condition` may use `#status`, `#delivery` and values added with [`OrderUpdate::value`].
    pub fn new(order_id: &str, condition: &str) -> OrderUpdate {
        OrderUpdate {
            order_id: order_id.to_owned(),
            sets: Vec::new(),
            removes: Vec::new(),
            condition: condition.to_owned(),
            values: Vec::new(),
        }
    }

    pub fn set(mut self, attribute: &str, value: AttributeValue) -> OrderUpdate {
        self.sets.push((attribute.to_owned(), value));
        self
    }

    pub fn set_s(self, attribute: &str, value: &str) -> OrderUpdate {
        self.set(attribute, AttributeValue::S(value.to_owned()))
    }

    pub fn remove(mut self, attribute: &'static str) -> OrderUpdate {
        self.removes.push(attribute);
        self
    }

    pub fn value(mut self, name: &str, value: AttributeValue) -> OrderUpdate {
        self.values.push((name.to_owned(), value));
        self
    }

    fn parts(&self) -> (String, Vec<NamePair>, Vec<ValuePair>) {
        let mut names = vec![
            ("#status".to_owned(), "status".to_owned()),
            ("#delivery".to_owned(), "delivery".to_owned()),
        ];
        let mut values = self.values.clone();
        let mut assignments = Vec::new();
        for (i, (attribute, value)) in self.sets.iter().enumerate() {
            names.push((format!("#a{i}"), attribute.clone()));
            values.push((format!(":a{i}"), value.clone()));
            assignments.push(format!("#a{i} = :a{i}"));
        }
        let mut expression = format!("SET {}", assignments.join(", "));
        if !self.removes.is_empty() {
            let start = names.len();
            let removed: Vec<String> = self
                .removes
                .iter()
                .enumerate()
                .map(|(i, attribute)| {
                    names.push((format!("#r{}", start + i), (*attribute).to_owned()));
                    format!("#r{}", start + i)
                })
                .collect();
            expression.push_str(&format!(" REMOVE {}", removed.join(", ")));
        }
        // Only names the expressions use may be sent.
        let used = format!("{expression} {}", self.condition);
        names.retain(|(placeholder, _)| used.contains(placeholder.as_str()));
        (expression, names, values)
    }

    pub fn item(&self, table: &str) -> Result<TransactWriteItem, LedgerError> {
        let (expression, names, values) = self.parts();
        let update = Update::builder()
            .table_name(table)
            .key("pk", AttributeValue::S(OrderRecord::pk(&self.order_id)))
            .key("sk", AttributeValue::S(ORDER_SK.into()))
            .update_expression(expression)
            .condition_expression(&self.condition)
            .set_expression_attribute_names(Some(names.into_iter().collect()))
            .set_expression_attribute_values(Some(values.into_iter().collect()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| LedgerError::corrupt("order update", e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Runs the update with the events it reports, in one transaction;
    /// `Ok(false)` when its condition failed (nothing written).
    pub async fn run_with(
        &self,
        ledger: &Ledger,
        events: &[crate::events::Event],
    ) -> Result<bool, BillingError> {
        if events.is_empty() {
            return self.run(ledger).await;
        }
        let item = self.item(ledger.table())?;
        Ok(matches!(
            crate::events::write_with(ledger, item, events).await?,
            crate::events::Written::Yes
        ))
    }

    /// Runs the update on its own; `Ok(false)` when its condition failed.
    pub async fn run(&self, ledger: &Ledger) -> Result<bool, BillingError> {
        let (expression, names, values) = self.parts();
        let result = ledger
            .client()
            .update_item()
            .table_name(ledger.table())
            .key("pk", AttributeValue::S(OrderRecord::pk(&self.order_id)))
            .key("sk", AttributeValue::S(ORDER_SK.into()))
            .update_expression(expression)
            .condition_expression(&self.condition)
            .set_expression_attribute_names(Some(names.into_iter().collect()))
            .set_expression_attribute_values(Some(values.into_iter().collect()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(err) => Err(LedgerError::dynamo("UpdateItem", &err).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_round_trip() {
        for delivery in Delivery::ALL {
            assert_eq!(Delivery::parse(delivery.as_str()), Some(delivery));
        }
        for kind in [PurchaseKind::Credits, PurchaseKind::Tokens] {
            assert_eq!(PurchaseKind::parse(kind.as_str()), Some(kind));
        }
        for status in ["created", "capture_pending", "completed", "failed"] {
            assert_eq!(
                PaymentStatus::parse(status).map(PaymentStatus::as_str),
                Some(status)
            );
        }
    }
}
