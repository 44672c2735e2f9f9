//! The one place where domain errors become wire error frames (like
//! ssh-agent-lib's error → protocol mapping). The manager, the login flows and
//! the projection targets report typed errors; what a client reads — code,
//! message, hint, reason, retry-after — is assembled here.

use crate::login::PasteError;
use crate::manager::{AdoptError, LogoutError, TokenError};
use crate::projection::ProjectionError;
use crate::proxy::keys::KeyError;
use oauth_broker_proto::{ErrorCode, ErrorFrame};

impl From<TokenError> for ErrorFrame {
    fn from(e: TokenError) -> ErrorFrame {
        let mut frame = ErrorFrame::new(e.code(), e.to_string()).with_hint(e.hint());
        if let Some(reason) = e.reason() {
            frame = frame.with_reason(reason);
        }
        if let Some(secs) = e.retry_after_secs() {
            frame = frame.with_retry_after(secs);
        }
        frame
    }
}

impl From<AdoptError> for ErrorFrame {
    fn from(e: AdoptError) -> ErrorFrame {
        ErrorFrame::new(e.code(), e.to_string()).with_hint(e.hint())
    }
}

impl From<LogoutError> for ErrorFrame {
    fn from(e: LogoutError) -> ErrorFrame {
        ErrorFrame::new(e.code(), e.to_string())
    }
}

impl From<ProjectionError> for ErrorFrame {
    fn from(e: ProjectionError) -> ErrorFrame {
        let hint = e.hint();
        let frame = ErrorFrame::new(e.code(), e.to_string());
        match hint {
            Some(hint) => frame.with_hint(hint),
            None => frame,
        }
    }
}

impl From<PasteError> for ErrorFrame {
    fn from(e: PasteError) -> ErrorFrame {
        let hint = e.hint();
        let frame = ErrorFrame::new(e.code(), e.to_string());
        match hint {
            Some(hint) => frame.with_hint(hint),
            None => frame,
        }
    }
}

impl From<KeyError> for ErrorFrame {
    fn from(e: KeyError) -> ErrorFrame {
        let code = match e {
            KeyError::Io(_) => ErrorCode::Internal,
            _ => ErrorCode::BadRequest,
        };
        let hint = e.hint();
        let frame = ErrorFrame::new(code, e.to_string());
        match hint {
            Some(hint) => frame.with_hint(hint),
            None => frame,
        }
    }
}

/// A request other than `complete_login` on a connection whose login runs.
pub fn busy_with_login(request: &str) -> ErrorFrame {
    ErrorFrame::new(
        ErrorCode::BadRequest,
        format!(
            "a login is running on this connection; `{request}` must wait until it ends (only complete_login is accepted meanwhile)"
        ),
    )
    .with_hint("use another connection for other requests")
}

/// An unreadable request on a connection whose login runs.
pub fn malformed_during_login(why: &str) -> ErrorFrame {
    ErrorFrame::new(ErrorCode::BadRequest, format!("malformed request: {why}"))
}

/// Bad import input (the tokens cannot be adopted as they are).
pub fn bad_import(message: &str, hint: &str) -> ErrorFrame {
    ErrorFrame::new(ErrorCode::BadRequest, message).with_hint(hint)
}

/// A blocking task of a command died (a bug).
pub fn internal(message: String) -> ErrorFrame {
    ErrorFrame::new(ErrorCode::Internal, message)
}
