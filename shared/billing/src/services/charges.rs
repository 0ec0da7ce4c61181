//! Service charges: one `Ledger::apply` each.
//!
//! - **Charge**: the debit (entry `service_purchase_<serviceType>` naming
//!   the service and the charge) and the charge item, all or nothing; 402
//!   when the balance is short, also for a user who never had credits. The
//!   `Idempotency-Key` is required; the charge id is derived from the
//!   caller, key and request, and its item is created only if absent, so a
//!   retried or concurrent duplicate can never charge twice (it replays the
//!   first answer through the key's record).
//! - **Refund**: gives back part or all of what is left (default: all of
//!   it); the credit (entry `service_refund_<serviceType>`, with the reason)
//!   and the charge's `refundedAmount` raised from the value read, all or
//!   nothing. More than is left is 400. Concurrent refunds of one charge
//!   re-read and are judged again (bounded).

use super::charge_store::{Charge, get_charge};
use super::{description, service_amount, service_id, service_type, target_user};
use crate::events::{self, DetailType, Event};
use crate::idempotency::{IdempotencyKey, StoredResponse, apply_with_key};
use crate::{BillingError, Reason};
use billing_money::Usd;
use ledger::{Change, EntryDetails, EntryKind, Ledger, LedgerError, Preview};

/// A charge request as received (already JSON-parsed).
#[derive(Clone, Debug)]
pub struct ChargeRequest {
    pub user_id: String,
    pub amount: Usd,
    pub service_type: String,
    pub service_id: String,
    pub description: String,
}

/// A validated charge, ready to apply.
#[derive(Clone, Debug)]
pub struct PreparedCharge {
    pub charge: Charge,
    pub key: IdempotencyKey,
}

/// Validates a charge request (400 on any bad field) and names it by the key.
pub fn prepare_charge(
    caller: &ledger::UserId,
    key: &str,
    request: ChargeRequest,
) -> Result<PreparedCharge, BillingError> {
    let user = target_user(&request.user_id)?;
    let amount = service_amount(request.amount, "amount")?;
    let service_type = service_type(&request.service_type)?;
    let service_id = service_id(&request.service_id)?;
    let description = description(&request.description)?;
    let canonical = format!(
        "{}|{}|{}|{}|{}",
        user, amount, service_type, service_id, description
    );
    let key = IdempotencyKey::new(caller, key, "service-charge", &canonical);
    Ok(PreparedCharge {
        charge: Charge {
            id: format!("ch_{}", key.derived_id()),
            user,
            amount,
            refunded: Usd::ZERO,
            service_type,
            service_id,
            description,
            created_at: ledger::now_rfc3339(),
            charged_by: caller.as_str().to_owned(),
        },
        key,
    })
}

fn charge_refusal(err: LedgerError) -> BillingError {
    match err {
        LedgerError::InsufficientBalance { balance } => BillingError::InsufficientFunds { balance },
        // The charge id exists: only a request with this key and body makes
        // it, and its record is replayed before this is reached.
        LedgerError::ConditionFailed { index: 0, .. } => BillingError::IdempotencyInProgress,
        other => other.into(),
    }
}

/// Applies a prepared charge: debit + charge item + key record, one
/// transaction. `success` builds the response from the charge and the
/// state the change produces (it is stored for replays).
#[tracing::instrument(skip_all, fields(user = %prepared.charge.user, charge = %prepared.charge.id))]
pub async fn charge<S>(
    ledger: &Ledger,
    prepared: PreparedCharge,
    success: S,
) -> Result<StoredResponse, BillingError>
where
    S: Fn(&Charge, &Preview) -> StoredResponse + Send + Sync + Clone + 'static,
{
    let charge = prepared.charge;
    let details = EntryDetails::new(EntryKind::ServicePurchase, charge.description.clone())
        .service(
            charge.service_type.as_str(),
            Some(charge.service_id.clone()),
            Some(charge.id.clone()),
        )
        .reference(&charge.id);
    let charged = Event::new(
        DetailType::ServiceCharged,
        &format!("{}#charged", charge.id),
        &charge.user,
    )
    .text("chargeId", &charge.id)
    .text("serviceType", charge.service_type.as_str())
    .text("serviceId", &charge.service_id)
    .usd("amount", charge.amount);
    let change = Change::new(charge.user.clone(), -charge.amount, details)
        .with_item(charge.create_item(ledger.table())?)
        .with_item_for(events::outbox(ledger.table(), move |preview| {
            charged.clone().usd("balance", preview.balance_after)
        }));
    let stored = charge.clone();
    apply_with_key(
        ledger,
        change,
        Some(&prepared.key),
        move |preview| success(&stored, preview),
        charge_refusal,
    )
    .await
}

