//! brokerd's resident memory (VmRSS from /proc), idle and with many open
//! connections.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use super::round_trip::MIN_VALID;
use super::setup::{connect, BenchBroker};

/// Resident memory of brokerd.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// Logged in, one token served, no connection open.
    pub idle_kib: u64,
    /// With `connections` clients connected (each served one token).
    pub busy_kib: u64,
    pub connections: usize,
}

/// Measures a new logged-in brokerd.
pub fn resident(brokerd: &Path, connections: usize) -> anyhow::Result<Memory> {
    raise_fd_limit(connections + 64);
    let bench = BenchBroker::logged_in(brokerd, Duration::from_secs(3600))?;
    connect(bench.socket())?.token(MIN_VALID)?;
    // Let the connection task end before reading.
    std::thread::sleep(Duration::from_millis(100));
    let pid = bench.broker.pid();
    let idle_kib = vm_rss_kib(pid)?;
    let mut open = Vec::with_capacity(connections);
    for i in 0..connections {
        let mut client = connect(bench.socket()).with_context(|| format!("connection {i}"))?;
        client.token(MIN_VALID)?;
        open.push(client);
    }
    let busy_kib = vm_rss_kib(pid)?;
    drop(open);
    Ok(Memory {
        idle_kib,
        busy_kib,
        connections,
    })
}

/// `VmRSS` of a process, in KiB.
pub fn vm_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line in /proc/<pid>/status")
}

/// Raises the soft open-files limit (inherited by brokerd) so both ends can
/// hold `wanted` descriptors; the hard limit is the ceiling.
pub(crate) fn raise_fd_limit(wanted: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let wanted = (wanted as u64).min(hard);
        if soft < wanted {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, wanted, hard);
        }
    }
}
