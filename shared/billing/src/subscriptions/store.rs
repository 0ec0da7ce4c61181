//! Subscription items, keys and single-item writes.
//!
//! | item | pk | sk |
//! | --- | --- | --- |
//! | DNS plan subscription | `USER#<id>` | `DNSSUB` (one per user: the DNS product's rule) |
//! | service subscription | `USER#<id>` | `SVCSUB#<serviceType>#<serviceId>` (one per user and service) |
//! | id pointer | `SUB#<subscriptionId>` | `SUB` → user and sk (cancel by id) |
//!
//! A new subscription replaces an expired (or ended cancelled) one under
//! the same key; the ledger entries keep the history, each naming its
//! subscription id. While the renewal job has work for it, the item carries
//! the sparse index keys `gsi1pk=RENEWAL#<shard>`, `gsi1sk=<when>#<user>`
//! (see [`RenewalPartition`]).
//! Items written before the engine (no `product`, no `interval`) are monthly
//! DNS plan subscriptions.

use super::dates::{AnchorDay, Interval, format_time};
use super::model::{DnsTerms, Product, ServiceTerms, Subscription, SubscriptionStatus};
use crate::BillingError;
use crate::dns::PlanId;
use crate::events::{self, DetailType, Event, Written};
use crate::store::attrs::{
    corrupt, get_bool, get_s, get_time, get_u32, get_usd, n, opt_time, s, time,
};
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ledger::{AttrMap, Ledger, LedgerError, ServiceType, UserId};
use time::OffsetDateTime;

pub const DNS_SK: &str = "DNSSUB";
pub const SERVICE_SK_PREFIX: &str = "SVCSUB#";
pub const POINTER_SK: &str = "SUB";
/// `gsi1pk` of subscriptions indexed before the index was sharded: still
/// read by every run; an item leaves it for its shard at its next renewal
/// or past-due retry (or expires out of the index).
pub const LEGACY_RENEWAL_INDEX_PK: &str = "RENEWAL";
/// Shards of the renewal index (`gsi1pk = RENEWAL#0` … `RENEWAL#15`). Each
/// shard is one index partition renewed by one worker at a time, so its
/// write rate stays a fraction of DynamoDB's per-partition limit
/// (docs/benchmarks.md, "Hot partitions at 10 million users"). Changing it
/// moves no item: lowering it would strand the items of the dropped shards,
/// so raise it only, and only together with a job that still reads the old
/// range until it is empty.
pub const RENEWAL_SHARDS: u16 = 16;

/// One partition of the renewal index: a shard, or the legacy `RENEWAL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RenewalPartition {
    Shard(u16),
    Legacy,
}

impl RenewalPartition {
    /// The shard of `user`'s subscriptions: FNV-1a of the user id, modulo
    /// [`RENEWAL_SHARDS`]. Keyed on the user, not the subscription, so all
    /// of a user's subscriptions are renewed by one worker (never two
    /// workers racing on the account's `seq`); stable across releases (no
    /// std hasher).
    pub fn of(user: &UserId) -> RenewalPartition {
        let mut hash: u32 = 0x811c_9dc5;
        for byte in user.as_str().bytes() {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        let shard = hash % u32::from(RENEWAL_SHARDS);
        RenewalPartition::Shard(u16::try_from(shard).unwrap_or(0))
    }

    /// Every partition a run must read: the shards, then the legacy one
    /// (last, so that an item it renews into a shard is not met again by
    /// the same in-process run).
    pub fn all() -> Vec<RenewalPartition> {
        (0..RENEWAL_SHARDS)
            .map(RenewalPartition::Shard)
            .chain(std::iter::once(RenewalPartition::Legacy))
            .collect()
    }

    /// Its `gsi1pk`.
    pub fn pk(self) -> String {
        match self {
            RenewalPartition::Shard(shard) => format!("{LEGACY_RENEWAL_INDEX_PK}#{shard}"),
            RenewalPartition::Legacy => LEGACY_RENEWAL_INDEX_PK.to_owned(),
        }
    }

    /// From its `gsi1pk` (a fan-out message names it so); `None` for
    /// anything else, including shards out of range.
    pub fn parse(pk: &str) -> Option<RenewalPartition> {
        if pk == LEGACY_RENEWAL_INDEX_PK {
            return Some(RenewalPartition::Legacy);
        }
        let digits = pk
            .strip_prefix(LEGACY_RENEWAL_INDEX_PK)?
            .strip_prefix('#')?;
        if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let shard = digits.parse::<u16>().ok()?;
        (shard < RENEWAL_SHARDS && digits == shard.to_string())
            .then_some(RenewalPartition::Shard(shard))
    }
}

impl std::fmt::Display for RenewalPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.pk())
    }
}

