//! `events-publisher`: the outbox's second half. Invoked by the table's
//! DynamoDB Stream (event source mapping filtered to `INSERT`s of `OUTBOX#`
//! items; locally the devstack polls the stream and invokes it the same way),
//! it publishes each outbox item to EventBridge with `PutEvents` (at most 10
//! entries and 256 KiB per call), in stream order. Each entry's `Time` is the
//! outbox item's `createdAt`.
//!
//! Failures, by kind:
//!
//! - **Permanent, one record** (an entry EventBridge refuses as malformed or
//!   invalid, an entry over 256 KiB, a stream record that is not an outbox
//!   item): that record goes to the dead-letter queue
//!   (`DEAD_LETTER_QUEUE_URL`, with its keys and the reason) and the batch
//!   goes on; one poison event does not block its shard.
//! - **Transient** (a failed call, an entry refused with
//!   `ThrottlingException` / `InternalFailure`, a dead-letter send that
//!   failed): it stops and reports that record in `batchItemFailures`; the
//!   stream retries from there (`ReportBatchItemFailures`), so an event is
//!   delayed, never lost. After the mapping's retries the batch goes to the
//!   same dead-letter queue.
//! - **Deadline**: it stops [`DEADLINE_MARGIN`] before the invocation's
//!   deadline and reports the first record not yet published.
//!
//! A record published twice (a retry after a lost answer) carries the same
//! `eventId`: consumers deduplicate on it.

use aws_sdk_eventbridge::primitives::{DateTime, DateTimeFormat};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use billing::events::OutboxRecord;
use billing_config::metrics::Metric;
use lambda_runtime::{Error, LambdaEvent};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// `PutEvents` takes at most 10 entries.
pub const MAX_ENTRIES_PER_CALL: usize = 10;
/// `PutEvents` takes at most 256 KiB per entry and per call.
pub const MAX_BYTES_PER_CALL: usize = 256 * 1024;
/// How long before the invocation's deadline the publisher stops.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(5);
/// A dead-lettered record's new image is kept in the message up to this size.
const MAX_IMAGE_IN_DEAD_LETTER: usize = 128 * 1024;

pub struct Deps {
    pub client: aws_sdk_eventbridge::Client,
    /// `EVENT_BUS_NAME`: the bus the deployment names.
    pub bus: String,
    /// Where records that can never be published go, one message each.
    pub dead_letter: Option<DeadLetter>,
}

/// The dead-letter queue (`DEAD_LETTER_QUEUE_URL`).
#[derive(Clone)]
pub struct DeadLetter {
    pub client: aws_sdk_sqs::Client,
    pub queue_url: String,
}

impl Deps {
    /// `EVENT_BUS_NAME` (required), `DEAD_LETTER_QUEUE_URL` (required when
    /// deployed; without it a poison record is retried like a transient
    /// failure), `EVENTBRIDGE_ENDPOINT` / `SQS_ENDPOINT` (local/tests: moto).
    pub async fn from_env() -> Result<Deps, Error> {
        let bus = billing_config::env_opt("EVENT_BUS_NAME")
            .ok_or_else(|| Error::from("EVENT_BUS_NAME is not set"))?;
        let sdk = billing_config::load_aws_config().await;
        let dead_letter =
            billing_config::env_opt("DEAD_LETTER_QUEUE_URL").map(|queue_url| DeadLetter {
                client: sqs_client(&sdk, billing_config::env_opt("SQS_ENDPOINT")),
                queue_url,
            });
        Ok(Deps::new(
            client(&sdk, billing_config::env_opt("EVENTBRIDGE_ENDPOINT")),
            bus,
        )
        .with_dead_letter(dead_letter))
    }

    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Deps {
        Deps {
            client,
            bus: bus.into(),
            dead_letter: None,
        }
    }

    pub fn with_dead_letter(mut self, dead_letter: Option<DeadLetter>) -> Deps {
        self.dead_letter = dead_letter;
        self
    }
}

/// An EventBridge client, at `endpoint` when given.
pub fn client(
    sdk: &aws_config::SdkConfig,
    endpoint: Option<String>,
) -> aws_sdk_eventbridge::Client {
    let mut builder = aws_sdk_eventbridge::config::Builder::from(sdk);
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_eventbridge::Client::from_conf(builder.build())
}

