//! Disk trouble during a rotation: the state directory is full or read-only
//! exactly when a rotated refresh token must be persisted.
//!
//! The guarantees: clients keep getting tokens (served from memory), status
//! says `degraded` and why, the broker retries the write by itself, and it
//! never spends the refresh token on disk — already burned by the rotation —
//! again (the fake server's reuse detection would revoke the whole family).
//!
//! Faults come from the store's test hook (`OAUTH_BROKER_FAULT_STORE`: every
//! save fails with ENOSPC while the named file exists), which works for any
//! user. Where `mount` is permitted (root in CI), a second test puts the state
//! directory on a tiny tmpfs and makes it really full, then really read-only
//! (a read-only mount stops root too, unlike chmod).

use crate::common::{eventually, Broker};
use oauth_broker_client::proto::TokenState;
use oauth_broker_client::AccessToken;
use oauth_broker_tests::fake_server::{Fault, Stats};
use oauth_broker_tests::harness::TestEnv;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const FAULT_ENV: &str = "OAUTH_BROKER_FAULT_STORE";

fn assert_no_token_spent_wrongly(stats: &Stats, what: &str) {
    assert_eq!(stats.reuse_detections, 0, "{what}: {stats:#?}");
    assert_eq!(stats.families_revoked, 0, "{what}: {stats:#?}");
    assert_eq!(stats.invalid_refresh_attempts, 0, "{what}: {stats:#?}");
}

/// Forces one rotation through a 401 report and returns the new token.
fn rotate(rig: &Broker, current: &AccessToken) -> AccessToken {
    let fresh = rig
        .client()
        .unauthorized(current)
        .expect("a token despite the disk trouble");
    assert_ne!(fresh.token_id(), current.token_id());
    assert!(
        rig.server_accepts(&fresh),
        "served token dead at the server"
    );
    fresh
}

/// True once the state file holds the refresh token the server considers
/// current (the login survives a crash from here on).
fn disk_is_current(rig: &Broker) -> bool {
    rig.disk_refresh_token()
        .is_some_and(|rt| rig.fake.is_refresh_token_current(&rt))
}

fn wait_not_degraded(rig: &Broker, what: &str) {
    eventually(what, Duration::from_secs(15), || {
        rig.status().degraded.is_none().then_some(())
    });
}

#[test]
fn a_full_disk_during_rotations_keeps_serving_reports_degraded_retries_and_never_respends_the_burned_token(
) {
    let hook = tempfile::tempdir().unwrap();
    let fault_file = hook.path().join("enospc");
    let spec = Broker::builder()
        .fast_refresh()
        .ttl(Duration::from_secs(60))
        .brokerd_env(FAULT_ENV, fault_file.to_string_lossy());
    let rig = spec.logged_in();
    let grant = rig.grant().clone();
    assert!(
        rig.disk_refresh_token().as_deref() == Some(grant.refresh()),
        "unexpected refresh token on disk"
    );
    let mut current = rig.client().token(Duration::ZERO).expect("token");

    std::fs::write(&fault_file, b"").unwrap();
    let mut rotations = 0;
    for _ in 0..4 {
        current = rotate(&rig, &current);
        rotations += 1;
        let status = rig.status();
        assert_eq!(status.state, TokenState::Valid);
        let degraded = status.degraded.expect("status says degraded");
        assert!(
            degraded.contains("No space left on device"),
            "degraded without the cause: {degraded}"
        );
    }
    // The disk still holds the first refresh token, which the first rotation
    // burned; the broker kept spending only the in-memory successors.
    assert!(
        rig.disk_refresh_token().as_deref() == Some(grant.refresh()),
        "the state file changed although every write failed"
    );
    assert!(!rig.fake.is_refresh_token_current(grant.refresh()));
    assert_no_token_spent_wrongly(&rig.fake.stats(), "while degraded");
    assert_eq!(rig.fake.stats().successful_refreshes, rotations);

    // It retries the write by itself (the warning repeats) ...
    eventually("repeated write attempts", Duration::from_secs(15), || {
        (rig.logs().matches("state write still failing").count() >= 2).then_some(())
    });
    // ... and leaves degraded mode once the disk has room again.
    std::fs::remove_file(&fault_file).unwrap();
    wait_not_degraded(&rig, "the write to succeed after the disk recovered");
    assert!(disk_is_current(&rig), "state file not caught up");

    // A restart finds the current token on disk.
    let mut rig = rig;
    rig.restart();
    let after = rig
        .client()
        .token(Duration::ZERO)
        .expect("token after restart");
    assert_eq!(after.token_id(), current.token_id());
    rotate(&rig, &after);
    assert_no_token_spent_wrongly(&rig.fake.stats(), "after recovery");
    println!(
        "RELIABILITY disk.enospc_hook rotations_while_degraded={rotations} faults_injected={}",
        failed_writes(&rig.logs())
    );
}

