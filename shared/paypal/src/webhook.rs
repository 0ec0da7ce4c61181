//! PayPal webhook deliveries: the signature headers, and the event read into
//! our types *after* its signature was verified on the raw body
//! ([`PayPalClient::verify_webhook`](crate::PayPalClient::verify_webhook), offline).

use crate::PayPalError;
use crate::model::{Capture, Order, Refund, order_from_raw, parse_capture_raw, parse_refund_raw};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::value::RawValue;

pub const HEADER_AUTH_ALGO: &str = "paypal-auth-algo";
pub const HEADER_CERT_URL: &str = "paypal-cert-url";
pub const HEADER_TRANSMISSION_ID: &str = "paypal-transmission-id";
pub const HEADER_TRANSMISSION_SIG: &str = "paypal-transmission-sig";
pub const HEADER_TRANSMISSION_TIME: &str = "paypal-transmission-time";

/// Longest header value taken from a delivery (PayPal's are far shorter).
const MAX_HEADER_LEN: usize = 2048;

/// The five signature headers of a webhook delivery, as PayPal sent them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookHeaders {
    pub auth_algo: String,
    pub cert_url: String,
    pub transmission_id: String,
    pub transmission_sig: String,
    pub transmission_time: String,
}

impl WebhookHeaders {
    /// Reads the headers through `lookup(lowercase name)`; a missing, empty,
    /// non-text or over-long header is [`PayPalError::Invalid`] naming it.
    pub fn from_lookup<'a>(
        lookup: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<WebhookHeaders, PayPalError> {
        let get = |name: &'static str| -> Result<String, PayPalError> {
            match lookup(name).map(str::trim) {
                Some(value) if !value.is_empty() && value.len() <= MAX_HEADER_LEN => {
                    Ok(value.to_owned())
                }
                _ => Err(PayPalError::Invalid(format!(
                    "webhook header {name} is missing or unusable"
                ))),
            }
        };
        Ok(WebhookHeaders {
            auth_algo: get(HEADER_AUTH_ALGO)?,
            cert_url: get(HEADER_CERT_URL)?,
            transmission_id: get(HEADER_TRANSMISSION_ID)?,
            transmission_sig: get(HEADER_TRANSMISSION_SIG)?,
            transmission_time: get(HEADER_TRANSMISSION_TIME)?,
        })
    }

    /// Reads the headers of an `http` request (case-insensitive names).
    pub fn from_header_map(headers: &HeaderMap) -> Result<WebhookHeaders, PayPalError> {
        WebhookHeaders::from_lookup(|name| headers.get(name).and_then(|v| v.to_str().ok()))
    }
}

/// What a webhook event is about. Only the event types billing acts on have
/// their `resource` read ([`acted_on_resource`]); any other event is
/// [`Other`](WebhookResource::Other) whatever its resource looks like, so an
/// event we ignore can never be refused for its shape (PayPal would redeliver
/// it for days).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookResource {
    /// `PAYMENT.CAPTURE.COMPLETED`, `.PENDING`, `.DENIED`, `.DECLINED`: the capture.
    Capture(Capture),
    /// `PAYMENT.CAPTURE.REFUNDED`, `.REVERSED`: the refund (or reversal).
    Refund(Refund),
    /// `CHECKOUT.ORDER.APPROVED`: the order.
    Order(Order),
    /// `resource_type: "dispute"` (`CUSTOMER.DISPUTE.RESOLVED`, ...); read
    /// leniently (a shape we cannot read is [`WebhookResource::Other`]).
    Dispute(crate::Dispute),
    /// Any other event type: not read; ignore the event.
    Other,
}

/// The kind of resource billing reads for an event type, if it acts on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceKind {
    Capture,
    Refund,
    Order,
}

/// Which resource `event_type` is acted on with (`None`: ignored, not read).
pub fn acted_on_resource(event_type: &str) -> Option<ResourceKind> {
    match event_type {
        "PAYMENT.CAPTURE.COMPLETED"
        | "PAYMENT.CAPTURE.PENDING"
        | "PAYMENT.CAPTURE.DENIED"
        | "PAYMENT.CAPTURE.DECLINED" => Some(ResourceKind::Capture),
        "PAYMENT.CAPTURE.REFUNDED"
        | "PAYMENT.CAPTURE.REVERSED"
        | "PAYMENT.REFUND.PENDING"
        | "PAYMENT.REFUND.COMPLETED"
        | "PAYMENT.REFUND.FAILED"
        | "PAYMENT.REFUND.CANCELLED" => Some(ResourceKind::Refund),
        "CHECKOUT.ORDER.APPROVED" => Some(ResourceKind::Order),
        _ => None,
    }
}

/// A webhook event (`{"id": "WH-...", "event_type": ..., "resource": ...}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEvent {
    /// The exactly-once key of the delivery.
    pub id: String,
    pub event_type: String,
    pub resource_type: Option<String>,
    pub create_time: Option<String>,
    pub resource: WebhookResource,
}

#[derive(Deserialize)]
struct EventWire<'a> {
    id: String,
    event_type: String,
    #[serde(default)]
    resource_type: Option<String>,
    #[serde(default)]
    create_time: Option<String>,
    #[serde(borrow, default)]
    resource: Option<&'a RawValue>,
}

