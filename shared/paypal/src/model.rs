//! PayPal's JSON, read into our types in one place. Amounts are read from
//! their literal text into [`Usd`] (never through a float); anything that is
//! not what the Orders v2 / Payments v2 APIs promise is a
//! [`PayPalError::BadResponse`].

use crate::PayPalError;
use billing_money::Usd;
use serde::Deserialize;
use serde_json::value::RawValue;

/// An order's status (`CREATED`, `APPROVED`, `COMPLETED`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderStatus {
    Created,
    Saved,
    Approved,
    Voided,
    Completed,
    PayerActionRequired,
    /// A status this client does not know; treat as "not paid".
    Other(String),
}

impl OrderStatus {
    fn parse(text: &str) -> OrderStatus {
        match text {
            "CREATED" => OrderStatus::Created,
            "SAVED" => OrderStatus::Saved,
            "APPROVED" => OrderStatus::Approved,
            "VOIDED" => OrderStatus::Voided,
            "COMPLETED" => OrderStatus::Completed,
            "PAYER_ACTION_REQUIRED" => OrderStatus::PayerActionRequired,
            other => OrderStatus::Other(bounded(other)),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            OrderStatus::Created => "CREATED",
            OrderStatus::Saved => "SAVED",
            OrderStatus::Approved => "APPROVED",
            OrderStatus::Voided => "VOIDED",
            OrderStatus::Completed => "COMPLETED",
            OrderStatus::PayerActionRequired => "PAYER_ACTION_REQUIRED",
            OrderStatus::Other(other) => other,
        }
    }
}

/// A capture's status. Only [`Completed`](Self::Completed) money may be
/// credited; `Pending` is credited later by the `PAYMENT.CAPTURE.COMPLETED`
/// webhook; `Declined`/`Failed` never.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptureStatus {
    Completed,
    Pending,
    Declined,
    Failed,
    Refunded,
    PartiallyRefunded,
    /// A status this client does not know; treat as "not paid".
    Other(String),
}

impl CaptureStatus {
    fn parse(text: &str) -> CaptureStatus {
        match text {
            "COMPLETED" => CaptureStatus::Completed,
            "PENDING" => CaptureStatus::Pending,
            "DECLINED" => CaptureStatus::Declined,
            "FAILED" => CaptureStatus::Failed,
            "REFUNDED" => CaptureStatus::Refunded,
            "PARTIALLY_REFUNDED" => CaptureStatus::PartiallyRefunded,
            other => CaptureStatus::Other(bounded(other)),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            CaptureStatus::Completed => "COMPLETED",
            CaptureStatus::Pending => "PENDING",
            CaptureStatus::Declined => "DECLINED",
            CaptureStatus::Failed => "FAILED",
            CaptureStatus::Refunded => "REFUNDED",
            CaptureStatus::PartiallyRefunded => "PARTIALLY_REFUNDED",
            CaptureStatus::Other(other) => other,
        }
    }

    /// The money was received (and possibly refunded since): `COMPLETED`,
    /// `PARTIALLY_REFUNDED` or `REFUNDED`.
    pub fn is_paid(&self) -> bool {
        matches!(
            self,
            CaptureStatus::Completed | CaptureStatus::PartiallyRefunded | CaptureStatus::Refunded
        )
    }
}

/// A refund's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundStatus {
    Completed,
    Pending,
    Failed,
    Cancelled,
    Other(String),
}

impl RefundStatus {
    fn parse(text: &str) -> RefundStatus {
        match text {
            "COMPLETED" => RefundStatus::Completed,
            "PENDING" => RefundStatus::Pending,
            "FAILED" => RefundStatus::Failed,
            "CANCELLED" => RefundStatus::Cancelled,
            other => RefundStatus::Other(bounded(other)),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            RefundStatus::Completed => "COMPLETED",
            RefundStatus::Pending => "PENDING",
            RefundStatus::Failed => "FAILED",
            RefundStatus::Cancelled => "CANCELLED",
            RefundStatus::Other(other) => other,
        }
    }
}

