//! The business rules of both money systems, written once and used by every
//! function: what a balance is, how history merges, what an admin may change.

pub mod admin;
pub mod admin_tokens;
pub mod after_webhook;
pub mod balance;
pub mod checkout;
pub mod deliveries;
pub mod dns;
mod error;
pub mod events;
pub mod history;
pub mod idempotency;
pub mod orders;
pub mod purchases;
mod reason;
pub mod reconcile;
mod refund_events;
pub mod refunds;
pub mod services;
pub mod store;
pub mod subscriptions;
pub mod webhook;

pub use error::BillingError;
pub use reason::Reason;
