//! A VirtFusion stand-in: the three calls the billing backend makes, under
//! `/api/v1`, with the same paths, bodies and status codes as VirtFusion.
//!
//! - `GET  /api/v1/selfService/hourlyStats/byUserExtRelationId/{id}?period[]=YYYY-MM-DD&range=m`
//!   → `{"data": {"credit": {"tokens": N}}}` (a number, or a numeric string,
//!   see [`TokensFormat`]);
//! - `POST /api/v1/selfService/credit/byUserExtRelationId/{id}`
//!   `{"tokens": N, "reference_2": "..."}` → 201 `{"data": {"id": creditId}}`;
//! - `DELETE /api/v1/selfService/credit/{creditId}` → 204 (unknown id: 404).
//!
//! Every `/api/v1` call needs `Authorization: Bearer <token>` (401 otherwise).
//! Users are created on first sight with 0 tokens. State is in memory.
//!
//! Failures are switched on in-process ([`VirtFusionStandIn::set_failure`])
//! or over HTTP, for manual runs (no auth on `/_control`):
//!
//! - `POST /_control/fail {"mode": "none"|"status"|"refuse"|"hang"|"apply_then_hang"|"delay",
//!   "status": 503, "ms": 5000, "times": N}` (`times`: only the next N API requests;
//!   `refuse` closes the listening socket — so `/_control` too — for `ms`,
//!   default 10 s over HTTP, and ignores `times`);
//! - `GET /_control/state` → balances, credits, request count, failure;
//! - `POST /_control/users/{id}/tokens {"tokens": N}` sets a balance;
//! - `POST /_control/tokens-format {"format": "number"|"string"|"decimal_string"|"missing"}`
//!   (`missing`: `"credit": {"value": 0}` with no `tokens` key);
//!
//! Users are named as VirtFusion names them: an integer external relation
//! id, or any relation string with `?relStr=true`; a non-integer id without
//! `relStr` is 404. Balances may carry a fraction
//! ([`VirtFusionStandIn::set_balance_fraction`]), written as exact literal
//! text (`1250.57`).
//! - `POST /_control/reset` forgets everything.

use crate::listener::{Phase, Supervised};
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A hanging request gives up after this long even if nobody shuts it down.
const MAX_HANG: Duration = Duration::from_secs(600);
/// How long `refuse` lasts when set over HTTP without `ms` (it also locks out
/// `/_control`, so it must end by itself).
const DEFAULT_HTTP_REFUSE: Duration = Duration::from_secs(10);

/// How the stand-in misbehaves for `/api/v1` requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureMode {
    /// Behave.
    None,
    /// Answer this status (with a JSON error body) without doing anything.
    Status(u16),
    /// Close the listening socket (and idle connections) so that new
    /// connections are refused; for the given time, or until changed.
    Refuse(Option<Duration>),
    /// Do nothing and never answer (until the stand-in shuts down).
    Hang,
    /// Do the work (record the credit, ...) and then never answer: the
    /// caller cannot know it happened.
    ApplyThenHang,
    /// Wait this long, then behave.
    Delay(Duration),
}

/// How `data.credit.tokens` is rendered in balance responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TokensFormat {
    /// `1250`
    #[default]
    Number,
    /// `"1250"`
    String,
    /// `"1250.00"`
    DecimalString,
    /// No `tokens` key at all: `"credit": {"value": 0}` (VirtFusion's answer
    /// for a user without credit).
    Missing,
}

/// A credit as the stand-in recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Credit {
    pub id: u64,
    pub user: String,
    pub tokens: i64,
    pub reference_2: Option<String>,
}

#[derive(Clone, Copy, Debug)]
struct ActiveFailure {
    mode: FailureMode,
    /// Requests left before the failure ends by itself.
    remaining: Option<u32>,
    /// When a timed `Refuse` ends.
    refuse_until: Option<Instant>,
}

impl ActiveFailure {
    const NONE: ActiveFailure = ActiveFailure {
        mode: FailureMode::None,
        remaining: None,
        refuse_until: None,
    };
}

struct Data {
    balances: BTreeMap<String, i64>,
    /// Fraction digits after the point of a user's balance (hourly billing
    /// leaves fractions; purchases add whole tokens).
    fractions: BTreeMap<String, String>,
    credits: BTreeMap<u64, Credit>,
    next_credit_id: u64,
    failure: ActiveFailure,
    tokens_format: TokensFormat,
    /// Users VirtFusion does not know: adding tokens to them is 404.
    unknown_users: std::collections::BTreeSet<String>,
}

