//! The events of the after-purchase movements (API.md "Events"):
//! `refund.completed`, `refund.failed`, `payment.reversed` and
//! `payment.reversal_cancelled`. [`crate::refunds`] adds each to the very
//! transaction of its transition, so a movement and its event commit
//! together; a repeated report finds the transition made and writes nothing,
//! so it publishes nothing more.
//!
//! The key is the refund record and the state it reached
//! (`REFUND#<id>#<state>`): each record reaches each state at most once.

use crate::events::{DetailType, Event};
use crate::orders::OrderRecord;
use crate::store::refunds::{self as store, Movement, RefundState};
use billing_money::Usd;

/// One movement of an order's money reaching a state.
pub(crate) struct Reached<'a> {
    pub order: &'a OrderRecord,
    pub refund_id: &'a str,
    /// This refund's (or reversal's) amount.
    pub amount: Usd,
    pub movement: Movement,
    pub to: RefundState,
    /// The order's `refundedAmount` once the transition is made.
    pub refunded_total: Usd,
}

impl Reached<'_> {
    /// The event of this transition, if it reports one: a refund completed,
    /// failed or cancelled, a reversal completed. A pending refund reports
    /// nothing yet (its outcome will); a reversal reported failed or
    /// cancelled before it took anything moved no money.
    pub(crate) fn event(&self) -> Option<Event> {
        let detail_type = match (self.movement, self.to) {
            (Movement::Refund, RefundState::Completed) => DetailType::RefundCompleted,
            (Movement::Refund, RefundState::Failed | RefundState::Cancelled) => {
                DetailType::RefundFailed
            }
            (Movement::Reversal, RefundState::Completed) => DetailType::PaymentReversed,
            _ => return None,
        };
        Some(self.build(detail_type))
    }

    /// `payment.reversal_cancelled`: the dispute was won, the money came back.
    pub(crate) fn reversal_cancelled(&self) -> Event {
        self.build(DetailType::PaymentReversalCancelled)
    }

    fn build(&self, detail_type: DetailType) -> Event {
        let key = format!("{}#{}", store::pk(self.refund_id), self.to.as_str());
        let id_field = match self.movement {
            Movement::Refund => "refundId",
            Movement::Reversal => "reversalId",
        };
        let mut event = Event::new(detail_type, &key, &self.order.user)
            .text(id_field, self.refund_id)
            .text("orderId", &self.order.order_id)
            .text("kind", self.order.kind.as_str())
            .text("status", self.to.as_str())
            .usd("amount", self.amount)
            .usd("refundedAmount", self.refunded_total)
            .text("occurredAt", ledger::now_rfc3339());
        if let Some(captured) = self.order.captured_amount {
            event = event.usd("capturedAmount", captured);
        }
        if self.order.kind == crate::orders::PurchaseKind::Tokens {
            event = event.value("tokens", self.amount.to_tokens().get());
        }
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::{PaymentStatus, PurchaseKind};
    use ledger::UserId;

    fn order(kind: PurchaseKind) -> OrderRecord {
        OrderRecord {
            order_id: "O-1".into(),
            user: UserId::parse("42").unwrap(),
            kind,
            amount: "10.00".parse().unwrap(),
            tokens: None,
            purchase_id: "p".into(),
            status: PaymentStatus::Completed,
            capture_id: Some("C-1".into()),
            captured_amount: Some("10.00".parse().unwrap()),
            refunded_amount: Usd::default(),
            refunds_completed: None,
            capture_attempt: 0,
            delivery: None,
            credit_id: None,
            credit_tokens: None,
            sending_tokens: None,
            stray_credits: Vec::new(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            reversal_id: None,
            review_reason: None,
            delivery_attempts: 0,
        }
    }

    fn reached(order: &OrderRecord, movement: Movement, to: RefundState) -> Reached<'_> {
        Reached {
            order,
            refund_id: "R-1",
            amount: "4.00".parse().unwrap(),
            movement,
            to,
            refunded_total: "4.00".parse().unwrap(),
        }
    }

    #[test]
    fn each_outcome_names_its_type_and_pending_reports_nothing() {
        let credits = order(PurchaseKind::Credits);
        let of = |m, s| reached(&credits, m, s).event().map(|e| e.detail_type());
        assert_eq!(
            of(Movement::Refund, RefundState::Completed),
            Some(DetailType::RefundCompleted)
        );
        assert_eq!(
            of(Movement::Refund, RefundState::Failed),
            Some(DetailType::RefundFailed)
        );
        assert_eq!(
            of(Movement::Refund, RefundState::Cancelled),
            Some(DetailType::RefundFailed)
        );
        assert_eq!(
            of(Movement::Reversal, RefundState::Completed),
            Some(DetailType::PaymentReversed)
        );
        assert_eq!(of(Movement::Refund, RefundState::Pending), None);
        assert_eq!(of(Movement::Reversal, RefundState::Cancelled), None);
    }

    #[test]
    fn the_detail_carries_ids_and_amounts_as_strings() {
        let tokens = order(PurchaseKind::Tokens);
        let event = reached(&tokens, Movement::Reversal, RefundState::Completed)
            .event()
            .unwrap();
        let detail = event.detail();
        assert_eq!(detail["userId"], "42");
        assert_eq!(detail["reversalId"], "R-1");
        assert_eq!(detail["orderId"], "O-1");
        assert_eq!(detail["amount"], "4.00");
        assert_eq!(detail["refundedAmount"], "4.00");
        assert_eq!(detail["capturedAmount"], "10.00");
        assert_eq!(detail["tokens"], 400);
        // The same transition always has the same id; another state another.
        let again = reached(&tokens, Movement::Reversal, RefundState::Completed)
            .event()
            .unwrap();
        assert_eq!(event.event_id(), again.event_id());
        let cancelled = reached(&tokens, Movement::Reversal, RefundState::Cancelled);
        assert_ne!(cancelled.reversal_cancelled().event_id(), event.event_id());
    }
}
