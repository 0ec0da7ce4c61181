//! The local API Gateway: serves the HttpApi routes of `template.yaml` on one
//! port, turns each request into an API Gateway HTTP API payload v2.0 event,
//! invokes the route's function through the cargo-lambda emulator's Lambda
//! Invoke API (`POST {emulator}/2015-03-31/functions/{name}/invocations`,
//! what `cargo lambda invoke` uses) and turns the function's response back
//! into HTTP, as API Gateway does.
//!
//! Answers the way API Gateway does where it answers itself: 404
//! `{"message":"Not Found"}` for an unknown route, 502
//! `{"message":"Internal Server Error"}` when the function fails or returns
//! something malformed, 503 `{"message":"Service Unavailable"}` when the
//! invocation times out, 413 for a body over 1 MB. `GET /health` reports
//! whether the emulator and every configured dependency answer.

use crate::template::RouteDef;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod event;
mod routing;

pub use event::apigw_v2_event;
use routing::split_target;
pub use routing::{match_route, path_parameters};

/// Largest request body the gateway accepts.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The local API id (first label of the execute-api domain in AWS).
const API_ID: &str = "local";
/// AWS's documentation account id; the local stack has no account.
const ACCOUNT_ID: &str = "123456789012";

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("http client: {0}")]
    Client(String),
    #[error("bind/serve: {0}")]
    Io(#[from] std::io::Error),
}

/// Why an invocation produced no usable response.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("emulator unreachable: {0}")]
    Unreachable(String),
    #[error("invocation timed out")]
    Timeout,
    #[error("function error (emulator status {status}): {detail}")]
    Function { status: u16, detail: String },
}

/// An API Gateway-generated answer: `{"message": "..."}`.
fn gateway_answer(status: StatusCode, message: &str, request_id: &str) -> Response {
    let body = json!({ "message": message }).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("apigw-requestid", value);
    }
    response
}

/// Why a function's response could not be turned into HTTP.
#[derive(Debug, thiserror::Error)]
#[error("malformed function response: {0}")]
pub struct MalformedResponse(pub String);

/// Turns the function's payload-v2 response into status, headers and body,
/// as API Gateway does: `{statusCode, headers, multiValueHeaders?, cookies?,
/// body, isBase64Encoded}`; a JSON value without `statusCode` is sent as a
/// 200 `application/json` body.
pub fn lambda_response(
    payload: &[u8],
) -> Result<(StatusCode, HeaderMap, Vec<u8>), MalformedResponse> {
    let bad = |what: &str| MalformedResponse(what.to_owned());
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| MalformedResponse(e.to_string()))?;
    let Some(object) = value.as_object().filter(|o| o.contains_key("statusCode")) else {
        if value.get("errorType").is_some() && value.get("errorMessage").is_some() {
            return Err(bad("function error payload"));
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let body = match &value {
            Value::String(text) => text.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        };
        return Ok((StatusCode::OK, headers, body));
    };
    let status = object
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|code| u16::try_from(code).ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| bad("statusCode"))?;

    let mut headers = HeaderMap::new();
    let mut push = |name: &str, value: &str| -> Result<(), MalformedResponse> {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad("header name"))?;
        let value = HeaderValue::from_str(value).map_err(|_| bad("header value"))?;
        headers.append(name, value);
        Ok(())
    };
    let single = object.get("headers").and_then(Value::as_object);
    if let Some(single) = single {
        for (name, value) in single {
            match value {
                Value::String(text) => push(name, text)?,
                Value::Null => {}
                other => push(name, &other.to_string())?,
            }
        }
    }
    // API Gateway reads `headers`; `multiValueHeaders` (which lambda_http fills
    // with the same headers) only adds names `headers` does not have.
    if let Some(multi) = object.get("multiValueHeaders").and_then(Value::as_object) {
        for (name, values) in multi {
            if single.is_some_and(|s| s.keys().any(|k| k.eq_ignore_ascii_case(name))) {
                continue;
            }
            for value in values.as_array().map(Vec::as_slice).unwrap_or_default() {
                if let Some(text) = value.as_str() {
                    push(name, text)?;
                }
            }
        }
    }
    if let Some(cookies) = object.get("cookies").and_then(Value::as_array) {
        for cookie in cookies.iter().filter_map(Value::as_str) {
            push("set-cookie", cookie)?;
        }
    }
    let is_base64 = object
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let body = match object.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) if is_base64 => {
            BASE64.decode(text).map_err(|_| bad("base64 body"))?
        }
        Some(Value::String(text)) => text.clone().into_bytes(),
        Some(other) => other.to_string().into_bytes(),
    };
    Ok((status, headers, body))
}

