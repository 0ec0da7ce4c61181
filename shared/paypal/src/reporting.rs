//! Transaction Search (`GET /v1/reporting/transactions`): PayPal's own
//! record of the money it moved, read page by page for reconciliation.
//!
//! We ask for `fields=transaction_info` only: it holds everything the
//! comparison needs (ids, event code, status, amount, `invoice_id`,
//! `custom_field`) and keeps a 500-line page far below the client's body
//! limit, and free of payer data (names, emails, addresses).

use crate::{PayPalClient, PayPalError, expect_success};
use billing_money::Usd;
use reqwest::Method;
use serde::Deserialize;
use serde_json::value::RawValue;

/// PayPal's largest page.
pub const MAX_PAGE_SIZE: u32 = 500;

/// One page request. Dates are RFC 3339 with seconds (`2025-11-25T12:00:00Z`),
/// at most 31 days apart; `page` counts from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionQuery {
    pub start_date: String,
    pub end_date: String,
    pub page: u32,
    pub page_size: u32,
}

/// What a line is, from its `transaction_event_code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionKind {
    /// `T00xx`: money received (a capture).
    Payment,
    /// `T1107`: a refund the merchant made.
    Refund,
    /// `T1106` (payment reversal) or `T1201` (chargeback): PayPal took it back.
    Reversal,
    /// `T1202` (chargeback reversal): the merchant won the dispute and PayPal
    /// returned a chargeback's money (`paypal_reference_id`: the capture).
    ChargebackReversal,
    /// Anything else (fees, transfers, holds, other dispute outcomes...).
    Other,
}

impl TransactionKind {
    pub fn from_event_code(code: &str) -> TransactionKind {
        match code {
            "T1107" => TransactionKind::Refund,
            "T1106" | "T1201" => TransactionKind::Reversal,
            "T1202" => TransactionKind::ChargebackReversal,
            code if code.starts_with("T00") => TransactionKind::Payment,
            _ => TransactionKind::Other,
        }
    }
}

/// `transaction_status`: `S` success, `P` pending, `D` denied, `F` partially
/// refunded, `V` reversed or refunded in full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionStatus {
    Success,
    Pending,
    Denied,
    PartiallyRefunded,
    Reversed,
    Other,
}

impl TransactionStatus {
    fn parse(letter: Option<&str>) -> TransactionStatus {
        match letter {
            Some("S") => TransactionStatus::Success,
            Some("P") => TransactionStatus::Pending,
            Some("D") => TransactionStatus::Denied,
            Some("F") => TransactionStatus::PartiallyRefunded,
            Some("V") => TransactionStatus::Reversed,
            _ => TransactionStatus::Other,
        }
    }

    /// The money moved (and may have been refunded since): `S`, `F`, `V`.
    pub fn is_done(self) -> bool {
        matches!(
            self,
            TransactionStatus::Success
                | TransactionStatus::PartiallyRefunded
                | TransactionStatus::Reversed
        )
    }
}

/// One line of PayPal's report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportedTransaction {
    /// The capture, refund or reversal id (our exactly-once keys).
    pub id: String,
    pub kind: TransactionKind,
    pub event_code: String,
    pub status: TransactionStatus,
    /// Payments: the order (`ODR`); refunds and reversals: the capture (`TXN`).
    pub reference_id: Option<String>,
    pub reference_type: Option<String>,
    /// The absolute amount (refunds are reported negative).
    pub amount: Usd,
    pub currency: String,
    /// Our purchase id.
    pub invoice_id: Option<String>,
    /// Our user id.
    pub custom_field: Option<String>,
    pub initiated_at: Option<String>,
}

/// One page of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionPage {
    pub transactions: Vec<ReportedTransaction>,
    pub page: u32,
    pub total_pages: u32,
    pub total_items: u64,
    /// PayPal's data is complete up to this time (RFC 3339).
    pub last_refreshed: Option<String>,
    /// Lines that could not be read (kept out of `transactions`, counted).
    pub unreadable: u32,
}

#[derive(Deserialize)]
struct PageWire {
    #[serde(default)]
    transaction_details: Vec<DetailWire>,
    #[serde(default)]
    page: Option<u32>,
    #[serde(default)]
    total_pages: Option<u32>,
    #[serde(default)]
    total_items: Option<u64>,
    #[serde(default)]
    last_refreshed_datetime: Option<String>,
}

#[derive(Deserialize)]
struct DetailWire {
    #[serde(default)]
    transaction_info: Option<InfoWire>,
}

#[derive(Deserialize)]
struct InfoWire {
    #[serde(default)]
    transaction_id: Option<String>,
    #[serde(default)]
    paypal_reference_id: Option<String>,
    #[serde(default)]
    paypal_reference_id_type: Option<String>,
    #[serde(default)]
    transaction_event_code: Option<String>,
    #[serde(default)]
    transaction_initiation_date: Option<String>,
    #[serde(default)]
    transaction_amount: Option<AmountWire>,
    #[serde(default)]
    transaction_status: Option<String>,
    #[serde(default)]
    invoice_id: Option<String>,
    #[serde(default)]
    custom_field: Option<String>,
}

#[derive(Deserialize)]
struct AmountWire {
    currency_code: String,
    value: Box<RawValue>,
}

