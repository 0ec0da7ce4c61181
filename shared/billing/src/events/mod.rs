//! Events for the operator and the platform services (API.md "Events"),
//! through an **outbox**: the event is one more item in the very
//! `TransactWriteItems` that makes the change it reports, so there is no
//! event without its change and no change without its event. The function
//! `events-publisher` reads the table's stream (new `OUTBOX#` items only) and
//! publishes them to EventBridge; a crash between the two delays an event,
//! never loses it.
//!
//! The whole API:
//!
//! - [`Event::new`]`(type, key, user)` + [`Event::usd`] / [`Event::text`]:
//!   the event. `key` names the change *deterministically* (a once-key, an
//!   order id and the state it reached, a subscription period): the
//!   `eventId` is derived from it, so a retried or raced write of the same
//!   change yields the same event (the same outbox item, published once).
//! - In a ledger change: `change.with_item_for(events::outbox(table, |preview| Event::new(..)))`
//!   (or `.with_item(event.item(table)?)` when the preview is not needed).
//! - In any other conditional write: push `event.item(table)?` into the
//!   same `TransactWriteItems` (see [`write_with`] for the common case of one
//!   conditional item plus its event).
//!
//! The outbox item has no condition: it never refuses a change, and adding
//! it last keeps the caller items' indexes in `LedgerError::ConditionFailed`.
//! `credits.balance_low` is not emitted by callers: [`watch_low_balance`]
//! adds it to every debit of a ledger handle that crosses the threshold.

mod store;

pub use store::{OUTBOX_PK_PREFIX, OUTBOX_SK, OutboxRecord, Written, write_with};

use billing_money::Usd;
use ledger::{Change, ChangeHook, Ledger, LedgerError, Preview, UserId};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// `source` of every event.
pub const SOURCE: &str = "skypanel.billing";

/// The `detail-type`s of API.md (all of them, so that every emitter names one of these).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DetailType {
    CreditsPurchased,
    TokensPurchased,
    CreditsBalanceLow,
    TokensDeliveryNeedsReview,
    SubscriptionRenewed,
    SubscriptionPastDue,
    SubscriptionExpired,
    SubscriptionCancelled,
    ServiceCharged,
    ServiceChargeRefunded,
    RefundCompleted,
    RefundFailed,
    PaymentReversed,
    PaymentReversalCancelled,
    ReconciliationMismatch,
}

impl DetailType {
    pub const ALL: [DetailType; 15] = [
        DetailType::CreditsPurchased,
        DetailType::TokensPurchased,
        DetailType::CreditsBalanceLow,
        DetailType::TokensDeliveryNeedsReview,
        DetailType::SubscriptionRenewed,
        DetailType::SubscriptionPastDue,
        DetailType::SubscriptionExpired,
        DetailType::SubscriptionCancelled,
        DetailType::ServiceCharged,
        DetailType::ServiceChargeRefunded,
        DetailType::RefundCompleted,
        DetailType::RefundFailed,
        DetailType::PaymentReversed,
        DetailType::PaymentReversalCancelled,
        DetailType::ReconciliationMismatch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DetailType::CreditsPurchased => "credits.purchased",
            DetailType::TokensPurchased => "tokens.purchased",
            DetailType::CreditsBalanceLow => "credits.balance_low",
            DetailType::TokensDeliveryNeedsReview => "tokens.delivery_needs_review",
            DetailType::SubscriptionRenewed => "subscription.renewed",
            DetailType::SubscriptionPastDue => "subscription.past_due",
            DetailType::SubscriptionExpired => "subscription.expired",
            DetailType::SubscriptionCancelled => "subscription.cancelled",
            DetailType::ServiceCharged => "service.charged",
            DetailType::ServiceChargeRefunded => "service.charge_refunded",
            DetailType::RefundCompleted => "refund.completed",
            DetailType::RefundFailed => "refund.failed",
            DetailType::PaymentReversed => "payment.reversed",
            DetailType::PaymentReversalCancelled => "payment.reversal_cancelled",
            DetailType::ReconciliationMismatch => "reconciliation.mismatch",
        }
    }

    pub fn parse(text: &str) -> Option<DetailType> {
        DetailType::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// One event, before it is written to the outbox.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    detail_type: DetailType,
    event_id: String,
    /// `None` only for a change of no known user (a reconciliation mismatch
    /// about a payment for no order of ours): `userId` is then `null`.
    user: Option<UserId>,
    fields: Map<String, Value>,
}

impl Event {
    /// `key` identifies the change reported, the same on every retry of it.
    pub fn new(detail_type: DetailType, key: &str, user: &UserId) -> Event {
        Event::about(detail_type, key, Some(user))
    }

    /// Like [`Event::new`], for a change whose user may be unknown.
    pub fn about(detail_type: DetailType, key: &str, user: Option<&UserId>) -> Event {
        Event {
            detail_type,
            event_id: event_id(detail_type, key),
            user: user.cloned(),
            fields: Map::new(),
        }
    }

    /// An amount, as a decimal string with two places (`"12.50"`).
    pub fn usd(mut self, name: &str, amount: Usd) -> Event {
        self.fields
            .insert(name.to_owned(), Value::String(amount.to_string()));
        self
    }

    pub fn text(mut self, name: &str, value: impl Into<String>) -> Event {
        self.fields
            .insert(name.to_owned(), Value::String(value.into()));
        self
    }

