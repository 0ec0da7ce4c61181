//! Reconciliation: PayPal is the source of truth for the money it holds, and
//! this proves the ledger agrees (API.md "Reconciliation").
//!
//! 1. **Read** PayPal's record of the window (Transaction Search, every page,
//!    bounded) — captures (`T00xx`), refunds (`T1107`), reversals (`T1106`,
//!    `T1201` chargebacks) and chargeback reversals (`T1202`: a dispute
//!    won, the money back) — and our orders settled in the window (the `gsi2`
//!    settlement index, one `Query` per day), then what is still unknown by
//!    key in batches (`BatchGetItem`): orders, pointers, refund records.
//! 2. **Judge** each line ([`judge_payment`], [`judge_refund`]): in sync,
//!    healable, a mismatch, or nothing to do yet (pending).
//! 3. **Heal** only through the exactly-once paths every other caller uses:
//!    a completed capture never settled is settled by [`checkout::settle`]
//!    from a per-order read (`GET /v2/checkout/orders/{id}`), so credits are
//!    credited once (`ONCE#capture#<id>`) and paid token purchases become a
//!    pending delivery (delivered by the scheduled job); a completed refund
//!    or reversal never applied goes through the webhook's own path
//!    (`after_webhook::report_refund`, once per refund id; a refund held as
//!    failed or cancelled that PayPal completed is applied the same way);
//!    a chargeback reversal whose reversal is not restored goes through the
//!    dispute webhook's path (`after_webhook::capture_dispute_won`: the win
//!    remembered, the reversal restored once, now or when it lands).
//!    Reconciliation can race the capture route, the webhook and the
//!    renewal job.
//! 4. **Record** what it cannot heal as mismatches (id derived from the
//!    PayPal id and the kind, so a rerun finds the same ones), and store the
//!    run's summary.

mod judge;
mod store;

pub use judge::{Finding, Verdict, judge_chargeback_reversal, judge_payment, judge_refund};
pub use store::{latest_runs, open_mismatches, settled_partition};

use crate::checkout::settle;
use crate::orders::OrderRecord;
use crate::refunds::{Movement, Restoration};
use crate::{BillingError, Reason};
use ledger::Ledger;
use paypal::{
    PayPalClient, PayPalError, RefundStatus, ReportedTransaction, TransactionKind, TransactionQuery,
};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::time::Instant;
use time::OffsetDateTime;
use virtfusion::VirtFusionClient;

/// How a run reads PayPal.
#[derive(Clone, Copy, Debug)]
pub struct ReconcileOptions {
    /// The window ends at the job's clock and reaches back this far (default 3 days).
    pub window: time::Duration,
    /// Transaction Search page size (PayPal's maximum, 500).
    pub page_size: u32,
    /// Bound on pages per run (100 × 500 = 50,000 lines).
    pub max_pages: u32,
    /// Bound on per-order PayPal reads that confirm a purchase PayPal did not list.
    pub max_order_reads: u32,
}

impl Default for ReconcileOptions {
    fn default() -> ReconcileOptions {
        ReconcileOptions {
            window: time::Duration::days(3),
            page_size: paypal::REPORTING_MAX_PAGE_SIZE,
            max_pages: 100,
            max_order_reads: 200,
        }
    }
}

/// Why a mismatch could not be healed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchKind {
    /// PayPal's amount differs from the order's (or from what we recorded).
    AmountDiffers,
    /// Not USD.
    CurrencyDiffers,
    /// PayPal's `custom_field` names another user than the order.
    UserDiffers,
    /// A PayPal payment, refund or reversal for no order we know.
    UnknownPayment,
    /// A purchase we settled that PayPal does not know.
    UnknownToPaypal,
    /// PayPal denied a payment we settled.
    StatusDiffers,
}

