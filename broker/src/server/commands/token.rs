//! `Token { min_valid_secs }`.

use crate::manager::TokenManager;
use oauth_broker_proto::Response;
use std::time::Duration;

/// A token valid for at least `min_valid_secs` (capped by what a fresh one gives).
pub async fn handle(manager: &TokenManager, min_valid_secs: u64) -> Response {
    match manager.token(Duration::from_secs(min_valid_secs)).await {
        Ok(grant) => Response::Token(grant),
        Err(e) => Response::Error(e),
    }
}
