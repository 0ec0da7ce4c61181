//! Admins grant VirtFusion tokens to a user and take a grant back (API.md
//! "token management"): `POST /api/admin/users/{id}/virtfusion-tokens` and
//! `DELETE …/virtfusion-tokens/{creditId}`.
//!
//! VirtFusion cannot look a credit up by reference, so a grant is sent at
//! most once, under a claim recorded *before* the call, in one transaction
//! with the admin's `Idempotency-Key` record (required):
//!
//! 1. the key's record (in progress) and the grant `sending` are written
//!    together; a concurrent or retried request with the key finds them and
//!    answers 409 (still running) or the stored answer, and never sends;
//! 2. VirtFusion is called once;
//! 3. the outcome is written in one transaction with the history line and
//!    the key's completed record: credited → `granted` (credit id, credit
//!    pointer), 200; surely not sent (refused, 4xx) → `failed` and the key's
//!    record deleted (a retry with the key sends again), 502/503/404;
//!    uncertain (timeout or 5xx after sending) → `needs_review`, listed with
//!    the purchase deliveries (`GET /api/admin/virtfusion-deliveries`) and
//!    answered **202** `{"status": "needs_review"}` like an uncertain
//!    purchase delivery — never retried blindly.
//!
//! A request whose Lambda died between 1 and 3 leaves a claim that goes to
//! review after [`crate::tokens::review::STALE_CLAIM_SECONDS`] (the renewal job's
//! sweep, or a retry with the key). Removal is the same flow on the same
//! record (`granted → removing → removed | removal_review`), and only for a
//! credit this route granted to the user in the path (the credit pointer):
//! VirtFusion's `DELETE /credit/{id}` names no user. Token purchases are
//! taken back by refunds, not here.

mod store;

pub use store::{GrantState, Removal, TokenGrant, load as load_grant};

use crate::events::{DetailType, Event};
use crate::idempotency::{Existing, IdempotencyKey, StoredResponse};
use crate::purchases::{ADMIN_ADD, ADMIN_REMOVE, AdminLine, TokenPurchase};
use crate::{BillingError, Reason};
use aws_sdk_dynamodb::types::{AttributeValue, Delete, TransactWriteItem};
use billing_money::Tokens;
use ledger::{Ledger, LedgerError, UserId};
use serde_json::json;
use store::{Claim, GrantUpdate};
use virtfusion::{CreditId, VirtFusionClient, VirtFusionError};

/// Grant ids (also the grant's line id in the history): `vfgrant-<hex>`.
pub const GRANT_PREFIX: &str = "vfgrant-";
/// The removal's line id in the history: `vfremove-<hex>` (same hex).
pub const REMOVAL_PREFIX: &str = "vfremove-";
/// Largest grant: 10,000,000 tokens ($100,000.00, the admin credit limit).
pub const MAX_ADMIN_TOKENS: i64 = 10_000_000;

/// Tokens of a grant: 1 ..= 10,000,000.
pub fn grant_tokens(raw: i64) -> Result<Tokens, BillingError> {
    if !(1..=MAX_ADMIN_TOKENS).contains(&raw) {
        return Err(BillingError::InvalidInput(format!(
            "tokens must be a whole number from 1 to {MAX_ADMIN_TOKENS}"
        )));
    }
    Ok(Tokens::new(raw))
}

/// A VirtFusion credit id in a path: a positive whole number.
pub fn credit_id(raw: &str) -> Result<u64, BillingError> {
    raw.parse::<u64>()
        .ok()
        .filter(|id| *id > 0 && raw.len() <= 20 && raw.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            BillingError::InvalidInput("creditId must be a positive whole number".into())
        })
}

/// The removal line id of a grant.
pub fn removal_id(grant_id: &str) -> String {
    format!(
        "{REMOVAL_PREFIX}{}",
        grant_id.strip_prefix(GRANT_PREFIX).unwrap_or(grant_id)
    )
}

#[derive(Clone, Debug)]
pub struct GrantRequest {
    pub target: UserId,
    pub admin_id: String,
    pub tokens: Tokens,
    pub reason: Reason,
}

impl GrantRequest {
    /// The request in canonical form, for the idempotency fingerprint.
    pub fn canonical(&self) -> String {
        format!(
            "grant|{}|{}|{}",
            self.target,
            self.tokens.get(),
            self.reason.as_str()
        )
    }
}