/// A refund request as received.
#[derive(Clone, Debug)]
pub struct RefundRequest {
    /// `None`: everything not yet refunded.
    pub amount: Option<Usd>,
    pub reason: String,
}

/// Bound on re-reads when concurrent refunds of one charge move first.
const MAX_REFUND_ROUNDS: u32 = 8;

/// Refunds (part of) a charge under the caller's key.
#[tracing::instrument(skip_all, fields(charge = charge_id))]
pub async fn refund<S>(
    ledger: &Ledger,
    caller: &ledger::UserId,
    charge_id: &str,
    key: &str,
    request: RefundRequest,
    success: S,
) -> Result<StoredResponse, BillingError>
where
    S: Fn(&Charge, &Preview) -> StoredResponse + Send + Sync + Clone + 'static,
{
    let reason = Reason::parse(&request.reason)?;
    let amount = request
        .amount
        .map(|a| service_amount(a, "amount"))
        .transpose()?;
    let canonical = format!(
        "{charge_id}|{}|{}",
        amount.map(|a| a.to_string()).unwrap_or_default(),
        reason.as_str()
    );
    let key = IdempotencyKey::new(caller, key, "service-charge-refund", &canonical);
    for _ in 0..MAX_REFUND_ROUNDS {
        // A retry of a refund that went through is answered as the first.
        if let Some(existing) = key.lookup(ledger).await? {
            return match existing {
                crate::idempotency::Existing::Replay(first) => Ok(first),
                crate::idempotency::Existing::InProgress => {
                    Err(BillingError::IdempotencyInProgress)
                }
            };
        }
        let charge = get_charge(ledger, charge_id)
            .await?
            .ok_or(BillingError::NotFound("Charge"))?;
        let left = charge.refundable();
        let give = amount.unwrap_or(left);
        if !left.is_positive() {
            return Err(BillingError::InvalidInput(
                "The charge is already fully refunded".into(),
            ));
        }
        if give > left {
            return Err(BillingError::InvalidInput(format!(
                "Refund exceeds what is left of the charge ({left})"
            )));
        }
        let refunded = charge
            .refunded
            .checked_add(give)
            .map_err(|_| BillingError::InvalidInput("amount out of range".into()))?;
        let details = EntryDetails::new(
            EntryKind::ServiceRefund,
            format!("Refund of {}: {}", charge.description, reason.as_str()),
        )
        .service(
            charge.service_type.as_str(),
            Some(charge.service_id.clone()),
            Some(charge.id.clone()),
        )
        .admin(caller.as_str(), reason.as_str())
        .reference(&charge.id);
        // Keyed by the refunded total it reaches: each refund of a charge
        // raises it, so each has its own event; a retry has the same one.
        let refunded_event = Event::new(
            DetailType::ServiceChargeRefunded,
            &format!("{}#refunded#{refunded}", charge.id),
            &charge.user,
        )
        .text("chargeId", &charge.id)
        .text("serviceType", charge.service_type.as_str())
        .text("serviceId", &charge.service_id)
        .text("reason", reason.as_str())
        .usd("amount", give)
        .usd("refundedAmount", refunded);
        let change = Change::new(charge.user.clone(), give, details)
            .with_item(charge.refund_item(ledger.table(), refunded)?)
            .with_item_for(events::outbox(ledger.table(), move |preview| {
                refunded_event.clone().usd("balance", preview.balance_after)
            }));
        let mut after = charge.clone();
        after.refunded = refunded;
        let success = success.clone();
        let result = apply_with_key(
            ledger,
            change,
            Some(&key),
            move |preview| success(&after, preview),
            |err| match err {
                LedgerError::ConditionFailed { index: 0, .. } => BillingError::Conflict {
                    message: "charge changed".into(),
                    code: "charge_changed",
                },
                other => other.into(),
            },
        )
        .await;
        match result {
            Err(BillingError::Conflict {
                code: "charge_changed",
                ..
            }) => continue,
            other => return other,
        }
    }
    Err(LedgerError::Contended {
        attempts: MAX_REFUND_ROUNDS,
    }
    .into())
}

pub use super::charge_store::get_charge as get;
