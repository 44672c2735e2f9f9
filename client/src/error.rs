//! The client's error type.
//!
//! It mirrors the protocol's [`ErrorCode`]s one variant per code, so that an agent
//! can react to the *kind* of failure (fall back to another provider on
//! [`Error::ReloginRequired`], retry later on [`Error::UpstreamUnavailable`], tell
//! the user to start the broker on [`Error::Unreachable`]) without parsing text.
//! No variant ever carries a secret: messages come from the broker, which never
//! puts tokens in them, or from local I/O errors.

use oauth_broker_proto::{ErrorCode, ErrorFrame};
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Hint for [`Error::Unreachable`].
const START_BROKER_HINT: &str =
    "start the broker (`systemctl --user start oauth-broker` or run `brokerd`), or point OAUTH_BROKER_SOCKET at its socket";

/// Hint for [`Error::UntrustedPeer`].
const UNTRUSTED_PEER_HINT: &str =
    "point XDG_RUNTIME_DIR or OAUTH_BROKER_SOCKET at a directory only you can write, for both brokerd and its clients, and report the socket's owner to the administrator";

/// Everything that can go wrong talking to the broker.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The account has no login yet.
    NotLoggedIn {
        /// The broker's message.
        message: String,
        /// What to do, e.g. "run `brokerctl relogin`".
        hint: Option<String>,
    },
    /// The authorization server refused the refresh token for good; only a new
    /// login (or import) helps. Agents typically switch to a fallback provider.
    ReloginRequired {
        /// Why, e.g. `refresh_token_reused` or `refresh_interrupted`.
        reason: Option<String>,
        /// The broker's message.
        message: String,
        /// What to do.
        hint: Option<String>,
    },
    /// The token endpoint is unreachable or failing and no cached token is valid.
    UpstreamUnavailable {
        /// When a retry may succeed, if the broker knows.
        retry_after: Option<Duration>,
        /// The broker's message.
        message: String,
        /// What to do.
        hint: Option<String>,
    },
    /// The broker refused this user.
    PermissionDenied {
        /// The broker's message.
        message: String,
        /// What to do.
        hint: Option<String>,
    },
    /// The broker did not accept the request (also: a feature it does not
    /// implement yet).
    BadRequest {
        /// The broker's message.
        message: String,
        /// What to do.
        hint: Option<String>,
    },
    /// The broker speaks another protocol version.
    UnsupportedProtocol {
        /// The broker's message.
        message: String,
        /// What to do.
        hint: Option<String>,
    },
    /// The broker is at its connection limit or already running a login.
    Busy {
        /// When a retry may succeed, if the broker knows.
        retry_after: Option<Duration>,
        /// The broker's message.
        message: String,
        /// What to do.
        hint: Option<String>,
    },
    /// A bug or unexpected local failure inside the broker.
    Internal {
        /// The broker's message.
        message: String,
        /// What to do.
        hint: Option<String>,
    },
    /// No broker answers at `path` (not running, wrong socket or account).
    Unreachable {
        /// The socket tried.
        path: PathBuf,
        /// Why the connect failed.
        source: io::Error,
    },
    /// The broker did not answer in time.
    Timeout {
        /// What was being waited for: `connect`, `handshake`, `request`, `login`.
        operation: &'static str,
        /// The limit that ran out.
        after: Duration,
    },
    /// The connection failed after it was established.
    Io {
        /// The I/O error.
        source: io::Error,
    },
    /// The broker sent something this client does not understand (a malformed or
    /// unexpected frame, or a protocol version it did not ask for).
    Protocol {
        /// What was wrong.
        message: String,
    },
    /// The client's own configuration is unusable, e.g. an account name with a
    /// `/` in it.
    Config {
        /// What is wrong.
        message: String,
    },
    /// The socket is served by another (non-root) user: an impostor may have
    /// created the socket's directory first (easy under `/tmp`), so nothing is
    /// sent to it.
    UntrustedPeer {
        /// The socket connected to.
        path: PathBuf,
        /// The uid of the process serving it.
        uid: u32,
    },
}

