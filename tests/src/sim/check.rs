//! What the simulator checks. The model is small and knows nothing of the
//! implementation's states: PayPal's stand-in is the truth of what was paid
//! (captured, refunds completed, reversals not won), VirtFusion's stand-in
//! the truth of what tokens exist, and the steps' own answers the truth of
//! what admins and services moved. Each error starts with its category in
//! brackets (the shrinker keeps a failure of the same category).

use super::world::{Outcome, World, captured_status};
use billing::orders::{Delivery, PaymentStatus};
use billing::store::refunds::{Movement, RefundState};
use serde_json::Value;

/// The category of an error (`[conservation] ...` → `conservation`).
pub fn category(error: &str) -> &str {
    error
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .map_or("other", |(c, _)| c)
}

/// After every step: the chain audit of each touched account holds, and no
/// record says completed, delivered or refunded where the stand-ins say
/// otherwise.
pub async fn after_step(world: &World, users: &[usize]) -> Outcome {
    for &u in users {
        audit(world, &world.users[u].id).await?;
        records(world, u).await?;
    }
    Ok(())
}

async fn audit(world: &World, user: &ledger::UserId) -> Outcome {
    let report = world
        .api
        .ledger()
        .audit(user)
        .await
        .map_err(|e| format!("[audit] unreadable for {user}: {e}"))?;
    if !report.is_sound() {
        return Err(format!(
            "[audit] chain of {user} broken: {:?}",
            report.problems
        ));
    }
    Ok(())
}

async fn records(world: &World, u: usize) -> Outcome {
    let ledger = world.api.ledger();
    for purchase in &world.users[u].purchases {
        let order_id = &purchase.order_id;
        let Some(record) = billing::orders::load(&ledger, order_id)
            .await
            .map_err(|e| format!("[record] order {order_id} unreadable: {e}"))?
        else {
            continue;
        };
        let captures: Vec<_> = world
            .api
            .paypal
            .order(order_id)
            .map(|o| o.capture_ids)
            .unwrap_or_default()
            .iter()
            .filter_map(|id| world.api.paypal.capture(id))
            .collect();
        if record.status == PaymentStatus::Completed
            && !captures.iter().any(|c| captured_status(&c.status))
        {
            return Err(format!(
                "[record] order {order_id} says completed, PayPal's captures are {:?}",
                captures.iter().map(|c| &c.status).collect::<Vec<_>>()
            ));
        }
        if purchase.tokens {
            let credits = world.credits_for(order_id);
            match record.delivery {
                Some(Delivery::Delivered) if credits.is_empty() => {
                    return Err(format!(
                        "[record] order {order_id} says delivered, VirtFusion has no credit for it"
                    ));
                }
                Some(Delivery::Refunded) if !credits.is_empty() => {
                    return Err(format!(
                        "[record] order {order_id} says refunded, VirtFusion still has {} tokens of it",
                        credits.iter().map(|c| c.tokens).sum::<i64>()
                    ));
                }
                _ => {}
            }
        }
    }
    for refund in world.refunds_of(u) {
        if refund.reversal {
            continue;
        }
        let stored = billing::store::refunds::load(&ledger, &refund.id)
            .await
            .map_err(|e| format!("[record] refund {} unreadable: {e}", refund.id))?;
        if let Some(stored) = stored
            && stored.state == RefundState::Completed
            && refund.status != "COMPLETED"
        {
            return Err(format!(
                "[record] refund {} says completed, PayPal says {}",
                refund.id, refund.status
            ));
        }
    }
    Ok(())
}

