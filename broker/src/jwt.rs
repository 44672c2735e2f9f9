//! Reading (not verifying) JWT claims.
//!
//! The broker never trusts a JWT for authorization; it only reads `exp` when a
//! token response omits `expires_in`, and non-secret account ids for `status`.

use base64::Engine;
use serde_json::Value;

/// The decoded payload of a JWT-shaped token, or `None` if it is not one.
pub fn claims(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (_header, payload) = (parts.next()?, parts.next()?);
    parts.next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The `exp` claim (unix seconds), if present.
pub fn expiry(token: &str) -> Option<u64> {
    claims(token)?.get("exp")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exp_and_ignores_non_jwts() {
        let payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"exp":1700000000}"#);
        assert_eq!(expiry(&format!("e30.{payload}.sig")), Some(1_700_000_000));
        assert_eq!(expiry("opaque-token"), None);
        assert_eq!(expiry("a.b"), None);
    }
}
