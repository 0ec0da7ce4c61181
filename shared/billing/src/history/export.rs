//! The caller's history of a date range as CSV
//! (`GET /api/billing/transactions/export?from=YYYY-MM-DD&to=YYYY-MM-DD`):
//! both systems, one row per item, oldest first, amounts exact.
//!
//! Reads grow with the range, not with the account's age: token lines are
//! keyed by time (one `Query` of the range); ledger entries are numbered, so
//! the newest entry not after the range is found by a binary search over
//! entry numbers (`GetItem`s, about log2(entries)), then entries are read
//! downwards until one is older than the range. An entry's `createdAt` is
//! taken when its change starts and the change may commit a few seconds
//! later (conflict retries, bounded to 6 s by the ledger), so the walk
//! allows [`CLOCK_SLACK_SECONDS`] of disorder on both ends.

use super::csv::{Cell, push_row};
use crate::BillingError;
use crate::purchases::{TOKEN_PURCHASE_SK_PREFIX, TokenPurchase, token_lines_between};
use ledger::{Entry, EntryCursor, Ledger, UserId};
use time::Date;

/// Most rows in one export (each system's reads stop past it).
pub const MAX_EXPORT_ROWS: usize = 20_000;
/// Largest CSV answered (a Lambda response is at most 6 MB).
pub const MAX_EXPORT_BYTES: usize = 5 * 1024 * 1024;
/// See the module docs: how far out of order entry times may be.
pub const CLOCK_SLACK_SECONDS: i64 = 300;
const PAGE: u32 = 500;

pub const HEADER: [&str; 11] = [
    "id",
    "createdAt",
    "system",
    "type",
    "amount",
    "unit",
    "status",
    "description",
    "balanceBefore",
    "balanceAfter",
    "reference",
];

/// A validated range of whole UTC days, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportRange {
    pub from: Date,
    pub to: Date,
}

impl ExportRange {
    /// Both required: `from <= to`, at most [`super::MAX_RANGE_DAYS`] days.
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<ExportRange, BillingError> {
        let (Some(from), Some(to)) = (from, to) else {
            return Err(BillingError::InvalidInput(
                "from and to are required (YYYY-MM-DD)".into(),
            ));
        };
        let (from, to) = (super::parse_day(from, "from")?, super::parse_day(to, "to")?);
        super::check_span(from, to)?;
        Ok(ExportRange { from, to })
    }

    /// `transactions-<from>-to-<to>.csv`.
    pub fn filename(&self) -> String {
        format!("transactions-{}-to-{}.csv", self.from, self.to)
    }

    /// First instant of the range and first instant after it, as stored times.
    fn bounds(&self) -> (String, String) {
        let start = format!("{}T00:00:00.000Z", self.from);
        let end = match self.to.next_day() {
            Some(day) => format!("{day}T00:00:00.000Z"),
            None => "~".into(),
        };
        (start, end)
    }
}

fn shifted(stored: &str, seconds: i64) -> String {
    match time::OffsetDateTime::parse(stored, &time::format_description::well_known::Rfc3339) {
        Ok(at) => ledger::format_rfc3339(at + time::Duration::seconds(seconds)),
        Err(_) => stored.to_owned(),
    }
}

fn too_large() -> BillingError {
    BillingError::InvalidInput(format!(
        "the range holds more than {MAX_EXPORT_ROWS} transactions or 5 MB; export a shorter range"
    ))
}

/// The CSV (header and rows, CRLF line ends, UTF-8).
#[tracing::instrument(skip_all, fields(user = %user, from = %range.from, to = %range.to))]
pub async fn export_csv(
    ledger: &Ledger,
    user: &UserId,
    range: ExportRange,
) -> Result<String, BillingError> {
    let (start, end) = range.bounds();
    let lower = format!("{TOKEN_PURCHASE_SK_PREFIX}{}", range.from);
    let upper = format!("{TOKEN_PURCHASE_SK_PREFIX}{}T~", range.to);
    let (entries, lines) = tokio::join!(
        entries_between(ledger, user, &start, &end),
        token_lines_between(ledger, user, &lower, &upper, MAX_EXPORT_ROWS),
    );
    let (entries, lines) = (entries?, lines?.ok_or_else(too_large)?);
    if entries.len() + lines.len() > MAX_EXPORT_ROWS {
        return Err(too_large());
    }
    let csv = render(&entries, &lines);
    if csv.len() > MAX_EXPORT_BYTES {
        return Err(too_large());
    }
    Ok(csv)
}

