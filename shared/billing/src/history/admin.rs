//! Every user's custom-credit entries, newest first, for admins
//! (`GET /api/admin/transactions?limit=N&cursor=C&from=&to=&type=`),
//! through the all-users entry index (`gsi3`, [`ledger::KindFilter`]) —
//! never a `Scan`.
//!
//! The index keys a day's entries by `ENTRIES#<day>#<shard>` (8 shards) and
//! `<createdAt>#<user>#<seq>`. A page walks days from `to` down to `from`;
//! within a day it reads the shards in rounds (one `Query` per shard, in
//! parallel) and merges them. A round may only hand out entries at or above
//! its *floor* — the highest position where a shard stopped with more to
//! read — since a shard holds nothing unseen above where it stopped; the
//! next round continues below the floor, or the day is done when no shard
//! has more. The cursor is that position: (day, sort key), plus the filters.
//!
//! Read cost: an unfiltered page of `limit` reads about `limit` + 4 × 2
//! entries (each shard is asked for `limit / 4 + 2`); measured in
//! docs/benchmarks.md. With `type`, DynamoDB applies a `FilterExpression`:
//! it reads and bills every entry of the days walked, returns the matching
//! ones, so a rare type costs as much as reading those days unfiltered; the
//! shards are then asked for 100 entries each per round. Each page does at
//! most [`MAX_ROUNDS`] rounds (an empty day costs one); a page may therefore
//! be shorter than `limit`, even empty, with a `nextCursor` to continue.

use crate::BillingError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ledger::{ENTRY_INDEX_SHARDS, EntryKind, IndexedEntry, KindFilter, Ledger};
use serde::{Deserialize, Serialize};
use time::Date;

/// Rounds (one `Query` per shard each) one page may spend.
pub const MAX_ROUNDS: u32 = 32;
/// Extra entries asked of each shard beyond its even share of a page.
const SHARD_SLACK: u32 = 2;
/// What each shard is asked for per round when a type filter is on.
const FILTERED_PER_SHARD: u32 = 100;

/// What the listing shows: the days `from ..= to` and an optional type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminFilter {
    pub from: Date,
    pub to: Date,
    /// A type name (`admin_add`, `service_purchase_dns_plan`) or a service
    /// kind (`service_purchase`: every service type).
    pub kind: Option<String>,
}

/// Where the next page starts, and the filters it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminCursor {
    /// The day the page continues in.
    #[serde(rename = "d")]
    day: String,
    /// Entries strictly below this index sort key (`None`: the whole day).
    #[serde(rename = "b", skip_serializing_if = "Option::is_none")]
    before: Option<String>,
    #[serde(rename = "f")]
    from: String,
    #[serde(rename = "t", skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
}

impl AdminCursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(text: &str) -> Result<AdminCursor, BillingError> {
        let invalid = || BillingError::InvalidInput("cursor is invalid".into());
        if text.len() > 600 {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        let cursor: AdminCursor = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        super::parse_day(&cursor.day, "cursor").map_err(|_| invalid())?;
        super::parse_day(&cursor.from, "cursor").map_err(|_| invalid())?;
        if cursor.before.as_deref().is_some_and(|b| b.len() > 200) {
            return Err(invalid());
        }
        if let Some(kind) = &cursor.kind {
            kind_filter(kind).map_err(|_| invalid())?;
        }
        Ok(cursor)
    }
}

/// The filters of a request: from the query, or — with a cursor — the
/// cursor's own (a query naming other `from` or `type` than the cursor's is
/// 400; `to` only shapes the first page). Defaults: `to` today (UTC),
/// `from` 365 days before `to`; at most 366 days, `from <= to`.
pub fn admin_filter(
    from: Option<&str>,
    to: Option<&str>,
    kind: Option<&str>,
    cursor: Option<&AdminCursor>,
    today: Date,
) -> Result<(AdminFilter, Option<Position>), BillingError> {
    if let Some(kind) = kind {
        kind_filter(kind)?;
    }
    if let Some(cursor) = cursor {
        let cursor_from = super::parse_day(&cursor.from, "cursor")?;
        let cursor_day = super::parse_day(&cursor.day, "cursor")?;
        let from_differs = from
            .map(|f| super::parse_day(f, "from"))
            .transpose()?
            .is_some_and(|f| f != cursor_from);
        let kind_differs = kind.is_some_and(|k| Some(k) != cursor.kind.as_deref());
        if from_differs || kind_differs {
            return Err(BillingError::InvalidInput(
                "cursor belongs to other filters (from, type): start again without it".into(),
            ));
        }
        let filter = AdminFilter {
            from: cursor_from,
            to: cursor_day,
            kind: cursor.kind.clone(),
        };
        return Ok((filter, Some((cursor_day, cursor.before.clone()))));
    }
    let to = match to {
        Some(to) => super::parse_day(to, "to")?,
        None => today,
    };
    let from = match from {
        Some(from) => super::parse_day(from, "from")?,
        None => to
            .checked_sub(time::Duration::days(super::MAX_RANGE_DAYS - 1))
            .unwrap_or(to),
    };
    super::check_span(from, to)?;
    Ok((
        AdminFilter {
            from,
            to,
            kind: kind.map(str::to_owned),
        },
        None,
    ))
}

