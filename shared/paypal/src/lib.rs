//! PayPal REST client: OAuth2 client-credentials, Orders v2 (create, get,
//! capture), capture refunds, and webhook signature verification.
//!
//! # Idempotency and retries
//!
//! Create, capture and refund carry a `PayPal-Request-Id` chosen by the
//! caller and derived from our own ids (never random per attempt): PayPal
//! answers a repeated request id with the first result and applies nothing
//! twice. So every "maybe applied" error ([`PayPalError::Timeout`],
//! [`PayPalError::Upstream`]) is settled by retrying with the *same* request
//! id, or by reading the order ([`PayPalClient::get_order`]).
//!
//! The client itself retries exactly one thing: a 401 on an API call (the
//! cached token was revoked or expired early) gets one fresh token and one
//! more attempt with the same request id. A 401 at the token endpoint reads
//! the credentials again from their secret and, if they changed, asks once
//! more (`oauth.rs`). Every call has a timeout.
//!
//! A 422 `ORDER_ALREADY_CAPTURED` on capture is not an error: the order is
//! read and returned, so a second capture (ours, after a crash, or racing the
//! webhook) sees the same capture id and amount.
//!
//! Credentials, access tokens and payer data (names, emails) are never
//! logged nor put in an error.

mod answer;
mod dispute;
mod error;
mod model;
mod oauth;
mod reporting;
pub mod signature;
mod verifier;
mod webhook;

pub use dispute::{Dispute, parse_dispute};
pub use error::{ConfigError, PayPalError};
pub use model::{Capture, CaptureStatus, Order, OrderStatus, Refund, RefundStatus, parse_order};
pub use reporting::{
    MAX_PAGE_SIZE as REPORTING_MAX_PAGE_SIZE, ReportedTransaction, TransactionKind,
    TransactionPage, TransactionQuery, TransactionStatus,
};
pub use signature::{SignatureError, SigningCertificate};
pub use verifier::{
    PAYPAL_CERT_URL_PREFIXES, PAYPAL_SANDBOX_CERT_URL_PREFIXES, PayPalMode, WebhookVerifier,
};
pub use webhook::{
    HEADER_AUTH_ALGO, HEADER_CERT_URL, HEADER_TRANSMISSION_ID, HEADER_TRANSMISSION_SIG,
    HEADER_TRANSMISSION_TIME, ResourceKind, WebhookEvent, WebhookHeaders, WebhookResource,
    acted_on_resource, parse_webhook_event,
};

pub use answer::FUNDING_DECLINES;
use answer::{expect_success, has_issue, is_code};
use billing_config::{Rereadable, SecretSpec, SecretValue, Secrets};
use billing_money::Usd;
use oauth::{CachedToken, CredentialSource, Credentials};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// PayPal's base URL: `PAYPAL_BASE_URL` (set by the deploy to
/// `https://api-m.sandbox.paypal.com` or `https://api-m.paypal.com`).
pub const BASE_URL_ENV: &str = "PAYPAL_BASE_URL";
/// Where the local stand-in listens when `PAYPAL_BASE_URL` is not set.
pub const LOCAL_BASE_URL: &str = "http://127.0.0.1:8092";

/// REST app client id: field `clientId` of the secret named by
/// `PAYPAL_SECRET_ARN`, locally `PAYPAL_CLIENT_ID`.
pub const CLIENT_ID_SECRET: SecretSpec = SecretSpec {
    arn_env: "PAYPAL_SECRET_ARN",
    field: Some("clientId"),
    local_env: "PAYPAL_CLIENT_ID",
    local_default: Some("local-client"),
};

/// REST app secret: field `clientSecret` of `PAYPAL_SECRET_ARN`, locally
/// `PAYPAL_CLIENT_SECRET`.
pub const CLIENT_SECRET_SECRET: SecretSpec = SecretSpec {
    arn_env: "PAYPAL_SECRET_ARN",
    field: Some("clientSecret"),
    local_env: "PAYPAL_CLIENT_SECRET",
    local_default: Some("local-secret"),
};

/// The webhook's id (for signature verification): field `webhookId` of
/// `PAYPAL_SECRET_ARN`, locally `PAYPAL_WEBHOOK_ID`.
pub const WEBHOOK_ID_SECRET: SecretSpec = SecretSpec {
    arn_env: "PAYPAL_SECRET_ARN",
    field: Some("webhookId"),
    local_env: "PAYPAL_WEBHOOK_ID",
    local_default: Some("local-webhook"),
};

