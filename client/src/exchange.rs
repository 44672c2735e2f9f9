//! What the answers to each request must look like, independent of transport.
//!
//! The blocking and the async client share these functions, so both map every
//! response (and every error frame) the same way.

use crate::token::expiry_from_unix_secs;
use crate::{AccessToken, Error};
use oauth_broker_proto::{
    ErrorCode, ErrorFrame, LoginEvent, ProjectionRestored, Response, StatusReport, Welcome,
};
use std::time::SystemTime;

/// Checks the answer to `Hello`.
pub(crate) fn welcome(response: Response) -> Result<Welcome, Error> {
    match response {
        Response::Welcome(welcome) if welcome.protocol == oauth_broker_proto::PROTOCOL_VERSION => {
            Ok(welcome)
        }
        Response::Welcome(welcome) => Err(Error::protocol(format!(
            "broker {} answered with protocol version {} but this client speaks {}",
            welcome.broker_version,
            welcome.protocol,
            oauth_broker_proto::PROTOCOL_VERSION
        ))),
        other => expected("welcome", other),
    }
}

/// The answer to `Token` and `Unauthorized`.
pub(crate) fn token(response: Response) -> Result<AccessToken, Error> {
    match response {
        Response::Token(grant) => Ok(AccessToken::from(grant)),
        other => expected("token", other),
    }
}

/// The answer to `Status`.
pub(crate) fn status(response: Response) -> Result<StatusReport, Error> {
    match response {
        Response::Status(report) => Ok(*report),
        other => expected("status", other),
    }
}

/// The answer to `Import`: the new access-token expiry, `None` when the broker
/// will refresh before first use (it says `0`).
pub(crate) fn imported(response: Response) -> Result<Option<SystemTime>, Error> {
    match response {
        Response::Imported { expires_at: 0 } => Ok(None),
        // Clamped: an absurd expiry from the broker must not panic the client.
        Response::Imported { expires_at } => Ok(Some(expiry_from_unix_secs(expires_at))),
        other => expected("imported", other),
    }
}

/// The answer to `Logout`: whether the server confirmed the revocation.
pub(crate) fn logged_out(response: Response) -> Result<bool, Error> {
    match response {
        Response::LoggedOut { revoked } => Ok(revoked),
        other => expected("logged_out", other),
    }
}

/// The answer to `ProjectRestore`.
pub(crate) fn project_restored(response: Response) -> Result<ProjectionRestored, Error> {
    match response {
        Response::ProjectRestored(restored) => Ok(restored),
        other => expected("project_restored", other),
    }
}

/// The answer to `ProxyKey`.
pub(crate) fn proxy_key(response: Response) -> Result<oauth_broker_proto::ProxyKeyIssued, Error> {
    match response {
        Response::ProxyKey(issued) => Ok(issued),
        other => expected("proxy_key", other),
    }
}

/// The answer to `ProxyRevoke`: the revoked key's name.
pub(crate) fn proxy_revoked(response: Response) -> Result<String, Error> {
    match response {
        Response::ProxyRevoked { name } => Ok(name),
        other => expected("proxy_revoked", other),
    }
}

/// The answer to `CompleteLogin`: a login event (a final `error` event becomes
/// an error).
pub(crate) fn login_completed(response: Response) -> Result<LoginEvent, Error> {
    match login_step(response)? {
        LoginStep::Progress(event) | LoginStep::Done(event) => Ok(event),
    }
}

/// One frame of a login stream.
pub(crate) enum LoginStep {
    /// Show it and keep reading.
    Progress(LoginEvent),
    /// The final `logged_in` event.
    Done(LoginEvent),
}

/// Classifies one frame of a login stream. A final `error` event becomes an
/// `Err` with the error code it names, so callers handle login failures like
/// any other broker error.
pub(crate) fn login_step(response: Response) -> Result<LoginStep, Error> {
    match response {
        Response::Login(LoginEvent::Error {
            code,
            message,
            hint,
        }) => Err(login_error(&code, message, hint)),
        Response::Login(event) if event.is_final() => Ok(LoginStep::Done(event)),
        Response::Login(event) => Ok(LoginStep::Progress(event)),
        other => expected("login", other),
    }
}

/// Maps the code string of a login `error` event onto the error enum. Codes
/// this client does not know (a newer broker) are reported as internal errors
/// with the code kept in the message.
fn login_error(code: &str, message: String, hint: Option<String>) -> Error {
    match serde_json::from_value::<ErrorCode>(serde_json::Value::String(code.to_string())) {
        Ok(code) => Error::from_frame(ErrorFrame {
            code,
            message,
            hint,
            retry_after_secs: None,
            reason: None,
        }),
        Err(_) => Error::Internal {
            message: format!("login failed ({code}): {message}"),
            hint,
        },
    }
}

