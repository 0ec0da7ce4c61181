//! Configuration read from the environment, AWS clients built once per cold
//! start, and secrets fetched once and cached.
//!
//! Locally, `DYNAMODB_ENDPOINT` (or the SDK's own `AWS_ENDPOINT_URL_DYNAMODB`)
//! points the DynamoDB client at DynamoDB Local, and secrets come from plain
//! environment variables. In AWS, secrets come from Secrets Manager by ARN.

mod https;
mod logging;
mod secrets;

pub use https::lazy_https_client;

pub use secrets::{
    DEFAULT_TTL, Rereadable, SecretError, SecretSpec, SecretValue, Secrets, secrets_manager_client,
};

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use std::time::Duration;

/// Name of the single billing table (`BILLING_TABLE`, default `billing`).
pub fn table_name() -> String {
    env_or("BILLING_TABLE", "billing")
}

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

pub fn env_opt(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Running inside AWS Lambda (or its emulator): `AWS_LAMBDA_FUNCTION_NAME`
/// is set. There, configuration has no local defaults: what is missing is a
/// fault of the deployment (500 and an error log), never a silent fallback.
pub fn in_lambda() -> bool {
    env_opt("AWS_LAMBDA_FUNCTION_NAME").is_some()
}

/// The DynamoDB endpoint override, if any (DynamoDB Local or the fault proxy).
pub fn dynamo_endpoint_override() -> Option<String> {
    env_opt("DYNAMODB_ENDPOINT").or_else(|| env_opt("AWS_ENDPOINT_URL_DYNAMODB"))
}

/// The shared AWS configuration, read from the environment as Lambda
/// provides it: credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`
/// / `AWS_SESSION_TOKEN`, region from `AWS_REGION` (or `AWS_DEFAULT_REGION`),
/// standard retries (3 attempts), our timeouts. Against a local endpoint,
/// missing credentials and region get harmless local values (DynamoDB Local
/// accepts any).
///
/// Not `aws_config::load()`'s provider chain: its profile files, SSO, web
/// identity (STS), ECS and IMDS providers serve other hosts than Lambda, which
/// always hands the function's role credentials over in the environment, and
/// they would be linked into every binary (docs/benchmarks.md, "Artifact
/// sizes"). The HTTPS client reads the TLS root store at the first
/// request, not when a client is built ([`lazy_https_client`]).
pub async fn load_aws_config() -> aws_config::SdkConfig {
    use aws_sdk_dynamodb::config::{Credentials, Region, SharedCredentialsProvider};
    let local = dynamo_endpoint_override().is_some();
    let credentials = if let Some(identity) = local_identity() {
        local_credentials(&identity)
    } else if local && env_opt("AWS_ACCESS_KEY_ID").is_none() {
        SharedCredentialsProvider::new(Credentials::new("local", "local", None, None, "local"))
    } else {
        SharedCredentialsProvider::new(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        )
    };
    let region = env_opt("AWS_REGION")
        .or_else(|| env_opt("AWS_DEFAULT_REGION"))
        .or_else(|| local.then(|| "us-east-1".to_owned()));
    let mut builder = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(lazy_https_client())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(12))
                .build(),
        )
        .retry_config(aws_config::retry::RetryConfig::standard())
        .identity_cache(aws_config::identity::IdentityCache::lazy().build())
        .time_source(aws_smithy_async::time::SystemTimeSource::new())
        .credentials_provider(credentials);
    if let Some(sleep) = aws_smithy_async::rt::sleep::default_async_sleep() {
        builder = builder.sleep_impl(sleep);
    }
    if let Some(region) = region {
        builder = builder.region(Region::new(region));
    }
    builder.build()
}

/// Locally (an endpoint override) with `LOCAL_IAM_CREDENTIALS=function`, the
/// access key id every call is signed with: the function's own name
/// (`AWS_LAMBDA_FUNCTION_NAME`, its binary name in the cargo-lambda
/// emulator), which local IAM (devstack's proxy in front of DynamoDB Local
/// and moto) maps to the function's policy in template.yaml. Never in AWS.
pub fn local_identity() -> Option<String> {
    let on = env_opt("LOCAL_IAM_CREDENTIALS").as_deref() == Some("function");
    if !on || dynamo_endpoint_override().is_none() {
        return None;
    }
    env_opt("AWS_LAMBDA_FUNCTION_NAME")
}

/// The access key id a function named `name` signs with locally: its name
/// without what DynamoDB Local 2.x refuses in a key (anything but A–Z, a–z,
/// 0–9; it answers `UnrecognizedClientException`): `renewal-cron` →
/// `renewalcron`, which local IAM maps back to the function.
pub fn local_access_key(name: &str) -> String {
    name.chars().filter(char::is_ascii_alphanumeric).collect()
}

fn local_credentials(identity: &str) -> aws_sdk_dynamodb::config::SharedCredentialsProvider {
    use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
    SharedCredentialsProvider::new(Credentials::new(
        local_access_key(identity),
        "local",
        None,
        None,
        "local-iam",
    ))
}

/// `sdk` signing as the function `binary` when local IAM credentials are on
/// ([`local_identity`]); `sdk` unchanged otherwise (in AWS always). For a
/// process that locally does another function's work (the renewal job
/// without a queue renews as the workers do).
pub fn acting_as(sdk: &aws_config::SdkConfig, binary: &str) -> aws_config::SdkConfig {
    if local_identity().is_none() {
        return sdk.clone();
    }
    sdk.to_builder()
        .credentials_provider(local_credentials(binary))
        .build()
}

/// A DynamoDB client honouring the local endpoint override.
pub fn dynamo_client(sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    dynamo_client_with(sdk, |b| b)
}

/// Same, letting the caller adjust the builder (interceptors in benches and tests).
pub fn dynamo_client_with(
    sdk: &aws_config::SdkConfig,
    adjust: impl FnOnce(aws_sdk_dynamodb::config::Builder) -> aws_sdk_dynamodb::config::Builder,
) -> aws_sdk_dynamodb::Client {
    let mut builder = aws_sdk_dynamodb::config::Builder::from(sdk);
    if let Some(endpoint) = dynamo_endpoint_override() {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_dynamodb::Client::from_conf(adjust(builder).build())
}

pub use logging::{init_tracing, json_subscriber, lambda_keeps, log_directives};

pub mod metrics;
