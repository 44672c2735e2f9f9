//! Unit tests of the manager's rules with a scripted refresher and a movable
//! clock. (End-to-end behaviour against a real HTTP server is tested in
//! `broker/tests/`.)

use super::*;
use crate::clock::OffsetClock;
use crate::config::{Config, ConfigFile};
use crate::oauth::RefreshError;
use futures_util::future::BoxFuture;
use oauth_broker_proto::{ErrorCode, ExposeSecret};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;

/// A refresher that answers from a script, optionally holding each call until the
/// test releases it.
struct Scripted {
    calls: AtomicUsize,
    script: Mutex<VecDeque<Result<(), RefreshError>>>,
    gate: Option<Arc<Semaphore>>,
    clock: Arc<OffsetClock>,
    lifetime: Duration,
}

impl Scripted {
    fn new(clock: Arc<OffsetClock>, lifetime: Duration) -> Self {
        Scripted {
            calls: AtomicUsize::new(0),
            script: Mutex::new(VecDeque::new()),
            gate: None,
            clock,
            lifetime,
        }
    }
}

impl Scripted {
    /// A refresher whose every call waits until the test releases it.
    fn gated(clock: Arc<OffsetClock>, lifetime: Duration) -> Self {
        let mut s = Scripted::new(clock, lifetime);
        s.gate = Some(Arc::new(Semaphore::new(0)));
        s
    }
}

impl Refresher for Scripted {
    fn refresh<'a>(
        &'a self,
        current: &'a Credentials,
    ) -> BoxFuture<'a, Result<Credentials, RefreshError>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if let Some(gate) = &self.gate {
                gate.acquire().await.unwrap().forget();
            }
            if let Some(Err(e)) = self.script.lock().unwrap().pop_front() {
                return Err(e);
            }
            let now = self.clock.now();
            let mut next = current.clone();
            next.access_token = Some(format!("at-{n}").into());
            next.refresh_token = format!("rt-{n}").into();
            next.obtained_at = now;
            next.expires_at = Some(now + self.lifetime);
            Ok(next)
        })
    }

    fn revoke<'a>(&'a self, _current: &'a Credentials) -> BoxFuture<'a, bool> {
        Box::pin(async { false })
    }
}

fn provider() -> Arc<ProviderSpec> {
    let file: ConfigFile = crate::config::parse(
        "preset='generic'\nclient_id='c'\ntoken_endpoint='http://127.0.0.1:1/t'\n",
        "t",
    )
    .unwrap();
    Arc::new(ProviderSpec::from_config(&Config { file, source: None }).unwrap())
}

fn creds(clock: &OffsetClock, lifetime: Duration) -> Credentials {
    let now = clock.now();
    Credentials {
        access_token: Some("at-0".to_string().into()),
        expires_at: Some(now + lifetime),
        obtained_at: now,
        obtained_boot: None,
        refresh_token: "rt-0".to_string().into(),
        id_token: None,
        token_type: "Bearer".into(),
        scopes: vec![],
        account_id: None,
        metadata: Default::default(),
        refresh_hint_at: None,
    }
}

struct Fixture {
    manager: TokenManager,
    refresher: Arc<Scripted>,
    clock: Arc<OffsetClock>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// Waits until the (gated) refresher has been called.
    async fn refresh_called(&self) {
        while self.refresher.calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
    }

    /// Lets one held refresh call answer.
    fn release_refresh(&self) {
        self.refresher.gate.as_ref().unwrap().add_permits(1);
    }

    /// Waits for the refresh to start (so every request has reached the
    /// wait), then lets it answer.
    async fn release_the_refresh_once_called(&self) {
        self.refresh_called().await;
        self.release_refresh();
    }
}

async fn fixture(
    refresher: impl FnOnce(Arc<OffsetClock>) -> Scripted,
    lifetime: Duration,
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(OffsetClock::default());
    let refresher = Arc::new(refresher(clock.clone()));
    let store = Store::open(&dir.path().join("acct"), "acct").unwrap();
    let settings = RefreshSettings {
        backoff_initial_ms: 50,
        ..Default::default()
    };
    let manager = TokenManager::start(
        "acct".into(),
        provider(),
        settings,
        store,
        None,
        runtime_record::RuntimeRecordFile::beside_socket(&dir.path().join("acct.sock")),
        refresher.clone(),
        clock.clone(),
        None,
    );
    manager.adopt(creds(&clock, lifetime)).await.unwrap();
    Fixture {
        manager,
        refresher,
        clock,
        _dir: dir,
    }
}

