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
        "type": entry.kind.as_str(),
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
    if for_admin {
        item["adminId"] = json!(entry.admin_id);
        item["reason"] = json!(entry.reason);
    }
    item
}

pub fn history_item(item: &HistoryItem) -> Value {
    match item {
        HistoryItem::Credits(entry) => credit_entry(entry, false),
        HistoryItem::Tokens(purchase) => json!({
            "id": if purchase.kind == "purchase" {
                purchase.order_id.clone()
            } else {
                // A refund line: the order id and the refund id.
                let refund_id = purchase.sort_key.rsplit('#').next().unwrap_or_default();
                format!("{}-{}", purchase.order_id, refund_id)
            },
            "system": "virtfusion",
            "type": purchase.kind,
            "amount": purchase.tokens.get(),
            "status": purchase.status,
            "description": purchase.description,
            "createdAt": purchase.created_at,
        }),
    }
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

/// A DNS subscription (times RFC 3339 UTC; `price` is what it renews at).
pub fn dns_subscription(sub: &billing::dns::Subscription) -> Value {
    use billing::dns::dates::format_time;
    let time = |at: Option<time::OffsetDateTime>| at.map(format_time);
    json!({
        "id": sub.id,
        "planId": sub.plan_id.as_str(),
        "planName": sub.plan_name,
        "price": sub.price,
        "status": sub.status.as_str(),
        "autoRenew": sub.auto_renew,
        "startDate": format_time(sub.start_date),
        "nextRenewalDate": format_time(sub.next_renewal_date),
        "lastRenewalDate": time(sub.last_renewal_date),
        "domainLimit": sub.domain_limit,
        "recordLimit": sub.record_limit,
        "pastDueSince": time(sub.past_due_since),
        "cancelledAt": time(sub.cancelled_at),
        "expiredAt": time(sub.expired_at),
    })
}
