//! One transaction of the caller's history by its list id
//! (`GET /api/billing/transactions/{id}`), with what a receipt shows: the
//! PayPal order, the refund, the service charge or the admin grant it
//! belongs to. Anything not the caller's is "not found".
//!
//! Ids are those of the transactions list:
//!
//! | id | item | found through |
//! | --- | --- | --- |
//! | `cc-<seq>` | ledger entry | `GetItem` of `USER#<caller>`/`ENTRY#<seq>` |
//! | `<orderId>` | token purchase | the order (`ORDER#<id>`: owner, `historySk`) |
//! | `<orderId>-<refundId>` | what a refund or reversal of it took back | the refund record (`REFUND#<id>`: order, `historySk`) |
//! | `vfgrant-<hex>` / `vfremove-<hex>` | an admin's grant / its removal | the grant (`VFGRANT#vfgrant-<hex>`) |
//!
//! The line itself is always read in the caller's own partition, so an id
//! that names someone else's order or grant finds nothing.

use super::HistoryItem;
use crate::BillingError;
use crate::orders::{OrderRecord, PurchaseKind};
use crate::purchases::{TokenPurchase, token_line};
use crate::services::Charge;
use crate::store::refunds::RefundRecord;
use crate::tokens::grants::{GRANT_PREFIX, REMOVAL_PREFIX, TokenGrant, load_grant};
use ledger::{EntryKind, Ledger, UserId};

/// A transaction and what it belongs to (each `None` when it has no such reference).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionDetail {
    pub item: HistoryItem,
    /// The PayPal order it settles, refunds or reverses.
    pub order: Option<OrderRecord>,
    /// The refund or reversal (token lines; a credits refund entry names
    /// its order only: entries carry no refund id).
    pub refund: Option<RefundRecord>,
    /// The platform service charge it is, or refunds.
    pub charge: Option<Charge>,
    /// The admin grant it is, or removes.
    pub grant: Option<TokenGrant>,
}

impl TransactionDetail {
    fn of(item: HistoryItem) -> TransactionDetail {
        TransactionDetail {
            item,
            order: None,
            refund: None,
            charge: None,
            grant: None,
        }
    }
}

fn not_found() -> BillingError {
    BillingError::NotFound("Transaction")
}

/// The caller's transaction `id` (404 for anything else).
#[tracing::instrument(skip_all, fields(user = %user))]
pub async fn transaction(
    ledger: &Ledger,
    user: &UserId,
    id: &str,
) -> Result<TransactionDetail, BillingError> {
    let plausible = !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !plausible {
        return Err(not_found());
    }
    if let Some(seq) = credit_seq(id) {
        return credit(ledger, user, seq).await;
    }
    let found = if let Some(hex) = id
        .strip_prefix(GRANT_PREFIX)
        .or_else(|| id.strip_prefix(REMOVAL_PREFIX))
    {
        admin_line(ledger, user, hex, id.starts_with(REMOVAL_PREFIX)).await?
    } else {
        match purchase(ledger, user, id).await? {
            Some(found) => Some(found),
            None => refund_line(ledger, user, id).await?,
        }
    };
    found.ok_or_else(not_found)
}

/// `cc-<seq>`: a positive entry number without leading zeros.
fn credit_seq(id: &str) -> Option<u64> {
    let digits = id.strip_prefix("cc-")?;
    let ok = !digits.is_empty()
        && digits.len() <= ledger::keys::SEQ_WIDTH
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| digits.parse().ok()).flatten()
}

async fn credit(
    ledger: &Ledger,
    user: &UserId,
    seq: u64,
) -> Result<TransactionDetail, BillingError> {
    let entry = ledger.entry(user, seq).await?.ok_or_else(not_found)?;
    let pays_an_order = matches!(
        entry.kind,
        EntryKind::Purchase
            | EntryKind::Refund
            | EntryKind::Reversal
            | EntryKind::RefundReverted
            | EntryKind::ReversalCancelled
    );
    let order = match (&entry.reference, pays_an_order) {
        (Some(order_id), true) => own_order(ledger, user, order_id).await?,
        _ => None,
    };
    let charge = match entry.service.as_ref().and_then(|s| s.charge_id.as_deref()) {
        Some(charge_id) => crate::services::charges::get(ledger, charge_id)
            .await?
            .filter(|c| &c.user == user),
        None => None,
    };
    Ok(TransactionDetail {
        order,
        charge,
        ..TransactionDetail::of(HistoryItem::Credits(entry))
    })
}

