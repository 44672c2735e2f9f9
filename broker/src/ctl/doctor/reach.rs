//! Can this process reach its broker, and if not, why: no socket, a stale
//! socket file, another user's socket, a broker that is busy or refuses this
//! user, a socket that is forwarded from elsewhere.
//!
//! The socket is looked at before the client connects (a missing file and a
//! file nobody listens on are different fixes), then the real client makes
//! the same `Status` request every agent can make.

use super::super::{exit, Global};
use super::finding::Finding;
use oauth_broker_client::proto::StatusReport;
use oauth_broker_client::{Error, SOCKET_ENV};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// How long doctor waits for the broker: a healthy one answers in
/// milliseconds, so a few seconds tell a hung broker (or a dead forward).
const PATIENCE: Duration = Duration::from_secs(5);

/// A broker that answered.
pub struct Reached {
    /// Its status report.
    pub report: StatusReport,
    /// This machine's wall clock just before and just after the request.
    pub asked_at: SystemTime,
    /// See `asked_at`.
    pub answered_at: SystemTime,
}

/// Where the socket path came from, for the messages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Flag,
    Env,
    Default,
}

/// Checks the socket and asks for the broker's status; pushes one finding
/// (what was reached, or why nothing was).
pub fn check(global: &Global, findings: &mut Vec<Finding>) -> Option<Reached> {
    let builder = global
        .client_builder()
        .connect_timeout(PATIENCE)
        .request_timeout(PATIENCE)
        .busy_retry_budget(Duration::ZERO);
    let path = match builder.socket_path() {
        Ok(path) => path,
        Err(e) => {
            findings.push(Finding::fail(
                "socket",
                exit::code_for(&e),
                e.to_string(),
                e.hint()
                    .unwrap_or("check --account / OAUTH_BROKER_ACCOUNT")
                    .to_string(),
            ));
            return None;
        }
    };
    let source = if global.socket.is_some() {
        Source::Flag
    } else if std::env::var_os(SOCKET_ENV).is_some_and(|v| !v.is_empty()) {
        Source::Env
    } else {
        Source::Default
    };
    let named = match source {
        Source::Flag => format!("{} (--socket)", path.display()),
        Source::Env => format!("{} (from {SOCKET_ENV})", path.display()),
        Source::Default => path.display().to_string(),
    };
    if let Some(finding) = inspect_socket_file(&path, &named, source) {
        findings.push(finding);
        return None;
    }
    let peer_pid = match probe(&path) {
        Ok(pid) => pid,
        Err(finding) => {
            findings.push(finding.with_named(&named, source));
            return None;
        }
    };
    let asked_at = SystemTime::now();
    let answer = builder.connect().and_then(|mut client| client.status());
    let answered_at = SystemTime::now();
    match answer {
        Ok(report) => {
            findings.push(reached(&named, &report, peer_pid, source));
            Some(Reached {
                report,
                asked_at,
                answered_at,
            })
        }
        Err(e) => {
            findings.push(refused(&named, &e));
            None
        }
    }
}

/// The socket file itself: there, a socket, ours.
fn inspect_socket_file(path: &Path, named: &str, source: Source) -> Option<Finding> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let message = format!("no socket at {named}: no broker is listening there");
            let fix = match source {
                Source::Env => format!("OAUTH_BROKER_SOCKET names a socket that is not there: forward the broker's socket to this path (`ssh -R {}:<broker socket> -o StreamLocalBindUnlink=yes …`), bind-mount the broker's socket directory into this container, or unset {SOCKET_ENV}", path.display()),
                _ => "start the broker: `systemctl --user start oauth-broker.socket` (after `brokerctl service install`), or run `brokerd`; check --account".to_string(),
            };
            return Some(Finding::fail("socket", exit::UNREACHABLE, message, fix));
        }
        Err(e) => {
            return Some(Finding::fail(
                "socket",
                exit::UNREACHABLE,
                format!("cannot look at {named}: {e}"),
                "the socket's directory must be searchable by you (brokerd creates it 0700 for its own user)",
            ))
        }
    };
    if !meta.file_type().is_socket() {
        return Some(Finding::fail(
            "socket",
            exit::UNREACHABLE,
            format!("{named} is not a socket"),
            format!("remove {} (brokerd creates the socket itself) or point --socket at the broker's socket", path.display()),
        ));
    }
    let me = nix::unistd::getuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Some(Finding::fail(
            "socket",
            exit::UNREACHABLE,
            format!("the socket {named} belongs to uid {}, not to you (uid {me}): another user's broker", meta.uid()),
            "use a broker of your own: another --account, or --socket / OAUTH_BROKER_SOCKET naming your socket",
        ));
    }
    None
}