    /// Any other JSON value (a token count, a flag).
    pub fn value(mut self, name: &str, value: impl Into<Value>) -> Event {
        self.fields.insert(name.to_owned(), value.into());
        self
    }

    pub fn detail_type(&self) -> DetailType {
        self.detail_type
    }

    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    /// The EventBridge `detail`: `eventId`, `userId`, then the fields.
    pub fn detail(&self) -> Value {
        let mut detail = Map::new();
        detail.insert("eventId".into(), Value::String(self.event_id.clone()));
        detail.insert(
            "userId".into(),
            self.user
                .as_ref()
                .map_or(Value::Null, |u| Value::String(u.as_str().into())),
        );
        for (name, value) in &self.fields {
            detail.entry(name.clone()).or_insert_with(|| value.clone());
        }
        Value::Object(detail)
    }

    /// The outbox item, to commit in the same `TransactWriteItems` as the change.
    pub fn item(
        &self,
        table: &str,
    ) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, LedgerError> {
        store::outbox_put(table, self)
    }

    pub(crate) fn user(&self) -> Option<&UserId> {
        self.user.as_ref()
    }
}

/// For [`Change::with_item_for`]: the event built from what the change does
/// (its entry number, balances, time).
pub fn outbox(
    table: &str,
    build: impl Fn(&Preview) -> Event + Send + Sync + 'static,
) -> impl Fn(&Preview) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, LedgerError>
+ Send
+ Sync
+ 'static {
    let table = table.to_owned();
    move |preview| build(preview).item(&table)
}

/// A deterministic id shaped like a UUID: sha256(type, key).
fn event_id(detail_type: DetailType, key: &str) -> String {
    let digest = Sha256::digest(format!("{}\n{key}", detail_type.as_str()).as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `LOW_BALANCE_THRESHOLD_USD` (default 5.00); an unreadable value is logged
/// and the default used.
pub fn low_balance_threshold() -> Usd {
    let default = Usd::from_cents(500).unwrap_or_default();
    match std::env::var("LOW_BALANCE_THRESHOLD_USD") {
        Ok(text) if !text.trim().is_empty() => text.trim().parse().unwrap_or_else(|_| {
            tracing::error!(value = %text, "LOW_BALANCE_THRESHOLD_USD is not an amount; using 5.00");
            default
        }),
        _ => default,
    }
}

/// Whether a change from `before` to `after` crosses `threshold` downward.
pub fn crosses_low(before: Usd, after: Usd, threshold: Usd) -> bool {
    before >= threshold && after < threshold
}

/// Every debit of `ledger` that takes the balance from at least `threshold`
/// to below it commits a `credits.balance_low` event with it.
pub fn watch_low_balance(ledger: Ledger, threshold: Usd) -> Ledger {
    let table = ledger.table().to_owned();
    let hook: ChangeHook = Arc::new(move |change: &Change, preview: &Preview| {
        if !crosses_low(preview.balance_before, preview.balance_after, threshold) {
            return Ok(None);
        }
        let event = Event::new(
            DetailType::CreditsBalanceLow,
            &format!("{}#{}", change.user, preview.seq),
            &change.user,
        )
        .usd("balance", preview.balance_after)
        .usd("previousBalance", preview.balance_before)
        .usd("threshold", threshold)
        .usd("debit", change.amount.abs())
        .text("entryType", change.details.kind.as_str())
        .text("occurredAt", preview.created_at.clone());
        event.item(&table).map(Some)
    });
    ledger.with_change_hook(hook)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(text: &str) -> Usd {
        text.parse().unwrap()
    }

    #[test]
    fn ids_are_deterministic_and_distinct_per_type_and_key() {
        let user = UserId::parse("7").unwrap();
        let a = Event::new(DetailType::CreditsPurchased, "capture#1", &user);
        assert_eq!(
            a.event_id(),
            Event::new(DetailType::CreditsPurchased, "capture#1", &user).event_id()
        );
        assert_ne!(
            a.event_id(),
            Event::new(DetailType::CreditsPurchased, "capture#2", &user).event_id()
        );
        assert_ne!(
            a.event_id(),
            Event::new(DetailType::RefundCompleted, "capture#1", &user).event_id()
        );
        assert_eq!(a.event_id().len(), 36);
    }

    #[test]
    fn detail_carries_id_user_and_amounts_as_strings() {
        let user = UserId::parse("1001").unwrap();
        let event = Event::new(DetailType::CreditsPurchased, "k", &user).usd("amount", usd("12.5"));
        let detail = event.detail();
        assert_eq!(detail["userId"], "1001");
        assert_eq!(detail["amount"], "12.50");
        assert_eq!(detail["eventId"], event.event_id());
    }

    #[test]
    fn low_balance_is_a_downward_crossing_only() {
        let t = usd("5.00");
        assert!(crosses_low(usd("5.00"), usd("4.99"), t));
        assert!(crosses_low(usd("20.00"), usd("-1.00"), t));
        assert!(!crosses_low(usd("4.99"), usd("3.00"), t));
        assert!(!crosses_low(usd("9.00"), usd("5.00"), t));
        assert!(!crosses_low(usd("3.00"), usd("6.00"), t));
    }

    #[test]
    fn every_type_round_trips() {
        for t in DetailType::ALL {
            assert_eq!(DetailType::parse(t.as_str()), Some(t));
        }
    }
}
