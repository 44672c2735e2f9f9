//! `Relogin { method }`: run a login in the daemon and stream its events.

use crate::manager::TokenManager;
use crate::server::connection::{Connection, ConnectionError};
use oauth_broker_proto::{ErrorCode, ErrorFrame, LoginMethod, Response};

/// Login flows are not built yet: answer with a clear error and the alternative.
pub async fn handle(
    _manager: &TokenManager,
    _method: Option<LoginMethod>,
    conn: &mut Connection,
) -> Result<(), ConnectionError> {
    conn.write(&Response::Error(
        ErrorFrame::new(
            ErrorCode::BadRequest,
            "relogin is not implemented yet in this brokerd",
        )
        .with_hint("hand over existing tokens with `brokerctl import FILE`"),
    ))
    .await
}
