//! VirtFusion API client (`{base}/api/v1`, `Authorization: Bearer <token>`):
//! read a user's token balance, add tokens, remove a credit.
//!
//! # Retry policy
//!
//! VirtFusion has no way to look a credit up by our reference, so a token
//! delivery may only be retried when it surely did not happen. Every error is
//! a [`VirtFusionError`] that says which case it is:
//!
//! - connection refused / DNS / connect timeout ([`VirtFusionError::NotSent`])
//!   and 4xx ([`VirtFusionError::Rejected`]): not applied, safe to retry later;
//! - a timeout after the request was sent, a lost connection, or a 5xx
//!   ([`VirtFusionError::Uncertain`]): maybe applied; the purchase goes to
//!   `needs_review` and is **never retried blindly**;
//! - 2xx with an unreadable body ([`VirtFusionError::BadResponse`]): applied,
//!   result unknown; also `needs_review`.
//!
//! The client itself retries one thing only: a 401 (refused, nothing
//! applied) is sent once more when the API token, read again from its
//! secret, has changed (a rotated token needs no redeploy). reqwest only
//! re-sends requests a server provably refused at the protocol level. Every
//! call has a timeout.
//! The API token is never logged nor put in an error.

mod error;

pub use error::{ConfigError, VirtFusionError};

use billing_config::{Rereadable, SecretSpec, SecretValue, Secrets};
use billing_money::{TokenBalance, Tokens};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// Base URL (without `/api/v1`): field `baseUrl` of the secret named by
/// `VIRTFUSION_SECRET_ARN`, locally `VIRTFUSION_BASE_URL`.
pub const BASE_URL_SECRET: SecretSpec = SecretSpec {
    arn_env: "VIRTFUSION_SECRET_ARN",
    field: Some("baseUrl"),
    local_env: "VIRTFUSION_BASE_URL",
    local_default: Some("http://127.0.0.1:8091"),
};

/// API token: field `apiToken` of the secret named by `VIRTFUSION_SECRET_ARN`,
/// locally `VIRTFUSION_API_TOKEN`.
pub const API_TOKEN_SECRET: SecretSpec = SecretSpec {
    arn_env: "VIRTFUSION_SECRET_ARN",
    field: Some("apiToken"),
    local_env: "VIRTFUSION_API_TOKEN",
    local_default: Some("local-virtfusion-token"),
};

/// Per-call timeout when `VIRTFUSION_TIMEOUT_MS` is not set.
pub const DEFAULT_TIMEOUT_MS: u64 = 3000;
const MAX_TIMEOUT_MS: u64 = 60_000;
/// Responses larger than this are not VirtFusion's and are not read further.
const MAX_BODY_BYTES: usize = 1024 * 1024;
const MAX_EXT_RELATION_ID_LEN: usize = 255;
/// Bytes kept as they are in a path segment: RFC 3986's unreserved set.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The id VirtFusion gives a credit (`POST .../credit/...` answers
/// `{"data": {"id": <creditId>}}`); needed to take the tokens back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CreditId(pub u64);

impl CreditId {
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for CreditId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for CreditId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<CreditId, Self::Err> {
        s.parse().map(CreditId)
    }
}

/// A VirtFusion API client; build it once per cold start and share it.
#[derive(Clone)]
pub struct VirtFusionClient {
    http: reqwest::Client,
    /// `{base_url}/api/v1`, without a trailing slash.
    api_base: String,
    timeout: Duration,
    /// The API token; replaced when VirtFusion refuses it (401) and its
    /// secret holds another one.
    token: Arc<RwLock<SecretValue>>,
    token_source: Option<Rereadable>,
}

impl fmt::Debug for VirtFusionClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtFusionClient")
            .field("api_base", &self.api_base)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Builds the client from configuration: base URL and token through
