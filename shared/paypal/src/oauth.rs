//! OAuth2 client credentials: the access token (cached until shortly before
//! PayPal says it expires, renewed once when an API call is refused), and
//! the REST app's credentials themselves, read again from their secret when
//! PayPal's token endpoint refuses them (401): a secret rotated in Secrets
//! Manager is picked up at its first refusal, without a redeploy.

use crate::{PayPalClient, PayPalError, TOKEN_REFRESH_MARGIN, send};
use billing_config::{Rereadable, SecretValue};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;
use std::time::{Duration, Instant};

/// The REST app's client id and secret.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) id: SecretValue,
    pub(crate) secret: SecretValue,
}

/// Where the credentials are read again after a refusal.
#[derive(Clone, Debug)]
pub(crate) struct CredentialSource {
    pub(crate) id: Rereadable,
    pub(crate) secret: Rereadable,
}

pub(crate) struct CachedToken {
    value: SecretValue,
    /// When to stop using it (PayPal's expiry less the margin).
    refresh_at: Instant,
}

/// What the token endpoint said.
enum Answer {
    Token(CachedToken),
    /// 401: these credentials are not (or no longer) PayPal's.
    CredentialsRefused,
}

impl PayPalClient {
    /// The cached token, or a new one when there is none or it is due.
    pub(crate) async fn token(&self) -> Result<SecretValue, PayPalError> {
        let mut cache = self.token.lock().await;
        if let Some(cached) = cache.as_ref()
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.value.clone());
        }
        let fresh = self.fetch_token().await?;
        let value = fresh.value.clone();
        *cache = Some(fresh);
        Ok(value)
    }

    /// A token other than `stale`: the one another caller fetched meanwhile,
    /// or a new one.
    pub(crate) async fn refresh_token(
        &self,
        stale: &SecretValue,
    ) -> Result<SecretValue, PayPalError> {
        let mut cache = self.token.lock().await;
        if let Some(cached) = cache.as_ref()
            && cached.value != *stale
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.value.clone());
        }
        *cache = None;
        let fresh = self.fetch_token().await?;
        let value = fresh.value.clone();
        *cache = Some(fresh);
        Ok(value)
    }

    /// A new token with the current credentials; if PayPal refuses them
    /// (401) and their secret holds others now, once more with those.
    async fn fetch_token(&self) -> Result<CachedToken, PayPalError> {
        let credentials = self.credentials.read().await.clone();
        if let Answer::Token(token) = self.request_token(&credentials).await? {
            return Ok(token);
        }
        let Some(fresh) = self.reread_credentials(&credentials).await else {
            return Err(PayPalError::Auth);
        };
        match self.request_token(&fresh).await? {
            Answer::Token(token) => Ok(token),
            Answer::CredentialsRefused => {
                tracing::warn!("PayPal refused the credentials read again from their secret");
                Err(PayPalError::Auth)
            }
        }
    }

    /// After PayPal refused `stale`: the credentials read again from their
    /// secret, kept for the next calls; `None` when there is no secret to
    /// read, it cannot be read, or it still holds `stale`.
    async fn reread_credentials(&self, stale: &Credentials) -> Option<Credentials> {
        let source = self.credential_source.as_ref()?;
        let read = async {
            Ok::<_, billing_config::SecretError>(Credentials {
                id: source.id.reread(&stale.id).await?,
                secret: source.secret.reread(&stale.secret).await?,
            })
        };
        let fresh = match read.await {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::error!(error = %e, "PayPal credentials could not be read again");
                return None;
            }
        };
        if fresh == *stale {
            tracing::warn!("PayPal refused the client credentials; their secret holds the same");
            return None;
        }
        tracing::info!("PayPal client credentials read again from their secret after a 401");
        let mut current = self.credentials.write().await;
        *current = fresh.clone();
        Some(fresh)
    }

    /// `POST /v1/oauth2/token` (basic auth, `grant_type=client_credentials`).
    /// Failing here means the API call was never sent: transport failures
    /// are [`PayPalError::NotSent`], refusals other than 401
    /// [`PayPalError::Auth`], 5xx [`PayPalError::Upstream`].
    async fn request_token(&self, credentials: &Credentials) -> Result<Answer, PayPalError> {
        let request = self
            .http
            .post(format!("{}/v1/oauth2/token", self.base))
            .basic_auth(credentials.id.expose(), Some(credentials.secret.expose()))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials");
        let started = Instant::now();
        let (status, body) = match send("oauth_token", request).await {
            Ok(answer) => answer,
            Err(PayPalError::Timeout) => return Err(PayPalError::NotSent),
            Err(e) => return Err(e),
        };
        if status.is_server_error() {
            return Err(PayPalError::Upstream {
                status: status.as_u16(),
            });
        }
        if !status.is_success() {
            tracing::warn!(
                status = status.as_u16(),
                "PayPal refused the client credentials"
            );
            return if status == StatusCode::UNAUTHORIZED {
                Ok(Answer::CredentialsRefused)
            } else {
                Err(PayPalError::Auth)
            };
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
            tracing::warn!("PayPal token response unreadable");
            PayPalError::Auth
        })?;
        if answer.access_token.is_empty() || !answer.token_type.eq_ignore_ascii_case("bearer") {
            tracing::warn!("PayPal token response has no bearer token");
            return Err(PayPalError::Auth);
        }
        let lifetime = Duration::from_secs(answer.expires_in).saturating_sub(TOKEN_REFRESH_MARGIN);
        tracing::debug!(
            expires_in = answer.expires_in,
            "PayPal access token obtained"
        );
        Ok(Answer::Token(CachedToken {
            value: SecretValue::new(answer.access_token),
            refresh_at: started + lifetime,
        }))
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default = "bearer_type")]
    token_type: String,
    expires_in: u64,
}

fn bearer_type() -> String {
    "Bearer".to_owned()
}
