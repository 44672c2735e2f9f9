//! A whole `brokerctl token` process, as a shell hook or an `auth.command`
//! runs it: fork, exec, loading, connect, handshake, token, print, exit — and,
//! when oidc-agent is installed, `oidc-token` doing the same job beside it,
//! with a C program that does nothing (`true`) as the floor every process
//! pays on this machine. The programs run in turn, run i of each after run i
//! of the others, so that a burst of load hits them alike.
//!
//! Why CPU time as well as wall time: on a shared machine the wall time of a
//! millisecond-long process swings with whatever else runs, while the CPU time
//! the kernel charges to the process (user + system, from `getrusage` of the
//! waited-for children) moves much less; the two ratios together say more than
//! either alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use nix::sys::resource::{getrusage, UsageWho};

use super::latency::Latency;
use super::oidc_token::OidcAgent;
use crate::harness::BrokerProcess;

/// Wall time and CPU time of the runs of one program.
#[derive(Debug, Clone, Copy)]
pub struct ProcessRuns {
    /// From spawning the process until it was reaped.
    pub wall: Latency,
    /// User + system time the kernel charged to the process.
    pub cpu: Latency,
}

/// The runs of `brokerctl token`, `oidc-token` (when installed) and `true`.
#[derive(Debug, Clone, Copy)]
pub struct TokenProcesses {
    pub brokerctl: ProcessRuns,
    pub oidc_token: Option<ProcessRuns>,
    /// A C no-op (coreutils `true`): exec, the dynamic loader, exit.
    pub noop: ProcessRuns,
}

/// Runs `brokerctl --socket <socket> token`, `oidc-token` (when `oidc` is
/// given) and `true` in turn, `iterations` times each after `warmup` rounds.
pub fn token_processes(
    brokerctl: &Path,
    broker: &BrokerProcess,
    oidc: Option<&OidcAgent>,
    warmup: usize,
    iterations: usize,
) -> anyhow::Result<TokenProcesses> {
    let noop = true_program().context("no `true` on PATH")?;
    let mut ours = Samples::with_capacity(iterations);
    let mut theirs = Samples::with_capacity(iterations);
    let mut floor = Samples::with_capacity(iterations);
    for round in 0..warmup + iterations {
        let measured = round >= warmup;
        ours.run(measured, || brokerctl_token(brokerctl, broker))?;
        if let Some(oidc) = oidc {
            theirs.run(measured, || oidc.token())?;
        }
        floor.run(measured, || run_true(&noop))?;
    }
    Ok(TokenProcesses {
        brokerctl: ours.summary(),
        oidc_token: oidc.map(|_| theirs.summary()),
        noop: floor.summary(),
    })
}

/// The wall and CPU samples of one program.
struct Samples {
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
}

impl Samples {
    fn with_capacity(n: usize) -> Samples {
        Samples {
            wall: Vec::with_capacity(n),
            cpu: Vec::with_capacity(n),
        }
    }

    /// Runs `f` (which spawns and reaps one process) and keeps its times when
    /// `measured`.
    fn run(
        &mut self,
        measured: bool,
        f: impl FnOnce() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let cpu_before = children_cpu()?;
        let started = Instant::now();
        f()?;
        let wall = started.elapsed();
        let cpu = children_cpu()?.saturating_sub(cpu_before);
        if measured {
            self.wall.push(wall);
            self.cpu.push(cpu);
        }
        Ok(())
    }

    fn summary(self) -> ProcessRuns {
        ProcessRuns {
            wall: Latency::of(self.wall),
            cpu: Latency::of(self.cpu),
        }
    }
}

/// User + system time of every child this process has reaped so far.
fn children_cpu() -> anyhow::Result<Duration> {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage")?;
    let micros = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    Ok(micros(usage.user_time()) + micros(usage.system_time()))
}

fn true_program() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("true"))
        .find(|candidate| candidate.is_file())
}

fn run_true(path: &Path) -> anyhow::Result<()> {
    // Like the others: stdout and stderr into pipes that are read.
    let out = Command::new(path)
        .env_clear()
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {}", path.display()))?;
    if !out.status.success() {
        bail!("{} failed ({})", path.display(), out.status);
    }
    Ok(())
}

fn brokerctl_token(brokerctl: &Path, broker: &BrokerProcess) -> anyhow::Result<()> {
    let out = Command::new(brokerctl)
        .arg("--socket")
        .arg(broker.socket_path())
        .arg("token")
        .env_clear()
        .envs(broker.client_env().iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {}", brokerctl.display()))?;
    if !out.status.success() || out.stdout.is_empty() {
        bail!(
            "brokerctl token failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
