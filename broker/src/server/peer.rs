//! Who is on the other end of a connection, as the kernel tells it
//! (`SO_PEERCRED`), and what to say when that peer may not use the broker.
//!
//! Why a file of its own: across namespaces the answer needs reading. A
//! client in a container with a user namespace shows up with the *host's*
//! uid for its user (rootless Podman: the user's subordinate uid, e.g.
//! 100999, not 1000), and a client whose process is not visible in the
//! broker's PID namespace (the broker in a container, the client outside or
//! in another one) has pid 0. The refusal names the uid exactly as the broker
//! saw it and the exact `allow_uids` line that admits it; the log never
//! writes "pid 0" as if it were a process. `brokerctl doctor` can classify a
//! refusal with [`Peer`] the same way.

use nix::sys::socket::UnixCredentials;
use std::fmt;

/// The credentials of a connected peer; `None` where the kernel did not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The peer's uid in the broker's user namespace.
    pub uid: Option<u32>,
    /// The peer's pid in the broker's PID namespace; `Some(0)` when the peer
    /// lives in a PID namespace the broker cannot see into.
    pub pid: Option<i32>,
}

impl Peer {
    /// From `SO_PEERCRED` (`None` when asking failed).
    pub fn from_credentials(credentials: Option<UnixCredentials>) -> Peer {
        Peer {
            uid: credentials.map(|c| c.uid()),
            pid: credentials.map(|c| c.pid()),
        }
    }

    /// Whether this peer may use a broker running as `my_uid` with the extra
    /// `allow_uids`.
    pub fn is_allowed(&self, my_uid: u32, allow_uids: &[u32]) -> bool {
        self.uid
            .is_some_and(|uid| uid == my_uid || allow_uids.contains(&uid))
    }

    /// The pid for log lines: `pid 1234`, `pid unknown (other pid namespace)`
    /// or `pid unknown`.
    pub fn pid_display(&self) -> PidDisplay {
        PidDisplay(self.pid)
    }

    /// The one-line refusal sent to the client.
    pub fn refusal_message(&self) -> String {
        match self.uid {
            Some(uid) => format!("uid {uid} may not use this broker"),
            None => "a peer whose uid the kernel did not report may not use this broker".into(),
        }
    }

    /// What to do about a refusal: the exact line that admits this uid,
    /// given the `allow_uids` already configured.
    pub fn refusal_hint(&self, allow_uids: &[u32]) -> String {
        match self.uid {
            Some(uid) => format!(
                "connect as the broker's user, or add `{}` under [server] in the broker's config (in a container with a user namespace this is the host's uid for the container's user; see README \"Remote hosts and containers\")",
                allow_uids_line(allow_uids, uid)
            ),
            None => "connect as the broker's user".into(),
        }
    }
}

/// `allow_uids = [<existing…>, uid]`.
pub fn allow_uids_line(existing: &[u32], uid: u32) -> String {
    let mut uids: Vec<u32> = existing.to_vec();
    if !uids.contains(&uid) {
        uids.push(uid);
    }
    let list: Vec<String> = uids.iter().map(u32::to_string).collect();
    format!("allow_uids = [{}]", list.join(", "))
}

/// See [`Peer::pid_display`].
#[derive(Debug, Clone, Copy)]
pub struct PidDisplay(Option<i32>);

impl fmt::Display for PidDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(0) => f.write_str("pid unknown (other pid namespace)"),
            Some(pid) => write!(f, "pid {pid}"),
            None => f.write_str("pid unknown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_zero_is_another_pid_namespace() {
        let peer = |pid| Peer { uid: Some(1), pid };
        assert_eq!(
            peer(Some(0)).pid_display().to_string(),
            "pid unknown (other pid namespace)"
        );
        assert_eq!(peer(Some(42)).pid_display().to_string(), "pid 42");
        assert_eq!(peer(None).pid_display().to_string(), "pid unknown");
    }

    #[test]
    fn the_hint_names_the_exact_line() {
        let peer = Peer {
            uid: Some(100000),
            pid: Some(0),
        };
        assert!(peer
            .refusal_hint(&[])
            .contains("add `allow_uids = [100000]` under [server]"));
        assert!(peer
            .refusal_hint(&[1001])
            .contains("`allow_uids = [1001, 100000]`"));
        assert_eq!(peer.refusal_message(), "uid 100000 may not use this broker");
        assert!(peer.is_allowed(5, &[100000]));
        assert!(!peer.is_allowed(5, &[]));
        assert!(!Peer {
            uid: None,
            pid: None
        }
        .is_allowed(5, &[5]));
    }
}
