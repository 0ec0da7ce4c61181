use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
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
/// `local_default` — never inside Lambda, where a missing secret is a fault
/// of the deployment (API.md "Authentication").
#[derive(Clone, Copy, Debug)]
pub struct SecretSpec {
    pub arn_env: &'static str,
    pub field: Option<&'static str>,
    pub local_env: &'static str,
    pub local_default: Option<&'static str>,
}

/// How long a Secrets Manager value is used before it is read again, so a
/// rotated secret is picked up without a redeploy (5–15 min is the usual
/// window; [`Secrets::invalidate`] refreshes sooner after an upstream 401).
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);

/// How long past its TTL a cached value still serves when Secrets Manager
/// cannot be read (throttled, unreachable, access lost): a warning is
/// logged at each failed refresh, and after the grace the failure shows.
pub const DEFAULT_STALE_GRACE: Duration = Duration::from_secs(3600);

/// After a failed refresh, the cached value serves without a new attempt
/// for this long, so requests do not each wait on a failing endpoint.
const REFRESH_BACKOFF: Duration = Duration::from_secs(30);

/// Secrets Manager's version stages: the one in use, and the one it
/// replaced at the last rotation (still valid while the rotation settles).
const CURRENT: &str = "AWSCURRENT";
const PREVIOUS: &str = "AWSPREVIOUS";

/// One version of a secret as last read (`None`: it has no such version).
#[derive(Clone)]
struct Cached {
    value: Option<String>,
    fetched: Instant,
    /// Set after a failed refresh: no new attempt before then.
    retry_at: Option<Instant>,
    /// To be read again at its next use, TTL or not; the value still
    /// serves (within the grace) if that read fails.
    expired: bool,
}

fn cache_key(arn: &str, stage: &str) -> String {
    format!("{arn}\n{stage}")
}

/// Resolves secrets, fetching each Secrets Manager secret at most once per
/// TTL. The Secrets Manager client is only built when an ARN is first
/// needed, so local runs and cold starts that need no secret pay nothing.
pub struct Secrets {
    client: OnceCell<aws_sdk_secretsmanager::Client>,
    cache: Mutex<HashMap<String, Cached>>,
    ttl: Duration,
    stale_grace: Duration,
    in_lambda: bool,
    /// ARNs given directly instead of by their environment variable.
    arns: HashMap<&'static str, String>,
}

impl Default for Secrets {
    fn default() -> Secrets {
        Secrets {
            client: OnceCell::new(),
            cache: Mutex::new(HashMap::new()),
            ttl: DEFAULT_TTL,
            stale_grace: DEFAULT_STALE_GRACE,
            in_lambda: crate::in_lambda(),
            arns: HashMap::new(),
        }
    }
}

