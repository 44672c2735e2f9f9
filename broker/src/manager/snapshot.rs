//! What the manager publishes: an immutable snapshot of the login, on a
//! `tokio::sync::watch` channel (see [`super::TokenManager::subscribe`]).
//!
//! Why a snapshot: everything that is not the manager's own business — the
//! token command's hot path, projection targets, the systemd `STATUS=` line, a
//! future header-injecting proxy — reads this and nothing else, so the manager
//! imports none of them and none of them can ever see the refresh token: the
//! snapshot holds only its fingerprint.
//!
//! The token part ([`ServedToken`]) is built once per adopted grant (a
//! refresh, an import, a login), including the encoded `Token` answer frame:
//! the hot path then writes that frame as is, with no JSON encoding and no
//! hashing per request.

use super::state::MIN_VALID_CAP_DIVISOR;
use crate::clock::{saturating_diff, unix_secs, Deadline, Now};
use crate::credentials::Credentials;
use crate::store::ReloginRecord;
use oauth_broker_proto::{
    encode_frame, ExposeSecret, LastError, Response, SecretString, TokenGrant, TokenState,
};
use secrecy::SecretSlice;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The login as subscribers see it at one moment. Never holds the refresh
/// token.
#[derive(Debug, Default)]
pub struct TokenSnapshot {
    /// Whether there is a login at all (possibly without an access token yet).
    pub logged_in: bool,
    /// A refresh is in flight.
    pub refreshing: bool,
    /// The refresh token is dead; why.
    pub relogin: Option<ReloginRecord>,
    /// The current access token, if there is one (it may have expired since).
    pub token: Option<Arc<ServedToken>>,
    /// Provider account id (not secret).
    pub account_id: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Fingerprint of the refresh token the broker holds (non-secret), so that
    /// a subscriber can recognise it in a file without ever holding it.
    pub refresh_token_id: Option<String>,
    /// Refreshes so far.
    pub refresh_count: u64,
    /// The last refresh failure, while it is relevant.
    pub last_error: Option<LastError>,
    /// Why the state cannot be persisted, if it cannot.
    pub degraded: Option<String>,
}

impl TokenSnapshot {
    /// The login state at `now` (a token can expire between two snapshots).
    pub fn state(&self, now: Now) -> TokenState {
        if self.relogin.is_some() {
            TokenState::ReloginRequired
        } else if !self.logged_in {
            TokenState::LoggedOut
        } else if self.refreshing {
            TokenState::Refreshing
        } else if self
            .token
            .as_ref()
            .is_some_and(|t| t.remaining(now).is_some())
        {
            TokenState::Valid
        } else {
            TokenState::Expired
        }
    }

    /// The token to serve at once for a request wanting `min_valid`, when the
    /// snapshot alone decides it (the same rule as the manager's). `None`: ask
    /// the manager, which may refresh, wait or fail.
    pub fn ready_token(&self, now: Now, min_valid: Duration) -> Option<&Arc<ServedToken>> {
        if self.relogin.is_some() {
            return None;
        }
        self.token.as_ref().filter(|t| t.satisfies(now, min_valid))
    }
}

/// One access token as served: the wire answer, encoded once, plus what
/// subscribers need to know about it. Built only from credentials that hold
/// an access token.
pub struct ServedToken {
    /// The wire form (token, type, expiry in unix seconds, token id, scopes,
    /// metadata with the account id).
    pub grant: TokenGrant,
    /// `Response::Token(grant)`, framed; `None` when it exceeds the frame cap
    /// (the token command then reports that like any oversized answer).
    frame: Option<SecretSlice<u8>>,
    /// Exact expiry (sub-second, unlike `grant.expires_at`).
    pub expires_at: Option<SystemTime>,
    /// When the broker received the token (start of its lifetime).
    pub obtained_at: SystemTime,
    /// The expiry on both clocks; the earlier deadline wins (see `clock.rs`).
    pub expiry: Option<Deadline>,
    /// OIDC id token, if any (tool files such as Codex's need it).
    pub id_token: Option<SecretString>,
    /// Provider account id (not secret).
    pub account_id: Option<String>,
    /// Fingerprint of the refresh token issued with this access token.
    pub refresh_token_id: String,
}

/// Names the token by its fingerprint only: no secret in any log line.
impl std::fmt::Debug for ServedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedToken")
            .field("token_id", &self.grant.token_id)
            .field("expires_at", &self.grant.expires_at)
            .finish_non_exhaustive()
    }
}

