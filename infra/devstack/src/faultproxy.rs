//! A fault-injecting HTTP proxy in front of DynamoDB (Local).
//!
//! DynamoDB Local never answers `TransactionConflict` and never throttles, so
//! the conflict, throttling, 5xx and "applied but unacknowledged" paths of the
//! ledger are exercised through this proxy: point a DynamoDB client's
//! endpoint at [`FaultProxy::endpoint`] and choose, per operation (the part
//! of `X-Amz-Target` after the dot, e.g. `TransactWriteItems`), which share
//! of requests misbehave and how ([`Fault`]):
//!
//! | fault | what the client sees | forwarded? |
//! | --- | --- | --- |
//! | `conflict` | 400 `TransactionCanceledException`, `CancellationReasons` = `TransactionConflict` for the first item, `None` for the others (Transact* operations only) | no |
//! | `throttling` | 400 `ThrottlingException` | no |
//! | `provisioned_throughput` | 400 `ProvisionedThroughputExceededException` | no |
//! | `internal_error` | 500 `InternalServerError` | no |
//! | `drop_after_forward` | the connection is reset without an answer: the write happened, the client cannot know | yes |
//! | `error_after_forward` | 500 `InternalServerError` although the write happened | yes |
//! | `latency` | the answer `ms` later (adds to any other fault) | — |
//!
//! Choices are made with a seeded RNG per operation: for a given seed and
//! rule set, the n-th request of an operation always gets the same fate. The
//! non-latency rules matching a request share one draw (`u` in `[0, 1)`), so
//! their rates add up: conflict 0.3 and drop 0.1 cancel 30% and drop 10% of
//! the same requests' population, never both. A rule may skip the first
//! `skip` matching requests and fire at most `max` times; while skipping or
//! once spent it takes no share, so `drop_after_forward` rate 1 max 1 followed
//! by `conflict` rate 1 skip 1 drops the first request and cancels the second.
//!
//! Everything the proxy did is counted ([`ProxyStats`]): requests and
//! forwards per operation, injected faults per kind and operation, and the
//! writes that happened without the client seeing the answer.
//!
//! In tests: [`FaultProxy::spawn`], then [`FaultProxy::set_faults`] and
//! [`FaultProxy::stats`]. For manual runs, the `devstack faultproxy` command
//! calls [`serve_forever`] with a [`FaultConfig`] built by
//! [`FaultConfig::apply_flag`] from these flags (see [`USAGE`]):
//!
//! ```text
//! devstack faultproxy [--port 8124] [--host 127.0.0.1]
//!                     [--upstream URL]   ($DYNAMODB_ENDPOINT or http://127.0.0.1:8123)
//!                     [--seed N]
//!                     [--conflict RATE[@OPS]]          (default ops: TransactWriteItems)
//!                     [--throttle RATE[@OPS]]          (default ops: all)
//!                     [--throughput RATE[@OPS]]        (default ops: all)
//!                     [--internal-error RATE[@OPS]]    (default ops: all)
//!                     [--drop-ack RATE[@OPS]]          (default ops: TransactWriteItems)
//!                     [--error-after-write RATE[@OPS]] (default ops: TransactWriteItems)
//!                     [--latency MS[:RATE][@OPS]]      (default: every request of all ops)
//! ```
//!
//! `OPS` is a comma-separated list of operation names or `*`; `RATE` is a
//! share in `0..=1`. Example, the hot-account scenario of
//! `docs/reliability.md`:
//! `devstack faultproxy --upstream http://127.0.0.1:8123 --seed 7 --conflict 0.3 --drop-ack 0.1`,
//! then run a function with `DYNAMODB_ENDPOINT=http://127.0.0.1:8124`.
//!
//! While running, it is also controlled over HTTP (paths no DynamoDB call uses):
//! `GET /_faultproxy/stats`, `GET|POST /_faultproxy/faults` (a [`FaultConfig`]
//! as JSON, e.g. `{"seed": 7, "rules": [{"operation": "TransactWriteItems",
//! "fault": {"kind": "conflict"}, "rate": 0.3}]}`), `POST /_faultproxy/reset`
//! (zeroes the counters).

