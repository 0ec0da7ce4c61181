//! CORS for the local API gateway, as the deployed HttpApi does it: the
//! `CorsConfiguration` of the `AWS::Serverless::HttpApi` in `template.yaml`
//! (read once, parameters resolved from their defaults or from overrides, as
//! `sam deploy --parameter-overrides` would).
//!
//! What API Gateway does, and so what this does
//! (<https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-cors.html>):
//! - a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
//!   is answered by the gateway itself, whatever the route (no function runs):
//!   204 with the allowed origin, methods, headers and max age when the origin
//!   is allowed; 204 without CORS headers otherwise (the browser then blocks);
//! - any other request with an `Origin` goes to its route as usual; the
//!   function's own `access-control-*` headers are dropped and, for an allowed
//!   origin, the configured ones added (`Access-Control-Allow-Origin`,
//!   `Access-Control-Expose-Headers`, credentials);
//! - requests without `Origin` (curl, server to server) are untouched.
//!
//! Origins match exactly (scheme, host, port; case-insensitive), or `*`, or
//! a scheme wildcard `https://*` / `http://*`. A `*` in the methods or headers
//! allows whatever the preflight asks for.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_norway::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum CorsError {
    #[error("cannot parse template: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("CorsConfiguration: {0}")]
    Shape(String),
}

/// The HttpApi's `CorsConfiguration`, parameters resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CorsConfig {
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<u64>,
    pub allow_credentials: bool,
}

