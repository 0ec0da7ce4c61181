//! Charge items: `pk=CHARGE#<chargeId>`, `sk=CHARGE` — the user, the
//! charged amount, how much of it was refunded, the service it paid for.

use crate::BillingError;
use crate::store::attrs::{corrupt, get_s, get_usd, s, usd};
use aws_sdk_dynamodb::types::{
    Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use billing_money::Usd;
use ledger::{AttrMap, Ledger, LedgerError, ServiceType, UserId};

pub const CHARGE_SK: &str = "CHARGE";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChargeStatus {
    Charged,
    PartiallyRefunded,
    Refunded,
}

impl ChargeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ChargeStatus::Charged => "charged",
            ChargeStatus::PartiallyRefunded => "partially_refunded",
            ChargeStatus::Refunded => "refunded",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    pub id: String,
    pub user: UserId,
    pub amount: Usd,
    pub refunded: Usd,
    pub service_type: ServiceType,
    pub service_id: String,
    pub description: String,
    pub created_at: String,
    /// The `sub` of the service or admin that charged.
    pub charged_by: String,
}

pub fn charge_pk(id: &str) -> String {
    format!("CHARGE#{id}")
}

impl Charge {
    pub fn status(&self) -> ChargeStatus {
        if self.refunded.is_zero() {
            ChargeStatus::Charged
        } else if self.refunded < self.amount {
            ChargeStatus::PartiallyRefunded
        } else {
            ChargeStatus::Refunded
        }
    }

    /// What is left to refund.
    pub fn refundable(&self) -> Usd {
        self.amount.checked_sub(self.refunded).unwrap_or(Usd::ZERO)
    }

    pub fn to_item(&self) -> AttrMap {
        AttrMap::from([
            ("pk".to_owned(), s(charge_pk(&self.id))),
            ("sk".to_owned(), s(CHARGE_SK)),
            ("id".to_owned(), s(&self.id)),
            ("user".to_owned(), s(self.user.as_str())),
            ("amount".to_owned(), usd(self.amount)),
            ("refundedAmount".to_owned(), usd(self.refunded)),
            ("serviceType".to_owned(), s(self.service_type.as_str())),
            ("serviceId".to_owned(), s(&self.service_id)),
            ("description".to_owned(), s(&self.description)),
            ("createdAt".to_owned(), s(&self.created_at)),
            ("chargedBy".to_owned(), s(&self.charged_by)),
        ])
    }

    pub fn from_item(item: &AttrMap) -> Result<Charge, BillingError> {
        Ok(Charge {
            id: get_s(item, "id")?.to_owned(),
            user: UserId::parse(get_s(item, "user")?)
                .map_err(|_| corrupt(item, "user is not a user id"))?,
            amount: get_usd(item, "amount")?,
            refunded: get_usd(item, "refundedAmount")?,
            service_type: ServiceType::parse(get_s(item, "serviceType")?)
                .ok_or_else(|| corrupt(item, "serviceType is not a service type"))?,
            service_id: get_s(item, "serviceId")?.to_owned(),
            description: get_s(item, "description")?.to_owned(),
            created_at: get_s(item, "createdAt")?.to_owned(),
            charged_by: get_s(item, "chargedBy")?.to_owned(),
        })
    }

    /// The new charge as a transaction item: put only if its id is new.
    pub fn create_item(&self, table: &str) -> Result<TransactWriteItem, BillingError> {
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(self.to_item()))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| corrupt(&self.to_item(), e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Raises `refundedAmount` from what was read to `refunded`: fails if
    /// another refund moved first (the caller re-reads).
    pub fn refund_item(
        &self,
        table: &str,
        refunded: Usd,
    ) -> Result<TransactWriteItem, BillingError> {
        let update = Update::builder()
            .table_name(table)
            .key("pk", s(charge_pk(&self.id)))
            .key("sk", s(CHARGE_SK))
            .update_expression("SET refundedAmount = :new, updatedAt = :now")
            .condition_expression("refundedAmount = :seen AND amount >= :new")
            .expression_attribute_values(":new", usd(refunded))
            .expression_attribute_values(":seen", usd(self.refunded))
            .expression_attribute_values(":now", s(ledger::now_rfc3339()))
            .build()
            .map_err(|e| corrupt(&self.to_item(), e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

/// A charge by id (consistent read); `None` when unknown.
pub async fn get_charge(ledger: &Ledger, id: &str) -> Result<Option<Charge>, BillingError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Ok(None);
    }
    let out = ledger
        .client()
        .get_item()
        .table_name(ledger.table())
        .key("pk", s(charge_pk(id)))
        .key("sk", s(CHARGE_SK))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| LedgerError::dynamo("GetItem", &e))?;
    out.item.as_ref().map(Charge::from_item).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_round_trip_and_know_their_status() {
        let usd = |t: &str| billing_money::parse_usd_literal(t).unwrap();
        let mut charge = Charge {
            id: "ch_1".into(),
            user: UserId::parse("1001").unwrap(),
            amount: usd("49.00"),
            refunded: Usd::ZERO,
            service_type: ServiceType::parse("dedicated_server").unwrap(),
            service_id: "srv-42".into(),
            description: "DS-1".into(),
            created_at: "2025-01-01T00:00:00.000Z".into(),
            charged_by: "svc".into(),
        };
        assert_eq!(Charge::from_item(&charge.to_item()).unwrap(), charge);
        assert_eq!(charge.status(), ChargeStatus::Charged);
        charge.refunded = usd("10.00");
        assert_eq!(charge.status(), ChargeStatus::PartiallyRefunded);
        assert_eq!(charge.refundable(), usd("39.00"));
        charge.refunded = usd("49.00");
        assert_eq!(charge.status(), ChargeStatus::Refunded);
    }
}