use axum::body::{Body, Bytes};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::{IncomingStream, Listener};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The port `devstack faultproxy` listens on by default.
pub const DEFAULT_PORT: u16 = 8124;

/// The flags [`FaultConfig::apply_flag`] understands, for the CLI's usage text.
pub const USAGE: &str = "\
  faultproxy [--port 8124] [--host 127.0.0.1] [--upstream URL] [--seed N]
             [--conflict RATE[@OPS]] [--throttle RATE[@OPS]] [--throughput RATE[@OPS]]
             [--internal-error RATE[@OPS]] [--drop-ack RATE[@OPS]]
             [--error-after-write RATE[@OPS]] [--latency MS[:RATE][@OPS]]
             run the DynamoDB fault-injecting proxy in front of --upstream
             ($DYNAMODB_ENDPOINT or http://127.0.0.1:8123); OPS: names or *";

/// Largest request body passed on (DynamoDB's own limit is 16 MB).
const MAX_BODY: usize = 32 * 1024 * 1024;
const AMZ_JSON: &str = "application/x-amz-json-1.0";
const EXCEPTION_PREFIX: &str = "com.amazonaws.dynamodb.v20120810#";

/// What the proxy does to a request a rule picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// `TransactionCanceledException` with a `TransactionConflict` reason;
    /// only for `TransactWriteItems` / `TransactGetItems` (ignored otherwise).
    Conflict,
    /// `ThrottlingException` (400).
    Throttling,
    /// `ProvisionedThroughputExceededException` (400).
    ProvisionedThroughput,
    /// `InternalServerError` (500), without forwarding.
    InternalError,
    /// Forward, then reset the connection without answering.
    DropAfterForward,
    /// Forward, then answer 500 `InternalServerError` whatever happened.
    ErrorAfterForward,
    /// Delay the answer by `ms`.
    Latency { ms: u64 },
}

impl Fault {
    /// The name used in [`ProxyStats::faults`].
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Conflict => "conflict",
            Fault::Throttling => "throttling",
            Fault::ProvisionedThroughput => "provisioned_throughput",
            Fault::InternalError => "internal_error",
            Fault::DropAfterForward => "drop_after_forward",
            Fault::ErrorAfterForward => "error_after_forward",
            Fault::Latency { .. } => "latency",
        }
    }

    fn applies_to(&self, operation: &str) -> bool {
        match self {
            Fault::Conflict => matches!(operation, "TransactWriteItems" | "TransactGetItems"),
            _ => true,
        }
    }
}

/// One rule: `fault` for a share `rate` of the requests of `operation`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// An operation name (`TransactWriteItems`, `GetItem`, ...) or `*`.
    pub operation: String,
    pub fault: Fault,
    /// Share of the matching requests, `0.0..=1.0`.
    pub rate: f64,
    /// Let the first `skip` matching requests through untouched.
    #[serde(default)]
    pub skip: u64,
    /// Fire at most this many times.
    #[serde(default)]
    pub max: Option<u64>,
}

impl FaultRule {
    fn matches(&self, operation: &str) -> bool {
        (self.operation == "*" || self.operation == operation) && self.fault.applies_to(operation)
    }
}

/// The proxy's behaviour: a seed and the rules, in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultConfig {
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub rules: Vec<FaultRule>,
}

impl FaultConfig {
    /// No faults: a transparent proxy.
    pub fn none() -> FaultConfig {
        FaultConfig::default()
    }

    pub fn seeded(seed: u64) -> FaultConfig {
        FaultConfig {
            seed,
            rules: Vec::new(),
        }
    }

