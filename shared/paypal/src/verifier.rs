//! The webhook verifier the function uses: offline checks
//! ([`crate::signature`]) with the signing certificate fetched from
//! `paypal-cert-url` — only from an allow-list of PayPal's own certificate
//! URLs, over HTTPS — and cached by URL, so that a flood of forged deliveries
//! costs no call to PayPal:
//!
//! 1. headers and algorithm are checked, and the transmission time is within
//!    [`DEFAULT_MAX_TRANSMISSION_SKEW`] of the clock (nothing fetched);
//! 2. a `paypal-cert-url` outside the allow-list is refused (nothing fetched);
//! 3. the certificate comes from the cache, or is fetched once (a
//!    refusal — no such certificate — is remembered for
//!    [`NEGATIVE_CACHE_TTL`], a network failure is not, and at most
//!    [`MAX_FETCHES_PER_MINUTE`] fetches leave one verifier per minute);
//! 4. its validity window is checked against the clock, then the signature.
//!
//! The clock is injectable ([`WebhookVerifier::with_clock`]) so recorded
//! deliveries can be checked as of their time.

use crate::signature::{
    self, AUTH_ALGO_SHA256_WITH_RSA, MAX_CERT_BYTES, SignatureError, SigningCertificate,
};
use crate::{ConfigError, WebhookHeaders};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// PayPal's live certificate URLs (API hosts, certificate path).
pub const PAYPAL_CERT_URL_PREFIXES: [&str; 2] = [
    "https://api.paypal.com/v1/notifications/certs/",
    "https://api-m.paypal.com/v1/notifications/certs/",
];
/// PayPal's sandbox certificate URLs: accepted only in sandbox mode.
pub const PAYPAL_SANDBOX_CERT_URL_PREFIXES: [&str; 2] = [
    "https://api.sandbox.paypal.com/v1/notifications/certs/",
    "https://api-m.sandbox.paypal.com/v1/notifications/certs/",
];

/// Which PayPal the deployment talks to (the template's `PayPalMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayPalMode {
    Live,
    Sandbox,
}

impl PayPalMode {
    /// The mode of the PayPal API at `base_url` (the template sets
    /// `PAYPAL_BASE_URL` from `PayPalMode`): sandbox for a
    /// `*.sandbox.paypal.com` host and for the local stand-in (loopback),
    /// live otherwise.
    pub fn of_base_url(base_url: &str) -> PayPalMode {
        let host = reqwest::Url::parse(base_url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_ascii_lowercase));
        match host {
            Some(host)
                if host.ends_with(".sandbox.paypal.com")
                    || host == "localhost"
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
                    || host == "[::1]" =>
            {
                PayPalMode::Sandbox
            }
            _ => PayPalMode::Live,
        }
    }
}
/// How far `paypal-transmission-time` may be from the clock.
pub const DEFAULT_MAX_TRANSMISSION_SKEW: Duration = Duration::from_secs(15 * 60);
/// How long a refused certificate URL (4xx, not a certificate) is remembered.
pub const NEGATIVE_CACHE_TTL: Duration = Duration::from_secs(300);
/// Certificate fetches one verifier may make per minute (cache misses only).
pub const MAX_FETCHES_PER_MINUTE: usize = 10;
/// Certificates kept (PayPal rotates its certificate about once a year).
const MAX_CACHED: usize = 32;

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Verifies PayPal webhook deliveries offline. Cheap to clone (shares its
/// cache); build it once per cold start.
#[derive(Clone)]
pub struct WebhookVerifier {
    http: reqwest::Client,
    allowed: Arc<Vec<String>>,
    clock: Clock,
    max_skew: Duration,
    cache: Arc<Mutex<Cache>>,
    fetch_lock: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Default)]
struct Cache {
    certs: HashMap<String, Result<Arc<SigningCertificate>, Instant>>,
    fetches: Vec<Instant>,
}

impl fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookVerifier")
            .field("allowed", &self.allowed)
            .field("max_skew", &self.max_skew)
            .finish_non_exhaustive()
    }
}

impl WebhookVerifier {
    /// Accepts certificates only from PayPal's live hosts
    /// ([`PAYPAL_CERT_URL_PREFIXES`], HTTPS).
    pub fn new(timeout: Duration) -> Result<WebhookVerifier, ConfigError> {
        WebhookVerifier::for_mode(timeout, PayPalMode::Live)
    }

