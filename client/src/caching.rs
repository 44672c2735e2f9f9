//! An opt-in client-side token cache: no IPC at all while the last token is
//! still good enough.
//!
//! Why: programs that ask for a token before every API call (the simple and
//! correct way to use the broker) pay one Unix-socket round trip each time —
//! tens of microseconds, negligible for most, but not for a hot loop that makes
//! thousands of calls a second. The cache is safe because an access token the
//! broker handed out stays valid until its `expires_at` no matter how many
//! processes hold it: a refresh only changes which token the broker hands out
//! *next*. The one way a cached token dies early is revocation (a logout, or the
//! server invalidating it), which the API answers with 401 — and
//! `unauthorized()` drops the cached token and asks the broker for a replacement.
//!
//! What the cache gives up: a logout or relogin done elsewhere is noticed at the
//! next request that goes to the broker (when the cached token no longer
//! satisfies `min_valid`, or after a 401), not at once. A caller whose
//! `min_valid` is longer than the broker can honour (it caps `min_valid` at a
//! fifth of the token's lifetime) never hits the cache and simply asks the
//! broker every time, as the plain client does.

use crate::{AccessToken, Client, Error};
use std::time::Duration;

/// The last token and the rule for reusing it; shared by the blocking and the
/// async caching client.
#[derive(Debug, Default)]
struct TokenCache {
    token: Option<AccessToken>,
}

impl TokenCache {
    /// The cached token if it stays valid for longer than `min_valid`.
    fn fresh(&self, min_valid: Duration) -> Option<&AccessToken> {
        self.token
            .as_ref()
            .filter(|token| token.remaining() > min_valid)
    }

    /// Remembers the broker's answer; an error forgets the cached token, so that
    /// a broker that says "logged out" or "relogin required" is believed at
    /// once instead of after the cached token runs out.
    fn remember(&mut self, answer: Result<AccessToken, Error>) -> Result<AccessToken, Error> {
        match answer {
            Ok(token) => {
                self.token = Some(token.clone());
                Ok(token)
            }
            Err(err) => {
                self.token = None;
                Err(err)
            }
        }
    }
}

/// A [`Client`] that answers [`CachingClient::token`] from its last token while
/// that token is valid for longer than the caller's `min_valid` — with no IPC
/// at all — and asks the broker otherwise.
///
/// ```no_run
/// use oauth_broker_client::{CachingClient, Client, ExposeSecret};
/// use std::time::Duration;
///
/// # fn main() -> Result<(), oauth_broker_client::Error> {
/// let mut client = CachingClient::new(Client::builder().client_name("hot-loop").connect()?);
/// for _ in 0..1000 {
///     // The first call asks the broker; the others are answered in-process.
///     let token = client.token(Duration::from_secs(60))?;
///     let header = format!("Bearer {}", token.expose_secret());
///     # let _ = header;
///     // … on a 401 from the API, `client.unauthorized(&token)?` drops the cached
///     // token and returns the broker's replacement.
/// }
/// # Ok(())
/// # }
/// ```
///
/// See the [module docs](self) for what caching gives up (a logout elsewhere is
/// noticed at the next IPC).
#[derive(Debug)]
pub struct CachingClient {
    client: Client,
    cache: TokenCache,
}

impl From<Client> for CachingClient {
    fn from(client: Client) -> Self {
        CachingClient::new(client)
    }
}

impl CachingClient {
    /// Wraps a connected client; the cache starts empty.
    pub fn new(client: Client) -> Self {
        CachingClient {
            client,
            cache: TokenCache::default(),
        }
    }

    /// The cached token if it is valid for longer than `min_valid`; else asks
    /// the broker (see [`Client::token`]) and caches its answer.
    pub fn token(&mut self, min_valid: Duration) -> Result<AccessToken, Error> {
        if let Some(token) = self.cache.fresh(min_valid) {
            return Ok(token.clone());
        }
        let answer = self.client.token(min_valid);
        self.cache.remember(answer)
    }

    /// A server rejected `token` with 401: drops the cached token and returns
    /// the broker's replacement (see [`Client::unauthorized`]), which is cached.
    pub fn unauthorized(&mut self, token: &AccessToken) -> Result<AccessToken, Error> {
        self.cache.token = None;
        let answer = self.client.unauthorized(token);
        self.cache.remember(answer)
    }

    /// The cached token, whatever its remaining validity.
    pub fn cached(&self) -> Option<&AccessToken> {
        self.cache.token.as_ref()
    }