/// An error frame becomes the matching error; anything else is a protocol error
/// naming what was expected (never the payload, which may hold a token).
fn expected<T>(wanted: &str, got: Response) -> Result<T, Error> {
    match got {
        Response::Error(frame) => Err(Error::from_frame(frame)),
        other => Err(Error::protocol(format!(
            "expected a {wanted} response from the broker, got {}",
            kind(&other)
        ))),
    }
}

/// The wire name of a response type.
fn kind(response: &Response) -> &'static str {
    match response {
        Response::Welcome(_) => "welcome",
        Response::Token(_) => "token",
        Response::Status(_) => "status",
        Response::Imported { .. } => "imported",
        Response::LoggedOut { .. } => "logged_out",
        Response::Login(_) => "login",
        Response::ProjectRestored(_) => "project_restored",
        Response::ProxyKey(_) => "proxy_key",
        Response::ProxyRevoked { .. } => "proxy_revoked",
        Response::Error(_) => "error",
    }
}

/// The error for a frame that does not decode. Deliberately without the decoder's
/// message, which may quote payload text.
pub(crate) fn malformed() -> Error {
    Error::protocol(
        "the broker sent a response this client does not understand (is the broker newer than this client?)",
    )
}

/// The error for a frame header announcing more than the protocol allows.
pub(crate) fn too_large(len: usize) -> Error {
    Error::protocol(format!(
        "the broker announced a {len} byte frame, over the {} byte limit",
        oauth_broker_proto::MAX_FRAME_LEN
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth_broker_proto::{LoginEvent, SecretString, TokenGrant};
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn error_frames_become_typed_errors_anywhere() {
        let frame = || {
            Response::Error(
                ErrorFrame::new(ErrorCode::NotLoggedIn, "no login").with_hint("run relogin"),
            )
        };
        assert!(token(frame()).unwrap_err().is_not_logged_in());
        assert!(status(frame()).unwrap_err().is_not_logged_in());
        assert!(imported(frame()).unwrap_err().is_not_logged_in());
        assert!(logged_out(frame()).unwrap_err().is_not_logged_in());
        assert!(welcome(frame()).unwrap_err().is_not_logged_in());
    }

    #[test]
    fn unexpected_response_is_a_protocol_error_naming_types() {
        let err = token(Response::LoggedOut { revoked: true }).unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }));
        assert_eq!(
            err.to_string(),
            "expected a token response from the broker, got logged_out"
        );
    }

    #[test]
    fn wrong_protocol_version_in_welcome_is_refused() {
        let err = welcome(Response::Welcome(Welcome {
            protocol: 99,
            broker_version: "9.0.0".into(),
            account: "a".into(),
        }))
        .unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }));
    }

    #[test]
    fn imported_zero_means_refresh_first() {
        assert_eq!(
            imported(Response::Imported { expires_at: 0 }).unwrap(),
            None
        );
        assert_eq!(
            imported(Response::Imported { expires_at: 10 }).unwrap(),
            Some(UNIX_EPOCH + Duration::from_secs(10))
        );
    }

    #[test]
    fn absurd_expiries_from_the_broker_do_not_panic() {
        let latest = UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX));
        assert_eq!(
            imported(Response::Imported {
                expires_at: u64::MAX
            })
            .unwrap(),
            Some(latest)
        );
        let grant = TokenGrant {
            access_token: SecretString::from("tok"),
            token_type: "Bearer".into(),
            expires_at: u64::MAX,
            token_id: "0123456789ab".into(),
            scopes: Vec::new(),
            metadata: Default::default(),
            id_token: None,
            obtained_at: None,
            refresh_token_id: None,
        };
        assert_eq!(token(Response::Token(grant)).unwrap().expires_at(), latest);
    }

    #[test]
    fn login_error_events_map_codes() {
        let event = |code: &str| {
            Response::Login(LoginEvent::Error {
                code: code.into(),
                message: "denied".into(),
                hint: Some("try again".into()),
            })
        };
        let Err(err) = login_step(event("busy")) else {
            panic!("error event accepted")
        };
        assert!(matches!(err, Error::Busy { .. }));
        let Err(err) = login_step(event("access_denied")) else {
            panic!("error event accepted")
        };
        assert!(matches!(err, Error::Internal { .. }));
        assert!(err.to_string().contains("access_denied"));
        assert_eq!(err.hint(), Some("try again"));
    }
}
