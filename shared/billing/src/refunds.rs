//! After the purchase: refunds, reversals (chargebacks) and won disputes,
//! for both money systems, each applied exactly once per PayPal id, whoever
//! reports it first (the admin route, a webhook, reconciliation).
//!
//! Each movement is a forward-only state machine on its `REFUND#<id>` record
//! (see [`RefundState`] and docs/ARCHITECTURE.md) and every transition is one
//! conditional write naming the state it leaves:
//!
//! | transition | custom credits (one `Ledger::apply`) | tokens |
//! | --- | --- | --- |
//! | new → pending / completed | debit (`refund` / `reversal`, as debt if need be), once-key `refund#<id>` | record + marker; on completed the delivery is settled (below) |
//! | pending → completed | record only (the money was taken at pending) | delivery settled |
//! | pending → failed / cancelled | credit back (`refund_reverted`), once-key `refund_reverted#<id>` | record only |
//! | new → failed / cancelled | record only, nothing taken; a late PENDING finds it | same |
//! | reversal completed → cancelled (dispute won) | credit back (`reversal_cancelled`), once-key `reversal_cancelled#<id>` | owed again: delivered by the job |
//! | refund failed / cancelled → completed (PayPal completed it after all) | debit (`refund`), once-key `refund_reinstated#<id>` | as new → completed |
//!
//! A won dispute is remembered (`DISPUTEWON#<captureId>`) before its
//! reversal is looked for, and a reversal looks for a won dispute after it
//! is applied, so whichever report lands first, the restoration happens
//! once ([`reversals`]).
//!
//! Token purchases count completed movements in `refundsCompleted`; what
//! VirtFusion owes is computed from it by the token room ([`crate::tokens`]),
//! which this module calls to move the delivery (pending refunds never take
//! tokens back).
//!
//! Events: `refund.completed`, `refund.failed`, `payment.reversed` and
//! `payment.reversal_cancelled` ride in the transaction of their transition
//! ([`crate::refund_events`]), so a repeated report publishes nothing more.

use crate::events::{self, Event};
use crate::orders::{Delivery, OrderRecord, OrderUpdate, PurchaseKind};
use crate::refund_events::Reached;
use crate::store::refunds::{self as store, RecordSource};
use crate::store::write_together;
use crate::{BillingError, Reason};
use aws_sdk_dynamodb::types::AttributeValue;
use billing_money::Usd;
use ledger::{Change, EntryDetails, EntryKind, Ledger, LedgerError, OnceKey, Overdraft};
use virtfusion::VirtFusionClient;

pub use crate::store::refunds::{Movement, RefundRecord, RefundState};

mod admin;
mod reversals;
use crate::tokens::refunds::{
    TokenAction, guarded, token_action, with_token_action, with_token_action_of,
};
pub use admin::{AdminRefund, MAX_NOTE_TO_PAYER, admin_refund};
pub use reversals::{Restoration, dispute_won, restore_won};

/// Who asked for the refund.
#[derive(Clone, Debug)]
pub enum RefundSource {
    Admin {
        admin_id: String,
        reason: Reason,
    },
    /// Reported by PayPal (webhook, reconciliation).
    PayPal,
}

/// A refund or reversal as PayPal reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundReport {
    pub refund_id: String,
    pub amount: Usd,
    pub currency: String,
    pub state: RefundState,
    pub movement: Movement,
}