    /// Adds `fault` for a share `rate` of the requests of `operation` (or `*`).
    pub fn with(self, operation: &str, fault: Fault, rate: f64) -> FaultConfig {
        self.with_rule(FaultRule {
            operation: operation.to_owned(),
            fault,
            rate,
            skip: 0,
            max: None,
        })
    }

    pub fn with_rule(mut self, rule: FaultRule) -> FaultConfig {
        self.rules.push(rule);
        self
    }

    /// Applies one command-line flag (`name` with its leading `--`).
    /// `Ok(false)`: not a fault flag (the caller handles it or refuses it).
    pub fn apply_flag(&mut self, name: &str, value: &str) -> Result<bool, String> {
        let (fault, default_ops) = match name {
            "--seed" => {
                self.seed = value
                    .parse()
                    .map_err(|_| format!("--seed: not a number: {value:?}"))?;
                return Ok(true);
            }
            "--conflict" => (Fault::Conflict, "TransactWriteItems"),
            "--throttle" => (Fault::Throttling, "*"),
            "--throughput" => (Fault::ProvisionedThroughput, "*"),
            "--internal-error" => (Fault::InternalError, "*"),
            "--drop-ack" => (Fault::DropAfterForward, "TransactWriteItems"),
            "--error-after-write" => (Fault::ErrorAfterForward, "TransactWriteItems"),
            "--latency" => (Fault::Latency { ms: 0 }, "*"),
            _ => return Ok(false),
        };
        let (spec, ops) = match value.split_once('@') {
            Some((spec, ops)) => (spec, ops),
            None => (value, default_ops),
        };
        let parse_rate = |text: &str| -> Result<f64, String> {
            match text.trim().parse::<f64>() {
                Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
                _ => Err(format!("{name}: not a rate in 0..=1: {text:?}")),
            }
        };
        let (fault, rate) = match fault {
            Fault::Latency { .. } => {
                let (ms, rate) = match spec.split_once(':') {
                    Some((ms, rate)) => (ms, parse_rate(rate)?),
                    None => (spec, 1.0),
                };
                let ms = ms
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| format!("{name}: not milliseconds: {ms:?}"))?;
                (Fault::Latency { ms }, rate)
            }
            other => (other, parse_rate(spec)?),
        };
        for op in ops.split(',').map(str::trim).filter(|op| !op.is_empty()) {
            self.rules.push(FaultRule {
                operation: op.to_owned(),
                fault,
                rate,
                skip: 0,
                max: None,
            });
        }
        Ok(true)
    }
}

/// What the proxy did, counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProxyStats {
    /// Requests received per operation (every SDK attempt is one).
    pub requests: BTreeMap<String, u64>,
    /// Requests passed to the upstream per operation (including those whose
    /// answer was then dropped or replaced).
    pub forwarded: BTreeMap<String, u64>,
    /// Faults injected: [`Fault::name`] → operation → count.
    pub faults: BTreeMap<String, BTreeMap<String, u64>>,
    /// Requests the upstream answered 2xx but whose answer the client never
    /// saw (dropped, or replaced by a 500): writes that happened unacknowledged.
    pub unacknowledged: BTreeMap<String, u64>,
    /// Requests for which the upstream could not be reached (answered 502).
    pub upstream_failures: u64,
}

impl ProxyStats {
    pub fn requests(&self, operation: &str) -> u64 {
        self.requests.get(operation).copied().unwrap_or(0)
    }

    pub fn forwarded(&self, operation: &str) -> u64 {
        self.forwarded.get(operation).copied().unwrap_or(0)
    }

    /// Faults of one kind ([`Fault::name`]) injected into one operation.
    pub fn fault(&self, fault: &str, operation: &str) -> u64 {
        self.faults
            .get(fault)
            .and_then(|ops| ops.get(operation))
            .copied()
            .unwrap_or(0)
    }

    /// Faults of one kind over all operations.
    pub fn fault_total(&self, fault: &str) -> u64 {
        self.faults
            .get(fault)
            .map(|ops| ops.values().sum())
            .unwrap_or(0)
    }