impl MismatchKind {
    const ALL: [MismatchKind; 6] = [
        MismatchKind::AmountDiffers,
        MismatchKind::CurrencyDiffers,
        MismatchKind::UserDiffers,
        MismatchKind::UnknownPayment,
        MismatchKind::UnknownToPaypal,
        MismatchKind::StatusDiffers,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MismatchKind::AmountDiffers => "amount_differs",
            MismatchKind::CurrencyDiffers => "currency_differs",
            MismatchKind::UserDiffers => "user_differs",
            MismatchKind::UnknownPayment => "unknown_payment",
            MismatchKind::UnknownToPaypal => "unknown_to_paypal",
            MismatchKind::StatusDiffers => "status_differs",
        }
    }

    fn parse(text: &str) -> Option<MismatchKind> {
        MismatchKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    fn short(self) -> &'static str {
        match self {
            MismatchKind::AmountDiffers => "amount",
            MismatchKind::CurrencyDiffers => "currency",
            MismatchKind::UserDiffers => "user",
            MismatchKind::UnknownPayment => "unknown",
            MismatchKind::UnknownToPaypal => "missing",
            MismatchKind::StatusDiffers => "status",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchStatus {
    Open,
    Resolved,
}

impl MismatchStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MismatchStatus::Open => "open",
            MismatchStatus::Resolved => "resolved",
        }
    }

    fn parse(text: &str) -> Option<MismatchStatus> {
        [MismatchStatus::Open, MismatchStatus::Resolved]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// Drift an admin must look at. Amounts are decimal strings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mismatch {
    pub id: String,
    pub kind: MismatchKind,
    /// The PayPal capture, refund or reversal id.
    pub transaction_id: String,
    pub order_id: Option<String>,
    pub user: Option<String>,
    pub paypal_amount: Option<String>,
    pub ledger_amount: Option<String>,
    pub currency: Option<String>,
    pub detail: String,
    pub status: MismatchStatus,
    pub detected_at: String,
    pub last_seen_at: String,
    pub run_id: String,
    pub resolved_by: Option<String>,
    pub resolution: Option<String>,
    pub resolved_at: Option<String>,
}

/// The id of the mismatch of `kind` about PayPal transaction `transaction_id`.
pub fn mismatch_id(kind: MismatchKind, transaction_id: &str) -> String {
    format!("{transaction_id}-{}", kind.short())
}

/// A run's summary (stored, logged and returned by the job).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub run_id: String,
    pub started_at: String,
    pub window: WindowView,
    /// PayPal's data is complete up to here.
    pub paypal_refreshed_at: Option<String>,
    pub pages: u32,
    /// PayPal lines compared (captures, refunds, reversals).
    pub checked: u64,
    pub captures: u64,
    pub refunds: u64,
    pub reversals: u64,
    /// Lines not final at PayPal yet.
    pub pending: u64,
    /// Lines of other kinds (fees, transfers...).
    pub ignored: u64,
    pub unreadable: u64,
    pub healed: u64,
    pub healed_captures: u64,
    pub healed_refunds: u64,
    /// Open mismatches this run found (new or still open).
    pub mismatches: u64,
    pub new_mismatches: u64,
    /// Heals that failed (left for the next run).
    pub errors: u64,
    /// Settled purchases PayPal did not list, checked by a per-order read.
    pub orders_read: u64,
    pub dynamo_items_read: u64,
    /// False when a bound or the deadline stopped the run early.
    pub complete: bool,
    pub elapsed_ms: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct WindowView {
    pub start: String,
    pub end: String,
}

fn upstream(e: PayPalError) -> BillingError {
    tracing::warn!(error = %e, "PayPal call failed during reconciliation");
    BillingError::Upstream {
        service: "PayPal",
        transient: e.is_transient(),
    }
}

/// PayPal's time format for the search (seconds, UTC).
fn paypal_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

struct Report {
    lines: Vec<ReportedTransaction>,
    pages: u32,
    complete: bool,
    refreshed: Option<String>,
    unreadable: u64,
}

/// Every page of the window (bounded; each page retried twice: it is a read).
async fn read_report(
    paypal: &PayPalClient,
    start: OffsetDateTime,
    end: OffsetDateTime,
    options: ReconcileOptions,
) -> Result<Report, BillingError> {
    let mut report = Report {
        lines: Vec::new(),
        pages: 0,
        complete: false,
        refreshed: None,
        unreadable: 0,
    };
    let mut seen = HashSet::new();
    let mut page = 1;
    while page <= options.max_pages {
        let query = TransactionQuery {
            start_date: paypal_time(start),
            end_date: paypal_time(end),
            page,
            page_size: options.page_size,
        };
        let mut attempt = 0;
        let answer = loop {
            match paypal.search_transactions(&query).await {
                Ok(answer) => break answer,
                Err(e) if attempt < 2 && e.is_transient() => attempt += 1,
                Err(e) => return Err(upstream(e)),
            }
        };
        report.pages += 1;
        report.unreadable += u64::from(answer.unreadable);
        if page == 1 {
            report.refreshed = answer.last_refreshed.clone();
        }
        for line in answer.transactions {
            if seen.insert(line.id.clone()) {
                report.lines.push(line);
            }
        }
        if page >= answer.total_pages {
            report.complete = true;
            break;
        }
        page += 1;
    }
    Ok(report)
}

