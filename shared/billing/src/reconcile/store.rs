//! Storage of the reconciliation: what it reads (orders settled in a window
//! through the `gsi2` settlement index, orders, pointers and refund records
//! by key in batches) and what it writes (run summaries, mismatches).
//!
//! Items:
//! - run: `pk=RECONRUN`, `sk=<startedAt>#<runId>`, `summary` (the JSON summary);
//! - mismatch: `pk=MISMATCH#<id>`, `sk=MISMATCH`; while open it carries
//!   `gsi1pk=MISMATCH#open`, `gsi1sk=<detectedAt>#<id>` (sparse: the admin
//!   list reads open mismatches only, never the table).
//!
//! Every read is a `Query` or a `BatchGetItem`; never a `Scan`. `items_read`
//! counts what DynamoDB returned, for the run summary and the benchmark.

use super::{Mismatch, MismatchKind, MismatchStatus};
use crate::BillingError;
use crate::events::{self, DetailType, Event, Written};
use crate::orders::{ORDER_SK, OrderRecord};
use crate::store::attrs::s;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem};
use ledger::{AttrMap, Ledger, LedgerError, UserId};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use time::OffsetDateTime;

pub const RUN_PK: &str = "RECONRUN";
pub const MISMATCH_SK: &str = "MISMATCH";
pub const OPEN_MISMATCHES: &str = "MISMATCH#open";
/// The settlement index: `gsi2pk=SETTLED#<yyyy-mm-dd>`, `gsi2sk=<settledAt>#<orderId>`.
pub const SETTLED_INDEX: &str = "gsi2";
/// BatchGetItem's limit.
const BATCH: usize = 100;
/// Bound on unprocessed-key resends of one batch.
const MAX_BATCH_ROUNDS: u32 = 8;
/// Bound on settlement-index pages per day.
const MAX_INDEX_PAGES_PER_DAY: u32 = 1000;

fn text<'a>(item: &'a AttrMap, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v),
        _ => None,
    }
}

pub use crate::store::orders::settled_partition;

/// An order found in the settlement index.
#[derive(Clone, Debug)]
pub struct Settled {
    pub order: OrderRecord,
    /// When we settled it (RFC 3339, milliseconds).
    pub settled_at: String,
}

/// Reads for one run; counts items DynamoDB returned.
pub struct Reader<'a> {
    ledger: &'a Ledger,
    items_read: AtomicU64,
}

