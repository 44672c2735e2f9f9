//! `Relogin { method }`: run a login in the daemon and stream its events.
//!
//! The connection stays open for as long as the login waits for the user (a
//! device code can be valid for 15 minutes), so the idle timeout does not apply
//! meanwhile; a frame that has started must still arrive within the request
//! timeout. While a browser login waits, the same connection may send
//! `CompleteLogin` (a pasted redirect): it gets an error frame only if the
//! paste cannot be read, otherwise the login's final event answers it. A client
//! that disconnects cancels its login.

use crate::login::failure::LoginFailure;
use crate::login::LoginRunner;
use crate::server::connection::{Connection, ConnectionError, Incoming};
use crate::server::wire_error;
use oauth_broker_proto::{ErrorCode, ErrorFrame, LoginMethod, Request, Response};
use std::sync::Arc;
use std::time::Duration;

/// How long a connection with a running login may stay silent. The login ends
/// long before (its own timeouts are at most the code's lifetime); this only
/// replaces the idle timeout, which would otherwise cut a legitimate wait.
const LOGIN_SILENCE: Duration = Duration::from_secs(24 * 3600);

/// Streams the login's events up to the final one.
pub async fn handle(
    login: &Arc<LoginRunner>,
    method: Option<LoginMethod>,
    conn: &mut Connection,
) -> Result<(), ConnectionError> {
    let mut stream = match login.start(method) {
        Ok(stream) => stream,
        Err(busy) => return conn.write(&Response::Login(busy)).await,
    };
    loop {
        tokio::select! {
            event = stream.events.recv() => {
                let event = event.unwrap_or_else(|| {
                    LoginFailure::new(ErrorCode::Internal, "the login ended without an outcome")
                        .into_event()
                });
                let last = event.is_final();
                conn.write(&Response::Login(event)).await?;
                if last {
                    return Ok(());
                }
            }
            incoming = conn.read::<Request>(LOGIN_SILENCE) => match incoming? {
                Incoming::Message(Request::CompleteLogin { redirect_url }) => {
                    if let Err(e) = login.submit_paste(&redirect_url).await {
                        conn.write(&Response::Error(ErrorFrame::from(e))).await?;
                    }
                }
                Incoming::Message(other) => {
                    conn.write(&Response::Error(wire_error::busy_with_login(other.name())))
                        .await?;
                }
                Incoming::Malformed(why) => {
                    conn.write(&Response::Error(wire_error::malformed_during_login(&why)))
                        .await?;
                }
                Incoming::Closed => {
                    tracing::info!("the client of a running login disconnected; cancelling the login");
                    return Ok(());
                }
            },
        }
    }
}
