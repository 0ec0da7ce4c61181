//! Everything the local stack and the tests need that is not production code:
//! reading `template.yaml` (tables and routes, declared once), creating the
//! tables in DynamoDB Local, the VirtFusion stand-in and the local gateway.

pub mod cors;
pub mod faultproxy;
pub mod gateway;
pub mod iam;
mod listener;
pub mod outbox;
pub mod paypal;
pub mod streams;
pub mod tables;
pub mod template;
pub mod virtfusion;
pub mod webpage;

/// The stand-in's PayPal behaviours and webhook signing, at their former paths.
pub use paypal::{behaviours as paypal_behaviours, signing as paypal_signing};

use std::path::PathBuf;

/// `template.yaml` at the workspace root (override with `BILLING_TEMPLATE`).
pub fn template_path() -> PathBuf {
    if let Ok(path) = std::env::var("BILLING_TEMPLATE") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml")
}
