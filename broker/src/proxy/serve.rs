//! The accept loop of one proxy: HTTP/1.1 per connection (hyper's server, with
//! upgrades), until shutdown.
//!
//! Why a connection cap: the loopback port is open to every local user, key
//! or not, and each connection may sit idle for `HEADER_TIMEOUT`; without a
//! cap, a thousand idle connections exhaust the daemon's file descriptors and
//! the broker's own socket stops answering. A connection over the cap gets a
//! short 503 (best effort, never waited for) and is closed at once.

use super::forward;
use super::listen::Listener;
use super::Instance;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// A client must send a request's headers within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts connections on `listener` until `shutdown`.
pub async fn run(listener: Listener, proxy: Arc<Instance>) {
    let (shutdown, tasks) = (proxy.shutdown.clone(), proxy.tasks.clone());
    let permits = Arc::new(Semaphore::new(proxy.config.max_connections()));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = accept(&listener) => accepted,
        };
        let accepted = accepted.map(|a| (a, permits.clone().try_acquire_owned().ok()));
        match accepted {
            Ok((Accepted::Tcp(stream), None)) => over_cap(&proxy, |b| stream.try_write(b)),
            Ok((Accepted::Unix(stream), None)) => over_cap(&proxy, |b| stream.try_write(b)),
            Ok((Accepted::Tcp(stream), Some(permit))) => {
                let _ = stream.set_nodelay(true);
                tasks.spawn(connection(stream, proxy.clone(), shutdown.clone(), permit));
            }
            Ok((Accepted::Unix(stream), Some(permit))) => {
                tasks.spawn(connection(stream, proxy.clone(), shutdown.clone(), permit));
            }
            Err(e) => {
                tracing::warn!(listen = %proxy.listen, error = %e, "proxy: accept failed");
                // EMFILE and friends: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The whole answer to a connection over the cap (written without waiting:
/// a fresh socket's send buffer takes it, and if not, closing says enough).
const OVER_CAP: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 138\r\n\r\n{\"type\":\"error\",\"error\":{\"type\":\"oauth_broker_proxy_error\",\"code\":\"proxy_busy\",\"message\":\"oauth-broker proxy: too many open connections\"}}";

/// Refuses a connection over the cap; dropping the stream closes it.
fn over_cap(proxy: &Instance, write: impl FnOnce(&[u8]) -> std::io::Result<usize>) {
    tracing::warn!(
        listen = %proxy.listen,
        max_connections = proxy.config.max_connections(),
        "proxy: connection refused, too many open (raise max_connections in the [[proxy]] table if this is intended)"
    );
    let _ = write(OVER_CAP);
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Accepted> {
    match listener {
        Listener::Tcp(l) => l.accept().await.map(|(s, _)| Accepted::Tcp(s)),
        Listener::Unix(l, _) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
    }
}

async fn connection<S>(
    stream: S,
    proxy: Arc<Instance>,
    shutdown: CancellationToken,
    // Held until the connection ends (upgraded tunnels aside: they are
    // bounded by the upstream's own accept).
    _permit: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| forward::handle(proxy.clone(), req));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_over_cap_answer_is_well_formed() {
        let text = std::str::from_utf8(super::OVER_CAP).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let declared = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap();
        assert_eq!(declared.parse::<usize>().unwrap(), body.len());
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
