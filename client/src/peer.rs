//! Who serves the socket: only this user's own broker (or root's) is trusted.
//!
//! Without `XDG_RUNTIME_DIR` and `/run/user/<uid>` the socket lives under the
//! temp dir (`/tmp/oauth-broker-<uid>`), and any local user can create that
//! directory first and listen in it. A client that talked to such an impostor
//! would hand it the refresh token of `brokerctl import` (and trust the tokens
//! it hands out). So right after connecting, before a single byte is sent, the
//! client asks the kernel for the uid of the process that created the listening
//! socket and refuses anyone but itself and root — the broker checks its peers
//! the same way.

use crate::Error;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;

/// Whether a socket served by `peer_uid` may be talked to by `my_uid`: the same
/// user, or root (who could read the user's state anyway).
pub(crate) fn peer_allowed(peer_uid: u32, my_uid: u32) -> bool {
    peer_uid == my_uid || peer_uid == 0
}

/// Fails with [`Error::UntrustedPeer`] unless the socket at `path` is served by
/// this process's user or root.
pub(crate) fn check(path: &Path, peer_uid: u32) -> Result<(), Error> {
    check_as(path, peer_uid, nix::unistd::getuid().as_raw())
}

fn check_as(path: &Path, peer_uid: u32, my_uid: u32) -> Result<(), Error> {
    if peer_allowed(peer_uid, my_uid) {
        Ok(())
    } else {
        Err(Error::UntrustedPeer {
            path: path.to_path_buf(),
            uid: peer_uid,
        })
    }
}

/// The uid of the peer of a connected Unix socket (for a client: whoever
/// created the listening socket), from `SO_PEERCRED`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn peer_uid(socket: impl AsFd) -> io::Result<u32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    Ok(getsockopt(&socket, PeerCredentials)?.uid())
}

/// The uid of the peer of a connected Unix socket, from `getpeereid`.
#[cfg(any(
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd"
))]
pub(crate) fn peer_uid(socket: impl AsFd) -> io::Result<u32> {
    Ok(nix::unistd::getpeereid(socket)?.0.as_raw())
}

/// Elsewhere the peer's uid cannot be asked for, so nobody is trusted: better
/// no client than one that may talk to another user's socket.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd"
)))]
pub(crate) fn peer_uid(_socket: impl AsFd) -> io::Result<u32> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "cannot tell who serves the socket on this platform",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn only_the_same_user_or_root_is_trusted() {
        assert!(peer_allowed(1000, 1000));
        assert!(peer_allowed(0, 1000));
        assert!(peer_allowed(0, 0));
        assert!(!peer_allowed(1001, 1000));
        assert!(!peer_allowed(1000, 0));
        assert!(!peer_allowed(65534, 1000));
    }

    #[test]
    fn refusal_names_the_socket_and_the_uid_on_one_line() {
        let path = Path::new("/tmp/oauth-broker-1000/oauth-broker/default.sock");
        assert!(check_as(path, 1000, 1000).is_ok());
        assert!(check_as(path, 0, 1000).is_ok());
        let err = check_as(path, 1001, 1000).unwrap_err();
        assert!(matches!(&err, Error::UntrustedPeer { uid: 1001, .. }));
        let text = err.to_string();
        assert!(
            text.starts_with(
                "the socket at /tmp/oauth-broker-1000/oauth-broker/default.sock is served by \
                 uid 1001, not by this user or root — refusing to talk to it"
            ),
            "{text}"
        );
        assert!(text.contains("another user"), "{text}");
        assert!(!text.contains('\n'));
        assert!(!err.is_retryable() && !err.is_unreachable() && err.code().is_none());
    }

    #[test]
    fn a_socket_of_our_own_is_served_by_us() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        let stream = UnixStream::connect(&path).unwrap();
        let uid = peer_uid(&stream).unwrap();
        assert_eq!(uid, nix::unistd::getuid().as_raw());
        assert!(check(&path, uid).is_ok());
    }
}
