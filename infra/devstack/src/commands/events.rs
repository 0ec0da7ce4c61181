//! `devstack events`: one sample API Gateway v2 event per route of
//! `template.yaml` (the `events/` files), with fixed clock and tokens.

use super::token::{jwt_secret, roles, sign_jwt};
use crate::{CliError, CliResult, EventsArgs, load_template};
use devstack::gateway;
use devstack::template::RouteDef;
use serde_json::{Value, json};
use std::path::Path;

/// Fixed clock and far expiry so regenerated event files only change when the routes do.
pub(crate) const EVENT_TIME: &str = "25/Nov/2025:12:00:00 +0000";
const EVENT_EPOCH_MS: i64 = 1_764_072_000_000;
/// 2100-01-01T00:00:00Z: fixed sample tokens, so the committed files stay the
/// same. The functions refuse them (a token lives 24 h at most): invoke with
/// files generated with fresh tokens (`--token`, `--admin-token`,
/// `--service-token`; `infra/run.sh` writes them to `.local/events`).
const EVENT_TOKEN_EXP: i64 = 4_102_444_800;
const EVENT_HOST: &str = "local.execute-api.us-east-1.amazonaws.com";
const SAMPLE_ORDER_ID: &str = "5O190127TN364715T";
const SAMPLE_CHARGE_ID: &str = "ch_0123456789abcdef0123456789abcdef";
const SAMPLE_SUBSCRIPTION_ID: &str = "sub_0123456789abcdef0123456789abcdef";

pub(crate) fn events(args: EventsArgs) -> CliResult {
    let EventsArgs {
        out,
        token: user_token,
        admin_token,
        service_token,
    } = args;
    let secret = jwt_secret();
    let user_token = match user_token {
        Some(token) => token,
        None => sign_jwt(
            &secret,
            &json!({"sub": "1001", "roles": roles(false), "exp": EVENT_TOKEN_EXP}),
        )?,
    };
    let admin_token = match admin_token {
        Some(token) => token,
        None => sign_jwt(
            &secret,
            &json!({"sub": "1", "roles": roles(true), "exp": EVENT_TOKEN_EXP}),
        )?,
    };
    let service_token = match service_token {
        Some(token) => token,
        None => sign_jwt(
            &secret,
            &json!({"sub": "svc-panel", "roles": ["service"], "exp": EVENT_TOKEN_EXP}),
        )?,
    };
    let routes = load_template()?.routes();
    std::fs::create_dir_all(&out)
        .map_err(|e| CliError::Failed(format!("{}: {e}", out.display())))?;
    let mut written = std::collections::HashSet::new();
    for (index, route) in routes.iter().enumerate() {
        let token = if route.path.starts_with("/api/admin") {
            &admin_token
        } else if route.path.starts_with("/api/services") {
            &service_token
        } else {
            &user_token
        };
        let event = sample_event(route, index, token);
        let mut name = format!("{}.{}", route.function, route.method.to_ascii_lowercase());
        if !written.insert(name.clone()) {
            // One function serving the same method on two paths: name the second by its path.
            let last = route
                .path
                .rsplit('/')
                .find(|s| !s.is_empty() && !s.starts_with('{'));
            name = format!("{name}.{}", last.unwrap_or("route"));
            written.insert(name.clone());
        }
        let file = out.join(format!("{name}.json"));
        write_json(&file, &event)?;
        println!("{}", file.display());
    }
    Ok(())
}

fn write_json(file: &Path, value: &Value) -> CliResult {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    std::fs::write(file, text).map_err(|e| CliError::Failed(format!("{}: {e}", file.display())))
}

