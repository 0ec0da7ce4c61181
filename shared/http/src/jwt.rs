//! HS256 JSON Web Tokens, verified with the algorithm pinned.
//!
//! Only `HS256` is accepted: `none`, `HS512`, `RS256` and anything else are
//! refused before the signature is looked at, so a token cannot choose how it
//! is checked. The MAC is compared in constant time (`Mac::verify_slice`).
//!
//! Times allow [`LEEWAY_SECONDS`] of clock difference with the issuer
//! (`exp`, `nbf`, `iat`), and a token may live [`MAX_LIFETIME_SECONDS`] at
//! most (`exp` − `iat`, or `exp` − now without `iat`): a long-lived token
//! minted by mistake, or a leaked one, is not good for weeks.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Clock difference allowed with the issuer, in seconds.
pub const LEEWAY_SECONDS: i64 = 30;
/// The longest a token may be valid for, in seconds (24 h).
pub const MAX_LIFETIME_SECONDS: i64 = 24 * 3600;

/// Tokens longer than this are refused unparsed.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported token algorithm")]
    Algorithm,
    #[error("invalid token signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("token lacks required claims")]
    Claims,
    #[error("token issuer or audience not accepted")]
    Audience,
    #[error("token lifetime exceeds the maximum")]
    Lifetime,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub roles: Vec<String>,
    /// Seconds since the Unix epoch.
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Issued at (seconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// `iss` and `aud` (a string or an array of strings), read only when the
/// deployment expects them.
#[derive(Deserialize)]
struct Scope {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
}

/// Checks HS256 tokens against one secret (and, when configured, their
/// issuer and audience).
#[derive(Clone)]
pub struct JwtVerifier {
    mac: HmacSha256,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtVerifier(***)")
    }
}

impl JwtVerifier {
    pub fn new(secret: &[u8]) -> JwtVerifier {
        // HMAC accepts keys of any length; this cannot fail.
        let mac = match HmacSha256::new_from_slice(secret) {
            Ok(mac) => mac,
            Err(_) => unreachable_hmac(),
        };
        JwtVerifier {
            mac,
            issuer: None,
            audience: None,
        }
    }

    /// Tokens must carry `iss` = `issuer` and an `aud` naming `audience`
    /// (each only when `Some`; `JWT_ISSUER` / `JWT_AUDIENCE`).
    pub fn expecting(mut self, issuer: Option<String>, audience: Option<String>) -> JwtVerifier {
        self.issuer = issuer;
        self.audience = audience;
        self
    }

    /// Verifies `token` at `now` (Unix seconds) and returns its claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header: Header = decode_json(header_b64)?;
        if header.alg != "HS256" {
            return Err(JwtError::Algorithm);
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| JwtError::Malformed)?;
        let mut mac = self.mac.clone();
        mac.update(header_b64.as_bytes());
        mac.update(b".");
        mac.update(payload_b64.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| JwtError::Signature)?;

        let claims: Claims = decode_json(payload_b64).map_err(|_| JwtError::Claims)?;
        if claims.sub.is_empty() {
            return Err(JwtError::Claims);
        }
        if claims.exp.saturating_add(LEEWAY_SECONDS) <= now {
            return Err(JwtError::Expired);
        }
        if [claims.nbf, claims.iat]
            .into_iter()
            .flatten()
            .any(|at| at > now.saturating_add(LEEWAY_SECONDS))
        {
            return Err(JwtError::NotYetValid);
        }
        if claims.exp.saturating_sub(claims.iat.unwrap_or(now)) > MAX_LIFETIME_SECONDS {
            return Err(JwtError::Lifetime);
        }
        if self.issuer.is_some() || self.audience.is_some() {
            let scope: Scope = decode_json(payload_b64).map_err(|_| JwtError::Audience)?;
            if let Some(issuer) = &self.issuer
                && scope.iss.as_deref() != Some(issuer.as_str())
            {
                return Err(JwtError::Audience);
            }
            if let Some(audience) = &self.audience {
                let named = match &scope.aud {
                    Some(serde_json::Value::String(aud)) => aud == audience,
                    Some(serde_json::Value::Array(auds)) => {
                        auds.iter().any(|a| a.as_str() == Some(audience.as_str()))
                    }
                    _ => false,
                };
                if !named {
                    return Err(JwtError::Audience);
                }
            }
        }
        Ok(claims)
    }
}

