//! What a request asks IAM for: the (action, resource) pairs AWS authorises
//! for one JSON-protocol call (`X-Amz-Target` + body).
//!
//! DynamoDB: the table's ARN, or the index's for a `Query`/`Scan` with
//! `IndexName`; every table of a `BatchGetItem`/`BatchWriteItem`; and for
//! `TransactWriteItems` each item as IAM authorises it: `Put` is
//! `dynamodb:PutItem`, `Update` `dynamodb:UpdateItem`, `Delete`
//! `dynamodb:DeleteItem`, `ConditionCheck` `dynamodb:ConditionCheckItem`
//! (there is no `dynamodb:TransactWriteItems` action); `TransactGetItems`
//! items are `dynamodb:GetItem`.
//!
//! Secrets Manager, EventBridge and SQS (moto locally): the action, on the
//! secret, the event bus (`default` when an entry names none), the queue.
//! SQS's batch calls are authorised as their single forms
//! (`SendMessageBatch` is `sqs:SendMessage`).

use super::{ACCOUNT, REGION};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    DynamoDb,
    SecretsManager,
    Events,
    Sqs,
}

impl Service {
    /// The service and operation of an `X-Amz-Target` header
    /// (`DynamoDB_20120810.GetItem`).
    pub fn of_target(target: &str) -> Option<(Service, &str)> {
        let (prefix, operation) = target.rsplit_once('.')?;
        let service = match prefix {
            "DynamoDB_20120810" => Service::DynamoDb,
            "secretsmanager" => Service::SecretsManager,
            "AWSEvents" => Service::Events,
            "AmazonSQS" => Service::Sqs,
            _ => return None,
        };
        Some((service, operation))
    }

    /// The `__type` of the service's `AccessDeniedException`.
    pub fn access_denied_type(self) -> &'static str {
        match self {
            Service::DynamoDb => "com.amazonaws.dynamodb.v20120810#AccessDeniedException",
            Service::SecretsManager | Service::Events => "AccessDeniedException",
            Service::Sqs => "com.amazon.coral.service#AccessDeniedException",
        }
    }
}

/// One action on one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// `dynamodb:PutItem`
    pub action: String,
    /// The resource's ARN.
    pub resource: String,
    /// For DynamoDB, the table named (it stands for the template's table).
    pub table: Option<String>,
}

fn table_access(action: &str, table: &str, index: Option<&str>) -> Access {
    let mut resource = format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}");
    if let Some(index) = index {
        resource.push_str("/index/");
        resource.push_str(index);
    }
    Access {
        action: format!("dynamodb:{action}"),
        resource,
        table: Some(table.to_owned()),
    }
}

/// The accesses one call asks for. An unreadable body asks for nothing the
/// caller can be refused (the service itself rejects it).
pub fn accesses(service: Service, operation: &str, body: &[u8]) -> Vec<Access> {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match service {
        Service::DynamoDb => dynamodb(operation, &body),
        Service::SecretsManager => {
            let id = body["SecretId"].as_str().unwrap_or("*");
            let resource = if id.starts_with("arn:") {
                id.to_owned()
            } else {
                format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{id}")
            };
            vec![Access {
                action: format!("secretsmanager:{operation}"),
                resource,
                table: None,
            }]
        }
        Service::Events => {
            let bus_arn = |name: &str| {
                if name.starts_with("arn:") {
                    name.to_owned()
                } else {
                    format!("arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{name}")
                }
            };
            let action = format!("events:{operation}");
            match body["Entries"].as_array() {
                Some(entries) if operation == "PutEvents" => entries
                    .iter()
                    .map(|e| Access {
                        action: action.clone(),
                        resource: bus_arn(e["EventBusName"].as_str().unwrap_or("default")),
                        table: None,
                    })
                    .collect(),
                _ => vec![Access {
                    action,
                    resource: bus_arn(
                        body["EventBusName"]
                            .as_str()
                            .or(body["Name"].as_str())
                            .unwrap_or("default"),
                    ),
                    table: None,
                }],
            }
        }
        Service::Sqs => {
            let action = operation
                .strip_suffix("Batch")
                .unwrap_or(operation)
                .to_owned();
            let queue = body["QueueUrl"]
                .as_str()
                .and_then(|url| url.trim_end_matches('/').rsplit('/').next())
                .or(body["QueueName"].as_str())
                .unwrap_or("*");
            vec![Access {
                action: format!("sqs:{action}"),
                resource: format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"),
                table: None,
            }]
        }
    }
}

fn dynamodb(operation: &str, body: &Value) -> Vec<Access> {
    let table = body["TableName"].as_str();
    match operation {
        "BatchGetItem" | "BatchWriteItem" => body["RequestItems"]
            .as_object()
            .into_iter()
            .flat_map(|items| items.keys())
            .map(|t| table_access(operation, t, None))
            .collect(),
        "TransactWriteItems" | "TransactGetItems" => body["TransactItems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| {
                let (kind, inner) = item.as_object()?.iter().next()?;
                let action = match kind.as_str() {
                    "Put" => "PutItem",
                    "Update" => "UpdateItem",
                    "Delete" => "DeleteItem",
                    "ConditionCheck" => "ConditionCheckItem",
                    "Get" => "GetItem",
                    other => other,
                };
                Some(table_access(action, inner["TableName"].as_str()?, None))
            })
            .collect(),
        _ => match table {
            Some(table) => vec![table_access(
                operation,
                table,
                body["IndexName"]
                    .as_str()
                    .filter(|_| matches!(operation, "Query" | "Scan")),
            )],
            None => vec![Access {
                action: format!("dynamodb:{operation}"),
                resource: "*".to_owned(),
                table: None,
            }],
        },
    }
}
