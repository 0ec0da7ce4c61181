//! Tokens at VirtFusion: one room for what each purchase and admin grant
//! owes there, what is there, and what is under review and why.
//!
//! The PayPal side (`checkout`, `refunds`, `webhook`, `reconcile`) calls
//! in; nothing here calls the PayPal side.
//!
//! **What is owed is computed, not chosen.** A token purchase owes
//! `tokens × (1 − completed refunds ÷ captured)` ([`owed`]): pending refunds
//! never count, and a reversal whose dispute was won stops counting. Every
//! move brings "what is there" (the purchase's one VirtFusion credit,
//! `creditId` + `creditTokens` on the order) towards "what is owed":
//!
//! | delivery | meaning | next |
//! | --- | --- | --- |
//! | `pending` | VirtFusion surely does not match what is owed | [`delivery::deliver`] (the job, a capture, a refund) claims it |
//! | `delivering` | one caller holds the claim and talks to VirtFusion | it removes a credit that no longer matches, adds what is owed, releases |
//! | `delivered` | VirtFusion holds exactly what is owed (> 0) | a completed refund or a won dispute sends it back to `pending` |
//! | `refunded` | nothing is owed and nothing is there | a won dispute may make something owed again (`pending`) |
//! | `needs_review` | the outcome of a VirtFusion call is unknown | an admin says what VirtFusion shows ([`review::resolve`]); the system decides |
//!
//! VirtFusion has no partial removal, so a purchase owing less than its
//! credit holds has that credit removed and the owed part added as a new one.
//!
//! Modules: [`delivery`] (the claim and the VirtFusion calls), [`review`]
//! (the job's list, stale claims, admins' settlements), [`refunds`] (what a
//! completed refund or reversal does to a delivery), [`grants`] (admin
//! grants and removals, their own state machine on `VFGRANT#` items).

pub mod delivery;
pub mod grants;
pub(crate) mod refunds;
pub mod review;

use billing_money::{Tokens, Usd};

pub use delivery::deliver;

/// Tokens a purchase of `tokens` for `captured` owes after `completed`
/// refunds (and reversals not won): rounded down to a whole token, never
/// below zero. Token purchases are priced 100 tokens per dollar, so on a
/// purchase the division is exact.
pub fn owed(tokens: Tokens, captured: Usd, completed: Usd) -> Tokens {
    if !captured.is_positive() || completed >= captured {
        return Tokens::new(0);
    }
    if !completed.is_positive() {
        return tokens;
    }
    let kept = captured.as_decimal() - completed.as_decimal();
    let owed = (rust_decimal::Decimal::from(tokens.get()) * kept / captured.as_decimal()).floor();
    Tokens::new(i64::try_from(owed).unwrap_or(0).clamp(0, tokens.get()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(text: &str) -> Usd {
        text.parse().unwrap()
    }

    #[test]
    fn owed_is_the_unrefunded_part() {
        let tokens = Tokens::new(10_000);
        assert_eq!(owed(tokens, usd("100.00"), Usd::ZERO), tokens);
        assert_eq!(
            owed(tokens, usd("100.00"), usd("50.00")),
            Tokens::new(5_000)
        );
        assert_eq!(owed(tokens, usd("100.00"), usd("0.01")), Tokens::new(9_999));
        assert_eq!(owed(tokens, usd("100.00"), usd("100.00")), Tokens::new(0));
        // More than captured (never expected): nothing owed, never negative.
        assert_eq!(owed(tokens, usd("100.00"), usd("150.00")), Tokens::new(0));
    }

    #[test]
    fn owed_rounds_down_on_odd_prices() {
        // 1,000 tokens for $9.99 (an operator's promotion), $3.33 refunded:
        // 666.666… owed → 666 (never more than paid for).
        assert_eq!(
            owed(Tokens::new(1_000), usd("9.99"), usd("3.33")),
            Tokens::new(666)
        );
    }

    /// The PayPal side calls the token room, never the reverse (no import
    /// circle runs through `checkout`).
    #[test]
    fn the_token_room_never_calls_the_paypal_side() {
        fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    sources(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        let room = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/tokens");
        sources(&room, &mut files);
        assert!(files.len() >= 5, "{files:?}");
        let paypal_side = [
            "checkout",
            "refunds",
            "webhook",
            "after_webhook",
            "reconcile",
        ]
        .map(|module| format!("crate::{module}"));
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for side in &paypal_side {
                    assert!(!line.contains(side.as_str()), "{}: {line}", file.display());
                }
            }
        }
    }

    #[test]
    fn nothing_captured_owes_nothing() {
        assert_eq!(owed(Tokens::new(100), Usd::ZERO, Usd::ZERO), Tokens::new(0));
    }
}
