//! Local IAM: each function's policy from `template.yaml`, evaluated as AWS
//! evaluates an identity policy, so that a call a function's role would not
//! allow in AWS fails locally too (`AccessDeniedException`).
//!
//! Who is calling: locally every function signs its requests with its own
//! credentials, the access key id being its template logical id
//! (`BalanceFunction`); the SigV4 `Authorization` header names it
//! (`Credential=BalanceFunction/20260101/us-east-1/dynamodb/aws4_request`).
//! The function's binary name (`balance`, the name the cargo-lambda emulator
//! gives it) names it too. Any other access key (a test's own setup, the
//! devstack's table creation) is not a function's and passes unchecked.
//!
//! What is evaluated: the inline `Statement` lists of each function's
//! `Policies` (SAM policy templates such as `DynamoDBCrudPolicy` are refused
//! when the policies are read, so a new form cannot pass unchecked). An
//! explicit `Deny` wins over any `Allow`; without an `Allow` the call is
//! refused. Actions and resources match with IAM's wildcards (`*`, `?`).
//!
//! Resources are resolved as CloudFormation would, in a fixed account
//! (`123456789012`, `us-east-1`): `!GetAtt BillingTable.Arn` is the table's
//! ARN and `!Sub "${BillingTable.Arn}/index/gsi1"` its index's. Locally the
//! table's name differs per run and per test, so the table a request names
//! stands for the template's table (the template has one): its name is not
//! checked, whether the request reaches the table or one of its indexes is.
//! `!If` takes both branches. Other resources (queues, secrets, the event
//! bus, `!Ref` of a parameter) are locally named by the test or the stack,
//! not by the template: they resolve to any resource of their service, so
//! for them the action is what is checked.
//!
//! What each request asks for, per service: [`requests`].

pub mod requests;

use crate::template::{Template, TemplateError};
use serde_norway::Value;
use std::collections::BTreeMap;

pub use requests::{Access, Service, accesses};

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";

/// Stands, in a resolved resource pattern, for the name of the table a
/// request names (see the module documentation).
const TABLE: &str = "\u{1}table\u{1}";

/// Whether local IAM is enforced: `LOCAL_IAM=off` turns it off (default on).
pub fn enforced_by_env() -> bool {
    !matches!(
        std::env::var("LOCAL_IAM").ok().as_deref().map(str::trim),
        Some("off" | "OFF" | "0" | "false")
    )
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub allow: bool,
    pub actions: Vec<String>,
    /// Resolved ARN patterns (IAM wildcards).
    pub resources: Vec<String>,
}

/// Every function's statements, by logical id.
#[derive(Clone, Debug, Default)]
pub struct Policies {
    functions: BTreeMap<String, Vec<Statement>>,
    /// Binary name → logical id.
    binaries: BTreeMap<String, String>,
}

/// One refusal, as AWS words it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    pub function: String,
    pub action: String,
    pub resource: String,
}

impl Denied {
    pub fn message(&self) -> String {
        format!(
            "User: arn:aws:sts::{ACCOUNT}:assumed-role/{f}Role/{f} is not authorized to perform: \
             {a} on resource: {r} because no identity-based policy allows the {a} action",
            f = self.function,
            a = self.action,
            r = self.resource,
        )
    }
}

impl Policies {
    /// The policies of `template.yaml` (`devstack::template_path()`).
    pub fn load() -> Result<Policies, TemplateError> {
        Policies::from_template(&Template::load(&crate::template_path())?)
    }

