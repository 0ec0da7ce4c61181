use crate::BillingError;

/// Why an admin changed a balance: required, non-blank, at most 500 characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    pub const MAX_CHARS: usize = 500;

    pub fn parse(raw: &str) -> Result<Reason, BillingError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(BillingError::InvalidInput("reason is required".into()));
        }
        if trimmed.chars().count() > Reason::MAX_CHARS {
            return Err(BillingError::InvalidInput(format!(
                "reason must be at most {} characters",
                Reason::MAX_CHARS
            )));
        }
        if trimmed.chars().any(|c| c.is_control()) {
            return Err(BillingError::InvalidInput(
                "reason must not contain control characters".into(),
            ));
        }
        Ok(Reason(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_and_oversized_reasons_are_refused() {
        assert!(Reason::parse("").is_err());
        assert!(Reason::parse("   \t ").is_err());
        assert!(Reason::parse(&"x".repeat(501)).is_err());
        assert!(Reason::parse("bad\u{0}byte").is_err());
        assert_eq!(Reason::parse("  goodwill ").unwrap().as_str(), "goodwill");
    }
}
