use crate::ApiError;
use crate::jwt::{Claims, JwtError, JwtVerifier};
use billing_config::{SecretSpec, Secrets};
use lambda_http::Request;
use ledger::UserId;
use std::sync::Arc;
use std::time::Duration;

/// A token no cached key verifies has the signing key read again, at most
/// this often per cold start (a rotation seen before the cache's TTL; never
/// a Secrets Manager call per forged token).
pub const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// The JWT signing secret: Secrets Manager in AWS, `BILLING_JWT_SECRET` locally.
pub const JWT_SECRET: SecretSpec = SecretSpec {
    arn_env: "JWT_SECRET_ARN",
    field: None,
    local_env: "BILLING_JWT_SECRET",
    local_default: Some("local-dev-secret"),
};

/// The authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user: UserId,
    pub roles: Vec<String>,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == "admin")
    }

    /// A platform service (role `service`) or an admin: may call the
    /// `/api/services/...` routes for any user. (A service token never
    /// passes [`Auth::admin`].)
    pub fn is_service(&self) -> bool {
        self.is_admin() || self.roles.iter().any(|r| r == "service")
    }
}

/// Verifies bearer tokens. The secret comes from the secret cache at each
/// request (a map lookup; Secrets Manager is read again once its TTL
/// passed, so a rotated secret needs no redeploy). A key rotation logs
/// nobody out: a token the current key does not verify is tried with the
/// version it replaced (`AWSPREVIOUS`), and if neither verifies it, the
/// secret is read again (at most every [`KEY_REFRESH_INTERVAL`]) in case
/// the issuer rotated before this cache noticed. `JWT_ISSUER` /
/// `JWT_AUDIENCE`, when set, are required in every token.
pub struct Auth {
    secrets: Arc<Secrets>,
    fixed: Option<JwtVerifier>,
    issuer: Option<String>,
    audience: Option<String>,
    refresh_interval: Duration,
}

impl Auth {
    pub fn new(secrets: Arc<Secrets>) -> Auth {
        Auth {
            secrets,
            fixed: None,
            issuer: billing_config::env_opt("JWT_ISSUER"),
            audience: billing_config::env_opt("JWT_AUDIENCE"),
            refresh_interval: KEY_REFRESH_INTERVAL,
        }
    }

    /// A verifier with a fixed secret (tests).
    pub fn with_secret(secret: &str) -> Auth {
        Auth {
            secrets: Arc::new(Secrets::new()),
            fixed: Some(JwtVerifier::new(secret.as_bytes())),
            issuer: None,
            audience: None,
            refresh_interval: KEY_REFRESH_INTERVAL,
        }
    }

    /// Reads the key again for an unknown signature at most this often
    /// (tests; [`KEY_REFRESH_INTERVAL`] otherwise).
    pub fn with_key_refresh_interval(mut self, interval: Duration) -> Auth {
        self.refresh_interval = interval;
        self
    }

    /// Requires these `iss` / `aud` claims (tests; `JWT_ISSUER` / `JWT_AUDIENCE` otherwise).
    pub fn expecting(mut self, issuer: Option<String>, audience: Option<String>) -> Auth {
        self.fixed = self
            .fixed
            .map(|v| v.expecting(issuer.clone(), audience.clone()));
        self.issuer = issuer;
        self.audience = audience;
        self
    }

    fn verifier(&self, key: &str) -> JwtVerifier {
        JwtVerifier::new(key.as_bytes()).expecting(self.issuer.clone(), self.audience.clone())
    }

    /// The token's claims if a signing key verifies it (see [`Auth`]).
    async fn verify(&self, token: &str, now: i64) -> Result<Result<Claims, JwtError>, ApiError> {
        if let Some(fixed) = &self.fixed {
            return Ok(fixed.verify(token, now));
        }
        match self.verify_cached(token, now).await? {
            Err(JwtError::Signature)
                if self
                    .secrets
                    .refresh_if_older(JWT_SECRET, self.refresh_interval)
                    .await =>
            {
                self.verify_cached(token, now).await
            }
            verified => Ok(verified),
        }
    }

    /// With the cached current key, then the previous one.
    async fn verify_cached(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Result<Claims, JwtError>, ApiError> {
        // A missing secret (inside Lambda: no local default) is our fault: 500, logged.
        let current = self
            .secrets
            .resolve(JWT_SECRET)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let verified = self.verifier(current.expose()).verify(token, now);
        if !matches!(verified, Err(JwtError::Signature)) {
            return Ok(verified);
        }
        Ok(match self.secrets.resolve_previous(JWT_SECRET).await {
            Some(previous) if previous != current => {
                self.verifier(previous.expose()).verify(token, now)
            }
            _ => verified,
        })
    }

    /// Any authenticated user (401 otherwise).
    pub async fn caller(&self, req: &Request) -> Result<Caller, ApiError> {
        let token = bearer_token(req)?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = self.verify(token, now).await?.map_err(|e| match e {
            JwtError::Expired => ApiError::unauthorized("Token expired"),
            _ => ApiError::unauthorized("Invalid token"),
        })?;
        let user =
            UserId::parse(&claims.sub).map_err(|_| ApiError::unauthorized("Invalid token"))?;
        Ok(Caller {
            user,
            roles: claims.roles,
        })
    }

    /// An authenticated admin (401 without a valid token, 403 without the role).
    pub async fn admin(&self, req: &Request) -> Result<Caller, ApiError> {
        let caller = self.caller(req).await?;
        if !caller.is_admin() {
            return Err(ApiError::forbidden());
        }
        Ok(caller)
    }
}

impl Auth {
    /// A platform service or an admin (401 without a valid token, 403 for a
    /// user token).
    pub async fn service(&self, req: &Request) -> Result<Caller, ApiError> {
        let caller = self.caller(req).await?;
        if !caller.is_service() {
            return Err(ApiError::forbidden());
        }
        Ok(caller)
    }
}

fn bearer_token(req: &Request) -> Result<&str, ApiError> {
    let missing = || ApiError::unauthorized("Missing bearer token");
    let header = req
        .headers()
        .get(http_header_authorization())
        .ok_or_else(missing)?
        .to_str()
        .map_err(|_| missing())?;
    let (scheme, token) = header.trim().split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(missing());
    }
    Ok(token.trim())
}

fn http_header_authorization() -> &'static str {
    "authorization"
}