/// Where a subscription is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubKey {
    pub user: UserId,
    pub sk: String,
}

pub fn service_sk(service_type: &ServiceType, service_id: &str) -> String {
    format!("{SERVICE_SK_PREFIX}{service_type}#{service_id}")
}

/// The index sort key: the time the job should look at it, then the user.
pub fn renewal_sort_key(at: OffsetDateTime, user: &UserId) -> String {
    format!("{}#{}", format_time(at), user.as_str())
}

impl Subscription {
    pub fn key(&self) -> SubKey {
        SubKey {
            user: self.user.clone(),
            sk: match &self.product {
                Product::DnsPlan(_) => DNS_SK.to_owned(),
                Product::Service(terms) => service_sk(&terms.service_type, &terms.service_id),
            },
        }
    }

    pub fn to_item(&self) -> AttrMap {
        let mut item = AttrMap::new();
        item.insert("pk".into(), s(self.user.pk()));
        item.insert("sk".into(), s(self.key().sk));
        item.insert("user".into(), s(self.user.as_str()));
        item.insert("id".into(), s(&self.id));
        match &self.product {
            Product::DnsPlan(terms) => {
                item.insert("product".into(), s("dns_plan"));
                item.insert("planId".into(), s(terms.plan_id.as_str()));
                item.insert("planName".into(), s(&terms.plan_name));
                item.insert("domainLimit".into(), n(terms.domain_limit));
                item.insert("recordLimit".into(), n(terms.record_limit));
                if let Some(pending) = &terms.pending_plan {
                    item.insert("pendingPlanId".into(), s(pending.as_str()));
                }
            }
            Product::Service(terms) => {
                item.insert("product".into(), s("service"));
                item.insert("serviceType".into(), s(terms.service_type.as_str()));
                item.insert("serviceId".into(), s(&terms.service_id));
                item.insert("description".into(), s(&terms.description));
            }
        }
        item.insert("price".into(), crate::store::attrs::usd(self.price));
        item.insert("interval".into(), s(self.interval.as_str()));
        item.insert("status".into(), s(self.status.as_str()));
        item.insert("autoRenew".into(), AttributeValue::Bool(self.auto_renew));
        item.insert("startDate".into(), time(self.start_date));
        item.insert("nextRenewalDate".into(), time(self.next_renewal_date));
        item.insert("anchorDay".into(), n(self.anchor_day.get()));
        for (name, value) in [
            ("lastRenewalDate", self.last_renewal_date),
            ("pastDueSince", self.past_due_since),
            ("cancelledAt", self.cancelled_at),
            ("expiredAt", self.expired_at),
        ] {
            if let Some(value) = value {
                item.insert(name.into(), time(value));
            }
        }
        // In the renewal index (its user's shard) unless expired.
        if self.status != SubscriptionStatus::Expired {
            item.insert("gsi1pk".into(), s(RenewalPartition::of(&self.user).pk()));
            item.insert(
                "gsi1sk".into(),
                s(renewal_sort_key(self.next_renewal_date, &self.user)),
            );
        }
        item
    }

