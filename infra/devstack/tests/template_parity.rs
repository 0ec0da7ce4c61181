//! What would fail only in AWS, checked on `template.yaml` itself: the
//! browser's CORS preflight for every route, the JWT scope every function
//! is given, and what a first deploy in a new account (or a re-created
//! stack) runs into. `cfn-lint template.yaml` checks the syntax; these
//! check the project's own rules.

use devstack::cors::CorsConfig;
use devstack::template::Template;
use serde_norway::Value;
use std::collections::{BTreeMap, BTreeSet};

fn text() -> String {
    std::fs::read_to_string(devstack::template_path()).expect("template.yaml readable")
}

fn root() -> Value {
    serde_norway::from_str(&text()).expect("template.yaml parses")
}

fn resources(root: &Value) -> Vec<(String, Value)> {
    root.get("Resources")
        .and_then(Value::as_mapping)
        .expect("Resources")
        .iter()
        .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.clone())))
        .collect()
}

fn of_type<'a>(resources: &'a [(String, Value)], kind: &str) -> Vec<&'a (String, Value)> {
    resources
        .iter()
        .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind))
        .collect()
}

/// `value` as `(tag, inner)` when it is a CloudFormation short-form tag.
fn tagged(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(t) => Some((t.tag.to_string(), &t.value)),
        _ => None,
    }
}

fn is_ref(value: &Value, name: &str) -> bool {
    tagged(value).is_some_and(|(tag, inner)| tag == "!Ref" && inner.as_str() == Some(name))
}

