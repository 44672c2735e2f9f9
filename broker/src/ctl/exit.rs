//! Exit codes and the one-line error report.
//!
//! Scripts branch on the exit code, so the codes distinguish what a caller can
//! do about a failure: log in again (2), start the broker (3), retry later (4).
//! Usage errors use 64 (`EX_USAGE`) instead of clap's default 2, which would
//! read as "relogin required".

use oauth_broker_client::Error;
use std::process::ExitCode;

/// Success (for `status`: the broker can serve tokens).
pub const OK: u8 = 0;
/// Anything not covered below.
pub const OTHER: u8 = 1;
/// Not logged in, or the login is dead: run `brokerctl relogin`.
pub const NEEDS_LOGIN: u8 = 2;
/// No broker answers on the socket.
pub const UNREACHABLE: u8 = 3;
/// The token endpoint is failing and no cached token is valid: retry later.
pub const UPSTREAM_UNAVAILABLE: u8 = 4;
/// Bad command line (or an unusable `--account`).
pub const USAGE: u8 = 64;

/// The exit-code table for `--help`.
pub const HELP: &str = "\
Exit codes:
  0   success (status: the broker can serve tokens)
  1   any other error
  2   not logged in, or a new login is required: run `brokerctl relogin`
  3   broker unreachable: not running, or wrong --socket/--account
  4   upstream unavailable: the token endpoint is failing, retry later
  64  usage error

Environment:
  OAUTH_BROKER_SOCKET   socket path (same as --socket)
  OAUTH_BROKER_ACCOUNT  account name (same as --account)";

/// The exit code for a failed request.
pub fn code_for(err: &Error) -> u8 {
    if err.needs_login() {
        NEEDS_LOGIN
    } else if err.is_unreachable() {
        UNREACHABLE
    } else if matches!(err, Error::UpstreamUnavailable { .. }) {
        UPSTREAM_UNAVAILABLE
    } else if matches!(err, Error::Config { .. }) {
        USAGE
    } else {
        OTHER
    }
}

/// Prints `brokerctl: <message> (hint: …)` on stderr. The client's errors never
/// contain a token, so this cannot leak one.
pub fn report(message: impl std::fmt::Display) {
    eprintln!("brokerctl: {message}");
}

/// Reports a failed request and returns its exit code.
pub fn fail(err: &Error) -> ExitCode {
    report(err);
    ExitCode::from(code_for(err))
}

/// Reports `message` and returns `code` (for failures that are not a request's).
pub fn fail_with(code: u8, message: impl std::fmt::Display) -> ExitCode {
    report(message);
    ExitCode::from(code)
}

/// Writes `text` to stdout: success, or the report that it could not be written.
pub fn print(text: &str) -> ExitCode {
    match super::output::stdout(text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => stdout_failed(err),
    }
}

/// Reports that stdout could not be written (e.g. the reader exited).
pub fn stdout_failed(err: std::io::Error) -> ExitCode {
    report(format_args!("cannot write to standard output: {err}"));
    ExitCode::from(OTHER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth_broker_client::proto::{ErrorCode, ErrorFrame};

    #[test]
    fn codes_follow_what_the_caller_can_do() {
        let from = |code| Error::from(ErrorFrame::new(code, "m"));
        assert_eq!(code_for(&from(ErrorCode::NotLoggedIn)), NEEDS_LOGIN);
        assert_eq!(code_for(&from(ErrorCode::ReloginRequired)), NEEDS_LOGIN);
        assert_eq!(
            code_for(&from(ErrorCode::UpstreamUnavailable)),
            UPSTREAM_UNAVAILABLE
        );
        for code in [
            ErrorCode::PermissionDenied,
            ErrorCode::BadRequest,
            ErrorCode::UnsupportedProtocol,
            ErrorCode::Busy,
            ErrorCode::Internal,
        ] {
            assert_eq!(code_for(&from(code)), OTHER);
        }
        let unreachable = Error::Unreachable {
            path: "/x".into(),
            source: std::io::ErrorKind::NotFound.into(),
        };
        assert_eq!(code_for(&unreachable), UNREACHABLE);
        let config = Error::Config {
            message: "bad account".into(),
        };
        assert_eq!(code_for(&config), USAGE);
    }
}
