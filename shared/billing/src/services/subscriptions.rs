//! Service subscriptions: the engine's second product. Creating one charges
//! its first period and creates it in one `Ledger::apply` (402 short,
//! nothing changes); one active subscription per (user, serviceType,
//! serviceId) — the product's key, `SVCSUB#<serviceType>#<serviceId>` —
//! so a second is 409 until the first no longer blocks it. Renewal,
//! `past_due`, grace, expiry and cancellation are the engine's.

use super::{description, service_amount, service_id, service_type, target_user};
use crate::BillingError;
use crate::idempotency::{IdempotencyKey, StoredResponse, apply_with_key};
use crate::subscriptions::dates::{Interval, period_id, to_millis};
use crate::subscriptions::store::{SubKey, get, list_services, service_sk};
use crate::subscriptions::{Product, ServiceTerms, Subscription};
use billing_money::Usd;
use ledger::{Change, EntryDetails, EntryKind, Ledger, LedgerError, Preview, ServiceType, UserId};
use time::OffsetDateTime;

/// A subscription request as received (already JSON-parsed).
#[derive(Clone, Debug)]
pub struct SubscribeRequest {
    pub user_id: String,
    pub service_type: String,
    pub service_id: String,
    pub price: Usd,
    pub interval: String,
    pub description: String,
}

/// A validated subscription, checked against what exists, ready to apply.
#[derive(Clone, Debug)]
pub struct PreparedSubscription {
    pub subscription: Subscription,
    pub key: IdempotencyKey,
    pub now: OffsetDateTime,
}

fn already_subscribed() -> BillingError {
    BillingError::Conflict {
        message: "The user already has an active subscription to this service".into(),
        code: "already_subscribed",
    }
}

/// Validates (400) and reads the existing subscription of the same service
/// (409 while it blocks a new one; the transaction's condition enforces it,
/// the read only makes the answer precise).
pub async fn prepare(
    ledger: &Ledger,
    caller: &UserId,
    key: &str,
    request: SubscribeRequest,
    now: OffsetDateTime,
) -> Result<PreparedSubscription, BillingError> {
    let user = target_user(&request.user_id)?;
    let service_type = service_type(&request.service_type)?;
    let service_id = service_id(&request.service_id)?;
    let price = service_amount(request.price, "price")?;
    let interval = Interval::parse(&request.interval).ok_or_else(|| {
        BillingError::InvalidInput("interval must be \"month\" or \"year\"".into())
    })?;
    let description = description(&request.description)?;
    let canonical = format!(
        "{user}|{service_type}|{service_id}|{price}|{}|{description}",
        interval.as_str()
    );
    let key = IdempotencyKey::new(caller, key, "service-subscription", &canonical);
    let now = to_millis(now);
    let sub_key = SubKey {
        user: user.clone(),
        sk: service_sk(&service_type, &service_id),
    };
    let subscription = Subscription::start(
        user,
        Product::Service(ServiceTerms {
            service_type,
            service_id,
            description,
        }),
        price,
        interval,
        now,
    )?;
    if get(ledger, &sub_key)
        .await?
        .is_some_and(|s| s.blocks_new(now))
    {
        // A retry of the request that created it is answered as the first.
        if let Some(crate::idempotency::Existing::Replay(_)) = key.lookup(ledger).await? {
            return Ok(PreparedSubscription {
                subscription,
                key,
                now,
            });
        }
        return Err(already_subscribed());
    }
    Ok(PreparedSubscription {
        subscription,
        key,
        now,
    })
}

/// Charges the first period and creates the subscription (and its id
/// pointer) under the key, all or nothing.
#[tracing::instrument(skip_all, fields(user = %prepared.subscription.user, subscription = %prepared.subscription.id))]
pub async fn subscribe<S>(
    ledger: &Ledger,
    prepared: PreparedSubscription,
    success: S,
) -> Result<StoredResponse, BillingError>
where
    S: Fn(&Subscription, &Preview) -> StoredResponse + Send + Sync + Clone + 'static,
{
    let sub = prepared.subscription;
    let Product::Service(terms) = &sub.product else {
        return Err(BillingError::InvalidInput(
            "not a service subscription".into(),
        ));
    };
    let details = EntryDetails::new(
        EntryKind::ServicePurchase,
        format!(
            "{}: {} to {}",
            terms.description,
            period_id(sub.start_date),
            period_id(sub.next_renewal_date)
        ),
    )
    .service(
        terms.service_type.as_str(),
        Some(terms.service_id.clone()),
        None,
    )
    .reference(&sub.id);
    // No event: API.md "Events" lists none for a new subscription.
    let change = Change::new(sub.user.clone(), -sub.price, details)
        .with_item(sub.create_item(ledger.table(), prepared.now)?)
        .with_item(sub.pointer_item(ledger.table())?);
    let stored = sub.clone();
    apply_with_key(
        ledger,
        change,
        Some(&prepared.key),
        move |preview| success(&stored, preview),
        |err| match err {
            LedgerError::InsufficientBalance { balance } => {
                BillingError::InsufficientFunds { balance }
            }
            LedgerError::ConditionFailed { index: 0, .. } => already_subscribed(),
            other => other.into(),
        },
    )
    .await
}

/// Largest page of a listing.
pub const MAX_LIMIT: u32 = 100;

/// `GET /api/services/subscriptions`: a user's service subscriptions,
/// optionally of one type, in key order, paged.
pub async fn list(
    ledger: &Ledger,
    user_id: &str,
    service_type: Option<&str>,
    limit: u32,
    cursor: Option<&str>,
) -> Result<crate::subscriptions::store::ServicePage, BillingError> {
    let user = target_user(user_id)?;
    let service_type = service_type
        .map(|t| {
            ServiceType::parse(t).ok_or_else(|| {
                BillingError::InvalidInput("serviceType must match [a-z][a-z0-9_]{0,31}".into())
            })
        })
        .transpose()?;
    list_services(ledger, &user, service_type.as_ref(), limit, cursor).await
}

/// Every subscription of a user: the DNS plan's (if any) first, then the
/// services' (bounded: at most 1,000).
pub async fn all_of_user(
    ledger: &Ledger,
    user: &UserId,
) -> Result<Vec<Subscription>, BillingError> {
    let mut items: Vec<Subscription> = crate::dns::get_subscription(ledger, user)
        .await?
        .into_iter()
        .collect();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let page = list_services(ledger, user, None, MAX_LIMIT, cursor.as_deref()).await?;
        items.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(items)
}

/// Cancels a subscription by id: for a service or admin any user's
/// (`owner: None`), for a user only their own (another's is 404).
#[tracing::instrument(skip_all, fields(subscription = id))]
pub async fn cancel_by_id(
    ledger: &Ledger,
    id: &str,
    owner: Option<&UserId>,
    now: OffsetDateTime,
) -> Result<Subscription, BillingError> {
    let sub = crate::subscriptions::get_by_id(ledger, id, owner)
        .await?
        .filter(|sub| owner.is_none_or(|user| sub.user == *user))
        .ok_or(BillingError::NotFound("Subscription"))?;
    crate::subscriptions::cancel(ledger, &sub.key(), to_millis(now)).await
}