    /// Accepts certificates from PayPal's hosts of `mode`: live ones only in
    /// live mode; in sandbox mode the sandbox ones too (sandbox deliveries,
    /// and the webhook simulator's, may name either).
    pub fn for_mode(timeout: Duration, mode: PayPalMode) -> Result<WebhookVerifier, ConfigError> {
        let sandbox: &[&str] = match mode {
            PayPalMode::Live => &[],
            PayPalMode::Sandbox => &PAYPAL_SANDBOX_CERT_URL_PREFIXES,
        };
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout / 2)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| ConfigError::Http)?;
        Ok(WebhookVerifier {
            http,
            allowed: Arc::new(
                PAYPAL_CERT_URL_PREFIXES
                    .iter()
                    .chain(sandbox)
                    .map(|p| (*p).to_owned())
                    .collect(),
            ),
            clock: Arc::new(SystemTime::now),
            max_skew: DEFAULT_MAX_TRANSMISSION_SKEW,
            cache: Arc::new(Mutex::new(Cache::default())),
            fetch_lock: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Also accepts certificate URLs under `prefix` (e.g. the local
    /// stand-in's `http://127.0.0.1:8092/v1/notifications/certs/`). Only for
    /// local stacks and tests: a deployment allows PayPal's hosts alone
    /// (see [`crate::from_env`]).
    pub fn allow_cert_prefix(mut self, prefix: impl Into<String>) -> WebhookVerifier {
        let mut allowed = (*self.allowed).clone();
        allowed.push(prefix.into());
        self.allowed = Arc::new(allowed);
        self
    }

    /// The clock used for the certificate's validity window and the
    /// transmission time.
    pub fn with_clock(
        mut self,
        clock: impl Fn() -> SystemTime + Send + Sync + 'static,
    ) -> WebhookVerifier {
        self.clock = Arc::new(clock);
        self
    }

    pub fn with_max_transmission_skew(mut self, skew: Duration) -> WebhookVerifier {
        self.max_skew = skew;
        self
    }

    /// Puts `cert` in the cache for `url` (e.g. a certificate obtained out of
    /// band, or recorded deliveries checked without a network). The URL must
    /// still be allowed for a delivery naming it to verify.
    pub fn with_certificate(self, url: &str, cert: SigningCertificate) -> WebhookVerifier {
        self.lock().certs.insert(url.to_owned(), Ok(Arc::new(cert)));
        self
    }

    /// Whether `url` is an allowed certificate URL: it starts with an allowed
    /// prefix, and has no query, fragment, credentials or dot segments.
    pub fn is_allowed_cert_url(&self, url: &str) -> bool {
        let Ok(parsed) = reqwest::Url::parse(url) else {
            return false;
        };
        let plain = parsed.query().is_none()
            && parsed.fragment().is_none()
            && parsed.username().is_empty()
            && parsed.password().is_none()
            // The parser resolves `..`: what it kept must be what was sent.
            && parsed.as_str() == url;
        plain
            && self.allowed.iter().any(|prefix| {
                url.len() > prefix.len()
                    && url.starts_with(prefix.as_str())
                    && url[prefix.len()..]
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    }

    /// Verifies one delivery: `Ok(())` only if PayPal's key signed exactly
    /// `raw_body` with these headers for `webhook_id`, with a certificate
    /// valid now, and the transmission is recent.
    #[tracing::instrument(skip_all, fields(transmission_id = %headers.transmission_id))]
    pub async fn verify(
        &self,
        headers: &WebhookHeaders,
        webhook_id: &str,
        raw_body: &[u8],
    ) -> Result<(), SignatureError> {
        let now = (self.clock)();
        if headers.auth_algo != AUTH_ALGO_SHA256_WITH_RSA {
            return Err(SignatureError::UnsupportedAlgorithm(
                headers.auth_algo.chars().take(32).collect(),
            ));
        }
        signature::check_transmission_time(headers, now, self.max_skew)?;
        if !self.is_allowed_cert_url(&headers.cert_url) {
            return Err(SignatureError::CertificateUrlNotAllowed);
        }
        let cert = self.certificate(&headers.cert_url).await?;
        signature::verify_offline(headers, webhook_id, raw_body, &cert, now)
    }

    /// How many certificates are cached (for tests and logs).
    pub fn cached_certificates(&self) -> usize {
        self.lock()
            .certs
            .values()
            .filter(|entry| entry.is_ok())
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached certificate, or `None` if a fetch is needed; a recent
    /// failure is an error without fetching.
    fn cached(&self, url: &str) -> Option<Result<Arc<SigningCertificate>, SignatureError>> {
        match self.lock().certs.get(url)? {
            Ok(cert) => Some(Ok(cert.clone())),
            Err(failed_at) if failed_at.elapsed() < NEGATIVE_CACHE_TTL => {
                Some(Err(SignatureError::CertificateInvalid("refused recently")))
            }
            Err(_) => None,
        }
    }

    async fn certificate(&self, url: &str) -> Result<Arc<SigningCertificate>, SignatureError> {
        if let Some(found) = self.cached(url) {
            return found;
        }
        // One fetch at a time: concurrent first deliveries share its result.
        let _single = self.fetch_lock.lock().await;
        if let Some(found) = self.cached(url) {
            return found;
        }
        {
            let mut cache = self.lock();
            cache
                .fetches
                .retain(|at| at.elapsed() < Duration::from_secs(60));
            if cache.fetches.len() >= MAX_FETCHES_PER_MINUTE {
                return Err(SignatureError::CertificateUnavailable("fetch budget spent"));
            }
            cache.fetches.push(Instant::now());
        }
        let fetched = self.fetch(url).await;
        let mut cache = self.lock();
        if cache.certs.len() >= MAX_CACHED {
            cache.certs.clear();
        }
        match fetched {
            Ok(cert) => {
                let cert = Arc::new(cert);
                cache.certs.insert(url.to_owned(), Ok(cert.clone()));
                Ok(cert)
            }
            Err(e) => {
                tracing::warn!(error = %e, "PayPal signing certificate not fetched");
                // A definite refusal (no such certificate, not a certificate) is
                // remembered; a network failure is not (the budget bounds retries).
                if !e.is_transient() {
                    cache.certs.insert(url.to_owned(), Err(Instant::now()));
                }
                Err(e)
            }
        }
    }

    async fn fetch(&self, url: &str) -> Result<SigningCertificate, SignatureError> {
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|_| SignatureError::CertificateUnavailable("no answer"))?;
        let status = response.status();
        if status.is_client_error() {
            return Err(SignatureError::CertificateInvalid(
                "PayPal has no such certificate",
            ));
        }
        if !status.is_success() {
            return Err(SignatureError::CertificateUnavailable(
                "PayPal answered an error",
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| SignatureError::CertificateUnavailable("body lost"))?
        {
            if body.len() + chunk.len() > MAX_CERT_BYTES {
                return Err(SignatureError::CertificateInvalid("too large"));
            }
            body.extend_from_slice(&chunk);
        }
        SigningCertificate::from_pem(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paypal_cert_urls_are_allowed() {
        let verifier =
            WebhookVerifier::for_mode(Duration::from_secs(1), PayPalMode::Sandbox).unwrap();
        for ok in [
            "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1a5f47cb",
            "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77",
            "https://api-m.paypal.com/v1/notifications/certs/CERT-1",
        ] {
            assert!(verifier.is_allowed_cert_url(ok), "{ok}");
        }
        for bad in [
            "http://api.paypal.com/v1/notifications/certs/CERT-1",
            "https://api.paypal.com.evil.example/v1/notifications/certs/CERT-1",
            "https://evil.example/v1/notifications/certs/CERT-1",
            "https://api.paypal.com/v1/notifications/certs/",
            "https://api.paypal.com/v1/notifications/certs/../../oauth2/token",
            "https://api.paypal.com/v1/notifications/certs/CERT-1?x=1",
            "https://api.paypal.com/v1/notifications/certs/CERT-1#f",
            "https://user@api.paypal.com/v1/notifications/certs/CERT-1",
            "https://api.paypal.com:444/v1/notifications/certs/CERT-1",
            "https://api.paypal.com/v1/notifications/certs/a/b",
            "not a url",
            "",
        ] {
            assert!(!verifier.is_allowed_cert_url(bad), "{bad}");
        }
        let local = verifier.allow_cert_prefix("http://127.0.0.1:8092/v1/notifications/certs/");
        assert!(local.is_allowed_cert_url("http://127.0.0.1:8092/v1/notifications/certs/CERT-x"));
        assert!(!local.is_allowed_cert_url("http://127.0.0.1:8093/v1/notifications/certs/CERT-x"));
    }

    /// The certificate hosts follow `PayPalMode` (the base URL the template
    /// derives from it): a live deployment accepts no sandbox certificate.
    #[test]
    fn a_live_client_refuses_sandbox_certificates() {
        let client = |base: &str| {
            crate::PayPalClient::new(
                base,
                billing_config::SecretValue::new("id"),
                billing_config::SecretValue::new("secret"),
                Duration::from_secs(1),
            )
            .unwrap()
        };
        let live = client("https://api-m.paypal.com");
        let sandbox = client("https://api-m.sandbox.paypal.com");
        let sandbox_certs = [
            "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-1",
            "https://api-m.sandbox.paypal.com/v1/notifications/certs/CERT-1",
        ];
        let live_certs = [
            "https://api.paypal.com/v1/notifications/certs/CERT-1",
            "https://api-m.paypal.com/v1/notifications/certs/CERT-1",
        ];
        for url in sandbox_certs {
            assert!(!live.webhook_verifier().is_allowed_cert_url(url), "{url}");
            assert!(sandbox.webhook_verifier().is_allowed_cert_url(url), "{url}");
        }
        // Sandbox deliveries (the webhook simulator's too) may name live hosts.
        for url in live_certs {
            assert!(live.webhook_verifier().is_allowed_cert_url(url), "{url}");
            assert!(sandbox.webhook_verifier().is_allowed_cert_url(url), "{url}");
        }
    }
}
