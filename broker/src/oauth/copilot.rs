//! GitHub Copilot's session-token exchange: what "refresh" means for the
//! `github-copilot` preset.
//!
//! The long-lived GitHub token (stored as the credential's `refresh_token`, and
//! never rotated) is exchanged for a short-lived Copilot session token with
//! `GET <exchange endpoint>` and `Authorization: token <github token>`. The
//! answer's `refresh_in` says when to exchange again and `endpoints.api` is the
//! API base that clients need, handed to them as non-secret metadata.
//!
//! Nothing is spent by an exchange, so no failure is ambiguous: a lost answer
//! is simply asked again. 401/403/404 mean the GitHub token was revoked or the
//! account has no Copilot entitlement: only a new login helps.

use super::discovery::checked;
use super::token_request::{read_answer, Answer};
use super::{classify_transport, ErrorClass, OAuthRefresher};
use super::{RefreshError, Refresher};
use crate::clock::{from_unix_secs, Clock};
use crate::credentials::{Credentials, DEFAULT_LIFETIME};
use crate::provider::github_copilot::{API_BASE_METADATA, EDITOR_VERSION, USER_AGENT};
use crate::provider::ProviderSpec;
use futures_util::future::BoxFuture;
use oauth_broker_proto::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Re-exchange this long before the server's `refresh_in` (PROVIDERS.md).
const REFRESH_IN_MARGIN: Duration = Duration::from_secs(60);

/// The exchange's answer (only the fields the broker uses).
#[derive(Deserialize)]
struct Session {
    #[serde(default)]
    token: Option<SecretString>,
    #[serde(default)]
    expires_at: Option<u64>,
    #[serde(default)]
    refresh_in: Option<u64>,
    #[serde(default)]
    endpoints: Option<SessionEndpoints>,
}

#[derive(Deserialize)]
struct SessionEndpoints {
    #[serde(default)]
    api: Option<String>,
}

/// Exchanges the GitHub token for Copilot session tokens.
pub struct CopilotRefresher {
    http: reqwest::Client,
    provider: Arc<ProviderSpec>,
    clock: Arc<dyn Clock>,
    /// RFC 7009 revocation of the GitHub token, when an endpoint is configured.
    revoker: OAuthRefresher,
}

impl CopilotRefresher {
    /// A refresher for the `github-copilot` preset.
    pub fn new(http: reqwest::Client, provider: Arc<ProviderSpec>, clock: Arc<dyn Clock>) -> Self {
        CopilotRefresher {
            revoker: OAuthRefresher::new(http.clone(), provider.clone(), clock.clone()),
            http,
            provider,
            clock,
        }
    }

    async fn exchange(&self, current: &Credentials) -> Result<Credentials, RefreshError> {
        let url = self.provider.exchange_endpoint.clone().ok_or_else(|| {
            RefreshError::configuration(
                "no_exchange_endpoint",
                format!(
                    "no Copilot exchange endpoint; set exchange_endpoint in {}",
                    self.provider.config_source
                ),
            )
        })?;
        let url = checked(url, &self.provider)?;
        let resp = self
            .http
            .get(url)
            .header(
                reqwest::header::AUTHORIZATION,
                format!("token {}", current.refresh_token.expose_secret()),
            )
            .header("Editor-Version", EDITOR_VERSION)
            .header(reqwest::header::USER_AGENT, USER_AGENT)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unambiguous(classify_transport(&e)))?;
        let Answer {
            status,
            retry_after,
            body,
        } = read_answer(resp).await.map_err(unambiguous)?;
        match status {
            200..=299 => {}
            401 | 403 | 404 => {
                return Err(RefreshError::relogin(
                    format!("copilot_http_{status}"),
                    format!(
                        "the Copilot token exchange answered HTTP {status}: the GitHub token was revoked or the account has no Copilot access"
                    ),
                ))
            }
            _ => {
                let mut err = RefreshError::transient(
                    format!("copilot_http_{status}"),
                    format!("the Copilot token exchange failed with HTTP {status}"),
                    false,
                );
                err.retry_after = retry_after;
                return Err(err);
            }
        }
        let session: Session = serde_json::from_slice(&body).map_err(|_| {
            RefreshError::transient(
                "unparsable_response",
                "the Copilot token exchange answered with a body that is not a session token",
                false,
            )
        })?;
        let token = session.token.ok_or_else(|| {
            RefreshError::transient(
                "no_access_token",
                "the Copilot token exchange answered without a token",
                false,
            )
        })?;
        Ok(session_credentials(
            current,
            token,
            session.expires_at,
            session.refresh_in,
            session.endpoints.and_then(|e| e.api),
            self.clock.now(),
        ))
    }
}