/// A raw connect: tells a stale socket (nobody listens) from a live one, and
/// learns who serves it (`SO_PEERCRED`). Closed again without a word.
fn probe(path: &Path) -> Result<Option<i32>, Probe> {
    match UnixStream::connect(path) {
        Ok(stream) => {
            use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
            Ok(getsockopt(&stream, PeerCredentials).ok().map(|c| c.pid()))
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Err(Probe::Stale),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(Probe::Denied),
        Err(e) => Err(Probe::Other(e)),
    }
}

enum Probe {
    Stale,
    Denied,
    Other(io::Error),
}

impl Probe {
    fn with_named(self, named: &str, source: Source) -> Finding {
        match self {
            Probe::Stale => {
                let mut fix = "start the broker (brokerd removes a stale socket itself): `systemctl --user start oauth-broker.socket` or `brokerd`".to_string();
                if source == Source::Env {
                    fix.push_str("; for a socket forwarded over ssh, the session ended: reconnect (StreamLocalBindUnlink=yes lets the new forward replace the stale file)");
                }
                Finding::fail(
                    "socket",
                    exit::UNREACHABLE,
                    format!("stale socket {named}: the file is there but nothing listens (the broker exited without removing it, or its forward ended)"),
                    fix,
                )
            }
            Probe::Denied => Finding::fail(
                "socket",
                exit::UNREACHABLE,
                format!("permission denied connecting to {named}"),
                "the socket is 0600 for the broker's user: run as that user, or (containers) map your uid to it",
            ),
            Probe::Other(e) => Finding::fail(
                "socket",
                exit::UNREACHABLE,
                format!("cannot connect to {named}: {e}"),
                "check the path; start the broker",
            ),
        }
    }
}

/// The line for a broker that answered; says whether the socket is served
/// by the broker itself or forwarded (ssh, a container's bind mount from
/// another pid namespace).
fn reached(named: &str, report: &StatusReport, peer_pid: Option<i32>, source: Source) -> Finding {
    let mut message = format!(
        "reachable at {named}: oauth-broker {} (pid {}), account {}",
        report.broker_version, report.pid, report.account
    );
    match peer_pid {
        Some(pid) if u32::try_from(pid).ok() == Some(report.pid) => {}
        Some(0) => message.push_str(
            "; served from another pid namespace (a container's or the host's broker over a bind-mounted socket)",
        ),
        Some(pid) => message.push_str(&format!(
            "; forwarded: the socket is served by pid {pid}, not by the broker (an ssh -R forward or a relay)"
        )),
        None => {}
    }
    if source == Source::Env {
        message.push_str(&format!("; socket from {SOCKET_ENV}"));
    }
    Finding::ok("broker", message)
}

/// The line for a broker that was reached but did not answer the request.
fn refused(named: &str, error: &Error) -> Finding {
    let hint = error.hint().map(str::to_string);
    let e = without_hint(error);
    match error {
        Error::Busy { .. } => Finding::fail(
            "broker",
            exit::OTHER,
            format!("the broker at {named} is busy: {e}"),
            // The broker answers busy only when every connection is in the
            // middle of a request (idle ones are closed to make room), and
            // its frame carries its own hint; this is for one that sent none.
            hint.unwrap_or_else(|| "retry in a moment: every connection is in the middle of a request (a login waiting for the user, requests waiting for a refresh); raise max_connections in [server] if this persists".into()),
        ),
        Error::PermissionDenied { .. } => Finding::fail(
            "broker",
            exit::OTHER,
            format!("the broker at {named} refused this user (uid {}): {e}", nix::unistd::getuid()),
            hint.unwrap_or_else(|| "add the uid the broker saw to allow_uids in its [server] table".into()),
        ),
        Error::Timeout { .. } => Finding::fail(
            "broker",
            exit::UNREACHABLE,
            format!("the broker at {named} accepted the connection but did not answer within {}s", PATIENCE.as_secs()),
            "restart brokerd; for a forwarded socket, check the forward's far end",
        ),
        _ => Finding::fail(
            "broker",
            exit::code_for(error),
            format!("the broker at {named} did not answer: {e}"),
            hint.unwrap_or_else(|| "see the broker's log (journalctl --user -u oauth-broker)".into()),
        ),
    }
}

/// The error's one line without its `(hint: …)`: the hint is the finding's
/// fix, printed after it.
fn without_hint(e: &Error) -> String {
    let text = e.to_string();
    match e.hint() {
        Some(hint) => text
            .strip_suffix(&format!(" (hint: {hint})"))
            .map_or_else(|| text.clone(), str::to_string),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_answer_is_one_line_with_the_brokers_hint_as_the_fix_once() {
        let busy = Error::Busy {
            retry_after: Some(Duration::from_secs(1)),
            message: "every connection is serving a request".into(),
            hint: Some("raise max_connections".into()),
        };
        let finding = refused("/run/b.sock", &busy);
        let value = serde_json::to_value(&finding).unwrap();
        assert_eq!(
            value["message"],
            "the broker at /run/b.sock is busy: every connection is serving a request; retry after 1 s"
        );
        assert_eq!(value["fix"], "raise max_connections");
        assert_eq!(value["level"], "fail");
    }
}
