//! Why the manager could not do what was asked, as domain errors. Every one
//! names the cause and the command that fixes it; its protocol code is typed
//! ([`ErrorCode`]). Only the server turns them into wire error frames
//! (`server/wire_error.rs`).

use oauth_broker_proto::ErrorCode;
use std::time::Duration;

/// Reason recorded when a refresh that may have been processed by the server (a
/// crash or a lost connection mid-refresh) is followed by a refusal.
pub const REFRESH_INTERRUPTED: &str = "refresh_interrupted";

/// Reason recorded when the provider rotated the refresh token while the state
/// directory could not be written, and brokerd stopped before it could be: the
/// rotated token is lost and the one on disk is already spent. Spending it
/// again would make a strict provider revoke the whole token family.
pub const ROTATION_NOT_PERSISTED: &str = "rotation_not_persisted";

/// `brokerctl` invocation for this account, e.g. `brokerctl --account work relogin`.
pub fn ctl(account: &str, sub: &str) -> String {
    if account == crate::paths::DEFAULT_ACCOUNT {
        format!("brokerctl {sub}")
    } else {
        format!("brokerctl --account {account} {sub}")
    }
}

/// The message for a relogin reason.
pub fn relogin_message(reason: &str, detail: &str) -> String {
    if reason == REFRESH_INTERRUPTED {
        "an interrupted refresh (crash or lost connection) may have let the server rotate the refresh token without the broker learning the new one; the server now refuses it".to_string()
    } else if reason == ROTATION_NOT_PERSISTED {
        "the state directory was full or read-only when the provider rotated the refresh token; the rotated token was lost when brokerd stopped, and the one on disk is already spent (not sent again: a strict provider would revoke the whole login)".to_string()
    } else {
        detail.to_string()
    }
}

/// The hint given with every `relogin_required`.
pub fn relogin_hint(account: &str) -> String {
    format!("run `{}` to log in again", ctl(account, "relogin"))
}

/// The hint for a relogin with this reason.
pub fn relogin_hint_for(account: &str, reason: &str) -> String {
    if reason == ROTATION_NOT_PERSISTED {
        format!(
            "free disk space in the state directory (or make it writable), then run `{}`",
            ctl(account, "relogin")
        )
    } else {
        relogin_hint(account)
    }
}

/// No login yet.
pub fn not_logged_in(account: &str) -> TokenError {
    TokenError::NotLoggedIn {
        account: account.to_string(),
    }
}

/// The refresh token is dead.
pub fn relogin_required(account: &str, reason: &str, message: &str) -> TokenError {
    TokenError::ReloginRequired {
        account: account.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
    }
}

/// Why no token can be served (`Token`, `Unauthorized`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No login yet.
    #[error("account {account:?} has no login yet")]
    NotLoggedIn {
        /// The account served.
        account: String,
    },
    /// The refresh token is dead.
    #[error("{message}")]
    ReloginRequired {
        /// The account served (for the hint).
        account: String,
        /// The provider's reason (`refresh_token_reused`, …) or
        /// [`REFRESH_INTERRUPTED`].
        reason: String,
        /// One line explaining it.
        message: String,
    },
    /// No valid token and the token endpoint is failing.
    #[error("{message}")]
    Unavailable {
        /// One line naming the last failure.
        message: String,
        /// The last failure's own hint, if it had one.
        hint: Option<String>,
        /// Time until the next attempt.
        retry_after: Duration,
    },
    /// The manager stopped while the request waited.
    #[error("the broker is shutting down")]
    ShuttingDown,
}

impl TokenError {
    /// The protocol code.
    pub fn code(&self) -> ErrorCode {
        match self {
            TokenError::NotLoggedIn { .. } => ErrorCode::NotLoggedIn,
            TokenError::ReloginRequired { .. } => ErrorCode::ReloginRequired,
            TokenError::Unavailable { .. } => ErrorCode::UpstreamUnavailable,
            TokenError::ShuttingDown => ErrorCode::Internal,
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            TokenError::NotLoggedIn { account } => format!(
                "run `{}` (or `{}` to hand over existing tokens)",
                ctl(account, "relogin"),
                ctl(account, "import FILE")
            ),
            TokenError::ReloginRequired {
                account, reason, ..
            } => relogin_hint_for(account, reason),
            TokenError::Unavailable { hint, .. } => hint.clone().unwrap_or_else(|| {
                "the broker retries by itself with backoff; check the network or the provider's status"
                    .to_string()
            }),
            TokenError::ShuttingDown => "retry in a moment".to_string(),
        }
    }

    /// The relogin reason, for `relogin_required`.
    pub fn reason(&self) -> Option<&str> {
        match self {
            TokenError::ReloginRequired { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// Whole seconds until a retry makes sense (at least 1), for
    /// `upstream_unavailable`.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            TokenError::Unavailable { retry_after, .. } => {
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                Some(secs.max(1))
            }
            _ => None,
        }
    }
}

/// Why imported or freshly logged-in tokens were not adopted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdoptError {
    /// An old copy of tokens the broker already rotated (importing the same
    /// auth.json twice, say): spending it would look like reuse.
    #[error("this refresh token was already spent by the broker, which holds a newer one")]
    AlreadySpent,
    /// The broker holds this very refresh token and the provider refused it.
    #[error("the provider already refused this refresh token ({reason})")]
    AlreadyRefused {
        /// The account served (for the hint).
        account: String,
        /// The provider's reason.
        reason: String,
    },
    /// The state could not be written, so the tokens were not taken over.
    #[error("the tokens were not adopted: {0}")]
    NotPersisted(String),
    /// Another account's broker on this machine holds (or already spent) this
    /// refresh token: two brokers must never spend one token family.
    #[error("this refresh token is {holder}; two brokers must never spend one refresh token")]
    HeldElsewhere {
        /// The account served (for the hint).
        account: String,
        /// Who holds it, as the store describes it.
        holder: String,
        /// The other account.
        holder_account: String,
    },
}

impl AdoptError {
    /// The protocol code.
    pub fn code(&self) -> ErrorCode {
        match self {
            AdoptError::AlreadySpent
            | AdoptError::AlreadyRefused { .. }
            | AdoptError::HeldElsewhere { .. } => ErrorCode::BadRequest,
            AdoptError::NotPersisted(_) => ErrorCode::Internal,
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            AdoptError::AlreadySpent => {
                "nothing to import: the broker's login is newer (see `brokerctl status`)"
                    .to_string()
            }
            AdoptError::AlreadyRefused { account, .. } => relogin_hint(account),
            AdoptError::NotPersisted(_) => {
                "fix the state directory problem above and try again".to_string()
            }
            AdoptError::HeldElsewhere {
                account,
                holder_account,
                ..
            } => format!(
                "give account {account:?} a login of its own (`{}`), or keep using account {holder_account:?}",
                ctl(account, "relogin")
            ),
        }
    }
}

/// Why a logout failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogoutError {
    /// The state file could not be deleted.
    #[error("logout failed: {0}")]
    NotDeleted(String),
}

impl LogoutError {
    /// The protocol code.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::Internal
    }
}
