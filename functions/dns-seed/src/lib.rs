//! `dns-seed`: the CloudFormation custom resource `DnsPlansSeed` (see
//! template.yaml). On Create and Update it writes the default DNS plans that
//! are missing (`billing::dns::seed_default_plans`: idempotent, never
//! overwrites a plan an admin changed); on Delete it does nothing (the table
//! is retained). It always answers CloudFormation through the pre-signed
//! `ResponseURL`, with FAILED when seeding failed, so a deploy never hangs.

use lambda_runtime::{Error, LambdaEvent};
use ledger::Ledger;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;

/// Stable, so an Update never looks like a replacement (which would Delete the old one).
pub const PHYSICAL_RESOURCE_ID: &str = "dns-default-plans";

pub struct Deps {
    pub ledger: Ledger,
    // Built when CloudFormation is answered, not at init: building it loads
    // the platform's root certificates (docs/benchmarks.md, "Cold start").
    http: std::sync::OnceLock<reqwest::Client>,
}

impl Deps {
    pub async fn from_env() -> Result<Deps, Error> {
        let sdk = billing_config::load_aws_config().await;
        Deps::new(Ledger::new(
            billing_config::dynamo_client(&sdk),
            billing_config::table_name(),
        ))
    }

    pub fn new(ledger: Ledger) -> Result<Deps, Error> {
        Ok(Deps {
            ledger,
            http: std::sync::OnceLock::new(),
        })
    }

    fn http(&self) -> Result<&reqwest::Client, Error> {
        if let Some(http) = self.http.get() {
            return Ok(http);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(self.http.get_or_init(|| http))
    }
}

/// The fields of a CloudFormation custom resource request that we use.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CfnRequest {
    pub request_type: String,
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CfnResponse {
    pub status: &'static str,
    pub reason: String,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub data: Value,
}

/// Does the work of a request and says what to answer CloudFormation.
pub async fn outcome(ledger: &Ledger, request: &CfnRequest) -> CfnResponse {
    let (status, reason, data) = match request.request_type.as_str() {
        "Create" | "Update" => match billing::dns::seed_default_plans(ledger).await {
            Ok(created) => (
                "SUCCESS",
                format!("{created} plans created"),
                json!({ "created": created }),
            ),
            Err(error) => {
                tracing::error!(%error, "seeding DNS plans failed");
                (
                    "FAILED",
                    "seeding DNS plans failed; see the function's log".to_owned(),
                    json!({}),
                )
            }
        },
        "Delete" => (
            "SUCCESS",
            "plans are kept with the table".to_owned(),
            json!({}),
        ),
        other => ("FAILED", format!("unknown request type {other}"), json!({})),
    };
    CfnResponse {
        status,
        reason,
        physical_resource_id: PHYSICAL_RESOURCE_ID.into(),
        stack_id: request.stack_id.clone(),
        request_id: request.request_id.clone(),
        logical_resource_id: request.logical_resource_id.clone(),
        data,
    }
}

/// PUTs the response to the pre-signed URL (bounded retries).
pub async fn send(http: &reqwest::Client, url: &str, response: &CfnResponse) -> Result<(), Error> {
    let body = serde_json::to_string(response)?;
    let mut last = String::new();
    for attempt in 0..3u64 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
        }
        match http.put(url).body(body.clone()).send().await {
            Ok(reply) if reply.status().is_success() => return Ok(()),
            Ok(reply) => last = format!("status {}", reply.status()),
            Err(error) => last = error.without_url().to_string(),
        }
    }
    Err(Error::from(format!(
        "could not answer CloudFormation: {last}"
    )))
}

pub async fn handle(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let request: CfnRequest = serde_json::from_value(event.payload)?;
    let response = outcome(&deps.ledger, &request).await;
    tracing::info!(request_type = %request.request_type, status = response.status, reason = %response.reason, "custom resource");
    send(deps.http()?, &request.response_url, &response).await?;
    Ok(serde_json::to_value(&response)?)
}