/// What PayPal says a purchase is worth now, in cents: captured minus
/// completed refunds minus reversals not won (the model).
pub fn paid(world: &World, order_id: &str) -> (i64, i64, i64) {
    let capture_ids = world
        .api
        .paypal
        .order(order_id)
        .map(|o| o.capture_ids)
        .unwrap_or_default();
    let captured: i64 = capture_ids
        .iter()
        .filter_map(|id| world.api.paypal.capture(id))
        .filter(|c| captured_status(&c.status))
        .map(|c| c.amount_cents)
        .sum();
    let mut refunded = 0;
    let mut reversed = 0;
    for refund in world.api.paypal.refunds() {
        if !capture_ids.contains(&refund.capture_id) || refund.status != "COMPLETED" {
            continue;
        }
        if refund.reversal {
            reversed += refund.amount_cents;
        } else {
            refunded += refund.amount_cents;
        }
    }
    (captured, refunded, reversed)
}

/// Brings the world to rest (PayPal settles what is pending, held webhooks
/// are delivered, the delivery job runs, reviews are settled truthfully,
/// reconciliation runs twice) and checks conservation.
pub async fn quiesce(world: &mut World) -> Outcome {
    world.api.virtfusion.clear_failure();
    world.api.paypal.clear_failures();
    world.settle_everything_pending();
    world.flush_webhooks().await?;
    settle_deliveries(world).await?;
    world.reconcile().await?;
    world.reconcile().await?;
    settle_deliveries(world).await?;
    let users: Vec<usize> = (0..world.users.len()).collect();
    after_step(world, &users).await?;
    nothing_left_open(world).await?;
    conservation(world).await?;
    refund_records(world).await?;
    tokens_where_they_belong(world).await?;
    audit(world, &world.bystander).await?;
    let bystander = world
        .api
        .ledger()
        .balance(&world.bystander)
        .await
        .map_err(|e| format!("[bystander] unreadable: {e}"))?;
    if bystander.cents() != world.bystander_cents {
        return Err(format!(
            "[bystander] an account outside every lifecycle changed: {bystander}"
        ));
    }
    Ok(())
}

async fn settle_deliveries(world: &mut World) -> Outcome {
    for _ in 0..3 {
        world.delivery_job().await?;
        world.delivery_job().await?;
        world.settle_reviews().await?;
    }
    Ok(())
}

async fn nothing_left_open(world: &World) -> Outcome {
    let admin = world.api.token(super::world::ADMIN, true);
    for status in ["needs_review", "pending"] {
        let listed = world
            .api
            .get(
                &format!("/api/admin/virtfusion-deliveries?status={status}"),
                &admin,
            )
            .await;
        let items = listed.body["items"].as_array().cloned().unwrap_or_default();
        if !items.is_empty() {
            return Err(format!(
                "[settled] deliveries still {status} after the world came to rest: {}",
                Value::Array(items)
            ));
        }
    }
    Ok(())
}

/// For every purchase, the value the user got equals what PayPal kept.
async fn conservation(world: &World) -> Outcome {
    let ledger = world.api.ledger();
    for (u, user) in world.users.iter().enumerate() {
        let mut credits_owed = 0;
        let mut lines = Vec::new();
        for purchase in &user.purchases {
            let (captured, refunded, reversed) = paid(world, &purchase.order_id);
            let owed = captured - refunded - reversed;
            if purchase.tokens {
                let got: i64 = world
                    .credits_for(&purchase.order_id)
                    .iter()
                    .map(|c| c.tokens)
                    .sum();
                if got != owed {
                    return Err(format!(
                        "[conservation] token purchase {} of u{u}: PayPal captured {captured}¢, \
                         refunds completed {refunded}¢, reversals not won {reversed}¢, so \
                         {owed} tokens are owed; VirtFusion holds {got}{}",
                        purchase.order_id,
                        mismatches(world).await
                    ));
                }
            } else {
                credits_owed += owed;
                lines.push(format!(
                    "{}: captured {captured} refunded {refunded} reversed {reversed}",
                    purchase.order_id
                ));
            }
        }
        let expected = credits_owed + user.adjust_cents;
        let balance = ledger
            .balance(&user.id)
            .await
            .map_err(|e| format!("[conservation] balance unreadable: {e}"))?;
        if balance.cents() != expected {
            return Err(format!(
                "[conservation] credits of u{u} ({}): PayPal kept {credits_owed}¢ of its credit \
                 purchases ({}), admins and charges moved {}¢, so {expected}¢ are owed; \
                 the ledger holds {balance}{}",
                user.id,
                lines.join("; "),
                user.adjust_cents,
                mismatches(world).await
            ));
        }
    }
    Ok(())
}