impl<'a> Reader<'a> {
    pub fn new(ledger: &'a Ledger) -> Reader<'a> {
        Reader {
            ledger,
            items_read: AtomicU64::new(0),
        }
    }

    pub fn items_read(&self) -> u64 {
        self.items_read.load(Ordering::Relaxed)
    }

    fn count(&self, n: usize) {
        self.items_read.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Orders settled in `[start, end]` (eventually consistent: a hint that
    /// saves reading them one by one; anything that moves money re-reads).
    pub async fn settled_between(
        &self,
        start: OffsetDateTime,
        end: OffsetDateTime,
    ) -> Result<Vec<Settled>, BillingError> {
        let from = ledger::format_rfc3339(start);
        let to = format!("{}#\u{10FFFF}", ledger::format_rfc3339(end));
        let mut orders = Vec::new();
        let mut day = start.date();
        while day <= end.date() {
            let partition = format!("SETTLED#{day}");
            let mut cursor: Option<HashMap<String, AttributeValue>> = None;
            for _ in 0..MAX_INDEX_PAGES_PER_DAY {
                let out = self
                    .ledger
                    .client()
                    .query()
                    .table_name(self.ledger.table())
                    .index_name(SETTLED_INDEX)
                    .key_condition_expression("gsi2pk = :p AND gsi2sk BETWEEN :from AND :to")
                    .expression_attribute_values(":p", s(&partition))
                    .expression_attribute_values(":from", s(&from))
                    .expression_attribute_values(":to", s(&to))
                    .set_exclusive_start_key(cursor.take())
                    .send()
                    .await
                    .map_err(|e| LedgerError::dynamo("Query", &e))?;
                self.count(out.items().len());
                for item in out.items() {
                    let settled_at = text(item, "gsi2sk")
                        .and_then(|sk| sk.split('#').next())
                        .unwrap_or_default()
                        .to_owned();
                    orders.push(Settled {
                        order: OrderRecord::from_item(item)?,
                        settled_at,
                    });
                }
                match out.last_evaluated_key {
                    Some(key) if !key.is_empty() => cursor = Some(key),
                    _ => break,
                }
            }
            day = match day.next_day() {
                Some(next) => next,
                None => break,
            };
        }
        Ok(orders)
    }

    /// Strongly consistent batch reads of `(pk, sk)` keys; the found items by pk.
    pub async fn get_many(
        &self,
        keys: &[(String, &str)],
    ) -> Result<HashMap<String, AttrMap>, BillingError> {
        let mut found = HashMap::new();
        let mut seen = HashSet::new();
        let unique: Vec<&(String, &str)> = keys.iter().filter(|(pk, _)| seen.insert(pk)).collect();
        for chunk in unique.chunks(BATCH) {
            let mut request = KeysAndAttributes::builder().consistent_read(true);
            for (pk, sk) in chunk {
                request = request.keys(HashMap::from([
                    ("pk".to_owned(), s(pk)),
                    ("sk".to_owned(), s(*sk)),
                ]));
            }
            let mut pending = Some(
                request
                    .build()
                    .map_err(|e| LedgerError::corrupt("batch get", e.to_string()))?,
            );
            for round in 0..MAX_BATCH_ROUNDS {
                let Some(keys) = pending.take() else { break };
                if round > 0 {
                    // Throttled keys come back unprocessed: back off, then resend them.
                    tokio::time::sleep(std::time::Duration::from_millis(20 << round)).await;
                }
                let out = self
                    .ledger
                    .client()
                    .batch_get_item()
                    .request_items(self.ledger.table(), keys)
                    .send()
                    .await
                    .map_err(|e| LedgerError::dynamo("BatchGetItem", &e))?;
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(self.ledger.table()))
                    .unwrap_or_default()
                {
                    self.count(1);
                    if let Some(pk) = text(&item, "pk") {
                        found.insert(pk.to_owned(), item);
                    }
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(self.ledger.table()))
                    .filter(|k| !k.keys().is_empty());
            }
            if pending.is_some() {
                return Err(LedgerError::Contended {
                    attempts: MAX_BATCH_ROUNDS,
                }
                .into());
            }
        }
        Ok(found)
    }

    /// Orders by id (absent ones are left out).
    pub async fn orders(
        &self,
        order_ids: &[String],
    ) -> Result<HashMap<String, OrderRecord>, BillingError> {
        let keys: Vec<(String, &str)> = order_ids
            .iter()
            .map(|id| (OrderRecord::pk(id), ORDER_SK))
            .collect();
        let mut orders = HashMap::new();
        for item in self.get_many(&keys).await?.values() {
            let order = OrderRecord::from_item(item)?;
            orders.insert(order.order_id.clone(), order);
        }
        Ok(orders)
    }

    /// Pointers (`CAPTURE#…`, `PURCHASE#…`) → order ids, by pointer pk.
    pub async fn pointers(&self, pks: &[String]) -> Result<HashMap<String, String>, BillingError> {
        let keys: Vec<(String, &str)> = pks
            .iter()
            .map(|pk| (pk.clone(), crate::store::pointers::POINTER_SK))
            .collect();
        Ok(self
            .get_many(&keys)
            .await?
            .into_iter()
            .filter_map(|(pk, item)| text(&item, "orderId").map(|o| (pk, o.to_owned())))
            .collect())
    }

    /// Refund records (`REFUND#<id>`) by refund id: (amount text, status if any).
    pub async fn refunds(
        &self,
        refund_ids: &[String],
    ) -> Result<HashMap<String, RefundSeen>, BillingError> {
        let keys: Vec<(String, &str)> = refund_ids
            .iter()
            .map(|id| (format!("REFUND#{id}"), "REFUND"))
            .collect();
        Ok(self
            .get_many(&keys)
            .await?
            .into_iter()
            .filter_map(|(pk, item)| {
                let id = pk.strip_prefix("REFUND#")?.to_owned();
                let amount = match item.get("amount") {
                    Some(AttributeValue::N(n)) => billing_money::parse_usd_literal(n).ok(),
                    _ => None,
                };
                let status = text(&item, "status").map(str::to_owned);
                let reversal = text(&item, "movement") == Some("reversal")
                    || text(&item, "source") == Some("paypal_reversal");
                Some((
                    id,
                    RefundSeen {
                        amount,
                        status,
                        reversal,
                    },
                ))
            })
            .collect())
    }
}

/// A refund record as the reconciliation sees it.
#[derive(Clone, Debug)]
pub struct RefundSeen {
    pub amount: Option<billing_money::Usd>,
    /// Absent on records that are final when written.
    pub status: Option<String>,
    /// A reversal (chargeback), not a refund.
    pub reversal: bool,
}

impl RefundSeen {
    /// Applied as PayPal's completed line says: a completed refund or
    /// reversal, or a reversal whose dispute was won since (restored; its
    /// `T1202` line is judged on its own). A refund held as pending, failed
    /// or cancelled is not: PayPal completed it.
    pub fn is_final(&self) -> bool {
        match self.status.as_deref() {
            None | Some("completed" | "COMPLETED") => true,
            Some("cancelled") => self.reversal,
            Some(_) => false,
        }
    }

    /// A reversal restored because its dispute was won.
    pub fn is_restored(&self) -> bool {
        self.reversal && self.status.as_deref() == Some("cancelled")
    }
}

// ----------------------------------------------------------------- writes

fn mismatch_item(m: &Mismatch) -> AttrMap {
    let mut item = AttrMap::new();
    item.insert("pk".into(), s(format!("MISMATCH#{}", m.id)));
    item.insert("sk".into(), s(MISMATCH_SK));
    item.insert("mismatchId".into(), s(&m.id));
    item.insert("kind".into(), s(m.kind.as_str()));
    item.insert("transactionId".into(), s(&m.transaction_id));
    item.insert("detail".into(), s(&m.detail));
    item.insert("status".into(), s(m.status.as_str()));
    item.insert("detectedAt".into(), s(&m.detected_at));
    item.insert("lastSeenAt".into(), s(&m.last_seen_at));
    item.insert("runId".into(), s(&m.run_id));
    let optional = [
        ("orderId", &m.order_id),
        ("user", &m.user),
        ("paypalAmount", &m.paypal_amount),
        ("ledgerAmount", &m.ledger_amount),
        ("currency", &m.currency),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            item.insert(name.into(), s(value));
        }
    }
    if m.status == MismatchStatus::Open {
        item.insert("gsi1pk".into(), s(OPEN_MISMATCHES));
        item.insert("gsi1sk".into(), s(format!("{}#{}", m.detected_at, m.id)));
    }
    item
}

pub fn mismatch_from_item(item: &AttrMap) -> Result<Mismatch, BillingError> {
    let bad = |field: &str| {
        BillingError::Ledger(LedgerError::corrupt(
            text(item, "pk").unwrap_or("MISMATCH#?"),
            format!("{field} missing or malformed"),
        ))
    };
    let req = |name: &str| text(item, name).map(str::to_owned).ok_or_else(|| bad(name));
    let opt = |name: &str| text(item, name).map(str::to_owned);
    Ok(Mismatch {
        id: req("mismatchId")?,
        kind: text(item, "kind")
            .and_then(MismatchKind::parse)
            .ok_or_else(|| bad("kind"))?,
        transaction_id: req("transactionId")?,
        order_id: opt("orderId"),
        user: opt("user"),
        paypal_amount: opt("paypalAmount"),
        ledger_amount: opt("ledgerAmount"),
        currency: opt("currency"),
        detail: req("detail")?,
        status: text(item, "status")
            .and_then(MismatchStatus::parse)
            .ok_or_else(|| bad("status"))?,
        detected_at: req("detectedAt")?,
        last_seen_at: req("lastSeenAt")?,
        run_id: req("runId")?,
        resolved_by: opt("resolvedBy"),
        resolution: opt("resolution"),
        resolved_at: opt("resolvedAt"),
    })
}

/// Records a mismatch once (by its id), with its `reconciliation.mismatch`
/// event in the same transaction. Returns true when it is new; an existing
/// one only has `lastSeenAt` moved on (a resolved one stays resolved) and
/// publishes nothing again.
pub async fn record_mismatch(ledger: &Ledger, m: &Mismatch) -> Result<bool, BillingError> {
    let put = Put::builder()
        .table_name(ledger.table())
        .set_item(Some(mismatch_item(m)))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(|e| LedgerError::corrupt("mismatch", e.to_string()))?;
    let put = TransactWriteItem::builder().put(put).build();
    match events::write_with(ledger, put, &[mismatch_event(m)]).await? {
        Written::Yes => Ok(true),
        Written::ConditionFailed { .. } => {
            let seen = ledger
                .client()
                .update_item()
                .table_name(ledger.table())
                .key("pk", s(format!("MISMATCH#{}", m.id)))
                .key("sk", s(MISMATCH_SK))
                .update_expression("SET lastSeenAt = :at")
                .condition_expression("#status = :open")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":at", s(&m.last_seen_at))
                .expression_attribute_values(":open", s(MismatchStatus::Open.as_str()))
                .send()
                .await;
            match seen {
                Ok(_) => Ok(false),
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    Ok(false)
                }
                Err(err) => Err(LedgerError::dynamo("UpdateItem", &err).into()),
            }
        }
    }
}