/// One run over the window ending at `now`.
#[tracing::instrument(skip_all, fields(run_id))]
pub async fn run(
    ledger: &Ledger,
    paypal: &PayPalClient,
    virtfusion: Option<&VirtFusionClient>,
    now: OffsetDateTime,
    options: ReconcileOptions,
    deadline: Instant,
) -> Result<RunSummary, BillingError> {
    let started = Instant::now();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    tracing::Span::current().record("run_id", run_id.as_str());
    let start = now - options.window;
    let mut summary = RunSummary {
        run_id: run_id.clone(),
        started_at: ledger::now_rfc3339(),
        window: WindowView {
            start: ledger::format_rfc3339(start),
            end: ledger::format_rfc3339(now),
        },
        ..RunSummary::default()
    };
    let report = read_report(paypal, start, now, options).await?;
    summary.pages = report.pages;
    summary.unreadable = report.unreadable;
    summary.paypal_refreshed_at = report.refreshed.clone();
    let mut complete = report.complete;

    let reader = store::Reader::new(ledger);
    let settled = reader.settled_between(start, now).await?;
    let mut by_capture: HashMap<String, OrderRecord> = settled
        .iter()
        .filter_map(|s| Some((s.order.capture_id.clone()?, s.order.clone())))
        .collect();

    let (mut payments, mut refunds, mut won) = (Vec::new(), Vec::new(), Vec::new());
    for line in &report.lines {
        match line.kind {
            TransactionKind::Payment => payments.push(line),
            TransactionKind::Refund | TransactionKind::Reversal => refunds.push(line),
            TransactionKind::ChargebackReversal => won.push(line),
            TransactionKind::Other => summary.ignored += 1,
        }
    }
    summary.captures = payments.len() as u64;
    summary.refunds = refunds
        .iter()
        .filter(|l| l.kind == TransactionKind::Refund)
        .count() as u64;
    // Chargebacks and their reversals (a dispute won).
    summary.reversals = refunds.len() as u64 - summary.refunds + won.len() as u64;
    summary.checked = summary.captures + refunds.len() as u64 + won.len() as u64;

    // Orders of captures the index did not name: by order id, then by invoice.
    let unknown: Vec<&&ReportedTransaction> = payments
        .iter()
        .filter(|t| !by_capture.contains_key(&t.id))
        .collect();
    let order_ids: Vec<String> = unknown
        .iter()
        .filter(|t| t.reference_type.as_deref().is_none_or(|r| r == "ODR"))
        .filter_map(|t| t.reference_id.clone())
        .collect();
    let mut orders = reader.orders(&order_ids).await?;
    let by_invoice: Vec<String> = unknown
        .iter()
        .filter(|t| {
            t.reference_id
                .as_ref()
                .is_none_or(|id| !orders.contains_key(id))
        })
        .filter_map(|t| {
            t.invoice_id
                .as_deref()
                .map(crate::store::pointers::purchase_pointer)
        })
        .collect();
    let invoices = reader.pointers(&by_invoice).await?;
    let more: Vec<String> = invoices.values().cloned().collect();
    orders.extend(reader.orders(&more).await?);

    let mut findings = Vec::new();
    for txn in &payments {
        let order = by_capture.get(&txn.id).cloned().or_else(|| {
            txn.reference_id
                .as_ref()
                .and_then(|id| orders.get(id))
                .or_else(|| {
                    let pointer =
                        crate::store::pointers::purchase_pointer(txn.invoice_id.as_deref()?);
                    orders.get(invoices.get(&pointer)?)
                })
                .cloned()
        });
        match judge_payment(txn, order.as_ref()) {
            Verdict::InSync => {}
            Verdict::Wait => summary.pending += 1,
            Verdict::Mismatch(finding) => findings.push(*finding),
            Verdict::SettleCapture(order) => {
                if Instant::now() >= deadline {
                    complete = false;
                    continue;
                }
                match heal_capture(ledger, paypal, &order, txn).await {
                    Ok(Some(settled_order)) => {
                        summary.healed += 1;
                        summary.healed_captures += 1;
                        by_capture.insert(txn.id.clone(), settled_order);
                    }
                    Ok(None) => summary.pending += 1,
                    Err(BillingError::Conflict {
                        code: "payment_mismatch",
                        ..
                    }) => findings.push(
                        Finding::new(
                            MismatchKind::UserDiffers,
                            txn,
                            "PayPal's payment does not match the order",
                        )
                        .order(&order, Some(order.amount)),
                    ),
                    Err(e) => {
                        tracing::warn!(capture_id = %txn.id, error = %e, "capture not healed; next run retries");
                        summary.errors += 1;
                    }
                }
            }
            Verdict::ApplyRefund | Verdict::FailRefund | Verdict::RestoreReversal => {}
        }
    }

    let refund_ids: Vec<String> = refunds.iter().map(|t| t.id.clone()).collect();
    let applied = reader.refunds(&refund_ids).await?;
    for txn in &refunds {
        match judge_refund(txn, applied.get(&txn.id)) {
            Verdict::InSync => {}
            Verdict::Wait => summary.pending += 1,
            Verdict::Mismatch(finding) => findings.push(*finding),
            verdict @ (Verdict::ApplyRefund | Verdict::FailRefund) => {
                if Instant::now() >= deadline {
                    complete = false;
                    continue;
                }
                let status = match verdict {
                    Verdict::FailRefund => RefundStatus::Failed,
                    _ => RefundStatus::Completed,
                };
                match heal_refund(ledger, paypal, virtfusion, txn, status).await {
                    Ok(Some(true)) => {
                        summary.healed += 1;
                        summary.healed_refunds += 1;
                    }
                    // Applied meanwhile by another caller: in sync.
                    Ok(Some(false)) => {}
                    Ok(None) => findings.push(Finding::new(
                        MismatchKind::UnknownPayment,
                        txn,
                        "PayPal refunded or reversed a payment of no order we know",
                    )),
                    Err(e) => {
                        tracing::warn!(refund_id = %txn.id, error = %e, "refund not healed; next run retries");
                        summary.errors += 1;
                    }
                }
            }
            Verdict::SettleCapture(_) | Verdict::RestoreReversal => {}
        }
    }

    // Chargeback reversals (disputes won), after the chargebacks above.
    if !won.is_empty() {
        let reversals = reversals_of_captures(&reader, &won).await?;
        for txn in &won {
            let seen = txn.reference_id.as_ref().and_then(|c| reversals.get(c));
            match judge_chargeback_reversal(txn, seen) {
                Verdict::InSync => {}
                Verdict::Mismatch(finding) => findings.push(*finding),
                Verdict::RestoreReversal => {
                    if Instant::now() >= deadline {
                        complete = false;
                        continue;
                    }
                    let Some(capture_id) = txn.reference_id.as_deref() else {
                        findings.push(Finding::new(
                            MismatchKind::UnknownPayment,
                            txn,
                            "PayPal returned a chargeback of no capture",
                        ));
                        continue;
                    };
                    // A chargeback reversal: the chargeback's money came back.
                    match crate::after_webhook::capture_dispute_won(
                        ledger, paypal, virtfusion, capture_id, &txn.id, true,
                    )
                    .await
                    {
                        Ok(Some(Restoration::Restored)) => {
                            tracing::info!(line = %txn.id, "reconciliation restored a reversal");
                            summary.healed += 1;
                            summary.healed_refunds += 1;
                        }
                        Ok(Some(Restoration::AlreadyRestored)) => {}
                        // Remembered: restored when its chargeback is applied.
                        Ok(Some(Restoration::Waiting | Restoration::NotWon)) => {
                            summary.pending += 1;
                        }
                        Ok(None) => findings.push(Finding::new(
                            MismatchKind::UnknownPayment,
                            txn,
                            "PayPal returned a chargeback of no order we know",
                        )),
                        Err(e) => {
                            tracing::warn!(line = %txn.id, error = %e, "chargeback reversal not healed; next run retries");
                            summary.errors += 1;
                        }
                    }
                }
                Verdict::Wait
                | Verdict::ApplyRefund
                | Verdict::FailRefund
                | Verdict::SettleCapture(_) => {
                    summary.pending += 1;
                }
            }
        }
    }

    // Purchases we settled that PayPal did not list (only over a complete report).
    if complete {
        let listed: HashSet<&str> = payments.iter().map(|t| t.id.as_str()).collect();
        let refreshed = report
            .refreshed
            .as_deref()
            .and_then(crate::dns::dates::parse_time)
            .map(ledger::format_rfc3339)
            .unwrap_or_else(|| ledger::format_rfc3339(now));
        for entry in &settled {
            let Some(capture_id) = entry.order.capture_id.as_deref() else {
                continue;
            };
            if listed.contains(capture_id) || entry.settled_at > refreshed {
                continue;
            }
            if summary.orders_read >= u64::from(options.max_order_reads)
                || Instant::now() >= deadline
            {
                complete = false;
                break;
            }
            summary.orders_read += 1;
            match paypal.get_order(&entry.order.order_id).await {
                Ok(at_paypal)
                    if at_paypal
                        .captures
                        .iter()
                        .any(|c| c.id == capture_id && c.status.is_paid()) => {}
                Ok(_) | Err(PayPalError::NotFound) => findings.push(Finding {
                    kind: MismatchKind::UnknownToPaypal,
                    transaction_id: capture_id.to_owned(),
                    order_id: Some(entry.order.order_id.clone()),
                    user: Some(entry.order.user.as_str().to_owned()),
                    paypal_amount: None,
                    ledger_amount: entry.order.captured_amount,
                    currency: Some("USD".into()),
                    detail: "the ledger settled a purchase PayPal does not know".into(),
                }),
                Err(e) => {
                    tracing::warn!(order_id = %entry.order.order_id, error = %e, "order not confirmed at PayPal");
                    summary.errors += 1;
                }
            }
        }
    }

    let detected_at = ledger::now_rfc3339();
    for finding in findings {
        let m = Mismatch {
            id: mismatch_id(finding.kind, &finding.transaction_id),
            kind: finding.kind,
            transaction_id: finding.transaction_id,
            order_id: finding.order_id,
            user: finding.user,
            paypal_amount: finding.paypal_amount.map(|a| a.to_string()),
            ledger_amount: finding.ledger_amount.map(|a| a.to_string()),
            currency: finding.currency,
            detail: finding.detail,
            status: MismatchStatus::Open,
            detected_at: detected_at.clone(),
            last_seen_at: detected_at.clone(),
            run_id: run_id.clone(),
            resolved_by: None,
            resolution: None,
            resolved_at: None,
        };
        tracing::error!(mismatch_id = %m.id, kind = m.kind.as_str(), order_id = ?m.order_id, "reconciliation mismatch");
        if store::record_mismatch(ledger, &m).await? {
            summary.new_mismatches += 1;
        }
        summary.mismatches += 1;
    }

    summary.complete = complete;
    summary.dynamo_items_read = reader.items_read();
    summary.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let value = serde_json::to_value(&summary)
        .map_err(|e| ledger::LedgerError::corrupt(store::RUN_PK, e.to_string()))?;
    store::put_run(ledger, &summary.started_at, &run_id, &value).await?;
    Ok(summary)
}

