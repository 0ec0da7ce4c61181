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
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::time::{Duration, SystemTime};

/// The only algorithm PayPal signs webhooks with.
pub const AUTH_ALGO_SHA256_WITH_RSA: &str = "SHA256withRSA";

/// DER of the `rsaEncryption` OID (1.2.840.113549.1.1.1), tag and length included.
const RSA_ENCRYPTION_OID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];

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
        let der = CertificateDer::from_pem_slice(&first.as_bytes()[start..])
            .map_err(|_| SignatureError::CertificateInvalid("not an X.509 certificate"))?;
        SigningCertificate::from_der(&der)
    }

    /// A DER-encoded certificate (X.509, RFC 5280): its outline is checked
    /// and its validity and RSA key are read ([`der`]); the chain is not
    /// (the certificate is trusted by where it was fetched from).
    pub fn from_der(der: &[u8]) -> Result<SigningCertificate, SignatureError> {
        let fields = der::tbs_fields(der).ok_or(SignatureError::CertificateInvalid(
            "not an X.509 certificate",
        ))?;
        let (algorithm, key_bits) = der::spki(fields.spki).ok_or(
            SignatureError::CertificateInvalid("not an X.509 certificate"),
        )?;
        if !algorithm.starts_with(RSA_ENCRYPTION_OID) {
            return Err(SignatureError::CertificateInvalid("key is not RSA"));
        }
        let public_key = match key_bits.split_first() {
            Some((0, key)) => key.to_vec(),
            _ => {
                return Err(SignatureError::CertificateInvalid(
                    "key bits are not whole bytes",
                ));
            }
        };
        let time = |raw| der::time(raw).ok_or(SignatureError::CertificateInvalid("bad validity"));
        Ok(SigningCertificate {
            public_key,
            not_before: time(fields.not_before)?,
            not_after: time(fields.not_after)?,
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

/// Just enough DER to read what [`SigningCertificate`] keeps from a
/// certificate: its outline (a certificate, nothing after it), the validity
/// times and the SubjectPublicKeyInfo (RFC 5280, 4.1). Lengths are checked
/// against the input at every step; nothing here panics on any input.
mod der {
    use std::time::SystemTime;

    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const BIT_STRING: u8 = 0x03;
    const UTC_TIME: u8 = 0x17;
    const GENERALIZED_TIME: u8 = 0x18;
    const EXPLICIT_0: u8 = 0xa0;

    /// One element: `(tag, contents, rest)`.
    fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let (len, rest) = rest.split_at(n);
            (
                len.iter().fold(0, |acc, &b| (acc << 8) | usize::from(b)),
                rest,
            )
        };
        if rest.len() < len {
            return None;
        }
        let (contents, rest) = rest.split_at(len);
        Some((tag, contents, rest))
    }

    fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        match element(input)? {
            (t, contents, rest) if t == tag => Some((contents, rest)),
            _ => None,
        }
    }

    pub struct TbsFields<'a> {
        pub not_before: (u8, &'a [u8]),
        pub not_after: (u8, &'a [u8]),
        pub spki: &'a [u8],
    }

    /// Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version
    /// OPTIONAL, serialNumber, signature, issuer, validity, subject,
    /// subjectPublicKeyInfo, ... }, ... }
    pub fn tbs_fields(cert: &[u8]) -> Option<TbsFields<'_>> {
        let (cert, after_cert) = expect(cert, SEQUENCE)?;
        let (mut tbs, rest) = expect(cert, SEQUENCE)?;
        let (_signature_algorithm, rest) = expect(rest, SEQUENCE)?;
        let (_signature, rest) = expect(rest, BIT_STRING)?;
        if !after_cert.is_empty() || !rest.is_empty() {
            return None;
        }
        if tbs.first() == Some(&EXPLICIT_0) {
            tbs = element(tbs)?.2;
        }
        let (_serial, tbs) = expect(tbs, INTEGER)?;
        let (_signature, tbs) = expect(tbs, SEQUENCE)?;
        let (_issuer, tbs) = expect(tbs, SEQUENCE)?;
        let (validity, tbs) = expect(tbs, SEQUENCE)?;
        let (_subject, tbs) = expect(tbs, SEQUENCE)?;
        let (spki, _) = expect(tbs, SEQUENCE)?;
        let (before_tag, before, validity) = element(validity)?;
        let (after_tag, after, validity) = element(validity)?;
        if !validity.is_empty() {
            return None;
        }
        Some(TbsFields {
            not_before: (before_tag, before),
            not_after: (after_tag, after),
            spki,
        })
    }

    /// SubjectPublicKeyInfo contents: (the AlgorithmIdentifier's contents,
    /// the BIT STRING's contents, unused-bits byte first).
    pub fn spki(spki: &[u8]) -> Option<(&[u8], &[u8])> {
        let (algorithm, rest) = expect(spki, SEQUENCE)?;
        let (key, rest) = expect(rest, BIT_STRING)?;
        rest.is_empty().then_some((algorithm, key))
    }

    /// UTCTime `YYMMDDHHMMSSZ` (years 1950–2049) or GeneralizedTime
    /// `YYYYMMDDHHMMSSZ`, as DER requires them (RFC 5280, 4.1.2.5).
    pub fn time((tag, raw): (u8, &[u8])) -> Option<SystemTime> {
        let digits = raw.strip_suffix(b"Z")?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let num = |d: &[u8]| {
            d.iter()
                .fold(0i32, |acc, &b| acc * 10 + i32::from(b - b'0'))
        };
        let (year, rest) = match (tag, digits.len()) {
            (UTC_TIME, 12) => {
                let yy = num(&digits[..2]);
                (if yy < 50 { 2000 + yy } else { 1900 + yy }, &digits[2..])
            }
            (GENERALIZED_TIME, 14) => (num(&digits[..4]), &digits[4..]),
            _ => return None,
        };
        let field = |i: usize| u8::try_from(num(&rest[i..i + 2])).ok();
        let month = time::Month::try_from(field(0)?).ok()?;
        let date = time::Date::from_calendar_date(year, month, field(2)?).ok()?;
        let at = date.with_hms(field(4)?, field(6)?, field(8)?).ok()?;
        Some(at.assume_utc().into())
    }
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
    fn der_times_read_both_forms_and_refuse_the_rest() {
        let at = |text: &str| {
            SystemTime::from(
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .unwrap(),
            )
        };
        assert_eq!(
            der::time((0x17, b"250307235959Z")),
            Some(at("2025-03-07T23:59:59Z"))
        );
        assert_eq!(
            der::time((0x17, b"500101000000Z")),
            Some(at("1950-01-01T00:00:00Z"))
        );
        assert_eq!(
            der::time((0x18, b"20500101000000Z")),
            Some(at("2050-01-01T00:00:00Z"))
        );
        for (tag, raw) in [
            (0x17, &b"250307235959"[..]),
            (0x17, b"2503072359Z"),
            (0x17, b"251307235959Z"),
            (0x17, b"25030723595+Z"),
            (0x18, b"250307235959Z"),
            (0x04, b"250307235959Z"),
        ] {
            assert_eq!(der::time((tag, raw)), None, "{raw:?}");
        }
    }

    /// A P-256 self-signed certificate (openssl req -x509 -newkey ec).
    const EC_CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBizCCATGgAwIBAgIUeJeL3AHAbBURAuO3Gz6jhKKzBpQwCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPbm90LXJzYS5leGFtcGxlMCAXDTI2MTEyODAwMjMyOVoYDzIx
MjYxMTA0MDAyMzI5WjAaMRgwFgYDVQQDDA9ub3QtcnNhLmV4YW1wbGUwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAAQg0XWwxe2JeR8v1M1KBJlB3RB06bnKQPcCz9Sb
m4cjrGBIRm2B7hP0ErkI1wPI4DZTOIBHlCYgP41JIkKZB1bpo1MwUTAdBgNVHQ4E
FgQUnvL1XMzyG9P2lPy54dD0AUKQyuwwHwYDVR0jBBgwFoAUnvL1XMzyG9P2lPy5
4dD0AUKQyuwwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEAp2CQ
uTfhuGB5vjiooosW7Ix67+Yk4lZLzs8ElUHCOGACIEH1nNPSQGeVkBvviRb9L1HF
uVYsHiWuxSTtehDPX0nu
-----END CERTIFICATE-----
";

    #[test]
    fn a_certificate_without_an_rsa_key_is_refused() {
        assert_eq!(
            SigningCertificate::from_pem(EC_CERT_PEM.as_bytes()),
            Err(SignatureError::CertificateInvalid("key is not RSA"))
        );
    }

    #[test]
    fn a_truncated_or_extended_certificate_is_invalid() {
        let der = CertificateDer::from_pem_slice(EC_CERT_PEM.as_bytes()).unwrap();
        let der: &[u8] = der.as_ref();
        let mut longer = der.to_vec();
        longer.push(0);
        let mut inner_trailer = der.to_vec();
        // One more byte inside the outer SEQUENCE (length 0x018b -> 0x018c).
        inner_trailer[3] += 1;
        inner_trailer.push(0);
        for bad in [&der[..der.len() - 1], &der[..40], &longer, &inner_trailer] {
            assert_eq!(
                SigningCertificate::from_der(bad),
                Err(SignatureError::CertificateInvalid(
                    "not an X.509 certificate"
                ))
            );
        }
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