/// The rows, oldest first (ties: credits before tokens, then by id).
pub fn render(entries: &[Entry], lines: &[TokenPurchase]) -> String {
    enum Row<'a> {
        Credit(&'a Entry),
        Token(&'a TokenPurchase),
    }
    let mut rows: Vec<(&str, u8, String, Row<'_>)> = entries
        .iter()
        .map(|e| {
            (
                e.created_at.as_str(),
                0,
                format!("cc-{}", e.seq),
                Row::Credit(e),
            )
        })
        .chain(
            lines
                .iter()
                .map(|l| (l.created_at.as_str(), 1, l.id(), Row::Token(l))),
        )
        .collect();
    rows.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
    let mut out = String::with_capacity(128 * (rows.len() + 1));
    push_row(&mut out, &HEADER.map(Cell::Plain));
    for (_, _, id, row) in &rows {
        match row {
            Row::Credit(e) => {
                let (amount, before, after) = (
                    e.amount.to_string(),
                    e.balance_before.to_string(),
                    e.balance_after.to_string(),
                );
                push_row(
                    &mut out,
                    &[
                        Cell::Plain(id),
                        Cell::Plain(&e.created_at),
                        Cell::Plain("custom_credits"),
                        Cell::Plain(&e.type_name()),
                        Cell::Plain(&amount),
                        Cell::Plain("USD"),
                        Cell::Plain("completed"),
                        Cell::Text(&e.description),
                        Cell::Plain(&before),
                        Cell::Plain(&after),
                        Cell::Text(e.reference.as_deref().unwrap_or_default()),
                    ],
                );
            }
            Row::Token(l) => {
                let amount = l.tokens.get().to_string();
                let reference = match &l.admin {
                    Some(admin) => admin.credit_id.map(|c| c.to_string()).unwrap_or_default(),
                    None => l.order_id.clone(),
                };
                push_row(
                    &mut out,
                    &[
                        Cell::Plain(id),
                        Cell::Plain(&l.created_at),
                        Cell::Plain("virtfusion"),
                        Cell::Plain(&l.kind),
                        Cell::Plain(&amount),
                        Cell::Plain("tokens"),
                        Cell::Plain(&l.status),
                        Cell::Text(&l.description),
                        Cell::Plain(""),
                        Cell::Plain(""),
                        Cell::Text(&reference),
                    ],
                );
            }
        }
    }
    out
}

/// The user's entries with `start <= createdAt < end`, oldest first.
async fn entries_between(
    ledger: &Ledger,
    user: &UserId,
    start: &str,
    end: &str,
) -> Result<Vec<Entry>, BillingError> {
    let Some(newest) = ledger.entries(user, 1, None).await?.entries.pop() else {
        return Ok(Vec::new());
    };
    let late = shifted(end, CLOCK_SLACK_SECONDS);
    let early = shifted(start, -CLOCK_SLACK_SECONDS);
    // The highest entry that may still be in the range: entries above the
    // first one at or after `late` are after the range.
    let top = if newest.created_at < late {
        newest.seq
    } else {
        let (mut lo, mut hi) = (0u64, newest.seq); // entry(hi) >= late; entry(lo) < late (0: none)
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            match ledger.entry(user, mid).await? {
                Some(e) if e.created_at < late => lo = mid,
                _ => hi = mid,
            }
        }
        hi
    };
    let mut found = Vec::new();
    let mut cursor = Some(EntryCursor {
        before_seq: top + 1,
    });
    while let Some(position) = cursor {
        let page = ledger.entries(user, PAGE, Some(position)).await?;
        let mut done = page.next.is_none();
        for entry in page.entries {
            if entry.created_at.as_str() < early.as_str() {
                done = true;
                break;
            }
            if entry.created_at.as_str() >= start && entry.created_at.as_str() < end {
                found.push(entry);
                if found.len() > MAX_EXPORT_ROWS {
                    return Err(too_large());
                }
            }
        }
        cursor = if done { None } else { page.next };
    }
    found.reverse();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_whole_days_at_most_366() {
        let ok = ExportRange::parse(Some("2024-01-01"), Some("2024-12-31")).unwrap();
        assert_eq!(ok.filename(), "transactions-2024-01-01-to-2024-12-31.csv");
        assert_eq!(
            ok.bounds(),
            (
                "2024-01-01T00:00:00.000Z".to_owned(),
                "2025-01-01T00:00:00.000Z".to_owned()
            )
        );
        // 2024 is a leap year: 366 days is the most.
        assert!(ExportRange::parse(Some("2024-01-01"), Some("2025-01-01")).is_err());
        assert!(ExportRange::parse(Some("2025-01-01"), Some("2026-01-01")).is_ok());
        assert!(ExportRange::parse(Some("2026-01-02"), Some("2026-01-01")).is_err());
        assert!(ExportRange::parse(Some("2026-01-01"), Some("2026-01-01")).is_ok());
        for (from, to) in [
            (None, Some("2026-01-01")),
            (Some("2026-1-1"), Some("2026-01-02")),
            (Some("2026-02-30"), Some("2026-03-01")),
            (Some("20260101"), Some("2026-01-02")),
            (Some("2026-01-01T00:00"), Some("2026-01-02")),
        ] {
            assert!(ExportRange::parse(from, to).is_err(), "{from:?} {to:?}");
        }
    }

    #[test]
    fn stored_times_shift_exactly() {
        assert_eq!(
            shifted("2026-01-01T00:00:00.000Z", -300),
            "2025-12-31T23:55:00.000Z"
        );
    }
}
