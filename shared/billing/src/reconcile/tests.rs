use super::*;
use crate::orders::{PaymentStatus, PurchaseKind};
use billing_money::Usd;
use ledger::UserId;
use paypal::TransactionStatus;

fn usd(text: &str) -> Usd {
    billing_money::parse_usd_literal(text).unwrap()
}

fn line(kind: TransactionKind, status: TransactionStatus, amount: &str) -> ReportedTransaction {
    ReportedTransaction {
        id: "CAP1".into(),
        kind,
        event_code: "T0006".into(),
        status,
        reference_id: Some("ORD1".into()),
        reference_type: Some("ODR".into()),
        amount: usd(amount),
        currency: "USD".into(),
        invoice_id: Some("p1".into()),
        custom_field: Some("42".into()),
        initiated_at: None,
    }
}

fn order(status: PaymentStatus, capture: Option<(&str, &str)>) -> OrderRecord {
    OrderRecord {
        order_id: "ORD1".into(),
        user: UserId::parse("42").unwrap(),
        kind: PurchaseKind::Credits,
        amount: usd("10.00"),
        tokens: None,
        purchase_id: "p1".into(),
        status,
        capture_id: capture.map(|(id, _)| id.to_owned()),
        captured_amount: capture.map(|(_, a)| usd(a)),
        refunded_amount: Usd::ZERO,
        refunds_completed: None,
        capture_attempt: 0,
        delivery: None,
        credit_id: None,
        credit_tokens: None,
        sending_tokens: None,
        stray_credits: Vec::new(),
        created_at: "2025-11-25T12:00:00.000Z".into(),
        reversal_id: None,
        review_reason: None,
        delivery_attempts: 0,
    }
}

fn kind(verdict: Verdict) -> Option<MismatchKind> {
    match verdict {
        Verdict::Mismatch(f) => Some(f.kind),
        _ => None,
    }
}

#[test]
fn a_settled_capture_of_the_same_amount_is_in_sync() {
    let txn = line(
        TransactionKind::Payment,
        TransactionStatus::Success,
        "10.00",
    );
    let settled = order(PaymentStatus::Completed, Some(("CAP1", "10.00")));
    assert_eq!(judge_payment(&txn, Some(&settled)), Verdict::InSync);
    // Refunded since (F / V): still the same capture, still in sync.
    let refunded = line(
        TransactionKind::Payment,
        TransactionStatus::Reversed,
        "10.00",
    );
    assert_eq!(judge_payment(&refunded, Some(&settled)), Verdict::InSync);
}

#[test]
fn a_completed_capture_never_settled_is_healed() {
    let txn = line(
        TransactionKind::Payment,
        TransactionStatus::Success,
        "10.00",
    );
    for status in [PaymentStatus::Created, PaymentStatus::CapturePending] {
        assert!(matches!(
            judge_payment(&txn, Some(&order(status, None))),
            Verdict::SettleCapture(_)
        ));
    }
    let pending = line(
        TransactionKind::Payment,
        TransactionStatus::Pending,
        "10.00",
    );
    assert_eq!(
        judge_payment(&pending, Some(&order(PaymentStatus::CapturePending, None))),
        Verdict::Wait
    );
}

#[test]
fn what_cannot_be_healed_is_a_mismatch() {
    let txn = line(
        TransactionKind::Payment,
        TransactionStatus::Success,
        "12.00",
    );
    assert_eq!(
        kind(judge_payment(
            &txn,
            Some(&order(PaymentStatus::Created, None))
        )),
        Some(MismatchKind::AmountDiffers),
        "never credit another amount than ordered"
    );
    assert_eq!(
        kind(judge_payment(
            &txn,
            Some(&order(PaymentStatus::Completed, Some(("CAP1", "10.00"))))
        )),
        Some(MismatchKind::AmountDiffers)
    );
    assert_eq!(
        kind(judge_payment(&txn, None)),
        Some(MismatchKind::UnknownPayment)
    );
    let mut euros = line(
        TransactionKind::Payment,
        TransactionStatus::Success,
        "10.00",
    );
    euros.currency = "EUR".into();
    assert_eq!(
        kind(judge_payment(
            &euros,
            Some(&order(PaymentStatus::Created, None))
        )),
        Some(MismatchKind::CurrencyDiffers)
    );
    let mut other_user = line(
        TransactionKind::Payment,
        TransactionStatus::Success,
        "10.00",
    );
    other_user.custom_field = Some("43".into());
    assert_eq!(
        kind(judge_payment(
            &other_user,
            Some(&order(PaymentStatus::Created, None))
        )),
        Some(MismatchKind::UserDiffers)
    );
    let second = line(
        TransactionKind::Payment,
        TransactionStatus::Success,
        "10.00",
    );
    assert_eq!(
        kind(judge_payment(
            &second,
            Some(&order(PaymentStatus::Completed, Some(("CAP0", "10.00"))))
        )),
        Some(MismatchKind::UnknownPayment)
    );
}