#[test]
fn stopping_while_degraded_persists_the_rotated_token_once_the_disk_has_recovered() {
    // The write retry is a minute away: only the shutdown can save the login
    // when the user stops the broker right after freeing disk space.
    let hook = tempfile::tempdir().unwrap();
    let fault_file = hook.path().join("enospc");
    let spec = Broker::builder()
        .fast_refresh()
        .ttl(Duration::from_secs(60))
        .refresh_toml("backoff_initial_ms = 60000\nbackoff_max_secs = 300\n")
        .brokerd_env(FAULT_ENV, fault_file.to_string_lossy());
    let mut rig = spec.logged_in();
    let grant = rig.grant().clone();
    let current = rig.client().token(Duration::ZERO).expect("token");
    std::fs::write(&fault_file, b"").unwrap();
    let rotated = rotate(&rig, &current);
    assert!(rig.status().degraded.is_some());
    std::fs::remove_file(&fault_file).unwrap();

    rig.restart();
    assert!(
        rig.disk_refresh_token().as_deref() != Some(grant.refresh()),
        "the burned refresh token is still on disk"
    );
    assert!(
        disk_is_current(&rig),
        "the rotated token was not persisted at shutdown"
    );
    let after = rig
        .client()
        .token(Duration::ZERO)
        .expect("token after restart");
    assert_eq!(after.token_id(), rotated.token_id());
    rotate(&rig, &after);
    assert_no_token_spent_wrongly(&rig.fake.stats(), "restart after degraded");
}

#[test]
fn degraded_clears_when_a_later_write_succeeds_even_if_the_refresh_failed() {
    // The in-flight marker cannot be written (disk full), the disk recovers
    // while the request is out, the refresh fails transiently and its failure
    // record is written fine: the state on disk is complete again, so status
    // must stop saying degraded.
    let hook = tempfile::tempdir().unwrap();
    let fault_file = hook.path().join("enospc");
    let spec = Broker::builder()
        .fast_refresh()
        .ttl(Duration::from_secs(60))
        .refresh_toml("backoff_initial_ms = 100\nbackoff_max_secs = 1\nhttp_timeout_secs = 1\n")
        .brokerd_env(FAULT_ENV, fault_file.to_string_lossy());
    let rig = spec.logged_in();
    let current = rig.client().token(Duration::ZERO).expect("token");
    std::fs::write(&fault_file, b"").unwrap();
    // First attempt: held by the server past the timeout; the at-once retry
    // after that ambiguous failure gets a 503, and so does every later retry:
    // on a loaded machine the backoff's next attempt may run before the
    // waiting report is answered, and must not turn its answer into a token.
    rig.fake.push_fault(Fault::Delay(Duration::from_secs(600)));
    rig.fake.set_persistent_fault(Some(Fault::Status(503)));
    let mut client = rig.client();
    let reporter = std::thread::spawn(move || client.unauthorized(&current).map(|_| ()));
    rig.fake
        .wait_for_token_requests_received(1, Duration::from_secs(10))
        .expect("refresh request");
    assert!(
        rig.status().degraded.is_some(),
        "marker write failure not reported"
    );
    std::fs::remove_file(&fault_file).unwrap();
    let answer = reporter.join().unwrap();
    assert!(
        answer.is_err(),
        "the refresh should have failed: {answer:?}"
    );
    let status = rig.status();
    assert!(status.last_error.is_some());
    assert_eq!(
        status.degraded, None,
        "degraded kept although the state was written since"
    );
}

/// A mount made for one test; unmounted on drop (lazily if still busy).
pub(crate) struct Mount {
    pub(crate) path: PathBuf,
}

impl Mount {
    /// `mount ARGS PATH`; `None` when this environment does not allow
    /// mounting (not root, no CAP_SYS_ADMIN, no `mount` binary).
    fn new(args: &[&str], path: &Path) -> Option<Mount> {
        let ok = Command::new("mount")
            .args(args)
            .arg(path)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        ok.then(|| Mount {
            path: path.to_path_buf(),
        })
    }

