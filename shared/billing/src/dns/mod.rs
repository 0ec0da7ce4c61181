//! DNS plans paid with custom credits: the plan catalogue (and its admin
//! management), the atomic purchase, plan changes and cancellation. The
//! subscriptions themselves are the engine's ([`crate::subscriptions`]);
//! this module holds the DNS product's rules.
//!
//! | item | pk | sk | index (`gsi1`, sparse, keys only) |
//! | --- | --- | --- | --- |
//! | plan | `PLAN#<id>` | `PLAN` | `PLAN` / `<id>` (listing) |
//! | subscription | `USER#<id>` | `DNSSUB` | `RENEWAL` / `<due or retry time>#<user>` while the job has work for it |
//!
//! Every money movement goes through `Ledger::apply`: a purchase is the debit
//! plus the subscription put (conditioned on the user having no subscription
//! that blocks it) plus a check of the plan; an upgrade is the prorated debit
//! plus the subscription update (conditioned on the period and plan read)
//! plus the same check of the new plan's price.

pub mod change;
pub mod plans;
pub mod purchase;

/// The engine's date arithmetic and renewal job, under their former paths.
pub use crate::subscriptions::{dates, renewal};

pub use crate::subscriptions::renewal::{Deadline, RenewalOptions, RenewalSummary, run_renewals};
pub use crate::subscriptions::{Subscription, SubscriptionStatus};
pub use change::{PlanChange, change_plan};
pub use plans::{
    NewPlan, Plan, PlanId, PlanPatch, create_plan, default_plans, get_plan, list_active_plans,
    list_all_plans, seed_default_plans, update_plan,
};
pub use purchase::{
    PreparedPurchase, Purchased, apply_purchase, cancel, get_subscription, prepare_purchase,
    purchase, purchase_refusal, start_subscription,
};