impl CorsConfig {
    /// The `CorsConfiguration` of the first `AWS::Serverless::HttpApi` of the
    /// template (`None` when it has none: then the gateway adds no CORS, as
    /// API Gateway). `!Ref Param` / `{"Ref": "Param"}` values are resolved
    /// from `overrides`, else the parameter's `Default`.
    pub fn from_template(
        text: &str,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Option<CorsConfig>, CorsError> {
        let root: Value = serde_norway::from_str(text)?;
        let Some(resources) = root.get("Resources").and_then(Value::as_mapping) else {
            return Ok(None);
        };
        let Some(cors) = resources
            .values()
            .filter(|r| r.get("Type").and_then(Value::as_str) == Some("AWS::Serverless::HttpApi"))
            .find_map(|r| r.get("Properties")?.get("CorsConfiguration"))
        else {
            return Ok(None);
        };
        let resolver = Resolver {
            parameters: root.get("Parameters"),
            overrides,
        };
        // `CorsConfiguration: true` allows every origin (SAM's shorthand).
        if cors.as_bool() == Some(true) {
            return Ok(Some(CorsConfig {
                allow_origins: vec!["*".into()],
                allow_methods: vec!["*".into()],
                allow_headers: vec!["*".into()],
                ..CorsConfig::default()
            }));
        }
        let list = |key: &str| -> Result<Vec<String>, CorsError> {
            match cors.get(key) {
                None => Ok(Vec::new()),
                Some(value) => resolver.list(value, key),
            }
        };
        let max_age = match cors.get("MaxAge") {
            None => None,
            Some(value) => Some(
                resolver
                    .scalar(value, "MaxAge")?
                    .parse::<u64>()
                    .map_err(|_| CorsError::Shape("MaxAge: not a number of seconds".into()))?,
            ),
        };
        let allow_credentials = match cors.get("AllowCredentials") {
            None => false,
            Some(value) => resolver.scalar(value, "AllowCredentials")? == "true",
        };
        Ok(Some(CorsConfig {
            allow_origins: list("AllowOrigins")?,
            allow_methods: list("AllowMethods")?,
            allow_headers: list("AllowHeaders")?,
            expose_headers: list("ExposeHeaders")?,
            max_age,
            allow_credentials,
        }))
    }

    /// Whether a browser page on `origin` may read the API's answers.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        self.allow_origins.iter().any(|allowed| {
            let allowed = allowed.to_ascii_lowercase();
            match allowed.as_str() {
                "*" => true,
                "https://*" => origin.starts_with("https://"),
                "http://*" => origin.starts_with("http://"),
                exact => exact.trim_end_matches('/') == origin,
            }
        })
    }

    /// The `Access-Control-Allow-Origin` value for an allowed origin.
    fn allow_origin_value(&self, origin: &str) -> String {
        if self.allow_origins.iter().any(|o| o == "*") && !self.allow_credentials {
            "*".to_owned()
        } else {
            origin.to_owned()
        }
    }

    /// The gateway's answer to a preflight from `origin`.
    pub fn preflight(&self, origin: &str, request_headers: &HeaderMap) -> Response {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        if !self.origin_allowed(origin) {
            return response;
        }
        let requested = |name: header::HeaderName| {
            request_headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let methods = if self.allow_methods.iter().any(|m| m == "*") {
            requested(header::ACCESS_CONTROL_REQUEST_METHOD)
        } else {
            self.allow_methods.join(",")
        };
        let allow_headers = if self.allow_headers.iter().any(|h| h == "*") {
            requested(header::ACCESS_CONTROL_REQUEST_HEADERS)
        } else {
            self.allow_headers.join(",")
        };
        let headers = response.headers_mut();
        self.put_common(headers, origin);
        put(headers, header::ACCESS_CONTROL_ALLOW_METHODS, &methods);
        put(
            headers,
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            &allow_headers,
        );
        if let Some(max_age) = self.max_age {
            put(
                headers,
                header::ACCESS_CONTROL_MAX_AGE,
                &max_age.to_string(),
            );
        }
        response
    }

    /// Replaces whatever CORS headers the function sent by the configured ones.
    pub fn decorate(&self, origin: &str, headers: &mut HeaderMap) {
        let backend: Vec<header::HeaderName> = headers
            .keys()
            .filter(|name| name.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for name in backend {
            headers.remove(name);
        }
        if !self.origin_allowed(origin) {
            return;
        }
        self.put_common(headers, origin);
        if !self.expose_headers.is_empty() {
            put(
                headers,
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                &self.expose_headers.join(","),
            );
        }
    }

    fn put_common(&self, headers: &mut HeaderMap, origin: &str) {
        put(
            headers,
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            &self.allow_origin_value(origin),
        );
        if self.allow_credentials {
            put(headers, header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true");
        }
        headers.append(header::VARY, HeaderValue::from_static("origin"));
    }
}

fn put(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// Resolves `!Ref` against the template's parameters.
struct Resolver<'a> {
    parameters: Option<&'a Value>,
    overrides: &'a BTreeMap<String, String>,
}

impl Resolver<'_> {
    fn reference(&self, name: &str, key: &str) -> Result<String, CorsError> {
        if let Some(value) = self.overrides.get(name) {
            return Ok(value.clone());
        }
        self.parameters
            .and_then(|p| p.get(name))
            .and_then(|p| p.get("Default"))
            .and_then(plain)
            .ok_or_else(|| {
                CorsError::Shape(format!(
                    "{key}: parameter {name} has no default and no override"
                ))
            })
    }

    fn scalar(&self, value: &Value, key: &str) -> Result<String, CorsError> {
        if let Some(text) = plain(value) {
            return Ok(text);
        }
        if let Value::Tagged(tagged) = value
            && tagged.tag == "!Ref"
            && let Some(name) = tagged.value.as_str()
        {
            return self.reference(name, key);
        }
        if let Some(name) = value.get("Ref").and_then(Value::as_str) {
            return self.reference(name, key);
        }
        Err(CorsError::Shape(format!(
            "{key}: only plain values and !Ref are supported locally"
        )))
    }

    fn list(&self, value: &Value, key: &str) -> Result<Vec<String>, CorsError> {
        match value.as_sequence() {
            Some(items) => items.iter().map(|item| self.scalar(item, key)).collect(),
            // `!Ref` of a `CommaDelimitedList` parameter is a list.
            None if self.is_list_parameter(value) => Ok(self
                .scalar(value, key)?
                .split(',')
                .map(|item| item.trim().to_owned())
                .filter(|item| !item.is_empty())
                .collect()),
            None => Ok(vec![self.scalar(value, key)?]),
        }
    }

    fn is_list_parameter(&self, value: &Value) -> bool {
        let name = match value {
            Value::Tagged(tagged) if tagged.tag == "!Ref" => tagged.value.as_str(),
            _ => value.get("Ref").and_then(Value::as_str),
        };
        name.and_then(|name| self.parameters?.get(name)?.get("Type")?.as_str())
            == Some("CommaDelimitedList")
    }
}

fn plain(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// The middleware the gateway hooks in (`axum::middleware::from_fn_with_state`).
pub async fn middleware(
    State(config): State<Arc<CorsConfig>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(origin) = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return next.run(request).await;
    };
    if request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        tracing::info!(%origin, allowed = config.origin_allowed(&origin), "CORS preflight");
        return config.preflight(&origin, request.headers());
    }
    let mut response = next.run(request).await;
    config.decorate(&origin, response.headers_mut());
    response
}

/// Wraps `router` with the CORS of `config` (unchanged when `None`).
pub fn apply(router: axum::Router, config: Option<CorsConfig>) -> axum::Router {
    match config {
        Some(config) => router.layer(axum::middleware::from_fn_with_state(
            Arc::new(config),
            middleware,
        )),
        None => router,
    }
}