/// Per-call timeout when `PAYPAL_TIMEOUT_MS` is not set.
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
const MAX_TIMEOUT_MS: u64 = 60_000;
/// A cached token is renewed this long before PayPal says it expires.
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Responses larger than this are not PayPal's and are not read further.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// PayPal's limits on ids we send.
const MAX_ID_LEN: usize = 127;
const MAX_REQUEST_ID_LEN: usize = 108;
const MAX_NOTE_LEN: usize = 255;

/// An order to create: one purchase unit, intent CAPTURE, in USD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateOrder {
    /// Positive, in USD.
    pub amount: Usd,
    /// Our user id (`purchase_units[0].custom_id`), 1..=127 chars.
    pub custom_id: String,
    /// Our purchase id (`purchase_units[0].invoice_id`), 1..=127 chars.
    /// PayPal refuses to capture two orders with the same invoice id.
    pub invoice_id: String,
    /// Shown to the buyer, at most 127 chars.
    pub description: String,
    /// `PayPal-Request-Id`: derived from our purchase id, never random, so a
    /// retry returns the same order.
    pub request_id: String,
    /// Where PayPal sends the buyer after approval / cancellation (optional:
    /// the JS SDK flow needs neither).
    pub return_url: Option<String>,
    pub cancel_url: Option<String>,
}

/// A PayPal client; build it once per cold start and share it (clones share
/// the connection pool and the cached token).
#[derive(Clone)]
pub struct PayPalClient {
    http: reqwest::Client,
    /// Base URL without a trailing slash.
    base: String,
    /// The REST app's credentials; replaced when PayPal refuses them and
    /// their secret holds new ones (see `oauth.rs`).
    credentials: Arc<tokio::sync::RwLock<Credentials>>,
    credential_source: Option<CredentialSource>,
    webhook_id: Option<String>,
    verifier: WebhookVerifier,
    token: Arc<tokio::sync::Mutex<Option<CachedToken>>>,
    timeout: Duration,
}

impl fmt::Debug for PayPalClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayPalClient")
            .field("base", &self.base)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Builds the client from configuration: base URL from `PAYPAL_BASE_URL`
/// (default [`LOCAL_BASE_URL`], but required when `PAYPAL_SECRET_ARN` is set
/// or inside Lambda), credentials and webhook id through [`Secrets`]
/// ([`CLIENT_ID_SECRET`], [`CLIENT_SECRET_SECRET`], [`WEBHOOK_ID_SECRET`]),
/// timeout from `PAYPAL_TIMEOUT_MS` (default [`DEFAULT_TIMEOUT_MS`]).
pub async fn from_env(secrets: &Arc<Secrets>) -> Result<PayPalClient, ConfigError> {
    let timeout = parse_timeout_ms(billing_config::env_opt("PAYPAL_TIMEOUT_MS").as_deref())?;
    let base_url = match billing_config::env_opt(BASE_URL_ENV) {
        Some(url) => url,
        None if billing_config::env_opt(CLIENT_ID_SECRET.arn_env).is_some() => {
            return Err(ConfigError::BaseUrl(
                "must be set when PAYPAL_SECRET_ARN is",
            ));
        }
        // Inside Lambda the local stand-in's URL is never a default.
        None if billing_config::in_lambda() => {
            tracing::error!("PAYPAL_BASE_URL is not set inside Lambda; refusing the stand-in URL");
            return Err(ConfigError::BaseUrl("must be set inside AWS Lambda"));
        }
        None => LOCAL_BASE_URL.to_owned(),
    };
    PayPalClient::from_secrets(&base_url, timeout, secrets).await
}

fn parse_timeout_ms(raw: Option<&str>) -> Result<Duration, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Duration::from_millis(DEFAULT_TIMEOUT_MS));
    };
    match raw.trim().parse::<u64>() {
        Ok(ms) if (1..=MAX_TIMEOUT_MS).contains(&ms) => Ok(Duration::from_millis(ms)),
        _ => Err(ConfigError::Timeout),
    }
}

