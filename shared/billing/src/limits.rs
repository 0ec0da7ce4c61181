//! Per-user limits on the routes that create PayPal orders, so one signed-in
//! user looping on `…/add` cannot spend the stage-wide API Gateway throttle
//! or the PayPal app's own rate limit for everyone (HTTP APIs have no
//! per-client usage plans).
//!
//! - **Token bucket** ([`take`]), kept in the table as one item per user and
//!   bucket (`USER#<id>` / `RATE#<bucket>`) holding its *theoretical arrival
//!   time* (GCRA): each allowed request moves it one refill interval later;
//!   a request is refused while it is more than `burst - 1` intervals ahead
//!   of now. An idle user's request and a refused one cost one conditional
//!   `UpdateItem`; a request inside a burst costs two (the first finds the
//!   bucket in use). Read routes never touch it.
//! - **Open orders** ([`reserve_open_order`], [`open_order_item`],
//!   [`close_open_order`]): a user has `max` places `OPEN#<n>` in their
//!   partition; a new order takes a free one by a conditional put before
//!   PayPal is called (so concurrent orders cannot exceed the cap), the
//!   order's transaction writes its id into it, and its capture frees it;
//!   a place lapses by itself after [`OPEN_ORDER_LIFETIME`] (PayPal lets an
//!   unapproved order expire after 3 hours). With every place held the
//!   answer is 429 until the first lapses.
//!
//! Both refuse with [`BillingError::RateLimited`] (429 with `Retry-After`).

use crate::BillingError;
use crate::store::attrs::s;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use ledger::{Ledger, LedgerError, UserId};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long an unapproved order counts as open.
pub const OPEN_ORDER_LIFETIME: Duration = Duration::from_secs(3 * 60 * 60);

/// A token bucket: `burst` requests at once, then one per `refill`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub burst: u32,
    pub refill: Duration,
}

/// The per-user limits of the order routes, from the environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderLimits {
    /// Shared by `custom-credits/add` and `virtfusion-tokens/add`.
    pub orders: RateLimit,
    /// Unapproved orders a user may hold at once.
    pub max_open_orders: u32,
}

impl Default for OrderLimits {
    fn default() -> OrderLimits {
        OrderLimits {
            orders: RateLimit {
                burst: 10,
                refill: Duration::from_secs(6),
            },
            max_open_orders: 5,
        }
    }
}

