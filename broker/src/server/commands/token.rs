//! `Token { min_valid_secs }`.
//!
//! The answer to a cached-token request is the same frame for every client
//! until the token changes: the manager encodes it once per grant and
//! publishes it in its snapshot. A request the snapshot's token satisfies is
//! answered with that frame as is — no JSON encoding, no hashing, no lock the
//! manager holds; any other asks the manager, which may refresh or wait.

use super::super::app::App;
use super::super::connection::{Connection, ConnectionError};
use crate::manager::ServedToken;
use oauth_broker_proto::{ErrorFrame, Response};
use std::time::Duration;

/// A token valid for at least `min_valid_secs` (capped by what a fresh one
/// gives), written on `conn`; with the login's identity when `identity`
/// (a client-side projector: see `ServedToken::grant_with_identity`).
pub async fn answer(
    app: &App,
    min_valid_secs: u64,
    identity: bool,
    conn: &mut Connection,
) -> Result<(), ConnectionError> {
    let min_valid = Duration::from_secs(min_valid_secs);
    let ready = app
        .manager
        .snapshot()
        .ready_token(app.clock.read(), min_valid)
        .cloned();
    let served = match ready {
        Some(served) => served,
        None => match app.manager.token(min_valid).await {
            Ok(served) => served,
            Err(e) => return conn.write(&Response::Error(ErrorFrame::from(e))).await,
        },
    };
    if identity {
        return conn
            .write(&Response::Token(served.grant_with_identity()))
            .await;
    }
    write(&served, conn).await
}

/// Writes the ready frame of `served` (encoding it only if it did not fit a
/// frame, which then fails like any oversized answer).
pub async fn write(served: &ServedToken, conn: &mut Connection) -> Result<(), ConnectionError> {
    match served.frame() {
        Some(frame) => conn.write_frame(frame).await,
        None => conn.write(&Response::Token(served.grant.clone())).await,
    }
}
