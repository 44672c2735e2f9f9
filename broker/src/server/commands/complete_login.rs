//! `CompleteLogin { redirect_url }` on a connection other than the login's own
//! (e.g. `brokerctl complete-login URL` from another terminal): hands the
//! pasted redirect to the waiting browser login and answers with the login's
//! final event.

use crate::login::LoginRunner;
use oauth_broker_proto::{ErrorFrame, Response};

/// Pastes and waits for the outcome.
pub async fn handle(login: &LoginRunner, redirect_url: &str) -> Response {
    match login.complete(redirect_url).await {
        Ok(event) => Response::Login(event),
        Err(e) => Response::Error(ErrorFrame::from(e)),
    }
}
