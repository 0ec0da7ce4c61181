//! One history for both money systems: ledger entries and token purchases,
//! merged newest first, paged with one opaque cursor that remembers where
//! each stream stopped (so no item is skipped or shown twice).

pub mod admin;
mod csv;
pub mod detail;
pub mod export;

use crate::BillingError;
use crate::purchases::{TokenPurchase, token_purchases};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ledger::{Entry, EntryCursor, Ledger, UserId};
use serde::{Deserialize, Serialize};

pub const DEFAULT_LIMIT: u32 = 25;
pub const MAX_LIMIT: u32 = 100;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryItem {
    Credits(Entry),
    Tokens(TokenPurchase),
}

impl HistoryItem {
    pub fn created_at(&self) -> &str {
        match self {
            HistoryItem::Credits(e) => &e.created_at,
            HistoryItem::Tokens(p) => &p.created_at,
        }
    }
}

/// Position in both streams. Serialized compactly and base64url-encoded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryCursor {
    /// Ledger entries continue below this seq (`None`: from the newest).
    #[serde(rename = "e", skip_serializing_if = "Option::is_none")]
    entries_before: Option<u64>,
    #[serde(rename = "ed", default)]
    entries_done: bool,
    /// Token purchases continue below this sort key.
    #[serde(rename = "t", skip_serializing_if = "Option::is_none")]
    tokens_before: Option<String>,
    #[serde(rename = "td", default)]
    tokens_done: bool,
}

impl HistoryCursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(text: &str) -> Result<HistoryCursor, BillingError> {
        let invalid = || BillingError::InvalidInput("cursor is invalid".into());
        if text.len() > 512 {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        let cursor: HistoryCursor = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if cursor
            .tokens_before
            .as_deref()
            .is_some_and(|t| !t.starts_with(crate::purchases::TOKEN_PURCHASE_SK_PREFIX))
        {
            return Err(invalid());
        }
        Ok(cursor)
    }
}

#[derive(Clone, Debug)]
pub struct HistoryPage {
    pub items: Vec<HistoryItem>,
    pub next: Option<HistoryCursor>,
}

/// `limit` must already be within 1..=MAX_LIMIT (see [`parse_limit`]).
#[tracing::instrument(skip_all, fields(user = %user, limit))]
pub async fn history(
    ledger: &Ledger,
    user: &UserId,
    limit: u32,
    cursor: Option<HistoryCursor>,
) -> Result<HistoryPage, BillingError> {
    let cursor = cursor.unwrap_or_default();
    let entries = async {
        if cursor.entries_done {
            return Ok((Vec::new(), false));
        }
        let page = ledger
            .entries(
                user,
                limit,
                cursor
                    .entries_before
                    .map(|before_seq| EntryCursor { before_seq }),
            )
            .await?;
        Ok::<_, BillingError>((page.entries, page.next.is_some()))
    };
    let purchases = async {
        if cursor.tokens_done {
            return Ok((Vec::new(), false));
        }
        token_purchases(ledger, user, limit, cursor.tokens_before.as_deref()).await
    };
    let (entries, purchases) = tokio::join!(entries, purchases);
    let ((entries, entries_more), (purchases, purchases_more)) = (entries?, purchases?);

    let (mut i, mut j) = (0, 0);
    let mut items = Vec::with_capacity(limit as usize);
    while items.len() < limit as usize && (i < entries.len() || j < purchases.len()) {
        let take_entry = match (entries.get(i), purchases.get(j)) {
            (Some(e), Some(p)) => e.created_at >= p.created_at,
            (Some(_), None) => true,
            _ => false,
        };
        if take_entry {
            items.push(HistoryItem::Credits(entries[i].clone()));
            i += 1;
        } else {
            items.push(HistoryItem::Tokens(purchases[j].clone()));
            j += 1;
        }
    }

    let next = HistoryCursor {
        entries_before: if i > 0 {
            Some(entries[i - 1].seq)
        } else {
            cursor.entries_before
        },
        entries_done: cursor.entries_done || (i == entries.len() && !entries_more),
        tokens_before: if j > 0 {
            Some(purchases[j - 1].sort_key.clone())
        } else {
            cursor.tokens_before.clone()
        },
        tokens_done: cursor.tokens_done || (j == purchases.len() && !purchases_more),
    };
    let next = (!(next.entries_done && next.tokens_done)).then_some(next);
    Ok(HistoryPage { items, next })
}

/// Longest date range of the export and the admin listing: 366 days, both
/// ends included.
pub const MAX_RANGE_DAYS: i64 = 366;

/// A `YYYY-MM-DD` day (UTC) of a query parameter called `name`.
pub fn parse_day(text: &str, name: &str) -> Result<time::Date, BillingError> {
    let shaped = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    let format = time::macros::format_description!("[year]-[month]-[day]");
    shaped
        .then(|| time::Date::parse(text, &format).ok())
        .flatten()
        .ok_or_else(|| BillingError::InvalidInput(format!("{name} must be a date YYYY-MM-DD")))
}

/// `from <= to`, at most [`MAX_RANGE_DAYS`] days.
pub fn check_span(from: time::Date, to: time::Date) -> Result<(), BillingError> {
    if from > to {
        return Err(BillingError::InvalidInput(
            "from must not be after to".into(),
        ));
    }
    if (to - from).whole_days() + 1 > MAX_RANGE_DAYS {
        return Err(BillingError::InvalidInput(format!(
            "the range must be at most {MAX_RANGE_DAYS} days"
        )));
    }
    Ok(())
}

/// `limit` query parameter: 1..=100, default 25.
pub fn parse_limit(raw: Option<&str>) -> Result<u32, BillingError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| {
                (1..=MAX_LIMIT).contains(n) && !text.starts_with('+') && !text.starts_with('0')
            })
            .ok_or_else(|| {
                BillingError::InvalidInput(format!(
                    "limit must be a whole number from 1 to {MAX_LIMIT}"
                ))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None).unwrap(), 25);
        assert_eq!(parse_limit(Some("100")).unwrap(), 100);
        for bad in ["0", "101", "-1", "abc", "1.5", "+5", "05", ""] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = HistoryCursor {
            entries_before: Some(7),
            entries_done: false,
            tokens_before: Some("TOKENBUY#2026-01-01T00:00:00.000Z#O1".into()),
            tokens_done: true,
        };
        assert_eq!(HistoryCursor::decode(&cursor.encode()).unwrap(), cursor);
        assert!(HistoryCursor::decode("%%%").is_err());
        assert!(HistoryCursor::decode(&URL_SAFE_NO_PAD.encode(r#"{"t":"USER#1"}"#)).is_err());
    }
}
