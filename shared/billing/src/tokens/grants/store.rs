//! Storage of admin token grants: the grant record `pk=VFGRANT#<grantId>`,
//! `sk=GRANT` (its state machine, see [`super`]), the credit pointer
//! `pk=VFCREDIT#<creditId>`, `sk=POINTER` (which grant, which user: a
//! removal may only name a credit granted to the user in its path), and the
//! conditional writes that move a grant forward, each in one transaction
//! with its history line and its `Idempotency-Key` record.

use crate::BillingError;
use crate::idempotency::IdempotencyKey;
use crate::orders::{DELIVERY_CLAIMED, DELIVERY_REVIEW};
use crate::purchases::TokenPurchase;
use crate::store::attrs::{ItemReader, n, s};
use crate::store::write_together;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use billing_money::Tokens;
use ledger::{AttrMap, Ledger, LedgerError, UserId};

pub const GRANT_SK: &str = "GRANT";
pub const CREDIT_POINTER_SK: &str = "POINTER";

/// Where an admin grant stands. Forward only, one conditional write per step:
///
/// ```text
/// sending ──▶ granted ──▶ removing ──▶ removed
///    │  │        ▲            │  └───▶ removal_review ──resolve(true)──▶ removed
///    │  │        └────────────┴─(surely not removed; resolve(false))
///    │  └──▶ needs_review ──resolve(true)──▶ granted ; resolve(false) ──▶ failed
///    └─────▶ failed (surely not sent; the same key may send it again)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum GrantState {
    /// Claimed: one request is talking to VirtFusion now.
    Sending,
    Granted,
    /// VirtFusion may or may not have credited it: an admin decides.
    NeedsReview,
    /// Surely not credited.
    Failed,
    /// Claimed for removal: one request is talking to VirtFusion now.
    Removing,
    /// VirtFusion may or may not have removed it: an admin decides.
    RemovalReview,
    Removed,
}

impl GrantState {
    pub const ALL: [GrantState; 7] = [
        GrantState::Sending,
        GrantState::Granted,
        GrantState::NeedsReview,
        GrantState::Failed,
        GrantState::Removing,
        GrantState::RemovalReview,
        GrantState::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(text: &str) -> Option<GrantState> {
        text.parse().ok()
    }
}

/// The removal of a granted credit, once asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    pub admin_id: String,
    pub reason: String,
    /// The removal's history line, once written.
    pub history_sk: Option<String>,
}

/// A `VFGRANT#<id>` record as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenGrant {
    /// `vfgrant-<hex>`, derived from the admin's Idempotency-Key and request.
    pub id: String,
    pub user: UserId,
    pub tokens: Tokens,
    pub admin_id: String,
    pub reason: String,
    pub state: GrantState,
    pub credit_id: Option<u64>,
    pub created_at: String,
    /// The claim of the request talking to VirtFusion (sending, removing).
    pub claim: Option<String>,
    pub claimed_at: Option<String>,
    /// The grant's history line, once written.
    pub history_sk: Option<String>,
    pub review_reason: Option<String>,
    pub removal: Option<Removal>,
}

pub fn grant_pk(grant_id: &str) -> String {
    format!("VFGRANT#{grant_id}")
}

pub fn credit_pk(credit_id: u64) -> String {
    format!("VFCREDIT#{credit_id}")
}

impl TokenGrant {
    fn to_item(&self) -> AttrMap {
        let mut item = AttrMap::new();
        item.insert("pk".into(), s(grant_pk(&self.id)));
        item.insert("sk".into(), s(GRANT_SK));
        item.insert("grantId".into(), s(&self.id));
        item.insert("user".into(), s(self.user.as_str()));
        item.insert("tokens".into(), n(self.tokens.get()));
        item.insert("adminId".into(), s(&self.admin_id));
        item.insert("reason".into(), s(&self.reason));
        item.insert("state".into(), s(self.state.as_str()));
        item.insert("createdAt".into(), s(&self.created_at));
        item.insert("updatedAt".into(), s(&self.created_at));
        if let (Some(claim), Some(at)) = (&self.claim, &self.claimed_at) {
            item.insert("claim".into(), s(claim));
            item.insert("claimedAt".into(), s(at));
            item.insert("gsi1pk".into(), s(DELIVERY_CLAIMED));
            item.insert("gsi1sk".into(), s(format!("{at}#{}", self.id)));
        }
        item
    }

