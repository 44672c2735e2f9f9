//! Where a proxy listens: a loopback TCP port or a Unix socket.
//!
//! Why loopback only: the proxy spends the account's access token for whoever
//! presents a key; exposing it beyond the machine would turn a local
//! capability into a network service. A loopback port is still reachable by
//! every local user, which is why every request must carry a key the broker
//! issued (see `keys.rs`). A Unix socket is bound 0600 (umask 0177, like the
//! broker's own socket), so only the broker's user reaches it at all. The
//! umask is process-wide: `bind` runs before the manager or any other task
//! starts (daemon.rs), so no file created elsewhere gets it by accident.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// A parsed `listen` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A loopback TCP address.
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "http://{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl ListenAddr {
    /// Parses `listen`: an absolute path (optionally `unix:`-prefixed) or a
    /// loopback `host:port` (`localhost` means 127.0.0.1).
    pub fn parse(text: &str) -> Result<ListenAddr, String> {
        let path = text.strip_prefix("unix:").unwrap_or(text);
        if path.starts_with('/') {
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        let spelled = text.replacen("localhost:", "127.0.0.1:", 1);
        let addr: SocketAddr = spelled.parse().map_err(|_| {
            format!(
                "listen = {text:?} is neither a loopback address with a port (127.0.0.1:8787) nor an absolute Unix socket path"
            )
        })?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "listen = {text:?} is not a loopback address: the proxy spends the account's token for any caller with a key, so it listens on 127.0.0.1/::1 or a Unix socket only; forward it with ssh -L if another machine needs it"
            ));
        }
        Ok(ListenAddr::Tcp(addr))
    }
}

/// A bound listener.
pub enum Listener {
    /// TCP.
    Tcp(tokio::net::TcpListener),
    /// Unix socket; the file is removed when this is dropped.
    Unix(tokio::net::UnixListener, UnlinkOnDrop),
}

/// Removes a socket file the proxy bound.
pub struct UnlinkOnDrop(PathBuf);

impl Drop for UnlinkOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Binds `addr`. An existing Unix socket file is replaced only when it refuses
/// connections (stale); anything else there is refused (`stale_socket.rs`).
pub fn bind(addr: &ListenAddr) -> std::io::Result<(Listener, ListenAddr)> {
    match addr {
        ListenAddr::Tcp(a) => {
            let std = std::net::TcpListener::bind(a)?;
            std.set_nonblocking(true)?;
            let local = std.local_addr()?;
            Ok((
                Listener::Tcp(tokio::net::TcpListener::from_std(std)?),
                ListenAddr::Tcp(local),
            ))
        }
        ListenAddr::Unix(path) => {
            crate::stale_socket::clear(path, "a proxy or broker", "pick another `listen` path")
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
            let bound = std::os::unix::net::UnixListener::bind(path);
            nix::sys::stat::umask(old);
            let std = bound?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            std.set_nonblocking(true)?;
            Ok((
                Listener::Unix(
                    tokio::net::UnixListener::from_std(std)?,
                    UnlinkOnDrop(path.clone()),
                ),
                addr.clone(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_or_unix_only() {
        assert_eq!(
            ListenAddr::parse("127.0.0.1:8787").unwrap(),
            ListenAddr::Tcp("127.0.0.1:8787".parse().unwrap())
        );
        assert!(ListenAddr::parse("[::1]:0").is_ok());
        assert!(ListenAddr::parse("localhost:9").is_ok());
        assert_eq!(
            ListenAddr::parse("unix:/run/x.sock").unwrap(),
            ListenAddr::Unix("/run/x.sock".into())
        );
        assert!(ListenAddr::parse("0.0.0.0:8787")
            .unwrap_err()
            .contains("not a loopback"));
        assert!(ListenAddr::parse("relative.sock").is_err());
    }
}
