//! The worker's own queue and dead-letter queue: a partition still making
//! progress at its deadline continues in a new message (so it never spends
//! the queue's `maxReceiveCount` while it gets somewhere), and a message no
//! worker can read goes straight to the dead-letter queue (retrying it
//! would only delay the alarm by five visibility timeouts).

/// Where continuations and unreadable messages go (`RENEWAL_QUEUE_URL`,
/// `RENEWAL_DEAD_LETTER_QUEUE_URL`).
#[derive(Clone, Debug)]
pub struct Requeue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    dead_letter_url: String,
}

/// Message attribute values are kept under this (SQS allows 256 KB in all).
const MAX_REASON_CHARS: usize = 1000;

impl Requeue {
    pub fn new(
        client: aws_sdk_sqs::Client,
        queue_url: impl Into<String>,
        dead_letter_url: impl Into<String>,
    ) -> Requeue {
        Requeue {
            client,
            queue_url: queue_url.into(),
            dead_letter_url: dead_letter_url.into(),
        }
    }

    /// From `RENEWAL_QUEUE_URL` and `RENEWAL_DEAD_LETTER_QUEUE_URL` (both
    /// needed; unset locally), with `SQS_ENDPOINT` as a local override.
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Option<Requeue> {
        let queue_url = billing_config::env_opt("RENEWAL_QUEUE_URL")?;
        let dead_letter_url = billing_config::env_opt("RENEWAL_DEAD_LETTER_QUEUE_URL")?;
        Some(Requeue::new(
            renewal_cron_fn::fanout::client(sdk, billing_config::env_opt("SQS_ENDPOINT")),
            queue_url,
            dead_letter_url,
        ))
    }

    /// Sends the continuation `body` to the partition queue.
    pub async fn continue_with(&self, body: &str) -> Result<(), String> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "continuation not sent: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                )
            })
    }

    /// Puts `body` in the dead-letter queue as it came, with why (message
    /// attributes `errorType` and `error`).
    pub async fn dead_letter(
        &self,
        body: &str,
        error_type: &str,
        error: &str,
    ) -> Result<(), String> {
        let attribute = |value: &str| {
            aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value.chars().take(MAX_REASON_CHARS).collect::<String>())
                .build()
                .map_err(|e| format!("message attribute: {e}"))
        };
        // SQS refuses an empty body; an empty message is kept as a marker.
        let body = if body.is_empty() {
            "(empty body)"
        } else {
            body
        };
        self.client
            .send_message()
            .queue_url(&self.dead_letter_url)
            .message_body(body)
            .message_attributes("errorType", attribute(error_type)?)
            .message_attributes("error", attribute(error)?)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "not sent to the dead-letter queue: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                )
            })
    }
}
