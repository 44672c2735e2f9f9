//! The performance benchmark behind the README's "Performance" table
//! (`cargo run --release -p oauth-broker-tests --bin bench`).
//!
//! Everything is measured in one run on the machine at hand, against the real
//! `brokerd` and `brokerctl` binaries, the real client crate and the fake
//! authorization server on loopback — and read against that machine's physical
//! limit, a raw Unix-socket ping-pong with the same frame sizes. One file per
//! measurement:
//!
//! * [`raw`] — the physical limit;
//! * [`round_trip`] — cached token on a persistent connection, on a fresh
//!   connection, and from the client-side cache (`CachingClient`);
//! * [`throughput`] — tokens per second with 1 … 256 concurrent clients, as
//!   threads of the blocking client and as tasks of the async client, next to
//!   the raw limit for as many blocking threads;
//! * [`brokerctl`] — a whole `brokerctl token` process, interleaved with
//!   [`oidc_token`] (oidc-agent's `oidc-token`) when that is installed;
//! * [`storm`] — 500 clients waiting when the token expires;
//! * [`proxy`] — the header-injecting proxy against a direct call of the same
//!   upstream: added latency, first streamed byte, 64 concurrent streams,
//!   memory with 1,000 open streams;
//! * [`startup`] and [`memory`] — start-to-ready time and resident memory.
//!
//! [`BenchConfig::smoke`] runs every measurement with tiny counts, so that a
//! test can keep the benchmark working without asserting any timing.

pub mod brokerctl;
pub mod cpu;
pub mod latency;
pub mod memory;
pub mod oidc_token;
pub mod proxy;
pub mod raw;
pub mod report;
pub mod round_trip;
pub mod setup;
pub mod startup;
pub mod storm;
pub mod throughput;

use std::time::Duration;

use anyhow::Context as _;

use crate::binaries::Binaries;
use brokerctl::TokenProcesses;
use latency::Latency;
use memory::Memory;
use round_trip::{FrameSizes, MIN_VALID};
use setup::BenchBroker;
use storm::{StateWrites, StormResult};
use throughput::{Callers, Throughput};

/// How much of everything to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Samples for the raw baseline and the cached round trip.
    pub round_trips: usize,
    /// Samples for connect + handshake + token.
    pub fresh_connections: usize,
    /// Samples for the client-side cache.
    pub cache_hits: usize,
    /// Concurrent clients of each throughput run.
    pub throughput_clients: Vec<usize>,
    /// Length of each throughput run.
    pub throughput_duration: Duration,
    /// `brokerctl token` runs (and as many `oidc-token` runs).
    pub brokerctl_runs: usize,
    /// Clients waiting in the refresh storm.
    pub storm_clients: usize,
    /// brokerd starts.
    pub startups: usize,
    /// Connections held open for the memory measurement.
    pub open_connections: usize,
    /// Samples per proxy latency row.
    pub proxy_requests: usize,
    /// Streams held open through the proxy for its memory row.
    pub proxy_open_streams: usize,
}

impl BenchConfig {
    /// The full run behind the README table (about a minute).
    pub fn full() -> BenchConfig {
        BenchConfig {
            round_trips: 200_000,
            fresh_connections: 10_000,
            cache_hits: 1_000_000,
            throughput_clients: vec![1, 8, 64, 256],
            throughput_duration: Duration::from_secs(2),
            brokerctl_runs: 200,
            storm_clients: 500,
            startups: 30,
            open_connections: 1000,
            proxy_requests: 5_000,
            proxy_open_streams: 1000,
        }
    }

    /// Every measurement with tiny counts: proves the benchmark still works,
    /// says nothing about speed.
    pub fn smoke() -> BenchConfig {
        BenchConfig {
            round_trips: 50,
            fresh_connections: 5,
            cache_hits: 50,
            throughput_clients: vec![1, 4],
            throughput_duration: Duration::from_millis(100),
            brokerctl_runs: 2,
            storm_clients: 8,
            startups: 2,
            open_connections: 20,
            proxy_requests: 20,
            proxy_open_streams: 20,
        }
    }
}

/// Throughput with one number of concurrent clients.
#[derive(Debug, Clone)]
pub struct ThroughputRow {
    pub clients: usize,
    /// The raw ping-pong with as many blocking threads: their limit.
    pub raw: Throughput,
    /// A blocking-client thread per caller.
    pub threads: Throughput,
    /// Async-client tasks on one thread.
    pub tasks: Throughput,
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub frames: FrameSizes,
    pub raw: Latency,
    pub cached: Latency,
    pub fresh_connection: Latency,
    /// The same with the token request sent in the hello's write.
    pub fresh_pipelined: Latency,
    pub client_cache: Latency,
    pub throughput: Vec<ThroughputRow>,
    /// `brokerctl token`, `oidc-token` (when oidc-agent is installed) and a
    /// C no-op, whole processes.
    pub processes: TokenProcesses,
    /// The storm with the state journal (the default).
    pub storm: StormResult,
    /// The same storm with `state.json` replaced per write, as before.
    pub storm_replace: StormResult,
    pub startup: Latency,
    pub memory: Memory,
    pub proxy: proxy::ProxyBench,
}

