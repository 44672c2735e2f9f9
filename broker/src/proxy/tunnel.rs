//! An upgraded connection (WebSocket): once both sides switched protocols,
//! bytes are copied both ways until either side closes. The frames are the
//! tool's and the upstream's business; the credential was in the handshake.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Joins the tool's and the upstream's upgraded connections in a task.
pub fn spawn(client: OnUpgrade, upstream: OnUpgrade, listen: String) {
    tokio::spawn(async move {
        let (client, upstream) = tokio::join!(client, upstream);
        let (Ok(client), Ok(upstream)) = (client, upstream) else {
            tracing::debug!(%listen, "proxy: an upgrade did not complete on both sides");
            return;
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((up, down)) => {
                tracing::debug!(%listen, up, down, "proxy: upgraded connection closed")
            }
            Err(e) => tracing::debug!(%listen, error = %e, "proxy: upgraded connection failed"),
        }
    });
}
