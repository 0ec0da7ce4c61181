//! Webhooks of the PayPal stand-in: building and signing events (PayPal's
//! shape and headers), `POST /v1/notifications/verify-webhook-signature`,
//! and delivery to the webhook target (normal, duplicated or held).

use super::server::run_op;
use super::shapes::{
    bad_request, capture_json, order_json, paypal_id, refund_json, rfc3339, rfc3339_millis,
};
use super::{
    AUTH_ALGO, Answer, Data, Delivery, EventType, MAX_TRANSMISSION_SKEW, Operation, Shared,
    SignedEvent, WebhookMode,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::sync::Arc;

impl Shared {
    pub(super) fn sign_at(&self, body: &[u8], at: time::OffsetDateTime) -> Vec<(String, String)> {
        let transmission_id = uuid::Uuid::new_v4().to_string();
        let transmission_time = rfc3339(at);
        let signature = super::signing::sign(
            &transmission_id,
            &transmission_time,
            &self.config.webhook_id,
            body,
        );
        vec![
            ("paypal-transmission-id".into(), transmission_id),
            ("paypal-transmission-time".into(), transmission_time),
            ("paypal-transmission-sig".into(), signature),
            (
                "paypal-cert-url".into(),
                format!("{}{}", self.base_url, super::signing::CERT_PATH),
            ),
            ("paypal-auth-algo".into(), AUTH_ALGO.into()),
        ]
    }

    pub(super) fn signed(
        &self,
        event_type: &str,
        resource_type: &str,
        resource: Value,
    ) -> SignedEvent {
        let event_id = format!("WH-{}-{}", paypal_id(), paypal_id());
        let summary = match resource
            .get("amount")
            .and_then(|a| a.get("value"))
            .and_then(Value::as_str)
        {
            Some(value) => format!("{event_type} for $ {value} USD"),
            None => event_type.to_owned(),
        };
        let event = json!({
            "id": event_id,
            "event_version": "1.0",
            "create_time": rfc3339_millis(time::OffsetDateTime::now_utc()),
            "resource_type": resource_type,
            "resource_version": "2.0",
            "event_type": event_type,
            "summary": summary,
            "resource": resource,
            "links": [
                {"href": format!("{}/v1/notifications/webhooks-events/{event_id}", self.base_url), "rel": "self", "method": "GET"},
                {"href": format!("{}/v1/notifications/webhooks-events/{event_id}/resend", self.base_url), "rel": "resend", "method": "POST"}
            ]
        });
        let body = event.to_string().into_bytes();
        SignedEvent {
            headers: self.sign_at(&body, time::OffsetDateTime::now_utc()),
            event_id,
            event_type: event_type.to_owned(),
            body,
        }
    }

    /// Builds `event_type` for the resource `id` from the current state.
    pub(super) fn event_for(
        &self,
        data: &Data,
        event_type: EventType,
        id: &str,
    ) -> Option<SignedEvent> {
        let book = &data.book;
        let resource = match event_type {
            EventType::OrderApproved => {
                order_json(book, book.orders.get(id)?, &self.base_url, true)
            }
            EventType::CaptureCompleted | EventType::CapturePending | EventType::CaptureDenied => {
                capture_json(book.captures.get(id)?, &self.base_url, true)
            }
            EventType::CaptureRefunded | EventType::CaptureReversed => {
                refund_json(book.refunds.get(id)?, &self.base_url)
            }
        };
        Some(self.signed(event_type.as_str(), event_type.resource_type(), resource))
    }
}

#[derive(Deserialize)]
pub(super) struct VerifyRequest<'a> {
    auth_algo: Option<String>,
    cert_url: Option<String>,
    transmission_id: Option<String>,
    transmission_sig: Option<String>,
    transmission_time: Option<String>,
    webhook_id: Option<String>,
    #[serde(borrow)]
    webhook_event: Option<&'a RawValue>,
}

