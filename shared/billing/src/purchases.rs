//! VirtFusion token purchases as the user's history sees them.
//!
//! Each purchase has a record in the user's partition,
//! `pk=USER#<id>`, `sk=TOKENBUY#<createdAt>#<orderId>`, kept in step with the
//! order (status changes are written in the same transaction).

use crate::BillingError;
use aws_sdk_dynamodb::types::AttributeValue;
use billing_money::Tokens;
use ledger::{AttrMap, Ledger, LedgerError, UserId};

pub const TOKEN_PURCHASE_SK_PREFIX: &str = "TOKENBUY#";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPurchase {
    /// The PayPal order; for an admin line, the grant (`vfgrant-<hex>`).
    pub order_id: String,
    /// `purchase`, or `refund` / `reversal` (negative tokens) for what a
    /// PayPal refund or chargeback of a purchase took back; `admin_add` /
    /// `admin_remove` for an admin's grant and its removal.
    pub kind: String,
    pub tokens: Tokens,
    /// `pending`, `completed`, `needs_review`, `refunded`, `failed`.
    pub status: String,
    pub description: String,
    pub created_at: String,
    /// The record's sort key (the history cursor position).
    pub sort_key: String,
    /// Admin lines: who, why, and the VirtFusion credit.
    pub admin: Option<AdminLine>,
}

/// What an admin line records beside the tokens (API.md: token management
/// appears in the user's token history with the admin's id and reason).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminLine {
    pub admin_id: String,
    pub reason: String,
    pub credit_id: Option<u64>,
}

/// Types of the admin lines.
pub const ADMIN_ADD: &str = "admin_add";
pub const ADMIN_REMOVE: &str = "admin_remove";

impl TokenPurchase {
    pub fn sort_key_for(created_at: &str, order_id: &str) -> String {
        format!("{TOKEN_PURCHASE_SK_PREFIX}{created_at}#{order_id}")
    }

    /// The line's id in the transactions list: the order id for a purchase,
    /// `<orderId>-<refundId>` for what a refund or reversal took back, and
    /// the grant (`vfgrant-<hex>`) or removal (`vfremove-<hex>`) for admin
    /// lines — the last segment of their sort key.
    pub fn id(&self) -> String {
        let last = self.sort_key.rsplit('#').next().unwrap_or_default();
        match self.kind.as_str() {
            "purchase" => self.order_id.clone(),
            ADMIN_ADD | ADMIN_REMOVE => last.to_owned(),
            _ => format!("{}-{last}", self.order_id),
        }
    }

    pub fn to_item(&self, user: &UserId) -> AttrMap {
        let mut item = AttrMap::new();
        item.insert("pk".into(), AttributeValue::S(user.pk()));
        item.insert("sk".into(), AttributeValue::S(self.sort_key.clone()));
        item.insert("orderId".into(), AttributeValue::S(self.order_id.clone()));
        item.insert(
            "tokens".into(),
            AttributeValue::N(self.tokens.get().to_string()),
        );
        item.insert("status".into(), AttributeValue::S(self.status.clone()));
        if self.kind != "purchase" {
            item.insert("type".into(), AttributeValue::S(self.kind.clone()));
        }
        item.insert(
            "description".into(),
            AttributeValue::S(self.description.clone()),
        );
        item.insert(
            "createdAt".into(),
            AttributeValue::S(self.created_at.clone()),
        );
        if let Some(admin) = &self.admin {
            item.insert("adminId".into(), AttributeValue::S(admin.admin_id.clone()));
            item.insert("reason".into(), AttributeValue::S(admin.reason.clone()));
            if let Some(credit_id) = admin.credit_id {
                item.insert("creditId".into(), AttributeValue::N(credit_id.to_string()));
            }
        }
        item
    }