    pub fn from_item(item: &AttrMap) -> Result<TokenGrant, BillingError> {
        let r = ItemReader::new(item, "VFGRANT#?");
        let bad = |field: &str| r.bad(field);
        let text = |name: &str| r.text(name).map(str::to_owned);
        let num = |name: &str| r.num(name);
        let removal = match (text("removedBy"), text("removalReason")) {
            (Some(admin_id), Some(reason)) => Some(Removal {
                admin_id,
                reason,
                history_sk: text("removalHistorySk"),
            }),
            _ => None,
        };
        Ok(TokenGrant {
            id: text("grantId").ok_or_else(|| bad("grantId"))?,
            user: text("user")
                .and_then(|u| UserId::parse(&u).ok())
                .ok_or_else(|| bad("user"))?,
            tokens: num("tokens")
                .and_then(|t| t.parse().ok())
                .map(Tokens::new)
                .ok_or_else(|| bad("tokens"))?,
            admin_id: text("adminId").ok_or_else(|| bad("adminId"))?,
            reason: text("reason").ok_or_else(|| bad("reason"))?,
            state: text("state")
                .and_then(|t| GrantState::parse(&t))
                .ok_or_else(|| bad("state"))?,
            credit_id: match num("creditId") {
                Some(c) => Some(c.parse().map_err(|_| bad("creditId"))?),
                None => None,
            },
            created_at: text("createdAt").ok_or_else(|| bad("createdAt"))?,
            claim: text("claim"),
            claimed_at: text("claimedAt"),
            history_sk: text("historySk"),
            review_reason: text("reviewReason"),
            removal,
        })
    }
}

/// One consistent read of a grant.
pub async fn load(ledger: &Ledger, grant_id: &str) -> Result<Option<TokenGrant>, BillingError> {
    let item = crate::store::get_item(ledger, &grant_pk(grant_id), GRANT_SK).await?;
    item.as_ref().map(TokenGrant::from_item).transpose()
}

/// The grant a VirtFusion credit id belongs to, with its user.
pub async fn load_credit(
    ledger: &Ledger,
    credit_id: u64,
) -> Result<Option<(String, UserId)>, BillingError> {
    let out = crate::store::get_item(ledger, &credit_pk(credit_id), CREDIT_POINTER_SK).await?;
    let Some(item) = out else {
        return Ok(None);
    };
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    };
    match (
        text("grantId"),
        text("user").and_then(|u| UserId::parse(&u).ok()),
    ) {
        (Some(grant_id), Some(user)) => Ok(Some((grant_id, user))),
        _ => Err(LedgerError::corrupt(credit_pk(credit_id), "grantId or user missing").into()),
    }
}

/// A conditional update of a grant: `SET` / `REMOVE`, `IF condition`
/// (which may use `#state`, `#claim` and the values given).
pub struct GrantUpdate {
    grant_id: String,
    sets: Vec<(String, AttributeValue)>,
    removes: Vec<&'static str>,
    condition: String,
    values: Vec<(String, AttributeValue)>,
}

impl GrantUpdate {
    /// Leaves `from` (and, when given, only for the holder of `claim`).
    pub fn leaving(grant_id: &str, from: GrantState, claim: Option<&str>) -> GrantUpdate {
        let mut update = GrantUpdate {
            grant_id: grant_id.to_owned(),
            sets: vec![("updatedAt".into(), s(ledger::now_rfc3339()))],
            removes: Vec::new(),
            condition: "#state = :from".into(),
            values: vec![(":from".into(), s(from.as_str()))],
        };
        if let Some(claim) = claim {
            update.condition.push_str(" AND #claim = :claim");
            update.values.push((":claim".into(), s(claim)));
        }
        update
    }

    pub fn set(mut self, attribute: &str, value: AttributeValue) -> GrantUpdate {
        self.sets.push((attribute.to_owned(), value));
        self
    }

    pub fn set_s(self, attribute: &str, value: &str) -> GrantUpdate {
        self.set(attribute, s(value))
    }

    pub fn state(self, to: GrantState) -> GrantUpdate {
        self.set_s("state", to.as_str())
    }

    pub fn remove(mut self, attribute: &'static str) -> GrantUpdate {
        self.removes.push(attribute);
        self
    }

    /// Out of the index (a settled grant needs nobody).
    pub fn unindexed(self) -> GrantUpdate {
        self.remove("gsi1pk").remove("gsi1sk").remove("claim")
    }

    /// On the admins' review list.
    pub fn under_review(self, to: GrantState, grant: &TokenGrant, reason: &str) -> GrantUpdate {
        self.state(to)
            .set_s("reviewReason", reason)
            .set_s("gsi1pk", DELIVERY_REVIEW)
            .set_s("gsi1sk", &format!("{}#{}", grant.created_at, grant.id))
            .remove("claim")
    }

    /// Claimed by one request (indexed while claimed, so a claim whose
    /// Lambda died is found by the stale-claim sweep).
    pub fn claimed(self, to: GrantState, claim: &str, at: &str, grant_id: &str) -> GrantUpdate {
        self.state(to)
            .set_s("claim", claim)
            .set_s("claimedAt", at)
            .set_s("gsi1pk", DELIVERY_CLAIMED)
            .set_s("gsi1sk", &format!("{at}#{grant_id}"))
    }

