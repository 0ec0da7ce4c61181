//! Reads the parts of `template.yaml` the local stack mirrors: DynamoDB
//! tables and HttpApi routes. CloudFormation tags (`!Ref`, `!If`, ...) are
//! skipped where the local stack has its own value (names, protection flags).

use serde_norway::Value;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read template: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot parse template: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("template: {0}")]
    Shape(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDef {
    pub attribute: String,
    /// `HASH` or `RANGE`.
    pub key_type: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexDef {
    pub name: String,
    pub keys: Vec<KeyDef>,
    pub projection: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDef {
    pub logical_id: String,
    /// (name, `S`/`N`/`B`)
    pub attributes: Vec<(String, String)>,
    pub keys: Vec<KeyDef>,
    pub indexes: Vec<IndexDef>,
    pub ttl_attribute: Option<String>,
    /// `StreamSpecification.StreamViewType` (the outbox publisher reads the stream).
    pub stream_view: Option<String>,
}

/// One API route: `GET /api/billing/balance` served by the binary `balance`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteDef {
    pub method: String,
    /// With API Gateway placeholders: `/api/admin/users/{id}/custom-credits`.
    pub path: String,
    /// The cargo binary (= cargo-lambda function name).
    pub function: String,
}

pub struct Template {
    root: Value,
}

impl Template {
    pub fn load(path: &Path) -> Result<Template, TemplateError> {
        let text = std::fs::read_to_string(path)?;
        Template::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        Ok(Template {
            root: serde_norway::from_str(text)?,
        })
    }

    pub(crate) fn resources(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.root
            .get("Resources")
            .and_then(Value::as_mapping)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter_map(|(k, v)| Some((k.as_str()?, v)))
    }

    pub fn tables(&self) -> Result<Vec<TableDef>, TemplateError> {
        self.resources()
            .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some("AWS::DynamoDB::Table"))
            .map(|(id, r)| table_def(id, r))
            .collect()
    }

    pub fn table(&self, logical_id: &str) -> Result<TableDef, TemplateError> {
        self.tables()?
            .into_iter()
            .find(|t| t.logical_id == logical_id)
            .ok_or_else(|| TemplateError::Shape(format!("no table {logical_id}")))
    }

    /// Every `HttpApi` event of every function, plus function URLs, which the
    /// local gateway serves at `/webhooks/<name>` (see `LocalPath` metadata).
    pub fn routes(&self) -> Vec<RouteDef> {
        let mut routes = Vec::new();
        for (_, resource) in self.resources() {
            if resource.get("Type").and_then(Value::as_str) != Some("AWS::Serverless::Function") {
                continue;
            }
            let Some(function) = resource
                .get("Metadata")
                .and_then(|m| m.get("BuildProperties"))
                .and_then(|b| b.get("Binary"))
                .and_then(Value::as_str)
            else {
                continue;
            };
            let properties = resource.get("Properties");
            if let Some(events) = properties
                .and_then(|p| p.get("Events"))
                .and_then(Value::as_mapping)
            {
                for event in events.values() {
                    if event.get("Type").and_then(Value::as_str) != Some("HttpApi") {
                        continue;
                    }
                    let props = event.get("Properties");
                    let path = props.and_then(|p| p.get("Path")).and_then(Value::as_str);
                    let method = props.and_then(|p| p.get("Method")).and_then(Value::as_str);
                    if let (Some(path), Some(method)) = (path, method) {
                        routes.push(RouteDef {
                            method: method.to_ascii_uppercase(),
                            path: path.to_owned(),
                            function: function.to_owned(),
                        });
                    }
                }
            }
            // A function URL has no path of its own; the local gateway serves it
            // at the path named in the function's Metadata (LocalPath).
            if properties
                .and_then(|p| p.get("FunctionUrlConfig"))
                .is_some()
                && let Some(local) = resource
                    .get("Metadata")
                    .and_then(|m| m.get("LocalPath"))
                    .and_then(Value::as_str)
            {
                routes.push(RouteDef {
                    method: "POST".into(),
                    path: local.to_owned(),
                    function: function.to_owned(),
                });
            }
        }
        routes
    }

    /// Cargo binaries of all functions (for building and serving them locally).
    pub fn functions(&self) -> Vec<String> {
        self.resources()
            .filter_map(|(_, r)| {
                r.get("Metadata")?
                    .get("BuildProperties")?
                    .get("Binary")?
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    }
}

fn table_def(logical_id: &str, resource: &Value) -> Result<TableDef, TemplateError> {
    let shape = |what: &str| TemplateError::Shape(format!("{logical_id}: {what}"));
    let props = resource
        .get("Properties")
        .ok_or_else(|| shape("no Properties"))?;
    let attributes = props
        .get("AttributeDefinitions")
        .and_then(Value::as_sequence)
        .ok_or_else(|| shape("no AttributeDefinitions"))?
        .iter()
        .map(|a| {
            let name = a.get("AttributeName").and_then(Value::as_str);
            let kind = a.get("AttributeType").and_then(Value::as_str);
            match (name, kind) {
                (Some(n), Some(k)) => Ok((n.to_owned(), k.to_owned())),
                _ => Err(shape("bad attribute definition")),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let keys = key_schema(props.get("KeySchema")).ok_or_else(|| shape("bad KeySchema"))?;
    let indexes = match props
        .get("GlobalSecondaryIndexes")
        .and_then(Value::as_sequence)
    {
        None => Vec::new(),
        Some(list) => list
            .iter()
            .map(|index| {
                Some(IndexDef {
                    name: index.get("IndexName")?.as_str()?.to_owned(),
                    keys: key_schema(index.get("KeySchema"))?,
                    projection: index
                        .get("Projection")
                        .and_then(|p| p.get("ProjectionType"))
                        .and_then(Value::as_str)
                        .unwrap_or("ALL")
                        .to_owned(),
                })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| shape("bad GlobalSecondaryIndexes"))?,
    };
    let ttl_attribute = props
        .get("TimeToLiveSpecification")
        .filter(|t| t.get("Enabled").and_then(Value::as_bool) == Some(true))
        .and_then(|t| t.get("AttributeName"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let stream_view = props
        .get("StreamSpecification")
        .and_then(|s| s.get("StreamViewType"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(TableDef {
        logical_id: logical_id.to_owned(),
        attributes,
        keys,
        indexes,
        ttl_attribute,
        stream_view,
    })
}

fn key_schema(value: Option<&Value>) -> Option<Vec<KeyDef>> {
    value?
        .as_sequence()?
        .iter()
        .map(|k| {
            Some(KeyDef {
                attribute: k.get("AttributeName")?.as_str()?.to_owned(),
                key_type: k.get("KeyType")?.as_str()?.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_projects_template() {
        let template = Template::load(&crate::template_path()).unwrap();
        let table = template.table("BillingTable").unwrap();
        assert_eq!(table.keys[0].attribute, "pk");
        assert_eq!(table.keys[1].attribute, "sk");
        assert_eq!(table.indexes[0].name, "gsi1");
        assert_eq!(table.ttl_attribute.as_deref(), Some("expiresAt"));
        assert_eq!(table.stream_view.as_deref(), Some("NEW_IMAGE"));
        let routes = template.routes();
        assert!(routes.contains(&RouteDef {
            method: "GET".into(),
            path: "/api/billing/balance".into(),
            function: "balance".into(),
        }));
    }

    /// CloudFormation's short-form tags (`!Ref`, `!Sub`, `!If`, `!GetAtt`)
    /// parse as tagged values and never hide the plain fields beside them.
    #[test]
    fn reads_through_cloudformation_tags() {
        let template = Template::parse(
            r#"
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
Resources:
  Orders:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub "${AWS::StackName}-orders"
      DeletionProtectionEnabled: !If [IsProd, true, false]
      AttributeDefinitions:
        - { AttributeName: pk, AttributeType: S }
      KeySchema:
        - { AttributeName: pk, KeyType: HASH }
  Fn:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties: { Binary: orders }
    Properties:
      Role: !GetAtt FnRole.Arn
      Environment:
        Variables: { TABLE: !Ref Orders }
      Events:
        Get:
          Type: HttpApi
          Properties: { Path: /orders, Method: get, ApiId: !Ref Api }
"#,
        )
        .unwrap();
        let table = template.table("Orders").unwrap();
        assert_eq!(table.attributes, [("pk".to_owned(), "S".to_owned())]);
        assert_eq!(template.functions(), ["orders"]);
        assert_eq!(
            template.routes(),
            [RouteDef {
                method: "GET".into(),
                path: "/orders".into(),
                function: "orders".into(),
            }]
        );
    }
}