#[test]
fn refunds_are_applied_once_and_compared() {
    let txn = line(TransactionKind::Refund, TransactionStatus::Success, "4.00");
    assert_eq!(judge_refund(&txn, None), Verdict::ApplyRefund);
    let applied = store::RefundSeen {
        amount: Some(usd("4.00")),
        status: None,
        reversal: false,
    };
    assert_eq!(judge_refund(&txn, Some(&applied)), Verdict::InSync);
    let pending_here = store::RefundSeen {
        amount: Some(usd("4.00")),
        status: Some("pending".into()),
        reversal: false,
    };
    assert_eq!(
        judge_refund(&txn, Some(&pending_here)),
        Verdict::ApplyRefund
    );
    let other = store::RefundSeen {
        amount: Some(usd("3.00")),
        status: None,
        reversal: false,
    };
    assert_eq!(
        kind(judge_refund(&txn, Some(&other))),
        Some(MismatchKind::AmountDiffers)
    );
    let pending = line(TransactionKind::Refund, TransactionStatus::Pending, "4.00");
    assert_eq!(judge_refund(&pending, None), Verdict::Wait);
}

fn seen(amount: &str, status: &str, reversal: bool) -> store::RefundSeen {
    store::RefundSeen {
        amount: Some(usd(amount)),
        status: Some(status.into()),
        reversal,
    }
}

#[test]
fn a_refund_paypal_completed_but_held_as_failed_or_cancelled_is_applied() {
    let txn = line(TransactionKind::Refund, TransactionStatus::Success, "4.00");
    for status in ["failed", "cancelled"] {
        assert_eq!(
            judge_refund(&txn, Some(&seen("4.00", status, false))),
            Verdict::ApplyRefund,
            "{status} is not in sync with PayPal's completed refund"
        );
        assert_eq!(
            kind(judge_refund(&txn, Some(&seen("3.00", status, false)))),
            Some(MismatchKind::AmountDiffers),
            "never applied for another amount"
        );
    }
}

#[test]
fn chargebacks_and_their_reversals_are_judged() {
    let mut chargeback = line(
        TransactionKind::Reversal,
        TransactionStatus::Success,
        "10.00",
    );
    chargeback.event_code = "T1201".into();
    assert_eq!(
        judge_refund(&chargeback, None),
        Verdict::ApplyRefund,
        "a chargeback the ledger has no reversal of is applied"
    );
    assert_eq!(
        judge_refund(&chargeback, Some(&seen("10.00", "completed", true))),
        Verdict::InSync
    );
    assert_eq!(
        judge_refund(&chargeback, Some(&seen("10.00", "cancelled", true))),
        Verdict::InSync,
        "taken, then restored (its T1202 line is judged on its own)"
    );

    let mut won = line(
        TransactionKind::ChargebackReversal,
        TransactionStatus::Success,
        "10.00",
    );
    won.event_code = "T1202".into();
    assert_eq!(
        judge_chargeback_reversal(&won, None),
        Verdict::RestoreReversal,
        "remembered until its chargeback is applied"
    );
    assert_eq!(
        judge_chargeback_reversal(&won, Some(&seen("10.00", "completed", true))),
        Verdict::RestoreReversal
    );
    assert_eq!(
        judge_chargeback_reversal(&won, Some(&seen("10.00", "cancelled", true))),
        Verdict::InSync
    );
    assert_eq!(
        kind(judge_chargeback_reversal(
            &won,
            Some(&seen("4.00", "completed", true))
        )),
        Some(MismatchKind::AmountDiffers)
    );
    let pending = line(
        TransactionKind::ChargebackReversal,
        TransactionStatus::Pending,
        "10.00",
    );
    assert_eq!(judge_chargeback_reversal(&pending, None), Verdict::Wait);
}

#[test]
fn mismatch_ids_are_stable_and_path_safe() {
    let id = mismatch_id(MismatchKind::AmountDiffers, "5TY05013RG002845M");
    assert_eq!(id, "5TY05013RG002845M-amount");
    assert_eq!(parse_mismatch_id(&id), Some(id.as_str()));
    assert_eq!(parse_mismatch_id("../x"), None);
    for kind in MismatchKind::ALL {
        assert_eq!(MismatchKind::parse(kind.as_str()), Some(kind));
    }
}
