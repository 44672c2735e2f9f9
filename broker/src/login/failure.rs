//! Why a login failed, in the shape the protocol carries: a protocol error code
//! (`relogin_required`, `bad_request`, `upstream_unavailable`, `busy`,
//! `internal`), one line that names the provider's reason (`access_denied`,
//! `expired_token`, …) and a hint with the command to run.

use super::pacing::Stop;
use crate::manager::errors;
use crate::oauth::{ErrorClass, RefreshError};
use oauth_broker_proto::{ErrorCode, LoginEvent};

/// A failed login. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginFailure {
    /// Protocol error code.
    pub code: ErrorCode,
    /// One line; names the provider's reason when there is one.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl LoginFailure {
    /// A failure with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        LoginFailure {
            code,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint (builder style).
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The user (or the server) ended the login for good: denied, expired,
    /// refused code. Running the login again is the fix.
    pub fn retry_login(account: &str, message: impl Into<String>) -> Self {
        LoginFailure::new(ErrorCode::ReloginRequired, message).with_hint(format!(
            "run `{}` to try again",
            errors::ctl(account, "relogin")
        ))
    }

    /// The configuration cannot work (no endpoint, refused endpoint, unknown
    /// client): the config file must change.
    pub fn configuration(config_source: &str, message: impl Into<String>) -> Self {
        LoginFailure::new(ErrorCode::BadRequest, message).with_hint(format!(
            "check the provider settings in {config_source}, then restart brokerd"
        ))
    }

    /// The user code of a device login expired before the login was approved.
    pub fn code_expired(account: &str) -> Self {
        LoginFailure::retry_login(
            account,
            "the code expired before the login was approved (expired_token)",
        )
    }

    /// A device login's polling stopped before an answer.
    pub fn stopped(stop: Stop, account: &str) -> Self {
        match stop {
            Stop::Expired => LoginFailure::code_expired(account),
            Stop::Cancelled => LoginFailure::cancelled(),
        }
    }

    /// The login was cancelled because the client that asked for it went away.
    pub fn cancelled() -> Self {
        LoginFailure::new(
            ErrorCode::BadRequest,
            "the login was cancelled (the client that started it disconnected)",
        )
    }

    /// Maps a classified token-endpoint failure met during `what` (e.g. "the
    /// code exchange") onto a login failure.
    pub fn from_refresh_error(
        what: &str,
        e: &RefreshError,
        account: &str,
        config_source: &str,
    ) -> Self {
        let message = format!("{what} failed: {} ({})", e.message, e.reason);
        match e.class {
            ErrorClass::Relogin => LoginFailure::retry_login(account, message),
            ErrorClass::Configuration => match &e.hint {
                Some(hint) => LoginFailure::new(ErrorCode::BadRequest, message).with_hint(hint),
                None => LoginFailure::configuration(config_source, message),
            },
            ErrorClass::Transient { .. } => {
                LoginFailure::new(ErrorCode::UpstreamUnavailable, message).with_hint(format!(
                    "check the network or the provider's status, then run `{}` again",
                    errors::ctl(account, "relogin")
                ))
            }
        }
    }

    /// The final `error` event of the login stream.
    pub fn into_event(self) -> LoginEvent {
        LoginEvent::Error {
            code: self.code.as_str().to_string(),
            message: self.message,
            hint: self.hint,
        }
    }
}

impl std::fmt::Display for LoginFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_map_to_protocol_codes() {
        let map = |e: RefreshError| LoginFailure::from_refresh_error("x", &e, "default", "c.toml");
        assert_eq!(
            map(RefreshError::relogin("invalid_grant", "m")).code,
            ErrorCode::ReloginRequired
        );
        assert_eq!(
            map(RefreshError::configuration("invalid_client", "m")).code,
            ErrorCode::BadRequest
        );
        let t = map(RefreshError::transient("http_503", "m", false));
        assert_eq!(t.code, ErrorCode::UpstreamUnavailable);
        assert!(t.message.contains("http_503"), "{}", t.message);
        let LoginEvent::Error { code, .. } = t.into_event() else {
            panic!("not an error event")
        };
        assert_eq!(code, "upstream_unavailable");
    }
}