/// [`Secrets`] ([`BASE_URL_SECRET`], [`API_TOKEN_SECRET`]), timeout from
/// `VIRTFUSION_TIMEOUT_MS` (default [`DEFAULT_TIMEOUT_MS`]).
pub async fn from_env(secrets: &Arc<Secrets>) -> Result<VirtFusionClient, ConfigError> {
    let timeout = parse_timeout_ms(billing_config::env_opt("VIRTFUSION_TIMEOUT_MS").as_deref())?;
    VirtFusionClient::from_secrets(secrets, timeout).await
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

impl VirtFusionClient {
    /// `base_url` is VirtFusion's root (`https://panel.example.com`); calls go
    /// to `{base_url}/api/v1/...`. `timeout` bounds each whole call; connecting
    /// is bounded by half of it, so a slow connect is reported as
    /// [`VirtFusionError::NotSent`] rather than [`VirtFusionError::Uncertain`].
    pub fn new(
        base_url: &str,
        api_token: SecretValue,
        timeout: Duration,
    ) -> Result<VirtFusionClient, VirtFusionError> {
        let api_base = api_base(base_url)?;
        if timeout.is_zero() {
            return Err(VirtFusionError::Invalid("timeout must be positive".into()));
        }
        bearer(&api_token)?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout / 2)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| VirtFusionError::Invalid("HTTP client could not be built".into()))?;
        Ok(VirtFusionClient {
            http,
            api_base,
            timeout,
            token: Arc::new(RwLock::new(api_token)),
            token_source: None,
        })
    }

    /// The client of the base URL and API token of `secrets`
    /// ([`BASE_URL_SECRET`], [`API_TOKEN_SECRET`]); a token VirtFusion
    /// refuses (401) is read again from there once, so a rotated token needs
    /// no redeploy.
    pub async fn from_secrets(
        secrets: &Arc<Secrets>,
        timeout: Duration,
    ) -> Result<VirtFusionClient, ConfigError> {
        let base_url = secrets.resolve(BASE_URL_SECRET).await?;
        let api_token = secrets.resolve(API_TOKEN_SECRET).await?;
        Ok(
            VirtFusionClient::new(base_url.expose(), api_token, timeout)?
                .with_token_source(Rereadable::new(secrets.clone(), API_TOKEN_SECRET)),
        )
    }

    /// Where to read the API token again when VirtFusion refuses it.
    pub fn with_token_source(mut self, source: Rereadable) -> VirtFusionClient {
        self.token_source = Some(source);
        self
    }

    /// The user's token balance:
    /// `GET /selfService/hourlyStats/byUserExtRelationId/{id}?period[]=<today UTC>&range=m`,
    /// reading `data.credit.tokens`: a number or a numeric string, possibly
    /// fractional (kept exact); no `tokens` key (`"credit": {"value": 0}`)
    /// means 0. `ext_relation_id` is our user id (the JWT `sub`; see
    /// [`ExtRelation`] for how it is sent).
    pub async fn token_balance(
        &self,
        ext_relation_id: &str,
    ) -> Result<TokenBalance, VirtFusionError> {
        let url = self.balance_url(ext_relation_id, time::OffsetDateTime::now_utc().date())?;
        let body = self.send("token_balance", self.http.get(url)).await?;
        parse_balance(&body)
    }

    /// Credits `tokens` (> 0) to the user:
    /// `POST /selfService/credit/byUserExtRelationId/{id}` with
    /// `{"tokens": N, "reference_2": reference}`; answers the new credit's id.
    ///
    /// On error, retry only if [`VirtFusionError::is_definitely_not_applied`].
    pub async fn add_tokens(
        &self,
        ext_relation_id: &str,
        tokens: Tokens,
        reference: &str,
    ) -> Result<CreditId, VirtFusionError> {
        if tokens.get() <= 0 {
            return Err(VirtFusionError::Invalid(
                "tokens to add must be positive".into(),
            ));
        }
        let relation = ExtRelation::of(ext_relation_id)?;
        let url = format!(
            "{}/selfService/credit/byUserExtRelationId/{}{}",
            self.api_base,
            relation.segment,
            relation.query(None)
        );
        let body = serde_json::to_vec(&AddCreditBody {
            tokens,
            reference_2: reference,
        })
        .map_err(|_| VirtFusionError::Invalid("request body could not be encoded".into()))?;
        let request = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        let body = self.send("add_tokens", request).await?;
        parse_credit_id(&body)
    }

    /// Takes a credit's tokens back: `DELETE /selfService/credit/{creditId}`
    /// (204). A credit that no longer exists answers
    /// `Rejected { status: 404 }`; the caller decides whether that means done.
    pub async fn remove_credit(&self, credit_id: CreditId) -> Result<(), VirtFusionError> {
        let url = format!("{}/selfService/credit/{}", self.api_base, credit_id);
        self.send("remove_credit", self.http.delete(url)).await?;
        Ok(())
    }

    fn balance_url(
        &self,
        ext_relation_id: &str,
        date: time::Date,
    ) -> Result<String, VirtFusionError> {
        let relation = ExtRelation::of(ext_relation_id)?;
        let period = format!(
            "period%5B%5D={:04}-{:02}-{:02}&range=m",
            date.year(),
            u8::from(date.month()),
            date.day()
        );
        Ok(format!(
            "{}/selfService/hourlyStats/byUserExtRelationId/{}{}",
            self.api_base,
            relation.segment,
            relation.query(Some(&period))
        ))
    }

    /// Sends one request and returns the body of a 2xx answer. The only
    /// retry: a 401 (refused before anything was applied) is sent once more
    /// with the API token read again from its secret, if it changed.
    async fn send(
        &self,
        operation: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, VirtFusionError> {
        let token = self
            .token
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let again = request.try_clone();
        match self.send_once(operation, request, &token).await {
            Err(VirtFusionError::Rejected { status: 401 }) => {
                let (Some(again), Some(fresh)) = (again, self.reread_token(&token).await) else {
                    return Err(VirtFusionError::Rejected { status: 401 });
                };
                self.send_once(operation, again, &fresh).await
            }
            answer => answer,
        }
    }

    /// After VirtFusion refused `stale`: the API token read again from its
    /// secret, kept for the next calls; `None` when there is no secret to
    /// read, it cannot be read, or it holds the same token.
    async fn reread_token(&self, stale: &SecretValue) -> Option<SecretValue> {
        let source = self.token_source.as_ref()?;
        let fresh = source
            .reread(stale)
            .await
            .inspect_err(
                |e| tracing::error!(error = %e, "VirtFusion API token could not be read again"),
            )
            .ok()?;
        if fresh == *stale {
            tracing::warn!("VirtFusion refused the API token; its secret holds the same");
            return None;
        }
        tracing::info!("VirtFusion API token read again from its secret after a 401");
        *self.token.write().unwrap_or_else(PoisonError::into_inner) = fresh.clone();
        Some(fresh)
    }

    async fn send_once(
        &self,
        operation: &'static str,
        request: reqwest::RequestBuilder,
        token: &SecretValue,
    ) -> Result<Vec<u8>, VirtFusionError> {
        let request = request.header(AUTHORIZATION, bearer(token)?);
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                let error = classify_send_error(&e);
                tracing::warn!(operation, error = %e, outcome = %error, "VirtFusion call failed");
                return Err(error);
            }
        };
        let status = response.status();
        if status.is_success() {
            return read_body(&mut response).await.map_err(|reason| {
                tracing::warn!(
                    operation,
                    status = status.as_u16(),
                    reason,
                    "VirtFusion response unreadable"
                );
                VirtFusionError::BadResponse(reason.to_owned())
            });
        }
        let error = if status.is_client_error() {
            VirtFusionError::Rejected {
                status: status.as_u16(),
            }
        } else {
            VirtFusionError::Uncertain
        };
        // A little of VirtFusion's message helps whoever reads the log.
        let detail = match read_body(&mut response).await {
            Ok(body) => String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
            Err(_) => String::new(),
        };
        tracing::warn!(operation, status = status.as_u16(), detail, outcome = %error, "VirtFusion call failed");
        Err(error)
    }
}

