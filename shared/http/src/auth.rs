use crate::ApiError;
use crate::jwt::{JwtError, JwtVerifier};
use billing_config::{SecretSpec, Secrets};
use lambda_http::Request;
use ledger::UserId;
use std::sync::Arc;

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
/// passed, so a rotated secret needs no redeploy). `JWT_ISSUER` /
/// `JWT_AUDIENCE`, when set, are required in every token.
pub struct Auth {
    secrets: Arc<Secrets>,
    fixed: Option<JwtVerifier>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl Auth {
    pub fn new(secrets: Arc<Secrets>) -> Auth {
        Auth {
            secrets,
            fixed: None,
            issuer: billing_config::env_opt("JWT_ISSUER"),
            audience: billing_config::env_opt("JWT_AUDIENCE"),
        }
    }

    /// A verifier with a fixed secret (tests).
    pub fn with_secret(secret: &str) -> Auth {
        Auth {
            secrets: Arc::new(Secrets::new()),
            fixed: Some(JwtVerifier::new(secret.as_bytes())),
            issuer: None,
            audience: None,
        }
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

    async fn verifier(&self) -> Result<JwtVerifier, ApiError> {
        if let Some(fixed) = &self.fixed {
            return Ok(fixed.clone());
        }
        // A missing secret (inside Lambda: no local default) is our fault: 500, logged.
        let secret = self
            .secrets
            .resolve(JWT_SECRET)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(JwtVerifier::new(secret.expose().as_bytes())
            .expecting(self.issuer.clone(), self.audience.clone()))
    }

    /// Any authenticated user (401 otherwise).
    pub async fn caller(&self, req: &Request) -> Result<Caller, ApiError> {
        let token = bearer_token(req)?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = self
            .verifier()
            .await?
            .verify(token, now)
            .map_err(|e| match e {
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
