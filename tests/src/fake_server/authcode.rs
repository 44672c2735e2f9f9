//! Authorization codes with PKCE (RFC 6749 §4.1, RFC 7636 S256).
//!
//! Why strict: a broker that gets PKCE, `state` or `redirect_uri` slightly
//! wrong works against lenient servers and fails against real ones. This
//! module refuses `plain`, a missing challenge, a verifier that does not hash
//! to the challenge, a different `redirect_uri`, and a code used twice.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::config::AuthorizeBehavior;
use super::tokens;

const CODE_TTL: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct PendingCode {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    scope: String,
    expires_at: Instant,
    used: bool,
}

/// What `GET /oauth/authorize` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthorizeAnswer {
    /// 302 to this URL (success or an error the client must see).
    Redirect(String),
    /// The request cannot be trusted enough to redirect (unknown client,
    /// missing/invalid redirect_uri): 400 page, as real servers do.
    BadRequest(String),
}

/// An error of the code exchange: (OAuth error code, description).
pub(crate) type ExchangeError = (&'static str, &'static str);

#[derive(Debug, Default)]
pub(crate) struct AuthCodes {
    codes: HashMap<String, PendingCode>,
}

/// `BASE64URL(SHA256(verifier))`, RFC 7636 §4.2.
pub(crate) fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

impl AuthCodes {
    pub(crate) fn authorize(
        &mut self,
        q: &BTreeMap<String, String>,
        behavior: AuthorizeBehavior,
        expected_client_id: &str,
        default_scope: &str,
        now: Instant,
    ) -> AuthorizeAnswer {
        if q.get("client_id").map(String::as_str) != Some(expected_client_id) {
            return AuthorizeAnswer::BadRequest("unknown client_id".into());
        }
        let Some(redirect_uri) = q.get("redirect_uri") else {
            return AuthorizeAnswer::BadRequest("missing redirect_uri".into());
        };
        let Ok(mut target) = url::Url::parse(redirect_uri) else {
            return AuthorizeAnswer::BadRequest("invalid redirect_uri".into());
        };
        let state = q.get("state");
        let mut redirect = |pairs: &[(&str, &str)], state: Option<&str>| {
            {
                let mut qp = target.query_pairs_mut();
                for (k, v) in pairs {
                    qp.append_pair(k, v);
                }
                if let Some(s) = state {
                    qp.append_pair("state", s);
                }
            }
            AuthorizeAnswer::Redirect(target.to_string())
        };
        let error =
            |code: &'static str, desc: &'static str| [("error", code), ("error_description", desc)];
        if q.get("response_type").map(String::as_str) != Some("code") {
            return redirect(
                &error("unsupported_response_type", "response_type must be code"),
                state.map(String::as_str),
            );
        }
        let Some(challenge) = q.get("code_challenge") else {
            return redirect(
                &error("invalid_request", "PKCE code_challenge is required"),
                state.map(String::as_str),
            );
        };
        if q.get("code_challenge_method").map(String::as_str) != Some("S256") {
            return redirect(
                &error("invalid_request", "code_challenge_method must be S256"),
                state.map(String::as_str),
            );
        }
        if behavior == AuthorizeBehavior::Deny {
            return redirect(
                &error("access_denied", "the user denied the request"),
                state.map(String::as_str),
            );
        }
        let code = tokens::opaque("code");
        self.codes.insert(
            code.clone(),
            PendingCode {
                client_id: expected_client_id.to_owned(),
                redirect_uri: redirect_uri.clone(),
                challenge: challenge.clone(),
                scope: q
                    .get("scope")
                    .cloned()
                    .unwrap_or_else(|| default_scope.to_owned()),
                expires_at: now + CODE_TTL,
                used: false,
            },
        );
        let forged;
        let state = if behavior == AuthorizeBehavior::WrongState {
            forged = format!("forged-{}", tokens::random_hex(8));
            Some(forged.as_str())
        } else {
            state.map(String::as_str)
        };
        redirect(&[("code", &code)], state)
    }