#[derive(Clone, Debug)]
pub struct RemovalRequest {
    pub target: UserId,
    pub admin_id: String,
    pub credit_id: u64,
    pub reason: Reason,
}

impl RemovalRequest {
    pub fn canonical(&self) -> String {
        format!(
            "remove|{}|{}|{}",
            self.target,
            self.credit_id,
            self.reason.as_str()
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operation {
    Grant,
    Remove,
}

/// `POST /api/admin/users/{id}/virtfusion-tokens`.
#[tracing::instrument(skip_all, fields(user = %req.target, tokens = req.tokens.get()))]
pub async fn grant(
    ledger: &Ledger,
    virtfusion: Option<&VirtFusionClient>,
    req: &GrantRequest,
    key: &IdempotencyKey,
) -> Result<StoredResponse, BillingError> {
    let grant_id = format!("{GRANT_PREFIX}{}", key.derived_id());
    if let Some(existing) = key.lookup(ledger).await? {
        return resume(
            ledger,
            virtfusion,
            key,
            &grant_id,
            Operation::Grant,
            existing,
        )
        .await;
    }
    let client = virtfusion.ok_or_else(unavailable)?;
    let now = ledger::now_rfc3339();
    let grant = TokenGrant {
        id: grant_id.clone(),
        user: req.target.clone(),
        tokens: req.tokens,
        admin_id: req.admin_id.clone(),
        reason: req.reason.as_str().to_owned(),
        state: GrantState::Sending,
        credit_id: None,
        created_at: now.clone(),
        claim: Some(uuid::Uuid::new_v4().simple().to_string()),
        claimed_at: Some(now),
        history_sk: None,
        review_reason: None,
        removal: None,
    };
    match store::claim_new(ledger, &grant, key).await? {
        Claim::Claimed => {}
        Claim::KeyTaken(item) => {
            let existing = judged(ledger, key, item).await?;
            return resume(
                ledger,
                virtfusion,
                key,
                &grant_id,
                Operation::Grant,
                existing,
            )
            .await;
        }
        Claim::GrantExists => {
            // Its key's record is gone (kept 48 h; the grant forever).
            let grant = store::load(ledger, &grant_id)
                .await?
                .ok_or(BillingError::IdempotencyInProgress)?;
            return answer(ledger, virtfusion, key, &grant, Operation::Grant).await;
        }
    }
    let outcome = client
        .add_tokens(grant.user.as_str(), grant.tokens, &grant.id)
        .await;
    settle_grant(ledger, client, &grant, key, outcome).await
}

async fn settle_grant(
    ledger: &Ledger,
    client: &VirtFusionClient,
    grant: &TokenGrant,
    key: &IdempotencyKey,
    outcome: Result<CreditId, VirtFusionError>,
) -> Result<StoredResponse, BillingError> {
    let table = ledger.table();
    let claim = grant.claim.as_deref();
    let leaving = || GrantUpdate::leaving(&grant.id, GrantState::Sending, claim);
    match outcome {
        Ok(credit_id) => {
            let credit_id = credit_id.get();
            let balance = whole_balance(Some(client), &grant.user).await;
            let response = grant_response(grant, Some(credit_id), balance, false);
            let line = grant_line(grant, Some(credit_id), "completed");
            let update = leaving()
                .state(GrantState::Granted)
                .set("creditId", AttributeValue::N(credit_id.to_string()))
                .set_s("historySk", &line.sort_key)
                .unindexed();
            let items = vec![
                update.item(table)?,
                store::credit_pointer_item(table, credit_id, grant)?,
                store::line_item(table, &grant.user, &line)?,
                key.complete_item(table, &response)?,
            ];
            if store::write(ledger, items).await? {
                tracing::info!(grant_id = %grant.id, credit_id, "tokens granted");
                return Ok(response);
            }
            // The claim was taken (the stale-claim sweep sent the grant to
            // review while VirtFusion answered): keep the credit id, so the
            // grant can be settled and removed, and stay on the review list.
            tracing::error!(grant_id = %grant.id, credit_id, "VirtFusion credited a grant whose claim was lost; to review");
            let kept = GrantUpdate::leaving(&grant.id, GrantState::NeedsReview, None)
                .set("creditId", AttributeValue::N(credit_id.to_string()))
                .set_s("reviewReason", "granted_after_claim_lost");
            store::write(
                ledger,
                vec![
                    kept.item(table)?,
                    store::credit_pointer_item(table, credit_id, grant)?,
                ],
            )
            .await?;
            let grant = reload(ledger, &grant.id).await?;
            answer(ledger, Some(client), key, &grant, Operation::Grant).await
        }
        Err(e) if e.is_definitely_not_applied() => {
            tracing::warn!(grant_id = %grant.id, error = %e, "VirtFusion refused the grant; nothing granted");
            let failed = leaving().state(GrantState::Failed).unindexed();
            store::write(ledger, vec![failed.item(table)?, key.release_item(table)?]).await?;
            Err(refused(&e))
        }
        Err(e) => {
            tracing::error!(grant_id = %grant.id, error = %e, "VirtFusion grant outcome unknown; needs review");
            let response = grant_response(grant, None, None, true);
            let line = grant_line(grant, None, "needs_review");
            let update = leaving()
                .under_review(GrantState::NeedsReview, grant, "uncertain_outcome")
                .set_s("historySk", &line.sort_key);
            let items = vec![
                update.item(table)?,
                store::line_item(table, &grant.user, &line)?,
                key.complete_item(table, &response)?,
                review_event(grant, "grant", "uncertain_outcome").item(table)?,
            ];
            if store::write(ledger, items).await? {
                return Ok(response);
            }
            let grant = reload(ledger, &grant.id).await?;
            answer(ledger, Some(client), key, &grant, Operation::Grant).await
        }
    }
}

/// `DELETE /api/admin/users/{id}/virtfusion-tokens/{creditId}`.
#[tracing::instrument(skip_all, fields(user = %req.target, credit_id = req.credit_id))]
pub async fn remove(
    ledger: &Ledger,
    virtfusion: Option<&VirtFusionClient>,
    req: &RemovalRequest,
    key: &IdempotencyKey,
) -> Result<StoredResponse, BillingError> {
    // Only a credit granted here to this very user: 404 for any other.
    let grant_id = match store::load_credit(ledger, req.credit_id).await? {
        Some((grant_id, owner)) if owner == req.target => grant_id,
        _ => return Err(BillingError::NotFound("Credit")),
    };
    if let Some(existing) = key.lookup(ledger).await? {
        return resume(
            ledger,
            virtfusion,
            key,
            &grant_id,
            Operation::Remove,
            existing,
        )
        .await;
    }
    let client = virtfusion.ok_or_else(unavailable)?;
    let mut grant = reload(ledger, &grant_id).await?;
    if grant.state != GrantState::Granted {
        return Err(not_removable(grant.state));
    }
    let removal = Removal {
        admin_id: req.admin_id.clone(),
        reason: req.reason.as_str().to_owned(),
        history_sk: None,
    };
    let claim = uuid::Uuid::new_v4().simple().to_string();
    match store::claim_removal(ledger, &grant, &removal, &claim, key).await? {
        Claim::Claimed => {}
        Claim::KeyTaken(item) => {
            let existing = judged(ledger, key, item).await?;
            return resume(
                ledger,
                virtfusion,
                key,
                &grant_id,
                Operation::Remove,
                existing,
            )
            .await;
        }
        Claim::GrantExists => {
            // Moved since it was read (another removal, a review).
            return Err(not_removable(reload(ledger, &grant_id).await?.state));
        }
    }
    grant.state = GrantState::Removing;
    grant.claim = Some(claim);
    grant.removal = Some(removal);
    let outcome = client.remove_credit(CreditId(req.credit_id)).await;
    settle_removal(ledger, client, &grant, key, outcome).await
}

async fn settle_removal(
    ledger: &Ledger,
    client: &VirtFusionClient,
    grant: &TokenGrant,
    key: &IdempotencyKey,
    outcome: Result<(), VirtFusionError>,
) -> Result<StoredResponse, BillingError> {
    let table = ledger.table();
    let leaving = || GrantUpdate::leaving(&grant.id, GrantState::Removing, grant.claim.as_deref());
    let back = || {
        leaving()
            .state(GrantState::Granted)
            .unindexed()
            .remove("removedBy")
            .remove("removalReason")
    };
    match outcome {
        Ok(()) => {
            let balance = whole_balance(Some(client), &grant.user).await;
            let response = removal_response(grant, balance, true);
            let line = removal_line(grant, "completed");
            let update = leaving()
                .state(GrantState::Removed)
                .set_s("removalHistorySk", &line.sort_key)
                .set_s("removedAt", &line.created_at)
                .unindexed();
            let items = vec![
                update.item(table)?,
                store::line_item(table, &grant.user, &line)?,
                key.complete_item(table, &response)?,
            ];
            if store::write(ledger, items).await? {
                tracing::info!(grant_id = %grant.id, "granted tokens removed");
                return Ok(response);
            }
            tracing::error!(grant_id = %grant.id, "VirtFusion removed a credit whose removal claim was lost; stays in review");
            let grant = reload(ledger, &grant.id).await?;
            answer(ledger, Some(client), key, &grant, Operation::Remove).await
        }
        Err(VirtFusionError::Rejected { status: 404 }) => {
            store::write(ledger, vec![back().item(table)?, key.release_item(table)?]).await?;
            Err(BillingError::Conflict {
                message: "VirtFusion has no credit with this id (removed outside the panel?); nothing was changed".into(),
                code: "credit_not_found_at_virtfusion",
            })
        }
        Err(e) if e.is_definitely_not_applied() => {
            tracing::warn!(grant_id = %grant.id, error = %e, "VirtFusion refused the removal; nothing removed");
            store::write(ledger, vec![back().item(table)?, key.release_item(table)?]).await?;
            Err(refused(&e))
        }
        Err(e) => {
            tracing::error!(grant_id = %grant.id, error = %e, "VirtFusion removal outcome unknown; needs review");
            let response = removal_response(grant, None, false);
            let line = removal_line(grant, "needs_review");
            let update = leaving()
                .under_review(GrantState::RemovalReview, grant, "uncertain_outcome")
                .set_s("removalHistorySk", &line.sort_key);
            let items = vec![
                update.item(table)?,
                store::line_item(table, &grant.user, &line)?,
                key.complete_item(table, &response)?,
                review_event(grant, "removal", "uncertain_outcome").item(table)?,
            ];
            if store::write(ledger, items).await? {
                return Ok(response);
            }
            let grant = reload(ledger, &grant.id).await?;
            answer(ledger, Some(client), key, &grant, Operation::Remove).await
        }
    }
}

/// A request whose key has a record: its stored answer, 409 while the first
/// request still holds its claim, or (a claim abandoned by a dead Lambda)
/// the review answer.
async fn resume(
    ledger: &Ledger,
    virtfusion: Option<&VirtFusionClient>,
    key: &IdempotencyKey,
    grant_id: &str,
    operation: Operation,
    existing: Existing,
) -> Result<StoredResponse, BillingError> {
    match existing {
        Existing::Replay(response) => Ok(response),
        Existing::InProgress => {
            let grant = store::load(ledger, grant_id)
                .await?
                .ok_or(BillingError::IdempotencyInProgress)?;
            let claimed = matches!(
                (operation, grant.state),
                (Operation::Grant, GrantState::Sending) | (Operation::Remove, GrantState::Removing)
            );
            if !claimed {
                return answer(ledger, virtfusion, key, &grant, operation).await;
            }
            if !is_stale(&grant, time::OffsetDateTime::now_utc()) {
                return Err(BillingError::IdempotencyInProgress);
            }
            abandon(ledger, &grant).await?;
            let grant = reload(ledger, grant_id).await?;
            answer(ledger, virtfusion, key, &grant, operation).await
        }
    }
}

/// The answer a settled grant gives to its key's retries (stored with the key).
async fn answer(
    ledger: &Ledger,
    virtfusion: Option<&VirtFusionClient>,
    key: &IdempotencyKey,
    grant: &TokenGrant,
    operation: Operation,
) -> Result<StoredResponse, BillingError> {
    use GrantState::*;
    let response = match (operation, grant.state) {
        (Operation::Grant, Sending) | (Operation::Remove, Removing) => {
            return Err(BillingError::IdempotencyInProgress);
        }
        (Operation::Grant, NeedsReview) => grant_response(grant, grant.credit_id, None, true),
        (Operation::Grant, Failed) | (Operation::Remove, Granted) => {
            // Surely not done, yet the key's record stayed: free the key.
            store::write(ledger, vec![key.release_item(ledger.table())?]).await?;
            return Err(unavailable());
        }
        (Operation::Grant, _) => grant_response(
            grant,
            grant.credit_id,
            whole_balance(virtfusion, &grant.user).await,
            false,
        ),
        (Operation::Remove, Removed) => {
            removal_response(grant, whole_balance(virtfusion, &grant.user).await, true)
        }
        (Operation::Remove, _) => removal_response(grant, None, false),
    };
    key.complete(ledger, &response).await?;
    Ok(response)
}

/// A claim older than this belongs to a request whose Lambda died.
fn is_stale(grant: &TokenGrant, now: time::OffsetDateTime) -> bool {
    let cutoff = ledger::format_rfc3339(
        now - time::Duration::seconds(crate::tokens::review::STALE_CLAIM_SECONDS),
    );
    grant
        .claimed_at
        .as_deref()
        .is_some_and(|at| at < cutoff.as_str())
}

/// An abandoned claim (`sending` / `removing`): to review, with its history
/// line, never sent again. `false` when the claim moved on meanwhile.
async fn abandon(ledger: &Ledger, grant: &TokenGrant) -> Result<bool, BillingError> {
    let table = ledger.table();
    let (to, line, line_attribute, operation) = match grant.state {
        GrantState::Sending => (
            GrantState::NeedsReview,
            grant_line(grant, None, "needs_review"),
            "historySk",
            "grant",
        ),
        GrantState::Removing => (
            GrantState::RemovalReview,
            removal_line(grant, "needs_review"),
            "removalHistorySk",
            "removal",
        ),
        _ => return Ok(false),
    };
    let update = GrantUpdate::leaving(&grant.id, grant.state, grant.claim.as_deref())
        .under_review(to, grant, "claim_abandoned")
        .set_s(line_attribute, &line.sort_key);
    let moved = store::write(
        ledger,
        vec![
            update.item(table)?,
            store::line_item(table, &grant.user, &line)?,
            review_event(grant, operation, "claim_abandoned").item(table)?,
        ],
    )
    .await?;
    if moved {
        tracing::error!(grant_id = %grant.id, "stale VirtFusion grant claim moved to review");
    }
    Ok(moved)
}

/// `tokens.delivery_needs_review` of an admin grant (`operation`: `grant`
/// or `removal`) going to review: once per claim that ended there (its key
/// names the claim), committed with the state change.
fn review_event(grant: &TokenGrant, operation: &str, reason: &str) -> Event {
    let claim = grant.claim.as_deref().or(grant.claimed_at.as_deref());
    Event::new(
        DetailType::TokensDeliveryNeedsReview,
        &format!(
            "{}#{operation}#{}",
            store::grant_pk(&grant.id),
            claim.unwrap_or_default()
        ),
        &grant.user,
    )
    .text("grantId", &grant.id)
    .text("operation", operation)
    .value("tokens", grant.tokens.get())
    .text("adminId", &grant.admin_id)
    .text("reason", reason)
}

/// Claims left by requests whose Lambda died, among the keys of the
/// claimed-delivery partition (the renewal job's sweep,
/// [`crate::tokens::review::review_stale_claims`]): to review. Returns how many moved.
#[tracing::instrument(skip_all, fields(claims = keys.len()))]
pub async fn review_stale_grants(
    ledger: &Ledger,
    keys: &[ledger::AttrMap],
    now: time::OffsetDateTime,
) -> Result<u32, BillingError> {
    let mut moved = 0;
    for grant_id in keys.iter().filter_map(grant_id_of_key) {
        if let Some(grant) = store::load(ledger, &grant_id).await?
            && matches!(grant.state, GrantState::Sending | GrantState::Removing)
            && is_stale(&grant, now)
            && abandon(ledger, &grant).await?
        {
            moved += 1;
        }
    }
    Ok(moved)
}

/// The grant id of an index key (`VFGRANT#<id>`), if it names a grant.
pub fn grant_id_of_key(key: &ledger::AttrMap) -> Option<String> {
    match key.get("pk") {
        Some(AttributeValue::S(pk)) => pk.strip_prefix("VFGRANT#").map(str::to_owned),
        _ => None,
    }
}

/// An admin settles a grant or removal under review (`POST
/// /api/admin/virtfusion-deliveries/{grantId}/resolve`): `delivered: true`
/// means VirtFusion applied it (granted / removed; the line completes);
/// `false` that it did not (a grant becomes `failed`, a removal goes back to
/// `granted`; the line of what never happened is deleted). Otherwise 409.
#[tracing::instrument(skip_all, fields(grant = grant_id, delivered, admin = admin_id))]
pub async fn resolve(
    ledger: &Ledger,
    grant_id: &str,
    found: super::review::Found,
    admin_id: &str,
    reason: &Reason,
) -> Result<TokenGrant, BillingError> {
    use super::review::Found;
    let table = ledger.table();
    let grant = store::load(ledger, grant_id)
        .await?
        .ok_or(BillingError::NotFound("Delivery"))?;
    // `delivered`: the grant (or its removal) took effect at VirtFusion.
    let (delivered, credit_id) = match found {
        Found::Nothing => (false, None),
        Found::Credit(credit_id) => (true, credit_id.or(grant.credit_id)),
    };
    let removal_sk = grant.removal.as_ref().and_then(|r| r.history_sk.clone());
    let (to, line_sk) = match (grant.state, delivered) {
        (GrantState::NeedsReview, true) => (GrantState::Granted, grant.history_sk.clone()),
        (GrantState::NeedsReview, false) => (GrantState::Failed, grant.history_sk.clone()),
        (GrantState::RemovalReview, true) => (GrantState::Removed, removal_sk),
        (GrantState::RemovalReview, false) => (GrantState::Granted, removal_sk),
        _ => return Err(not_in_review()),
    };
    let mut update = GrantUpdate::leaving(grant_id, grant.state, None)
        .state(to)
        .set_s("resolvedBy", admin_id)
        .set_s("resolution", reason.as_str())
        .set_s("resolvedAt", &ledger::now_rfc3339())
        .unindexed();
    // A grant settled as granted with the credit id the admin found can be
    // removed through the API later (the pointer names it).
    let pointer = match (grant.state, delivered, credit_id) {
        (GrantState::NeedsReview, true, Some(credit_id)) => {
            update = update.set("creditId", AttributeValue::N(credit_id.to_string()));
            Some(store::credit_pointer_item(table, credit_id, &grant)?)
        }
        _ => None,
    };
    update = match (grant.state, delivered) {
        (GrantState::NeedsReview, false) => update.remove("historySk"),
        (GrantState::RemovalReview, false) => update
            .remove("removedBy")
            .remove("removalReason")
            .remove("removalHistorySk"),
        _ => update,
    };
    let mut items = vec![update.item(table)?];
    items.extend(pointer);
    if let Some(sk) = line_sk {
        items.push(if delivered {
            store::line_status_item(table, &grant.user, &sk, "completed")?
        } else {
            delete_line(table, &grant.user, &sk)?
        });
    }
    if !store::write(ledger, items).await? {
        return Err(not_in_review());
    }
    reload(ledger, grant_id).await
}

fn delete_line(table: &str, user: &UserId, sk: &str) -> Result<TransactWriteItem, LedgerError> {
    let delete = Delete::builder()
        .table_name(table)
        .key("pk", AttributeValue::S(user.pk()))
        .key("sk", AttributeValue::S(sk.to_owned()))
        .build()
        .map_err(|e| LedgerError::corrupt("token line", e.to_string()))?;
    Ok(TransactWriteItem::builder().delete(delete).build())
}

fn grant_line(grant: &TokenGrant, credit_id: Option<u64>, status: &str) -> TokenPurchase {
    let now = ledger::now_rfc3339();
    TokenPurchase {
        order_id: grant.id.clone(),
        kind: ADMIN_ADD.into(),
        tokens: grant.tokens,
        status: status.into(),
        description: format!("Tokens added by admin: {}", grant.reason),
        sort_key: TokenPurchase::sort_key_for(&now, &grant.id),
        created_at: now,
        admin: Some(AdminLine {
            admin_id: grant.admin_id.clone(),
            reason: grant.reason.clone(),
            credit_id,
        }),
    }
}

fn removal_line(grant: &TokenGrant, status: &str) -> TokenPurchase {
    let now = ledger::now_rfc3339();
    let (admin_id, reason) = grant
        .removal
        .as_ref()
        .map(|r| (r.admin_id.clone(), r.reason.clone()))
        .unwrap_or_default();
    TokenPurchase {
        order_id: grant.id.clone(),
        kind: ADMIN_REMOVE.into(),
        tokens: Tokens::new(-grant.tokens.get()),
        status: status.into(),
        description: format!("Tokens removed by admin: {reason}"),
        sort_key: TokenPurchase::sort_key_for(&now, &removal_id(&grant.id)),
        created_at: now,
        admin: Some(AdminLine {
            admin_id,
            reason,
            credit_id: grant.credit_id,
        }),
    }
}

/// 200 when granted (with the VirtFusion balance after it, `null` if it
/// could not be read), 202 while the outcome is under review.
fn grant_response(
    grant: &TokenGrant,
    credit_id: Option<u64>,
    balance: Option<i64>,
    in_review: bool,
) -> StoredResponse {
    StoredResponse {
        status: if in_review { 202 } else { 200 },
        body: json!({
            "success": true,
            "status": if in_review { "needs_review" } else { "completed" },
            "grantId": grant.id,
            "tokens": grant.tokens.get(),
            "creditId": credit_id,
            "balance": balance,
        }),
    }
}

fn removal_response(grant: &TokenGrant, balance: Option<i64>, removed: bool) -> StoredResponse {
    StoredResponse {
        status: if removed { 200 } else { 202 },
        body: json!({
            "success": true,
            "status": if removed { "completed" } else { "needs_review" },
            "grantId": grant.id,
            "tokens": grant.tokens.get(),
            "creditId": grant.credit_id,
            "balance": balance,
        }),
    }
}

async fn whole_balance(virtfusion: Option<&VirtFusionClient>, user: &UserId) -> Option<i64> {
    match virtfusion?.token_balance(user.as_str()).await {
        Ok(balance) => Some(balance.whole().get()),
        Err(e) => {
            tracing::warn!(error = %e, "VirtFusion balance unreadable after a token change");
            None
        }
    }
}

async fn judged(
    ledger: &Ledger,
    key: &IdempotencyKey,
    item: Option<ledger::AttrMap>,
) -> Result<Existing, BillingError> {
    match item {
        Some(item) => key.judge(&item),
        None => key
            .lookup(ledger)
            .await?
            .ok_or(BillingError::IdempotencyInProgress),
    }
}

async fn reload(ledger: &Ledger, grant_id: &str) -> Result<TokenGrant, BillingError> {
    store::load(ledger, grant_id)
        .await?
        .ok_or_else(|| LedgerError::corrupt(store::grant_pk(grant_id), "grant vanished").into())
}

fn unavailable() -> BillingError {
    BillingError::Upstream {
        service: "VirtFusion",
        transient: true,
    }
}

/// A VirtFusion refusal: nothing was applied.
fn refused(error: &VirtFusionError) -> BillingError {
    match error {
        VirtFusionError::Rejected { status: 404 } => BillingError::NotFound("VirtFusion user"),
        VirtFusionError::NotSent | VirtFusionError::Rejected { status: 429 } => unavailable(),
        _ => BillingError::Upstream {
            service: "VirtFusion",
            transient: false,
        },
    }
}

fn not_removable(state: GrantState) -> BillingError {
    let (message, code) = match state {
        GrantState::Removed => ("This credit was already removed", "credit_removed"),
        GrantState::Removing => (
            "A removal of this credit is in progress",
            "removal_in_progress",
        ),
        _ => ("This credit is under review", "under_review"),
    };
    BillingError::Conflict {
        message: message.into(),
        code,
    }
}

fn not_in_review() -> BillingError {
    BillingError::Conflict {
        message: "Delivery is not awaiting review".into(),
        code: "not_in_review",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_sizes_and_credit_ids_are_bounded() {
        assert!(grant_tokens(0).is_err());
        assert!(grant_tokens(-5).is_err());
        assert!(grant_tokens(10_000_001).is_err());
        assert_eq!(grant_tokens(1).unwrap().get(), 1);
        assert_eq!(grant_tokens(10_000_000).unwrap().get(), 10_000_000);
        assert_eq!(credit_id("1001").unwrap(), 1001);
        for bad in ["0", "", "-1", "+5", "1.5", "abc", "99999999999999999999999"] {
            assert!(credit_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn states_round_trip_and_ids_pair_up() {
        for state in GrantState::ALL {
            assert_eq!(GrantState::parse(state.as_str()), Some(state));
        }
        assert_eq!(GrantState::NeedsReview.as_str(), "needs_review");
        assert_eq!(GrantState::RemovalReview.as_str(), "removal_review");
        assert_eq!(removal_id("vfgrant-ab12"), "vfremove-ab12");
    }
}
