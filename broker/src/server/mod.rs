//! The socket server: accept loop, peer check, connection slots, handshake.
//!
//! Each connection runs in its own task; a bad or slow client only ever costs its
//! own task. At the connection limit the connection idle the longest is closed
//! to admit a new one (see `slots`); refusals are logged with counts, not one
//! line each (see `refusal_log`). Requests are handed to the token manager,
//! which runs refreshes in tasks of their own, so dropping a connection never
//! cancels a refresh.

pub mod app;
mod commands;
pub mod connection;
pub mod peer;
mod refusal_log;
mod slots;
pub mod socket;
mod wire_error;

use crate::config::ServerSettings;
pub use app::App;
use connection::{Connection, ConnectionError, Incoming};
use oauth_broker_proto::{
    encode_frame, ErrorCode, ErrorFrame, Hello, Request, Response, Welcome, PROTOCOL_VERSION,
};
use peer::Peer;
use refusal_log::{Refusal, RefusalLog};
use slots::{Admission, Slot, Slots};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::time::Instant;
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
    let slots = Slots::new(settings.max_connections);
    let settings = Arc::new(settings);
    let mut refusals = RefusalLog::new(refusal_log::SUMMARY_INTERVAL);
    let tasks = TaskTracker::new();
    loop {
        let summaries_due = refusals.next_due();
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = sleep_until_some(summaries_due) => {
                for (kind, count) in refusals.due(Instant::now()) {
                    refusal_log::log_summary(kind, count, settings.max_connections);
                }
                continue;
            }
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
        let peer = Peer::from_credentials(
            nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials).ok(),
        );
        if !peer.is_allowed(my_uid, &settings.allow_uids) {
            let uid = peer.uid;
            if let Some(kind) = refusals.record(Refusal::OtherUser(uid), Instant::now()) {
                tracing::warn!(
                    peer_uid = uid.map(|u| u as i64).unwrap_or(-1),
                    "refused a connection from another user: uid {}, {}{}; to admit it add `{}` under [server]",
                    uid.map_or("unknown".to_string(), |u| u.to_string()),
                    peer.pid_display(),
                    if kind == Refusal::OtherUser(uid) {
                        ""
                    } else {
                        " (one of many uids; counted together from here on)"
                    },
                    uid.map_or("allow_uids".to_string(), |u| peer::allow_uids_line(&settings.allow_uids, u)),
                );
            }
            let frame = ErrorFrame::new(ErrorCode::PermissionDenied, peer.refusal_message())
                .with_hint(peer.refusal_hint(&settings.allow_uids));
            tasks.spawn(reject(stream, frame));
            continue;
        }
        let slot = match slots.admit() {
            Admission::Admitted(slot) => slot,
            Admission::Evicted(slot) => {
                if refusals.record(Refusal::Evicted, Instant::now()).is_some() {
                    tracing::info!(
                        max = settings.max_connections,
                        "connection limit reached; closing the connection idle the longest to make room"
                    );
                }
                slot
            }
            Admission::Full => {
                if refusals.record(Refusal::Busy, Instant::now()).is_some() {
                    tracing::warn!(
                        max = settings.max_connections,
                        "connection limit reached and every connection is serving a request; answering busy"
                    );
                }
                let frame = ErrorFrame::new(
                    ErrorCode::Busy,
                    "the broker is at its connection limit and every connection is serving a request",
                )
                .with_retry_after(1)
                .with_hint("retry shortly; raise max_connections under [server] if this persists");
                tasks.spawn(reject(stream, frame));
                continue;
            }
        };
        let app = app.clone();
        let settings = settings.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                result = handle(stream, &app, &settings, &slot) => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection closed");
                    }
                }
            }
            drop(slot);
        });
    }
    for (kind, count) in refusals.drain() {
        refusal_log::log_summary(kind, count, settings.max_connections);
    }
    drop(listener);
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), tasks.wait()).await;
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
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
    slot: &Slot,
) -> Result<(), ConnectionError> {
    let request_timeout = Duration::from_millis(settings.request_timeout_ms.max(1));
    let idle_timeout = Duration::from_secs(settings.idle_timeout_secs.max(1));
    let mut conn = Connection::new(stream, request_timeout);

    // The whole handshake within the request timeout of the accept, however
    // the hello trickles in: a connection that never says hello holds its
    // slot no longer than that (and is evicted sooner at the limit).
    let hello = tokio::time::timeout(
        request_timeout,
        next::<Hello>(&mut conn, slot, request_timeout),
    )
    .await
    .unwrap_or(Err(ConnectionError::Timeout));
    // Evicted meanwhile: a hello that already arrived is still welcomed (the
    // client's first request then finds the connection closed and reconnects).
    let keep_open = slot.begin_request();
    match hello {
        Ok(Incoming::Message(hello)) if hello.protocol == PROTOCOL_VERSION => {
            tracing::debug!(client = %sanitize(&hello.client), "client connected");
            // Idle from the moment the answer is decided, not once it is
            // written: the client may already open its next connection while
            // this task waits to be scheduled, and "idle the longest" must
            // follow the order the clients saw. (Evicted in between, the
            // request loop below still answers what already arrived.)
            if keep_open {
                slot.end_request();
            }
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
    if !keep_open {
        return Ok(());
    }

    loop {
        let incoming = next::<Request>(&mut conn, slot, idle_timeout).await;
        // Evicted meanwhile: answer what already arrived, then close.
        let keep_open = slot.begin_request();
        match incoming {
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
        if !keep_open {
            return Ok(());
        }
        slot.end_request();
    }
}

/// The next message, or `Closed` once the slot was given to a newer
/// connection — unless a complete frame has already arrived, which is still
/// answered (so a client whose request crossed the eviction is not left
/// without an answer).
async fn next<T: serde::de::DeserializeOwned>(
    conn: &mut Connection,
    slot: &Slot,
    wait_for_start: Duration,
) -> Result<Incoming<T>, ConnectionError> {
    tokio::select! {
        biased;
        incoming = conn.read::<T>(wait_for_start) => incoming,
        _ = slot.evicted() => {
            tracing::debug!("closing an idle connection to make room");
            // Reading is cancel-safe: bytes already read stay buffered.
            tokio::time::timeout(Duration::ZERO, conn.read::<T>(wait_for_start))
                .await
                .unwrap_or(Ok(Incoming::Closed))
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
