//! Token-endpoint faults: every transient answer a real network produces (5xx
//! storms, 429 with `Retry-After`, timeouts, captive-portal HTML, truncated
//! JSON, a 200 without `access_token`, redirects, dropped connections) is
//! classified as DESIGN.md says, retried with capped exponential backoff, never
//! turned into a terminal state, and recovered from without a restart. Cached
//! tokens are served while valid; after expiry clients get
//! `upstream_unavailable` with `retry_after_secs`.

use crate::common::{eventually, sleep_until_unix, Broker};
use oauth_broker_client::proto::TokenState;
use oauth_broker_client::{AccessToken, Client, Error};
use oauth_broker_tests::fake_server::{Fault, Stats, TokenOutcome};
use std::time::{Duration, Instant, UNIX_EPOCH};

/// One transient answer and the reason the broker must record for it.
struct Case {
    fault: Fault,
    reason: &'static str,
}

fn cases() -> Vec<Case> {
    let case = |fault, reason| Case { fault, reason };
    vec![
        case(Fault::Status(500), "http_500"),
        case(Fault::Status(502), "http_502"),
        case(Fault::Status(503), "http_503"),
        case(Fault::Status(504), "http_504"),
        case(
            Fault::Custom {
                status: 502,
                content_type: "text/plain".into(),
                body: "Bad Gateway".into(),
            },
            "http_502",
        ),
        case(
            Fault::TooManyRequests {
                retry_after_secs: 1,
            },
            "rate_limited",
        ),
        case(Fault::Html { status: 200 }, "unparsable_response"),
        case(Fault::Html { status: 503 }, "http_503"),
        case(Fault::TruncatedJson, "unparsable_response"),
        case(Fault::NoAccessToken, "no_access_token"),
        case(Fault::Redirect, "redirect"),
        case(Fault::DropConnection, "connection_lost"),
        // Longer than the test lives: a black hole. The fake server abandons
        // the request at shutdown, so it is never processed.
        case(Fault::Delay(Duration::from_secs(600)), "timeout"),
    ]
}

fn expect_upstream_unavailable(result: Result<AccessToken, Error>, what: &str) -> Duration {
    match result {
        Err(Error::UpstreamUnavailable {
            retry_after,
            message,
            hint,
        }) => {
            assert!(!message.is_empty(), "{what}: empty message");
            assert!(hint.is_some(), "{what}: no hint");
            retry_after
                .unwrap_or_else(|| panic!("{what}: upstream_unavailable without retry_after"))
        }
        other => panic!("{what}: expected upstream_unavailable, got {other:?}"),
    }
}

fn assert_no_token_spent_wrongly(stats: &Stats, what: &str) {
    assert_eq!(
        stats.reuse_detections, 0,
        "{what}: reuse detected: {stats:#?}"
    );
    assert_eq!(
        stats.families_revoked, 0,
        "{what}: family revoked: {stats:#?}"
    );
    assert_eq!(
        stats.invalid_refresh_attempts, 0,
        "{what}: a dead refresh token was sent: {stats:#?}"
    );
}

/// Retries `unauthorized(stale)` until the broker has a new token (each call
/// during backoff answers at once, without touching the server).
fn recover(client: &mut Client, stale: &AccessToken, what: &str) -> AccessToken {
    eventually(what, Duration::from_secs(15), || {
        client.unauthorized(stale).ok()
    })
}

