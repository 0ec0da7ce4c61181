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

/// Resolves named secrets once per cold start.
///
/// For a secret `NAME`: if `NAME_ARN` is set, its Secrets Manager value is
/// used (a JSON object's `field`, or the whole string); otherwise the plain
/// environment variable `NAME` (local development), else the default.
/// The Secrets Manager client is only built when an ARN is first needed.
#[derive(Default)]
pub struct Secrets {
    client: OnceCell<aws_sdk_secretsmanager::Client>,
    cache: Mutex<HashMap<String, String>>,
}

impl Secrets {
    pub fn new() -> Secrets {
        Secrets::default()
    }

    pub async fn get(
        &self,
        name: &str,
        field: Option<&str>,
        default: Option<&str>,
    ) -> Result<SecretValue, SecretError> {
        if let Some(arn) = crate::env_opt(&format!("{name}_ARN")) {
            let raw = self.fetch(name, &arn).await?;
            return match field {
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
        crate::env_opt(name)
            .or_else(|| default.map(str::to_owned))
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