    pub fn from_item(item: &AttrMap) -> Result<Subscription, BillingError> {
        let user = get_s(item, "pk")?
            .strip_prefix("USER#")
            .and_then(|id| UserId::parse(id).ok())
            .ok_or_else(|| corrupt(item, "pk is not a user key"))?;
        let status = SubscriptionStatus::parse(get_s(item, "status")?)
            .ok_or_else(|| corrupt(item, "unknown status"))?;
        let anchor_day = u8::try_from(get_u32(item, "anchorDay")?)
            .ok()
            .and_then(AnchorDay::new)
            .ok_or_else(|| corrupt(item, "anchorDay out of range"))?;
        let product_name = match item.get("product") {
            None => "dns_plan",
            Some(_) => get_s(item, "product")?,
        };
        let product = match product_name {
            "dns_plan" => Product::DnsPlan(DnsTerms {
                plan_id: PlanId::parse(get_s(item, "planId")?)
                    .ok_or_else(|| corrupt(item, "planId is not a plan id"))?,
                plan_name: get_s(item, "planName")?.to_owned(),
                domain_limit: get_u32(item, "domainLimit")?,
                record_limit: get_u32(item, "recordLimit")?,
                pending_plan: match item.get("pendingPlanId") {
                    None => None,
                    Some(_) => Some(
                        PlanId::parse(get_s(item, "pendingPlanId")?)
                            .ok_or_else(|| corrupt(item, "pendingPlanId is not a plan id"))?,
                    ),
                },
            }),
            "service" => Product::Service(ServiceTerms {
                service_type: ServiceType::parse(get_s(item, "serviceType")?)
                    .ok_or_else(|| corrupt(item, "serviceType is not a service type"))?,
                service_id: get_s(item, "serviceId")?.to_owned(),
                description: get_s(item, "description")?.to_owned(),
            }),
            _ => return Err(corrupt(item, "unknown product")),
        };
        let interval = match item.get("interval") {
            None => Interval::Month,
            Some(_) => Interval::parse(get_s(item, "interval")?)
                .ok_or_else(|| corrupt(item, "unknown interval"))?,
        };
        Ok(Subscription {
            user,
            id: get_s(item, "id")?.to_owned(),
            product,
            price: get_usd(item, "price")?,
            interval,
            status,
            auto_renew: get_bool(item, "autoRenew")?,
            start_date: get_time(item, "startDate")?,
            next_renewal_date: get_time(item, "nextRenewalDate")?,
            last_renewal_date: opt_time(item, "lastRenewalDate")?,
            anchor_day,
            past_due_since: opt_time(item, "pastDueSince")?,
            cancelled_at: opt_time(item, "cancelledAt")?,
            expired_at: opt_time(item, "expiredAt")?,
        })
    }

