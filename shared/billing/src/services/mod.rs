//! Platform services paying with custom credits (API.md "Platform
//! services: charges and subscriptions"): one-off charges with partial
//! refunds ([`charges`]), and service subscriptions ([`subscriptions`]) —
//! the second product of the subscription engine
//! ([`crate::subscriptions`]). Called server to server by the operator's
//! services (role `service`) or by admins.

mod charge_store;
pub mod charges;
pub mod subscriptions;

use crate::BillingError;
use billing_money::Usd;
use ledger::{DNS_PLAN_SERVICE_TYPE, ServiceType, UserId};

pub use charge_store::{Charge, ChargeStatus};

/// Largest charge, refund or price: $100,000.00.
pub const MAX_SERVICE_CENTS: i64 = 10_000_000;

/// Amounts and prices: $0.01 – $100,000.00 (two places at most: `Usd`).
pub fn service_amount(amount: Usd, field: &str) -> Result<Usd, BillingError> {
    let max = Usd::from_cents(MAX_SERVICE_CENTS)
        .map_err(|_| BillingError::InvalidInput(field.to_owned()))?;
    if !amount.is_positive() || amount > max {
        return Err(BillingError::InvalidInput(format!(
            "{field} must be at least 0.01 and at most {max}"
        )));
    }
    Ok(amount)
}

/// `serviceType`: `[a-z][a-z0-9_]{0,31}`; `dns_plan` is the DNS product's
/// own (bought through the DNS routes), so a service may not use it.
pub fn service_type(raw: &str) -> Result<ServiceType, BillingError> {
    let parsed = ServiceType::parse(raw).ok_or_else(|| {
        BillingError::InvalidInput("serviceType must match [a-z][a-z0-9_]{0,31}".into())
    })?;
    if parsed.as_str() == DNS_PLAN_SERVICE_TYPE {
        return Err(BillingError::InvalidInput(
            "serviceType dns_plan is reserved for the DNS plan routes".into(),
        ));
    }
    Ok(parsed)
}

/// `serviceId`: 1–128 printable ASCII characters.
pub fn service_id(raw: &str) -> Result<String, BillingError> {
    let ok = !raw.is_empty() && raw.len() <= 128 && raw.bytes().all(|b| (0x20..=0x7e).contains(&b));
    if !ok {
        return Err(BillingError::InvalidInput(
            "serviceId must be 1-128 printable ASCII characters".into(),
        ));
    }
    Ok(raw.to_owned())
}

/// `description`: 1–200 characters, not blank, no control characters.
pub fn description(raw: &str) -> Result<String, BillingError> {
    let count = raw.chars().count();
    if raw.trim().is_empty() || count > 200 || raw.chars().any(char::is_control) {
        return Err(BillingError::InvalidInput(
            "description must be 1-200 characters".into(),
        ));
    }
    Ok(raw.to_owned())
}

/// `userId` of the user a service charges.
pub fn target_user(raw: &str) -> Result<UserId, BillingError> {
    UserId::parse(raw).map_err(|e| BillingError::InvalidInput(format!("userId: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_validated() {
        let usd = |t: &str| billing_money::parse_usd_literal(t).unwrap();
        assert!(service_amount(usd("0.01"), "amount").is_ok());
        assert!(service_amount(usd("100000.00"), "amount").is_ok());
        assert!(service_amount(usd("100000.01"), "amount").is_err());
        assert!(service_amount(usd("0"), "amount").is_err());
        assert!(service_amount(usd("-1"), "amount").is_err());
        assert!(service_type("dedicated_server").is_ok());
        assert!(service_type("dns_plan").is_err());
        assert!(service_type("Dedicated").is_err());
        assert!(service_id("srv-42").is_ok());
        assert!(service_id("").is_err());
        assert!(service_id(&"x".repeat(129)).is_err());
        assert!(service_id("caf\u{e9}").is_err());
        assert!(description("DS-1, December").is_ok());
        assert!(description("  ").is_err());
        assert!(description(&"d".repeat(201)).is_err());
        assert!(target_user("1001").is_ok());
        assert!(target_user("a b").is_err());
    }
}
