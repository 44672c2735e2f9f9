//! The access token handed to the caller.

use oauth_broker_proto::TokenGrant;
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A short-lived access token from the broker.
///
/// The token itself is only reachable through [`ExposeSecret::expose_secret`] (or
/// [`AccessToken::bearer_header`]), so it does not end up in logs by accident:
/// `Debug` shows everything except the token. Keep the value and pass it back to
/// [`crate::Client::unauthorized`] when a server rejects it.
#[derive(Clone)]
pub struct AccessToken {
    secret: SecretString,
    token_type: String,
    expires_at: SystemTime,
    token_id: String,
    scopes: Vec<String>,
    metadata: BTreeMap<String, String>,
    id_token: Option<SecretString>,
    obtained_at: Option<SystemTime>,
    refresh_token_id: Option<String>,
}

impl AccessToken {
    /// The token type, usually `Bearer`.
    pub fn token_type(&self) -> &str {
        &self.token_type
    }

    /// When the token expires (wall clock, as the authorization server said).
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// Time left until expiry, zero if already expired.
    pub fn remaining(&self) -> Duration {
        self.expires_at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    }

    /// True once the expiry has passed.
    pub fn is_expired(&self) -> bool {
        self.remaining().is_zero()
    }

    /// A non-secret fingerprint of the token (first 12 hex digits of its SHA-256):
    /// safe to log, and what the broker uses to recognise it.
    pub fn token_id(&self) -> &str {
        &self.token_id
    }

    /// The granted scopes, if the provider said.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Non-secret extras from the provider, e.g. `account_id`, or the API base URL
    /// some providers return next to the token.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The OIDC id token the provider issued with this access token, if any
    /// (tool credential files such as Codex's `auth.json` hold it).
    pub fn id_token(&self) -> Option<&SecretString> {
        self.id_token.as_ref()
    }

    /// When the broker received this token (the start of its lifetime), if
    /// the broker said (brokers before this field did not).
    pub fn obtained_at(&self) -> Option<SystemTime> {
        self.obtained_at
    }

    /// The non-secret fingerprint of the refresh token the broker holds, if
    /// the broker said: lets a projector recognise a file holding that very
    /// token without ever seeing it.
    pub fn refresh_token_id(&self) -> Option<&str> {
        self.refresh_token_id.as_deref()
    }

    /// The token as a [`SecretString`].
    pub fn secret(&self) -> &SecretString {
        &self.secret
    }

    /// The value of an HTTP `Authorization` header, e.g. `Bearer eyJ…`. The token
    /// type is normalised to `Bearer` when the server sent it in another case.
    pub fn bearer_header(&self) -> SecretString {
        let scheme = if self.token_type.eq_ignore_ascii_case("bearer") {
            "Bearer"
        } else {
            &self.token_type
        };
        SecretString::from(format!("{scheme} {}", self.secret.expose_secret()))
    }
}

impl ExposeSecret<str> for AccessToken {
    /// The bearer credential itself.
    fn expose_secret(&self) -> &str {
        self.secret.expose_secret()
    }
}

impl From<TokenGrant> for AccessToken {
    fn from(grant: TokenGrant) -> Self {
        AccessToken {
            secret: grant.access_token,
            token_type: grant.token_type,
            expires_at: expiry_from_unix_secs(grant.expires_at),
            token_id: grant.token_id,
            scopes: grant.scopes,
            metadata: grant.metadata,
            id_token: grant.id_token,
            obtained_at: grant.obtained_at.map(expiry_from_unix_secs),
            refresh_token_id: grant.refresh_token_id,
        }
    }
}

/// The latest expiry this client believes: the year 2106. The answer comes
/// from another process, so an absurd value (`u64::MAX`) must not panic the way
/// `UNIX_EPOCH + Duration` does when the sum overflows `SystemTime`.
const MAX_EXPIRY_SECS: u64 = u32::MAX as u64;

