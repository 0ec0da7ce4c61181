//! Reads of the all-users entry index (`gsi3`, see [`crate::keys::ENTRY_INDEX`]):
//! one shard of one day, newest first, with what the read cost.
//!
//! Entries written before the index existed carry no `gsi3pk` and are not in
//! it (the index is sparse by construction; nothing is backfilled).

use crate::item::{AttrMap, Entry, s};
use crate::keys::{ENTRY_INDEX, ENTRY_INDEX_PK, ENTRY_INDEX_SK, UserId, entry_index_pk};
use crate::{Ledger, LedgerError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};

/// Which entry types a read keeps. Applied as a `FilterExpression`: DynamoDB
/// reads (and bills) every entry of the range and returns the matching ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KindFilter {
    /// One stored type name (`admin_add`, `service_purchase_dns_plan`).
    Exact(String),
    /// Every type name starting with this (`service_purchase_`).
    Prefix(String),
}

/// An entry found through the index: whose it is and its index sort key
/// (the position a listing continues from).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedEntry {
    pub user: UserId,
    pub entry: Entry,
    pub index_sk: String,
}

/// One `Query` of one shard of one day.
#[derive(Clone, Debug, Default)]
pub struct IndexPage {
    /// Newest first.
    pub entries: Vec<IndexedEntry>,
    /// The index sort key of the last item DynamoDB evaluated, when the shard
    /// may hold more below it (its `LastEvaluatedKey`); `None`: shard done.
    pub last_evaluated: Option<String>,
    /// Items DynamoDB read (`ScannedCount`, before the filter).
    pub scanned: u32,
    /// Read capacity units consumed, when DynamoDB reports them.
    pub consumed_rcu: f64,
}

impl Ledger {
    /// Up to `limit` entries (1..=1000) of shard `shard` of `day`
    /// (`YYYY-MM-DD`), newest first, strictly older than `before` (an index
    /// sort key) when given. Eventually consistent (index reads always are).
    pub async fn entries_of_day(
        &self,
        day: &str,
        shard: u32,
        before: Option<&str>,
        limit: u32,
        filter: Option<&KindFilter>,
    ) -> Result<IndexPage, LedgerError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(ENTRY_INDEX)
            .expression_attribute_names("#pk", ENTRY_INDEX_PK)
            .expression_attribute_values(":pk", s(entry_index_pk(day, shard)))
            .scan_index_forward(false)
            .limit(limit.clamp(1, 1000) as i32)
            .return_consumed_capacity(ReturnConsumedCapacity::Total);
        query = match before {
            Some(before) => query
                .key_condition_expression("#pk = :pk AND #sk < :before")
                .expression_attribute_names("#sk", ENTRY_INDEX_SK)
                .expression_attribute_values(":before", s(before)),
            None => query.key_condition_expression("#pk = :pk"),
        };
        query = match filter {
            Some(KindFilter::Exact(name)) => query
                .filter_expression("#kind = :kind")
                .expression_attribute_names("#kind", "kind")
                .expression_attribute_values(":kind", s(name)),
            Some(KindFilter::Prefix(prefix)) => query
                .filter_expression("begins_with(#kind, :kind)")
                .expression_attribute_names("#kind", "kind")
                .expression_attribute_values(":kind", s(prefix)),
            None => query,
        };
        let out = query
            .send()
            .await
            .map_err(|e| LedgerError::dynamo("Query", &e))?;
        let entries = out
            .items()
            .iter()
            .map(indexed)
            .collect::<Result<Vec<_>, _>>()?;
        let last_evaluated =
            out.last_evaluated_key()
                .and_then(|key| match key.get(ENTRY_INDEX_SK) {
                    Some(AttributeValue::S(sk)) => Some(sk.clone()),
                    _ => None,
                });
        Ok(IndexPage {
            entries,
            last_evaluated,
            scanned: out.scanned_count().max(0) as u32,
            consumed_rcu: out
                .consumed_capacity()
                .and_then(|c| c.capacity_units())
                .unwrap_or(0.0),
        })
    }

    /// One entry of an account (one consistent `GetItem`), if it exists.
    pub async fn entry(&self, user: &UserId, seq: u64) -> Result<Option<Entry>, LedgerError> {
        self.read_entry(user, seq).await
    }
}

fn indexed(item: &AttrMap) -> Result<IndexedEntry, LedgerError> {
    let entry = Entry::from_item(item)?;
    let key = |name: &str| match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.as_str()),
        _ => Err(LedgerError::corrupt(
            format!("entry {}", entry.seq),
            format!("{name} missing in the entry index"),
        )),
    };
    let user = key("pk")?
        .strip_prefix("USER#")
        .and_then(|id| UserId::parse(id).ok())
        .ok_or_else(|| LedgerError::corrupt(format!("entry {}", entry.seq), "bad pk"))?;
    let index_sk = key(ENTRY_INDEX_SK)?.to_owned();
    Ok(IndexedEntry {
        user,
        entry,
        index_sk,
    })
}