/// `Bearer <token>`, marked sensitive (never printed by the HTTP stack).
fn bearer(token: &SecretValue) -> Result<HeaderValue, VirtFusionError> {
    let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .map_err(|_| VirtFusionError::Invalid("API token is not a valid header value".into()))?;
    auth.set_sensitive(true);
    Ok(auth)
}

/// Connect failures (refused, DNS, connect timeout) happen before a single
/// byte of the request is written; anything later may have reached VirtFusion.
fn classify_send_error(e: &reqwest::Error) -> VirtFusionError {
    if e.is_connect() || e.is_builder() {
        VirtFusionError::NotSent
    } else {
        VirtFusionError::Uncertain
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

/// How a user id is named to VirtFusion's `byUserExtRelationId` routes.
///
/// VirtFusion's external relation id is an integer (SkyPANEL passes its
/// numeric user id); since the `relStr` parameter, a route may instead match
/// the user's relation *string* with `?relStr=true`. So:
///
/// - a canonical unsigned integer `sub` (`"42"`: ASCII digits, no sign, no
///   leading zero, fits in 63 bits) is sent as the ext relation id, as is;
/// - any other `sub` (`"user-7"`, and `"007"`, which VirtFusion would read as
///   the integer 7 — someone else) is sent percent-encoded with
///   `relStr=true`, matched against the relation string.
///
/// Never sent: a non-integer id without `relStr` (VirtFusion would answer
/// 4xx to it forever, and a token purchase would stay undeliverable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtRelation {
    /// The path segment (percent-encoded).
    pub segment: String,
    /// Whether `relStr=true` is sent.
    pub rel_str: bool,
}

impl ExtRelation {
    pub fn of(sub: &str) -> Result<ExtRelation, VirtFusionError> {
        let numeric = !sub.is_empty()
            && sub.len() <= 18
            && sub.bytes().all(|b| b.is_ascii_digit())
            && (sub == "0" || !sub.starts_with('0'));
        Ok(ExtRelation {
            segment: path_segment(sub)?,
            rel_str: !numeric,
        })
    }

    /// The query string (with its `?`), `extra` first.
    fn query(&self, extra: Option<&str>) -> String {
        match (extra, self.rel_str) {
            (Some(extra), true) => format!("?{extra}&relStr=true"),
            (Some(extra), false) => format!("?{extra}"),
            (None, true) => "?relStr=true".to_owned(),
            (None, false) => String::new(),
        }
    }
}

/// `{base}/api/v1` from a base URL: http(s), no credentials, query or fragment.
/// The base may already end in `/api/v1` (SkyPANEL stores VirtFusion's URL
/// that way); it is not appended twice. Errors never repeat the URL (it
/// comes from a secret).
fn api_base(base_url: &str) -> Result<String, VirtFusionError> {
    let invalid = |why: &str| VirtFusionError::Invalid(format!("base URL {why}"));
    let trimmed = base_url.trim().trim_end_matches('/');
    let trimmed = match trimmed.len().checked_sub("/api/v1".len()) {
        Some(at)
            if trimmed.is_char_boundary(at) && trimmed[at..].eq_ignore_ascii_case("/api/v1") =>
        {
            &trimmed[..at]
        }
        _ => trimmed,
    };
    let url = reqwest::Url::parse(trimmed).map_err(|_| invalid("is not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not contain credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() || url.cannot_be_a_base() {
        return Err(invalid("must not have a query or fragment"));
    }
    Ok(format!("{trimmed}/api/v1"))
}

/// Percent-encodes a user id for use as one path segment; refuses ids that
/// would change the path (`""`, `"."`, `".."`) or are absurdly long.
fn path_segment(ext_relation_id: &str) -> Result<String, VirtFusionError> {
    if ext_relation_id.is_empty()
        || ext_relation_id == "."
        || ext_relation_id == ".."
        || ext_relation_id.len() > MAX_EXT_RELATION_ID_LEN
    {
        return Err(VirtFusionError::Invalid(
            "ext relation id is not a usable user id".into(),
        ));
    }
    Ok(utf8_percent_encode(ext_relation_id, PATH_SEGMENT).to_string())
}

#[derive(Serialize)]
struct AddCreditBody<'a> {
    tokens: Tokens,
    reference_2: &'a str,
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct BalanceData<'a> {
    #[serde(borrow)]
    credit: BalanceCredit<'a>,
}

#[derive(Deserialize)]
struct BalanceCredit<'a> {
    /// Absent in VirtFusion's answer for a user with no credit
    /// (`"credit": {"value": 0}`).
    #[serde(borrow, default)]
    tokens: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct CreatedCredit<'a> {
    #[serde(borrow)]
    id: &'a RawValue,
}

