//! `Unauthorized { token_id }`: a client's token was rejected with 401.

use crate::manager::TokenManager;
use oauth_broker_proto::{ErrorFrame, Response};

/// The newer token, after at most one coalesced refresh.
pub async fn handle(manager: &TokenManager, token_id: &str) -> Response {
    match manager.unauthorized(token_id).await {
        Ok(served) => Response::Token(served.grant.clone()),
        Err(e) => Response::Error(ErrorFrame::from(e)),
    }
}