impl Error {
    /// Builds the error for an error frame received from the broker.
    pub fn from_frame(frame: ErrorFrame) -> Error {
        let ErrorFrame {
            code,
            message,
            hint,
            retry_after_secs,
            reason,
        } = frame;
        let retry_after = retry_after_secs.map(Duration::from_secs);
        match code {
            ErrorCode::NotLoggedIn => Error::NotLoggedIn { message, hint },
            ErrorCode::ReloginRequired => Error::ReloginRequired {
                reason,
                message,
                hint,
            },
            ErrorCode::UpstreamUnavailable => Error::UpstreamUnavailable {
                retry_after,
                message,
                hint,
            },
            ErrorCode::PermissionDenied => Error::PermissionDenied { message, hint },
            ErrorCode::BadRequest => Error::BadRequest { message, hint },
            ErrorCode::UnsupportedProtocol => Error::UnsupportedProtocol { message, hint },
            ErrorCode::Busy => Error::Busy {
                retry_after,
                message,
                hint,
            },
            ErrorCode::Internal => Error::Internal { message, hint },
        }
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Error {
        Error::Protocol {
            message: message.into(),
        }
    }

    /// The protocol error code, for errors that came from the broker.
    pub fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            Error::NotLoggedIn { .. } => ErrorCode::NotLoggedIn,
            Error::ReloginRequired { .. } => ErrorCode::ReloginRequired,
            Error::UpstreamUnavailable { .. } => ErrorCode::UpstreamUnavailable,
            Error::PermissionDenied { .. } => ErrorCode::PermissionDenied,
            Error::BadRequest { .. } => ErrorCode::BadRequest,
            Error::UnsupportedProtocol { .. } => ErrorCode::UnsupportedProtocol,
            Error::Busy { .. } => ErrorCode::Busy,
            Error::Internal { .. } => ErrorCode::Internal,
            Error::Unreachable { .. }
            | Error::Timeout { .. }
            | Error::Io { .. }
            | Error::Protocol { .. }
            | Error::Config { .. }
            | Error::UntrustedPeer { .. } => return None,
        })
    }

    /// The refresh token was refused for good: a human must log in again.
    pub fn is_relogin_required(&self) -> bool {
        matches!(self, Error::ReloginRequired { .. })
    }

    /// The account was never logged in (or was logged out).
    pub fn is_not_logged_in(&self) -> bool {
        matches!(self, Error::NotLoggedIn { .. })
    }

    /// Either of the above: no token until someone runs `brokerctl relogin` (or
    /// `import`). Retrying will not help; falling back to another provider might.
    pub fn needs_login(&self) -> bool {
        self.is_relogin_required() || self.is_not_logged_in()
    }

    /// No broker listens on the socket.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Error::Unreachable { .. })
    }

    /// A later retry of the same request may succeed without anybody doing
    /// anything: upstream trouble, a busy or slow broker, a dropped connection.
    /// Not retryable: login problems, an unreachable broker (someone has to start
    /// it), refusals and bugs.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::UpstreamUnavailable { .. }
                | Error::Busy { .. }
                | Error::Timeout { .. }
                | Error::Io { .. }
        )
    }

    /// How long to wait before retrying, when the broker said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::UpstreamUnavailable { retry_after, .. } | Error::Busy { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// What to do about it, usually a command to run.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::NotLoggedIn { hint, .. }
            | Error::ReloginRequired { hint, .. }
            | Error::UpstreamUnavailable { hint, .. }
            | Error::PermissionDenied { hint, .. }
            | Error::BadRequest { hint, .. }
            | Error::UnsupportedProtocol { hint, .. }
            | Error::Busy { hint, .. }
            | Error::Internal { hint, .. } => hint.as_deref(),
            Error::Unreachable { .. } => Some(START_BROKER_HINT),
            Error::Timeout { .. } => Some("the broker may be stuck; check `brokerctl status`"),
            Error::Io { .. } => Some("the broker may have restarted; retry"),
            Error::UntrustedPeer { .. } => Some(UNTRUSTED_PEER_HINT),
            Error::Protocol { .. } | Error::Config { .. } => None,
        }
    }

    /// The reason of a [`Error::ReloginRequired`], e.g. `refresh_token_reused`.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Error::ReloginRequired { reason, .. } => reason.as_deref(),
            _ => None,
        }
    }

    /// True when the connection this error happened on cannot be used any more.
    /// Error frames are ordinary answers; everything else leaves the stream in an
    /// unknown state.
    pub(crate) fn breaks_connection(&self) -> bool {
        self.code().is_none()
    }

    /// True when the error means the peer went away (the broker restarted), which
    /// makes a transparent reconnect of an idempotent request worthwhile.
    pub(crate) fn is_connection_lost(&self) -> bool {
        match self {
            Error::Io { source } => matches!(
                source.kind(),
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::NotConnected
            ),
            _ => false,
        }
    }
}

impl From<ErrorFrame> for Error {
    fn from(frame: ErrorFrame) -> Self {
        Error::from_frame(frame)
    }
}

/// Writes `text` on one line: a broker message with a stray newline must not
/// break the one-line error output of tools built on this crate.
fn one_line(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    for (i, part) in text
        .split(['\n', '\r'])
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        if i > 0 {
            f.write_str(" ")?;
        }
        f.write_str(part)?;
    }
    Ok(())
}