/// A PayPal order as far as billing cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub id: String,
    pub status: OrderStatus,
    /// `purchase_units[0].custom_id`: our user id.
    pub custom_id: Option<String>,
    /// `purchase_units[0].invoice_id`: our purchase id.
    pub invoice_id: Option<String>,
    /// `purchase_units[0].payments.captures[]`, in PayPal's order.
    pub captures: Vec<Capture>,
    /// `links[rel = approve | payer-action].href`: where the buyer approves.
    pub approve_url: Option<String>,
}

/// One capture of an order (or the resource of a `PAYMENT.CAPTURE.*` event).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capture {
    /// The exactly-once key shared by capture, webhook and reconciliation.
    pub id: String,
    pub status: CaptureStatus,
    /// `status_details.reason` (e.g. `PENDING_REVIEW`), when given.
    pub status_reason: Option<String>,
    pub amount: Usd,
    /// `amount.currency_code`; credit only `"USD"`.
    pub currency: String,
    /// The capture's `custom_id`, else the purchase unit's.
    pub custom_id: Option<String>,
    /// The capture's `invoice_id`, else the purchase unit's.
    pub invoice_id: Option<String>,
    /// The order it belongs to: the enclosing order, or in a webhook
    /// `supplementary_data.related_ids.order_id` (else the `up` link).
    pub order_id: Option<String>,
}

/// A refund of a capture (or the resource of `PAYMENT.CAPTURE.REFUNDED` /
/// `PAYMENT.CAPTURE.REVERSED`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refund {
    /// The exactly-once key shared by the refund call and its webhook.
    pub id: String,
    pub status: RefundStatus,
    pub amount: Usd,
    pub currency: String,
    /// The refunded capture (from the `up` link), when given.
    pub capture_id: Option<String>,
    pub custom_id: Option<String>,
    pub invoice_id: Option<String>,
}

// ------------------------------------------------------------------ wire

#[derive(Deserialize)]
struct OrderWire {
    id: String,
    status: String,
    #[serde(default)]
    purchase_units: Vec<PurchaseUnitWire>,
    #[serde(default)]
    links: Vec<LinkWire>,
}

#[derive(Deserialize)]
struct PurchaseUnitWire {
    #[serde(default)]
    custom_id: Option<String>,
    #[serde(default)]
    invoice_id: Option<String>,
    #[serde(default)]
    payments: Option<PaymentsWire>,
}

#[derive(Deserialize)]
struct PaymentsWire {
    #[serde(default)]
    captures: Vec<CaptureWire>,
}

#[derive(Deserialize)]
pub(crate) struct CaptureWire {
    id: String,
    status: String,
    #[serde(default)]
    status_details: Option<StatusDetailsWire>,
    amount: AmountWire,
    #[serde(default)]
    custom_id: Option<String>,
    #[serde(default)]
    invoice_id: Option<String>,
    #[serde(default)]
    supplementary_data: Option<SupplementaryWire>,
    #[serde(default)]
    links: Vec<LinkWire>,
}

