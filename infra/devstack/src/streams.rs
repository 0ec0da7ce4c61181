//! DynamoDB Local's stream, delivered as Lambda's event source mapping
//! delivers a table's stream: records in Lambda's JSON form, filtered like
//! the mapping's `FilterCriteria` (new `OUTBOX#` items), in batches per
//! shard; a batch is retried whole on a function error and from the reported
//! record on a partial batch failure (`batchItemFailures`), so nothing is
//! skipped. The local stack feeds the `events-publisher` function with it;
//! the tests feed the publisher's handler directly.

use aws_sdk_dynamodbstreams::types::{AttributeValue, ShardIteratorType};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;

#[derive(Debug, thiserror::Error)]
#[error("stream of {table}: {message}")]
pub struct StreamError {
    pub table: String,
    pub message: String,
}

/// Where a newly found shard is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// Everything the stream still holds (24 h), as the template's mapping does.
    TrimHorizon,
    /// Only what is written from now on.
    Latest,
}

#[derive(Default)]
struct Shard {
    /// `None` once the shard is closed and read to its end.
    iterator: Option<String>,
    /// Records read and not yet acknowledged by the function, in order.
    buffer: VecDeque<Value>,
    started: bool,
}

/// What one [`StreamPoller::pump`] did.
#[derive(Debug, Default)]
pub struct Pumped {
    /// Records the function acknowledged (published).
    pub delivered: Vec<Value>,
    /// Batches the function failed whole or in part (retried next time).
    pub failed_batches: usize,
}

pub struct StreamPoller {
    dynamo: aws_sdk_dynamodb::Client,
    streams: aws_sdk_dynamodbstreams::Client,
    table: String,
    start_at: StartAt,
    stream_arn: Option<String>,
    shards: BTreeMap<String, Shard>,
    /// Records per invocation (the mapping's `BatchSize`).
    pub batch_size: usize,
}

impl StreamPoller {
    pub fn new(
        dynamo: aws_sdk_dynamodb::Client,
        streams: aws_sdk_dynamodbstreams::Client,
        table: impl Into<String>,
        start_at: StartAt,
    ) -> StreamPoller {
        StreamPoller {
            dynamo,
            streams,
            table: table.into(),
            start_at,
            stream_arn: None,
            shards: BTreeMap::new(),
            batch_size: 100,
        }
    }

    /// A streams client for the DynamoDB endpoint `endpoint` (DynamoDB Local serves both APIs).
    pub fn streams_client(
        sdk: &aws_config::SdkConfig,
        endpoint: Option<&str>,
    ) -> aws_sdk_dynamodbstreams::Client {
        let mut builder = aws_sdk_dynamodbstreams::config::Builder::from(sdk);
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        aws_sdk_dynamodbstreams::Client::from_conf(builder.build())
    }

    fn err(&self, message: impl std::fmt::Display) -> StreamError {
        StreamError {
            table: self.table.clone(),
            message: message.to_string(),
        }
    }

    /// Reads what is new, then hands each shard's pending records, in order
    /// and in batches, to `invoke` (the function); its answer is Lambda's
    /// partial batch response. Returns what was delivered.
    pub async fn pump<F, Fut>(&mut self, mut invoke: F) -> Result<Pumped, StreamError>
    where
        F: FnMut(Value) -> Fut,
        Fut: Future<Output = Result<Value, String>>,
    {
        self.read().await?;
        let arn = self.stream_arn.clone().unwrap_or_default();
        let mut pumped = Pumped::default();
        for shard in self.shards.values_mut() {
            while !shard.buffer.is_empty() {
                let batch: Vec<Value> = shard
                    .buffer
                    .iter()
                    .take(self.batch_size.max(1))
                    .cloned()
                    .collect();
                let count = batch.len();
                let event = json!({"Records": batch.clone(), "eventSourceARN": arn});
                let failed_at = match invoke(event).await {
                    Ok(answer) => first_failure(&answer, &batch),
                    Err(error) => {
                        tracing::warn!(%error, "stream batch failed; retried whole");
                        Some(0)
                    }
                };
                let done = failed_at.unwrap_or(count).min(count);
                pumped.delivered.extend(shard.buffer.drain(..done));
                if failed_at.is_some() {
                    pumped.failed_batches += 1;
                    break; // this shard waits for the next pump, in order
                }
            }
        }
        Ok(pumped)
    }