/// A Secrets Manager client; at `endpoint` when given (tests and local
/// tools: an API such as moto's), by default at `SECRETS_MANAGER_ENDPOINT`
/// if set, else AWS's.
pub fn secrets_manager_client(
    sdk: &aws_config::SdkConfig,
    endpoint: Option<String>,
) -> aws_sdk_secretsmanager::Client {
    let mut builder = aws_sdk_secretsmanager::config::Builder::from(sdk);
    if let Some(endpoint) = endpoint.or_else(|| crate::env_opt("SECRETS_MANAGER_ENDPOINT")) {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_secretsmanager::Client::from_conf(builder.build())
}

impl Secrets {
    pub fn new() -> Secrets {
        Secrets::default()
    }

    /// With a given Secrets Manager client (tests: one pointed at moto).
    pub fn with_client(mut self, client: aws_sdk_secretsmanager::Client) -> Secrets {
        self.client = OnceCell::new_with(Some(client));
        self
    }

    pub fn with_ttl(mut self, ttl: Duration) -> Secrets {
        self.ttl = ttl;
        self
    }

    /// How long past the TTL a cached value serves while refreshes fail.
    pub fn with_stale_grace(mut self, grace: Duration) -> Secrets {
        self.stale_grace = grace;
        self
    }

    /// Whether to behave as inside Lambda (no local defaults); read from
    /// `AWS_LAMBDA_FUNCTION_NAME` by default.
    pub fn in_lambda(mut self, in_lambda: bool) -> Secrets {
        self.in_lambda = in_lambda;
        self
    }

    /// Reads the secrets of `arn_env` from `arn`, whatever the environment
    /// says (tests, tools).
    pub fn with_arn(mut self, arn_env: &'static str, arn: impl Into<String>) -> Secrets {
        self.arns.insert(arn_env, arn.into());
        self
    }

    fn arn(&self, spec: SecretSpec) -> Option<String> {
        self.arns
            .get(spec.arn_env)
            .cloned()
            .or_else(|| crate::env_opt(spec.arn_env))
    }

    pub async fn resolve(&self, spec: SecretSpec) -> Result<SecretValue, SecretError> {
        let name = spec.local_env;
        if let Some(arn) = self.arn(spec) {
            return self.resolve_arn(spec, &arn).await;
        }
        if let Some(value) = crate::env_opt(spec.local_env) {
            return Ok(SecretValue(value));
        }
        if self.in_lambda {
            // A deployment without its secret must fail loudly, never run on a
            // public local default (e.g. accept tokens signed with it).
            tracing::error!(
                secret = name,
                arn_env = spec.arn_env,
                "secret not configured inside Lambda; refusing the local default"
            );
            return Err(SecretError::Missing {
                name: name.to_owned(),
            });
        }
        spec.local_default
            .map(|v| SecretValue(v.to_owned()))
            .ok_or_else(|| SecretError::Missing {
                name: name.to_owned(),
            })
    }

    /// Resolves `spec` from the Secrets Manager secret `arn`.
    pub async fn resolve_arn(
        &self,
        spec: SecretSpec,
        arn: &str,
    ) -> Result<SecretValue, SecretError> {
        let raw = self
            .fetch(spec.local_env, arn, CURRENT)
            .await?
            .ok_or_else(|| SecretError::Missing {
                name: spec.local_env.to_owned(),
            })?;
        extract(spec, &raw)
    }

    /// The version `spec`'s secret had before its last rotation
    /// (`AWSPREVIOUS`), if it has one: a signing key still valid while the
    /// rotation settles. `None` locally (plain environment variables) and
    /// when it cannot be read (logged: the current value still serves).
    pub async fn resolve_previous(&self, spec: SecretSpec) -> Option<SecretValue> {
        let arn = self.arn(spec)?;
        match self.fetch(spec.local_env, &arn, PREVIOUS).await {
            Ok(raw) => raw.and_then(|raw| extract(spec, &raw).ok()),
            Err(error) => {
                tracing::warn!(secret = spec.local_env, %error, "previous version of the secret not read");
                None
            }
        }
    }

    /// Has `spec`'s cached versions read again at their next use if they
    /// were read at least `min_age` ago; whether it did. (A value refused
    /// by its counterpart, bounded so that refusals cannot drive a read per
    /// request. The cached value is kept: if the read fails it still
    /// serves, within the grace.)
    pub async fn refresh_if_older(&self, spec: SecretSpec, min_age: Duration) -> bool {
        let Some(arn) = self.arn(spec) else {
            return false;
        };
        let mut cache = self.cache.lock().await;
        let old_enough = cache
            .get(&cache_key(&arn, CURRENT))
            .is_none_or(|cached| cached.fetched.elapsed() >= min_age);
        if old_enough {
            expire(&mut cache, &arn);
        }
        old_enough
    }

    /// Forgets the cached value of `spec`'s secret: the next use reads it
    /// again (after an upstream answered 401: the secret may have been rotated).
    pub async fn invalidate(&self, spec: SecretSpec) {
        if let Some(arn) = self.arn(spec) {
            self.invalidate_arn(&arn).await;
        }
    }

    /// `spec`'s value after an upstream refused `stale` (a 401): the value
    /// cached now if it differs already (another caller re-read it),
    /// otherwise the secret read again from its source. A rotated secret
    /// is so picked up at its first refusal, without a redeploy.
    pub async fn reread(
        &self,
        spec: SecretSpec,
        stale: &SecretValue,
    ) -> Result<SecretValue, SecretError> {
        let current = self.resolve(spec).await?;
        if current != *stale {
            return Ok(current);
        }
        self.invalidate(spec).await;
        self.resolve(spec).await
    }

    pub async fn invalidate_arn(&self, arn: &str) {
        if expire(&mut *self.cache.lock().await, arn) {
            tracing::info!("cached secret expired; it is read again at its next use");
        }
    }

    /// The `stage` version of the secret `arn` (`None`: no such version,
    /// only for [`PREVIOUS`]), from the cache within its TTL; past it, read
    /// again, and if that fails the cached value serves for the stale
    /// grace (a warning each time a refresh is tried).
    async fn fetch(
        &self,
        name: &str,
        arn: &str,
        stage: &'static str,
    ) -> Result<Option<String>, SecretError> {
        let key = cache_key(arn, stage);
        let mut cache = self.cache.lock().await;
        let cached = cache.get(&key).cloned();
        if let Some(cached) = &cached {
            let age = cached.fetched.elapsed();
            let backing_off = cached.retry_at.is_some_and(|at| Instant::now() < at);
            if (age < self.ttl && !cached.expired)
                || (backing_off && age < self.ttl + self.stale_grace)
            {
                return Ok(cached.value.clone());
            }
        }
        let client = self
            .client
            .get_or_init(|| async { secrets_manager_client(&crate::load_aws_config().await, None) })
            .await;
        let mut request = client.get_secret_value().secret_id(arn);
        if stage != CURRENT {
            request = request.version_stage(stage);
        }
        let value = match request.send().await {
            Ok(out) => out.secret_string().map(str::to_owned),
            // A secret never rotated has no previous version.
            Err(e)
                if stage == PREVIOUS
                    && e.as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                None
            }
            Err(e) => {
                let error = aws_sdk_secretsmanager::error::DisplayErrorContext(&e);
                // The error names the secret, never its value.
                if let Some(stale) = cached
                    && stale.fetched.elapsed() < self.ttl + self.stale_grace
                {
                    tracing::warn!(secret = name, stage, age_s = stale.fetched.elapsed().as_secs(), error = %error, "secret refresh failed; the cached value serves for its grace");
                    let value = stale.value.clone();
                    cache.insert(
                        key,
                        Cached {
                            retry_at: Some(Instant::now() + REFRESH_BACKOFF),
                            ..stale
                        },
                    );
                    return Ok(value);
                }
                tracing::error!(secret = name, stage, error = %error, "secret fetch failed");
                return Err(SecretError::Fetch {
                    name: name.to_owned(),
                });
            }
        };
        cache.insert(
            key,
            Cached {
                value: value.clone(),
                fetched: Instant::now(),
                retry_at: None,
                expired: false,
            },
        );
        Ok(value)
    }
}