impl Data {
    fn new() -> Data {
        Data {
            balances: BTreeMap::new(),
            fractions: BTreeMap::new(),
            credits: BTreeMap::new(),
            next_credit_id: 1001,
            failure: ActiveFailure::NONE,
            tokens_format: TokensFormat::Number,
            unknown_users: std::collections::BTreeSet::new(),
        }
    }
}

struct Shared {
    /// The accepted API token (rotated by [`VirtFusionStandIn::rotate_api_token`]).
    api_token: Mutex<String>,
    data: Mutex<Data>,
    requests: AtomicU64,
    phase: watch::Sender<Phase>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Data> {
        // A panic elsewhere must not take the stand-in down with it.
        self.data
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_failure(&self, mode: FailureMode, times: Option<u32>) {
        let failure = match (mode, times) {
            (_, Some(0)) | (FailureMode::None, _) => ActiveFailure::NONE,
            (FailureMode::Refuse(duration), _) => ActiveFailure {
                mode,
                remaining: None,
                refuse_until: duration.and_then(|d| Instant::now().checked_add(d)),
            },
            _ => ActiveFailure {
                mode,
                remaining: times,
                refuse_until: None,
            },
        };
        self.lock().failure = failure;
        let refusing = matches!(failure.mode, FailureMode::Refuse(_));
        self.set_phase(if refusing {
            Phase::Refusing
        } else {
            Phase::Serving
        });
    }

    fn set_phase(&self, new: Phase) {
        self.phase.send_if_modified(|phase| {
            if *phase == Phase::Shutdown || *phase == new {
                false
            } else {
                *phase = new;
                true
            }
        });
    }

    /// The failure to apply to the request at hand (counts down `times`).
    fn take_failure(&self) -> FailureMode {
        let mut data = self.lock();
        let mode = data.failure.mode;
        if matches!(mode, FailureMode::None | FailureMode::Refuse(_)) {
            return FailureMode::None;
        }
        if let Some(left) = data.failure.remaining.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                data.failure = ActiveFailure::NONE;
            }
        }
        mode
    }

    fn end_refusal_if_due(&self, until: Instant) {
        let mut data = self.lock();
        if matches!(data.failure.mode, FailureMode::Refuse(_))
            && data.failure.refuse_until == Some(until)
        {
            data.failure = ActiveFailure::NONE;
            drop(data);
            self.set_phase(Phase::Serving);
        }
    }

    fn state_json(&self) -> Value {
        let data = self.lock();
        let failure = data.failure;
        let (mode, status, ms) = match failure.mode {
            FailureMode::None => ("none", None, None),
            FailureMode::Status(status) => ("status", Some(status), None),
            FailureMode::Refuse(d) => ("refuse", None, d.map(duration_ms)),
            FailureMode::Hang => ("hang", None, None),
            FailureMode::ApplyThenHang => ("apply_then_hang", None, None),
            FailureMode::Delay(d) => ("delay", None, Some(duration_ms(d))),
        };
        json!({
            "balances": data.balances,
            "credits": data.credits.values().collect::<Vec<_>>(),
            "requestCount": self.requests.load(Ordering::SeqCst),
            "failure": {"mode": mode, "status": status, "ms": ms, "times": failure.remaining},
            "tokensFormat": match data.tokens_format {
                TokensFormat::Number => "number",
                TokensFormat::String => "string",
                TokensFormat::DecimalString => "decimal_string",
                TokensFormat::Missing => "missing",
            },
        })
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A running stand-in. Dropping it (or [`shutdown`](Self::shutdown)) stops
/// the server and releases requests left hanging.
pub struct VirtFusionStandIn {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl VirtFusionStandIn {
    /// Starts the stand-in on `addr` (port 0 picks a free port), accepting
    /// `Authorization: Bearer <api_token>`. Needs a Tokio runtime.
    pub async fn spawn(addr: SocketAddr, api_token: &str) -> std::io::Result<VirtFusionStandIn> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (phase, _) = watch::channel(Phase::Serving);
        let shared = Arc::new(Shared {
            api_token: Mutex::new(api_token.to_owned()),
            data: Mutex::new(Data::new()),
            requests: AtomicU64::new(0),
            phase,
        });
        tokio::spawn(crate::listener::supervise(
            "VirtFusion",
            shared.clone(),
            listener,
            router(shared.clone()),
        ));
        Ok(VirtFusionStandIn { shared, addr })
    }

    /// `http://127.0.0.1:PORT` — VirtFusion's base URL, without `/api/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Misbehave from now on: always (`times: None`) or for the next `times`
    /// API requests (ignored for [`FailureMode::Refuse`]).
    pub fn set_failure(&self, mode: FailureMode, times: Option<u32>) {
        self.shared.set_failure(mode, times);
    }

    /// Accepts only `api_token` from now on (an operator rotated it).
    pub fn rotate_api_token(&self, api_token: &str) {
        *self
            .shared
            .api_token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = api_token.to_owned();
    }

    /// Behave again.
    pub fn clear_failure(&self) {
        self.shared.set_failure(FailureMode::None, None);
    }

    pub fn set_tokens_format(&self, format: TokensFormat) {
        self.shared.lock().tokens_format = format;
    }

    /// A user's token balance (0 for a user never seen).
    pub fn balance(&self, user: &str) -> i64 {
        self.shared.lock().balances.get(user).copied().unwrap_or(0)
    }

    pub fn set_balance(&self, user: &str, tokens: i64) {
        self.shared.lock().balances.insert(user.to_owned(), tokens);
    }

    /// VirtFusion does not know `user` (deleted account): adding tokens to
    /// them answers 404, for good.
    pub fn forget_user(&self, user: &str) {
        self.shared.lock().unknown_users.insert(user.to_owned());
    }

    /// Gives a user's balance a fraction (`"57"`: `1250` reads `1250.57`), as
    /// VirtFusion's hourly billing does; `None` removes it.
    pub fn set_balance_fraction(&self, user: &str, digits: Option<&str>) {
        let mut data = self.shared.lock();
        match digits.filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())) {
            Some(digits) => data.fractions.insert(user.to_owned(), digits.to_owned()),
            None => data.fractions.remove(user),
        };
    }

    /// The credits that exist (not deleted), by id.
    pub fn credits(&self) -> Vec<Credit> {
        self.shared.lock().credits.values().cloned().collect()
    }

    /// `/api/v1` requests received so far (whatever their outcome).
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Forgets balances, credits and failures (the request count stays).
    pub fn reset(&self) {
        *self.shared.lock() = Data::new();
        self.shared.set_phase(Phase::Serving);
    }

    /// Stops the server now (same as dropping the handle).
    pub fn shutdown(self) {}
}