    /// Redeems a code; returns its scope. A code is spent by the first
    /// attempt, successful or not.
    pub(crate) fn exchange(
        &mut self,
        code: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
        client_id: &str,
        now: Instant,
    ) -> Result<String, ExchangeError> {
        let Some(c) = self.codes.get_mut(code) else {
            return Err(("invalid_grant", "unknown authorization code"));
        };
        if c.used {
            return Err(("invalid_grant", "authorization code already used"));
        }
        c.used = true;
        if now >= c.expires_at {
            return Err(("invalid_grant", "authorization code expired"));
        }
        if c.client_id != client_id {
            return Err(("invalid_grant", "code was issued to another client"));
        }
        if redirect_uri != Some(c.redirect_uri.as_str()) {
            return Err(("invalid_grant", "redirect_uri does not match"));
        }
        let Some(verifier) = verifier else {
            return Err(("invalid_grant", "code_verifier is required"));
        };
        if !valid_verifier(verifier) {
            return Err(("invalid_grant", "malformed code_verifier"));
        }
        if s256(verifier) != c.challenge {
            return Err(("invalid_grant", "PKCE verification failed"));
        }
        Ok(c.scope.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    fn query(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut q: BTreeMap<String, String> = [
            ("response_type", "code"),
            ("client_id", "c"),
            ("redirect_uri", "http://127.0.0.1:9/cb"),
            ("state", "st"),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            q.insert(k.to_string(), v.to_string());
        }
        q
    }

    fn code_of(answer: &AuthorizeAnswer) -> (String, String) {
        let AuthorizeAnswer::Redirect(u) = answer else {
            panic!("{answer:?}")
        };
        let u = url::Url::parse(u).unwrap();
        let get = |k: &str| {
            u.query_pairs()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        (get("code"), get("state"))
    }

    #[test]
    fn rfc7636_example_verifier_matches() {
        assert_eq!(
            s256(VERIFIER),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn approve_then_exchange_once() {
        let mut a = AuthCodes::default();
        let now = Instant::now();
        let ans = a.authorize(&query(&[]), AuthorizeBehavior::Approve, "c", "s", now);
        let (code, state) = code_of(&ans);
        assert_eq!(state, "st");
        let r = a.exchange(
            &code,
            Some("http://127.0.0.1:9/cb"),
            Some(VERIFIER),
            "c",
            now,
        );
        assert_eq!(r, Ok("s".to_owned()));
        assert!(a
            .exchange(
                &code,
                Some("http://127.0.0.1:9/cb"),
                Some(VERIFIER),
                "c",
                now
            )
            .is_err());
    }

    #[test]
    fn wrong_verifier_and_redirect_are_rejected() {
        let mut a = AuthCodes::default();
        let now = Instant::now();
        let (c1, _) = code_of(&a.authorize(&query(&[]), AuthorizeBehavior::Approve, "c", "s", now));
        let wrong = "x".repeat(43);
        assert_eq!(
            a.exchange(&c1, Some("http://127.0.0.1:9/cb"), Some(&wrong), "c", now),
            Err(("invalid_grant", "PKCE verification failed"))
        );
        let (c2, _) = code_of(&a.authorize(&query(&[]), AuthorizeBehavior::Approve, "c", "s", now));
        assert_eq!(
            a.exchange(&c2, Some("http://127.0.0.1:8/cb"), Some(VERIFIER), "c", now),
            Err(("invalid_grant", "redirect_uri does not match"))
        );
    }

    #[test]
    fn plain_pkce_unknown_client_deny_and_wrong_state() {
        let mut a = AuthCodes::default();
        let now = Instant::now();
        let plain = a.authorize(
            &query(&[("code_challenge_method", "plain")]),
            AuthorizeBehavior::Approve,
            "c",
            "s",
            now,
        );
        assert!(
            matches!(&plain, AuthorizeAnswer::Redirect(u) if u.contains("error=invalid_request"))
        );
        let bad = a.authorize(
            &query(&[("client_id", "x")]),
            AuthorizeBehavior::Approve,
            "c",
            "s",
            now,
        );
        assert!(matches!(bad, AuthorizeAnswer::BadRequest(_)));
        let denied = a.authorize(&query(&[]), AuthorizeBehavior::Deny, "c", "s", now);
        assert!(
            matches!(&denied, AuthorizeAnswer::Redirect(u) if u.contains("error=access_denied") && u.contains("state=st"))
        );
        let (_, state) =
            code_of(&a.authorize(&query(&[]), AuthorizeBehavior::WrongState, "c", "s", now));
        assert_ne!(state, "st");
    }
}
