//! `Logout`: revoke (best effort) and forget.

use crate::manager::TokenManager;
use oauth_broker_proto::{ErrorFrame, Response};

/// Forgets the login.
pub async fn handle(manager: &TokenManager) -> Response {
    match manager.logout().await {
        Ok(revoked) => Response::LoggedOut { revoked },
        Err(e) => Response::Error(ErrorFrame::from(e)),
    }
}
