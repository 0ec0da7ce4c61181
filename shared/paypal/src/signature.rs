//! Offline verification of PayPal webhook signatures, as PayPal documents it:
//! the signature (`paypal-transmission-sig`, base64) is RSA PKCS#1 v1.5 with
//! SHA-256 (`paypal-auth-algo: SHA256withRSA`) over
//!
//! ```text
//! <transmission_id>|<transmission_time>|<webhook_id>|<crc32 of the raw body, unsigned decimal>
//! ```
//!
//! made with the key of the certificate at `paypal-cert-url`. Everything
//! here is pure (no I/O): give it a delivery, a certificate, the webhook id
//! and a clock, and it says whether PayPal signed exactly these bytes. Where
//! the certificate comes from (an allow-list of PayPal hosts, cached) is
//! [`WebhookVerifier`](crate::WebhookVerifier)'s job.
//!
//! The signature check and the certificate's validity window are separate
//! steps ([`check_signature`], [`SigningCertificate::check_validity`]), so a
//! recorded delivery can be checked long after its certificate expired;
//! [`verify_offline`] does both.

use crate::WebhookHeaders;
use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_cert::Certificate;
use x509_cert::der::{Decode, DecodePem};

/// The only algorithm PayPal signs webhooks with.
pub const AUTH_ALGO_SHA256_WITH_RSA: &str = "SHA256withRSA";

