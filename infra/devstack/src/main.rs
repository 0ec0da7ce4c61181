//! `devstack`: the local stack's command line (see `infra/run.sh`).

use clap::error::ErrorKind;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use devstack::faultproxy::FaultConfig;
use devstack::gateway::{self, Emulator, HealthCheck, HealthChecks};
use devstack::template::Template;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod commands;

use commands::events::events;
use commands::token::token;

/// The local stack's tools: tables, stand-ins, gateway, fault proxy, tokens,
/// sample events (infra/run.sh starts them).
#[derive(Debug, Parser)]
#[command(name = "devstack")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the tables of template.yaml in DynamoDB (idempotent)
    Tables(TablesArgs),
    /// Serve the HttpApi routes of template.yaml through the cargo-lambda emulator,
    /// with the HttpApi's CorsConfiguration (template parameters: defaults or --parameter)
    Gateway(GatewayArgs),
    /// Serve the built billing page (index.html for unknown paths; --config FILE at /config.json)
    Web(WebArgs),
    /// Run the VirtFusion API stand-in (token: $VIRTFUSION_API_TOKEN)
    Virtfusion(VirtFusionArgs),
    /// Print the function binaries of template.yaml, one per line
    Functions,
    /// Print the routes of template.yaml (METHOD PATH FUNCTION)
    Routes,
    /// Write a sample API Gateway v2 event per route: <function>.<method>.json
    Events(EventsArgs),
    /// Print an HS256 JWT signed with $BILLING_JWT_SECRET (default local-dev-secret)
    Token(TokenArgs),
    /// Run the PayPal API stand-in (credentials: $PAYPAL_CLIENT_ID /
    /// $PAYPAL_CLIENT_SECRET, webhook id $PAYPAL_WEBHOOK_ID); delivers signed
    /// webhooks to --webhook-target
    Paypal(PayPalArgs),
    /// Poll the table's stream and invoke events-publisher with it, as Lambda
    /// would; set up bus -> rule -> queue on the EventBridge API (moto) and
    /// print each published event (DynamoDB: $DYNAMODB_ENDPOINT)
    Outbox(OutboxArgs),
    /// Run the DynamoDB fault-injecting proxy in front of --upstream
    /// (flags: see devstack::faultproxy; OPS: operation names or *)
    Faultproxy(FaultProxyArgs),
}

#[derive(Debug, Args)]
struct TablesArgs {
    /// DynamoDB endpoint [default: $DYNAMODB_ENDPOINT or http://127.0.0.1:8000]
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// BillingTable's name [default: $BILLING_TABLE or billing]
    #[arg(long, value_name = "NAME")]
    table: Option<String>,
}

#[derive(Debug, Args)]
struct GatewayArgs {
    #[arg(long, default_value_t = 3000)]
    port: u16,
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
    /// The cargo-lambda emulator [default: $LAMBDA_EMULATOR_URL or http://127.0.0.1:9000]
    #[arg(long, value_name = "URL")]
    emulator: Option<String>,
    /// A dependency /health checks, repeatable
    #[arg(long, value_name = "[NAME=]URL")]
    check: Vec<String>,
    /// Seconds an invocation may take
    #[arg(long, value_name = "SECONDS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..))]
    invoke_timeout: u64,
    /// A template parameter for the CORS configuration, repeatable
    #[arg(long, value_name = "NAME=VALUE")]
    parameter: Vec<String>,
}

