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

/// The all-users entry index (`gsi3`, projection ALL): every entry written
/// since the index exists carries `gsi3pk = ENTRIES#<day>#<shard>` and
/// `gsi3sk = <createdAt>#<user>#<seq>`, so the admin listing reads one day
/// at a time, newest first, with a `Query` per shard — never a `Scan`.
/// A day's writes spread over [`ENTRY_INDEX_SHARDS`] partition keys, so no
/// single index partition takes every entry of the day (DynamoDB throttles
/// base-table writes when an index partition is hot). The shard count is part
/// of the key format: readers query shards `0..ENTRY_INDEX_SHARDS` of a day.
pub const ENTRY_INDEX: &str = "gsi3";
pub const ENTRY_INDEX_PK: &str = "gsi3pk";
pub const ENTRY_INDEX_SK: &str = "gsi3sk";
pub const ENTRY_INDEX_SHARDS: u32 = 8;
const ENTRY_INDEX_PREFIX: &str = "ENTRIES#";

/// `ENTRIES#<YYYY-MM-DD>#<shard>`. `day` is the first 10 characters of an
/// RFC 3339 UTC timestamp.
pub fn entry_index_pk(day: &str, shard: u32) -> String {
    format!("{ENTRY_INDEX_PREFIX}{day}#{shard}")
}

/// `<createdAt>#<user>#<seq, 12 digits>`: time order across users, unique.
pub fn entry_index_sk(created_at: &str, user: &UserId, seq: u64) -> String {
    format!(
        "{created_at}#{}#{seq:0width$}",
        user.as_str(),
        width = SEQ_WIDTH
    )
}

/// Which shard an entry goes to: a hash of (user, seq), so even one busy
/// account's entries spread over every shard. FNV-1a: stable forever (the
/// shard is stored in the key; it is never recomputed for a stored entry).
pub fn entry_index_shard(user: &UserId, seq: u64) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in user.as_str().bytes().chain([b'#']).chain(seq.to_be_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(ENTRY_INDEX_SHARDS)) as u32
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
    fn entry_index_keys_sort_by_time_and_spread_over_the_shards() {
        let user = UserId::parse("1001").unwrap();
        assert_eq!(entry_index_pk("2026-03-01", 2), "ENTRIES#2026-03-01#2");
        assert_eq!(
            entry_index_sk("2026-03-01T10:00:00.000Z", &user, 7),
            "2026-03-01T10:00:00.000Z#1001#000000000007"
        );
        assert!(
            entry_index_sk("2026-03-01T09:59:59.999Z", &user, 9)
                < entry_index_sk("2026-03-01T10:00:00.000Z", &user, 7)
        );
        let mut per_shard = [0u32; ENTRY_INDEX_SHARDS as usize];
        for seq in 1..=400 {
            per_shard[entry_index_shard(&user, seq) as usize] += 1;
        }
        // One account's entries reach every shard, each within 40 % of its even share.
        let even = 400 / ENTRY_INDEX_SHARDS;
        assert!(
            per_shard
                .iter()
                .all(|&n| (even * 6 / 10..=even * 14 / 10).contains(&n)),
            "{per_shard:?}"
        );
        assert_eq!(entry_index_shard(&user, 5), entry_index_shard(&user, 5));
    }

    #[test]
    fn entry_keys_sort_as_numbers() {
        assert!(entry_sk(9) < entry_sk(10));
        assert_eq!(entry_sk(1), "ENTRY#000000000001");
    }
}
