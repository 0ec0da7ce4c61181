//! Buying custom credits and VirtFusion tokens through PayPal, exactly once.
//!
//! 1. **Order** ([`start_order`]): limits are checked before PayPal is called;
//!    the PayPal order is created with a `PayPal-Request-Id` derived from our
//!    purchase id, and recorded (with the Idempotency-Key record, if any) in
//!    one transaction before its id is returned.
//! 2. **Capture** ([`capture`]): only the order's owner; PayPal's answer is
//!    settled by [`settle`], which the webhook shares. The capture id is the
//!    exactly-once key: credits are credited in one ledger transaction that
//!    also puts the `ONCE#capture#<id>` marker and completes the order.
//! 3. **Tokens** are owed once paid; the token room ([`crate::tokens`])
//!    delivers them under a claim, so one caller at a time talks to
//!    VirtFusion, and keeps VirtFusion at what the purchase owes after it.

use crate::BillingError;
use crate::events::{self, DetailType, Event};
use crate::idempotency::{Existing, IdempotencyKey, StoredResponse};
use crate::limits::{self, OrderLimits};
pub use crate::orders::Settlement;
use crate::orders::{
    DELIVERY_PENDING, Delivery, OrderRecord, OrderUpdate, PaymentStatus, PurchaseKind,
};
use crate::purchases::TokenPurchase;
use crate::store::pointers::{capture_pointer, pointer_item, purchase_pointer};
use crate::store::write_together;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use billing_money::Usd;
use ledger::{Change, EntryDetails, EntryKind, Ledger, LedgerError, OnceKey, UserId};
use paypal::{Capture, CaptureStatus, CreateOrder, PayPalClient, PayPalError};
use serde_json::json;
use virtfusion::VirtFusionClient;

/// Top-up limits (WHMCS/Paymenter-style), from the environment.
#[derive(Clone, Copy, Debug)]
pub struct TopUpLimits {
    pub min: Usd,
    pub max: Usd,
    /// A credit top-up that would take the balance above this is refused.
    pub max_balance: Usd,
    /// Per-user rate and open-order limits ([`crate::limits`]).
    pub orders: OrderLimits,
}

impl Default for TopUpLimits {
    fn default() -> TopUpLimits {
        TopUpLimits {
            min: Usd::from_cents(100).unwrap_or(Usd::ZERO),
            max: Usd::from_cents(100_000).unwrap_or(Usd::ZERO),
            max_balance: Usd::from_cents(1_000_000).unwrap_or(Usd::ZERO),
            orders: OrderLimits::default(),
        }
    }
}

impl TopUpLimits {
    /// `TOPUP_MIN_USD`, `TOPUP_MAX_USD`, `MAX_CREDIT_BALANCE_USD` (defaults $1, $1000, $10,000),
    /// and [`OrderLimits::from_env`].
    pub fn from_env() -> TopUpLimits {
        let read = |name: &str, default: Usd| {
            std::env::var(name)
                .ok()
                .and_then(|v| billing_money::parse_usd_literal(v.trim()).ok())
                .unwrap_or(default)
        };
        let d = TopUpLimits::default();
        TopUpLimits {
            min: read("TOPUP_MIN_USD", d.min),
            max: read("TOPUP_MAX_USD", d.max),
            max_balance: read("MAX_CREDIT_BALANCE_USD", d.max_balance),
            orders: OrderLimits::from_env(),
        }
    }
}

fn paypal_error(err: PayPalError) -> BillingError {
    tracing::warn!(error = %err, "PayPal call failed");
    match err {
        PayPalError::NotFound => BillingError::NotFound("Order"),
        PayPalError::NotApproved => BillingError::Conflict {
            message: "Payment not completed".into(),
            code: "payment_not_completed",
        },
        // Nothing was captured; the buyer approves again (the PayPal JS SDK's
        // `actions.restart()`), then the client captures again.
        PayPalError::FundingDeclined { .. } => BillingError::Conflict {
            message: "The payment method was declined; approve the payment again with another funding source".into(),
            code: "payment_source_declined",
        },
        e => BillingError::Upstream {
            service: "PayPal",
            transient: e.is_transient(),
        },
    }
}