    pub fn unacknowledged(&self, operation: &str) -> u64 {
        self.unacknowledged.get(operation).copied().unwrap_or(0)
    }
}

/// SplitMix64: small, seedable, good enough to pick requests.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// FNV-1a, to give each operation its own stream from one seed.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Default)]
struct Decision {
    fault: Option<Fault>,
    latency_ms: u64,
}

#[derive(Default)]
struct Inner {
    config: FaultConfig,
    rngs: HashMap<String, SplitMix64>,
    /// Per rule: matching requests seen, times fired.
    seen: Vec<u64>,
    fired: Vec<u64>,
    stats: ProxyStats,
}

impl Inner {
    fn set_config(&mut self, config: FaultConfig) {
        self.seen = vec![0; config.rules.len()];
        self.fired = vec![0; config.rules.len()];
        self.rngs.clear();
        self.config = config;
    }

    fn decide(&mut self, operation: &str) -> Decision {
        let seed = self.config.seed;
        let rng = self
            .rngs
            .entry(operation.to_owned())
            .or_insert_with(|| SplitMix64(seed ^ fnv1a(operation)));
        let draw = rng.next_f64();
        let mut decision = Decision::default();
        let mut edge = 0.0;
        for (i, rule) in self.config.rules.iter().enumerate() {
            if !rule.matches(operation) {
                continue;
            }
            self.seen[i] += 1;
            let eligible =
                self.seen[i] > rule.skip && rule.max.is_none_or(|max| self.fired[i] < max);
            let rate = if rule.rate.is_finite() {
                rule.rate.clamp(0.0, 1.0)
            } else {
                0.0
            };
            let fires = match rule.fault {
                Fault::Latency { ms } => {
                    let fires = rng.next_f64() < rate && eligible;
                    if fires {
                        decision.latency_ms = decision.latency_ms.saturating_add(ms);
                    }
                    fires
                }
                // A rule still skipping, or spent, takes no share of the draw.
                fault if eligible => {
                    let lower = edge;
                    edge += rate;
                    let fires = decision.fault.is_none() && draw >= lower && draw < edge;
                    if fires {
                        decision.fault = Some(fault);
                    }
                    fires
                }
                _ => false,
            };
            if fires {
                self.fired[i] += 1;
                *self
                    .stats
                    .faults
                    .entry(rule.fault.name().to_owned())
                    .or_default()
                    .entry(operation.to_owned())
                    .or_default() += 1;
            }
        }
        decision
    }
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn count(&self, field: fn(&mut ProxyStats) -> &mut BTreeMap<String, u64>, operation: &str) {
        *field(&mut self.lock().stats)
            .entry(operation.to_owned())
            .or_default() += 1;
    }
}