/// `reconciliation.mismatch`: one per mismatch id (its key), so a rerun
/// that finds the same mismatch reports nothing new.
fn mismatch_event(m: &Mismatch) -> Event {
    let user = m.user.as_deref().and_then(|u| UserId::parse(u).ok());
    let mut event = Event::about(
        DetailType::ReconciliationMismatch,
        &format!("MISMATCH#{}", m.id),
        user.as_ref(),
    )
    .text("mismatchId", &m.id)
    .text("kind", m.kind.as_str())
    .text("transactionId", &m.transaction_id)
    .text("detail", &m.detail)
    .text("runId", &m.run_id)
    .text("detectedAt", &m.detected_at);
    let optional = [
        ("orderId", &m.order_id),
        ("paypalAmount", &m.paypal_amount),
        ("ledgerAmount", &m.ledger_amount),
        ("currency", &m.currency),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            event = event.text(name, value);
        }
    }
    event
}

/// Whether a mismatch with this id is open (strongly consistent).
pub async fn mismatch(ledger: &Ledger, id: &str) -> Result<Option<Mismatch>, BillingError> {
    let out = ledger
        .client()
        .get_item()
        .table_name(ledger.table())
        .key("pk", s(format!("MISMATCH#{id}")))
        .key("sk", s(MISMATCH_SK))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| LedgerError::dynamo("GetItem", &e))?;
    out.item.as_ref().map(mismatch_from_item).transpose()
}

