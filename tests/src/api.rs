//! Drives the real function handlers the way API Gateway does: a request is
//! matched against the routes of `template.yaml` and turned into an API
//! Gateway v2 event by the local gateway's own event builder, then parsed by
//! `lambda_http` exactly as in Lambda. Every response is checked against
//! docs/openapi.yaml (`crate::openapi`): an undocumented status or a body
//! that does not match its schema fails the test.

use crate::TestTable;
use crate::dispatch::Functions;
use billing_http::jwt::{Claims, sign};
use devstack::paypal::PayPalStandIn;
use devstack::template::{RouteDef, Template};
use devstack::virtfusion::VirtFusionStandIn;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

pub const JWT_SECRET: &str = "test-secret";
pub const VIRTFUSION_TOKEN: &str = "test-virtfusion-token";
pub const PAYPAL_CLIENT: (&str, &str) = ("test-client", "test-secret");
pub const PAYPAL_WEBHOOK_ID: &str = "test-webhook";

pub struct TestApi {
    pub table: TestTable,
    pub virtfusion: VirtFusionStandIn,
    pub paypal: PayPalStandIn,
    routes: Vec<RouteDef>,
    /// The test's own PayPal and VirtFusion clients, and the ledger the
    /// functions were given (no function's credentials: IAM does not check it).
    pub payments: Arc<billing_http::PaymentDeps>,
    functions: Functions,
    /// What each function's client is built from (its endpoint, interceptors).
    function_base: aws_sdk_dynamodb::Client,
    retry: Option<ledger::RetryPolicy>,
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    /// The JSON body; a non-JSON body (a CSV export) as a JSON string.
    pub body: Value,
    pub request_id: Option<String>,
    /// Every response header (lower-case names).
    pub headers: Vec<(String, String)>,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl TestApi {
    pub async fn new() -> TestApi {
        let table = TestTable::new().await;
        let ledger = table.ledger();
        let base = table.function_base().clone();
        TestApi::build(table, ledger, base, None).await
    }

    /// Like [`TestApi::new`], but the functions reach DynamoDB through `client`
    /// (e.g. one pointed at the fault proxy) with `retry`, each with its own
    /// function's credentials (that fault proxy checks them: local IAM); the
    /// table itself is created directly, and [`TestApi::ledger`] still reads
    /// directly.
    pub async fn with_client(
        client: aws_sdk_dynamodb::Client,
        retry: ledger::RetryPolicy,
    ) -> TestApi {
        let table = TestTable::new().await;
        let ledger = billing::events::watch_low_balance(
            ledger::Ledger::new(client.clone(), &table.name).with_retry_policy(retry),
            billing::events::low_balance_threshold(),
        );
        TestApi::build(table, ledger, client, Some(retry)).await
    }

    async fn build(
        table: TestTable,
        ledger: ledger::Ledger,
        function_base: aws_sdk_dynamodb::Client,
        retry: Option<ledger::RetryPolicy>,
    ) -> TestApi {
        let virtfusion = VirtFusionStandIn::spawn(([127, 0, 0, 1], 0).into(), VIRTFUSION_TOKEN)
            .await
            .expect("virtfusion stand-in");
        let vf_base = virtfusion.base_url();
        let vf_client = || {
            virtfusion::VirtFusionClient::new(
                &vf_base,
                billing_config::SecretValue::new(VIRTFUSION_TOKEN),
                Duration::from_millis(500),
            )
            .expect("virtfusion client")
        };
        let paypal = PayPalStandIn::spawn(
            ([127, 0, 0, 1], 0).into(),
            PAYPAL_CLIENT.0,
            PAYPAL_CLIENT.1,
            PAYPAL_WEBHOOK_ID,
        )
        .await
        .expect("paypal stand-in");
        let paypal_client = paypal::PayPalClient::new(
            &paypal.base_url(),
            billing_config::SecretValue::new(PAYPAL_CLIENT.0),
            billing_config::SecretValue::new(PAYPAL_CLIENT.1),
            Duration::from_millis(800),
        )
        .expect("paypal client")
        .with_webhook_id(PAYPAL_WEBHOOK_ID);
        let routes = Template::load(&devstack::template_path())
            .expect("template")
            .routes();
        let payments = Arc::new(billing_http::PaymentDeps::new(
            billing_http::BaseDeps::new(ledger, JWT_SECRET),
            paypal_client.clone(),
            Some(vf_client()),
        ));
        let mut api = TestApi {
            payments,
            functions: Functions::default(),
            routes,
            virtfusion,
            paypal,
            table,
            function_base,
            retry,
        };
        let mut functions = Functions::default();
        let core =
            |binary: &str| billing_http::BaseDeps::new(api.function_ledger(binary), JWT_SECRET);
        let payment = |binary: &str| {
            billing_http::PaymentDeps::new(core(binary), paypal_client.clone(), Some(vf_client()))
        };
        register_functions(&mut functions, &core, &vf_client, &payment);
        api.functions = functions;
        api
    }

    /// The table, read and written directly (no function's credentials).
    pub fn ledger(&self) -> ledger::Ledger {
        self.table.ledger()
    }

    /// The ledger the function built as `binary` (`renewal-cron`) uses: its
    /// DynamoDB client signs with the function's template logical id as
    /// access key, so local IAM checks every call against its policy.
    pub fn function_ledger(&self, binary: &str) -> ledger::Ledger {
        let client = function_client(&self.function_base, binary);
        let mut ledger = ledger::Ledger::new(client, &self.table.name);
        if let Some(retry) = &self.retry {
            ledger = ledger.with_retry_policy(*retry);
        }
        billing::events::watch_low_balance(ledger, billing::events::low_balance_threshold())
    }

    /// A valid token of a platform service (role `service`).
    pub fn service_token(&self, sub: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        sign(
            &Claims {
                sub: sub.into(),
                roles: vec!["service".to_owned()],
                exp: now + 3600,
                nbf: None,
                iat: None,
            },
            JWT_SECRET.as_bytes(),
        )
    }

    /// A valid token for `sub`, admin or not.
    pub fn token(&self, sub: &str, admin: bool) -> String {
        token_with(sub, admin, 3600, JWT_SECRET)
    }

    pub async fn get(&self, path: &str, token: &str) -> TestResponse {
        self.call("GET", path, Some(token), None, &[]).await
    }

    pub async fn send(&self, method: &str, path: &str, token: &str, body: &str) -> TestResponse {
        self.call(
            method,
            path,
            Some(token),
            Some(body),
            &[("content-type", "application/json")],
        )
        .await
    }

    /// `path` may carry a query string.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        extra_headers: &[(&str, &str)],
    ) -> TestResponse {
        let (raw_path, raw_query) = path.split_once('?').unwrap_or((path, ""));
        let Some(route) = devstack::gateway::match_route(&self.routes, method, raw_path) else {
            return TestResponse {
                status: 404,
                body: serde_json::json!({"message": "Not Found"}),
                request_id: None,
                headers: Vec::new(),
            };
        };
        let mut headers: Vec<(String, String)> = extra_headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(token) = token {
            headers.push(("authorization".into(), format!("Bearer {token}")));
        }
        let request_id = uuid::Uuid::new_v4().to_string();
        let event = devstack::gateway::apigw_v2_event(
            route,
            method,
            raw_path,
            raw_query,
            &headers,
            body.unwrap_or("").as_bytes(),
            &request_id,
            "127.0.0.1",
        );
        self.invoke(&route.function, &event.to_string()).await
    }

