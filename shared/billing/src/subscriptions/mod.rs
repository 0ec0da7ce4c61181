//! One subscription engine for every product (DESIGN.md "One subscription
//! engine"): DNS plans and platform services (dedicated servers, add-ons)
//! are two [`Product`]s of one [`Subscription`] type, stored the same way,
//! renewed by one job with one set of rules:
//!
//! - paid one period at a time (a month or a year, anchored on the start
//!   day: month ends clamp, Feb 29 renews on Feb 28 in common years);
//! - renewed once per period however often or concurrently the job runs
//!   (the once-key `renewal/<subId>#<period>` in the same transaction);
//! - a short balance makes it `past_due`, retried for 7 days, then `expired`;
//! - cancelled ones stay usable to the end of the paid period, then expire;
//! - found through a sparse index of what is due, so a run reads the due
//!   subscriptions only; the index is sharded by user (`RENEWAL#0..15`) so
//!   that workers renew the shards in parallel, each within one index
//!   partition's write limit.
//!
//! Rules that belong to one product stay with it: "one active DNS plan per
//! user" is the DNS product's key (`DNSSUB`), plan prices and plan changes
//! live in [`crate::dns`]; "one active subscription per (user, serviceType,
//! serviceId)" is the service product's key, in [`crate::services`].
//!
//! `model` holds the types and the pure rules, `store` the items and the
//! single-item writes, `renewal` the job, `fanout` the message that spreads
//! a run over workers (one per index partition), `dates` the calendar arithmetic.

pub mod dates;
pub mod fanout;
pub mod model;
pub mod renewal;
pub mod store;

pub use dates::Interval;
pub use model::{
    Action, DnsTerms, Product, ServiceTerms, Subscription, SubscriptionStatus, decide, prorate,
};
pub use renewal::{
    Deadline, RenewalOptions, RenewalSummary, run_partition, run_partitions, run_renewals,
};
pub use store::{RENEWAL_SHARDS, RenewalPartition, SubKey, cancel, get, get_by_id, list_services};
