//! A refresh storm: many callers waiting when the access token expires.
//!
//! The situation is a laptop waking from suspend: every agent's next call
//! finds the token expired at once. It is reproduced exactly by stopping
//! brokerd (SIGSTOP) while its token is still valid, letting the token expire,
//! having every client send its request (they queue in the sockets), and then
//! resuming brokerd (SIGCONT) — from that instant the broker sees an expired
//! token and `clients` waiting requests, and the clock runs until the last one
//! holds a fresh token. The yardsticks are one refresh round trip at the token
//! endpoint, measured directly with a plain HTTP client, and the same storm
//! with a single waiting client (the refresh itself, durable writes included).

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use nix::sys::signal::Signal;

use super::latency::Latency;
use super::setup::{connect, BenchBroker};
use crate::direct_oauth::{self, Refreshed};

/// Lifetime of the token that expires during the storm. Short, so the
/// benchmark waits little; brokerd is stopped long before its proactive refresh.
const EXPIRING_TTL: Duration = Duration::from_secs(2);

/// How long the stopped broker is given for the queued requests to be
/// written: every client thread must have sent before the clock starts.
const QUEUE_SETTLE: Duration = Duration::from_millis(300);

/// How brokerd writes its state during the storm (`[state] writes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateWrites {
    /// The default: a record appended to the state journal, `fdatasync`.
    Journal,
    /// `state.json` replaced: temp file, `fsync`, rename, directory `fsync`
    /// (every version before the journal).
    Replace,
}

impl StateWrites {
    /// The config value.
    pub fn name(self) -> &'static str {
        match self {
            StateWrites::Journal => "journal",
            StateWrites::Replace => "replace",
        }
    }
}

/// What the storm measured.
#[derive(Debug, Clone)]
pub struct StormResult {
    /// How brokerd wrote its state.
    pub writes: StateWrites,
    pub clients: usize,
    /// From SIGCONT until the first client held a fresh token.
    pub first_served: Duration,
    /// From SIGCONT until the last client held a fresh token.
    pub all_served: Duration,
    /// The same with a single waiting client: the refresh itself, including
    /// the two durable state writes around the token-endpoint call.
    pub single_client: Duration,
    /// CPU time brokerd used (all its threads) from the resume until the last
    /// client was served: what serving the storm cost the broker itself.
    pub broker_cpu: Duration,
    /// Refreshes the token endpoint performed for the storm.
    pub refreshes: u64,
    /// Distinct tokens the clients received (1 when all share the refresh).
    pub distinct_tokens: usize,
    /// One refresh at the fake token endpoint from a plain HTTP client on a
    /// kept-alive connection.
    pub endpoint_round_trip: Latency,
}

/// Runs the storm against a new brokerd writing its state as `writes` says,
/// and the same with one waiting client (what a refresh costs when nobody
/// else is waiting).
pub fn run(brokerd: &Path, clients: usize, writes: StateWrites) -> anyhow::Result<StormResult> {
    let single = once(brokerd, 1, writes)?;
    let mut storm = once(brokerd, clients, writes)?;
    storm.single_client = single.all_served;
    Ok(storm)
}

/// One storm of `clients` waiting clients against a new brokerd.
fn once(brokerd: &Path, clients: usize, writes: StateWrites) -> anyhow::Result<StormResult> {
    let config = format!("\n[state]\nwrites = \"{}\"\n", writes.name());
    let bench = BenchBroker::start_with(brokerd, EXPIRING_TTL, &config)?;
    let endpoint_round_trip = endpoint_round_trip(&bench, 30)?;

    // Connected and waiting at the barrier before the token even exists.
    let go = Arc::new(Barrier::new(clients + 1));
    // Threads stay until everybody is served: a thread exiting costs CPU time
    // that would otherwise be charged to the broker serving the others.
    let done = Arc::new(Barrier::new(clients));
    let mut threads = Vec::with_capacity(clients);
    for i in 0..clients {
        let mut client = connect(bench.socket()).with_context(|| format!("storm client {i}"))?;
        let (go, done) = (go.clone(), done.clone());
        threads.push(
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || -> anyhow::Result<(Instant, String)> {
                    go.wait();
                    let token = client.token(Duration::ZERO);
                    let served = Instant::now();
                    done.wait();
                    let token = token?;
                    if token.is_expired() {
                        bail!("served an expired token");
                    }
                    Ok((served, token.token_id().to_owned()))
                })
                .context("spawning a storm client")?,
        );
    }

    let grant = bench.login()?;
    // The refreshed token lives long: the storm causes one refresh, no more.
    bench.fake.set_access_ttl(Duration::from_secs(3600));
    let mut broker = bench.broker;
    broker.signal(Signal::SIGSTOP)?;
    let before = bench.fake.stats();
    let expires_at = UNIX_EPOCH + Duration::from_secs(unix_now() + grant.expires_in);
    while SystemTime::now() < expires_at + Duration::from_millis(100) {
        std::thread::sleep(Duration::from_millis(20));
    }
    go.wait();
    std::thread::sleep(QUEUE_SETTLE);
    let cpu_before = super::cpu::on_cpu(broker.pid())?;
    let resumed = Instant::now();
    broker.signal(Signal::SIGCONT)?;

    let mut served = Vec::with_capacity(clients);
    let mut token_ids = std::collections::BTreeSet::new();
    for thread in threads {
        let (at, token_id) = thread
            .join()
            .map_err(|_| anyhow::anyhow!("a storm client panicked"))??;
        served.push(at.saturating_duration_since(resumed));
        token_ids.insert(token_id);
    }
    let broker_cpu = super::cpu::on_cpu(broker.pid())?.saturating_sub(cpu_before);
    let after = bench.fake.stats();
    drop(broker);
    let all_served = served.iter().max().copied().unwrap_or_default();
    Ok(StormResult {
        writes,
        clients,
        first_served: served.iter().min().copied().unwrap_or_default(),
        all_served,
        single_client: all_served,
        broker_cpu,
        refreshes: after.successful_refreshes - before.successful_refreshes,
        distinct_tokens: token_ids.len(),
        endpoint_round_trip,
    })
}

/// `samples` refreshes of fresh grants at the fake token endpoint, one after
/// the other on one kept-alive HTTP connection (the first is not counted).
fn endpoint_round_trip(bench: &BenchBroker, samples: usize) -> anyhow::Result<Latency> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let http = reqwest::Client::new();
    let endpoint = bench.fake.token_endpoint();
    let client_id = bench.fake.config().client_id;
    let mut times = Vec::with_capacity(samples);
    for i in 0..=samples {
        let grant = bench.fake.issue_grant();
        let started = Instant::now();
        let answer = runtime.block_on(direct_oauth::refresh(
            &http,
            &endpoint,
            &client_id,
            grant.refresh(),
        ));
        let took = started.elapsed();
        if !matches!(answer, Refreshed::Tokens(_)) {
            bail!("a direct refresh at the fake server failed: {answer:?}");
        }
        if i > 0 {
            times.push(took);
        }
    }
    Ok(Latency::of(times))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
