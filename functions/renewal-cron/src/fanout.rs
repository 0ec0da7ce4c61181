//! The coordinator's side of the fan-out: one SQS message per partition of
//! the due index (`billing::subscriptions::fanout`), sent in batches of 10;
//! `renewal-worker` consumes them. Sending is all or nothing from the job's
//! point of view: if any message could not be sent the run fails
//! (`RenewalFailed`) and its retry sends them all again — a partition run
//! twice charges nothing twice.

use billing::subscriptions::fanout::PartitionMessage;
use time::OffsetDateTime;

/// Where the partition messages go (`RENEWAL_QUEUE_URL`).
#[derive(Clone, Debug)]
pub struct FanOut {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

/// SQS allows at most 10 entries per `SendMessageBatch`.
const BATCH: usize = 10;

impl FanOut {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> FanOut {
        FanOut {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// From `RENEWAL_QUEUE_URL` (unset or empty: no fan-out, the job runs
    /// every partition itself), with `SQS_ENDPOINT` as a local override.
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Option<FanOut> {
        let queue_url = billing_config::env_opt("RENEWAL_QUEUE_URL")?;
        Some(FanOut::new(
            client(sdk, billing_config::env_opt("SQS_ENDPOINT")),
            queue_url,
        ))
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Sends one message per partition at `now`; the number sent.
    pub async fn dispatch(&self, now: OffsetDateTime) -> Result<u64, String> {
        let messages = PartitionMessage::all(now);
        for chunk in messages.chunks(BATCH) {
            let entries = chunk
                .iter()
                .map(|message| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(message.entry_id())
                        .message_body(message.to_body())
                        .build()
                        .map_err(|e| format!("renewal message: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "SendMessageBatch failed: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(&e)
                    )
                })?;
            if let Some(failed) = out.failed().first() {
                return Err(format!(
                    "{} of {} partition messages not sent (first: {} {})",
                    out.failed().len(),
                    chunk.len(),
                    failed.id(),
                    failed.code()
                ));
            }
        }
        Ok(messages.len() as u64)
    }
}

/// An SQS client, with an endpoint override (moto locally and in tests).
pub fn client(sdk: &aws_config::SdkConfig, endpoint: Option<String>) -> aws_sdk_sqs::Client {
    let mut builder = aws_sdk_sqs::config::Builder::from(sdk);
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_sqs::Client::from_conf(builder.build())
}
