//! An upgraded connection (WebSocket): once both sides switched protocols,
//! bytes are copied both ways until either side closes. The frames are the
//! tool's and the upstream's business; the credential was in the handshake.
//!
//! Why on the proxies' task tracker: a tunnel outlives the request that
//! opened it; at shutdown it is closed, and the daemon waits for it like for
//! any other proxy task instead of leaving it to the runtime's teardown.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Joins the tool's and the upstream's upgraded connections in a task of
/// `tasks`, closed at `shutdown`.
pub fn spawn(
    client: OnUpgrade,
    upstream: OnUpgrade,
    listen: String,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) {
    tasks.spawn(async move {
        let joined = tokio::select! {
            _ = shutdown.cancelled() => return,
            joined = async { tokio::join!(client, upstream) } => joined,
        };
        let (Ok(client), Ok(upstream)) = joined else {
            tracing::debug!(%listen, "proxy: an upgrade did not complete on both sides");
            return;
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        tokio::select! {
            _ = shutdown.cancelled() => {
                tracing::debug!(%listen, "proxy: upgraded connection closed at shutdown");
            }
            copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match copied {
                Ok((up, down)) => {
                    tracing::debug!(%listen, up, down, "proxy: upgraded connection closed")
                }
                Err(e) => tracing::debug!(%listen, error = %e, "proxy: upgraded connection failed"),
            },
        }
    });
}