    /// The new subscription as a transaction item: put only where no
    /// subscription blocks it (none, expired, or cancelled and ended).
    pub fn create_item(
        &self,
        table: &str,
        now: OffsetDateTime,
    ) -> Result<TransactWriteItem, BillingError> {
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(self.to_item()))
            .condition_expression(
                "attribute_not_exists(pk) OR #status = :expired \
                 OR (#status = :cancelled AND nextRenewalDate <= :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":expired", s(SubscriptionStatus::Expired.as_str()))
            .expression_attribute_values(":cancelled", s(SubscriptionStatus::Cancelled.as_str()))
            .expression_attribute_values(":now", time(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| corrupt(&self.to_item(), e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The id pointer (`SUB#<id>`) as a transaction item: put only if new.
    pub fn pointer_item(&self, table: &str) -> Result<TransactWriteItem, BillingError> {
        let key = self.key();
        let put = Put::builder()
            .table_name(table)
            .item("pk", s(format!("SUB#{}", self.id)))
            .item("sk", s(POINTER_SK))
            .item("user", s(key.user.as_str()))
            .item("subSk", s(key.sk))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| corrupt(&self.to_item(), e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

/// A subscription by key (consistent read).
pub async fn get(ledger: &Ledger, key: &SubKey) -> Result<Option<Subscription>, BillingError> {
    let out = ledger
        .client()
        .get_item()
        .table_name(ledger.table())
        .key("pk", s(key.user.pk()))
        .key("sk", s(&key.sk))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| LedgerError::dynamo("GetItem", &e))?;
    out.item.as_ref().map(Subscription::from_item).transpose()
}

/// A subscription by id: through its pointer, or (subscriptions from before
/// pointers existed) the DNS subscription of `owner` when its id matches.
pub async fn get_by_id(
    ledger: &Ledger,
    id: &str,
    owner: Option<&UserId>,
) -> Result<Option<Subscription>, BillingError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Ok(None);
    }
    let out = ledger
        .client()
        .get_item()
        .table_name(ledger.table())
        .key("pk", s(format!("SUB#{id}")))
        .key("sk", s(POINTER_SK))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| LedgerError::dynamo("GetItem", &e))?;
    let key = match out.item {
        Some(item) => SubKey {
            user: UserId::parse(get_s(&item, "user")?)
                .map_err(|_| corrupt(&item, "user is not a user id"))?,
            sk: get_s(&item, "subSk")?.to_owned(),
        },
        None => match owner {
            Some(user) => SubKey {
                user: user.clone(),
                sk: DNS_SK.to_owned(),
            },
            None => return Ok(None),
        },
    };
    Ok(get(ledger, &key).await?.filter(|sub| sub.id == id))
}

/// A page of a user's service subscriptions (optionally of one type), by key order.
pub struct ServicePage {
    pub items: Vec<Subscription>,
    pub next: Option<String>,
}

pub async fn list_services(
    ledger: &Ledger,
    user: &UserId,
    service_type: Option<&ServiceType>,
    limit: u32,
    cursor: Option<&str>,
) -> Result<ServicePage, BillingError> {
    let prefix = match service_type {
        Some(t) => format!("{SERVICE_SK_PREFIX}{t}#"),
        None => SERVICE_SK_PREFIX.to_owned(),
    };
    let start = match cursor {
        Some(text) => {
            let sk = URL_SAFE_NO_PAD
                .decode(text)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|sk| sk.starts_with(&prefix) && sk.len() <= 300)
                .ok_or_else(|| BillingError::InvalidInput("cursor is invalid".into()))?;
            Some(AttrMap::from([
                ("pk".to_owned(), s(user.pk())),
                ("sk".to_owned(), s(sk)),
            ]))
        }
        None => None,
    };
    let out = ledger
        .client()
        .query()
        .table_name(ledger.table())
        .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
        .expression_attribute_values(":pk", s(user.pk()))
        .expression_attribute_values(":prefix", s(prefix))
        .limit(i32::try_from(limit).unwrap_or(100))
        .set_exclusive_start_key(start)
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| LedgerError::dynamo("Query", &e))?;
    let items = out
        .items()
        .iter()
        .map(Subscription::from_item)
        .collect::<Result<Vec<_>, _>>()?;
    let next = out
        .last_evaluated_key()
        .and_then(|key| match key.get("sk") {
            Some(AttributeValue::S(sk)) => Some(URL_SAFE_NO_PAD.encode(sk)),
            _ => None,
        });
    Ok(ServicePage { items, next })
}

fn ended() -> BillingError {
    BillingError::Conflict {
        message: "The subscription has already ended".into(),
        code: "subscription_ended",
    }
}

/// Turns auto-renew off. An active subscription becomes `cancelled` and
/// stays usable until `nextRenewalDate` (the job expires it then, without a
/// charge); a `past_due` one has no paid time left and expires now.
/// Cancelling twice answers the cancelled subscription again; an expired
/// one is 409.
pub async fn cancel(
    ledger: &Ledger,
    key: &SubKey,
    now: OffsetDateTime,
) -> Result<Subscription, BillingError> {
    // Bounded: each round loses only to a concurrent renewal or expiry.
    for _ in 0..4 {
        let update = Update::builder()
            .table_name(ledger.table())
            .key("pk", s(key.user.pk()))
            .key("sk", s(&key.sk))
            .update_expression(
                "SET #status = :cancelled, autoRenew = :false, cancelledAt = :now, updatedAt = :now",
            )
            .condition_expression("#status = :active AND id = :id")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":cancelled", s(SubscriptionStatus::Cancelled.as_str()))
            .expression_attribute_values(":active", s(SubscriptionStatus::Active.as_str()))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":now", time(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        // The event names the subscription it cancels: read it first (the
        // condition makes sure it is still the active one with that id).
        let Some(current) = get(ledger, key).await? else {
            return Err(BillingError::NotFound("Subscription"));
        };
        let update = update
            .expression_attribute_values(":id", s(&current.id))
            .build()
            .map_err(|e| LedgerError::corrupt(key.user.pk(), e.to_string()))?;
        let event = subscription_event(
            DetailType::SubscriptionCancelled,
            &format!("{}#cancelled", current.id),
            &current,
        )
        .text("cancelledAt", format_time(now));
        let update = TransactWriteItem::builder().update(update).build();
        let existing = match events::write_with(ledger, update, &[event]).await? {
            Written::Yes => {
                return get(ledger, key)
                    .await?
                    .ok_or(BillingError::NotFound("Subscription"));
            }
            Written::ConditionFailed { existing } => existing.map(|item| *item),
        };
        let Some(existing) = existing else {
            return Err(BillingError::NotFound("Subscription"));
        };
        let sub = Subscription::from_item(&existing)?;
        match sub.status {
            SubscriptionStatus::Active => continue,
            SubscriptionStatus::Cancelled => return Ok(sub),
            SubscriptionStatus::Expired => return Err(ended()),
            SubscriptionStatus::PastDue => {
                if let Some(expired) = expire(ledger, &sub, now, true).await? {
                    return Ok(expired);
                }
            }
        }
    }
    Err(LedgerError::Contended { attempts: 4 }.into())
}

/// Ends `sub` now (no charge) if it is still as read: status, period and id
/// unchanged. Leaves the renewal index. `None` when it changed meanwhile.
pub async fn expire(
    ledger: &Ledger,
    sub: &Subscription,
    now: OffsetDateTime,
    cancelled_by_owner: bool,
) -> Result<Option<Subscription>, BillingError> {
    let set = if cancelled_by_owner {
        "SET #status = :expired, autoRenew = :false, expiredAt = :now, cancelledAt = :now, updatedAt = :now"
    } else {
        "SET #status = :expired, autoRenew = :false, expiredAt = :now, updatedAt = :now"
    };
    let key = sub.key();
    let update = Update::builder()
        .table_name(ledger.table())
        .key("pk", s(key.user.pk()))
        .key("sk", s(&key.sk))
        .update_expression(format!("{set} REMOVE gsi1pk, gsi1sk"))
        .condition_expression("id = :id AND #status = :seen AND nextRenewalDate = :due")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":expired", s(SubscriptionStatus::Expired.as_str()))
        .expression_attribute_values(":false", AttributeValue::Bool(false))
        .expression_attribute_values(":now", time(now))
        .expression_attribute_values(":id", s(&sub.id))
        .expression_attribute_values(":seen", s(sub.status.as_str()))
        .expression_attribute_values(":due", time(sub.next_renewal_date))
        .build()
        .map_err(|e| corrupt(&sub.to_item(), e.to_string()))?;
    // One expiry per subscription, ever; a past-due one the owner cancels is
    // both cancelled and expired.
    let reason = if cancelled_by_owner {
        "cancelled"
    } else if sub.status == SubscriptionStatus::PastDue {
        "unpaid"
    } else {
        "ended"
    };
    let mut reported = vec![
        subscription_event(
            DetailType::SubscriptionExpired,
            &format!("{}#expired", sub.id),
            sub,
        )
        .text("expiredAt", format_time(now))
        .text("reason", reason),
    ];
    if cancelled_by_owner {
        reported.push(
            subscription_event(
                DetailType::SubscriptionCancelled,
                &format!("{}#cancelled", sub.id),
                sub,
            )
            .text("cancelledAt", format_time(now)),
        );
    }
    let update = TransactWriteItem::builder().update(update).build();
    match events::write_with(ledger, update, &reported).await? {
        Written::Yes => get(ledger, &key).await,
        Written::ConditionFailed { .. } => Ok(None),
    }
}

