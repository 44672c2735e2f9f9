//! `Unauthorized { token_id }`: a client's token was rejected with 401.

use crate::manager::TokenManager;
use oauth_broker_proto::Response;

/// The newer token, after at most one coalesced refresh.
pub async fn handle(manager: &TokenManager, token_id: &str) -> Response {
    match manager.unauthorized(token_id).await {
        Ok(grant) => Response::Token(grant),
        Err(e) => Response::Error(e),
    }
}