/// An SQS client, at `endpoint` when given.
pub fn sqs_client(sdk: &aws_config::SdkConfig, endpoint: Option<String>) -> aws_sdk_sqs::Client {
    let mut builder = aws_sdk_sqs::config::Builder::from(sdk);
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_sqs::Client::from_conf(builder.build())
}

/// One stream record to publish.
struct Pending {
    sequence: String,
    raw: Value,
    record: OutboxRecord,
}

impl Pending {
    /// The entry's size as EventBridge counts it (approximately: time is 14 bytes).
    fn size(&self) -> usize {
        self.record.source.len() + self.record.detail_type.len() + self.record.detail.len() + 14
    }
}

/// What became of one chunk.
enum Outcome {
    Done,
    /// Stop: the stream resumes at this sequence number.
    Retry(String),
}

pub async fn handle(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let remaining = Duration::from_millis(event.context.deadline)
        .checked_sub(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        )
        .unwrap_or_default();
    let deadline = Instant::now() + remaining.saturating_sub(DEADLINE_MARGIN);
    Ok(publish_until(deps, &event.payload, Some(deadline)).await)
}

/// [`publish_until`] with no deadline.
pub async fn publish(deps: &Deps, batch: &Value) -> Value {
    publish_until(deps, batch, None).await
}

/// Publishes a DynamoDB Stream batch; answers Lambda's partial batch
/// response (`{"batchItemFailures": [{"itemIdentifier": <sequence number>}]}`).
/// Once `deadline` has passed it publishes nothing more and reports the
/// first record left.
#[tracing::instrument(skip_all, fields(records))]
pub async fn publish_until(deps: &Deps, batch: &Value, deadline: Option<Instant>) -> Value {
    let records = batch
        .get("Records")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    tracing::Span::current().record("records", records.len());
    let mut pending = Vec::new();
    for record in records {
        let sequence = record
            .pointer("/dynamodb/SequenceNumber")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        // Only new outbox items are events (the mapping's filter says so too).
        if record.get("eventName").and_then(Value::as_str) != Some("INSERT") {
            continue;
        }
        match record
            .pointer("/dynamodb/NewImage")
            .and_then(OutboxRecord::from_stream_image)
        {
            Some(outbox) => pending.push(Pending {
                sequence,
                raw: record.clone(),
                record: outbox,
            }),
            None => {
                // Every record of this mapping should be one: a poison record, kept.
                let reason = "not_an_outbox_item";
                let sent = dead_letter(deps, record, None, reason, "").await;
                if !sent {
                    // Retried from the earliest record not yet published.
                    let first = pending
                        .first()
                        .map_or(sequence.as_str(), |p| p.sequence.as_str());
                    return failures(first);
                }
            }
        }
    }
    let mut published = 0usize;
    let mut rest = pending.as_slice();
    while !rest.is_empty() {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            tracing::warn!(
                published,
                left = rest.len(),
                "deadline near; the stream retries the rest"
            );
            return failures(&rest[0].sequence);
        }
        let (chunk, after) = rest.split_at(chunk_len(rest));
        rest = after;
        match put_chunk(deps, chunk).await {
            Outcome::Done => published += chunk.len(),
            Outcome::Retry(failed) => {
                tracing::error!(
                    published,
                    failed_sequence = %failed,
                    "publishing stopped; the stream retries from the failed record"
                );
                return failures(&failed);
            }
        }
    }
    tracing::info!(published, "events published");
    json!({"batchItemFailures": []})
}

fn failures(sequence: &str) -> Value {
    count_failure("EventsPublishRetried", 1);
    json!({"batchItemFailures": [{"itemIdentifier": sequence}]})
}

/// How many of `rest` go in the next call: at most 10 entries and 256 KiB
/// (at least one: an oversized entry is dead-lettered alone).
fn chunk_len(rest: &[Pending]) -> usize {
    let mut bytes = 0;
    let mut n = 0;
    for p in rest.iter().take(MAX_ENTRIES_PER_CALL) {
        bytes += p.size();
        if n > 0 && bytes > MAX_BYTES_PER_CALL {
            break;
        }
        n += 1;
    }
    n.max(1)
}

/// Whether an entry error code is worth retrying; any other is permanent.
pub fn is_transient(code: &str) -> bool {
    matches!(
        code,
        "ThrottlingException" | "InternalFailure" | "InternalException" | "ServiceUnavailable"
    )
}