/// The concrete path of a route with sample values for its placeholders.
fn sample_path(route: &RouteDef) -> String {
    route
        .path
        .split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some("planId") => "basic".to_owned(),
                Some("orderId") => SAMPLE_ORDER_ID.to_owned(),
                Some("mismatchId") => "3C679366HH908993F-amount".to_owned(),
                Some("chargeId") => SAMPLE_CHARGE_ID.to_owned(),
                Some("id") if route.path == "/api/billing/transactions/{id}" => "cc-1".to_owned(),
                Some("id") if route.path.contains("/subscriptions/") => {
                    SAMPLE_SUBSCRIPTION_ID.to_owned()
                }
                Some(_) => "1001".to_owned(),
                None => segment.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

fn sample_body(route: &RouteDef) -> Option<Value> {
    let path = route.path.as_str();
    let method = route.method.as_str();
    if path.starts_with("/api/admin/users/") && path.ends_with("/custom-credits") {
        return match method {
            "POST" => Some(json!({"amount": "5.00", "reason": "goodwill"})),
            "DELETE" => Some(json!({"amount": "5.00", "reason": "correction"})),
            _ => None,
        };
    }
    if path.starts_with("/api/admin/users/") && path.contains("/virtfusion-tokens") {
        return match method {
            "POST" => Some(json!({"tokens": 500, "reason": "goodwill"})),
            "DELETE" => Some(json!({"reason": "granted by mistake"})),
            _ => None,
        };
    }
    if method == "GET" {
        return None;
    }
    match (method, path) {
        ("POST", "/api/services/charges") => {
            return Some(json!({
                "userId": "1001", "amount": "49.00", "serviceType": "dedicated_server",
                "serviceId": "srv-42", "description": "DS-1, December"
            }));
        }
        ("POST", "/api/services/subscriptions") => {
            return Some(json!({
                "userId": "1001", "serviceType": "dedicated_server", "serviceId": "srv-42",
                "price": "49.00", "interval": "month", "description": "DS-1 dedicated server"
            }));
        }
        ("POST", "/api/services/charges/{chargeId}/refund") => {
            return Some(json!({"amount": "10.00", "reason": "partial outage credit"}));
        }
        ("POST", "/api/dns/subscription/change") => return Some(json!({"planId": "pro"})),
        ("POST", "/api/admin/dns/plans") => {
            return Some(json!({
                "id": "team", "name": "Team", "description": "For teams: 50 domains.",
                "price": "25.00", "domainLimit": 50, "recordLimit": 5000
            }));
        }
        ("PATCH", "/api/admin/dns/plans/{planId}") => return Some(json!({"price": "6.00"})),
        _ => {}
    }
    if path.ends_with("/add") {
        Some(json!({"amount": "10.00"}))
    } else if path.ends_with("/capture") {
        Some(json!({"orderId": SAMPLE_ORDER_ID}))
    } else if path.ends_with("/refunds") {
        Some(json!({"orderId": SAMPLE_ORDER_ID, "amount": "5.00", "reason": "customer request"}))
    } else if path.starts_with("/api/admin/reconciliation/") {
        Some(json!({"reason": "difference refunded by hand in PayPal"}))
    } else if path.ends_with("/resolve") {
        Some(json!({"delivered": true, "reason": "credit found in the VirtFusion panel"}))
    } else if path.starts_with("/webhooks/") {
        Some(json!({
            "id": "WH-LOCAL-0001",
            "event_version": "1.0",
            "create_time": "2025-11-25T12:00:00Z",
            "resource_type": "capture",
            "event_type": "PAYMENT.CAPTURE.COMPLETED",
            "summary": "Payment completed for $ 10.0 USD",
            "resource": {
                "id": "3C679366HH908993F",
                "status": "COMPLETED",
                "amount": {"currency_code": "USD", "value": "10.00"},
                "custom_id": "1001",
                "supplementary_data": {"related_ids": {"order_id": SAMPLE_ORDER_ID}}
            }
        }))
    } else {
        None
    }
}

/// Whether a route creates an order or moves money (sends `Idempotency-Key`).
fn moves_money(route: &RouteDef) -> bool {
    route.method != "GET"
        && (route.path.ends_with("/add")
            || route.path.ends_with("/purchase")
            || route.path.ends_with("/refunds")
            || route.path.starts_with("/api/services/")
            || route.path.starts_with("/api/admin/users/"))
}

pub(crate) fn sample_event(route: &RouteDef, index: usize, token: &str) -> Value {
    let path = sample_path(route);
    let query =
        if route.path == "/api/billing/transactions" || route.path == "/api/admin/transactions" {
            "limit=25"
        } else if route.path == "/api/billing/transactions/export" {
            "from=2025-11-01&to=2025-11-30"
        } else if route.path.ends_with("/virtfusion-deliveries") {
            "status=needs_review"
        } else if route.path == "/api/services/subscriptions" && route.method == "GET" {
            "userId=1001"
        } else {
            ""
        };
    let body = sample_body(route)
        .map(|b| b.to_string())
        .unwrap_or_default();
    let mut headers: Vec<(String, String)> = vec![
        ("accept".into(), "application/json".into()),
        ("host".into(), EVENT_HOST.into()),
        ("user-agent".into(), "curl/8.5.0".into()),
        ("x-forwarded-port".into(), "443".into()),
        ("x-forwarded-proto".into(), "https".into()),
    ];
    if route.path.starts_with("/webhooks/") {
        headers.extend([
            ("paypal-auth-algo".into(), "SHA256withRSA".into()),
            (
                "paypal-cert-url".into(),
                "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-local".into(),
            ),
            ("paypal-transmission-id".into(), "69cd13f0-d67a-11e5-baa3-778b53f4ae55".into()),
            ("paypal-transmission-sig".into(), "<signature>".into()),
            ("paypal-transmission-time".into(), "2025-11-25T12:00:00Z".into()),
        ]);
    } else {
        headers.push(("authorization".into(), format!("Bearer {token}")));
    }
    if !body.is_empty() {
        headers.push(("content-type".into(), "application/json".into()));
    }
    if moves_money(route) {
        headers.push((
            "idempotency-key".into(),
            // Keys are scoped to the caller, not the route: one per route.
            match route.path.rsplit('/').next() {
                Some(last @ ("refund" | "cancel")) => format!(
                    "sample-{}-{}-{last}",
                    route.function,
                    route.method.to_ascii_lowercase()
                ),
                _ => format!(
                    "sample-{}-{}",
                    route.function,
                    route.method.to_ascii_lowercase()
                ),
            },
        ));
    }
    let request_id = format!("c0ffee00-0000-4000-8000-{index:012}");
    let mut event = gateway::apigw_v2_event(
        route,
        &route.method,
        &path,
        query,
        &headers,
        body.as_bytes(),
        &request_id,
        "203.0.113.10",
    );
    event["requestContext"]["time"] = json!(EVENT_TIME);
    event["requestContext"]["timeEpoch"] = json!(EVENT_EPOCH_MS);
    event["headers"]["x-amzn-trace-id"] = json!(format!("Root=1-69259a40-{:024x}", index + 1));
    event
}
