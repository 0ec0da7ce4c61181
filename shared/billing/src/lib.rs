//! The business rules of both money systems, written once and used by every
//! function: what a balance is, how history merges, what an admin may change.

pub mod admin;
pub mod after_webhook;
pub mod balance;
pub mod checkout;
pub mod dns;
mod error;
pub mod events;
pub mod history;
pub mod idempotency;
pub mod limits;
pub mod orders;
pub mod purchases;
mod reason;
pub mod reconcile;
mod refund_events;
pub mod refunds;
pub mod services;
pub mod store;
pub mod subscriptions;
pub mod tokens;
pub mod webhook;

pub use error::BillingError;
pub use reason::Reason;
/// Admin VirtFusion grants and removals (the token room's [`tokens::grants`]).
pub use tokens::grants as admin_tokens;
/// Token deliveries the job retries and admins settle ([`tokens::review`]).
pub use tokens::review as deliveries;