impl OrderLimits {
    /// `ORDER_RATE_BURST`, `ORDER_RATE_REFILL_SECONDS`, `MAX_OPEN_ORDERS`
    /// (defaults 10, 6, 5).
    pub fn from_env() -> OrderLimits {
        let read = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|v| *v > 0)
                .unwrap_or(default)
        };
        let d = OrderLimits::default();
        OrderLimits {
            orders: RateLimit {
                burst: u32::try_from(read("ORDER_RATE_BURST", d.orders.burst.into()))
                    .unwrap_or(d.orders.burst),
                refill: Duration::from_secs(read(
                    "ORDER_RATE_REFILL_SECONDS",
                    d.orders.refill.as_secs(),
                )),
            },
            max_open_orders: u32::try_from(read("MAX_OPEN_ORDERS", d.max_open_orders.into()))
                .unwrap_or(d.max_open_orders),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn refused(wait_ms: u64, message: &str, code: &'static str) -> BillingError {
    BillingError::RateLimited {
        message: message.to_owned(),
        code,
        retry_after_secs: wait_ms.div_ceil(1000).max(1),
    }
}

fn rate_refused(wait_ms: u64) -> BillingError {
    refused(
        wait_ms,
        "Too many requests; retry after the time in Retry-After",
        "rate_limited",
    )
}

/// Takes one request from `user`'s `bucket`, or refuses with how long to wait.
#[tracing::instrument(skip_all, fields(user = %user, bucket))]
pub async fn take(
    ledger: &Ledger,
    user: &UserId,
    bucket: &str,
    limit: RateLimit,
) -> Result<(), BillingError> {
    let interval = u64::try_from(limit.refill.as_millis()).unwrap_or(u64::MAX);
    let ahead = interval.saturating_mul(u64::from(limit.burst.max(1) - 1));
    // A fresh bucket first (the idle user's one call); then, when it is in
    // use, one interval more if that stays within the burst. The bucket may
    // lapse between the two (time passes): start again, a few times at most.
    for _ in 0..3 {
        let now = now_ms();
        let fresh = update(
            ledger,
            user,
            bucket,
            "SET tat = :next",
            "attribute_not_exists(tat) OR tat <= :now",
            &[(":next", now + interval), (":now", now)],
        )
        .await?;
        let tat = match fresh {
            None => return Ok(()),
            Some(tat) => tat,
        };
        if tat > now + ahead {
            return Err(rate_refused(tat - now - ahead));
        }
        let busy = update(
            ledger,
            user,
            bucket,
            "SET tat = tat + :interval",
            "tat > :now AND tat <= :max",
            &[
                (":interval", interval),
                (":now", now),
                (":max", now + ahead),
            ],
        )
        .await?;
        match busy {
            None => return Ok(()),
            Some(tat) if tat > now + ahead => return Err(rate_refused(tat - now - ahead)),
            Some(_) => continue,
        }
    }
    Err(rate_refused(interval))
}

/// One conditional `UpdateItem` of the bucket: `Ok(None)` when written,
/// `Ok(Some(tat))` with the bucket's time when the condition failed.
async fn update(
    ledger: &Ledger,
    user: &UserId,
    bucket: &str,
    expression: &str,
    condition: &str,
    values: &[(&str, u64)],
) -> Result<Option<u64>, BillingError> {
    let mut request = ledger
        .client()
        .update_item()
        .table_name(ledger.table())
        .key("pk", s(user.pk()))
        .key("sk", s(format!("RATE#{bucket}")))
        .update_expression(expression)
        .condition_expression(condition)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    for (name, value) in values {
        request = request.expression_attribute_values(*name, AttributeValue::N(value.to_string()));
    }
    match request.send().await {
        Ok(_) => Ok(None),
        Err(err) => match err.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                let tat = failed
                    .item()
                    .and_then(|item| item.get("tat"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                Ok(Some(tat))
            }
            _ => Err(LedgerError::dynamo("UpdateItem", &err).into()),
        },
    }
}

/// A place reserved among the user's open orders (`OPEN#<n>`, n below the cap).
#[derive(Debug)]
pub struct OpenSlot {
    sk: String,
    purchase_id: String,
}

fn until_of(item: &ledger::AttrMap) -> Option<u64> {
    item.get("until")?.as_n().ok()?.parse::<u64>().ok()
}

/// The user's `OPEN#` markers, read consistently (one `Query`).
async fn open_markers(
    ledger: &Ledger,
    user: &UserId,
) -> Result<Vec<ledger::AttrMap>, BillingError> {
    let out = ledger
        .client()
        .query()
        .table_name(ledger.table())
        .key_condition_expression("pk = :pk AND begins_with(sk, :open)")
        .expression_attribute_values(":pk", s(user.pk()))
        .expression_attribute_values(":open", s("OPEN#"))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| LedgerError::dynamo("Query", &e))?;
    Ok(out.items.unwrap_or_default())
}