#[test]
fn every_transient_answer_is_classified_served_from_cache_and_recovered_without_restart() {
    // Tokens live long enough that no proactive refresh interferes: every
    // refresh here is forced by an `Unauthorized` report.
    let spec = Broker::builder()
        .fast_refresh()
        .ttl(Duration::from_secs(60))
        .refresh_toml("backoff_initial_ms = 50\nbackoff_max_secs = 1\nhttp_timeout_secs = 1\n");
    let rig = spec.logged_in();
    let mut client = rig.client();
    let mut current = client.token(Duration::ZERO).expect("first token");
    let mut faults_injected = 0;

    for case in cases() {
        let what = format!("{:?}", case.fault);
        let before = rig.fake.stats();
        rig.fake.set_persistent_fault(Some(case.fault.clone()));

        // A 401 report forces a refresh; it fails transiently.
        let retry_after =
            expect_upstream_unavailable(client.unauthorized(&current), &format!("{what}: report"));
        assert!(
            retry_after >= Duration::from_secs(1),
            "{what}: {retry_after:?}"
        );

        // The cached token is still valid and still served, unchanged.
        let cached = client.token(Duration::ZERO).expect("cached token");
        assert_eq!(
            cached.token_id(),
            current.token_id(),
            "{what}: cached token replaced"
        );
        assert!(!cached.is_expired(), "{what}: served an expired token");
        assert!(
            rig.server_accepts(&cached),
            "{what}: cached token dead at the server"
        );

        // Classified as transient, with the right reason, never terminal.
        let status = client.status().expect("status");
        assert!(
            !status.relogin_required,
            "{what}: relogin after a transient answer"
        );
        assert_eq!(status.state, TokenState::Valid, "{what}");
        let last = status.last_error.expect("last_error recorded");
        assert_eq!(last.code, case.reason, "{what}: {}", last.message);

        // Recovery without a restart once the endpoint behaves again.
        rig.fake.set_persistent_fault(None);
        let fresh = recover(&mut client, &current, &what);
        assert_ne!(fresh.token_id(), current.token_id(), "{what}");
        assert!(
            rig.server_accepts(&fresh),
            "{what}: new token not valid at the server"
        );
        let status = client.status().expect("status");
        assert!(
            status.last_error.is_none(),
            "{what}: error kept after success"
        );

        let after = rig.fake.stats();
        assert_no_token_spent_wrongly(&after, &what);
        faults_injected += after.faults_injected - before.faults_injected;
        current = fresh;
    }
    println!("RELIABILITY endpoint_faults.kinds faults_injected={faults_injected}");
}

#[test]
fn a_5xx_storm_backs_off_exponentially_up_to_the_cap_then_answers_upstream_unavailable_and_recovers(
) {
    // 3 s tokens: the proactive refresh starts the storm at 75 % of the lifetime;
    // backoff 100 ms doubling to a 1 s cap.
    let spec = Broker::builder().fast_refresh().ttl(Duration::from_secs(3));
    let rig = spec.logged_in();
    let mut client = rig.client();
    let first = client.token(Duration::ZERO).expect("first token");
    // A mixed storm: a few distinct 5xx answers, then 503 for ever.
    for fault in [
        Fault::Status(500),
        Fault::Status(502),
        Fault::Html { status: 504 },
    ] {
        rig.fake.push_fault(fault);
    }
    rig.fake.set_persistent_fault(Some(Fault::Status(503)));

    // Eight attempts: the proactive one, then gaps of 100, 200, 400, 800 ms,
    // then 1 s (capped: 1.6 s, 3.2 s uncapped) three times.
    const ATTEMPTS: usize = 8;
    rig.fake
        .wait_for_refresh_requests(ATTEMPTS as u64, Duration::from_secs(30))
        .expect("the broker keeps retrying");

    // Past expiry now: no token to serve, a retry hint instead.
    sleep_until_unix(unix(first.expires_at()));
    let retry_after = expect_upstream_unavailable(client.token(Duration::ZERO), "after expiry");
    assert!(
        retry_after <= Duration::from_secs(2),
        "retry_after {retry_after:?} exceeds the 1 s backoff cap"
    );
    let status = client.status().expect("status");
    assert_eq!(status.state, TokenState::Expired);
    assert!(!status.relogin_required);

    let attempts: Vec<Instant> = rig
        .fake
        .token_requests()
        .iter()
        .filter(|r| r.grant_type.as_deref() == Some("refresh_token"))
        .map(|r| r.received_at)
        .take(ATTEMPTS)
        .collect();
    assert!(attempts.len() >= ATTEMPTS);
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    println!(
        "RELIABILITY endpoint_faults.storm gaps_ms={:?}",
        gaps.iter().map(Duration::as_millis).collect::<Vec<_>>()
    );
    for (i, gap) in gaps.iter().enumerate() {
        // After i+1 consecutive failures the delay is 100 ms * 2^i, capped at
        // 1 s, times a jitter factor in [0.8, 1.0].
        let base = Duration::from_millis(100 * (1u64 << i)).min(Duration::from_secs(1));
        let floor = base.mul_f64(0.8).saturating_sub(Duration::from_millis(20));
        assert!(
            *gap >= floor,
            "gap {i} = {gap:?} is shorter than the backoff floor {floor:?} (all: {gaps:?})"
        );
        // Generous for a loaded CI box, yet below what an uncapped doubling
        // would give for the last gaps (2.56 s at the very least).
        let ceiling = base + Duration::from_millis(1200);
        assert!(
            *gap <= ceiling,
            "gap {i} = {gap:?} exceeds {ceiling:?} (all: {gaps:?})"
        );
    }

    // The storm ends: the broker recovers on its own schedule, no restart.
    rig.fake.clear_faults();
    let stats = rig
        .fake
        .wait_until(Duration::from_secs(10), |s| s.successful_refreshes >= 1)
        .expect("refresh after the storm");
    let fresh = client.token(Duration::ZERO).expect("token after the storm");
    assert!(rig.server_accepts(&fresh));
    assert_eq!(client.status().expect("status").state, TokenState::Valid);
    assert_no_token_spent_wrongly(&rig.fake.stats(), "storm");
    println!(
        "RELIABILITY endpoint_faults.storm faults_injected={}",
        stats.faults_injected
    );
}

