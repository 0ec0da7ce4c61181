//! How the PayPal stand-in signs webhook deliveries: exactly as PayPal does
//! (RSA PKCS#1 v1.5 with SHA-256 over
//! `transmission_id|transmission_time|webhook_id|crc32(body)`, base64), with
//! a **test-only** key pair committed under `infra/devstack/testkeys/`
//! (self-signed, valid 2025-01-01 to 2125-01-01; it signs nothing but the
//! stand-in's events). Its certificate is served like PayPal's at
//! `GET /v1/notifications/certs/{id}` (no auth), so the billing webhook
//! verifies stand-in deliveries with the same offline code as PayPal's.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    KeyPair, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair, UnparsedPublicKey,
};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::sync::OnceLock;

/// The stand-in's signing certificate (PEM), as served to verifiers.
pub const CERT_PEM: &str = include_str!("../../testkeys/standin-webhook-cert.pem");
const KEY_PEM: &str = include_str!("../../testkeys/standin-webhook-key.pem");

/// Path of the certificate under the stand-in's base URL.
pub const CERT_PATH: &str = "/v1/notifications/certs/CERT-standin-1";

fn key() -> Option<&'static RsaKeyPair> {
    static KEY: OnceLock<Option<RsaKeyPair>> = OnceLock::new();
    KEY.get_or_init(|| {
        let body: String = KEY_PEM
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let der = BASE64.decode(body).ok()?;
        RsaKeyPair::from_pkcs8(&der).ok()
    })
    .as_ref()
}

/// The signed string PayPal uses.
pub fn message(
    transmission_id: &str,
    transmission_time: &str,
    webhook_id: &str,
    body: &[u8],
) -> String {
    format!(
        "{transmission_id}|{transmission_time}|{webhook_id}|{}",
        crc32fast::hash(body)
    )
}

/// `paypal-transmission-sig` for this delivery (empty if the key is unusable,
/// which then fails every verification).
pub fn sign(
    transmission_id: &str,
    transmission_time: &str,
    webhook_id: &str,
    body: &[u8],
) -> String {
    let Some(key) = key() else {
        tracing::error!("PayPal stand-in signing key unusable");
        return String::new();
    };
    let mut signature = vec![0; key.public_modulus_len()];
    let message = message(transmission_id, transmission_time, webhook_id, body);
    match key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        message.as_bytes(),
        &mut signature,
    ) {
        Ok(()) => BASE64.encode(signature),
        Err(_) => String::new(),
    }
}

/// Whether `signature` (base64) is the stand-in key's over this delivery
/// (for the stand-in's own verify-webhook-signature endpoint).
pub fn verify(
    transmission_id: &str,
    transmission_time: &str,
    webhook_id: &str,
    body: &[u8],
    signature: &str,
) -> bool {
    let (Some(key), Ok(signature)) = (key(), BASE64.decode(signature)) else {
        return false;
    };
    let message = message(transmission_id, transmission_time, webhook_id, body);
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.public_key().as_ref())
        .verify(message.as_bytes(), &signature)
        .is_ok()
}

/// `GET /v1/notifications/certs/{id}`: the certificate, as PayPal serves its own.
pub async fn serve_certificate(axum::extract::Path(id): axum::extract::Path<String>) -> Response {
    if CERT_PATH.ends_with(&format!("/{id}")) {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-pem-file")],
            CERT_PEM,
        )
            .into_response()
    } else {
        (StatusCode::NOT_FOUND, "no such certificate").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies() {
        let sig = sign("t", "2025-01-01T00:00:00Z", "W", b"{}");
        assert!(!sig.is_empty());
        assert!(verify("t", "2025-01-01T00:00:00Z", "W", b"{}", &sig));
        assert!(!verify("t", "2025-01-01T00:00:00Z", "X", b"{}", &sig));
        assert!(!verify("t", "2025-01-01T00:00:00Z", "W", b"{ }", &sig));
    }
}
