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
//! [`FaultConfig::apply_flag`] from these flags (`devstack faultproxy --help`):
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
//!
//! Local IAM: unless `LOCAL_IAM=off`, every request signed by a function of
//! `template.yaml` (its logical id or binary name as access key id) is first
//! checked against that function's policy ([`crate::iam`]) and refused as
//! AWS would (400 `AccessDeniedException`, counted in
//! [`ProxyStats::access_denied`]); other callers pass unchecked. The same
//! proxy in front of moto checks Secrets Manager, EventBridge and SQS calls.
//!
//! The code: `config` (faults, rules, the CLI flags, the counters), `decide`
//! (the seeded draw), `upstream` (forwarding and the DynamoDB-shaped
//! answers), `conn` (connections a handler can reset); the server, here.

mod config;
mod conn;
mod decide;
mod tokens;
mod upstream;

pub use config::{Fault, FaultConfig, FaultRule, ProxyStats};

use crate::iam::{self, Policies, Service};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use conn::{ConnHandle, FaultListener};
use decide::Inner;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use upstream::{access_denied, dynamo_error, forward, internal_error, transaction_conflict};

/// The port `devstack faultproxy` listens on by default.
pub const DEFAULT_PORT: u16 = 8124;

/// Largest request body passed on (DynamoDB's own limit is 16 MB).
const MAX_BODY: usize = 32 * 1024 * 1024;

struct Shared {
    upstream: String,
    http: reqwest::Client,
    inner: Mutex<Inner>,
    /// Local IAM: the functions' policies (None: every call passes).
    iam: Mutex<Option<Arc<Policies>>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn iam(&self) -> MutexGuard<'_, Option<Arc<Policies>>> {
        self.iam
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
    /// [`set_faults`](Self::set_faults). Local IAM is on (the policies of
    /// `template.yaml`) unless `LOCAL_IAM=off`. Needs a Tokio runtime.
    pub async fn spawn(listen: SocketAddr, upstream: String) -> io::Result<FaultProxy> {
        let iam = if iam::enforced_by_env() {
            Some(Policies::load().map_err(io::Error::other)?)
        } else {
            None
        };
        FaultProxy::spawn_with(listen, upstream, iam).await
    }

    /// Same, with the given policies (None: no IAM check).
    pub async fn spawn_with(
        listen: SocketAddr,
        upstream: String,
        iam: Option<Policies>,
    ) -> io::Result<FaultProxy> {
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
            iam: Mutex::new(iam.map(Arc::new)),
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

    /// Replaces the policies local IAM evaluates (None: no check); e.g. a
    /// narrowed copy of a function's policy in a test.
    pub fn set_policies(&self, policies: Option<Policies>) {
        *self.shared.iam() = policies.map(Arc::new);
    }

    /// The policies evaluated now (None: IAM is off).
    pub fn policies(&self) -> Option<Policies> {
        self.shared.iam().as_deref().cloned()
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

/// The access key id of a SigV4 `Authorization` header
/// (`AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request, ...`).
fn access_key_of(headers: &HeaderMap) -> Option<&str> {
    let authorization = headers.get("authorization")?.to_str().ok()?;
    let credential = authorization.split("Credential=").nth(1)?;
    credential.split('/').next()
}

/// Local IAM: the refusal AWS would answer, if the caller is a function
/// whose policy does not allow every access the call asks for.
fn check_iam(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
    let policies = shared.iam().clone()?;
    let function = policies.function_of(access_key_of(headers)?)?;
    let target = headers.get("x-amz-target")?.to_str().ok()?;
    let (service, operation) = Service::of_target(target)?;
    let accesses = iam::accesses(service, operation, body);
    let denied = policies.check(function, &accesses).err()?;
    *shared
        .lock()
        .stats
        .access_denied
        .entry(format!("{} {}", denied.function, denied.action))
        .or_default() += 1;
    tracing::warn!(function = %denied.function, action = %denied.action, resource = %denied.resource, "local IAM refused a call");
    Some(access_denied(service, &denied.message()))
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
    if let Some(refused) = check_iam(&shared, &parts.headers, &body) {
        return refused;
    }
    let (decision, mismatch) = {
        let mut inner = shared.lock();
        *inner.stats.requests.entry(operation.clone()).or_default() += 1;
        let mismatch = inner.tokens.reused_with_other_items(&operation, &body);
        if mismatch {
            inner.stats.token_mismatches += 1;
        }
        (inner.decide(&operation), mismatch)
    };
    if mismatch {
        return dynamo_error(
            StatusCode::BAD_REQUEST,
            "IdempotentParameterMismatchException",
            "DynamoDB rejected the request because you retried a request with a different payload but with an idempotent token that was already used.",
        );
    }
    if decision.latency_ms > 0 {
        let delay = Duration::from_millis(decision.latency_ms);
        if decision.fault.is_none() {
            // A delayed request still reaches DynamoDB when its client stops
            // waiting (an attempt timeout), as one already on the wire does:
            // the late write lands. Its own task, so the hang-up cannot cancel it.
            let late = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                match forward(&shared, &operation, &parts, body).await {
                    Ok(upstream) => upstream.into_response(),
                    Err(response) => response,
                }
            });
            return late.await.unwrap_or_else(|_| internal_error());
        }
        tokio::time::sleep(delay).await;
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
