//! One file per request type; each turns a request into its response(s).

mod complete_login;
mod import;
mod logout;
mod project;
mod proxy_key;
mod proxy_revoke;
mod relogin;
mod status;
mod token;
mod unauthorized;

use super::app::App;
use super::connection::{Connection, ConnectionError};
use oauth_broker_proto::Request;

/// Answers one request on `conn`.
pub async fn dispatch(
    request: Request,
    app: &App,
    conn: &mut Connection,
) -> Result<(), ConnectionError> {
    let response = match request {
        Request::Token {
            min_valid_secs,
            identity,
        } => return token::answer(app, min_valid_secs, identity, conn).await,
        Request::Unauthorized { token_id } => unauthorized::handle(&app.manager, &token_id).await,
        Request::Status => status::handle(app),
        Request::Import { tokens } => import::handle(app, tokens).await,
        Request::Logout => logout::handle(&app.manager).await,
        Request::ProjectRestore { target } => project::restore(app, target).await,
        Request::ProxyKey { name } => proxy_key::handle(app, name).await,
        Request::ProxyRevoke { name } => proxy_revoke::handle(app, name).await,
        Request::Relogin { method } => return relogin::handle(&app.login, method, conn).await,
        Request::CompleteLogin { redirect_url } => {
            complete_login::handle(&app.login, &redirect_url).await
        }
    };
    conn.write(&response).await
}
