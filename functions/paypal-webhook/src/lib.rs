//! PayPal webhook (Lambda function URL, no JWT: PayPal's signature is the
//! authentication). The signature is verified offline on the raw body before
//! anything is parsed or written (`paypal::WebhookVerifier`): unverifiable →
//! 401, malformed → 400, certificate not fetchable now → 503. Each event id
//! is processed once; redeliveries answer 200. Event types billing does not
//! act on answer 200 whatever their resource.

use billing::webhook::handle_event;
use billing_http::PaymentDeps;
use billing_http::{ApiError, ApiResponse, Body, Error, Request, Response, respond};
use paypal::{WebhookHeaders, parse_webhook_event};
use serde_json::json;

/// PayPal events are a few KB; anything far larger is not one.
const MAX_EVENT_BYTES: usize = 256 * 1024;

pub async fn handle(deps: &PaymentDeps, req: Request) -> Result<Response<Body>, Error> {
    respond(&req, async {
        let raw = req.body().as_ref();
        if raw.is_empty() || raw.len() > MAX_EVENT_BYTES {
            return Err(ApiError::bad_request(
                "Webhook body is missing or too large",
            ));
        }
        // An event is a JSON object; anything else is malformed (400), not
        // something to ask PayPal about (it refuses such a request, which
        // must not read as "verification unavailable").
        if !is_json_object(raw) {
            return Err(ApiError::bad_request("Webhook body is not a JSON event"));
        }
        let headers = WebhookHeaders::from_header_map(req.headers()).map_err(|_| {
            ApiError::bad_request("PayPal signature headers are missing or malformed")
        })?;
        let paypal = deps.paypal().await?;
        let webhook_id = paypal
            .webhook_id()
            .ok_or_else(|| ApiError::internal("PayPal webhook id is not configured"))?;
        // Offline: PayPal's certificate (allow-listed hosts, cached by URL);
        // a forged delivery costs no call to PayPal.
        if let Err(e) = paypal.verify_webhook(&headers, webhook_id, raw).await {
            if e.is_transient() {
                // PayPal will redeliver; nothing was done.
                return Err(ApiError {
                    cause: Some(format!("webhook verification: {e}")),
                    ..ApiError::new(
                        503,
                        "Signature verification unavailable; retry later",
                        "upstream_unavailable",
                    )
                });
            }
            // `rejected = "signature"`: the template's metric filter
            // (WebhookSignatureFailures) counts these lines.
            tracing::warn!(
                rejected = "signature",
                transmission_id = %headers.transmission_id,
                reason = %e,
                "PayPal webhook signature not verified"
            );
            return Err(ApiError::unauthorized(
                "Webhook signature could not be verified",
            ));
        }
        let event = parse_webhook_event(raw)
            .map_err(|_| ApiError::bad_request("Malformed webhook event"))?;
        tracing::info!(event_id = %event.id, event_type = %event.event_type, "webhook verified");
        let outcome =
            handle_event(&deps.base.ledger, paypal, deps.virtfusion().await, &event).await?;
        Ok(ApiResponse::ok(
            json!({ "received": true, "outcome": outcome.as_str() }),
        ))
    })
    .await
}

/// Whether `raw` is one JSON object (syntax only; nothing is interpreted).
fn is_json_object(raw: &[u8]) -> bool {
    serde_json::from_slice::<&serde_json::value::RawValue>(raw)
        .is_ok_and(|value| value.get().trim_start().starts_with('{'))
}
