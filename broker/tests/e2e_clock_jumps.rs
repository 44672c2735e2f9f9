//! Wall-clock jumps on brokerd alone (issue 16): the real `brokerd` runs with
//! libfaketime preloaded, so its wall clock can be stepped at run time while
//! the fake authorization server, the test and brokerd's own monotonic and
//! boot clocks (`FAKETIME_DONT_FAKE_MONOTONIC=1`) keep real time. The fake
//! server is the judge: it expires access tokens on real time.
//!
//! What must hold: token lifetimes run on `CLOCK_BOOTTIME` from receipt and
//! the earlier of the two deadlines wins, so neither a wall clock stepped
//! back nor one that ran a day ahead and was corrected makes brokerd serve a
//! token the server already rejects, say `valid` for it, or put off the
//! refresh.

use crate::common::{fake_with_ttl, Broker};
use oauth_broker_client::{ErrorCode, ExposeSecret};
use oauth_broker_tests::fake_server::Fault;
use oauth_broker_tests::harness::TestEnv;
use oauth_broker_tests::tools::ensure_libfaketime;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Access-token lifetime at the fake server: short, so a test takes seconds.
const TTL: Duration = Duration::from_secs(10);
/// Generous bound for anything that should take about one lifetime, so a
/// loaded CI machine does not fail the test; a broker that followed its
/// stepped wall clock would take two minutes or a day.
const BOUND: Duration = Duration::from_secs(60);
/// Pace of polling loops (they poll a state, they do not sleep to sync).
const POLL: Duration = Duration::from_millis(100);

/// brokerd's wall-clock offset, read by libfaketime on every time call
/// (`FAKETIME_NO_CACHE=1`).
struct FakedWallClock {
    file: PathBuf,
}

impl FakedWallClock {
    /// Sets the offset from real time, in libfaketime's relative syntax
    /// (`"+0"`, `"-120"`, `"+1d"`). Written by rename so that brokerd never
    /// reads a half-written file.
    fn set(&self, offset: &str) {
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, format!("{offset}\n")).unwrap();
        std::fs::rename(&tmp, &self.file).unwrap();
    }
}

/// Starts the fake server and brokerd with its wall clock at `offset`.
fn start(offset: &str) -> (Broker, FakedWallClock) {
    let preload = ensure_libfaketime();
    let env = TestEnv::new();
    let clock = FakedWallClock {
        file: env.path("faketime-offset"),
    };
    clock.set(offset);
    let setup = Broker::builder()
        .fake(fake_with_ttl(TTL))
        .test_env(env)
        .brokerd_env("LD_PRELOAD", preload.display().to_string())
        .brokerd_env("FAKETIME_TIMESTAMP_FILE", clock.file.display().to_string())
        .brokerd_env("FAKETIME_NO_CACHE", "1")
        .brokerd_env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .start();
    (setup, clock)
}

fn real_unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn field(status: &serde_json::Value, name: &str) -> u64 {
    status[name]
        .as_u64()
        .unwrap_or_else(|| panic!("status has no {name}: {status}"))
}

#[test]
fn wall_clock_stepped_back_120s_never_serves_a_token_the_server_rejects() {
    let (mut setup, clock) = start("+0");
    setup.import_fresh_grant();
    let mut client = setup.client();
    let imported = client.token(Duration::ZERO).expect("token");
    // The token the test watches comes from a refresh by brokerd itself, so
    // its lifetime starts when brokerd received it.
    let current = client.unauthorized(&imported).expect("forced refresh");
    assert!(setup
        .fake
        .is_access_token_valid(current.secret().expose_secret()));

    clock.set("-120");
    // Status shows the earlier (boottime) deadline, in brokerd's stepped-back
    // wall clock: about 120 s before the real time plus the lifetime. (This
    // also proves that libfaketime reaches brokerd's clock.)
    let status = setup.status_json();
    let real = real_unix_now();
    assert_eq!(status["state"], "valid", "{status}");
    let expires = field(&status, "access_token_expires_at");
    assert!(
        expires + 100 <= real,
        "expiry {expires} not on the stepped wall clock (real now {real}): {status}"
    );
    let next = field(&status, "next_refresh_at");
    assert!(
        next <= expires,
        "next refresh {next} after expiry {expires}"
    );

    // Until brokerd has refreshed twice on its own, every token it serves is
    // one the server accepts. A broker following its wall clock would keep
    // serving the old token for two more minutes.
    let refreshes_before = setup.fake.stats().successful_refreshes;
    let waited = Instant::now();
    let mut served = BTreeSet::new();
    while setup.fake.stats().successful_refreshes < refreshes_before + 2 {
        assert!(
            waited.elapsed() < BOUND * 2,
            "brokerd did not refresh twice within {:?}: it waits for its stepped-back wall clock",
            BOUND * 2
        );
        // At least 2 s left (a fifth of the lifetime, the most the broker
        // honours): the server's verdict a moment later is not a race.
        let token = client.token(Duration::from_secs(2)).expect("token");
        assert!(
            setup
                .fake
                .is_access_token_valid(token.secret().expose_secret()),
            "brokerd served token {} that the server already rejects",
            token.token_id()
        );
        served.insert(token.token_id().to_string());
        std::thread::sleep(POLL);
    }
    assert!(served.len() >= 2, "served {served:?}");
    setup.assert_no_token_in_logs();
}