    /// Forgets the cached token: the next [`CachingClient::token`] asks the
    /// broker.
    pub fn clear(&mut self) {
        self.cache.token = None;
    }

    /// The wrapped client, for the other requests (`status`, `import`, …).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Unwraps the client, dropping the cache.
    pub fn into_inner(self) -> Client {
        self.client
    }
}

/// The async twin (feature `tokio`), exported as
/// `oauth_broker_client::tokio::CachingClient`.
#[cfg(feature = "tokio")]
pub(crate) mod asynchronous {
    use super::TokenCache;
    use crate::tokio::Client;
    use crate::{AccessToken, Error};
    use std::time::Duration;

    /// An async [`crate::CachingClient`]: answers `token()` from its last token
    /// while that token is valid for longer than `min_valid`, with no IPC.
    ///
    /// Cancel-safe like [`Client`]: a dropped call leaves either the old cached
    /// token or none.
    #[derive(Debug)]
    pub struct CachingClient {
        client: Client,
        cache: TokenCache,
    }

    impl From<Client> for CachingClient {
        fn from(client: Client) -> Self {
            CachingClient::new(client)
        }
    }

    impl CachingClient {
        /// Wraps a connected client; the cache starts empty.
        pub fn new(client: Client) -> Self {
            CachingClient {
                client,
                cache: TokenCache::default(),
            }
        }

        /// See [`crate::CachingClient::token`].
        pub async fn token(&mut self, min_valid: Duration) -> Result<AccessToken, Error> {
            if let Some(token) = self.cache.fresh(min_valid) {
                return Ok(token.clone());
            }
            let answer = self.client.token(min_valid).await;
            self.cache.remember(answer)
        }

        /// See [`crate::CachingClient::unauthorized`].
        pub async fn unauthorized(&mut self, token: &AccessToken) -> Result<AccessToken, Error> {
            self.cache.token = None;
            let answer = self.client.unauthorized(token).await;
            self.cache.remember(answer)
        }

        /// The cached token, whatever its remaining validity.
        pub fn cached(&self) -> Option<&AccessToken> {
            self.cache.token.as_ref()
        }

        /// Forgets the cached token.
        pub fn clear(&mut self) {
            self.cache.token = None;
        }

        /// The wrapped client, for the other requests.
        pub fn client(&mut self) -> &mut Client {
            &mut self.client
        }

        /// Unwraps the client, dropping the cache.
        pub fn into_inner(self) -> Client {
            self.client
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth_broker_proto::{ErrorCode, ErrorFrame, SecretString, TokenGrant};
    use std::time::{SystemTime, UNIX_EPOCH};

    fn token_expiring_in(secs: u64) -> AccessToken {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        AccessToken::from(TokenGrant {
            access_token: SecretString::from("tok"),
            token_type: "Bearer".into(),
            expires_at: now + secs,
            token_id: "0123456789ab".into(),
            scopes: Vec::new(),
            metadata: Default::default(),
            id_token: None,
            obtained_at: None,
            refresh_token_id: None,
        })
    }

    #[test]
    fn serves_only_tokens_valid_longer_than_min_valid() {
        let mut cache = TokenCache::default();
        assert!(cache.fresh(Duration::ZERO).is_none());
        cache.remember(Ok(token_expiring_in(100))).unwrap();
        assert!(cache.fresh(Duration::ZERO).is_some());
        assert!(cache.fresh(Duration::from_secs(90)).is_some());
        assert!(cache.fresh(Duration::from_secs(100)).is_none());
        assert!(cache.fresh(Duration::from_secs(3600)).is_none());
        // Still remembered for a smaller `min_valid`.
        assert!(cache.fresh(Duration::from_secs(1)).is_some());
    }

    #[test]
    fn an_expired_token_is_never_served() {
        let mut cache = TokenCache::default();
        cache.remember(Ok(token_expiring_in(0))).unwrap();
        assert!(cache.fresh(Duration::ZERO).is_none());
    }

    #[test]
    fn an_error_from_the_broker_forgets_the_token() {
        let mut cache = TokenCache::default();
        cache.remember(Ok(token_expiring_in(100))).unwrap();
        let err = Error::from(ErrorFrame::new(ErrorCode::NotLoggedIn, "logged out"));
        assert!(cache.remember(Err(err)).is_err());
        assert!(cache.fresh(Duration::ZERO).is_none());
    }
}