/// Marks both versions of `arn` to be read again at their next use;
/// whether the current one was cached.
fn expire(cache: &mut HashMap<String, Cached>, arn: &str) -> bool {
    let mut found = false;
    for stage in [CURRENT, PREVIOUS] {
        if let Some(cached) = cache.get_mut(&cache_key(arn, stage)) {
            // A refresh backing off after a failure stays backing off: at
            // most one attempt per REFRESH_BACKOFF, however often asked.
            cached.expired = true;
            found |= stage == CURRENT;
        }
    }
    found
}

/// `spec`'s value in the secret string `raw` (the whole string, or its field).
fn extract(spec: SecretSpec, raw: &str) -> Result<SecretValue, SecretError> {
    match spec.field {
        None => Ok(SecretValue(raw.to_owned())),
        Some(field) => serde_json::from_str::<serde_json::Value>(raw)
            .ok()
            .and_then(|v| v.get(field).and_then(|f| f.as_str()).map(str::to_owned))
            .map(SecretValue)
            .ok_or_else(|| SecretError::Field {
                name: spec.local_env.to_owned(),
                field: field.to_owned(),
            }),
    }
}

/// A secret a client holds, with what it needs to read it again when the
/// upstream refuses it (401): see [`Secrets::reread`].
#[derive(Clone)]
pub struct Rereadable {
    secrets: Arc<Secrets>,
    spec: SecretSpec,
}

impl Rereadable {
    pub fn new(secrets: Arc<Secrets>, spec: SecretSpec) -> Rereadable {
        Rereadable { secrets, spec }
    }

    /// The value after the upstream refused `stale`.
    pub async fn reread(&self, stale: &SecretValue) -> Result<SecretValue, SecretError> {
        self.secrets.reread(self.spec, stale).await
    }
}

impl fmt::Debug for Rereadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rereadable")
            .field("secret", &self.spec.local_env)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: SecretSpec = SecretSpec {
        arn_env: "BILLING_CONFIG_TEST_UNSET_ARN",
        field: None,
        local_env: "BILLING_CONFIG_TEST_UNSET_VALUE",
        local_default: Some("local-default"),
    };

    #[tokio::test]
    async fn local_defaults_are_used_locally_and_never_inside_lambda() {
        let local = Secrets::new().in_lambda(false).resolve(SPEC).await.unwrap();
        assert_eq!(local.expose(), "local-default");
        let lambda = Secrets::new().in_lambda(true).resolve(SPEC).await;
        assert!(matches!(lambda, Err(SecretError::Missing { .. })));
    }
}