/// The use-case of `POST …/custom-credits/add` and `…/virtfusion-tokens/add`:
/// the request's `Idempotency-Key` is scoped to what is bought and bound to
/// the amount (the same key with another amount is refused), then
/// [`start_order`]. First of all the user's order bucket is taken from
/// ([`limits::take`]): beyond it the answer is 429, and PayPal is not called.
#[tracing::instrument(skip_all, fields(kind = kind.as_str(), keyed = idempotency_key.is_some()))]
pub async fn order_route(
    ledger: &Ledger,
    paypal: &PayPalClient,
    limits: TopUpLimits,
    user: &UserId,
    kind: PurchaseKind,
    amount: Usd,
    idempotency_key: Option<&str>,
) -> Result<StoredResponse, BillingError> {
    limits::take(ledger, user, "orders", limits.orders.orders).await?;
    let key = idempotency_key.map(|key| {
        IdempotencyKey::new(
            user,
            key,
            &format!("order-{}", kind.as_str()),
            &amount.to_string(),
        )
    });
    start_order(ledger, paypal, limits, user, kind, amount, key.as_ref()).await
}

/// The use-case of `POST …/custom-credits/capture` and
/// `…/virtfusion-tokens/capture`: [`capture`], answered with the
/// settlement (200 credited or delivered, 202 pending or under review).
/// `virtfusion` is used for token purchases only
/// ([`PurchaseKind::delivers_to_virtfusion`]).
#[tracing::instrument(skip_all, fields(kind = kind.as_str(), order_id = %order_id))]
pub async fn capture_route(
    ledger: &Ledger,
    paypal: &PayPalClient,
    virtfusion: Option<&VirtFusionClient>,
    user: &UserId,
    kind: PurchaseKind,
    order_id: &str,
) -> Result<StoredResponse, BillingError> {
    let virtfusion = virtfusion.filter(|_| kind.delivers_to_virtfusion());
    let settlement = capture(ledger, paypal, virtfusion, user, kind, order_id).await?;
    // Paid: no longer an open order. Best effort, it lapses by itself anyway.
    if let Err(err) = limits::close_open_order(ledger, user, order_id).await {
        tracing::warn!(error = %err, "open-order marker not removed; it lapses by itself");
    }
    Ok(settlement.response())
}

