//! `Idempotency-Key` (API.md "Conventions"): per caller, the first response
//! is stored and replayed for at least 24 hours; the same key with another
//! body is 422; a retry while the first still runs is 409.
//!
//! For a money-moving request the record is one more item of the ledger's
//! `TransactWriteItems`, written *already completed* (the response is known
//! before commit: it is built from the change's [`Preview`]). So the first
//! request costs no extra round trip, and a crash can never leave money moved
//! without its record or a record without its money. A refused request (4xx)
//! changed nothing and stores nothing: its retry is judged afresh (it may
//! succeed once the reason is gone, e.g. after a top-up).

use crate::BillingError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use ledger::{AttrMap, Change, ChangeOutcome, Ledger, LedgerError, Preview, UserId};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Records live 48 hours (the contract promises at least 24); DynamoDB's TTL
/// deletes them some time after `expiresAt`.
pub const RECORD_LIFETIME_SECONDS: i64 = 48 * 3600;

/// A response as stored and replayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: Value,
}

/// One caller's key for one request.
#[derive(Clone, Debug)]
pub struct IdempotencyKey {
    pk: String,
    fingerprint: String,
}

/// What an existing record means for a new request with the same key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Existing {
    Replay(StoredResponse),
    InProgress,
}

impl IdempotencyKey {
    /// `canonical_request` is the validated request in a canonical form
    /// (e.g. `"10.00|goodwill"`), so `10` and `"10.00"` are the same body.
    pub fn new(user: &UserId, key: &str, route: &str, canonical_request: &str) -> IdempotencyKey {
        let digest = Sha256::digest(format!("{route}\n{canonical_request}").as_bytes());
        IdempotencyKey {
            pk: format!("IDEM#{}#{key}", user.as_str()),
            fingerprint: hex::encode(digest),
        }
    }

    /// A stable id derived from the caller and key (e.g. our purchase id, so
    /// a retried order creation reuses its `PayPal-Request-Id`).
    pub fn derived_id(&self) -> String {
        let digest = Sha256::digest(format!("{}\n{}", self.pk, self.fingerprint).as_bytes());
        hex::encode(&digest[..16])
    }

    fn record(&self, status: Option<&StoredResponse>) -> AttrMap {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut item = AttrMap::new();
        item.insert("pk".into(), AttributeValue::S(self.pk.clone()));
        item.insert("sk".into(), AttributeValue::S("IDEM".into()));
        item.insert(
            "fingerprint".into(),
            AttributeValue::S(self.fingerprint.clone()),
        );
        item.insert("createdAt".into(), AttributeValue::S(ledger::now_rfc3339()));
        item.insert(
            "expiresAt".into(),
            AttributeValue::N((now + RECORD_LIFETIME_SECONDS).to_string()),
        );
        match status {
            Some(response) => {
                item.insert("state".into(), AttributeValue::S("completed".into()));
                item.insert(
                    "status".into(),
                    AttributeValue::N(response.status.to_string()),
                );
                item.insert("body".into(), AttributeValue::S(response.body.to_string()));
            }
            None => {
                item.insert("state".into(), AttributeValue::S("in_progress".into()));
            }
        }
        item
    }

