use crate::ApiError;
use crate::jwt::{JwtError, JwtVerifier};
use billing_config::{SecretSpec, Secrets};
use lambda_http::Request;
use ledger::UserId;
use std::sync::Arc;
use tokio::sync::OnceCell;

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
}

/// Verifies bearer tokens. The secret is resolved at the first request and
/// kept for the life of the execution environment.
pub struct Auth {
    secrets: Arc<Secrets>,
    verifier: OnceCell<JwtVerifier>,
}

impl Auth {
    pub fn new(secrets: Arc<Secrets>) -> Auth {
        Auth {
            secrets,
            verifier: OnceCell::new(),
        }
    }

    /// A verifier with a fixed secret (tests).
    pub fn with_secret(secret: &str) -> Auth {
        Auth {
            secrets: Arc::new(Secrets::new()),
            verifier: OnceCell::new_with(Some(JwtVerifier::new(secret.as_bytes()))),
        }
    }

    async fn verifier(&self) -> Result<&JwtVerifier, ApiError> {
        self.verifier
            .get_or_try_init(|| async {
                let secret = self
                    .secrets
                    .resolve(JWT_SECRET)
                    .await
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                Ok(JwtVerifier::new(secret.expose().as_bytes()))
            })
            .await
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
