//! `Status`: never waits behind a refresh.

use crate::manager::TokenManager;
use oauth_broker_proto::Response;

/// The broker's status.
pub fn handle(manager: &TokenManager) -> Response {
    Response::Status(Box::new(manager.status()))
}
