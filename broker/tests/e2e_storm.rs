//! 200 concurrent token requests from 10 separate processes across several
//! access-token lifetimes: one refresh per lifetime, no reuse at the server.

use crate::common::token_hammer::{hammer, result_line, Hammer};
use crate::common::{fake_with_ttl, stderr, Broker};
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PROCESSES: usize = 10;
const THREADS_PER_PROCESS: usize = 20;
const LIFETIME: Duration = Duration::from_secs(3);
const LIFETIMES: u32 = 3;
const CHILD_ENV: &str = "OAUTH_BROKER_STORM_CHILD_SOCKET";

/// Not a test of its own: the entry point of the child processes spawned by
/// `two_hundred_clients_in_ten_processes_share_one_refresh_per_lifetime`. It
/// returns at once unless that test started it.
#[test]
fn storm_child_entry() {
    let Ok(socket) = std::env::var(CHILD_ENV) else {
        return;
    };
    let run_for = Duration::from_millis(std::env::var("STORM_RUN_MS").unwrap().parse().unwrap());
    let deadline = Instant::now() + run_for;
    let (total, ids) = hammer(
        &socket,
        deadline,
        &Hammer {
            threads: THREADS_PER_PROCESS,
            name_prefix: "storm",
            request_timeout: None,
            min_valid: |i| {
                if i % 2 == 0 {
                    Duration::ZERO
                } else {
                    Duration::from_secs(30)
                }
            },
            pause: Duration::from_millis(5),
        },
    );
    println!("{}", result_line("STORM_RESULT", total, ids));
}

#[test]
fn two_hundred_clients_in_ten_processes_share_one_refresh_per_lifetime() {
    let setup = Broker::logged_in(fake_with_ttl(LIFETIME));
    let run_for = LIFETIME * LIFETIMES;
    let started = Instant::now();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "e2e_storm::storm_child_entry",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, setup.broker.socket_path())
                .env("STORM_RUN_MS", run_for.as_millis().to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    // brokerctl token processes at the same time, the way shell hooks ask.
    let mut ctl_runs = 0;
    while started.elapsed() < run_for {
        let out = setup.ctl(&["token"]);
        assert!(out.status.success(), "brokerctl token: {}", stderr(&out));
        assert_eq!(out.stdout.iter().filter(|&&b| b == b'\n').count(), 1);
        ctl_runs += 1;
    }
    let mut requests = 0u64;
    let mut token_ids = BTreeSet::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = text
            .lines()
            .find_map(|l| l.split_once("STORM_RESULT ").map(|(_, rest)| rest))
            .expect("child result");
        let (n, ids) = line.split_once(' ').unwrap();
        requests += n.parse::<u64>().unwrap();
        token_ids.extend(ids.split(',').map(str::to_string));
    }
    let elapsed = started.elapsed();
    let stats = setup.fake.stats();
    println!(
        "storm: {requests} client requests + {ctl_runs} brokerctl runs over {:.1} s ({} lifetimes of {} s): {} refreshes, {} distinct tokens, {} reuse detections",
        elapsed.as_secs_f64(),
        LIFETIMES,
        LIFETIME.as_secs(),
        stats.successful_refreshes,
        token_ids.len(),
        stats.reuse_detections
    );
    assert!(requests >= (PROCESSES * THREADS_PER_PROCESS) as u64);
    assert_eq!(stats.reuse_detections, 0);
    assert_eq!(stats.families_revoked, 0);
    assert_eq!(
        stats.refresh_requests, stats.successful_refreshes,
        "no refresh failed or was wasted"
    );
    // One refresh per lifetime: the broker refreshes at 75-80 % of each token's
    // life, so successive refreshes are at least 70 % of a lifetime apart (the
    // lifetime as the broker sees it: expiry is kept in whole seconds, which can
    // cost up to one second), and there is one for every lifetime that passed.
    let shortest_lifetime = LIFETIME - Duration::from_secs(1);
    let refreshes: Vec<_> = setup
        .fake
        .token_requests()
        .into_iter()
        .filter(|r| r.grant_type.as_deref() == Some("refresh_token"))
        .map(|r| r.received_at)
        .collect();
    for pair in refreshes.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= LIFETIME / 2 - Duration::from_millis(100),
            "two refreshes {gap:?} apart"
        );
    }
    let lifetimes_elapsed = (elapsed.as_secs_f64() / LIFETIME.as_secs_f64()).floor() as u64;
    assert!(
        stats.successful_refreshes >= lifetimes_elapsed.saturating_sub(1).max(1),
        "{} refreshes in {lifetimes_elapsed} lifetimes",
        stats.successful_refreshes
    );
    let most = (elapsed.as_secs_f64() / (shortest_lifetime.as_secs_f64() * 0.7)).ceil() as u64;
    assert!(stats.successful_refreshes <= most);
}
