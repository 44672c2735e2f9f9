//! Containers get their tokens from the one broker through a bind-mounted
//! socket *directory* (README "Remote hosts and containers"), tested with
//! real kernel namespaces (`unshare`, util-linux; no Docker):
//!
//! * a client in user+mount+PID namespaces (`--map-root-user`) reaches the
//!   broker through the mounted directory, also after the broker restarted —
//!   while a mount of the socket *file* keeps the dead socket's inode;
//! * a client whose uid is mapped (the container's uid 1 is the host's
//!   100000, as in rootless Podman) is refused with one line naming uid
//!   100000 and the exact `allow_uids = [100000]` line, logged the same way;
//!   with that line the same client is served;
//! * a peer the broker cannot see in its PID namespace (the broker in a
//!   container of its own) is logged as "pid unknown (other pid
//!   namespace)", never as pid 0;
//! * a socket path over the 107-byte limit is one clear line from brokerd
//!   and from brokerctl.
//!
//! User namespaces with a mapping other than one's own uid need root in the
//! parent namespace (as `newuidmap` does for Podman); CI runs as root. Like
//! `e2e_peer_uid.rs`, the tests that need it report SKIPPED for a non-root
//! developer — and fail when `CI` is set, so CI can never skip them.

use crate::common::{brokerctl, fake_with_ttl, stderr, stdout, Broker};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The host uid the container's uid 1 maps to (a subordinate uid).
const MAPPED_UID: u32 = 100000;

/// True when the test may go on; false (after printing SKIPPED) for a
/// non-root developer. Under CI a missing root is a failure.
fn root_or_skip(what: &str) -> bool {
    if nix::unistd::getuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} needs root (CI runs as root): tests run as uid {}",
        nix::unistd::getuid()
    );
    println!(
        "SKIPPED: {what} needs root (tests run as uid {})",
        nix::unistd::getuid()
    );
    false
}

fn shell_quote(s: &Path) -> String {
    format!("'{}'", s.display().to_string().replace('\'', r"'\''"))
}

#[test]
fn a_container_reaches_the_broker_through_its_bind_mounted_socket_directory() {
    if !root_or_skip("creating user namespaces mapped to root") {
        return;
    }
    let mut setup = Broker::logged_in(fake_with_ttl(Duration::from_secs(300)));
    let socket = setup.broker.socket_path().to_path_buf();
    let socket_dir = socket.parent().unwrap().to_path_buf();
    let name = socket.file_name().unwrap().to_str().unwrap().to_string();
    // The container's view: its own directory for the mounted socket dir,
    // and a file to mount the socket itself on (the wrong way).
    let ctr = setup.env.path("ctr");
    std::fs::create_dir_all(ctr.join("dir")).unwrap();
    std::fs::write(ctr.join("file.sock"), b"").unwrap();
    let ctl = brokerctl();
    let script = format!(
        r#"set -e
mount --bind {dir} {ctr}/dir
mount --bind {sock} {ctr}/file.sock
# The host's path to the socket is gone inside: only the mounts lead there.
mount -t tmpfs tmpfs {dir}
token() {{ OAUTH_BROKER_SOCKET="$1" {ctl} token >/dev/null 2>"$2" && echo ok || echo "failed $?"; }}
echo "uid $(id -u) pid $$"
echo "dir $(token {ctr}/dir/{name} {ctr}/err1)"
echo "file $(token {ctr}/file.sock {ctr}/err2)"
read restarted
echo "dir $(token {ctr}/dir/{name} {ctr}/err3)"
echo "file $(token {ctr}/file.sock {ctr}/err4)"
"#,
        dir = shell_quote(&socket_dir),
        ctr = shell_quote(&ctr),
        sock = shell_quote(&socket),
        ctl = shell_quote(&ctl),
    );
    let mut child = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "sh",
            "-c",
            &script,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run unshare (util-linux)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || {
        lines
            .next()
            .unwrap_or_else(|| panic!("the container stopped early"))
            .unwrap()
    };
    assert_eq!(
        next(),
        "uid 0 pid 1",
        "root in its own user and PID namespaces"
    );
    assert_eq!(next(), "dir ok");
    assert_eq!(
        next(),
        "file ok",
        "a file mount works until the broker restarts"
    );

    // A new broker binds a new socket (a new inode) in the same directory.
    setup.restart();
    writeln!(child.stdin.as_mut().unwrap(), "restarted").unwrap();
    assert_eq!(
        next(),
        "dir ok",
        "the mounted directory shows the new socket"
    );
    assert_eq!(
        next(),
        "file failed 3",
        "the mounted file is still the old, dead socket: unreachable"
    );
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "container script failed: {err}");
    let dead = std::fs::read_to_string(ctr.join("err4")).unwrap_or_default();
    assert!(dead.contains("cannot reach oauth-broker"), "{dead}");
}

#[test]
fn a_uid_mapped_container_client_is_refused_with_the_exact_allow_uids_line() {
    if !root_or_skip("mapping a container's uid to a subordinate uid") {
        return;
    }
    // Refused first; then the same client against a broker with the line
    // the refusal named.
    let refused = Broker::logged_in(fake_with_ttl(Duration::from_secs(300)));
    let out = run_mapped_client(&refused);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no token for an unknown uid");
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains(&format!("uid {MAPPED_UID} may not use this broker"))
            && err.contains(&format!("add `allow_uids = [{MAPPED_UID}]` under [server]")),
        "{err}"
    );
    let logs = refused.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("refused a connection from another user"))
        .unwrap_or_else(|| panic!("refusal not logged:\n{logs}"));
    assert!(
        line.contains(&format!("uid {MAPPED_UID}, pid "))
            && line.contains(&format!("`allow_uids = [{MAPPED_UID}]`")),
        "{line}"
    );
    // The client is in a child PID namespace: the broker sees its real pid.
    assert!(!line.contains("pid unknown"), "{line}");

    let allowed = Broker::builder()
        .ttl(Duration::from_secs(300))
        .server_toml(&format!("allow_uids = [{MAPPED_UID}]"))
        .logged_in();
    let out = run_mapped_client(&allowed);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 1, "the token");
}