    /// Feeds a raw event (e.g. a file from `events/`) to the named function.
    /// The response is checked against docs/openapi.yaml (see [`crate::openapi`]).
    pub async fn invoke(&self, function: &str, event_json: &str) -> TestResponse {
        let route = self.event_route(event_json);
        let request =
            lambda_http::request::from_str(event_json).expect("event parses as lambda_http does");
        let response = self
            .functions
            .call(function, request)
            .await
            .expect("handlers answer every request with a response");
        let status = response.status().as_u16();
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    value.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let json = content_type
            .as_deref()
            .is_none_or(|t| t.starts_with("application/json"));
        let body = match response.body() {
            lambda_http::Body::Text(text) if !json => Value::String(text.clone()),
            lambda_http::Body::Text(text) => serde_json::from_str(text).expect("JSON body"),
            lambda_http::Body::Empty => Value::Null,
            lambda_http::Body::Binary(bytes) => serde_json::from_slice(bytes).expect("JSON body"),
            _ => Value::Null,
        };
        if let Some((method, path)) = route {
            crate::openapi::check_response(
                &method,
                &path,
                status,
                content_type.as_deref(),
                request_id.as_deref(),
                &body,
            );
        }
        TestResponse {
            status,
            body,
            request_id,
            headers,
        }
    }

    /// The `(METHOD, template path)` an API Gateway v2 event was routed by:
    /// its `routeKey`, or for a function URL (`$default`) the local route of
    /// its path. None for an event that names no route of `template.yaml`.
    fn event_route(&self, event_json: &str) -> Option<(String, String)> {
        let event: Value = serde_json::from_str(event_json).ok()?;
        let route_key = event["routeKey"].as_str().unwrap_or("$default");
        if let Some((method, path)) = route_key.split_once(' ') {
            return Some((method.to_owned(), path.to_owned()));
        }
        let method = event["requestContext"]["http"]["method"].as_str()?;
        let raw_path = event["rawPath"].as_str()?;
        devstack::gateway::match_route(&self.routes, method, raw_path)
            .map(|route| (route.method.clone(), route.path.clone()))
    }
}