/// The wall-clock time of an expiry sent as seconds since the Unix epoch,
/// clamped to [`MAX_EXPIRY_SECS`] (and, on a platform whose `SystemTime` ends
/// earlier, to the latest time it can hold that fits in 32 bits) instead of
/// overflowing.
pub(crate) fn expiry_from_unix_secs(secs: u64) -> SystemTime {
    let at = |secs: u64| UNIX_EPOCH.checked_add(Duration::from_secs(secs));
    at(secs.min(MAX_EXPIRY_SECS))
        .or_else(|| at(i32::MAX as u64))
        .unwrap_or(UNIX_EPOCH)
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"[REDACTED]")
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .field("token_id", &self.token_id)
            .field("scopes", &self.scopes)
            .field("metadata", &self.metadata)
            .field("id_token", &self.id_token.as_ref().map(|_| "[REDACTED]"))
            .field("obtained_at", &self.obtained_at)
            .field("refresh_token_id", &self.refresh_token_id)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(token_type: &str, expires_at: u64) -> AccessToken {
        AccessToken::from(TokenGrant {
            access_token: SecretString::from("tok-SECRET-123"),
            token_type: token_type.into(),
            expires_at,
            token_id: "abcdef012345".into(),
            scopes: vec!["openid".into()],
            metadata: [("account_id".to_string(), "acct".to_string())].into(),
            id_token: None,
            obtained_at: None,
            refresh_token_id: None,
        })
    }

    fn now_secs() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn debug_never_shows_the_token() {
        let t = token("Bearer", now_secs() + 60);
        for text in [format!("{t:?}"), format!("{t:#?}")] {
            assert!(!text.contains("SECRET"), "{text}");
            assert!(text.contains("abcdef012345") && text.contains("REDACTED"));
        }
        let with_id = AccessToken::from(TokenGrant {
            access_token: SecretString::from("tok-SECRET-123"),
            token_type: "Bearer".into(),
            expires_at: 1,
            token_id: "abcdef012345".into(),
            scopes: Vec::new(),
            metadata: Default::default(),
            id_token: Some(SecretString::from("id-SECRET-456")),
            obtained_at: Some(1),
            refresh_token_id: Some("fedcba987654".into()),
        });
        assert_eq!(with_id.id_token().unwrap().expose_secret(), "id-SECRET-456");
        assert_eq!(with_id.refresh_token_id(), Some("fedcba987654"));
        assert_eq!(
            with_id.obtained_at(),
            Some(UNIX_EPOCH + Duration::from_secs(1))
        );
        assert!(!format!("{with_id:?}").contains("SECRET"));
        let header = t.bearer_header();
        assert!(!format!("{header:?}").contains("SECRET"));
    }

    #[test]
    fn accessors_and_expiry() {
        let t = token("Bearer", now_secs() + 600);
        assert_eq!(t.expose_secret(), "tok-SECRET-123");
        assert_eq!(t.secret().expose_secret(), "tok-SECRET-123");
        assert!(t.remaining() > Duration::from_secs(590));
        assert!(!t.is_expired());
        assert_eq!(t.metadata()["account_id"], "acct");
        assert_eq!(t.scopes(), ["openid"]);

        let old = token("Bearer", 1);
        assert_eq!(old.remaining(), Duration::ZERO);
        assert!(old.is_expired());
    }

    #[test]
    fn an_absurd_expiry_is_clamped_instead_of_panicking() {
        let t = token("Bearer", u64::MAX);
        let latest = UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX));
        assert_eq!(t.expires_at(), latest);
        assert!(!t.is_expired());
        assert_eq!(expiry_from_unix_secs(u64::from(u32::MAX) + 1), latest);
        assert_eq!(
            expiry_from_unix_secs(1_800_000_000),
            UNIX_EPOCH + Duration::from_secs(1_800_000_000)
        );
        assert!(format!("{t:?}").contains("expires_at"));
    }

    #[test]
    fn bearer_header_normalises_the_scheme() {
        assert_eq!(
            token("bearer", 1).bearer_header().expose_secret(),
            "Bearer tok-SECRET-123"
        );
        assert_eq!(
            token("DPoP", 1).bearer_header().expose_secret(),
            "DPoP tok-SECRET-123"
        );
    }
}
