//! Item <-> type conversions, in one place. A missing or malformed attribute
//! is a [`LedgerError::Corrupt`], never a default.

use crate::LedgerError;
use aws_sdk_dynamodb::types::AttributeValue;
use billing_money::Usd;
use std::collections::HashMap;
use std::str::FromStr;

pub type AttrMap = HashMap<String, AttributeValue>;

/// Why an entry moved money. Stored (attribute `kind`) as its type name
/// (API.md "Balances and history"): the name of the kind, followed for the
/// service kinds by `_<serviceType>` (`service_purchase_dns_plan`).
/// Names written before the vocabulary changed still read
/// ([`EntryKind::parse_type`]): `admin_credit`, `admin_debit`,
/// `dns_purchase`, `dns_renewal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// Credits bought through PayPal.
    Purchase,
    /// An admin added credits (with a reason): `admin_add`.
    AdminCredit,
    /// An admin removed credits (with a reason): `admin_remove`.
    AdminDebit,
    /// A platform service charge or a subscription's first period
    /// (`service_purchase_<serviceType>`; DNS plans: `dns_plan`).
    ServicePurchase,
    /// A subscription renewal, or a plan upgrade's prorated difference
    /// (`service_renewal_<serviceType>`).
    ServiceRenewal,
    /// A service charge given back (`service_refund_<serviceType>`).
    ServiceRefund,
    /// Credits taken back by a refund of their purchase.
    Refund,
    /// A PayPal reversal (chargeback); may leave a debt.
    Reversal,
    /// A pending refund that failed or was cancelled at PayPal, given back.
    RefundReverted,
    /// A reversal whose dispute the merchant won: what it took, restored.
    ReversalCancelled,
}

/// The service type of the DNS plans (`service_purchase_dns_plan`).
pub const DNS_PLAN_SERVICE_TYPE: &str = "dns_plan";

impl EntryKind {
    pub const ALL: [EntryKind; 10] = [
        EntryKind::Purchase,
        EntryKind::AdminCredit,
        EntryKind::AdminDebit,
        EntryKind::ServicePurchase,
        EntryKind::ServiceRenewal,
        EntryKind::ServiceRefund,
        EntryKind::Refund,
        EntryKind::Reversal,
        EntryKind::RefundReverted,
        EntryKind::ReversalCancelled,
    ];

    /// The kind's name; for the service kinds, the prefix of the type name.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Purchase => "purchase",
            EntryKind::AdminCredit => "admin_add",
            EntryKind::AdminDebit => "admin_remove",
            EntryKind::ServicePurchase => "service_purchase",
            EntryKind::ServiceRenewal => "service_renewal",
            EntryKind::ServiceRefund => "service_refund",
            EntryKind::Refund => "refund",
            EntryKind::Reversal => "reversal",
            EntryKind::RefundReverted => "refund_reverted",
            EntryKind::ReversalCancelled => "reversal_cancelled",
        }
    }

    /// Whether entries of this kind name a service type.
    pub fn is_service(self) -> bool {
        matches!(
            self,
            EntryKind::ServicePurchase | EntryKind::ServiceRenewal | EntryKind::ServiceRefund
        )
    }

    /// The entry `type` of the contract: the kind's name, plus
    /// `_<serviceType>` for the service kinds.
    pub fn type_name(self, service_type: Option<&str>) -> String {
        match service_type {
            Some(service) if self.is_service() => format!("{}_{service}", self.as_str()),
            _ => self.as_str().to_owned(),
        }
    }

    /// Reads a stored type name, today's or an earlier one: the kind and,
    /// for the service kinds, the service type.
    pub fn parse_type(name: &str) -> Option<(EntryKind, Option<String>)> {
        let legacy = match name {
            "admin_credit" => Some((EntryKind::AdminCredit, None)),
            "admin_debit" => Some((EntryKind::AdminDebit, None)),
            "dns_purchase" => Some((EntryKind::ServicePurchase, Some(DNS_PLAN_SERVICE_TYPE))),
            "dns_renewal" => Some((EntryKind::ServiceRenewal, Some(DNS_PLAN_SERVICE_TYPE))),
            _ => None,
        };
        if let Some((kind, service)) = legacy {
            return Some((kind, service.map(str::to_owned)));
        }
        for kind in EntryKind::ALL {
            if kind.is_service() {
                if let Some(service) = name
                    .strip_prefix(kind.as_str())
                    .and_then(|rest| rest.strip_prefix('_'))
                    .filter(|service| crate::keys::ServiceType::parse(service).is_some())
                {
                    return Some((kind, Some(service.to_owned())));
                }
            } else if kind.as_str() == name {
                return Some((kind, None));
            }
        }
        None
    }
}

