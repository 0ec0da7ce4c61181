//! Item <-> type conversions, in one place. A missing or malformed attribute
//! is a [`LedgerError::Corrupt`], never a default.

use crate::LedgerError;
use aws_sdk_dynamodb::types::AttributeValue;
use billing_money::Usd;
use std::collections::HashMap;
use std::str::FromStr;

pub type AttrMap = HashMap<String, AttributeValue>;

/// Why an entry moved money. Stored as its snake_case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// Credits bought through PayPal.
    Purchase,
    /// An admin added credits (with a reason).
    AdminCredit,
    /// An admin removed credits (with a reason).
    AdminDebit,
    /// Credits spent on a DNS plan.
    DnsPurchase,
    /// A monthly DNS plan renewal.
    DnsRenewal,
    /// Credits taken back by a refund of their purchase.
    Refund,
    /// A PayPal reversal (chargeback); may leave a debt.
    Reversal,
    /// A pending refund that failed or was cancelled at PayPal, given back.
    RefundReverted,
    /// A reversal whose dispute the merchant won: what it took, restored.
    ReversalCancelled,
}

impl EntryKind {
    pub const ALL: [EntryKind; 9] = [
        EntryKind::Purchase,
        EntryKind::AdminCredit,
        EntryKind::AdminDebit,
        EntryKind::DnsPurchase,
        EntryKind::DnsRenewal,
        EntryKind::Refund,
        EntryKind::Reversal,
        EntryKind::RefundReverted,
        EntryKind::ReversalCancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Purchase => "purchase",
            EntryKind::AdminCredit => "admin_credit",
            EntryKind::AdminDebit => "admin_debit",
            EntryKind::DnsPurchase => "dns_purchase",
            EntryKind::DnsRenewal => "dns_renewal",
            EntryKind::Refund => "refund",
            EntryKind::Reversal => "reversal",
            EntryKind::RefundReverted => "refund_reverted",
            EntryKind::ReversalCancelled => "reversal_cancelled",
        }
    }
}

impl FromStr for EntryKind {
    type Err = ();
    fn from_str(s: &str) -> Result<EntryKind, ()> {
        EntryKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or(())
    }
}

/// One line of an account's history, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub kind: EntryKind,
    pub amount: Usd,
    pub balance_before: Usd,
    pub balance_after: Usd,
    pub description: String,
    pub created_at: String,
    /// Unique per `Ledger::apply` call; lets a retry recognise its own write.
    pub mutation_id: String,
    pub admin_id: Option<String>,
    pub reason: Option<String>,
    /// What the entry settles: a PayPal order id, a subscription id, a refund id.
    pub reference: Option<String>,
}

impl Entry {
    pub(crate) fn from_item(item: &AttrMap) -> Result<Entry, LedgerError> {
        let key = item_key(item);
        let kind_name = get_s(item, "kind", &key)?;
        Ok(Entry {
            seq: get_u64(item, "seq", &key)?,
            kind: kind_name
                .parse()
                .map_err(|_| LedgerError::corrupt(&key, format!("unknown kind {kind_name}")))?,
            amount: get_usd(item, "amount", &key)?,
            balance_before: get_usd(item, "balanceBefore", &key)?,
            balance_after: get_usd(item, "balanceAfter", &key)?,
            description: get_s(item, "description", &key)?.to_owned(),
            created_at: get_s(item, "createdAt", &key)?.to_owned(),
            mutation_id: get_s(item, "mutationId", &key)?.to_owned(),
            admin_id: opt_s(item, "adminId"),
            reason: opt_s(item, "reason"),
            reference: opt_s(item, "reference"),
        })
    }

    pub(crate) fn to_item(&self, pk: String) -> AttrMap {
        let mut item = AttrMap::new();
        item.insert("pk".into(), s(pk));
        item.insert("sk".into(), s(crate::keys::entry_sk(self.seq)));
        item.insert("seq".into(), n(self.seq));
        item.insert("kind".into(), s(self.kind.as_str()));
        item.insert("amount".into(), usd(self.amount));
        item.insert("balanceBefore".into(), usd(self.balance_before));
        item.insert("balanceAfter".into(), usd(self.balance_after));
        item.insert("description".into(), s(&self.description));
        item.insert("createdAt".into(), s(&self.created_at));
        item.insert("mutationId".into(), s(&self.mutation_id));
        for (name, value) in [
            ("adminId", &self.admin_id),
            ("reason", &self.reason),
            ("reference", &self.reference),
        ] {
            if let Some(value) = value {
                item.insert(name.into(), s(value));
            }
        }
        item
    }
}

/// The account's state as read: balance and the number of its last entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AccountState {
    pub balance: Usd,
    pub seq: u64,
}

impl AccountState {
    pub(crate) const NEW: AccountState = AccountState {
        balance: Usd::ZERO,
        seq: 0,
    };

    pub(crate) fn from_item(item: &AttrMap) -> Result<AccountState, LedgerError> {
        let key = item_key(item);
        Ok(AccountState {
            balance: get_usd(item, "balance", &key)?,
            seq: get_u64(item, "seq", &key)?,
        })
    }
}

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Money is stored as a DynamoDB number written from its exact decimal text.
pub fn usd(value: Usd) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn item_key(item: &AttrMap) -> String {
    let part = |name: &str| match item.get(name) {
        Some(AttributeValue::S(v)) => v.as_str(),
        _ => "?",
    };
    format!("{}/{}", part("pk"), part("sk"))
}

pub(crate) fn get_s<'a>(item: &'a AttrMap, name: &str, key: &str) -> Result<&'a str, LedgerError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        Some(_) => Err(LedgerError::corrupt(key, format!("{name} is not a string"))),
        None => Err(LedgerError::corrupt(key, format!("{name} is missing"))),
    }
}

pub(crate) fn opt_s(item: &AttrMap, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

fn get_n<'a>(item: &'a AttrMap, name: &str, key: &str) -> Result<&'a str, LedgerError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => Ok(v),
        Some(_) => Err(LedgerError::corrupt(key, format!("{name} is not a number"))),
        None => Err(LedgerError::corrupt(key, format!("{name} is missing"))),
    }
}

pub(crate) fn get_u64(item: &AttrMap, name: &str, key: &str) -> Result<u64, LedgerError> {
    get_n(item, name, key)?
        .parse()
        .map_err(|_| LedgerError::corrupt(key, format!("{name} is not a whole number")))
}

/// DynamoDB returns numbers normalised (`12.5`, `3`); both are exact
/// literals for the strict money parser. Anything else is corruption.
pub(crate) fn get_usd(item: &AttrMap, name: &str, key: &str) -> Result<Usd, LedgerError> {
    let text = get_n(item, name, key)?;
    billing_money::parse_usd_literal(text)
        .map_err(|_| LedgerError::corrupt(key, format!("{name} is not an exact amount: {text}")))
}