/// The base URL: http(s), no credentials, query or fragment; no trailing
/// slash. Errors never repeat the URL.
fn base_url(raw: &str) -> Result<String, ConfigError> {
    let trimmed = raw.trim().trim_end_matches('/');
    let url = reqwest::Url::parse(trimmed).map_err(|_| ConfigError::BaseUrl("is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::BaseUrl("must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::BaseUrl("must not contain credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() || url.cannot_be_a_base() {
        return Err(ConfigError::BaseUrl("must not have a query or fragment"));
    }
    Ok(trimmed.to_owned())
}

impl PayPalClient {
    /// `base_url` is PayPal's API root (`https://api-m.paypal.com`). `timeout`
    /// bounds each HTTP call (the token call and the API call separately);
    /// connecting is bounded by half of it, so a slow connect is
    /// [`PayPalError::NotSent`] rather than [`PayPalError::Timeout`].
    pub fn new(
        base_url: &str,
        client_id: SecretValue,
        client_secret: SecretValue,
        timeout: Duration,
    ) -> Result<PayPalClient, ConfigError> {
        let base = self::base_url(base_url)?;
        if timeout.is_zero() {
            return Err(ConfigError::Timeout);
        }
        if client_id.expose().is_empty() || client_secret.expose().is_empty() {
            return Err(ConfigError::Credentials);
        }
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout / 2)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| ConfigError::Http)?;
        let mut verifier = WebhookVerifier::for_mode(timeout, PayPalMode::of_base_url(&base))?;
        if is_loopback(&base) {
            // The local stand-in serves its own signing certificate; a base URL
            // on this machine can only be the stand-in, never PayPal.
            verifier = verifier.allow_cert_prefix(format!("{base}/v1/notifications/certs/"));
        }
        Ok(PayPalClient {
            http,
            base,
            credentials: Arc::new(tokio::sync::RwLock::new(Credentials {
                id: client_id,
                secret: client_secret,
            })),
            credential_source: None,
            webhook_id: None,
            verifier,
            token: Arc::new(tokio::sync::Mutex::new(None)),
            timeout,
        })
    }

    /// The client of `base_url` with the credentials and webhook id of
    /// `secrets` ([`CLIENT_ID_SECRET`], [`CLIENT_SECRET_SECRET`],
    /// [`WEBHOOK_ID_SECRET`]); credentials PayPal refuses (401 at the token
    /// endpoint) are read again from there once, so a rotated secret needs no
    /// redeploy.
    pub async fn from_secrets(
        base_url: &str,
        timeout: Duration,
        secrets: &Arc<Secrets>,
    ) -> Result<PayPalClient, ConfigError> {
        let client_id = secrets.resolve(CLIENT_ID_SECRET).await?;
        let client_secret = secrets.resolve(CLIENT_SECRET_SECRET).await?;
        let webhook_id = secrets.resolve(WEBHOOK_ID_SECRET).await?;
        Ok(
            PayPalClient::new(base_url, client_id, client_secret, timeout)?
                .with_webhook_id(webhook_id.expose())
                .with_credential_source(
                    Rereadable::new(secrets.clone(), CLIENT_ID_SECRET),
                    Rereadable::new(secrets.clone(), CLIENT_SECRET_SECRET),
                ),
        )
    }

    /// Where to read the credentials again when PayPal refuses them.
    pub fn with_credential_source(mut self, id: Rereadable, secret: Rereadable) -> PayPalClient {
        self.credential_source = Some(CredentialSource { id, secret });
        self
    }

    /// Sets the webhook id used to verify deliveries ([`from_env`] does).
    pub fn with_webhook_id(mut self, webhook_id: impl Into<String>) -> PayPalClient {
        self.webhook_id = Some(webhook_id.into()).filter(|id| !id.is_empty());
        self
    }

    /// The configured webhook id, for [`verify_webhook`](Self::verify_webhook).
    pub fn webhook_id(&self) -> Option<&str> {
        self.webhook_id.as_deref()
    }

    /// Replaces the offline webhook verifier (e.g. one with a fixed clock).
    pub fn with_webhook_verifier(mut self, verifier: WebhookVerifier) -> PayPalClient {
        self.verifier = verifier;
        self
    }

    /// The offline webhook verifier: PayPal's certificate hosts only (plus
    /// the stand-in's when the base URL is on this machine).
    pub fn webhook_verifier(&self) -> &WebhookVerifier {
        &self.verifier
    }

    /// Verifies a delivery offline (no call to PayPal's API; the signing
    /// certificate is fetched once per URL and cached). See [`WebhookVerifier`].
    pub async fn verify_webhook(
        &self,
        headers: &WebhookHeaders,
        webhook_id: &str,
        raw_body: &[u8],
    ) -> Result<(), SignatureError> {
        self.verifier.verify(headers, webhook_id, raw_body).await
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST /v2/checkout/orders`: intent CAPTURE, one purchase unit in USD,
    /// with `PayPal-Request-Id: req.request_id`. The answer carries the
    /// order id, its status (`CREATED`) and the approve URL.
    pub async fn create_order(&self, req: &CreateOrder) -> Result<Order, PayPalError> {
        if !req.amount.is_positive() {
            return Err(PayPalError::Invalid("order amount must be positive".into()));
        }
        check_text("custom_id", &req.custom_id, 1)?;
        check_text("invoice_id", &req.invoice_id, 1)?;
        check_text("description", &req.description, 0)?;
        let request_id = request_id(&req.request_id)?;
        let experience_context = match (&req.return_url, &req.cancel_url) {
            (None, None) => None,
            (return_url, cancel_url) => Some(ExperienceContext {
                return_url: return_url.as_deref(),
                cancel_url: cancel_url.as_deref(),
            }),
        };
        let body = CreateOrderBody {
            intent: "CAPTURE",
            purchase_units: [PurchaseUnitBody {
                amount: AmountBody {
                    currency_code: "USD",
                    value: req.amount,
                },
                custom_id: &req.custom_id,
                invoice_id: &req.invoice_id,
                description: (!req.description.is_empty()).then_some(req.description.as_str()),
            }],
            payment_source: experience_context.map(|experience_context| PaymentSourceBody {
                paypal: PayPalSourceBody { experience_context },
            }),
        };
        let body = encode(&body)?;
        let url = format!("{}/v2/checkout/orders", self.base);
        let (status, body) = self
            .call(
                "create_order",
                Method::POST,
                &url,
                Some(request_id),
                Some(body),
            )
            .await?;
        expect_success("create_order", status, &body)?;
        model::parse_order(&body)
    }

    /// `GET /v2/checkout/orders/{id}`; 404 is [`PayPalError::NotFound`].
    pub async fn get_order(&self, order_id: &str) -> Result<Order, PayPalError> {
        let url = format!("{}/v2/checkout/orders/{}", self.base, id_segment(order_id)?);
        let (status, body) = self
            .call("get_order", Method::GET, &url, None, None)
            .await?;
        expect_success("get_order", status, &body)?;
        model::parse_order(&body)
    }

    /// `GET /v2/payments/captures/{id}`: a capture on its own (its order id
    /// from `supplementary_data.related_ids` or the `up` link), to match a
    /// webhook about a capture we have not recorded; 404 is
    /// [`PayPalError::NotFound`].
    pub async fn get_capture(&self, capture_id: &str) -> Result<Capture, PayPalError> {
        let url = format!(
            "{}/v2/payments/captures/{}",
            self.base,
            id_segment(capture_id)?
        );
        let (status, body) = self
            .call("get_capture", Method::GET, &url, None, None)
            .await?;
        expect_success("get_capture", status, &body)?;
        let raw: &serde_json::value::RawValue = serde_json::from_slice(&body)
            .map_err(|_| PayPalError::BadResponse("capture is not the expected JSON".into()))?;
        model::parse_capture_raw(raw)
    }

    /// `POST /v2/checkout/orders/{id}/capture` with `PayPal-Request-Id` and
    /// `Prefer: return=representation`. An order captured already (422
    /// `ORDER_ALREADY_CAPTURED`) is read with [`get_order`](Self::get_order)
    /// and returned as a success; 422 `ORDER_NOT_APPROVED` is
    /// [`PayPalError::NotApproved`].
    ///
    /// Check each capture's status: a `PENDING` or `DECLINED` capture is a
    /// successful call too.
    pub async fn capture_order(
        &self,
        order_id: &str,
        request_id: &str,
    ) -> Result<Order, PayPalError> {
        let url = format!(
            "{}/v2/checkout/orders/{}/capture",
            self.base,
            id_segment(order_id)?
        );
        let request_id = self::request_id(request_id)?;
        let (status, body) = self
            .call(
                "capture_order",
                Method::POST,
                &url,
                Some(request_id),
                Some(b"{}".to_vec()),
            )
            .await?;
        if status == StatusCode::UNPROCESSABLE_ENTITY && has_issue(&body, "ORDER_ALREADY_CAPTURED")
        {
            tracing::info!(order_id, "PayPal order captured already; reading it");
            return self.get_order(order_id).await;
        }
        expect_success("capture_order", status, &body)?;
        model::parse_order(&body)
    }

    /// `POST /v2/payments/captures/{id}/refund` with `PayPal-Request-Id`:
    /// `amount: None` refunds what remains of the capture (empty body),
    /// `Some(partial)` that much. Refunding more than remains is
    /// `Rejected { status: 422, issue: Some("REFUND_AMOUNT_EXCEEDED") }` (or
    /// `CAPTURE_FULLY_REFUNDED`). `note` is shown to the payer.
    pub async fn refund_capture(
        &self,
        capture_id: &str,
        amount: Option<Usd>,
        request_id: &str,
        note: Option<&str>,
    ) -> Result<Refund, PayPalError> {
        let url = format!(
            "{}/v2/payments/captures/{}/refund",
            self.base,
            id_segment(capture_id)?
        );
        let request_id = self::request_id(request_id)?;
        if amount.is_some_and(|a| !a.is_positive()) {
            return Err(PayPalError::Invalid(
                "refund amount must be positive".into(),
            ));
        }
        if note.is_some_and(|note| note.chars().count() > MAX_NOTE_LEN) {
            return Err(PayPalError::Invalid("refund note is too long".into()));
        }
        let body = if amount.is_none() && note.is_none() {
            None
        } else {
            Some(encode(&RefundBody {
                amount: amount.map(|value| AmountBody {
                    currency_code: "USD",
                    value,
                }),
                note_to_payer: note,
            })?)
        };
        let (status, body) = self
            .call("refund_capture", Method::POST, &url, Some(request_id), body)
            .await?;
        expect_success("refund_capture", status, &body)?;
        model::parse_refund(&body)
    }

    /// The online fallback (not used by the webhook function, which verifies
    /// offline with [`verify_webhook`](Self::verify_webhook)):
    /// `POST /v1/notifications/verify-webhook-signature` with the delivery's
    /// headers, `webhook_id`, and the raw event embedded verbatim as
    /// `webhook_event` (not re-serialized, so PayPal checks the bytes it
    /// signed). True only for `verification_status: "SUCCESS"`.
    ///
    /// A body that is not JSON is [`PayPalError::Invalid`] (nothing sent).
    pub async fn verify_webhook_signature(
        &self,
        headers: &WebhookHeaders,
        webhook_id: &str,
        raw_body: &[u8],
    ) -> Result<bool, PayPalError> {
        if webhook_id.is_empty() {
            return Err(PayPalError::Invalid("webhook id is empty".into()));
        }
        let text = std::str::from_utf8(raw_body)
            .map_err(|_| PayPalError::Invalid("webhook body is not UTF-8".into()))?;
        let event: &RawValue = serde_json::from_str(text)
            .map_err(|_| PayPalError::Invalid("webhook body is not JSON".into()))?;
        let body = encode(&VerifyBody {
            auth_algo: &headers.auth_algo,
            cert_url: &headers.cert_url,
            transmission_id: &headers.transmission_id,
            transmission_sig: &headers.transmission_sig,
            transmission_time: &headers.transmission_time,
            webhook_id,
            webhook_event: event,
        })?;
        let url = format!("{}/v1/notifications/verify-webhook-signature", self.base);
        let (status, body) = self
            .call("verify_webhook", Method::POST, &url, None, Some(body))
            .await?;
        expect_success("verify_webhook", status, &body)?;
        let answer: VerifyAnswer = serde_json::from_slice(&body).map_err(|_| {
            PayPalError::BadResponse("no verification_status in verify response".into())
        })?;
        let verified = answer.verification_status == "SUCCESS";
        if !verified {
            tracing::warn!(
                transmission_id = %headers.transmission_id,
                "PayPal webhook signature not verified"
            );
        }
        Ok(verified)
    }

    // ----------------------------------------------------------- plumbing

    /// Sends one API call with a bearer token; on 401 gets a fresh token and
    /// sends it once more. Returns the status and body of any HTTP answer
    /// (401 after the refresh is [`PayPalError::Auth`]).
    async fn call(
        &self,
        operation: &'static str,
        method: Method,
        url: &str,
        request_id: Option<HeaderValue>,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Vec<u8>), PayPalError> {
        let mut token = self.token().await?;
        for attempt in 0..2 {
            let mut request = self
                .http
                .request(method.clone(), url)
                .header(AUTHORIZATION, bearer(&token)?);
            if let Some(request_id) = &request_id {
                request = request.header("PayPal-Request-Id", request_id.clone());
            }
            if method == Method::POST {
                request = request.header("Prefer", "return=representation");
            }
            if let Some(body) = &body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let (status, response_body) = send(operation, request).await?;
            if status != StatusCode::UNAUTHORIZED {
                return Ok((status, response_body));
            }
            if attempt == 0 {
                tracing::info!(operation, "PayPal refused the access token; refreshing it");
                token = self.refresh_token(&token).await?;
            }
        }
        tracing::warn!(operation, "PayPal refused a fresh access token");
        Err(PayPalError::Auth)
    }
}

/// Sends one request and reads the answer (status and bounded body).
async fn send(
    operation: &'static str,
    request: reqwest::RequestBuilder,
) -> Result<(StatusCode, Vec<u8>), PayPalError> {
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(e) => {
            let error = classify_send_error(&e);
            // reqwest's message names the URL (no secrets), never the headers.
            tracing::warn!(operation, error = %e, outcome = %error, "PayPal call failed");
            return Err(error);
        }
    };
    let status = response.status();
    match read_body(&mut response).await {
        Ok(body) => Ok((status, body)),
        Err(reason) if status.is_success() => {
            tracing::warn!(
                operation,
                status = status.as_u16(),
                reason,
                "PayPal response unreadable"
            );
            Err(PayPalError::BadResponse(reason.to_owned()))
        }
        // An error answer whose body is lost is still that error.
        Err(_) => Ok((status, Vec::new())),
    }
}

/// Connect failures happen before a byte of the request is written; anything
/// later may have reached PayPal.
fn classify_send_error(e: &reqwest::Error) -> PayPalError {
    if e.is_connect() {
        PayPalError::NotSent
    } else if e.is_builder() {
        PayPalError::Invalid("request could not be built".into())
    } else {
        PayPalError::Timeout
    }
}

async fn read_body(response: &mut reqwest::Response) -> Result<Vec<u8>, &'static str> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| "body could not be read")?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err("body too large");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn bearer(token: &SecretValue) -> Result<HeaderValue, PayPalError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .map_err(|_| PayPalError::Auth)?;
    value.set_sensitive(true);
    Ok(value)
}

fn request_id(id: &str) -> Result<HeaderValue, PayPalError> {
    let usable = !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id.bytes().all(|b| b.is_ascii_graphic());
    if !usable {
        return Err(PayPalError::Invalid(
            "PayPal-Request-Id must be 1..=108 visible ASCII characters".into(),
        ));
    }
    HeaderValue::from_str(id)
        .map_err(|_| PayPalError::Invalid("PayPal-Request-Id is not a header value".into()))
}

/// A base URL on this machine (`127.0.0.1`, `localhost`, `[::1]`): the stand-in.
fn is_loopback(base: &str) -> bool {
    reqwest::Url::parse(base).is_ok_and(|url| match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    })
}

/// PayPal ids are short `[A-Za-z0-9_-]` words; anything else would change the
/// path and is refused before sending.
fn id_segment(id: &str) -> Result<&str, PayPalError> {
    if is_code(id) {
        Ok(id)
    } else {
        Err(PayPalError::Invalid("not a PayPal id".into()))
    }
}

fn check_text(field: &str, value: &str, min_chars: usize) -> Result<(), PayPalError> {
    let chars = value.chars().count();
    if chars < min_chars || chars > MAX_ID_LEN {
        return Err(PayPalError::Invalid(format!(
            "{field} must be {min_chars}..={MAX_ID_LEN} characters"
        )));
    }
    Ok(())
}

fn encode<T: Serialize>(body: &T) -> Result<Vec<u8>, PayPalError> {
    serde_json::to_vec(body)
        .map_err(|_| PayPalError::Invalid("request body could not be encoded".into()))
}

// ------------------------------------------------------------------ wire

#[derive(Serialize)]
struct CreateOrderBody<'a> {
    intent: &'static str,
    purchase_units: [PurchaseUnitBody<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_source: Option<PaymentSourceBody<'a>>,
}

#[derive(Serialize)]
struct PurchaseUnitBody<'a> {
    amount: AmountBody,
    custom_id: &'a str,
    invoice_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
}

#[derive(Serialize)]
struct AmountBody {
    currency_code: &'static str,
    /// Serialized as a string, `"10.00"`.
    value: Usd,
}

#[derive(Serialize)]
struct PaymentSourceBody<'a> {
    paypal: PayPalSourceBody<'a>,
}

#[derive(Serialize)]
struct PayPalSourceBody<'a> {
    experience_context: ExperienceContext<'a>,
}

#[derive(Serialize)]
struct ExperienceContext<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    return_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancel_url: Option<&'a str>,
}

#[derive(Serialize)]
struct RefundBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<AmountBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note_to_payer: Option<&'a str>,
}

#[derive(Serialize)]
struct VerifyBody<'a> {
    auth_algo: &'a str,
    cert_url: &'a str,
    transmission_id: &'a str,
    transmission_sig: &'a str,
    transmission_time: &'a str,
    webhook_id: &'a str,
    webhook_event: &'a RawValue,
}

#[derive(Deserialize)]
struct VerifyAnswer {
    verification_status: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::ErrorSummary;

    fn usd(cents: i64) -> Usd {
        Usd::from_cents(cents).unwrap()
    }

    #[test]
    fn create_body_is_exact_json() {
        let body = CreateOrderBody {
            intent: "CAPTURE",
            purchase_units: [PurchaseUnitBody {
                amount: AmountBody {
                    currency_code: "USD",
                    value: usd(1050),
                },
                custom_id: "user-1",
                invoice_id: "purchase-1",
                description: Some("Custom credits"),
            }],
            payment_source: None,
        };
        assert_eq!(
            String::from_utf8(encode(&body).unwrap()).unwrap(),
            r#"{"intent":"CAPTURE","purchase_units":[{"amount":{"currency_code":"USD","value":"10.50"},"custom_id":"user-1","invoice_id":"purchase-1","description":"Custom credits"}]}"#
        );
    }

    #[test]
    fn refund_bodies() {
        let partial = RefundBody {
            amount: Some(AmountBody {
                currency_code: "USD",
                value: usd(500),
            }),
            note_to_payer: None,
        };
        assert_eq!(
            encode(&partial).unwrap(),
            br#"{"amount":{"currency_code":"USD","value":"5.00"}}"#
        );
        let note_only = RefundBody {
            amount: None,
            note_to_payer: Some("sorry"),
        };
        assert_eq!(encode(&note_only).unwrap(), br#"{"note_to_payer":"sorry"}"#);
    }

    #[test]
    fn verify_body_embeds_the_event_verbatim() {
        let raw = r#"{"id":"WH-1",  "event_type":"X","resource":{"amount":{"value":"10.10"}}}"#;
        let event: &RawValue = serde_json::from_str(raw).unwrap();
        let body = encode(&VerifyBody {
            auth_algo: "SHA256withRSA",
            cert_url: "https://c",
            transmission_id: "t",
            transmission_sig: "s",
            transmission_time: "2025-01-01T00:00:00Z",
            webhook_id: "WID",
            webhook_event: event,
        })
        .unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.ends_with(&format!(r#""webhook_event":{raw}}}"#)),
            "{text}"
        );
    }

    #[test]
    fn error_bodies_are_summarised_safely() {
        let summary = ErrorSummary::read(
            br#"{"name":"UNPROCESSABLE_ENTITY","debug_id":"f00ba4","message":"x",
                 "details":[{"issue":"ORDER_ALREADY_CAPTURED","description":"Order already captured."},
                            {"issue":"has spaces, buyer@example.com"}]}"#,
        );
        assert_eq!(summary.name.as_deref(), Some("UNPROCESSABLE_ENTITY"));
        assert_eq!(summary.debug_id.as_deref(), Some("f00ba4"));
        assert_eq!(summary.issues, ["ORDER_ALREADY_CAPTURED"]);
        assert!(ErrorSummary::read(b"<html>").issues.is_empty());
    }

    #[test]
    fn statuses_map_to_errors() {
        let check = |status: u16, body: &str| {
            expect_success("t", StatusCode::from_u16(status).unwrap(), body.as_bytes()).err()
        };
        assert_eq!(check(201, ""), None);
        assert_eq!(check(404, "{}"), Some(PayPalError::NotFound));
        assert_eq!(
            check(422, r#"{"details":[{"issue":"ORDER_NOT_APPROVED"}]}"#),
            Some(PayPalError::NotApproved)
        );
        assert_eq!(
            check(422, r#"{"details":[{"issue":"REFUND_AMOUNT_EXCEEDED"}]}"#),
            Some(PayPalError::Rejected {
                status: 422,
                issue: Some("REFUND_AMOUNT_EXCEEDED".into())
            })
        );
        assert_eq!(
            check(400, "not json"),
            Some(PayPalError::Rejected {
                status: 400,
                issue: None
            })
        );
        for issue in FUNDING_DECLINES {
            assert_eq!(
                check(422, &format!(r#"{{"details":[{{"issue":"{issue}"}}]}}"#)),
                Some(PayPalError::FundingDeclined {
                    issue: issue.into()
                }),
                "{issue}"
            );
        }
        assert_eq!(
            check(
                409,
                r#"{"name":"RESOURCE_CONFLICT","details":[{"issue":"PREVIOUS_REQUEST_IN_PROGRESS"}]}"#
            ),
            Some(PayPalError::RequestInProgress)
        );
        assert!(PayPalError::RequestInProgress.is_transient());
        assert_eq!(check(503, ""), Some(PayPalError::Upstream { status: 503 }));
        assert_eq!(check(302, ""), Some(PayPalError::Upstream { status: 302 }));
    }

    #[test]
    fn ids_and_request_ids_are_checked() {
        assert!(id_segment("5O190127TN364715T").is_ok());
        for bad in ["", "a/b", "..", "a b", "x?y", &"A".repeat(65)] {
            assert!(
                matches!(id_segment(bad), Err(PayPalError::Invalid(_))),
                "{bad}"
            );
        }
        assert!(request_id("purchase-42-capture").is_ok());
        for bad in ["", "a b", "é", "line\nbreak", &"r".repeat(109)] {
            assert!(
                matches!(request_id(bad), Err(PayPalError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn base_url_must_be_plain_http() {
        assert_eq!(
            base_url("https://api-m.paypal.com/").unwrap(),
            "https://api-m.paypal.com"
        );
        for bad in [
            "",
            "api-m.paypal.com",
            "ftp://x",
            "https://u:p@x",
            "https://x/?a=1",
        ] {
            let err = base_url(bad).unwrap_err();
            assert!(!err.to_string().contains("u:p"), "{bad}");
        }
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let client = PayPalClient::new(
            "http://pp.local",
            SecretValue::new("the-client-id"),
            SecretValue::new("the-client-secret"),
            Duration::from_secs(1),
        )
        .unwrap();
        let debug = format!("{client:?}");
        assert!(!debug.contains("the-client"), "{debug}");
        assert!(
            PayPalClient::new(
                "http://x",
                SecretValue::new(""),
                SecretValue::new("s"),
                Duration::from_secs(1)
            )
            .is_err()
        );
        assert!(
            PayPalClient::new(
                "http://x",
                SecretValue::new("i"),
                SecretValue::new("s"),
                Duration::ZERO
            )
            .is_err()
        );
    }

    #[test]
    fn timeout_env_is_validated() {
        assert_eq!(parse_timeout_ms(None).unwrap(), Duration::from_millis(5000));
        assert_eq!(
            parse_timeout_ms(Some(" 250 ")).unwrap(),
            Duration::from_millis(250)
        );
        for bad in ["0", "-1", "1.5", "abc", "60001"] {
            assert!(
                matches!(parse_timeout_ms(Some(bad)), Err(ConfigError::Timeout)),
                "{bad}"
            );
        }
    }
}
