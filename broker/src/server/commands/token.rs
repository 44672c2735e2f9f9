//! `Token { min_valid_secs }`.
//!
//! The answer to a cached-token request is the same frame for every client
//! until the token changes, so the last one is kept encoded ([`AnswerMemo`])
//! and written as is: the hot path does no JSON encoding and no allocation for
//! it. The memo is keyed by the whole grant, so it can only ever return the
//! frame of exactly the grant the manager decided to serve.

use super::super::connection::{Connection, ConnectionError};
use crate::manager::TokenManager;
use oauth_broker_proto::{encode_frame, ExposeSecret, Response, TokenGrant};
use secrecy::SecretSlice;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A token valid for at least `min_valid_secs` (capped by what a fresh one
/// gives), written on `conn`.
pub async fn answer(
    manager: &TokenManager,
    min_valid_secs: u64,
    conn: &mut Connection,
) -> Result<(), ConnectionError> {
    match manager.token(Duration::from_secs(min_valid_secs)).await {
        Ok(grant) => {
            let frame = LAST_ANSWER.frame_for(grant)?;
            conn.write_frame(frame.expose_secret()).await
        }
        Err(e) => {
            // Logged out, relogin needed…: no token to keep around.
            LAST_ANSWER.clear();
            conn.write(&Response::Error(e)).await
        }
    }
}

/// The last token answer, shared by all connections.
static LAST_ANSWER: AnswerMemo = AnswerMemo::new();

/// The encoded frame of the last grant served. The frame holds the token, so
/// it is zeroed when replaced or cleared, like every other copy.
struct AnswerMemo {
    last: Mutex<Option<(TokenGrant, Arc<SecretSlice<u8>>)>>,
}

impl AnswerMemo {
    const fn new() -> Self {
        AnswerMemo {
            last: Mutex::new(None),
        }
    }

    /// The frame of `Response::Token(grant)`, encoded once per distinct grant.
    fn frame_for(&self, grant: TokenGrant) -> Result<Arc<SecretSlice<u8>>, ConnectionError> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cached, frame)) = last.as_ref() {
            if same_grant(cached, &grant) {
                return Ok(frame.clone());
            }
        }
        let response = Response::Token(grant);
        let frame = Arc::new(SecretSlice::from(
            encode_frame(&response).map_err(ConnectionError::TooLarge)?,
        ));
        let Response::Token(grant) = response else {
            unreachable!("built as a token response above")
        };
        *last = Some((grant, frame.clone()));
        Ok(frame)
    }

    fn clear(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Field-by-field equality (`TokenGrant` has no `PartialEq`: its token is a
/// secret).
fn same_grant(a: &TokenGrant, b: &TokenGrant) -> bool {
    a.expires_at == b.expires_at
        && a.token_id == b.token_id
        && a.access_token.expose_secret() == b.access_token.expose_secret()
        && a.token_type == b.token_type
        && a.scopes == b.scopes
        && a.metadata == b.metadata
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth_broker_proto::{decode_frame, SecretString};

    fn grant(token: &str, expires_at: u64) -> TokenGrant {
        TokenGrant {
            access_token: SecretString::from(token.to_owned()),
            token_type: "Bearer".into(),
            expires_at,
            token_id: "0123456789ab".into(),
            scopes: vec!["openid".into()],
            metadata: [("account_id".to_string(), "acct".to_string())].into(),
        }
    }

    fn decoded(frame: &Arc<SecretSlice<u8>>) -> TokenGrant {
        match decode_frame::<Response>(frame.expose_secret()).unwrap() {
            Some((Ok(Response::Token(grant)), _)) => grant,
            other => panic!("not a token frame: {other:?}"),
        }
    }

    #[test]
    fn the_frame_always_carries_exactly_the_grant_served() {
        let memo = AnswerMemo::new();
        let first = memo.frame_for(grant("token-1", 100)).unwrap();
        let again = memo.frame_for(grant("token-1", 100)).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "encoded once");
        assert_eq!(decoded(&first).access_token.expose_secret(), "token-1");

        // Any difference is a different answer.
        let other_token = memo.frame_for(grant("token-2", 100)).unwrap();
        assert_eq!(
            decoded(&other_token).access_token.expose_secret(),
            "token-2"
        );
        let other_expiry = memo.frame_for(grant("token-2", 200)).unwrap();
        assert_eq!(decoded(&other_expiry).expires_at, 200);
        let mut with_scope = grant("token-2", 200);
        with_scope.scopes.push("more".into());
        let scoped = memo.frame_for(with_scope).unwrap();
        assert_eq!(decoded(&scoped).scopes, ["openid", "more"]);

        memo.clear();
        let after_clear = memo.frame_for(grant("token-2", 200)).unwrap();
        assert!(!Arc::ptr_eq(&after_clear, &other_expiry));
    }
}