#[derive(Debug, Args)]
struct WebArgs {
    #[arg(long, default_value_t = 5173)]
    port: u16,
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
    #[arg(long, value_name = "DIR", default_value = "web/dist")]
    dir: PathBuf,
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct VirtFusionArgs {
    #[arg(long, default_value_t = 8091)]
    port: u16,
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
}

#[derive(Debug, Args)]
struct PayPalArgs {
    #[arg(long, default_value_t = 8092)]
    port: u16,
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
    /// Where signed webhooks are delivered (turns automatic webhooks on)
    #[arg(long, value_name = "URL")]
    webhook_target: Option<String>,
    /// File the stand-in keeps its orders in (between runs)
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct OutboxArgs {
    /// BillingTable's name [default: $BILLING_TABLE or billing]
    #[arg(long, value_name = "NAME")]
    table: Option<String>,
    /// The cargo-lambda emulator [default: $LAMBDA_EMULATOR_URL or http://127.0.0.1:9000]
    #[arg(long, value_name = "URL")]
    emulator: Option<String>,
    /// The EventBridge + SQS API [default: $EVENTBRIDGE_ENDPOINT or http://127.0.0.1:8093]
    #[arg(long, value_name = "URL")]
    eventbridge: Option<String>,
    /// The bus [default: $EVENT_BUS_NAME or billing-local]
    #[arg(long, value_name = "NAME")]
    bus: Option<String>,
    /// The queue a rule delivers every billing event to
    #[arg(long, value_name = "NAME", default_value = "billing-events")]
    queue: String,
}

/// The fault flags, in the order [`FaultConfig::apply_flag`] reads them; the
/// rules keep their command-line order (it decides which fault a draw picks).
const FAULT_FLAGS: [(&str, &str); 7] = [
    ("conflict", "--conflict"),
    ("throttle", "--throttle"),
    ("throughput", "--throughput"),
    ("internal_error", "--internal-error"),
    ("drop_ack", "--drop-ack"),
    ("error_after_write", "--error-after-write"),
    ("latency", "--latency"),
];

#[derive(Debug, Args)]
struct FaultProxyArgs {
    #[arg(long, default_value_t = devstack::faultproxy::DEFAULT_PORT)]
    port: u16,
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
    /// DynamoDB behind the proxy [default: $DYNAMODB_ENDPOINT or http://127.0.0.1:8123]
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// TransactionCanceledException (default ops: TransactWriteItems)
    #[arg(long, value_name = "RATE[@OPS]")]
    conflict: Vec<String>,
    /// ThrottlingException (default ops: all)
    #[arg(long, value_name = "RATE[@OPS]")]
    throttle: Vec<String>,
    /// ProvisionedThroughputExceededException (default ops: all)
    #[arg(long, value_name = "RATE[@OPS]")]
    throughput: Vec<String>,
    /// 500 without forwarding (default ops: all)
    #[arg(long, value_name = "RATE[@OPS]")]
    internal_error: Vec<String>,
    /// Forward, then reset the connection (default ops: TransactWriteItems)
    #[arg(long, value_name = "RATE[@OPS]")]
    drop_ack: Vec<String>,
    /// Forward, then answer 500 (default ops: TransactWriteItems)
    #[arg(long, value_name = "RATE[@OPS]")]
    error_after_write: Vec<String>,
    /// Delay answers (default: every request of all ops)
    #[arg(long, value_name = "MS[:RATE][@OPS]")]
    latency: Vec<String>,
}

#[derive(Debug, Args)]
struct EventsArgs {
    #[arg(long, value_name = "DIR", default_value = "events")]
    out: PathBuf,
    /// The user token in the events [default: a sample one for user 1001]
    #[arg(long, value_name = "JWT")]
    token: Option<String>,
    /// The admin token in the events [default: a sample one for admin 1]
    #[arg(long, value_name = "JWT")]
    admin_token: Option<String>,
    /// The service token in the /api/services events [default: a sample one, sub svc-panel]
    #[arg(long, value_name = "JWT")]
    service_token: Option<String>,
}

#[derive(Debug, Args)]
struct TokenArgs {
    #[arg(long, default_value = "1001")]
    sub: String,
    #[arg(long, conflicts_with = "service")]
    admin: bool,
    /// Role `service` (a platform service: the /api/services routes)
    #[arg(long)]
    service: bool,
    #[arg(long, default_value_t = 24,
          value_parser = clap::value_parser!(i64).range(1..=24 * 366 * 10))]
    ttl_hours: i64,
}