impl fmt::Display for Error {
    /// One line: the message, the reason or retry delay when known, then
    /// `(hint: …)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotLoggedIn { message, .. }
            | Error::PermissionDenied { message, .. }
            | Error::BadRequest { message, .. }
            | Error::UnsupportedProtocol { message, .. }
            | Error::Internal { message, .. }
            | Error::Protocol { message }
            | Error::Config { message } => one_line(f, message)?,
            Error::ReloginRequired {
                reason, message, ..
            } => {
                one_line(f, message)?;
                if let Some(reason) = reason.as_deref().filter(|r| !message.contains(r)) {
                    write!(f, " (reason: ")?;
                    one_line(f, reason)?;
                    f.write_str(")")?;
                }
            }
            Error::UpstreamUnavailable {
                retry_after,
                message,
                ..
            }
            | Error::Busy {
                retry_after,
                message,
                ..
            } => {
                one_line(f, message)?;
                if let Some(after) = retry_after {
                    write!(f, "; retry after {} s", after.as_secs())?;
                }
            }
            Error::Unreachable { path, source } => write!(
                f,
                "cannot reach oauth-broker at {}: {source}",
                path.display()
            )?,
            Error::Timeout { operation, after } => write!(
                f,
                "oauth-broker did not answer ({operation}) within {} s",
                after.as_secs_f64()
            )?,
            Error::Io { source } => write!(f, "connection to oauth-broker failed: {source}")?,
            Error::UntrustedPeer { path, uid } => write!(
                f,
                "the socket at {} is served by uid {uid}, not by this user or root — refusing \
                 to talk to it (a fallback socket under /tmp could have been created by another \
                 user)",
                path.display()
            )?,
        }
        if let Some(hint) = self.hint() {
            f.write_str(" (hint: ")?;
            one_line(f, hint)?;
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Unreachable { source, .. } | Error::Io { source } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_to_its_variant_and_back() {
        for code in [
            ErrorCode::NotLoggedIn,
            ErrorCode::ReloginRequired,
            ErrorCode::UpstreamUnavailable,
            ErrorCode::PermissionDenied,
            ErrorCode::BadRequest,
            ErrorCode::UnsupportedProtocol,
            ErrorCode::Busy,
            ErrorCode::Internal,
        ] {
            let err = Error::from(ErrorFrame::new(code, "m").with_hint("h"));
            assert_eq!(err.code(), Some(code));
            assert_eq!(err.hint(), Some("h"));
            assert!(!err.breaks_connection());
        }
    }

    #[test]
    fn classification_helpers() {
        let relogin = Error::from(
            ErrorFrame::new(ErrorCode::ReloginRequired, "refresh token refused")
                .with_reason("refresh_token_reused")
                .with_hint("run `brokerctl relogin`"),
        );
        assert!(relogin.is_relogin_required() && relogin.needs_login());
        assert!(!relogin.is_retryable());
        assert_eq!(relogin.reason(), Some("refresh_token_reused"));
        assert_eq!(
            relogin.to_string(),
            "refresh token refused (reason: refresh_token_reused) (hint: run `brokerctl relogin`)"
        );

        let not_logged_in = Error::from(ErrorFrame::new(ErrorCode::NotLoggedIn, "no login"));
        assert!(not_logged_in.is_not_logged_in() && not_logged_in.needs_login());
        assert_eq!(not_logged_in.to_string(), "no login");

        let upstream = Error::from(
            ErrorFrame::new(ErrorCode::UpstreamUnavailable, "token endpoint down")
                .with_retry_after(30),
        );
        assert!(upstream.is_retryable() && !upstream.needs_login());
        assert_eq!(upstream.retry_after(), Some(Duration::from_secs(30)));
        assert_eq!(
            upstream.to_string(),
            "token endpoint down; retry after 30 s"
        );

        let unreachable = Error::Unreachable {
            path: "/run/user/1/oauth-broker/default.sock".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert!(unreachable.is_unreachable() && !unreachable.is_retryable());
        assert_eq!(unreachable.code(), None);
        assert!(unreachable.breaks_connection());
        assert!(unreachable.to_string().contains("default.sock"));
        assert!(unreachable.to_string().contains("(hint: start the broker"));
    }

    #[test]
    fn display_is_one_line_even_for_multiline_messages() {
        let err = Error::from(
            ErrorFrame::new(ErrorCode::Internal, "line one\nline two\r\n").with_hint("a\nb"),
        );
        assert_eq!(err.to_string(), "line one line two (hint: a b)");
    }

    #[test]
    fn reason_already_in_message_is_not_repeated() {
        let err = Error::from(
            ErrorFrame::new(ErrorCode::ReloginRequired, "refresh_token_reused: refused")
                .with_reason("refresh_token_reused"),
        );
        assert_eq!(err.to_string(), "refresh_token_reused: refused");
    }

    #[test]
    fn lost_connection_is_recognised() {
        let eof = Error::Io {
            source: io::Error::from(io::ErrorKind::UnexpectedEof),
        };
        assert!(eof.is_connection_lost() && eof.breaks_connection());
        let timeout = Error::Timeout {
            operation: "request",
            after: Duration::from_secs(1),
        };
        assert!(!timeout.is_connection_lost() && timeout.breaks_connection());
    }
}
