//! Relaying a namespace's `127.0.0.1:443` to a port of the test's own
//! network, byte for byte.
//!
//! Why: a tool pointed at a local endpoint (Claude Code with
//! `ANTHROPIC_BASE_URL` = the broker's proxy) must still run offline, in a
//! private network where nothing of the host is reachable. The listener the
//! namespace hands over is accepted here, in the test, and every connection
//! is copied to `target` (plain TCP: the tool speaks whatever `target`
//! speaks).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// Accepts on `listener` until the runtime stops and copies each connection
/// to and from a new connection to `target`.
pub(crate) async fn relay(listener: TcpListener, target: SocketAddr) {
    loop {
        let Ok((mut inside, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tokio::spawn(async move {
            let Ok(mut outside) = TcpStream::connect(target).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut inside, &mut outside).await;
        });
    }
}
