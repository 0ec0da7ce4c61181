//! Events read back through a real EventBridge API: `moto_server` (started
//! by infra/test.sh, `MOTO_ENDPOINT`) with a bus, a rule matching
//! `source: skypanel.billing` and an SQS queue as its target. The table's
//! stream is read with the devstack's poller (as Lambda's event source
//! mapping would) and handed to the real `events-publisher` handler.

use crate::TestTable;
use devstack::streams::{Pumped, StartAt, StreamPoller};
use serde_json::{Value, json};
use std::time::Duration;

/// The moto endpoint; infra/test.sh starts one and exports it.
pub fn moto_endpoint() -> String {
    billing_config::env_opt("MOTO_ENDPOINT").unwrap_or_else(|| {
        panic!(
            "MOTO_ENDPOINT is not set: run the tests with ./infra/test.sh (it starts moto_server), \
             or start `.venv/bin/moto_server -p PORT` and export MOTO_ENDPOINT=http://127.0.0.1:PORT"
        )
    })
}

/// Local IAM in front of moto: the same proxy as DynamoDB's
/// (`devstack::faultproxy`), checking each function's Secrets Manager,
/// EventBridge and SQS calls against its policy.
pub async fn moto_iam_proxy() -> devstack::faultproxy::FaultProxy {
    devstack::faultproxy::FaultProxy::spawn(([127, 0, 0, 1], 0).into(), moto_endpoint())
        .await
        .expect("local IAM proxy in front of moto")
}

/// The AWS configuration the function built as `binary` has locally: its
/// template logical id as access key id (local IAM).
pub async fn function_sdk(binary: &str) -> aws_config::SdkConfig {
    let sdk = billing_config::load_aws_config().await;
    let credentials = aws_sdk_dynamodb::config::Credentials::new(
        crate::api::function_logical_id(binary),
        "local",
        None,
        None,
        "local-iam",
    );
    sdk.to_builder()
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            credentials,
        ))
        .build()
}

/// One event as it arrived in the queue (EventBridge's envelope).
#[derive(Clone, Debug)]
pub struct Received {
    pub detail_type: String,
    pub source: String,
    pub detail: Value,
    /// The envelope's `time` (moto: the entry's `Time` in epoch seconds).
    pub time: Value,
}

impl Received {
    pub fn event_id(&self) -> &str {
        self.detail["eventId"].as_str().unwrap_or_default()
    }
}

pub struct EventsEnv {
    pub bus: String,
    pub queue_url: String,
    /// The publisher's dead-letter queue.
    pub dead_letter_url: String,
    /// The publisher function's client (through `iam`, as `EventsPublisherFunction`).
    pub publisher: events_publisher_fn::Deps,
    /// Local IAM in front of moto, which the publisher goes through.
    pub iam: devstack::faultproxy::FaultProxy,
    poller: StreamPoller,
    http: reqwest::Client,
    endpoint: String,
}

impl EventsEnv {
    /// A fresh bus → rule → queue on moto, and a poller on `table`'s stream.
    pub async fn new(table: &TestTable) -> EventsEnv {
        let endpoint = moto_endpoint();
        devstack::tables::enable_stream(&table.client, &table.name, "NEW_IMAGE")
            .await
            .expect("stream enabled");
        let sdk = billing_config::load_aws_config().await;
        let eventbridge = events_publisher_fn::client(&sdk, Some(endpoint.clone()));
        let iam = moto_iam_proxy().await;
        let publisher_client = events_publisher_fn::client(
            &function_sdk("events-publisher").await,
            Some(iam.endpoint()),
        );
        let id = uuid::Uuid::new_v4().simple().to_string();
        let bus = format!("bus-{id}");
        let http = reqwest::Client::new();
        let mut env = EventsEnv {
            bus: bus.clone(),
            queue_url: String::new(),
            dead_letter_url: String::new(),
            publisher: events_publisher_fn::Deps::new(publisher_client, &bus),
            iam,
            poller: StreamPoller::new(
                table.client.clone(),
                StreamPoller::streams_client(
                    &sdk,
                    billing_config::dynamo_endpoint_override().as_deref(),
                ),
                &table.name,
                StartAt::TrimHorizon,
            ),
            http,
            endpoint,
        };
        let queue = env
            .sqs("CreateQueue", json!({"QueueName": format!("q-{id}")}))
            .await;
        env.queue_url = queue["QueueUrl"].as_str().expect("queue url").to_owned();
        let dlq = env
            .sqs("CreateQueue", json!({"QueueName": format!("dlq-{id}")}))
            .await;
        env.dead_letter_url = dlq["QueueUrl"].as_str().expect("dlq url").to_owned();
        let dead_letter = env.dead_letter_at(&env.iam.endpoint()).await;
        env.publisher = events_publisher_fn::Deps::new(env.publisher.client.clone(), &bus)
            .with_dead_letter(Some(dead_letter));
        let attrs = env
            .sqs(
                "GetQueueAttributes",
                json!({"QueueUrl": env.queue_url, "AttributeNames": ["QueueArn"]}),
            )
            .await;
        let queue_arn = attrs["Attributes"]["QueueArn"]
            .as_str()
            .expect("queue arn")
            .to_owned();
        eventbridge
            .create_event_bus()
            .name(&bus)
            .send()
            .await
            .expect("create bus");
        eventbridge
            .put_rule()
            .name(format!("all-{id}"))
            .event_bus_name(&bus)
            .event_pattern(json!({"source": [billing::events::SOURCE]}).to_string())
            .send()
            .await
            .expect("put rule");
        eventbridge
            .put_targets()
            .rule(format!("all-{id}"))
            .event_bus_name(&bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(queue_arn)
                    .build()
                    .expect("target"),
            )
            .send()
            .await
            .expect("put targets");
        env
    }