/// `type`: a current type name, or a bare service kind for all its service types.
pub fn kind_filter(raw: &str) -> Result<KindFilter, BillingError> {
    let bad = || {
        BillingError::InvalidInput(
            "type must be an entry type (purchase, admin_add, service_purchase_dns_plan, ...)"
                .into(),
        )
    };
    if ["service_purchase", "service_renewal", "service_refund"].contains(&raw) {
        return Ok(KindFilter::Prefix(format!("{raw}_")));
    }
    match EntryKind::parse_type(raw) {
        // Only today's names: the index holds entries written since it exists.
        Some((kind, service)) if kind.type_name(service.as_deref()) == raw => {
            Ok(KindFilter::Exact(raw.to_owned()))
        }
        _ => Err(bad()),
    }
}

/// Where a page starts: a day and, within it, the index sort key below
/// which it continues (`None`: the whole day).
pub type Position = (Date, Option<String>);

/// What a page cost.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReadStats {
    pub queries: u32,
    /// Items DynamoDB read (`ScannedCount`): what is billed.
    pub scanned: u32,
    pub returned: u32,
    pub consumed_rcu: f64,
    pub days: u32,
}

#[derive(Clone, Debug)]
pub struct AdminPage {
    pub items: Vec<IndexedEntry>,
    pub next: Option<AdminCursor>,
    pub stats: ReadStats,
}

/// One page, newest first (`limit` already within 1..=100).
#[tracing::instrument(skip_all, fields(limit))]
pub async fn admin_entries(
    ledger: &Ledger,
    filter: &AdminFilter,
    start: Option<Position>,
    limit: u32,
) -> Result<AdminPage, BillingError> {
    let kind = filter.kind.as_deref().map(kind_filter).transpose()?;
    let (mut day, mut before) = start.unwrap_or((filter.to, None));
    let mut items: Vec<IndexedEntry> = Vec::with_capacity(limit as usize);
    let mut stats = ReadStats {
        days: 1,
        ..ReadStats::default()
    };
    let mut rounds = 0;
    let next = loop {
        if day < filter.from {
            break None;
        }
        if items.len() as u32 >= limit || rounds >= MAX_ROUNDS {
            break Some((day, before));
        }
        rounds += 1;
        let need = limit - items.len() as u32;
        let per_shard = match kind {
            Some(_) => FILTERED_PER_SHARD,
            None => (need.div_ceil(ENTRY_INDEX_SHARDS) + SHARD_SLACK).min(need),
        };
        let pages = read_shards(
            ledger,
            &day.to_string(),
            before.as_deref(),
            per_shard,
            kind.as_ref(),
        )
        .await?;
        let mut floor: Option<String> = None;
        let mut merged = Vec::new();
        for page in pages {
            stats.queries += 1;
            stats.scanned += page.scanned;
            stats.consumed_rcu += page.consumed_rcu;
            if let Some(stop) = page.last_evaluated
                && floor.as_ref().is_none_or(|f| &stop > f)
            {
                floor = Some(stop);
            }
            merged.extend(page.entries);
        }
        // Only what is at or above every shard's stop is known complete.
        merged.retain(|e| floor.as_ref().is_none_or(|f| &e.index_sk >= f));
        merged.sort_by(|a, b| b.index_sk.cmp(&a.index_sk));
        let full = merged.len() as u32 >= need;
        merged.truncate(need as usize);
        if full {
            before = merged.last().map(|e| e.index_sk.clone());
        } else if let Some(floor) = floor {
            before = Some(floor);
        } else {
            // The day is done.
            match day.previous_day() {
                Some(previous) => {
                    day = previous;
                    before = None;
                    stats.days += 1;
                }
                None => {
                    items.extend(merged);
                    break None;
                }
            }
        }
        items.extend(merged);
    };
    stats.returned = items.len() as u32;
    tracing::info!(
        queries = stats.queries,
        scanned = stats.scanned,
        returned = stats.returned,
        days = stats.days,
        "admin entries page read"
    );
    Ok(AdminPage {
        items,
        next: next.map(|(day, before)| AdminCursor {
            day: day.to_string(),
            before,
            from: filter.from.to_string(),
            kind: filter.kind.clone(),
        }),
        stats,
    })
}

