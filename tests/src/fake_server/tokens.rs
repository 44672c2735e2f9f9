//! Token values: random opaque strings and unsigned JWT look-alikes.
//!
//! Why distinctive prefixes and per-token randomness: end-to-end tests grep
//! the broker's logs for every token the fake issued to prove none leaks, so
//! each value must be unique and unlikely to appear by accident. Why JWTs:
//! the OpenAI preset decodes the access/id token payload (`exp`,
//! `chatgpt_account_id`) without checking a signature, so the shape matters
//! and the signature does not.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;

/// `len_bytes` random bytes as lowercase hex.
pub(crate) fn random_hex(len_bytes: usize) -> String {
    use rand::RngCore as _;
    let mut bytes = vec![0u8; len_bytes];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random opaque token like `fake-rt-3f9c…` (128 bits).
pub(crate) fn opaque(prefix: &str) -> String {
    format!("fake-{prefix}-{}", random_hex(16))
}

/// A user code as RFC 8628 §6.1 recommends: 8 unambiguous consonants,
/// shown as `XXXX-XXXX`.
pub(crate) fn user_code() -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    let mut rng = rand::rng();
    let mut s = String::with_capacity(9);
    for i in 0..8 {
        if i == 4 {
            s.push('-');
        }
        s.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    s
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Claims shared by access and id tokens.
pub(crate) struct JwtClaims<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub subject: &'a str,
    pub account_id: &'a str,
    pub ttl: Duration,
    /// Added to `exp` only: the server still ends the token after `ttl`.
    pub exp_slack: Duration,
    pub scope: &'a str,
}

fn encode_jwt(payload: serde_json::Value) -> String {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "fake-key"});
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        // Looks like a signature; nobody may verify it.
        URL_SAFE_NO_PAD.encode(random_hex(32)),
    )
}

/// An access token shaped like an unsigned JWT with a unique `jti`.
pub(crate) fn jwt_access_token(c: &JwtClaims<'_>) -> String {
    let iat = unix_now();
    encode_jwt(json!({
        "iss": c.issuer,
        "aud": [c.audience],
        "sub": c.subject,
        "client_id": c.audience,
        "iat": iat,
        "nbf": iat,
        "exp": iat + c.ttl.as_secs() + c.exp_slack.as_secs(),
        "jti": random_hex(16),
        "scp": c.scope.split_whitespace().collect::<Vec<_>>(),
        "https://api.openai.com/auth": {"chatgpt_account_id": c.account_id},
    }))
}

/// An OIDC id token (unsigned look-alike) for the same subject.
pub(crate) fn jwt_id_token(c: &JwtClaims<'_>) -> String {
    let iat = unix_now();
    encode_jwt(json!({
        "iss": c.issuer,
        "aud": c.audience,
        "sub": c.subject,
        "iat": iat,
        "exp": iat + 3600,
        "email": "user@example.com",
        "email_verified": true,
        "jti": random_hex(16),
        "https://api.openai.com/auth": {
            "chatgpt_account_id": c.account_id,
            "chatgpt_plan_type": "plus",
        },
    }))
}

/// Decodes a JWT payload (no signature check), for tests of this crate.
#[cfg(test)]
fn decode_payload(jwt: &str) -> Option<serde_json::Value> {
    let payload = jwt.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_tokens_are_unique_and_prefixed() {
        let a = opaque("rt");
        let b = opaque("rt");
        assert_ne!(a, b);
        assert!(a.starts_with("fake-rt-") && a.len() == 8 + 32);
    }

    #[test]
    fn user_codes_look_like_rfc8628() {
        let c = user_code();
        assert_eq!(c.len(), 9);
        assert_eq!(&c[4..5], "-");
    }

    #[test]
    fn jwt_carries_exp_sub_and_openai_claim() {
        let c = JwtClaims {
            issuer: "http://127.0.0.1:1",
            audience: "test-client",
            subject: "user-test",
            account_id: "acct-test",
            ttl: Duration::from_secs(4),
            exp_slack: Duration::ZERO,
            scope: "openid offline_access",
        };
        let t = jwt_access_token(&c);
        assert_eq!(t.split('.').count(), 3);
        let p = decode_payload(&t).unwrap();
        assert_eq!(p["sub"], "user-test");
        assert!(p["exp"].as_u64().unwrap() >= unix_now() + 3);
        assert_eq!(
            p["https://api.openai.com/auth"]["chatgpt_account_id"],
            "acct-test"
        );
        assert_ne!(t, jwt_access_token(&c));
        let id = decode_payload(&jwt_id_token(&c)).unwrap();
        assert_eq!(id["aud"], "test-client");
    }
}