    /// Pumps until nothing is pending and a read finds nothing new, or
    /// `rounds` pumps (tests: "everything written so far is published").
    pub async fn drain<F, Fut>(
        &mut self,
        rounds: usize,
        mut invoke: F,
    ) -> Result<Pumped, StreamError>
    where
        F: FnMut(Value) -> Fut,
        Fut: Future<Output = Result<Value, String>>,
    {
        let mut all = Pumped::default();
        for _ in 0..rounds.max(1) {
            let pumped = self.pump(&mut invoke).await?;
            let idle = pumped.delivered.is_empty() && pumped.failed_batches == 0;
            all.delivered.extend(pumped.delivered);
            all.failed_batches += pumped.failed_batches;
            if idle && self.pending() == 0 {
                break;
            }
        }
        Ok(all)
    }

    /// Pending records (read, not yet delivered).
    pub fn pending(&self) -> usize {
        self.shards.values().map(|s| s.buffer.len()).sum()
    }

    async fn read(&mut self) -> Result<(), StreamError> {
        let arn = match &self.stream_arn {
            Some(arn) => arn.clone(),
            None => {
                let out = self
                    .dynamo
                    .describe_table()
                    .table_name(&self.table)
                    .send()
                    .await
                    .map_err(|e| self.err(aws_sdk_dynamodb::error::DisplayErrorContext(&e)))?;
                let arn = out
                    .table()
                    .and_then(|t| t.latest_stream_arn())
                    .ok_or_else(|| self.err("the table has no stream"))?
                    .to_owned();
                self.stream_arn = Some(arn.clone());
                arn
            }
        };
        self.discover(&arn).await?;
        let ids: Vec<String> = self.shards.keys().cloned().collect();
        for id in ids {
            self.read_shard(&arn, &id).await?;
        }
        Ok(())
    }

    async fn discover(&mut self, arn: &str) -> Result<(), StreamError> {
        let mut start: Option<String> = None;
        for _ in 0..100 {
            let out = self
                .streams
                .describe_stream()
                .stream_arn(arn)
                .set_exclusive_start_shard_id(start.take())
                .send()
                .await
                .map_err(|e| self.err(aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e)))?;
            let Some(description) = out.stream_description() else {
                break;
            };
            for shard in description.shards() {
                if let Some(id) = shard.shard_id() {
                    self.shards.entry(id.to_owned()).or_default();
                }
            }
            match description.last_evaluated_shard_id() {
                Some(last) => start = Some(last.to_owned()),
                None => break,
            }
        }
        Ok(())
    }

    async fn read_shard(&mut self, arn: &str, id: &str) -> Result<(), StreamError> {
        let start_at = self.start_at;
        let Some(shard) = self.shards.get(id) else {
            return Ok(());
        };
        if !shard.buffer.is_empty() {
            return Ok(()); // deliver what is read first (in order)
        }
        let iterator = match (&shard.iterator, shard.started) {
            (Some(iterator), _) => iterator.clone(),
            (None, true) => return Ok(()), // closed and read to its end
            (None, false) => {
                let kind = match start_at {
                    StartAt::TrimHorizon => ShardIteratorType::TrimHorizon,
                    StartAt::Latest => ShardIteratorType::Latest,
                };
                let out = self
                    .streams
                    .get_shard_iterator()
                    .stream_arn(arn)
                    .shard_id(id)
                    .shard_iterator_type(kind)
                    .send()
                    .await
                    .map_err(|e| {
                        self.err(aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e))
                    })?;
                match out.shard_iterator() {
                    Some(iterator) => iterator.to_owned(),
                    None => return Ok(()),
                }
            }
        };
        let out = self
            .streams
            .get_records()
            .shard_iterator(&iterator)
            .limit(1000)
            .send()
            .await
            .map_err(|e| self.err(aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e)))?;
        let records: Vec<Value> = out
            .records()
            .iter()
            .map(|r| lambda_record(r, arn))
            .filter(is_outbox_insert)
            .collect();
        let next = out.next_shard_iterator().map(str::to_owned);
        if let Some(shard) = self.shards.get_mut(id) {
            shard.started = true;
            shard.iterator = next;
            shard.buffer.extend(records);
        }
        Ok(())
    }
}

