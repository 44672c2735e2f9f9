//! `CompleteLogin { redirect_url }` on a connection other than the login's own
//! (e.g. `brokerctl complete-login URL` from another terminal): hands the
//! pasted redirect to the waiting browser login and answers with the login's
//! final event.

use crate::login::LoginRunner;
use oauth_broker_proto::{ErrorCode, ErrorFrame, Response};
use std::sync::Arc;

/// Pastes and waits for the outcome.
pub async fn handle(login: Option<&Arc<LoginRunner>>, redirect_url: &str) -> Response {
    let Some(login) = login else {
        return Response::Error(
            ErrorFrame::new(ErrorCode::BadRequest, "this broker does not run logins")
                .with_hint("hand over existing tokens with `brokerctl import FILE`"),
        );
    };
    match login.complete(redirect_url).await {
        Ok(event) => Response::Login(event),
        Err(frame) => Response::Error(frame),
    }
}