    /// A tiny tmpfs at `path`.
    pub(crate) fn tmpfs(path: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(path).ok()?;
        Mount::new(
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ],
            path,
        )
    }

    /// `path` made read-only for new opens — root included — by a read-only
    /// bind mount over itself. (Remounting the tmpfs itself read-only is
    /// refused while the broker holds its lock file open for writing; files
    /// opened before the bind mount keep working, like on a real disk that
    /// turned read-only under a running program.)
    pub(crate) fn read_only(path: &Path) -> Mount {
        let bind = Mount::new(&["--bind", &path.to_string_lossy()], path)
            .expect("bind mount where mount works");
        let out = Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(path)
            .output()
            .expect("mount");
        assert!(out.status.success(), "remount read-only: {out:?}");
        bind
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let done = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !done {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Fills the file system at `dir` with one file until the kernel says ENOSPC.
pub(crate) fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    loop {
        match file.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling the tmpfs: {e}"),
        }
    }
    path
}

#[test]
fn a_really_full_then_really_read_only_state_dir_on_tmpfs() {
    let env = TestEnv::new();
    let Some(mount) = Mount::tmpfs(&env.state_dir().join("default"), "256k") else {
        println!("RELIABILITY disk.tmpfs skipped: mount is not permitted here (the fault-hook tests cover the guarantees)");
        return;
    };
    let mut rig = Broker::builder()
        .fast_refresh()
        .ttl(Duration::from_secs(60))
        .test_env(env)
        .start();
    rig.import_fresh_grant();
    let mut current = rig.client().token(Duration::ZERO).expect("token");

    // Really full. The state journal's preallocated space still takes the
    // records: rotations stay persisted until the journal must be compacted
    // into a new file, which needs space the disk no longer has.
    let filler = fill(&mount.path);
    let mut persisted_while_full = 0;
    let (degraded, burned) = loop {
        let before = rig.disk_refresh_token().expect("a refresh token on disk");
        current = rotate(&rig, &current);
        if let Some(degraded) = rig.status().degraded {
            break (degraded, before);
        }
        assert!(
            disk_is_current(&rig),
            "a rotation on the full disk was neither persisted nor reported"
        );
        persisted_while_full += 1;
        assert!(persisted_while_full < 1000, "never degraded on a full disk");
    };
    assert!(degraded.contains("No space left on device"), "{degraded}");
    assert!(
        persisted_while_full > 0,
        "the preallocated journal took no record on the full disk"
    );
    assert!(
        rig.disk_refresh_token().as_deref() == Some(burned.as_str()),
        "unexpected refresh token on disk"
    );
    std::fs::remove_file(filler).unwrap();
    wait_not_degraded(&rig, "recovery from a full disk");
    assert!(disk_is_current(&rig));

    // Really read-only (root included).
    let read_only = Mount::read_only(&mount.path);
    let burned = rig.disk_refresh_token().unwrap();
    current = rotate(&rig, &current);
    let degraded = rig.status().degraded.expect("degraded when read-only");
    assert!(degraded.contains("Read-only file system"), "{degraded}");
    assert!(
        rig.disk_refresh_token().as_deref() == Some(burned.as_str()),
        "unexpected refresh token on disk"
    );
    current = rotate(&rig, &current);
    drop(read_only);
    wait_not_degraded(&rig, "recovery from a read-only disk");
    assert!(disk_is_current(&rig));
    let _ = current;
    assert_no_token_spent_wrongly(&rig.fake.stats(), "tmpfs");

    // The broker holds files on the mount: stop it before unmounting.
    rig.broker.kill().unwrap();
    drop(mount);
    println!(
        "RELIABILITY disk.tmpfs faults_injected={} (real ENOSPC and EROFS) rotations_persisted_on_the_full_disk={persisted_while_full}",
        failed_writes(&rig.logs())
    );
}

/// State writes that failed, as the broker logged them.
pub(crate) fn failed_writes(logs: &str) -> usize {
    [
        "cannot write the in-flight marker",
        "refreshed tokens could not be persisted",
        "cannot record the refresh failure on disk",
        "state write still failing",
    ]
    .iter()
    .map(|needle| logs.matches(needle).count())
    .sum()
}