/// The index in `batch` of the first record reported failed, if any. An
/// identifier that names no record of the batch fails it whole (as Lambda does).
fn first_failure(answer: &Value, batch: &[Value]) -> Option<usize> {
    let failures = answer.get("batchItemFailures")?.as_array()?;
    failures
        .iter()
        .map(|f| {
            let id = f.get("itemIdentifier").and_then(Value::as_str);
            batch
                .iter()
                .position(|r| {
                    id.is_some()
                        && r.pointer("/dynamodb/SequenceNumber")
                            .and_then(Value::as_str)
                            == id
                })
                .unwrap_or(0)
        })
        .min()
}

/// The template's `FilterCriteria`: `INSERT`s of `OUTBOX#` items.
pub fn is_outbox_insert(record: &Value) -> bool {
    record.get("eventName").and_then(Value::as_str) == Some("INSERT")
        && record
            .pointer("/dynamodb/Keys/pk/S")
            .and_then(Value::as_str)
            .is_some_and(|pk| pk.starts_with("OUTBOX#"))
}

/// A stream record in the JSON form Lambda gives a function.
pub fn lambda_record(record: &aws_sdk_dynamodbstreams::types::Record, arn: &str) -> Value {
    let mut dynamodb = Map::new();
    if let Some(data) = record.dynamodb() {
        if let Some(keys) = data.keys() {
            dynamodb.insert("Keys".into(), image(keys));
        }
        if let Some(new) = data.new_image() {
            dynamodb.insert("NewImage".into(), image(new));
        }
        if let Some(sequence) = data.sequence_number() {
            dynamodb.insert("SequenceNumber".into(), json!(sequence));
        }
        if let Some(size) = data.size_bytes() {
            dynamodb.insert("SizeBytes".into(), json!(size));
        }
        if let Some(view) = data.stream_view_type() {
            dynamodb.insert("StreamViewType".into(), json!(view.as_str()));
        }
        if let Some(at) = data.approximate_creation_date_time() {
            dynamodb.insert("ApproximateCreationDateTime".into(), json!(at.secs()));
        }
    }
    json!({
        "eventID": record.event_id(),
        "eventName": record.event_name().map(|n| n.as_str()),
        "eventVersion": record.event_version(),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.aws_region(),
        "dynamodb": dynamodb,
        "eventSourceARN": arn,
    })
}

fn image(map: &std::collections::HashMap<String, AttributeValue>) -> Value {
    Value::Object(map.iter().map(|(k, v)| (k.clone(), attr(v))).collect())
}

fn attr(value: &AttributeValue) -> Value {
    use base64::Engine;
    let b64 = |b: &aws_sdk_dynamodbstreams::primitives::Blob| {
        base64::engine::general_purpose::STANDARD.encode(b.as_ref())
    };
    match value {
        AttributeValue::S(s) => json!({"S": s}),
        AttributeValue::N(n) => json!({"N": n}),
        AttributeValue::Bool(b) => json!({"BOOL": b}),
        AttributeValue::Null(n) => json!({"NULL": n}),
        AttributeValue::B(b) => json!({"B": b64(b)}),
        AttributeValue::Ss(v) => json!({"SS": v}),
        AttributeValue::Ns(v) => json!({"NS": v}),
        AttributeValue::Bs(v) => json!({"BS": v.iter().map(b64).collect::<Vec<_>>()}),
        AttributeValue::M(m) => json!({"M": image(m)}),
        AttributeValue::L(l) => json!({"L": l.iter().map(attr).collect::<Vec<_>>()}),
        _ => Value::Null,
    }
}