/// Open → resolved, once: `Ok(false)` when it was not open.
pub async fn resolve_mismatch(
    ledger: &Ledger,
    id: &str,
    admin_id: &str,
    reason: &str,
) -> Result<bool, BillingError> {
    let result = ledger
        .client()
        .update_item()
        .table_name(ledger.table())
        .key("pk", s(format!("MISMATCH#{id}")))
        .key("sk", s(MISMATCH_SK))
        .update_expression(
            "SET #status = :resolved, resolvedBy = :by, resolution = :why, resolvedAt = :at \
             REMOVE gsi1pk, gsi1sk",
        )
        .condition_expression("#status = :open")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":resolved", s(MismatchStatus::Resolved.as_str()))
        .expression_attribute_values(":open", s(MismatchStatus::Open.as_str()))
        .expression_attribute_values(":by", s(admin_id))
        .expression_attribute_values(":why", s(reason))
        .expression_attribute_values(":at", s(ledger::now_rfc3339()))
        .send()
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
        {
            Ok(false)
        }
        Err(err) => Err(LedgerError::dynamo("UpdateItem", &err).into()),
    }
}

/// Open mismatches, oldest first (at most `limit`), through the sparse index.
pub async fn open_mismatches(ledger: &Ledger, limit: u32) -> Result<Vec<Mismatch>, BillingError> {
    let out = ledger
        .client()
        .query()
        .table_name(ledger.table())
        .index_name("gsi1")
        .key_condition_expression("gsi1pk = :p")
        .expression_attribute_values(":p", s(OPEN_MISMATCHES))
        .limit(limit.clamp(1, 100) as i32)
        .send()
        .await
        .map_err(|e| LedgerError::dynamo("Query", &e))?;
    let keys: Vec<(String, &str)> = out
        .items()
        .iter()
        .filter_map(|k| text(k, "pk").map(|pk| (pk.to_owned(), MISMATCH_SK)))
        .collect();
    let order: Vec<String> = keys.iter().map(|(pk, _)| pk.clone()).collect();
    let found = Reader::new(ledger).get_many(&keys).await?;
    let mut open = Vec::new();
    for pk in order {
        // The index is eventually consistent: keep what is still open.
        if let Some(item) = found.get(&pk) {
            let m = mismatch_from_item(item)?;
            if m.status == MismatchStatus::Open {
                open.push(m);
            }
        }
    }
    Ok(open)
}

/// Stores a run's summary.
pub async fn put_run(
    ledger: &Ledger,
    started_at: &str,
    run_id: &str,
    summary: &serde_json::Value,
) -> Result<(), BillingError> {
    ledger
        .client()
        .put_item()
        .table_name(ledger.table())
        .item("pk", s(RUN_PK))
        .item("sk", s(format!("{started_at}#{run_id}")))
        .item("summary", s(summary.to_string()))
        .send()
        .await
        .map_err(|e| LedgerError::dynamo("PutItem", &e))?;
    Ok(())
}

/// The latest runs, newest first.
pub async fn latest_runs(
    ledger: &Ledger,
    limit: u32,
) -> Result<Vec<serde_json::Value>, BillingError> {
    let out = ledger
        .client()
        .query()
        .table_name(ledger.table())
        .key_condition_expression("pk = :p")
        .expression_attribute_values(":p", s(RUN_PK))
        .scan_index_forward(false)
        .limit(limit.clamp(1, 100) as i32)
        .send()
        .await
        .map_err(|e| LedgerError::dynamo("Query", &e))?;
    out.items()
        .iter()
        .map(|item| {
            text(item, "summary")
                .and_then(|t| serde_json::from_str(t).ok())
                .ok_or_else(|| {
                    BillingError::Ledger(LedgerError::corrupt(RUN_PK, "summary malformed"))
                })
        })
        .collect()
}