/// The cargo-lambda emulator (`cargo lambda watch`), reached through the
/// Lambda Invoke API.
#[derive(Clone, Debug)]
pub struct Emulator {
    base_url: String,
    client: reqwest::Client,
}

impl Emulator {
    /// `base_url` like `http://127.0.0.1:9000`; `timeout` bounds one invocation
    /// (locally the emulator may first have to compile the function).
    pub fn new(base_url: &str, timeout: Duration) -> Result<Emulator, GatewayError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .timeout(timeout)
            .build()
            .map_err(|e| GatewayError::Client(e.to_string()))?;
        Ok(Emulator {
            base_url: base_url.trim_end_matches('/').to_owned(),
            client,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Invokes `function` synchronously with `payload`; returns the function's response payload.
    pub async fn invoke(&self, function: &str, payload: Vec<u8>) -> Result<Vec<u8>, InvokeError> {
        let url = format!(
            "{}/2015-03-31/functions/{function}/invocations",
            self.base_url
        );
        let response = self
            .client
            .post(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(payload)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    InvokeError::Timeout
                } else {
                    InvokeError::Unreachable(e.to_string())
                }
            })?;
        let status = response.status();
        let function_error = response.headers().get("x-amz-function-error").is_some();
        let body = response.bytes().await.map_err(|e| {
            if e.is_timeout() {
                InvokeError::Timeout
            } else {
                InvokeError::Unreachable(e.to_string())
            }
        })?;
        if !status.is_success() || function_error {
            let detail: String = String::from_utf8_lossy(&body).chars().take(2000).collect();
            return Err(InvokeError::Function {
                status: status.as_u16(),
                detail,
            });
        }
        Ok(body.to_vec())
    }
}

/// One dependency `GET /health` checks: it passes when `url` answers HTTP
/// (any status: DynamoDB Local answers 400 to a bare GET).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub name: String,
    pub url: String,
}

impl HealthCheck {
    /// `NAME=URL`, or a bare URL (named after itself).
    pub fn parse(spec: &str) -> HealthCheck {
        match spec.split_once('=') {
            Some((name, url)) if !name.contains('/') && !name.is_empty() => HealthCheck {
                name: name.to_owned(),
                url: url.to_owned(),
            },
            _ => HealthCheck {
                name: spec.to_owned(),
                url: spec.to_owned(),
            },
        }
    }
}

/// The dependencies `GET /health` checks (the emulator is always checked too).
#[derive(Clone, Debug, Default)]
pub struct HealthChecks {
    pub checks: Vec<HealthCheck>,
}

impl HealthChecks {
    pub fn new(checks: Vec<HealthCheck>) -> HealthChecks {
        HealthChecks { checks }
    }

    /// Probes every check concurrently; returns (all passed, report).
    pub async fn run(&self, client: &reqwest::Client) -> (bool, Value) {
        let mut tasks = tokio::task::JoinSet::new();
        for (index, check) in self.checks.iter().cloned().enumerate() {
            let client = client.clone();
            tasks.spawn(async move {
                let report = match client.get(&check.url).send().await {
                    Ok(response) => json!({
                        "name": check.name,
                        "url": check.url,
                        "ok": true,
                        "httpStatus": response.status().as_u16(),
                    }),
                    Err(e) => json!({
                        "name": check.name,
                        "url": check.url,
                        "ok": false,
                        "error": error_chain(&e),
                    }),
                };
                (index, report)
            });
        }
        let mut indexed = Vec::with_capacity(self.checks.len());
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(pair) => indexed.push(pair),
                Err(e) => indexed.push((
                    usize::MAX,
                    json!({"name": "probe", "ok": false, "error": e.to_string()}),
                )),
            }
        }
        indexed.sort_by_key(|(index, _)| *index);
        let results: Vec<Value> = indexed.into_iter().map(|(_, report)| report).collect();
        let failed: Vec<Value> = results
            .iter()
            .filter(|r| r.get("ok") != Some(&Value::Bool(true)))
            .filter_map(|r| r.get("name").cloned())
            .collect();
        let ok = failed.is_empty();
        let report = if ok {
            json!({ "status": "ok", "checks": results })
        } else {
            json!({ "status": "unavailable", "failed": failed, "checks": results })
        };
        (ok, report)
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

struct GatewayState {
    routes: Vec<RouteDef>,
    emulator: Emulator,
    health: HealthChecks,
    prober: reqwest::Client,
}

