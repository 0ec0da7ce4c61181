//! JSON shapes of the contract, built in one place.

use billing::balance::BalanceView;
use billing::history::HistoryItem;
use ledger::Entry;
use serde_json::{Value, json};

/// `GET /api/billing/balance`. `balance` is the whole tokens (an integer,
/// rounded down); `exact` is VirtFusion's balance as an exact decimal string
/// (fractional with hourly billing), and `formatted` shows it exactly too.
pub fn balance(view: &BalanceView) -> Value {
    let virtfusion = match view.tokens {
        Some(tokens) => json!({
            "balance": tokens.whole().get(),
            "exact": tokens.exact(),
            "formatted": tokens.formatted(),
            "available": true,
        }),
        None => json!({ "balance": null, "formatted": null, "available": false }),
    };
    json!({
        "virtFusion": virtfusion,
        "customCredits": { "balance": view.credits, "formatted": view.credits.formatted() },
    })
}

/// A ledger entry as a transaction item. Admins also see who changed it.
pub fn credit_entry(entry: &Entry, for_admin: bool) -> Value {
    let mut item = json!({
        "id": format!("cc-{}", entry.seq),
        "system": "custom_credits",
        "type": entry.type_name(),
        "amount": entry.amount,
        "status": "completed",
        "description": entry.description,
        "createdAt": entry.created_at,
        "balanceBefore": entry.balance_before,
        "balanceAfter": entry.balance_after,
    });
    if let Some(reference) = &entry.reference {
        item["reference"] = json!(reference);
    }
    if let Some(service) = &entry.service {
        item["serviceType"] = json!(service.service_type);
        if let Some(id) = &service.service_id {
            item["serviceId"] = json!(id);
        }
        if let Some(id) = &service.charge_id {
            item["chargeId"] = json!(id);
        }
    }
    if for_admin {
        item["adminId"] = json!(entry.admin_id);
        item["reason"] = json!(entry.reason);
    }
    item
}

pub fn history_item(item: &HistoryItem) -> Value {
    match item {
        HistoryItem::Credits(entry) => credit_entry(entry, false),
        HistoryItem::Tokens(line) => {
            let mut item = json!({
                "id": line.id(),
                "system": "virtfusion",
                "type": line.kind,
                "amount": line.tokens.get(),
                "status": line.status,
                "description": line.description,
                "createdAt": line.created_at,
            });
            // Admin lines name the admin and the reason (API.md "token management").
            if let Some(admin) = &line.admin {
                item["adminId"] = json!(admin.admin_id);
                item["reason"] = json!(admin.reason);
                item["creditId"] = json!(admin.credit_id);
            }
            item
        }
    }
}

/// `GET /api/billing/transactions/{id}`: the item as the list shows it,
/// with what a receipt shows beside it (`order`, `refund`, `charge`,
/// `grant`; each only when the transaction has one).
pub fn transaction_detail(detail: &billing::history::detail::TransactionDetail) -> Value {
    let mut item = history_item(&detail.item);
    if let Some(order) = &detail.order {
        let mut view = json!({
            "id": order.order_id,
            "kind": order.kind.as_str(),
            "status": order.status.as_str(),
            "amount": order.amount,
            "capturedAmount": order.captured_amount,
            "refundedAmount": order.refunded_amount,
            "captureId": order.capture_id,
            "createdAt": order.created_at,
        });
        if let Some(tokens) = order.tokens {
            view["tokens"] = json!(tokens.get());
            view["delivery"] = json!(order.delivery.map(|d| d.as_str()));
        }
        item["order"] = view;
    }
    if let Some(refund) = &detail.refund {
        item["refund"] = json!({
            "id": refund.refund_id,
            "orderId": refund.order_id,
            "movement": refund.movement.as_str(),
            "amount": refund.amount,
            "status": refund.state.as_str(),
        });
    }
    if let Some(found) = &detail.charge {
        item["charge"] = charge(found);
    }
    if let Some(grant) = &detail.grant {
        item["grant"] = json!({
            "id": grant.id,
            "tokens": grant.tokens.get(),
            "creditId": grant.credit_id,
            "status": grant.state.as_str(),
            "createdAt": grant.created_at,
        });
    }
    json!({ "transaction": item })
}

