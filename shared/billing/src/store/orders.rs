//! Storage of orders: the `ORDER#<id>` item (mapping both ways), its reads,
//! the creation put, and [`OrderUpdate`], the one builder of conditional
//! order updates every rule module moves an order forward with.

use super::attrs::{ItemReader, s};
use crate::BillingError;
use crate::orders::{Delivery, OrderRecord, PaymentStatus, PurchaseKind};
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

/// Credit ids as stored in `strayCredits` (`"12,15"`).
pub fn join_credits(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// The settlement-index partition of a settlement time (`SETTLED#<day>`),
/// read by reconciliation.
pub fn settled_partition(settled_at: &str) -> String {
    format!("SETTLED#{}", settled_at.get(..10).unwrap_or(settled_at))
}

impl OrderRecord {
    pub fn pk(order_id: &str) -> String {
        format!("ORDER#{order_id}")
    }

    pub fn to_item(&self) -> AttrMap {
        let mut item = AttrMap::new();
        let n = |v: String| AttributeValue::N(v);
        item.insert("pk".into(), s(OrderRecord::pk(&self.order_id)));
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
        if let Some(completed) = self.refunds_completed {
            item.insert("refundsCompleted".into(), n(completed.to_string()));
        }
        item.insert("captureAttempt".into(), n(self.capture_attempt.to_string()));
        if let Some(delivery) = self.delivery {
            item.insert("delivery".into(), s(delivery.as_str()));
        }
        if let Some(credit_id) = self.credit_id {
            item.insert("creditId".into(), n(credit_id.to_string()));
        }
        if let Some(tokens) = self.credit_tokens {
            item.insert("creditTokens".into(), n(tokens.get().to_string()));
        }
        if !self.stray_credits.is_empty() {
            item.insert("strayCredits".into(), s(join_credits(&self.stray_credits)));
        }
        if let Some(tokens) = self.sending_tokens {
            item.insert("sendingTokens".into(), n(tokens.get().to_string()));
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
        let r = ItemReader::new(item, "ORDER#?");
        let amount = |name: &str| r.usd(name).ok().flatten().ok_or_else(|| r.bad(name));
        Ok(OrderRecord {
            order_id: r.required("orderId")?.to_owned(),
            user: r
                .text("user")
                .and_then(|u| UserId::parse(u).ok())
                .ok_or_else(|| r.bad("user"))?,
            kind: r
                .text("kind")
                .and_then(|k| k.parse::<PurchaseKind>().ok())
                .ok_or_else(|| r.bad("kind"))?,
            amount: amount("amount")?,
            tokens: r.parsed::<i64>("tokens")?.map(Tokens::new),
            purchase_id: r.required("purchaseId")?.to_owned(),
            status: r
                .text("status")
                .and_then(|t| t.parse::<PaymentStatus>().ok())
                .ok_or_else(|| r.bad("status"))?,
            capture_id: r.text("captureId").map(str::to_owned),
            captured_amount: r.usd("capturedAmount")?,
            refunded_amount: r.usd("refundedAmount")?.unwrap_or(Usd::ZERO),
            refunds_completed: r.usd("refundsCompleted")?,
            capture_attempt: r.parsed("captureAttempt")?.unwrap_or(0),
            delivery: r
                .text("delivery")
                .map(|d| d.parse::<Delivery>().map_err(|_| r.bad("delivery")))
                .transpose()?,
            credit_id: r.parsed("creditId")?,
            credit_tokens: r.parsed::<i64>("creditTokens")?.map(Tokens::new),
            sending_tokens: r.parsed::<i64>("sendingTokens")?.map(Tokens::new),
            stray_credits: match r.text("strayCredits") {
                None | Some("") => Vec::new(),
                Some(ids) => ids
                    .split(',')
                    .map(|id| id.parse().map_err(|_| r.bad("strayCredits")))
                    .collect::<Result<_, _>>()?,
            },
            created_at: r.required("createdAt")?.to_owned(),
            reversal_id: r.text("reversalId").map(str::to_owned),
            review_reason: r.text("reviewReason").map(str::to_owned),
            delivery_attempts: r.parsed("deliveryAttempts")?.unwrap_or(0),
        })
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
            .expression_attribute_values(":pid", s(&self.purchase_id))
            .expression_attribute_values(":created", s(PaymentStatus::Created.as_str()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| LedgerError::corrupt("order", e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

/// One consistent read of an order.
pub async fn load(ledger: &Ledger, order_id: &str) -> Result<Option<OrderRecord>, BillingError> {
    super::get_item(ledger, &OrderRecord::pk(order_id), ORDER_SK)
        .await?
        .as_ref()
        .map(OrderRecord::from_item)
        .transpose()
}

/// An order and the sort key of its token history line (`historySk`, token
/// purchases once paid), in one consistent read.
pub async fn load_with_history_sk(
    ledger: &Ledger,
    order_id: &str,
) -> Result<Option<(OrderRecord, Option<String>)>, BillingError> {
    let Some(item) = super::get_item(ledger, &OrderRecord::pk(order_id), ORDER_SK).await? else {
        return Ok(None);
    };
    let history_sk = match item.get("historySk") {
        Some(AttributeValue::S(sk)) => Some(sk.clone()),
        _ => None,
    };
    Ok(Some((OrderRecord::from_item(&item)?, history_sk)))
}

/// The update setting a token order's history line to `status`, if the
/// order has a line (`historySk`, read consistently).
pub(crate) async fn history_line_status_item(
    ledger: &Ledger,
    order: &OrderRecord,
    status: &str,
) -> Result<Option<TransactWriteItem>, BillingError> {
    let out = ledger
        .client()
        .get_item()
        .table_name(ledger.table())
        .key("pk", s(OrderRecord::pk(&order.order_id)))
        .key("sk", s(ORDER_SK))
        .projection_expression("historySk")
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| LedgerError::dynamo("GetItem", &e))?;
    let Some(AttributeValue::S(history_sk)) = out.item.as_ref().and_then(|i| i.get("historySk"))
    else {
        return Ok(None);
    };
    let update = Update::builder()
        .table_name(ledger.table())
        .key("pk", s(order.user.pk()))
        .key("sk", s(history_sk))
        .update_expression("SET #status = :status")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":status", s(status))
        .build()
        .map_err(|e| LedgerError::corrupt("token purchase", e.to_string()))?;
    Ok(Some(TransactWriteItem::builder().update(update).build()))
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
        self.set(attribute, s(value))
    }

    /// A number attribute (written from its exact text).
    pub fn set_n(self, attribute: &str, value: impl ToString) -> OrderUpdate {
        self.set(attribute, AttributeValue::N(value.to_string()))
    }

    pub fn remove(mut self, attribute: &'static str) -> OrderUpdate {
        self.removes.push(attribute);
        self
    }

    /// Adds `extra` to the condition (both must hold).
    pub fn and_condition(mut self, extra: &str) -> OrderUpdate {
        self.condition = format!("({}) AND ({extra})", self.condition);
        self
    }

    /// Conditioned on the order's credit (and stray credits) as read.
    pub fn credits_as_read(self, order: &OrderRecord) -> OrderUpdate {
        let update = match order.credit_id {
            Some(credit_id) => self
                .and_condition("creditId = :seenCredit")
                .value(":seenCredit", AttributeValue::N(credit_id.to_string())),
            None => self.and_condition("attribute_not_exists(creditId)"),
        };
        match order.stray_credits.is_empty() {
            true => update.and_condition("attribute_not_exists(strayCredits)"),
            false => update
                .and_condition("strayCredits = :seenStray")
                .value(":seenStray", s(join_credits(&order.stray_credits))),
        }
    }

    pub fn value(mut self, name: &str, value: AttributeValue) -> OrderUpdate {
        self.values.push((name.to_owned(), value));
        self
    }

    /// A string value for the condition.
    pub fn value_s(self, name: &str, value: &str) -> OrderUpdate {
        self.value(name, s(value))
    }

    /// `settledAt` and the settlement index `gsi2` (`SETTLED#<day>`,
    /// `<settledAt>#<orderId>`): how reconciliation lists the purchases of a
    /// window without a Scan.
    pub fn settled_at(self, settled_at: &str) -> OrderUpdate {
        let sort = format!("{settled_at}#{}", self.order_id);
        self.set_s("settledAt", settled_at)
            .set_s("gsi2pk", &settled_partition(settled_at))
            .set_s("gsi2sk", &sort)
    }

    /// Indexed under `partition` (gsi1: deliveries pending, claimed or
    /// under review), ordered by `at`.
    pub fn indexed(self, partition: &str, at: &str) -> OrderUpdate {
        let sort = format!("{at}#{}", self.order_id);
        self.set_s("gsi1pk", partition).set_s("gsi1sk", &sort)
    }

    /// Releases the delivery claim `claim` (still held: the condition), moving
    /// the delivery to `delivery`.
    pub fn release_claim(order_id: &str, claim: &str, delivery: Delivery) -> OrderUpdate {
        OrderUpdate::new(
            order_id,
            "#delivery = :delivering AND deliveryClaim = :claim",
        )
        .value_s(":delivering", Delivery::Delivering.as_str())
        .value_s(":claim", claim)
        .set_s("delivery", delivery.as_str())
        .set_s("deliveryUpdatedAt", &ledger::now_rfc3339())
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
            .key("pk", s(OrderRecord::pk(&self.order_id)))
            .key("sk", s(ORDER_SK))
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
            .key("pk", s(OrderRecord::pk(&self.order_id)))
            .key("sk", s(ORDER_SK))
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