/// `rsaEncryption` (1.2.840.113549.1.1.1).
const RSA_ENCRYPTION: x509_cert::der::oid::ObjectIdentifier =
    x509_cert::der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Longest certificate document accepted (PayPal's chain is ~6 KB).
pub const MAX_CERT_BYTES: usize = 64 * 1024;

/// Why a delivery is not accepted. Every variant but
/// [`CertificateUnavailable`](Self::CertificateUnavailable) means "not signed
/// by PayPal for us" (401); that one means "cannot tell now" (503, PayPal
/// redelivers).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("paypal-auth-algo {0:?} is not SHA256withRSA")]
    UnsupportedAlgorithm(String),
    #[error("paypal-cert-url is not an allowed PayPal certificate URL")]
    CertificateUrlNotAllowed,
    #[error("the signing certificate could not be fetched ({0})")]
    CertificateUnavailable(&'static str),
    #[error("the signing certificate is unusable ({0})")]
    CertificateInvalid(&'static str),
    #[error("the signing certificate is not valid at this time")]
    CertificateNotValidNow,
    #[error("paypal-transmission-time is unreadable or too far from now")]
    StaleTransmission,
    #[error("paypal-transmission-sig is not base64")]
    MalformedSignature,
    #[error("the signature does not match the delivery")]
    BadSignature,
}

impl SignatureError {
    /// True when a later redelivery may verify (the certificate could not be
    /// fetched); false when this delivery is simply not PayPal's.
    pub fn is_transient(&self) -> bool {
        matches!(self, SignatureError::CertificateUnavailable(_))
    }
}

/// A signing certificate: its RSA public key and validity window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningCertificate {
    /// PKCS#1 `RSAPublicKey` DER.
    public_key: Vec<u8>,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl SigningCertificate {
    /// The first certificate of a PEM document (PayPal serves the signing
    /// certificate first, then its chain).
    pub fn from_pem(pem: &[u8]) -> Result<SigningCertificate, SignatureError> {
        if pem.len() > MAX_CERT_BYTES {
            return Err(SignatureError::CertificateInvalid("too large"));
        }
        let text = std::str::from_utf8(pem)
            .map_err(|_| SignatureError::CertificateInvalid("not PEM text"))?;
        let end = "-----END CERTIFICATE-----";
        let first = text
            .find(end)
            .map(|at| &text[..at + end.len()])
            .ok_or(SignatureError::CertificateInvalid("no PEM certificate"))?;
        let start = first
            .find("-----BEGIN CERTIFICATE-----")
            .ok_or(SignatureError::CertificateInvalid("no PEM certificate"))?;
        let cert = Certificate::from_pem(&first[start..])
            .map_err(|_| SignatureError::CertificateInvalid("not an X.509 certificate"))?;
        SigningCertificate::from_certificate(&cert)
    }

    /// A DER-encoded certificate.
    pub fn from_der(der: &[u8]) -> Result<SigningCertificate, SignatureError> {
        let cert = Certificate::from_der(der)
            .map_err(|_| SignatureError::CertificateInvalid("not an X.509 certificate"))?;
        SigningCertificate::from_certificate(&cert)
    }

    fn from_certificate(cert: &Certificate) -> Result<SigningCertificate, SignatureError> {
        let tbs = &cert.tbs_certificate;
        let spki = &tbs.subject_public_key_info;
        if spki.algorithm.oid != RSA_ENCRYPTION {
            return Err(SignatureError::CertificateInvalid("key is not RSA"));
        }
        let public_key = spki
            .subject_public_key
            .as_bytes()
            .ok_or(SignatureError::CertificateInvalid(
                "key bits are not whole bytes",
            ))?
            .to_vec();
        Ok(SigningCertificate {
            public_key,
            not_before: UNIX_EPOCH + tbs.validity.not_before.to_unix_duration(),
            not_after: UNIX_EPOCH + tbs.validity.not_after.to_unix_duration(),
        })
    }

    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The certificate is valid at `now` (both ends inclusive).
    pub fn check_validity(&self, now: SystemTime) -> Result<(), SignatureError> {
        if now < self.not_before || now > self.not_after {
            return Err(SignatureError::CertificateNotValidNow);
        }
        Ok(())
    }

    /// RSA PKCS#1 v1.5 SHA-256 check of `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.public_key)
            .verify(message, signature)
            .map_err(|_| SignatureError::BadSignature)
    }
}

/// CRC-32 (IEEE, as zlib's `crc32`) of the raw body: the last field of the
/// signed string.
pub fn body_crc32(raw_body: &[u8]) -> u32 {
    crc32fast::hash(raw_body)
}

/// The string PayPal signs for this delivery.
pub fn signed_message(headers: &WebhookHeaders, webhook_id: &str, raw_body: &[u8]) -> String {
    format!(
        "{}|{}|{}|{}",
        headers.transmission_id,
        headers.transmission_time,
        webhook_id,
        body_crc32(raw_body)
    )
}

/// The signature alone: the algorithm is PayPal's and `cert`'s key signed
/// exactly these headers, webhook id and body bytes. The certificate's
/// validity window is **not** checked (see [`verify_offline`]).
pub fn check_signature(
    headers: &WebhookHeaders,
    webhook_id: &str,
    raw_body: &[u8],
    cert: &SigningCertificate,
) -> Result<(), SignatureError> {
    if headers.auth_algo != AUTH_ALGO_SHA256_WITH_RSA {
        return Err(SignatureError::UnsupportedAlgorithm(
            headers.auth_algo.chars().take(32).collect(),
        ));
    }
    let signature = BASE64
        .decode(headers.transmission_sig.as_bytes())
        .map_err(|_| SignatureError::MalformedSignature)?;
    cert.verify(
        signed_message(headers, webhook_id, raw_body).as_bytes(),
        &signature,
    )
}

/// A full offline check of one delivery at `now`: the certificate is valid
/// then, and its key signed exactly these bytes for `webhook_id`.
pub fn verify_offline(
    headers: &WebhookHeaders,
    webhook_id: &str,
    raw_body: &[u8],
    cert: &SigningCertificate,
    now: SystemTime,
) -> Result<(), SignatureError> {
    cert.check_validity(now)?;
    check_signature(headers, webhook_id, raw_body, cert)
}

/// `paypal-transmission-time` (RFC 3339) is within `max_skew` of `now`: an
/// old delivery replayed by someone else is refused (PayPal's own retries are
/// new transmissions, signed anew).
pub fn check_transmission_time(
    headers: &WebhookHeaders,
    now: SystemTime,
    max_skew: Duration,
) -> Result<(), SignatureError> {
    let at = time::OffsetDateTime::parse(
        &headers.transmission_time,
        &time::format_description::well_known::Rfc3339,
    )
    .map_err(|_| SignatureError::StaleTransmission)?;
    let now = time::OffsetDateTime::from(now);
    let skew = (now - at).abs();
    if skew > max_skew {
        return Err(SignatureError::StaleTransmission);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_zlibs() {
        // zlib.crc32(b"123456789") == 0xCBF43926
        assert_eq!(body_crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(body_crc32(b""), 0);
    }

    #[test]
    fn signed_message_has_the_four_fields() {
        let headers = WebhookHeaders {
            auth_algo: "SHA256withRSA".into(),
            cert_url: "https://api.paypal.com/v1/notifications/certs/CERT-1".into(),
            transmission_id: "t-1".into(),
            transmission_sig: "c2ln".into(),
            transmission_time: "2024-08-02T19:33:35Z".into(),
        };
        assert_eq!(
            signed_message(&headers, "WID", b"123456789"),
            "t-1|2024-08-02T19:33:35Z|WID|3421780262"
        );
    }

    #[test]
    fn garbage_certificates_are_invalid() {
        for pem in [
            &b""[..],
            b"not a certificate",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            assert!(
                matches!(
                    SigningCertificate::from_pem(pem),
                    Err(SignatureError::CertificateInvalid(_))
                ),
                "{pem:?}"
            );
        }
    }
}