    /// A publisher pointed at `endpoint` instead (e.g. one that is down).
    pub async fn publisher_at(&self, endpoint: &str) -> events_publisher_fn::Deps {
        let sdk = function_sdk("events-publisher").await;
        events_publisher_fn::Deps::new(
            events_publisher_fn::client(&sdk, Some(endpoint.to_owned())),
            &self.bus,
        )
    }

    /// The publisher's dead-letter queue through `endpoint` (as `EventsPublisherFunction`).
    pub async fn dead_letter_at(&self, endpoint: &str) -> events_publisher_fn::DeadLetter {
        let sdk = function_sdk("events-publisher").await;
        events_publisher_fn::DeadLetter {
            client: events_publisher_fn::sqs_client(&sdk, Some(endpoint.to_owned())),
            queue_url: self.dead_letter_url.clone(),
        }
    }

    /// A publisher on this bus with this dead-letter queue, its calls through local IAM.
    pub fn working_publisher(&self) -> events_publisher_fn::Deps {
        events_publisher_fn::Deps::new(self.publisher.client.clone(), &self.bus)
            .with_dead_letter(self.publisher.dead_letter.clone())
    }

    /// Delivers what the stream holds to `publisher` until it is all acknowledged
    /// (or it keeps failing).
    pub async fn publish_with(&mut self, publisher: &events_publisher_fn::Deps) -> Pumped {
        self.poller
            .drain(5, |batch| async move {
                Ok::<Value, String>(events_publisher_fn::publish(publisher, &batch).await)
            })
            .await
            .expect("stream readable")
    }

    /// Everything written so far, published with the working publisher.
    pub async fn publish(&mut self) -> Pumped {
        let publisher = self.working_publisher();
        self.publish_with(&publisher).await
    }

    /// Records read from the stream and not yet published.
    pub fn pending(&self) -> usize {
        self.poller.pending()
    }

    /// Every event in the queue now (received and deleted).
    pub async fn received(&self) -> Vec<Received> {
        self.drain(&self.queue_url)
            .await
            .into_iter()
            .map(|body| Received {
                detail_type: body["detail-type"].as_str().unwrap_or_default().to_owned(),
                source: body["source"].as_str().unwrap_or_default().to_owned(),
                detail: body["detail"].clone(),
                time: body["time"].clone(),
            })
            .collect()
    }

    /// Every message in the dead-letter queue now (received and deleted).
    pub async fn dead_lettered(&self) -> Vec<Value> {
        self.drain(&self.dead_letter_url).await
    }

    /// The JSON bodies of every message in `queue_url` (received and deleted).
    async fn drain(&self, queue_url: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut empty_polls = 0;
        while empty_polls < 2 {
            let out = self
                .sqs(
                    "ReceiveMessage",
                    json!({"QueueUrl": queue_url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 0}),
                )
                .await;
            let messages = out["Messages"].as_array().cloned().unwrap_or_default();
            if messages.is_empty() {
                empty_polls += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            for message in messages {
                let body: Value = serde_json::from_str(message["Body"].as_str().unwrap_or("{}"))
                    .expect("message JSON");
                all.push(body);
                self.sqs(
                    "DeleteMessage",
                    json!({"QueueUrl": queue_url, "ReceiptHandle": message["ReceiptHandle"]}),
                )
                .await;
            }
        }
        all
    }

    /// One SQS call in its JSON protocol (moto checks no signature).
    async fn sqs(&self, action: &str, body: Value) -> Value {
        let response = self
            .http
            .post(&self.endpoint)
            .header("x-amz-target", format!("AmazonSQS.{action}"))
            .header("content-type", "application/x-amz-json-1.0")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("SQS {action}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "SQS {action}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

/// The `detail` of every outbox item of `detail_type` in `table` (what the
/// publisher would publish), read straight from the table.
pub async fn outbox_details(table: &TestTable, detail_type: &str) -> Vec<Value> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let mut details = Vec::new();
    let mut start = None;
    loop {
        let out = table
            .client
            .scan()
            .table_name(&table.name)
            .filter_expression("begins_with(pk, :outbox) AND detailType = :type")
            .expression_attribute_values(":outbox", AttributeValue::S("OUTBOX#".into()))
            .expression_attribute_values(":type", AttributeValue::S(detail_type.into()))
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan outbox");
        for item in out.items() {
            if let Some(AttributeValue::S(detail)) = item.get("detail") {
                details.push(serde_json::from_str(detail).expect("detail JSON"));
            }
        }
        start = out.last_evaluated_key().cloned();
        if start.is_none() {
            return details;
        }
    }
}
