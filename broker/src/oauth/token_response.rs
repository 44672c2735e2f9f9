//! A successful token-endpoint answer and how it updates the held credentials.

use crate::credentials::{Credentials, DEFAULT_LIFETIME};
use crate::jwt;
use oauth_broker_proto::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The fields of an RFC 6749 §5.1 token response. Every field is optional: some
/// providers omit the refresh token when they do not rotate, the id token on
/// refresh, or `expires_in` when the access token is a JWT.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    /// New access token.
    #[serde(default)]
    pub access_token: Option<SecretString>,
    /// Usually `Bearer`.
    #[serde(default)]
    pub token_type: Option<String>,
    /// Lifetime in seconds (some servers send a string).
    #[serde(default, deserialize_with = "number_or_string")]
    pub expires_in: Option<u64>,
    /// Rotated refresh token.
    #[serde(default)]
    pub refresh_token: Option<SecretString>,
    /// New id token.
    #[serde(default)]
    pub id_token: Option<SecretString>,
    /// Space-separated scopes.
    #[serde(default)]
    pub scope: Option<String>,
}

/// Deserializes a number that some servers send as a string (`"5"`).
pub fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        Num(f64),
        Str(String),
    }
    Ok(match Option::<NumOrStr>::deserialize(d)? {
        Some(NumOrStr::Num(n)) if n >= 0.0 => Some(n as u64),
        Some(NumOrStr::Str(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// Rounds down to a whole second. Clients see `expires_at` in unix seconds; the
/// broker decides on the same value, so it never hands out a token that a client
/// would already consider expired.
fn whole_seconds(t: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(crate::clock::unix_secs(t))
}

/// Builds the credentials that follow `previous` after `resp` arrived at `now`:
/// what the server did not return is kept (the old refresh token only if no new
/// one came back).
pub fn merge_token_response(
    previous: Option<&Credentials>,
    resp: TokenResponse,
    now: SystemTime,
) -> Option<Credentials> {
    let access_token = resp.access_token?;
    let refresh_token = resp
        .refresh_token
        .or_else(|| previous.map(|p| p.refresh_token.clone()))?;
    let expires_at = match resp.expires_in {
        Some(secs) => whole_seconds(crate::clock::add_secs(now, secs)),
        None => jwt::expiry(access_token.expose_secret())
            .map(crate::clock::from_unix_secs)
            .unwrap_or(whole_seconds(now + DEFAULT_LIFETIME)),
    };
    let id_token = resp
        .id_token
        .or_else(|| previous.and_then(|p| p.id_token.clone()));
    let scopes = match resp.scope {
        Some(scope) => scope.split_whitespace().map(str::to_string).collect(),
        None => previous.map(|p| p.scopes.clone()).unwrap_or_default(),
    };
    Some(Credentials {
        access_token: Some(access_token),
        expires_at: Some(expires_at),
        obtained_at: now,
        obtained_boot: None,
        refresh_token,
        id_token,
        token_type: resp
            .token_type
            .or_else(|| previous.map(|p| p.token_type.clone()))
            .unwrap_or_else(|| "Bearer".to_string()),
        scopes,
        account_id: previous.and_then(|p| p.account_id.clone()),
        metadata: previous.map(|p| p.metadata.clone()).unwrap_or_default(),
        refresh_hint_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn previous() -> Credentials {
        Credentials {
            access_token: Some("old-at".to_string().into()),
            expires_at: None,
            obtained_at: SystemTime::now(),
            obtained_boot: None,
            refresh_token: "old-rt".to_string().into(),
            id_token: Some("old-id".to_string().into()),
            token_type: "Bearer".into(),
            scopes: vec!["a".into()],
            account_id: Some("acct".into()),
            metadata: Default::default(),
            refresh_hint_at: None,
        }
    }

    #[test]
    fn keeps_what_the_server_did_not_return() {
        let resp: TokenResponse =
            serde_json::from_str(r#"{"access_token":"new-at","expires_in":"30"}"#).unwrap();
        let now = SystemTime::now();
        let c = merge_token_response(Some(&previous()), resp, now).unwrap();
        assert_eq!(c.refresh_token.expose_secret(), "old-rt");
        assert_eq!(c.id_token.unwrap().expose_secret(), "old-id");
        assert_eq!(
            c.expires_at,
            Some(whole_seconds(now + Duration::from_secs(30)))
        );
        assert_eq!(c.scopes, vec!["a".to_string()]);
    }

    #[test]
    fn takes_the_rotated_refresh_token() {
        let resp: TokenResponse =
            serde_json::from_str(r#"{"access_token":"n","refresh_token":"new-rt","scope":"x y"}"#)
                .unwrap();
        let c = merge_token_response(Some(&previous()), resp, SystemTime::now()).unwrap();
        assert_eq!(c.refresh_token.expose_secret(), "new-rt");
        assert_eq!(c.scopes, vec!["x".to_string(), "y".to_string()]);
    }
}