#[test]
fn wall_clock_a_day_ahead_then_corrected_stops_saying_valid_and_refreshes_on_time() {
    let (mut setup, clock) = start("+1d");
    setup.import_fresh_grant();
    let mut client = setup.client();
    let imported = client.token(Duration::ZERO).expect("token");
    // Received while brokerd's wall clock is a day ahead: by that clock the
    // token expires tomorrow.
    let current = client.unauthorized(&imported).expect("forced refresh");
    // brokerd anchored the lifetime before it answered.
    let received_by = Instant::now();
    let status = setup.status_json();
    assert!(
        field(&status, "last_refresh_at") >= real_unix_now() + 86_000,
        "libfaketime did not move brokerd's wall clock: {status}"
    );

    // Every refresh fails from now on, so the token is not replaced and its
    // death is visible; then the wall clock is corrected.
    setup.fake.set_persistent_fault(Some(Fault::Status(503)));
    clock.set("+0");
    let status = setup.status_json();
    let real = real_unix_now();
    assert_eq!(status["state"], "valid", "{status}");
    let expires = field(&status, "access_token_expires_at");
    let next = field(&status, "next_refresh_at");
    assert!(
        expires <= real + TTL.as_secs(),
        "status shows the day-ahead expiry {expires} (real now {real}): {status}"
    );
    assert!(
        next <= expires,
        "next refresh {next} is not the earlier deadline (expiry {expires}): {status}"
    );

    // The scheduled refresh is attempted on time, not tomorrow.
    setup
        .fake
        .wait_until(BOUND, |s| s.faults_injected >= 1)
        .expect("brokerd attempted no refresh within the bound: it waits for its wall clock");

    // Status never says `valid` once the real lifetime is over (judged only on
    // requests sent after that point), and it does say `expired` soon.
    let waited = Instant::now();
    loop {
        let asked = Instant::now();
        let status = setup.status_json();
        if asked >= received_by + TTL {
            assert_ne!(
                status["state"], "valid",
                "status says valid for a token whose real lifetime is over: {status}"
            );
        }
        if status["state"] == "expired" {
            break;
        }
        assert!(
            waited.elapsed() < BOUND,
            "status never said expired: {status}"
        );
        std::thread::sleep(POLL);
    }
    // The dead token is not served: the endpoint is failing, so the answer
    // is `upstream_unavailable`.
    let err = client
        .token(Duration::ZERO)
        .expect_err("brokerd served the expired token");
    assert_eq!(err.code(), Some(ErrorCode::UpstreamUnavailable), "{err}");

    // The endpoint recovers: the backoff retries and a token the server
    // accepts is served, and status says valid again.
    setup.fake.set_persistent_fault(None);
    let waited = Instant::now();
    let fresh = loop {
        match client.token(Duration::ZERO) {
            Ok(token) => break token,
            Err(e) => {
                assert!(waited.elapsed() < BOUND, "no new token: {e}");
                std::thread::sleep(POLL);
            }
        }
    };
    assert_ne!(fresh.token_id(), current.token_id());
    assert!(setup
        .fake
        .is_access_token_valid(fresh.secret().expose_secret()));
    assert_eq!(setup.status_json()["state"], "valid");
    setup.assert_no_token_in_logs();
}