    pub fn from_template(template: &Template) -> Result<Policies, TemplateError> {
        let mut policies = Policies::default();
        for (id, resource) in template.resources() {
            if resource.get("Type").and_then(Value::as_str) != Some("AWS::Serverless::Function") {
                continue;
            }
            let mut statements = Vec::new();
            let listed = resource
                .get("Properties")
                .and_then(|p| p.get("Policies"))
                .map(|p| match p {
                    Value::Sequence(items) => items.clone(),
                    other => vec![other.clone()],
                })
                .unwrap_or_default();
            for policy in &listed {
                let Some(list) = policy.get("Statement") else {
                    return Err(TemplateError::Shape(format!(
                        "{id}: policy {policy:?} is not an inline Statement list \
                         (local IAM does not evaluate SAM policy templates)"
                    )));
                };
                for statement in as_list(list) {
                    statements.push(statement_of(template, id, statement)?);
                }
            }
            if let Some(binary) = resource
                .get("Metadata")
                .and_then(|m| m.get("BuildProperties"))
                .and_then(|b| b.get("Binary"))
                .and_then(Value::as_str)
            {
                policies.binaries.insert(binary.to_owned(), id.to_owned());
                // The access key a function signs with locally: DynamoDB
                // Local 2.x accepts only letters and digits in it.
                policies
                    .binaries
                    .insert(local_access_key(binary), id.to_owned());
            }
            policies.functions.insert(id.to_owned(), statements);
        }
        Ok(policies)
    }

    /// The function an access key id names (its logical id or its binary
    /// name), or None for any other caller.
    pub fn function_of(&self, access_key: &str) -> Option<&str> {
        if let Some((id, _)) = self.functions.get_key_value(access_key) {
            return Some(id);
        }
        self.binaries.get(access_key).map(String::as_str)
    }

    /// The logical id of the function built as `binary`.
    pub fn logical_id(&self, binary: &str) -> Option<&str> {
        self.binaries.get(binary).map(String::as_str)
    }

    pub fn statements(&self, function: &str) -> &[Statement] {
        self.functions.get(function).map_or(&[], Vec::as_slice)
    }

    /// Replaces one function's statements (tests: a narrowed policy).
    pub fn set_statements(&mut self, function: &str, statements: Vec<Statement>) {
        self.functions.insert(function.to_owned(), statements);
    }

    /// Whether `function` may perform every access; the first refused one.
    pub fn check(&self, function: &str, accesses: &[Access]) -> Result<(), Denied> {
        for access in accesses {
            if !self.allows(function, access) {
                return Err(Denied {
                    function: function.to_owned(),
                    action: access.action.clone(),
                    resource: access.resource.clone(),
                });
            }
        }
        Ok(())
    }

    fn allows(&self, function: &str, access: &Access) -> bool {
        let matches = |s: &Statement| {
            s.actions
                .iter()
                .any(|a| wildcard(&a.to_ascii_lowercase(), &access.action.to_ascii_lowercase()))
                && s.resources.iter().any(|r| {
                    let pattern = match &access.table {
                        Some(table) => r.replace(TABLE, table),
                        None => r.clone(),
                    };
                    wildcard(&pattern, &access.resource)
                })
        };
        let statements = self.statements(function);
        !statements.iter().any(|s| !s.allow && matches(s))
            && statements.iter().any(|s| s.allow && matches(s))
    }
}

fn as_list(value: &Value) -> Vec<&Value> {
    match value {
        Value::Sequence(items) => items.iter().collect(),
        other => vec![other],
    }
}

fn statement_of(template: &Template, id: &str, s: &Value) -> Result<Statement, TemplateError> {
    let shape = |what: &str| TemplateError::Shape(format!("{id}: policy statement {what}"));
    let allow = match s.get("Effect").and_then(Value::as_str) {
        Some("Allow") => true,
        Some("Deny") => false,
        _ => return Err(shape("without Effect Allow/Deny")),
    };
    let actions = as_list(s.get("Action").ok_or_else(|| shape("without Action"))?)
        .into_iter()
        .map(|a| a.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| shape("with a non-string Action"))?;
    let mut resources = Vec::new();
    for r in as_list(s.get("Resource").ok_or_else(|| shape("without Resource"))?) {
        resources.extend(resolve(template, r).map_err(|e| shape(&e))?);
    }
    Ok(Statement {
        allow,
        actions,
        resources,
    })
}

