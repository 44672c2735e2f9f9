//! Never spend a burned refresh token: disk trouble at stop or crash time, and
//! a crash mid-refresh followed by a fast restart (systemd restarts the unit
//! after 2 s).
//!
//! The real `brokerd` against the strict fake authorization server (rotation;
//! replaying a used refresh token revokes the whole family). Disk faults come
//! from the store's test hook (`OAUTH_BROKER_FAULT_STORE`: every state write
//! fails with ENOSPC while the named file exists); the record of unsaved
//! refreshes beside the socket (in `$XDG_RUNTIME_DIR`) is unaffected by it, as
//! a tmpfs is by a full state disk.

use crate::common::{self, eventually, Broker};
use oauth_broker_client::proto::TokenState;
use oauth_broker_client::{AccessToken, Error};
use oauth_broker_tests::fake_server::{Fault, Stats};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const FAULT_ENV: &str = "OAUTH_BROKER_FAULT_STORE";
const WAIT: Duration = Duration::from_secs(15);

/// One broker on a fault-hooked state directory, restartable on the same state.
struct Rig {
    broker: Broker,
    /// While this file exists every state write fails with ENOSPC.
    fault_file: PathBuf,
    _hook: tempfile::TempDir,
}

impl Rig {
    /// Access tokens live `ttl`; `refresh` is the body of the `[refresh]` table
    /// (no floor between forced refreshes: [`Rig::rotate`] forces one after
    /// the other; the floor has its own tests).
    fn logged_in(ttl: Duration, refresh: &str) -> Rig {
        let hook = tempfile::tempdir().unwrap();
        let fault_file = hook.path().join("enospc");
        let broker = Broker::builder()
            .ttl(ttl)
            .refresh_toml(&format!("{refresh}forced_refresh_floor_secs = 0\n"))
            .brokerd_env(FAULT_ENV, fault_file.to_string_lossy())
            .logged_in();
        Rig {
            broker,
            fault_file,
            _hook: hook,
        }
    }

    fn disk_full(&self, full: bool) {
        if full {
            std::fs::write(&self.fault_file, b"").unwrap();
        } else {
            let _ = std::fs::remove_file(&self.fault_file);
        }
    }

    /// A forced rotation through a 401 report; returns the new token.
    fn rotate(&self, current: &AccessToken) -> AccessToken {
        let fresh = self
            .broker
            .client()
            .unauthorized(current)
            .expect("rotated token");
        assert_ne!(fresh.token_id(), current.token_id());
        fresh
    }

    /// The record of unsaved refreshes beside the socket.
    fn runtime_record(&self) -> PathBuf {
        self.broker
            .broker
            .socket_path()
            .with_extension("unsaved.json")
    }

    /// The refresh token in the state file.
    fn disk_refresh_token(&self) -> String {
        self.broker.disk_refresh_token().expect("state file")
    }
}

fn assert_no_reuse(stats: &Stats, what: &str) {
    assert_eq!(stats.reuse_detections, 0, "{what}: {stats:#?}");
    assert_eq!(stats.families_revoked, 0, "{what}: {stats:#?}");
    assert_eq!(stats.invalid_refresh_attempts, 0, "{what}: {stats:#?}");
}

