//! `devstack`: the local stack's command line (see `infra/run.sh`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use devstack::gateway::{self, Emulator, HealthCheck, HealthChecks};
use devstack::template::{RouteDef, Template};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: devstack <command> [options]

commands:
  tables     [--endpoint URL] [--table NAME]
             create the tables of template.yaml in DynamoDB (idempotent);
             endpoint: $DYNAMODB_ENDPOINT or http://127.0.0.1:8000,
             BillingTable's name: $BILLING_TABLE or billing
  gateway    [--port 3000] [--host 127.0.0.1] [--emulator http://127.0.0.1:9000]
             [--check [NAME=]URL ...] [--invoke-timeout SECONDS] [--parameter NAME=VALUE ...]
             serve the HttpApi routes of template.yaml through the cargo-lambda emulator,
             with the HttpApi's CorsConfiguration (template parameters: defaults or --parameter)
  web        [--port 5173] [--host 127.0.0.1] [--dir web/dist] [--config FILE]
             serve the built billing page (index.html for unknown paths; FILE at /config.json)
  virtfusion [--port 8091] [--host 127.0.0.1]
             run the VirtFusion API stand-in (token: $VIRTFUSION_API_TOKEN)
  functions  print the function binaries of template.yaml, one per line
  routes     print the routes of template.yaml (METHOD PATH FUNCTION)
  events     [--out events/] [--token JWT] [--admin-token JWT]
             write a sample API Gateway v2 event per route: <function>.<method>.json
  token      [--sub 1001] [--admin] [--ttl-hours 24]
             print an HS256 JWT signed with $BILLING_JWT_SECRET (default local-dev-secret)
  paypal     [--port 8092] [--host 127.0.0.1] [--webhook-target URL] [--state FILE]
             run the PayPal API stand-in (credentials: $PAYPAL_CLIENT_ID / $PAYPAL_CLIENT_SECRET,
             webhook id $PAYPAL_WEBHOOK_ID); delivers signed webhooks to the target
";

#[derive(Debug)]
enum CliError {
    Usage(String),
    Failed(String),
}

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> CliError {
        CliError::Failed(e.to_string())
    }
}

