//! Key formats of the ledger table, in one place.

use std::fmt;

pub const ACCOUNT_SK: &str = "CREDITS";
pub const ENTRY_SK_PREFIX: &str = "ENTRY#";
pub const ONCE_SK: &str = "ONCE";
/// Zero padding of entry numbers: sorts as text up to 10^12 entries per account.
pub const SEQ_WIDTH: usize = 12;

/// A SkyPANEL user id (the JWT `sub`, also VirtFusion's `extRelationId`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("user id must be 1-64 characters of letters, digits, '-' or '_'")]
pub struct UserIdError;

impl UserId {
    pub fn parse(raw: &str) -> Result<UserId, UserIdError> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(UserId(raw.to_owned()))
        } else {
            Err(UserIdError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Partition key of everything the user owns.
    pub fn pk(&self) -> String {
        format!("USER#{}", self.0)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.0)
    }
}

/// A platform service type (API.md "Platform services"): `[a-z][a-z0-9_]{0,31}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceType(String);

impl ServiceType {
    pub fn parse(raw: &str) -> Option<ServiceType> {
        let mut bytes = raw.bytes();
        let ok = raw.len() <= 32
            && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
            && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        ok.then(|| ServiceType(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn entry_sk(seq: u64) -> String {
    format!("{ENTRY_SK_PREFIX}{seq:0width$}", width = SEQ_WIDTH)
}

/// Names one effect that must happen at most once (a PayPal capture, a refund,
/// a renewal period, a webhook event). Its marker is put with
/// `attribute_not_exists` in the same transaction as the balance change.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OnceKey {
    kind: &'static str,
    id: String,
}

impl OnceKey {
    pub fn new(kind: &'static str, id: impl Into<String>) -> OnceKey {
        OnceKey {
            kind,
            id: id.into(),
        }
    }

    pub fn pk(&self) -> String {
        format!("ONCE#{}#{}", self.kind, self.id)
    }

    /// The marker item on its own (for once-effects that move no custom
    /// credits, e.g. a token purchase): put only if absent.
    pub fn marker_item(
        &self,
        table: &str,
        user: &UserId,
        now: &str,
    ) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, crate::LedgerError> {
        use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
        let put = Put::builder()
            .table_name(table)
            .item("pk", AttributeValue::S(self.pk()))
            .item("sk", AttributeValue::S(ONCE_SK.into()))
            .item("user", AttributeValue::S(user.as_str().into()))
            .item("createdAt", AttributeValue::S(now.into()))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| crate::LedgerError::corrupt(self.pk(), e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_restricted() {
        assert!(UserId::parse("1042").is_ok());
        assert!(UserId::parse("user_7-a").is_ok());
        for bad in ["", "a#b", "a b", "ä", &"x".repeat(65)] {
            assert!(UserId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn service_types_are_restricted() {
        for good in ["dedicated_server", "a", "dns_plan", "x1_2", &"a".repeat(32)] {
            assert!(ServiceType::parse(good).is_some(), "{good}");
        }
        for bad in ["", "1a", "_a", "Dedicated", "a-b", "a b", &"a".repeat(33)] {
            assert!(ServiceType::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn entry_keys_sort_as_numbers() {
        assert!(entry_sk(9) < entry_sk(10));
        assert_eq!(entry_sk(1), "ENTRY#000000000001");
    }
}
