//! `devstack outbox`: the local stand-in for the events publisher's event
//! source mapping. Sets up a bus, a rule (`source: skypanel.billing`) and an
//! SQS queue on an EventBridge API (moto_server, started by infra/run.sh),
//! then polls the table's stream ([`crate::streams`]) and invokes the
//! `events-publisher` function in the cargo-lambda emulator with each batch,
//! as Lambda would, printing every event it publishes. The events can also
//! be read from the queue.

use crate::streams::{StartAt, StreamPoller};
use serde_json::{Value, json};
use std::time::Duration;

pub struct OutboxOptions {
    pub table: String,
    /// The cargo-lambda emulator (`http://127.0.0.1:9000`).
    pub emulator: String,
    /// The EventBridge/SQS API (moto).
    pub eventbridge: String,
    pub bus: String,
    pub queue: String,
    pub interval: Duration,
}

/// One call of an AWS JSON-protocol API (moto checks no signature).
pub async fn aws_json(
    http: &reqwest::Client,
    endpoint: &str,
    target: &str,
    body: Value,
) -> Result<Value, String> {
    let version = if target.starts_with("AmazonSQS.") {
        "1.0"
    } else {
        "1.1"
    };
    let service = if target.starts_with("AmazonSQS.") {
        "sqs"
    } else {
        "events"
    };
    let response = http
        .post(endpoint)
        .header("x-amz-target", target)
        .header("content-type", format!("application/x-amz-json-{version}"))
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
            ),
        )
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("{target}: {e}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!("{target}: {status} {text}"));
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Bus → rule → queue; returns the queue URL. Idempotent.
pub async fn set_up(
    http: &reqwest::Client,
    endpoint: &str,
    bus: &str,
    queue: &str,
) -> Result<String, String> {
    if let Err(e) = aws_json(
        http,
        endpoint,
        "AWSEvents.CreateEventBus",
        json!({"Name": bus}),
    )
    .await
        && !e.contains("ResourceAlreadyExists")
    {
        return Err(e);
    }
    let created = aws_json(
        http,
        endpoint,
        "AmazonSQS.CreateQueue",
        json!({"QueueName": queue}),
    )
    .await?;
    let queue_url = created["QueueUrl"]
        .as_str()
        .ok_or("CreateQueue: no QueueUrl")?
        .to_owned();
    let attrs = aws_json(
        http,
        endpoint,
        "AmazonSQS.GetQueueAttributes",
        json!({"QueueUrl": queue_url, "AttributeNames": ["QueueArn"]}),
    )
    .await?;
    let queue_arn = attrs["Attributes"]["QueueArn"]
        .as_str()
        .ok_or("GetQueueAttributes: no QueueArn")?
        .to_owned();
    let rule = format!("{queue}-all");
    aws_json(
        http,
        endpoint,
        "AWSEvents.PutRule",
        json!({"Name": rule, "EventBusName": bus, "EventPattern": json!({"source": ["skypanel.billing"]}).to_string()}),
    )
    .await?;
    aws_json(
        http,
        endpoint,
        "AWSEvents.PutTargets",
        json!({"Rule": rule, "EventBusName": bus, "Targets": [{"Id": "queue", "Arn": queue_arn}]}),
    )
    .await?;
    Ok(queue_url)
}

/// Runs until the process is stopped.
pub async fn run(options: OutboxOptions) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| e.to_string())?;
    let queue_url = set_up(&http, &options.eventbridge, &options.bus, &options.queue).await?;
    println!(
        "outbox: stream of {} -> events-publisher -> bus {} -> queue {queue_url}",
        options.table, options.bus
    );
    let sdk = billing_config::load_aws_config().await;
    let endpoint = billing_config::dynamo_endpoint_override();
    let mut poller = StreamPoller::new(
        billing_config::dynamo_client(&sdk),
        StreamPoller::streams_client(&sdk, endpoint.as_deref()),
        &options.table,
        StartAt::TrimHorizon,
    );
    let invoke_url = format!(
        "{}/2015-03-31/functions/events-publisher/invocations",
        options.emulator.trim_end_matches('/')
    );
    loop {
        let http = &http;
        let url = invoke_url.as_str();
        let pumped = poller
            .pump(|batch| async move {
                let response = http
                    .post(url)
                    .header("content-type", "application/json")
                    .body(batch.to_string())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = response.status();
                let text = response.text().await.map_err(|e| e.to_string())?;
                let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                // A function error (the emulator answers its errorType) retries the whole batch.
                if !status.is_success() || body.get("errorType").is_some() {
                    return Err(format!("events-publisher failed: {status} {body}"));
                }
                Ok(body)
            })
            .await;
        match pumped {
            Ok(pumped) => {
                for record in &pumped.delivered {
                    let image = record.pointer("/dynamodb/NewImage");
                    let text = |name: &str| {
                        image
                            .and_then(|i| i.get(name))
                            .and_then(|v| v.get("S"))
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned()
                    };
                    println!("event {} {}", text("detailType"), text("detail"));
                }
            }
            Err(e) => eprintln!("outbox: {e}"),
        }
        tokio::time::sleep(options.interval).await;
    }
}
