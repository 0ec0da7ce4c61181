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
//!
//! A request that must call outside before its outcome is known (an admin
//! refund at PayPal) [`claim`](IdempotencyKey::claim)s its key first: the
//! in-progress record, with the request's fingerprint and what the outside
//! call needs, held under a lease. Another request with the key meanwhile
//! answers 409 (same body) or 422 (another body); once the holder let go
//! (an error that may have left the call applied) or died (its lease ran
//! out), a retry with the same body takes the claim over and repeats the
//! *same* call ([`resume`](IdempotencyKey::resume)).

use crate::BillingError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use ledger::{AttrMap, Change, ChangeOutcome, Ledger, LedgerError, Preview, UserId};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How long a [`Claim`] holds its key without finishing: longer than any
/// function runs (29 s for the PayPal-calling ones, template.yaml), so only
/// a request that died loses its claim this way.
pub const CLAIM_LEASE_SECONDS: i64 = 60;

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

/// A request's hold on its key while it calls outside.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// This request holds the key under `token` until it completes the record
    /// or [lets go](IdempotencyKey::let_go); `record` is the in-progress
    /// record, with the fields the request that first claimed it stored.
    Held { token: String, record: AttrMap },
    /// A request with this key and body finished before: its answer.
    Replay(StoredResponse),
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

    /// A stable id derived from the caller and key alone, not the body: the
    /// outside request id of a claimed request (e.g. a refund's
    /// `PayPal-Request-Id`), the same for every retry that may reach it.
    pub fn request_id(&self) -> String {
        let digest = Sha256::digest(format!("request-id\n{}", self.pk).as_bytes());
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

    /// Claims the key for this request before it calls outside: writes the
    /// in-progress record with `fields` (what a retry needs to repeat the same
    /// call) under a fresh lease. A record already there is judged as by
    /// [`IdempotencyKey::resume`].
    pub async fn claim(&self, ledger: &Ledger, fields: AttrMap) -> Result<Claim, BillingError> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut item = self.record(None);
        item.extend(fields);
        item.insert("claim".into(), AttributeValue::S(token.clone()));
        item.insert("leaseUntil".into(), lease_until());
        let result = ledger
            .client()
            .put_item()
            .table_name(ledger.table())
            .set_item(Some(item.clone()))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let err = match result {
            Ok(_) => {
                return Ok(Claim::Held {
                    token,
                    record: item,
                });
            }
            Err(err) => err,
        };
        use aws_sdk_dynamodb::operation::put_item::PutItemError;
        match err.as_service_error() {
            Some(PutItemError::ConditionalCheckFailedException(e)) => match e.item() {
                Some(existing) => self.take_over(ledger, existing.clone()).await,
                None => self
                    .resume(ledger)
                    .await?
                    .ok_or(BillingError::IdempotencyInProgress),
            },
            _ => Err(LedgerError::dynamo("PutItem", &err).into()),
        }
    }

    /// The claim of an earlier request with this key, if there is a record:
    /// its answer when it finished; 422 for another body; 409 while its
    /// holder still runs; else (the holder let go, or its lease ran out)
    /// the claim, taken over by this request. `None`: no record.
    pub async fn resume(&self, ledger: &Ledger) -> Result<Option<Claim>, BillingError> {
        match self.read(ledger).await? {
            Some(existing) => self.take_over(ledger, existing).await.map(Some),
            None => Ok(None),
        }
    }

    async fn take_over(&self, ledger: &Ledger, existing: AttrMap) -> Result<Claim, BillingError> {
        if let Existing::Replay(response) = self.judge(&existing)? {
            return Ok(Claim::Replay(response));
        }
        let held = match existing.get("claim") {
            Some(AttributeValue::S(token)) => Some(token.clone()),
            _ => None,
        };
        let lease = match existing.get("leaseUntil") {
            Some(AttributeValue::N(until)) => until.parse::<i64>().ok(),
            _ => None,
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        match (lease, &held) {
            // Not a claim (another flow's in-progress record), or still held.
            (None, _) => return Err(BillingError::IdempotencyInProgress),
            (Some(until), Some(_)) if until > now => {
                return Err(BillingError::IdempotencyInProgress);
            }
            _ => {}
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut update = ledger
            .client()
            .update_item()
            .table_name(ledger.table())
            .key("pk", AttributeValue::S(self.pk.clone()))
            .key("sk", AttributeValue::S("IDEM".into()))
            .update_expression("SET claim = :token, leaseUntil = :until")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":token", AttributeValue::S(token.clone()))
            .expression_attribute_values(":until", lease_until())
            .expression_attribute_values(":fp", AttributeValue::S(self.fingerprint.clone()))
            .expression_attribute_values(":running", AttributeValue::S("in_progress".into()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew);
        // The claim as seen: a concurrent taker wins once, the others re-judge.
        update = match held {
            Some(seen) => update
                .condition_expression("fingerprint = :fp AND #state = :running AND claim = :seen")
                .expression_attribute_values(":seen", AttributeValue::S(seen)),
            None => update.condition_expression(
                "fingerprint = :fp AND #state = :running AND attribute_not_exists(claim)",
            ),
        };
        match update.send().await {
            Ok(out) => Ok(Claim::Held {
                token,
                record: out.attributes.unwrap_or_default(),
            }),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                match self.lookup(ledger).await? {
                    Some(Existing::Replay(response)) => Ok(Claim::Replay(response)),
                    _ => Err(BillingError::IdempotencyInProgress),
                }
            }
            Err(err) => Err(LedgerError::dynamo("UpdateItem", &err).into()),
        }
    }

    /// Gives up the claim `token` without finishing (the outside call may
    /// have been applied): the record stays, so only a retry with the same
    /// body takes it over (at once), repeating the same call.
    pub async fn let_go(&self, ledger: &Ledger, token: &str) -> Result<(), BillingError> {
        let result = ledger
            .client()
            .update_item()
            .table_name(ledger.table())
            .key("pk", AttributeValue::S(self.pk.clone()))
            .key("sk", AttributeValue::S("IDEM".into()))
            .update_expression("REMOVE claim")
            .condition_expression("claim = :token")
            .expression_attribute_values(":token", AttributeValue::S(token.to_owned()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Taken over already (our lease ran out), or completed.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(LedgerError::dynamo("UpdateItem", &err).into()),
        }
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
        self.read(ledger)
            .await?
            .as_ref()
            .map(|item| self.judge(item))
            .transpose()
    }

    async fn read(&self, ledger: &Ledger) -> Result<Option<AttrMap>, BillingError> {
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
        Ok(out.item)
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

fn lease_until() -> AttributeValue {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    AttributeValue::N((now + CLAIM_LEASE_SECONDS).to_string())
}

fn replay(existing: Existing) -> Result<StoredResponse, BillingError> {
    match existing {
        Existing::Replay(response) => Ok(response),
        Existing::InProgress => Err(BillingError::IdempotencyInProgress),
    }
}