/// An event about `sub` (`subscription.*`): its id, product (the DNS plan,
/// or the service type and id), price, status as read and the end of its
/// paid period.
pub(crate) fn subscription_event(detail_type: DetailType, key: &str, sub: &Subscription) -> Event {
    let event = Event::new(detail_type, key, &sub.user)
        .text("subscriptionId", &sub.id)
        .usd("price", sub.price)
        .text("nextRenewalDate", format_time(sub.next_renewal_date));
    match &sub.product {
        Product::DnsPlan(terms) => event
            .text("product", "dns_plan")
            .text("planId", terms.plan_id.as_str()),
        Product::Service(terms) => event
            .text("product", "service")
            .text("serviceType", terms.service_type.as_str())
            .text("serviceId", &terms.service_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn service() -> Subscription {
        Subscription::start(
            UserId::parse("42").unwrap(),
            Product::Service(ServiceTerms {
                service_type: ServiceType::parse("dedicated_server").unwrap(),
                service_id: "srv-42#a".into(),
                description: "DS-1".into(),
            }),
            billing_money::parse_usd_literal("49").unwrap(),
            Interval::Year,
            datetime!(2024-02-29 10:00 UTC),
        )
        .unwrap()
    }

    #[test]
    fn service_items_round_trip() {
        let sub = service();
        let item = sub.to_item();
        assert_eq!(item["sk"], s("SVCSUB#dedicated_server#srv-42#a"));
        assert_eq!(Subscription::from_item(&item).unwrap(), sub);
        assert_eq!(item["gsi1sk"], s("2025-02-28T10:00:00.000Z#42"));
    }

    #[test]
    fn the_shard_is_the_users_stable_and_in_range() {
        let sub = service();
        // FNV-1a("42") % 16, fixed: items already written must keep their shard.
        assert_eq!(RenewalPartition::of(&sub.user), RenewalPartition::Shard(3));
        assert_eq!(sub.to_item()["gsi1pk"], s("RENEWAL#3"));
        let mut counts = [0u32; RENEWAL_SHARDS as usize];
        for i in 0..16_000 {
            let user = UserId::parse(&format!("user-{i}")).unwrap();
            match RenewalPartition::of(&user) {
                RenewalPartition::Shard(shard) => counts[usize::from(shard)] += 1,
                RenewalPartition::Legacy => panic!("a user in the legacy partition"),
            }
        }
        // Even enough: every shard within 10 % of 1,000.
        assert!(
            counts.iter().all(|c| (900..=1100).contains(c)),
            "{counts:?}"
        );
        let all = RenewalPartition::all();
        assert_eq!(all.len(), usize::from(RENEWAL_SHARDS) + 1);
        assert_eq!(all.last(), Some(&RenewalPartition::Legacy));
        for partition in all {
            assert_eq!(RenewalPartition::parse(&partition.pk()), Some(partition));
        }
        for bad in [
            "RENEWAL#16",
            "RENEWAL#01",
            "RENEWAL#",
            "RENEWAL#-1",
            "renewal#1",
            "PLAN",
            "RENEWAL#99999999",
        ] {
            assert_eq!(RenewalPartition::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn items_from_before_the_engine_are_monthly_dns_plans() {
        let mut item = service().to_item();
        for name in [
            "product",
            "serviceType",
            "serviceId",
            "description",
            "interval",
        ] {
            item.remove(name);
        }
        item.insert("planId".into(), s("basic"));
        item.insert("planName".into(), s("Basic"));
        item.insert("domainLimit".into(), n(5));
        item.insert("recordLimit".into(), n(100));
        let sub = Subscription::from_item(&item).unwrap();
        assert_eq!(sub.interval, Interval::Month);
        assert_eq!(sub.dns().unwrap().plan_id.as_str(), "basic");
        let mut bad = item.clone();
        bad.insert("product".into(), s("boat"));
        assert!(Subscription::from_item(&bad).is_err());
    }
}
