//! DNS plans paid with custom credits: the plan catalogue, the atomic
//! purchase, cancellation, and the monthly renewal job's rules.
//!
//! | item | pk | sk | index (`gsi1`, sparse, keys only) |
//! | --- | --- | --- | --- |
//! | plan | `PLAN#<id>` | `PLAN` | `PLAN` / `<id>` (listing) |
//! | subscription | `USER#<id>` | `DNSSUB` | `RENEWAL` / `<due or retry time>#<user>` while the job has work for it |
//!
//! Every money movement goes through `Ledger::apply`: a purchase is the debit
//! plus the subscription put (conditioned on the user having no subscription
//! that blocks it) plus a check of the plan; a renewal is the debit plus the
//! subscription update (conditioned on it still being due for that period)
//! plus the once-marker `renewal/<subId>#<period>`.

mod attrs;
pub mod dates;
pub mod plans;
pub mod renewal;
pub mod subscription;

pub use plans::{Plan, PlanId, default_plans, get_plan, list_active_plans, seed_default_plans};
pub use renewal::{Deadline, RenewalOptions, RenewalSummary, run_renewals};
pub use subscription::{
    PreparedPurchase, Purchased, Subscription, SubscriptionStatus, apply_purchase, cancel,
    get_subscription, prepare_purchase, purchase, purchase_refusal,
};