/// One round: every shard of `day` read concurrently (one task each).
async fn read_shards(
    ledger: &Ledger,
    day: &str,
    before: Option<&str>,
    per_shard: u32,
    kind: Option<&KindFilter>,
) -> Result<Vec<ledger::IndexPage>, BillingError> {
    let mut reads = tokio::task::JoinSet::new();
    for shard in 0..ENTRY_INDEX_SHARDS {
        let (ledger, day) = (ledger.clone(), day.to_owned());
        let (before, kind) = (before.map(str::to_owned), kind.cloned());
        reads.spawn(async move {
            ledger
                .entries_of_day(&day, shard, before.as_deref(), per_shard, kind.as_ref())
                .await
        });
    }
    let mut pages = Vec::with_capacity(ENTRY_INDEX_SHARDS as usize);
    while let Some(joined) = reads.join_next().await {
        let page = joined.map_err(|e| {
            ledger::LedgerError::corrupt("entry index read", format!("task failed: {e}"))
        })??;
        pages.push(page);
    }
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> Date {
        super::super::parse_day(text, "d").unwrap()
    }

    #[test]
    fn types_are_todays_names_or_service_kinds() {
        assert_eq!(
            kind_filter("admin_add").unwrap(),
            KindFilter::Exact("admin_add".into())
        );
        assert_eq!(
            kind_filter("service_purchase_dns_plan").unwrap(),
            KindFilter::Exact("service_purchase_dns_plan".into())
        );
        assert_eq!(
            kind_filter("service_renewal").unwrap(),
            KindFilter::Prefix("service_renewal_".into())
        );
        for bad in [
            "",
            "admin_credit",
            "dns_purchase",
            "nope",
            "service_purchase_X",
            "ADMIN_ADD",
        ] {
            assert!(kind_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_default_to_the_last_366_days_and_cursors_keep_theirs() {
        let today = day("2026-03-10");
        let (filter, start) = admin_filter(None, None, None, None, today).unwrap();
        assert_eq!(
            (filter.from, filter.to, start),
            (day("2025-03-10"), today, None)
        );
        assert!(admin_filter(Some("2026-03-11"), Some("2026-03-10"), None, None, today).is_err());
        assert!(admin_filter(Some("2024-01-01"), Some("2026-03-10"), None, None, today).is_err());
        assert!(admin_filter(None, None, Some("bogus"), None, today).is_err());

        let cursor = AdminCursor {
            day: "2026-03-05".into(),
            before: Some("2026-03-05T10:00:00.000Z#7#000000000003".into()),
            from: "2026-03-01".into(),
            kind: Some("admin_add".into()),
        };
        let decoded = AdminCursor::decode(&cursor.encode()).unwrap();
        assert_eq!(decoded, cursor);
        let (filter, start) = admin_filter(None, None, None, Some(&cursor), today).unwrap();
        assert_eq!(filter.from, day("2026-03-01"));
        assert_eq!(filter.kind.as_deref(), Some("admin_add"));
        assert_eq!(start.unwrap().0, day("2026-03-05"));
        // The same filters again are fine; others are refused.
        assert!(
            admin_filter(
                Some("2026-03-01"),
                None,
                Some("admin_add"),
                Some(&cursor),
                today
            )
            .is_ok()
        );
        assert!(admin_filter(Some("2026-02-01"), None, None, Some(&cursor), today).is_err());
        assert!(admin_filter(None, None, Some("refund"), Some(&cursor), today).is_err());
        for garbage in [
            "%%",
            "e30",
            &URL_SAFE_NO_PAD.encode(r#"{"d":"x","f":"2026-01-01"}"#),
        ] {
            assert!(AdminCursor::decode(garbage).is_err(), "{garbage}");
        }
    }
}