/// Reserves one of the user's `max` open-order places before PayPal is
/// called, or refuses while all are held by unpaid orders. Each place is an
/// item taken by a conditional put (free: absent or lapsed), so concurrent
/// requests never hold more than `max` between them.
#[tracing::instrument(skip_all, fields(user = %user, max))]
pub async fn reserve_open_order(
    ledger: &Ledger,
    user: &UserId,
    max: u32,
    purchase_id: &str,
) -> Result<OpenSlot, BillingError> {
    let now = now_ms();
    let markers = open_markers(ledger, user).await?;
    let held: Vec<(&str, u64)> = markers
        .iter()
        .filter_map(|item| {
            let sk = item.get("sk")?.as_s().ok()?;
            Some((sk.as_str(), until_of(item)?))
        })
        .filter(|(_, until)| *until > now)
        .collect();
    let until = now + u64::try_from(OPEN_ORDER_LIFETIME.as_millis()).unwrap_or(0);
    for n in 0..max {
        let sk = format!("OPEN#{n}");
        if held.iter().any(|(taken, _)| *taken == sk) {
            continue;
        }
        let result = ledger
            .client()
            .put_item()
            .table_name(ledger.table())
            .item("pk", s(user.pk()))
            .item("sk", s(&sk))
            .item("until", AttributeValue::N(until.to_string()))
            .item("purchaseId", s(purchase_id))
            .condition_expression("attribute_not_exists(pk) OR #until <= :now")
            .expression_attribute_names("#until", "until")
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => {
                return Ok(OpenSlot {
                    sk,
                    purchase_id: purchase_id.to_owned(),
                });
            }
            Err(err) => match err.as_service_error() {
                // Taken a moment ago by a concurrent order: try the next place.
                Some(PutItemError::ConditionalCheckFailedException(_)) => continue,
                _ => return Err(LedgerError::dynamo("PutItem", &err).into()),
            },
        }
    }
    let first_lapse = held.iter().map(|(_, until)| *until).min().unwrap_or(now);
    Err(refused(
        first_lapse.saturating_sub(now),
        &format!("Too many unpaid orders (at most {max}); pay or abandon one first"),
        "too_many_open_orders",
    ))
}

/// The reserved place, now naming its order (written with the order).
pub fn open_order_item(
    ledger: &Ledger,
    user: &UserId,
    slot: &OpenSlot,
    order_id: &str,
) -> Result<TransactWriteItem, LedgerError> {
    let until = now_ms() + u64::try_from(OPEN_ORDER_LIFETIME.as_millis()).unwrap_or(0);
    let put = Put::builder()
        .table_name(ledger.table())
        .item("pk", s(user.pk()))
        .item("sk", s(&slot.sk))
        .item("until", AttributeValue::N(until.to_string()))
        .item("purchaseId", s(&slot.purchase_id))
        .item("orderId", s(order_id))
        .build()
        .map_err(|e| LedgerError::corrupt("open order", e.to_string()))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// Gives back a place whose order was never recorded (PayPal refused, or a
/// concurrent request with the same key recorded it). Best effort: a place
/// left behind lapses by itself.
pub async fn release_open_order(ledger: &Ledger, user: &UserId, slot: &OpenSlot) {
    let result = ledger
        .client()
        .delete_item()
        .table_name(ledger.table())
        .key("pk", s(user.pk()))
        .key("sk", s(&slot.sk))
        .condition_expression("purchaseId = :pid AND attribute_not_exists(orderId)")
        .expression_attribute_values(":pid", s(&slot.purchase_id))
        .send()
        .await;
    if let Err(err) = result {
        tracing::info!(error = %err, "open-order place not released; it lapses by itself");
    }
}

/// The order is paid (or settled): its place is free (one `Query` of the
/// user's few markers, one conditional `DeleteItem`).
pub async fn close_open_order(
    ledger: &Ledger,
    user: &UserId,
    order_id: &str,
) -> Result<(), BillingError> {
    for item in open_markers(ledger, user).await? {
        let (Some(sk), Some(AttributeValue::S(id))) = (item.get("sk"), item.get("orderId")) else {
            continue;
        };
        if id != order_id {
            continue;
        }
        let result = ledger
            .client()
            .delete_item()
            .table_name(ledger.table())
            .key("pk", s(user.pk()))
            .key("sk", sk.clone())
            .condition_expression("orderId = :id")
            .expression_attribute_values(":id", s(order_id))
            .send()
            .await;
        if let Err(err) = result {
            match err.as_service_error() {
                Some(DeleteItemError::ConditionalCheckFailedException(_)) => {}
                _ => return Err(LedgerError::dynamo("DeleteItem", &err).into()),
            }
        }
    }
    Ok(())
}
