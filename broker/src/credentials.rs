//! The tokens of one account as the broker holds them in memory.

use crate::clock::{saturating_diff, Deadline, Now};
use oauth_broker_proto::{token_fingerprint, ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// Lifetime assumed when a provider says nothing about expiry and the access token
/// is not a JWT: one hour, the most common default.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// Everything the broker knows about the current login. Secrets are `SecretString`
/// so that `Debug` (and therefore any log line) can never show them.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The access token served to clients; `None` until the first refresh after an
    /// import of a bare refresh token.
    pub access_token: Option<SecretString>,
    /// Access-token expiry.
    pub expires_at: Option<SystemTime>,
    /// When the broker received the access token (start of its lifetime), on
    /// the wall clock.
    pub obtained_at: SystemTime,
    /// `CLOCK_BOOTTIME` at `obtained_at`, in this boot; `None` when unknown
    /// (before the manager takes the token, or after a reboot). The lifetime
    /// runs on this clock too, and the earlier deadline wins (see `clock.rs`).
    pub obtained_boot: Option<Duration>,
    /// The refresh token (for GitHub Copilot: the long-lived GitHub token that is
    /// exchanged for session tokens).
    pub refresh_token: SecretString,
    /// OIDC id token, if any.
    pub id_token: Option<SecretString>,
    /// Usually `Bearer`.
    pub token_type: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Provider account id (not secret).
    pub account_id: Option<String>,
    /// Non-secret metadata handed to clients next to the token.
    pub metadata: BTreeMap<String, String>,
    /// A provider's own "refresh by then" hint (GitHub Copilot's `refresh_in`).
    pub refresh_hint_at: Option<SystemTime>,
}

impl Credentials {
    /// The access token's remaining validity at `now`, or `None` if there is no
    /// access token or it has expired (on either clock).
    pub fn remaining(&self, now: Now) -> Option<Duration> {
        self.access_token.as_ref()?;
        let left = self.expiry()?.left(now);
        (!left.is_zero()).then_some(left)
    }

    /// The access token's expiry on both clocks: the wall-clock `expires_at`,
    /// and the lifetime as issued counted on boottime from `obtained_boot`.
    pub fn expiry(&self) -> Option<Deadline> {
        let wall = self.expires_at?;
        Some(Deadline {
            wall,
            boot: self
                .obtained_boot
                .map(|b| b.saturating_add(self.lifetime())),
        })
    }

    /// Records where on `CLOCK_BOOTTIME` the lifetime started: `now.boot`
    /// less the wall-clock time since `obtained_at`. Called by the manager
    /// on every token it receives (a refresh result, an import, a login), at
    /// once, so both deadlines agree at first; should the wall clock step in
    /// that moment, a step forward only moves the boottime deadline earlier.
    pub fn anchor_boottime(&mut self, now: Now) {
        let since = saturating_diff(now.wall, self.obtained_at);
        self.obtained_boot = Some(now.boot.saturating_sub(since));
    }

    /// The access token's full lifetime, as issued.
    pub fn lifetime(&self) -> Duration {
        match self.expires_at {
            Some(expires_at) => saturating_diff(expires_at, self.obtained_at),
            None => Duration::ZERO,
        }
    }

    /// Fingerprint of the access token (`token_id` on the wire).
    pub fn token_id(&self) -> Option<String> {
        self.access_token.as_ref().map(token_fingerprint)
    }

    /// Fingerprint of the refresh token, for the in-flight marker and logs.
    pub fn refresh_token_id(&self) -> String {
        token_fingerprint(&self.refresh_token)
    }

    /// True if both hold the same refresh token.
    pub fn same_refresh_token(&self, other: &Credentials) -> bool {
        self.refresh_token.expose_secret() == other.refresh_token.expose_secret()
    }
}