/// Settles `order` from PayPal's own view of it (one per-order read), through
/// the capture route's [`settle`]. `Some(order)` when it is settled now.
async fn heal_capture(
    ledger: &Ledger,
    paypal: &PayPalClient,
    order: &OrderRecord,
    txn: &ReportedTransaction,
) -> Result<Option<OrderRecord>, BillingError> {
    let at_paypal = paypal.get_order(&order.order_id).await.map_err(upstream)?;
    let Some(capture) = at_paypal
        .captures
        .iter()
        .find(|c| c.id == txn.id && c.status.is_paid())
    else {
        // The order does not (yet) show the capture as paid: nothing to credit now.
        return Ok(None);
    };
    // No VirtFusion client: a token purchase becomes a pending delivery, which
    // the scheduled job delivers under its claim.
    settle(ledger, None, order, capture).await?;
    tracing::info!(order_id = %order.order_id, capture_id = %capture.id, "reconciliation settled a capture");
    crate::orders::load(ledger, &order.order_id).await
}

/// The reversal records of the orders of the captures `lines` name (by
/// their `paypal_reference_id`), by capture id: batch reads of pointers,
/// orders and refund records.
async fn reversals_of_captures(
    reader: &store::Reader<'_>,
    lines: &[&ReportedTransaction],
) -> Result<HashMap<String, store::RefundSeen>, BillingError> {
    let pointers: Vec<String> = lines
        .iter()
        .filter_map(|t| t.reference_id.as_deref())
        .map(crate::store::pointers::capture_pointer)
        .collect();
    let orders_by_pointer = reader.pointers(&pointers).await?;
    let order_ids: Vec<String> = orders_by_pointer.values().cloned().collect();
    let orders = reader.orders(&order_ids).await?;
    let reversal_ids: Vec<String> = orders
        .values()
        .filter_map(|o| o.reversal_id.clone())
        .collect();
    let mut records = reader.refunds(&reversal_ids).await?;
    Ok(orders_by_pointer
        .into_iter()
        .filter_map(|(pointer, order_id)| {
            let capture = pointer.strip_prefix("CAPTURE#")?.to_owned();
            let reversal_id = orders.get(&order_id)?.reversal_id.as_ref()?;
            Some((capture, records.remove(reversal_id)?))
        })
        .collect())
}