impl Drop for VirtFusionStandIn {
    fn drop(&mut self) {
        self.shared
            .phase
            .send_modify(|phase| *phase = Phase::Shutdown);
    }
}

/// Runs the stand-in until the process ends (for the `devstack` binary).
pub async fn serve_forever(addr: SocketAddr, api_token: &str) -> std::io::Result<()> {
    let stand_in = VirtFusionStandIn::spawn(addr, api_token).await?;
    tracing::info!(base_url = %stand_in.base_url(), "VirtFusion stand-in listening");
    std::future::pending::<()>().await;
    drop(stand_in);
    Ok(())
}

fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route(
            "/selfService/hourlyStats/byUserExtRelationId/{id}",
            get(hourly_stats),
        )
        .route(
            "/selfService/credit/byUserExtRelationId/{id}",
            post(add_credit),
        )
        .route("/selfService/credit/{credit_id}", delete(delete_credit))
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            inject_failure,
        ));
    let control = Router::new()
        .route("/_control/fail", post(control_fail))
        .route("/_control/state", get(control_state))
        .route("/_control/users/{id}/tokens", post(control_set_tokens))
        .route("/_control/tokens-format", post(control_tokens_format))
        .route("/_control/reset", post(control_reset));
    Router::new()
        .nest("/api/v1", api)
        .merge(control)
        .with_state(shared)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

fn unprocessable(message: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({ "message": message, "errors": [message] })),
    )
        .into_response()
}

