//! One file per request type; each turns a request into its response(s).

mod complete_login;
mod import;
mod logout;
mod project;
mod relogin;
mod status;
mod token;
mod unauthorized;

use super::connection::{Connection, ConnectionError};
use crate::login::LoginRunner;
use crate::manager::TokenManager;
use oauth_broker_proto::Request;
use std::sync::Arc;

/// Answers one request on `conn`.
pub async fn dispatch(
    request: Request,
    manager: &TokenManager,
    login: Option<&Arc<LoginRunner>>,
    conn: &mut Connection,
) -> Result<(), ConnectionError> {
    let response = match request {
        Request::Token { min_valid_secs } => {
            return token::answer(manager, min_valid_secs, conn).await
        }
        Request::Unauthorized { token_id } => unauthorized::handle(manager, &token_id).await,
        Request::Status => status::handle(manager),
        Request::Import { tokens } => import::handle(manager, tokens).await,
        Request::Logout => logout::handle(manager).await,
        Request::ProjectRestore { target } => project::restore(manager, target).await,
        Request::Relogin { method } => return relogin::handle(login, method, conn).await,
        Request::CompleteLogin { redirect_url } => {
            complete_login::handle(login, &redirect_url).await
        }
    };
    conn.write(&response).await
}
