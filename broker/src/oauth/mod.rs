//! Talking to the authorization server: refresh, discovery, error classification.
//!
//! The token manager only sees the [`Refresher`] trait and the classified
//! [`RefreshError`]; how a provider spends its refresh token (an RFC 6749 refresh,
//! or GitHub Copilot's session-token exchange) stays behind it.

mod classify;
pub mod copilot;
mod discovery;
mod http;
mod refresh;
pub mod token_request;
mod token_response;

pub use classify::{classify_response, classify_transport, parse_retry_after};
pub use copilot::CopilotRefresher;
pub use discovery::{checked as checked_endpoint, Discovery, DiscoveryDocument};
pub use http::build_http_client;
pub use refresh::OAuthRefresher;
pub use token_response::{merge_token_response, number_or_string, TokenResponse};

use crate::credentials::Credentials;
use futures_util::future::BoxFuture;
use std::fmt;
use std::time::Duration;

/// What kind of failure a token-endpoint answer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The grant is dead (`invalid_grant`, reuse, 401, …): stop calling the token
    /// endpoint until a new login.
    Relogin,
    /// The client configuration is wrong (`invalid_client`, a refused endpoint,
    /// no API access): retrying soon cannot help, but the refresh token was not
    /// spent, so retry slowly and tell the user what to fix.
    Configuration,
    /// Network trouble, 5xx, 429, unparsable answers. `ambiguous` is true when the
    /// request may have reached the server (so the refresh token may have been
    /// rotated without us learning the new one).
    Transient {
        /// The request may have been processed.
        ambiguous: bool,
    },
}

/// A classified failure of a refresh. Never contains a secret.
#[derive(Debug, Clone)]
pub struct RefreshError {
    /// Terminal, configuration or transient.
    pub class: ErrorClass,
    /// Short machine-readable reason: the provider's error code
    /// (`refresh_token_reused`, `invalid_grant`) or ours (`http_503`, `timeout`).
    pub reason: String,
    /// One line for humans, no secrets.
    pub message: String,
    /// The server's `Retry-After`, if any.
    pub retry_after: Option<Duration>,
    /// What to do about it, when more specific than the class's generic advice.
    pub hint: Option<String>,
}

impl RefreshError {
    /// A transient failure.
    pub fn transient(
        reason: impl Into<String>,
        message: impl Into<String>,
        ambiguous: bool,
    ) -> Self {
        RefreshError {
            class: ErrorClass::Transient { ambiguous },
            reason: reason.into(),
            message: message.into(),
            retry_after: None,
            hint: None,
        }
    }

    /// A terminal failure: relogin required.
    pub fn relogin(reason: impl Into<String>, message: impl Into<String>) -> Self {
        RefreshError {
            class: ErrorClass::Relogin,
            reason: reason.into(),
            message: message.into(),
            retry_after: None,
            hint: None,
        }
    }

    /// A configuration failure.
    pub fn configuration(reason: impl Into<String>, message: impl Into<String>) -> Self {
        RefreshError {
            class: ErrorClass::Configuration,
            reason: reason.into(),
            message: message.into(),
            retry_after: None,
            hint: None,
        }
    }

    /// True if the request may have been processed by the server.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self.class, ErrorClass::Transient { ambiguous: true })
    }

    /// Removes the credentials that were sent from the texts of this error. A
    /// server's `error_description` is quoted in messages, logs and `status`,
    /// and a careless server may echo the submitted token in it.
    pub fn redacting(mut self, creds: &Credentials) -> Self {
        use oauth_broker_proto::ExposeSecret;
        let secrets = [
            Some(&creds.refresh_token),
            creds.access_token.as_ref(),
            creds.id_token.as_ref(),
        ];
        for secret in secrets.into_iter().flatten() {
            let secret = secret.expose_secret();
            // Short values cannot be tokens and would mangle ordinary words.
            if secret.len() >= 8 {
                self.message = self.message.replace(secret, "[REDACTED]");
                self.reason = self.reason.replace(secret, "[REDACTED]");
                if let Some(hint) = &mut self.hint {
                    *hint = hint.replace(secret, "[REDACTED]");
                }
            }
        }
        self
    }
}

impl fmt::Display for RefreshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.reason)
    }
}

/// Spends the refresh token (or whatever a provider's "refresh" is).
pub trait Refresher: Send + Sync + 'static {
    /// Obtains new credentials from `current`. The result is complete: fields the
    /// server did not return are carried over from `current`.
    fn refresh<'a>(
        &'a self,
        current: &'a Credentials,
    ) -> BoxFuture<'a, Result<Credentials, RefreshError>>;

    /// Best-effort revocation at the server (RFC 7009) before a logout. Returns
    /// whether the server confirmed it.
    fn revoke<'a>(&'a self, current: &'a Credentials) -> BoxFuture<'a, bool>;
}

/// The refresher for a provider: an RFC 6749 refresh, or GitHub Copilot's
/// session-token exchange.
pub fn refresher_for(
    http: reqwest::Client,
    provider: std::sync::Arc<crate::provider::ProviderSpec>,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
) -> std::sync::Arc<dyn Refresher> {
    match provider.refresh_kind {
        crate::provider::RefreshKind::OAuth => {
            std::sync::Arc::new(OAuthRefresher::new(http, provider, clock))
        }
        crate::provider::RefreshKind::CopilotExchange => {
            std::sync::Arc::new(CopilotRefresher::new(http, provider, clock))
        }
    }
}