/// `data.credit.tokens`, read from its literal JSON text (never as a float);
/// a missing (or null) `tokens` is 0.
fn parse_balance(body: &[u8]) -> Result<TokenBalance, VirtFusionError> {
    let envelope: Envelope<BalanceData<'_>> = serde_json::from_slice(body)
        .map_err(|_| VirtFusionError::BadResponse("no data.credit in balance response".into()))?;
    match envelope.data.credit.tokens.map(RawValue::get) {
        None | Some("null") => Ok(TokenBalance::ZERO),
        Some(text) => TokenBalance::parse_lenient(text).map_err(|_| {
            VirtFusionError::BadResponse("data.credit.tokens is not a decimal number".into())
        }),
    }
}

/// `data.id` of a created credit: an integer (a numeric string is tolerated).
fn parse_credit_id(body: &[u8]) -> Result<CreditId, VirtFusionError> {
    let bad = || VirtFusionError::BadResponse("no integer data.id in credit response".into());
    let envelope: Envelope<CreatedCredit<'_>> = serde_json::from_slice(body).map_err(|_| bad())?;
    let text = envelope.data.id.get().trim();
    let digits = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    digits.parse().map(CreditId).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> VirtFusionClient {
        VirtFusionClient::new(base, SecretValue::new("t0ken"), Duration::from_secs(1)).unwrap()
    }

    #[test]
    fn balance_is_read_from_number_or_numeric_string() {
        let cases = [
            (r#"{"data":{"credit":{"tokens":1250}}}"#, "1250"),
            (r#"{"data":{"credit":{"tokens":"1250"}}}"#, "1250"),
            (
                r#"{"data":{"credit":{"tokens":"1250.00"},"other":[1,2]}}"#,
                "1250",
            ),
            (r#"{"data":{"credit":{"tokens":0}}}"#, "0"),
            (r#"{"data":{"credit":{"tokens":-5}}}"#, "-5"),
            // Fractions are VirtFusion's hourly billing: kept exact.
            (r#"{"data":{"credit":{"tokens":12.5}}}"#, "12.5"),
            (r#"{"data":{"credit":{"tokens":"1250.57"}}}"#, "1250.57"),
            (r#"{"data":{"credit":{"tokens":0.1}}}"#, "0.1"),
            // No tokens key: VirtFusion's answer for a user without credit.
            (r#"{"data":{"credit":{"value":0}}}"#, "0"),
            (r#"{"data":{"credit":{}}}"#, "0"),
            (r#"{"data":{"credit":{"tokens":null}}}"#, "0"),
        ];
        for (body, expected) in cases {
            assert_eq!(
                parse_balance(body.as_bytes()).unwrap().exact(),
                expected,
                "{body}"
            );
        }
    }

    #[test]
    fn bad_balances_are_bad_responses() {
        for body in [
            r#"{"data":{"credit":{"tokens":"1e3"}}}"#,
            r#"{"data":{"credit":{"tokens":1e3}}}"#,
            r#"{"data":{"credit":{"tokens":"ten"}}}"#,
            r#"{"data":{"credit":{"tokens":[1]}}}"#,
            r#"{"data":{}}"#,
            "not json",
            "",
        ] {
            assert!(
                matches!(
                    parse_balance(body.as_bytes()),
                    Err(VirtFusionError::BadResponse(_))
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn credit_id_is_an_integer() {
        assert_eq!(
            parse_credit_id(br#"{"data":{"id":42}}"#).unwrap(),
            CreditId(42)
        );
        assert_eq!(
            parse_credit_id(br#"{"data":{"id":"42"}}"#).unwrap(),
            CreditId(42)
        );
        for body in [
            r#"{"data":{"id":-1}}"#,
            r#"{"data":{"id":4.2}}"#,
            r#"{"data":{"id":null}}"#,
            r#"{"data":{}}"#,
            r#"{"data":{"id":99999999999999999999999}}"#,
        ] {
            assert!(parse_credit_id(body.as_bytes()).is_err(), "{body}");
        }
        assert_eq!(CreditId(7).to_string(), "7");
        assert_eq!("7".parse::<CreditId>().unwrap(), CreditId(7));
    }

    #[test]
    fn add_body_is_exact_json() {
        let body = serde_json::to_vec(&AddCreditBody {
            tokens: Tokens::new(1000),
            reference_2: "order-1",
        })
        .unwrap();
        assert_eq!(body, br#"{"tokens":1000,"reference_2":"order-1"}"#);
    }

    #[test]
    fn balance_url_has_today_and_monthly_range() {
        let date = time::macros::date!(2024 - 02 - 09);
        assert_eq!(
            client("http://vf.local/").balance_url("123", date).unwrap(),
            "http://vf.local/api/v1/selfService/hourlyStats/byUserExtRelationId/123?period%5B%5D=2024-02-09&range=m"
        );
    }

    #[test]
    fn numeric_subs_are_ext_relation_ids_and_others_relation_strings() {
        let date = time::macros::date!(2024 - 02 - 09);
        let c = client("http://vf.local");
        assert_eq!(
            c.balance_url("42", date).unwrap(),
            "http://vf.local/api/v1/selfService/hourlyStats/byUserExtRelationId/42?period%5B%5D=2024-02-09&range=m"
        );
        assert_eq!(
            c.balance_url("user 7", date).unwrap(),
            "http://vf.local/api/v1/selfService/hourlyStats/byUserExtRelationId/user%207?period%5B%5D=2024-02-09&range=m&relStr=true"
        );
        for (sub, rel_str) in [
            ("42", false),
            ("0", false),
            ("123456789012345678", false),
            ("007", true),
            ("1234567890123456789", true),
            ("-1", true),
            ("1.5", true),
            ("abc", true),
            ("٣", true),
        ] {
            assert_eq!(ExtRelation::of(sub).unwrap().rel_str, rel_str, "{sub}");
        }
    }

    #[test]
    fn base_url_with_or_without_api_v1() {
        for base in [
            "https://vf.example.com",
            "https://vf.example.com/",
            "https://vf.example.com/api/v1",
            "https://vf.example.com/api/v1/",
            "https://vf.example.com/API/V1",
        ] {
            assert_eq!(
                api_base(base).unwrap(),
                "https://vf.example.com/api/v1",
                "{base}"
            );
        }
        assert_eq!(
            api_base("https://x.example/panel/api/v1").unwrap(),
            "https://x.example/panel/api/v1"
        );
    }

    #[test]
    fn user_ids_cannot_escape_their_path_segment() {
        assert_eq!(path_segment("42").unwrap(), "42");
        assert_eq!(
            path_segment("a/../b c?d#").unwrap(),
            "a%2F..%2Fb%20c%3Fd%23"
        );
        for id in ["", ".", ".."] {
            assert!(matches!(path_segment(id), Err(VirtFusionError::Invalid(_))));
        }
        assert!(path_segment(&"1".repeat(256)).is_err());
    }

    #[test]
    fn base_url_must_be_plain_http() {
        assert_eq!(
            api_base("https://vf.example.com").unwrap(),
            "https://vf.example.com/api/v1"
        );
        assert_eq!(
            api_base("http://127.0.0.1:8091/").unwrap(),
            "http://127.0.0.1:8091/api/v1"
        );
        for bad in [
            "",
            "vf.example.com",
            "ftp://x",
            "https://u:p@x",
            "https://x/?a=1",
            "https://x/#f",
        ] {
            let err = api_base(bad).unwrap_err();
            assert!(matches!(err, VirtFusionError::Invalid(_)), "{bad}");
            if bad.contains("u:p") {
                assert!(!err.to_string().contains("u:p"));
            }
        }
    }

    #[test]
    fn token_never_shows_in_debug_or_errors() {
        let c = client("http://vf.local");
        assert!(!format!("{c:?}").contains("t0ken"));
        let err = VirtFusionClient::new(
            "http://x",
            SecretValue::new("bad\ntoken"),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(!format!("{err} {err:?}").contains("bad"));
    }

    #[test]
    fn nonpositive_timeouts_are_refused() {
        assert!(VirtFusionClient::new("http://x", SecretValue::new("t"), Duration::ZERO).is_err());
    }

    #[test]
    fn timeout_env_is_validated() {
        assert_eq!(parse_timeout_ms(None).unwrap(), Duration::from_millis(3000));
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