    /// The record as a transaction item that only creates.
    pub fn record_item(
        &self,
        table: &str,
        response: Option<&StoredResponse>,
    ) -> Result<TransactWriteItem, LedgerError> {
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(self.record(response)))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| LedgerError::corrupt("idempotency record", e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The record completed with `response`, replacing this request's
    /// in-progress record (condition: the record is this request's, or gone).
    /// For requests that record their key before an outside call (admin
    /// token grants) and complete it in the outcome's transaction.
    pub fn complete_item(
        &self,
        table: &str,
        response: &StoredResponse,
    ) -> Result<TransactWriteItem, LedgerError> {
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(self.record(Some(response))))
            .condition_expression("attribute_not_exists(pk) OR fingerprint = :fp")
            .expression_attribute_values(":fp", AttributeValue::S(self.fingerprint.clone()))
            .build()
            .map_err(|e| LedgerError::corrupt("idempotency record", e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Deletes the record: the request surely changed nothing, so a retry
    /// with the key is judged afresh.
    pub fn release_item(&self, table: &str) -> Result<TransactWriteItem, LedgerError> {
        let delete = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(table)
            .key("pk", AttributeValue::S(self.pk.clone()))
            .key("sk", AttributeValue::S("IDEM".into()))
            .build()
            .map_err(|e| LedgerError::corrupt("idempotency record", e.to_string()))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// [`IdempotencyKey::complete_item`] on its own.
    pub async fn complete(
        &self,
        ledger: &Ledger,
        response: &StoredResponse,
    ) -> Result<(), BillingError> {
        ledger
            .client()
            .put_item()
            .table_name(ledger.table())
            .set_item(Some(self.record(Some(response))))
            .condition_expression("attribute_not_exists(pk) OR fingerprint = :fp")
            .expression_attribute_values(":fp", AttributeValue::S(self.fingerprint.clone()))
            .send()
            .await
            .map_err(|e| LedgerError::dynamo("PutItem", &e))?;
        Ok(())
    }

    /// Judges an existing record: same body → replay (or 409 while running);
    /// another body → 422.
    pub fn judge(&self, existing: &AttrMap) -> Result<Existing, BillingError> {
        let text = |name: &str| match existing.get(name) {
            Some(AttributeValue::S(v)) => Some(v.as_str()),
            _ => None,
        };
        if text("fingerprint") != Some(self.fingerprint.as_str()) {
            return Err(BillingError::IdempotencyKeyReused);
        }
        if text("state") != Some("completed") {
            return Ok(Existing::InProgress);
        }
        let status = match existing.get("status") {
            Some(AttributeValue::N(n)) => n.parse::<u16>().ok(),
            _ => None,
        };
        let body = text("body").and_then(|b| serde_json::from_str::<Value>(b).ok());
        match (status, body) {
            (Some(status), Some(body)) => Ok(Existing::Replay(StoredResponse { status, body })),
            _ => Err(BillingError::Ledger(LedgerError::corrupt(
                &self.pk,
                "unreadable stored response",
            ))),
        }
    }

    /// The record if there is one (one consistent `GetItem`), judged.
    pub async fn lookup(&self, ledger: &Ledger) -> Result<Option<Existing>, BillingError> {
        let out = ledger
            .client()
            .get_item()
            .table_name(ledger.table())
            .key("pk", AttributeValue::S(self.pk.clone()))
            .key("sk", AttributeValue::S("IDEM".into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| LedgerError::dynamo("GetItem", &e))?;
        out.item.as_ref().map(|item| self.judge(item)).transpose()
    }

    /// Stores `response` unless a record exists; returns the existing one then.
    pub async fn store(
        &self,
        ledger: &Ledger,
        response: &StoredResponse,
    ) -> Result<Option<Existing>, BillingError> {
        let result = ledger
            .client()
            .put_item()
            .table_name(ledger.table())
            .set_item(Some(self.record(Some(response))))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(err) => match err.as_service_error() {
                Some(e) if e.is_conditional_check_failed_exception() => {
                    let existing = match e {
                        aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => c.item().cloned(),
                        _ => None,
                    };
                    match existing {
                        Some(item) => self.judge(&item).map(Some),
                        None => self.lookup(ledger).await,
                    }
                }
                _ => Err(LedgerError::dynamo("PutItem", &err).into()),
            },
        }
    }
}

/// Applies `change` under an optional key. `success` builds the response
/// from the state the change produces; it is stored in the same transaction.
/// Returns the response to send (fresh or replayed).
pub async fn apply_with_key<S>(
    ledger: &Ledger,
    mut change: Change,
    key: Option<&IdempotencyKey>,
    success: S,
    refuse: impl Fn(LedgerError) -> BillingError,
) -> Result<StoredResponse, BillingError>
where
    S: Fn(&Preview) -> StoredResponse + Send + Sync + Clone + 'static,
{
    let key_index = change.extra_items();
    if let Some(key) = key {
        let (key, table, success) = (key.clone(), ledger.table().to_owned(), success.clone());
        // Built per attempt from that attempt's preview: the stored response
        // carries exactly the balance this transaction commits.
        change =
            change.with_item_for(move |preview| key.record_item(&table, Some(&success(preview))));
    }
    match ledger.apply(change).await {
        Ok(ChangeOutcome::Applied(applied) | ChangeOutcome::AlreadyApplied(applied)) => {
            Ok(success(&Preview::of(&applied.entry)))
        }
        Err(LedgerError::ConditionFailed { index, existing }) if index == key_index => {
            let Some(key) = key else {
                return Err(refuse(LedgerError::ConditionFailed { index, existing }));
            };
            match existing {
                Some(item) => replay(key.judge(&item)?),
                None => replay(
                    key.lookup(ledger)
                        .await?
                        .ok_or(BillingError::IdempotencyInProgress)?,
                ),
            }
        }
        Err(e) => {
            // Refused — unless an earlier request with this key did the work
            // (its effect is what made this one fail, e.g. "already subscribed").
            if let Some(key) = key
                && let Some(existing) = key.lookup(ledger).await?
            {
                return replay(existing);
            }
            // Refusals change nothing and are not stored: a retry is judged afresh.
            Err(refuse(e))
        }
    }
}

fn replay(existing: Existing) -> Result<StoredResponse, BillingError> {
    match existing {
        Existing::Replay(response) => Ok(response),
        Existing::InProgress => Err(BillingError::IdempotencyInProgress),
    }
}