async fn own_order(
    ledger: &Ledger,
    user: &UserId,
    order_id: &str,
) -> Result<Option<OrderRecord>, BillingError> {
    Ok(crate::orders::load(ledger, order_id)
        .await?
        .filter(|o| &o.user == user))
}

/// A token purchase: the order's own history line.
async fn purchase(
    ledger: &Ledger,
    user: &UserId,
    order_id: &str,
) -> Result<Option<TransactionDetail>, BillingError> {
    let Some((order, history_sk)) = crate::orders::load_with_history_sk(ledger, order_id).await?
    else {
        return Ok(None);
    };
    if &order.user != user || order.kind != PurchaseKind::Tokens {
        return Ok(None);
    }
    let Some(line) = line(ledger, user, history_sk.as_deref(), "purchase").await? else {
        return Ok(None);
    };
    Ok(Some(TransactionDetail {
        order: Some(order),
        ..TransactionDetail::of(HistoryItem::Tokens(line))
    }))
}

/// `<orderId>-<refundId>`: what a refund or reversal of a token purchase took back.
async fn refund_line(
    ledger: &Ledger,
    user: &UserId,
    id: &str,
) -> Result<Option<TransactionDetail>, BillingError> {
    let Some((order_id, refund_id)) = id.rsplit_once('-') else {
        return Ok(None);
    };
    let Some(refund) = crate::store::refunds::load(ledger, refund_id)
        .await?
        .filter(|r| r.order_id == order_id)
    else {
        return Ok(None);
    };
    let Some(order) = own_order(ledger, user, order_id).await? else {
        return Ok(None);
    };
    let kind = refund.movement.as_str();
    let Some(line) = line(ledger, user, refund.history_sk.as_deref(), kind).await? else {
        return Ok(None);
    };
    Ok(Some(TransactionDetail {
        order: Some(order),
        refund: Some(refund),
        ..TransactionDetail::of(HistoryItem::Tokens(line))
    }))
}

async fn admin_line(
    ledger: &Ledger,
    user: &UserId,
    hex: &str,
    removal: bool,
) -> Result<Option<TransactionDetail>, BillingError> {
    let Some(grant) = load_grant(ledger, &format!("{GRANT_PREFIX}{hex}"))
        .await?
        .filter(|g| &g.user == user)
    else {
        return Ok(None);
    };
    let (sk, kind) = if removal {
        (
            grant.removal.as_ref().and_then(|r| r.history_sk.clone()),
            crate::purchases::ADMIN_REMOVE,
        )
    } else {
        (grant.history_sk.clone(), crate::purchases::ADMIN_ADD)
    };
    let Some(line) = line(ledger, user, sk.as_deref(), kind).await? else {
        return Ok(None);
    };
    Ok(Some(TransactionDetail {
        grant: Some(grant),
        ..TransactionDetail::of(HistoryItem::Tokens(line))
    }))
}

/// The caller's history line at `sk`, if it is of `kind`.
async fn line(
    ledger: &Ledger,
    user: &UserId,
    sk: Option<&str>,
    kind: &str,
) -> Result<Option<TokenPurchase>, BillingError> {
    let Some(sk) = sk else {
        return Ok(None);
    };
    Ok(token_line(ledger, user, sk)
        .await?
        .filter(|l| l.kind == kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_ids_are_entry_numbers() {
        assert_eq!(credit_seq("cc-1"), Some(1));
        assert_eq!(credit_seq("cc-42"), Some(42));
        for other in [
            "cc-",
            "cc-0",
            "cc-01",
            "cc-1a",
            "cc--1",
            "cc-1234567890123",
            "7",
            "ORDER-1",
        ] {
            assert_eq!(credit_seq(other), None, "{other}");
        }
    }
}
