//! PayPal webhook (Lambda function URL, no JWT: PayPal's signature is the
//! authentication). The signature is verified on the raw body before anything
//! is parsed or written: unverifiable → 401, malformed → 400. Each event id
//! is processed once; redeliveries answer 200.

use billing::webhook::handle_event;
use billing_http::checkout::CheckoutDeps;
use billing_http::{ApiError, ApiResponse, Body, Error, Request, Response, respond};
use paypal::{PayPalError, WebhookHeaders, parse_webhook_event};
use serde_json::json;

/// PayPal events are a few KB; anything far larger is not one.
const MAX_EVENT_BYTES: usize = 256 * 1024;

pub async fn handle(deps: &CheckoutDeps, req: Request) -> Result<Response<Body>, Error> {
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
        match paypal
            .verify_webhook_signature(&headers, webhook_id, raw)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return Err(ApiError::unauthorized(
                    "Webhook signature could not be verified",
                ));
            }
            Err(PayPalError::Invalid(_)) => {
                return Err(ApiError::bad_request("Webhook body is not a JSON event"));
            }
            // PayPal refused to check this delivery (e.g. MISSING_REQUIRED_PARAMETER
            // for unusable headers): malformed, and unverifiable; nothing was done.
            Err(PayPalError::Rejected {
                status: 400 | 422, ..
            }) => {
                return Err(ApiError::bad_request(
                    "Webhook delivery is malformed and cannot be verified",
                ));
            }
            Err(e) => {
                // PayPal will redeliver; nothing was done.
                return Err(ApiError {
                    cause: Some(format!("verify-webhook-signature: {e}")),
                    ..ApiError::new(
                        503,
                        "Signature verification unavailable; retry later",
                        "upstream_unavailable",
                    )
                });
            }
        }
        let event = parse_webhook_event(raw)
            .map_err(|_| ApiError::bad_request("Malformed webhook event"))?;
        tracing::info!(event_id = %event.id, event_type = %event.event_type, "webhook verified");
        let outcome =
            handle_event(&deps.core.ledger, paypal, deps.virtfusion().await, &event).await?;
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
