//! Login requests and the events a login streams back.

use serde::{Deserialize, Serialize};

/// How to log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginMethod {
    /// Device authorization grant (RFC 8628) or the provider's device scheme.
    Device,
    /// Authorization code + PKCE with a loopback redirect (RFC 8252).
    Browser,
}

/// Progress of a login, streamed to the client that asked for it. `brokerctl
/// relogin --json` prints each event as one JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LoginEvent {
    /// Show the user where to go and what code to enter.
    DeviceCode {
        /// Where the user enters the code.
        verification_uri: String,
        /// The same with the code filled in, when the server offers it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        verification_uri_complete: Option<String>,
        /// The code to enter.
        user_code: String,
        /// Seconds until the code expires.
        expires_in: u64,
    },
    /// Open this URL in a browser (it is also printed for headless use).
    AuthorizeUrl {
        /// The authorization URL.
        url: String,
        /// The loopback redirect the broker listens on, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        redirect_uri: Option<String>,
    },
    /// The login succeeded and is persisted.
    LoggedIn {
        /// Account name.
        account: String,
        /// Access-token expiry, unix seconds.
        expires_at: u64,
        /// Provider account id, if known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account_id: Option<String>,
    },
    /// The login failed; the previous login (if any) is untouched.
    Error {
        /// Protocol error code.
        code: String,
        /// One line.
        message: String,
        /// What to do.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hint: Option<String>,
    },
}

impl LoginEvent {
    /// True for the events that end a login stream.
    pub fn is_final(&self) -> bool {
        matches!(self, LoginEvent::LoggedIn { .. } | LoginEvent::Error { .. })
    }
}