/// One `PutEvents` of `chunk` (entries over 256 KiB are dead-lettered, not sent).
async fn put_chunk(deps: &Deps, chunk: &[Pending]) -> Outcome {
    let (oversized, sendable): (Vec<&Pending>, Vec<&Pending>) =
        chunk.iter().partition(|p| p.size() > MAX_BYTES_PER_CALL);
    for p in oversized {
        let message = format!("entry of {} bytes", p.size());
        if !dead_letter(deps, &p.raw, Some(&p.record), "entry_too_large", &message).await {
            return Outcome::Retry(p.sequence.clone());
        }
    }
    let Some(first) = sendable.first() else {
        return Outcome::Done;
    };
    let entries: Vec<PutEventsRequestEntry> = sendable.iter().map(|p| entry(deps, p)).collect();
    let out = match deps
        .client
        .put_events()
        .set_entries(Some(entries))
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) => {
            tracing::error!(error = %aws_sdk_eventbridge::error::DisplayErrorContext(&e), "PutEvents failed");
            return Outcome::Retry(first.sequence.clone());
        }
    };
    // Entries answer in request order.
    let mut retry_from = None;
    for (p, answer) in sendable.iter().zip(out.entries()) {
        let Some(code) = answer.error_code() else {
            log_published(p);
            continue;
        };
        let message = answer.error_message().unwrap_or_default();
        tracing::error!(
            event_id = %p.record.event_id,
            code,
            message,
            "event refused by EventBridge"
        );
        if retry_from.is_some() {
            continue;
        }
        if is_transient(code) || !dead_letter(deps, &p.raw, Some(&p.record), code, message).await {
            retry_from = Some(p.sequence.clone());
        }
    }
    if out.entries().len() < sendable.len() && retry_from.is_none() {
        retry_from = sendable
            .get(out.entries().len())
            .map(|p| p.sequence.clone());
    }
    retry_from.map_or(Outcome::Done, Outcome::Retry)
}

fn entry(deps: &Deps, p: &Pending) -> PutEventsRequestEntry {
    let time = p
        .record
        .created_at
        .as_deref()
        .and_then(|t| DateTime::from_str(t, DateTimeFormat::DateTimeWithOffset).ok());
    PutEventsRequestEntry::builder()
        .event_bus_name(&deps.bus)
        .source(&p.record.source)
        .detail_type(&p.record.detail_type)
        .detail(&p.record.detail)
        .set_time(time)
        .build()
}

/// Sends one record to the dead-letter queue; whether it is there.
async fn dead_letter(
    deps: &Deps,
    raw: &Value,
    record: Option<&OutboxRecord>,
    reason: &str,
    message: &str,
) -> bool {
    let Some(dlq) = &deps.dead_letter else {
        tracing::error!(
            reason,
            "no dead-letter queue (DEAD_LETTER_QUEUE_URL); retrying"
        );
        return false;
    };
    let image = raw
        .pointer("/dynamodb/NewImage")
        .cloned()
        .unwrap_or(Value::Null);
    let image = if image.to_string().len() > MAX_IMAGE_IN_DEAD_LETTER {
        Value::Null
    } else {
        image
    };
    let body = json!({
        "reason": reason,
        "message": message,
        "eventId": record.map(|r| r.event_id.as_str()),
        "detailType": record.map(|r| r.detail_type.as_str()),
        "sequenceNumber": raw.pointer("/dynamodb/SequenceNumber"),
        "keys": raw.pointer("/dynamodb/Keys"),
        "newImage": image,
    });
    match dlq
        .client
        .send_message()
        .queue_url(&dlq.queue_url)
        .message_body(body.to_string())
        .send()
        .await
    {
        Ok(_) => {
            count_failure("EventsDeadLettered", 1);
            tracing::error!(
                reason,
                event_id = record.map(|r| r.event_id.as_str()),
                "event_dead_lettered: a record that can never be published went to the dead-letter queue"
            );
            true
        }
        Err(e) => {
            tracing::error!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "dead-letter send failed");
            false
        }
    }
}