#[test]
fn retry_after_of_a_429_is_honoured_and_reported() {
    let spec = Broker::builder()
        .fast_refresh()
        .ttl(Duration::from_secs(60));
    let rig = spec.logged_in();
    let mut client = rig.client();
    let current = client.token(Duration::ZERO).expect("token");
    rig.fake.set_persistent_fault(Some(Fault::TooManyRequests {
        retry_after_secs: 2,
    }));

    let retry_after = expect_upstream_unavailable(client.unauthorized(&current), "429");
    assert_eq!(retry_after, Duration::from_secs(2), "Retry-After passed on");
    // Reports during the Retry-After window are answered without asking the
    // server again (the backoff alone would have retried after 100 ms).
    let asked = Instant::now();
    while asked.elapsed() < Duration::from_millis(1500) {
        expect_upstream_unavailable(client.unauthorized(&current), "429 window");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(rig.fake.stats().refresh_requests, 1, "Retry-After ignored");

    // After the window the broker asks again (and gets 429 again).
    let stats = eventually("a second attempt", Duration::from_secs(10), || {
        let _ = client.unauthorized(&current);
        let s = rig.fake.stats();
        (s.refresh_requests >= 2).then_some(s)
    });
    let log = rig.fake.token_requests();
    let gap = log[1].received_at - log[0].received_at;
    assert!(
        gap >= Duration::from_millis(1950),
        "second attempt after {gap:?}"
    );
    assert!(matches!(
        log[1].outcome,
        TokenOutcome::Fault(Fault::TooManyRequests { .. })
    ));

    rig.fake.set_persistent_fault(None);
    let fresh = recover(&mut client, &current, "after 429");
    assert!(rig.server_accepts(&fresh));
    assert_no_token_spent_wrongly(&rig.fake.stats(), "429");
    println!(
        "RELIABILITY endpoint_faults.429 faults_injected={}",
        stats.faults_injected
    );
}

#[test]
fn a_refusal_after_an_interrupted_refresh_and_a_5xx_is_explained_as_interrupted() {
    // The server rotates but the answer is lost; the immediate retry meets a
    // 503; the next retry presents the (now used) token and the server revokes
    // the family. The broker must still say *why*: the interrupted refresh.
    let spec = Broker::builder()
        .fast_refresh()
        .ttl(Duration::from_secs(60));
    let rig = spec.logged_in();
    let mut client = rig.client();
    let current = client.token(Duration::ZERO).expect("token");
    rig.fake.push_fault(Fault::RotateThenDrop);
    rig.fake.push_fault(Fault::Status(503));

    expect_upstream_unavailable(client.unauthorized(&current), "lost answer, then 503");
    let err = eventually("the refusal", Duration::from_secs(10), || {
        match client.unauthorized(&current) {
            Err(e @ Error::ReloginRequired { .. }) => Some(e),
            Err(Error::UpstreamUnavailable { .. }) => None,
            other => panic!("unexpected answer {other:?}"),
        }
    });
    assert_eq!(err.reason(), Some("refresh_interrupted"), "{err:?}");
    assert!(
        err.hint().unwrap_or("").contains("brokerctl relogin"),
        "{err:?}"
    );
    let status = client.status().expect("status");
    assert_eq!(
        status.relogin_reason.as_deref(),
        Some("refresh_interrupted")
    );
}

fn unix(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