/// A running proxy. Dropping it stops the server.
pub struct FaultProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl FaultProxy {
    /// Listens on `listen` (port 0 picks a free port) and forwards to
    /// `upstream` (e.g. `http://127.0.0.1:8123`), with no faults until
    /// [`set_faults`](Self::set_faults). Needs a Tokio runtime.
    pub async fn spawn(listen: SocketAddr, upstream: String) -> io::Result<FaultProxy> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(io::Error::other)?;
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http,
            inner: Mutex::new(Inner::default()),
        });
        let (stop, mut stopped) = watch::channel(false);
        let app = router(shared.clone()).into_make_service_with_connect_info::<ConnHandle>();
        let server = axum::serve(FaultListener(listener), app).with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        });
        tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "fault proxy stopped");
            }
        });
        Ok(FaultProxy { shared, addr, stop })
    }

    /// `http://127.0.0.1:PORT`: the endpoint URL to give the DynamoDB client.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the rules (and restarts the random streams from the seed).
    pub fn set_faults(&self, config: FaultConfig) {
        self.shared.lock().set_config(config);
    }

    pub fn clear_faults(&self) {
        self.set_faults(FaultConfig::none());
    }

    pub fn faults(&self) -> FaultConfig {
        self.shared.lock().config.clone()
    }

    pub fn stats(&self) -> ProxyStats {
        self.shared.lock().stats.clone()
    }

    pub fn reset_stats(&self) {
        self.shared.lock().stats = ProxyStats::default();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Runs the proxy until the process ends (for `devstack faultproxy`).
pub async fn serve_forever(
    listen: SocketAddr,
    upstream: String,
    config: FaultConfig,
) -> io::Result<()> {
    let proxy = FaultProxy::spawn(listen, upstream.clone()).await?;
    tracing::info!(endpoint = %proxy.endpoint(), %upstream, rules = config.rules.len(), "DynamoDB fault proxy listening");
    proxy.set_faults(config);
    std::future::pending::<()>().await;
    drop(proxy);
    Ok(())
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_faultproxy/stats", get(control_stats))
        .route(
            "/_faultproxy/faults",
            get(control_faults).post(control_set_faults),
        )
        .route("/_faultproxy/reset", post(control_reset))
        .fallback(proxy)
        .with_state(shared)
}

async fn control_stats(State(shared): State<Arc<Shared>>) -> Json<ProxyStats> {
    Json(shared.lock().stats.clone())
}

async fn control_faults(State(shared): State<Arc<Shared>>) -> Json<FaultConfig> {
    Json(shared.lock().config.clone())
}

async fn control_set_faults(
    State(shared): State<Arc<Shared>>,
    Json(config): Json<FaultConfig>,
) -> Json<FaultConfig> {
    shared.lock().set_config(config.clone());
    Json(config)
}

async fn control_reset(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.lock().stats = ProxyStats::default();
    StatusCode::NO_CONTENT
}

/// `DynamoDB_20120810.TransactWriteItems` → `TransactWriteItems`.
fn operation_of(headers: &HeaderMap) -> String {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(|target| target.rsplit('.').next().unwrap_or(target).to_owned())
        .unwrap_or_else(|| "-".to_owned())
}

async fn proxy(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let operation = operation_of(&parts.headers);
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(e) => {
            return dynamo_error(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                &format!("request body unreadable: {e}"),
            );
        }
    };
    let decision = {
        let mut inner = shared.lock();
        *inner.stats.requests.entry(operation.clone()).or_default() += 1;
        inner.decide(&operation)
    };
    if decision.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(decision.latency_ms)).await;
    }
    match decision.fault {
        None => match forward(&shared, &operation, &parts, body).await {
            Ok(upstream) => upstream.into_response(),
            Err(response) => response,
        },
        Some(Fault::Conflict) => transaction_conflict(&body),
        Some(Fault::Throttling) => dynamo_error(
            StatusCode::BAD_REQUEST,
            "ThrottlingException",
            "Rate of requests exceeds the allowed throughput.",
        ),
        Some(Fault::ProvisionedThroughput) => dynamo_error(
            StatusCode::BAD_REQUEST,
            "ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded. \
             Consider increasing your provisioning level with the UpdateTable API.",
        ),
        Some(Fault::InternalError) => internal_error(),
        Some(fault @ (Fault::DropAfterForward | Fault::ErrorAfterForward)) => {
            let upstream = match forward(&shared, &operation, &parts, body).await {
                Ok(upstream) => upstream,
                Err(response) => return response,
            };
            if upstream.status.is_success() {
                shared.count(|s| &mut s.unacknowledged, &operation);
            }
            if fault == Fault::DropAfterForward {
                // Nothing more reaches the client on this connection: the
                // response below is never written.
                conn.kill();
            }
            internal_error()
        }
        // Latency rules never decide the outcome.
        Some(Fault::Latency { .. }) => internal_error(),
    }
}