pub(super) async fn verify_webhook(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    run_op(&shared, Operation::VerifyWebhook, move |shared| {
        let Ok(request) = serde_json::from_slice::<VerifyRequest<'_>>(&body) else {
            return (
                bad_request("MALFORMED_REQUEST_JSON", "The request JSON is not well formed."),
                Vec::new(),
            );
        };
        let (
            Some(auth_algo),
            Some(cert_url),
            Some(transmission_id),
            Some(transmission_sig),
            Some(transmission_time),
            Some(webhook_id),
            Some(event),
        ) = (
            request.auth_algo,
            request.cert_url,
            request.transmission_id,
            request.transmission_sig,
            request.transmission_time,
            request.webhook_id,
            request.webhook_event,
        )
        else {
            return (
                bad_request(
                    "MISSING_REQUIRED_PARAMETER",
                    "auth_algo, cert_url, transmission_id, transmission_sig, transmission_time, webhook_id and webhook_event are required.",
                ),
                Vec::new(),
            );
        };
        let verified = auth_algo == AUTH_ALGO
            && !cert_url.is_empty()
            && webhook_id == shared.config.webhook_id
            && fresh(&transmission_time)
            && signature_matches(
                &transmission_id,
                &transmission_time,
                &webhook_id,
                event.get().as_bytes(),
                &transmission_sig,
            );
        let status = if verified { "SUCCESS" } else { "FAILURE" };
        (
            Answer::json(StatusCode::OK, &json!({ "verification_status": status })),
            Vec::new(),
        )
    })
    .await
}

pub(super) fn fresh(transmission_time: &str) -> bool {
    let Ok(at) = time::OffsetDateTime::parse(
        transmission_time,
        &time::format_description::well_known::Rfc3339,
    ) else {
        return false;
    };
    let skew = (time::OffsetDateTime::now_utc() - at).abs();
    skew <= MAX_TRANSMISSION_SKEW
}

pub(super) fn signature_matches(
    transmission_id: &str,
    transmission_time: &str,
    webhook_id: &str,
    body: &[u8],
    signature: &str,
) -> bool {
    super::signing::verify(
        transmission_id,
        transmission_time,
        webhook_id,
        body,
        signature,
    )
}

/// Sends automatic events per the webhook mode (after the answer is built;
/// delivery runs in its own task).
pub(super) fn dispatch(shared: &Arc<Shared>, events: Vec<SignedEvent>) {
    if events.is_empty() {
        return;
    }
    let mode = {
        let mut data = shared.lock();
        if data.webhook_mode == WebhookMode::Hold {
            data.held.extend(events);
            return;
        }
        data.webhook_mode
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        for event in events {
            let _ = deliver(&shared, &event).await;
            if mode == WebhookMode::Duplicate {
                let again = resign(&shared, &event);
                let _ = deliver(&shared, &again).await;
            }
        }
    });
}

/// The same event (same id and body) in a new transmission.
pub(super) fn resign(shared: &Shared, event: &SignedEvent) -> SignedEvent {
    SignedEvent {
        headers: shared.sign_at(&event.body, time::OffsetDateTime::now_utc()),
        ..event.clone()
    }
}

pub(super) async fn deliver(shared: &Shared, event: &SignedEvent) -> Result<u16, String> {
    let target = shared.lock().webhook_target.clone();
    let result = match target {
        None => Err("no webhook target".to_owned()),
        Some(target) => {
            let mut request = shared
                .http
                .post(&target)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::USER_AGENT, "PayPal/AUHD-214.0-58794166")
                .body(event.body.clone());
            for (name, value) in &event.headers {
                request = request.header(name.as_str(), value.as_str());
            }
            match request.send().await {
                Ok(response) => Ok(response.status().as_u16()),
                Err(e) => Err(format!("delivery failed: {e}")),
            }
        }
    };
    let delivery = Delivery {
        event_id: event.event_id.clone(),
        event_type: event.event_type.clone(),
        status: result.as_ref().ok().copied(),
        error: result.as_ref().err().cloned(),
    };
    match &result {
        Ok(status) => {
            tracing::info!(event_id = %event.event_id, event_type = %event.event_type, status, "PayPal stand-in delivered a webhook")
        }
        Err(error) => {
            tracing::warn!(event_id = %event.event_id, event_type = %event.event_type, error, "PayPal stand-in could not deliver a webhook")
        }
    }
    shared.lock().deliveries.push(delivery);
    result
}

pub(super) async fn flush_held(shared: &Shared, reverse: bool) -> Vec<Delivery> {
    let mut held = std::mem::take(&mut shared.lock().held);
    if reverse {
        held.reverse();
    }
    let mut out = Vec::with_capacity(held.len());
    for event in held {
        let event = resign(shared, &event);
        let result = deliver(shared, &event).await;
        out.push(Delivery {
            event_id: event.event_id,
            event_type: event.event_type,
            status: result.as_ref().ok().copied(),
            error: result.err(),
        });
    }
    out
}