/// `Name=Value` (a `--parameter` option) → (name, value).
pub fn parse_override(spec: &str) -> Option<(String, String)> {
    let (name, value) = spec.split_once('=')?;
    (!name.is_empty()).then(|| (name.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Parameters:
  FrontendOrigin:
    Type: String
    Default: "http://localhost:5173"
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      CorsConfiguration:
        AllowOrigins: [!Ref FrontendOrigin, "https://panel.example.com"]
        AllowMethods: [GET, POST, DELETE, OPTIONS]
        AllowHeaders: [authorization, content-type, idempotency-key]
        ExposeHeaders: [x-request-id]
        MaxAge: 600
"#;

    #[test]
    fn reads_the_template_and_resolves_parameters() {
        let config = CorsConfig::from_template(TEMPLATE, &BTreeMap::new())
            .unwrap()
            .unwrap();
        assert_eq!(
            config.allow_origins,
            vec!["http://localhost:5173", "https://panel.example.com"]
        );
        assert_eq!(
            config.allow_methods,
            vec!["GET", "POST", "DELETE", "OPTIONS"]
        );
        assert_eq!(
            config.allow_headers,
            vec!["authorization", "content-type", "idempotency-key"]
        );
        assert_eq!(config.expose_headers, vec!["x-request-id"]);
        assert_eq!(config.max_age, Some(600));
        assert!(!config.allow_credentials);

        let overrides = BTreeMap::from([(
            "FrontendOrigin".to_owned(),
            "http://127.0.0.1:5173".to_owned(),
        )]);
        let config = CorsConfig::from_template(TEMPLATE, &overrides)
            .unwrap()
            .unwrap();
        assert_eq!(config.allow_origins[0], "http://127.0.0.1:5173");
    }

    #[test]
    fn a_comma_delimited_list_parameter_is_a_list_of_origins() {
        let template = r#"
Parameters:
  FrontendOrigin:
    Type: CommaDelimitedList
    Default: "http://localhost:5173,http://127.0.0.1:5173"
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      CorsConfiguration:
        AllowOrigins: !Ref FrontendOrigin
"#;
        let config = CorsConfig::from_template(template, &BTreeMap::new())
            .unwrap()
            .unwrap();
        assert_eq!(
            config.allow_origins,
            vec!["http://localhost:5173", "http://127.0.0.1:5173"]
        );
        let overrides = BTreeMap::from([(
            "FrontendOrigin".to_owned(),
            "https://a.example, https://b.example".to_owned(),
        )]);
        let config = CorsConfig::from_template(template, &overrides)
            .unwrap()
            .unwrap();
        assert_eq!(
            config.allow_origins,
            vec!["https://a.example", "https://b.example"]
        );
    }

    #[test]
    fn the_project_template_configures_cors_for_the_frontend() {
        let text = std::fs::read_to_string(crate::template_path()).unwrap();
        let config = CorsConfig::from_template(&text, &BTreeMap::new())
            .unwrap()
            .expect("template.yaml configures CORS on the HttpApi");
        assert!(!config.allow_origins.is_empty());
        for header in ["authorization", "content-type", "idempotency-key"] {
            assert!(config.allow_headers.iter().any(|h| h == header), "{header}");
        }
        assert!(config.expose_headers.iter().any(|h| h == "x-request-id"));
        for method in ["GET", "POST", "DELETE"] {
            assert!(config.allow_methods.iter().any(|m| m == method), "{method}");
        }
    }

    #[test]
    fn no_http_api_or_no_cors_means_none() {
        assert_eq!(
            CorsConfig::from_template("Resources: {}", &BTreeMap::new()).unwrap(),
            None
        );
        let text = "Resources:\n  Api:\n    Type: AWS::Serverless::HttpApi\n    Properties: {}\n";
        assert_eq!(
            CorsConfig::from_template(text, &BTreeMap::new()).unwrap(),
            None
        );
        let missing = "Resources:\n  Api:\n    Type: AWS::Serverless::HttpApi\n    Properties:\n      CorsConfiguration:\n        AllowOrigins: [!Ref Nope]\n";
        assert!(CorsConfig::from_template(missing, &BTreeMap::new()).is_err());
    }

    #[test]
    fn origins_match_exactly_or_by_wildcard() {
        let config = CorsConfig {
            allow_origins: vec!["http://localhost:5173".into(), "https://*".into()],
            ..CorsConfig::default()
        };
        assert!(config.origin_allowed("http://localhost:5173"));
        assert!(config.origin_allowed("HTTP://LOCALHOST:5173"));
        assert!(config.origin_allowed("https://anything.example"));
        assert!(!config.origin_allowed("http://localhost:5174"));
        assert!(!config.origin_allowed("http://127.0.0.1:5173"));
        assert!(!config.origin_allowed("null"));
        let any = CorsConfig {
            allow_origins: vec!["*".into()],
            ..CorsConfig::default()
        };
        assert!(any.origin_allowed("http://evil.example"));
        assert_eq!(any.allow_origin_value("http://evil.example"), "*");
    }

    #[test]
    fn backend_cors_headers_are_replaced() {
        let config = CorsConfig::from_template(TEMPLATE, &BTreeMap::new())
            .unwrap()
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        headers.insert("x-request-id", HeaderValue::from_static("r1"));
        config.decorate("http://localhost:5173", &mut headers);
        assert_eq!(
            headers["access-control-allow-origin"],
            "http://localhost:5173"
        );
        assert_eq!(headers["access-control-expose-headers"], "x-request-id");
        assert_eq!(headers["x-request-id"], "r1");

        let mut headers = HeaderMap::new();
        headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        config.decorate("http://other.example", &mut headers);
        assert!(headers.get("access-control-allow-origin").is_none());
    }

    /// An emulator stand-in on a real port: every invocation answers 200 with
    /// an `x-request-id` and a CORS header of its own (which the gateway drops).
    async fn emulator_standin() -> String {
        let app = axum::Router::new().fallback(|| async {
            axum::Json(serde_json::json!({
                "statusCode": 200,
                "headers": {
                    "content-type": "application/json",
                    "x-request-id": "req-123",
                    "access-control-allow-origin": "*"
                },
                "body": "{\"ok\":true}"
            }))
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    /// The local gateway, CORS from the project's template.yaml with the
    /// frontend origin overridden, served on a real port.
    async fn gateway_with_cors() -> String {
        let text = std::fs::read_to_string(crate::template_path()).unwrap();
        let overrides = BTreeMap::from([(
            "FrontendOrigin".to_owned(),
            "http://127.0.0.1:5173".to_owned(),
        )]);
        let cors = CorsConfig::from_template(&text, &overrides).unwrap();
        let routes = vec![crate::template::RouteDef {
            method: "GET".into(),
            path: "/api/billing/balance".into(),
            function: "balance".into(),
        }];
        let emulator = crate::gateway::Emulator::new(
            &emulator_standin().await,
            std::time::Duration::from_secs(5),
        )
        .unwrap();
        let app = apply(
            crate::gateway::router(routes, emulator, crate::gateway::HealthChecks::default())
                .unwrap(),
            cors,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    #[tokio::test]
    async fn the_gateway_answers_preflights_from_the_template() {
        let api = gateway_with_cors().await;
        let preflight = |origin: &'static str, path: &'static str| {
            client()
                .request(Method::OPTIONS, format!("{api}{path}"))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization,content-type,idempotency-key",
                )
                .send()
        };
        // Allowed origin: 204 with the template's lists, for any path (API
        // Gateway answers preflights itself, route or not).
        for path in ["/api/billing/balance", "/api/billing/custom-credits/add"] {
            let response = preflight("http://127.0.0.1:5173", path).await.unwrap();
            assert_eq!(response.status(), 204, "{path}");
            let h = response.headers();
            assert_eq!(h["access-control-allow-origin"], "http://127.0.0.1:5173");
            assert_eq!(
                h["access-control-allow-methods"],
                "GET,POST,PATCH,DELETE,OPTIONS"
            );
            let allowed = h["access-control-allow-headers"].to_str().unwrap();
            for header in ["authorization", "content-type", "idempotency-key"] {
                assert!(allowed.split(',').any(|a| a == header), "{allowed}");
            }
            assert_eq!(h["access-control-max-age"], "600");
        }
        // Another origin: answered, but without permission.
        let response = preflight("http://evil.example", "/api/billing/balance")
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
        assert!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_none()
        );
        // OPTIONS that is not a preflight goes to the routes: 404 like any unknown route.
        let response = client()
            .request(Method::OPTIONS, format!("{api}/api/billing/balance"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }

    #[tokio::test]
    async fn responses_carry_the_configured_cors_headers_only() {
        let api = gateway_with_cors().await;
        let get = |origin: Option<&'static str>| {
            let mut request = client().get(format!("{api}/api/billing/balance"));
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            request.send()
        };
        let response = get(Some("http://127.0.0.1:5173")).await.unwrap();
        assert_eq!(response.status(), 200);
        let h = response.headers();
        assert_eq!(h["access-control-allow-origin"], "http://127.0.0.1:5173");
        // The export's file name and a 429's Retry-After are readable by the billing page.
        assert_eq!(
            h["access-control-expose-headers"],
            "x-request-id,content-disposition,retry-after"
        );
        assert_eq!(h["x-request-id"], "req-123");
        // Another origin: the function's own `*` is dropped, nothing added.
        let response = get(Some("http://evil.example")).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_none()
        );
        // No Origin (curl, a server): untouched.
        let response = get(None).await.unwrap();
        assert_eq!(response.headers()["access-control-allow-origin"], "*");
    }
}