impl FromStr for EntryKind {
    type Err = ();
    /// The kind of a stored type name (today's or an earlier one).
    fn from_str(s: &str) -> Result<EntryKind, ()> {
        EntryKind::parse_type(s).map(|(kind, _)| kind).ok_or(())
    }
}

/// What a service entry is about: the service type, and the service and
/// charge it names (API.md "Platform services").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceRef {
    pub service_type: String,
    pub service_id: Option<String>,
    pub charge_id: Option<String>,
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
    /// For the service kinds: the service type (and service, charge) it is about.
    pub service: Option<ServiceRef>,
}

impl Entry {
    pub(crate) fn from_item(item: &AttrMap) -> Result<Entry, LedgerError> {
        let key = item_key(item);
        let kind_name = get_s(item, "kind", &key)?;
        let (kind, service_type) = EntryKind::parse_type(kind_name)
            .ok_or_else(|| LedgerError::corrupt(&key, format!("unknown kind {kind_name}")))?;
        let service = service_type.map(|service_type| ServiceRef {
            service_type,
            service_id: opt_s(item, "serviceId"),
            charge_id: opt_s(item, "chargeId"),
        });
        Ok(Entry {
            seq: get_u64(item, "seq", &key)?,
            kind,
            amount: get_usd(item, "amount", &key)?,
            balance_before: get_usd(item, "balanceBefore", &key)?,
            balance_after: get_usd(item, "balanceAfter", &key)?,
            description: get_s(item, "description", &key)?.to_owned(),
            created_at: get_s(item, "createdAt", &key)?.to_owned(),
            mutation_id: get_s(item, "mutationId", &key)?.to_owned(),
            admin_id: opt_s(item, "adminId"),
            reason: opt_s(item, "reason"),
            reference: opt_s(item, "reference"),
            service,
        })
    }

    /// The entry's `type` (API.md "Balances and history").
    pub fn type_name(&self) -> String {
        self.kind
            .type_name(self.service.as_ref().map(|s| s.service_type.as_str()))
    }

    /// The stored entry, with its keys in the all-users index
    /// ([`crate::keys::ENTRY_INDEX`]).
    pub(crate) fn to_item(&self, user: &crate::UserId) -> AttrMap {
        use crate::keys::{
            ENTRY_INDEX_PK, ENTRY_INDEX_SK, entry_index_pk, entry_index_shard, entry_index_sk,
        };
        let mut item = AttrMap::new();
        item.insert("pk".into(), s(user.pk()));
        let day = self.created_at.get(..10).unwrap_or(&self.created_at);
        item.insert(
            ENTRY_INDEX_PK.into(),
            s(entry_index_pk(day, entry_index_shard(user, self.seq))),
        );
        item.insert(
            ENTRY_INDEX_SK.into(),
            s(entry_index_sk(&self.created_at, user, self.seq)),
        );
        item.insert("sk".into(), s(crate::keys::entry_sk(self.seq)));
        item.insert("seq".into(), n(self.seq));
        item.insert("kind".into(), s(self.type_name()));
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
        if let Some(service) = &self.service {
            item.insert("serviceType".into(), s(&service.service_type));
            for (name, value) in [
                ("serviceId", &service.service_id),
                ("chargeId", &service.charge_id),
            ] {
                if let Some(value) = value {
                    item.insert(name.into(), s(value));
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_follow_the_seed_vocabulary() {
        assert_eq!(EntryKind::AdminCredit.type_name(None), "admin_add");
        assert_eq!(EntryKind::AdminDebit.type_name(None), "admin_remove");
        assert_eq!(
            EntryKind::ServicePurchase.type_name(Some("dns_plan")),
            "service_purchase_dns_plan"
        );
        assert_eq!(
            EntryKind::ServiceRefund.type_name(Some("dedicated_server")),
            "service_refund_dedicated_server"
        );
        for kind in EntryKind::ALL {
            let service = kind.is_service().then(|| "dedicated_server".to_owned());
            let name = kind.type_name(service.as_deref());
            assert_eq!(
                EntryKind::parse_type(&name),
                Some((kind, service)),
                "{name}"
            );
        }
    }

    #[test]
    fn names_stored_before_the_rename_still_read() {
        let dns = Some("dns_plan".to_owned());
        for (old, kind, service) in [
            ("admin_credit", EntryKind::AdminCredit, None),
            ("admin_debit", EntryKind::AdminDebit, None),
            ("dns_purchase", EntryKind::ServicePurchase, dns.clone()),
            ("dns_renewal", EntryKind::ServiceRenewal, dns),
        ] {
            assert_eq!(EntryKind::parse_type(old), Some((kind, service)), "{old}");
        }
        for bad in [
            "",
            "service_purchase",
            "service_purchase_",
            "service_purchase_X",
            "admin",
        ] {
            assert_eq!(EntryKind::parse_type(bad), None, "{bad}");
        }
    }
}
