//! The soak of issue 16: everything that goes wrong in real life, at once, for
//! a bounded time in CI's budget, on loopback only.
//!
//! 50 agent processes (this test binary re-executed, each using the real
//! client crate's [`CachingClient`]) ask for a token every few milliseconds
//! through the real `brokerd`, against the strict rotating fake server (single-
//! use refresh tokens, reuse revokes the family) with 2 s access tokens, while:
//! * about 5 % of the token-endpoint requests get a transient fault (5xx, 429,
//!   an HTML page, a dropped connection, a delay below the HTTP timeout);
//! * `brokerd` is killed with SIGKILL at random moments (seeded; the seed is
//!   printed, `SOAK_SEED` replays it) and restarted soon after, as the unit
//!   does (`Restart=on-failure`; 500 ms here instead of `RestartSec=2`);
//! * the disk is full for one period (the store fault hook: every save fails
//!   with ENOSPC), opened by a kill and a restart on the full disk right after
//!   a rotation was saved; no other kill until the state is written again (a
//!   kill after brokerd had to refresh on demand on the full disk loses the
//!   login by design, `rotation_not_persisted`);
//! * the wall clock jumps forward by an hour once, for brokerd and the agents
//!   alike (libfaketime with a shared, runtime-changed offset file: one host,
//!   one clock; the remote server's clock does not jump).
//!
//! The server allows a replay of a used refresh token within 30 s (as Auth0's
//! rotation overlap does): with none, a SIGKILL between the server's rotation
//! and the state write loses the login whatever the broker does (that case and
//! its `refresh_interrupted` hint are `reliability_crash`'s). Here such crashes
//! must be recovered by the broker's replay of the token on disk.
//!
//! What a failure is. Every agent request that returns an error is recorded
//! with its CLOCK_MONOTONIC time (one clock for all processes, not faked).
//! A connection error (`Unreachable`, or `Io` when brokerd dies mid-request)
//! while brokerd is down — from the kill
//! until the restarted brokerd's socket accepts — is counted apart: no process
//! exists that could answer, and the agent's cache keeps serving its token
//! meanwhile if it is still good for the agent's `min_valid`. Any other error
//! is a *failure while a valid token existed* if, when it happened, a token the
//! broker had already handed out (to any agent) was still accepted by the
//! server for at least one more second (the wire's whole-second granularity).
//! Beside that, no agent may use a token after the server's own expiry (beyond
//! [`DEAD_TOKEN_SLACK_MS`]). Tokens the client crate called expired when it
//! got them are counted, not judged: a token handed out in its last second
//! has a whole-second `expires_at` on the wire that is already past.
//!
//! Verdicts are judged only on settled facts: after the agents have exited,
//! brokerd is stopped and the fake server has handled every byte.

use crate::common::{eventually, Broker};
use crate::reliability_disk::failed_writes;
use oauth_broker_client::proto::{token_fingerprint, SecretString, TokenState};
use oauth_broker_client::{CachingClient, Client, Error};
use oauth_broker_tests::fake_server::{FakeConfig, Fault};
use oauth_broker_tests::tools::ensure_libfaketime;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const AGENTS: usize = 50;
const RUN: Duration = Duration::from_secs(75);
const LIFETIME: Duration = Duration::from_secs(2);
const REUSE_GRACE: Duration = Duration::from_secs(30);
/// Stands in for `RestartSec=2` of the unit: "restart soon after".
const RESTART_DELAY: Duration = Duration::from_millis(500);
/// The disk is full from here for `DISK_FULL_FOR`, with a kill in the middle.
const DISK_FULL_AT: Duration = Duration::from_secs(25);
const DISK_FULL_FOR: Duration = Duration::from_secs(6);
const CLOCK_JUMP_AT: Duration = Duration::from_secs(48);
const CLOCK_JUMP: &str = "+3600";
const FAULT_ENV: &str = "OAUTH_BROKER_FAULT_STORE";
const AGENT_ENV: &str = "OAUTH_BROKER_SOAK_AGENT_SOCKET";
const RESULT_TAG: &str = "SOAK_AGENT ";
/// How long after the server's expiry an agent may still use a token. The
/// broker measures a lifetime from when the answer arrived, the server from
/// when it issued the token: the broker's view is later by the time in
/// between (milliseconds on loopback, more on a loaded machine), and a client
/// asking with `min_valid` 0 may get a token in exactly that gap.
const DEAD_TOKEN_SLACK_MS: i64 = 1000;