#[derive(Deserialize)]
struct StatusDetailsWire {
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
struct SupplementaryWire {
    #[serde(default)]
    related_ids: Option<RelatedIdsWire>,
}

#[derive(Deserialize)]
struct RelatedIdsWire {
    #[serde(default)]
    order_id: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct RefundWire {
    id: String,
    status: String,
    amount: AmountWire,
    #[serde(default)]
    custom_id: Option<String>,
    #[serde(default)]
    invoice_id: Option<String>,
    #[serde(default)]
    links: Vec<LinkWire>,
}

#[derive(Deserialize)]
struct AmountWire {
    currency_code: String,
    value: Box<RawValue>,
}

#[derive(Deserialize)]
struct LinkWire {
    #[serde(default)]
    href: Option<String>,
    #[serde(default)]
    rel: Option<String>,
}

// --------------------------------------------------------------- parsing

fn bad(what: &str) -> PayPalError {
    PayPalError::BadResponse(what.to_owned())
}

/// Unknown statuses are kept, but never at any length.
fn bounded(text: &str) -> String {
    text.chars().take(64).collect()
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// A positive amount of exactly USD shape (at most two places, no exponent).
fn amount(wire: &AmountWire, what: &str) -> Result<(Usd, String), PayPalError> {
    let value = Usd::from_json_literal(wire.value.get()).map_err(|_| {
        bad(&format!(
            "{what} amount is not a decimal with at most two places"
        ))
    })?;
    if !value.is_positive() {
        return Err(bad(&format!("{what} amount is not positive")));
    }
    if wire.currency_code.len() != 3 || !wire.currency_code.bytes().all(|b| b.is_ascii_uppercase())
    {
        return Err(bad(&format!("{what} currency is not an ISO code")));
    }
    Ok((value, wire.currency_code.clone()))
}

/// The last path segment of the link with this `rel` whose path contains
/// `segment` (`/captures/`, `/orders/`).
fn linked_id(links: &[LinkWire], rel: &str, segment: &str) -> Option<String> {
    let href = links
        .iter()
        .find(|l| l.rel.as_deref() == Some(rel))?
        .href
        .as_deref()?;
    let path = href.split(['?', '#']).next()?;
    let (_, id) = path.rsplit_once(segment)?;
    let id = id.trim_end_matches('/');
    (!id.is_empty() && !id.contains('/')).then(|| id.to_owned())
}

/// An Orders v2 order (create / get / capture answer) read into [`Order`].
pub fn parse_order(body: &[u8]) -> Result<Order, PayPalError> {
    let wire: OrderWire =
        serde_json::from_slice(body).map_err(|_| bad("order is not the expected JSON"))?;
    order_from_wire(wire)
}

pub(crate) fn order_from_raw(raw: &RawValue) -> Result<Order, PayPalError> {
    let wire: OrderWire =
        serde_json::from_str(raw.get()).map_err(|_| bad("order is not the expected JSON"))?;
    order_from_wire(wire)
}

fn order_from_wire(wire: OrderWire) -> Result<Order, PayPalError> {
    if wire.id.is_empty() {
        return Err(bad("order has an empty id"));
    }
    let approve_url = wire
        .links
        .iter()
        .find(|l| matches!(l.rel.as_deref(), Some("approve" | "payer-action")))
        .and_then(|l| l.href.clone());
    let (custom_id, invoice_id, captures) = match wire.purchase_units.into_iter().next() {
        None => (None, None, Vec::new()),
        Some(unit) => {
            let custom_id = non_empty(unit.custom_id);
            let invoice_id = non_empty(unit.invoice_id);
            let captures = unit
                .payments
                .map(|p| p.captures)
                .unwrap_or_default()
                .into_iter()
                .map(|c| {
                    capture_from_wire(
                        c,
                        custom_id.as_deref(),
                        invoice_id.as_deref(),
                        Some(&wire.id),
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            (custom_id, invoice_id, captures)
        }
    };
    Ok(Order {
        id: wire.id,
        status: OrderStatus::parse(&wire.status),
        custom_id,
        invoice_id,
        captures,
        approve_url,
    })
}

pub(crate) fn capture_from_wire(
    wire: CaptureWire,
    unit_custom_id: Option<&str>,
    unit_invoice_id: Option<&str>,
    order_id: Option<&str>,
) -> Result<Capture, PayPalError> {
    if wire.id.is_empty() {
        return Err(bad("capture has an empty id"));
    }
    let (amount, currency) = amount(&wire.amount, "capture")?;
    let order_id = order_id.map(str::to_owned).or_else(|| {
        non_empty(
            wire.supplementary_data
                .and_then(|s| s.related_ids)
                .and_then(|r| r.order_id),
        )
        .or_else(|| linked_id(&wire.links, "up", "/orders/"))
    });
    Ok(Capture {
        id: wire.id,
        status: CaptureStatus::parse(&wire.status),
        status_reason: wire
            .status_details
            .and_then(|d| d.reason)
            .map(|r| bounded(&r)),
        amount,
        currency,
        custom_id: non_empty(wire.custom_id).or_else(|| unit_custom_id.map(str::to_owned)),
        invoice_id: non_empty(wire.invoice_id).or_else(|| unit_invoice_id.map(str::to_owned)),
        order_id,
    })
}

pub(crate) fn parse_capture_raw(raw: &RawValue) -> Result<Capture, PayPalError> {
    let wire: CaptureWire =
        serde_json::from_str(raw.get()).map_err(|_| bad("capture is not the expected JSON"))?;
    capture_from_wire(wire, None, None, None)
}

pub(crate) fn parse_refund(body: &[u8]) -> Result<Refund, PayPalError> {
    let wire: RefundWire =
        serde_json::from_slice(body).map_err(|_| bad("refund is not the expected JSON"))?;
    refund_from_wire(wire)
}

pub(crate) fn parse_refund_raw(raw: &RawValue) -> Result<Refund, PayPalError> {
    let wire: RefundWire =
        serde_json::from_str(raw.get()).map_err(|_| bad("refund is not the expected JSON"))?;
    refund_from_wire(wire)
}

fn refund_from_wire(wire: RefundWire) -> Result<Refund, PayPalError> {
    if wire.id.is_empty() {
        return Err(bad("refund has an empty id"));
    }
    let (amount, currency) = amount(&wire.amount, "refund")?;
    Ok(Refund {
        capture_id: linked_id(&wire.links, "up", "/captures/"),
        id: wire.id,
        status: RefundStatus::parse(&wire.status),
        amount,
        currency,
        custom_id: non_empty(wire.custom_id),
        invoice_id: non_empty(wire.invoice_id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r#"{
        "id": "5O190127TN364715T",
        "status": "COMPLETED",
        "payer": {"email_address": "buyer@example.com", "name": {"given_name": "A"}},
        "purchase_units": [{
            "reference_id": "default",
            "custom_id": "user-1",
            "invoice_id": "purchase-1",
            "amount": {"currency_code": "USD", "value": "10.00"},
            "payments": {"captures": [
                {"id": "CAP1", "status": "COMPLETED", "amount": {"currency_code": "USD", "value": "10.00"}, "final_capture": true},
                {"id": "CAP2", "status": "PENDING", "status_details": {"reason": "PENDING_REVIEW"},
                 "amount": {"currency_code": "USD", "value": "0.5"}, "custom_id": "other", "invoice_id": "inv-2"}
            ]}
        }],
        "links": [
            {"href": "https://api.paypal.com/v2/checkout/orders/5O190127TN364715T", "rel": "self", "method": "GET"},
            {"href": "https://www.paypal.com/checkoutnow?token=5O190127TN364715T", "rel": "approve", "method": "GET"}
        ]
    }"#;

    #[test]
    fn order_with_captures() {
        let order = parse_order(ORDER.as_bytes()).unwrap();
        assert_eq!(order.id, "5O190127TN364715T");
        assert_eq!(order.status, OrderStatus::Completed);
        assert_eq!(order.custom_id.as_deref(), Some("user-1"));
        assert_eq!(order.invoice_id.as_deref(), Some("purchase-1"));
        assert_eq!(
            order.approve_url.as_deref(),
            Some("https://www.paypal.com/checkoutnow?token=5O190127TN364715T")
        );
        let [first, second] = order.captures.as_slice() else {
            panic!("two captures expected: {:?}", order.captures)
        };
        assert_eq!(first.id, "CAP1");
        assert_eq!(first.status, CaptureStatus::Completed);
        assert_eq!(first.amount, Usd::from_cents(1000).unwrap());
        assert_eq!(first.currency, "USD");
        // Inherited from the purchase unit.
        assert_eq!(first.custom_id.as_deref(), Some("user-1"));
        assert_eq!(first.invoice_id.as_deref(), Some("purchase-1"));
        assert_eq!(first.order_id.as_deref(), Some("5O190127TN364715T"));
        // The capture's own ids win.
        assert_eq!(second.status, CaptureStatus::Pending);
        assert_eq!(second.status_reason.as_deref(), Some("PENDING_REVIEW"));
        assert_eq!(second.amount, Usd::from_cents(50).unwrap());
        assert_eq!(second.custom_id.as_deref(), Some("other"));
        assert_eq!(second.invoice_id.as_deref(), Some("inv-2"));
    }

    #[test]
    fn a_real_capture_answer_with_a_declined_capture() {
        let order = parse_order(include_bytes!(
            "../../../tests/fixtures/paypal/capture-response-DECLINED.json"
        ))
        .unwrap();
        assert_eq!(order.status, OrderStatus::Completed);
        let [capture] = order.captures.as_slice() else {
            panic!("{order:?}")
        };
        assert_eq!(capture.id, "0NE89745XY140333U");
        assert_eq!(capture.status, CaptureStatus::Declined);
        assert!(!capture.status.is_paid());
        assert_eq!(capture.amount, Usd::from_cents(2504).unwrap());
        assert_eq!(capture.order_id.as_deref(), Some("5B57438865155480N"));
    }

    #[test]
    fn minimal_order_and_payer_action_link() {
        let order = parse_order(
            br#"{"id":"O1","status":"PAYER_ACTION_REQUIRED","links":[{"href":"https://x/pay","rel":"payer-action"}]}"#,
        )
        .unwrap();
        assert_eq!(order.status, OrderStatus::PayerActionRequired);
        assert_eq!(order.approve_url.as_deref(), Some("https://x/pay"));
        assert!(order.captures.is_empty());
        assert_eq!(order.custom_id, None);
        let odd = parse_order(br#"{"id":"O1","status":"SOMETHING_NEW"}"#).unwrap();
        assert_eq!(odd.status, OrderStatus::Other("SOMETHING_NEW".into()));
        assert_eq!(odd.status.as_str(), "SOMETHING_NEW");
    }

    #[test]
    fn amounts_must_be_usd_shaped() {
        for value in [
            r#""10.001""#,
            r#""1e3""#,
            r#""1E1""#,
            r#""-1.00""#,
            r#""0.00""#,
            r#""""#,
            r#""ten""#,
            r#"null"#,
            r#""NaN""#,
            r#"1.005"#,
        ] {
            let body = format!(
                r#"{{"id":"O","status":"COMPLETED","purchase_units":[{{"payments":{{"captures":[{{"id":"C","status":"COMPLETED","amount":{{"currency_code":"USD","value":{value}}}}}]}}}}]}}"#
            );
            assert!(
                matches!(
                    parse_order(body.as_bytes()),
                    Err(PayPalError::BadResponse(_))
                ),
                "{value}"
            );
        }
    }

    #[test]
    fn broken_orders_are_bad_responses() {
        for body in [
            "",
            "not json",
            "{}",
            r#"{"id":"O"}"#,
            r#"{"id":"","status":"CREATED"}"#,
            r#"{"id":"O","status":"COMPLETED","purchase_units":[{"payments":{"captures":[{"id":"C","status":"COMPLETED"}]}}]}"#,
        ] {
            assert!(
                matches!(
                    parse_order(body.as_bytes()),
                    Err(PayPalError::BadResponse(_))
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn refund_with_up_link() {
        let refund = parse_refund(
            br#"{"id":"R1","status":"COMPLETED","amount":{"currency_code":"USD","value":"2.50"},
                 "invoice_id":"purchase-1","custom_id":"user-1",
                 "links":[{"href":"https://api.paypal.com/v2/payments/refunds/R1","rel":"self"},
                          {"href":"https://api.paypal.com/v2/payments/captures/CAP1","rel":"up"}]}"#,
        )
        .unwrap();
        assert_eq!(refund.id, "R1");
        assert_eq!(refund.status, RefundStatus::Completed);
        assert_eq!(refund.amount, Usd::from_cents(250).unwrap());
        assert_eq!(refund.capture_id.as_deref(), Some("CAP1"));
        assert_eq!(refund.custom_id.as_deref(), Some("user-1"));
        // The minimal representation has no amount: not usable.
        assert!(parse_refund(br#"{"id":"R1","status":"COMPLETED","links":[]}"#).is_err());
    }

    #[test]
    fn webhook_capture_finds_its_order() {
        let raw = RawValue::from_string(
            r#"{"id":"C","status":"COMPLETED","amount":{"currency_code":"USD","value":"1"},
                "supplementary_data":{"related_ids":{"order_id":"O9"}}}"#
                .to_owned(),
        )
        .unwrap();
        assert_eq!(
            parse_capture_raw(&raw).unwrap().order_id.as_deref(),
            Some("O9")
        );
        let raw = RawValue::from_string(
            r#"{"id":"C","status":"COMPLETED","amount":{"currency_code":"USD","value":"1"},
                "links":[{"href":"https://api.paypal.com/v2/checkout/orders/O8","rel":"up"}]}"#
                .to_owned(),
        )
        .unwrap();
        assert_eq!(
            parse_capture_raw(&raw).unwrap().order_id.as_deref(),
            Some("O8")
        );
    }
}