    pub fn item(&self, table: &str) -> Result<TransactWriteItem, LedgerError> {
        let mut names = vec![
            ("#state".to_owned(), "state".to_owned()),
            ("#claim".to_owned(), "claim".to_owned()),
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
            let removed: Vec<String> = self
                .removes
                .iter()
                .enumerate()
                .map(|(i, attribute)| {
                    names.push((format!("#r{i}"), (*attribute).to_owned()));
                    format!("#r{i}")
                })
                .collect();
            expression.push_str(&format!(" REMOVE {}", removed.join(", ")));
        }
        let used = format!("{expression} {}", self.condition);
        names.retain(|(placeholder, _)| used.contains(placeholder.as_str()));
        let update = Update::builder()
            .table_name(table)
            .key("pk", s(grant_pk(&self.grant_id)))
            .key("sk", s(GRANT_SK))
            .update_expression(expression)
            .condition_expression(&self.condition)
            .set_expression_attribute_names(Some(names.into_iter().collect()))
            .set_expression_attribute_values(Some(values.into_iter().collect()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| LedgerError::corrupt("grant update", e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

/// What claiming a new grant found.
pub enum Claim {
    /// Claimed: this request sends it.
    Claimed,
    /// The key's record exists (the item as it was).
    KeyTaken(Option<AttrMap>),
    /// The grant exists (its key record expired or was never kept).
    GrantExists,
}

/// One transaction: the key's record (in progress) and the grant, claimed —
/// new, or again after a sure failure.
pub async fn claim_new(
    ledger: &Ledger,
    grant: &TokenGrant,
    key: &IdempotencyKey,
) -> Result<Claim, BillingError> {
    let put = Put::builder()
        .table_name(ledger.table())
        .set_item(Some(grant.to_item()))
        .condition_expression("attribute_not_exists(pk) OR #state = :failed")
        .expression_attribute_names("#state", "state")
        .expression_attribute_values(":failed", s(GrantState::Failed.as_str()))
        .build()
        .map_err(|e| LedgerError::corrupt("grant", e.to_string()))?;
    let items = vec![
        key.record_item(ledger.table(), None)?,
        TransactWriteItem::builder().put(put).build(),
    ];
    claim(ledger, items).await
}

/// One transaction: the key's record (in progress) and the grant moved
/// `granted → removing` for this claim (condition: still granted, that credit).
pub async fn claim_removal(
    ledger: &Ledger,
    grant: &TokenGrant,
    removal: &Removal,
    claim_id: &str,
    key: &IdempotencyKey,
) -> Result<Claim, BillingError> {
    let at = ledger::now_rfc3339();
    let update = GrantUpdate::leaving(&grant.id, GrantState::Granted, None)
        .claimed(GrantState::Removing, claim_id, &at, &grant.id)
        .set_s("removedBy", &removal.admin_id)
        .set_s("removalReason", &removal.reason);
    let items = vec![
        key.record_item(ledger.table(), None)?,
        update.item(ledger.table())?,
    ];
    claim(ledger, items).await
}

async fn claim(ledger: &Ledger, items: Vec<TransactWriteItem>) -> Result<Claim, BillingError> {
    let result = ledger
        .client()
        .transact_write_items()
        .set_transact_items(Some(items))
        .send()
        .await;
    let err = match result {
        Ok(_) => return Ok(Claim::Claimed),
        Err(err) => err,
    };
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancel)) => {
            let reasons = cancel.cancellation_reasons();
            let failed =
                |i: usize| reasons.get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed");
            if failed(0) {
                Ok(Claim::KeyTaken(reasons[0].item().cloned()))
            } else if failed(1) {
                Ok(Claim::GrantExists)
            } else {
                Err(LedgerError::dynamo("TransactWriteItems", &err).into())
            }
        }
        _ => Err(LedgerError::dynamo("TransactWriteItems", &err).into()),
    }
}

/// A history line of the grant's user.
pub fn line_item(
    table: &str,
    user: &UserId,
    line: &TokenPurchase,
) -> Result<TransactWriteItem, LedgerError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(line.to_item(user)))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(|e| LedgerError::corrupt("token line", e.to_string()))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// Sets a history line's status (the line must exist).
pub fn line_status_item(
    table: &str,
    user: &UserId,
    sort_key: &str,
    status: &str,
) -> Result<TransactWriteItem, LedgerError> {
    let update = Update::builder()
        .table_name(table)
        .key("pk", s(user.pk()))
        .key("sk", s(sort_key))
        .update_expression("SET #status = :status")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":status", s(status))
        .build()
        .map_err(|e| LedgerError::corrupt("token line", e.to_string()))?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// The credit pointer (put once; the same grant may write it again).
pub fn credit_pointer_item(
    table: &str,
    credit_id: u64,
    grant: &TokenGrant,
) -> Result<TransactWriteItem, LedgerError> {
    let put = Put::builder()
        .table_name(table)
        .item("pk", s(credit_pk(credit_id)))
        .item("sk", s(CREDIT_POINTER_SK))
        .item("grantId", s(&grant.id))
        .item("user", s(grant.user.as_str()))
        .condition_expression("attribute_not_exists(pk) OR grantId = :grant")
        .expression_attribute_values(":grant", s(&grant.id))
        .build()
        .map_err(|e| LedgerError::corrupt("credit pointer", e.to_string()))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// Writes an outcome: `true` when it committed, `false` when a condition
/// failed (the claim was lost: nothing written).
pub async fn write(ledger: &Ledger, items: Vec<TransactWriteItem>) -> Result<bool, BillingError> {
    Ok(write_together(ledger, items).await?.is_none())
}