fn parameter_default(root: &Value, name: &str) -> Option<String> {
    let default = root.get("Parameters")?.get(name)?.get("Default")?;
    match default {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A browser sends a preflight before any PATCH or DELETE: a method the
/// HttpApi's CORS does not list is refused there, whatever the function.
#[test]
fn cors_allows_the_method_of_every_route() {
    let text = text();
    let cors = CorsConfig::from_template(&text, &BTreeMap::new())
        .unwrap()
        .expect("the HttpApi configures CORS");
    let allowed: BTreeSet<String> = cors
        .allow_methods
        .iter()
        .map(|m| m.to_ascii_uppercase())
        .collect();
    let routes = Template::parse(&text).unwrap().routes();
    assert!(routes.len() > 30, "{} routes", routes.len());
    let missing: BTreeSet<String> = routes
        .iter()
        .filter(|r| r.path.starts_with("/api/"))
        .map(|r| r.method.to_ascii_uppercase())
        .filter(|m| !allowed.contains(m) && !allowed.contains("*"))
        .collect();
    assert!(
        missing.is_empty(),
        "AllowMethods {allowed:?} lacks {missing:?}"
    );
}

/// `JwtIssuer` / `JwtAudience` reach every function (Globals), none
/// overrides them, and empty (the default) means not checked.
#[test]
fn every_function_gets_the_jwt_issuer_and_audience() {
    let root = root();
    for (parameter, variable) in [("JwtIssuer", "JWT_ISSUER"), ("JwtAudience", "JWT_AUDIENCE")] {
        assert_eq!(
            parameter_default(&root, parameter).as_deref(),
            Some(""),
            "{parameter}"
        );
        let global = root
            .get("Globals")
            .and_then(|g| g.get("Function"))
            .and_then(|f| f.get("Environment"))
            .and_then(|e| e.get("Variables"))
            .and_then(|v| v.get(variable));
        assert!(
            global.is_some_and(|v| is_ref(v, parameter)),
            "Globals: {variable} = !Ref {parameter}"
        );
        let resources = resources(&root);
        let functions = of_type(&resources, "AWS::Serverless::Function");
        assert!(functions.len() > 20);
        for (id, function) in functions {
            let own = function
                .get("Properties")
                .and_then(|p| p.get("Environment"))
                .and_then(|e| e.get("Variables"))
                .and_then(|v| v.get(variable));
            assert!(own.is_none(), "{id} overrides {variable}");
        }
    }
}

/// A new account's concurrency quota can be 10, and Lambda keeps at least
/// that much unreserved: any reservation fails the stack there. Every
/// reservation is a parameter whose default reserves nothing.
#[test]
fn no_concurrency_is_reserved_by_default() {
    let root = root();
    let resources = resources(&root);
    let mut reservations = 0;
    for (id, resource) in &resources {
        let Some(reserved) = resource
            .get("Properties")
            .and_then(|p| p.get("ReservedConcurrentExecutions"))
        else {
            continue;
        };
        reservations += 1;
        let (tag, args) = tagged(reserved).unwrap_or_else(|| panic!("{id}: a fixed reservation"));
        assert_eq!(tag, "!If", "{id}");
        let args = args.as_sequence().expect("!If [condition, then, else]");
        let (Some(condition), Some(then), Some(otherwise)) = (
            args.first().and_then(Value::as_str),
            args.get(1),
            args.get(2),
        ) else {
            panic!("{id}: !If [condition, then, else]");
        };
        assert!(
            is_ref(otherwise, "AWS::NoValue"),
            "{id}: else no reservation"
        );
        let (_, parameter) = tagged(then).expect("then: !Ref a parameter");
        let parameter = parameter.as_str().expect("parameter name");
        assert_eq!(
            parameter_default(&root, parameter).as_deref(),
            Some("0"),
            "{id}: {parameter} reserves nothing by default"
        );
        // The condition is "the parameter is not 0".
        let condition = root
            .get("Conditions")
            .and_then(|c| c.get(condition))
            .unwrap_or_else(|| panic!("condition {condition}"));
        let rendered = format!("{condition:?}");
        assert!(
            rendered.contains("Not") && rendered.contains(parameter),
            "{id}: {rendered}"
        );
    }
    assert!(reservations >= 1, "the webhook's cap is still offered");
}

/// A custom resource whose function never answers holds the stack for an
/// hour by default; `ServiceTimeout` bounds it (above the function's timeout).
#[test]
fn custom_resources_time_out_soon() {
    let root = root();
    let resources = resources(&root);
    let custom: Vec<_> = resources
        .iter()
        .filter(|(_, r)| {
            r.get("Type").and_then(Value::as_str).is_some_and(|t| {
                t.starts_with("Custom::") || t == "AWS::CloudFormation::CustomResource"
            })
        })
        .collect();
    assert!(!custom.is_empty());
    for (id, resource) in custom {
        let properties = resource.get("Properties").expect("Properties");
        let timeout = properties
            .get("ServiceTimeout")
            .and_then(|t| match t {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{id}: ServiceTimeout"));
        let function = properties
            .get("ServiceToken")
            .and_then(tagged)
            .and_then(|(_, inner)| {
                inner
                    .as_str()
                    .map(|s| s.trim_end_matches(".Arn").to_owned())
            })
            .expect("ServiceToken: !GetAtt <function>.Arn");
        let function_timeout = resources
            .iter()
            .find(|(fid, _)| *fid == function)
            .and_then(|(_, f)| f.get("Properties")?.get("Timeout")?.as_u64())
            .unwrap_or_else(|| panic!("{function}: Timeout"));
        assert!(
            (function_timeout..=300).contains(&timeout),
            "{id}: ServiceTimeout {timeout} s, function {function_timeout} s"
        );
    }
}

/// A retained resource outlives its stack: with a fixed physical name, the
/// stack cannot be created again under the same name (the name is taken).
#[test]
fn retained_resources_have_no_fixed_names() {
    let root = root();
    for (id, resource) in resources(&root) {
        if resource.get("DeletionPolicy").and_then(Value::as_str) != Some("Retain") {
            continue;
        }
        let properties = resource.get("Properties").and_then(Value::as_mapping);
        for name in [
            "TableName",
            "QueueName",
            "TopicName",
            "LogGroupName",
            "BucketName",
            "Name",
        ] {
            // Named only through an optional parameter: absent by default.
            let named = properties.and_then(|p| p.get(name));
            assert!(
                named.is_none_or(unnamed_by_default),
                "{id} is retained and named by {name}"
            );
        }
    }
}

/// `!If [Cond, !Ref Param, !Ref AWS::NoValue]`: no name unless a parameter
/// (an existing stack's old name) gives one.
fn unnamed_by_default(value: &Value) -> bool {
    let Value::Tagged(tagged) = value else {
        return false;
    };
    let Value::Sequence(parts) = &tagged.value else {
        return false;
    };
    let no_value =
        |v: &Value| matches!(v, Value::Tagged(t) if t.value.as_str() == Some("AWS::NoValue"));
    tagged.tag == "If" && parts.len() == 3 && no_value(&parts[2])
}

/// `Stage=prod` cannot deploy with the local default origin (a rule fails
/// the deploy), and that default is what the local stack allows: the
/// address Vite prints and the one `infra/run.sh` serves the page on.
#[test]
fn the_frontend_origin_is_local_by_default_and_never_in_prod() {
    let root = root();
    let text = text();
    let cors = CorsConfig::from_template(&text, &BTreeMap::new())
        .unwrap()
        .expect("CORS");
    for origin in ["http://localhost:5173", "http://127.0.0.1:5173"] {
        assert!(cors.origin_allowed(origin), "{origin} by default");
    }
    let rules = root
        .get("Rules")
        .and_then(Value::as_mapping)
        .expect("Rules");
    let prod_origin = rules.values().find(|rule| {
        let condition = format!("{:?}", rule.get("RuleCondition"));
        let assertions = format!("{:?}", rule.get("Assertions"));
        condition.contains("Stage")
            && condition.contains("prod")
            && assertions.contains("FrontendOrigin")
            && assertions.contains("http://localhost:5173")
            && assertions.contains("http://127.0.0.1:5173")
    });
    assert!(
        prod_origin.is_some(),
        "a rule refuses local origins in prod"
    );
    let run =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../run.sh"))
            .unwrap();
    assert!(
        run.contains("FrontendOrigin=${FRONTEND_ORIGIN:-http://localhost:$WEB_PORT,http://127.0.0.1:$WEB_PORT}"),
        "run.sh allows both local origins"
    );
}
