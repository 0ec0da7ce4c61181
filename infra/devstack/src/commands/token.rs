//! `devstack token`: an HS256 JWT for the local stack.

use crate::{CliError, CliResult, TokenArgs, env_or, usage_error};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

pub(crate) fn token(args: TokenArgs) -> CliResult {
    if args.sub.trim().is_empty() {
        return Err(usage_error("--sub must not be empty".into()));
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = json!({
        "sub": args.sub,
        "roles": if args.service { json!(["service"]) } else { roles(args.admin) },
        "iat": now,
        "exp": now + args.ttl_hours * 3600,
    });
    println!("{}", sign_jwt(&jwt_secret(), &claims)?);
    Ok(())
}

pub(crate) fn roles(admin: bool) -> Value {
    if admin {
        json!(["user", "admin"])
    } else {
        json!(["user"])
    }
}

pub(crate) fn jwt_secret() -> String {
    env_or("BILLING_JWT_SECRET", "local-dev-secret")
}

/// HS256 JWT (`header.payload.signature`, base64url without padding).
pub(crate) fn sign_jwt(secret: &str, claims: &Value) -> Result<String, CliError> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())?;
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{signing_input}.{signature}"))
}
