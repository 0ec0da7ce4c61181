use super::*;
use serde_json::json;

const TEMPLATE: &str = r#"
Parameters:
  JwtSecretArn: { Type: String }
  EventBusName: { Type: String, Default: "" }
Conditions:
  CreateEventBus: !Equals [!Ref EventBusName, ""]
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties: {}
  Queue:
    Type: AWS::SQS::Queue
  Bus:
    Type: AWS::Events::EventBus
  ReaderFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties: { Binary: reader }
    Properties:
      Policies:
        - Statement:
            - Effect: Allow
              Action: [dynamodb:GetItem, dynamodb:UpdateItem]
              Resource: !GetAtt Table.Arn
            - Effect: Allow
              Action: [dynamodb:Query]
              Resource: !Sub "${Table.Arn}/index/gsi1"
            - Effect: Allow
              Action: secretsmanager:GetSecretValue
              Resource: [!Ref JwtSecretArn]
  PublisherFunction:
    Type: AWS::Serverless::Function
    Properties:
      Policies:
        - Statement:
            - Effect: Allow
              Action: [events:PutEvents]
              Resource: !If
                - CreateEventBus
                - !GetAtt Bus.Arn
                - !Sub "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBusName}"
            - Effect: Allow
              Action: [sqs:SendMessage]
              Resource: !GetAtt Queue.Arn
            - Effect: Allow
              Action: ["dynamodb:*"]
              Resource: "*"
            - Effect: Deny
              Action: [dynamodb:DeleteItem]
              Resource: !GetAtt Table.Arn
"#;

fn policies() -> Policies {
    Policies::from_template(&Template::parse(TEMPLATE).unwrap()).unwrap()
}

fn dynamo(operation: &str, body: serde_json::Value) -> Vec<Access> {
    accesses(Service::DynamoDb, operation, body.to_string().as_bytes())
}

#[test]
fn a_function_is_named_by_its_logical_id_or_its_binary() {
    let p = policies();
    assert_eq!(p.function_of("ReaderFunction"), Some("ReaderFunction"));
    assert_eq!(p.function_of("reader"), Some("ReaderFunction"));
    assert_eq!(p.function_of("local"), None);
    assert_eq!(p.logical_id("reader"), Some("ReaderFunction"));
}

#[test]
fn table_actions_are_allowed_only_as_listed() {
    let p = policies();
    let get = dynamo("GetItem", json!({"TableName": "t-1", "Key": {}}));
    assert_eq!(
        get[0].resource,
        "arn:aws:dynamodb:us-east-1:123456789012:table/t-1"
    );
    assert!(p.check("ReaderFunction", &get).is_ok());
    let put = dynamo("PutItem", json!({"TableName": "t-1", "Item": {}}));
    let denied = p.check("ReaderFunction", &put).unwrap_err();
    assert_eq!(denied.action, "dynamodb:PutItem");
    assert!(
        denied
            .message()
            .contains("is not authorized to perform: dynamodb:PutItem")
    );
}

#[test]
fn an_index_grant_is_not_a_table_grant_and_the_reverse() {
    let p = policies();
    let on_index = dynamo("Query", json!({"TableName": "t", "IndexName": "gsi1"}));
    assert_eq!(
        on_index[0].resource,
        "arn:aws:dynamodb:us-east-1:123456789012:table/t/index/gsi1"
    );
    assert!(p.check("ReaderFunction", &on_index).is_ok());
    let other_index = dynamo("Query", json!({"TableName": "t", "IndexName": "gsi2"}));
    assert!(p.check("ReaderFunction", &other_index).is_err());
    let on_table = dynamo("Query", json!({"TableName": "t"}));
    assert!(p.check("ReaderFunction", &on_table).is_err());
}

#[test]
fn each_transaction_item_is_authorised_as_its_own_action() {
    let p = policies();
    let items = dynamo(
        "TransactWriteItems",
        json!({"TransactItems": [
            {"Update": {"TableName": "t", "Key": {}}},
            {"Put": {"TableName": "t", "Item": {}}},
            {"ConditionCheck": {"TableName": "t", "Key": {}}},
            {"Delete": {"TableName": "t", "Key": {}}},
        ]}),
    );
    let actions: Vec<&str> = items.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "dynamodb:UpdateItem",
            "dynamodb:PutItem",
            "dynamodb:ConditionCheckItem",
            "dynamodb:DeleteItem"
        ]
    );
    assert_eq!(p.check("ReaderFunction", &items[..1]), Ok(()));
    assert_eq!(
        p.check("ReaderFunction", &items).unwrap_err().action,
        "dynamodb:PutItem"
    );
    let gets = dynamo(
        "TransactGetItems",
        json!({"TransactItems": [{"Get": {"TableName": "t", "Key": {}}}]}),
    );
    assert_eq!(gets[0].action, "dynamodb:GetItem");
    let batch = dynamo("BatchGetItem", json!({"RequestItems": {"t": {"Keys": []}}}));
    assert_eq!(batch[0].action, "dynamodb:BatchGetItem");
    assert!(p.check("ReaderFunction", &batch).is_err());
}

