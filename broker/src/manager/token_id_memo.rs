//! The current access token's `token_id`, computed once per token instead of
//! once per request.
//!
//! Why: the fingerprint is a SHA-256 over the whole access token (1–2 KiB for
//! a JWT) plus hex formatting — about a microsecond, and the largest single
//! piece of the broker's own work for a cached-token request, repeated for
//! every request although the token changes only once per lifetime.
//!
//! The memo is keyed by the state's generation (bumped whenever the
//! credentials are replaced) and the token's expiry, and holds only the
//! fingerprint, which is not secret.

use crate::credentials::Credentials;
use std::cell::RefCell;
use std::time::SystemTime;

/// The last fingerprint and what it was computed for.
#[derive(Debug, Default)]
pub(crate) struct TokenIdMemo {
    last: RefCell<Option<Memo>>,
}

#[derive(Debug)]
struct Memo {
    generation: u64,
    expires_at: Option<SystemTime>,
    token_id: String,
}

impl TokenIdMemo {
    /// `creds.token_id()`, reused while `generation` and the expiry are those
    /// it was computed for.
    pub(crate) fn token_id(&self, generation: u64, creds: &Credentials) -> String {
        let mut last = self.last.borrow_mut();
        if let Some(memo) = last.as_ref() {
            if memo.generation == generation && memo.expires_at == creds.expires_at {
                return memo.token_id.clone();
            }
        }
        let token_id = creds.token_id().unwrap_or_default();
        *last = Some(Memo {
            generation,
            expires_at: creds.expires_at,
            token_id: token_id.clone(),
        });
        token_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth_broker_proto::SecretString;
    use std::time::Duration;

    fn creds(token: &str, expires_in: u64) -> Credentials {
        let now = SystemTime::now();
        Credentials {
            access_token: Some(SecretString::from(token.to_owned())),
            expires_at: Some(now + Duration::from_secs(expires_in)),
            obtained_at: now,
            refresh_token: SecretString::from("rt".to_owned()),
            id_token: None,
            token_type: "Bearer".into(),
            scopes: Vec::new(),
            account_id: None,
            metadata: Default::default(),
            refresh_hint_at: None,
        }
    }

    #[test]
    fn follows_the_generation_and_the_expiry() {
        let memo = TokenIdMemo::default();
        let a = creds("token-a", 60);
        let b = creds("token-b", 60);
        assert_eq!(memo.token_id(1, &a), a.token_id().unwrap());
        assert_eq!(memo.token_id(1, &a), a.token_id().unwrap());
        // New credentials come with a new generation.
        assert_eq!(memo.token_id(2, &b), b.token_id().unwrap());
        // Even without one, another expiry is another token.
        let c = creds("token-c", 120);
        assert_eq!(memo.token_id(2, &c), c.token_id().unwrap());
    }
}