/// A resource value as CloudFormation would resolve it (patterns: `!If`
/// yields both branches).
fn resolve(template: &Template, value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let tag = tag.trim_start_matches('!');
            match tag {
                "GetAtt" => {
                    let (resource, attribute) = match &tagged.value {
                        Value::String(s) => s.split_once('.').ok_or(format!("!GetAtt {s}"))?,
                        Value::Sequence(parts) => match parts.as_slice() {
                            [Value::String(r), Value::String(a)] => (r.as_str(), a.as_str()),
                            _ => return Err("!GetAtt of an unexpected shape".to_owned()),
                        },
                        _ => return Err("!GetAtt of an unexpected shape".to_owned()),
                    };
                    Ok(vec![attribute_of(template, resource, attribute)?])
                }
                "Ref" => {
                    let name = tagged.value.as_str().ok_or("!Ref of a non-string")?;
                    Ok(vec![ref_of(template, name)?])
                }
                "Sub" => {
                    let text = tagged.value.as_str().ok_or("!Sub of a non-string")?;
                    Ok(vec![substitute(template, text)?])
                }
                "If" => {
                    let Some([_, yes, no]) = tagged.value.as_sequence().map(Vec::as_slice) else {
                        return Err("!If of an unexpected shape".to_owned());
                    };
                    let mut both = resolve(template, yes)?;
                    both.extend(resolve(template, no)?);
                    Ok(both)
                }
                other => Err(format!("unsupported tag !{other} in a Resource")),
            }
        }
        other => Err(format!("unsupported Resource {other:?}")),
    }
}

/// The access key id a function named `name` signs with locally: its name
/// without what DynamoDB Local refuses in a key (anything but A–Z, a–z,
/// 0–9): `renewal-cron` → `renewalcron`. The same rule as
/// `billing_config::local_access_key`.
pub fn local_access_key(name: &str) -> String {
    name.chars().filter(char::is_ascii_alphanumeric).collect()
}

fn resource_type<'a>(template: &'a Template, logical_id: &str) -> Option<&'a str> {
    template
        .resources()
        .find(|(id, _)| *id == logical_id)
        .and_then(|(_, r)| r.get("Type")?.as_str())
}

fn attribute_of(template: &Template, resource: &str, attribute: &str) -> Result<String, String> {
    match (resource_type(template, resource), attribute) {
        (Some("AWS::DynamoDB::Table"), "Arn") => {
            Ok(format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}"))
        }
        (Some("AWS::DynamoDB::Table"), "StreamArn") => Ok(format!(
            "arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}/stream/*"
        )),
        (Some(kind), "Arn") => Ok(format!("arn:aws:{}:*", service_of_type(kind)?)),
        (Some(kind), "Name") => Ok(format!("{}:*", service_of_type(kind)?)),
        (None, _) => Err(format!("!GetAtt of unknown resource {resource}")),
        (Some(kind), _) => Err(format!("!GetAtt {resource}.{attribute} ({kind})")),
    }
}

fn service_of_type(kind: &str) -> Result<&'static str, String> {
    Ok(match kind {
        "AWS::SQS::Queue" => "sqs",
        "AWS::Events::EventBus" => "events",
        "AWS::SecretsManager::Secret" => "secretsmanager",
        "AWS::SNS::Topic" => "sns",
        other => return Err(format!("resources of type {other}")),
    })
}

/// `!Ref` of a parameter: the parameter's name says what it holds
/// (`...SecretArn`); locally any resource of that service.
fn ref_of(template: &Template, name: &str) -> Result<String, String> {
    if let Some(kind) = resource_type(template, name) {
        return match kind {
            "AWS::DynamoDB::Table" => Ok(TABLE.to_owned()),
            other => Ok(format!("arn:aws:{}:*", service_of_type(other)?)),
        };
    }
    if name.ends_with("SecretArn") {
        return Ok("arn:aws:secretsmanager:*".to_owned());
    }
    match name {
        "AWS::Region" => Ok(REGION.to_owned()),
        "AWS::AccountId" => Ok(ACCOUNT.to_owned()),
        "AWS::Partition" => Ok("aws".to_owned()),
        // A name chosen at deploy time (EventBusName): any.
        _ => Ok("*".to_owned()),
    }
}

fn substitute(template: &Template, text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or(format!("unclosed ${{ in {text}"))?;
        let name = &after[..end];
        out.push_str(&match name.split_once('.') {
            Some((resource, attribute)) if !name.starts_with("AWS::") => {
                attribute_of(template, resource, attribute)?
            }
            _ => ref_of(template, name)?,
        });
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// IAM's wildcard match: `*` any run of characters (`/` included), `?` one.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests;