impl ServedToken {
    /// The served form of `creds`' access token; `None` without one.
    pub fn new(creds: &Credentials) -> Option<ServedToken> {
        let access_token = creds.access_token.clone()?;
        let mut metadata = creds.metadata.clone();
        if let Some(id) = &creds.account_id {
            metadata.insert("account_id".to_string(), id.clone());
        }
        let grant = TokenGrant {
            token_id: oauth_broker_proto::token_fingerprint(&access_token),
            access_token,
            token_type: creds.token_type.clone(),
            expires_at: creds.expires_at.map(unix_secs).unwrap_or(0),
            scopes: creds.scopes.clone(),
            metadata,
            // Only in answers that ask for them (`with_identity`).
            id_token: None,
            obtained_at: None,
            refresh_token_id: None,
        };
        let response = Response::Token(grant);
        let frame = encode_frame(&response).ok().map(SecretSlice::from);
        let Response::Token(grant) = response else {
            unreachable!("built as a token response above")
        };
        Some(ServedToken {
            grant,
            frame,
            expires_at: creds.expires_at,
            obtained_at: creds.obtained_at,
            expiry: creds.expiry(),
            id_token: creds.id_token.clone(),
            account_id: creds.account_id.clone(),
            refresh_token_id: creds.refresh_token_id(),
        })
    }

    /// The served form of a `Token` answer received over the socket, read at
    /// `now`: what a client-side projector (`brokerctl project --follow`)
    /// hands the same projection writers the daemon uses. The lifetime is
    /// anchored on this host's `CLOCK_BOOTTIME` at `now` (the answer carries
    /// wall-clock seconds only). An answer from a broker that predates
    /// `obtained_at` counts its lifetime from `now`; one without
    /// `refresh_token_id` matches no refresh token in a file.
    pub fn from_answer(token: &oauth_broker_client::AccessToken, now: Now) -> ServedToken {
        let expires_at = (token.expires_at() > SystemTime::UNIX_EPOCH).then(|| token.expires_at());
        let obtained_at = token.obtained_at().unwrap_or(now.wall).min(now.wall);
        let expiry = expires_at.map(|wall| Deadline {
            wall,
            boot: Some(now.boot.saturating_add(saturating_diff(wall, now.wall))),
        });
        let grant = TokenGrant {
            access_token: token.secret().clone(),
            token_type: token.token_type().to_string(),
            expires_at: expires_at.map(unix_secs).unwrap_or(0),
            token_id: token.token_id().to_string(),
            scopes: token.scopes().to_vec(),
            metadata: token.metadata().clone(),
            id_token: token.id_token().cloned(),
            obtained_at: Some(unix_secs(obtained_at)),
            refresh_token_id: token.refresh_token_id().map(str::to_string),
        };
        ServedToken {
            account_id: grant.metadata.get("account_id").cloned(),
            id_token: grant.id_token.clone(),
            refresh_token_id: grant.refresh_token_id.clone().unwrap_or_default(),
            frame: None,
            expires_at,
            obtained_at,
            expiry,
            grant,
        }
    }

    /// The wire answer with the login's identity (id token, when obtained,
    /// refresh-token fingerprint), for a `Token` request that asks for it:
    /// encoded per request, as only client-side projectors ask, rarely.
    pub fn grant_with_identity(&self) -> TokenGrant {
        TokenGrant {
            id_token: self.id_token.clone(),
            obtained_at: Some(unix_secs(self.obtained_at)),
            refresh_token_id: Some(self.refresh_token_id.clone()),
            ..self.grant.clone()
        }
    }

    /// The bearer credential.
    pub fn access_token(&self) -> &SecretString {
        &self.grant.access_token
    }

    /// The access token's non-secret fingerprint.
    pub fn token_id(&self) -> &str {
        &self.grant.token_id
    }

    /// Granted scopes.
    pub fn scopes(&self) -> &[String] {
        &self.grant.scopes
    }

    /// The encoded `Token` answer, if it fits in a frame.
    pub fn frame(&self) -> Option<&[u8]> {
        self.frame.as_ref().map(|f| f.expose_secret())
    }

    /// Remaining validity at `now`; `None` once expired on either clock (or
    /// without expiry).
    pub fn remaining(&self, now: Now) -> Option<Duration> {
        let left = self.expiry?.left(now);
        (!left.is_zero()).then_some(left)
    }

    /// The full lifetime, as issued.
    pub fn lifetime(&self) -> Duration {
        self.expires_at
            .map_or(Duration::ZERO, |e| saturating_diff(e, self.obtained_at))
    }