/// Parses a webhook body. Call only after the signature was verified.
/// The envelope needs a non-empty `id` and `event_type`; the `resource` is
/// read only for the event types billing acts on ([`acted_on_resource`]),
/// where a malformed resource is [`PayPalError::BadResponse`].
pub fn parse_webhook_event(raw_body: &[u8]) -> Result<WebhookEvent, PayPalError> {
    let wire: EventWire<'_> = serde_json::from_slice(raw_body)
        .map_err(|_| PayPalError::BadResponse("webhook event is not the expected JSON".into()))?;
    if wire.id.is_empty() || wire.event_type.is_empty() {
        return Err(PayPalError::BadResponse(
            "webhook event has no id or event_type".into(),
        ));
    }
    let resource = match (acted_on_resource(&wire.event_type), wire.resource) {
        // Disputes are read leniently: a shape we cannot read is ignored.
        (None, Some(raw)) if wire.resource_type.as_deref() == Some("dispute") => {
            crate::parse_dispute(raw.get()).map_or(WebhookResource::Other, WebhookResource::Dispute)
        }
        (None, _) => WebhookResource::Other,
        (Some(_), None) => {
            return Err(PayPalError::BadResponse(
                "webhook event has no resource".into(),
            ));
        }
        (Some(ResourceKind::Capture), Some(raw)) => {
            WebhookResource::Capture(parse_capture_raw(raw)?)
        }
        (Some(ResourceKind::Refund), Some(raw)) => WebhookResource::Refund(parse_refund_raw(raw)?),
        (Some(ResourceKind::Order), Some(raw)) => WebhookResource::Order(order_from_raw(raw)?),
    };
    Ok(WebhookEvent {
        id: wire.id,
        event_type: wire.event_type,
        resource_type: wire.resource_type,
        create_time: wire.create_time,
        resource,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CaptureStatus;
    use reqwest::header::HeaderValue;

    #[test]
    fn headers_from_a_header_map() {
        let mut map = HeaderMap::new();
        for (name, value) in [
            ("PAYPAL-AUTH-ALGO", "SHA256withRSA"),
            (
                "paypal-cert-url",
                "https://api.paypal.com/v1/notifications/certs/CERT-1",
            ),
            ("Paypal-Transmission-Id", "69cd13f0"),
            ("paypal-transmission-sig", "c2ln"),
            ("paypal-transmission-time", "2025-11-25T12:00:00Z"),
        ] {
            map.insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static(value),
            );
        }
        let headers = WebhookHeaders::from_header_map(&map).unwrap();
        assert_eq!(headers.auth_algo, "SHA256withRSA");
        assert_eq!(headers.transmission_id, "69cd13f0");
        map.remove("paypal-transmission-sig");
        let err = WebhookHeaders::from_header_map(&map).unwrap_err();
        assert!(err.to_string().contains("paypal-transmission-sig"), "{err}");
    }

    #[test]
    fn capture_and_refund_events() {
        let event = parse_webhook_event(
            br#"{"id":"WH-1","event_type":"PAYMENT.CAPTURE.COMPLETED","resource_type":"capture",
                "create_time":"2025-01-01T00:00:00Z",
                "resource":{"id":"C1","status":"COMPLETED","custom_id":"u1",
                  "amount":{"currency_code":"USD","value":"10.00"},
                  "supplementary_data":{"related_ids":{"order_id":"O1"}}}}"#,
        )
        .unwrap();
        let WebhookResource::Capture(capture) = &event.resource else {
            panic!("{event:?}")
        };
        assert_eq!(capture.status, CaptureStatus::Completed);
        assert_eq!(capture.order_id.as_deref(), Some("O1"));
        assert_eq!(capture.custom_id.as_deref(), Some("u1"));

        let event = parse_webhook_event(
            br#"{"id":"WH-2","event_type":"PAYMENT.CAPTURE.REFUNDED","resource_type":"refund",
                "resource":{"id":"R1","status":"COMPLETED","amount":{"currency_code":"USD","value":"1.50"},
                  "links":[{"href":"https://api.paypal.com/v2/payments/captures/C1","rel":"up","method":"GET"}]}}"#,
        )
        .unwrap();
        let WebhookResource::Refund(refund) = &event.resource else {
            panic!("{event:?}")
        };
        assert_eq!(refund.capture_id.as_deref(), Some("C1"));
    }

    #[test]
    fn unknown_resources_are_other_and_broken_events_bad() {
        let event = parse_webhook_event(
            br#"{"id":"WH-3","event_type":"CUSTOMER.DISPUTE.CREATED","resource_type":"dispute","resource":[1]}"#,
        )
        .unwrap();
        assert_eq!(event.resource, WebhookResource::Other);
        // Ignored types are not read, whatever their resource (PayPal's
        // CHECKOUT.PAYMENT-APPROVAL.REVERSED has `order_id` and no `id`).
        for body in [
            r#"{"id":"WH-4","event_type":"CHECKOUT.PAYMENT-APPROVAL.REVERSED","resource_type":"checkout-order","resource":{"order_id":"5O190127TN364715T"}}"#,
            r#"{"id":"WH-5","event_type":"PAYMENT.AUTHORIZATION.CREATED","resource_type":"capture","resource":{"id":"A"}}"#,
            r#"{"id":"WH-6","event_type":"X.Y","resource_type":"refund","resource":[1,"two"]}"#,
            r#"{"id":"WH-7","event_type":"X.Y"}"#,
        ] {
            let event = parse_webhook_event(body.as_bytes()).unwrap();
            assert_eq!(event.resource, WebhookResource::Other, "{body}");
        }
        for body in [
            "",
            "{}",
            r#"{"id":"","event_type":"X","resource":{}}"#,
            r#"{"id":"WH","event_type":"PAYMENT.CAPTURE.COMPLETED","resource_type":"capture","resource":{"id":"C"}}"#,
            r#"{"id":"WH","event_type":"PAYMENT.CAPTURE.REFUNDED"}"#,
        ] {
            assert!(
                matches!(
                    parse_webhook_event(body.as_bytes()),
                    Err(PayPalError::BadResponse(_))
                ),
                "{body}"
            );
        }
    }
}