#[tokio::test]
async fn concurrent_requests_after_expiry_cause_one_refresh() {
    let lifetime = Duration::from_secs(600);
    let f = fixture(|c| Scripted::gated(c, lifetime), lifetime).await;
    f.clock.advance_millis(601_000);
    let mut handles = Vec::new();
    for _ in 0..100 {
        let m = f.manager.clone();
        handles.push(tokio::spawn(async move { m.token(Duration::ZERO).await }));
    }
    // Let every request reach the wait, then release the single refresh.
    f.release_the_refresh_once_called().await;
    for h in handles {
        let grant = h.await.unwrap().unwrap();
        assert_eq!(grant.access_token().expose_secret(), "at-1");
    }
    assert_eq!(f.refresher.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn clock_jump_past_expiry_never_serves_an_expired_token() {
    let lifetime = Duration::from_secs(3600);
    let f = fixture(|c| Scripted::new(c, lifetime), lifetime).await;
    let before = f.manager.token(Duration::ZERO).await.unwrap();
    assert_eq!(before.access_token().expose_secret(), "at-0");
    // The laptop slept for two hours.
    f.clock.advance_millis(2 * 3600 * 1000);
    let after = f.manager.token(Duration::ZERO).await.unwrap();
    assert_eq!(after.access_token().expose_secret(), "at-1");
    assert!(after.grant.expires_at > crate::clock::unix_secs(f.clock.now()));
}

#[tokio::test]
async fn clock_jump_with_failing_endpoint_answers_upstream_unavailable() {
    let lifetime = Duration::from_secs(3600);
    let f = fixture(
        |c| {
            let s = Scripted::new(c, lifetime);
            s.script
                .lock()
                .unwrap()
                .extend((0..5).map(|_| Err(RefreshError::transient("http_503", "down", false))));
            s
        },
        lifetime,
    )
    .await;
    f.clock.advance_millis(2 * 3600 * 1000);
    let err = f.manager.token(Duration::ZERO).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::UpstreamUnavailable);
    assert!(err.retry_after_secs().is_some());
}

#[tokio::test]
async fn min_valid_beyond_lifetime_does_not_loop() {
    let lifetime = Duration::from_secs(100);
    let f = fixture(|c| Scripted::new(c, lifetime), lifetime).await;
    // Asking for more than any token can give: served without a refresh storm.
    for _ in 0..10 {
        f.manager.token(Duration::from_secs(10_000)).await.unwrap();
    }
    assert!(f.refresher.calls.load(Ordering::SeqCst) <= 1);
}

#[tokio::test]
async fn unauthorized_reports_for_one_token_coalesce() {
    let lifetime = Duration::from_secs(600);
    let f = fixture(|c| Scripted::gated(c, lifetime), lifetime).await;
    let first = f.manager.token(Duration::ZERO).await.unwrap();
    let mut handles = Vec::new();
    for _ in 0..50 {
        let m = f.manager.clone();
        let id = first.token_id().to_string();
        handles.push(tokio::spawn(async move { m.unauthorized(&id).await }));
    }
    f.release_the_refresh_once_called().await;
    for h in handles {
        assert_eq!(
            h.await.unwrap().unwrap().access_token().expose_secret(),
            "at-1"
        );
    }
    // A late report about the old token gets the new one without a refresh.
    let late = f.manager.unauthorized(first.token_id()).await.unwrap();
    assert_eq!(late.access_token().expose_secret(), "at-1");
    assert_eq!(f.refresher.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn ambiguous_failure_then_refusal_is_reported_as_interrupted() {
    let lifetime = Duration::from_secs(600);
    let f = fixture(
        |c| {
            let s = Scripted::new(c, lifetime);
            s.script.lock().unwrap().extend([
                Err(RefreshError::transient("connection_lost", "reset", true)),
                Err(RefreshError::relogin("refresh_token_reused", "reused")),
            ]);
            s
        },
        lifetime,
    )
    .await;
    f.clock.advance_millis(601_000);
    let err = f.manager.token(Duration::ZERO).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::ReloginRequired);
    assert_eq!(err.reason(), Some(errors::REFRESH_INTERRUPTED));
    assert!(err.hint().contains("brokerctl --account acct relogin"));
    assert_eq!(f.refresher.calls.load(Ordering::SeqCst), 2);
    // Terminal: no further calls to the token endpoint.
    assert!(f.manager.token(Duration::ZERO).await.is_err());
    assert_eq!(f.refresher.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn transient_failure_keeps_serving_the_valid_token() {
    let lifetime = Duration::from_secs(600);
    let f = fixture(
        |c| {
            let s = Scripted::new(c, lifetime);
            s.script
                .lock()
                .unwrap()
                .push_back(Err(RefreshError::transient("http_500", "boom", false)));
            s
        },
        lifetime,
    )
    .await;
    // Force a refresh through a 401 report; it fails transiently.
    let first = f.manager.token(Duration::ZERO).await.unwrap();
    let err = f.manager.unauthorized(first.token_id()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::UpstreamUnavailable);
    // Plain token requests still get the cached, valid token.
    let again = f.manager.token(Duration::from_secs(500)).await.unwrap();
    assert_eq!(again.access_token().expose_secret(), "at-0");
    let status = f.manager.status();
    assert_eq!(status.last_error.unwrap().code, "http_500");
}

#[tokio::test]
async fn clock_jump_while_a_proactive_refresh_is_scheduled_refreshes_once_for_everybody() {
    // The proactive refresh is planned ~45 minutes out; the laptop sleeps for
    // two hours, past expiry. The first requests after the wake-up must not
    // get the dead token, and the scheduled refresh and the demand refresh
    // must be one and the same.
    let lifetime = Duration::from_secs(3600);
    let f = fixture(|c| Scripted::gated(c, lifetime), lifetime).await;
    assert!(f.manager.status().next_refresh_at.is_some());
    f.clock.advance_millis(2 * 3600 * 1000);
    assert_eq!(
        f.manager.status().state,
        oauth_broker_proto::TokenState::Expired
    );
    let mut handles = Vec::new();
    for _ in 0..20 {
        let m = f.manager.clone();
        handles.push(tokio::spawn(async move { m.token(Duration::ZERO).await }));
    }
    f.release_the_refresh_once_called().await;
    let now = crate::clock::unix_secs(f.clock.now());
    for h in handles {
        let grant = h.await.unwrap().unwrap();
        assert_eq!(grant.access_token().expose_secret(), "at-1");
        assert!(grant.grant.expires_at > now, "served an expired token");
    }
    assert_eq!(f.refresher.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn clock_jump_during_an_in_flight_refresh_makes_requests_wait_for_it() {
    // A refresh is running (held at the server) when the wall clock jumps past
    // the cached token's expiry: requests arriving now must wait for the new
    // token instead of being served the cached one, which just died.
    let lifetime = Duration::from_secs(600);
    let f = fixture(|c| Scripted::gated(c, lifetime), lifetime).await;
    let first = f.manager.token(Duration::ZERO).await.unwrap();
    let reporter = {
        let m = f.manager.clone();
        let id = first.token_id().to_string();
        tokio::spawn(async move { m.unauthorized(&id).await })
    };
    f.refresh_called().await;
    f.clock.advance_millis(601_000);
    let waiter = {
        let m = f.manager.clone();
        tokio::spawn(async move { m.token(Duration::ZERO).await })
    };
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(!waiter.is_finished(), "served the expired cached token");
    f.release_refresh();
    let grant = waiter.await.unwrap().unwrap();
    assert_eq!(grant.access_token().expose_secret(), "at-1");
    assert!(grant.grant.expires_at > crate::clock::unix_secs(f.clock.now()));
    assert_eq!(
        reporter
            .await
            .unwrap()
            .unwrap()
            .access_token()
            .expose_secret(),
        "at-1"
    );
    assert_eq!(f.refresher.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn clock_jump_while_asleep_is_noticed_by_the_scheduler_without_any_request() {
    // Timers run on the monotonic clock, which stops during suspend. The
    // scheduler re-reads the wall clock at least every MAX_SLEEP, so after a
    // wake-up past the refresh point it refreshes on its own: the first
    // client after the wake-up finds a fresh token instead of waiting.
    let lifetime = Duration::from_secs(3600);
    let f = fixture(|c| Scripted::new(c, lifetime), lifetime).await;
    // Let the scheduler plan its (capped) sleep.
    tokio::time::sleep(Duration::from_millis(1)).await;
    f.clock.advance_millis(2 * 3600 * 1000);
    assert_eq!(f.refresher.calls.load(Ordering::SeqCst), 0);
    // Virtual time: no real waiting. Just past the scheduler's longest sleep
    // (`scheduler::MAX_SLEEP`, 15 s).
    tokio::time::sleep(Duration::from_secs(16)).await;
    for _ in 0..1000 {
        if f.manager.status().state == oauth_broker_proto::TokenState::Valid
            && f.refresher.calls.load(Ordering::SeqCst) == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        f.refresher.calls.load(Ordering::SeqCst),
        1,
        "no refresh after the wake-up"
    );
    let grant = f.manager.token(Duration::ZERO).await.unwrap();
    assert_eq!(grant.access_token().expose_secret(), "at-1");
    assert_eq!(f.refresher.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn importing_an_already_spent_refresh_token_is_refused_and_the_current_one_is_a_no_op() {
    let lifetime = Duration::from_secs(600);
    let f = fixture(|c| Scripted::new(c, lifetime), lifetime).await;
    let first = f.manager.token(Duration::ZERO).await.unwrap();
    // Rotate rt-0 → rt-1.
    f.manager.unauthorized(first.token_id()).await.unwrap();
    assert_eq!(f.refresher.calls.load(Ordering::SeqCst), 1);

    // An old copy holding rt-0 (already spent): refused, state untouched.
    let err = f
        .manager
        .adopt(creds(&f.clock, lifetime))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadRequest);
    assert!(err.to_string().contains("already spent"), "{err}");
    let current = f.manager.inner.lock().creds.clone().unwrap();
    assert_eq!(current.refresh_token.expose_secret(), "rt-1");

    // The very login the broker holds: accepted without any change.
    let mut same = creds(&f.clock, lifetime);
    same.refresh_token = "rt-1".to_string().into();
    same.access_token = Some("other-at".to_string().into());
    f.manager.adopt(same).await.unwrap();
    let after = f.manager.token(Duration::ZERO).await.unwrap();
    assert_eq!(after.access_token().expose_secret(), "at-1");
    assert_eq!(f.refresher.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_token_dead_on_arrival_does_not_cause_a_refresh_loop() {
    let f = fixture(
        |c| Scripted::new(c, Duration::ZERO),
        Duration::from_secs(600),
    )
    .await;
    let first = f.manager.token(Duration::ZERO).await.unwrap();
    let started = std::time::Instant::now();
    let err = f.manager.unauthorized(first.token_id()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::UpstreamUnavailable, "{err}");
    // The scheduler paces further attempts with the backoff instead of looping.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let calls = f.refresher.calls.load(Ordering::SeqCst);
    // Judged against the time that really passed (a loaded machine stretches
    // the 30 ms): after the first failure the k-th retry comes no sooner than
    // 40 ms · (2^k − 1) (50 ms initial, jitter ≥ 0.8, doubling). Over 30 ms
    // that allows 2 calls, as ever; a loop would exceed it at any elapsed time.
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let paced_retries = (elapsed_ms / 40.0 + 1.0).log2().floor() as usize;
    assert!(
        calls <= 2 + paced_retries,
        "{calls} refresh calls in {elapsed_ms:.0} ms: not paced by the backoff"
    );
    assert_eq!(
        f.manager.status().last_error.unwrap().code,
        "token_already_expired"
    );
}

#[tokio::test]
async fn the_answer_frame_is_built_once_per_grant_and_published_without_the_refresh_token() {
    let lifetime = Duration::from_secs(600);
    let f = fixture(|c| Scripted::new(c, lifetime), lifetime).await;
    let first = f.manager.token(Duration::ZERO).await.unwrap();
    let again = f.manager.token(Duration::ZERO).await.unwrap();
    assert!(Arc::ptr_eq(&first, &again), "one served token per grant");
    let snapshot = f.manager.snapshot();
    assert!(Arc::ptr_eq(snapshot.token.as_ref().unwrap(), &first));
    assert_eq!(
        snapshot.refresh_token_id.as_deref(),
        Some(oauth_broker_proto::token_fingerprint(&"rt-0".to_string().into()).as_str())
    );
    let mut changes = f.manager.subscribe();
    f.manager.unauthorized(first.token_id()).await.unwrap();
    assert!(changes.has_changed().unwrap());
    let snapshot = changes.borrow_and_update().clone();
    let newer = snapshot.token.as_ref().unwrap();
    assert!(!Arc::ptr_eq(newer, &first));
    assert_eq!(newer.access_token().expose_secret(), "at-1");
    assert_eq!(
        snapshot.refresh_token_id.as_deref(),
        Some(oauth_broker_proto::token_fingerprint(&"rt-1".to_string().into()).as_str())
    );
    // Logging out publishes a snapshot without any token.
    f.manager.logout().await.unwrap();
    let snapshot = f.manager.snapshot();
    assert!(!snapshot.logged_in && snapshot.token.is_none());
    assert_eq!(
        f.manager.token(Duration::ZERO).await.unwrap_err().code(),
        ErrorCode::NotLoggedIn
    );
}

// ----- wall-clock steps (lifetimes run on boottime; the earlier deadline wins)

#[tokio::test]
async fn wall_clock_stepped_back_does_not_stretch_the_token() {
    // Only the wall clock goes back 120 s (NTP, `date -s`): the token still
    // dies after its lifetime of real time, and status says so.
    let lifetime = Duration::from_secs(600);
    let f = fixture(|c| Scripted::gated(c, lifetime), lifetime).await;
    f.clock.step_wall_millis(-120_000);
    let status = f.manager.status();
    let wall_now = crate::clock::unix_secs(f.clock.now());
    assert!(
        status.access_token_expires_at.unwrap() <= wall_now + 600,
        "expiry shown on the earlier (boottime) deadline"
    );
    assert!(status.next_refresh_at.unwrap() <= wall_now + 600 - 15);
    // 601 s of real time pass: by the wall clock 119 s are left, by boottime none.
    f.clock.advance_millis(601_000);
    assert_ne!(
        f.manager.status().state,
        oauth_broker_proto::TokenState::Valid
    );
    assert!(f
        .manager
        .snapshot()
        .ready_token(f.clock.read(), Duration::ZERO)
        .is_none());
    let waiter = {
        let m = f.manager.clone();
        tokio::spawn(async move { m.token(Duration::ZERO).await })
    };
    f.release_the_refresh_once_called().await;
    let fresh = waiter.await.unwrap().unwrap();
    assert_eq!(fresh.access_token().expose_secret(), "at-1");
    assert_eq!(f.refresher.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn wall_clock_a_day_ahead_then_corrected_never_serves_the_dead_token() {
    // The token arrives while the wall clock is a day ahead; the clock is then
    // corrected. By the wall clock the token has a day left, by boottime its
    // real lifetime: status must follow the earlier deadline.
    let lifetime = Duration::from_secs(600);
    let f = fixture(|c| Scripted::gated(c, lifetime), lifetime).await;
    let first = f.manager.token(Duration::ZERO).await.unwrap();
    f.clock.step_wall_millis(86_400_000);
    let reporter = {
        let m = f.manager.clone();
        let id = first.token_id().to_string();
        tokio::spawn(async move { m.unauthorized(&id).await })
    };
    f.release_the_refresh_once_called().await;
    assert_eq!(
        reporter
            .await
            .unwrap()
            .unwrap()
            .access_token()
            .expose_secret(),
        "at-1"
    );
    f.clock.step_wall_millis(-86_400_000);
    let status = f.manager.status();
    let wall_now = crate::clock::unix_secs(f.clock.now());
    assert_eq!(status.state, oauth_broker_proto::TokenState::Valid);
    assert!(status.access_token_expires_at.unwrap() <= wall_now + 600);
    let next = status.next_refresh_at.unwrap();
    assert!(
        next <= wall_now + 600 - 15 && next >= wall_now + 400,
        "next refresh {next} is not at 75-80 % of the real lifetime from {wall_now}"
    );
    f.clock.advance_millis(601_000);
    assert_ne!(
        f.manager.status().state,
        oauth_broker_proto::TokenState::Valid,
        "status says valid for a token whose boottime deadline passed"
    );
    assert!(f
        .manager
        .snapshot()
        .ready_token(f.clock.read(), Duration::ZERO)
        .is_none());
    let waiter = {
        let m = f.manager.clone();
        tokio::spawn(async move { m.token(Duration::ZERO).await })
    };
    while f.refresher.calls.load(Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }
    f.release_refresh();
    assert_eq!(
        waiter
            .await
            .unwrap()
            .unwrap()
            .access_token()
            .expose_secret(),
        "at-2"
    );
}

#[tokio::test]
async fn suspend_moves_both_clocks_and_expires_the_token() {
    // A suspend: wall clock and boottime both move on, the monotonic clock
    // (tokio's timers) does not. Requests after the wake-up get a new token.
    let lifetime = Duration::from_secs(600);
    let f = fixture(|c| Scripted::new(c, lifetime), lifetime).await;
    f.clock.advance_millis(599_000);
    assert_eq!(
        f.manager.status().state,
        oauth_broker_proto::TokenState::Valid
    );
    f.clock.advance_millis(2_000);
    assert_eq!(
        f.manager.status().state,
        oauth_broker_proto::TokenState::Expired
    );
    let fresh = f.manager.token(Duration::ZERO).await.unwrap();
    assert_eq!(fresh.access_token().expose_secret(), "at-1");
}

#[tokio::test]
async fn wall_clock_stepped_forward_only_refreshes_early() {
    // A wall clock stepped a day ahead after the token arrived: the wall
    // deadline passed, so the token counts as expired (the earlier deadline
    // wins) and is refreshed; the new one is valid by both clocks.
    let lifetime = Duration::from_secs(600);
    let f = fixture(|c| Scripted::new(c, lifetime), lifetime).await;
    f.clock.step_wall_millis(86_400_000);
    assert_eq!(
        f.manager.status().state,
        oauth_broker_proto::TokenState::Expired
    );
    let fresh = f.manager.token(Duration::ZERO).await.unwrap();
    assert_eq!(fresh.access_token().expose_secret(), "at-1");
    assert_eq!(
        f.manager.status().state,
        oauth_broker_proto::TokenState::Valid
    );
}

#[test]
fn the_manager_imports_none_of_its_subscribers() {
    // Data flows one way: the manager publishes snapshots and knows nothing
    // about who reads them (or who calls it).
    let sources = [
        ("errors.rs", include_str!("errors.rs")),
        ("mod.rs", include_str!("mod.rs")),
        ("refresh.rs", include_str!("refresh.rs")),
        ("scheduler.rs", include_str!("scheduler.rs")),
        ("snapshot.rs", include_str!("snapshot.rs")),
        ("state.rs", include_str!("state.rs")),
        ("tests.rs", include_str!("tests.rs")),
    ];
    for module in ["projection", "server", "login", "systemd", "ctl"] {
        let path = format!("crate::{module}");
        for (file, text) in sources {
            assert!(!text.contains(&path), "manager/{file} uses {path}");
        }
    }
}

/// A manager started on state a previous broker left: `persisted` in the state
/// file and, if given, `record` beside the socket.
async fn restored(
    lifetime: Duration,
    prepare: impl FnOnce(&OffsetClock, &Credentials) -> (PersistedState, Option<RuntimeRecord>),
) -> (Fixture, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(OffsetClock::default());
    let refresher = Arc::new(Scripted::new(clock.clone(), lifetime));
    let store = Store::open(&dir.path().join("acct"), "acct").unwrap();
    let (persisted, record) = prepare(&clock, &creds(&clock, lifetime));
    store.save(&persisted).unwrap();
    let record_file = RuntimeRecordFile::beside_socket(&dir.path().join("acct.sock"));
    if let Some(record) = record {
        record_file.save(&record).unwrap();
    }
    let loaded = store.load().unwrap();
    let manager = TokenManager::start(
        "acct".into(),
        provider(),
        RefreshSettings {
            backoff_initial_ms: 50,
            ..Default::default()
        },
        store,
        loaded,
        record_file.clone(),
        refresher.clone(),
        clock.clone(),
        None,
    );
    let path = record_file.path().to_path_buf();
    (
        Fixture {
            manager,
            refresher,
            clock,
            _dir: dir,
        },
        path,
    )
}

#[tokio::test]
async fn a_record_of_an_unsaved_rotation_means_relogin_without_spending_the_token_on_disk() {
    let lifetime = Duration::from_secs(600);
    let (f, record_path) = restored(lifetime, |_, c| {
        let mut p = PersistedState::empty("acct");
        p.credentials = Some(c.into());
        let record = RuntimeRecord {
            version: 1,
            account: "acct".into(),
            spent_refresh_tokens: vec![c.refresh_token_id()],
            refresh_in_flight: None,
        };
        (p, Some(record))
    })
    .await;
    let err = f.manager.token(Duration::ZERO).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::ReloginRequired);
    assert_eq!(err.reason(), Some(errors::ROTATION_NOT_PERSISTED));
    assert!(err.hint().contains("free disk space"), "{}", err.hint());
    let err = f.manager.unauthorized("whatever").await.unwrap_err();
    assert_eq!(err.reason(), Some(errors::ROTATION_NOT_PERSISTED));
    assert_eq!(f.refresher.calls.load(Ordering::SeqCst), 0);
    // The state file takes the relogin as soon as it can; the record goes.
    for _ in 0..200 {
        if !record_path.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !record_path.exists(),
        "record kept after a successful write"
    );
}

#[tokio::test]
async fn after_a_crash_mid_refresh_the_token_is_spent_again_only_after_the_old_request_ended() {
    let lifetime = Duration::from_secs(600);
    let hold = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let (f, _) = restored(lifetime, |clock, c| {
        let mut p = PersistedState::empty("acct");
        p.credentials = Some(c.into());
        let deadline = clock.now() + hold;
        p.refresh_in_flight = Some(crate::store::InFlightMarker {
            started_at: unix_secs(clock.now()),
            refresh_token_id: c.refresh_token_id(),
            answer_deadline_ms: Some(
                deadline
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64,
            ),
        });
        (p, None)
    })
    .await;
    // The cached token, even for a `min_valid` it cannot satisfy: no refresh
    // while the old request may still be at the server.
    let cached = f.manager.token(Duration::from_secs(590)).await.unwrap();
    assert_eq!(cached.access_token().expose_secret(), "at-0");
    assert_eq!(f.refresher.calls.load(Ordering::SeqCst), 0);
    // A 401 report waits for the retry, which comes after the hold.
    let fresh = f.manager.unauthorized(cached.token_id()).await.unwrap();
    assert!(started.elapsed() >= hold - Duration::from_millis(5));
    assert_eq!(fresh.access_token().expose_secret(), "at-1");
    assert_eq!(f.refresher.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn while_the_state_cannot_be_written_a_still_valid_token_is_served_even_for_min_valid() {
    let lifetime = Duration::from_secs(600);
    let f = fixture(|c| Scripted::new(c, lifetime), lifetime).await;
    let first = f.manager.token(Duration::ZERO).await.unwrap();
    // Every write fails from now on: the state directory is gone.
    std::fs::remove_dir_all(f._dir.path().join("acct")).unwrap();
    let rotated = f.manager.unauthorized(first.token_id()).await.unwrap();
    assert_eq!(rotated.access_token().expose_secret(), "at-1");
    assert!(f.manager.status().degraded.is_some());
    // 100 s left, less than the 120 s a `min_valid` may ask for: normally a
    // refresh, but not while its result could not be persisted.
    f.clock.advance_millis(500_000);
    let served = f.manager.token(Duration::from_secs(300)).await.unwrap();
    assert_eq!(served.access_token().expose_secret(), "at-1");
    assert_eq!(f.refresher.calls.load(Ordering::SeqCst), 1);
    // Expired: a client needs a token, so it is refreshed on demand.
    f.clock.advance_millis(200_000);
    let fresh = f.manager.token(Duration::ZERO).await.unwrap();
    assert_eq!(fresh.access_token().expose_secret(), "at-2");
    assert_eq!(f.refresher.calls.load(Ordering::SeqCst), 2);
}