async fn inject_failure(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    match shared.take_failure() {
        FailureMode::None | FailureMode::Refuse(_) => next.run(request).await,
        FailureMode::Status(code) => error(
            StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "injected failure",
        ),
        FailureMode::Hang => hang(&shared).await,
        FailureMode::ApplyThenHang => {
            let _applied = next.run(request).await;
            hang(&shared).await
        }
        FailureMode::Delay(delay) => {
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
    }
}

async fn hang(shared: &Shared) -> Response {
    let mut phase = shared.phase.subscribe();
    let _ = tokio::time::timeout(MAX_HANG, async {
        let _ = phase.wait_for(|p| *p == Phase::Shutdown).await;
    })
    .await;
    error(StatusCode::SERVICE_UNAVAILABLE, "stand-in shutting down")
}

async fn require_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let expected = format!(
        "Bearer {}",
        shared
            .api_token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    );
    let authorized = headers
        .get(header::AUTHORIZATION)
        .is_some_and(|value| value.as_bytes() == expected.as_bytes());
    if authorized {
        next.run(request).await
    } else {
        error(StatusCode::UNAUTHORIZED, "Unauthenticated.")
    }
}

/// VirtFusion's `byUserExtRelationId/{id}`: an integer external relation id,
/// or with `relStr=true` the user's relation string. A non-integer id
/// without `relStr` names nobody (404), as in VirtFusion.
fn ext_relation(id: &str, params: &[(String, String)]) -> Option<String> {
    let rel_str = params
        .iter()
        .any(|(key, value)| key == "relStr" && matches!(value.as_str(), "true" | "1"));
    let integer = !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_digit())
        && (id == "0" || !id.starts_with('0'))
        && id.parse::<u64>().is_ok();
    (rel_str || integer).then(|| id.to_owned())
}

fn no_such_user() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "No user found with this external relation ID.",
    )
}

async fn hourly_stats(
    State(shared): State<Arc<Shared>>,
    Path(user): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let Some(user) = ext_relation(&user, &params) else {
        return no_such_user();
    };
    let param = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    if param("period[]").is_none_or(|p| time::Date::parse(p, &date_format).is_err()) {
        return unprocessable("period[] must be a date (YYYY-MM-DD)");
    }
    if param("range") != Some("m") {
        return unprocessable("range must be m");
    }
    let (balance, fraction, format) = {
        let mut data = shared.lock();
        let fraction = data.fractions.get(&user).cloned();
        let balance = *data.balances.entry(user).or_insert(0);
        (balance, fraction, data.tokens_format)
    };
    // The literal text is written as is (a fraction is never a float here).
    let number = match &fraction {
        Some(digits) => format!("{balance}.{digits}"),
        None => balance.to_string(),
    };
    let credit = match format {
        TokensFormat::Number => format!(r#"{{"tokens":{number}}}"#),
        TokensFormat::String => format!(r#"{{"tokens":"{number}"}}"#),
        TokensFormat::DecimalString if fraction.is_none() => {
            format!(r#"{{"tokens":"{number}.00"}}"#)
        }
        TokensFormat::DecimalString => format!(r#"{{"tokens":"{number}"}}"#),
        TokensFormat::Missing => r#"{"value":0}"#.to_owned(),
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"data":{{"credit":{credit},"monthlyTotal":{{"hours":0}}}}}}"#),
    )
        .into_response()
}

async fn add_credit(
    State(shared): State<Arc<Shared>>,
    Path(user): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Response {
    let Some(user) = ext_relation(&user, &params) else {
        return no_such_user();
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return unprocessable("body must be JSON");
    };
    let Some(tokens) = body
        .get("tokens")
        .and_then(Value::as_i64)
        .filter(|t| *t > 0)
    else {
        return unprocessable("tokens must be a positive integer");
    };
    let reference_2 = match body.get("reference_2") {
        None | Some(Value::Null) => None,
        Some(Value::String(reference)) => Some(reference.clone()),
        Some(_) => return unprocessable("reference_2 must be a string"),
    };
    let mut data = shared.lock();
    if data.unknown_users.contains(&user) {
        return error(StatusCode::NOT_FOUND, "user not found");
    }
    let balance = data.balances.get(&user).copied().unwrap_or(0);
    let Some(new_balance) = balance.checked_add(tokens) else {
        return unprocessable("tokens out of range");
    };
    let id = data.next_credit_id;
    data.next_credit_id += 1;
    data.balances.insert(user.clone(), new_balance);
    data.credits.insert(
        id,
        Credit {
            id,
            user,
            tokens,
            reference_2: reference_2.clone(),
        },
    );
    drop(data);
    (
        StatusCode::CREATED,
        Json(json!({"data": {"id": id, "tokens": tokens, "reference_2": reference_2}})),
    )
        .into_response()
}

async fn delete_credit(
    State(shared): State<Arc<Shared>>,
    Path(credit_id): Path<String>,
) -> Response {
    let mut data = shared.lock();
    let Some(credit) = credit_id
        .parse::<u64>()
        .ok()
        .and_then(|id| data.credits.remove(&id))
    else {
        return error(StatusCode::NOT_FOUND, "credit not found");
    };
    let balance = data.balances.entry(credit.user).or_insert(0);
    *balance = balance.saturating_sub(credit.tokens);
    StatusCode::NO_CONTENT.into_response()
}

async fn control_fail(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "body must be JSON");
    };
    let ms = match body.get("ms") {
        None | Some(Value::Null) => None,
        Some(ms) => match ms.as_u64() {
            Some(ms) => Some(Duration::from_millis(ms)),
            None => return error(StatusCode::BAD_REQUEST, "ms must be a whole number"),
        },
    };
    let times = match body.get("times") {
        None | Some(Value::Null) => None,
        Some(times) => match times.as_u64().and_then(|t| u32::try_from(t).ok()) {
            Some(times) => Some(times),
            None => return error(StatusCode::BAD_REQUEST, "times must be a whole number"),
        },
    };
    let mode = match body.get("mode").and_then(Value::as_str) {
        Some("none") => FailureMode::None,
        Some("status") => {
            let status = match body.get("status") {
                None | Some(Value::Null) => 503,
                Some(status) => match status.as_u64().and_then(|s| u16::try_from(s).ok()) {
                    Some(status) if (200..=599).contains(&status) => status,
                    _ => return error(StatusCode::BAD_REQUEST, "status must be 200..599"),
                },
            };
            FailureMode::Status(status)
        }
        Some("refuse") => FailureMode::Refuse(Some(ms.unwrap_or(DEFAULT_HTTP_REFUSE))),
        Some("hang") => FailureMode::Hang,
        Some("apply_then_hang") => FailureMode::ApplyThenHang,
        Some("delay") => match ms {
            Some(ms) => FailureMode::Delay(ms),
            None => return error(StatusCode::BAD_REQUEST, "delay needs ms"),
        },
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "mode must be none, status, refuse, hang, apply_then_hang or delay",
            );
        }
    };
    let state = shared.state_json();
    shared.set_failure(mode, times);
    // Answer with the new failure (for refuse, the socket closes right after).
    let failure = shared
        .state_json()
        .get("failure")
        .cloned()
        .unwrap_or(Value::Null);
    drop(state);
    Json(json!({ "failure": failure })).into_response()
}

