//! The socket server: accept loop, peer check, connection limit, handshake.
//!
//! Each connection runs in its own task; a bad or slow client only ever costs its
//! own task. Requests are handed to the token manager, which runs refreshes in
//! tasks of their own, so dropping a connection never cancels a refresh.

pub mod app;
mod commands;
pub mod connection;
pub mod socket;
mod wire_error;

use crate::config::ServerSettings;
pub use app::App;
use connection::{Connection, ConnectionError, Incoming};
use oauth_broker_proto::{
    encode_frame, ErrorCode, ErrorFrame, Hello, Request, Response, Welcome, PROTOCOL_VERSION,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Serves `listener` until `shutdown` is cancelled; every command gets `app`.
pub async fn serve(
    listener: UnixListener,
    app: App,
    settings: ServerSettings,
    shutdown: CancellationToken,
) {
    let my_uid = nix::unistd::getuid().as_raw();
    let limit = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let settings = Arc::new(settings);
    let tasks = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let peer = stream.peer_cred().ok();
        let uid = peer.map(|p| p.uid());
        let allowed = uid.is_some_and(|uid| uid == my_uid || settings.allow_uids.contains(&uid));
        if !allowed {
            tracing::warn!(
                peer_uid = uid.map(|u| u as i64).unwrap_or(-1),
                peer_pid = peer.and_then(|p| p.pid()).unwrap_or(-1),
                "refused a connection from another user"
            );
            let frame = ErrorFrame::new(
                ErrorCode::PermissionDenied,
                format!("uid {} may not use this broker", uid.map_or("unknown".to_string(), |u| u.to_string())),
            )
            .with_hint("connect as the broker's user, or add the uid to `allow_uids` under [server] in the broker's config");
            tasks.spawn(reject(stream, frame));
            continue;
        }
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(
                max = settings.max_connections,
                "connection limit reached; answering busy"
            );
            let frame = ErrorFrame::new(ErrorCode::Busy, "the broker is at its connection limit")
                .with_retry_after(1)
                .with_hint("retry shortly; raise max_connections under [server] if this persists");
            tasks.spawn(reject(stream, frame));
            continue;
        };
        let app = app.clone();
        let settings = settings.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                result = handle(stream, &app, &settings) => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection closed");
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), tasks.wait()).await;
}

/// Sends one error frame and closes, all within half a second.
///
/// A client writes its hello before it reads. Closing at once would make
/// that write fail with EPIPE and the client would report a broken pipe
/// instead of the answer waiting in its receive buffer; so after the frame
/// the broker only shuts down its sending side and discards what the client
/// sends until it hangs up (or the half second is over).
async fn reject(mut stream: UnixStream, frame: ErrorFrame) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    if let Ok(bytes) = encode_frame(&Response::Error(frame)) {
        let _ = tokio::time::timeout_at(deadline, stream.write_all(&bytes)).await;
    }
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 512];
    let _ = tokio::time::timeout_at(deadline, async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

async fn handle(
    stream: UnixStream,
    app: &App,
    settings: &ServerSettings,
) -> Result<(), ConnectionError> {
    let request_timeout = Duration::from_millis(settings.request_timeout_ms.max(1));
    let idle_timeout = Duration::from_secs(settings.idle_timeout_secs.max(1));
    let mut conn = Connection::new(stream, request_timeout);

    match conn.read::<Hello>(request_timeout).await {
        Ok(Incoming::Message(hello)) if hello.protocol == PROTOCOL_VERSION => {
            tracing::debug!(client = %sanitize(&hello.client), "client connected");
            conn.write(&Response::Welcome(Welcome {
                protocol: PROTOCOL_VERSION,
                broker_version: env!("CARGO_PKG_VERSION").to_string(),
                account: app.manager.account().to_string(),
            }))
            .await?;
        }
        Ok(Incoming::Message(hello)) => {
            return conn
                .write(&Response::Error(
                    ErrorFrame::new(
                        ErrorCode::UnsupportedProtocol,
                        format!(
                            "the client speaks protocol {}, this broker speaks {PROTOCOL_VERSION}",
                            hello.protocol
                        ),
                    )
                    .with_hint(
                        "upgrade the client library or brokerd so that both speak the same version",
                    ),
                ))
                .await;
        }
        Ok(Incoming::Malformed(why)) => {
            return conn
                .write(&Response::Error(bad_request(format!(
                    "the first frame must be a hello: {why}"
                ))))
                .await;
        }
        Ok(Incoming::Closed) => return Ok(()),
        Err(ConnectionError::TooLarge(e)) => return too_large(&mut conn, e).await,
        Err(e) => return Err(e),
    }

    loop {
        match conn.read::<Request>(idle_timeout).await {
            Ok(Incoming::Message(request)) => {
                tracing::trace!(request = request.name(), "request");
                commands::dispatch(request, app, &mut conn).await?;
            }
            Ok(Incoming::Malformed(why)) => {
                tracing::debug!("malformed request");
                conn.write(&Response::Error(bad_request(why))).await?;
            }
            Ok(Incoming::Closed) => return Ok(()),
            Err(ConnectionError::TooLarge(e)) => return too_large(&mut conn, e).await,
            Err(e) => return Err(e),
        }
    }
}

async fn too_large(
    conn: &mut Connection,
    e: oauth_broker_proto::FrameError,
) -> Result<(), ConnectionError> {
    tracing::debug!(error = %e, "oversized frame; closing");
    conn.write(&Response::Error(bad_request(e.to_string())))
        .await
}

fn bad_request(why: String) -> ErrorFrame {
    ErrorFrame::new(ErrorCode::BadRequest, format!("malformed request: {why}")).with_hint(
        "speak the oauth-broker protocol (see oauth-broker-proto); the connection stays open",
    )
}

/// Client names are free text from the peer: keep log lines one short line.
fn sanitize(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}