/// Opens the socket's file permissions to the mapped uid (like
/// `e2e_peer_uid.rs`: only the broker's peer check is left in the way; see
/// README for doing this in practice) and runs `brokerctl token` as the
/// container's uid 1 — the host's [`MAPPED_UID`] — through the socket
/// directory bind-mounted into user+mount+PID namespaces. The uid map is
/// written from here, as `newuidmap` does: container 0 is host 0 (the
/// broker's user, whom the client trusts), 1… are 100000….
fn run_mapped_client(setup: &Broker) -> std::process::Output {
    let socket = setup.broker.socket_path().to_path_buf();
    let mut dir = socket.parent().unwrap().to_path_buf();
    loop {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode | 0o011)).unwrap();
        if dir == setup.env.root() || !dir.pop() {
            break;
        }
    }
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let ctr = setup.env.path("ctr");
    std::fs::create_dir_all(&ctr).unwrap();
    std::fs::set_permissions(&ctr, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = format!(
        r#"echo ready
read mapped
mount --bind {dir} {ctr}
exec setpriv --reuid=1 --regid=1 --clear-groups env OAUTH_BROKER_SOCKET={ctr}/{name} {ctl} token
"#,
        dir = shell_quote(socket.parent().unwrap()),
        ctr = shell_quote(&ctr),
        name = socket.file_name().unwrap().to_str().unwrap(),
        ctl = shell_quote(&brokerctl()),
    );
    let mut child = Command::new("unshare")
        .args([
            "--user",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "sh",
            "-c",
            &script,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run unshare (util-linux)");
    let mut stdout = child.stdout.take().unwrap();
    let mut ready = [0u8; 6];
    std::io::Read::read_exact(&mut stdout, &mut ready).expect("the namespace is up");
    assert_eq!(&ready, b"ready\n");
    // `unshare` itself owns the new user namespace; its map is ours to write.
    let pid = child.id();
    std::fs::write(
        format!("/proc/{pid}/uid_map"),
        format!("0 0 1\n1 {MAPPED_UID} 65536\n"),
    )
    .expect("write the uid map");
    std::fs::write(
        format!("/proc/{pid}/gid_map"),
        format!("0 0 1\n1 {MAPPED_UID} 65536\n"),
    )
    .expect("write the gid map");
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut stdout, &mut rest).unwrap();
    std::process::Output {
        status: out.status,
        stdout: rest,
        stderr: out.stderr,
    }
}

#[test]
fn a_peer_outside_the_brokers_pid_namespace_is_logged_without_a_pid() {
    if !root_or_skip("running a client under another uid") {
        return;
    }
    // brokerd as in a container: in a PID namespace of its own, so no
    // process outside has a pid there. A tiny wrapper keeps SIGTERM working
    // (unshare ignores it; killing unshare sends brokerd its TERM) and
    // takes brokerd down if the test dies.
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("brokerd-in-pidns");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nsetpriv --pdeathsig KILL unshare --pid --fork --kill-child=TERM {} \"$@\" &\nchild=$!\ntrap 'kill -KILL $child' TERM INT\nwait $child\nstatus=$?\nwait $child 2>/dev/null\nexit $status\n",
            shell_quote(&crate::common::brokerd())
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let setup = Broker::builder()
        .ttl(Duration::from_secs(300))
        .brokerd(wrapper)
        .logged_in();
    const OTHER_UID: u32 = 65534;
    let socket = setup.broker.socket_path().to_path_buf();
    let mut d = socket.parent().unwrap().to_path_buf();
    loop {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode | 0o011)).unwrap();
        if d == setup.env.root() || !d.pop() {
            break;
        }
    }
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = Command::new(brokerctl())
        .args(["--socket", socket.to_str().unwrap(), "token"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/nonexistent")
        .uid(OTHER_UID)
        .gid(OTHER_UID)
        .output()
        .expect("run brokerctl as another user");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("uid 65534 may not use this broker"),
        "{}",
        stderr(&out)
    );
    let logs = setup.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("refused a connection from another user"))
        .unwrap_or_else(|| panic!("refusal not logged:\n{logs}"));
    assert!(
        line.contains("uid 65534, pid unknown (other pid namespace)"),
        "{line}"
    );
    assert!(!line.contains("pid 0"), "{line}");
    // The broker's own user is served (its pid is invisible as well).
    setup.client().token(Duration::ZERO).unwrap();
}

#[test]
fn socket_paths_over_the_limit_are_one_clear_line() {
    let long = format!("/tmp/{}/broker.sock", "d".repeat(110));
    // brokerctl (and every client of the client crate).
    let out = Command::new(brokerctl())
        .args(["--socket", &long, "token"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "a usage error");
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "is {} bytes, longer than the 107 bytes",
            long.len()
        )) && err.contains("use a shorter one"),
        "{err}"
    );
    // brokerd refuses to start with the same line.
    let env = oauth_broker_tests::harness::TestEnv::new();
    let out = Command::new(crate::common::brokerd())
        .args(["--socket", &long])
        .env_clear()
        .envs(env.base_env())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("longer than the 107 bytes a Unix socket path may have"),
        "{err}"
    );
}
