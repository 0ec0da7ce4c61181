//! Reads: balance, single entries, history pages.

use crate::item::{AccountState, AttrMap, Entry, s};
use crate::keys::{ACCOUNT_SK, ENTRY_SK_PREFIX, UserId, entry_sk};
use crate::{Ledger, LedgerError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use billing_money::Usd;

/// Where the next page of an account's history starts (newest first).
/// Opaque to clients: encoded as URL-safe base64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryCursor {
    /// The page continues with entries older than this one.
    pub before_seq: u64,
}

impl EntryCursor {
    pub fn encode(self) -> String {
        URL_SAFE_NO_PAD.encode(format!("e{}", self.before_seq))
    }

    pub fn decode(text: &str) -> Option<EntryCursor> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let before_seq = text.strip_prefix('e')?.parse().ok()?;
        Some(EntryCursor { before_seq })
    }
}

#[derive(Clone, Debug)]
pub struct EntryPage {
    pub entries: Vec<Entry>,
    pub next: Option<EntryCursor>,
}

impl Ledger {
    /// The current balance (one strongly consistent `GetItem`; zero for a new account).
    pub async fn balance(&self, user: &UserId) -> Result<Usd, LedgerError> {
        Ok(self.read_account(user).await?.balance)
    }

    pub(crate) async fn read_account(&self, user: &UserId) -> Result<AccountState, LedgerError> {
        match self.get_item(user.pk(), ACCOUNT_SK).await? {
            Some(item) => AccountState::from_item(&item),
            None => Ok(AccountState::NEW),
        }
    }

    pub(crate) async fn read_entry(
        &self,
        user: &UserId,
        seq: u64,
    ) -> Result<Option<Entry>, LedgerError> {
        self.get_item(user.pk(), &entry_sk(seq))
            .await?
            .map(|item| Entry::from_item(&item))
            .transpose()
    }

    pub(crate) async fn get_item(
        &self,
        pk: String,
        sk: &str,
    ) -> Result<Option<AttrMap>, LedgerError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| LedgerError::dynamo("GetItem", &e))?;
        Ok(out.item)
    }

    /// Up to `limit` entries, newest first, continuing from `cursor`.
    pub async fn entries(
        &self,
        user: &UserId,
        limit: u32,
        cursor: Option<EntryCursor>,
    ) -> Result<EntryPage, LedgerError> {
        let limit = limit.clamp(1, 1000);
        let upper = match cursor {
            Some(c) if c.before_seq <= 1 => {
                return Ok(EntryPage {
                    entries: Vec::new(),
                    next: None,
                });
            }
            Some(c) => entry_sk(c.before_seq - 1),
            None => entry_sk(u64::MAX / 2),
        };
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
            .expression_attribute_values(":pk", s(user.pk()))
            .expression_attribute_values(":lo", s(ENTRY_SK_PREFIX))
            .expression_attribute_values(":hi", s(upper))
            .scan_index_forward(false)
            .limit(limit as i32)
            .send()
            .await
            .map_err(|e| LedgerError::dynamo("Query", &e))?;
        let entries = out
            .items()
            .iter()
            .map(Entry::from_item)
            .collect::<Result<Vec<_>, _>>()?;
        let next = match (out.last_evaluated_key.is_some(), entries.last()) {
            (true, Some(last)) if last.seq > 1 => Some(EntryCursor {
                before_seq: last.seq,
            }),
            _ => None,
        };
        Ok(EntryPage { entries, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let cursor = EntryCursor { before_seq: 42 };
        assert_eq!(EntryCursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(EntryCursor::decode("not base64!"), None);
        assert_eq!(EntryCursor::decode(&URL_SAFE_NO_PAD.encode("x1")), None);
    }
}