/// Runs every measurement; `progress` hears what is being measured.
pub fn run(
    binaries: &Binaries,
    config: &BenchConfig,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<Report> {
    let warmup = |n: usize| (n / 10).clamp(1, 5_000);

    progress("starting brokerd and the fake authorization server");
    let bench = BenchBroker::logged_in(&binaries.brokerd, Duration::from_secs(3600))?;
    let token = bench.client()?.token(MIN_VALID)?;
    let frames = FrameSizes::of(&token)?;

    progress("raw Unix-socket ping-pong and cached token, interleaved");
    let (raw, cached) = round_trip::cached_against_raw(
        bench.socket(),
        bench.env.root(),
        frames,
        warmup(config.round_trips),
        config.round_trips,
    )?;

    progress("connect + handshake + token");
    let fresh_connection = round_trip::fresh_connection(
        bench.socket(),
        warmup(config.fresh_connections),
        config.fresh_connections,
    )?;
    progress("connect + token pipelined behind the hello");
    let fresh_pipelined = round_trip::fresh_connection_pipelined(
        bench.socket(),
        warmup(config.fresh_connections),
        config.fresh_connections,
    )?;

    progress("client-side cache");
    let client_cache =
        round_trip::client_cache(bench.socket(), warmup(config.cache_hits), config.cache_hits)?;

    let mut throughput = Vec::new();
    for &clients in &config.throughput_clients {
        progress(&format!("throughput with {clients} clients"));
        let duration = config.throughput_duration;
        let broker = bench.broker.pid();
        throughput.push(ThroughputRow {
            clients,
            raw: raw::throughput(frames.request, frames.response, clients, duration)?,
            threads: throughput::run(bench.socket(), broker, Callers::Threads, clients, duration)?,
            tasks: throughput::run(bench.socket(), broker, Callers::Async, clients, duration)?,
        });
    }

    let processes = token_processes(&bench, binaries, config, &mut progress)?;
    drop(bench);

    progress(&format!(
        "refresh storm with {} waiting clients, state journal",
        config.storm_clients
    ));
    let storm = storm::run(
        &binaries.brokerd,
        config.storm_clients,
        StateWrites::Journal,
    )
    .context("refresh storm")?;
    progress(&format!(
        "refresh storm with {} waiting clients, state.json replaced per write",
        config.storm_clients
    ));
    let storm_replace = storm::run(
        &binaries.brokerd,
        config.storm_clients,
        StateWrites::Replace,
    )
    .context("refresh storm, state.json replaced")?;

    progress("brokerd start-to-ready");
    let startup = startup::start_to_ready(&binaries.brokerd, config.startups)?;

    progress("resident memory");
    let memory = memory::resident(&binaries.brokerd, config.open_connections)?;

    progress("header-injecting proxy against direct calls");
    let proxy = proxy::run(
        &binaries.brokerd,
        config.proxy_requests,
        config.throughput_duration,
        config.proxy_open_streams,
    )
    .context("proxy")?;

    Ok(Report {
        frames,
        raw,
        cached,
        fresh_connection,
        fresh_pipelined,
        client_cache,
        throughput,
        processes,
        storm,
        storm_replace,
        startup,
        memory,
        proxy,
    })
}

/// Only the whole-process rows (`bench --only token`): `brokerctl token`,
/// `oidc-token` when installed, and the C no-op, against a logged-in brokerd.
pub fn run_token_processes(
    binaries: &Binaries,
    config: &BenchConfig,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<TokenProcesses> {
    progress("starting brokerd and the fake authorization server");
    let bench = BenchBroker::logged_in(&binaries.brokerd, Duration::from_secs(3600))?;
    token_processes(&bench, binaries, config, &mut progress)
}

/// `brokerctl token` beside `oidc-token` (when oidc-agent is installed) and
/// `true`, interleaved.
fn token_processes(
    bench: &BenchBroker,
    binaries: &Binaries,
    config: &BenchConfig,
    progress: &mut impl FnMut(&str),
) -> anyhow::Result<TokenProcesses> {
    let oidc = match oidc_token::OidcAgent::start(&bench.fake) {
        Ok(agent) => agent,
        Err(e) => {
            progress(&format!("oidc-token left out: {e:#}"));
            None
        }
    };
    progress(if oidc.is_some() {
        "brokerctl token, oidc-token and true processes, interleaved"
    } else {
        "brokerctl token and true processes, interleaved (oidc-agent not installed)"
    });
    brokerctl::token_processes(
        &binaries.brokerctl,
        &bench.broker,
        oidc.as_ref(),
        (config.brokerctl_runs / 10).clamp(1, 5_000),
        config.brokerctl_runs,
    )
}

/// `bench --serve`: brokerd and oidc-agent (when installed) set up as for the
/// whole-process rows, held until stdin closes, so that outside tools
/// (`strace`, `valgrind`, `perf`) can run `brokerctl token` and `oidc-token`
/// against them. Prints one shell line per program, with its environment.
pub fn serve(binaries: &Binaries, mut out: impl std::io::Write) -> anyhow::Result<()> {
    let bench = BenchBroker::logged_in(&binaries.brokerd, Duration::from_secs(3600))?;
    let oidc = oidc_token::OidcAgent::start(&bench.fake)?;
    let env: Vec<String> = bench
        .broker
        .client_env()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    writeln!(
        out,
        "env -i {} {} --socket {} token",
        env.join(" "),
        binaries.brokerctl.display(),
        bench.socket().display()
    )?;
    if let Some(oidc) = &oidc {
        writeln!(out, "{}", oidc.command_line())?;
    }
    out.flush()?;
    std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink())?;
    Ok(())
}