/// Signs `claims` with HS256 (local tokens, tests, the devstack `token` command).
pub fn sign(claims: &Claims, secret: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let mut mac = JwtVerifier::new(secret).mac;
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

fn unreachable_hmac() -> ! {
    // `Hmac::new_from_slice` only fails for fixed-size-key MACs; HMAC has none.
    panic!("HMAC-SHA256 rejected a key")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_token(payload: serde_json::Value, secret: &[u8]) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
        let input = format!("{header}.{payload}");
        let mut mac = JwtVerifier::new(secret).mac;
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn issuer_and_audience_are_checked_only_when_configured() {
        let secret = b"s";
        let now = 1_000;
        let token = |iss: serde_json::Value, aud: serde_json::Value| {
            raw_token(
                serde_json::json!({"sub": "1", "roles": [], "exp": now + 60, "iss": iss, "aud": aud}),
                secret,
            )
        };
        let good = token("skypanel".into(), "billing".into());
        let listed = token("skypanel".into(), serde_json::json!(["panel", "billing"]));
        let open = JwtVerifier::new(secret);
        assert!(open.verify(&good, now).is_ok());
        assert!(
            open.verify(
                &token(serde_json::Value::Null, serde_json::Value::Null),
                now
            )
            .is_ok()
        );
        let strict =
            JwtVerifier::new(secret).expecting(Some("skypanel".into()), Some("billing".into()));
        assert!(strict.verify(&good, now).is_ok());
        assert!(strict.verify(&listed, now).is_ok());
        for bad in [
            token("other".into(), "billing".into()),
            token("skypanel".into(), "other".into()),
            token(serde_json::Value::Null, "billing".into()),
            token("skypanel".into(), serde_json::Value::Null),
            token("skypanel".into(), serde_json::json!(["panel"])),
        ] {
            assert_eq!(strict.verify(&bad, now), Err(JwtError::Audience));
        }
    }

    const SECRET: &[u8] = b"test-secret";
    const NOW: i64 = 1_800_000_000;

    fn claims() -> Claims {
        Claims {
            sub: "1001".into(),
            roles: vec!["admin".into()],
            exp: NOW + 60,
            nbf: None,
            iat: None,
        }
    }

    fn forge(header: &str, payload: &serde_json::Value, secret: &[u8]) -> String {
        let h = URL_SAFE_NO_PAD.encode(header);
        let p = URL_SAFE_NO_PAD.encode(payload.to_string());
        let mut mac = HmacSha256::new_from_slice(secret).unwrap();
        mac.update(format!("{h}.{p}").as_bytes());
        format!(
            "{h}.{p}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn round_trip() {
        let token = sign(&claims(), SECRET);
        assert_eq!(
            JwtVerifier::new(SECRET).verify(&token, NOW).unwrap(),
            claims()
        );
    }

    #[test]
    fn wrong_secret_is_refused() {
        let token = sign(&claims(), b"other");
        assert_eq!(
            JwtVerifier::new(SECRET).verify(&token, NOW),
            Err(JwtError::Signature)
        );
    }

    #[test]
    fn expired_is_refused_after_the_leeway() {
        let token = sign(&claims(), SECRET);
        let verifier = JwtVerifier::new(SECRET);
        assert!(
            verifier.verify(&token, NOW + 60).is_ok(),
            "within the leeway"
        );
        assert!(
            verifier
                .verify(&token, NOW + 60 + LEEWAY_SECONDS - 1)
                .is_ok()
        );
        assert_eq!(
            verifier.verify(&token, NOW + 60 + LEEWAY_SECONDS),
            Err(JwtError::Expired)
        );
    }

    #[test]
    fn not_yet_valid_is_refused_beyond_the_leeway() {
        let verifier = JwtVerifier::new(SECRET);
        for (nbf, iat) in [(Some(NOW + 10), None), (None, Some(NOW + 10))] {
            let token = sign(
                &Claims {
                    nbf,
                    iat,
                    ..claims()
                },
                SECRET,
            );
            assert!(verifier.verify(&token, NOW).is_ok(), "{nbf:?} {iat:?}");
        }
        for (nbf, iat) in [(Some(NOW + 31), None), (None, Some(NOW + 31))] {
            let token = sign(
                &Claims {
                    nbf,
                    iat,
                    ..claims()
                },
                SECRET,
            );
            assert_eq!(
                verifier.verify(&token, NOW),
                Err(JwtError::NotYetValid),
                "{nbf:?} {iat:?}"
            );
        }
    }

    #[test]
    fn a_token_living_longer_than_the_maximum_is_refused() {
        let verifier = JwtVerifier::new(SECRET);
        let day = MAX_LIFETIME_SECONDS;
        let with = |iat: Option<i64>, exp: i64| {
            sign(
                &Claims {
                    iat,
                    exp,
                    ..claims()
                },
                SECRET,
            )
        };
        assert!(verifier.verify(&with(Some(NOW), NOW + day), NOW).is_ok());
        assert!(verifier.verify(&with(None, NOW + day), NOW).is_ok());
        for token in [
            with(Some(NOW), NOW + day + 1),
            with(Some(NOW - 3600), NOW + day),
            // Without iat, what is left of it counts.
            with(None, NOW + 30 * day),
        ] {
            assert_eq!(verifier.verify(&token, NOW), Err(JwtError::Lifetime));
        }
    }

    #[test]
    fn alg_none_and_others_are_refused() {
        let payload = serde_json::json!({"sub": "1001", "roles": ["admin"], "exp": NOW + 60});
        let verifier = JwtVerifier::new(SECRET);
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        assert_eq!(verifier.verify(&none, NOW), Err(JwtError::Algorithm));
        let hs512 = forge(r#"{"alg":"HS512"}"#, &payload, SECRET);
        assert_eq!(verifier.verify(&hs512, NOW), Err(JwtError::Algorithm));
        let lowercase = forge(r#"{"alg":"hs256"}"#, &payload, SECRET);
        assert_eq!(verifier.verify(&lowercase, NOW), Err(JwtError::Algorithm));
    }

    #[test]
    fn missing_claims_are_refused() {
        let verifier = JwtVerifier::new(SECRET);
        for payload in [
            serde_json::json!({"roles": [], "exp": NOW + 60}),
            serde_json::json!({"sub": "1001", "exp": NOW + 60}),
            serde_json::json!({"sub": "1001", "roles": []}),
            serde_json::json!({"sub": "", "roles": [], "exp": NOW + 60}),
            serde_json::json!({"sub": "1001", "roles": [], "exp": "tomorrow"}),
        ] {
            let token = forge(r#"{"alg":"HS256"}"#, &payload, SECRET);
            assert_eq!(
                verifier.verify(&token, NOW),
                Err(JwtError::Claims),
                "{payload}"
            );
        }
    }

    #[test]
    fn garbage_is_malformed() {
        let verifier = JwtVerifier::new(SECRET);
        for token in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "!!!.???.***",
            &"a".repeat(10_000),
        ] {
            assert!(verifier.verify(token, NOW).is_err(), "{token}");
        }
    }

    #[test]
    fn tampered_payload_is_refused() {
        let token = sign(&claims(), SECRET);
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut tampered = claims();
        tampered.sub = "1002".into();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&tampered).unwrap());
        assert_eq!(
            JwtVerifier::new(SECRET).verify(&parts.join("."), NOW),
            Err(JwtError::Signature)
        );
    }
}