impl RefundReport {
    /// `None` for a refund status we do not act on.
    pub fn from_paypal(refund: &paypal::Refund, movement: Movement) -> Option<RefundReport> {
        Some(RefundReport {
            refund_id: refund.id.clone(),
            amount: refund.amount,
            currency: refund.currency.clone(),
            state: RefundState::from_paypal(&refund.status)?,
            movement,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundOutcome {
    pub refund_id: String,
    pub order_id: String,
    pub kind: PurchaseKind,
    pub amount: Usd,
    /// Where the refund stands (pending until PayPal completes it).
    pub status: RefundState,
    /// Custom credits: the balance after the refund.
    pub balance: Option<Usd>,
    /// Tokens: whether VirtFusion's credit was removed or the undelivered
    /// delivery cancelled (`false`: sent to review, see `review_reason`).
    pub tokens_revoked: Option<bool>,
    /// Tokens: why the purchase went to the review list, if it did.
    pub review_reason: Option<String>,
    /// False when this transition had been applied before (a replay).
    pub first_time: bool,
}

fn conflict(message: &str, code: &'static str) -> BillingError {
    BillingError::Conflict {
        message: message.into(),
        code,
    }
}

/// Applies what PayPal reports about one refund or reversal of `order_id`:
/// the one public entry point for webhooks, the admin route and
/// reconciliation. Safe to race and to repeat; out-of-order reports end
/// where in-order ones do (the state only moves forward).
#[tracing::instrument(skip_all, fields(order_id = %order_id, refund_id = %report.refund_id, state = report.state.as_str()))]
pub async fn apply_refund(
    ledger: &Ledger,
    virtfusion: Option<&VirtFusionClient>,
    order_id: &str,
    report: &RefundReport,
    source: &RefundSource,
) -> Result<RefundOutcome, BillingError> {
    if report.currency != "USD" {
        // Our captures are USD: never take back a different number of another currency.
        tracing::error!(currency = %report.currency, "refund in another currency than the capture's; refused");
        return Err(conflict(
            "Refund currency differs from the capture's",
            "currency_mismatch",
        ));
    }
    // Bounded: each round loses only to another movement of the same order.
    for _ in 0..8 {
        let order = crate::orders::load(ledger, order_id)
            .await?
            .ok_or(BillingError::NotFound("Order"))?;
        let record = store::load(ledger, &report.refund_id).await?;
        let step = match (record.as_ref().map(|r| r.state), report.state) {
            (None, to) if to.holds_money() => take(ledger, &order, report, source, None).await?,
            // PayPal completed a refund we hold as failed or cancelled (it
            // is the source of truth): taken now, as a completed refund is.
            (Some(RefundState::Failed | RefundState::Cancelled), RefundState::Completed)
                if report.movement == Movement::Refund
                    && record
                        .as_ref()
                        .is_some_and(|r| r.movement == Movement::Refund) =>
            {
                take(ledger, &order, report, source, record.as_ref()).await?
            }
            (None, to) => record_unapplied(ledger, &order, report, to, source).await?,
            (Some(RefundState::Pending), RefundState::Completed) => {
                complete(ledger, &order, report).await?
            }
            (Some(RefundState::Pending), to @ (RefundState::Failed | RefundState::Cancelled)) => {
                give_back(ledger, &order, report, to).await?
            }
            // Already there, or a late report of an earlier state: nothing moves.
            (Some(state), _) => Some(Step::Unchanged(state)),
        };
        match step {
            None => continue,
            Some(Step::Unchanged(state)) => {
                return outcome(ledger, &order, report, state, false).await;
            }
            Some(Step::Moved { state, tokens }) => {
                let order = crate::orders::load(ledger, order_id)
                    .await?
                    .ok_or(BillingError::NotFound("Order"))?;
                // VirtFusion must change: the token room does it now (the job
                // does it later if VirtFusion is not reachable).
                let order = match tokens {
                    Some(TokenAction::Settle) if virtfusion.is_some() => {
                        crate::tokens::deliver(ledger, virtfusion, order_id).await?;
                        crate::orders::load(ledger, order_id)
                            .await?
                            .ok_or(BillingError::NotFound("Order"))?
                    }
                    _ => order,
                };
                return outcome(ledger, &order, report, state, true).await;
            }
        }
    }
    Err(BillingError::Ledger(LedgerError::Contended { attempts: 8 }))
}

enum Step {
    Unchanged(RefundState),
    Moved {
        state: RefundState,
        tokens: Option<TokenAction>,
    },
}

/// `change` with `event` (if any) in its transaction, carrying the balance
/// the change leaves.
fn with_event(change: Change, table: &str, event: Option<Event>) -> Change {
    match event {
        Some(event) => change.with_item_for(events::outbox(table, move |preview| {
            event.clone().usd("balance", preview.balance_after)
        })),
        None => change,
    }
}

fn entry_details(
    report: &RefundReport,
    source: &RefundSource,
    order: &OrderRecord,
) -> EntryDetails {
    let pending = if report.state == RefundState::Pending {
        " (pending at PayPal)"
    } else {
        ""
    };
    let (kind, description) = match (report.movement, source) {
        (Movement::Reversal, _) => (
            EntryKind::Reversal,
            "PayPal payment reversed (chargeback)".to_owned(),
        ),
        (Movement::Refund, RefundSource::PayPal) => (
            EntryKind::Refund,
            format!("PayPal purchase refunded{pending}"),
        ),
        (Movement::Refund, RefundSource::Admin { reason, .. }) => (
            EntryKind::Refund,
            format!("PayPal purchase refunded{pending}: {}", reason.as_str()),
        ),
    };
    let mut details = EntryDetails::new(kind, description).reference(&order.order_id);
    if let RefundSource::Admin { admin_id, reason } = source {
        details = details.admin(admin_id, reason.as_str());
    }
    details
}

fn record_source<'a>(source: &'a RefundSource, movement: Movement) -> RecordSource<'a> {
    RecordSource {
        admin: match source {
            RefundSource::Admin { admin_id, reason } => Some((admin_id, reason.as_str())),
            RefundSource::PayPal => None,
        },
        movement,
    }
}

/// new → pending / completed: take what the refund pays for. With `prior`
/// (a refund recorded failed or cancelled that PayPal reports completed):
/// failed / cancelled → completed, taken the same way under its own
/// once-key (`refund_reinstated#<id>`: a pending refund that failed had
/// used `refund#<id>`), the record moved instead of created.
async fn take(
    ledger: &Ledger,
    order: &OrderRecord,
    report: &RefundReport,
    source: &RefundSource,
    prior: Option<&RefundRecord>,
) -> Result<Option<Step>, BillingError> {
    // What was asked for, as recorded (reconciliation reports another amount as a mismatch).
    let report = &RefundReport {
        amount: prior.map_or(report.amount, |p| p.amount),
        ..report.clone()
    };
    let refunded = order
        .refunded_amount
        .checked_add(report.amount)
        .map_err(|_| LedgerError::Overflow)?;
    let mut counted = OrderUpdate::new(&order.order_id, "refundedAmount = :seen")
        .value(
            ":seen",
            AttributeValue::N(order.refunded_amount.to_string()),
        )
        .set("refundedAmount", AttributeValue::N(refunded.to_string()));
    if report.movement == Movement::Reversal {
        counted = counted.set_s("reversalId", &report.refund_id);
    }
    let once = match prior {
        None => OnceKey::new("refund", &report.refund_id),
        Some(_) => OnceKey::new("refund_reinstated", &report.refund_id),
    };
    let rsource = record_source(source, report.movement);
    match order.kind {
        PurchaseKind::Credits => {
            let record = match prior {
                None => store::new_record_item(
                    ledger.table(),
                    order,
                    &report.refund_id,
                    report.amount,
                    report.state,
                    &rsource,
                    None,
                )?,
                Some(prior) => store::reinstate_item(ledger.table(), prior, None)?,
            };
            // PayPal has returned (or is returning) the money: recorded even into debt.
            let change = Change::new(
                order.user.clone(),
                -report.amount,
                entry_details(report, source, order),
            )
            .once(once)
            .overdraft(Overdraft::Allow)
            .with_item(counted.item(ledger.table())?)
            .with_item(record);
            let event = Reached {
                order,
                refund_id: &report.refund_id,
                amount: report.amount,
                movement: report.movement,
                to: report.state,
                refunded_total: refunded,
            }
            .event();
            match ledger
                .apply(with_event(change, ledger.table(), event))
                .await
            {
                Ok(outcome) if outcome.is_first_time() => Ok(Some(Step::Moved {
                    state: report.state,
                    tokens: None,
                })),
                // Applied by another caller: read the record again.
                Ok(_) => Ok(None),
                Err(LedgerError::ConditionFailed { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            }
        }
        PurchaseKind::Tokens => {
            let completed = order
                .completed_refunds()
                .checked_add(report.amount)
                .map_err(|_| LedgerError::Overflow)?;
            let action = (report.state == RefundState::Completed)
                .then(|| token_action(order, completed, report.movement));
            let update = match &action {
                Some(action) => {
                    let mut update = guarded(order)
                        .set("refundedAmount", AttributeValue::N(refunded.to_string()))
                        .set("refundsCompleted", AttributeValue::N(completed.to_string()));
                    if report.movement == Movement::Reversal {
                        update = update.set_s("reversalId", &report.refund_id);
                    }
                    with_token_action(update, order, action)
                }
                None => counted,
            };
            let mut items = vec![
                update.item(ledger.table())?,
                once.marker_item(ledger.table(), &order.user, &ledger::now_rfc3339())?,
            ];
            match prior.and_then(|p| p.history_sk.as_deref().map(|sk| (p, sk))) {
                // Its line (written at pending) says completed now.
                Some((prior, sk)) => {
                    items.push(store::reinstate_item(ledger.table(), prior, None)?);
                    items.push(store::history_status_item(
                        ledger.table(),
                        order,
                        sk,
                        report.state.as_str(),
                    )?);
                }
                None => {
                    let (history_sk, history) = store::token_history_item(
                        ledger.table(),
                        order,
                        &report.refund_id,
                        report.amount,
                        report.movement,
                        report.state,
                    )?;
                    items.push(match prior {
                        None => store::new_record_item(
                            ledger.table(),
                            order,
                            &report.refund_id,
                            report.amount,
                            report.state,
                            &rsource,
                            Some(&history_sk),
                        )?,
                        Some(prior) => {
                            store::reinstate_item(ledger.table(), prior, Some(&history_sk))?
                        }
                    });
                    items.push(history);
                }
            }
            let reached = Reached {
                order,
                refund_id: &report.refund_id,
                amount: report.amount,
                movement: report.movement,
                to: report.state,
                refunded_total: refunded,
            };
            if let Some(event) = reached.event() {
                items.push(with_token_action_of(event, action.as_ref()).item(ledger.table())?);
            }
            Ok(match write_together(ledger, items).await? {
                None => Some(Step::Moved {
                    state: report.state,
                    tokens: action,
                }),
                Some(_) => None,
            })
        }
    }
}

/// new → failed / cancelled: nothing was taken; the record stops a late
/// PENDING report from taking anything.
async fn record_unapplied(
    ledger: &Ledger,
    order: &OrderRecord,
    report: &RefundReport,
    to: RefundState,
    source: &RefundSource,
) -> Result<Option<Step>, BillingError> {
    let mut items = vec![store::new_record_item(
        ledger.table(),
        order,
        &report.refund_id,
        report.amount,
        to,
        &record_source(source, report.movement),
        None,
    )?];
    let reached = Reached {
        order,
        refund_id: &report.refund_id,
        amount: report.amount,
        movement: report.movement,
        to,
        refunded_total: order.refunded_amount,
    };
    if let Some(event) = reached.event() {
        // Nothing was taken, so nothing is given back.
        items.push(
            event
                .usd("amountReturned", Usd::default())
                .item(ledger.table())?,
        );
    }
    Ok(match write_together(ledger, items).await? {
        None => Some(Step::Moved {
            state: to,
            tokens: None,
        }),
        Some(_) => None,
    })
}

/// pending → completed: the money was taken at pending; tokens settle now.
async fn complete(
    ledger: &Ledger,
    order: &OrderRecord,
    report: &RefundReport,
) -> Result<Option<Step>, BillingError> {
    let moved = store::transition_item(
        ledger.table(),
        &report.refund_id,
        RefundState::Pending,
        RefundState::Completed,
    )?;
    let record = store::load(ledger, &report.refund_id).await?;
    let mut items = vec![moved];
    let reached = Reached {
        order,
        refund_id: &report.refund_id,
        amount: record.as_ref().map_or(report.amount, |r| r.amount),
        movement: report.movement,
        to: RefundState::Completed,
        refunded_total: order.refunded_amount,
    };
    let action = match order.kind {
        PurchaseKind::Credits => None,
        PurchaseKind::Tokens => {
            let amount = record.as_ref().map_or(report.amount, |r| r.amount);
            let completed = match order.refunds_completed {
                Some(completed) => completed
                    .checked_add(amount)
                    .map_err(|_| LedgerError::Overflow)?,
                // Written before it was recorded: this refund already counts.
                None => order.completed_refunds(),
            };
            let action = token_action(order, completed, report.movement);
            let counted =
                guarded(order).set("refundsCompleted", AttributeValue::N(completed.to_string()));
            items.push(with_token_action(counted, order, &action).item(ledger.table())?);
            if let Some(sk) = record.as_ref().and_then(|r| r.history_sk.as_deref()) {
                items.push(store::history_status_item(
                    ledger.table(),
                    order,
                    sk,
                    "completed",
                )?);
            }
            Some(action)
        }
    };
    if let Some(event) = reached.event() {
        items.push(with_token_action_of(event, action.as_ref()).item(ledger.table())?);
    }
    Ok(match write_together(ledger, items).await? {
        None => Some(Step::Moved {
            state: RefundState::Completed,
            tokens: action,
        }),
        Some(_) => None,
    })
}

/// pending → failed / cancelled: give back what the pending refund took.
async fn give_back(
    ledger: &Ledger,
    order: &OrderRecord,
    report: &RefundReport,
    to: RefundState,
) -> Result<Option<Step>, BillingError> {
    let Some(record) = store::load(ledger, &report.refund_id).await? else {
        return Ok(None);
    };
    let back = order
        .refunded_amount
        .checked_sub(record.amount)
        .map_err(|_| LedgerError::Overflow)?;
    let counted = OrderUpdate::new(&order.order_id, "refundedAmount = :seen")
        .value(
            ":seen",
            AttributeValue::N(order.refunded_amount.to_string()),
        )
        .set("refundedAmount", AttributeValue::N(back.to_string()));
    let moved =
        store::transition_item(ledger.table(), &report.refund_id, RefundState::Pending, to)?;
    let event = Reached {
        order,
        refund_id: &report.refund_id,
        amount: record.amount,
        movement: report.movement,
        to,
        refunded_total: back,
    }
    .event();
    let done = match order.kind {
        PurchaseKind::Credits => {
            let change = Change::new(
                order.user.clone(),
                record.amount,
                EntryDetails::new(
                    EntryKind::RefundReverted,
                    format!("PayPal refund {}: given back", to.as_str()),
                )
                .reference(&order.order_id),
            )
            .once(OnceKey::new("refund_reverted", &report.refund_id))
            .with_item(counted.item(ledger.table())?)
            .with_item(moved);
            let event = event.map(|e| e.usd("amountReturned", record.amount));
            match ledger
                .apply(with_event(change, ledger.table(), event))
                .await
            {
                Ok(outcome) => outcome.is_first_time(),
                Err(LedgerError::ConditionFailed { .. }) => false,
                Err(e) => return Err(e.into()),
            }
        }
        PurchaseKind::Tokens => {
            // Tokens are taken at completion only, so nothing is owed back;
            // except on an order written before completed refunds were
            // recorded, where the pending one counted as completed.
            let update = match order.refunds_completed {
                Some(_) => counted,
                None => {
                    let action = token_action(order, back, report.movement);
                    with_token_action(
                        guarded(order).set("refundedAmount", AttributeValue::N(back.to_string())),
                        order,
                        &action,
                    )
                }
            };
            let mut items = vec![update.item(ledger.table())?, moved];
            if let Some(sk) = &record.history_sk {
                items.push(store::history_status_item(
                    ledger.table(),
                    order,
                    sk,
                    to.as_str(),
                )?);
            }
            if let Some(event) = event {
                // Tokens are taken at completion only: a pending refund took none.
                items.push(
                    event
                        .usd("amountReturned", Usd::default())
                        .item(ledger.table())?,
                );
            }
            write_together(ledger, items).await?.is_none()
        }
    };
    Ok(done.then_some(Step::Moved {
        state: to,
        tokens: None,
    }))
}

async fn outcome(
    ledger: &Ledger,
    order: &OrderRecord,
    report: &RefundReport,
    state: RefundState,
    first_time: bool,
) -> Result<RefundOutcome, BillingError> {
    let in_review = order.delivery == Some(Delivery::NeedsReview);
    let (balance, tokens_revoked) = match order.kind {
        PurchaseKind::Credits => (Some(ledger.balance(&order.user).await?), None),
        // VirtFusion holds no more than is owed (what it holds beyond that
        // is being taken back, or an admin reviews it).
        // A pending refund decides nothing about tokens yet.
        PurchaseKind::Tokens if state == RefundState::Pending => (None, None),
        PurchaseKind::Tokens => (
            None,
            Some(!in_review && order.tokens_there() <= order.owed_tokens()),
        ),
    };
    Ok(RefundOutcome {
        refund_id: report.refund_id.clone(),
        order_id: order.order_id.clone(),
        kind: order.kind,
        amount: report.amount,
        status: state,
        balance,
        tokens_revoked,
        review_reason: in_review.then(|| order.review_reason.clone()).flatten(),
        first_time,
    })
}

/// A refund record (for admins and reconciliation).
pub async fn load_refund(
    ledger: &Ledger,
    refund_id: &str,
) -> Result<Option<RefundRecord>, BillingError> {
    store::load(ledger, refund_id).await
}