/// Applies a completed refund or reversal through the webhook's path:
/// `Some(true)` when it moved money, `Some(false)` when it was applied
/// already, `None` when it names no order we know.
async fn heal_refund(
    ledger: &Ledger,
    paypal: &PayPalClient,
    virtfusion: Option<&VirtFusionClient>,
    txn: &ReportedTransaction,
    status: RefundStatus,
) -> Result<Option<bool>, BillingError> {
    let refund = paypal::Refund {
        id: txn.id.clone(),
        status,
        amount: txn.amount,
        currency: txn.currency.clone(),
        capture_id: txn.reference_id.clone(),
        custom_id: txn.custom_field.clone(),
        invoice_id: txn.invoice_id.clone(),
    };
    let movement = match txn.kind {
        TransactionKind::Reversal => Movement::Reversal,
        _ => Movement::Refund,
    };
    let reported =
        crate::after_webhook::report_refund(ledger, paypal, virtfusion, &refund, movement).await?;
    let moved = reported.as_ref().map(|r| r.moved());
    if moved == Some(true) {
        tracing::info!(refund_id = %txn.id, movement = movement.as_str(), "reconciliation applied a refund");
    }
    Ok(moved)
}

/// `GET /api/admin/reconciliation`: the latest runs and the open mismatches.
#[tracing::instrument(skip_all, fields(runs, mismatches))]
pub async fn overview(
    ledger: &Ledger,
    runs: u32,
    mismatches: u32,
) -> Result<(Vec<serde_json::Value>, Vec<Mismatch>), BillingError> {
    let (runs, open) = tokio::try_join!(
        store::latest_runs(ledger, runs),
        store::open_mismatches(ledger, mismatches)
    )?;
    Ok((runs, open))
}

