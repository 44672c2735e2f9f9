//! Crash consistency: `brokerd` is killed with SIGKILL at every interesting
//! point of a refresh, hundreds of times in a row on the same state, and must
//! never lose a login it could have kept.
//!
//! Kill points, chosen with the fake server's fault knobs and the wait before
//! the kill: idle; just after a refresh was triggered (before or while the
//! in-flight marker is written, before the request leaves); while the server
//! holds the request (`Delay`: it rotates after the broker died); after the
//! server rotated but before the answer arrived (`DelayThenRotateThenDrop`);
//! and right after the server answered, during the state write.
//!
//! After every kill, before the next broker starts:
//! * the state journal holds a complete state (a record cut by the kill is
//!   ignored, never read), is 0600, and the directory holds nothing
//!   unexpected;
//! * the refresh token on disk is the server's current one — or the server
//!   rotated past it and the in-flight marker for exactly that token is on
//!   disk ("server rotated, response lost"), or a relogin caused by such an
//!   interrupted refresh is recorded. Anything else is a silently lost newer
//!   refresh token and fails the test.
//!
//! Then the next broker starts (ready time measured) and either serves a token
//! the server accepts, or — only in the "rotated, response lost" case — says
//! `relogin_required` with reason `refresh_interrupted` and a relogin hint.

use crate::common::{read_state_dir, text, Broker};
use oauth_broker::store::PersistedState;
use oauth_broker_client::proto::{token_fingerprint, ExposeSecret, SecretString};
use oauth_broker_client::Error;
use oauth_broker_tests::fake_server::Fault;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

const ITERATIONS: usize = 300;
const INTERRUPTED: &str = "refresh_interrupted";
const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum KillPoint {
    Idle,
    JustTriggered,
    ServerHoldsRequest,
    RotatedAnswerLost,
    DuringStateWrite,
}

const KILL_POINTS: [KillPoint; 5] = [
    KillPoint::Idle,
    KillPoint::JustTriggered,
    KillPoint::ServerHoldsRequest,
    KillPoint::RotatedAnswerLost,
    KillPoint::DuringStateWrite,
];

/// What the state on disk said after a kill, before the next start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum DiskVerdict {
    /// The refresh token on disk is the server's current one.
    Current,
    /// The server rotated past the token on disk; the marker says so.
    RotatedWithMarker,
    /// A relogin after an interrupted refresh was already recorded.
    ReloginRecorded,
}

#[derive(Default)]
struct Tally {
    kills: usize,
    by_point: BTreeMap<(KillPoint, DiskVerdict), usize>,
    torn_temp_files: usize,
    torn_records: usize,
    replied_before_kill: usize,
    relogins: usize,
    recovered_by_grace: usize,
    faults_injected: usize,
    ready_times: Vec<Duration>,
}

