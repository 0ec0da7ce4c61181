//! `billing_http::jwt::JwtVerifier::verify` on arbitrary tokens.
//!
//! Never panics, and never accepts a token whose signature is not HS256 of
//! its first two parts under the verifier's key (checked here with an
//! independent HMAC). Accepted claims are within their time window.
//!
//! Input: byte 0 picks how the token is made, bytes 1..9 are `now`, the rest
//! is the material:
//! - 0: the material is the whole token;
//! - 1: `header \x00 payload`, base64url-encoded and signed with the key
//!   (reaches the claim checks);
//! - 2: same, signed with another key;
//! - 3: same, signed with the key, then one signature byte flipped;
//! - 4: `header_b64.payload_b64` taken as is, signed with the key.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use billing_http::jwt::JwtVerifier;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const KEY: &[u8] = b"fuzz-signing-key";
const OTHER_KEY: &[u8] = b"fuzz-signing-kez";

fn mac(key: &[u8], input: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn signed(key: &[u8], signing_input: &str, flip: Option<u8>) -> String {
    let mut signature = mac(key, signing_input);
    if let Some(at) = flip {
        signature[usize::from(at) % 32] ^= 0x01;
    }
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let mode = data[0] % 5;
    let now = i64::from_le_bytes(data[1..9].try_into().expect("8 bytes"));
    let material = &data[9..];

    let encoded = || {
        let (header, payload) = match material.iter().position(|&b| b == 0) {
            Some(at) => (&material[..at], &material[at + 1..]),
            None => (material, &b""[..]),
        };
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        )
    };
    let token = match mode {
        0 => match std::str::from_utf8(material) {
            Ok(text) => text.to_owned(),
            Err(_) => return,
        },
        1 => signed(KEY, &encoded(), None),
        2 => signed(OTHER_KEY, &encoded(), None),
        3 => signed(
            KEY,
            &encoded(),
            Some(material.first().copied().unwrap_or(0)),
        ),
        _ => match std::str::from_utf8(material) {
            Ok(text) => signed(KEY, text, None),
            Err(_) => return,
        },
    };

    let verifier = JwtVerifier::new(KEY);
    let Ok(claims) = verifier.verify(&token, now) else {
        return;
    };
    assert!(
        mode == 0 || mode == 1 || mode == 4,
        "mode {mode} token accepted: {token:?}"
    );
    // Independent check: exactly three parts, the third the HS256 MAC of the
    // first two under KEY, and a header naming HS256.
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token:?}");
    let signing_input = format!("{}.{}", parts[0], parts[1]);
    let signature = URL_SAFE_NO_PAD
        .decode(parts[2])
        .unwrap_or_else(|_| panic!("accepted a signature that is not base64url: {token:?}"));
    assert_eq!(
        signature,
        mac(KEY, &signing_input),
        "accepted a forged token: {token:?}"
    );
    // The header as a struct, like the verifier reads it: serde_json skips an
    // ignored member without checking its text is UTF-8, so a signed header
    // need not be a valid `Value` (found by this target; harmless, as only
    // the key's holder can sign one).
    #[derive(serde::Deserialize)]
    struct Header {
        alg: String,
    }
    let header: Header =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("header base64"))
            .expect("header JSON");
    assert_eq!(header.alg, "HS256", "{token:?}");
    assert!(!claims.sub.is_empty());
    assert!(claims.exp > now);
    assert!(claims.nbf.is_none_or(|nbf| nbf <= now));
});