struct Upstream {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl IntoResponse for Upstream {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        for (name, value) in &self.headers {
            if !is_hop_by_hop(name) && name != header::CONTENT_LENGTH {
                response.headers_mut().append(name.clone(), value.clone());
            }
        }
        response
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

async fn forward(
    shared: &Shared,
    operation: &str,
    parts: &axum::http::request::Parts,
    body: Bytes,
) -> Result<Upstream, Response> {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("{}{path}", shared.upstream);
    let mut request = shared.http.request(parts.method.clone(), &url).body(body);
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name) && name != header::HOST && name != header::CONTENT_LENGTH {
            request = request.header(name.clone(), value.clone());
        }
    }
    shared.count(|s| &mut s.forwarded, operation);
    let failed = |e: reqwest::Error| {
        shared.lock().stats.upstream_failures += 1;
        tracing::warn!(error = %e, %url, "fault proxy: upstream unreachable");
        dynamo_error(
            StatusCode::BAD_GATEWAY,
            "ServiceUnavailable",
            &format!("upstream unreachable: {e}"),
        )
    };
    let response = request.send().await.map_err(failed)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(failed)?;
    Ok(Upstream {
        status,
        headers,
        body,
    })
}

fn dynamo_response(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(AMZ_JSON));
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().simple().to_string().to_uppercase())
    {
        headers.insert("x-amzn-requestid", id);
    }
    response
}

fn dynamo_error(status: StatusCode, exception: &str, message: &str) -> Response {
    dynamo_response(
        status,
        json!({"__type": format!("{EXCEPTION_PREFIX}{exception}"), "message": message}),
    )
}

fn internal_error() -> Response {
    dynamo_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerError",
        "Internal server error",
    )
}

/// DynamoDB's answer to a transaction that lost a conflict: one reason per
/// item of the request, `TransactionConflict` for the first, `None` for the rest.
fn transaction_conflict(body: &[u8]) -> Response {
    dynamo_response(StatusCode::BAD_REQUEST, conflict_body(body))
}