    /// Whether this token may answer a request wanting `min_valid` at `now`.
    /// `min_valid` is honoured up to a fifth of the lifetime, which is what the
    /// proactive refresh always leaves: asking for more never refreshes more
    /// than once per lifetime.
    pub fn satisfies(&self, now: Now, min_valid: Duration) -> bool {
        let wanted = min_valid.min(self.lifetime() / MIN_VALID_CAP_DIVISOR);
        self.remaining(now).is_some_and(|left| left > wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth_broker_proto::decode_frame;

    fn creds(access: &str, expires_in: u64) -> Credentials {
        creds_at(Now::system(), access, expires_in)
    }

    fn creds_at(now: Now, access: &str, expires_in: u64) -> Credentials {
        Credentials {
            access_token: Some(SecretString::from(access.to_owned())),
            expires_at: Some(now.wall + Duration::from_secs(expires_in)),
            obtained_at: now.wall,
            obtained_boot: Some(now.boot),
            refresh_token: SecretString::from("rt-secret".to_owned()),
            id_token: None,
            token_type: "Bearer".into(),
            scopes: vec!["openid".into()],
            account_id: Some("acct".into()),
            metadata: [("plan".to_string(), "pro".to_string())].into(),
            refresh_hint_at: None,
        }
    }

    fn decoded(served: &ServedToken) -> TokenGrant {
        match decode_frame::<Response>(served.frame().unwrap()).unwrap() {
            Some((Ok(Response::Token(grant)), _)) => grant,
            other => panic!("not a token frame: {other:?}"),
        }
    }

    #[test]
    fn the_frame_carries_exactly_the_grant_served() {
        let c = creds("token-1", 600);
        let served = ServedToken::new(&c).unwrap();
        let wire = decoded(&served);
        assert_eq!(wire.access_token.expose_secret(), "token-1");
        assert_eq!(wire.token_id, c.token_id().unwrap());
        assert_eq!(wire.token_id, served.token_id());
        assert_eq!(wire.expires_at, unix_secs(c.expires_at.unwrap()));
        assert_eq!(wire.token_type, "Bearer");
        assert_eq!(wire.scopes, ["openid"]);
        assert_eq!(wire.metadata["account_id"], "acct");
        assert_eq!(wire.metadata["plan"], "pro");
        // The lean answer: no identity unless asked for.
        assert_eq!(wire.obtained_at, None);
        assert_eq!(wire.refresh_token_id, None);
        assert!(wire.id_token.is_none());
        // What a projector on another host asks for (`brokerctl project --follow`).
        let mut with_id = c.clone();
        with_id.id_token = Some(SecretString::from("id-token-1"));
        let identity = ServedToken::new(&with_id).unwrap().grant_with_identity();
        assert_eq!(identity.obtained_at, Some(unix_secs(c.obtained_at)));
        assert_eq!(identity.refresh_token_id, Some(c.refresh_token_id()));
        assert_eq!(identity.id_token.unwrap().expose_secret(), "id-token-1");
        assert_eq!(identity.access_token.expose_secret(), "token-1");
        // The frame and the grant say the same.
        assert_eq!(
            served.frame().unwrap(),
            encode_frame(&Response::Token(served.grant.clone())).unwrap()
        );
        // Another token is another frame.
        let other = ServedToken::new(&creds("token-2", 600)).unwrap();
        assert_eq!(decoded(&other).access_token.expose_secret(), "token-2");
        assert_ne!(other.token_id(), served.token_id());
    }

    #[test]
    fn never_holds_the_refresh_token() {
        let c = creds("token-1", 600);
        let served = ServedToken::new(&c).unwrap();
        let frame = String::from_utf8_lossy(served.frame().unwrap()).into_owned();
        assert!(!frame.contains("rt-secret"));
        assert_eq!(served.refresh_token_id, c.refresh_token_id());
        assert!(!format!("{served:?}").contains("token-1"));
        let mut bare = c.clone();
        bare.access_token = None;
        assert!(ServedToken::new(&bare).is_none());
    }

    #[test]
    fn ready_only_while_the_token_satisfies_the_request() {
        let now = Now::system();
        let snapshot = TokenSnapshot {
            logged_in: true,
            token: Some(Arc::new(
                ServedToken::new(&creds_at(now, "t", 1000)).unwrap(),
            )),
            ..Default::default()
        };
        assert!(snapshot.ready_token(now, Duration::ZERO).is_some());
        // `min_valid` is honoured up to a fifth of the lifetime.
        assert!(snapshot
            .ready_token(now, Duration::from_secs(10_000))
            .is_some());
        let late = now.later(Duration::from_secs(900));
        assert!(snapshot.ready_token(late, Duration::ZERO).is_some());
        assert!(snapshot
            .ready_token(late, Duration::from_secs(150))
            .is_none());
        assert!(snapshot
            .ready_token(now.later(Duration::from_secs(1001)), Duration::ZERO)
            .is_none());
        assert_eq!(snapshot.state(now), TokenState::Valid);
        let dead = TokenSnapshot {
            relogin: Some(ReloginRecord {
                reason: "invalid_grant".into(),
                message: "m".into(),
            }),
            ..snapshot
        };
        assert!(dead.ready_token(now, Duration::ZERO).is_none());
        assert_eq!(dead.state(now), TokenState::ReloginRequired);
    }
}