    pub fn from_item(item: &AttrMap) -> Result<TokenPurchase, BillingError> {
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(v)) => Ok(v.clone()),
            _ => Err(corrupt(item, name)),
        };
        let tokens = match item.get("tokens") {
            Some(AttributeValue::N(v)) => v
                .parse::<i64>()
                .map(Tokens::new)
                .map_err(|_| corrupt(item, "tokens")),
            _ => Err(corrupt(item, "tokens")),
        }?;
        Ok(TokenPurchase {
            order_id: text("orderId")?,
            kind: text("type").unwrap_or_else(|_| "purchase".into()),
            tokens,
            status: text("status")?,
            description: text("description")?,
            created_at: text("createdAt")?,
            sort_key: text("sk")?,
            admin: match text("adminId") {
                Ok(admin_id) => Some(AdminLine {
                    admin_id,
                    reason: text("reason")?,
                    credit_id: match item.get("creditId") {
                        Some(AttributeValue::N(v)) => {
                            Some(v.parse().map_err(|_| corrupt(item, "creditId"))?)
                        }
                        _ => None,
                    },
                }),
                Err(_) => None,
            },
        })
    }
}

fn corrupt(item: &AttrMap, field: &str) -> BillingError {
    let key = match item.get("sk") {
        Some(AttributeValue::S(sk)) => sk.clone(),
        _ => "?".into(),
    };
    BillingError::Ledger(LedgerError::Corrupt {
        key,
        problem: format!("{field} missing or malformed"),
    })
}

/// Up to `limit` purchases, newest first, strictly older than `before` (a sort key).
pub async fn token_purchases(
    ledger: &Ledger,
    user: &UserId,
    limit: u32,
    before: Option<&str>,
) -> Result<(Vec<TokenPurchase>, bool), BillingError> {
    let upper = before
        .map(str::to_owned)
        // '~' sorts after every digit: above every TOKENBUY#<timestamp> key.
        .unwrap_or_else(|| format!("{TOKEN_PURCHASE_SK_PREFIX}~"));
    let out = ledger
        .client()
        .query()
        .table_name(ledger.table())
        .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
        .expression_attribute_values(":pk", AttributeValue::S(user.pk()))
        .expression_attribute_values(":lo", AttributeValue::S(TOKEN_PURCHASE_SK_PREFIX.into()))
        .expression_attribute_values(":hi", AttributeValue::S(upper.clone()))
        .scan_index_forward(false)
        .limit(limit.clamp(1, 1000) as i32 + 1)
        .send()
        .await
        .map_err(|e| LedgerError::dynamo("Query", &e))?;
    let mut purchases = out
        .items()
        .iter()
        .map(TokenPurchase::from_item)
        .collect::<Result<Vec<_>, _>>()?;
    // BETWEEN is inclusive: drop the cursor's own item.
    purchases.retain(|p| p.sort_key != upper);
    let more = purchases.len() > limit as usize || out.last_evaluated_key.is_some();
    purchases.truncate(limit as usize);
    Ok((purchases, more))
}

/// The lines with `lower <= sk <= upper` (both full sort keys), oldest
/// first, at most `max` (`Ok(None)` when there are more).
pub async fn token_lines_between(
    ledger: &Ledger,
    user: &UserId,
    lower: &str,
    upper: &str,
    max: usize,
) -> Result<Option<Vec<TokenPurchase>>, BillingError> {
    let mut lines = Vec::new();
    let mut start: Option<std::collections::HashMap<String, AttributeValue>> = None;
    loop {
        let out = ledger
            .client()
            .query()
            .table_name(ledger.table())
            .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
            .expression_attribute_values(":pk", AttributeValue::S(user.pk()))
            .expression_attribute_values(":lo", AttributeValue::S(lower.to_owned()))
            .expression_attribute_values(":hi", AttributeValue::S(upper.to_owned()))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| LedgerError::dynamo("Query", &e))?;
        for item in out.items() {
            lines.push(TokenPurchase::from_item(item)?);
            if lines.len() > max {
                return Ok(None);
            }
        }
        match out.last_evaluated_key {
            Some(key) => start = Some(key),
            None => return Ok(Some(lines)),
        }
    }
}

/// One line of the user's token history by its sort key (a consistent read
/// in the user's own partition: another user's line is never found).
pub async fn token_line(
    ledger: &Ledger,
    user: &UserId,
    sort_key: &str,
) -> Result<Option<TokenPurchase>, BillingError> {
    if !sort_key.starts_with(TOKEN_PURCHASE_SK_PREFIX) {
        return Ok(None);
    }
    let out = ledger
        .client()
        .get_item()
        .table_name(ledger.table())
        .key("pk", AttributeValue::S(user.pk()))
        .key("sk", AttributeValue::S(sort_key.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| LedgerError::dynamo("GetItem", &e))?;
    out.item.as_ref().map(TokenPurchase::from_item).transpose()
}