/// Nothing rotates in an exchange, so a lost answer is never "maybe spent".
fn unambiguous(mut err: RefreshError) -> RefreshError {
    if let ErrorClass::Transient { .. } = err.class {
        err.class = ErrorClass::Transient { ambiguous: false };
    }
    err
}

/// The credentials after an exchange: the session token is served, the GitHub
/// token stays as the refresh credential, the re-exchange hint is
/// `refresh_in - 60 s` (but never earlier than half of `refresh_in`, so that
/// short-lived test tokens do not re-exchange in a loop).
fn session_credentials(
    current: &Credentials,
    token: SecretString,
    expires_at: Option<u64>,
    refresh_in: Option<u64>,
    api_base: Option<String>,
    now: SystemTime,
) -> Credentials {
    let expires_at = expires_at
        .filter(|&secs| secs > 0)
        .map(from_unix_secs)
        .unwrap_or(now + DEFAULT_LIFETIME);
    let refresh_hint_at = refresh_in.map(|secs| {
        let secs = Duration::from_secs(secs);
        crate::clock::add(now, secs.saturating_sub(REFRESH_IN_MARGIN).max(secs / 2))
    });
    let mut metadata = current.metadata.clone();
    if let Some(api) = api_base {
        metadata.insert(API_BASE_METADATA.to_string(), api);
    }
    Credentials {
        access_token: Some(token),
        expires_at: Some(expires_at),
        obtained_at: now,
        obtained_boot: None,
        refresh_token: current.refresh_token.clone(),
        id_token: None,
        token_type: "Bearer".to_string(),
        scopes: current.scopes.clone(),
        account_id: current.account_id.clone(),
        metadata,
        refresh_hint_at,
    }
}

impl Refresher for CopilotRefresher {
    fn refresh<'a>(
        &'a self,
        current: &'a Credentials,
    ) -> BoxFuture<'a, Result<Credentials, RefreshError>> {
        Box::pin(async move {
            self.exchange(current)
                .await
                .map_err(|e| e.redacting(current))
        })
    }

    fn revoke<'a>(&'a self, current: &'a Credentials) -> BoxFuture<'a, bool> {
        self.revoker.revoke(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::unix_secs;

    fn github_login() -> Credentials {
        Credentials {
            access_token: None,
            expires_at: None,
            obtained_at: SystemTime::now(),
            obtained_boot: None,
            refresh_token: "ghu_secret".to_string().into(),
            id_token: None,
            token_type: "Bearer".into(),
            scopes: vec!["read:user".into()],
            account_id: None,
            metadata: Default::default(),
            refresh_hint_at: None,
        }
    }

    #[test]
    fn session_keeps_the_github_token_and_sets_the_hint() {
        let now = from_unix_secs(1_700_000_000);
        let c = session_credentials(
            &github_login(),
            "tid=1".to_string().into(),
            Some(1_700_001_800),
            Some(1500),
            Some("https://api.example".into()),
            now,
        );
        assert_eq!(c.refresh_token.expose_secret(), "ghu_secret");
        assert_eq!(c.access_token.unwrap().expose_secret(), "tid=1");
        assert_eq!(c.expires_at.map(unix_secs), Some(1_700_001_800));
        assert_eq!(c.refresh_hint_at.map(unix_secs), Some(1_700_001_440));
        assert_eq!(c.metadata[API_BASE_METADATA], "https://api.example");
    }

    #[test]
    fn short_refresh_in_is_halved_not_negative() {
        let now = from_unix_secs(1_700_000_000);
        let c = session_credentials(
            &github_login(),
            "t".to_string().into(),
            None,
            Some(6),
            None,
            now,
        );
        assert_eq!(c.refresh_hint_at.map(unix_secs), Some(1_700_000_003));
        assert!(c.expires_at.unwrap() > now);
    }
}