/// Every refund and reversal PayPal made has its record, in PayPal's state.
async fn refund_records(world: &World) -> Outcome {
    let ledger = world.api.ledger();
    for u in 0..world.users.len() {
        for refund in world.refunds_of(u) {
            let stored = billing::store::refunds::load(&ledger, &refund.id)
                .await
                .map_err(|e| format!("[record] refund {} unreadable: {e}", refund.id))?;
            let expected = match refund.status.as_str() {
                "COMPLETED" => RefundState::Completed,
                "FAILED" => RefundState::Failed,
                _ => RefundState::Cancelled,
            };
            let movement = if refund.reversal {
                Movement::Reversal
            } else {
                Movement::Refund
            };
            match stored {
                Some(s) if s.state == expected && s.movement == movement => {}
                // A failed or cancelled refund that never took anything
                // may be unknown to us.
                None if expected != RefundState::Completed => {}
                other => {
                    return Err(format!(
                        "[record] {} {} of u{u} is {} at PayPal, recorded as {:?}{}",
                        movement.as_str(),
                        refund.id,
                        refund.status,
                        other.map(|s| (s.state, s.movement)),
                        mismatches(world).await
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Every VirtFusion credit belongs to a purchase or grant of its own user,
/// and a grant intent is at most one credit.
async fn tokens_where_they_belong(world: &World) -> Outcome {
    let ledger = world.api.ledger();
    let mut grants_per_user: std::collections::BTreeMap<String, u32> = Default::default();
    for (reference, credits) in world.credits_by_reference() {
        let owner = if reference.starts_with(billing::admin_tokens::GRANT_PREFIX) {
            if credits.len() > 1 {
                return Err(format!(
                    "[grant] grant {reference} is {} credits at VirtFusion",
                    credits.len()
                ));
            }
            let grant = billing::admin_tokens::load_grant(&ledger, &reference)
                .await
                .map_err(|e| format!("[grant] {reference} unreadable: {e}"))?;
            match grant {
                Some(g) => {
                    *grants_per_user.entry(g.user.to_string()).or_default() += 1;
                    g.user.to_string()
                }
                None => return Err(format!("[grant] credit {reference} has no grant record")),
            }
        } else {
            match world
                .users
                .iter()
                .find(|u| u.purchases.iter().any(|p| p.order_id == reference))
            {
                Some(user) => user.id.to_string(),
                None => {
                    return Err(format!(
                        "[tokens] a VirtFusion credit references {reference:?}, no purchase of ours"
                    ));
                }
            }
        };
        if let Some(stray) = credits.iter().find(|c| c.user != owner) {
            return Err(format!(
                "[tokens] credit {} of {reference} went to user {}, not {owner}",
                stray.id, stray.user
            ));
        }
    }
    for user in &world.users {
        let made = grants_per_user.get(user.id.as_str()).copied().unwrap_or(0);
        if made > user.grant_intents {
            return Err(format!(
                "[grant] {} holds {made} granted credits for {} grant intents",
                user.id, user.grant_intents
            ));
        }
    }
    Ok(())
}

/// The open reconciliation mismatches, for an error's context.
async fn mismatches(world: &World) -> String {
    let admin = world.api.token(super::world::ADMIN, true);
    let listed = world.api.get("/api/admin/reconciliation", &admin).await;
    match listed.body["openMismatches"].as_array() {
        Some(open) if !open.is_empty() => format!(
            " (open reconciliation mismatches: {})",
            open.iter()
                .map(|m| format!("{} {}", m["kind"], m["transactionId"]))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => String::new(),
    }
}