/// The test dispatch: one line per HTTP function of template.yaml, with its
/// name, its deps and its `handle`. A new function adds its line here (and its
/// crate to tests/Cargo.toml).
#[rustfmt::skip]
fn register_functions(
    f: &mut Functions,
    core: &dyn Fn(&str) -> billing_http::BaseDeps,
    vf_client: &dyn Fn() -> virtfusion::VirtFusionClient,
    payment: &dyn Fn(&str) -> billing_http::PaymentDeps,
) {
    f.register("balance", balance_fn::Deps::new(core("balance"), vf_client()), balance_fn::handle);
    f.register("transactions", core("transactions"), transactions_fn::handle);
    f.register("admin-credits", core("admin-credits"), admin_credits_fn::handle);
    f.register("dns-plans", core("dns-plans"), dns_plans_fn::handle);
    f.register("dns-purchase", core("dns-purchase"), dns_purchase_fn::handle);
    f.register("dns-subscription", core("dns-subscription"), dns_subscription_fn::handle);
    f.register("admin-deliveries", core("admin-deliveries"), admin_deliveries_fn::handle);
    f.register("admin-reconciliation", core("admin-reconciliation"), admin_reconciliation_fn::handle);
    f.register("custom-credits-add", payment("custom-credits-add"), custom_credits_add_fn::handle);
    f.register("custom-credits-capture", payment("custom-credits-capture"), custom_credits_capture_fn::handle);
    f.register("virtfusion-tokens-add", payment("virtfusion-tokens-add"), virtfusion_tokens_add_fn::handle);
    f.register("virtfusion-tokens-capture", payment("virtfusion-tokens-capture"), virtfusion_tokens_capture_fn::handle);
    f.register("admin-refunds", payment("admin-refunds"), admin_refunds_fn::handle);
    f.register("paypal-webhook", payment("paypal-webhook"), paypal_webhook_fn::handle);
    f.register("service-charges", core("service-charges"), service_charges_fn::handle);
    f.register("service-subscriptions", core("service-subscriptions"), service_subscriptions_fn::handle);
    f.register("billing-subscriptions", core("billing-subscriptions"), billing_subscriptions_fn::handle);
    f.register("dns-plan-change", core("dns-plan-change"), dns_plan_change_fn::handle);
    f.register("admin-dns-plans", core("admin-dns-plans"), admin_dns_plans_fn::handle);
    f.register("transaction-detail", core("transaction-detail"), transaction_detail_fn::handle);
    f.register("transactions-export", core("transactions-export"), transactions_export_fn::handle);
    f.register("admin-transactions", core("admin-transactions"), admin_transactions_fn::handle);
    f.register("admin-virtfusion-tokens", admin_virtfusion_tokens_fn::Deps::new(core("admin-virtfusion-tokens"), Some(vf_client())), admin_virtfusion_tokens_fn::handle);
}

/// A DynamoDB client like `base` (endpoint, interceptors) whose credentials
/// are those of the function built as `binary`: its template logical id as
/// access key id, as local IAM expects (docs/reliability.md, "Local IAM").
pub fn function_client(base: &aws_sdk_dynamodb::Client, binary: &str) -> aws_sdk_dynamodb::Client {
    let id = function_logical_id(binary);
    let credentials =
        aws_sdk_dynamodb::config::Credentials::new(id, "local", None, None, "local-iam");
    aws_sdk_dynamodb::Client::from_conf(
        base.config()
            .to_builder()
            .credentials_provider(credentials)
            .build(),
    )
}

/// The template logical id of the function built as `binary`.
pub fn function_logical_id(binary: &str) -> String {
    static POLICIES: std::sync::OnceLock<devstack::iam::Policies> = std::sync::OnceLock::new();
    let policies =
        POLICIES.get_or_init(|| devstack::iam::Policies::load().expect("template.yaml policies"));
    policies
        .logical_id(binary)
        .unwrap_or_else(|| panic!("no function {binary} in template.yaml"))
        .to_owned()
}

pub fn token_with(sub: &str, admin: bool, ttl_seconds: i64, secret: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let roles = if admin {
        vec!["admin".to_owned()]
    } else {
        Vec::new()
    };
    sign(
        &Claims {
            sub: sub.into(),
            roles,
            exp: now + ttl_seconds,
            nbf: None,
            iat: None,
        },
        secret.as_bytes(),
    )
}
