//! A flood of connections from another uid does not flood the log: the first
//! refusal is logged in full, the rest are counted and summarised ("N more
//! connections refused from uid U"), and every refusal is accounted for.

use crate::common::{brokerctl, fake_with_ttl, Broker};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

const OTHER_UID: u32 = 65534; // nobody
const ATTEMPTS: u64 = 100;

#[test]
fn a_flood_from_another_uid_is_logged_once_with_a_count() {
    if !nix::unistd::getuid().is_root() {
        println!(
            "SKIPPED: running a client under another uid needs root (tests run as uid {})",
            nix::unistd::getuid()
        );
        return;
    }
    let mut setup = Broker::logged_in(fake_with_ttl(Duration::from_secs(300)));
    // Open the way to the socket for the other user; only the broker's peer
    // check stands in the way.
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

    // One process of the other user connects ATTEMPTS times in a row.
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "i=0; while [ $i -lt {ATTEMPTS} ]; do \"$0\" --socket \"$1\" token 2>/dev/null; i=$((i+1)); done; exit 0"
        ))
        .arg(brokerctl())
        .arg(&socket)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/nonexistent")
        .uid(OTHER_UID)
        .gid(OTHER_UID)
        .output()
        .expect("run brokerctl as another user");
    assert!(out.status.success());
    assert!(out.stdout.is_empty(), "no token for another user");

    let logs = setup.logs();
    let full = logs
        .lines()
        .filter(|l| l.contains("refused a connection from another user"))
        .count();
    assert_eq!(full, 1, "one full line for the flood:\n{logs}");
    // The broker's own user is still served.
    setup.client().token(Duration::ZERO).unwrap();

    // The rest are summarised (at the latest when the broker stops), so
    // every refusal is accounted for.
    setup.broker.terminate().expect("brokerd stops");
    let logs = setup.logs();
    let needle = format!(" more connections refused from uid {OTHER_UID}");
    let summarized: u64 = logs
        .lines()
        .filter_map(|l| {
            let (count, _) = l.split_once(&needle)?;
            count
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(
        summarized + 1,
        ATTEMPTS,
        "refusals not accounted for:\n{logs}"
    );
    let lines = logs.lines().filter(|l| l.contains(&needle)).count();
    assert!(
        lines <= 2,
        "{lines} summary lines for one short flood:\n{logs}"
    );
}
