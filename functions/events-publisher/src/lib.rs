//! `events-publisher`: the outbox's second half. Invoked by the table's
//! DynamoDB Stream (event source mapping filtered to `INSERT`s of `OUTBOX#`
//! items; locally the devstack polls the stream and invokes it the same way),
//! it publishes each outbox item to EventBridge with `PutEvents`, 10 entries
//! per call, in stream order.
//!
//! At the first failure (a failed call, or an entry EventBridge refused) it
//! stops and reports that record in `batchItemFailures`: the stream retries
//! from there (`ReportBatchItemFailures`), so an event is delayed, never
//! lost; after the mapping's retries the batch goes to the dead-letter queue.
//! A record published twice (a retry after a lost answer) carries the same
//! `eventId`: consumers deduplicate on it.

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use billing::events::OutboxRecord;
use lambda_runtime::{Error, LambdaEvent};
use serde_json::{Value, json};

/// `PutEvents` takes at most 10 entries.
pub const MAX_ENTRIES_PER_CALL: usize = 10;

pub struct Deps {
    pub client: aws_sdk_eventbridge::Client,
    /// `EVENT_BUS_NAME`: the bus the deployment names.
    pub bus: String,
}

impl Deps {
    /// `EVENT_BUS_NAME` (required), `EVENTBRIDGE_ENDPOINT` (local/tests: an
    /// EventBridge API such as moto's).
    pub async fn from_env() -> Result<Deps, Error> {
        let bus = billing_config::env_opt("EVENT_BUS_NAME")
            .ok_or_else(|| Error::from("EVENT_BUS_NAME is not set"))?;
        let sdk = billing_config::load_aws_config().await;
        Ok(Deps::new(
            client(&sdk, billing_config::env_opt("EVENTBRIDGE_ENDPOINT")),
            bus,
        ))
    }

    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Deps {
        Deps {
            client,
            bus: bus.into(),
        }
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

/// One stream record to publish.
struct Pending {
    sequence: String,
    record: OutboxRecord,
}

pub async fn handle(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, Error> {
    Ok(publish(deps, &event.payload).await)
}

/// Publishes a DynamoDB Stream batch; answers Lambda's partial batch
/// response (`{"batchItemFailures": [{"itemIdentifier": <sequence number>}]}`).
#[tracing::instrument(skip_all, fields(records))]
pub async fn publish(deps: &Deps, batch: &Value) -> Value {
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
                record: outbox,
            }),
            None => {
                tracing::warn!(sequence, "stream record is not an outbox item; skipped")
            }
        }
    }
    let mut published = 0usize;
    for chunk in pending.chunks(MAX_ENTRIES_PER_CALL) {
        if let Some(failed) = put_chunk(deps, chunk).await {
            tracing::error!(
                published,
                failed_sequence = %failed,
                "publishing stopped; the stream retries from the failed record"
            );
            return json!({"batchItemFailures": [{"itemIdentifier": failed}]});
        }
        published += chunk.len();
    }
    tracing::info!(published, "events published");
    json!({"batchItemFailures": []})
}

/// One `PutEvents`; the sequence number of the first record not published, if any.
async fn put_chunk(deps: &Deps, chunk: &[Pending]) -> Option<String> {
    let entries: Vec<PutEventsRequestEntry> = chunk
        .iter()
        .map(|p| {
            PutEventsRequestEntry::builder()
                .event_bus_name(&deps.bus)
                .source(&p.record.source)
                .detail_type(&p.record.detail_type)
                .detail(&p.record.detail)
                .build()
        })
        .collect();
    let first = chunk.first().map(|p| p.sequence.clone());
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
            return first;
        }
    };
    if out.failed_entry_count() == 0 {
        chunk.iter().for_each(log_published);
        return None;
    }
    // Entries answer in request order; the first refused one is where the stream resumes.
    for (p, entry) in chunk.iter().zip(out.entries()) {
        if entry.error_code().is_some() {
            tracing::error!(
                event_id = %p.record.event_id,
                code = entry.error_code().unwrap_or_default(),
                message = entry.error_message().unwrap_or_default(),
                "event refused by EventBridge"
            );
            return Some(p.sequence.clone());
        }
        log_published(p);
    }
    first
}

/// One line per published event: the template's business metrics are
/// metric filters on these lines (`detail_type`; `amount_cents`, the
/// detail's `amount` in integer cents; `token_action` of a token refund).
/// Nothing about the payer is logged.
fn log_published(p: &Pending) {
    let (amount_cents, token_action) = metric_fields(&p.record.detail);
    tracing::info!(
        event_id = %p.record.event_id,
        detail_type = %p.record.detail_type,
        amount_cents,
        token_action = token_action.as_deref(),
        "event published"
    );
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
}