/// CLOCK_MONOTONIC in milliseconds: the same clock in every process, and one
/// libfaketime leaves alone (`DONT_FAKE_MONOTONIC=1`).
fn mono_ms() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock");
    ts.tv_sec() as u64 * 1000 + ts.tv_nsec() as u64 / 1_000_000
}

/// The environment that puts a process on the shared fake wall clock.
fn faketime_env(preload: &Path, offset_file: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("LD_PRELOAD", preload.display().to_string()),
        ("FAKETIME_TIMESTAMP_FILE", offset_file.display().to_string()),
        ("FAKETIME_CACHE_DURATION", "1".to_string()),
        ("DONT_FAKE_MONOTONIC", "1".to_string()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
    ]
}

/// What one agent saw, as it prints it for the parent.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct AgentReport {
    min_valid_ms: u64,
    ok: u64,
    /// Token id → (first, last) time the agent used it.
    used: BTreeMap<String, (u64, u64)>,
    /// Tokens the client crate itself called expired when it returned them.
    expired_served: Vec<(u64, String)>,
    /// Connection errors: no broker listening, or it died mid-request.
    unreachable: Vec<u64>,
    /// (time, error) of every other error.
    refused: Vec<(u64, String)>,
}

/// Not a test of its own: the entry point of the agent processes of
/// `fifty_agents_through_kills_faults_a_full_disk_and_a_clock_jump_never_lose_the_login`.
/// Returns at once unless that test started it.
#[test]
fn soak_agent_entry() {
    let Ok(socket) = std::env::var(AGENT_ENV) else {
        return;
    };
    let index: u64 = std::env::var("SOAK_AGENT_INDEX").unwrap().parse().unwrap();
    let run_for = Duration::from_millis(std::env::var("SOAK_RUN_MS").unwrap().parse().unwrap());
    let deadline = Instant::now() + run_for;
    // Agents differ in what they need: 0 to 800 ms of validity left.
    let min_valid = Duration::from_millis(index % 5 * 200);
    let mut report = AgentReport {
        min_valid_ms: min_valid.as_millis() as u64,
        ..AgentReport::default()
    };
    let mut client: Option<CachingClient> = None;
    while Instant::now() < deadline {
        let answer = match client.as_mut() {
            Some(client) => client.token(min_valid),
            None => Client::builder()
                .socket(&socket)
                .client_name(format!("soak-{index}"))
                .connect()
                .map(CachingClient::new)
                .and_then(|c| client.insert(c).token(min_valid)),
        };
        let now = mono_ms();
        match answer {
            Ok(token) => {
                report.ok += 1;
                if token.is_expired() {
                    report
                        .expired_served
                        .push((now, token.token_id().to_string()));
                }
                let used = report
                    .used
                    .entry(token.token_id().to_string())
                    .or_insert((now, now));
                used.1 = now;
                std::thread::sleep(Duration::from_millis(5));
            }
            // No broker, or it died mid-request (killed).
            Err(e) if e.is_unreachable() || matches!(e, Error::Io { .. }) => {
                report.unreachable.push(now);
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                report.refused.push((now, format!("{:?}", e.code())));
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    println!("{RESULT_TAG}{}", serde_json::to_string(&report).unwrap());
}

/// Picks the next transient fault: none of them consumes the refresh token
/// without answering (delays stay below the 2 s HTTP timeout).
fn transient_fault(rng: &mut StdRng) -> Fault {
    match rng.random_range(0..7) {
        0 => Fault::Status(500),
        1 => Fault::Status(502),
        2 => Fault::Status(503),
        3 => Fault::DropConnection,
        4 => Fault::Delay(Duration::from_millis(rng.random_range(200..1500))),
        5 => Fault::TooManyRequests {
            retry_after_secs: 1,
        },
        _ => Fault::Html { status: 503 },
    }
}

/// A stretch of time (CLOCK_MONOTONIC ms) in which brokerd was not running.
#[derive(Debug, Clone, Copy)]
struct Down {
    from: u64,
    until: u64,
}

#[test]
fn fifty_agents_through_kills_faults_a_full_disk_and_a_clock_jump_never_lose_the_login() {
    // Installed on first use when this process may (root or sudo).
    let preload = ensure_libfaketime();
    let seed: u64 = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("SOAK seed={seed} (rerun with SOAK_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);

    let hooks = tempfile::tempdir().unwrap();
    let disk_full = hooks.path().join("enospc");
    let clock = hooks.path().join("faketime");
    std::fs::write(&clock, "+0\n").unwrap();
    let mut spec = Broker::builder()
        .fake(FakeConfig {
            access_ttl: LIFETIME,
            reuse_grace: REUSE_GRACE,
            ..FakeConfig::default()
        })
        .fast_refresh()
        .brokerd_env(FAULT_ENV, disk_full.to_string_lossy());
    for (key, value) in faketime_env(&preload, &clock) {
        spec = spec.brokerd_env(key, value);
    }
    let mut rig = spec.logged_in();

    // The plan: kills every 4 to 9 s (seeded), none during the disk-full
    // period but the one that opens it (see below); the disk-full period; the
    // clock jump.
    let disk_window = DISK_FULL_AT - Duration::from_secs(1)..DISK_FULL_AT + DISK_FULL_FOR;
    let mut kills_at = Vec::new();
    let mut at = Duration::from_millis(rng.random_range(2000..5000));
    while at < RUN - Duration::from_secs(5) {
        if !disk_window.contains(&at) {
            kills_at.push(at);
        }
        at += Duration::from_millis(rng.random_range(4000..9000));
    }

    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let agents: Vec<_> = (0..AGENTS)
        .map(|i| {
            Command::new(&exe)
                .args([
                    "soak::soak_agent_entry",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(AGENT_ENV, rig.broker.socket_path())
                .env("SOAK_AGENT_INDEX", i.to_string())
                .env("SOAK_RUN_MS", RUN.as_millis().to_string())
                .envs(faketime_env(&preload, &clock))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn agent")
        })
        .collect();

    // About 5 % of the token requests get a transient fault: after every 10
    // to 30 requests (mean 20), the next one is faulted.
    let stop = AtomicBool::new(false);
    let mut fault_rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut down: Vec<Down> = Vec::new();
    let mut disk_full_kill = false;
    let mut jumped_at = 0;
    std::thread::scope(|scope| {
        let fake = rig.fake.clone();
        let stop = &stop;
        scope.spawn(move || {
            let mut next = fault_rng.random_range(10..=30);
            while !stop.load(Ordering::Relaxed) {
                let received = fake.stats().token_requests_received;
                if received >= next && fake.pending_faults() == 0 {
                    fake.push_fault(transient_fault(&mut fault_rng));
                    next = received + fault_rng.random_range(10..=30);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });

        let mut events: Vec<(Duration, &str)> = kills_at.iter().map(|&t| (t, "kill")).collect();
        events.push((DISK_FULL_AT, "disk-full"));
        events.push((DISK_FULL_AT + DISK_FULL_FOR, "disk-ok"));
        events.push((CLOCK_JUMP_AT, "clock-jump"));
        events.sort();
        for (at, what) in events {
            if let Some(wait) = (started + at).checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            println!(
                "SOAK event {what} at +{:.1}s",
                started.elapsed().as_secs_f64()
            );
            match what {
                "kill" => {
                    let from = mono_ms();
                    rig.broker.kill().expect("SIGKILL");
                    std::thread::sleep(RESTART_DELAY);
                    rig.restart_after_kill();
                    down.push(Down {
                        from,
                        until: mono_ms(),
                    });
                }
                "disk-full" => {
                    // Right after a rotation was saved, the disk fills up and
                    // brokerd is killed and restarted on the full disk: no
                    // rotation is unsaved at the kill. (A kill after brokerd
                    // had to refresh on demand on the full disk loses the
                    // login by design — `rotation_not_persisted`, see the
                    // README — so the period has no other kill.)
                    let before = rig.fake.stats().successful_refreshes;
                    rig.fake
                        .wait_until(Duration::from_secs(10), |s| s.successful_refreshes > before)
                        .expect("a refresh before the disk fills");
                    std::fs::write(&disk_full, b"").unwrap();
                    let from = mono_ms();
                    rig.broker.kill().expect("SIGKILL");
                    disk_full_kill = true;
                    std::thread::sleep(RESTART_DELAY);
                    rig.restart_after_kill();
                    down.push(Down {
                        from,
                        until: mono_ms(),
                    });
                }
                "disk-ok" => {
                    std::fs::remove_file(&disk_full).unwrap();
                    // The tokens refreshed on the full disk are saved before
                    // the next kill (the write retry backs off up to 1 s).
                    eventually("the state written again", Duration::from_secs(15), || {
                        rig.status().degraded.is_none().then_some(())
                    });
                }
                _ => {
                    std::fs::write(&clock, format!("{CLOCK_JUMP}\n")).unwrap();
                    jumped_at = mono_ms();
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
    });

    let mut reports = Vec::new();
    for agent in agents {
        let out = agent.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "agent failed (seed {seed}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = text
            .lines()
            .find_map(|l| l.split_once(RESULT_TAG).map(|(_, rest)| rest))
            .expect("agent report");
        reports.push(serde_json::from_str::<AgentReport>(line).unwrap());
    }
    rig.fake.clear_faults();

    // The login survived: brokerd says valid (it may be finishing a refresh)
    // and serves a token the server accepts.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut status = rig.status();
    while status.state != TokenState::Valid && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        status = rig.status();
    }
    let last = rig.client().token(Duration::ZERO);
    let final_token_accepted = last.as_ref().is_ok_and(|t| rig.server_accepts(t));
    let logs = rig.logs();
    rig.broker.terminate().expect("brokerd stops");
    let stats = rig
        .fake
        .wait_until_settled(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("seed {seed}: server never settled: {e}"));
    if status.state != TokenState::Valid || !final_token_accepted {
        let tail: Vec<_> = logs
            .lines()
            .filter(|l| !l.contains(" TRACE ") && !l.contains(" DEBUG "))
            .rev()
            .take(120)
            .collect();
        println!(
            "SOAK seed={seed} final status {status:#?}\nstats {stats:#?}\nlast log lines (newest first):\n{}",
            tail.join("\n")
        );
    }
    // Every token the server issued: its expiry on CLOCK_MONOTONIC.
    let (now_mono, now) = (mono_ms(), Instant::now());
    let to_mono = |at: Instant| -> i64 {
        now_mono as i64 - now.saturating_duration_since(at).as_millis() as i64
            + at.saturating_duration_since(now).as_millis() as i64
    };
    let expiry: BTreeMap<String, i64> = rig
        .fake
        .all_issued_tokens()
        .into_iter()
        .filter_map(|t| {
            let at = rig.fake.access_token_expires_at(&t)?;
            Some((token_fingerprint(&SecretString::from(t)), to_mono(at)))
        })
        .collect();
    // When each token was first handed out (to any agent).
    let mut first_served: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &reports {
        for (id, (first, _)) in &r.used {
            let e = first_served.entry(id).or_insert(*first);
            *e = (*e).min(*first);
        }
    }
    let valid_token_at = |t: u64| {
        first_served.iter().any(|(id, &first)| {
            first <= t && expiry.get(*id).is_some_and(|&e| e >= t as i64 + 1000)
        })
    };
    let in_down = |t: u64| down.iter().any(|d| d.from <= t && t <= d.until);

    let requests: u64 = reports.iter().map(|r| r.ok).sum();
    let mut unreachable_while_down = 0;
    let mut failures = Vec::new();
    let mut refused_without_valid_token = 0;
    let mut dead_token_uses = Vec::new();
    let mut expired_served = Vec::new();
    let mut max_overshoot = i64::MIN;
    for (agent, r) in reports.iter().enumerate() {
        for (t, id) in &r.expired_served {
            expired_served.push(format!(
                "agent {agent} (min_valid {} ms): token {id} at {t} (jump at {jumped_at}), server expiry in {:?} ms",
                r.min_valid_ms,
                expiry.get(id).map(|&e| e - *t as i64)
            ));
        }
        for &t in &r.unreachable {
            if in_down(t) {
                unreachable_while_down += 1;
            } else {
                failures.push(format!(
                    "agent {agent}: unreachable at {t} while brokerd ran"
                ));
            }
        }
        for (t, error) in &r.refused {
            if valid_token_at(*t) {
                failures.push(format!(
                    "agent {agent} (min_valid {} ms): {error} at {t} while a token was valid",
                    r.min_valid_ms
                ));
            } else {
                refused_without_valid_token += 1;
            }
        }
        for (id, (_, last)) in &r.used {
            match expiry.get(id) {
                Some(&e) => {
                    let overshoot = *last as i64 - e;
                    max_overshoot = max_overshoot.max(overshoot);
                    if overshoot > DEAD_TOKEN_SLACK_MS {
                        dead_token_uses.push(format!(
                            "agent {agent}: token {id} used {overshoot} ms after the server's expiry"
                        ));
                    }
                }
                None => dead_token_uses.push(format!("agent {agent}: token {id} never issued")),
            }
        }
    }

    println!(
        "SOAK seed={seed} agents={AGENTS} run={}s requests={requests} refreshes={} grace_replays={} \
         kills={} restarts={} disk_full_kill={disk_full_kill} faults_injected={} \
         disk_full_writes_failed={} clock_jump={CLOCK_JUMP}s unreachable_while_down={unreachable_while_down} \
         refused_without_valid_token={refused_without_valid_token} reuse={} families_revoked={} \
         relogins={} expired_served={} last_use_vs_server_expiry_max={max_overshoot}ms \
         dead_token_uses={} failures={}",
        started.elapsed().as_secs(),
        stats.successful_refreshes,
        stats.grace_replays,
        down.len(),
        down.len(),
        stats.faults_injected,
        failed_writes(&logs),
        stats.reuse_detections,
        stats.families_revoked,
        stats.grants_issued - 1,
        expired_served.len(),
        dead_token_uses.len(),
        failures.len(),
    );
    for line in dead_token_uses.iter().chain(&expired_served).take(10) {
        println!("SOAK {line}");
    }
    assert!(
        failures.is_empty(),
        "seed {seed}: {} failed requests while a valid token existed, e.g. {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert_eq!(
        status.state,
        TokenState::Valid,
        "seed {seed}: the login did not survive: {status:#?}"
    );
    assert!(final_token_accepted, "seed {seed}: final token dead");
    assert!(
        dead_token_uses.is_empty(),
        "seed {seed}: tokens used more than {DEAD_TOKEN_SLACK_MS} ms after the server's expiry: {dead_token_uses:#?}"
    );
    assert_eq!(stats.reuse_detections, 0, "seed {seed}: {stats:#?}");
    assert_eq!(stats.families_revoked, 0, "seed {seed}: {stats:#?}");
    assert_eq!(stats.invalid_refresh_attempts, 0, "seed {seed}: {stats:#?}");
    assert_eq!(stats.grants_issued, 1, "seed {seed}: a relogin happened");
    assert!(
        disk_full_kill,
        "the plan kills brokerd while the disk is full"
    );
    assert!(failed_writes(&logs) > 0, "the full disk failed no write");
    // Sane refresh count: about one per lifetime (75-80 % of it), a few more
    // for kills, faults and the clock jump; far fewer than one per request.
    let lifetimes = RUN.as_secs() / LIFETIME.as_secs();
    assert!(
        stats.successful_refreshes >= lifetimes / 2
            && stats.successful_refreshes <= 2 * lifetimes + 2 * down.len() as u64 + 10,
        "seed {seed}: {} refreshes in {lifetimes} lifetimes",
        stats.successful_refreshes
    );
    assert!(
        requests > AGENTS as u64 * 100,
        "agents barely asked: {requests}"
    );

    // The state on disk is the login: a new brokerd starts valid.
    rig.restart_after_kill();
    let after = rig
        .client()
        .token(Duration::ZERO)
        .expect("token after the soak");
    assert!(
        rig.server_accepts(&after),
        "seed {seed}: dead token after restart"
    );
}