#[test]
fn sigkill_at_every_point_of_a_refresh_never_corrupts_state_nor_loses_a_newer_token() {
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("RELIABILITY crash seed={seed} (rerun with CRASH_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    // Long-lived access tokens: every refresh here is triggered on purpose
    // with an `Unauthorized` report, none by the proactive timer. A 1 s HTTP
    // timeout: after a kill mid-refresh the next broker waits that long (since
    // the in-flight marker) before it spends the token again. No floor between
    // forced refreshes: they follow each other on purpose (the floor has its
    // own tests).
    let spec = Broker::builder()
        .refresh_toml("backoff_initial_ms = 100\nbackoff_max_secs = 1\nhttp_timeout_secs = 1\nforced_refresh_floor_secs = 0\n")
        .ttl(Duration::from_secs(600));
    let mut rig = spec.logged_in();
    let mut tally = Tally::default();
    let started = Instant::now();

    for i in 0..ITERATIONS {
        let point = KILL_POINTS[i % KILL_POINTS.len()];
        // A third of the runs against a server with a reuse grace period,
        // where the retry of an interrupted refresh is accepted.
        let grace = i % 3 == 0;
        rig.fake.set_reuse_grace(if grace {
            Duration::from_secs(30)
        } else {
            Duration::ZERO
        });
        let context = format!("iteration {i}, kill point {point:?}, grace {grace}, seed {seed}");

        let mut client = rig.client();
        let token = client
            .token(Duration::ZERO)
            .unwrap_or_else(|e| panic!("{context}: {e}"));
        let before = rig.fake.stats();
        let reported = token.clone();
        let trigger = |client: oauth_broker_client::Client| {
            let mut client = client;
            std::thread::spawn(move || client.unauthorized(&reported).ok())
        };

        let reporter = match point {
            KillPoint::Idle => None,
            KillPoint::JustTriggered => {
                let reporter = trigger(client);
                sleep_micros(&mut rng, 0..2_000);
                Some(reporter)
            }
            KillPoint::ServerHoldsRequest => {
                let delay = rng.random_range(10..40);
                rig.fake
                    .push_fault(Fault::Delay(Duration::from_millis(delay)));
                let reporter = trigger(client);
                rig.fake
                    .wait_for_token_requests_received(before.token_requests_received + 1, WAIT)
                    .unwrap_or_else(|e| panic!("{context}: {e}"));
                sleep_micros(&mut rng, 0..delay * 1000);
                Some(reporter)
            }
            KillPoint::RotatedAnswerLost => {
                let delay = rng.random_range(0..20);
                rig.fake
                    .push_fault(Fault::DelayThenRotateThenDrop(Duration::from_millis(delay)));
                let reporter = trigger(client);
                rig.fake
                    .wait_for_token_requests_received(before.token_requests_received + 1, WAIT)
                    .unwrap_or_else(|e| panic!("{context}: {e}"));
                // Anywhere from before the rotation to after the broker's own
                // at-once retry of the lost answer.
                sleep_micros(&mut rng, 0..(delay + 15) * 1000);
                Some(reporter)
            }
            KillPoint::DuringStateWrite => {
                let reporter = trigger(client);
                rig.fake
                    .wait_until(WAIT, |s| {
                        s.successful_refreshes > before.successful_refreshes
                    })
                    .unwrap_or_else(|e| panic!("{context}: {e}"));
                sleep_micros(&mut rng, 0..4_000);
                Some(reporter)
            }
        };
        rig.broker.kill().expect("SIGKILL");
        tally.kills += 1;
        let replied = reporter.and_then(|r| r.join().expect("reporter thread"));
        // Whatever the dead broker sent is still processed by the server
        // after it died, as on a real server: a held request, but also one
        // still unread in a socket buffer or a connection not yet accepted.
        // Judge the disk only once the server has handled every byte.
        rig.fake
            .wait_until_settled(WAIT)
            .unwrap_or_else(|e| panic!("{context}: server never settled: {e}"));
        tally.faults_injected +=
            (rig.fake.stats().faults_injected - before.faults_injected) as usize;
        rig.fake.clear_faults();

        let (state, torn, torn_record) = inspect_state_dir(&rig, &context);
        tally.torn_temp_files += usize::from(torn);
        tally.torn_records += usize::from(torn_record);
        let verdict = judge_disk(&rig, &state, &context);
        // Persist before reply: the newest token this client was ever given
        // is backed by the state on disk (only a state newer than anything
        // handed out, persisted but not yet answered, is allowed besides).
        let on_disk = state.credentials().and_then(|c| c.token_id());
        let replied = replied.filter(|t| t.token_id() != token.token_id());
        tally.replied_before_kill += usize::from(replied.is_some());
        let newest = replied.as_ref().unwrap_or(&token);
        if replied.is_some() || verdict != DiskVerdict::Current {
            assert!(
                on_disk.as_deref() == Some(newest.token_id()),
                "{context}: the client holds a token the state on disk does not back (disk says {verdict:?}): persist before reply violated"
            );
        }
        *tally.by_point.entry((point, verdict)).or_default() += 1;

        let ready = rig.restart_after_kill();
        tally.ready_times.push(ready);
        assert!(
            ready < Duration::from_secs(5),
            "{context}: restart took {ready:?}"
        );

        // Reporting the pre-crash token as rejected waits for (or starts) the
        // new broker's prompt retry of an interrupted refresh, so the answer
        // is its outcome rather than the cached access token.
        let mut client = rig.client();
        match (verdict, client.unauthorized(&token)) {
            (DiskVerdict::Current, Ok(token)) => {
                assert!(rig.server_accepts(&token), "{context}: dead token served");
            }
            (DiskVerdict::RotatedWithMarker, Ok(token)) => {
                assert!(
                    grace,
                    "{context}: a used token was accepted without a grace period"
                );
                assert!(rig.server_accepts(&token), "{context}: dead token served");
                tally.recovered_by_grace += 1;
            }
            (DiskVerdict::RotatedWithMarker | DiskVerdict::ReloginRecorded, Err(err)) => {
                assert_interrupted(&err, &context);
                let status = rig.ctl(&["status"]);
                assert_eq!(
                    status.status.code(),
                    Some(2),
                    "{context}: brokerctl status exit"
                );
                assert!(
                    text(&status.stdout).contains(INTERRUPTED),
                    "{context}: {}",
                    text(&status.stdout)
                );
                tally.relogins += 1;
                rig.import_fresh_grant();
                let token = client
                    .token(Duration::ZERO)
                    .expect("token after a new login");
                assert!(rig.server_accepts(&token));
            }
            (verdict, Err(err)) => panic!("{context}: disk said {verdict:?}, broker said {err:?}"),
            (DiskVerdict::ReloginRecorded, Ok(_)) => {
                panic!("{context}: a recorded relogin was forgotten")
            }
        }
    }

    // Every family revocation at the server is one of the relogins above: no
    // intact login was ever spent twice.
    let stats = rig.fake.stats();
    assert_eq!(
        stats.families_revoked as usize, tally.relogins,
        "{stats:#?}"
    );
    assert_eq!(
        stats.reuse_detections as usize, tally.relogins,
        "{stats:#?}"
    );

    let max_ready = tally.ready_times.iter().max().copied().unwrap_or_default();
    let mean_ready = tally.ready_times.iter().sum::<Duration>() / tally.ready_times.len() as u32;
    println!(
        "RELIABILITY crash kills_survived={} replies_before_kill={} relogins_after_lost_answer={} recovered_by_grace={} torn_temp_files_left={} torn_records_ignored={} faults_injected={} ready_max_ms={} ready_mean_ms={} elapsed_s={:.1}",
        tally.kills,
        tally.replied_before_kill,
        tally.relogins,
        tally.recovered_by_grace,
        tally.torn_temp_files,
        tally.torn_records,
        tally.faults_injected,
        max_ready.as_millis(),
        mean_ready.as_millis(),
        started.elapsed().as_secs_f64(),
    );
    for ((point, verdict), n) in &tally.by_point {
        println!("RELIABILITY crash   {point:?} -> {verdict:?}: {n}");
    }
}

#[test]
fn a_crash_mid_refresh_then_a_5xx_then_a_refusal_still_names_the_interrupted_refresh() {
    let spec = Broker::builder()
        .fast_refresh()
        .ttl(Duration::from_secs(600));
    let mut rig = spec.logged_in();
    let mut client = rig.client();
    let token = client.token(Duration::ZERO).expect("token");
    // The server holds the request, the broker dies, the server rotates.
    rig.fake
        .push_fault(Fault::Delay(Duration::from_millis(100)));
    let reported = token.clone();
    let reporter = std::thread::spawn(move || {
        let _ = client.unauthorized(&reported);
    });
    rig.fake
        .wait_for_token_requests_received(1, WAIT)
        .expect("request");
    rig.broker.kill().unwrap();
    reporter.join().unwrap();
    let settled = rig.fake.wait_until_settled(WAIT).expect("server settles");
    assert_eq!(settled.successful_refreshes, 1, "rotation");
    let state = rig.read_state().expect("state");
    assert!(
        state.refresh_in_flight.is_some(),
        "no in-flight marker on disk"
    );

    // The next broker's prompt retry meets a 503; the one after that is
    // refused. The reason must still be the interrupted refresh.
    rig.fake.push_fault(Fault::Status(503));
    rig.restart_after_kill();
    let mut client = rig.client();
    let err =
        crate::common::eventually("the refusal", WAIT, || match client.unauthorized(&token) {
            Err(e @ Error::ReloginRequired { .. }) => Some(e),
            Err(Error::UpstreamUnavailable { .. }) => None,
            other => panic!("unexpected {other:?}"),
        });
    assert_interrupted(&err, "crash, 503, refusal");
    // Recorded durably: a restart does not retry the dead token.
    let requests = rig.fake.stats().refresh_requests;
    rig.restart();
    assert_interrupted(
        &rig.client().token(Duration::ZERO).unwrap_err(),
        "after restart",
    );
    assert_eq!(rig.fake.stats().refresh_requests, requests);
}

fn assert_interrupted(err: &Error, context: &str) {
    assert!(err.is_relogin_required(), "{context}: {err:?}");
    assert_eq!(err.reason(), Some(INTERRUPTED), "{context}: {err:?}");
    let hint = err.hint().unwrap_or_default();
    assert!(
        hint.contains("brokerctl relogin"),
        "{context}: hint {hint:?}"
    );
}

/// Reads the state (the journal's newest intact record) and checks the
/// directory; returns the state and whether a temp file of an interrupted
/// compaction was left behind (harmless: the next compaction replaces it) and
/// whether the journal ends in a record the kill cut short (ignored).
fn inspect_state_dir(rig: &Broker, context: &str) -> (PersistedState, bool, bool) {
    let dir = rig.state_dir();
    let mut torn = false;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        match name.as_str() {
            "state.journal" | "lock" => {}
            ".state.journal.tmp" => torn = true,
            other => panic!("{context}: unexpected file {other} in the state directory"),
        }
        assert_eq!(mode, 0o600, "{context}: {name} has mode {mode:o}");
    }
    let state = read_state_dir(&dir).unwrap_or_else(|| panic!("{context}: state missing"));
    let journal = std::fs::read(dir.join("state.journal")).expect("the state journal");
    let torn_record = oauth_broker::journal::scan(&journal)
        .unwrap_or_else(|e| panic!("{context}: {e}"))
        .torn;
    (state, torn, torn_record)
}