type CliResult = Result<(), CliError>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(message)) => {
            eprintln!(
                "devstack: {message}\n\n{USAGE}{}",
                devstack::faultproxy::USAGE
            );
            ExitCode::from(2)
        }
        Err(CliError::Failed(message)) => {
            eprintln!("devstack: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Hand-rolled option parsing: `--name value` / `--name=value` and flags.
struct Options {
    args: std::vec::IntoIter<String>,
}

impl Options {
    fn new(args: Vec<String>) -> Options {
        Options {
            args: args.into_iter(),
        }
    }

    /// The next option: (name, inline value if `--name=value`).
    fn next_option(&mut self) -> Result<Option<(String, Option<String>)>, CliError> {
        let Some(arg) = self.args.next() else {
            return Ok(None);
        };
        if !arg.starts_with("--") {
            return Err(CliError::Usage(format!("unexpected argument {arg:?}")));
        }
        Ok(Some(match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        }))
    }

    fn value(&mut self, name: &str, inline: Option<String>) -> Result<String, CliError> {
        match inline.or_else(|| self.args.next()) {
            Some(value) => Ok(value),
            None => Err(CliError::Usage(format!("{name} needs a value"))),
        }
    }
}

fn no_inline(name: &str, inline: Option<String>) -> CliResult {
    match inline {
        Some(_) => Err(CliError::Usage(format!("{name} takes no value"))),
        None => Ok(()),
    }
}

fn parse_port(name: &str, value: &str) -> Result<u16, CliError> {
    value
        .parse::<u16>()
        .map_err(|_| CliError::Usage(format!("{name}: not a port: {value:?}")))
}

fn parse_host(value: &str) -> Result<IpAddr, CliError> {
    value
        .parse::<IpAddr>()
        .map_err(|_| CliError::Usage(format!("--host: not an IP address: {value:?}")))
}

fn unknown(name: &str) -> CliError {
    CliError::Usage(format!("unknown option {name}"))
}

fn run(args: Vec<String>) -> CliResult {
    let mut args = args.into_iter();
    let Some(command) = args.next() else {
        return Err(CliError::Usage("no command".into()));
    };
    let options = Options::new(args.collect());
    match command.as_str() {
        "tables" => tables(options),
        "gateway" => gateway_command(options),
        "virtfusion" => virtfusion(options),
        "functions" => functions(options),
        "routes" => routes(options),
        "events" => events(options),
        "token" => token(options),
        "paypal" => paypal(options),
        "web" => web_command(options),
        "faultproxy" => faultproxy(options),
        "help" | "--help" | "-h" => {
            println!("{USAGE}{}", devstack::faultproxy::USAGE);
            Ok(())
        }
        other => Err(CliError::Usage(format!("unknown command {other:?}"))),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn load_template() -> Result<Template, CliError> {
    let path = devstack::template_path();
    Template::load(&path).map_err(|e| CliError::Failed(format!("{}: {e}", path.display())))
}

fn expect_no_options(mut options: Options) -> CliResult {
    match options.next_option()? {
        Some((name, _)) => Err(unknown(&name)),
        None => Ok(()),
    }
}

fn env_or(name: &str, default: &str) -> String {
    billing_config::env_or(name, default)
}

// ---------------------------------------------------------------- tables

fn tables(mut options: Options) -> CliResult {
    let mut endpoint = None;
    let mut table = None;
    while let Some((name, inline)) = options.next_option()? {
        match name.as_str() {
            "--endpoint" => endpoint = Some(options.value(&name, inline)?),
            "--table" => table = Some(options.value(&name, inline)?),
            _ => return Err(unknown(&name)),
        }
    }
    let endpoint = endpoint.unwrap_or_else(|| env_or("DYNAMODB_ENDPOINT", "http://127.0.0.1:8000"));
    let billing_table = table.unwrap_or_else(|| env_or("BILLING_TABLE", "billing"));
    let template = load_template()?;
    let defs = template.tables()?;
    // SAFETY of set_var: single-threaded here, before any runtime or client exists.
    unsafe {
        std::env::set_var("DYNAMODB_ENDPOINT", &endpoint);
    }
    runtime()?.block_on(async {
        let sdk = billing_config::load_aws_config().await;
        let client = billing_config::dynamo_client(&sdk);
        for def in &defs {
            let name = if def.logical_id == "BillingTable" {
                billing_table.clone()
            } else {
                def.logical_id.clone()
            };
            let created = devstack::tables::create_table(&client, def, &name).await?;
            println!(
                "table {name} ({}) {} at {endpoint}",
                def.logical_id,
                if created { "created" } else { "already exists" }
            );
        }
        Ok(())
    })
}

// ---------------------------------------------------------------- web

fn web_command(mut options: Options) -> CliResult {
    let mut port = 5173;
    let mut host = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut dir = PathBuf::from("web/dist");
    let mut config = None;
    while let Some((name, inline)) = options.next_option()? {
        match name.as_str() {
            "--port" => port = parse_port(&name, &options.value(&name, inline)?)?,
            "--host" => host = parse_host(&options.value(&name, inline)?)?,
            "--dir" => dir = PathBuf::from(options.value(&name, inline)?),
            "--config" => config = Some(PathBuf::from(options.value(&name, inline)?)),
            _ => return Err(unknown(&name)),
        }
    }
    billing_config::init_tracing();
    let site = devstack::webpage::Site::new(dir, config)?;
    runtime()?.block_on(devstack::webpage::serve(SocketAddr::new(host, port), site))?;
    Ok(())
}

// ---------------------------------------------------------------- gateway

fn gateway_command(mut options: Options) -> CliResult {
    let mut port = 3000;
    let mut host = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut emulator = env_or("LAMBDA_EMULATOR_URL", "http://127.0.0.1:9000");
    let mut checks = Vec::new();
    let mut invoke_timeout = 120;
    let mut parameters = std::collections::BTreeMap::new();
    while let Some((name, inline)) = options.next_option()? {
        match name.as_str() {
            "--parameter" => {
                let spec = options.value(&name, inline)?;
                let (key, value) = devstack::cors::parse_override(&spec)
                    .ok_or_else(|| CliError::Usage(format!("{name}: expected NAME=VALUE")))?;
                parameters.insert(key, value);
            }
            "--port" => port = parse_port(&name, &options.value(&name, inline)?)?,
            "--host" => host = parse_host(&options.value(&name, inline)?)?,
            "--emulator" => emulator = options.value(&name, inline)?,
            "--check" => checks.push(HealthCheck::parse(&options.value(&name, inline)?)),
            "--invoke-timeout" => {
                let value = options.value(&name, inline)?;
                invoke_timeout = value
                    .parse::<u64>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| {
                        CliError::Usage(format!("{name}: not a number of seconds: {value:?}"))
                    })?;
            }
            _ => return Err(unknown(&name)),
        }
    }
    let routes = load_template()?.routes();
    if routes.is_empty() {
        return Err(CliError::Failed("template.yaml declares no routes".into()));
    }
    let template_text = std::fs::read_to_string(devstack::template_path())?;
    let cors = devstack::cors::CorsConfig::from_template(&template_text, &parameters)?;
    if let Some(cors) = &cors {
        eprintln!("CORS: origins {:?}", cors.allow_origins);
    }
    billing_config::init_tracing();
    let invoker = Emulator::new(&emulator, Duration::from_secs(invoke_timeout))?;
    let addr = SocketAddr::new(host, port);
    for route in &routes {
        eprintln!(
            "route {} {} -> {}",
            route.method, route.path, route.function
        );
    }
    runtime()?.block_on(gateway::serve(
        addr,
        routes,
        invoker,
        HealthChecks::new(checks),
        cors,
    ))?;
    Ok(())
}

// ---------------------------------------------------------------- virtfusion

fn virtfusion(mut options: Options) -> CliResult {
    let mut port = 8091;
    let mut host = IpAddr::V4(Ipv4Addr::LOCALHOST);
    while let Some((name, inline)) = options.next_option()? {
        match name.as_str() {
            "--port" => port = parse_port(&name, &options.value(&name, inline)?)?,
            "--host" => host = parse_host(&options.value(&name, inline)?)?,
            _ => return Err(unknown(&name)),
        }
    }
    let token = env_or("VIRTFUSION_API_TOKEN", "local-virtfusion-token");
    billing_config::init_tracing();
    let addr = SocketAddr::new(host, port);
    runtime()?.block_on(async {
        tokio::select! {
            served = devstack::virtfusion::serve_forever(addr, &token) => served,
            () = gateway::shutdown_signal() => Ok(()),
        }
    })?;
    Ok(())
}

// ---------------------------------------------------------------- paypal

fn paypal(mut options: Options) -> CliResult {
    let mut port = 8092;
    let mut host = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut config = devstack::paypal::StandInConfig::new(
        &env_or("PAYPAL_CLIENT_ID", "local-client"),
        &env_or("PAYPAL_CLIENT_SECRET", "local-secret"),
        &env_or("PAYPAL_WEBHOOK_ID", "local-webhook"),
    );
    while let Some((name, inline)) = options.next_option()? {
        match name.as_str() {
            "--port" => port = parse_port(&name, &options.value(&name, inline)?)?,
            "--host" => host = parse_host(&options.value(&name, inline)?)?,
            "--webhook-target" => {
                config.webhook_target = Some(options.value(&name, inline)?);
                config.auto_webhooks = true;
            }
            "--state" => config.state_file = Some(options.value(&name, inline)?.into()),
            _ => return Err(unknown(&name)),
        }
    }
    billing_config::init_tracing();
    let addr = SocketAddr::new(host, port);
    runtime()?.block_on(async {
        tokio::select! {
            served = devstack::paypal::serve_forever(addr, config) => served,
            () = gateway::shutdown_signal() => Ok(()),
        }
    })?;
    Ok(())
}

// ---------------------------------------------------------------- faultproxy

fn faultproxy(mut options: Options) -> CliResult {
    let mut port = 8124;
    let mut host = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut upstream = env_or("DYNAMODB_ENDPOINT", "http://127.0.0.1:8123");
    let mut config = devstack::faultproxy::FaultConfig::none();
    while let Some((name, inline)) = options.next_option()? {
        match name.as_str() {
            "--port" => port = parse_port(&name, &options.value(&name, inline)?)?,
            "--host" => host = parse_host(&options.value(&name, inline)?)?,
            "--upstream" => upstream = options.value(&name, inline)?,
            _ => {
                let value = options.value(&name, inline)?;
                if !config.apply_flag(&name, &value).map_err(CliError::Usage)? {
                    return Err(unknown(&name));
                }
            }
        }
    }
    billing_config::init_tracing();
    let addr = SocketAddr::new(host, port);
    runtime()?.block_on(async {
        tokio::select! {
            served = devstack::faultproxy::serve_forever(addr, upstream, config) => served,
            () = gateway::shutdown_signal() => Ok(()),
        }
    })?;
    Ok(())
}

// ---------------------------------------------------------------- functions / routes

fn functions(options: Options) -> CliResult {
    expect_no_options(options)?;
    for function in load_template()?.functions() {
        println!("{function}");
    }
    Ok(())
}

fn routes(options: Options) -> CliResult {
    expect_no_options(options)?;
    for route in load_template()?.routes() {
        println!("{} {} {}", route.method, route.path, route.function);
    }
    Ok(())
}

// ---------------------------------------------------------------- token

fn token(mut options: Options) -> CliResult {
    let mut sub = "1001".to_owned();
    let mut admin = false;
    let mut ttl_hours: i64 = 24;
    while let Some((name, inline)) = options.next_option()? {
        match name.as_str() {
            "--sub" => sub = options.value(&name, inline)?,
            "--admin" => {
                no_inline(&name, inline)?;
                admin = true;
            }
            "--ttl-hours" => {
                let value = options.value(&name, inline)?;
                ttl_hours = value
                    .parse::<i64>()
                    .ok()
                    .filter(|h| (1..=24 * 366 * 10).contains(h))
                    .ok_or_else(|| {
                        CliError::Usage(format!("{name}: hours from 1 to 87840: {value:?}"))
                    })?;
            }
            _ => return Err(unknown(&name)),
        }
    }
    if sub.trim().is_empty() {
        return Err(CliError::Usage("--sub must not be empty".into()));
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = json!({
        "sub": sub,
        "roles": roles(admin),
        "iat": now,
        "exp": now + ttl_hours * 3600,
    });
    println!("{}", sign_jwt(&jwt_secret(), &claims)?);
    Ok(())
}

fn roles(admin: bool) -> Value {
    if admin {
        json!(["user", "admin"])
    } else {
        json!(["user"])
    }
}

fn jwt_secret() -> String {
    env_or("BILLING_JWT_SECRET", "local-dev-secret")
}

/// HS256 JWT (`header.payload.signature`, base64url without padding).
fn sign_jwt(secret: &str, claims: &Value) -> Result<String, CliError> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())?;
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{signing_input}.{signature}"))
}

// ---------------------------------------------------------------- events

/// Fixed clock and far expiry so regenerated event files only change when the routes do.
const EVENT_TIME: &str = "25/Nov/2025:12:00:00 +0000";
const EVENT_EPOCH_MS: i64 = 1_764_072_000_000;
/// 2100-01-01T00:00:00Z: sample tokens that do not expire under the local stack.
const EVENT_TOKEN_EXP: i64 = 4_102_444_800;
const EVENT_HOST: &str = "local.execute-api.us-east-1.amazonaws.com";
const SAMPLE_ORDER_ID: &str = "5O190127TN364715T";

fn events(mut options: Options) -> CliResult {
    let mut out = PathBuf::from("events");
    let mut user_token = None;
    let mut admin_token = None;
    while let Some((name, inline)) = options.next_option()? {
        match name.as_str() {
            "--out" => out = PathBuf::from(options.value(&name, inline)?),
            "--token" => user_token = Some(options.value(&name, inline)?),
            "--admin-token" => admin_token = Some(options.value(&name, inline)?),
            _ => return Err(unknown(&name)),
        }
    }
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
    let routes = load_template()?.routes();
    std::fs::create_dir_all(&out)
        .map_err(|e| CliError::Failed(format!("{}: {e}", out.display())))?;
    let mut written = std::collections::HashSet::new();
    for (index, route) in routes.iter().enumerate() {
        let token = if route.path.starts_with("/api/admin") {
            &admin_token
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
    if method == "GET" {
        return None;
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
            || route.path.starts_with("/api/admin/users/"))
}

fn sample_event(route: &RouteDef, index: usize, token: &str) -> Value {
    let path = sample_path(route);
    let query = if route.path == "/api/billing/transactions" {
        "limit=25"
    } else if route.path.ends_with("/virtfusion-deliveries") {
        "status=needs_review"
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
            format!(
                "sample-{}-{}",
                route.function,
                route.method.to_ascii_lowercase()
            ),
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

// ---------------------------------------------------------------- seed

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_hs256_like_the_reference() {
        // jwt.io's HS256 example (secret "your-256-bit-secret") with compact JSON.
        let claims: Value =
            serde_json::from_str(r#"{"sub":"1234567890","name":"John Doe","iat":1516239022}"#)
                .unwrap();
        let token = sign_jwt("your-256-bit-secret", &claims).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts[0], "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9");
        assert_eq!(parts.len(), 3);
        // serde_json orders keys alphabetically; verify the MAC independently.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"your-256-bit-secret").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
            .unwrap();
    }

    #[test]
    fn sample_events_fill_placeholders_and_bodies() {
        let route = RouteDef {
            method: "POST".into(),
            path: "/api/admin/users/{id}/custom-credits".into(),
            function: "admin-credits".into(),
        };
        let event = sample_event(&route, 3, "tok");
        assert_eq!(event["rawPath"], "/api/admin/users/1001/custom-credits");
        assert_eq!(event["pathParameters"]["id"], "1001");
        assert_eq!(event["headers"]["authorization"], "Bearer tok");
        let body: Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
        assert_eq!(body, json!({"amount": "5.00", "reason": "goodwill"}));
        assert_eq!(event["requestContext"]["time"], EVENT_TIME);
    }

    #[test]
    fn options_parse() {
        let mut options = Options::new(vec!["--port=1".into(), "--check".into(), "x".into()]);
        assert_eq!(
            options.next_option().unwrap(),
            Some(("--port".into(), Some("1".into())))
        );
        let (name, inline) = options.next_option().unwrap().unwrap();
        assert_eq!(options.value(&name, inline).unwrap(), "x");
        assert!(options.next_option().unwrap().is_none());
        let mut bad = Options::new(vec!["stray".into()]);
        assert!(bad.next_option().is_err());
    }
}
