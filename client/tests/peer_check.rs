//! A socket served by another user is refused before anything is sent to it.
//!
//! The impostor must really be another uid, so the test (when run as root)
//! re-executes this test binary as `nobody` to listen on a socket under /tmp —
//! the very place where another user could pre-create the client's fallback
//! socket directory.

use oauth_broker_client::{Client, Error};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where the helper listens; set only for the helper process.
const LISTEN_ENV: &str = "OAUTH_BROKER_TEST_IMPOSTOR_SOCKET";
/// What the helper prints once it listens.
const READY: &str = "impostor listening";
/// The uid (and gid) of `nobody`.
const NOBODY: u32 = 65534;

/// Not a test of its own: the impostor of
/// `refuses_a_socket_served_by_another_user`, which runs it as `nobody`.
/// Listens (never accepts: the kernel knows the listener's uid anyway) until
/// its stdin closes.
#[test]
#[ignore = "helper process of refuses_a_socket_served_by_another_user"]
fn impostor_listener() {
    let Some(path) = std::env::var_os(LISTEN_ENV) else {
        return;
    };
    let _listener = UnixListener::bind(&path).unwrap();
    // On its own line: libtest has already printed `test impostor_listener ... `.
    println!("\n{READY}");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// Kills the helper when the test ends, also on a failed assertion.
struct Impostor(Child);

impl Drop for Impostor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the impostor as `nobody` listening at `path`; `None` when this
/// process may not switch users (not root, or `nobody` is not mapped in this
/// user namespace).
fn start_impostor(dir: &Path, path: &Path) -> Option<Impostor> {
    // A copy of this binary that `nobody` can run wherever the checkout is.
    let exe = dir.join("impostor");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let spawned = Command::new(&exe)
        .args([
            "--exact",
            "peer_check::impostor_listener",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(LISTEN_ENV, path)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => Impostor(child),
        Err(e) => {
            eprintln!("skipped: cannot run a process as uid {NOBODY}: {e}");
            return None;
        }
    };
    // Read on a thread so that a stuck helper fails the test instead of
    // hanging it (dropping `child` kills the helper, which ends the thread).
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let ready = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line == READY);
        let _ = tx.send(ready);
    });
    let ready = rx.recv_timeout(Duration::from_secs(30)).unwrap_or(false);
    assert!(ready, "the impostor did not start listening");
    Some(child)
}

#[test]
fn refuses_a_socket_served_by_another_user() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: only root can listen as another user (the decision is unit-tested)");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("oauth-broker-peer-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.path().join("impostor.sock");
    let Some(_impostor) = start_impostor(dir.path(), &path) else {
        return;
    };

    let check = |err: Error| {
        assert!(
            matches!(&err, Error::UntrustedPeer { uid: NOBODY, path: p } if p == &path),
            "{err:?}"
        );
        let text = err.to_string();
        let expected = format!(
            "the socket at {} is served by uid {NOBODY}, not by this user or root — refusing to \
             talk to it",
            path.display()
        );
        assert!(text.starts_with(&expected), "{text}");
        assert!(!text.contains('\n'));
    };
    let blocking = Client::builder()
        .socket(&path)
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .unwrap_err();
    check(blocking);

    #[cfg(feature = "tokio")]
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let asynchronous = runtime
            .block_on(
                oauth_broker_client::tokio::Client::builder()
                    .socket(&path)
                    .connect_timeout(Duration::from_secs(5))
                    .connect(),
            )
            .unwrap_err();
        check(asynchronous);
    }
}
