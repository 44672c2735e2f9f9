//! Socket activation: use the listening socket systemd passed in (`LISTEN_FDS`).
//!
//! Why: with `oauth-broker.socket` systemd owns the socket file (mode 0600 in a
//! 0700 directory) from login on, so a client that connects before brokerd runs
//! simply waits while systemd starts it, and a restarted broker never leaves a
//! window in which the socket is missing. brokerd must then neither bind nor
//! unlink that socket: systemd created it and keeps it across restarts.
//!
//! The rules follow `sd_listen_fds(3)`: the descriptors start at 3, and they are
//! ours only if `LISTEN_PID` is our pid (the variables may have been inherited
//! from a parent that was socket-activated itself). Only the first passed
//! descriptor that is a listening Unix stream socket is used; anything else is
//! closed with a warning, since a `.socket` unit with several `ListenStream=`
//! lines is a configuration mistake here.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

/// The socket systemd passed, ready to be handed to tokio.
#[derive(Debug)]
pub struct InheritedSocket {
    /// Non-blocking listener.
    pub listener: UnixListener,
    /// The socket's path (for logs and the status line).
    pub path: PathBuf,
    /// `FileDescriptorName=` of the socket unit (`oauth-broker.socket` by default).
    pub name: String,
}

/// Takes the socket passed by systemd, if any. `Ok(None)` when brokerd was not
/// socket-activated (no `LISTEN_FDS`, or `LISTEN_PID` names another process).
pub fn take_listener() -> anyhow::Result<Option<InheritedSocket>> {
    // Sets FD_CLOEXEC on each descriptor, so nothing brokerd spawns inherits them.
    let passed: Vec<(RawFd, String)> = sd_notify::listen_fds_with_names()
        .map_err(|e| {
            anyhow::anyhow!(
                "socket activation: cannot use the descriptors in LISTEN_FDS/LISTEN_FDNAMES ({e}); \
                 check the .socket unit, or unset LISTEN_FDS to let brokerd bind its own socket"
            )
        })?
        .collect();
    if passed.is_empty() {
        return Ok(None);
    }
    let count = passed.len();
    let mut chosen = None;
    for (raw, name) in passed {
        // SAFETY: sd_listen_fds(3) hands descriptors 3..3+LISTEN_FDS to this
        // process (LISTEN_PID was checked) and nothing else in brokerd has
        // touched them, so taking ownership of each exactly once is sound.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if chosen.is_some() {
            tracing::warn!(fd = raw, name = %name, "socket activation: ignoring an extra descriptor");
            continue;
        }
        match probe(fd.as_fd()) {
            Ok(path) => chosen = Some((fd, path, name)),
            Err(why) => {
                tracing::warn!(fd = raw, name = %name, "socket activation: ignoring a descriptor: {why}")
            }
        }
    }
    let Some((fd, path, name)) = chosen else {
        anyhow::bail!(
            "socket activation: systemd passed {count} descriptor(s) but none is a listening Unix \
             stream socket; use `ListenStream=%t/oauth-broker/<account>.sock` in the .socket unit"
        );
    };
    let listener = UnixListener::from(fd);
    listener.set_nonblocking(true).map_err(|e| {
        anyhow::anyhow!("socket activation: cannot make the passed socket non-blocking: {e}")
    })?;
    Ok(Some(InheritedSocket {
        listener,
        path,
        name,
    }))
}

/// Checks that `fd` is a listening Unix stream socket bound to a path and
/// returns the path; otherwise says what it is instead.
pub(crate) fn probe(fd: BorrowedFd<'_>) -> Result<PathBuf, String> {
    use nix::sys::socket::{getsockname, getsockopt, sockopt, SockType, SockaddrStorage};
    let kind = getsockopt(&fd, sockopt::SockType).map_err(|e| format!("not a socket ({e})"))?;
    if kind != SockType::Stream {
        return Err(format!("a {kind:?} socket, not a stream socket"));
    }
    let addr: SockaddrStorage =
        getsockname(fd.as_raw_fd()).map_err(|e| format!("cannot read its address ({e})"))?;
    let Some(unix) = addr.as_unix_addr() else {
        return Err("not a Unix socket (ListenStream= must be a path)".into());
    };
    let Some(path) = unix.path() else {
        return Err("an abstract or unnamed Unix socket; ListenStream= must be a path".into());
    };
    let listening =
        getsockopt(&fd, sockopt::AcceptConn).map_err(|e| format!("cannot query it ({e})"))?;
    if !listening {
        return Err("a connected socket, not a listening one (Accept=yes is not supported)".into());
    }
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_listening_unix_socket_is_accepted_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.sock");
        let listener = UnixListener::bind(&path).unwrap();
        assert_eq!(probe(listener.as_fd()).unwrap(), path);
    }

    #[test]
    fn other_descriptors_are_refused_with_the_reason() {
        let (a, _b) = UnixStream::pair().unwrap();
        let err = probe(a.as_fd()).unwrap_err();
        assert!(
            err.contains("ListenStream") || err.contains("listening"),
            "{err}"
        );

        let file = tempfile::tempfile().unwrap();
        assert!(probe(file.as_fd()).unwrap_err().contains("not a socket"));

        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(probe(udp.as_fd())
            .unwrap_err()
            .contains("not a stream socket"));

        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(probe(tcp.as_fd())
            .unwrap_err()
            .contains("not a Unix socket"));
    }

    #[test]
    fn nothing_passed_means_bind_our_own() {
        // The test process was not socket-activated (LISTEN_PID, if inherited at
        // all, names another process).
        assert!(take_listener().unwrap().is_none());
    }
}