/// The gateway's router (also used by tests, bound to any listener).
pub fn router(
    routes: Vec<RouteDef>,
    emulator: Emulator,
    health: HealthChecks,
) -> Result<Router, GatewayError> {
    let prober = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| GatewayError::Client(e.to_string()))?;
    let mut health = health;
    if !health.checks.iter().any(|c| c.name == "emulator") {
        health.checks.push(HealthCheck {
            name: "emulator".into(),
            url: format!("{}/", emulator.base_url()),
        });
    }
    let state = Arc::new(GatewayState {
        routes,
        emulator,
        health,
        prober,
    });
    Ok(Router::new().fallback(handle).with_state(state))
}

/// Serves the routes at `addr` until Ctrl-C or SIGTERM.
pub async fn serve(
    addr: SocketAddr,
    routes: Vec<RouteDef>,
    invoker: Emulator,
    health: HealthChecks,
    cors: Option<crate::cors::CorsConfig>,
) -> Result<(), GatewayError> {
    let count = routes.len();
    // The HttpApi's CorsConfiguration (preflights, headers): see cors.rs.
    let app = crate::cors::apply(router(routes, invoker, health)?, cors);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, routes = count, "local API gateway listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

async fn handle(State(state): State<Arc<GatewayState>>, request: Request) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let source_ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "127.0.0.1".to_owned(), |info| info.0.ip().to_string());
    let method = request.method().as_str().to_owned();
    let target = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |pq| pq.as_str().to_owned(),
    );
    let (raw_path, raw_query) = split_target(&target);

    if method == "GET" && raw_path == "/health" {
        let (ok, report) = state.health.run(&state.prober).await;
        let status = if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let mut response = Response::new(Body::from(report.to_string()));
        *response.status_mut() = status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return response;
    }

    let Some(route) = match_route(&state.routes, &method, raw_path).cloned() else {
        tracing::info!(%method, path = raw_path, status = 404, "no route");
        return gateway_answer(StatusCode::NOT_FOUND, "Not Found", &request_id);
    };

    let declared_length = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return gateway_answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request Entity Too Large",
            &request_id,
        );
    }
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body: Bytes = match axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return gateway_answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request Entity Too Large",
                &request_id,
            );
        }
    };

    let event = apigw_v2_event(
        &route,
        &method,
        raw_path,
        raw_query,
        &headers,
        &body,
        &request_id,
        &source_ip,
    );
    let payload = event.to_string().into_bytes();
    let outcome = state.emulator.invoke(&route.function, payload).await;
    let response = match outcome {
        Ok(payload) => match lambda_response(&payload) {
            Ok((status, headers, body)) => {
                let mut response = Response::new(Body::from(body));
                *response.status_mut() = status;
                *response.headers_mut() = headers;
                if let Ok(value) = HeaderValue::from_str(&request_id) {
                    response.headers_mut().insert("apigw-requestid", value);
                }
                response
            }
            Err(e) => {
                tracing::warn!(function = %route.function, error = %e, "bad function response");
                gateway_answer(
                    StatusCode::BAD_GATEWAY,
                    "Internal Server Error",
                    &request_id,
                )
            }
        },
        Err(InvokeError::Timeout) => {
            tracing::warn!(function = %route.function, "invocation timed out");
            gateway_answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                &request_id,
            )
        }
        Err(e) => {
            tracing::warn!(function = %route.function, error = %e, "invocation failed");
            gateway_answer(
                StatusCode::BAD_GATEWAY,
                "Internal Server Error",
                &request_id,
            )
        }
    };
    tracing::info!(
        %method,
        path = raw_path,
        function = %route.function,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        request_id = %request_id,
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, path: &str, function: &str) -> RouteDef {
        RouteDef {
            method: method.into(),
            path: path.into(),
            function: function.into(),
        }
    }

    fn routes() -> Vec<RouteDef> {
        vec![
            route("GET", "/api/billing/balance", "balance"),
            route("GET", "/api/billing/transactions", "transactions"),
            route(
                "GET",
                "/api/admin/users/{id}/custom-credits",
                "admin-credits",
            ),
            route(
                "POST",
                "/api/admin/users/{id}/custom-credits",
                "admin-credits",
            ),
            route(
                "DELETE",
                "/api/admin/users/{id}/custom-credits",
                "admin-credits",
            ),
            route("GET", "/api/admin/users/me/custom-credits", "me"),
            route("POST", "/api/dns/plans/{planId}/purchase", "dns-purchase"),
        ]
    }

    fn strings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn matches_exact_segments_and_placeholders() {
        let routes = routes();
        let hit = |m: &str, p: &str| match_route(&routes, m, p).map(|r| r.function.as_str());
        assert_eq!(hit("GET", "/api/billing/balance"), Some("balance"));
        assert_eq!(hit("POST", "/api/billing/balance"), None);
        assert_eq!(hit("GET", "/api/billing/balance/"), None);
        assert_eq!(hit("GET", "/api/billing"), None);
        assert_eq!(hit("GET", "/api/billing/balance/extra"), None);
        assert_eq!(
            hit("GET", "/api/admin/users/1001/custom-credits"),
            Some("admin-credits")
        );
        assert_eq!(
            hit("DELETE", "/api/admin/users/1001/custom-credits"),
            Some("admin-credits")
        );
        assert_eq!(hit("GET", "/api/admin/users//custom-credits"), None);
        assert_eq!(hit("GET", "/api/admin/users/1/2/custom-credits"), None);
        // A literal segment beats a placeholder.
        assert_eq!(hit("GET", "/api/admin/users/me/custom-credits"), Some("me"));
        assert_eq!(hit("GET", "/unknown"), None);
    }

    #[test]
    fn greedy_and_any() {
        let routes = vec![
            route("ANY", "/files/{proxy+}", "files"),
            route("GET", "/files/a", "a"),
        ];
        assert_eq!(
            match_route(&routes, "GET", "/files/a").map(|r| &r.function[..]),
            Some("a")
        );
        assert_eq!(
            match_route(&routes, "POST", "/files/a/b").map(|r| &r.function[..]),
            Some("files")
        );
        assert!(match_route(&routes, "GET", "/files/").is_none());
        assert_eq!(
            path_parameters(&routes[0], "/files/a/b%20c"),
            vec![("proxy".to_string(), "a/b c".to_string())]
        );
    }

    #[test]
    fn builds_the_v2_event_with_path_parameters_and_query() {
        let r = route(
            "GET",
            "/api/admin/users/{id}/custom-credits",
            "admin-credits",
        );
        let headers = strings(&[
            ("Host", "127.0.0.1:3000"),
            ("User-Agent", "curl/8.5.0"),
            ("Authorization", "Bearer abc"),
            ("Accept", "text/html"),
            ("accept", "application/json"),
            ("Cookie", "a=1; b=2"),
        ]);
        let event = apigw_v2_event(
            &r,
            "get",
            "/api/admin/users/1001/custom-credits",
            "limit=10&cursor=a%2Bb%3D&tag=x&tag=y&flag",
            &headers,
            b"",
            "req-1",
            "10.0.0.7",
        );
        assert_eq!(event["version"], "2.0");
        assert_eq!(
            event["routeKey"],
            "GET /api/admin/users/{id}/custom-credits"
        );
        assert_eq!(event["rawPath"], "/api/admin/users/1001/custom-credits");
        assert_eq!(
            event["rawQueryString"],
            "limit=10&cursor=a%2Bb%3D&tag=x&tag=y&flag"
        );
        assert_eq!(event["cookies"], json!(["a=1", "b=2"]));
        assert_eq!(event["headers"]["authorization"], "Bearer abc");
        assert_eq!(event["headers"]["accept"], "text/html,application/json");
        assert_eq!(event["headers"]["x-forwarded-for"], "10.0.0.7");
        assert!(event["headers"].get("cookie").is_none());
        assert!(event["headers"].get("Authorization").is_none());
        assert_eq!(
            event["queryStringParameters"],
            json!({"limit": "10", "cursor": "a+b=", "tag": "x,y", "flag": ""})
        );
        assert_eq!(event["pathParameters"], json!({"id": "1001"}));
        let ctx = &event["requestContext"];
        assert_eq!(ctx["accountId"], ACCOUNT_ID);
        assert_eq!(ctx["apiId"], API_ID);
        assert_eq!(ctx["domainName"], "127.0.0.1");
        assert_eq!(ctx["domainPrefix"], "127");
        assert_eq!(ctx["http"]["method"], "GET");
        assert_eq!(ctx["http"]["path"], "/api/admin/users/1001/custom-credits");
        assert_eq!(ctx["http"]["protocol"], "HTTP/1.1");
        assert_eq!(ctx["http"]["sourceIp"], "10.0.0.7");
        assert_eq!(ctx["http"]["userAgent"], "curl/8.5.0");
        assert_eq!(ctx["requestId"], "req-1");
        assert_eq!(ctx["routeKey"], "GET /api/admin/users/{id}/custom-credits");
        assert_eq!(ctx["stage"], "$default");
        assert!(
            ctx["timeEpoch"]
                .as_i64()
                .is_some_and(|t| t > 1_600_000_000_000)
        );
        let time_text = ctx["time"].as_str().unwrap();
        assert_eq!(
            time_text.len(),
            "12/Mar/2020:19:03:58 +0000".len(),
            "{time_text}"
        );
        assert!(time_text.ends_with(" +0000"));
        assert!(event.get("body").is_none());
        assert_eq!(event["isBase64Encoded"], false);
    }

    #[test]
    fn omits_empty_parts_and_keeps_text_bodies() {
        let r = route("POST", "/api/billing/custom-credits/add", "credits-add");
        let body = br#"{"amount": "10.00"}"#;
        let event = apigw_v2_event(
            &r,
            "POST",
            "/api/billing/custom-credits/add",
            "",
            &[],
            body,
            "r",
            "127.0.0.1",
        );
        assert!(event.get("queryStringParameters").is_none());
        assert!(event.get("pathParameters").is_none());
        assert!(event.get("cookies").is_none());
        assert_eq!(event["rawQueryString"], "");
        assert_eq!(event["body"], r#"{"amount": "10.00"}"#);
        assert_eq!(event["isBase64Encoded"], false);
        assert_eq!(event["requestContext"]["domainName"], "localhost");
    }

    #[test]
    fn base64_encodes_binary_bodies() {
        let r = route("POST", "/api/dns/plans/{planId}/purchase", "dns-purchase");
        let body = [0xff_u8, 0x00, 0xfe, b'a'];
        let event = apigw_v2_event(
            &r,
            "POST",
            "/api/dns/plans/basic%2D1/purchase",
            "",
            &[],
            &body,
            "r",
            "::1",
        );
        assert_eq!(event["isBase64Encoded"], true);
        let encoded = event["body"].as_str().unwrap();
        assert_eq!(BASE64.decode(encoded).unwrap(), body);
        assert_eq!(event["pathParameters"], json!({"planId": "basic-1"}));
    }

    #[test]
    fn function_url_routes_have_the_default_route_key() {
        let r = route("POST", "/webhooks/paypal", "paypal-webhook");
        let event = apigw_v2_event(
            &r,
            "POST",
            "/webhooks/paypal",
            "",
            &[],
            b"{}",
            "r",
            "127.0.0.1",
        );
        assert_eq!(event["routeKey"], "$default");
        assert_eq!(event["requestContext"]["routeKey"], "$default");
    }

    #[test]
    fn converts_function_responses() {
        let payload = json!({
            "statusCode": 201,
            "headers": {"content-type": "application/json", "x-request-id": "abc"},
            "multiValueHeaders": {"content-type": ["application/json"], "x-extra": ["1", "2"]},
            "cookies": ["s=1; HttpOnly"],
            "body": "{\"ok\":true}",
            "isBase64Encoded": false
        });
        let (status, headers, body) = lambda_response(payload.to_string().as_bytes()).unwrap();
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(headers.get_all("content-type").iter().count(), 1);
        assert_eq!(headers["x-request-id"], "abc");
        assert_eq!(headers.get_all("x-extra").iter().count(), 2);
        assert_eq!(headers["set-cookie"], "s=1; HttpOnly");
        assert_eq!(body, b"{\"ok\":true}");

        let binary =
            json!({"statusCode": 200, "body": BASE64.encode([1u8, 2, 3]), "isBase64Encoded": true});
        let (_, _, body) = lambda_response(binary.to_string().as_bytes()).unwrap();
        assert_eq!(body, vec![1, 2, 3]);

        // No statusCode: API Gateway answers 200 with the JSON as body.
        let (status, headers, body) = lambda_response(br#"{"hello":"world"}"#).unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(body, br#"{"hello":"world"}"#);

        assert!(lambda_response(br#"{"errorType":"Panic","errorMessage":"boom"}"#).is_err());
        assert!(lambda_response(br#"{"statusCode": 42}"#).is_err());
        assert!(lambda_response(b"not json").is_err());
    }

    #[test]
    fn parses_health_checks() {
        assert_eq!(
            HealthCheck::parse("dynamodb=http://127.0.0.1:8000"),
            HealthCheck {
                name: "dynamodb".into(),
                url: "http://127.0.0.1:8000".into()
            }
        );
        assert_eq!(HealthCheck::parse("http://x:1/?a=b").url, "http://x:1/?a=b");
    }
}