/// One line per published event (INFO, for people), and its business
/// metrics as an embedded-metric-format line ([`business_metrics`]), which
/// no log-level setting removes. Nothing about the payer is logged.
fn log_published(p: &Pending) {
    let (amount_cents, token_action) = metric_fields(&p.record.detail);
    tracing::info!(
        event_id = %p.record.event_id,
        detail_type = %p.record.detail_type,
        amount_cents,
        token_action = token_action.as_deref(),
        "event published"
    );
    let metrics = business_metrics(&p.record.detail_type, amount_cents, token_action.as_deref());
    if !metrics.is_empty() {
        billing_config::metrics::emit(
            &metrics,
            &[
                ("eventId", json!(p.record.event_id)),
                ("detailType", json!(p.record.detail_type)),
            ],
        );
    }
}

/// The business metrics (namespace `SkyPanelBilling`) one published event
/// counts: `Captures` (credits or tokens purchased), `CreditsPurchasedCents`,
/// `Refunds`, `Reversals`, `Renewals`, `PastDue`, `NeedsReview` (a token
/// delivery or grant to review, or a token refund whose revoke goes to review).
pub fn business_metrics(
    detail_type: &str,
    amount_cents: Option<i64>,
    token_action: Option<&str>,
) -> Vec<Metric<'static>> {
    let mut metrics = Vec::new();
    match detail_type {
        "credits.purchased" => {
            metrics.push(Metric::count("Captures", 1));
            metrics.push(Metric {
                name: "CreditsPurchasedCents",
                value: amount_cents.unwrap_or(0),
                unit: "None",
            });
        }
        "tokens.purchased" => metrics.push(Metric::count("Captures", 1)),
        "refund.completed" => metrics.push(Metric::count("Refunds", 1)),
        "payment.reversed" => metrics.push(Metric::count("Reversals", 1)),
        "subscription.renewed" => metrics.push(Metric::count("Renewals", 1)),
        "subscription.past_due" => metrics.push(Metric::count("PastDue", 1)),
        _ => {}
    }
    if detail_type == "tokens.delivery_needs_review" || token_action == Some("review") {
        metrics.push(Metric::count("NeedsReview", 1));
    }
    metrics
}

/// A failed publish, as metrics: `EventsPublishRetried` (records handed back
/// to the stream) or `EventsDeadLettered` (a record that can never be published).
fn count_failure(name: &'static str, records: usize) {
    let value = i64::try_from(records).unwrap_or(i64::MAX);
    billing_config::metrics::emit(&[Metric::count(name, value)], &[]);
}

/// From an event's `detail` text: its `amount` in cents, its `tokenAction`.
pub fn metric_fields(detail: &str) -> (Option<i64>, Option<String>) {
    let detail: Value = serde_json::from_str(detail).unwrap_or(Value::Null);
    let amount_cents = detail
        .get("amount")
        .and_then(Value::as_str)
        .and_then(|a| billing_money::parse_usd_literal(a).ok())
        .map(|a| a.cents());
    let token_action = detail
        .get("tokenAction")
        .and_then(Value::as_str)
        .map(str::to_owned);
    (amount_cents, token_action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_fields_are_exact_cents_and_the_token_action() {
        let detail = json!({"amount": "12.50", "tokenAction": "review"}).to_string();
        assert_eq!(metric_fields(&detail), (Some(1250), Some("review".into())));
        let none = json!({"amount": 12.5}).to_string();
        assert_eq!(metric_fields(&none), (None, None));
        assert_eq!(metric_fields("not json"), (None, None));
    }

    #[test]
    fn business_metrics_per_event() {
        let names = |t, cents, action| -> Vec<(&'static str, i64)> {
            business_metrics(t, cents, action)
                .into_iter()
                .map(|m| (m.name, m.value))
                .collect()
        };
        assert_eq!(
            names("credits.purchased", Some(1250), None),
            [("Captures", 1), ("CreditsPurchasedCents", 1250)]
        );
        assert_eq!(
            names("tokens.purchased", Some(300), None),
            [("Captures", 1)]
        );
        assert_eq!(
            names("tokens.delivery_needs_review", None, None),
            [("NeedsReview", 1)]
        );
        assert_eq!(
            names("refund.completed", Some(250), Some("review")),
            [("Refunds", 1), ("NeedsReview", 1)]
        );
        assert!(names("credits.balance_low", None, None).is_empty());
    }

    #[test]
    fn only_throttling_and_internal_failures_are_retried() {
        assert!(is_transient("ThrottlingException"));
        assert!(is_transient("InternalFailure"));
        assert!(!is_transient("MalformedDetail"));
        assert!(!is_transient("InvalidArgument"));
    }
}