#[test]
fn wildcards_match_and_an_explicit_deny_wins() {
    let p = policies();
    let scan = dynamo("Scan", json!({"TableName": "t"}));
    assert!(p.check("PublisherFunction", &scan).is_ok());
    let delete = dynamo("DeleteItem", json!({"TableName": "t"}));
    assert!(p.check("PublisherFunction", &delete).is_err());
    assert!(wildcard("a*c?e", "abbbcde"));
    assert!(!wildcard("a*c?e", "abbbce"));
    assert!(wildcard("arn:*", "arn:x/y/z"));
}

#[test]
fn other_services_check_the_action() {
    let p = policies();
    let secret = accesses(
        Service::SecretsManager,
        "GetSecretValue",
        br#"{"SecretId": "arn:aws:secretsmanager:us-east-1:123456789012:secret:jwt-AbCdEf"}"#,
    );
    assert!(p.check("ReaderFunction", &secret).is_ok());
    assert!(p.check("PublisherFunction", &secret).is_err());
    let events = accesses(
        Service::Events,
        "PutEvents",
        br#"{"Entries": [{"EventBusName": "billing-local", "Detail": "{}"}]}"#,
    );
    assert!(p.check("PublisherFunction", &events).is_ok());
    assert!(p.check("ReaderFunction", &events).is_err());
    let batch = accesses(
        Service::Sqs,
        "SendMessageBatch",
        br#"{"QueueUrl": "http://127.0.0.1:8766/123456789012/q", "Entries": []}"#,
    );
    assert_eq!(batch[0].action, "sqs:SendMessage");
    assert!(p.check("PublisherFunction", &batch).is_ok());
    let receive = accesses(Service::Sqs, "ReceiveMessage", br#"{"QueueUrl": "q"}"#);
    assert!(p.check("PublisherFunction", &receive).is_err());
}

#[test]
fn a_sam_policy_template_is_refused_not_ignored() {
    let template = Template::parse(
        r#"
Resources:
  Table: { Type: AWS::DynamoDB::Table }
  F:
    Type: AWS::Serverless::Function
    Properties:
      Policies:
        - DynamoDBCrudPolicy: { TableName: !Ref Table }
"#,
    )
    .unwrap();
    assert!(Policies::from_template(&template).is_err());
}

/// Every function of the project's template has policies local IAM can read.
#[test]
fn reads_the_projects_template() {
    let p = Policies::load().unwrap();
    assert_eq!(p.function_of("balance"), Some("BalanceFunction"));
    // What a function signs with locally (DynamoDB Local 2.x refuses a `-`
    // in an access key id: UnrecognizedClientException).
    assert_eq!(
        p.function_of(&super::local_access_key("renewal-cron")),
        Some("RenewalCronFunction")
    );
    assert_eq!(
        super::local_access_key("renewal-cron"),
        billing_config::local_access_key("renewal-cron")
    );
    let read = dynamo("GetItem", json!({"TableName": "billing"}));
    assert!(p.check("BalanceFunction", &read).is_ok());
    let write = dynamo("PutItem", json!({"TableName": "billing"}));
    assert!(p.check("BalanceFunction", &write).is_err());
}

/// Grants no code path of the function uses (issue 26): the reconciliation
/// job lists no runs (a table Query), the renewal job renews nothing itself
/// in AWS (the workers' BatchGetItem).
#[test]
fn the_projects_jobs_have_no_over_grants() {
    let p = Policies::load().unwrap();
    let table_query = dynamo("Query", json!({"TableName": "billing"}));
    assert!(p.check("ReconcileCronFunction", &table_query).is_err());
    let settled = dynamo(
        "Query",
        json!({"TableName": "billing", "IndexName": "gsi2"}),
    );
    assert!(p.check("ReconcileCronFunction", &settled).is_ok());
    let batch = dynamo("BatchGetItem", json!({"RequestItems": {"billing": {}}}));
    assert!(p.check("RenewalCronFunction", &batch).is_err());
    assert!(p.check("RenewalWorkerFunction", &batch).is_ok());
}
