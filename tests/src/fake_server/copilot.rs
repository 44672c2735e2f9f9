//! GitHub-Copilot-style session tokens.
//!
//! Why: for the `github-copilot` preset the "refresh" is not an OAuth refresh
//! but an exchange of a long-lived GitHub token for a short-lived Copilot
//! session token (`GET /copilot_internal/v2/token`, `Authorization: token
//! …`). The exchange accepts GitHub tokens registered by the test and any
//! live access token this server issued (GitHub tokens do not expire, so
//! their expiry is ignored); the session tokens it hands out are checked by
//! the fake Copilot API (`/copilot-api/…`).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::tokens;

#[derive(Debug, Default)]
pub(crate) struct Copilot {
    github_tokens: HashSet<String>,
    sessions: HashMap<String, Instant>,
}

/// A new session token.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub token: String,
    pub expires_at_unix: u64,
}

impl Copilot {
    pub(crate) fn add_github_token(&mut self, token: String) {
        self.github_tokens.insert(token);
    }

    pub(crate) fn knows_github_token(&self, token: &str) -> bool {
        self.github_tokens.contains(token)
    }

    pub(crate) fn issue_session(&mut self, ttl: Duration, now: Instant) -> Session {
        let expires_at_unix = tokens::unix_now() + ttl.as_secs();
        // Shaped like the real thing: `tid=…;exp=…;sku=…;…`.
        let token = format!(
            "tid={};exp={expires_at_unix};sku=fake_individual;proxy-ep=fake",
            tokens::random_hex(16)
        );
        self.sessions.insert(token.clone(), now + ttl);
        Session {
            token,
            expires_at_unix,
        }
    }

    pub(crate) fn is_session_valid(&self, token: &str, now: Instant) -> bool {
        self.sessions.get(token).is_some_and(|exp| now < *exp)
    }

    pub(crate) fn revoke_all(&mut self) {
        self.github_tokens.clear();
        self.sessions.clear();
    }

    pub(crate) fn revoke(&mut self, token: &str) -> bool {
        self.github_tokens.remove(token) | self.sessions.remove(token).is_some()
    }
}
