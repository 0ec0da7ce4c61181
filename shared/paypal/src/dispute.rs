//! The resource of PayPal's `CUSTOMER.DISPUTE.*` events (`resource_type:
//! "dispute"`), read only as far as billing acts on it: which captures the
//! dispute is about and how it ended. A chargeback PayPal reverses is
//! `PAYMENT.CAPTURE.REVERSED`; when the merchant wins (or the buyer cancels)
//! PayPal returns the money and reports it as `CUSTOMER.DISPUTE.RESOLVED`
//! with `dispute_outcome.outcome_code` `RESOLVED_SELLER_FAVOUR` (or
//! `CANCELED_BY_BUYER`).

use serde::Deserialize;

/// A dispute, as far as billing cares. Parsing never fails on shape: an
/// event we cannot read is one we do not act on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dispute {
    pub id: Option<String>,
    /// `OPEN`, `WAITING_FOR_SELLER_RESPONSE`, `UNDER_REVIEW`, `RESOLVED`, ...
    pub status: Option<String>,
    /// `dispute_outcome.outcome_code`.
    pub outcome_code: Option<String>,
    /// `disputed_transactions[].seller_transaction_id`: our capture ids.
    pub capture_ids: Vec<String>,
    /// `dispute_channel`: `EXTERNAL` (a card chargeback through the issuer:
    /// PayPal reverses the payment, `PAYMENT.CAPTURE.REVERSED`) or `INTERNAL`
    /// (a PayPal claim: PayPal holds the money, it reverses only if the
    /// buyer wins).
    pub channel: Option<String>,
}

impl Dispute {
    /// The merchant keeps the money: a reversal it suffered is undone.
    pub fn merchant_won(&self) -> bool {
        self.status.as_deref().is_none_or(|s| s == "RESOLVED")
            && matches!(
                self.outcome_code.as_deref(),
                Some("RESOLVED_SELLER_FAVOUR" | "CANCELED_BY_BUYER")
            )
    }

    /// A card chargeback (`EXTERNAL`; unknown when PayPal does not say):
    /// its money was reversed, so a win returns a reversal even if that
    /// reversal is reported later. A PayPal claim (`INTERNAL`) won took
    /// nothing that a later chargeback could be confused with.
    pub fn is_chargeback(&self) -> bool {
        self.channel.as_deref().is_none_or(|c| c == "EXTERNAL")
    }
}

#[derive(Deserialize)]
struct DisputeWire {
    #[serde(default)]
    dispute_id: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    dispute_outcome: Option<OutcomeWire>,
    #[serde(default)]
    disputed_transactions: Vec<TransactionWire>,
    #[serde(default)]
    dispute_channel: Option<String>,
}

#[derive(Deserialize)]
struct OutcomeWire {
    #[serde(default)]
    outcome_code: Option<String>,
}

#[derive(Deserialize)]
struct TransactionWire {
    #[serde(default)]
    seller_transaction_id: Option<String>,
}

/// Reads a dispute resource (the raw JSON of `resource`); `None` if it is
/// not a JSON object of the expected shape.
pub fn parse_dispute(raw: &str) -> Option<Dispute> {
    let wire: DisputeWire = serde_json::from_str(raw).ok()?;
    Some(Dispute {
        id: wire.dispute_id,
        status: wire.status,
        outcome_code: wire.dispute_outcome.and_then(|o| o.outcome_code),
        capture_ids: wire
            .disputed_transactions
            .into_iter()
            .filter_map(|t| t.seller_transaction_id)
            .filter(|id| !id.is_empty() && id.len() <= 64)
            .collect(),
        channel: wire.dispute_channel.filter(|c| c.len() <= 32),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_won_dispute_names_its_capture() {
        let dispute = parse_dispute(
            r#"{"dispute_id":"PP-D-1","status":"RESOLVED","dispute_outcome":{"outcome_code":"RESOLVED_SELLER_FAVOUR"},
                "disputed_transactions":[{"seller_transaction_id":"CAP1","seller":{"merchant_id":"M"}}],
                "dispute_amount":{"currency_code":"USD","value":"3.00"}}"#,
        )
        .unwrap();
        assert!(dispute.merchant_won());
        assert!(dispute.is_chargeback(), "no channel: taken as a chargeback");
        assert_eq!(dispute.capture_ids, vec!["CAP1".to_owned()]);
        let claim = parse_dispute(r#"{"dispute_channel":"INTERNAL"}"#).unwrap();
        assert!(!claim.is_chargeback());
        let card = parse_dispute(r#"{"dispute_channel":"EXTERNAL"}"#).unwrap();
        assert!(card.is_chargeback());
        let lost = parse_dispute(
            r#"{"status":"RESOLVED","dispute_outcome":{"outcome_code":"RESOLVED_BUYER_FAVOUR"}}"#,
        )
        .unwrap();
        assert!(!lost.merchant_won());
        assert!(parse_dispute("[1]").is_none());
    }
}