/// Classifies the state on disk against the server's view; panics if a newer
/// refresh token was silently lost.
fn judge_disk(rig: &Broker, state: &PersistedState, context: &str) -> DiskVerdict {
    if let Some(relogin) = &state.relogin {
        assert_eq!(
            relogin.reason, INTERRUPTED,
            "{context}: unexpected relogin {relogin:?}"
        );
        return DiskVerdict::ReloginRecorded;
    }
    let creds = state
        .credentials()
        .unwrap_or_else(|| panic!("{context}: no credentials on disk"));
    let disk_rt = creds.refresh_token.expose_secret().to_string();
    if rig.fake.is_refresh_token_current(&disk_rt) {
        return DiskVerdict::Current;
    }
    let marker = state.refresh_in_flight.as_ref().unwrap_or_else(|| {
        panic!("{context}: the server rotated past the refresh token on disk and no in-flight marker records it: a newer refresh token was silently lost")
    });
    assert_eq!(
        marker.refresh_token_id,
        token_fingerprint(&SecretString::from(disk_rt)),
        "{context}: the marker names another token"
    );
    DiskVerdict::RotatedWithMarker
}

fn sleep_micros(rng: &mut StdRng, range: std::ops::Range<u64>) {
    let micros = if range.is_empty() {
        0
    } else {
        rng.random_range(range)
    };
    std::thread::sleep(Duration::from_micros(micros));
}
