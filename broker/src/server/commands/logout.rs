//! `Logout`: revoke (best effort) and forget.

use crate::manager::TokenManager;
use oauth_broker_proto::Response;

/// Forgets the login.
pub async fn handle(manager: &TokenManager) -> Response {
    match manager.logout().await {
        Ok(revoked) => Response::LoggedOut { revoked },
        Err(e) => Response::Error(e),
    }
}
