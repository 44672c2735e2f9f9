//! The closed set of error codes and the error frame that carries them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why the broker refused a request. The set is closed and the names are stable:
/// clients switch on them (for example to fall back to another provider on
/// [`ErrorCode::ReloginRequired`]) instead of parsing text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The account has no login yet: run `brokerctl relogin` or `brokerctl import`.
    NotLoggedIn,
    /// The authorization server refused the refresh token for good (reused,
    /// expired, revoked, …); only a new login helps. `ErrorFrame::reason` says why.
    ReloginRequired,
    /// The token endpoint cannot be reached or answers with transient errors and
    /// no cached token is valid any more. `retry_after_secs` says when to retry.
    UpstreamUnavailable,
    /// The peer's uid is not allowed to use this broker.
    PermissionDenied,
    /// The request could not be parsed or is not valid in this state.
    BadRequest,
    /// The client speaks a protocol version the broker does not.
    UnsupportedProtocol,
    /// The broker is at its connection limit or already running a login.
    Busy,
    /// A bug or an unexpected local failure in the broker.
    Internal,
}

impl ErrorCode {
    /// The stable snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotLoggedIn => "not_logged_in",
            ErrorCode::ReloginRequired => "relogin_required",
            ErrorCode::UpstreamUnavailable => "upstream_unavailable",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnsupportedProtocol => "unsupported_protocol",
            ErrorCode::Busy => "busy",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answer. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    /// What went wrong, machine-readable.
    pub code: ErrorCode,
    /// One line for humans.
    pub message: String,
    /// What to do about it, usually a command to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// For `upstream_unavailable` and `busy`: when a retry may succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// For `relogin_required`: the provider's reason, e.g. `refresh_token_reused`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ErrorFrame {
    /// An error frame with a code and a message and nothing else.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorFrame {
            code,
            message: message.into(),
            hint: None,
            retry_after_secs: None,
            reason: None,
        }
    }

    /// Adds a hint (builder style).
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds `retry_after_secs` (builder style).
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// Adds the reason (builder style).
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

impl fmt::Display for ErrorFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(reason) = &self.reason {
            write!(f, " (reason: {reason})")?;
        }
        if let Some(secs) = self.retry_after_secs {
            write!(f, " (retry after {secs}s)")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ErrorFrame {}