#[derive(Debug)]
enum CliError {
    /// A usage error found after parsing (printed with the usage, exit 2).
    Usage(clap::Error),
    Failed(String),
}

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> CliError {
        CliError::Failed(e.to_string())
    }
}

type CliResult = Result<(), CliError>;

fn usage_error(message: String) -> CliError {
    CliError::Usage(Cli::command().error(ErrorKind::ValueValidation, message))
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match run(cli.command, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(error)) => error.exit(),
        Err(CliError::Failed(message)) => {
            eprintln!("devstack: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, matches: &ArgMatches) -> CliResult {
    match command {
        Command::Tables(args) => tables(args),
        Command::Gateway(args) => gateway_command(args),
        Command::Web(args) => web_command(args),
        Command::Virtfusion(args) => virtfusion(args),
        Command::Functions => functions(),
        Command::Routes => routes(),
        Command::Events(args) => events(args),
        Command::Token(args) => token(args),
        Command::Paypal(args) => paypal(args),
        Command::Outbox(args) => outbox(args),
        Command::Faultproxy(args) => {
            let flags = matches
                .subcommand_matches("faultproxy")
                .map(fault_flags)
                .unwrap_or_default();
            faultproxy(args, &flags)
        }
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

fn env_or(name: &str, default: &str) -> String {
    billing_config::env_or(name, default)
}

// ---------------------------------------------------------------- tables

fn tables(args: TablesArgs) -> CliResult {
    let endpoint = args
        .endpoint
        .unwrap_or_else(|| env_or("DYNAMODB_ENDPOINT", "http://127.0.0.1:8000"));
    let billing_table = args
        .table
        .unwrap_or_else(|| env_or("BILLING_TABLE", "billing"));
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

fn web_command(args: WebArgs) -> CliResult {
    billing_config::init_tracing();
    let site = devstack::webpage::Site::new(args.dir, args.config)?;
    runtime()?.block_on(devstack::webpage::serve(
        SocketAddr::new(args.host, args.port),
        site,
    ))?;
    Ok(())
}

// ---------------------------------------------------------------- outbox

fn outbox(args: OutboxArgs) -> CliResult {
    let options = devstack::outbox::OutboxOptions {
        table: args
            .table
            .unwrap_or_else(|| env_or("BILLING_TABLE", "billing")),
        emulator: args
            .emulator
            .unwrap_or_else(|| env_or("LAMBDA_EMULATOR_URL", "http://127.0.0.1:9000")),
        eventbridge: args
            .eventbridge
            .unwrap_or_else(|| env_or("EVENTBRIDGE_ENDPOINT", "http://127.0.0.1:8093")),
        bus: args
            .bus
            .unwrap_or_else(|| env_or("EVENT_BUS_NAME", "billing-local")),
        queue: args.queue,
        interval: Duration::from_millis(500),
    };
    runtime()?
        .block_on(devstack::outbox::run(options))
        .map_err(CliError::Failed)
}

// ---------------------------------------------------------------- gateway

fn gateway_command(args: GatewayArgs) -> CliResult {
    let emulator = args
        .emulator
        .unwrap_or_else(|| env_or("LAMBDA_EMULATOR_URL", "http://127.0.0.1:9000"));
    let checks = args.check.iter().map(|c| HealthCheck::parse(c)).collect();
    let mut parameters = std::collections::BTreeMap::new();
    for spec in &args.parameter {
        let (key, value) = devstack::cors::parse_override(spec)
            .ok_or_else(|| usage_error(format!("--parameter: expected NAME=VALUE: {spec:?}")))?;
        parameters.insert(key, value);
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
    let invoker = Emulator::new(&emulator, Duration::from_secs(args.invoke_timeout))?;
    let addr = SocketAddr::new(args.host, args.port);
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

fn virtfusion(args: VirtFusionArgs) -> CliResult {
    let token = env_or("VIRTFUSION_API_TOKEN", "local-virtfusion-token");
    billing_config::init_tracing();
    let addr = SocketAddr::new(args.host, args.port);
    runtime()?.block_on(async {
        tokio::select! {
            served = devstack::virtfusion::serve_forever(addr, &token) => served,
            () = gateway::shutdown_signal() => Ok(()),
        }
    })?;
    Ok(())
}

// ---------------------------------------------------------------- paypal

fn paypal(args: PayPalArgs) -> CliResult {
    let mut config = devstack::paypal::StandInConfig::new(
        &env_or("PAYPAL_CLIENT_ID", "local-client"),
        &env_or("PAYPAL_CLIENT_SECRET", "local-secret"),
        &env_or("PAYPAL_WEBHOOK_ID", "local-webhook"),
    );
    if let Some(target) = args.webhook_target {
        config.webhook_target = Some(target);
        config.auto_webhooks = true;
    }
    if let Some(state) = args.state {
        config.state_file = Some(state);
    }
    billing_config::init_tracing();
    let addr = SocketAddr::new(args.host, args.port);
    runtime()?.block_on(async {
        tokio::select! {
            served = devstack::paypal::serve_forever(addr, config) => served,
            () = gateway::shutdown_signal() => Ok(()),
        }
    })?;
    Ok(())
}

// ---------------------------------------------------------------- faultproxy

/// The fault flags given, as `(--flag, value)` in command-line order.
fn fault_flags(matches: &ArgMatches) -> Vec<(&'static str, String)> {
    let mut given: Vec<(usize, &'static str, String)> = Vec::new();
    for (id, flag) in FAULT_FLAGS {
        let (Some(values), Some(indices)) =
            (matches.get_many::<String>(id), matches.indices_of(id))
        else {
            continue;
        };
        given.extend(indices.zip(values).map(|(i, v)| (i, flag, v.clone())));
    }
    given.sort_by_key(|(index, _, _)| *index);
    given
        .into_iter()
        .map(|(_, flag, value)| (flag, value))
        .collect()
}

fn fault_config(seed: Option<u64>, flags: &[(&str, String)]) -> Result<FaultConfig, CliError> {
    let mut config = FaultConfig::seeded(seed.unwrap_or(0));
    for (flag, value) in flags {
        config.apply_flag(flag, value).map_err(usage_error)?;
    }
    Ok(config)
}

fn faultproxy(args: FaultProxyArgs, flags: &[(&str, String)]) -> CliResult {
    let upstream = args
        .upstream
        .unwrap_or_else(|| env_or("DYNAMODB_ENDPOINT", "http://127.0.0.1:8123"));
    let config = fault_config(args.seed, flags)?;
    billing_config::init_tracing();
    let addr = SocketAddr::new(args.host, args.port);
    runtime()?.block_on(async {
        tokio::select! {
            served = devstack::faultproxy::serve_forever(addr, upstream, config) => served,
            () = gateway::shutdown_signal() => Ok(()),
        }
    })?;
    Ok(())
}

// ---------------------------------------------------------------- functions / routes

fn functions() -> CliResult {
    for function in load_template()?.functions() {
        println!("{function}");
    }
    Ok(())
}

fn routes() -> CliResult {
    for route in load_template()?.routes() {
        println!("{} {} {}", route.method, route.path, route.function);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::events::{EVENT_TIME, sample_event};
    use crate::commands::token::sign_jwt;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use devstack::template::RouteDef;
    use hmac::{Hmac, KeyInit, Mac};
    use serde_json::{Value, json};
    use sha2::Sha256;
    use std::path::Path;

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

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("devstack").chain(args.iter().copied()))
            .map(|cli| cli.command)
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// Every invocation of infra/*.sh parses, with the values given.
    #[test]
    fn the_scripts_invocations_parse() {
        let Command::Tables(tables) = parse(&[
            "tables",
            "--endpoint",
            "http://127.0.0.1:8000",
            "--table",
            "b",
        ])
        .unwrap() else {
            panic!("tables")
        };
        assert_eq!(tables.endpoint.as_deref(), Some("http://127.0.0.1:8000"));
        assert_eq!(tables.table.as_deref(), Some("b"));
        let Command::Paypal(paypal) = parse(&[
            "paypal",
            "--port=8192",
            "--webhook-target",
            "http://127.0.0.1:3000/webhooks/paypal",
            "--state",
            ".local/paypal-state.json",
        ])
        .unwrap() else {
            panic!("paypal")
        };
        assert_eq!(paypal.port, 8192);
        assert_eq!(paypal.host, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(paypal.webhook_target.is_some() && paypal.state.is_some());
        let Command::Gateway(gateway) = parse(&[
            "gateway",
            "--port",
            "3001",
            "--emulator",
            "http://127.0.0.1:9000",
            "--check",
            "dynamodb=http://127.0.0.1:8000",
            "--parameter",
            "FrontendOrigin=http://127.0.0.1:5173",
            "--check",
            "virtfusion=http://127.0.0.1:8091/",
        ])
        .unwrap() else {
            panic!("gateway")
        };
        assert_eq!(gateway.check.len(), 2);
        assert_eq!(gateway.parameter, ["FrontendOrigin=http://127.0.0.1:5173"]);
        assert_eq!(gateway.invoke_timeout, 120);
        let Command::Web(web) = parse(&[
            "web",
            "--port",
            "5173",
            "--dir",
            "web/dist",
            "--config",
            ".local/web-config.json",
        ])
        .unwrap() else {
            panic!("web")
        };
        assert_eq!((web.port, web.dir.as_path()), (5173, Path::new("web/dist")));
        assert!(web.config.is_some());
        let Command::Token(token) = parse(&["token", "--sub", "1", "--admin"]).unwrap() else {
            panic!("token")
        };
        assert!(token.admin);
        assert_eq!((token.sub.as_str(), token.ttl_hours), ("1", 24));
        assert!(matches!(
            parse(&["virtfusion", "--port", "8091"]),
            Ok(Command::Virtfusion(_))
        ));
        assert!(matches!(parse(&["functions"]), Ok(Command::Functions)));
        assert!(matches!(
            parse(&["events", "--out", "x"]),
            Ok(Command::Events(_))
        ));
    }

    #[test]
    fn bad_command_lines_are_refused() {
        for args in [
            &["tables", "stray"][..],
            &["virtfusion", "--port", "70000"],
            &["gateway", "--host", "localhost"],
            &["gateway", "--invoke-timeout", "0"],
            &["token", "--ttl-hours", "0"],
            &["token", "--admin=yes"],
            &["functions", "--x"],
            &["nope"],
            &[],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    /// Fault rules keep their command-line order (it decides which fault a
    /// draw picks), whatever flags they come from.
    #[test]
    fn fault_flags_keep_their_order() {
        let matches = Cli::command()
            .try_get_matches_from([
                "devstack",
                "faultproxy",
                "--drop-ack",
                "0.1",
                "--seed",
                "7",
                "--conflict",
                "0.3",
                "--drop-ack=0.2@GetItem",
            ])
            .unwrap();
        let flags = fault_flags(matches.subcommand_matches("faultproxy").unwrap());
        assert_eq!(
            flags,
            [
                ("--drop-ack", "0.1".to_owned()),
                ("--conflict", "0.3".to_owned()),
                ("--drop-ack", "0.2@GetItem".to_owned()),
            ]
        );
        let config = fault_config(Some(7), &flags).unwrap();
        assert_eq!(config.seed, 7);
        let faults: Vec<_> = config.rules.iter().map(|r| r.fault).collect();
        use devstack::faultproxy::Fault;
        assert_eq!(
            faults,
            [
                Fault::DropAfterForward,
                Fault::Conflict,
                Fault::DropAfterForward
            ]
        );
        assert!(fault_config(None, &[("--conflict", "2".to_owned())]).is_err());
    }
}
