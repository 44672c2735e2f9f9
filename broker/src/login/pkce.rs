//! PKCE (RFC 7636, S256 only) and the `state` parameter.
//!
//! The verifier is 64 random bytes (86 base64url characters, within the
//! 43–128 the RFC allows); `state` is 32 random bytes. Both come from the OS
//! CSPRNG via `rand`'s thread RNG. The verifier is a secret until the code is
//! exchanged: whoever holds it and the code gets the tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use oauth_broker_proto::{ExposeSecret, SecretString};
use rand::RngCore as _;
use sha2::{Digest, Sha256};

/// A PKCE verifier and its S256 challenge.
pub struct Pkce {
    /// Sent only with the code exchange.
    pub verifier: SecretString,
    /// `BASE64URL(SHA256(verifier))`, sent on the authorization URL.
    pub challenge: String,
}

impl Pkce {
    /// A fresh random verifier.
    pub fn generate() -> Pkce {
        let verifier = random_urlsafe(64);
        let challenge = s256(&verifier);
        Pkce {
            verifier: SecretString::from(verifier),
            challenge,
        }
    }

    /// The challenge method (S256; `plain` is never used).
    pub const METHOD: &'static str = "S256";
}

impl std::fmt::Debug for Pkce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkce")
            .field("challenge", &self.challenge)
            .finish_non_exhaustive()
    }
}

/// `BASE64URL(SHA256(verifier))` (RFC 7636 §4.2).
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A fresh random `state`.
pub fn random_state() -> String {
    random_urlsafe(32)
}

/// Compares a returned `state` with the expected one without leaking, through
/// timing, how much of it matched.
pub fn state_matches(expected: &str, got: &str) -> bool {
    let (a, b) = (expected.as_bytes(), got.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a verifier satisfies RFC 7636 §4.1 (length and alphabet).
pub fn is_valid_verifier(verifier: &SecretString) -> bool {
    let v = verifier.expose_secret();
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

fn random_urlsafe(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_example() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn generated_values_are_valid_and_unique() {
        let a = Pkce::generate();
        let b = Pkce::generate();
        assert!(is_valid_verifier(&a.verifier));
        assert_eq!(a.verifier.expose_secret().len(), 86);
        assert_eq!(a.challenge, s256(a.verifier.expose_secret()));
        assert_ne!(a.challenge, b.challenge);
        assert_ne!(random_state(), random_state());
        assert!(!format!("{a:?}").contains(a.verifier.expose_secret()));
    }

    #[test]
    fn state_comparison() {
        assert!(state_matches("abc", "abc"));
        assert!(!state_matches("abc", "abd"));
        assert!(!state_matches("abc", "abcd"));
        assert!(!state_matches("abc", ""));
    }
}