fn conflict_body(body: &[u8]) -> Value {
    let items = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("TransactItems")
                .and_then(Value::as_array)
                .map(Vec::len)
        })
        .unwrap_or(1)
        .max(1);
    let mut codes = Vec::with_capacity(items);
    let mut reasons = Vec::with_capacity(items);
    for i in 0..items {
        if i == 0 {
            codes.push("TransactionConflict");
            reasons.push(json!({"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}));
        } else {
            codes.push("None");
            reasons.push(json!({"Code": "None"}));
        }
    }
    json!({
        "__type": format!("{EXCEPTION_PREFIX}TransactionCanceledException"),
        "message": format!(
            "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
            codes.join(", ")
        ),
        "CancellationReasons": reasons,
    })
}

/// Accepts TCP connections whose streams can be killed from a handler.
struct FaultListener(TcpListener);

impl Listener for FaultListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (KillableStream, SocketAddr) {
        loop {
            match self.0.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let stream = KillableStream {
                        stream,
                        kill: Arc::new(AtomicBool::new(false)),
                    };
                    return (stream, peer);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "fault proxy: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// Handed to the proxy handler: kills the connection the request came on.
#[derive(Clone)]
struct ConnHandle {
    kill: Arc<AtomicBool>,
}

impl ConnHandle {
    fn kill(&self) {
        self.kill.store(true, Ordering::SeqCst);
    }
}

impl Connected<IncomingStream<'_, FaultListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, FaultListener>) -> ConnHandle {
        ConnHandle {
            kill: stream.io().kill.clone(),
        }
    }
}

/// A TCP stream that, once killed, fails every read and write and is closed
/// with a reset (zero linger) when the server drops it.
struct KillableStream {
    stream: TcpStream,
    kill: Arc<AtomicBool>,
}

impl KillableStream {
    fn killed(&self) -> Option<io::Error> {
        if !self.kill.load(Ordering::SeqCst) {
            return None;
        }
        let _ = self.stream.set_zero_linger();
        Some(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "fault proxy dropped the connection",
        ))
    }
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.killed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.killed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.killed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.killed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.killed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_of_one_draw_do_not_overlap_and_follow_the_seed() {
        let config = FaultConfig::seeded(7)
            .with("TransactWriteItems", Fault::Conflict, 0.3)
            .with("TransactWriteItems", Fault::DropAfterForward, 0.1)
            .with("GetItem", Fault::Conflict, 1.0);
        let run = || {
            let mut inner = Inner::default();
            inner.set_config(config.clone());
            let fates: Vec<Option<Fault>> = (0..10_000)
                .map(|_| inner.decide("TransactWriteItems").fault)
                .collect();
            assert!(
                inner.decide("GetItem").fault.is_none(),
                "conflicts only for transactions"
            );
            fates
        };
        let fates = run();
        assert_eq!(fates, run(), "same seed, same fates");
        let count = |f: Fault| fates.iter().filter(|x| **x == Some(f)).count();
        assert!(
            (2800..3200).contains(&count(Fault::Conflict)),
            "{}",
            count(Fault::Conflict)
        );
        assert!(
            (850..1150).contains(&count(Fault::DropAfterForward)),
            "{}",
            count(Fault::DropAfterForward)
        );
    }

    #[test]
    fn skip_and_max_bound_a_rule() {
        let mut inner = Inner::default();
        inner.set_config(FaultConfig::seeded(1).with_rule(FaultRule {
            operation: "*".into(),
            fault: Fault::Throttling,
            rate: 1.0,
            skip: 2,
            max: Some(3),
        }));
        let fates: Vec<bool> = (0..8)
            .map(|_| inner.decide("GetItem").fault.is_some())
            .collect();
        assert_eq!(fates, [false, false, true, true, true, false, false, false]);
        assert_eq!(inner.stats.faults["throttling"]["GetItem"], 3);
    }

    #[test]
    fn spent_rules_leave_the_draw_to_the_next() {
        let rule = |fault, skip| FaultRule {
            operation: "TransactWriteItems".into(),
            fault,
            rate: 1.0,
            skip,
            max: Some(1),
        };
        let mut inner = Inner::default();
        inner.set_config(
            FaultConfig::seeded(3)
                .with_rule(rule(Fault::DropAfterForward, 0))
                .with_rule(rule(Fault::Conflict, 1)),
        );
        let fates: Vec<Option<Fault>> = (0..3)
            .map(|_| inner.decide("TransactWriteItems").fault)
            .collect();
        assert_eq!(
            fates,
            [Some(Fault::DropAfterForward), Some(Fault::Conflict), None]
        );
    }

    #[test]
    fn flags_build_rules() {
        let mut config = FaultConfig::none();
        for (name, value) in [
            ("--seed", "9"),
            ("--conflict", "0.3"),
            ("--throttle", "0.05@GetItem,TransactWriteItems"),
            ("--latency", "20:0.5"),
        ] {
            assert_eq!(config.apply_flag(name, value), Ok(true));
        }
        assert_eq!(config.apply_flag("--port", "1"), Ok(false));
        assert!(config.apply_flag("--drop-ack", "1.5").is_err());
        assert_eq!(config.seed, 9);
        assert_eq!(config.rules.len(), 4);
        assert_eq!(config.rules[0].operation, "TransactWriteItems");
        assert_eq!(config.rules[2].operation, "TransactWriteItems");
        assert_eq!(config.rules[3].fault, Fault::Latency { ms: 20 });
        assert_eq!(config.rules[3].rate, 0.5);
    }

    #[test]
    fn cancellations_carry_one_reason_per_item() {
        let body = conflict_body(br#"{"TransactItems": [{}, {}, {}]}"#);
        assert_eq!(
            body,
            json!({
                "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                "message": "Transaction cancelled, please refer cancellation reasons for specific reasons \
                            [TransactionConflict, None, None]",
                "CancellationReasons": [
                    {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"},
                    {"Code": "None"},
                    {"Code": "None"},
                ],
            })
        );
        assert_eq!(
            transaction_conflict(b"{}").status(),
            StatusCode::BAD_REQUEST
        );
    }
}