async fn control_state(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.state_json()).into_response()
}

async fn control_set_tokens(
    State(shared): State<Arc<Shared>>,
    Path(user): Path<String>,
    body: Bytes,
) -> Response {
    let tokens = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|body| body.get("tokens").and_then(Value::as_i64));
    let Some(tokens) = tokens else {
        return error(StatusCode::BAD_REQUEST, "tokens must be an integer");
    };
    shared.lock().balances.insert(user.clone(), tokens);
    Json(json!({ "user": user, "tokens": tokens })).into_response()
}

async fn control_tokens_format(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let format = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|body| {
            body.get("format")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    let parsed = match format.as_deref() {
        Some("number") => TokensFormat::Number,
        Some("string") => TokensFormat::String,
        Some("decimal_string") => TokensFormat::DecimalString,
        Some("missing") => TokensFormat::Missing,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "format must be number, string, decimal_string or missing",
            );
        }
    };
    shared.lock().tokens_format = parsed;
    Json(json!({ "tokensFormat": format })).into_response()
}

async fn control_reset(State(shared): State<Arc<Shared>>) -> Response {
    *shared.lock() = Data::new();
    shared.set_phase(Phase::Serving);
    Json(json!({ "reset": true })).into_response()
}

impl Supervised for Shared {
    fn phase(&self) -> &watch::Sender<Phase> {
        &self.phase
    }

    fn refuse_until(&self) -> Option<Instant> {
        self.lock().failure.refuse_until
    }

    fn end_refusal_if_due(&self, until: Instant) {
        Shared::end_refusal_if_due(self, until);
    }
}
