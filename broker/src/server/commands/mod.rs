//! One file per request type; each turns a request into its response(s).

mod import;
mod logout;
mod relogin;
mod status;
mod token;
mod unauthorized;

use super::connection::{Connection, ConnectionError};
use crate::manager::TokenManager;
use oauth_broker_proto::{ErrorCode, ErrorFrame, Request, Response};

/// Answers one request on `conn`.
pub async fn dispatch(
    request: Request,
    manager: &TokenManager,
    conn: &mut Connection,
) -> Result<(), ConnectionError> {
    let response = match request {
        Request::Token { min_valid_secs } => token::handle(manager, min_valid_secs).await,
        Request::Unauthorized { token_id } => unauthorized::handle(manager, &token_id).await,
        Request::Status => status::handle(manager),
        Request::Import { tokens } => import::handle(manager, tokens).await,
        Request::Logout => logout::handle(manager).await,
        Request::Relogin { method } => return relogin::handle(manager, method, conn).await,
        Request::CompleteLogin { .. } => Response::Error(
            ErrorFrame::new(
                ErrorCode::BadRequest,
                "there is no browser login waiting for a redirect on this connection",
            )
            .with_hint("start one with `brokerctl relogin --browser`"),
        ),
    };
    conn.write(&response).await
}