/// `POST …/custom-credits/add` and `…/virtfusion-tokens/add`.
#[tracing::instrument(skip_all, fields(user = %user, kind = kind.as_str(), amount = %amount, keyed = key.is_some()))]
pub async fn start_order(
    ledger: &Ledger,
    paypal: &PayPalClient,
    limits: TopUpLimits,
    user: &UserId,
    kind: PurchaseKind,
    amount: Usd,
    key: Option<&IdempotencyKey>,
) -> Result<StoredResponse, BillingError> {
    amount.ensure_within(limits.min, limits.max).map_err(|_| {
        BillingError::InvalidInput(format!(
            "amount must be between {} and {}",
            limits.min, limits.max
        ))
    })?;
    if let Some(key) = key {
        match key.lookup(ledger).await? {
            Some(Existing::Replay(response)) => return Ok(response),
            Some(Existing::InProgress) => return Err(BillingError::IdempotencyInProgress),
            None => {}
        }
    }
    if kind == PurchaseKind::Credits {
        let balance = ledger.balance(user).await?;
        let after = balance
            .checked_add(amount)
            .map_err(|_| BillingError::InvalidInput("amount".into()))?;
        if after > limits.max_balance {
            return Err(BillingError::InvalidInput(format!(
                "this top-up would take the balance above the maximum of {}",
                limits.max_balance
            )));
        }
    }

    // Same key → same purchase id → same PayPal-Request-Id → the same PayPal order.
    let purchase_id = key
        .map(IdempotencyKey::derived_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let tokens = amount.to_tokens();
    let description = match kind {
        PurchaseKind::Credits => format!("Custom credits {}", amount.formatted()),
        PurchaseKind::Tokens => format!("VirtFusion tokens: {}", tokens.formatted()),
    };
    let slot =
        limits::reserve_open_order(ledger, user, limits.orders.max_open_orders, &purchase_id)
            .await?;
    let order = match paypal
        .create_order(&CreateOrder {
            amount,
            custom_id: user.as_str().to_owned(),
            invoice_id: purchase_id.clone(),
            description,
            request_id: format!("create-{purchase_id}"),
            return_url: None,
            cancel_url: None,
        })
        .await
    {
        Ok(order) => order,
        Err(err) => {
            limits::release_open_order(ledger, user, &slot).await;
            return Err(paypal_error(err));
        }
    };
    let approve_url = order.approve_url.clone().ok_or(BillingError::Upstream {
        service: "PayPal",
        transient: false,
    })?;
    let mut body = json!({ "orderId": order.id, "approveUrl": approve_url });
    if kind == PurchaseKind::Tokens {
        body["tokens"] = json!(tokens.get());
    }
    let response = StoredResponse { status: 200, body };

    let record = OrderRecord {
        order_id: order.id.clone(),
        user: user.clone(),
        kind,
        amount,
        tokens: (kind == PurchaseKind::Tokens).then_some(tokens),
        purchase_id,
        status: PaymentStatus::Created,
        capture_id: None,
        captured_amount: None,
        refunded_amount: Usd::ZERO,
        refunds_completed: Some(Usd::ZERO),
        capture_attempt: 0,
        delivery: None,
        credit_id: None,
        credit_tokens: None,
        sending_tokens: None,
        stray_credits: Vec::new(),
        created_at: ledger::now_rfc3339(),
        reversal_id: None,
        review_reason: None,
        delivery_attempts: 0,
    };
    let mut items = vec![
        record.create_item(ledger.table())?,
        pointer_item(
            ledger.table(),
            &purchase_pointer(&record.purchase_id),
            &record.order_id,
        )?,
        limits::open_order_item(ledger, user, &slot, &record.order_id)?,
    ];
    if let Some(key) = key {
        items.push(key.record_item(ledger.table(), Some(&response))?);
    }
    let written = write_together(ledger, items).await?;
    if written.is_some() {
        limits::release_open_order(ledger, user, &slot).await;
    }
    match written {
        None => Ok(response),
        // A concurrent request with the same key recorded it first: its answer is ours.
        Some(_) => match key.map(|k| k.lookup(ledger)) {
            Some(lookup) => match lookup.await? {
                Some(Existing::Replay(stored)) => Ok(stored),
                _ => Err(BillingError::IdempotencyInProgress),
            },
            None => Err(BillingError::Conflict {
                message: "Order already recorded".into(),
                code: "conflict",
            }),
        },
    }
}

/// `POST …/custom-credits/capture` and `…/virtfusion-tokens/capture`.
#[tracing::instrument(skip_all, fields(user = %user, kind = kind.as_str(), order_id = %order_id))]
pub async fn capture(
    ledger: &Ledger,
    paypal: &PayPalClient,
    virtfusion: Option<&VirtFusionClient>,
    user: &UserId,
    kind: PurchaseKind,
    order_id: &str,
) -> Result<Settlement, BillingError> {
    let order = match crate::orders::load(ledger, order_id).await? {
        // Another user's order is indistinguishable from an unknown one.
        Some(order) if order.user == *user && order.kind == kind => order,
        _ => return Err(BillingError::NotFound("Order")),
    };
    match order.status {
        PaymentStatus::Completed => return settled(ledger, virtfusion, &order).await,
        PaymentStatus::Failed => return Err(declined()),
        PaymentStatus::Created | PaymentStatus::CapturePending => {}
    }
    let paypal_order = match order.status {
        // Captured already as PENDING: a repeated capture would only replay
        // that answer (same PayPal-Request-Id); read the order's state instead.
        PaymentStatus::CapturePending => paypal.get_order(order_id).await,
        _ => capture_at_paypal(paypal, order_id, &order.capture_request_id()).await,
    };
    let paypal_order = match paypal_order {
        Ok(paypal_order) => paypal_order,
        Err(e @ (PayPalError::NotApproved | PayPalError::FundingDeclined { .. })) => {
            next_capture_attempt(ledger, &order).await?;
            return Err(paypal_error(e));
        }
        Err(e) => return Err(paypal_error(e)),
    };
    let capture = pick_capture(&paypal_order.captures).ok_or(BillingError::Conflict {
        message: "Payment not completed".into(),
        code: "payment_not_completed",
    })?;
    settle(ledger, virtfusion, &order, capture).await
}

/// How often, and after how long, a capture refused because a simultaneous
/// one with the same `PayPal-Request-Id` is in progress is sent again.
const IN_PROGRESS_RETRIES: [u64; 6] = [100, 200, 300, 500, 800, 1200];

/// `capture_order` with the order's request id. When the capture route and
/// the approved-order webhook (or two capture calls) capture at once, they
/// send the same `PayPal-Request-Id`, and PayPal "might fail the second"
/// (409 `PREVIOUS_REQUEST_IN_PROGRESS`): the second waits and repeats the
/// same request, which PayPal then answers with the first one's result, so
/// both settle the same capture and a charged buyer sees no error.
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
pub async fn capture_at_paypal(
    paypal: &PayPalClient,
    order_id: &str,
    request_id: &str,
) -> Result<paypal::Order, PayPalError> {
    let mut waits = IN_PROGRESS_RETRIES.iter();
    loop {
        match paypal.capture_order(order_id, request_id).await {
            Err(PayPalError::RequestInProgress) => match waits.next() {
                Some(ms) => {
                    tracing::info!(
                        order_id,
                        wait_ms = ms,
                        "capture in progress elsewhere; waiting"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(*ms)).await;
                }
                None => return Err(PayPalError::RequestInProgress),
            },
            other => return other,
        }
    }
}

/// Nothing was captured (not approved yet, or the funding was declined):
/// the next capture gets a fresh `PayPal-Request-Id`, since PayPal may replay
/// a stored 422 to the old one. Conditional on the attempt seen, so racing
/// callers bump it once.
#[tracing::instrument(skip_all, fields(order_id = %order.order_id))]
pub(crate) async fn next_capture_attempt(
    ledger: &Ledger,
    order: &OrderRecord,
) -> Result<(), BillingError> {
    OrderUpdate::new(
        &order.order_id,
        "#status = :created AND captureAttempt = :seen",
    )
    .value_s(":created", PaymentStatus::Created.as_str())
    .value(":seen", crate::store::attrs::n(order.capture_attempt))
    .set_n("captureAttempt", order.capture_attempt + 1)
    .run(ledger)
    .await?;
    Ok(())
}

/// The capture that decides the order: a paid one if any, else the latest.
pub fn pick_capture(captures: &[Capture]) -> Option<&Capture> {
    captures
        .iter()
        .find(|c| c.status.is_paid())
        .or_else(|| captures.iter().find(|c| c.status == CaptureStatus::Pending))
        .or_else(|| captures.last())
}

fn declined() -> BillingError {
    BillingError::Conflict {
        message: "Payment was declined".into(),
        code: "payment_declined",
    }
}

/// Applies PayPal's verdict on `capture` to `order` (shared by the capture
/// routes and the webhook). Idempotent: any number of concurrent callers end
/// in one credit / one owed token delivery.
#[tracing::instrument(skip_all, fields(order_id = %order.order_id, capture_id = %capture.id))]
pub async fn settle(
    ledger: &Ledger,
    virtfusion: Option<&VirtFusionClient>,
    order: &OrderRecord,
    capture: &Capture,
) -> Result<Settlement, BillingError> {
    if capture.currency != "USD"
        || capture
            .custom_id
            .as_deref()
            .is_some_and(|c| c != order.user.as_str())
    {
        // Money PayPal holds that does not match our order: never credit it blindly.
        tracing::error!(order_id = %order.order_id, capture_id = %capture.id, "capture does not match its order");
        return Err(BillingError::Conflict {
            message: "Payment does not match the order".into(),
            code: "payment_mismatch",
        });
    }
    match capture.status {
        CaptureStatus::Pending => {
            OrderUpdate::new(&order.order_id, "#status = :created")
                .value_s(":created", PaymentStatus::Created.as_str())
                .set_s("status", PaymentStatus::CapturePending.as_str())
                .set_s("captureId", &capture.id)
                .run(ledger)
                .await?;
            Ok(Settlement::PaymentPending {
                amount: capture.amount,
            })
        }
        CaptureStatus::Declined | CaptureStatus::Failed => {
            OrderUpdate::new(&order.order_id, "#status IN (:created, :pending)")
                .value_s(":created", PaymentStatus::Created.as_str())
                .value_s(":pending", PaymentStatus::CapturePending.as_str())
                .set_s("status", PaymentStatus::Failed.as_str())
                .set_s("captureId", &capture.id)
                .run(ledger)
                .await?;
            Err(declined())
        }
        // Paid (possibly refunded since): what was captured is owed once.
        _ if capture.status.is_paid() => match order.kind {
            PurchaseKind::Credits => credit_capture(ledger, order, capture).await,
            PurchaseKind::Tokens => {
                record_token_payment(ledger, order, capture).await?;
                crate::tokens::deliver(ledger, virtfusion, &order.order_id).await
            }
        },
        _ => Err(BillingError::Conflict {
            message: "Payment not completed".into(),
            code: "payment_not_completed",
        }),
    }
}

async fn credit_capture(
    ledger: &Ledger,
    order: &OrderRecord,
    capture: &Capture,
) -> Result<Settlement, BillingError> {
    let completes = OrderUpdate::new(&order.order_id, "#status <> :completed")
        .value_s(":completed", PaymentStatus::Completed.as_str())
        .set_s("status", PaymentStatus::Completed.as_str())
        .set_s("captureId", &capture.id)
        .set_n("capturedAmount", capture.amount)
        .settled_at(&ledger::now_rfc3339())
        .item(ledger.table())?;
    let change = Change::new(
        order.user.clone(),
        capture.amount,
        EntryDetails::new(EntryKind::Purchase, "Custom credits purchased with PayPal")
            .reference(&order.order_id),
    )
    .once(OnceKey::new("capture", &capture.id))
    .with_item(completes)
    .with_item(pointer_item(
        ledger.table(),
        &capture_pointer(&capture.id),
        &order.order_id,
    )?)
    .with_item_for(events::outbox(ledger.table(), {
        let purchased = Event::new(
            DetailType::CreditsPurchased,
            &OnceKey::new("capture", &capture.id).pk(),
            &order.user,
        )
        .usd("amount", capture.amount)
        .text("orderId", &order.order_id)
        .text("captureId", &capture.id);
        move |preview| {
            purchased
                .clone()
                .usd("balance", preview.balance_after)
                .text("occurredAt", preview.created_at.clone())
        }
    }));
    match ledger.apply(change).await {
        Ok(outcome) => {
            let applied = outcome.into_applied();
            Ok(Settlement::Credited {
                amount: applied.entry.amount,
                balance: applied.balance,
            })
        }
        // Completed by another path already (same capture, marker and status move together).
        Err(LedgerError::ConditionFailed { .. }) => {
            match crate::orders::load(ledger, &order.order_id).await? {
                Some(current) => settled(ledger, None, &current).await,
                None => Err(BillingError::NotFound("Order")),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Records a paid token order once: status completed, delivery owed, marker, history line.
async fn record_token_payment(
    ledger: &Ledger,
    order: &OrderRecord,
    capture: &Capture,
) -> Result<(), BillingError> {
    let now = ledger::now_rfc3339();
    let tokens = capture.amount.to_tokens();
    let history = TokenPurchase {
        order_id: order.order_id.clone(),
        kind: "purchase".into(),
        tokens,
        status: "pending".into(),
        description: format!(
            "VirtFusion tokens purchased with PayPal ({})",
            capture.amount.formatted()
        ),
        created_at: now.clone(),
        sort_key: TokenPurchase::sort_key_for(&now, &order.order_id),
        admin: None,
    };
    let owes = OrderUpdate::new(&order.order_id, "#status <> :completed")
        .value_s(":completed", PaymentStatus::Completed.as_str())
        .set_s("status", PaymentStatus::Completed.as_str())
        .set_s("captureId", &capture.id)
        .set_n("capturedAmount", capture.amount)
        .set_n("tokens", tokens.get())
        // Recorded from the payment on (see `OrderRecord::completed_refunds`).
        .set_n("refundsCompleted", Usd::ZERO)
        .set_s("delivery", Delivery::Pending.as_str())
        .set_s("historySk", &history.sort_key)
        .indexed(DELIVERY_PENDING, &now)
        .settled_at(&now)
        .item(ledger.table())?;
    let history_put = Put::builder()
        .table_name(ledger.table())
        .set_item(Some(history.to_item(&order.user)))
        .build()
        .map_err(|e| LedgerError::corrupt("token purchase", e.to_string()))?;
    let items = vec![
        owes,
        pointer_item(
            ledger.table(),
            &capture_pointer(&capture.id),
            &order.order_id,
        )?,
        OnceKey::new("capture", &capture.id).marker_item(ledger.table(), &order.user, &now)?,
        TransactWriteItem::builder().put(history_put).build(),
    ];
    // Cancelled means another caller recorded it first: fine.
    write_together(ledger, items).await?;
    Ok(())
}

/// The settlement of an order that is already completed (a replayed capture).
async fn settled(
    ledger: &Ledger,
    virtfusion: Option<&VirtFusionClient>,
    order: &OrderRecord,
) -> Result<Settlement, BillingError> {
    match order.kind {
        PurchaseKind::Credits => Ok(Settlement::Credited {
            amount: order.captured_amount.unwrap_or(order.amount),
            balance: ledger.balance(&order.user).await?,
        }),
        PurchaseKind::Tokens => match order.delivery {
            // Owed and nobody is on it: a capture retry may as well deliver now.
            Some(Delivery::Pending) if virtfusion.is_some() => {
                crate::tokens::deliver(ledger, virtfusion, &order.order_id).await
            }
            _ => Ok(crate::tokens::delivery::settled(order)),
        },
    }
}