/// An entry of `GET /api/admin/transactions`: the admin view of the entry
/// and whose it is.
pub fn admin_entry(indexed: &ledger::IndexedEntry) -> Value {
    let mut item = credit_entry(&indexed.entry, true);
    item["userId"] = json!(indexed.user.as_str());
    item
}

/// An admin token grant (or its removal) on the delivery review list.
pub fn token_grant(grant: &billing::admin_tokens::TokenGrant) -> Value {
    use billing::admin_tokens::GrantState;
    let removal = matches!(
        grant.state,
        GrantState::Removing | GrantState::RemovalReview | GrantState::Removed
    );
    let (admin_id, reason) = match (&grant.removal, removal) {
        (Some(r), true) => (r.admin_id.as_str(), r.reason.as_str()),
        _ => (grant.admin_id.as_str(), grant.reason.as_str()),
    };
    json!({
        "orderId": grant.id,
        "kind": "admin_grant",
        "operation": if removal { "removal" } else { "grant" },
        "userId": grant.user.as_str(),
        "tokens": grant.tokens.get(),
        "amount": null,
        "captureId": null,
        "creditId": grant.credit_id,
        "status": grant.state.as_str(),
        "reviewReason": grant.review_reason,
        "adminId": admin_id,
        "reason": reason,
        "createdAt": grant.created_at,
    })
}

/// A DNS plan in `GET /api/dns/plans`.
pub fn dns_plan(plan: &billing::dns::Plan) -> Value {
    json!({
        "id": plan.id.as_str(),
        "name": plan.name,
        "description": plan.description,
        "price": plan.price,
        "domainLimit": plan.domain_limit,
        "recordLimit": plan.record_limit,
    })
}

/// A DNS plan as admins see it (with `isActive`).
pub fn dns_plan_admin(plan: &billing::dns::Plan) -> Value {
    let mut view = dns_plan(plan);
    view["isActive"] = json!(plan.active);
    view
}

/// A subscription of either product (times RFC 3339 UTC; `price` is what
/// the current period cost). DNS plans add their plan fields, services
/// their service fields; both carry `serviceType` and `interval`.
pub fn subscription(sub: &billing::subscriptions::Subscription) -> Value {
    use billing::subscriptions::Product;
    use billing::subscriptions::dates::format_time;
    let time = |at: Option<time::OffsetDateTime>| at.map(format_time);
    let mut view = json!({
        "id": sub.id,
        "userId": sub.user.as_str(),
        "serviceType": sub.product.service_type(),
        "price": sub.price,
        "interval": sub.interval.as_str(),
        "status": sub.status.as_str(),
        "autoRenew": sub.auto_renew,
        "startDate": format_time(sub.start_date),
        "nextRenewalDate": format_time(sub.next_renewal_date),
        "lastRenewalDate": time(sub.last_renewal_date),
        "pastDueSince": time(sub.past_due_since),
        "cancelledAt": time(sub.cancelled_at),
        "expiredAt": time(sub.expired_at),
    });
    match &sub.product {
        Product::DnsPlan(terms) => {
            view["planId"] = json!(terms.plan_id.as_str());
            view["planName"] = json!(terms.plan_name);
            view["domainLimit"] = json!(terms.domain_limit);
            view["recordLimit"] = json!(terms.record_limit);
            view["pendingPlanId"] = json!(terms.pending_plan.as_ref().map(|p| p.as_str()));
        }
        Product::Service(terms) => {
            view["serviceId"] = json!(terms.service_id);
            view["description"] = json!(terms.description);
        }
    }
    view
}

/// A DNS subscription (the engine's view of the DNS product).
pub fn dns_subscription(sub: &billing::subscriptions::Subscription) -> Value {
    subscription(sub)
}

/// A platform service charge.
pub fn charge(charge: &billing::services::Charge) -> Value {
    json!({
        "id": charge.id,
        "userId": charge.user.as_str(),
        "amount": charge.amount,
        "refundedAmount": charge.refunded,
        "status": charge.status().as_str(),
        "serviceType": charge.service_type.as_str(),
        "serviceId": charge.service_id,
        "description": charge.description,
        "createdAt": charge.created_at,
    })
}