/// After a rotation the disk could not take and a stop that lost it: the next
/// broker says exactly that and sends nothing.
fn assert_rotation_not_persisted(rig: &Rig, refreshes_before: u64) {
    let err = rig
        .broker
        .client()
        .token(Duration::ZERO)
        .expect_err("no token from a lost login");
    assert!(err.is_relogin_required(), "{err:?}");
    assert_eq!(err.reason(), Some("rotation_not_persisted"), "{err:?}");
    let hint = err.hint().unwrap_or_default();
    assert!(
        hint.contains("disk") && hint.contains("brokerctl relogin"),
        "hint: {hint}"
    );
    let status = rig.broker.client().status().unwrap();
    assert_eq!(status.state, TokenState::ReloginRequired);
    assert_eq!(
        status.relogin_reason.as_deref(),
        Some("rotation_not_persisted")
    );
    let out = rig.broker.ctl(&["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", common::stdout(&out));
    assert!(common::stdout(&out).contains("rotation_not_persisted"));
    // The burned token on disk was not sent again: the family lives on at the
    // server (nobody holds its current token any more, but nothing revoked it).
    let stats = rig.broker.fake.stats();
    assert_eq!(stats.refresh_requests, refreshes_before, "{stats:#?}");
    assert_no_reuse(&stats, "after the restart");
}

/// Relogin (a fresh import) works again and clears the record.
fn assert_relogin_recovers(rig: &mut Rig) {
    rig.broker.import_fresh_grant();
    let token = rig.broker.client().token(Duration::ZERO).expect("token");
    assert!(rig.broker.server_accepts(&token));
    assert!(
        !rig.runtime_record().exists(),
        "record kept after a successful write"
    );
}

#[test]
fn a_kill_after_a_rotation_the_full_disk_could_not_take_is_reported_as_rotation_not_persisted_without_spending_the_burned_token(
) {
    let mut rig = Rig::logged_in(
        Duration::from_secs(600),
        "backoff_initial_ms = 100\nbackoff_max_secs = 1\nhttp_timeout_secs = 2\n",
    );
    let token = rig.broker.client().token(Duration::ZERO).unwrap();
    let burned = rig.disk_refresh_token();
    rig.disk_full(true);
    rig.rotate(&token);
    assert!(rig.broker.client().status().unwrap().degraded.is_some());
    assert!(!rig.broker.fake.is_refresh_token_current(&burned));

    rig.broker.broker.kill().unwrap();
    // Even with the disk writable again the rotated token is gone.
    rig.disk_full(false);
    let refreshes = rig.broker.fake.stats().refresh_requests;
    rig.broker.restart_after_kill();
    assert_rotation_not_persisted(&rig, refreshes);
    assert_eq!(rig.disk_refresh_token(), burned);
    // Recorded in the state file now that it can be written: a further restart
    // says the same without the record.
    eventually("the relogin recorded on disk", WAIT, || {
        (!rig.runtime_record().exists()).then_some(())
    });
    rig.broker.broker.terminate().unwrap();
    rig.broker.restart_after_kill();
    assert_rotation_not_persisted(&rig, refreshes);
    assert_relogin_recovers(&mut rig);
}

#[test]
fn a_sigterm_while_the_disk_stays_full_keeps_retrying_the_write_until_the_stop_timeout_then_the_next_start_says_rotation_not_persisted(
) {
    // Stop timeout: 2 × 1 s HTTP timeout + 5 s.
    let mut rig = Rig::logged_in(
        Duration::from_secs(600),
        "backoff_initial_ms = 100\nbackoff_max_secs = 1\nhttp_timeout_secs = 1\n",
    );
    let token = rig.broker.client().token(Duration::ZERO).unwrap();
    rig.disk_full(true);
    rig.rotate(&token);
    let stop = Instant::now();
    rig.broker
        .broker
        .signal(nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let status = rig
        .broker
        .broker
        .wait_exit(Duration::from_secs(20))
        .expect("brokerd stops at the stop timeout");
    let took = stop.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took >= Duration::from_secs(5),
        "stopped after {took:?} without the rotated token on disk"
    );
    let logs = rig.broker.logs();
    let retries = logs.matches("retrying until the stop timeout").count();
    assert!(retries >= 3, "no retries logged:\n{logs}");
    println!(
        "RELIABILITY never_lose.stop_while_full write_retries={retries} stopped_after_ms={}",
        took.as_millis()
    );
    assert!(logs.contains("rotation_not_persisted"), "{logs}");

    rig.disk_full(false);
    let refreshes = rig.broker.fake.stats().refresh_requests;
    rig.broker.restart_after_kill();
    assert_rotation_not_persisted(&rig, refreshes);
    assert_relogin_recovers(&mut rig);
}

#[test]
fn a_sigterm_while_the_disk_is_full_persists_the_rotated_token_once_space_is_freed_during_the_stop()
{
    let mut rig = Rig::logged_in(
        Duration::from_secs(600),
        // Stop timeout 2 × 5 s + 5 s; the background write retry is a minute away.
        "backoff_initial_ms = 60000\nbackoff_max_secs = 300\nhttp_timeout_secs = 5\n",
    );
    let token = rig.broker.client().token(Duration::ZERO).unwrap();
    rig.disk_full(true);
    let rotated = rig.rotate(&token);
    rig.broker
        .broker
        .signal(nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    eventually("a retry logged while stopping", WAIT, || {
        rig.broker
            .logs()
            .contains("retrying until the stop timeout")
            .then_some(())
    });
    assert!(
        rig.broker.broker.is_running(),
        "stopped with the token unsaved"
    );
    rig.disk_full(false);
    let status = rig.broker.broker.wait_exit(WAIT).expect("brokerd stops");
    assert!(status.success(), "{status:?}");
    assert!(
        rig.broker
            .fake
            .is_refresh_token_current(&rig.disk_refresh_token()),
        "the rotated token was not written during the stop"
    );
    assert!(!rig.runtime_record().exists());

    rig.broker.restart_after_kill();
    let after = rig.broker.client().token(Duration::ZERO).expect("token");
    assert_eq!(after.token_id(), rotated.token_id());
    rig.rotate(&after);
    assert_no_reuse(&rig.broker.fake.stats(), "after the stop");
}

#[test]
fn no_proactive_refresh_while_the_rotated_token_cannot_be_persisted_only_on_demand() {
    // 4 s tokens: the proactive refresh would come after about 3 s.
    let rig = Rig::logged_in(
        Duration::from_secs(4),
        "backoff_initial_ms = 100\nbackoff_max_secs = 1\nhttp_timeout_secs = 2\n",
    );
    let token = rig.broker.client().token(Duration::ZERO).unwrap();
    rig.disk_full(true);
    let rotated = rig.rotate(&token);
    assert!(rig.broker.client().status().unwrap().degraded.is_some());
    let refreshes = rig.broker.fake.stats().refresh_requests;

    // Wait past the point of the proactive refresh, up to the expiry: no
    // request, and the still-valid token is what everybody gets.
    let expires = rotated.expires_at();
    while let Ok(left) = expires.duration_since(std::time::SystemTime::now()) {
        if left < Duration::from_millis(300) {
            break;
        }
        let served = rig.broker.client().token(Duration::ZERO).unwrap();
        assert_eq!(served.token_id(), rotated.token_id());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        rig.broker.fake.stats().refresh_requests,
        refreshes,
        "refreshed proactively although nothing could be persisted"
    );
    assert!(rig.broker.logs().contains("state write still failing"));

    // Once no valid token is left, a client's request refreshes it.
    std::thread::sleep(Duration::from_millis(400));
    let fresh = rig
        .broker
        .client()
        .token(Duration::ZERO)
        .expect("token on demand");
    assert_ne!(fresh.token_id(), rotated.token_id());
    assert_eq!(rig.broker.fake.stats().refresh_requests, refreshes + 1);
    assert_no_reuse(&rig.broker.fake.stats(), "degraded");
}

/// Kills brokerd while the server holds its refresh request (the server
/// processes it after the broker died) and starts the next one at once.
/// Returns the token served before the crash.
fn crash_while_the_server_holds_the_refresh(rig: &mut Rig, hold: Duration) -> AccessToken {
    let token = rig.broker.client().token(Duration::ZERO).unwrap();
    rig.broker.fake.push_fault(Fault::Delay(hold));
    let reported = token.clone();
    let mut client = rig.broker.client();
    let reporter = std::thread::spawn(move || {
        let _ = client.unauthorized(&reported);
    });
    rig.broker
        .fake
        .wait_for_token_requests_received(1, WAIT)
        .unwrap();
    rig.broker.broker.kill().unwrap();
    reporter.join().unwrap();
    rig.broker.restart_after_kill();
    token
}

/// The two refresh requests the server saw (the crashed broker's, the
/// restarted one's) were at least the HTTP timeout apart.
fn assert_spent_again_only_after_the_old_request_ended(rig: &Rig) {
    let mut arrivals: Vec<Instant> = rig
        .broker
        .fake
        .token_requests()
        .iter()
        .map(|r| r.received_at)
        .collect();
    arrivals.sort();
    assert_eq!(arrivals.len(), 2, "{arrivals:#?}");
    let gap = arrivals[1] - arrivals[0];
    println!(
        "RELIABILITY never_lose.crash_restart token_spent_again_after_ms={} (HTTP timeout {} ms)",
        gap.as_millis(),
        HTTP_TIMEOUT.as_millis()
    );
    assert!(
        gap >= HTTP_TIMEOUT,
        "the token was spent again {gap:?} after the crashed broker's request, before its timeout"
    );
}

/// `http_timeout_secs = 2`: the dead broker's request has certainly ended
/// 2 s after it was sent.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);
const CRASH_REFRESH: &str =
    "backoff_initial_ms = 100\nbackoff_max_secs = 1\nhttp_timeout_secs = 2\n";

#[test]
fn after_a_crash_mid_refresh_the_restarted_broker_serves_the_cached_token_and_waits_out_the_old_request_before_spending_the_token(
) {
    // A server with a reuse grace period: the retry of an interrupted refresh
    // is accepted — if it comes after the old request, not before it.
    let mut rig = Rig::logged_in(Duration::from_secs(600), CRASH_REFRESH);
    rig.broker.fake.set_reuse_grace(Duration::from_secs(30));
    let token = crash_while_the_server_holds_the_refresh(&mut rig, Duration::from_millis(1500));

    // The cached token is served at once, while the old request is held.
    let cached = rig
        .broker
        .client()
        .token(Duration::ZERO)
        .expect("cached token");
    assert_eq!(cached.token_id(), token.token_id());
    assert_eq!(rig.broker.fake.stats().token_requests_received, 1);

    // The report asks for the retry's outcome: it comes after the window.
    let fresh = rig.broker.client().unauthorized(&token).expect("recovered");
    assert_spent_again_only_after_the_old_request_ended(&rig);
    assert!(rig.broker.server_accepts(&fresh));
    // The login is intact: the broker holds the current refresh token.
    rig.rotate(&fresh);
    let stats = rig.broker.fake.stats();
    assert_eq!(stats.reuse_detections, 0, "{stats:#?}");
    assert_eq!(stats.families_revoked, 0, "{stats:#?}");
    assert_eq!(
        rig.broker.client().status().unwrap().state,
        TokenState::Valid
    );
}

#[test]
fn after_a_crash_mid_refresh_against_a_strict_server_the_refusal_is_reported_as_refresh_interrupted_and_no_revoked_token_is_served(
) {
    let mut rig = Rig::logged_in(Duration::from_secs(600), CRASH_REFRESH);
    let token = crash_while_the_server_holds_the_refresh(&mut rig, Duration::from_millis(1500));
    let err = rig
        .broker
        .client()
        .unauthorized(&token)
        .expect_err("the server rotated the token the crashed broker sent");
    assert!(err.is_relogin_required(), "{err:?}");
    assert_eq!(err.reason(), Some("refresh_interrupted"), "{err:?}");
    assert_spent_again_only_after_the_old_request_ended(&rig);
    let status = rig.broker.client().status().unwrap();
    assert_eq!(status.state, TokenState::ReloginRequired);
    assert_eq!(
        status.relogin_reason.as_deref(),
        Some("refresh_interrupted")
    );
    match rig.broker.client().token(Duration::ZERO) {
        Err(Error::ReloginRequired { .. }) => {}
        other => panic!("served after the family was revoked: {other:?}"),
    }
}

#[test]
fn a_kill_while_the_state_dir_is_really_read_only_is_reported_as_rotation_not_persisted_after_restart(
) {
    // A real read-only mount (root included), not the fault hook: the record
    // beside the socket is on another file system, as $XDG_RUNTIME_DIR is.
    use crate::reliability_disk::Mount;
    let env = oauth_broker_tests::harness::TestEnv::new();
    let Some(mount) = Mount::tmpfs(&env.state_dir().join("default"), "256k") else {
        println!("RELIABILITY never_lose.read_only skipped: mount is not permitted here");
        return;
    };
    let mut rig = Broker::builder()
        .fast_refresh()
        .ttl(Duration::from_secs(600))
        .test_env(env)
        .logged_in();
    let token = rig.client().token(Duration::ZERO).unwrap();
    let burned = rig.disk_refresh_token().unwrap();
    let read_only = Mount::read_only(&mount.path);
    let rotated = rig.client().unauthorized(&token).expect("rotated token");
    assert_ne!(rotated.token_id(), token.token_id());
    let degraded = rig.status().degraded.expect("degraded");
    assert!(degraded.contains("Read-only file system"), "{degraded}");

    rig.broker.kill().unwrap();
    // brokerd needs its lock file to start: the disk is writable again, but
    // the rotated token died with the process.
    drop(read_only);
    let refreshes = rig.fake.stats().refresh_requests;
    rig.restart_after_kill();
    let err = rig.client().token(Duration::ZERO).expect_err("lost login");
    assert_eq!(err.reason(), Some("rotation_not_persisted"), "{err:?}");
    assert_eq!(rig.disk_refresh_token().unwrap(), burned);
    let stats = rig.fake.stats();
    assert_eq!(stats.refresh_requests, refreshes, "{stats:#?}");
    assert_no_reuse(&stats, "read-only");
    // The broker holds files on the mount: stop it before unmounting.
    rig.broker.kill().unwrap();
    drop(mount);
}