fn short(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty() && v.len() <= 127)
}

fn line(info: InfoWire) -> Option<ReportedTransaction> {
    let id = short(info.transaction_id)?;
    let event_code = info.transaction_event_code.filter(|c| c.len() <= 8)?;
    let amount = info.transaction_amount?;
    let value = Usd::from_json_literal(amount.value.get()).ok()?;
    let currency = amount.currency_code;
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    Some(ReportedTransaction {
        kind: TransactionKind::from_event_code(&event_code),
        status: TransactionStatus::parse(info.transaction_status.as_deref()),
        id,
        event_code,
        reference_id: short(info.paypal_reference_id),
        reference_type: short(info.paypal_reference_id_type),
        amount: value.abs(),
        currency,
        invoice_id: short(info.invoice_id),
        custom_field: short(info.custom_field),
        initiated_at: short(info.transaction_initiation_date),
    })
}

pub(crate) fn parse_page(body: &[u8]) -> Result<TransactionPage, PayPalError> {
    let wire: PageWire = serde_json::from_slice(body).map_err(|_| {
        PayPalError::BadResponse("transaction search is not the expected JSON".into())
    })?;
    let mut unreadable = 0;
    let mut transactions = Vec::with_capacity(wire.transaction_details.len());
    for detail in wire.transaction_details {
        match detail.transaction_info.and_then(line) {
            Some(transaction) => transactions.push(transaction),
            None => unreadable += 1,
        }
    }
    Ok(TransactionPage {
        transactions,
        page: wire.page.unwrap_or(1),
        total_pages: wire.total_pages.unwrap_or(1),
        total_items: wire.total_items.unwrap_or(0),
        last_refreshed: wire.last_refreshed_datetime,
        unreadable,
    })
}

impl PayPalClient {
    /// One page of `GET /v1/reporting/transactions` (`fields=transaction_info`).
    /// Read-only, so a caller may simply retry it.
    pub async fn search_transactions(
        &self,
        query: &TransactionQuery,
    ) -> Result<TransactionPage, PayPalError> {
        if !(1..=MAX_PAGE_SIZE).contains(&query.page_size) || query.page == 0 {
            return Err(PayPalError::Invalid(
                "page_size must be 1 to 500 and page at least 1".into(),
            ));
        }
        let mut url = reqwest::Url::parse(&format!("{}/v1/reporting/transactions", self.base))
            .map_err(|_| PayPalError::Invalid("base URL".into()))?;
        url.query_pairs_mut()
            .append_pair("start_date", &query.start_date)
            .append_pair("end_date", &query.end_date)
            .append_pair("fields", "transaction_info")
            .append_pair("page_size", &query.page_size.to_string())
            .append_pair("page", &query.page.to_string());
        let (status, body) = self
            .call("search_transactions", Method::GET, url.as_str(), None, None)
            .await?;
        expect_success("search_transactions", status, &body)?;
        parse_page(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_read_exactly() {
        let body = br#"{"transaction_details": [
            {"transaction_info": {"transaction_id": "C1", "paypal_reference_id": "O1",
              "paypal_reference_id_type": "ODR", "transaction_event_code": "T0006",
              "transaction_amount": {"currency_code": "USD", "value": "10.05"},
              "transaction_status": "S", "invoice_id": "p1", "custom_field": "42"}},
            {"transaction_info": {"transaction_id": "R1", "paypal_reference_id": "C1",
              "transaction_event_code": "T1107",
              "transaction_amount": {"currency_code": "USD", "value": "-2.50"},
              "transaction_status": "P"}},
            {"transaction_info": {"transaction_id": "X", "transaction_event_code": "T1106",
              "transaction_amount": {"currency_code": "USD", "value": 1e3}}},
            {"payer_info": {}}
        ], "page": 2, "total_pages": 3, "total_items": 1203,
           "last_refreshed_datetime": "2025-11-25T09:00:00Z"}"#;
        let page = parse_page(body).unwrap();
        assert_eq!(page.transactions.len(), 2);
        assert_eq!(page.unreadable, 2, "float amounts and lines without info");
        let capture = &page.transactions[0];
        assert_eq!(capture.kind, TransactionKind::Payment);
        assert_eq!(capture.amount.to_string(), "10.05");
        assert_eq!(capture.reference_id.as_deref(), Some("O1"));
        let refund = &page.transactions[1];
        assert_eq!(refund.kind, TransactionKind::Refund);
        assert_eq!(refund.status, TransactionStatus::Pending);
        assert_eq!(refund.amount.to_string(), "2.50");
        assert_eq!((page.page, page.total_pages), (2, 3));
    }

    #[test]
    fn event_codes_classify_lines() {
        assert_eq!(
            TransactionKind::from_event_code("T0006"),
            TransactionKind::Payment
        );
        assert_eq!(
            TransactionKind::from_event_code("T1106"),
            TransactionKind::Reversal
        );
        assert_eq!(
            TransactionKind::from_event_code("T1201"),
            TransactionKind::Reversal
        );
        assert_eq!(
            TransactionKind::from_event_code("T1202"),
            TransactionKind::ChargebackReversal,
            "a won chargeback dispute is not \"other\""
        );
        assert_eq!(
            TransactionKind::from_event_code("T0400"),
            TransactionKind::Other
        );
    }
}
