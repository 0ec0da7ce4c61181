use std::collections::HashMap;
use std::fmt;
use tokio::sync::{Mutex, OnceCell};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {name} is not configured")]
    Missing { name: String },
    #[error("secret {name} could not be read from Secrets Manager")]
    Fetch { name: String },
    #[error("secret {name} has no field {field}")]
    Field { name: String, field: String },
}

/// A secret value; its `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> SecretValue {
        SecretValue(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(***)")
    }
}

/// Where one secret comes from: in AWS a Secrets Manager ARN named by the
/// environment variable `arn_env` (the whole string, or one `field` of a JSON
/// secret); locally the plain environment variable `local_env`, else
/// `local_default`.
#[derive(Clone, Copy, Debug)]
pub struct SecretSpec {
    pub arn_env: &'static str,
    pub field: Option<&'static str>,
    pub local_env: &'static str,
    pub local_default: Option<&'static str>,
}

/// Resolves secrets, fetching each Secrets Manager secret once per cold start.
/// The Secrets Manager client is only built when an ARN is first needed, so
/// local runs and cold starts that need no secret pay nothing.
#[derive(Default)]
pub struct Secrets {
    client: OnceCell<aws_sdk_secretsmanager::Client>,
    cache: Mutex<HashMap<String, String>>,
}

impl Secrets {
    pub fn new() -> Secrets {
        Secrets::default()
    }

    pub async fn resolve(&self, spec: SecretSpec) -> Result<SecretValue, SecretError> {
        let name = spec.local_env;
        if let Some(arn) = crate::env_opt(spec.arn_env) {
            let raw = self.fetch(name, &arn).await?;
            return match spec.field {
                None => Ok(SecretValue(raw)),
                Some(field) => serde_json::from_str::<serde_json::Value>(&raw)
                    .ok()
                    .and_then(|v| v.get(field).and_then(|f| f.as_str()).map(str::to_owned))
                    .map(SecretValue)
                    .ok_or_else(|| SecretError::Field {
                        name: name.to_owned(),
                        field: field.to_owned(),
                    }),
            };
        }
        crate::env_opt(spec.local_env)
            .or_else(|| spec.local_default.map(str::to_owned))
            .map(SecretValue)
            .ok_or_else(|| SecretError::Missing {
                name: name.to_owned(),
            })
    }

    async fn fetch(&self, name: &str, arn: &str) -> Result<String, SecretError> {
        let mut cache = self.cache.lock().await;
        if let Some(value) = cache.get(arn) {
            return Ok(value.clone());
        }
        let client = self
            .client
            .get_or_init(|| async {
                aws_sdk_secretsmanager::Client::new(&crate::load_aws_config().await)
            })
            .await;
        let out = client.get_secret_value().secret_id(arn).send().await.map_err(|e| {
            // The error names the secret, never its value.
            tracing::error!(secret = name, error = %aws_sdk_secretsmanager::error::DisplayErrorContext(&e), "secret fetch failed");
            SecretError::Fetch {
                name: name.to_owned(),
            }
        })?;
        let value = out
            .secret_string()
            .ok_or_else(|| SecretError::Missing {
                name: name.to_owned(),
            })?
            .to_owned();
        cache.insert(arn.to_owned(), value.clone());
        Ok(value)
    }
}