/// Mismatch ids are PayPal ids and a kind: `[A-Za-z0-9_-]`, at most 160.
pub fn parse_mismatch_id(raw: &str) -> Option<&str> {
    let ok = !raw.is_empty()
        && raw.len() <= 160
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(raw)
}

/// `POST /api/admin/reconciliation/{mismatchId}/resolve`: open → resolved,
/// with the admin's id and reason. 404 unknown; 409 not open.
#[tracing::instrument(skip_all, fields(mismatch_id = id))]
pub async fn resolve(
    ledger: &Ledger,
    id: &str,
    admin_id: &str,
    reason: &Reason,
) -> Result<Mismatch, BillingError> {
    let id = parse_mismatch_id(id).ok_or(BillingError::NotFound("Mismatch"))?;
    if !store::resolve_mismatch(ledger, id, admin_id, reason.as_str()).await? {
        return match store::mismatch(ledger, id).await? {
            None => Err(BillingError::NotFound("Mismatch")),
            Some(_) => Err(BillingError::Conflict {
                message: "Mismatch is already resolved".into(),
                code: "not_open",
            }),
        };
    }
    store::mismatch(ledger, id)
        .await?
        .ok_or(BillingError::NotFound("Mismatch"))
}

#[cfg(test)]
mod tests;
