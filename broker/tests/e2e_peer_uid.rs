//! A client of another uid is refused with `permission_denied`, and the refusal
//! is logged with the uid — even when the socket's file permissions were opened
//! up by mistake (the SO_PEERCRED check is the second line of defence).

use crate::common::{brokerctl, fake_with_ttl, stderr, Broker};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

const OTHER_UID: u32 = 65534; // nobody

#[test]
fn a_client_of_another_uid_is_refused_and_logged() {
    if !nix::unistd::getuid().is_root() {
        println!(
            "SKIPPED: running a client under another uid needs root (tests run as uid {})",
            nix::unistd::getuid()
        );
        return;
    }
    let setup = Broker::logged_in(fake_with_ttl(Duration::from_secs(300)));
    // Open the way to the socket for the other user: traversable dirs and a
    // world-writable socket. Only the broker's peer check stands in the way.
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
    assert!(out.stdout.is_empty(), "no token for another user");
    let err = stderr(&out);
    assert!(err.contains(&OTHER_UID.to_string()), "{err}");
    assert!(err.contains("may not use this broker"), "{err}");

    let logs = setup.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("refused a connection from another user") && l.contains("65534")),
        "refusal not logged with the uid:\n{logs}"
    );
    // The broker's own user is still served.
    setup.client().token(Duration::ZERO).unwrap();
}
