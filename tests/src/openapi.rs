//! `docs/openapi.yaml` as a checker of real responses. [`TestApi`] calls
//! [`check_response`] for every response a handler gives, so every
//! integration test also proves the spec: the status must be documented for
//! the route and method, the content type must be JSON with an
//! `x-request-id`, and the body must match the documented schema (the spec's
//! `$ref`s resolved, formats such as `date-time` checked).
//!
//! [`TestApi`]: crate::api::TestApi

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::LazyLock;

/// Where the spec is registered for `$ref` resolution (never fetched).
const BASE_URI: &str = "urn:billing:openapi";
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

pub fn spec_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.yaml")
}

/// A documented response: its schema's validator (None: no JSON body).
struct Documented {
    pointer: String,
    validator: Option<jsonschema::Validator>,
}

/// The spec's operations: `(path template, method) -> status -> response`.
pub struct Spec {
    pub document: Value,
    operations: BTreeMap<(String, String), BTreeMap<String, Documented>>,
}

/// The spec, loaded and compiled once per test binary.
pub fn spec() -> &'static Spec {
    static SPEC: LazyLock<Spec> = LazyLock::new(|| {
        let path = spec_path();
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Spec::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    });
    &SPEC
}

/// Escapes one JSON pointer segment (RFC 6901).
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// A JSON pointer as a URI fragment (`{id}` percent-encoded, RFC 6901 §6).
fn fragment(pointer: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'~')
        .remove(b'-')
        .remove(b'.')
        .remove(b'_');
    percent_encoding::utf8_percent_encode(pointer, KEEP).to_string()
}

impl Spec {
    pub fn parse(yaml: &str) -> Result<Spec, String> {
        let document: Value =
            serde_norway::from_str(yaml).map_err(|e| format!("not YAML/JSON: {e}"))?;
        if !document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
        {
            return Err("not an OpenAPI 3.1 document".into());
        }
        let registry = jsonschema::Registry::new()
            .add(
                BASE_URI,
                jsonschema::Draft::Draft202012.create_resource(document.clone()),
            )
            .and_then(|builder| builder.prepare())
            .map_err(|e| format!("registry: {e}"))?;
        let paths = document["paths"]
            .as_object()
            .ok_or("the spec has no paths")?;
        let mut operations = BTreeMap::new();
        for (path, item) in paths {
            for method in METHODS {
                let Some(operation) = item.get(method) else {
                    continue;
                };
                let mut documented = BTreeMap::new();
                let responses = operation["responses"]
                    .as_object()
                    .ok_or_else(|| format!("{method} {path}: no responses"))?;
                for (status, response) in responses {
                    let mut pointer = format!(
                        "/paths/{}/{method}/responses/{}",
                        escape(path),
                        escape(status)
                    );
                    // A response may itself be a `$ref` to components/responses.
                    let mut response = response;
                    while let Some(target) = response.get("$ref").and_then(Value::as_str) {
                        pointer = target
                            .strip_prefix('#')
                            .ok_or_else(|| format!("{pointer}: only local $refs"))?
                            .to_owned();
                        response = document
                            .pointer(&pointer)
                            .ok_or_else(|| format!("dangling $ref {target}"))?;
                    }
                    let validator = match response.pointer("/content/application~1json/schema") {
                        None => None,
                        Some(_) => {
                            let schema_pointer =
                                format!("{pointer}/content/application~1json/schema");
                            let root = serde_json::json!({
                                "$ref": format!("{BASE_URI}#{}", fragment(&schema_pointer))
                            });
                            let validator = jsonschema::options()
                                .with_draft(jsonschema::Draft::Draft202012)
                                .with_registry(&registry)
                                .should_validate_formats(true)
                                .build(&root)
                                .map_err(|e| format!("{schema_pointer}: {e}"))?;
                            Some(validator)
                        }
                    };
                    documented.insert(
                        status.clone(),
                        Documented {
                            pointer: pointer.clone(),
                            validator,
                        },
                    );
                }
                operations.insert((path.clone(), method.to_owned()), documented);
            }
        }
        Ok(Spec {
            document,
            operations,
        })
    }

    /// Every `(METHOD, path template)` the spec documents.
    pub fn routes(&self) -> Vec<(String, String)> {
        self.operations
            .keys()
            .map(|(path, method)| (method.to_ascii_uppercase(), path.clone()))
            .collect()
    }

    /// The documented statuses of one operation.
    pub fn statuses(&self, method: &str, path: &str) -> Vec<String> {
        self.operations
            .get(&(path.to_owned(), method.to_ascii_lowercase()))
            .map(|responses| responses.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Checks one response of `method path` (the route's template path).
    /// Returns every way it departs from the spec (empty: it conforms).
    pub fn violations(
        &self,
        method: &str,
        path: &str,
        status: u16,
        content_type: Option<&str>,
        request_id: Option<&str>,
        body: &Value,
    ) -> Vec<String> {
        let Some(responses) = self
            .operations
            .get(&(path.to_owned(), method.to_ascii_lowercase()))
        else {
            return vec![format!("{method} {path} is not in the spec")];
        };
        let Some(documented) = responses.get(&status.to_string()) else {
            return vec![format!(
                "status {status} is not documented for {method} {path} (documented: {})",
                responses.keys().cloned().collect::<Vec<_>>().join(", ")
            )];
        };
        let mut problems = Vec::new();
        if request_id.is_none_or(str::is_empty) {
            problems.push("no x-request-id header".to_owned());
        }
        let Some(validator) = &documented.validator else {
            return problems;
        };
        if !content_type.is_some_and(|t| t.starts_with("application/json")) {
            problems.push(format!(
                "content-type {content_type:?} is not application/json"
            ));
        }
        for error in validator.iter_errors(body) {
            problems.push(format!(
                "body at {:?}: {error} (schema {} at {:?})",
                error.instance_path().to_string(),
                documented.pointer,
                error.schema_path().to_string()
            ));
        }
        problems
    }
}

/// Panics (fails the test) unless the response matches the spec.
pub fn check_response(
    method: &str,
    path: &str,
    status: u16,
    content_type: Option<&str>,
    request_id: Option<&str>,
    body: &Value,
) {
    let problems = spec().violations(method, path, status, content_type, request_id, body);
    assert!(
        problems.is_empty(),
        "response does not match docs/openapi.yaml: {method} {path} -> {status} {body}\n  - {}",
        problems.join("\n  - ")
    );
}
